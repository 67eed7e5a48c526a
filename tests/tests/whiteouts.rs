//! Whiteouts and opaque directories: read in every format from lower layers, written as char
//! 0/0 devices (or `.wh.` files with FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT=1), and
//! `rm -rf d; mkdir d` never showing old entries again.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use strata_tests::*;

/// Every object under `root` that is a char 0/0 device, as relative paths.
fn char_whiteouts(root: &Path) -> Vec<String> {
    snapshot(root)
        .into_iter()
        .filter(|(_, s)| s.mode & libc::S_IFMT == libc::S_IFCHR && s.rdev == 0)
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn priv_whiteouts_read_in_every_format_from_lowers() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(3);
    // Objects in lower2 that lower1 hides, each in one format.
    for n in ["wc", "ww", "kept"] {
        write(fx.l(1, n), format!("l2-{n}"));
    }
    mk_char_whiteout(fx.l(0, "wc"));
    write(fx.l(0, ".wh.ww"), "");
    // A whole directory hidden by a whiteout.
    write(fx.l(1, "wdir/f"), "f");
    mk_char_whiteout(fx.l(0, "wdir"));
    // Opaque directories, one per format: lower1's entries show, lower2's do not.
    let formats: [(&str, Option<&str>); 5] = [
        ("d_aufs", None),
        ("d_trusted", Some("trusted.overlay.opaque")),
        ("d_user", Some("user.overlay.opaque")),
        ("d_fuseovl", Some("user.fuseoverlayfs.opaque")),
        ("d_notopaque", Some("trusted.overlay.opaque")),
    ];
    for (d, x) in formats {
        write(fx.l(1, &format!("{d}/below")), "below");
        write(fx.l(0, &format!("{d}/above")), "above");
        match x {
            None => write(fx.l(0, &format!("{d}/.wh..wh..opq")), ""),
            Some(name) => {
                let v: &[u8] = if d == "d_notopaque" { b"x" } else { b"y" };
                xattr_set(fx.l(0, d), name, v);
            }
        }
    }
    // Whiteouts in a middle layer hide only what is below them.
    write(fx.l(2, "gone"), "l3-gone");
    mk_char_whiteout(fx.l(1, "gone"));
    write(fx.l(2, "revived"), "l3-revived");
    write(fx.l(1, ".wh.revived"), "");
    write(fx.l(0, "revived"), "l1-revived");
    // Opaque in the middle: lower3's entries are cut, lower1's and lower2's merge.
    write(fx.l(2, "dm/low"), "low");
    write(fx.l(1, "dm/mid"), "mid");
    write(fx.l(1, "dm/.wh..wh..opq"), "");
    write(fx.l(0, "dm/top"), "top");
    // A whiteout inside a merged directory.
    write(fx.l(1, "sub/x"), "x");
    write(fx.l(1, "sub/y"), "y");
    write(fx.l(0, "sub/.wh.x"), "");
    // An upper in the `.wh.` format written by an earlier mount.
    write(fx.l(1, "upwh"), "hidden by the upper");
    write(fx.u(".wh.upwh"), "");
    fx.mount();

    assert_eq!(
        names(&fx.mnt),
        sorted(&[
            ".",
            "..",
            "d_aufs",
            "d_fuseovl",
            "d_notopaque",
            "d_trusted",
            "d_user",
            "dm",
            "kept",
            "revived",
            "sub"
        ])
    );
    for hidden in [
        "wc",
        "ww",
        "wdir",
        "wdir/f",
        "gone",
        "upwh",
        ".wh.ww",
        ".wh.revived",
        "sub/x",
        "sub/.wh.x",
    ] {
        assert_eq!(
            errno(hidden, fs::symlink_metadata(fx.m(hidden))),
            libc::ENOENT,
            "{hidden} must be hidden"
        );
    }
    for (d, _) in formats {
        let want: &[&str] = if d == "d_notopaque" {
            &[".", "..", "above", "below"]
        } else {
            &[".", "..", "above"]
        };
        assert_eq!(names(fx.m(d)), sorted(want), "{d}");
        if d != "d_notopaque" {
            assert_eq!(
                errno(d, fs::symlink_metadata(fx.m(&format!("{d}/below")))),
                libc::ENOENT,
                "{d}/below"
            );
        }
    }
    assert_eq!(
        errno(
            "opq marker",
            fs::symlink_metadata(fx.m("d_aufs/.wh..wh..opq"))
        ),
        libc::ENOENT
    );
    assert_eq!(read_str(fx.m("revived")), "l1-revived");
    assert_eq!(read_str(fx.m("kept")), "l2-kept");
    assert_eq!(names(fx.m("dm")), sorted(&[".", "..", "mid", "top"]));
    assert_eq!(names(fx.m("sub")), sorted(&[".", "..", "y"]));
    // The opaque xattrs are overlay bookkeeping: not shown through the mount.
    let x = xattr_list(fx.m("d_trusted")).unwrap();
    assert!(
        !x.iter().any(|n| n.contains("overlay")),
        "private xattrs visible: {x:?}"
    );
    // A hidden name can be created again, with none of the old content.
    write(fx.m("wc"), "new-wc");
    assert_eq!(read_str(fx.m("wc")), "new-wc");
    mkdirs(fx.m("wdir"));
    assert_eq!(names(fx.m("wdir")), sorted(&[".", ".."]));
}

