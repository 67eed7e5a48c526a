//! Merged directory listings, built once per directory and cached until the directory changes.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, Dir, FileType};

use super::{Ino, Union};
use crate::error::{Op, Result};
use crate::layer::LayerId;
use crate::whiteout;

/// One visible entry.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Name bytes.
    pub name: Vec<u8>,
    /// Inode number, equal to what `stat` reports (`d_ino == st_ino`).
    pub ino: Ino,
    /// File type.
    pub kind: FileType,
    /// The top layer that has it (a diff view: 0, the changeset).
    pub layer: LayerId,
}

/// A merged directory listing (without `.` and `..`).
///
/// Each entry has a slot that stays its readdir position while the directory changes: a
/// rebuilt listing keeps the slots of the names it still has and gives new names new slots
/// after every slot used so far. A reader that resumes at an offset (the kernel reads a big
/// directory in several READDIR calls, and there is no per-open snapshot once opendir is
/// skipped) then neither skips nor repeats an entry that did not change, as POSIX asks of
/// readdir(3). Slots are renumbered only when removals left them more than half empty.
#[derive(Debug)]
pub struct Listing {
    /// Entries in slot order (the first listing is sorted by name).
    pub entries: Vec<DirEntry>,
    slots: Vec<u64>,
    next_slot: u64,
    /// Name → top layer.
    index: HashMap<Vec<u8>, LayerId>,
    valid: AtomicBool,
    /// The top layers in `index` are exact: built under [`Union::hint_epoch`] `epoch`, and no
    /// copy-up into the directory since (a copy-up changes a name's top layer, not the
    /// names, so the listing itself stays valid).
    hints: AtomicBool,
    epoch: u64,
}

impl Listing {
    /// A listing of `entries`, sorted by name, in slots 0, 1, ...
    pub fn new(mut entries: Vec<DirEntry>) -> Self {
        entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let slots: Vec<u64> = (0..entries.len() as u64).collect();
        Self::with_slots(entries, slots)
    }

    fn with_slots(entries: Vec<DirEntry>, slots: Vec<u64>) -> Self {
        let index = entries.iter().map(|e| (e.name.clone(), e.layer)).collect();
        let next_slot = slots.last().map_or(0, |s| s + 1);
        Listing {
            entries,
            slots,
            next_slot,
            index,
            valid: AtomicBool::new(true),
            hints: AtomicBool::new(true),
            epoch: 0,
        }
    }

    /// `entries` laid out in `prev`'s slots where `prev` has the same name.
    fn following(entries: Vec<DirEntry>, prev: &Listing) -> Self {
        let mut by_name: HashMap<Vec<u8>, DirEntry> =
            entries.into_iter().map(|e| (e.name.clone(), e)).collect();
        let mut out = Vec::with_capacity(by_name.len());
        let mut slots = Vec::with_capacity(by_name.len());
        for (e, s) in prev.entries.iter().zip(&prev.slots) {
            if let Some(n) = by_name.remove(&e.name) {
                out.push(n);
                slots.push(*s);
            }
        }
        let mut rest: Vec<DirEntry> = by_name.into_values().collect();
        rest.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let mut next = prev.next_slot;
        for e in rest {
            out.push(e);
            slots.push(next);
            next += 1;
        }
        if next > 2 * out.len() as u64 + 1024 {
            return Self::new(out);
        }
        let mut l = Self::with_slots(out, slots);
        l.next_slot = next;
        l
    }

    /// True when `name` is a visible entry.
    pub fn contains(&self, name: &[u8]) -> bool {
        self.index.contains_key(name)
    }

    /// The top layer that has visible entry `name`: the layers above it have neither the
    /// name nor a whiteout of it, so a lookup can start there.
    pub(crate) fn layer_of(&self, name: &[u8], epoch: u64) -> Option<LayerId> {
        if !self.hints.load(Ordering::Acquire) || self.epoch != epoch {
            return None;
        }
        self.index.get(name).copied()
    }

    pub(crate) fn drop_hints(&self) {
        self.hints.store(false, Ordering::Release);
    }

    /// False once the directory changed (the listing is then rebuilt, keeping its slots).
    pub fn is_valid(&self) -> bool {
        self.valid.load(Ordering::Acquire)
    }

    pub(crate) fn invalidate(&self) {
        self.valid.store(false, Ordering::Release);
    }

    /// The entries from slot `slot` on, each with its slot.
    pub fn from_slot(&self, slot: u64) -> impl Iterator<Item = (&DirEntry, u64)> {
        let i = self.slots.partition_point(|s| *s < slot);
        self.entries[i..]
            .iter()
            .zip(self.slots[i..].iter().copied())
    }
}

/// A directory being read: its listing and its parent (for `..`).
#[derive(Debug)]
pub struct DirStream {
    /// The directory.
    pub ino: Ino,
    /// Its parent (the root's is itself).
    pub parent: Ino,
    /// What it holds.
    pub listing: Arc<Listing>,
}

