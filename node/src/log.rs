//! The authoritative, append-only, fsync'd log.
//!
//! sled 0.34's `flush()` does not fsync (sled issue 1452), so every acknowledged write of the
//! node reaches disk through this log; sled only holds indexes that can be rebuilt from it.
//!
//! # File format
//!
//! The file starts with the 8-byte header [`FILE_HEADER`] (`b"COPHRLG1"`), followed by frames:
//!
//! ```text
//! [magic u16 LE = 0xC0FE][kind u8][len u32 LE][crc32(kind ++ payload) u32 LE][payload; len]
//! ```
//!
//! `kind` is opaque to the log (the caller tags entries, audit events, fork proofs, ...),
//! except the two batch markers [`KIND_BATCH_BEGIN`] and [`KIND_BATCH_COMMIT`], which only
//! [`Log::append_atomic`] writes. A payload is at most [`MAX_PAYLOAD`] bytes. A frame is addressed by the byte offset of its
//! first byte; offsets never change (the log is append-only).
//!
//! # Durability
//!
//! [`Log::append`] and [`Log::append_batch`] return only after the frame's bytes were written
//! and the file was fsync'd ([`LogFile::sync`]). One writer thread does all writing; concurrent
//! appenders share one fsync (group commit). After a failed fsync nothing is known about what
//! is on disk, so the log refuses every later append ([`LogError::Poisoned`]) until it is
//! reopened from disk.
//!
//! # Recovery
//!
//! [`Log::open`] scans every frame. A torn or corrupt *tail* (a bad frame after which no valid
//! frame follows) is what a crash during an unacknowledged write leaves: it is truncated and
//! reported in [`Recovery`]. A bad frame followed by valid frames is damage to acknowledged
//! data (bit rot): the log refuses to open with [`LogError::Corrupt`], and nothing is changed,
//! so the operator can copy the file, restore from a replica, or run [`Log::repair`].
//!
//! # Atomic batches
//!
//! [`Log::append_atomic`] writes its frames between a begin marker (payload: the number of
//! frames, u32 LE) and a commit marker (the same number). Recovery treats a batch whose
//! commit is not on disk as not written at all: the tail is cut back to its begin marker.
//! A marker out of place (a begin inside a batch, a commit without its begin or with the
//! wrong count) is a bad frame like any other. Readers ([`Log::iter_from`]) see the markers
//! as frames; a log without markers (older logs) reads as before.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// The 8 bytes every log file starts with.
pub const FILE_HEADER: [u8; 8] = *b"COPHRLG1";

/// Length of [`FILE_HEADER`]; the offset of the first frame.
pub const HEADER_LEN: u64 = FILE_HEADER.len() as u64;

/// The magic number that starts every frame (stored little-endian: bytes `FE C0`).
pub const MAGIC: u16 = 0xC0FE;

/// Bytes of a frame before its payload: magic (2), kind (1), len (4), crc (4).
pub const FRAME_HEADER_LEN: usize = 11;

/// The largest payload a frame may carry (16 MiB).
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Kind of the frame that opens an atomic batch ([`Log::append_atomic`]); payload: the
/// number of frames in the batch (u32 LE).
pub const KIND_BATCH_BEGIN: u8 = 0xFE;

/// Kind of the frame that commits an atomic batch; payload: the same number as its begin.
pub const KIND_BATCH_COMMIT: u8 = 0xFF;

/// Whether `kind` is one of the log's batch markers.
pub fn is_batch_marker(kind: u8) -> bool {
    kind == KIND_BATCH_BEGIN || kind == KIND_BATCH_COMMIT
}

/// Requests that may wait in the writer's queue.
const QUEUE_CAPACITY: usize = 1024;
/// The writer stops gathering a group once it holds this many bytes.
const MAX_GROUP_BYTES: usize = 8 << 20;
/// Frame bytes that may be in flight (copied, queued or being written) at once. A single
/// request larger than this is let through alone.
const IN_FLIGHT_BUDGET: usize = 64 << 20;
/// Read size when scanning.
const SCAN_CHUNK: usize = 256 << 10;
/// Bytes a search for the next valid frame may checksum before it gives up (and the log
/// assumes the worst: valid data may follow).
const RESYNC_HASH_BUDGET: u64 = 256 << 20;
/// Corrupt regions listed in a [`VerifyReport`] (all are counted).
const MAX_REPORTED_REGIONS: usize = 1000;

const MAGIC_BYTES: [u8; 2] = MAGIC.to_le_bytes();

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The storage failed (for example disk full, or a failed fsync). When returned by an
    /// append, the frames may or may not be on disk.
    #[error("log I/O error: {0}")]
    Io(#[from] io::Error),
    /// The frame at `offset` fails its checks (magic, bounds or checksum); from
    /// [`Log::open`], a bad frame that valid frames follow (damage to acknowledged data).
    #[error(
        "log is corrupt at byte offset {offset}; copy the file, then restore from a replica or \
         run repair"
    )]
    Corrupt {
        /// Byte offset of the bad frame.
        offset: u64,
    },
    /// A payload is larger than [`MAX_PAYLOAD`]; nothing was written.
    #[error("log payload of {len} bytes is larger than the limit of 16 MiB (16777216 bytes)")]
    TooLarge {
        /// Length of the refused payload.
        len: u64,
    },
    /// The file does not start with [`FILE_HEADER`]: it is not a cophr log.
    #[error("not a cophr log file (it does not start with \"COPHRLG1\")")]
    BadHeader,
    /// A read asked for an offset that is not inside the durable part of the log.
    #[error("offset {offset} is outside the log (durable length {len})")]
    OutOfRange {
        /// The offset asked for.
        offset: u64,
        /// The durable length of the log.
        len: u64,
    },
    /// A caller tried to write a batch marker kind itself; nothing was written.
    #[error("frame kind {kind} is reserved for the log's batch markers")]
    ReservedKind {
        /// The refused kind.
        kind: u8,
    },
    /// The log's writer has stopped.
    #[error("log is closed")]
    Closed,
    /// An earlier write failed in a way that leaves the file's state unknown (a failed fsync,
    /// or a failed write that could not be undone); the log refuses appends until reopened.
    #[error(
        "log refuses appends after a failure left the file's state unknown ({reason}); \
         restart the node so the log is re-read from disk"
    )]
    Poisoned {
        /// What failed.
        reason: String,
    },
}

/// Byte storage under a [`Log`]: a real file ([`FileLog`]) or memory ([`MemLog`], for crash
/// tests).
pub trait LogFile: Send {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the storage holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fill `buf` with the bytes at `off`; an error (`UnexpectedEof`) if they do not all exist.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Append `data` at the end. On error, part of `data` may have been appended.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Make everything appended (and any truncation) durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Cut the storage to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// A handle that reads concurrently with appends and syncs, if the storage has one.
    /// Without it, reads wait for the writer (including its fsync).
    fn reader(&self) -> Option<Arc<dyn LogRead>> {
        None
    }
}

/// Positional reads that may run concurrently with a [`LogFile`]'s writes.
pub trait LogRead: Send + Sync {
    /// Fill `buf` with the bytes at `off`; an error if they do not all exist.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
}

// ---------------------------------------------------------------------------------------------
// FileLog

/// A [`LogFile`] on a real file, opened for reading and appending; `sync` is `sync_data`
/// (fdatasync).
#[derive(Debug)]
pub struct FileLog {
    file: Arc<File>,
}

impl FileLog {
    /// Open `path`, creating it if missing. When the file is new (or empty) its directory is
    /// fsync'd too, so the file itself survives a power loss.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileLog> {
        let path = path.as_ref();
        let mut opts = OpenOptions::new();
        opts.read(true).append(true);
        let (file, created) = match opts.clone().create_new(true).open(path) {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (opts.open(path)?, false),
            Err(e) => return Err(e),
        };
        if created || file.metadata()?.len() == 0 {
            sync_parent_dir(path)?;
        }
        Ok(FileLog {
            file: Arc::new(file),
        })
    }
}

fn sync_parent_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(unix)]
fn pread_exact(file: &File, off: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, off)
}

