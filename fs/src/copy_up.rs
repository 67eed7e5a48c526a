//! Copy-up: the first change to a lower object copies it into the upper layer.
//!
//! Data and metadata go to a temp file in `workdir/work`, which is fsynced (unless `volatile`)
//! and then renamed into place, so a crash never leaves a partial file under its real name
//! (invariant 3; kernel overlayfs does the same, fs/overlayfs/copy_up.c). Data is cloned with
//! FICLONE where the filesystem can, else copied with copy_file_range, else read/write, and
//! holes are skipped with SEEK_DATA/SEEK_HOLE. Only the node being copied is locked.

use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, SeekFrom, Stat, Timestamps};
use rustix::io::Errno;

use crate::error::{Error, Op, Result};
use crate::union::{Ino, Node, Union, ROOT, UPPER};
use crate::whiteout;

/// Copies `node` (and, first, its parent directories) into the upper layer. With `meta` (a
/// metadata change, on a `metacopy=on` mount), a regular file's data stays below (see
/// `Config::metacopy`).
pub(crate) fn copy_up(u: &Union, node: &Arc<Node>, meta: bool) -> Result<()> {
    let want_meta = meta;
    if node.ino == ROOT {
        // The upper root always exists; the root's layers include it from the start.
        return Ok(());
    }
    let rel = {
        let _g = u.tree.read();
        u.rel_path(node.ino)?
    };
    if node.st.read().kind == FileType::Directory {
        u.ensure_upper_path(&rel)?;
        return Ok(());
    }
    let _lock = node.copy_lock.lock();
    let st = node.state();
    if st.layers.first() == Some(&UPPER) {
        // Another thread copied it meanwhile, maybe as a metacopy: a writer needs the data.
        if !want_meta && st.data.is_some() {
            drop(_lock);
            complete_metacopy(u, node)?;
        }
        return Ok(());
    }
    if st.unlinked {
        return Err(Error::new("copy-up of removed file", Errno::NOENT));
    }
    let parent_rel = match rel.iter().rposition(|b| *b == b'/') {
        Some(i) => rel[..i].to_vec(),
        None => b".".to_vec(),
    };
    let dst_dir = u.ensure_upper_path(&parent_rel)?;
    let src_layer = st.layers[0];
    let src_dir = u.parent_fd(&st, src_layer)?;
    let name = st.name.as_os_str();
    let src = rfs::statat(&src_dir, name, AtFlags::SYMLINK_NOFOLLOW).op("copy-up: stat")?;
    // Other names of a hard-linked lower file that the union still shows: they become links
    // of the copy, so the link survives copy-up and remount (kernel overlayfs needs index=on).
    let aliases = if src.st_nlink > 1 && FileType::from_raw_mode(src.st_mode) != FileType::Directory
    {
        u.lower_aliases(src_layer, (src.st_dev, src.st_ino), &rel)
    } else {
        Vec::new()
    };
    let noatime = !u.stack.layers[src_layer as usize].kernel_ro;
    // A metacopy in a lower layer is copied up as a metacopy of the same data, and then
    // completed from that data if the caller needs the data.
    let from_metacopy = st.data.is_some();
    let meta = from_metacopy
        || (meta
            && u.cfg.metacopy
            && FileType::from_raw_mode(src.st_mode) == FileType::RegularFile
            && src.st_size as u64 >= crate::union::METACOPY_MIN
            && aliases.is_empty());
    let copied = |meta| {
        copy_object(
            u, &src_dir, name, &src, noatime, node.ino, &dst_dir, name, st.parent, meta,
        )
    };
    // An upper that cannot hold the mark (no xattrs there) gets a full copy, unless the
    // source is itself a metacopy, whose data is elsewhere.
    let meta = if from_metacopy {
        copied(true)?;
        true
    } else {
        meta && copied(true).is_ok()
    };
    if !meta {
        copied(false)?;
    }
    for alias in aliases {
        let (dir, base) = match alias.iter().rposition(|b| *b == b'/') {
            Some(i) => (alias[..i].to_vec(), alias[i + 1..].to_vec()),
            None => (b".".to_vec(), alias.clone()),
        };
        let adir = u.ensure_upper_path(&dir)?;
        // A name appears in the upper of a directory we have no node at hand for: no listing
        // knows its top layer any more. Rare: a hard-linked lower file copied up.
        u.drop_all_layer_hints();
        let linked = rfs::linkat(
            &dst_dir,
            name,
            &adir,
            OsStr::from_bytes(&base),
            AtFlags::empty(),
        );
        u.drop_all_layer_hints();
        match linked {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(Error::new("copy-up: link alias", e)),
        }
    }
    {
        let mut w = node.st.write();
        w.layers = vec![UPPER];
        w.data = if from_metacopy {
            st.data
        } else {
            meta.then_some(src_layer)
        };
    }
    *node.xattr_names.lock() = None;
    if from_metacopy && !want_meta {
        drop(_lock);
        complete_metacopy(u, node)?;
    }
    Ok(())
}

