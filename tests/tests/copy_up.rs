//! Copy-up: every kind of change to a lower file copies it into the upper and leaves the lower
//! untouched; mode (setuid/setgid/sticky), owner, mtime and user xattrs survive; parents keep
//! their setgid bit; holes stay holes; inode numbers survive copy-up and remount.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt};

use rustix::fs::SeekFrom as RSeek;
use strata_tests::*;

const OPS: [&str; 9] = [
    "write", "append", "truncate", "chmod", "chown", "utimes", "setxattr", "link", "rename",
];
const LOWER_MTIME: (i64, i64) = (1_000_000_000, 123_456_789);
const FILE_MODE: u32 = 0o7755;
const DIR_MODE: u32 = 0o2775;
const OWNER: (u32, u32) = (1234, 5678);

fn content(op: &str) -> String {
    format!("content-of-{op}-0123456789\n")
}

fn make_lower(fx: &Fixture) {
    let sg = fx.l(0, "sg");
    mkdirs(&sg);
    lchown(&sg, OWNER.0, OWNER.1);
    chmod(&sg, DIR_MODE);
    xattr_set(&sg, "user.dir", b"dir-value");
    for op in OPS {
        let p = fx.l(0, &format!("sg/f_{op}"));
        write(&p, content(op));
        lchown(&p, OWNER.0, OWNER.1);
        chmod(&p, FILE_MODE); // after chown, which clears setuid/setgid
        xattr_set(&p, "user.test", format!("val-{op}").as_bytes());
        xattr_set(&p, "user.other", b"o");
        set_times(&p, (978_307_200, 0), LOWER_MTIME);
    }
    set_times(&sg, (978_307_200, 0), LOWER_MTIME);
    age_atimes(fx.lower(0));
}

/// What the copy must look like after an op: upper name, content, mode, owner, and mtime
/// (None when the op legitimately changes it).
type Expected = (String, String, u32, (u32, u32), Option<(i64, i64)>);

fn expected(op: &str) -> Expected {
    let c = content(op);
    let name = if op == "rename" {
        "f_renamed".to_string()
    } else {
        format!("f_{op}")
    };
    match op {
        "write" => (name, format!("XYZ{}", &c[3..]), FILE_MODE, OWNER, None),
        "append" => (name, format!("{c}+appended"), FILE_MODE, OWNER, None),
        "truncate" => (name, c[..7].to_string(), FILE_MODE, OWNER, None),
        "chmod" => (name, c, 0o6711, OWNER, Some(LOWER_MTIME)),
        // chown of a non-directory clears setuid and (group-executable) setgid, as on any fs.
        "chown" => (name, c, 0o1755, (4321, 8765), Some(LOWER_MTIME)),
        "utimes" => (name, c, FILE_MODE, OWNER, Some((1_600_000_000, 7))),
        _ => (name, c, FILE_MODE, OWNER, Some(LOWER_MTIME)),
    }
}

