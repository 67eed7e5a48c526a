//! Layer compression, detected by magic number rather than by name or media type
//! (reference/runtime.md §7: gzip `1f 8b`, zstd `28 b5 2f fd`), because docker-archives name
//! every layer `layer.tar` whatever its compression.

use std::io::{BufRead, BufReader, Read};

use crate::error::{Error, Result};

/// How a layer blob is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (RFC 1952).
    Gzip,
    /// zstd (RFC 8878).
    Zstd,
}

impl Compression {
    /// The OCI layer media type for a blob with this compression.
    pub fn oci_layer_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    /// Detects the compression from the first bytes of a stream.
    pub fn detect(head: &[u8]) -> Result<Self> {
        Ok(match head {
            [0x1f, 0x8b, ..] => Compression::Gzip,
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
            [b'B', b'Z', b'h', ..] => {
                return Err(Error::Unsupported(
                    "bzip2 layers are not supported (OCI layers are tar, tar+gzip or tar+zstd)"
                        .into(),
                ))
            }
            [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => {
                return Err(Error::Unsupported(
                    "xz layers are not supported (OCI layers are tar, tar+gzip or tar+zstd)".into(),
                ))
            }
            _ => Compression::None,
        })
    }
}

/// The layer media types the store accepts, with the compression they announce. The
/// announcement is only checked for being known: the magic number decides.
pub(crate) fn layer_media_type_known(mt: &str) -> bool {
    matches!(
        mt,
        "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// Wraps `r` in the decoder its magic number calls for. The returned reader yields the plain
/// tar; `what` names the stream in errors.
pub(crate) fn decoder<'a, R: Read + 'a>(
    r: R,
    what: &str,
) -> Result<(Compression, Box<dyn Read + 'a>)> {
    let mut r = BufReader::with_capacity(256 * 1024, r);
    let head = r.fill_buf().map_err(|e| Error::Corrupt {
        what: what.to_owned(),
        error: e,
    })?;
    let c = Compression::detect(head)?;
    let out: Box<dyn Read + 'a> = match c {
        Compression::None => Box::new(r),
        // MultiGzDecoder: a gzip file may hold several members (RFC 1952 §2.2), as pigz writes.
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(
            |e| Error::Corrupt {
                what: what.to_owned(),
                error: e,
            },
        )?),
    };
    Ok((c, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_by_magic_and_decodes() {
        let plain = b"hello tar".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zs = zstd::encode_all(&plain[..], 1).unwrap();
        for (data, want) in [
            (plain.clone(), Compression::None),
            (gz, Compression::Gzip),
            (zs, Compression::Zstd),
        ] {
            let (c, mut r) = decoder(&data[..], "t").unwrap();
            assert_eq!(c, want);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, plain);
        }
        assert!(Compression::detect(b"BZh91AY").is_err());
    }

    #[test]
    fn corrupt_gzip_is_a_data_error() {
        let data = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 0xff, 0xff, 0xff];
        let (_, mut r) = decoder(&data[..], "t").unwrap();
        let e = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(
            e.raw_os_error().is_none(),
            "a data error, not a device error: {e:?}"
        );
    }
}
