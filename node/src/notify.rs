//! Notifications: per-person subscriptions and the notifications derived from the entries
//! a record newly holds (`docs/care-team.md`, "Notifications").
//!
//! A person (an actor this node acts as) subscribes, per record, to events — a result
//! released ([`Event::ResultReleased`]), a task's status changed ([`Event::TaskStatus`]),
//! a new message ([`Event::NewMessage`]), an appointment reminder due
//! ([`Event::ReminderDue`]), a questionnaire assigned to the person
//! ([`Event::QuestionnaireAssigned`]) or coming due ([`Event::QuestionnaireDue`]), a
//! response tripping a questionnaire's clinical flag ([`Event::QuestionnaireFlag`]) —
//! optionally narrowed to categories. A subscription to a
//! category the person may not see is refused ([`NotifyError::NotVisible`]); nothing is
//! stored.
//!
//! Notifications are *derived*, never sent: [`Notifier::process`] reads the entries the
//! record holds beyond the person's cursor (whoever wrote them, on whichever node: an
//! entry synced from another node lands in the record like a local write), keeps those the
//! person may see now ([`Record::can_see`], the same viewer rules as every read) and that a
//! subscription names, and stores each under a stable id made of its event and the entry
//! it is about, so an entry seen twice (a re-sync, a restart, two releases of one result
//! written concurrently) gives one notification. Reminders come from the viewer's fold at
//! the time of the pass ([`cophr_protocol::care::reminders`]).
//!
//! A notification says only the event, the entry id, the category and the time: no
//! clinical content, so what it shows is the entry's existence. Delivering one is a view
//! of that entry and is audited by the API that delivers it (the list and the event
//! stream), like any read.
//!
//! Everything is bounded: [`MAX_SUBSCRIPTIONS`] per person, [`MAX_NOTIFICATIONS`] kept per
//! person (the oldest dropped), [`MAX_STREAMS`] live streams per node, [`CHANNEL`] live
//! events buffered. The book of each person (subscriptions, cursors, notifications) is
//! node metadata ([`Store::set_meta`]): durable through the log, read and written back
//! under one lock per process.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use cophr_protocol::care::{self, questionnaire as q, release};
use cophr_protocol::fold::{self, Viewer};
use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, Category, EntryId, Payload, RecordId, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, OwnedSemaphorePermit, Semaphore};

use crate::store::{Store, StoreError};

/// Most subscriptions one person keeps on a node (across records).
pub const MAX_SUBSCRIPTIONS: usize = 16;
/// Most notifications kept per person (the oldest are dropped first).
pub const MAX_NOTIFICATIONS: usize = 500;
/// Most live notification streams (server-sent events) a node serves at once.
pub const MAX_STREAMS: usize = 32;
/// Live notifications buffered for a slow stream (beyond it, the stream catches up from
/// the stored list).
pub const CHANNEL: usize = 256;
/// Most notifications in one page of the list.
pub const MAX_PAGE: usize = 200;
/// Most entries read in one pass over a record (the rest in the next pass).
pub const MAX_PASS: usize = 10_000;

/// What a subscription listens for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// A clinician released a reviewed result (`lab-results`, `investigations`).
    ResultReleased,
    /// A referral or task was sent or its status changed (`tasks`).
    TaskStatus,
    /// A new message (`messages`): a message in a thread only to the thread's
    /// participants (the read rule of conversations, `protocol::care::thread`).
    NewMessage,
    /// An appointment's reminder is due (`appointments`).
    ReminderDue,
    /// A questionnaire was assigned to the person (a `questionnaire` task they own).
    QuestionnaireAssigned,
    /// A questionnaire assigned to the person is due soon or overdue
    /// ([`q::DUE_NOTICE_MS`] before the end of its due day, while open).
    QuestionnaireDue,
    /// A response tripped a clinical flag of its questionnaire (PHQ-9 question 9 above
    /// *Not at all*): only to those who may see the response.
    QuestionnaireFlag,
}

impl Event {
    /// Every event.
    pub const ALL: [Event; 7] = [
        Event::ResultReleased,
        Event::TaskStatus,
        Event::NewMessage,
        Event::ReminderDue,
        Event::QuestionnaireAssigned,
        Event::QuestionnaireDue,
        Event::QuestionnaireFlag,
    ];

