//! Small fd-based file operations shared by extraction, commits and garbage collection.
//!
//! Paths inside a layer are resolved with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`
//! relative to the layer's dir fd (openat2(2)), so a symlink planted by a layer can never
//! redirect a write (DESIGN.md invariant 2).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::{IoContext, Result};

/// Flags for resolving a path inside a layer or store directory: never above it, never
/// through a symlink, never through a /proc magic link.
pub(crate) const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Opens `rel` (bytes, relative) beneath `dir` with `flags`, following no symlink.
pub(crate) fn open_beneath(
    dir: impl AsFd,
    rel: &[u8],
    flags: OFlags,
) -> rustix::io::Result<OwnedFd> {
    let rel: &OsStr = if rel.is_empty() {
        OsStr::new(".")
    } else {
        OsStr::from_bytes(rel)
    };
    loop {
        match rfs::openat2(
            &dir,
            rel,
            flags | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            Mode::empty(),
            BENEATH,
        ) {
            // openat2 returns EAGAIN when a concurrent rename raced the lookup (openat2(2)).
            Err(Errno::AGAIN) => continue,
            r => return r,
        }
    }
}

/// Opens a directory by path (the store root, a layer dir) without following a final symlink.
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    rfs::open(
        path,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
    )
    .ctx("open directory", path)
}

/// Removes `name` in `parent` and everything below it. Directories a layer made unreadable
/// (mode 0) are made accessible first, so rootless stores can delete what they unpacked.
pub(crate) fn remove_tree(parent: impl AsFd, name: &OsStr) -> rustix::io::Result<()> {
    // ENOENT at any step means someone else (a concurrent cleanup) removed it first: done.
    match remove_tree_inner(&parent, name) {
        Err(Errno::NOENT) => Ok(()),
        r => r,
    }
}

fn remove_tree_inner(parent: impl AsFd, name: &OsStr) -> rustix::io::Result<()> {
    match rfs::unlinkat(&parent, name, AtFlags::empty()) {
        Ok(()) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    }
    let st = rfs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if rfs::FileType::from_raw_mode(st.st_mode) != rfs::FileType::Directory {
        return rfs::unlinkat(&parent, name, AtFlags::empty());
    }
    if st.st_mode & 0o700 != 0o700 {
        // chmod by O_PATH fd goes through /proc/self/fd (fchmodat has no AT_EMPTY_PATH on
        // older kernels); the fd pins the directory itself, so no symlink is followed.
        let p = rfs::openat(
            &parent,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rfs::chmod(proc_fd_path(&p).as_str(), Mode::from_raw_mode(0o700))?;
    }
    let dir = rfs::openat(
        &parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for child in list_names(&dir)? {
        remove_tree(&dir, OsStr::from_bytes(&child))?;
    }
    match rfs::unlinkat(&parent, name, AtFlags::REMOVEDIR) {
        Err(Errno::NOENT) => Ok(()),
        r => r,
    }
}

/// The names in a directory, without `.` and `..`.
pub(crate) fn list_names(dir: impl AsFd) -> rustix::io::Result<Vec<Vec<u8>>> {
    let fd = rfs::openat(
        &dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = rfs::Dir::read_from(&fd)?;
    let mut out = Vec::new();
    while let Some(e) = d.read() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(n.to_vec());
        }
    }
    Ok(out)
}

/// `/proc/self/fd/N`, for the calls that take only a path (lsetxattr, chmod of an O_PATH fd).
pub(crate) fn proc_fd_path(fd: impl AsFd) -> String {
    use std::os::fd::AsRawFd;
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

/// Writes `data` to `dir/name` atomically: a temp file in the same dir, fsync, rename, fsync
/// of the dir (rename(2) is atomic; the fsyncs make it durable, as ext4's docs advise).
pub(crate) fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .tempfile_in(dir)
        .ctx("create temp file in", dir)?;
    tmp.write_all(data).ctx("write", tmp.path().to_owned())?;
    tmp.as_file()
        .sync_all()
        .ctx("fsync", tmp.path().to_owned())?;
    tmp.persist(&path)
        .map_err(|e| e.error)
        .ctx("rename into place", &path)?;
    sync_dir(dir)
}

/// fsyncs a directory, so that renames into it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .ctx("fsync directory", dir)
}

/// True when an errno says "no such entry".
pub(crate) fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn open_beneath_refuses_symlinks_and_escapes() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::os::unix::fs::symlink("/etc", t.path().join("l")).unwrap();
        let root = open_dir(t.path()).unwrap();
        assert!(open_beneath(&root, b"d", OFlags::PATH).is_ok());
        assert_eq!(
            open_beneath(&root, b"l/passwd", OFlags::PATH).unwrap_err(),
            Errno::LOOP
        );
        assert_eq!(
            open_beneath(&root, b"../x", OFlags::PATH).unwrap_err(),
            Errno::XDEV
        );
    }

    #[test]
    fn remove_tree_removes_unreadable_dirs() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("top");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::fs::write(top.join("a/b/f"), b"x").unwrap();
        std::fs::set_permissions(top.join("a"), std::fs::Permissions::from_mode(0o000)).unwrap();
        let root = open_dir(t.path()).unwrap();
        remove_tree(&root, OsStr::new("top")).unwrap();
        assert!(!top.exists());
        remove_tree(&root, OsStr::new("top")).unwrap();
    }
}
