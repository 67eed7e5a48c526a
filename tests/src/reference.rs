//! An independent reference for "the image as of layer N": reads a docker-archive or an
//! oci-archive with the `tar` crate alone (no strata code) and applies layers 1..=N in order
//! into a plain directory with the OCI image-spec changeset rules (`.wh.NAME` whiteouts,
//! `.wh..wh..opq` opaque markers). Tests compare a mounted view with the result.
//!
//! Run it as root for a faithful copy: otherwise lchown failing with EPERM or EINVAL is
//! ignored (everything stays owned by the caller), and a directory whose mode denies its owner
//! write permission makes a later layer's changes inside it panic.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode};
use serde_json::Value;

/// The value of `r`; panics with `what` and the path on error.
#[track_caller]
fn ok<T, E: std::fmt::Display>(r: Result<T, E>, what: &str, p: &Path) -> T {
    r.unwrap_or_else(|e| panic!("{what} {}: {e}", p.display()))
}

/// `data` decompressed by its magic: gzip (1f 8b), zstd (28 b5 2f fd), else as it is.
fn decompress(data: &[u8], what: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let r = if data.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out)
    } else if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::Decoder::new(data).and_then(|mut d| d.read_to_end(&mut out))
    } else {
        out.extend_from_slice(data);
        Ok(out.len())
    };
    r.unwrap_or_else(|e| panic!("decompress {what}: {e}"));
    out
}

/// The uncompressed layer tars of the (first) image of a docker-archive (`manifest.json`) or
/// an oci-archive (`index.json`, following nested indexes to their first manifest), base
/// layer first. Panics on anything malformed.
pub fn layer_tars(archive: &Path) -> Vec<Vec<u8>> {
    let data = ok(fs::read(archive), "read", archive);
    let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ar = tar::Archive::new(&data[..]);
    for e in ok(ar.entries(), "read tar", archive) {
        let mut e = ok(e, "read tar entry of", archive);
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        if e.header().entry_type().is_file() {
            let mut v = Vec::new();
            ok(e.read_to_end(&mut v), &format!("read {name} of"), archive);
            members.insert(name.trim_start_matches("./").to_string(), v);
        }
    }
    let get = |name: &str| {
        let m = members
            .get(name.trim_start_matches("./"))
            .map(Vec::as_slice);
        m.unwrap_or_else(|| panic!("{}: no member {name}", archive.display()))
    };
    let json = |name: &str| -> Value { ok(serde_json::from_slice(get(name)), name, archive) };
    let blob = |desc: &Value| {
        let d = desc["digest"]
            .as_str()
            .unwrap_or_else(|| panic!("no digest in {desc}"));
        get(&format!("blobs/{}", d.replacen(':', "/", 1)))
    };
    let unpack = |(i, b): (usize, &[u8])| decompress(b, &format!("layer {}", i + 1));
    if members.contains_key("manifest.json") {
        let man = json("manifest.json");
        let layers = man[0]["Layers"].as_array();
        let layers = layers.unwrap_or_else(|| panic!("no [0].Layers in {man}"));
        let names = layers.iter().map(|l| l.as_str().expect("layer path"));
        return names.map(get).enumerate().map(unpack).collect();
    }
    let mut doc = json("index.json");
    for _ in 0..8 {
        if let Some(layers) = doc["layers"].as_array() {
            return layers.iter().map(blob).enumerate().map(unpack).collect();
        }
        let first = doc["manifests"].as_array().and_then(|v| v.first());
        let first = first.unwrap_or_else(|| panic!("neither layers nor manifests: {doc}"));
        doc = ok(serde_json::from_slice(blob(first)), "manifest in", archive);
    }
    panic!("{}: indexes nested too deep", archive.display())
}

/// Owner, permission bits and mtime of a tar entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
}

/// A tar entry name as a relative path: leading `/`, `./`, `.` and empty components dropped.
fn clean(name: &[u8], what: &str) -> PathBuf {
    let parts = name
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".");
    let parts = parts.inspect(|c| assert!(*c != b"..", "{what}: a `..` component"));
    parts.map(OsStr::from_bytes).collect()
}

