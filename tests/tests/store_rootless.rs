//! The image store run by a plain user, with no user namespace: device nodes are skipped with
//! one warning per layer (a char 0/0 whiteout becomes `.wh.NAME` instead), what the store
//! writes belongs to the user, the layers a rootless load extracted mount as that user, and
//! `rmi` removes layers whose directories the user cannot read or write.
//!
//! Root prepares a temp dir the user owns; every `strata` command then runs as
//! [`UNPRIV_USER`] through `setpriv --reuid --regid --clear-groups`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use strata_tests::oci::*;
use strata_tests::store::*;
use strata_tests::*;

// Facts from tests/data/images/README.md (the spec of the test data, not outputs of strata).
const BB_L1: &str = "sha256:1de107a7521c2a027ea12fbb236bc818adf4168d344ee5ad28f2a778d42892c4";
const BB_L2: &str = "sha256:aebb72f77720794bbc774067ea1b14cca2cbcd4559bf48db73f659b7d11b162c";
const BB_NAME: &str = "localhost/bb-test:2";

/// A store in a temp dir owned by the unprivileged user, and ways to run things as that user.
struct Rootless {
    st: Store,
    uid: u32,
    gid: u32,
}

impl Rootless {
    /// None (after printing SKIP) when no unprivileged user can be had.
    fn new() -> Option<Rootless> {
        if !require(Need::UnprivUser) {
            return None;
        }
        let (uid, gid) = unpriv_ids().expect("unprivileged user");
        let st = Store::new();
        // The temp dir is made 0700 by root: the user must be able to enter it and create the
        // store root (the CLI makes it) and test inputs in it.
        chmod(&st.dir, 0o755);
        lchown(&st.dir, uid, gid);
        Some(Rootless { st, uid, gid })
    }

    /// `setpriv ... PROG` as the user, to add arguments to.
    fn user_cmd(&self, prog: impl AsRef<OsStr>) -> Command {
        let mut c = unpriv_command(self.uid, self.gid);
        c.arg(prog);
        c
    }

    /// `strata --root ROOT ARGS...` as the user.
    fn strata(&self, args: &[&str]) -> Output {
        let mut c = self.user_cmd(bin("strata"));
        c.arg("--root").arg(&self.st.root).args(args);
        run_timeout(&mut c, STORE_TIMEOUT)
    }

    /// Like [`Rootless::strata`], asserting exit 0.
    #[track_caller]
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.strata(args);
        assert!(
            out.status.success(),
            "strata {args:?} as {UNPRIV_USER} failed:\n{}",
            show(&out)
        );
        out
    }

    /// A file beside the root holding `data`, owned by the user (so the user can read it).
    fn input(&self, data: &[u8]) -> PathBuf {
        let p = self.st.input(data);
        lchown(&p, self.uid, self.gid);
        p
    }

    /// A directory beside the root, owned by the user.
    fn user_dir(&self, name: &str) -> PathBuf {
        let d = self.st.dir.join(name);
        mkdirs(&d);
        lchown(&d, self.uid, self.gid);
        d
    }

    /// The diff_ids of `image` as `inspect` (run as the user) reports them, bottom first.
    #[track_caller]
    fn layers_of(&self, image: &str) -> Vec<String> {
        let out = self.ok(&["inspect", image]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("inspect {image}: not JSON ({e}):\n{}", show(&out)));
        v[0]["RootFS"]["Layers"]
            .as_array()
            .unwrap_or_else(|| panic!("inspect {image}: no RootFS.Layers: {v}"))
            .iter()
            .map(|l| l.as_str().expect("diff_id string").to_string())
            .collect()
    }

    /// Asserts that every object under the store root belongs to the user: a rootless store
    /// must not hold anything its own user cannot later chmod or remove.
    #[track_caller]
    fn assert_all_owned_by_user(&self) {
        let want = format!("{}:{}", self.uid, self.gid);
        let wrong: Vec<String> = content_tree(&self.st.root, &[])
            .into_iter()
            .filter(|(_, d)| d.split(' ').nth(2) != Some(want.as_str()))
            .map(|(k, d)| format!("{k:?}: {d}"))
            .collect();
        assert!(
            wrong.is_empty(),
            "objects under the store root not owned by {UNPRIV_USER} ({want}):\n  {}",
            wrong.join("\n  ")
        );
    }
}

/// A block device entry `major:minor` (the oci builders have only a char device maker).
fn blockdev(name: &str, major: u32, minor: u32) -> TarEntry {
    let mut e = TarEntry::chardev(name, major, minor);
    e.kind = b'4';
    e
}

