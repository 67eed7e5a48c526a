//! `metacopy=on`: a metadata change of a lower file copies its metadata only; the data stays
//! below until something writes, truncates, renames or links the file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use strata_tests::*;

const SIZE: usize = 1 << 20;

fn data() -> Vec<u8> {
    (0..SIZE).map(|i| (i * 7 % 251) as u8).collect()
}

/// One lower file `f` (1 MiB, mode 0644, xattr `user.x`), mounted with `metacopy=on`.
fn fixture() -> Fixture {
    let mut fx = Fixture::new(1);
    write(fx.l(0, "f"), data());
    fs::set_permissions(fx.l(0, "f"), fs::Permissions::from_mode(0o644)).unwrap();
    xattr_set(fx.l(0, "f"), "user.x", b"1");
    fx.opts.push("metacopy=on".into());
    fx.mount();
    fx
}

fn assert_lower_intact(fx: &Fixture) {
    let m = fs::symlink_metadata(fx.l(0, "f")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o644, "lower mode changed");
    assert!(read(fx.l(0, "f")) == data(), "lower data changed");
}

#[test]
fn priv_chmod_copies_metadata_only_and_reads_the_lower_data() {
    if !require_mount() {
        return;
    }
    let mut fx = fixture();
    fs::set_permissions(fx.m("f"), fs::Permissions::from_mode(0o600)).unwrap();
    xattr_set(fx.m("f"), "user.y", b"2");
    // The upper holds the metadata and the size, and no data.
    let up = fs::symlink_metadata(fx.u("f")).unwrap();
    assert_eq!(up.len(), SIZE as u64);
    assert!(
        up.blocks() * 512 < up.len() / 2,
        "chmod copied the data ({} blocks)",
        up.blocks()
    );
    assert_eq!(up.mode() & 0o7777, 0o600);
    // The union shows the new metadata over the lower data.
    let m = fs::symlink_metadata(fx.m("f")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    assert_eq!(m.len(), SIZE as u64);
    assert!(m.blocks() > 0, "a metacopy shows the blocks of its data");
    assert!(read(fx.m("f")) == data(), "the union reads other data");
    assert_eq!(xattr_get(fx.m("f"), "user.x").unwrap(), b"1");
    assert_eq!(xattr_get(fx.m("f"), "user.y").unwrap(), b"2");
    // Its provenance: the upper; the lower it reads its data from is not hidden by it.
    assert_eq!(xattr_get(fx.m("f"), "user.strata.layer").unwrap(), b"upper");
    assert_eq!(xattr_get(fx.m("f"), "user.strata.shadows").unwrap(), b"");
    let names = xattr_list(fx.m("f")).unwrap();
    assert!(
        !names.iter().any(|n| n.contains("metacopy")),
        "the mark is listed: {names:?}"
    );
    assert_lower_intact(&fx);

    // The mark is honoured by a mount without the option.
    fx.opts.clear();
    fx.remount();
    assert!(read(fx.m("f")) == data(), "after remount");
    assert_eq!(
        fs::symlink_metadata(fx.m("f")).unwrap().mode() & 0o7777,
        0o600
    );

    // A write copies the data up, keeping the metadata changed so far.
    fs::OpenOptions::new()
        .append(true)
        .open(fx.m("f"))
        .unwrap()
        .write_all(b"tail")
        .unwrap();
    let mut want = data();
    want.extend_from_slice(b"tail");
    assert!(read(fx.m("f")) == want, "after append");
    assert!(read(fx.u("f")) == want, "the upper holds the whole file");
    let up = fs::symlink_metadata(fx.u("f")).unwrap();
    assert!(up.blocks() > 0);
    assert_eq!(up.mode() & 0o7777, 0o600);
    assert_eq!(xattr_get(fx.m("f"), "user.x").unwrap(), b"1");
    assert_eq!(xattr_get(fx.m("f"), "user.y").unwrap(), b"2");
    assert_lower_intact(&fx);
    fx.remount();
    assert!(read(fx.m("f")) == want, "after the second remount");
}

#[test]
fn priv_metacopy_renamed_linked_or_truncated_keeps_its_data() {
    if !require_mount() {
        return;
    }
    let fx = fixture();
    for op in ["rename", "link", "truncate"] {
        let name = format!("g-{op}");
        write(fx.l(0, &name), data());
        fs::set_permissions(fx.m(&name), fs::Permissions::from_mode(0o640)).unwrap();
        assert!(fs::symlink_metadata(fx.u(&name)).unwrap().blocks() * 512 < SIZE as u64 / 2);
        let (path, want) = match op {
            "rename" => {
                fs::rename(fx.m(&name), fx.m("renamed")).unwrap();
                (fx.m("renamed"), data())
            }
            "link" => {
                fs::hard_link(fx.m(&name), fx.m("linked")).unwrap();
                assert!(read(fx.m(&name)) == data(), "link: first name");
                (fx.m("linked"), data())
            }
            _ => {
                fs::OpenOptions::new()
                    .write(true)
                    .open(fx.m(&name))
                    .unwrap()
                    .set_len(100)
                    .unwrap();
                (fx.m(&name), data()[..100].to_vec())
            }
        };
        assert!(read(&path) == want, "{op}: other data");
        assert_eq!(
            fs::symlink_metadata(&path).unwrap().mode() & 0o7777,
            0o640,
            "{op}"
        );
    }
    assert_lower_intact(&fx);
}

#[test]
fn priv_without_metacopy_chmod_copies_the_data() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "f"), data());
    fx.mount();
    fs::set_permissions(fx.m("f"), fs::Permissions::from_mode(0o600)).unwrap();
    assert!(read(fx.u("f")) == data(), "the upper lacks the data");
    assert!(fs::symlink_metadata(fx.u("f")).unwrap().blocks() > 0);
}