/// Sets atime and mtime of `p` itself (not of a symlink's target).
fn set_time(p: &Path, (sec, nsec): (i64, i64)) {
    let t = rfs::Timespec {
        tv_sec: sec,
        tv_nsec: nsec as _,
    };
    let ts = rfs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    let r = rfs::utimensat(rfs::CWD, p, &ts, AtFlags::SYMLINK_NOFOLLOW);
    ok(r, "utimensat", p);
}

/// lchown (EPERM/EINVAL ignored when not root), chmod unless a symlink, then the times.
fn set_meta(p: &Path, m: &Meta, symlink: bool) {
    if let Err(e) = std::os::unix::fs::lchown(p, Some(m.uid), Some(m.gid)) {
        let ignorable = matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL));
        let root = rustix::process::geteuid().is_root();
        assert!(ignorable && !root, "lchown {}: {e}", p.display());
    }
    if !symlink {
        let perm = fs::Permissions::from_mode(m.mode);
        ok(fs::set_permissions(p, perm), "chmod", p);
    }
    set_time(p, (m.mtime, 0));
}

/// Removes `p`, a whole tree when it is a directory, never following symlinks.
fn remove_tree(p: &Path) {
    let r = if ok(fs::symlink_metadata(p), "lstat", p).is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    };
    ok(r, "remove", p);
}

/// True when `dest/rel` and every directory on the way are real directories (no symlinks).
fn real_dir(dest: &Path, rel: &Path) -> bool {
    let mut cur = dest.to_path_buf();
    rel.components().all(|c| {
        cur.push(c);
        fs::symlink_metadata(&cur).is_ok_and(|m| m.is_dir())
    })
}

/// Calls `f` with each entry of `tar_bytes`, its name as a relative path and a description.
fn each(tar_bytes: &[u8], what: &str, mut f: impl FnMut(PathBuf, &str, tar::Entry<'_, &[u8]>)) {
    let mut ar = tar::Archive::new(tar_bytes);
    for e in ar.entries().unwrap_or_else(|e| panic!("{what}: {e}")) {
        let e = e.unwrap_or_else(|e| panic!("{what}: {e}"));
        let raw = e.path_bytes().into_owned();
        let ew = format!("{what}, entry {:?}", String::from_utf8_lossy(&raw));
        f(clean(&raw, &ew), &ew, e);
    }
}

/// The owner, permission bits and mtime in a header.
fn header_meta(h: &tar::Header, ew: &str) -> Meta {
    let num = |r: io::Result<u64>| r.unwrap_or_else(|e| panic!("{ew}: bad header: {e}"));
    let id = |v: u64| u32::try_from(v).unwrap_or_else(|_| panic!("{ew}: id {v} too big"));
    Meta {
        mode: h.mode().unwrap_or_else(|e| panic!("{ew}: bad mode: {e}")) & 0o7777,
        uid: id(num(h.uid())),
        gid: id(num(h.gid())),
        mtime: num(h.mtime()) as i64,
    }
}

/// One layer being applied.
struct LayerState<'a> {
    dest: &'a Path,
    /// Directories this layer changed or has entries for, with their mtime before that.
    saved: BTreeMap<PathBuf, (i64, i64)>,
    /// This layer's directory entries, applied at its end.
    dirs: BTreeMap<PathBuf, Meta>,
}

