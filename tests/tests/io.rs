//! File I/O through the mount: statfs, mmap, O_APPEND/O_TRUNC/O_EXCL, fsync, fallocate and
//! hole punching, SEEK_DATA/SEEK_HOLE, copy_file_range, and xattrs in every namespace.
// mmap(2) has no safe wrapper in the dependencies this crate uses; the two unsafe blocks below
// map and unmap one region each, with their preconditions stated next to them.
#![allow(unsafe_code)]

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

use rustix::fs::{copy_file_range, fallocate, seek, FallocateFlags, SeekFrom as RSeek, XattrFlags};
use strata_tests::*;

const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

/// A shared mapping of `len` bytes of `f`, read into a Vec, optionally written at `off` first.
fn mmap_rw(f: &fs::File, len: usize, write_at: Option<(usize, &[u8])>) -> Vec<u8> {
    let prot = libc::PROT_READ
        | if write_at.is_some() {
            libc::PROT_WRITE
        } else {
            0
        };
    // SAFETY: a fresh mapping (addr NULL) of a file descriptor that stays open for the whole
    // function; no existing memory is affected. The result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        p,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `p` points to `len` mapped bytes (checked above) that nothing else aliases in
    // this process; the slice does not outlive the munmap below.
    let region = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) };
    if let Some((off, data)) = write_at {
        region[off..off + data.len()].copy_from_slice(data);
    }
    let out = region.to_vec();
    // SAFETY: `p`/`len` is exactly the mapping made above, and `region` is not used after this.
    unsafe {
        assert_eq!(
            libc::msync(p, len, libc::MS_SYNC),
            0,
            "msync: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::munmap(p, len), 0, "munmap");
    }
    out
}

#[test]
fn priv_statfs_reports_a_fuse_filesystem_with_upper_space() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    fx.mount();
    let s = rx(rustix::fs::statfs(&fx.mnt)).unwrap();
    assert_eq!(
        s.f_type as i64, FUSE_SUPER_MAGIC,
        "f_type (podman recognises mounts by it)"
    );
    assert_eq!(s.f_namelen, 255);
    let up = rx(rustix::fs::statfs(&fx.upper)).unwrap();
    assert!(s.f_bsize > 0);
    assert_eq!(
        s.f_blocks * s.f_bsize as u64,
        up.f_blocks * up.f_bsize as u64,
        "size of the upper's filesystem"
    );
    assert_eq!(s.f_files, up.f_files);
    let v = rx(rustix::fs::statvfs(fx.m(""))).unwrap();
    assert_eq!(v.f_namemax, 255);
}

#[test]
fn priv_mmap_read_and_write() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    let pattern: Vec<u8> = (0..8192u32).map(|i| (i * 7 % 256) as u8).collect();
    write(fx.l(0, "mm"), &pattern);
    write(fx.l(0, "ro"), &pattern);
    fx.mount();
    // Write through a shared mapping of a lower file: copy-up, then the upper has the change.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.m("mm"))
        .unwrap();
    let seen = mmap_rw(&f, 8192, Some((4096, b"MMAP")));
    assert_eq!(&seen[..4096], &pattern[..4096]);
    drop(f);
    let mut want = pattern.clone();
    want[4096..4100].copy_from_slice(b"MMAP");
    assert_eq!(read(fx.m("mm")), want);
    assert_eq!(read(fx.u("mm")), want);
    assert_eq!(read(fx.l(0, "mm")), pattern, "lower changed by mmap write");
    // Read-only mapping of a lower file: no copy-up.
    let f = fs::File::open(fx.m("ro")).unwrap();
    assert_eq!(mmap_rw(&f, 8192, None), pattern);
    drop(f);
    assert!(
        fs::symlink_metadata(fx.u("ro")).is_err(),
        "read-only mmap copied the file up"
    );
    // Written with write(2), read through a mapping.
    write(fx.m("new"), &pattern[..5000]);
    let f = fs::File::open(fx.m("new")).unwrap();
    assert_eq!(&mmap_rw(&f, 5000, None)[..], &pattern[..5000]);
    drop(f);
    fx.remount();
    assert_eq!(read(fx.m("mm")), want);
}

