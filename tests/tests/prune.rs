//! `max_inodes=`: above it the daemon asks the kernel to let go of the least recently used
//! inodes (FUSE_NOTIFY_PRUNE), so a walk of more files than that keeps its node table
//! bounded, and nothing the kernel still uses (an open file, a directory fd, a bind mount on a
//! file or directory of the mount) is affected. The count comes from the root's
//! `user.strata.inodes`.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strata_tests::*;

const DIRS: usize = 40;
const PER_DIR: usize = 250;

fn rel(d: usize, f: usize) -> String {
    format!("d{d:02}/f{f:03}")
}

fn content(d: usize, f: usize) -> String {
    format!("dir {d} file {f}\n")
}

/// One lower of DIRS x PER_DIR small files, mounted with `max_inodes=limit`.
fn fixture(limit: usize) -> Fixture {
    let mut fx = Fixture::new(1);
    for d in 0..DIRS {
        for f in 0..PER_DIR {
            write(fx.l(0, &rel(d, f)), content(d, f));
        }
    }
    fx.opts.push(format!("max_inodes={limit}"));
    fx.mount();
    fx
}

fn inodes(mnt: &Path) -> usize {
    let v = xattr_get(mnt, "user.strata.inodes").expect("getxattr user.strata.inodes");
    String::from_utf8(v).unwrap().trim().parse().unwrap()
}

/// Reads every file through the mount (checking its content) and returns their inode numbers.
fn walk(fx: &Fixture) -> BTreeMap<String, u64> {
    let mut inos = BTreeMap::new();
    for d in 0..DIRS {
        for f in 0..PER_DIR {
            let r = rel(d, f);
            let p = fx.m(&r);
            assert_eq!(fs::read_to_string(&p).unwrap(), content(d, f), "{r}");
            inos.insert(r, fs::symlink_metadata(&p).unwrap().ino());
        }
    }
    inos
}

/// The node count once it has settled (FORGETs arrive after the kernel evicts).
fn settled_inodes(mnt: &Path, at_most: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = inodes(mnt);
        if n <= at_most || Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// FUSE_NOTIFY_PRUNE came with Linux 6.18 (protocol 7.45); before it the table is not
/// bounded (the daemon logs so), which is no failure of strata.
fn kernel_prunes() -> bool {
    let yes =
        fs::read_to_string("/proc/kallsyms").is_ok_and(|k| k.contains(" fuse_try_prune_one_inode"));
    if !yes {
        eprintln!("SKIP: this kernel has no FUSE_NOTIFY_PRUNE (Linux 6.18)");
    }
    yes
}

#[test]
fn priv_a_walk_beyond_max_inodes_keeps_the_table_bounded_and_loses_nothing() {
    if !require_mount() || !kernel_prunes() {
        return;
    }
    const LIMIT: usize = 1000;
    let mut fx = fixture(LIMIT);

    // Things the kernel holds, which must survive pruning: a bind mount on a file and on a
    // directory of the mount, an open file, an open directory.
    let src = fx.root().join("bind-src");
    write(&src, "bound\n");
    let srcdir = fx.root().join("bind-dir");
    fs::create_dir(&srcdir).unwrap();
    write(srcdir.join("inside"), "inside\n");
    let (bf, bd) = (fx.m(&rel(3, 7)), fx.m("d04"));
    for (s, t) in [(&src, &bf), (&srcdir, &bd)] {
        let st = Command::new("mount")
            .arg("--bind")
            .arg(s)
            .arg(t)
            .status()
            .unwrap();
        assert!(st.success(), "mount --bind {} {}", s.display(), t.display());
    }
    let held = fs::File::open(fx.m(&rel(5, 5))).unwrap();
    let held_dir = fs::File::open(fx.m("d06")).unwrap();

    // A change in the upper, made before the walk.
    write(fx.m("d07/new"), "new\n");
    fs::write(fx.m(&rel(8, 8)), "changed\n").unwrap();

    let mut first = BTreeMap::new();
    for d in (0..DIRS).filter(|&d| d != 4) {
        for f in 0..PER_DIR {
            let r = rel(d, f);
            let p = fx.m(&r);
            let want = match (d, f) {
                (3, 7) => "bound\n".to_string(),
                (8, 8) => "changed\n".to_string(),
                _ => content(d, f),
            };
            assert_eq!(fs::read_to_string(&p).unwrap(), want, "{r}");
            first.insert(r, fs::symlink_metadata(&p).unwrap().ino());
        }
    }
    let n = settled_inodes(&fx.mnt, LIMIT + LIMIT / 4);
    assert!(
        n <= LIMIT + LIMIT / 4,
        "{n} inodes kept after reading {} files with max_inodes={LIMIT}",
        DIRS * PER_DIR
    );

    // Everything the kernel held is intact.
    assert!(
        is_mounted(&bf) && is_mounted(&bd),
        "a bind mount was detached"
    );
    assert_eq!(fs::read_to_string(&bf).unwrap(), "bound\n");
    assert_eq!(fs::read_to_string(bd.join("inside")).unwrap(), "inside\n");
    let mut s = String::new();
    std::io::Read::read_to_string(&mut &held, &mut s).unwrap();
    assert_eq!(s, content(5, 5));
    let names = fs::read_dir(format!("/proc/self/fd/{}", {
        use std::os::fd::AsRawFd;
        held_dir.as_raw_fd()
    }))
    .unwrap()
    .count();
    assert_eq!(names, PER_DIR, "the open directory lists");

    // A second walk reads the same data under the same inode numbers, and the upper changes.
    for (r, ino) in &first {
        let m = fs::symlink_metadata(fx.m(r)).unwrap();
        assert_eq!(m.ino(), *ino, "inode number of {r} changed after pruning");
    }
    assert_eq!(fs::read_to_string(fx.m("d07/new")).unwrap(), "new\n");
    assert_eq!(fs::read_to_string(fx.m(&rel(8, 8))).unwrap(), "changed\n");
    assert_eq!(
        fs::read_to_string(fx.l(0, &rel(8, 8))).unwrap(),
        content(8, 8)
    );

    drop((held, held_dir));
    for t in [&bf, &bd] {
        unmount(t).unwrap();
    }
    fx.umount();
}

#[test]
fn priv_without_a_bound_every_inode_is_kept() {
    if !require_mount() {
        return;
    }
    let mut fx = fixture(0);
    let inos = walk(&fx);
    assert_eq!(inos.len(), DIRS * PER_DIR);
    // Root, the directories and every file: the kernel holds them all (no memory pressure).
    let n = inodes(&fx.mnt);
    assert!(n > DIRS * PER_DIR, "{n} inodes kept without max_inodes");
    fx.umount();
}
