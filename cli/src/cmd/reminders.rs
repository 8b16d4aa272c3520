//! `cophr reminders`: the reminders of your appointments, due and upcoming.

use clap::Args as ClapArgs;
use cophr_protocol::care::{self, reminder_minutes};
use cophr_protocol::fold;
use cophr_protocol::{Category, EntryId};
use serde::Serialize;

use crate::context::{Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use crate::times;

/// The reminders of the appointments you may see: those due (their time has come, the
/// appointment not yet started) and those upcoming within --within. Cancelled appointments
/// give none. Reading them is recorded in the record's audit trail.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  cophr reminders\n  cophr reminders --within 1d --json")]
pub struct Args {
    /// How far ahead to list upcoming reminders: 30m, 2h, 1d, 1w
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    within: String,
    #[command(flatten)]
    out: Out,
}

/// One reminder, as shown.
#[derive(Debug, Serialize)]
struct Shown {
    state: &'static str,
    at: String,
    before: String,
    starts: String,
    appointment: EntryId,
    summary: String,
}

/// Runs `reminders`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let minutes = reminder_minutes(&args.within).ok_or_else(|| {
        CliError::invalid(format!(
            "--within `{}` is not a duration: write e.g. 30m, 2h, 1d or 1w",
            args.within
        ))
    })?;
    let now = ctx.now()?;
    let (_, shown) = crate::care::read(
        ctx,
        &Category::Appointments,
        "reminders",
        |_, _, items, seen| {
            let state = fold::State {
                items: items.into_iter().cloned().collect(),
                deleted: Vec::new(),
                locked: Vec::new(),
            };
            let due = care::reminders(&state, now, minutes * 60_000);
            let versions = state
                .items
                .iter()
                .filter(|i| due.iter().any(|r| r.appointment == i.id));
            seen.add(versions.map(|i| i.current));
            Ok(due
                .into_iter()
                .map(|r| Shown {
                    state: if r.due { "due" } else { "upcoming" },
                    at: times::format(r.at),
                    before: r.before,
                    starts: times::format(r.start),
                    appointment: r.appointment,
                    summary: r.summary,
                })
                .collect::<Vec<_>>())
        },
    )?;
    if ctx.json(args.out) {
        return output::json(&shown);
    }
    if shown.is_empty() {
        return output::line(format!("No reminders due or within {}.", args.within));
    }
    let mut t = Table::new(&["WHEN", "STATE", "BEFORE", "STARTS", "APPOINTMENT", "ID"]);
    for s in &shown {
        t.row(vec![
            s.at.clone(),
            s.state.to_owned(),
            s.before.clone(),
            s.starts.clone(),
            s.summary.clone(),
            s.appointment.short(),
        ]);
    }
    output::print(&t.render())
}
