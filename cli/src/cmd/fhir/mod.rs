//! `cophr fhir import|export`: FHIR R4 connectors.

mod import;
mod stream;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, Subcommand};
use cophr_protocol::fhir::{self, ExportMeta};
use cophr_protocol::{fold, Category, EntryId};
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
as a resource built from their fields. A document's file (held here, at most 16 MiB) goes \
with it as a Binary its attachment url names (in a Bundle, the Binary's fullUrl; as NDJSON, \
Binary/<id> in Binary.ndjson); larger ones are counted on stderr (`cophr download` saves \
them). Exporting is recorded in the audit trail.

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
            let mut files = Vec::new();
            for item in &state.items {
                let resource = fhir::export(&record, &item.id, &item.category, &item.body, &meta)
                    .map_err(|e| CliError::invalid(format!("entry {}: {e}", item.id)))?;
                if let Some(f) = stored_file(&item.category, &item.body) {
                    files.push((out.len(), item.id, f));
                }
                out.push((item.current, fhir::full_url(&item.id, &item.body), resource));
            }
            // Entries written here name their patient `Patient/<record id>`; the record's
            // Patient resource (its oldest demographics item) is exported under its own
            // id: those references name it, so they resolve in the export and an import
            // elsewhere takes them as that patient's.
            let primary = state
                .in_category(&Category::Demographics)
                .min_by_key(|i| (i.created, i.id))
                .and_then(|p| state.items.iter().position(|i| i.id == p.id));
            if let Some(at) = primary {
                let r = &out[at].2;
                let id = (r["resourceType"] == "Patient")
                    .then(|| r["id"].as_str().map(str::to_owned))
                    .flatten();
                if let Some(id) = id.filter(|id| *id != record.to_string()) {
                    let to = std::collections::HashMap::from([(
                        format!("Patient/{record}"),
                        format!("Patient/{id}"),
                    )]);
                    for (_, _, r) in out.iter_mut() {
                        fhir::rewrite_references(r, &to);
                    }
                }
            }
            seen.export();
            seen.add(out.iter().map(|(id, _, _)| *id));
            seen.detail(format!("FHIR export: {} resources", out.len()));
            Ok((out, files))
        })?
    })?;
    let (mut exported, files) = exported;
    let total = exported.len();
    let binaries = binaries(&store, &mut exported, &files, args.ndjson.is_none())?;
    let left_out = files.len() - binaries.len();
    if left_out > 0 {
        output::write_err(&format!(
            "{left_out} document file(s) not included as Binary: larger than {} MiB or not \
             held here (`cophr download` gets one from a peer)\n",
            fhir::MAX_BINARY_JSON >> 20
        ));
    }

    let type_of = |r: &Json| r["resourceType"].as_str().unwrap_or("Basic").to_owned();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in exported
        .iter()
        .map(|(_, _, r)| r)
        .chain(binaries.iter().map(|(_, r)| r))
    {
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
        for r in items
            .iter()
            .map(|(_, _, r)| r)
            .chain(binaries.iter().map(|(_, r)| r))
        {
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
    let bundle = fhir::collection(
        exported
            .into_iter()
            .map(|(_, url, r)| (url, r))
            .chain(binaries)
            .collect(),
    );
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

/// The file stored apart that a documents item names, with its media type.
fn stored_file(
    category: &cophr_protocol::Category,
    body: &cophr_protocol::Value,
) -> Option<(cophr_protocol::blob::DocumentFile, String)> {
    if *category != cophr_protocol::Category::Documents {
        return None;
    }
    let file = cophr_protocol::blob::DocumentFile::from_value(body.get("file")?).ok()?;
    let media_type = body
        .get("media-type")
        .and_then(cophr_protocol::Value::as_text)
        .unwrap_or("application/octet-stream")
        .to_owned();
    Some((file, media_type))
}

/// The FHIR `Binary` resources carrying the files the exported documents resources link,
/// as `(fullUrl, Binary)`: each file held here whole and at most
/// [`fhir::MAX_BINARY_JSON`] bytes, read and checked as it streams. A Binary's id is the
/// item's, which the resource's attachment `url` (`Binary/<id>`) names; in a Bundle
/// (`in_bundle`) the url becomes the Binary's `fullUrl` (a `urn:uuid:` from the file's
/// hash, one Binary a file), so the Bundle holds what it links.
fn binaries(
    store: &cophr_node::store::Store,
    exported: &mut [(EntryId, String, Json)],
    files: &[(usize, EntryId, (cophr_protocol::blob::DocumentFile, String))],
    in_bundle: bool,
) -> Result<Vec<(String, Json)>> {
    use std::io::Read;
    let mut out: Vec<(String, Json)> = Vec::new();
    let mut by_hash: BTreeMap<cophr_protocol::blob::BlobHash, String> = BTreeMap::new();
    for (at, item, (file, media_type)) in files {
        if file.size > fhir::MAX_BINARY_JSON as u64 || !store.has_document(&file.blob_ref()) {
            continue;
        }
        let url = fhir::urn_uuid(&file.hash.0);
        let resource = &mut exported[*at].2;
        if in_bundle {
            fhir::set_attachment_url(resource, &url);
            if by_hash.contains_key(&file.hash) {
                continue;
            }
        }
        let mut data = Vec::new();
        store
            .open_document(file)
            .map_err(|e| CliError::other(format!("document of {item}: {e}")))?
            .take(fhir::MAX_BINARY_JSON as u64 + 1)
            .read_to_end(&mut data)
            .map_err(|e| CliError::other(format!("document of {item}: {e}")))?;
        let context = match (resource["resourceType"].as_str(), resource["id"].as_str()) {
            (Some(t), Some(id)) => Some(format!("{t}/{id}")),
            _ => None,
        };
        by_hash.insert(file.hash, url.clone());
        out.push((
            url,
            fhir::binary(&item.to_string(), media_type, &data, context.as_deref()),
        ));
    }
    Ok(out)
}