#[test]
fn priv_open_append_trunc_excl() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "app"), "base");
    write(fx.l(0, "trunc"), "to be truncated");
    write(fx.l(0, "excl"), "exists");
    write(fx.l(0, "wh"), "deleted");
    fx.mount();
    // O_APPEND writes at the end even after a seek.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(fx.m("app"))
        .unwrap();
    f.write_all(b"+1").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(b"+2").unwrap();
    drop(f);
    append(fx.m("app"), "+3");
    assert_eq!(read_str(fx.m("app")), "base+1+2+3");
    // O_TRUNC of a lower file.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(fx.m("trunc"))
        .unwrap();
    assert_eq!(f.metadata().unwrap().len(), 0);
    f.write_all(b"t").unwrap();
    drop(f);
    assert_eq!(read_str(fx.m("trunc")), "t");
    assert_eq!(read_str(fx.l(0, "trunc")), "to be truncated");
    // O_EXCL.
    let excl = |p| fs::OpenOptions::new().write(true).create_new(true).open(p);
    assert_eq!(
        errno("O_EXCL on a lower file", excl(fx.m("excl"))),
        libc::EEXIST
    );
    excl(fx.m("brand-new")).unwrap().write_all(b"n").unwrap();
    assert_eq!(
        errno("O_EXCL on a new file", excl(fx.m("brand-new"))),
        libc::EEXIST
    );
    fs::remove_file(fx.m("wh")).unwrap();
    excl(fx.m("wh"))
        .expect("O_EXCL over a whited-out name")
        .write_all(b"again")
        .unwrap();
    assert_eq!(read_str(fx.m("wh")), "again");
    // O_CREAT without O_EXCL opens the existing lower file.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(fx.m("excl"))
        .unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "exists");
    drop(f);
    fx.remount();
    assert_eq!(read_str(fx.m("app")), "base+1+2+3");
    assert_eq!(read_str(fx.m("wh")), "again");
}

#[test]
fn priv_fsync_fallocate_punch_hole_and_seek() {
    if !require_mount() {
        return;
    }
    const K: u64 = 1024;
    let mut fx = Fixture::new(1);
    write(fx.l(0, "lower"), vec![b'L'; 64 * 1024]);
    fx.mount();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(fx.m("f"))
        .unwrap();
    f.write_all_at(&vec![b'x'; 1024 * 1024], 0).unwrap();
    f.sync_all().unwrap();
    f.sync_data().unwrap();
    rx(fallocate(&f, FallocateFlags::empty(), 1024 * K, 1024 * K)).unwrap();
    let md = f.metadata().unwrap();
    assert_eq!(md.len(), 2048 * K, "fallocate extends the size");
    assert!(
        md.blocks() >= 4096,
        "fallocate reserves blocks: {}",
        md.blocks()
    );
    rx(fallocate(
        &f,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        256 * K,
        256 * K,
    ))
    .unwrap();
    assert_eq!(f.metadata().unwrap().len(), 2048 * K, "KEEP_SIZE");
    let mut buf = vec![1u8; 256 * 1024];
    f.read_exact_at(&mut buf, 256 * K).unwrap();
    assert!(buf.iter().all(|b| *b == 0), "punched range reads as zeros");
    f.read_exact_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|b| *b == b'x'));
    assert_eq!(
        rx(seek(&f, RSeek::Hole(0))).unwrap(),
        256 * K,
        "SEEK_HOLE finds the punched hole"
    );
    assert_eq!(
        rx(seek(&f, RSeek::Data(256 * K))).unwrap(),
        512 * K,
        "SEEK_DATA after the hole"
    );
    assert_eq!(rx(seek(&f, RSeek::Data(0))).unwrap(), 0);
    drop(f);
    assert_eq!(lstat(fx.u("f")).len(), 2048 * K);
    // fallocate on a lower file opened read-write (copy-up first).
    let g = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(fx.m("lower"))
        .unwrap();
    rx(fallocate(
        &g,
        FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
        0,
        4096,
    ))
    .unwrap();
    g.sync_all().unwrap();
    drop(g);
    let data = read(fx.m("lower"));
    assert_eq!(data.len(), 64 * 1024);
    assert!(data[..4096].iter().all(|b| *b == 0) && data[4096..].iter().all(|b| *b == b'L'));
    assert!(
        read(fx.l(0, "lower")).iter().all(|b| *b == b'L'),
        "lower changed"
    );
    // fsync of a directory.
    fs::File::open(&fx.mnt).unwrap().sync_all().unwrap();
}

