//! The organisations this node's identity is a member of: the membership proofs it was
//! given ([`cophr_protocol::org`]), kept in the store's metadata. A member's node presents
//! one when it pulls a record it has not joined yet, and joins a record (writes
//! `JoinOrg`) before its first action there.

use cophr_protocol::ActorId;
use serde_bytes::ByteBuf;

use super::{Store, StoreError};

/// Most memberships one node keeps.
pub const MAX_MEMBERSHIPS: usize = 16;

/// The text a membership proof travels as, between the organisation and its member
/// (`cophr org proof`, the web app's staff page): this prefix, then the proof's CBOR in
/// base64url.
pub const PROOF_PREFIX: &str = "cophr-membership:";

/// Longest membership proof text accepted, in bytes.
pub const MAX_PROOF_TEXT: usize = 64 * 1024;

/// Why a membership proof's text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofTextError {
    /// Longer than [`MAX_PROOF_TEXT`].
    #[error("a proof of membership is at most {MAX_PROOF_TEXT} bytes")]
    TooLong,
    /// Not starting with [`PROOF_PREFIX`].
    #[error("not a proof of membership (it starts with `{PROOF_PREFIX}`)")]
    NotAProof,
    /// Bad base64url or CBOR.
    #[error("the proof of membership is damaged: {0}")]
    Damaged(String),
}

/// A membership proof as text ([`PROOF_PREFIX`]).
pub fn proof_to_text(proof: &Proof) -> String {
    // A list of byte strings always encodes.
    let bytes = cbor4ii::serde::to_vec(Vec::new(), proof).unwrap_or_default();
    format!(
        "{PROOF_PREFIX}{}",
        data_encoding::BASE64URL_NOPAD.encode(&bytes)
    )
}

/// Reads a membership proof's text (surrounding whitespace ignored). Whether it proves
/// anything is for [`cophr_protocol::org::verify_membership`] to say.
///
/// # Errors
/// [`ProofTextError`].
pub fn proof_from_text(text: &str) -> Result<Proof, ProofTextError> {
    let text = text.trim();
    if text.len() > MAX_PROOF_TEXT {
        return Err(ProofTextError::TooLong);
    }
    let body = text
        .strip_prefix(PROOF_PREFIX)
        .ok_or(ProofTextError::NotAProof)?;
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(body.as_bytes())
        .map_err(|e| ProofTextError::Damaged(e.to_string()))?;
    cbor4ii::serde::from_slice(&bytes).map_err(|e| ProofTextError::Damaged(e.to_string()))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_travel_as_text_and_damaged_text_is_refused() {
        let proof: Proof = vec![ByteBuf::from(vec![1, 2, 3])];
        let text = proof_to_text(&proof);
        assert!(text.starts_with(PROOF_PREFIX));
        assert_eq!(proof_from_text(&format!("  {text}\n")).unwrap(), proof);
        assert_eq!(proof_from_text("hello"), Err(ProofTextError::NotAProof));
        assert!(matches!(
            proof_from_text(&format!("{PROOF_PREFIX}!!!")),
            Err(ProofTextError::Damaged(_))
        ));
        assert!(matches!(
            proof_from_text(&format!("{PROOF_PREFIX}AAAA")),
            Err(ProofTextError::Damaged(_))
        ));
        assert_eq!(
            proof_from_text(&"x".repeat(MAX_PROOF_TEXT + 1)),
            Err(ProofTextError::TooLong)
        );
    }
}
