//! `impl fuser::Filesystem`: translation only. This is the one module that names fuser types.
//! Every error reaches the kernel with its errno intact (`Error::errno`).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, Errno as FErrno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use rustix::fs::{FileType, OFlags};

mod convert;
mod killpriv;
mod passthrough;

use convert::{ctx, err, fattr, kind, oflags, untime};

use crate::union::{Attr, NewKind, SetAttr, Union, ROOT};

/// How long the kernel may cache entries and attributes. The daemon is the only writer of the
/// upper layer and lowers never change, so long timeouts are safe (fuse-overlayfs uses 1e9 s).
const TTL: Duration = Duration::from_secs(86400);

/// The FUSE face of a [`Union`].
#[derive(Debug)]
pub struct StrataFs {
    u: Arc<Union>,
    /// Entry and attribute timeout: [`TTL`], or 0 for a diff view, whose changeset may be the
    /// live upper of another mount.
    ttl: Duration,
    /// Let the kernel keep file pages and directory listings across opens.
    keep_cache: bool,
    /// Ask the kernel for passthrough at INIT (root, and not turned off).
    want_passthrough: bool,
    pt: passthrough::Passthrough,
    /// FUSE_HANDLE_KILLPRIV_V2 was agreed: the daemon clears setid bits (`killpriv.rs`).
    killpriv: bool,
}

impl StrataFs {
    /// Serves `u`.
    pub fn new(u: Arc<Union>) -> Self {
        let live = u.is_diff_view();
        StrataFs {
            u,
            ttl: if live { Duration::ZERO } else { TTL },
            keep_cache: !live,
            want_passthrough: false,
            pt: passthrough::Passthrough::default(),
            killpriv: false,
        }
    }

    /// Serves `u`, with passthrough of open files when `on` and this process may use it
    /// (real root; see `passthrough.rs`).
    pub fn with_passthrough(mut self, on: bool) -> Self {
        self.want_passthrough = on && passthrough::allowed();
        self
    }

    fn cache_flags(&self, dir: bool) -> FopenFlags {
        match (self.keep_cache, dir) {
            (false, _) => FopenFlags::empty(),
            (true, false) => FopenFlags::FOPEN_KEEP_CACHE,
            (true, true) => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
        }
    }
}

impl StrataFs {
    fn reply_entry(&self, r: crate::error::Result<Attr>, reply: ReplyEntry) {
        match r {
            Ok(a) => reply.entry(&self.ttl, &fattr(&a), Generation(0)),
            Err(e) => reply.error(err(e)),
        }
    }
}

