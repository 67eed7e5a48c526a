//! rename(2) and renameat2(2) with RENAME_NOREPLACE and RENAME_EXCHANGE.
//!
//! Files, symlinks and upper-only directories move inside the upper layer. When the source
//! name still has a lower object below, the move leaves a whiteout behind, atomically with
//! RENAME_WHITEOUT where the kernel allows it. A directory that lower layers also supply
//! (merged or lower-only) is refused with EXDEV, as kernel overlayfs does with
//! `redirect_dir=off`; `mv` then copies and deletes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, AtFlags, FileType, RenameFlags};
use rustix::io::Errno;

use super::{Found, Ino, Union, UPPER};
use crate::error::{Error, Op, Result};
use crate::whiteout::{self, Format};

/// `RENAME_NOREPLACE` as the kernel sends it.
pub const NOREPLACE: u32 = 1;
/// `RENAME_EXCHANGE` as the kernel sends it.
pub const EXCHANGE: u32 = 2;

impl Union {
    /// Moves `parent/name` to `newparent/newname`.
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        Self::check_name(name)?;
        Self::check_name(newname)?;
        if whiteout::is_reserved(newname.as_bytes()) {
            return Err(Error::new("rename: reserved name", Errno::INVAL));
        }
        if flags & !(NOREPLACE | EXCHANGE) != 0 || flags == NOREPLACE | EXCHANGE {
            return Err(Error::new("rename: flags", Errno::INVAL));
        }
        let exchange = flags & EXCHANGE != 0;
        let pst = self.node(parent)?.state();
        let src = self
            .resolve(parent, &pst, name)?
            .ok_or(Error::new("rename", Errno::NOENT))?;
        let npst = self.node(newparent)?.state();
        let dst = self.resolve(newparent, &npst, newname)?;
        match (&dst, flags) {
            (Some(_), NOREPLACE) => return Err(Error::new("rename", Errno::EXIST)),
            (None, EXCHANGE) => return Err(Error::new("rename", Errno::NOENT)),
            _ => {}
        }
        let src_ino = self.ino_of(src.layers[0], &src.st, &src.dirfd, name);
        let src_dir = FileType::from_raw_mode(src.st.st_mode) == FileType::Directory;
        let dst_ino = dst
            .as_ref()
            .map(|d| self.ino_of(d.layers[0], &d.st, &d.dirfd, newname));
        if dst_ino == Some(src_ino) && !exchange {
            return Ok(()); // two names of one file: POSIX says do nothing
        }
        let dst_dir = dst
            .as_ref()
            .is_some_and(|d| FileType::from_raw_mode(d.st.st_mode) == FileType::Directory);
        if let (Some(d), false) = (&dst, exchange) {
            match (src_dir, dst_dir) {
                (true, false) => return Err(Error::new("rename", Errno::NOTDIR)),
                (false, true) => return Err(Error::new("rename", Errno::ISDIR)),
                _ => {}
            }
            if dst_dir {
                let n = self.remember(dst_ino.unwrap_or_default(), newparent, newname, d);
                let empty = self.is_empty_dir(n.ino);
                self.forget(n.ino, 1);
                if !empty? {
                    return Err(Error::new("rename", Errno::NOTEMPTY));
                }
            }
        }
        // Only upper-only directories can move (redirect_dir=off semantics).
        let movable = |f: &Found| f.layers == [UPPER] && self.has_upper();
        if (src_dir && !movable(&src))
            || (exchange && dst_dir && !dst.as_ref().is_some_and(movable))
        {
            return Err(Error::new(
                "rename: directory from a lower layer",
                Errno::XDEV,
            ));
        }

        // Copy up what moves, and both parents.
        let sn = self.remember(src_ino, parent, name, &src);
        let held = scopeguard(self, src_ino);
        self.ensure_upper(src_ino)?;
        let _dn = match (&dst, exchange) {
            (Some(d), true) => {
                let n = self.remember(dst_ino.unwrap_or_default(), newparent, newname, d);
                self.ensure_upper(n.ino)?;
                Some(scopeguard(self, n.ino))
            }
            _ => None,
        };
        let pst = self.ensure_upper(parent)?.state();
        let npst = self.ensure_upper(newparent)?.state();
        let src_up = self.dir_fd(parent, UPPER)?;
        let dst_up = self.dir_fd(newparent, UPPER)?;
        let src_leaves_wh = self.lower_has(parent, &pst.layers, name)?;
        let dst_has_lower = self.lower_has(newparent, &npst.layers, newname)?;

