//! Documents stored apart from the entries naming them (`docs/documents.md`): the store's
//! side of [`cophr_protocol::blob`]. A document is sealed segment by segment as it is read
//! from its file ([`SealingReader`]) straight into the blob store (never whole in memory),
//! and opened segment by segment as it is read back ([`DocumentReader`]), every stored byte
//! checked against its hash on the way (`blobs/`). Fetching from peers: `net/client.rs`.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};

use cophr_protocol::blob::{self, BlobKey, BlobRef, DocumentFile, SEGMENT_BYTES, TAG_BYTES};
use rand_core::{CryptoRng, RngCore};

use super::blobs::{self as blob_store, BlobHash, BlobReader, BlobStore, Progress, Slice};
use super::{Store, StoreError};
use cophr_protocol::RecordId;

/// Reads a document's plain bytes and yields them sealed ([`blob::seal_segment`]), one
/// segment at a time: what a document's file becomes on its way into the blob store.
/// Fails if the file holds more or fewer bytes than the size it was opened with.
pub struct SealingReader<R> {
    inner: R,
    key: BlobKey,
    size: u64,
    next: u64,
    out: Vec<u8>,
    at: usize,
}

impl<R: Read> SealingReader<R> {
    /// Seals `inner`, which must yield exactly `size` bytes, under `key`.
    pub fn new(inner: R, size: u64, key: BlobKey) -> SealingReader<R> {
        SealingReader {
            inner,
            key,
            size,
            next: 0,
            out: Vec::new(),
            at: 0,
        }
    }

    fn fill(&mut self) -> io::Result<bool> {
        if self.next >= blob::segments(self.size) {
            // The file must end where its size said.
            let mut probe = [0u8; 1];
            if self.inner.read(&mut probe)? != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the file grew while it was being attached",
                ));
            }
            return Ok(false);
        }
        let (_, len, _, _) = blob::segment_span(self.size, self.next).map_err(invalid)?;
        let mut plain = vec![0u8; len];
        self.inner.read_exact(&mut plain).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the file shrank while it was being attached",
                )
            } else {
                e
            }
        })?;
        self.out = blob::seal_segment(&self.key, self.size, self.next, &plain).map_err(invalid)?;
        self.at = 0;
        self.next += 1;
        Ok(true)
    }
}

impl<R> std::fmt::Debug for SealingReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the content.
        f.debug_struct("SealingReader")
            .field("size", &self.size)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Read for SealingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at == self.out.len() && !self.fill()? {
            return Ok(0);
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn invalid(e: blob::BlobError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// A document's plain bytes, read back: the stored bytes checked against their hash, and
/// opened segment by segment when sealed. A segment that does not open is an error, never
/// bytes.
pub struct DocumentReader {
    stored: BlobReader,
    /// Where damage found while reading is set aside for repair.
    store: Store,
    hash: BlobHash,
    key: Option<BlobKey>,
    size: u64,
    next: u64,
    out: Vec<u8>,
    at: usize,
}

impl std::fmt::Debug for DocumentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the content.
        f.debug_struct("DocumentReader")
            .field("size", &self.size)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl DocumentReader {
    /// The document's plain size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for DocumentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.read_checked(buf);
        if let Err(e) = &read {
            if damaged(e) {
                self.store.set_aside_damaged(&self.hash);
            }
        }
        read
    }
}

/// Whether a read error is damage found by the blob store's check (not an I/O failure).
fn damaged(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<blob_store::BlobError>())
        .is_some_and(|b| matches!(b, blob_store::BlobError::Corrupt { .. }))
}

