//! `cophr export`: the whole record in one verifiable file.

use std::path::Path;

use clap::Args as ClapArgs;
use serde_json::json;

use crate::context::{Ctx, Out};
use crate::error::{CliError, Result};
use crate::home::write_atomic;
use crate::output;

/// Export the whole record: every entry, the data definitions (category schemas with their
/// openEHR archetype ids) and the audit trail, with a manifest signed by you. Anyone can
/// check the file offline with `cophr verify FILE`; `cophr import FILE` loads it elsewhere.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Where to write (`-` for standard output)
    file: String,

    #[command(flatten)]
    out: Out,
}

/// Runs `export`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let (has_access, entries) = store.with_record(&record, |r| {
        (r.viewer(&me.actor(), now).has_access(), r.len())
    })?;
    if !has_access {
        return Err(CliError::access("no access to this record"));
    }
    let bytes = store.export(&record, &me.key, now, ctx.device(&me))?;
    if args.file == "-" {
        return output::write_out(&bytes);
    }
    let path = output::resolve(Path::new(&args.file));
    write_atomic(&path, &bytes, 0o600)?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": record,
            "file": path,
            "bytes": bytes.len(),
            "entries": entries,
        }));
    }
    output::line(format!(
        "Exported record {record} ({entries} entries, {} bytes) to {}",
        bytes.len(),
        path.display()
    ))
}
