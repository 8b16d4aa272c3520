//! The record's applied entries in a compact form: what its rules and sync read of every
//! entry, in about a hundred bytes.
//!
//! Entries are kept in a list in the order they were applied (a topological order), and
//! found by id through a hash table of positions in that list ([`Ix`]), so an id is held
//! once. What repeats across entries is held once and referred to by a small index: the
//! actors (authors and the people they act for), the streams and categories, the key
//! epochs. References to other entries of the record (the grant an entry is written under,
//! an item's root, the rotation a patient key came from) are positions, since an entry can
//! only refer to entries applied before it. What only a few entries have (the proxy grants
//! of an amend made for another author, the device additions behind a device's entry, a
//! void entry's revocation) lives in side tables keyed by id, flagged in the node.
//!
//! Vector clocks are shared: an entry's clock is the pointwise maximum of its parents'
//! with its own chain's component set to its sequence number. When nothing but that
//! component moved since the previous entry of its chain, which is what a run of entries by
//! one author looks like, the two share one clock allocation ([`Clocks`]).

use std::sync::Arc;

use crate::entry::{Payload, Timestamp, Verified};
use crate::ids::{ActorId, EntryId};
use crate::seal::EpochId;

use super::{HashMap, Stream};

/// A position in the record's list of entries (the order they were applied).
pub(crate) type Ix = u32;

/// No entry (an absent reference).
pub(crate) const NONE: u32 = u32::MAX;

/// No stream or category (an entry that concerns none).
pub(crate) const NO_CATEGORY: u16 = u16::MAX;

/// The kinds of entry the record's rules tell apart in a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Create,
    Amend,
    Delete,
    Annotate,
    Other,
}

impl Kind {
    pub(crate) fn of(p: &Payload) -> Kind {
        match p.kind() {
            "create" => Kind::Create,
            "amend" => Kind::Amend,
            "delete" => Kind::Delete,
            "annotate" => Kind::Annotate,
            _ => Kind::Other,
        }
    }
}

/// What the record's rules read of every entry, kept whether or not the entry itself is
/// held in memory.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) id: EntryId,
    pub(crate) seq: u64,
    pub(crate) time: Timestamp,
    /// The author ([`Interner`] position in the record's actors).
    pub(crate) author: u32,
    /// The grant it is written under ([`NONE`]: the patient's).
    pub(crate) auth: Ix,
    /// For sealed content: the epoch it is sealed under (position in the record's epochs,
    /// [`NONE`] if not sealed).
    pub(crate) epoch: u32,
    pub(crate) kind: Kind,
}

impl Header {
    pub(crate) fn is_create(&self) -> bool {
        self.kind == Kind::Create
    }
    pub(crate) fn is_amend(&self) -> bool {
        self.kind == Kind::Amend
    }
    pub(crate) fn is_delete(&self) -> bool {
        self.kind == Kind::Delete
    }
    pub(crate) fn is_annotate(&self) -> bool {
        self.kind == Kind::Annotate
    }
}

/// One applied entry with its causal bookkeeping.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) h: Header,
    /// The entry itself, unless the record is lean and this is record data (its body is
    /// read from the record's [`super::EntrySource`] when asked).
    pub(crate) e: Option<Verified>,
    /// The entry's vector clock, but for its own chain's component (see [`Node::clock`]);
    /// shared with the entries before it in its chain while it does not change.
    pub(crate) base: Arc<[u64]>,
    /// The entry's own (author, stream) chain: its component of vector clocks.
    pub(crate) chain: u32,
    pub(crate) depth: u32,
    /// For create/amend/delete: the create at the root of its version tree.
    pub(crate) root: Ix,
    /// The person the author acts for (position in the record's actors).
    pub(crate) principal: u32,
    /// For an entry by a patient key: the rotation that made it the current key ([`NONE`]
    /// for the record id's own key). For a rotation: the one that made its old key current.
    pub(crate) rotation: Ix,
    /// Its stream (position in the record's streams; the administrative stream is 0).
    pub(crate) stream: u16,
    /// Category of the data this entry is about (clinical kinds and category revokes;
    /// position in the record's streams, [`NO_CATEGORY`] if none).
    pub(crate) category: u16,
    /// Void (its status is in the record's side table).
    pub(crate) void: bool,
    /// An amend or delete of another author's entry: the proxy grants that allowed it are
    /// in the record's side table.
    pub(crate) proxied: bool,
    /// Written by a device: the device additions behind it are in the record's side table.
    pub(crate) device: bool,
}

