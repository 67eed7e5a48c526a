//! Helpers for the image store tests: a [`Store`] (a temp store root and the `strata` command
//! pointed at it), exact records of a store root and of extracted layers, a layer-by-layer
//! merged view computed without FUSE, and small parsers for the CLI's output.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::fsutil::*;
use crate::snapshot::hash_bytes;
use crate::{bin, run_timeout};

/// How long one `strata` store command may take before the test gives up on it (a hang guard,
/// not an assertion on speed: a debug build extracting 30,000 files is slow).
pub const STORE_TIMEOUT: Duration = Duration::from_secs(600);

/// stdout and stderr of a command, for failure messages.
pub fn show(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A path as &str (temp paths are UTF-8).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A temp directory holding a store root (`<dir>/root`, not created: the CLI makes it) and
/// room for test inputs beside it.
pub struct Store {
    _tmp: Option<tempfile::TempDir>,
    /// The directory that holds the root (and test inputs).
    pub dir: PathBuf,
    /// The store root passed as `--root`.
    pub root: PathBuf,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// A fresh store root in a new temp directory.
    pub fn new() -> Store {
        let tmp = tempfile::Builder::new()
            .prefix("strata-store-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        Store {
            root: dir.join("root"),
            dir,
            _tmp: Some(tmp),
        }
    }

    /// A store whose root is `root` (not removed on drop).
    pub fn at(root: &Path) -> Store {
        Store {
            _tmp: None,
            dir: root.parent().expect("parent").to_path_buf(),
            root: root.to_path_buf(),
        }
    }

    /// `strata --root ROOT`, to add a verb and arguments to.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin("strata"));
        c.arg("--root").arg(&self.root);
        c
    }

    /// Runs `strata --root ROOT ARGS...` with stdin from /dev/null.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(args);
        run_timeout(&mut c, STORE_TIMEOUT)
    }

    /// Runs `strata --root ROOT ARGS...` with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut c = self.cmd();
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"));
        let mut stdin = child.stdin.take().expect("stdin");
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            // The command may refuse early and close stdin: a write error is its business.
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output().expect("wait");
        writer.join().expect("stdin writer");
        out
    }

    /// Runs the command, asserts exit 0, returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "strata {args:?} failed:\n{}",
            show(&out)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs the command, asserts a non-zero exit with something on stderr, returns stderr.
    #[track_caller]
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "strata {args:?} succeeded but should have failed:\n{}",
            show(&out)
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !err.trim().is_empty(),
            "strata {args:?} failed without a message on stderr:\n{}",
            show(&out)
        );
        err
    }

    /// `strata import FILE NAME`, returning the printed image id (checked to be
    /// `sha256:<64 hex>`).
    #[track_caller]
    pub fn import(&self, src: &Path, name: &str) -> String {
        let out = self.ok(&["import", s(src), name]);
        parse_id(&out)
    }

    /// Writes `tar` to a file beside the root and imports it as `name`; returns the image id.
    #[track_caller]
    pub fn import_bytes(&self, tar: &[u8], name: &str) -> String {
        let f = self.input(tar);
        self.import(&f, name)
    }

    /// Writes `data` to a new file beside the root and returns its path.
    pub fn input(&self, data: &[u8]) -> PathBuf {
        let f = tempfile::Builder::new()
            .prefix("input-")
            .tempfile_in(&self.dir)
            .expect("input file");
        let (_, p) = f.keep().expect("keep");
        fs::write(&p, data).expect("write input");
        p
    }

    /// `strata load -i PATH`, asserting success; returns stdout.
    #[track_caller]
    pub fn load(&self, path: &Path) -> String {
        self.ok(&["load", "-i", s(path)])
    }

    /// `strata inspect IMAGE`: the one object of the array.
    #[track_caller]
    pub fn inspect(&self, image: &str) -> Value {
        let out = self.ok(&["inspect", image]);
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("inspect {image}: not JSON ({e}):\n{out}"));
        let a = v
            .as_array()
            .unwrap_or_else(|| panic!("inspect: not an array: {v}"));
        assert_eq!(a.len(), 1, "inspect {image}: one object expected: {v}");
        a[0].clone()
    }

    /// `strata images --format json`, one object per line.
    #[track_caller]
    pub fn images(&self) -> Vec<Value> {
        json_lines(&self.ok(&["images", "--format", "json"]))
    }

    /// The layer directories under `layers/` (their names: diff_id hex). Other files there
    /// are left out; `store_testdata::store_layout_is_as_documented` checks for them.
    pub fn layers(&self) -> BTreeSet<String> {
        let l = self.root.join("layers");
        dir_names(&l)
            .into_iter()
            .filter(|n| l.join(n).is_dir())
            .collect()
    }

    /// The names under `blobs/sha256/`.
    pub fn blobs(&self) -> BTreeSet<String> {
        dir_names(&self.root.join("blobs/sha256"))
    }

    /// `layers/<hex>` of a diff_id given as `sha256:<hex>` or `<hex>`.
    pub fn layer(&self, diff_id: &str) -> PathBuf {
        self.root
            .join("layers")
            .join(diff_id.trim_start_matches("sha256:"))
    }

    /// A record of the store root for exact comparisons: everything but `lock` and `tmp/`.
    pub fn tree(&self) -> BTreeMap<String, String> {
        content_tree(&self.root, &["lock", "tmp"])
    }

    /// Asserts that `tmp/` is absent or empty.
    #[track_caller]
    pub fn assert_tmp_clean(&self, when: &str) {
        let t = self.root.join("tmp");
        if t.exists() {
            let left = content_tree(&t, &[]);
            assert!(
                left.len() <= 1,
                "{when}: {} is not empty: {:?}",
                t.display(),
                left.keys().collect::<Vec<_>>()
            );
        }
    }
}

