//! Hard links (st_ino, st_nlink) and rename / renameat2 (NOREPLACE, EXCHANGE), including
//! renames over whited-out names and of lower directories.

use std::fs;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{renameat_with, RenameFlags, CWD};
use strata_tests::*;

fn rename2(a: &Path, b: &Path, flags: RenameFlags) -> std::io::Result<()> {
    rx(renameat_with(CWD, a, CWD, b, flags))
}

#[test]
fn priv_lower_hard_links_share_inode_and_nlink() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    write(fx.l(0, "a"), "pair");
    fs::hard_link(fx.l(0, "a"), fx.l(0, "b")).unwrap();
    write(fx.l(1, "c1"), "triple");
    mkdirs(fx.l(1, "sub"));
    fs::hard_link(fx.l(1, "c1"), fx.l(1, "c2")).unwrap();
    fs::hard_link(fx.l(1, "c1"), fx.l(1, "sub/c3")).unwrap();
    fx.mount();
    // Look the second name up first: nlink must not depend on which names were seen.
    let b = lstat(fx.m("b"));
    assert_eq!(b.nlink(), 2, "nlink of b looked up first");
    let a = lstat(fx.m("a"));
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    let c3 = lstat(fx.m("sub/c3"));
    assert_eq!(c3.nlink(), 3, "nlink of sub/c3 looked up first");
    for n in ["c1", "c2"] {
        let md = lstat(fx.m(n));
        assert_eq!((md.ino(), md.nlink()), (c3.ino(), 3), "{n}");
    }
    let root = readdir(&fx.mnt).unwrap();
    let d_ino = |n: &str| root.iter().find(|e| e.name == n).unwrap().ino;
    assert_eq!(d_ino("a"), d_ino("b"));
    assert_eq!(d_ino("a"), a.ino());
    assert_eq!(read_str(fx.m("b")), "pair");
}

/// A lower file whose other links are outside its layer (a `cp -al` copy, an ostree checkout)
/// has one name in the union, and one name is what `st_nlink` says; one with a second name in
/// the layer beside an outside link counts the two.
#[test]
fn priv_links_outside_the_layer_are_not_counted() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "solo"), "1");
    write(fx.l(0, "pair1"), "2");
    fs::hard_link(fx.l(0, "pair1"), fx.l(0, "pair2")).unwrap();
    let outside = fx.root().join("outside");
    mkdirs(&outside);
    fs::hard_link(fx.l(0, "solo"), outside.join("solo")).unwrap();
    fs::hard_link(fx.l(0, "pair1"), outside.join("pair1")).unwrap();
    fx.mount();
    assert_eq!(lstat(fx.m("solo")).nlink(), 1);
    assert_eq!(lstat(fx.m("pair1")).nlink(), 2);
    assert_eq!(lstat(fx.m("pair2")).nlink(), 2);
    assert_eq!(read_str(fx.m("solo")), "1");
}

