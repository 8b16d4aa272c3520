//! `cophr export`: the whole record in one verifiable file.

use std::path::Path;

use clap::Args as ClapArgs;
use serde_json::json;

use cophr_node::store::documents_dir;

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
    let documents = store.with_record(&record, |r| r.documents().count())?;
    if args.file == "-" {
        if documents > 0 {
            output::write_err(&format!(
                "note: the record's {documents} documents are not in this stream: export to a \
                 file to have them written beside it\n"
            ));
        }
        return output::write_out(&bytes);
    }
    let path = output::resolve(Path::new(&args.file));
    write_atomic(&path, &bytes, 0o600)?;
    let dir = documents_dir(&path);
    let docs = store.export_documents(&record, &dir)?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": record,
            "file": path,
            "bytes": bytes.len(),
            "entries": entries,
            "documents": {
                "dir": (docs.written > 0).then_some(&dir),
                "written": docs.written,
                "bytes": docs.bytes,
                "missing": docs.missing.iter().map(|d| d.hash.to_hex()).collect::<Vec<_>>(),
            },
        }));
    }
    output::line(format!(
        "Exported record {record} ({entries} entries, {} bytes) to {}",
        bytes.len(),
        path.display()
    ))?;
    if docs.written > 0 {
        output::line(format!(
            "Wrote its {} documents ({} bytes, sealed) to {}",
            docs.written,
            docs.bytes,
            dir.display()
        ))?;
    }
    if !docs.missing.is_empty() {
        output::line(format!(
            "{} documents its entries name are not held on this node yet (not written)",
            docs.missing.len()
        ))?;
    }
    Ok(())
}
