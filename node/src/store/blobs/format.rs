//! File names, the blob header, `.ranges` records and the set of present ranges.

use std::ops::Range;

use super::{BlobHash, GROUP_BYTES, GROUP_LOG, MAX_BLOB_BYTES};

/// The 8 bytes a `.blob` or `.part` file starts with.
pub const BLOB_MAGIC: [u8; 8] = *b"COPHRBL1";
/// The 8 bytes a `.ranges` file starts with.
pub const RANGES_MAGIC: [u8; 8] = *b"COPHRBR1";
/// Bytes of the header before a blob's data.
pub const HEADER_LEN: u64 = 64;
/// Bytes of one `.ranges` record.
pub const RECORD_LEN: usize = 20;

/// What a file name says it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Name {
    Blob(BlobHash),
    Part(BlobHash),
    Ranges(BlobHash),
    Temp,
    Other,
}

pub fn blob_name(hash: &BlobHash) -> String {
    format!("{}.blob", hash.to_hex())
}
pub fn part_name(hash: &BlobHash) -> String {
    format!("{}.part", hash.to_hex())
}
pub fn ranges_name(hash: &BlobHash) -> String {
    format!("{}.ranges", hash.to_hex())
}
pub fn temp_name(n: u64) -> String {
    format!("tmp-{n}")
}

pub fn parse_name(name: &str) -> Name {
    if name.starts_with("tmp-") {
        return Name::Temp;
    }
    let Some((stem, ext)) = name.split_once('.') else {
        return Name::Other;
    };
    let Ok(hash) = stem.parse::<BlobHash>() else {
        return Name::Other;
    };
    match ext {
        "blob" => Name::Blob(hash),
        "part" => Name::Part(hash),
        "ranges" => Name::Ranges(hash),
        _ => Name::Other,
    }
}

/// Bytes of the outboard of a blob of `size` bytes: 64 per chunk group but one.
pub fn outboard_len(size: u64) -> u64 {
    super::verify::tree(size).outboard_size()
}

/// Length of a complete `.blob` file holding `size` bytes.
pub fn file_len(size: u64) -> u64 {
    HEADER_LEN + size + outboard_len(size)
}

pub fn encode_header(hash: &BlobHash, size: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&BLOB_MAGIC);
    h[8..40].copy_from_slice(hash.as_bytes());
    h[40..48].copy_from_slice(&size.to_le_bytes());
    h[48] = GROUP_LOG;
    let crc = crc32fast::hash(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The size a header declares, if it is a well-formed header for `hash`.
pub fn decode_header(h: &[u8; HEADER_LEN as usize], hash: &BlobHash) -> Option<u64> {
    let crc = u32::from_le_bytes([h[60], h[61], h[62], h[63]]);
    if h[0..8] != BLOB_MAGIC || crc32fast::hash(&h[..60]) != crc {
        return None;
    }
    if &h[8..40] != hash.as_bytes() || h[48] != GROUP_LOG || h[49..60].iter().any(|&b| b != 0) {
        return None;
    }
    let mut size = [0u8; 8];
    size.copy_from_slice(&h[40..48]);
    let size = u64::from_le_bytes(size);
    (size <= MAX_BLOB_BYTES).then_some(size)
}

pub fn encode_record(range: &Range<u64>) -> [u8; RECORD_LEN] {
    let mut r = [0u8; RECORD_LEN];
    r[0..8].copy_from_slice(&range.start.to_le_bytes());
    r[8..16].copy_from_slice(&(range.end - range.start).to_le_bytes());
    let crc = crc32fast::hash(&r[..16]);
    r[16..20].copy_from_slice(&crc.to_le_bytes());
    r
}

/// The range a record names, if its checksum holds and it is a run of whole chunk groups
/// inside a blob of `size` bytes.
pub fn decode_record(r: &[u8], size: u64) -> Option<Range<u64>> {
    let r: &[u8; RECORD_LEN] = r.try_into().ok()?;
    let crc = u32::from_le_bytes([r[16], r[17], r[18], r[19]]);
    if crc32fast::hash(&r[..16]) != crc {
        return None;
    }
    let mut a = [0u8; 8];
    a.copy_from_slice(&r[0..8]);
    let start = u64::from_le_bytes(a);
    a.copy_from_slice(&r[8..16]);
    let len = u64::from_le_bytes(a);
    let end = start.checked_add(len)?;
    aligned_range(start, end, size).then_some(start..end)
}

/// Whether `start..end` is a non-empty run of whole chunk groups of a blob of `size` bytes
/// (the last group may be short).
pub fn aligned_range(start: u64, end: u64, size: u64) -> bool {
    start < end
        && end <= size
        && start.is_multiple_of(GROUP_BYTES)
        && (end.is_multiple_of(GROUP_BYTES) || end == size)
}

/// A set of byte ranges, kept sorted, disjoint and merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<Range<u64>>,
}

impl RangeSet {
    /// Add `r` (empty ranges are ignored).
    pub fn insert(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let mut start = r.start;
        let mut end = r.end;
        // Ranges that touch or overlap `r` merge with it.
        let first = self.ranges.partition_point(|x| x.end < start);
        let mut last = first;
        while last < self.ranges.len() && self.ranges[last].start <= end {
            start = start.min(self.ranges[last].start);
            end = end.max(self.ranges[last].end);
            last += 1;
        }
        self.ranges.splice(first..last, std::iter::once(start..end));
    }

    /// Remove `r`.
    pub fn remove(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for x in self.ranges.drain(..) {
            if x.end <= r.start || x.start >= r.end {
                out.push(x);
                continue;
            }
            if x.start < r.start {
                out.push(x.start..r.start);
            }
            if x.end > r.end {
                out.push(r.end..x.end);
            }
        }
        self.ranges = out;
    }

    /// Whether every byte of `r` is in the set.
    pub fn contains(&self, r: &Range<u64>) -> bool {
        if r.start >= r.end {
            return true;
        }
        let i = self.ranges.partition_point(|x| x.end <= r.start);
        self.ranges
            .get(i)
            .is_some_and(|x| x.start <= r.start && r.end <= x.end)
    }

    /// The parts of `0..size` not in the set.
    pub fn missing(&self, size: u64) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut at = 0;
        for x in &self.ranges {
            if x.start >= size {
                break;
            }
            if x.start > at {
                out.push(at..x.start);
            }
            at = at.max(x.end);
        }
        if at < size {
            out.push(at..size);
        }
        out
    }

    /// Bytes in the set.
    pub fn total(&self) -> u64 {
        self.ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// The ranges, sorted and disjoint.
    pub fn ranges(&self) -> &[Range<u64>] {
        &self.ranges
    }
}