/// A layer directory may hold mount points, and inode numbers repeat across filesystems: two
/// tmpfs with the same history number their files alike (per-superblock counters, mm/shmem.c),
/// so the union's inode numbers and its link index must tell them apart by device. Mounts inside a lower are seen only
/// where lowers are not opened as private clones (which, like kernel overlayfs's, leave
/// submounts out): by a plain user without a user namespace, mounting through fusermount3.
#[test]
fn priv_a_mount_inside_a_layer_keeps_its_own_inodes_and_links() {
    if !require_all(&[Need::Root, Need::Fuse, Need::UnprivUser]) {
        return;
    }
    let (uid, gid) = unpriv_ids().expect("unprivileged user");
    let fx = Fixture::new(1);
    chmod(fx.root(), 0o755);
    for d in [&fx.upper, &fx.work, &fx.mnt] {
        lchown(d, uid, gid);
    }
    let tmpfs = |p: &Path| {
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "mode=755", "tmpfs"])
            .arg(p)
            .status()
            .unwrap();
        assert!(ok.success(), "mount tmpfs on {}", p.display());
        MountGuard::new(p)
    };
    let low = fx.lower(0).to_path_buf();
    let _outer = tmpfs(&low);
    let populate = |d: &Path, what: &str| {
        write(d.join("x"), what);
        fs::hard_link(d.join("x"), d.join("y")).unwrap();
    };
    populate(&low, "outer");
    mkdirs(low.join("n"));
    let _inner = tmpfs(&low.join("n"));
    populate(&low.join("n"), "inner");
    let (a, b) = (lstat(low.join("x")), lstat(low.join("n/x")));
    assert_eq!(
        a.ino(),
        b.ino(),
        "the premise: equal inode numbers on two devices"
    );
    assert_ne!(a.dev(), b.dev());
    let as_user = |args: &[&std::ffi::OsStr]| {
        let mut c = unpriv_command(uid, gid);
        c.args(args);
        let out = run_timeout(&mut c, MOUNT_TIMEOUT);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let opts = fx.option_string();
    as_user(&[
        mount_program().as_os_str(),
        "-o".as_ref(),
        opts.as_ref(),
        fx.mnt.as_os_str(),
    ]);
    let _mounted = MountGuard::new(&fx.mnt);
    let names: Vec<_> = ["x", "y", "n/x", "n/y"].iter().map(|f| fx.m(f)).collect();
    // Two inodes, each with its two names and its own data: the union numbers the inner
    // filesystem's files apart from the outer's (else the kernel takes them for one inode).
    let mut args: Vec<&std::ffi::OsStr> = vec!["stat".as_ref(), "-c".as_ref(), "%h %i".as_ref()];
    args.extend(names.iter().map(|p| p.as_os_str()));
    let out = as_user(&args);
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows.iter().all(|r| r.starts_with("2 ")), "{out}");
    assert!(
        rows[0] == rows[1] && rows[2] == rows[3] && rows[0] != rows[2],
        "{out}"
    );
    let mut cat: Vec<&std::ffi::OsStr> = vec!["cat".as_ref()];
    cat.extend(names.iter().map(|p| p.as_os_str()));
    assert_eq!(as_user(&cat), "outerouterinnerinner");
    as_user(&["fusermount3".as_ref(), "-u".as_ref(), fx.mnt.as_os_str()]);
}

#[test]
fn priv_new_hard_links_have_correct_nlink() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "s"), "lower-single");
    fx.mount();
    write(fx.m("n"), "new");
    fs::hard_link(fx.m("n"), fx.m("n2")).unwrap();
    let (n, n2) = (lstat(fx.m("n")), lstat(fx.m("n2")));
    assert_eq!((n.ino(), n.nlink()), (n2.ino(), 2));
    assert_eq!(n2.nlink(), 2);
    mkdirs(fx.m("dir"));
    fs::hard_link(fx.m("n2"), fx.m("dir/n3")).unwrap();
    for p in ["n", "n2", "dir/n3"] {
        assert_eq!(lstat(fx.m(p)).nlink(), 3, "{p} after the third link");
    }
    fs::remove_file(fx.m("n")).unwrap();
    for p in ["n2", "dir/n3"] {
        assert_eq!(lstat(fx.m(p)).nlink(), 2, "{p} after unlinking n");
    }
    // A link to a lower file: copy-up, then two names of one inode.
    let s_ino = lstat(fx.m("s")).ino();
    fs::hard_link(fx.m("s"), fx.m("s2")).unwrap();
    let (s, s2) = (lstat(fx.m("s")), lstat(fx.m("s2")));
    assert_eq!((s.ino(), s.nlink()), (s_ino, 2));
    assert_eq!((s2.ino(), s2.nlink()), (s_ino, 2));
    assert_eq!(lstat(fx.u("s")).ino(), lstat(fx.u("s2")).ino());
    append(fx.m("s2"), "+");
    assert_eq!(read_str(fx.m("s")), "lower-single+");
    assert_eq!(read_str(fx.l(0, "s")), "lower-single");
    let n2_ino = lstat(fx.m("n2")).ino();
    fx.remount();
    let (s, s2) = (lstat(fx.m("s")), lstat(fx.m("s2")));
    assert_eq!(
        (s.ino(), s.nlink(), s2.ino(), s2.nlink()),
        (s_ino, 2, s_ino, 2),
        "after remount"
    );
    let n2 = lstat(fx.m("n2"));
    assert_eq!((n2.ino(), n2.nlink()), (n2_ino, 2));
    assert_eq!(read_str(fx.m("dir/n3")), "new");
}

