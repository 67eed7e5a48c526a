//! Bringing blobs and layers into a stage, verified, and committing them with their images.
//!
//! Each blob is copied into the stage while hashed, fsynced, and checked against the digest
//! and size it was announced with before anything is unpacked from it. Each layer is unpacked
//! from its staged (or stored) blob while the uncompressed stream is hashed, and checked
//! against the config's diff_id. Only then does `commit` take the lock and move the verified
//! pieces into place; `refs` is written last (see store.rs).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::compress::{decoder, Compression};
use crate::digest::{Digest, HashReader, HashWriter};
use crate::error::{Error, IoContext, Result};
use crate::extract::unpack;
use crate::fsutil;
use crate::reference::Name;
use crate::store::{ImageRecord, Stage, Store};

/// Called with bytes done so far and the total, for progress bars.
pub type Progress<'a> = &'a dyn Fn(u64, u64);

/// `layerinfo/<hex>.json`: what is known of an unpacked layer without reading it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LayerInfo {
    pub diff_id: Digest,
    pub size: u64,
    /// Blobs verified to decompress to this layer. A known layer is trusted for a blob only
    /// when the pair was verified once: an archive could pair any stored blob with any
    /// stored diff_id.
    #[serde(default)]
    pub blobs: BTreeSet<Digest>,
}

pub(crate) struct Ingest<'s> {
    pub store: &'s Store,
    stage: Stage,
    blobs: BTreeMap<Digest, PathBuf>,
    layers: BTreeMap<Digest, (PathBuf, u64)>,
    /// (blob, diff_id) pairs verified by this ingest.
    pairs: BTreeSet<(Digest, Digest)>,
    n: usize,
    pub warnings: Vec<String>,
    progress: Option<Progress<'s>>,
    pub done: u64,
    pub total: u64,
}

impl<'s> Ingest<'s> {
    pub(crate) fn new(store: &'s Store, progress: Option<Progress<'s>>) -> Result<Self> {
        Ok(Ingest {
            store,
            stage: store.stage()?,
            blobs: BTreeMap::new(),
            layers: BTreeMap::new(),
            pairs: BTreeSet::new(),
            n: 0,
            warnings: Vec::new(),
            progress,
            done: 0,
            total: 0,
        })
    }

    fn next_path(&mut self, kind: &str) -> PathBuf {
        self.n += 1;
        self.stage.path().join(format!("{kind}-{}", self.n))
    }

    /// Where blob `d` is now (staged or stored), if anywhere.
    pub(crate) fn blob_location(&self, d: &Digest) -> Option<PathBuf> {
        if let Some(p) = self.blobs.get(d) {
            return Some(p.clone());
        }
        let p = self.store.blob_path(d);
        p.exists().then_some(p)
    }

