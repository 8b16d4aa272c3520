//! Folding a record: who may see what, the current state, and an item's full history.
//!
//! Folds are pure functions of the set of entries held (never of the order they arrived
//! in). State at a past time or causal position is the fold of [`Record::at_time`] or
//! [`Record::at_heads`].

use serde::Serialize;

use crate::access::{Level, Requirement, Scope};
use crate::category::Category;
use crate::entry::{Payload, Profile, Timestamp};
use crate::ids::{ActorId, EntryId};
use crate::record::{ContentState, Node, Record, Status};
use crate::trust::attestation::SignedAttestation;
use crate::value::Value;

/// One grant through which a viewer sees part of the record.
#[derive(Debug, Clone)]
struct Lens {
    scope: Scope,
    level: Level,
    audit: bool,
    until: Option<Timestamp>,
    /// Whether a grant in the chain is revoked.
    revoked: bool,
    /// The revocation entries of the chain: in each stream, only the causal past of the
    /// revocation's entry in that stream stays visible.
    cutoffs: Vec<EntryId>,
    /// The parts of the viewer's removal as a device or member of the grantee, if removed:
    /// in each stream, only their causal past stays visible too (both cuts apply).
    removal: Vec<EntryId>,
}

/// What one actor may see of one record, at one moment.
#[derive(Debug, Clone)]
pub struct Viewer {
    actor: ActorId,
    patient: bool,
    /// The people the actor sees as: itself, the people it is a device of, the
    /// organisations it acts for (who it may be among a thread's participants as).
    people: Vec<ActorId>,
    lenses: Vec<Lens>,
    /// Grants that would open something but whose identity requirement is not met now.
    unattested: Vec<(EntryId, Requirement)>,
}

impl Viewer {
    /// The actor.
    pub fn actor(&self) -> ActorId {
        self.actor
    }

    /// Whether this is the patient (the current patient key or a patient's device).
    pub fn is_patient(&self) -> bool {
        self.patient
    }

    /// The people the viewer reads as: itself, the people it is a device of, the
    /// organisations it acts for (the patient's keys: the record id is not among them).
    pub fn people(&self) -> &[ActorId] {
        &self.people
    }

    /// Whether the viewer has any access at all.
    pub fn has_access(&self) -> bool {
        self.patient || !self.lenses.is_empty()
    }

    /// Grants of this viewer that open nothing because their identity requirement is not
    /// met (no qualifying attestation in the grantee's latest profile, valid now and not
    /// known revoked), with what they require.
    pub fn unattested(&self) -> &[(EntryId, Requirement)] {
        &self.unattested
    }

    /// Whether the viewer may read the audit trail.
    pub fn may_audit(&self) -> bool {
        self.patient || self.lenses.iter().any(|l| l.audit && !l.revoked)
    }

    /// Whether the viewer sees every entry of category `c`, whoever wrote it and
    /// whenever: the patient, or a grant covering `c` with no end, no revocation and no
    /// removal cut. Never so for `messages` (a thread is seen only by its participants).
    /// Such a viewer's view of `c` is the patient's, so what is counted for the patient
    /// holds for them.
    pub fn sees_all_of(&self, c: &Category) -> bool {
        self.patient
            || (*c != Category::Messages
                && self
                    .lenses
                    .iter()
                    .any(|l| !l.revoked && l.until.is_none() && l.scope.covers(c)))
    }

    /// The highest level held on a category, now (revoked grants give none).
    pub fn level_on(&self, c: &Category) -> Option<Level> {
        if self.patient {
            return Some(Level::Delete);
        }
        self.lenses
            .iter()
            .filter(|l| !l.revoked && l.scope.covers(c))
            .map(|l| l.level)
            .max()
    }
}

impl Record {
    /// What `actor` may see at time `now`.
    pub fn viewer(&self, actor: &ActorId, now: Timestamp) -> Viewer {
        self.viewer_checked(actor, now, &[], &|_| false)
    }

    /// The patient's view for `actor`, a new key recovering the record with guardians'
    /// approvals (presented with a sync proof), if they would let it rotate the patient key
    /// now ([`Record::check_recovery`]): it may then pull the whole record to write the
    /// rotation.
    pub fn recovery_viewer(
        &self,
        actor: &ActorId,
        recovery: &crate::recovery::Recovery,
    ) -> Result<Viewer, crate::record::Rejection> {
        self.check_recovery(
            actor,
            &recovery.old,
            &recovery.guardians,
            &recovery.approvals,
        )?;
        Ok(Viewer {
            actor: *actor,
            patient: true,
            people: vec![*actor],
            lenses: Vec::new(),
            unattested: Vec::new(),
        })
    }