impl Node {
    /// The entry's payload, when the entry is held in memory (always, for everything but
    /// record data in a lean record).
    pub(crate) fn payload(&self) -> Option<&Payload> {
        self.e.as_ref().map(|v| &v.entry().payload)
    }

    /// The entry's vector clock at chain `i`.
    pub(crate) fn clock(&self, i: usize) -> u64 {
        if i == self.chain as usize {
            self.h.seq
        } else {
            self.base.get(i).copied().unwrap_or(0)
        }
    }

    /// Whether `x` is in this entry's causal past (or is this entry).
    pub(crate) fn has_in_past(&self, x: &Node) -> bool {
        self.clock(x.chain as usize) >= x.h.seq
    }

    /// The width of the clock held (components beyond it are zero, but for the own one).
    pub(crate) fn width(&self) -> usize {
        self.base.len().max(self.chain as usize + 1)
    }
}

/// Values repeated across entries, held once and referred to by position.
#[derive(Debug, Clone)]
pub(crate) struct Interner<T> {
    list: Vec<T>,
    at: HashMap<T, u32>,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            list: Vec::new(),
            at: HashMap::default(),
        }
    }
}

impl<T: Clone + Eq + std::hash::Hash> Interner<T> {
    /// The position of `v`, added if new.
    pub(crate) fn intern(&mut self, v: &T) -> u32 {
        if let Some(i) = self.at.get(v) {
            return *i;
        }
        let i = self.list.len() as u32;
        self.list.push(v.clone());
        self.at.insert(v.clone(), i);
        i
    }

    /// The position of `v`, if held.
    pub(crate) fn find(&self, v: &T) -> Option<u32> {
        self.at.get(v).copied()
    }

    /// The value at a position.
    pub(crate) fn get(&self, i: u32) -> &T {
        &self.list[i as usize]
    }

    /// Every value, by position.
    pub(crate) fn list(&self) -> &[T] {
        &self.list
    }
}

/// The record's entries in the order applied, found by id.
///
/// In a record's admission part ([`super::Record::admission`]) the list holds only some of
/// the whole record's entries, each still known by its position in the whole record; a
/// lookup of any other entry, or a walk over the list, is noted as *missed* (the rules
/// then cannot decide from the part, see `record/admission.rs`).
#[derive(Clone)]
pub(crate) struct Nodes {
    list: Vec<Node>,
    /// Positions in `list`.
    index: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    part: Option<Box<Part>>,
}

/// What an admission part's list knows of the whole record.
pub(crate) struct Part {
    /// The whole record's position of each node in the list, ascending.
    ixs: Vec<Ix>,
    /// How many entries the whole record has.
    len: usize,
    /// How many lookups of something not held in the part were made (only ever grows, so
    /// a check run beside another can only see more misses than its own, never fewer).
    missed: std::sync::atomic::AtomicU64,
    /// What a missed position reads as (never used for a decision: the miss is noted).
    placeholder: Node,
}

impl Clone for Part {
    fn clone(&self) -> Self {
        Part {
            ixs: self.ixs.clone(),
            len: self.len,
            missed: std::sync::atomic::AtomicU64::new(self.missed()),
            placeholder: self.placeholder.clone(),
        }
    }
}

impl Part {
    fn missed(&self) -> u64 {
        self.missed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn miss(&self) {
        self.missed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Nodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.list.iter()).finish()
    }
}

impl Default for Nodes {
    fn default() -> Self {
        Nodes {
            list: Vec::new(),
            index: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            part: None,
        }
    }
}