#[test]
fn priv_whiteouts_written_as_char_devices() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "f"), "f");
    write(fx.l(0, "g"), "g");
    write(fx.l(0, "dd/inner/x"), "x");
    write(fx.l(0, "keep/y"), "y");
    fx.mount();
    fs::remove_file(fx.m("f")).unwrap();
    append(fx.m("g"), "+"); // copied up, then removed: the lower one must stay hidden
    fs::remove_file(fx.m("g")).unwrap();
    fs::remove_dir_all(fx.m("dd")).unwrap();
    write(fx.m("uponly"), "u");
    fs::remove_file(fx.m("uponly")).unwrap();
    fs::remove_file(fx.m("keep/y")).unwrap();
    for n in ["f", "g", "dd", "keep/y"] {
        let md = lstat(fx.u(n));
        assert!(
            is_char_whiteout(&md),
            "upper/{n}: expected a char 0/0 whiteout, mode {:o} rdev {}",
            md.mode(),
            md.rdev()
        );
    }
    assert_eq!(
        errno("upper/uponly", fs::symlink_metadata(fx.u("uponly"))),
        libc::ENOENT,
        "no whiteout for an upper-only file"
    );
    let wh: Vec<String> = fs::read_dir(&fx.upper)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".wh."))
        .collect();
    assert!(wh.is_empty(), "no .wh. files expected in char mode: {wh:?}");
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "keep"]));
    assert_eq!(names(fx.m("keep")), sorted(&[".", ".."]));
    fx.remount();
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "keep"]));
    for n in ["f", "g", "dd", "dd/inner/x", "keep/y", "uponly"] {
        assert_eq!(
            errno(n, fs::symlink_metadata(fx.m(n))),
            libc::ENOENT,
            "{n} after remount"
        );
    }
    assert_eq!(read_str(fx.l(0, "g")), "g", "lower untouched");
}

#[test]
fn priv_whiteouts_written_as_wh_files_with_env() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    fx.env
        .push(("FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT".into(), "1".into()));
    write(fx.l(0, "f"), "f");
    write(fx.l(0, "g"), "g");
    write(fx.l(0, "dd/inner/x"), "x");
    write(fx.l(0, "re/old"), "old");
    fx.mount();
    fs::remove_file(fx.m("f")).unwrap();
    append(fx.m("g"), "+");
    fs::remove_file(fx.m("g")).unwrap();
    fs::remove_dir_all(fx.m("dd")).unwrap();
    fs::remove_dir_all(fx.m("re")).unwrap();
    mkdirs(fx.m("re"));
    write(fx.m("re/new"), "new");
    for n in ["f", "g", "dd"] {
        let md = lstat(fx.u(&format!(".wh.{n}")));
        assert!(md.is_file(), "upper/.wh.{n} must be a regular file");
        assert_eq!(
            errno(n, fs::symlink_metadata(fx.u(n))),
            libc::ENOENT,
            "upper/{n} must not exist"
        );
    }
    assert!(
        lstat(fx.u("re/.wh..wh..opq")).is_file(),
        "re-created dir must be opaque with a .wh..wh..opq marker"
    );
    assert_eq!(
        char_whiteouts(&fx.upper),
        Vec::<String>::new(),
        "no char devices in .wh. mode"
    );
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "re"]));
    assert_eq!(names(fx.m("re")), sorted(&[".", "..", "new"]));
    fx.remount();
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "re"]));
    assert_eq!(names(fx.m("re")), sorted(&[".", "..", "new"]));
    // Without the variable the same upper still reads the same.
    fx.env.clear();
    fx.remount();
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "re"]));
    assert_eq!(names(fx.m("re")), sorted(&[".", "..", "new"]));
    assert_eq!(
        errno("re/old", fs::symlink_metadata(fx.m("re/old"))),
        libc::ENOENT
    );
}

