//! The care team's rules beyond a body's schema: appointments and their reminders, and the
//! lifecycle of referrals and care-team tasks (`docs/care-team.md`).
//!
//! ## Tasks
//! A task (category `tasks`; a referral is a task of kind `referral`) names its requester
//! and its owner, the party that must act. Its status moves along one path, each step
//! written by the party that took it:
//!
//! Requester and owner are actor ids for the lifecycle to apply: a task imported from FHIR
//! naming its parties otherwise (by name) passes the schema but not the gate, which refuses
//! it as [`TaskError::Field`].
//!
//! | from          | to            | written by |
//! |---------------|---------------|------------|
//! | (new)         | `sent`        | requester (the author of the create) |
//! | `sent`        | `received`    | owner      |
//! | `received`    | `accepted`    | owner      |
//! | `accepted`    | `in-progress` | owner      |
//! | `in-progress` | `completed`   | owner      |
//! | `sent`, `received` | `rejected` | owner   |
//! | any open status | `cancelled` | requester  |
//!
//! `completed`, `rejected` and `cancelled` close the task. Kind, requester and owner are fixed
//! once sent; an owner's step changes only the status and the note; a version that keeps the
//! status is an edit, the requester's alone, while the task is open. An amend builds on the
//! task's latest version in its author's causal past (never on one its author had seen
//! superseded), so no party can step a task backwards; two amends made concurrently are
//! both kept, and the fold picks one as for any item.
//!
//! [`check_task_create`] and [`check_task_step`] are pure; [`crate::record::Record::apply`]
//! calls them for every plain create and amend in `tasks`, wherever it came from, so a
//! replica refuses a bad step from the network exactly as the writer's node does. An owner's
//! step is the one case where someone other than an item's author (or their proxy) amends
//! it: the gate lets the owner amend a task only through a step these rules allow.
//!
//! ## Appointments
//! An appointment (category `appointments`) is booked by a clinician or the patient; a
//! change or a cancellation is an amend, a new version of the same item. Reminders are
//! offsets before the start (`30m`, `2h`, `1d`, `1w`; a bare number is minutes).
//! [`check_appointment_write`] refuses a reminder whose time is already before the entry's
//! own time (the author's clock, signed into the entry: the protocol has no "now" of its own,
//! and the entry's time is the same on every replica). A reminder carried over unchanged
//! from the version amended (same start, same offset) is not checked again, and a cancelled,
//! fulfilled, arrived or no-show appointment's reminders are never checked: they will not be
//! given. [`reminders`] computes the reminders due and upcoming for a viewer from the folded
//! state, the time passed in.

use std::collections::BTreeMap;
use std::fmt;

use crate::category::Category;
use crate::entry::Timestamp;
use crate::fold::State;
use crate::ids::{ActorId, EntryId};
use crate::schema::{date_time_ms, SchemaError};
use crate::value::Value;

/// The statuses of an appointment (FHIR `Appointment.status`, the subset cophr writes).
pub const APPOINTMENT_STATUSES: &[&str] = &[
    "proposed",
    "booked",
    "arrived",
    "fulfilled",
    "cancelled",
    "noshow",
];

/// The statuses whose reminders are given (and checked at write).
pub const REMINDED_STATUSES: &[&str] = &["proposed", "booked"];

/// The kinds of task.
pub const TASK_KINDS: &[&str] = &[
    "referral",
    "task",
    "blood-test-request",
    questionnaire::TASK_KIND,
];

/// Task statuses, by name, in lifecycle order ([`TaskStatus`]).
pub const TASK_STATUSES: &[&str] = &[
    "sent",
    "received",
    "accepted",
    "in-progress",
    "completed",
    "rejected",
    "cancelled",
];

/// Most reminders on one appointment.
pub const MAX_REMINDERS: usize = 8;
/// Longest reminder offset before the start, in minutes (a year).
pub const MAX_REMINDER_MINUTES: u64 = 366 * 24 * 60;
/// Most participants named on one appointment.
pub const MAX_PARTICIPANTS: usize = 32;

