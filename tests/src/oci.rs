//! Builders for the image store tests: layer tars written header by header (so that hostile
//! entries the `tar` crate refuses to write, like `../x` or `/etc/x`, can be made), and OCI
//! layouts, oci-archives and docker-archives made from them, with switches that corrupt one
//! thing at a time.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

// ---------------------------------------------------------------------------------------------
// Tar entries
// ---------------------------------------------------------------------------------------------

/// One tar entry. Names and link targets are raw bytes written as given (no normalisation, no
/// refusal of `..` or `/`); a name or target longer than the ustar field goes in a PAX record.
#[derive(Debug, Clone)]
pub struct TarEntry {
    /// The entry name.
    pub name: Vec<u8>,
    /// ustar type flag: b'0' file, b'1' hard link, b'2' symlink, b'3' char dev, b'5' dir,
    /// b'6' fifo.
    pub kind: u8,
    /// Permission bits (with setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Modification time (seconds).
    pub mtime: u64,
    /// File contents (regular files).
    pub data: Vec<u8>,
    /// Link target (symlinks, hard links).
    pub link: Vec<u8>,
    /// Device numbers (device nodes).
    pub dev: (u32, u32),
    /// Extra PAX records, e.g. `SCHILY.xattr.user.foo`.
    pub pax: Vec<(String, Vec<u8>)>,
}

/// The mtime entries get unless told otherwise: 2021-01-01 00:00:00 UTC.
pub const DEFAULT_MTIME: u64 = 1_609_459_200;

impl TarEntry {
    fn new(name: &str, kind: u8, mode: u32) -> TarEntry {
        TarEntry {
            name: name.as_bytes().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: DEFAULT_MTIME,
            data: Vec::new(),
            link: Vec::new(),
            dev: (0, 0),
            pax: Vec::new(),
        }
    }
    /// A regular file, mode 0644.
    pub fn file(name: &str, data: impl AsRef<[u8]>) -> TarEntry {
        let mut e = TarEntry::new(name, b'0', 0o644);
        e.data = data.as_ref().to_vec();
        e
    }
    /// A directory, mode 0755.
    pub fn dir(name: &str) -> TarEntry {
        TarEntry::new(name, b'5', 0o755)
    }
    /// A symlink to `target`.
    pub fn symlink(name: &str, target: &str) -> TarEntry {
        let mut e = TarEntry::new(name, b'2', 0o777);
        e.link = target.as_bytes().to_vec();
        e
    }
    /// A hard link to the earlier entry `target`.
    pub fn hardlink(name: &str, target: &str) -> TarEntry {
        let mut e = TarEntry::new(name, b'1', 0o644);
        e.link = target.as_bytes().to_vec();
        e
    }
    /// A fifo, mode 0644.
    pub fn fifo(name: &str) -> TarEntry {
        TarEntry::new(name, b'6', 0o644)
    }
    /// A character device `major:minor`, mode 0666.
    pub fn chardev(name: &str, major: u32, minor: u32) -> TarEntry {
        let mut e = TarEntry::new(name, b'3', 0o666);
        e.dev = (major, minor);
        e
    }
    /// Sets the permission bits.
    pub fn mode(mut self, mode: u32) -> TarEntry {
        self.mode = mode;
        self
    }
    /// Sets the owner.
    pub fn owner(mut self, uid: u64, gid: u64) -> TarEntry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    /// Sets the mtime.
    pub fn mtime(mut self, mtime: u64) -> TarEntry {
        self.mtime = mtime;
        self
    }
    /// Adds an xattr as a `SCHILY.xattr.NAME` PAX record (as GNU tar and podman write them).
    pub fn xattr(mut self, name: &str, value: &[u8]) -> TarEntry {
        self.pax
            .push((format!("SCHILY.xattr.{name}"), value.to_vec()));
        self
    }
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "LEN KEY=VALUE\n" where LEN counts the whole record, its own digits included.
    let body = key.len() + value.len() + 3;
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.resize(out.len() + 512 - rem, 0);
    }
}

