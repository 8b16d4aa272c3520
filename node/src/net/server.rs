//! Answering peers' sync requests from the store. Runs on blocking threads (the store
//! reads files and fsyncs). Every answer to a peer without access is the same refusal, so
//! a peer learns nothing about records it may not see, not even whether they are held.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use libp2p::PeerId;

use cophr_protocol::audit::{Action, SignedAudit};
use cophr_protocol::entry::{verify_batch, SignedEntry, Timestamp, Verified};
use cophr_protocol::home::SignedPointer;
use cophr_protocol::sync::{NonceCache, Proof, Request, Response, MAX_BATCH};
use cophr_protocol::{ActorId, RecordId};

use crate::store::{AuditInput, Store, StoreError};

/// What the loop should do after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// The peer proved access to the record: tell it when the record changes.
    Subscribe(RecordId, ActorId),
    /// New entries were stored: push on and announce to subscribers.
    Changed(RecordId),
    /// Publish this pointer (this node is now the record's home host).
    Host(SignedPointer),
    /// A record was removed here.
    Released(RecordId),
    /// The peer announced a change to a record: pull from it if it is a known source.
    Announced(RecordId),
}

/// What answering needs.
#[derive(Debug, Clone)]
pub struct Server {
    /// The store.
    pub store: Store,
    /// Nonces of proofs seen.
    pub nonces: Arc<Mutex<NonceCache>>,
    /// This node's peer id.
    pub local: PeerId,
}

const NO_ACCESS: &str = "no access";

fn refused(reason: &str) -> Response {
    Response::Refused {
        reason: reason.into(),
    }
}

impl Server {
    fn check(&self, proof: &Proof, peer: &PeerId, now: Timestamp) -> Result<ActorId, Response> {
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        proof
            .check(&peer.to_bytes(), &self.local.to_bytes(), now, &mut nonces)
            .map_err(|e| refused(&e.to_string()))
    }

    /// The viewer's access, or the standard refusal (also when the record is not held).
    fn viewer(
        &self,
        record: &RecordId,
        actor: &ActorId,
        now: Timestamp,
    ) -> Result<cophr_protocol::fold::Viewer, Response> {
        match self.store.with_record(record, |r| r.viewer(actor, now)) {
            Ok(v) if v.has_access() => Ok(v),
            _ => Err(refused(NO_ACCESS)),
        }
    }

    /// Answers one request from `peer` (seen at `addr`).
    pub fn handle(
        &self,
        peer: &PeerId,
        addr: Option<String>,
        req: Request,
        now: Timestamp,
    ) -> (Response, Vec<Effect>) {
        match self.answer(peer, addr, req, now) {
            Ok(r) => r,
            Err(resp) => (resp, Vec::new()),
        }
    }