/// Where a task stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TaskStatus {
    /// Sent by the requester.
    Sent,
    /// The owner has it.
    Received,
    /// The owner will do it.
    Accepted,
    /// The owner is doing it.
    InProgress,
    /// Done (closed).
    Completed,
    /// The owner will not do it (closed).
    Rejected,
    /// The requester withdrew it (closed).
    Cancelled,
}

/// Who may write a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    /// The task's requester (the author of its create).
    Requester,
    /// The task's owner, who must act.
    Owner,
}

impl TaskStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Sent,
        TaskStatus::Received,
        TaskStatus::Accepted,
        TaskStatus::InProgress,
        TaskStatus::Completed,
        TaskStatus::Rejected,
        TaskStatus::Cancelled,
    ];

    /// The stable name, as in a body's `status`.
    pub fn name(self) -> &'static str {
        TASK_STATUSES[self as usize]
    }

    /// The status of a name.
    pub fn parse(s: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Whether the task is closed: nothing follows.
    pub fn is_closed(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Rejected | TaskStatus::Cancelled
        )
    }

    /// The party that may write this status.
    pub fn party(self) -> Party {
        match self {
            TaskStatus::Sent | TaskStatus::Cancelled => Party::Requester,
            _ => Party::Owner,
        }
    }

    /// The statuses that may follow this one in a task of `kind`: an assigned questionnaire
    /// (kind `questionnaire`) is completed by its owner answering it, from any open status.
    pub fn next_for(self, kind: &str) -> &'static [TaskStatus] {
        use TaskStatus::*;
        if kind != questionnaire::TASK_KIND {
            return self.next();
        }
        match self {
            Sent => &[Received, Completed, Rejected, Cancelled],
            Received => &[Accepted, Completed, Rejected, Cancelled],
            Accepted => &[InProgress, Completed, Cancelled],
            s => s.next(),
        }
    }

    /// The statuses that may follow this one.
    pub fn next(self) -> &'static [TaskStatus] {
        use TaskStatus::*;
        match self {
            Sent => &[Received, Rejected, Cancelled],
            Received => &[Accepted, Rejected, Cancelled],
            Accepted => &[InProgress, Cancelled],
            InProgress => &[Completed, Cancelled],
            Completed | Rejected | Cancelled => &[],
        }
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a task's create or amend breaks the lifecycle. Nothing is stored when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskError {
    /// A field the rules read is missing or malformed.
    #[error("task field `{0}` is missing or malformed")]
    Field(&'static str),
    /// A new task's status is not `sent`.
    #[error("a task is created with status `sent`, not `{0}`")]
    CreatedNotSent(TaskStatus),
    /// A new task names a requester other than its author.
    #[error("the task's requester ({requester}) must be the one who sends it ({author})")]
    RequesterNotAuthor {
        /// The requester named.
        requester: ActorId,
        /// The person who wrote the create.
        author: ActorId,
    },
    /// A field fixed when the task was sent (or by an owner's step) changed.
    #[error("the task's `{0}` cannot change in this version")]
    Fixed(&'static str),
    /// The task is closed.
    #[error("the task is `{0}`: it is closed, nothing more can be written")]
    Closed(TaskStatus),
    /// A status that does not follow the current one.
    #[error("a task cannot go from `{from}` to `{to}` (from `{from}`: {allowed})")]
    OutOfOrder {
        /// The status of the version amended.
        from: TaskStatus,
        /// The status written.
        to: TaskStatus,
        /// The statuses allowed next, comma separated.
        allowed: String,
    },
    /// A status only the owner may write, written by someone else.
    #[error("only the task's owner ({owner}) may mark it `{to}`")]
    NotOwner {
        /// The owner.
        owner: ActorId,
        /// The status written.
        to: TaskStatus,
    },
    /// A status only the requester may write (or an edit), written by someone else.
    #[error("only the task's requester ({requester}) may {what}")]
    NotRequester {
        /// The requester.
        requester: ActorId,
        /// What was attempted, in words.
        what: &'static str,
    },
    /// The amend builds on a version its author had already seen superseded.
    #[error(
        "version {target} is not the task's latest: {newer} supersedes it in the writer's past"
    )]
    Stale {
        /// The version amended.
        target: EntryId,
        /// A version in the writer's past that supersedes it.
        newer: EntryId,
    },
}

