//! Lower layers are never modified (content, mode, owner, xattrs, mtime, atime, ctime), and
//! symlinks planted in the upper or work dir never let the daemon write outside the layers.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use strata_tests::*;

/// Reads every file and lists every directory under `dir`, through the mount.
fn read_all(dir: &Path) -> usize {
    let mut n = 0;
    for e in readdir(dir).unwrap() {
        if e.name == "." || e.name == ".." {
            continue;
        }
        let p = dir.join(&e.name);
        match e.kind {
            'd' => n += read_all(&p),
            'f' => {
                let _ = read(&p);
                n += 1;
            }
            'l' => {
                let _ = fs::read_link(&p).unwrap();
                n += 1;
            }
            _ => n += 1,
        }
    }
    n
}

#[test]
fn priv_lower_layers_never_modified_by_a_workload() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(3);
    for i in 0..3 {
        for f in ["a", "b", "c", "dir/x", "dir/y", "dir/sub/z", "keep/k"] {
            write(fx.l(i, f), format!("layer{i}-{f}"));
        }
        write(fx.l(i, &format!("only{i}/f")), "only");
        write(fx.l(i, &format!("big{i}")), vec![i as u8; 300_000]);
        std::os::unix::fs::symlink("a", fx.l(i, &format!("sym{i}"))).unwrap();
        xattr_set(fx.l(i, "a"), "user.layer", format!("{i}").as_bytes());
        xattr_set(fx.l(i, "dir"), "user.dir", b"d");
        lchown(fx.l(i, "b"), 100 + i as u32, 200);
        chmod(fx.l(i, "c"), 0o4750);
        fs::hard_link(fx.l(i, "a"), fx.l(i, &format!("a-link{i}"))).unwrap();
        age_atimes(fx.lower(i));
    }
    let before: Vec<_> = (0..3).map(|i| snapshot(fx.lower(i))).collect();
    fx.mount();
    let count = read_all(&fx.mnt);
    assert_eq!(count, 19, "objects read through the mount");
    // Every kind of change, on objects from every layer.
    append(fx.m("a"), "+");
    append(fx.m("big2"), "+");
    fs::OpenOptions::new()
        .write(true)
        .open(fx.m("big1"))
        .unwrap()
        .write_all_at(b"mid", 1000)
        .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(fx.m("only2/f"))
        .unwrap()
        .set_len(1)
        .unwrap();
    chmod(fx.m("c"), 0o600);
    lchown(fx.m("b"), 1, 1);
    set_times(fx.m("only1/f"), (1, 0), (2, 0));
    xattr_set(fx.m("dir/x"), "user.new", b"n");
    fs::hard_link(fx.m("a-link2"), fx.m("new-link")).unwrap();
    fs::rename(fx.m("dir/y"), fx.m("dir/y2")).unwrap();
    fs::remove_file(fx.m("sym1")).unwrap();
    fs::remove_dir_all(fx.m("dir/sub")).unwrap();
    fs::create_dir(fx.m("dir/sub")).unwrap();
    fs::remove_dir_all(fx.m("keep")).unwrap();
    lchown(fx.m("sym2"), 5, 5);
    write(fx.m("only0/new"), "new");
    {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_TRUNC)
            .open(fx.m("big0"))
            .unwrap();
        f.write_all(b"truncated").unwrap();
    }
    let r = fs::File::open(fx.m("only1/f")).unwrap();
    fs::remove_file(fx.m("only1/f")).unwrap();
    assert_eq!(r.metadata().unwrap().nlink(), 0);
    drop(r);
    read_all(&fx.mnt);
    fx.remount();
    read_all(&fx.mnt);
    fx.umount();
    let diffs: Vec<String> = before
        .iter()
        .enumerate()
        .flat_map(|(i, b)| snapshot_diffs(&format!("lower{}", i + 1), b, &snapshot(fx.lower(i))))
        .collect();
    assert!(
        diffs.is_empty(),
        "lower layers changed:\n  {}",
        diffs.join("\n  ")
    );
}

/// Sets up the planted symlinks. The mountpoint sits two levels deeper than the upper, so a
/// relative target that leads outside the layers when followed inside the upper (what a buggy
/// daemon would do) leads to a harmless decoy directory when the kernel follows it inside the
/// mount (what every user of a mount legitimately does).
struct Planted {
    fx: Fixture,
    outside: std::path::PathBuf,
    decoy: std::path::PathBuf,
}

