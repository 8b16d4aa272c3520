//! What every command needs: the home, the identity, the store, the time, and which record.

use std::cell::RefCell;
use std::path::PathBuf;

use clap::{ArgAction, Args};
use cophr_node::session::{Session, SessionError};
use cophr_protocol::entry::Payload;
use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, EntryId, RecordId, Timestamp};

use crate::error::{parse_id, rejection_code, CliError, Code, Result};
use crate::home::{Home, Identity};
use crate::store::{Store, StoreError};
use crate::times::{self, DayEnd};

/// How long to wait for another process to release the store.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Options every command accepts.
#[derive(Args, Debug, Clone, Default)]
pub struct Global {
    /// The cophr home directory: identity, keys and store [default: ~/.cophr]
    #[arg(long, global = true, env = "COPHR_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// The record to act on: the patient's actor id (`a-…`). Default: your own record if
    /// this store holds it, else the only record held
    #[arg(long, global = true, value_name = "RECORD")]
    pub record: Option<String>,

    /// The device name recorded on entries you write and in audit events [default: the
    /// device given at `init`]
    #[arg(long, global = true, env = "COPHR_DEVICE", value_name = "NAME")]
    pub device: Option<String>,

    /// Use this time instead of the system clock (RFC 3339; for tests and demonstrations)
    #[arg(long, global = true, hide = true, value_name = "RFC3339")]
    pub now: Option<String>,

    /// Log more on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

/// `--json` for commands whose output is data.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct Out {
    /// Print one JSON document instead of a table
    #[arg(long)]
    pub json: bool,
}

/// The running node, when a command runs inside it: its handle, and the runtime to drive
/// it from the command's (blocking) thread with `Handle::block_on`.
pub type NodeCtx = (cophr_node::net::NodeHandle, tokio::runtime::Handle);

/// The running command's context.
#[derive(Debug)]
pub struct Ctx {
    /// The global options.
    pub global: Global,
    /// Whether `--json` was given before the subcommand.
    pub json: bool,
    /// The home directory.
    pub home: Home,
    /// The command line as the caller typed it.
    pub argv: Vec<String>,
    /// The caller's `COPHR_DEVICE`.
    pub env_device: Option<String>,
    /// The running node, when the command runs inside it (`cophr node run`).
    pub node: Option<NodeCtx>,
    /// Records the command resolved, with their heads at that time (to tell the network
    /// which ones changed).
    pub touched: RefCell<Vec<(RecordId, Option<Vec<EntryId>>)>>,
}

