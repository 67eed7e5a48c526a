//! Extended attributes. Overlay bookkeeping xattrs of every implementation are hidden, read as
//! absent and refused on write (`whiteout::is_private_xattr`), as kernel overlayfs does with
//! its own namespace.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, XattrFlags};
use rustix::io::Errno;

use super::acl::{is_acl_name, map_ids};
use super::{Ino, Union, ROOT};
use crate::copy_up::{get_xattr, list_xattrs, sized};
use crate::error::{Error, Op, Result};
use crate::whiteout;

/// The SELinux label.
const SELINUX_LABEL: &[u8] = b"security.selinux";

/// True when this kernel runs without SELinux: sysfs is there and has no selinuxfs mount
/// point, which the kernel creates only when SELinux is enabled (security/selinux/selinuxfs.c,
/// `init_sel_fs`). Without sysfs we cannot tell, and assume SELinux.
fn selinux_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| {
        std::path::Path::new("/sys/fs").is_dir()
            && !std::path::Path::new("/sys/fs/selinux").exists()
    })
}

/// The errno for an xattr the object does not have. ENODATA, except for the SELinux label on
/// a host without SELinux: `ls -l` asks for it on every file, and a FUSE GETXATTR is a round
/// trip the kernel never caches (a third of warm `ls -lR`). EOPNOTSUPP tells it "no labels on
/// this filesystem", after which it stops asking for this device (coreutils ls.c,
/// `getfilecon_cache` and `errno_unsupported`); both errnos mean "no label" to libselinux's
/// callers. A label a layer does hold is still returned, and listed by listxattr. With
/// SELinux on, the kernel itself may read the label of a new inode (`fs_use_xattr` policies,
/// `inode_doinit_use_xattr`) and takes only ENODATA as "none", so it gets ENODATA.
fn absent(name: &[u8]) -> Errno {
    if name == SELINUX_LABEL && selinux_off() {
        Errno::OPNOTSUPP
    } else {
        Errno::NODATA
    }
}

/// listxattrat(2) is not available (a kernel before 6.13, or a seccomp filter that refuses
/// it): use the `/proc/self/fd` path.
static NO_LISTXATTRAT: AtomicBool = AtomicBool::new(false);

impl Union {
    /// Runs `f` with a path naming node `ino` in its top layer and whether to follow it (see
    /// `with_node_path`).
    fn with_path<T>(&self, ino: Ino, f: impl FnOnce(&OsStr, bool) -> Result<T>) -> Result<T> {
        let node = self.node(ino)?;
        self.with_node_path(&node, |p, follow| f(OsStr::from_bytes(p), follow))?
    }

