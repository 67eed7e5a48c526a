//! Open files: open, read, write, fsync, fallocate, lseek, copy_file_range; readlink; statfs.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, FallocateFlags, FileType, Mode, OFlags, SeekFrom};
use rustix::io::Errno;

use super::{Handle, Ino, Union, ROOT};
use crate::error::{Error, Op, Result};

/// `statfs` of the union.
#[derive(Debug, Clone, Copy)]
pub struct StatFs {
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Maximum name length.
    pub namelen: u32,
    /// Fragment size.
    pub frsize: u32,
}

impl Union {
    /// Opens `ino`. Write access or O_TRUNC copies a lower file up first.
    pub fn open(&self, ino: Ino, flags: OFlags) -> Result<u64> {
        let writes = flags.intersects(OFlags::WRONLY | OFlags::RDWR | OFlags::TRUNC);
        let node = if writes {
            self.ensure_upper(ino)?
        } else {
            self.node(ino)?
        };
        let mut st = node.state();
        if writes && st.data.is_some() {
            // Never open a metacopy's data (a lower file) for writing.
            crate::copy_up::complete_metacopy(self, &node)?;
            st = node.state();
        }
        if st.kind == FileType::Directory {
            return Err(Error::new("open", Errno::ISDIR));
        }
        let keep = flags
            & (OFlags::RWMODE | OFlags::APPEND | OFlags::SYNC | OFlags::DSYNC | OFlags::TRUNC);
        // O_DIRECT stays with the kernel: the daemon's buffers are not aligned for it.
        // Read-write internally, so the kernel may read through a write-only handle.
        let keep = if keep.intersects(OFlags::WRONLY | OFlags::RDWR) {
            (keep - OFlags::RWMODE) | OFlags::RDWR
        } else {
            keep
        };
        // A metacopy is read from its data below (a writer completed it above).
        let l = st.data.unwrap_or(st.layers[0]);
        let upper = self.is_upper(l);
        let fd = if st.unlinked {
            let p = node.pinned_fd("open")?;
            match (&p.data, st.data) {
                // A removed metacopy is read from its data (a writer completed it above).
                (Some(data), Some(_)) => Self::reopen(data, keep)?,
                _ => Self::reopen(&p, keep)?,
            }
        } else {
            let dfd = self.parent_fd(&st, l)?;
            let mut fl = keep | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            if !upper && !self.stack.layers[l as usize].kernel_ro {
                fl |= OFlags::NOATIME;
            }
            let opened = match rfs::openat(&dfd, &st.name, fl, Mode::empty()) {
                Err(Errno::PERM) if fl.contains(OFlags::NOATIME) => {
                    rfs::openat(&dfd, &st.name, fl - OFlags::NOATIME, Mode::empty())
                }
                r => r,
            };
            // OPEN is not serialized with unlink/rename of the name: make sure the object
            // opened is this node's, else use the pinned fd of the removed node.
            let ok = opened
                .as_ref()
                .ok()
                .and_then(|fd| rfs::fstat(fd).ok())
                .filter(|s| {
                    // A metacopy's data file is not the node's own object (lowers do not
                    // change, so the name still leads to the data).
                    st.data.is_some()
                        || self.is_node_object(&node, l, s, || {
                            let mut buf = [0u8; 8];
                            let fd = opened.as_ref().ok()?;
                            match rfs::fgetxattr(fd, self.origin_xattr.as_str(), &mut buf[..]) {
                                Ok(8) => Some(u64::from_le_bytes(buf)),
                                _ => None,
                            }
                        })
                });
            match (opened, ok) {
                (Ok(fd), Some(_)) => fd,
                (r, _) => match node.pinned.lock().clone() {
                    Some(p) if node.st.read().unlinked => Self::reopen(&p, keep)?,
                    _ => {
                        // Not a failure of the object itself: its name now holds something
                        // else (or nothing), which to the caller is a vanished name.
                        drop(r);
                        return Err(Error::new("open: object replaced", Errno::NOENT));
                    }
                },
            }
        };
        Ok(self.new_fh(Handle { fd, ino, upper }))
    }