impl DocumentReader {
    fn read_checked(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(key) = &self.key else {
            return self.stored.read(buf);
        };
        if self.at == self.out.len() {
            if self.next >= blob::segments(self.size) {
                return Ok(0);
            }
            let (_, _, _, len) = blob::segment_span(self.size, self.next).map_err(invalid)?;
            let mut sealed = vec![0u8; len];
            self.stored.read_exact(&mut sealed)?;
            self.out = blob::open_segment(key, self.size, self.next, &sealed).map_err(invalid)?;
            self.at = 0;
            self.next += 1;
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Store {
    /// The documents' bytes kept here.
    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    /// Keeps a document read from `file` (exactly `size` bytes), sealed under a fresh key
    /// of its own, and returns the reference an entry's body carries
    /// ([`cophr_protocol::schema::FieldType::Document`]). Durable before it returns; the
    /// file is never held in memory whole. Writing the entry is the caller's next step: a
    /// document no entry names is never served.
    pub fn import_document<R: RngCore + CryptoRng>(
        &self,
        file: impl Read,
        size: u64,
        rng: &mut R,
    ) -> Result<DocumentFile, StoreError> {
        if size > blob::MAX_DOCUMENT_BYTES {
            return Err(blob::BlobError::TooLarge(size).into());
        }
        self.room_for(blob::sealed_len(size), super::Room::Write)?;
        let key = BlobKey::generate(rng);
        let (hash, stored) =
            self.inner
                .blobs
                .import(SealingReader::new(file, size, key.clone()))?;
        debug_assert_eq!(stored, blob::sealed_len(size));
        Ok(DocumentFile {
            hash,
            size,
            key: Some(key),
        })
    }

    /// Whether a document's stored bytes are wholly held here.
    pub fn has_document(&self, doc: &BlobRef) -> bool {
        self.inner.blobs.has(&doc.hash)
    }

    /// A document's plain bytes, read and checked as they stream. The caller has checked
    /// the reader may see an entry naming it.
    pub fn open_document(&self, file: &DocumentFile) -> Result<DocumentReader, StoreError> {
        let stored = self.inner.blobs.open_blob(&file.hash)?;
        if stored.size() != file.blob_ref().size {
            return Err(StoreError::Corrupt(format!(
                "document {} is {} bytes here, not the {} its entry names",
                file.hash,
                stored.size(),
                file.blob_ref().size
            )));
        }
        Ok(DocumentReader {
            stored,
            store: self.clone(),
            hash: file.hash,
            key: file.key.clone(),
            size: file.size,
            next: 0,
            out: Vec::new(),
            at: 0,
        })
    }

    /// A slice of a document held here for a peer ([`cophr_protocol::sync::Request::Document`]):
    /// `None` when it is not wholly held, or is held at another size than the entry names.
    pub fn document_slice(
        &self,
        doc: &BlobRef,
        offset: u64,
        len: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let blobs = &self.inner.blobs;
        if !blobs.has(&doc.hash) || blobs.size(&doc.hash)? != doc.size {
            return Ok(None);
        }
        match blobs.slice(&doc.hash, offset, len) {
            Ok(s) => Ok(Some((s.len, s.encoded))),
            // Damaged here: set aside, fetched again, and meanwhile not held.
            Err(blob_store::BlobError::Corrupt { .. }) => {
                self.set_aside_damaged(&doc.hash);
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Sets a damaged document's stored bytes aside so the damaged chunk groups are
    /// fetched again from a peer (`BlobStore::repair`); logged, never fails the caller.
    fn set_aside_damaged(&self, hash: &BlobHash) {
        match self.inner.blobs.repair(hash) {
            Ok(damaged) if damaged.is_empty() => {}
            Ok(damaged) => tracing::warn!(
                %hash,
                damaged_bytes = damaged.iter().map(|r| r.end - r.start).sum::<u64>(),
                "a document's stored bytes are damaged: set aside, to be fetched again from a peer"
            ),
            Err(e) => {
                tracing::warn!(%hash, error = %e, "a damaged document could not be set aside")
            }
        }
    }

    /// Checks every document held here against its hash, setting aside each damaged one
    /// so its damaged chunk groups are fetched again from a peer at the next sync (`cophr
    /// repair`). Returns how many were checked and those set aside with their damaged
    /// bytes.
    pub fn repair_documents(&self) -> Result<DocumentsRepaired, StoreError> {
        let mut report = DocumentsRepaired::default();
        for (hash, _) in self.inner.blobs.list() {
            report.checked += 1;
            let damaged = self.inner.blobs.repair(&hash)?;
            if !damaged.is_empty() {
                report
                    .set_aside
                    .push((hash, damaged.iter().map(|r| r.end - r.start).sum()));
            }
        }
        Ok(report)
    }

    /// One step of a background scrub: checks the documents held whole, in hash order from
    /// the first after `after` (the start when `None`), until at least `budget` stored bytes
    /// were read (always at least one document, each checked whole), setting aside each
    /// damaged one as [`Store::repair_documents`] does, so its damaged chunk groups are
    /// fetched again from a peer at the next sync. [`Scrubbed::next`] is where the next
    /// step starts; `None` when this step reached the last document (a pass is done). Safe
    /// beside serving and fetching: a document removed or set aside meanwhile is skipped.
    pub fn scrub_documents(
        &self,
        after: Option<&BlobHash>,
        budget: u64,
    ) -> Result<Scrubbed, StoreError> {
        let mut held = self.inner.blobs.list();
        held.sort_unstable_by_key(|(h, _)| *h);
        let start = after.map_or(0, |a| held.partition_point(|(h, _)| h <= a));
        let mut step = Scrubbed::default();
        for (hash, size) in &held[start..] {
            if step.checked > 0 && step.bytes >= budget {
                step.next = Some(held[start + step.checked - 1].0);
                return Ok(step);
            }
            step.checked += 1;
            step.bytes += size;
            match self.inner.blobs.repair(hash) {
                Ok(damaged) if damaged.is_empty() => {}
                Ok(damaged) => {
                    let bytes = damaged.iter().map(|r| r.end - r.start).sum::<u64>();
                    tracing::warn!(%hash, damaged_bytes = bytes, "a document's stored bytes are damaged: set aside, to be fetched again from a peer");
                    step.set_aside.push((*hash, bytes));
                }
                // Removed, or set aside by a reader, since the list was taken.
                Err(blob_store::BlobError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(step)
    }

    /// Starts or continues receiving a document from peers: the byte ranges still missing
    /// (empty when it is held whole).
    pub fn document_missing(&self, doc: &BlobRef) -> Result<Vec<std::ops::Range<u64>>, StoreError> {
        match self.inner.blobs.begin(&doc.hash, doc.size)? {
            Progress::Complete => Ok(Vec::new()),
            Progress::Partial { .. } => Ok(self.inner.blobs.missing_ranges(&doc.hash)?),
        }
    }

    /// Keeps a slice a peer sent of a document being received, checked against the hash
    /// before a byte is stored. Returns whether the document is now whole. Its bytes are
    /// made durable with the next batch ([`crate::store::blobs::BlobStore::write_slice_batched`]):
    /// call [`Store::flush_document`] when a fetch stops.
    pub fn receive_document_slice(
        &self,
        doc: &BlobRef,
        offset: u64,
        len: u64,
        encoded: Vec<u8>,
    ) -> Result<bool, StoreError> {
        self.room_for(encoded.len() as u64, super::Room::Write)?;
        let slice = Slice {
            offset,
            len,
            encoded,
        };
        match self.inner.blobs.write_slice_batched(&doc.hash, &slice)? {
            Progress::Complete => Ok(true),
            Progress::Partial { .. } => Ok(false),
        }
    }

    /// Makes durable the slices of a document being received that wait for their batch
    /// (a fetch that stops, for whatever reason, calls this; a crash before it only loses
    /// those slices, which are fetched again).
    pub fn flush_document(&self, doc: &BlobRef) -> Result<(), StoreError> {
        Ok(self.inner.blobs.flush(&doc.hash)?)
    }
}

/// What [`Store::repair_documents`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentsRepaired {
    /// Documents checked.
    pub checked: usize,
    /// Documents found damaged and set aside, with their damaged bytes.
    pub set_aside: Vec<(BlobHash, u64)>,
}

/// A document received and stored: its reference, its media type recognised from its
/// content, and what a DICOM file's header says.
#[derive(Debug)]
pub struct Received {
    /// The reference an entry's `file` field carries.
    pub file: DocumentFile,
    /// The media type found in its content.
    pub media_type: &'static str,
    /// A DICOM file's header.
    pub dicom: Option<crate::dicom::DicomHeader>,
}

impl Received {
    /// The fields a documents entry takes from its file: `file`, `media-type` and the
    /// DICOM header's fields.
    pub fn fields(&self) -> std::collections::BTreeMap<String, cophr_protocol::Value> {
        let mut m = std::collections::BTreeMap::new();
        m.insert("file".into(), self.file.to_value());
        m.insert(
            "media-type".into(),
            cophr_protocol::Value::Text(self.media_type.into()),
        );
        if let Some(h) = &self.dicom {
            h.fill(&mut m);
        }
        m
    }
}

/// Why a received document was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Upload {
    /// Not a file of an accepted type.
    #[error("not a file of an accepted type, as far as its content shows")]
    Type,
    /// Not the media type declared (declared, found).
    #[error("the file is {1}, not {0}")]
    Declared(String, &'static str),
    /// The store or the body failed.
    #[error("the file was not stored: {0}")]
    Failed(String),
    /// The disk is full (or would be below its reserve); nothing of the file was kept.
    #[error("the file was not stored: {0}")]
    Full(String),
}

impl From<StoreError> for Upload {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Full(_) => Upload::Full(e.to_string()),
            StoreError::Blob(blob_store::BlobError::Io(io)) if super::disk::is_full(&io) => {
                Upload::Full(
                    StoreError::Full(format!("a file could not be written ({io})")).to_string(),
                )
            }
            e => Upload::Failed(e.to_string()),
        }
    }
}

/// Recognises a file from its first bytes (`head`, at least
/// [`cophr_protocol::schema::SNIFF_BYTES`] of it or all of it; a `declared` type must
/// agree) and reads a DICOM header from `rest` when it is one; then seals the whole file
/// into the blob store, never whole in memory. `size` is the file's length. No entry
/// names it yet.
pub fn import_recognised(
    store: &Store,
    mut head: Vec<u8>,
    mut rest: impl Read,
    size: u64,
    declared: Option<String>,
) -> Result<Received, Upload> {
    let found = cophr_protocol::schema::sniff(&head).ok_or(Upload::Type)?;
    if let Some(declared) = declared.filter(|d| d != found) {
        return Err(Upload::Declared(declared, found));
    }
    // A DICOM file's header (what it says it holds) comes from its first bytes.
    let dicom = if found == "application/dicom" {
        let more = crate::dicom::MAX_HEADER_BYTES.saturating_sub(head.len()) as u64;
        (&mut rest)
            .take(more)
            .read_to_end(&mut head)
            .map_err(|e| Upload::Failed(e.to_string()))?;
        crate::dicom::DicomHeader::read(&head)
    } else {
        None
    };
    let file = store
        .import_document(
            std::io::Cursor::new(head).chain(rest),
            size,
            &mut rand_core::OsRng,
        )
        .map_err(Upload::from)?;
    Ok(Received {
        file,
        media_type: found,
        dicom,
    })
}

/// [`import_recognised`] of a document held in memory (a FHIR `Binary`'s decoded data).
pub fn import_recognised_bytes(
    store: &Store,
    bytes: &[u8],
    declared: Option<String>,
) -> Result<Received, Upload> {
    let cut = bytes.len().min(cophr_protocol::schema::SNIFF_BYTES);
    import_recognised(
        store,
        bytes[..cut].to_vec(),
        &bytes[cut..],
        bytes.len() as u64,
        declared,
    )
}

/// What one step of [`Store::scrub_documents`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scrubbed {
    /// Documents checked.
    pub checked: usize,
    /// Their stored bytes, read and checked.
    pub bytes: u64,
    /// Documents found damaged and set aside, with their damaged bytes.
    pub set_aside: Vec<(BlobHash, u64)>,
    /// The last document checked, where the next step starts after; `None` when the
    /// step reached the end of the documents held (a pass is done).
    pub next: Option<BlobHash>,
}

/// A file name for a document from its title and media type (what `cophr download` saves
/// it as, and the HTTP download names it): ASCII letters, digits, spaces, dots, dashes and
/// underscores kept, anything else `_`, and the type's extension added if missing.
pub fn document_file_name(title: &str, media_type: &str) -> String {
    let mut name: String = title
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_matches(|c| c == '.' || c == ' ')
        .to_owned();
    if name.is_empty() {
        name = "document".into();
    }
    let ext = match media_type {
        "application/pdf" => "pdf",
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "application/dicom" => "dcm",
        "application/vnd.oasis.opendocument.text" => "odt",
        "application/vnd.oasis.opendocument.spreadsheet" => "ods",
        "application/vnd.oasis.opendocument.presentation" => "odp",
        "application/vnd.oasis.opendocument.graphics" => "odg",
        "text/plain" => "txt",
        _ => "",
    };
    if !ext.is_empty() && !name.to_ascii_lowercase().ends_with(&format!(".{ext}")) {
        name = format!("{name}.{ext}");
    }
    name
}

/// The directory beside an export file that holds its documents' stored (sealed) bytes,
/// one file per document named by its hash: `FILE.documents/`.
pub fn documents_dir(export: &std::path::Path) -> std::path::PathBuf {
    let mut name = export.as_os_str().to_owned();
    name.push(".documents");
    std::path::PathBuf::from(name)
}

/// What [`Store::export_documents`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentsExported {
    /// Documents written.
    pub written: usize,
    /// Their stored bytes.
    pub bytes: u64,
    /// Documents the entries name that this node does not hold (not fetched yet).
    pub missing: Vec<BlobRef>,
}

/// What [`check_documents`] found beside an export file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentsChecked {
    /// Documents present whose every byte hashes to the name the entries give.
    pub verified: usize,
    /// Documents the entries name that are not there.
    pub missing: Vec<BlobRef>,
    /// Documents there whose bytes are not what the entries name (with why).
    pub corrupt: Vec<(BlobRef, String)>,
}

/// Checks the documents `docs` (what an export's entries name) in `dir`: each file's
/// size and BLAKE3 hash, read as a stream. Offline, with no key: the hash is of the
/// stored (sealed) bytes.
pub fn check_documents(docs: &[BlobRef], dir: &std::path::Path) -> DocumentsChecked {
    let mut out = DocumentsChecked::default();
    for doc in docs {
        let path = dir.join(doc.hash.to_hex());
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                out.missing.push(*doc);
                continue;
            }
            Err(e) => {
                out.corrupt
                    .push((*doc, format!("cannot read {}: {e}", path.display())));
                continue;
            }
        };
        let mut hasher = blake3::Hasher::new();
        let mut n = 0u64;
        let mut reader = io::BufReader::new(file);
        let mut buf = vec![0u8; 64 * 1024];
        let read = loop {
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(k) => {
                    hasher.update(&buf[..k]);
                    n += k as u64;
                    if n > doc.size {
                        break Ok(());
                    }
                }
                Err(e) => break Err(e),
            }
        };
        match read {
            Err(e) => out
                .corrupt
                .push((*doc, format!("cannot read {}: {e}", path.display()))),
            Ok(()) if n != doc.size => out.corrupt.push((
                *doc,
                format!("{} bytes, not the {} its entry names", n, doc.size),
            )),
            Ok(()) if blob::BlobHash::from(hasher.finalize()) != doc.hash => out.corrupt.push((
                *doc,
                "its bytes do not hash to the name its entry gives".into(),
            )),
            Ok(()) => out.verified += 1,
        }
    }
    out
}