    /// What `actor` may see at time `now`, treating the attestations `revoked` names as
    /// revoked (a node's own knowledge of its issuers' revocations): a grant that requires
    /// its grantee to be attested opens nothing without a qualifying attestation, in the
    /// actor's latest profile or among those `presented` (already verified to be about
    /// `actor`, e.g. with a sync request's proof).
    pub fn viewer_checked(
        &self,
        actor: &ActorId,
        now: Timestamp,
        presented: &[SignedAttestation],
        revoked: &dyn Fn(&SignedAttestation) -> bool,
    ) -> Viewer {
        self.viewer_with(actor, now, presented, revoked, None)
    }

    /// What a member of an organisation may see before they have joined the record (their
    /// first pull), on the strength of the organisation's signed membership entries they
    /// present with a sync request ([`crate::org::verify_membership`]): what the
    /// organisation's grants open, narrowed by their role — unless the organisation has
    /// removed them here. Without a valid proof, what [`Record::viewer_checked`] gives.
    pub fn member_viewer(
        &self,
        actor: &ActorId,
        proof: &[serde_bytes::ByteBuf],
        now: Timestamp,
        presented: &[SignedAttestation],
        revoked: &dyn Fn(&SignedAttestation) -> bool,
    ) -> Result<Viewer, crate::org::OrgError> {
        let Some(first) = proof.first() else {
            return Err(crate::org::OrgError::ProofSize);
        };
        let org = crate::entry::SignedEntry::decode(first)
            .map_err(|e| crate::org::OrgError::ProofEntry(e.to_string()))?
            .entry()
            .record;
        let (role, _) = crate::org::verify_membership(&org, actor, proof)?;
        if self.member_removed(actor, &org) {
            return Err(crate::org::OrgError::NotAMember(*actor));
        }
        Ok(self.viewer_with(actor, now, presented, revoked, Some((org, role))))
    }

