//! `cophr delete`: a logical delete.

use clap::Args as ClapArgs;
use cophr_protocol::entry::Payload;
use serde_json::json;

use crate::cmd::amend::current_item;
use crate::context::{self, Ctx};
use crate::error::Result;
use crate::output;

/// Delete an entry logically: it disappears from the current state but stays in its history,
/// with the reason. Only its author (or their proxy) with the delete level may do this.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The entry: any version's id, or a unique prefix as tables show
    entry: String,

    /// Why it is deleted (kept in the history)
    #[arg(long)]
    reason: String,
}

/// Runs `delete`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let item = store.with_record(&record, |r| current_item(r, &me.actor(), now, &args.entry))??;
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::Delete {
            target: item.current,
            reason: args.reason.trim().to_owned(),
        },
    )?;
    if ctx.json {
        return output::json(&json!({ "entry": id, "item": item.id, "supersedes": item.current }));
    }
    output::line(id.to_string())
}
