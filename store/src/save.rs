//! `save`: images as an oci-archive (an OCI layout in a tar) or a docker-archive (the
//! `manifest.json` form `docker load` and `podman load` read), written to a temp file beside
//! the target and renamed into place, so a failed save leaves no partial archive.
//!
//! oci-archive keeps every blob byte for byte, so manifest and config digests survive a round
//! trip. docker-archive holds uncompressed layers (`<diff_id hex>.tar`, as podman writes
//! them), so diff_ids and the config digest survive too.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::Path;

use oci_spec::image::{DescriptorBuilder, ImageIndexBuilder, MediaType};
use serde::Serialize;

use crate::compress::decoder;
use crate::digest::{Digest, HashReader};
use crate::error::{Error, IoContext, Result};
use crate::images::resolve_in;
use crate::load::oci_digest;
use crate::reference::Name;
use crate::store::{ImageRecord, Store};
use crate::tarwrite::{emit, ExactReader};

/// Archive formats `save` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveFormat {
    /// An OCI image layout in a tar.
    OciArchive,
    /// docker save's format.
    DockerArchive,
}

impl Store {
    /// Saves the images `references` to `out` (a file path), in `format`.
    pub fn save(&self, references: &[String], format: SaveFormat, out: &Path) -> Result<()> {
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = tempfile::Builder::new()
            .prefix(".strata-save.")
            .tempfile_in(dir)
            .ctx("create temp file in", dir)?;
        let w = io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        self.save_to(references, format, w)?;
        // tempfile creates 0600; an archive is as readable as any file the user writes.
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .ctx("chmod", tmp.path().to_owned())?;
        tmp.as_file()
            .sync_all()
            .ctx("fsync", tmp.path().to_owned())?;
        tmp.persist(out)
            .map_err(|e| e.error)
            .ctx("rename into place", out)?;
        Ok(())
    }

    /// Saves the images `references` as a tar stream into `w`.
    pub fn save_to<W: Write>(&self, references: &[String], format: SaveFormat, w: W) -> Result<()> {
        let _l = self.lock_shared()?;
        let refs = self.refs()?;
        let mut images: Vec<(ImageRecord, Vec<Name>)> = Vec::new();
        for r in references {
            let id = resolve_in(&refs, r)?;
            let names: Vec<Name> = match Name::parse(r).ok().and_then(|n| {
                n.candidates()
                    .into_iter()
                    .find(|c| refs.names.get(&c.to_string()) == Some(&id))
            }) {
                Some(n) => vec![n],
                None => refs
                    .names_of(&id)
                    .iter()
                    .filter_map(|n| Name::parse(n).ok())
                    .collect(),
            };
            match images.iter_mut().find(|(rec, _)| rec.id == id) {
                Some((_, ns)) => ns.extend(names),
                None => images.push((self.image(&id)?, names)),
            }
        }
        let mut b = tar::Builder::new(w);
        let werr = |e: io::Error| Error::io("write", "the archive", e);
        match format {
            SaveFormat::OciArchive => self.write_oci(&mut b, &images)?,
            SaveFormat::DockerArchive => self.write_docker(&mut b, &images)?,
        }
        let mut w = b.into_inner().map_err(werr)?;
        w.flush().map_err(werr)?;
        Ok(())
    }