    /// The stable name (`result-released`, …).
    pub fn name(self) -> &'static str {
        match self {
            Event::ResultReleased => "result-released",
            Event::TaskStatus => "task-status",
            Event::NewMessage => "new-message",
            Event::ReminderDue => "reminder-due",
            Event::QuestionnaireAssigned => "questionnaire-assigned",
            Event::QuestionnaireDue => "questionnaire-due",
            Event::QuestionnaireFlag => "questionnaire-flag",
        }
    }

    /// The event of a name.
    pub fn parse(s: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == s.trim())
    }

    /// The categories the event is about.
    pub fn categories(self) -> Vec<Category> {
        match self {
            Event::ResultReleased => release::RESULT_CATEGORIES.to_vec(),
            Event::TaskStatus => vec![Category::Tasks],
            Event::NewMessage => vec![Category::Messages],
            Event::ReminderDue => vec![Category::Appointments],
            Event::QuestionnaireAssigned | Event::QuestionnaireDue => vec![Category::Tasks],
            Event::QuestionnaireFlag => vec![Category::Questionnaires],
        }
    }
}

/// A person's subscription to events in one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Its id (`s-1`, …), unique for the person.
    pub id: String,
    /// The record.
    pub record: RecordId,
    /// The events.
    pub events: BTreeSet<Event>,
    /// The categories (each one an event of the subscription is about, and visible to
    /// the person when subscribed).
    pub categories: BTreeSet<Category>,
    /// When it was made.
    pub created: Timestamp,
}

/// One notification: which event, about which entry, in which category, when. No content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable id: the event and the entry it is about (`result-released:e-…`), so the
    /// same event about the same entry is one notification, however often it is seen.
    pub id: String,
    /// The record.
    pub record: RecordId,
    /// The event.
    pub event: Event,
    /// The entry it is about (the result released, the task version, the message, the
    /// appointment version).
    pub entry: EntryId,
    /// The entry that caused it, when that is another (the release of a result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<EntryId>,
    /// The category of `entry`.
    pub category: Category,
    /// When: the causing entry's time (its author's clock), or the reminder's time.
    pub time: Timestamp,
    /// Whether the person marked it read.
    #[serde(default)]
    pub read: bool,
}

/// Why a notification request is refused. Nothing is stored when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The person may not see a category named (or one an event is about).
    #[error("not authorised: you may not see `{0}` in this record, so you cannot subscribe to it")]
    NotVisible(Category),
    /// No access to the record at all.
    #[error("not authorised: no access to this record")]
    NoAccess,
    /// A malformed subscription (no event, a category no event is about, …).
    #[error("{0}")]
    Invalid(String),
    /// A category that no event chosen is about (a rule across the two lists).
    #[error("{0}")]
    NotAbout(String),
    /// [`MAX_SUBSCRIPTIONS`] reached.
    #[error("at most {MAX_SUBSCRIPTIONS} subscriptions per person: remove one first")]
    TooMany,
    /// No such subscription.
    #[error("no subscription {0}")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A person's subscriptions, cursors and notifications (stored as node metadata).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Book {
    subs: Vec<Subscription>,
    /// Per record: how many of its entries (in the order held) have been read.
    cursors: BTreeMap<RecordId, u64>,
    /// Oldest first.
    items: VecDeque<Notification>,
    next: u64,
}

impl Book {
    fn meta_name(me: &ActorId) -> String {
        format!("notify/{me}")
    }
}

/// A page of a person's notifications in one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Newest first.
    pub items: Vec<Notification>,
    /// Unread notifications of the record in all (not only this page).
    pub unread: usize,
    /// Notifications of the record kept in all.
    pub total: usize,
}

/// A live notification: the node (store) and person it is for, and the notification.
pub type Live = (ActorId, ActorId, Notification);

/// Every notifier of this process works under one lock (a book is read from the store,
/// changed and written back under it), so notifiers made by the HTTP API, `cophr watch`
/// and `cophr notifications` over one store never lose each other's changes, and an
/// event is stored (and sent live) once.
static BOOKS: Mutex<()> = Mutex::new(());