    /// Copies a blob into the stage, hashing it, and verifies it against `expect`
    /// (digest, size) when given. Returns its digest and size. A blob already stored or
    /// staged under the expected digest is not read again.
    pub(crate) fn blob(
        &mut self,
        r: impl Read,
        expect: Option<(&Digest, u64)>,
        what: &str,
    ) -> Result<(Digest, u64)> {
        if let Some((d, size)) = expect {
            if self.blob_location(d).is_some() {
                self.tick(size);
                return Ok((d.clone(), size));
            }
        }
        let path = self.next_path("blob");
        let f = File::create(&path).ctx("create", &path)?;
        let mut w = HashWriter::new(io::BufWriter::with_capacity(1 << 20, f));
        // A blob longer than announced is refused after one byte too many, not read to the
        // end (a layout's blob could be /dev/zero).
        let limit = expect.map_or(u64::MAX, |(_, size)| size.saturating_add(1));
        let mut r = r.take(limit);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Corrupt {
                        what: what.to_owned(),
                        error: e,
                    })
                }
            };
            w.write_all(&buf[..n]).ctx("write", &path)?;
            self.tick(n as u64);
        }
        let (digest, size, bw) = w.finish();
        let f = bw
            .into_inner()
            .map_err(|e| Error::io("write", &path, e.into_error()))?;
        f.sync_all().ctx("fsync", &path)?;
        if let Some((d, esize)) = expect {
            if *d != digest {
                return Err(Error::DigestMismatch {
                    what: what.to_owned(),
                    expected: d.to_string(),
                    found: digest.to_string(),
                });
            }
            if esize != size {
                return Err(Error::SizeMismatch {
                    what: what.to_owned(),
                    expected: esize,
                    found: size,
                });
            }
        }
        if self.blob_location(&digest).is_some() {
            fs::remove_file(&path).ctx("remove", &path)?;
        } else {
            self.blobs.insert(digest.clone(), path);
        }
        Ok((digest, size))
    }

    /// Stages a small blob held in memory (a config or manifest).
    pub(crate) fn blob_bytes(&mut self, data: &[u8], what: &str) -> Result<Digest> {
        let d = Digest::of(data);
        self.blob(data, Some((&d, data.len() as u64)), what)?;
        Ok(d)
    }

    fn tick(&mut self, n: u64) {
        self.done += n;
        if let Some(p) = self.progress {
            p(self.done, self.total);
        }
    }

    /// Makes sure layer `blob` is unpacked (staged) and that its uncompressed tar hashes to
    /// `expect` when given. Returns its diff_id and uncompressed size.
    pub(crate) fn layer(
        &mut self,
        blob: &Digest,
        expect: Option<&Digest>,
        newly_staged: bool,
        what: &str,
    ) -> Result<(Digest, u64)> {
        let known = expect.and_then(|d| Some((d, self.known_layer(d)?)));
        if let Some((d, info)) = &known {
            // A stored layer that this blob was verified to produce: nothing to read.
            let verified = info.blobs.contains(blob)
                || blob == *d
                || self.pairs.contains(&(blob.clone(), (*d).clone()));
            if !newly_staged && verified {
                return Ok(((*d).clone(), info.size));
            }
        }
        let blob_path = self.blob_location(blob).ok_or_else(|| Error::MissingBlob {
            what: what.to_owned(),
            path: blob.to_string(),
        })?;
        let f = File::open(&blob_path).ctx("open", &blob_path)?;
        let (compression, plain) = decoder(f, what)?;
        // An uncompressed blob's digest is its diff_id (verified when it was staged): hashing
        // the same bytes again would cost a second sha256 pass over the layer.
        let plain_blob = compression == Compression::None;
        let mut hr = if plain_blob {
            HashReader::counting(plain)
        } else {
            HashReader::new(plain)
        };
        let must_unpack = known.is_none();
        let dir = self.next_path("layer");
        let corrupt = |e: io::Error| Error::Corrupt {
            what: what.to_owned(),
            error: e,
        };
        if must_unpack {
            fs::create_dir(&dir).ctx("create", &dir)?;
            let fd = fsutil::open_dir(&dir)?;
            let rep = unpack(&mut hr, &fd, what)?;
            self.warnings.extend(rep.warnings);
        }
        let (diff_id, size) = if plain_blob {
            (blob.clone(), hr.finish_count().map_err(corrupt)?)
        } else {
            let (d, n, _) = hr.finish().map_err(corrupt)?;
            (d, n)
        };
        if let Some(d) = expect {
            if *d != diff_id {
                return Err(Error::DiffIdMismatch {
                    what: what.to_owned(),
                    expected: d.to_string(),
                    found: diff_id.to_string(),
                });
            }
        }
        self.pairs.insert((blob.clone(), diff_id.clone()));
        if must_unpack {
            // Without an expected diff_id (import), the layer may turn out to be known.
            if expect.is_none() && self.known_layer(&diff_id).is_some() {
                fsutil::remove_tree(
                    fsutil::open_dir(self.stage.path())?,
                    dir.file_name().unwrap_or_default(),
                )
                .ctx("remove", &dir)?;
            } else {
                self.layers.insert(diff_id.clone(), (dir, size));
            }
        }
        Ok((diff_id, size))
    }

    /// The OCI media type of a staged or stored layer blob, by its magic number: for layers
    /// that came without a descriptor (docker-archive, import).
    pub(crate) fn blob_media_type(&self, blob: &Digest, what: &str) -> Result<&'static str> {
        let p = self.blob_location(blob).ok_or_else(|| Error::MissingBlob {
            what: what.to_owned(),
            path: blob.to_string(),
        })?;
        let mut head = [0u8; 8];
        let n = File::open(&p)
            .and_then(|mut f| f.read(&mut head))
            .ctx("read", &p)?;
        Ok(Compression::detect(&head[..n])?.oci_layer_media_type())
    }

    /// What is known of a layer that is stored or staged.
    fn known_layer(&self, d: &Digest) -> Option<LayerInfo> {
        if let Some((_, s)) = self.layers.get(d) {
            return Some(LayerInfo {
                diff_id: d.clone(),
                size: *s,
                blobs: BTreeSet::new(),
            });
        }
        if !self.store.has_layer(d) {
            return None;
        }
        read_info(self.store, d)
    }

    /// Moves everything staged into the store and registers `images` with their names, under
    /// the lock. `refs` is written last.
    pub(crate) fn commit(self, images: &[(ImageRecord, Vec<Name>)]) -> Result<()> {
        let store = self.store;
        let lock = store.lock()?;
        store.collect_stale(&lock)?;
        if !self.layers.is_empty() {
            // One syncfs(2) makes every unpacked file durable before the renames publish them.
            let fd = fsutil::open_dir(self.stage.path())?;
            rustix::fs::syncfs(&fd).ctx("syncfs", self.stage.path())?;
        }
        for (d, p) in &self.blobs {
            let dst = store.blob_path(d);
            if !dst.exists() {
                fs::rename(p, &dst).ctx("store blob", &dst)?;
            }
        }
        let layers_dir = store.root().join("layers");
        for (d, (p, size)) in &self.layers {
            if store.has_layer(d) {
                continue;
            }
            let blobs = self
                .pairs
                .iter()
                .filter(|(_, x)| x == d)
                .map(|(b, _)| b.clone())
                .collect();
            write_info(
                store,
                &LayerInfo {
                    diff_id: d.clone(),
                    size: *size,
                    blobs,
                },
            )?;
            publish_dir(p, &store.layer_path(d))?;
        }
        // Verified pairs of layers that were already stored.
        for (b, d) in &self.pairs {
            if self.layers.contains_key(d) {
                continue;
            }
            if let Some(mut info) = read_info(store, d) {
                if info.blobs.insert(b.clone()) {
                    write_info(store, &info)?;
                }
            }
        }
        fsutil::sync_dir(&store.root().join("blobs/sha256"))?;
        fsutil::sync_dir(&layers_dir)?;
        for (rec, _) in images {
            for b in rec.blobs() {
                if !store.has_blob(b) {
                    return Err(Error::Conflict(format!(
                        "blob {b} was removed by a concurrent command; run the command again"
                    )));
                }
            }
            for l in &rec.layers {
                if !store.has_layer(&l.diff_id) {
                    return Err(Error::Conflict(format!(
                        "layer {} was removed by a concurrent command; run the command again",
                        l.diff_id
                    )));
                }
            }
            store.write_image(rec)?;
        }
        let mut refs = store.refs()?;
        for (rec, names) in images {
            for n in names {
                refs.set_name(n.to_string(), &rec.id);
            }
            if !refs.images().contains(&rec.id) {
                refs.untagged.insert(rec.id.clone());
            }
        }
        store.write_refs(&refs, &lock)?;
        Ok(())
    }
}

