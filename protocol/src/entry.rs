//! Entries: the signed, content-addressed unit of a record.
//!
//! An [`Entry`] is encoded as deterministic CBOR; its author signs that encoding under the
//! [`Domain::Entry`] tag; the [`SignedEntry`] (entry plus signature) is encoded again and
//! its BLAKE3 hash is the [`EntryId`]. Decoding accepts only the one canonical encoding
//! (it re-encodes and compares), is bounded in size and nesting depth, and checks every
//! field that can be checked without the rest of the record ([`check_structure`]).

use serde::{Deserialize, Serialize};

use crate::access::Grant;
use crate::category::Category;
use crate::ids::{ActorId, EntryId, RecordId, Sig};
use crate::keys::{self, Domain, KeyError, Keypair};
use crate::seal::{EpochId, Sealed, Wrapped};
use crate::trust::attestation::{AttestationError, SignedAttestation};
use crate::value::{Value, ValueError};

/// Milliseconds since the Unix epoch, UTC, as claimed by the author.
pub type Timestamp = u64;

/// Largest encoded signed entry accepted (documents carry attachments).
pub const MAX_ENTRY_BYTES: usize = 8 * 1024 * 1024;
/// Most causal parents one entry may name.
pub const MAX_PARENTS: usize = 32;
/// Longest short text field (names, roles, device labels, reasons).
pub const MAX_SHORT_TEXT: usize = 512;
/// Longest annotation text.
pub const MAX_NOTE_TEXT: usize = 16 * 1024;
/// Entry format version.
pub const FORMAT_VERSION: u8 = 1;
/// Most attestations one profile carries.
pub const MAX_PROFILE_ATTESTATIONS: usize = 8;
/// Most guardians a patient names (and so most approvals a rotation carries).
pub const MAX_GUARDIANS: usize = 16;
/// Most wrapped keys one key-wrap entry carries (readers of one stream at once).
pub const MAX_WRAPS: usize = 512;
/// Bytes of HPKE's encapsulated key for X25519.
const WRAP_ENC_BYTES: usize = 32;
/// Bytes of a wrapped epoch key (the key and its tag).
const WRAP_CT_BYTES: usize = crate::seal::EPOCH_KEY_BYTES + 16;

/// Who an actor is: signed by that actor in a profile entry (or the patient's genesis).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Display name.
    pub name: String,
    /// Role, e.g. `patient`, `carer`, `family`, `consultant`, `nurse`, `pharmacist`,
    /// `home-care`, `gp`, `device`.
    pub role: String,
    /// Organisation, if any.
    pub organisation: Option<String>,
    /// Attestations of who this is, signed by identity assurance services (at most
    /// [`MAX_PROFILE_ATTESTATIONS`]). Each is checked (signature, and that it is about the
    /// profile's author) before the profile is accepted; whether its issuer is trusted is
    /// each node's own decision ([`crate::trust::TrustList`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<SignedAttestation>,
}

impl Profile {
    /// A profile without attestations.
    pub fn new(
        name: impl Into<String>,
        role: impl Into<String>,
        organisation: Option<String>,
    ) -> Self {
        Profile {
            name: name.into(),
            role: role.into(),
            organisation,
            attestations: Vec::new(),
        }
    }
}

