//! The debugging views: `strata mount IMAGE`, `strata umount`, `strata which` and
//! `strata layers`. Every view is a real FUSE mount of strata-fs (or, for `which IMAGE PATH`
//! and `layers`, the same union API in-process), so what they show is what lookup resolves.
//!
//! A mount of an image leases the image in the store (so `rmi` cannot remove its layers while
//! it is mounted) and leaves a record in `mounts/` under the store root; `strata umount`
//! reads it to release the lease, remove the scratch upper of a `--writable` mount (unless
//! `--keep`), and remove a mountpoint it made itself.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use strata_fs::options::MountOptions;
use strata_store::{Digest, Store};

use crate::output::{human_size, json_lines, table, trunc};

/// What a view shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// The merged image (optionally as of layer N).
    Union,
    /// What one layer (or a writable mount's scratch upper) changed.
    Diff,
}

impl View {
    /// Parses `--view`.
    pub fn parse(s: &str) -> Result<View> {
        match s {
            "union" | "merged" => Ok(View::Union),
            "diff" => Ok(View::Diff),
            _ => bail!("unknown view {s:?}: expected diff or union"),
        }
    }
}

/// `strata mount IMAGE [MNT]` and its flags.
#[derive(Debug, Clone)]
pub struct MountRequest {
    /// The image (`NAME[:TAG]`, an id, or with `--view diff`, `IMAGE@N` or the mountpoint of a
    /// writable mount).
    pub image: String,
    /// Where to mount; a temp dir is made (and printed) when absent.
    pub mountpoint: Option<PathBuf>,
    /// `--layer N`: the image as it was after layer N (1 = base).
    pub layer: Option<usize>,
    /// `--writable`: a scratch upper layer.
    pub writable: bool,
    /// `--keep`: keep the scratch upper after `strata umount`.
    pub keep: bool,
    /// `--view`.
    pub view: View,
}

/// Escapes a path for `lowerdir=` (`\:` is a literal colon, `\\` a backslash).
pub fn escape_lower(p: &Path) -> Result<String> {
    let s = p
        .to_str()
        .ok_or_else(|| anyhow!("{}: path is not UTF-8", p.display()))?;
    Ok(s.replace('\\', "\\\\").replace(':', "\\:"))
}

fn lower_options(lowers_top_first: &[PathBuf], extra: &[String]) -> Result<MountOptions> {
    let l: Vec<String> = lowers_top_first
        .iter()
        .map(|p| escape_lower(p))
        .collect::<Result<_>>()?;
    let mut groups = vec![format!("lowerdir={}", l.join(":"))];
    groups.extend(extra.iter().cloned());
    Ok(MountOptions::parse(&groups)?)
}

/// The layer directories of image `id`, base first.
fn layer_dirs(store: &Store, id: &Digest) -> Result<Vec<PathBuf>> {
    let rec = store.image(id)?;
    Ok(rec
        .layers
        .iter()
        .map(|l| store.layer_path(&l.diff_id))
        .collect())
}

/// `created_by` of each layer of image `id`, base first (history entries that are not
/// `empty_layer`, in order, as docker pairs them).
fn created_by(store: &Store, id: &Digest) -> Result<Vec<String>> {
    let cfg = store.config(id)?;
    Ok(cfg
        .history()
        .clone()
        .unwrap_or_default()
        .iter()
        .filter(|h| !h.empty_layer().unwrap_or(false))
        .map(|h| h.created_by().clone().unwrap_or_default())
        .collect())
}

/// A mount made by `strata mount IMAGE`, as recorded under `mounts/`.
#[derive(Debug, Clone)]
struct Record {
    mountpoint: PathBuf,
    image: Digest,
    scratch: Option<PathBuf>,
    keep: bool,
    made_mountpoint: bool,
}

impl Record {
    fn holder(mnt: &Path) -> String {
        format!("mount:{}", mnt.display())
    }

    fn file(store_root: &Path, mnt: &Path) -> PathBuf {
        let key = Digest::of(mnt.as_os_str().as_bytes());
        store_root
            .join("mounts")
            .join(format!("{}.json", &key.hex()[..16]))
    }

