//! Resolution through the layer stack: the first layer that has a name wins, a whiteout stops
//! the search, and a directory merges with the same directory below until an opaque one
//! (Documentation/filesystems/overlayfs.rst, "whiteouts and opaque directories").

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::{Found, Ino, NodeState, Union, ROOT};
use crate::error::{is_absent, Error, Result};
use crate::layer::LayerId;
use crate::whiteout;

/// Files smaller than this are copied whole even on a `metacopy=on` mount: their copy costs
/// about a millisecond, and their size keeps a metacopy recognizable by its blocks.
pub(crate) const METACOPY_MIN: u64 = 1 << 20;

/// The mark of a metacopy, in both namespaces: the layer may have been the upper of a mount
/// with the other one (root writes `trusted.`, a plain user and a read-only view read `user.`).
pub(crate) const METACOPY_XATTRS: [&str; 2] = [
    "trusted.overlay.strata.metacopy",
    "user.overlay.strata.metacopy",
];

impl Union {
    /// True when the root of layer `l` is marked opaque.
    pub(crate) fn is_opaque_root(&self, l: LayerId) -> bool {
        let root = &self.stack.layers[l as usize].root;
        self.is_opaque_dir(root, OsStr::new("."))
    }

    /// True when directory `name` in `dirfd` is opaque, in any of the formats.
    pub(crate) fn is_opaque_dir(&self, dirfd: &OwnedFd, name: &OsStr) -> bool {
        let mut p = Self::proc_path(dirfd, name);
        if name.as_bytes() == b"." {
            // `/proc/self/fd/N` is a magic link, and the l*xattr calls would read the link
            // itself; `/.` makes them read the directory it points at.
            p.extend_from_slice(b"/.");
        }
        let path = OsStr::from_bytes(&p);
        let mut names = [0u8; 4096];
        let has_xattr = match rfs::llistxattr(path, &mut names[..]) {
            Ok(n) => names[..n]
                .split(|b| *b == 0)
                .any(|x| whiteout::OPAQUE_XATTRS.iter().any(|o| o.as_bytes() == x)),
            Err(Errno::RANGE) => true,
            Err(_) => false,
        };
        if has_xattr {
            for x in whiteout::OPAQUE_XATTRS {
                let mut v = [0u8; 8];
                if let Ok(n) = rfs::lgetxattr(path, *x, &mut v[..]) {
                    if whiteout::opaque_value(&v[..n]) {
                        return true;
                    }
                }
            }
        }
        match rfs::openat(
            dirfd,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(d) => rfs::statat(
                &d,
                OsStr::from_bytes(whiteout::OPAQUE_MARKER),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .is_ok(),
            Err(_) => false,
        }
    }

    /// True when upper object `name` (stat `st`) is a metacopy file. Only a regular file of
    /// [`METACOPY_MIN`] bytes or more whose blocks hold less than its size can be one (its
    /// blocks are at most an xattr block), so other files cost no xattr read.
    pub(crate) fn is_metacopy(&self, dirfd: &OwnedFd, name: &OsStr, st: &Stat) -> bool {
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
            || (st.st_size as u64) < METACOPY_MIN
            || (st.st_blocks as u64).saturating_mul(512) >= st.st_size as u64
        {
            return false;
        }
        let p = Self::proc_path(dirfd, name);
        METACOPY_XATTRS
            .iter()
            .any(|x| rfs::lgetxattr(OsStr::from_bytes(&p), *x, &mut [0u8; 0][..]).is_ok())
    }

    /// The layer among `below` (the layers under a metacopy file) whose `name` holds its
    /// data: the first that has the name, if it is a regular file. None when a whiteout or
    /// another type is found first, or nothing: the data is gone, and the file reads as
    /// the zeros the upper holds (it keeps its size).
    fn data_layer(
        &self,
        below: &[LayerId],
        name: &OsStr,
        open: &impl Fn(LayerId) -> Result<Arc<OwnedFd>>,
    ) -> Result<Option<LayerId>> {
        for (i, &l) in below.iter().enumerate() {
            let dirfd = match open(l) {
                Ok(d) => d,
                Err(e) if is_absent(e.errno) => continue,
                Err(e) => return Err(e),
            };
            match rfs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                // A metacopy of a metacopy: the data is further down.
                Ok(st) if self.is_metacopy(&dirfd, name, &st) => {}
                Ok(st) => {
                    let regular = FileType::from_raw_mode(st.st_mode) == FileType::RegularFile;
                    return Ok(regular.then_some(l));
                }
                Err(e) if is_absent(e) => {
                    if i + 1 < below.len() && Self::has_wh(&dirfd, name) {
                        return Ok(None);
                    }
                }
                Err(e) => return Err(Error::new("lookup: metacopy data", e)),
            }
        }
        Ok(None)
    }

    /// True when `.wh.NAME` exists in `dirfd`.
    pub(crate) fn has_wh(dirfd: &OwnedFd, name: &OsStr) -> bool {
        match whiteout::wh_name(name) {
            Some(w) => rfs::statat(dirfd, OsStr::from_bytes(&w), AtFlags::SYMLINK_NOFOLLOW).is_ok(),
            None => false,
        }
    }

