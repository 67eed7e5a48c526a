//! The debugging views (issue 4): `strata mount IMAGE` (as of layer N, writable, diff),
//! provenance xattrs, `strata which`, `strata layers`, all on real FUSE mounts.
//!
//! The layer-N view is checked against an independent extraction (`strata_tests::reference`,
//! which shares no code with strata) of layers 1..N applied in order, on the podman-made test
//! images and on images built here.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use strata_tests::oci::*;
use strata_tests::reference::{apply_archive, apply_layers};

use strata_tests::store::*;
use strata_tests::*;

// Facts from tests/data/images/README.md (the spec of the test data, not outputs of strata).
const BB_L1: &str = "sha256:1de107a7521c2a027ea12fbb236bc818adf4168d344ee5ad28f2a778d42892c4";
const BB_L2: &str = "sha256:aebb72f77720794bbc774067ea1b14cca2cbcd4559bf48db73f659b7d11b162c";
const BB: &str = "localhost/bb-test:2";

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/images")
        .join(name)
}

/// A mountpoint that is unmounted (through `strata umount`, else by force) when dropped.
struct Mnt<'a> {
    st: &'a Store,
    path: PathBuf,
    guard: Option<MountGuard>,
}

impl Mnt<'_> {
    fn umount(mut self) {
        self.st.ok(&["umount", s(&self.path)]);
        if let Some(mut g) = self.guard.take() {
            g.disarm();
        }
    }
}

impl Drop for Mnt<'_> {
    fn drop(&mut self) {
        if self.guard.is_some() && is_mounted(&self.path) {
            let _ = self.st.run(&["umount", s(&self.path)]);
        }
    }
}

/// `strata mount ARGS... MNT` into a fresh dir beside the store root.
#[track_caller]
fn mount<'a>(st: &'a Store, name: &str, args: &[&str]) -> Mnt<'a> {
    let path = st.dir.join(name);
    mkdirs(&path);
    let mut a: Vec<&str> = vec!["mount"];
    a.extend_from_slice(args);
    a.push(s(&path));
    st.ok(&a);
    assert!(
        is_mounted(&path),
        "strata {a:?} returned 0 but nothing is mounted"
    );
    let guard = Some(MountGuard::new(&path));
    Mnt { st, path, guard }
}

fn loaded(archive: &str) -> Option<Store> {
    if !require_mount() {
        return None;
    }
    let st = Store::new();
    st.load(&testdata(archive));
    Some(st)
}

/// Trees compared without the root entry: a fresh temp dir and a layer root differ there
/// only in what no layer of these images sets.
fn tree_below(root: &Path) -> BTreeMap<String, String> {
    let mut t = tree(root);
    t.remove("");
    t
}

/// Names in a directory, without `.` and `..`.
fn entries(p: &Path) -> Vec<String> {
    names(p)
        .into_iter()
        .filter(|n| n != "." && n != "..")
        .collect()
}

fn xattr(p: &Path, name: &str) -> String {
    String::from_utf8(
        xattr_get(p, name).unwrap_or_else(|e| panic!("getxattr {name} of {}: {e}", p.display())),
    )
    .expect("utf-8 xattr")
}

#[track_caller]
fn assert_layer_views_match_reference(st: &Store, image: &str, archive: &Path, layers: usize) {
    for n in 1..=layers {
        let m = mount(st, &format!("mnt-{n}"), &["--layer", &n.to_string(), image]);
        let want = tempfile::tempdir().expect("tempdir");
        apply_archive(archive, n, want.path());
        assert_same_tree(
            &format!("{image} as of layer {n} vs layers 1..{n} extracted in order"),
            &tree_below(want.path()),
            &tree_below(&m.path),
        );
        m.umount();
    }
}

#[test]
fn layer_n_view_matches_extraction_of_testdata_images() {
    for archive in ["bb-2layer.oci-archive.tar", "bb-2layer.docker-archive.tar"] {
        let Some(st) = loaded(archive) else { return };
        assert_layer_views_match_reference(&st, BB, &testdata(archive), 2);
        // Without --layer: the whole image, the same as layer 2.
        let m = mount(&st, "whole", &[BB]);
        assert_eq!(
            read_str(m.path.join("data/modify-me.txt")),
            "modified in layer 2\n"
        );
        assert!(!m.path.join("data/deldir").exists());
        m.umount();
        let m = mount(&st, "base", &["--layer", "1", BB]);
        assert_eq!(
            read_str(m.path.join("data/modify-me.txt")),
            "original content\n"
        );
        assert_eq!(read_str(m.path.join("data/deldir/sub/f2")), "f2\n");
        m.umount();
    }
}

