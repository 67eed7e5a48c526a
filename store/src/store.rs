//! The store on disk: layout, lock, records, staging and the commit.
//!
//! Layout under the root (DESIGN.md "store"):
//! - `blobs/sha256/<hex>`: layer blobs as they came (compressed or not), configs, manifests;
//! - `layers/<diff_id hex>/`: each layer unpacked once, nothing else in `layers/`;
//! - `layerinfo/<hex>.json`: a layer's size, so a stored layer need not be read again;
//! - `images/<id hex>.json`: one record per image (id = sha256 of the config);
//! - `refs`: names, untagged images and container leases, in one JSON document. It is the
//!   commit point: an image exists when `refs` mentions it, so a load commits its image and
//!   its names with one rename, and a `kill -9` never leaves a half-registered image;
//! - `tmp/`: staging dirs, one per running command, each holding a locked `.owner` file;
//! - `lock`: flock(2) held exclusively by writers for their (short) commit, shared by readers.
//!
//! Blobs, layers and records are content-addressed and written before `refs`, so anything a
//! crash leaves behind is unreferenced, and `prune` (or the next `rmi`) collects it.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, FlockOperation};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil;

/// A layer as an image uses it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// The blob it was stored as (`blobs/sha256/<hex>`), maybe compressed.
    pub blob: Digest,
    /// The blob's OCI media type.
    pub media_type: String,
    /// The blob's size in bytes.
    pub blob_size: u64,
    /// The uncompressed tar's size in bytes.
    pub size: u64,
}

/// The record of one image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// sha256 of the config JSON.
    pub id: Digest,
    /// The OCI manifest blob: the one the image came with, or one strata wrote.
    pub manifest: Digest,
    /// Its size.
    pub manifest_size: u64,
    /// Its media type, when it is not an OCI manifest (a Docker v2 manifest kept as it came).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_media_type: Option<String>,
    /// The config blob's size.
    pub config_size: u64,
    /// Layers, base first.
    pub layers: Vec<LayerRef>,
    /// `created` from the config, RFC 3339.
    pub created: Option<String>,
}

impl ImageRecord {
    /// The sum of the uncompressed layer sizes, as docker's SIZE column.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// Every blob the image needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        [&self.id, &self.manifest]
            .into_iter()
            .chain(self.layers.iter().map(|l| &l.blob))
    }
}

/// The names and holders of images: the store's commit point.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refs {
    /// `name:tag` → image id.
    pub names: BTreeMap<String, Digest>,
    /// Images that lost their last name but were not removed (`<none>` in `images`).
    pub untagged: BTreeSet<Digest>,
    /// Container id → the image it uses. An image with a lease is never deleted.
    pub leases: BTreeMap<String, Digest>,
}

impl Refs {
    /// Every image that exists.
    pub fn images(&self) -> BTreeSet<Digest> {
        self.names
            .values()
            .chain(&self.untagged)
            .chain(self.leases.values())
            .cloned()
            .collect()
    }

