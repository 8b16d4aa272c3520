//! An in-memory [`SyncStore`]: records and audit trails held in maps. The simulation's
//! nodes, the protocol's tests and the fuzzers run the sync state machines over it; the
//! node runs them over its durable store. Same contract, no disk.

use std::collections::{BTreeMap, HashMap};

use super::server::{SyncStore, Usage};
use crate::audit::{Action, AuditEvent, SignedAudit};
use crate::entry::{Timestamp, Verified};
use crate::ids::{ActorId, EntryId, RecordId};
use crate::keys::Keypair;
use crate::record::{Applied, Record, Rejection};

/// One node's records and audit trails, in memory.
#[derive(Debug, Clone)]
pub struct MemStore {
    node: Keypair,
    records: BTreeMap<RecordId, Record>,
    /// Per record: every audit event held (this node's and others'), by (node, seq).
    audit: BTreeMap<RecordId, BTreeMap<(ActorId, u64), SignedAudit>>,
    /// Per record: the home pointer naming this node.
    homes: BTreeMap<RecordId, Vec<u8>>,
    bytes: BTreeMap<RecordId, u64>,
    /// Invitations issued here, and the record each was redeemed for.
    invitations: BTreeMap<String, Option<RecordId>>,
    /// Encrypted key backups kept here, by actor.
    backups: BTreeMap<ActorId, Vec<u8>>,
    /// Per record: patients' invitations to their record (this node is its home host).
    invitation_boxes: BTreeMap<RecordId, crate::invite::InvitationBox>,
    /// Emergency summary shares served here: descriptor and ciphertext, by id.
    shares: BTreeMap<crate::share::ShareId, (crate::share::Share, Vec<u8>)>,
    /// Documents' stored bytes, by hash.
    documents: BTreeMap<crate::blob::BlobHash, Vec<u8>>,
    /// Keys every record here is unlocked with (sealed content opens as it arrives).
    readers: Vec<Keypair>,
    /// Records released here at their patients' request and not hosted again since.
    released: std::collections::BTreeSet<RecordId>,
}

impl MemStore {
    /// An empty store whose audit events `node` signs.
    pub fn new(node: Keypair) -> MemStore {
        MemStore {
            node,
            records: BTreeMap::new(),
            audit: BTreeMap::new(),
            homes: BTreeMap::new(),
            backups: BTreeMap::new(),
            bytes: BTreeMap::new(),
            invitations: BTreeMap::new(),
            invitation_boxes: BTreeMap::new(),
            shares: BTreeMap::new(),
            documents: BTreeMap::new(),
            readers: Vec::new(),
            released: std::collections::BTreeSet::new(),
        }
    }

    /// Keeps a document's stored bytes (named by their hash). Its slices are served as
    /// the bytes themselves: the node's blob store adds the proofs; the memory store keeps
    /// only what the sync rules need.
    pub fn put_document(&mut self, bytes: Vec<u8>) -> crate::blob::BlobRef {
        let doc = crate::blob::BlobRef {
            hash: crate::blob::BlobHash::of(&bytes),
            size: bytes.len() as u64,
        };
        self.documents.insert(doc.hash, bytes);
        doc
    }

    /// Reads sealed content with `key`: every record held, now and later, is unlocked with
    /// it ([`Record::unlock`]), as a node unlocks with its identity.
    pub fn unlock_with(&mut self, key: &Keypair) {
        if self.readers.iter().any(|k| k.actor() == key.actor()) {
            return;
        }
        self.readers.push(key.clone());
        for r in self.records.values_mut() {
            r.unlock(key);
        }
    }

    fn fresh(&self, id: RecordId) -> Record {
        let mut r = Record::new(id);
        for k in &self.readers {
            r.unlock(k);
        }
        r
    }

    /// Issues a one-time invitation code.
    pub fn invite(&mut self, code: &str) {
        self.invitations.insert(code.to_owned(), None);
    }

