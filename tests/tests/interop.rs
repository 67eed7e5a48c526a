//! Interop with kernel overlayfs: an upper written by strata, mounted by the kernel, shows the
//! same tree as strata showed; and an upper written by the kernel, mounted by strata, shows
//! the same tree as the kernel showed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_tests::*;

fn populate_lowers(fx: &Fixture) {
    write(fx.l(0, "a"), "l1-a");
    write(fx.l(1, "a"), "l2-a");
    write(fx.l(1, "b"), "l2-b");
    write(fx.l(0, "d/x"), "x");
    write(fx.l(1, "d/y"), "y");
    write(fx.l(1, "d/sub/z"), "z");
    write(fx.l(0, "gone"), "gone");
    write(fx.l(1, "gonedir/f"), "f");
    write(fx.l(1, "opq/old1"), "old1");
    write(fx.l(0, "opq/old2"), "old2");
    write(fx.l(0, "meta"), "meta");
    write(fx.l(1, "mv-src"), "mv");
    write(fx.l(0, "hl"), "hl");
    std::os::unix::fs::symlink("a", fx.l(1, "sym")).unwrap();
    xattr_set(fx.l(0, "meta"), "user.kept", b"k");
    // A whiteout and an opaque dir already in a lower (kernel format, as root).
    write(fx.l(1, "lower-hidden"), "hidden");
    mk_char_whiteout(fx.l(0, "lower-hidden"));
}

/// The same changes, made through whichever overlay is mounted at `m`.
fn workload(m: &Path) {
    let p = |r: &str| m.join(r);
    append(p("a"), "+");
    fs::remove_file(p("gone")).unwrap();
    fs::remove_dir_all(p("gonedir")).unwrap();
    fs::remove_dir_all(p("opq")).unwrap();
    fs::create_dir(p("opq")).unwrap();
    write(p("opq/new"), "new");
    chmod(p("meta"), 0o640);
    lchown(p("meta"), 321, 654);
    xattr_set(p("meta"), "user.added", b"a");
    write(p("d/sub/new"), "deep new");
    fs::remove_file(p("d/y")).unwrap();
    fs::rename(p("mv-src"), p("mv-dst")).unwrap();
    fs::hard_link(p("hl"), p("hl2")).unwrap();
    std::os::unix::fs::symlink("../b", p("d/newsym")).unwrap();
    fs::create_dir(p("newdir")).unwrap();
    write(p("newdir/f"), "f");
    lchown(p("sym"), 5, 6);
}

fn kernel_mount(lowers: &[PathBuf], upper: &Path, work: &Path, mnt: &Path) -> MountGuard {
    let l: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
    // Options that keep the kernel to the on-disk format both implementations share.
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,index=off,metacopy=off",
        l.join(":"),
        upper.display(),
        work.display()
    );
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(mnt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kernel overlay mount failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    MountGuard::new(mnt)
}

fn kernel_umount(mnt: &Path, mut guard: MountGuard) {
    unmount_patiently(mnt)
        .unwrap_or_else(|e| panic!("umount kernel overlay {}: {e}", mnt.display()));
    guard.disarm();
}

#[test]
fn priv_strata_upper_mounted_by_kernel_overlay() {
    if !require_all(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let mut fx = Fixture::new(2);
    populate_lowers(&fx);
    fx.mount();
    workload(&fx.mnt);
    let by_strata = tree(&fx.mnt);
    fx.umount();
    // Sanity: strata wrote kernel-format whiteouts and opaque dirs.
    assert!(is_char_whiteout(&lstat(fx.u("gone"))));
    assert_eq!(
        xattr_get(fx.u("opq"), "trusted.overlay.opaque").unwrap(),
        b"y"
    );
    let kwork = fx.root().join("kwork");
    let kmnt = fx.root().join("kmnt");
    mkdirs(&kwork);
    mkdirs(&kmnt);
    let guard = kernel_mount(&fx.lowers, &fx.upper, &kwork, &kmnt);
    let by_kernel = tree(&kmnt);
    kernel_umount(&kmnt, guard);
    assert_same_tree(
        "strata mount (left) vs kernel overlay of strata's upper (right)",
        &by_strata,
        &by_kernel,
    );
    assert!(
        by_kernel.contains_key("opq/new")
            && !by_kernel.contains_key("opq/old1")
            && !by_kernel.contains_key("opq/old2")
    );
}

#[test]
fn priv_kernel_upper_mounted_by_strata() {
    if !require_all(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let mut fx = Fixture::new(2);
    populate_lowers(&fx);
    let kwork = fx.root().join("kwork");
    let kmnt = fx.root().join("kmnt");
    mkdirs(&kwork);
    mkdirs(&kmnt);
    let guard = kernel_mount(&fx.lowers, &fx.upper, &kwork, &kmnt);
    workload(&kmnt);
    let by_kernel = tree(&kmnt);
    kernel_umount(&kmnt, guard);
    // strata gets its own, fresh workdir (fx.work).
    fx.mount();
    let by_strata = tree(&fx.mnt);
    // And strata can keep working on the kernel's upper.
    write(fx.m("opq/after"), "after");
    fs::remove_file(fx.m("b")).unwrap();
    fx.umount();
    assert_same_tree(
        "kernel overlay (left) vs strata mount of the kernel's upper (right)",
        &by_kernel,
        &by_strata,
    );
    fx.mount();
    assert_eq!(names(fx.m("opq")), sorted(&[".", "..", "after", "new"]));
    assert_eq!(errno("b", fs::symlink_metadata(fx.m("b"))), libc::ENOENT);
}
