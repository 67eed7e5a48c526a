//! The few calls that need `unsafe`: fork, and `mount_setattr(2)` and `listxattrat(2)` (not
//! wrapped by rustix).
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// The result of [`fork`].
#[derive(Debug, PartialEq, Eq)]
pub enum Fork {
    /// In the parent; the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `fork(2)`, refused unless this process has exactly one thread.
///
/// A child forked from a threaded process may find a lock (the allocator's, a mutex) held by a
/// thread that does not exist in the child, and deadlock; so the check is made here, at run
/// time, instead of trusting callers (DESIGN.md, runtime step 3).
///
/// # Errors
/// EDEADLK-like `WouldBlock` if other threads exist; the errno of fork, e.g. EAGAIN.
pub fn fork_single_threaded() -> io::Result<Fork> {
    let threads = std::fs::read_dir("/proc/self/task")?.count();
    if threads != 1 {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("fork refused: {threads} threads running"),
        ));
    }
    // SAFETY: the process has a single thread (checked above), so the child's copy of every
    // lock is consistent; fork itself has no memory-safety preconditions.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// `mount_setattr(fd, "", AT_EMPTY_PATH, {attr_set})`: sets attributes on a detached mount
/// made with `open_tree(OPEN_TREE_CLONE)`. Used to make a lower layer read-only and noatime,
/// as kernel overlayfs does with its private clones of the lower mounts (fs/overlayfs/super.c).
///
/// # Errors
/// The errno of mount_setattr(2): EPERM without CAP_SYS_ADMIN over the mount namespace, ENOSYS
/// before Linux 5.12.
pub fn mount_setattr(fd: BorrowedFd<'_>, attr_set: u64) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    // The atime mode is a 3-bit field: setting one mode requires clearing the field
    // (mount_setattr(2): MOUNT_ATTR__ATIME "must be specified in attr_clr").
    let attr_clr = if attr_set & MOUNT_ATTR__ATIME != 0 {
        MOUNT_ATTR__ATIME
    } else {
        0
    };
    let attr = MountAttr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a NUL-terminated static string, `attr` is a live, correctly laid out
    // `struct mount_attr` (include/uapi/linux/mount.h) and its size is passed with it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `MOUNT_ATTR_RDONLY` from include/uapi/linux/mount.h.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `MOUNT_ATTR__ATIME`, the atime-mode field, from include/uapi/linux/mount.h.
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
/// `MOUNT_ATTR_NOATIME` from include/uapi/linux/mount.h.
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;

/// `listxattrat(2)` number: one for every architecture (added in Linux 6.13, after the
/// syscall tables were unified at 424; arch/x86/entry/syscalls/syscall_64.tbl).
const SYS_LISTXATTRAT: libc::c_long = 465;

/// `listxattrat(dir, name, AT_SYMLINK_NOFOLLOW, buf, len)` (Linux 6.13): the xattr names of
/// entry `name` of `dir`, never following a symlink. One path step, where `llistxattr` on
/// `/proc/self/fd/DIR/NAME` walks procfs first (half the cost of a GETXATTR that misses).
///
/// # Errors
/// The errno of listxattrat(2): ERANGE when `buf` is too small, ENOSYS before Linux 6.13.
pub fn listxattrat(dir: BorrowedFd<'_>, name: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `name` is NUL-terminated and outlives the call; `buf` is valid for writes of
    // `buf.len()` bytes (include/linux/syscalls.h: `sys_listxattrat(int dfd, const char
    // __user *pathname, unsigned int at_flags, char __user *list, size_t size)`).
    let r = unsafe {
        libc::syscall(
            SYS_LISTXATTRAT,
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW as libc::c_uint,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}