    /// The record, if held.
    pub fn record(&self, id: &RecordId) -> Option<&Record> {
        self.records.get(id)
    }

    /// Every record held.
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.records.values()
    }

    /// Starts holding an empty record (a replica about to pull it).
    pub fn hold(&mut self, id: RecordId) {
        if !self.records.contains_key(&id) {
            let r = self.fresh(id);
            self.records.insert(id, r);
        }
    }

    /// Applies one entry written here (through the one gate).
    pub fn write(&mut self, v: Verified) -> Result<Applied, Rejection> {
        let id = v.entry().record;
        let size = v.signed().bytes().len() as u64;
        self.hold(id);
        let r = self.records.get_mut(&id).ok_or(Rejection::NoGenesis)?;
        let applied = r.apply(v)?;
        if matches!(applied, Applied::Added { .. }) {
            *self.bytes.entry(id).or_default() += size;
        }
        Ok(applied)
    }

    /// Every audit event held for the record, in (node, sequence) order.
    pub fn audit_events(&self, record: &RecordId) -> Vec<&SignedAudit> {
        self.audit
            .get(record)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }

    /// For each node, the highest audit sequence held for the record.
    pub fn audit_have(&self, record: &RecordId) -> Vec<(ActorId, u64)> {
        let mut have: BTreeMap<ActorId, u64> = BTreeMap::new();
        for (node, seq) in self.audit.get(record).into_iter().flat_map(|m| m.keys()) {
            let e = have.entry(*node).or_default();
            *e = (*e).max(*seq);
        }
        have.into_iter().collect()
    }

    /// The home pointer kept for the record, if this node hosts it.
    pub fn home(&self, record: &RecordId) -> Option<&[u8]> {
        self.homes.get(record).map(Vec::as_slice)
    }

    /// Forgets everything about the record.
    pub fn forget(&mut self, record: &RecordId) {
        self.records.remove(record);
        self.audit.remove(record);
        self.homes.remove(record);
        self.bytes.remove(record);
    }
}

impl SyncStore for MemStore {
    fn lacks_any_document(&self, docs: &[crate::blob::BlobRef]) -> Result<bool, Self::Error> {
        Ok(docs.iter().any(|d| !self.documents.contains_key(&d.hash)))
    }