impl Store {
    /// Writes the stored (sealed) bytes of every document `record`'s entries name that is
    /// held here into `dir` (created, owner-only), one file per document named by its hash,
    /// each checked as it is read and written whole before it is named.
    pub fn export_documents(
        &self,
        record: &cophr_protocol::RecordId,
        dir: &std::path::Path,
    ) -> Result<DocumentsExported, StoreError> {
        let docs: Vec<BlobRef> = self.with_record(record, |r| r.documents().copied().collect())?;
        let mut out = DocumentsExported::default();
        if docs.is_empty() {
            return Ok(out);
        }
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        for doc in docs {
            if !self.inner.blobs.has(&doc.hash) {
                out.missing.push(doc);
                continue;
            }
            let mut stored = self.inner.blobs.open_blob(&doc.hash)?;
            let path = dir.join(doc.hash.to_hex());
            let part = dir.join(format!("{}.part", doc.hash.to_hex()));
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            let mut file = opts.open(&part)?;
            let n = io::copy(&mut stored, &mut file)?;
            file.sync_all()?;
            std::fs::rename(&part, &path)?;
            out.written += 1;
            out.bytes += n;
        }
        Ok(out)
    }

    /// Takes into the blob store the documents `docs` found in `dir` (beside an import
    /// file), each checked against its hash as it is read; returns how many were taken and
    /// those not there. A file whose bytes are not the document's is refused (an error).
    pub fn import_documents(
        &self,
        docs: &[BlobRef],
        dir: &std::path::Path,
    ) -> Result<(usize, Vec<BlobRef>), StoreError> {
        let mut taken = 0;
        let mut missing = Vec::new();
        for doc in docs {
            if self.inner.blobs.has(&doc.hash) {
                continue;
            }
            let file = match std::fs::File::open(dir.join(doc.hash.to_hex())) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    missing.push(*doc);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let (hash, size) = self.inner.blobs.import(file.take(doc.size + 1))?;
            if hash != doc.hash || size != doc.size {
                let _ = self.inner.blobs.remove(&hash);
                return Err(StoreError::Corrupt(format!(
                    "the file given for document {} is not that document",
                    doc.hash
                )));
            }
            taken += 1;
        }
        Ok((taken, missing))
    }

