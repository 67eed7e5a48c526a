//! Setuid and setgid bits on write, truncate and chown, as the kernel clears them for a local
//! filesystem: a write or truncate by a caller without CAP_FSETID in the initial user
//! namespace (a plain user, or root in a user namespace) clears setuid, and setgid when the
//! group may execute; root's keep them; a chown clears them on files, not directories, even
//! root's `chown(f, -1, -1)`. With FUSE_HANDLE_KILLPRIV_V2 the daemon does this
//! (fs/src/fuse/killpriv.rs), so every path is covered: small files (WRITE requests), large
//! ones (passthrough writes as root), copy-up from a lower layer, ownership recorded in
//! xattrs, and a rootless mount.

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
  unshare -Ur sh -c "echo x >> '$M/$s.ns_write'"
  unshare -Ur truncate -s 5 "$M/$s.ns_trunc"
done
chown "$U:$U" "$M/chown" "$M/chown_sgid_noexec" "$M/chown_dir"
perl -e 'chown(-1, -1, $ARGV[0]) or die "chown: $!"' "$M/chown_none"
cd "$M" && stat -c '%n %a' * | sort
"#;

/// The files, all in the lower layer, with their modes: 6777 for the writers, then the
/// chown cases. Owned by `owner` (chown first: it would clear the bits).
fn populate(fx: &Fixture, owner: Option<(u32, u32)>) {
    chmod(fx.root(), 0o755);
    chmod(fx.lower(0), 0o755);
    let mut files = Vec::new();
    for (s, len) in [("small", 10), ("big", 200_000)] {
        for op in [
            "user_write",
            "user_trunc",
            "root_write",
            "root_trunc",
            "ns_write",
            "ns_trunc",
        ] {
            let name = format!("{s}.{op}");
            write(fx.l(0, &name), vec![b'a'; len]);
            files.push((name, 0o6777));
        }
    }
    write(fx.l(0, "chown"), "x");
    files.push(("chown".into(), 0o6755));
    write(fx.l(0, "chown_none"), "x");
    files.push(("chown_none".into(), 0o6755));
    write(fx.l(0, "chown_sgid_noexec"), "x");
    files.push(("chown_sgid_noexec".into(), 0o2745));
    mkdirs(fx.l(0, "chown_dir"));
    files.push(("chown_dir".into(), 0o6755));
    for (name, mode) in files {
        if let Some((uid, gid)) = owner {
            lchown(fx.l(0, &name), uid, gid);
        }
        chmod(fx.l(0, &name), mode);
    }
}

const WANT: &str = "big.ns_trunc 777
big.ns_write 777
big.root_trunc 6777
big.root_write 6777
big.user_trunc 777
big.user_write 777
chown 755
chown_dir 6755
chown_none 755
chown_sgid_noexec 2745
small.ns_trunc 777
small.ns_write 777
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
    populate(&fx, None);
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
    populate(&fx, None);
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

/// Rootless, every caller is in a user namespace, where even its root lacks CAP_FSETID in the
/// initial one, which is what the kernel asks (`setattr_should_drop_suidgid`, fs/attr.c): the
/// bits go on every write and truncate, as on a local filesystem.
const ROOTLESS: &str = r#"
set -e
B="$1"; L="$2"; U="$3"; W="$4"; M="$5"
"$B" -o "lowerdir=$L,upperdir=$U,workdir=$W" "$M"
for s in small big; do
  sh -c "echo x >> '$M/$s.root_write'"
  truncate -s 5 "$M/$s.root_trunc"
done
chown 0:0 "$M/chown"
(cd "$M" && stat -c '%n %a' *.root_* chown | sort)
umount "$M"
"#;

#[test]
fn priv_setid_bits_rootless() {
    if !require_all(&[Need::Root, Need::Fuse, Need::UnprivUser]) {
        return;
    }
    let (uid, gid) = unpriv_ids().expect("unprivileged user");
    let fx = Fixture::new(1);
    populate(&fx, Some((uid, gid)));
    for d in [fx.lower(0), &fx.upper, &fx.work, &fx.mnt] {
        lchown(d, uid, gid);
    }
    let mut cmd = unpriv_command(uid, gid);
    cmd.args(["unshare", "-Urm", "sh", "-c", ROOTLESS, "sh"])
        .arg(mount_program())
        .arg(fx.lower(0))
        .arg(&fx.upper)
        .arg(&fx.work)
        .arg(&fx.mnt);
    let out = run_timeout(&mut cmd, MOUNT_TIMEOUT);
    let _leftover = MountGuard::new(&fx.mnt);
    assert!(
        out.status.success(),
        "rootless script failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = "big.root_trunc 777
big.root_write 777
chown 755
small.root_trunc 777
small.root_write 777
";
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}
