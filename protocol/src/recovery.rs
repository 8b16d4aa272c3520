//! Social key recovery as people carry it out (`docs/trust.md` "Devices and key recovery").
//!
//! George has lost his key. On a new machine he makes a new identity and a
//! [`RecoveryRequest`] (`cophr://recover/…`: the record and his new key), which he gives to
//! his guardians by any channel (read out on the phone, a QR code). Each guardian checks it
//! is really George (out of band: the request carries nothing that proves it) and, from
//! their own replica of the record, signs an approval of exactly one rotation: this record,
//! from the current patient key, to this new key, over the guardian set in effect
//! ([`crate::entry::RotationClaim`]). They hand back a [`GuardianApproval`]
//! (`cophr://approval/…`). With enough of them George's node assembles a [`Recovery`]:
//! presented with a sync proof it lets the new key pull the whole record from its host
//! (the host checks it as the gate would check the rotation: [`Record::check_recovery`]),
//! and it is the content of the `RotateKey` entry the new key then writes.
//!
//! Everything here is self-authenticating and bounded: a text longer than its limit, not
//! canonical, or whose signature does not verify is refused before anything is looked up.

use serde::{Deserialize, Serialize};

use crate::entry::{from_cbor_canonical, to_cbor, Approval, Payload, RotationClaim, MAX_GUARDIANS};
use crate::ids::{ActorId, EntryId, RecordId};
use crate::keys::Keypair;
use crate::record::Record;

/// What a recovery request's text starts with.
pub const REQUEST_PREFIX: &str = "cophr://recover/";
/// What a guardian's approval's text starts with.
pub const APPROVAL_PREFIX: &str = "cophr://approval/";
/// The longest recovery request or approval text accepted.
pub const MAX_TEXT_LEN: usize = 1024;

/// Why a recovery step is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryError {
    /// The text is not a request or approval (prefix, base64url, CBOR, length).
    #[error("not a recovery {what}: {why}")]
    Text {
        /// "request" or "approval".
        what: &'static str,
        /// Why.
        why: String,
    },
    /// An approval's signature does not verify against its signer and claim.
    #[error("the approval by {0} does not verify (altered or forged)")]
    Signature(ActorId),
    /// The request or approval is for another record than the one at hand.
    #[error("it is for record {named}, not {expected}")]
    OtherRecord {
        /// The record it names.
        named: RecordId,
        /// The record expected.
        expected: RecordId,
    },
    /// An approval is for another new key than the recovering one.
    #[error("the approval by {by} is for the new key {named}, not {expected}")]
    OtherKey {
        /// The signer.
        by: ActorId,
        /// The new key it names.
        named: ActorId,
        /// The key recovering.
        expected: ActorId,
    },
    /// Approvals that do not approve the same rotation (another old key or guardian set:
    /// the record changed between them).
    #[error("the approvals by {0} and {1} approve different rotations (the record changed between them: ask again)")]
    Mismatch(ActorId, ActorId),
    /// Two approvals by one guardian.
    #[error("two approvals by {0}")]
    Duplicate(ActorId),
    /// None, or more than a guardian set can hold.
    #[error("1 to {MAX_GUARDIANS} approvals are needed, not {0}")]
    Count(usize),
    /// The approver is not a guardian of the record now.
    #[error("{0} is not one of the record's guardians")]
    NotAGuardian(ActorId),
    /// The record names no guardians.
    #[error("the record names no guardians: its key can be recovered only from a key backup")]
    NoGuardians,
    /// The new key is already the patient's or a device's.
    #[error("{0} is already a patient key or a device in this record")]
    KeyInUse(ActorId),
}

fn to_text<T: Serialize>(prefix: &str, value: &T) -> String {
    format!(
        "{prefix}{}",
        data_encoding::BASE64URL_NOPAD.encode(&to_cbor(value))
    )
}

fn from_text<T: Serialize + for<'de> Deserialize<'de>>(
    what: &'static str,
    prefix: &str,
    text: &str,
) -> Result<T, RecoveryError> {
    let err = |why: String| RecoveryError::Text { what, why };
    let text = text.trim();
    if text.len() > MAX_TEXT_LEN {
        return Err(err(format!("longer than {MAX_TEXT_LEN} characters")));
    }
    let body = text
        .strip_prefix(prefix)
        .ok_or_else(|| err(format!("it does not start with {prefix}")))?;
    let bytes = data_encoding::BASE64URL_NOPAD
        .decode(body.as_bytes())
        .map_err(|e| err(format!("not base64url: {e}")))?;
    from_cbor_canonical(&bytes).map_err(|e| err(e.to_string()))
}

/// What a person recovering their record asks their guardians to approve: the record and
/// their new key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryRequest {
    /// The record (the patient's first key).
    pub record: RecordId,
    /// The new key, which will write the rotation.
    pub new: ActorId,
}

