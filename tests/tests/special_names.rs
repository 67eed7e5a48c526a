//! Special files (symlinks, fifos, sockets, device nodes), name and path length limits, and
//! open files that lose their last name.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};

use rustix::fs::{mknodat, FileType, Mode, CWD};
use strata_tests::*;

fn mknod(
    p: &std::path::Path,
    ft: FileType,
    perm: u32,
    major: u32,
    minor: u32,
) -> std::io::Result<()> {
    rx(mknodat(
        CWD,
        p,
        ft,
        Mode::from_raw_mode(perm),
        libc::makedev(major, minor),
    ))
}

#[test]
fn priv_symlinks_fifos_sockets_and_devices() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    std::os::unix::fs::symlink("target-rel", fx.l(0, "lsym")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/abs", fx.l(0, "dangling")).unwrap();
    mknod(&fx.l(0, "lfifo"), FileType::Fifo, 0o640, 0, 0).unwrap();
    mknod(&fx.l(0, "lnull"), FileType::CharacterDevice, 0o666, 1, 3).unwrap();
    mknod(&fx.l(0, "lblk"), FileType::BlockDevice, 0o600, 7, 200).unwrap();
    drop(UnixListener::bind(fx.l(0, "lsock")).unwrap());
    let before = snapshot(fx.lower(0));
    fx.mount();
    // Lower objects as they are.
    assert_eq!(
        fs::read_link(fx.m("lsym")).unwrap().to_str(),
        Some("target-rel")
    );
    assert_eq!(
        fs::read_link(fx.m("dangling")).unwrap().to_str(),
        Some("/nonexistent/abs")
    );
    assert!(lstat(fx.m("lfifo")).file_type().is_fifo());
    assert!(lstat(fx.m("lsock")).file_type().is_socket());
    let n = lstat(fx.m("lnull"));
    assert!(n.file_type().is_char_device());
    assert_eq!(n.rdev(), libc::makedev(1, 3));
    let b = lstat(fx.m("lblk"));
    assert!(b.file_type().is_block_device());
    assert_eq!(b.rdev(), libc::makedev(7, 200));
    // Copy-up of each kind by a metadata change.
    lchown(fx.m("lsym"), 11, 12);
    lchown(fx.m("lfifo"), 13, 14);
    chmod(fx.m("lnull"), 0o600);
    lchown(fx.m("lblk"), 15, 16);
    let us = lstat(fx.u("lsym"));
    assert!(us.file_type().is_symlink());
    assert_eq!((us.uid(), us.gid()), (11, 12));
    assert_eq!(
        fs::read_link(fx.u("lsym")).unwrap().to_str(),
        Some("target-rel")
    );
    assert!(lstat(fx.u("lfifo")).file_type().is_fifo());
    assert_eq!(lstat(fx.m("lfifo")).uid(), 13);
    let un = lstat(fx.u("lnull"));
    assert_eq!(
        (un.rdev(), un.mode() & 0o7777),
        (libc::makedev(1, 3), 0o600)
    );
    assert!(un.file_type().is_char_device());
    assert_eq!(lstat(fx.u("lblk")).rdev(), libc::makedev(7, 200));
    // New objects.
    std::os::unix::fs::symlink("/some/abs/target", fx.m("abs")).unwrap();
    std::os::unix::fs::symlink("../rel", fx.m("rel")).unwrap();
    assert_eq!(
        fs::read_link(fx.m("abs")).unwrap().to_str(),
        Some("/some/abs/target")
    );
    assert_eq!(fs::read_link(fx.m("rel")).unwrap().to_str(), Some("../rel"));
    assert!(lstat(fx.u("abs")).file_type().is_symlink());
    mknod(&fx.m("fifo"), FileType::Fifo, 0o600, 0, 0).unwrap();
    {
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fx.m("fifo"))
            .unwrap();
        f.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        f.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
    }
    let listener = UnixListener::bind(fx.m("sock")).unwrap();
    let mut client = UnixStream::connect(fx.m("sock")).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    client.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert!(lstat(fx.m("sock")).file_type().is_socket());
    mknod(&fx.m("null"), FileType::CharacterDevice, 0o666, 1, 3).unwrap();
    mknod(&fx.m("blk"), FileType::BlockDevice, 0o600, 7, 201).unwrap();
    let md = lstat(fx.m("null"));
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), libc::makedev(1, 3));
    assert_eq!(lstat(fx.u("null")).rdev(), libc::makedev(1, 3));
    assert_eq!(lstat(fx.m("blk")).rdev(), libc::makedev(7, 201));
    // The mount is nodev, as fuse-overlayfs's is: device nodes cannot be opened through it.
    assert_eq!(
        errno("open device on nodev mount", fs::File::open(fx.m("null"))),
        libc::EACCES
    );
    drop((listener, client, server));
    let kinds = |fx: &Fixture| -> Vec<(String, char)> {
        readdir(&fx.mnt)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect()
    };
    let want: Vec<(String, char)> = [
        (".", 'd'),
        ("..", 'd'),
        ("abs", 'l'),
        ("blk", 'b'),
        ("dangling", 'l'),
        ("fifo", 'p'),
        ("lblk", 'b'),
        ("lfifo", 'p'),
        ("lnull", 'c'),
        ("lsock", 's'),
        ("lsym", 'l'),
        ("null", 'c'),
        ("rel", 'l'),
        ("sock", 's'),
    ]
    .iter()
    .map(|(n, k)| (n.to_string(), *k))
    .collect();
    assert_eq!(kinds(&fx), want);
    fx.remount();
    assert_eq!(kinds(&fx), want, "after remount");
    assert_eq!(lstat(fx.m("blk")).rdev(), libc::makedev(7, 201));
    assert_eq!(lstat(fx.m("lsym")).uid(), 11);
    fx.umount();
    assert_same_snapshot("lower", &before, &snapshot(fx.lower(0)));
}