    fn to_json(&self) -> Value {
        json!({
            "mountpoint": self.mountpoint.to_string_lossy(),
            "image": self.image.to_string(),
            "scratch": self.scratch.as_ref().map(|p| p.to_string_lossy().into_owned()),
            "keep": self.keep,
            "made_mountpoint": self.made_mountpoint,
        })
    }

    fn from_json(v: &Value) -> Result<Record> {
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Record {
            mountpoint: PathBuf::from(s("mountpoint").ok_or_else(|| anyhow!("no mountpoint"))?),
            image: Digest::parse(&s("image").ok_or_else(|| anyhow!("no image"))?)?,
            scratch: s("scratch").map(PathBuf::from),
            keep: v.get("keep").and_then(Value::as_bool).unwrap_or(false),
            made_mountpoint: v
                .get("made_mountpoint")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }

    fn load(store_root: &Path, mnt: &Path) -> Option<Record> {
        let data = std::fs::read(Self::file(store_root, mnt)).ok()?;
        let v: Value = serde_json::from_slice(&data).ok()?;
        Self::from_json(&v).ok()
    }

    /// Written to a temp file and renamed, so a reader never sees half a record.
    fn save(&self, store_root: &Path) -> Result<()> {
        let f = Self::file(store_root, &self.mountpoint);
        let dir = f.parent().unwrap_or(store_root);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let tmp = f.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, self.to_json().to_string())
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &f).with_context(|| format!("renaming {}", f.display()))?;
        Ok(())
    }
}

/// A fresh directory under `$XDG_RUNTIME_DIR` (or the temp dir) for a mount without a
/// mountpoint.
fn temp_mountpoint() -> Result<PathBuf> {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let d = tempfile::Builder::new()
        .prefix("strata-mnt-")
        .tempdir_in(&base)
        .with_context(|| format!("making a mountpoint in {}", base.display()))?;
    Ok(d.keep())
}

/// Splits `IMAGE@N` (a layer number) from an image reference; `repo@sha256:…` is left alone.
fn split_layer_suffix(s: &str) -> (String, Option<usize>) {
    if let Some((img, n)) = s.rsplit_once('@') {
        if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(n) = n.parse() {
                return (img.to_owned(), Some(n));
            }
        }
    }
    (s.to_owned(), None)
}

/// Checks `n` against an image of `count` layers.
fn check_layer(image: &str, n: usize, count: usize) -> Result<()> {
    if n == 0 || n > count {
        bail!("{image} has {count} layer(s): layer {n} is out of range (1 = the base layer)");
    }
    Ok(())
}

