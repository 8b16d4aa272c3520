//! The protocol core in a browser: a patient with no node of their own.
//!
//! A patient whose record lives on a community host (a blind relay: it stores and serves
//! the record, never reads it) opens the host's `/patient.html`. The page fetches the
//! encrypted key backup the host keeps, and this module, built to WebAssembly, does
//! everything that needs the key or the content **in the page**: it opens the backup with
//! the passphrase (argon2id, never sent anywhere), syncs the record over the host's
//! `POST /sync` with the very client state machine a node uses
//! ([`cophr_protocol::sync::client::ClientSession`], proofs signed here), verifies and
//! folds what arrives, opens the sealed content with the key, and writes new entries sealed
//! ([`cophr_protocol::record::Record::prepare_sealed`]) and signed here before pushing them.
//! The host sees only what any relay sees: sealed entries, signatures and its own proof
//! checks.
//!
//! Documents stored apart (`docs/documents.md`) are sealed and opened here too: a
//! [`DocumentSealer`] seals a file segment by segment ([`cophr_protocol::blob::seal_segment`],
//! a fresh random key) as the page reads it in slices, hashing the sealed bytes, which the
//! page hands the host (`PUT /sync/blobs/{hash}`, with a proof from
//! [`Patient::blob_proof`]) before [`Patient::add_document`] writes the entry naming them;
//! a [`DocumentOpener`] checks the sealed bytes fetched back (`GET /sync/blobs/{hash}`) and
//! opens them segment by segment. The host holds only sealed bytes and never the key.
//!
//! [`Patient`] is the logic, plain Rust with randomness and time passed in (tested natively,
//! `cargo test -p cophr-wasm`); the `bindings` module (only on `wasm32`) is its thin
//! `wasm-bindgen` face for `node/web/patient.js`. The built module and its glue are committed
//! in `node/web/pkg/` (CI has no WebAssembly target); `node/wasm/build.sh` rebuilds them
//! and records the hash of the sources they were built from, which a node test checks.

use cophr_protocol::backup::KeyBackup;
use cophr_protocol::blob::{self, BlobHash, BlobKey, BlobRef, DocumentFile};
use cophr_protocol::entry::Timestamp;
use cophr_protocol::fold;
use cophr_protocol::record::Record;
use cophr_protocol::record::SealPolicy;
use cophr_protocol::sync::client::{
    decode_verify, ClientEvent, ClientSession, SessionConfig, SyncError, SyncReport,
};
use cophr_protocol::sync::mem::MemStore;
use cophr_protocol::sync::server::SyncStore;
use cophr_protocol::sync::{self, BlobOp, Proof, Request, Response, HTTP_CLIENT};
use cophr_protocol::{schema, ActorId, Category, EntryId, Keypair, Payload, RecordId};
use rand_core::{CryptoRng, RngCore};
use serde_json::{json, Value};

#[cfg(target_arch = "wasm32")]
mod bindings;

/// Why something the page asked for could not be done (shown to the patient as is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(e: impl std::fmt::Display) -> Error {
    Error(e.to_string())
}

/// The request asking a host for `actor`'s encrypted key backup (needs no proof: whoever
/// asks has no key yet; the host rate-limits it).
pub fn backup_request(actor: &str) -> Result<Vec<u8>, Error> {
    let actor: ActorId = actor
        .trim()
        .parse()
        .map_err(|e| Error(format!("not a cophr id: {e}")))?;
    Ok(sync::encode(&Request::BackupGet { actor }))
}

/// The backup in a host's answer to [`backup_request`].
pub fn backup_from_response(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    match sync::decode::<Response>(bytes).map_err(|e| Error(format!("bad answer: {e}")))? {
        Response::Backup {
            backup: Some(backup),
        } => Ok(backup.into_vec()),
        Response::Backup { backup: None } => {
            Err(Error("this host keeps no key backup for that id".into()))
        }
        Response::Refused { reason, .. } => Err(Error(format!("the host refused: {reason}"))),
        other => Err(Error(format!("unexpected answer: {}", other.kind()))),
    }
}

/// A patient in the page: their key (opened from the backup), their record as far as it
/// has been synced, and the sync in progress, if any.
pub struct Patient {
    key: Keypair,
    record: RecordId,
    store: MemStore,
    server: Vec<u8>,
    device: Option<String>,
    sync: Option<ClientSession>,
    last: Option<Result<SyncReport, SyncError>>,
}