    fn write_oci<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        images: &[(ImageRecord, Vec<Name>)],
    ) -> Result<()> {
        let werr = |e: io::Error| Error::io("write", "the archive", e);
        file(b, b"oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(werr)?;
        dir(b, b"blobs/").map_err(werr)?;
        dir(b, b"blobs/sha256/").map_err(werr)?;
        let mut done = BTreeSet::new();
        let mut manifests = Vec::new();
        for (rec, names) in images {
            for d in rec.blobs() {
                if done.insert(d.clone()) {
                    self.copy_blob(b, d)?;
                }
            }
            let names: Vec<Option<&Name>> = if names.is_empty() {
                vec![None]
            } else {
                names.iter().map(Some).collect()
            };
            for n in names {
                let mt = rec
                    .manifest_media_type
                    .as_deref()
                    .map_or(MediaType::ImageManifest, MediaType::from);
                let mut desc = DescriptorBuilder::default()
                    .media_type(mt)
                    .digest(oci_digest(&rec.manifest))
                    .size(rec.manifest_size);
                if let Some(n) = n {
                    // podman and skopeo read the full name from ref.name; containerd from its own key.
                    desc = desc.annotations(
                        [
                            (
                                "org.opencontainers.image.ref.name".to_owned(),
                                n.to_string(),
                            ),
                            ("io.containerd.image.name".to_owned(), n.to_string()),
                        ]
                        .into_iter()
                        .collect::<std::collections::HashMap<_, _>>(),
                    );
                }
                manifests.push(
                    desc.build()
                        .map_err(|e| Error::invalid("index.json", e.to_string()))?,
                );
            }
        }
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .map_err(|e| Error::invalid("index.json", e.to_string()))?;
        let data =
            serde_json::to_vec(&index).map_err(|e| Error::invalid("index.json", e.to_string()))?;
        file(b, b"index.json", &data).map_err(werr)
    }

    fn copy_blob<W: Write>(&self, b: &mut tar::Builder<W>, d: &Digest) -> Result<()> {
        let p = self.blob_path(d);
        let f = std::fs::File::open(&p).ctx("open blob", &p)?;
        let len = f.metadata().ctx("stat", &p)?.len();
        let mut h = header(len);
        let mut hr = HashReader::new(ExactReader {
            inner: f,
            left: len,
        });
        let path = format!("blobs/sha256/{}", d.hex());
        emit(b, &mut h, path.as_bytes(), Vec::new(), &mut hr)
            .map_err(|e| Error::io("write blob to archive", &p, e))?;
        let (found, _, _) = hr.finish().ctx("read", &p)?;
        if &found != d {
            return Err(Error::DigestMismatch {
                what: format!("stored blob {}", p.display()),
                expected: d.to_string(),
                found: found.to_string(),
            });
        }
        Ok(())
    }

    fn write_docker<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        images: &[(ImageRecord, Vec<Name>)],
    ) -> Result<()> {
        #[derive(Serialize)]
        struct Entry {
            #[serde(rename = "Config")]
            config: String,
            #[serde(rename = "RepoTags")]
            repo_tags: Vec<String>,
            #[serde(rename = "Layers")]
            layers: Vec<String>,
        }
        let werr = |e: io::Error| Error::io("write", "the archive", e);
        let mut done = BTreeSet::new();
        let mut entries = Vec::new();
        for (rec, names) in images {
            let config = format!("{}.json", rec.id.hex());
            if done.insert(rec.id.clone()) {
                file(b, config.as_bytes(), &self.read_blob(&rec.id)?).map_err(werr)?;
            }
            let mut layers = Vec::new();
            for l in &rec.layers {
                let member = format!("{}.tar", l.diff_id.hex());
                if done.insert(l.diff_id.clone()) {
                    let p = self.blob_path(&l.blob);
                    let f = std::fs::File::open(&p).ctx("open blob", &p)?;
                    let (_, plain) = decoder(f, &p.display().to_string())?;
                    let mut hr = HashReader::new(ExactReader {
                        inner: plain,
                        left: l.size,
                    });
                    let mut h = header(l.size);
                    emit(b, &mut h, member.as_bytes(), Vec::new(), &mut hr)
                        .map_err(|e| Error::io("write layer to archive", &p, e))?;
                    let (found, _, _) = hr.finish().ctx("read", &p)?;
                    if found != l.diff_id {
                        return Err(Error::DiffIdMismatch {
                            what: format!("stored layer {}", p.display()),
                            expected: l.diff_id.to_string(),
                            found: found.to_string(),
                        });
                    }
                }
                layers.push(member);
            }
            entries.push(Entry {
                config,
                repo_tags: names.iter().map(|n| n.to_string()).collect(),
                layers,
            });
        }
        let data = serde_json::to_vec(&entries).expect("serialize");
        file(b, b"manifest.json", &data).map_err(werr)
    }
}

fn header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h
}

fn file<W: Write>(b: &mut tar::Builder<W>, path: &[u8], data: &[u8]) -> io::Result<()> {
    emit(b, &mut header(data.len() as u64), path, Vec::new(), data)
}

fn dir<W: Write>(b: &mut tar::Builder<W>, path: &[u8]) -> io::Result<()> {
    let mut h = header(0);
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    emit(b, &mut h, path, Vec::new(), io::empty())
}