fn planted() -> Planted {
    let mut fx = Fixture::new(1);
    let root = fx.root().to_path_buf();
    fx.mnt = root.join("a/b/mnt");
    mkdirs(&fx.mnt);
    let outside = root.join("outside");
    write(outside.join("sentinel"), "SENTINEL");
    write(outside.join("f"), "outside-f");
    write(outside.join("workbait/precious"), "precious");
    let decoy = root.join("a/b/outside");
    mkdirs(&decoy);
    // lower: a real directory `d` and a real file dir/file, both shadowed by upper symlinks.
    write(fx.l(0, "d/f"), "lower-d-f");
    write(fx.l(0, "dir/file"), "lower-file");
    write(fx.l(0, "dir/other"), "other");
    mkdirs(fx.u("dir"));
    std::os::unix::fs::symlink("../outside", fx.u("d")).unwrap();
    std::os::unix::fs::symlink("../../outside/sentinel", fx.u("dir/file")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", fx.u("pw")).unwrap();
    std::os::unix::fs::symlink("/etc", fx.u("etcdir")).unwrap();
    Planted { fx, outside, decoy }
}

#[test]
fn priv_planted_upper_symlinks_never_lead_writes_outside() {
    if !require_mount() {
        return;
    }
    // A daemon that follows the planted links would change /etc and /etc/passwd: put back
    // whatever it changed (the test fails all the same).
    let _restore = [Restore::new("/etc"), Restore::new("/etc/passwd")];
    let Planted {
        mut fx,
        outside,
        decoy,
    } = planted();
    let outside_before = snapshot(&outside);
    let passwd_before = snapshot(Path::new("/etc/passwd"));
    let etc_before = lstat("/etc");
    fx.mount();
    // Writes that traverse the symlinks: the kernel follows them inside the mount, to the decoy.
    write(fx.m("d/f"), "via-d");
    write(fx.m("d/newfile"), "new");
    assert_eq!(
        read_str(decoy.join("f")),
        "via-d",
        "write through m/d went to the kernel's resolution"
    );
    let _ = fs::write(fx.m("dir/file"), "via-dir-file");
    let _ = fs::OpenOptions::new()
        .append(true)
        .open(fx.m("dir/file"))
        .map(|mut f| f.write_all(b"+"));
    let _ = fs::OpenOptions::new()
        .write(true)
        .open(fx.m("dir/file"))
        .map(|f| f.set_len(0));
    let _ = fs::set_permissions(fx.m("dir/file"), fs::Permissions::from_mode(0o777));
    // Operations on the symlinks themselves (no following): owner, times, xattrs, O_NOFOLLOW.
    for l in ["dir/file", "pw", "etcdir", "d"] {
        let p = fx.m(l);
        lchown(&p, 4242, 4242);
        set_times(&p, (3, 0), (4, 0));
        xattr_set(&p, "trusted.planted", b"evil");
        let nofollow = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&p);
        assert_eq!(
            errno(&format!("O_NOFOLLOW open of {l}"), nofollow),
            libc::ELOOP
        );
        let md = lstat(fx.u(l));
        assert!(md.file_type().is_symlink(), "upper/{l} is still a symlink");
        assert_eq!(md.uid(), 4242, "lchown reached the symlink upper/{l}");
    }
    fs::rename(fx.m("dir/file"), fx.m("dir/renamed")).unwrap();
    fs::hard_link(fx.m("pw"), fx.m("pw-link")).unwrap();
    fs::remove_file(fx.m("pw-link")).unwrap();
    fs::remove_file(fx.m("d")).unwrap();
    // Copy-ups next to the planted links.
    append(fx.m("dir/other"), "+");
    fs::create_dir(fx.m("d")).unwrap();
    write(fx.m("d/inside"), "inside");
    assert_eq!(names(fx.m("d")), sorted(&[".", "..", "inside"]));
    fx.remount();
    let _ = read_all(&fx.mnt);
    fx.umount();
    assert_same_snapshot("outside directory", &outside_before, &snapshot(&outside));
    assert_same_snapshot(
        "/etc/passwd",
        &passwd_before,
        &snapshot(Path::new("/etc/passwd")),
    );
    // /etc itself may change for unrelated reasons while the test runs: check for exactly
    // what following the planted `etcdir` link would have done to it.
    let etc_after = lstat("/etc");
    assert_eq!(
        (etc_after.uid(), etc_after.gid()),
        (etc_before.uid(), etc_before.gid()),
        "/etc owner changed"
    );
    assert_ne!(
        mtime(&etc_after),
        (4, 0),
        "utimes through the planted link reached /etc"
    );
    assert_eq!(
        errno("/etc xattr", xattr_get("/etc", "trusted.planted")),
        libc::ENODATA,
        "setxattr through the planted link reached /etc"
    );
    assert_eq!(
        errno(
            "/etc/passwd xattr",
            xattr_get("/etc/passwd", "trusted.planted")
        ),
        libc::ENODATA
    );
}