    /// Deletes the documents `docs` (those of a record removed here) that no record still
    /// held names.
    pub(super) fn drop_documents(&self, docs: &[BlobRef]) -> Result<usize, StoreError> {
        if docs.is_empty() {
            return Ok(0);
        }
        let hashes: Vec<BlobHash> = docs.iter().map(|d| d.hash).collect();
        Ok(self.collect_unreferenced_documents(&hashes)?.len())
    }

    /// The documents held here, complete or being received (what
    /// [`Store::collect_unreferenced_documents`] may check).
    pub fn documents_held(&self) -> Vec<BlobHash> {
        let blobs = &self.inner.blobs;
        let mut all: Vec<BlobHash> = blobs.list().into_iter().map(|(h, _)| h).collect();
        all.extend(blobs.partials().into_iter().map(|(h, _)| h));
        all
    }

    /// Removes those of `candidates` (complete or partial) that no record held here names:
    /// a removed record's documents, a document whose entry was never written (a failed
    /// write after its import, an upload or FHIR Binary never named). Returns those removed
    /// with their sizes. The caller gives candidates no write in progress can name: taken
    /// when nothing is being written (`cophr repair`, a node's start, before it serves).
    pub fn collect_unreferenced_documents(
        &self,
        candidates: &[BlobHash],
    ) -> Result<Vec<(BlobHash, u64)>, StoreError> {
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let mut named = std::collections::HashSet::new();
        for record in self.records()? {
            self.with_record(&record, |r| {
                named.extend(r.documents().map(|d| d.hash));
            })?;
        }
        let blobs = &self.inner.blobs;
        let mut removed = Vec::new();
        for hash in candidates {
            if named.contains(hash) {
                continue;
            }
            let size = blobs.size(hash).ok().or_else(|| {
                blobs
                    .partials()
                    .iter()
                    .find(|(h, _)| h == hash)
                    .map(|p| p.1)
            });
            match blobs.remove(hash) {
                Ok(()) => removed.push((*hash, size.unwrap_or(0))),
                // Not held (never fetched, or gone meanwhile): nothing to remove.
                Err(blob_store::BlobError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    }
}

// The protocol's slice unit is the store's chunk group.
const _: () = assert!(super::blobs::GROUP_BYTES == blob::GROUP_BYTES);
const _: () = assert!(SEGMENT_BYTES > TAG_BYTES);

#[cfg(test)]
mod tests {
    use super::*;
    use cophr_protocol::testkit::{key, SeededRng};

    fn doc(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn store(dir: &std::path::Path) -> Store {
        Store::open(dir, key(1, "node")).unwrap().0
    }

    #[test]
    fn a_document_is_kept_sealed_and_reads_back_whole_at_every_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut rng = SeededRng::new(1);
        for n in [
            0,
            1,
            SEGMENT_BYTES - 1,
            SEGMENT_BYTES,
            3 * SEGMENT_BYTES + 11,
        ] {
            let bytes = doc(n);
            let f = s.import_document(&bytes[..], n as u64, &mut rng).unwrap();
            assert_eq!(f.size, n as u64);
            assert!(s.has_document(&f.blob_ref()));
            assert_eq!(s.blobs().size(&f.hash).unwrap(), blob::sealed_len(n as u64));
            let mut back = Vec::new();
            s.open_document(&f).unwrap().read_to_end(&mut back).unwrap();
            assert_eq!(back, bytes, "{n}");
            // What is on disk is sealed: the plain bytes are not there.
            if n >= 64 {
                let stored =
                    std::fs::read(dir.path().join("blobs").join(format!("{}.blob", f.hash)))
                        .unwrap();
                assert!(!stored.windows(64).any(|w| w == &bytes[..64]));
            }
        }
        // Kept across a restart.
        let bytes = doc(100_000);
        let f = s.import_document(&bytes[..], 100_000, &mut rng).unwrap();
        drop(s);
        let s = store(dir.path());
        let mut back = Vec::new();
        s.open_document(&f).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, bytes);
    }

    #[test]
    fn a_file_that_is_not_the_size_it_said_is_refused_and_nothing_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut rng = SeededRng::new(2);
        let bytes = doc(70_000);
        assert!(s.import_document(&bytes[..], 80_000, &mut rng).is_err());
        assert!(s.import_document(&bytes[..], 60_000, &mut rng).is_err());
        assert!(s.blobs().list().is_empty());
        assert!(matches!(
            s.import_document(&bytes[..], blob::MAX_DOCUMENT_BYTES + 1, &mut rng),
            Err(StoreError::Document(blob::BlobError::TooLarge(_)))
        ));
    }

    #[test]
    fn damaged_or_foreign_stored_bytes_are_an_error_never_content() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let mut rng = SeededRng::new(3);
        let bytes = doc(50_000);
        let f = s.import_document(&bytes[..], 50_000, &mut rng).unwrap();
        // Another key: the segments do not open.
        let wrong = DocumentFile {
            key: Some(BlobKey::generate(&mut rng)),
            ..f.clone()
        };
        let mut out = Vec::new();
        assert!(s
            .open_document(&wrong)
            .unwrap()
            .read_to_end(&mut out)
            .is_err());
        // The size the entry names is not the stored one.
        let resized = DocumentFile {
            size: 40_000,
            ..f.clone()
        };
        assert!(matches!(
            s.open_document(&resized),
            Err(StoreError::Corrupt(_))
        ));
        // A flipped byte on disk.
        drop(s);
        let path = dir.path().join("blobs").join(format!("{}.blob", f.hash));
        let mut stored = std::fs::read(&path).unwrap();
        stored[64 + 20_000] ^= 1;
        std::fs::write(&path, stored).unwrap();
        let s = store(dir.path());
        let mut out = Vec::new();
        assert!(s.open_document(&f).unwrap().read_to_end(&mut out).is_err());
    }

