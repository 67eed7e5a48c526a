//! `load`: OCI image layouts (a directory or an oci-archive tar) and docker-archives (the
//! legacy `manifest.json` form, and Docker >= 25's, which also holds an OCI layout).
//!
//! Format facts: image-spec image-layout.md, manifest.md, config.md; reference/runtime.md §7.
//! `index.json` is preferred when present; `manifest.json` then only adds names.

use std::collections::BTreeMap;

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use serde::Deserialize;

use crate::compress::layer_media_type_known;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::ingest::{Ingest, Progress};
use crate::reference::Name;
use crate::source::Source;
use crate::store::{ImageRecord, LayerRef, Store};

/// One image a load stored.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The image id (config digest).
    pub id: Digest,
    /// Its names from the archive.
    pub names: Vec<String>,
}

/// What a load did.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// The images, in archive order.
    pub images: Vec<Loaded>,
    /// Things that could not be kept (device nodes rootless, ...).
    pub warnings: Vec<String>,
}

/// Where an image's pieces are in the source.
struct Plan {
    what: String,
    config: Vec<u8>,
    config_digest: Digest,
    /// The original manifest, kept byte for byte so its digest survives save, and its media
    /// type.
    manifest: Option<(Vec<u8>, String)>,
    layers: Vec<LayerSrc>,
    names: Vec<Name>,
}

struct LayerSrc {
    member: String,
    /// Digest, size and media type from an OCI descriptor.
    announced: Option<(Digest, u64, String)>,
}

const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";
const ANN_CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

impl Store {
    /// Loads from a stream (`strata load` with stdin): the archive is spooled into a staging
    /// dir first, because its members are read in any order.
    pub fn load_reader(
        &self,
        mut r: impl std::io::Read,
        progress: Option<Progress<'_>>,
    ) -> Result<LoadReport> {
        let stage = self.stage()?;
        let path = stage.path().join("input.tar");
        let mut f = std::fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
        std::io::copy(&mut r, &mut f).map_err(|e| Error::io("spool the archive to", &path, e))?;
        drop(f);
        self.load(&path, progress)
    }

    /// Loads every image of an OCI layout, oci-archive or docker-archive at `input`.
    pub fn load(
        &self,
        input: &std::path::Path,
        progress: Option<Progress<'_>>,
    ) -> Result<LoadReport> {
        let src = Source::open(input)?;
        let plans = if src.has("index.json") {
            let mut p = oci_plans(&src)?;
            if src.has("manifest.json") {
                add_docker_names(&src, &mut p)?;
            }
            p
        } else if src.has("manifest.json") {
            docker_plans(&src)?
        } else {
            return Err(Error::invalid(
                src.describe(),
                "neither an OCI layout (no index.json) nor a docker-archive (no manifest.json)",
            ));
        };
        let mut ing = Ingest::new(self, progress)?;
        let mut records = Vec::new();
        for p in &plans {
            ing.total += p
                .layers
                .iter()
                .map(|l| l.announced.as_ref().map_or(0, |a| a.1))
                .sum::<u64>();
        }
        let present = self.refs()?.images();
        for p in plans {
            // An image already stored is the same content (its id is the config digest,
            // which fixes the diff_ids): keep its record and only add the names.
            let rec = match present
                .contains(&p.config_digest)
                .then(|| self.image(&p.config_digest))
            {
                Some(Ok(rec)) => rec,
                _ => ingest_plan(&mut ing, &src, &p)?,
            };
            records.push((rec, p.names));
        }
        let warnings = std::mem::take(&mut ing.warnings);
        ing.commit(&records)?;
        Ok(LoadReport {
            images: records
                .into_iter()
                .map(|(r, n)| Loaded {
                    id: r.id,
                    names: n.iter().map(|x| x.to_string()).collect(),
                })
                .collect(),
            warnings,
        })
    }
}

/// Parses and checks a config; returns its diff_ids.
pub(crate) fn check_config(
    bytes: &[u8],
    what: &str,
    layers: usize,
) -> Result<(ImageConfiguration, Vec<Digest>)> {
    let cfg: ImageConfiguration = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(what, format!("not an image config: {e}")))?;
    if cfg.rootfs().typ() != "layers" {
        return Err(Error::invalid(
            what,
            format!("rootfs.type is {:?}, not \"layers\"", cfg.rootfs().typ()),
        ));
    }
    let diff_ids = cfg
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>>>()?;
    if diff_ids.len() != layers {
        return Err(Error::invalid(
            what,
            format!(
                "rootfs.diff_ids lists {} layers but the manifest has {layers}",
                diff_ids.len()
            ),
        ));
    }
    Ok((cfg, diff_ids))
}

