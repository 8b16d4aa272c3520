//! A clinician's worklist (`docs/organisations.md`, "Worklist"): every record held here that
//! is shared with a viewer (a grant to the viewer, unrevoked, giving access now), each
//! summed up in one row — the patient's name and national number, what changed since the
//! viewer last looked (counted by category), lab results no clinician has reviewed yet,
//! open tasks and referrals — searchable and paged without loading any record.
//!
//! The rows are kept in a sled tree beside the index (`worklist`), per viewer and record,
//! and in memory once read. They are derived data, rebuilt from the records when missing:
//! - every frame that locates entries of a record in the index also sets a *change mark*
//!   (`w` + record → the offset of its last entry frame) in the same sled batch, so a local
//!   write, a sync ingest, an import and a replay after a crash all mark the record;
//!   a record's removal (tombstone) marks it too;
//! - before answering, [`Store::worklist`] recomputes the rows of marked records (for every
//!   viewer whose worklist is built) and clears each mark only if no newer write set it
//!   since (compare-and-swap on the offset);
//! - a row also says until when its access holds unchanged (a grant's expiry or start):
//!   past that time the row is recomputed;
//! - a viewer's first worklist builds every row from the records (once; then it is read
//!   from the tree at start-up).
//!
//! The "last looked" marker is per viewer and record, node metadata written through the
//! log (durable, never derived): the number of entries the record held when the viewer
//! opened it ([`Store::worklist_looked`]).

use std::collections::{BTreeMap, HashMap};

use cophr_protocol::care::Task;
use cophr_protocol::fold::{self, State, Viewer};
use cophr_protocol::record::Record;
use cophr_protocol::trust::attestation::Attributes;
use cophr_protocol::{ActorId, Category, EntryId, Payload, RecordId, Timestamp};
use serde::{Deserialize, Serialize};

use super::{key, lock, read_u64, Store, StoreError};

/// Rows in one page of the worklist unless asked otherwise.
pub const DEFAULT_PAGE_SIZE: usize = 25;
/// The most rows one page holds (a larger `limit` is refused).
pub const MAX_PAGE_SIZE: usize = 100;
/// The longest search text, in characters (a longer one is refused).
pub const MAX_QUERY_CHARS: usize = 64;
/// The most categories a row counts changes in (every built-in one fits; extensions
/// beyond are summed under `other`).
pub const MAX_CHANGED_CATEGORIES: usize = 32;

/// The sled tree holding the rows.
const TREE: &str = "worklist";
/// Tag of a row key in the tree: `s` + viewer + record.
const ROW: u8 = b's';
/// Tag of a built marker in the tree: `b` + viewer.
const BUILT: u8 = b'b';
/// Tag of a change mark in the index: `w` + record → offset.
pub(super) const MARK: u8 = b'w';
/// The metadata name prefix of "last looked" markers.
const LOOKED: &str = "worklist-looked/";

/// Why a worklist question is refused.
#[derive(Debug, thiserror::Error)]
pub enum WorklistError {
    /// The search text is longer than [`MAX_QUERY_CHARS`].
    #[error("the search text is {0} characters long; at most {MAX_QUERY_CHARS} are searched")]
    QueryTooLong(usize),
    /// The page size is 0 or larger than [`MAX_PAGE_SIZE`].
    #[error("a page holds 1 to {MAX_PAGE_SIZE} rows, not {0}")]
    PageSize(usize),
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
}

/// Where a viewer last looked at a record: how many entries it held, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Looked {
    /// The record's entry count when the viewer opened it (entries applied after that
    /// position are "changed since").
    pub position: u64,
    /// When.
    pub time: Timestamp,
}

/// One row of the worklist: what it reveals of a record shared with the viewer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The record.
    pub record: RecordId,
    /// The patient's name as their profile gives it.
    pub name: Option<String>,
    /// Surname, forename of the demographics item in effect, if the viewer may see it.
    pub demographics_name: Option<String>,
    /// The national number an attestation in the patient's profile carries (spaces
    /// removed), e.g. an NHS number.
    pub national_number: Option<String>,
    /// Entries the viewer may see, applied since the viewer last looked and written by
    /// someone else, by category name.
    pub changed: BTreeMap<String, u32>,
    /// Their total.
    pub changed_total: u32,
    /// The newest author time among them.
    pub last_change: Option<Timestamp>,
    /// When the viewer last opened the record here.
    pub looked: Option<Timestamp>,
    /// Lab results in effect that no clinician has reviewed ([`unreviewed_results`]).
    pub unreviewed_results: u32,
    /// Tasks and referrals not completed, rejected or cancelled.
    pub open_tasks: u32,
    /// The entries whose content the row shows (the demographics item in effect): what
    /// a view of the row is audited as showing.
    pub shows: Vec<EntryId>,
    /// Until when the viewer's access holds unchanged (a grant's expiry or start): the
    /// row is recomputed from then.
    pub until: Option<Timestamp>,
}

