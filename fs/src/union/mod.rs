//! The union as a plain API: operations over (inode, handle, name bytes) → `Result<_, Error>`,
//! testable without FUSE. `fuse.rs` only translates to and from the kernel protocol.
//!
//! Nodes record where they are in the union (parent inode + name) and which layers supply them;
//! a layer object is reached by opening its parent directory in that layer with `openat2`
//! (`RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS`) and then using `*at` calls with `AT_SYMLINK_NOFOLLOW`
//! on the last name (invariant 2). No fd is kept per node, so a walk of a million files does not
//! run into RLIMIT_NOFILE (fuse-overlayfs #210, #378).

mod acl;
mod attr;
mod dir;
mod dirfds;
mod discard;
mod file;
mod links;
mod listing;
mod override_stat;
mod provenance;
mod prune;
mod rename;
mod resolve;
mod xattr;

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

pub use attr::{setid_bits, Attr, SetAttr};
pub use dir::NewKind;
pub use listing::{DirEntry, DirStream, Listing};
pub use provenance::{Change, DiffCounts, Provenance, State, VIRTUAL_PREFIX};
pub use prune::PruneHook;
pub(crate) use resolve::{METACOPY_MIN, METACOPY_XATTRS};

use crate::error::{Error, Op, Result};
use crate::idmap::IdMap;
use crate::layer::{LayerId, LayerStack, INO_BITS};
use crate::whiteout;

/// A union inode number. It is also the FUSE node id, so `st_ino`, `d_ino` and the node id agree.
pub type Ino = u64;
/// The root's inode number (`FUSE_ROOT_ID`).
pub const ROOT: Ino = 1;
/// The upper layer's id when there is one.
pub(crate) const UPPER: LayerId = 0;
/// NAME_MAX of every Linux filesystem strata sits on.
pub const NAME_MAX: usize = 255;

/// Who asks: the caller's fsuid/fsgid as the kernel sends them, and the umask.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctx {
    /// Caller uid (in the mount's user namespace).
    pub uid: u32,
    /// Caller gid.
    pub gid: u32,
}

/// Behaviour switches of a union.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Skip fsync (`volatile`).
    pub volatile: bool,
    /// Container ↔ host uids.
    pub uid_map: IdMap,
    /// Container ↔ host gids.
    pub gid_map: IdMap,
    /// Show every file as owned by this uid.
    pub squash_uid: Option<u32>,
    /// Show every file as owned by this gid.
    pub squash_gid: Option<u32>,
    /// `xattr_permissions=`: 0 off; 1 keeps owner and mode overrides in
    /// `security.fuseoverlayfs.override_stat`; 2 in `user.containers.override_stat` (what
    /// containers-storage's `force_mask` writes).
    pub xattr_permissions: u8,
    /// A diff view (`view=diff`): layer 0 is one layer's changeset, shown alone, with its
    /// deletions as character devices 0/0; the layers below are consulted only to classify
    /// and to list what an opaque directory hides. Nothing is cached (TTL 0), because the
    /// changeset may be the live upper of another mount.
    pub diff: bool,
    /// Answer the `user.strata.*` provenance xattrs (`provenance=off` turns them off, which
    /// also lets the benchmark show that they cost nothing when nobody reads them).
    pub provenance: bool,
    /// `metacopy=on`: chmod, chown, utimes and xattr changes of a lower regular file copy up
    /// its metadata only: an upper file of the right size with no data, marked with the
    /// private xattr `strata.metacopy`, whose data stays in the lower file at the same path
    /// until the first write or truncate copies it (kernel overlayfs `metacopy=on`,
    /// Documentation/filesystems/overlayfs.rst). Off by default: other readers of the upper
    /// (kernel overlayfs, fuse-overlayfs, containers-storage's diff) do not know the mark.
    /// The mark is honoured whatever this option says.
    pub metacopy: bool,
    /// Most nodes kept before the least recently used are offered back to the kernel
    /// (`max_inodes=`; 0: no bound). See `prune.rs`.
    pub max_nodes: usize,
}

