//! A bounded cache of directory fds, by (node, layer).
//!
//! Every operation under a directory reaches it in a layer by resolving its union path from the
//! layer root (`openat2`, one path walk per call). `rm -rf` pays that three times per file: the
//! GETATTR of the parent the kernel sends after every UNLINK (`fuse_dir_changed` drops all of
//! the directory's attributes, fs/fuse/dir.c), the UNLINK's resolution, and its whiteout. The
//! cache keeps the last directories reached, so a run of operations in one directory walks the
//! path once.
//!
//! An entry is the directory object the node showed in that layer when it was opened. It stays
//! right while the node keeps its path: lowers never change, and the upper changes only through
//! this daemon. The union drops every entry when a directory is renamed or removed (under the
//! tree lock, so no open that raced with it is stored after), and a node's entries when the
//! kernel forgets it. The map is cleared when it reaches [`CAP`] entries: simpler than an LRU
//! on the request path, and bounded, so a walk of a million directories holds no more fds.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use super::Ino;
use crate::layer::LayerId;

/// At most this many fds are kept (well under the usual RLIMIT_NOFILE of 1024).
pub(crate) const CAP: usize = 256;

#[derive(Debug, Default)]
pub(crate) struct DirFds {
    map: DashMap<(Ino, LayerId), Arc<OwnedFd>>,
    len: AtomicUsize,
}

impl DirFds {
    pub(crate) fn get(&self, ino: Ino, l: LayerId) -> Option<Arc<OwnedFd>> {
        self.map.get(&(ino, l)).map(|e| e.clone())
    }

    pub(crate) fn insert(&self, ino: Ino, l: LayerId, fd: Arc<OwnedFd>) {
        if self.len.load(Ordering::Relaxed) >= CAP {
            self.clear();
        }
        if self.map.insert((ino, l), fd).is_none() {
            self.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn clear(&self) {
        self.map.clear();
        self.len.store(0, Ordering::Relaxed);
    }

    /// Drops the entries of node `ino` in `layers`.
    pub(crate) fn forget(&self, ino: Ino, layers: &[LayerId]) {
        for &l in layers {
            if self.map.remove(&(ino, l)).is_some() {
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> Arc<OwnedFd> {
        Arc::new(std::fs::File::open("/").unwrap().into())
    }

    #[test]
    fn bounded_and_forgets() {
        let c = DirFds::default();
        c.insert(5, 1, fd());
        c.insert(5, 2, fd());
        assert!(c.get(5, 1).is_some());
        c.forget(5, &[1]);
        assert!(c.get(5, 1).is_none());
        assert!(c.get(5, 2).is_some());
        for i in 0..(CAP as u64 * 3) {
            c.insert(100 + i, 0, fd());
            assert!(c.map.len() <= CAP, "{} entries", c.map.len());
        }
        c.clear();
        assert!(c.get(100, 0).is_none());
    }
}