    fn viewer_with(
        &self,
        actor: &ActorId,
        now: Timestamp,
        presented: &[SignedAttestation],
        revoked: &dyn Fn(&SignedAttestation) -> bool,
        member_of: Option<(ActorId, crate::org::Role)>,
    ) -> Viewer {
        // The current patient key and the patient's devices see as the patient; another
        // person's device sees through its owners' grants, attested as its owner; a member
        // of an organisation, through the organisation's grants narrowed by their role.
        let patient = self.is_patient(actor);
        let mut lenses = Vec::new();
        let mut unattested = Vec::new();
        let mut seen_as = vec![*actor];
        if !patient {
            let mut people = vec![*actor];
            people.extend(self.owners_of(actor));
            let mut roles: Vec<(ActorId, crate::org::Role)> = people
                .iter()
                .filter(|p| *p != actor)
                .filter_map(|p| self.member_role(actor, p).map(|r| (*p, r)))
                .collect();
            if let Some((org, role)) = member_of {
                if !people.contains(&org) {
                    people.push(org);
                    roles.push((org, role));
                }
            }
            // Those who removed `actor` as their device or member: through their grants it
            // sees only up to the removal, as a revoked grantee does up to the revocation,
            // so that its replica learns of the removal (and refuses its own later writes).
            let departed: Vec<(ActorId, Vec<EntryId>)> = self
                .removals_of(actor)
                .into_iter()
                .filter(|(p, _)| !people.contains(p) && *p != self.id())
                .collect();
            for (p, _) in &departed {
                if let Some(r) = self.member_role(actor, p) {
                    roles.push((*p, r));
                }
            }
            for g in self.grants() {
                let person = g.grant.grantee;
                let removal = departed.iter().find(|(p, _)| *p == person).map(|(_, r)| r);
                if !people.contains(&person) && removal.is_none() {
                    continue;
                }
                let role = roles.iter().find(|(p, _)| *p == person).map(|(_, r)| r);
                if let Some(req) = &g.grant.requires {
                    let mut attestations: Vec<SignedAttestation> = self
                        .latest_profile(&person)
                        .map(|p| p.attestations.clone())
                        .unwrap_or_default();
                    if person == *actor {
                        attestations.extend(presented.iter().cloned());
                    }
                    if !req.met_by(&person, &attestations, now, revoked) {
                        unattested.push((g.id, req.clone()));
                        continue;
                    }
                }
                let void = match self.status(&g.id) {
                    Some(Status::Valid) => false,
                    Some(Status::Void { .. }) => true,
                    None => continue,
                };
                let chain = self.chain(g.id);
                if chain.len() < 1 + usize::from(g.parent.is_some()) {
                    continue;
                }
                if chain
                    .iter()
                    .any(|l| l.grant.not_before.is_some_and(|nb| now < nb))
                {
                    continue;
                }
                let until = chain.iter().filter_map(|l| l.grant.until).min();
                let cutoffs: Vec<EntryId> = chain
                    .iter()
                    .flat_map(|l| l.revoked_by.iter().copied())
                    .filter(|r| self.status(r) == Some(&Status::Valid))
                    .collect();
                let removal: Vec<EntryId> = removal.cloned().unwrap_or_default();
                if void {
                    // A grant that never took effect (delegated concurrently with the
                    // revocation of a grant above it) opens no category and no right: only
                    // the administrative stream up to the revocation's cut, so that the
                    // grantee's replica can learn why its grant is void.
                    lenses.push(Lens {
                        scope: Scope::Only(Default::default()),
                        level: Level::View,
                        audit: false,
                        until,
                        revoked: true,
                        cutoffs,
                        removal: removal.clone(),
                    });
                    continue;
                }
                let (scope, level) = match role {
                    Some(r) => {
                        let n = crate::record::narrowed(&g.grant, r);
                        (n.scope, n.level)
                    }
                    None => (g.grant.scope.clone(), g.grant.level),
                };
                lenses.push(Lens {
                    scope,
                    level,
                    audit: g.grant.audit,
                    until,
                    revoked: !cutoffs.is_empty() || !removal.is_empty(),
                    cutoffs,
                    removal,
                });
            }
            seen_as = people;
        }
        Viewer {
            actor: *actor,
            patient,
            people: seen_as,
            lenses,
            unattested,
        }
    }

    /// Whether a lens admits an entry by the revocation cut: an entry in a stream is
    /// visible through a revoked grant only if it is in the causal past of the revocation's
    /// entry in that stream.
    fn before_cut(&self, l: &Lens, id: &EntryId) -> bool {
        let before = |cut: &[EntryId]| {
            cut.iter()
                .any(|r| self.stream_of(r) == self.stream_of(id) && self.in_past(id, r))
        };
        // A revoked lens with no cut in effect shows nothing; with both a revocation and a
        // removal, only what is before both.
        !l.revoked
            || ((!l.cutoffs.is_empty() || !l.removal.is_empty())
                && (l.cutoffs.is_empty() || before(&l.cutoffs))
                && (l.removal.is_empty() || before(&l.removal)))
    }

    fn lens_sees(&self, l: &Lens, n: &Node, c: &Category) -> bool {
        l.scope.covers(c) && l.until.is_none_or(|u| n.h.time <= u) && self.before_cut(l, &n.h.id)
    }

    /// Whether the viewer may see an entry.
    pub fn can_see(&self, v: &Viewer, id: &EntryId) -> bool {
        self.node(id).is_some_and(|n| self.can_see_node(v, n))
    }

    /// Whether the viewer may see an entry (from what the record keeps of it: the entry
    /// is not read).
    pub(crate) fn can_see_node(&self, v: &Viewer, n: &Node) -> bool {
        if v.patient || self.author_of(n) == v.actor {
            return true;
        }
        if v.lenses.is_empty() {
            return false;
        }
        match self.node_stream(n) {
            // The administrative stream (genesis, profiles, grants, revocations) is held
            // by every replica: any grantee sees it, up to a revocation's cut.
            None => v.lenses.iter().any(|l| self.before_cut(l, &n.h.id)),
            Some(_) => match self.node_category(n) {
                Some(c) => {
                    v.lenses.iter().any(|l| self.lens_sees(l, n, c))
                        && (*c != Category::Messages || self.takes_part(v, n))
                }
                None => false,
            },
        }
    }

