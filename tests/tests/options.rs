//! Mount options that change behaviour: no upperdir (read-only union), `ro`, `uidmapping=` /
//! `gidmapping=`, `squash_to_root`, `volatile`.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::process::Command;

use strata_tests::*;

fn mount_with(opts: &str, mnt: &std::path::Path) -> MountGuard {
    let mut c = Command::new(mount_program());
    c.arg("-o").arg(opts).arg(mnt);
    let out = run_timeout(&mut c, MOUNT_TIMEOUT);
    let g = MountGuard::new(mnt);
    assert!(
        out.status.success(),
        "-o {opts}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mount_type(mnt), Some(fstype()));
    g
}

#[test]
fn priv_lowerdir_only_mount_is_a_read_only_union() {
    if !require_mount() {
        return;
    }
    let fx = Fixture::new(2);
    write(fx.l(0, "a"), "l1-a");
    write(fx.l(1, "a"), "l2-a");
    write(fx.l(1, "b"), "l2-b");
    write(fx.l(1, "d/x"), "x");
    write(fx.l(0, ".wh.b"), "");
    xattr_set(fx.lower(0), "user.lowerroot", b"L");
    let before: Vec<_> = (0..2).map(|i| snapshot(fx.lower(i))).collect();
    let opts = format!(
        "lowerdir={}:{}",
        fx.lower(0).display(),
        fx.lower(1).display()
    );
    let _g = mount_with(&opts, &fx.mnt);
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "a", "d"]));
    // The root's xattrs are the top lower's root's (they were read from the fd's magic link).
    assert_eq!(xattr_get(&fx.mnt, "user.lowerroot").unwrap(), b"L");
    assert!(xattr_list(&fx.mnt).unwrap().contains("user.lowerroot"));
    assert_eq!(read_str(fx.m("a")), "l1-a");
    let rofs =
        |what: &str, r: std::io::Result<()>| assert_eq!(errno(what, r), libc::EROFS, "{what}");
    rofs("create", fs::write(fx.m("new"), "n"));
    rofs("append", append_r(&fx.m("a")));
    rofs("mkdir", fs::create_dir(fx.m("nd")));
    rofs("unlink", fs::remove_file(fx.m("a")));
    rofs("rename", fs::rename(fx.m("a"), fx.m("z")));
    rofs(
        "chmod",
        fs::set_permissions(
            fx.m("a"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        ),
    );
    rofs(
        "setxattr",
        rx(rustix::fs::lsetxattr(
            fx.m("a"),
            "user.x",
            b"1",
            rustix::fs::XattrFlags::empty(),
        )),
    );
    drop(_g);
    for (i, b) in before.iter().enumerate() {
        assert_same_snapshot(&format!("lower{}", i + 1), b, &snapshot(fx.lower(i)));
    }
}

fn append_r(p: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    fs::OpenOptions::new().append(true).open(p)?.write_all(b"+")
}

#[test]
fn priv_ro_option_refuses_writes_and_leaves_upper_alone() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "a"), "a");
    write(fx.u("u"), "u");
    fx.opts.push("ro".into());
    fx.mount();
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "a", "u"]));
    assert_eq!(errno("create", fs::write(fx.m("new"), "n")), libc::EROFS);
    assert_eq!(errno("append", append_r(&fx.m("a"))), libc::EROFS);
    assert_eq!(errno("unlink", fs::remove_file(fx.m("u"))), libc::EROFS);
    fx.umount();
    assert_eq!(names(&fx.upper), sorted(&[".", "..", "u"]));
}

#[test]
fn priv_uid_and_gid_mapping() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "mapped"), "m");
    lchown(fx.l(0, "mapped"), 1002, 1003);
    write(fx.l(0, "unmapped"), "u");
    lchown(fx.l(0, "unmapped"), 5, 5);
    fx.opts.push("uidmapping=0:1000:10".into());
    fx.opts.push("gidmapping=0:1000:10".into());
    fx.mount();
    let m = lstat(fx.m("mapped"));
    assert_eq!(
        (m.uid(), m.gid()),
        (2, 3),
        "host 1002:1003 shown as container 2:3"
    );
    let u = lstat(fx.m("unmapped"));
    assert_eq!(
        (u.uid(), u.gid()),
        (65534, 65534),
        "unmapped ids show as the overflow id"
    );
    write(fx.m("new"), "n");
    let n = lstat(fx.u("new"));
    assert_eq!(
        (n.uid(), n.gid()),
        (1000, 1000),
        "root's new file stored as host 1000"
    );
    assert_eq!(lstat(fx.m("new")).uid(), 0);
    lchown(fx.m("mapped"), 7, 8);
    let c = lstat(fx.u("mapped"));
    assert_eq!((c.uid(), c.gid()), (1007, 1008), "chown stores host ids");
    assert_eq!(
        errno(
            "chown to an unmapped id",
            std::os::unix::fs::lchown(fx.m("new"), Some(50), None)
        ),
        libc::EINVAL
    );
    assert_eq!(lstat(fx.l(0, "mapped")).uid(), 1002, "lower changed");

    // The ids inside a POSIX ACL are mapped like owners: container 4 and 5 are stored as
    // host 1004 and 1005, and shown back as 4 and 5; an unmapped id is refused.
    let acl = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let (m, u) = (fx.m("new"), fx.u("new"));
    let (m, u) = (m.to_str().unwrap(), u.to_str().unwrap());
    acl(&["setfacl", "-m", "u:4:r,g:5:w", m]);
    let upper = acl(&["getfacl", "-n", "-c", u]);
    assert!(
        upper.contains("user:1004:r--") && upper.contains("group:1005:-w-"),
        "{upper}"
    );
    let shown = acl(&["getfacl", "-n", "-c", m]);
    assert!(
        shown.contains("user:4:r--") && shown.contains("group:5:-w-"),
        "{shown}"
    );
    let o = Command::new("setfacl")
        .args(["-m", "u:50:r", m])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "an ACL naming unmapped uid 50 was stored"
    );
    fx.umount();
}

#[test]
fn priv_squash_to_root_and_volatile() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "f"), "f");
    lchown(fx.l(0, "f"), 1234, 5678);
    fx.opts.push("squash_to_root".into());
    fx.opts.push("volatile".into());
    fx.mount();
    let md = lstat(fx.m("f"));
    assert_eq!((md.uid(), md.gid()), (0, 0));
    let mut f = fs::OpenOptions::new().append(true).open(fx.m("f")).unwrap();
    std::io::Write::write_all(&mut f, b"+").unwrap();
    f.sync_all().expect("fsync on a volatile mount succeeds");
    drop(f);
    fx.remount();
    assert_eq!(read_str(fx.m("f")), "f+");
    let up = lstat(fx.u("f"));
    assert_eq!(
        (up.uid(), up.gid()),
        (1234, 5678),
        "squash changes only what is shown"
    );
}