impl std::fmt::Debug for Patient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Patient")
            .field("actor", &self.key.actor())
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

impl Patient {
    /// Opens `backup` with `passphrase` (argon2id here, in the page) for syncing `record`
    /// (the key's own record when `None`) with the host whose transport identity is
    /// `server`.
    pub fn open(
        backup: &[u8],
        passphrase: &str,
        record: Option<&str>,
        server: &[u8],
    ) -> Result<Patient, Error> {
        let restored = KeyBackup::decode(backup)
            .and_then(|b| b.open(passphrase))
            .map_err(err)?;
        let record = match record.map(str::trim).filter(|s| !s.is_empty()) {
            Some(r) => r
                .parse()
                .map_err(|e| Error(format!("not a record id: {e}")))?,
            None => restored.key.actor(),
        };
        Ok(Patient::with_key(restored.key, record, server))
    }

    /// A patient holding `key` already (tests).
    pub fn with_key(key: Keypair, record: RecordId, server: &[u8]) -> Patient {
        let mut store = MemStore::new(key.clone());
        store.unlock_with(&key);
        store.hold(record);
        Patient {
            key,
            record,
            store,
            server: server.to_vec(),
            device: Some("browser".into()),
            sync: None,
            last: None,
        }
    }

    /// The key's actor id.
    pub fn actor(&self) -> ActorId {
        self.key.actor()
    }

    /// The record.
    pub fn record_id(&self) -> RecordId {
        self.record
    }

    /// The record as held in the page.
    pub fn record(&self) -> Option<&Record> {
        self.store.record(&self.record)
    }

    /// Starts a sync with the host: pull what is new, and push what the page wrote that the
    /// host lacks when `push`. Drive it with [`Patient::next_request`] and
    /// [`Patient::handle_response`].
    pub fn start_sync(&mut self, push: bool) {
        let mut cfg = SessionConfig::new(self.record, HTTP_CLIENT.to_vec(), self.server.clone());
        cfg.push = push;
        self.sync = Some(ClientSession::new(self.key.clone(), cfg));
        self.last = None;
    }

    /// The next request to send to the host (encoded), or `None` when the sync has ended
    /// ([`Patient::sync_report`] tells how). Acts on what earlier answers brought first:
    /// received entries are verified and applied, all or nothing.
    pub fn next_request(&mut self, now: Timestamp, nonce: [u8; 16]) -> Option<Vec<u8>> {
        let mut session = self.sync.take()?;
        loop {
            while let Some(event) = session.poll_event() {
                match event {
                    ClientEvent::Received(entries) => {
                        let stored = decode_verify(&self.record, &entries).and_then(|v| {
                            self.store
                                .ingest(&self.record, v)
                                .map_err(|e| SyncError::BadEntries(e.to_string()))
                        });
                        session.handle_stored(stored, self.store.record(&self.record));
                    }
                    ClientEvent::AuditReceived(events) => {
                        let kept = self
                            .store
                            .keep_audit(&events)
                            .map_err(|e| SyncError::Store(e.to_string()));
                        session.handle_audit_kept(kept);
                    }
                    ClientEvent::AuditPushed(_) => {}
                    ClientEvent::Done(result) => {
                        self.last = Some(result);
                        return None;
                    }
                }
            }
            match session.poll_request(now, nonce, self.store.record(&self.record)) {
                Some(request) => {
                    self.sync = Some(session);
                    return Some(sync::encode(&request));
                }
                None if session.is_done() => continue,
                None => {
                    self.last = Some(Err(SyncError::Protocol("the sync stalled".into())));
                    return None;
                }
            }
        }
    }

    /// Delivers the host's answer (the body of `POST /sync`) to the last request.
    pub fn handle_response(&mut self, bytes: &[u8]) {
        let Some(session) = self.sync.as_mut() else {
            return;
        };
        match sync::decode::<Response>(bytes) {
            Ok(r) => session.handle_response(r, self.store.record(&self.record)),
            Err(e) => session.handle_failure(format!("answer does not decode: {e}")),
        }
    }

    /// No answer came (the request failed, or the host answered with an HTTP error).
    pub fn handle_failure(&mut self, reason: &str) {
        if let Some(session) = self.sync.as_mut() {
            session.handle_failure(reason);
        }
    }