impl LayerState<'_> {
    /// Remembers the mtime of directory `d` before its contents change.
    fn touch(&mut self, d: &Path) {
        if let Ok(m) = fs::symlink_metadata(d) {
            let t = (m.mtime(), m.mtime_nsec());
            self.saved.entry(d.to_path_buf()).or_insert(t);
        }
    }

    /// First pass: whiteouts and opaque markers remove what the earlier layers made.
    fn whiteouts(&mut self, tar_bytes: &[u8], what: &str) {
        let (dest, mut gone) = (self.dest, Vec::new());
        each(tar_bytes, what, |rel, _, _| {
            let name = rel.file_name().map_or(&b""[..], OsStrExt::as_bytes);
            let parent = rel.parent().unwrap_or(Path::new(""));
            if !name.starts_with(b".wh.") || !real_dir(dest, parent) {
                return;
            }
            let d = dest.join(parent);
            if name == b".wh..wh..opq" {
                let children = ok(fs::read_dir(&d), "readdir", &d);
                gone.extend(children.map(|c| ok(c, "readdir", &d).path()));
            } else if !name.starts_with(b".wh..wh.") {
                gone.push(d.join(OsStr::from_bytes(&name[4..])));
            }
        });
        for p in gone {
            if fs::symlink_metadata(&p).is_ok() {
                self.touch(p.parent().expect("a parent"));
                remove_tree(&p);
            }
        }
    }

    /// Makes every parent of `dest/rel` a real directory, replacing non-directories.
    fn parents(&mut self, rel: &Path) -> PathBuf {
        let mut cur = self.dest.to_path_buf();
        for c in rel.parent().map(Path::components).into_iter().flatten() {
            let next = cur.join(c);
            let old = fs::symlink_metadata(&next);
            if !old.as_ref().is_ok_and(|m| m.is_dir()) {
                self.touch(&cur);
                if old.is_ok() {
                    ok(fs::remove_file(&next), "unlink", &next);
                }
                ok(fs::create_dir(&next), "mkdir", &next);
            }
            cur = next;
        }
        cur
    }

    /// Second pass: applies one entry that is not a whiteout.
    fn entry(&mut self, rel: PathBuf, ew: &str, mut e: tar::Entry<'_, &[u8]>) {
        let kind = e.header().entry_type();
        if kind.is_pax_global_extensions()
            || kind.is_character_special()
            || kind.is_block_special()
            || rel
                .file_name()
                .is_some_and(|n| n.as_bytes().starts_with(b".wh."))
        {
            return;
        }
        let meta = header_meta(e.header(), ew);
        let path = self.dest.join(&rel);
        if rel.as_os_str().is_empty() {
            assert!(kind.is_dir(), "{ew}: the root is not a directory");
            self.touch(&path);
            self.dirs.insert(path, meta);
            return;
        }
        let parent = self.parents(&rel);
        self.touch(&parent);
        let old = fs::symlink_metadata(&path).ok();
        if kind.is_dir() {
            if !old.as_ref().is_some_and(|m| m.is_dir()) {
                if old.is_some() {
                    ok(fs::remove_file(&path), "unlink", &path);
                }
                ok(fs::create_dir(&path), "mkdir", &path);
            }
            self.touch(&path);
            self.dirs.insert(path, meta);
            return;
        }
        let link = e.link_name_bytes().map(|l| l.into_owned());
        let link_name = || link.clone().unwrap_or_else(|| panic!("{ew}: no link name"));
        let hard = kind.is_hard_link();
        let target = hard.then(|| self.dest.join(clean(&link_name(), ew)));
        if target.as_ref() == Some(&path) {
            return;
        }
        if old.is_some() {
            remove_tree(&path);
        }
        if let Some(target) = target {
            let r = fs::hard_link(&target, &path);
            ok(r, &format!("{ew}: link {} to", target.display()), &path);
            return;
        }
        if kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse() {
            let mut f = ok(fs::File::create_new(&path), "create", &path);
            ok(io::copy(&mut e, &mut f), ew, &path);
        } else if kind.is_symlink() {
            let r = std::os::unix::fs::symlink(OsStr::from_bytes(&link_name()), &path);
            ok(r, "symlink", &path);
        } else if kind.is_fifo() {
            let r = rfs::mknodat(rfs::CWD, &path, FileType::Fifo, Mode::RUSR | Mode::WUSR, 0);
            ok(r, "mkfifo", &path);
        } else {
            panic!("{ew}: unsupported entry type {kind:?}");
        }
        set_meta(&path, &meta, kind.is_symlink());
    }

    /// Sets the times of every directory the layer changed (and the owner and mode of its
    /// directory entries), deepest first.
    fn finish(self) {
        let mut all: Vec<_> = self.saved.iter().collect();
        all.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, t) in all {
            if fs::symlink_metadata(p).is_ok_and(|m| m.is_dir()) {
                match self.dirs.get(p) {
                    Some(m) => set_meta(p, m, false),
                    None => set_time(p, *t),
                }
            }
        }
    }
}

