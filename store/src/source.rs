//! Where `load` reads an image from: a directory (an OCI layout) or a tar file (oci-archive,
//! docker-archive). A tar is indexed once; members are then read in place with pread(2), in
//! any order, because index.json and manifest.json may come after the blobs they name.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::extract::normalize;

/// JSON documents (index, manifests, configs) larger than this are refused rather than read
/// into memory: real ones are kilobytes.
const MAX_DOC: u64 = 64 << 20;

#[derive(Debug)]
pub(crate) enum Member {
    File {
        offset: u64,
        size: u64,
    },
    /// A symlink or hard link member, as a normalized path from the archive root.
    Link(Vec<u8>),
}

/// An image source.
#[derive(Debug)]
pub(crate) enum Source {
    Dir(PathBuf),
    Tar {
        path: PathBuf,
        file: File,
        members: HashMap<Vec<u8>, Member>,
    },
}

impl Source {
    /// Opens a directory, or indexes a tar file.
    pub(crate) fn open(path: &Path) -> Result<Source> {
        let md = std::fs::metadata(path).ctx("open", path)?;
        if md.is_dir() {
            return Ok(Source::Dir(path.to_owned()));
        }
        let file = File::open(path).ctx("open", path)?;
        let len = md.len();
        let corrupt = |e: io::Error| Error::Corrupt {
            what: format!("archive {}", path.display()),
            error: e,
        };
        let mut members = HashMap::new();
        {
            let mut ar = tar::Archive::new(&file);
            for e in ar.entries_with_seek().map_err(corrupt)? {
                let e = e.map_err(corrupt)?;
                let Ok(name) = normalize(&e.path_bytes()) else {
                    continue;
                };
                let m = match e.header().entry_type() {
                    tar::EntryType::Regular | tar::EntryType::Continuous => {
                        let (offset, size) = (e.raw_file_position(), e.size());
                        if offset.saturating_add(size) > len {
                            return Err(corrupt(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "member {:?} ends past the end of the file",
                                    String::from_utf8_lossy(&name)
                                ),
                            )));
                        }
                        Member::File { offset, size }
                    }
                    tar::EntryType::Symlink => {
                        let t = e.link_name_bytes().unwrap_or_default();
                        let dir = match name.iter().rposition(|&b| b == b'/') {
                            Some(i) if t.first() != Some(&b'/') => {
                                [&name[..i], b"/", &t[..]].concat()
                            }
                            _ => t.to_vec(),
                        };
                        match resolve_dots(&dir) {
                            Some(p) => Member::Link(p),
                            None => continue,
                        }
                    }
                    tar::EntryType::Link => {
                        match normalize(&e.link_name_bytes().unwrap_or_default()) {
                            Ok(p) => Member::Link(p),
                            Err(_) => continue,
                        }
                    }
                    _ => continue,
                };
                members.insert(name, m);
            }
        }
        if members.is_empty() {
            return Err(Error::invalid(
                format!("archive {}", path.display()),
                "not a tar archive with files (an OCI layout, oci-archive or docker-archive was expected)",
            ));
        }
        Ok(Source::Tar {
            path: path.to_owned(),
            file,
            members,
        })
    }

    /// A description for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Source::Dir(p) | Source::Tar { path: p, .. } => p.display().to_string(),
        }
    }

    fn member(&self, name: &str) -> Option<(u64, u64)> {
        let Source::Tar { members, .. } = self else {
            return None;
        };
        let mut key = normalize(name.as_bytes()).ok()?;
        for _ in 0..8 {
            match members.get(&key)? {
                Member::File { offset, size } => return Some((*offset, *size)),
                Member::Link(t) => key = t.clone(),
            }
        }
        None
    }

    /// True when the source has `name`.
    pub(crate) fn has(&self, name: &str) -> bool {
        match self {
            Source::Dir(d) => d.join(name).is_file(),
            Source::Tar { .. } => self.member(name).is_some(),
        }
    }

    /// Opens `name` for reading, with its size; None when absent.
    pub(crate) fn open_member(&self, name: &str) -> Result<Option<(Box<dyn Read + '_>, u64)>> {
        match self {
            Source::Dir(d) => {
                if normalize(name.as_bytes()).is_err() {
                    return Ok(None);
                }
                let p = d.join(name);
                match File::open(&p) {
                    Ok(f) => {
                        let md = f.metadata().ctx("stat", &p)?;
                        // A layout's blob that is a device or a FIFO would be read forever.
                        if !md.is_file() {
                            return Err(Error::invalid(
                                format!("{}", p.display()),
                                "not a regular file",
                            ));
                        }
                        Ok(Some((Box::new(f), md.len())))
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(Error::io("open", p, e)),
                }
            }
            Source::Tar { file, .. } => Ok(self.member(name).map(|(offset, size)| {
                let r: Box<dyn Read + '_> = Box::new(Slice {
                    file,
                    pos: offset,
                    end: offset + size,
                });
                (r, size)
            })),
        }
    }

    /// Reads a JSON document; `what` names it in errors.
    pub(crate) fn read_doc(&self, name: &str, what: &str) -> Result<Vec<u8>> {
        let (r, size) = self.open_member(name)?.ok_or_else(|| Error::MissingBlob {
            what: what.to_owned(),
            path: format!("{}: {name}", self.describe()),
        })?;
        if size > MAX_DOC {
            return Err(Error::invalid(
                what,
                format!("{name} is {size} bytes; documents over {MAX_DOC} are refused"),
            ));
        }
        let mut v = Vec::with_capacity(size as usize);
        r.take(MAX_DOC)
            .read_to_end(&mut v)
            .map_err(|e| Error::Corrupt {
                what: format!("{what} ({name})"),
                error: e,
            })?;
        Ok(v)
    }
}

/// Resolves `.` and `..` in a member path (for symlink members, whose targets are relative).
fn resolve_dots(p: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<&[u8]> = Vec::new();
    for c in p.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(c),
        }
    }
    Some(out.join(&b'/'))
}

/// A member of a tar file, read with pread(2).
struct Slice<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf.len().min((self.end - self.pos) as usize);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive member cut short",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}
