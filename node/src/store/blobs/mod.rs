//! The blob store: documents' bytes (PDFs, scans, DICOM files), content-addressed and
//! durable, served and received in verified slices (issue 14, step 1; `docs/documents.md`).
//!
//! A blob is an opaque run of bytes (later ciphertext: blind hosting seals a document before
//! it reaches the store) named by its [`BlobHash`], the plain BLAKE3 hash of exactly those
//! bytes. Beside the bytes the store keeps their *outboard*: the inner hashes of the BLAKE3
//! tree down to chunk groups of [`GROUP_BYTES`] (16 KiB), computed and checked with the
//! `bao-tree` crate (BLAKE3 verified streaming; no hashing of our own). With it any run of
//! whole chunk groups can be checked against the blob's hash alone, so a peer's slice is
//! verified before a byte of it is stored, and every read is checked before it is returned.
//!
//! # Files
//!
//! One directory ([`BlobDir`]: [`FsDir`] on disk, [`MemDir`] in memory for fault tests), flat:
//!
//! ```text
//! <hex>.blob    a complete blob: header, data, outboard
//! <hex>.part    a blob being received: the same layout, filled in as slices arrive
//! <hex>.ranges  which byte ranges of <hex>.part are present and durable
//! tmp-<n>       an import (or a ranges rewrite) not yet renamed into place
//! ```
//!
//! `<hex>` is the hash in 64 lowercase hex digits. A `.blob` and a `.part` file are:
//!
//! ```text
//! [header; 64][data; size][outboard; (groups - 1) * 64]
//! header = [magic "COPHRBL1"][hash; 32][size u64 LE][group log u8 = 4][zero; 11]
//!          [crc32 of the 60 bytes before, u32 LE]
//! ```
//!
//! The outboard is bao-tree's post-order outboard: one pair of 32-byte child hashes per
//! tree node above the chunk groups, in post order. A `.ranges` file is the magic
//! `"COPHRBR1"` followed by 20-byte records `[offset u64 LE][len u64 LE][crc32 of the 16
//! bytes before, u32 LE]`, each a run of whole chunk groups whose data and proof are durable
//! in the `.part` file.
//!
//! # Durability
//!
//! - **Import** ([`BlobStore::import`]) streams the reader into `tmp-<n>` while hashing (a
//!   64 KiB buffer: never the whole file in memory), reads the data back to compute the
//!   outboard (a second pass, which also checks that the bytes read back hash as the bytes
//!   written), writes the header, fsyncs the file, renames it to `<hex>.blob` and fsyncs the
//!   directory. Only then is the blob reported held.
//! - **Receiving** ([`BlobStore::begin`], [`BlobStore::write_slice`]): a slice is decoded and
//!   checked against the hash in memory, whole, before anything is written; its data and
//!   proof go into the `.part` file, which is fsync'd, and only then is its range appended
//!   to `.ranges` and fsync'd. A range recorded is therefore a range durable. When every
//!   range is present, the whole `.part` file is read back and checked against the hash, and
//!   then renamed to `<hex>.blob` and the directory fsync'd: completion is one rename.
//! - **What is reported**: the store's own index of complete blobs changes only after the
//!   directory fsync succeeded, so no blob is reported held that a power loss could take
//!   away. A failed fsync is returned as [`BlobError::Io`]; the blob is then not held, and a
//!   later import or receive does the work again.
//!
//! # Recovery
//!
//! [`BlobStore::open`] lists the directory: temporary files are deleted (unfinished imports);
//! a `.blob` whose header, name or length is wrong is reported in [`Recovery::damaged`] and
//! not served (a later receive of the same hash replaces it); a `.part` with a bad header is
//! deleted with its `.ranges` (only progress is lost); a good `.part` resumes from its
//! `.ranges` records, read up to the first torn or bad record (the file is cut there); a
//! `.part` or `.ranges` left beside a complete `.blob` is deleted. Open reads headers, not
//! data: a blob's bytes are checked on every read ([`BlobStore::open_blob`],
//! [`BlobStore::read_range`], [`BlobStore::slice`]) and as a whole by [`BlobStore::verify`].
//!
//! # Concurrency
//!
//! A [`BlobStore`] is shared between threads. Reads take no lock beyond a look-up; a
//! received slice is checked outside any lock, then written under its partial blob's own
//! lock (one writer per partial); creating a partial, and renaming a blob into place with
//! its directory fsync, happen under the store's lock, so no `begin` or `remove` of the
//! same hash comes in between.
//!
//! One [`BlobStore`] owns its directory: the caller keeps a second process away (the node's
//! store lock covers its home).
//!
//! # Layout
//!
//! `dir.rs` (the [`BlobDir`]/[`BlobFile`] storage traits and [`FsDir`]), `mem.rs`
//! ([`MemDir`], crash and fault simulation), `format.rs` (header, names, range records, the
//! set of present ranges), `verify.rs` (bao-tree glue: outboards, verified reads, slices),
//! `store.rs` ([`BlobStore`]), `reader.rs` ([`BlobReader`]).

