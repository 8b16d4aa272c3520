//! `cophr record create`: start the caller's own record.

use clap::{Args as ClapArgs, Subcommand};
use serde_json::json;

use crate::context::Ctx;
use crate::error::{CliError, Code, Result};
use crate::output;

/// Record commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create your own record: its first entry, signed by you, holds your profile. The
    /// record's id is your actor id.
    Create(CreateArgs),
}

/// `record create`.
#[derive(ClapArgs, Debug)]
pub struct CreateArgs {}

/// Runs a record subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Create(CreateArgs {}) => create(ctx),
    }
}

fn create(ctx: &Ctx) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    if store.records()?.contains(&me.actor()) {
        return Err(CliError::new(
            Code::Conflict,
            format!("your record {} already exists in this store", me.actor()),
        ));
    }
    if let Some(own) = crate::context::own_records(&store, &me.actor())?.first() {
        return Err(CliError::new(
            Code::Conflict,
            format!(
                "{} already acts as the patient of record {own} here",
                me.actor()
            ),
        ));
    }
    let now = ctx.now()?;
    ctx.touch(&store, &me.actor());
    let genesis = store.create_record(&me.key, me.info.profile(), now, ctx.device(&me))?;
    if ctx.json {
        return output::json(&json!({ "record": me.actor(), "genesis": genesis }));
    }
    output::line(format!("Created record {}", me.actor()))?;
    output::line("Next: `cophr add CATEGORY --FIELD VALUE`, `cophr grant ACTOR …`, `cophr show`.")
}
