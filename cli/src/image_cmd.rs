//! The image verbs: import, load, save, images, tag, rmi, history, inspect, image prune,
//! system df. Each is a few store calls and a printout.

use std::io::{IsTerminal, Read};
use std::path::Path;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use strata_store::images::Removal;
use strata_store::import::{ImportOptions, ImportSource};
use strata_store::save::SaveFormat;
use strata_store::time::{ago, parse_rfc3339};
use strata_store::{Name, Store};

use crate::output::{human_size, json_lines, table, trunc};

/// How a listing verb prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A table.
    Table,
    /// One JSON object per line.
    Json,
    /// Ids only.
    Quiet,
}

impl Format {
    /// From `-q` and `--format`.
    pub fn from_flags(quiet: bool, format: Option<&str>) -> Result<Format> {
        Ok(match (quiet, format) {
            (true, _) => Format::Quiet,
            (false, None) | (false, Some("table")) => Format::Table,
            (false, Some("json")) => Format::Json,
            (false, Some(f)) => bail!("unknown --format {f:?}: use table or json"),
        })
    }
}

/// A progress bar on a terminal, nothing otherwise.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = indicatif::ProgressBar::new(0);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(pb)
}

fn warn_all(ws: &[String]) {
    for w in ws {
        eprintln!("warning: {w}");
    }
}

/// `import FILE|DIR|- [NAME[:TAG]]`.
pub fn import(
    store: &Store,
    source: &str,
    name: Option<&str>,
    message: Option<String>,
    changes: Vec<String>,
) -> Result<()> {
    let name = name.map(Name::parse).transpose()?;
    let opts = ImportOptions {
        message,
        changes,
        created_by: Some(format!("strata import {source}")),
    };
    let pb = progress_bar();
    let tick = |done: u64, total: u64| {
        if let Some(pb) = &pb {
            pb.set_length(total.max(done));
            pb.set_position(done);
        }
    };
    let stdin;
    let src = if source == "-" {
        stdin = std::io::stdin();
        ImportSource::Stream(Box::new(stdin.lock()) as Box<dyn Read>)
    } else if Path::new(source).is_dir() {
        ImportSource::Dir(Path::new(source))
    } else {
        ImportSource::File(Path::new(source))
    };
    let (id, warnings) = store.import(src, name.as_ref(), &opts, Some(&tick))?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    warn_all(&warnings);
    println!("{id}");
    Ok(())
}

/// `load -i FILE|DIR`. `-` (or no `-i`) reads the archive from stdin into the store's tmp.
pub fn load(store: &Store, input: Option<&Path>, quiet: bool) -> Result<()> {
    let pb = if quiet { None } else { progress_bar() };
    let tick = |done: u64, total: u64| {
        if let Some(pb) = &pb {
            pb.set_length(total.max(done));
            pb.set_position(done);
        }
    };
    let rep = match input {
        Some(p) if p != Path::new("-") => store.load(p, Some(&tick))?,
        _ => {
            if std::io::stdin().is_terminal() {
                bail!("no archive given: use -i FILE, or pipe one to stdin");
            }
            store.load_reader(std::io::stdin().lock(), Some(&tick))?
        }
    };
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    warn_all(&rep.warnings);
    if !quiet {
        for i in rep.images {
            if i.names.is_empty() {
                println!("Loaded image ID: {}", i.id);
            }
            for n in i.names {
                println!("Loaded image: {n}");
            }
        }
    }
    Ok(())
}

/// `save -o FILE [--format F] IMAGE...`.
pub fn save(store: &Store, output: Option<&Path>, format: &str, images: &[String]) -> Result<()> {
    let f = match format {
        "oci-archive" | "oci" => SaveFormat::OciArchive,
        "docker-archive" | "docker" => SaveFormat::DockerArchive,
        f => bail!("unknown format {f:?}: use oci-archive or docker-archive"),
    };
    match output {
        Some(p) if p != Path::new("-") => store.save(images, f, p)?,
        _ => {
            if std::io::stdout().is_terminal() {
                bail!("refusing to write an archive to a terminal: use -o FILE or redirect stdout");
            }
            store.save_to(images, f, std::io::stdout().lock())?
        }
    }
    Ok(())
}