/// Three layers that exercise every change: whiteouts of files and trees, an opaque directory
/// that re-adds a name in the same layer, a file replaced by a directory and back, symlinks,
/// hard links, modes and owners.
fn built_layers() -> Vec<Vec<u8>> {
    let l1 = tar_bytes(&[
        TarEntry::dir("etc/").mode(0o755),
        TarEntry::file("etc/passwd", "root:x:0:0\n").mode(0o644),
        TarEntry::file("etc/shadow", "secret\n").mode(0o600),
        TarEntry::dir("opt/").mode(0o755),
        TarEntry::file("opt/a", "a1\n"),
        TarEntry::file("opt/b", "b1\n"),
        TarEntry::dir("opt/sub/"),
        TarEntry::file("opt/sub/c", "c1\n"),
        TarEntry::file("becomes-dir", "file\n"),
        TarEntry::dir("becomes-file/"),
        TarEntry::file("becomes-file/inner", "inner\n"),
        TarEntry::file("hl1", "linked\n").owner(1000, 1000),
        TarEntry::hardlink("hl2", "hl1"),
        TarEntry::dir("gone/"),
        TarEntry::file("gone/x", "x\n"),
        TarEntry::symlink("link", "etc/passwd"),
    ]);
    let l2 = tar_bytes(&[
        TarEntry::dir("etc/").mode(0o755),
        TarEntry::file("etc/passwd", "root:x:0:0\nuser:x:1000:1000\n").mode(0o644),
        TarEntry::file("etc/.wh.shadow", ""),
        TarEntry::file(".wh.gone", ""),
        TarEntry::dir("becomes-dir/"),
        TarEntry::file("becomes-dir/now", "dir now\n"),
        TarEntry::file("becomes-file", "file now\n"),
        TarEntry::file("new-in-2", "2\n").mode(0o640),
    ]);
    let l3 = tar_bytes(&[
        TarEntry::dir("opt/"),
        TarEntry::file("opt/b", "b3\n"),
        TarEntry::file("opt/.wh..wh..opq", ""),
        TarEntry::symlink("link", "new-in-2"),
        TarEntry::file(".wh.new-in-2", ""),
        TarEntry::file("etc/.wh.passwd", ""),
    ]);
    vec![l1, l2, l3]
}

fn built_image(st: &Store, name: &str) -> Vec<Vec<u8>> {
    let tars = built_layers();
    let img = Image::new(
        Some(name),
        tars.iter()
            .map(|t| Layer::new(t.clone(), Compression::Gzip))
            .collect(),
    );
    let archive = st.input(&oci_layout(&[img]).archive());
    st.load(&archive);
    tars
}

#[test]
fn layer_n_view_matches_extraction_of_built_image() {
    if !require_mount() {
        return;
    }
    let st = Store::new();
    let tars = built_image(&st, "views/built:1");
    for n in 1..=tars.len() {
        let m = mount(
            &st,
            &format!("mnt-{n}"),
            &["--layer", &n.to_string(), "views/built:1"],
        );
        let want = tempfile::tempdir().expect("tempdir");
        apply_layers(&tars[..n], want.path());
        assert_same_tree(
            &format!("built image as of layer {n} vs extraction"),
            &tree_below(want.path()),
            &tree_below(&m.path),
        );
        m.umount();
    }
    let out = st.fail(&["mount", "--layer", "4", "views/built:1", s(&st.dir)]);
    assert!(
        out.contains("3 layer(s)") && out.contains("layer 4"),
        "{out}"
    );
    let out = st.fail(&["mount", "--layer", "0", "views/built:1", s(&st.dir)]);
    assert!(out.contains("out of range"), "{out}");
}