fn ingest_plan(ing: &mut Ingest<'_>, src: &Source, p: &Plan) -> Result<ImageRecord> {
    let (cfg, diff_ids) = check_config(&p.config, &format!("{} config", p.what), p.layers.len())?;
    let mut layers = Vec::new();
    for (i, (l, want)) in p.layers.iter().zip(&diff_ids).enumerate() {
        let what = format!("{}: layer {} ({})", p.what, i + 1, l.member);
        let (r, size) = src
            .open_member(&l.member)?
            .ok_or_else(|| Error::MissingBlob {
                what: what.clone(),
                path: format!("{}: {}", src.describe(), l.member),
            })?;
        let announced = l.announced.as_ref().map(|(d, s, _)| (d, *s));
        let known = announced.is_some_and(|(d, _)| ing.blob_location(d).is_some());
        if announced.is_none() {
            ing.total += size;
        }
        let (blob, blob_size) = ing.blob(r, announced, &what)?;
        let (diff_id, dsize) = ing.layer(&blob, Some(want), !known, &what)?;
        let media_type = match &l.announced {
            Some((_, _, mt)) => mt.clone(),
            None => ing.blob_media_type(&blob, &what)?.to_owned(),
        };
        layers.push(LayerRef {
            diff_id,
            blob,
            media_type,
            blob_size,
            size: dsize,
        });
    }
    let config_digest = ing.blob_bytes(&p.config, &format!("{} config", p.what))?;
    debug_assert_eq!(config_digest, p.config_digest);
    let (manifest_bytes, manifest_media_type) = match &p.manifest {
        Some((m, mt)) => (m.clone(), Some(mt.clone()).filter(|t| t != OCI_MANIFEST)),
        None => (synth_manifest(&p.config, &layers)?, None),
    };
    let manifest = ing.blob_bytes(&manifest_bytes, &format!("{} manifest", p.what))?;
    Ok(ImageRecord {
        id: config_digest,
        manifest,
        manifest_size: manifest_bytes.len() as u64,
        manifest_media_type,
        config_size: p.config.len() as u64,
        layers,
        created: cfg.created().clone(),
    })
}

/// An OCI manifest for layers that came without one (docker-archive, import).
pub(crate) fn synth_manifest(config: &[u8], layers: &[crate::store::LayerRef]) -> Result<Vec<u8>> {
    use oci_spec::image::{DescriptorBuilder, ImageManifestBuilder};
    let desc = |mt: MediaType, d: &Digest, size: u64| -> Result<Descriptor> {
        DescriptorBuilder::default()
            .media_type(mt)
            .digest(oci_digest(d))
            .size(size)
            .build()
            .map_err(|e| Error::invalid("manifest", e.to_string()))
    };
    let cfg = desc(
        MediaType::ImageConfig,
        &Digest::of(config),
        config.len() as u64,
    )?;
    let ls = layers
        .iter()
        .map(|l| desc(MediaType::from(l.media_type.as_str()), &l.blob, l.blob_size))
        .collect::<Result<Vec<_>>>()?;
    let m = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(cfg)
        .layers(ls)
        .build()
        .map_err(|e| Error::invalid("manifest", e.to_string()))?;
    serde_json::to_vec(&m).map_err(|e| Error::invalid("manifest", e.to_string()))
}

pub(crate) fn oci_digest(d: &Digest) -> oci_spec::image::Digest {
    d.to_string()
        .parse()
        .expect("a valid sha256 digest is a valid OCI digest")
}

fn digest_of(desc: &Descriptor, what: &str) -> Result<Digest> {
    Digest::parse(desc.digest().as_ref()).map_err(|_| {
        Error::Unsupported(format!(
            "{what}: digest {} is not sha256; only sha256 is supported",
            desc.digest()
        ))
    })
}

/// Reads a blob named by a descriptor and checks its digest and size.
fn read_verified(src: &Source, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
    let d = digest_of(desc, what)?;
    let data = src.read_doc(&format!("blobs/sha256/{}", d.hex()), what)?;
    let found = Digest::of(&data);
    if found != d {
        return Err(Error::DigestMismatch {
            what: what.to_owned(),
            expected: d.to_string(),
            found: found.to_string(),
        });
    }
    if data.len() as u64 != desc.size() {
        return Err(Error::SizeMismatch {
            what: what.to_owned(),
            expected: desc.size(),
            found: data.len() as u64,
        });
    }
    Ok(data)
}

