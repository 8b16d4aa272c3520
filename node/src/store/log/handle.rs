//! The [`Log`] handle: appends (queued for the writer, bounded in flight) and reads.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

use super::*;

pub(super) struct Request {
    pub(super) data: Vec<u8>,
    /// Byte length of each frame in `data`, in order.
    pub(super) frames: Vec<usize>,
    pub(super) reply: SyncSender<Result<Vec<u64>, LogError>>,
}

pub(super) struct Core {
    /// Length of the log that is on disk and fsync'd; readers see nothing beyond it.
    pub(super) durable_len: AtomicU64,
    /// Set once, when the log starts refusing appends.
    pub(super) poison: OnceLock<String>,
}

impl Core {
    pub(super) fn poison(&self, reason: String) {
        tracing::error!(%reason, "log: refusing further appends");
        let _ = self.poison.set(reason);
    }

    pub(super) fn poisoned(&self) -> Option<LogError> {
        self.poison.get().map(|reason| LogError::Poisoned {
            reason: reason.clone(),
        })
    }
}

/// Bounds the frame bytes in flight.
pub(super) struct Budget {
    pub(super) used: Mutex<usize>,
    pub(super) freed: Condvar,
}

pub(super) struct Permit<'a> {
    budget: &'a Budget,
    n: usize,
}

impl Budget {
    pub(super) fn acquire(&self, n: usize) -> Result<Permit<'_>, LogError> {
        let mut used = self.used.lock().map_err(|_| LogError::Closed)?;
        while *used > 0 && used.saturating_add(n) > IN_FLIGHT_BUDGET {
            used = self.freed.wait(used).map_err(|_| LogError::Closed)?;
        }
        *used += n;
        Ok(Permit { budget: self, n })
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut used = self
            .budget
            .used
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *used = used.saturating_sub(self.n);
        drop(used);
        self.budget.freed.notify_all();
    }
}

pub(super) struct Shared {
    pub(super) tx: Option<SyncSender<Request>>,
    pub(super) core: Arc<Core>,
    pub(super) reader: Reader,
    pub(super) budget: Budget,
    pub(super) writer: Option<JoinHandle<()>>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Disconnect the queue; the writer finishes what is queued and exits.
        drop(self.tx.take());
        if let Some(handle) = self.writer.take() {
            if handle.join().is_err() {
                tracing::error!("log: writer thread panicked");
            }
        }
    }
}

/// The log: a cheaply cloneable, `Send + Sync` handle. The writer thread stops when the last
/// handle is dropped (after finishing queued appends).
#[derive(Clone)]
pub struct Log {
    pub(super) shared: Arc<Shared>,
}

impl fmt::Debug for Log {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Log")
            .field("len", &self.len())
            .field("poisoned", &self.shared.core.poison.get())
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Append one frame; returns its offset once it is fsync'd. Concurrent calls share
    /// fsyncs. On an I/O error the frame may or may not be on disk.
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<u64, LogError> {
        self.append_batch(&[(kind, payload)])?
            .into_iter()
            .next()
            .ok_or(LogError::Closed)
    }

    /// Append frames, contiguous and in order, with one fsync; returns their offsets once
    /// fsync'd. Not atomic: after an error or a crash, a prefix of them may be on disk (see
    /// [`Log::append_atomic`]). If any payload is too large, or any kind is a batch marker,
    /// nothing is written.
    pub fn append_batch(&self, items: &[(u8, &[u8])]) -> Result<Vec<u64>, LogError> {
        if let Some((kind, _)) = items.iter().find(|(k, _)| is_batch_marker(*k)) {
            return Err(LogError::ReservedKind { kind: *kind });
        }
        self.submit(items)
    }

    /// Append frames atomically with one fsync: after a crash either all of them are in the
    /// log or none is (they are written between a begin and a commit marker, and
    /// [`Log::open`] cuts off a batch without its commit). Returns the offsets of every frame
    /// written, in order: `[begin, items..., commit]`, or just the item's when there is only
    /// one (a single frame is atomic by itself). Nothing is written if any payload is too
    /// large or any kind is a marker.
    pub fn append_atomic(&self, items: &[(u8, &[u8])]) -> Result<Vec<u64>, LogError> {
        if items.len() < 2 {
            return self.append_batch(items);
        }
        if let Some((kind, _)) = items.iter().find(|(k, _)| is_batch_marker(*k)) {
            return Err(LogError::ReservedKind { kind: *kind });
        }
        let count = u32::try_from(items.len())
            .map_err(|_| LogError::TooLarge {
                len: items.len() as u64,
            })?
            .to_le_bytes();
        let mut all = Vec::with_capacity(items.len() + 2);
        all.push((KIND_BATCH_BEGIN, &count[..]));
        all.extend_from_slice(items);
        all.push((KIND_BATCH_COMMIT, &count[..]));
        self.submit(&all)
    }