fn do_op(fx: &Fixture, op: &str) {
    let p = fx.m(&format!("sg/f_{op}"));
    match op {
        "write" => {
            let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
            f.write_all_at(b"XYZ", 0).unwrap();
        }
        "append" => append(&p, "+appended"),
        "truncate" => fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(7)
            .unwrap(),
        "chmod" => chmod(&p, 0o6711),
        "chown" => lchown(&p, 4321, 8765),
        "utimes" => set_times(&p, (1_500_000_000, 5), (1_600_000_000, 7)),
        "setxattr" => xattr_set(&p, "user.new", b"n"),
        "link" => fs::hard_link(&p, fx.m("sg/f_link2")).unwrap(),
        "rename" => fs::rename(&p, fx.m("sg/f_renamed")).unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn priv_copy_up_every_change_keeps_lower_and_metadata() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    make_lower(&fx);
    let before = snapshot(fx.lower(0));
    fx.mount();
    for op in OPS {
        do_op(&fx, op);
        assert_same_snapshot(
            &format!("lower after {op}"),
            &before,
            &snapshot(fx.lower(0)),
        );
        let (name, data, mode, owner, mt) = expected(op);
        for (side, p) in [
            ("upper", fx.u(&format!("sg/{name}"))),
            ("mount", fx.m(&format!("sg/{name}"))),
        ] {
            let md = lstat(&p);
            assert_eq!(read_str(&p), data, "{op}: {side} content");
            assert_eq!(
                md.mode() & 0o7777,
                mode,
                "{op}: {side} mode {:o}",
                md.mode()
            );
            assert_eq!((md.uid(), md.gid()), owner, "{op}: {side} owner");
            match mt {
                Some(t) => assert_eq!(mtime(&md), t, "{op}: {side} mtime"),
                None => assert!(
                    mtime(&md) > LOWER_MTIME,
                    "{op}: {side} mtime not updated by a data change"
                ),
            }
            assert_eq!(
                xattr_get(&p, "user.test").unwrap(),
                format!("val-{op}").as_bytes(),
                "{op}: {side} user.test"
            );
            assert_eq!(
                xattr_get(&p, "user.other").unwrap(),
                b"o",
                "{op}: {side} user.other"
            );
        }
        match op {
            "setxattr" => assert_eq!(xattr_get(fx.u("sg/f_setxattr"), "user.new").unwrap(), b"n"),
            "link" => {
                let (a, b) = (lstat(fx.u("sg/f_link")), lstat(fx.u("sg/f_link2")));
                assert_eq!(a.ino(), b.ino(), "link: the two upper names are one inode");
                let (ma, mb) = (lstat(fx.m("sg/f_link")), lstat(fx.m("sg/f_link2")));
                assert_eq!(
                    (ma.ino(), ma.nlink()),
                    (mb.ino(), 2),
                    "link: same st_ino, nlink 2 through the mount"
                );
                assert_eq!(ma.nlink(), 2);
            }
            "rename" => {
                assert_eq!(
                    errno("old name", fs::symlink_metadata(fx.m("sg/f_rename"))),
                    libc::ENOENT
                );
                assert!(
                    is_char_whiteout(&lstat(fx.u("sg/f_rename"))),
                    "rename of a lower file leaves a whiteout"
                );
            }
            _ => {}
        }
        // The parent was copied up with its setgid bit, owner and xattrs.
        let sg = lstat(fx.u("sg"));
        assert_eq!(
            sg.mode() & 0o7777,
            DIR_MODE,
            "{op}: upper parent mode {:o}",
            sg.mode()
        );
        assert_eq!((sg.uid(), sg.gid()), OWNER, "{op}: upper parent owner");
        assert_eq!(xattr_get(fx.u("sg"), "user.dir").unwrap(), b"dir-value");
        assert_eq!(
            lstat(fx.m("sg")).mode() & 0o7777,
            DIR_MODE,
            "{op}: parent mode through the mount"
        );
    }
    // Files not yet touched are still lower-only: no copy of them in the upper.
    fx.remount();
    for op in OPS {
        let (name, data, mode, owner, _) = expected(op);
        let md = lstat(fx.m(&format!("sg/{name}")));
        assert_eq!(
            read_str(fx.m(&format!("sg/{name}"))),
            data,
            "{op} after remount"
        );
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (mode, owner.0, owner.1),
            "{op} after remount"
        );
    }
    fx.umount();
    assert_same_snapshot("lower at the end", &before, &snapshot(fx.lower(0)));
}

#[test]
fn priv_copy_up_with_a_read_only_fd_open_keeps_lower() {
    if !require_mount() {
        return;
    }
    // Without passthrough, as on kernel overlayfs: the writer copies up and writes; whatever
    // the old fd reads, the lower file never changes.
    let mut fx = Fixture::new(1);
    fx.opts.push("passthrough=off".into());
    write(fx.l(0, "f"), "original");
    age_atimes(fx.lower(0));
    let before = snapshot(fx.lower(0));
    fx.mount();
    let mut ro = fs::File::open(fx.m("f")).unwrap();
    let mut first = [0u8; 4];
    ro.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"orig");
    {
        let mut w = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(fx.m("f"))
            .unwrap();
        w.write_all(b"rewritten").unwrap();
    }
    assert_eq!(read_str(fx.m("f")), "rewritten");
    assert_eq!(read_str(fx.u("f")), "rewritten");
    let mut rest = Vec::new();
    let _ = ro.read_to_end(&mut rest);
    drop(ro);
    assert_same_snapshot("lower", &before, &snapshot(fx.lower(0)));
}