#[test]
fn priv_copy_file_range_between_mount_files() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    write(fx.l(0, "src"), &data);
    fx.mount();
    let src = fs::File::open(fx.m("src")).unwrap();
    let dst = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(fx.m("dst"))
        .unwrap();
    let (mut off_in, mut off_out) = (0u64, 0u64);
    while off_in < data.len() as u64 {
        let left = data.len() - off_in as usize;
        let n = rx(copy_file_range(
            &src,
            Some(&mut off_in),
            &dst,
            Some(&mut off_out),
            left,
        ))
        .unwrap();
        assert!(n > 0, "copy_file_range returned 0 at {off_in}");
    }
    drop(dst);
    assert_eq!(read(fx.m("dst")), data);
    assert_eq!(read(fx.u("dst")), data);
    assert!(
        fs::symlink_metadata(fx.u("src")).is_err(),
        "reading the source copied it up"
    );
    // Into the middle of an existing (lower) file.
    let dst2 = fs::OpenOptions::new()
        .write(true)
        .open(fx.m("dst"))
        .unwrap();
    let (mut i, mut o) = (10u64, 100u64);
    let n = rx(copy_file_range(&src, Some(&mut i), &dst2, Some(&mut o), 50)).unwrap();
    assert_eq!(n, 50);
    drop(dst2);
    let mut want = data.clone();
    want[100..150].copy_from_slice(&data[10..60]);
    assert_eq!(read(fx.m("dst")), want);
}

