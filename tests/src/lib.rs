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

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs;
use std::hash::Hasher;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

pub use tempfile;

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
            eprintln!("SKIP {need}: {why}");
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
            let b = bin("strata-overlay");
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

/// Name of the unprivileged account the rootless tests run as.
pub const UNPRIV_USER: &str = "strata-test";

/// uid and gid of [`UNPRIV_USER`], if it exists.
pub fn unpriv_ids() -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == UNPRIV_USER)
            .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
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
    let out = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--clear-groups", "unshare", "-Urm", "true"])
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
        let mut cmd = Command::new(bin("strata-overlay"));
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
            mount_type(&self.mnt).as_deref(),
            Some("fuse.strata"),
            "mount program returned 0 but {} is not a fuse.strata mount",
            self.mnt.display()
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
        // Plain umount(2): a busy mount here means the test still holds a file open in it.
        rustix::mount::unmount(&self.mnt, rustix::mount::UnmountFlags::empty()).unwrap_or_else(
            |e| {
                panic!(
                    "umount {}: {e} (does the test still hold a file open?)",
                    self.mnt.display()
                )
            },
        );
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

/// `base/rel`; `rel` "" or "." is `base` itself.
pub fn join(base: &Path, rel: &str) -> PathBuf {
    if rel.is_empty() || rel == "." {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

// ---------------------------------------------------------------------------------------------
// Small file-system helpers (all panic with the path on failure unless they return Result)
// ---------------------------------------------------------------------------------------------

/// Writes `data` to `p`, creating parent directories.
#[track_caller]
pub fn write(p: impl AsRef<Path>, data: impl AsRef<[u8]>) {
    let p = p.as_ref();
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", d.display()));
    }
    fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

/// Reads `p` whole.
#[track_caller]
pub fn read(p: impl AsRef<Path>) -> Vec<u8> {
    let p = p.as_ref();
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Reads `p` as UTF-8.
#[track_caller]
pub fn read_str(p: impl AsRef<Path>) -> String {
    String::from_utf8(read(p)).expect("utf-8")
}

/// Appends `data` to `p` (O_APPEND, no create).
#[track_caller]
pub fn append(p: impl AsRef<Path>, data: impl AsRef<[u8]>) {
    let p = p.as_ref();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(p)
        .unwrap_or_else(|e| panic!("open {} for append: {e}", p.display()));
    f.write_all(data.as_ref())
        .unwrap_or_else(|e| panic!("append to {}: {e}", p.display()));
}

/// `mkdir -p`.
#[track_caller]
pub fn mkdirs(p: impl AsRef<Path>) {
    let p = p.as_ref();
    fs::create_dir_all(p).unwrap_or_else(|e| panic!("mkdir -p {}: {e}", p.display()));
}

/// lstat.
#[track_caller]
pub fn lstat(p: impl AsRef<Path>) -> fs::Metadata {
    let p = p.as_ref();
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
}

/// The errno of a failed call; panics (naming `what`) when the call succeeded.
#[track_caller]
pub fn errno<T: fmt::Debug>(what: &str, r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("{what}: error without errno: {e}")),
    }
}

/// rustix result as std::io.
pub fn rx<T>(r: rustix::io::Result<T>) -> io::Result<T> {
    r.map_err(io::Error::from)
}

/// chmod (follows symlinks).
#[track_caller]
pub fn chmod(p: impl AsRef<Path>, mode: u32) {
    let p = p.as_ref();
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {:o} {}: {e}", mode, p.display()));
}

/// lchown.
#[track_caller]
pub fn lchown(p: impl AsRef<Path>, uid: u32, gid: u32) {
    let p = p.as_ref();
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        .unwrap_or_else(|e| panic!("lchown {}: {e}", p.display()));
}

/// Sets atime and mtime (seconds, nanoseconds) of `p` itself (no symlink following).
#[track_caller]
pub fn set_times(p: impl AsRef<Path>, atime: (i64, i64), mtime: (i64, i64)) {
    let p = p.as_ref();
    let t = rfs::Timestamps {
        last_access: rfs::Timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1 as _,
        },
        last_modification: rfs::Timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1 as _,
        },
    };
    rfs::utimensat(rfs::CWD, p, &t, AtFlags::SYMLINK_NOFOLLOW)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", p.display()));
}

/// (mtime s, ns) of a metadata.
pub fn mtime(md: &fs::Metadata) -> (i64, i64) {
    (md.mtime(), md.mtime_nsec())
}

/// (atime s, ns) of a metadata.
pub fn atime(md: &fs::Metadata) -> (i64, i64) {
    (md.atime(), md.atime_nsec())
}

/// (ctime s, ns) of a metadata.
pub fn ctime(md: &fs::Metadata) -> (i64, i64) {
    (md.ctime(), md.ctime_nsec())
}

/// lsetxattr.
#[track_caller]
pub fn xattr_set(p: impl AsRef<Path>, name: &str, value: &[u8]) {
    let p = p.as_ref();
    rfs::lsetxattr(p, name, value, rfs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("lsetxattr {name} on {}: {e}", p.display()));
}

