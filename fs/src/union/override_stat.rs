//! `xattr_permissions=1|2`: ownership and mode kept in an xattr instead of the inode, so a
//! rootless daemon can show (and change) owners it could not set for real, and
//! containers-storage's `force_mask` layers show their recorded modes. The value is
//! `UID:GID:MODE` with MODE in octal, possibly with type bits (`0:0:0100755`) and further
//! fields, which are ignored.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rustix::fs as rfs;

use super::{Attr, Union};

/// An owner-and-mode override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Override {
    pub uid: u32,
    pub gid: u32,
    pub perm: u32,
}

impl Override {
    pub(crate) fn parse(v: &[u8]) -> Option<Self> {
        let s = std::str::from_utf8(v).ok()?.trim_end_matches('\0');
        let mut it = s.split(':');
        let uid = it.next()?.parse().ok()?;
        let gid = it.next()?.parse().ok()?;
        let mode = u32::from_str_radix(it.next()?, 8).ok()?;
        Some(Override {
            uid,
            gid,
            perm: mode & 0o7777,
        })
    }

    pub(crate) fn encode(&self) -> String {
        format!("{}:{}:{:04o}", self.uid, self.gid, self.perm)
    }
}

impl Union {
    /// The override xattr's name, when the option is on.
    pub(crate) fn override_name(&self) -> Option<&'static str> {
        match self.cfg.xattr_permissions {
            1 => Some("security.fuseoverlayfs.override_stat"),
            2 => Some("user.containers.override_stat"),
            _ => None,
        }
    }

    /// Reads the override of the object at `path`: a `/proc/self/fd/DIR/NAME` path, or with
    /// `follow`, a `/proc/self/fd/FD` path of the object itself (never a symlink).
    pub(crate) fn read_override_at(&self, path: &[u8], follow: bool) -> Option<Override> {
        let name = self.override_name()?;
        let mut buf = [0u8; 128];
        let p = OsStr::from_bytes(path);
        let n = if follow {
            rfs::getxattr(p, name, &mut buf[..])
        } else {
            rfs::lgetxattr(p, name, &mut buf[..])
        }
        .ok()?;
        Override::parse(&buf[..n])
    }

    /// Writes an override for the object at `path` (`follow` as in [`Union::read_override_at`]).
    pub(crate) fn write_override_at(
        &self,
        path: &[u8],
        o: Override,
        follow: bool,
    ) -> crate::error::Result<()> {
        use crate::error::Op;
        let Some(name) = self.override_name() else {
            return Ok(());
        };
        let (p, v, f) = (
            OsStr::from_bytes(path),
            o.encode(),
            rfs::XattrFlags::empty(),
        );
        if follow {
            rfs::setxattr(p, name, v.as_bytes(), f)
        } else {
            rfs::lsetxattr(p, name, v.as_bytes(), f)
        }
        .op("write override_stat")
    }

    /// [`Union::write_override_at`] of a `/proc/self/fd/DIR/NAME` path.
    pub(crate) fn write_override(&self, path: &[u8], o: Override) -> crate::error::Result<()> {
        self.write_override_at(path, o, false)
    }

    /// Applies an override (host ids) to attributes already mapped for the caller.
    pub(crate) fn apply_override(&self, a: &mut Attr, o: Override) {
        a.uid = self.show_uid(o.uid);
        a.gid = self.show_gid(o.gid);
        a.mode = (a.mode & !0o7777) | o.perm;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_containers_storage_and_fuse_overlayfs_write() {
        assert_eq!(
            Override::parse(b"0:0:0555"),
            Some(Override {
                uid: 0,
                gid: 0,
                perm: 0o555
            })
        );
        assert_eq!(
            Override::parse(b"1000:100:0100755"),
            Some(Override {
                uid: 1000,
                gid: 100,
                perm: 0o755
            })
        );
        assert_eq!(
            Override::parse(b"1:2:4755:file"),
            Some(Override {
                uid: 1,
                gid: 2,
                perm: 0o4755
            })
        );
        assert_eq!(Override::parse(b"junk"), None);
        assert_eq!(
            Override {
                uid: 1,
                gid: 2,
                perm: 0o640
            }
            .encode(),
            "1:2:0640"
        );
    }
}
