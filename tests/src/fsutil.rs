//! Small file-system helpers. Most panic with the path on failure; those returning
//! `io::Result` leave the error to the test (to check an errno).

use std::collections::BTreeSet;
use std::ffi::{CString, OsStr};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

/// Writes `data` to `p`, creating parent directories.
#[track_caller]
pub fn write(p: impl AsRef<Path>, data: impl AsRef<[u8]>) {
    let p = p.as_ref();
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", d.display()));
    }
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// Reads `p` whole.
#[track_caller]
pub fn read(p: impl AsRef<Path>) -> Vec<u8> {
    let p = p.as_ref();
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Reads `p` as UTF-8.
#[track_caller]
pub fn read_str(p: impl AsRef<Path>) -> String {
    String::from_utf8(read(p)).expect("utf-8")
}

/// Appends `data` to `p` (O_APPEND, no create).
#[track_caller]
pub fn append(p: impl AsRef<Path>, data: impl AsRef<[u8]>) {
    let p = p.as_ref();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", p.display()));
    f.write_all(data.as_ref())
        .unwrap_or_else(|e| panic!("append to {}: {e}", p.display()));
}

/// `mkdir -p`.
#[track_caller]
pub fn mkdirs(p: impl AsRef<Path>) {
    let p = p.as_ref();
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", p.display()));
}

/// lstat.
#[track_caller]
pub fn lstat(p: impl AsRef<Path>) -> fs::Metadata {
    let p = p.as_ref();
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
}

/// The errno of a failed call; panics (naming `what`) when the call succeeded.
#[track_caller]
pub fn errno<T: fmt::Debug>(what: &str, r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("{what}: error without errno: {e}")),
    }
}

/// rustix result as std::io.
pub fn rx<T>(r: rustix::io::Result<T>) -> io::Result<T> {
    r.map_err(io::Error::from)
}

/// chmod (follows symlinks).
#[track_caller]
pub fn chmod(p: impl AsRef<Path>, mode: u32) {
    let p = p.as_ref();
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, p.display()));
}

/// lchown.
#[track_caller]
pub fn lchown(p: impl AsRef<Path>, uid: u32, gid: u32) {
    let p = p.as_ref();
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", p.display()));
}

/// Sets atime and mtime (seconds, nanoseconds) of `p` itself (no symlink following).
#[track_caller]
pub fn set_times(p: impl AsRef<Path>, atime: (i64, i64), mtime: (i64, i64)) {
    let p = p.as_ref();
    let t = rfs::Timestamps {
        last_access: rfs::Timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1 as _,
        },
        last_modification: rfs::Timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1 as _,
        },
    };
    rfs::utimensat(rfs::CWD, p, &t, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", p.display()));
}

/// (mtime s, ns) of a metadata.
pub fn mtime(md: &fs::Metadata) -> (i64, i64) {
    (md.mtime(), md.mtime_nsec())
}

/// (atime s, ns) of a metadata.
pub fn atime(md: &fs::Metadata) -> (i64, i64) {
    (md.atime(), md.atime_nsec())
}

/// (ctime s, ns) of a metadata.
pub fn ctime(md: &fs::Metadata) -> (i64, i64) {
    (md.ctime(), md.ctime_nsec())
}

/// lsetxattr.
#[track_caller]
pub fn xattr_set(p: impl AsRef<Path>, name: &str, value: &[u8]) {
    let p = p.as_ref();
    rfs::lsetxattr(p, name, value, rfs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("lsetxattr {name} on {}: {e}", p.display()));
}

/// lgetxattr, whole value.
pub fn xattr_get(p: impl AsRef<Path>, name: &str) -> io::Result<Vec<u8>> {
    let p = p.as_ref();
    let n = rx(rfs::lgetxattr_query(p, name))?;
    let mut buf = vec![0u8; n];
    let got = rx(rfs::lgetxattr(p, name, &mut buf[..]))?;
    buf.truncate(got);
    Ok(buf)
}

/// llistxattr, as names.
pub fn xattr_list(p: impl AsRef<Path>) -> io::Result<BTreeSet<String>> {
    let p = p.as_ref();
    let n = rx(rfs::llistxattr_query(p))?;
    let mut buf = vec![0u8; n];
    let got = rx(rfs::llistxattr(p, &mut buf[..]))?;
    Ok(buf[..got]
        .split(|b| *b == 0)
        .filter(|x| !x.is_empty())
        .map(|x| String::from_utf8_lossy(x).into_owned())
        .collect())
}

/// mknod of a char 0/0 device: a kernel-format whiteout.
#[track_caller]
pub fn mk_char_whiteout(p: impl AsRef<Path>) {
    let p = p.as_ref();
    rfs::mknodat(rfs::CWD, p, FileType::CharacterDevice, Mode::empty(), 0)
        .unwrap_or_else(|e| panic!("mknod {}: {e}", p.display()));
}

/// True when `md` is a char 0/0 device.
pub fn is_char_whiteout(md: &fs::Metadata) -> bool {
    md.mode() & libc::S_IFMT == libc::S_IFCHR && md.rdev() == 0
}

/// A directory entry as getdents reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ent {
    /// Name.
    pub name: String,
    /// d_ino.
    pub ino: u64,
    /// d_type as a letter: `d`, `f`, `l`, `c`, `b`, `p`, `s`, `?`.
    pub kind: char,
}

fn kind_letter(ft: FileType) -> char {
    match ft {
        FileType::Directory => 'd',
        FileType::RegularFile => 'f',
        FileType::Symlink => 'l',
        FileType::CharacterDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
        _ => '?',
    }
}

/// The type letter of a mode.
pub fn mode_letter(mode: u32) -> char {
    kind_letter(FileType::from_raw_mode(mode))
}

/// Every entry of directory `p`, `.` and `..` included, sorted by name (getdents, not
/// std::fs::read_dir, which hides the dots).
pub fn readdir(p: impl AsRef<Path>) -> io::Result<Vec<Ent>> {
    readdir_flags(p.as_ref(), OFlags::empty())
}

fn readdir_flags(p: &Path, extra: OFlags) -> io::Result<Vec<Ent>> {
    let fd = rx(rfs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | extra,
        Mode::empty(),
    ))?;
    readdir_fd(fd)
}

pub(crate) fn readdir_fd(fd: OwnedFd) -> io::Result<Vec<Ent>> {
    let mut d = rx(rfs::Dir::new(fd))?;
    let mut v = Vec::new();
    while let Some(e) = d.read() {
        let e = rx(e)?;
        v.push(Ent {
            name: String::from_utf8_lossy(e.file_name().to_bytes()).into_owned(),
            ino: e.ino(),
            kind: kind_letter(e.file_type()),
        });
    }
    v.sort();
    Ok(v)
}

/// Names in directory `p`, with `.` and `..`, sorted.
#[track_caller]
pub fn names(p: impl AsRef<Path>) -> Vec<String> {
    let p = p.as_ref();
    readdir(p)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", p.display()))
        .into_iter()
        .map(|e| e.name)
        .collect()
}

/// `names` for a literal list, sorted, for comparisons.
pub fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// `base/rel`; `rel` "" or "." is `base` itself.
pub fn join(base: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() || rel == "." {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// A CString of a path (for libc calls).
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// An OsStr of raw bytes.
pub fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}