    /// Whether sync sends the entry `id` to the viewer: what they may see
    /// ([`Record::can_see`]) and, in `messages`, an entry of a thread they do not take part
    /// in whose content is sealed. Only the thread's readers hold its key, so a
    /// non-participant receives ciphertext, as from a blind host, which cannot tell a
    /// thread's messages from others. Without it, the entries an author writes after a
    /// thread message would never reach a non-participant served by a node that opens the
    /// thread: their chain would have a gap. An entry whose thread shows as signed (plain
    /// content) never leaves for a non-participant.
    pub fn can_send(&self, v: &Viewer, id: &EntryId) -> bool {
        self.node(id).is_some_and(|n| {
            self.can_see_node(v, n)
                || (self.node_category(n) == Some(&Category::Messages)
                    && self.thread_of_in(&n.h.id, false).is_none()
                    && self.sees_messages_but_for_threads(v, n))
        })
    }

    /// Whether the viewer's lenses see `n` (a `messages` entry) but for the thread rule.
    fn sees_messages_but_for_threads(&self, v: &Viewer, n: &Node) -> bool {
        v.patient
            || self.author_of(n) == v.actor
            || v.lenses
                .iter()
                .any(|l| self.lens_sees(l, n, &Category::Messages))
    }

    /// The read rule of conversations ([`crate::care::thread`]): an entry of a thread is
    /// seen only by the thread's participants, and only when its author takes part (an
    /// entry the gate could not check, sealed, claiming a thread its author is not in, is
    /// shown to no one else). An entry outside any thread passes.
    fn takes_part(&self, v: &Viewer, n: &Node) -> bool {
        let Some(t) = self.thread_of(&n.h.id) else {
            return true;
        };
        let Some(parts) = self.thread_participants(&t) else {
            return false;
        };
        v.people.iter().any(|p| parts.contains(p)) && parts.contains(&self.principal_of(n))
    }

    /// Whether an entry is sealed under a conversation's own key (`docs/care-team.md`,
    /// "Conversations") that is not held here, for a viewer other than the patient: the
    /// conversation of others, not history the viewer lacks, so views and notifications
    /// leave it out (sync still carries it, as a blind host does: who takes part is
    /// sealed).
    pub fn others_conversation(&self, v: &Viewer, id: &EntryId) -> bool {
        !v.patient
            && self.content_state(id) == Some(crate::record::ContentState::Locked)
            && self
                .node(id)
                .and_then(|n| self.epoch_of(n))
                .is_some_and(|e| self.epoch_thread(&e).is_some())
    }

    /// Whether the viewer takes part in the thread started by `thread` (the patient
    /// takes part in every thread).
    pub fn in_thread(&self, v: &Viewer, thread: &EntryId) -> bool {
        v.patient
            || self
                .thread_participants(thread)
                .is_some_and(|parts| v.people.iter().any(|p| parts.contains(p)))
    }
}

/// The current version of one item of record data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    /// The create at the root of the item's versions (the item's stable id).
    pub id: EntryId,
    /// The version in effect.
    pub current: EntryId,
    /// Category.
    pub category: Category,
    /// The data of the version in effect.
    #[serde(serialize_with = "body_json")]
    pub body: Body,
    /// Who wrote the version in effect.
    pub author: ActorId,
    /// When the item was created.
    pub created: Timestamp,
    /// When the version in effect was written.
    pub updated: Timestamp,
    /// How many versions exist (1 = never amended).
    pub versions: usize,
    /// Whether concurrent versions exist (one won deterministically; see history).
    pub conflict: bool,
    /// Annotations on any version of the item.
    pub annotations: Vec<EntryId>,
    /// Why the version in effect is flagged: sealed content that, once opened, fails its
    /// category's rules (the body is shown as it decoded, or null). `None`: well-formed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

fn value_json<S: serde::Serializer>(v: &Value, s: S) -> Result<S::Ok, S::Error> {
    v.to_json().serialize(s)
}

fn body_json<S: serde::Serializer>(v: &Body, s: S) -> Result<S::Ok, S::Error> {
    if v.unreadable() {
        return Err(serde::ser::Error::custom(
            "an entry of the record could not be read from where it is stored",
        ));
    }
    v.to_json().serialize(s)
}

