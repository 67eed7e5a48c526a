//! Mount options in fuse-overlayfs syntax (`-o lowerdir=A:B,upperdir=U,workdir=W`).
//!
//! The grammar follows what containers-storage sends (reference/mount-program.md §1.3):
//! empty elements, a `context="…"` value that holds commas inside quotes, `uidmapping=` with a
//! leading colon, and FUSE flag words that are passed through. Unknown options warn and are
//! ignored, as fuse-overlayfs does ("unknown argument ignored").

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::error::SetupError;
use crate::idmap::{IdMap, IdRange};

/// Everything `-o` can say, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountOptions {
    /// Lower layers, topmost first (the leftmost in `lowerdir=`).
    pub lowerdirs: Vec<PathBuf>,
    /// The writable layer; `None` makes the mount read-only.
    pub upperdir: Option<PathBuf>,
    /// Scratch dir on the upper's filesystem, for atomic copy-up and whiteouts.
    pub workdir: Option<PathBuf>,
    /// `volatile` or `fsync=0`: fsync may be skipped.
    pub volatile: bool,
    /// Container → host uid ranges (`uidmapping=`).
    pub uid_map: IdMap,
    /// Container → host gid ranges (`gidmapping=`).
    pub gid_map: IdMap,
    /// Present every file as owned by this uid (`squash_to_root`, `squash_to_uid=`).
    pub squash_uid: Option<u32>,
    /// Present every file as owned by this gid (`squash_to_root`, `squash_to_gid=`).
    pub squash_gid: Option<u32>,
    /// `xattr_permissions=0|1|2` (fuse-overlayfs: where ownership overrides are kept).
    pub xattr_permissions: u8,
    /// Write whiteouts as `.wh.NAME` files even where char 0/0 devices could be made.
    pub force_wh_whiteouts: bool,
    /// `passthrough=on|off`: let the kernel do the I/O of open files on their backing files
    /// (root only; on by default).
    pub passthrough: bool,
    /// `provenance=off`: no `user.strata.*` virtual xattrs (on by default).
    pub provenance: bool,
    /// `metacopy=on`: a metadata change of a lower file copies up its metadata only (off by
    /// default, as in kernel overlayfs; see `Config::metacopy`).
    pub metacopy: bool,
    /// `view=diff`: show only what the first lower layer changed (see `Config::diff`).
    pub diff_view: bool,
    /// `max_inodes=N`: most inodes the daemon keeps before it asks the kernel to let go of the
    /// least recently used ones (0: no bound; default [`DEFAULT_MAX_INODES`]).
    pub max_inodes: usize,
    /// FUSE and VFS words passed to the mount (`allow_other`, `ro`, `noatime`, …).
    pub fuse_words: Vec<String>,
    /// Read-only requested with `ro` (also implied by a missing upperdir).
    pub read_only: bool,
    /// Options that were ignored, one warning each.
    pub warnings: Vec<String>,
}

/// Words passed through to the FUSE mount, as fuse-overlayfs does (its `main.c` and
/// `src/config.rs` list the same set).
const FUSE_WORDS: &[&str] = &[
    "allow_other",
    "allow_root",
    "default_permissions",
    "auto_unmount",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "sync",
    "async",
    "dirsync",
    "kernel_cache",
    "splice_read",
    "splice_write",
    "splice_move",
    "rw",
    "ro",
    "defaults",
];

/// Options of fuse-overlayfs that strata accepts and deliberately ignores.
const IGNORED_KEYS: &[&str] = &[
    "context",
    "fscontext",
    "defcontext",
    "rootcontext",
    "timeout",
    "threaded",
    "noacl",
    "static_nlink",
    "fast_ino",
    "ino32_t",
    "debug",
    "max_write",
    "max_read",
    "max_readahead",
    "fsname",
    "subtype",
    "userxattr",
    "index",
];

/// The default `max_inodes=`: about 60 MiB of daemon memory, and more files than a large
/// container image holds (so a container's working set is never pruned).
pub const DEFAULT_MAX_INODES: usize = 131_072;