fn oci_plans(src: &Source) -> Result<Vec<Plan>> {
    if !src.has("oci-layout") {
        return Err(Error::invalid(
            src.describe(),
            "has index.json but no oci-layout file (image-layout.md)",
        ));
    }
    let layout = src.read_doc("oci-layout", "oci-layout")?;
    #[derive(Deserialize)]
    struct Layout {
        #[serde(rename = "imageLayoutVersion")]
        version: String,
    }
    let l: Layout =
        serde_json::from_slice(&layout).map_err(|e| Error::invalid("oci-layout", e.to_string()))?;
    if !l.version.starts_with("1.") {
        return Err(Error::Unsupported(format!(
            "unsupported OCI layout version {:?}",
            l.version
        )));
    }
    let index = parse_index(&src.read_doc("index.json", "index.json")?, "index.json")?;
    let mut plans = Vec::new();
    walk_index(src, &index, "index.json", &mut plans, 0)?;
    if plans.is_empty() {
        return Err(Error::invalid(
            src.describe(),
            "index.json lists no image manifest for this platform",
        ));
    }
    Ok(plans)
}

fn parse_index(bytes: &[u8], what: &str) -> Result<ImageIndex> {
    // The schema version is checked before the types, so that a future version gets a clear
    // "unsupported" rather than a parse error.
    check_schema(bytes, what)?;
    serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(what, format!("not an image index: {e}")))
}

fn check_schema(bytes: &[u8], what: &str) -> Result<()> {
    #[derive(Deserialize)]
    struct V {
        #[serde(rename = "schemaVersion")]
        v: Option<u64>,
    }
    let v: V = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid(what, format!("not JSON: {e}")))?;
    match v.v {
        Some(2) => Ok(()),
        Some(n) => Err(Error::Unsupported(format!(
            "{what}: unsupported schemaVersion {n} (only 2 is supported)"
        ))),
        None => Err(Error::invalid(what, "schemaVersion is missing")),
    }
}

fn walk_index(
    src: &Source,
    index: &ImageIndex,
    what: &str,
    plans: &mut Vec<Plan>,
    depth: usize,
) -> Result<()> {
    if depth > 4 {
        return Err(Error::invalid(what, "image indexes nest too deep"));
    }
    for (i, desc) in index.manifests().iter().enumerate() {
        if let Some(p) = desc.platform() {
            if !platform_matches(p) {
                continue;
            }
        }
        let dwhat = format!("{what} manifests[{i}]");
        let mt = desc.media_type().to_string();
        let names = names_of(desc);
        match mt.as_str() {
            "application/vnd.oci.image.manifest.v1+json" | DOCKER_MANIFEST => {
                let d = digest_of(desc, &dwhat)?;
                let mwhat = format!("manifest {d}");
                let bytes = read_verified(src, desc, &mwhat)?;
                plans.push(manifest_plan(src, bytes, &mt, &mwhat, names)?);
            }
            "application/vnd.oci.image.index.v1+json" | DOCKER_LIST => {
                let d = digest_of(desc, &dwhat)?;
                let iwhat = format!("index {d}");
                let bytes = read_verified(src, desc, &iwhat)?;
                let nested = parse_index(&bytes, &iwhat)?;
                let before = plans.len();
                walk_index(src, &nested, &iwhat, plans, depth + 1)?;
                for p in &mut plans[before..] {
                    p.names.extend(names.iter().cloned());
                }
            }
            // image-layout.md: unknown media types in an index must be ignored.
            _ => log::debug!("{dwhat}: skipping media type {mt}"),
        }
    }
    Ok(())
}

/// The image's name from an index descriptor. `io.containerd.image.name` holds a full name;
/// `org.opencontainers.image.ref.name` holds one when podman or skopeo wrote it, but only a
/// tag in layouts that docker writes, and a bare tag names no repository, so it is skipped.
fn names_of(desc: &Descriptor) -> Vec<Name> {
    let Some(ann) = desc.annotations() else {
        return Vec::new();
    };
    let v = ann.get(ANN_CONTAINERD_NAME).or_else(|| {
        ann.get(ANN_REF_NAME)
            .filter(|v| v.contains('/') || v.contains(':'))
    });
    match v.map(|s| Name::parse(s)) {
        Some(Ok(n)) => vec![n],
        Some(Err(e)) => {
            log::warn!("ignoring the archive's image name: {e}");
            Vec::new()
        }
        None => Vec::new(),
    }
}

/// This machine's architecture as OCI names it (image-spec config.md: Go's GOARCH values).
pub(crate) fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

fn platform_matches(p: &oci_spec::image::Platform) -> bool {
    p.os().to_string() == "linux" && p.architecture().to_string() == oci_arch()
}

