//! The FHIR API's per-record search index, so a search, a read by id, the first page of
//! `$everything` and a `_history` page cost what they return, not the record's size.
//!
//! # What it holds
//! Per item of record data (its root create): its place in the served order (category
//! rank, creation time, id), its versions (the creates, amends and deletes applied), and
//! its *settled* state: the item folded as the patient sees it (every valid version) —
//! served resource type, search keys (codes, category codes, the clinical date), the
//! original `Type/id` and `fullUrl` it came in with (the names references use), its
//! current version and when that was written. Postings map each resource type, code,
//! original id, reference name and date (a `BTreeMap` on the date's start) to items.
//!
//! # Where it lives, and why
//! In memory, in the HTTP server's state ([`Indexes`]), at most [`MAX_INDEXED_RECORDS`]
//! records (the least recently used index is let go) and at most [`MAX_INDEXED_ITEMS`]
//! items per record (a bigger record is read by the scan, as before). Not persisted: it is
//! derived from the record alone and rebuilt on the first read after a restart (the
//! benchmark in `docs/benchmarks.md` gives that first read's cost), so there is no second
//! copy on disk to keep in step with the log.
//!
//! # Invariants
//! - **Caught up before every use.** Each use first applies the entries the record
//!   gained since the last one ([`Record::entries_since`]: written here, imported, or
//!   pulled by sync — all go through the record), so the index never answers for an older
//!   record. It counts the entries it has taken in; if that differs from the record's
//!   length, or the entry at its last position is not the one it saw there (the record
//!   was reloaded in another order), it is rebuilt from scratch.
//! - **Postings are a superset.** Every version's keys are posted when the version is
//!   applied and never removed, so an item is a candidate for any value any of its
//!   versions ever had — whatever version a viewer sees as current.
//! - **Settled states are exact for the patient's view.** An item touched by a new entry
//!   is folded again (`fold::item`); an entry that can change what is in effect or
//!   readable elsewhere in the record (a revocation, a device removal, a key rotation, a
//!   key wrap, a move) settles every item again; an item with sealed versions this node
//!   could not open is looked at again on every use (a key the node gains later opens
//!   them without a new entry).
//! - **The index only narrows.** A candidate's settled state decides a match only when the
//!   viewer sees every valid version of the item (then their fold is the patient's);
//!   otherwise the item is folded for the viewer and matched on what that gives. Every
//!   resource returned is built by folding the item for the viewer, exactly as the scan
//!   does, and audited by the caller as before.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use cophr_protocol::fhir::{self, SearchKeys};
use cophr_protocol::fold::{self, ItemState, Viewer};
use cophr_protocol::record::{ContentState, Record, Status};
use cophr_protocol::{Category, EntryId, Payload, RecordId, Timestamp, Value};

use super::search::{self, Range, Search, Token};
use super::view;
use crate::session::{Cancel, Cancelled};
use serde::{Deserialize, Serialize};

/// Records whose index is kept at once (the least recently used is let go beyond).
pub const MAX_INDEXED_RECORDS: usize = 32;
/// Items one record's index holds at most; a record with more is read by the full scan.
pub const MAX_INDEXED_ITEMS: usize = 4_000_000;

/// The served order of items: category rank, creation time, id (as `fold::current`
/// lists them).
pub type Order = (usize, Timestamp, EntryId);

/// The rank of a category in the served order (`fold::current`'s).
pub fn rank(c: &Category) -> usize {
    Category::BUILT_IN
        .iter()
        .position(|b| b == c)
        .unwrap_or(Category::BUILT_IN.len())
}

/// What an entry's Provenance targets (as `view::provenances` names it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Target {
    /// The record's patient (the genesis and profiles).
    Patient,
    /// A Consent (a grant, or the grant a revocation ends).
    Consent(EntryId),
    /// A version of an item (a create, amend or delete).
    Version(EntryId),
    /// An item (an annotation about it).
    Note(EntryId),
    /// Nothing: the entry has no Provenance.
    None,
}

/// What one version or settled item is served as.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Keys {
    /// The served resource type.
    pub ty: String,
    /// Search keys (the category's name among the category codes, as the scan adds it).
    pub search: SearchKeys,
    /// The clinical date's range.
    pub date: Option<Range>,
    /// The original resource's type, if the body keeps one (`fhir-resource`).
    pub original_ty: Option<String>,
    /// The names it came in with: `Type/<original id>` and its `fullUrl`.
    pub names: Vec<String>,
    /// Its original id.
    pub original_id: Option<String>,
    /// A referral's Task: its ServiceRequest is served alone too.
    pub referral: bool,
}

impl Keys {
    /// Whether the item is served as `ty` (a referral's Task also as its ServiceRequest).
    pub fn is(&self, ty: &str) -> bool {
        self.ty == ty || (self.referral && ty == "ServiceRequest")
    }
}