#[test]
fn priv_name_length_limits() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    let n255 = "a".repeat(255);
    let l255 = "L".repeat(255);
    let d255 = "D".repeat(255);
    write(fx.l(0, &l255), "lower-255");
    write(fx.l(0, &format!("{d255}/{l255}")), "nested");
    fx.mount();
    write(fx.m(&n255), "new-255");
    assert_eq!(read_str(fx.m(&n255)), "new-255");
    assert_eq!(lstat(fx.m(&n255)).len(), 7);
    assert!(names(&fx.mnt).contains(&n255));
    append(fx.m(&l255), "+"); // copy-up of a 255-byte name
    assert_eq!(read_str(fx.m(&l255)), "lower-255+");
    assert_eq!(read_str(fx.u(&l255)), "lower-255+");
    append(fx.m(&format!("{d255}/{l255}")), "+");
    assert_eq!(read_str(fx.u(&format!("{d255}/{l255}"))), "nested+");
    let m255 = "m".repeat(255);
    fs::create_dir(fx.m(&m255)).unwrap();
    fs::rename(fx.m(&n255), fx.m(&format!("{m255}/{n255}"))).unwrap();
    assert_eq!(read_str(fx.m(&format!("{m255}/{n255}"))), "new-255");
    fs::remove_file(fx.m(&format!("{d255}/{l255}"))).unwrap();
    assert_eq!(
        errno(
            "removed 255",
            fs::symlink_metadata(fx.m(&format!("{d255}/{l255}")))
        ),
        libc::ENOENT
    );

    let n256 = "b".repeat(256);
    let l256 = fx.m(&n256);
    assert_eq!(
        errno("stat 256", fs::symlink_metadata(&l256)),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno("open 256", fs::File::open(&l256)), libc::ENAMETOOLONG);
    assert_eq!(
        errno("create 256", fs::File::create(&l256)),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno("mkdir 256", fs::create_dir(&l256)),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno("rename to 256", fs::rename(fx.m(&l255), &l256)),
        libc::ENAMETOOLONG
    );
    assert_eq!(
        errno("symlink 256", std::os::unix::fs::symlink("x", &l256)),
        libc::ENAMETOOLONG
    );
    fx.remount();
    assert_eq!(read_str(fx.m(&l255)), "lower-255+");
    assert_eq!(read_str(fx.m(&format!("{m255}/{n255}"))), "new-255");
}

