//! `cophr thread`: conversations private to their participants.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use crate::home::Identity;
use crate::store::Store;
use clap::{Args as ClapArgs, Subcommand};
use cophr_protocol::blob::MAX_DOCUMENT_BYTES;
use cophr_protocol::care::thread::{self as threads, ThreadSummary, ThreadView};
use cophr_protocol::entry::Payload;
use cophr_protocol::record::Record;
use cophr_protocol::schema::{self, SNIFF_BYTES};
use cophr_protocol::{ActorId, Category, EntryId, Level, RecordId, Value};
use rand_core::OsRng;
use serde_json::json;

use crate::care;
use crate::context::{self, resolve_entry, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Person, Table};
use crate::times;
use cophr_node::session::Cancel;

const AFTER_HELP: &str = "A thread is private to its participants: the patient, whoever \
starts it, and the people or organisations it names (each must hold a grant that reads \
messages). Every node refuses a message into a thread from anyone else (exit code 3) and shows a thread to no one else, whatever their grant on \
messages. Participants are fixed when it starts: to add someone, start a new thread (they \
read from then on). Revoking someone's grant ends their part in every thread from then on.

Examples:
  cophr thread start --with a-renalnurse… --subject 'Your eGFR' 'Your results are in: can we talk?'
  cophr thread start --with 'Sam Patel' 'Can we talk?'   (a grantee's name, when only one has it)
  cophr thread send e-abcdefghij 'Yes, Monday please' --reply-to e-klmnopqrst
  cophr thread send e-abcdefghij 'The letter' --attach letter.pdf
  cophr thread list
  cophr thread show e-abcdefghij
  cophr thread read e-abcdefghij";

/// Conversations: threads private to their participants, with replies, read receipts and
/// attachments.
#[derive(Subcommand, Debug)]
#[command(after_help = AFTER_HELP)]
pub enum Command {
    /// Start a thread with chosen participants (its first message)
    Start(StartArgs),
    /// Send a message into a thread you take part in
    Send(SendArgs),
    /// List the threads you take part in, newest activity first, with unread counts
    List(ListArgs),
    /// Show a thread's messages, with who has read each
    Show(ShowArgs),
    /// Mark every message of a thread read (a read receipt the senders see)
    Read(ReadArgs),
}

/// `cophr thread start`.
#[derive(ClapArgs, Debug)]
pub struct StartArgs {
    /// A participant: their actor id (`a-…`), or the name (in their profile, or their
    /// grant's label) of one of the record's grantees whose grant reads messages, case
    /// aside (refused when no grantee or more than one goes by it); repeat for more (the patient and you take part without
    /// being named)
    #[arg(long = "with", value_name = "ACTOR|NAME", required = true)]
    with: Vec<String>,
    /// The subject
    #[arg(long)]
    subject: Option<String>,
    /// The first message
    text: String,
    /// Attach a file (PDF, JPEG, PNG, DICOM, ODF, text), stored apart and sealed
    #[arg(long, value_name = "PATH")]
    attach: Option<PathBuf>,
}

/// `cophr thread send`.
#[derive(ClapArgs, Debug)]
pub struct SendArgs {
    /// The thread: its start's id, or a unique prefix as `thread list` shows
    thread: String,
    /// The message
    text: String,
    /// The message this answers (an entry of the same thread)
    #[arg(long, value_name = "ENTRY")]
    reply_to: Option<String>,
    /// Attach a file (PDF, JPEG, PNG, DICOM, ODF, text), stored apart and sealed
    #[arg(long, value_name = "PATH")]
    attach: Option<PathBuf>,
}

/// `cophr thread list`.
#[derive(ClapArgs, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    out: Out,
}

/// `cophr thread show`.
#[derive(ClapArgs, Debug)]
pub struct ShowArgs {
    /// The thread: its start's id, or a unique prefix
    thread: String,
    #[command(flatten)]
    out: Out,
}

/// `cophr thread read`.
#[derive(ClapArgs, Debug)]
pub struct ReadArgs {
    /// The thread: its start's id, or a unique prefix
    thread: String,
}

/// Runs `thread`.
pub fn run(ctx: &Ctx, command: Command) -> Result<()> {
    match command {
        Command::Start(a) => start(ctx, a),
        Command::Send(a) => send(ctx, a),
        Command::List(a) => list(ctx, a),
        Command::Show(a) => show(ctx, a),
        Command::Read(a) => mark_read(ctx, a),
    }
}

/// A thread the caller takes part in, from its id or a prefix.
fn resolve_thread(r: &Record, me: &ActorId, now: u64, text: &str) -> Result<EntryId> {
    let viewer = r.viewer(me, now);
    if !viewer.has_access() {
        return Err(CliError::access("no access to this record"));
    }
    let id = resolve_entry(r, &viewer, text)?;
    let id = r.thread_of(&id).unwrap_or(id);
    if r.thread_participants(&id).is_none() || !r.in_thread(&viewer, &id) {
        return Err(CliError::not_found(format!(
            "{} is not a thread you take part in",
            id.short()
        )));
    }
    Ok(id)
}

