//! Merged directory listings, built once per directory and cached until the directory changes.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, Dir, FileType};

use super::{Ino, Union};
use crate::error::{Op, Result};
use crate::whiteout;

/// An open directory: `.`, `..` and the merged entries as (name, inode, type).
pub type Snapshot = Vec<(Vec<u8>, Ino, FileType)>;

/// One visible entry.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Name bytes.
    pub name: Vec<u8>,
    /// Inode number, equal to what `stat` reports (`d_ino == st_ino`).
    pub ino: Ino,
    /// File type.
    pub kind: FileType,
}

/// A merged directory listing (without `.` and `..`).
#[derive(Debug, Default)]
pub struct Listing {
    /// Entries in a stable order; readdir offsets index into it.
    pub entries: Vec<DirEntry>,
    index: HashSet<Vec<u8>>,
}

impl Listing {
    /// A listing of `entries` (sorted by the caller).
    pub fn new(entries: Vec<DirEntry>) -> Self {
        let index = entries.iter().map(|e| e.name.clone()).collect();
        Listing { entries, index }
    }

    /// True when `name` is a visible entry.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.index.contains(name)
    }
}

impl Union {
    /// The merged listing of directory `ino`, from the cache or built now.
    pub fn listing(&self, ino: Ino) -> Result<Arc<Listing>> {
        if self.cfg.diff {
            return self.diff_listing(ino);
        }
        let node = self.node(ino)?;
        if let Some(l) = node.listing.lock().clone() {
            return Ok(l);
        }
        let st = node.state();
        let mut entries: Vec<DirEntry> = Vec::new();
        let mut decided: HashSet<Vec<u8>> = HashSet::new();
        for &l in &st.layers {
            let dirfd = match self.dir_fd_read(ino, l) {
                Ok(d) => d,
                Err(e) if crate::error::is_absent(e.errno) => continue,
                Err(e) => return Err(e),
            };
            let mut hidden_below: Vec<Vec<u8>> = Vec::new();
            let mut here: HashMap<Vec<u8>, (FileType, u64)> = HashMap::new();
            let mut d = Dir::read_from(&dirfd).op("readdir")?;
            while let Some(e) = d.read() {
                let e = e.op("readdir")?;
                let n = e.file_name().to_bytes();
                if n == b"." || n == b".." || n == whiteout::OPAQUE_MARKER {
                    continue;
                }
                if let Some(t) = whiteout::wh_target(n) {
                    hidden_below.push(t.to_vec());
                    continue;
                }
                if whiteout::is_reserved(n) {
                    continue;
                }
                here.insert(n.to_vec(), (e.file_type(), e.ino()));
            }
            for (name, (mut kind, d_ino)) in here {
                if !decided.insert(name.clone()) {
                    continue;
                }
                let os = OsStr::from_bytes(&name);
                let needs_stat = matches!(kind, FileType::CharacterDevice | FileType::Unknown)
                    || self.is_upper(l);
                let mut ino = self.tagged(l, d_ino);
                if needs_stat {
                    let Ok(s) = rfs::statat(&dirfd, os, AtFlags::SYMLINK_NOFOLLOW) else {
                        continue;
                    };
                    if whiteout::is_char_whiteout(&s) {
                        continue;
                    }
                    kind = FileType::from_raw_mode(s.st_mode);
                    ino = self.ino_of(l, &s, &dirfd, os);
                }
                entries.push(DirEntry { name, ino, kind });
            }
            decided.extend(hidden_below);
        }
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let index = entries.iter().map(|e| e.name.clone()).collect();
        let listing = Arc::new(Listing { entries, index });
        *node.listing.lock() = Some(listing.clone());
        Ok(listing)
    }

    /// Opens directory `ino` for reading: a snapshot of `.`, `..` and the merged listing.
    pub fn opendir(&self, ino: Ino) -> Result<u64> {
        let snap = self.snapshot(ino)?;
        let fh = self.next_fh();
        self.dir_handles.insert(fh, snap);
        Ok(fh)
    }

    /// The entries of an open directory (`fh` from [`Union::opendir`]), `.` and `..` first;
    /// readdir offset N resumes at index N.
    pub fn readdir(&self, ino: Ino, fh: u64) -> Result<Arc<Snapshot>> {
        match self.dir_handles.get(&fh) {
            Some(s) => Ok(s.clone()),
            None => self.snapshot(ino),
        }
    }

    /// Closes an open directory.
    pub fn releasedir(&self, fh: u64) {
        self.dir_handles.remove(&fh);
    }

    fn snapshot(&self, ino: Ino) -> Result<Arc<Snapshot>> {
        let l = self.listing(ino)?;
        let mut v = Vec::with_capacity(l.entries.len() + 2);
        v.push((b".".to_vec(), ino, FileType::Directory));
        v.push((b"..".to_vec(), self.parent_of(ino)?, FileType::Directory));
        v.extend(l.entries.iter().map(|e| (e.name.clone(), e.ino, e.kind)));
        Ok(Arc::new(v))
    }

    /// True when directory `ino` has no visible entry.
    pub(crate) fn is_empty_dir(&self, ino: Ino) -> Result<bool> {
        self.dir_changed(ino);
        Ok(self.listing(ino)?.entries.is_empty())
    }

    /// `..` of `ino` (the root's is itself).
    pub fn parent_of(&self, ino: Ino) -> Result<Ino> {
        Ok(self.node(ino)?.st.read().parent)
    }
}
