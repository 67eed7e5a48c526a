//! Unpacking a layer tar into a directory, safely.
//!
//! - Every path is resolved beneath the layer dir fd with no symlink followed (openat2(2)
//!   `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), and every final component is created with
//!   `O_EXCL`/`O_NOFOLLOW` or an `*at` call that does not follow. So an entry through a symlink
//!   of the same layer, `..`, or an absolute path is refused, and nothing is written outside.
//! - `.wh.NAME` and `.wh..wh..opq` are kept as they are (empty regular files): that is the
//!   form strata-fs and fuse-overlayfs read from a lower layer (image-spec layer.md).
//! - Owner, mode (set after chown, which clears set-id bits), times, xattrs (PAX
//!   `SCHILY.xattr.*`), hard links, symlinks and fifos are kept. Device nodes need
//!   CAP_MKNOD: rootless they are skipped with one warning per layer. A char 0/0 whiteout is
//!   kept as one (Linux >= 5.8 lets any user make it, mknod(2)); where that is refused it
//!   becomes `.wh.NAME`, which means the same.
//! - Directory modes and times are applied last, deepest first, because creating children
//!   changes a directory's mtime and a read-only directory would refuse them.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};
use crate::fsutil::{self, open_beneath};

/// What an unpack did that the user should hear about.
#[derive(Debug, Default)]
pub struct UnpackReport {
    /// Entries created.
    pub entries: u64,
    /// One line per kind of thing that could not be kept (devices rootless, owners, xattrs).
    pub warnings: Vec<String>,
}

/// Metadata applied after the whole layer is unpacked.
struct DirMeta {
    rel: Vec<u8>,
    mode: u32,
    times: Timestamps,
}

struct Unpacker<'a> {
    root: &'a OwnedFd,
    layer: &'a str,
    euid: u32,
    egid: u32,
    dirs: Vec<DirMeta>,
    /// The last parent directory opened, by relative path: tars list siblings together.
    parent: Option<(Vec<u8>, OwnedFd)>,
    report: UnpackReport,
    skipped_devices: u64,
    kept_owner: u64,
    skipped_xattrs: u64,
    dropped_overlay_xattrs: u64,
    buf: Vec<u8>,
}

/// The entry kinds a layer may hold.
enum Kind {
    Dir,
    File,
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    Char(u32, u32),
    Block(u32, u32),
    Fifo,
}

/// Unpacks the tar stream `tar` into the empty directory `root`. `layer` names the layer in
/// errors. A read error of the stream is reported as a truncated or corrupt layer; a write
/// error names the entry (e.g. ENOSPC).
pub(crate) fn unpack(tar: impl Read, root: &OwnedFd, layer: &str) -> Result<UnpackReport> {
    let mut u = Unpacker {
        root,
        layer,
        euid: rustix::process::geteuid().as_raw(),
        egid: rustix::process::getegid().as_raw(),
        dirs: Vec::new(),
        parent: None,
        report: UnpackReport::default(),
        skipped_devices: 0,
        kept_owner: 0,
        skipped_xattrs: 0,
        dropped_overlay_xattrs: 0,
        buf: vec![0; 256 * 1024],
    };
    let corrupt = |e: io::Error| Error::Corrupt {
        what: format!("layer {layer}"),
        error: e,
    };
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        u.entry(&mut entry)?;
    }
    u.finish()?;
    Ok(u.report)
}

