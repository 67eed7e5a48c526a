//! Errors of the image store.
//!
//! Every variant names what was wrong: the archive entry, the blob, the path (STYLE.md habit 7).
//! The cause is in the message, in a field named `error` rather than `source` (thiserror makes
//! a `source` field the error's source, and `{:#}` would then print it twice).

use std::io;
use std::path::PathBuf;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation on a store path or an input path failed.
    #[error("{op} {}: {error}", path.display())]
    Io {
        /// What was being done, e.g. "write blob".
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        error: io::Error,
    },
    /// A tar entry was refused (path escape, symlink traversal, bad link, bad type).
    #[error("layer {layer}: entry {entry:?}: {why}")]
    Entry {
        /// The layer (diff_id, blob name or input file) being unpacked.
        layer: String,
        /// The entry's name as the archive has it.
        entry: String,
        /// Why it was refused.
        why: String,
    },
    /// Creating an extracted entry failed (e.g. ENOSPC).
    #[error("layer {layer}: entry {entry:?}: {op}: {error}")]
    Extract {
        /// The layer being unpacked.
        layer: String,
        /// The entry's name.
        entry: String,
        /// The step that failed.
        op: &'static str,
        /// The OS error.
        error: io::Error,
    },
    /// The archive or a layer stream could not be read: truncated or corrupt.
    #[error("{what} is truncated or corrupt: {error}")]
    Corrupt {
        /// Which archive, blob or layer.
        what: String,
        /// What the decoder said.
        error: io::Error,
    },
    /// Content did not hash to the digest it was announced with.
    #[error("{what}: digest mismatch: expected {expected}, found {found}")]
    DigestMismatch {
        /// Which blob.
        what: String,
        /// The announced digest.
        expected: String,
        /// The digest of the content.
        found: String,
    },
    /// Content did not have the size it was announced with.
    #[error("{what}: size mismatch: expected {expected} bytes, found {found}")]
    SizeMismatch {
        /// Which blob.
        what: String,
        /// The announced size.
        expected: u64,
        /// The size of the content.
        found: u64,
    },
    /// A layer's uncompressed content does not match `config.rootfs.diff_ids`.
    #[error("{what}: diff_id mismatch: config says {expected}, content is {found}")]
    DiffIdMismatch {
        /// Which layer.
        what: String,
        /// The diff_id in the config.
        expected: String,
        /// The sha256 of the uncompressed tar.
        found: String,
    },
    /// A blob the archive refers to is not in it.
    #[error("{what}: missing blob {path}")]
    MissingBlob {
        /// What referred to it.
        what: String,
        /// Where it was looked for.
        path: String,
    },
    /// The archive is well-formed but describes something this store does not support.
    #[error("{0}")]
    Unsupported(String),
    /// The archive's metadata (index, manifest, config) is invalid.
    #[error("{what}: {why}")]
    Invalid {
        /// Which document.
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// An image name could not be parsed.
    #[error("invalid image name {name:?}: {why}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What rule it breaks.
        why: &'static str,
    },
    /// A digest string could not be parsed.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex>")]
    InvalidDigest(String),
    /// No image matches the reference.
    #[error("image not known: {0}")]
    NotFound(String),
    /// An id prefix matches several images.
    #[error("image id prefix {prefix:?} is ambiguous: it matches {}", candidates.join(", "))]
    Ambiguous {
        /// The prefix as given.
        prefix: String,
        /// The full ids it matches.
        candidates: Vec<String>,
    },
    /// An operation is refused because the image is in use, or has several names.
    #[error("{0}")]
    Conflict(String),
    /// A store record could not be (de)serialized.
    #[error("store record {}: {error}", path.display())]
    Record {
        /// The record's path.
        path: PathBuf,
        /// The serde error.
        error: serde_json::Error,
    },
}

/// `Result` of the store.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path` while doing `op`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, error: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            error,
        }
    }

    /// An invalid-document error.
    pub(crate) fn invalid(what: impl Into<String>, why: impl Into<String>) -> Self {
        Error::Invalid {
            what: what.into(),
            why: why.into(),
        }
    }
}

/// Adds an operation and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e.into()))
    }
}
