//! `cophr repair`: repair the home's store.

use clap::Args as ClapArgs;
use serde_json::json;

use crate::context::{Ctx, Out};
use crate::error::{CliError, Result};
use crate::output;
use crate::store::Store;

/// Repair the store: cut off a torn log tail left by a crash (never an acknowledged entry)
/// and rebuild the indexes from the log. Run it when no other cophr process uses this home.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    out: Out,
}

/// Runs `repair`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    if ctx.node.is_some() {
        return Err(CliError::other(
            "the node running in this home holds the store: stop it (Ctrl-C, or SIGTERM to \
             the pid in node.json) and run `cophr repair` again",
        ));
    }
    let dir = ctx.home.store();
    if !dir.is_dir() {
        return Err(CliError::not_found(format!(
            "no store at {} (nothing to repair)",
            dir.display()
        )));
    }
    let report = Store::repair(&dir)?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "store": dir,
            "truncated_bytes": report.truncated_bytes,
            "reindexed": report.reindexed,
        }));
    }
    output::line(format!(
        "Repaired {}: indexes rebuilt from the log ({} frames)",
        dir.display(),
        report.reindexed
    ))?;
    if report.truncated_bytes > 0 {
        output::line(format!(
            "Cut {} bytes from the end of the log, from the first damaged or incomplete frame \
             on. Anything written after that point is no longer in this store: import a recent \
             export of the record to restore it.",
            report.truncated_bytes
        ))?;
    }
    Ok(())
}