#[test]
fn priv_hard_link_written_through_second_name_survives_remount() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "a"), "orig");
    fs::hard_link(fx.l(0, "a"), fx.l(0, "b")).unwrap();
    fx.mount();
    // Look `a` up first so the daemon knows the inode under that name, then write through b.
    assert_eq!(read_str(fx.m("a")), "orig");
    append(fx.m("b"), "+via-b");
    assert_eq!(read_str(fx.m("b")), "orig+via-b");
    fx.remount();
    assert_eq!(
        read_str(fx.m("b")),
        "orig+via-b",
        "data written through name b lost after remount"
    );
    assert_eq!(read_str(fx.l(0, "a")), "orig", "lower changed");
}

#[test]
fn priv_rename_files_and_upper_dirs() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "lf"), "lower-file");
    write(fx.l(0, "ldir/x"), "x");
    fx.mount();
    fs::rename(fx.m("lf"), fx.m("lf-moved")).unwrap();
    write(fx.m("uf"), "upper-file");
    fs::rename(fx.m("uf"), fx.m("ldir/uf-moved")).unwrap();
    mkdirs(fx.m("ud/sub"));
    write(fx.m("ud/sub/deep"), "deep");
    write(fx.m("ud/top"), "top");
    fs::rename(fx.m("ud"), fx.m("ud2")).unwrap();
    mkdirs(fx.m("holder"));
    fs::rename(fx.m("ud2"), fx.m("holder/ud3")).unwrap();
    let check = |fx: &Fixture, when: &str| {
        assert_eq!(
            names(&fx.mnt),
            sorted(&[".", "..", "holder", "ldir", "lf-moved"]),
            "{when}"
        );
        assert_eq!(read_str(fx.m("lf-moved")), "lower-file", "{when}");
        assert_eq!(read_str(fx.m("ldir/uf-moved")), "upper-file", "{when}");
        assert_eq!(
            names(fx.m("ldir")),
            sorted(&[".", "..", "uf-moved", "x"]),
            "{when}"
        );
        assert_eq!(
            names(fx.m("holder/ud3")),
            sorted(&[".", "..", "sub", "top"]),
            "{when}"
        );
        assert_eq!(read_str(fx.m("holder/ud3/sub/deep")), "deep", "{when}");
        for gone in ["lf", "uf", "ud", "ud2"] {
            assert_eq!(
                errno(gone, fs::symlink_metadata(fx.m(gone))),
                libc::ENOENT,
                "{gone} {when}"
            );
        }
    };
    check(&fx, "before remount");
    check_tree(&fx.mnt);
    assert!(
        is_char_whiteout(&lstat(fx.u("lf"))),
        "renamed lower file leaves a whiteout"
    );
    fx.remount();
    check(&fx, "after remount");
    check_tree(&fx.mnt);
    assert_eq!(read_str(fx.l(0, "lf")), "lower-file");
}

