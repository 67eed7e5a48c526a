//! Helpers for strata's integration tests: real FUSE mounts of the built `strata-overlay`.
//!
//! - [`require`] decides whether the environment can run a test (prints `SKIP need: why` and
//!   returns false), or panics instead when `REQUIRE_PRIVILEGED` is set, so CI never passes by
//!   skipping.
//! - [`Fixture`] makes temp lower/upper/work/mnt directories, mounts them with the built
//!   daemon, and unmounts in `Drop` (umount, lazily if busy), then waits for the daemon to exit.
//! - [`snapshot`] and [`tree`] record whole trees so that tests can compare them exactly.
//!
//! The binaries are not built by these tests: run `cargo build` first (the test script does).
//! They are found in `$STRATA_BIN_DIR`, else `$CARGO_TARGET_DIR/{debug,release}`, else
//! `<workspace>/target/{debug,release}`.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, Mode, OFlags};

mod fsutil;
pub mod oci;
pub mod reference;
mod snapshot;
pub mod store;
pub mod trace;
mod user;

pub use fsutil::*;
pub use snapshot::*;
pub use tempfile;
pub use user::*;

/// How long a mount program may take to return (and close its stdio) before a test fails.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon may take to exit after its filesystem is unmounted.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Environment checks
// ---------------------------------------------------------------------------------------------

/// Something a test needs from the environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Effective uid 0 (mount(2) of FUSE, chown, mknod, trusted xattrs).
    Root,
    /// /dev/fuse can be opened read-write, and the strata binaries are built.
    Fuse,
    /// `unshare -Urm` works (unprivileged user namespaces).
    UserNs,
    /// Kernel overlayfs can be mounted here.
    KernelOverlay,
    /// A non-root user exists (or can be created) that can open /dev/fuse and run unshare -Urm.
    UnprivUser,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Need::Root => "root",
            Need::Fuse => "fuse",
            Need::UserNs => "userns",
            Need::KernelOverlay => "kernel-overlay",
            Need::UnprivUser => "unpriv-user",
        })
    }
}

/// True when `REQUIRE_PRIVILEGED` is set: a missing need is then a failure, not a skip.
pub fn privileged_required() -> bool {
    std::env::var_os("REQUIRE_PRIVILEGED").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Returns true when `need` is met. Otherwise prints `SKIP <need>: <why>` and returns false,
/// or panics when `REQUIRE_PRIVILEGED` is set.
#[track_caller]
pub fn require(need: Need) -> bool {
    match check(need) {
        Ok(()) => true,
        Err(why) => {
            if privileged_required() {
                panic!("REQUIRE_PRIVILEGED is set but {need} is not available: {why}");
            }
            println!("SKIP {need}: {why}");
            false
        }
    }
}

/// `require` for each need in turn; false at the first one missing.
#[track_caller]
pub fn require_all(needs: &[Need]) -> bool {
    needs.iter().all(|n| require(*n))
}

/// What almost every test here needs: root and FUSE.
#[track_caller]
pub fn require_mount() -> bool {
    require_all(&[Need::Root, Need::Fuse])
}

fn cached(
    cell: &'static OnceLock<Result<(), String>>,
    f: fn() -> Result<(), String>,
) -> Result<(), String> {
    cell.get_or_init(f).clone()
}

fn check(need: Need) -> Result<(), String> {
    static FUSE: OnceLock<Result<(), String>> = OnceLock::new();
    static USERNS: OnceLock<Result<(), String>> = OnceLock::new();
    static KOVL: OnceLock<Result<(), String>> = OnceLock::new();
    static UNPRIV: OnceLock<Result<(), String>> = OnceLock::new();
    match need {
        Need::Root => {
            if rustix::process::geteuid().is_root() {
                Ok(())
            } else {
                Err(format!(
                    "not running as root (euid {})",
                    rustix::process::geteuid().as_raw()
                ))
            }
        }
        Need::Fuse => cached(&FUSE, || {
            rfs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| format!("cannot open /dev/fuse read-write: {e}"))?;
            // A missing binary is a build problem, not an environment one: say so loudly.
            let b = mount_program();
            if !b.exists() {
                return Err(format!(
                    "{} is not built (run `cargo build` first)",
                    b.display()
                ));
            }
            Ok(())
        }),
        Need::UserNs => cached(&USERNS, || {
            let out = Command::new("unshare")
                .args(["-Urm", "true"])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run unshare: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "unshare -Urm failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        }),
        Need::KernelOverlay => cached(&KOVL, probe_kernel_overlay),
        Need::UnprivUser => cached(&UNPRIV, probe_unpriv_user),
    }
}

fn probe_kernel_overlay() -> Result<(), String> {
    check(Need::Root)?;
    let fsl = fs::read_to_string("/proc/filesystems").map_err(|e| e.to_string())?;
    if !fsl
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        // It may be a module that loads on first mount; try anyway below.
    }
    let t = tempfile::tempdir().map_err(|e| e.to_string())?;
    for d in ["l", "u", "w", "m"] {
        fs::create_dir(t.path().join(d)).map_err(|e| e.to_string())?;
    }
    let p = |d: &str| t.path().join(d).display().to_string();
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!(
            "lowerdir={},upperdir={},workdir={}",
            p("l"),
            p("u"),
            p("w")
        ))
        .arg(p("m"))
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "mount -t overlay failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let _ = rustix::mount::unmount(t.path().join("m"), rustix::mount::UnmountFlags::DETACH);
    Ok(())
}