impl DirStream {
    /// The entries from readdir offset `off` on, `.` and `..` first, each with the offset
    /// that resumes after it: `.` is 1, `..` is 2, and the entry in slot S is S + 3.
    pub fn from_offset(&self, off: u64) -> impl Iterator<Item = (&[u8], Ino, FileType, u64)> {
        let dots = [
            (&b"."[..], self.ino, FileType::Directory, 1),
            (&b".."[..], self.parent, FileType::Directory, 2),
        ];
        let rest = self
            .listing
            .from_slot(off.saturating_sub(2))
            .map(|(e, s)| (e.name.as_slice(), e.ino, e.kind, s + 3));
        dots.into_iter().skip(off.min(2) as usize).chain(rest)
    }
}

impl Union {
    /// A copy-up into directory `ino` changes the top layer of a name in it (called before
    /// and after the name appears in the upper).
    pub(crate) fn drop_layer_hints(&self, ino: Ino) {
        // A listing being built now may have read the upper before the copy: it is stored
        // stale (see `listing_gen`).
        self.listing_changed(ino, Listing::drop_hints);
    }

    /// Bumps `listing_gen` of directory `ino` (so a listing being built is stored stale) and
    /// applies `f` to its cached listing, under the listing lock (see the store in
    /// `listing`, which checks the generation under that lock).
    pub(crate) fn listing_changed(&self, ino: Ino, f: impl FnOnce(&Listing)) {
        if let Some(n) = self.nodes.get(&ino) {
            let slot = n.listing.lock();
            n.listing_gen.fetch_add(1, Ordering::AcqRel);
            if let Some(l) = slot.as_ref() {
                f(l);
            }
        }
    }

    /// The same, for every directory.
    pub(crate) fn drop_all_layer_hints(&self) {
        self.hint_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The merged listing of directory `ino`, from the cache or built now.
    pub fn listing(&self, ino: Ino) -> Result<Arc<Listing>> {
        if self.cfg.diff {
            return self.diff_listing(ino);
        }
        let node = self.node(ino)?;
        if let Some(l) = node.listing.lock().clone().filter(|l| l.is_valid()) {
            return Ok(l);
        }
        let _build = node.listing_build.lock();
        let prev = node.listing.lock().clone();
        if let Some(l) = prev.as_ref().filter(|l| l.is_valid()) {
            return Ok(l.clone());
        }
        let generation = node.listing_gen.load(Ordering::Acquire);
        let epoch = self.hint_epoch.load(Ordering::Acquire);
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
            // A directory of a filesystem mounted inside the layer numbers its own entries.
            let dev = rfs::fstat(&dirfd).op("fstat")?.st_dev;
            let mut d = Dir::read_from(&dirfd).op("readdir")?;
            while let Some(e) = d.read() {
                let e = e.op("readdir")?;
                let n = e.file_name().to_bytes();
                match whiteout::classify(n) {
                    Some(whiteout::Entry::Whiteout(t)) => hidden_below.push(t.to_vec()),
                    Some(whiteout::Entry::Name(n)) => {
                        here.insert(n.to_vec(), (e.file_type(), e.ino()));
                    }
                    None => {}
                }
            }
            for (name, (mut kind, d_ino)) in here {
                if !decided.insert(name.clone()) {
                    continue;
                }
                let os = OsStr::from_bytes(&name);
                let needs_stat = matches!(kind, FileType::CharacterDevice | FileType::Unknown)
                    || self.is_upper(l);
                let mut ino = self.tagged(l, dev, d_ino);
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
                entries.push(DirEntry {
                    name,
                    ino,
                    kind,
                    layer: l,
                });
            }
            decided.extend(hidden_below);
        }
        let mut listing = match &prev {
            Some(p) => Listing::following(entries, p),
            None => Listing::new(entries),
        };
        listing.epoch = epoch;
        let listing = Arc::new(listing);
        // Checked and stored under the lock that changes bump `listing_gen` under, so a
        // change between the check and the store cannot be missed.
        let mut slot = node.listing.lock();
        if node.listing_gen.load(Ordering::Acquire) != generation {
            // The directory changed while it was read: keep the slots, not the content.
            listing.invalidate();
        }
        *slot = Some(listing.clone());
        Ok(listing)
    }

    /// Opens directory `ino` for reading: its listing now, kept by the handle, so a directory
    /// read in several calls through one handle sees one consistent state.
    pub fn opendir(&self, ino: Ino) -> Result<u64> {
        let stream = self.dir_stream(ino)?;
        let fh = self.next_fh();
        self.dir_handles.insert(fh, stream);
        Ok(fh)
    }

    /// The directory `ino` to read: the handle's state for an open `fh`, else the current
    /// listing (the kernel skips opendir, `fh` 0).
    pub fn readdir(&self, ino: Ino, fh: u64) -> Result<Arc<DirStream>> {
        match self.dir_handles.get(&fh) {
            Some(s) => Ok(s.clone()),
            None => self.dir_stream(ino),
        }
    }

    /// Closes an open directory.
    pub fn releasedir(&self, fh: u64) {
        self.dir_handles.remove(&fh);
    }

    fn dir_stream(&self, ino: Ino) -> Result<Arc<DirStream>> {
        Ok(Arc::new(DirStream {
            ino,
            parent: self.parent_of(ino)?,
            listing: self.listing(ino)?,
        }))
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
