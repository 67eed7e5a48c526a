//! Whole-tree records: [`snapshot`] (everything about every object of a layer, read without
//! touching atimes) and [`tree`] (what a user of a mount sees), with comparisons that list
//! every difference.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::hash::Hasher;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{self as rfs, Mode, OFlags};

use crate::fsutil::*;

/// A stable 64-bit hash of some bytes (FNV-1a).
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    h.write(data);
    h.finish()
}

struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Everything recorded about one object of a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snap {
    /// Mode with type bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size.
    pub size: u64,
    /// Link count.
    pub nlink: u64,
    /// Inode number.
    pub ino: u64,
    /// Device number of device nodes.
    pub rdev: u64,
    /// mtime.
    pub mtime: (i64, i64),
    /// atime (0 for symlinks: reading a symlink's target touches its atime).
    pub atime: (i64, i64),
    /// ctime.
    pub ctime: (i64, i64),
    /// Hash of the contents (regular files).
    pub content: Option<u64>,
    /// Symlink target.
    pub target: Option<Vec<u8>>,
    /// Every xattr with its value.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

fn open_noatime(p: &Path, dir: bool) -> io::Result<OwnedFd> {
    let mut fl = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOATIME;
    if dir {
        fl |= OFlags::DIRECTORY;
    }
    rx(rfs::open(p, fl, Mode::empty()))
}

/// Records every object under `root` (root included, as ""), without changing any atime:
/// files and directories are read with O_NOATIME.
pub fn snapshot(root: &Path) -> BTreeMap<String, Snap> {
    let mut out = BTreeMap::new();
    snap_walk(root, "", &mut out);
    out
}

fn snap_walk(root: &Path, rel: &str, out: &mut BTreeMap<String, Snap>) {
    let p = join(root, rel);
    let md = lstat(&p);
    let kind = mode_letter(md.mode());
    let mut content = None;
    let mut target = None;
    let mut children = Vec::new();
    match kind {
        'f' => {
            let fd =
                open_noatime(&p, false).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
            let mut f = fs::File::from(fd);
            let mut data = Vec::new();
            f.read_to_end(&mut data)
                .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
            content = Some(hash_bytes(&data));
        }
        'l' => {
            target = Some(
                fs::read_link(&p)
                    .expect("readlink")
                    .as_os_str()
                    .as_bytes()
                    .to_vec(),
            )
        }
        'd' => {
            let fd = open_noatime(&p, true).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
            children = readdir_fd(fd).unwrap_or_else(|e| panic!("readdir {}: {e}", p.display()));
        }
        _ => {}
    }
    let mut xattrs = BTreeMap::new();
    for n in xattr_list(&p).unwrap_or_default() {
        xattrs.insert(n.clone(), xattr_get(&p, &n).unwrap_or_default());
    }
    // Stat again after reading: for symlinks readlink may have touched atime (recorded as 0).
    let md2 = lstat(&p);
    out.insert(
        rel.to_string(),
        Snap {
            mode: md2.mode(),
            uid: md2.uid(),
            gid: md2.gid(),
            size: md2.size(),
            nlink: md2.nlink(),
            ino: md2.ino(),
            rdev: md2.rdev(),
            mtime: mtime(&md2),
            atime: if kind == 'l' { (0, 0) } else { atime(&md2) },
            ctime: ctime(&md2),
            content,
            target,
            xattrs,
        },
    );
    for c in children {
        if c.name == "." || c.name == ".." {
            continue;
        }
        let r = if rel.is_empty() {
            c.name.clone()
        } else {
            format!("{rel}/{}", c.name)
        };
        snap_walk(root, &r, out);
    }
}
/// What differs between two records of one object, field by field.
fn snap_fields(b: &Snap, a: &Snap) -> String {
    let mut out = Vec::new();
    macro_rules! field {
        ($f:ident) => {
            if b.$f != a.$f {
                out.push(format!("{} {:?} -> {:?}", stringify!($f), b.$f, a.$f));
            }
        };
    }
    field!(mode);
    field!(uid);
    field!(gid);
    field!(size);
    field!(nlink);
    field!(ino);
    field!(rdev);
    field!(mtime);
    field!(atime);
    field!(ctime);
    field!(content);
    field!(target);
    field!(xattrs);
    out.join(", ")
}

/// Every difference between two snapshots, one line each (empty when equal).
pub fn snapshot_diffs(
    what: &str,
    before: &BTreeMap<String, Snap>,
    after: &BTreeMap<String, Snap>,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (k, b) in before {
        match after.get(k) {
            None => diffs.push(format!("{what} {k:?}: removed")),
            Some(a) if a != b => diffs.push(format!("{what} {k:?}: {}", snap_fields(b, a))),
            _ => {}
        }
    }
    for k in after.keys().filter(|k| !before.contains_key(*k)) {
        diffs.push(format!("{what} {k:?}: added"));
    }
    diffs
}

/// Asserts two snapshots are equal, listing every difference.
#[track_caller]
pub fn assert_same_snapshot(
    what: &str,
    before: &BTreeMap<String, Snap>,
    after: &BTreeMap<String, Snap>,
) {
    let diffs = snapshot_diffs(what, before, after);
    assert!(
        diffs.is_empty(),
        "{what} changed:\n  {}",
        diffs.join("\n  ")
    );
}

/// Sets the atime of every non-symlink object under `root` to 2001-01-01, so that any read
/// without O_NOATIME afterwards visibly moves it (relatime updates atimes older than a day).
pub fn age_atimes(root: &Path) {
    for (rel, s) in snapshot(root) {
        if mode_letter(s.mode) == 'l' {
            continue;
        }
        set_times(join(root, &rel), (978_307_200, 0), s.mtime);
    }
}

/// A readable description of every object under `root` as a user of the mount sees it:
/// type, permissions, owner, size, link count (non-directories), mtime (non-directories),
/// contents hash, symlink target, device number. Keys are relative paths ("" is the root).
/// Used to compare two mounts of the same layers.
pub fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    tree_walk(root, "", &mut out);
    out
}