#[test]
fn provenance_xattrs_on_a_writable_mount() {
    if !require_mount() {
        return;
    }
    let st = Store::new();
    built_image(&st, "views/built:1");
    let m = mount(&st, "w", &["--writable", "views/built:1"]);
    let p = |r: &str| m.path.join(r);
    let d3 = st.inspect("views/built:1")["RootFS"]["Layers"][2]
        .as_str()
        .expect("diff_id")
        .to_owned();
    let d1 = st.inspect("views/built:1")["RootFS"]["Layers"][0]
        .as_str()
        .expect("diff_id")
        .to_owned();

    // Untouched: supplied by a lower layer, and what it hides below.
    assert_eq!(xattr(&p("opt/b"), "user.strata.layer"), format!("3 {d3}"));
    assert_eq!(xattr(&p("opt/b"), "user.strata.state"), "lower");
    // opt/ is opaque in layer 3: opt/b of layer 1 is hidden by it.
    assert_eq!(xattr(&p("opt/b"), "user.strata.shadows"), format!("1 {d1}"));
    assert_eq!(xattr(&p("opt"), "user.strata.state"), "opaque");
    assert_eq!(xattr(&p("becomes-dir/now"), "user.strata.shadows"), "");
    let layer2 = xattr(&p("becomes-file"), "user.strata.layer");
    assert!(layer2.starts_with("2 sha256:"), "{layer2}");
    assert!(xattr(&p("becomes-file"), "user.strata.shadows").starts_with("1 sha256:"));

    // Copied up by a write; created new; a directory replaced and made opaque.
    append(p("hl1"), "more\n");
    assert_eq!(xattr(&p("hl1"), "user.strata.layer"), "upper");
    assert_eq!(xattr(&p("hl1"), "user.strata.state"), "copied-up");
    assert_eq!(xattr(&p("hl1"), "user.strata.shadows"), format!("1 {d1}"));
    write(p("fresh"), "new\n");
    assert_eq!(xattr(&p("fresh"), "user.strata.state"), "created");
    assert_eq!(xattr(&p("fresh"), "user.strata.shadows"), "");
    std::fs::remove_dir_all(p("becomes-dir")).expect("rm -r");
    mkdirs(p("becomes-dir"));
    assert_eq!(xattr(&p("becomes-dir"), "user.strata.state"), "opaque");
    assert_eq!(xattr(&p("becomes-dir"), "user.strata.layer"), "upper");
    // The per-entry form on the parent answers for symlinks, where the kernel refuses user.*
    // xattrs on the link itself.
    assert_eq!(xattr(&m.path, "user.strata.layer/link"), format!("3 {d3}"));
    assert_eq!(
        errno(
            "getxattr on a symlink",
            xattr_get(p("link"), "user.strata.layer")
        ),
        libc::ENODATA
    );

    // Never listed, never copied, never written.
    for f in ["opt/b", "hl1", "fresh", "becomes-dir", ""] {
        let names = xattr_list(p(f)).expect("listxattr");
        assert!(
            !names.iter().any(|n| n.starts_with("user.strata.")),
            "listxattr of {f:?} shows provenance: {names:?}"
        );
    }
    let copy = st.dir.join("copy");
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(p("hl1"))
        .arg(&copy)
        .output()
        .expect("cp");
    assert!(out.status.success(), "cp -a: {}", show(&out));
    assert!(xattr_list(&copy).expect("listxattr").is_empty());
    let e = errno(
        "setxattr user.strata.layer",
        rx(rustix::fs::setxattr(
            p("fresh"),
            "user.strata.layer",
            b"1",
            rustix::fs::XattrFlags::empty(),
        )),
    );
    assert_eq!(e, libc::EPERM);
    // The scratch upper holds no provenance xattr.
    let upper_root = st.root.join("mounts");
    let out = std::process::Command::new("getfattr")
        .args(["-R", "-d", "-m", "user.strata"])
        .arg(&upper_root)
        .output()
        .expect("getfattr");
    assert!(
        String::from_utf8_lossy(&out.stdout).trim().is_empty(),
        "provenance written to the upper: {}",
        show(&out)
    );
    m.umount();
}

