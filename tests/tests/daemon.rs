//! The mount program contract podman relies on (reference/mount-program.md §2–3): the parent
//! exits 0 only once the mount is live, the daemon lets go of the caller's stdio, exits after
//! every kind of unmount, and failures exit non-zero with a message and nothing mounted.
//! Also the option forms and the `strata mount` / `strata umount` commands.

use std::fs;
use std::path::Path;
use std::process::Command;

use strata_tests::*;

fn overlay(args: &[&str], mnt: &Path) -> std::process::Output {
    let mut c = Command::new(mount_program());
    c.args(args).arg(mnt);
    run_timeout(&mut c, MOUNT_TIMEOUT)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// After a failed mount: nothing mounted and no daemon left behind.
#[track_caller]
fn assert_nothing_left(mnt: &Path, what: &str) {
    assert!(
        !is_mounted(mnt),
        "{what}: something is mounted on {}",
        mnt.display()
    );
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(
        processes_with_arg(mnt),
        Vec::<i32>::new(),
        "{what}: a process was left running"
    );
}

#[test]
fn priv_parent_exits_only_when_mount_is_live_and_daemon_lets_go_of_stdio() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "f"), "f");
    // try_mount pipes stdout and stderr and waits for EOF on both (a daemon that kept them
    // would make this panic), like podman's exec.Cmd.Run.
    let out = fx.try_mount();
    // Checked right after the command returned: no retry, no sleep.
    let fstype = mount_type(&fx.mnt);
    assert!(
        out.status.success(),
        "exit {}: {}",
        out.status,
        stderr(&out)
    );
    assert_eq!(
        fstype,
        Some(strata_tests::fstype()),
        "mount not live when the parent exited"
    );
    assert_eq!(read_str(fx.m("f")), "f");
    let pids = fx.daemons().to_vec();
    assert_eq!(
        pids.len(),
        1,
        "exactly one daemon serves the mount: {pids:?}"
    );
    let pid = pids[0];
    for fd in 0..3 {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).map(|p| p.display().to_string());
        assert_eq!(
            target.as_deref().ok(),
            Some("/dev/null"),
            "daemon fd {fd} is {target:?}, not /dev/null"
        );
    }
    assert_eq!(
        fs::read_link(format!("/proc/{pid}/cwd")).unwrap().to_str(),
        Some("/"),
        "daemon keeps a cwd busy"
    );
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    assert_eq!(
        fields[3],
        pid.to_string(),
        "daemon is not a session leader (setsid)"
    );
    fx.umount();
}

fn exits_after(method: &str) {
    let mut fx = Fixture::new(1);
    write(fx.l(0, "f"), "f");
    fx.mount();
    let pids = fx.daemons().to_vec();
    let open_file = (method == "umount -l").then(|| fs::File::open(fx.m("f")).unwrap());
    let mut cmd = match method {
        "umount" => {
            let mut c = Command::new("umount");
            c.arg(&fx.mnt);
            c
        }
        "fusermount3 -u" => {
            let mut c = Command::new("fusermount3");
            c.arg("-u").arg(&fx.mnt);
            c
        }
        "umount -l" => {
            let mut c = Command::new("umount");
            c.arg("-l").arg(&fx.mnt);
            c
        }
        "strata umount" => {
            let mut c = Command::new(bin("strata"));
            c.arg("umount").arg(&fx.mnt);
            c
        }
        _ => unreachable!(),
    };
    let out = run_timeout(&mut cmd, MOUNT_TIMEOUT);
    assert!(out.status.success(), "{method}: {}", stderr(&out));
    fx.forget_mount();
    assert!(!is_mounted(&fx.mnt), "{method}: still mounted");
    if let Some(f) = open_file {
        // Lazily detached while a file is open: the daemon serves it until it is closed.
        let mut s = String::new();
        std::io::Read::read_to_string(&mut &f, &mut s).unwrap();
        assert_eq!(s, "f");
        drop(f);
    }
    for p in pids {
        assert!(
            wait_exited(p, EXIT_TIMEOUT),
            "{method}: daemon {p} still running {EXIT_TIMEOUT:?} later"
        );
    }
}

#[test]
fn priv_daemon_exits_after_umount() {
    if require_mount() {
        exits_after("umount");
    }
}

