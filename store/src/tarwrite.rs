//! Writing a directory tree as a layer tar (for `import DIR`), and tar headers for `save`.
//!
//! The walk goes through fds with O_NOFOLLOW (symlinks are stored as symlinks), in sorted name
//! order so the same tree gives the same tar and so the same diff_id. Hard links become link
//! entries to the first path seen; xattrs and names over 100 bytes go in PAX records
//! (POSIX.1-2001 pax format, `SCHILY.xattr.*` as GNU tar and docker write them).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use crate::fsutil::{list_names, proc_fd_path};

/// Writes `dir` as a tar stream to `out`. Sockets are skipped (tar cannot hold them).
pub(crate) fn write_tree<W: Write>(dir: &OwnedFd, out: W) -> io::Result<W> {
    let mut b = tar::Builder::new(out);
    let mut links = HashMap::new();
    walk(&mut b, dir, b"", &mut links)?;
    b.into_inner()
}

fn walk<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &OwnedFd,
    prefix: &[u8],
    links: &mut HashMap<(u64, u64), Vec<u8>>,
) -> io::Result<()> {
    let mut names = list_names(dir)?;
    names.sort();
    for name in names {
        let n = OsStr::from_bytes(&name);
        let st = rfs::statat(dir, n, AtFlags::SYMLINK_NOFOLLOW)?;
        let ft = FileType::from_raw_mode(st.st_mode);
        let mut path = prefix.to_vec();
        path.extend_from_slice(&name);
        let mut h = tar::Header::new_ustar();
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(u64::from(st.st_uid));
        h.set_gid(u64::from(st.st_gid));
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(0);
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let fd = match ft {
            FileType::Socket => continue,
            FileType::Symlink => None,
            _ => Some(rfs::openat(
                dir,
                n,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?),
        };
        if let Some(fd) = &fd {
            pax.extend(xattrs(fd)?);
        }
        let mut body: Option<OwnedFd> = None;
        match ft {
            FileType::Directory => {
                h.set_entry_type(tar::EntryType::Directory);
                path.push(b'/');
            }
            FileType::RegularFile => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        set_link(&mut h, first, &mut pax);
                        emit(b, &mut h, &path, pax, io::empty())?;
                        continue;
                    }
                    links.insert(key, path.clone());
                }
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                body = Some(rfs::openat(
                    dir,
                    n,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?);
            }
            FileType::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                let t = rfs::readlinkat(dir, n, Vec::new())?;
                set_link(&mut h, t.as_bytes(), &mut pax);
            }
            FileType::Fifo => h.set_entry_type(tar::EntryType::Fifo),
            FileType::CharacterDevice | FileType::BlockDevice => {
                h.set_entry_type(if ft == FileType::CharacterDevice {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(rfs::major(st.st_rdev))?;
                h.set_device_minor(rfs::minor(st.st_rdev))?;
            }
            _ => continue,
        }
        match body {
            Some(fd) => {
                let f = std::fs::File::from(fd);
                // The size in the header is fixed: a file that changes under us is an error,
                // not a silently wrong layer.
                emit(
                    b,
                    &mut h,
                    &path,
                    pax,
                    ExactReader {
                        inner: f,
                        left: st.st_size as u64,
                    },
                )?;
            }
            None => emit(b, &mut h, &path, pax, io::empty())?,
        }
        if ft == FileType::Directory {
            let sub = rfs::openat(
                dir,
                n,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            walk(b, &sub, &path, links)?;
        }
    }
    Ok(())
}

fn set_link(h: &mut tar::Header, target: &[u8], pax: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    if target.len() <= 100 {
        let _ = h.set_link_name_literal(target);
    } else {
        pax.push((b"linkpath".to_vec(), target.to_vec()));
    }
}

fn xattrs(fd: &OwnedFd) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let p = proc_fd_path(fd.as_fd());
    let mut buf = vec![0u8; 64 * 1024];
    let n = match rfs::listxattr(p.as_str(), &mut buf[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::OPNOTSUPP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for name in buf[..n].split(|&c| c == 0).filter(|s| !s.is_empty()) {
        let mut v = vec![0u8; 64 * 1024];
        match rfs::getxattr(p.as_str(), OsStr::from_bytes(name), &mut v[..]) {
            Ok(len) => {
                v.truncate(len);
                let mut k = b"SCHILY.xattr.".to_vec();
                k.extend_from_slice(name);
                out.push((k, v));
            }
            Err(rustix::io::Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

/// Appends one entry, preceded by a PAX header when it has records or a long path.
pub(crate) fn emit<W: Write, R: io::Read>(
    b: &mut tar::Builder<W>,
    h: &mut tar::Header,
    path: &[u8],
    mut pax: Vec<(Vec<u8>, Vec<u8>)>,
    data: R,
) -> io::Result<()> {
    if h.set_path(OsStr::from_bytes(path)).is_err() {
        pax.push((b"path".to_vec(), path.to_vec()));
        // The ustar name field keeps a truncated name for readers without PAX support.
        let old = h.as_old_mut();
        let n = path.len().min(99);
        old.name = [0; 100];
        old.name[..n].copy_from_slice(&path[..n]);
    }
    if !pax.is_empty() {
        let mut body = Vec::new();
        for (k, v) in &pax {
            body.extend_from_slice(&pax_record(k, v));
        }
        let mut ph = tar::Header::new_ustar();
        ph.set_entry_type(tar::EntryType::XHeader);
        ph.set_size(body.len() as u64);
        ph.set_mode(0o644);
        let _ = ph.set_path("PaxHeader");
        ph.set_cksum();
        b.append(&ph, &body[..])?;
    }
    h.set_cksum();
    b.append(h, data)
}

/// One PAX record: `"<len> <key>=<value>\n"`, where len counts the whole record, itself
/// included (POSIX pax, "pax Extended Header").
fn pax_record(k: &[u8], v: &[u8]) -> Vec<u8> {
    let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(k);
    r.push(b'=');
    r.extend_from_slice(v);
    r.push(b'\n');
    r
}

/// Reads exactly `left` bytes or fails.
pub(crate) struct ExactReader<R> {
    pub inner: R,
    pub left: u64,
}

impl<R: io::Read> io::Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(self.left as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file ended before the size recorded for it (it changed, or is corrupt)",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        assert_eq!(pax_record(b"path", b"abc"), b"12 path=abc\n");
        // 1 + 95 + 3 = 99 bytes besides the length: "99 " would make 102, so it is "102 ".
        let r = pax_record(b"k", &[b'v'; 95]);
        assert_eq!(r.len(), 102);
        assert!(r.starts_with(b"102 k="));
    }
}
