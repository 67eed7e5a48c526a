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
//!   not pass on: the daemon asks about the caller's capabilities itself, only for a file that
//!   has one of the bits.
//! - A passthrough write (`backing_file_write_iter`) calls `file_remove_privs` on the FUSE
//!   file; when that finds bits to kill, `fuse_setattr` strips the kill and its mode and sends a
//!   SETATTR that sets nothing. That bare SETATTR is the request to kill them.
//!
//! "Has CAP_FSETID" means in the initial user namespace, for FUSE as for a local filesystem
//! (`capable()` in `setattr_should_drop_suidgid`, fs/attr.c): a container's root in a user
//! namespace loses the bits of the files it writes.

use std::fs;

use fuser::Request;
use rustix::fs::FileType;

use crate::error::Result;
use crate::union::{setid_bits, Union};

/// CAP_FSETID, linux/capability.h.
const CAP_FSETID: u32 = 4;

/// What `/proc/PID/ns/user` reads for the initial user namespace (PROC_USER_INIT_INO,
/// include/linux/proc_ns.h).
const INIT_USER_NS: &str = "user:[4026531837]";

/// Whether the process that sent `req` has CAP_FSETID in the initial user namespace: that
/// capability in its effective set (`/proc/PID/status`), and that namespace as its own. The
/// pid is in the daemon's pid namespace, the one its `/proc` shows. When the process is gone
/// or hidden, the caller's uid decides: root in the initial namespace keeps the bits.
fn caller_has_fsetid(req: &Request) -> bool {
    let pid = req.pid();
    let ns = |p: String| {
        fs::read_link(p)
            .ok()
            .map(|l| l == std::path::Path::new(INIT_USER_NS))
    };
    let status = fs::read_to_string(format!("/proc/{pid}/status"));
    let eff = status.ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    });
    match (eff, ns(format!("/proc/{pid}/ns/user"))) {
        (Some(caps), Some(init)) => init && caps & (1 << CAP_FSETID) != 0,
        _ => req.uid() == 0 && ns("/proc/self/ns/user".into()) == Some(true),
    }
}

/// Regular file `ino`'s mode without its setid bits, if it has any (read through handle `fh`
/// when given). `None` when there is nothing to kill.
fn mode_without_setid(u: &Union, ino: u64, fh: Option<u64>) -> Result<Option<u32>> {
    let a = u.getattr(ino, fh)?;
    let kill = setid_bits(a.mode);
    if a.kind() != FileType::RegularFile || kill == 0 {
        return Ok(None);
    }
    Ok(Some(a.mode & 0o7777 & !kill))
}

/// For a WRITE that carries FUSE_WRITE_KILL_SUIDGID: the mode to set first, if any.
pub(super) fn mode_for_write(u: &Union, ino: u64, fh: u64) -> Result<Option<u32>> {
    mode_without_setid(u, ino, Some(fh))
}

/// For a truncate, or the bare SETATTR of the module comment: the mode to set with it, if the
/// file has setid bits and the caller of `req` lacks CAP_FSETID.
pub(super) fn mode_for_setattr(
    u: &Union,
    req: &Request,
    ino: u64,
    fh: Option<u64>,
) -> Result<Option<u32>> {
    Ok(mode_without_setid(u, ino, fh)?.filter(|_| !caller_has_fsetid(req)))
}
