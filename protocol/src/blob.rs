//! Documents stored apart from entries ("blobs"): what an entry may reference, and how a
//! document's bytes are sealed and opened, segment by segment. Pure: the node's blob store
//! keeps the bytes (`docs/documents.md`).
//!
//! - **References.** A document field of a body ([`crate::schema::FieldType::Document`])
//!   holds a [`DocumentFile`]: the BLAKE3 hash and size of the bytes as stored, and — when
//!   the bytes are sealed — the document's own random [`BlobKey`]. The entry's signature
//!   covers the reference, so the bytes fetched from anyone are checked against the hash.
//! - **What a relay sees.** A sealed body hides its references, so a sealed create or
//!   amend also lists them in clear ([`crate::seal::Sealed::blobs`]: hash and stored size
//!   only, never the key): a relay fetches, checks and serves the stored bytes of every
//!   entry it may hold without reading them. A reader that opens the body checks the two
//!   lists agree; an entry whose do not is flagged, never shown as if whole.
//! - **Sealed bytes.** A document's bytes are sealed with XChaCha20-Poly1305 in the STREAM
//!   construction (`aead::stream::StreamBE32`, a well-kept crate: a 32-bit segment counter
//!   and a last-segment flag in the nonce) in [`SEGMENT_BYTES`] segments, under the
//!   document's random key; the key travels only inside the sealed body, so whoever may
//!   open the entry may open the document, and nobody else — the revocation rules of the
//!   entry are the document's. Segments open one by one and in any order (a page of a
//!   scan, a range request); truncation, reordering or mixing segments of two documents
//!   fail to open. The hash the entry names is of the sealed bytes, so relays check what
//!   they store.
//!
//! Randomness comes in as an argument; nothing cryptographic is hand-made here.

use std::fmt;

use chacha20poly1305::aead::stream::{NewStream, StreamBE32, StreamPrimitive};
use chacha20poly1305::aead::KeyInit;
use chacha20poly1305::{Key, XChaCha20Poly1305};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::value::Value;

/// The largest document, in stored bytes (sealed or not): 4 GiB.
pub const MAX_BLOB_BYTES: u64 = 4 << 30;
/// The most documents one entry may reference.
pub const MAX_BLOBS_PER_ENTRY: usize = 8;
/// Plain bytes per sealed segment (the last may be shorter, or empty for an empty file).
pub const SEGMENT_BYTES: usize = 64 * 1024;
/// Bytes a sealed segment adds (the AEAD tag).
pub const TAG_BYTES: usize = 16;
/// The unit of a document's verified slices, in stored bytes (16 KiB: 16 BLAKE3 chunks):
/// a slice starts on a multiple of it, and the proof of a slice is per group.
pub const GROUP_BYTES: u64 = 16 * 1024;
/// Bytes of a document key.
pub const BLOB_KEY_BYTES: usize = 32;
/// The largest plain document whose sealed bytes stay within [`MAX_BLOB_BYTES`].
pub const MAX_DOCUMENT_BYTES: u64 =
    MAX_BLOB_BYTES - MAX_BLOB_BYTES.div_ceil(SEGMENT_BYTES as u64) * TAG_BYTES as u64;

/// Domain of the sealed segments' associated data.
const AAD: &[u8] = b"cophr/v1/document";

/// Why a reference or a segment is not right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Not a document reference: the shape of the field's value.
    #[error("not a document reference: {0}")]
    Shape(&'static str),
    /// More stored bytes than [`MAX_BLOB_BYTES`].
    #[error("a document of {0} bytes is more than the {MAX_BLOB_BYTES}-byte limit")]
    TooLarge(u64),
    /// No such segment in a document of this size.
    #[error("segment {index} is beyond the end of a {size}-byte document")]
    NoSegment {
        /// The segment asked for.
        index: u64,
        /// The document's plain size.
        size: u64,
    },
    /// A segment of the wrong length for its place.
    #[error("segment {index} is {got} bytes; its place in the document needs {expected}")]
    SegmentLength {
        /// The segment.
        index: u64,
        /// Its length.
        got: usize,
        /// The length its place needs.
        expected: usize,
    },
    /// A sealed segment that does not open with this key at this place: the wrong key,
    /// altered, truncated or moved bytes.
    #[error("segment {0} does not decrypt with the document's key (wrong key, altered or moved)")]
    Open(u64),
    /// Stored bytes that are not the size a sealed document of any plain size has.
    #[error("{0} stored bytes is not the size of a sealed document")]
    NotSealedSize(u64),
}