fn read_info(store: &Store, d: &Digest) -> Option<LayerInfo> {
    let p = store
        .root()
        .join("layerinfo")
        .join(format!("{}.json", d.hex()));
    serde_json::from_slice(&fs::read(p).ok()?).ok()
}

fn write_info(store: &Store, info: &LayerInfo) -> Result<()> {
    let data = serde_json::to_vec(info).expect("serialize");
    fsutil::write_atomic(
        &store.root().join("layerinfo"),
        &format!("{}.json", info.diff_id.hex()),
        &data,
    )
}

/// Renames an unpacked layer into place. Moving a directory to another parent rewrites its
/// `..`, which needs write permission on it even for its owner (rename(2) EACCES): a layer
/// whose root is 0555 (RHEL's `/`) gets u+w for the move and its mode back after.
fn publish_dir(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::symlink_metadata(from)
        .ctx("stat", from)?
        .permissions()
        .mode()
        & 0o7777;
    let locked = mode & 0o200 == 0;
    if locked {
        fs::set_permissions(from, fs::Permissions::from_mode(mode | 0o200)).ctx("chmod", from)?;
    }
    fs::rename(from, to).ctx("store layer", to)?;
    if locked {
        fs::set_permissions(to, fs::Permissions::from_mode(mode)).ctx("chmod", to)?;
    }
    Ok(())
}