#[test]
fn priv_xattrs_user_trusted_security() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "lf"), "lower");
    xattr_set(fx.l(0, "lf"), "user.fromlower", b"L");
    mkdirs(fx.l(0, "ld"));
    fx.mount();
    write(fx.m("nf"), "new");
    let long = vec![b'v'; 1000];
    for p in ["lf", "nf", "ld"] {
        let mp = fx.m(p);
        xattr_set(&mp, "user.a", b"1");
        xattr_set(&mp, "trusted.b", b"2");
        xattr_set(&mp, "security.c", b"3");
        xattr_set(&mp, "user.long", &long);
        assert_eq!(xattr_get(&mp, "user.a").unwrap(), b"1", "{p}");
        assert_eq!(xattr_get(&mp, "trusted.b").unwrap(), b"2", "{p}");
        assert_eq!(xattr_get(&mp, "security.c").unwrap(), b"3", "{p}");
        assert_eq!(xattr_get(&mp, "user.long").unwrap(), long, "{p}");
        let names = xattr_list(&mp).unwrap();
        for n in ["user.a", "trusted.b", "security.c", "user.long"] {
            assert!(names.contains(n), "{p}: {n} missing from {names:?}");
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("overlay") || n.contains("strata")),
            "{p}: private xattrs listed: {names:?}"
        );
        // Flags and errors.
        assert_eq!(
            errno(
                "XATTR_CREATE on existing",
                rx(rustix::fs::lsetxattr(
                    &mp,
                    "user.a",
                    b"x",
                    XattrFlags::CREATE
                ))
            ),
            libc::EEXIST
        );
        assert_eq!(
            errno(
                "XATTR_REPLACE on missing",
                rx(rustix::fs::lsetxattr(
                    &mp,
                    "user.zz",
                    b"x",
                    XattrFlags::REPLACE
                ))
            ),
            libc::ENODATA
        );
        let mut small = [0u8; 10];
        assert_eq!(
            errno(
                "small buffer",
                rx(rustix::fs::lgetxattr(&mp, "user.long", &mut small[..]))
            ),
            libc::ERANGE
        );
        rx(rustix::fs::lremovexattr(&mp, "user.a")).unwrap();
        assert_eq!(errno("removed", xattr_get(&mp, "user.a")), libc::ENODATA);
        assert_eq!(
            errno(
                "remove missing",
                rx(rustix::fs::lremovexattr(&mp, "user.a"))
            ),
            libc::ENODATA
        );
        // Overlay bookkeeping names are not the user's.
        assert_eq!(
            errno("private get", xattr_get(&mp, "trusted.overlay.opaque")),
            libc::ENODATA
        );
        assert!(
            rx(rustix::fs::lsetxattr(
                &mp,
                "trusted.overlay.opaque",
                b"y",
                XattrFlags::empty()
            ))
            .is_err(),
            "{p}: private set allowed"
        );
    }
    assert_eq!(xattr_get(fx.m("lf"), "user.fromlower").unwrap(), b"L");
    assert!(
        xattr_list(fx.l(0, "lf")).unwrap() == ["user.fromlower".to_string()].into(),
        "lower xattrs changed"
    );
    assert!(
        xattr_list(fx.l(0, "ld")).unwrap().is_empty(),
        "lower dir xattrs changed"
    );
    fx.remount();
    assert_eq!(
        names(fx.m("ld")),
        sorted(&[".", ".."]),
        "copied-up dir is still merged, not opaque"
    );
    for p in ["lf", "nf", "ld"] {
        let mp = fx.m(p);
        assert_eq!(
            xattr_get(&mp, "trusted.b").unwrap(),
            b"2",
            "{p} after remount"
        );
        assert_eq!(xattr_get(&mp, "user.long").unwrap(), long);
        assert_eq!(errno("removed", xattr_get(&mp, "user.a")), libc::ENODATA);
    }
}

/// `ls -l` asks every file for its SELinux label; on a host without SELinux an unlabeled file
/// answers EOPNOTSUPP (so `ls` stops asking), and a label a layer holds is still read.
#[test]
fn priv_selinux_label_absent_is_unsupported_present_is_read() {
    if !require_mount() {
        return;
    }
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        // SELinux answers the label itself; the filesystem is never asked.
        eprintln!("not applicable: SELinux is active and answers labels itself");
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "plain"), "p");
    write(fx.l(0, "labeled"), "l");
    xattr_set(
        fx.l(0, "labeled"),
        "security.selinux",
        b"system_u:object_r:etc_t:s0",
    );
    fx.mount();
    write(fx.m("new"), "n");
    for p in ["plain", "new", "."] {
        assert_eq!(
            errno(p, xattr_get(fx.m(p), "security.selinux")),
            libc::EOPNOTSUPP,
            "{p}"
        );
        // Any other missing name is still ENODATA.
        assert_eq!(
            errno(p, xattr_get(fx.m(p), "security.other")),
            libc::ENODATA
        );
    }
    assert_eq!(
        xattr_get(fx.m("labeled"), "security.selinux").unwrap(),
        b"system_u:object_r:etc_t:s0"
    );
    assert!(xattr_list(fx.m("labeled"))
        .unwrap()
        .contains("security.selinux"));
}

/// A 4096-aligned window of `v` of `len` bytes (O_DIRECT needs aligned user buffers).
fn aligned(v: &mut [u8], len: usize) -> &mut [u8] {
    let off = v.as_ptr().align_offset(4096);
    &mut v[off..off + len]
}