fn manifest_plan(
    src: &Source,
    bytes: Vec<u8>,
    media_type: &str,
    what: &str,
    names: Vec<Name>,
) -> Result<Plan> {
    check_schema(&bytes, what)?;
    let m: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::invalid(what, format!("not an image manifest: {e}")))?;
    let cmt = m.config().media_type().to_string();
    if cmt != "application/vnd.oci.image.config.v1+json" && cmt != DOCKER_CONFIG {
        return Err(Error::Unsupported(format!(
            "{what}: unsupported config media type {cmt}"
        )));
    }
    let config = read_verified(src, m.config(), &format!("{what} config"))?;
    let mut layers = Vec::new();
    for (i, l) in m.layers().iter().enumerate() {
        let mt = l.media_type().to_string();
        if !layer_media_type_known(&mt) {
            return Err(Error::Unsupported(format!(
                "{what}: layer {}: unsupported media type {mt}",
                i + 1
            )));
        }
        if l.urls().as_ref().is_some_and(|u| !u.is_empty())
            && !src.has(&blob_member(&digest_of(l, what)?))
        {
            return Err(Error::Unsupported(format!(
                "{what}: layer {} is a foreign layer (urls); strata does not fetch",
                i + 1
            )));
        }
        let d = digest_of(l, what)?;
        layers.push(LayerSrc {
            member: blob_member(&d),
            announced: Some((d, l.size(), mt)),
        });
    }
    Ok(Plan {
        what: what.to_owned(),
        config_digest: Digest::of(&config),
        config,
        manifest: Some((bytes, media_type.to_owned())),
        layers,
        names,
    })
}

fn blob_member(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// docker's `manifest.json` (moby image/tarexport): not an OCI type, so it is declared here.
#[derive(Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn docker_manifest(src: &Source) -> Result<Vec<DockerEntry>> {
    let b = src.read_doc("manifest.json", "manifest.json")?;
    serde_json::from_slice(&b).map_err(|e| {
        Error::invalid(
            "manifest.json",
            format!("not a docker-archive manifest: {e}"),
        )
    })
}

fn docker_names(e: &DockerEntry) -> Vec<Name> {
    e.repo_tags
        .iter()
        .flatten()
        .filter_map(|t| match Name::parse(t) {
            Ok(n) => Some(n),
            Err(err) => {
                log::warn!("ignoring the archive's image name: {err}");
                None
            }
        })
        .collect()
}

/// The config of a docker-archive entry, checked against the digest its name carries
/// (`<hex>.json` in the legacy form, `blobs/sha256/<hex>` in Docker >= 25's).
fn docker_config(src: &Source, e: &DockerEntry) -> Result<(Vec<u8>, Digest)> {
    let what = format!("manifest.json config {}", e.config);
    let bytes = src.read_doc(&e.config, &what)?;
    let d = Digest::of(&bytes);
    let stem = e
        .config
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".json");
    if let Ok(named) = Digest::from_hex(stem) {
        if named != d {
            return Err(Error::DigestMismatch {
                what,
                expected: named.to_string(),
                found: d.to_string(),
            });
        }
    }
    Ok((bytes, d))
}

fn docker_plans(src: &Source) -> Result<Vec<Plan>> {
    let entries = docker_manifest(src)?;
    if entries.is_empty() {
        return Err(Error::invalid("manifest.json", "lists no image"));
    }
    let mut plans = Vec::new();
    for e in &entries {
        let (config, config_digest) = docker_config(src, e)?;
        plans.push(Plan {
            what: format!("image {}", config_digest.short()),
            config,
            config_digest,
            manifest: None,
            layers: e
                .layers
                .iter()
                .map(|l| LayerSrc {
                    member: l.clone(),
                    announced: None,
                })
                .collect(),
            names: docker_names(e),
        });
    }
    Ok(plans)
}

/// Docker >= 25 archives: names come from manifest.json's RepoTags, matched by config.
fn add_docker_names(src: &Source, plans: &mut [Plan]) -> Result<()> {
    let mut by_config: BTreeMap<Digest, Vec<Name>> = BTreeMap::new();
    for e in docker_manifest(src)? {
        if let Ok((_, d)) = docker_config(src, &e) {
            by_config.entry(d).or_default().extend(docker_names(&e));
        }
    }
    for p in plans {
        for n in by_config.remove(&p.config_digest).unwrap_or_default() {
            // `alpine:3.18` in RepoTags and `docker.io/library/alpine:3.18` in index.json are
            // one name (docker's normalization); keep the index's full form.
            let same = |x: &Name| n.candidates().contains(x) || x.candidates().contains(&n);
            if !p.names.iter().any(same) {
                p.names.push(n);
            }
        }
    }
    Ok(())
}
