//! A bound on the node table.
//!
//! The kernel keeps every inode it has looked up until memory pressure evicts it, and the
//! daemon must keep the node until the kernel's FORGET, so a walk of a million files costs the
//! daemon a million nodes (fuse-overlayfs 2.0: about 900 MiB). Above `Config::max_nodes`, a worker
//! thread asks the kernel to let go of the least recently used inodes with FUSE_NOTIFY_PRUNE
//! (protocol 7.45, include/uapi/linux/fuse.h; `fuse_try_prune_one_inode` in fs/fuse/inode.c):
//! the kernel drops only the *unused* dentries of each inode (`d_prune_aliases`), so an open
//! file, a working directory or a mount point is never touched, and an inode left without
//! dentries is evicted and comes back as FORGET. FUSE_NOTIFY_INVAL_ENTRY would not do:
//! `d_invalidate` detaches whatever is mounted on the dentry (a container's bind-mounted
//! `/etc/resolv.conf`).
//!
//! Recency is an epoch stamp per node, written when the node is used and bumped by each
//! pruning pass: the request path pays one relaxed load (and a store when the epoch moved),
//! never a lock. A pass sorts the stamps of the table (bounded by the limit it keeps) and
//! prunes the oldest down to 7/8 of the limit; a node the kernel would not let go (in use)
//! gets a fresh stamp, so the next pass tries others first.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::Mutex;

use super::{Ino, Node, ROOT};

/// Asks the kernel to let go of these inodes; an error means it cannot (an older kernel),
/// and pruning stops.
pub type PruneHook = dyn Fn(&[Ino]) -> std::io::Result<()> + Send + Sync;

/// How many node ids one notification carries (the kernel works through them in batches of
/// this size, fs/fuse/dev.c `fuse_notify_prune`).
const BATCH: usize = 512;

/// Time for the FORGETs of a pass to arrive before the table is counted again.
const SETTLE: Duration = Duration::from_millis(20);

/// The pause after a pass that freed less than half of what it offered (the kernel holds
/// the nodes: open files, working directories, cached children; or its FORGETs are slow),
/// so that a table the kernel keeps above the bound costs a few scans a second, not fifty.
const BACKOFF: Duration = Duration::from_millis(250);

#[derive(Debug, Default)]
struct Shared {
    /// Nodes in the table (the root included).
    count: AtomicUsize,
    /// Bumped by every pass; a node records the epoch of its last use.
    epoch: AtomicU32,
    /// A pass is queued or running.
    queued: AtomicBool,
    /// The kernel refused a notification: no more passes.
    off: AtomicBool,
}

pub(crate) struct Pruner {
    /// Most nodes kept; 0: no bound.
    limit: usize,
    shared: Arc<Shared>,
    hook: OnceLock<Arc<PruneHook>>,
    worker: Mutex<Option<Sender<()>>>,
}

impl std::fmt::Debug for Pruner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pruner")
            .field("limit", &self.limit)
            .field("shared", &self.shared)
            .finish()
    }
}

impl Pruner {
    pub(crate) fn new(limit: usize) -> Self {
        Pruner {
            limit,
            shared: Arc::default(),
            hook: OnceLock::new(),
            worker: Mutex::new(None),
        }
    }

    /// The stamp for a node used now.
    pub(crate) fn epoch(&self) -> u32 {
        self.shared.epoch.load(Ordering::Relaxed)
    }

    /// Installs the hook; without one nothing is pruned.
    pub(crate) fn set_hook(&self, hook: Box<PruneHook>) {
        let _ = self.hook.set(Arc::from(hook));
    }

    /// A node was added to `nodes`; starts a pass when the table is over its bound.
    pub(crate) fn added(&self, nodes: &Arc<DashMap<Ino, Arc<Node>>>) {
        let c = self.shared.count.fetch_add(1, Ordering::Relaxed) + 1;
        if self.limit == 0
            || c <= self.limit
            || self.shared.off.load(Ordering::Relaxed)
            || self.shared.queued.swap(true, Ordering::AcqRel)
        {
            return;
        }
        if !self.kick(nodes) {
            self.shared.queued.store(false, Ordering::Release);
        }
    }

    /// A node left the table.
    pub(crate) fn removed(&self) {
        self.shared.count.fetch_sub(1, Ordering::Relaxed);
    }

