//! The bao-tree glue: a stored file's data and outboard as bao-tree sees them, verified
//! reads, slices served and slices checked.
//!
//! Every check of bytes against a hash is bao-tree's (`DecodeResponseIter`,
//! `encode_ranges_validated`, `outboard_post_order`); this module only moves bytes between
//! files and those functions and names the errors.

use std::io::{self, BufWriter, Cursor, Read, Write};

use bao_tree::io::outboard::PostOrderOutboard;
use bao_tree::io::sync::{
    encode_ranges, encode_ranges_validated, outboard_post_order, DecodeResponseIter, OutboardMut,
    ReadAt, Size, WriteAt,
};
use bao_tree::io::{BaoContentItem, DecodeError, EncodeError, Leaf, Parent};
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges, TreeNode};

use super::format::{outboard_len, HEADER_LEN};
use super::{BlobError, BlobFile, BlobHash, SliceFault, GROUP_LOG, MAX_SLICE_BYTES};

/// Chunk groups of 2^[`GROUP_LOG`] chunks.
pub const BLOCK: BlockSize = BlockSize::from_chunk_log(GROUP_LOG);

/// The tree of a blob of `size` bytes.
pub fn tree(size: u64) -> BaoTree {
    BaoTree::new(size, BLOCK)
}

/// The chunk ranges of the bytes `start..end` of a blob of `size` bytes (`start` on a group
/// boundary; `end` on one, or the blob's end). A range to the end is open, as bao-tree's
/// canonical form has it, so encoder and decoder agree.
pub fn chunk_ranges(start: u64, end: u64, size: u64) -> ChunkRanges {
    let s = ChunkNum::full_chunks(start);
    if end >= size {
        ChunkRanges::from(s..)
    } else {
        ChunkRanges::from(s..ChunkNum::full_chunks(end))
    }
}

/// A verified slice of a blob: the bao encoding (proof nodes and data, in pre-order) of the
/// bytes `offset..offset + len`, a run of whole chunk groups. Made by
/// [`BlobStore::slice`](super::BlobStore::slice), taken by
/// [`BlobStore::write_slice`](super::BlobStore::write_slice), which checks it against the
/// blob's hash alone.
#[derive(Clone, PartialEq, Eq)]
pub struct Slice {
    /// Byte offset of the first byte (a multiple of [`GROUP_BYTES`](super::GROUP_BYTES)).
    pub offset: u64,
    /// Bytes of data covered (whole groups, or up to the blob's end).
    pub len: u64,
    /// The encoding: at most [`MAX_SLICE_BYTES`].
    pub encoded: Vec<u8>,
}

impl std::fmt::Debug for Slice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the content.
        f.debug_struct("Slice")
            .field("offset", &self.offset)
            .field("len", &self.len)
            .field("encoded_len", &self.encoded.len())
            .finish()
    }
}

/// A byte region of a stored file, as bao-tree reads it.
struct Region<'a> {
    file: &'a dyn BlobFile,
    base: u64,
    len: u64,
}

impl ReadAt for Region<'_> {
    fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        if pos >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let n = usize::try_from(self.len - pos).map_or(buf.len(), |left| left.min(buf.len()));
        self.file.read_at(self.base + pos, &mut buf[..n])?;
        Ok(n)
    }
}

impl Size for Region<'_> {
    fn size(&self) -> io::Result<Option<u64>> {
        Ok(Some(self.len))
    }
}

/// A writable byte region of a stored file (a partial blob's outboard).
struct RegionMut<'a> {
    file: &'a dyn BlobFile,
    base: u64,
}

impl WriteAt for RegionMut<'_> {
    fn write_at(&mut self, pos: u64, buf: &[u8]) -> io::Result<usize> {
        self.file.write_at(self.base + pos, buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn data_region(file: &dyn BlobFile, size: u64) -> Region<'_> {
    Region {
        file,
        base: HEADER_LEN,
        len: size,
    }
}

fn outboard<'a>(
    file: &'a dyn BlobFile,
    hash: &BlobHash,
    size: u64,
) -> PostOrderOutboard<Region<'a>> {
    PostOrderOutboard {
        root: hash.as_blake3(),
        tree: tree(size),
        data: Region {
            file,
            base: HEADER_LEN + size,
            len: outboard_len(size),
        },
    }
}