fn probe_unpriv_user() -> Result<(), String> {
    check(Need::Root)?;
    if unpriv_ids().is_none() {
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/bin/sh",
                UNPRIV_USER,
            ])
            .output()
            .map_err(|e| format!("no user {UNPRIV_USER} and cannot run useradd: {e}"))?;
        if !out.status.success() && unpriv_ids().is_none() {
            return Err(format!(
                "no user {UNPRIV_USER} and useradd failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    let (uid, gid) = unpriv_ids().ok_or("user vanished after useradd")?;
    let mode = fs::metadata("/dev/fuse")
        .map_err(|e| e.to_string())?
        .permissions()
        .mode();
    if mode & 0o006 != 0o006 {
        return Err(format!(
            "/dev/fuse is mode {:o}: {UNPRIV_USER} cannot open it (setup runs chmod 666 /dev/fuse)",
            mode & 0o777
        ));
    }
    let out = unpriv_command(uid, gid)
        .args(["unshare", "-Urm", "true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run setpriv: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "setpriv ... unshare -Urm as {UNPRIV_USER} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Binaries and processes
// ---------------------------------------------------------------------------------------------

/// The directory that holds the built binaries.
pub fn bin_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("STRATA_BIN_DIR") {
            return PathBuf::from(d);
        }
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { ws.join(t) })
            .unwrap_or_else(|| ws.join("target"));
        let order = if cfg!(debug_assertions) {
            ["debug", "release"]
        } else {
            ["release", "debug"]
        };
        let found = order
            .iter()
            .map(|p| target.join(p))
            .find(|d| d.join("strata-overlay").exists())
            .unwrap_or_else(|| target.join(order[0]));
        warn_if_stale(&ws, &found.join("strata-overlay"));
        found
    })
    .clone()
}

/// Full path of binary `name` (`strata-overlay`, `strata`).
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// The mount program under test: `$STRATA_MOUNT_PROGRAM` if set (e.g. `/usr/bin/fuse-overlayfs`,
/// to run the same tests against the reference implementation), else the built
/// `strata-overlay`.
pub fn mount_program() -> PathBuf {
    std::env::var_os("STRATA_MOUNT_PROGRAM")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin("strata-overlay"))
}

