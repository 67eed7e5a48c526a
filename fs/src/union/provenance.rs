//! Provenance and the diff view: which layer supplies an entry, what it hides, and what one
//! layer changed. This is the debugging surface of DESIGN.md ("views"); it reads the same
//! resolution data that lookup uses and is computed only when asked, so it costs nothing on
//! the request path of a mount that nobody inspects.
//!
//! Provenance is shown as read-only virtual xattrs (see [`VIRTUAL_PREFIX`]). They are never
//! listed by listxattr, so tools that copy xattrs (`cp -a`, `tar --xattrs`, `rsync -X`) never
//! carry them into a copy, and they can be neither set nor removed (`user.strata.*` is a
//! private namespace: `whiteout::is_private_xattr`).
//!
//! The kernel refuses `user.*` xattrs on anything but regular files and directories
//! (`xattr_permission()` in fs/xattr.c answers ENODATA without asking the filesystem), so every
//! name is also answered by the parent directory: `user.strata.layer/NAME` on a directory is
//! the `user.strata.layer` of its entry NAME. `strata which` uses that form, so it works for
//! symlinks and devices too.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, OFlags};
use rustix::io::Errno;

use super::{DirEntry, Found, Ino, Listing, Union, ROOT};
use crate::error::{is_absent, Error, Op, Result};
use crate::layer::LayerId;
use crate::whiteout;

/// Prefix of the virtual provenance xattrs.
pub const VIRTUAL_PREFIX: &str = "user.strata.";

/// How an entry came to be where the union shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Supplied by a lower layer, untouched.
    Lower,
    /// Copied up from a lower layer into the upper (then possibly changed).
    CopiedUp,
    /// Made in the upper; nothing was copied.
    Created,
    /// A directory that hides everything below it (opaque), in any layer.
    Opaque,
}

impl State {
    /// The word shown in `user.strata.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Lower => "lower",
            State::CopiedUp => "copied-up",
            State::Created => "created",
            State::Opaque => "opaque",
        }
    }
}

/// What one layer (the top of a diff view) did to an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Absent from the layers below.
    Added,
    /// Present below; replaced (a file) or carried as a parent (a directory).
    Modified,
    /// Removed: a whiteout, or a name hidden by an opaque directory of this layer.
    Deleted,
}

impl Change {
    /// The word shown in `user.strata.change`.
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Added => "added",
            Change::Modified => "modified",
            Change::Deleted => "deleted",
        }
    }
}

/// Where an entry of the union comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The layer that supplies it (index into the stack, upper first).
    pub layer: LayerId,
    /// How it got there.
    pub state: State,
    /// Lower layers that hold an object at the same path which this entry hides, top first.
    /// The lower directories a merged directory shows are not hidden and not listed, nor are
    /// objects a layer in between deleted (a whiteout, an opaque or replaced ancestor).
    pub shadows: Vec<LayerId>,
}

/// Counts of what one layer changed (see [`Union::diff_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffCounts {
    /// Entries absent from the layers below (directories included).
    pub added: u64,
    /// Non-directories present below, and directories that replace a non-directory or are
    /// made opaque. A directory that is only carried as the parent of a change is not counted.
    pub modified: u64,
    /// Whiteouts, and names below that an opaque directory of this layer hides.
    pub deleted: u64,
}

fn join_rel(dir: &[u8], name: &[u8]) -> Vec<u8> {
    if dir == b"." {
        return name.to_vec();
    }
    let mut v = dir.to_vec();
    v.push(b'/');
    v.extend_from_slice(name);
    v
}