/// REPOSITORY and TAG of a name, `<none>` for an untagged image (as docker shows them).
fn repo_tag(n: Option<&String>) -> (String, String) {
    match n.map(|n| (n, Name::parse(n))) {
        Some((_, Ok(x))) => (x.repository(), x.tag().to_owned()),
        Some((n, Err(_))) => (n.clone(), String::new()),
        None => ("<none>".into(), "<none>".into()),
    }
}

fn created_ago(c: Option<&String>) -> String {
    c.and_then(|s| parse_rfc3339(s))
        .map_or_else(|| "N/A".into(), ago)
}

/// `images`.
pub fn images(store: &Store, fmt: Format) -> Result<()> {
    let mut rows = Vec::new();
    let mut objs = Vec::new();
    let mut ids = Vec::new();
    for i in store.list()? {
        let r = &i.record;
        let names = if i.names.is_empty() {
            vec![None]
        } else {
            i.names.iter().map(Some).collect()
        };
        for n in names {
            let (repo, tag) = repo_tag(n);
            rows.push(vec![
                repo.clone(),
                tag.clone(),
                r.id.short().to_owned(),
                created_ago(r.created.as_ref()),
                human_size(r.size()),
            ]);
            objs.push(json!({"Repository": repo, "Tag": tag, "Id": r.id.to_string(), "Created": r.created, "Size": r.size()}));
        }
        ids.push(r.id.short().to_owned());
    }
    match fmt {
        Format::Table => table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows)?,
        Format::Json => json_lines(&objs)?,
        Format::Quiet => ids.iter().for_each(|i| println!("{i}")),
    }
    Ok(())
}

