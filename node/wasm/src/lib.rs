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
//! [`Patient`] is the logic, plain Rust with randomness and time passed in (tested natively,
//! `cargo test -p cophr-wasm`); the `bindings` module (only on `wasm32`) is its thin
//! `wasm-bindgen` face for `node/web/patient.js`. The built module and its glue are committed
//! in `node/web/pkg/` (CI has no WebAssembly target); `node/wasm/build.sh` rebuilds them
//! and records the hash of the sources they were built from, which a node test checks.

use cophr_protocol::backup::KeyBackup;
use cophr_protocol::entry::Timestamp;
use cophr_protocol::fold;
use cophr_protocol::record::Record;
use cophr_protocol::record::SealPolicy;
use cophr_protocol::sync::client::{
    decode_verify, ClientEvent, ClientSession, SessionConfig, SyncError, SyncReport,
};
use cophr_protocol::sync::mem::MemStore;
use cophr_protocol::sync::server::SyncStore;
use cophr_protocol::sync::{self, Request, Response, HTTP_CLIENT};
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
}

#[cfg(test)]
mod tests;