/// Why an appointment's create or amend is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppointmentError {
    /// A field the rules read is missing or malformed.
    #[error("appointment field `{0}` is missing or malformed")]
    Field(&'static str),
    /// A reminder whose time is already past when the entry is written.
    #[error(
        "reminder `{reminder}` before the start ({start}) is already in the past when written"
    )]
    ReminderInPast {
        /// The reminder as written.
        reminder: String,
        /// The appointment's start, as written.
        start: String,
    },
}

/// A task's fields the lifecycle reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The kind (`referral`, `task`, `blood-test-request`).
    pub kind: String,
    /// Who asked.
    pub requester: ActorId,
    /// Who must act.
    pub owner: ActorId,
    /// Where it stands.
    pub status: TaskStatus,
}

impl Task {
    /// Reads a task's body.
    ///
    /// # Errors
    /// [`TaskError::Field`] naming a field missing or malformed.
    pub fn from_body(body: &Value) -> Result<Task, TaskError> {
        let text = |k: &'static str| {
            body.get(k)
                .and_then(Value::as_text)
                .ok_or(TaskError::Field(k))
        };
        let actor = |k: &'static str| text(k)?.parse::<ActorId>().map_err(|_| TaskError::Field(k));
        Ok(Task {
            kind: text("kind")?.to_owned(),
            requester: actor("requester")?,
            owner: actor("owner")?,
            status: TaskStatus::parse(text("status")?).ok_or(TaskError::Field("status"))?,
        })
    }
}

/// A sealed task's lifecycle fields, signed in clear beside its sealed content
/// ([`crate::seal::Sealed::task`]): what the gate reads to enforce the lifecycle on every
/// replica, relays included, without the key. Everything else (description, due date, note)
/// is sealed. Readers that open the content check it agrees with this; a writer lying in
/// one of the two is flagged (`docs/care-team.md`, "Sealed tasks").
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TaskClear {
    /// The kind (one of [`TASK_KINDS`]): the order of steps depends on it.
    pub kind: String,
    /// Who asked.
    pub requester: ActorId,
    /// Who must act.
    pub owner: ActorId,
    /// Where it stands (one of [`TASK_STATUSES`]).
    pub status: String,
    /// An assigned questionnaire's published version (fixed once sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub questionnaire: Option<EntryId>,
}

impl TaskClear {
    /// The lifecycle fields of a task's body.
    ///
    /// # Errors
    /// [`TaskError::Field`] naming a field missing or malformed (a party named otherwise
    /// than by actor id, a questionnaire that is not an entry id).
    pub fn of_body(body: &Value) -> Result<TaskClear, TaskError> {
        let t = Task::from_body(body)?;
        let questionnaire = match body.get("questionnaire") {
            None => None,
            Some(q) => Some(
                q.as_text()
                    .and_then(|q| q.parse::<EntryId>().ok())
                    .ok_or(TaskError::Field("questionnaire"))?,
            ),
        };
        Ok(TaskClear {
            kind: t.kind,
            requester: t.requester,
            owner: t.owner,
            status: t.status.name().to_owned(),
            questionnaire,
        })
    }

    /// Whether its names are among the known kinds and statuses (bounded: a relay stores
    /// nothing else in clear).
    pub fn is_well_formed(&self) -> bool {
        TASK_KINDS.contains(&self.kind.as_str()) && TaskStatus::parse(&self.status).is_some()
    }

