//! Hard links of lower files: `st_nlink` counts only the names the union still shows.
//!
//! fuse-overlayfs reports the lower link count, or "names seen so far" (#435, #192), and the
//! kernel without `index=on` reports the lower count even after a name is whited out. strata
//! indexes, per lower layer and only when a file with more than one link is first seen, which
//! paths share each inode, and counts the ones that still resolve to that lower inode.

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use parking_lot::Mutex;
use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags};

use super::Union;
use crate::layer::LayerId;

/// (device, inode) → union paths (relative to the root) of files with more than one link.
/// The device too: a layer directory can hold mount points, and inode numbers repeat across
/// filesystems.
pub(crate) type Links = HashMap<(u64, u64), Vec<Vec<u8>>>;

/// A layer's link index, and whether its walk saw the whole layer.
#[derive(Debug, Default)]
pub(crate) struct LayerLinks {
    paths: Links,
    /// No directory was skipped (unreadable, too deep): an inode with links that is not in
    /// `paths` has exactly one name in the layer.
    complete: bool,
}

/// Link indexes, one per lower layer, built on first use.
#[derive(Debug, Default)]
pub(crate) struct LinkIndex {
    layers: Mutex<HashMap<LayerId, Arc<LayerLinks>>>,
}

impl Union {
    fn layer_links(&self, l: LayerId) -> Arc<LayerLinks> {
        if let Some(x) = self.links.layers.lock().get(&l) {
            return x.clone();
        }
        let mut map = LayerLinks {
            paths: Links::new(),
            complete: true,
        };
        let root = &self.stack.layers[l as usize].root;
        match rfs::openat(
            root,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(d) => walk(&d, &[], &mut map, 0),
            Err(_) => map.complete = false,
        }
        // An inode with one path in this layer has its other links elsewhere (a `cp -al`
        // copy, an ostree or flatpak checkout of a shared object store): the union shows it
        // under that one name, and nothing needs resolving to say so.
        map.paths.retain(|_, paths| paths.len() > 1);
        let map = Arc::new(map);
        self.links.layers.lock().insert(l, map.clone());
        map
    }

    /// The number of union names of the file `id` (device, inode; with `nlink` links) in
    /// lower layer `l`.
    pub(crate) fn lower_nlink(&self, l: LayerId, id: (u64, u64), nlink: u64) -> u32 {
        if nlink <= 1 {
            return nlink as u32;
        }
        let index = self.layer_links(l);
        let Some(paths) = index.paths.get(&id) else {
            // Its only name in the layer is the one being looked at (see `layer_links`), if
            // the walk saw the whole layer; else what the layer says.
            return if index.complete { 1 } else { nlink as u32 };
        };
        let visible = paths.iter().filter(|p| self.still_shows(p, l, id)).count();
        visible as u32
    }

    /// True when union path `p` still shows the lower file `id` (device, inode) of layer `l`.
    fn still_shows(&self, p: &[u8], l: LayerId, id: (u64, u64)) -> bool {
        matches!(self.resolve_path(p),
            Ok(Some(f)) if f.layers[0] == l && (f.st.st_dev, f.st.st_ino) == id)
    }

    /// Other union paths of the lower file `id` (device, inode) in layer `l` that still show
    /// it.
    pub(crate) fn lower_aliases(&self, l: LayerId, id: (u64, u64), except: &[u8]) -> Vec<Vec<u8>> {
        let index = self.layer_links(l);
        let Some(paths) = index.paths.get(&id) else {
            return Vec::new();
        };
        paths
            .iter()
            .filter(|p| p.as_slice() != except)
            .filter(|p| self.still_shows(p, l, id))
            .cloned()
            .collect()
    }
}

fn walk(dir: &std::os::fd::OwnedFd, prefix: &[u8], map: &mut LayerLinks, depth: usize) {
    if depth > 256 {
        map.complete = false;
        return;
    }
    let Ok(mut d) = Dir::read_from(dir) else {
        map.complete = false;
        return;
    };
    let mut subdirs = Vec::new();
    while let Some(e) = d.read() {
        let Ok(e) = e else {
            map.complete = false;
            break;
        };
        let name = e.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let mut path = prefix.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend_from_slice(name);
        match e.file_type() {
            FileType::Directory => subdirs.push((name.to_vec(), path)),
            // DT_UNKNOWN too (XFS without ftype, some network filesystems): the stat says.
            _ => match rfs::statat(
                dir,
                std::ffi::OsStr::from_bytes(name),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                    subdirs.push((name.to_vec(), path))
                }
                Ok(st) if st.st_nlink > 1 => map
                    .paths
                    .entry((st.st_dev, st.st_ino))
                    .or_default()
                    .push(path),
                Ok(_) => {}
                Err(_) => map.complete = false,
            },
        }
    }
    for (name, path) in subdirs {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rfs::openat(
            dir,
            std::ffi::OsStr::from_bytes(&name),
            flags,
            Mode::empty(),
        ) {
            Ok(sub) => walk(&sub, &path, map, depth + 1),
            Err(_) => map.complete = false,
        }
    }
}