/// What an entry does. The variant is the entry's *kind*.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Payload {
    /// The first entry of a record, signed by the patient.
    Genesis {
        /// The patient's profile.
        profile: Profile,
    },
    /// A new item of record data.
    Create {
        /// Its category.
        category: Category,
        /// Its data, checked against the category's schema.
        body: Value,
    },
    /// A new version of an earlier create or amend; the original stays in history.
    Amend {
        /// The version this supersedes.
        target: EntryId,
        /// The new data (same category as the target).
        body: Value,
    },
    /// A logical delete of an item; the original stays in history.
    Delete {
        /// The version this supersedes.
        target: EntryId,
        /// Why it was deleted.
        reason: String,
    },
    /// A note on any data entry (principle 9: the patient annotates others' entries).
    Annotate {
        /// The entry annotated.
        target: EntryId,
        /// The note.
        text: String,
    },
    /// A capability grant.
    Grant(Grant),
    /// Revocation of a grant, effective from this entry's causal position. A revocation
    /// is a set of entries written together: one in the administrative stream
    /// (`category: None`), which stops every later use of the grant, and one in each
    /// category stream of the grant's scope, whose causal past is what stays valid and
    /// visible in that category (see [`crate::record`]).
    Revoke {
        /// The grant revoked.
        grant: EntryId,
        /// The category stream this part of the revocation is in (`None`: administrative).
        category: Option<Category>,
        /// Why.
        reason: String,
    },
    /// The author's (updated) profile.
    Profile(Profile),
    /// A person (the patient, or a grantee under the grant `auth` names) authorises a
    /// device key to act for them. Only the person's own key (for the patient, the current
    /// patient key) may add or remove devices. See [`crate::record`], "Devices and keys".
    AddDevice {
        /// The device's key.
        device: ActorId,
        /// What it is, e.g. "George's phone".
        label: String,
    },
    /// The device's owner removes it from this entry's causal position on. Like a
    /// revocation, it is a set of entries written together: one in each category stream
    /// the device wrote in, then one in the administrative stream (`category: None`).
    RemoveDevice {
        /// The device's key.
        device: ActorId,
        /// The category stream this part of the removal is in (`None`: administrative).
        category: Option<Category>,
        /// Why.
        reason: String,
    },
    /// The patient (current key only) names the guardians who may, `threshold` of them
    /// together, approve a rotation of the patient key.
    SetGuardians {
        /// The guardians, sorted, without duplicates (1 to [`MAX_GUARDIANS`]).
        guardians: Vec<ActorId>,
        /// How many must approve (1 to the number of guardians).
        threshold: u8,
    },
    /// A rotation of the patient key, authored by the NEW key: from it on, the new key is
    /// the patient and `old` writes nothing new. The record id never changes.
    RotateKey {
        /// The key rotated away from (the patient's current key at this entry).
        old: ActorId,
        /// The `SetGuardians` entry whose guardians approve (`None` for a planned rotation
        /// approved by `old` itself).
        guardians: Option<EntryId>,
        /// The approvals: guardians' signatures (or the old key's own) over
        /// [`RotationClaim`], sorted by signer, without duplicates.
        approvals: Vec<Approval>,
    },
    /// A rotation's part in one category stream, written by the patient after the rotation
    /// (in the same action): the old key's entries in this stream that are in its causal
    /// past stay in effect, others are void (as for a revocation's parts).
    RotationPart {
        /// The `RotateKey` entry.
        rotation: EntryId,
        /// The category stream.
        category: Category,
    },
    /// A new item of record data, its body sealed under the stream's epoch key (blind
    /// hosting: see [`crate::record`], "Sealed content"). Opened, it is a [`Payload::Create`].
    SealedCreate {
        /// Its category (visible: the gate and relays need it).
        category: Category,
        /// The body's canonical CBOR, sealed.
        content: Sealed,
    },
    /// A sealed [`Payload::Amend`]: the new body, sealed.
    SealedAmend {
        /// The version this supersedes.
        target: EntryId,
        /// The body's canonical CBOR, sealed.
        content: Sealed,
    },
    /// A sealed [`Payload::Delete`]: the reason, sealed.
    SealedDelete {
        /// The version this supersedes.
        target: EntryId,
        /// The reason's canonical CBOR, sealed.
        content: Sealed,
    },
    /// A sealed [`Payload::Annotate`]: the note, sealed.
    SealedAnnotate {
        /// The entry annotated.
        target: EntryId,
        /// The note's canonical CBOR, sealed.
        content: Sealed,
    },
    /// One category stream's epoch key, wrapped for readers: opening a new epoch (`opens`,
    /// wrapped for every reader of the stream at this position) or giving an existing
    /// epoch's key to more readers. In the administrative stream.
    KeyWrap {
        /// The category stream.
        category: Category,
        /// The epoch.
        epoch: EpochId,
        /// Whether this entry opens the epoch (its first wraps).
        opens: bool,
        /// The wrapped keys, sorted by reader, without duplicates (1 to [`MAX_WRAPS`]).
        wraps: Vec<Wrapped>,
        /// On an opening: the thread the epoch is for (`messages` only), wrapped for its
        /// participants' readers only; absent for a stream's own epochs (so those encode
        /// as before). A gift of a thread's epoch does not repeat it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<crate::seal::ThreadEpoch>,
    },
    /// The patient moved the record to a new home host. Replicas follow it.
    MoveHome {
        /// The new host's peer id (bytes).
        #[serde(with = "serde_bytes")]
        host: Vec<u8>,
        /// Its addresses (multiaddr text).
        addrs: Vec<String>,
    },
    /// In an organisation's own record (see [`crate::org`]): one of its administrators
    /// (the organisation's key or its device) names a member and their role.
    AddMember {
        /// The member's key.
        member: ActorId,
        /// What they may do under the organisation's grants.
        role: crate::org::Role,
        /// Who they are, e.g. "Nurse Jo Bloggs".
        label: String,
    },
    /// In an organisation's own record: an administrator ends a membership, from this
    /// entry's causal position on. A removed member is never added again under that key.
    RemoveMember {
        /// The member's key.
        member: ActorId,
        /// Why.
        reason: String,
    },
    /// In a patient's record: a member of the organisation the grant in `auth` names
    /// starts acting under it, proving their membership with the organisation's signed
    /// entries (see [`crate::org`]). In the administrative stream.
    JoinOrg {
        /// The organisation's entries proving the membership (1 to
        /// [`crate::org::MAX_PROOF_ENTRIES`]): the `AddMember` naming the author, last.
        proof: Vec<serde_bytes::ByteBuf>,
    },
    /// A schema for an extension category, defined as data (`docs/extensions.md`): by the
    /// patient (or their device) or a grantee with write on that category; version 1 or
    /// the compatible next version of the one in its causal past. In the administrative
    /// stream, so every replica validates the category's entries against it.
    DefineSchema(crate::schema::ExtensionSchema),
}