#[test]
fn priv_paths_near_path_max() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    let mnt_len = fx.mnt.as_os_str().len();
    // Components of 200 bytes until the mount path is about 4000 bytes long (PATH_MAX 4096).
    let mut rel = String::new();
    let mut i = 0;
    while mnt_len + rel.len() + 202 < 3900 {
        if !rel.is_empty() {
            rel.push('/');
        }
        rel.push_str(&format!("{i:03}{}", "p".repeat(197)));
        i += 1;
    }
    let file_name = "f".repeat(4000 - mnt_len - rel.len() - 2);
    let deep_file = format!("{rel}/{file_name}");
    assert!((3990..4096).contains(&fx.m(&deep_file).as_os_str().len()));
    // The same tree in the lower (lower paths are longer than mount paths by a few bytes).
    write(fx.l(0, &format!("{rel}/lowerfile")), "deep-lower");
    fx.mount();
    write(fx.m(&deep_file), "deep-new");
    assert_eq!(read_str(fx.m(&deep_file)), "deep-new");
    assert_eq!(lstat(fx.m(&deep_file)).len(), 8);
    append(fx.m(&format!("{rel}/lowerfile")), "+");
    assert_eq!(read_str(fx.m(&format!("{rel}/lowerfile"))), "deep-lower+");
    assert_eq!(
        names(fx.m(&rel)),
        sorted(&[".", "..", &file_name, "lowerfile"])
    );
    fs::create_dir(fx.m(&format!("{rel}/dir"))).unwrap();
    fs::rename(fx.m(&deep_file), fx.m(&format!("{rel}/dir/moved"))).unwrap();
    fx.remount();
    assert_eq!(read_str(fx.m(&format!("{rel}/dir/moved"))), "deep-new");
    assert_eq!(read_str(fx.m(&format!("{rel}/lowerfile"))), "deep-lower+");
    assert_eq!(read_str(fx.l(0, &format!("{rel}/lowerfile"))), "deep-lower");
}

#[test]
fn priv_unlinked_open_files_stay_usable() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "lower-ro"), "lower read-only content");
    write(fx.l(0, "lower-rw"), "lower rw");
    fx.mount();
    // A new file.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(fx.m("t"))
        .unwrap();
    f.write_all(b"abc").unwrap();
    fs::remove_file(fx.m("t")).unwrap();
    assert_eq!(
        errno("stat unlinked", fs::symlink_metadata(fx.m("t"))),
        libc::ENOENT
    );
    let md = f.metadata().unwrap();
    assert_eq!(md.nlink(), 0, "fstat of an unlinked new file");
    f.write_all(b"def").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "abcdef");
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .unwrap();
    let md = f.metadata().unwrap();
    assert_eq!((md.nlink(), md.len(), md.mode() & 0o777), (0, 6, 0o600));
    drop(f);
    // A lower file opened read-only, then unlinked.
    let mut r = fs::File::open(fx.m("lower-ro")).unwrap();
    fs::remove_file(fx.m("lower-ro")).unwrap();
    let md = r.metadata().unwrap();
    assert_eq!(md.nlink(), 0, "fstat of an unlinked lower file");
    let mut s = String::new();
    r.read_to_string(&mut s).unwrap();
    assert_eq!(s, "lower read-only content");
    assert!(is_char_whiteout(&lstat(fx.u("lower-ro"))));
    // A lower file opened read-write (copied up), then unlinked.
    let mut w = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.m("lower-rw"))
        .unwrap();
    fs::remove_file(fx.m("lower-rw")).unwrap();
    assert_eq!(
        w.metadata().unwrap().nlink(),
        0,
        "fstat of an unlinked copied-up file"
    );
    w.seek(SeekFrom::End(0)).unwrap();
    w.write_all(b"+more").unwrap();
    w.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    w.read_to_string(&mut s).unwrap();
    assert_eq!(s, "lower rw+more");
    drop((r, w));
    // One name of two removed: the open file still has one link.
    write(fx.m("two"), "two names");
    fs::hard_link(fx.m("two"), fx.m("other")).unwrap();
    let t = fs::File::open(fx.m("two")).unwrap();
    fs::remove_file(fx.m("two")).unwrap();
    assert_eq!(
        t.metadata().unwrap().nlink(),
        1,
        "fstat after removing one of two names"
    );
    drop(t);
    fs::remove_file(fx.m("other")).unwrap();
    assert_eq!(names(&fx.mnt), sorted(&[".", ".."]));
    assert_eq!(read_str(fx.l(0, "lower-rw")), "lower rw");
    assert_eq!(read_str(fx.l(0, "lower-ro")), "lower read-only content");
}