    /// Three documents held, sorted by hash, the middle one with a flipped byte on disk at
    /// stored offset 20,000 (its chunk group 16,384..32,768).
    fn three_documents_one_damaged(dir: &std::path::Path) -> (Store, Vec<DocumentFile>) {
        let s = store(dir);
        let mut rng = SeededRng::new(9);
        let mut files: Vec<DocumentFile> = (0..3)
            .map(|i| {
                let bytes = doc(100_000 + i);
                s.import_document(&bytes[..], bytes.len() as u64, &mut rng)
                    .unwrap()
            })
            .collect();
        files.sort_by_key(|f| f.hash);
        drop(s);
        let path = dir.join("blobs").join(format!("{}.blob", files[1].hash));
        let mut stored = std::fs::read(&path).unwrap();
        stored[20_000] ^= 1;
        std::fs::write(&path, stored).unwrap();
        (store(dir), files)
    }

    #[test]
    fn the_scrub_checks_documents_step_by_step_and_sets_the_damaged_aside() {
        let dir = tempfile::tempdir().unwrap();
        let (s, files) = three_documents_one_damaged(dir.path());
        let hashes: Vec<BlobHash> = files.iter().map(|f| f.hash).collect();
        // A budget of one byte: one document a step, in hash order, resumed where it left.
        let first = s.scrub_documents(None, 1).unwrap();
        assert_eq!((first.checked, first.next), (1, Some(hashes[0])));
        assert!(first.set_aside.is_empty());
        let second = s.scrub_documents(first.next.as_ref(), 1).unwrap();
        assert_eq!((second.checked, second.next), (1, Some(hashes[1])));
        assert_eq!(second.set_aside, vec![(hashes[1], 16_384)]);
        let third = s.scrub_documents(second.next.as_ref(), 1).unwrap();
        assert_eq!((third.checked, third.next), (1, None));
        assert!(third.set_aside.is_empty());
        // Only the damaged chunk group is to be fetched again; the others are held whole.
        assert_eq!(
            s.document_missing(&files[1].blob_ref()).unwrap(),
            vec![16_384..32_768]
        );
        assert!(s.has_document(&files[0].blob_ref()) && s.has_document(&files[2].blob_ref()));
        // A whole pass in one step: the two held whole, nothing more to set aside.
        let pass = s.scrub_documents(None, u64::MAX).unwrap();
        assert_eq!((pass.checked, pass.next), (2, None));
        assert!(pass.set_aside.is_empty());
    }