#[test]
fn priv_planted_workdir_symlink_is_not_followed() {
    if !require_mount() {
        return;
    }
    let Planted {
        mut fx, outside, ..
    } = planted();
    // work/work is where temp files go and what is emptied at mount time.
    std::os::unix::fs::symlink("../outside/workbait", fx.work.join("work")).unwrap();
    write(fx.l(0, "tocopy"), "c");
    write(fx.l(0, "todelete"), "d");
    write(fx.l(0, "dd/x"), "x");
    let outside_before = snapshot(&outside);
    let out = fx.try_mount();
    if out.status.success() {
        append(fx.m("tocopy"), "+");
        fs::remove_file(fx.m("todelete")).unwrap();
        fs::remove_dir_all(fx.m("dd")).unwrap();
        fs::create_dir(fx.m("dd")).unwrap();
        assert_eq!(read_str(fx.m("tocopy")), "c+");
        fx.umount();
    } else {
        assert!(!is_mounted(&fx.mnt));
        assert!(
            !String::from_utf8_lossy(&out.stderr).trim().is_empty(),
            "refusal without a message"
        );
    }
    assert_same_snapshot("outside directory", &outside_before, &snapshot(&outside));
}

/// layer.rs documents that lowers are held as private read-only, noatime clones of their
/// mounts, so the kernel itself enforces "lower layers are never modified". Checked from the
/// outside: the daemon's fds on the lower roots must be on a read-only, noatime mount.
#[test]
fn priv_daemon_holds_lowers_on_read_only_noatime_mounts() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    write(fx.l(0, "a"), "a");
    write(fx.l(1, "b"), "b");
    fx.mount();
    let pid = fx.daemons()[0];
    let ids: Vec<(u64, u64)> = fx
        .lowers
        .iter()
        .map(|l| (lstat(l).dev(), lstat(l).ino()))
        .collect();
    let mut seen = vec![false; ids.len()];
    for e in fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Ok(md) = fs::metadata(e.path()) else {
            continue;
        };
        let Some(i) = ids.iter().position(|id| *id == (md.dev(), md.ino())) else {
            continue;
        };
        seen[i] = true;
        let v = rx(rustix::fs::statvfs(e.path())).unwrap();
        assert!(
            v.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY)
                && v.f_flag.contains(rustix::fs::StatVfsMountFlags::NOATIME),
            "daemon fd {} on lower{} is on a mount with flags {:?}: not a read-only noatime clone",
            e.file_name().to_string_lossy(),
            i + 1,
            v.f_flag
        );
    }
    assert!(
        seen.iter().all(|s| *s),
        "daemon holds no fd on some lower root: {seen:?}"
    );
}

/// Records owner, mode and times of a host path and puts them back (and removes the
/// `trusted.planted` xattr) when dropped, if a buggy daemon changed them.
struct Restore {
    path: &'static str,
    md: fs::Metadata,
}

impl Restore {
    fn new(path: &'static str) -> Restore {
        Restore {
            path,
            md: lstat(path),
        }
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        let now = lstat(self.path);
        if (now.uid(), now.gid()) != (self.md.uid(), self.md.gid()) {
            eprintln!("RESTORING owner of {}", self.path);
            lchown(self.path, self.md.uid(), self.md.gid());
        }
        if now.mode() != self.md.mode() {
            eprintln!("RESTORING mode of {}", self.path);
            chmod(self.path, self.md.mode() & 0o7777);
        }
        if (mtime(&now), atime(&now)) != (mtime(&self.md), atime(&self.md)) {
            set_times(self.path, atime(&self.md), mtime(&self.md));
        }
        if xattr_get(self.path, "trusted.planted").is_ok() {
            eprintln!("REMOVING trusted.planted from {}", self.path);
            let _ = rustix::fs::lremovexattr(self.path, "trusted.planted");
        }
    }
}
