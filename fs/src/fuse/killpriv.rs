//! The daemon's half of FUSE_HANDLE_KILLPRIV_V2: clearing the setuid and setgid bits of a
//! regular file when it is written or truncated by a caller without CAP_FSETID.
//!
//! Without the flag the kernel does it itself, at a price: every `write(2)` first asks the
//! daemon for `security.capability` (`file_remove_privs`, because FUSE clears `SB_NOSEC`), and
//! every chown first refreshes the attributes with a GETATTR (`fuse_setattr`, fs/fuse/dir.c).
//! With it the superblock gets `SB_NOSEC`, the write path skips the check, and chown sends
//! one request; untar of 10,000 files drops from eleven requests per file to nine.
//!
//! What the kernel then leaves to the daemon (fs/fuse/dir.c, fs/fuse/file.c, 6.18):
//! - WRITE carries FUSE_WRITE_KILL_SUIDGID when the caller lacks CAP_FSETID: fuser passes it.
//! - A chown of a non-directory always kills the bits: the daemon's own chown of the layer's
//!   file does that in the host kernel, and the recorded owner of `xattr_permissions` does it
//!   in `Union::setattr`.
//! - A truncate carries FATTR_KILL_SUIDGID when the caller lacks CAP_FSETID, which fuser does
//!   not pass on: the daemon asks the caller's effective capabilities itself, only for a file
//!   that has one of the bits.
//! - A passthrough write (`backing_file_write_iter`) calls `file_remove_privs` on the FUSE
//!   file; when that finds bits to kill, `fuse_setattr` strips the kill and its mode and sends a
//!   SETATTR that sets nothing. That bare SETATTR is the request to kill them.

use std::fs;

use fuser::Request;
use rustix::fs::FileType;

use crate::error::Result;
use crate::union::{setid_bits, Union};

/// CAP_FSETID, linux/capability.h.
const CAP_FSETID: u32 = 4;

/// Whether the process that sent request `req` has CAP_FSETID in its effective set, the test
/// the kernel applies to a local filesystem (`should_remove_suid`, fs/inode.c). Its
/// `/proc/PID/status` says; when the process is gone or not visible (pid 0, another pid
/// namespace), the caller's uid decides (root keeps the bits).
fn caller_has_fsetid(req: &Request) -> bool {
    let status = fs::read_to_string(format!("/proc/{}/status", req.pid()));
    let eff = status.ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    });
    match eff {
        Some(caps) => caps & (1 << CAP_FSETID) != 0,
        None => req.uid() == 0,
    }
}

/// The mode a SETATTR must also set when it truncates regular file `ino` (or sets nothing,
/// see the module comment) for a caller without CAP_FSETID while the file has setid bits:
/// its mode without them. `None` when nothing is to be killed.
pub(super) fn mode_after_kill(
    u: &Union,
    req: &Request,
    ino: u64,
    fh: Option<u64>,
) -> Result<Option<u32>> {
    let a = u.getattr(ino, fh)?;
    let kill = setid_bits(a.mode);
    if a.kind() != FileType::RegularFile || kill == 0 || caller_has_fsetid(req) {
        return Ok(None);
    }
    Ok(Some(a.mode & 0o7777 & !kill))
}
