//! Conversations: threads private to their participants (`docs/care-team.md`,
//! "Conversations").
//!
//! A **thread** is started by a create in `messages` whose body names its participants
//! (`participants`: actor ids of people or organisations holding a grant that reads
//! `messages`). The patient and the thread's starter take part in every thread they are in
//! the record of, named or not. A **message** in the thread is a create in `messages`
//! whose `thread` field names the thread's start; `in-reply-to` may name an earlier entry
//! of the same thread. A **read receipt** is an annotation of a message (or of the start)
//! whose text is [`READ_MARK`].
//!
//! The rules, decided by the record on every replica (not by an interface):
//! - only participants see a thread's entries (its start, its messages, their versions and
//!   annotations): [`crate::record::Record::can_see`], so every read, every sync answer
//!   and every notification is filtered alike;
//! - only participants write into it (a message, an amend of one, an annotation or a read
//!   receipt): [`crate::record::Record::apply`] refuses the rest with
//!   [`ThreadError::NotParticipant`] — on top of the ordinary grant rules, so a participant
//!   whose grant is revoked writes nothing from the revocation on and reads nothing new
//!   (the revocation's cut);
//! - participants are fixed when the thread starts: a version of the start keeps them
//!   ([`ThreadError::ParticipantsFixed`]). Adding someone is starting a new thread with
//!   them: they read from then on, never the earlier messages, like a grant `--from-now`;
//! - a message stays in its thread ([`ThreadError::Moved`]).
//!
//! These functions are pure: they read a body. The record's side is in
//! `record/threads.rs`.

use serde::Serialize;

use crate::category::Category;
use crate::entry::Timestamp;
use crate::fold::{State, Viewer};
use crate::ids::{ActorId, EntryId};
use crate::record::Record;
use crate::value::Value;

/// The body field naming a thread's participants (on its start).
pub const PARTICIPANTS: &str = "participants";
/// The body field naming the thread a message is in.
pub const THREAD: &str = "thread";
/// The body field naming the entry a message answers.
pub const IN_REPLY_TO: &str = "in-reply-to";
/// The text of an annotation that marks a message read by its author.
pub const READ_MARK: &str = "cophr:read";
/// Most participants a thread names (besides the patient and the starter).
pub const MAX_THREAD_PARTICIPANTS: usize = 32;

/// Why a thread's entry is refused. Nothing is stored when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThreadError {
    /// A field the rules read is malformed.
    #[error("message field `{0}` is malformed")]
    Field(&'static str),
    /// Both `participants` and `thread`: an entry starts a thread or is in one.
    #[error("a message either starts a thread (participants) or is in one (thread), not both")]
    StartAndMessage,
    /// More participants than [`MAX_THREAD_PARTICIPANTS`].
    #[error("a thread names at most {MAX_THREAD_PARTICIPANTS} participants (got {0})")]
    TooManyParticipants(usize),
    /// A participant neither the patient nor holding a grant that reads `messages`.
    #[error("{0} cannot take part: they hold no grant that reads messages")]
    NoAccess(ActorId),
    /// `thread` names something that is not a thread's start held in the entry's past.
    #[error("{0} is not the start of a thread in the writer's causal past")]
    NotAThread(EntryId),
    /// The author does not take part in the thread.
    #[error("{actor} does not take part in thread {thread}")]
    NotParticipant {
        /// The thread.
        thread: EntryId,
        /// The person the author acts for.
        actor: ActorId,
    },
    /// `in-reply-to` names an entry outside the thread (or not in the writer's past).
    #[error("{0} is not an entry of this thread in the writer's causal past")]
    ReplyElsewhere(EntryId),
    /// A version of a thread's start changes its participants.
    #[error("a thread's participants are fixed when it starts: start a new thread to add someone")]
    ParticipantsFixed,
    /// A version of a message moves it to another thread (or out of one, or into one).
    #[error("a message stays in the thread it was written in")]
    Moved,
}

/// What a messages body says about threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// A message outside any thread (read by everyone who reads `messages`).
    Loose,
    /// A thread's start, naming these participants (sorted, without duplicates; the
    /// patient and the starter are not necessarily among them).
    Start(Vec<ActorId>),
    /// A message in the thread started by this entry.
    In(EntryId),
}