/// Where a node is and what supplies it.
#[derive(Debug, Clone)]
pub(crate) struct NodeState {
    /// Parent inode in the union (the root is its own parent).
    pub parent: Ino,
    /// Name in the parent.
    pub name: OsString,
    /// Layers that supply the object, top first. One entry for non-directories; for a merged
    /// directory every layer that holds it, cut at an opaque one.
    pub layers: Vec<LayerId>,
    /// File type.
    pub kind: FileType,
    /// Removed from the union while the kernel still holds it.
    pub unlinked: bool,
    /// A metacopy upper file (see `Config::metacopy`): the lower layer that holds its data.
    pub data: Option<LayerId>,
}

/// One inode of the union.
#[derive(Debug)]
pub(crate) struct Node {
    pub ino: Ino,
    /// The kernel's lookup count; the node is dropped at 0 (FORGET).
    pub lookups: AtomicU64,
    pub st: RwLock<NodeState>,
    /// Held while this node is copied up: copy-up locks only the inode it copies.
    pub copy_lock: Mutex<()>,
    /// Cached merged listing (directories).
    pub listing: Mutex<Option<Arc<Listing>>>,
    /// Bumped by every change of the directory: a listing built across a change is stored
    /// stale, so the change is never lost (lookups trust a valid listing's negatives).
    pub listing_gen: AtomicU64,
    /// Serializes listing rebuilds, so two rebuilds cannot give one new name two slots.
    pub listing_build: Mutex<()>,
    /// `O_PATH` fds kept once the node is unlinked, so open fds and fstat keep working.
    pub pinned: Mutex<Option<Arc<Pinned>>>,
    /// The object's xattr names, once listed: `ls -l` asks for ACL and security xattrs of
    /// every file, and most have none. Exact, because lowers never change and the upper
    /// changes only through this daemon (dropped on setxattr, removexattr and copy-up).
    pub xattr_names: Mutex<Option<Arc<Vec<u8>>>>,
    /// The stat of a directory whose top layer is a lower one, taken at lookup. A lower
    /// never changes, and the kernel asks for a directory's attributes again after every
    /// uncached readdir (`fuse_invalidate_atime`, fs/fuse/readdir.c), so a walk's second
    /// pass would otherwise pay a path resolution per directory.
    /// Boxed: most nodes are files, and a `Stat` is 144 bytes.
    pub lower_dir_stat: Mutex<Option<Box<(LayerId, Stat)>>>,
    /// The pruning epoch of the node's last use (`prune.rs`).
    pub used: std::sync::atomic::AtomicU32,
}

impl Node {
    pub(crate) fn state(&self) -> NodeState {
        self.st.read().clone()
    }

    /// For a metacopy, its copy lock: a metadata change waits for a completion in progress,
    /// which copies the metadata it finds when it starts (it would land on the replaced
    /// file). None for any other node.
    pub(crate) fn metacopy_guard(&self) -> Option<parking_lot::MutexGuard<'_, ()>> {
        self.st.read().data.is_some().then(|| self.copy_lock.lock())
    }

    /// The pinned fds of a removed node; ENOENT (for step `op`) when there are none.
    pub(crate) fn pinned_fd(&self, op: &'static str) -> Result<Arc<Pinned>> {
        self.pinned
            .lock()
            .clone()
            .ok_or(Error::new(op, Errno::NOENT))
    }
}

/// What keeps a removed node's object reachable: an `O_PATH` fd on it, and for a metacopy
/// one on its data, the lower file (the object holds none). Derefs to the object's fd.
#[derive(Debug)]
pub struct Pinned {
    fd: OwnedFd,
    /// A metacopy's data file.
    pub data: Option<OwnedFd>,
}

impl std::ops::Deref for Pinned {
    type Target = OwnedFd;
    fn deref(&self) -> &OwnedFd {
        &self.fd
    }
}

impl AsFd for Pinned {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An open file.
#[derive(Debug)]
pub struct Handle {
    /// The backing fd.
    pub fd: OwnedFd,
    /// The node it belongs to.
    pub ino: Ino,
    /// The backing file is in the upper layer.
    pub upper: bool,
}

/// A lookup result from the layers: the top object's stat and the layers that supply it.
#[derive(Debug)]
pub(crate) struct Found {
    pub layers: Vec<LayerId>,
    pub st: Stat,
    /// The top layer's parent directory.
    pub dirfd: Arc<OwnedFd>,
    /// A metacopy upper file: the lower layer that holds its data.
    pub data: Option<LayerId>,
}

/// The hook that drops the kernel's cached attributes of an inode.
pub(crate) struct Invalidator(Box<dyn Fn(Ino) + Send + Sync>);

impl std::fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Invalidator")
    }
}