impl Ctx {
    /// Builds the context from the parsed options.
    pub fn new(global: Global, json: bool) -> Result<Self> {
        let dir = match &global.home {
            Some(d) => d.clone(),
            None => std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".cophr"))
                .ok_or_else(|| {
                    CliError::other("cannot find your home directory: give --home or COPHR_HOME")
                })?,
        };
        Ok(Ctx {
            global,
            json,
            home: Home::new(dir),
            argv: std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            env_device: std::env::var("COPHR_DEVICE").ok(),
            node: None,
            touched: RefCell::new(Vec::new()),
        })
    }

    /// The running node, or the error telling the user to start it.
    pub fn node(&self) -> Result<&NodeCtx> {
        self.node
            .as_ref()
            .ok_or_else(|| CliError::other("start the node first: cophr node run"))
    }

    /// Notes that the command acts on `record`, with its heads now (if held), so that a
    /// running node can tell its peers when the command changed it.
    pub fn touch(&self, store: &Store, record: &RecordId) {
        if self.node.is_none() || self.touched.borrow().iter().any(|(r, _)| r == record) {
            return;
        }
        let heads = store.with_record(record, |r| r.heads()).ok();
        self.touched.borrow_mut().push((*record, heads));
    }

    /// Notes that the command changed `record`.
    pub fn mark_changed(&self, record: &RecordId) {
        if self.node.is_some() {
            self.touched.borrow_mut().retain(|(r, _)| r != record);
            self.touched.borrow_mut().push((*record, None));
        }
    }

    /// The records the command changed (their heads moved since [`Ctx::touch`]).
    pub fn changed_records(&self, store: &Store) -> Vec<RecordId> {
        self.touched
            .borrow()
            .iter()
            .filter(|(r, before)| {
                let after = store.with_record(r, |rec| rec.heads()).ok();
                after.is_some() && after != *before
            })
            .map(|(r, _)| *r)
            .collect()
    }

    /// Whether to print JSON (given before the subcommand or on it).
    pub fn json(&self, out: Out) -> bool {
        self.json || out.json
    }

    /// The current time (`--now`, else the system clock).
    pub fn now(&self) -> Result<Timestamp> {
        match &self.global.now {
            Some(s) => times::parse(s, DayEnd::Start).map_err(|e| e.context("--now")),
            None => Ok(times::system_now()),
        }
    }

    /// The caller's identity.
    pub fn identity(&self) -> Result<Identity> {
        self.home.identity()
    }

    /// The device to name on entries: `--device` / `COPHR_DEVICE`, else the identity's.
    pub fn device(&self, me: &Identity) -> Option<String> {
        self.global
            .device
            .clone()
            .filter(|d| !d.trim().is_empty())
            .or_else(|| me.info.device.clone())
    }

    /// Opens the home's store. Another cophr process using the same home holds its lock:
    /// wait a little for it, then give up with a clear message.
    pub fn store(&self) -> Result<Store> {
        if let Some((handle, _)) = &self.node {
            // Inside the running node: its store, already open.
            return Ok(handle.store().clone());
        }
        let node_key = self.home.node_key_or_create()?;
        let dir = self.home.store();
        let mut waited = std::time::Duration::ZERO;
        let (store, report) = loop {
            match Store::open(&dir, node_key.clone()) {
                Ok(opened) => break opened,
                Err(StoreError::Locked) => {
                    if waited >= LOCK_WAIT {
                        return Err(CliError::other(format!(
                            "the store at {} is in use by another cophr process; try again \
                             when it has finished",
                            dir.display()
                        )));
                    }
                    let step = std::time::Duration::from_millis(50);
                    std::thread::sleep(step);
                    waited += step;
                }
                Err(e) => return Err(e.into()),
            }
        };
        if report.truncated_bytes > 0 {
            tracing::warn!(
                bytes = report.truncated_bytes,
                "the store's log ended in an incomplete write (a crash before it was \
                 acknowledged); the torn tail was cut off"
            );
        }
        tracing::debug!(replayed = report.replayed, "store open");
        // Sealed content opens with the home's identity key (when it has one).
        if let Ok(me) = self.home.identity() {
            store.unlock_with(&me.key);
        }
        Ok(store)
    }

    /// The record to act on: `--record`, else the caller's own if held, else the only one.
    pub fn record(&self, store: &Store, me: Option<&ActorId>) -> Result<RecordId> {
        let id = self.resolve_record(store, me)?;
        self.touch(store, &id);
        Ok(id)
    }

    fn resolve_record(&self, store: &Store, me: Option<&ActorId>) -> Result<RecordId> {
        let held = store.records()?;
        if let Some(r) = &self.global.record {
            let id: RecordId = parse_id("record", r)?;
            if !held.contains(&id) {
                return Err(CliError::not_found(format!(
                    "record {id} is not held here (import an export of it with `cophr import FILE`)"
                )));
            }
            return Ok(id);
        }
        if let Some(me) = me {
            if let Some(own) = own_records(store, me)?.first() {
                return Ok(*own);
            }
        }
        match held.as_slice() {
            [] => Err(CliError::not_found(
                "no record is held here: create yours with `cophr record create`, or import one \
                 with `cophr import FILE`",
            )),
            [one] => Ok(*one),
            many => {
                let list: Vec<String> = many
                    .iter()
                    .map(|id| {
                        let name = store
                            .with_record(id, |r| r.profile(id, None).map(|p| p.name.clone()))
                            .ok()
                            .flatten()
                            .unwrap_or_default();
                        format!("  {id}  {name}")
                    })
                    .collect();
                Err(CliError::new(
                    Code::Usage,
                    format!(
                        "this store holds several records; choose one with --record:\n{}",
                        list.join("\n")
                    ),
                ))
            }
        }
    }
}