/// The BLAKE3 hash of a document's stored bytes: its name in every blob store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BlobHash(#[serde(with = "serde_bytes")] pub [u8; 32]);

impl BlobHash {
    /// The hash with these 32 bytes (any 32 bytes name a possible document).
    pub const fn from_bytes(bytes: [u8; 32]) -> BlobHash {
        BlobHash(bytes)
    }

    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> BlobHash {
        BlobHash(*blake3::hash(bytes).as_bytes())
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// As a BLAKE3 hash (for verified streaming against it).
    pub fn as_blake3(&self) -> blake3::Hash {
        blake3::Hash::from_bytes(self.0)
    }

    /// Lowercase hex (64 digits), as shown and as file names.
    pub fn to_hex(&self) -> String {
        self.as_blake3().to_hex().to_string()
    }
}

impl From<blake3::Hash> for BlobHash {
    fn from(h: blake3::Hash) -> Self {
        BlobHash(*h.as_bytes())
    }
}

/// Text that is not a document hash (64 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a document hash (64 lowercase hex digits)")]
pub struct BadBlobHash;

impl std::str::FromStr for BlobHash {
    type Err = BadBlobHash;
    /// Only the one text form [`BlobHash::to_hex`] writes (lowercase), as file names are.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(BadBlobHash);
        }
        blake3::Hash::from_hex(s)
            .map(BlobHash::from)
            .map_err(|_| BadBlobHash)
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", self.to_hex())
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What a relay knows of a document: its stored bytes' hash and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    /// BLAKE3 of the stored bytes.
    pub hash: BlobHash,
    /// Stored bytes.
    pub size: u64,
}

impl BlobRef {
    /// Checks the size limit.
    pub fn check(&self) -> Result<(), BlobError> {
        if self.size > MAX_BLOB_BYTES {
            return Err(BlobError::TooLarge(self.size));
        }
        Ok(())
    }
}

/// Checks a list of references as an entry carries it: at most [`MAX_BLOBS_PER_ENTRY`],
/// each within the size limit, sorted by hash without duplicates (one encoding).
pub fn check_refs(refs: &[BlobRef]) -> Result<(), BlobError> {
    if refs.len() > MAX_BLOBS_PER_ENTRY {
        return Err(BlobError::Shape(
            "more documents than one entry may reference",
        ));
    }
    refs.iter().try_for_each(BlobRef::check)?;
    if refs.windows(2).any(|w| w[0].hash >= w[1].hash) {
        return Err(BlobError::Shape(
            "document references not sorted by hash or repeated",
        ));
    }
    Ok(())
}

/// The documents a body of `category` references (its [`FieldType::Document`] fields
/// that read as documents), as a relay knows them: sorted by hash, without repeats.
/// A category without such fields references none.
///
/// [`FieldType::Document`]: crate::schema::FieldType::Document
pub fn refs_in_body(category: &crate::Category, body: &Value) -> Vec<BlobRef> {
    let Some(schema) = crate::schema::schema(category) else {
        return Vec::new();
    };
    let mut out: Vec<BlobRef> = schema
        .fields
        .iter()
        .filter(|f| f.ty == crate::schema::FieldType::Document)
        .filter_map(|f| body.get(f.name))
        .filter_map(|v| DocumentFile::from_value(v).ok())
        .map(|f| f.blob_ref())
        .collect();
    out.sort();
    out.dedup_by_key(|r| r.hash);
    out
}

/// A document's own key: random, used for that document only.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct BlobKey([u8; BLOB_KEY_BYTES]);

impl BlobKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> BlobKey {
        let mut k = [0u8; BLOB_KEY_BYTES];
        rng.fill_bytes(&mut k);
        BlobKey(k)
    }

    /// Its bytes (they travel only inside a sealed body).
    pub fn as_bytes(&self) -> &[u8; BLOB_KEY_BYTES] {
        &self.0
    }

    fn stream(&self) -> StreamBE32<XChaCha20Poly1305> {
        let aead = XChaCha20Poly1305::new(Key::from_slice(&self.0));
        // One key per document, never reused: the STREAM nonce prefix can be fixed.
        StreamBE32::from_aead(aead, &Default::default())
    }
}

impl fmt::Debug for BlobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlobKey(…)")
    }
}