impl Nodes {
    fn hash(&self, id: &EntryId) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, id)
    }

    /// A part of a whole record's list: `nodes`, each with its position in the whole
    /// record (ascending), which has `len` entries.
    pub(crate) fn part(nodes: Vec<(Ix, Node)>, len: usize, placeholder: Node) -> Nodes {
        let mut out = Nodes::default();
        let mut ixs = Vec::with_capacity(nodes.len());
        for (i, n) in nodes {
            ixs.push(i);
            out.push_listed(n);
        }
        out.part = Some(Box::new(Part {
            ixs,
            len,
            missed: std::sync::atomic::AtomicU64::new(0),
            placeholder,
        }));
        out
    }

    /// In a part: the whole record's position of each node held, in list order.
    pub(crate) fn positions(&self) -> Option<&[Ix]> {
        self.part.as_ref().map(|p| p.ixs.as_slice())
    }

    /// How many nodes are held in memory (in a part, fewer than [`Nodes::len`]).
    pub(crate) fn held(&self) -> usize {
        self.list.len()
    }

    /// Whether this is a part of a whole record's list.
    pub(crate) fn is_part(&self) -> bool {
        self.part.is_some()
    }

    /// How many misses were noted so far (compare before and after a check).
    pub(crate) fn misses(&self) -> u64 {
        self.part.as_ref().map_or(0, |p| p.missed())
    }

    /// Notes that something this part does not hold in full was read.
    pub(crate) fn note_partial(&self) {
        if let Some(p) = &self.part {
            p.miss();
        }
    }

    /// The whole record's position of the node at `k` in the list.
    fn whole(&self, k: u32) -> Ix {
        match &self.part {
            None => k,
            Some(p) => p.ixs[k as usize],
        }
    }

    /// The whole record's positions of the entries held, in the order applied (every
    /// position of a whole record).
    pub(crate) fn held_positions(&self) -> impl Iterator<Item = Ix> + '_ {
        let all = match &self.part {
            None => Some(0..self.list.len() as Ix),
            Some(_) => None,
        };
        let some = self.part.as_ref().map(|p| p.ixs.iter().copied());
        all.into_iter().flatten().chain(some.into_iter().flatten())
    }

    /// The list position of the whole record's position `i`.
    pub(crate) fn listed(&self, i: Ix) -> Option<usize> {
        match &self.part {
            None => ((i as usize) < self.list.len()).then_some(i as usize),
            Some(p) => p.ixs.binary_search(&i).ok(),
        }
    }

    /// An entry's position in the list (in a part, one it does not hold is a miss).
    fn find(&self, id: &EntryId) -> Option<usize> {
        let list = &self.list;
        let k = self
            .index
            .find(self.hash(id), |&i| list[i as usize].h.id == *id)
            .copied();
        if k.is_none() {
            self.note_partial();
        }
        k.map(|k| k as usize)
    }

    /// The position of an entry.
    pub(crate) fn ix(&self, id: &EntryId) -> Option<Ix> {
        self.find(id).map(|k| self.whole(k as u32))
    }

    pub(crate) fn get(&self, id: &EntryId) -> Option<&Node> {
        self.find(id).map(|k| &self.list[k])
    }

    pub(crate) fn get_mut(&mut self, id: &EntryId) -> Option<&mut Node> {
        let k = self.find(id)?;
        Some(&mut self.list[k])
    }

    pub(crate) fn contains_key(&self, id: &EntryId) -> bool {
        self.get(id).is_some()
    }

    /// The entry at a position (panics on a position not handed out by this list; in a
    /// part, a position it does not hold reads as a placeholder, and the miss is noted).
    pub(crate) fn at(&self, i: Ix) -> &Node {
        match (&self.part, self.listed(i)) {
            (_, Some(k)) => &self.list[k],
            (Some(p), None) => {
                p.miss();
                &p.placeholder
            }
            (None, None) => panic!("entry position {i} not handed out"),
        }
    }

    /// The id of the entry at a position, `None` for [`NONE`].
    pub(crate) fn id_at(&self, i: Ix) -> Option<EntryId> {
        (i != NONE).then(|| self.at(i).h.id)
    }

    /// The position of an entry, or [`NONE`].
    pub(crate) fn ix_or_none(&self, id: Option<&EntryId>) -> Ix {
        id.and_then(|id| self.ix(id)).unwrap_or(NONE)
    }

    /// How many entries the (whole) record has.
    pub(crate) fn len(&self) -> usize {
        match &self.part {
            None => self.list.len(),
            Some(p) => p.len,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, in the order applied (in a part: those it holds, and the walk is noted
    /// as a miss).
    pub(crate) fn values(&self) -> std::slice::Iter<'_, Node> {
        self.note_partial();
        self.list.iter()
    }

    /// Every entry, in the order applied, to change (never their ids).
    pub(crate) fn values_mut(&mut self) -> std::slice::IterMut<'_, Node> {
        self.note_partial();
        self.list.iter_mut()
    }

    /// The entries applied after the first `n` (in a part, those it holds).
    pub(crate) fn since(&self, n: usize) -> &[Node] {
        match &self.part {
            None => &self.list[n.min(self.list.len())..],
            Some(p) => {
                let k = p.ixs.partition_point(|i| (*i as usize) < n);
                if p.ixs.len() - k != p.len.saturating_sub(n) {
                    // Some entries after the first `n` are not held here.
                    p.miss();
                }
                &self.list[k..]
            }
        }
    }

    /// Adds an entry not held yet; its position.
    pub(crate) fn push(&mut self, node: Node) -> Ix {
        let i = self.take_position();
        self.push_listed(node);
        i
    }

    /// The position the next entry listed takes: its place in the list, or in a part the
    /// whole record's next position, which the part then counts.
    fn take_position(&mut self) -> Ix {
        match &mut self.part {
            None => self.list.len() as Ix,
            Some(p) => {
                let i = p.len as Ix;
                p.ixs.push(i);
                p.len += 1;
                i
            }
        }
    }

    /// Adds an entry unless one with its id is held (`None` then), in one lookup: what a
    /// restore of a million entries does a million times.
    pub(crate) fn push_new(&mut self, node: Node) -> Option<Ix> {
        let k = self.list.len() as u32;
        let h = self.hash(&node.h.id);
        let id = node.h.id;
        let (list, hasher) = (&self.list, &self.hasher);
        match self.index.entry(
            h,
            |&j| list[j as usize].h.id == id,
            |&j| std::hash::BuildHasher::hash_one(hasher, list[j as usize].h.id),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => return None,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert(k);
            }
        }
        let i = self.take_position();
        self.list.push(node);
        Some(i)
    }

    fn push_listed(&mut self, node: Node) {
        let k = self.list.len() as u32;
        let h = self.hash(&node.h.id);
        self.list.push(node);
        let (list, hasher) = (&self.list, &self.hasher);
        self.index.insert_unique(h, k, |&j| {
            std::hash::BuildHasher::hash_one(hasher, list[j as usize].h.id)
        });
    }
}

impl std::ops::Index<&EntryId> for Nodes {
    type Output = Node;
    fn index(&self, id: &EntryId) -> &Node {
        match (self.get(id), &self.part) {
            (Some(n), _) => n,
            (None, Some(p)) => &p.placeholder,
            (None, None) => panic!("entry held"),
        }
    }
}

/// Makes an entry's clock: shares the previous entry's in its chain when only the own
/// component moved.
pub(crate) fn share_clock(clock: Vec<u64>, chain: u32, prev: Option<&Node>) -> Arc<[u64]> {
    if let Some(p) = prev {
        let width = clock.len().max(p.width());
        let same = (0..width)
            .filter(|i| *i != chain as usize)
            .all(|i| clock.get(i).copied().unwrap_or(0) == p.clock(i));
        if same {
            return p.base.clone();
        }
    }
    Arc::from(clock)
}

/// The record's streams (the administrative stream first) and the categories entries are
/// about, by position.
pub(crate) fn admin_first() -> Interner<Stream> {
    let mut s = Interner::default();
    s.intern(&None);
    s
}

/// An epoch id's position, added if new.
pub(crate) type Epochs = Interner<EpochId>;

/// The actors named in the record.
pub(crate) type Actors = Interner<ActorId>;
