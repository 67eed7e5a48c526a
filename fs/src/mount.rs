//! Mounting: in-process (a guard that unmounts on drop) and as a fuse-overlayfs-compatible
//! daemon (mount, fork, the parent exits 0 once the mount is live, the child serves until the
//! filesystem is unmounted). See reference/mount-program.md §2 for what podman relies on.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Config as FuseConfig, MountOption, Session, SessionACL};
use rustix::fs::{Mode, OFlags};
use rustix::mount::{MountFlags, UnmountFlags};

use crate::error::SetupError;
use crate::fuse::StrataFs;
use crate::layer::LayerStack;
use crate::options::MountOptions;
use crate::sys;
use crate::union::{Config, Union};

/// The filesystem type shows as `fuse.strata` in /proc/mounts (podman checks for `fuse.*`).
pub const SUBTYPE: &str = "strata";

/// Raises the soft RLIMIT_NOFILE to the hard one. The daemon holds an fd per open file of the
/// container, plus its directory fd cache; the soft limit is often 1024 while the hard one is
/// far higher (fuse-overlayfs raises it the same way). Failure leaves the limit as it was.
fn raise_nofile_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current != l.maximum {
        l.current = l.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, l) {
            log::debug!("cannot raise RLIMIT_NOFILE: {e}");
        }
    }
}

/// Builds the union for `opts`, opening (and checking) every layer now.
pub fn build_union(opts: &MountOptions) -> Result<Arc<Union>, SetupError> {
    raise_nofile_limit();
    let stack = LayerStack::open(opts)?;
    let cfg = Config {
        volatile: opts.volatile,
        uid_map: opts.uid_map.clone(),
        gid_map: opts.gid_map.clone(),
        squash_uid: opts.squash_uid,
        squash_gid: opts.squash_gid,
        xattr_permissions: opts.xattr_permissions,
        diff: opts.diff_view,
        provenance: opts.provenance,
        metacopy: opts.metacopy,
        max_nodes: opts.max_inodes,
    };
    let u = Union::new(stack, cfg).map_err(|e| SetupError::Mount {
        path: PathBuf::new(),
        why: e.to_string(),
    })?;
    Ok(Arc::new(u))
}

fn check_mountpoint(mnt: &Path) -> Result<PathBuf, SetupError> {
    let err = |why: String| SetupError::Mountpoint {
        path: mnt.to_path_buf(),
        why,
    };
    crate::error::require_dir(mnt).map_err(err)?;
    std::fs::canonicalize(mnt).map_err(|e| err(e.to_string()))
}

fn fuse_config(threads: usize) -> FuseConfig {
    let mut c = FuseConfig::default();
    c.n_threads = Some(threads);
    c.clone_fd = threads > 1;
    c.acl = SessionACL::All;
    c
}

/// Worker threads: one per CPU, at least two (reference/fuse-layer.md §4.4, item 5).
fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .max(2)
}

/// Mounts `u` on `mnt` and completes the FUSE handshake. Single-threaded: the caller may fork
/// afterwards.
fn mount_session(
    u: Arc<Union>,
    mnt: &Path,
    opts: &MountOptions,
) -> Result<Session<StrataFs>, SetupError> {
    let mnt = check_mountpoint(mnt)?;
    let fail = |why: String| SetupError::Mount {
        path: mnt.clone(),
        why,
    };
    // The kernel has already applied the caller's umask to every mode it sends (we do not ask
    // for FUSE_DONT_MASK); the daemon's own umask must not strip bits a second time.
    rustix::process::umask(Mode::empty());
    let fs = StrataFs::new(u.clone()).with_passthrough(opts.passthrough);
    if rustix::process::geteuid().is_root() {
        // Root, or root of a user namespace: mount(2) ourselves, so the type carries our
        // subtype and no setuid helper is involved.
        let dev = rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| fail(format!("cannot open /dev/fuse: {e}")))?;
        let data = format!(
            "fd={},rootmode=40000,user_id={},group_id={},default_permissions,allow_other",
            dev.as_raw_fd(),
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw()
        );
        let words = &opts.fuse_words;
        let mut flags = MountFlags::NOATIME;
        if !words.iter().any(|w| w == "dev") {
            flags |= MountFlags::NODEV;
        }
        if words.iter().any(|w| w == "nosuid") {
            flags |= MountFlags::NOSUID;
        }
        if words.iter().any(|w| w == "noexec") {
            flags |= MountFlags::NOEXEC;
        }
        if opts.read_only {
            flags |= MountFlags::RDONLY;
        }
        let fstype = format!("fuse.{SUBTYPE}");
        let source = CString::new(SUBTYPE).unwrap_or_default();
        let data = CString::new(data).unwrap_or_default();
        rustix::mount::mount(
            source.as_c_str(),
            &mnt,
            fstype.as_str(),
            flags,
            Some(data.as_c_str()),
        )
        .map_err(|e| fail(format!("mount(2): {e}")))?;
        let fd: OwnedFd = dev;
        match Session::from_fd(fs, fd, SessionACL::All, fuse_config(threads())) {
            Ok(s) => {
                crate::fuse::install_invalidator(&u, s.notifier());
                crate::fuse::install_pruner(&u, &s);
                Ok(s)
            }
            Err(e) => {
                let _ = rustix::mount::unmount(&mnt, UnmountFlags::DETACH);
                Err(fail(format!("FUSE handshake: {e}")))
            }
        }
    } else {
        // A plain user: fusermount3 (setuid) mounts for us.
        let mut mo = vec![
            MountOption::FSName(SUBTYPE.into()),
            MountOption::Subtype(SUBTYPE.into()),
            MountOption::DefaultPermissions,
            MountOption::NoAtime,
        ];
        if opts.read_only {
            mo.push(MountOption::RO);
        }
        let mut cfg = fuse_config(threads());
        cfg.acl = if opts.fuse_words.iter().any(|w| w == "allow_other") {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        cfg.mount_options = mo;
        let s = Session::new(fs, &mnt, &cfg).map_err(|e| {
            fail(format!(
                "{e} (is /dev/fuse readable and writable, mode 0666?)"
            ))
        })?;
        crate::fuse::install_invalidator(&u, s.notifier());
        crate::fuse::install_pruner(&u, &s);
        Ok(s)
    }
}