/// The data of an item's version, read as a [`Value`]: shared with the entry it is the
/// body of (or with what a sealed entry opened to), so a fold never copies it. In a lean
/// record the entry is read from the record's source (hash-checked against its id) only
/// when the body is first read, and kept from then on: a fold settles which version of
/// each item is shown from what the record keeps of every entry, and a reader that shows
/// one category, or one page, reads only those bodies.
///
/// A body whose entry cannot be read (the source reports and counts the failure, as for
/// any read of a lean record) reads as null, says so through [`Body::unreadable`], and
/// refuses to serialize: it is never shown as if the item had no data.
#[derive(Clone)]
pub struct Body(Shared);

#[derive(Clone)]
enum Shared {
    /// The body of this entry's create or amend.
    Entry(crate::entry::Verified),
    /// A value of its own.
    Value(std::sync::Arc<Value>),
    /// The body of a lean record's entry, read when first asked.
    Deferred(std::sync::Arc<Deferred>),
}

/// A lean record's entry, read from its source when first asked.
struct Deferred {
    source: std::sync::Arc<dyn crate::record::EntrySource>,
    id: EntryId,
    read: std::sync::OnceLock<Option<crate::entry::Verified>>,
}

impl Deferred {
    fn entry(&self) -> Option<&crate::entry::Verified> {
        self.read
            .get_or_init(|| {
                let v = self.source.load(&self.id)?;
                // A source handing back another entry is a broken source: never shown.
                (v.id() == self.id).then_some(v)
            })
            .as_ref()
    }
}

impl Body {
    /// The body of an entry's create or amend (null for any other entry).
    pub(crate) fn of_entry(v: crate::entry::Verified) -> Body {
        Body(Shared::Entry(v))
    }

    /// The body of entry `id`, read from `source` when first asked.
    pub(crate) fn deferred(
        source: std::sync::Arc<dyn crate::record::EntrySource>,
        id: EntryId,
    ) -> Body {
        Body(Shared::Deferred(std::sync::Arc::new(Deferred {
            source,
            id,
            read: std::sync::OnceLock::new(),
        })))
    }

    /// The value, as an owned copy.
    pub fn to_value(&self) -> Value {
        (**self).clone()
    }

    /// The entry the body is the data of, when it is a plain create or amend (read now, in
    /// a lean record, if not read yet): its device, signature and bytes without reading it
    /// again. `None` for content opened from a sealed entry, or an entry that could not be
    /// read.
    pub fn entry(&self) -> Option<&crate::entry::Verified> {
        match &self.0 {
            Shared::Entry(v) => Some(v),
            Shared::Deferred(d) => d.entry(),
            Shared::Value(_) => None,
        }
    }

    /// Whether the body's entry could not be read from the record's source (it then reads
    /// as null). Reads it if not read yet.
    pub fn unreadable(&self) -> bool {
        match &self.0 {
            Shared::Deferred(d) => d.entry().is_none(),
            _ => false,
        }
    }
}

fn body_value(e: &crate::entry::Verified) -> &Value {
    static NULL: Value = Value::Null;
    match &e.entry().payload {
        Payload::Create { body, .. } | Payload::Amend { body, .. } => body,
        _ => &NULL,
    }
}

impl std::ops::Deref for Body {
    type Target = Value;
    fn deref(&self) -> &Value {
        static NULL: Value = Value::Null;
        match &self.0 {
            Shared::Entry(v) => body_value(v),
            Shared::Value(v) => v,
            Shared::Deferred(d) => d.entry().map_or(&NULL, body_value),
        }
    }
}

impl From<Value> for Body {
    fn from(v: Value) -> Body {
        Body(Shared::Value(std::sync::Arc::new(v)))
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        **self == **other
    }
}

impl PartialEq<Value> for Body {
    fn eq(&self, other: &Value) -> bool {
        **self == *other
    }
}

impl PartialEq<Body> for Value {
    fn eq(&self, other: &Body) -> bool {
        *self == **other
    }
}

/// The record's state as a viewer sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct State {
    /// Current items, by category then creation time.
    pub items: Vec<Item>,
    /// Items whose version in effect is a logical delete (kept in history), oldest first.
    pub deleted: Vec<EntryId>,
    /// Items the viewer may see but whose version in effect is sealed under a key not
    /// held here (a relay, or a reader not yet given the key), oldest first.
    pub locked: Vec<EntryId>,
}