#[cfg(windows)]
fn pread_exact(file: &File, mut off: u64, mut buf: &mut [u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, off) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn pread_exact(_file: &File, _off: u64, _buf: &mut [u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "positional reads are not supported on this platform",
    ))
}

struct FileReader(Arc<File>);

impl LogRead for FileReader {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        pread_exact(&self.0, off, buf)
    }
}

impl LogFile for FileLog {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        pread_exact(&self.file, off, buf)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        (&*self.file).write_all(data)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn reader(&self) -> Option<Arc<dyn LogRead>> {
        Some(Arc::new(FileReader(Arc::clone(&self.file))))
    }
}

// ---------------------------------------------------------------------------------------------
// MemLog

#[derive(Debug, Default)]
struct MemState {
    data: Vec<u8>,
    synced: usize,
    syncs: u64,
    fail_sync: bool,
    capacity: Option<u64>,
    sync_delay: Duration,
}

/// An in-memory [`LogFile`] for tests: clones share one buffer, which tracks the prefix that
/// was synced, so [`MemLog::crash`] can produce what a power loss would leave. It can also
/// inject failures (failed fsync, disk full) and slow fsyncs.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    state: Arc<Mutex<MemState>>,
}

impl MemLog {
    /// An empty buffer.
    pub fn new() -> MemLog {
        MemLog::default()
    }

    /// A buffer holding `bytes`, all of them synced.
    pub fn from_bytes(bytes: Vec<u8>) -> MemLog {
        let synced = bytes.len();
        MemLog {
            state: Arc::new(Mutex::new(MemState {
                data: bytes,
                synced,
                ..MemState::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every byte currently held, synced or not.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().data.clone()
    }

    /// Length of the synced prefix.
    pub fn synced_len(&self) -> u64 {
        self.lock().synced as u64
    }

    /// How many times `sync` was called (successful or not).
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }

    /// What survives a power loss now: the synced prefix only, as a new independent buffer.
    pub fn crash(&self) -> MemLog {
        self.crash_torn(0)
    }

    /// What survives a power loss that tore a write: the synced prefix plus the first
    /// `torn_tail` unsynced bytes (capped at what exists), as a new independent buffer.
    pub fn crash_torn(&self, torn_tail: u64) -> MemLog {
        let st = self.lock();
        let unsynced = (st.data.len() - st.synced) as u64;
        let keep = st.synced + usize::try_from(torn_tail.min(unsynced)).unwrap_or(0);
        MemLog::from_bytes(st.data[..keep].to_vec())
    }

    /// XOR the byte at `offset` with `xor` (simulated bit rot); no effect past the end.
    pub fn corrupt(&self, offset: u64, xor: u8) {
        let mut st = self.lock();
        if let Some(b) = usize::try_from(offset)
            .ok()
            .and_then(|i| st.data.get_mut(i))
        {
            *b ^= xor;
        }
    }

    /// Make every later `sync` fail (without syncing anything) while `fail` is true.
    pub fn set_fail_sync(&self, fail: bool) {
        self.lock().fail_sync = fail;
    }

    /// Limit the buffer to `capacity` bytes: an append beyond it writes what fits and fails
    /// with `StorageFull` (a full disk). `None` removes the limit.
    pub fn set_capacity(&self, capacity: Option<u64>) {
        self.lock().capacity = capacity;
    }

    /// Make every `sync` take at least `delay` (a slow disk).
    pub fn set_sync_delay(&self, delay: Duration) {
        self.lock().sync_delay = delay;
    }
}

fn mem_read(st: &MemState, off: u64, buf: &mut [u8]) -> io::Result<()> {
    let src = usize::try_from(off)
        .ok()
        .and_then(|start| st.data.get(start..start.checked_add(buf.len())?))
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    buf.copy_from_slice(src);
    Ok(())
}

struct MemReader(Arc<Mutex<MemState>>);

impl LogRead for MemReader {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        mem_read(
            &self.0.lock().unwrap_or_else(PoisonError::into_inner),
            off,
            buf,
        )
    }
}

impl LogFile for MemLog {
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().data.len() as u64)
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        mem_read(&self.lock(), off, buf)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        let room = match st.capacity {
            Some(cap) => {
                usize::try_from(cap.saturating_sub(st.data.len() as u64)).unwrap_or(usize::MAX)
            }
            None => usize::MAX,
        };
        if data.len() > room {
            st.data.extend_from_slice(&data[..room]);
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (MemLog capacity)",
            ));
        }
        st.data.extend_from_slice(data);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let delay = self.lock().sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut st = self.lock();
        st.syncs += 1;
        if st.fail_sync {
            return Err(io::Error::other("injected fsync failure (MemLog)"));
        }
        st.synced = st.data.len();
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        let mut st = self.lock();
        st.data.resize(len, 0);
        st.synced = st.synced.min(len);
        Ok(())
    }
    fn reader(&self) -> Option<Arc<dyn LogRead>> {
        Some(Arc::new(MemReader(Arc::clone(&self.state))))
    }
}

// ---------------------------------------------------------------------------------------------
// Frames and scanning

type SharedFile = Arc<Mutex<Box<dyn LogFile>>>;

fn lock_file(file: &SharedFile) -> io::Result<MutexGuard<'_, Box<dyn LogFile>>> {
    file.lock()
        .map_err(|_| io::Error::other("log storage lock poisoned by a panic"))
}

/// Where a [`Log`] reads from.
#[derive(Clone)]
enum Reader {
    Direct(Arc<dyn LogRead>),
    Locked(SharedFile),
}

trait ReadAt {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl ReadAt for Reader {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Reader::Direct(r) => r.read_at(off, buf),
            Reader::Locked(f) => lock_file(f)?.read_at(off, buf),
        }
    }
}

impl<T: LogFile + ?Sized> ReadAt for &T {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        LogFile::read_at(*self, off, buf)
    }
}

fn frame_crc(kind: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    h.finalize()
}