impl Unpacker<'_> {
    fn refuse(&self, entry: &[u8], why: impl Into<String>) -> Error {
        Error::Entry {
            layer: self.layer.to_owned(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            why: why.into(),
        }
    }

    fn failed(&self, entry: &[u8], op: &'static str, e: impl Into<io::Error>) -> Error {
        Error::Extract {
            layer: self.layer.to_owned(),
            entry: String::from_utf8_lossy(entry).into_owned(),
            op,
            error: e.into(),
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let h = entry.header();
        let et = h.entry_type();
        if et.is_pax_global_extensions() {
            return Ok(());
        }
        let rel = normalize(&raw).map_err(|why| self.refuse(&raw, why))?;
        let kind = match et {
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                Kind::File
            }
            tar::EntryType::Symlink => Kind::Symlink(
                entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&raw, "symlink without a target"))?
                    .into_owned(),
            ),
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| self.refuse(&raw, "hard link without a target"))?;
                let t = normalize(&target).map_err(|why| {
                    self.refuse(
                        &raw,
                        format!(
                            "hard link to {:?} outside the layer ({why})",
                            String::from_utf8_lossy(&target)
                        ),
                    )
                })?;
                if t.is_empty() {
                    return Err(self.refuse(&raw, "hard link to the layer root"));
                }
                Kind::HardLink(t)
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                if et == tar::EntryType::Char {
                    Kind::Char(major, minor)
                } else {
                    Kind::Block(major, minor)
                }
            }
            tar::EntryType::Fifo => Kind::Fifo,
            other => {
                return Err(self.refuse(
                    &raw,
                    format!("unsupported entry type {:?}", other.as_byte() as char),
                ))
            }
        };
        let name_ok = rel.rsplit(|&b| b == b'/').next().unwrap_or(b"");
        if name_ok == b".wh." {
            return Err(self.refuse(
                &raw,
                "a bare .wh. is not a valid whiteout (image-spec layer.md)",
            ));
        }
        let meta = EntryMeta::of(entry).map_err(|e| Error::Corrupt {
            what: format!(
                "layer {}: entry {:?}",
                self.layer,
                String::from_utf8_lossy(&raw)
            ),
            error: e,
        })?;
        if rel.is_empty() {
            // "./": the layer root itself.
            if !matches!(kind, Kind::Dir) {
                return Err(self.refuse(&raw, "the layer root must be a directory"));
            }
            self.dirs.push(DirMeta {
                rel,
                mode: meta.mode,
                times: meta.times(),
            });
            return Ok(());
        }
        let (parent_rel, name) = match rel.iter().rposition(|&b| b == b'/') {
            Some(i) => (rel[..i].to_vec(), rel[i + 1..].to_vec()),
            None => (Vec::new(), rel.clone()),
        };
        let parent = self.parent_dir(&raw, &parent_rel)?;
        let name = OsStr::from_bytes(&name);
        self.create(entry, &raw, &rel, &parent, name, kind, &meta)?;
        self.parent = Some((parent_rel, parent));
        self.report.entries += 1;
        Ok(())
    }

    /// Opens (creating as needed, like tar) the parent directory `rel` beneath the root.
    fn parent_dir(&mut self, raw: &[u8], rel: &[u8]) -> Result<OwnedFd> {
        if let Some((p, fd)) = self.parent.take() {
            if p == rel {
                return Ok(fd);
            }
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        match open_beneath(self.root, rel, flags) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(self.refuse_resolve(raw, rel, e)),
        }
        // Walk down, making what is missing with tar's default mode (0755).
        let mut cur = rfs::openat(self.root, ".", flags | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| self.failed(raw, "open layer root", e))?;
        for comp in rel.split(|&b| b == b'/') {
            let c = OsStr::from_bytes(comp);
            cur = match open_beneath(&cur, comp, flags) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    rfs::mkdirat(&cur, c, Mode::from_raw_mode(0o755))
                        .map_err(|e| self.failed(raw, "create parent directory", e))?;
                    open_beneath(&cur, comp, flags).map_err(|e| self.refuse_resolve(raw, rel, e))?
                }
                Err(e) => return Err(self.refuse_resolve(raw, rel, e)),
            };
        }
        Ok(cur)
    }

    fn refuse_resolve(&self, raw: &[u8], parent: &[u8], e: Errno) -> Error {
        // O_DIRECTORY|O_NOFOLLOW on a final symlink fails with ENOTDIR, not ELOOP: look.
        let e = match e {
            Errno::NOTDIR if is_symlink_beneath(self.root, parent) => Errno::LOOP,
            e => e,
        };
        match e {
            Errno::LOOP => self.refuse(raw, "the path goes through a symlink of the layer"),
            Errno::NOTDIR => self.refuse(raw, "a parent in the path is not a directory"),
            Errno::XDEV => self.refuse(raw, "the path leaves the layer"),
            e => self.failed(raw, "open parent directory", e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        rel: &[u8],
        parent: &OwnedFd,
        name: &OsStr,
        kind: Kind,
        meta: &EntryMeta,
    ) -> Result<()> {
        let perm = Mode::from_raw_mode(0o600);
        // A later entry with the same path replaces the earlier one (tar semantics); two
        // directories merge.
        let mut retried = false;
        loop {
            let r = match &kind {
                Kind::Dir => match rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
                    Err(Errno::EXIST) if is_dir_at(parent, name) => Ok(()),
                    r => r,
                },
                Kind::File => {
                    match rfs::openat(
                        parent,
                        name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        perm,
                    ) {
                        Ok(fd) => return self.fill_file(entry, raw, fd, meta),
                        Err(e) => Err(e),
                    }
                }
                Kind::Symlink(target) => rfs::symlinkat(OsStr::from_bytes(target), parent, name),
                Kind::HardLink(target) => self.hard_link(raw, target, parent, name),
                Kind::Fifo => rfs::mknodat(parent, name, FileType::Fifo, perm, 0),
                Kind::Char(maj, min) => {
                    let r = rfs::mknodat(
                        parent,
                        name,
                        FileType::CharacterDevice,
                        perm,
                        rfs::makedev(*maj, *min),
                    );
                    if matches!(r, Err(Errno::PERM)) {
                        return self.skip_device(raw, parent, name, *maj == 0 && *min == 0);
                    }
                    r
                }
                Kind::Block(maj, min) => {
                    let r = rfs::mknodat(
                        parent,
                        name,
                        FileType::BlockDevice,
                        perm,
                        rfs::makedev(*maj, *min),
                    );
                    if matches!(r, Err(Errno::PERM)) {
                        return self.skip_device(raw, parent, name, false);
                    }
                    r
                }
            };
            match r {
                Ok(()) => break,
                Err(Errno::EXIST) if !retried => {
                    retried = true;
                    fsutil::remove_tree(parent, name)
                        .map_err(|e| self.failed(raw, "replace earlier entry", e))?;
                }
                Err(e) => {
                    return Err(match &kind {
                        Kind::HardLink(t) => self.link_error(raw, t, e),
                        _ => self.failed(raw, "create", e),
                    })
                }
            }
        }
        match kind {
            Kind::Dir => {
                let fd = rfs::openat(
                    parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.failed(raw, "open directory", e))?;
                self.chown_fd(raw, &fd, meta)?;
                self.set_xattrs(raw, &fd, None, meta)?;
                self.dirs.push(DirMeta {
                    rel: rel.to_vec(),
                    mode: meta.mode,
                    times: meta.times(),
                });
            }
            // A hard link shares the inode, and with it the metadata of its target entry.
            Kind::HardLink(_) => {}
            Kind::Symlink(_) => {
                self.chown_at(raw, parent, name, meta)?;
                self.set_xattrs(raw, parent, Some(name), meta)?;
                rfs::utimensat(parent, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.failed(raw, "set times", e))?;
            }
            Kind::Fifo | Kind::Char(..) | Kind::Block(..) => {
                let fd = rfs::openat(
                    parent,
                    name,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| self.failed(raw, "open", e))?;
                self.chown_at(raw, parent, name, meta)?;
                self.set_xattrs(raw, parent, Some(name), meta)?;
                let p = fsutil::proc_fd_path(&fd);
                rfs::chmod(p.as_str(), Mode::from_raw_mode(meta.mode))
                    .map_err(|e| self.failed(raw, "chmod", e))?;
                rfs::utimensat(parent, name, &meta.times(), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.failed(raw, "set times", e))?;
            }
            Kind::File => unreachable!("regular files return from fill_file"),
        }
        Ok(())
    }

    fn fill_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        fd: OwnedFd,
        meta: &EntryMeta,
    ) -> Result<()> {
        let mut file = std::fs::File::from(fd);
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Corrupt {
                        what: format!(
                            "layer {}: entry {:?}",
                            self.layer,
                            String::from_utf8_lossy(raw)
                        ),
                        error: e,
                    })
                }
            };
            file.write_all(&self.buf[..n])
                .map_err(|e| self.failed(raw, "write", e))?;
        }
        let fd = OwnedFd::from(file);
        self.chown_fd(raw, &fd, meta)?;
        self.set_xattrs(raw, &fd, None, meta)?;
        rfs::fchmod(&fd, Mode::from_raw_mode(meta.mode))
            .map_err(|e| self.failed(raw, "chmod", e))?;
        rfs::futimens(&fd, &meta.times()).map_err(|e| self.failed(raw, "set times", e))?;
        Ok(())
    }

    fn hard_link(
        &self,
        raw: &[u8],
        target: &[u8],
        parent: &OwnedFd,
        name: &OsStr,
    ) -> rustix::io::Result<()> {
        let (tp, tn) = match target.iter().rposition(|&b| b == b'/') {
            Some(i) => (&target[..i], &target[i + 1..]),
            None => (&b""[..], target),
        };
        let tparent = open_beneath(self.root, tp, OFlags::PATH | OFlags::DIRECTORY)?;
        let _ = raw;
        // linkat(2) without AT_SYMLINK_FOLLOW links a symlink itself, never its target.
        rfs::linkat(
            &tparent,
            OsStr::from_bytes(tn),
            parent,
            name,
            AtFlags::empty(),
        )
    }

    fn link_error(&self, raw: &[u8], target: &[u8], e: Errno) -> Error {
        let t = String::from_utf8_lossy(target);
        match e {
            Errno::NOENT => self.refuse(
                raw,
                format!("hard link target {t:?} is not an earlier entry of the layer"),
            ),
            Errno::LOOP | Errno::NOTDIR | Errno::XDEV => self.refuse(
                raw,
                format!("hard link target {t:?} goes through a symlink of the layer"),
            ),
            Errno::PERM => self.refuse(raw, format!("hard link target {t:?} is a directory")),
            e => self.failed(raw, "create hard link", e),
        }
    }

    fn skip_device(
        &mut self,
        raw: &[u8],
        parent: &OwnedFd,
        name: &OsStr,
        whiteout: bool,
    ) -> Result<()> {
        if whiteout {
            // A char 0/0 is an overlayfs whiteout; the AUFS form means the same and needs no
            // privilege (image-spec layer.md "Whiteouts").
            let mut wh = b".wh.".to_vec();
            wh.extend_from_slice(name.as_bytes());
            let fd = rfs::openat(
                parent,
                OsStr::from_bytes(&wh),
                OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| self.failed(raw, "create whiteout", e))?;
            drop(fd);
            return Ok(());
        }
        self.skipped_devices += 1;
        Ok(())
    }

    fn chown_fd(&mut self, raw: &[u8], fd: &OwnedFd, meta: &EntryMeta) -> Result<()> {
        if (meta.uid, meta.gid) == (self.euid, self.egid) {
            return Ok(());
        }
        let r = rfs::fchown(
            fd,
            Some(rfs::Uid::from_raw(meta.uid)),
            Some(rfs::Gid::from_raw(meta.gid)),
        );
        self.owner_result(raw, r)
    }

    fn chown_at(
        &mut self,
        raw: &[u8],
        parent: &OwnedFd,
        name: &OsStr,
        meta: &EntryMeta,
    ) -> Result<()> {
        if (meta.uid, meta.gid) == (self.euid, self.egid) {
            return Ok(());
        }
        let r = rfs::chownat(
            parent,
            name,
            Some(rfs::Uid::from_raw(meta.uid)),
            Some(rfs::Gid::from_raw(meta.gid)),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        self.owner_result(raw, r)
    }

    fn owner_result(&mut self, raw: &[u8], r: rustix::io::Result<()>) -> Result<()> {
        match r {
            Ok(()) => Ok(()),
            // EPERM without CAP_CHOWN; EINVAL for an id the user namespace does not map
            // (chown(2)). The layer keeps our own owner, as `tar` does for a non-root user.
            Err(Errno::PERM) | Err(Errno::INVAL) => {
                self.kept_owner += 1;
                Ok(())
            }
            Err(e) => Err(self.failed(raw, "chown", e)),
        }
    }

    /// Sets the entry's xattrs on `fd` (or, with `name`, on the entry itself without
    /// following it). `trusted.overlay.*`/`user.overlay.*` are dropped: they would be read as
    /// overlay whiteout or opaque markers, and records taken from layer content are never
    /// trusted (DESIGN.md, "What comes later"); layers say that with `.wh.` entries.
    fn set_xattrs(
        &mut self,
        raw: &[u8],
        fd: &OwnedFd,
        name: Option<&OsStr>,
        meta: &EntryMeta,
    ) -> Result<()> {
        for (k, v) in &meta.xattrs {
            if is_private_xattr(k) {
                // An overlay upper exported as a layer marks opaque dirs with the xattr; the
                // layer form of the same thing is `.wh..wh..opq` (image-spec layer.md).
                if name.is_none() && k.ends_with(b".opaque") && v == b"y" {
                    self.opaque_from_xattr(raw, fd)?;
                }
                self.dropped_overlay_xattrs += 1;
                continue;
            }
            let key = OsStr::from_bytes(k);
            let r = match name {
                None => rfs::fsetxattr(fd, key, v, XattrFlags::empty()),
                Some(n) => {
                    let mut p = fsutil::proc_fd_path(fd).into_bytes();
                    p.push(b'/');
                    p.extend_from_slice(n.as_bytes());
                    rfs::lsetxattr(OsStr::from_bytes(&p), key, v, XattrFlags::empty())
                }
            };
            match r {
                Ok(()) => {}
                // trusted.* and security.* need privilege; user.* is refused on symlinks and
                // devices (xattr(7)); some filesystems have no xattrs at all.
                Err(Errno::PERM) | Err(Errno::OPNOTSUPP) | Err(Errno::ACCESS) => {
                    self.skipped_xattrs += 1
                }
                Err(e) => return Err(self.failed(raw, "set xattr", e)),
            }
        }
        Ok(())
    }

    fn opaque_from_xattr(&self, raw: &[u8], dir: &OwnedFd) -> Result<()> {
        rfs::openat(
            dir,
            ".wh..wh..opq",
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(drop)
        .map_err(|e| self.failed(raw, "create opaque marker", e))
    }

    fn finish(&mut self) -> Result<()> {
        self.parent = None;
        // Deepest first, so a parent's mode (maybe read-only) and mtime come after its
        // children are complete.
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| {
            std::cmp::Reverse(
                d.rel.iter().filter(|&&b| b == b'/').count() + usize::from(!d.rel.is_empty()),
            )
        });
        for d in &dirs {
            let fd = match open_beneath(self.root, &d.rel, OFlags::RDONLY | OFlags::DIRECTORY) {
                Ok(fd) => fd,
                // A later entry replaced the directory (or a parent) with a non-directory:
                // its metadata went with it.
                Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => continue,
                Err(e) => return Err(self.failed(&d.rel, "open directory", e)),
            };
            rfs::fchmod(&fd, Mode::from_raw_mode(d.mode))
                .map_err(|e| self.failed(&d.rel, "chmod", e))?;
            rfs::futimens(&fd, &d.times).map_err(|e| self.failed(&d.rel, "set times", e))?;
        }
        let w = &mut self.report.warnings;
        if self.skipped_devices > 0 {
            w.push(format!(
                "layer {}: skipped {} device node(s): creating them needs CAP_MKNOD (mknod(2))",
                self.layer, self.skipped_devices
            ));
        }
        if self.kept_owner > 0 {
            w.push(format!(
                "layer {}: {} entr(ies) keep the store's owner: chown needs CAP_CHOWN in a namespace that maps the owner",
                self.layer, self.kept_owner
            ));
        }
        if self.skipped_xattrs > 0 {
            w.push(format!(
                "layer {}: skipped {} xattr(s) this user or filesystem cannot set",
                self.layer, self.skipped_xattrs
            ));
        }
        if self.dropped_overlay_xattrs > 0 {
            w.push(format!(
                "layer {}: dropped {} overlay or union-private xattr(s): layers mark whiteouts and opaque dirs with .wh. entries",
                self.layer, self.dropped_overlay_xattrs
            ));
        }
        Ok(())
    }
}