#[test]
fn priv_writer_waits_for_passthrough_readers_of_the_lower_file() {
    if !require_mount() {
        return;
    }
    // As root, reads of files of 64 KiB and more are passthrough on the lower file, and the
    // kernel allows one backing file per inode while it is open (fs/src/fuse/passthrough.rs):
    // a writer gets ETXTBSY until the readers close, and the lower file never changes.
    let mut fx = Fixture::new(1);
    let tail = "x".repeat(70_000);
    let original = format!("original{tail}");
    write(fx.l(0, "f"), &original);
    write(fx.l(0, "small"), "small");
    age_atimes(fx.lower(0));
    let before = snapshot(fx.lower(0));
    fx.mount();
    let mut ro = fs::File::open(fx.m("f")).unwrap();
    let mut first = [0u8; 4];
    ro.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"orig");
    let busy = fs::OpenOptions::new().append(true).open(fx.m("f"));
    assert_eq!(errno("open for writing while read", busy), libc::ETXTBSY);
    // truncate(2) by path (a SETATTR without a handle): std has no such call.
    let busy = std::process::Command::new("python3")
        .args(["-c", "import os, sys; os.truncate(sys.argv[1], 0)"])
        .arg(fx.m("f"))
        .output()
        .expect("python3");
    let err = String::from_utf8_lossy(&busy.stderr).into_owned();
    assert!(
        !busy.status.success() && err.contains("Text file busy"),
        "{err}"
    );
    // A second reader shares the first one's backing file and sees the same data.
    assert_eq!(read_str(fx.m("f")), original);
    let mut rest = String::new();
    ro.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, original[4..]);
    drop(ro);
    append(fx.m("f"), "+more");
    assert_eq!(read_str(fx.m("f")), format!("{original}+more"));
    assert_eq!(read_str(fx.u("f")), format!("{original}+more"));
    // Readers and writers of the upper file now share its read-write backing file.
    let mut r2 = fs::File::open(fx.m("f")).unwrap();
    append(fx.m("f"), "!");
    let mut all = String::new();
    r2.read_to_string(&mut all).unwrap();
    assert_eq!(all, format!("{original}+more!"));
    drop(r2);
    // A small file is served by the daemon: its writer does not wait for its reader.
    let mut rs = fs::File::open(fx.m("small")).unwrap();
    append(fx.m("small"), "+");
    let mut s = String::new();
    rs.read_to_string(&mut s).unwrap();
    assert_eq!(read_str(fx.m("small")), "small+");
    drop(rs);
    assert_same_snapshot("lower", &before, &snapshot(fx.lower(0)));
}

#[test]
fn priv_copy_up_keeps_holes() {
    if !require_mount() {
        return;
    }
    const MIB: u64 = 1 << 20;
    let mut fx = Fixture::new(1);
    let data: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8 + 1).collect();
    {
        let f = fs::File::create(fx.l(0, "sparse")).unwrap();
        f.set_len(64 * MIB).unwrap();
        f.write_all_at(&data, 32 * MIB).unwrap();
        f.sync_all().unwrap();
    }
    let lower_blocks = lstat(fx.l(0, "sparse")).blocks();
    assert!(
        lower_blocks <= 64,
        "the lower file is not sparse here ({lower_blocks} blocks): cannot test holes"
    );
    fx.mount();
    append(fx.m("sparse"), "!");
    let up = lstat(fx.u("sparse"));
    assert_eq!(up.size(), 64 * MIB + 1);
    // 4 KiB of data plus the appended byte's block: far below 64 MiB (131072 blocks).
    assert!(
        up.blocks() <= 256,
        "copy-up filled holes: upper has {} 512-byte blocks",
        up.blocks()
    );
    let f = fs::File::open(fx.m("sparse")).unwrap();
    assert_eq!(
        rx(rustix::fs::seek(&f, RSeek::Data(0))).unwrap(),
        32 * MIB,
        "SEEK_DATA from 0"
    );
    assert_eq!(
        rx(rustix::fs::seek(&f, RSeek::Hole(32 * MIB))).unwrap(),
        32 * MIB + 4096,
        "SEEK_HOLE after the data"
    );
    assert_eq!(
        rx(rustix::fs::seek(&f, RSeek::Data(32 * MIB + 4096))).unwrap(),
        64 * MIB,
        "SEEK_DATA to the appended byte"
    );
    assert_eq!(
        errno(
            "SEEK_DATA past EOF",
            rx(rustix::fs::seek(&f, RSeek::Data(64 * MIB + 1)))
        ),
        libc::ENXIO
    );
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, 32 * MIB).unwrap();
    assert_eq!(buf, data);
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
    let mut last = [0u8; 1];
    f.read_exact_at(&mut last, 64 * MIB).unwrap();
    assert_eq!(&last, b"!");
    assert_eq!(lstat(fx.l(0, "sparse")).size(), 64 * MIB, "lower unchanged");
}