    /// As a body holding only these fields, for [`check_task_create`] and
    /// [`check_task_step`].
    pub fn to_body(&self) -> Value {
        let mut m = BTreeMap::new();
        m.insert("kind".to_owned(), Value::Text(self.kind.clone()));
        m.insert(
            "requester".to_owned(),
            Value::Text(self.requester.to_string()),
        );
        m.insert("owner".to_owned(), Value::Text(self.owner.to_string()));
        m.insert("status".to_owned(), Value::Text(self.status.clone()));
        if let Some(q) = &self.questionnaire {
            m.insert("questionnaire".to_owned(), Value::Text(q.to_string()));
        }
        Value::Map(m)
    }
}

/// What a reader finds wrong in a sealed task it opened, which the gate could not check:
/// its clear part disagrees with its sealed body, or an owner's step changed what only the
/// requester may (`before` the opened version amended, when held). `None` when it is sound.
pub fn sealed_task_flag(clear: &TaskClear, body: &Value, before: Option<&Value>) -> Option<String> {
    match TaskClear::of_body(body) {
        Err(e) => return Some(format!("its sealed task is malformed: {e}")),
        Ok(sealed) if sealed != *clear => {
            return Some(
                "its kind, parties, status or questionnaire in clear disagree with its sealed \
                 content"
                    .to_owned(),
            )
        }
        Ok(_) => {}
    }
    let before = before?;
    let (Ok(b), Ok(a)) = (Task::from_body(before), Task::from_body(body)) else {
        return None;
    };
    if a.status != b.status && a.status.party() == Party::Owner {
        for field in ["description", "due"] {
            if before.get(field) != body.get(field) {
                return Some(format!(
                    "an owner's step changed the task's `{field}`, which only its requester may"
                ));
            }
        }
    }
    None
}

/// Checks a new task written by `author` (the person: the record id for the patient, else
/// the grantee): status `sent`, requester the author.
///
/// # Errors
/// [`TaskError::CreatedNotSent`], [`TaskError::RequesterNotAuthor`], [`TaskError::Field`].
pub fn check_task_create(body: &Value, author: &ActorId) -> Result<(), TaskError> {
    let t = Task::from_body(body)?;
    if t.status != TaskStatus::Sent {
        return Err(TaskError::CreatedNotSent(t.status));
    }
    if t.kind == questionnaire::TASK_KIND
        && body
            .get("questionnaire")
            .and_then(Value::as_text)
            .and_then(|q| q.parse::<EntryId>().ok())
            .is_none()
    {
        return Err(TaskError::Field("questionnaire"));
    }
    if t.requester != *author {
        return Err(TaskError::RequesterNotAuthor {
            requester: t.requester,
            author: *author,
        });
    }
    Ok(())
}