impl MountOptions {
    /// Parses the values of every `-o`, in order (later values win).
    pub fn parse<S: AsRef<str>>(groups: &[S]) -> Result<Self, SetupError> {
        let mut o = MountOptions {
            passthrough: true,
            provenance: true,
            max_inodes: DEFAULT_MAX_INODES,
            ..MountOptions::default()
        };
        for group in groups {
            for item in split_options(group.as_ref())? {
                o.apply(&item)?;
            }
        }
        if o.upperdir.is_some() != o.workdir.is_some() {
            return Err(SetupError::MissingOption(if o.upperdir.is_some() {
                "workdir= (upperdir= needs it)"
            } else {
                "upperdir= (workdir= needs it)"
            }));
        }
        if o.lowerdirs.is_empty() {
            return Err(SetupError::MissingOption("lowerdir="));
        }
        if o.upperdir.is_none() {
            o.read_only = true;
        }
        if o.diff_view && o.upperdir.is_some() {
            return Err(SetupError::BadOption {
                option: "view=diff".into(),
                why: "a diff view is read-only: give its layers as lowerdir= and no upperdir="
                    .into(),
            });
        }
        Ok(o)
    }

    fn apply(&mut self, item: &str) -> Result<(), SetupError> {
        let bad = |why: &str| SetupError::BadOption {
            option: item.to_string(),
            why: why.to_string(),
        };
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        match (key, value) {
            ("lowerdir", Some(v)) => {
                self.lowerdirs = split_lowerdir(v);
                if self.lowerdirs.is_empty() {
                    return Err(bad("no directory given"));
                }
            }
            ("upperdir", Some(v)) if !v.is_empty() => self.upperdir = Some(PathBuf::from(v)),
            ("workdir", Some(v)) if !v.is_empty() => self.workdir = Some(PathBuf::from(v)),
            ("upperdir" | "workdir" | "lowerdir", _) => return Err(bad("needs a directory")),
            ("volatile", None) => self.volatile = true,
            ("fsync", Some("0")) => self.volatile = true,
            ("fsync", Some("1")) => self.volatile = false,
            ("fsync", _) => return Err(bad("expected fsync=0 or fsync=1")),
            ("uidmapping", Some(v)) => self.uid_map = IdMap::parse(v).map_err(|w| bad(&w))?,
            ("gidmapping", Some(v)) => self.gid_map = IdMap::parse(v).map_err(|w| bad(&w))?,
            ("squash_to_root", None) => {
                self.squash_uid = Some(0);
                self.squash_gid = Some(0);
            }
            ("squash_to_uid", Some(v)) => self.squash_uid = Some(parse_id(v).map_err(|w| bad(&w))?),
            ("squash_to_gid", Some(v)) => self.squash_gid = Some(parse_id(v).map_err(|w| bad(&w))?),
            ("xattr_permissions", Some(v)) => {
                self.xattr_permissions = match v {
                    "0" => 0,
                    "1" => 1,
                    "2" => 2,
                    _ => return Err(bad("expected 0, 1 or 2")),
                }
            }
            ("redirect_dir", Some("off")) => {}
            ("redirect_dir", _) => return Err(bad("only redirect_dir=off is supported")),
            ("whiteout", Some("wh" | "aufs")) => self.force_wh_whiteouts = true,
            ("whiteout", Some("char" | "kernel")) => self.force_wh_whiteouts = false,
            ("whiteout", _) => return Err(bad("expected whiteout=char or whiteout=wh")),
            ("provenance", Some("on" | "1")) => self.provenance = true,
            ("provenance", Some("off" | "0")) => self.provenance = false,
            ("provenance", _) => return Err(bad("expected provenance=on or provenance=off")),
            ("metacopy", Some("on" | "1")) => self.metacopy = true,
            ("metacopy", Some("off" | "0")) => self.metacopy = false,
            ("metacopy", _) => return Err(bad("expected metacopy=on or metacopy=off")),
            ("passthrough", Some("on" | "1")) => self.passthrough = true,
            ("passthrough", Some("off" | "0")) => self.passthrough = false,
            ("passthrough", _) => return Err(bad("expected passthrough=on or passthrough=off")),
            ("max_inodes", Some(v)) => {
                self.max_inodes = match v.parse::<usize>() {
                    Ok(n) if n == 0 || n >= 64 => n,
                    _ => return Err(bad("expected max_inodes=0 (no bound) or a number >= 64")),
                }
            }
            ("view", Some("diff")) => self.diff_view = true,
            ("view", Some("union")) => self.diff_view = false,
            ("view", _) => return Err(bad("expected view=diff or view=union")),
            ("ro", None) => {
                self.read_only = true;
                self.fuse_words.push("ro".into());
            }
            (w, None) if FUSE_WORDS.contains(&w) => self.fuse_words.push(w.to_string()),
            (k, _) if IGNORED_KEYS.contains(&k) => {}
            ("max_write" | "max_read", Some(_)) => {}
            _ => self
                .warnings
                .push(format!("unknown argument ignored: {item}")),
        }
        Ok(())
    }
}