    /// The raw xattr names of node `ino`'s object, read from its top layer.
    fn read_names(&self, ino: Ino) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        let st = node.state();
        // The common case, an entry of a layer directory, in one path step: `ls -l` costs a
        // GETXATTR per file when the cache is cold (system.posix_acl_access), and this is it.
        if ino != ROOT && !st.unlinked && !NO_LISTXATTRAT.load(Ordering::Relaxed) {
            let dfd = self.parent_fd(&st, st.layers[0])?;
            let name = std::ffi::CString::new(st.name.as_bytes())
                .map_err(|_| Error::new("listxattr: NUL in name", Errno::INVAL))?;
            let r = sized(
                |b| {
                    crate::sys::listxattrat(dfd.as_fd(), &name, b)
                        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))
                },
                1024,
            );
            match r {
                // ENOSYS: before Linux 6.13. EPERM: a seccomp filter that predates the call
                // (Docker's default profile answers unknown calls so); listxattr itself never
                // answers EPERM (path_listxattrat, fs/xattr.c).
                Err(Errno::NOSYS | Errno::PERM) => NO_LISTXATTRAT.store(true, Ordering::Relaxed),
                r => return r.op("listxattr"),
            }
        }
        self.with_node_path(&node, |p, follow| {
            list_xattrs(OsStr::from_bytes(p), follow).op("listxattr")
        })?
    }

    /// True for xattrs the union keeps to itself: overlay bookkeeping, and the ownership
    /// override when `xattr_permissions` is on.
    fn hidden(&self, name: &[u8]) -> bool {
        whiteout::is_private_xattr(name)
            || self.override_name().is_some_and(|o| o.as_bytes() == name)
    }

    /// The raw xattr names of `ino`'s object, cached in the node (not in a diff view, whose
    /// changeset may change under it).
    fn names(&self, ino: Ino) -> Result<std::sync::Arc<Vec<u8>>> {
        if self.cfg.diff {
            // A deletion shown by a diff view is not an object of the changeset: no xattrs.
            let node = self.node(ino)?;
            let deleted = self
                .stat_node(&node)
                .is_ok_and(|(s, _)| whiteout::is_char_whiteout(&s));
            let names = if deleted {
                Vec::new()
            } else {
                self.read_names(ino)?
            };
            return Ok(std::sync::Arc::new(names));
        }
        let node = self.node(ino)?;
        if let Some(n) = node.xattr_names.lock().clone() {
            return Ok(n);
        }
        let names = std::sync::Arc::new(self.read_names(ino)?);
        *node.xattr_names.lock() = Some(names.clone());
        Ok(names)
    }

    pub(crate) fn xattrs_changed(&self, ino: Ino) {
        if let Some(n) = self.nodes.get(&ino) {
            *n.xattr_names.lock() = None;
        }
    }

    /// getxattr(2).
    pub fn getxattr(&self, ino: Ino, name: &OsStr) -> Result<Vec<u8>> {
        if self.cfg.provenance {
            if let Some(v) = self.virtual_xattr(ino, name.as_bytes()) {
                return v;
            }
        }
        if self.hidden(name.as_bytes()) {
            return Err(Error::new("getxattr", Errno::NODATA));
        }
        if let Ok(names) = self.names(ino) {
            if !names.split(|b| *b == 0).any(|n| n == name.as_bytes()) {
                return Err(Error::new("getxattr", absent(name.as_bytes())));
            }
        }
        let v = self.with_path(ino, |p, follow| get_xattr(p, name, follow).op("getxattr"))?;
        Ok(self.acl_to_container(name.as_bytes(), v))
    }

    /// True when `name` is an ACL whose ids this mount maps (`uidmapping=`/`gidmapping=`).
    fn acl_ids_mapped(&self, name: &[u8]) -> bool {
        is_acl_name(name) && !(self.cfg.uid_map.is_identity() && self.cfg.gid_map.is_identity())
    }

    /// An ACL value read from a layer, with its ids as the mount shows them (see `acl.rs`);
    /// a host id the map does not cover shows as the overflow id, as a file owner does.
    fn acl_to_container(&self, name: &[u8], v: Vec<u8>) -> Vec<u8> {
        if !self.acl_ids_mapped(name) {
            return v;
        }
        let (um, gm) = (&self.cfg.uid_map, &self.cfg.gid_map);
        let over = crate::idmap::OVERFLOW_ID;
        let (uid, gid) = (
            |id| Some(um.to_container(id).unwrap_or(over)),
            |id| Some(gm.to_container(id).unwrap_or(over)),
        );
        match map_ids(&v, uid, gid) {
            Ok(Some(mapped)) => mapped,
            _ => v,
        }
    }

    /// An ACL value to store: its ids as host ids. EINVAL for an id the map does not cover,
    /// as chown answers.
    fn acl_to_host<'a>(&self, name: &[u8], v: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>> {
        if !self.acl_ids_mapped(name) {
            return Ok(std::borrow::Cow::Borrowed(v));
        }
        let (um, gm) = (&self.cfg.uid_map, &self.cfg.gid_map);
        match map_ids(v, |id| um.to_host(id), |id| gm.to_host(id)) {
            Ok(Some(mapped)) => Ok(std::borrow::Cow::Owned(mapped)),
            Ok(None) => Ok(std::borrow::Cow::Borrowed(v)),
            Err(_) => Err(Error::new(
                "setxattr: ACL names an unmapped id",
                Errno::INVAL,
            )),
        }
    }

    /// listxattr(2): NUL-separated names.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>> {
        let all = self.names(ino)?;
        let mut out = Vec::with_capacity(all.len());
        for x in all.split(|b| *b == 0).filter(|x| !x.is_empty()) {
            if !self.hidden(x) {
                out.extend_from_slice(x);
                out.push(0);
            }
        }
        Ok(out)
    }

    /// setxattr(2), after a copy-up.
    pub fn setxattr(&self, ino: Ino, name: &OsStr, value: &[u8], flags: i32) -> Result<()> {
        if self.hidden(name.as_bytes()) {
            return Err(Error::new("setxattr: overlay private name", Errno::PERM));
        }
        let value = self.acl_to_host(name.as_bytes(), value)?;
        let value = &value[..];
        let node = self.ensure_upper_meta(ino)?;
        // See `setattr`: not while a metacopy of it is being completed.
        let _completing = node.metacopy_guard();
        self.xattrs_changed(ino);
        let fl = XattrFlags::from_bits_retain(flags as u32);
        self.with_path(ino, |p, follow| {
            if follow {
                rfs::setxattr(p, name, value, fl)
            } else {
                rfs::lsetxattr(p, name, value, fl)
            }
            .op("setxattr")
        })
    }

    /// removexattr(2), after a copy-up.
    pub fn removexattr(&self, ino: Ino, name: &OsStr) -> Result<()> {
        if self.hidden(name.as_bytes()) {
            return Err(Error::new("removexattr: overlay private name", Errno::PERM));
        }
        let node = self.ensure_upper_meta(ino)?;
        let _completing = node.metacopy_guard();
        self.xattrs_changed(ino);
        self.with_path(ino, |p, follow| {
            if follow {
                rfs::removexattr(p, name)
            } else {
                rfs::lremovexattr(p, name)
            }
            .op("removexattr")
        })
    }
}