fn header(name: &[u8], kind: u8, e: &TarEntry, size: u64, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    {
        let old = h.as_old_mut();
        let n = name.len().min(old.name.len());
        old.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(old.linkname.len());
        old.linkname[..l].copy_from_slice(&link[..l]);
    }
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(e.mode);
    h.set_uid(e.uid);
    h.set_gid(e.gid);
    h.set_mtime(e.mtime);
    h.set_size(size);
    if kind == b'3' || kind == b'4' {
        h.set_device_major(e.dev.0).expect("device major");
        h.set_device_minor(e.dev.1).expect("device minor");
    }
    h.set_cksum();
    h
}

/// The bytes of a tar archive holding `entries` in order, with the end-of-archive blocks.
pub fn tar_bytes(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        append_entry(&mut out, e);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Appends one entry (with a PAX header first when it needs one) to a tar stream.
pub fn append_entry(out: &mut Vec<u8>, e: &TarEntry) {
    let mut pax = Vec::new();
    if e.name.len() > 100 {
        pax.extend(pax_record("path", &e.name));
    }
    if e.link.len() > 100 {
        pax.extend(pax_record("linkpath", &e.link));
    }
    for (k, v) in &e.pax {
        pax.extend(pax_record(k, v));
    }
    if !pax.is_empty() {
        let mut pe = e.clone();
        pe.mode = 0o644;
        let h = header(b"PaxHeaders/entry", b'x', &pe, pax.len() as u64, b"");
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&pax);
        pad(out);
    }
    let size = if e.kind == b'0' {
        e.data.len() as u64
    } else {
        0
    };
    let h = header(&e.name, e.kind, e, size, &e.link);
    out.extend_from_slice(h.as_bytes());
    if e.kind == b'0' {
        out.extend_from_slice(&e.data);
        pad(out);
    }
}

/// Entries with every kind of metadata an unprivileged extraction can keep.
pub fn fidelity_entries() -> Vec<TarEntry> {
    let long = format!("long/{}", "n".repeat(195));
    assert_eq!(long.len(), 200);
    vec![
        // `late/` comes before its child: extracting the child must not leave late/'s mtime.
        TarEntry::dir("late/").mtime(1_000_000_000).mode(0o750),
        TarEntry::file("late/child", "c").mtime(1_100_000_000),
        TarEntry::dir("d/").mtime(1_200_000_000),
        TarEntry::file("d/f", "data\n")
            .mode(0o640)
            .mtime(1_300_000_000)
            .xattr("user.foo", b"bar")
            .xattr("user.empty", b""),
        TarEntry::file("d/suid", "s").mode(0o4755),
        TarEntry::file("d/sgid", "g").mode(0o2711),
        TarEntry::dir("sticky/").mode(0o1777),
        TarEntry::hardlink("d/hl", "d/f"),
        TarEntry::symlink("d/sl", "../sticky/none").mtime(1_234_567_890),
        TarEntry::fifo("d/fifo").mode(0o600),
        TarEntry::dir("long/"),
        TarEntry::file(&long, "long name\n"),
        TarEntry::file("zero", "").mode(0o000),
        TarEntry::file(".wh.x", "").mode(0o000),
        TarEntry::dir("w/"),
        TarEntry::file("w/.wh..wh..opq", "").mode(0o000),
        TarEntry::file("w/.wh.gone", "").mode(0o000),
    ]
}

// ---------------------------------------------------------------------------------------------
// Compression
// ---------------------------------------------------------------------------------------------

/// How a layer blob (or an imported tarball) is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// `data` compressed as `c`.
pub fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => gzip_with_mtime(data, 0),
        Compression::Zstd => zstd::encode_all(data, 3).expect("zstd"),
    }
}