    /// The names of `id`, sorted.
    pub fn names_of(&self, id: &Digest) -> Vec<String> {
        self.names
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The containers holding `id`.
    pub fn holders_of(&self, id: &Digest) -> Vec<String> {
        self.leases
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Points `name` at `id`. The image it pointed at before becomes untagged when that was
    /// its last name (as `docker tag`/`docker load` leave `<none>` images).
    pub fn set_name(&mut self, name: String, id: &Digest) {
        if let Some(old) = self.names.insert(name, id.clone()) {
            if &old != id && !self.names.values().any(|v| *v == old) {
                self.untagged.insert(old);
            }
        }
        self.untagged.remove(id);
    }
}

/// The store root and its directories.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
}

/// A held flock on `lock`; released on drop (flock(2): closing the fd releases it).
#[derive(Debug)]
pub(crate) struct Lock(#[allow(dead_code)] OwnedFd);

impl Store {
    /// The default root: `$STRATA_ROOT`, else `/var/lib/strata` as root, else
    /// `$XDG_DATA_HOME/strata` (or `~/.local/share/strata`).
    pub fn default_root() -> PathBuf {
        if let Some(r) = std::env::var_os("STRATA_ROOT").filter(|v| !v.is_empty()) {
            return PathBuf::from(r);
        }
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/strata");
        }
        match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x).join("strata"),
            None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/".into()))
                .join(".local/share/strata"),
        }
    }

    /// Opens the store at `root`, creating its directories (mode 0700) when missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        for sub in ["", "blobs/sha256", "layers", "layerinfo", "images", "tmp"] {
            let p = root.join(sub);
            b.create(&p).ctx("create store directory", &p)?;
        }
        Ok(Store { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `blobs/sha256/<hex>`.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// `layers/<hex>`: the unpacked layer, a directory strata-fs can use as a lower layer.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    pub(crate) fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).exists()
    }

    pub(crate) fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).is_dir()
    }

    /// Reads a blob whole (configs and manifests).
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let p = self.blob_path(d);
        fs::read(&p).ctx("read blob", &p)
    }

    fn take_lock(&self, op: FlockOperation) -> Result<Lock> {
        let p = self.root.join("lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .ctx("open lock file", &p)?;
        let fd = OwnedFd::from(f);
        rfs::flock(&fd, op).ctx("lock", &p)?;
        Ok(Lock(fd))
    }

    /// The writers' lock.
    pub(crate) fn lock(&self) -> Result<Lock> {
        self.take_lock(FlockOperation::LockExclusive)
    }

    /// The readers' lock: a consistent view of `refs` and the records it names.
    pub(crate) fn lock_shared(&self) -> Result<Lock> {
        self.take_lock(FlockOperation::LockShared)
    }

    /// Reads `refs` (empty when the store is new).
    pub fn refs(&self) -> Result<Refs> {
        let p = self.root.join("refs");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| Error::Record { path: p, error: e }),
            Err(e) if fsutil::is_absent(&e) => Ok(Refs::default()),
            Err(e) => Err(Error::io("read", p, e)),
        }
    }

    /// Replaces `refs` atomically. Call with the lock held.
    pub(crate) fn write_refs(&self, refs: &Refs, _lock: &Lock) -> Result<()> {
        let data = serde_json::to_vec_pretty(refs).expect("refs serialize");
        fsutil::write_atomic(&self.root, "refs", &data)
    }

    /// Reads an image record.
    pub fn image(&self, id: &Digest) -> Result<ImageRecord> {
        let p = self.root.join("images").join(format!("{}.json", id.hex()));
        let b = fs::read(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(id.to_string()),
            _ => Error::io("read image record", &p, e),
        })?;
        serde_json::from_slice(&b).map_err(|e| Error::Record { path: p, error: e })
    }

    pub(crate) fn write_image(&self, rec: &ImageRecord) -> Result<()> {
        let data = serde_json::to_vec_pretty(rec).expect("record serialize");
        fsutil::write_atomic(
            &self.root.join("images"),
            &format!("{}.json", rec.id.hex()),
            &data,
        )
    }

    /// Makes a staging directory under `tmp/`, owned by this process while it lives.
    pub(crate) fn stage(&self) -> Result<Stage> {
        Stage::new(&self.root.join("tmp"))
    }

    /// Removes staging dirs whose owner is gone (killed mid-load) and leftovers of interrupted
    /// deletions. Call with the lock held. Returns the bytes freed.
    pub(crate) fn collect_stale(&self, _lock: &Lock) -> Result<u64> {
        let tmp = self.root.join("tmp");
        let dir = fsutil::open_dir(&tmp)?;
        let mut freed = 0;
        for name in fsutil::list_names(&dir).ctx("list", &tmp)? {
            let path = tmp.join(OsStr::from_bytes(&name));
            if name.starts_with(b".new-") && Stage::birth_is_live(&path, &name) {
                continue; // a stage being born: its owner lock comes right after mkdir
            }
            if !name.starts_with(b".new-") && Stage::is_owned(&path) {
                continue;
            }
            freed += du(&path);
            fsutil::remove_tree(&dir, OsStr::from_bytes(&name))
                .ctx("remove stale staging data", &path)?;
        }
        Ok(freed)
    }
}