        if exchange {
            if src_dir && dst_has_lower {
                self.set_opaque(&src_up, name)?;
            }
            if dst_dir && src_leaves_wh {
                self.set_opaque(&dst_up, newname)?;
            }
            let _t = (src_dir || dst_dir).then(|| self.tree.write());
            rfs::renameat_with(&src_up, name, &dst_up, newname, RenameFlags::EXCHANGE)
                .op("rename exchange")?;
            self.move_node(src_ino, newparent, newname);
            if let Some(d) = dst_ino {
                self.move_node(d, parent, name);
            }
            if src_dir || dst_dir {
                // Paths below a moved directory changed (see `dirfds`).
                self.dir_fds.clear();
            }
        } else {
            if let Some(d) = &dst {
                let dino = dst_ino.unwrap_or_default();
                // Pin the replaced object first, while the name still leads to it.
                self.pin_removed(dino, newparent, newname, d);
                if dst_dir && self.is_upper(d.layers[0]) {
                    // The target directory is empty in the union, but its upper copy may hold
                    // whiteouts: clear it, leaving a whiteout if lower layers have it.
                    self.remove_upper(&dst_up, newname, true, dst_has_lower)?;
                    // Gone now, whatever happens next: no cached fd may serve it.
                    {
                        let _t = self.tree.write();
                        self.dir_fds.clear();
                    }
                    self.dir_changed(newparent);
                }
            }
            if src_dir && dst_has_lower {
                self.set_opaque(&src_up, name)?;
            }
            let _t = src_dir.then(|| self.tree.write());
            self.move_in_upper(&src_up, name, &dst_up, newname, src_dir, src_leaves_wh)?;
            self.move_node(src_ino, newparent, newname);
            if src_dir || dst_dir {
                // Paths below a moved or replaced directory changed (see `dirfds`).
                self.dir_fds.clear();
            }
        }
        drop(held);
        drop(sn);
        self.dir_changed(parent);
        self.dir_changed(newparent);
        Ok(())
    }

    /// The rename itself, in the upper layer, over whatever whiteout the target has, leaving a
    /// whiteout at the source when `leave_wh`.
    fn move_in_upper(
        &self,
        sdir: &std::os::fd::OwnedFd,
        sname: &OsStr,
        ddir: &std::os::fd::OwnedFd,
        dname: &OsStr,
        is_dir: bool,
        leave_wh: bool,
    ) -> Result<()> {
        let dst_char_wh = rfs::statat(ddir, dname, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|s| whiteout::is_char_whiteout(&s));
        let dst_wh_file = whiteout::wh_name(dname)
            .filter(|w| rfs::statat(ddir, OsStr::from_bytes(w), AtFlags::SYMLINK_NOFOLLOW).is_ok());
        let kernel = self.stack.whiteout == Format::Kernel;
        if leave_wh && !kernel {
            // `.wh.NAME` first: a crash in between leaves the old name visible, never neither.
            self.make_whiteout_wh(sdir, sname)?;
        }
        if is_dir && dst_char_wh {
            // A directory cannot replace a char device; swap them, and the whiteout lands at
            // the source, which is what the source needs if a lower object is below it.
            rfs::renameat_with(sdir, sname, ddir, dname, RenameFlags::EXCHANGE)
                .op("rename over whiteout")?;
            if !(leave_wh && kernel) {
                rfs::unlinkat(sdir, sname, AtFlags::empty()).op("rename: drop whiteout")?;
            }
        } else {
            let mut moved = false;
            if leave_wh && kernel {
                match rfs::renameat_with(sdir, sname, ddir, dname, RenameFlags::WHITEOUT) {
                    Ok(()) => moved = true,
                    Err(e) if crate::error::is_unsupported(e) => {}
                    Err(e) => return Err(Error::new("rename with whiteout", e)),
                }
            }
            if !moved {
                rfs::renameat(sdir, sname, ddir, dname).op("rename")?;
                if leave_wh && kernel {
                    self.make_whiteout(sdir, sname)?;
                }
            }
        }
        if let Some(w) = dst_wh_file {
            rfs::unlinkat(ddir, OsStr::from_bytes(&w), AtFlags::empty())
                .op("rename: drop .wh. whiteout")?;
        }
        Ok(())
    }

    fn make_whiteout_wh(&self, dir: &std::os::fd::OwnedFd, name: &OsStr) -> Result<()> {
        let wh = whiteout::wh_name(name).ok_or(Error::new(
            "whiteout: name too long for .wh. form",
            Errno::NAMETOOLONG,
        ))?;
        rfs::openat(
            dir,
            OsStr::from_bytes(&wh),
            rfs::OFlags::WRONLY
                | rfs::OFlags::CREATE
                | rfs::OFlags::NOFOLLOW
                | rfs::OFlags::CLOEXEC,
            rfs::Mode::empty(),
        )
        .op("whiteout: .wh. file")
        .map(drop)
    }

    fn move_node(&self, ino: Ino, parent: Ino, name: &OsStr) {
        if let Some(n) = self.nodes.get(&ino) {
            let mut st = n.st.write();
            st.parent = parent;
            st.name = name.to_os_string();
            st.unlinked = false;
        }
    }
}

/// Gives back the lookup reference taken to work on a node during rename.
struct Held<'a> {
    u: &'a Union,
    ino: Ino,
}

fn scopeguard(u: &Union, ino: Ino) -> Held<'_> {
    Held { u, ino }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.u.forget(self.ino, 1);
    }
}