/// Xattrs a layer may not set: the union filesystem's own records and markers (whiteouts,
/// opaque dirs, origins, owner overrides). Records taken from layer content are never trusted
/// (DESIGN.md, "What comes later"); layers say "deleted" and "opaque" with `.wh.` entries.
pub(crate) fn is_private_xattr(k: &[u8]) -> bool {
    const PREFIXES: [&[u8]; 7] = [
        b"trusted.overlay.",
        b"user.overlay.",
        b"user.fuseoverlayfs.",
        b"security.fuseoverlayfs.",
        b"user.strata.",
        b"trusted.strata.",
        b"user.containers.override_stat",
    ];
    PREFIXES.iter().any(|p| k.starts_with(p))
}

fn is_symlink_beneath(root: &OwnedFd, rel: &[u8]) -> bool {
    open_beneath(root, rel, OFlags::PATH)
        .and_then(|fd| rfs::fstat(&fd))
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
}

fn is_dir_at(parent: &OwnedFd, name: &OsStr) -> bool {
    rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory)
}

/// Owner, mode, times and xattrs of an entry, with PAX records taking precedence over the
/// ustar fields (POSIX pax: `uid`, `gid`, `mtime`, `atime`, `SCHILY.xattr.*`).
struct EntryMeta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, u32),
    atime: Option<(i64, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl EntryMeta {
    fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Self> {
        let h = entry.header();
        let mut m = EntryMeta {
            mode: h.mode()? & 0o7777,
            uid: u32::try_from(h.uid()?)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "uid out of range"))?,
            gid: u32::try_from(h.gid()?)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "gid out of range"))?,
            mtime: (i64::try_from(h.mtime()?).unwrap_or(0), 0),
            atime: None,
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions()? {
            for rec in pax {
                let rec = rec?;
                let k = rec.key_bytes();
                let v = rec.value_bytes();
                if let Some(x) = k.strip_prefix(b"SCHILY.xattr.") {
                    m.xattrs.push((x.to_vec(), v.to_vec()));
                    continue;
                }
                let s = std::str::from_utf8(v).unwrap_or("");
                match k {
                    b"uid" => m.uid = s.parse().map_err(|_| bad("pax uid"))?,
                    b"gid" => m.gid = s.parse().map_err(|_| bad("pax gid"))?,
                    b"mtime" => m.mtime = parse_pax_time(s).ok_or_else(|| bad("pax mtime"))?,
                    b"atime" => m.atime = Some(parse_pax_time(s).ok_or_else(|| bad("pax atime"))?),
                    _ => {}
                }
            }
        }
        Ok(m)
    }

    fn times(&self) -> Timestamps {
        let ts = |(s, ns): (i64, u32)| Timespec {
            tv_sec: s,
            tv_nsec: ns.into(),
        };
        Timestamps {
            last_access: ts(self.atime.unwrap_or(self.mtime)),
            last_modification: ts(self.mtime),
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("invalid {what}"))
}