/// Bytes used by a tree (st_blocks), best effort: for "reclaimed space" reports.
pub(crate) fn du(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = fs::symlink_metadata(path) else {
        return 0;
    };
    let mut n = md.blocks() * 512;
    if md.is_dir() {
        if let Ok(rd) = fs::read_dir(path) {
            for e in rd.flatten() {
                n += du(&e.path());
            }
        }
    }
    n
}

fn older_than(path: &Path, secs: u64) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e.as_secs() > secs)
}

/// A staging directory: `tmp/<pid>-<random>/`, with `.owner` flocked for its lifetime so
/// that cleanup can tell a live stage from one a `kill -9` left. Removed on drop.
#[derive(Debug)]
pub(crate) struct Stage {
    path: PathBuf,
    _owner: OwnedFd,
}

impl Stage {
    fn new(tmp: &Path) -> Result<Stage> {
        // Born under a `.new-` name and renamed once the owner lock is held, so that cleanup
        // never sees an unlocked stage that is still alive.
        let birth = tempfile::Builder::new()
            .prefix(&format!(".new-{}-", std::process::id()))
            .tempdir_in(tmp)
            .ctx("create staging directory in", tmp)?
            .keep();
        let owner = birth.join(".owner");
        let f = fs::File::create(&owner).ctx("create", &owner)?;
        let fd = OwnedFd::from(f);
        rfs::flock(&fd, FlockOperation::LockExclusive).ctx("lock", &owner)?;
        let name = format!(
            "{}-{}",
            std::process::id(),
            birth
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .trim_start_matches(&format!(".new-{}-", std::process::id()))
        );
        let path = tmp.join(name);
        fs::rename(&birth, &path).ctx("rename staging directory", &path)?;
        Ok(Stage { path, _owner: fd })
    }

    /// True when `.new-PID-…` (`name`, at `path`) may still become a stage: less than an hour
    /// old, and its process alive (or the name predates the pid in it). A `kill -9` between
    /// birth and rename leaves one whose process is gone. A process of another pid namespace
    /// looks gone: at worst its stage creation then fails with an error, nothing is lost.
    fn birth_is_live(path: &Path, name: &[u8]) -> bool {
        if older_than(path, 3600) {
            return false;
        }
        let pid = name[b".new-".len()..]
            .split(|b| *b == b'-')
            .next()
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(|p| p.parse::<u32>().ok());
        match pid {
            // The process is gone: whatever it left is stale, unless its lock is still held
            // (it can only be held by a live process).
            Some(pid) => Path::new(&format!("/proc/{pid}")).exists() || Stage::is_owned(path),
            None => true,
        }
    }

    /// True when a live process holds the stage's owner lock.
    fn is_owned(path: &Path) -> bool {
        let Ok(f) = fs::File::open(path.join(".owner")) else {
            return false;
        };
        let fd = OwnedFd::from(f);
        // The lock is free only when the owner is gone.
        rfs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_err()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        // Everything but `.owner` first, so that a concurrent cleanup never sees this stage
        // unowned while it is still being removed.
        let Ok(dir) = fsutil::open_dir(&self.path) else {
            return;
        };
        let names = fsutil::list_names(&dir).unwrap_or_default();
        for n in names.iter().filter(|n| n.as_slice() != b".owner") {
            if let Err(e) = fsutil::remove_tree(&dir, OsStr::from_bytes(n)) {
                log::warn!(
                    "could not remove staging data in {}: {e}",
                    self.path.display()
                );
            }
        }
        let _ = fs::remove_file(self.path.join(".owner"));
        let _ = fs::remove_dir(&self.path);
    }
}