/// The keys of a body of `category` exported as the item `item`'s resource (`None`: it
/// exports as no resource).
pub fn keys_of(rid: &RecordId, item: &EntryId, category: &Category, body: &Value) -> Option<Keys> {
    let r = view::export(rid, item, category, body)?;
    let mut search = fhir::search_keys(category, body);
    search.category_codes.push(category.name().to_owned());
    let date = search.date.as_deref().and_then(search::date_range);
    let referral = r["resourceType"] == "Task"
        && r["contained"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["resourceType"] == "ServiceRequest"));
    let mut k = Keys {
        referral,
        ty: r["resourceType"].as_str().unwrap_or_default().to_owned(),
        search,
        date,
        ..Keys::default()
    };
    if let Some((ty, id)) = view::original_head(body) {
        if let Some(id) = &id {
            k.names.push(format!("{ty}/{id}"));
        }
        k.names.push(fhir::full_url(item, body));
        k.original_id = id;
        k.original_ty = Some(ty);
    }
    Some(k)
}

/// Where an item stands as the patient sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Settled {
    /// Current: its version in effect and what it is served as.
    Current {
        /// The version in effect.
        current: EntryId,
        /// What it is served as.
        keys: Box<Keys>,
    },
    /// Its version in effect is a delete.
    Deleted,
    /// Not served (locked, invalid, or exported as no resource).
    Hidden,
}

/// One item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemIx {
    /// Its place in the served order.
    pub order: Order,
    /// Its versions as applied (the create first).
    pub versions: Vec<EntryId>,
    /// As the patient sees it.
    pub settled: Settled,
    /// Its versions as the patient's `_history` lists them, when it has more than its
    /// create or is deleted (else its one version is the create, at `order.1`).
    pub hist: Option<Box<Hist>>,
}

/// An item's versions as its `_history` lists them for the patient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hist {
    /// Each version's time, number and entry, oldest first.
    pub versions: Vec<(Timestamp, usize, EntryId)>,
    /// The type of its latest version that is a resource (what a deleted item is listed
    /// as).
    pub shown: Option<String>,
}

impl ItemIx {
    /// Its versions as the patient's `_history` lists them (time, number), oldest first,
    /// and the type a deleted item is listed as.
    pub fn history(&self) -> (Vec<(Timestamp, usize)>, Option<&str>) {
        match &self.hist {
            Some(h) => (
                h.versions.iter().map(|(t, n, _)| (*t, *n)).collect(),
                h.shown.as_deref(),
            ),
            None => (vec![(self.order.1, 1)], None),
        }
    }

    /// The number of the version `entry` as the patient's `_history` lists it (`None`:
    /// not listed).
    pub fn number(&self, entry: &EntryId) -> Option<usize> {
        match &self.hist {
            Some(h) => h.versions.iter().find(|v| v.2 == *entry).map(|v| v.1),
            None => (*entry == self.order.2).then_some(1),
        }
    }
}

/// One record's index (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordIndex {
    record: RecordId,
    /// Entries taken in, and the last one.
    seen: usize,
    /// Built from empty and not yet caught up once (every entry taken in in one go, in
    /// however many slices: no check of the count against the record is needed).
    from_empty: bool,
    last: Option<EntryId>,
    /// Every entry taken in → the item it belongs to (`None`: not record data).
    known: HashMap<EntryId, Option<EntryId>>,
    /// Every entry taken in, in the record's order: its time and what its Provenance
    /// targets.
    log: Vec<(EntryId, Timestamp, Target)>,
    /// Annotations → the item they are about.
    notes: HashMap<EntryId, EntryId>,
    items: HashMap<EntryId, ItemIx>,
    /// Items to settle again (taken into `queue`, and settled from there, a slice at a
    /// time).
    #[serde(skip)]
    dirty: HashSet<EntryId>,
    #[serde(skip)]
    queue: Vec<EntryId>,
    all_dirty: bool,
    too_big: bool,
    by_type: HashMap<String, Vec<EntryId>>,
    by_code: HashMap<String, Vec<EntryId>>,
    by_original: HashMap<String, Vec<EntryId>>,
    by_name: HashMap<String, Vec<EntryId>>,
    by_date: BTreeMap<i64, Vec<EntryId>>,
    /// The widest date range posted.
    widest: i64,
    /// Postings added to since they were last put in served order.
    #[serde(skip)]
    touched: HashSet<(Map, String)>,
    /// Items settled locked (sealed under a key not held), with how many of their
    /// versions were locked then: a key this node gains later (`Store::unlock_with`)
    /// opens them without any new entry, so they are looked at again on every use.
    locked: HashMap<EntryId, usize>,
    /// The categories of the items posted under each served type (a superset: never
    /// removed): a viewer who sees every entry of each ([`Viewer::sees_all_of`]) sees a
    /// type as the patient does ([`RecordIndex::seen_whole`]).
    type_categories: HashMap<String, HashSet<Category>>,
    /// The keys the record was read with while the index took it in
    /// ([`Record::unlockers`]): a saved index is taken again only where the record is
    /// unlocked with all of them, so that it never shows what the record cannot open now
    /// (a key gained later is handled by `locked`).
    readers: Vec<cophr_protocol::ActorId>,
    /// How many items are current for the patient, by served type.
    current: HashMap<String, usize>,
    /// How many items are current for the patient, by served type and code
    /// ([`CodeKey`]): a search by one code is counted without visiting its matches.
    code_counts: HashMap<CodeKey, usize>,
    /// The items current for the patient with a clinical date, by served type: the
    /// date's range and the item's place in the served order. A search by date reads the
    /// ranges here instead of visiting the items.
    dated: HashMap<String, BTreeSet<(i64, i64, Order)>>,
}

