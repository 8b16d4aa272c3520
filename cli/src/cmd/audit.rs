//! `cophr audit`: the record's audit trail, filtered, grouped and paged by
//! `cophr_protocol::audit::query` (the same as the REST API and the web app).

use clap::Args as ClapArgs;
use cophr_node::session::Cancel;
use cophr_protocol::audit::{self, Action, AuditQuery, AuditRow, Own, SignedAudit};
use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, EntryId};
use serde::Serialize;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Person, Table};
use crate::times::{self, DayEnd};

/// Show who viewed, added, edited, deleted, granted, revoked, exported or imported what,
/// when, and on which device, as signed by the node that saw it. Needs the audit right
/// (the patient always has it). Reading it is itself recorded.
///
/// Every event is kept; the options only choose what is shown. By default: newest first,
/// your own reads (views and audit-trail reads) hidden, so you see who else looked, and a
/// replica's consecutive sync reads ("served to a replica") shown as one line with a count
/// and a time span; 100 lines a page.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Only events by this person: an actor id (`a-…`) or part of a name (repeatable)
    #[arg(long, value_name = "WHO")]
    actor: Vec<String>,

    /// Only events of this type (repeatable or comma-separated): view, add, edit, delete,
    /// annotate, grant, revoke, export, import, move, audit-read, profile
    #[arg(long, value_name = "ACTION", value_delimiter = ',')]
    action: Vec<String>,

    /// Only events at or after this time (RFC 3339, or a date: from its start, UTC)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,

    /// Only events at or before this time (RFC 3339, or a date: to its end, UTC)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,

    /// Show your own reads too
    #[arg(long, conflicts_with = "mine")]
    all: bool,

    /// Show only your own events
    #[arg(long)]
    mine: bool,

    /// Show each sync read on its own line instead of grouping runs of them
    #[arg(long)]
    no_group: bool,

    /// Oldest first
    #[arg(long)]
    oldest_first: bool,

    /// The page to show, from 1
    #[arg(long, value_name = "N", default_value_t = 1)]
    page: usize,

    /// Lines per page (at most 10000)
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,

    #[command(flatten)]
    out: Out,
}

/// One line: an event, or a run of sync reads (`count` > 0).
#[derive(Debug, Serialize)]
struct RowOut {
    kind: &'static str,
    time: String,
    action: &'static str,
    actor: Person,
    device: Option<String>,
    entries: Vec<EntryId>,
    detail: Option<String>,
    node: ActorId,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<EntryId>,
    /// Sync runs: how many reads, from when, and how many entries served in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    first: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    entries_served: Option<usize>,
}

fn person(r: &Record, a: &SignedAudit) -> Person {
    let e = &a.event;
    let known = Person::of(r, &e.actor, Some(e.time));
    Person {
        id: e.actor,
        name: e.actor_name.clone().or(known.name),
        role: e.actor_role.clone().or(known.role),
        // A member of an organisation: the organisation they acted for, which the record
        // proves, before what their profile claimed.
        organisation: if known.member {
            known.organisation
        } else {
            e.actor_organisation.clone().or(known.organisation)
        },
        member: known.member,
        assurance: known.assurance,
    }
}

fn row(r: &Record, x: &AuditRow<'_>) -> RowOut {
    match x {
        AuditRow::Event(a) => {
            let e = &a.event;
            RowOut {
                kind: "event",
                time: times::format(e.time),
                action: e.action.name(),
                actor: person(r, a),
                device: e.device.clone(),
                entries: e.entries.clone(),
                detail: e.detail.clone(),
                node: e.node,
                seq: Some(e.seq),
                id: Some(a.id()),
                count: None,
                first: None,
                entries_served: None,
            }
        }
        AuditRow::Sync(run) => {
            let e = &run.last.event;
            RowOut {
                kind: "sync",
                time: times::format(e.time),
                action: e.action.name(),
                actor: person(r, run.last),
                device: e.device.clone(),
                entries: Vec::new(),
                detail: e.detail.clone(),
                node: e.node,
                seq: None,
                id: None,
                count: Some(run.count),
                first: Some(times::format(run.first.event.time)),
                entries_served: Some(run.entries),
            }
        }
    }
}