#[test]
fn priv_rename_over_existing_entries() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "src"), "src");
    write(fx.l(0, "dst"), "dst");
    write(fx.l(0, "le/x"), "x");
    write(fx.l(0, "full/y"), "y");
    write(fx.l(0, "file"), "file");
    mkdirs(fx.l(0, "emptydir"));
    fx.mount();
    fs::rename(fx.m("src"), fx.m("dst")).unwrap();
    assert_eq!(read_str(fx.m("dst")), "src");
    assert_eq!(
        errno("src", fs::symlink_metadata(fx.m("src"))),
        libc::ENOENT
    );
    write(fx.m("u1"), "u1");
    write(fx.m("u2"), "u2");
    fs::rename(fx.m("u1"), fx.m("u2")).unwrap();
    assert_eq!(read_str(fx.m("u2")), "u1");
    // An upper dir over a lower dir that is empty in the union: x must not come back.
    fs::remove_file(fx.m("le/x")).unwrap();
    mkdirs(fx.m("ud"));
    write(fx.m("ud/mine"), "mine");
    fs::rename(fx.m("ud"), fx.m("le")).unwrap();
    assert_eq!(names(fx.m("le")), sorted(&[".", "..", "mine"]));
    // Errors.
    mkdirs(fx.m("ud2"));
    assert_eq!(
        errno("dir over non-empty", fs::rename(fx.m("ud2"), fx.m("full"))),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno("file over dir", fs::rename(fx.m("file"), fx.m("emptydir"))),
        libc::EISDIR
    );
    assert_eq!(
        errno("dir over file", fs::rename(fx.m("ud2"), fx.m("file"))),
        libc::ENOTDIR
    );
    assert_eq!(
        errno("missing source", fs::rename(fx.m("nope"), fx.m("x"))),
        libc::ENOENT
    );
    fs::rename(fx.m("ud2"), fx.m("emptydir")).unwrap();
    fx.remount();
    assert_eq!(read_str(fx.m("dst")), "src");
    assert_eq!(read_str(fx.m("u2")), "u1");
    assert_eq!(names(fx.m("le")), sorted(&[".", "..", "mine"]));
    assert_eq!(names(fx.m("full")), sorted(&[".", "..", "y"]));
    assert_eq!(names(fx.m("emptydir")), sorted(&[".", ".."]));
    assert_eq!(
        names(&fx.mnt),
        sorted(&[".", "..", "dst", "emptydir", "file", "full", "le", "u2"])
    );
    assert_eq!(read_str(fx.l(0, "dst")), "dst", "lower unchanged");
}

#[test]
fn priv_renameat2_noreplace_and_exchange() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    for n in ["a", "b", "c", "wh", "e1", "e2"] {
        write(fx.l(0, n), format!("lower-{n}"));
    }
    fx.mount();
    // NOREPLACE: over an existing name EEXIST, over a missing or whited-out name it works.
    assert_eq!(
        errno(
            "noreplace over b",
            rename2(&fx.m("a"), &fx.m("b"), RenameFlags::NOREPLACE)
        ),
        libc::EEXIST
    );
    assert_eq!(read_str(fx.m("a")), "lower-a");
    assert_eq!(read_str(fx.m("b")), "lower-b");
    rename2(&fx.m("a"), &fx.m("fresh"), RenameFlags::NOREPLACE).unwrap();
    fs::remove_file(fx.m("wh")).unwrap();
    rename2(&fx.m("c"), &fx.m("wh"), RenameFlags::NOREPLACE)
        .expect("RENAME_NOREPLACE over a whited-out name");
    assert_eq!(read_str(fx.m("wh")), "lower-c");
    assert_eq!(
        errno("c moved", fs::symlink_metadata(fx.m("c"))),
        libc::ENOENT
    );
    // EXCHANGE: two lower files, a lower and an upper file.
    rename2(&fx.m("e1"), &fx.m("e2"), RenameFlags::EXCHANGE)
        .expect("RENAME_EXCHANGE of two lower files");
    assert_eq!(read_str(fx.m("e1")), "lower-e2");
    assert_eq!(read_str(fx.m("e2")), "lower-e1");
    write(fx.m("up"), "upper");
    rename2(&fx.m("up"), &fx.m("b"), RenameFlags::EXCHANGE).unwrap();
    assert_eq!(read_str(fx.m("up")), "lower-b");
    assert_eq!(read_str(fx.m("b")), "upper");
    assert_eq!(
        errno(
            "exchange with missing",
            rename2(&fx.m("b"), &fx.m("missing"), RenameFlags::EXCHANGE)
        ),
        libc::ENOENT
    );
    fs::remove_file(fx.m("fresh")).unwrap();
    assert_eq!(
        errno(
            "exchange with whited-out",
            rename2(&fx.m("b"), &fx.m("fresh"), RenameFlags::EXCHANGE)
        ),
        libc::ENOENT
    );
    // Two names of one inode: rename does nothing and both names stay.
    fs::hard_link(fx.m("up"), fx.m("up-link")).unwrap();
    fs::rename(fx.m("up"), fx.m("up-link")).unwrap();
    assert_eq!(read_str(fx.m("up")), "lower-b");
    assert_eq!(read_str(fx.m("up-link")), "lower-b");
    fs::remove_file(fx.m("up-link")).unwrap();
    let expect = sorted(&[".", "..", "b", "e1", "e2", "up", "wh"]);
    assert_eq!(names(&fx.mnt), expect);
    fx.remount();
    assert_eq!(names(&fx.mnt), expect);
    for (n, c) in [
        ("b", "upper"),
        ("e1", "lower-e2"),
        ("e2", "lower-e1"),
        ("up", "lower-b"),
        ("wh", "lower-c"),
    ] {
        assert_eq!(read_str(fx.m(n)), c, "{n} after remount");
    }
    for n in ["a", "b", "c", "wh", "e1", "e2"] {
        assert_eq!(
            read_str(fx.l(0, n)),
            format!("lower-{n}"),
            "lower {n} changed"
        );
    }
}

