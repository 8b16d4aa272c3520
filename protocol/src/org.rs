//! Care organisations: staff who act under the grants a patient gives the organisation.
//!
//! ## The organisation's record
//! An organisation (a GP practice, a home-care service) has a key, attested as an
//! organisation with its ODS code by an identity assurance service
//! ([`crate::trust::attestation::Attributes::Organisation`]). Its membership is its own
//! record (the record id is the organisation's key): in that record's administrative
//! stream, [`Payload::AddMember`] names a member and their [`Role`], and
//! [`Payload::RemoveMember`] ends it. Only the organisation's administrators write them:
//! the organisation's key and its devices ([`Payload::AddDevice`] in its record). The log
//! is signed, replicated and causally ordered like any record: a member is one at a causal
//! position if an addition is in its past and no removal is ([`Record::members`]). A
//! removed member is never added again under the same key (as with devices). So a forked
//! log, or an addition and a removal written concurrently, resolve alike on every replica:
//! the removal wins wherever both are known.
//!
//! ## Acting for the organisation in a patient's record
//! A patient grants the organisation like a person ([`crate::access::Grant`] to its key).
//! A member acts under that grant as the organisation's *member device*: their first entry
//! in the patient's record, [`Payload::JoinOrg`], carries the organisation's signed
//! membership entries ([`verify_membership`]): the `AddMember` naming them, and, when an
//! administrator's device signed it, the `AddDevice` by the organisation's key that made
//! it an administrator. Every replica checks the proof from the entry alone. From the join
//! on, the member acts for the organisation exactly as a device acts for its owner
//! ([`crate::record`], "Devices"): they write under the organisation's grants (named in
//! `auth`), each of their entries names both them (the author) and the organisation (the
//! grant's grantee), they are a reader of what the grant and their role open, and epoch
//! keys are given to them by any reader (the organisation's node does, when it sees the
//! join).
//!
//! **Roles narrow.** What a member may do is the organisation's grant narrowed by their
//! role: the categories both cover, at the lower of the two levels. A role can never widen
//! a grant: an administrator naming a receptionist with every right still gives only what
//! the patient granted the organisation.
//!
//! **Removal is future-only.** When a member is removed, the organisation writes a
//! [`Payload::RemoveDevice`] for them in each patient record it holds (its node does, as
//! the organisation's key; a new epoch follows in each sealed stream, so nothing written
//! after the removal is sealed for them). From then on exactly the device rules apply: an
//! entry by the member with the removal in its causal past is refused, one written
//! concurrently is void, what was written before stays. A member removed in the
//! organisation's record who replays their old proof in a patient record the removal has
//! not reached yet is stopped there when it arrives: what they wrote meanwhile is
//! concurrent with it, and void.
//!
//! Limits (documented, not hidden): the proof is checked without the organisation's
//! record, so removing an *administrator's device* does not void the memberships it signed
//! (remove those members too); the organisation's key is not rotated by these rules.

use serde::{Deserialize, Serialize};

use crate::access::{Level, Scope};
use crate::category::Category;
use crate::entry::{Payload, SignedEntry, Verified, MAX_SHORT_TEXT};
use crate::ids::{ActorId, EntryId};
#[cfg(doc)]
use crate::record::Record;

/// Most organisation entries one membership proof carries: the `AddMember`, and the
/// `AddDevice` that made its signer an administrator.
pub const MAX_PROOF_ENTRIES: usize = 2;

/// Most bytes of one entry in a membership proof.
pub const MAX_PROOF_ENTRY_BYTES: usize = 16 * 1024;

/// Longest role name, in bytes.
pub const MAX_ROLE_NAME: usize = 64;

/// What a member of an organisation may do under the organisation's grants: at most
/// `level`, in the categories `scope` covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its name, e.g. "nurse" or "receptionist" (1 to [`MAX_ROLE_NAME`] bytes).
    pub name: String,
    /// The highest level.
    pub level: Level,
    /// The categories.
    pub scope: Scope,
}

impl Role {
    /// The names [`Role::preset`] knows, in the order a form offers them.
    pub const PRESETS: &'static [&'static str] = &[
        "clinician",
        "nurse",
        "doctor",
        "pharmacist",
        "receptionist",
        "viewer",
    ];

    /// The roles named by a word: `clinician` (and `nurse`, `doctor`: everything the grant
    /// allows), `receptionist` (demographics and appointments, at write), `viewer`
    /// (everything the grant allows, view only).
    pub fn preset(name: &str) -> Option<Role> {
        let (level, scope) = match name {
            "clinician" | "nurse" | "doctor" | "pharmacist" => (Level::Delete, Scope::All),
            "receptionist" => (
                Level::Write,
                Scope::Only([Category::Demographics, Category::Appointments].into()),
            ),
            "viewer" => (Level::View, Scope::All),
            _ => return None,
        };
        Some(Role {
            name: name.to_owned(),
            level,
            scope,
        })
    }

    /// Whether the role allows `level` in category `c`.
    pub fn allows(&self, level: Level, c: &Category) -> bool {
        level <= self.level && self.scope.covers(c)
    }

    /// Checks the role's shape: a name of 1 to [`MAX_ROLE_NAME`] bytes.
    pub fn check(&self) -> Result<(), OrgError> {
        if self.name.is_empty() || self.name.len() > MAX_ROLE_NAME {
            return Err(OrgError::RoleName);
        }
        Ok(())
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} on {})", self.name, self.level, self.scope)
    }
}