#[test]
fn priv_whiteout_lookalikes_created_through_the_mount_never_hide_anything() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "a"), "a");
    write(fx.l(0, "d/x"), "x");
    fx.mount();
    // A char 0/0 device is what a whiteout is: kernel overlayfs refuses to create one (EPERM).
    let r = mknod(&fx.m("w"), FileType::CharacterDevice, 0o600, 0, 0);
    assert_eq!(errno("mknod c 0 0", r), libc::EPERM);
    // `.wh.` names: refused or shown, but never taken as whiteouts of what they name.
    for (p, hidden) in [
        (".wh.a", "a"),
        ("d/.wh.x", "d/x"),
        ("d/.wh..wh..opq", "d/x"),
    ] {
        match fs::write(fx.m(p), "") {
            Ok(()) => assert!(
                fs::symlink_metadata(fx.m(p)).is_ok(),
                "{p} created but not visible"
            ),
            Err(e) => assert!(e.raw_os_error().is_some(), "{p}: {e}"),
        }
        assert!(
            fs::symlink_metadata(fx.m(hidden)).is_ok(),
            "creating {p} hid {hidden}"
        );
    }
    fx.remount();
    assert_eq!(read_str(fx.m("a")), "a");
    assert_eq!(read_str(fx.m("d/x")), "x");
    // The longest symlink target (PATH_MAX - 1).
    let target = "t".repeat(4095);
    std::os::unix::fs::symlink(&target, fx.m("long")).unwrap();
    assert_eq!(fs::read_link(fx.m("long")).unwrap().as_os_str().len(), 4095);
    fx.remount();
    assert_eq!(
        fs::read_link(fx.m("long")).unwrap().to_str(),
        Some(&target[..])
    );
}

#[test]
fn priv_metadata_changes_on_open_removed_directories_and_files() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    fx.mount();
    // A directory removed while open: fchmod/fchown/fstat keep working, as on any filesystem.
    fs::create_dir(fx.m("d")).unwrap();
    let d = fs::File::open(fx.m("d")).unwrap();
    fs::remove_dir(fx.m("d")).unwrap();
    rx(rustix::fs::fchmod(&d, Mode::from_raw_mode(0o700)))
        .expect("fchmod of an open removed directory");
    rx(rustix::fs::fchown(
        &d,
        Some(rustix::fs::Uid::from_raw(7)),
        None,
    ))
    .expect("fchown of an open removed directory");
    let md = d.metadata().unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid()), (0o700, 7));
    // The same for a file and a fifo.
    write(fx.m("f"), "f");
    let f = fs::File::open(fx.m("f")).unwrap();
    fs::remove_file(fx.m("f")).unwrap();
    rx(rustix::fs::fchmod(&f, Mode::from_raw_mode(0o400))).unwrap();
    rx(rustix::fs::fchown(
        &f,
        Some(rustix::fs::Uid::from_raw(8)),
        None,
    ))
    .unwrap();
    let md = f.metadata().unwrap();
    assert_eq!((md.mode() & 0o7777, md.uid(), md.nlink()), (0o400, 8, 0));
    mknod(&fx.m("p"), FileType::Fifo, 0o600, 0, 0).unwrap();
    let p = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(fx.m("p"))
        .unwrap();
    fs::remove_file(fx.m("p")).unwrap();
    rx(rustix::fs::fchmod(&p, Mode::from_raw_mode(0o640))).unwrap();
    assert_eq!(p.metadata().unwrap().mode() & 0o7777, 0o640);
    drop((d, f, p));
    assert_eq!(names(&fx.mnt), sorted(&[".", ".."]));
}

#[test]
fn priv_names_are_bytes_not_text() {
    if !require_mount() {
        return;
    }
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let mut fx = Fixture::new(1);
    let raw: [&[u8]; 4] = [b"caf\xe9", b"a\nb", b"sp ace", b"\xff\xfe\x01"];
    for n in raw {
        write(fx.lower(0).join(OsStr::from_bytes(n)), n);
    }
    fx.mount();
    let list = |fx: &Fixture| -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = fs::read_dir(&fx.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        v.sort();
        v
    };
    let mut want: Vec<Vec<u8>> = raw.iter().map(|n| n.to_vec()).collect();
    want.sort();
    assert_eq!(list(&fx), want);
    for n in raw {
        let p = fx.mnt.join(OsStr::from_bytes(n));
        append(&p, "+");
        let mut c = n.to_vec();
        c.push(b'+');
        assert_eq!(read(&p), c, "{:?}", OsStr::from_bytes(n));
    }
    fs::rename(
        fx.mnt.join(OsStr::from_bytes(b"caf\xe9")),
        fx.mnt.join(OsStr::from_bytes(b"\xc3\xa9t\xc3\xa9")),
    )
    .unwrap();
    fx.remount();
    let mut want: Vec<Vec<u8>> = vec![
        b"a\nb".to_vec(),
        b"sp ace".to_vec(),
        b"\xff\xfe\x01".to_vec(),
        b"\xc3\xa9t\xc3\xa9".to_vec(),
    ];
    want.sort();
    assert_eq!(list(&fx), want);
    assert_eq!(read(fx.mnt.join("été")), b"caf\xe9+");
}