    /// Opens the object behind an `O_PATH` fd (a removed node's pin) with `flags`.
    pub(crate) fn reopen(pinned: &OwnedFd, flags: OFlags) -> Result<OwnedFd> {
        let path = Self::proc_path(pinned, OsStr::new("."));
        rfs::open(
            OsStr::from_bytes(&path),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .op("reopen")
    }

    /// A file to register as the kernel's passthrough backing file of handle `fh`, and whether
    /// it is the upper object. An upper object is reopened read-write (whatever the handle
    /// allows), so that every later open of the inode, writers too, can share it.
    pub fn backing_fd(&self, fh: u64) -> Result<(OwnedFd, bool)> {
        let h = self.handle(fh)?;
        if h.upper {
            if let Ok(fd) = Self::reopen(&h.fd, OFlags::RDWR) {
                return Ok((fd, true));
            }
        }
        // Not writable: writers must not share it (they get ETXTBSY until it closes).
        Ok((h.fd.try_clone().op("dup")?, false))
    }

    /// The size of handle `fh`'s file now.
    pub fn handle_size(&self, fh: u64) -> Result<u64> {
        Ok(rfs::fstat(&self.handle(fh)?.fd).op("fstat")?.st_size as u64)
    }

    /// Closes handle `fh`.
    pub fn release(&self, fh: u64) {
        self.handles.remove(&fh);
    }

    /// Reads up to `buf.len()` bytes at `off`.
    pub fn read(&self, fh: u64, off: u64, buf: &mut [u8]) -> Result<usize> {
        let h = self.handle(fh)?;
        let mut done = 0;
        while done < buf.len() {
            let n = rustix::io::pread(&h.fd, &mut buf[done..], off + done as u64).op("read")?;
            if n == 0 {
                break;
            }
            done += n;
        }
        Ok(done)
    }

    /// Writes `data` at `off`.
    pub fn write(&self, fh: u64, off: u64, data: &[u8]) -> Result<usize> {
        let h = self.handle(fh)?;
        if !h.upper {
            return Err(Error::new("write to a lower file", Errno::BADF));
        }
        rustix::io::pwrite(&h.fd, data, off).op("write")
    }

    /// fsync(2), skipped when the mount is `volatile`.
    pub fn fsync(&self, fh: u64, datasync: bool) -> Result<()> {
        if self.cfg.volatile {
            return Ok(());
        }
        let h = self.handle(fh)?;
        if datasync {
            rfs::fdatasync(&h.fd)
        } else {
            rfs::fsync(&h.fd)
        }
        .op("fsync")
    }

    /// fallocate(2), including punching holes.
    pub fn fallocate(&self, fh: u64, off: u64, len: u64, mode: i32) -> Result<()> {
        let h = self.handle(fh)?;
        if !h.upper {
            return Err(Error::new("fallocate on a lower file", Errno::BADF));
        }
        rfs::fallocate(
            &h.fd,
            FallocateFlags::from_bits_retain(mode as u32),
            off,
            len,
        )
        .op("fallocate")
    }

    /// lseek(2) for SEEK_DATA and SEEK_HOLE (the kernel handles the other whences itself).
    pub fn lseek(&self, fh: u64, off: i64, whence: i32) -> Result<i64> {
        let h = self.handle(fh)?;
        let pos = match whence {
            libc::SEEK_DATA => SeekFrom::Data(off as u64),
            libc::SEEK_HOLE => SeekFrom::Hole(off as u64),
            libc::SEEK_SET => SeekFrom::Start(off as u64),
            libc::SEEK_END => SeekFrom::End(off),
            libc::SEEK_CUR => SeekFrom::Start(off as u64),
            _ => return Err(Error::new("lseek", Errno::INVAL)),
        };
        rfs::seek(&h.fd, pos).op("lseek").map(|p| p as i64)
    }

    /// copy_file_range(2) between two open files of the union.
    pub fn copy_file_range(
        &self,
        fh_in: u64,
        off_in: u64,
        fh_out: u64,
        off_out: u64,
        len: u64,
    ) -> Result<usize> {
        let hi = self.handle(fh_in)?;
        let ho = self.handle(fh_out)?;
        if !ho.upper {
            return Err(Error::new("copy_file_range to a lower file", Errno::BADF));
        }
        let (mut i, mut o) = (off_in, off_out);
        rfs::copy_file_range(&hi.fd, Some(&mut i), &ho.fd, Some(&mut o), len as usize)
            .op("copy_file_range")
    }

    /// readlink(2).
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        let st = node.state();
        if st.kind != FileType::Symlink {
            return Err(Error::new("readlink", Errno::INVAL));
        }
        let dfd = self.parent_fd(&st, st.layers[0])?;
        Ok(rfs::readlinkat(&dfd, &st.name, Vec::new())
            .op("readlink")?
            .into_bytes())
    }

    /// statfs(2): the upper layer's filesystem (the one that fills up), else the top lower's.
    pub fn statfs(&self) -> Result<StatFs> {
        let root = &self.stack.layers[0].root;
        let s = rfs::fstatvfs(root).op("statfs")?;
        Ok(StatFs {
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            bsize: s.f_bsize as u32,
            namelen: 255,
            frsize: s.f_frsize as u32,
        })
    }

    /// True for the root inode.
    pub fn is_root(ino: Ino) -> bool {
        ino == ROOT
    }
}
