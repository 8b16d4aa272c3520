//! The server side of sync, sans-IO: [`Server::handle`] answers one request against any
//! [`SyncStore`] and returns the response with its [`Effect`]s as values. The node runs it
//! on blocking threads over its durable store; the simulation runs it over in-memory
//! records. Neither re-decides a rule: who may see what, what is served, what is stored,
//! what is audited and whether a host takes a record are all decided here.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Mutex, RwLock};

use serde::{Deserialize, Serialize};

use super::{BlobOp, NonceCache, Proof, Refusal, Request, Response, MAX_BATCH, MAX_BATCH_BYTES};
use crate::audit::SignedAudit;
use crate::entry::{verify_batch, Payload, SignedEntry, Timestamp, Verified};
use crate::fold::Viewer;
use crate::home::SignedPointer;
use crate::ids::{ActorId, EntryId, RecordId};
use crate::invite::{InvitationBox, InviteError, Offer, SignedAcceptance};
use crate::record::Record;
use crate::trust::{AssuranceLevel, SignedAttestation, TrustList};

/// A reader's fetch of a document is audited once per this long, whatever slices (and in
/// whatever order) it asks for.
pub const DOCUMENT_AUDIT_EVERY_MS: u64 = 60 * 60 * 1000;
/// Most (reader, document) pairs a server remembers as audited; when full it forgets them
/// all (and audits again: more audit events, never fewer).
pub const DOCUMENT_AUDITS: usize = 10_000;

/// Most nonces a server remembers (proofs older than the window are refused anyway).
pub const NONCE_CAPACITY: usize = 100_000;

/// What the server reads and writes. The node implements it over its durable store, the
/// simulation over in-memory records. Every method is bounded by its arguments.
pub trait SyncStore {
    /// A storage failure.
    type Error: fmt::Display;

    /// Whether the record is held here.
    fn holds(&self, record: &RecordId) -> Result<bool, Self::Error>;

    /// Runs `f` on the record, if held.
    fn read<T>(
        &self,
        record: &RecordId,
        f: impl FnOnce(&Record) -> T,
    ) -> Result<Option<T>, Self::Error>;

    /// Applies verified entries in order through `Record::apply` (a record not held yet is
    /// started) and makes them durable. All or nothing: when one is refused, none is kept
    /// and the error says why. Returns how many were new.
    fn ingest(&mut self, record: &RecordId, entries: Vec<Verified>) -> Result<usize, Self::Error>;

    /// [`SyncStore::ingest`] into a record the caller found held: `None`, with nothing
    /// stored, when it is no longer held once the store takes it for writing (removed
    /// meanwhile, by a release answered on another thread). A push checked before the
    /// release and stored after it would otherwise bring the released record back.
    /// Stores that answer one request at a time need not override it.
    fn ingest_held(
        &mut self,
        record: &RecordId,
        entries: Vec<Verified>,
    ) -> Result<Option<usize>, Self::Error> {
        if !self.holds(record)? {
            return Ok(None);
        }
        self.ingest(record, entries).map(Some)
    }

    /// Records that `entries` were served to `actor`, connected as `peer`.
    fn audit_served(
        &mut self,
        record: &RecordId,
        actor: ActorId,
        peer: &str,
        entries: Vec<EntryId>,
        now: Timestamp,
    ) -> Result<(), Self::Error>;

    /// Audit events of the record beyond `have` (per node, the highest sequence held), at
    /// most `limit`.
    fn audit_beyond(
        &self,
        record: &RecordId,
        have: &HashMap<ActorId, u64>,
        limit: usize,
    ) -> Result<Vec<SignedAudit>, Self::Error>;

    /// Keeps audit events another node signed (already decoded and checked to belong to
    /// the record). Returns how many were new.
    fn keep_audit(&mut self, events: &[SignedAudit]) -> Result<usize, Self::Error>;

    /// Keeps the patient-signed pointer naming this node as the record's home host.
    fn set_home(&mut self, record: &RecordId, pointer: &[u8]) -> Result<(), Self::Error>;

    /// Deletes the record here (its patient moved it away).
    fn remove_record(&mut self, record: &RecordId) -> Result<(), Self::Error>;

    /// Remembers (`true`) or forgets (`false`) that this node released `record` at its
    /// patient's request. Kept durably, and without the record's id where it is stored
    /// (a host that released a record keeps nothing that names it).
    fn set_released(&mut self, record: &RecordId, released: bool) -> Result<(), Self::Error>;

    /// Whether this node released `record` and was not asked to host it since.
    fn released(&self, record: &RecordId) -> Result<bool, Self::Error>;

    /// What this node stores, for the host's quotas.
    fn usage(&self, record: &RecordId) -> Result<Usage, Self::Error>;

    /// Redeems a one-time invitation for `record`: `true` when the code was issued here and
    /// is unused (it is then bound to the record) or already bound to this same record (a
    /// retried first push); `false` otherwise.
    fn redeem_invitation(&mut self, code: &str, record: &RecordId) -> Result<bool, Self::Error>;

    /// Keeps `actor`'s encrypted key backup (already checked to be theirs and at most
    /// [`crate::backup::MAX_BACKUP_BYTES`]), replacing any earlier one.
    fn put_backup(&mut self, actor: &ActorId, backup: &[u8]) -> Result<(), Self::Error>;

    /// The encrypted key backup kept for `actor`, if any.
    fn backup(&self, actor: &ActorId) -> Result<Option<Vec<u8>>, Self::Error>;

    /// Keeps an emergency summary share to serve (already checked:
    /// [`crate::share::check_hosted`]), replacing one with the same id of the same record.
    /// `false` when the record already has [`crate::share::MAX_SHARES`] active shares here.
    fn put_share(
        &mut self,
        share: &crate::share::Share,
        sealed: &[u8],
        now: Timestamp,
    ) -> Result<bool, Self::Error>;

