//! The union core, driven through its plain API on temp dirs: no FUSE mount, no privileges
//! (the char-device whiteout case runs only where mknod is allowed).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use strata_fs::options::MountOptions;
use strata_fs::union::{Ctx, NewKind, Union, ROOT};

struct Layers {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Layers {
    fn new(lowers: usize) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        for i in 0..lowers {
            fs::create_dir(root.join(format!("l{i}"))).unwrap();
        }
        for d in ["u", "w"] {
            fs::create_dir(root.join(d)).unwrap();
        }
        Layers { _tmp: tmp, root }
    }
    fn lower(&self, i: usize) -> PathBuf {
        self.root.join(format!("l{i}"))
    }
    fn upper(&self) -> PathBuf {
        self.root.join("u")
    }
    fn union(&self, lowers: usize, extra: &str) -> Union {
        let l: Vec<String> = (0..lowers)
            .map(|i| self.lower(i).display().to_string())
            .collect();
        let o = format!(
            "lowerdir={},upperdir={},workdir={}{extra}",
            l.join(":"),
            self.upper().display(),
            self.root.join("w").display()
        );
        let opts = MountOptions::parse(&[o]).unwrap();
        let u = strata_fs::mount::build_union(&opts).unwrap();
        std::sync::Arc::try_unwrap(u).unwrap()
    }
}

fn write(p: &Path, s: &str) {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(p, s).unwrap();
}

fn names(u: &Union, ino: u64) -> Vec<String> {
    u.listing(ino)
        .unwrap()
        .entries
        .iter()
        .map(|e| String::from_utf8(e.name.clone()).unwrap())
        .collect()
}

fn lookup(u: &Union, path: &str) -> Result<u64, i32> {
    let mut ino = ROOT;
    for c in path.split('/').filter(|c| !c.is_empty()) {
        ino = u.lookup(ino, OsStr::new(c)).map_err(|e| e.errno())?.ino;
    }
    Ok(ino)
}

