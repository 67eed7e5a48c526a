//! Whole-tree helpers over directory fds, never following symlinks.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{self as rfs, AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::{Errno, Result};

/// Removes everything inside the directory `dir` (the directory itself stays).
pub fn clear_dir(dir: &OwnedFd) -> Result<()> {
    let names = list_names(dir)?;
    for name in names {
        remove_entry(dir, &name)?;
    }
    Ok(())
}

/// Removes `name` in `dir`, recursively when it is a directory.
pub fn remove_entry<Fd: AsFd>(dir: Fd, name: &CStr) -> Result<()> {
    match rfs::unlinkat(&dir, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    let st = rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return rfs::unlinkat(&dir, name, AtFlags::empty());
    }
    let sub = rfs::openat(
        &dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    clear_dir(&sub)?;
    rfs::unlinkat(&dir, name, AtFlags::REMOVEDIR)
}

/// Names in `dir`, without `.` and `..`.
pub fn list_names<Fd: AsFd>(dir: Fd) -> Result<Vec<std::ffi::CString>> {
    let mut d = Dir::read_from(dir)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name();
        if n.to_bytes() != b"." && n.to_bytes() != b".." {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}