fn parse_id(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| format!("{v:?} is not a numeric id"))
}

/// Splits one `-o` value on commas, keeping commas inside double quotes
/// (`context="system_u:object_r:container_file_t:s0:c1,c2"`), dropping empty elements.
pub fn split_options(s: &str) -> Result<Vec<String>, SetupError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if quoted {
        return Err(SetupError::BadOption {
            option: s.to_string(),
            why: "unterminated double quote".into(),
        });
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Splits `lowerdir=` on `:`, where `\:` is a literal colon (fuse-overlayfs 1.15) and `\\` a
/// backslash. Empty elements (and the `::` data-only marker, which strata treats as a plain
/// separator) are dropped.
pub fn split_lowerdir(v: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut bytes = v.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(n) => cur.push(n),
                None => cur.push(b'\\'),
            },
            b':' => {
                if !cur.is_empty() {
                    out.push(PathBuf::from(OsString::from_vec(std::mem::take(&mut cur))));
                }
            }
            _ => cur.push(b),
        }
    }
    if !cur.is_empty() {
        out.push(PathBuf::from(OsString::from_vec(cur)));
    }
    out
}

/// The command line of `strata-overlay` (and `strata mount -o`), as fuse-overlayfs reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invocation {
    /// Every `-o` value, in order.
    pub option_groups: Vec<String>,
    /// The mountpoint (the last non-option argument).
    pub mountpoint: Option<PathBuf>,
    /// `-f`: stay in the foreground.
    pub foreground: bool,
    /// `-d`: debug logging (implies foreground, as with libfuse).
    pub debug: bool,
    /// `--version` / `-V`.
    pub version: bool,
    /// `--help` / `-h`.
    pub help: bool,
}

impl Invocation {
    /// Parses argv without the program name. `-o X`, `-oX`, `-f`, `-d`, `--version`; the last
    /// non-option argument is the mountpoint, so `mount.fuse3`'s `prog SOURCE MP -o …` works too.
    pub fn parse<I: IntoIterator<Item = OsString>>(args: I) -> Result<Self, SetupError> {
        let mut inv = Invocation::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let s = arg.to_string_lossy();
            match s.as_ref() {
                "-o" => {
                    let v = it.next().ok_or(SetupError::BadOption {
                        option: "-o".into(),
                        why: "needs a value".into(),
                    })?;
                    inv.option_groups.push(v.to_string_lossy().into_owned());
                }
                "-f" => inv.foreground = true,
                "-d" | "--debug" => {
                    inv.debug = true;
                    inv.foreground = true;
                }
                "-s" => {}
                "--version" | "-V" => inv.version = true,
                "--help" | "-h" => inv.help = true,
                x if x.starts_with("-o") => inv.option_groups.push(x[2..].to_string()),
                x if x.starts_with('-') && x.len() > 1 => {
                    return Err(SetupError::BadOption {
                        option: x.to_string(),
                        why: "unknown flag".into(),
                    })
                }
                _ => inv.mountpoint = Some(PathBuf::from(arg)),
            }
        }
        Ok(inv)
    }
}