/// First byte a tree node (unshifted, as bao-tree's iterators give it) covers.
fn node_offset(node: TreeNode) -> u64 {
    node.chunk_range().start.to_bytes()
}

fn stored_decode_error(e: DecodeError, hash: &BlobHash, at: u64) -> BlobError {
    match e {
        DecodeError::LeafHashMismatch(c) => BlobError::Corrupt {
            hash: *hash,
            offset: c.to_bytes(),
        },
        DecodeError::ParentHashMismatch(node) => BlobError::Corrupt {
            hash: *hash,
            offset: node_offset(node),
        },
        DecodeError::LeafNotFound(_) | DecodeError::ParentNotFound(_) => BlobError::Corrupt {
            hash: *hash,
            offset: at,
        },
        DecodeError::Io(e) => BlobError::Io(e),
    }
}

fn stored_encode_error(e: EncodeError, hash: &BlobHash, at: u64) -> BlobError {
    match e {
        // The file is shorter than its header says.
        EncodeError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => BlobError::Corrupt {
            hash: *hash,
            offset: at,
        },
        EncodeError::Io(e) => BlobError::Io(e),
        EncodeError::LeafHashMismatch(c) => BlobError::Corrupt {
            hash: *hash,
            offset: c.to_bytes(),
        },
        EncodeError::ParentHashMismatch(node) => BlobError::Corrupt {
            hash: *hash,
            offset: node_offset(node),
        },
        other => BlobError::Io(io::Error::other(other.to_string())),
    }
}

/// Read the bytes `start..end` of a stored blob (`start` on a group boundary, `end` on one
/// or the blob's end) into `out`, every byte checked against `hash` through the outboard.
/// On a mismatch nothing is returned but [`BlobError::Corrupt`].
pub fn read_verified(
    file: &dyn BlobFile,
    hash: &BlobHash,
    size: u64,
    start: u64,
    end: u64,
    out: &mut Vec<u8>,
) -> Result<(), BlobError> {
    out.clear();
    if size == 0 || start >= end {
        // An empty blob's hash is checked when it is opened or imported.
        return Ok(());
    }
    let ranges = chunk_ranges(start, end, size);
    let want = usize::try_from(end - start).unwrap_or(usize::MAX);
    let mut encoded = Vec::with_capacity(want.saturating_add(8192));
    encode_ranges(
        data_region(file, size),
        outboard(file, hash, size),
        &ranges,
        &mut encoded,
    )
    .map_err(|e| stored_encode_error(e, hash, start))?;
    let iter =
        DecodeResponseIter::new(hash.as_blake3(), tree(size), Cursor::new(&encoded), &ranges);
    for item in iter {
        match item.map_err(|e| stored_decode_error(e, hash, start))? {
            BaoContentItem::Leaf(leaf) => {
                let at = start + out.len() as u64;
                if leaf.offset != at {
                    return Err(BlobError::Corrupt {
                        hash: *hash,
                        offset: at,
                    });
                }
                out.extend_from_slice(&leaf.data);
            }
            BaoContentItem::Parent(_) => {}
        }
    }
    if out.len() != want {
        return Err(BlobError::Corrupt {
            hash: *hash,
            offset: start + out.len() as u64,
        });
    }
    Ok(())
}

/// The encoding of the bytes `start..end` of a stored blob, each chunk group and proof node
/// checked against `hash` before it is written out.
pub fn encode_slice(
    file: &dyn BlobFile,
    hash: &BlobHash,
    size: u64,
    start: u64,
    end: u64,
) -> Result<Vec<u8>, BlobError> {
    let ranges = chunk_ranges(start, end, size);
    let mut encoded = Vec::with_capacity(usize::try_from(end - start + 8192).unwrap_or(0));
    encode_ranges_validated(
        data_region(file, size),
        outboard(file, hash, size),
        &ranges,
        &mut encoded,
    )
    .map_err(|e| stored_encode_error(e, hash, start))?;
    Ok(encoded)
}

/// A received slice, checked: its data and proof nodes, in memory, ready to be stored.
#[derive(Debug)]
pub struct Checked {
    leaves: Vec<Leaf>,
    parents: Vec<Parent>,
}

