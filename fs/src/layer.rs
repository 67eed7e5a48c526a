//! The layer stack: every layer directory opened once, at mount time, as an fd.
//!
//! After [`LayerStack::open`] the daemon never resolves a layer by its path string again, which
//! also survives containers-storage detaching the idmapped lowerdir mounts right after the mount
//! program returns (reference/mount-program.md §1.2c).
//!
//! Lower layers are opened, where the kernel allows it, as private detached clones of their
//! mount (`open_tree(OPEN_TREE_CLONE)`) made read-only and noatime with `mount_setattr`, as
//! kernel overlayfs does with its lower mounts. The kernel then enforces invariant 1 (lower
//! layers are never modified, not even their atime). Where it refuses (a plain user without a
//! user namespace), lowers are opened normally and files are read with O_NOATIME.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::OpenTreeFlags;

use crate::error::SetupError;
use crate::options::MountOptions;
use crate::sys;
use crate::whiteout::Format;

/// Index of a layer in [`LayerStack::layers`]; the upper, when present, is 0.
pub type LayerId = u16;

/// One layer directory.
#[derive(Debug)]
pub struct Layer {
    /// The path given at mount time (for messages and provenance only).
    pub path: PathBuf,
    /// The layer's root, an `O_PATH` directory fd.
    pub root: OwnedFd,
    /// `st_dev` of the root.
    pub dev: u64,
    /// High bits that make inode numbers unique across filesystems (xino-style). 0 when every
    /// layer is on one filesystem, so inode numbers are the real ones.
    pub ino_tag: u64,
    /// True for the upper layer.
    pub upper: bool,
    /// True when the kernel itself keeps this layer read-only and noatime (private clone).
    pub kernel_ro: bool,
    /// `sha256:HEX` when the directory is a layer of a strata store (`…/layers/<diff_id hex>`):
    /// provenance then names the layer by its digest, not only by its position.
    pub digest: Option<String>,
}

/// The digest of a store layer directory, from its path (`…/layers/<64 hex>`).
pub fn store_digest(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let parent = path.parent()?.file_name()?;
    let hex = name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    (hex && parent == "layers").then(|| format!("sha256:{name}"))
}

/// All layers of a mount, plus the work directory.
#[derive(Debug)]
pub struct LayerStack {
    /// Upper first (if any), then the lowers, topmost first.
    pub layers: Vec<Layer>,
    /// `workdir/work`, where copy-ups and new directories are prepared.
    pub work: Option<OwnedFd>,
    /// Namespace for the xattrs strata writes: `trusted.overlay.` as real root, else
    /// `user.overlay.` (what kernel overlayfs uses with `userxattr`).
    pub xattr_prefix: &'static str,
    /// How whiteouts are written.
    pub whiteout: Format,
    /// Filesystems met inside a layer that no layer root is on, in the order first seen
    /// (see [`LayerStack::ino_tag`]).
    inner_devs: parking_lot::Mutex<Vec<u64>>,
}

/// Bits of an inode number left for the real inode when layers span filesystems.
pub const INO_BITS: u32 = 48;

