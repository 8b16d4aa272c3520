//! Proof of key possession, bound to one connection, and the replay cache.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::PROOF_WINDOW_MS;
use crate::entry::{to_cbor, Timestamp, MAX_GUARDIANS, MAX_PROFILE_ATTESTATIONS};
use crate::ids::{ActorId, RecordId, Sig};
use crate::keys::{self, Domain, Keypair};
use crate::recovery::Recovery;
use crate::trust::SignedAttestation;

/// Proof that the requester holds `actor`'s key, bound to this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The grantee (or patient) the request is made as.
    pub actor: ActorId,
    /// The record asked about.
    pub record: RecordId,
    /// The requesting peer's id (bytes of its libp2p peer id).
    #[serde(with = "serde_bytes")]
    pub client: Vec<u8>,
    /// The serving peer's id.
    #[serde(with = "serde_bytes")]
    pub server: Vec<u8>,
    /// Fresh randomness.
    pub nonce: [u8; 16],
    /// Requester's time.
    pub time: Timestamp,
    /// `actor`'s signature over all of the above.
    pub sig: Sig,
    /// Attestations of who `actor` is, presented so that a grant or host that requires an
    /// attested identity can be used before the actor's profile is in the record (at most
    /// [`MAX_PROFILE_ATTESTATIONS`], each verified and about `actor`). Self-authenticating:
    /// each is signed by its issuer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<SignedAttestation>,
    /// Guardians' approvals of a rotation to `actor`, presented by a new key recovering the
    /// record before it holds any of it: a server lets it pull and push as the patient if
    /// the record would accept the rotation ([`crate::record::Record::check_recovery`]).
    /// Self-authenticating (each approval is a signature bound to this record and key);
    /// at most [`MAX_GUARDIANS`] approvals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<Box<Recovery>>,
    /// An organisation's signed entries making `actor` its member
    /// ([`crate::org::verify_membership`]), presented by a member who has not yet joined
    /// the record: a server lets them pull what the organisation's grants, narrowed by
    /// their role, open (so they can write their join). Self-authenticating; at most
    /// [`crate::org::MAX_PROOF_ENTRIES`] entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub membership: Vec<serde_bytes::ByteBuf>,
}

#[derive(Serialize)]
struct ProofBody<'a> {
    actor: &'a ActorId,
    record: &'a RecordId,
    #[serde(with = "serde_bytes")]
    client: &'a [u8],
    #[serde(with = "serde_bytes")]
    server: &'a [u8],
    nonce: &'a [u8; 16],
    time: Timestamp,
}

/// Why a proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Made for another pair of peers (copied from elsewhere).
    #[error("proof is bound to another connection")]
    WrongPeers,
    /// Too old or from the future.
    #[error("proof time is outside the accepted window")]
    Stale,
    /// Seen before.
    #[error("proof was already used")]
    Replayed,
    /// Bad signature.
    #[error("proof signature does not verify")]
    Signature,
    /// A presented attestation is forged, malformed, about someone else, or one too many.
    #[error("presented attestation refused: {0}")]
    Attestation(String),
    /// Presented recovery approvals are malformed (none, or too many).
    #[error("presented recovery refused: {0}")]
    Recovery(String),
    /// Presented membership entries are too many or too large.
    #[error("presented membership refused: {0}")]
    Membership(String),
}

impl Proof {
    /// Signs a proof for a request as `key`'s actor.
    pub fn new(
        key: &Keypair,
        record: RecordId,
        client: &[u8],
        server: &[u8],
        nonce: [u8; 16],
        time: Timestamp,
    ) -> Proof {
        let actor = key.actor();
        let body = to_cbor(&ProofBody {
            actor: &actor,
            record: &record,
            client,
            server,
            nonce: &nonce,
            time,
        });
        Proof {
            actor,
            record,
            client: client.to_vec(),
            server: server.to_vec(),
            nonce,
            time,
            sig: key.sign(Domain::Possession, &body),
            attestations: Vec::new(),
            recovery: None,
            membership: Vec::new(),
        }
    }