#[test]
fn which_on_a_mount_and_on_an_image() {
    let Some(st) = loaded("bb-2layer.oci-archive.tar") else {
        return;
    };
    let m = mount(&st, "w", &["--writable", BB]);
    let out = st.ok(&["which", s(&m.path.join("data/modify-me.txt"))]);
    assert!(out.contains(&format!("layer 2 {BB_L2}")), "{out}");
    assert!(out.contains("state      lower"), "{out}");
    assert!(
        out.contains(&format!("hides      layer 1 {BB_L1}")),
        "{out}"
    );
    assert!(out.contains("created by"), "{out}");
    assert!(
        out.contains(&st.layer(BB_L2).display().to_string()),
        "{out}"
    );

    append(m.path.join("data/keep.txt"), "x\n");
    let out = st.ok(&["which", s(&m.path.join("data/keep.txt"))]);
    assert!(out.contains("from       upper"), "{out}");
    assert!(out.contains("copied-up"), "{out}");
    assert!(out.contains(&format!("layer 1 {BB_L1}")), "{out}");
    // A symlink (the kernel refuses user.* xattrs on it) still answers.
    let out = st.ok(&["which", s(&m.path.join("data/link-to-keep"))]);
    assert!(out.contains(&format!("layer 2 {BB_L2}")), "{out}");

    // Without a mount.
    let out = st.ok(&["which", BB, "/data/keep.txt"]);
    assert!(out.contains(&format!("layer 1 {BB_L1}")), "{out}");
    assert!(out.contains("hides      nothing"), "{out}");
    let out = st.ok(&["which", BB, "data/added.txt"]);
    assert!(out.contains(&format!("layer 2 {BB_L2}")), "{out}");
    let err = st.fail(&["which", BB, "/data/delete-me.txt"]);
    assert!(err.contains("delete-me.txt"), "{err}");
    let err = st.fail(&["which", s(&st.dir)]);
    assert!(err.contains("not on a strata mount"), "{err}");
    m.umount();
}

#[test]
fn layers_counts_what_each_layer_changed() {
    let Some(st) = loaded("bb-2layer.docker-archive.tar") else {
        return;
    };
    let rows = json_lines(&st.ok(&["layers", "--format", "json", BB]));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["Digest"], BB_L1);
    assert_eq!(rows[1]["Digest"], BB_L2);
    // Layer 2, from the README: added.txt, newdir/, newdir/nested.txt, link-to-keep added;
    // modify-me.txt modified; delete-me.txt and deldir deleted (data/ is only a parent).
    assert_eq!(
        (
            rows[1]["Added"].as_u64(),
            rows[1]["Modified"].as_u64(),
            rows[1]["Deleted"].as_u64()
        ),
        (Some(4), Some(1), Some(2)),
        "{:?}",
        rows[1]
    );
    // Layer 1: 295 entries, one of them the root `./`.
    assert_eq!(rows[0]["Added"].as_u64(), Some(294), "{:?}", rows[0]);
    assert_eq!(rows[0]["Deleted"].as_u64(), Some(0));
    let table = st.ok(&["layers", BB]);
    assert!(table.starts_with("LAYER"), "{table}");
    assert!(table.contains("aebb72f77720"), "{table}");

    if !require_mount() {
        return;
    }
    let st = Store::new();
    built_image(&st, "views/built:1");
    let rows = json_lines(&st.ok(&["layers", "--format", "json", "views/built:1"]));
    let counts: Vec<(u64, u64, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["Added"].as_u64().unwrap_or(99),
                r["Modified"].as_u64().unwrap_or(99),
                r["Deleted"].as_u64().unwrap_or(99),
            )
        })
        .collect();
    // Layer 2: becomes-dir/now and new-in-2 added; etc/passwd modified, becomes-dir (file
    // → dir) and becomes-file (dir → file) modified; etc/shadow and gone deleted.
    // Layer 3: opt/b modified, link modified; opt is opaque (modified) and hides a and sub;
    // new-in-2 and etc/passwd deleted.
    assert_eq!(counts, vec![(16, 0, 0), (2, 3, 2), (0, 3, 4)], "{rows:?}");
    assert_eq!(rows[2]["CreatedBy"], "strata-tests layer 3");
}