/// A served type and a code as a `code` search token names it: with its system (`Some`,
/// `""` for none) or with any system (`None`).
type CodeKey = (String, Option<String>, String);

/// The smallest [`Order`], to start a range of [`RecordIndex::dated`] at a date.
const FIRST: Order = (0, 0, EntryId([0; 32]));

/// The postings by string key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Map {
    Type,
    Code,
    Original,
    Name,
}

/// The version of a saved index ([`RecordIndex::to_bytes`]). Bump it whenever what the
/// index keeps, or how an item's keys are derived from the record (`keys_of`, the FHIR
/// mapping, the fold), changes: a saved index of another version (or another release of
/// cophr) is not read, and the index is built again.
pub const SAVED_FORMAT: u32 = 1;

/// The largest saved index read.
pub const MAX_SAVED_BYTES: u64 = 1 << 30;

/// A saved index is saved again once it is this many entries behind its record.
pub const SAVE_MIN_NEW: usize = 2_000;

/// The first bytes of a saved index.
const MAGIC: &[u8; 16] = b"cophr-fhir-index";

impl RecordIndex {
    /// How many of the record's entries the index has taken in.
    pub fn seen(&self) -> usize {
        self.seen
    }

    /// The index saved, when it is caught up and settled (else `None`: nothing half done
    /// is saved). `MAGIC`, [`SAVED_FORMAT`] and cophr's version (a saved index is read only
    /// by the release that wrote it), the blake3 hash of the rest, then the index in CBOR.
    /// It holds what the node could read of the record (codes, dates, ids of items), as
    /// the node's log and keys do.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let settled = !self.from_empty
            && !self.all_dirty
            && !self.too_big
            && self.dirty.is_empty()
            && self.queue.is_empty()
            && self.touched.is_empty();
        if !settled {
            return None;
        }
        let body = cbor4ii::serde::to_vec(Vec::new(), self).ok()?;
        let version = env!("CARGO_PKG_VERSION").as_bytes();
        let mut out = Vec::with_capacity(body.len() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&SAVED_FORMAT.to_be_bytes());
        out.extend_from_slice(&u16::try_from(version.len()).ok()?.to_be_bytes());
        out.extend_from_slice(version);
        out.extend_from_slice(blake3::hash(&body).as_bytes());
        out.extend_from_slice(&body);
        Some(out)
    }

    /// A saved index of `record` ([`Self::to_bytes`]), if it is one: of this format and
    /// release, whole (its hash), and of this record. Whether it still fits the record is
    /// checked as it catches up (the entry at its position must be the one it took in
    /// last; else it is built again from empty).
    pub fn from_bytes(record: &RecordId, bytes: &[u8]) -> Option<RecordIndex> {
        let rest = bytes.strip_prefix(MAGIC.as_slice())?;
        let (format, rest) = rest.split_at_checked(4)?;
        if u32::from_be_bytes(format.try_into().ok()?) != SAVED_FORMAT {
            return None;
        }
        let (len, rest) = rest.split_at_checked(2)?;
        let len = usize::from(u16::from_be_bytes(len.try_into().ok()?));
        let (version, rest) = rest.split_at_checked(len)?;
        if version != env!("CARGO_PKG_VERSION").as_bytes() {
            return None;
        }
        let (hash, body) = rest.split_at_checked(32)?;
        if blake3::hash(body).as_bytes() != hash {
            return None;
        }
        let ix: RecordIndex = cbor4ii::serde::from_slice(body).ok()?;
        (ix.record == *record && !ix.from_empty && !ix.too_big).then_some(ix)
    }

    /// An empty index of `record`.
    pub fn new(record: RecordId) -> Self {
        RecordIndex {
            record,
            seen: 0,
            from_empty: true,
            last: None,
            known: HashMap::new(),
            log: Vec::new(),
            notes: HashMap::new(),
            items: HashMap::new(),
            dirty: HashSet::new(),
            queue: Vec::new(),
            all_dirty: false,
            too_big: false,
            by_type: HashMap::new(),
            by_code: HashMap::new(),
            by_original: HashMap::new(),
            by_name: HashMap::new(),
            by_date: BTreeMap::new(),
            widest: 0,
            touched: HashSet::new(),
            locked: HashMap::new(),
            type_categories: HashMap::new(),
            readers: Vec::new(),
            current: HashMap::new(),
            code_counts: HashMap::new(),
            dated: HashMap::new(),
        }
    }

    /// Whether `viewer` sees the items of type `ty` as the patient does: the patient, or
    /// a viewer who sees every entry of every category those items are in. For them the
    /// patient's counts and dates hold ([`Self::current_count`], [`Self::code_count`],
    /// [`Self::dated_matches`]).
    pub fn seen_whole(&self, ty: &str, viewer: &Viewer) -> bool {
        viewer.is_patient()
            || self
                .type_categories
                .get(ty)
                .is_none_or(|cs| cs.iter().all(|c| viewer.sees_all_of(c)))
    }

    /// How many items are current as `ty` for the patient (so for any viewer who sees
    /// every entry).
    pub fn current_count(&self, ty: &str) -> usize {
        self.current.get(ty).copied().unwrap_or(0)
    }

    fn locked_versions(record: &Record, i: &ItemIx) -> usize {
        i.versions
            .iter()
            .filter(|v| matches!(record.content_state(v), Some(ContentState::Locked)))
            .count()
    }

    fn map(&mut self, m: Map) -> &mut HashMap<String, Vec<EntryId>> {
        match m {
            Map::Type => &mut self.by_type,
            Map::Code => &mut self.by_code,
            Map::Original => &mut self.by_original,
            Map::Name => &mut self.by_name,
        }
    }

    fn post(&mut self, m: Map, key: &str, item: EntryId) {
        let v = self.map(m).entry(key.to_owned()).or_default();
        if v.last() != Some(&item) {
            v.push(item);
            self.touched.insert((m, key.to_owned()));
        }
    }

    /// Puts the postings added to in served order, without repeats.
    fn order_postings(&mut self) {
        for (m, key) in std::mem::take(&mut self.touched) {
            let mut list = self.map(m).remove(&key).unwrap_or_default();
            // Mostly in order already (entries come in causal order): a stable sort.
            list.sort_by_key(|r| self.items.get(r).map(|i| i.order));
            list.dedup();
            self.map(m).insert(key, list);
        }
    }

    /// Whether the record is too big to index ([`MAX_INDEXED_ITEMS`]).
    pub fn too_big(&self) -> bool {
        self.too_big
    }

    /// Brings the index up to the record (see the module docs; `Err` once `stop` is
    /// cancelled, leaving it consistent: the next use goes on from there).
    pub fn catch_up(&mut self, record: &Record, stop: &Cancel) -> Result<(), Cancelled> {
        self.catch_up_within(record, stop, usize::MAX).map(|_| ())
    }

    /// [`RecordIndex::catch_up`] doing at most about `steps` entries and items (the
    /// background build's slice of work: it lets go of the record between slices). Returns
    /// whether the index is caught up; if not, it is left consistent and the next call (or
    /// any read, which catches up fully) goes on from there.
    pub fn catch_up_within(
        &mut self,
        record: &Record,
        stop: &Cancel,
        steps: usize,
    ) -> Result<bool, Cancelled> {
        let mut budget = steps;
        let stale = record.id() != self.record
            || self.seen > record.len()
            || (self.seen > 0
                && record.entries_since(self.seen - 1).next().map(|v| v.id()) != self.last);
        if stale {
            *self = RecordIndex::new(record.id());
        }
        for a in record.unlockers() {
            if !self.readers.contains(&a) {
                self.readers.push(a);
            }
        }
        for v in record.entries_since(self.seen) {
            if budget == 0 {
                return Ok(false);
            }
            budget -= 1;
            stop.check()?;
            self.take(record, &v);
            self.seen += 1;
            self.last = Some(v.id());
            if self.too_big {
                return Ok(true);
            }
        }
        if self.known.len() != record.len() && !self.from_empty {
            // Taken in out of step with the record: start again.
            *self = RecordIndex::new(record.id());
            return self.catch_up_within(record, stop, steps);
        }
        let opened: Vec<EntryId> = self
            .locked
            .iter()
            .filter(|(root, n)| {
                self.items
                    .get(root)
                    .is_some_and(|i| Self::locked_versions(record, i) != **n)
            })
            .map(|(root, _)| *root)
            .collect();
        self.dirty.extend(opened);
        let done = self.settle(record, stop, budget)?;
        if done {
            // Put in order once caught up (not at every slice of a build).
            self.order_postings();
            self.from_empty = false;
        }
        Ok(done)
    }

    fn take(&mut self, record: &Record, v: &cophr_protocol::entry::Verified) {
        let id = v.id();
        let e = v.entry();
        let rid = record.id();
        let root_of = |ix: &Self, t: &EntryId| {
            ix.known
                .get(t)
                .copied()
                .flatten()
                .or_else(|| ix.notes.get(t).copied())
        };
        let target = match &e.payload {
            Payload::Genesis { .. } | Payload::Profile(_) => Target::Patient,
            Payload::Grant(_) => Target::Consent(id),
            Payload::Revoke { grant, .. } => Target::Consent(*grant),
            Payload::Annotate { target, .. } | Payload::SealedAnnotate { target, .. } => {
                match root_of(self, target) {
                    Some(root) => {
                        self.notes.insert(id, root);
                        Target::Note(root)
                    }
                    None => Target::None,
                }
            }
            Payload::Create { .. } | Payload::SealedCreate { .. } => Target::Version(id),
            Payload::Amend { target, .. }
            | Payload::SealedAmend { target, .. }
            | Payload::Delete { target, .. }
            | Payload::SealedDelete { target, .. } => {
                match self.known.get(target).copied().flatten() {
                    Some(root) => Target::Version(root),
                    None => Target::None,
                }
            }
            _ => Target::None,
        };
        if !matches!(
            &e.payload,
            Payload::Create { .. } | Payload::SealedCreate { .. }
        ) || self.items.len() < MAX_INDEXED_ITEMS
        {
            self.log.push((id, e.time, target));
        }
        let item = match &e.payload {
            Payload::Create { category, .. } | Payload::SealedCreate { category, .. } => {
                if self.items.len() >= MAX_INDEXED_ITEMS {
                    self.too_big = true;
                    return;
                }
                self.items.insert(
                    id,
                    ItemIx {
                        order: (rank(category), e.time, id),
                        versions: vec![id],
                        settled: Settled::Hidden,
                        hist: None,
                    },
                );
                Some(id)
            }
            Payload::Amend { target, .. }
            | Payload::SealedAmend { target, .. }
            | Payload::Delete { target, .. }
            | Payload::SealedDelete { target, .. } => {
                let root = self.known.get(target).copied().flatten();
                if let Some(i) = root.and_then(|r| self.items.get_mut(&r)) {
                    i.versions.push(id);
                }
                root
            }
            Payload::Annotate { .. } | Payload::SealedAnnotate { .. } => {
                self.known.insert(id, None);
                return;
            }
            Payload::Profile(_) | Payload::Grant(_) => {
                self.known.insert(id, None);
                return;
            }
            _ => {
                // May change what is in effect or readable anywhere in the record.
                self.all_dirty = true;
                self.known.insert(id, None);
                return;
            }
        };
        self.known.insert(id, item);
        let Some(root) = item else { return };
        self.dirty.insert(root);
        // Post this version's keys (a superset: never removed).
        let category = record.category_of(&root).cloned();
        let body = match record.payload(&id).as_deref() {
            Some(Payload::Create { body, .. } | Payload::Amend { body, .. }) => Some(body.clone()),
            _ => None,
        };
        if let (Some(c), Some(b)) = (category, body) {
            if let Some(k) = keys_of(&rid, &root, &c, &b) {
                self.post_keys(root, &c, &k);
            }
        }
    }

    fn post_keys(&mut self, root: EntryId, category: &Category, k: &Keys) {
        self.post(Map::Type, &k.ty, root);
        if k.referral {
            self.post(Map::Type, "ServiceRequest", root);
        }
        for ty in [Some(k.ty.as_str()), k.referral.then_some("ServiceRequest")]
            .into_iter()
            .flatten()
        {
            let cs = self.type_categories.entry(ty.to_owned()).or_default();
            if !cs.contains(category) {
                cs.insert(category.clone());
            }
        }
        for (_, code) in &k.search.codes {
            self.post(Map::Code, code, root);
        }
        if let Some(o) = &k.original_id {
            self.post(Map::Original, o, root);
        }
        for n in &k.names {
            self.post(Map::Name, n, root);
        }
        if let Some(d) = k.date {
            let v = self.by_date.entry(d.lo).or_default();
            if v.last() != Some(&root) {
                v.push(root);
            }
            self.widest = self.widest.max(d.hi.saturating_sub(d.lo));
        }
    }

    /// Settles the dirty items, at most `steps` of them (`Ok(true)`: all settled).
    fn settle(&mut self, record: &Record, stop: &Cancel, steps: usize) -> Result<bool, Cancelled> {
        if self.all_dirty {
            // Every item, as dirty ones: settled in slices, what is done stays done.
            let all: Vec<EntryId> = self.items.keys().copied().collect();
            self.dirty.extend(all);
            self.all_dirty = false;
        }
        let full = record.viewer(&record.current_patient_key(), Timestamp::MAX);
        let rid = record.id();
        let mut n = 0;
        loop {
            if self.queue.is_empty() {
                if self.dirty.is_empty() {
                    return Ok(true);
                }
                self.queue = self.dirty.drain().collect();
            }
            if n >= steps {
                return Ok(false);
            }
            n += 1;
            let Some(&root) = self.queue.last() else {
                continue;
            };
            stop.check()?;
            let settled = match fold::item(record, &full, &root) {
                Some(ItemState::Current(i)) => match keys_of(&rid, &root, &i.category, &i.body) {
                    Some(k) => Settled::Current {
                        current: i.current,
                        keys: Box::new(k),
                    },
                    None => Settled::Hidden,
                },
                Some(ItemState::Deleted) => Settled::Deleted,
                Some(ItemState::Locked) | None => Settled::Hidden,
            };
            let many = self.items.get(&root).is_some_and(|i| i.versions.len() > 1);
            let hist = (many || settled == Settled::Deleted).then(|| {
                let vs = view::versions_named(record, &full, &root, "", &|_| HashMap::new());
                Box::new(Hist {
                    versions: vs.iter().map(|v| (v.time, v.n, v.entry)).collect(),
                    shown: vs.iter().rev().find_map(|v| {
                        v.resource.as_ref()?["resourceType"]
                            .as_str()
                            .map(str::to_owned)
                    }),
                })
            });
            if let Some(i) = self.items.get_mut(&root) {
                i.hist = hist;
            }
            self.locked.remove(&root);
            if let Some(i) = self.items.get(&root) {
                let n = Self::locked_versions(record, i);
                if n > 0 {
                    self.locked.insert(root, n);
                }
            }
            if let Settled::Current { keys, .. } = &settled {
                let k = keys.as_ref().clone();
                if let Some(c) = record.category_of(&root).cloned() {
                    self.post_keys(root, &c, &k);
                }
            }
            if let Some(i) = self.items.get_mut(&root) {
                let order = i.order;
                let old = std::mem::replace(&mut i.settled, Settled::Hidden);
                for (s, up) in [(&old, false), (&settled, true)] {
                    if let Settled::Current { keys, .. } = s {
                        self.count(keys, order, up);
                    }
                }
                if let Some(i) = self.items.get_mut(&root) {
                    i.settled = settled;
                }
            }
            self.queue.pop();
        }
    }

    /// Counts (`up`) or uncounts an item current for the patient as `keys` says.
    fn count(&mut self, keys: &Keys, order: Order, up: bool) {
        let mut types = vec![keys.ty.as_str()];
        if keys.referral {
            types.push("ServiceRequest");
        }
        let mut codes = BTreeSet::new();
        for (sys, code) in &keys.search.codes {
            codes.insert((None, code.as_str()));
            codes.insert((Some(sys.as_deref().unwrap_or_default()), code.as_str()));
        }
        let bump = |n: &mut usize| *n = if up { *n + 1 } else { n.saturating_sub(1) };
        for t in types {
            bump(self.current.entry(t.to_owned()).or_default());
            for (sys, code) in &codes {
                let key = (t.to_owned(), sys.map(str::to_owned), (*code).to_owned());
                bump(self.code_counts.entry(key).or_default());
            }
            if let Some(d) = keys.date {
                let set = self.dated.entry(t.to_owned()).or_default();
                if up {
                    set.insert((d.lo, d.hi, order));
                } else {
                    set.remove(&(d.lo, d.hi, order));
                }
            }
        }
    }

    /// How many items are current as `ty` for the patient with a code `token` matches
    /// (`None`: the token names no code, so it is not counted here).
    pub fn code_count(&self, ty: &str, token: &Token) -> Option<usize> {
        let code = token.code.as_ref()?;
        let key = (ty.to_owned(), token.system.clone(), code.clone());
        Some(self.code_counts.get(&key).copied().unwrap_or(0))
    }

    /// The items current as `ty` for the patient whose date matches every one of `dates`
    /// (not empty), in served order: read from the dates alone, no item visited.
    pub fn dated_matches(&self, ty: &str, dates: &[search::DateParam]) -> Vec<EntryId> {
        let Some(set) = self.dated.get(ty) else {
            return Vec::new();
        };
        let Some((lo, hi)) = self.date_window(dates) else {
            return Vec::new();
        };
        let mut out: Vec<Order> = set
            .range((lo, i64::MIN, FIRST)..(hi, i64::MIN, FIRST))
            .filter(|(l, h, _)| {
                let r = Range { lo: *l, hi: *h };
                dates.iter().all(|d| d.matches(r))
            })
            .map(|(_, _, o)| *o)
            .collect();
        out.sort_unstable();
        out.into_iter().map(|o| o.2).collect()
    }

    /// The starts of the dates that can match every one of `dates` (`lo..hi`), from the
    /// widest range posted; `None` if none can.
    fn date_window(&self, dates: &[search::DateParam]) -> Option<(i64, i64)> {
        let (mut lo, mut hi) = (i64::MIN, i64::MAX);
        let w = self.widest;
        for d in dates {
            let p = d.range;
            let (l, h) = match d.prefix {
                search::Prefix::Eq => (p.lo, p.hi),
                search::Prefix::Ne => (i64::MIN, i64::MAX),
                search::Prefix::Gt => (p.hi.saturating_sub(w), i64::MAX),
                search::Prefix::Ge => (p.lo.min(p.hi.saturating_sub(w)), i64::MAX),
                search::Prefix::Sa => (p.hi, i64::MAX),
                search::Prefix::Lt | search::Prefix::Eb => (i64::MIN, p.lo),
                search::Prefix::Le => (i64::MIN, p.hi),
            };
            lo = lo.max(l);
            hi = hi.min(h);
        }
        (lo < hi).then_some((lo, hi))
    }

    /// The items any version of which had the code `code`, in served order.
    pub fn with_code(&self, code: &str) -> &[EntryId] {
        self.by_code.get(code).map_or(&[], Vec::as_slice)
    }

    /// Every entry taken in, in the record's order: its time and what its Provenance
    /// targets.
    pub fn log(&self) -> &[(EntryId, Timestamp, Target)] {
        &self.log
    }

    /// An item.
    pub fn item(&self, root: &EntryId) -> Option<&ItemIx> {
        self.items.get(root)
    }

    /// Whether the viewer's fold of the item is the patient's: the viewer sees every valid
    /// version of it (and so the settled state is exact for them).
    pub fn exact_for(&self, record: &Record, viewer: &Viewer, i: &ItemIx) -> bool {
        viewer.is_patient()
            || i.versions
                .iter()
                .all(|v| record.status(v) != Some(&Status::Valid) || record.can_see(viewer, v))
    }

    /// The item as the viewer sees it, if current: its version in effect and keys, from
    /// the settled state when exact for the viewer, else folded for them.
    pub fn current_for(
        &self,
        record: &Record,
        viewer: &Viewer,
        root: &EntryId,
    ) -> Option<(EntryId, std::borrow::Cow<'_, Keys>)> {
        let i = self.items.get(root)?;
        if !record.can_see(viewer, root) {
            return None;
        }
        if self.exact_for(record, viewer, i) {
            return match &i.settled {
                Settled::Current { current, keys } => {
                    Some((*current, std::borrow::Cow::Borrowed(keys.as_ref())))
                }
                _ => None,
            };
        }
        match fold::item(record, viewer, root)? {
            ItemState::Current(it) => {
                let k = keys_of(&record.id(), root, &it.category, &it.body)?;
                Some((it.current, std::borrow::Cow::Owned(k)))
            }
            _ => None,
        }
    }

    /// Items in served order among `roots` (deduplicated).
    fn ordered(&self, roots: impl IntoIterator<Item = EntryId>) -> Vec<EntryId> {
        let mut v: Vec<(Order, EntryId)> = roots
            .into_iter()
            .filter_map(|r| self.items.get(&r).map(|i| (i.order, r)))
            .collect();
        v.sort_unstable();
        v.dedup();
        v.into_iter().map(|(_, r)| r).collect()
    }

    /// Every item ever served as `ty`, in served order (a superset of those that are now).
    pub fn of_type(&self, ty: &str) -> &[EntryId] {
        self.by_type.get(ty).map_or(&[], Vec::as_slice)
    }

    /// The items any version of which was known by `name` (`Type/<original id>` or a
    /// `fullUrl`), in served order.
    pub fn named(&self, name: &str) -> &[EntryId] {
        self.by_name.get(name).map_or(&[], Vec::as_slice)
    }

    /// Candidates for a search on `ty` (a superset of the matches, in served order): by
    /// `_id` (entry id or original id), else by the first `code` parameter, else by the
    /// `date` parameters' bounds, else every item of the type.
    pub fn candidates(&self, ty: &str, s: &Search, primary: Option<EntryId>) -> Vec<EntryId> {
        let rid = self.record.to_string();
        if !s.ids.is_empty() {
            let mut out = Vec::new();
            for id in &s.ids {
                if *id == rid {
                    out.extend(primary);
                }
                if let Ok(e) = id.parse::<EntryId>() {
                    if self.items.contains_key(&e) {
                        out.push(e);
                    }
                }
                out.extend(self.by_original.get(id).into_iter().flatten().copied());
            }
            return self.ordered(out);
        }
        if let Some(alts) = s.codes.first() {
            if alts.iter().all(|t: &Token| t.code.is_some()) {
                let roots = alts
                    .iter()
                    .filter_map(|t| t.code.as_deref())
                    .flat_map(|c| self.by_code.get(c).into_iter().flatten().copied());
                return self.ordered(roots);
            }
        }
        if !s.dates.is_empty() {
            let Some((lo, hi)) = self.date_window(&s.dates) else {
                return Vec::new();
            };
            let roots = self
                .by_date
                .range(lo..hi)
                .flat_map(|(_, v)| v.iter().copied());
            return self.ordered(roots);
        }
        self.of_type(ty).to_vec()
    }
}