    #[test]
    fn the_background_scrub_finds_damage_and_stops_when_asked() {
        use crate::store::scrub::{ScrubConfig, Scrubber};
        let dir = tempfile::tempdir().unwrap();
        let (s, files) = three_documents_one_damaged(dir.path());
        let (tx, passes) = std::sync::mpsc::sync_channel(4);
        let scrub = Scrubber::start(
            s.clone(),
            ScrubConfig {
                bytes_per_second: u64::MAX,
                pass_interval: std::time::Duration::from_secs(3600),
            },
            Some(tx),
        )
        .unwrap();
        let pass = passes
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a pass");
        assert_eq!(pass.checked, 3);
        assert_eq!(pass.set_aside, vec![(files[1].hash, 16_384)]);
        assert!(!s.has_document(&files[1].blob_ref()));
        // Waiting an hour for the next pass, it stops at once when asked.
        scrub.stop();
        assert!(passes.try_recv().is_err());
    }

    #[test]
    fn a_document_received_from_a_peer_in_slices_is_checked_and_reads_back() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (store(a.path()), store(b.path()));
        let mut rng = SeededRng::new(4);
        let bytes = doc(200_000);
        let f = from.import_document(&bytes[..], 200_000, &mut rng).unwrap();
        let r = f.blob_ref();
        assert_eq!(
            from.document_slice(&BlobRef { size: 1, ..r }, 0, 1)
                .unwrap(),
            None
        );
        assert_eq!(to.document_slice(&r, 0, 1).unwrap(), None);
        let mut missing = to.document_missing(&r).unwrap();
        assert_eq!(missing, vec![0..r.size]);
        while let Some(range) = missing.first().cloned() {
            let (len, encoded) = from
                .document_slice(&r, range.start, 64 * 1024)
                .unwrap()
                .unwrap();
            // A tampered slice is refused; the good one then taken.
            let mut bad = encoded.clone();
            let last = bad.len() - 1;
            bad[last] ^= 1;
            assert!(to
                .receive_document_slice(&r, range.start, len, bad)
                .is_err());
            to.receive_document_slice(&r, range.start, len, encoded)
                .unwrap();
            missing = to.document_missing(&r).unwrap();
        }
        let mut back = Vec::new();
        to.open_document(&f)
            .unwrap()
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, bytes);
    }
}

