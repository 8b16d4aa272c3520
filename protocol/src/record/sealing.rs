//! Sealed content: the gate's rules for it, who reads a stream, and opening it.
//!
//! ## Sealed content (blind hosting)
//! A category stream is *sealed* from the first `KeyWrap` that opens an epoch in it
//! (`opens: true`). From then on:
//!
//! - **Data must be sealed.** A plain create, amend, delete or annotation with an opening
//!   of its stream in its causal past is refused ([`SealingError::MustSeal`]); one written
//!   concurrently (not having seen the opening) is accepted, as every rule here is decided
//!   by the causal past alone.
//! - **Under an epoch its author had seen.** A sealed entry names its epoch
//!   ([`crate::seal::Sealed::epoch`]); that epoch's opening must be in its causal past, in
//!   the same stream.
//! - **Readable by readers only.** Every reader the epoch's key was wrapped for (by wraps
//!   in the entry's causal past) must still be a reader at the entry's position: nothing is
//!   sealed for someone who had lost read access by then. So a revoked grantee, a removed
//!   device or a retired patient key never holds the key of anything written after its
//!   retirement: the revocation (removal, rotation) is followed by a new epoch wrapped for
//!   the remaining readers ([`Record::prepare_sealed`] writes it in the same action).
//! - **Readers** of a stream at a causal position ([`Record::readers_in`]): the current
//!   patient key, the patient's devices, the guardians in effect, every grantee holding an
//!   unrevoked grant at `view` or above that covers the stream, and their devices. A relay
//!   (`Level::Relay`) is not a reader. An expired grant still counts (expiry writes
//!   nothing; the patient's next epoch leaves it out once revoked).
//! - **Key wraps.** An opening is written by the patient or a grantee who may write in the
//!   stream, and wraps the new key for exactly the readers at its position; more wraps of
//!   an epoch (a new grantee, device or guardian, or the history for a recovered key) are
//!   written by any reader, each for a reader, the opening in their causal past.
//!
//! The rules need only what a relay sees (kinds, categories, epochs and wrap recipients),
//! so a host that holds no key checks them all. Content is opened by readers
//! ([`Record::unlock`]), the first time it is read (so sync and loading pay nothing for
//! it): each opened entry's body is checked against its category's schema, and one that
//! fails is *flagged* with the reason ([`ContentState::Flagged`]), never silently shown or
//! dropped.

use std::collections::BTreeSet;

use super::HashMap;
use std::sync::{Arc, OnceLock};

use rand_core::{CryptoRng, RngCore};

use super::{Node, Record, Rejection, Status};
use crate::category::Category;
use crate::entry::{Entry, Payload, Timestamp, Verified, MAX_NOTE_TEXT, MAX_SHORT_TEXT};
use crate::ids::{ActorId, EntryId};
use crate::keys::Keypair;
use crate::seal::{
    self, BoxKey, BoxPublic, EpochId, EpochKey, Place, Sealed, ThreadEpoch, Wrapped,
};
use crate::value::Value;

/// Why sealed content or a key wrap is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealingError {
    /// Plain content in a stream whose sealing the author had seen.
    #[error("the {0} stream is sealed: its content must be sealed")]
    MustSeal(Category),
    /// The sealed entry's epoch is not opened in its causal past, or in another stream.
    #[error("epoch {0} is not opened in this stream in the entry's causal past")]
    UnknownEpoch(EpochId),
    /// The epoch's key was wrapped for someone who was no longer a reader at the entry.
    #[error("epoch {epoch} was given to {reader}, who no longer reads the stream here")]
    FormerReader {
        /// The epoch.
        epoch: EpochId,
        /// The former reader.
        reader: ActorId,
    },
    /// An opening of an epoch that is already open.
    #[error("epoch {0} is already open")]
    Reopened(EpochId),
    /// A wrap for someone who is not a reader of the stream.
    #[error("a key wrapped for {0}, who does not read this stream")]
    NotAReader(ActorId),
    /// An opening that leaves out a reader.
    #[error("a new epoch must be wrapped for every reader; {0} is missing")]
    MissingReader(ActorId),
    /// A reader key that is not a valid X25519 recipient.
    #[error("{0} cannot receive keys (not a valid key)")]
    BadReaderKey(ActorId),
    /// A sealed task's create or amend without its lifecycle fields in clear, or other
    /// sealed content carrying them ([`crate::seal::Sealed::task`]).
    #[error(
        "a sealed task's create or amend carries its lifecycle fields in clear, and nothing \
         else does ({0})"
    )]
    TaskClear(Category),
    /// Sealing needs an epoch key this writer does not hold.
    #[error("no key for the {0} stream's current epoch is held here")]
    NoKey(Category),
    /// Sealing or wrapping failed.
    #[error("sealing failed: {0}")]
    Seal(#[from] seal::SealError),
}

/// What is known about one epoch.
#[derive(Debug, Clone)]
pub(crate) struct EpochInfo {
    /// Its stream.
    pub(crate) category: Category,
    /// The key wraps for it, the opening first (in arrival order).
    pub(crate) wraps: Vec<EntryId>,
}

/// What a reader made of a sealed entry.
#[derive(Debug, Clone)]
enum Opened {
    /// Opened and well-formed: the plain payload it stands for (`None` in a lean record,
    /// which keeps only that it opens, and opens it again when asked).
    Ok(Option<Payload>),
    /// Opened, but its content fails the category's rules: shown flagged (`payload`, if
    /// it decoded at all), with why.
    Flagged(Option<Payload>, String),
}

/// How an entry's content stands for this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentState<'a> {
    /// Written in clear.
    Plain,
    /// Sealed, and opened here.
    Opened,
    /// Sealed, and no key for it is held here.
    Locked,
    /// Sealed and opened, but its content fails its category's rules (the reason).
    Flagged(&'a str),
}

/// The sealing indexes and this replica's keys, part of a [`Record`].
#[derive(Clone, Default)]
pub(crate) struct Sealing {
    pub(crate) epochs: HashMap<EpochId, EpochInfo>,
    /// Openings per stream.
    openings: HashMap<Category, Vec<EntryId>>,
    /// Entries that may end someone's reading: revocations, device removals, rotations,
    /// guardian changes.
    endings: Vec<EntryId>,
    /// Sealed entries per epoch.
    sealed: HashMap<EpochId, Vec<EntryId>>,
    /// Who this replica reads as.
    unlockers: Arc<Vec<(ActorId, Arc<BoxKey>)>>,
    /// Epoch keys unwrapped here.
    keys: HashMap<EpochId, EpochKey>,
    /// Sealed entries whose epoch key is held here: each is opened (decrypted, decoded and
    /// checked) the first time it is read, not as it arrives, so sync pays nothing for it.
    opened: HashMap<EntryId, OnceLock<Opened>>,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing")
            .field("epochs", &self.epochs.len())
            .field("keys", &self.keys.len())
            .field("opened", &self.opened.len())
            .finish_non_exhaustive()
    }
}

impl Sealing {
    /// The indexes a snapshot keeps: epochs, openings, endings and sealed entries (never
    /// keys: a restored record is unlocked again, [`Record::unlock`]).
    #[allow(clippy::type_complexity)]
    pub(crate) fn indexes(
        &self,
    ) -> (
        Vec<(EpochId, Category, Vec<EntryId>)>,
        Vec<(Category, Vec<EntryId>)>,
        Vec<EntryId>,
        Vec<(EpochId, Vec<EntryId>)>,
    ) {
        (
            self.epochs
                .iter()
                .map(|(e, i)| (*e, i.category.clone(), i.wraps.clone()))
                .collect(),
            self.openings
                .iter()
                .map(|(c, o)| (c.clone(), o.clone()))
                .collect(),
            self.endings.clone(),
            self.sealed.iter().map(|(e, s)| (*e, s.clone())).collect(),
        )
    }