/// `strata mount IMAGE [MNT]`: a read-only (or `--writable`) view of an image, or a diff view.
pub fn mount_image(store: &Store, req: &MountRequest) -> Result<()> {
    if req.keep && !req.writable {
        bail!("--keep only applies to --writable mounts");
    }
    if req.writable && req.view == View::Diff {
        bail!("a diff view is read-only: mount the image --writable first, then mount --view diff MOUNTPOINT");
    }
    // The diff view of a writable mount: IMAGE is that mount's mountpoint.
    let writable_source = if req.view == View::Diff && Path::new(&req.image).is_dir() {
        let mnt = std::fs::canonicalize(&req.image)?;
        let rec = Record::load(store.root(), &mnt).ok_or_else(|| {
            anyhow!(
                "{} is not a writable mount made by `strata mount --writable`",
                mnt.display()
            )
        })?;
        let scratch = rec.scratch.clone().ok_or_else(|| {
            anyhow!(
                "{} is a read-only mount: it has no changes to show",
                mnt.display()
            )
        })?;
        Some((rec.image, scratch.join("upper")))
    } else {
        None
    };
    let (id, label, lowers, extra) = match writable_source {
        Some((id, upper)) => {
            let mut lowers = vec![upper];
            lowers.extend(layer_dirs(store, &id)?.into_iter().rev());
            (id, req.image.clone(), lowers, vec!["view=diff".to_owned()])
        }
        None => {
            let (image, at) = match req.view {
                View::Diff => split_layer_suffix(&req.image),
                View::Union => (req.image.clone(), None),
            };
            let id = store.resolve(&image)?;
            let dirs = layer_dirs(store, &id)?;
            let n = match (req.view, req.layer, at) {
                (_, Some(_), Some(_)) => bail!("give the layer either as IMAGE@N or --layer N"),
                (_, Some(n), None) | (_, None, Some(n)) => n,
                (_, None, None) => dirs.len(),
            };
            check_layer(&image, n, dirs.len())?;
            let lowers: Vec<PathBuf> = dirs[..n].iter().rev().cloned().collect();
            let extra = match req.view {
                View::Diff => vec!["view=diff".to_owned()],
                View::Union => Vec::new(),
            };
            (id, image, lowers, extra)
        }
    };
    let made = req.mountpoint.is_none();
    let mnt = match &req.mountpoint {
        Some(m) => {
            std::fs::canonicalize(m).with_context(|| format!("mountpoint {}", m.display()))?
        }
        None => temp_mountpoint()?,
    };
    if Record::load(store.root(), &mnt).is_some() {
        if is_mounted(&mnt) {
            bail!(
                "{} is already a strata mount (strata umount it first)",
                mnt.display()
            );
        }
        // A record of a mount that is gone (its daemon was killed, or it was unmounted
        // without strata): release what it held before reusing the mountpoint.
        after_umount(store.root(), &mnt)?;
    }
    let cleanup = |scratch: Option<&Path>| {
        if let Some(s) = scratch {
            let _ = remove_tree(s);
        }
        if made {
            let _ = std::fs::remove_dir(&mnt);
        }
    };
    let scratch = if req.writable {
        match make_scratch(store) {
            Ok(d) => Some(d),
            Err(e) => {
                cleanup(None);
                return Err(e);
            }
        }
    } else {
        None
    };
    let mut extra = extra;
    if let Some(s) = &scratch {
        extra.push(format!(
            "upperdir={},workdir={}",
            s.join("upper").display(),
            s.join("work").display()
        ));
    }
    let holder = Record::holder(&mnt);
    let result = (|| -> Result<()> {
        let opts = lower_options(&lowers, &extra)?;
        store.lease(&holder, &id)?;
        let rec = Record {
            mountpoint: mnt.clone(),
            image: id.clone(),
            scratch: scratch.clone(),
            keep: req.keep,
            made_mountpoint: made,
        };
        let mounted = rec
            .save(store.root())
            .and_then(|()| Ok(strata_fs::mount::daemonize(&opts, &mnt)?));
        if let Err(e) = mounted {
            let _ = std::fs::remove_file(Record::file(store.root(), &mnt));
            let _ = store.release(&holder);
            return Err(e);
        }
        Ok(())
    })();
    if let Err(e) = result {
        cleanup(scratch.as_deref());
        return Err(e.context(format!("mounting {label}")));
    }
    if made {
        println!("{}", mnt.display());
    }
    if let (Some(s), true) = (&scratch, req.keep) {
        eprintln!(
            "scratch upper kept after umount: {}",
            s.join("upper").display()
        );
    }
    Ok(())
}

/// True when `mnt` is a mountpoint (its device differs from its parent's).
pub fn is_mounted(mnt: &Path) -> bool {
    let (Ok(m), Some(parent)) = (std::fs::metadata(mnt), mnt.parent()) else {
        return false;
    };
    std::fs::metadata(parent).is_ok_and(|p| p.dev() != m.dev())
}

/// A scratch layer (`upper/`, `work/`) under the store's `mounts/`.
fn make_scratch(store: &Store) -> Result<PathBuf> {
    let base = store.root().join("mounts");
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let d = tempfile::Builder::new()
        .prefix("scratch-")
        .tempdir_in(&base)
        .with_context(|| format!("making a scratch layer in {}", base.display()))?;
    for sub in ["upper", "work"] {
        let p = d.path().join(sub);
        std::fs::create_dir(&p).with_context(|| format!("creating {}", p.display()))?;
    }
    Ok(d.keep())
}