    /// Ends a share of `record` served here; `false` if there is none.
    fn end_share(
        &mut self,
        record: &RecordId,
        id: &crate::share::ShareId,
        now: Timestamp,
    ) -> Result<bool, Self::Error>;

    /// An encoded, verifiable slice of a document held here: the stored bytes from
    /// `offset` (a multiple of [`crate::blob::GROUP_BYTES`] within the document, checked by
    /// the caller) covering about `len` (whole groups; fewer if the store's slice limit is
    /// smaller), as (bytes covered, encoding); `None` when the document is not wholly held
    /// here.
    fn document_slice(
        &self,
        doc: &crate::blob::BlobRef,
        offset: u64,
        len: u64,
    ) -> Result<Option<(u64, Vec<u8>)>, Self::Error>;

    /// Whether any of `docs` is not wholly held here.
    fn lacks_any_document(&self, docs: &[crate::blob::BlobRef]) -> Result<bool, Self::Error>;

    /// Whether `doc` was uploaded whole for `record` and is counted in the record's
    /// [`Usage`] already, until an entry names it (a browser's upload before its entry):
    /// a push naming it does not count it again. None by default.
    fn upload_counted(
        &self,
        _record: &RecordId,
        _doc: &crate::blob::BlobRef,
    ) -> Result<bool, Self::Error> {
        Ok(false)
    }

    /// Runs `f` on the record's invitation box (empty if none) and keeps what it leaves,
    /// atomically with respect to other calls for the same record.
    fn update_invitations<T>(
        &mut self,
        record: &RecordId,
        f: impl FnOnce(&mut InvitationBox) -> T,
    ) -> Result<T, Self::Error>;
}

/// What a node stores, as its quotas count it: entries and the documents they name
/// (stored apart, counted at their stored size whether or not they are wholly fetched yet,
/// since the node will fetch them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the record's entries held here and of the documents they name (0 when
    /// not held).
    pub record_bytes: u64,
    /// Records held.
    pub records: u64,
    /// Bytes of all records' entries held and of the documents they name, each document
    /// counted once.
    pub total_bytes: u64,
}

/// What a push would add to what a node stores, as its quotas count it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Incoming {
    /// Bytes the record would grow by: the pushed entries, and the documents they name
    /// that the record does not name yet.
    pub record_bytes: u64,
    /// Bytes the node would grow by: the pushed entries, and those of the documents not
    /// held here already.
    pub total_bytes: u64,
}

/// Which records a node takes from patients who ask it to host them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "mode", content = "records")]
pub enum Admission {
    /// Any patient's record.
    #[default]
    Open,
    /// Only the listed records (patients' actor ids).
    AllowList(BTreeSet<RecordId>),
    /// Only patients who present a one-time invitation the operator issued
    /// (`cophr node invite`).
    Invitation,
    /// No new record at all (a provider node, say, that only replicates).
    Closed,
}

/// Limits on what a host stores. `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quotas {
    /// Most bytes of entries per record.
    pub record_bytes: Option<u64>,
    /// Most records held.
    pub records: Option<u64>,
    /// Most bytes of entries in all.
    pub total_bytes: Option<u64>,
}

/// A host's admission policy and quotas: the one place that decides whether a node takes
/// (more of) a record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostPolicy {
    /// Which new records are taken.
    pub admission: Admission,
    /// How much is stored.
    pub quotas: Quotas,
    /// If set, the patients it hosts and the people it serves must be attested at this
    /// level or higher by an issuer on this node's trust list (`None`: anyone).
    pub identity: Option<AssuranceLevel>,
}

impl HostPolicy {
    /// Whether `incoming` more of `record` may be stored, given what is held (`usage`),
    /// whether the record is held already and whether its patient presented a valid
    /// invitation. A record not held yet is taken only from its patient, and only when
    /// admission allows it. A refusal over a quota says which quota and by how much.
    pub fn admits(
        &self,
        record: &RecordId,
        held: bool,
        invited: bool,
        usage: &Usage,
        incoming: &Incoming,
    ) -> Result<(), Response> {
        if !held {
            let admitted = match &self.admission {
                Admission::Open => true,
                Admission::AllowList(list) => list.contains(record),
                Admission::Invitation => invited,
                Admission::Closed => false,
            };
            if !admitted {
                return Err(Response::refused(Refusal::NotAdmitted));
            }
            if let Some(max) = self
                .quotas
                .records
                .filter(|&max| usage.records.saturating_add(1) > max)
            {
                return Err(Response::refused_because(
                    Refusal::OverQuota,
                    format!("this host holds as many records as its quota allows ({max})"),
                ));
            }
        }
        let over = |what: &str, used: u64, more: u64, max: Option<u64>| match max {
            Some(max) if used.saturating_add(more) > max => Err(Response::refused_because(
                Refusal::OverQuota,
                format!(
                    "over the host's quota of {max} bytes {what}: {used} bytes are held and \
                     this adds {more} (entries and the documents they name)"
                ),
            )),
            _ => Ok(()),
        };
        over(
            "per record",
            usage.record_bytes,
            incoming.record_bytes,
            self.quotas.record_bytes,
        )?;
        over(
            "in all",
            usage.total_bytes,
            incoming.total_bytes,
            self.quotas.total_bytes,
        )
    }
}

/// What the driver should do after an answer.
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
    /// Entries were pushed into a record that names documents this node lacks: fetch them
    /// from the peer that pushed (it holds them, and serves them if this node may see an
    /// entry naming them).
    Documents(RecordId),
    /// The peer announced a change to a record: pull from it if it is a known source.
    Announced(RecordId),
    /// The store failed while answering (the peer was told only that the node could not
    /// answer): log this.
    StoreFailed(String),
}