impl LayerStack {
    /// Opens and checks every layer named in `opts`. Each failure names the directory and why.
    pub fn open(opts: &MountOptions) -> Result<Self, SetupError> {
        let mut seen: Vec<(&'static str, PathBuf, u64, u64)> = Vec::new();
        let mut layers = Vec::new();
        if let Some(up) = &opts.upperdir {
            let (root, dev, ino) = open_dir("upperdir", up, false)?;
            check_writable("upperdir", up)?;
            seen.push(("upperdir", up.clone(), dev, ino));
            layers.push(Layer {
                path: up.clone(),
                root,
                dev,
                ino_tag: 0,
                upper: true,
                kernel_ro: false,
                digest: None,
            });
        }
        for low in &opts.lowerdirs {
            let (root, dev, ino) = open_dir("lowerdir", low, true)?;
            seen.push(("lowerdir", low.clone(), dev, ino));
            let kernel_ro = is_private_clone(&root);
            layers.push(Layer {
                path: low.clone(),
                root,
                dev,
                ino_tag: 0,
                upper: false,
                kernel_ro,
                digest: store_digest(low),
            });
        }
        let mut work = None;
        if let Some(w) = &opts.workdir {
            let (wfd, dev, ino) = open_dir("workdir", w, false)?;
            check_writable("workdir", w)?;
            if dev != layers[0].dev {
                return Err(SetupError::Overlap {
                    a_role: "workdir",
                    a: w.clone(),
                    b_role: "upperdir",
                    b: layers[0].path.clone(),
                    why: "must be on the same filesystem (copy-up renames from one to the other)",
                });
            }
            seen.push(("workdir", w.clone(), dev, ino));
            work = Some(prepare_work(w, &wfd)?);
        }
        check_overlaps(&seen)?;
        assign_ino_tags(&mut layers);

        let (xattr_prefix, whiteout) = match &work {
            Some(w) => (
                probe_xattr_prefix(w),
                probe_whiteout(w, opts.force_wh_whiteouts),
            ),
            None => ("user.overlay.", Format::Kernel),
        };
        Ok(LayerStack {
            layers,
            work,
            xattr_prefix,
            whiteout,
            inner_devs: Default::default(),
        })
    }

    /// The high bits that tell apart the inode numbers of device `dev`, met in layer `l`: the
    /// layer's own tag, or, for a filesystem mounted inside a layer (a lower opened without
    /// a private clone, which would leave submounts out, as overlayfs's does), a tag of its
    /// own, as overlayfs `xino` gives each filesystem one. Such tags follow the order the
    /// mount first meets the filesystems in, so its files' inode numbers may differ across
    /// mounts; without them they would collide with the layer's.
    pub fn ino_tag(&self, l: LayerId, dev: u64) -> u64 {
        let layer = &self.layers[l as usize];
        if dev == layer.dev {
            return layer.ino_tag;
        }
        if let Some(other) = self.layers.iter().find(|x| x.dev == dev) {
            return other.ino_tag;
        }
        let base = self
            .layers
            .iter()
            .map(|x| x.ino_tag >> INO_BITS)
            .max()
            .unwrap_or(0)
            + 1;
        let mut inner = self.inner_devs.lock();
        let i = match inner.iter().position(|d| *d == dev) {
            Some(i) => i,
            None => {
                inner.push(dev);
                inner.len() - 1
            }
        };
        (base + i as u64) << INO_BITS
    }

    /// True when the mount has an upper layer.
    pub fn has_upper(&self) -> bool {
        self.layers.first().is_some_and(|l| l.upper)
    }

    /// Every layer id, top first.
    pub fn all(&self) -> Vec<LayerId> {
        (0..self.layers.len() as LayerId).collect()
    }

    /// The name users see for layer `l`: `upper`, or its position counted from the base
    /// (1 = the bottom lower, as `strata mount --layer N` counts).
    pub fn number(&self, l: LayerId) -> Option<usize> {
        let layer = self.layers.get(l as usize)?;
        if layer.upper {
            return None;
        }
        Some(self.layers.len() - l as usize)
    }

    /// `upper`, `N`, or `N sha256:HEX` for layer `l` (the value of `user.strata.layer`).
    pub fn label(&self, l: LayerId) -> String {
        match (self.number(l), &self.layers[l as usize].digest) {
            (None, _) => "upper".into(),
            (Some(n), Some(d)) => format!("{n} {d}"),
            (Some(n), None) => n.to_string(),
        }
    }
}

/// Opens `path` as a directory: a private read-only noatime clone for lowers where possible.
fn open_dir(
    role: &'static str,
    path: &Path,
    lower: bool,
) -> Result<(OwnedFd, u64, u64), SetupError> {
    let err = |why: String| SetupError::Layer {
        role,
        path: path.to_path_buf(),
        why,
    };
    let md = crate::error::require_dir(path).map_err(err)?;
    // Opening for reading proves the daemon can list it; an O_PATH fd alone would not.
    rfs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(format!("cannot be read: {e}")))?;
    let fd = if lower {
        clone_read_only(path).or_else(|_| {
            rfs::open(
                path,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })
    } else {
        rfs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
    }
    .map_err(|e| err(format!("cannot be opened: {e}")))?;
    Ok((fd, md.dev(), md.ino()))
}

/// A private, detached, read-only, noatime clone of the mount at `path`.
fn clone_read_only(path: &Path) -> rustix::io::Result<OwnedFd> {
    let fd = rustix::mount::open_tree(
        rfs::CWD,
        path,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )?;
    sys::mount_setattr(fd.as_fd(), sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOATIME)
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::PERM))?;
    Ok(fd)
}

/// True when `fd` is on a read-only mount (our private clone).
fn is_private_clone(fd: &OwnedFd) -> bool {
    rfs::fstatvfs(fd).is_ok_and(|s| s.f_flag.contains(rfs::StatVfsMountFlags::RDONLY))
}

fn check_writable(role: &'static str, path: &Path) -> Result<(), SetupError> {
    rfs::access(path, rfs::Access::WRITE_OK | rfs::Access::EXEC_OK).map_err(|e| {
        SetupError::Layer {
            role,
            path: path.to_path_buf(),
            why: format!("is not writable: {e}"),
        }
    })?;
    let ro = rfs::statvfs(path).is_ok_and(|s| s.f_flag.contains(rfs::StatVfsMountFlags::RDONLY));
    if ro {
        return Err(SetupError::Layer {
            role,
            path: path.to_path_buf(),
            why: "is on a read-only filesystem".into(),
        });
    }
    Ok(())
}

