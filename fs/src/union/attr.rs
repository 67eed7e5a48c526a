//! Attributes as the union shows them, and getattr/setattr.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat, Timestamps};
use rustix::io::Errno;

use super::{Ctx, Ino, Node, Union, ROOT};
use crate::error::{Error, Op, Result};

/// `stat` of a union inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    /// Inode number (= FUSE node id).
    pub ino: Ino,
    /// `st_mode`, type bits included.
    pub mode: u32,
    /// Link count.
    pub nlink: u32,
    /// Owner as the caller sees it.
    pub uid: u32,
    /// Group as the caller sees it.
    pub gid: u32,
    /// Device number for device nodes.
    pub rdev: u64,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks.
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Access time (seconds, nanoseconds).
    pub atime: (i64, u32),
    /// Modification time.
    pub mtime: (i64, u32),
    /// Status change time.
    pub ctime: (i64, u32),
}

impl Attr {
    /// The file type.
    pub fn kind(&self) -> FileType {
        FileType::from_raw_mode(self.mode)
    }
}

/// The mode bits the kernel clears when a regular file is written or truncated by a caller
/// without CAP_FSETID, and on every chown: setuid, and setgid if the group may execute (a
/// setgid file without group execute marks mandatory locking, and keeps it).
/// `should_remove_suid` (fs/inode.c), `setattr_should_drop_sgid` (fs/attr.c).
pub fn setid_bits(mode: u32) -> u32 {
    let sgid_exec = libc::S_ISGID | libc::S_IXGRP;
    let sgid = if mode & sgid_exec == sgid_exec {
        libc::S_ISGID
    } else {
        0
    };
    (mode & libc::S_ISUID) | sgid
}

/// What a setattr asks for. `None` leaves a field alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    /// New permission bits (type bits ignored).
    pub mode: Option<u32>,
    /// New owner (caller's view).
    pub uid: Option<u32>,
    /// New group (caller's view).
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New atime; `Some(None)` means now.
    pub atime: Option<Option<(i64, u32)>>,
    /// New mtime; `Some(None)` means now.
    pub mtime: Option<Option<(i64, u32)>>,
}

fn ts(t: Option<Option<(i64, u32)>>) -> rfs::Timespec {
    match t {
        None => rfs::Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        Some(None) => rfs::Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_NOW,
        },
        Some(Some((s, ns))) => rfs::Timespec {
            tv_sec: s,
            tv_nsec: ns as _,
        },
    }
}