/// Reads a messages body's thread fields, refusing malformed ones.
pub fn shape(body: &Value) -> Result<Shape, ThreadError> {
    let parts = body.get(PARTICIPANTS);
    let thread = body.get(THREAD);
    match (parts, thread) {
        (Some(_), Some(_)) => Err(ThreadError::StartAndMessage),
        (None, None) => Ok(Shape::Loose),
        (None, Some(t)) => t
            .as_text()
            .and_then(|t| t.parse().ok())
            .map(Shape::In)
            .ok_or(ThreadError::Field(THREAD)),
        (Some(Value::List(items)), None) => {
            if items.len() > MAX_THREAD_PARTICIPANTS {
                return Err(ThreadError::TooManyParticipants(items.len()));
            }
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                let a: ActorId = i
                    .as_text()
                    .and_then(|t| t.parse().ok())
                    .ok_or(ThreadError::Field(PARTICIPANTS))?;
                out.push(a);
            }
            out.sort();
            out.dedup();
            Ok(Shape::Start(out))
        }
        (Some(_), None) => Err(ThreadError::Field(PARTICIPANTS)),
    }
}

/// The entry a body answers (`in-reply-to`, when it is an entry id).
pub fn reply_to(body: &Value) -> Option<EntryId> {
    body.get(IN_REPLY_TO)?.as_text()?.parse().ok()
}

/// Checks a new version of a messages item against the version it supersedes: a start
/// keeps its participants, a message its thread.
pub fn check_version(before: &Shape, after: &Shape) -> Result<(), ThreadError> {
    match (before, after) {
        (Shape::Start(a), Shape::Start(b)) if a == b => Ok(()),
        (Shape::Start(_), _) => Err(ThreadError::ParticipantsFixed),
        (a, b) if a == b => Ok(()),
        _ => Err(ThreadError::Moved),
    }
}

/// Whether an annotation's text is a read receipt.
pub fn is_read_mark(text: &str) -> bool {
    text == READ_MARK
}

/// One thread as a participant lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadSummary {
    /// The thread's start (its id).
    pub id: EntryId,
    /// Its subject, if the start gives one.
    pub subject: Option<String>,
    /// Who takes part (the patient as the record id), sorted.
    pub participants: Vec<ActorId>,
    /// Who started it (the person).
    pub started_by: ActorId,
    /// When it started.
    pub started: Timestamp,
    /// When its newest message was written.
    pub last: Timestamp,
    /// Its messages, the start included (deleted ones not counted).
    pub messages: usize,
    /// Of those, how many others wrote that the viewer has not marked read.
    pub unread: usize,
}

/// One message of a thread, as a participant reads it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadMessage {
    /// The message (its item id: the create).
    pub id: EntryId,
    /// Its version in effect (what a read receipt or a reply names).
    pub version: EntryId,
    /// Who wrote it (the person).
    pub author: ActorId,
    /// When it was written.
    pub time: Timestamp,
    /// Its text.
    pub text: String,
    /// The entry it answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<EntryId>,
    /// Its attachment (a document stored apart: title, media type, hash and size).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<serde_json::Value>,
    /// Who has marked it read (people, the author not counted), oldest first.
    pub read_by: Vec<ActorId>,
    /// Whether the viewer wrote it.
    pub mine: bool,
    /// Why its content is flagged (sealed content failing its rules), if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
}

/// One thread with its messages, oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ThreadView {
    /// The summary.
    #[serde(flatten)]
    pub summary: ThreadSummary,
    /// The messages, the start first.
    pub messages: Vec<ThreadMessage>,
}

/// The threads `viewer` takes part in and may see, newest activity first.
pub fn threads(r: &Record, viewer: &Viewer) -> Vec<ThreadSummary> {
    let state = crate::fold::current(r, viewer);
    let mut out: Vec<ThreadSummary> = r
        .thread_starts()
        .into_iter()
        .filter(|t| r.in_thread(viewer, t) && r.can_see(viewer, t))
        .filter_map(|t| view_in(r, viewer, &state, &t).map(|v| v.summary))
        .collect();
    out.sort_by(|a, b| b.last.cmp(&a.last).then(a.id.cmp(&b.id)));
    out
}

/// One thread as `viewer` reads it; `None` unless it is a thread the viewer takes part in
/// and may see.
pub fn thread(r: &Record, viewer: &Viewer, id: &EntryId) -> Option<ThreadView> {
    if !r.in_thread(viewer, id) || !r.can_see(viewer, id) {
        return None;
    }
    let state = crate::fold::current(r, viewer);
    view_in(r, viewer, &state, id)
}