/// The union filesystem.
#[derive(Debug)]
pub struct Union {
    pub(crate) stack: LayerStack,
    pub(crate) cfg: Config,
    /// Shared with the pruning thread, which reads the nodes' last use.
    pub(crate) nodes: Arc<DashMap<Ino, Arc<Node>>>,
    pub(crate) handles: DashMap<u64, Arc<Handle>>,
    pub(crate) dir_handles: DashMap<u64, Arc<DirStream>>,
    next_fh: AtomicU64,
    tmp_seq: AtomicU64,
    /// Held shared while a path is turned into a directory fd, exclusively while a directory
    /// moves, so a path is never built from a half-renamed tree.
    pub(crate) tree: RwLock<()>,
    /// Directory fds recently reached, by (node, layer).
    pub(crate) dir_fds: dirfds::DirFds,
    /// Empties removed directories after the reply.
    pub(crate) discarder: discard::Discarder,
    /// Bumped when no listing may trust its top layers any more (see `Listing::layer_of`).
    pub(crate) hint_epoch: AtomicU64,
    /// Name of the private xattr that records a copied-up object's original inode number.
    pub(crate) origin_xattr: String,
    /// Marks a metacopy upper file (see `Config::metacopy`).
    pub(crate) metacopy_xattr: String,
    /// Per lower layer: inode → paths, for files with more than one link (built on demand).
    pub(crate) links: links::LinkIndex,
    /// Tells the kernel to drop its cached attributes of an inode (set by the FUSE adapter).
    pub(crate) invalidator: std::sync::OnceLock<Invalidator>,
    /// Serializes directory copy-ups (metadata only, fast).
    pub(crate) dir_copy_lock: Mutex<()>,
    /// Held while the shared whiteout in the work dir is replaced (see `make_whiteout`).
    pub(crate) whiteout_lock: Mutex<()>,
    /// Keeps the node table under `Config::max_nodes`.
    pruner: prune::Pruner,
}

impl Union {
    /// A union over `stack`.
    pub fn new(stack: LayerStack, cfg: Config) -> Result<Self> {
        let origin_xattr = format!("{}strata.origin", stack.xattr_prefix);
        let metacopy_xattr = format!("{}strata.metacopy", stack.xattr_prefix);
        let pruner = prune::Pruner::new(cfg.max_nodes);
        let u = Union {
            stack,
            cfg,
            nodes: Arc::new(DashMap::new()),
            handles: DashMap::new(),
            dir_handles: DashMap::new(),
            next_fh: AtomicU64::new(1),
            tmp_seq: AtomicU64::new(0),
            tree: RwLock::new(()),
            dir_fds: dirfds::DirFds::default(),
            discarder: discard::Discarder::default(),
            hint_epoch: AtomicU64::new(0),
            origin_xattr,
            metacopy_xattr,
            links: links::LinkIndex::default(),
            dir_copy_lock: Mutex::new(()),
            whiteout_lock: Mutex::new(()),
            invalidator: std::sync::OnceLock::new(),
            pruner,
        };
        let mut layers = Vec::new();
        for id in u.stack.all() {
            layers.push(id);
            if u.cfg.diff {
                break;
            }
            if id as usize + 1 < u.stack.layers.len() && u.is_opaque_root(id) {
                break;
            }
        }
        let root = Node {
            ino: ROOT,
            lookups: AtomicU64::new(1),
            st: RwLock::new(NodeState {
                parent: ROOT,
                name: OsString::new(),
                layers,
                kind: FileType::Directory,
                unlinked: false,
                data: None,
            }),
            copy_lock: Mutex::new(()),
            listing: Mutex::new(None),
            listing_gen: AtomicU64::new(0),
            listing_build: Mutex::new(()),
            pinned: Mutex::new(None),
            xattr_names: Mutex::new(None),
            lower_dir_stat: Mutex::new(None),
            used: Default::default(),
        };
        u.nodes.insert(ROOT, Arc::new(root));
        u.pruner.added(&u.nodes);
        Ok(u)
    }