/// Parses a PAX time, `seconds[.fraction]` (possibly negative).
fn parse_pax_time(s: &str) -> Option<(i64, u32)> {
    let (sec, frac) = s.split_once('.').unwrap_or((s, ""));
    let sec: i64 = sec.parse().ok()?;
    let mut ns: u32 = 0;
    for (i, c) in frac.bytes().take(9).enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        ns += u32::from(c - b'0') * 10u32.pow(8 - i as u32);
    }
    Some((sec, ns))
}

/// Normalizes an archive path to a relative path of plain components: strips `./` and empty
/// components; refuses absolute paths and `..` (image-spec layer.md: entries are relative to
/// the layer root).
pub(crate) fn normalize(raw: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute paths are not allowed in a layer");
    }
    let mut out = Vec::with_capacity(raw.len());
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("'..' is not allowed in a layer path"),
            c => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(c);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_refuses_escapes() {
        assert_eq!(normalize(b"./a//b/./c/").unwrap(), b"a/b/c");
        assert_eq!(normalize(b"./").unwrap(), b"");
        assert!(normalize(b"/etc/passwd").is_err());
        assert!(normalize(b"a/../../x").is_err());
        assert!(normalize(b"..").is_err());
        assert_eq!(normalize(b"a..b/..c").unwrap(), b"a..b/..c");
    }

    #[test]
    fn union_private_xattrs_are_not_taken_from_layers() {
        for k in [
            &b"trusted.overlay.opaque"[..],
            b"user.overlay.whiteout",
            b"user.fuseoverlayfs.opaque",
            b"security.fuseoverlayfs.override_stat",
            b"user.containers.override_stat",
            b"user.strata.origin",
        ] {
            assert!(is_private_xattr(k), "{}", String::from_utf8_lossy(k));
        }
        assert!(!is_private_xattr(b"security.capability"));
        assert!(!is_private_xattr(b"user.mime_type"));
    }

    #[test]
    fn a_later_entry_may_replace_a_directory() {
        let hdr = |t: tar::EntryType, mode: u32, size: u64| {
            let mut h = tar::Header::new_ustar();
            h.set_entry_type(t);
            h.set_mode(mode);
            h.set_size(size);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h
        };
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(
            &mut hdr(tar::EntryType::Directory, 0o555, 0),
            "a/",
            std::io::empty(),
        )
        .unwrap();
        b.append_data(
            &mut hdr(tar::EntryType::Regular, 0o644, 1),
            "a/f",
            &b"x"[..],
        )
        .unwrap();
        b.append_link(
            &mut hdr(tar::EntryType::Symlink, 0o777, 0),
            "a",
            "elsewhere",
        )
        .unwrap();
        let data = b.into_inner().unwrap();
        let t = tempfile::tempdir().unwrap();
        let root = crate::fsutil::open_dir(t.path()).unwrap();
        // The queued metadata of the replaced "a/" must not be applied through the symlink.
        unpack(&data[..], &root, "test").unwrap();
        let md = std::fs::symlink_metadata(t.path().join("a")).unwrap();
        assert!(md.file_type().is_symlink());
    }

    #[test]
    fn parses_pax_times() {
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some((1700000000, 500_000_000))
        );
        assert_eq!(parse_pax_time("12"), Some((12, 0)));
        assert_eq!(parse_pax_time("x"), None);
    }
}