use std::fmt;
use std::io;

mod dir;
mod format;
mod mem;
mod reader;
mod store;
mod verify;

#[cfg(test)]
mod tests;

pub use dir::{BlobDir, BlobFile, FsDir};
pub use mem::MemDir;
pub use reader::BlobReader;
pub use store::{BlobStore, Progress, Recovery};
pub use verify::Slice;

/// Log base 2 of the number of 1 KiB BLAKE3 chunks in a chunk group.
pub const GROUP_LOG: u8 = 4;

/// Bytes in a chunk group (16 KiB): the unit of proofs, slices and present ranges. The
/// outboard holds 64 bytes per group, about 0.4 % of the data.
pub const GROUP_BYTES: u64 = 1024 << GROUP_LOG;

/// The largest blob the store takes (4 GiB), by import or by receiving: the protocol's
/// limit on a document.
pub use cophr_protocol::blob::MAX_BLOB_BYTES;

/// The most data bytes one [`Slice`] carries (1 MiB, 64 chunk groups).
pub const MAX_SLICE_DATA: u64 = 1 << 20;

/// The most encoded bytes (data and proof) one [`Slice`] may have: [`MAX_SLICE_DATA`] plus
/// room for the proof (about 6 KiB at worst for a 4 GiB blob; a test checks the bound).
pub const MAX_SLICE_BYTES: u64 = MAX_SLICE_DATA + 16 * 1024;

/// Bytes of received slices [`BlobStore::write_slice_batched`] lets wait before it makes
/// them durable together (16 MiB: one fsync of the data and one of the range records per
/// 16 slices of 1 MiB, where [`BlobStore::write_slice`] does two per slice).
pub const SYNC_BATCH_BYTES: u64 = 16 << 20;

/// Blobs that may be partly received at once (default of [`BlobLimits::max_partials`]).
pub const MAX_PARTIALS: usize = 16;

/// Total declared size of the blobs partly received at once (8 GiB; default of
/// [`BlobLimits::max_partial_bytes`]).
pub const MAX_PARTIAL_BYTES: u64 = 2 * MAX_BLOB_BYTES;

/// The most bytes one [`BlobStore::read_range`] returns (16 MiB); [`BlobStore::open_blob`]
/// streams any length.
pub const MAX_READ_BYTES: u64 = 16 << 20;

/// Limits a [`BlobStore`] enforces; [`BlobLimits::default`] gives the named constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobLimits {
    /// The largest blob taken (capped at [`MAX_BLOB_BYTES`]).
    pub max_blob_bytes: u64,
    /// Blobs partly received at once.
    pub max_partials: usize,
    /// Total declared size of the blobs partly received at once.
    pub max_partial_bytes: u64,
}

impl Default for BlobLimits {
    fn default() -> Self {
        BlobLimits {
            max_blob_bytes: MAX_BLOB_BYTES,
            max_partials: MAX_PARTIALS,
            max_partial_bytes: MAX_PARTIAL_BYTES,
        }
    }
}

/// A blob's name: the BLAKE3 hash of its bytes (the protocol's document hash: entries
/// name documents by it). Printed as 64 lowercase hex digits.
pub use cophr_protocol::blob::{BadBlobHash, BlobHash};

/// Why a received [`Slice`] was refused. Nothing stored changed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SliceFault {
    /// It carries no data.
    Empty,
    /// Its offset, or its end short of the blob's end, is not a multiple of [`GROUP_BYTES`].
    Misaligned,
    /// It reaches past the blob's declared size.
    OutOfBounds,
    /// It covers more than [`MAX_SLICE_DATA`] bytes of data.
    TooLong {
        /// Data bytes it claims to cover.
        len: u64,
    },
    /// Its encoding is longer than [`MAX_SLICE_BYTES`].
    TooManyBytes {
        /// Encoded bytes.
        len: u64,
    },
    /// Its encoding ends before the data and proof its range needs.
    Truncated,
    /// Its encoding has bytes after the data and proof of its range.
    TrailingBytes {
        /// How many.
        extra: u64,
    },
    /// The data of the chunk group at `offset` does not hash to what the proof says.
    DataMismatch {
        /// Byte offset of the first chunk that failed.
        offset: u64,
    },
    /// A proof node (covering the bytes from `offset`) does not hash to its parent, or the
    /// top one not to the blob's hash.
    ProofMismatch {
        /// Byte offset of the first byte the failing node covers.
        offset: u64,
    },
}

