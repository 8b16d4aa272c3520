//! One record held in memory: its entries as a causal DAG, validated one by one.
//!
//! [`Record::apply`] is the single gate every entry passes, whether written locally,
//! imported from a file, or received from a peer. It checks the author's chain (sequence,
//! backlink, forks), causal parents, time, the category schema, and authorisation at the
//! entry's causal position ([`AccessError`]). Nothing in a record is ever overwritten.
//!
//! ## Streams
//! A record is a set of causal *streams*: one per category, and the administrative stream
//! (genesis, profiles, grants, revocations) that every replica holds. An entry's parents are
//! the heads of its own stream and of the administrative stream; an author's sequence
//! numbers and backlinks run per stream. So a replica that may see only some categories
//! holds whole streams and never needs, or learns, an id, count or height of a stream it
//! may not see.
//!
//! ## Causality
//! Each entry carries a vector clock over (author, stream) chains: `x` is in the causal past
//! of `e` exactly when `e.clock[x.author, x.stream] >= x.seq`. This is sound because each
//! chain's previous link must be in the causal past of the next, and a second entry at a
//! taken sequence number is a fork and is refused.
//!
//! ## Revocation
//! Revoking grant `G` writes one revoke entry in the administrative stream and one in each
//! category stream of `G`'s scope. An entry under `G` (or a grant delegated from it) is:
//! refused if any of these is in its causal past (its author knew); otherwise in effect only
//! if it is in the causal past of the revoke entry in its own stream (it was part of the
//! record when the revocation was made), and void if not (written concurrently). The same
//! cut decides what the revoked grantee may still see.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

/// The record's in-memory indexes: a hash map with a fast, randomly seeded hasher
/// (foldhash). Keys are entry ids and actor ids — hashes and public keys an author cannot
/// steer without grinding, and the seed is per process.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use crate::access::{Grant, GrantStatus, Level, Widening};
use crate::category::Category;
use crate::entry::{Entry, Payload, Profile, Timestamp, Verified, MAX_PARENTS};
use crate::ids::{ActorId, EntryId, RecordId};
use crate::schema::SchemaError;

mod devices;
mod nodes;
mod orgs;
pub use orgs::{intersect, narrowed, JoinedMember};
mod admission;
mod schemas;
mod sealing;
mod snapshot;
mod subset;
mod threads;

pub(crate) use nodes::Header;
pub(crate) use nodes::Node;
use nodes::{Actors, Epochs, Interner, Ix, Kind, Nodes, NONE, NO_CATEGORY};

pub(crate) use devices::Acting;
pub use devices::{DeviceInfo, Guardians};
pub use sealing::{ContentState, SealPolicy, SealingError};
pub use snapshot::SnapshotError;

/// Why an entry is not authorised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// An organisation's membership entry, proof or join is refused.
    #[error("{0}")]
    Membership(crate::org::OrgError),
    /// A non-patient author named no grant.
    #[error("no grant authorises this author in this record")]
    NoGrant,
    /// The named grant is not in the record.
    #[error("grant {0} is not in this record")]
    GrantNotFound(EntryId),
    /// The named entry is not a grant.
    #[error("entry {0} is not a grant")]
    NotAGrant(EntryId),
    /// The grant names someone else.
    #[error("grant {0} was issued to a different actor")]
    NotGrantee(EntryId),
    /// The grant is void (made concurrently with a revocation of its issuer's authority).
    #[error("grant {0} is void")]
    VoidGrant(EntryId),
    /// The author had not seen the grant (it is not in the entry's causal past).
    #[error("grant {0} is not in the entry's causal past")]
    GrantNotInPast(EntryId),
    /// A grant in the chain was revoked before this entry was made.
    #[error("grant {grant} was revoked by {revocation}")]
    Revoked {
        /// The revoked grant.
        grant: EntryId,
        /// The revocation.
        revocation: EntryId,
    },
    /// The entry's time is outside a grant's validity period.
    #[error("grant {0} is not valid at the entry's time")]
    OutOfPeriod(EntryId),
    /// The grant's level is too low.
    #[error("{category}: {action} needs level {needed}, the grant gives {held}")]
    Level {
        /// What was attempted.
        action: &'static str,
        /// Category.
        category: Category,
        /// Needed level.
        needed: Level,
        /// Held level.
        held: Level,
    },
    /// The category is outside the grant's scope.
    #[error("category {0} is outside the grant's scope")]
    Scope(Category),
    /// Only the item's original author (who wrote its create) or their proxy may amend or
    /// delete any of its versions.
    #[error("only the original author or their proxy may amend or delete entry {0}")]
    NotAuthorOrProxy(EntryId),
    /// A delegated grant would widen the issuer's rights.
    #[error("delegation refused: {0}")]
    Widening(#[from] Widening),
    /// Only the patient, the grant's issuer, or an issuer above it may revoke it.
    #[error("only the patient or an issuer in its chain may revoke grant {0}")]
    NotIssuer(EntryId),
    /// Only the patient may do this (move the record).
    #[error("only the patient may move the record")]
    PatientOnly,
    /// Only the patient may do this (name guardians, rotate the patient key, write a
    /// rotation's part).
    #[error("only the patient may {0}")]
    PatientKeyOnly(&'static str),
    /// A device acts for its owner in everything but managing keys: only the owner's own
    /// key (for the patient, the current patient key) may do this.
    #[error("a device may not {0}: only its owner's own key may")]
    DeviceMayNot(&'static str),
    /// The author is a patient key that a rotation in the entry's causal past retired.
    #[error(
        "key {key} is no longer the patient's: rotation {by} retired it; it writes nothing new"
    )]
    KeyRetired {
        /// The retired key.
        key: ActorId,
        /// The rotation that retired it (or won over the rotation that made it current).
        by: EntryId,
    },
    /// The author is a device whose removal is in the entry's causal past.
    #[error("device {device} was removed by {by}")]
    DeviceRemoved {
        /// The device.
        device: ActorId,
        /// The removal.
        by: EntryId,
    },
    /// The device is already one of this person's devices (a removed device is never
    /// added again).
    #[error("{0} is already a device of this person")]
    DeviceExists(ActorId),
    /// The key removed is not a device of the remover.
    #[error("{0} is not a device of this person")]
    NotADevice(ActorId),
    /// The key already acts in this record as the patient (a patient key, or a patient's
    /// device for a rotation's new key), so it cannot become a device or a new patient key.
    #[error("key {0} already acts in this record as the patient or a device")]
    KeyInUse(ActorId),
    /// A guardian named is the patient (one of the patient's keys or devices).
    #[error("the patient cannot be their own guardian ({0})")]
    GuardianIsPatient(ActorId),
    /// The rotation names another key than the patient's current key at its position.
    #[error("the rotation is from {named}, but the patient's current key is {current}")]
    RotationFrom {
        /// The key the rotation names.
        named: ActorId,
        /// The current patient key in the rotation's causal past.
        current: ActorId,
    },
    /// A guardian-approved rotation, but no guardians are named in its causal past.
    #[error("no guardians are named: a rotation needs the old key's or the guardians' approval")]
    NoGuardians,
    /// The rotation relies on another guardian set than the one in effect.
    #[error("the rotation relies on guardian set {named:?}; the one in effect is {current}")]
    GuardiansNotCurrent {
        /// The `SetGuardians` entry named.
        named: Option<EntryId>,
        /// The one in effect.
        current: EntryId,
    },
    /// An approval is signed by someone who is not a guardian of the set in effect.
    #[error("{0} is not a guardian")]
    NotAGuardian(ActorId),
    /// An approval's signature does not verify over this rotation's claim (another record,
    /// old key, new key or guardian set, or forged).
    #[error("the approval by {0} does not verify for this rotation")]
    BadApproval(ActorId),
    /// Fewer distinct guardians approved than the threshold.
    #[error("{have} guardian approval(s), the threshold is {need}")]
    TooFewApprovals {
        /// Distinct guardians that approved.
        have: usize,
        /// The threshold.
        need: u8,
    },
    /// The patient already holds every right.
    #[error("the patient cannot be granted rights to their own record")]
    GrantToPatient,
    /// The grant requires its grantee to be attested, and the author's profile in the
    /// entry's causal past carries no attestation that meets the requirement at the entry's
    /// time.
    #[error("grant {grant} requires its grantee to be {requirement}; the author's profile carries no such attestation")]
    Unattested {
        /// The grant.
        grant: EntryId,
        /// What it requires, as text.
        requirement: String,
    },
}

/// A causal stream: a category, or `None` for the administrative stream.
pub type Stream = Option<Category>;