/// A document field's value: the stored bytes' hash and the document's plain size, and
/// its key when the bytes are sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentFile {
    /// BLAKE3 of the stored bytes (sealed, when `key` is given).
    pub hash: BlobHash,
    /// The document's size, plain.
    pub size: u64,
    /// The document's key, when its bytes are sealed.
    pub key: Option<BlobKey>,
}

impl DocumentFile {
    /// What a relay knows of it.
    pub fn blob_ref(&self) -> BlobRef {
        BlobRef {
            hash: self.hash,
            size: if self.key.is_some() {
                sealed_len(self.size)
            } else {
                self.size
            },
        }
    }

    /// As a body's field value: `{"hash": bytes, "size": int, "key": bytes?}`.
    pub fn to_value(&self) -> Value {
        let mut m = std::collections::BTreeMap::new();
        m.insert("hash".to_owned(), Value::Bytes(self.hash.0.to_vec()));
        m.insert("size".to_owned(), Value::Int(self.size as i64));
        if let Some(k) = &self.key {
            m.insert("key".to_owned(), Value::Bytes(k.0.to_vec()));
        }
        Value::Map(m)
    }

    /// Reads a body's field value, checking its shape and size.
    pub fn from_value(v: &Value) -> Result<DocumentFile, BlobError> {
        let Value::Map(m) = v else {
            return Err(BlobError::Shape("expected a map of hash, size and key"));
        };
        if m.keys()
            .any(|k| !matches!(k.as_str(), "hash" | "size" | "key"))
        {
            return Err(BlobError::Shape("only hash, size and key are allowed"));
        }
        let hash = match m.get("hash") {
            Some(Value::Bytes(b)) => <[u8; 32]>::try_from(b.as_slice())
                .map(BlobHash)
                .map_err(|_| BlobError::Shape("the hash must be 32 bytes"))?,
            _ => return Err(BlobError::Shape("the hash must be 32 bytes")),
        };
        let size = match m.get("size") {
            Some(Value::Int(n)) if *n >= 0 => *n as u64,
            _ => return Err(BlobError::Shape("the size must be a whole number of bytes")),
        };
        let key = match m.get("key") {
            None => None,
            Some(Value::Bytes(b)) => Some(BlobKey(
                <[u8; BLOB_KEY_BYTES]>::try_from(b.as_slice())
                    .map_err(|_| BlobError::Shape("the key must be 32 bytes"))?,
            )),
            Some(_) => return Err(BlobError::Shape("the key must be 32 bytes")),
        };
        let limit = if key.is_some() {
            MAX_DOCUMENT_BYTES
        } else {
            MAX_BLOB_BYTES
        };
        if size > limit {
            return Err(BlobError::TooLarge(size));
        }
        Ok(DocumentFile { hash, size, key })
    }
}

/// How many segments a document of `plain` bytes is sealed in (an empty one: one).
pub fn segments(plain: u64) -> u64 {
    plain.div_ceil(SEGMENT_BYTES as u64).max(1)
}

/// The stored size of a document of `plain` bytes, sealed.
pub fn sealed_len(plain: u64) -> u64 {
    plain + segments(plain) * TAG_BYTES as u64
}

/// The plain size of a sealed document of `sealed` stored bytes.
pub fn plain_len(sealed: u64) -> Result<u64, BlobError> {
    let seg = (SEGMENT_BYTES + TAG_BYTES) as u64;
    let full = sealed / seg;
    let rest = sealed % seg;
    let plain = if rest == 0 {
        if full == 0 {
            return Err(BlobError::NotSealedSize(sealed));
        }
        full * SEGMENT_BYTES as u64
    } else if rest < TAG_BYTES as u64 || (rest == TAG_BYTES as u64 && full > 0) {
        return Err(BlobError::NotSealedSize(sealed));
    } else {
        full * SEGMENT_BYTES as u64 + rest - TAG_BYTES as u64
    };
    if sealed_len(plain) != sealed {
        return Err(BlobError::NotSealedSize(sealed));
    }
    Ok(plain)
}

/// Where segment `index` of a document of `plain` bytes lies: (plain offset, plain length,
/// sealed offset, sealed length).
pub fn segment_span(plain: u64, index: u64) -> Result<(u64, usize, u64, usize), BlobError> {
    if index >= segments(plain) {
        return Err(BlobError::NoSegment { index, size: plain });
    }
    let seg = SEGMENT_BYTES as u64;
    let start = index * seg;
    let len = (plain - start).min(seg) as usize;
    let sealed_start = index * (seg + TAG_BYTES as u64);
    Ok((start, len, sealed_start, len + TAG_BYTES))
}

