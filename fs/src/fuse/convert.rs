//! Values between the union's types and fuser's: attributes, times, file types, errors.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno as FErrno, FileAttr, FileType as FType, INodeNo, OpenFlags, Request, TimeOrNow};
use rustix::fs::{FileType, OFlags};

use crate::error::Error;
use crate::union::{Attr, Ctx};

pub(super) fn err(e: Error) -> FErrno {
    log::debug!("reply error: {e}");
    FErrno::from_i32(e.errno())
}

pub(super) fn time(t: (i64, u32)) -> SystemTime {
    if t.0 >= 0 {
        UNIX_EPOCH + Duration::new(t.0 as u64, t.1)
    } else {
        UNIX_EPOCH - Duration::from_secs(t.0.unsigned_abs()) + Duration::from_nanos(t.1 as u64)
    }
}

pub(super) fn untime(t: TimeOrNow) -> Option<(i64, u32)> {
    match t {
        TimeOrNow::Now => None,
        TimeOrNow::SpecificTime(st) => Some(match st.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
                if n == 0 {
                    (-s, 0)
                } else {
                    (-s - 1, 1_000_000_000 - n)
                }
            }
        }),
    }
}

pub(super) fn kind(k: FileType) -> FType {
    match k {
        FileType::Directory => FType::Directory,
        FileType::Symlink => FType::Symlink,
        FileType::Fifo => FType::NamedPipe,
        FileType::Socket => FType::Socket,
        FileType::CharacterDevice => FType::CharDevice,
        FileType::BlockDevice => FType::BlockDevice,
        _ => FType::RegularFile,
    }
}

pub(super) fn fattr(a: &Attr) -> FileAttr {
    log::trace!("attr ino={} mode={:o}", a.ino, a.mode);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: time(a.atime),
        mtime: time(a.mtime),
        ctime: time(a.ctime),
        crtime: UNIX_EPOCH,
        kind: kind(a.kind()),
        perm: (a.mode & 0o7777) as u16,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev as u32,
        blksize: a.blksize,
        flags: 0,
    }
}

pub(super) fn ctx(r: &Request) -> Ctx {
    Ctx {
        uid: r.uid(),
        gid: r.gid(),
    }
}

pub(super) fn oflags(f: OpenFlags) -> OFlags {
    OFlags::from_bits_retain(f.0 as u32)
}