impl State {
    /// Items of one category.
    pub fn in_category<'a>(&'a self, c: &'a Category) -> impl Iterator<Item = &'a Item> + 'a {
        self.items.iter().filter(move |i| &i.category == c)
    }
}

/// The winning version among concurrent heads: latest author time, then greatest id.
fn winner(record: &Record, heads: &[EntryId]) -> Option<EntryId> {
    heads
        .iter()
        .max_by_key(|h| (record.time_of(h), **h))
        .copied()
}

/// Where one item stands for a viewer.
#[derive(Debug, Clone, PartialEq)]
pub enum ItemState {
    /// Current, with its data.
    Current(Box<Item>),
    /// Its version in effect is a logical delete.
    Deleted,
    /// Its version in effect is sealed under a key not held here.
    Locked,
}

/// Items a record holds before [`current`] folds them on several threads: below it one
/// thread is faster than starting others. (A lean record decodes each item's version in
/// effect from its bytes, a few microseconds each.)
pub const PARALLEL_FOLD_MIN: usize = 8_192;

/// Most threads [`current`] folds on.
pub const MAX_FOLD_THREADS: usize = 8;

/// The current state of the record as `viewer` sees it. A record of at least
/// [`PARALLEL_FOLD_MIN`] items is folded on the machine's cores (at most
/// [`MAX_FOLD_THREADS`]; one in WebAssembly); the state is the same whatever the number.
pub fn current(record: &Record, viewer: &Viewer) -> State {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    current_on(record, viewer, threads)
}