impl fmt::Display for SliceFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SliceFault::Empty => f.write_str("it carries no data"),
            SliceFault::Misaligned => write!(
                f,
                "it does not start and end on {GROUP_BYTES}-byte chunk group boundaries"
            ),
            SliceFault::OutOfBounds => f.write_str("it reaches past the blob's size"),
            SliceFault::TooLong { len } => write!(
                f,
                "it covers {len} bytes, more than the limit of {MAX_SLICE_DATA}"
            ),
            SliceFault::TooManyBytes { len } => write!(
                f,
                "its encoding has {len} bytes, more than the limit of {MAX_SLICE_BYTES}"
            ),
            SliceFault::Truncated => f.write_str("its encoding is cut short"),
            SliceFault::TrailingBytes { extra } => {
                write!(f, "its encoding has {extra} bytes too many")
            }
            SliceFault::DataMismatch { offset } => write!(
                f,
                "the data at byte offset {offset} does not match the blob's hash"
            ),
            SliceFault::ProofMismatch { offset } => write!(
                f,
                "the proof for the bytes from offset {offset} does not match the blob's hash"
            ),
        }
    }
}

/// Which limit a [`BlobError::LimitReached`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`BlobLimits::max_partials`].
    Partials,
    /// [`BlobLimits::max_partial_bytes`].
    PartialBytes,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::Partials => "the number of blobs being received",
            Limit::PartialBytes => "the total size of the blobs being received",
        })
    }
}

/// Errors of the blob store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No complete blob (or, where a partial one is meant, no partial one) with this hash.
    #[error("blob {hash} is not held here")]
    NotFound {
        /// The hash asked for.
        hash: BlobHash,
    },
    /// Stored bytes (data, proof or header) do not match the blob's hash: bit rot or
    /// tampering. Nothing wrong was returned; fetch the blob again from a peer.
    #[error(
        "blob {hash} is corrupt at byte offset {offset}: its stored bytes do not match its \
         hash; fetch it again from a peer"
    )]
    Corrupt {
        /// The blob.
        hash: BlobHash,
        /// Byte offset (in the blob's data) of the first damage found.
        offset: u64,
    },
    /// A received slice failed its checks; nothing stored changed.
    #[error("slice of blob {hash} at byte offset {offset} refused: {fault}")]
    SliceRejected {
        /// The blob.
        hash: BlobHash,
        /// The slice's offset.
        offset: u64,
        /// What was wrong.
        fault: SliceFault,
    },
    /// A blob larger than the store takes; nothing was kept.
    #[error("a blob of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Its size (for an import, the bytes read before the limit was passed).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Too many blobs, or too many bytes, are being received at once.
    #[error("cannot receive another blob: {limit} has reached its limit of {max}")]
    LimitReached {
        /// Which limit.
        limit: Limit,
        /// Its value.
        max: u64,
    },
    /// A blob is declared with a size other than the one it is held or received with.
    #[error("blob {hash} has {known} bytes here, not {declared}")]
    SizeMismatch {
        /// The blob.
        hash: BlobHash,
        /// The size it has here.
        known: u64,
        /// The size declared.
        declared: u64,
    },
    /// No blob of this size can have this hash (an empty blob has one hash only).
    #[error("no blob of {size} bytes has hash {hash}")]
    HashMismatch {
        /// The hash declared.
        hash: BlobHash,
        /// The size declared.
        size: u64,
    },
    /// A range asked for is not inside the blob, or not aligned where it must be.
    #[error("range of {len} bytes at offset {offset} is not a valid range of blob {hash} ({size} bytes): {reason}")]
    InvalidRange {
        /// The blob.
        hash: BlobHash,
        /// Offset asked for.
        offset: u64,
        /// Length asked for.
        len: u64,
        /// The blob's size.
        size: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A read asked for more than [`MAX_READ_BYTES`]; use [`BlobStore::open_blob`].
    #[error("a read of {len} bytes is larger than the limit of {limit}; stream it instead")]
    ReadTooLarge {
        /// Bytes asked for.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The storage failed (disk full, failed fsync, ...). For a write, the operation did not
    /// take effect as far as the store reports.
    #[error("blob storage I/O error: {0}")]
    Io(#[from] io::Error),
}

impl BlobError {
    /// This error as an `io::Error` (for [`std::io::Read`]): storage errors as they were,
    /// others as `InvalidData` carrying this error.
    pub fn into_io(self) -> io::Error {
        match self {
            BlobError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}
