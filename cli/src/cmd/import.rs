//! `cophr import`: load an export file.

use std::path::Path;

use clap::Args as ClapArgs;
use cophr_protocol::export::MAX_EXPORT_BYTES;
use serde_json::json;

use cophr_node::store::documents_dir;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::home::read_limited;
use crate::output;

/// Import an export file (from `cophr export`). The whole file is verified first
/// (signatures, hashes, every record rule, the audit trail); if anything is wrong nothing is
/// stored. Entries already held are skipped.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The export file (`-` for standard input)
    file: String,

    #[command(flatten)]
    out: Out,
}

impl Args {
    /// Whether the export is read from standard input.
    pub fn reads_stdin(&self) -> bool {
        self.file == "-"
    }
}

/// Reads an export file (or standard input), bounded in size.
pub fn read_export(file: &str) -> Result<Vec<u8>> {
    if file == "-" {
        let buf = output::read_stdin(MAX_EXPORT_BYTES as u64 + 1)
            .map_err(|e| CliError::other(format!("cannot read standard input: {e}")))?;
        if buf.len() > MAX_EXPORT_BYTES {
            return Err(CliError::verify("the export is larger than the limit"));
        }
        return Ok(buf);
    }
    read_limited(&output::resolve(Path::new(file)), MAX_EXPORT_BYTES as u64)
}

/// Runs `import`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let bytes = read_export(&args.file)?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let now = ctx.now()?;
    let report = store.import(&bytes, &me.actor(), now, ctx.device(&me))?;
    // The documents written beside the file, if any, checked against their hashes.
    let (documents, missing) = if args.file == "-" {
        (0, Vec::new())
    } else {
        let dir = documents_dir(&output::resolve(Path::new(&args.file)));
        let docs: Vec<_> =
            store.with_record(&report.record, |r| r.documents().copied().collect())?;
        store.import_documents(&docs, &dir)?
    };
    // A grantee introduces themself in the record they were given (their name, role and
    // organisation), so the patient's grants list and audit trail can name them.
    let introduced = context::publish_profile(ctx, &store, &me, &report.record)?;
    if report.new_entries > 0 || introduced {
        ctx.mark_changed(&report.record);
    }
    let patient = store
        .with_record(&report.record, |r| {
            r.profile(&r.patient(), None).map(|p| p.name.clone())
        })
        .ok()
        .flatten();
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": report.record,
            "patient": patient,
            "new_entries": report.new_entries,
            "already_held": report.already_held,
            "audit_events": report.audit_events,
            "profile_published": introduced,
            "documents": documents,
            "documents_missing": missing.len(),
        }));
    }
    output::line(format!(
        "Imported record {}{}: {} new entries, {} already held, {} audit events added",
        report.record,
        patient.map(|p| format!(" ({p})")).unwrap_or_default(),
        report.new_entries,
        report.already_held,
        report.audit_events
    ))?;
    if documents > 0 || !missing.is_empty() {
        output::line(format!(
            "Documents: {documents} taken from beside the file{}",
            if missing.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} not there (fetched from a replica when this node syncs)",
                    missing.len()
                )
            }
        ))?;
    }
    if introduced {
        output::line(format!(
            "Published your profile ({}) in it; export to send it back.",
            me.info.name
        ))?;
    }
    Ok(())
}
