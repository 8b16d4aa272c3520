//! Audit events: who did what to which entries, signed by the node that saw it and
//! hash-chained per node, so a removed or altered event is evident.

use serde::{Deserialize, Serialize};

use crate::entry::{from_cbor_canonical, to_cbor, EntryError, Payload, Timestamp};
use crate::ids::{ActorId, EntryId, RecordId, Sig};
use crate::keys::{self, Domain, Keypair};

/// Most entry ids one audit event lists.
pub const MAX_AUDIT_ENTRIES: usize = 4096;

/// The type of activity (blueprint 8.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Record data was viewed.
    View,
    /// Data was added.
    Add,
    /// Data was edited (amended).
    Edit,
    /// Data was logically deleted.
    Delete,
    /// An annotation was added.
    Annotate,
    /// Access was granted.
    Grant,
    /// Access was revoked.
    Revoke,
    /// The record (or part of it) was exported.
    Export,
    /// Entries were imported.
    Import,
    /// The record moved host.
    Move,
    /// The audit trail itself was read.
    AuditRead,
    /// An actor published their profile (name, role, organisation).
    Profile,
}

impl Action {
    /// The action writing an entry with this payload amounts to: the one mapping from
    /// entry kind to audit action (genesis and create add, amend edits, a move is a move…).
    pub fn for_payload(p: &Payload) -> Action {
        match p {
            Payload::Genesis { .. } | Payload::Create { .. } => Action::Add,
            Payload::Amend { .. } => Action::Edit,
            Payload::Delete { .. } => Action::Delete,
            Payload::Annotate { .. } => Action::Annotate,
            Payload::Grant(_) => Action::Grant,
            Payload::Revoke { .. } => Action::Revoke,
            Payload::Profile(_) => Action::Profile,
            Payload::MoveHome { .. } => Action::Move,
        }
    }

    /// The name shown to people.
    pub fn name(self) -> &'static str {
        match self {
            Action::View => "view",
            Action::Add => "add",
            Action::Edit => "edit",
            Action::Delete => "delete",
            Action::Annotate => "annotate",
            Action::Grant => "grant",
            Action::Revoke => "revoke",
            Action::Export => "export",
            Action::Import => "import",
            Action::Move => "move",
            Action::AuditRead => "audit-read",
            Action::Profile => "profile",
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The record concerned.
    pub record: RecordId,
    /// The node that saw it and signs the event.
    pub node: ActorId,
    /// The node's audit sequence number for this record, from 1.
    pub seq: u64,
    /// Hash of the node's previous audit event for this record (`None` for its first).
    pub prev: Option<EntryId>,
    /// When (node time, ms since epoch).
    pub time: Timestamp,
    /// Type of activity.
    pub action: Action,
    /// Who did it.
    pub actor: ActorId,
    /// Their name, role and organisation, as known to the node.
    pub actor_name: Option<String>,
    /// Role.
    pub actor_role: Option<String>,
    /// Organisation.
    pub actor_organisation: Option<String>,
    /// Device or network address used.
    pub device: Option<String>,
    /// The entries touched.
    pub entries: Vec<EntryId>,
    /// A short description (e.g. which categories were shown). Never record contents.
    pub detail: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    event: AuditEvent,
    sig: Sig,
}

/// A signed audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedAudit {
    /// The event.
    pub event: AuditEvent,
    /// The node's signature.
    pub sig: Sig,
    id: EntryId,
    bytes: Vec<u8>,
}

/// Why an audit event is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuditError {
    /// Encoding problem.
    #[error(transparent)]
    Encoding(#[from] EntryError),
    /// Signature problem.
    #[error("audit event signature: {0}")]
    Key(#[from] keys::KeyError),
    /// Too many entries listed.
    #[error("audit event lists too many entries")]
    TooLarge,
    /// The hash chain is broken (an event was removed, reordered or altered).
    #[error("audit chain of node {node} broken at sequence {seq}")]
    Chain {
        /// The node.
        node: ActorId,
        /// Where.
        seq: u64,
    },
}

impl AuditEvent {
    /// Signs the event with the node's key.
    pub fn sign(self, node: &Keypair) -> SignedAudit {
        let sig = node.sign(Domain::Audit, &to_cbor(&self));
        let bytes = to_cbor(&Wire {
            event: self.clone(),
            sig,
        });
        SignedAudit {
            id: EntryId(*blake3::hash(&bytes).as_bytes()),
            event: self,
            sig,
            bytes,
        }
    }
}

impl SignedAudit {
    /// Decodes and verifies an audit event.
    pub fn decode(bytes: &[u8]) -> Result<Self, AuditError> {
        if bytes.len() > crate::entry::MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge(bytes.len()).into());
        }
        let w: Wire = from_cbor_canonical(bytes)?;
        if w.event.entries.len() > MAX_AUDIT_ENTRIES {
            return Err(AuditError::TooLarge);
        }
        keys::verify(&w.event.node, Domain::Audit, &to_cbor(&w.event), &w.sig)?;
        Ok(SignedAudit {
            id: EntryId(*blake3::hash(bytes).as_bytes()),
            event: w.event,
            sig: w.sig,
            bytes: bytes.to_vec(),
        })
    }

    /// The event's hash (what the next event's `prev` names).
    pub fn id(&self) -> EntryId {
        self.id
    }

    /// Canonical bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Checks that each node's events for each record form an unbroken hash chain from
/// sequence 1 (events given in sequence order per node and record).
pub fn check_chain(events: &[SignedAudit]) -> Result<(), AuditError> {
    let mut last: std::collections::HashMap<(ActorId, RecordId), (u64, EntryId)> =
        Default::default();
    for e in events {
        let ev = &e.event;
        let ok = match last.get(&(ev.node, ev.record)) {
            None => ev.seq == 1 && ev.prev.is_none(),
            Some((s, id)) => ev.seq == s + 1 && ev.prev == Some(*id),
        };
        if !ok {
            return Err(AuditError::Chain {
                node: ev.node,
                seq: ev.seq,
            });
        }
        last.insert((ev.node, ev.record), (ev.seq, e.id()));
    }
    Ok(())
}