/// One contiguous id range, exposed for callers that build options programmatically.
pub type Range = IdRange;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> MountOptions {
        MountOptions::parse(&[s]).unwrap()
    }

    #[test]
    fn containers_storage_options() {
        let o = parse("lowerdir=/l/A:/l/B,upperdir=/u,workdir=/w,,volatile,context=\"system_u:object_r:container_file_t:s0:c1,c2\",uidmapping=:0:100000:65536,gidmapping=:0:100000:65536");
        assert_eq!(
            o.lowerdirs,
            vec![PathBuf::from("/l/A"), PathBuf::from("/l/B")]
        );
        assert_eq!(o.upperdir, Some(PathBuf::from("/u")));
        assert!(o.volatile);
        assert_eq!(o.uid_map.to_host(5), Some(100005));
        assert_eq!(o.gid_map.to_container(100000), Some(0));
        assert!(o.warnings.is_empty(), "{:?}", o.warnings);
        assert!(!o.read_only);
    }

    #[test]
    fn escaped_colon_and_empty_elements() {
        assert_eq!(
            split_lowerdir(r"/a\:b::/c:"),
            vec![PathBuf::from("/a:b"), PathBuf::from("/c")]
        );
        assert_eq!(split_options(",,a,,b,").unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn no_upper_is_read_only_and_words_pass_through() {
        let o = parse("lowerdir=/a,allow_other,noatime,frobnicate");
        assert!(o.read_only);
        assert_eq!(o.fuse_words, vec!["allow_other", "noatime"]);
        assert_eq!(o.warnings, vec!["unknown argument ignored: frobnicate"]);
    }

    #[test]
    fn squash_and_xattr_permissions() {
        let o = parse("lowerdir=/a,squash_to_uid=7,squash_to_gid=8,xattr_permissions=2");
        assert_eq!(
            (o.squash_uid, o.squash_gid, o.xattr_permissions),
            (Some(7), Some(8), 2)
        );
        assert_eq!(parse("lowerdir=/a").max_inodes, DEFAULT_MAX_INODES);
        assert_eq!(parse("lowerdir=/a,max_inodes=0").max_inodes, 0);
        assert_eq!(parse("lowerdir=/a,max_inodes=5000").max_inodes, 5000);
        let o = parse("lowerdir=/a,squash_to_root");
        assert_eq!((o.squash_uid, o.squash_gid), (Some(0), Some(0)));
    }

    #[test]
    fn bad_values_are_errors_that_name_the_option() {
        for bad in [
            "lowerdir=/a,xattr_permissions=9",
            "lowerdir=/a,squash_to_uid=x",
            "lowerdir=/a,uidmapping=0:1",
            "lowerdir=/a,upperdir=/u",
            "upperdir=/u,workdir=/w",
            "lowerdir=/a,redirect_dir=on",
            "lowerdir=/a,context=\"x",
            "lowerdir=/a,max_inodes=10",
            "lowerdir=/a,max_inodes=lots",
        ] {
            let e = MountOptions::parse(&[bad]).unwrap_err().to_string();
            assert!(!e.is_empty(), "{bad}");
        }
        let e = MountOptions::parse(&["lowerdir=/a,xattr_permissions=9"]).unwrap_err();
        assert!(e.to_string().contains("xattr_permissions=9"), "{e}");
    }

    #[test]
    fn argv_forms() {
        let inv = Invocation::parse(
            [
                "-o",
                "lowerdir=/a",
                "-oupperdir=/u,workdir=/w",
                "-f",
                "/mnt",
            ]
            .map(OsString::from),
        )
        .unwrap();
        assert_eq!(
            inv.option_groups,
            vec!["lowerdir=/a", "upperdir=/u,workdir=/w"]
        );
        assert_eq!(inv.mountpoint, Some(PathBuf::from("/mnt")));
        assert!(inv.foreground);
        // mount.fuse3 style: SOURCE MP -o OPTS
        let inv =
            Invocation::parse(["src", "/mnt", "-o", "lowerdir=/a"].map(OsString::from)).unwrap();
        assert_eq!(inv.mountpoint, Some(PathBuf::from("/mnt")));
        assert!(
            Invocation::parse(["--version"].map(OsString::from))
                .unwrap()
                .version
        );
    }
}