impl Payload {
    /// The kind's name, as shown to people.
    pub fn kind(&self) -> &'static str {
        match self {
            Payload::Genesis { .. } => "genesis",
            Payload::Create { .. } | Payload::SealedCreate { .. } => "create",
            Payload::Amend { .. } | Payload::SealedAmend { .. } => "amend",
            Payload::Delete { .. } | Payload::SealedDelete { .. } => "delete",
            Payload::Annotate { .. } | Payload::SealedAnnotate { .. } => "annotate",
            Payload::KeyWrap { .. } => "key-wrap",
            Payload::Grant(_) => "grant",
            Payload::Revoke { .. } => "revoke",
            Payload::Profile(_) => "profile",
            Payload::MoveHome { .. } => "move-home",
            Payload::AddDevice { .. } => "add-device",
            Payload::RemoveDevice { .. } => "remove-device",
            Payload::SetGuardians { .. } => "set-guardians",
            Payload::RotateKey { .. } => "rotate-key",
            Payload::RotationPart { .. } => "rotation-part",
            Payload::AddMember { .. } => "add-member",
            Payload::RemoveMember { .. } => "remove-member",
            Payload::JoinOrg { .. } => "join-org",
            Payload::DefineSchema(_) => "define-schema",
        }
    }

    /// The stream this payload is written in (`None` inside: the administrative stream):
    /// its own category for a create, the named one for a category revoke, device removal
    /// or rotation part, and for an amend, delete or annotation its target's stream, as
    /// `target_stream` tells it (`None` from it: not known, and so is the answer).
    pub fn stream_given(
        &self,
        target_stream: impl FnOnce(&EntryId) -> Option<Option<Category>>,
    ) -> Option<Option<Category>> {
        Some(match self {
            Payload::Create { category, .. } | Payload::SealedCreate { category, .. } => {
                Some(category.clone())
            }
            Payload::Amend { target, .. }
            | Payload::Delete { target, .. }
            | Payload::Annotate { target, .. }
            | Payload::SealedAmend { target, .. }
            | Payload::SealedDelete { target, .. }
            | Payload::SealedAnnotate { target, .. } => target_stream(target)?,
            Payload::Revoke { category, .. } | Payload::RemoveDevice { category, .. } => {
                category.clone()
            }
            Payload::RotationPart { category, .. } => Some(category.clone()),
            _ => None,
        })
    }

    /// The entry this one points at (amend, delete, annotate, revoke, rotation part).
    pub fn target(&self) -> Option<EntryId> {
        match self {
            Payload::Amend { target, .. }
            | Payload::Delete { target, .. }
            | Payload::Annotate { target, .. }
            | Payload::SealedAmend { target, .. }
            | Payload::SealedDelete { target, .. }
            | Payload::SealedAnnotate { target, .. } => Some(*target),
            Payload::Revoke { grant, .. } => Some(*grant),
            Payload::RotationPart { rotation, .. } => Some(*rotation),
            _ => None,
        }
    }

    /// Whether this is a create, plain or sealed (an item's first version).
    pub fn is_create(&self) -> bool {
        matches!(self, Payload::Create { .. } | Payload::SealedCreate { .. })
    }

    /// Whether this is an amend, plain or sealed.
    pub fn is_amend(&self) -> bool {
        matches!(self, Payload::Amend { .. } | Payload::SealedAmend { .. })
    }

    /// Whether this is a delete, plain or sealed.
    pub fn is_delete(&self) -> bool {
        matches!(self, Payload::Delete { .. } | Payload::SealedDelete { .. })
    }

    /// Whether this is an annotation, plain or sealed.
    pub fn is_annotate(&self) -> bool {
        matches!(
            self,
            Payload::Annotate { .. } | Payload::SealedAnnotate { .. }
        )
    }

    /// Whether this is record data (create, amend, delete, annotate), plain or sealed.
    pub fn is_data(&self) -> bool {
        self.is_create() || self.is_amend() || self.is_delete() || self.is_annotate()
    }

    /// The sealed content, for the sealed kinds.
    pub fn sealed(&self) -> Option<&Sealed> {
        match self {
            Payload::SealedCreate { content, .. }
            | Payload::SealedAmend { content, .. }
            | Payload::SealedDelete { content, .. }
            | Payload::SealedAnnotate { content, .. } => Some(content),
            _ => None,
        }
    }
}

