//! Rootless: a plain user, inside `unshare -Urm`, mounts strata and creates, copies up and
//! deletes; the daemon exits after the umount; root then sees the same changes.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use strata_tests::*;

const SCRIPT: &str = r#"
set -e
B="$1"; L="$2"; U="$3"; W="$4"; M="$5"
"$B" -o "lowerdir=$L,upperdir=$U,workdir=$W" "$M"
awk -v m="$M" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i+1); exit } }' /proc/self/mountinfo
cat "$M/f"
echo more >> "$M/f"
rm "$M/del"
rm -rf "$M/dir"
mkdir "$M/dir"
echo n > "$M/dir/n"
echo new > "$M/newfile"
mv "$M/keep" "$M/kept"
echo "$(ls -a "$M" | tr '\n' ' ')"
echo "$(ls -a "$M/dir" | tr '\n' ' ')"
id -u
stat -c '%u:%g' "$M/newfile" "$M/f"
umount "$M"
echo done
"#;

fn chown_tree(p: &Path, uid: u32, gid: u32) {
    for (rel, _) in snapshot(p) {
        lchown(join(p, &rel), uid, gid);
    }
}

#[test]
fn priv_rootless_mount_in_a_user_namespace() {
    if !require_all(&[Need::Root, Need::Fuse, Need::UnprivUser]) {
        return;
    }
    let (uid, gid) = unpriv_ids().expect("unprivileged user");
    let mut fx = Fixture::new(1);
    write(fx.l(0, "f"), "lower-f\n");
    write(fx.l(0, "del"), "del");
    write(fx.l(0, "dir/old"), "old");
    write(fx.l(0, "keep"), "keep");
    chmod(fx.root(), 0o755);
    for d in [
        fx.lower(0).to_path_buf(),
        fx.upper.clone(),
        fx.work.clone(),
        fx.mnt.clone(),
    ] {
        chown_tree(&d, uid, gid);
    }
    let lower_before = snapshot(fx.lower(0));
    let mut cmd = unpriv_command(uid, gid);
    cmd.args(["unshare", "-Urm", "sh", "-c", SCRIPT, "sh"])
        .arg(mount_program())
        .arg(fx.lower(0))
        .arg(&fx.upper)
        .arg(&fx.work)
        .arg(&fx.mnt);
    let out = run_timeout(&mut cmd, MOUNT_TIMEOUT);
    // If the script failed half-way, its daemon may still run in the user's namespace.
    let _leftover = MountGuard::new(&fx.mnt);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rootless script failed ({}):\nstdout:\n{text}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let fstype = fstype();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            fstype.as_str(),
            "lower-f",
            ". .. dir f kept newfile ",
            ". .. n ",
            "0",
            "0:0",
            "0:0",
            "done"
        ],
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The mount lived only in the user's mount namespace, and its daemon is gone.
    assert!(!is_mounted(&fx.mnt));
    let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
    while !processes_with_arg(&fx.mnt).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        processes_with_arg(&fx.mnt),
        Vec::<i32>::new(),
        "rootless daemon still running after umount"
    );
    // On disk: the user's ids, a whiteout and an opaque dir in a format a rootless writer can use.
    let f = lstat(fx.u("f"));
    assert_eq!((f.uid(), f.gid()), (uid, gid));
    assert_eq!(read_str(fx.u("f")), "lower-f\nmore\n");
    let n = lstat(fx.u("newfile"));
    assert_eq!((n.uid(), n.gid()), (uid, gid));
    let del_char = fs::symlink_metadata(fx.u("del")).is_ok_and(|m| is_char_whiteout(&m));
    let del_wh = fs::symlink_metadata(fx.u(".wh.del")).is_ok_and(|m| m.is_file());
    assert!(del_char || del_wh, "no whiteout for del in the upper");
    let opaque_x = xattr_get(fx.u("dir"), "user.overlay.opaque").is_ok_and(|v| v == b"y");
    let opaque_f = fs::symlink_metadata(fx.u("dir/.wh..wh..opq")).is_ok();
    assert!(
        opaque_x || opaque_f,
        "re-created dir is not opaque in the upper"
    );
    assert_same_snapshot("lower", &lower_before, &snapshot(fx.lower(0)));
    // Root mounts the same layers and sees the same tree.
    fx.mount();
    assert_eq!(
        names(&fx.mnt),
        sorted(&[".", "..", "dir", "f", "kept", "newfile"])
    );
    assert_eq!(names(fx.m("dir")), sorted(&[".", "..", "n"]));
    assert_eq!(read_str(fx.m("f")), "lower-f\nmore\n");
    assert_eq!(read_str(fx.m("kept")), "keep");
    assert_eq!(lstat(fx.m("newfile")).uid(), uid);
}
