//! A bounded storm of random operations from several threads on a small set of names in one
//! merged directory (create, write, unlink, mkdir, rmdir, rename, link, chmod, chown, xattrs,
//! stat, readdir). Only the errors POSIX allows for such races are accepted; afterwards the
//! union must be self-consistent (listing vs lookups, d_ino vs st_ino) and the same after a
//! remount. No timing assertions.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use strata_tests::*;

const THREADS: u64 = 6;
const OPS: usize = 5000;
const NAMES: u64 = 12;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn allowed(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::ENOENT
                | libc::EEXIST
                | libc::ENOTEMPTY
                | libc::EISDIR
                | libc::ENOTDIR
                | libc::EXDEV
                | libc::EPERM
                | libc::ENODATA
        )
    )
}

fn one_op(dir: &Path, rng: &mut Rng, t: u64, i: usize) {
    let n = |rng: &mut Rng| dir.join(format!("n{}", rng.below(NAMES)));
    let a = n(rng);
    let b = n(rng);
    let op = rng.below(13);
    let r: std::io::Result<()> = match op {
        0 => fs::write(&a, format!("t{t} op{i}\n")),
        1 => fs::OpenOptions::new()
            .append(true)
            .open(&a)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"+")),
        2 => fs::remove_file(&a),
        3 => fs::create_dir(&a),
        4 => fs::remove_dir(&a),
        5 | 6 => fs::rename(&a, &b),
        7 => fs::hard_link(&a, &b),
        8 => fs::set_permissions(
            &a,
            std::os::unix::fs::PermissionsExt::from_mode(0o600 + rng.below(0o100) as u32),
        ),
        9 => std::os::unix::fs::lchown(&a, Some(1000 + t as u32), None),
        10 => rx(rustix::fs::lsetxattr(
            &a,
            "user.t",
            format!("{t}").as_bytes(),
            rustix::fs::XattrFlags::empty(),
        )),
        11 => fs::symlink_metadata(&a).map(drop),
        _ => readdir(dir).map(drop),
    };
    if let Err(e) = r {
        assert!(
            allowed(&e),
            "thread {t} op {i} (kind {op}) on {} / {}: {e}",
            a.display(),
            b.display()
        );
    }
}

/// name → (type letter, size for files, st_ino, nlink for non-dirs), checking that the listing
/// and lookups agree.
fn state(dir: &Path) -> BTreeMap<String, (char, u64, u64, u64)> {
    let mut out = BTreeMap::new();
    let listed = readdir(dir).unwrap();
    for e in &listed {
        if e.name == "." || e.name == ".." {
            continue;
        }
        let p = dir.join(&e.name);
        let md = fs::symlink_metadata(&p)
            .unwrap_or_else(|err| panic!("{} is listed but lstat fails: {err}", e.name));
        assert_eq!(e.ino, md.ino(), "{}: d_ino vs st_ino", e.name);
        let k = mode_letter(md.mode());
        assert_eq!(e.kind, k, "{}: d_type vs st_mode", e.name);
        let (size, nlink) = match k {
            'f' => {
                assert_eq!(read(&p).len() as u64, md.size(), "{}: size vs data", e.name);
                (md.size(), md.nlink())
            }
            'd' => {
                readdir(&p).unwrap();
                (0, 0)
            }
            _ => (0, md.nlink()),
        };
        out.insert(e.name.clone(), (k, size, md.ino(), nlink));
    }
    for i in 0..NAMES {
        let name = format!("n{i}");
        if !out.contains_key(&name) {
            assert_eq!(
                errno(&name, fs::symlink_metadata(dir.join(&name))),
                libc::ENOENT,
                "{name} is not listed but can be looked up"
            );
        }
    }
    out
}

#[test]
fn priv_random_operation_storm_stays_consistent() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    for i in 0..NAMES / 2 {
        write(fx.l(1, &format!("s/n{i}")), format!("lower2 n{i}\n"));
    }
    for i in NAMES / 2..NAMES - 2 {
        write(fx.l(0, &format!("s/n{i}/inner")), "inner");
    }
    write(fx.l(0, "s/n0"), "lower1 n0\n");
    fx.mount();
    let dir: PathBuf = fx.m("s");
    let barrier = Arc::new(Barrier::new(THREADS as usize));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (dir, barrier) = (dir.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut rng =
                    Rng(0x9e37_79b9_7f4a_7c15 ^ (t + 1).wrapping_mul(0x1234_5678_9abc_def1));
                barrier.wait();
                for i in 0..OPS {
                    one_op(&dir, &mut rng, t, i);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("storm thread failed");
    }
    let before = state(&dir);
    check_tree(&fx.mnt);
    fx.remount();
    let after = state(&fx.m("s"));
    assert_eq!(before, after, "the union changed across a remount");
}

#[test]
fn priv_chmod_racing_with_replacement_by_a_directory() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "x"), "lower");
    fx.mount();
    let p = fx.m("x");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (p2, d2) = (p.clone(), done.clone());
    let flipper = std::thread::spawn(move || {
        for _ in 0..500 {
            let _ = fs::remove_file(&p2);
            let _ = fs::create_dir(&p2);
            let _ = fs::remove_dir(&p2);
            let _ = fs::write(&p2, "x");
        }
        d2.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    let mut bad: BTreeMap<i32, usize> = BTreeMap::new();
    while !done.load(std::sync::atomic::Ordering::SeqCst) {
        // chmod(2) on a name being replaced: ENOENT, or success on one of the objects.
        if let Err(e) = fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        {
            let c = e.raw_os_error().unwrap_or(-1);
            if c != libc::ENOENT {
                *bad.entry(c).or_default() += 1;
            }
        }
    }
    flipper.join().unwrap();
    assert!(
        bad.is_empty(),
        "chmod failed with errno -> count {bad:?} (only ENOENT is possible)"
    );
    assert_eq!(read_str(fx.m("x")), "x");
}