/// The peer a request came from.
#[derive(Debug, Clone)]
pub struct Peer {
    /// Its transport identity (the bytes of its libp2p peer id), to which proofs are bound.
    pub id: Vec<u8>,
    /// How to name it in the audit trail (peer id and address).
    pub label: String,
}

/// Answers peers' requests. Shared by every request in flight (`&self`): the only state is
/// the replay cache.
#[derive(Debug)]
pub struct Server {
    local: Vec<u8>,
    nonces: Mutex<NonceCache>,
    policy: HostPolicy,
    backup_gets: super::backups::GetLimiter,
    /// When each (reader, document) was last audited as served, bounded
    /// ([`DOCUMENT_AUDITS`]): a fetch is audited whatever slices it asks for.
    document_audits: Mutex<HashMap<(ActorId, crate::blob::BlobHash), Timestamp>>,
    trust: RwLock<TrustList>,
    identity: Option<ActorId>,
}

/// A refusal on the way to an answer.
type Refused = Response;

/// Why answering stopped early.
enum Stop {
    /// Refused, with this response.
    Refuse(Response),
    /// The store failed.
    Store(String),
}

impl From<Response> for Stop {
    fn from(r: Response) -> Stop {
        Stop::Refuse(r)
    }
}

impl Server {
    /// A server whose transport identity is `local`, taking records as `policy` says.
    pub fn new(local: Vec<u8>, policy: HostPolicy) -> Server {
        Server {
            local,
            nonces: Mutex::new(NonceCache::new(NONCE_CAPACITY)),
            policy,
            backup_gets: Default::default(),
            document_audits: Mutex::new(HashMap::new()),
            trust: RwLock::new(TrustList::new()),
            identity: None,
        }
    }

    /// The same server, naming this identity (the node's) to a patient whose record it
    /// takes as home host ([`Response::Hosting`]).
    pub fn with_identity(mut self, identity: ActorId) -> Server {
        self.identity = Some(identity);
        self
    }

    /// Replaces the trust list (the issuers this node trusts and the revocations it knows)
    /// that identity requirements are checked against.
    pub fn set_trust(&self, trust: TrustList) {
        *self.trust.write().unwrap_or_else(|p| p.into_inner()) = trust;
    }