fn tree_walk(root: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
    let p = join(root, rel);
    let md = lstat(&p);
    let k = mode_letter(md.mode());
    let mut desc = format!("{k} {:04o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid());
    match k {
        'f' => {
            let data = read(&p);
            desc += &format!(
                " size={} nlink={} mtime={:?} h={:016x}",
                md.size(),
                md.nlink(),
                mtime(&md),
                hash_bytes(&data)
            );
        }
        'l' => desc += &format!(" -> {}", fs::read_link(&p).expect("readlink").display()),
        'c' | 'b' => {
            desc += &format!(
                " rdev={}:{}",
                libc::major(md.rdev()),
                libc::minor(md.rdev())
            )
        }
        _ => {}
    }
    let mut x: Vec<String> = xattr_list(&p)
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.starts_with("user."))
        .collect();
    x.sort();
    for n in x {
        desc += &format!(
            " {n}={:?}",
            String::from_utf8_lossy(&xattr_get(&p, &n).unwrap_or_default())
        );
    }
    out.insert(rel.to_string(), desc);
    if k == 'd' {
        for c in names(&p) {
            if c == "." || c == ".." {
                continue;
            }
            let r = if rel.is_empty() {
                c
            } else {
                format!("{rel}/{c}")
            };
            tree_walk(root, &r, out);
        }
    }
}

/// Asserts two trees are equal, listing every difference.
#[track_caller]
pub fn assert_same_tree(what: &str, a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) {
    let mut diffs = Vec::new();
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) if x == y => {}
            (x, y) => diffs.push(format!("{k:?}:\n      left  {x:?}\n      right {y:?}")),
        }
    }
    assert!(
        diffs.is_empty(),
        "{what}: trees differ:\n  {}",
        diffs.join("\n  ")
    );
}

/// Checks, recursively, that every directory lists `.` and `..`, that each entry's d_ino is
/// the st_ino of the object its name leads to, and that d_type matches st_mode.
pub fn check_dir(dir: &Path, is_root: bool) {
    let ents = readdir(dir).unwrap_or_else(|e| panic!("readdir {}: {e}", dir.display()));
    let names: Vec<&str> = ents.iter().map(|e| e.name.as_str()).collect();
    assert!(
        names.contains(&"."),
        "{}: no `.` in {names:?}",
        dir.display()
    );
    assert!(
        names.contains(&".."),
        "{}: no `..` in {names:?}",
        dir.display()
    );
    let mut uniq = names.clone();
    uniq.dedup();
    assert_eq!(
        uniq.len(),
        names.len(),
        "{}: duplicate names in {names:?}",
        dir.display()
    );
    for e in &ents {
        if e.name == ".." && is_root {
            // `..` of the mount root is outside the filesystem; only its presence is checked.
            continue;
        }
        let md = lstat(dir.join(&e.name));
        assert_eq!(
            e.ino,
            md.ino(),
            "{}/{}: d_ino {} but st_ino {}",
            dir.display(),
            e.name,
            e.ino,
            md.ino()
        );
        if e.name != "." && e.name != ".." {
            assert_eq!(
                e.kind,
                mode_letter(md.mode()),
                "{}/{}: d_type vs st_mode",
                dir.display(),
                e.name
            );
            if e.kind == 'd' {
                check_dir(&dir.join(&e.name), false);
            }
        }
    }
}

/// [`check_dir`] from the root of a mount.
#[track_caller]
pub fn check_tree(mnt: &Path) {
    check_dir(mnt, true);
}