/// lgetxattr, whole value.
pub fn xattr_get(p: impl AsRef<Path>, name: &str) -> io::Result<Vec<u8>> {
    let p = p.as_ref();
    let n = rx(rfs::lgetxattr_query(p, name))?;
    let mut buf = vec![0u8; n];
    let got = rx(rfs::lgetxattr(p, name, &mut buf[..]))?;
    buf.truncate(got);
    Ok(buf)
}

/// llistxattr, as names.
pub fn xattr_list(p: impl AsRef<Path>) -> io::Result<BTreeSet<String>> {
    let p = p.as_ref();
    let n = rx(rfs::llistxattr_query(p))?;
    let mut buf = vec![0u8; n];
    let got = rx(rfs::llistxattr(p, &mut buf[..]))?;
    Ok(buf[..got]
        .split(|b| *b == 0)
        .filter(|x| !x.is_empty())
        .map(|x| String::from_utf8_lossy(x).into_owned())
        .collect())
}

/// mknod of a char 0/0 device: a kernel-format whiteout.
#[track_caller]
pub fn mk_char_whiteout(p: impl AsRef<Path>) {
    let p = p.as_ref();
    rfs::mknodat(rfs::CWD, p, FileType::CharacterDevice, Mode::empty(), 0)
        .unwrap_or_else(|e| panic!("mknod {}: {e}", p.display()));
}

/// True when `md` is a char 0/0 device.
pub fn is_char_whiteout(md: &fs::Metadata) -> bool {
    md.mode() & libc::S_IFMT == libc::S_IFCHR && md.rdev() == 0
}

/// A directory entry as getdents reports it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ent {
    /// Name.
    pub name: String,
    /// d_ino.
    pub ino: u64,
    /// d_type as a letter: `d`, `f`, `l`, `c`, `b`, `p`, `s`, `?`.
    pub kind: char,
}

fn kind_letter(ft: FileType) -> char {
    match ft {
        FileType::Directory => 'd',
        FileType::RegularFile => 'f',
        FileType::Symlink => 'l',
        FileType::CharacterDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
        _ => '?',
    }
}

/// The type letter of a mode.
pub fn mode_letter(mode: u32) -> char {
    kind_letter(FileType::from_raw_mode(mode))
}

/// Every entry of directory `p`, `.` and `..` included, sorted by name (getdents, not
/// std::fs::read_dir, which hides the dots).
pub fn readdir(p: impl AsRef<Path>) -> io::Result<Vec<Ent>> {
    readdir_flags(p.as_ref(), OFlags::empty())
}

fn readdir_flags(p: &Path, extra: OFlags) -> io::Result<Vec<Ent>> {
    let fd = rx(rfs::open(
        p,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | extra,
        Mode::empty(),
    ))?;
    readdir_fd(fd)
}

fn readdir_fd(fd: OwnedFd) -> io::Result<Vec<Ent>> {
    let mut d = rx(rfs::Dir::new(fd))?;
    let mut v = Vec::new();
    while let Some(e) = d.read() {
        let e = rx(e)?;
        v.push(Ent {
            name: String::from_utf8_lossy(e.file_name().to_bytes()).into_owned(),
            ino: e.ino(),
            kind: kind_letter(e.file_type()),
        });
    }
    v.sort();
    Ok(v)
}

/// Names in directory `p`, with `.` and `..`, sorted.
#[track_caller]
pub fn names(p: impl AsRef<Path>) -> Vec<String> {
    let p = p.as_ref();
    readdir(p)
        .unwrap_or_else(|e| panic!("readdir {}: {e}", p.display()))
        .into_iter()
        .map(|e| e.name)
        .collect()
}

/// `names` for a literal list, sorted, for comparisons.
pub fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// Tree snapshots
// ---------------------------------------------------------------------------------------------

/// A stable 64-bit hash of some bytes (FNV-1a).
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(data);
    h.finish()
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Everything recorded about one object of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    /// Mode with type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size.
    pub size: u64,
    /// Link count.
    pub nlink: u64,
    /// Inode number.
    pub ino: u64,
    /// Device number of device nodes.
    pub rdev: u64,
    /// mtime.
    pub mtime: (i64, i64),
    /// atime (0 for symlinks: reading a symlink's target touches its atime).
    pub atime: (i64, i64),
    /// ctime.
    pub ctime: (i64, i64),
    /// Hash of the contents (regular files).
    pub content: Option<u64>,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Every xattr with its value.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

fn open_noatime(p: &Path, dir: bool) -> io::Result<OwnedFd> {
    let mut fl = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME;
    if dir {
        fl |= OFlags::DIRECTORY;
    }
    rx(rfs::open(p, fl, Mode::empty()))
}

/// Records every object under `root` (root included, as ""), without changing any atime:
/// files and directories are read with O_NOATIME.
pub fn snapshot(root: &Path) -> BTreeMap<String, Snap> {
    let mut out = BTreeMap::new();
    snap_walk(root, "", &mut out);
    out
}

