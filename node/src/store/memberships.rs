//! The organisations this node's identity is a member of: the membership proofs it was
//! given ([`cophr_protocol::org`]), kept in the store's metadata. A member's node presents
//! one when it pulls a record it has not joined yet, and joins a record (writes
//! `JoinOrg`) before its first action there.

use cophr_protocol::ActorId;
use serde_bytes::ByteBuf;

use super::{Store, StoreError};

/// Most memberships one node keeps.
pub const MAX_MEMBERSHIPS: usize = 16;

const META: &str = "memberships";

/// One membership proof: the organisation's signed entries.
pub type Proof = Vec<ByteBuf>;

impl Store {
    /// The membership proofs kept here, oldest first.
    pub fn memberships(&self) -> Result<Vec<Proof>, StoreError> {
        match self.meta(META)? {
            None => Ok(Vec::new()),
            Some(bytes) => cbor4ii::serde::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("memberships: {e}"))),
        }
    }

    /// Keeps a membership proof (already checked by the caller to name this node's
    /// identity), replacing the one for the same organisation. Refused beyond
    /// [`MAX_MEMBERSHIPS`] organisations.
    pub fn keep_membership(&self, org: &ActorId, proof: Proof) -> Result<(), StoreError> {
        let mut all = self.memberships()?;
        all.retain(|p| org_of(p).as_ref() != Some(org));
        if all.len() >= MAX_MEMBERSHIPS {
            return Err(StoreError::Busy(format!(
                "this node keeps at most {MAX_MEMBERSHIPS} memberships"
            )));
        }
        all.push(proof);
        self.set_meta(META, &encode(&all)?)
    }

    /// Forgets the membership of `org`; whether one was kept.
    pub fn forget_membership(&self, org: &ActorId) -> Result<bool, StoreError> {
        let mut all = self.memberships()?;
        let before = all.len();
        all.retain(|p| org_of(p).as_ref() != Some(org));
        if all.len() == before {
            return Ok(false);
        }
        self.set_meta(META, &encode(&all)?)?;
        Ok(true)
    }
}

fn encode(all: &[Proof]) -> Result<Vec<u8>, StoreError> {
    cbor4ii::serde::to_vec(Vec::new(), &all)
        .map_err(|e| StoreError::Corrupt(format!("memberships: {e}")))
}

/// The organisation a proof is from (the record its entries belong to).
pub fn org_of(proof: &Proof) -> Option<ActorId> {
    proof
        .first()
        .and_then(|b| cophr_protocol::SignedEntry::decode(b).ok())
        .map(|s| s.entry().record)
}
