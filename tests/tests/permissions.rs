//! Permission semantics for a non-root user of a root-mounted union (`allow_other`,
//! `default_permissions`): creation in writable directories, refusals where the kernel would
//! refuse, the umask, sticky and setgid directories.

use std::os::unix::fs::MetadataExt;

use strata_tests::*;

const SCRIPT: &str = r#"
M="$1"
umask 022
try() { if "$@" 2>/dev/null; then echo ok; else echo refused; fi; }
try sh -c "echo x > '$M/open/new'"
try sh -c "echo x >> '$M/rootfile'"
try rm -f "$M/sticky/rootowned"
try sh -c "echo mine > '$M/sticky/mine'"
try rm -f "$M/sticky/mine"
try mkdir "$M/sgdir/sub"
try sh -c "echo x > '$M/closed/new'"
try sh -c "umask 077; echo x > '$M/open/private'"
try mkdir "$M/open/lowerdir-child"
try sh -c "echo more >> '$M/open/userfile'"
try chmod 600 "$M/rootfile"
"#;

#[test]
fn priv_non_root_user_permissions_through_a_root_mount() {
    if !require_all(&[Need::Root, Need::Fuse, Need::UnprivUser]) {
        return;
    }
    let (uid, gid) = unpriv_ids().expect("unprivileged user");
    let mut fx = Fixture::new(1);
    chmod(fx.root(), 0o755);
    mkdirs(fx.l(0, "open"));
    chmod(fx.l(0, "open"), 0o777);
    write(fx.l(0, "open/userfile"), "user's\n");
    lchown(fx.l(0, "open/userfile"), uid, gid);
    write(fx.l(0, "rootfile"), "root's");
    chmod(fx.l(0, "rootfile"), 0o644);
    mkdirs(fx.l(0, "sticky"));
    chmod(fx.l(0, "sticky"), 0o1777);
    write(fx.l(0, "sticky/rootowned"), "r");
    chmod(fx.l(0, "sticky/rootowned"), 0o666);
    mkdirs(fx.l(0, "sgdir"));
    lchown(fx.l(0, "sgdir"), 0, 4321);
    chmod(fx.l(0, "sgdir"), 0o2777);
    mkdirs(fx.l(0, "closed"));
    chmod(fx.l(0, "closed"), 0o755);
    chmod(&fx.upper, 0o755);
    fx.mount();
    let mut cmd = unpriv_command(uid, gid);
    cmd.args(["sh", "-c", SCRIPT, "sh"]).arg(&fx.mnt);
    let out = run_timeout(&mut cmd, MOUNT_TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let got: Vec<&str> = text.lines().collect();
    let want = vec![
        "ok",      // create in a 0777 dir
        "refused", // append to root's 0644 file
        "refused", // delete root's file in a sticky dir
        "ok",      // create own file in a sticky dir
        "ok",      // delete own file in a sticky dir
        "ok",      // mkdir in a setgid dir
        "refused", // create in root's 0755 dir
        "ok",      // create with umask 077
        "ok",      // mkdir in a 0777 lower dir
        "ok",      // append to own lower file (copy-up as the user)
        "refused", // chmod of root's file
    ];
    assert_eq!(
        got,
        want,
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = lstat(fx.m("open/new"));
    assert_eq!((n.uid(), n.gid(), n.mode() & 0o777), (uid, gid, 0o644));
    assert_eq!(
        lstat(fx.m("open/private")).mode() & 0o777,
        0o600,
        "umask ignored"
    );
    let sub = lstat(fx.m("sgdir/sub"));
    assert_eq!(sub.gid(), 4321, "setgid dir's group not inherited");
    assert_ne!(sub.mode() & libc::S_ISGID, 0, "setgid bit not inherited");
    assert_eq!(lstat(fx.m("open/lowerdir-child")).uid(), uid);
    assert_eq!(read_str(fx.m("open/userfile")), "user's\nmore\n");
    assert_eq!(lstat(fx.u("open/userfile")).uid(), uid);
    assert_eq!(read_str(fx.m("rootfile")), "root's");
    assert_eq!(lstat(fx.m("rootfile")).mode() & 0o777, 0o644);
    assert_eq!(read_str(fx.m("sticky/rootowned")), "r");
    assert!(std::fs::symlink_metadata(fx.m("closed/new")).is_err());
}