#[test]
fn priv_inode_numbers_stable_across_copy_up_and_remount() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    write(fx.l(0, "f"), "f");
    write(fx.l(1, "d/g"), "g");
    write(fx.l(0, "d/h"), "h");
    write(fx.l(1, "deep/er/est"), "x");
    std::os::unix::fs::symlink("f", fx.l(0, "sym")).unwrap();
    fx.mount();
    let paths = [
        "f",
        "d",
        "d/g",
        "d/h",
        "deep",
        "deep/er",
        "deep/er/est",
        "sym",
    ];
    let ino = |fx: &Fixture| -> Vec<u64> { paths.iter().map(|p| lstat(fx.m(p)).ino()).collect() };
    let before = ino(&fx);
    let mut uniq = before.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(
        uniq.len(),
        paths.len(),
        "inode numbers must be distinct: {before:?}"
    );
    // Copy everything up in different ways.
    append(fx.m("f"), "+");
    write(fx.m("d/new"), "n");
    append(fx.m("d/g"), "+");
    xattr_set(fx.m("d/h"), "user.x", b"1");
    append(fx.m("deep/er/est"), "+");
    lchown(fx.m("sym"), 7, 7);
    for p in ["f", "d/g", "d/h", "deep/er/est", "sym"] {
        assert!(
            fs::symlink_metadata(fx.u(p)).is_ok(),
            "{p} was not copied up"
        );
    }
    let after = ino(&fx);
    assert_eq!(before, after, "st_ino changed by copy-up ({paths:?})");
    let new_ino = lstat(fx.m("d/new")).ino();
    // readdir agrees with stat.
    for e in readdir(fx.m("d")).unwrap() {
        if e.name != ".." {
            assert_eq!(
                e.ino,
                lstat(fx.m(&format!("d/{}", e.name))).ino(),
                "d_ino of d/{}",
                e.name
            );
        }
    }
    fx.remount();
    assert_eq!(ino(&fx), before, "st_ino changed by remount");
    assert_eq!(
        lstat(fx.m("d/new")).ino(),
        new_ino,
        "new file's st_ino changed by remount"
    );
    for e in readdir(fx.m("d")).unwrap() {
        if e.name != ".." {
            assert_eq!(
                e.ino,
                lstat(fx.m(&format!("d/{}", e.name))).ino(),
                "d_ino of d/{} after remount",
                e.name
            );
        }
    }
}

#[test]
fn priv_copy_up_of_big_file_is_exact() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    // 8 MiB + 3 bytes of non-repeating data: catches short copies and off-by-one chunking.
    let n = 8 * 1024 * 1024 + 3;
    let data: Vec<u8> = (0..n as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write(fx.l(0, "big"), &data);
    fx.mount();
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.m("big"))
        .unwrap();
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(b"END").unwrap();
    drop(f);
    let got = read(fx.u("big"));
    assert_eq!(got.len(), n + 3);
    assert!(
        got[..n] == data[..],
        "copied data differs from the lower file"
    );
    assert_eq!(&got[n..], b"END");
    assert_eq!(hash_bytes(&read(fx.m("big"))), hash_bytes(&got));
}

#[test]
fn priv_new_objects_in_setgid_directories_inherit_group() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    let sg = fx.l(0, "sg");
    mkdirs(&sg);
    lchown(&sg, OWNER.0, OWNER.1);
    chmod(&sg, DIR_MODE);
    fx.mount();
    // The lower directory is copied up by the first creation in it.
    write(fx.m("sg/file"), "f");
    fs::create_dir(fx.m("sg/sub")).unwrap();
    let f = lstat(fx.m("sg/file"));
    assert_eq!(
        f.gid(),
        OWNER.1,
        "file in a setgid dir takes the dir's group"
    );
    let d = lstat(fx.m("sg/sub"));
    assert_eq!(
        d.gid(),
        OWNER.1,
        "dir in a setgid dir takes the dir's group"
    );
    assert_ne!(
        d.mode() & libc::S_ISGID,
        0,
        "dir in a setgid dir inherits the setgid bit"
    );
    write(fx.m("sg/sub/deeper"), "d");
    assert_eq!(lstat(fx.m("sg/sub/deeper")).gid(), OWNER.1);
    assert_eq!(lstat(fx.u("sg")).mode() & 0o7777, DIR_MODE);
}

