//! The `wasm-bindgen` face of [`Patient`] for `node/web/patient.js`: bytes in and out as
//! `Uint8Array`, JSON as strings, time from `Date.now()`, randomness from the browser
//! (`crypto.getRandomValues`, through `getrandom`'s `js` backend). Errors become
//! JavaScript `Error`s carrying the message shown to the patient.

use rand_core::{OsRng, RngCore};
use wasm_bindgen::prelude::*;

use super::Patient;

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

    /// Writes a new item, sealed and signed here; returns its id.
    pub fn add(&mut self, category: &str, body_json: &str, now_ms: f64) -> Result<String, JsError> {
        Ok(self
            .0
            .add(category, body_json, now(now_ms), &mut OsRng)?
            .to_string())
    }
}
