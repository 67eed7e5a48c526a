//! Creating and removing names: mknod, mkdir, symlink, create, link, unlink, rmdir.
//!
//! New objects go to the upper layer. Where a whiteout hides a lower object of the same name,
//! the new object replaces the whiteout atomically (made in the work dir, then renamed over
//! it), and a new directory is made opaque so that nothing of the old lower directory shows
//! through: after `rm -rf d; mkdir d` no old entry is reachable by name
//! (containers/fuse-overlayfs#324).

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::{Attr, Ctx, Found, Handle, Ino, Union, UPPER};
use crate::error::{is_absent, Error, Op, Result};
use crate::whiteout::{self, Format};

/// What sits at a name in the upper directory before something is created there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    CharWhiteout,
    WhFile,
}

/// What to create.
pub enum NewKind<'a> {
    /// A directory.
    Dir,
    /// A regular file, opened with these flags.
    File(OFlags),
    /// A symlink to this target.
    Symlink(&'a OsStr),
    /// A device, fifo or socket.
    Node(FileType, u64),
}

impl Union {
    fn slot(&self, updir: &OwnedFd, name: &OsStr) -> Result<Slot> {
        match rfs::statat(updir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if whiteout::is_char_whiteout(&st) => Ok(Slot::CharWhiteout),
            Ok(_) => Err(Error::new("create", Errno::EXIST)),
            Err(e) if is_absent(e) => Ok(if Self::has_wh(updir, name) {
                Slot::WhFile
            } else {
                Slot::Free
            }),
            Err(e) => Err(Error::new("create", e)),
        }
    }