fn snap_walk(root: &Path, rel: &str, out: &mut BTreeMap<String, Snap>) {
    let p = join(root, rel);
    let md = lstat(&p);
    let kind = mode_letter(md.mode());
    let mut content = None;
    let mut target = None;
    let mut children = Vec::new();
    match kind {
        'f' => {
            let fd =
                open_noatime(&p, false).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
            let mut f = fs::File::from(fd);
            let mut data = Vec::new();
            f.read_to_end(&mut data)
                .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            content = Some(hash_bytes(&data));
        }
        'l' => {
            target = Some(
                fs::read_link(&p)
                    .expect("readlink")
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        }
        'd' => {
            let fd = open_noatime(&p, true).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
            children = readdir_fd(fd).unwrap_or_else(|e| panic!("readdir {}: {e}", p.display()));
        }
        _ => {}
    }
    let mut xattrs = BTreeMap::new();
    for n in xattr_list(&p).unwrap_or_default() {
        xattrs.insert(n.clone(), xattr_get(&p, &n).unwrap_or_default());
    }
    // Stat again after reading: for symlinks readlink may have touched atime (recorded as 0).
    let md2 = lstat(&p);
    out.insert(
        rel.to_string(),
        Snap {
            mode: md2.mode(),
            uid: md2.uid(),
            gid: md2.gid(),
            size: md2.size(),
            nlink: md2.nlink(),
            ino: md2.ino(),
            rdev: md2.rdev(),
            mtime: mtime(&md2),
            atime: if kind == 'l' { (0, 0) } else { atime(&md2) },
            ctime: ctime(&md2),
            content,
            target,
            xattrs,
        },
    );
    for c in children {
        if c.name == "." || c.name == ".." {
            continue;
        }
        let r = if rel.is_empty() {
            c.name.clone()
        } else {
            format!("{rel}/{}", c.name)
        };
        snap_walk(root, &r, out);
    }
}

/// Asserts two snapshots are equal, listing every difference.
#[track_caller]
pub fn assert_same_snapshot(
    what: &str,
    before: &BTreeMap<String, Snap>,
    after: &BTreeMap<String, Snap>,
) {
    let mut diffs = Vec::new();
    for (k, b) in before {
        match after.get(k) {
            None => diffs.push(format!("{k:?}: removed")),
            Some(a) if a != b => diffs.push(format!("{k:?}: before {b:?}\n      after  {a:?}")),
            _ => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        diffs.push(format!("{k:?}: added"));
    }
    assert!(
        diffs.is_empty(),
        "{what} changed:\n  {}",
        diffs.join("\n  ")
    );
}

/// Sets the atime of every non-symlink object under `root` to 2001-01-01, so that any read
/// without O_NOATIME afterwards visibly moves it (relatime updates atimes older than a day).
pub fn age_atimes(root: &Path) {
    for (rel, s) in snapshot(root) {
        if mode_letter(s.mode) == 'l' {
            continue;
        }
        set_times(join(root, &rel), (978_307_200, 0), s.mtime);
    }
}

/// A readable description of every object under `root` as a user of the mount sees it:
/// type, permissions, owner, size, link count (non-directories), mtime (non-directories),
/// contents hash, symlink target, device number. Keys are relative paths ("" is the root).
/// Used to compare two mounts of the same layers.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    tree_walk(root, "", &mut out);
    out
}

fn tree_walk(root: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
    let p = join(root, rel);
    let md = lstat(&p);
    let k = mode_letter(md.mode());
    let mut desc = format!("{k} {:04o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid());
    match k {
        'f' => {
            let data = read(&p);
            desc += &format!(
                " size={} nlink={} mtime={:?} h={:016x}",
                md.size(),
                md.nlink(),
                mtime(&md),
                hash_bytes(&data)
            );
        }
        'l' => desc += &format!(" -> {}", fs::read_link(&p).expect("readlink").display()),
        'c' | 'b' => {
            desc += &format!(
                " rdev={}:{}",
                libc::major(md.rdev()),
                libc::minor(md.rdev())
            )
        }
        _ => {}
    }
    let mut x: Vec<String> = xattr_list(&p)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with("user."))
        .collect();
    x.sort();
    for n in x {
        desc += &format!(
            " {n}={:?}",
            String::from_utf8_lossy(&xattr_get(&p, &n).unwrap_or_default())
        );
    }
    out.insert(rel.to_string(), desc);
    if k == 'd' {
        for c in names(&p) {
            if c == "." || c == ".." {
                continue;
            }
            let r = if rel.is_empty() {
                c
            } else {
                format!("{rel}/{c}")
            };
            tree_walk(root, &r, out);
        }
    }
}

/// Asserts two trees are equal, listing every difference.
#[track_caller]
pub fn assert_same_tree(what: &str, a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) {
    let mut diffs = Vec::new();
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => diffs.push(format!("{k:?}:\n      left  {x:?}\n      right {y:?}")),
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: trees differ:\n  {}",
        diffs.join("\n  ")
    );
}

/// A CString of a path (for libc calls).
pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

/// An OsStr of raw bytes.
pub fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}