#[test]
fn priv_rename_of_lower_directory_is_exdev_or_complete() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    write(fx.l(0, "ld/a"), "a");
    write(fx.l(1, "ld/b"), "b");
    write(fx.l(1, "ld/sub/c"), "c");
    write(fx.l(0, "lonly/x"), "x");
    fx.mount();
    write(fx.m("ld/u"), "u"); // merged: upper + two lowers
    for (from, to, kids) in [
        ("ld", "ld-moved", vec![".", "..", "a", "b", "sub", "u"]),
        ("lonly", "lonly-moved", vec![".", "..", "x"]),
    ] {
        match fs::rename(fx.m(from), fx.m(to)) {
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "rename {from}: {e}");
                assert_eq!(
                    names(fx.m(from)),
                    sorted(&kids),
                    "{from} unchanged after EXDEV"
                );
            }
            Ok(()) => {
                assert_eq!(names(fx.m(to)), sorted(&kids), "{to} after rename");
                assert_eq!(errno(from, fs::symlink_metadata(fx.m(from))), libc::ENOENT);
                fx.remount();
                assert_eq!(names(fx.m(to)), sorted(&kids), "{to} after remount");
                assert_eq!(
                    errno(from, fs::symlink_metadata(fx.m(from))),
                    libc::ENOENT,
                    "{from} after remount"
                );
            }
        }
    }
}

#[test]
fn priv_lower_hard_link_nlink_follows_unlinks() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "a"), "three");
    fs::hard_link(fx.l(0, "a"), fx.l(0, "b")).unwrap();
    fs::hard_link(fx.l(0, "a"), fx.l(0, "c")).unwrap();
    fx.mount();
    assert_eq!(lstat(fx.m("c")).nlink(), 3);
    fs::remove_file(fx.m("a")).unwrap();
    assert_eq!(lstat(fx.m("b")).nlink(), 2, "b after unlinking a");
    assert_eq!(lstat(fx.m("c")).nlink(), 2, "c after unlinking a");
    fx.remount();
    assert_eq!(
        lstat(fx.m("c")).nlink(),
        2,
        "c after unlinking a and a remount"
    );
    assert_eq!(
        lstat(fx.m("b")).nlink(),
        2,
        "b after unlinking a and a remount"
    );
    assert_eq!(lstat(fx.m("b")).ino(), lstat(fx.m("c")).ino());
    assert_eq!(lstat(fx.l(0, "a")).nlink(), 3, "lower changed");
}

