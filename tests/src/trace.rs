//! Counting the FUSE requests the kernel sends to one mount, with the `fuse:fuse_request_send`
//! tracepoint (Linux 6.14, fs/fuse/fuse_trace.h) in a private tracefs instance, so tests that
//! run at the same time neither see nor disturb each other's events. A count of requests is a
//! property of the protocol, not a timing: tests assert how many round trips an operation
//! costs (none for a cached stat, one capability check per written file).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::privileged_required;

const TRACEFS: &str = "/sys/kernel/tracing";
const EVENT: &str = "events/fuse/fuse_request_send";

fn available() -> Result<(), String> {
    let root = Path::new(TRACEFS);
    if !root.join("instances").is_dir() {
        // Not mounted yet on some systems: mounting it is harmless (root only).
        let _ = std::process::Command::new("mount")
            .args(["-t", "tracefs", "nodev", TRACEFS])
            .status();
    }
    if !root.join(EVENT).is_dir() {
        return Err(format!(
            "no {TRACEFS}/{EVENT} (tracefs not mounted, or a kernel before 6.14)"
        ));
    }
    Ok(())
}

/// True when requests can be counted. Otherwise prints `SKIP fuse-trace: <why>` and returns
/// false, or panics when `REQUIRE_PRIVILEGED` is set, as `require` does.
#[track_caller]
pub fn require_fuse_trace() -> bool {
    match available() {
        Ok(()) => true,
        Err(why) if privileged_required() => {
            panic!("REQUIRE_PRIVILEGED is set but fuse-trace is not available: {why}")
        }
        Err(why) => {
            println!("SKIP fuse-trace: {why}");
            false
        }
    }
}

/// A private tracefs instance, removed on drop.
struct Instance(PathBuf);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = fs::write(self.0.join(EVENT).join("enable"), "0");
        let _ = fs::remove_dir(&self.0);
    }
}

/// The requests sent to the FUSE mount at `mnt` while `f` runs, counted by opcode name
/// (`"FUSE_GETATTR"`, ...). Panics if tracing cannot be set up (check `require_fuse_trace`).
pub fn count_requests(mnt: &Path, f: impl FnOnce()) -> BTreeMap<String, u64> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "strata-test-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let dir = Path::new(TRACEFS).join("instances").join(name);
    fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
    let inst = Instance(dir);
    // The event's `connection` is the superblock's dev_t in the kernel's encoding (major in
    // the bits above 20, MINORBITS in include/linux/kdev_t.h), not st_dev's.
    let dev = fs::metadata(mnt).expect("stat mount").dev();
    let kdev = (libc::major(dev) << 20) | libc::minor(dev);
    let ev = inst.0.join(EVENT);
    let w = |p: PathBuf, v: &str| {
        fs::write(&p, v).unwrap_or_else(|e| panic!("write {v} to {}: {e}", p.display()))
    };
    w(inst.0.join("buffer_size_kb"), "8192");
    w(ev.join("filter"), &format!("connection == {kdev}"));
    w(ev.join("enable"), "1");
    f();
    w(ev.join("enable"), "0");
    let text = fs::read_to_string(inst.0.join("trace")).expect("read trace");
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        // "... opcode 22 (FUSE_GETXATTR) len 72"
        if let Some(op) = line
            .split_once(" (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(op, _)| op)
        {
            *counts.entry(op.to_string()).or_insert(0) += 1;
        }
    }
    counts
}

/// `counts[op]`, 0 when absent.
pub fn count(counts: &BTreeMap<String, u64>, op: &str) -> u64 {
    counts.get(op).copied().unwrap_or(0)
}