#[test]
fn priv_o_direct_read_write() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    write(fx.l(0, "lower"), vec![b'l'; 16384]);
    fx.mount();
    let mut wbuf = vec![0u8; 8192 + 4096];
    let w = aligned(&mut wbuf, 8192);
    for (i, b) in w.iter_mut().enumerate() {
        *b = (i % 241) as u8;
    }
    let want = w.to_vec();
    for name in ["new", "lower"] {
        let f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(name == "new")
            .truncate(false)
            .custom_flags(libc::O_DIRECT)
            .open(fx.m(name))
            .unwrap_or_else(|e| panic!("open {name} O_DIRECT: {e}"));
        // From the aligned buffer: with passthrough (root) the I/O is direct on the backing
        // file, which needs the alignment O_DIRECT needs natively (open(2), "O_DIRECT").
        f.write_all_at(w, 4096)
            .unwrap_or_else(|e| panic!("O_DIRECT write to {name}: {e}"));
        let mut rbuf = vec![0u8; 8192 + 4096];
        let r = aligned(&mut rbuf, 8192);
        f.read_exact_at(r, 4096)
            .unwrap_or_else(|e| panic!("O_DIRECT read of {name}: {e}"));
        assert!(*r == want[..], "{name}: O_DIRECT read-back differs");
    }
    let data = read(fx.m("lower"));
    assert_eq!(data.len(), 16384);
    assert!(data[..4096].iter().all(|b| *b == b'l') && data[4096..12288] == want[..]);
    assert_eq!(read(fx.m("new"))[4096..], want[..]);
}

/// The root directory's xattrs and those of a removed file still open are the objects' own:
/// both are reached through a bare `/proc/self/fd/N`, a magic link that `l*xattr` would act
/// on instead of the object (they answered "no such attribute" and EOPNOTSUPP). The root of a
/// mount without an upper is checked in `options.rs`.
#[test]
fn priv_xattrs_of_the_root_and_of_a_removed_open_file() {
    if !require_mount() {
        return;
    }
    let mut fx = Fixture::new(1);
    // Writable: the root is the upper's, and takes xattrs.
    fx.mount();
    xattr_set(&fx.mnt, "user.root", b"R");
    assert_eq!(xattr_get(&fx.mnt, "user.root").unwrap(), b"R");
    assert!(xattr_list(&fx.mnt).unwrap().contains("user.root"));
    assert_eq!(xattr_get(&fx.upper, "user.root").unwrap(), b"R");
    rustix::fs::removexattr(&fx.mnt, "user.root").unwrap();
    assert!(xattr_get(&fx.mnt, "user.root").is_err());

    write(fx.m("gone"), "data");
    let f = fs::File::open(fx.m("gone")).unwrap();
    xattr_set(fx.m("gone"), "user.before", b"1");
    fs::remove_file(fx.m("gone")).unwrap();
    // Through the fd's magic link, followed (the plain calls, not the l* ones).
    let p = format!("/proc/self/fd/{}", f.as_raw_fd());
    let get = |name: &str| {
        let mut b = [0u8; 64];
        rustix::fs::getxattr(p.as_str(), name, &mut b[..]).map(|n| b[..n].to_vec())
    };
    assert_eq!(get("user.before").unwrap(), b"1");
    rustix::fs::setxattr(p.as_str(), "user.after", b"2", XattrFlags::empty()).unwrap();
    assert_eq!(get("user.after").unwrap(), b"2");
    let mut b = [0u8; 256];
    let n = rustix::fs::listxattr(p.as_str(), &mut b[..]).unwrap();
    let names = String::from_utf8_lossy(&b[..n]).to_string();
    assert!(
        names.contains("user.before") && names.contains("user.after"),
        "{names:?}"
    );
    drop(f);
    fx.umount();
}
