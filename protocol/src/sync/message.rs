//! The messages two nodes exchange, and their bounded, canonical encoding.

use serde::{Deserialize, Serialize};

use super::{Digest, Frontier, Proof, MAX_MESSAGE_BYTES};
use crate::entry::{from_cbor_canonical, to_cbor, EntryError};
use crate::ids::{ActorId, EntryId, RecordId};
use crate::record::Stream;
/// Longest invitation code accepted.
pub const MAX_INVITATION_LEN: usize = 128;

/// A request from one node to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    /// Round one: a digest of each stream the requester holds.
    Digests {
        /// Who is asking.
        proof: Proof,
        /// Stream digests.
        digests: Vec<(Stream, Digest)>,
    },
    /// Round two: the requester's frontier for the streams that differ.
    Pull {
        /// Who is asking.
        proof: Proof,
        /// What the requester holds of those streams.
        frontier: Frontier,
        /// Most entries wanted in this response.
        limit: u32,
    },
    /// Entries the requester wrote or holds that the server lacks.
    Push {
        /// Who is pushing.
        proof: Proof,
        /// Encoded signed entries, in causal order.
        entries: Vec<serde_bytes::ByteBuf>,
        /// A host's one-time invitation, for a patient's first push to a host that takes
        /// records by invitation only (at most [`MAX_INVITATION_LEN`] bytes).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        invitation: Option<String>,
        /// The patient asks the receiver to start hosting the record (the pushes of
        /// `host`, before its [`Request::Host`]): only such a push re-creates a record
        /// the receiver released ([`Refusal::Released`]).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        host: bool,
    },
    /// Something changed in a record the receiver replicates from the sender: pull when
    /// ready. Carries nothing else, so it reveals nothing.
    Announce {
        /// The record.
        record: RecordId,
    },
    /// The patient asks the receiver to be the record's home host and publish this
    /// pointer (signed by the patient) in the DHT.
    Host {
        /// The patient.
        proof: Proof,
        /// The encoded [`crate::home::SignedPointer`].
        pointer: serde_bytes::ByteBuf,
    },
    /// The patient tells a former home host to delete its copy (after a move).
    Release {
        /// The patient.
        proof: Proof,
    },
    /// Audit events beyond what the requester holds (patient or audit right only).
    AuditPull {
        /// Who is asking.
        proof: Proof,
        /// For each node, the highest audit sequence held.
        have: Vec<(ActorId, u64)>,
    },
    /// Audit events for the receiver to keep with the record.
    AuditPush {
        /// Who is pushing.
        proof: Proof,
        /// Encoded signed audit events.
        events: Vec<serde_bytes::ByteBuf>,
    },
    /// The patient registers an invitation's offer with the record's home host.
    OfferInvitation {
        /// The patient.
        proof: Proof,
        /// The encoded [`crate::invite::Offer`].
        offer: serde_bytes::ByteBuf,
    },
    /// Someone accepts an invitation: the proof is theirs (they need no access yet); the
    /// acceptance is signed with the invitation's key, proving they hold the link.
    AcceptInvitation {
        /// The invitee.
        proof: Proof,
        /// The encoded [`crate::invite::SignedAcceptance`].
        acceptance: serde_bytes::ByteBuf,
    },
    /// The patient asks for the record's invitations and who accepted them.
    Invitations {
        /// The patient.
        proof: Proof,
    },
    /// The patient closes an invitation (confirmed, declined or withdrawn).
    CloseInvitation {
        /// The patient.
        proof: Proof,
        /// The invitation.
        id: ActorId,
    },
    /// Keep this encrypted key backup of the proven actor (the latest replaces any
    /// earlier one). The proof names a record held here that the actor may see.
    BackupPut {
        /// The backup's actor.
        proof: Proof,
        /// The encoded [`crate::backup::KeyBackup`] (at most
        /// [`crate::backup::MAX_BACKUP_BYTES`]).
        backup: serde_bytes::ByteBuf,
    },
    /// The encrypted key backup kept here for `actor`. Needs no proof (whoever asks has
    /// lost the key); rate limited. The backup opens only with its passphrase.
    BackupGet {
        /// Whose backup.
        actor: ActorId,
    },
    /// The patient hands their home host an emergency summary share to serve (SMART
    /// Health Links: the host holds only the ciphertext, never the key). Replaces a share
    /// with the same id.
    SharePut {
        /// The patient.
        proof: Proof,
        /// The canonical CBOR of the [`crate::share::Share`].
        share: serde_bytes::ByteBuf,
        /// The sealed summary (a compact JWE, at most [`crate::share::MAX_JWE`] bytes).
        sealed: serde_bytes::ByteBuf,
    },
    /// The patient ends a share the host serves (it opens no more; the ciphertext is
    /// dropped).
    ShareEnd {
        /// The patient.
        proof: Proof,
        /// The share.
        id: crate::share::ShareId,
    },
    /// A slice of a document stored apart ([`crate::blob`]) that an entry the requester
    /// may see references: up to `len` stored bytes from `offset`, with what proves them
    /// against the document's hash.
    Document {
        /// Who is asking, about which record.
        proof: Proof,
        /// The document, as the entry names it.
        doc: crate::blob::BlobRef,
        /// Where the slice starts, in stored bytes: a multiple of
        /// [`crate::blob::GROUP_BYTES`].
        offset: u64,
        /// How many stored bytes are wanted (the server may send fewer: its slice limit).
        len: u64,
    },
}