/// gzip of `data` whose header carries `mtime`: the same tar gives different blob bytes (and
/// so a different digest) for each mtime, while its diff_id stays the same.
pub fn gzip_with_mtime(data: &[u8], mtime: u32) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(mtime)
        .write(Vec::new(), flate2::Compression::default());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

/// The OCI media type of a layer compressed as `c`.
pub fn layer_media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

// ---------------------------------------------------------------------------------------------
// Images
// ---------------------------------------------------------------------------------------------

/// One layer of an [`Image`], and how to spoil it.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The uncompressed layer tar.
    pub tar: Vec<u8>,
    /// How its blob is compressed (OCI layouts; docker-archives always hold it plain).
    pub compression: Compression,
    /// A media type to write instead of the right one.
    pub media_type: Option<String>,
    /// The blob file holds other bytes than the digest the manifest names (a re-compression
    /// of the same tar when compressed, so only the blob digest is wrong).
    pub blob_mismatch: bool,
    /// The config's diff_id for this layer is not the sha256 of the tar.
    pub wrong_diff_id: bool,
    /// The blob is not written at all.
    pub missing: bool,
    /// Blob bytes to use instead of the compressed tar (their digest is what the manifest
    /// names; the diff_id stays the sha256 of `tar`): a corrupt gzip stream, say.
    pub raw_blob: Option<Vec<u8>>,
}

impl Layer {
    /// A layer with the blob compressed as `compression`.
    pub fn new(tar: Vec<u8>, compression: Compression) -> Layer {
        Layer {
            tar,
            compression,
            media_type: None,
            blob_mismatch: false,
            wrong_diff_id: false,
            missing: false,
            raw_blob: None,
        }
    }
    /// `sha256:<hex>` of the uncompressed tar: what the config's diff_id should be.
    pub fn diff_id(&self) -> String {
        digest_of(&self.tar)
    }
}

/// An image to write into a layout or archive, with switches to spoil it.
#[derive(Debug, Clone)]
pub struct Image {
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// Full name with tag (`localhost/x:1`), or None for an unnamed image.
    pub name: Option<String>,
    /// The config's `config` object (Cmd, Env, WorkingDir, Labels, ...).
    pub config: Value,
    /// The config's `created`.
    pub created: String,
    /// The config's `author`.
    pub author: Option<String>,
    /// The config's `history`; None: one entry per layer.
    pub history: Option<Vec<Value>>,
    /// The manifest's `schemaVersion`.
    pub schema_version: u64,
    /// The config blob holds other bytes than its digest says.
    pub config_mismatch: bool,
    /// The manifest blob holds other bytes than the index says.
    pub manifest_mismatch: bool,
    /// The manifest blob is not written (the index points at nothing).
    pub manifest_missing: bool,
    /// The config blob is not written.
    pub config_missing: bool,
}

impl Image {
    /// An image of `layers`, named `name` (None: unnamed), with a small fixed config.
    pub fn new(name: Option<&str>, layers: Vec<Layer>) -> Image {
        Image {
            layers,
            name: name.map(str::to_string),
            config: json!({
                "Env": ["PATH=/usr/bin:/bin"],
                "Cmd": ["/bin/sh"],
                "WorkingDir": "/",
            }),
            created: "2024-01-02T03:04:05Z".into(),
            author: Some("strata tests".into()),
            history: None,
            schema_version: 2,
            config_mismatch: false,
            manifest_mismatch: false,
            manifest_missing: false,
            config_missing: false,
        }
    }

    /// The diff_ids as the config lists them (spoiled ones included).
    pub fn config_diff_ids(&self) -> Vec<String> {
        self.layers
            .iter()
            .map(|l| {
                if l.wrong_diff_id {
                    let mut t = l.tar.clone();
                    t.push(b'!');
                    digest_of(&t)
                } else {
                    l.diff_id()
                }
            })
            .collect()
    }

