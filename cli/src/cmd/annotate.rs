//! `cophr annotate`: a note on an entry.

use clap::Args as ClapArgs;
use cophr_protocol::entry::Payload;
use serde_json::json;

use crate::context::{self, resolve_entry, Ctx};
use crate::error::{CliError, Result};
use crate::output;

/// Add a note to an entry, anyone's (principle 9: the patient annotates others' entries
/// instead of changing them). Needs the annotate level on the entry's category.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The entry (or annotation) to annotate: its id, or a unique prefix as tables show
    entry: String,

    /// The note
    #[arg(long, visible_alias = "note")]
    text: String,
}

/// Runs `annotate`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
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
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::Annotate {
            target,
            text: args.text.trim().to_owned(),
        },
    )?;
    if ctx.json {
        return output::json(&json!({ "entry": id, "target": target }));
    }
    output::line(id.to_string())
}