/// One signature approving a key rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// Who signs: a guardian, or the old key itself (a planned rotation).
    pub by: ActorId,
    /// Their signature over the [`RotationClaim`], under [`Domain::KeyRotation`].
    pub sig: Sig,
}

/// What an approval of a key rotation is a signature over: the record, the key rotated
/// away from, the new key and the guardian set relied on. An approval for one rotation
/// can never be replayed for another record, another key or another guardian set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationClaim {
    /// The record.
    pub record: RecordId,
    /// The patient key rotated away from.
    pub old: ActorId,
    /// The new patient key (the rotation entry's author).
    pub new: ActorId,
    /// The `SetGuardians` entry relied on (`None` for a planned rotation).
    pub guardians: Option<EntryId>,
}

impl RotationClaim {
    /// The bytes signed.
    pub fn signing_bytes(&self) -> Vec<u8> {
        cbor(self)
    }

    /// Signs the claim as `key` (a guardian, or the old key for a planned rotation).
    pub fn approve(&self, key: &Keypair) -> Approval {
        Approval {
            by: key.actor(),
            sig: key.sign(Domain::KeyRotation, &self.signing_bytes()),
        }
    }

    /// Checks one approval's signature (strictly).
    pub fn verify(&self, a: &Approval) -> Result<(), KeyError> {
        keys::verify(&a.by, Domain::KeyRotation, &self.signing_bytes(), &a.sig)
    }
}

/// The signed content of an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Format version ([`FORMAT_VERSION`]).
    pub v: u8,
    /// The record (patient's actor id).
    pub record: RecordId,
    /// The author.
    pub author: ActorId,
    /// The author's sequence number in this record, from 1.
    pub seq: u64,
    /// The author's previous entry in this record (`None` exactly when `seq == 1`).
    pub backlink: Option<EntryId>,
    /// Causal parents: the record heads the author had seen, sorted, without duplicates.
    pub parents: Vec<EntryId>,
    /// Author's time (ms since epoch); never earlier than any parent's.
    pub time: Timestamp,
    /// The device the entry was made on, if named.
    pub device: Option<String>,
    /// The grant that authorises this write (`None` for the patient).
    pub auth: Option<EntryId>,
    /// What the entry does.
    pub payload: Payload,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    entry: Entry,
    sig: Sig,
}

#[derive(Serialize)]
struct WireRef<'a> {
    entry: &'a Entry,
    sig: &'a Sig,
}