#[cfg(test)]
mod removal_tests {
    use super::*;
    use cophr_protocol::testkit::{key, profile, SeededRng};
    use cophr_protocol::{Category, Payload, Value};

    fn document_body(file: &DocumentFile) -> Value {
        let mut m = std::collections::BTreeMap::new();
        m.insert("title".to_owned(), Value::Text("Letter".into()));
        m.insert("media-type".to_owned(), Value::Text("text/plain".into()));
        m.insert("file".to_owned(), file.to_value());
        Value::Map(m)
    }

    /// A record removed here (its patient moved it away) takes its documents with it,
    /// but not one another record held here still names.
    #[test]
    fn documents_no_record_names_are_collected_and_named_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), key(1, "node")).unwrap().0;
        let mut rng = SeededRng::new(10);
        let george = key(2, "George");
        s.create_record(&george, profile("P", "patient", None), 1_000, None)
            .unwrap();
        let letter = b"Dear Dr Rao, eGFR stable.\n".repeat(500);
        let named = s
            .import_document(&letter[..], letter.len() as u64, &mut rng)
            .unwrap();
        s.write(
            &george.actor(),
            &george,
            Payload::Create {
                category: Category::Documents,
                body: document_body(&named),
            },
            2_000,
            None,
        )
        .unwrap();
        // Imported, its entry never written (a failed write); and one half received for
        // a record no longer held.
        let orphan = s.import_document(&b"orphan"[..], 6, &mut rng).unwrap();
        let half = BlobRef {
            hash: BlobHash::of(b"another"),
            size: 3 * blob::GROUP_BYTES,
        };
        assert!(!s.document_missing(&half).unwrap().is_empty());
        let candidates = s.documents_held();
        assert_eq!(candidates.len(), 3);

        let removed = s.collect_unreferenced_documents(&candidates).unwrap();
        let mut hashes: Vec<_> = removed.iter().map(|(h, _)| *h).collect();
        hashes.sort();
        let mut expected = vec![orphan.hash, half.hash];
        expected.sort();
        assert_eq!(hashes, expected);
        assert!(s.has_document(&named.blob_ref()));
        assert!(!s.has_document(&orphan.blob_ref()));
        assert_eq!(s.documents_held(), vec![named.hash]);
        // Removing a record whose documents were never fetched here is not an error.
        let ann = key(3, "Ann");
        s.create_record(&ann, profile("A", "patient", None), 1_000, None)
            .unwrap();
        let never = DocumentFile {
            hash: BlobHash::of(b"never fetched"),
            size: blob::sealed_len(10),
            key: None,
        };
        s.write(
            &ann.actor(),
            &ann,
            Payload::Create {
                category: Category::Documents,
                body: document_body(&never),
            },
            2_000,
            None,
        )
        .unwrap();
        s.remove_record(&ann.actor()).unwrap();
    }

    #[test]
    fn a_removed_records_documents_go_unless_another_record_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path(), key(1, "node")).unwrap().0;
        let mut rng = SeededRng::new(9);
        let (george, ann) = (key(2, "George"), key(3, "Ann"));
        for p in [&george, &ann] {
            s.create_record(p, profile("P", "patient", None), 1_000, None)
                .unwrap();
        }
        let letter = b"Dear Dr Rao, eGFR stable.\n".repeat(1000);
        let own = s
            .import_document(&letter[..], letter.len() as u64, &mut rng)
            .unwrap();
        let shared = s.import_document(&b"shared"[..], 6, &mut rng).unwrap();
        for (p, files) in [(&george, vec![&own, &shared]), (&ann, vec![&shared])] {
            for f in files {
                s.write(
                    &p.actor(),
                    p,
                    Payload::Create {
                        category: Category::Documents,
                        body: document_body(f),
                    },
                    2_000,
                    None,
                )
                .unwrap();
            }
        }
        assert!(s.has_document(&own.blob_ref()) && s.has_document(&shared.blob_ref()));
        s.remove_record(&george.actor()).unwrap();
        assert!(
            !s.has_document(&own.blob_ref()),
            "George's own document went"
        );
        assert!(
            s.has_document(&shared.blob_ref()),
            "Ann's record still names this one"
        );
        assert!(!dir
            .path()
            .join("blobs")
            .join(format!("{}.blob", own.hash))
            .exists());
    }
}