    /// Installs the hook that drops the kernel's cached attributes of an inode. The daemon
    /// changes an attribute behind the kernel's back only in copy-up (a parent's ctime).
    pub fn set_invalidator(&self, f: Box<dyn Fn(Ino) + Send + Sync>) {
        let _ = self.invalidator.set(Invalidator(f));
    }

    /// Installs the hook that asks the kernel to let go of inodes (FUSE_NOTIFY_PRUNE); without
    /// it the node table is not bounded.
    pub fn set_pruner(&self, f: Box<PruneHook>) {
        self.pruner.set_hook(f);
    }

    pub(crate) fn invalidate_attr(&self, ino: Ino) {
        if let Some(f) = self.invalidator.get() {
            (f.0)(ino);
        }
    }

    /// True for a diff view (`view=diff`).
    pub fn is_diff_view(&self) -> bool {
        self.cfg.diff
    }

    /// The layer stack.
    pub fn stack(&self) -> &LayerStack {
        &self.stack
    }

    /// Number of live nodes (for memory checks).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn node(&self, ino: Ino) -> Result<Arc<Node>> {
        let n = self
            .nodes
            .get(&ino)
            .map(|n| n.clone())
            .ok_or(Error::new("unknown inode", Errno::STALE))?;
        self.touch(&n);
        Ok(n)
    }

    /// Records a use of `n` for the pruning order (a store only when the epoch moved).
    fn touch(&self, n: &Node) {
        let e = self.pruner.epoch();
        if n.used.load(Ordering::Relaxed) != e {
            n.used.store(e, Ordering::Relaxed);
        }
    }

    pub(crate) fn has_upper(&self) -> bool {
        self.stack.has_upper()
    }

    pub(crate) fn is_upper(&self, l: LayerId) -> bool {
        l == UPPER && self.has_upper()
    }

    /// The union path of `ino` relative to the layer roots (`.` for the root). Caller holds
    /// `self.tree` shared.
    pub(crate) fn rel_path(&self, ino: Ino) -> Result<Vec<u8>> {
        let mut parts: Vec<OsString> = Vec::new();
        let mut cur = ino;
        while cur != ROOT {
            let n = self.node(cur)?;
            let st = n.st.read();
            if st.unlinked {
                return Err(Error::new("path of removed node", Errno::NOENT));
            }
            parts.push(st.name.clone());
            cur = st.parent;
            if parts.len() > 4096 {
                return Err(Error::new("path", Errno::LOOP));
            }
        }
        if parts.is_empty() {
            return Ok(b".".to_vec());
        }
        let mut out = Vec::new();
        for p in parts.iter().rev() {
            if !out.is_empty() {
                out.push(b'/');
            }
            out.extend_from_slice(p.as_bytes());
        }
        Ok(out)
    }

    /// Opens directory `rel` of layer `l` without following any symlink (invariant 2).
    pub(crate) fn open_rel(&self, l: LayerId, rel: &[u8], flags: OFlags) -> Result<OwnedFd> {
        let layer = &self.stack.layers[l as usize];
        let mut fl = flags | OFlags::DIRECTORY | OFlags::CLOEXEC;
        if !fl.contains(OFlags::PATH) && !layer.upper && !layer.kernel_ro {
            fl |= OFlags::NOATIME;
        }
        let r = rfs::openat2(
            &layer.root,
            OsStr::from_bytes(rel),
            fl,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        );
        match r {
            // O_NOATIME needs ownership or CAP_FOWNER; without it, read anyway.
            Err(Errno::PERM) if fl.contains(OFlags::NOATIME) => rfs::openat2(
                &layer.root,
                OsStr::from_bytes(rel),
                fl - OFlags::NOATIME,
                Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
            ),
            // ELOOP means a symlink where a directory should be: to the union, nothing there.
            Err(Errno::LOOP) => Err(Errno::NOENT),
            r => r,
        }
        .op("open layer directory")
    }

    /// Opens directory node `ino` itself in layer `l` (`O_PATH`).
    pub(crate) fn dir_fd(&self, ino: Ino, l: LayerId) -> Result<Arc<OwnedFd>> {
        // A diff view may show another mount's upper, which changes under it: no cache.
        let cache = !self.cfg.diff;
        if cache {
            if let Some(fd) = self.dir_fds.get(ino, l) {
                return Ok(fd);
            }
        }
        // Held until the fd is stored, so a rename or rmdir (which clear the cache under the
        // write lock) cannot slip in between the path walk and the store.
        let _g = self.tree.read();
        let rel = self.rel_path(ino)?;
        let fd = match self.open_rel(l, &rel, OFlags::PATH) {
            // Out of fds (the process holds the user's open files too): give back ours.
            Err(e) if cache && matches!(e.errno, Errno::MFILE | Errno::NFILE) => {
                self.dir_fds.clear();
                self.open_rel(l, &rel, OFlags::PATH)?
            }
            r => r?,
        };
        let fd = Arc::new(fd);
        if cache {
            self.dir_fds.insert(ino, l, fd.clone());
        }
        Ok(fd)
    }

    /// Opens directory node `ino` in layer `l` for reading its entries.
    pub(crate) fn dir_fd_read(&self, ino: Ino, l: LayerId) -> Result<OwnedFd> {
        let _g = self.tree.read();
        let rel = self.rel_path(ino)?;
        self.open_rel(l, &rel, OFlags::RDONLY)
    }

    /// The directory that holds node `st` in layer `l`, and the node's name in it.
    /// For the root, the layer root itself and `"."`.
    pub(crate) fn parent_fd(&self, st: &NodeState, l: LayerId) -> Result<Arc<OwnedFd>> {
        self.dir_fd(st.parent, l)
    }

    /// `/proc/self/fd/DIRFD/NAME`: a path for the calls that have no `*at` form (xattrs,
    /// chmod). The directory is reached through its fd, and the last name is used with the
    /// `l*` variants (or after an `O_NOFOLLOW` open), so no symlink is followed.
    pub(crate) fn proc_path(dirfd: &impl AsFd, name: &OsStr) -> Vec<u8> {
        let mut p = format!("/proc/self/fd/{}", dirfd.as_fd().as_raw_fd()).into_bytes();
        if name.as_bytes() != b"." && !name.is_empty() {
            p.push(b'/');
            p.extend_from_slice(name.as_bytes());
        }
        p
    }

    /// A fresh temp name in the work dir.
    pub(crate) fn tmp_name(&self) -> OsString {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!("#strata-{}-{n}", std::process::id()))
    }

    pub(crate) fn work(&self) -> Result<&OwnedFd> {
        self.stack
            .work
            .as_ref()
            .ok_or(Error::new("read-only mount", Errno::ROFS))
    }

    pub(crate) fn next_fh(&self) -> u64 {
        self.next_fh.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn new_fh(&self, h: Handle) -> u64 {
        let fh = self.next_fh();
        self.handles.insert(fh, Arc::new(h));
        fh
    }

    /// The handle `fh`.
    pub fn handle(&self, fh: u64) -> Result<Arc<Handle>> {
        self.handles
            .get(&fh)
            .map(|h| h.clone())
            .ok_or(Error::new("unknown file handle", Errno::BADF))
    }

    /// Inode number of an object found in layer `l`: the origin recorded at copy-up for
    /// upper objects, else the real inode tagged with its filesystem.
    pub(crate) fn ino_of(&self, l: LayerId, st: &Stat, dirfd: &OwnedFd, name: &OsStr) -> Ino {
        if self.is_upper(l) {
            if let Some(o) = self.read_origin(dirfd, name) {
                return o;
            }
        }
        self.tagged(l, st.st_dev, st.st_ino)
    }

    /// Inode number `ino` of device `dev` in layer `l`, as the union shows it.
    pub(crate) fn tagged(&self, l: LayerId, dev: u64, ino: u64) -> Ino {
        let tag = self.stack.ino_tag(l, dev);
        let mask = (1u64 << INO_BITS) - 1;
        let low = if ino > mask {
            (ino ^ (ino >> INO_BITS)) & mask
        } else {
            ino
        };
        let v = tag | low;
        // 0 is not a valid node id and 1 is the root: never hand them out for other objects.
        if v <= ROOT {
            v | (1u64 << 63)
        } else {
            v
        }
    }

    pub(crate) fn read_origin(&self, dirfd: &OwnedFd, name: &OsStr) -> Option<Ino> {
        let p = Self::proc_path(dirfd, name);
        let mut buf = [0u8; 8];
        match rfs::lgetxattr(
            OsStr::from_bytes(&p),
            self.origin_xattr.as_str(),
            &mut buf[..],
        ) {
            Ok(8) => Some(u64::from_le_bytes(buf)),
            _ => None,
        }
    }

    /// Checks a name from the kernel: ENAMETOOLONG past NAME_MAX (for every call, stat
    /// included), and whiteout bookkeeping names are never visible.
    pub(crate) fn check_name(name: &OsStr) -> Result<()> {
        let b = name.as_bytes();
        if b.len() > NAME_MAX {
            return Err(Error::new("name", Errno::NAMETOOLONG));
        }
        if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') {
            return Err(Error::new("name", Errno::INVAL));
        }
        Ok(())
    }

    /// Looks `name` up in `parent`, counting one kernel reference on success.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> Result<Attr> {
        let f = self.resolve_child(parent, name, "lookup")?;
        let ino = self.ino_of(f.layers[0], &f.st, &f.dirfd, name);
        let node = self.remember(ino, parent, name, &f);
        let mut st = f.st;
        self.data_blocks(parent, name, f.data, &mut st);
        Ok(self.attr_of(&node, &st, f.layers.len()))
    }

    /// A metacopy holds no blocks; its data does, and `st` of it shows theirs (as kernel
    /// overlayfs does). `data`: the metacopy's data layer, None for any other object.
    pub(crate) fn data_blocks(
        &self,
        parent: Ino,
        name: &OsStr,
        data: Option<LayerId>,
        st: &mut Stat,
    ) {
        let Some(dl) = data else {
            return;
        };
        if let Ok(ls) = self
            .dir_fd(parent, dl)
            .and_then(|d| rfs::statat(&*d, name, AtFlags::SYMLINK_NOFOLLOW).op("stat data"))
        {
            st.st_blocks = ls.st_blocks;
        }
    }

    /// Resolves entry `name` of directory `parent` (for step `op`), with the checks every
    /// lookup makes: the name, whiteout bookkeeping, a directory as parent, and the negative
    /// answer of a valid cached listing.
    pub(crate) fn resolve_child(
        &self,
        parent: Ino,
        name: &OsStr,
        op: &'static str,
    ) -> Result<Found> {
        Self::check_name(name)?;
        if whiteout::is_reserved(name.as_bytes()) {
            return Err(Error::new(op, Errno::NOENT));
        }
        let p = self.node(parent)?;
        let pst = p.state();
        if pst.kind != FileType::Directory {
            return Err(Error::new(op, Errno::NOTDIR));
        }
        if let Some(l) = p.listing.lock().clone().filter(|l| l.is_valid()) {
            if !l.contains(name.as_bytes()) {
                return Err(Error::new(op, Errno::NOENT));
            }
        }
        self.resolve(parent, &pst, name)?
            .ok_or(Error::new(op, Errno::NOENT))
    }

    /// Records a node the kernel now references (one more lookup).
    pub(crate) fn remember(&self, ino: Ino, parent: Ino, name: &OsStr, f: &Found) -> Arc<Node> {
        let kind = FileType::from_raw_mode(f.st.st_mode);
        // A metacopy found before a concurrent completion must not come back as one: look
        // at the mark again (only for metacopies, which are few).
        let data = f.data.filter(|_| {
            rfs::statat(&*f.dirfd, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|s| self.is_metacopy(&f.dirfd, name, &s))
        });
        let fresh = || NodeState {
            parent,
            name: name.to_os_string(),
            layers: f.layers.clone(),
            kind,
            unlinked: false,
            data,
        };
        let mut added = false;
        let entry = self.nodes.entry(ino).or_insert_with(|| {
            added = true;
            Arc::new(Node {
                ino,
                lookups: AtomicU64::new(0),
                st: RwLock::new(fresh()),
                copy_lock: Mutex::new(()),
                listing: Mutex::new(None),
                listing_gen: AtomicU64::new(0),
                listing_build: Mutex::new(()),
                pinned: Mutex::new(None),
                xattr_names: Mutex::new(None),
                lower_dir_stat: Mutex::new(None),
                used: self.pruner.epoch().into(),
            })
        });
        // Counted while the table shard is locked, so a concurrent FORGET cannot drop the node
        // (closing its pin) between our taking it and the kernel receiving it.
        entry.lookups.fetch_add(1, Ordering::AcqRel);
        let node = entry.clone();
        drop(entry);
        if added {
            self.pruner.added(&self.nodes);
        } else {
            self.touch(&node);
        }
        {
            let mut st = node.st.write();
            // A removed node whose number came back (a new upper file on a reused inode, or a
            // hard link seen through another name) takes the new location.
            // A lookup that resolved the object just before a concurrent unlink (revalidation
            // LOOKUPs run without the directory lock) must not revive it: the pinned fd keeps
            // its inode number from being reused while the kernel holds the node.
            let same_removed = st.unlinked
                && node.pinned.lock().as_ref().is_some_and(|p| {
                    rfs::fstat(&**p)
                        .is_ok_and(|s| (s.st_dev, s.st_ino) == (f.st.st_dev, f.st.st_ino))
                });
            if same_removed {
                // keep it removed and pinned
            } else if st.unlinked || st.kind != kind {
                *st = fresh();
                *node.pinned.lock() = None;
                *node.listing.lock() = None;
                *node.xattr_names.lock() = None;
            } else if st.layers != f.layers
                && (st.parent, st.name.as_os_str()) == (parent, name)
                && !(st.layers.first() == Some(&UPPER)
                    && self.has_upper()
                    && f.layers.first() != Some(&UPPER))
            {
                // Never back from the upper to a lower object: a lookup that resolved the
                // name before a concurrent copy-up finished carries the lower layers, and
                // taking them would send this node's next write to the read-only lower
                // (EROFS; seen with FUSE_POSIX_ACL, whose GETXATTRs shift the timing). The
                // upper object leaves only by unlink or rename, which the branches above and
                // the name check handle.
                st.layers = f.layers.clone();
                st.data = data;
            }
            let top = st.layers.first().copied().filter(|&l| !self.is_upper(l));
            let lower_dir = kind == FileType::Directory
                && !st.unlinked
                && top.is_some()
                && top == f.layers.first().copied();
            *node.lower_dir_stat.lock() = top.filter(|_| lower_dir).map(|l| Box::new((l, f.st)));
        }
        node
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        if ino == ROOT {
            return;
        }
        // Decrement and remove in one step under the shard lock (see `remember`).
        let gone = self.nodes.remove_if(&ino, |_, node| {
            let cur = node.lookups.load(Ordering::Acquire);
            let left = cur.saturating_sub(n);
            node.lookups.store(left, Ordering::Release);
            left == 0
        });
        if let Some((_, node)) = gone {
            self.pruner.removed();
            let st = node.st.read();
            if st.kind == FileType::Directory {
                self.dir_fds.forget(ino, &st.layers);
            }
        }
    }

    /// Marks the cached listing of directory `ino` stale after a change in it.
    pub(crate) fn dir_changed(&self, ino: Ino) {
        // Kept (invalid) so that the rebuilt listing keeps its readdir slots.
        self.listing_changed(ino, Listing::invalidate);
    }

    /// Makes sure node `ino` exists in the upper layer, copying it (and its parents) up.
    pub(crate) fn ensure_upper(&self, ino: Ino) -> Result<Arc<Node>> {
        if !self.has_upper() {
            return Err(Error::new("read-only mount", Errno::ROFS));
        }
        let node = self.node(ino)?;
        let (upper, meta) = {
            let st = node.st.read();
            (st.layers.first() == Some(&UPPER), st.data.is_some())
        };
        if upper {
            if meta {
                crate::copy_up::complete_metacopy(self, &node)?;
            }
            return Ok(node);
        }
        crate::copy_up::copy_up(self, &node, false)?;
        Ok(node)
    }

    /// [`Union::ensure_upper`] for a change of metadata only: on a `metacopy=on` mount a lower
    /// regular file gets a metacopy, and a metacopy stays one.
    pub(crate) fn ensure_upper_meta(&self, ino: Ino) -> Result<Arc<Node>> {
        if !self.has_upper() {
            return Err(Error::new("read-only mount", Errno::ROFS));
        }
        let node = self.node(ino)?;
        if node.st.read().layers.first() == Some(&UPPER) {
            return Ok(node);
        }
        crate::copy_up::copy_up(self, &node, true)?;
        Ok(node)
    }
}