    fn document_slice(
        &self,
        doc: &crate::blob::BlobRef,
        offset: u64,
        len: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, Self::Error> {
        let Some(bytes) = self.documents.get(&doc.hash) else {
            return Ok(None);
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let part = &bytes[start..start.saturating_add(len).min(bytes.len())];
        Ok(Some((part.len() as u64, part.to_vec())))
    }

    type Error = Rejection;

    fn holds(&self, record: &RecordId) -> Result<bool, Rejection> {
        Ok(self.records.contains_key(record))
    }

    fn read<T>(
        &self,
        record: &RecordId,
        f: impl FnOnce(&Record) -> T,
    ) -> Result<Option<T>, Rejection> {
        Ok(self.records.get(record).map(f))
    }

    fn ingest(&mut self, record: &RecordId, entries: Vec<Verified>) -> Result<usize, Rejection> {
        // All or nothing: apply to a copy, keep it only when every entry applied.
        let mut r = self
            .records
            .get(record)
            .cloned()
            .unwrap_or_else(|| self.fresh(*record));
        let mut added = 0;
        let mut bytes = 0u64;
        for v in entries {
            let size = v.signed().bytes().len() as u64;
            if let Applied::Added { .. } = r.apply(v)? {
                added += 1;
                bytes += size;
            }
        }
        self.records.insert(*record, r);
        *self.bytes.entry(*record).or_default() += bytes;
        Ok(added)
    }

    fn audit_served(
        &mut self,
        record: &RecordId,
        actor: ActorId,
        peer: &str,
        entries: Vec<EntryId>,
        now: Timestamp,
    ) -> Result<(), Rejection> {
        let me = self.node.actor();
        let chain = self.audit.entry(*record).or_default();
        for part in entries.chunks(crate::audit::MAX_AUDIT_ENTRIES) {
            let (seq, prev) = chain
                .range((me, 0)..=(me, u64::MAX))
                .next_back()
                .map_or((1, None), |(&(_, s), e)| (s + 1, Some(e.id())));
            let event = AuditEvent {
                record: *record,
                node: me,
                seq,
                prev,
                time: now,
                action: Action::View,
                actor,
                actor_name: None,
                actor_role: None,
                actor_organisation: None,
                device: Some(peer.to_owned()),
                entries: part.to_vec(),
                detail: Some(crate::audit::SERVED_TO_REPLICA.into()),
            }
            .sign(&self.node);
            chain.insert((me, seq), event);
        }
        Ok(())
    }

    fn audit_beyond(
        &self,
        record: &RecordId,
        have: &HashMap<ActorId, u64>,
        limit: usize,
    ) -> Result<Vec<SignedAudit>, Rejection> {
        Ok(self
            .audit
            .get(record)
            .into_iter()
            .flat_map(|m| m.iter())
            .filter(|((node, seq), _)| have.get(node).is_none_or(|h| seq > h))
            .map(|(_, e)| e.clone())
            .take(limit)
            .collect())
    }

    fn keep_audit(&mut self, events: &[SignedAudit]) -> Result<usize, Rejection> {
        let mut new = 0;
        for e in events {
            let chain = self.audit.entry(e.event.record).or_default();
            if chain
                .insert((e.event.node, e.event.seq), e.clone())
                .is_none()
            {
                new += 1;
            }
        }
        Ok(new)
    }

    fn set_home(&mut self, record: &RecordId, pointer: &[u8]) -> Result<(), Rejection> {
        self.homes.insert(*record, pointer.to_vec());
        Ok(())
    }

    fn remove_record(&mut self, record: &RecordId) -> Result<(), Rejection> {
        self.forget(record);
        Ok(())
    }

    fn set_released(&mut self, record: &RecordId, released: bool) -> Result<(), Rejection> {
        if released {
            self.released.insert(*record);
        } else {
            self.released.remove(record);
        }
        Ok(())
    }

    fn released(&self, record: &RecordId) -> Result<bool, Rejection> {
        Ok(self.released.contains(record))
    }

    fn redeem_invitation(&mut self, code: &str, record: &RecordId) -> Result<bool, Rejection> {
        Ok(match self.invitations.get_mut(code) {
            Some(slot @ None) => {
                *slot = Some(*record);
                true
            }
            Some(Some(r)) => r == record,
            None => false,
        })
    }

    fn update_invitations<T>(
        &mut self,
        record: &RecordId,
        f: impl FnOnce(&mut crate::invite::InvitationBox) -> T,
    ) -> Result<T, Rejection> {
        Ok(f(self.invitation_boxes.entry(*record).or_default()))
    }

    fn usage(&self, record: &RecordId) -> Result<Usage, Rejection> {
        let docs = |r: &Record| r.documents().map(|d| d.size).sum::<u64>();
        let all: std::collections::BTreeSet<_> =
            self.records.values().flat_map(|r| r.documents()).collect();
        Ok(Usage {
            record_bytes: self.bytes.get(record).copied().unwrap_or(0)
                + self.records.get(record).map(docs).unwrap_or(0),
            records: self.records.len() as u64,
            total_bytes: self.bytes.values().sum::<u64>() + all.iter().map(|d| d.size).sum::<u64>(),
        })
    }

    fn put_backup(&mut self, actor: &ActorId, backup: &[u8]) -> Result<(), Rejection> {
        self.backups.insert(*actor, backup.to_vec());
        Ok(())
    }

    fn backup(&self, actor: &ActorId) -> Result<Option<Vec<u8>>, Rejection> {
        Ok(self.backups.get(actor).cloned())
    }

    fn put_share(
        &mut self,
        share: &crate::share::Share,
        sealed: &[u8],
        now: Timestamp,
    ) -> Result<bool, Rejection> {
        let active = self
            .shares
            .values()
            .filter(|(s, _)| {
                s.record == share.record
                    && s.id != share.id
                    && s.status(now) == crate::share::ShareStatus::Active
            })
            .count();
        if active >= crate::share::MAX_SHARES {
            return Ok(false);
        }
        if self
            .shares
            .get(&share.id)
            .is_some_and(|(s, _)| s.record != share.record)
        {
            return Ok(false);
        }
        self.shares
            .insert(share.id, (share.clone(), sealed.to_vec()));
        Ok(true)
    }

    fn end_share(
        &mut self,
        record: &RecordId,
        id: &crate::share::ShareId,
        now: Timestamp,
    ) -> Result<bool, Rejection> {
        match self.shares.get_mut(id) {
            Some((s, sealed)) if s.record == *record => {
                s.end(now);
                sealed.clear();
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl MemStore {
    /// A share served here and its ciphertext (empty once ended), if any.
    pub fn share(&self, id: &crate::share::ShareId) -> Option<&(crate::share::Share, Vec<u8>)> {
        self.shares.get(id)
    }
}

/// Runs one client session to its end against `server` over `server_store`, in process,
/// every message encoded and decoded as on the wire (a message over
/// [`super::MAX_MESSAGE_BYTES`] fails the request, as the transport would). Returns the
/// outcome and the size of every message sent, both ways.
pub fn run_session(
    session: &mut super::client::ClientSession,
    client_store: &mut MemStore,
    client_peer: &super::server::Peer,
    server: &super::server::Server,
    server_store: &mut MemStore,
    now: Timestamp,
    mut nonce: impl FnMut() -> [u8; 16],
) -> (
    Result<super::client::SyncReport, super::client::SyncError>,
    Vec<usize>,
) {
    use super::client::{decode_verify, ClientEvent, SyncError};
    use super::{decode, encode, Request, Response, MAX_MESSAGE_BYTES};
    let record = session.record();
    let mut sizes = Vec::new();
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::Received(entries) => {
                    let stored = decode_verify(&record, &entries).and_then(|v| {
                        client_store
                            .ingest(&record, v)
                            .map_err(|e| SyncError::BadEntries(e.to_string()))
                    });
                    session.handle_stored(stored, client_store.record(&record));
                }
                ClientEvent::AuditReceived(events) => {
                    let kept = client_store
                        .keep_audit(&events)
                        .map_err(|e| SyncError::Store(e.to_string()));
                    session.handle_audit_kept(kept);
                }
                ClientEvent::AuditPushed(_) => {}
                ClientEvent::Done(result) => return (result, sizes),
            }
        }
        let Some(request) = session.poll_request(now, nonce(), client_store.record(&record)) else {
            if session.is_done() {
                continue;
            }
            return (
                Err(SyncError::Protocol("the session stalled".into())),
                sizes,
            );
        };
        let bytes = encode(&request);
        sizes.push(bytes.len());
        let request: Request = match decode(&bytes) {
            Ok(r) => r,
            Err(e) => {
                session.handle_failure(format!("request does not decode: {e}"));
                continue;
            }
        };
        let (response, _effects) = server.handle(server_store, client_peer, request, now);
        let bytes = encode(&response);
        sizes.push(bytes.len());
        if bytes.len() > MAX_MESSAGE_BYTES {
            session.handle_failure("response over the message limit");
            continue;
        }
        match decode::<Response>(&bytes) {
            Ok(r) => session.handle_response(r, client_store.record(&record)),
            Err(e) => session.handle_failure(format!("response does not decode: {e}")),
        }
    }
}