    /// The config blob.
    pub fn config_bytes(&self) -> Vec<u8> {
        let history = self.history.clone().unwrap_or_else(|| {
            (0..self.layers.len())
                .map(|i| {
                    json!({
                        "created": self.created,
                        "created_by": format!("strata-tests layer {}", i + 1),
                        "comment": format!("layer {}", i + 1),
                    })
                })
                .collect()
        });
        let mut c = json!({
            "created": self.created,
            "architecture": "amd64",
            "os": "linux",
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": self.config_diff_ids()},
            "history": history,
        });
        if let Some(a) = &self.author {
            c["author"] = json!(a);
        }
        serde_json::to_vec(&c).expect("json")
    }

    /// The image id: `sha256:<hex>` of the config blob.
    pub fn id(&self) -> String {
        digest_of(&self.config_bytes())
    }
}

/// Spoils `data` so that its digest no longer matches, keeping it valid JSON when it was.
fn spoil(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d.push(b' ');
    d
}

/// An OCI image layout in memory: blob files and index.json.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Blob files by hex digest (the name they are written under: it may lie).
    pub blobs: BTreeMap<String, Vec<u8>>,
    /// index.json.
    pub index: Vec<u8>,
}

/// The manifest of `img` and the blobs it names, added to `blobs`. Returns the manifest bytes.
fn add_image_blobs(img: &Image, blobs: &mut BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    let mut layer_descs = Vec::new();
    for l in &img.layers {
        let blob = l
            .raw_blob
            .clone()
            .unwrap_or_else(|| compress(&l.tar, l.compression));
        let hex = sha256_hex(&blob);
        layer_descs.push(json!({
            "mediaType": l.media_type.clone().unwrap_or_else(|| layer_media_type(l.compression).into()),
            "digest": format!("sha256:{hex}"),
            "size": blob.len(),
        }));
        if l.missing {
            continue;
        }
        let stored = if !l.blob_mismatch {
            blob
        } else if l.compression == Compression::Gzip {
            gzip_with_mtime(&l.tar, 1_234_567)
        } else {
            spoil(&blob)
        };
        blobs.insert(hex, stored);
    }
    let config = img.config_bytes();
    let chex = sha256_hex(&config);
    if !img.config_missing {
        let stored = if img.config_mismatch {
            spoil(&config)
        } else {
            config.clone()
        };
        blobs.insert(chex.clone(), stored);
    }
    let manifest = json!({
        "schemaVersion": img.schema_version,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": format!("sha256:{chex}"),
            "size": config.len(),
        },
        "layers": layer_descs,
    });
    serde_json::to_vec(&manifest).expect("json")
}

/// The OCI layout holding `images`, in order.
pub fn oci_layout(images: &[Image]) -> Layout {
    let mut blobs = BTreeMap::new();
    let mut descs = Vec::new();
    for img in images {
        let manifest = add_image_blobs(img, &mut blobs);
        let mhex = sha256_hex(&manifest);
        let mut d = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{mhex}"),
            "size": manifest.len(),
        });
        if let Some(n) = &img.name {
            d["annotations"] = json!({"org.opencontainers.image.ref.name": n});
        }
        descs.push(d);
        if img.manifest_missing {
            continue;
        }
        let stored = if img.manifest_mismatch {
            spoil(&manifest)
        } else {
            manifest
        };
        blobs.insert(mhex, stored);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": descs,
    });
    Layout {
        blobs,
        index: serde_json::to_vec(&index).expect("json"),
    }
}

const OCI_LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

impl Layout {
    /// Writes the layout as a directory at `dir` (created).
    pub fn write_dir(&self, dir: &Path) {
        let b = dir.join("blobs/sha256");
        std::fs::create_dir_all(&b).expect("mkdir blobs");
        std::fs::write(dir.join("oci-layout"), OCI_LAYOUT_FILE).expect("oci-layout");
        std::fs::write(dir.join("index.json"), &self.index).expect("index.json");
        for (hex, data) in &self.blobs {
            std::fs::write(b.join(hex), data).expect("blob");
        }
    }