/// Why a membership proof or entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrgError {
    /// No entries, or more than [`MAX_PROOF_ENTRIES`].
    #[error("a membership proof carries 1 to {MAX_PROOF_ENTRIES} of the organisation's entries")]
    ProofSize,
    /// An entry of the proof is larger than [`MAX_PROOF_ENTRY_BYTES`].
    #[error("an entry of the membership proof is larger than {MAX_PROOF_ENTRY_BYTES} bytes")]
    ProofEntryTooLarge,
    /// An entry of the proof is malformed or its signature does not verify.
    #[error("an entry of the membership proof does not verify: {0}")]
    ProofEntry(String),
    /// An entry of the proof belongs to another record than the organisation's.
    #[error("the membership proof is not from {org}'s record")]
    OtherOrganisation {
        /// The organisation the grant names.
        org: ActorId,
    },
    /// The proof's last entry does not add this member.
    #[error("the membership proof does not name {0} a member")]
    NotNamed(ActorId),
    /// The addition is signed by someone who is not the organisation's administrator.
    #[error("the membership was signed by {0}, who is not an administrator of the organisation")]
    NotAdministrator(ActorId),
    /// The proof carries entries it does not need.
    #[error("the membership proof carries an entry that is neither the addition nor its signer's")]
    Extra,
    /// A role name that is empty or too long.
    #[error("a role name is 1 to {MAX_ROLE_NAME} bytes")]
    RoleName,
    /// A member's label longer than [`MAX_SHORT_TEXT`] bytes.
    #[error("a member's label is at most {MAX_SHORT_TEXT} bytes")]
    Label,
    /// The member is already a member at this causal position.
    #[error("{0} is already a member")]
    AlreadyMember(ActorId),
    /// The member was removed earlier; a removed member is never added again.
    #[error("{0} was removed from the organisation and cannot be added again under that key")]
    WasRemoved(ActorId),
    /// A removal of someone who is not a member at this causal position.
    #[error("{0} is not a member")]
    NotAMember(ActorId),
    /// The organisation's own key, or its record, named as a member.
    #[error("the organisation's own key cannot be its member")]
    SelfMember,
    /// Membership entries are written in the organisation's own record only, by its
    /// administrators.
    #[error(
        "membership entries are written by the organisation's administrators in its own record"
    )]
    NotAdministratorHere,
    /// A join whose author is a member of another organisation than the grant's.
    #[error("the join names grant {0}, which is not to the organisation of the proof")]
    WrongGrant(EntryId),
    /// The member is already joined at this causal position.
    #[error("{0} has already joined under this organisation")]
    AlreadyJoined(ActorId),
}

/// Checks a membership proof: that `member` is a member of organisation `org`, as the
/// organisation's signed entries in `proof` say, and with which role. The last entry is the
/// `AddMember` naming `member`, signed by `org`'s key, or by a device key made an
/// administrator by an earlier `AddDevice` of `org`'s key in the proof. Every entry is
/// decoded, structurally checked and its signature verified.
pub fn verify_membership(
    org: &ActorId,
    member: &ActorId,
    proof: &[serde_bytes::ByteBuf],
) -> Result<(Role, Vec<Verified>), OrgError> {
    if proof.is_empty() || proof.len() > MAX_PROOF_ENTRIES {
        return Err(OrgError::ProofSize);
    }
    let mut entries = Vec::with_capacity(proof.len());
    for bytes in proof {
        if bytes.len() > MAX_PROOF_ENTRY_BYTES {
            return Err(OrgError::ProofEntryTooLarge);
        }
        let v = SignedEntry::decode(bytes)
            .and_then(SignedEntry::verify)
            .map_err(|e| OrgError::ProofEntry(e.to_string()))?;
        if v.entry().record != *org {
            return Err(OrgError::OtherOrganisation { org: *org });
        }
        entries.push(v);
    }
    let (last, rest) = entries.split_last().ok_or(OrgError::ProofSize)?;
    let Payload::AddMember {
        member: named,
        role,
        ..
    } = &last.entry().payload
    else {
        return Err(OrgError::NotNamed(*member));
    };
    if named != member {
        return Err(OrgError::NotNamed(*member));
    }
    let signer = last.entry().author;
    if signer != *org {
        let made_admin = rest.iter().any(|v| {
            v.entry().author == *org
                && v.entry().auth.is_none()
                && matches!(&v.entry().payload, Payload::AddDevice { device, .. } if *device == signer)
        });
        if !made_admin {
            return Err(OrgError::NotAdministrator(signer));
        }
        if rest.len() != 1 {
            return Err(OrgError::Extra);
        }
    } else if !rest.is_empty() {
        return Err(OrgError::Extra);
    }
    Ok((role.clone(), entries))
}

/// Checks a role carried by an `AddMember`, and its label.
pub(crate) fn check_member_entry(
    record: &ActorId,
    member: &ActorId,
    role: &Role,
    label: &str,
) -> Result<(), OrgError> {
    role.check()?;
    if label.len() > MAX_SHORT_TEXT {
        return Err(OrgError::Label);
    }
    if member == record {
        return Err(OrgError::SelfMember);
    }
    Ok(())
}

/// One member of an organisation, as [`Record::members`] lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member's key.
    pub member: ActorId,
    /// Their role.
    pub role: Role,
    /// The administrator's label, e.g. "Nurse Jo Bloggs".
    pub label: String,
    /// The `AddMember` entry.
    pub added: EntryId,
    /// The `RemoveMember` entry, if removed.
    pub removed: Option<EntryId>,
}
