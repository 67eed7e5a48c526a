//! `strata`: containers without kernel overlayfs and without a daemon.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use strata_store::Store;

mod logger;

#[derive(Parser, Debug)]
#[command(
    name = "strata",
    version,
    about = "Layered filesystems and containers, rootless, without kernel overlayfs"
)]
struct Args {
    /// The store root (default: $STRATA_ROOT, /var/lib/strata as root, else
    /// $XDG_DATA_HOME/strata).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
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
    /// Import a rootfs tarball (plain, gzip or zstd), a directory or stdin (-) as an image.
    Import {
        /// FILE, DIR or - for stdin.
        source: String,
        /// NAME[:TAG] for the image.
        name: Option<String>,
        /// The history comment.
        #[arg(short, long)]
        message: Option<String>,
        /// A Dockerfile instruction for the config (CMD, ENTRYPOINT, ENV, WORKDIR, ...).
        #[arg(short, long)]
        change: Vec<String>,
    },
    /// Load images from an OCI layout, oci-archive or docker-archive.
    Load {
        /// The archive or layout directory (default: stdin).
        #[arg(short, long)]
        input: Option<PathBuf>,
        /// Print nothing on success.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Save images to an archive.
    Save {
        /// The archive to write (default: stdout).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// oci-archive or docker-archive.
        #[arg(long, default_value = "docker-archive")]
        format: String,
        /// Images, by name or id.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// List images.
    Images {
        /// Ids only.
        #[arg(short, long)]
        quiet: bool,
        /// table or json (one object per line).
        #[arg(long)]
        format: Option<String>,
    },
    /// Give an image another name.
    Tag {
        /// The image, by name or id.
        source: String,
        /// The new NAME[:TAG].
        target: String,
    },
    /// Remove image names, and images left without one.
    Rmi {
        /// Remove every name of an image given by id, or an image containers use.
        #[arg(short, long)]
        force: bool,
        /// Images, by name or id.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show an image's history.
    History {
        /// Ids only.
        #[arg(short, long)]
        quiet: bool,
        /// table or json (one object per line).
        #[arg(long)]
        format: Option<String>,
        /// Do not truncate ids and commands.
        #[arg(long)]
        no_trunc: bool,
        /// The image.
        image: String,
    },
    /// Print images' details as JSON.
    Inspect {
        /// Images, by name or id.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Manage images.
    Image {
        #[command(subcommand)]
        cmd: ImageCmd,
    },
    /// Store-wide information.
    System {
        #[command(subcommand)]
        cmd: SystemCmd,
    },
}

#[derive(Subcommand, Debug)]
enum ImageCmd {
    /// Remove untagged images no container uses, and unreferenced data.
    Prune {
        /// Accepted for docker compatibility (strata does not ask).
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum SystemCmd {
    /// Show space used by images, shared and unique.
    Df {
        /// Per image.
        #[arg(short, long)]
        verbose: bool,
        /// table or json (one object per image and line).
        #[arg(long)]
        format: Option<String>,
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
        cmd => {
            logger::init(false);
            let store = Store::open(args.root.unwrap_or_else(Store::default_root))?;
            image_verb(&store, cmd)
        }
    }
}

fn image_verb(store: &Store, cmd: Cmd) -> Result<()> {
    use strata_cli::image_cmd::{self as ic, Format};
    match cmd {
        Cmd::Import {
            source,
            name,
            message,
            change,
        } => ic::import(store, &source, name.as_deref(), message, change),
        Cmd::Load { input, quiet } => ic::load(store, input.as_deref(), quiet),
        Cmd::Save {
            output,
            format,
            images,
        } => ic::save(store, output.as_deref(), &format, &images),
        Cmd::Images { quiet, format } => {
            ic::images(store, Format::from_flags(quiet, format.as_deref())?)
        }
        Cmd::Tag { source, target } => {
            store.tag(&source, &target)?;
            Ok(())
        }
        Cmd::Rmi { force, images } => ic::rmi(store, &images, force),
        Cmd::History {
            quiet,
            format,
            no_trunc,
            image,
        } => ic::history(
            store,
            &image,
            Format::from_flags(quiet, format.as_deref())?,
            no_trunc,
        ),
        Cmd::Inspect { images } => ic::inspect(store, &images),
        Cmd::Image {
            cmd: ImageCmd::Prune { .. },
        } => ic::prune(store),
        Cmd::System {
            cmd: SystemCmd::Df { verbose, format },
        } => ic::df(
            store,
            verbose,
            Format::from_flags(false, format.as_deref())?,
        ),
        Cmd::Mount { .. } | Cmd::Umount { .. } => unreachable!("handled in run"),
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
