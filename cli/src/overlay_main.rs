//! `strata-overlay`: a drop-in for `fuse-overlayfs` as containers-storage's `mount_program`.
//! Its argv is exactly fuse-overlayfs's: `strata-overlay -o OPTS MNT`, `-o` repeated or as
//! `-oOPTS`, `-f`, `-d`, `--version`.

use std::process::ExitCode;

mod logger;

fn main() -> ExitCode {
    let inv = match strata_fs::options::Invocation::parse(std::env::args_os().skip(1)) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("strata-overlay: {e}");
            return ExitCode::from(1);
        }
    };
    if inv.version {
        println!(
            "strata-overlay {} (fuse-overlayfs compatible)",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    if inv.help {
        println!("usage: strata-overlay [-f] [-d] -o lowerdir=A:B[,upperdir=U,workdir=W][,...] MOUNTPOINT");
        return ExitCode::SUCCESS;
    }
    logger::init(inv.debug);
    match strata_cli::mount_cmd::run_invocation(&inv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata-overlay: {e:#}");
            ExitCode::from(1)
        }
    }
}