/// A diff view of an upper that holds a metacopy reads the file's data from below.
#[test]
fn priv_diff_view_reads_a_metacopy_through_its_data() {
    if !require_mount() {
        return;
    }
    let fx = fixture();
    fs::set_permissions(fx.m("f"), fs::Permissions::from_mode(0o600)).unwrap();
    let view = fx.root().join("view");
    fs::create_dir(&view).unwrap();
    let out = run_timeout(
        std::process::Command::new(mount_program())
            .arg("-o")
            .arg(format!(
                "lowerdir={}:{},view=diff",
                fx.upper.display(),
                fx.lower(0).display()
            ))
            .arg(&view),
        std::time::Duration::from_secs(20),
    );
    assert!(out.status.success(), "{out:?}");
    let _guard = MountGuard::new(&view);
    assert!(
        read(view.join("f")) == data(),
        "the diff view reads other data"
    );
    assert_eq!(
        fs::symlink_metadata(view.join("f")).unwrap().mode() & 0o7777,
        0o600
    );
}

/// The upper of one mount is a lower of the next (containers-storage stacks layers so): a
/// metacopy there reads its data from the layers under it, and a write copies that data up.
#[test]
fn priv_metacopy_in_a_lower_layer_reads_and_copies_up_its_data() {
    if !require_mount() {
        return;
    }
    let mut fx = fixture();
    fs::set_permissions(fx.m("f"), fs::Permissions::from_mode(0o600)).unwrap();
    fx.umount();
    let mut next = Fixture::new(2);
    for (i, src) in [fx.upper.clone(), fx.lower(0).to_path_buf()]
        .iter()
        .enumerate()
    {
        let ok = std::process::Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", src.display()))
            .arg(next.lower(i))
            .status()
            .unwrap()
            .success();
        assert!(ok, "cp -a of layer {i}");
    }
    assert!(fs::symlink_metadata(next.l(0, "f")).unwrap().blocks() * 512 < SIZE as u64 / 2);
    next.mount();
    assert!(
        read(next.m("f")) == data(),
        "a lower metacopy reads other data"
    );
    // A metacopy of the metacopy keeps pointing at the data, also after a remount.
    fs::set_permissions(next.m("f"), fs::Permissions::from_mode(0o640)).unwrap();
    assert!(fs::symlink_metadata(next.u("f")).unwrap().blocks() * 512 < SIZE as u64 / 2);
    assert!(read(next.m("f")) == data(), "a metacopy of a metacopy");
    next.remount();
    assert!(
        read(next.m("f")) == data(),
        "a metacopy of a metacopy, remounted"
    );
    fs::OpenOptions::new()
        .append(true)
        .open(next.m("f"))
        .unwrap()
        .write_all(b"x")
        .unwrap();
    let mut want = data();
    want.push(b'x');
    assert!(read(next.u("f")) == want, "the copy-up lost the data");
    assert_eq!(
        fs::symlink_metadata(next.m("f")).unwrap().mode() & 0o7777,
        0o640
    );
}

/// A removed metacopy keeps its data: reopened through /proc/PID/fd it reads the lower data
/// (its own object has none), and a writer completes the copy in the object itself.
#[test]
fn priv_removed_metacopy_reopened_reads_and_writes_its_data() {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    if !require_mount() {
        return;
    }
    let mut fx = fixture();
    fs::set_permissions(fx.m("f"), fs::Permissions::from_mode(0o600)).unwrap();
    // O_PATH: it holds the inode without an open file, whose reads through passthrough of
    // the lower object would make a writer wait (ETXTBSY, see fs/src/fuse/passthrough.rs).
    let held = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(fx.m("f"))
        .unwrap();
    fs::remove_file(fx.m("f")).unwrap();
    let again = format!("/proc/self/fd/{}", held.as_raw_fd());
    assert!(
        read(&again) == data(),
        "a reopened removed metacopy reads zeros"
    );
    assert!(
        fs::metadata(&again).unwrap().blocks() > 0,
        "shows the blocks of its data"
    );
    // Shrunk and grown by name (truncate(2), no open): the cut data does not come back.
    let by_pid = format!("/proc/{}/fd/{}", std::process::id(), held.as_raw_fd());
    let script = "truncate($ARGV[0], $ARGV[1]) && truncate($ARGV[0], $ARGV[2]) or die $!";
    let (half, full) = ((SIZE / 2).to_string(), SIZE.to_string());
    let ok = std::process::Command::new("perl")
        .args(["-e", script, &by_pid, &half, &full])
        .status()
        .unwrap();
    assert!(ok.success(), "truncate(2) of the removed metacopy");
    let mut want = data()[..SIZE / 2].to_vec();
    want.resize(SIZE, 0);
    assert!(read(&again) == want, "shrunk and grown removed metacopy");
    // Opened for writing, it is completed first; then truncated and written.
    let w = fs::OpenOptions::new().write(true).open(&again).unwrap();
    w.set_len((SIZE / 2) as u64).unwrap();
    w.write_all_at(b"XY", 0).unwrap();
    drop(w);
    want.truncate(SIZE / 2);
    want[..2].copy_from_slice(b"XY");
    assert!(
        read(&again) == want,
        "truncated and written removed metacopy"
    );
    drop(held);
    assert_lower_intact(&fx);
    fx.umount();
}
