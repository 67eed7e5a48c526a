//! The image verbs that need no archive: resolve, list, tag, rmi, prune, df, leases.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fs;

use oci_spec::image::ImageConfiguration;

use crate::digest::{is_lower_hex, Digest};
use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::reference::Name;
use crate::store::{du, ImageRecord, Refs, Store};

/// An image with everything the listing verbs show.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The record.
    pub record: ImageRecord,
    /// Its names, sorted.
    pub names: Vec<String>,
    /// Containers that use it.
    pub holders: Vec<String>,
}

/// What `rmi` did, in order, as docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// A name was removed.
    Untagged(String),
    /// An image was deleted.
    Deleted(Digest),
}

/// Space used by images, as `system df -v` shows it.
#[derive(Debug, Clone)]
pub struct ImageUsage {
    /// The image.
    pub info: ImageInfo,
    /// Sum of its layers' sizes.
    pub size: u64,
    /// Size of its layers that another image also uses.
    pub shared: u64,
    /// Size of its layers no other image uses.
    pub unique: u64,
}

/// Totals for `system df`.
#[derive(Debug, Clone, Default)]
pub struct DiskUsage {
    /// Per image.
    pub images: Vec<ImageUsage>,
    /// Images that containers use.
    pub active: usize,
    /// Every layer counted once.
    pub total: u64,
    /// What removing every unused image would free.
    pub reclaimable: u64,
}

impl Store {
    /// Finds an image by name (`[registry/][user/]repo[:tag]`, short names also as
    /// `localhost/...`), by full id (`sha256:<hex>` or hex), or by a unique id prefix.
    pub fn resolve(&self, reference: &str) -> Result<Digest> {
        let refs = self.refs()?;
        resolve_in(&refs, reference)
    }

