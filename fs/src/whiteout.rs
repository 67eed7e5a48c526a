//! One codec for every whiteout and opaque-directory format.
//!
//! Read, in any layer:
//! - a character device 0/0 named NAME (kernel overlayfs, Documentation/filesystems/overlayfs.rst
//!   "whiteouts and opaque directories");
//! - an entry `.wh.NAME` (AUFS form, used by the OCI image spec layer.md and by containers-storage
//!   when a mount_program is set, reference/mount-program.md §4);
//! - `.wh..wh..opq` inside a directory, and the xattrs `trusted.overlay.opaque`,
//!   `user.overlay.opaque` (kernel `userxattr`) and `user.fuseoverlayfs.opaque` set to `y`.
//!
//! Written: a char 0/0 device and the opaque xattr in the namespace the kernel would use, falling
//! back to `.wh.NAME` / `.wh..wh..opq` where mknod or xattrs are refused.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::{FileType, Stat};

/// Prefix of an AUFS whiteout.
pub const WH_PREFIX: &[u8] = b".wh.";
/// The AUFS opaque marker.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
/// Opaque xattrs that are read (value `y`).
pub const OPAQUE_XATTRS: &[&str] = &[
    "trusted.overlay.opaque",
    "user.overlay.opaque",
    "user.fuseoverlayfs.opaque",
];

/// How this mount writes whiteouts into its upper layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Char device 0/0 and the opaque xattr, as kernel overlayfs writes them.
    Kernel,
    /// `.wh.NAME` files and `.wh..wh..opq`.
    Aufs,
}

/// True when `st` is a kernel whiteout (char device 0/0).
pub fn is_char_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

/// For `.wh.NAME`, NAME; `None` for ordinary names and for the opaque marker.
pub fn wh_target(name: &[u8]) -> Option<&[u8]> {
    if name == OPAQUE_MARKER {
        return None;
    }
    name.strip_prefix(WH_PREFIX).filter(|t| !t.is_empty())
}

/// The `.wh.NAME` entry for NAME, if it fits in NAME_MAX.
pub fn wh_name(name: &OsStr) -> Option<Vec<u8>> {
    let n = name.as_bytes();
    if n.len() + WH_PREFIX.len() > 255 {
        return None;
    }
    let mut v = Vec::with_capacity(n.len() + WH_PREFIX.len());
    v.extend_from_slice(WH_PREFIX);
    v.extend_from_slice(n);
    Some(v)
}

/// True for names that are whiteout bookkeeping and never shown in the union.
pub fn is_reserved(name: &[u8]) -> bool {
    name.starts_with(WH_PREFIX)
}

/// What a name read from a layer directory means to the union.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry<'a> {
    /// An entry of its own (a char 0/0 among them is a whiteout, which only a stat tells).
    Name(&'a [u8]),
    /// `.wh.NAME`: NAME is hidden in the layers below.
    Whiteout(&'a [u8]),
}

/// Classifies a name read from a layer directory; `None` for `.`, `..`, the opaque marker and
/// other `.wh.` bookkeeping, which are never entries.
pub fn classify(name: &[u8]) -> Option<Entry<'_>> {
    if name == b"." || name == b".." || name == OPAQUE_MARKER {
        return None;
    }
    match wh_target(name) {
        Some(t) => Some(Entry::Whiteout(t)),
        None if is_reserved(name) => None,
        None => Some(Entry::Name(name)),
    }
}

/// True when an opaque xattr value means "opaque". `x` (kernel 6.7+) means "has xattr
/// whiteouts inside" and is not opaque.
pub fn opaque_value(v: &[u8]) -> bool {
    v == b"y"
}

/// Xattr names that belong to overlay implementations. They are hidden from listxattr, read as
/// absent, and refused on write, as kernel overlayfs does with its own namespace
/// (`ovl_is_private_xattr`) and fuse-overlayfs with `user.fuseoverlayfs.*`.
pub fn is_private_xattr(name: &[u8]) -> bool {
    const PRIVATE: &[&[u8]] = &[
        b"trusted.overlay.",
        b"user.overlay.",
        b"user.fuseoverlayfs.",
        b"security.fuseoverlayfs.",
        b"user.strata.",
    ];
    PRIVATE.iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wh_names() {
        assert_eq!(wh_target(b".wh.foo"), Some(&b"foo"[..]));
        assert_eq!(wh_target(b".wh..wh..opq"), None);
        assert_eq!(wh_target(b".wh."), None);
        assert_eq!(wh_target(b"foo"), None);
        assert_eq!(wh_name(OsStr::new("a")).unwrap(), b".wh.a");
        assert!(wh_name(OsStr::from_bytes(&[b'x'; 252])).is_none());
        assert!(wh_name(OsStr::from_bytes(&[b'x'; 251])).is_some());
        assert!(is_reserved(b".wh.x") && is_reserved(OPAQUE_MARKER) && !is_reserved(b"wh.x"));
    }

    #[test]
    fn opaque_values() {
        assert!(opaque_value(b"y"));
        assert!(!opaque_value(b"x"));
        assert!(!opaque_value(b"n"));
    }

    #[test]
    fn private_xattrs() {
        assert!(is_private_xattr(b"trusted.overlay.opaque"));
        assert!(is_private_xattr(b"user.overlay.origin"));
        assert!(is_private_xattr(b"user.fuseoverlayfs.opaque"));
        assert!(!is_private_xattr(b"user.foo"));
        assert!(!is_private_xattr(b"security.capability"));
    }

    #[test]
    fn names_classified() {
        assert_eq!(classify(b"."), None);
        assert_eq!(classify(b".wh..wh..opq"), None);
        assert_eq!(classify(b".wh."), None);
        assert_eq!(classify(b".wh.x"), Some(Entry::Whiteout(b"x")));
        assert_eq!(classify(b"x"), Some(Entry::Name(b"x")));
    }
}