impl Filesystem for StrataFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let want = InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_POSIX_ACL;
        // FUSE_POSIX_ACL: the kernel checks and caches ACLs itself, so `ls -l` no longer
        // costs a GETXATTR of system.posix_acl_access per file (W2 ls -lR: 1.12 s -> 0.77 s).
        // It once showed errors under the random-operation storm (tests/tests/stress.rs): a
        // race in `Union::remember`, now fixed, which its GETXATTRs made more likely.
        // Not FUSE_ATOMIC_O_TRUNC: with it the daemon truncates inside OPEN, before the kernel
        // checks ETXTBSY, so open(O_TRUNC) of a running binary emptied it (pjdfstest
        // open::etxtbsy). Without it the kernel truncates with SETATTR after its checks.
        let _ = config.add_capabilities(want & config.capabilities());
        // The daemon clears setid bits itself, so the kernel skips a GETXATTR of
        // security.capability per write(2) and a GETATTR per chown (killpriv.rs).
        let v2 = InitFlags::FUSE_HANDLE_KILLPRIV_V2;
        self.killpriv = config.capabilities().contains(v2) && config.add_capabilities(v2).is_ok();
        // Passthrough and the writeback cache exclude each other (the kernel drops passthrough
        // when both are set); strata uses no writeback cache. Stack depth 1: the backing files
        // sit on a plain filesystem, and the mount itself can still be a layer of overlayfs
        // (reference/fuse-layer.md §6).
        if self.want_passthrough
            && config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH)
            && config.set_max_stack_depth(1).is_ok()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
        {
            self.pt.enable();
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.u.lookup(parent.0, name) {
            Ok(a) => reply.entry(&self.ttl, &fattr(&a), Generation(0)),
            // A cached negative entry (node id 0) saves the next lookup of a missing name.
            Err(e) if e.errno() == libc::ENOENT => {
                let mut a = fattr(&Attr {
                    ino: 0,
                    mode: 0,
                    nlink: 0,
                    uid: 0,
                    gid: 0,
                    rdev: 0,
                    size: 0,
                    blocks: 0,
                    blksize: 0,
                    atime: (0, 0),
                    mtime: (0, 0),
                    ctime: (0, 0),
                });
                a.ino = INodeNo(0);
                reply.entry(&self.ttl, &a, Generation(0))
            }
            Err(e) => reply.error(err(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.u.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.u.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(a) => reply.attr(&self.ttl, &fattr(&a)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if size.is_some() && self.pt.lower_busy(ino.0) {
            // truncate(2) of a file whose readers read its lower object through passthrough:
            // its new data could not reach them (see passthrough.rs).
            return reply.error(FErrno::from_i32(libc::ETXTBSY));
        }
        let nothing = [mode, uid, gid].iter().all(Option::is_none)
            && size.is_none()
            && atime.is_none()
            && mtime.is_none()
            && ctime.is_none();
        let mut mode = mode;
        if self.killpriv && mode.is_none() && (size.is_some() || nothing) {
            // A bare SETATTR is the kernel's decision to kill; a truncate's is in a bit fuser
            // does not pass, so the caller is asked (killpriv.rs).
            match killpriv::mode_without_setid(&self.u, ino.0, fh.map(|f| f.0)) {
                Ok(m) => mode = m.filter(|_| nothing || !killpriv::caller_has_fsetid(req)),
                Err(e) => return reply.error(err(e)),
            }
        }
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(untime),
            mtime: mtime.map(untime),
        };
        match self.u.setattr(ctx(req), ino.0, fh.map(|f| f.0), set) {
            Ok(a) => reply.attr(&self.ttl, &fattr(&a)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.u.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(err(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let ft = FileType::from_raw_mode(mode);
        let r = self
            .u
            .create(
                ctx(req),
                parent.0,
                name,
                mode,
                NewKind::Node(ft, rdev as u64),
            )
            .map(|(a, _)| a);
        self.reply_entry(r, reply)
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let r = self
            .u
            .create(ctx(req), parent.0, name, mode, NewKind::Dir)
            .map(|(a, _)| a);
        self.reply_entry(r, reply)
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.u.remove(parent.0, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.u.remove(parent.0, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let r = self
            .u
            .create(
                ctx(req),
                parent.0,
                link_name,
                0o777,
                NewKind::Symlink(target.as_os_str()),
            )
            .map(|(a, _)| a);
        self.reply_entry(r, reply)
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self
            .u
            .rename(parent.0, name, newparent.0, newname, flags.bits())
        {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let r = self.u.link(ino.0, newparent.0, newname);
        self.reply_entry(r, reply)
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fl = oflags(flags);
        let fh = match self.u.open(ino.0, fl) {
            Ok(fh) => fh,
            Err(e) => return reply.error(err(e)),
        };
        let writes = fl.intersects(OFlags::WRONLY | OFlags::RDWR);
        let mut d = self
            .pt
            .attach(&self.u, ino.0, fh, writes, |fd| reply.open_backing(fd));
        // The kernel sends RELEASE in the background: a writer right after the last reader
        // closed (`cat f; echo >> f`) can arrive first. Give the release a moment.
        for _ in 0..20 {
            if !matches!(d, passthrough::Decision::Busy) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
            d = self
                .pt
                .attach(&self.u, ino.0, fh, writes, |fd| reply.open_backing(fd));
        }
        match d {
            passthrough::Decision::Pass(id) => {
                reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &id)
            }
            passthrough::Decision::Plain => reply.opened(FileHandle(fh), self.cache_flags(false)),
            passthrough::Decision::Busy => {
                self.u.release(fh);
                reply.error(FErrno::from_i32(libc::ETXTBSY))
            }
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // One buffer per worker thread, grown to the largest read and reused: a fresh
        // `vec![0; 128 KiB]` per READ zeroed (or faulted in) 128 KiB before every copy.
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        BUF.with_borrow_mut(|buf| {
            if buf.len() < size as usize {
                buf.resize(size as usize, 0);
            }
            match self.u.read(fh.0, offset, &mut buf[..size as usize]) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(err(e)),
            }
        })
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        wf: WriteFlags,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // The caller lacks CAP_FSETID (killpriv.rs); a file without setid bits costs an fstat.
        if self.killpriv && wf.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
            let kill = killpriv::mode_without_setid(&self.u, ino.0, Some(fh.0)).and_then(|m| {
                let Some(mode) = m else { return Ok(()) };
                let set = SetAttr {
                    mode: Some(mode),
                    ..SetAttr::default()
                };
                self.u.setattr(ctx(req), ino.0, Some(fh.0), set).map(drop)
            });
            if let Err(e) = kill {
                return reply.error(err(e));
            }
        }
        match self.u.write(fh.0, offset, data) {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(err(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is deferred to close (writes reach the layer when they are made, and locks
        // are the kernel's), so ENOSYS: the kernel then stops sending FLUSH on every close
        // (fc->no_flush, fs/fuse/file.c), one round trip less per file that tar writes.
        reply.error(FErrno::from_i32(libc::ENOSYS))
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.pt.detach(fh.0);
        self.u.release(fh.0);
        reply.ok()
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.u.fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.keep_cache {
            // ENOSYS: the kernel stops sending OPENDIR and RELEASEDIR (fc->no_opendir) and
            // opens every directory with FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR itself
            // (fuse_file_open, fs/fuse/file.c), so a warm walk costs no round trip per
            // directory. Readers resume by offset in the listing's stable slots.
            return reply.error(FErrno::from_i32(libc::ENOSYS));
        }
        // A diff view caches nothing: each open reads the changeset again, and its handle
        // keeps that state for the reads that follow.
        match self.u.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), self.cache_flags(true)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let dir = match self.u.readdir(ino.0, fh.0) {
            Ok(d) => d,
            Err(e) => return reply.error(err(e)),
        };
        for (name, e_ino, k, next) in dir.from_offset(offset) {
            if reply.add(INodeNo(e_ino), next, kind(k), OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok()
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let dir = match self.u.readdir(ino.0, fh.0) {
            Ok(d) => d,
            Err(e) => return reply.error(err(e)),
        };
        for (name, e_ino, _, next) in dir.from_offset(offset) {
            let dots = name == b"." || name == b"..";
            // `.` and `..` are neither linked nor forgotten by the kernel: no lookup is counted.
            let attr = if dots {
                self.u.getattr(e_ino, None)
            } else {
                self.u.lookup(ino.0, OsStr::from_bytes(name))
            };
            let Ok(a) = attr else { continue };
            if reply.add(
                INodeNo(a.ino),
                next,
                OsStr::from_bytes(name),
                &self.ttl,
                &fattr(&a),
                Generation(0),
            ) {
                if !dots {
                    self.u.forget(a.ino, 1);
                }
                break;
            }
        }
        reply.ok()
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.u.releasedir(fh.0);
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.u.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(err(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.u.setxattr(ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.u.getxattr(ino.0, name) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(FErrno::from_i32(libc::ERANGE)),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(err(e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.u.listxattr(ino.0) {
            Ok(v) if size == 0 => reply.size(v.len() as u32),
            Ok(v) if v.len() > size as usize => reply.error(FErrno::from_i32(libc::ERANGE)),
            Ok(v) => reply.data(&v),
            Err(e) => reply.error(err(e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.u.removexattr(ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // default_permissions: the kernel checks permissions itself from our attributes.
        reply.error(FErrno::from_i32(libc::ENOSYS))
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let fl = OFlags::from_bits_retain(flags as u32);
        match self
            .u
            .create(ctx(req), parent.0, name, mode, NewKind::File(fl))
        {
            Ok((a, Some(fh))) => {
                let d = self
                    .pt
                    .attach(&self.u, a.ino, fh, true, |fd| reply.open_backing(fd));
                match d {
                    passthrough::Decision::Pass(id) => reply.created_passthrough(
                        &self.ttl,
                        &fattr(&a),
                        Generation(0),
                        FileHandle(fh),
                        FopenFlags::empty(),
                        &id,
                    ),
                    // A new file is in the upper: Busy cannot happen; serve it plainly.
                    _ => reply.created(
                        &self.ttl,
                        &fattr(&a),
                        Generation(0),
                        FileHandle(fh),
                        self.cache_flags(false),
                    ),
                }
            }
            Ok((_, None)) => reply.error(FErrno::from_i32(libc::EIO)),
            Err(e) => reply.error(err(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.u.fallocate(fh.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(err(e)),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        match self.u.lseek(fh.0, offset, whence) {
            Ok(p) => reply.offset(p),
            Err(e) => reply.error(err(e)),
        }
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        match self
            .u
            .copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len)
        {
            Ok(n) => reply.written(n as u32),
            Err(e) => reply.error(err(e)),
        }
    }
}

/// Lets the union drop the kernel's cached attributes of an inode (FUSE_NOTIFY_INVAL_INODE
/// with offset -1: attributes only, no page-cache work, so it is safe from a request thread).
pub fn install_invalidator(u: &Union, n: fuser::Notifier) {
    u.set_invalidator(Box::new(move |ino| {
        let _ = n.inval_inode(INodeNo(ino), -1, 0);
    }));
}

/// FUSE_NOTIFY_PRUNE: include/uapi/linux/fuse.h, protocol 7.45.
const FUSE_NOTIFY_PRUNE: i32 = 9;

/// Lets the union ask the kernel to let go of inodes it no longer uses (FUSE_NOTIFY_PRUNE; see
/// `union/prune.rs`). fuser has no call for this notification, so it is written on a
/// duplicate of the session's `/dev/fuse` fd: a `fuse_out_header` with `unique` 0 and the
/// code in `error`, a `fuse_notify_prune_out` (count, padding, spare), then the node ids.
/// A kernel without it answers EINVAL, and the union stops asking.
pub fn install_pruner(u: &Union, session: &impl std::os::fd::AsFd) {
    let dev = match rustix::io::fcntl_dupfd_cloexec(session, 0) {
        Ok(fd) => fd,
        Err(e) => {
            log::warn!("no inode pruning: cannot duplicate the /dev/fuse fd: {e}");
            return;
        }
    };
    u.set_pruner(Box::new(move |inos: &[u64]| {
        let len = 32 + 8 * inos.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&FUSE_NOTIFY_PRUNE.to_ne_bytes());
        msg.extend_from_slice(&0u64.to_ne_bytes());
        msg.extend_from_slice(&(inos.len() as u32).to_ne_bytes());
        msg.extend_from_slice(&[0u8; 12]);
        for ino in inos {
            msg.extend_from_slice(&ino.to_ne_bytes());
        }
        match rustix::io::write(&dev, &msg) {
            Ok(n) if n == len => Ok(()),
            Ok(n) => Err(std::io::Error::other(format!("short write: {n} of {len}"))),
            Err(e) => Err(e.into()),
        }
    }));
}

/// The root inode, for callers that build on the adapter.
pub const ROOT_INO: u64 = ROOT;
