//! The `wasm-bindgen` face of [`Patient`] for `node/web/patient.js`: bytes in and out as
//! `Uint8Array`, JSON as strings, time from `Date.now()`, randomness from the browser
//! (`crypto.getRandomValues`, through `getrandom`'s `js` backend). Errors become
//! JavaScript `Error`s carrying the message shown to the patient.

use rand_core::{OsRng, RngCore};
use wasm_bindgen::prelude::*;

use cophr_protocol::blob::{BlobHash, BlobRef};
use cophr_protocol::sync::BlobOp;

use super::{DocumentOpener, DocumentSealer, Patient, SealedDocument};

/// The request asking the host for `actor`'s encrypted key backup.
#[wasm_bindgen(js_name = backupRequest)]
pub fn backup_request(actor: &str) -> Result<Vec<u8>, JsError> {
    Ok(super::backup_request(actor)?)
}

/// The backup in the host's answer.
#[wasm_bindgen(js_name = backupFromResponse)]
pub fn backup_from_response(bytes: &[u8]) -> Result<Vec<u8>, JsError> {
    Ok(super::backup_from_response(bytes)?)
}

/// Every category's schema (JSON), for the page's forms.
#[wasm_bindgen]
pub fn categories() -> String {
    cophr_protocol::schema::catalogue().to_string()
}

fn now(ms: f64) -> u64 {
    if ms.is_finite() && ms > 0.0 {
        ms as u64
    } else {
        0
    }
}

/// A patient in the page (see [`Patient`]).
#[derive(Debug)]
#[wasm_bindgen(js_name = Patient)]
pub struct JsPatient(Patient);

#[wasm_bindgen(js_class = Patient)]
impl JsPatient {
    /// Opens the backup with the passphrase, for `record` (the key's own when empty) on
    /// the host whose transport identity is `server`.
    #[wasm_bindgen(constructor)]
    pub fn open(
        backup: &[u8],
        passphrase: &str,
        record: &str,
        server: &[u8],
    ) -> Result<JsPatient, JsError> {
        Ok(JsPatient(Patient::open(
            backup,
            passphrase,
            Some(record),
            server,
        )?))
    }

    /// The key's actor id.
    #[wasm_bindgen(getter)]
    pub fn actor(&self) -> String {
        self.0.actor().to_string()
    }

    /// The record's id.
    #[wasm_bindgen(getter)]
    pub fn record(&self) -> String {
        self.0.record_id().to_string()
    }

    /// Starts a sync (pushing what the host lacks when `push`).
    #[wasm_bindgen(js_name = startSync)]
    pub fn start_sync(&mut self, push: bool) {
        self.0.start_sync(push)
    }

    /// The next request to `POST /sync`, or `undefined` when the sync has ended.
    #[wasm_bindgen(js_name = nextRequest)]
    pub fn next_request(&mut self, now_ms: f64) -> Option<Vec<u8>> {
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        self.0.next_request(now(now_ms), nonce)
    }

    /// The host's answer to the last request.
    #[wasm_bindgen(js_name = handleResponse)]
    pub fn handle_response(&mut self, bytes: &[u8]) {
        self.0.handle_response(bytes)
    }

    /// The last request got no answer.
    #[wasm_bindgen(js_name = handleFailure)]
    pub fn handle_failure(&mut self, reason: &str) {
        self.0.handle_failure(reason)
    }

    /// How the last sync ended (JSON).
    #[wasm_bindgen(js_name = syncReport)]
    pub fn sync_report(&self) -> String {
        self.0.sync_report().to_string()
    }

    /// The record as the patient sees it now, content opened here (JSON).
    pub fn items(&self, now_ms: f64) -> String {
        self.0.items(now(now_ms)).to_string()
    }

    /// Writes a documents entry naming the document `sealer` sealed (its sealed bytes
    /// already handed to the host); returns its id.
    #[wasm_bindgen(js_name = addDocument)]
    pub fn add_document(
        &mut self,
        sealer: &JsDocumentSealer,
        title: &str,
        date: &str,
        now_ms: f64,
    ) -> Result<String, JsError> {
        let sealed = sealer.sealed()?;
        Ok(self
            .0
            .add_document(&sealed, title, Some(date), now(now_ms), &mut OsRng)?
            .to_string())
    }