    /// Indexes restored from a snapshot, with no reader and no key.
    pub(crate) fn from_indexes(
        epochs: Vec<(EpochId, Category, Vec<EntryId>)>,
        openings: Vec<(Category, Vec<EntryId>)>,
        endings: Vec<EntryId>,
        sealed: Vec<(EpochId, Vec<EntryId>)>,
    ) -> Sealing {
        Sealing {
            epochs: epochs
                .into_iter()
                .map(|(e, category, wraps)| (e, EpochInfo { category, wraps }))
                .collect(),
            openings: openings.into_iter().collect(),
            endings,
            sealed: sealed.into_iter().collect(),
            ..Sealing::default()
        }
    }

    /// The indexes of a causally closed subset of the record (the entries `has` holds):
    /// the same readers and keys, what each sealed entry opened to, and only the epochs,
    /// wraps and sealed entries in the subset.
    pub(crate) fn subset(&self, has: &dyn Fn(&EntryId) -> bool) -> Sealing {
        let ids =
            |v: &Vec<EntryId>| -> Vec<EntryId> { v.iter().copied().filter(|i| has(i)).collect() };
        let mut epochs = HashMap::default();
        for (e, info) in &self.epochs {
            if info.wraps.first().is_some_and(has) {
                epochs.insert(
                    *e,
                    EpochInfo {
                        category: info.category.clone(),
                        wraps: ids(&info.wraps),
                    },
                );
            }
        }
        let mut openings = HashMap::default();
        for (c, o) in &self.openings {
            let o = ids(o);
            if !o.is_empty() {
                openings.insert(c.clone(), o);
            }
        }
        let mut sealed = HashMap::default();
        for (e, list) in &self.sealed {
            let list = ids(list);
            if !list.is_empty() {
                sealed.insert(*e, list);
            }
        }
        Sealing {
            epochs,
            openings,
            endings: ids(&self.endings),
            sealed,
            unlockers: self.unlockers.clone(),
            keys: self.keys.clone(),
            opened: self
                .opened
                .iter()
                .filter(|(id, _)| has(id))
                .map(|(id, o)| (*id, o.clone()))
                .collect(),
        }
    }
}

/// What a writer wants sealed, for [`Record::prepare_sealed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SealPolicy {
    /// Seal data in streams not sealed yet (opening their first epoch). Streams already
    /// sealed are always sealed.
    pub seal_new_streams: bool,
    /// When granting, also give the grantee the keys of earlier epochs (the history),
    /// not only the current one.
    pub history: bool,
}

impl Record {
    // ---- the gate --------------------------------------------------------------------