/// A response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Response {
    /// Streams (that the requester may see) whose digests differ or that it lacks.
    Differ {
        /// The streams.
        streams: Vec<Stream>,
    },
    /// Entries the requester lacks, in causal order.
    Entries {
        /// Encoded signed entries.
        entries: Vec<serde_bytes::ByteBuf>,
        /// Whether more remain (pull again).
        more: bool,
        /// The server's visible frontier for the streams asked about.
        frontier: Frontier,
    },
    /// The outcome of a push.
    Pushed {
        /// Entries stored.
        accepted: Vec<EntryId>,
        /// Entries refused, with the reason.
        rejected: Vec<(EntryId, String)>,
    },
    /// Audit events, in each node's sequence order.
    AuditEvents {
        /// Encoded signed audit events.
        events: Vec<serde_bytes::ByteBuf>,
    },
    /// The record's invitations (an encoded [`crate::invite::InvitationBox`]).
    Invitations {
        /// The encoded box.
        invitations: serde_bytes::ByteBuf,
    },
    /// Done.
    Ack,
    /// The host now hosts the record (the answer to [`Request::Host`]), and this is its
    /// node's identity: the patient names it in a `relay` grant, so the record's grants
    /// show who keeps it (a host that answers [`Response::Ack`] is hosting too, unnamed).
    Hosting {
        /// The host node's identity.
        host: ActorId,
    },
    /// The request was refused.
    Refused {
        /// What kind of refusal: the code a peer acts on (never a reason string).
        code: Refusal,
        /// A human-readable detail (never reveals anything about the record to an
        /// unauthorised peer).
        reason: String,
    },
    /// The encrypted key backup asked for, if one is kept here.
    Backup {
        /// The encoded [`crate::backup::KeyBackup`].
        backup: Option<serde_bytes::ByteBuf>,
    },
    /// A slice of a document ([`Request::Document`]): stored bytes with the proof that
    /// they are the document's, in the blob store's slice encoding; the receiver checks
    /// it against the hash the entry names before storing a byte.
    DocumentSlice {
        /// Where the slice starts (the offset asked for).
        offset: u64,
        /// How many stored bytes it covers (at most the length asked for, rounded up to
        /// whole [`crate::blob::GROUP_BYTES`] groups or the document's end).
        len: u64,
        /// The encoded slice.
        slice: serde_bytes::ByteBuf,
    },
}

impl Response {
    /// A refusal with the code's own text as its detail.
    pub fn refused(code: Refusal) -> Response {
        Response::Refused {
            code,
            reason: code.to_string(),
        }
    }

    /// A refusal with a detail of its own.
    pub fn refused_because(code: Refusal, reason: impl Into<String>) -> Response {
        Response::Refused {
            code,
            reason: reason.into(),
        }
    }