/// Stores a file as a document apart and returns the attachment field's value.
fn attachment(store: &Store, path: &std::path::Path) -> Result<Value> {
    let path = output::resolve(path);
    let bad = |e: std::io::Error| CliError::invalid(format!("cannot read {}: {e}", path.display()));
    let mut file = File::open(&path).map_err(bad)?;
    let size = file.metadata().map_err(bad)?.len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(CliError::invalid(format!(
            "{} is {size} bytes; an attachment may be at most {MAX_DOCUMENT_BYTES}",
            path.display()
        )));
    }
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(bad)?;
    if schema::sniff(&head).is_none() {
        return Err(CliError::invalid(format!(
            "{} is not a file of an accepted type ({})",
            path.display(),
            schema::DOCUMENT_MEDIA_TYPES.join(", ")
        )));
    }
    let file = File::open(&path).map_err(bad)?;
    let doc = store
        .import_document(file, size, &mut OsRng)
        .map_err(|e| CliError::other(format!("could not store {}: {e}", path.display())))?;
    Ok(doc.to_value())
}

/// Writes a message (a thread's start or a message in one) from its JSON fields, with an
/// attachment stored apart first. Checked against the schema before anything is stored.
fn write_message(
    ctx: &Ctx,
    store: &Store,
    me: &Identity,
    record: &RecordId,
    body: serde_json::Map<String, serde_json::Value>,
    attach: Option<PathBuf>,
) -> Result<EntryId> {
    let mut value = schema::body_from_json(&Category::Messages, &body.into())?;
    schema::validate(&Category::Messages, &value)?;
    if let Some(path) = attach {
        let doc = attachment(store, &path)?;
        if let Value::Map(m) = &mut value {
            m.insert("attachment".to_owned(), doc);
        }
    }
    context::write(
        ctx,
        store,
        me,
        record,
        Payload::Create {
            category: Category::Messages,
            body: value,
        },
    )
}

fn start(ctx: &Ctx, a: StartArgs) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let people = store.with_record(&record, |r| {
        care::named_people(r, &Category::Messages, Level::View, false)
    })?;
    let mut with = Vec::new();
    for w in &a.with {
        let who = "a grantee of this record who reads messages";
        with.push(care::person_named(&people, "--with", w, who)?.to_string());
    }
    let mut m = serde_json::Map::new();
    m.insert("text".into(), a.text.into());
    m.insert(threads::PARTICIPANTS.into(), with.into());
    if let Some(s) = a.subject {
        m.insert("subject".into(), s.into());
    }
    let id = write_message(ctx, &store, &me, &record, m, a.attach)?;
    if ctx.json {
        return output::json(&json!({ "thread": id }));
    }
    output::line(format!("Started thread {id}"))
}

fn send(ctx: &Ctx, a: SendArgs) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let (thread, reply) = store.with_record(&record, |r| -> Result<_> {
        let t = resolve_thread(r, &me.actor(), now, &a.thread)?;
        let viewer = r.viewer(&me.actor(), now);
        let reply = match &a.reply_to {
            Some(x) => Some(resolve_entry(r, &viewer, x)?),
            None => None,
        };
        Ok((t, reply))
    })??;
    let mut m = serde_json::Map::new();
    m.insert("text".into(), a.text.into());
    m.insert(threads::THREAD.into(), thread.to_string().into());
    if let Some(r) = reply {
        m.insert(threads::IN_REPLY_TO.into(), r.to_string().into());
    }
    let id = write_message(ctx, &store, &me, &record, m, a.attach)?;
    if ctx.json {
        return output::json(&json!({ "thread": thread, "entry": id }));
    }
    output::line(format!("Sent {id} in thread {}", thread.short()))
}

/// Reads as the caller, audited with `detail` and the entries `f` says it showed.
fn read_as<T>(
    ctx: &Ctx,
    f: impl FnOnce(&Record, &cophr_protocol::fold::Viewer, u64) -> Result<(T, Vec<EntryId>, String)>,
) -> Result<T> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let out = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let viewer = r.viewer(&me.actor(), now);
            if !viewer.has_access() {
                return Err(CliError::access("no access to this record"));
            }
            let (out, shown, detail) = f(r, &viewer, now)?;
            seen.add(shown);
            seen.detail(detail);
            Ok(out)
        })?
    })?;
    Ok(out)
}