impl RecoveryRequest {
    /// The text: [`REQUEST_PREFIX`] and base64url of the canonical CBOR.
    pub fn to_text(&self) -> String {
        to_text(REQUEST_PREFIX, self)
    }

    /// Parses a request (bounded, canonical only).
    pub fn from_text(text: &str) -> Result<RecoveryRequest, RecoveryError> {
        from_text("request", REQUEST_PREFIX, text)
    }
}

/// A guardian's approval of one rotation, with the claim it signs, as handed back to the
/// person recovering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardianApproval {
    /// What is approved.
    pub claim: RotationClaim,
    /// The guardian's signature over it.
    pub approval: Approval,
}

impl GuardianApproval {
    /// A guardian (`key`) approves `request` from their replica of the record: it must be
    /// the request's record, name guardians with `key` among them, and the new key must not
    /// be in use. The guardian must have checked, out of band, that the request is really
    /// the patient's.
    pub fn approve(
        record: &Record,
        key: &Keypair,
        request: &RecoveryRequest,
    ) -> Result<GuardianApproval, RecoveryError> {
        if request.record != record.id() {
            return Err(RecoveryError::OtherRecord {
                named: request.record,
                expected: record.id(),
            });
        }
        let set = record.guardians().ok_or(RecoveryError::NoGuardians)?;
        if !set.guardians.contains(&key.actor()) {
            return Err(RecoveryError::NotAGuardian(key.actor()));
        }
        if record.patient_keys().contains(&request.new)
            || record
                .devices_of(&record.id())
                .iter()
                .any(|d| d.device == request.new)
            || request.new == key.actor()
        {
            return Err(RecoveryError::KeyInUse(request.new));
        }
        let claim = record.rotation_claim(&request.new, false);
        let approval = claim.approve(key);
        Ok(GuardianApproval { claim, approval })
    }

    /// The text: [`APPROVAL_PREFIX`] and base64url of the canonical CBOR.
    pub fn to_text(&self) -> String {
        to_text(APPROVAL_PREFIX, self)
    }

    /// Parses an approval (bounded, canonical only) and checks its signature.
    pub fn from_text(text: &str) -> Result<GuardianApproval, RecoveryError> {
        let a: GuardianApproval = from_text("approval", APPROVAL_PREFIX, text)?;
        a.claim
            .verify(&a.approval)
            .map_err(|_| RecoveryError::Signature(a.approval.by))?;
        Ok(a)
    }
}

/// Guardians' approvals of one rotation, assembled: what a recovery proof presents and
/// what the `RotateKey` entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovery {
    /// The patient key rotated away from.
    pub old: ActorId,
    /// The guardian set relied on.
    pub guardians: Option<EntryId>,
    /// The approvals, sorted by signer, distinct, 1 to [`MAX_GUARDIANS`].
    pub approvals: Vec<Approval>,
}

impl Recovery {
    /// Assembles the approvals `record`'s new key `new` collected: every one for this
    /// record and key, all approving the same rotation, distinct signers, each signature
    /// verified. Whether they are enough, and by guardians, is for the record to say
    /// ([`Record::check_recovery`]).
    pub fn assemble(
        record: RecordId,
        new: &ActorId,
        approvals: &[GuardianApproval],
    ) -> Result<Recovery, RecoveryError> {
        if approvals.is_empty() || approvals.len() > MAX_GUARDIANS {
            return Err(RecoveryError::Count(approvals.len()));
        }
        let first = &approvals[0];
        for a in approvals {
            if a.claim.record != record {
                return Err(RecoveryError::OtherRecord {
                    named: a.claim.record,
                    expected: record,
                });
            }
            if a.claim.new != *new {
                return Err(RecoveryError::OtherKey {
                    by: a.approval.by,
                    named: a.claim.new,
                    expected: *new,
                });
            }
            if a.claim != first.claim {
                return Err(RecoveryError::Mismatch(first.approval.by, a.approval.by));
            }
            a.claim
                .verify(&a.approval)
                .map_err(|_| RecoveryError::Signature(a.approval.by))?;
        }
        let mut list: Vec<Approval> = approvals.iter().map(|a| a.approval.clone()).collect();
        list.sort_by_key(|a| a.by);
        if let Some(w) = list.windows(2).find(|w| w[0].by == w[1].by) {
            return Err(RecoveryError::Duplicate(w[0].by));
        }
        Ok(Recovery {
            old: first.claim.old,
            guardians: first.claim.guardians,
            approvals: list,
        })
    }

    /// The rotation entry's payload.
    pub fn payload(&self) -> Payload {
        Payload::RotateKey {
            old: self.old,
            guardians: self.guardians,
            approvals: self.approvals.clone(),
        }
    }
}