/// [`current`], folding on at most `threads` threads (1: on the caller's; always 1 in
/// WebAssembly, which has no threads).
pub fn current_on(record: &Record, viewer: &Viewer, threads: usize) -> State {
    let creates: Vec<&Node> = record.creates().collect();
    let threads = threads.clamp(1, MAX_FOLD_THREADS);
    #[cfg(target_arch = "wasm32")]
    let threads = {
        let _ = threads;
        1
    };
    let folded: Vec<Option<ItemState>> = if threads == 1 || creates.len() < PARALLEL_FOLD_MIN {
        creates
            .iter()
            .map(|n| fold_item(record, viewer, n))
            .collect()
    } else {
        let chunk = creates.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = creates
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|n| fold_item(record, viewer, n))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            parts
                .into_iter()
                .flat_map(|p| match p.join() {
                    Ok(v) => v,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    };
    let mut state = State::default();
    // Items by category rank, then creation time and id. Entries come in causal order,
    // which is nearly time order, so each category's list is nearly sorted already (the
    // stable sort finds the runs). Only each item's version in effect is read; the rest
    // is settled from what the record keeps of every entry.
    let mut by_category: Vec<Vec<(Timestamp, EntryId, Item)>> = Vec::new();
    let mut deleted = Vec::new();
    let mut locked = Vec::new();
    for (n, s) in creates.iter().zip(folded) {
        let Some(s) = s else {
            continue;
        };
        let key = (n.h.time, n.h.id);
        match s {
            ItemState::Current(item) => {
                let rank = cat_rank(&item.category);
                if by_category.len() <= rank {
                    by_category.resize_with(rank + 1, Vec::new);
                }
                by_category[rank].push((key.0, key.1, *item));
            }
            ItemState::Deleted => deleted.push(key),
            ItemState::Locked => locked.push(key),
        }
    }
    let mut items = Vec::with_capacity(by_category.iter().map(Vec::len).sum());
    for mut list in by_category {
        list.sort_by_key(|a| (a.0, a.1));
        items.extend(list.into_iter().map(|(_, _, item)| item));
    }
    deleted.sort();
    locked.sort();
    state.items = items;
    state.deleted = deleted.into_iter().map(|(_, id)| id).collect();
    state.locked = locked.into_iter().map(|(_, id)| id).collect();
    state
}

/// One item as `viewer` sees it now, by its id (the create at the root of its versions),
/// folding only that item's versions and annotations, not the whole record: the same as
/// the item's place in [`current`]. `None` if it is no item the viewer may see.
pub fn item(record: &Record, viewer: &Viewer, id: &EntryId) -> Option<ItemState> {
    fold_item(record, viewer, record.node(id)?)
}

fn cat_rank(c: &Category) -> usize {
    Category::BUILT_IN
        .iter()
        .position(|b| b == c)
        .unwrap_or(Category::BUILT_IN.len())
}

/// The fold of the item whose root create is `n` (`None`: not a create, or not valid or
/// visible to the viewer). Reads one entry: the version in effect.
fn fold_item(record: &Record, viewer: &Viewer, n: &Node) -> Option<ItemState> {
    let id = n.h.id;
    if !n.h.is_create() {
        return None;
    }
    let category = record.node_category(n)?;
    if record.status_of(n) != &Status::Valid || !record.can_see_node(viewer, n) {
        return None;
    }
    // The versions of this item in effect and visible. Most items were never amended:
    // they fold without building any list.
    let later = record.versions_of(&id);
    let (versions, heads_len, win) = if later.is_empty() {
        (vec![], 1, id)
    } else {
        let mut versions = vec![id];
        versions.extend(
            later
                .iter()
                .copied()
                .filter(|v| record.status(v) == Some(&Status::Valid) && record.can_see(viewer, v)),
        );
        // What each later version supersedes (a create supersedes nothing: not read).
        let superseded: std::collections::HashSet<EntryId> = versions[1..]
            .iter()
            .filter_map(|v| record.get(v).and_then(|e| e.entry().payload.target()))
            .collect();
        let heads: Vec<EntryId> = versions
            .iter()
            .filter(|v| !superseded.contains(v))
            .copied()
            .collect();
        let win = winner(record, &heads)?;
        (versions, heads.len(), win)
    };
    // What is shown is settled from what the record keeps of the version in effect; its
    // data is read only when the body is (`Body`).
    let wn = record.node(&win)?;
    let state = record.content_state(&win);
    let flag = match state {
        Some(ContentState::Locked) => {
            if record.others_conversation(viewer, &win) {
                return None;
            }
            return Some(if wn.h.is_delete() {
                ItemState::Deleted
            } else {
                ItemState::Locked
            });
        }
        Some(ContentState::Flagged(why)) => Some(why.to_owned()),
        _ => None,
    };
    let body = if state == Some(ContentState::Plain) {
        // Plain content: the kind in the node is the payload's.
        if wn.h.is_create() || wn.h.is_amend() {
            record.body_of(&win, wn)?
        } else if wn.h.is_delete() {
            return Some(ItemState::Deleted);
        } else {
            Body::from(Value::Null)
        }
    } else {
        match record.payload(&win).as_deref() {
            Some(Payload::Create { body, .. } | Payload::Amend { body, .. }) => {
                Body::from(body.clone())
            }
            Some(p) if p.is_delete() => return Some(ItemState::Deleted),
            // Flagged content that did not decode.
            _ => Body::from(Value::Null),
        }
    };
    let mut annotations: Vec<EntryId> = if versions.is_empty() {
        std::slice::from_ref(&id)
    } else {
        &versions[..]
    }
    .iter()
    .flat_map(|v| record.annotations_of(v).iter().copied())
    .filter(|a| record.status(a) == Some(&Status::Valid) && record.can_see(viewer, a))
    .collect();
    if annotations.len() > 1 {
        annotations.sort_by_key(|a| (record.time_of(a), *a));
    }
    Some(ItemState::Current(Box::new(Item {
        id,
        current: win,
        category: category.clone(),
        body,
        author: record.author_of(wn),
        created: n.h.time,
        updated: wn.h.time,
        versions: versions.len().max(1),
        conflict: heads_len > 1,
        annotations,
        flag,
    })))
}

/// Who wrote a version, as the record attests it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Provenance {
    /// The author's actor id.
    pub author: ActorId,
    /// The author's profile as published at the time (if any).
    pub profile: Option<Profile>,
    /// The device named on the entry.
    pub device: Option<String>,
    /// Author time.
    pub time: Timestamp,
    /// The grant the author wrote under (`None` for the patient).
    pub grant: Option<EntryId>,
}

/// One version (or annotation) in an item's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Version {
    /// The entry.
    pub id: EntryId,
    /// `create`, `amend`, `delete` or `annotate`.
    pub kind: &'static str,
    /// The entry it supersedes or annotates.
    pub target: Option<EntryId>,
    /// Data (create/amend), note (annotate), or reason (delete).
    #[serde(serialize_with = "value_json")]
    pub content: Value,
    /// Who, role, organisation, device, when.
    pub provenance: Provenance,
    /// Whether it is in effect (a void entry was written after a revocation).
    pub in_effect: bool,
    /// Whether this version is the one in effect now.
    pub current: bool,
    /// Sealed under a key not held here: `content` is null.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub locked: bool,
    /// Why the content is flagged (sealed content failing its category's rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

