//! The daemon's half of FUSE_HANDLE_KILLPRIV_V2: clearing the setuid and setgid bits of a
//! regular file when it is written or truncated by a caller without CAP_FSETID.
//!
//! Without the flag the kernel does it itself, at a price: every `write(2)` first asks the
//! daemon for `security.capability` (`file_remove_privs`, because FUSE clears `SB_NOSEC`), and
//! every chown first refreshes the attributes with a GETATTR (`fuse_setattr`, fs/fuse/dir.c).
//! With it the superblock gets `SB_NOSEC`: once a write found nothing to remove, the inode is
//! marked and later writes skip the check, and chown goes without the GETATTR. Untar of
//! 10,000 files drops from eleven requests per file to ten (the first write of each file and
//! its chown still ask for `security.capability`); a thousand writes to one file send one
//! GETXATTR instead of a thousand.
//!
//! What the kernel then leaves to the daemon (fs/fuse/dir.c, fs/fuse/file.c, 6.18):
//! - A write, fallocate or copy_file_range goes through `file_remove_privs`, which decides
//!   as for a local filesystem (setuid, setgid if group-executable or the caller is outside
//!   the group, `security.capability`; nothing if the caller has CAP_FSETID). When it finds
//!   something, `fuse_setattr` strips the kill and its mode and sends a SETATTR that sets
//!   nothing, and so does root's `chown(f, -1, -1)` (it always kills, `chown_common`). That
//!   bare SETATTR is the request: the daemon clears [`setid_bits`]. (Root writing a file with
//!   both setid bits and `security.capability` loses the bits, which a local filesystem keeps;
//!   a setgid file without group execute keeps its bit, as v2 defines, include/uapi/linux/
//!   fuse.h.)
//! - WRITE carries FUSE_WRITE_KILL_SUIDGID when the caller lacks CAP_FSETID. On 6.18 the bare
//!   SETATTR came first; the flag is honoured too, for kernels whose write path leaves the
//!   check to v2 daemons entirely. It costs an fstat of a file that has no setid bits.
//! - A chown of a non-directory always kills the bits: the daemon's own chown of the layer's
//!   file does that in the host kernel, and the recorded owner of `xattr_permissions` does it
//!   in `Union::setattr`.
//! - A truncate carries FATTR_KILL_SUIDGID when the caller lacks CAP_FSETID, which fuser does
//!   not pass on: the daemon asks about the caller's capabilities itself, only for a file that
//!   has one of the bits.
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
/// or hidden, the caller's uid decides: root in the initial namespace keeps the bits. (A
/// kernel service acting with borrowed credentials, such as nfsd, is judged by its own.)
pub(super) fn caller_has_fsetid(req: &Request) -> bool {
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
pub(super) fn mode_without_setid(u: &Union, ino: u64, fh: Option<u64>) -> Result<Option<u32>> {
    let a = u.getattr(ino, fh)?;
    let kill = setid_bits(a.mode);
    if a.kind() != FileType::RegularFile || kill == 0 {
        return Ok(None);
    }
    Ok(Some(a.mode & 0o7777 & !kill))
}