/// Why an entry was refused. Nothing about the record changes when one is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// The entry belongs to another record.
    #[error("entry belongs to record {0}")]
    WrongRecord(RecordId),
    /// The record has no genesis yet; only the patient's genesis may come first.
    #[error("the record has no genesis entry yet")]
    NoGenesis,
    /// A second genesis.
    #[error("the record already has a genesis entry")]
    GenesisExists,
    /// Causal parents are not (yet) held.
    #[error("{} causal parent(s) not held", .0.len())]
    MissingParents(Vec<EntryId>),
    /// The author's previous entry is not held or not in the causal past.
    #[error("the author's previous entry (sequence {0}) is not in the causal past")]
    Backlink(u64),
    /// Two different entries with the same author and sequence number.
    #[error("fork: author {author} already has entry {existing} at sequence {seq}")]
    Fork {
        /// Author.
        author: ActorId,
        /// Sequence number.
        seq: u64,
        /// The entry already held.
        existing: EntryId,
    },
    /// A parent is in another category's stream.
    #[error("causal parent {0} is in another category's stream")]
    CrossStream(EntryId),
    /// Time earlier than a parent's or the backlink's.
    #[error("entry time is earlier than its causal past")]
    TimeTravel,
    /// Not authorised.
    #[error("not authorised: {0}")]
    Access(#[from] AccessError),
    /// Body does not match the category schema.
    #[error("invalid body: {0}")]
    Body(#[from] SchemaError),
    /// The entry is malformed (a field empty or too long, too many parents…).
    #[error("malformed entry: {0}")]
    Malformed(#[from] crate::entry::EntryError),
    /// Sealed content or a key wrap breaks a sealing rule (see "Sealed content").
    #[error("sealing: {0}")]
    Sealing(#[from] sealing::SealingError),
    /// A task's create or amend breaks its lifecycle ([`crate::care`]): a status out of
    /// order, or written by a party who may not set it.
    #[error("task: {0}")]
    Task(#[from] crate::care::TaskError),
    /// An appointment's create or amend breaks its rules ([`crate::care`]), e.g. a reminder
    /// already in the past when written.
    #[error("appointment: {0}")]
    Appointment(#[from] crate::care::AppointmentError),
    /// A result's release breaks its rules ([`crate::care::release`]): by the patient, of
    /// something that is not a result, or a second release.
    #[error("release: {0}")]
    Release(#[from] crate::care::ReleaseError),
    /// An entry in a conversation breaks its rules ([`crate::care::thread`]): written into
    /// a thread by someone who does not take part in it, a participant without access, a
    /// message moved between threads.
    #[error("thread: {0}")]
    Thread(#[from] crate::care::ThreadError),
    /// A questionnaire response breaks its definition's rules
    /// ([`crate::care::questionnaire`]): an unknown question, a wrong answer type, a required
    /// question unanswered, an answer not among the options, a stated score or band not the
    /// rule's; or it (or an assignment) names no published questionnaire in its past.
    #[error("questionnaire: {0}")]
    Questionnaire(#[from] crate::care::QuestionnaireError),
    /// The target of an amend, delete, annotate or revoke is missing or unsuitable.
    #[error("target {id}: {why}")]
    Target {
        /// The target.
        id: EntryId,
        /// What is wrong.
        why: &'static str,
    },
    /// An extension schema's definition is not the compatible next version of the one in
    /// effect in its causal past (`record/schemas.rs`).
    #[error("schema definition refused: {0}")]
    Definition(#[from] crate::schema::DefinitionError),
    /// Asked of a record's admission part ([`Record::admission`]): deciding needs entries
    /// the part does not hold. Nothing was decided; the caller asks the whole record.
    #[error("deciding needs the whole record, not its admission part")]
    NeedsWholeRecord,
}

/// Whether an accepted entry takes effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// In effect.
    Valid,
    /// Kept (so the causal graph stays whole) but without effect: written concurrently
    /// with, or before learning of, the revocation of a grant it depends on, the removal
    /// of the device that wrote it, or the rotation away from the patient key that wrote
    /// it (or a rotation that won over the one it depends on).
    Void {
        /// The revocation, device removal or key rotation that voids it.
        revocation: EntryId,
    },
}

/// What an entry's status is judged against.
#[derive(Clone, Copy)]
pub(crate) enum Held<'a> {
    /// Everything this replica holds (the status it records for the entry).
    All,
    /// Only a causal past: what every replica holding that past decides alike.
    Past(&'a dyn Fn(&EntryId) -> bool),
}

impl Held<'_> {
    /// Whether `id` counts.
    pub(crate) fn has(&self, id: &EntryId) -> bool {
        match self {
            Held::All => true,
            Held::Past(past) => past(id),
        }
    }

    /// `ids` narrowed to those that count.
    pub(crate) fn narrow<'b>(&self, ids: &'b [EntryId]) -> std::borrow::Cow<'b, [EntryId]> {
        match self {
            Held::All => std::borrow::Cow::Borrowed(ids),
            Held::Past(past) => ids.iter().filter(|i| past(i)).copied().collect(),
        }
    }
}

/// The result of applying an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Already held; nothing changed.
    Duplicate,
    /// Newly added.
    Added {
        /// Whether it is in effect.
        status: Status,
        /// Entries voided by this one (when it is a revocation).
        voided: Vec<EntryId>,
    },
}

/// Evidence of a fork: two entries by one author with the same sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct ForkProof {
    /// The entry held.
    pub existing: EntryId,
    /// The conflicting entry, kept as proof.
    pub conflicting: Verified,
}

/// Where a lean record ([`Record::set_source`]) reads the entries it does not keep in
/// memory: the node's log, or anything else that hands back exactly the entries applied.
/// The record asks only for entries it applied, by id.
pub trait EntrySource: Send + Sync + std::fmt::Debug {
    /// The entry with this id, checked against its id (a source that cannot read it, or
    /// reads something else, says so through its own reporting and returns `None`).
    fn load(&self, id: &EntryId) -> Option<Verified>;

    /// The entry's canonical signed bytes, checked against its id (their BLAKE3 hash is
    /// the id) but not decoded: what a server sends. A source that reads the bytes
    /// anyway (a log) should answer without decoding them; the default decodes through
    /// [`EntrySource::load`].
    fn load_bytes(&self, id: &EntryId) -> Option<Vec<u8>> {
        self.load(id).map(|v| v.signed().bytes().to_vec())
    }
}

/// A grant held in the record, with what is known about it.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantInfo {
    /// The grant entry.
    pub id: EntryId,
    /// Who issued it: the person (the record id for the patient, whichever of the
    /// patient's keys or devices signed it; a grantee, or the grantee a device acts for).
    pub issuer: ActorId,
    /// The key that signed the grant entry.
    pub signer: ActorId,
    /// The grant under which a delegate issued it (`None` for the patient's own grants).
    pub parent: Option<EntryId>,
    /// The rights.
    pub grant: Grant,
    /// Author time of the grant entry.
    pub time: Timestamp,
    /// Revocations of this grant.
    pub revoked_by: Vec<EntryId>,
}

/// One record's entries, validated and indexed.
#[derive(Debug, Clone)]
pub struct Record {
    id: RecordId,
    /// Every entry applied, in order, found by id.
    nodes: Nodes,
    /// The actors nodes name (authors and the people they act for).
    actors: Actors,
    /// The streams and categories nodes name; the administrative stream first.
    streams: Interner<Stream>,
    /// The key epochs nodes name.
    epoch_ids: Epochs,
    /// The status of every void entry (the rest are valid).
    voids: HashMap<EntryId, Status>,
    /// For an amend or delete of another author's entry: the grants that made its author
    /// that author's proxy at its causal position.
    proxies: HashMap<EntryId, Vec<EntryId>>,
    /// For an entry by a device: the `AddDevice` entries in its causal past that make the
    /// author a device of the person it acts for.
    vias: HashMap<EntryId, Vec<EntryId>>,
    /// Each (author, stream) chain's component of vector clocks.
    author_index: HashMap<(ActorId, Stream), usize>,
    chains: HashMap<(ActorId, Stream), Vec<EntryId>>,
    /// In an admission part ([`Record::admission`]): how many entries at the start of each
    /// chain it does not hold (`chains` holds the rest). Empty in a whole record.
    skipped: HashMap<(ActorId, Stream), u64>,
    heads: HashMap<Stream, BTreeSet<EntryId>>,
    grants: HashMap<EntryId, GrantInfo>,
    /// Entries directly authorised by each grant.
    by_grant: HashMap<EntryId, Vec<Ix>>,
    /// Amends and deletes made as a proxy under each grant.
    by_proxy: HashMap<EntryId, Vec<Ix>>,
    /// Grants issued under each grant.
    sub_grants: HashMap<EntryId, Vec<EntryId>>,
    /// Versions (amends/deletes) of each root, and annotations of each entry.
    versions: HashMap<EntryId, Vec<EntryId>>,
    annotations: HashMap<EntryId, Vec<EntryId>>,
    forks: Vec<ForkProof>,
    /// `AddDevice` entries by device key.
    device_adds: HashMap<ActorId, Vec<EntryId>>,
    /// Retirements by (key, person it acted for): the parts of device removals, and of
    /// rotations away from a patient key (the `RotateKey` and its `RotationPart`s).
    retirements: HashMap<(ActorId, ActorId), Vec<EntryId>>,
    /// `RotateKey` entries by the key they rotate away from.
    rotations_from: HashMap<ActorId, Vec<EntryId>>,
    /// The entries referencing each document stored apart ([`crate::blob`]): who may
    /// fetch a document's bytes is who may see one of them.
    documents: std::collections::BTreeMap<crate::blob::BlobRef, Vec<EntryId>>,
    /// Epochs, key wraps, sealed entries, and what this replica opened.
    sealing: sealing::Sealing,
    /// Extension schema definitions by category (`record/schemas.rs`).
    schema_defs: HashMap<Category, Vec<EntryId>>,
    /// An organisation's membership log: its `AddMember` and `RemoveMember` entries, in
    /// the order applied (`record/orgs.rs`).
    member_log: Vec<EntryId>,
    /// Set on a lean record: where the record data it does not keep is read from.
    source: Option<Arc<dyn EntrySource>>,
    /// While a batch is applied to a lean record before it is written
    /// ([`Record::hold_new`]): the entries it keeps in memory until
    /// [`Record::let_go_held`], since its source cannot read them back yet.
    holding: Option<Vec<EntryId>>,
}

/// What an entry needs checked, computed by [`Record::check`].
struct Checked {
    clock: Vec<u64>,
    depth: u32,
    stream: Stream,
    category: Option<Category>,
    root: Option<EntryId>,
    status: Status,
    proxies: Vec<EntryId>,
    acting: Acting,
}

impl Record {
    /// An empty record for the given patient.
    pub fn new(id: RecordId) -> Self {
        Record {
            id,
            nodes: Nodes::default(),
            actors: Actors::default(),
            streams: nodes::admin_first(),
            epoch_ids: Epochs::default(),
            voids: HashMap::default(),
            proxies: HashMap::default(),
            vias: HashMap::default(),
            author_index: HashMap::default(),
            chains: HashMap::default(),
            skipped: HashMap::default(),
            heads: HashMap::default(),
            grants: HashMap::default(),
            by_grant: HashMap::default(),
            by_proxy: HashMap::default(),
            sub_grants: HashMap::default(),
            versions: HashMap::default(),
            annotations: HashMap::default(),
            forks: Vec::new(),
            device_adds: HashMap::default(),
            retirements: HashMap::default(),
            rotations_from: HashMap::default(),
            documents: Default::default(),
            sealing: sealing::Sealing::default(),
            schema_defs: HashMap::default(),
            member_log: Vec::new(),
            source: None,
            holding: None,
        }
    }

    /// Makes the record lean: from now on it keeps in memory only what its rules and sync
    /// need of record data (creates, amends, deletes and annotations: ids, authors,
    /// sequence numbers, times, causal positions), and reads the entries themselves from
    /// `source` when asked ([`Record::get`], [`Record::entries`], folds, opening sealed
    /// content). Administrative entries (grants, revocations, profiles, devices, keys)
    /// stay in memory: every check reads them. Record data already held is let go.
    pub fn set_source(&mut self, source: Arc<dyn EntrySource>) {
        self.source = Some(source);
        for n in self.nodes.values_mut() {
            if Record::lean_drops(n) {
                n.e = None;
            }
        }
    }

    /// How many of the record's entries are held in memory (all of them, unless the
    /// record is lean).
    pub fn held_in_memory(&self) -> usize {
        self.nodes.values().filter(|n| n.e.is_some()).count()
    }

    /// The entry applied at position `i` (0 is the genesis), if held in memory: a walk of
    /// the record in the order applied without a lookup by id.
    pub fn applied_at(&self, i: usize) -> Option<EntryId> {
        let i = Ix::try_from(i).ok()?;
        self.nodes.listed(i).map(|_| self.nodes.at(i).h.id)
    }

    /// The entry applied last (what a node's index lists last for the record).
    pub fn last_applied(&self) -> Option<EntryId> {
        let n = self.nodes.len();
        (n > 0).then(|| self.nodes.at((n - 1) as Ix).h.id)
    }

    /// How many entries the record keeps anything of in memory: all of them in a whole
    /// record (a lean one keeps what its rules need of each), a few in an admission part
    /// ([`Record::admission`]). What a cache of loaded records counts.
    pub fn resident(&self) -> usize {
        self.nodes.held()
    }

    /// Keeps the record data applied from now on in memory, even when the record is lean,
    /// until [`Record::let_go_held`]: for a batch applied before it is written (its source
    /// cannot read those entries back yet, and the rules of a later entry of the batch may
    /// read an earlier one: a task's step reads the version it amends).
    pub fn hold_new(&mut self) {
        self.holding.get_or_insert_with(Vec::new);
    }

    /// Lets go of the record data kept since [`Record::hold_new`] (once written where the
    /// source reads it), as a lean record does once an entry is applied.
    pub fn let_go_held(&mut self) {
        for id in self.holding.take().unwrap_or_default() {
            if let Some(n) = self.nodes.get_mut(&id) {
                n.e = None;
            }
        }
    }

    /// Whether the record is lean ([`Record::set_source`]).
    pub fn is_lean(&self) -> bool {
        self.source.is_some()
    }

    /// Whether a lean record lets this entry go once applied: record data in a category
    /// stream.
    fn lean_drops(n: &Node) -> bool {
        n.stream != 0 && (n.h.is_create() || n.h.is_amend() || n.h.is_delete() || n.h.is_annotate())
    }

    /// The data of a node's create or amend as a fold hands it out: shared with the entry
    /// when it is held in memory; in a lean record, read from the source when first asked
    /// ([`crate::fold::Body`]), so a fold settles what is shown without reading it.
    pub(crate) fn body_of(&self, id: &EntryId, n: &Node) -> Option<crate::fold::Body> {
        match (&n.e, &self.source) {
            (Some(v), _) => Some(crate::fold::Body::of_entry(v.clone())),
            (None, Some(source)) => Some(crate::fold::Body::deferred(source.clone(), *id)),
            (None, None) => None,
        }
    }

    /// The entry of a node: held, or read from the source.
    pub(crate) fn entry_of(&self, id: &EntryId, n: &Node) -> Option<Verified> {
        match &n.e {
            Some(v) => Some(v.clone()),
            None => {
                let v = self.source.as_ref()?.load(id)?;
                // A source handing back another entry is a broken source: never shown.
                (v.id() == *id).then_some(v)
            }
        }
    }

    /// The record id (the patient's actor id).
    pub fn id(&self) -> RecordId {
        self.id
    }

    /// The patient, as a person: the record id (the genesis key). After a key rotation
    /// the patient writes with another key ([`Record::current_patient_key`]); use
    /// [`Record::is_patient`] to ask whether a key acts as the patient.
    pub fn patient(&self) -> ActorId {
        self.id
    }

    /// Number of entries held.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The current causal heads of every stream, sorted.
    pub fn heads(&self) -> Vec<EntryId> {
        let all: BTreeSet<EntryId> = self.heads.values().flatten().copied().collect();
        all.into_iter().collect()
    }

    /// The current heads of one stream.
    pub fn stream_heads(&self, stream: &Stream) -> Vec<EntryId> {
        self.heads
            .get(stream)
            .map(|h| h.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The streams that hold entries.
    pub fn streams(&self) -> Vec<Stream> {
        let mut s: Vec<Stream> = self.heads.keys().cloned().collect();
        s.sort();
        s
    }

    /// One author's entries in one stream, sequence number 1 first (`&None` is the
    /// administrative stream: genesis, grants, revocations, moves).
    pub fn author_chain(&self, author: &ActorId, stream: &Stream) -> &[EntryId] {
        if self.skipped.contains_key(&(*author, stream.clone())) {
            self.nodes.note_partial();
        }
        self.chains
            .get(&(*author, stream.clone()))
            .map_or(&[][..], Vec::as_slice)
    }

    /// Every (author, stream) chain: its entries, sequence number 1 first.
    pub(crate) fn chains(&self) -> impl Iterator<Item = (&(ActorId, Stream), &Vec<EntryId>)> + '_ {
        self.nodes.note_partial();
        self.chains.iter()
    }

    /// An entry's causal depth (greater than every parent's).
    pub(crate) fn depth_of(&self, id: &EntryId) -> u32 {
        self.nodes.get(id).map_or(0, |n| n.depth)
    }

    /// The stream an entry is in.
    pub fn stream_of(&self, id: &EntryId) -> Option<&Stream> {
        self.nodes
            .get(id)
            .map(|n| self.streams.get(u32::from(n.stream)))
    }

    /// An entry by id (shared, not copied: a clone of a [`Verified`] is a reference
    /// count).
    pub fn get(&self, id: &EntryId) -> Option<Verified> {
        self.nodes.get(id).and_then(|n| self.entry_of(id, n))
    }

    /// What the record keeps of a held entry, without reading the entry.
    pub(crate) fn node(&self, id: &EntryId) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// Every item's first version (its create), in the order applied, without reading
    /// the entries.
    pub(crate) fn creates(&self) -> impl Iterator<Item = &Node> + '_ {
        self.nodes.values().filter(|n| n.h.is_create())
    }

    /// An entry's canonical signed bytes, not decoded: borrowed when the entry is held in
    /// memory, read from the source ([`EntrySource::load_bytes`], which checks them
    /// against the id) when the record is lean and let it go.
    pub fn entry_bytes(&self, id: &EntryId) -> Option<std::borrow::Cow<'_, [u8]>> {
        let n = self.nodes.get(id)?;
        match &n.e {
            Some(v) => Some(std::borrow::Cow::Borrowed(v.signed().bytes())),
            None => self
                .source
                .as_ref()?
                .load_bytes(id)
                .map(std::borrow::Cow::Owned),
        }
    }

    /// A held entry's author time, without reading the entry.
    pub fn time_of(&self, id: &EntryId) -> Option<Timestamp> {
        self.nodes.get(id).map(|n| n.h.time)
    }

    /// How many entries are in a held entry's causal past, itself included (the sum of its
    /// vector clock): larger for every entry that has it in its past, and the same on every
    /// replica. Orders entries written in the same millisecond causally.
    pub fn causal_depth(&self, id: &EntryId) -> Option<u64> {
        let n = self.nodes.get(id)?;
        Some((0..n.width()).map(|i| n.clock(i)).sum())
    }

    /// A held entry's author (the key that signed it), without reading the entry.
    pub fn author_of_entry(&self, id: &EntryId) -> Option<ActorId> {
        self.nodes.get(id).map(|n| self.author_of(n))
    }

    /// Whether an entry is held.
    pub fn contains(&self, id: &EntryId) -> bool {
        self.nodes.contains_key(id)
    }

    /// Whether an entry is in effect (held and not void).
    pub fn status(&self, id: &EntryId) -> Option<&Status> {
        self.nodes.get(id).map(|n| self.status_of(n))
    }

    /// A node's status.
    pub(crate) fn status_of(&self, n: &Node) -> &Status {
        static VALID: Status = Status::Valid;
        if n.void {
            self.voids.get(&n.h.id).unwrap_or(&VALID)
        } else {
            &VALID
        }
    }

    /// Sets a node's status.
    fn set_status(&mut self, id: &EntryId, status: Status) {
        let void = status != Status::Valid;
        if let Some(n) = self.nodes.get_mut(id) {
            n.void = void;
            if void {
                self.voids.insert(*id, status);
            } else {
                self.voids.remove(id);
            }
        }
    }

    /// The create at the root of the versions a node belongs to (itself for a create;
    /// `None` for an entry that is no version of an item: an annotation, or not record
    /// data), without reading any entry.
    pub(crate) fn item_root_of(&self, n: &Node) -> Option<EntryId> {
        if n.h.is_create() {
            Some(n.h.id)
        } else if n.h.is_amend() || n.h.is_delete() {
            self.nodes.id_at(n.root)
        } else {
            None
        }
    }

    /// The category an entry is about (for create, amend, delete, annotate).
    pub fn category_of(&self, id: &EntryId) -> Option<&Category> {
        self.nodes.get(id).and_then(|n| self.node_category(n))
    }

    /// The category a node is about.
    pub(crate) fn node_category(&self, n: &Node) -> Option<&Category> {
        (n.category != NO_CATEGORY)
            .then(|| self.streams.get(u32::from(n.category)).as_ref())
            .flatten()
    }

    /// A node's stream.
    pub(crate) fn node_stream(&self, n: &Node) -> &Stream {
        self.streams.get(u32::from(n.stream))
    }

    /// A node's author.
    pub(crate) fn author_of(&self, n: &Node) -> ActorId {
        *self.actors.get(n.h.author)
    }

    /// The person a node's author acts for.
    pub(crate) fn principal_of(&self, n: &Node) -> ActorId {
        *self.actors.get(n.principal)
    }

    /// Whom a node's author acts for, and what makes it so.
    pub(crate) fn acting_of(&self, n: &Node) -> Acting {
        Acting {
            principal: self.principal_of(n),
            rotation: self.nodes.id_at(n.rotation),
            via: if n.device {
                self.vias.get(&n.h.id).cloned().unwrap_or_default()
            } else {
                Vec::new()
            },
        }
    }

    /// The proxy grants a node was written under (empty unless it changes another
    /// author's item).
    fn proxies_of(&self, n: &Node) -> &[EntryId] {
        if n.proxied {
            self.proxies.get(&n.h.id).map_or(&[][..], Vec::as_slice)
        } else {
            &[]
        }
    }

    /// The epoch a node's sealed content is sealed under.
    pub(crate) fn epoch_of(&self, n: &Node) -> Option<crate::seal::EpochId> {
        (n.h.epoch != NONE).then(|| *self.epoch_ids.get(n.h.epoch))
    }

    /// The category a payload concerns (its stream): its own for a create, its target's
    /// for an amend, delete or annotate, the named one for a category revoke, `None`
    /// (administrative) otherwise.
    pub fn category_of_payload(&self, p: &Payload) -> Option<Category> {
        p.stream_given(|target| Some(self.category_of(target).cloned()))
            .flatten()
    }

    /// The documents a payload references, as a relay knows them ([`crate::blob`]): for
    /// sealed content the list in clear, for a plain create or amend its body's document
    /// fields. Sorted by hash.
    pub fn blobs_of(&self, p: &Payload) -> Vec<crate::blob::BlobRef> {
        match p {
            Payload::SealedCreate { content, .. } | Payload::SealedAmend { content, .. } => {
                content.blobs.clone()
            }
            Payload::Create { body, .. } | Payload::Amend { body, .. } => self
                .category_of_payload(p)
                .map(|c| crate::blob::refs_in_body(&c, body))
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// The entries referencing the document `doc` that the viewer may see: whoever may
    /// see one of them may fetch the document's bytes (a relay too: it may hold them,
    /// sealed). Empty when there is none — the fetch is refused, whether or not the
    /// document is held, so a refusal reveals nothing.
    pub fn document_entries(
        &self,
        v: &crate::fold::Viewer,
        doc: &crate::blob::BlobRef,
    ) -> Vec<EntryId> {
        self.documents
            .get(doc)
            .into_iter()
            .flatten()
            .filter(|id| self.can_see(v, id))
            .copied()
            .collect()
    }

    /// Whether an entry of the record names the document (hash and stored size).
    pub fn names_document(&self, doc: &crate::blob::BlobRef) -> bool {
        self.documents.contains_key(doc)
    }

    /// Every document the record's entries reference (hash and stored size): what a
    /// replica holding the record should hold, since each came with an entry it may see.
    /// Sorted.
    pub fn documents(&self) -> impl Iterator<Item = &crate::blob::BlobRef> + '_ {
        self.documents.keys()
    }

    /// Entries in the order they were applied (a topological order).
    pub fn entries(&self) -> impl Iterator<Item = Verified> + '_ {
        self.nodes
            .values()
            .filter_map(|n| self.entry_of(&n.h.id, n))
    }

    /// The entries applied after the first `n`, in order (a cheap way to see what is new).
    pub fn entries_since(&self, n: usize) -> impl Iterator<Item = Verified> + '_ {
        self.nodes
            .since(n)
            .iter()
            .filter_map(|n| self.entry_of(&n.h.id, n))
    }

    /// Every grant held, in no particular order.
    pub fn grants(&self) -> impl Iterator<Item = &GrantInfo> + '_ {
        self.grants.values()
    }

    /// A grant by id.
    pub fn grant(&self, id: &EntryId) -> Option<&GrantInfo> {
        self.grants.get(id)
    }

    /// Where a held grant stands at time `now` (`None` if `id` is not a grant held here).
    /// The first that applies, in this order: void (the grant entry is void), revoked (a
    /// revocation of it is in effect), parent revoked (one of a grant above it is), expired
    /// (after the `until` of a grant in its chain), not yet valid (before a `not_before`
    /// in its chain), active.
    pub fn grant_status(&self, id: &EntryId, now: Timestamp) -> Option<GrantStatus> {
        let g = self.grants.get(id)?;
        if self.status(id) != Some(&Status::Valid) {
            return Some(GrantStatus::Void);
        }
        let revoked = |l: &GrantInfo| {
            l.revoked_by
                .iter()
                .any(|r| self.status(r) == Some(&Status::Valid))
        };
        if revoked(g) {
            return Some(GrantStatus::Revoked);
        }
        let chain = self.chain(g.id);
        if chain.iter().skip(1).any(|l| revoked(l)) {
            return Some(GrantStatus::ParentRevoked);
        }
        if chain.iter().any(|l| l.grant.until.is_some_and(|u| now > u)) {
            return Some(GrantStatus::Expired);
        }
        if chain
            .iter()
            .any(|l| l.grant.not_before.is_some_and(|nb| now < nb))
        {
            return Some(GrantStatus::NotYetValid);
        }
        Some(GrantStatus::Active)
    }

    /// Fork proofs seen.
    pub fn forks(&self) -> &[ForkProof] {
        &self.forks
    }

    /// Versions (amends and deletes) recorded against a root create.
    pub(crate) fn versions_of(&self, root: &EntryId) -> &[EntryId] {
        self.nodes.note_partial();
        self.versions.get(root).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Annotations of an entry.
    pub fn annotations_of(&self, id: &EntryId) -> &[EntryId] {
        self.nodes.note_partial();
        self.annotations.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Whether `x` is in the causal past of `of` (or is `of`).
    pub fn in_past(&self, x: &EntryId, of: &EntryId) -> bool {
        match (self.nodes.get(x), self.nodes.get(of)) {
            (Some(xn), Some(on)) => on.has_in_past(xn),
            _ => false,
        }
    }

    /// Whether `x` is in the causal past of a clock being computed.
    fn in_clock(x: &Node, clock: &[u64]) -> bool {
        clock.get(x.chain as usize).is_some_and(|s| *s >= x.h.seq)
    }

    /// The latest profile `actor` published at or before `at` (the patient's genesis counts).
    pub fn profile(&self, actor: &ActorId, at: Option<Timestamp>) -> Option<&Profile> {
        let chain = self.chains.get(&(*actor, None))?;
        chain.iter().rev().find_map(|id| {
            let n = self.nodes.get(id)?;
            if at.is_some_and(|t| n.h.time > t) || n.void {
                return None;
            }
            match n.payload()? {
                Payload::Profile(p) | Payload::Genesis { profile: p } => Some(p),
                _ => None,
            }
        })
    }

    /// The latest profile `actor` published in the causal past `past` (whatever its status:
    /// a profile is its author's own statement, and the answer must not depend on when a
    /// revocation arrives).
    fn profile_in_past(
        &self,
        actor: &ActorId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Option<&Profile> {
        let chain = self.chains.get(&(*actor, None))?;
        chain.iter().rev().filter(|id| past(id)).find_map(|id| {
            match self.nodes.get(id)?.payload()? {
                Payload::Profile(p) | Payload::Genesis { profile: p } => Some(p),
                _ => None,
            }
        })
    }

    /// The latest profile `actor` published, whatever its status (see
    /// [`Record::profile`] for the latest valid one at a time).
    pub fn latest_profile(&self, actor: &ActorId) -> Option<&Profile> {
        self.profile_in_past(actor, &|_| true)
    }

    /// Builds the next entry for `author`: sequence, backlink, parents (current heads) and
    /// time (never earlier than the causal past) are filled in. The caller signs it.
    pub fn next_entry(
        &self,
        author: &ActorId,
        payload: Payload,
        auth: Option<EntryId>,
        now: Timestamp,
        device: Option<String>,
    ) -> Entry {
        let stream = self.category_of_payload(&payload);
        let key = (*author, stream.clone());
        let chain = self.chains.get(&key);
        let backlink = chain.and_then(|c| c.last().copied());
        let seq = self.skipped_of(&key) + chain.map_or(0, Vec::len) as u64 + 1;
        let mut parents: BTreeSet<EntryId> = self.heads.get(&None).cloned().unwrap_or_default();
        if stream.is_some() {
            parents.extend(self.heads.get(&stream).into_iter().flatten().copied());
        }
        let mut parents: Vec<EntryId> = parents.into_iter().collect();
        if parents.len() > MAX_PARENTS {
            parents.sort_by_key(|p| std::cmp::Reverse(self.depth_of(p)));
            parents.truncate(MAX_PARENTS);
            if let Some(b) = backlink {
                if !parents.iter().any(|p| self.in_past(&b, p)) {
                    parents.pop();
                    parents.push(b);
                }
            }
            parents.sort();
        }
        let mut time = now;
        for p in parents.iter().chain(backlink.iter()) {
            if let Some(n) = self.nodes.get(p) {
                time = time.max(n.h.time);
            }
        }
        Entry {
            v: crate::entry::FORMAT_VERSION,
            record: self.id,
            author: *author,
            seq,
            backlink,
            parents,
            time,
            device,
            auth,
            payload,
        }
    }

    /// Validates an entry against this record without changing anything.
    pub fn check(&self, v: &Verified) -> Result<(), Rejection> {
        if self.nodes.contains_key(&v.id()) {
            return Ok(());
        }
        self.check_inner(v, true).map(|_| ())
    }

    /// Validates and adds an entry. On error nothing changes (a fork is remembered as
    /// proof, see [`Record::forks`]).
    pub fn apply(&mut self, v: Verified) -> Result<Applied, Rejection> {
        self.apply_inner(v, true)
    }

    /// Adds an entry that was validated before (re-reading a store, replaying a prefix):
    /// every rule except the body schema is checked again.
    pub fn apply_known(&mut self, v: Verified) -> Result<Applied, Rejection> {
        self.apply_inner(v, false)
    }

    fn apply_inner(&mut self, v: Verified, check_body: bool) -> Result<Applied, Rejection> {
        if self.nodes.contains_key(&v.id()) {
            return Ok(Applied::Duplicate);
        }
        let checked = match self.check_inner(&v, check_body) {
            Ok(c) => c,
            Err(Rejection::Fork {
                author,
                seq,
                existing,
            }) => {
                if !self.forks.iter().any(|f| f.conflicting.id() == v.id()) {
                    self.forks.push(ForkProof {
                        existing,
                        conflicting: v,
                    });
                }
                return Err(Rejection::Fork {
                    author,
                    seq,
                    existing,
                });
            }
            Err(e) => return Err(e),
        };
        Ok(self.insert(v, checked))
    }

    fn check_inner(&self, v: &Verified, check_body: bool) -> Result<Checked, Rejection> {
        if !self.nodes.is_part() {
            return self.check_rules(v, check_body);
        }
        // An admission part decides only what it holds everything for: any lookup of
        // something it does not hold makes the answer the whole record's to give.
        if !Record::admitted_in_part(&v.entry().payload) {
            return Err(Rejection::NeedsWholeRecord);
        }
        let before = self.nodes.misses();
        let checked = self.check_rules(v, check_body);
        if self.nodes.misses() != before {
            return Err(Rejection::NeedsWholeRecord);
        }
        checked
    }

    /// Every rule of the gate, in order.
    fn check_rules(&self, v: &Verified, check_body: bool) -> Result<Checked, Rejection> {
        let e = v.entry();
        self.check_place(e)?;
        let stream = self.check_stream(e)?;
        let chain_key = (e.author, stream.clone());
        self.check_author_chain(e, &chain_key)?;
        let (clock, depth) = self.causal_clock(e, &chain_key)?;
        let past = |x: &EntryId| {
            self.nodes
                .get(x)
                .is_some_and(|n| Record::in_clock(n, &clock))
        };
        let (category, root) = self.check_subject(e, check_body, &past)?;
        self.check_definition(e, &past)?;
        let acting = self.check_actor(e, &past)?;
        self.check_sealing(e, category.as_ref(), &past)?;
        let owner_step = self.check_care(e, &acting, category.as_ref(), &past)?;
        self.check_thread(
            &e.payload,
            &acting.principal,
            category.as_ref(),
            &past,
            false,
        )?;
        self.check_questionnaire(&e.payload, category.as_ref(), &past, false)?;
        if let Payload::Annotate { target, text } = &e.payload {
            self.check_release(target, text, &acting.principal, &past)?;
        }
        let (mut status, proxies) = if e.auth.is_none() {
            self.check_patient(e, &acting, owner_step, &past)?;
            (Status::Valid, Vec::new())
        } else {
            self.check_grantee(e, &acting, category.as_ref(), owner_step, &past)?
        };
        if status == Status::Valid {
            // Nothing held has a new entry in its causal past: no retirement keeps it.
            let rotates = match &e.payload {
                Payload::RotateKey { old, .. } => Some(*old),
                _ => None,
            };
            status = self.key_status(&v.id(), &e.author, rotates, &acting, &|_| false, Held::All);
        }
        Ok(Checked {
            clock,
            depth,
            stream,
            category,
            root,
            status,
            proxies,
            acting,
        })
    }

    /// Checks the entry belongs here: this record, genesis first and only once, parents held.
    fn check_place(&self, e: &Entry) -> Result<(), Rejection> {
        if e.record != self.id {
            return Err(Rejection::WrongRecord(e.record));
        }
        let genesis = matches!(e.payload, Payload::Genesis { .. });
        if self.nodes.is_empty() && !genesis {
            return Err(Rejection::NoGenesis);
        }
        if genesis && !self.nodes.is_empty() {
            return Err(Rejection::GenesisExists);
        }
        // Parents must be held.
        let missing: Vec<EntryId> = e
            .parents
            .iter()
            .filter(|p| !self.nodes.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            return Err(Rejection::MissingParents(missing));
        }
        Ok(())
    }

    /// The entry's stream, refusing an unheld target or a parent in another stream.
    fn check_stream(&self, e: &Entry) -> Result<Stream, Rejection> {
        // The stream: targets must be held to know it.
        if let Some(t) = e.payload.target() {
            if !self.nodes.contains_key(&t) {
                return Err(Rejection::Target {
                    id: t,
                    why: "not held",
                });
            }
        }
        let stream = self.category_of_payload(&e.payload);
        for p in &e.parents {
            let ps = self.node_stream(&self.nodes[p]);
            if ps.is_some() && *ps != stream {
                return Err(Rejection::CrossStream(*p));
            }
        }
        Ok(stream)
    }

    /// Checks the entry's sequence and backlink against its author's chain in the stream.
    fn check_author_chain(
        &self,
        e: &Entry,
        chain_key: &(ActorId, Stream),
    ) -> Result<(), Rejection> {
        // Author chain: the previous entry must be held and in the causal past.
        let chain = self.chains.get(chain_key);
        let skipped = self.skipped_of(chain_key);
        let held = skipped + chain.map_or(0, Vec::len) as u64;
        if e.seq <= held {
            let existing = if e.seq - 1 < skipped {
                // Not held in this admission part: undecided.
                self.nodes.note_partial();
                None
            } else {
                chain.map(|c| c[(e.seq - 1 - skipped) as usize])
            };
            if let Some(existing) = existing {
                return Err(Rejection::Fork {
                    author: e.author,
                    seq: e.seq,
                    existing,
                });
            }
        }
        if e.seq > held + 1 {
            return Err(Rejection::Backlink(e.seq - 1));
        }
        if let (Some(b), Some(c)) = (e.backlink, chain) {
            if c.last() != Some(&b) {
                return Err(Rejection::Backlink(e.seq - 1));
            }
        }
        Ok(())
    }

    /// The entry's vector clock and depth, refusing time travel and a backlink not in the past.
    fn causal_clock(
        &self,
        e: &Entry,
        chain_key: &(ActorId, Stream),
    ) -> Result<(Vec<u64>, u32), Rejection> {
        // Clock: the pointwise maximum of the parents', then this entry.
        let width = self.author_index.len() + 1;
        let mut clock = vec![0u64; width];
        let mut depth = 0u32;
        for p in &e.parents {
            let n = &self.nodes[p];
            for (i, c) in clock.iter_mut().enumerate().take(n.width()) {
                *c = (*c).max(n.clock(i));
            }
            depth = depth.max(n.depth + 1);
            if n.h.time > e.time {
                return Err(Rejection::TimeTravel);
            }
        }
        let author_ix = self
            .author_index
            .get(chain_key)
            .copied()
            .unwrap_or(width - 1);
        if clock[author_ix] != e.seq - 1 {
            return Err(Rejection::Backlink(e.seq - 1));
        }
        clock[author_ix] = e.seq;
        if let Some(b) = e.backlink.and_then(|b| self.nodes.get(&b)) {
            if b.h.time > e.time {
                return Err(Rejection::TimeTravel);
            }
        }
        Ok((clock, depth))
    }

    /// What the entry is about (its category and item root), checking its target and body.
    fn check_subject(
        &self,
        e: &Entry,
        check_body: bool,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(Option<Category>, Option<EntryId>), Rejection> {
        Ok(match &e.payload {
            Payload::Create { category, body } => {
                if check_body {
                    self.validate_body_in(category, body, past)?;
                }
                (Some(category.clone()), None)
            }
            Payload::Amend { target, body } => {
                let t = self.data_target(target, past, false)?;
                let cat = self.node_category(t).cloned();
                if let (true, Some(c)) = (check_body, &cat) {
                    self.validate_body_in(c, body, past)?;
                }
                (cat, self.nodes.id_at(t.root))
            }
            Payload::Delete { target, .. }
            | Payload::SealedAmend { target, .. }
            | Payload::SealedDelete { target, .. } => {
                // A sealed body's schema is checked by the readers that open it.
                let t = self.data_target(target, past, false)?;
                (self.node_category(t).cloned(), self.nodes.id_at(t.root))
            }
            Payload::Annotate { target, .. } | Payload::SealedAnnotate { target, .. } => {
                let t = self.data_target(target, past, true)?;
                (self.node_category(t).cloned(), None)
            }
            Payload::SealedCreate { category, .. } | Payload::KeyWrap { category, .. } => {
                (Some(category.clone()), None)
            }
            Payload::Revoke { category, .. } | Payload::RemoveDevice { category, .. } => {
                (category.clone(), None)
            }
            Payload::RotationPart { category, .. } => (Some(category.clone()), None),
            _ => (None, None),
        })
    }

    fn data_target(
        &self,
        target: &EntryId,
        past: &dyn Fn(&EntryId) -> bool,
        annotation: bool,
    ) -> Result<&Node, Rejection> {
        let t = self.nodes.get(target).ok_or(Rejection::Target {
            id: *target,
            why: "not held",
        })?;
        if !past(target) {
            return Err(Rejection::Target {
                id: *target,
                why: "not in the entry's causal past",
            });
        }
        let p = &t.h;
        let ok = if p.is_create() || p.is_amend() {
            true
        } else {
            (p.is_delete() || p.is_annotate()) && annotation
        };
        if !ok {
            return Err(Rejection::Target {
                id: *target,
                why: if annotation {
                    "only record data and annotations can be annotated"
                } else {
                    "only a create or amend can be amended or deleted"
                },
            });
        }
        Ok(t)
    }

    /// The care team's rules ([`crate::care`]) for a plain create or amend of a task or an
    /// appointment: a task's lifecycle (status order, the party writing each step, an amend
    /// building on the task's latest version in the author's past) and an appointment's
    /// reminders (none already past at the entry's own time). Returns whether the entry is
    /// a task owner's step, which the owner may write on an item someone else created.
    /// Sealed content is not read here: a sealed task's lifecycle fields are signed in clear
    /// beside it ([`crate::seal::Sealed::task`]), and checked as a plain task's are (see
    /// `docs/care-team.md`, "Sealed tasks").
    fn check_care(
        &self,
        e: &Entry,
        acting: &Acting,
        category: Option<&Category>,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<bool, Rejection> {
        let Some(c @ (Category::Tasks | Category::Appointments)) = category else {
            return Ok(false);
        };
        let Some(body) = Record::task_view(&e.payload, category) else {
            return Ok(false);
        };
        let body = &body;
        let before = match &e.payload {
            Payload::Amend { target, .. } | Payload::SealedAmend { target, .. } => {
                // As signed (a sealed task's clear part), the same on every replica.
                let Some(n) = self.nodes.get(target) else {
                    return Ok(false);
                };
                let signed = match n.payload() {
                    Some(p) => std::borrow::Cow::Borrowed(p),
                    None => match self.entry_of(target, n) {
                        Some(v) => std::borrow::Cow::Owned(v.entry().payload.clone()),
                        None => return Ok(false),
                    },
                };
                match Record::task_view(&signed, category) {
                    Some(b) => Some((*target, b)),
                    // A sealed appointment: the sealing rules refuse a plain amend of it.
                    None => return Ok(false),
                }
            }
            _ => None,
        };
        if *c == Category::Appointments {
            crate::care::check_appointment_write(body, before.as_ref().map(|b| &b.1), e.time)?;
            return Ok(false);
        }
        let Some((target, before)) = before else {
            crate::care::check_task_create(body, &acting.principal)?;
            return Ok(false);
        };
        // The version amended must be the latest the author had seen.
        let root = self
            .nodes
            .get(&target)
            .map_or(target, |t| self.nodes.id_at(t.root).unwrap_or(target));
        for v in self.versions_of(&root) {
            if *v != target && past(v) {
                let supersedes = self
                    .get(v)
                    .is_some_and(|x| x.entry().payload.target() == Some(target));
                if supersedes {
                    return Err(crate::care::TaskError::Stale { target, newer: *v }.into());
                }
            }
        }
        // A sealed step is checked on the lifecycle fields alone (its clear part), against
        // the same fields of the version amended (which may be an old plain one).
        let before = if e.payload.sealed().is_some() {
            crate::care::TaskClear::of_body(&before)?.to_body()
        } else {
            before
        };
        let party = crate::care::check_task_step(&before, body, &acting.principal)?;
        Ok(party == crate::care::Party::Owner && self.item_author(&target) != acting.principal)
    }

    /// What the gate reads of a create or amend in `category`: a plain body, or a sealed
    /// task's lifecycle fields signed in clear beside its content (`None` for other sealed
    /// content, which the gate cannot read).
    fn task_view(p: &Payload, category: Option<&Category>) -> Option<crate::value::Value> {
        match p {
            Payload::Create { body, .. } | Payload::Amend { body, .. } => Some(body.clone()),
            Payload::SealedCreate { content, .. } | Payload::SealedAmend { content, .. }
                if category == Some(&Category::Tasks) =>
            {
                content.task.as_ref().map(crate::care::TaskClear::to_body)
            }
            _ => None,
        }
    }

    /// The questionnaire rules ([`crate::care::questionnaire`]) for a plain create or amend
    /// in `questionnaires`: a response naming a published questionnaire
    /// (`questionnaire-entry`) is checked against it (answers, score, band). The definition
    /// is in the same stream and must be in the writer's causal past (`past`). At the gate
    /// (`writer` false) a sealed definition is taken as written, whether or not this replica
    /// could open it, so every replica decides alike (a relay cannot check sealed content;
    /// see `docs/care-team.md`); the writer (`writer` true) reads it opened. A task assigning a questionnaire is in
    /// another stream, which a replica may hold without this one: its writer checks that it
    /// names a published questionnaire, the gate cannot.
    pub(crate) fn check_questionnaire(
        &self,
        payload: &Payload,
        category: Option<&Category>,
        past: &dyn Fn(&EntryId) -> bool,
        writer: bool,
    ) -> Result<(), Rejection> {
        use crate::care::questionnaire::{self as q, QuestionnaireError as QE};
        let (
            Some(Category::Questionnaires),
            Payload::Create { body, .. } | Payload::Amend { body, .. },
        ) = (category, payload)
        else {
            return Ok(());
        };
        let field = q::DEFINITION_ENTRY;
        let Some(named) = body.get(field) else {
            return Ok(());
        };
        let text = named.as_text().unwrap_or_default();
        let clipped = crate::schema::clip_quote(text);
        let id: EntryId = text
            .parse()
            .map_err(|_| QE::UnknownQuestionnaire(clipped.clone()))?;
        if !past(&id) {
            return Err(QE::UnknownQuestionnaire(clipped).into());
        }
        if !writer && self.is_openable_sealed(&id) {
            return Ok(());
        }
        let Some(p) = self.payload(&id) else {
            return Err(QE::UnknownQuestionnaire(clipped).into());
        };
        let def_body = match &*p {
            Payload::Create { body, .. } | Payload::Amend { body, .. } => body,
            // Sealed, and not readable here: taken as written.
            Payload::SealedCreate { .. } | Payload::SealedAmend { .. } => return Ok(()),
            _ => return Err(QE::NotAQuestionnaire(clipped).into()),
        };
        if self.category_of_payload(&p) != Some(Category::Questionnaires) {
            return Err(QE::NotAQuestionnaire(clipped).into());
        }
        let def = match q::definition_of(def_body) {
            Some(Ok(d)) => d,
            _ => return Err(QE::NotAQuestionnaire(clipped).into()),
        };
        q::check_response(&def, body)?;
        Ok(())
    }

    /// Checks an annotation that claims to be a result's release ([`crate::care::release`]):
    /// by someone other than the patient (`principal` is the person the author acts for),
    /// of a result's create or amend, not already released in the causal past.
    pub(crate) fn check_release(
        &self,
        target: &EntryId,
        text: &str,
        principal: &ActorId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), Rejection> {
        use crate::care::release::{self, ReleaseError};
        if !release::is_release(text) {
            return Ok(());
        }
        if text != release::RELEASE_MARK && release::release_note(text).is_none() {
            return Err(ReleaseError::Malformed.into());
        }
        if *principal == self.id {
            return Err(ReleaseError::ByPatient.into());
        }
        let is_result = self.nodes.get(target).is_some_and(|t| {
            (t.h.is_create() || t.h.is_amend())
                && self
                    .node_category(t)
                    .is_some_and(release::is_result_category)
        });
        if !is_result {
            return Err(ReleaseError::NotAResult(*target).into());
        }
        if let Some(earlier) = self.release_of_in(target, past) {
            return Err(ReleaseError::AlreadyReleased {
                target: *target,
                earlier,
            }
            .into());
        }
        Ok(())
    }

    /// A release of version `target` (read here: plain, or sealed and opened) for which
    /// `past` holds, if any.
    fn release_of_in(&self, target: &EntryId, past: &dyn Fn(&EntryId) -> bool) -> Option<EntryId> {
        self.annotations_of(target).iter().copied().find(|a| {
            past(a)
                && matches!(self.payload(a).as_deref(),
                    Some(Payload::Annotate { text, .. }) if crate::care::release::is_release(text))
        })
    }

    /// The releases of version `target` held and readable here (plain, or sealed and
    /// opened), oldest first; a viewer's node shows only those it [`Record::can_see`].
    pub fn releases_of(&self, target: &EntryId) -> Vec<EntryId> {
        self.annotations_of(target)
            .iter()
            .copied()
            .filter(|a| {
                matches!(self.payload(a).as_deref(),
                    Some(Payload::Annotate { text, .. }) if crate::care::release::is_release(text))
            })
            .collect()
    }

    /// Checks an entry written as the patient (by the current patient key or a patient's
    /// device; [`Record::check_actor`] decided which).
    fn check_patient(
        &self,
        e: &Entry,
        acting: &Acting,
        owner_step: bool,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), Rejection> {
        let device = acting.is_device();
        match &e.payload {
            Payload::Amend { .. } | Payload::SealedAmend { .. } if owner_step => {}
            Payload::Amend { target, .. }
            | Payload::Delete { target, .. }
            | Payload::SealedAmend { target, .. }
            | Payload::SealedDelete { target, .. }
                if self.item_author(target) != self.id =>
            {
                return Err(AccessError::NotAuthorOrProxy(*target).into());
            }
            Payload::Grant(g) if self.is_patient_in(&g.grantee, past) => {
                return Err(AccessError::GrantToPatient.into());
            }
            Payload::Revoke { grant, .. } if !self.grants.contains_key(grant) => {
                return Err(Rejection::Target {
                    id: *grant,
                    why: "not a grant in this record",
                });
            }
            Payload::AddDevice { device: d, .. } => {
                if device {
                    return Err(AccessError::DeviceMayNot("add devices").into());
                }
                self.check_add_device(d, &self.id, past)?;
            }
            Payload::RemoveDevice { device: d, .. } => {
                if device {
                    return Err(AccessError::DeviceMayNot("remove devices").into());
                }
                self.check_remove_device(d, &self.id, past)?;
            }
            Payload::SetGuardians { guardians, .. } => {
                if device {
                    return Err(AccessError::DeviceMayNot("name guardians").into());
                }
                if let Some(g) = guardians.iter().find(|g| self.is_patient_in(g, past)) {
                    return Err(AccessError::GuardianIsPatient(*g).into());
                }
            }
            Payload::AddMember { member, .. } => self.check_add_member(member, past)?,
            Payload::RemoveMember { member, .. } => self.check_remove_member(member, past)?,
            Payload::RotationPart { rotation, .. } => {
                if device {
                    return Err(AccessError::DeviceMayNot("write a rotation's part").into());
                }
                let is_rotation = self
                    .get(rotation)
                    .is_some_and(|r| matches!(r.entry().payload, Payload::RotateKey { .. }));
                if !is_rotation {
                    return Err(Rejection::Target {
                        id: *rotation,
                        why: "not a key rotation",
                    });
                }
                if !past(rotation) {
                    return Err(Rejection::Target {
                        id: *rotation,
                        why: "not in the entry's causal past",
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The person the item a held create or amend belongs to: whom the author of the
    /// create at the root of its versions acted for (the record id for the patient,
    /// whichever of the patient's keys or devices wrote it). An item stays its original
    /// author's through every version, whoever (a proxy, another of the person's devices)
    /// wrote the one amended or deleted.
    fn item_author(&self, version: &EntryId) -> ActorId {
        let n = &self.nodes[version];
        let root = if n.root == NONE {
            n
        } else {
            self.nodes.at(n.root)
        };
        self.principal_of(root)
    }

    /// The chain of grants from `leaf` up to the patient (leaf first).
    pub(crate) fn chain(&self, leaf: EntryId) -> Vec<&GrantInfo> {
        let mut out = Vec::new();
        let mut cur = Some(leaf);
        while let Some(id) = cur {
            match self.grants.get(&id) {
                Some(g) if out.len() < 64 => {
                    out.push(g);
                    cur = g.parent;
                }
                _ => break,
            }
        }
        out
    }

    /// Checks a grantee's entry against the grant it names, at its causal position.
    fn check_grantee(
        &self,
        e: &Entry,
        acting: &Acting,
        category: Option<&Category>,
        owner_step: bool,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(Status, Vec<EntryId>), Rejection> {
        let info = self.named_grant(e, &acting.principal, past)?;
        let person = acting.principal;
        let mut status = self.grant_chain_status(e, info.id, past)?;
        // A member of an organisation acts under its grant narrowed by their role.
        let role_grant = self
            .acting_role(acting)
            .map(|role| orgs::narrowed(&info.grant, &role));
        let g = role_grant.as_ref().unwrap_or(&info.grant);
        if let Some(req) = &g.requires {
            // A profile entry may bring the attestation that meets the requirement.
            // A device is checked by its owner's attestations.
            let attestations = match &e.payload {
                Payload::Profile(p) if e.author == person => p.attestations.as_slice(),
                _ => self
                    .profile_in_past(&person, past)
                    .map_or(&[][..], |p| p.attestations.as_slice()),
            };
            if !req.met_by(&person, attestations, e.time, &|_| false) {
                return Err(AccessError::Unattested {
                    grant: info.id,
                    requirement: req.to_string(),
                }
                .into());
            }
        }
        let mut proxies = Vec::new();
        match &e.payload {
            Payload::Genesis { .. } => return Err(Rejection::GenesisExists),
            Payload::Create { category, .. } | Payload::SealedCreate { category, .. } => {
                need(g, "write", Level::Write, category)?
            }
            Payload::Amend { .. } | Payload::SealedAmend { .. } if owner_step => {
                // A task's owner steps the task they must act on (`crate::care`).
                if let Some(c) = category {
                    need(g, "amend", Level::Write, c)?;
                }
            }
            Payload::Amend { target, .. }
            | Payload::Delete { target, .. }
            | Payload::SealedAmend { target, .. }
            | Payload::SealedDelete { target, .. } => {
                proxies = self.check_change(e, &person, g, target, category, past, &mut status)?;
            }
            Payload::KeyWrap {
                category,
                opens,
                thread,
                ..
            } => {
                // Opening an epoch is a writer's act; giving keys, a reader's. A thread's
                // epoch only narrows who reads what is sealed under it: whoever may write
                // anything in the thread (a read receipt, at least) may open one.
                if *opens && thread.is_some() {
                    need(g, "open a thread's key epoch", Level::Annotate, category)?
                } else if *opens {
                    need(g, "open a key epoch", Level::Write, category)?
                } else {
                    need(g, "give keys", Level::View, category)?
                }
            }
            Payload::Annotate { .. } | Payload::SealedAnnotate { .. } => {
                if let Some(c) = category {
                    need(g, "annotate", Level::Annotate, c)?;
                }
            }
            Payload::Grant(new) => {
                if self.is_patient_in(&new.grantee, past) {
                    return Err(AccessError::GrantToPatient.into());
                }
                new.narrows(g).map_err(AccessError::from)?;
            }
            Payload::Revoke { grant, .. } => self.check_revoke(&person, g, grant, past)?,
            Payload::Profile(_) => {}
            Payload::MoveHome { .. } => return Err(AccessError::PatientOnly.into()),
            Payload::AddDevice { device, .. } => {
                if acting.is_device() {
                    return Err(AccessError::DeviceMayNot("add devices").into());
                }
                self.check_add_device(device, &person, past)?;
            }
            Payload::RemoveDevice {
                device, category, ..
            } => {
                if acting.is_device() {
                    return Err(AccessError::DeviceMayNot("remove devices").into());
                }
                self.check_remove_device(device, &person, past)?;
                if let Some(c) = category {
                    if !g.scope.covers(c) {
                        return Err(AccessError::Scope(c.clone()).into());
                    }
                }
            }
            Payload::SetGuardians { .. } => {
                return Err(AccessError::PatientKeyOnly("name guardians").into())
            }
            Payload::RotateKey { .. } => {
                return Err(AccessError::PatientKeyOnly("rotate the patient key").into())
            }
            Payload::RotationPart { .. } => {
                return Err(AccessError::PatientKeyOnly("write a rotation's part").into())
            }
            Payload::AddMember { .. } | Payload::RemoveMember { .. } => {
                return Err(crate::org::OrgError::NotAdministratorHere.into())
            }
            // The proof was checked with the actor ([`Record::check_join`]).
            Payload::JoinOrg { .. } => {}
            // A grantee defines an extension's schema only with write on that extension.
            Payload::DefineSchema(d) => need(g, "define the schema of", Level::Write, &d.category)?,
        }
        Ok((status, proxies))
    }

    /// The grant a grantee's entry names, held, to the person its author acts for and in
    /// the entry's causal past.
    fn named_grant(
        &self,
        e: &Entry,
        person: &ActorId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<&GrantInfo, Rejection> {
        let auth = e.auth.ok_or(AccessError::NoGrant)?;
        let info = match self.grants.get(&auth) {
            Some(g) => g,
            None if self.nodes.contains_key(&auth) => {
                return Err(AccessError::NotAGrant(auth).into())
            }
            None => return Err(AccessError::GrantNotFound(auth).into()),
        };
        if info.grant.grantee != *person {
            return Err(AccessError::NotGrantee(auth).into());
        }
        if !past(&auth) {
            return Err(AccessError::GrantNotInPast(auth).into());
        }
        Ok(info)
    }

    /// Checks every grant in the chain up from `auth` is in period and unrevoked in the
    /// entry's past; the entry's status (void if a revocation is held but unseen).
    fn grant_chain_status(
        &self,
        e: &Entry,
        auth: EntryId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<Status, Rejection> {
        let mut status = Status::Valid;
        for link in self.chain(auth) {
            // A grant in the chain may be void (made concurrently with a revocation above
            // it). That revocation is in this same chain, so the loop below refuses the
            // entry if its author had seen it and keeps it void otherwise, exactly as
            // `recompute` does when the revocation arrives after the entry: the outcome
            // does not depend on arrival order.
            if !link.grant.in_period(e.time) {
                return Err(AccessError::OutOfPeriod(link.id).into());
            }
            for r in &link.revoked_by {
                if past(r) {
                    return Err(AccessError::Revoked {
                        grant: link.id,
                        revocation: *r,
                    }
                    .into());
                }
                // Held but not seen by the author: kept, without effect.
                if status == Status::Valid {
                    status = Status::Void { revocation: *r };
                }
            }
        }
        Ok(status)
    }

    /// Checks a grantee's amend or delete of `target`: level, scope and, for another
    /// author's item, the proxy grants it is made under (returned; `status` updated).
    #[allow(clippy::too_many_arguments)]
    fn check_change(
        &self,
        e: &Entry,
        person: &ActorId,
        g: &Grant,
        target: &EntryId,
        category: Option<&Category>,
        past: &dyn Fn(&EntryId) -> bool,
        status: &mut Status,
    ) -> Result<Vec<EntryId>, Rejection> {
        let (action, level) = if e.payload.is_amend() {
            ("amend", Level::Write)
        } else {
            ("delete", Level::Delete)
        };
        if let Some(c) = category {
            need(g, action, level, c)?;
        }
        let mut proxies = Vec::new();
        let original = self.item_author(target);
        if original != *person {
            proxies = self.proxy_grants(person, &original, category, e.time, past);
            if proxies.is_empty() {
                return Err(AccessError::NotAuthorOrProxy(*target).into());
            }
            // A proxy grant revoked concurrently (held, not in the past) leaves
            // the entry kept but void, as for the grant it is written under.
            if *status == Status::Valid {
                *status = self.proxy_status(&proxies, |_| false, Held::All);
            }
        }
        Ok(proxies)
    }

    /// Checks a grantee's revocation: a held grant in its past, below a grant it issued
    /// with the delegate right.
    fn check_revoke(
        &self,
        person: &ActorId,
        g: &Grant,
        grant: &EntryId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), Rejection> {
        let target = self.grants.get(grant).ok_or(Rejection::Target {
            id: *grant,
            why: "not a grant in this record",
        })?;
        if !past(grant) {
            return Err(Rejection::Target {
                id: *grant,
                why: "not in the entry's causal past",
            });
        }
        if !g.delegate || !self.chain(target.id).iter().any(|l| l.issuer == *person) {
            return Err(AccessError::NotIssuer(*grant).into());
        }
        Ok(())
    }

    /// The grants that make `p` a proxy of `a` for `category` at a causal position: grants
    /// with the delegate right that `a` issued to `p`, covering the category, in the
    /// position's causal past, whose chains are in their validity period and revoked by
    /// nothing in that past. Only the causal past decides (never what else is held), so
    /// the answer does not depend on arrival order; a revocation held but not in the past
    /// makes the entry void instead ([`Record::proxy_status`]).
    fn proxy_grants(
        &self,
        p: &ActorId,
        a: &ActorId,
        category: Option<&Category>,
        time: Timestamp,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Vec<EntryId> {
        let mut out: Vec<EntryId> = self
            .grants
            .values()
            .filter(|g| {
                g.issuer == *a
                    && g.grant.grantee == *p
                    && g.grant.delegate
                    && category.is_none_or(|c| g.grant.scope.covers(c))
                    && past(&g.id)
                    && self
                        .chain(g.id)
                        .iter()
                        .all(|l| l.grant.in_period(time) && !l.revoked_by.iter().any(past))
            })
            .map(|g| g.id)
            .collect();
        out.sort();
        out
    }

    /// Whether an entry made as a proxy under `proxies` is in effect: valid if, for one of
    /// them, every revocation in its chain is `kept` (the entry is in that revocation's
    /// causal past); void otherwise.
    fn proxy_status(
        &self,
        proxies: &[EntryId],
        kept: impl Fn(&[EntryId]) -> bool,
        held: Held<'_>,
    ) -> Status {
        let mut first = None;
        for p in proxies {
            let mut ok = true;
            for link in self.chain(*p) {
                let revoked_by = held.narrow(&link.revoked_by);
                if let Some(r) = revoked_by.first() {
                    if !kept(&revoked_by) {
                        first.get_or_insert(*r);
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                return Status::Valid;
            }
        }
        first.map_or(Status::Valid, |revocation| Status::Void { revocation })
    }

    fn insert(&mut self, v: Verified, c: Checked) -> Applied {
        let id = v.id();
        // Shared, not copied: the entry stays readable here while the node holds it.
        let held = v.clone();
        let e = held.entry();
        let ix = self.nodes.len() as Ix;
        let key = (e.author, c.stream.clone());
        let next = self.author_index.len();
        let chain = *self.author_index.entry(key.clone()).or_insert(next);
        let mut clock = c.clock;
        clock.truncate(self.author_index.len().max(chain + 1));
        let prev = e.backlink.and_then(|b| self.nodes.get(&b));
        let base = nodes::share_clock(clock, chain as u32, prev);
        self.chains.entry(key).or_default().push(id);
        // Only heads of the entry's own stream are superseded: an administrative parent of
        // a category entry stays a head of the administrative stream.
        let heads = self.heads.entry(c.stream.clone()).or_default();
        for p in &e.parents {
            heads.remove(p);
        }
        heads.insert(id);
        if let Some(a) = e.auth {
            self.by_grant.entry(a).or_default().push(ix);
        }
        for p in &c.proxies {
            self.by_proxy.entry(*p).or_default().push(ix);
        }
        let root = if e.payload.is_create() {
            Some(id)
        } else {
            c.root
        };
        if let Some(r) = root.filter(|_| e.payload.is_amend() || e.payload.is_delete()) {
            self.versions.entry(r).or_default().push(id);
        }
        if let (true, Some(target)) = (e.payload.is_annotate(), e.payload.target()) {
            self.annotations.entry(target).or_default().push(id);
        }
        let mut voided = Vec::new();
        if let Payload::Grant(g) = &e.payload {
            if let Some(parent) = e.auth {
                self.sub_grants.entry(parent).or_default().push(id);
            }
            self.grants.insert(
                id,
                GrantInfo {
                    id,
                    issuer: c.acting.principal,
                    signer: e.author,
                    parent: e.auth,
                    grant: g.clone(),
                    time: e.time,
                    revoked_by: Vec::new(),
                },
            );
        }
        let keys_changed = self.index_keys(id, e, &c.acting);
        self.index_definition(id, e);
        self.index_membership(id, e);
        let stream = self.streams.intern(&c.stream) as u16;
        let category = match &c.category {
            Some(cat) => self.streams.intern(&Some(cat.clone())) as u16,
            None => NO_CATEGORY,
        };
        let void = c.status != Status::Valid;
        if void {
            self.voids.insert(id, c.status.clone());
        }
        let proxied = !c.proxies.is_empty();
        if proxied {
            self.proxies.insert(id, c.proxies);
        }
        let device = c.acting.is_device();
        if device {
            self.vias.insert(id, c.acting.via.clone());
        }
        let documents = match (&e.payload, &c.category) {
            (Payload::SealedCreate { content, .. } | Payload::SealedAmend { content, .. }, _) => {
                content.blobs.clone()
            }
            (Payload::Create { body, .. } | Payload::Amend { body, .. }, Some(cat)) => {
                crate::blob::refs_in_body(cat, body)
            }
            _ => Vec::new(),
        };
        for doc in documents {
            self.documents.entry(doc).or_default().push(id);
        }
        let node = Node {
            h: Header {
                id,
                seq: e.seq,
                time: e.time,
                author: self.actors.intern(&e.author),
                auth: self.nodes.ix_or_none(e.auth.as_ref()),
                epoch: match e.payload.sealed() {
                    Some(sealed) => self.epoch_ids.intern(&sealed.epoch),
                    None => NONE,
                },
                kind: Kind::of(&e.payload),
            },
            e: None,
            base,
            chain: chain as u32,
            depth: c.depth,
            root: match root {
                Some(r) if r == id => ix,
                r => self.nodes.ix_or_none(r.as_ref()),
            },
            principal: self.actors.intern(&c.acting.principal),
            rotation: self.nodes.ix_or_none(c.acting.rotation.as_ref()),
            stream,
            category,
            void,
            proxied,
            device,
        };
        let category = c.category;
        let lean = self.source.is_some() && Record::lean_drops(&node);
        let pushed = self.nodes.push(Node { e: Some(v), ..node });
        debug_assert_eq!(pushed, ix);
        self.index_sealing(id, e, category.as_ref());
        if lean {
            match &mut self.holding {
                Some(held) => held.push(id),
                None => {
                    if let Some(n) = self.nodes.get_mut(&id) {
                        n.e = None;
                    }
                }
            }
        }
        if let Payload::Revoke { grant, .. } = &e.payload {
            if let Some(info) = self.grants.get_mut(grant) {
                info.revoked_by.push(id);
            }
            voided = self.recompute(*grant);
        }
        // A retirement (device removal, key rotation or its part) changes the status of
        // the retired key's entries, and, through rotations and device additions, of the
        // entries that depend on them; a revocation may void a grantee's device addition.
        if keys_changed || (voided.iter().any(|v| self.is_device_add(v))) {
            for id in self.recompute_keys() {
                if !voided.contains(&id) {
                    voided.push(id);
                }
            }
        }
        Applied::Added {
            status: c.status,
            voided,
        }
    }

    /// Whether a held entry is in effect given the revocations, device removals and key
    /// rotations held: for every one that concerns it, the entry must be in the causal
    /// past of its part in the entry's own stream.
    pub(crate) fn compute_status(&self, n: &Node) -> Status {
        self.compute_status_in(n, Held::All)
    }

    /// An entry's status judged by a causal past alone: what every replica holding that
    /// past decides alike, whatever else it holds. The gate uses it where a verdict rests
    /// on whether something is void (an entry voided by two different entries records only
    /// one of them, and a replica may hold only the other).
    pub(crate) fn status_in(&self, id: &EntryId, past: &dyn Fn(&EntryId) -> bool) -> Status {
        self.nodes.get(id).map_or(Status::Valid, |n| {
            self.compute_status_in(n, Held::Past(past))
        })
    }

    /// An entry's status as decided by `held`.
    pub(crate) fn status_held(&self, id: &EntryId, held: Held<'_>) -> Option<Status> {
        match held {
            Held::All => self.status(id).cloned(),
            Held::Past(past) => self
                .nodes
                .get(id)
                .map(|n| self.compute_status_in(n, Held::Past(past))),
        }
    }

    fn compute_status_in(&self, n: &Node, held: Held<'_>) -> Status {
        let kept = |parts: &[EntryId]| {
            parts.iter().any(|r| {
                self.nodes
                    .get(r)
                    .is_some_and(|rn| rn.stream == n.stream && rn.has_in_past(n))
            })
        };
        match self.revocation_status(n, &kept, held) {
            Status::Valid => {
                let rotates = match n.e.as_ref().map(|v| &v.entry().payload) {
                    Some(Payload::RotateKey { old, .. }) => Some(*old),
                    _ => None,
                };
                let acting = self.acting_of(n);
                self.key_status(&n.h.id, &self.author_of(n), rotates, &acting, &kept, held)
            }
            void => void,
        }
    }

    /// Whether an entry under a grant chain is in effect given the revocations `held`: for
    /// every revoked link, the entry must be in the causal past of that revocation's entry
    /// in the entry's own stream.
    fn revocation_status(
        &self,
        n: &Node,
        kept: &dyn Fn(&[EntryId]) -> bool,
        held: Held<'_>,
    ) -> Status {
        let Some(auth) = self.nodes.id_at(n.h.auth) else {
            return Status::Valid;
        };
        for link in self.chain(auth) {
            let revoked_by = held.narrow(&link.revoked_by);
            let Some(first) = revoked_by.first() else {
                continue;
            };
            if !kept(&revoked_by) {
                return Status::Void { revocation: *first };
            }
        }
        // An amend or delete made as another author's proxy also depends on a proxy grant.
        let proxies = self.proxies_of(n);
        if proxies.is_empty() {
            Status::Valid
        } else {
            self.proxy_status(proxies, kept, held)
        }
    }

    /// Recomputes the status of every held entry that depends on `grant` (directly or
    /// through grants delegated from it). Returns those that became void.
    fn recompute(&mut self, grant: EntryId) -> Vec<EntryId> {
        let mut grants = vec![grant];
        let mut seen = HashSet::new();
        let mut done = HashSet::new();
        let mut changes = Vec::new();
        while let Some(g) = grants.pop() {
            if !seen.insert(g) {
                continue;
            }
            grants.extend(self.sub_grants.get(&g).into_iter().flatten().copied());
            let dependents = self.by_grant.get(&g).into_iter().flatten();
            for ix in dependents.chain(self.by_proxy.get(&g).into_iter().flatten()) {
                if !done.insert(*ix) {
                    continue;
                }
                let n = self.nodes.at(*ix);
                let status = self.compute_status(n);
                if status != *self.status_of(n) {
                    changes.push((n.h.id, status));
                }
            }
        }
        let mut voided = Vec::new();
        for (id, status) in changes {
            if status != Status::Valid {
                voided.push(id);
            }
            self.set_status(&id, status);
        }
        voided
    }

    /// The record as it stood at author time `t` (every entry with time ≤ `t`).
    pub fn at_time(&self, t: Timestamp) -> Record {
        self.subset(|n| n.h.time <= t)
    }

    /// The record as it stood at a causal position (the past of the given heads).
    pub fn at_heads(&self, heads: &[EntryId]) -> Record {
        let heads: Vec<&Node> = heads.iter().filter_map(|h| self.nodes.get(h)).collect();
        self.subset(|n| heads.iter().any(|h| h.has_in_past(n)))
    }
}

/// Checks grant `g` covers category `c` at `level` or above, for `action`.
fn need(g: &Grant, action: &'static str, level: Level, c: &Category) -> Result<(), AccessError> {
    if !g.scope.covers(c) {
        return Err(AccessError::Scope(c.clone()));
    }
    if g.level < level {
        return Err(AccessError::Level {
            action,
            category: c.clone(),
            needed: level,
            held: g.level,
        });
    }
    Ok(())
}

impl Record {
    /// Builds, signs and checks the next entry by `key`'s actor, without applying it (the
    /// caller makes it durable first, then calls [`Record::apply`]).
    pub fn prepare(
        &self,
        key: &crate::keys::Keypair,
        payload: Payload,
        auth: Option<EntryId>,
        now: Timestamp,
        device: Option<String>,
    ) -> Result<Verified, Rejection> {
        let entry = self.next_entry(&key.actor(), payload, auth, now, device);
        crate::entry::check_structure(&entry)?;
        let v = Verified::trusted(entry.sign(key));
        self.check(&v)?;
        Ok(v)
    }

    /// Grants held by `actor` that are in effect now, best first (highest level, newest).
    pub fn grants_of(&self, actor: &ActorId) -> Vec<EntryId> {
        let mut out: Vec<&GrantInfo> = self
            .grants
            .values()
            .filter(|g| g.grant.grantee == *actor && self.status(&g.id) == Some(&Status::Valid))
            .filter(|g| self.chain(g.id).iter().all(|l| l.revoked_by.is_empty()))
            .collect();
        out.sort_by_key(|g| std::cmp::Reverse((g.grant.level, g.time, g.id)));
        out.into_iter().map(|g| g.id).collect()
    }

    /// Prepares everything one action writes, in order: a single entry, except for a
    /// revocation, which is a revoke entry in each category stream of the grant's scope
    /// that holds entries, then one in the administrative stream (see the module docs).
    /// The entries are checked in sequence; apply them in the order returned.
    pub fn prepare_all(
        &self,
        key: &crate::keys::Keypair,
        payload: Payload,
        now: Timestamp,
        device: Option<String>,
    ) -> Result<Vec<Verified>, Rejection> {
        let (grant, reason) = match payload {
            Payload::Revoke { grant, reason, .. } => (grant, reason),
            Payload::RemoveDevice {
                device: d, reason, ..
            } => return self.prepare_removal(key, d, reason, now, device),
            Payload::RotateKey { .. } => return self.prepare_rotation(key, payload, now, device),
            Payload::JoinOrg { proof } => {
                return Ok(vec![self.prepare_join(key, proof, now, device)?])
            }
            _ => return Ok(vec![self.prepare_as(key, payload, now, device)?]),
        };
        let scope = match self.grants.get(&grant) {
            Some(g) => g.grant.scope.clone(),
            None => {
                return Err(Rejection::Target {
                    id: grant,
                    why: "not a grant in this record",
                })
            }
        };
        let mut trial = self.clone();
        let mut out = Vec::new();
        let streams: Vec<Stream> = self
            .streams()
            .into_iter()
            .filter(|s| s.as_ref().is_some_and(|c| scope.covers(c)))
            .chain(std::iter::once(None))
            .collect();
        for category in streams {
            let v = trial.prepare_as(
                key,
                Payload::Revoke {
                    grant,
                    category,
                    reason: reason.clone(),
                },
                now,
                device.clone(),
            )?;
            trial.apply(v.clone())?;
            out.push(v);
        }
        Ok(out)
    }

    /// Prepares an entry by `key`'s actor, choosing the grant that authorises it: the
    /// patient needs none; a grantee's grants are tried best first, and if none
    /// authorises it the first one's refusal is returned.
    pub fn prepare_as(
        &self,
        key: &crate::keys::Keypair,
        payload: Payload,
        now: Timestamp,
        device: Option<String>,
    ) -> Result<Verified, Rejection> {
        let actor = key.actor();
        if self.is_patient(&actor) {
            return self.prepare(key, payload, None, now, device);
        }
        let mut first_err = None;
        let mut grants = self.grants_of(&actor);
        for owner in self.owners_of(&actor) {
            grants.extend(self.grants_of(&owner));
        }
        if grants.is_empty() {
            // No grant: the gate says why (a retired patient key, a removed device, a
            // rotation's new key, or no grant at all).
            return self.prepare(key, payload, None, now, device);
        }
        for g in grants {
            match self.prepare(key, payload.clone(), Some(g), now, device.clone()) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or(Rejection::Access(AccessError::NoGrant)))
    }
}
