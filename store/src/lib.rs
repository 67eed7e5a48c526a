//! strata-store: the image store.
//!
//! Layers are content-addressed by the sha256 of their uncompressed tar (the diff_id) and
//! unpacked once under `layers/<hex>/`, however many images share them. Images are keyed by
//! the sha256 of their config JSON, as in docker. Names (`[registry/][user/]repo[:tag]`) point
//! at images. The layout and its rules are in DESIGN.md ("store").

pub mod compress;
pub mod digest;
pub mod error;
pub mod extract;
mod fsutil;
pub mod images;
pub mod import;
mod ingest;
pub mod load;
pub mod reference;
pub mod save;
mod source;
pub mod store;
mod tarwrite;
pub mod time;

pub use digest::Digest;
pub use error::{Error, Result};
pub use ingest::Progress;
pub use load::{LoadReport, Loaded};
pub use reference::Name;
pub use store::{ImageRecord, LayerRef, Refs, Store};