/// Checks an amend of a task from version `before` to `after` written by `author` (the
/// person); returns the party it was written as.
///
/// # Errors
/// The [`TaskError`] naming the rule broken.
pub fn check_task_step(
    before: &Value,
    after: &Value,
    author: &ActorId,
) -> Result<Party, TaskError> {
    let (b, a) = (Task::from_body(before)?, Task::from_body(after)?);
    for (field, same) in [
        ("kind", b.kind == a.kind),
        ("requester", b.requester == a.requester),
        ("owner", b.owner == a.owner),
        (
            "questionnaire",
            before.get("questionnaire") == after.get("questionnaire"),
        ),
    ] {
        if !same {
            return Err(TaskError::Fixed(field));
        }
    }
    if b.status.is_closed() {
        return Err(TaskError::Closed(b.status));
    }
    if a.status == b.status {
        if *author != b.requester {
            return Err(TaskError::NotRequester {
                requester: b.requester,
                what: "change it without a status step",
            });
        }
        return Ok(Party::Requester);
    }
    // Who may write the status first (the party decides), then whether it may follow.
    let party = a.status.party();
    match party {
        Party::Requester if *author != b.requester => {
            return Err(TaskError::NotRequester {
                requester: b.requester,
                what: "mark it `cancelled`",
            });
        }
        Party::Owner if *author != b.owner => {
            return Err(TaskError::NotOwner {
                owner: b.owner,
                to: a.status,
            });
        }
        _ => {}
    }
    if !b.status.next_for(&b.kind).contains(&a.status) {
        return Err(TaskError::OutOfOrder {
            from: b.status,
            to: a.status,
            allowed: b
                .status
                .next_for(&b.kind)
                .iter()
                .map(|s| s.name())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    if party == Party::Owner {
        // An owner's step changes the status and the note only.
        for field in ["description", "due"] {
            if before.get(field) != after.get(field) {
                return Err(TaskError::Fixed(field));
            }
        }
    }
    Ok(party)
}

/// Minutes before the start of a reminder written `30m`, `2h`, `1d`, `1w` or `30` (minutes);
/// `None` if malformed or longer than [`MAX_REMINDER_MINUTES`].
pub fn reminder_minutes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 'm'),
    };
    if num.is_empty() || num.len() > 6 || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let per = match unit {
        'm' => 1,
        'h' => 60,
        'd' => 24 * 60,
        'w' => 7 * 24 * 60,
        _ => return None,
    };
    Some(n * per).filter(|m| *m <= MAX_REMINDER_MINUTES)
}

/// The statuses of an appointment that has a time: it needs a `start` (a proposed or
/// cancelled one may have none, as FHIR allows).
pub const TIMED_STATUSES: &[&str] = &["booked", "arrived", "fulfilled", "noshow"];

/// The appointments schema's cross-field rules: a start when booked (or after), the end not
/// before the start, reminders only with a start and well formed (at most
/// [`MAX_REMINDERS`], none twice), at most [`MAX_PARTICIPANTS`] participants.
pub(crate) fn check_appointment_fields(map: &BTreeMap<String, Value>) -> Result<(), SchemaError> {
    let rule = |m: String| Err(SchemaError::Rule(format!("appointments: {m}")));
    let time = |k: &str| map.get(k).and_then(Value::as_text).and_then(date_time_ms);
    let status = map
        .get("status")
        .and_then(Value::as_text)
        .unwrap_or_default();
    if !map.contains_key("start") {
        if TIMED_STATUSES.contains(&status) {
            return rule(format!("a `{status}` appointment needs a `start`"));
        }
        if map.contains_key("reminders") {
            return rule("reminders need a `start`".into());
        }
    }
    if let (Some(s), Some(e)) = (time("start"), time("end")) {
        if e < s {
            return rule("`end` is earlier than `start`".into());
        }
    }
    let reminders = crate::value::texts_in(map, "reminders");
    if reminders.len() > MAX_REMINDERS {
        return rule(format!(
            "at most {MAX_REMINDERS} reminders (got {})",
            reminders.len()
        ));
    }
    let mut seen = Vec::new();
    for r in &reminders {
        let Some(m) = reminder_minutes(r) else {
            return rule(format!(
                "reminder `{}` is not a time before the start: write e.g. 30m, 2h, 1d or 1w \
                 (at most {} days)",
                crate::schema::clip_quote(r),
                MAX_REMINDER_MINUTES / (24 * 60)
            ));
        };
        if seen.contains(&m) {
            return rule(format!(
                "reminder `{}` is given twice",
                crate::schema::clip_quote(r)
            ));
        }
        seen.push(m);
    }
    let with = crate::value::texts_in(map, "with");
    if with.len() > MAX_PARTICIPANTS {
        return rule(format!(
            "at most {MAX_PARTICIPANTS} participants (got {})",
            with.len()
        ));
    }
    Ok(())
}