#[test]
fn diff_view_of_an_image_layer() {
    let Some(st) = loaded("bb-2layer.oci-archive.tar") else {
        return;
    };
    let m = mount(&st, "d", &["--view", "diff", &format!("{BB}@2")]);
    let data = m.path.join("data");
    assert_eq!(
        entries(&data),
        sorted(&[
            "added.txt",
            "deldir",
            "delete-me.txt",
            "link-to-keep",
            "modify-me.txt",
            "newdir"
        ])
    );
    for gone in ["deldir", "delete-me.txt"] {
        let md = lstat(data.join(gone));
        assert!(
            md.file_type().is_char_device() && md.rdev() == 0,
            "{gone}: {md:?}"
        );
    }
    assert_eq!(
        read_str(data.join("modify-me.txt")),
        "modified in layer 2\n"
    );
    assert_eq!(
        xattr(&data.join("modify-me.txt"), "user.strata.change"),
        "modified"
    );
    assert_eq!(
        xattr(&data.join("added.txt"), "user.strata.change"),
        "added"
    );
    assert_eq!(xattr(&data, "user.strata.change/delete-me.txt"), "deleted");
    assert!(!data.join("keep.txt").exists());
    // The view is read-only.
    let e = errno(
        "write into a diff view",
        std::fs::write(data.join("x"), "x"),
    );
    assert_eq!(e, libc::EROFS);
    m.umount();

    // Default: the top layer.
    let m = mount(&st, "d2", &["--view", "diff", BB]);
    assert!(m.path.join("data/added.txt").exists());
    m.umount();
    let m = mount(&st, "d1", &["--view", "diff", &format!("{BB}@1")]);
    assert_eq!(read_str(m.path.join("data/delete-me.txt")), "delete me\n");
    m.umount();

    // The opaque directory of a built image shows what it hid as deletions.
    let st = Store::new();
    built_image(&st, "views/built:1");
    let m = mount(&st, "d3", &["--view", "diff", "views/built:1@3"]);
    let opt = m.path.join("opt");
    assert_eq!(entries(&opt), sorted(&["a", "b", "sub"]));
    assert!(lstat(opt.join("a")).file_type().is_char_device());
    assert!(lstat(opt.join("sub")).file_type().is_char_device());
    assert_eq!(read_str(opt.join("b")), "b3\n");
    m.umount();
}

