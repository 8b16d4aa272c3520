//! The node's side of answering peers: the durable [`Store`] as the sync server's
//! [`SyncStore`]. What is answered, served, stored and audited is decided by
//! `cophr_protocol::sync::server`; this file only says how the store does each thing. It
//! runs on blocking threads (the store reads files and fsyncs).

use std::collections::HashMap;

use cophr_protocol::audit::{Action, SignedAudit};
use cophr_protocol::entry::{Timestamp, Verified};
use cophr_protocol::invite::InvitationBox;
use cophr_protocol::record::Record;
use cophr_protocol::sync::server::{SyncStore, Usage};
use cophr_protocol::{ActorId, EntryId, RecordId};

use crate::store::{AuditInput, Store, StoreError};

pub use cophr_protocol::sync::server::{Effect, Peer, Server};

/// The key under which an invitation is kept: the code's hash, never the code.
fn invitation_key(code: &str) -> String {
    format!("invitation/{}", blake3::hash(code.as_bytes()).to_hex())
}

/// The value of an invitation not redeemed yet.
const UNREDEEMED: &[u8] = b"open";

/// Issues a one-time invitation to host a record here (for a host whose admission is by
/// invitation): a random code, shown once; only its hash is stored.
pub fn issue_invitation(store: &Store) -> Result<String, StoreError> {
    use rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    let code = format!(
        "inv-{}",
        data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase()
    );
    store.set_meta(&invitation_key(&code), UNREDEEMED)?;
    Ok(code)
}

/// Redeeming is check-then-set on the store's metadata: one at a time.
static REDEEMING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Updating an invitation box is read-modify-write on the store's metadata: one at a time.
static INVITING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The key under which a record's home pointer is kept while this node hosts it.
pub fn home_key(record: &RecordId) -> String {
    format!("home/{record}")
}

/// The key under which this host remembers that it released a record: a hash of the
/// record's id, not the id, so that a host that released a record keeps nothing naming
/// it (its patient's key is the id).
fn released_key(record: &RecordId) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"cophr released record v1\0");
    h.update(record.as_bytes());
    format!("released/{}", h.finalize().to_hex())
}

/// The value of a released record's key.
const RELEASED: &[u8] = b"released";

/// The key under which an actor's encrypted key backup is kept (a host keeps one per
/// actor; see `cophr_protocol::sync` and `docs/trust.md`).
pub fn backup_key(actor: &ActorId) -> String {
    format!("backup/{actor}")
}

impl SyncStore for Store {
    type Error = StoreError;

    fn lacks_any_document(
        &self,
        docs: &[cophr_protocol::blob::BlobRef],
    ) -> Result<bool, StoreError> {
        Ok(docs.iter().any(|d| !self.has_document(d)))
    }

    fn document_slice(
        &self,
        doc: &cophr_protocol::blob::BlobRef,
        offset: u64,
        len: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        Store::document_slice(self, doc, offset, len)
    }

    fn holds(&self, record: &RecordId) -> Result<bool, StoreError> {
        Store::holds(self, record)
    }