fn start_and_reminders(body: &Value) -> Result<(i64, Vec<(String, u64)>), AppointmentError> {
    let start = body
        .get("start")
        .and_then(Value::as_text)
        .and_then(date_time_ms)
        .ok_or(AppointmentError::Field("start"))?;
    let mut out = Vec::new();
    if let Some(Value::List(l)) = body.get("reminders") {
        for r in l {
            let text = r.as_text().ok_or(AppointmentError::Field("reminders"))?;
            let m = reminder_minutes(text).ok_or(AppointmentError::Field("reminders"))?;
            out.push((text.to_owned(), m));
        }
    }
    Ok((start, out))
}

fn reminded(body: &Value) -> bool {
    body.get("status")
        .and_then(Value::as_text)
        .is_some_and(|s| REMINDED_STATUSES.contains(&s))
}

/// Checks an appointment's create (`before` `None`) or amend written at `at` (the entry's
/// own time): no reminder of a proposed or booked appointment is already due when written,
/// except one carried over unchanged from `before` (same start, same offset).
///
/// # Errors
/// [`AppointmentError::ReminderInPast`], [`AppointmentError::Field`].
pub fn check_appointment_write(
    body: &Value,
    before: Option<&Value>,
    at: Timestamp,
) -> Result<(), AppointmentError> {
    if !reminded(body) || body.get("reminders").is_none() {
        return Ok(());
    }
    let (start, list) = start_and_reminders(body)?;
    let kept = match before {
        Some(b) => match start_and_reminders(b) {
            Ok((s, l)) if s == start => l.into_iter().map(|(_, m)| m).collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    let at = i64::try_from(at).unwrap_or(i64::MAX);
    for (text, m) in list {
        let due = start.saturating_sub(i64::try_from(m).unwrap_or(i64::MAX).saturating_mul(60_000));
        if due < at && !kept.contains(&m) {
            return Err(AppointmentError::ReminderInPast {
                reminder: text,
                start: body
                    .get("start")
                    .and_then(Value::as_text)
                    .unwrap_or_default()
                    .to_owned(),
            });
        }
    }
    Ok(())
}

/// One reminder of one appointment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reminder {
    /// The appointment (its item id).
    pub appointment: EntryId,
    /// When the reminder is given (ms since the epoch).
    pub at: Timestamp,
    /// The appointment's start (ms since the epoch).
    pub start: Timestamp,
    /// The reminder as written (`1d`).
    pub before: String,
    /// The appointment's one-line summary.
    pub summary: String,
    /// Whether it is due (given, the appointment not yet started) rather than upcoming.
    pub due: bool,
}

/// The reminders of the appointments in `state` (a viewer's fold: only what they may see)
/// that are due at `now` (their time reached, the appointment not yet started) or upcoming
/// within `horizon` ms, earliest first. Appointments not proposed or booked give none.
pub fn reminders(state: &State, now: Timestamp, horizon: u64) -> Vec<Reminder> {
    let mut out = Vec::new();
    for item in state
        .items
        .iter()
        .filter(|i| i.category == Category::Appointments)
    {
        let body: &Value = &item.body;
        if !reminded(body) {
            continue;
        }
        let Ok((start, list)) = start_and_reminders(body) else {
            continue;
        };
        let Ok(start) = Timestamp::try_from(start) else {
            continue;
        };
        if start <= now {
            continue;
        }
        for (text, m) in list {
            let at = start.saturating_sub(m.saturating_mul(60_000));
            let due = at <= now;
            if due || at <= now.saturating_add(horizon) {
                out.push(Reminder {
                    appointment: item.id,
                    at,
                    start,
                    before: text,
                    summary: crate::schema::summary(&item.category, body),
                    due,
                });
            }
        }
    }
    out.sort_by(|a, b| (a.at, a.appointment, &a.before).cmp(&(b.at, b.appointment, &b.before)));
    out
}

pub mod questionnaire;
pub mod release;
pub mod thread;
pub use questionnaire::QuestionnaireError;
pub use release::ReleaseError;
pub use thread::ThreadError;

#[cfg(test)]
mod tests;