/// Most documents uploaded and not yet named that a node keeps counting (beyond, uploads are
/// refused until some are named or collected).
pub const MAX_PENDING_UPLOADS: usize = 4096;
/// How long the reservation of an upload that never arrived is kept (its bytes were
/// counted before they were sent).
pub const UPLOAD_RESERVATION_MS: cophr_protocol::Timestamp = 60 * 60 * 1000;

/// Documents uploaded whole for a record (`PUT /sync/blobs/{hash}`) that no entry names
/// yet, each with its record, stored size and when it was admitted. A host's quotas count
/// them ([`Store::upload_usage`]), so a patient cannot fill a host by uploading files it
/// never names: reserved when the upload is admitted (before its bytes arrive, so two
/// uploads at once cannot both pass), dropped once a record names the document, once the
/// document is collected (no longer held, the reservation older than
/// [`UPLOAD_RESERVATION_MS`]).
#[derive(Debug, Default)]
pub(crate) struct Uploads {
    pending: HashMap<BlobHash, (RecordId, u64, cophr_protocol::Timestamp)>,
}

/// Bytes of documents uploaded and not named yet ([`Store::upload_usage`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadUsage {
    /// Those uploaded for the record asked about.
    pub record_bytes: u64,
    /// All of them (each once).
    pub total_bytes: u64,
}

impl Store {
    /// Reserves an upload of `doc` for `record`, admitted at `now`: counted against the
    /// host's quotas until an entry names it (see [`Store::upload_usage`]).
    /// Refused when [`MAX_PENDING_UPLOADS`] are pending.
    pub fn reserve_upload(
        &self,
        record: &RecordId,
        doc: &BlobRef,
        now: cophr_protocol::Timestamp,
    ) -> Result<(), StoreError> {
        let mut u = self.inner.uploads.lock().unwrap_or_else(|p| p.into_inner());
        if !u.pending.contains_key(&doc.hash) && u.pending.len() >= MAX_PENDING_UPLOADS {
            return Err(StoreError::Busy(format!(
                "{MAX_PENDING_UPLOADS} uploaded documents wait for the entries naming them"
            )));
        }
        u.pending.insert(doc.hash, (*record, doc.size, now));
        Ok(())
    }

    /// Whether `doc` is an upload reserved for `record` and not named yet (counted in the
    /// record's usage by [`Store::upload_usage`]).
    pub fn upload_counted(&self, record: &RecordId, doc: &BlobRef) -> bool {
        let u = self.inner.uploads.lock().unwrap_or_else(|p| p.into_inner());
        u.pending
            .get(&doc.hash)
            .is_some_and(|(r, _, _)| r == record)
    }

    /// The bytes of documents uploaded and not named yet, for `record` and in all, leaving
    /// out (and forgetting) those `named` (by any record held here), and those neither held
    /// nor being received whose reservation is older than [`UPLOAD_RESERVATION_MS`].
    pub fn upload_usage(
        &self,
        record: &RecordId,
        named: &std::collections::BTreeSet<BlobRef>,
        now: cophr_protocol::Timestamp,
    ) -> UploadUsage {
        let named: HashSet<BlobHash> = named.iter().map(|d| d.hash).collect();
        let mut u = self.inner.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let blobs = &self.inner.blobs;
        u.pending.retain(|h, (_, _, at)| {
            !named.contains(h)
                && (blobs.has(h)
                    || blobs.partials().iter().any(|(p, _)| p == h)
                    || now.saturating_sub(*at) < UPLOAD_RESERVATION_MS)
        });
        let mut usage = UploadUsage::default();
        for (r, size, _) in u.pending.values() {
            usage.total_bytes += size;
            if r == record {
                usage.record_bytes += size;
            }
        }
        usage
    }
}