impl Summary {
    /// Whether the row asks for the clinician's attention (something changed, a result to
    /// review, a task open).
    pub fn needs_attention(&self) -> bool {
        self.changed_total > 0 || self.unreviewed_results > 0 || self.open_tasks > 0
    }

    fn matches(&self, q: &Query) -> bool {
        if q.text.is_empty() {
            return true;
        }
        let hay = |s: &Option<String>| s.as_deref().is_some_and(|s| fold_case(s).contains(&q.text));
        if hay(&self.name) || hay(&self.demographics_name) {
            return true;
        }
        !q.digits.is_empty()
            && self
                .national_number
                .as_deref()
                .is_some_and(|n| digits(n).contains(&q.digits))
    }

    fn sort_key(&self) -> (bool, String, RecordId) {
        (
            !self.needs_attention(),
            fold_case(self.name.as_deref().unwrap_or("")),
            self.record,
        )
    }
}

/// One page of a viewer's worklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    /// The rows, those needing attention first, then by name.
    pub rows: Vec<Summary>,
    /// Rows matching the search in all.
    pub total: usize,
    /// The page (0-based).
    pub page: usize,
    /// Rows per page.
    pub page_size: usize,
}

struct Query {
    text: String,
    digits: String,
}

fn fold_case(s: &str) -> String {
    s.to_lowercase()
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_alphanumeric).collect()
}

/// Checks a search text and page size against the bounds.
///
/// # Errors
/// [`WorklistError::QueryTooLong`], [`WorklistError::PageSize`].
pub fn check_query(text: &str, page_size: usize) -> Result<(), WorklistError> {
    let n = text.chars().count();
    if n > MAX_QUERY_CHARS {
        return Err(WorklistError::QueryTooLong(n));
    }
    if page_size == 0 || page_size > MAX_PAGE_SIZE {
        return Err(WorklistError::PageSize(page_size));
    }
    Ok(())
}

/// The lab results in effect (items of `lab-results` the viewer sees in `state`) that no
/// clinician has reviewed yet: none of their versions after the first was written, and
/// none of their annotations, by someone other than the patient.
///
/// This is the one place the rule lives: the worklist's count and anything else asking
/// "unreviewed?" call it (an explicit "result released after review" entry will replace
/// the annotation-or-amend test here).
pub fn unreviewed_results(r: &Record, v: &Viewer, state: &State) -> Vec<EntryId> {
    let clinician = |id: &EntryId| r.author_of_entry(id).is_some_and(|a| !r.is_patient(&a));
    state
        .in_category(&Category::LabResults)
        .filter(|item| {
            if item.annotations.iter().any(clinician) {
                return false;
            }
            if item.versions > 1 {
                let amended = fold::history_with(r, v, state, &item.id).is_some_and(|h| {
                    h.versions
                        .iter()
                        .any(|ver| ver.kind == "amend" && clinician(&ver.id))
                });
                if amended {
                    return false;
                }
            }
            true
        })
        .map(|item| item.id)
        .collect()
}

/// The tasks and referrals in `state` still open (not completed, rejected or cancelled).
/// A task whose fields do not read is counted open (someone should look at it).
pub fn open_tasks(state: &State) -> Vec<EntryId> {
    state
        .in_category(&Category::Tasks)
        .filter(|item| Task::from_body(&item.body).map_or(true, |t| !t.status.is_closed()))
        .map(|item| item.id)
        .collect()
}

