//! `cophr repair`: repair the home's store.

use clap::Args as ClapArgs;
use serde_json::json;

use crate::context::{Ctx, Out};
use crate::error::{CliError, Result};
use crate::output;
use crate::store::Store;

/// Repair the store: cut off a torn log tail left by a crash (never an acknowledged entry),
/// rebuild the indexes from the log, and check every document's stored bytes against their
/// hash, setting a damaged one aside so the damaged parts are fetched again from a peer at
/// the next sync, and delete documents no record names (a removed record's, or one whose
/// entry was never written). Run it when no other cophr process uses this home.
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
    let store = ctx.store()?;
    let documents = store.repair_documents()?;
    let unreferenced = store.collect_unreferenced_documents(&store.documents_held())?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "store": dir,
            "truncated_bytes": report.truncated_bytes,
            "reindexed": report.reindexed,
            "documents_checked": documents.checked,
            "documents_set_aside": documents.set_aside.iter().map(|(hash, bytes)| json!({
                "hash": hash.to_string(),
                "damaged_bytes": bytes,
            })).collect::<Vec<_>>(),
            "unreferenced_documents_removed": unreferenced.len(),
            "unreferenced_bytes_removed": unreferenced.iter().map(|(_, b)| b).sum::<u64>(),
        }));
    }
    output::line(format!(
        "Repaired {}: indexes rebuilt from the log ({} frames)",
        dir.display(),
        report.reindexed
    ))?;
    output::line(format!(
        "Documents: {} checked, {} damaged",
        documents.checked,
        documents.set_aside.len()
    ))?;
    for (hash, bytes) in &documents.set_aside {
        output::line(format!(
            "  {hash}: {bytes} bytes damaged, set aside; the node fetches them again from a \
             peer holding the record at its next sync"
        ))?;
    }
    if !unreferenced.is_empty() {
        output::line(format!(
            "Deleted {} document(s) no record names ({} bytes)",
            unreferenced.len(),
            unreferenced.iter().map(|(_, b)| b).sum::<u64>()
        ))?;
    }
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
