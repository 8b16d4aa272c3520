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
//! Given [`LogOptions::scan_from`] (the store passes its index's applied position, which only
//! ever covers acknowledged frames), the scan starts there instead, so opening costs the tail
//! written since, not the whole history (a host of a million records starts in the time of
//! its tail). Anything unexpected there — not a frame boundary, past the end, a torn or bad
//! frame, a batch begun before it — falls back to the whole scan above, so torn tails are
//! cut exactly as before. What it gives up: bit rot in frames *before* the position is not
//! found at open but by the first read of the damaged frame (every read checks the frame's
//! CRC; the store checks each entry's hash) and by [`Log::verify`] (`cophr verify`).
//!
//! # Atomic batches
//!
//! [`Log::append_atomic`] writes its frames between a begin marker (payload: the number of
//! frames, u32 LE) and a commit marker (the same number). Recovery treats a batch whose
//! commit is not on disk as not written at all: the tail is cut back to its begin marker.
//! A marker out of place (a begin inside a batch, a commit without its begin or with the
//! wrong count) is a bad frame like any other. Readers ([`Log::iter_from`]) see the markers
//! as frames; a log without markers (older logs) reads as before.
//!
//! # Layout
//!
//! `file.rs` (the [`LogFile`] storage trait and [`FileLog`]), `mem.rs` ([`MemLog`], for
//! crash tests), `frame.rs` (encoding frames and scanning for them), `batch.rs` (the batch
//! markers' structure), `open.rs` (open and recovery), `handle.rs` (the [`Log`] handle:
//! appends and reads), `writer.rs` (the writer thread and group commit), `verify.rs`
//! (verify and repair).

use std::io;

mod batch;
mod file;
mod frame;
mod handle;
mod mem;
mod open;
mod verify;
mod writer;

#[cfg(test)]
mod tests;

pub use file::{FileLog, LogFile, LogRead};
pub use handle::{Log, LogIter};
pub use mem::MemLog;
pub use open::{LogOptions, Recovery};
pub use verify::{CorruptRegion, VerifyReport};

use batch::BatchCheck;
use frame::{
    encode_into, frame_crc, lock_file, parse_frame_header, ReadAt, Reader, Resync, SharedFile,
    Window,
};
use handle::{Budget, Core, Request, Shared};
use open::recover;
use writer::Writer;

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
