//! Setuid and setgid bits on write, truncate and chown, as the kernel clears them for a local
//! filesystem: a write or truncate by a caller without CAP_FSETID clears setuid, and setgid
//! when the group may execute; root's keep them; a chown clears them on files, not
//! directories. With FUSE_HANDLE_KILLPRIV_V2 the daemon does this (fs/src/fuse/killpriv.rs),
//! so every path is covered: small files (WRITE requests), large ones (passthrough writes as
//! root), copy-up from a lower layer, and ownership recorded in xattrs.

use std::process::Command;

use strata_tests::*;

/// Changes each file as its name says and prints `name mode` for each, sorted.
const SCRIPT: &str = r#"
M="$1"; U="$2"
user() { setpriv --reuid="$U" --regid="$U" --clear-groups "$@"; }
for s in small big; do
  user sh -c "echo x >> '$M/$s.user_write'"
  user truncate -s 5 "$M/$s.user_trunc"
  sh -c "echo x >> '$M/$s.root_write'"
  truncate -s 5 "$M/$s.root_trunc"
done
chown "$U:$U" "$M/chown" "$M/chown_sgid_noexec" "$M/chown_dir"
cd "$M" && stat -c '%n %a' * | sort
"#;

/// The files, all in the lower layer: mode 6777 for the writers, then the chown cases.
fn populate(fx: &Fixture) {
    chmod(fx.root(), 0o755);
    chmod(fx.lower(0), 0o755);
    for (s, len) in [("small", 10), ("big", 200_000)] {
        for op in ["user_write", "user_trunc", "root_write", "root_trunc"] {
            let p = fx.l(0, &format!("{s}.{op}"));
            write(&p, vec![b'a'; len]);
            chmod(&p, 0o6777);
        }
    }
    write(fx.l(0, "chown"), "x");
    chmod(fx.l(0, "chown"), 0o6755);
    write(fx.l(0, "chown_sgid_noexec"), "x");
    chmod(fx.l(0, "chown_sgid_noexec"), 0o2745);
    mkdirs(fx.l(0, "chown_dir"));
    chmod(fx.l(0, "chown_dir"), 0o6755);
}

const WANT: &str = "big.root_trunc 6777
big.root_write 6777
big.user_trunc 777
big.user_write 777
chown 755
chown_dir 6755
chown_sgid_noexec 2745
small.root_trunc 6777
small.root_write 6777
small.user_trunc 777
small.user_write 777
";

fn run(mnt: &std::path::Path, uid: u32) -> String {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", SCRIPT, "sh"]).arg(mnt).arg(uid.to_string());
    let out = run_timeout(&mut cmd, MOUNT_TIMEOUT);
    assert!(
        out.status.success(),
        "script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn check_strata(opts: &[&str]) {
    let (uid, _) = unpriv_ids().expect("unprivileged user");
    let mut fx = Fixture::new(1);
    fx.opts = opts.iter().map(|o| o.to_string()).collect();
    populate(&fx);
    chmod(&fx.upper, 0o755);
    fx.mount();
    let got = run(&fx.mnt, uid);
    fx.umount();
    assert_eq!(got, WANT, "strata -o {}", fx.option_string());
}

#[test]
fn priv_setid_bits_cleared_as_on_a_local_filesystem() {
    if !require_all(&[Need::Root, Need::Fuse, Need::UnprivUser]) {
        return;
    }
    check_strata(&[]);
}

#[test]
fn priv_setid_bits_cleared_with_ownership_in_xattrs() {
    if !require_all(&[Need::Root, Need::Fuse, Need::UnprivUser]) {
        return;
    }
    check_strata(&["xattr_permissions=2"]);
}

/// The expectation is the kernel's own: kernel overlayfs over the same files gives it.
#[test]
fn priv_setid_expectation_is_kernel_overlayfs_behaviour() {
    if !require_all(&[Need::Root, Need::KernelOverlay, Need::UnprivUser]) {
        return;
    }
    let (uid, _) = unpriv_ids().expect("unprivileged user");
    let fx = Fixture::new(1);
    populate(&fx);
    chmod(&fx.upper, 0o755);
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        fx.lower(0).display(),
        fx.upper.display(),
        fx.work.display()
    );
    let ok = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&fx.mnt)
        .status()
        .unwrap();
    assert!(ok.success(), "mount -t overlay");
    let mut guard = MountGuard::new(&fx.mnt);
    let got = run(&fx.mnt, uid);
    unmount_patiently(&fx.mnt).unwrap();
    guard.disarm();
    assert_eq!(got, WANT, "kernel overlayfs");
}
