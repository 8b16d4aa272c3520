//! `cophr guardians`: the people who can together give you a new key if yours is lost.

use clap::{Args, Subcommand};
use cophr_node::session::Cancel;
use cophr_protocol::entry::{Payload, MAX_GUARDIANS};
use cophr_protocol::recovery::{GuardianApproval, RecoveryRequest};
use cophr_protocol::ActorId;
use serde_json::json;

use crate::context::{self, Ctx, Out};
use crate::error::{parse_id, CliError, Result};
use crate::output::{self, Person, Table};

/// Social recovery of your key: you name guardians (e.g. Mary, your GP practice, an
/// identity assurance service) and how many of them must agree; if your key is lost, that
/// many of them approve a new key (`cophr recover`), which then writes as you: the record
/// id, every grant and every replica stay the same, and the old key writes nothing new.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Name your guardians and how many must approve a new key (replaces the set)
    Set(SetArgs),
    /// Show the guardians in effect
    Show(Out),
    /// As a guardian: approve someone's recovery request (check it is really them first)
    Approve(ApproveArgs),
}

/// `cophr guardians set`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  cophr guardians set a-mary… a-gp… a-ais… --threshold 2")]
pub struct SetArgs {
    /// The guardians' actor ids (`a-…`), 1 to 16
    #[arg(required = true, num_args = 1..=MAX_GUARDIANS)]
    guardians: Vec<String>,
    /// How many must approve a new key (1 to the number of guardians)
    #[arg(long)]
    threshold: u8,
    #[command(flatten)]
    out: Out,
}

/// `cophr guardians approve`.
#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The request (`cophr://recover/…`, from `cophr recover request` on their new device)
    request: String,
    #[command(flatten)]
    out: Out,
}

/// Runs `guardians`.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Set(a) => set(ctx, a),
        Command::Show(out) => show(ctx, out),
        Command::Approve(a) => approve(ctx, a),
    }
}

fn set(ctx: &Ctx, args: SetArgs) -> Result<()> {
    let mut guardians: Vec<ActorId> = args
        .guardians
        .iter()
        .map(|g| parse_id("guardian", g))
        .collect::<Result<_>>()?;
    guardians.sort();
    guardians.dedup();
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::SetGuardians {
            guardians: guardians.clone(),
            threshold: args.threshold,
        },
    )?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": record,
            "guardians": guardians,
            "threshold": args.threshold,
            "entry": id,
        }));
    }
    output::line(format!(
        "{} of these {} guardians can now approve a new key for record {record} ({id}):",
        args.threshold,
        guardians.len()
    ))?;
    let names = store.with_record(&record, |r| {
        guardians
            .iter()
            .map(|g| Person::of(r, g, None).long())
            .collect::<Vec<_>>()
    })?;
    for n in names {
        output::line(format!("  {n}"))?;
    }
    Ok(())
}

fn show(ctx: &Ctx, out: Out) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let found = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            if !r.viewer(&me.actor(), now).has_access() {
                return Err(CliError::access("no access to this record"));
            }
            let Some(g) = r.guardians() else {
                return Ok(None);
            };
            seen.add([g.entry]);
            seen.detail("guardians");
            let people: Vec<Person> = g.guardians.iter().map(|a| Person::of(r, a, None)).collect();
            Ok(Some((g.entry, g.threshold, people)))
        })?
    })?;
    let Some((entry, threshold, people)) = found else {
        if ctx.json(out) {
            return output::json(&json!({ "record": record, "guardians": null }));
        }
        return output::line(
            "No guardians named: a lost key can be recovered only from a key backup \
             (`cophr guardians set … --threshold N` names them).",
        );
    };
    if ctx.json(out) {
        return output::json(&json!({
            "record": record,
            "entry": entry,
            "threshold": threshold,
            "guardians": people,
        }));
    }
    output::line(format!(
        "{threshold} of {} guardians approve a new key (set by {entry}):",
        people.len()
    ))?;
    let mut t = Table::new(&["GUARDIAN", "ACTOR"]);
    for p in &people {
        t.row(vec![p.long(), p.id.to_string()]);
    }
    output::print(&t.render())
}

fn approve(ctx: &Ctx, args: ApproveArgs) -> Result<()> {
    let request =
        RecoveryRequest::from_text(&args.request).map_err(|e| CliError::invalid(e.to_string()))?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    if !store.holds(&request.record)? {
        return Err(CliError::not_found(format!(
            "record {} is not held here: a guardian approves from their replica of it \
             (`cophr follow {}`)",
            request.record, request.record
        )));
    }
    ctx.touch(&store, &request.record);
    let approval = store
        .with_record(&request.record, |r| {
            GuardianApproval::approve(r, &me.key, &request)
        })?
        .map_err(|e| CliError::access(e.to_string()))?;
    tracing::info!(record = %request.record, new = %request.new, "recovery approved");
    let text = approval.to_text();
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": request.record,
            "new_key": request.new,
            "approval": text,
        }));
    }
    output::line(format!(
        "You approve key {} as the patient's key for record {}.",
        request.new, request.record
    ))?;
    output::line(
        "Give this approval to the person recovering (only if you checked it is really them):",
    )?;
    output::line(&text)?;
    output::print(&crate::cmd::invite::terminal_qr(&text)?)
}