    /// The same proof, presenting an organisation's membership entries for the actor.
    pub fn with_membership(mut self, membership: Vec<serde_bytes::ByteBuf>) -> Proof {
        self.membership = membership;
        self
    }

    /// The same proof, presenting guardians' approvals of a rotation to the actor.
    pub fn with_recovery(mut self, recovery: Option<Recovery>) -> Proof {
        self.recovery = recovery.map(Box::new);
        self
    }

    /// The same proof, presenting these attestations of the actor's identity.
    pub fn with_attestations(mut self, attestations: Vec<SignedAttestation>) -> Proof {
        self.attestations = attestations;
        self
    }

    /// Checks the proof for a request that arrived from `client` at `server`, and records
    /// its nonce. Returns the actor it proves.
    pub fn check(
        &self,
        client: &[u8],
        server: &[u8],
        now: Timestamp,
        seen: &mut NonceCache,
    ) -> Result<ActorId, ProofError> {
        if self.client != client || self.server != server {
            return Err(ProofError::WrongPeers);
        }
        if self.time.abs_diff(now) > PROOF_WINDOW_MS {
            return Err(ProofError::Stale);
        }
        let body = to_cbor(&ProofBody {
            actor: &self.actor,
            record: &self.record,
            client: &self.client,
            server: &self.server,
            nonce: &self.nonce,
            time: self.time,
        });
        keys::verify(&self.actor, Domain::Possession, &body, &self.sig)
            .map_err(|_| ProofError::Signature)?;
        if self.attestations.len() > MAX_PROFILE_ATTESTATIONS {
            return Err(ProofError::Attestation(format!(
                "more than {MAX_PROFILE_ATTESTATIONS}"
            )));
        }
        for a in &self.attestations {
            a.verify()
                .map_err(|e| ProofError::Attestation(e.to_string()))?;
            if a.attestation.subject != self.actor {
                return Err(ProofError::Attestation(
                    "about another key than the requester's".into(),
                ));
            }
        }
        if let Some(r) = &self.recovery {
            if r.approvals.is_empty() || r.approvals.len() > MAX_GUARDIANS {
                return Err(ProofError::Recovery(format!(
                    "1 to {MAX_GUARDIANS} approvals, not {}",
                    r.approvals.len()
                )));
            }
        }
        if self.membership.len() > crate::org::MAX_PROOF_ENTRIES
            || self
                .membership
                .iter()
                .any(|b| b.len() > crate::org::MAX_PROOF_ENTRY_BYTES)
        {
            return Err(ProofError::Membership(format!(
                "at most {} entries of at most {} bytes",
                crate::org::MAX_PROOF_ENTRIES,
                crate::org::MAX_PROOF_ENTRY_BYTES
            )));
        }
        seen.insert(self.actor, self.nonce, now)?;
        Ok(self.actor)
    }
}

/// Nonces seen within the proof window, bounded in size.
#[derive(Debug, Clone)]
pub struct NonceCache {
    seen: HashMap<(ActorId, [u8; 16]), Timestamp>,
    order: VecDeque<(Timestamp, ActorId, [u8; 16])>,
    capacity: usize,
}

impl NonceCache {
    /// A cache holding at most `capacity` nonces; beyond that the oldest are forgotten
    /// (and proofs older than the window are refused anyway).
    pub fn new(capacity: usize) -> Self {
        NonceCache {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn insert(
        &mut self,
        actor: ActorId,
        nonce: [u8; 16],
        now: Timestamp,
    ) -> Result<(), ProofError> {
        while let Some((t, a, n)) = self.order.front().copied() {
            if now.saturating_sub(t) > 2 * PROOF_WINDOW_MS || self.order.len() >= self.capacity {
                self.order.pop_front();
                self.seen.remove(&(a, n));
            } else {
                break;
            }
        }
        if self.seen.insert((actor, nonce), now).is_some() {
            return Err(ProofError::Replayed);
        }
        self.order.push_back((now, actor, nonce));
        Ok(())
    }
}