#[test]
fn priv_copy_up_of_empty_and_all_hole_files() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "empty"), "");
    fs::File::create(fx.l(0, "holes"))
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    fx.mount();
    append(fx.m("empty"), "e");
    assert_eq!(read_str(fx.m("empty")), "e");
    append(fx.m("holes"), "h");
    let up = lstat(fx.u("holes"));
    assert_eq!(up.size(), (8 << 20) + 1);
    assert!(
        up.blocks() <= 64,
        "all-hole file copied with data: {} blocks",
        up.blocks()
    );
    let data = read(fx.m("holes"));
    assert_eq!(data.len(), (8 << 20) + 1);
    assert!(data[..8 << 20].iter().all(|b| *b == 0));
    assert_eq!(data[8 << 20], b'h');
    fs::OpenOptions::new()
        .write(true)
        .open(fx.m("empty"))
        .unwrap()
        .set_len(0)
        .unwrap();
    fx.remount();
    assert_eq!(read_str(fx.m("empty")), "");
    assert_eq!(lstat(fx.m("holes")).size(), (8 << 20) + 1);
}

#[test]
fn priv_attributes_seen_through_the_mount_survive_remount() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(2);
    write(fx.l(0, "f"), "f");
    write(fx.l(1, "d/g"), "g");
    write(fx.l(0, "d/h"), "h");
    write(fx.l(1, "deep/er/est"), "x");
    fx.mount();
    // Copy-ups into lower and merged directories, and a new file.
    append(fx.m("f"), "+");
    write(fx.m("d/new"), "n");
    append(fx.m("d/g"), "+");
    xattr_set(fx.m("d/h"), "user.x", b"1");
    append(fx.m("deep/er/est"), "+");
    let paths = [
        "",
        "f",
        "d",
        "d/g",
        "d/h",
        "d/new",
        "deep",
        "deep/er",
        "deep/er/est",
    ];
    // What a program sees now must be what it sees after a remount: no mtime or ctime that
    // only "catches up" later (kernel overlayfs restores a parent's times after copy-up and
    // reads attributes live).
    type Seen = (String, u64, (i64, i64), (i64, i64));
    let attrs = |fx: &Fixture| -> Vec<Seen> {
        paths
            .iter()
            .map(|p| {
                let m = lstat(fx.m(p));
                (p.to_string(), m.size(), mtime(&m), ctime(&m))
            })
            .collect()
    };
    let before = attrs(&fx);
    fx.remount();
    let after = attrs(&fx);
    let diffs: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, a)| {
            format!(
                "{:?}: size {} -> {}, mtime {:?} -> {:?}, ctime {:?} -> {:?}",
                b.0, b.1, a.1, b.2, a.2, b.3, a.3
            )
        })
        .collect();
    assert!(
        diffs.is_empty(),
        "attributes changed by a remount:\n  {}",
        diffs.join("\n  ")
    );
}

#[test]
fn priv_copy_up_keeps_file_capabilities_and_privileged_xattrs() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    // VFS_CAP_REVISION_2 | effective, permitted = CAP_NET_BIND_SERVICE (bit 10).
    let mut cap = Vec::new();
    for w in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        cap.extend_from_slice(&w.to_le_bytes());
    }
    let ops = ["chmod", "utimes", "setxattr", "link", "rename"];
    for op in ops {
        let p = fx.l(0, &format!("bin-{op}"));
        write(&p, "#!/bin/true\n");
        chmod(&p, 0o755);
        xattr_set(&p, "security.capability", &cap);
        xattr_set(&p, "trusted.t", b"T");
        xattr_set(&p, "security.s", b"S");
    }
    fx.mount();
    for op in ops {
        let p = fx.m(&format!("bin-{op}"));
        let upper_name = match op {
            "chmod" => {
                chmod(&p, 0o750);
                format!("bin-{op}")
            }
            "utimes" => {
                set_times(&p, (1, 0), (2, 0));
                format!("bin-{op}")
            }
            "setxattr" => {
                xattr_set(&p, "user.u", b"U");
                format!("bin-{op}")
            }
            "link" => {
                fs::hard_link(&p, fx.m("bin-link2")).unwrap();
                "bin-link2".to_string()
            }
            _ => {
                fs::rename(&p, fx.m("bin-renamed")).unwrap();
                "bin-renamed".to_string()
            }
        };
        for (side, q) in [("upper", fx.u(&upper_name)), ("mount", fx.m(&upper_name))] {
            assert_eq!(
                xattr_get(&q, "security.capability").ok().as_deref(),
                Some(&cap[..]),
                "{op}: file capability lost on copy-up ({side})"
            );
            assert_eq!(xattr_get(&q, "trusted.t").unwrap(), b"T", "{op}: {side}");
            assert_eq!(xattr_get(&q, "security.s").unwrap(), b"S", "{op}: {side}");
        }
    }
}