    /// Resolves `name` under the directory described by `pst` (inode `parent`) through the
    /// layers: the first layer that has it wins; a whiteout stops the search; a directory
    /// collects the same directory from lower layers until an opaque one.
    pub(crate) fn resolve(
        &self,
        parent: Ino,
        pst: &NodeState,
        name: &OsStr,
    ) -> Result<Option<Found>> {
        if self.cfg.diff {
            let rel = {
                let _g = self.tree.read();
                self.rel_path(parent)?
            };
            return self.diff_resolve(&rel, name);
        }
        // A valid cached listing says which layer the name comes from: the layers above need
        // no look (for `rm -rf` of a lower tree, two stats of the upper per file).
        let from = self
            .node(parent)?
            .listing
            .lock()
            .as_ref()
            .filter(|l| l.is_valid())
            .and_then(|l| l.layer_of(name.as_bytes(), self.hint_epoch.load(Ordering::Acquire)))
            .and_then(|top| pst.layers.iter().position(|&l| l == top))
            .unwrap_or(0);
        self.resolve_with(&pst.layers[from..], name, |l| self.dir_fd(parent, l))
    }

    /// [`Union::resolve`] for the directory at union path `rel` supplied by `layers`.
    pub(crate) fn resolve_in(
        &self,
        rel: &[u8],
        layers: &[LayerId],
        name: &OsStr,
    ) -> Result<Option<Found>> {
        if self.cfg.diff {
            return self.diff_resolve(rel, name);
        }
        self.resolve_layers(rel, layers, name)
    }

    /// Resolves `name` in directory `rel` through `layers` as a union (first hit wins,
    /// whiteouts and opaque directories stop the search).
    pub(crate) fn resolve_layers(
        &self,
        rel: &[u8],
        layers: &[LayerId],
        name: &OsStr,
    ) -> Result<Option<Found>> {
        self.resolve_with(layers, name, |l| {
            self.open_rel(l, rel, OFlags::PATH).map(Arc::new)
        })
    }

    /// The resolution itself, with `open` reaching the directory in each layer.
    fn resolve_with(
        &self,
        layers: &[LayerId],
        name: &OsStr,
        open: impl Fn(LayerId) -> Result<Arc<OwnedFd>>,
    ) -> Result<Option<Found>> {
        let mut found: Option<Found> = None;
        for (i, &l) in layers.iter().enumerate() {
            let dirfd = match open(l) {
                Ok(d) => d,
                Err(e) if is_absent(e.errno) => continue,
                Err(e) => return Err(e),
            };
            let st = match rfs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => Some(st),
                Err(e) if is_absent(e) => None,
                Err(e) => return Err(Error::new("lookup", e)),
            };
            let last = i + 1 == layers.len();
            match (st, found.as_mut()) {
                (Some(st), None) => {
                    if whiteout::is_char_whiteout(&st) {
                        return Ok(None);
                    }
                    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
                    // A metacopy in a lower layer too: an upper becomes a lower of the next
                    // layer in containers-storage.
                    if !is_dir && self.is_metacopy(&dirfd, name, &st) {
                        let data = self.data_layer(&layers[i + 1..], name, &open)?;
                        return Ok(Some(Found {
                            layers: vec![l],
                            st,
                            dirfd,
                            data,
                        }));
                    }
                    let stop = !is_dir
                        || last
                        || Self::has_wh(&dirfd, name)
                        || self.is_opaque_dir(&dirfd, name);
                    found = Some(Found {
                        layers: vec![l],
                        st,
                        dirfd,
                        data: None,
                    });
                    if stop {
                        break;
                    }
                }
                (Some(st), Some(f)) => {
                    // Below a directory: only directories merge; anything else ends the merge.
                    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                        break;
                    }
                    f.layers.push(l);
                    if last || Self::has_wh(&dirfd, name) || self.is_opaque_dir(&dirfd, name) {
                        break;
                    }
                }
                (None, None) => {
                    if !last && Self::has_wh(&dirfd, name) {
                        return Ok(None);
                    }
                }
                (None, Some(_)) => {
                    if !last && Self::has_wh(&dirfd, name) {
                        break;
                    }
                }
            }
        }
        Ok(found)
    }

    /// Resolves a whole union path (`a/b/c`, relative to the root) without touching the node
    /// table. Used to check which names of a hard-linked lower file are still visible.
    pub(crate) fn resolve_path(&self, rel: &[u8]) -> Result<Option<Found>> {
        let root_layers = self.node(ROOT)?.state().layers;
        let mut layers = root_layers;
        let mut dir: Vec<u8> = b".".to_vec();
        let parts: Vec<&[u8]> = rel
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        for (i, part) in parts.iter().enumerate() {
            let Some(f) = self.resolve_in(&dir, &layers, OsStr::from_bytes(part))? else {
                return Ok(None);
            };
            if i + 1 == parts.len() {
                return Ok(Some(f));
            }
            if FileType::from_raw_mode(f.st.st_mode) != FileType::Directory {
                return Ok(None);
            }
            layers = f.layers;
            if dir == b"." {
                dir.clear();
            } else {
                dir.push(b'/');
            }
            dir.extend_from_slice(part);
        }
        Ok(None)
    }
}