#[test]
fn priv_daemon_exits_after_fusermount3_u() {
    if require_mount() {
        exits_after("fusermount3 -u");
    }
}

#[test]
fn priv_daemon_exits_after_lazy_umount() {
    if require_mount() {
        exits_after("umount -l");
    }
}

#[test]
fn priv_daemon_exits_after_strata_umount() {
    if require_mount() {
        exits_after("strata umount");
    }
}

#[test]
fn priv_mount_failures_exit_nonzero_with_a_message_and_mount_nothing() {
    if !require_mount() {
        return;
    }
    let fx = Fixture::new(1);
    let t = fx.root();
    let (l, u, w, m) = (
        fx.lower(0).display().to_string(),
        fx.upper.display().to_string(),
        fx.work.display().to_string(),
        &fx.mnt,
    );
    write(t.join("afile"), "not a dir");
    mkdirs(fx.l(0, "up"));
    mkdirs(fx.l(0, "wk"));
    let missing = t.join("missing-lower").display().to_string();
    let afile = t.join("afile").display().to_string();
    let cases: Vec<(String, String, Vec<String>)> = vec![
        (
            "missing lowerdir".into(),
            format!("lowerdir={missing},upperdir={u},workdir={w}"),
            vec![missing.clone(), "does not exist".into()],
        ),
        (
            "lowerdir is a file".into(),
            format!("lowerdir={afile},upperdir={u},workdir={w}"),
            vec![afile.clone(), "not a directory".into()],
        ),
        (
            "upper inside lower".into(),
            format!("lowerdir={l},upperdir={l}/up,workdir={l}/wk"),
            vec![format!("{l}/up"), "inside".into()],
        ),
        (
            "the same lower twice".into(),
            format!("lowerdir={l}:{l},upperdir={u},workdir={w}"),
            vec![l.clone(), "same".into()],
        ),
        (
            "upper is work".into(),
            format!("lowerdir={l},upperdir={u},workdir={u}"),
            vec![u.clone(), "same".into()],
        ),
        (
            "bad option value".into(),
            format!("lowerdir={l},upperdir={u},workdir={w},xattr_permissions=9"),
            vec!["xattr_permissions=9".into()],
        ),
        (
            "upper without work".into(),
            format!("lowerdir={l},upperdir={u}"),
            vec!["workdir".into()],
        ),
        (
            "no lowerdir".into(),
            format!("upperdir={u},workdir={w}"),
            vec!["lowerdir".into()],
        ),
    ];
    for (what, opts, needles) in cases {
        let out = overlay(&["-o", &opts], m);
        let _guard = MountGuard::new(m);
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: exit 0 for -o {opts}");
        for n in &needles {
            assert!(
                err.contains(n.as_str()),
                "{what}: message {err:?} does not mention {n:?}"
            );
        }
        assert_nothing_left(m, &what);
    }
    // A missing mountpoint.
    let nomnt = t.join("no-such-mnt");
    let out = overlay(
        &["-o", &format!("lowerdir={l},upperdir={u},workdir={w}")],
        &nomnt,
    );
    let _guard = MountGuard::new(&nomnt);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&nomnt.display().to_string()),
        "message {:?}",
        stderr(&out)
    );
    assert_nothing_left(&nomnt, "missing mountpoint");
    assert_eq!(read_str(t.join("afile")), "not a dir");
}

#[test]
fn priv_unknown_option_only_warns() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    fx.opts.push("frobnicate=1".into());
    let out = fx.try_mount();
    assert!(
        out.status.success(),
        "unknown option refused: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("frobnicate"),
        "no warning naming the option: {:?}",
        stderr(&out)
    );
    assert_eq!(mount_type(&fx.mnt), Some(fstype()));
    fx.umount();
}

#[test]
fn priv_version() {
    if !require(Need::Fuse) {
        return;
    }
    for b in ["strata-overlay", "strata"] {
        let mut c = Command::new(bin(b));
        c.arg("--version");
        let out = run_timeout(&mut c, MOUNT_TIMEOUT);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{b} --version: {}", stderr(&out));
        assert!(
            text.contains(env!("CARGO_PKG_VERSION")),
            "{b} --version printed {text:?}"
        );
    }
}

