//! Layers on different filesystems (tmpfs lowers or a tmpfs upper over ext4): inode numbers
//! stay unique and stable, copy-up works across filesystems, and a workdir on another
//! filesystem than the upper is refused.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_tests::*;

/// A tmpfs mounted on a directory, unmounted (lazily if busy) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn on(dir: &Path) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = unmount(&self.0);
    }
}

/// path → (st_ino, nlink) of every object in the mount, checking d_ino == st_ino and that every
/// object has the mount's st_dev.
fn inodes(root: &Path, rel: &str, out: &mut BTreeMap<String, (u64, u64)>) {
    let dir = join(root, rel);
    for e in readdir(&dir).unwrap() {
        if e.name == "." || e.name == ".." {
            continue;
        }
        let r = if rel.is_empty() {
            e.name.clone()
        } else {
            format!("{rel}/{}", e.name)
        };
        let md = lstat(join(root, &r));
        assert_eq!(e.ino, md.ino(), "{r}: d_ino vs st_ino");
        assert_eq!(
            md.dev(),
            lstat(root).dev(),
            "{r}: st_dev differs from the mount's"
        );
        out.insert(r.clone(), (md.ino(), md.nlink()));
        if e.kind == 'd' {
            inodes(root, &r, out);
        }
    }
}

#[test]
fn priv_lowers_on_two_tmpfs_keep_inodes_unique_and_stable() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    let _t1 = Tmpfs::on(fx.lower(0));
    let _t2 = Tmpfs::on(fx.lower(1));
    // Two fresh tmpfs hand out the same small inode numbers: the union must tell them apart.
    for (i, names) in [["a", "d/x", "p", "q"], ["b", "d/y", "r", "s"]]
        .iter()
        .enumerate()
    {
        for n in names {
            write(fx.l(i, n), format!("{i}-{n}"));
        }
    }
    fs::hard_link(fx.l(0, "p"), fx.l(0, "p2")).unwrap();
    let raw: Vec<u64> = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(i, n)| lstat(fx.l(i, n)).ino())
        .collect();
    eprintln!("raw inode numbers of lower1/a and lower2/b: {raw:?}");
    fx.mount();
    let mut before = BTreeMap::new();
    inodes(&fx.mnt, "", &mut before);
    let mut by_ino: BTreeMap<u64, Vec<&String>> = BTreeMap::new();
    for (p, (ino, _)) in &before {
        by_ino.entry(*ino).or_default().push(p);
    }
    for (ino, paths) in &by_ino {
        let ok = paths.len() == 1
            || paths
                .iter()
                .all(|p| p.as_str() == "p" || p.as_str() == "p2");
        assert!(ok, "inode {ino} shared by {paths:?}");
    }
    assert_eq!(before["p"].0, before["p2"].0, "hard links share st_ino");
    assert_eq!(before["p"].1, 2);
    // Copy-up from tmpfs to the ext4 upper keeps the number.
    append(fx.m("a"), "+");
    append(fx.m("d/y"), "+");
    assert_eq!(read_str(fx.u("a")), "0-a+");
    assert_eq!(read_str(fx.m("d/y")), "1-d/y+");
    let mut after = BTreeMap::new();
    inodes(&fx.mnt, "", &mut after);
    assert_eq!(before, after, "inode numbers changed by copy-up");
    fx.remount();
    let mut again = BTreeMap::new();
    inodes(&fx.mnt, "", &mut again);
    assert_eq!(before, again, "inode numbers changed by remount");
    fx.umount();
}

#[test]
fn priv_upper_on_tmpfs_over_ext4_lower() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    // upper and work on one tmpfs.
    let upfs = fx.root().join("upfs");
    mkdirs(&upfs);
    let _t = Tmpfs::on(&upfs);
    fx.upper = upfs.join("upper");
    fx.work = upfs.join("work");
    mkdirs(&fx.upper);
    mkdirs(&fx.work);
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 239) as u8).collect();
    write(fx.l(0, "big"), &data);
    write(fx.l(0, "gone"), "g");
    write(fx.l(0, "d/old"), "o");
    xattr_set(fx.l(0, "big"), "user.k", b"v");
    fx.mount();
    let ino = lstat(fx.m("big")).ino();
    append(fx.m("big"), "END");
    fs::remove_file(fx.m("gone")).unwrap();
    fs::remove_dir_all(fx.m("d")).unwrap();
    fs::create_dir(fx.m("d")).unwrap();
    let mut want = data.clone();
    want.extend_from_slice(b"END");
    assert!(
        read(fx.u("big")) == want,
        "cross-filesystem copy-up is not exact"
    );
    assert_eq!(xattr_get(fx.u("big"), "user.k").unwrap(), b"v");
    assert!(is_char_whiteout(&lstat(fx.u("gone"))));
    fx.remount();
    assert_eq!(lstat(fx.m("big")).ino(), ino);
    assert!(read(fx.m("big")) == want);
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "big", "d"]));
    assert_eq!(names(fx.m("d")), sorted(&[".", ".."]));
    fx.umount();
}

#[test]
fn priv_workdir_on_another_filesystem_is_refused() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    let wfs = fx.root().join("wfs");
    mkdirs(&wfs);
    let _t = Tmpfs::on(&wfs);
    fx.work = wfs.clone();
    let out = fx.try_mount();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "workdir on another filesystem accepted"
    );
    assert!(
        err.contains("workdir") && err.contains(&wfs.display().to_string()),
        "message: {err:?}"
    );
    assert!(!is_mounted(&fx.mnt));
}