    /// The `x-cophr-proof` header (base64) for one transfer of a document's sealed bytes:
    /// `op` is `put` or `get`, `hash` the sealed bytes' hash (hex), `size` their length.
    #[wasm_bindgen(js_name = blobProof)]
    pub fn blob_proof(
        &self,
        op: &str,
        hash: &str,
        size: f64,
        now_ms: f64,
    ) -> Result<String, JsError> {
        let op = match op {
            "put" => BlobOp::Put,
            "get" => BlobOp::Get,
            other => return Err(JsError::new(&format!("not a transfer: {other}"))),
        };
        let hash: BlobHash = hash.parse()?;
        let doc = BlobRef {
            hash,
            size: now(size),
        };
        let mut nonce = [0u8; 16];
        OsRng.fill_bytes(&mut nonce);
        let proof = self.0.blob_proof(op, &doc, now(now_ms), nonce);
        Ok(base64(&proof))
    }

    /// An opener for the document of item `id` (the version in effect).
    pub fn document(&self, id: &str, now_ms: f64) -> Result<JsDocumentOpener, JsError> {
        Ok(JsDocumentOpener(self.0.document(id, now(now_ms))?))
    }

    /// Writes a new item, sealed and signed here; returns its id.
    pub fn add(&mut self, category: &str, body_json: &str, now_ms: f64) -> Result<String, JsError> {
        Ok(self
            .0
            .add(category, body_json, now(now_ms), &mut OsRng)?
            .to_string())
    }
}

/// Standard padded base64 (what the host's `x-cophr-proof` header takes).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A file being sealed in the page (see [`DocumentSealer`]).
#[derive(Debug)]
#[wasm_bindgen(js_name = DocumentSealer)]
pub struct JsDocumentSealer(DocumentSealer);

impl JsDocumentSealer {
    fn sealed(&self) -> Result<SealedDocument, JsError> {
        Ok(self.0.finish()?)
    }
}

#[wasm_bindgen(js_class = DocumentSealer)]
impl JsDocumentSealer {
    /// Starts sealing a file of `size` bytes under a fresh random key.
    #[wasm_bindgen(constructor)]
    pub fn new(size: f64) -> Result<JsDocumentSealer, JsError> {
        Ok(JsDocumentSealer(DocumentSealer::new(
            now(size),
            &mut OsRng,
        )?))
    }

    /// How many segments the file is sealed in.
    #[wasm_bindgen(getter)]
    pub fn segments(&self) -> f64 {
        self.0.segments() as f64
    }

    /// Where segment `index` starts in the file.
    #[wasm_bindgen(js_name = segmentStart)]
    pub fn segment_start(&self, index: f64) -> Result<f64, JsError> {
        Ok(self.0.span(now(index))?.0 as f64)
    }

    /// How many bytes of the file segment `index` covers.
    #[wasm_bindgen(js_name = segmentLength)]
    pub fn segment_length(&self, index: f64) -> Result<f64, JsError> {
        Ok(self.0.span(now(index))?.1 as f64)
    }

    /// Seals the next segment; returns it sealed.
    pub fn seal(&mut self, bytes: &[u8]) -> Result<Vec<u8>, JsError> {
        Ok(self.0.seal(bytes)?)
    }

    /// Once every segment is sealed: `{hash, size, "media-type"}` of the sealed bytes
    /// (JSON; never the key).
    pub fn finish(&self) -> Result<String, JsError> {
        let sealed = self.0.finish()?;
        let r = sealed.blob_ref();
        Ok(serde_json::json!({
            "hash": r.hash.to_hex(),
            "size": r.size,
            "media-type": sealed.media_type,
        })
        .to_string())
    }
}

/// A document's sealed bytes being checked and opened in the page (see
/// [`DocumentOpener`]).
#[derive(Debug)]
#[wasm_bindgen(js_name = DocumentOpener)]
pub struct JsDocumentOpener(DocumentOpener);

#[wasm_bindgen(js_class = DocumentOpener)]
impl JsDocumentOpener {
    /// What the page shows of it (JSON: title, media type, size, hash, stored size).
    pub fn about(&self) -> String {
        self.0.about().to_string()
    }

    /// The next sealed bytes from the host; the plain bytes of the segments they complete.
    pub fn push(&mut self, piece: &[u8]) -> Result<Vec<u8>, JsError> {
        Ok(self.0.push(piece)?)
    }

    /// Once the host's answer has ended: every byte came and they are the document's.
    pub fn finish(&self) -> Result<(), JsError> {
        Ok(self.0.finish()?)
    }
}