/// The live channel of this process (every store's notifications, tagged with its node).
fn live_channel() -> &'static broadcast::Sender<Live> {
    static LIVE: OnceLock<broadcast::Sender<Live>> = OnceLock::new();
    LIVE.get_or_init(|| broadcast::channel(CHANNEL).0)
}

/// Subscriptions and notifications of the people this node acts as. Cheap to make: the
/// books live in the store, the live channel is the process's.
pub struct Notifier {
    store: Store,
    streams: Arc<Semaphore>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier").finish_non_exhaustive()
    }
}

/// The notifications `me` gets from the entries `ids` of `r` (in the order given), for
/// these subscriptions of `r`: only entries `v` (the person's viewer now) may see, not
/// written by `me`, and events a subscription names in one of its categories. Pure: the
/// caller stores and dedups.
pub fn derive(
    r: &Record,
    v: &Viewer,
    me: &ActorId,
    subs: &[&Subscription],
    ids: &[EntryId],
) -> Vec<Notification> {
    let wants = |ev: Event, c: &Category| {
        subs.iter()
            .any(|s| s.events.contains(&ev) && s.categories.contains(c))
    };
    let mut out = Vec::new();
    for id in ids {
        let Some(e) = r.get(id) else { continue };
        let entry = e.entry();
        if entry.author == *me || !r.can_see(v, id) || r.others_conversation(v, id) {
            continue;
        }
        let Some(payload) = r.payload(id) else {
            continue;
        };
        let mut found: Vec<(Event, EntryId, Option<EntryId>, Category)> = Vec::new();
        match &*payload {
            Payload::Annotate { target, text } if release::is_release(text) => {
                let Some(c) = r.category_of(target) else {
                    continue;
                };
                if !release::is_result_category(c) || !r.can_see(v, target) {
                    continue;
                }
                found.push((Event::ResultReleased, *target, Some(*id), c.clone()));
            }
            p if p.is_create() || p.is_amend() => {
                let Some(c) = r.category_of(id) else { continue };
                match c {
                    Category::Tasks => {
                        if !task_status_unchanged(r, p) {
                            found.push((Event::TaskStatus, *id, None, c.clone()));
                        }
                        if p.is_create() && assigned_to(r, me, p) {
                            found.push((Event::QuestionnaireAssigned, *id, None, c.clone()));
                        }
                    }
                    Category::Messages if p.is_create() => {
                        found.push((Event::NewMessage, *id, None, c.clone()));
                    }
                    Category::Questionnaires
                        if p.is_create() && !q::flags_of_response(r, id).is_empty() =>
                    {
                        found.push((Event::QuestionnaireFlag, *id, None, c.clone()));
                    }
                    _ => continue,
                }
            }
            _ => continue,
        };
        for (event, about, by, category) in found {
            if !wants(event, &category) {
                continue;
            }
            out.push(Notification {
                id: format!("{}:{about}", event.name()),
                record: r.id(),
                event,
                entry: about,
                by,
                category,
                time: entry.time,
                read: false,
            });
        }
    }
    out
}

/// Whether `who` is someone `me` acts as in `r`: `me`, the patient when `me` is one of his
/// keys, or a person whose device `me` is.
fn acts_as(r: &Record, me: &ActorId, who: &ActorId) -> bool {
    who == me || (*who == r.id() && r.is_patient(me)) || r.owners_of(me).contains(who)
}

/// Whether a task's create is a questionnaire assigned to (owned by) someone `me` acts as.
fn assigned_to(r: &Record, me: &ActorId, p: &Payload) -> bool {
    if !p.is_create() {
        return false;
    }
    task_fields(p).is_some_and(|t| t.kind == q::TASK_KIND && acts_as(r, me, &t.owner))
}

/// A task version's lifecycle fields: from its body, or for a sealed task not opened here
/// from the fields signed in clear beside it (`docs/care-team.md`, "Sealed tasks").
fn task_fields(p: &Payload) -> Option<cophr_protocol::care::TaskClear> {
    match p {
        Payload::Create { body, .. } | Payload::Amend { body, .. } => {
            cophr_protocol::care::TaskClear::of_body(body).ok()
        }
        Payload::SealedCreate { content, .. } | Payload::SealedAmend { content, .. } => {
            content.task.clone()
        }
        _ => None,
    }
}