/// Names in `dir` (empty when it does not exist).
pub fn dir_names(dir: &Path) -> BTreeSet<String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| {
                e.expect("readdir")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// The image id a command printed: its only line, `sha256:<64 hex>`.
#[track_caller]
pub fn parse_id(out: &str) -> String {
    let id = out.trim();
    assert!(
        is_id(id),
        "expected one line `sha256:<64 hex>`, got {out:?}"
    );
    id.to_string()
}

/// True for `sha256:<64 lowercase hex>`.
pub fn is_id(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(is_hex64)
}

/// True for 64 lowercase hex digits.
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Hex part of an id.
pub fn hex(id: &str) -> &str {
    id.trim_start_matches("sha256:")
}

/// One JSON object per non-empty line.
#[track_caller]
pub fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect()
}

/// A table printed with columns separated by two or more spaces: rows of cells (header first).
pub fn table(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-02T03:04:05.123Z`, `...+01:00`).
pub fn rfc3339_secs(t: &str) -> Option<i64> {
    let (date, rest) = t.split_once(['T', 't'])?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || rest.len() < 8 {
        return None;
    }
    let hms: Vec<i64> = rest[..8]
        .split(':')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let mut tail = &rest[8..];
    if let Some(f) = tail.strip_prefix('.') {
        let n = f.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        tail = &f[n..];
    }
    let offset = match tail {
        "Z" | "z" => 0,
        _ => {
            let sign = match tail.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = tail[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    // Days from civil (Howard Hinnant's algorithm).
    let (y, m, day) = (d[0], d[1], d[2]);
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hms[0] * 3600 + hms[1] * 60 + hms[2] - offset)
}

/// Deterministic incompressible bytes (xorshift64).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

// ---------------------------------------------------------------------------------------------
// Records of trees
// ---------------------------------------------------------------------------------------------

fn user_xattrs(p: &Path) -> String {
    let mut out = String::new();
    for n in xattr_list(p).unwrap_or_default() {
        if n.starts_with("user.") {
            let v = xattr_get(p, &n).unwrap_or_default();
            out += &format!(" {n}={:?}", String::from_utf8_lossy(&v));
        }
    }
    out
}

/// Every object under `root` (root itself as ""), except the top-level names in `skip`:
/// type, mode, owner, size, link count (non-directories), contents hash, symlink target,
/// device number and user xattrs. Times and inode numbers are left out: this says whether the
/// bytes and metadata a store holds changed, not whether a directory was read or rewritten.
pub fn content_tree(root: &Path, skip: &[&str]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if fs::symlink_metadata(root).is_ok() {
        content_walk(root, "", skip, &mut out);
    }
    out
}

fn content_walk(root: &Path, rel: &str, skip: &[&str], out: &mut BTreeMap<String, String>) {
    let p = join(root, rel);
    let md = lstat(&p);
    let k = mode_letter(md.mode());
    let mut d = format!("{k} {:04o} {}:{}", md.mode() & 0o7777, md.uid(), md.gid());
    match k {
        'f' => {
            d += &format!(
                " size={} nlink={} h={:016x}",
                md.size(),
                md.nlink(),
                hash_bytes(&read(&p))
            )
        }
        'l' => d += &format!(" -> {:?}", fs::read_link(&p).expect("readlink")),
        'c' | 'b' => d += &format!(" rdev={} nlink={}", md.rdev(), md.nlink()),
        'p' | 's' => d += &format!(" nlink={}", md.nlink()),
        _ => {}
    }
    d += &user_xattrs(&p);
    out.insert(rel.to_string(), d);
    if k == 'd' {
        for c in dir_names(&p) {
            if rel.is_empty() && skip.contains(&c.as_str()) {
                continue;
            }
            let r = if rel.is_empty() {
                c
            } else {
                format!("{rel}/{c}")
            };
            content_walk(root, &r, skip, out);
        }
    }
}

/// Asserts two records are equal, listing each difference.
#[track_caller]
pub fn assert_same_content(
    what: &str,
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) {
    let mut diffs = Vec::new();
    for (k, b) in before {
        match after.get(k) {
            None => diffs.push(format!("{k:?}: removed (was {b})")),
            Some(a) if a != b => diffs.push(format!("{k:?}: {b} -> {a}")),
            _ => {}
        }
    }
    for (k, a) in after {
        if !before.contains_key(k) {
            diffs.push(format!("{k:?}: added ({a})"));
        }
    }
    assert!(diffs.is_empty(), "{what}:\n  {}", diffs.join("\n  "));
}

// ---------------------------------------------------------------------------------------------
// A layer directory against the tar it came from
// ---------------------------------------------------------------------------------------------

/// A tar entry's name as a path relative to the layer root (`./a/b/` -> `a/b`).
pub fn norm_name(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name).into_owned();
    let s = s.trim_end_matches('/');
    let s = s.strip_prefix("./").unwrap_or(s);
    if s == "." {
        String::new()
    } else {
        s.to_string()
    }
}

#[derive(Debug)]
struct Want {
    kind: char,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Option<Vec<u8>>,
    link: Vec<u8>,
    dev: (u32, u32),
    xattrs: BTreeMap<String, Vec<u8>>,
}

/// Every way the extracted `layer` directory differs from the layer `tar` it was made from:
/// entry set, type, permission bits (with setuid/setgid/sticky), mtime, contents, symlink
/// target, hard links (same inode as their target), device numbers, `user.*` xattrs, and when
/// `owners` is true uid/gid. The layer root itself (`./`) is not compared. Directories that
/// the tar does not list but that lead to listed entries may exist.
pub fn layer_vs_tar(layer: &Path, tar: &[u8], owners: bool) -> Vec<String> {
    let mut want: BTreeMap<String, Want> = BTreeMap::new();
    let mut links: BTreeMap<String, String> = BTreeMap::new();
    let mut ar = tar::Archive::new(tar);
    for e in ar.entries().expect("tar entries") {
        let mut e = e.expect("tar entry");
        let name = norm_name(&e.path_bytes());
        if name.is_empty() {
            continue;
        }
        let mut xattrs = BTreeMap::new();
        if let Some(px) = e.pax_extensions().expect("pax") {
            for x in px {
                let x = x.expect("pax record");
                if let Some(n) = x.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                    if n.starts_with("user.") {
                        xattrs.insert(n.to_string(), x.value_bytes().to_vec());
                    }
                }
            }
        }
        let h = e.header().clone();
        let link = e.link_name_bytes().map(|l| l.to_vec()).unwrap_or_default();
        let et = h.entry_type();
        if et.is_hard_link() {
            links.insert(name.clone(), norm_name(&link));
            want.remove(&name);
            continue;
        }
        links.remove(&name);
        let kind = match et {
            t if t.is_file() => 'f',
            t if t.is_dir() => 'd',
            t if t.is_symlink() => 'l',
            t if t.is_character_special() => 'c',
            t if t.is_block_special() => 'b',
            t if t.is_fifo() => 'p',
            t => panic!("{name}: unexpected tar entry type {t:?}"),
        };
        let mut data = None;
        if kind == 'f' {
            let mut v = Vec::new();
            e.read_to_end(&mut v).expect("tar data");
            data = Some(v);
        }
        let dev = (
            h.device_major().ok().flatten().unwrap_or(0),
            h.device_minor().ok().flatten().unwrap_or(0),
        );
        want.insert(
            name,
            Want {
                kind,
                mode: h.mode().expect("mode") & 0o7777,
                uid: h.uid().expect("uid"),
                gid: h.gid().expect("gid"),
                mtime: h.mtime().expect("mtime"),
                data,
                link,
                dev,
                xattrs,
            },
        );
    }
    let mut diffs = Vec::new();
    let have = content_tree(layer, &[]);
    for (name, w) in &want {
        let p = layer.join(name);
        let Ok(md) = fs::symlink_metadata(&p) else {
            diffs.push(format!("{name}: missing from the layer dir"));
            continue;
        };
        let k = mode_letter(md.mode());
        if k != w.kind {
            diffs.push(format!("{name}: type {k}, tar says {}", w.kind));
            continue;
        }
        let mut d = Vec::new();
        if k != 'l' && md.mode() & 0o7777 != w.mode {
            d.push(format!(
                "mode {:04o} (tar {:04o})",
                md.mode() & 0o7777,
                w.mode
            ));
        }
        if owners && (md.uid() as u64, md.gid() as u64) != (w.uid, w.gid) {
            d.push(format!(
                "owner {}:{} (tar {}:{})",
                md.uid(),
                md.gid(),
                w.uid,
                w.gid
            ));
        }
        if md.mtime() as u64 != w.mtime {
            d.push(format!("mtime {} (tar {})", md.mtime(), w.mtime));
        }
        if let Some(data) = &w.data {
            let got = read(&p);
            if &got != data {
                d.push(format!(
                    "contents differ ({} bytes, tar {} bytes)",
                    got.len(),
                    data.len()
                ));
            }
        }
        if k == 'l' {
            let t = fs::read_link(&p).expect("readlink");
            if t.as_os_str().as_bytes() != w.link.as_slice() {
                d.push(format!(
                    "symlink -> {:?} (tar {:?})",
                    t,
                    String::from_utf8_lossy(&w.link)
                ));
            }
        }
        if matches!(k, 'c' | 'b') {
            let got = (libc::major(md.rdev()), libc::minor(md.rdev()));
            if got != w.dev {
                d.push(format!("device {got:?} (tar {:?})", w.dev));
            }
        }
        let mut got_x = BTreeMap::new();
        for n in xattr_list(&p).unwrap_or_default() {
            if n.starts_with("user.") {
                got_x.insert(n.clone(), xattr_get(&p, &n).unwrap_or_default());
            }
        }
        if got_x != w.xattrs {
            d.push(format!("user xattrs {got_x:?} (tar {:?})", w.xattrs));
        }
        if !d.is_empty() {
            diffs.push(format!("{name}: {}", d.join(", ")));
        }
    }
    for (name, target) in &links {
        let (a, b) = (
            fs::symlink_metadata(layer.join(name)),
            fs::symlink_metadata(layer.join(target)),
        );
        match (a, b) {
            (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev() => {}
            (Ok(_), Ok(_)) => diffs.push(format!(
                "{name}: hard link to {target} in the tar, but a different inode in the layer dir"
            )),
            _ => diffs.push(format!("{name}: hard link to {target}: missing")),
        }
    }
    for name in have.keys() {
        if name.is_empty() || want.contains_key(name) || links.contains_key(name) {
            continue;
        }
        let is_parent = want
            .keys()
            .chain(links.keys())
            .any(|w| w.starts_with(&format!("{name}/")));
        if !is_parent {
            diffs.push(format!("{name}: in the layer dir but not in the tar"));
        }
    }
    diffs
}

/// Asserts [`layer_vs_tar`] finds no difference.
#[track_caller]
pub fn assert_layer_matches_tar(layer: &Path, tar: &[u8], owners: bool) {
    let d = layer_vs_tar(layer, tar, owners);
    assert!(
        d.is_empty(),
        "layer dir {} differs from its tar:\n  {}",
        layer.display(),
        d.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Merged view without FUSE
// ---------------------------------------------------------------------------------------------

fn walk_rel(root: &Path, rel: &str, out: &mut Vec<String>) {
    for c in dir_names(&join(root, rel)) {
        let r = if rel.is_empty() {
            c
        } else {
            format!("{rel}/{c}")
        };
        let is_dir = lstat(root.join(&r)).is_dir();
        out.push(r.clone());
        if is_dir {
            walk_rel(root, &r, out);
        }
    }
}

fn remove_under(view: &mut BTreeMap<String, String>, path: &str) {
    let prefix = format!("{path}/");
    view.retain(|k, _| k != path && !k.starts_with(&prefix));
}

/// What a union of extracted layer dirs (bottom first) shows, computed by hand: `.wh.NAME`
/// hides NAME of the layers below, `.wh..wh..opq` hides everything below in its directory.
/// Values: `f <contents>` (lossy UTF-8), `l -> <target>`, `d`, or another type letter.
pub fn merged_view(layers: &[PathBuf]) -> BTreeMap<String, String> {
    let mut view = BTreeMap::new();
    for layer in layers {
        let mut names = Vec::new();
        walk_rel(layer, "", &mut names);
        // Whiteouts hide what the layers below hold, so apply them before adding this layer.
        for n in &names {
            let (dir, base) = match n.rsplit_once('/') {
                Some((d, b)) => (d.to_string(), b),
                None => (String::new(), n.as_str()),
            };
            if base == ".wh..wh..opq" {
                let prefix = if dir.is_empty() {
                    String::new()
                } else {
                    format!("{dir}/")
                };
                view.retain(|k: &String, _| k == &dir || !k.starts_with(&prefix));
            } else if let Some(hidden) = base.strip_prefix(".wh.") {
                let h = if dir.is_empty() {
                    hidden.to_string()
                } else {
                    format!("{dir}/{hidden}")
                };
                remove_under(&mut view, &h);
            }
        }
        for n in &names {
            let base = n.rsplit('/').next().unwrap_or(n);
            if base.starts_with(".wh.") {
                continue;
            }
            let p = layer.join(n);
            let md = lstat(&p);
            let k = mode_letter(md.mode());
            let v = match k {
                'f' => format!("f {}", String::from_utf8_lossy(&read(&p))),
                'l' => format!("l -> {}", fs::read_link(&p).expect("readlink").display()),
                _ => k.to_string(),
            };
            if k != 'd' {
                remove_under(&mut view, n);
            }
            view.insert(n.clone(), v);
        }
    }
    view
}

/// The part of a view or tree under `dir/`, with keys relative to it.
pub fn subtree(view: &BTreeMap<String, String>, dir: &str) -> BTreeMap<String, String> {
    let prefix = format!("{dir}/");
    view.iter()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|r| (r.to_string(), v.clone())))
        .collect()
}

/// `merged_view`-style description of the objects under `root` (a mount), for comparison.
pub fn view_of(root: &Path) -> BTreeMap<String, String> {
    let mut names = Vec::new();
    walk_rel(root, "", &mut names);
    names
        .into_iter()
        .map(|n| {
            let p = root.join(&n);
            let k = mode_letter(lstat(&p).mode());
            let v = match k {
                'f' => format!("f {}", String::from_utf8_lossy(&read(&p))),
                'l' => format!("l -> {}", fs::read_link(&p).expect("readlink").display()),
                _ => k.to_string(),
            };
            (n, v)
        })
        .collect()
}

/// podman with a private graph under `graph` (vfs, so it needs no overlay or FUSE), to check
/// that podman reads what strata writes and the other way round.
pub fn podman(graph: &Path, args: &[&str]) -> Output {
    let mut c = Command::new("podman");
    c.arg("--root")
        .arg(graph.join("root"))
        .arg("--runroot")
        .arg(graph.join("run"))
        .args(["--storage-driver", "vfs"])
        .args(args);
    run_timeout(&mut c, STORE_TIMEOUT)
}

/// True when podman can run (scripts/setup.sh installs it). Otherwise prints a SKIP line, or
/// panics under `REQUIRE_PRIVILEGED`, so CI never passes a podman test by skipping it.
#[track_caller]
pub fn require_podman() -> bool {
    if Command::new("podman")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return true;
    }
    if crate::privileged_required() {
        panic!("podman is required (REQUIRE_PRIVILEGED is set): run scripts/setup.sh");
    }
    println!("SKIP podman: not installed (scripts/setup.sh installs it)");
    false
}