/// Why bytes are not a well-formed entry.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EntryError {
    /// Larger than [`MAX_ENTRY_BYTES`].
    #[error("entry is {0} bytes, more than the {MAX_ENTRY_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not decodable CBOR of the right shape.
    #[error("malformed entry encoding: {0}")]
    Malformed(String),
    /// Decodable, but not the one canonical encoding.
    #[error("entry encoding is not canonical")]
    NotCanonical,
    /// Bytes read for an entry by its id are not that entry (their hash is another id).
    #[error("content hash mismatch: the bytes are not the entry asked for")]
    WrongId,
    /// Unknown format version.
    #[error("unsupported entry format version {0}")]
    Version(u8),
    /// Sequence/backlink mismatch.
    #[error("sequence number {seq} does not match backlink presence")]
    Backlink {
        /// The sequence number claimed.
        seq: u64,
    },
    /// Parents not sorted, duplicated, too many, or missing where required.
    #[error("causal parents invalid: {0}")]
    Parents(&'static str),
    /// A text field is too long or empty where it must not be.
    #[error("field `{0}` is empty or too long")]
    Text(&'static str),
    /// The body is too deep or has non-finite numbers.
    #[error("body: {0}")]
    Body(#[from] ValueError),
    /// Genesis rules broken.
    #[error("genesis must be the patient's first entry, with no parents and no grant")]
    Genesis,
    /// The signature or key is bad.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A profile carries more than [`MAX_PROFILE_ATTESTATIONS`] attestations.
    #[error("a profile carries at most {MAX_PROFILE_ATTESTATIONS} attestations")]
    TooManyAttestations,
    /// A malformed membership entry or proof (see [`crate::org`]).
    #[error("membership: {0}")]
    Membership(String),
    /// A profile's attestation is forged or malformed.
    #[error("profile attestation refused: {0}")]
    Attestation(String),
    /// A profile's attestation is about another key than the profile's author.
    #[error("profile attestation is about another key than its author")]
    AttestationSubject,
    /// A guardian set is empty, larger than [`MAX_GUARDIANS`], not sorted, or has
    /// duplicates, or its threshold is 0 or more than the number of guardians.
    #[error("guardian set invalid: {0}")]
    Guardians(&'static str),
    /// A rotation carries two approvals by the same signer.
    #[error("rotation carries two approvals by {0}")]
    DuplicateApproval(ActorId),
    /// A rotation carries no approval, more than [`MAX_GUARDIANS`], approvals not sorted
    /// by signer, or an approval by the new key itself.
    #[error("rotation approvals invalid: {0}")]
    Approvals(&'static str),
    /// The documents a sealed body lists in clear are too many, too large, unsorted or
    /// repeated, or listed where no body can reference them.
    #[error("document references invalid: {0}")]
    Documents(#[from] crate::blob::BlobError),
    /// A key-wrap entry's wraps are empty, too many, unsorted, duplicated or misshapen.
    #[error("key wraps invalid: {0}")]
    Wraps(&'static str),
    /// A key-management entry names the wrong keys (a device that is its own author, a
    /// rotation to the same key).
    #[error("{0}")]
    Keys(&'static str),
    /// An extension schema's definition is malformed or out of bounds.
    #[error("schema definition: {0}")]
    Definition(#[from] crate::schema::DefinitionError),
}

/// A decoded (or freshly signed) entry with its signature, id and canonical bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedEntry {
    entry: Entry,
    sig: Sig,
    id: EntryId,
    bytes: Vec<u8>,
}

fn cbor<T: Serialize>(v: &T) -> Vec<u8> {
    // Encoding into a Vec fails only on allocation failure.
    cbor4ii::serde::to_vec(Vec::new(), v).unwrap_or_default()
}

/// Encodes any value as CBOR (used for signing payloads elsewhere in the crate).
pub(crate) fn to_cbor<T: Serialize>(v: &T) -> Vec<u8> {
    cbor(v)
}

/// Decodes a value, insisting on the canonical encoding (decode, re-encode, compare).
pub(crate) fn from_cbor_canonical<T>(bytes: &[u8]) -> Result<T, EntryError>
where
    T: Serialize + for<'de> Deserialize<'de>,
{
    let v: T =
        cbor4ii::serde::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
    // Encoded into a buffer of the input's size: no growing (and copying) on the way.
    let again = cbor4ii::serde::to_vec(Vec::with_capacity(bytes.len()), &v).unwrap_or_default();
    if again != bytes {
        return Err(EntryError::NotCanonical);
    }
    Ok(v)
}

fn short(field: &'static str, s: &str, max: usize) -> Result<(), EntryError> {
    if s.trim().is_empty() || s.len() > max {
        return Err(EntryError::Text(field));
    }
    Ok(())
}

/// Checks everything about an entry that needs no other entry.
pub fn check_structure(e: &Entry) -> Result<(), EntryError> {
    if e.v != FORMAT_VERSION {
        return Err(EntryError::Version(e.v));
    }
    if e.seq == 0 || (e.seq == 1) != e.backlink.is_none() {
        return Err(EntryError::Backlink { seq: e.seq });
    }
    if e.parents.len() > MAX_PARENTS {
        return Err(EntryError::Parents("too many"));
    }
    if e.parents.windows(2).any(|w| w[0] >= w[1]) {
        return Err(EntryError::Parents("not sorted or duplicated"));
    }
    if let Some(d) = &e.device {
        short("device", d, MAX_SHORT_TEXT)?;
    }
    match &e.payload {
        Payload::Genesis { profile } => {
            if e.author != e.record || e.seq != 1 || !e.parents.is_empty() || e.auth.is_some() {
                return Err(EntryError::Genesis);
            }
            check_profile(&e.author, profile)?;
        }
        _ if e.parents.is_empty() => return Err(EntryError::Parents("missing")),
        Payload::Create { body, .. } | Payload::Amend { body, .. } => body.check()?,
        Payload::Delete { reason, .. }
        | Payload::Revoke { reason, .. }
        | Payload::RemoveDevice { reason, .. } => short("reason", reason, MAX_SHORT_TEXT)?,
        Payload::Annotate { text, .. } => short("text", text, MAX_NOTE_TEXT)?,
        Payload::SealedCreate { content, .. }
        | Payload::SealedAmend { content, .. }
        | Payload::SealedDelete { content, .. }
        | Payload::SealedAnnotate { content, .. } => {
            if content.ct.len() < 16 || content.ct.len() > crate::seal::MAX_PLAINTEXT + 16 {
                return Err(EntryError::Text("content"));
            }
            let bodied = matches!(
                e.payload,
                Payload::SealedCreate { .. } | Payload::SealedAmend { .. }
            );
            if !bodied && content.task.is_some() {
                return Err(EntryError::Text("task"));
            }
            if content.task.as_ref().is_some_and(|t| !t.is_well_formed()) {
                return Err(EntryError::Text("task"));
            }
            if !bodied && !content.blobs.is_empty() {
                return Err(EntryError::Documents(crate::blob::BlobError::Shape(
                    "only a create or an amend references documents",
                )));
            }
            crate::blob::check_refs(&content.blobs)?;
        }
        Payload::KeyWrap {
            wraps,
            thread,
            opens,
            category,
            ..
        } => {
            if thread.is_some() && (!*opens || *category != Category::Messages) {
                return Err(EntryError::Wraps(
                    "only the opening of a messages epoch names a thread",
                ));
            }
            if wraps.is_empty() || wraps.len() > MAX_WRAPS {
                return Err(EntryError::Wraps("1 to 512 wrapped keys"));
            }
            if wraps.windows(2).any(|w| w[0].to >= w[1].to) {
                return Err(EntryError::Wraps("not sorted by reader or duplicated"));
            }
            if wraps
                .iter()
                .any(|w| w.enc.len() != WRAP_ENC_BYTES || w.ct.len() != WRAP_CT_BYTES)
            {
                return Err(EntryError::Wraps("a wrapped key of the wrong size"));
            }
        }
        Payload::Grant(g) => {
            if let Some(l) = &g.label {
                short("label", l, MAX_SHORT_TEXT)?;
            }
            if let Some(r) = &g.requires {
                let n = r.issuers.len();
                if n == 0
                    || n > crate::access::MAX_REQUIREMENT_ISSUERS
                    || r.issuers.windows(2).any(|w| w[0] >= w[1])
                {
                    return Err(EntryError::Text("requires.issuers"));
                }
            }
        }
        Payload::Profile(p) => check_profile(&e.author, p)?,
        Payload::DefineSchema(d) => d.check()?,
        Payload::AddDevice { device, label } => {
            short("label", label, MAX_SHORT_TEXT)?;
            if *device == e.author || *device == e.record {
                return Err(EntryError::Keys(
                    "a device key must differ from its owner's and the record's",
                ));
            }
        }
        Payload::SetGuardians {
            guardians,
            threshold,
        } => {
            if guardians.is_empty() || guardians.len() > MAX_GUARDIANS {
                return Err(EntryError::Guardians("1 to 16 guardians"));
            }
            if guardians.windows(2).any(|w| w[0] >= w[1]) {
                return Err(EntryError::Guardians("not sorted or duplicated"));
            }
            if *threshold == 0 || usize::from(*threshold) > guardians.len() {
                return Err(EntryError::Guardians(
                    "threshold must be 1 to the number of guardians",
                ));
            }
        }
        Payload::RotateKey { old, approvals, .. } => {
            if *old == e.author {
                return Err(EntryError::Keys("a rotation must name a new key"));
            }
            if approvals.is_empty() || approvals.len() > MAX_GUARDIANS {
                return Err(EntryError::Approvals("1 to 16 approvals"));
            }
            for w in approvals.windows(2) {
                if w[0].by == w[1].by {
                    return Err(EntryError::DuplicateApproval(w[0].by));
                }
                if w[0].by > w[1].by {
                    return Err(EntryError::Approvals("not sorted by signer"));
                }
            }
            if approvals.iter().any(|a| a.by == e.author) {
                return Err(EntryError::Approvals("the new key cannot approve itself"));
            }
        }
        Payload::RotationPart { .. } => {}
        Payload::AddMember {
            member,
            role,
            label,
        } => crate::org::check_member_entry(&e.record, member, role, label)
            .map_err(|e| EntryError::Membership(e.to_string()))?,
        Payload::RemoveMember { reason, .. } => short("reason", reason, MAX_SHORT_TEXT)?,
        Payload::JoinOrg { proof } => {
            if proof.is_empty() || proof.len() > crate::org::MAX_PROOF_ENTRIES {
                return Err(EntryError::Membership(
                    crate::org::OrgError::ProofSize.to_string(),
                ));
            }
            if proof
                .iter()
                .any(|b| b.len() > crate::org::MAX_PROOF_ENTRY_BYTES)
            {
                return Err(EntryError::Membership(
                    crate::org::OrgError::ProofEntryTooLarge.to_string(),
                ));
            }
        }
        Payload::MoveHome { host, addrs } => {
            if host.is_empty()
                || host.len() > 128
                || addrs.len() > crate::home::MAX_ADDRS
                || addrs.iter().any(|a| a.len() > crate::home::MAX_ADDR_LEN)
            {
                return Err(EntryError::Text("addrs"));
            }
        }
    }
    if e.author == e.record && e.auth.is_some() {
        return Err(EntryError::Parents("the patient writes without a grant"));
    }
    Ok(())
}

/// Checks a profile published by `author`: texts bounded, attestations (at most
/// [`MAX_PROFILE_ATTESTATIONS`]) signed by their issuers and about `author`.
pub fn check_profile(author: &ActorId, p: &Profile) -> Result<(), EntryError> {
    short("name", &p.name, MAX_SHORT_TEXT)?;
    short("role", &p.role, MAX_SHORT_TEXT)?;
    if let Some(o) = &p.organisation {
        short("organisation", o, MAX_SHORT_TEXT)?;
    }
    if p.attestations.len() > MAX_PROFILE_ATTESTATIONS {
        return Err(EntryError::TooManyAttestations);
    }
    for a in &p.attestations {
        a.verify()
            .map_err(|e: AttestationError| EntryError::Attestation(e.to_string()))?;
        if a.attestation.subject != *author {
            return Err(EntryError::AttestationSubject);
        }
    }
    Ok(())
}

impl Entry {
    /// The bytes the author signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        cbor(self)
    }

    /// Signs this entry. The key must be the author's.
    pub fn sign(self, key: &Keypair) -> SignedEntry {
        let sig = key.sign(Domain::Entry, &self.signing_bytes());
        let bytes = cbor(&WireRef {
            entry: &self,
            sig: &sig,
        });
        SignedEntry {
            id: EntryId(*blake3::hash(&bytes).as_bytes()),
            entry: self,
            sig,
            bytes,
        }
    }
}

impl SignedEntry {
    /// Decodes and structurally checks an entry (the signature is checked by
    /// [`SignedEntry::verify`] or in a batch by [`verify_batch`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        Self::decode_vec(bytes.to_vec())
    }

    /// [`SignedEntry::decode`], keeping `bytes` as the entry's bytes (no copy: received
    /// bytes become the stored ones).
    pub fn decode_vec(bytes: Vec<u8>) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge(bytes.len()));
        }
        let wire: Wire = from_cbor_canonical(&bytes)?;
        check_structure(&wire.entry)?;
        Ok(SignedEntry {
            id: EntryId(*blake3::hash(&bytes).as_bytes()),
            entry: wire.entry,
            sig: wire.sig,
            bytes,
        })
    }

    /// Decodes bytes read back from where this node stored them, known by their id: their
    /// BLAKE3 hash must be `id`. The id is the hash of canonical bytes that passed
    /// [`SignedEntry::decode_vec`] (or were made by [`Entry::sign`]) before they were
    /// stored, so bytes that hash to it are those same bytes: they are decoded without
    /// checking their canonical form and structure again (about half the cost of a read).
    /// Any other bytes are refused.
    pub fn decode_known(bytes: Vec<u8>, id: &EntryId) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge(bytes.len()));
        }
        let hash = EntryId(*blake3::hash(&bytes).as_bytes());
        if hash != *id {
            return Err(EntryError::WrongId);
        }
        let wire: Wire =
            cbor4ii::serde::from_slice(&bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        Ok(SignedEntry {
            id: hash,
            entry: wire.entry,
            sig: wire.sig,
            bytes,
        })
    }

    /// What the author signed ([`Entry::signing_bytes`]), without encoding it again: the
    /// canonical signed encoding is the map `{"entry": <entry>, "sig": <64 bytes>}`, so
    /// the entry's own encoding sits inside it as is. (Every `SignedEntry` is decoded
    /// canonically or made by [`Entry::sign`]; should the layout ever not match, the entry
    /// is encoded again.)
    pub fn signing_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        const HEAD: &[u8] = b"\xa2\x65entry";
        const SIG: &[u8] = b"\x63sig\x58\x40";
        let b = &self.bytes;
        let tail = SIG.len() + self.sig.0.len();
        if b.len() >= HEAD.len() + tail
            && b.starts_with(HEAD)
            && &b[b.len() - tail..b.len() - self.sig.0.len()] == SIG
            && b[b.len() - self.sig.0.len()..] == self.sig.0
        {
            std::borrow::Cow::Borrowed(&b[HEAD.len()..b.len() - tail])
        } else {
            std::borrow::Cow::Owned(self.entry.signing_bytes())
        }
    }

    /// Checks the signature strictly (and that the author's key is not weak).
    pub fn verify(self) -> Result<Verified, EntryError> {
        keys::verify(
            &self.entry.author,
            Domain::Entry,
            &self.signing_bytes(),
            &self.sig,
        )?;
        Ok(Verified::trusted(self))
    }

    /// The entry's id (hash of its canonical signed encoding).
    pub fn id(&self) -> EntryId {
        self.id
    }

    /// The signed content.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// The signature.
    pub fn sig(&self) -> &Sig {
        &self.sig
    }

    /// The canonical encoding.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// An entry whose signature has been verified. Only these can enter a [`crate::record::Record`].