/// Refuses the same directory twice, and one layer directory inside another.
fn check_overlaps(seen: &[(&'static str, PathBuf, u64, u64)]) -> Result<(), SetupError> {
    for (i, a) in seen.iter().enumerate() {
        for b in &seen[i + 1..] {
            if (a.2, a.3) == (b.2, b.3) {
                return Err(SetupError::Overlap {
                    a_role: a.0,
                    a: a.1.clone(),
                    b_role: b.0,
                    b: b.1.clone(),
                    why: "are the same directory",
                });
            }
        }
    }
    // A writable dir inside any other layer (or a layer inside a writable dir) would let the
    // union see its own writes through a lower, or copy-up into itself.
    for a in seen.iter().filter(|s| s.0 != "lowerdir") {
        for b in seen.iter().filter(|b| (b.2, b.3) != (a.2, a.3)) {
            if is_inside(&a.1, b.2, b.3) {
                return Err(SetupError::Overlap {
                    a_role: a.0,
                    a: a.1.clone(),
                    b_role: b.0,
                    b: b.1.clone(),
                    why: "the first is inside the second",
                });
            }
            if is_inside(&b.1, a.2, a.3) {
                return Err(SetupError::Overlap {
                    a_role: b.0,
                    a: b.1.clone(),
                    b_role: a.0,
                    b: a.1.clone(),
                    why: "the first is inside the second",
                });
            }
        }
    }
    Ok(())
}

/// True when some proper ancestor of `path` (after resolving it) is the directory (dev, ino).
fn is_inside(path: &Path, dev: u64, ino: u64) -> bool {
    let Ok(mut p) = std::fs::canonicalize(path) else {
        return false;
    };
    while p.pop() {
        if let Ok(md) = std::fs::metadata(&p) {
            if (md.dev(), md.ino()) == (dev, ino) {
                return true;
            }
        }
    }
    false
}

/// Layers on the first filesystem keep their real inode numbers; each further filesystem gets
/// its own tag in the high bits, as overlayfs `xino` does.
fn assign_ino_tags(layers: &mut [Layer]) {
    let mut devs: Vec<u64> = Vec::new();
    for l in layers.iter_mut() {
        let idx = match devs.iter().position(|d| *d == l.dev) {
            Some(i) => i,
            None => {
                devs.push(l.dev);
                devs.len() - 1
            }
        };
        l.ino_tag = (idx as u64) << INO_BITS;
    }
}

/// Opens `workdir/work`, creating it, and removes what a crash left there: temp files of
/// interrupted copy-ups never reached their real name (invariant 3), so they are garbage.
fn prepare_work(path: &Path, wfd: &OwnedFd) -> Result<OwnedFd, SetupError> {
    let err = |why: String| SetupError::Layer {
        role: "workdir",
        path: path.to_path_buf(),
        why,
    };
    match rfs::mkdirat(wfd, "work", Mode::from_raw_mode(0o700)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(err(format!("cannot create work/: {e}"))),
    }
    let work = rfs::openat(
        wfd,
        "work",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(format!("cannot open work/: {e}")))?;
    crate::tree::clear_dir(&work).map_err(|e| err(format!("cannot clean work/: {e}")))?;
    Ok(work)
}

/// `trusted.overlay.` when the daemon may write trusted xattrs (real root), else `user.overlay.`.
fn probe_xattr_prefix(work: &OwnedFd) -> &'static str {
    let probe = "trusted.overlay.strata-probe";
    match rfs::fsetxattr(work, probe, b"1", rfs::XattrFlags::empty()) {
        Ok(()) => {
            let _ = rfs::fremovexattr(work, probe);
            "trusted.overlay."
        }
        Err(_) => "user.overlay.",
    }
}

/// Char 0/0 whiteouts where mknod of one works in the work dir (root, or a user namespace on
/// Linux ≥ 5.8), else `.wh.` files; `force_wh` picks `.wh.` regardless, as does the
/// fuse-overlayfs environment variable `FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT`.
fn probe_whiteout(work: &OwnedFd, force_wh: bool) -> Format {
    if force_wh || std::env::var_os("FUSE_OVERLAYFS_DISABLE_OVL_WHITEOUT").is_some() {
        return Format::Aufs;
    }
    let name = "#strata-whiteout-probe";
    let _ = rfs::unlinkat(work, name, AtFlags::empty());
    match rfs::mknodat(work, name, rfs::FileType::CharacterDevice, Mode::empty(), 0) {
        Ok(()) => {
            let _ = rfs::unlinkat(work, name, AtFlags::empty());
            Format::Kernel
        }
        Err(_) => Format::Aufs,
    }
}