/// Removes a scratch layer. A plain user may have copied up directories without write
/// permission (a 0555 `/usr`), which `remove_dir_all` cannot empty: those are made writable
/// (never following a symlink) and the removal tried again.
fn remove_tree(p: &Path) -> std::io::Result<()> {
    if std::fs::remove_dir_all(p).is_ok() || !p.exists() {
        return Ok(());
    }
    fn open_up(p: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let Ok(md) = std::fs::symlink_metadata(p) else {
            return;
        };
        if md.is_dir() {
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    open_up(&e.path());
                }
            }
        }
    }
    open_up(p);
    std::fs::remove_dir_all(p)
}

/// True when `p` has a record of `strata mount IMAGE` in the store at `store_root`.
pub fn has_record(store_root: &Path, p: &Path) -> bool {
    Record::load(store_root, p).is_some()
}

/// The absolute form of a mountpoint, resolving its parent only: the mountpoint itself may be
/// a dead FUSE mount, which no call can stat (ENOTCONN).
pub fn canonical_mountpoint(p: &Path) -> PathBuf {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => std::fs::canonicalize(dir)
            .map(|d| d.join(name))
            .unwrap_or(abs.clone()),
        _ => abs,
    }
}

/// After `strata umount MNT` (or once the mount is gone): removes its scratch upper (unless
/// kept) and a mountpoint `strata mount` made, then the record, and releases the image last,
/// so that a failure leaves everything in place for another `strata umount`.
pub fn after_umount(store_root: &Path, mnt: &Path) -> Result<()> {
    let Some(rec) = Record::load(store_root, mnt) else {
        return Ok(());
    };
    if let (Some(s), false) = (&rec.scratch, rec.keep) {
        remove_tree(s).with_context(|| format!("removing the scratch layer {}", s.display()))?;
    }
    if rec.made_mountpoint {
        let _ = std::fs::remove_dir(&rec.mountpoint);
    }
    let f = Record::file(store_root, mnt);
    std::fs::remove_file(&f).with_context(|| format!("removing {}", f.display()))?;
    let store = Store::open(store_root)?;
    store.release(&Record::holder(mnt))?;
    Ok(())
}

/// Where a path comes from, in the form both `which` verbs print.
struct Which {
    path: String,
    layer: String,
    state: String,
    shadows: Vec<String>,
    /// Layer label → layer directory.
    dirs: Vec<(String, PathBuf)>,
    /// The image whose history names the layers, when known.
    image: Option<Digest>,
}

fn label_number(label: &str) -> Option<usize> {
    label.split(' ').next()?.parse().ok()
}

fn label_digest(label: &str) -> Option<&str> {
    label.split(' ').nth(1)
}

fn print_which(store: Option<&Store>, w: &Which) -> Result<()> {
    let history = match (store, &w.image) {
        (Some(s), Some(id)) => created_by(s, id).unwrap_or_default(),
        _ => Vec::new(),
    };
    let describe = |label: &str| -> String {
        let dir = w
            .dirs
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, d)| d.display().to_string());
        let mut s = match label_number(label) {
            Some(n) => format!("layer {n}"),
            None => "upper (the writable layer)".to_owned(),
        };
        if let Some(d) = label_digest(label) {
            s.push_str(&format!(" {d}"));
        }
        if let Some(d) = dir {
            s.push_str(&format!("\n             dir {d}"));
        }
        if let Some(by) = label_number(label).and_then(|n| history.get(n - 1)) {
            s.push_str(&format!("\n             created by {by}"));
        }
        s
    };
    println!("{}", w.path);
    println!("  from       {}", describe(&w.layer));
    let state = match w.state.as_str() {
        "lower" => "lower (read from the layer, never copied up)",
        "copied-up" => "copied-up (copied from a lower layer into the upper)",
        "created" => "created (made in the upper)",
        "opaque" => "opaque directory (hides everything below it)",
        other => other,
    };
    println!("  state      {state}");
    if w.shadows.is_empty() {
        println!("  hides      nothing");
    }
    for (i, s) in w.shadows.iter().enumerate() {
        let head = if i == 0 {
            "  hides     "
        } else {
            "            "
        };
        println!("{head} {}", describe(s));
    }
    Ok(())
}

