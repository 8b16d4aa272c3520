//! `cophr fhir import|export`: FHIR R4 connectors.

mod import;
mod stream;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, Subcommand};
use cophr_protocol::fhir::{self, ExportMeta};
use cophr_protocol::{fold, EntryId};
use serde_json::{json, Value as Json};

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::home::write_atomic;
use crate::output;
use cophr_node::session::Cancel;

/// FHIR R4 in and out.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Import FHIR resources as signed entries: Bundles, NDJSON files, or directories of them
    Import(import::ImportArgs),
    /// Export the record as FHIR R4: a Bundle (type collection) or NDJSON per resource type
    Export(ExportArgs),
}

/// Export what you may see of the record as FHIR R4.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Entries imported from FHIR export as the resource that came in; others \
as a resource built from their fields. Exporting is recorded in the audit trail.

Examples:
  cophr fhir export -o record.json
  cophr fhir export --ndjson out/        (out/Observation.ndjson, out/Patient.ndjson, …)"
)]
pub struct ExportArgs {
    /// Write a Bundle (type collection) to FILE (`-` for standard output, the default)
    #[arg(short, long, value_name = "FILE", conflicts_with = "ndjson")]
    output: Option<String>,

    /// Write one NDJSON file per resource type into DIR instead
    #[arg(long, value_name = "DIR")]
    ndjson: Option<PathBuf>,

    /// Give each resource its entry id (`e-…`) instead of its original id
    #[arg(long)]
    entry_ids: bool,

    #[command(flatten)]
    out: Out,
}

/// Runs `fhir`.
pub fn run(ctx: &Ctx, c: Command) -> Result<()> {
    match c {
        Command::Import(a) => import::import(ctx, a),
        Command::Export(a) => export(ctx, a),
    }
}

fn export(ctx: &Ctx, args: ExportArgs) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let meta = ExportMeta {
        ids: if args.entry_ids {
            fhir::IdPolicy::Entry
        } else {
            fhir::IdPolicy::Original
        },
        link_patient: false,
    };
    let session = context::session(ctx, &store, &me);
    let exported = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let viewer = r.viewer(&me.actor(), now);
            if !viewer.has_access() {
                return Err(CliError::access("no access to this record"));
            }
            let state = fold::current(r, &viewer);
            let mut out: Vec<(EntryId, String, Json)> = Vec::new();
            for item in &state.items {
                let resource = fhir::export(&record, &item.id, &item.category, &item.body, &meta)
                    .map_err(|e| CliError::invalid(format!("entry {}: {e}", item.id)))?;
                out.push((item.current, fhir::full_url(&item.id, &item.body), resource));
            }
            seen.export();
            seen.add(out.iter().map(|(id, _, _)| *id));
            seen.detail(format!("FHIR export: {} resources", out.len()));
            Ok(out)
        })?
    })?;
    let total = exported.len();

    let type_of = |r: &Json| r["resourceType"].as_str().unwrap_or("Basic").to_owned();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, _, r) in &exported {
        *counts.entry(type_of(r)).or_default() += 1;
    }
    if let Some(dir) = &args.ndjson {
        // Without a Bundle's fullUrls, references to them are rewritten to `Type/id` (and
        // resources without an id get one), so none that resolved dangles.
        let mut items: Vec<(String, String, Json)> = exported
            .into_iter()
            .map(|(id, url, r)| (url, id.to_string(), r))
            .collect();
        fhir::localise_references(&mut items);
        let mut by_type: BTreeMap<String, Vec<&Json>> = BTreeMap::new();
        for (_, _, r) in &items {
            by_type.entry(type_of(r)).or_default().push(r);
        }
        let dir = output::resolve(dir);
        std::fs::create_dir_all(&dir).map_err(|e| CliError::io("create", &dir, &e))?;
        let mut written = Vec::new();
        for (ty, resources) in &by_type {
            let mut text = String::new();
            for r in resources {
                text.push_str(
                    &serde_json::to_string(r).map_err(|e| CliError::other(e.to_string()))?,
                );
                text.push('\n');
            }
            let path = dir.join(format!("{ty}.ndjson"));
            write_atomic(&path, text.as_bytes(), 0o600)?;
            written.push(path);
        }
        if ctx.json(args.out) {
            return output::json(&json!({
                "record": record, "resources": total, "by_type": counts, "files": written,
            }));
        }
        return output::line(format!(
            "Exported {total} resources of record {} as NDJSON into {} ({} files)",
            record.short(),
            dir.display(),
            written.len()
        ));
    }
    let bundle = fhir::collection(exported.into_iter().map(|(_, url, r)| (url, r)).collect());
    let text = serde_json::to_string_pretty(&bundle).map_err(|e| CliError::other(e.to_string()))?;
    match args.output.as_deref() {
        None | Some("-") => output::line(text),
        Some(file) => {
            let path = output::resolve(Path::new(file));
            write_atomic(&path, text.as_bytes(), 0o600)?;
            if ctx.json(args.out) {
                return output::json(&json!({
                    "record": record, "resources": total, "by_type": counts, "file": path,
                }));
            }
            output::line(format!(
                "Exported {total} resources of record {} as a FHIR Bundle to {}",
                record.short(),
                path.display()
            ))
        }
    }
}
