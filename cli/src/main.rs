//! `strata`: containers without kernel overlayfs and without a daemon.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use clap::{Parser, Subcommand};
use strata_cli::view_cmd;
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
    /// Mount an image (read-only, as of a layer, writable, or one layer's changes), or a union
    /// of layer directories given with fuse-overlayfs options.
    #[command(
        override_usage = "strata mount [--layer N] [--writable [--keep]] IMAGE [MNT]\n       \
                          strata mount --view diff IMAGE[@N]|WRITABLE_MNT [MNT]\n       \
                          strata mount -o lowerdir=A:B,upperdir=U,workdir=W MNT"
    )]
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
        /// The image as it was after layer N (1 = the base layer).
        #[arg(long, value_name = "N")]
        layer: Option<usize>,
        /// Add a scratch upper layer, removed by `strata umount` (unless --keep).
        #[arg(long)]
        writable: bool,
        /// Keep the scratch upper after `strata umount`, and print its path.
        #[arg(long)]
        keep: bool,
        /// union (the merged image) or diff (only what one layer changed).
        #[arg(long, default_value = "union")]
        view: String,
        /// IMAGE [MNT] for an image; MNT for -o/--lower. Without MNT a temp dir is made and
        /// printed.
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<OsString>,
    },
    /// Unmount a strata mount (and release what `strata mount IMAGE` took for it).
    Umount {
        /// The mountpoint.
        mountpoint: PathBuf,
    },
    /// Show where a path comes from: which layer supplies it, whether it was copied up, and
    /// what it hides. PATH on a strata mount, or IMAGE PATH without a mount.
    Which {
        /// PATH, or IMAGE PATH.
        #[arg(num_args = 1..=2, required = true)]
        args: Vec<OsString>,
    },
    /// One row per layer of an image: digest, size, what it added, modified and deleted.
    Layers {
        /// table or json (one object per line).
        #[arg(long)]
        format: Option<String>,
        /// The image.
        image: String,
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

fn run(args: Args) -> Result<()> {
    let root = args.root.unwrap_or_else(Store::default_root);
    match args.cmd {
        Cmd::Mount {
            mut options,
            lower,
            upper,
            work,
            foreground,
            debug,
            layer,
            writable,
            keep,
            view,
            mut args,
        } => {
            let view = view_cmd::View::parse(&view)?;
            if options.is_empty() && lower.is_empty() {
                if upper.is_some() || work.is_some() || foreground || debug {
                    bail!("--upper, --work, -f and -d go with -o lowerdir=... or --lower");
                }
                logger::init(false);
                let store = Store::open(root)?;
                let image = args.remove(0);
                let image = image
                    .into_string()
                    .map_err(|i| anyhow!("{}: not a valid image name", i.to_string_lossy()))?;
                let req = view_cmd::MountRequest {
                    image,
                    mountpoint: args.pop().map(PathBuf::from),
                    layer,
                    writable,
                    keep,
                    view,
                };
                return view_cmd::mount_image(&store, &req);
            }
            if layer.is_some() || writable || keep || view != view_cmd::View::Union {
                bail!(
                    "--layer, --writable, --keep and --view apply to an image, not to -o/--lower"
                );
            }
            if args.len() != 1 {
                bail!("give one MOUNTPOINT after -o lowerdir=... (or --lower)");
            }
            if !lower.is_empty() {
                let l: Vec<String> = lower
                    .iter()
                    .map(|p| view_cmd::escape_lower(p))
                    .collect::<Result<_>>()?;
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
            argv.push(args.remove(0));
            let inv = strata_fs::options::Invocation::parse(argv)?;
            strata_cli::mount_cmd::run_invocation(&inv)
        }
        Cmd::Umount { mountpoint } => {
            let mnt = view_cmd::canonical_mountpoint(&mountpoint);
            if let Err(e) = strata_cli::mount_cmd::umount(&mnt) {
                // A mount that is already gone still has its record, lease and scratch layer
                // to release; anything else is an error.
                if view_cmd::is_mounted(&mnt) || !view_cmd::has_record(&root, &mnt) {
                    return Err(e);
                }
            }
            view_cmd::after_umount(&root, &mnt)
        }
        Cmd::Which { mut args } => {
            logger::init(false);
            if args.len() == 1 {
                let store = root
                    .join("refs")
                    .exists()
                    .then(|| Store::open(&root))
                    .transpose()?;
                return view_cmd::which_mounted(store.as_ref(), Path::new(&args[0]));
            }
            let path = args.pop().unwrap_or_default();
            let image = args.remove(0);
            let store = Store::open(root)?;
            view_cmd::which_image(&store, &image.to_string_lossy(), &path.to_string_lossy())
        }
        Cmd::Layers { format, image } => {
            logger::init(false);
            let store = Store::open(root)?;
            let json = match format.as_deref() {
                None | Some("table") => false,
                Some("json") => true,
                Some(f) => bail!("unknown format {f:?}: expected table or json"),
            };
            view_cmd::layers(&store, &image, json)
        }
        cmd => {
            logger::init(false);
            let store = Store::open(root)?;
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
        Cmd::Mount { .. } | Cmd::Umount { .. } | Cmd::Which { .. } | Cmd::Layers { .. } => {
            unreachable!("handled in run")
        }
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