/// The filesystem type the mount program's mounts show: `$STRATA_FSTYPE` if set, else
/// `fuse.strata`.
pub fn fstype() -> String {
    std::env::var("STRATA_FSTYPE").unwrap_or_else(|_| "fuse.strata".into())
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut best = None;
    for e in fs::read_dir(dir).ok()?.flatten() {
        let md = e.metadata().ok()?;
        let t = if md.is_dir() {
            newest_mtime(&e.path())
        } else {
            md.modified().ok()
        };
        best = best.max(t);
    }
    best
}

fn warn_if_stale(ws: &Path, binary: &Path) {
    let Ok(bt) = fs::metadata(binary).and_then(|m| m.modified()) else {
        return;
    };
    let src = ["fs/src", "cli/src"]
        .iter()
        .filter_map(|d| newest_mtime(&ws.join(d)))
        .max();
    if src.is_some_and(|s| s > bt) {
        eprintln!(
            "WARNING: {} is older than the sources in fs/ or cli/: run `cargo build` to test the current code",
            binary.display()
        );
    }
}

/// Runs `cmd` with stdin from /dev/null and stdout/stderr piped, and waits for the process
/// to exit AND for both pipes to reach EOF (as podman's Go `exec.Cmd.Run` does). Panics when
/// that takes longer than `timeout`, saying which of the two did not happen.
pub fn run_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout pipe");
    let mut err = child.stderr.take().expect("stderr pipe");
    let (tx, rx) = std::sync::mpsc::channel();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        let _ = tx.send((1, v));
    });
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        let _ = tx2.send((2, v));
    });
    let deadline = Instant::now() + timeout;
    let (mut stdout, mut stderr) = (None, None);
    while stdout.is_none() || stderr.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((1, v)) => stdout = Some(v),
            Ok((_, v)) => stderr = Some(v),
            Err(_) => {
                let exited = child.try_wait().ok().flatten();
                let _ = child.kill();
                panic!(
                    "{cmd:?}: no EOF on stdout/stderr within {timeout:?} (process {}): a daemon kept the caller's pipes open",
                    match exited {
                        Some(s) => format!("had exited with {s}"),
                        None => "was still running".into(),
                    }
                );
            }
        }
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} closed its pipes but did not exit within {timeout:?} ({left:?} left)");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Output {
        status,
        stdout: stdout.unwrap_or_default(),
        stderr: stderr.unwrap_or_default(),
    }
}

/// The state letter of process `pid` (`R`, `S`, `Z`, …), or None when it is gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &s[s.rfind(')')? + 1..];
    after.trim_start().chars().next()
}

/// True when process `pid` has exited (gone, or a zombie nobody reaped).
pub fn proc_exited(pid: i32) -> bool {
    matches!(proc_state(pid), None | Some('Z') | Some('X'))
}

/// Waits until `pid` has exited; false on timeout.
pub fn wait_exited(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if proc_exited(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    proc_exited(pid)
}

/// Live processes (not this one) whose argv has an argument equal to `arg`: the daemon of a
/// mount has the mountpoint in its argv.
pub fn processes_with_arg(arg: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    let want = arg.as_os_str().as_bytes();
    let mut v = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me || proc_exited(pid) {
            continue;
        }
        let Ok(cmd) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        if cmd.split(|b| *b == 0).any(|a| a == want) {
            v.push(pid);
        }
    }
    v
}

/// Sends SIGKILL to `pid`.
pub fn kill9(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}

// ---------------------------------------------------------------------------------------------
// Mount table
// ---------------------------------------------------------------------------------------------

fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The filesystem type of the mount at exactly `path` in this process's mount table (the
/// last one, if stacked), e.g. `fuse.strata`.
pub fn mount_type(path: &Path) -> Option<String> {
    let want = path.as_os_str().as_bytes();
    let info = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mut found = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        if f.len() < 5 || unescape_mountinfo(f[4]) != want {
            continue;
        }
        let dash = f.iter().position(|x| *x == "-")?;
        found = f.get(dash + 1).map(|s| s.to_string());
    }
    found
}

