//! Removal of discarded trees in the background.
//!
//! Removing a directory moves its upper copy into the work dir in one atomic rename (the
//! whiteout left in its place with it), and then the copy must be emptied. After `rm -rf` of a
//! lower tree that copy holds one whiteout per removed file, so emptying it in the request
//! doubled the cost of each rmdir's reply. What the rename left in the work dir is invisible
//! to the union, so a worker thread removes it after the reply; whatever it has not removed
//! when the daemon dies is cleared from the work dir at the next mount (`layer.rs`).

use std::ffi::{CString, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;

use parking_lot::Mutex;

#[derive(Debug, Default)]
pub(crate) struct Discarder {
    worker: Mutex<Option<(Sender<OsString>, JoinHandle<()>)>>,
}

impl Discarder {
    /// Queues `name` (an entry of `work`) for removal. Returns false when no worker could be
    /// started; the caller then removes it itself.
    pub(crate) fn queue(&self, work: &OwnedFd, name: OsString) -> bool {
        let mut w = self.worker.lock();
        if w.is_none() {
            let Ok(dir) = work.try_clone() else {
                return false;
            };
            let (tx, rx) = channel::<OsString>();
            let spawned = std::thread::Builder::new()
                .name("strata-discard".into())
                .spawn(move || {
                    for n in rx {
                        let c = CString::new(n.as_bytes()).unwrap_or_default();
                        if let Err(e) = crate::tree::remove_entry(&dir, &c) {
                            log::warn!("work dir: cannot remove {n:?}: {e}");
                        }
                    }
                });
            match spawned {
                Ok(h) => *w = Some((tx, h)),
                Err(_) => return false,
            }
        }
        w.as_ref().is_some_and(|(tx, _)| tx.send(name).is_ok())
    }
}

impl Drop for Discarder {
    /// Finishes the queued removals, so an unmounted work dir is left clean.
    fn drop(&mut self) {
        if let Some((tx, h)) = self.worker.lock().take() {
            drop(tx);
            let _ = h.join();
        }
    }
}
