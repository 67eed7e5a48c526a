//! `strata`: containers without kernel overlayfs and without a daemon.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod logger;

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "Layered filesystems and containers, rootless, without kernel overlayfs"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Mount a union of layer directories (fuse-overlayfs options).
    Mount {
        /// Options, as fuse-overlayfs takes them: lowerdir=A:B,upperdir=U,workdir=W,...
        #[arg(short = 'o', action = clap::ArgAction::Append)]
        options: Vec<String>,
        /// A lower layer (repeat; the first is the topmost).
        #[arg(long = "lower")]
        lower: Vec<PathBuf>,
        /// The writable upper layer.
        #[arg(long = "upper")]
        upper: Option<PathBuf>,
        /// The work directory (same filesystem as the upper).
        #[arg(long = "work")]
        work: Option<PathBuf>,
        /// Stay in the foreground.
        #[arg(short = 'f')]
        foreground: bool,
        /// Debug logging (implies -f).
        #[arg(short = 'd')]
        debug: bool,
        /// Where to mount.
        mountpoint: PathBuf,
    },
    /// Unmount a strata mount.
    Umount {
        /// The mountpoint.
        mountpoint: PathBuf,
    },
}

fn escape(p: &std::path::Path) -> String {
    p.to_string_lossy()
        .replace('\\', "\\\\")
        .replace(':', "\\:")
}

fn run(args: Args) -> Result<()> {
    match args.cmd {
        Cmd::Mount {
            mut options,
            lower,
            upper,
            work,
            foreground,
            debug,
            mountpoint,
        } => {
            if !lower.is_empty() {
                let l: Vec<String> = lower.iter().map(|p| escape(p)).collect();
                options.push(format!("lowerdir={}", l.join(":")));
            }
            if let Some(u) = upper {
                options.push(format!("upperdir={}", u.display()));
            }
            if let Some(w) = work {
                options.push(format!("workdir={}", w.display()));
            }
            logger::init(debug);
            let mut argv: Vec<OsString> = Vec::new();
            for o in options {
                argv.push("-o".into());
                argv.push(o.into());
            }
            if foreground || debug {
                argv.push("-f".into());
            }
            argv.push(mountpoint.into_os_string());
            let inv = strata_fs::options::Invocation::parse(argv)?;
            strata_cli::mount_cmd::run_invocation(&inv)
        }
        Cmd::Umount { mountpoint } => strata_cli::mount_cmd::umount(&mountpoint),
    }
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata: {e:#}");
            ExitCode::from(1)
        }
    }
}