fn view_in(r: &Record, viewer: &Viewer, state: &State, id: &EntryId) -> Option<ThreadView> {
    let participants = r.thread_participants(id)?;
    let mut me = viewer.people().to_vec();
    if viewer.is_patient() {
        me.push(r.id());
    }
    let mut start = None;
    let mut messages = Vec::new();
    for i in state.in_category(&Category::Messages) {
        if r.thread_of(&i.id) != Some(*id) {
            continue;
        }
        let body = i.body.to_value();
        let author = r.person_of(&i.current).unwrap_or(i.author);
        let read_by: Vec<ActorId> = i
            .annotations
            .iter()
            .filter(|a| r.can_see(viewer, a))
            .filter(|a| {
                matches!(r.payload(a).as_deref(),
                    Some(crate::entry::Payload::Annotate { text, .. }) if is_read_mark(text))
            })
            .filter_map(|a| r.person_of(a))
            .filter(|p| *p != author)
            .fold(Vec::new(), |mut acc, p| {
                if !acc.contains(&p) {
                    acc.push(p);
                }
                acc
            });
        if i.id == *id {
            start = Some((body.clone(), author, i.created));
        }
        messages.push(ThreadMessage {
            id: i.id,
            version: i.current,
            author,
            time: i.created,
            text: body
                .get("text")
                .and_then(Value::as_text)
                .unwrap_or_default()
                .to_owned(),
            in_reply_to: reply_to(&body),
            attachment: body.get("attachment").map(Value::to_json),
            mine: me.contains(&author),
            read_by,
            flag: i.flag.clone(),
        });
    }
    let (body, started_by, started) = start?;
    messages.sort_by_key(|m| (m.time, m.id));
    let unread = messages
        .iter()
        .filter(|m| !m.mine && !m.read_by.iter().any(|p| me.contains(p)))
        .count();
    Some(ThreadView {
        summary: ThreadSummary {
            id: *id,
            subject: body
                .get("subject")
                .and_then(Value::as_text)
                .map(str::to_owned),
            participants,
            started_by,
            started,
            last: messages.last().map_or(started, |m| m.time),
            messages: messages.len(),
            unread,
        },
        messages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;
    use serde_json::json;

    fn actor(seed: u8) -> ActorId {
        Keypair::from_secret(&[seed; 32]).actor()
    }

    #[test]
    fn shapes_are_read_and_malformed_ones_refused() {
        let a = actor(1);
        let b = actor(2);
        let start = Value::from_json(
            &json!({"text": "hi", "participants": [b.to_string(), a.to_string(), b.to_string()]}),
        );
        let mut want = vec![a, b];
        want.sort();
        assert_eq!(shape(&start), Ok(Shape::Start(want)));
        assert_eq!(
            shape(&Value::from_json(&json!({"text": "hi"}))),
            Ok(Shape::Loose)
        );
        assert_eq!(
            shape(&Value::from_json(
                &json!({"text": "x", "participants": ["nope"]})
            )),
            Err(ThreadError::Field(PARTICIPANTS))
        );
        assert_eq!(
            shape(&Value::from_json(
                &json!({"text": "x", "participants": "one"})
            )),
            Err(ThreadError::Field(PARTICIPANTS))
        );
        assert_eq!(
            shape(&Value::from_json(&json!({"text": "x", "thread": "e-nope"}))),
            Err(ThreadError::Field(THREAD))
        );
        assert_eq!(
            shape(&Value::from_json(
                &json!({"text": "x", "thread": "e", "participants": []})
            )),
            Err(ThreadError::StartAndMessage)
        );
        let many: Vec<String> = (0..=MAX_THREAD_PARTICIPANTS as u8)
            .map(|i| actor(i).to_string())
            .collect();
        assert_eq!(
            shape(&Value::from_json(
                &json!({"text": "x", "participants": many})
            )),
            Err(ThreadError::TooManyParticipants(
                MAX_THREAD_PARTICIPANTS + 1
            ))
        );
    }

    #[test]
    fn versions_keep_participants_and_threads() {
        let a = actor(1);
        let s = Shape::Start(vec![a]);
        assert_eq!(check_version(&s, &s), Ok(()));
        assert_eq!(
            check_version(&s, &Shape::Start(vec![a, actor(2)])),
            Err(ThreadError::ParticipantsFixed)
        );
        assert_eq!(
            check_version(&s, &Shape::Loose),
            Err(ThreadError::ParticipantsFixed)
        );
        assert_eq!(check_version(&Shape::Loose, &s), Err(ThreadError::Moved));
        assert_eq!(check_version(&Shape::Loose, &Shape::Loose), Ok(()));
    }
}