/// The inode number a diff view gives the deletion of `name` in directory `rel`: whiteouts
/// share one inode (hard links of one whiteout, as kernel overlayfs and strata make them), and
/// the names an opaque directory hides have no object in the changeset at all, so each
/// deletion is numbered by its path (FNV-1a), never by an object.
fn deletion_ino(rel: &[u8], name: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rel.iter().chain(b"/").chain(name) {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A deletion as the diff view shows it: a character device 0/0, the kernel's whiteout, which
/// `ls -l` shows as `c---------  0, 0` and `find -type c` lists.
fn as_deletion(mut st: rfs::Stat, rel: &[u8], name: &[u8]) -> rfs::Stat {
    st.st_ino = deletion_ino(rel, name);
    st.st_mode = libc::S_IFCHR;
    st.st_rdev = 0;
    st.st_size = 0;
    st.st_blocks = 0;
    st.st_nlink = 1;
    st
}

impl Union {
    /// The ids of the reference layers of a diff view (every layer below the changeset).
    fn reference_layers(&self) -> Vec<LayerId> {
        (1..self.stack.layers.len() as LayerId).collect()
    }

    /// The layers below the changeset that supply directory `rel`, resolved through them as
    /// a union; `None` when `rel` is not a directory there.
    fn reference_dir(&self, rel: &[u8]) -> Result<Option<Vec<LayerId>>> {
        let refs = self.reference_layers();
        if refs.is_empty() {
            return Ok(None);
        }
        let mut layers = Vec::new();
        for l in refs {
            layers.push(l);
            let root = &self.stack.layers[l as usize].root;
            if self.is_opaque_dir(root, OsStr::new(".")) {
                break;
            }
        }
        let mut dir: Vec<u8> = b".".to_vec();
        for part in rel
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
        {
            let Some(f) = self.resolve_layers(&dir, &layers, OsStr::from_bytes(part))? else {
                return Ok(None);
            };
            if FileType::from_raw_mode(f.st.st_mode) != FileType::Directory {
                return Ok(None);
            }
            layers = f.layers;
            dir = join_rel(&dir, part);
        }
        Ok(Some(layers))
    }

    /// Lookup in a diff view: only the changeset (layer 0) supplies entries; its whiteouts and
    /// the names an opaque directory of it hides are shown as deletions.
    pub(crate) fn diff_resolve(&self, rel: &[u8], name: &OsStr) -> Result<Option<Found>> {
        let dirfd = match self.open_rel(0, rel, OFlags::PATH) {
            Ok(d) => d,
            Err(e) if is_absent(e.errno) => return Ok(None),
            Err(e) => return Err(e),
        };
        match rfs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => {
                let st = if whiteout::is_char_whiteout(&st) {
                    as_deletion(st, rel, name.as_bytes())
                } else {
                    st
                };
                // A metacopy in the changeset reads its data from the layers below it.
                let data = match self.is_metacopy(&dirfd, name, &st) {
                    true => self
                        .reference_dir(rel)?
                        .and_then(|below| self.resolve_layers(rel, &below, name).transpose())
                        .transpose()?
                        .filter(|f| FileType::from_raw_mode(f.st.st_mode) == FileType::RegularFile)
                        .and_then(|f| f.data.or(Some(f.layers[0]))),
                    false => None,
                };
                return Ok(Some(Found {
                    layers: vec![0],
                    st,
                    dirfd: dirfd.into(),
                    data,
                }));
            }
            Err(e) if is_absent(e) => {}
            Err(e) => return Err(Error::new("lookup", e)),
        }
        if let Some(w) = whiteout::wh_name(name) {
            if let Ok(st) = rfs::statat(&dirfd, OsStr::from_bytes(&w), AtFlags::SYMLINK_NOFOLLOW) {
                return Ok(Some(Found {
                    layers: vec![0],
                    st: as_deletion(st, rel, name.as_bytes()),
                    dirfd: dirfd.into(),
                    data: None,
                }));
            }
        }
        if !self.is_opaque_dir(&dirfd, OsStr::new(".")) {
            return Ok(None);
        }
        let Some(below) = self.reference_dir(rel)? else {
            return Ok(None);
        };
        // Shown as the changeset's own entry (layer 0), so that it is numbered and stat'ed
        // like the other deletions; it has no object there.
        Ok(self.resolve_layers(rel, &below, name)?.map(|f| Found {
            layers: vec![0],
            st: as_deletion(f.st, rel, name.as_bytes()),
            dirfd: dirfd.into(),
            data: None,
        }))
    }

    /// The visible names of directory `rel` in the union of `layers` (a merged listing
    /// without the node table).
    fn names_in(&self, rel: &[u8], layers: &[LayerId]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut decided: HashSet<Vec<u8>> = HashSet::new();
        for &l in layers {
            let dirfd = match self.open_rel(l, rel, OFlags::RDONLY) {
                Ok(d) => d,
                Err(e) if is_absent(e.errno) => continue,
                Err(e) => return Err(e),
            };
            let mut hidden = Vec::new();
            let mut d = Dir::read_from(&dirfd).op("readdir")?;
            while let Some(e) = d.read() {
                let e = e.op("readdir")?;
                let n = e.file_name().to_bytes();
                let n = match whiteout::classify(n) {
                    Some(whiteout::Entry::Whiteout(t)) => {
                        hidden.push(t.to_vec());
                        continue;
                    }
                    Some(whiteout::Entry::Name(n)) if !decided.contains(n) => n,
                    _ => continue,
                };
                let is_wh = matches!(e.file_type(), FileType::CharacterDevice | FileType::Unknown)
                    && rfs::statat(&dirfd, OsStr::from_bytes(n), AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|s| whiteout::is_char_whiteout(&s));
                decided.insert(n.to_vec());
                if !is_wh {
                    out.push(n.to_vec());
                }
            }
            decided.extend(hidden);
        }
        Ok(out)
    }

    /// The listing of directory `ino` in a diff view (never cached: the changeset may be the
    /// live upper of another mount, and a change there must show at once).
    pub(crate) fn diff_listing(&self, ino: Ino) -> Result<Arc<Listing>> {
        let rel = {
            let _g = self.tree.read();
            self.rel_path(ino)?
        };
        Ok(Arc::new(Listing::new(self.diff_entries(&rel)?)))
    }

    /// What a diff view shows in directory `rel`: the changeset's entries, its whiteouts and
    /// the names its opaque directory hides as deletions. Without the node table, so that
    /// [`Union::diff_counts`] reads the same set.
    fn diff_entries(&self, rel: &[u8]) -> Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let dirfd = match self.open_rel(0, rel, OFlags::RDONLY) {
            Ok(d) => d,
            Err(e) if is_absent(e.errno) => return Ok(entries),
            Err(e) => return Err(e),
        };
        let mut d = Dir::read_from(&dirfd).op("readdir")?;
        while let Some(e) = d.read() {
            let e = e.op("readdir")?;
            let n = e.file_name().to_bytes();
            let (name, deleted) = match whiteout::classify(n) {
                Some(whiteout::Entry::Whiteout(t)) => (t.to_vec(), true),
                None => continue,
                Some(whiteout::Entry::Name(n)) => {
                    let wh = e.file_type() == FileType::CharacterDevice
                        && rfs::statat(&dirfd, OsStr::from_bytes(n), AtFlags::SYMLINK_NOFOLLOW)
                            .is_ok_and(|s| whiteout::is_char_whiteout(&s));
                    (n.to_vec(), wh)
                }
            };
            let entry = if deleted {
                DirEntry {
                    ino: self.tagged(0, self.stack.layers[0].dev, deletion_ino(rel, &name)),
                    name,
                    kind: FileType::CharacterDevice,
                    layer: 0,
                }
            } else {
                DirEntry {
                    name,
                    ino: self.tagged(0, self.stack.layers[0].dev, e.ino()),
                    kind: e.file_type(),
                    layer: 0,
                }
            };
            match seen.get(&entry.name) {
                None => {
                    seen.insert(entry.name.clone());
                    entries.push(entry);
                }
                // A real entry wins over a stray `.wh.` of the same name (lookup agrees).
                Some(_) if !deleted => {
                    if let Some(old) = entries.iter_mut().find(|x| x.name == entry.name) {
                        *old = entry;
                    }
                }
                Some(_) => {}
            }
        }
        if self.is_opaque_dir(&dirfd, OsStr::new(".")) {
            if let Some(below) = self.reference_dir(rel)? {
                for name in self.names_in(rel, &below)? {
                    if seen.contains(&name) {
                        continue;
                    }
                    if self
                        .resolve_layers(rel, &below, OsStr::from_bytes(&name))?
                        .is_some()
                    {
                        let ino =
                            self.tagged(0, self.stack.layers[0].dev, deletion_ino(rel, &name));
                        seen.insert(name.clone());
                        entries.push(DirEntry {
                            name,
                            ino,
                            kind: FileType::CharacterDevice,
                            layer: 0,
                        });
                    }
                }
            }
        }
        // An entry of unknown type (some filesystems) is typed by its lookup.
        for e in entries.iter_mut().filter(|e| e.kind == FileType::Unknown) {
            if let Some(f) = self.diff_resolve(rel, OsStr::from_bytes(&e.name))? {
                e.kind = FileType::from_raw_mode(f.st.st_mode);
            }
        }
        Ok(entries)
    }

    /// What the changeset did to entry `name` of directory `rel`, given its diff lookup `f`.
    fn change_of(
        &self,
        rel: &[u8],
        below: Option<&[LayerId]>,
        f: &Found,
        name: &OsStr,
    ) -> Result<Change> {
        if whiteout::is_char_whiteout(&f.st) {
            return Ok(Change::Deleted);
        }
        let Some(below) = below else {
            return Ok(Change::Added);
        };
        Ok(match self.resolve_layers(rel, below, name)? {
            None => Change::Added,
            Some(_) => Change::Modified,
        })
    }

    /// Counts what the changeset of a diff view added, modified and deleted, over its whole
    /// tree (see [`DiffCounts`] for what is counted).
    pub fn diff_counts(&self) -> Result<DiffCounts> {
        if !self.cfg.diff {
            return Err(Error::new(
                "diff counts of a union that is not a diff view",
                Errno::INVAL,
            ));
        }
        let mut c = DiffCounts::default();
        let mut stack: Vec<Vec<u8>> = vec![b".".to_vec()];
        while let Some(rel) = stack.pop() {
            let below = self.reference_dir(&rel)?;
            for DirEntry { name, .. } in self.diff_entries(&rel)? {
                let os = OsStr::from_bytes(&name);
                let Some(f) = self.diff_resolve(&rel, os)? else {
                    continue;
                };
                let is_dir = FileType::from_raw_mode(f.st.st_mode) == FileType::Directory;
                match self.change_of(&rel, below.as_deref(), &f, os)? {
                    Change::Deleted => c.deleted += 1,
                    Change::Added => c.added += 1,
                    Change::Modified if !is_dir => c.modified += 1,
                    Change::Modified => {
                        let sub = join_rel(&rel, &name);
                        let below_is_dir = self.reference_dir(&sub)?.is_some();
                        let opaque_here = self.is_opaque_dir(&f.dirfd, os);
                        if !below_is_dir || opaque_here {
                            c.modified += 1;
                        }
                    }
                }
                if is_dir {
                    stack.push(join_rel(&rel, &name));
                }
            }
        }
        Ok(c)
    }

    /// What layer `m` holds at union path `rel`: whether it has an object there (not a
    /// whiteout), and whether it removes the path from the layers below it: a whiteout at
    /// `rel` (either format), or an ancestor (the root too) that is a whiteout, not a
    /// directory, or opaque. One walk down from the layer root, following no symlink.
    fn layer_at(&self, m: LayerId, rel: &[u8]) -> (bool, bool) {
        let Ok(mut dfd) = self.open_rel(m, b".", OFlags::PATH) else {
            return (false, false);
        };
        let mut removes = self.is_opaque_root(m);
        let parts: Vec<&[u8]> = rel.split(|b| *b == b'/').collect();
        for (i, name) in parts.iter().enumerate() {
            let name = OsStr::from_bytes(name);
            removes |= Self::has_wh(&dfd, name);
            let Ok(st) = rfs::statat(&dfd, name, AtFlags::SYMLINK_NOFOLLOW) else {
                return (false, removes);
            };
            if whiteout::is_char_whiteout(&st) {
                return (false, true);
            }
            if i + 1 == parts.len() {
                return (true, removes);
            }
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return (false, true);
            }
            removes |= self.is_opaque_dir(&dfd, name);
            let fl = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            dfd = match rfs::openat(&dfd, name, fl, rfs::Mode::empty()) {
                Ok(d) => d,
                Err(_) => return (false, removes),
            };
        }
        (false, removes)
    }

    /// The layers below `entry[0]` whose object at union path `rel` the entry (made of the
    /// layers `entry`, with its data in layer `data` if it is a metacopy) keeps out of the
    /// union. An object that a layer between them removed (a
    /// whiteout, an opaque or replaced ancestor) was deleted there, not shadowed by the entry;
    /// what the entry's own layers do (an opaque parent, a `.wh.` marker) is the entry's.
    fn shadowed(&self, rel: &[u8], entry: &[LayerId], data: Option<LayerId>) -> Vec<LayerId> {
        let n = self.stack.layers.len() as LayerId;
        let mut out = Vec::new();
        for l in entry[0] + 1..n {
            // A metacopy's data layer is read, not hidden.
            if entry.contains(&l) || data == Some(l) {
                continue;
            }
            let (has, removes) = self.layer_at(l, rel);
            if has {
                out.push(l);
            }
            if removes {
                break;
            }
        }
        out
    }

    /// Where node `ino` comes from.
    pub fn provenance(&self, ino: Ino) -> Result<Provenance> {
        self.provenance_of(ino, true)
    }

    /// [`Union::provenance`], with the shadows only when `shadows` (a walk of the layers
    /// below, which `user.strata.layer` and `user.strata.state` do not need).
    fn provenance_of(&self, ino: Ino, shadows: bool) -> Result<Provenance> {
        let node = self.node(ino)?;
        let st = node.state();
        if st.unlinked {
            return Err(Error::new("provenance of a removed entry", Errno::NOENT));
        }
        let top = st.layers[0];
        if ino == ROOT {
            let n = self.stack.layers.len() as LayerId;
            let root = &self.stack.layers[top as usize].root;
            let state = if self.is_opaque_dir(root, OsStr::new(".")) {
                State::Opaque
            } else if self.is_upper(top) && st.layers.len() > 1 {
                State::CopiedUp
            } else if self.is_upper(top) {
                State::Created
            } else {
                State::Lower
            };
            return Ok(Provenance {
                layer: top,
                state,
                shadows: (top + 1..n).filter(|l| !st.layers.contains(l)).collect(),
            });
        }
        let rel = {
            let _g = self.tree.read();
            self.rel_path(ino)?
        };
        let dfd = self.parent_fd(&st, top)?;
        let entry = (st.layers.as_slice(), st.data);
        Ok(self.provenance_at(&rel, entry, st.kind, &dfd, &st.name, shadows))
    }

    /// Where the entry at union path `rel` comes from, given the layers that supply it and its
    /// top object `name` in directory `dfd`.
    fn provenance_at(
        &self,
        rel: &[u8],
        (layers, data): (&[LayerId], Option<LayerId>),
        kind: FileType,
        dfd: &OwnedFd,
        name: &OsStr,
        with_shadows: bool,
    ) -> Provenance {
        let top = layers[0];
        let shadows = if with_shadows {
            self.shadowed(rel, layers, data)
        } else {
            Vec::new()
        };
        let state = if kind == FileType::Directory && self.is_opaque_dir(dfd, name) {
            State::Opaque
        } else if !self.is_upper(top) {
            State::Lower
        } else if self.read_origin(dfd, name).is_some()
            || self.has_kernel_origin(dfd, name)
            || (kind == FileType::Directory && layers.len() > 1)
        {
            State::CopiedUp
        } else {
            State::Created
        };
        Provenance {
            layer: top,
            state,
            shadows,
        }
    }

    /// True when kernel overlayfs recorded a copy-up origin on the object (`overlay.origin`):
    /// an upper written by the kernel driver and mounted by strata afterwards.
    fn has_kernel_origin(&self, dfd: &OwnedFd, name: &OsStr) -> bool {
        let p = Self::proc_path(dfd, name);
        let mut buf = [0u8; 0];
        ["trusted.overlay.origin", "user.overlay.origin"]
            .iter()
            .any(|x| rfs::lgetxattr(OsStr::from_bytes(&p), *x, &mut buf[..]).is_ok())
    }

    /// Resolves a union path (`a/b/c`, relative to the root) to its inode, counting one
    /// kernel-style lookup per component (for in-process users such as `strata which`).
    pub fn lookup_path(&self, rel: &[u8]) -> Result<Ino> {
        let mut cur = ROOT;
        for part in rel
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
        {
            cur = self.lookup(cur, OsStr::from_bytes(part))?.ino;
        }
        Ok(cur)
    }

    /// The value of virtual xattr `name` of `ino`, or `None` when `name` is not one.
    pub(crate) fn virtual_xattr(&self, ino: Ino, name: &[u8]) -> Option<Result<Vec<u8>>> {
        let key = name.strip_prefix(VIRTUAL_PREFIX.as_bytes())?;
        // `KEY/NAME` on a directory answers for its entry NAME.
        if let Some(i) = key.iter().position(|b| *b == b'/') {
            let (k, child) = (&key[..i], &key[i + 1..]);
            return Some(self.child_xattr(ino, k, OsStr::from_bytes(child)));
        }
        Some(self.own_xattr(ino, key))
    }

    /// `KEY/NAME` on directory `dir`: answered from the entry's own resolution, not from a
    /// node (two hard links share one node, but not one path).
    fn child_xattr(&self, dir: Ino, key: &[u8], child: &OsStr) -> Result<Vec<u8>> {
        let f = self.resolve_child(dir, child, "getxattr")?;
        let rel_dir = {
            let _g = self.tree.read();
            self.rel_path(dir)?
        };
        if self.cfg.diff {
            let below = self.reference_dir(&rel_dir)?;
            return match key {
                b"change" => Ok(self
                    .change_of(&rel_dir, below.as_deref(), &f, child)?
                    .as_str()
                    .as_bytes()
                    .to_vec()),
                _ => Err(Self::no_provenance()),
            };
        }
        let kind = FileType::from_raw_mode(f.st.st_mode);
        let rel = join_rel(&rel_dir, child.as_bytes());
        let entry = (f.layers.as_slice(), f.data);
        let p = self.provenance_at(&rel, entry, kind, &f.dirfd, child, key == b"shadows");
        self.provenance_value(key, &p)
    }

    fn no_provenance() -> Error {
        Error::new("getxattr: no such provenance attribute", Errno::NODATA)
    }

    fn provenance_value(&self, key: &[u8], p: &Provenance) -> Result<Vec<u8>> {
        match key {
            b"layer" => Ok(self.stack.label(p.layer).into_bytes()),
            b"state" => Ok(p.state.as_str().as_bytes().to_vec()),
            b"shadows" => {
                let v: Vec<String> = p.shadows.iter().map(|l| self.stack.label(*l)).collect();
                Ok(v.join(", ").into_bytes())
            }
            _ => Err(Self::no_provenance()),
        }
    }

    fn own_xattr(&self, ino: Ino, key: &[u8]) -> Result<Vec<u8>> {
        if self.cfg.diff {
            return match key {
                b"change" => Ok(self.change_of_node(ino)?.as_str().as_bytes().to_vec()),
                _ => Err(Self::no_provenance()),
            };
        }
        match key {
            b"layers" if ino == ROOT => {
                let mut out = Vec::new();
                for (i, layer) in self.stack.layers.iter().enumerate() {
                    out.extend_from_slice(self.stack.label(i as LayerId).as_bytes());
                    out.push(b'\t');
                    out.extend_from_slice(layer.path.as_os_str().as_bytes());
                    out.push(b'\n');
                }
                Ok(out)
            }
            // How many inodes the daemon keeps now (bounded by `max_inodes=`, see prune.rs).
            b"inodes" if ino == ROOT => Ok(self.nodes.len().to_string().into_bytes()),
            b"layer" | b"state" | b"shadows" => {
                self.provenance_value(key, &self.provenance_of(ino, key == b"shadows")?)
            }
            _ => Err(Self::no_provenance()),
        }
    }

    /// What the changeset did to node `ino` (diff views).
    fn change_of_node(&self, ino: Ino) -> Result<Change> {
        if ino == ROOT {
            return Ok(Change::Modified);
        }
        let node = self.node(ino)?;
        let st = node.state();
        let rel = {
            let _g = self.tree.read();
            self.rel_path(st.parent)?
        };
        let f = self
            .diff_resolve(&rel, &st.name)?
            .ok_or(Error::new("change", Errno::NOENT))?;
        let below = self.reference_dir(&rel)?;
        self.change_of(&rel, below.as_deref(), &f, &st.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join() {
        assert_eq!(join_rel(b".", b"x"), b"x".to_vec());
        assert_eq!(join_rel(b"a", b"x"), b"a/x".to_vec());
    }

    #[test]
    fn deletion_is_char_whiteout() {
        let st = rfs::stat(".").unwrap();
        let d = as_deletion(st, b"a", b"b");
        assert!(whiteout::is_char_whiteout(&d));
        assert_eq!(d.st_ino, deletion_ino(b"a", b"b"));
        assert_ne!(deletion_ino(b"a", b"b"), deletion_ino(b"a", b"c"));
    }
}
