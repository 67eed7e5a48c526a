//! Merged lookup and readdir across several lower layers and the upper: which object wins,
//! `.` and `..` everywhere (the root included), and `d_ino == st_ino` for every entry.

use std::fs;
use std::os::unix::fs::MetadataExt;

use strata_tests::*;

fn three_layer_fixture() -> Fixture {
    let fx = Fixture::new(3);
    // lower1 (topmost)
    write(fx.l(0, "a"), "l1-a");
    write(fx.l(0, "d/x1"), "x1");
    write(fx.l(0, "d/shared"), "l1-shared");
    write(fx.l(0, "onlyl1/f"), "onlyl1-f");
    write(fx.l(0, "fileoverdir"), "file");
    write(fx.l(0, "diroverfile/inner"), "inner");
    // lower2
    write(fx.l(1, "a"), "l2-a");
    write(fx.l(1, "b"), "l2-b");
    write(fx.l(1, "d/x2"), "x2");
    write(fx.l(1, "d/shared"), "l2-shared");
    write(fx.l(1, "fileoverdir/hidden"), "hidden");
    write(fx.l(1, "diroverfile"), "a file below a dir");
    // lower3
    write(fx.l(2, "c"), "l3-c");
    write(fx.l(2, "d/x3"), "x3");
    write(fx.l(2, "d/deep/e/f"), "deep");
    mkdirs(fx.l(2, "empty"));
    // upper
    write(fx.u("u"), "up-u");
    write(fx.u("d/xu"), "xu");
    write(fx.u("updir/g"), "g");
    fx
}

#[test]
fn priv_merged_lookup_and_readdir_three_lowers_and_upper() {
    if !require_mount() {
        return;
    }
    let mut fx = three_layer_fixture();
    fx.mount();
    assert_eq!(
        names(&fx.mnt),
        sorted(&[
            ".",
            "..",
            "a",
            "b",
            "c",
            "d",
            "diroverfile",
            "empty",
            "fileoverdir",
            "onlyl1",
            "u",
            "updir"
        ])
    );
    assert_eq!(
        names(fx.m("d")),
        sorted(&[".", "..", "deep", "shared", "x1", "x2", "x3", "xu"])
    );
    assert_eq!(names(fx.m("empty")), sorted(&[".", ".."]));
    assert_eq!(names(fx.m("updir")), sorted(&[".", "..", "g"]));
    assert_eq!(names(fx.m("onlyl1")), sorted(&[".", "..", "f"]));
    assert_eq!(names(fx.m("d/deep/e")), sorted(&[".", "..", "f"]));
    // The topmost layer wins.
    assert_eq!(read_str(fx.m("a")), "l1-a");
    assert_eq!(read_str(fx.m("b")), "l2-b");
    assert_eq!(read_str(fx.m("c")), "l3-c");
    assert_eq!(read_str(fx.m("u")), "up-u");
    assert_eq!(read_str(fx.m("d/shared")), "l1-shared");
    assert_eq!(read_str(fx.m("d/x3")), "x3");
    assert_eq!(read_str(fx.m("d/xu")), "xu");
    assert_eq!(read_str(fx.m("d/deep/e/f")), "deep");
    // A file above a directory hides the directory; a directory above a file hides the file.
    assert!(lstat(fx.m("fileoverdir")).is_file());
    assert_eq!(read_str(fx.m("fileoverdir")), "file");
    assert_eq!(
        errno(
            "stat fileoverdir/hidden",
            fs::metadata(fx.m("fileoverdir/hidden"))
        ),
        libc::ENOTDIR
    );
    assert!(lstat(fx.m("diroverfile")).is_dir());
    assert_eq!(names(fx.m("diroverfile")), sorted(&[".", "..", "inner"]));
    // Missing names.
    assert_eq!(
        errno("stat missing", fs::symlink_metadata(fx.m("missing"))),
        libc::ENOENT
    );
    assert_eq!(
        errno("stat d/missing", fs::symlink_metadata(fx.m("d/missing"))),
        libc::ENOENT
    );
    assert_eq!(
        errno("stat a/x", fs::symlink_metadata(fx.m("a/x"))),
        libc::ENOTDIR
    );
    // The root: inode 1 is FUSE's root id; `.` of the root is the root.
    let root = readdir(&fx.mnt).unwrap();
    let dot = root.iter().find(|e| e.name == ".").unwrap();
    assert_eq!(dot.ino, lstat(&fx.mnt).ino());
    check_tree(&fx.mnt);
}

