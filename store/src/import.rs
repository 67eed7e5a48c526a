//! `import`: a rootfs tarball (plain, gzip or zstd), a directory, or stdin, as a one-layer
//! image (`docker import`). `--change` takes the Dockerfile instructions docker import takes
//! (CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use oci_spec::image::{Config, HistoryBuilder, ImageConfiguration, RootFsBuilder};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::ingest::{Ingest, Progress};
use crate::load::{oci_arch, synth_manifest};
use crate::reference::Name;
use crate::store::{ImageRecord, LayerRef, Store};
use crate::time::now_rfc3339;

/// What to import.
pub enum ImportSource<'a> {
    /// A tar file, maybe compressed.
    File(&'a Path),
    /// A directory tree.
    Dir(&'a Path),
    /// A tar stream (stdin).
    Stream(Box<dyn Read + 'a>),
}

/// Options of `import`.
#[derive(Debug, Default)]
pub struct ImportOptions {
    /// The history comment (`--message`).
    pub message: Option<String>,
    /// Dockerfile instructions applied to the config (`--change`).
    pub changes: Vec<String>,
    /// What `created_by` records.
    pub created_by: Option<String>,
}

impl Store {
    /// Imports a rootfs as a one-layer image, named `name` when given. Returns the image id.
    pub fn import(
        &self,
        src: ImportSource<'_>,
        name: Option<&Name>,
        opts: &ImportOptions,
        progress: Option<Progress<'_>>,
    ) -> Result<(Digest, Vec<String>)> {
        let mut config = Config::default();
        for c in &opts.changes {
            apply_change(&mut config, c)?;
        }
        let mut ing = Ingest::new(self, progress)?;
        let what = match &src {
            ImportSource::File(p) | ImportSource::Dir(p) => p.display().to_string(),
            ImportSource::Stream(_) => "stdin".to_owned(),
        };
        let (blob, blob_size) = match src {
            ImportSource::File(p) => {
                let f = std::fs::File::open(p).ctx("open", p)?;
                ing.total = f.metadata().map(|m| m.len()).unwrap_or(0);
                ing.blob(f, None, &what)?
            }
            ImportSource::Stream(r) => ing.blob(r, None, &what)?,
            ImportSource::Dir(p) => {
                let dir = fsutil::open_dir(p)?;
                // The tar is made in memory-bounded chunks through a pipe-like temp file:
                // written to the stage, then read back as the blob.
                let tmp = tempfile::tempfile_in(self.root().join("tmp"))
                    .ctx("create temp file in", self.root().join("tmp"))?;
                let mut tmp = crate::tarwrite::write_tree(&dir, std::io::BufWriter::new(tmp))
                    .map_err(|e| Error::io("archive directory", p, e))?
                    .into_inner()
                    .map_err(|e| Error::io("archive directory", p, e.into_error()))?;
                use std::io::Seek;
                tmp.rewind().ctx("rewind", p)?;
                ing.blob(tmp, None, &what)?
            }
        };
        let (diff_id, size) = ing.layer(&blob, None, true, &what)?;
        let media_type = ing.blob_media_type(&blob, &what)?.to_owned();
        let created = now_rfc3339();
        let history = HistoryBuilder::default()
            .created(created.clone())
            .created_by(
                opts.created_by
                    .clone()
                    .unwrap_or_else(|| format!("strata import {what}")),
            )
            .comment(opts.message.clone().unwrap_or_default())
            .build()
            .map_err(|e| Error::invalid("history", e.to_string()))?;
        let mut cfg = ImageConfiguration::default();
        cfg.set_created(Some(created.clone()));
        cfg.set_architecture(oci_arch().into());
        cfg.set_os("linux".into());
        cfg.set_config(Some(config));
        cfg.set_rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id.to_string()])
                .build()
                .map_err(|e| Error::invalid("rootfs", e.to_string()))?,
        );
        cfg.set_history(Some(vec![history]));
        let config =
            serde_json::to_vec(&cfg).map_err(|e| Error::invalid("config", e.to_string()))?;
        let id = ing.blob_bytes(&config, "config")?;
        let layers = vec![LayerRef {
            diff_id,
            blob,
            media_type,
            blob_size,
            size,
        }];
        let manifest = synth_manifest(&config, &layers)?;
        let mdigest = ing.blob_bytes(&manifest, "manifest")?;
        let rec = ImageRecord {
            id: id.clone(),
            manifest: mdigest,
            manifest_size: manifest.len() as u64,
            manifest_media_type: None,
            config_size: config.len() as u64,
            layers,
            created: Some(created),
        };
        let warnings = std::mem::take(&mut ing.warnings);
        ing.commit(&[(rec, name.into_iter().cloned().collect())])?;
        Ok((id, warnings))
    }
}