/// One record's index and when it was last used.
type Slot = (u64, Arc<Mutex<RecordIndex>>);

/// The indexes of the records the server reads (see the module docs).
#[derive(Debug, Default)]
pub struct Indexes {
    map: Mutex<HashMap<RecordId, Slot>>,
    tick: std::sync::atomic::AtomicU64,
    off: bool,
    /// Per record, how many entries its index had taken in when last saved or restored.
    saved_at: Mutex<HashMap<RecordId, usize>>,
}

impl Indexes {
    /// No index: every read scans (to measure and test against).
    pub fn off() -> Self {
        Indexes {
            off: true,
            ..Indexes::default()
        }
    }

    /// Runs `f` with `record`'s index caught up (`Ok(None)`: the record is too big to
    /// index; `Err` once `stop` is cancelled).
    pub fn with<T>(
        &self,
        record: &Record,
        stop: &Cancel,
        f: impl FnOnce(&RecordIndex) -> T,
    ) -> Result<Option<T>, Cancelled> {
        if self.off {
            return Ok(None);
        }
        let ix = self.slot(record);
        let mut ix = ix.lock().unwrap_or_else(|p| p.into_inner());
        ix.catch_up(record, stop)?;
        if ix.too_big() {
            return Ok(None);
        }
        Ok(Some(f(&ix)))
    }

