//! strata-fs: a union filesystem with overlayfs semantics, served through FUSE.
//!
//! Read-only lower layer directories are merged under one writable upper layer. Whiteouts and
//! opaque directories hide lower entries; the first change to a lower file copies it up,
//! atomically, through the work directory. The union logic ([`union::Union`]) is a plain Rust
//! API that needs no FUSE mount; [`fuse`] only translates; [`mount`] mounts it in-process or as
//! a fuse-overlayfs-compatible daemon.
//!
//! ```no_run
//! use strata_fs::options::MountOptions;
//! let opts = MountOptions::parse(&["lowerdir=/l1:/l2,upperdir=/u,workdir=/w"]).unwrap();
//! let guard = strata_fs::mount::spawn(&opts, std::path::Path::new("/mnt")).unwrap();
//! // ... use /mnt; dropping the guard unmounts it.
//! drop(guard);
//! ```
#![deny(missing_docs)]

pub mod copy_up;
pub mod error;
pub mod fuse;
pub mod idmap;
pub mod layer;
pub mod mount;
pub mod options;
pub mod sys;
pub mod tree;
pub mod union;
pub mod whiteout;

pub use error::{Error, SetupError};
pub use union::Union;
