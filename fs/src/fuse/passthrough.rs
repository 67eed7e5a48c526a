//! FUSE passthrough (Linux ≥ 6.9): the kernel reads and writes an open file's backing file
//! itself, so data never crosses the daemon (reference/fuse-layer.md §4.4: native speed).
//! Registering a backing file (`FUSE_DEV_IOC_BACKING_OPEN`) needs CAP_SYS_ADMIN in the initial
//! user namespace, so it is used only by real root; elsewhere every open takes the plain path.
//!
//! The kernel keeps one backing file per inode while any passthrough open of it exists, and
//! fails (EIO) an open of that inode with another backing file or without passthrough
//! (`fuse_file_io_open` in fs/fuse/iomode.c). A union inode can change its object while open:
//! a lower file is copied up. So each inode has one [`Slot`], shared by its opens:
//! - a read-only open reuses the live backing file, lower or upper: until the last open closes
//!   it reads the object it was first opened on, as an fd opened before a copy-up does on
//!   kernel overlayfs (Documentation/filesystems/overlayfs.rst, "Non-standard behavior");
//! - an open for writing while the live backing file is the lower one cannot be served (its
//!   writes would land in the lower layer, which must never change), and is refused with
//!   ETXTBSY, as a running binary's file is; so is a truncate. It succeeds once the readers
//!   close. The copy-up itself already happened and is harmless.
//! - an upper file's backing is opened read-write whatever the first open asked for, so that a
//!   later writer can share it.
//!
//! Small files are not passed through: registering and dropping a backing file costs two
//! ioctls per open, more than the page-cache reads they would save (reference/fuse-layer.md
//! §4.4, item 4: `cat` of many small cached files was slower with passthrough). The first open
//! of an inode decides by its size, and later opens follow while any is open, because the
//! kernel refuses to mix the two modes on one inode.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use fuser::BackingId;

use crate::union::{Ino, Union};

/// Files smaller than this, at their first open, are served without passthrough.
pub(super) const MIN_SIZE: u64 = 64 * 1024;

/// How the open files of one inode are served.
enum Mode {
    /// Through the daemon.
    Plain,
    /// By the kernel, on this backing file.
    Pass {
        id: Arc<BackingId>,
        /// The backing file is the upper object (writable).
        upper: bool,
    },
}

/// The state of one inode with open files.
struct Slot {
    mode: Mode,
    /// Open handles sharing it.
    opens: usize,
}

/// What an open gets.
pub(super) enum Decision {
    /// Reply with passthrough on this backing id.
    Pass(Arc<BackingId>),
    /// Reply without passthrough (disabled, or the backing could not be registered).
    Plain,
    /// Refuse: a writer while the lower object is the live backing file.
    Busy,
}

/// Passthrough bookkeeping of one mount.
#[derive(Default)]
pub(super) struct Passthrough {
    /// Negotiated at INIT.
    enabled: AtomicBool,
    /// Registering a backing file failed once: new inodes take the plain path from then on.
    /// Inodes already open keep their mode (the kernel refuses to mix them on one inode).
    failed: AtomicBool,
    slots: DashMap<Ino, Slot>,
    /// Handles that hold a reference on their inode's slot.
    handles: DashMap<u64, Ino>,
}

impl std::fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passthrough")
            .field("enabled", &self.enabled.load(Ordering::Relaxed))
            .field("failed", &self.failed.load(Ordering::Relaxed))
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// True when this process may register backing files: root in the initial user namespace
/// (`/proc/self/uid_map` maps the whole id range onto itself).
pub(super) fn allowed() -> bool {
    if !rustix::process::geteuid().is_root() {
        return false;
    }
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|m| {
        let f: Vec<&str> = m.split_whitespace().collect();
        f == ["0", "0", "4294967295"]
    })
}

impl Passthrough {
    pub(super) fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    pub(super) fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Decides how handle `fh` (just opened on inode `ino` by the union) is served, registering
    /// its backing file with `register` when the inode has none.
    pub(super) fn attach(
        &self,
        u: &Union,
        ino: Ino,
        fh: u64,
        writes: bool,
        register: impl FnOnce(BorrowedFd<'_>) -> std::io::Result<BackingId>,
    ) -> Decision {
        if !self.enabled() {
            return Decision::Plain;
        }
        let plain = |v: dashmap::mapref::entry::VacantEntry<'_, Ino, Slot>| {
            v.insert(Slot {
                mode: Mode::Plain,
                opens: 1,
            });
            self.handles.insert(fh, ino);
            Decision::Plain
        };
        match self.slots.entry(ino) {
            Entry::Occupied(mut o) => {
                let s = o.get_mut();
                let d = match &s.mode {
                    Mode::Pass { upper: false, .. } if writes => return Decision::Busy,
                    Mode::Pass { id, .. } => Decision::Pass(id.clone()),
                    Mode::Plain => Decision::Plain,
                };
                s.opens += 1;
                self.handles.insert(fh, ino);
                d
            }
            Entry::Vacant(v) => {
                if self.failed.load(Ordering::Relaxed)
                    || u.handle_size(fh).is_ok_and(|n| n < MIN_SIZE)
                {
                    return plain(v);
                }
                let (fd, upper) = match u.backing_fd(fh) {
                    Ok(x) => x,
                    Err(e) => {
                        log::warn!("passthrough: no backing fd for inode {ino}: {e}");
                        return plain(v);
                    }
                };
                match register(fd.as_fd()) {
                    Ok(id) => {
                        let id = Arc::new(id);
                        v.insert(Slot {
                            mode: Mode::Pass {
                                id: id.clone(),
                                upper,
                            },
                            opens: 1,
                        });
                        self.handles.insert(fh, ino);
                        Decision::Pass(id)
                    }
                    Err(e) => {
                        // A backing file on a stacked filesystem (max_stack_depth), or an old
                        // kernel: stop trying for new inodes.
                        log::warn!(
                            "passthrough off for new opens: registering a backing file: {e}"
                        );
                        self.failed.store(true, Ordering::Relaxed);
                        plain(v)
                    }
                }
            }
        }
    }

    /// Handle `fh` closed: drops its reference, and the backing file with the last one.
    pub(super) fn detach(&self, fh: u64) {
        let Some((_, ino)) = self.handles.remove(&fh) else {
            return;
        };
        if let Entry::Occupied(mut o) = self.slots.entry(ino) {
            o.get_mut().opens -= 1;
            if o.get().opens == 0 {
                o.remove();
            }
        }
    }

    /// True when inode `ino` is open with its lower object as the backing file (a change of
    /// its data must wait, see the module doc).
    pub(super) fn lower_busy(&self, ino: Ino) -> bool {
        self.slots
            .get(&ino)
            .is_some_and(|s| matches!(s.mode, Mode::Pass { upper: false, .. }))
    }
}