    /// Every image, newest first, with names and holders.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let _l = self.lock_shared()?;
        let refs = self.refs()?;
        let mut out = Vec::new();
        for id in refs.images() {
            out.push(self.info_of(&refs, &id)?);
        }
        out.sort_by(|a, b| {
            b.record
                .created
                .cmp(&a.record.created)
                .then(a.names.cmp(&b.names))
        });
        Ok(out)
    }

    /// One image, by reference.
    pub fn info(&self, reference: &str) -> Result<ImageInfo> {
        let _l = self.lock_shared()?;
        let refs = self.refs()?;
        let id = resolve_in(&refs, reference)?;
        self.info_of(&refs, &id)
    }

    fn info_of(&self, refs: &Refs, id: &Digest) -> Result<ImageInfo> {
        Ok(ImageInfo {
            record: self.image(id)?,
            names: refs.names_of(id),
            holders: refs.holders_of(id),
        })
    }

    /// An image's parsed config.
    pub fn config(&self, id: &Digest) -> Result<ImageConfiguration> {
        let b = self.read_blob(id)?;
        serde_json::from_slice(&b)
            .map_err(|e| Error::invalid(format!("config {id}"), e.to_string()))
    }

    /// `tag SRC DST`: points the name DST at SRC's image.
    pub fn tag(&self, src: &str, dst: &str) -> Result<Digest> {
        let name = Name::parse(dst)?;
        let lock = self.lock()?;
        let mut refs = self.refs()?;
        let id = resolve_in(&refs, src)?;
        refs.set_name(name.to_string(), &id);
        self.write_refs(&refs, &lock)?;
        Ok(id)
    }

    /// `rmi [-f] IMAGE`: removes a name, or (by id) every name; the image is deleted when it
    /// has no name left and no container uses it, and then its layers and blobs that no other
    /// image uses. Refused without `force` when a container uses the image, or when an id is
    /// given for an image with several names (docker's "referenced in multiple repositories").
    pub fn remove(&self, reference: &str, force: bool) -> Result<Vec<Removal>> {
        let lock = self.lock()?;
        let mut refs = self.refs()?;
        let id = resolve_in(&refs, reference)?;
        let by_name = Name::parse(reference).ok().and_then(|n| {
            n.candidates()
                .into_iter()
                .map(|c| c.to_string())
                .find(|c| refs.names.get(c) == Some(&id))
        });
        let names = refs.names_of(&id);
        let holders = refs.holders_of(&id);
        let mut out = Vec::new();
        let untag: Vec<String> = match by_name {
            Some(n) => vec![n],
            None => {
                if names.len() > 1 && !force {
                    return Err(Error::Conflict(format!(
                        "image {} is referenced by several names ({}); remove them by name, or use -f",
                        id.short(),
                        names.join(", ")
                    )));
                }
                names.clone()
            }
        };
        let last = untag.len() == names.len();
        if last && !holders.is_empty() && !force {
            return Err(Error::Conflict(format!(
                "image {} ({}) is in use by container(s) {}; stop and remove them, or use -f",
                id.short(),
                reference,
                holders.join(", ")
            )));
        }
        for n in untag {
            refs.names.remove(&n);
            out.push(Removal::Untagged(n));
        }
        if last {
            if holders.is_empty() {
                refs.untagged.remove(&id);
                out.push(Removal::Deleted(id.clone()));
            } else {
                // Kept for its containers, shown as <none> until they are gone.
                refs.untagged.insert(id.clone());
            }
        }
        self.write_refs(&refs, &lock)?;
        self.collect(&refs)?;
        Ok(out)
    }

    /// `image prune`: deletes untagged images no container uses, then everything no image
    /// references, and stale staging data. Returns the deleted images and the bytes freed.
    pub fn prune(&self) -> Result<(Vec<Digest>, u64)> {
        let lock = self.lock()?;
        let mut freed = self.collect_stale(&lock)?;
        let mut refs = self.refs()?;
        let held: BTreeSet<Digest> = refs.leases.values().cloned().collect();
        let gone: Vec<Digest> = refs
            .untagged
            .iter()
            .filter(|d| !held.contains(*d))
            .cloned()
            .collect();
        for d in &gone {
            refs.untagged.remove(d);
        }
        self.write_refs(&refs, &lock)?;
        freed += self.collect(&refs)?;
        Ok((gone, freed))
    }

    /// Deletes image records, layers and blobs that no image in `refs` uses. Call with the
    /// lock held. Layers leave `layers/` by an atomic rename into `tmp/` before they are
    /// deleted, so an interrupted deletion is never mistaken for a layer.
    fn collect(&self, refs: &Refs) -> Result<u64> {
        let live = refs.images();
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        for id in &live {
            let r = self.image(id)?;
            blobs.extend(r.blobs().cloned());
            layers.extend(r.layers.iter().map(|l| l.diff_id.clone()));
        }
        let mut freed = 0;
        let images_dir = self.root().join("images");
        for name in fs::read_dir(&images_dir).ctx("list", &images_dir)? {
            let p = name.ctx("list", &images_dir)?.path();
            let keep = p
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| Digest::from_hex(s).ok())
                .is_some_and(|d| live.contains(&d));
            if !keep {
                fs::remove_file(&p).ctx("remove", &p)?;
            }
        }
        let bdir = self.root().join("blobs/sha256");
        for e in fs::read_dir(&bdir).ctx("list", &bdir)? {
            let e = e.ctx("list", &bdir)?;
            let keep = e
                .file_name()
                .to_str()
                .and_then(|s| Digest::from_hex(s).ok())
                .is_some_and(|d| blobs.contains(&d));
            if !keep {
                freed += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path()).ctx("remove", e.path())?;
            }
        }
        let ldir = self.root().join("layers");
        let tmp = self.root().join("tmp");
        for e in fs::read_dir(&ldir).ctx("list", &ldir)? {
            let e = e.ctx("list", &ldir)?;
            let fname = e.file_name();
            let s = fname.to_string_lossy();
            if Digest::from_hex(&s).is_ok_and(|d| layers.contains(&d)) {
                continue;
            }
            let doomed = tmp.join(format!("rm-{s}"));
            freed += du(&e.path());
            fs::rename(e.path(), &doomed).ctx("remove layer", e.path())?;
            fsutil::remove_tree(fsutil::open_dir(&tmp)?, OsStr::new(&format!("rm-{s}")))
                .ctx("remove", &doomed)?;
        }
        // Layer records go with their layers (and with any a crash left without one).
        let idir = self.root().join("layerinfo");
        for e in fs::read_dir(&idir).ctx("list", &idir)? {
            let e = e.ctx("list", &idir)?;
            let fname = e.file_name();
            let s = fname.to_string_lossy();
            let keep = s
                .strip_suffix(".json")
                .and_then(|h| Digest::from_hex(h).ok())
                .is_some_and(|d| layers.contains(&d));
            if !keep {
                match fs::remove_file(e.path()) {
                    Err(err) if !fsutil::is_absent(&err) => {
                        return Err(Error::io("remove", e.path(), err))
                    }
                    _ => {}
                }
            }
        }
        Ok(freed)
    }

    /// Records that container `holder` uses `image`: the image is then never deleted.
    pub fn lease(&self, holder: &str, image: &Digest) -> Result<()> {
        let lock = self.lock()?;
        let mut refs = self.refs()?;
        if !refs.images().contains(image) {
            return Err(Error::NotFound(image.to_string()));
        }
        refs.leases.insert(holder.to_owned(), image.clone());
        self.write_refs(&refs, &lock)
    }

    /// Drops `holder`'s lease. An image left with no name and no lease stays, untagged,
    /// until `image prune`, as docker keeps `<none>` images.
    pub fn release(&self, holder: &str) -> Result<()> {
        let lock = self.lock()?;
        let mut refs = self.refs()?;
        if let Some(id) = refs.leases.remove(holder) {
            if !refs.images().contains(&id) {
                refs.untagged.insert(id);
            }
        }
        self.write_refs(&refs, &lock)
    }

    /// `system df`: per-image size, shared and unique sizes, and totals.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let list = self.list()?;
        let mut users: BTreeMap<Digest, usize> = BTreeMap::new();
        let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
        for i in &list {
            let distinct: BTreeSet<&Digest> = i.record.layers.iter().map(|l| &l.diff_id).collect();
            for d in distinct {
                *users.entry(d.clone()).or_default() += 1;
            }
            for l in &i.record.layers {
                sizes.insert(l.diff_id.clone(), l.size);
            }
        }
        let mut du = DiskUsage {
            total: sizes.values().sum(),
            ..Default::default()
        };
        let mut active_layers = BTreeSet::new();
        for i in &list {
            if !i.holders.is_empty() {
                du.active += 1;
                active_layers.extend(i.record.layers.iter().map(|l| l.diff_id.clone()));
            }
        }
        du.reclaimable = sizes
            .iter()
            .filter(|(d, _)| !active_layers.contains(*d))
            .map(|(_, s)| s)
            .sum();
        for i in list {
            let distinct: BTreeMap<&Digest, u64> = i
                .record
                .layers
                .iter()
                .map(|l| (&l.diff_id, l.size))
                .collect();
            let size = distinct.values().sum();
            let shared = distinct
                .iter()
                .filter(|(d, _)| users[**d] > 1)
                .map(|(_, s)| s)
                .sum();
            du.images.push(ImageUsage {
                size,
                shared,
                unique: size - shared,
                info: i,
            });
        }
        Ok(du)
    }
}

