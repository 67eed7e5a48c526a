//! Crash safety: `kill -9` of the daemon in the middle of a copy-up never leaves a partial file
//! under the real name, nor temp files in the union; data fsynced before the kill survives.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_tests::*;

const BIG: u64 = 256 * 1024 * 1024;
const BLOCK: usize = 1 << 20;

fn block(i: u64) -> Vec<u8> {
    let mut b = vec![(i % 253) as u8 ^ 0x5a; BLOCK];
    b[..8].copy_from_slice(&i.to_le_bytes());
    b
}

/// Largest size of a regular file in `dir` (0 when none), ignoring errors of racing entries.
fn largest_file(dir: &std::path::Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn priv_kill_9_during_copy_up_leaves_old_or_new_content() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    {
        let mut f = std::io::BufWriter::new(fs::File::create(fx.l(0, "big")).unwrap());
        for i in 0..BIG / BLOCK as u64 {
            f.write_all(&block(i)).unwrap();
        }
    }
    write(fx.l(0, "small"), "small");
    // The daemon in the foreground, as our own child, so that we know its pid for sure.
    let mut child = Command::new(mount_program())
        .arg("-f")
        .arg("-o")
        .arg(fx.option_string())
        .arg(&fx.mnt)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + MOUNT_TIMEOUT;
    while mount_type(&fx.mnt) != Some(fstype()) {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("strata-overlay -f did not mount {}", fx.mnt.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    fx.adopt(); // so that a failing test still unmounts
    assert!(fx.daemons().contains(&(child.id() as i32)));

    // Written and fsynced before the crash.
    let mut d = fs::File::create(fx.m("durable")).unwrap();
    d.write_all(b"durable-data").unwrap();
    d.sync_all().unwrap();
    drop(d);
    let mut s = fs::OpenOptions::new()
        .append(true)
        .open(fx.m("small"))
        .unwrap();
    s.write_all(b"+synced").unwrap();
    s.sync_all().unwrap();
    drop(s);

    // A copy-up of the big file, killed in the middle.
    let big = fx.m("big");
    let copier = std::thread::spawn(move || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new().append(true).open(big)?;
        f.write_all(b"NEW")
    });
    let work = fx.work.join("work");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut partial = 0;
    while Instant::now() < deadline && !copier.is_finished() {
        let n = largest_file(&work);
        if n > 0 && n < BIG {
            partial = n;
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    kill9(child.id() as i32);
    child.wait().unwrap();
    let r = copier.join().unwrap();
    eprintln!("killed with a {partial}-byte temp copy in the work dir; the writer got {r:?}");
    if let Err(e) = &r {
        let errno = e.raw_os_error();
        assert!(
            matches!(errno, Some(libc::ENOTCONN) | Some(libc::ECONNABORTED)),
            "writer failed with {e} instead of a dead-connection error"
        );
    }
    let st = Command::new("umount")
        .arg("-l")
        .arg(&fx.mnt)
        .status()
        .unwrap();
    assert!(st.success(), "umount -l of the dead mount failed");
    fx.forget_mount();
    assert!(!is_mounted(&fx.mnt));

    fx.mount();
    assert_eq!(
        names(&fx.mnt),
        sorted(&[".", "..", "big", "durable", "small"]),
        "temp files visible in the union"
    );
    let leftovers: Vec<String> = fs::read_dir(&fx.upper)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !["big", "durable", "small"].contains(&n.as_str()))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files in the upper: {leftovers:?}"
    );
    assert_eq!(read_str(fx.m("durable")), "durable-data");
    assert_eq!(read_str(fx.m("small")), "small+synced");
    // big: exactly the lower content, or the complete copy (with or without the append).
    let m = fs::File::open(fx.m("big")).unwrap();
    let size = m.metadata().unwrap().size();
    assert!(
        size == BIG || size == BIG + 3,
        "big has size {size}: a partial copy became visible"
    );
    if let Ok(md) = fs::symlink_metadata(fx.u("big")) {
        assert!(
            md.len() == BIG || md.len() == BIG + 3,
            "upper/big has partial size {}",
            md.len()
        );
        let up = fs::File::open(fx.u("big")).unwrap();
        let mut buf = vec![0u8; BLOCK];
        for i in 0..BIG / BLOCK as u64 {
            up.read_exact_at(&mut buf, i * BLOCK as u64).unwrap();
            assert!(buf == block(i), "upper/big block {i} is not the lower data");
        }
    }
    let mut buf = vec![0u8; BLOCK];
    for i in [0, 100, 255] {
        m.read_exact_at(&mut buf, i * BLOCK as u64).unwrap();
        assert!(buf == block(i), "big block {i} through the mount");
    }
    if size == BIG + 3 {
        let mut tail = [0u8; 3];
        m.read_exact_at(&mut tail, BIG).unwrap();
        assert_eq!(&tail, b"NEW");
    }
    drop(m);
    assert_eq!(lstat(fx.l(0, "big")).len(), BIG, "lower changed");
}

#[test]
fn priv_dead_daemon_mount_can_be_detached_and_remounted() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "f"), "f");
    fx.mount();
    append(fx.m("f"), "+");
    let pids = fx.daemons().to_vec();
    for p in &pids {
        kill9(*p);
    }
    for p in &pids {
        assert!(wait_exited(*p, EXIT_TIMEOUT));
    }
    let e = errno("stat on a dead mount", fs::metadata(fx.m("f")));
    assert!(e == libc::ENOTCONN || e == libc::ECONNABORTED, "errno {e}");
    let st = Command::new("umount")
        .arg("-l")
        .arg(&fx.mnt)
        .status()
        .unwrap();
    assert!(st.success());
    fx.forget_mount();
    fx.mount();
    assert_eq!(read_str(fx.m("f")), "f+");
}
