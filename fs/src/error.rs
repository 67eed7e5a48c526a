//! Errors of the union core.
//!
//! The FUSE adapter must send the exact errno to the kernel (STYLE.md habit 2), so the request
//! path carries an [`Errno`] plus the static name of the step that failed. Nothing on that path
//! allocates for an error: negative lookups are among the most frequent requests.
//! Set-up errors ([`SetupError`]) are rare and name the path that was wrong.

use std::path::PathBuf;

pub use rustix::io::Errno;

/// An error from a union operation: the errno that reaches the kernel and the step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {errno}")]
pub struct Error {
    /// The step that failed, e.g. `"copy-up: fsync"`.
    pub op: &'static str,
    /// The errno, exactly as the kernel should see it.
    pub errno: Errno,
}

impl Error {
    /// An error for step `op`.
    pub fn new(op: &'static str, errno: Errno) -> Self {
        Self { op, errno }
    }

    /// The raw errno value for the kernel.
    pub fn errno(&self) -> i32 {
        self.errno.raw_os_error()
    }
}

/// `Result` of the union core.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds the name of the failing step to an `Errno` result.
pub(crate) trait Op<T> {
    fn op(self, op: &'static str) -> Result<T>;
}

impl<T> Op<T> for rustix::io::Result<T> {
    #[inline]
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|errno| Error { op, errno })
    }
}

impl<T> Op<T> for std::io::Result<T> {
    #[inline]
    fn op(self, op: &'static str) -> Result<T> {
        self.map_err(|e| Error {
            op,
            errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
        })
    }
}

/// True when `e` only says that a name is not there (so the next layer is asked).
pub(crate) fn is_absent(e: Errno) -> bool {
    matches!(e, Errno::NOENT | Errno::NOTDIR)
}

/// True when the backing filesystem cannot store what we asked for in this form, so a fallback
/// format is used (a `.wh.` whiteout instead of a char device, a user xattr instead of trusted).
pub(crate) fn is_unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::PERM | Errno::NOTSUP | Errno::INVAL | Errno::ACCESS
    )
}

/// Checks that `path` is an existing directory; the message says what is wrong.
pub(crate) fn require_dir(
    path: &std::path::Path,
) -> std::result::Result<std::fs::Metadata, String> {
    let md = std::fs::metadata(path).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => "does not exist".to_string(),
        _ => e.to_string(),
    })?;
    if !md.is_dir() {
        return Err("is not a directory".into());
    }
    Ok(md)
}

/// Errors met while setting up a mount. Each names what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SetupError {
    /// A mount option could not be parsed.
    #[error("bad mount option {option:?}: {why}")]
    BadOption {
        /// The option as given.
        option: String,
        /// What is wrong with it.
        why: String,
    },
    /// A required option is missing.
    #[error("missing mount option: {0}")]
    MissingOption(&'static str),
    /// A layer directory could not be opened or is not usable.
    #[error("{role} {}: {why}", path.display())]
    Layer {
        /// `lowerdir`, `upperdir` or `workdir`.
        role: &'static str,
        /// The path as given.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Two layer options name the same directory, or one is inside another.
    #[error("{a_role} {} and {b_role} {}: {why}", a.display(), b.display())]
    Overlap {
        /// The first directory's role.
        a_role: &'static str,
        /// The first directory.
        a: PathBuf,
        /// The second directory's role.
        b_role: &'static str,
        /// The second directory.
        b: PathBuf,
        /// How they overlap.
        why: &'static str,
    },
    /// The mountpoint is unusable.
    #[error("mountpoint {}: {why}", path.display())]
    Mountpoint {
        /// The mountpoint.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Mounting failed.
    #[error("cannot mount on {}: {why}", path.display())]
    Mount {
        /// The mountpoint.
        path: PathBuf,
        /// What failed (opening /dev/fuse, mount(2), the FUSE handshake).
        why: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_is_only_noent_and_notdir() {
        assert!(is_absent(Errno::NOENT));
        assert!(is_absent(Errno::NOTDIR));
        assert!(!is_absent(Errno::ACCESS));
        assert!(!is_absent(Errno::NAMETOOLONG));
        assert!(!is_absent(Errno::LOOP));
    }

    #[test]
    fn error_keeps_errno() {
        let e = Err::<(), _>(Errno::NAMETOOLONG).op("lookup").unwrap_err();
        assert_eq!(e.errno(), libc::ENAMETOOLONG);
        assert_eq!(e.op, "lookup");
    }
}