/// True when something is mounted at exactly `path`.
pub fn is_mounted(path: &Path) -> bool {
    mount_type(path).is_some()
}

/// Plain umount(2) of `path`, retried for up to two seconds while it is busy: in a
/// multi-threaded test process a child forked by another test holds copies of our fds until it
/// execs. Still busy after that means something really holds a file open in the mount.
pub fn unmount_patiently(path: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match rustix::mount::unmount(path, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::BUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Unmounts `path`: umount(2), and MNT_DETACH when busy. Errors are returned, not raised.
pub fn unmount(path: &Path) -> io::Result<()> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH)
                .map_err(io::Error::from)
        }
        Err(e) => Err(e.into()),
    }
}

/// Unmounts `path` when dropped (lazily if busy) and kills what still serves it, so that a
/// failing test never leaves a mount behind. For mounts made outside a [`Fixture`] (kernel
/// overlayfs, tmpfs, a mount program run by hand).
pub struct MountGuard {
    path: PathBuf,
    daemons: Vec<i32>,
    armed: bool,
}

impl MountGuard {
    /// Guards the mount at `path`, remembering the processes that serve it now.
    pub fn new(path: &Path) -> MountGuard {
        MountGuard {
            path: path.to_path_buf(),
            daemons: processes_with_arg(path),
            armed: true,
        }
    }

    /// The processes that served the mount when the guard was made.
    pub fn daemons(&self) -> &[i32] {
        &self.daemons
    }