#[test]
fn priv_readdir_dots_and_inodes_after_changes_and_remount() {
    if !require_mount() {
        return;
    }
    let mut fx = three_layer_fixture();
    fx.mount();
    // Changes through the mount: new file, copy-up, new dir, delete, a dir made in a lower dir.
    write(fx.m("new"), "new");
    append(fx.m("b"), "+");
    mkdirs(fx.m("newdir/sub"));
    write(fx.m("newdir/sub/f"), "f");
    fs::remove_file(fx.m("c")).unwrap();
    write(fx.m("d/deep/made"), "made");
    fs::remove_file(fx.m("d/x2")).unwrap();
    let expect_root = sorted(&[
        ".",
        "..",
        "a",
        "b",
        "d",
        "diroverfile",
        "empty",
        "fileoverdir",
        "new",
        "newdir",
        "onlyl1",
        "u",
        "updir",
    ]);
    assert_eq!(names(&fx.mnt), expect_root);
    assert_eq!(
        names(fx.m("d")),
        sorted(&[".", "..", "deep", "shared", "x1", "x3", "xu"])
    );
    assert_eq!(names(fx.m("d/deep")), sorted(&[".", "..", "e", "made"]));
    assert_eq!(names(fx.m("newdir/sub")), sorted(&[".", "..", "f"]));
    check_tree(&fx.mnt);
    let ino_b = lstat(fx.m("b")).ino();
    let ino_deep = lstat(fx.m("d/deep")).ino();
    fx.remount();
    assert_eq!(names(&fx.mnt), expect_root);
    assert_eq!(read_str(fx.m("b")), "l2-b+");
    assert_eq!(lstat(fx.m("b")).ino(), ino_b);
    assert_eq!(lstat(fx.m("d/deep")).ino(), ino_deep);
    check_tree(&fx.mnt);
}

#[test]
fn priv_readdir_large_merged_directory() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    // Long names so that the listing spans many getdents buffers.
    let name = |i: usize| format!("{i:05}-{}", "n".repeat(120));
    for i in 0..600 {
        write(fx.l(0, &format!("big/{}", name(i))), format!("l1-{i}"));
    }
    for i in 300..900 {
        write(fx.l(1, &format!("big/{}", name(i))), format!("l2-{i}"));
    }
    fx.mount();
    for i in 900..1000 {
        write(fx.m(&format!("big/{}", name(i))), format!("up-{i}"));
    }
    for i in (0..1000).step_by(10) {
        fs::remove_file(fx.m(&format!("big/{}", name(i)))).unwrap();
    }
    let ents = readdir(fx.m("big")).unwrap();
    let mut want: Vec<String> = (0..1000).filter(|i| i % 10 != 0).map(name).collect();
    want.push(".".into());
    want.push("..".into());
    want.sort();
    let got: Vec<String> = ents.iter().map(|e| e.name.clone()).collect();
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    for i in [1, 299, 301, 599, 601, 899, 901, 999] {
        let who = if i < 600 {
            "l1"
        } else if i < 900 {
            "l2"
        } else {
            "up"
        };
        assert_eq!(
            read_str(fx.m(&format!("big/{}", name(i)))),
            format!("{who}-{i}")
        );
    }
    check_dir(&fx.m("big"), false);
}

#[test]
fn priv_readdir_offsets_resume_and_no_duplicates_under_changes() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    for i in 0..150 {
        write(fx.l(0, &format!("s/a{i:03}")), "a");
        write(fx.l(1, &format!("s/b{i:03}")), "b");
    }
    fx.mount();
    let open = |fx: &Fixture| {
        let fd = rx(rustix::fs::open(
            fx.m("s"),
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        ))
        .unwrap();
        rx(rustix::fs::Dir::new(fd)).unwrap()
    };
    let mut all = Vec::new();
    let mut d = open(&fx);
    while let Some(e) = d.read() {
        let e = rx(e).unwrap();
        all.push((e.file_name().to_string_lossy().into_owned(), e.offset()));
    }
    assert_eq!(all.len(), 302);
    // Resuming at the offset of entry k yields exactly the entries after k.
    for k in [0, 1, 2, 57, 150, 300, 301] {
        let mut d = open(&fx);
        rx(d.seek(all[k].1)).unwrap();
        let mut rest = Vec::new();
        while let Some(e) = d.read() {
            rest.push(rx(e).unwrap().file_name().to_string_lossy().into_owned());
        }
        let want: Vec<String> = all[k + 1..].iter().map(|(n, _)| n.clone()).collect();
        assert_eq!(rest, want, "resume after entry {k}");
    }
    // Entries neither added nor removed while a directory is read appear exactly once.
    let mut d = open(&fx);
    let mut seen = Vec::new();
    for _ in 0..40 {
        seen.push(
            rx(d.read().unwrap())
                .unwrap()
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    for i in 0..30 {
        write(fx.m(&format!("s/new{i:02}")), "n");
        fs::remove_file(fx.m(&format!("s/b{:03}", 100 + i))).unwrap();
    }
    while let Some(e) = d.read() {
        seen.push(rx(e).unwrap().file_name().to_string_lossy().into_owned());
    }
    let mut sorted_seen = seen.clone();
    sorted_seen.sort();
    sorted_seen.dedup();
    assert_eq!(
        sorted_seen.len(),
        seen.len(),
        "duplicate entries in one pass"
    );
    for (n, _) in &all {
        let removed = n.starts_with('b') && (100..130).contains(&n[1..].parse::<usize>().unwrap());
        if !removed {
            assert!(
                seen.contains(n),
                "{n} missing from a pass with concurrent changes"
            );
        }
    }
}