#[test]
fn rootless_import_skips_devices_with_one_warning() {
    let Some(rl) = Rootless::new() else {
        return;
    };
    // Every entry is owned by root, as in a real base image; the devices are the kind a
    // rootfs's /dev holds.
    let tar = tar_bytes(&[
        TarEntry::dir("dev/"),
        TarEntry::file("dev/regular", "regular\n"),
        TarEntry::fifo("dev/fifo"),
        TarEntry::chardev("dev/null", 1, 3),
        TarEntry::chardev("dev/zero", 1, 5),
        blockdev("dev/loop0", 7, 0),
        // An overlayfs whiteout: the same meaning as `.wh.gone`, which needs no privilege.
        TarEntry::chardev("dev/gone", 0, 0),
    ]);
    let f = rl.input(&tar);
    let out = rl.ok(&["import", s(&f), "rl/dev"]);
    parse_id(&String::from_utf8_lossy(&out.stdout));

    // One warning for the layer, whatever number of devices it skipped; the whiteout is not
    // a skipped device.
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let dev_lines: Vec<&str> = err.lines().filter(|l| l.contains("device node")).collect();
    assert_eq!(
        dev_lines.len(),
        1,
        "exactly one line about device nodes expected:\n{}",
        show(&out)
    );
    assert!(
        dev_lines[0].starts_with("warning: layer ")
            && dev_lines[0].contains("skipped 3 device node(s)"),
        "the warning should name the layer and count the 3 real devices: {:?}",
        dev_lines[0]
    );

    let layers = rl.layers_of("rl/dev");
    assert_eq!(
        layers,
        vec![digest_of(&tar)],
        "one layer, the tar's diff_id"
    );
    let dir = rl.st.layer(&layers[0]);
    assert_eq!(read_str(dir.join("dev/regular")), "regular\n");
    assert_eq!(mode_letter(lstat(dir.join("dev/fifo")).mode()), 'p');
    rl.assert_all_owned_by_user();
    // No device node but the whiteout. A char 0/0 is an overlay whiteout, which Linux >= 5.8
    // lets any user create (mknod(2)); where that is refused the store writes `.wh.gone`,
    // which means the same to every reader of a lower layer (store/src/extract.rs). One of
    // the two forms must be there, and nothing else.
    let tree = content_tree(&dir, &[]);
    let names: BTreeSet<&str> = tree.keys().map(String::as_str).collect();
    let as_char = BTreeSet::from(["", "dev", "dev/gone", "dev/fifo", "dev/regular"]);
    let as_wh = BTreeSet::from(["", "dev", "dev/.wh.gone", "dev/fifo", "dev/regular"]);
    assert!(
        names == as_char || names == as_wh,
        "layer dir {}: {tree:#?}",
        dir.display()
    );
    if names == as_char {
        let md = lstat(dir.join("dev/gone"));
        assert!(
            is_char_whiteout(&md),
            "dev/gone must be a char 0/0 whiteout: {}",
            tree["dev/gone"]
        );
    } else {
        let wh = lstat(dir.join("dev/.wh.gone"));
        assert!(
            wh.is_file() && wh.len() == 0,
            "dev/.wh.gone should be an empty regular file: {}",
            tree["dev/.wh.gone"]
        );
    }
}

/// Script run as the user against a mount: one line per object under `data/` (type and, for a
/// file, its contents without the final newline), then the contents read through the symlink.
const VIEW_SCRIPT: &str = r#"
D="$1/data"
LC_ALL=C find "$D" -mindepth 1 | LC_ALL=C sort | while read -r p; do
  r="${p#"$D"/}"
  if [ -L "$p" ]; then echo "$r l -> $(readlink "$p")"
  elif [ -d "$p" ]; then echo "$r d"
  elif [ -f "$p" ]; then echo "$r f $(cat "$p")"
  else echo "$r ?"
  fi
done
echo "through link: $(cat "$D/link-to-keep")"
"#;