/// Resolves a reference against `refs`: names first (as docker does), then ids.
pub(crate) fn resolve_in(refs: &Refs, reference: &str) -> Result<Digest> {
    if let Ok(name) = Name::parse(reference) {
        for c in name.candidates() {
            if let Some(id) = refs.names.get(&c.to_string()) {
                return Ok(id.clone());
            }
        }
    }
    let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
    if is_lower_hex(hex) && hex.len() <= 64 {
        let matches: Vec<Digest> = refs
            .images()
            .into_iter()
            .filter(|d| d.hex().starts_with(hex))
            .collect();
        match matches.len() {
            0 => {}
            1 => return Ok(matches[0].clone()),
            _ => {
                return Err(Error::Ambiguous {
                    prefix: reference.to_owned(),
                    candidates: matches.iter().map(|d| d.to_string()).collect(),
                })
            }
        }
    } else {
        Name::parse(reference)?;
    }
    Err(Error::NotFound(reference.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        Digest::from_hex(&c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn resolves_names_then_unique_prefixes() {
        let mut refs = Refs::default();
        refs.set_name("localhost/bb:2".into(), &d('a'));
        refs.set_name("app:latest".into(), &d('b'));
        refs.untagged
            .insert(Digest::from_hex(&format!("ab{}", "0".repeat(62))).unwrap());
        assert_eq!(resolve_in(&refs, "bb:2").unwrap(), d('a'));
        assert_eq!(resolve_in(&refs, "app").unwrap(), d('b'));
        assert_eq!(resolve_in(&refs, "bbb").unwrap(), d('b'));
        assert_eq!(
            resolve_in(&refs, &format!("sha256:{}", "a".repeat(64))).unwrap(),
            d('a')
        );
        match resolve_in(&refs, "a") {
            Err(Error::Ambiguous { candidates, .. }) => assert_eq!(candidates.len(), 2),
            other => panic!("{other:?}"),
        }
        assert!(matches!(resolve_in(&refs, "nope"), Err(Error::NotFound(_))));
        assert!(matches!(
            resolve_in(&refs, "Bad_Name"),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn retagging_leaves_the_old_image_untagged() {
        let mut refs = Refs::default();
        refs.set_name("x:1".into(), &d('a'));
        refs.set_name("y:1".into(), &d('a'));
        refs.set_name("x:1".into(), &d('b'));
        assert!(refs.untagged.is_empty(), "a still has y:1");
        refs.set_name("y:1".into(), &d('b'));
        assert!(refs.untagged.contains(&d('a')));
        assert_eq!(refs.images().len(), 2);
        refs.set_name("z:1".into(), &d('a'));
        assert!(!refs.untagged.contains(&d('a')));
    }
}