/// A mount served by threads of this process; unmounted when dropped.
#[derive(Debug)]
pub struct MountGuard {
    mnt: PathBuf,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl MountGuard {
    /// The mountpoint.
    pub fn path(&self) -> &Path {
        &self.mnt
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.mnt, UnmountFlags::empty())
            .or_else(|_| rustix::mount::unmount(&self.mnt, UnmountFlags::DETACH));
        if rustix::process::geteuid().as_raw() != 0 {
            let _ = std::process::Command::new("fusermount3")
                .arg("-u")
                .arg("-z")
                .arg(&self.mnt)
                .status();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Mounts `opts` on `mnt` and serves it from threads of this process.
pub fn spawn(opts: &MountOptions, mnt: &Path) -> Result<MountGuard, SetupError> {
    let u = build_union(opts)?;
    let s = mount_session(u, mnt, opts)?;
    let mnt = check_mountpoint(mnt)?;
    let thread = std::thread::Builder::new()
        .name("strata-fuse".into())
        .spawn(move || s.run())
        .map_err(|e| SetupError::Mount {
            path: mnt.clone(),
            why: e.to_string(),
        })?;
    Ok(MountGuard {
        mnt,
        thread: Some(thread),
    })
}

/// Mounts and serves in the foreground until the filesystem is unmounted.
pub fn serve_foreground(opts: &MountOptions, mnt: &Path) -> Result<(), SetupError> {
    let u = build_union(opts)?;
    let s = mount_session(u, mnt, opts)?;
    s.run().map_err(|e| SetupError::Mount {
        path: mnt.to_path_buf(),
        why: format!("serving: {e}"),
    })
}

/// The fuse-overlayfs daemon contract: mount, fork; the parent returns (and should exit 0)
/// only once the mount is live; the child calls setsid, closes stdio (podman waits for EOF
/// on the stderr pipe) and serves until the filesystem is unmounted, then exits.
pub fn daemonize(opts: &MountOptions, mnt: &Path) -> Result<(), SetupError> {
    let u = build_union(opts)?;
    let s = mount_session(u, mnt, opts)?;
    // No thread has been started yet: the session only mounted and answered INIT.
    match sys::fork_single_threaded() {
        Err(e) => {
            let _ = rustix::mount::unmount(mnt, UnmountFlags::DETACH);
            Err(SetupError::Mount {
                path: mnt.to_path_buf(),
                why: format!("fork: {e}"),
            })
        }
        Ok(sys::Fork::Parent(_)) => {
            // The child serves the mount now. A session mounted through fusermount3 unmounts
            // when dropped (fuser's Mount guard), so the parent must not drop its copy: it
            // forgets it, and its fds close when it exits a moment later.
            std::mem::forget(s);
            Ok(())
        }
        Ok(sys::Fork::Child) => {
            let _ = rustix::process::setsid();
            let _ = std::env::set_current_dir("/");
            if let Ok(null) =
                rustix::fs::open("/dev/null", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
            {
                let _ = rustix::stdio::dup2_stdin(&null);
                let _ = rustix::stdio::dup2_stdout(&null);
                let _ = rustix::stdio::dup2_stderr(&null);
            }
            let code = match s.run() {
                Ok(()) => 0,
                Err(_) => 1,
            };
            std::process::exit(code)
        }
    }
}

/// umount(2) of `mnt` (works as root and as root of the user namespace that mounted it).
pub fn unmount(mnt: &Path) -> std::io::Result<()> {
    rustix::mount::unmount(mnt, UnmountFlags::empty()).map_err(std::io::Error::from)
}

/// Bytes of a path, for messages.
pub fn display(p: &Path) -> String {
    String::from_utf8_lossy(p.as_os_str().as_bytes()).into_owned()
}