/// Copies the data of metacopy file `node` up: a full copy of the lower data with the upper
/// file's metadata replaces the upper file in one rename, so a crash leaves either the
/// metacopy or the whole file. Called before anything writes or truncates it, or gives it a
/// new name (rename, link).
pub(crate) fn complete_metacopy(u: &Union, node: &Arc<Node>) -> Result<()> {
    let _lock = node.copy_lock.lock();
    let st = node.state();
    let Some(data_layer) = st.data else {
        return Ok(());
    };
    if st.unlinked {
        return complete_removed_metacopy(u, node);
    }
    let work = u.work()?;
    let up_dir = u.parent_fd(&st, UPPER)?;
    let data_dir = u.parent_fd(&st, data_layer)?;
    let name = st.name.as_os_str();
    let meta = rfs::statat(&*up_dir, name, AtFlags::SYMLINK_NOFOLLOW).op("copy-up: stat")?;
    let tmp = u.tmp_name();
    let mut keep_tmp = false;
    let result = (|| {
        let noatime = !u.stack.layers[data_layer as usize].kernel_ro;
        let from = open_data(&data_dir, name, noatime).op("copy-up: open metacopy data")?;
        let to = create_tmp(work, &tmp)?;
        copy_data(&from, &to, meta.st_size as u64)?;
        copy_owner(work, &tmp, &meta)?;
        // The upper file's xattrs are the file's (the user may have changed them since).
        copy_xattrs(&up_dir, name, work, &tmp, FileType::RegularFile)?;
        let o = Union::proc_path(work, &tmp);
        let _ = rfs::lsetxattr(
            OsStr::from_bytes(&o),
            u.origin_xattr.as_str(),
            &node.ino.to_le_bytes(),
            rfs::XattrFlags::empty(),
        );
        copy_mode_times(work, &tmp, &meta)?;
        if !u.cfg.volatile {
            rfs::fsync(&to).op("copy-up: fsync")?;
        }
        let parent_before = rfs::fstat(&*up_dir).op("copy-up: stat parent")?;
        // Exchanged, not renamed over: unlink and rename of the name do not wait for this
        // copy, so the name may hold something else by now, which must not be replaced.
        rfs::renameat_with(work, &tmp, &*up_dir, name, rfs::RenameFlags::EXCHANGE)
            .op("copy-up: replace metacopy")?;
        let out = rfs::statat(work, &tmp, AtFlags::SYMLINK_NOFOLLOW).op("copy-up: stat")?;
        if (out.st_dev, out.st_ino) != (meta.st_dev, meta.st_ino) {
            if rfs::renameat_with(work, &tmp, &*up_dir, name, rfs::RenameFlags::EXCHANGE).is_err() {
                // What `tmp` holds now is not ours to remove; the next mount clears it.
                keep_tmp = true;
            }
            return Err(Error::new(
                "copy-up: metacopy replaced meanwhile",
                Errno::NOENT,
            ));
        }
        restore_times(&up_dir, &parent_before);
        Ok(())
    })();
    // On success `tmp` is the old metacopy; on failure, the new copy.
    if !keep_tmp {
        let _ = crate::tree::remove_entry(work, &cstr(&tmp));
    }
    result?;
    node.st.write().data = None;
    *node.xattr_names.lock() = None;
    Ok(())
}

