//! Request budgets: how many FUSE round trips an operation costs, counted with the kernel's
//! `fuse:fuse_request_send` tracepoint (tests/src/trace.rs). Each round trip is tens of
//! microseconds on a 2-CPU VM, so these counts are what the benchmark's metadata numbers rest
//! on (README, Benchmarks); here they are checked as facts, never as timings.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{fchown, PermissionsExt};

use strata_tests::trace::{count, count_requests, require_fuse_trace};
use strata_tests::*;

fn mounted(files: usize) -> Fixture {
    let mut fx = Fixture::new(1);
    for i in 0..files {
        write(fx.l(0, &format!("d/f{i}")), "x");
    }
    fx.mount();
    fx
}

/// With FUSE_HANDLE_KILLPRIV_V2 the kernel marks an inode once a write found no privileges to
/// remove, so later writes skip the `security.capability` check; without it every write(2)
/// asks the daemon first.
#[test]
fn priv_writes_check_capabilities_once_per_file() {
    if !require_mount() || !require_fuse_trace() {
        return;
    }
    let mut fx = mounted(0);
    let mut f = File::create(fx.m("new")).unwrap();
    let counts = count_requests(&fx.mnt, || {
        for _ in 0..200 {
            f.write_all(b"0123456789").unwrap();
        }
    });
    drop(f);
    fx.umount();
    assert_eq!(count(&counts, "FUSE_WRITE"), 200, "{counts:?}");
    assert!(count(&counts, "FUSE_GETXATTR") <= 1, "{counts:?}");
}

/// Without the v2 flag the kernel refreshes the attributes (GETATTR) before each chown of a
/// file, to compute the setid bits to clear; with it the daemon clears them.
#[test]
fn priv_chown_sends_no_getattr() {
    if !require_mount() || !require_fuse_trace() {
        return;
    }
    let mut fx = mounted(0);
    let f = File::create(fx.m("new")).unwrap();
    f.set_permissions(fs::Permissions::from_mode(0o644))
        .unwrap();
    let counts = count_requests(&fx.mnt, || fchown(&f, Some(1), Some(1)).unwrap());
    drop(f);
    fx.umount();
    assert_eq!(count(&counts, "FUSE_SETATTR"), 1, "{counts:?}");
    assert_eq!(count(&counts, "FUSE_GETATTR"), 0, "{counts:?}");
}

/// Long entry and attribute timeouts, and listings the kernel keeps (no_opendir,
/// FOPEN_CACHE_DIR): once seen, a stat of every file and a listing cost no request, except
/// that the kernel drops a directory's cached atime after its first, uncached, listing
/// (`fuse_invalidate_atime`, fs/fuse/readdir.c) and `opendir(3)` fstats the directory: the
/// second walk sends one GETATTR per directory (the README's W9), the third none.
#[test]
fn priv_cached_stats_and_listings_send_nothing() {
    if !require_mount() || !require_fuse_trace() {
        return;
    }
    let mut fx = mounted(50);
    let walk = |fx: &Fixture| {
        let n = fs::read_dir(fx.m("d")).unwrap().count();
        for i in 0..50 {
            lstat(fx.m(&format!("d/f{i}")));
        }
        n
    };
    assert_eq!(walk(&fx), 50);
    let second = count_requests(&fx.mnt, || assert_eq!(walk(&fx), 50));
    let third = count_requests(&fx.mnt, || assert_eq!(walk(&fx), 50));
    fx.umount();
    assert!(
        second.values().sum::<u64>() == count(&second, "FUSE_GETATTR")
            && count(&second, "FUSE_GETATTR") <= 1,
        "{second:?}"
    );
    assert_eq!(third.values().sum::<u64>(), 0, "{third:?}");
}

/// What tar costs per file it extracts: open(O_CREAT|O_EXCL), write, futimens, fchown,
/// fchmod, close. Ten requests on Linux 6.18 (see the README's benchmark notes): the
/// directory's GETATTR that the previous create made stale, LOOKUP, CREATE, the write's and
/// the chown's `security.capability` checks, WRITE, three SETATTRs, RELEASE.
#[test]
fn priv_extracting_a_file_costs_at_most_ten_requests() {
    if !require_mount() || !require_fuse_trace() {
        return;
    }
    let mut fx = mounted(0);
    mkdirs(fx.m("x"));
    let n = 50;
    let counts = count_requests(&fx.mnt, || {
        for i in 0..n {
            let p = fx.m(&format!("x/f{i}"));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&p)
                .unwrap();
            f.write_all(b"data").unwrap();
            f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
            fchown(&f, Some(0), Some(0)).unwrap();
            f.set_permissions(fs::Permissions::from_mode(0o644))
                .unwrap();
        }
    });
    fx.umount();
    let total: u64 = counts.values().sum();
    assert!(
        total <= 10 * n,
        "{} requests per file: {counts:?}",
        total / n
    );
}