#[test]
fn priv_rename_of_recreated_directory_and_of_directory_with_open_file() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "d/old"), "old");
    fx.mount();
    // A directory re-created over a deleted lower one is upper-only (opaque): it can move,
    // and the old name must stay deleted.
    fs::remove_dir_all(fx.m("d")).unwrap();
    fs::create_dir(fx.m("d")).unwrap();
    write(fx.m("d/new"), "new");
    fs::rename(fx.m("d"), fx.m("e")).expect("rename of a re-created directory");
    assert_eq!(names(fx.m("e")), sorted(&[".", "..", "new"]));
    assert_eq!(errno("d", fs::symlink_metadata(fx.m("d"))), libc::ENOENT);
    // A directory renamed while a file in it is open: writes follow the file.
    mkdirs(fx.m("ud"));
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(fx.m("ud/f"))
        .unwrap();
    f.write_all(b"before ").unwrap();
    fs::rename(fx.m("ud"), fx.m("ud2")).unwrap();
    f.write_all(b"after").unwrap();
    assert_eq!(f.metadata().unwrap().len(), 12);
    drop(f);
    assert_eq!(read_str(fx.m("ud2/f")), "before after");
    xattr_set(fx.m("ud2/f"), "user.moved", b"1");
    fx.remount();
    assert_eq!(names(fx.m("e")), sorted(&[".", "..", "new"]));
    assert_eq!(
        errno("d after remount", fs::symlink_metadata(fx.m("d"))),
        libc::ENOENT
    );
    assert_eq!(read_str(fx.m("ud2/f")), "before after");
    assert_eq!(xattr_get(fx.m("ud2/f"), "user.moved").unwrap(), b"1");
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "e", "ud2"]));
}

#[test]
fn priv_open_objects_replaced_by_rename_stay_usable() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    mkdirs(fx.l(0, "B"));
    write(fx.l(0, "g"), "lower g");
    fx.mount();
    // A merged directory (copied up, lower below) replaced by renaming another dir over it.
    chmod(fx.m("B"), 0o755);
    fs::create_dir(fx.m("A")).unwrap();
    let b = fs::File::open(fx.m("B")).unwrap();
    fs::rename(fx.m("A"), fx.m("B")).unwrap();
    let md = b
        .metadata()
        .expect("fstat of a directory replaced by rename");
    assert!(
        md.is_dir(),
        "fd on the replaced directory is no longer a directory"
    );
    rx(rustix::fs::fchmod(
        &b,
        rustix::fs::Mode::from_raw_mode(0o700),
    ))
    .expect("fchmod of a directory replaced by rename");
    rx(rustix::fs::fchown(
        &b,
        Some(rustix::fs::Uid::from_raw(5)),
        None,
    ))
    .expect("fchown of a directory replaced by rename");
    let md = b.metadata().unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid()), (0o700, 5));
    drop(b);
    assert_eq!(names(fx.m("B")), sorted(&[".", ".."]));
    assert_eq!(
        lstat(fx.m("B")).mode() & 0o7777,
        0o755,
        "the new B was changed"
    );
    // A lower file replaced by renaming a new file over it.
    write(fx.m("f"), "new f");
    let g = fs::File::open(fx.m("g")).unwrap();
    fs::rename(fx.m("f"), fx.m("g")).unwrap();
    let md = g.metadata().expect("fstat of a file replaced by rename");
    assert_eq!((md.len(), md.nlink()), (7, 0));
    let mut s = String::new();
    std::io::Read::read_to_string(&mut &g, &mut s).unwrap();
    assert_eq!(s, "lower g");
    drop(g);
    assert_eq!(read_str(fx.m("g")), "new f");
}
