//! `cophr revoke`: revoke a grant.

use clap::Args as ClapArgs;
use cophr_protocol::entry::Payload;
use serde_json::json;

use crate::context::{self, resolve_entry, Ctx};
use crate::error::{CliError, Result};
use crate::output;

/// Revoke a grant. It takes effect from this point of the record's history: entries the
/// grantee wrote before stay valid and what they could see before stays visible to them;
/// they see nothing new and can write nothing more.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The grant's id, or a unique prefix (see `cophr grants`)
    grant: String,

    /// Why (kept in the record)
    #[arg(long)]
    reason: String,
}

/// Runs `revoke`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let grant = store.with_record(&record, |r| {
        let viewer = r.viewer(&me.actor(), now);
        if !viewer.has_access() {
            return Err(CliError::access("no access to this record"));
        }
        let id = resolve_entry(r, &viewer, &args.grant)?;
        if r.grant(&id).is_none() {
            return Err(CliError::invalid(format!(
                "{id} is not a grant (see `cophr grants`)"
            )));
        }
        Ok(id)
    })??;
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::Revoke {
            grant,
            category: None,
            reason: args.reason.trim().to_owned(),
        },
    )?;
    if ctx.json {
        return output::json(&json!({ "revocation": id, "grant": grant }));
    }
    output::line(id.to_string())
}
