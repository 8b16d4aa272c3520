//! `cophr audit`: the record's audit trail.

use clap::Args as ClapArgs;
use cophr_node::session::Cancel;
use cophr_protocol::audit::SignedAudit;
use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, EntryId};
use serde::Serialize;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Person, Table};
use crate::times;

/// Show the record's audit trail: who viewed, added, edited, deleted, granted, revoked,
/// exported or imported what, when, and on which device, as signed by the node that saw
/// it. Needs the audit right (the patient always has it). Reading it is itself recorded.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Only events of this type: view, add, edit, delete, annotate, grant, revoke, export,
    /// import, move, audit-read
    #[arg(long, value_name = "ACTION")]
    action: Option<String>,

    #[command(flatten)]
    out: Out,
}

#[derive(Debug, Serialize)]
struct EventOut {
    #[serde(skip)]
    at: cophr_protocol::Timestamp,
    time: String,
    action: &'static str,
    actor: Person,
    device: Option<String>,
    entries: Vec<EntryId>,
    detail: Option<String>,
    node: ActorId,
    seq: u64,
    id: EntryId,
}

fn event(r: &Record, a: &SignedAudit) -> EventOut {
    let e = &a.event;
    let known = Person::of(r, &e.actor, Some(e.time));
    EventOut {
        at: e.time,
        time: times::format(e.time),
        action: e.action.name(),
        actor: Person {
            id: e.actor,
            name: e.actor_name.clone().or(known.name),
            role: e.actor_role.clone().or(known.role),
            organisation: e.actor_organisation.clone().or(known.organisation),
        },
        device: e.device.clone(),
        entries: e.entries.clone(),
        detail: e.detail.clone(),
        node: e.node,
        seq: e.seq,
        id: a.id(),
    }
}

/// Runs `audit`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let out = session.read(&Cancel::new(), now, |rd| {
        let events = rd.audit_events(&record)?;
        rd.record(&record, |r, seen| {
            let viewer = r.viewer(&me.actor(), now);
            if !viewer.has_access() {
                return Err(CliError::access("no access to this record"));
            }
            if !viewer.may_audit() {
                return Err(CliError::access(
                    "not authorised: your grant does not include the audit right, so you may \
                     not read this record's audit trail",
                ));
            }
            let mut out = events.iter().map(|a| event(r, a)).collect::<Vec<_>>();
            out.sort_by_key(|e| (e.at, e.node, e.seq));
            if let Some(action) = &args.action {
                out.retain(|e| e.action == action.as_str());
            }
            seen.audit_trail();
            seen.detail(format!("{} events", out.len()));
            Ok(out)
        })?
    })?;
    if ctx.json(args.out) {
        return output::json(&serde_json::json!({ "record": record, "events": out }));
    }
    if out.is_empty() {
        return output::line("No audit events.");
    }
    let mut t = Table::new(&["TIME", "ACTION", "WHO", "DEVICE", "ENTRIES", "DETAIL"]);
    for e in &out {
        t.row(vec![
            e.time.clone(),
            e.action.to_owned(),
            e.actor.long(),
            e.device.clone().unwrap_or_default(),
            e.entries.len().to_string(),
            e.detail.clone().unwrap_or_default(),
        ]);
    }
    output::print(&t.render())
}