#[test]
fn rootless_load_testdata_and_mount() {
    let Some(rl) = Rootless::new() else {
        return;
    };
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/images/bb-2layer.oci-archive.tar");
    let archive = rl.input(&read(&src));
    rl.ok(&["load", "-i", s(&archive)]);

    let out = rl.ok(&["images", "--format", "json"]);
    let rows = json_lines(&String::from_utf8_lossy(&out.stdout));
    assert!(
        rows.iter().any(|r| format!(
            "{}:{}",
            r["Repository"].as_str().unwrap_or(""),
            r["Tag"].as_str().unwrap_or("")
        ) == BB_NAME),
        "strata images should list {BB_NAME}: {rows:?}"
    );
    assert_eq!(rl.layers_of(BB_NAME), vec![BB_L1, BB_L2]);
    rl.assert_all_owned_by_user();

    let upper = rl.user_dir("upper");
    let work = rl.user_dir("work");
    let mnt = rl.user_dir("mnt");
    let mut c = rl.user_cmd(bin("strata"));
    c.arg("mount")
        .arg("--lower")
        .arg(rl.st.layer(BB_L2))
        .arg("--lower")
        .arg(rl.st.layer(BB_L1))
        .arg("--upper")
        .arg(&upper)
        .arg("--work")
        .arg(&work)
        .arg(&mnt);
    let out = run_timeout(&mut c, MOUNT_TIMEOUT);
    // Whatever happens next, the mount and its daemon must not outlive the test.
    let mut guard = MountGuard::new(&mnt);
    assert!(
        out.status.success(),
        "strata mount as {UNPRIV_USER} failed:\n{}",
        show(&out)
    );
    assert!(
        is_mounted(&mnt),
        "strata mount returned 0 but nothing is mounted"
    );
    let daemons = guard.daemons().to_vec();
    assert!(
        !daemons.is_empty(),
        "no daemon found serving {}",
        mnt.display()
    );

    // A mount made without allow_other is reachable by its user only (not even root), so the
    // view is read as the user.
    let mut c = rl.user_cmd("sh");
    c.args(["-c", VIEW_SCRIPT, "sh"]).arg(&mnt);
    let out = run_timeout(&mut c, MOUNT_TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec![
            "added.txt f added in layer 2",
            "keep.txt f keep",
            "link-to-keep l -> keep.txt",
            "modify-me.txt f modified in layer 2",
            "newdir d",
            "newdir/nested.txt f nested",
            "through link: keep",
        ],
        "merged /data as {UNPRIV_USER} (README: delete-me.txt, deldir and .wh.* absent):\n{}",
        show(&out)
    );

    let mut c = rl.user_cmd("fusermount3");
    c.arg("-u").arg(&mnt);
    let out = run_timeout(&mut c, MOUNT_TIMEOUT);
    assert!(out.status.success(), "fusermount3 -u:\n{}", show(&out));
    assert!(!is_mounted(&mnt), "still mounted after fusermount3 -u");
    for pid in daemons {
        assert!(
            wait_exited(pid, EXIT_TIMEOUT),
            "daemon {pid} still running {EXIT_TIMEOUT:?} after fusermount3 -u"
        );
    }
    guard.disarm();
}

#[test]
fn rootless_rmi_removes_unreadable_dirs() {
    let Some(rl) = Rootless::new() else {
        return;
    };
    // Directory modes are applied after their children are written, so the layer dir ends up
    // with directories its own user can neither list (0000) nor write (0500).
    let tar = tar_bytes(&[
        TarEntry::dir("closed/").mode(0o000),
        TarEntry::file("closed/f", "f\n"),
        TarEntry::dir("closed/sub/").mode(0o000),
        TarEntry::file("closed/sub/g", "g\n"),
        TarEntry::dir("ro/").mode(0o500),
        TarEntry::file("ro/h", "h\n").mode(0o400),
        TarEntry::dir("ro/inner/").mode(0o500),
        TarEntry::file("ro/inner/i", "i\n"),
    ]);
    let f = rl.input(&tar);
    rl.ok(&["import", s(&f), "rl/locked"]);
    let layers = rl.layers_of("rl/locked");
    assert_eq!(layers, vec![digest_of(&tar)]);
    let dir = rl.st.layer(&layers[0]);
    // The premise: the modes really are in place, or rmi would have nothing hard to do.
    for (rel, mode) in [
        ("closed", 0o000),
        ("closed/sub", 0o000),
        ("ro", 0o500),
        ("ro/inner", 0o500),
    ] {
        assert_eq!(
            lstat(dir.join(rel)).mode() & 0o7777,
            mode,
            "{rel} in the layer dir"
        );
    }
    rl.assert_all_owned_by_user();

    rl.ok(&["rmi", "rl/locked"]);
    let left = dir_names(&rl.st.root.join("layers"));
    assert!(
        left.is_empty(),
        "layers/ should be empty after rmi: {left:?}"
    );
    rl.st.assert_tmp_clean("after rootless rmi");
    let imgs = rl.ok(&["images", "--format", "json"]);
    assert!(
        json_lines(&String::from_utf8_lossy(&imgs.stdout)).is_empty(),
        "no image should remain: {}",
        show(&imgs)
    );
}