/// The actors `who` names: an actor id, or everyone in the trail whose name contains it.
fn actors(r: &Record, events: &[SignedAudit], who: &str) -> Result<Vec<ActorId>> {
    if let Ok(id) = who.trim().parse::<ActorId>() {
        return Ok(vec![id]);
    }
    let needle = who.trim().to_lowercase();
    let mut out: Vec<ActorId> = Vec::new();
    for a in events {
        if out.contains(&a.event.actor) {
            continue;
        }
        if person(r, a)
            .name
            .is_some_and(|n| n.to_lowercase().contains(&needle))
        {
            out.push(a.event.actor);
        }
    }
    if out.is_empty() {
        return Err(CliError::not_found(format!(
            "--actor {who}: no one of that id or name appears in the audit trail"
        )));
    }
    Ok(out)
}

/// The query the options ask (actors resolved later, against the trail).
fn query(me: ActorId, args: &Args) -> Result<AuditQuery> {
    let mut q = AuditQuery::new(me);
    q.actions = args
        .action
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| {
            Action::from_name(a).ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                CliError::invalid(format!("--action {a}: not one of {}", names.join(", ")))
            })
        })
        .collect::<Result<_>>()?;
    q.since = args
        .since
        .as_deref()
        .map(|t| times::parse(t, DayEnd::Start).map_err(|e| e.context("--since")))
        .transpose()?;
    q.until = args
        .until
        .as_deref()
        .map(|t| times::parse(t, DayEnd::End).map_err(|e| e.context("--until")))
        .transpose()?;
    if let (Some(a), Some(b)) = (q.since, q.until) {
        if a > b {
            return Err(CliError::invalid("--since is after --until"));
        }
    }
    q.own = match (args.all, args.mine) {
        (_, true) => Own::Only,
        (true, false) => Own::Include,
        (false, false) => Own::HideReads,
    };
    q.group_sync = !args.no_group;
    q.newest_first = !args.oldest_first;
    if args.page == 0 {
        return Err(CliError::invalid("--page counts from 1"));
    }
    if args.limit == 0 || args.limit > audit::MAX_AUDIT_PAGE {
        return Err(CliError::invalid(format!(
            "--limit is from 1 to {}",
            audit::MAX_AUDIT_PAGE
        )));
    }
    q.page = args.page;
    q.limit = args.limit;
    Ok(q)
}

/// What `audit` shows.
#[derive(Debug, Serialize)]
struct PageOut {
    record: ActorId,
    /// The lines of this page (events and sync runs).
    events: Vec<RowOut>,
    page: usize,
    pages: usize,
    limit: usize,
    /// Lines on all pages.
    total: usize,
    /// Events that passed the filters.
    matched: usize,
    /// Events in the trail.
    trail: usize,
}

/// Runs `audit`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity()?;
    let mut q = query(me.actor(), &args)?;
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
            for who in &args.actor {
                q.actors.extend(actors(r, &events, who)?);
            }
            let page = audit::query(&events, &q);
            seen.audit_trail();
            seen.detail(format!("{} of {} events", page.matched, page.events));
            Ok(PageOut {
                record,
                events: page.rows.iter().map(|x| row(r, x)).collect(),
                page: page.page,
                pages: page.pages(),
                limit: page.limit,
                total: page.total_rows,
                matched: page.matched,
                trail: page.events,
            })
        })?
    })?;
    if ctx.json(args.out) {
        return output::json(&out);
    }
    if out.events.is_empty() {
        output::line(if out.total > 0 {
            format!("No audit events on page {} of {}.", out.page, out.pages)
        } else if q.own == Own::HideReads && out.trail > 0 {
            "No audit events by anyone else (--all shows your own reads too).".to_owned()
        } else {
            "No audit events.".to_owned()
        })?;
        return Ok(());
    }
    let mut t = Table::new(&["TIME", "ACTION", "WHO", "DEVICE", "ENTRIES", "DETAIL"]);
    for e in &out.events {
        let (time, entries, detail) = match (e.count, &e.first) {
            (Some(n), Some(first)) => (
                format!("{first} – {}", e.time),
                e.entries_served.unwrap_or_default().to_string(),
                format!(
                    "{} ({n} time{})",
                    e.detail.clone().unwrap_or_default(),
                    if n == 1 { "" } else { "s" }
                ),
            ),
            _ => (
                e.time.clone(),
                e.entries.len().to_string(),
                e.detail.clone().unwrap_or_default(),
            ),
        };
        t.row(vec![
            time,
            e.action.to_owned(),
            e.actor.long(),
            e.device.clone().unwrap_or_default(),
            entries,
            detail,
        ]);
    }
    output::print(&t.render())?;
    if out.pages > 1 {
        output::line(format!(
            "Page {} of {} ({} lines; --page N for another)",
            out.page, out.pages, out.total
        ))?;
    }
    Ok(())
}