    /// One slice of the background build of `record`'s index: brings it up to the record
    /// by at most about `steps` entries and items ([`RecordIndex::catch_up_within`]).
    /// Returns whether it is caught up. A read meanwhile waits at most for the slice in
    /// hand, then catches up the rest itself under its own cancellation flag, so it
    /// answers exactly as the scan either way.
    pub fn build_slice(
        &self,
        record: &Record,
        stop: &Cancel,
        steps: usize,
    ) -> Result<bool, Cancelled> {
        if self.off {
            return Ok(true);
        }
        let ix = self.slot(record);
        let mut ix = ix.lock().unwrap_or_else(|p| p.into_inner());
        ix.catch_up_within(record, stop, steps)
    }

    /// Takes `saved` as `record`'s index if none is held yet (the background build at
    /// start, before it catches up). Returns whether it was taken.
    pub fn restore(&self, record: &Record, saved: RecordIndex) -> bool {
        if self.off
            || saved.record != record.id()
            || !saved.readers.iter().all(|a| record.unlocked_for(a))
        {
            return false;
        }
        let ix = self.slot(record);
        let mut ix = ix.lock().unwrap_or_else(|p| p.into_inner());
        if ix.seen > 0 || !ix.from_empty {
            return false;
        }
        *ix = saved;
        true
    }