    /// How the last sync ended, as JSON: `{done, pulled, pushed, rejected, error}`.
    pub fn sync_report(&self) -> Value {
        match &self.last {
            None => json!({"done": false}),
            Some(Ok(r)) => json!({
                "done": true,
                "pulled": r.pulled,
                "pushed": r.pushed,
                "rejected": r.rejected.iter().map(|(id, why)| json!({"id": id.to_string(), "reason": why})).collect::<Vec<_>>(),
                "error": null,
            }),
            Some(Err(e)) => json!({"done": true, "error": e.to_string()}),
        }
    }

    /// The record as the patient sees it at `now`, content opened here: every current item
    /// (with its one-line summary), and how many are deleted or locked (sealed under a key
    /// this key was not given).
    pub fn items(&self, now: Timestamp) -> Value {
        let Some(r) = self.record() else {
            return json!({"items": [], "deleted": 0, "locked": 0, "entries": 0});
        };
        let viewer = r.viewer(&self.key.actor(), now);
        let state = fold::current(r, &viewer);
        let items: Vec<Value> = state
            .items
            .iter()
            .map(|i| {
                let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
                v["summary"] = Value::String(schema::summary(&i.category, &i.body));
                // A document stored apart is shown by hash and sizes, never its key.
                for f in document_fields(&i.category) {
                    if let Some(file) = i.body.get(f).and_then(|d| DocumentFile::from_value(d).ok())
                    {
                        v["body"][f] = json!({
                            "hash": file.hash.to_hex(),
                            "size": file.size,
                            "stored": file.blob_ref().size,
                        });
                    }
                }
                v
            })
            .collect();
        json!({
            "items": items,
            "deleted": state.deleted.len(),
            "locked": state.locked.len(),
            "entries": r.len(),
        })
    }

    /// Writes a new item of `category` with `body` (JSON, checked against the category's
    /// rules), sealed and signed here at `now`; a sync with push then takes it to the host.
    /// Returns the item's id.
    pub fn add<R: RngCore + CryptoRng>(
        &mut self,
        category: &str,
        body: &str,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<EntryId, Error> {
        let category: Category = category
            .trim()
            .parse()
            .map_err(|e| Error(format!("category: {e}")))?;
        let json: Value =
            serde_json::from_str(body).map_err(|e| Error(format!("body is not JSON: {e}")))?;
        let body = schema::body_from_json(&category, &json)
            .map_err(|e| Error(format!("{category}: {e}")))?;
        self.write(category, body, now, rng)
    }

    /// Writes a documents entry naming a document sealed here ([`DocumentSealer`]), whose
    /// sealed bytes the host already holds (`PUT /sync/blobs/{hash}`): its title, the
    /// media type recognised from its content, its date (`YYYY-MM-DD`, optional) and the
    /// file (hash, size and key: the key only ever inside the sealed body). Returns the
    /// item's id.
    pub fn add_document<R: RngCore + CryptoRng>(
        &mut self,
        sealed: &SealedDocument,
        title: &str,
        date: Option<&str>,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<EntryId, Error> {
        let category = Category::Documents;
        let mut fields = std::collections::BTreeMap::new();
        let text = |t: &str| cophr_protocol::Value::Text(t.trim().to_owned());
        fields.insert("title".to_owned(), text(title));
        fields.insert("media-type".to_owned(), text(sealed.media_type));
        if let Some(d) = date.map(str::trim).filter(|d| !d.is_empty()) {
            fields.insert("date".to_owned(), text(d));
        }
        fields.insert("file".to_owned(), sealed.file.to_value());
        let body = cophr_protocol::Value::Map(fields);
        schema::validate(&category, &body).map_err(|e| Error(format!("{category}: {e}")))?;
        self.write(category, body, now, rng)
    }

    fn write<R: RngCore + CryptoRng>(
        &mut self,
        category: Category,
        body: cophr_protocol::Value,
        now: Timestamp,
        rng: &mut R,
    ) -> Result<EntryId, Error> {
        let r = self
            .record()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| Error("sync the record from the host before writing".into()))?;
        let policy = SealPolicy {
            seal_new_streams: true,
            history: true,
        };
        let entries = r
            .prepare_sealed(
                &self.key,
                Payload::Create { category, body },
                now,
                self.device.clone(),
                policy,
                rng,
            )
            .map_err(err)?;
        let id = entries
            .iter()
            .rev()
            .find(|v| !matches!(v.entry().payload, Payload::KeyWrap { .. }))
            .or(entries.last())
            .map(|v| v.id())
            .ok_or_else(|| Error("nothing to write".into()))?;
        for v in entries {
            self.store.write(v).map_err(err)?;
        }
        Ok(id)
    }

    /// A proof, signed here, for one transfer of a document's sealed bytes with the host
    /// (`op` on `doc`, [`sync::http_blob_client`]): the value of the request's
    /// `x-cophr-proof` header, before base64.
    pub fn blob_proof(
        &self,
        op: BlobOp,
        doc: &BlobRef,
        now: Timestamp,
        nonce: [u8; 16],
    ) -> Vec<u8> {
        let proof = Proof::new(
            &self.key,
            self.record,
            &sync::http_blob_client(op, doc),
            &self.server,
            nonce,
            now,
        );
        sync::encode(&proof)
    }

    /// The document of item `id` (the version in effect) as the patient sees it at `now`:
    /// an opener for its sealed bytes, with what the page shows of it.
    pub fn document(&self, id: &str, now: Timestamp) -> Result<DocumentOpener, Error> {
        let id: EntryId = id
            .trim()
            .parse()
            .map_err(|e| Error(format!("not an entry id: {e}")))?;
        let r = self
            .record()
            .ok_or_else(|| Error("the record is not open".into()))?;
        let viewer = r.viewer(&self.key.actor(), now);
        let state = fold::current(r, &viewer);
        let item = state
            .items
            .iter()
            .find(|i| i.id == id || i.current == id)
            .ok_or_else(|| Error(format!("{id} is not an item you can read")))?;
        let file = document_fields(&item.category)
            .find_map(|f| item.body.get(f))
            .ok_or_else(|| Error(format!("{id} has no document stored apart")))
            .and_then(|v| DocumentFile::from_value(v).map_err(err))?;
        let text = |k: &str| match item.body.get(k) {
            Some(cophr_protocol::Value::Text(t)) => t.clone(),
            _ => String::new(),
        };
        Ok(DocumentOpener::new(file, text("title"), text("media-type")))
    }
}

/// The fields of `category` that hold a document stored apart.
fn document_fields(category: &Category) -> impl Iterator<Item = &'static str> {
    schema::schema(category)
        .into_iter()
        .flat_map(|s| s.fields.iter())
        .filter(|f| f.ty == schema::FieldType::Document)
        .map(|f| f.name)
}