    /// The sealing rules for one entry at its causal position (see the module docs).
    pub(crate) fn check_sealing(
        &self,
        e: &Entry,
        category: Option<&Category>,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), Rejection> {
        let p = &e.payload;
        match p {
            Payload::Create { .. }
            | Payload::Amend { .. }
            | Payload::Delete { .. }
            | Payload::Annotate { .. } => {
                if let Some(c) = category {
                    let opened = self.sealing.openings.get(c);
                    if opened.is_some_and(|o| o.iter().any(past)) {
                        return Err(SealingError::MustSeal(c.clone()).into());
                    }
                }
            }
            Payload::SealedCreate { content, .. }
            | Payload::SealedAmend { content, .. }
            | Payload::SealedDelete { content, .. }
            | Payload::SealedAnnotate { content, .. } => {
                let c = category.ok_or(SealingError::UnknownEpoch(content.epoch))?;
                let bodied = matches!(
                    p,
                    Payload::SealedCreate { .. } | Payload::SealedAmend { .. }
                );
                if (bodied && *c == Category::Tasks) != content.task.is_some() {
                    return Err(SealingError::TaskClear(c.clone()).into());
                }
                self.check_sealed_under(c, content.epoch, past)?;
            }
            Payload::KeyWrap {
                category: c,
                epoch,
                opens,
                wraps,
                thread,
            } => {
                let readers = self.readers_in(c, past);
                for w in wraps {
                    if !readers.contains(&w.to) {
                        return Err(SealingError::NotAReader(w.to).into());
                    }
                }
                if *opens {
                    if self.sealing.epochs.contains_key(epoch) {
                        return Err(SealingError::Reopened(*epoch).into());
                    }
                    // A thread's epoch goes to its participants' readers only: who they
                    // are is sealed (and the thread it names is in another stream, not in
                    // a key wrap's causal past), so readers check both when they open
                    // what is sealed under it (`thread_epoch_flag`); a relay checks each
                    // wrap goes to a reader of the stream.
                    let everyone = thread.is_none();
                    if let Some(r) = readers
                        .iter()
                        .find(|r| everyone && !wraps.iter().any(|w| w.to == **r))
                    {
                        return Err(SealingError::MissingReader(*r).into());
                    }
                } else {
                    let ok = self.sealing.epochs.get(epoch).is_some_and(|info| {
                        info.category == *c && info.wraps.first().is_some_and(past)
                    });
                    if !ok {
                        return Err(SealingError::UnknownEpoch(*epoch).into());
                    }
                    if !readers.contains(&e.author) && !self.is_patient_in(&e.author, past) {
                        return Err(SealingError::NotAReader(e.author).into());
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Checks content of stream `c` may be sealed under `epoch` at a causal position.
    fn check_sealed_under(
        &self,
        c: &Category,
        epoch: EpochId,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> Result<(), Rejection> {
        let info = self
            .sealing
            .epochs
            .get(&epoch)
            .filter(|i| i.category == *c && i.wraps.first().is_some_and(past))
            .ok_or(SealingError::UnknownEpoch(epoch))?;
        let opening = info.wraps[0];
        // Fast path: nothing that can end someone's reading is in the entry's past
        // without being in the opening's (every wrap was checked against the readers at
        // its own position, which includes the opening's past).
        let changed = self
            .sealing
            .endings
            .iter()
            .any(|x| past(x) && !self.in_past(x, &opening) && *x != opening);
        if !changed {
            return Ok(());
        }
        let readers = self.readers_in(c, past);
        for w in info.wraps.iter().filter(|w| past(w)) {
            if let Some(Payload::KeyWrap { wraps, .. }) = self.nodes.get(w).and_then(Node::payload)
            {
                if let Some(x) = wraps.iter().find(|x| !readers.contains(&x.to)) {
                    return Err(SealingError::FormerReader {
                        epoch,
                        reader: x.to,
                    }
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Who reads stream `c` at a causal position (see the module docs), valid keys only.
    pub(crate) fn readers_in(
        &self,
        c: &Category,
        past: &dyn Fn(&EntryId) -> bool,
    ) -> BTreeSet<ActorId> {
        self.readers_among(c, past, None)
    }

    /// Who reads a thread of `messages` whose participants are `participants` (people or
    /// organisations) at a causal position: the readers of the stream who are the patient
    /// (keys, devices, guardians) or act for a participant (the participant, their devices,
    /// the members of a participant organisation).
    pub(crate) fn thread_readers_in(
        &self,
        participants: &[ActorId],
        past: &dyn Fn(&EntryId) -> bool,
    ) -> BTreeSet<ActorId> {
        self.readers_among(&Category::Messages, past, Some(participants))
    }

    /// [`Record::readers_in`], keeping only the grantees in `only` (and their devices)
    /// when given; the patient's side always reads.
    fn readers_among(
        &self,
        c: &Category,
        past: &dyn Fn(&EntryId) -> bool,
        only: Option<&[ActorId]>,
    ) -> BTreeSet<ActorId> {
        let mut out = BTreeSet::new();
        let chain = self.patient_chain_in(past);
        if let Some((current, _)) = chain.last() {
            out.insert(*current);
        }
        let mut people = vec![self.id];
        if let Some(g) = self.guardian_set_in(&chain, past) {
            out.extend(g.guardians);
        }
        for info in self.grants.values() {
            // Causal: a grant voided by something outside this position's past (a
            // revocation it was made concurrently with, say) still reads here, as it did
            // for whoever wrote at this position; so the verdict never depends on what
            // else a replica holds. Its status is judged by this past alone too: a grant
            // voided by two entries (a revocation above it and its writer's removal, say)
            // records one of them, and a replica may hold only the other.
            if !past(&info.id) || !info.grant.level.reads() || !info.grant.scope.covers(c) {
                continue;
            }
            if only.is_some_and(|o| !o.contains(&info.grant.grantee)) {
                continue;
            }
            if self.status_in(&info.id, past) != Status::Valid {
                continue;
            }
            let revoked = self
                .chain(info.id)
                .iter()
                .any(|l| l.revoked_by.iter().any(past));
            if !revoked {
                out.insert(info.grant.grantee);
                people.push(info.grant.grantee);
            }
        }
        for person in people {
            for (device, adds) in &self.device_adds {
                // A member of an organisation reads what their role opens.
                let added = adds.iter().any(|a| {
                    past(a)
                        && self.principal_of(&self.nodes[a]) == person
                        && self
                            .join_role(a)
                            .is_none_or(|r| r.allows(crate::access::Level::View, c))
                });
                if added && self.retired_in(device, &person, past).is_none() {
                    out.insert(*device);
                }
            }
        }
        out.retain(|a| BoxPublic::of(a).is_ok());
        out
    }

    /// Who reads stream `c` now (everything held).
    pub fn readers(&self, c: &Category) -> BTreeSet<ActorId> {
        self.readers_in(c, &|_| true)
    }

    /// Records what a newly inserted entry means for sealing, and opens what it can.
    /// Whether the record holds no revocation, device removal, key rotation or guardian
    /// change (nothing that may end someone's reading, or void an entry).
    pub(crate) fn sealing_endings_empty(&self) -> bool {
        self.sealing.endings.is_empty()
    }

    pub(crate) fn index_sealing(&mut self, id: EntryId, e: &Entry, category: Option<&Category>) {
        match &e.payload {
            Payload::Revoke { .. }
            | Payload::RemoveDevice { .. }
            | Payload::RotateKey { .. }
            | Payload::SetGuardians { .. } => self.sealing.endings.push(id),
            Payload::KeyWrap {
                category: c,
                epoch,
                opens,
                wraps,
                ..
            } => {
                if *opens {
                    self.sealing.openings.entry(c.clone()).or_default().push(id);
                    self.sealing.epochs.insert(
                        *epoch,
                        EpochInfo {
                            category: c.clone(),
                            wraps: vec![id],
                        },
                    );
                } else if let Some(info) = self.sealing.epochs.get_mut(epoch) {
                    info.wraps.push(id);
                }
                if !self.sealing.keys.contains_key(epoch) {
                    if let Some(k) = self.unwrap_any(c, *epoch, wraps) {
                        self.sealing.keys.insert(*epoch, k);
                        let pending = self.sealing.sealed.get(epoch).cloned().unwrap_or_default();
                        for s in pending {
                            self.open_entry(&s);
                        }
                    }
                }
            }
            p => {
                if let (Some(content), Some(_)) = (p.sealed(), category) {
                    self.sealing
                        .sealed
                        .entry(content.epoch)
                        .or_default()
                        .push(id);
                    self.open_entry(&id);
                }
            }
        }
    }

    /// The epoch key from wraps addressed to one of this replica's readers, if any.
    fn unwrap_any(&self, c: &Category, epoch: EpochId, wraps: &[Wrapped]) -> Option<EpochKey> {
        let place = Place {
            record: &self.id,
            stream: c.name(),
            epoch,
        };
        self.sealing.unlockers.iter().find_map(|(actor, key)| {
            let w = wraps.iter().find(|w| w.to == *actor)?;
            seal::unwrap(w, key, place).ok()
        })
    }

    // ---- readers ---------------------------------------------------------------------

    /// Reads this record as `key`'s actor too: unwraps every epoch key wrapped for it and
    /// opens every sealed entry it can; entries and wraps applied later open as they come.
    pub fn unlock(&mut self, key: &Keypair) {
        let actor = key.actor();
        if self.sealing.unlockers.iter().any(|(a, _)| *a == actor) {
            return;
        }
        let mut unlockers: Vec<_> = self.sealing.unlockers.as_ref().clone();
        unlockers.push((actor, Arc::new(BoxKey::of(key))));
        self.sealing.unlockers = Arc::new(unlockers);
        let wraps: Vec<(Category, EpochId, Vec<Wrapped>)> = self
            .nodes
            .values()
            .filter_map(|n| match n.payload()? {
                Payload::KeyWrap {
                    category,
                    epoch,
                    wraps,
                    ..
                } => Some((category.clone(), *epoch, wraps.clone())),
                _ => None,
            })
            .collect();
        for (c, epoch, w) in wraps {
            if self.sealing.keys.contains_key(&epoch) {
                continue;
            }
            if let Some(k) = self.unwrap_any(&c, epoch, &w) {
                self.sealing.keys.insert(epoch, k);
            }
        }
        let pending: Vec<EntryId> = self
            .sealing
            .sealed
            .iter()
            .filter(|(e, _)| self.sealing.keys.contains_key(e))
            .flat_map(|(_, ids)| ids.iter().copied())
            .filter(|id| !self.sealing.opened.contains_key(id))
            .collect();
        for id in pending {
            self.open_entry(&id);
        }
    }

    /// A sealed entry's content as opened here (opening it now if it has not been read
    /// yet), or `None` when its epoch key is not held.
    fn opened(&self, id: &EntryId) -> Option<&Opened> {
        self.sealing.opened.get(id).map(|cell| {
            cell.get_or_init(|| match self.open_now(id) {
                // A lean record keeps how it opened, not the plain content: memory does
                // not grow back with every entry read.
                Opened::Ok(_) if self.is_lean() => Opened::Ok(None),
                Opened::Flagged(_, why) if self.is_lean() => Opened::Flagged(None, why),
                o => o,
            })
        })
    }

    /// Decrypts, decodes and checks one sealed entry whose epoch key is held.
    fn open_now(&self, id: &EntryId) -> Opened {
        let missing = |what: &str| Opened::Flagged(None, format!("cannot be opened: {what}"));
        let Some(n) = self.nodes.get(id) else {
            return missing("not held");
        };
        let Some(v) = self.entry_of(id, n) else {
            return missing("its entry could not be read");
        };
        let e = v.entry();
        let (Some(content), Some(c)) = (e.payload.sealed(), self.node_category(n)) else {
            return missing("not sealed content");
        };
        let Some(key) = self.sealing.keys.get(&content.epoch) else {
            return missing("no key for its epoch");
        };
        let place = Place {
            record: &self.id,
            stream: c.name(),
            epoch: content.epoch,
        };
        match seal::open(key, place, &e.author, content) {
            Err(err) => Opened::Flagged(None, err.to_string()),
            // Against the schema in effect at the entry's causal position.
            Ok(bytes) => {
                let opened = plain_of(&e.payload, c, &bytes, &|body| {
                    self.validate_body_in(c, body, &|x| self.in_past(x, id))
                });
                // A conversation's entry under a conversation's key: readers check what a
                // relay cannot (that the key went to its participants only).
                match opened {
                    // A task: its clear part (what every gate checked) must be what is
                    // sealed, and an owner's step must leave the requester's fields.
                    Opened::Ok(Some(p)) if *c == Category::Tasks => {
                        match self.sealed_task_flag(content.task.as_ref(), &p) {
                            Some(why) => Opened::Flagged(Some(p), why),
                            None => Opened::Ok(Some(p)),
                        }
                    }
                    Opened::Ok(Some(p)) if *c == Category::Messages => {
                        match self.thread_epoch_flag(id, n, content.epoch, &p) {
                            Some(why) => Opened::Flagged(Some(p), why),
                            None => Opened::Ok(Some(p)),
                        }
                    }
                    o => o,
                }
            }
        }
    }

    /// What a reader finds wrong in a sealed task it opened (`care::sealed_task_flag`),
    /// against the version amended as opened here.
    fn sealed_task_flag(
        &self,
        clear: Option<&crate::care::TaskClear>,
        p: &Payload,
    ) -> Option<String> {
        let Some(clear) = clear else {
            return Some("a sealed task without its lifecycle fields in clear".to_owned());
        };
        let body = match p {
            Payload::Create { body, .. } | Payload::Amend { body, .. } => body,
            _ => return None,
        };
        let before = match p {
            Payload::Amend { target, .. } => self.payload(target).and_then(|b| match &*b {
                Payload::Create { body, .. } | Payload::Amend { body, .. } => Some(body.clone()),
                _ => None,
            }),
            _ => None,
        };
        crate::care::sealed_task_flag(clear, body, before.as_ref())
    }

    /// The actors whose keys this replica reads sealed content with ([`Record::unlock`]).
    pub fn unlockers(&self) -> Vec<ActorId> {
        self.sealing.unlockers.iter().map(|(a, _)| *a).collect()
    }

    /// Whether this replica reads as `actor` ([`Record::unlock`]).
    pub fn unlocked_for(&self, actor: &ActorId) -> bool {
        self.sealing.unlockers.iter().any(|(a, _)| a == actor)
    }

    /// Whether `id` is a sealed entry this replica can open (its epoch key is held).
    pub(crate) fn is_openable_sealed(&self, id: &EntryId) -> bool {
        self.sealing.opened.contains_key(id)
    }

    /// Marks one sealed entry openable here if its epoch key is held (it is opened when
    /// first read: [`Record::payload`], [`Record::content_state`]).
    fn open_entry(&mut self, id: &EntryId) {
        let Some(epoch) = self.nodes.get(id).and_then(|n| self.epoch_of(n)) else {
            return;
        };
        if self.sealing.keys.contains_key(&epoch) {
            self.sealing.opened.entry(*id).or_default();
        }
    }

    /// The payload an entry stands for: for a sealed entry opened here, the plain payload
    /// it was sealed from (also when flagged, if it decoded); otherwise the signed one (a
    /// sealed payload, for content not opened here).
    pub fn payload(&self, id: &EntryId) -> Option<std::borrow::Cow<'_, Payload>> {
        use std::borrow::Cow;
        let signed = || {
            let n = self.nodes.get(id)?;
            match n.payload() {
                Some(p) => Some(Cow::Borrowed(p)),
                None => Some(Cow::Owned(self.entry_of(id, n)?.entry().payload.clone())),
            }
        };
        match self.opened(id) {
            Some(Opened::Ok(Some(p)) | Opened::Flagged(Some(p), _)) => Some(Cow::Borrowed(p)),
            // Lean: opened again for this read.
            Some(Opened::Ok(None) | Opened::Flagged(None, _)) if self.is_lean() => {
                match self.open_now(id) {
                    Opened::Ok(Some(p)) | Opened::Flagged(Some(p), _) => Some(Cow::Owned(p)),
                    _ => signed(),
                }
            }
            _ => signed(),
        }
    }

    /// How many opened sealed entries' plain content is kept in memory (none in a lean
    /// record, which opens content again when asked).
    pub fn opened_in_memory(&self) -> usize {
        self.sealing
            .opened
            .values()
            .filter(|c| {
                matches!(
                    c.get(),
                    Some(Opened::Ok(Some(_)) | Opened::Flagged(Some(_), _))
                )
            })
            .count()
    }

    /// How an entry's content stands here: plain, opened, locked or flagged.
    pub fn content_state(&self, id: &EntryId) -> Option<ContentState<'_>> {
        if self.nodes.get(id)?.h.epoch == super::NONE {
            return Some(ContentState::Plain);
        }
        Some(match self.opened(id) {
            Some(Opened::Ok(_)) => ContentState::Opened,
            Some(Opened::Flagged(_, why)) => ContentState::Flagged(why),
            None => ContentState::Locked,
        })
    }

    /// Sealed entries opened here whose content fails their category's rules, with why
    /// (opening every one not read yet).
    pub fn flagged(&self) -> Vec<(EntryId, &str)> {
        let mut out: Vec<(EntryId, &str)> = self
            .sealing
            .opened
            .keys()
            .filter_map(|id| match self.opened(id) {
                Some(Opened::Flagged(_, why)) => Some((*id, why.as_str())),
                _ => None,
            })
            .collect();
        out.sort();
        out
    }

    /// Whether stream `c` is sealed (an epoch is open in it).
    pub fn is_sealed(&self, c: &Category) -> bool {
        self.sealing.openings.contains_key(c)
    }

    /// The epochs of stream `c` whose keys are held here, oldest opening first.
    pub fn held_epochs(&self, c: &Category) -> Vec<EpochId> {
        let mut out: Vec<(usize, EpochId)> = self
            .sealing
            .epochs
            .iter()
            .filter(|(e, i)| i.category == *c && self.sealing.keys.contains_key(e))
            .map(|(e, i)| (self.position(&i.wraps[0]), *e))
            .collect();
        out.sort();
        out.into_iter().map(|(_, e)| e).collect()
    }

    fn position(&self, id: &EntryId) -> usize {
        self.nodes.get(id).map_or(0, |n| n.depth as usize)
    }

    /// The current epoch of stream `c` here: of the stream's own epochs (not a thread's)
    /// whose key is held here and under which the gate would accept content now, the
    /// newest opening (greatest depth, then id).
    pub fn current_epoch(&self, c: &Category) -> Option<EpochId> {
        let all = |_: &EntryId| true;
        self.sealing
            .epochs
            .iter()
            .filter(|(e, i)| i.category == *c && self.sealing.keys.contains_key(e))
            .filter(|(e, _)| self.epoch_thread(e).is_none())
            .filter(|(e, _)| self.check_sealed_under(c, **e, &all).is_ok())
            .max_by_key(|(e, i)| (self.position(&i.wraps[0]), **e))
            .map(|(e, _)| *e)
    }

    /// The epoch a writer at the current heads seals stream `c` under: the current epoch,
    /// if every current reader can open it (a reader added since is given the key by a
    /// wrap; until then a writer opens a new epoch). `None`: open a new epoch first.
    pub fn writing_epoch(&self, c: &Category) -> Option<EpochId> {
        let e = self.current_epoch(c)?;
        let info = &self.sealing.epochs[&e];
        self.readers(c)
            .iter()
            .all(|r| self.epoch_wrapped_for(info, r))
            .then_some(e)
    }

    // ---- threads' epochs --------------------------------------------------------------

    /// The thread an epoch is for, as its opening says (`None`: the stream's own epoch).
    pub fn epoch_thread(&self, epoch: &EpochId) -> Option<ThreadEpoch> {
        let info = self.sealing.epochs.get(epoch)?;
        match self.nodes.get(info.wraps.first()?)?.payload()? {
            Payload::KeyWrap { thread, .. } => *thread,
            _ => None,
        }
    }

    /// The start of the thread a thread's epoch is for: the one its opening names, or (an
    /// epoch opened with its thread) the first thread's start sealed under it, if held and
    /// opened here.
    pub fn epoch_thread_start(&self, epoch: &EpochId) -> Option<EntryId> {
        match self.epoch_thread(epoch)? {
            ThreadEpoch::Of(s) => Some(s),
            ThreadEpoch::New => self
                .sealing
                .sealed
                .get(epoch)?
                .iter()
                .filter(|id| self.nodes.get(id).is_some_and(|n| n.h.is_create()))
                .filter(|id| self.thread_participants(id).is_some())
                .min_by_key(|id| (self.position(id), **id))
                .copied(),
        }
    }

    /// Who may hold a thread's epoch now: its thread's participants' readers. `None` for a
    /// stream's own epoch, or a thread whose start is not readable here.
    fn epoch_readers(&self, epoch: &EpochId) -> Option<BTreeSet<ActorId>> {
        let start = self.epoch_thread_start(epoch)?;
        let parts = self.thread_participants(&start)?;
        Some(self.thread_readers_in(&parts, &|_| true))
    }

    /// The epoch a writer at the current heads seals the entries of the thread started by
    /// `thread` under: the newest of the thread's epochs whose key is held here, under
    /// which the gate would accept content now, wrapped for every current reader of the
    /// thread and for no one else. `None`: open a new one first.
    pub fn thread_writing_epoch(&self, thread: &EntryId) -> Option<EpochId> {
        let parts = self.thread_participants(thread)?;
        let readers = self.thread_readers_in(&parts, &|_| true);
        let all = |_: &EntryId| true;
        let c = Category::Messages;
        let (e, info) = self
            .sealing
            .epochs
            .iter()
            .filter(|(e, i)| i.category == c && self.sealing.keys.contains_key(e))
            .filter(|(e, _)| self.epoch_thread_start(e) == Some(*thread))
            .filter(|(e, _)| self.check_sealed_under(&c, **e, &all).is_ok())
            .max_by_key(|(e, i)| (self.position(&i.wraps[0]), **e))?;
        let exact = info.wraps.iter().all(|w| {
            matches!(self.nodes.get(w).and_then(Node::payload),
                Some(Payload::KeyWrap { wraps, .. }) if wraps.iter().all(|x| readers.contains(&x.to)))
        });
        (exact && readers.iter().all(|r| self.epoch_wrapped_for(info, r))).then_some(*e)
    }

    /// Seals an entry of a thread (its start, a message in it, a version or an annotation
    /// of one) under the thread's epoch, opening one first — wrapped for the thread's
    /// participants' readers only — when none fits. `None`: not a thread's entry.
    #[allow(clippy::too_many_arguments)]
    fn prepare_thread_data<R: RngCore + CryptoRng>(
        &self,
        key: &Keypair,
        principal: &ActorId,
        payload: &Payload,
        now: Timestamp,
        device: Option<String>,
        rng: &mut R,
    ) -> Result<Option<Vec<Verified>>, Rejection> {
        use crate::care::thread::{self, Shape, ThreadError};
        let c = Category::Messages;
        let (scope, parts) = match payload {
            Payload::Create { body, .. } => match thread::shape(body)? {
                Shape::Start(mut named) => {
                    for p in [self.id, *principal] {
                        if !named.contains(&p) {
                            named.push(p);
                        }
                    }
                    (ThreadEpoch::New, named)
                }
                Shape::In(t) => (ThreadEpoch::Of(t), Vec::new()),
                Shape::Loose => return Ok(None),
            },
            other => match other.target().and_then(|t| self.thread_of(&t)) {
                Some(t) => (ThreadEpoch::Of(t), Vec::new()),
                None => return Ok(None),
            },
        };
        if let ThreadEpoch::Of(t) = scope {
            if let Some(epoch) = self.thread_writing_epoch(&t) {
                let sealed = self.seal_payload(&key.actor(), &c, epoch, payload.clone(), rng)?;
                return Ok(Some(self.prepare_all(key, sealed, now, device)?));
            }
        }
        let parts = match scope {
            ThreadEpoch::New => parts,
            ThreadEpoch::Of(t) => self
                .thread_participants(&t)
                .ok_or(ThreadError::NotAThread(t))?,
        };
        let readers: Vec<ActorId> = self
            .thread_readers_in(&parts, &|_| true)
            .into_iter()
            .collect();
        let mut trial = self.clone();
        let mut out =
            trial.open_epoch_for(key, &c, Some(scope), &readers, now, device.clone(), rng)?;
        for v in &out {
            trial.apply(v.clone())?;
        }
        let epoch = match out.last().map(|v| &v.entry().payload) {
            Some(Payload::KeyWrap { epoch, .. }) => *epoch,
            _ => return Err(SealingError::NoKey(c).into()),
        };
        let sealed = trial.seal_payload(&key.actor(), &c, epoch, payload.clone(), rng)?;
        out.extend(trial.prepare_all(key, sealed, now, device)?);
        Ok(Some(out))
    }

    /// Why a sealed entry of `messages` that opened to `plain` is flagged for its thread's
    /// keys, if it is: sealed under a thread's epoch while in no thread or in another
    /// thread, or under a thread's epoch given to someone who does not take part in it (a
    /// relay cannot check that: who takes part is sealed).
    fn thread_epoch_flag(
        &self,
        id: &EntryId,
        n: &Node,
        epoch: EpochId,
        plain: &Payload,
    ) -> Option<String> {
        use crate::care::thread::{self, Shape};
        let scope = self.epoch_thread(&epoch)?;
        let (thread, parts) = match plain {
            Payload::Create { body, .. } => match thread::shape(body) {
                Ok(Shape::Start(mut named)) => {
                    for p in [self.id, self.principal_of(n)] {
                        if !named.contains(&p) {
                            named.push(p);
                        }
                    }
                    (Some(*id), Some(named))
                }
                Ok(Shape::In(t)) => (Some(t), None),
                _ => (None, None),
            },
            other => (other.target().and_then(|t| self.thread_of(&t)), None),
        };
        let Some(thread) = thread else {
            return Some("sealed under a conversation's key, but in no conversation".into());
        };
        let ours = match scope {
            ThreadEpoch::Of(s) => s == thread,
            ThreadEpoch::New => {
                self.nodes.get(&thread).and_then(|t| self.epoch_of(t)) == Some(epoch)
            }
        };
        if !ours {
            return Some("sealed under another conversation's key".into());
        }
        let parts = match parts {
            Some(p) => p,
            None => self.thread_participants(&thread)?,
        };
        let info = self.sealing.epochs.get(&epoch)?;
        for w in &info.wraps {
            let Some(Payload::KeyWrap { wraps, .. }) = self.nodes.get(w).and_then(Node::payload)
            else {
                continue;
            };
            let readers = self.thread_readers_in(&parts, &|x| self.in_past(x, w));
            if let Some(x) = wraps.iter().find(|x| !readers.contains(&x.to)) {
                return Some(format!(
                    "its conversation's key was given to {}, who does not take part",
                    x.to
                ));
            }
        }
        None
    }

    /// Whether `id` is sealed under a conversation's own epoch whose key is not held here.
    fn conversation_not_held(&self, id: &EntryId) -> bool {
        self.nodes
            .get(id)
            .and_then(|n| self.epoch_of(n))
            .is_some_and(|e| self.epoch_thread(&e).is_some() && !self.sealing.keys.contains_key(&e))
    }

    fn epoch_wrapped_for(&self, info: &EpochInfo, reader: &ActorId) -> bool {
        info.wraps.iter().any(|w| {
            matches!(self.nodes.get(w).and_then(Node::payload),
                Some(Payload::KeyWrap { wraps, .. }) if wraps.iter().any(|x| x.to == *reader))
        })
    }

    // ---- writers ---------------------------------------------------------------------

    /// Prepares everything one action writes, sealing it ([`Record::prepare_all`] plus the
    /// key management sealing needs, in order):
    ///
    /// - data in a sealed stream (or any stream, with `policy.seal_new_streams`) is sealed
    ///   under [`Record::writing_epoch`], a new epoch being opened first if none fits;
    /// - a revocation, device removal or key rotation is followed by a new epoch in each
    ///   sealed stream it concerns, wrapped for the readers that remain;
    /// - a grant is followed, in each sealed stream it opens, by wraps of every epoch held
    ///   for the grantee (with `policy.history`), or else by a new epoch, so the grantee
    ///   reads from its grant on and nothing written before;
    /// - an added device or new guardians are followed by wraps of every epoch held.
    ///
    /// The caller's key must be unlocked ([`Record::unlock`]) to seal or give keys.
    pub fn prepare_sealed<R: RngCore + CryptoRng>(
        &self,
        key: &Keypair,
        payload: Payload,
        now: Timestamp,
        device: Option<String>,
        policy: SealPolicy,
        rng: &mut R,
    ) -> Result<Vec<Verified>, Rejection> {
        if payload.is_data() && payload.sealed().is_none() {
            return self.prepare_data(key, payload, now, device, policy, rng);
        }
        let first = self.prepare_all(key, payload.clone(), now, device.clone())?;
        let needs_keys = matches!(
            payload,
            Payload::Revoke { .. }
                | Payload::RemoveDevice { .. }
                | Payload::RotateKey { .. }
                | Payload::Grant(_)
                | Payload::AddDevice { .. }
                | Payload::SetGuardians { .. }
        );
        if !needs_keys || self.sealing.openings.is_empty() {
            return Ok(first);
        }
        let mut trial = self.clone();
        for v in &first {
            trial.apply(v.clone())?;
        }
        // The writer after a rotation is the new key; it must read as itself.
        trial.unlock(key);
        let mut out = first;
        let mut streams: Vec<Category> = self.sealing.openings.keys().cloned().collect();
        streams.sort();
        for c in streams {
            let more: Vec<Verified> = match &payload {
                Payload::Revoke { grant, .. } => {
                    let covered = self
                        .grants
                        .get(grant)
                        .is_some_and(|g| g.grant.scope.covers(&c));
                    if covered {
                        trial.open_epoch(key, &c, now, device.clone(), rng)?
                    } else {
                        Vec::new()
                    }
                }
                // A removed device (or an organisation's member) read only some streams:
                // those get a new epoch; a grantee removing its own device opens one only
                // where its grant lets it write (elsewhere the next writer's sealing must).
                Payload::RemoveDevice { device: d, .. } => {
                    let grantee = !self.is_patient(&key.actor());
                    if !self.readers(&c).contains(d) {
                        Vec::new()
                    } else if grantee {
                        trial
                            .open_epoch(key, &c, now, device.clone(), rng)
                            .or_else(|e| match e {
                                Rejection::Access(_) => Ok(Vec::new()),
                                e => Err(e),
                            })?
                    } else {
                        trial.open_epoch(key, &c, now, device.clone(), rng)?
                    }
                }
                Payload::RotateKey { .. } => trial.open_epoch(key, &c, now, device.clone(), rng)?,
                Payload::Grant(g) => {
                    if !(g.level.reads() && g.scope.covers(&c)) {
                        Vec::new()
                    } else if policy.history {
                        let to = [g.grantee];
                        trial.prepare_key_gifts(key, &c, &to, true, now, &device, rng)?
                    } else {
                        // From now on: a new epoch, so nothing written before opens.
                        trial.open_epoch(key, &c, now, device.clone(), rng)?
                    }
                }
                Payload::AddDevice { device: d, .. } => {
                    trial.prepare_key_gifts(key, &c, &[*d], true, now, &device, rng)?
                }
                Payload::SetGuardians { guardians, .. } => {
                    trial.prepare_key_gifts(key, &c, guardians, true, now, &device, rng)?
                }
                _ => Vec::new(),
            };
            for v in more {
                trial.apply(v.clone())?;
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Seals one data action, opening an epoch first if needed.
    fn prepare_data<R: RngCore + CryptoRng>(
        &self,
        key: &Keypair,
        payload: Payload,
        now: Timestamp,
        device: Option<String>,
        policy: SealPolicy,
        rng: &mut R,
    ) -> Result<Vec<Verified>, Rejection> {
        let Some(c) = self.category_of_payload(&payload) else {
            return self.prepare_all(key, payload, now, device);
        };
        if !self.is_sealed(&c) && !policy.seal_new_streams {
            return self.prepare_all(key, payload, now, device);
        }
        // The writer checks its content as the gate checks plain content: once sealed,
        // only readers can.
        self.check_content(&c, &payload)?;
        if c == Category::Appointments {
            // No reminder already past at the entry's time (the gate's rule for a plain
            // appointment), against the version amended as the writer reads it.
            if let Payload::Create { body, .. } | Payload::Amend { body, .. } = &payload {
                let before = match &payload {
                    Payload::Amend { target, .. } => self.payload(target).and_then(|p| match &*p {
                        Payload::Create { body, .. } | Payload::Amend { body, .. } => {
                            Some(body.clone())
                        }
                        _ => None,
                    }),
                    _ => None,
                };
                crate::care::check_appointment_write(body, before.as_ref(), now)?;
            }
        }
        let principal = if self.is_patient(&key.actor()) {
            self.id
        } else {
            self.owners_of(&key.actor())
                .into_iter()
                .next()
                .unwrap_or(key.actor())
        };
        if c == Category::Tasks {
            // The whole lifecycle on the plain bodies (the gate reads only the clear part:
            // an owner's step must not change the sealed description or due date either).
            match &payload {
                Payload::Create { body, .. } => crate::care::check_task_create(body, &principal)?,
                Payload::Amend { target, body } => {
                    let before = self.payload(target).and_then(|p| match &*p {
                        Payload::Create { body, .. } | Payload::Amend { body, .. } => {
                            Some(body.clone())
                        }
                        _ => None,
                    });
                    if let Some(before) = before {
                        crate::care::check_task_step(&before, body, &principal)?;
                    }
                }
                _ => {}
            }
        }
        // A questionnaire response (or assignment) is checked as the gate checks a plain
        // one, against the definition as the writer reads it.
        self.check_questionnaire(&payload, Some(&c), &|x| self.nodes.contains_key(x), true)?;
        if let Payload::Annotate { target, text } = &payload {
            // A release is checked as the gate checks a plain one: once sealed, a relay
            // cannot read it (the writer's causal past is everything held here).
            self.check_release(target, text, &principal, &|x| self.nodes.contains_key(x))?;
        }
        // So are a conversation's rules (`care::thread`), reading the threads as opened
        // here.
        self.check_thread(
            &payload,
            &principal,
            Some(&c),
            &|x| self.nodes.contains_key(x),
            true,
        )
        .map_err(|e| match e {
            // A conversation sealed under a key not given to this writer: it does not
            // take part (it cannot read who does).
            Rejection::Thread(crate::care::thread::ThreadError::NotAThread(t))
                if self.conversation_not_held(&t) =>
            {
                crate::care::thread::ThreadError::NotParticipant {
                    thread: t,
                    actor: principal,
                }
                .into()
            }
            e => e,
        })?;
        if c == Category::Messages {
            // A conversation's entry is sealed under the conversation's own key.
            if let Some(out) =
                self.prepare_thread_data(key, &principal, &payload, now, device.clone(), rng)?
            {
                return Ok(out);
            }
        }
        if let Some(epoch) = self.writing_epoch(&c) {
            let sealed = self.seal_payload(&key.actor(), &c, epoch, payload, rng)?;
            return self.prepare_all(key, sealed, now, device);
        }
        let mut trial = self.clone();
        let mut out = trial.open_epoch(key, &c, now, device.clone(), rng)?;
        for v in &out {
            trial.apply(v.clone())?;
        }
        let epoch = trial
            .writing_epoch(&c)
            .ok_or(SealingError::NoKey(c.clone()))?;
        let sealed = trial.seal_payload(&key.actor(), &c, epoch, payload, rng)?;
        out.extend(trial.prepare_all(key, sealed, now, device)?);
        Ok(out)
    }

    /// Checks plain data content of stream `c` as the gate does (texts bounded, bodies
    /// well-formed and valid for the category).
    fn check_content(&self, c: &Category, payload: &Payload) -> Result<(), Rejection> {
        let text = |field: &'static str, t: &str, max: usize| {
            if t.trim().is_empty() || t.len() > max {
                return Err(Rejection::Malformed(crate::entry::EntryError::Text(field)));
            }
            Ok(())
        };
        match payload {
            Payload::Create { body, .. } | Payload::Amend { body, .. } => {
                body.check().map_err(crate::entry::EntryError::from)?;
                self.validate_body(c, body)?;
            }
            Payload::Delete { reason, .. } => text("reason", reason, MAX_SHORT_TEXT)?,
            Payload::Annotate { text: t, .. } => text("text", t, MAX_NOTE_TEXT)?,
            _ => {}
        }
        Ok(())
    }

    /// Seals a plain data payload of stream `c` under `epoch`, as `author` writes it.
    pub(crate) fn seal_payload<R: RngCore + CryptoRng>(
        &self,
        author: &ActorId,
        c: &Category,
        epoch: EpochId,
        payload: Payload,
        rng: &mut R,
    ) -> Result<Payload, Rejection> {
        let key = self
            .sealing
            .keys
            .get(&epoch)
            .ok_or(SealingError::NoKey(c.clone()))?;
        let place = Place {
            record: &self.id,
            stream: c.name(),
            epoch,
        };
        let mut seal_bytes = |bytes: Vec<u8>| -> Result<Sealed, Rejection> {
            Ok(seal::seal(key, place, author, &bytes, rng).map_err(SealingError::from)?)
        };
        Ok(match payload {
            Payload::Create { category, body } => Payload::SealedCreate {
                content: Sealed {
                    blobs: crate::blob::refs_in_body(&category, &body),
                    task: task_clear(c, &body)?,
                    ..seal_bytes(crate::entry::to_cbor(&body))?
                },
                category,
            },
            Payload::Amend { target, body } => Payload::SealedAmend {
                target,
                content: Sealed {
                    blobs: crate::blob::refs_in_body(c, &body),
                    task: task_clear(c, &body)?,
                    ..seal_bytes(crate::entry::to_cbor(&body))?
                },
            },
            Payload::Delete { target, reason } => Payload::SealedDelete {
                target,
                content: seal_bytes(crate::entry::to_cbor(&reason))?,
            },
            Payload::Annotate { target, text } => Payload::SealedAnnotate {
                target,
                content: seal_bytes(crate::entry::to_cbor(&text))?,
            },
            other => other,
        })
    }

    /// Prepares the opening of a new epoch of stream `c` at the current heads, wrapped for
    /// every reader, and keeps its key (in this record: the caller applies the entry to it).
    fn open_epoch<R: RngCore + CryptoRng>(
        &mut self,
        key: &Keypair,
        c: &Category,
        now: Timestamp,
        device: Option<String>,
        rng: &mut R,
    ) -> Result<Vec<Verified>, Rejection> {
        let readers: Vec<ActorId> = self.readers(c).into_iter().collect();
        self.open_epoch_for(key, c, None, &readers, now, device, rng)
    }

    /// Prepares the opening of a new epoch of stream `c` (for a thread, with `thread`)
    /// wrapped for `readers`, and keeps its key.
    #[allow(clippy::too_many_arguments)]
    fn open_epoch_for<R: RngCore + CryptoRng>(
        &mut self,
        key: &Keypair,
        c: &Category,
        thread: Option<ThreadEpoch>,
        readers: &[ActorId],
        now: Timestamp,
        device: Option<String>,
        rng: &mut R,
    ) -> Result<Vec<Verified>, Rejection> {
        let epoch = EpochId::generate(rng);
        let k = EpochKey::generate(rng);
        let wraps = self.wrap_for(&k, c, epoch, readers, rng)?;
        let v = self.prepare_as(
            key,
            Payload::KeyWrap {
                category: c.clone(),
                epoch,
                opens: true,
                wraps,
                thread,
            },
            now,
            device,
        )?;
        self.sealing.keys.insert(epoch, k);
        Ok(vec![v])
    }

    /// Who should hold every epoch key of the record and lacks one held here: the current
    /// patient key (after a recovery it starts with none), the patient's devices and the
    /// guardians. Grantees are not owed anything: what they hold is the patient's choice.
    pub fn owed_keys(&self) -> BTreeSet<ActorId> {
        let patient = self.current_patient_key();
        let mut whole: BTreeSet<ActorId> = BTreeSet::new();
        whole.insert(patient);
        for d in self.devices_of(&self.id) {
            if d.removed.is_none() {
                whole.insert(d.device);
            }
        }
        if let Some(g) = self.guardians() {
            whole.extend(g.guardians);
        }
        let mut owed = BTreeSet::new();
        for (epoch, info) in &self.sealing.epochs {
            if !self.sealing.keys.contains_key(epoch) {
                continue;
            }
            let readers = self.readers(&info.category);
            for a in whole.iter().filter(|a| readers.contains(a)) {
                if !self.epoch_wrapped_for(info, a) {
                    owed.insert(*a);
                }
            }
        }
        owed
    }

    /// Prepares key wraps giving every epoch key held here to those [`Record::owed_keys`]
    /// names (any reader may write them: a guardian's node does, after a recovery). Empty
    /// when nothing is owed.
    pub fn prepare_owed_keys<R: RngCore + CryptoRng>(
        &self,
        key: &Keypair,
        now: Timestamp,
        device: &Option<String>,
        rng: &mut R,
    ) -> Result<Vec<Verified>, Rejection> {
        let owed: Vec<ActorId> = self.owed_keys().into_iter().collect();
        if owed.is_empty() {
            return Ok(Vec::new());
        }
        let mut streams: Vec<Category> = self.sealing.openings.keys().cloned().collect();
        streams.sort();
        let mut trial = self.clone();
        let mut out = Vec::new();
        for c in streams {
            for v in trial.prepare_key_gifts(key, &c, &owed, true, now, device, rng)? {
                trial.apply(v.clone())?;
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Prepares key wraps giving every epoch key held here to the members of the
    /// organisation `key` is (its own key or device) who joined this record, are not
    /// removed, read the stream (by the organisation's grant and their role) and lack it:
    /// a member reads what the organisation reads. The organisation's node writes them when
    /// it sees a join ([`crate::org`]). Empty when nothing is owed.
    pub fn prepare_member_keys<R: RngCore + CryptoRng>(
        &self,
        key: &Keypair,
        now: Timestamp,
        device: &Option<String>,
        rng: &mut R,
    ) -> Result<Vec<Verified>, Rejection> {
        let me = key.actor();
        let org = self.owners_of(&me).into_iter().next().unwrap_or(me);
        let members: Vec<ActorId> = self
            .joined_members()
            .into_iter()
            .filter(|m| m.org == org && m.removed.is_none())
            .map(|m| m.member)
            .collect();
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut streams: Vec<Category> = self.sealing.openings.keys().cloned().collect();
        streams.sort();
        let mut trial = self.clone();
        let mut out = Vec::new();
        for c in streams {
            for v in trial.prepare_key_gifts(key, &c, &members, true, now, device, rng)? {
                trial.apply(v.clone())?;
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Prepares, for each held epoch of stream `c` (only the writing epoch unless
    /// `history`) not yet wrapped for all of `to`, a key-wrap entry giving it to them;
    /// the entries are checked in sequence, to be applied in the order returned.
    #[allow(clippy::too_many_arguments)]
    pub fn prepare_key_gifts<R: RngCore + CryptoRng>(
        &self,
        key: &Keypair,
        c: &Category,
        to: &[ActorId],
        history: bool,
        now: Timestamp,
        device: &Option<String>,
        rng: &mut R,
    ) -> Result<Vec<Verified>, Rejection> {
        let epochs = if history {
            self.held_epochs(c)
        } else {
            self.current_epoch(c).into_iter().collect()
        };
        let stream_readers = self.readers(c);
        let mut trial: Option<Record> = None;
        let mut out = Vec::new();
        for epoch in epochs {
            let info = &self.sealing.epochs[&epoch];
            // A thread's epoch goes to its participants' readers only, never to another
            // reader of the stream (a new grantee's history, an organisation's members).
            let thread_readers;
            let readers = if self.epoch_thread(&epoch).is_some() {
                thread_readers = self.epoch_readers(&epoch).unwrap_or_default();
                &thread_readers
            } else {
                &stream_readers
            };
            let mut who: Vec<ActorId> = to
                .iter()
                .filter(|a| readers.contains(a) && !self.epoch_wrapped_for(info, a))
                .copied()
                .collect();
            who.sort();
            who.dedup();
            if who.is_empty() {
                continue;
            }
            let k = &self.sealing.keys[&epoch];
            let wraps = self.wrap_for(k, c, epoch, &who, rng)?;
            let payload = Payload::KeyWrap {
                category: c.clone(),
                epoch,
                opens: false,
                wraps,
                thread: None,
            };
            let r = trial.as_ref().unwrap_or(self);
            let v = r.prepare_as(key, payload, now, device.clone())?;
            if trial.is_none() {
                trial = Some(self.clone());
            }
            if let Some(t) = trial.as_mut() {
                t.apply(v.clone())?;
            }
            out.push(v);
        }
        Ok(out)
    }

    fn wrap_for<R: RngCore + CryptoRng>(
        &self,
        k: &EpochKey,
        c: &Category,
        epoch: EpochId,
        to: &[ActorId],
        rng: &mut R,
    ) -> Result<Vec<Wrapped>, Rejection> {
        let place = Place {
            record: &self.id,
            stream: c.name(),
            epoch,
        };
        let mut to: Vec<ActorId> = to.to_vec();
        to.sort();
        to.dedup();
        to.iter()
            .map(|a| {
                let pk = BoxPublic::of(a).map_err(|_| SealingError::BadReaderKey(*a))?;
                Ok(seal::wrap(k, *a, &pk, place, rng).map_err(SealingError::from)?)
            })
            .collect()
    }
}

/// A task's lifecycle fields, carried in clear beside its sealed body (`None` for other
/// categories).
fn task_clear(c: &Category, body: &Value) -> Result<Option<crate::care::TaskClear>, Rejection> {
    if *c != Category::Tasks {
        return Ok(None);
    }
    Ok(Some(crate::care::TaskClear::of_body(body)?))
}

/// The plain payload a sealed one was sealed from, checked as the gate checks plain
/// content (structure and the category's schema); flagged if it fails.
fn plain_of(
    sealed: &Payload,
    c: &Category,
    bytes: &[u8],
    schema: &dyn Fn(&Value) -> Result<(), crate::schema::SchemaError>,
) -> Opened {
    fn decode<T>(bytes: &[u8]) -> Result<T, String>
    where
        T: serde::Serialize + for<'de> serde::Deserialize<'de>,
    {
        crate::entry::from_cbor_canonical(bytes).map_err(|e| e.to_string())
    }
    fn text(t: &str, max: usize) -> Result<(), String> {
        if t.trim().is_empty() || t.len() > max {
            return Err(format!("text empty or longer than {max} bytes"));
        }
        Ok(())
    }
    let body = |bytes: &[u8]| -> Result<Value, String> {
        let v: Value = decode(bytes)?;
        v.check().map_err(|e| e.to_string())?;
        Ok(v)
    };
    // A body's rules: its category's schema (an extension's in effect at the entry's
    // position), and the documents it references are the
    // ones listed in clear (what relays fetch and serve).
    let listed = sealed.sealed().map_or(&[][..], |s| s.blobs.as_slice());
    let rules = |body: &Value| -> Result<(), String> {
        schema(body).map_err(|e| e.to_string())?;
        if crate::blob::refs_in_body(c, body) != listed {
            return Err(
                "the documents it lists in clear are not the ones its body references".to_owned(),
            );
        }
        Ok(())
    };
    let out: Result<Payload, (Option<Payload>, String)> = match sealed {
        Payload::SealedCreate { category, .. } => match body(bytes) {
            Err(e) => Err((None, e)),
            Ok(body) => match rules(&body) {
                Ok(()) => Ok(Payload::Create {
                    category: category.clone(),
                    body,
                }),
                Err(e) => Err((
                    Some(Payload::Create {
                        category: category.clone(),
                        body,
                    }),
                    e,
                )),
            },
        },
        Payload::SealedAmend { target, .. } => match body(bytes) {
            Err(e) => Err((None, e)),
            Ok(body) => match rules(&body) {
                Ok(()) => Ok(Payload::Amend {
                    target: *target,
                    body,
                }),
                Err(e) => Err((
                    Some(Payload::Amend {
                        target: *target,
                        body,
                    }),
                    e,
                )),
            },
        },
        Payload::SealedDelete { target, .. } => decode::<String>(bytes)
            .and_then(|r| text(&r, MAX_SHORT_TEXT).map(|()| r))
            .map(|reason| Payload::Delete {
                target: *target,
                reason,
            })
            .map_err(|e| (None, e)),
        Payload::SealedAnnotate { target, .. } => decode::<String>(bytes)
            .and_then(|t| text(&t, MAX_NOTE_TEXT).map(|()| t))
            .map(|text| Payload::Annotate {
                target: *target,
                text,
            })
            .map_err(|e| (None, e)),
        _ => Err((None, "not sealed content".into())),
    };
    match out {
        Ok(p) => Opened::Ok(Some(p)),
        Err((p, why)) => Opened::Flagged(p, why),
    }
}