/// The records held here whose patient `me` is now: its own record (its id is `me`), or
/// one it acts for as the patient's current key after a recovery or as a device the
/// patient added ([`Record::is_patient`]).
pub fn own_records(store: &Store, me: &ActorId) -> Result<Vec<RecordId>> {
    let held = store.records()?;
    if held.contains(me) && store.with_record(me, |r| r.is_patient(me))? {
        return Ok(vec![*me]);
    }
    let mut out = Vec::new();
    for id in held {
        if store.with_record(&id, |r| r.is_patient(me))? {
            out.push(id);
        }
    }
    Ok(out)
}

/// The caller acting on the store (the node's [`Session`]), with the device they name.
pub fn session(ctx: &Ctx, store: &Store, me: &Identity) -> Session {
    Session {
        store: store.clone(),
        key: me.key.clone(),
        profile: me.info.profile(),
        device: ctx.device(me),
    }
}

/// A session error as the CLI reports it.
pub fn session_error(e: SessionError) -> CliError {
    match e {
        SessionError::Refused { rejection, message } => {
            CliError::new(rejection_code(&rejection), message)
        }
        SessionError::Store(e) => e.into(),
        SessionError::Cancelled(e) => CliError::other(e.to_string()),
    }
}

impl From<SessionError> for CliError {
    fn from(e: SessionError) -> Self {
        session_error(e)
    }
}

/// Writes an entry as the caller. The write is checked first, so a refused write stores
/// nothing; before the caller's first write into someone else's record (or after their
/// identity changed) their profile is published, so others see who wrote.
pub fn write(
    ctx: &Ctx,
    store: &Store,
    me: &Identity,
    record: &RecordId,
    payload: Payload,
) -> Result<EntryId> {
    write_with(ctx, store, me, record, payload, true)
}

/// [`write()`], saying whether a grant gives the keys of what was written before it
/// (`history`) or only of what comes after.
pub fn write_with(
    ctx: &Ctx,
    store: &Store,
    me: &Identity,
    record: &RecordId,
    payload: Payload,
    history: bool,
) -> Result<EntryId> {
    let now = ctx.now()?;
    session(ctx, store, me)
        .write_with(record, payload, now, history)
        .map_err(session_error)
}

/// Publishes the caller's profile (name, role, organisation) in a record they have access
/// to, if the record does not hold it yet (or holds an older one), so that the patient's
/// grants list and audit trail can name them. Returns whether it wrote.
pub fn publish_profile(ctx: &Ctx, store: &Store, me: &Identity, record: &RecordId) -> Result<bool> {
    let now = ctx.now()?;
    session(ctx, store, me)
        .publish_profile(record, now)
        .map_err(session_error)
}

/// Resolves an entry id, or a unique prefix of one (as tables show), among the entries the
/// caller can see.
pub fn resolve_entry(
    record: &Record,
    viewer: &cophr_protocol::fold::Viewer,
    text: &str,
) -> Result<EntryId> {
    let text = text.trim();
    if let Ok(id) = text.parse::<EntryId>() {
        if record.contains(&id) && record.can_see(viewer, &id) {
            return Ok(id);
        }
        return Err(CliError::not_found(format!(
            "no entry {id} that you can see in record {}",
            record.id()
        )));
    }
    if !text.starts_with(EntryId::PREFIX) || text.len() < EntryId::PREFIX.len() + 4 {
        return Err(CliError::invalid(format!(
            "`{text}` is not an entry id: entry ids start with `e-` (at least 4 more characters \
             of a unique prefix, as tables show)"
        )));
    }
    let lower = text.to_ascii_lowercase();
    let found: Vec<EntryId> = record
        .entries()
        .map(|e| e.id())
        .filter(|id| id.to_string().starts_with(&lower) && record.can_see(viewer, id))
        .collect();
    match found.as_slice() {
        [] => Err(CliError::not_found(format!(
            "no entry starting with {text} that you can see in record {}",
            record.id()
        ))),
        [one] => Ok(*one),
        many => Err(CliError::invalid(format!(
            "{text} is ambiguous: it starts {} entries; give more characters",
            many.len()
        ))),
    }
}