/// The reminders of questionnaires assigned to `me` coming due at `now` (from the viewer's
/// fold), if a subscription names them.
fn questionnaires_due(
    r: &Record,
    v: &Viewer,
    me: &ActorId,
    subs: &[&Subscription],
    now: Timestamp,
) -> Vec<Notification> {
    if !subs.iter().any(|s| {
        s.events.contains(&Event::QuestionnaireDue) && s.categories.contains(&Category::Tasks)
    }) || v.level_on(&Category::Tasks).is_none()
    {
        return Vec::new();
    }
    let state = fold::current(r, v);
    q::due_reminders(&state, now, &|who| acts_as(r, me, who))
        .into_iter()
        .map(|d| Notification {
            id: format!("{}:{}:{}", Event::QuestionnaireDue.name(), d.task, d.due),
            record: r.id(),
            event: Event::QuestionnaireDue,
            entry: d.version,
            by: None,
            category: Category::Tasks,
            time: d.at,
            read: false,
        })
        .collect()
}

/// Whether a task version keeps the status of the version it amends (an edit, not a step).
fn task_status_unchanged(r: &Record, p: &Payload) -> bool {
    let (Payload::Amend { target, .. } | Payload::SealedAmend { target, .. }) = p else {
        return false;
    };
    let status = |p: &Payload| task_fields(p).map(|t| t.status);
    match r.payload(target) {
        Some(before) => status(&before).is_some() && status(&before) == status(p),
        None => false,
    }
}

/// The reminders due now for `me` (from the viewer's fold) that a subscription names.
fn reminders_due(
    r: &Record,
    v: &Viewer,
    subs: &[&Subscription],
    now: Timestamp,
) -> Vec<Notification> {
    if !subs.iter().any(|s| {
        s.events.contains(&Event::ReminderDue) && s.categories.contains(&Category::Appointments)
    }) || v.level_on(&Category::Appointments).is_none()
    {
        return Vec::new();
    }
    let state = fold::current(r, v);
    care::reminders(&state, now, 0)
        .into_iter()
        .filter(|d| d.due)
        .filter_map(|d| {
            let item = state.items.iter().find(|i| i.id == d.appointment)?;
            Some(Notification {
                id: format!(
                    "{}:{}:{}",
                    Event::ReminderDue.name(),
                    item.current,
                    d.before
                ),
                record: r.id(),
                event: Event::ReminderDue,
                entry: item.current,
                by: None,
                category: Category::Appointments,
                time: d.at,
                read: false,
            })
        })
        .collect()
}