/// Check a received slice against `hash` and the declared `size`, whole, in memory.
pub fn check_slice(hash: &BlobHash, size: u64, slice: &Slice) -> Result<Checked, SliceFault> {
    let encoded_len = slice.encoded.len() as u64;
    if encoded_len > MAX_SLICE_BYTES {
        return Err(SliceFault::TooManyBytes { len: encoded_len });
    }
    if slice.len == 0 {
        return Err(SliceFault::Empty);
    }
    if slice.len > super::MAX_SLICE_DATA {
        return Err(SliceFault::TooLong { len: slice.len });
    }
    let start = slice.offset;
    let end = start
        .checked_add(slice.len)
        .ok_or(SliceFault::OutOfBounds)?;
    if end > size {
        return Err(SliceFault::OutOfBounds);
    }
    if !super::format::aligned_range(start, end, size) {
        return Err(SliceFault::Misaligned);
    }
    let ranges = chunk_ranges(start, end, size);
    let mut cursor = Cursor::new(&slice.encoded[..]);
    let mut leaves = Vec::new();
    let mut parents = Vec::new();
    let mut at = start;
    for item in DecodeResponseIter::new(hash.as_blake3(), tree(size), &mut cursor, &ranges) {
        match item {
            Ok(BaoContentItem::Leaf(leaf)) => {
                if leaf.offset != at {
                    // bao-tree yields the leaves of a range in order; anything else is a bug.
                    return Err(SliceFault::DataMismatch { offset: at });
                }
                at += leaf.data.len() as u64;
                leaves.push(leaf);
            }
            Ok(BaoContentItem::Parent(p)) => parents.push(p),
            Err(DecodeError::LeafHashMismatch(c)) => {
                return Err(SliceFault::DataMismatch {
                    offset: c.to_bytes(),
                })
            }
            Err(DecodeError::ParentHashMismatch(node)) => {
                return Err(SliceFault::ProofMismatch {
                    offset: node_offset(node),
                })
            }
            Err(_) => return Err(SliceFault::Truncated),
        }
    }
    if at != end {
        return Err(SliceFault::Truncated);
    }
    let used = cursor.position();
    if used < encoded_len {
        return Err(SliceFault::TrailingBytes {
            extra: encoded_len - used,
        });
    }
    Ok(Checked { leaves, parents })
}

/// Write a checked slice's data and proof nodes into a partial blob's file (not synced).
pub fn store_checked(
    file: &dyn BlobFile,
    hash: &BlobHash,
    size: u64,
    checked: &Checked,
) -> io::Result<()> {
    for leaf in &checked.leaves {
        file.write_at(HEADER_LEN + leaf.offset, &leaf.data)?;
    }
    let mut ob = PostOrderOutboard {
        root: hash.as_blake3(),
        tree: tree(size),
        data: RegionMut {
            file,
            base: HEADER_LEN + size,
        },
    };
    for p in &checked.parents {
        ob.save(p.node, &p.pair)?;
    }
    Ok(())
}

struct SeqReader<'a> {
    file: &'a dyn BlobFile,
    pos: u64,
    end: u64,
}

impl Read for SeqReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.end || buf.is_empty() {
            return Ok(0);
        }
        let n = usize::try_from(self.end - self.pos).map_or(buf.len(), |l| l.min(buf.len()));
        self.file.read_at(self.pos, &mut buf[..n])?;
        self.pos += n as u64;
        Ok(n)
    }
}

struct SeqWriter<'a> {
    file: &'a dyn BlobFile,
    pos: u64,
}

impl Write for SeqWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_at(self.pos, buf)?;
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Read the `size` data bytes of a file being imported back and write their outboard after
/// them; the root hash of the bytes read.
pub fn write_outboard(file: &dyn BlobFile, size: u64) -> io::Result<blake3::Hash> {
    let reader = SeqReader {
        file,
        pos: HEADER_LEN,
        end: HEADER_LEN + size,
    };
    let mut writer = BufWriter::with_capacity(
        64 << 10,
        SeqWriter {
            file,
            pos: HEADER_LEN + size,
        },
    );
    let root = outboard_post_order(reader, tree(size), &mut writer)?;
    let writer = writer.into_inner().map_err(|e| e.into_error())?;
    if writer.pos != HEADER_LEN + size + outboard_len(size) {
        return Err(io::Error::other("outboard of unexpected length"));
    }
    Ok(root)
}