    /// `record`'s index saved ([`RecordIndex::to_bytes`]) with the number of entries it
    /// took in, if one is held and settled.
    pub fn saved(&self, record: &RecordId) -> Option<(usize, Vec<u8>)> {
        let slot = {
            let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.get(record)?.1.clone()
        };
        let ix = slot.lock().unwrap_or_else(|p| p.into_inner());
        Some((ix.seen, ix.to_bytes()?))
    }

    /// Notes that `record`'s index was saved (or restored) having taken in `seen`
    /// entries.
    pub fn note_saved(&self, record: &RecordId, seen: usize) {
        let mut m = self.saved_at.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(*record, seen);
    }

    /// How many entries `record`'s index had taken in when last saved or restored.
    pub fn saved_at(&self, record: &RecordId) -> Option<usize> {
        let m = self.saved_at.lock().unwrap_or_else(|p| p.into_inner());
        m.get(record).copied()
    }

    /// The records whose indexes are held.
    pub fn held(&self) -> Vec<RecordId> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.keys().copied().collect()
    }

    /// `record`'s index (a new one if none is held), marked as just used; the least
    /// recently used beyond [`MAX_INDEXED_RECORDS`] let go.
    fn slot(&self, record: &Record) -> Arc<Mutex<RecordIndex>> {
        let t = self.tick.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let slot = map
            .entry(record.id())
            .or_insert_with(|| (t, Arc::new(Mutex::new(RecordIndex::new(record.id())))));
        slot.0 = t;
        let ix = slot.1.clone();
        while map.len() > MAX_INDEXED_RECORDS {
            let Some(oldest) = map.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k) else {
                break;
            };
            map.remove(&oldest);
        }
        ix
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cophr_protocol::testkit::key;

    #[test]
    fn at_most_max_indexed_records_indexes_are_kept() {
        let ix = Indexes::default();
        let stop = Cancel::new();
        let n = MAX_INDEXED_RECORDS as u64 + 8;
        for i in 0..n {
            let r = Record::new(key(i, "patient").actor());
            assert_eq!(ix.with(&r, &stop, |_| i).unwrap(), Some(i));
        }
        let map = ix.map.lock().unwrap();
        assert_eq!(map.len(), MAX_INDEXED_RECORDS);
        // The least recently used went first.
        assert!(!map.contains_key(&key(0, "patient").actor()));
        assert!(map.contains_key(&key(n - 1, "patient").actor()));
    }

    #[test]
    fn an_index_that_is_off_answers_nothing() {
        let r = Record::new(key(1, "patient").actor());
        assert_eq!(
            Indexes::off().with(&r, &Cancel::new(), |_| 1).unwrap(),
            None
        );
    }
}