fn read_all(u: &Union, ino: u64) -> String {
    let fh = u.open(ino, OFlags::RDONLY).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let n = u.read(fh, 0, &mut buf).unwrap();
    u.release(fh);
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

const CTX: Ctx = Ctx { uid: 0, gid: 0 };

fn ctx() -> Ctx {
    Ctx {
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
    }
}

#[test]
fn topmost_layer_wins_and_dirs_merge() {
    let t = Layers::new(2);
    write(&t.lower(0).join("d/a"), "top");
    write(&t.lower(1).join("d/a"), "bottom");
    write(&t.lower(1).join("d/b"), "only-bottom");
    let u = t.union(2, "");
    let a = lookup(&u, "d/a").unwrap();
    assert_eq!(read_all(&u, a), "top");
    let d = lookup(&u, "d").unwrap();
    assert_eq!(names(&u, d), vec!["a", "b"]);
    let _ = CTX;
}

#[test]
fn aufs_whiteouts_and_opaque_marker_hide_lower_entries() {
    let t = Layers::new(2);
    write(&t.lower(1).join("d/gone"), "x");
    write(&t.lower(1).join("d/kept"), "x");
    write(&t.lower(1).join("o/hidden"), "x");
    write(&t.lower(0).join("d/.wh.gone"), "");
    write(&t.lower(0).join("o/.wh..wh..opq"), "");
    write(&t.lower(0).join("o/new"), "x");
    let u = t.union(2, "");
    assert_eq!(lookup(&u, "d/gone"), Err(libc::ENOENT));
    assert_eq!(lookup(&u, "d/.wh.gone"), Err(libc::ENOENT));
    let d = lookup(&u, "d").unwrap();
    assert_eq!(names(&u, d), vec!["kept"]);
    assert_eq!(lookup(&u, "o/hidden"), Err(libc::ENOENT));
    let o = lookup(&u, "o").unwrap();
    assert_eq!(names(&u, o), vec!["new"]);
}

#[test]
fn opaque_xattrs_in_every_namespace() {
    for x in [
        "user.overlay.opaque",
        "user.fuseoverlayfs.opaque",
        "trusted.overlay.opaque",
    ] {
        let t = Layers::new(2);
        write(&t.lower(1).join("o/hidden"), "x");
        fs::create_dir_all(t.lower(0).join("o")).unwrap();
        if rustix::fs::setxattr(
            t.lower(0).join("o"),
            x,
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .is_err()
        {
            eprintln!("SKIP {x}: this filesystem/user cannot set it");
            continue;
        }
        let u = t.union(2, "");
        assert_eq!(lookup(&u, "o/hidden"), Err(libc::ENOENT), "{x}");
    }
}

#[test]
fn char_whiteout_in_lower_hides() {
    let t = Layers::new(2);
    write(&t.lower(1).join("gone"), "x");
    if rustix::fs::mknodat(
        rustix::fs::CWD,
        t.lower(0).join("gone"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .is_err()
    {
        eprintln!("SKIP char whiteout: mknod not permitted here");
        return;
    }
    let u = t.union(2, "");
    assert_eq!(lookup(&u, "gone"), Err(libc::ENOENT));
    assert!(names(&u, ROOT).is_empty());
}

#[test]
fn write_copies_up_and_lower_is_untouched() {
    let t = Layers::new(1);
    write(&t.lower(0).join("dir/f"), "lower");
    fs::set_permissions(t.lower(0).join("dir"), fs::Permissions::from_mode(0o2755)).unwrap();
    let before = fs::metadata(t.lower(0).join("dir/f")).unwrap();
    let u = t.union(1, "");
    let f = lookup(&u, "dir/f").unwrap();
    let fh = u.open(f, OFlags::WRONLY | OFlags::APPEND).unwrap();
    u.write(fh, 5, b"+upper").unwrap();
    u.release(fh);
    assert_eq!(read_all(&u, f), "lower+upper");
    assert_eq!(
        fs::read_to_string(t.lower(0).join("dir/f")).unwrap(),
        "lower"
    );
    assert_eq!(
        fs::read_to_string(t.upper().join("dir/f")).unwrap(),
        "lower+upper"
    );
    // The copied-up parent keeps its setgid bit, and the file keeps its inode number.
    assert_eq!(
        fs::metadata(t.upper().join("dir")).unwrap().mode() & 0o7777,
        0o2755
    );
    assert_eq!(u.getattr(f, None).unwrap().ino, f);
    let after = fs::metadata(t.lower(0).join("dir/f")).unwrap();
    assert_eq!(
        (before.mtime(), before.atime(), before.ctime()),
        (after.mtime(), after.atime(), after.ctime())
    );
    // No temp file is left in the work dir.
    assert_eq!(fs::read_dir(t.root.join("w/work")).unwrap().count(), 0);
}

#[test]
fn inode_number_survives_copy_up_and_a_new_union() {
    let t = Layers::new(1);
    write(&t.lower(0).join("f"), "x");
    let ino = {
        let u = t.union(1, "");
        let f = lookup(&u, "f").unwrap();
        let fh = u.open(f, OFlags::RDWR).unwrap();
        u.write(fh, 1, b"y").unwrap();
        u.release(fh);
        f
    };
    let u = t.union(1, "");
    assert_eq!(lookup(&u, "f").unwrap(), ino);
    let root_list = u.listing(ROOT).unwrap();
    assert_eq!(
        root_list.entries[0].ino, ino,
        "d_ino == st_ino after copy-up"
    );
}

#[test]
fn rm_rf_then_mkdir_hides_all_old_entries() {
    // containers/fuse-overlayfs#324
    let t = Layers::new(1);
    write(&t.lower(0).join("d/a"), "x");
    write(&t.lower(0).join("d/sub/b"), "x");
    let u = t.union(1, "");
    let d = lookup(&u, "d").unwrap();
    let sub = lookup(&u, "d/sub").unwrap();
    u.remove(sub, OsStr::new("b"), false).unwrap();
    u.remove(d, OsStr::new("sub"), true).unwrap();
    u.remove(d, OsStr::new("a"), false).unwrap();
    u.remove(ROOT, OsStr::new("d"), true).unwrap();
    u.create(ctx(), ROOT, OsStr::new("d"), 0o755, NewKind::Dir)
        .unwrap();
    assert_eq!(lookup(&u, "d/a"), Err(libc::ENOENT));
    assert_eq!(lookup(&u, "d/sub"), Err(libc::ENOENT));
    let d = lookup(&u, "d").unwrap();
    assert!(names(&u, d).is_empty());
    // And in a fresh union over the same upper.
    let u2 = t.union(1, "");
    assert_eq!(lookup(&u2, "d/a"), Err(libc::ENOENT));
}

#[test]
fn rmdir_of_non_empty_union_dir_is_refused() {
    let t = Layers::new(1);
    write(&t.lower(0).join("d/a"), "x");
    let u = t.union(1, "");
    assert_eq!(
        u.remove(ROOT, OsStr::new("d"), true).unwrap_err().errno(),
        libc::ENOTEMPTY
    );
    assert_eq!(
        u.remove(ROOT, OsStr::new("d"), false).unwrap_err().errno(),
        libc::EISDIR
    );
}

#[test]
fn forced_wh_format_writes_wh_files() {
    let t = Layers::new(1);
    write(&t.lower(0).join("f"), "x");
    let u = t.union(1, ",whiteout=wh");
    u.remove(ROOT, OsStr::new("f"), false).unwrap();
    assert!(t.upper().join(".wh.f").exists());
    assert_eq!(lookup(&u, "f"), Err(libc::ENOENT));
    // Re-creating the name removes the whiteout.
    u.create(
        ctx(),
        ROOT,
        OsStr::new("f"),
        0o644,
        NewKind::File(OFlags::WRONLY),
    )
    .unwrap();
    assert!(!t.upper().join(".wh.f").exists());
    assert!(lookup(&u, "f").is_ok());
}

#[test]
fn rename_of_lower_directory_is_exdev_and_files_move() {
    let t = Layers::new(1);
    write(&t.lower(0).join("d/a"), "x");
    write(&t.lower(0).join("f"), "file");
    let u = t.union(1, "");
    lookup(&u, "d").unwrap();
    let e = u
        .rename(ROOT, OsStr::new("d"), ROOT, OsStr::new("e"), 0)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EXDEV);
    u.rename(ROOT, OsStr::new("f"), ROOT, OsStr::new("g"), 0)
        .unwrap();
    assert_eq!(lookup(&u, "f"), Err(libc::ENOENT));
    let g = lookup(&u, "g").unwrap();
    assert_eq!(read_all(&u, g), "file");
    // NOREPLACE over an existing name, EXCHANGE with a missing one.
    assert_eq!(
        u.rename(ROOT, OsStr::new("g"), ROOT, OsStr::new("d"), 1)
            .unwrap_err()
            .errno(),
        libc::EEXIST
    );
    assert_eq!(
        u.rename(ROOT, OsStr::new("g"), ROOT, OsStr::new("zz"), 2)
            .unwrap_err()
            .errno(),
        libc::ENOENT
    );
}

#[test]
fn names_past_name_max_are_enametoolong() {
    let t = Layers::new(1);
    let long = "x".repeat(255);
    write(&t.lower(0).join(&long), "x");
    let u = t.union(1, "");
    assert!(lookup(&u, &long).is_ok());
    let too_long = "y".repeat(256);
    assert_eq!(lookup(&u, &too_long), Err(libc::ENAMETOOLONG));
    // Copy-up of a 255-byte name works (fuse-overlayfs 1.x crashes on it).
    let f = lookup(&u, &long).unwrap();
    let fh = u.open(f, OFlags::WRONLY).unwrap();
    u.write(fh, 0, b"y").unwrap();
    u.release(fh);
    assert_eq!(fs::read_to_string(t.upper().join(&long)).unwrap(), "y");
    // Deleting it needs a whiteout that cannot be a .wh. file: it must still work.
    u.remove(ROOT, OsStr::new(&long), false).unwrap();
    assert_eq!(lookup(&u, &long), Err(libc::ENOENT));
}

#[test]
fn symlink_planted_in_upper_is_not_followed() {
    let t = Layers::new(1);
    let outside = t.root.join("outside");
    fs::create_dir(&outside).unwrap();
    write(&outside.join("secret"), "keep");
    write(&t.lower(0).join("d/secret"), "lower");
    symlink(&outside, t.upper().join("d")).unwrap();
    let u = t.union(1, "");
    // The upper symlink shadows the lower dir as a symlink; nothing reaches `outside`.
    if let Ok(d) = lookup(&u, "d") {
        assert!(u.lookup(d, OsStr::new("secret")).is_err());
        let _ = u.create(
            ctx(),
            d,
            OsStr::new("new"),
            0o644,
            NewKind::File(OFlags::WRONLY),
        );
    }
    assert_eq!(fs::read_to_string(outside.join("secret")).unwrap(), "keep");
    assert!(!outside.join("new").exists());
}

#[test]
fn unlinked_open_file_keeps_working_with_nlink_0() {
    let t = Layers::new(1);
    write(&t.lower(0).join("f"), "data");
    let u = t.union(1, "");
    let f = lookup(&u, "f").unwrap();
    let fh = u.open(f, OFlags::RDWR).unwrap();
    u.remove(ROOT, OsStr::new("f"), false).unwrap();
    let a = u.getattr(f, Some(fh)).unwrap();
    assert_eq!(a.nlink, 0);
    assert_eq!(u.getattr(f, None).unwrap().nlink, 0);
    u.write(fh, 4, b"!").unwrap();
    let mut buf = [0u8; 16];
    let n = u.read(fh, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"data!");
}

#[test]
fn nlink_counts_only_visible_names_and_copy_up_keeps_the_link() {
    let t = Layers::new(1);
    write(&t.lower(0).join("a/one"), "shared");
    fs::create_dir_all(t.lower(0).join("b")).unwrap();
    fs::hard_link(t.lower(0).join("a/one"), t.lower(0).join("b/two")).unwrap();
    fs::hard_link(t.lower(0).join("a/one"), t.lower(0).join("three")).unwrap();
    let u = t.union(1, "");
    let one = lookup(&u, "a/one").unwrap();
    assert_eq!(u.getattr(one, None).unwrap().nlink, 3);
    assert_eq!(
        lookup(&u, "b/two").unwrap(),
        one,
        "same inode through every name"
    );
    u.remove(ROOT, OsStr::new("three"), false).unwrap();
    assert_eq!(
        u.getattr(one, None).unwrap().nlink,
        2,
        "a whited-out name no longer counts"
    );
    // Writing through one name copies up the file and links its other visible name.
    let fh = u.open(one, OFlags::WRONLY | OFlags::APPEND).unwrap();
    u.write(fh, 6, b"+w").unwrap();
    u.release(fh);
    assert_eq!(
        fs::read_to_string(t.upper().join("b/two")).unwrap(),
        "shared+w"
    );
    assert_eq!(fs::metadata(t.upper().join("a/one")).unwrap().nlink(), 2);
    assert_eq!(
        fs::read_to_string(t.lower(0).join("b/two")).unwrap(),
        "shared"
    );
    // After a remount both names still show one file with the new data.
    let u2 = t.union(1, "");
    let two = lookup(&u2, "b/two").unwrap();
    assert_eq!(read_all(&u2, two), "shared+w");
    assert_eq!(lookup(&u2, "a/one").unwrap(), two);
    assert_eq!(u2.getattr(two, None).unwrap().nlink, 2);
}

#[test]
fn xattr_permissions_2_reads_and_writes_override_stat() {
    let t = Layers::new(1);
    write(&t.lower(0).join("f"), "x");
    fs::set_permissions(t.lower(0).join("f"), fs::Permissions::from_mode(0o600)).unwrap();
    // What containers-storage's force_mask records: the real owner and mode.
    if rustix::fs::setxattr(
        t.lower(0).join("f"),
        "user.containers.override_stat",
        b"0:0:0100755",
        rustix::fs::XattrFlags::empty(),
    )
    .is_err()
    {
        eprintln!("SKIP xattr_permissions: user xattrs not supported here");
        return;
    }
    let u = t.union(1, ",xattr_permissions=2");
    let f = lookup(&u, "f").unwrap();
    let a = u.getattr(f, None).unwrap();
    assert_eq!((a.mode & 0o7777, a.uid, a.gid), (0o755, 0, 0));
    // The override is never shown as an xattr.
    assert!(u
        .getxattr(f, OsStr::new("user.containers.override_stat"))
        .is_err());
    assert!(!String::from_utf8_lossy(&u.listxattr(f).unwrap()).contains("override_stat"));
    // chmod/chown go to the override (after copy-up); the real mode stays as the daemon made it.
    let set = strata_fs::union::SetAttr {
        mode: Some(0o4711),
        uid: Some(1234),
        gid: Some(5678),
        ..Default::default()
    };
    let a = u.setattr(ctx(), f, None, set).unwrap();
    assert_eq!((a.mode & 0o7777, a.uid, a.gid), (0o4711, 1234, 5678));
    assert_eq!(
        fs::metadata(t.upper().join("f")).unwrap().mode() & 0o7777,
        0o600
    );
    let v = rustix::fs::getxattr(
        t.upper().join("f"),
        "user.containers.override_stat",
        &mut [0u8; 64][..],
    )
    .unwrap();
    assert!(v > 0);
    // One change at a time keeps the others: each starts from the override, not the inode.
    let step = |set: strata_fs::union::SetAttr| u.setattr(ctx(), f, None, set).unwrap();
    step(strata_fs::union::SetAttr {
        mode: Some(0o700),
        ..Default::default()
    });
    step(strata_fs::union::SetAttr {
        uid: Some(1000),
        ..Default::default()
    });
    let a = step(strata_fs::union::SetAttr {
        gid: Some(2000),
        ..Default::default()
    });
    assert_eq!((a.mode & 0o7777, a.uid, a.gid), (0o700, 1000, 2000));
    // New files record the caller in the override.
    let (a, _) = u
        .create(
            Ctx { uid: 77, gid: 88 },
            ROOT,
            OsStr::new("new"),
            0o640,
            NewKind::File(OFlags::WRONLY),
        )
        .unwrap();
    assert_eq!((a.mode & 0o7777, a.uid, a.gid), (0o640, 77, 88));
    // Without the option the xattr is an ordinary one and the real mode shows.
    let u2 = t.union(1, "");
    let n = lookup(&u2, "new").unwrap();
    assert_ne!(u2.getattr(n, None).unwrap().uid, 77);
}

#[test]
fn readdir_offsets_survive_changes_to_the_directory() {
    // POSIX readdir(3): an entry neither removed nor added while the directory is read is
    // returned exactly once. The kernel reads big directories in several calls, resuming by
    // offset, with no per-open snapshot (opendir is skipped).
    let t = Layers::new(1);
    for c in 'a'..='z' {
        write(&t.lower(0).join("d").join(c.to_string()), "x");
    }
    let u = t.union(1, "");
    let d = lookup(&u, "d").unwrap();
    let first: Vec<(String, u64)> = u
        .readdir(d, 0)
        .unwrap()
        .from_offset(0)
        .map(|(n, _, _, off)| (String::from_utf8(n.to_vec()).unwrap(), off))
        .collect();
    assert_eq!(first[0].0, ".");
    assert_eq!(first[1].0, "..");
    // Read up to and including "m", then change the directory before the next call.
    let m = first.iter().position(|(n, _)| n == "m").unwrap();
    let resume = first[m].1;
    let seen: Vec<String> = first[..=m].iter().map(|(n, _)| n.clone()).collect();
    // Two names before the reader's position go, one after it comes: positions by sorted
    // index would shift and skip "n" and "o".
    u.remove(d, OsStr::new("b"), false).unwrap();
    u.remove(d, OsStr::new("c"), false).unwrap();
    u.remove(d, OsStr::new("q"), false).unwrap();
    u.create(
        ctx(),
        d,
        OsStr::new("zz"),
        0o644,
        NewKind::File(OFlags::WRONLY),
    )
    .unwrap();
    let rest: Vec<String> = u
        .readdir(d, 0)
        .unwrap()
        .from_offset(resume)
        .map(|(n, _, _, _)| String::from_utf8(n.to_vec()).unwrap())
        .collect();
    let mut all: Vec<String> = seen.into_iter().chain(rest).collect();
    for c in ('a'..='z').filter(|c| *c != 'q') {
        let n = c.to_string();
        assert_eq!(
            all.iter().filter(|x| **x == n).count(),
            1,
            "{n} not returned exactly once: {all:?}"
        );
    }
    assert!(
        !all.contains(&"q".to_string()),
        "q was removed before it was read: {all:?}"
    );
    all.retain(|n| n == "zz");
    assert!(all.len() <= 1);
    // A fresh read sees the new state.
    let now = names(&u, d);
    assert!(now.contains(&"zz".to_string()) && !now.contains(&"c".to_string()));
}

#[test]
fn above_max_inodes_nodes_are_offered_back_and_the_root_never() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Arc, Mutex};
    use std::time::{Duration, Instant};
    let ly = Layers::new(1);
    for i in 0..400 {
        write(&ly.lower(0).join(format!("f{i:03}")), "x");
    }
    let u = Arc::new(ly.union(1, ",max_inodes=64"));
    let (tx, rx) = mpsc::channel::<Vec<u64>>();
    let tx = Mutex::new(tx);
    u.set_pruner(Box::new(move |inos| {
        // The fake kernel below may be gone when a last pass runs.
        let _ = tx.lock().unwrap().send(inos.to_vec());
        Ok(())
    }));
    // Plays the kernel: lets go of each inode offered (looked up once) at once.
    let stop = Arc::new(AtomicBool::new(false));
    let kernel = {
        let (u, stop) = (u.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut offered = 0;
            while !stop.load(Ordering::Relaxed) {
                if let Ok(v) = rx.recv_timeout(Duration::from_millis(20)) {
                    for ino in v {
                        assert_ne!(ino, ROOT, "the root was offered");
                        offered += 1;
                        u.forget(ino, 1);
                    }
                }
            }
            offered
        })
    };
    for i in 0..400 {
        lookup(&u, &format!("f{i:03}")).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while u.node_count() > 64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let offered = kernel.join().unwrap();
    assert!(u.node_count() <= 64, "{} nodes", u.node_count());
    assert!(offered >= 400 - 64, "{offered} offered");
    // Offered inodes come back by lookup as they were.
    assert_eq!(read_all(&u, lookup(&u, "f123").unwrap()), "x");
}

/// `shadows` names the lower objects an entry keeps out of the union, not those a layer in
/// between deleted: a whiteout or an opaque parent in a middle layer removed them first.
#[test]
fn shadows_stop_at_what_a_middle_layer_deleted() {
    let t = Layers::new(3);
    // Stack ids: upper 0, l0 1, l1 2, l2 3.
    for f in ["a", "d/x", "k", "p", "q/z"] {
        write(&t.lower(2).join(f), "bottom");
    }
    write(&t.lower(1).join(".wh.a"), "");
    write(&t.lower(1).join("d/.wh..wh..opq"), "");
    write(&t.lower(1).join("d/y"), "middle");
    write(&t.lower(1).join("k"), "middle");
    write(&t.lower(1).join("q"), "a file where l2 has a directory");
    write(&t.lower(0).join("p"), "top");
    for f in ["a", "d/x", "k", "q/z"] {
        write(&t.upper().join(f), "upper");
    }
    let u = t.union(3, "");
    let shadows = |p: &str| u.provenance(lookup(&u, p).unwrap()).unwrap().shadows;
    assert_eq!(
        shadows("a"),
        Vec::<u16>::new(),
        "l2's a was whited out by l1"
    );
    assert_eq!(
        shadows("d/x"),
        Vec::<u16>::new(),
        "l1's opaque d hid l2's d/x"
    );
    assert_eq!(
        shadows("q/z"),
        Vec::<u16>::new(),
        "l1's file q replaced l2's q/"
    );
    assert_eq!(shadows("k"), vec![2, 3]);
    assert_eq!(shadows("p"), vec![3]);
    drop(u);
    // An opaque root in the middle layer hides everything below it.
    write(&t.lower(1).join(".wh..wh..opq"), "");
    let u = t.union(3, "");
    let shadows = |p: &str| u.provenance(lookup(&u, p).unwrap()).unwrap().shadows;
    assert_eq!(shadows("k"), vec![2]);
}