/// Applies the uncompressed layer tars `tars` (base first) into the existing empty directory
/// `dest` with the OCI changeset rules. In each layer, first `.wh.NAME` removes NAME and
/// `.wh..wh..opq` empties its directory of what earlier layers made; then every other entry
/// replaces what is at its path (a directory over a directory keeps the contents; a missing
/// or non-directory parent becomes a directory). Owners, modes and mtimes are set (those of
/// directories at the end of the layer; a directory the layer changed without an entry for it
/// keeps its mtime); device nodes are skipped; a root entry (`./`) sets `dest`'s own owner,
/// mode and mtime. Symlinks in `dest` are never followed. Panics on malformed input.
pub fn apply_layers(tars: &[Vec<u8>], dest: &Path) {
    let md = ok(fs::symlink_metadata(dest), "lstat", dest);
    assert!(md.is_dir(), "{} is not a directory", dest.display());
    for (i, t) in tars.iter().enumerate() {
        let what = format!("layer {}", i + 1);
        let mut st = LayerState {
            dest,
            saved: BTreeMap::new(),
            dirs: BTreeMap::new(),
        };
        st.whiteouts(t, &what);
        each(t, &what, |rel, ew, e| st.entry(rel, ew, e));
        st.finish();
    }
}

/// Applies layers 1..=`n` of `archive` (docker-archive or oci-archive) into `dest`.
pub fn apply_archive(archive: &Path, n: usize, dest: &Path) {
    let tars = layer_tars(archive);
    let (have, a) = (tars.len(), archive.display());
    assert!(n <= have, "{a} has {have} layers, not {n}");
    apply_layers(&tars[..n], dest);
}

#[cfg(test)]
mod tests {
    use super::*;
    // oci::TarEntry writes names as given: tar::Header::set_path would drop the `./` prefixes.
    use crate::oci::{sha256_hex, tar_bytes, TarEntry as E};