    fn read<T>(
        &self,
        record: &RecordId,
        f: impl FnOnce(&Record) -> T,
    ) -> Result<Option<T>, StoreError> {
        if !Store::holds(self, record)? {
            return Ok(None);
        }
        match self.with_record(record, f) {
            Ok(t) => Ok(Some(t)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn ingest(&mut self, record: &RecordId, entries: Vec<Verified>) -> Result<usize, StoreError> {
        Store::ingest(self, record, entries)
    }

    fn ingest_held(
        &mut self,
        record: &RecordId,
        entries: Vec<Verified>,
    ) -> Result<Option<usize>, StoreError> {
        Store::ingest_held(self, record, entries)
    }

    fn audit_served(
        &mut self,
        record: &RecordId,
        actor: ActorId,
        peer: &str,
        entries: Vec<EntryId>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.audit(
            record,
            AuditInput {
                action: Action::View,
                actor,
                device: Some(peer.to_owned()),
                entries,
                detail: Some(cophr_protocol::audit::SERVED_TO_REPLICA.into()),
            },
            now,
        )
        .map(|_| ())
    }

    fn audit_beyond(
        &self,
        record: &RecordId,
        have: &HashMap<ActorId, u64>,
        limit: usize,
    ) -> Result<Vec<SignedAudit>, StoreError> {
        Store::audit_beyond(self, record, have, limit)
    }

    fn keep_audit(&mut self, events: &[SignedAudit]) -> Result<usize, StoreError> {
        Store::keep_audit(self, events)
    }

    fn set_home(&mut self, record: &RecordId, pointer: &[u8]) -> Result<(), StoreError> {
        self.set_meta(&home_key(record), pointer)
    }

    fn remove_record(&mut self, record: &RecordId) -> Result<(), StoreError> {
        Store::remove_record(self, record)
    }

    fn set_released(&mut self, record: &RecordId, released: bool) -> Result<(), StoreError> {
        let value: &[u8] = if released { RELEASED } else { &[] };
        self.set_meta(&released_key(record), value)
    }

    fn released(&self, record: &RecordId) -> Result<bool, StoreError> {
        Ok(self.meta(&released_key(record))?.as_deref() == Some(RELEASED))
    }

    fn redeem_invitation(&mut self, code: &str, record: &RecordId) -> Result<bool, StoreError> {
        let _one = REDEEMING.lock().unwrap_or_else(|p| p.into_inner());
        let key = invitation_key(code);
        match self.meta(&key)? {
            Some(v) if v == UNREDEEMED => {
                self.set_meta(&key, record.as_bytes())?;
                Ok(true)
            }
            Some(v) => Ok(v == record.as_bytes()),
            None => Ok(false),
        }
    }

    fn update_invitations<T>(
        &mut self,
        record: &RecordId,
        f: impl FnOnce(&mut InvitationBox) -> T,
    ) -> Result<T, StoreError> {
        // One box at a time: an invitation is used once even when two acceptances race.
        let _one = INVITING.lock().unwrap_or_else(|p| p.into_inner());
        let key = format!("invitations/{record}");
        let before = self.meta(&key)?;
        // A box that no longer decodes (it never should) starts again empty rather than
        // stopping every invitation for the record.
        let mut b = before
            .as_deref()
            .and_then(|bytes| InvitationBox::decode(bytes).ok())
            .unwrap_or_default();
        let out = f(&mut b);
        let after = b.encode();
        if before.as_deref() != Some(after.as_slice()) {
            self.set_meta(&key, &after)?;
        }
        Ok(out)
    }

    fn put_backup(&mut self, actor: &ActorId, backup: &[u8]) -> Result<(), StoreError> {
        self.set_meta(&backup_key(actor), backup)
    }

    fn backup(&self, actor: &ActorId) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta(&backup_key(actor))?.filter(|b| !b.is_empty()))
    }

    fn put_share(
        &mut self,
        share: &cophr_protocol::share::Share,
        sealed: &[u8],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        crate::http::share::keep(self, share, sealed, now)
    }

    fn end_share(
        &mut self,
        record: &RecordId,
        id: &cophr_protocol::share::ShareId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        crate::http::share::end_kept(self, record, id, now)
    }

    fn upload_counted(
        &self,
        record: &RecordId,
        doc: &cophr_protocol::blob::BlobRef,
    ) -> Result<bool, StoreError> {
        Ok(Store::upload_counted(self, record, doc))
    }

    fn usage(&self, record: &RecordId) -> Result<Usage, StoreError> {
        let records = self.records()?;
        let mut usage = Usage {
            records: records.len() as u64,
            ..Usage::default()
        };
        // Documents count at their stored size, each once in the total.
        let mut all_docs = std::collections::BTreeSet::new();
        for r in records {
            let (entries, docs) = self.with_record(&r, |rec| {
                let entries = rec
                    .entries()
                    .map(|e| e.signed().bytes().len() as u64)
                    .sum::<u64>();
                (entries, rec.documents().copied().collect::<Vec<_>>())
            })?;
            usage.total_bytes += entries;
            if r == *record {
                usage.record_bytes = entries + docs.iter().map(|d| d.size).sum::<u64>();
            }
            all_docs.extend(docs);
        }
        usage.total_bytes += all_docs.iter().map(|d| d.size).sum::<u64>();
        // Documents uploaded for a record and named by none yet count too (for the record
        // they were uploaded for, and in all), so uploads never named cannot fill a host.
        let uploads = self.upload_usage(record, &all_docs, super::service::now_ms());
        usage.record_bytes += uploads.record_bytes;
        usage.total_bytes += uploads.total_bytes;
        Ok(usage)
    }
}