    fn submit(&self, items: &[(u8, &[u8])]) -> Result<Vec<u64>, LogError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut total = 0usize;
        for (_, payload) in items {
            if payload.len() > MAX_PAYLOAD {
                return Err(LogError::TooLarge {
                    len: payload.len() as u64,
                });
            }
            total = total.saturating_add(FRAME_HEADER_LEN + payload.len());
        }
        if let Some(e) = self.shared.core.poisoned() {
            return Err(e);
        }
        let _permit = self.shared.budget.acquire(total)?;
        let mut data = Vec::with_capacity(total);
        let mut frames = Vec::with_capacity(items.len());
        for (kind, payload) in items {
            frames.push(encode_into(&mut data, *kind, payload)?);
        }
        let (reply, answer) = mpsc::sync_channel(1);
        let tx = self.shared.tx.as_ref().ok_or(LogError::Closed)?;
        tx.send(Request {
            data,
            frames,
            reply,
        })
        .map_err(|_| LogError::Closed)?;
        answer.recv().map_err(|_| LogError::Closed)?
    }

    /// Read the frame at `offset`: its kind and payload, after checking magic, bounds and
    /// checksum. [`LogError::OutOfRange`] or [`LogError::Corrupt`] for any offset that is not
    /// a valid frame; never panics. Offsets should come from `append` or `iter_from`: bytes
    /// inside a payload that happen to form a valid frame would read as one.
    pub fn read(&self, offset: u64) -> Result<(u8, Vec<u8>), LogError> {
        let end = self.len();
        if offset < HEADER_LEN || offset >= end {
            return Err(LogError::OutOfRange { offset, len: end });
        }
        let corrupt = LogError::Corrupt { offset };
        if end - offset < FRAME_HEADER_LEN as u64 {
            return Err(corrupt);
        }
        let reader = &self.shared.reader;
        let mut h = [0u8; FRAME_HEADER_LEN];
        reader.read_at(offset, &mut h)?;
        let Some((kind, len, crc)) = parse_frame_header(&h) else {
            return Err(corrupt);
        };
        if end - offset - (FRAME_HEADER_LEN as u64) < len as u64 {
            return Err(corrupt);
        }
        let mut payload = vec![0u8; len];
        reader.read_at(offset + FRAME_HEADER_LEN as u64, &mut payload)?;
        if frame_crc(kind, &payload) != crc {
            return Err(corrupt);
        }
        Ok((kind, payload))
    }

    /// Iterate over the frames from `offset` (an offset below [`HEADER_LEN`], e.g. 0, means
    /// the first frame) to the durable end as of this call, yielding `(offset, kind, payload)`.
    /// A bad frame yields one error and ends the iteration.
    pub fn iter_from(&self, offset: u64) -> LogIter {
        let end = self.len();
        let pos = offset.max(HEADER_LEN);
        let pending = (pos > end).then_some(LogError::OutOfRange { offset, len: end });
        LogIter {
            window: Window::new(self.shared.reader.clone(), end, SCAN_CHUNK),
            pos,
            pending,
            done: false,
        }
    }

    /// The durable length in bytes (file header plus every acknowledged frame).
    pub fn len(&self) -> u64 {
        self.shared.core.durable_len.load(Ordering::Acquire)
    }

    /// True when the log holds no frame.
    pub fn is_empty(&self) -> bool {
        self.len() <= HEADER_LEN
    }
}

/// Iterator returned by [`Log::iter_from`]: `(offset, kind, payload)` of each frame.
pub struct LogIter {
    window: Window<Reader>,
    pos: u64,
    pending: Option<LogError>,
    done: bool,
}

impl fmt::Debug for LogIter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogIter")
            .field("pos", &self.pos)
            .field("end", &self.window.end)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Iterator for LogIter {
    type Item = Result<(u64, u8, Vec<u8>), LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(e) = self.pending.take() {
            self.done = true;
            return Some(Err(e));
        }
        let pos = self.pos;
        if pos >= self.window.end {
            self.done = true;
            return None;
        }
        let item = match self.window.frame_at(pos) {
            Ok(Some(f)) => self
                .window
                .slice(pos + FRAME_HEADER_LEN as u64, f.len)
                .map(|p| {
                    self.pos = f.next;
                    (pos, f.kind, p.to_vec())
                })
                .map_err(LogError::from),
            Ok(None) => Err(LogError::Corrupt { offset: pos }),
            Err(e) => Err(LogError::Io(e)),
        };
        if item.is_err() {
            self.done = true;
        }
        Some(item)
    }
}