    fn apply(layers: &[Vec<E>]) -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        let tars: Vec<Vec<u8>> = layers.iter().map(|l| tar_bytes(l)).collect();
        apply_layers(&tars, d.path());
        d
    }

    /// Every path below `p`, relative, sorted.
    fn walk(p: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in ok(fs::read_dir(p), "readdir", p) {
            let e = ok(e, "readdir", p);
            let n = e.file_name().to_string_lossy().into_owned();
            if ok(e.file_type(), "lstat", &e.path()).is_dir() {
                out.extend(walk(&e.path()).into_iter().map(|c| format!("{n}/{c}")));
            }
            out.push(n);
        }
        out.sort();
        out
    }

    /// Checks the contents of files below `root` (None: absent).
    fn expect(root: &Path, files: &[(&str, Option<&str>)], what: &str) {
        for (f, want) in files {
            let p = root.join(f);
            let got = fs::symlink_metadata(&p)
                .ok()
                .map(|_| ok(fs::read(&p), "read", &p));
            let got = got.map(|v| String::from_utf8_lossy(&v).into_owned());
            assert_eq!(got.as_deref(), *want, "{what}: {f}");
        }
    }

    fn lstat(p: &Path) -> fs::Metadata {
        ok(fs::symlink_metadata(p), "lstat", p)
    }

    fn whiteout(name: &str) -> E {
        E::file(name, "").mode(0)
    }

    #[test]
    fn whiteouts_remove_lower_files_and_trees_with_or_without_dot_slash() {
        let d = apply(&[
            vec![
                E::dir("./").mode(0o751),
                E::dir("./a/"),
                E::file("./a/x", "x"),
                E::file("./a/y", "y"),
            ],
            vec![
                E::dir("d/"),
                E::dir("d/sub/"),
                E::file("d/sub/f", "f"),
                E::file("k", ""),
            ],
            vec![
                whiteout("a/.wh.x"),
                whiteout("./.wh.d"),
                E::file("./a/z", "z"),
            ],
        ]);
        assert_eq!(walk(d.path()), ["a", "a/y", "a/z", "k"]);
        assert_eq!(lstat(d.path()).mode() & 0o7777, 0o751);
    }

    #[test]
    fn opaque_marker_hides_earlier_layers_only() {
        let d = apply(&[
            vec![
                E::dir("o/"),
                E::file("o/old", "1"),
                E::dir("o/sub/"),
                E::file("o/sub/deep", "1"),
            ],
            vec![
                E::dir("o/"),
                E::file("o/new", "2"),
                E::dir("o/sub/"),
                whiteout("o/.wh..wh..opq"),
                E::file("o/sub/fresh", "2"),
            ],
        ]);
        assert_eq!(walk(d.path()), ["o", "o/new", "o/sub", "o/sub/fresh"]);
    }

    #[test]
    fn file_replaces_dir_and_dir_replaces_file() {
        let d = apply(&[
            vec![E::dir("p/"), E::file("p/c", "c"), E::file("q", "q")],
            vec![
                E::file("p", "now a file"),
                E::dir("q/").mtime(1_000_000_000).mode(0o750),
                E::file("q/child", "c"),
            ],
        ]);
        expect(d.path(), &[("p", Some("now a file"))], "p");
        assert_eq!(walk(d.path()), ["p", "q", "q/child"]);
        // The directory's mtime is set after its child was made.
        let q = lstat(&d.path().join("q"));
        assert_eq!((q.mtime(), q.mode() & 0o7777), (1_000_000_000, 0o750));
    }

    #[test]
    fn hardlinks_link_to_extracted_targets() {
        let d = apply(&[
            vec![
                E::dir("h/"),
                E::file("h/orig", "data"),
                E::hardlink("h/l1", "h/orig"),
            ],
            vec![E::hardlink("h/l2", "./h/orig")],
        ]);
        let ino = |n: &str| lstat(&d.path().join(n)).ino();
        assert_eq!([ino("h/l1"), ino("h/l2")], [ino("h/orig"); 2]);
        expect(d.path(), &[("h/l2", Some("data"))], "h/l2");
        assert_eq!(lstat(&d.path().join("h/orig")).nlink(), 3);
    }

    #[test]
    fn bb_2layer_archives() {
        let diff_ids = [
            "1de107a7521c2a027ea12fbb236bc818adf4168d344ee5ad28f2a778d42892c4",
            "aebb72f77720794bbc774067ea1b14cca2cbcd4559bf48db73f659b7d11b162c",
        ];
        let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/images");
        for name in ["bb-2layer.docker-archive.tar", "bb-2layer.oci-archive.tar"] {
            let a = images.join(name);
            let ids: Vec<String> = layer_tars(&a).iter().map(|t| sha256_hex(t)).collect();
            assert_eq!(ids, diff_ids, "{name}");

            let two = tempfile::tempdir().expect("tempdir");
            apply_archive(&a, 2, two.path());
            let files = [
                ("data/added.txt", Some("added in layer 2\n")),
                ("data/modify-me.txt", Some("modified in layer 2\n")),
                ("data/newdir/nested.txt", Some("nested\n")),
                ("data/delete-me.txt", None),
                ("data/deldir", None),
            ];
            expect(two.path(), &files, name);
            let link = two.path().join("data/link-to-keep");
            assert_eq!(
                ok(fs::read_link(&link), "readlink", &link),
                Path::new("keep.txt")
            );
            let all = walk(two.path());
            let wh: Vec<&String> = all.iter().filter(|p| p.contains(".wh.")).collect();
            assert!(wh.is_empty(), "{name}: whiteouts extracted: {wh:?}");
            let meta = |p: &str| {
                let m = lstat(&two.path().join(p));
                (m.mode() & 0o7777, m.mtime())
            };
            let want = [(0o755, 1_700_000_000), (0o1777, 1_700_000_000)];
            assert_eq!([meta("bin/busybox"), meta("tmp")], want, "{name}");

            let one = tempfile::tempdir().expect("tempdir");
            apply_archive(&a, 1, one.path());
            let files = [
                ("data/delete-me.txt", Some("delete me\n")),
                ("data/deldir/sub/f2", Some("f2\n")),
                ("data/modify-me.txt", Some("original content\n")),
                ("data/added.txt", None),
            ];
            expect(one.path(), &files, name);
        }
    }
}