fn list(ctx: &Ctx, a: ListArgs) -> Result<()> {
    let shown: Vec<(ThreadSummary, Vec<Person>)> = read_as(ctx, |r, v, _| {
        let list = threads::threads(r, v);
        let ids = list.iter().map(|t| t.id).collect();
        let n = list.len();
        let out = list
            .into_iter()
            .map(|t| {
                let people = t
                    .participants
                    .iter()
                    .map(|p| Person::of(r, p, None))
                    .collect();
                (t, people)
            })
            .collect();
        Ok((out, ids, format!("threads: {n}")))
    })?;
    if ctx.json(a.out) {
        let threads: Vec<_> = shown
            .iter()
            .map(|(t, people)| json!({"thread": t, "people": people}))
            .collect();
        return output::json(&json!({ "threads": threads }));
    }
    if shown.is_empty() {
        return output::line("No threads you take part in.");
    }
    let mut table = Table::new(&["THREAD", "SUBJECT", "WITH", "MESSAGES", "UNREAD", "LAST"]);
    for (t, people) in &shown {
        table.row(vec![
            t.id.short(),
            t.subject.clone().unwrap_or_default(),
            people
                .iter()
                .map(Person::short)
                .collect::<Vec<_>>()
                .join(", "),
            t.messages.to_string(),
            t.unread.to_string(),
            times::format(t.last),
        ]);
    }
    output::print(&table.render())
}

fn show(ctx: &Ctx, a: ShowArgs) -> Result<()> {
    let me = ctx.identity()?.actor();
    let (view, people): (ThreadView, Vec<(ActorId, Person)>) = read_as(ctx, |r, v, now| {
        let t = resolve_thread(r, &me, now, &a.thread)?;
        let view = threads::thread(r, v, &t)
            .ok_or_else(|| CliError::not_found("not a thread you take part in"))?;
        let mut shown = r.thread_entries(&t);
        shown.retain(|e| r.can_see(v, e));
        let mut people: Vec<(ActorId, Person)> = Vec::new();
        for p in view
            .summary
            .participants
            .iter()
            .chain(view.messages.iter().map(|m| &m.author))
        {
            if !people.iter().any(|(a, _)| a == p) {
                people.push((*p, Person::of(r, p, None)));
            }
        }
        let n = view.messages.len();
        Ok(((view, people), shown, format!("thread: {n} messages")))
    })?;
    if ctx.json(a.out) {
        return output::json(&json!({ "thread": view }));
    }
    let name = |a: &ActorId| {
        people
            .iter()
            .find(|(p, _)| p == a)
            .map(|(_, p)| p.short())
            .unwrap_or_else(|| a.short())
    };
    let mut text = format!(
        "Thread {}{}\nWith: {}\n\n",
        view.summary.id,
        view.summary
            .subject
            .as_ref()
            .map(|s| format!(": {s}"))
            .unwrap_or_default(),
        view.summary
            .participants
            .iter()
            .map(name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    for m in &view.messages {
        text.push_str(&format!(
            "{} {} ({}){}\n  {}\n",
            times::format(m.time),
            name(&m.author),
            m.id.short(),
            m.in_reply_to
                .map(|r| format!(", in reply to {}", r.short()))
                .unwrap_or_default(),
            m.text
        ));
        if let Some(att) = &m.attachment {
            let title = att
                .get("hash")
                .and_then(|h| h.as_str())
                .unwrap_or("a document");
            text.push_str(&format!("  [attachment {title}]\n"));
        }
        if let Some(f) = &m.flag {
            text.push_str(&format!("  [FLAGGED: {f}]\n"));
        }
        let read: Vec<String> = m.read_by.iter().map(name).collect();
        text.push_str(&format!(
            "  read by: {}\n",
            if read.is_empty() {
                "no one yet".to_owned()
            } else {
                read.join(", ")
            }
        ));
    }
    output::print(&text)
}

fn mark_read(ctx: &Ctx, a: ReadArgs) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let unread = store.with_record(&record, |r| -> Result<Vec<EntryId>> {
        let t = resolve_thread(r, &me.actor(), now, &a.thread)?;
        let v = r.viewer(&me.actor(), now);
        let view = threads::thread(r, &v, &t)
            .ok_or_else(|| CliError::not_found("not a thread you take part in"))?;
        let mut mine: Vec<ActorId> = v.people().to_vec();
        if v.is_patient() {
            mine.push(r.id());
        }
        Ok(view
            .messages
            .iter()
            .filter(|m| !m.mine && !m.read_by.iter().any(|p| mine.contains(p)))
            .map(|m| m.version)
            .collect())
    })??;
    for target in &unread {
        context::write(
            ctx,
            &store,
            &me,
            &record,
            Payload::Annotate {
                target: *target,
                text: threads::READ_MARK.to_owned(),
            },
        )?;
    }
    if ctx.json {
        return output::json(&json!({ "marked": unread }));
    }
    output::line(format!("Marked {} message(s) read", unread.len()))
}
