//! The background scrub of the documents held: every stored byte is read back and checked
//! against its hash at a bounded rate, so damage on disk (bit rot, a bad sector, a file
//! changed behind the node's back) is found while peers still hold good copies, not only
//! when someone opens the document. A damaged document is set aside as a partial missing
//! exactly its damaged chunk groups ([`Store::scrub_documents`]), which the next sync
//! fetches again from a peer.
//!
//! One thread, [`Scrubber::start`]: it checks a step of about [`STEP_BYTES`] and then waits
//! as long as reading those bytes at [`ScrubConfig::bytes_per_second`] would take, so the
//! disk and a core are never taken from serving for long; after a whole pass it waits until
//! [`ScrubConfig::pass_interval`] has passed since the pass began. Stopping (or dropping
//! the [`Scrubber`]) ends the thread after the step in progress.

use std::sync::mpsc::{self, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::blobs::BlobHash;
use super::Store;

/// Stored bytes checked in one step before the scrub waits.
pub const STEP_BYTES: u64 = 64 << 20;

/// The default rate: 8 MiB/s (a full pass of 100 GiB of documents in about 3.6 hours).
pub const DEFAULT_BYTES_PER_SECOND: u64 = 8 << 20;

/// The default time from the start of one pass to the start of the next: a day.
pub const DEFAULT_PASS_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// How long the scrub waits after a step that failed (an I/O error) before trying again.
pub const RETRY_AFTER_ERROR: Duration = Duration::from_secs(60);

/// How fast and how often the documents are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScrubConfig {
    /// Stored bytes read and checked per second, on average (at least 1).
    pub bytes_per_second: u64,
    /// From the start of a pass to the start of the next.
    pub pass_interval: Duration,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        ScrubConfig {
            bytes_per_second: DEFAULT_BYTES_PER_SECOND,
            pass_interval: DEFAULT_PASS_INTERVAL,
        }
    }
}

/// A whole pass over the documents held, as the scrub reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubPass {
    /// Documents checked.
    pub checked: usize,
    /// Their stored bytes.
    pub bytes: u64,
    /// Documents found damaged and set aside, with their damaged bytes.
    pub set_aside: Vec<(BlobHash, u64)>,
}

/// The running scrub; stops when dropped.
#[derive(Debug)]
pub struct Scrubber {
    stop: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Scrubber {
    /// Starts scrubbing `store`'s documents on a thread of its own. Each finished pass is
    /// logged and, when `passes` is given, sent there (a full channel drops the report,
    /// never blocks the scrub).
    pub fn start(
        store: Store,
        config: ScrubConfig,
        passes: Option<SyncSender<ScrubPass>>,
    ) -> std::io::Result<Scrubber> {
        let (stop, stopped) = mpsc::sync_channel::<()>(1);
        let rate = config.bytes_per_second.max(1);
        let thread = std::thread::Builder::new()
            .name("cophr-scrub".into())
            .spawn(move || {
                let mut after = None;
                let mut pass = ScrubPass::default();
                let mut began = Instant::now();
                loop {
                    let wait = match store.scrub_documents(after.as_ref(), STEP_BYTES) {
                        Ok(step) => {
                            pass.checked += step.checked;
                            pass.bytes += step.bytes;
                            pass.set_aside.extend(step.set_aside);
                            let reading = Duration::from_secs_f64(step.bytes as f64 / rate as f64);
                            after = step.next;
                            if after.is_some() {
                                reading
                            } else {
                                let done = std::mem::take(&mut pass);
                                tracing::info!(
                                    documents = done.checked,
                                    bytes = done.bytes,
                                    damaged = done.set_aside.len(),
                                    "scrubbed the documents held"
                                );
                                if let Some(p) = &passes {
                                    let _ = p.try_send(done);
                                }
                                let wait = reading
                                    .max(config.pass_interval.saturating_sub(began.elapsed()));
                                began = Instant::now() + wait;
                                wait
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not scrub the documents held");
                            RETRY_AFTER_ERROR
                        }
                    };
                    match stopped.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Scrubber {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops the scrub, waiting for the step in progress to end.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.try_send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Scrubber {
    fn drop(&mut self) {
        self.halt();
    }
}