impl Notifier {
    /// A notifier over `store`'s metadata.
    pub fn new(store: Store) -> Self {
        Notifier {
            store,
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    /// Runs `f` on `me`'s book (loaded from the store the first time); `f` says whether it
    /// changed it, and a changed book is stored before the answer is returned.
    fn with_book<T>(
        &self,
        me: &ActorId,
        f: impl FnOnce(&mut Book) -> Result<(T, bool), NotifyError>,
    ) -> Result<T, NotifyError> {
        let _lock = BOOKS.lock().unwrap_or_else(|p| p.into_inner());
        let mut book = match self.store.meta(&Book::meta_name(me))? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "a notification book could not be read; starting afresh");
                Book::default()
            }),
            None => Book::default(),
        };
        let (out, changed) = f(&mut book)?;
        if changed {
            let bytes = serde_json::to_vec(&book)
                .map_err(|e| NotifyError::Invalid(format!("cannot encode notifications: {e}")))?;
            self.store.set_meta(&Book::meta_name(me), &bytes)?;
        }
        Ok(out)
    }

    /// Subscribes `me` to `events` in `record`, narrowed to `categories` (empty: every
    /// category the events are about). Every category must be visible to `me` now.
    pub fn subscribe(
        &self,
        me: &ActorId,
        record: &RecordId,
        events: &[Event],
        categories: &[Category],
        now: Timestamp,
    ) -> Result<Subscription, NotifyError> {
        if events.is_empty() {
            return Err(NotifyError::Invalid(format!(
                "name at least one event: {}",
                Event::ALL.map(Event::name).join(", ")
            )));
        }
        let events: BTreeSet<Event> = events.iter().copied().collect();
        let about: BTreeSet<Category> = events.iter().flat_map(|e| e.categories()).collect();
        let categories: BTreeSet<Category> = if categories.is_empty() {
            about.clone()
        } else {
            categories.iter().cloned().collect()
        };
        if let Some(c) = categories.iter().find(|c| !about.contains(c)) {
            return Err(NotifyError::NotAbout(format!(
                "no event chosen is about `{c}` (the events are about {})",
                about
                    .iter()
                    .map(Category::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let len = self.store.with_record(record, |r| {
            let v = r.viewer(me, now);
            if !v.has_access() {
                return Err(NotifyError::NoAccess);
            }
            if let Some(c) = categories.iter().find(|c| v.level_on(c).is_none()) {
                return Err(NotifyError::NotVisible(c.clone()));
            }
            Ok(r.len())
        })??;
        self.with_book(me, |b| {
            if b.subs.len() >= MAX_SUBSCRIPTIONS {
                return Err(NotifyError::TooMany);
            }
            if !b.subs.iter().any(|s| s.record == *record) {
                // From now on: what the record already holds is not news.
                b.cursors.insert(*record, len as u64);
            }
            b.next += 1;
            let s = Subscription {
                id: format!("s-{}", b.next),
                record: *record,
                events,
                categories,
                created: now,
            };
            b.subs.push(s.clone());
            Ok((s, true))
        })
    }

    /// Subscribes `me` to [`Event::QuestionnaireFlag`] in `record` unless a subscription of
    /// theirs there already names it: what assigning a questionnaire does, so the assigning
    /// clinician hears of a flag in the answers. Returns the new subscription, if one was
    /// made.
    pub fn follow_flags(
        &self,
        me: &ActorId,
        record: &RecordId,
        now: Timestamp,
    ) -> Result<Option<Subscription>, NotifyError> {
        let has = self.subscriptions(me, Some(record))?.iter().any(|s| {
            s.events.contains(&Event::QuestionnaireFlag)
                && s.categories.contains(&Category::Questionnaires)
        });
        if has {
            return Ok(None);
        }
        self.subscribe(me, record, &[Event::QuestionnaireFlag], &[], now)
            .map(Some)
    }

    /// `me`'s subscriptions in `record` (all records: `None`).
    pub fn subscriptions(
        &self,
        me: &ActorId,
        record: Option<&RecordId>,
    ) -> Result<Vec<Subscription>, NotifyError> {
        self.with_book(me, |b| {
            Ok((
                b.subs
                    .iter()
                    .filter(|s| record.is_none_or(|r| s.record == *r))
                    .cloned()
                    .collect(),
                false,
            ))
        })
    }

    /// Removes one of `me`'s subscriptions.
    pub fn unsubscribe(&self, me: &ActorId, id: &str) -> Result<(), NotifyError> {
        self.with_book(me, |b| {
            let before = b.subs.len();
            b.subs.retain(|s| s.id != id);
            if b.subs.len() == before {
                return Err(NotifyError::NotFound(id.chars().take(32).collect()));
            }
            Ok(((), true))
        })
    }

    /// Derives `me`'s notifications from what `record` holds beyond `me`'s cursor (and
    /// the reminders due at `now`), stores the new ones and sends them to live streams.
    /// Returns the new ones.
    pub fn process(
        &self,
        me: &ActorId,
        record: &RecordId,
        now: Timestamp,
    ) -> Result<Vec<Notification>, NotifyError> {
        if !self.store.holds(record)? {
            return Ok(Vec::new());
        }
        let node = self.store.node_id();
        let fresh = self.with_book(me, |b| {
            let subs: Vec<&Subscription> = b.subs.iter().filter(|s| s.record == *record).collect();
            if subs.is_empty() {
                return Ok((Vec::new(), false));
            }
            let from = b.cursors.get(record).copied().unwrap_or(0) as usize;
            let (len, found) = self.store.with_record(record, |r| {
                // A record removed and held again since: its backlog is not news.
                let from = if from > r.len() { r.len() } else { from };
                let ids: Vec<EntryId> = r
                    .entries_since(from)
                    .take(MAX_PASS)
                    .map(|e| e.id())
                    .collect();
                let v = r.viewer(me, now);
                let mut found = derive(r, &v, me, &subs, &ids);
                found.extend(reminders_due(r, &v, &subs, now));
                found.extend(questionnaires_due(r, &v, me, &subs, now));
                (from + ids.len(), found)
            })?;
            let mut fresh = Vec::new();
            for n in found {
                if b.items.iter().any(|x| x.id == n.id)
                    || fresh.iter().any(|x: &Notification| x.id == n.id)
                {
                    continue;
                }
                fresh.push(n);
            }
            let moved = len as u64 != b.cursors.get(record).copied().unwrap_or(0);
            b.cursors.insert(*record, len as u64);
            for n in &fresh {
                b.items.push_back(n.clone());
            }
            while b.items.len() > MAX_NOTIFICATIONS {
                b.items.pop_front();
            }
            let changed = moved || !fresh.is_empty();
            if changed {
                // Sent under the lock, once stored: in the order stored, never twice.
                for n in &fresh {
                    let _ = live_channel().send((node, *me, n.clone()));
                }
            }
            Ok((fresh, changed))
        })?;
        Ok(fresh)
    }

    /// Processes every record `me` subscribes in.
    pub fn process_all(&self, me: &ActorId, now: Timestamp) -> Result<(), NotifyError> {
        let records: BTreeSet<RecordId> = self
            .subscriptions(me, None)?
            .iter()
            .map(|s| s.record)
            .collect();
        for r in records {
            self.process(me, &r, now)?;
        }
        Ok(())
    }

    /// `me`'s notifications in `record`, newest first: those after (newer than) the one
    /// with id `after` if given and still kept (else all), at most `limit` (bounded by
    /// [`MAX_PAGE`]) from `offset`.
    pub fn list(
        &self,
        me: &ActorId,
        record: &RecordId,
        offset: usize,
        limit: usize,
    ) -> Result<Page, NotifyError> {
        self.with_book(me, |b| {
            let mine: Vec<&Notification> = b.items.iter().filter(|n| n.record == *record).collect();
            let unread = mine.iter().filter(|n| !n.read).count();
            let items = mine
                .iter()
                .rev()
                .skip(offset)
                .take(limit.min(MAX_PAGE))
                .map(|n| (*n).clone())
                .collect();
            Ok((
                Page {
                    items,
                    unread,
                    total: mine.len(),
                },
                false,
            ))
        })
    }

    /// `me`'s notifications in `record` kept after the one with id `last` (oldest first):
    /// what a stream that last saw `last` missed. An id no longer kept (or `None`): all.
    pub fn since(
        &self,
        me: &ActorId,
        record: &RecordId,
        last: Option<&str>,
    ) -> Result<Vec<Notification>, NotifyError> {
        self.with_book(me, |b| {
            let mine: Vec<&Notification> = b.items.iter().filter(|n| n.record == *record).collect();
            let from = last
                .and_then(|l| mine.iter().position(|n| n.id == l))
                .map_or(0, |i| i + 1);
            Ok((mine[from..].iter().map(|n| (*n).clone()).collect(), false))
        })
    }

    /// Marks `me`'s notifications in `record` read: those named, or all (`None`). Returns
    /// how many changed.
    pub fn mark_read(
        &self,
        me: &ActorId,
        record: &RecordId,
        ids: Option<&[String]>,
    ) -> Result<usize, NotifyError> {
        self.with_book(me, |b| {
            let mut n = 0;
            for x in b
                .items
                .iter_mut()
                .filter(|x| x.record == *record && !x.read)
            {
                if ids.is_none_or(|ids| ids.contains(&x.id)) {
                    x.read = true;
                    n += 1;
                }
            }
            Ok((n, n > 0))
        })
    }

    /// Live notifications (of every person and node of this process: keep those for
    /// [`Notifier::node`]), from now on.
    pub fn live(&self) -> broadcast::Receiver<Live> {
        live_channel().subscribe()
    }

    /// The node (store) this notifier serves, as live notifications name it.
    pub fn node(&self) -> ActorId {
        self.store.node_id()
    }

    /// A place for one live stream, if fewer than [`MAX_STREAMS`] are open.
    pub fn stream_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.streams.clone().try_acquire_owned().ok()
    }
}