/// The row of `r` for `viewer` at `now`, or `None` when the record is not shared with the
/// viewer (no grant in effect to it, nor to an organisation it joined here as a member, no
/// access now, or it is the viewer's own record).
pub fn summarise(
    r: &Record,
    viewer: &ActorId,
    looked: Option<Looked>,
    now: Timestamp,
) -> Option<Summary> {
    // Whose grants the viewer acts under: its own, and those of the organisations it has
    // joined here as a member (or the person whose device it is).
    let mut grantees = vec![*viewer];
    grantees.extend(r.owners_of(viewer));
    let until = grantees
        .iter()
        .filter_map(|g| access_changes(r, g, now))
        .min();
    // A grant to the viewer (or whom it acts for) in effect now (not revoked, started, not
    // expired): an expired grant still shows its past, but the record is no longer shared.
    let shared = grantees.iter().any(|p| {
        r.grants_of(p)
            .iter()
            .any(|g| r.grant_status(g, now).is_some_and(|s| s.is_active()))
    });
    if r.is_patient(viewer) || !shared {
        return None;
    }
    let v = r.viewer(viewer, now);
    if !v.has_access() {
        return None;
    }
    let patient = r.patient();
    let profile = r.profile(&patient, None);
    let national_number = r.latest_profile(&patient).and_then(|p| {
        p.attestations
            .iter()
            .find_map(|a| match &a.attestation.attributes {
                Attributes::Person {
                    national_number: Some(n),
                    ..
                } => Some(n.value.chars().filter(|c| !c.is_whitespace()).collect()),
                _ => None,
            })
    });
    let state = fold::current(r, &v);
    let demographics = state.in_category(&Category::Demographics).next();
    let demographics_name = demographics.and_then(|d| {
        let part = |k: &str| d.body.get(k).and_then(|x| x.as_text()).map(str::to_owned);
        match (part("surname"), part("forename")) {
            (Some(s), Some(f)) => Some(format!("{s}, {f}")),
            (s, f) => s.or(f),
        }
    });
    let mut changed: BTreeMap<String, u32> = BTreeMap::new();
    let mut total = 0u32;
    let mut last_change = None;
    let from = looked.map_or(0, |l| usize::try_from(l.position).unwrap_or(usize::MAX));
    for e in r.entries_since(from) {
        let id = e.id();
        // Record data only (not grants, revocations' parts, key wraps), by others.
        let data = matches!(
            e.entry().payload,
            Payload::Create { .. }
                | Payload::Amend { .. }
                | Payload::Delete { .. }
                | Payload::Annotate { .. }
                | Payload::SealedCreate { .. }
                | Payload::SealedAmend { .. }
                | Payload::SealedDelete { .. }
                | Payload::SealedAnnotate { .. }
        );
        if !data || e.entry().author == *viewer || !r.can_see(&v, &id) {
            continue;
        }
        let Some(c) = r.category_of(&id) else {
            continue;
        };
        let name = if changed.len() < MAX_CHANGED_CATEGORIES || changed.contains_key(c.name()) {
            c.name().to_owned()
        } else {
            "other".to_owned()
        };
        *changed.entry(name).or_default() += 1;
        total += 1;
        last_change = last_change.max(r.time_of(&id));
    }
    Some(Summary {
        record: r.id(),
        name: profile.map(|p| p.name.clone()),
        demographics_name,
        national_number,
        changed,
        changed_total: total,
        last_change,
        looked: looked.map(|l| l.time),
        unreviewed_results: count(unreviewed_results(r, &v, &state).len()),
        open_tasks: count(open_tasks(&state).len()),
        shows: demographics.map(|d| d.current).into_iter().collect(),
        until,
    })
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The first time after `now` at which a grant to `viewer` starts or ends.
fn access_changes(r: &Record, viewer: &ActorId, now: Timestamp) -> Option<Timestamp> {
    r.grants()
        .filter(|g| g.grant.grantee == *viewer)
        .flat_map(|g| [g.grant.not_before, g.grant.until])
        .flatten()
        .filter(|t| *t > now)
        .min()
}

/// The rows of each viewer read into memory (per store).
#[derive(Debug, Default)]
pub(super) struct Rows {
    by_viewer: HashMap<ActorId, BTreeMap<RecordId, Summary>>,
}

fn row_key(viewer: &ActorId, record: &RecordId) -> Vec<u8> {
    key(ROW, &[viewer.as_bytes(), record.as_bytes()])
}

fn looked_name(viewer: &ActorId, record: &RecordId) -> String {
    format!("{LOOKED}{viewer}/{record}")
}

impl Store {
    fn worklist_tree(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.db().open_tree(TREE)?)
    }

    /// Where `viewer` last looked at `record` here.
    pub fn worklist_last_looked(
        &self,
        viewer: &ActorId,
        record: &RecordId,
    ) -> Result<Option<Looked>, StoreError> {
        let Some(v) = self.meta(&looked_name(viewer, record))? else {
            return Ok(None);
        };
        match (
            v.get(..8).and_then(read_u64),
            v.get(8..16).and_then(read_u64),
        ) {
            (Some(position), Some(time)) if v.len() == 16 => Ok(Some(Looked { position, time })),
            _ => Err(StoreError::Corrupt("bad worklist marker".into())),
        }
    }

    /// Records that `viewer` opened `record` at `now`: what changed since is counted from
    /// here on. Durable (through the log); the viewer's row is recomputed.
    pub fn worklist_looked(
        &self,
        viewer: &ActorId,
        record: &RecordId,
        now: Timestamp,
    ) -> Result<Looked, StoreError> {
        let position = self.with_record(record, |r| r.len() as u64)?;
        let looked = Looked {
            position,
            time: now,
        };
        let mut value = position.to_be_bytes().to_vec();
        value.extend_from_slice(&now.to_be_bytes());
        self.set_meta(&looked_name(viewer, record), &value)?;
        let mut rows = lock(&self.inner.worklist);
        self.worklist_recompute(&mut rows, viewer, record, now)?;
        Ok(looked)
    }

    /// The row of `record` for `viewer`, brought up to date.
    pub fn worklist_row(
        &self,
        viewer: &ActorId,
        record: &RecordId,
        now: Timestamp,
    ) -> Result<Option<Summary>, StoreError> {
        let mut rows = lock(&self.inner.worklist);
        self.worklist_refresh(&mut rows, viewer, now)?;
        Ok(rows
            .by_viewer
            .get(viewer)
            .and_then(|m| m.get(record))
            .cloned())
    }

    /// One page of `viewer`'s worklist at `now`: the rows whose name, demographics name
    /// or national number contain `text` (case-insensitive; a national number compared
    /// by its letters and digits), `page_size` rows from page `page` (0-based). Rows of
    /// records that changed are brought up to date first; no record is loaded otherwise.
    ///
    /// # Errors
    /// A search text or page size beyond the bounds ([`check_query`]); the store failing.
    pub fn worklist(
        &self,
        viewer: &ActorId,
        text: &str,
        page: usize,
        page_size: usize,
        now: Timestamp,
    ) -> Result<Page, WorklistError> {
        check_query(text, page_size)?;
        let q = Query {
            text: fold_case(text.trim()),
            digits: digits(text),
        };
        let mut rows = lock(&self.inner.worklist);
        self.worklist_refresh(&mut rows, viewer, now)?;
        let all = rows.by_viewer.get(viewer);
        let mut hits: Vec<&Summary> = all
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|s| s.matches(&q))
            .collect();
        hits.sort_by_cached_key(|s| s.sort_key());
        let total = hits.len();
        let rows = hits
            .into_iter()
            .skip(page.saturating_mul(page_size))
            .take(page_size)
            .cloned()
            .collect();
        Ok(Page {
            rows,
            total,
            page,
            page_size,
        })
    }

    /// Brings `viewer`'s rows up to date: read from the tree (or built from every record
    /// the first time), then the marked records and the rows whose access changed with
    /// time recomputed.
    fn worklist_refresh(
        &self,
        rows: &mut Rows,
        viewer: &ActorId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let tree = self.worklist_tree()?;
        let marks = self.worklist_marks()?;
        if !rows.by_viewer.contains_key(viewer) {
            if tree.contains_key(key(BUILT, &[viewer.as_bytes()]))? {
                let mut mine = BTreeMap::new();
                for kv in tree.scan_prefix(key(ROW, &[viewer.as_bytes()])) {
                    let (_, v) = kv?;
                    let s: Summary = serde_json::from_slice(&v)
                        .map_err(|e| StoreError::Corrupt(format!("worklist row: {e}")))?;
                    mine.insert(s.record, s);
                }
                rows.by_viewer.insert(*viewer, mine);
            } else {
                // Built from every record; the marks seen before are then settled for
                // this viewer, so only the other built viewers recompute them.
                rows.by_viewer.insert(*viewer, BTreeMap::new());
                let built = self.records().and_then(|all| {
                    all.iter()
                        .try_for_each(|r| self.worklist_recompute(rows, viewer, r, now))
                });
                if let Err(e) = built {
                    rows.by_viewer.remove(viewer);
                    return Err(e);
                }
                tree.insert(key(BUILT, &[viewer.as_bytes()]), Vec::new())?;
                let others = self.worklist_viewers(&tree, Some(viewer))?;
                for (record, offset) in &marks {
                    for other in &others {
                        self.worklist_recompute(rows, other, record, now)?;
                    }
                    self.worklist_clear_mark(record, offset.clone())?;
                }
                return self.worklist_expired(rows, viewer, now);
            }
        }
        if !marks.is_empty() {
            let viewers = self.worklist_viewers(&tree, None)?;
            for (record, offset) in &marks {
                for v in &viewers {
                    self.worklist_recompute(rows, v, record, now)?;
                }
                self.worklist_clear_mark(record, offset.clone())?;
            }
        }
        self.worklist_expired(rows, viewer, now)
    }

    /// Recomputes the rows of `viewer` whose access changed with time.
    fn worklist_expired(
        &self,
        rows: &mut Rows,
        viewer: &ActorId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let due: Vec<RecordId> = rows
            .by_viewer
            .get(viewer)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|s| s.until.is_some_and(|t| t <= now))
            .map(|s| s.record)
            .collect();
        for record in due {
            self.worklist_recompute(rows, viewer, &record, now)?;
        }
        Ok(())
    }

    /// The viewers whose worklist is built (but `except`).
    fn worklist_viewers(
        &self,
        tree: &sled::Tree,
        except: Option<&ActorId>,
    ) -> Result<Vec<ActorId>, StoreError> {
        let mut out = Vec::new();
        for kv in tree.scan_prefix([BUILT]) {
            let (k, _) = kv?;
            let bytes: [u8; 32] = k[1..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("bad worklist key".into()))?;
            let a = ActorId(bytes);
            if Some(&a) != except {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// The change marks: records written since their rows were last computed.
    fn worklist_marks(&self) -> Result<Vec<(RecordId, sled::IVec)>, StoreError> {
        // Not while a compaction rebuilds the index.
        let _log = self.log();
        let mut out = Vec::new();
        for kv in self.db().scan_prefix([MARK]) {
            let (k, v) = kv?;
            let bytes: [u8; 32] = k[1..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("bad worklist mark".into()))?;
            out.push((ActorId(bytes), v));
        }
        Ok(out)
    }

    /// Clears a record's change mark unless a newer write set it again meanwhile.
    fn worklist_clear_mark(&self, record: &RecordId, seen: sled::IVec) -> Result<(), StoreError> {
        // A failed swap means a newer mark: it stays, and is settled next time.
        let _ = self.db().compare_and_swap(
            key(MARK, &[record.as_bytes()]),
            Some(seen),
            None::<&[u8]>,
        )?;
        Ok(())
    }

    /// Recomputes (or removes) the row of `record` for `viewer`, in the tree and, if read,
    /// in memory.
    fn worklist_recompute(
        &self,
        rows: &mut Rows,
        viewer: &ActorId,
        record: &RecordId,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let tree = self.worklist_tree()?;
        let k = row_key(viewer, record);
        let row = if self.holds(record)? {
            let looked = self.worklist_last_looked(viewer, record)?;
            self.with_record(record, |r| summarise(r, viewer, looked, now))?
        } else {
            None
        };
        let mine = rows.by_viewer.get_mut(viewer);
        match row {
            Some(s) => {
                let bytes = serde_json::to_vec(&s)
                    .map_err(|e| StoreError::Corrupt(format!("worklist row: {e}")))?;
                tree.insert(k, bytes)?;
                if let Some(m) = mine {
                    m.insert(*record, s);
                }
            }
            None => {
                tree.remove(k)?;
                if let Some(m) = mine {
                    m.remove(record);
                }
            }
        }
        Ok(())
    }

    /// Forgets the worklist rows read into memory (a test hook: the next question reads
    /// them from the tree, as after a restart).
    pub fn worklist_forget(&self) {
        lock(&self.inner.worklist).by_viewer.clear();
    }
}