#[test]
fn writable_mount_changes_show_in_its_diff_view_at_once() {
    let Some(st) = loaded("bb-2layer.oci-archive.tar") else {
        return;
    };
    let w = mount(&st, "w", &["--writable", BB]);
    let d = mount(&st, "d", &["--view", "diff", s(&w.path)]);
    assert!(
        entries(&d.path).is_empty(),
        "a fresh scratch upper shows nothing: {:?}",
        entries(&d.path)
    );
    write(w.path.join("data/new.txt"), "new\n");
    assert_eq!(read_str(d.path.join("data/new.txt")), "new\n");
    assert_eq!(
        xattr(&d.path.join("data/new.txt"), "user.strata.change"),
        "added"
    );
    write(w.path.join("data/new.txt"), "newer\n");
    assert_eq!(read_str(d.path.join("data/new.txt")), "newer\n");
    append(w.path.join("data/keep.txt"), "more\n");
    assert_eq!(
        xattr(&d.path.join("data/keep.txt"), "user.strata.change"),
        "modified"
    );
    std::fs::remove_file(w.path.join("data/added.txt")).expect("rm");
    let md = lstat(d.path.join("data/added.txt"));
    assert!(md.file_type().is_char_device() && md.rdev() == 0, "{md:?}");
    std::fs::remove_file(w.path.join("data/new.txt")).expect("rm");
    assert!(!d.path.join("data/new.txt").exists());
    assert_eq!(
        entries(&d.path.join("data")),
        sorted(&["added.txt", "keep.txt"])
    );
    d.umount();
    let scratch: Vec<_> = std::fs::read_dir(st.root.join("mounts"))
        .expect("mounts/")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("scratch-"))
        .collect();
    assert_eq!(scratch.len(), 1);
    w.umount();
    assert!(
        !scratch[0].path().exists(),
        "umount leaves the scratch upper behind"
    );

    // --keep: the scratch upper outlives the mount, and its path is printed.
    let mnt = st.dir.join("k");
    mkdirs(&mnt);
    let out = st.run(&["mount", "--writable", "--keep", BB, s(&mnt)]);
    let mut g = MountGuard::new(&mnt);
    assert!(out.status.success(), "{}", show(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let kept = PathBuf::from(err.trim().rsplit(' ').next().expect("path"));
    write(mnt.join("kept.txt"), "kept\n");
    st.ok(&["umount", s(&mnt)]);
    g.disarm();
    assert_eq!(read_str(kept.join("kept.txt")), "kept\n");
    let err = st.fail(&["mount", "--keep", BB, s(&mnt)]);
    assert!(err.contains("--writable"), "{err}");
}

#[test]
fn views_never_change_layers_or_an_upper_and_hold_a_lease() {
    let Some(st) = loaded("bb-2layer.oci-archive.tar") else {
        return;
    };
    let layers = [st.layer(BB_L1), st.layer(BB_L2)];
    let before: Vec<_> = layers.iter().map(|l| snapshot(l)).collect();
    {
        let w = mount(&st, "w", &["--writable", BB]);
        write(w.path.join("data/x"), "x\n");
        let upper_before = snapshot(&scratch_upper(&st));
        let d = mount(&st, "d", &["--view", "diff", s(&w.path)]);
        let r = mount(&st, "r", &["--layer", "1", BB]);
        // Reading through the writable mount itself may move atimes in its upper, as with
        // kernel overlayfs; the views (diff, provenance) must not change a thing.
        for m in [&d.path, &r.path] {
            let _ = tree(m);
        }
        for f in [
            w.path.join("data/x"),
            d.path.join("data/x"),
            r.path.join("data/keep.txt"),
        ] {
            st.ok(&["which", s(&f)]);
            st.ok(&["which", s(f.parent().expect("parent"))]);
        }
        st.ok(&["which", BB, "/data/keep.txt"]);
        st.ok(&["layers", BB]);
        assert_same_snapshot(
            "the scratch upper",
            &upper_before,
            &snapshot(&scratch_upper(&st)),
        );
        // Read-only views refuse writes.
        let e = errno(
            "write to a read-only image view",
            std::fs::write(r.path.join("y"), "y"),
        );
        assert_eq!(e, libc::EROFS);
        // A mounted image is leased: rmi refuses it, and its layers stay.
        let err = st.fail(&["rmi", BB]);
        assert!(err.contains("mount:") || err.contains("use"), "{err}");
        r.umount();
        d.umount();
        w.umount();
    }
    for (l, b) in layers.iter().zip(&before) {
        assert_same_snapshot("a layer", b, &snapshot(l));
    }
    st.ok(&["rmi", BB]);
}

fn scratch_upper(st: &Store) -> PathBuf {
    std::fs::read_dir(st.root.join("mounts"))
        .expect("mounts/")
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("scratch-"))
        .expect("a scratch dir")
        .path()
        .join("upper")
}

#[test]
fn mount_without_a_mountpoint_makes_and_removes_one() {
    let Some(st) = loaded("bb-2layer.oci-archive.tar") else {
        return;
    };
    let out = st.ok(&["mount", BB]);
    let mnt = PathBuf::from(out.trim());
    let mut g = MountGuard::new(&mnt);
    assert!(is_mounted(&mnt), "{out}");
    assert_eq!(read_str(mnt.join("etc/motd")), "base image v1\n");
    st.ok(&["umount", s(&mnt)]);
    g.disarm();
    assert!(!mnt.exists(), "the mountpoint strata made is still there");
    let err = st.fail(&["mount", "no-such-image:1"]);
    assert!(err.contains("no-such-image"), "{err}");
    // A failed mount leaves no record, lease or temp dir behind.
    let refs = read_str(st.root.join("refs"));
    assert!(!refs.contains("mount:"), "{refs}");
}