    /// The layout as an oci-archive (a tar of the layout directory).
    pub fn archive(&self) -> Vec<u8> {
        let mut entries = vec![
            TarEntry::file("oci-layout", OCI_LAYOUT_FILE),
            TarEntry::file("index.json", &self.index),
            TarEntry::dir("blobs/"),
            TarEntry::dir("blobs/sha256/"),
        ];
        for (hex, data) in &self.blobs {
            entries.push(TarEntry::file(&format!("blobs/sha256/{hex}"), data));
        }
        tar_bytes(&entries)
    }
}

/// The layouts `docker save` has written over the years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DockerForm {
    /// `<layer id>/layer.tar` members (docker < 25).
    Legacy,
    /// `<diff_id hex>.tar` members (`podman save --format docker-archive`).
    Podman,
    /// An OCI layout with uncompressed layers plus manifest.json naming `blobs/sha256/<hex>`
    /// (docker >= 25).
    Oci,
}

/// A docker-archive holding `images`. Layers are stored uncompressed; a `missing` layer is
/// left out, a `blob_mismatch` layer holds a spoiled tar.
pub fn docker_archive(images: &[Image], form: DockerForm) -> Vec<u8> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut manifest = Vec::new();
    for img in images {
        let config = img.config_bytes();
        let chex = sha256_hex(&config);
        let config_path = match form {
            DockerForm::Oci => format!("blobs/sha256/{chex}"),
            _ => format!("{chex}.json"),
        };
        if !img.config_missing {
            let stored = if img.config_mismatch {
                spoil(&config)
            } else {
                config.clone()
            };
            files.insert(config_path.clone(), stored);
        }
        let mut layer_paths = Vec::new();
        for l in &img.layers {
            let hex = sha256_hex(&l.tar);
            let p = match form {
                DockerForm::Legacy => format!("{hex}/layer.tar"),
                DockerForm::Podman => format!("{hex}.tar"),
                DockerForm::Oci => format!("blobs/sha256/{hex}"),
            };
            layer_paths.push(p.clone());
            if l.missing {
                continue;
            }
            let plain = l.raw_blob.clone().unwrap_or_else(|| l.tar.clone());
            let stored = if l.blob_mismatch {
                spoil(&plain)
            } else {
                plain
            };
            if form == DockerForm::Legacy {
                files.insert(format!("{hex}/VERSION"), b"1.0".to_vec());
                files.insert(
                    format!("{hex}/json"),
                    format!("{{\"id\":\"{hex}\"}}").into(),
                );
            }
            files.insert(p, stored);
        }
        manifest.push(json!({
            "Config": config_path,
            "RepoTags": img.name.iter().collect::<Vec<_>>(),
            "Layers": layer_paths,
        }));
    }
    if form == DockerForm::Oci {
        // The OCI half of a docker >= 25 archive: index.json, oci-layout and the manifests.
        let plain: Vec<Image> = images
            .iter()
            .map(|i| {
                let mut i = i.clone();
                for l in &mut i.layers {
                    l.compression = Compression::None;
                }
                i
            })
            .collect();
        let layout = oci_layout(&plain);
        for (hex, data) in layout.blobs {
            files.entry(format!("blobs/sha256/{hex}")).or_insert(data);
        }
        files.insert("index.json".into(), layout.index);
        files.insert("oci-layout".into(), OCI_LAYOUT_FILE.to_vec());
    }
    files.insert(
        "manifest.json".into(),
        serde_json::to_vec(&manifest).expect("json"),
    );
    let mut dirs = std::collections::BTreeSet::new();
    for p in files.keys() {
        let mut acc = String::new();
        let parts: Vec<&str> = p.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            acc.push_str(part);
            acc.push('/');
            dirs.insert(acc.clone());
        }
    }
    let mut entries: Vec<TarEntry> = dirs.iter().map(|d| TarEntry::dir(d)).collect();
    entries.extend(files.iter().map(|(p, d)| TarEntry::file(p, d)));
    tar_bytes(&entries)
}
