//! The `strata` command line (library part, shared by the `strata` and `strata-overlay`
//! binaries).

pub mod image_cmd;
pub mod mount_cmd;
pub mod output;
pub mod view_cmd;