fn position(index: u64) -> Result<u32, BlobError> {
    u32::try_from(index).map_err(|_| BlobError::TooLarge(index))
}

/// Seals segment `index` of a document of `plain` bytes (exactly the segment's plain
/// bytes, [`segment_span`]).
pub fn seal_segment(
    key: &BlobKey,
    plain: u64,
    index: u64,
    bytes: &[u8],
) -> Result<Vec<u8>, BlobError> {
    if plain > MAX_DOCUMENT_BYTES {
        return Err(BlobError::TooLarge(plain));
    }
    let (_, len, _, _) = segment_span(plain, index)?;
    if bytes.len() != len {
        return Err(BlobError::SegmentLength {
            index,
            got: bytes.len(),
            expected: len,
        });
    }
    let last = index + 1 == segments(plain);
    key.stream()
        .encrypt(
            position(index)?,
            last,
            chacha20poly1305::aead::Payload {
                msg: bytes,
                aad: AAD,
            },
        )
        .map_err(|_| BlobError::TooLarge(plain))
}

/// Opens segment `index` of a sealed document of `plain` bytes.
pub fn open_segment(
    key: &BlobKey,
    plain: u64,
    index: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, BlobError> {
    let (_, _, _, len) = segment_span(plain, index)?;
    if sealed.len() != len {
        return Err(BlobError::SegmentLength {
            index,
            got: sealed.len(),
            expected: len,
        });
    }
    let last = index + 1 == segments(plain);
    key.stream()
        .decrypt(
            position(index)?,
            last,
            chacha20poly1305::aead::Payload {
                msg: sealed,
                aad: AAD,
            },
        )
        .map_err(|_| BlobError::Open(index))
}

/// Seals a whole document held in memory (small files and tests; the node streams).
pub fn seal_all(key: &BlobKey, bytes: &[u8]) -> Result<Vec<u8>, BlobError> {
    let plain = bytes.len() as u64;
    let mut out = Vec::with_capacity(sealed_len(plain) as usize);
    for i in 0..segments(plain) {
        let (start, len, _, _) = segment_span(plain, i)?;
        out.extend(seal_segment(
            key,
            plain,
            i,
            &bytes[start as usize..][..len],
        )?);
    }
    Ok(out)
}

/// Opens a whole sealed document held in memory.
pub fn open_all(key: &BlobKey, sealed: &[u8]) -> Result<Vec<u8>, BlobError> {
    let plain = plain_len(sealed.len() as u64)?;
    let mut out = Vec::with_capacity(plain as usize);
    for i in 0..segments(plain) {
        let (_, _, start, len) = segment_span(plain, i)?;
        out.extend(open_segment(
            key,
            plain,
            i,
            &sealed[start as usize..][..len],
        )?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::SeededRng;

    fn doc(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn sealed_documents_open_whole_and_by_segment_at_every_boundary() {
        let mut rng = SeededRng::new(1);
        for n in [
            0,
            1,
            SEGMENT_BYTES - 1,
            SEGMENT_BYTES,
            SEGMENT_BYTES + 1,
            3 * SEGMENT_BYTES + 7,
        ] {
            let key = BlobKey::generate(&mut rng);
            let bytes = doc(n);
            let sealed = seal_all(&key, &bytes).unwrap();
            assert_eq!(sealed.len() as u64, sealed_len(n as u64), "{n}");
            assert_eq!(plain_len(sealed.len() as u64), Ok(n as u64), "{n}");
            assert_eq!(open_all(&key, &sealed).unwrap(), bytes, "{n}");
            // The last segment alone, at random access.
            let last = segments(n as u64) - 1;
            let (p, plen, s, slen) = segment_span(n as u64, last).unwrap();
            let seg = open_segment(&key, n as u64, last, &sealed[s as usize..][..slen]).unwrap();
            assert_eq!(seg, bytes[p as usize..][..plen]);
        }
    }

    #[test]
    fn altered_truncated_reordered_or_foreign_segments_do_not_open() {
        let mut rng = SeededRng::new(2);
        let key = BlobKey::generate(&mut rng);
        let bytes = doc(2 * SEGMENT_BYTES + 10);
        let n = bytes.len() as u64;
        let sealed = seal_all(&key, &bytes).unwrap();
        let mut altered = sealed.clone();
        altered[5] ^= 1;
        assert_eq!(open_all(&key, &altered), Err(BlobError::Open(0)));
        // Another key.
        let other = BlobKey::generate(&mut rng);
        assert_eq!(open_all(&other, &sealed), Err(BlobError::Open(0)));
        // Segment 1 offered as segment 0.
        let (_, _, s1, l1) = segment_span(n, 1).unwrap();
        let seg1 = &sealed[s1 as usize..][..l1];
        assert_eq!(open_segment(&key, n, 0, seg1), Err(BlobError::Open(0)));
        // Truncated to whole segments: the cut segment was not sealed as the last.
        let cut = 2 * (SEGMENT_BYTES + TAG_BYTES);
        let short = plain_len(cut as u64).unwrap();
        assert_eq!(open_all(&key, &sealed[..cut]), Err(BlobError::Open(1)));
        assert_eq!(short, 2 * SEGMENT_BYTES as u64);
        // A length no sealed document has.
        assert!(matches!(
            plain_len(SEGMENT_BYTES as u64 + TAG_BYTES as u64 + 3),
            Err(BlobError::NotSealedSize(_))
        ));
        assert!(matches!(plain_len(0), Err(BlobError::NotSealedSize(0))));
        // Wrong segment lengths and places are refused before any decryption.
        assert!(matches!(
            open_segment(&key, n, 0, &sealed[..10]),
            Err(BlobError::SegmentLength { .. })
        ));
        assert!(matches!(
            open_segment(&key, n, 3, seg1),
            Err(BlobError::NoSegment { index: 3, .. })
        ));
    }

    #[test]
    fn every_stored_size_maps_back_to_its_plain_size() {
        for plain in (0..3 * SEGMENT_BYTES as u64 + 40).step_by(997).chain([
            SEGMENT_BYTES as u64,
            2 * SEGMENT_BYTES as u64,
            MAX_DOCUMENT_BYTES,
        ]) {
            assert_eq!(plain_len(sealed_len(plain)), Ok(plain));
        }
        assert!(sealed_len(MAX_DOCUMENT_BYTES) <= MAX_BLOB_BYTES);
        assert!(sealed_len(MAX_DOCUMENT_BYTES + SEGMENT_BYTES as u64) > MAX_BLOB_BYTES);
    }

    #[test]
    fn a_document_field_reads_back_and_misshapen_ones_are_refused() {
        let mut rng = SeededRng::new(3);
        let f = DocumentFile {
            hash: BlobHash::of(b"x"),
            size: 70_000,
            key: Some(BlobKey::generate(&mut rng)),
        };
        assert_eq!(DocumentFile::from_value(&f.to_value()).unwrap(), f);
        assert_eq!(f.blob_ref().size, sealed_len(70_000));
        let plain = DocumentFile {
            key: None,
            ..f.clone()
        };
        assert_eq!(plain.blob_ref().size, 70_000);
        let mut bad = f.to_value();
        if let Value::Map(m) = &mut bad {
            m.insert("hash".into(), Value::Bytes(vec![0; 31]));
        }
        assert!(DocumentFile::from_value(&bad).is_err());
        let mut big = f.to_value();
        if let Value::Map(m) = &mut big {
            m.insert("size".into(), Value::Int(MAX_DOCUMENT_BYTES as i64 + 1));
        }
        assert_eq!(
            DocumentFile::from_value(&big),
            Err(BlobError::TooLarge(MAX_DOCUMENT_BYTES + 1))
        );
        let mut extra = f.to_value();
        if let Value::Map(m) = &mut extra {
            m.insert("name".into(), Value::Text("x".into()));
        }
        assert!(DocumentFile::from_value(&extra).is_err());
        assert!(DocumentFile::from_value(&Value::Int(1)).is_err());
    }

    #[test]
    fn reference_lists_are_bounded_sorted_and_unique() {
        let r = |b: u8, size| BlobRef {
            hash: BlobHash([b; 32]),
            size,
        };
        assert_eq!(check_refs(&[r(1, 5), r(2, 6)]), Ok(()));
        assert!(check_refs(&[r(2, 5), r(1, 6)]).is_err());
        assert!(check_refs(&[r(1, 5), r(1, 5)]).is_err());
        assert_eq!(
            check_refs(&[r(1, MAX_BLOB_BYTES + 1)]),
            Err(BlobError::TooLarge(MAX_BLOB_BYTES + 1))
        );
        let many: Vec<BlobRef> = (0..=MAX_BLOBS_PER_ENTRY as u8).map(|b| r(b, 1)).collect();
        assert!(check_refs(&many).is_err());
    }
}