/// `history IMAGE`: newest first; the top row shows the image id, the others `<missing>`, as
/// docker does for layers it did not build.
pub fn history(store: &Store, image: &str, fmt: Format, no_trunc: bool) -> Result<()> {
    let info = store.info(image)?;
    let cfg = store.config(&info.record.id)?;
    let hist = cfg.history().clone().unwrap_or_default();
    let mut layer_sizes = info.record.layers.iter().map(|l| l.size);
    let mut rows: Vec<(Option<String>, String, String, u64, String, bool)> = Vec::new();
    for h in &hist {
        let empty = h.empty_layer().unwrap_or(false);
        let size = if empty {
            0
        } else {
            layer_sizes.next().unwrap_or(0)
        };
        rows.push((
            h.created().clone(),
            h.created_by().clone().unwrap_or_default(),
            String::new(),
            size,
            h.comment().clone().unwrap_or_default(),
            empty,
        ));
    }
    rows.reverse();
    let mut table_rows = Vec::new();
    let mut objs = Vec::new();
    for (i, (created, by, _, size, comment, empty)) in rows.iter().enumerate() {
        let id = if i == 0 {
            info.record.id.to_string()
        } else {
            "<missing>".to_owned()
        };
        let short = if i == 0 {
            info.record.id.short().to_owned()
        } else {
            id.clone()
        };
        table_rows.push(vec![
            if no_trunc { id.clone() } else { short.clone() },
            created_ago(created.as_ref()),
            if no_trunc { by.clone() } else { trunc(by, 45) },
            human_size(*size),
            comment.clone(),
        ]);
        objs.push(json!({"Id": id, "Created": created, "CreatedBy": by, "Size": size, "Comment": comment, "EmptyLayer": empty}));
        if fmt == Format::Quiet {
            println!("{}", if no_trunc { &id } else { &short });
        }
    }
    match fmt {
        Format::Table => table(
            &["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
            &table_rows,
        )?,
        Format::Json => json_lines(&objs)?,
        Format::Quiet => {}
    }
    Ok(())
}

/// `inspect IMAGE...`: a JSON array, docker's shape.
pub fn inspect(store: &Store, images: &[String]) -> Result<()> {
    let mut out = Vec::new();
    for r in images {
        let info = store.info(r)?;
        let raw: Value = serde_json::from_slice(&store.read_blob(&info.record.id)?)?;
        let c = raw.get("config").cloned().unwrap_or(json!({}));
        out.push(json!({
            "Id": info.record.id.to_string(),
            "RepoTags": info.names,
            "Created": raw.get("created"),
            "Author": raw.get("author"),
            "Architecture": raw.get("architecture"),
            "Os": raw.get("os"),
            "Config": {
                "User": c.get("User"), "Env": c.get("Env"), "Entrypoint": c.get("Entrypoint"),
                "Cmd": c.get("Cmd"), "WorkingDir": c.get("WorkingDir"), "Labels": c.get("Labels"),
                "ExposedPorts": c.get("ExposedPorts"), "Volumes": c.get("Volumes"), "StopSignal": c.get("StopSignal"),
            },
            "RootFS": {"Type": "layers", "Layers": info.record.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()},
            "History": raw.get("history"),
            "Size": info.record.size(),
            "Manifest": info.record.manifest.to_string(),
            "Layers": info.record.layers.iter().map(|l| json!({
                "DiffId": l.diff_id.to_string(), "Blob": l.blob.to_string(), "MediaType": l.media_type,
                "BlobSize": l.blob_size, "Size": l.size, "Path": store.layer_path(&l.diff_id),
            })).collect::<Vec<_>>(),
            "Containers": info.holders,
        }));
    }
    println!("{}", serde_json::to_string_pretty(&Value::Array(out))?);
    Ok(())
}

/// `rmi [-f] IMAGE...`: every image is tried; the exit status says whether all went.
pub fn rmi(store: &Store, images: &[String], force: bool) -> Result<()> {
    let mut failed = 0;
    for r in images {
        match store.remove(r, force) {
            Ok(done) => {
                for d in done {
                    match d {
                        Removal::Untagged(n) => println!("Untagged: {n}"),
                        Removal::Deleted(id) => println!("Deleted: {id}"),
                    }
                }
            }
            Err(e) => {
                eprintln!("strata: rmi {r}: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} image(s) not removed", images.len());
    }
    Ok(())
}

/// `image prune`.
pub fn prune(store: &Store) -> Result<()> {
    let (gone, freed) = store.prune()?;
    if !gone.is_empty() {
        println!("Deleted Images:");
        for d in gone {
            println!("deleted: {d}");
        }
    }
    println!("Total reclaimed space: {}", human_size(freed));
    Ok(())
}

/// `system df [-v]`.
pub fn df(store: &Store, verbose: bool, fmt: Format) -> Result<()> {
    let du = store.disk_usage()?;
    if fmt == Format::Json {
        let objs: Vec<Value> = du
            .images
            .iter()
            .map(|u| {
                let (repo, tag) = repo_tag(u.info.names.first());
                json!({"Repository": repo, "Tag": tag, "Id": u.info.record.id.to_string(), "Size": u.size,
                       "SharedSize": u.shared, "UniqueSize": u.unique, "Containers": u.info.holders.len()})
            })
            .collect();
        return Ok(json_lines(&objs)?);
    }
    let pct = (du.reclaimable * 100).checked_div(du.total).unwrap_or(0);
    table(
        &["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
        &[vec![
            "Images".into(),
            du.images.len().to_string(),
            du.active.to_string(),
            human_size(du.total),
            format!("{} ({pct}%)", human_size(du.reclaimable)),
        ]],
    )?;
    if verbose {
        println!("\nImages space usage:\n");
        let rows: Vec<Vec<String>> = du
            .images
            .iter()
            .map(|u| {
                let (repo, tag) = repo_tag(u.info.names.first());
                vec![
                    repo,
                    tag,
                    u.info.record.id.short().to_owned(),
                    human_size(u.size),
                    human_size(u.shared),
                    human_size(u.unique),
                    u.info.holders.len().to_string(),
                ]
            })
            .collect();
        table(
            &[
                "REPOSITORY",
                "TAG",
                "IMAGE ID",
                "SIZE",
                "SHARED SIZE",
                "UNIQUE SIZE",
                "CONTAINERS",
            ],
            &rows,
        )?;
    }
    Ok(())
}