    /// A copy of the trust list in use.
    pub fn trust(&self) -> TrustList {
        self.trust.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The admission policy and quotas.
    pub fn policy(&self) -> &HostPolicy {
        &self.policy
    }

    /// Forgets every nonce seen (a node that restarts starts with an empty cache).
    pub fn forget_nonces(&self) {
        *self.nonces.lock().unwrap_or_else(|p| p.into_inner()) = NonceCache::new(NONCE_CAPACITY);
    }

    fn check(&self, proof: &Proof, peer: &Peer, now: Timestamp) -> Result<ActorId, Refused> {
        let mut nonces = self.nonces.lock().unwrap_or_else(|p| p.into_inner());
        proof
            .check(&peer.id, &self.local, now, &mut nonces)
            .map_err(|e| Response::refused_because(Refusal::BadProof, e.to_string()))
    }

    /// The viewer's access, or the standard refusal (also when the record is not held).
    /// Grants whose identity requirement is not met open nothing (attestations this node
    /// knows revoked do not count); a host that requires the people it serves to be
    /// attested refuses anyone its trust list does not verify at that level.
    ///
    /// A new key presenting guardians' approvals of a rotation to it (a recovery) gets the
    /// patient's view if the record would accept that rotation now, and otherwise the
    /// reason it would not.
    fn viewer<S: SyncStore>(
        &self,
        store: &S,
        proof: &Proof,
        actor: &ActorId,
        now: Timestamp,
    ) -> Result<Viewer, Refused> {
        let record = &proof.record;
        let presented = &proof.attestations[..];
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        let revoked = |a: &SignedAttestation| trust.is_revoked(&a.id());
        let found = store.read(record, |r| {
            let mut v = r.viewer_checked(actor, now, presented, &revoked);
            if !v.has_access() && !proof.membership.is_empty() {
                v = r
                    .member_viewer(actor, &proof.membership, now, presented, &revoked)
                    .map_err(|e| {
                        Response::refused_because(
                            Refusal::NoAccess,
                            format!("the membership presented does not let {actor} in: {e}"),
                        )
                    })?;
            }
            if !v.has_access() {
                if let Some(recovery) = &proof.recovery {
                    v = r.recovery_viewer(actor, recovery).map_err(|e| {
                        Response::refused_because(
                            Refusal::NoAccess,
                            format!("the recovery presented does not let {actor} rotate the patient key: {e}"),
                        )
                    })?;
                }
            }
            let assurance = self.policy.identity.map(|_| {
                let mut attestations: Vec<SignedAttestation> = r
                    .latest_profile(actor)
                    .map(|p| p.attestations.clone())
                    .unwrap_or_default();
                attestations.extend(presented.iter().cloned());
                trust.assess(actor, &attestations, now)
            });
            Ok((v, assurance))
        });
        let found = match found {
            Ok(Some(Err(refused))) => return Err(refused),
            Ok(Some(Ok(x))) => Ok(Some(x)),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        };
        match found {
            Ok(Some((v, assurance))) if v.has_access() => {
                if let (Some(level), Some(a)) = (self.policy.identity, assurance) {
                    if !a.at_least(level) {
                        return Err(Response::refused_because(
                            Refusal::AssuranceRequired,
                            format!("this host serves only people attested {level} or higher by an issuer it trusts; {actor} is {a}"),
                        ));
                    }
                }
                Ok(v)
            }
            Ok(Some((v, _))) if !v.unattested().is_empty() => {
                let (grant, req) = &v.unattested()[0];
                Err(Response::refused_because(
                    Refusal::AssuranceRequired,
                    format!("grant {grant} requires its grantee to be {req}; {actor}'s profile carries no such attestation valid now"),
                ))
            }
            _ => Err(Response::refused(Refusal::NoAccess)),
        }
    }

    /// Checks the request is the patient's, about their record held here.
    fn patient_holding<S: SyncStore>(
        &self,
        store: &S,
        peer: &Peer,
        proof: &Proof,
        now: Timestamp,
    ) -> Result<(), Stop> {
        let actor = self.check(proof, peer, now)?;
        let patient = store
            .read(&proof.record, |r| r.is_patient(&actor))
            .map_err(failed::<S>)?;
        if patient != Some(true) {
            return Err(Response::refused(Refusal::NoAccess).into());
        }
        Ok(())
    }

    /// Whether a record's patient may be hosted here: when the policy requires it, the
    /// patient's genesis (among `entries`) must carry an attestation this node's trust list
    /// verifies at the level required.
    fn patient_attested(
        &self,
        record: &RecordId,
        entries: &[serde_bytes::ByteBuf],
        presented: &[SignedAttestation],
        now: Timestamp,
    ) -> Result<(), Refused> {
        let Some(level) = self.policy.identity else {
            return Ok(());
        };
        let trust = self.trust.read().unwrap_or_else(|p| p.into_inner());
        // Every attestation the patient's genesis and profiles pushed here carry, and
        // those presented with the request.
        let mut attestations: Vec<SignedAttestation> = presented.to_vec();
        let mut genesis = false;
        for b in entries {
            let Ok(e) = SignedEntry::decode(b) else {
                continue;
            };
            if e.entry().author != *record {
                continue;
            }
            match &e.entry().payload {
                Payload::Genesis { profile } => {
                    genesis = true;
                    attestations.extend(profile.attestations.iter().cloned());
                }
                Payload::Profile(profile) => {
                    attestations.extend(profile.attestations.iter().cloned());
                }
                _ => {}
            }
        }
        let assurance = genesis.then(|| trust.assess(record, &attestations, now));
        match assurance {
            Some(a) if a.at_least(level) => Ok(()),
            Some(a) => Err(Response::refused_because(
                Refusal::AssuranceRequired,
                format!("this host takes only patients attested {level} or higher by an issuer it trusts; the patient is {a}"),
            )),
            None => Err(Response::refused_because(
                Refusal::AssuranceRequired,
                format!("this host takes only patients attested {level} or higher; push the genesis first"),
            )),
        }
    }

    /// The entries naming `doc` that `actor` (proven) may see: a document is served to
    /// whoever may see an entry naming exactly it (hash and size), a relay included; anyone
    /// else gets the refusal a document no entry names gets (a refusal reveals nothing).
    fn document_readable<S: SyncStore>(
        &self,
        store: &S,
        proof: &Proof,
        actor: &ActorId,
        doc: &crate::blob::BlobRef,
        now: Timestamp,
    ) -> Result<Vec<EntryId>, Stop> {
        let viewer = self.viewer(store, proof, actor, now)?;
        let entries = store
            .read(&proof.record, |r| r.document_entries(&viewer, doc))
            .map_err(failed::<S>)?
            .unwrap_or_default();
        if entries.is_empty() {
            return Err(Response::refused(Refusal::NoAccess).into());
        }
        Ok(entries)
    }

    /// Serving a document is a view of the entries naming it: audited once per reader and
    /// document per [`DOCUMENT_AUDIT_EVERY_MS`], whichever slice (or whole download) comes
    /// first.
    #[allow(clippy::too_many_arguments)]
    fn audit_document<S: SyncStore>(
        &self,
        store: &mut S,
        record: &RecordId,
        actor: ActorId,
        label: &str,
        doc: &crate::blob::BlobRef,
        entries: Vec<EntryId>,
        now: Timestamp,
    ) -> Result<(), Stop> {
        let due = {
            let mut seen = self
                .document_audits
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let key = (actor, doc.hash);
            let due = seen
                .get(&key)
                .is_none_or(|t| now.saturating_sub(*t) >= DOCUMENT_AUDIT_EVERY_MS);
            if due {
                if seen.len() >= DOCUMENT_AUDITS {
                    seen.clear();
                }
                seen.insert(key, now);
            }
            due
        };
        if due {
            store
                .audit_served(record, actor, label, entries, now)
                .map_err(failed::<S>)?;
        }
        Ok(())
    }

    /// Whether a browser may hand this host a document's sealed bytes over HTTP (the
    /// node's `PUT /sync/blobs/{hash}`; sync carries no document bytes upward): only the
    /// patient of a record held here, with a proof bound to exactly this upload
    /// ([`super::http_blob_client`] with [`BlobOp::Put`]). The caller then stores the bytes,
    /// checked against `doc` before it keeps any. `label` names the caller (its address).
    /// Returns the patient's actor, or the refusal and its effects.
    pub fn blob_put<S: SyncStore>(
        &self,
        store: &S,
        label: &str,
        proof: &Proof,
        doc: &crate::blob::BlobRef,
        now: Timestamp,
    ) -> Result<ActorId, (Response, Vec<Effect>)> {
        let peer = Peer {
            id: super::http_blob_client(BlobOp::Put, doc),
            label: label.to_owned(),
        };
        let allowed = (|| {
            doc.check()
                .map_err(|e| Response::refused_because(Refusal::Malformed, e.to_string()))?;
            self.patient_holding(store, &peer, proof, now)?;
            // The upload comes before the entry naming it: its bytes count against the
            // quotas now (unless the record names it already, or it is held here).
            if self.policy.quotas != Quotas::default() {
                let record = proof.record;
                let named = store
                    .read(&record, |r| r.names_document(doc))
                    .map_err(failed::<S>)?
                    .unwrap_or(false);
                let held = !store
                    .lacks_any_document(std::slice::from_ref(doc))
                    .map_err(failed::<S>)?;
                let incoming = Incoming {
                    record_bytes: if named { 0 } else { doc.size },
                    total_bytes: if held { 0 } else { doc.size },
                };
                let usage = store.usage(&record).map_err(failed::<S>)?;
                self.policy
                    .admits(&record, true, false, &usage, &incoming)?;
            }
            Ok::<_, Stop>(proof.actor)
        })();
        allowed.map_err(settle)
    }

    /// Whether a browser may fetch a document's sealed bytes whole over HTTP (the node's
    /// `GET /sync/blobs/{hash}`): the rule of [`Request::Document`] (whoever may see an
    /// entry naming it; anyone else [`Refusal::NoAccess`]), with a proof bound to exactly
    /// this download ([`super::http_blob_client`] with [`BlobOp::Get`]), and the document
    /// held here ([`Refusal::DocumentNotHeld`]). Audited as [`Request::Document`] is, before
    /// the caller sends a byte. Returns the reader's actor, or the refusal and its effects.
    pub fn blob_get<S: SyncStore>(
        &self,
        store: &mut S,
        label: &str,
        proof: &Proof,
        doc: &crate::blob::BlobRef,
        now: Timestamp,
    ) -> Result<ActorId, (Response, Vec<Effect>)> {
        let peer = Peer {
            id: super::http_blob_client(BlobOp::Get, doc),
            label: label.to_owned(),
        };
        let allowed = (|| {
            let actor = self.check(proof, &peer, now)?;
            let entries = self.document_readable(store, proof, &actor, doc, now)?;
            if store.lacks_any_document(&[*doc]).map_err(failed::<S>)? {
                return Err(Response::refused(Refusal::DocumentNotHeld).into());
            }
            self.audit_document(store, &proof.record, actor, &peer.label, doc, entries, now)?;
            Ok::<_, Stop>(actor)
        })();
        allowed.map_err(settle)
    }

    /// Answers one request from `peer`, at `now`.
    pub fn handle<S: SyncStore>(
        &self,
        store: &mut S,
        peer: &Peer,
        req: Request,
        now: Timestamp,
    ) -> (Response, Vec<Effect>) {
        match self.answer(store, peer, req, now) {
            Ok(r) => r,
            Err(stop) => settle(stop),
        }
    }

    fn answer<S: SyncStore>(
        &self,
        store: &mut S,
        peer: &Peer,
        req: Request,
        now: Timestamp,
    ) -> Result<(Response, Vec<Effect>), Stop> {
        match req {
            Request::Announce { record } => Ok((Response::Ack, vec![Effect::Announced(record)])),
            Request::Digests { proof, digests } => {
                let actor = self.check(&proof, peer, now)?;
                let viewer = self.viewer(store, &proof, &actor, now)?;
                let streams = store
                    .read(&proof.record, |r| r.differing(&viewer, &digests))
                    .map_err(failed::<S>)?
                    .unwrap_or_default();
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
                self.pull(store, peer, &proof, actor, &frontier, limit, now)
            }
            Request::Push {
                proof,
                entries,
                invitation,
                host,
            } => {
                let actor = self.check(&proof, peer, now)?;
                self.push(store, &proof, actor, &entries, invitation, host, now)
            }
            Request::Host { proof, pointer } => {
                let actor = self.check(&proof, peer, now)?;
                if actor != proof.record {
                    return Err(Response::refused(Refusal::NoAccess).into());
                }
                let p = SignedPointer::decode(&pointer, &proof.record)
                    .map_err(|e| Response::refused_because(Refusal::BadSigned, e.to_string()))?;
                if p.pointer.host != self.local {
                    return Err(Response::refused(Refusal::WrongHost).into());
                }
                if !store.holds(&proof.record).map_err(failed::<S>)? {
                    return Err(Response::refused(Refusal::NotHeld).into());
                }
                store
                    .set_home(&proof.record, &pointer)
                    .map_err(failed::<S>)?;
                // Hosted again: pushes of it are taken as from any patient.
                if store.released(&proof.record).map_err(failed::<S>)? {
                    store
                        .set_released(&proof.record, false)
                        .map_err(failed::<S>)?;
                }
                let answer = match self.identity {
                    Some(host) => Response::Hosting { host },
                    None => Response::Ack,
                };
                Ok((answer, vec![Effect::Host(p)]))
            }
            Request::Release { proof } => {
                let actor = self.check(&proof, peer, now)?;
                // Only the patient releases a host, and "nothing held" is its own answer, so
                // the patient's node can tell a release done from one refused.
                if actor != proof.record {
                    return Err(Response::refused(Refusal::NoAccess).into());
                }
                if !store.holds(&proof.record).map_err(failed::<S>)? {
                    return Err(Response::refused_because(
                        Refusal::NotHeld,
                        "this host holds no copy of the record: nothing to delete",
                    )
                    .into());
                }
                give_up(store, &proof.record).map_err(failed::<S>)?;
                Ok((Response::Ack, vec![Effect::Released(proof.record)]))
            }
            Request::Document {
                proof,
                doc,
                offset,
                len,
            } => {
                let actor = self.check(&proof, peer, now)?;
                let entries = self.document_readable(store, &proof, &actor, &doc, now)?;
                if offset >= doc.size.max(1)
                    || len == 0
                    || !offset.is_multiple_of(crate::blob::GROUP_BYTES)
                {
                    return Err(Response::refused_because(
                        Refusal::Malformed,
                        "the range asked for is empty, beyond the document or not on a group boundary",
                    )
                    .into());
                }
                let (covered, slice) = store
                    .document_slice(&doc, offset, len)
                    .map_err(failed::<S>)?
                    .ok_or_else(|| Response::refused(Refusal::DocumentNotHeld))?;
                self.audit_document(store, &proof.record, actor, &peer.label, &doc, entries, now)?;
                Ok((
                    Response::DocumentSlice {
                        offset,
                        len: covered,
                        slice: serde_bytes::ByteBuf::from(slice),
                    },
                    vec![],
                ))
            }
            Request::AuditPull { proof, have } => {
                let actor = self.check(&proof, peer, now)?;
                let viewer = self.viewer(store, &proof, &actor, now)?;
                if !viewer.may_audit() {
                    return Err(Response::refused(Refusal::NoAuditRight).into());
                }
                let have: HashMap<ActorId, u64> = have.into_iter().take(MAX_BATCH).collect();
                let events = store
                    .audit_beyond(&proof.record, &have, MAX_BATCH)
                    .map_err(failed::<S>)?;
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
            Request::OfferInvitation { proof, offer } => {
                self.patient_holding(store, peer, &proof, now)?;
                let offer = Offer::decode(&offer).map_err(invitation_refusal)?;
                if offer.record != proof.record {
                    return Err(Response::refused_because(
                        Refusal::InvitationInvalid,
                        "the offer is for another record",
                    )
                    .into());
                }
                store
                    .update_invitations(&proof.record, |b| b.offer(offer, now))
                    .map_err(failed::<S>)?
                    .map_err(invitation_refusal)?;
                Ok((Response::Ack, Vec::new()))
            }
            Request::AcceptInvitation { proof, acceptance } => {
                let actor = self.check(&proof, peer, now)?;
                let a = SignedAcceptance::decode(&acceptance).map_err(invitation_refusal)?;
                if a.acceptance.record != proof.record
                    || !store.holds(&proof.record).map_err(failed::<S>)?
                {
                    return Err(invitation_refusal(InviteError::Unknown).into());
                }
                store
                    .update_invitations(&proof.record, |b| b.accept(a, &actor, now))
                    .map_err(failed::<S>)?
                    .map_err(invitation_refusal)?;
                Ok((Response::Ack, Vec::new()))
            }
            Request::Invitations { proof } => {
                self.patient_holding(store, peer, &proof, now)?;
                let bytes = store
                    .update_invitations(&proof.record, |b| b.encode())
                    .map_err(failed::<S>)?;
                Ok((
                    Response::Invitations {
                        invitations: serde_bytes::ByteBuf::from(bytes),
                    },
                    Vec::new(),
                ))
            }
            Request::CloseInvitation { proof, id } => {
                self.patient_holding(store, peer, &proof, now)?;
                store
                    .update_invitations(&proof.record, |b| b.close(&id))
                    .map_err(failed::<S>)?;
                Ok((Response::Ack, Vec::new()))
            }
            Request::AuditPush { proof, events } => {
                let actor = self.check(&proof, peer, now)?;
                self.viewer(store, &proof, &actor, now)?;
                let decoded = decode_audit(&proof.record, &events)?;
                store.keep_audit(&decoded).map_err(failed::<S>)?;
                Ok((Response::Ack, Vec::new()))
            }
            Request::BackupPut { proof, backup } => {
                let actor = self.check(&proof, peer, now)?;
                self.viewer(store, &proof, &actor, now)?;
                super::backups::check_put(&actor, &backup)?;
                store.put_backup(&actor, &backup).map_err(failed::<S>)?;
                Ok((Response::Ack, Vec::new()))
            }
            Request::SharePut {
                proof,
                share,
                sealed,
            } => {
                self.patient_holding(store, peer, &proof, now)?;
                let share = crate::share::Share::decode(&share)
                    .map_err(|e| Response::refused_because(Refusal::Malformed, e.to_string()))?;
                crate::share::check_hosted(&share, &sealed, &proof.record, now)
                    .map_err(|e| Response::refused_because(Refusal::Malformed, e.to_string()))?;
                if !store.put_share(&share, &sealed, now).map_err(failed::<S>)? {
                    return Err(Response::refused_because(
                        Refusal::OverQuota,
                        format!(
                            "{} emergency summary shares are open for this record here: end one first",
                            crate::share::MAX_SHARES
                        ),
                    )
                    .into());
                }
                Ok((Response::Ack, Vec::new()))
            }
            Request::ShareEnd { proof, id } => {
                self.patient_holding(store, peer, &proof, now)?;
                store
                    .end_share(&proof.record, &id, now)
                    .map_err(failed::<S>)?;
                Ok((Response::Ack, Vec::new()))
            }
            Request::BackupGet { actor } => {
                self.backup_gets.allow(&peer.id, now)?;
                let backup = store.backup(&actor).map_err(failed::<S>)?;
                Ok((
                    Response::Backup {
                        backup: backup.map(serde_bytes::ByteBuf::from),
                    },
                    Vec::new(),
                ))
            }
        }
    }

    /// Round two: what the proven actor lacks and may see, audited before it is sent.
    #[allow(clippy::too_many_arguments)]
    fn pull<S: SyncStore>(
        &self,
        store: &mut S,
        peer: &Peer,
        proof: &Proof,
        actor: ActorId,
        frontier: &super::Frontier,
        limit: u32,
        now: Timestamp,
    ) -> Result<(Response, Vec<Effect>), Stop> {
        let record = proof.record;
        let viewer = self.viewer(store, proof, &actor, now)?;
        let limit = (limit as usize).clamp(1, MAX_BATCH);
        let (entries, ids, more, frontier) = store
            .read(&record, |r| {
                // The stored bytes as they are: a lean record reads them from its source
                // (hash-checked) and nothing here decodes or copies them again.
                let (es, more, f) = r.entry_bytes_beyond(&viewer, frontier, limit, MAX_BATCH_BYTES);
                let ids: Vec<_> = es.iter().map(|e| e.id).collect();
                let bytes: Vec<serde_bytes::ByteBuf> = es
                    .into_iter()
                    .map(|e| serde_bytes::ByteBuf::from(e.bytes))
                    .collect();
                (bytes, ids, more, f)
            })
            .map_err(failed::<S>)?
            .ok_or_else(|| Stop::from(Response::refused(Refusal::NoAccess)))?;
        if !ids.is_empty() {
            // Every read served to a peer is audited, with who and from where, before it
            // is sent.
            store
                .audit_served(&record, actor, &peer.label, ids, now)
                .map_err(failed::<S>)?;
        }
        Ok((
            Response::Entries {
                entries,
                more,
                frontier,
            },
            vec![Effect::Subscribe(record, actor)],
        ))
    }

    /// Entries pushed to this node: a record it does not hold is taken only from its
    /// patient, only as the host policy allows, and, when this node released it, only
    /// when the patient asks it to `host` the record again; everything is validated
    /// through the one gate before it is stored.
    #[allow(clippy::too_many_arguments)]
    fn push<S: SyncStore>(
        &self,
        store: &mut S,
        proof: &Proof,
        actor: ActorId,
        entries: &[serde_bytes::ByteBuf],
        invitation: Option<String>,
        host: bool,
        now: Timestamp,
    ) -> Result<(Response, Vec<Effect>), Stop> {
        let record = proof.record;
        let held = store.holds(&record).map_err(failed::<S>)?;
        if held {
            self.viewer(store, proof, &actor, now)?;
        } else if actor != record {
            return Err(Response::refused(Refusal::NoAccess).into());
        } else if !host && store.released(&record).map_err(failed::<S>)? {
            return Err(Response::refused(Refusal::Released).into());
        } else {
            self.patient_attested(&record, entries, &proof.attestations, now)?;
        }
        // Counting what is stored costs a pass over it: only when there are quotas.
        let (usage, incoming) = if self.policy.quotas == Quotas::default() {
            (Usage::default(), Incoming::default())
        } else {
            (
                store.usage(&record).map_err(failed::<S>)?,
                incoming(store, &record, entries).map_err(failed::<S>)?,
            )
        };
        let invited = match invitation {
            Some(code)
                if !held
                    && self.policy.admission == Admission::Invitation
                    && code.len() <= super::MAX_INVITATION_LEN =>
            {
                store
                    .redeem_invitation(&code, &record)
                    .map_err(failed::<S>)?
            }
            _ => false,
        };
        self.policy
            .admits(&record, held, invited, &usage, &incoming)?;
        let Some((accepted, rejected)) = ingest(store, &record, entries, held) else {
            // Removed while this push was checked: its release was answered first.
            let refusal = if store.released(&record).map_err(failed::<S>)? {
                Refusal::Released
            } else {
                Refusal::NotHeld
            };
            return Err(Response::refused(refusal).into());
        };
        let mut effects = vec![Effect::Subscribe(record, actor)];
        if !accepted.is_empty() {
            effects.push(Effect::Changed(record));
            // Documents the record names and this node lacks (named by these entries, or
            // by earlier ones whose fetch the pusher refused before it named this node):
            // fetch them from the pusher.
            let named = store
                .read(&record, |r| r.documents().copied().collect::<Vec<_>>())
                .map_err(failed::<S>)?
                .unwrap_or_default();
            if store.lacks_any_document(&named).map_err(failed::<S>)? {
                effects.push(Effect::Documents(record));
            }
        }
        Ok((Response::Pushed { accepted, rejected }, effects))
    }
}

/// What pushed entries would add to the store: their bytes, and the documents they name
/// (read from the entries before they are validated: an entry that fails later was
/// counted, which errs on the side of the quota).
fn incoming<S: SyncStore>(
    store: &S,
    record: &RecordId,
    entries: &[serde_bytes::ByteBuf],
) -> Result<Incoming, S::Error> {
    let entry_bytes: u64 = entries.iter().map(|e| e.len() as u64).sum();
    let payloads: Vec<(EntryId, Payload)> = entries
        .iter()
        .take(MAX_BATCH)
        .filter_map(|b| SignedEntry::decode(b).ok())
        .filter(|e| e.entry().record == *record)
        .map(|e| (e.id(), e.entry().payload.clone()))
        .collect();
    let named = match store.read(record, |r| documents_pushed(Some(r), &payloads))? {
        Some(named) => named,
        None => documents_pushed(None, &payloads),
    };
    let mut record_docs = 0u64;
    for d in &named {
        if !store.upload_counted(record, d)? {
            record_docs = record_docs.saturating_add(d.size);
        }
    }
    let mut new_docs = 0u64;
    for d in &named {
        if store.lacks_any_document(std::slice::from_ref(d))? {
            new_docs = new_docs.saturating_add(d.size);
        }
    }
    Ok(Incoming {
        record_bytes: entry_bytes.saturating_add(record_docs),
        total_bytes: entry_bytes.saturating_add(new_docs),
    })
}

/// The documents `payloads` name that `held` (the record as held, if it is) does not
/// name yet: a sealed create's or amend's list in clear, a plain one's document fields
/// (its category found in the batch or the record).
fn documents_pushed(
    held: Option<&Record>,
    payloads: &[(EntryId, Payload)],
) -> BTreeSet<crate::blob::BlobRef> {
    let created: HashMap<EntryId, crate::Category> = payloads
        .iter()
        .filter_map(|(id, p)| match p {
            Payload::Create { category, .. } | Payload::SealedCreate { category, .. } => {
                Some((*id, category.clone()))
            }
            _ => None,
        })
        .collect();
    let mut named = BTreeSet::new();
    for (_, p) in payloads {
        let docs = match p {
            Payload::SealedCreate { content, .. } | Payload::SealedAmend { content, .. } => {
                content.blobs.clone()
            }
            Payload::Create { body, .. } | Payload::Amend { body, .. } => {
                let category = p
                    .stream_given(|t| {
                        created
                            .get(t)
                            .cloned()
                            .or_else(|| held.and_then(|r| r.category_of(t).cloned()))
                            .map(Some)
                    })
                    .flatten();
                category
                    .map(|c| crate::blob::refs_in_body(&c, body))
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        named.extend(
            docs.into_iter()
                .filter(|d| held.is_none_or(|r| !r.names_document(d))),
        );
    }
    named
}

/// The refusal for an invitation problem.
fn invitation_refusal(e: InviteError) -> Response {
    let code = match e {
        InviteError::Expired => Refusal::InvitationExpired,
        InviteError::Used => Refusal::InvitationUsed,
        _ => Refusal::InvitationInvalid,
    };
    Response::refused_because(code, e.to_string())
}

/// A store failure: the peer learns only that the node could not answer; the driver logs
/// why.
/// The answer to a request that stopped early: its refusal, or (the store failed) that
/// the node could not answer, with the failure to log.
fn settle(stop: Stop) -> (Response, Vec<Effect>) {
    match stop {
        Stop::Refuse(resp) => (resp, Vec::new()),
        Stop::Store(e) => (
            Response::refused(Refusal::Unavailable),
            vec![Effect::StoreFailed(e)],
        ),
    }
}

/// Gives up the copy of `record` held here: the patient released it, or this node, a
/// former home host, found the move by itself. Remembered as released before the copy
/// goes, so that a push of the record still in flight from before the move (any push but
/// one asking this node to host the record again), arriving afterwards, is refused
/// ([`Refusal::Released`]) instead of re-creating the record here. A crash between the
/// two leaves the record held, and its release to be asked (or found) again.
pub fn give_up<S: SyncStore>(store: &mut S, record: &RecordId) -> Result<(), S::Error> {
    store.set_released(record, true)?;
    store.remove_record(record)
}

fn failed<S: SyncStore>(e: S::Error) -> Stop {
    Stop::Store(e.to_string())
}

/// Decodes audit events received for `record`: every one must decode, verify and belong
/// to the record, and there may be at most [`MAX_BATCH`].
pub fn decode_audit(
    record: &RecordId,
    events: &[serde_bytes::ByteBuf],
) -> Result<Vec<SignedAudit>, Response> {
    if events.len() > MAX_BATCH {
        return Err(Response::refused_because(
            Refusal::Malformed,
            format!("{} audit events (at most {MAX_BATCH})", events.len()),
        ));
    }
    events
        .iter()
        .map(|e| match SignedAudit::decode(e) {
            Ok(a) if a.event.record == *record => Ok(a),
            Ok(_) => Err(Response::refused_because(
                Refusal::BadSigned,
                "audit event for another record",
            )),
            Err(e) => Err(Response::refused_because(
                Refusal::BadSigned,
                format!("bad audit event: {e}"),
            )),
        })
        .collect()
}

/// The id of bytes received as an entry: the content hash, as for a decoded entry, so an
/// undecodable entry is named the same way everywhere.
pub fn id_of_bytes(bytes: &[u8]) -> EntryId {
    EntryId(*blake3::hash(bytes).as_bytes())
}

/// What a push stored: the entries accepted, and those refused with the reason.
type Stored = (Vec<EntryId>, Vec<(EntryId, String)>);

/// Validates and stores pushed entries: all at once when they are all good, else one by
/// one so each refusal gets its reason. At most [`MAX_BATCH`] are looked at. `held`: the
/// record was found held, and must still be ([`SyncStore::ingest_held`]); `None` when it
/// no longer is (nothing was stored).
fn ingest<S: SyncStore>(
    store: &mut S,
    record: &RecordId,
    entries: &[serde_bytes::ByteBuf],
    held: bool,
) -> Option<Stored> {
    let mut decoded = Vec::new();
    let mut rejected = Vec::new();
    for b in entries.iter().take(MAX_BATCH) {
        match SignedEntry::decode(b) {
            Ok(e) if e.entry().record == *record => decoded.push(e),
            Ok(e) => rejected.push((e.id(), "entry for another record".to_string())),
            Err(err) => rejected.push((id_of_bytes(b), err.to_string())),
        }
    }
    for b in entries.iter().skip(MAX_BATCH) {
        rejected.push((id_of_bytes(b), format!("more than {MAX_BATCH} in one push")));
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
    let store_them = |store: &mut S, entries: Vec<Verified>| {
        if held {
            store.ingest_held(record, entries)
        } else {
            store.ingest(record, entries).map(Some)
        }
    };
    match store_them(store, verified.clone()) {
        Ok(None) => return None,
        Ok(Some(_)) => accepted = ids,
        Err(_) => {
            for v in verified {
                let id = v.id();
                match store_them(store, vec![v]) {
                    Ok(None) => return None,
                    Ok(Some(_)) => accepted.push(id),
                    Err(e) => rejected.push((id, e.to_string())),
                }
            }
        }
    }
    Some((accepted, rejected))
}
