//! `cophr result release`: a clinician releases a reviewed result to the patient.

use clap::{Args as ClapArgs, Subcommand};
use cophr_protocol::care::release;
use cophr_protocol::entry::Payload;
use serde_json::json;

use crate::context::{self, resolve_entry, Ctx};
use crate::error::{CliError, Result};
use crate::output;

const AFTER_HELP: &str = "A release is a signed note on the result's version that every node \
checks: written by a clinician with at least the annotate level on the result's category \
(lab-results or investigations), never by the patient (exit code 3), only of a result (5), \
once per version (7). It is what notifies a patient subscribed to released results \
(`cophr notifications subscribe --events result-released`).

Examples:
  cophr result release e-abcdefghij
  cophr result release e-abcdefghij --note 'Seen by the renal team: repeat in a week'";

/// Results: release a reviewed result to the patient.
#[derive(Subcommand, Debug)]
#[command(after_help = AFTER_HELP)]
pub enum Command {
    /// Release a reviewed lab result or investigation to the patient
    Release(ReleaseArgs),
}

/// `cophr result release`.
#[derive(ClapArgs, Debug)]
pub struct ReleaseArgs {
    /// The result (its version): its id, or a unique prefix as tables show
    entry: String,
    /// A short note for the patient
    #[arg(long)]
    note: Option<String>,
}

/// Runs `result`.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    let Command::Release(args) = cmd;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let target = store.with_record(&record, |r| {
        let viewer = r.viewer(&me.actor(), now);
        if !viewer.has_access() {
            return Err(CliError::access("no access to this record"));
        }
        resolve_entry(r, &viewer, &args.entry)
    })??;
    let text = release::release_text(args.note.as_deref());
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::Annotate { target, text },
    )?;
    if ctx.json {
        return output::json(&json!({ "entry": id, "released": target }));
    }
    output::line(format!("Released {} ({id})", target.short()))
}
