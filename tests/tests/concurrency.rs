//! Concurrency: parallel writers and O_APPEND appenders lose nothing; a large copy-up in one
//! thread does not break lookups and stats in another directory. Correctness only: no timing
//! assertions.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};

use strata_tests::*;

const THREADS: usize = 8;
const RECORDS: usize = 200;
const RECORD: usize = 64;

fn record(t: usize, r: usize) -> Vec<u8> {
    let mut v = format!("T{t:02} R{r:04} ").into_bytes();
    v.resize(RECORD - 1, b'a' + (t as u8));
    v.push(b'\n');
    v
}

fn file_data(t: usize) -> Vec<u8> {
    (0..2 * 1024 * 1024u32)
        .map(|i| (i as usize * 31 + t * 7) as u8)
        .collect()
}

#[test]
fn priv_parallel_writers_and_appenders_lose_nothing() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    let header = b"lower header line\n";
    write(fx.l(0, "shared"), header);
    for t in 0..THREADS {
        write(fx.l(0, &format!("dir{t}/existing")), format!("lower {t}"));
    }
    fx.mount();
    let barrier = Arc::new(Barrier::new(THREADS));
    let mnt = fx.mnt.clone();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (b, mnt) = (barrier.clone(), mnt.clone());
            std::thread::spawn(move || {
                b.wait();
                // Every thread opens the shared lower file at once: concurrent copy-up.
                let mut shared = fs::OpenOptions::new()
                    .append(true)
                    .open(mnt.join("shared"))
                    .unwrap();
                let data = file_data(t);
                let f = fs::File::create(mnt.join(format!("t{t}"))).unwrap();
                for (i, chunk) in data.chunks(4096).enumerate() {
                    f.write_all_at(chunk, (i * 4096) as u64).unwrap();
                }
                for r in 0..RECORDS {
                    shared.write_all(&record(t, r)).unwrap();
                }
                // Copy-up of a different file in a lower dir per thread.
                fs::OpenOptions::new()
                    .append(true)
                    .open(mnt.join(format!("dir{t}/existing")))
                    .unwrap()
                    .write_all(b"+")
                    .unwrap();
                fs::write(mnt.join(format!("dir{t}/new")), format!("new {t}")).unwrap();
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread panicked");
    }
    let check = |fx: &Fixture, when: &str| {
        for t in 0..THREADS {
            let got = read(fx.m(&format!("t{t}")));
            assert!(
                got == file_data(t),
                "t{t} content wrong {when} (len {})",
                got.len()
            );
            assert_eq!(
                read_str(fx.m(&format!("dir{t}/existing"))),
                format!("lower {t}+"),
                "{when}"
            );
            assert_eq!(
                read_str(fx.m(&format!("dir{t}/new"))),
                format!("new {t}"),
                "{when}"
            );
        }
        let shared = read(fx.m("shared"));
        assert_eq!(
            shared.len(),
            header.len() + THREADS * RECORDS * RECORD,
            "shared file size {when}"
        );
        assert_eq!(
            &shared[..header.len()],
            header,
            "lower content kept at the start {when}"
        );
        let mut count: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
        for rec in shared[header.len()..].chunks(RECORD) {
            *count.entry(rec.to_vec()).or_default() += 1;
        }
        for t in 0..THREADS {
            for r in 0..RECORDS {
                assert_eq!(
                    count.get(&record(t, r)),
                    Some(&1),
                    "record T{t} R{r} {when}"
                );
            }
        }
        assert_eq!(
            count.len(),
            THREADS * RECORDS,
            "torn or foreign records {when}"
        );
    };
    check(&fx, "before remount");
    fx.remount();
    check(&fx, "after remount");
    assert_eq!(read(fx.l(0, "shared")), header);
}

const BIG: u64 = 256 * 1024 * 1024;
const BLOCK: usize = 1 << 20;

fn big_block(i: u64) -> Vec<u8> {
    let mut b = vec![(i % 251) as u8; BLOCK];
    b[..8].copy_from_slice(&i.to_le_bytes());
    b
}

#[test]
fn priv_large_copy_up_while_another_directory_is_used() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    {
        mkdirs(fx.l(0, "big"));
        let mut f = std::io::BufWriter::new(fs::File::create(fx.l(0, "big/huge")).unwrap());
        for i in 0..BIG / BLOCK as u64 {
            f.write_all(&big_block(i)).unwrap();
        }
    }
    for i in 0..100 {
        write(
            fx.l(0, &format!("other/f{i:03}")),
            format!("other file {i}"),
        );
    }
    fx.mount();
    let done = Arc::new(AtomicBool::new(false));
    let mnt = fx.mnt.clone();
    let d2 = done.clone();
    let writer = std::thread::spawn(move || {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(mnt.join("big/huge"))
            .unwrap();
        f.write_all(b"TAIL").unwrap();
        d2.store(true, Ordering::SeqCst);
    });
    let mut want: Vec<String> = (0..100).map(|i| format!("f{i:03}")).collect();
    want.push(".".into());
    want.push("..".into());
    want.sort();
    let mut rounds = 0u64;
    loop {
        let finished = done.load(Ordering::SeqCst);
        assert_eq!(
            names(fx.m("other")),
            want,
            "listing during copy-up (round {rounds})"
        );
        for i in (0..100).step_by(7) {
            let p = fx.m(&format!("other/f{i:03}"));
            assert_eq!(lstat(&p).len(), format!("other file {i}").len() as u64);
            assert_eq!(read_str(&p), format!("other file {i}"));
        }
        let n = fx.m(&format!("other/new{rounds}"));
        write(&n, "x");
        fs::remove_file(&n).unwrap();
        assert_eq!(
            errno("missing", fs::symlink_metadata(fx.m("other/missing"))),
            libc::ENOENT
        );
        rounds += 1;
        if finished {
            break;
        }
    }
    writer.join().expect("copy-up thread panicked");
    eprintln!("lookup rounds during the copy-up: {rounds}");
    let up = fs::File::open(fx.u("big/huge")).unwrap();
    assert_eq!(up.metadata().unwrap().len(), BIG + 4);
    let mut buf = vec![0u8; BLOCK];
    for i in 0..BIG / BLOCK as u64 {
        up.read_exact_at(&mut buf, i * BLOCK as u64).unwrap();
        assert!(buf == big_block(i), "upper block {i} differs");
    }
    let mut tail = [0u8; 4];
    up.read_exact_at(&mut tail, BIG).unwrap();
    assert_eq!(&tail, b"TAIL");
    // Through the mount, a few blocks.
    let m = fs::File::open(fx.m("big/huge")).unwrap();
    for i in [0, 1, 127, 255] {
        m.read_exact_at(&mut buf, i * BLOCK as u64).unwrap();
        assert!(buf == big_block(i), "mount block {i} differs");
    }
    assert_eq!(m.metadata().unwrap().size(), BIG + 4);
}