impl Union {
    /// Converts a layer stat into the union's view of node `node`.
    pub(crate) fn attr_of(&self, node: &Node, st: &Stat, nlayers: usize) -> Attr {
        let kind = FileType::from_raw_mode(st.st_mode);
        let unlinked = node.st.read().unlinked;
        let nlink = if unlinked
            && kind != FileType::Directory
            && st.st_nlink > 0
            && !self.pinned_is_upper(node)
        {
            // A lower file hidden by a whiteout still has its links in the lower layer.
            0
        } else if kind == FileType::Directory && nlayers > 1 {
            // Merged directories report 1, as kernel overlayfs does (ovl_getattr): the real
            // count would need every layer's listing; 1 tells find(1) not to rely on it.
            1
        } else if kind != FileType::Directory && st.st_nlink > 1 && !unlinked && !self.cfg.diff {
            match node.st.read().layers.first() {
                Some(&l) if !self.is_upper(l) => {
                    self.lower_nlink(l, (st.st_dev, st.st_ino), st.st_nlink)
                }
                _ => st.st_nlink as u32,
            }
        } else {
            st.st_nlink as u32
        };
        let mut a = Attr {
            ino: node.ino,
            mode: st.st_mode,
            nlink,
            uid: self.show_uid(st.st_uid),
            gid: self.show_gid(st.st_gid),
            rdev: st.st_rdev,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            blksize: st.st_blksize as u32,
            atime: (st.st_atime, st.st_atime_nsec as u32),
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime, st.st_ctime_nsec as u32),
        };
        if self.cfg.xattr_permissions != 0 {
            if let Some(o) = self
                .with_node_path(node, |p, follow| self.read_override_at(p, follow))
                .ok()
                .flatten()
            {
                self.apply_override(&mut a, o);
            }
        }
        a
    }

    /// Runs `f` with a `/proc/self/fd/...` path naming node `node`'s object in its top layer,
    /// and whether the path must be followed: `/proc/self/fd/DIR/NAME` (an entry: `l*xattr`,
    /// never following a symlink there) or, for the root and a removed node, the bare
    /// `/proc/self/fd/N` of the object's own fd, a magic link that the plain `*xattr` calls
    /// follow to the object (the `l*` calls would act on the link: proc(5), /proc/pid/fd).
    /// The fd behind the path stays open for the call.
    pub(crate) fn with_node_path<T>(
        &self,
        node: &Node,
        f: impl FnOnce(&[u8], bool) -> T,
    ) -> Result<T> {
        let st = node.state();
        if st.unlinked {
            let p = node.pinned_fd("xattr")?;
            return Ok(f(&Self::proc_path(&*p, OsStr::new("")), true));
        }
        let l = st.layers[0];
        if node.ino == ROOT {
            let root = &self.stack.layers[l as usize].root;
            return Ok(f(&Self::proc_path(root, OsStr::new("")), true));
        }
        let dfd = self.parent_fd(&st, l)?;
        Ok(f(&Self::proc_path(&dfd, &st.name), false))
    }

    fn pinned_is_upper(&self, node: &Node) -> bool {
        node.st.read().layers.first() == Some(&super::UPPER) && self.has_upper()
    }

    /// Stat of the object that node `node` shows, from its top layer.
    pub(crate) fn stat_node(&self, node: &Node) -> Result<(Stat, usize)> {
        let st = node.state();
        if self.cfg.diff && node.ino != ROOT && !st.unlinked {
            // A diff view shows deletions that are not objects of their own: look again.
            let pst = self.node(st.parent)?.state();
            return match self.resolve(st.parent, &pst, &st.name)? {
                Some(f) => Ok((f.st, 1)),
                None => Err(Error::new(
                    "stat: entry gone from the changeset",
                    Errno::NOENT,
                )),
            };
        }
        if st.unlinked {
            let p = node.pinned_fd("stat removed node")?;
            let mut s = rfs::fstat(&*p).op("fstat")?;
            if let (Some(d), Some(_)) = (&p.data, st.data) {
                // A removed metacopy's blocks are its data's, as a named one's are.
                s.st_blocks = rfs::fstat(d).op("fstat")?.st_blocks;
            }
            return Ok((s, st.layers.len()));
        }
        let l = st.layers[0];
        if node.ino == ROOT {
            let s = rfs::fstat(&self.stack.layers[l as usize].root).op("stat root")?;
            return Ok((s, st.layers.len()));
        }
        if st.kind == FileType::Directory {
            if !self.is_upper(l) {
                if let Some((cl, s)) = node.lower_dir_stat.lock().as_deref().copied() {
                    if cl == l {
                        return Ok((s, st.layers.len()));
                    }
                }
            }
            // The directory's own fd (cached, see `dirfds`) is the node's object: no origin
            // check through the name. The kernel asks for the parent's attributes after every
            // entry removed from or created in it (fuse_dir_changed, fs/fuse/dir.c).
            if let Ok(fd) = self.dir_fd(node.ino, l) {
                return Ok((rfs::fstat(&*fd).op("fstat")?, st.layers.len()));
            }
        }
        let dfd = self.parent_fd(&st, l)?;
        match rfs::statat(&dfd, &st.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(mut s) if self.is_node_object(node, l, &s, || self.read_origin(&dfd, &st.name)) => {
                self.data_blocks(st.parent, &st.name, st.data, &mut s);
                Ok((s, st.layers.len()))
            }
            // The name changed under us (GETATTR is not serialized with unlink and rename of
            // the name): if the node was removed meanwhile, its pinned fd has the answer.
            _ => match node.pinned.lock().clone() {
                Some(p) if node.st.read().unlinked => {
                    Ok((rfs::fstat(&*p).op("fstat")?, st.layers.len()))
                }
                _ => Err(Error::new("stat: object replaced", Errno::NOENT)),
            },
        }
    }

    /// True when stat `s` (found in layer `l`) is node `node`'s object: its inode number, or
    /// for an upper object its recorded origin, is the node's.
    pub(crate) fn is_node_object(
        &self,
        node: &Node,
        l: super::LayerId,
        s: &Stat,
        origin: impl FnOnce() -> Option<Ino>,
    ) -> bool {
        self.tagged(l, s.st_dev, s.st_ino) == node.ino
            || (self.is_upper(l) && origin() == Some(node.ino))
    }

    /// `stat` of `ino`; with `fh`, of the open file (so an unlinked open file stays usable).
    pub fn getattr(&self, ino: Ino, fh: Option<u64>) -> Result<Attr> {
        let node = self.node(ino)?;
        if let Some(fh) = fh {
            // A metacopy's read handle is its lower data file, whose metadata is not the
            // file's: the upper copy has that.
            let h = self.handle(fh).ok();
            if let Some(h) = h.filter(|h| h.upper || node.st.read().data.is_none()) {
                let s = rfs::fstat(&h.fd).op("fstat")?;
                return Ok(self.attr_of(&node, &s, 1));
            }
        }
        let (s, n) = self.stat_node(&node)?;
        Ok(self.attr_of(&node, &s, n))
    }

    /// chmod, chown, truncate and utimes, after a copy-up.
    pub fn setattr(&self, _ctx: Ctx, ino: Ino, fh: Option<u64>, set: SetAttr) -> Result<Attr> {
        let node = self.node(ino)?;
        if node.st.read().unlinked {
            if !self.pinned_is_upper(&node) {
                // A removed lower file cannot be changed: its data lives in a read-only layer.
                return Err(Error::new("setattr of removed lower file", Errno::NOENT));
            }
            if set.size.is_some() && node.st.read().data.is_some() {
                // A removed metacopy is truncated with its data, not as the empty object.
                crate::copy_up::complete_metacopy(self, &node)?;
            }
        } else if set.size.is_some() {
            self.ensure_upper(ino)?;
        } else {
            self.ensure_upper_meta(ino)?;
        }
        // A metacopy being completed is copied with the metadata it has when the copy
        // starts: a change must wait for the copy, or it would land on the replaced file.
        let _completing = node.metacopy_guard();
        // chown drops security.capability on the backing file: forget the cached names.
        self.xattrs_changed(ino);
        let handle = fh.and_then(|fh| self.handle(fh).ok()).filter(|h| h.upper);
        let st = node.state();
        let uid = set.uid.map(|u| self.store_uid(u)).transpose()?;
        let gid = set.gid.map(|g| self.store_gid(g)).transpose()?;
        let ovr = self.override_name().is_some()
            && (uid.is_some() || gid.is_some() || set.mode.is_some());
        let times = Timestamps {
            last_access: ts(set.atime),
            last_modification: ts(set.mtime),
        };
        let want_times = set.atime.is_some() || set.mtime.is_some();

        if st.unlinked || handle.is_some() || st.kind != FileType::Symlink {
            // Work on the object itself, through an fd: it may have no name any more, or its
            // name may be moving (a directory being renamed is not locked by the kernel while
            // it is chowned). A handle's fd is a regular file opened read-write; otherwise an
            // O_PATH fd, verified to be this node's object, is used through its
            // /proc/self/fd link, which names that exact inode (a directory or fifo too).
            let fresh = match &handle {
                Some(_) => None,
                None => Some(self.node_object_fd(&node)?),
            };
            let obj: &OwnedFd = match (&handle, &fresh) {
                (Some(h), _) => &h.fd,
                (None, Some(f)) => f,
                (None, None) => return Err(Error::new("setattr", Errno::NOENT)),
            };
            let path = Self::proc_path(obj, OsStr::new("."));
            let path = OsStr::from_bytes(&path);
            if let Some(size) = set.size {
                match &handle {
                    Some(h) => rfs::ftruncate(&h.fd, size).op("truncate")?,
                    None => {
                        let f = rfs::open(path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
                            .op("open for truncate")?;
                        rfs::ftruncate(&f, size).op("truncate")?;
                    }
                }
            }
            if ovr {
                let s = rfs::fstat(obj).op("fstat")?;
                self.set_override(path.as_bytes(), true, &s, uid, gid, set.mode)?;
            } else if uid.is_some() || gid.is_some() {
                let (u, g) = (uid.map(rfs::Uid::from_raw), gid.map(rfs::Gid::from_raw));
                rfs::chownat(obj, "", u, g, AtFlags::EMPTY_PATH).op("chown")?;
            }
            if let (Some(m), false) = (set.mode, ovr) {
                if st.kind != FileType::Symlink {
                    rfs::chmod(path, Mode::from_raw_mode(m & 0o7777)).op("chmod")?;
                }
            }
            if want_times {
                rfs::utimensat(rfs::CWD, path, &times, AtFlags::empty()).op("utimes")?;
            }
            let s = rfs::fstat(obj).op("fstat")?;
            let nlayers = if handle.is_some() {
                1
            } else {
                node.st.read().layers.len()
            };
            if node.st.read().data.is_some() && !st.unlinked {
                // A metacopy: its blocks are its data's (see `stat_node`).
                let (s, n) = self.stat_node(&node)?;
                return Ok(self.attr_of(&node, &s, n));
            }
            return Ok(self.attr_of(&node, &s, nlayers));
        }

        // Only a live symlink is left: chmod and truncate do not apply to it, and an
        // O_PATH fd cannot chown or stamp it without following, so it is reached by name.
        let dir = self.parent_fd(&st, super::UPPER)?;
        let name = st.name.as_os_str();
        if ovr {
            let s = rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).op("stat")?;
            self.set_override(&Self::proc_path(&dir, name), false, &s, uid, gid, set.mode)?;
        } else if uid.is_some() || gid.is_some() {
            let (u, g) = (uid.map(rfs::Uid::from_raw), gid.map(rfs::Gid::from_raw));
            rfs::chownat(&dir, name, u, g, AtFlags::SYMLINK_NOFOLLOW).op("chown")?;
        }
        if want_times {
            rfs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW).op("utimes")?;
        }
        let s = rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).op("stat")?;
        Ok(self.attr_of(&node, &s, st.layers.len()))
    }

    /// An `O_PATH` fd on node `node`'s object: the pinned one once removed, else opened by
    /// name and checked to be this node's (the name may be changing under us), retrying with
    /// the node's updated location.
    fn node_object_fd(&self, node: &Node) -> Result<OwnedFd> {
        for _ in 0..4 {
            let st = node.state();
            if st.unlinked {
                let p = node.pinned_fd("setattr")?;
                return p.try_clone().op("dup");
            }
            let l = st.layers[0];
            if node.ino == ROOT {
                return self.stack.layers[l as usize].root.try_clone().op("dup");
            }
            let dfd = self.parent_fd(&st, l)?;
            let flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            if let Ok(fd) = rfs::openat(&dfd, &st.name, flags, Mode::empty()) {
                if let Ok(s) = rfs::fstat(&fd) {
                    let origin = || {
                        let p = Self::proc_path(&fd, OsStr::new("."));
                        let mut buf = [0u8; 8];
                        match rfs::getxattr(
                            OsStr::from_bytes(&p),
                            self.origin_xattr.as_str(),
                            &mut buf[..],
                        ) {
                            Ok(8) => Some(u64::from_le_bytes(buf)),
                            _ => None,
                        }
                    };
                    if self.is_node_object(node, l, &s, origin) {
                        return Ok(fd);
                    }
                }
            }
            std::thread::yield_now();
        }
        Err(Error::new("setattr: object replaced", Errno::NOENT))
    }

    /// Records a chown/chmod in the override xattr instead of the inode (`xattr_permissions`).
    fn set_override(
        &self,
        path: &[u8],
        follow: bool,
        s: &Stat,
        uid: Option<u32>,
        gid: Option<u32>,
        mode: Option<u32>,
    ) -> Result<()> {
        // `follow` here too: the path may be the bare /proc/self/fd/N of the object, whose
        // l*xattr calls would read the link's (none), so each change started from the inode.
        let cur = self
            .read_override_at(path, follow)
            .unwrap_or(super::override_stat::Override {
                uid: s.st_uid,
                gid: s.st_gid,
                perm: s.st_mode & 0o7777,
            });
        // A chown clears the setid bits of a non-directory whoever makes it (`chown_common`,
        // fs/open.c); a real chown of the layer's file would, so the recorded one does too.
        let chown = uid.is_some() || gid.is_some();
        let perm = match mode {
            Some(m) => m & 0o7777,
            None if chown && FileType::from_raw_mode(s.st_mode) != FileType::Directory => {
                cur.perm & !setid_bits(cur.perm)
            }
            None => cur.perm,
        };
        let new = super::override_stat::Override {
            uid: uid.unwrap_or(cur.uid),
            gid: gid.unwrap_or(cur.gid),
            perm,
        };
        self.write_override_at(path, new, follow)
    }

    /// chmod of `name` in `dir` without following a symlink: open it `O_PATH|O_NOFOLLOW`, then
    /// chmod through its `/proc/self/fd` link, which names that exact inode.
    pub(crate) fn chmod_at(dir: &std::os::fd::OwnedFd, name: &OsStr, mode: u32) -> Result<()> {
        let fd = rfs::openat(
            dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .op("open for chmod")?;
        let p = Self::proc_path(&fd, OsStr::new("."));
        rfs::chmod(OsStr::from_bytes(&p), Mode::from_raw_mode(mode & 0o7777)).op("chmod")
    }
}

impl Union {
    /// Maps a host uid to what the caller sees.
    pub(crate) fn show_uid(&self, uid: u32) -> u32 {
        if let Some(s) = self.cfg.squash_uid {
            return s;
        }
        self.cfg
            .uid_map
            .to_container(uid)
            .unwrap_or(crate::idmap::OVERFLOW_ID)
    }

    pub(crate) fn show_gid(&self, gid: u32) -> u32 {
        if let Some(s) = self.cfg.squash_gid {
            return s;
        }
        self.cfg
            .gid_map
            .to_container(gid)
            .unwrap_or(crate::idmap::OVERFLOW_ID)
    }

    /// Maps a caller uid to the uid stored on disk.
    pub(crate) fn store_uid(&self, uid: u32) -> Result<u32> {
        self.cfg
            .uid_map
            .to_host(uid)
            .ok_or(Error::new("uid not mapped", Errno::INVAL))
    }

    pub(crate) fn store_gid(&self, gid: u32) -> Result<u32> {
        self.cfg
            .gid_map
            .to_host(gid)
            .ok_or(Error::new("gid not mapped", Errno::INVAL))
    }
}