fn getxattr(path: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = rustix::fs::getxattr(path, name, &mut buf[..])?;
    buf.truncate(n);
    Ok(buf)
}

/// The root of the mount that holds directory `dir` (the topmost ancestor on its device).
fn mount_root(dir: &Path) -> PathBuf {
    let Ok(md) = std::fs::metadata(dir) else {
        return dir.to_path_buf();
    };
    let mut cur = dir.to_path_buf();
    while let Some(p) = cur.parent() {
        match std::fs::metadata(p) {
            Ok(pm) if pm.dev() == md.dev() => cur = p.to_path_buf(),
            _ => break,
        }
    }
    cur
}

/// `strata which PATH`: provenance of a path on a strata mount, read from its virtual xattrs.
pub fn which_mounted(store: Option<&Store>, path: &Path) -> Result<()> {
    std::fs::symlink_metadata(path).with_context(|| format!("{}", path.display()))?;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    let name = abs.file_name().map(OsStr::to_os_string);
    let parent = match (abs.parent(), &name) {
        (Some(p), Some(_)) => std::fs::canonicalize(p)?,
        _ => std::fs::canonicalize(&abs)?,
    };
    // The mount's root itself answers for itself; any other entry is asked of its parent
    // (`KEY/NAME`), which also works for symlinks and devices.
    let (root, entry) = match &name {
        Some(n) if is_mounted(&parent.join(n)) => (parent.join(n), None),
        Some(n) => (mount_root(&parent), Some(n.clone())),
        None => (parent.clone(), None),
    };
    let own = |key: &str| -> std::io::Result<Vec<u8>> {
        match &entry {
            Some(n) => {
                let mut x = format!("user.strata.{key}/").into_bytes();
                x.extend_from_slice(n.as_bytes());
                getxattr(&parent, &String::from_utf8_lossy(&x))
            }
            None => getxattr(&root, &format!("user.strata.{key}")),
        }
    };
    let text = |v: std::io::Result<Vec<u8>>| -> Result<String> {
        match v {
            Ok(v) => Ok(String::from_utf8_lossy(&v).into_owned()),
            Err(e)
                if e.raw_os_error() == Some(libc::ENODATA)
                    || e.raw_os_error() == Some(libc::ENOTSUP) =>
            {
                bail!(
                    "{} is not on a strata mount (no user.strata.* attributes)",
                    path.display()
                )
            }
            Err(e) => Err(anyhow!("{}: reading provenance: {e}", path.display())),
        }
    };
    if let Ok(change) = own("change") {
        // A diff view: its entries have a change, not a provenance.
        println!("{}", path.display());
        println!(
            "  change     {} (by the layer this diff view shows)",
            String::from_utf8_lossy(&change)
        );
        return Ok(());
    }
    let layer = text(own("layer"))?;
    let state = text(own("state"))?;
    let shadows = text(own("shadows"))?;
    let listing = text(getxattr(&root, "user.strata.layers")).unwrap_or_default();
    let dirs: Vec<(String, PathBuf)> = listing
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(a, b)| (a.to_owned(), PathBuf::from(b)))
        .collect();
    let image = store.and_then(|s| {
        Record::load(s.root(), &root)
            .map(|r| r.image)
            .or_else(|| image_with_layer(s, label_digest(&layer)?))
    });
    print_which(
        store,
        &Which {
            path: path.display().to_string(),
            layer,
            state,
            shadows: split_list(&shadows),
            dirs,
            image,
        },
    )
}