    fn answer(
        &self,
        peer: &PeerId,
        addr: Option<String>,
        req: Request,
        now: Timestamp,
    ) -> Result<(Response, Vec<Effect>), Response> {
        let store_err = |e: StoreError| {
            tracing::warn!(%peer, error = %e, "store error answering a peer");
            refused("the node could not answer")
        };
        match req {
            Request::Announce { record } => Ok((Response::Ack, vec![Effect::Announced(record)])),
            Request::Digests { proof, digests } => {
                let actor = self.check(&proof, peer, now)?;
                let viewer = self.viewer(&proof.record, &actor, now)?;
                let streams = self
                    .store
                    .with_record(&proof.record, |r| r.differing(&viewer, &digests))
                    .map_err(store_err)?;
                Ok((
                    Response::Differ { streams },
                    vec![Effect::Subscribe(proof.record, actor)],
                ))
            }
            Request::Pull {
                proof,
                frontier,
                limit,
            } => {
                let actor = self.check(&proof, peer, now)?;
                let viewer = self.viewer(&proof.record, &actor, now)?;
                let limit = (limit as usize).clamp(1, MAX_BATCH);
                let (entries, ids, more, frontier) = self
                    .store
                    .with_record(&proof.record, |r| {
                        let (es, more, f) = r.entries_beyond(&viewer, &frontier, limit);
                        let ids: Vec<_> = es.iter().map(|e| e.id()).collect();
                        let bytes: Vec<serde_bytes::ByteBuf> = es
                            .iter()
                            .map(|e| serde_bytes::ByteBuf::from(e.signed().bytes().to_vec()))
                            .collect();
                        (bytes, ids, more, f)
                    })
                    .map_err(store_err)?;
                if !ids.is_empty() {
                    // Every read served to a peer is audited, with who and from where.
                    let device = Some(match &addr {
                        Some(a) => format!("peer {peer} at {a}"),
                        None => format!("peer {peer}"),
                    });
                    self.store
                        .audit(
                            &proof.record,
                            AuditInput {
                                action: Action::View,
                                actor,
                                device,
                                entries: ids,
                                detail: Some("served to a replica".into()),
                            },
                            now,
                        )
                        .map_err(store_err)?;
                }
                Ok((
                    Response::Entries {
                        entries,
                        more,
                        frontier,
                    },
                    vec![Effect::Subscribe(proof.record, actor)],
                ))
            }
            Request::Push { proof, entries } => {
                let actor = self.check(&proof, peer, now)?;
                let held = self.store.holds(&proof.record).map_err(store_err)?;
                // A host takes a record it does not hold only from its patient.
                if held {
                    self.viewer(&proof.record, &actor, now)?;
                } else if actor != proof.record {
                    return Err(refused(NO_ACCESS));
                }
                let (accepted, rejected) = self.ingest(&proof.record, &entries);
                let mut effects = vec![Effect::Subscribe(proof.record, actor)];
                if !accepted.is_empty() {
                    effects.push(Effect::Changed(proof.record));
                }
                Ok((Response::Pushed { accepted, rejected }, effects))
            }
            Request::Host { proof, pointer } => {
                let actor = self.check(&proof, peer, now)?;
                if actor != proof.record {
                    return Err(refused(NO_ACCESS));
                }
                let p = SignedPointer::decode(&pointer, &proof.record)
                    .map_err(|e| refused(&e.to_string()))?;
                if p.pointer.host != self.local.to_bytes() {
                    return Err(refused("the pointer names another host"));
                }
                if !self.store.holds(&proof.record).map_err(store_err)? {
                    return Err(refused("push the record before asking to host it"));
                }
                self.store
                    .set_meta(&format!("home/{}", proof.record), &pointer)
                    .map_err(store_err)?;
                Ok((Response::Ack, vec![Effect::Host(p)]))
            }
            Request::Release { proof } => {
                let actor = self.check(&proof, peer, now)?;
                if actor != proof.record || !self.store.holds(&proof.record).map_err(store_err)? {
                    return Err(refused(NO_ACCESS));
                }
                self.store.remove_record(&proof.record).map_err(store_err)?;
                Ok((Response::Ack, vec![Effect::Released(proof.record)]))
            }
            Request::AuditPull { proof, have } => {
                let actor = self.check(&proof, peer, now)?;
                let viewer = self.viewer(&proof.record, &actor, now)?;
                if !viewer.may_audit() {
                    return Err(refused("no access to the audit trail"));
                }
                let have: HashMap<ActorId, u64> = have.into_iter().collect();
                let events = self
                    .store
                    .audit_beyond(&proof.record, &have, MAX_BATCH)
                    .map_err(store_err)?;
                Ok((
                    Response::AuditEvents {
                        events: events
                            .iter()
                            .map(|e| serde_bytes::ByteBuf::from(e.bytes().to_vec()))
                            .collect(),
                    },
                    Vec::new(),
                ))
            }
            Request::AuditPush { proof, events } => {
                let actor = self.check(&proof, peer, now)?;
                self.viewer(&proof.record, &actor, now)?;
                let mut decoded = Vec::new();
                for e in events.iter().take(MAX_BATCH) {
                    match SignedAudit::decode(e) {
                        Ok(a) if a.event.record == proof.record => decoded.push(a),
                        Ok(_) => return Err(refused("audit event for another record")),
                        Err(e) => return Err(refused(&format!("bad audit event: {e}"))),
                    }
                }
                self.store.keep_audit(&decoded).map_err(store_err)?;
                Ok((Response::Ack, Vec::new()))
            }
        }
    }

    /// Validates and stores pushed entries: all at once when they are all good, else one
    /// by one so each refusal gets its reason.
    fn ingest(
        &self,
        record: &RecordId,
        entries: &[serde_bytes::ByteBuf],
    ) -> (
        Vec<cophr_protocol::EntryId>,
        Vec<(cophr_protocol::EntryId, String)>,
    ) {
        let mut decoded = Vec::new();
        let mut rejected = Vec::new();
        for b in entries.iter().take(MAX_BATCH) {
            match SignedEntry::decode(b) {
                Ok(e) if e.entry().record == *record => decoded.push(e),
                Ok(e) => rejected.push((e.id(), "entry for another record".to_string())),
                Err(err) => rejected.push((
                    cophr_protocol::EntryId(*blake3::hash(b).as_bytes()),
                    err.to_string(),
                )),
            }
        }
        let verified: Vec<Verified> = match verify_batch(decoded.clone()) {
            Ok(v) => v,
            Err(_) => decoded
                .into_iter()
                .filter_map(|e| {
                    let id = e.id();
                    match e.verify() {
                        Ok(v) => Some(v),
                        Err(err) => {
                            rejected.push((id, err.to_string()));
                            None
                        }
                    }
                })
                .collect(),
        };
        let ids: Vec<_> = verified.iter().map(Verified::id).collect();
        let mut accepted = Vec::new();
        match self.store.ingest(record, verified.clone()) {
            Ok(_) => accepted = ids,
            Err(_) => {
                for v in verified {
                    let id = v.id();
                    match self.store.ingest(record, vec![v]) {
                        Ok(_) => accepted.push(id),
                        Err(e) => rejected.push((id, e.to_string())),
                    }
                }
            }
        }
        (accepted, rejected)
    }
}