/// Copies `name` (stat `src`) from `src_dir` into upper directory `dst_dir` as `dst_name`,
/// through a temp object in the work dir. A directory that appeared meanwhile is success.
#[allow(clippy::too_many_arguments)]
fn copy_object(
    u: &Union,
    src_dir: &OwnedFd,
    name: &OsStr,
    src: &Stat,
    noatime: bool,
    origin: u64,
    dst_dir: &OwnedFd,
    dst_name: &OsStr,
    parent_ino: Ino,
    meta: bool,
) -> Result<()> {
    let work = u.work()?;
    let tmp = u.tmp_name();
    let kind = FileType::from_raw_mode(src.st_mode);
    let made = if meta {
        make_metacopy(src, work, &tmp)
    } else {
        make_copy(noatime, src_dir, name, src, work, &tmp)
    };
    let result = made.and_then(|()| {
        // Owner before xattrs: chown drops security.capability (and setuid bits, which the
        // mode step puts back).
        copy_owner(work, &tmp, src)?;
        copy_xattrs(src_dir, name, work, &tmp, kind)?;
        let o = Union::proc_path(work, &tmp);
        // Record the original inode number so st_ino survives copy-up and remount. A
        // filesystem without xattrs (or a symlink rootless) just keeps the new number.
        if rfs::lsetxattr(
            OsStr::from_bytes(&o),
            u.origin_xattr.as_str(),
            &origin.to_le_bytes(),
            rfs::XattrFlags::empty(),
        )
        .is_err()
        {
            // The copy will be numbered by its own inode, so a later copy-up below it may
            // name its parent by a number no node has: no listing may trust its top layers.
            u.drop_all_layer_hints();
        }
        if meta {
            rfs::lsetxattr(
                OsStr::from_bytes(&o),
                u.metacopy_xattr.as_str(),
                b"",
                rfs::XattrFlags::empty(),
            )
            .op("copy-up: mark metacopy")?;
        }
        copy_mode_times(work, &tmp, src)?;
        if !u.cfg.volatile && kind == FileType::RegularFile {
            let f = rfs::openat(
                work,
                &tmp,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .op("copy-up: reopen")?;
            rfs::fsync(&f).op("copy-up: fsync")?;
        }
        // Copy-up must not change what the union shows of the parent: put its times back
        // (kernel overlayfs does the same, ovl_set_timestamps) and tell the kernel to refetch.
        let parent_before = rfs::fstat(dst_dir).op("copy-up: stat parent")?;
        // The parent's listing no longer knows the name's top layer: dropped before the name
        // appears in the upper (for lookups) and after (for a listing built meanwhile).
        u.drop_layer_hints(parent_ino);
        let renamed =
            rfs::renameat_with(work, &tmp, dst_dir, dst_name, rfs::RenameFlags::NOREPLACE);
        u.drop_layer_hints(parent_ino);
        match renamed {
            Err(Errno::EXIST) if kind == FileType::Directory => {
                Err(Errno::EXIST).op("copy-up: raced")
            }
            r => r.op("copy-up: rename"),
        }?;
        restore_times(dst_dir, &parent_before);
        u.invalidate_attr(parent_ino);
        Ok(())
    });
    if let Err(e) = result {
        let _ = crate::tree::remove_entry(work, &cstr(&tmp));
        if e.errno == Errno::EXIST && kind == FileType::Directory {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}

impl Union {
    /// Makes union directory `rel` (and its parents) exist in the upper layer, copying each
    /// missing one from the lower layer that supplies it; returns its upper fd. Directory
    /// copies are metadata only and fast, so one lock serializes them.
    pub(crate) fn ensure_upper_path(&self, rel: &[u8]) -> Result<OwnedFd> {
        if !self.has_upper() {
            return Err(Error::new("read-only mount", Errno::ROFS));
        }
        let _g = self.dir_copy_lock.lock();
        let mut layers = self.node(ROOT)?.state().layers;
        let mut up = self.open_rel(UPPER, b".", OFlags::PATH)?;
        let mut cur: Vec<u8> = b".".to_vec();
        let mut cur_ino = ROOT;
        for part in rel
            .split(|b| *b == b'/')
            .filter(|p| !p.is_empty() && *p != b".")
        {
            let pn = OsStr::from_bytes(part);
            let f = self
                .resolve_in(&cur, &layers, pn)?
                .ok_or(Error::new("copy-up: parent", Errno::NOENT))?;
            if FileType::from_raw_mode(f.st.st_mode) != FileType::Directory {
                return Err(Error::new("copy-up: parent", Errno::NOTDIR));
            }
            let mut f_layers = f.layers.clone();
            if !self.is_upper(f.layers[0]) {
                let origin = self.ino_of(f.layers[0], &f.st, &f.dirfd, pn);
                copy_object(
                    self, &f.dirfd, pn, &f.st, false, origin, &up, pn, cur_ino, false,
                )?;
                f_layers.insert(0, UPPER);
                if let Some(n) = self.nodes.get(&origin) {
                    let mut st = n.st.write();
                    if st.layers.first() != Some(&UPPER) {
                        st.layers.insert(0, UPPER);
                    }
                }
            }
            cur_ino = self.ino_of(f.layers[0], &f.st, &f.dirfd, pn);
            up = rfs::openat(
                &up,
                pn,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .op("copy-up: open upper dir")?;
            layers = f_layers;
            if cur == b"." {
                cur.clear();
            } else {
                cur.push(b'/');
            }
            cur.extend_from_slice(part);
        }
        Ok(up)
    }
}

fn cstr(s: &OsStr) -> std::ffi::CString {
    std::ffi::CString::new(s.as_bytes()).unwrap_or_default()
}

/// Creates the copy of `name` as `tmp` in `work`: data for files, target for symlinks, an
/// empty directory for directories, the node itself for the rest.
fn make_copy(
    noatime: bool,
    src_dir: &OwnedFd,
    name: &OsStr,
    src: &Stat,
    work: &OwnedFd,
    tmp: &OsString,
) -> Result<()> {
    let perm = Mode::from_raw_mode(0o700);
    match FileType::from_raw_mode(src.st_mode) {
        FileType::Directory => rfs::mkdirat(work, tmp, perm).op("copy-up: mkdir"),
        FileType::Symlink => {
            let target = rfs::readlinkat(src_dir, name, Vec::new()).op("copy-up: readlink")?;
            rfs::symlinkat(target.as_c_str(), work, tmp).op("copy-up: symlink")
        }
        FileType::RegularFile => {
            let from = open_data(src_dir, name, noatime).op("copy-up: open source")?;
            let to = create_tmp(work, tmp)?;
            copy_data(&from, &to, src.st_size as u64)
        }
        ft => rfs::mknodat(work, tmp, ft, Mode::from_raw_mode(0o600), src.st_rdev)
            .op("copy-up: mknod"),
    }
}

/// Opens regular file `name` of `dir` to copy its data, without updating its atime where
/// allowed (O_NOATIME needs ownership or CAP_FOWNER; without it, read anyway).
fn open_data(dir: &OwnedFd, name: &OsStr, noatime: bool) -> rustix::io::Result<OwnedFd> {
    let mut fl = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if noatime {
        fl |= OFlags::NOATIME;
    }
    match rfs::openat(dir, name, fl, Mode::empty()) {
        Err(Errno::PERM) if noatime => rfs::openat(dir, name, fl - OFlags::NOATIME, Mode::empty()),
        r => r,
    }
}

/// [`complete_metacopy`] of a removed file (reopened through /proc/PID/fd, or truncated):
/// its data is copied into the object itself, through the pinned fds. Nothing can see a
/// half-made copy, and a crash takes the unnamed object with it, so no rename is needed; what
/// writing into it changed besides the data (times, the setid bits and `security.capability`
/// that a write drops) is put back.
fn complete_removed_metacopy(u: &Union, node: &Arc<Node>) -> Result<()> {
    let p = node.pinned_fd("copy-up")?;
    let Some(data) = &p.data else {
        return Err(Error::new("copy-up: removed metacopy's data", Errno::NOENT));
    };
    if node.state().layers.first() != Some(&UPPER) {
        return Err(Error::new(
            "copy-up: removed metacopy not upper",
            Errno::NOENT,
        ));
    }
    let from = Union::reopen(data, OFlags::RDONLY)?;
    let to = Union::reopen(&p, OFlags::RDWR)?;
    let meta = rfs::fstat(&to).op("copy-up: stat")?;
    let cap = sized(|b| rfs::fgetxattr(&to, "security.capability", b), 256).ok();
    copy_data(&from, &to, meta.st_size as u64)?;
    // FICLONE takes the data file's size.
    rfs::ftruncate(&to, meta.st_size as u64).op("copy-up: truncate")?;
    // Both namespaces, as `is_metacopy` reads both.
    for mark in crate::union::METACOPY_XATTRS {
        match rfs::fremovexattr(&to, mark) {
            Ok(()) | Err(Errno::NODATA) | Err(Errno::PERM) | Err(Errno::NOTSUP) => {}
            Err(e) => return Err(Error::new("copy-up: clear metacopy mark", e)),
        }
    }
    if let Some(v) = cap {
        let _ = rfs::fsetxattr(&to, "security.capability", &v, rfs::XattrFlags::empty());
    }
    let _ = rfs::fchmod(&to, Mode::from_raw_mode(meta.st_mode & 0o7777));
    let _ = rfs::futimens(&to, &stat_times(&meta));
    if !u.cfg.volatile {
        rfs::fsync(&to).op("copy-up: fsync")?;
    }
    node.st.write().data = None;
    *node.xattr_names.lock() = None;
    Ok(())
}

/// Creates the temp file `tmp` in `work` that a copy is made in.
fn create_tmp(work: &OwnedFd, tmp: &OsStr) -> Result<OwnedFd> {
    rfs::openat(
        work,
        tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .op("copy-up: create")
}

/// Creates the metacopy of regular file `src` as `tmp` in `work`: its size, no data.
fn make_metacopy(src: &Stat, work: &OwnedFd, tmp: &OsString) -> Result<()> {
    let to = create_tmp(work, tmp)?;
    rfs::ftruncate(&to, src.st_size as u64).op("copy-up: set size")
}

/// Copies `len` bytes: FICLONE, else copy_file_range per data extent, else read/write.
pub(crate) fn copy_data(from: &OwnedFd, to: &OwnedFd, len: u64) -> Result<()> {
    if len == 0 {
        return Ok(());
    }
    if rfs::ioctl_ficlone(to, from).is_ok() {
        return Ok(());
    }
    let mut pos = 0u64;
    while pos < len {
        let data = match rfs::seek(from, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break, // only a hole is left
            Err(Errno::INVAL) | Err(Errno::NOTSUP) => pos, // no SEEK_DATA here: copy all
            Err(e) => return Err(Error::new("copy-up: SEEK_DATA", e)),
        };
        let end = match rfs::seek(from, SeekFrom::Hole(data)) {
            Ok(h) => h.min(len),
            Err(_) => len,
        };
        copy_range(from, to, data, end)?;
        pos = end;
    }
    // A trailing hole: extend without writing.
    rfs::ftruncate(to, len).op("copy-up: set size")
}

fn copy_range(from: &OwnedFd, to: &OwnedFd, start: u64, end: u64) -> Result<()> {
    let mut off = start;
    let mut use_cfr = true;
    let mut buf: Vec<u8> = Vec::new();
    while off < end {
        let want = ((end - off).min(1 << 30)) as usize;
        if use_cfr {
            let mut i = off;
            let mut o = off;
            match rfs::copy_file_range(from, Some(&mut i), to, Some(&mut o), want) {
                Ok(0) => break,
                Ok(n) => {
                    off += n as u64;
                    continue;
                }
                Err(Errno::XDEV | Errno::NOSYS | Errno::INVAL | Errno::OPNOTSUPP) => {
                    use_cfr = false
                }
                Err(e) => return Err(Error::new("copy-up: copy_file_range", e)),
            }
        }
        if buf.is_empty() {
            buf = vec![0u8; 1 << 20];
        }
        let n = want.min(buf.len());
        let r = rustix::io::pread(from, &mut buf[..n], off).op("copy-up: read")?;
        if r == 0 {
            break;
        }
        let mut done = 0;
        while done < r {
            done +=
                rustix::io::pwrite(to, &buf[done..r], off + done as u64).op("copy-up: write")?;
        }
        off += r as u64;
    }
    Ok(())
}

/// Copies every xattr that is not overlay bookkeeping. Xattrs the upper cannot take
/// (`trusted.*` rootless, `security.*` under an LSM) are skipped, as kernel overlayfs skips
/// what the LSM refuses; an xattr the user set explicitly is never silently dropped later,
/// since setxattr on the union reports its own errors.
fn copy_xattrs(
    src_dir: &OwnedFd,
    name: &OsStr,
    work: &OwnedFd,
    tmp: &OsStr,
    kind: FileType,
) -> Result<()> {
    let sp = Union::proc_path(src_dir, name);
    let dp = Union::proc_path(work, tmp);
    let (sp, dp) = (OsStr::from_bytes(&sp), OsStr::from_bytes(&dp));
    let names = match list_xattrs(sp, false) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(()),
        Err(e) => return Err(Error::new("copy-up: listxattr", e)),
    };
    for x in names.split(|b| *b == 0).filter(|x| !x.is_empty()) {
        if whiteout::is_private_xattr(x) {
            continue;
        }
        let xn = OsStr::from_bytes(x);
        let v = match get_xattr(sp, xn, false) {
            Ok(v) => v,
            Err(Errno::NODATA) => continue,
            Err(e) => return Err(Error::new("copy-up: getxattr", e)),
        };
        match rfs::lsetxattr(dp, xn, &v, rfs::XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::NOTSUP | Errno::ACCESS) => {}
            Err(e) if kind == FileType::Symlink => log::debug!("xattr on symlink: {e}"),
            Err(e) => return Err(Error::new("copy-up: setxattr", e)),
        }
    }
    Ok(())
}

/// Calls `f` with a buffer until what it reads fits: on ERANGE it asks for the size (an
/// empty buffer) and tries again with at least that much.
pub(crate) fn sized(
    mut f: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>,
    start: usize,
) -> rustix::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; start];
    loop {
        match f(&mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => {
                let n = f(&mut [0u8; 0][..])?;
                buf.resize(n.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The xattr names of `path`; `follow`: of what a final symlink (a `/proc/self/fd/N` magic
/// link) points to, else of the symlink itself.
pub(crate) fn list_xattrs(path: &OsStr, follow: bool) -> rustix::io::Result<Vec<u8>> {
    if follow {
        sized(|b| rfs::listxattr(path, b), 1024)
    } else {
        sized(|b| rfs::llistxattr(path, b), 1024)
    }
}

/// The value of xattr `name` of `path` (`follow` as in [`list_xattrs`]).
pub(crate) fn get_xattr(path: &OsStr, name: &OsStr, follow: bool) -> rustix::io::Result<Vec<u8>> {
    if follow {
        sized(|b| rfs::getxattr(path, name, b), 256)
    } else {
        sized(|b| rfs::lgetxattr(path, name, b), 256)
    }
}

/// Owner first (chown clears setuid/setgid), then mode, then times (last, so nothing after
/// touches them).
fn copy_owner(work: &OwnedFd, tmp: &OsStr, src: &Stat) -> Result<()> {
    let owner = (
        Some(rfs::Uid::from_raw(src.st_uid)),
        Some(rfs::Gid::from_raw(src.st_gid)),
    );
    match rfs::chownat(work, tmp, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW) {
        // Rootless, a lower file may belong to an id this user namespace does not map (it
        // shows as 65534); the copy then keeps the daemon's ids, as fuse-overlayfs does.
        Ok(()) | Err(Errno::INVAL) | Err(Errno::PERM) => {}
        Err(e) => return Err(Error::new("copy-up: chown", e)),
    }
    Ok(())
}

/// Puts back the atime and mtime of directory `dir` (an `O_PATH` fd) from `st`.
pub(crate) fn restore_times(dir: &OwnedFd, st: &Stat) {
    let p = Union::proc_path(dir, OsStr::new("."));
    let _ = rfs::utimensat(
        rfs::CWD,
        OsStr::from_bytes(&p),
        &stat_times(st),
        AtFlags::empty(),
    );
}

/// The atime and mtime of `st`, for utimensat.
fn stat_times(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: rfs::Timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: rfs::Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

/// Mode (after chown, which clears setuid/setgid), then times, last.
fn copy_mode_times(work: &OwnedFd, tmp: &OsStr, src: &Stat) -> Result<()> {
    if FileType::from_raw_mode(src.st_mode) != FileType::Symlink {
        Union::chmod_at(work, tmp, src.st_mode)?;
    }
    rfs::utimensat(work, tmp, &stat_times(src), AtFlags::SYMLINK_NOFOLLOW).op("copy-up: utimes")
}
