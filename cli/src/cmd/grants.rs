//! `cophr grants`: who has access.

use clap::Args as ClapArgs;
use cophr_node::session::Cancel;
use cophr_protocol::record::{GrantInfo, Record, Status};
use cophr_protocol::{ActorId, EntryId, Level, Timestamp};
use serde::Serialize;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, yes_no, Person, Table};
use crate::times;

/// List the record's grants you may see (all of them for the patient and for those with the
/// audit right; otherwise your own): grantee, level, categories, rights, period and status.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Only grants in effect now (not revoked, expired or void)
    #[arg(long)]
    active: bool,

    #[command(flatten)]
    out: Out,
}

/// One grant, as shown.
#[derive(Debug, Serialize)]
struct GrantOut {
    grant: EntryId,
    grantee: Person,
    label: Option<String>,
    level: Level,
    categories: String,
    audit: bool,
    delegate: bool,
    from: Option<String>,
    until: Option<String>,
    status: &'static str,
    issued_by: Person,
    issued: String,
    parent: Option<EntryId>,
    revoked_by: Vec<EntryId>,
}

fn status(r: &Record, g: &GrantInfo, now: Timestamp) -> &'static str {
    if !matches!(r.status(&g.id), Some(Status::Valid)) {
        return "void";
    }
    if g.revoked_by
        .iter()
        .any(|rv| matches!(r.status(rv), Some(Status::Valid)))
    {
        return "revoked";
    }
    if g.grant.until.is_some_and(|u| now > u) {
        return "expired";
    }
    if g.grant.not_before.is_some_and(|nb| now < nb) {
        return "not yet valid";
    }
    "active"
}

fn list(r: &Record, me: &ActorId, now: Timestamp, active: bool) -> Result<Vec<GrantOut>> {
    let viewer = r.viewer(me, now);
    if !viewer.has_access() {
        return Err(CliError::access("no access to this record"));
    }
    let mut grants: Vec<&GrantInfo> = r.grants().filter(|g| r.can_see(&viewer, &g.id)).collect();
    grants.sort_by_key(|g| (g.time, g.id));
    Ok(grants
        .into_iter()
        .map(|g| (g, status(r, g, now)))
        .filter(|(_, s)| !active || *s == "active" || *s == "not yet valid")
        .map(|(g, s)| GrantOut {
            grant: g.id,
            grantee: Person::of(r, &g.grant.grantee, None),
            label: g.grant.label.clone(),
            level: g.grant.level,
            categories: g.grant.scope.to_string(),
            audit: g.grant.audit,
            delegate: g.grant.delegate,
            from: g.grant.not_before.map(times::format),
            until: g.grant.until.map(times::format),
            status: s,
            issued_by: Person::of(r, &g.issuer, None),
            issued: times::format(g.time),
            parent: g.parent,
            revoked_by: g.revoked_by.clone(),
        })
        .collect())
}

/// Runs `grants`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let grants = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let grants = list(r, &me.actor(), now, args.active)?;
            seen.add(grants.iter().map(|g| g.grant));
            seen.detail(format!("grants: {}", grants.len()));
            Ok::<_, CliError>(grants)
        })?
    })?;
    if ctx.json(args.out) {
        return output::json(&serde_json::json!({ "record": record, "grants": grants }));
    }
    if grants.is_empty() {
        return output::line("No grants you may see.");
    }
    let mut t = Table::new(&[
        "GRANT",
        "GRANTEE",
        "LABEL",
        "LEVEL",
        "CATEGORIES",
        "AUDIT",
        "DELEGATE",
        "PERIOD",
        "STATUS",
        "ISSUED BY",
    ]);
    for g in &grants {
        let period = match (&g.from, &g.until) {
            (None, None) => "always".to_owned(),
            (Some(f), None) => format!("from {f}"),
            (None, Some(u)) => format!("until {u}"),
            (Some(f), Some(u)) => format!("{f} to {u}"),
        };
        t.row(vec![
            g.grant.short(),
            match &g.grantee.name {
                Some(_) => format!("{} {}", g.grantee.short(), g.grantee.id.short()),
                None => g.grantee.id.to_string(),
            },
            g.label.clone().unwrap_or_default(),
            g.level.to_string(),
            g.categories.clone(),
            yes_no(g.audit),
            yes_no(g.delegate),
            period,
            g.status.to_owned(),
            g.issued_by.short(),
        ]);
    }
    output::print(&t.render())
}