fn encode_into(out: &mut Vec<u8>, kind: u8, payload: &[u8]) -> Result<usize, LogError> {
    let too_large = || LogError::TooLarge {
        len: payload.len() as u64,
    };
    if payload.len() > MAX_PAYLOAD {
        return Err(too_large());
    }
    let len = u32::try_from(payload.len()).map_err(|_| too_large())?;
    out.extend_from_slice(&MAGIC_BYTES);
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&frame_crc(kind, payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(FRAME_HEADER_LEN + payload.len())
}

/// The parsed fixed part of a frame: (kind, payload length, crc), if magic and length are sane.
fn parse_frame_header(h: &[u8]) -> Option<(u8, usize, u32)> {
    let h: &[u8; FRAME_HEADER_LEN] = h.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
    if h[..2] != MAGIC_BYTES {
        return None;
    }
    let len = u32::from_le_bytes([h[3], h[4], h[5], h[6]]) as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    Some((h[2], len, u32::from_le_bytes([h[7], h[8], h[9], h[10]])))
}

#[derive(Debug, Clone, Copy)]
struct FrameInfo {
    kind: u8,
    len: usize,
    next: u64,
}

enum Resync {
    /// No valid frame follows.
    None,
    /// A valid frame starts at this offset.
    Found(u64),
    /// The search hit its work budget; valid frames may follow.
    GaveUp,
}

/// A read-ahead window over `[0, end)` of a source.
struct Window<R> {
    src: R,
    end: u64,
    chunk: usize,
    start: u64,
    buf: Vec<u8>,
    hashed: u64,
}

impl<R: ReadAt> Window<R> {
    fn new(src: R, end: u64, chunk: usize) -> Self {
        Window {
            src,
            end,
            chunk,
            start: 0,
            buf: Vec::new(),
            hashed: 0,
        }
    }

    /// The `n` bytes at `off`, which must lie inside `[0, end)`.
    fn slice(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
        let want_end = off
            .checked_add(n as u64)
            .filter(|&e| e <= self.end)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let cached = off >= self.start && want_end <= self.start + self.buf.len() as u64;
        if !cached {
            // `n <= end - off`, so this is at least `n`.
            let len = (n.max(self.chunk) as u64).min(self.end - off);
            let len = usize::try_from(len).unwrap_or(n);
            self.buf.clear();
            self.buf.resize(len, 0);
            if let Err(e) = self.src.read_at(off, &mut self.buf) {
                self.buf.clear();
                return Err(e);
            }
            self.start = off;
        }
        let s = usize::try_from(off - self.start).unwrap_or(usize::MAX);
        self.buf
            .get(s..s.saturating_add(n))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }

    /// The valid frame at `pos`, if there is one.
    fn frame_at(&mut self, pos: u64) -> io::Result<Option<FrameInfo>> {
        if pos < HEADER_LEN || self.end.saturating_sub(pos) < FRAME_HEADER_LEN as u64 {
            return Ok(None);
        }
        let Some((kind, len, crc)) = parse_frame_header(self.slice(pos, FRAME_HEADER_LEN)?) else {
            return Ok(None);
        };
        let total = FRAME_HEADER_LEN + len;
        if self.end - pos < total as u64 {
            return Ok(None);
        }
        self.hashed = self.hashed.saturating_add(len as u64);
        let frame = self.slice(pos, total)?;
        if frame_crc(kind, &frame[FRAME_HEADER_LEN..]) != crc {
            return Ok(None);
        }
        Ok(Some(FrameInfo {
            kind,
            len,
            next: pos + total as u64,
        }))
    }

    /// Search `[from, end)` for the start of a valid frame.
    fn find_frame_after(&mut self, from: u64) -> io::Result<Resync> {
        let budget_end = self.hashed.saturating_add(RESYNC_HASH_BUDGET);
        let mut p = from;
        while self.end.saturating_sub(p) >= FRAME_HEADER_LEN as u64 {
            let n =
                usize::try_from((self.end - p).min(self.chunk.max(4096) as u64)).unwrap_or(4096);
            let hit = self.slice(p, n)?.windows(2).position(|w| w == MAGIC_BYTES);
            match hit {
                Some(i) => {
                    let cand = p + i as u64;
                    if self.frame_at(cand)?.is_some() {
                        return Ok(Resync::Found(cand));
                    }
                    if self.hashed > budget_end {
                        return Ok(Resync::GaveUp);
                    }
                    p = cand + 1;
                }
                // The last byte may be the first half of a magic split across windows.
                None => p += (n - 1) as u64,
            }
        }
        Ok(Resync::None)
    }
}

/// An atomic batch being scanned.
#[derive(Debug, Clone, Copy)]
struct OpenBatch {
    /// Offset of its begin marker.
    begin: u64,
    /// Valid frames before it.
    frames_before: u64,
    /// Frames it announced.
    count: u32,
    /// Frames seen since its begin.
    seen: u32,
}

/// Checks the batch markers' structure while frames are scanned in order.
#[derive(Debug, Default)]
struct BatchCheck {
    open: Option<OpenBatch>,
}

fn marker_count(payload: Option<&[u8]>) -> Option<u32> {
    let bytes: [u8; 4] = payload?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

impl BatchCheck {
    /// Takes the valid frame at `pos` (`payload` is given for markers); false if it is out
    /// of place.
    fn step(&mut self, pos: u64, frames_before: u64, kind: u8, payload: Option<&[u8]>) -> bool {
        match (kind, self.open.as_mut()) {
            (KIND_BATCH_BEGIN, None) => match marker_count(payload) {
                Some(count) if count >= 1 => {
                    self.open = Some(OpenBatch {
                        begin: pos,
                        frames_before,
                        count,
                        seen: 0,
                    });
                    true
                }
                _ => false,
            },
            (KIND_BATCH_COMMIT, Some(open)) => {
                if open.seen == open.count && marker_count(payload) == Some(open.count) {
                    self.open = None;
                    true
                } else {
                    false
                }
            }
            (KIND_BATCH_BEGIN | KIND_BATCH_COMMIT, _) => false,
            (_, Some(open)) => {
                open.seen += 1;
                open.seen <= open.count
            }
            (_, None) => true,
        }
    }
}

/// What [`Log::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Valid frames in the log.
    pub frames: u64,
    /// Length of the log after recovery (file header plus valid frames).
    pub valid_len: u64,
    /// Bytes of torn or corrupt tail that were cut off (0 after a clean shutdown). Only
    /// unacknowledged writes leave a torn tail, unless the last frame was damaged on disk.
    pub truncated_bytes: u64,
}

/// Check the header (creating it on empty storage), scan all frames and cut off a bad tail.
/// With `repair`, cut at the first bad frame even when valid frames follow it.
fn recover(file: &mut dyn LogFile, repair: bool) -> Result<Recovery, LogError> {
    let len = file.len()?;
    if len < HEADER_LEN {
        // Empty, or a header whose creation was torn.
        let mut head = vec![0u8; len as usize];
        file.read_at(0, &mut head)?;
        if head[..] != FILE_HEADER[..head.len()] {
            return Err(LogError::BadHeader);
        }
        if len > 0 {
            file.truncate(0)?;
        }
        file.append(&FILE_HEADER)?;
        file.sync()?;
        return Ok(Recovery {
            frames: 0,
            valid_len: HEADER_LEN,
            truncated_bytes: len,
        });
    }
    let mut head = [0u8; FILE_HEADER.len()];
    file.read_at(0, &mut head)?;
    if head != FILE_HEADER {
        return Err(LogError::BadHeader);
    }

    let (frames, bad_at) = {
        let mut w = Window::new(&*file, len, SCAN_CHUNK);
        let mut pos = HEADER_LEN;
        let mut frames = 0u64;
        let mut batch = BatchCheck::default();
        let bad_at = loop {
            if pos >= len {
                break None;
            }
            match w.frame_at(pos)? {
                Some(f) => {
                    let marker = if is_batch_marker(f.kind) {
                        Some(w.slice(pos + FRAME_HEADER_LEN as u64, f.len)?.to_vec())
                    } else {
                        None
                    };
                    if !batch.step(pos, frames, f.kind, marker.as_deref()) {
                        break Some(pos);
                    }
                    frames += 1;
                    pos = f.next;
                }
                None => break Some(pos),
            }
        };
        if let Some(bad) = bad_at {
            if !repair {
                match w.find_frame_after(bad + 1)? {
                    Resync::None => {}
                    Resync::Found(_) | Resync::GaveUp => {
                        return Err(LogError::Corrupt { offset: bad });
                    }
                }
            }
        }
        // A batch whose commit is not there was never acknowledged: cut it off whole.
        match batch.open {
            Some(open) => (open.frames_before, Some(open.begin)),
            None => (frames, bad_at),
        }
    };

    let valid_len = bad_at.unwrap_or(len);
    let truncated_bytes = len - valid_len;
    if truncated_bytes > 0 {
        tracing::warn!(
            valid_len,
            truncated_bytes,
            repair,
            "log: cutting off a torn or corrupt tail"
        );
        file.truncate(valid_len)?;
        file.sync()?;
    }
    Ok(Recovery {
        frames,
        valid_len,
        truncated_bytes,
    })
}

// ---------------------------------------------------------------------------------------------
// Log

/// Options for [`Log::open_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// fsync after every frame instead of once per group of queued appends (group commit).
    /// Slower; exists to measure what group commit gains.
    pub sync_each: bool,
}

/// One region of bad bytes found by [`Log::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptRegion {
    /// Offset of the first bad frame of the region.
    pub offset: u64,
    /// Bytes up to the next valid frame (or the end of the log).
    pub len: u64,
}

/// The result of [`Log::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Valid frames.
    pub frames: u64,
    /// Bytes checked (the durable length of the log).
    pub bytes: u64,
    /// Bad regions, in order (at most the first 1000; see `corrupt_regions`).
    pub corrupt: Vec<CorruptRegion>,
    /// Number of bad regions found.
    pub corrupt_regions: u64,
}

impl VerifyReport {
    /// True when every frame checked out.
    pub fn is_ok(&self) -> bool {
        self.corrupt_regions == 0
    }
}