#[test]
fn priv_option_forms() {
    if !require_mount() {
        return;
    }
    let fx = Fixture::new(1);
    write(fx.l(0, "f"), "f");
    let (l, u, w) = (
        fx.lower(0).display().to_string(),
        fx.upper.display().to_string(),
        fx.work.display().to_string(),
    );
    let ctx = "context=\"system_u:object_r:container_file_t:s0:c1,c2\"";
    let forms: Vec<(&str, Vec<String>)> = vec![
        (
            "-o twice",
            vec![
                "-o".into(),
                format!("lowerdir={l}"),
                "-o".into(),
                format!("upperdir={u},workdir={w}"),
            ],
        ),
        (
            "-oOPTS",
            vec![format!("-olowerdir={l},upperdir={u},workdir={w}")],
        ),
        (
            "context with a comma",
            vec![
                "-o".into(),
                format!("lowerdir={l},upperdir={u},workdir={w},{ctx}"),
            ],
        ),
        (
            "podman's empty elements",
            vec![
                "-o".into(),
                format!("lowerdir={l},upperdir={u},workdir={w},,volatile"),
            ],
        ),
    ];
    for (i, (what, args)) in forms.into_iter().enumerate() {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = overlay(&a, &fx.mnt);
        let mut guard = MountGuard::new(&fx.mnt);
        assert!(out.status.success(), "{what}: {}", stderr(&out));
        assert!(
            !stderr(&out).contains("unknown"),
            "{what}: warned {:?}",
            stderr(&out)
        );
        let pids = guard.daemons().to_vec();
        assert_eq!(mount_type(&fx.mnt), Some(fstype()), "{what}");
        // The upper took effect: a write lands in it.
        write(fx.m(&format!("new{i}")), what);
        assert_eq!(read_str(fx.u(&format!("new{i}"))), what);
        unmount_patiently(&fx.mnt).unwrap();
        for p in pids {
            assert!(wait_exited(p, EXIT_TIMEOUT), "{what}: daemon did not exit");
        }
        guard.disarm();
    }
}

#[test]
fn priv_lowerdir_with_escaped_colon() {
    if !require_mount() {
        return;
    }
    // fuse-overlayfs 1.15 syntax: `\:` is a colon inside a lowerdir path.
    let mut fx = Fixture::new(0);
    let odd = fx.root().join("low:er");
    write(odd.join("f"), "odd");
    let plain = fx.root().join("plain");
    write(plain.join("g"), "plain");
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        odd.display().to_string().replace(':', "\\:"),
        plain.display(),
        fx.upper.display(),
        fx.work.display()
    );
    let mut c = Command::new(mount_program());
    c.arg("-o").arg(&opts).arg(&fx.mnt);
    let out = run_timeout(&mut c, MOUNT_TIMEOUT);
    if out.status.success() {
        fx.adopt();
    }
    assert!(out.status.success(), "-o {opts}: {}", stderr(&out));
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "f", "g"]));
    assert_eq!(read_str(fx.m("f")), "odd");
    fx.umount();
}

#[test]
fn priv_strata_mount_command() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    write(fx.l(0, "a"), "a");
    write(fx.l(1, "b"), "b");
    let mut c = Command::new(bin("strata"));
    c.arg("mount")
        .arg("-o")
        .arg(fx.option_string())
        .arg(&fx.mnt);
    let out = run_timeout(&mut c, MOUNT_TIMEOUT);
    let live = mount_type(&fx.mnt);
    if live.is_some() {
        fx.adopt();
    }
    assert!(out.status.success(), "strata mount: {}", stderr(&out));
    assert_eq!(
        live.as_deref(),
        Some("fuse.strata"),
        "not mounted when strata mount returned"
    );
    assert_eq!(names(&fx.mnt), sorted(&[".", "..", "a", "b"]));
    write(fx.m("c"), "c");
    assert_eq!(read_str(fx.u("c")), "c");
    let pids = fx.daemons().to_vec();
    let mut c = Command::new(bin("strata"));
    c.arg("umount").arg(&fx.mnt);
    let out = run_timeout(&mut c, MOUNT_TIMEOUT);
    assert!(out.status.success(), "strata umount: {}", stderr(&out));
    fx.forget_mount();
    assert!(!is_mounted(&fx.mnt));
    for p in pids {
        assert!(
            wait_exited(p, EXIT_TIMEOUT),
            "daemon {p} still running after strata umount"
        );
    }
}