/// A document being sealed in the page: give it the file's segments in order
/// ([`blob::SEGMENT_BYTES`] each, the last shorter), take each sealed segment for the
/// host; the sealed bytes are hashed on the way, and the first segment tells the media type
/// ([`schema::sniff`]). Only one segment is held at a time.
pub struct DocumentSealer {
    key: BlobKey,
    plain: u64,
    next: u64,
    hasher: blake3::Hasher,
    media_type: Option<&'static str>,
}

impl std::fmt::Debug for DocumentSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("DocumentSealer")
            .field("plain", &self.plain)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl DocumentSealer {
    /// Starts sealing a file of `plain` bytes under a fresh random key.
    pub fn new<R: RngCore + CryptoRng>(plain: u64, rng: &mut R) -> Result<DocumentSealer, Error> {
        if plain > blob::MAX_DOCUMENT_BYTES {
            return Err(Error(format!(
                "a document may be at most {} bytes; this one is {plain}",
                blob::MAX_DOCUMENT_BYTES
            )));
        }
        Ok(DocumentSealer {
            key: BlobKey::generate(rng),
            plain,
            next: 0,
            hasher: blake3::Hasher::new(),
            media_type: None,
        })
    }

    /// How many segments the file is sealed in.
    pub fn segments(&self) -> u64 {
        blob::segments(self.plain)
    }

    /// The plain bytes segment `index` covers: (offset, length).
    pub fn span(&self, index: u64) -> Result<(u64, usize), Error> {
        blob::segment_span(self.plain, index)
            .map(|(at, len, _, _)| (at, len))
            .map_err(err)
    }

    /// Seals the next segment (exactly its plain bytes) and returns it sealed.
    pub fn seal(&mut self, bytes: &[u8]) -> Result<Vec<u8>, Error> {
        if self.next == 0 {
            let head = &bytes[..bytes.len().min(schema::SNIFF_BYTES)];
            self.media_type = Some(schema::sniff(head).ok_or_else(|| {
                Error(format!(
                    "not a file of an accepted type ({}), as far as its content shows",
                    schema::DOCUMENT_MEDIA_TYPES.join(", ")
                ))
            })?);
        }
        let sealed = blob::seal_segment(&self.key, self.plain, self.next, bytes).map_err(err)?;
        self.hasher.update(&sealed);
        self.next += 1;
        Ok(sealed)
    }

    /// Once every segment is sealed: the document, as an entry names it.
    pub fn finish(&self) -> Result<SealedDocument, Error> {
        let media_type = self
            .media_type
            .filter(|_| self.next == self.segments())
            .ok_or_else(|| Error("not every segment of the file was sealed".into()))?;
        Ok(SealedDocument {
            file: DocumentFile {
                hash: BlobHash::from(self.hasher.finalize()),
                size: self.plain,
                key: Some(self.key.clone()),
            },
            media_type,
        })
    }
}

