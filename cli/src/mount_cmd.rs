//! `strata mount -o OPTS MNT`, `strata-overlay -o OPTS MNT`, and `strata umount MNT`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use strata_fs::options::{Invocation, MountOptions};

/// Mounts as the invocation says: daemonized unless `-f`.
pub fn run_invocation(inv: &Invocation) -> Result<()> {
    let Some(mnt) = &inv.mountpoint else {
        bail!("no mountpoint given (usage: -o lowerdir=...,upperdir=...,workdir=... MOUNTPOINT)");
    };
    let opts = MountOptions::parse(&inv.option_groups)?;
    for w in &opts.warnings {
        eprintln!("{w}");
    }
    if inv.foreground {
        strata_fs::mount::serve_foreground(&opts, mnt)?;
    } else {
        strata_fs::mount::daemonize(&opts, mnt)?;
    }
    Ok(())
}

/// Unmounts a strata mount; the daemon then exits by itself.
pub fn umount(mnt: &Path) -> Result<()> {
    let direct = strata_fs::mount::unmount(mnt);
    if direct.is_ok() {
        return Ok(());
    }
    let st = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(mnt)
        .status()
        .context("running fusermount3")?;
    if !st.success() {
        bail!("cannot unmount {}: {}", mnt.display(), direct.unwrap_err());
    }
    Ok(())
}