    /// Queues a pass, starting the worker on first use (never before: the daemon forks after
    /// mounting, and a fork must find one thread).
    fn kick(&self, nodes: &Arc<DashMap<Ino, Arc<Node>>>) -> bool {
        let Some(hook) = self.hook.get().cloned() else {
            return false;
        };
        let mut w = self.worker.lock();
        if w.is_none() {
            let (tx, rx) = channel::<()>();
            let (shared, table, limit) = (self.shared.clone(), Arc::downgrade(nodes), self.limit);
            let spawned = std::thread::Builder::new()
                .name("strata-prune".into())
                .spawn(move || {
                    // Ends when the union (and with it the sender) is gone.
                    for () in rx {
                        if !work(&shared, &table, limit, &*hook) {
                            return;
                        }
                    }
                });
            match spawned {
                Ok(_) => *w = Some(tx),
                Err(e) => {
                    log::warn!("cannot start the pruning thread: {e}");
                    return false;
                }
            }
        }
        w.as_ref().is_some_and(|tx| tx.send(()).is_ok())
    }
}

/// What a pass did.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The union is gone.
    Gone,
    /// Nothing to offer, or pruning is off.
    Idle,
    /// Most of what was offered went away.
    Freed,
    /// The kernel kept most of it.
    Held,
}

/// Passes until the table is under the bound, then clears `queued`; and again if a node was
/// added above the bound in between (its `added` found `queued` set and started nothing).
/// False when the union is gone.
fn work(
    shared: &Shared,
    table: &Weak<DashMap<Ino, Arc<Node>>>,
    limit: usize,
    hook: &PruneHook,
) -> bool {
    let over = || shared.count.load(Ordering::Relaxed) > limit;
    loop {
        loop {
            match pass(shared, table, limit, hook) {
                Outcome::Gone => return false,
                Outcome::Idle => break,
                Outcome::Freed => {}
                Outcome::Held => std::thread::sleep(BACKOFF),
            }
            if !over() {
                break;
            }
        }
        shared.queued.store(false, Ordering::Release);
        if !over()
            || shared.off.load(Ordering::Relaxed)
            || shared.queued.swap(true, Ordering::AcqRel)
        {
            return true;
        }
    }
}

/// One pruning pass: offers the oldest nodes, down to 7/8 of `limit`.
fn pass(
    shared: &Shared,
    table: &Weak<DashMap<Ino, Arc<Node>>>,
    limit: usize,
    hook: &PruneHook,
) -> Outcome {
    let Some(nodes) = table.upgrade() else {
        return Outcome::Gone;
    };
    let mut stamps: Vec<(u32, Ino)> = nodes
        .iter()
        .filter(|e| *e.key() != ROOT)
        .map(|e| (e.value().used.load(Ordering::Relaxed), *e.key()))
        .collect();
    // Whatever is used from now on is newer than everything collected.
    let now = shared.epoch.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    let keep = limit - limit / 8;
    let excess = (stamps.len() + 1).saturating_sub(keep);
    if excess == 0 || shared.off.load(Ordering::Relaxed) {
        return Outcome::Idle;
    }
    let victims = oldest(&mut stamps, excess);
    drop(stamps);
    for chunk in victims.chunks(BATCH) {
        match hook(chunk) {
            Ok(()) => {}
            // An unknown notification code (fuse_notify in fs/fuse/dev.c): before Linux 6.18.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                log::warn!("the kernel does not prune inodes ({e}); the node table is unbounded");
                shared.off.store(true, Ordering::Relaxed);
                return Outcome::Idle;
            }
            // The connection is gone (unmounted): nothing left to prune.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENODEV | libc::ENOTCONN)) => {
                shared.off.store(true, Ordering::Relaxed);
                return Outcome::Idle;
            }
            Err(e) => {
                log::debug!("prune notification: {e}");
                return Outcome::Held;
            }
        }
    }
    std::thread::sleep(SETTLE);
    // Survivors are held by the kernel (open, a cwd, a mount point, cached children): try
    // others first next time.
    let mut kept = 0;
    for ino in &victims {
        if let Some(n) = nodes.get(ino) {
            n.used.store(now, Ordering::Relaxed);
            kept += 1;
        }
    }
    if kept * 2 > victims.len() {
        Outcome::Held
    } else {
        Outcome::Freed
    }
}

/// The ids of the `n` entries with the oldest stamps.
fn oldest(stamps: &mut [(u32, Ino)], n: usize) -> Vec<Ino> {
    let n = n.min(stamps.len());
    if n > 0 && n < stamps.len() {
        stamps.select_nth_unstable(n - 1);
    }
    stamps[..n].iter().map(|&(_, i)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_picks_the_lowest_stamps() {
        let mut s: Vec<(u32, Ino)> = (0..100)
            .map(|i| ((i * 7919) % 100, 1000 + i as Ino))
            .collect();
        let mut got: Vec<u32> = oldest(&mut s, 10)
            .iter()
            .map(|ino| ((ino - 1000) * 7919 % 100) as u32)
            .collect();
        got.sort();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
        assert_eq!(oldest(&mut s, 500).len(), 100);
        assert!(oldest(&mut s, 0).is_empty());
    }
}