/// Applies one Dockerfile instruction (docker import --change) to a config.
pub fn apply_change(c: &mut Config, change: &str) -> Result<()> {
    let bad = |why: &str| Error::invalid(format!("--change {change:?}"), why.to_owned());
    let (instr, rest) = change
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad("expected INSTRUCTION ARGS"))?;
    let rest = rest.trim();
    let list = || -> Result<Vec<String>> {
        if rest.starts_with('[') {
            serde_json::from_str(rest).map_err(|e| bad(&format!("bad JSON array: {e}")))
        } else {
            // Shell form, as the Dockerfile reference defines it.
            Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
        }
    };
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            c.set_cmd(Some(list()?));
        }
        "ENTRYPOINT" => {
            c.set_entrypoint(Some(list()?));
        }
        "WORKDIR" => {
            c.set_working_dir(Some(rest.to_owned()));
        }
        "USER" => {
            c.set_user(Some(rest.to_owned()));
        }
        "STOPSIGNAL" => {
            c.set_stop_signal(Some(rest.to_owned()));
        }
        "ENV" => {
            let (k, v) = match rest.split_once('=') {
                Some((k, v)) => (k.trim(), v.trim().trim_matches('"')),
                None => rest
                    .split_once(char::is_whitespace)
                    .map(|(k, v)| (k, v.trim()))
                    .ok_or_else(|| bad("expected ENV KEY=VALUE"))?,
            };
            let mut env: Vec<String> = c.env().clone().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(k));
            env.push(format!("{k}={v}"));
            c.set_env(Some(env));
        }
        "LABEL" => {
            let (k, v) = rest
                .split_once('=')
                .ok_or_else(|| bad("expected LABEL KEY=VALUE"))?;
            let mut l: HashMap<String, String> = c.labels().clone().unwrap_or_default();
            l.insert(
                k.trim().trim_matches('"').to_owned(),
                v.trim().trim_matches('"').to_owned(),
            );
            c.set_labels(Some(l));
        }
        "EXPOSE" => {
            let mut p = c.exposed_ports().clone().unwrap_or_default();
            for port in rest.split_whitespace() {
                p.push(if port.contains('/') {
                    port.to_owned()
                } else {
                    format!("{port}/tcp")
                });
            }
            c.set_exposed_ports(Some(p));
        }
        "VOLUME" => {
            let mut v = c.volumes().clone().unwrap_or_default();
            v.extend(if rest.starts_with('[') {
                list()?
            } else {
                rest.split_whitespace().map(str::to_owned).collect()
            });
            c.set_volumes(Some(v));
        }
        _ => {
            return Err(bad(
                "supported: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE, VOLUME, STOPSIGNAL",
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_docker_import_changes() {
        let mut c = Config::default();
        apply_change(&mut c, r#"CMD ["/bin/sh"]"#).unwrap();
        apply_change(&mut c, "ENTRYPOINT echo hi").unwrap();
        apply_change(&mut c, "ENV A=1").unwrap();
        apply_change(&mut c, "ENV A 2").unwrap();
        apply_change(&mut c, "WORKDIR /data").unwrap();
        apply_change(&mut c, "EXPOSE 80").unwrap();
        assert_eq!(c.cmd().as_deref(), Some(&["/bin/sh".to_owned()][..]));
        assert_eq!(c.entrypoint().as_ref().unwrap()[2], "echo hi");
        assert_eq!(c.env().as_ref().unwrap(), &vec!["A=2".to_owned()]);
        assert_eq!(c.working_dir().as_deref(), Some("/data"));
        assert_eq!(
            c.exposed_ports().as_ref().unwrap(),
            &vec!["80/tcp".to_owned()]
        );
        assert!(apply_change(&mut c, "RUN rm -rf /").is_err());
        assert!(apply_change(&mut c, "CMD [broken").is_err());
    }
}