    /// The test unmounted it itself: do nothing on drop.
    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if is_mounted(&self.path) {
            let _ = unmount(&self.path);
        }
        for pid in &self.daemons {
            if !wait_exited(*pid, EXIT_TIMEOUT) {
                kill9(*pid);
            }
        }
        if is_mounted(&self.path) {
            let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------------

/// Temp lower/upper/work/mnt directories and, once [`Fixture::mount`] ran, a live strata mount.
pub struct Fixture {
    tmp: tempfile::TempDir,
    /// The lower layers, topmost first (the order of `lowerdir=`).
    pub lowers: Vec<PathBuf>,
    /// The upper layer.
    pub upper: PathBuf,
    /// The work directory.
    pub work: PathBuf,
    /// The mountpoint.
    pub mnt: PathBuf,
    /// Extra `-o` items (e.g. `volatile`), added after lowerdir/upperdir/workdir.
    pub opts: Vec<String>,
    /// Environment for the mount program (e.g. `FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT=1`).
    pub env: Vec<(OsString, OsString)>,
    daemons: Vec<i32>,
    mounted: bool,
}

impl Fixture {
    /// `nlowers` empty lower layers, an empty upper, work dir and mountpoint. Not mounted.
    pub fn new(nlowers: usize) -> Fixture {
        let tmp = tempfile::Builder::new()
            .prefix("strata-test-")
            .tempdir()
            .expect("tempdir");
        let root = tmp.path().to_path_buf();
        let lowers: Vec<PathBuf> = (1..=nlowers)
            .map(|i| root.join(format!("lower{i}")))
            .collect();
        for l in &lowers {
            fs::create_dir(l).expect("mkdir lower");
        }
        let upper = root.join("upper");
        let work = root.join("work");
        let mnt = root.join("mnt");
        for d in [&upper, &work, &mnt] {
            fs::create_dir(d).expect("mkdir");
        }
        Fixture {
            tmp,
            lowers,
            upper,
            work,
            mnt,
            opts: Vec::new(),
            env: Vec::new(),
            daemons: Vec::new(),
            mounted: false,
        }
    }

    /// The temp directory that holds everything.
    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// Lower layer `i` (0 is the topmost).
    pub fn lower(&self, i: usize) -> &Path {
        &self.lowers[i]
    }

    /// `rel` in lower layer `i`.
    pub fn l(&self, i: usize, rel: &str) -> PathBuf {
        join(&self.lowers[i], rel)
    }

    /// `rel` in the upper layer.
    pub fn u(&self, rel: &str) -> PathBuf {
        join(&self.upper, rel)
    }

    /// `rel` in the mount.
    pub fn m(&self, rel: &str) -> PathBuf {
        join(&self.mnt, rel)
    }

    /// The `-o` value for this fixture.
    pub fn option_string(&self) -> String {
        let lowers: Vec<String> = self
            .lowers
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut o = format!(
            "lowerdir={},upperdir={},workdir={}",
            lowers.join(":"),
            self.upper.display(),
            self.work.display()
        );
        for x in &self.opts {
            o.push(',');
            o.push_str(x);
        }
        o
    }

    /// Runs the mount program with `-o OPTIONS MNT` and returns its output (mounted or not).
    pub fn try_mount(&mut self) -> Output {
        let mut cmd = Command::new(mount_program());
        cmd.arg("-o").arg(self.option_string()).arg(&self.mnt);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = run_timeout(&mut cmd, MOUNT_TIMEOUT);
        if out.status.success() {
            self.adopt();
        }
        out
    }

    /// Records that the mount is live and finds its daemon(s).
    pub fn adopt(&mut self) {
        self.mounted = true;
        self.daemons = processes_with_arg(&self.mnt);
    }

    /// Mounts; panics (with the program's stderr) when that fails or the mount is not live.
    #[track_caller]
    pub fn mount(&mut self) {
        assert!(!self.mounted, "already mounted");
        let out = self.try_mount();
        assert!(
            out.status.success(),
            "strata-overlay -o {} failed with {}: {}",
            self.option_string(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            mount_type(&self.mnt),
            Some(fstype()),
            "mount program returned 0 but {} is not a {} mount",
            self.mnt.display(),
            fstype()
        );
        assert!(
            !self.daemons.is_empty(),
            "no daemon process found serving {}",
            self.mnt.display()
        );
    }

    /// True while mounted.
    pub fn is_mounted(&self) -> bool {
        self.mounted
    }

    /// The daemon pids found after mounting.
    pub fn daemons(&self) -> &[i32] {
        &self.daemons
    }

    /// Unmounts and waits for the daemon to exit; panics if it does not.
    #[track_caller]
    pub fn umount(&mut self) {
        if !self.mounted {
            return;
        }
        unmount_patiently(&self.mnt).unwrap_or_else(|e| {
            panic!(
                "umount {}: {e} (does the test still hold a file open?)",
                self.mnt.display()
            )
        });
        self.mounted = false;
        for pid in std::mem::take(&mut self.daemons) {
            assert!(
                wait_exited(pid, EXIT_TIMEOUT),
                "daemon {pid} still running {EXIT_TIMEOUT:?} after umount of {}",
                self.mnt.display()
            );
        }
    }

    /// Forgets the mount without unmounting (after a test unmounted it some other way).
    pub fn forget_mount(&mut self) {
        self.mounted = false;
        self.daemons.clear();
    }

    /// Unmounts and mounts again with the same layers.
    #[track_caller]
    pub fn remount(&mut self) {
        self.umount();
        self.mount();
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if !self.mounted {
            return;
        }
        let _ = unmount(&self.mnt);
        let mut stuck = Vec::new();
        for pid in std::mem::take(&mut self.daemons) {
            if !wait_exited(pid, EXIT_TIMEOUT) {
                kill9(pid);
                stuck.push(pid);
            }
        }
        if is_mounted(&self.mnt) {
            let _ = rustix::mount::unmount(&self.mnt, rustix::mount::UnmountFlags::DETACH);
        }
        if !stuck.is_empty() && !std::thread::panicking() {
            panic!("daemon(s) {stuck:?} did not exit within {EXIT_TIMEOUT:?} of umount");
        }
    }
}