fn rm_rf_mkdir(wh_files: bool) {
    let mut fx = Fixture::new(2);
    if wh_files {
        fx.env
            .push(("FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT".into(), "1".into()));
    }
    write(fx.l(0, "d/a"), "a");
    write(fx.l(0, "d/sub/c"), "c");
    write(fx.l(1, "d/b"), "b");
    write(fx.l(1, "d/sub/e"), "e");
    write(fx.l(1, "e/only-lower"), "x");
    fx.mount();
    // d is merged and partly copied up before it is removed.
    write(fx.m("d/made-in-upper"), "m");
    fs::remove_dir_all(fx.m("d")).unwrap();
    fs::create_dir(fx.m("d")).unwrap();
    fs::remove_dir_all(fx.m("e")).unwrap();
    fs::create_dir(fx.m("e")).unwrap();
    let check = |fx: &Fixture, when: &str| {
        assert_eq!(names(fx.m("d")), sorted(&[".", ".."]), "{when}");
        assert_eq!(names(fx.m("e")), sorted(&[".", ".."]), "{when}");
        for n in [
            "d/a",
            "d/b",
            "d/sub",
            "d/sub/c",
            "d/made-in-upper",
            "e/only-lower",
        ] {
            assert_eq!(
                errno(n, fs::symlink_metadata(fx.m(n))),
                libc::ENOENT,
                "{n} reachable by name {when}"
            );
        }
    };
    check(&fx, "right after mkdir");
    fx.remount();
    check(&fx, "after remount");
    write(fx.m("d/a"), "new-a");
    mkdirs(fx.m("d/sub"));
    assert_eq!(read_str(fx.m("d/a")), "new-a");
    assert_eq!(
        names(fx.m("d/sub")),
        sorted(&[".", ".."]),
        "a new d/sub must not show old d/sub's entries"
    );
    fx.remount();
    assert_eq!(names(fx.m("d")), sorted(&[".", "..", "a", "sub"]));
    assert_eq!(names(fx.m("d/sub")), sorted(&[".", ".."]));
    assert_eq!(
        errno("d/b", fs::symlink_metadata(fx.m("d/b"))),
        libc::ENOENT
    );
}

#[test]
fn priv_rm_rf_then_mkdir_hides_old_entries_char_whiteouts() {
    if !require_mount() {
        return;
    }
    rm_rf_mkdir(false);
}

#[test]
fn priv_rm_rf_then_mkdir_hides_old_entries_wh_whiteouts() {
    if !require_mount() {
        return;
    }
    rm_rf_mkdir(true);
}

#[test]
fn priv_new_names_never_show_what_lower_layers_hid() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    // x: a lower2 directory hidden by a lower1 file; y, z: hidden by lower1 whiteouts.
    write(fx.l(0, "x"), "file");
    write(fx.l(1, "x/secret"), "s");
    write(fx.l(0, ".wh.y"), "");
    write(fx.l(1, "y/secret"), "s");
    mk_char_whiteout(fx.l(0, "z"));
    write(fx.l(1, "z/secret"), "s");
    // w: opaque in lower1, so lower2's w/sub is hidden; dd: a directory to replace by a file.
    write(fx.l(0, "w/.wh..wh..opq"), "");
    write(fx.l(0, "w/top"), "t");
    write(fx.l(1, "w/sub/inner"), "i");
    write(fx.l(0, "dd/a"), "a");
    write(fx.l(1, "full/x"), "x");
    write(fx.l(0, "emptied/x"), "x");
    fx.mount();
    assert!(lstat(fx.m("x")).is_file());
    fs::remove_file(fx.m("x")).unwrap();
    for d in ["x", "y", "z", "w/sub"] {
        fs::create_dir(fx.m(d)).unwrap_or_else(|e| panic!("mkdir {d}: {e}"));
    }
    fs::remove_dir_all(fx.m("dd")).unwrap();
    write(fx.m("dd"), "now a file");
    // rmdir: refused while lower entries show, allowed once they are all deleted.
    assert_eq!(
        errno("rmdir full", fs::remove_dir(fx.m("full"))),
        libc::ENOTEMPTY
    );
    assert_eq!(
        errno("unlink dir", fs::remove_file(fx.m("full"))),
        libc::EISDIR
    );
    fs::remove_file(fx.m("emptied/x")).unwrap();
    fs::remove_dir(fx.m("emptied")).expect("rmdir of a directory emptied in the union");
    let check = |fx: &Fixture, when: &str| {
        for d in ["x", "y", "z", "w/sub"] {
            assert_eq!(names(fx.m(d)), sorted(&[".", ".."]), "{d} {when}");
        }
        assert_eq!(
            names(fx.m("w")),
            sorted(&[".", "..", "sub", "top"]),
            "{when}"
        );
        assert_eq!(read_str(fx.m("dd")), "now a file", "{when}");
        assert_eq!(names(fx.m("full")), sorted(&[".", "..", "x"]), "{when}");
        assert_eq!(
            errno("emptied", fs::symlink_metadata(fx.m("emptied"))),
            libc::ENOENT,
            "{when}"
        );
    };
    check(&fx, "before remount");
    fx.remount();
    check(&fx, "after remount");
}