#[test]
fn views_work_rootless() {
    if !require_all(&[Need::Fuse, Need::UnprivUser]) {
        return;
    }
    let (uid, gid) = unpriv_ids().expect("unprivileged user");
    let st = Store::new();
    chmod(&st.dir, 0o755);
    lchown(&st.dir, uid, gid);
    let archive = st.input(&read(testdata("bb-2layer.oci-archive.tar")));
    lchown(&archive, uid, gid);
    let as_user = |args: &[&str]| -> std::process::Output {
        let mut c = unpriv_command(uid, gid);
        c.arg(bin("strata")).arg("--root").arg(&st.root).args(args);
        let out = run_timeout(&mut c, MOUNT_TIMEOUT);
        assert!(
            out.status.success(),
            "strata {args:?} as {UNPRIV_USER}: {}",
            show(&out)
        );
        out
    };
    let sh = |script: &str, arg: &Path| -> String {
        let mut c = unpriv_command(uid, gid);
        c.args(["sh", "-c", script, "sh"]).arg(arg);
        let out = run_timeout(&mut c, MOUNT_TIMEOUT);
        assert!(out.status.success(), "{script}: {}", show(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    as_user(&["load", "-i", s(&archive)]);
    let mk = |name: &str| {
        let d = st.dir.join(name);
        mkdirs(&d);
        lchown(&d, uid, gid);
        d
    };
    let (w, d) = (mk("w"), mk("d"));
    as_user(&["mount", "--writable", BB, s(&w)]);
    let _gw = MountGuard::new(&w);
    as_user(&["mount", "--view", "diff", s(&w), s(&d)]);
    let _gd = MountGuard::new(&d);
    sh("echo hi > \"$1/data/rootless.txt\"", &w);
    assert_eq!(sh("cat \"$1/data/rootless.txt\"", &d), "hi\n");
    let out = as_user(&["which", s(&w.join("data/rootless.txt"))]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("created"), "{text}");
    let out = as_user(&["which", s(&w.join("data/keep.txt"))]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("layer 1 {BB_L1}")), "{text}");
    let out = as_user(&["layers", "--format", "json", BB]);
    assert_eq!(json_lines(&String::from_utf8_lossy(&out.stdout)).len(), 2);
    as_user(&["umount", s(&d)]);
    as_user(&["umount", s(&w)]);
    let out = as_user(&["mount", "--layer", "1", BB]);
    let mnt = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let _g = MountGuard::new(&mnt);
    assert_eq!(sh("cat \"$1/data/delete-me.txt\"", &mnt), "delete me\n");
    as_user(&["umount", s(&mnt)]);
    assert!(!mnt.exists());
}

#[test]
fn deletions_in_a_diff_view_are_distinct_entries() {
    let Some(st) = loaded("bb-2layer.oci-archive.tar") else {
        return;
    };
    let w = mount(&st, "w", &["--writable", BB]);
    let d = mount(&st, "d", &["--view", "diff", s(&w.path)]);
    // Whiteouts in the upper are hard links of one inode; the view numbers each deletion by
    // its path, so tools do not take them for hard links of each other.
    for f in ["data/keep.txt", "data/added.txt", "etc/motd"] {
        std::fs::remove_file(w.path.join(f)).expect("rm");
    }
    let inos: Vec<u64> = ["data/keep.txt", "data/added.txt", "etc/motd"]
        .iter()
        .map(|f| {
            let md = lstat(d.path.join(f));
            assert!(
                md.file_type().is_char_device() && md.rdev() == 0,
                "{f}: {md:?}"
            );
            assert_eq!(md.nlink(), 1, "{f}");
            md.ino()
        })
        .collect();
    assert!(
        inos[0] != inos[1] && inos[1] != inos[2] && inos[0] != inos[2],
        "{inos:?}"
    );
    // A deleted name made again is a file again, and the other deletions still stat.
    write(w.path.join("data/keep.txt"), "again\n");
    assert_eq!(read_str(d.path.join("data/keep.txt")), "again\n");
    assert!(lstat(d.path.join("data/added.txt"))
        .file_type()
        .is_char_device());
    d.umount();
    w.umount();
}

#[test]
fn which_of_a_mount_root_and_umount_of_a_vanished_mount() {
    let Some(st) = loaded("bb-2layer.oci-archive.tar") else {
        return;
    };
    let m = mount(&st, "r", &[BB]);
    let out = st.ok(&["which", s(&m.path)]);
    assert!(out.contains(&format!("layer 2 {BB_L2}")), "{out}");
    m.umount();

    // Unmounted behind strata's back: `strata umount` still releases the image and removes
    // the scratch layer.
    let w = mount(&st, "w", &["--writable", BB]);
    let scratch = scratch_upper(&st);
    unmount_patiently(&w.path).expect("umount");
    assert!(!is_mounted(&w.path));
    let err = st.fail(&["rmi", BB]);
    assert!(err.contains("mount:"), "{err}");
    st.ok(&["umount", s(&w.path)]);
    assert!(!scratch.exists(), "the scratch layer survived");
    st.ok(&["rmi", BB]);
}