fn split_list(s: &str) -> Vec<String> {
    s.split(", ")
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Some image of the store that has layer `digest` (for its history).
fn image_with_layer(store: &Store, digest: &str) -> Option<Digest> {
    let list = store.list().ok()?;
    list.into_iter()
        .find(|i| {
            i.record
                .layers
                .iter()
                .any(|l| l.diff_id.to_string() == digest)
        })
        .map(|i| i.record.id)
}

/// `strata which IMAGE PATH`: the same, through the union API in-process, without a mount.
pub fn which_image(store: &Store, image: &str, path: &str) -> Result<()> {
    let id = store.resolve(image)?;
    let dirs = layer_dirs(store, &id)?;
    let lowers: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
    let u = strata_fs::mount::build_union(&lower_options(&lowers, &[])?)?;
    let rel = path.trim_start_matches('/');
    let ino = u
        .lookup_path(rel.as_bytes())
        .map_err(|e| anyhow!("{path}: not in {image}: {e}"))?;
    let p = u.provenance(ino)?;
    let stack = u.stack();
    let labels: Vec<(String, PathBuf)> = (0..stack.layers.len())
        .map(|i| (stack.label(i as u16), stack.layers[i].path.clone()))
        .collect();
    print_which(
        Some(store),
        &Which {
            path: format!("/{rel}"),
            layer: stack.label(p.layer),
            state: p.state.as_str().to_owned(),
            shadows: p.shadows.iter().map(|l| stack.label(*l)).collect(),
            dirs: labels,
            image: Some(id),
        },
    )
}

/// `strata layers IMAGE`: one row per layer, with what it added, modified and deleted.
pub fn layers(store: &Store, image: &str, json_out: bool) -> Result<()> {
    let id = store.resolve(image)?;
    let rec = store.image(&id)?;
    let history = created_by(store, &id)?;
    let dirs = layer_dirs(store, &id)?;
    let mut rows = Vec::new();
    let mut objs = Vec::new();
    for (i, l) in rec.layers.iter().enumerate() {
        let lowers: Vec<PathBuf> = dirs[..=i].iter().rev().cloned().collect();
        let u = strata_fs::mount::build_union(&lower_options(&lowers, &["view=diff".into()])?)?;
        let c = u
            .diff_counts()
            .with_context(|| format!("reading layer {} ({})", i + 1, l.diff_id))?;
        let by = history.get(i).cloned().unwrap_or_default();
        rows.push(vec![
            (i + 1).to_string(),
            l.diff_id.short().to_owned(),
            human_size(l.size),
            c.added.to_string(),
            c.modified.to_string(),
            c.deleted.to_string(),
            trunc(&by, 45),
        ]);
        objs.push(json!({
            "Layer": i + 1,
            "Digest": l.diff_id.to_string(),
            "Size": l.size,
            "Added": c.added,
            "Modified": c.modified,
            "Deleted": c.deleted,
            "CreatedBy": by,
        }));
    }
    if json_out {
        json_lines(&objs)?;
    } else {
        table(
            &[
                "LAYER",
                "DIGEST",
                "SIZE",
                "ADDED",
                "MODIFIED",
                "DELETED",
                "CREATED BY",
            ],
            &rows,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_suffix() {
        assert_eq!(split_layer_suffix("bb:2@1"), ("bb:2".to_owned(), Some(1)));
        assert_eq!(split_layer_suffix("bb"), ("bb".to_owned(), None));
        let d = format!("bb@sha256:{}", "a".repeat(64));
        assert_eq!(split_layer_suffix(&d), (d.clone(), None));
    }

    #[test]
    fn labels() {
        assert_eq!(label_number("2 sha256:ab"), Some(2));
        assert_eq!(label_number("upper"), None);
        assert_eq!(label_digest("2 sha256:ab"), Some("sha256:ab"));
        assert_eq!(split_list("2, 1 sha256:x"), vec!["2", "1 sha256:x"]);
        assert!(split_list("").is_empty());
    }

    #[test]
    fn layer_range() {
        assert!(check_layer("x", 0, 2).is_err());
        assert!(check_layer("x", 3, 2).is_err());
        assert!(check_layer("x", 2, 2).is_ok());
    }
}