///
/// Shared, not copied: a clone (a record's past replayed, a batch kept for its watchers)
/// costs a reference count, not the entry's bytes and decoded body again.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified(std::sync::Arc<SignedEntry>);

impl Verified {
    /// The verified entry.
    pub fn signed(&self) -> &SignedEntry {
        &self.0
    }
    /// The entry's id.
    pub fn id(&self) -> EntryId {
        self.0.id
    }
    /// The signed content.
    pub fn entry(&self) -> &Entry {
        &self.0.entry
    }
    /// Unwraps.
    pub fn into_signed(self) -> SignedEntry {
        std::sync::Arc::unwrap_or_clone(self.0)
    }
    /// Marks an entry as verified without checking. Only for entries this process signed
    /// itself or re-reads from its own store after a hash check.
    pub fn trusted(e: SignedEntry) -> Self {
        Verified(std::sync::Arc::new(e))
    }
}

/// Verifies many entries' signatures in one batch; if the batch fails, finds the bad one.
pub fn verify_batch(entries: Vec<SignedEntry>) -> Result<Vec<Verified>, (usize, EntryError)> {
    let msgs: Vec<std::borrow::Cow<'_, [u8]>> =
        entries.iter().map(SignedEntry::signing_bytes).collect();
    let items: Vec<_> = entries
        .iter()
        .zip(&msgs)
        .map(|(e, m)| (e.entry.author, Domain::Entry, m.as_ref(), e.sig))
        .collect();
    if keys::verify_batch(&items).is_err() {
        for (i, (actor, domain, m, sig)) in items.iter().enumerate() {
            keys::verify(actor, *domain, m, sig).map_err(|e| (i, e.into()))?;
        }
    }
    Ok(entries.into_iter().map(Verified::trusted).collect())
}