/// A document sealed in the page: what an entry names, and its media type.
#[derive(Debug, Clone)]
pub struct SealedDocument {
    /// Hash and size of the sealed bytes, the plain size and the key.
    pub file: DocumentFile,
    /// Recognised from its content.
    pub media_type: &'static str,
}

impl SealedDocument {
    /// What the host is given: the sealed bytes' hash and size.
    pub fn blob_ref(&self) -> BlobRef {
        self.file.blob_ref()
    }
}

/// A document's sealed bytes being checked and opened in the page as they arrive: give
/// it the bytes in order, in pieces of any size; it returns the plain bytes of each segment
/// once the segment is whole and opens (the key's AEAD authenticates each), and
/// [`DocumentOpener::finish`] checks that exactly the sealed bytes the entry names came
/// (their BLAKE3 hash). Holds at most one segment beside the piece given.
pub struct DocumentOpener {
    file: DocumentFile,
    title: String,
    media_type: String,
    next: u64,
    buf: Vec<u8>,
    received: u64,
    hasher: blake3::Hasher,
}

impl std::fmt::Debug for DocumentOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("DocumentOpener")
            .field("hash", &self.file.hash)
            .field("size", &self.file.size)
            .finish_non_exhaustive()
    }
}

impl DocumentOpener {
    fn new(file: DocumentFile, title: String, media_type: String) -> DocumentOpener {
        DocumentOpener {
            file,
            title,
            media_type,
            next: 0,
            buf: Vec::new(),
            received: 0,
            hasher: blake3::Hasher::new(),
        }
    }

    /// What the host holds: the sealed bytes' hash and size.
    pub fn blob_ref(&self) -> BlobRef {
        self.file.blob_ref()
    }

    /// What the page shows: title, media type, plain size, and the sealed bytes' hash and
    /// size (never the key).
    pub fn about(&self) -> Value {
        json!({
            "title": self.title,
            "media-type": self.media_type,
            "size": self.file.size,
            "hash": self.file.hash.to_hex(),
            "stored": self.file.blob_ref().size,
        })
    }

    /// The next sealed bytes; returns the plain bytes of the segments they complete.
    pub fn push(&mut self, piece: &[u8]) -> Result<Vec<u8>, Error> {
        let stored = self.file.blob_ref().size;
        if self.received + piece.len() as u64 > stored {
            return Err(Error(format!(
                "the host sent more than the document's {stored} sealed bytes"
            )));
        }
        self.received += piece.len() as u64;
        self.hasher.update(piece);
        let Some(key) = self.file.key.clone() else {
            // Stored in clear (not written in a page): the bytes are the document.
            return Ok(piece.to_vec());
        };
        let mut out = Vec::new();
        let mut rest = piece;
        while !rest.is_empty() {
            let (_, _, _, len) = blob::segment_span(self.file.size, self.next).map_err(err)?;
            let take = (len - self.buf.len()).min(rest.len());
            self.buf.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buf.len() == len {
                let plain =
                    blob::open_segment(&key, self.file.size, self.next, &self.buf).map_err(err)?;
                out.extend_from_slice(&plain);
                self.buf.clear();
                self.next += 1;
            }
        }
        Ok(out)
    }

    /// Once the host's answer has ended: checks that every sealed byte came and that they
    /// hash to what the entry names.
    pub fn finish(&self) -> Result<(), Error> {
        let stored = self.file.blob_ref().size;
        if self.received != stored {
            return Err(Error(format!(
                "the host sent {} of the document's {stored} sealed bytes",
                self.received
            )));
        }
        if BlobHash::from(self.hasher.finalize()) != self.file.hash {
            return Err(Error(
                "the bytes the host sent are not the document the entry names".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