struct Request {
    data: Vec<u8>,
    /// Byte length of each frame in `data`, in order.
    frames: Vec<usize>,
    reply: SyncSender<Result<Vec<u64>, LogError>>,
}

struct Core {
    /// Length of the log that is on disk and fsync'd; readers see nothing beyond it.
    durable_len: AtomicU64,
    /// Set once, when the log starts refusing appends.
    poison: OnceLock<String>,
}

impl Core {
    fn poison(&self, reason: String) {
        tracing::error!(%reason, "log: refusing further appends");
        let _ = self.poison.set(reason);
    }

    fn poisoned(&self) -> Option<LogError> {
        self.poison.get().map(|reason| LogError::Poisoned {
            reason: reason.clone(),
        })
    }
}

/// Bounds the frame bytes in flight.
struct Budget {
    used: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a> {
    budget: &'a Budget,
    n: usize,
}

impl Budget {
    fn acquire(&self, n: usize) -> Result<Permit<'_>, LogError> {
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

struct Shared {
    tx: Option<SyncSender<Request>>,
    core: Arc<Core>,
    reader: Reader,
    budget: Budget,
    writer: Option<JoinHandle<()>>,
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
    shared: Arc<Shared>,
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
    /// Open a log on `file` with default options (group commit): check the header (writing it
    /// on empty storage), scan every frame, cut off a torn tail, and start the writer thread.
    /// A bad frame followed by valid frames is [`LogError::Corrupt`] and nothing is changed.
    pub fn open(file: impl LogFile + 'static) -> Result<(Log, Recovery), LogError> {
        Log::open_with(file, LogOptions::default())
    }

    /// [`Log::open`] with options.
    pub fn open_with(
        file: impl LogFile + 'static,
        options: LogOptions,
    ) -> Result<(Log, Recovery), LogError> {
        let mut file: Box<dyn LogFile> = Box::new(file);
        let recovery = recover(&mut *file, false)?;
        let direct = file.reader();
        let file: SharedFile = Arc::new(Mutex::new(file));
        let reader = match direct {
            Some(r) => Reader::Direct(r),
            None => Reader::Locked(Arc::clone(&file)),
        };
        let core = Arc::new(Core {
            durable_len: AtomicU64::new(recovery.valid_len),
            poison: OnceLock::new(),
        });
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let writer = Writer {
            file,
            core: Arc::clone(&core),
            len: recovery.valid_len,
            sync_each: options.sync_each,
        };
        let handle = std::thread::Builder::new()
            .name("cophr-log-writer".into())
            .spawn(move || writer.run(rx))?;
        let log = Log {
            shared: Arc::new(Shared {
                tx: Some(tx),
                core,
                reader,
                budget: Budget {
                    used: Mutex::new(0),
                    freed: Condvar::new(),
                },
                writer: Some(handle),
            }),
        };
        Ok((log, recovery))
    }

    /// Open (creating if missing) the log file at `path` with default options.
    pub fn open_path(path: impl AsRef<Path>) -> Result<(Log, Recovery), LogError> {
        Log::open(FileLog::open(path)?)
    }

    /// Open (creating if missing) the log file at `path` with options.
    pub fn open_path_with(
        path: impl AsRef<Path>,
        options: LogOptions,
    ) -> Result<(Log, Recovery), LogError> {
        Log::open_with(FileLog::open(path)?, options)
    }

    /// Destructive repair for an operator: like [`Log::open`]'s recovery, but cut the log at
    /// its first bad frame even when valid frames follow (they are lost from this copy; take
    /// a copy of the file first and restore them from a replica). Do not use on storage a
    /// [`Log`] has open.
    pub fn repair(mut file: impl LogFile) -> Result<Recovery, LogError> {
        recover(&mut file, true)
    }

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