/// An item's complete history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    /// The item (its root create).
    pub item: EntryId,
    /// Category.
    pub category: Category,
    /// Every version and annotation, oldest first.
    pub versions: Vec<Version>,
}

/// Provenance of an entry.
pub fn provenance(record: &Record, id: &EntryId) -> Option<Provenance> {
    Some(provenance_of(record, &record.get(id)?))
}

/// Provenance of an entry already read.
fn provenance_of(record: &Record, v: &crate::entry::Verified) -> Provenance {
    let e = v.entry();
    Provenance {
        author: e.author,
        profile: record.profile(&e.author, Some(e.time)).cloned(),
        device: e.device.clone(),
        time: e.time,
        grant: e.auth,
    }
}

/// The full history of the item an entry belongs to (any version's id may be given).
pub fn history(record: &Record, viewer: &Viewer, id: &EntryId) -> Option<History> {
    history_in(record, viewer, None, id)
}

/// [`history`], given the viewer's [`current`] state of the record (so reading the
/// histories of many items folds the record once).
pub fn history_with(
    record: &Record,
    viewer: &Viewer,
    state: &State,
    id: &EntryId,
) -> Option<History> {
    history_in(record, viewer, Some(state), id)
}

fn history_in(
    record: &Record,
    viewer: &Viewer,
    state: Option<&State>,
    id: &EntryId,
) -> Option<History> {
    // The item's create: an annotation's target (read) back to a version, then the root
    // the record keeps for every version (nothing read).
    let mut at = *id;
    let mut root = None;
    for _ in 0..record.len() {
        let n = record.node(&at)?;
        if n.h.is_annotate() {
            at = record.get(&at)?.entry().payload.target()?;
            continue;
        }
        root = record.item_root_of(n);
        break;
    }
    let root = root?;
    let category = record.category_of(&root)?.clone();
    if !record.can_see(viewer, &root) {
        return None;
    }
    // The version in effect: from the state if the caller folded it, else from folding
    // this one item (the same as its place in the state), not the whole record.
    let in_effect = match state {
        Some(s) => s.items.iter().find(|i| i.id == root).map(|i| i.current),
        None => match item(record, viewer, &root) {
            Some(ItemState::Current(i)) => Some(i.current),
            _ => None,
        },
    };
    let mut ids = vec![root];
    ids.extend(record.versions_of(&root).iter().copied());
    let mut with_notes = ids.clone();
    for v in &ids {
        with_notes.extend(record.annotations_of(v).iter().copied());
    }
    let mut versions: Vec<Version> = with_notes
        .into_iter()
        .filter(|v| record.can_see(viewer, v))
        .filter_map(|v| {
            let held = record.get(&v)?;
            let e = held.entry();
            let state = record.content_state(&v);
            // Plain content is the entry's own (read once); sealed content as opened.
            let opened;
            let payload = if state == Some(ContentState::Plain) {
                &e.payload
            } else {
                opened = record.payload(&v)?;
                &*opened
            };
            let content = match payload {
                Payload::Create { body, .. } | Payload::Amend { body, .. } => body.clone(),
                Payload::Delete { reason, .. } => Value::Text(reason.clone()),
                Payload::Annotate { text, .. } => Value::Text(text.clone()),
                _ => Value::Null,
            };
            Some(Version {
                id: v,
                kind: e.payload.kind(),
                target: e.payload.target(),
                content,
                provenance: provenance_of(record, &held),
                in_effect: record.status(&v) == Some(&Status::Valid),
                current: in_effect == Some(v),
                locked: state == Some(ContentState::Locked),
                flag: match state {
                    Some(ContentState::Flagged(why)) => Some(why.to_owned()),
                    _ => None,
                },
            })
        })
        .collect();
    // Oldest first; written in the same millisecond, an entry after those in its past.
    versions.sort_by_key(|v| (v.provenance.time, record.causal_depth(&v.id), v.id));
    Some(History {
        item: root,
        category,
        versions,
    })
}