    /// Creates `name` in `parent` as the caller; returns its attributes and, for files, a handle.
    pub fn create(
        &self,
        ctx: Ctx,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        kind: NewKind<'_>,
    ) -> Result<(Attr, Option<u64>)> {
        Self::check_name(name)?;
        if whiteout::is_reserved(name.as_bytes()) {
            return Err(Error::new("create: reserved name", Errno::INVAL));
        }
        if let NewKind::Node(FileType::CharacterDevice, 0) = kind {
            // Char 0/0 is the whiteout marker: refused, as kernel overlayfs refuses it.
            return Err(Error::new("mknod: 0/0 is a whiteout", Errno::PERM));
        }
        let pnode = self.ensure_upper(parent)?;
        let pst = pnode.state();
        if self.resolve(parent, &pst, name)?.is_some() {
            return Err(Error::new("create", Errno::EXIST));
        }
        let updir = self.dir_fd(parent, UPPER)?;
        let slot = self.slot(&updir, name)?;
        let pstat = rfs::fstat(&updir).op("stat parent")?;
        let uid = self.store_uid(ctx.uid)?;
        // setgid directories hand their group down, and directories inherit the bit (inode(7)).
        let setgid_parent = pstat.st_mode & libc::S_ISGID != 0;
        let gid = if setgid_parent {
            pstat.st_gid
        } else {
            self.store_gid(ctx.gid)?
        };
        let is_dir = matches!(kind, NewKind::Dir);
        let mut perm = mode & 0o7777;
        if is_dir && setgid_parent {
            perm |= libc::S_ISGID;
        }

        // Where to build it: in place, or in the work dir to be renamed over a whiteout.
        let work = self.work()?;
        let tmp = self.tmp_name();
        let (dir, at): (&OwnedFd, &OsStr) = match slot {
            Slot::CharWhiteout => (work, tmp.as_os_str()),
            _ => (&updir, name),
        };
        let file = self.make(dir, at, &kind, perm)?;
        let finish = || -> Result<()> {
            if self.override_name().is_some() {
                // xattr_permissions: the owner the caller sees lives in the override xattr.
                let o = super::override_stat::Override { uid, gid, perm };
                self.write_override(&Self::proc_path(dir, at), o)?;
            } else {
                let owner = (Some(rfs::Uid::from_raw(uid)), Some(rfs::Gid::from_raw(gid)));
                rfs::chownat(dir, at, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
                    .op("create: chown")?;
                if perm & (libc::S_ISUID | libc::S_ISGID) != 0
                    && !matches!(kind, NewKind::Symlink(_))
                {
                    // chown cleared setuid/setgid; put back what the caller asked for.
                    Self::chmod_at(dir, at, perm)?;
                }
            }
            if is_dir && slot != Slot::Free {
                self.set_opaque(dir, at)?;
            }
            match slot {
                Slot::Free => Ok(()),
                Slot::CharWhiteout if is_dir => {
                    rfs::renameat_with(work, at, &updir, name, RenameFlags::EXCHANGE)
                        .op("create: replace whiteout")?;
                    rfs::unlinkat(work, at, AtFlags::empty()).op("create: drop whiteout")
                }
                Slot::CharWhiteout => {
                    rfs::renameat(work, at, &updir, name).op("create: replace whiteout")
                }
                Slot::WhFile => {
                    let wh = whiteout::wh_name(name).unwrap_or_default();
                    rfs::unlinkat(&updir, OsStr::from_bytes(&wh), AtFlags::empty())
                        .op("create: drop .wh. whiteout")
                }
            }
        };
        if let Err(e) = finish() {
            let _ = crate::tree::remove_entry(
                dir,
                &std::ffi::CString::new(at.as_bytes()).unwrap_or_default(),
            );
            return Err(e);
        }
        self.dir_changed(parent);
        let st = rfs::statat(&updir, name, AtFlags::SYMLINK_NOFOLLOW).op("create: stat")?;
        let found = Found {
            layers: vec![UPPER],
            st,
            dirfd: updir,
            data: None,
        };
        let ino = self.tagged(UPPER, st.st_dev, st.st_ino);
        let node = self.remember(ino, parent, name, &found);
        let attr = self.attr_of(&node, &st, 1);
        let fh = file.map(|fd| {
            self.new_fh(Handle {
                fd,
                ino,
                upper: true,
            })
        });
        Ok((attr, fh))
    }

    fn make(
        &self,
        dir: &OwnedFd,
        at: &OsStr,
        kind: &NewKind<'_>,
        perm: u32,
    ) -> Result<Option<OwnedFd>> {
        let mode = Mode::from_raw_mode(perm);
        match kind {
            NewKind::Dir => rfs::mkdirat(dir, at, mode).op("mkdir").map(|()| None),
            NewKind::Symlink(t) => rfs::symlinkat(*t, dir, at).op("symlink").map(|()| None),
            NewKind::Node(ft, rdev) => rfs::mknodat(dir, at, *ft, mode, *rdev)
                .op("mknod")
                .map(|()| None),
            NewKind::File(flags) => {
                let keep =
                    *flags & (OFlags::RWMODE | OFlags::APPEND | OFlags::SYNC | OFlags::DSYNC);
                // Open read-write whatever the caller asked: the kernel may read through a
                // write-only handle (writeback cache, partial pages).
                let keep = (keep - OFlags::RWMODE) | OFlags::RDWR;
                rfs::openat(
                    dir,
                    at,
                    keep | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    mode,
                )
                .op("create")
                .map(Some)
            }
        }
    }

    /// Marks directory `at` in `dir` opaque, in the format this mount writes.
    pub(crate) fn set_opaque(&self, dir: &OwnedFd, at: &OsStr) -> Result<()> {
        let p = Self::proc_path(dir, at);
        let name = format!("{}opaque", self.stack.xattr_prefix);
        if self.stack.whiteout == Format::Kernel {
            match rfs::lsetxattr(
                OsStr::from_bytes(&p),
                name.as_str(),
                b"y",
                rfs::XattrFlags::empty(),
            ) {
                Ok(()) => return Ok(()),
                Err(e) if crate::error::is_unsupported(e) => {}
                Err(e) => return Err(Error::new("set opaque", e)),
            }
        }
        let d = rfs::openat(
            dir,
            at,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .op("open new dir")?;
        rfs::openat(
            &d,
            OsStr::from_bytes(whiteout::OPAQUE_MARKER),
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .op("create opaque marker")?;
        Ok(())
    }

    /// Hard link `ino` as `name` in `parent`.
    pub fn link(&self, ino: Ino, parent: Ino, name: &OsStr) -> Result<Attr> {
        Self::check_name(name)?;
        if whiteout::is_reserved(name.as_bytes()) {
            return Err(Error::new("link: reserved name", Errno::INVAL));
        }
        let node = self.ensure_upper(ino)?;
        let pnode = self.ensure_upper(parent)?;
        let pst = pnode.state();
        if self.resolve(parent, &pst, name)?.is_some() {
            return Err(Error::new("link", Errno::EXIST));
        }
        let st = node.state();
        if st.kind == FileType::Directory {
            return Err(Error::new("link", Errno::PERM));
        }
        let updir = self.dir_fd(parent, UPPER)?;
        let slot = self.slot(&updir, name)?;
        let (src_dir, src_name): (std::sync::Arc<OwnedFd>, OsString) = if st.unlinked {
            let fd = node.pinned_fd("link")?.try_clone().op("dup")?;
            (std::sync::Arc::new(fd), OsString::new())
        } else {
            (self.parent_fd(&st, UPPER)?, st.name.clone())
        };
        let flags = if src_name.is_empty() {
            AtFlags::EMPTY_PATH
        } else {
            AtFlags::empty()
        };
        match slot {
            Slot::CharWhiteout => {
                let work = self.work()?;
                let tmp = self.tmp_name();
                rfs::linkat(&src_dir, &src_name, work, &tmp, flags).op("link")?;
                if let Err(e) = rfs::renameat(work, &tmp, &updir, name) {
                    let _ = rfs::unlinkat(work, &tmp, AtFlags::empty());
                    return Err(Error::new("link: replace whiteout", e));
                }
            }
            _ => {
                rfs::linkat(&src_dir, &src_name, &updir, name, flags).op("link")?;
                if slot == Slot::WhFile {
                    let wh = whiteout::wh_name(name).unwrap_or_default();
                    rfs::unlinkat(&updir, OsStr::from_bytes(&wh), AtFlags::empty())
                        .op("link: drop .wh. whiteout")?;
                }
            }
        }
        self.dir_changed(parent);
        let s = rfs::statat(&updir, name, AtFlags::SYMLINK_NOFOLLOW).op("link: stat")?;
        let found = Found {
            layers: vec![UPPER],
            st: s,
            dirfd: updir,
            data: None,
        };
        let node = self.remember(node.ino, parent, name, &found);
        Ok(self.attr_of(&node, &s, 1))
    }

    /// True when a lower layer of `parent` (below the upper) still has `name` visible, so
    /// removing the upper object must leave a whiteout.
    pub(crate) fn lower_has(
        &self,
        parent: Ino,
        layers: &[super::LayerId],
        name: &OsStr,
    ) -> Result<bool> {
        let lowers: Vec<_> = layers
            .iter()
            .copied()
            .filter(|l| !self.is_upper(*l))
            .collect();
        if lowers.is_empty() {
            return Ok(false);
        }
        let st = super::NodeState {
            parent,
            name: OsString::new(),
            layers: lowers,
            kind: FileType::Directory,
            unlinked: false,
            data: None,
        };
        Ok(self.resolve(parent, &st, name)?.is_some())
    }

    /// unlink(2) and rmdir(2).
    pub fn remove(&self, parent: Ino, name: &OsStr, dir: bool) -> Result<()> {
        Self::check_name(name)?;
        let p = self.node(parent)?;
        let pst = p.state();
        let mut f = self
            .resolve(parent, &pst, name)?
            .ok_or(Error::new("remove", Errno::NOENT))?;
        let ino = self.ino_of(f.layers[0], &f.st, &f.dirfd, name);
        // An open for writing copies a file up without the directory lock the kernel holds
        // for unlink: wait for a copy of this object in progress, and look again, so the
        // removal acts on what the name holds now (else it would pin the lower object it
        // saw, and fail on the upper copy with the node marked removed).
        let victim = self.nodes.get(&ino).map(|n| n.clone());
        let _copying = victim.as_ref().map(|n| n.copy_lock.lock());
        if victim.is_some() {
            f = self
                .resolve(parent, &pst, name)?
                .ok_or(Error::new("remove", Errno::NOENT))?;
        }
        let kind = FileType::from_raw_mode(f.st.st_mode);
        match (dir, kind == FileType::Directory) {
            (true, false) => return Err(Error::new("rmdir", Errno::NOTDIR)),
            (false, true) => return Err(Error::new("unlink", Errno::ISDIR)),
            _ => {}
        }
        if dir {
            // The union view must be empty; a known node has the right layer list.
            let child = self.remember(ino, parent, name, &f);
            let empty = self.is_empty_dir(ino);
            self.forget(ino, 1);
            drop(child);
            if !empty? {
                return Err(Error::new("rmdir", Errno::NOTEMPTY));
            }
        }
        let pnode = self.ensure_upper(parent)?;
        let pst = pnode.state();
        let updir = self.dir_fd(parent, UPPER)?;
        let need_whiteout =
            !self.is_upper(f.layers[0]) || self.lower_has(parent, &pst.layers, name)?;
        self.pin_removed(ino, parent, name, &f);

        let removed = if self.is_upper(f.layers[0]) {
            self.remove_upper(&updir, name, dir, need_whiteout)
        } else {
            self.make_whiteout(&updir, name)
        };
        if let Err(e) = removed {
            // Still there: the node must not stay marked removed.
            self.unpin(ino, parent, name);
            return Err(e);
        }
        if dir {
            // Its fds (and any below it) must not serve a directory made later at this path.
            let _t = self.tree.write();
            self.dir_fds.clear();
        }
        self.dir_changed(parent);
        Ok(())
    }

    /// Marks the node at `parent`/`name` removed, keeping an fd on it so open files and fstat
    /// keep working. A hard link known under another name is left alone.
    pub(crate) fn pin_removed(&self, ino: Ino, parent: Ino, name: &OsStr, f: &Found) {
        let Some(node) = self.nodes.get(&ino).map(|n| n.clone()) else {
            return;
        };
        let path = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        // A metacopy's data stays at the same path of its lower layer, which is not reachable
        // by name once the entry is gone: reopening the removed file (through /proc/PID/fd)
        // reads it from this fd. Opened before the node lock: `dir_fd` takes the tree lock,
        // which rename holds while it takes node locks.
        let data = f.data.and_then(|l| {
            let dir = self.dir_fd(parent, l).ok()?;
            rfs::openat(&*dir, name, path, Mode::empty()).ok()
        });
        let mut st = node.st.write();
        if st.parent != parent || st.name != name {
            return;
        }
        if let Ok(fd) = rfs::openat(&f.dirfd, name, path, Mode::empty()) {
            *node.pinned.lock() = Some(std::sync::Arc::new(super::Pinned { fd, data }));
        }
        st.unlinked = true;
    }

    /// Undoes [`Union::pin_removed`] after a removal that failed.
    pub(crate) fn unpin(&self, ino: Ino, parent: Ino, name: &OsStr) {
        let Some(node) = self.nodes.get(&ino).map(|n| n.clone()) else {
            return;
        };
        let mut st = node.st.write();
        if st.unlinked && st.parent == parent && st.name == name {
            st.unlinked = false;
            *node.pinned.lock() = None;
        }
    }

    /// Removes upper object `name`, leaving a whiteout when a lower one would show through.
    /// A directory is first moved into the work dir (atomically, with the whiteout left in its
    /// place by RENAME_WHITEOUT where possible) and emptied there.
    pub(crate) fn remove_upper(
        &self,
        updir: &OwnedFd,
        name: &OsStr,
        dir: bool,
        need_whiteout: bool,
    ) -> Result<()> {
        let work = self.work()?;
        if !dir && !need_whiteout {
            return rfs::unlinkat(updir, name, AtFlags::empty()).op("unlink");
        }
        let tmp = self.tmp_name();
        if need_whiteout && self.stack.whiteout == Format::Kernel {
            match rfs::renameat_with(updir, name, work, &tmp, RenameFlags::WHITEOUT) {
                Ok(()) => return self.discard(work, tmp, dir),
                Err(e) if crate::error::is_unsupported(e) => {}
                Err(e) => return Err(Error::new("remove: rename with whiteout", e)),
            }
        }
        if need_whiteout {
            // `.wh.NAME` first: if we stop between the two steps, NAME still shows (the removal
            // did not happen), never a half state.
            self.make_wh_file(updir, name)?;
        }
        rfs::renameat(updir, name, work, &tmp).op("remove: move to work")?;
        self.discard(work, tmp, dir)
    }

    /// Removes `tmp` from the work dir: a directory in the background (see `discard.rs`); a
    /// file now, since its other hard links must show the new link count at once.
    fn discard(&self, work: &OwnedFd, tmp: OsString, dir: bool) -> Result<()> {
        if dir && self.discarder.queue(work, tmp.clone()) {
            return Ok(());
        }
        crate::tree::remove_entry(
            work,
            &std::ffi::CString::new(tmp.as_bytes()).unwrap_or_default(),
        )
        .op("remove: clean work")
    }

    /// Writes a whiteout for `name` in the upper dir `updir`.
    pub(crate) fn make_whiteout(&self, updir: &OwnedFd, name: &OsStr) -> Result<()> {
        if self.stack.whiteout == Format::Kernel {
            match self.link_whiteout(updir, name) {
                Ok(()) => return Ok(()),
                Err(e) if e == Errno::EXIST => return Err(Error::new("whiteout", e)),
                Err(_) => {}
            }
            match rfs::mknodat(updir, name, FileType::CharacterDevice, Mode::empty(), 0) {
                Ok(()) => return Ok(()),
                Err(e) if crate::error::is_unsupported(e) => {}
                Err(e) => return Err(Error::new("whiteout", e)),
            }
        }
        self.make_wh_file(updir, name)
    }

    /// Links the shared whiteout of the work dir to `name`. Making a device node allocates an
    /// inode, which costs ext4 about 100 µs; a link costs a tenth of that. Kernel overlayfs
    /// shares one whiteout inode the same way (`ovl_whiteout()`, fs/overlayfs/dir.c), and
    /// makes a new one when the link count is full (EMLINK).
    fn link_whiteout(&self, updir: &OwnedFd, name: &OsStr) -> std::result::Result<(), Errno> {
        const SHARED: &str = "#strata-whiteout";
        let work = self.work().map_err(|e| e.errno)?;
        let link = || rfs::linkat(work, SHARED, updir, name, AtFlags::empty());
        match link() {
            Err(Errno::NOENT) | Err(Errno::MLINK) => {}
            r => return r,
        }
        {
            let _g = self.whiteout_lock.lock();
            // Another thread may have replaced it meanwhile.
            match link() {
                Err(Errno::NOENT) | Err(Errno::MLINK) => {}
                r => return r,
            }
            let tmp = self.tmp_name();
            rfs::mknodat(work, &tmp, FileType::CharacterDevice, Mode::empty(), 0)?;
            if let Err(e) = rfs::renameat(work, &tmp, work, SHARED) {
                let _ = rfs::unlinkat(work, &tmp, AtFlags::empty());
                return Err(e);
            }
        }
        link()
    }

    fn make_wh_file(&self, updir: &OwnedFd, name: &OsStr) -> Result<()> {
        let wh = whiteout::wh_name(name).ok_or(Error::new(
            "whiteout: name too long for .wh. form",
            Errno::NAMETOOLONG,
        ))?;
        match rfs::openat(
            updir,
            OsStr::from_bytes(&wh),
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(_) => Ok(()),
            Err(e) => Err(Error::new("whiteout: .wh. file", e)),
        }
    }
}