    /// Scan the whole durable log again, checking the header, every frame and the batch
    /// markers' structure, and report regions of bad frames (reading concurrently with
    /// appends): a marker out of place is reported as its frame, a batch without its commit
    /// as the bytes from its begin to the end.
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        let end = self.len();
        let mut head = [0u8; FILE_HEADER.len()];
        self.shared.reader.read_at(0, &mut head)?;
        if head != FILE_HEADER {
            return Err(LogError::BadHeader);
        }
        let mut w = Window::new(self.shared.reader.clone(), end, SCAN_CHUNK);
        let mut report = VerifyReport {
            frames: 0,
            bytes: end,
            corrupt: Vec::new(),
            corrupt_regions: 0,
        };
        let mut pos = HEADER_LEN;
        let mut batch = BatchCheck::default();
        let add = |report: &mut VerifyReport, offset: u64, len: u64| {
            report.corrupt_regions += 1;
            if report.corrupt.len() < MAX_REPORTED_REGIONS {
                report.corrupt.push(CorruptRegion { offset, len });
            }
        };
        while pos < end {
            match w.frame_at(pos)? {
                Some(f) => {
                    let marker = if is_batch_marker(f.kind) {
                        Some(w.slice(pos + FRAME_HEADER_LEN as u64, f.len)?.to_vec())
                    } else {
                        None
                    };
                    if !batch.step(pos, report.frames, f.kind, marker.as_deref()) {
                        // A marker out of place: the frame is reported, the check restarts.
                        add(&mut report, pos, f.next - pos);
                        batch = BatchCheck::default();
                    }
                    report.frames += 1;
                    pos = f.next;
                }
                None => {
                    let stop = match w.find_frame_after(pos + 1)? {
                        Resync::Found(next) => next,
                        Resync::None | Resync::GaveUp => end,
                    };
                    add(&mut report, pos, stop - pos);
                    batch = BatchCheck::default();
                    pos = stop;
                }
            }
        }
        if let Some(open) = batch.open {
            // The durable log only ever holds whole batches.
            add(&mut report, open.begin, end - open.begin);
        }
        Ok(report)
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

// ---------------------------------------------------------------------------------------------
// Writer thread

struct Writer {
    file: SharedFile,
    core: Arc<Core>,
    /// Bytes written to the file (durable or not).
    len: u64,
    sync_each: bool,
}

fn clone_io(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

fn reply(req: Request, result: Result<Vec<u64>, LogError>) {
    let Request { data, reply, .. } = req;
    drop(data);
    // The appender waits for this; if it is gone there is nobody to tell.
    let _ = reply.send(result);
}

impl Writer {
    fn run(mut self, rx: Receiver<Request>) {
        while let Ok(first) = rx.recv() {
            if self.sync_each {
                self.commit_each(first);
                continue;
            }
            let mut bytes = first.data.len();
            let mut group = vec![first];
            while bytes < MAX_GROUP_BYTES && group.len() < QUEUE_CAPACITY {
                match rx.try_recv() {
                    Ok(req) => {
                        bytes += req.data.len();
                        group.push(req);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn poisoned_error(&self) -> LogError {
        self.core.poisoned().unwrap_or(LogError::Closed)
    }

    /// Undo a failed (possibly partial) append; if even that fails, the file's tail is unknown.
    fn rollback(&mut self, file: &mut dyn LogFile, to: u64) {
        if let Err(e) = file.truncate(to) {
            self.core
                .poison(format!("could not undo a failed write: {e}"));
        }
    }

    fn commit_group(&mut self, group: Vec<Request>) {
        if self.core.poison.get().is_some() {
            for req in group {
                reply(req, Err(self.poisoned_error()));
            }
            return;
        }
        let file_arc = Arc::clone(&self.file);
        let mut guard = match lock_file(&file_arc) {
            Ok(g) => g,
            Err(e) => {
                self.core.poison(e.to_string());
                for req in group {
                    reply(req, Err(LogError::Io(clone_io(&e))));
                }
                return;
            }
        };
        let file: &mut dyn LogFile = &mut **guard;

        let mut written: Vec<(Request, Vec<u64>)> = Vec::with_capacity(group.len());
        let mut failed: Vec<Request> = Vec::new();
        let mut write_err: Option<io::Error> = None;
        for req in group {
            if write_err.is_some() {
                failed.push(req);
                continue;
            }
            let start = self.len;
            match file.append(&req.data) {
                Ok(()) => {
                    let mut offsets = Vec::with_capacity(req.frames.len());
                    let mut off = start;
                    for &n in &req.frames {
                        offsets.push(off);
                        off += n as u64;
                    }
                    self.len = off;
                    written.push((req, offsets));
                }
                Err(e) => {
                    self.rollback(file, start);
                    write_err = Some(e);
                    failed.push(req);
                }
            }
        }

        if !written.is_empty() {
            if self.core.poison.get().is_some() {
                // A write could not be undone: do not acknowledge anything of this group.
                for (req, _) in written {
                    reply(req, Err(self.poisoned_error()));
                }
            } else {
                match file.sync() {
                    Ok(()) => {
                        self.core.durable_len.store(self.len, Ordering::Release);
                        for (req, offsets) in written {
                            reply(req, Ok(offsets));
                        }
                    }
                    Err(e) => {
                        self.core.poison(format!("fsync failed: {e}"));
                        for (req, _) in written {
                            reply(req, Err(LogError::Io(clone_io(&e))));
                        }
                    }
                }
            }
        }
        drop(guard);

        for req in failed {
            let err = match &write_err {
                Some(e) => LogError::Io(clone_io(e)),
                None => LogError::Closed,
            };
            reply(req, Err(err));
        }
    }

    /// `sync_each`: write and fsync every frame on its own.
    fn commit_each(&mut self, req: Request) {
        if let Some(e) = self.core.poisoned() {
            reply(req, Err(e));
            return;
        }
        let file_arc = Arc::clone(&self.file);
        let mut guard = match lock_file(&file_arc) {
            Ok(g) => g,
            Err(e) => {
                self.core.poison(e.to_string());
                reply(req, Err(LogError::Io(e)));
                return;
            }
        };
        let file: &mut dyn LogFile = &mut **guard;
        let mut offsets = Vec::with_capacity(req.frames.len());
        let mut at = 0usize;
        for &n in &req.frames {
            let start = self.len;
            let Some(frame) = req.data.get(at..at + n) else {
                reply(req, Err(LogError::Closed));
                return;
            };
            if let Err(e) = file.append(frame) {
                self.rollback(file, start);
                drop(guard);
                reply(req, Err(LogError::Io(e)));
                return;
            }
            self.len += n as u64;
            if let Err(e) = file.sync() {
                self.core.poison(format!("fsync failed: {e}"));
                drop(guard);
                reply(req, Err(LogError::Io(e)));
                return;
            }
            self.core.durable_len.store(self.len, Ordering::Release);
            offsets.push(start);
            at += n;
        }
        drop(guard);
        reply(req, Ok(offsets));
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::HashSet;

    fn random_payload(rng: &mut ChaCha8Rng, max: u32) -> Vec<u8> {
        let mut p = vec![0u8; (rng.next_u32() % (max + 1)) as usize];
        rng.fill_bytes(&mut p);
        p
    }

    fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode_into(&mut v, kind, payload).unwrap();
        v
    }

    fn all_frames(log: &Log) -> Vec<(u64, u8, Vec<u8>)> {
        log.iter_from(0).collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn log_handle_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Log>();
        fn check_send<T: Send>() {}
        check_send::<LogIter>();
    }

    #[test]
    fn round_trip_in_memory() {
        let mem = MemLog::new();
        let (log, rec) = Log::open(mem.clone()).unwrap();
        assert_eq!(
            rec,
            Recovery {
                frames: 0,
                valid_len: HEADER_LEN,
                truncated_bytes: 0
            }
        );
        assert!(log.is_empty());
        let a = log.append(1, b"hello").unwrap();
        let b = log.append(2, b"").unwrap();
        let c = log.append_batch(&[(3, b"x"), (4, b"yz")]).unwrap();
        assert_eq!(a, HEADER_LEN);
        assert_eq!(b, a + FRAME_HEADER_LEN as u64 + 5);
        assert_eq!(log.read(a).unwrap(), (1, b"hello".to_vec()));
        assert_eq!(log.read(b).unwrap(), (2, Vec::new()));
        assert_eq!(log.read(c[1]).unwrap(), (4, b"yz".to_vec()));
        assert_eq!(log.len(), mem.bytes().len() as u64);
        assert_eq!(log.len(), mem.synced_len());
        assert!(!log.is_empty());
        let frames = all_frames(&log);
        assert_eq!(frames.len(), 4);
        assert_eq!(frames[2], (c[0], 3, b"x".to_vec()));
        assert_eq!(log.iter_from(c[0]).count(), 2);
        assert_eq!(log.iter_from(log.len()).count(), 0);
        assert!(matches!(
            log.iter_from(log.len() + 1).next(),
            Some(Err(LogError::OutOfRange { .. }))
        ));
        let report = log.verify().unwrap();
        assert!(report.is_ok());
        assert_eq!(report.frames, 4);
        assert_eq!(mem.bytes()[..8], FILE_HEADER);
        assert_eq!(mem.bytes()[8..10], [0xFE, 0xC0]);

        drop(log);
        let (log, rec) = Log::open(mem.crash()).unwrap();
        assert_eq!(rec.frames, 4);
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(all_frames(&log), frames);
    }

    #[test]
    fn file_log_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entries.log");
        let (log, _) = Log::open_path(&path).unwrap();
        let offsets: Vec<u64> = (0..50u8)
            .map(|i| log.append(i, &vec![i; usize::from(i) * 7]).unwrap())
            .collect();
        for (i, off) in offsets.iter().enumerate() {
            let i = i as u8;
            assert_eq!(log.read(*off).unwrap(), (i, vec![i; usize::from(i) * 7]));
        }
        let len = log.len();
        drop(log);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        let (log, rec) = Log::open_path(&path).unwrap();
        assert_eq!(rec.frames, 50);
        assert_eq!(rec.valid_len, len);
        assert_eq!(log.read(offsets[49]).unwrap().1, vec![49; 343]);
        assert!(log.verify().unwrap().is_ok());
    }

    #[test]
    fn group_commit_from_eight_threads() {
        let mem = MemLog::new();
        // A slow disk makes appenders queue up behind the fsync in progress.
        mem.set_sync_delay(Duration::from_micros(500));
        let (log, _) = Log::open(mem.clone()).unwrap();
        let results: Vec<Vec<(u64, u8, Vec<u8>)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8u8)
                .map(|t| {
                    let log = log.clone();
                    s.spawn(move || {
                        (0..200u32)
                            .map(|i| {
                                let p = format!("thread {t} entry {i}").into_bytes();
                                (log.append(t, &p).unwrap(), t, p)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut seen = HashSet::new();
        for (off, kind, p) in results.iter().flatten() {
            assert!(seen.insert(*off), "offset {off} handed out twice");
            assert_eq!(log.read(*off).unwrap(), (*kind, p.clone()));
        }
        assert_eq!(seen.len(), 1600);
        assert_eq!(all_frames(&log).len(), 1600);
        // Each thread's appends are in its program order.
        for r in &results {
            assert!(r.windows(2).all(|w| w[0].0 < w[1].0));
        }
        // Fsyncs were shared: one at open plus fewer than one per append.
        assert!(mem.sync_count() < 1600, "syncs: {}", mem.sync_count());
    }

    #[test]
    fn append_batch_uses_one_fsync() {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let before = mem.sync_count();
        let payloads: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let items: Vec<(u8, &[u8])> = payloads.iter().map(|p| (9, p.as_slice())).collect();
        let offsets = log.append_batch(&items).unwrap();
        assert_eq!(mem.sync_count(), before + 1);
        assert_eq!(offsets.len(), 100);
        for (off, p) in offsets.iter().zip(&payloads) {
            assert_eq!(log.read(*off).unwrap(), (9, p.clone()));
        }
        assert!(log.append_batch(&[]).unwrap().is_empty());
    }

    #[test]
    fn sync_each_fsyncs_every_frame() {
        let mem = MemLog::new();
        let (log, _) = Log::open_with(mem.clone(), LogOptions { sync_each: true }).unwrap();
        let before = mem.sync_count();
        let a = log.append(1, b"a").unwrap();
        let bc = log.append_batch(&[(2, b"b"), (3, b"c")]).unwrap();
        assert_eq!(mem.sync_count(), before + 3);
        assert_eq!(log.read(a).unwrap(), (1, b"a".to_vec()));
        assert_eq!(log.read(bc[1]).unwrap(), (3, b"c".to_vec()));
        assert_eq!(log.len(), mem.synced_len());
    }

    #[test]
    fn torn_tail_is_truncated_and_every_ack_survives() {
        let mut rng = ChaCha8Rng::seed_from_u64(0xC0FE);
        let (mut truncated, mut unacked_kept) = (0, 0);
        for iteration in 0..200 {
            let mem = MemLog::new();
            let (log, _) = Log::open(mem.clone()).unwrap();
            let mut acked = Vec::new();
            for _ in 0..1 + rng.next_u32() % 8 {
                let kind = (rng.next_u32() % 0xFE) as u8;
                let p = random_payload(&mut rng, 300);
                acked.push((log.append(kind, &p).unwrap(), kind, p));
            }
            // Writes in flight when the power goes: written, never fsync'd, never acked.
            mem.set_fail_sync(true);
            let pending: Vec<(u8, Vec<u8>)> = (0..1 + rng.next_u32() % 4)
                .map(|_| ((rng.next_u32() % 0xFE) as u8, random_payload(&mut rng, 300)))
                .collect();
            let items: Vec<(u8, &[u8])> = pending.iter().map(|(k, p)| (*k, &p[..])).collect();
            assert!(log.append_batch(&items).is_err());
            drop(log);
            let durable = mem.synced_len();
            let unsynced = mem.bytes().len() as u64 - durable;
            let crashed = if iteration % 4 == 3 {
                // Some file systems leave garbage rather than a prefix of what was written.
                let mut bytes = mem.crash().bytes();
                let garbage = random_payload(&mut rng, 64);
                bytes.extend_from_slice(&garbage);
                MemLog::from_bytes(bytes)
            } else {
                mem.crash_torn(rng.next_u64() % (unsynced + 1))
            };
            let crashed_len = crashed.bytes().len() as u64;

            let (log, rec) = Log::open(crashed.clone()).unwrap();
            assert_eq!(rec.valid_len + rec.truncated_bytes, crashed_len);
            assert_eq!(crashed.bytes().len() as u64, rec.valid_len);
            assert!(rec.valid_len >= durable);
            for (off, kind, p) in &acked {
                assert_eq!(log.read(*off).unwrap(), (*kind, p.clone()));
            }
            let frames = all_frames(&log);
            assert_eq!(frames.len() as u64, rec.frames);
            assert!(frames.len() >= acked.len() && frames.len() <= acked.len() + pending.len());
            truncated += usize::from(rec.truncated_bytes > 0);
            unacked_kept += usize::from(frames.len() > acked.len());
            for (i, (_, kind, p)) in frames.iter().enumerate() {
                let (k, q) = match acked.get(i) {
                    Some((_, k, q)) => (k, q),
                    None => {
                        let (k, q) = &pending[i - acked.len()];
                        (k, q)
                    }
                };
                assert_eq!((kind, p), (k, q));
            }
            // The recovered log takes appends and reopens cleanly.
            let off = log.append(7, b"after").unwrap();
            drop(log);
            let (log, rec) = Log::open(crashed.crash()).unwrap();
            assert_eq!(rec.truncated_bytes, 0);
            assert_eq!(log.read(off).unwrap(), (7, b"after".to_vec()));
        }
        // The seeded tears cover both cases: cut tails, and whole unacked frames that made it.
        assert!(truncated > 100, "{truncated}");
        assert!(unacked_kept > 10, "{unacked_kept}");
    }

    #[test]
    fn unsynced_data_is_lost_but_acked_data_never_is() {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let a = log.append(1, b"acked").unwrap();
        mem.set_fail_sync(true);
        assert!(matches!(
            log.append(2, b"never acked"),
            Err(LogError::Io(_))
        ));
        assert!(mem.bytes().len() as u64 > mem.synced_len());
        let (log2, rec) = Log::open(mem.crash()).unwrap();
        assert_eq!(rec.frames, 1);
        assert_eq!(log2.read(a).unwrap(), (1, b"acked".to_vec()));
        assert_eq!(all_frames(&log2).len(), 1);
    }

    #[test]
    fn acks_survive_crashes_taken_during_concurrent_appends() {
        let mem = MemLog::new();
        mem.set_sync_delay(Duration::from_micros(200));
        let (log, _) = Log::open(mem.clone()).unwrap();
        let acks = Mutex::new(Vec::new());
        let mut snapshots = Vec::new();
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let (log, acks) = (log.clone(), &acks);
                s.spawn(move || {
                    for i in 0..150u32 {
                        let p = format!("{t}/{i}").into_bytes();
                        let off = log.append(t, &p).unwrap();
                        acks.lock().unwrap().push((off, t, p));
                    }
                });
            }
            for n in 0..20u64 {
                std::thread::sleep(Duration::from_millis(2));
                // Acks read *before* the crash must all be in it.
                let acked_before = acks.lock().unwrap().clone();
                snapshots.push((acked_before, mem.crash_torn(n * 37)));
            }
        });
        for (acked, crashed) in snapshots {
            let (log, _) = Log::open(crashed).unwrap();
            for (off, kind, p) in acked {
                assert_eq!(log.read(off).unwrap(), (kind, p));
            }
        }
    }

    fn ten_frames() -> (MemLog, Vec<u64>) {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let offsets = (0..10u8)
            .map(|i| log.append(i, &[i; 100]).unwrap())
            .collect();
        (mem, offsets)
    }

    #[test]
    fn corruption_in_the_middle_is_reported_not_truncated() {
        let (mem, offsets) = ten_frames();
        let bytes = mem.bytes();
        let f3 = offsets[3];
        // magic, kind, each len byte, crc, payload
        for delta in [0u64, 1, 2, 3, 4, 5, 6, 7, 11, 60] {
            for xor in [0x01u8, 0x80, 0xFF] {
                let bad = MemLog::from_bytes(bytes.clone());
                bad.corrupt(f3 + delta, xor);
                let before = bad.bytes();
                match Log::open(bad.clone()) {
                    Err(LogError::Corrupt { offset }) => assert_eq!(offset, f3),
                    other => panic!("delta {delta} xor {xor:#x}: {other:?}"),
                }
                assert_eq!(
                    bad.bytes(),
                    before,
                    "a refused open must not change the file"
                );
            }
        }
        // Operator repair cuts at the first bad frame.
        let bad = MemLog::from_bytes(bytes.clone());
        bad.corrupt(f3 + 40, 0x10);
        let rec = Log::repair(bad.clone()).unwrap();
        assert_eq!(rec.frames, 3);
        assert_eq!(rec.valid_len, f3);
        assert_eq!(rec.truncated_bytes, bytes.len() as u64 - f3);
        let (log, rec) = Log::open(bad).unwrap();
        assert_eq!(rec.frames, 3);
        assert_eq!(all_frames(&log).len(), 3);
    }

    #[test]
    fn corrupt_last_frame_is_a_tail_and_reported() {
        let (mem, offsets) = ten_frames();
        let bad = MemLog::from_bytes(mem.bytes());
        bad.corrupt(offsets[9] + 50, 0x04);
        let (log, rec) = Log::open(bad).unwrap();
        assert_eq!(rec.frames, 9);
        assert_eq!(rec.valid_len, offsets[9]);
        assert_eq!(rec.truncated_bytes, FRAME_HEADER_LEN as u64 + 100);
        assert_eq!(all_frames(&log).len(), 9);
    }

    #[test]
    fn verify_and_read_report_damage_on_a_live_log() {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let offsets: Vec<u64> = (0..10u8)
            .map(|i| log.append(i, &[i; 100]).unwrap())
            .collect();
        mem.corrupt(offsets[2] + 20, 0x01);
        mem.corrupt(offsets[6], 0xFF);
        assert!(matches!(
            log.read(offsets[2]),
            Err(LogError::Corrupt { offset }) if offset == offsets[2]
        ));
        assert!(matches!(
            log.read(offsets[6]),
            Err(LogError::Corrupt { .. })
        ));
        assert!(log.read(offsets[3]).is_ok());
        let report = log.verify().unwrap();
        assert!(!report.is_ok());
        assert_eq!(report.frames, 8);
        assert_eq!(report.corrupt_regions, 2);
        assert_eq!(
            report.corrupt,
            vec![
                CorruptRegion {
                    offset: offsets[2],
                    len: offsets[3] - offsets[2]
                },
                CorruptRegion {
                    offset: offsets[6],
                    len: offsets[7] - offsets[6]
                },
            ]
        );
        let items: Vec<_> = log.iter_from(0).collect();
        assert_eq!(items.len(), 3);
        assert!(matches!(items[2], Err(LogError::Corrupt { .. })));
    }

    #[test]
    fn random_offsets_never_panic() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let mut valid = HashSet::new();
        for _ in 0..100 {
            let p = random_payload(&mut rng, 200);
            valid.insert(log.append((rng.next_u32() % 0xFE) as u8, &p).unwrap());
        }
        let len = log.len();
        for i in 0..20_000u64 {
            let off = match i % 3 {
                0 => rng.next_u64(),
                _ => rng.next_u64() % (len + 64),
            };
            if log.read(off).is_ok() {
                assert!(
                    valid.contains(&off),
                    "read a frame at non-frame offset {off}"
                );
            }
            if i % 100 == 0 {
                for item in log.iter_from(off).take(3) {
                    let _ = item;
                }
            }
        }
        for &off in &[0, 1, HEADER_LEN - 1, len - 1, len, u64::MAX] {
            assert!(log.read(off).is_err());
        }
        // Damage (also to the length field) still gives errors, never a panic.
        for _ in 0..200 {
            mem.corrupt(rng.next_u64() % len, (rng.next_u32() as u8) | 1);
        }
        for &off in &valid {
            let _ = log.read(off);
        }
        let _ = log.verify().unwrap();
        let _ = all_frames_lossy(&log);
    }

    fn all_frames_lossy(log: &Log) -> usize {
        log.iter_from(0).filter(Result::is_ok).count()
    }

    #[test]
    fn oversized_payload_is_refused() {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let big = vec![0u8; MAX_PAYLOAD + 1];
        assert!(matches!(
            log.append(1, &big),
            Err(LogError::TooLarge { len }) if len == MAX_PAYLOAD as u64 + 1
        ));
        assert!(matches!(
            log.append_batch(&[(1, b"ok"), (1, &big)]),
            Err(LogError::TooLarge { .. })
        ));
        assert!(log.is_empty(), "nothing of a refused batch is written");
        let off = log.append(1, &big[..MAX_PAYLOAD]).unwrap();
        assert_eq!(log.read(off).unwrap().1.len(), MAX_PAYLOAD);
        let (_, rec) = Log::open(mem.crash()).unwrap();
        assert_eq!(rec.frames, 1);
    }

    #[test]
    fn wrong_file_is_refused_and_torn_header_recreated() {
        let other = MemLog::from_bytes(b"SQLite format 3\0 and more".to_vec());
        assert!(matches!(Log::open(other.clone()), Err(LogError::BadHeader)));
        assert_eq!(other.bytes(), b"SQLite format 3\0 and more");
        assert!(matches!(
            Log::open(MemLog::from_bytes(b"xyz".to_vec())),
            Err(LogError::BadHeader)
        ));
        let torn = MemLog::from_bytes(b"COPH".to_vec());
        let (log, rec) = Log::open(torn.clone()).unwrap();
        assert_eq!(rec.truncated_bytes, 4);
        assert_eq!(torn.bytes(), FILE_HEADER);
        assert!(log.is_empty());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, b"hello, this is not a log").unwrap();
        assert!(matches!(Log::open_path(&path), Err(LogError::BadHeader)));
        assert_eq!(std::fs::read(&path).unwrap(), b"hello, this is not a log");
    }

    #[test]
    fn file_log_recovers_from_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("torn.log");
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let mut acked = Vec::new();
        {
            let (log, _) = Log::open_path(&path).unwrap();
            for i in 0..20u8 {
                let p = random_payload(&mut rng, 500);
                acked.push((log.append(i, &p).unwrap(), i, p));
            }
        }
        let clean_len = std::fs::metadata(&path).unwrap().len();
        for tail in [
            // Half of a frame.
            encode(99, &[5u8; 300])[..150].to_vec(),
            // Just part of a frame header.
            encode(99, b"abc")[..5].to_vec(),
            // Garbage.
            random_payload(&mut rng, 4000),
            // Zeros (a file system that extended the size but lost the data).
            vec![0u8; 4096],
        ] {
            if tail.is_empty() {
                continue;
            }
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(&tail).unwrap();
            drop(f);
            let (log, rec) = Log::open_path(&path).unwrap();
            assert_eq!(rec.truncated_bytes, tail.len() as u64);
            assert_eq!(rec.valid_len, clean_len);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), clean_len);
            for (off, kind, p) in &acked {
                assert_eq!(log.read(*off).unwrap(), (*kind, p.clone()));
            }
        }
        let (log, _) = Log::open_path(&path).unwrap();
        let off = log.append(1, b"more").unwrap();
        drop(log);
        let (log, rec) = Log::open_path(&path).unwrap();
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(rec.frames, 21);
        assert_eq!(log.read(off).unwrap(), (1, b"more".to_vec()));
    }

    #[test]
    fn failed_fsync_fails_every_waiter_and_poisons_the_log() {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let a = log.append(1, b"before").unwrap();
        mem.set_fail_sync(true);
        mem.set_sync_delay(Duration::from_millis(2));
        let results: Vec<Result<u64, LogError>> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let log = log.clone();
                    s.spawn(move || log.append(2, b"during"))
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(Result::is_err));
        assert!(results.iter().any(|r| matches!(r, Err(LogError::Io(_)))));
        mem.set_fail_sync(false);
        let err = log.append(3, b"after").unwrap_err();
        assert!(matches!(err, LogError::Poisoned { .. }), "{err}");
        assert!(err.to_string().contains("fsync failed"));
        // Reads of what was durable still work; nothing unsynced became visible.
        assert_eq!(log.read(a).unwrap(), (1, b"before".to_vec()));
        assert_eq!(all_frames(&log).len(), 1);
        // Reopening from disk is the way back.
        drop(log);
        let (log, _) = Log::open(mem.crash()).unwrap();
        assert!(log.append(4, b"reopened").is_ok());
    }

    #[test]
    fn disk_full_is_reported_and_rolled_back() {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let a = log.append(1, b"fits").unwrap();
        let len = log.len();
        mem.set_capacity(Some(len + 20));
        match log.append(2, &[7u8; 100]) {
            Err(LogError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::StorageFull),
            other => panic!("{other:?}"),
        }
        assert_eq!(mem.bytes().len() as u64, len, "partial frame removed");
        assert_eq!(log.len(), len);
        // Not poisoned: once there is room again, appends work.
        mem.set_capacity(None);
        let b = log.append(3, b"room again").unwrap();
        assert_eq!(b, len);
        let (log, rec) = Log::open(mem.crash()).unwrap();
        assert_eq!(rec.frames, 2);
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(log.read(a).unwrap().0, 1);
    }

    #[test]
    fn dropping_the_last_handle_stops_the_writer() {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let other = log.clone();
        log.append(1, b"x").unwrap();
        drop(log);
        other.append(2, b"y").unwrap();
        let iter = other.iter_from(0);
        drop(other);
        // The iterator keeps a reader, not the writer.
        assert_eq!(iter.count(), 2);
        // The writer thread has exited and released the storage.
        assert_eq!(Arc::strong_count(&mem.state), 1);
    }

    /// Storage without a concurrent reader: reads go through the writer's lock.
    struct NoReader(MemLog);

    impl LogFile for NoReader {
        fn len(&self) -> io::Result<u64> {
            self.0.len()
        }
        fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
            LogFile::read_at(&self.0, off, buf)
        }
        fn append(&mut self, data: &[u8]) -> io::Result<()> {
            self.0.append(data)
        }
        fn sync(&mut self) -> io::Result<()> {
            self.0.sync()
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.0.truncate(len)
        }
    }

    #[test]
    fn storage_without_a_reader_works_through_the_lock() {
        let mem = MemLog::new();
        let (log, _) = Log::open(NoReader(mem.clone())).unwrap();
        std::thread::scope(|s| {
            for t in 0..3u8 {
                let log = log.clone();
                s.spawn(move || {
                    for i in 0..50u8 {
                        let off = log.append(t, &[i; 10]).unwrap();
                        assert_eq!(log.read(off).unwrap(), (t, vec![i; 10]));
                    }
                });
            }
        });
        assert_eq!(all_frames(&log).len(), 150);
        assert!(log.verify().unwrap().is_ok());
        drop(log);
        assert_eq!(Arc::strong_count(&mem.state), 1);
    }

    #[test]
    fn an_atomic_batch_cut_at_any_byte_is_all_or_nothing() {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let before = log.append_batch(&[(1, b"first"), (2, b"second")]).unwrap();
        let before_len = log.len();
        let items: [(u8, &[u8]); 3] = [(1, b"alpha"), (1, b"beta"), (2, b"audit event")];
        let offsets = log.append_atomic(&items).unwrap();
        assert_eq!(offsets.len(), items.len() + 2, "begin, items, commit");
        assert_eq!(log.read(offsets[0]).unwrap().0, KIND_BATCH_BEGIN);
        assert_eq!(log.read(offsets[4]).unwrap().0, KIND_BATCH_COMMIT);
        for (off, (k, p)) in offsets[1..4].iter().zip(&items) {
            assert_eq!(log.read(*off).unwrap(), (*k, p.to_vec()));
        }
        let after_len = log.len();
        drop(log);
        let bytes = mem.bytes();
        assert_eq!(bytes.len() as u64, after_len);
        for cut in before_len..=after_len {
            let (log, rec) = Log::open(MemLog::from_bytes(bytes[..cut as usize].to_vec())).unwrap();
            let frames = all_frames(&log);
            let kinds: Vec<u8> = frames.iter().map(|f| f.1).collect();
            if cut == after_len {
                assert_eq!(rec.truncated_bytes, 0);
                assert_eq!(frames.len(), 7, "cut at {cut}");
                assert_eq!(kinds[2..], [KIND_BATCH_BEGIN, 1, 1, 2, KIND_BATCH_COMMIT]);
            } else {
                assert_eq!(rec.valid_len, before_len, "cut at {cut}");
                assert_eq!(rec.truncated_bytes, cut - before_len);
                assert_eq!(kinds, [1, 2], "cut at {cut}");
                assert_eq!(rec.frames, 2);
            }
            assert_eq!(log.read(before[1]).unwrap(), (2, b"second".to_vec()));
        }
    }

    #[test]
    fn batch_markers_are_reserved_and_single_items_need_none() {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        for kind in [KIND_BATCH_BEGIN, KIND_BATCH_COMMIT] {
            assert!(matches!(
                log.append_batch(&[(1, b"a"), (kind, b"x")]),
                Err(LogError::ReservedKind { .. })
            ));
            assert!(matches!(
                log.append_atomic(&[(1, b"a"), (kind, b"x")]),
                Err(LogError::ReservedKind { .. })
            ));
        }
        assert!(log.is_empty(), "nothing written");
        let one = log.append_atomic(&[(1, b"only")]).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(all_frames(&log).len(), 1);
    }

    #[test]
    fn misplaced_markers_in_the_middle_are_corruption_and_repair_cuts_there() {
        let count = 2u32.to_le_bytes();
        let mut bytes = FILE_HEADER.to_vec();
        bytes.extend(encode(1, b"kept"));
        let bad = bytes.len() as u64;
        // A begin whose batch never commits, followed by acknowledged-looking frames.
        bytes.extend(encode(KIND_BATCH_BEGIN, &count));
        bytes.extend(encode(1, b"a"));
        bytes.extend(encode(KIND_BATCH_BEGIN, &count));
        bytes.extend(encode(1, b"b"));
        bytes.extend(encode(1, b"c"));
        bytes.extend(encode(KIND_BATCH_COMMIT, &count));
        bytes.extend(encode(1, b"later"));
        match Log::open(MemLog::from_bytes(bytes.clone())) {
            Err(LogError::Corrupt { .. }) => {}
            other => panic!("expected corruption, got {other:?}"),
        }
        let mem = MemLog::from_bytes(bytes);
        let rec = Log::repair(mem.clone()).unwrap();
        assert_eq!(rec.valid_len, bad);
        let (log, _) = Log::open(mem).unwrap();
        assert_eq!(all_frames(&log).len(), 1);

        // A commit with the wrong count, or without a begin, at the very end is a torn tail.
        for tail in [
            vec![
                encode(KIND_BATCH_BEGIN, &count),
                encode(1, b"a"),
                encode(KIND_BATCH_COMMIT, &1u32.to_le_bytes()),
            ],
            vec![encode(KIND_BATCH_COMMIT, &count)],
        ] {
            let mut bytes = FILE_HEADER.to_vec();
            bytes.extend(encode(1, b"kept"));
            for f in tail {
                bytes.extend(f);
            }
            let (log, rec) = Log::open(MemLog::from_bytes(bytes)).unwrap();
            assert_eq!(rec.valid_len, bad);
            assert_eq!(all_frames(&log).len(), 1);
        }
    }

    #[test]
    fn verify_reports_a_batch_whose_commit_was_overwritten() {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let offsets = log.append_atomic(&[(1, b"a"), (1, b"b")]).unwrap();
        log.append(1, b"after").unwrap();
        assert!(log.verify().unwrap().is_ok());
        // Replace the commit marker, in place, with a valid frame of another kind and the
        // same length (damage a CRC cannot see).
        let commit = offsets[3];
        let old = encode(KIND_BATCH_COMMIT, &2u32.to_le_bytes());
        let new = encode(1, b"zzzz");
        assert_eq!(old.len(), new.len());
        for (i, (o, n)) in old.iter().zip(&new).enumerate() {
            mem.corrupt(commit + i as u64, o ^ n);
        }
        let report = log.verify().unwrap();
        assert_eq!(report.corrupt_regions, 1, "{report:?}");
        assert_eq!(report.corrupt[0].offset, commit);
        // Opening refuses it as corruption in the middle; repair cuts the batch whole.
        drop(log);
        assert!(matches!(
            Log::open(mem.crash()),
            Err(LogError::Corrupt { .. })
        ));
        let rec = Log::repair(mem.clone()).unwrap();
        assert_eq!(rec.valid_len, offsets[0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_payloads_round_trip(
            items in prop::collection::vec(
                (0u8..0xFE, prop::collection::vec(any::<u8>(), 0..600), any::<bool>()),
                0..40,
            )
        ) {
            let mem = MemLog::new();
            let (log, _) = Log::open(mem.clone()).unwrap();
            let mut expect = Vec::new();
            let mut batch: Vec<(u8, &[u8])> = Vec::new();
            for (kind, payload, flush) in &items {
                batch.push((*kind, payload.as_slice()));
                if *flush {
                    for (off, (k, p)) in log.append_batch(&batch).unwrap().into_iter().zip(&batch) {
                        expect.push((off, *k, p.to_vec()));
                    }
                    batch.clear();
                }
            }
            for (kind, payload) in batch {
                expect.push((log.append(kind, payload).unwrap(), kind, payload.to_vec()));
            }
            for (off, kind, payload) in &expect {
                prop_assert_eq!(log.read(*off).unwrap(), (*kind, payload.clone()));
            }
            prop_assert_eq!(&all_frames(&log), &expect);
            drop(log);
            let (log, rec) = Log::open(mem.crash()).unwrap();
            prop_assert_eq!(rec.truncated_bytes, 0);
            prop_assert_eq!(rec.frames, expect.len() as u64);
            prop_assert_eq!(&all_frames(&log), &expect);
        }
    }
}