    /// The response's kind, for errors and counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Response::Differ { .. } => "differ",
            Response::Entries { .. } => "entries",
            Response::Pushed { .. } => "pushed",
            Response::AuditEvents { .. } => "audit events",
            Response::Invitations { .. } => "invitations",
            Response::Ack => "ack",
            Response::Hosting { .. } => "hosting",
            Response::Refused { .. } => "refused",
            Response::Backup { .. } => "backup",
            Response::DocumentSlice { .. } => "document slice",
        }
    }
}

impl Request {
    /// The request's kind, for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Digests { .. } => "digests",
            Request::Pull { .. } => "pull",
            Request::Push { .. } => "push",
            Request::Announce { .. } => "announce",
            Request::Host { .. } => "host",
            Request::Release { .. } => "release",
            Request::AuditPull { .. } => "audit-pull",
            Request::AuditPush { .. } => "audit-push",
            Request::BackupPut { .. } => "backup-put",
            Request::BackupGet { .. } => "backup-get",
            Request::SharePut { .. } => "share-put",
            Request::ShareEnd { .. } => "share-end",
            Request::OfferInvitation { .. } => "offer-invitation",
            Request::AcceptInvitation { .. } => "accept-invitation",
            Request::Invitations { .. } => "invitations",
            Request::CloseInvitation { .. } => "close-invitation",
            Request::Document { .. } => "document",
        }
    }
}

/// Why a request was refused: a typed code, so peers never compare reason strings.
///
/// Every refusal to a peer without access to a record is [`Refusal::NoAccess`], whether or
/// not the record is held, so a refusal reveals nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "kebab-case")]
pub enum Refusal {
    /// The requester may not see the record (or it is not held here).
    #[error("no access")]
    NoAccess,
    /// The proof of key possession was refused (wrong peers, stale, replayed, bad).
    #[error("proof refused")]
    BadProof,
    /// The request could not be decoded or is malformed.
    #[error("malformed request")]
    Malformed,
    /// The peer made too many requests.
    #[error("rate limited")]
    RateLimited,
    /// The server is answering as many requests as it can.
    #[error("busy")]
    Busy,
    /// The server could not answer (a storage failure on its side).
    #[error("the node could not answer")]
    Unavailable,
    /// The host's admission policy does not accept this record.
    #[error("this host does not accept the record")]
    NotAdmitted,
    /// Storing this would exceed one of the host's quotas.
    #[error("over the host's quota")]
    OverQuota,
    /// The requester may not read the audit trail.
    #[error("no access to the audit trail")]
    NoAuditRight,
    /// A home pointer names another host.
    #[error("the pointer names another host")]
    WrongHost,
    /// The record is not held here: asked to host it, push it first; asked to release it,
    /// there is nothing to delete.
    #[error("the record is not held here")]
    NotHeld,
    /// A document the requester may fetch is not (yet wholly) held here.
    #[error("the document is not held here")]
    DocumentNotHeld,
    /// A home pointer or audit event in the request is invalid.
    #[error("invalid signed object in the request")]
    BadSigned,
    /// The requester's (or the patient's) identity is not attested as a grant or the
    /// host's policy requires.
    #[error("identity attestation required")]
    AssuranceRequired,
    /// The invitation has expired.
    #[error("the invitation has expired")]
    InvitationExpired,
    /// The invitation was already used.
    #[error("the invitation was already used")]
    InvitationUsed,
    /// No such invitation, or the acceptance is forged, stale or malformed.
    #[error("invalid invitation")]
    InvitationInvalid,
    /// The patient moved the record away and this node released it: a push of it is
    /// taken again only when the patient asks this node to host it (a push still in
    /// flight from before the move does not re-create it).
    #[error("this host released the record; ask it to host the record again")]
    Released,
}

/// Encodes a message.
pub fn encode<T: Serialize>(m: &T) -> Vec<u8> {
    to_cbor(m)
}

/// Decodes a message, bounded and canonical.
pub fn decode<T: Serialize + for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, EntryError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(EntryError::TooLarge(bytes.len()));
    }
    from_cbor_canonical(bytes)
}
