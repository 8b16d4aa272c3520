//! `cophr fhir import|export`: FHIR R4 connectors.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, Subcommand};
use cophr_protocol::audit::Action;
use cophr_protocol::entry::Payload;
use cophr_protocol::fhir::{self, ExportMeta, FhirError, ImportMeta};
use cophr_protocol::{fold, schema, Category, EntryId, RecordId, Timestamp};
use serde_json::{json, Value as Json};

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Code, Result};
use crate::home::{write_atomic, Identity};
use crate::output;
use crate::store::Store;
use cophr_node::session::Cancel;
use cophr_node::store::{BatchError, BatchInfo, MAX_WRITE_ALL};

/// Most files one import reads (from the paths and directories given).
const MAX_FILES: usize = 10_000;
/// Most errors listed in one message.
const MAX_LISTED: usize = 20;

/// FHIR R4 in and out.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Import FHIR resources as signed entries: Bundles, NDJSON files, or directories of them
    Import(ImportArgs),
    /// Export the record as FHIR R4: a Bundle (type collection) or NDJSON per resource type
    Export(ExportArgs),
}

const IMPORT_HELP: &str = "Reads Bundles (transaction, batch, collection, document, \
searchset), single resources (.json), NDJSON files (.ndjson, one resource a line) and \
directories of them. Each resource of a mapped type becomes an entry of its category, \
signed by you, keeping the original resource (so it exports as it came in) and its source \
system. Resources of other types are reported as skipped. If any resource is invalid, \
nothing at all is stored and each problem is listed (exit code 5). The resources of one \
file are stored in one durable write. A resource the record already holds unchanged is \
not stored again.

Mapped types: Patient, RelatedPerson, Flag, Consent, AllergyIntolerance, Condition, \
Procedure, MedicationStatement, MedicationRequest, Immunization, Observation, \
DiagnosticReport, FamilyMemberHistory, DocumentReference, Media, QuestionnaireResponse.

Examples:
  cophr fhir import ips-bundle.json --source 'St Elsewhere GP'
  cophr fhir import export-dir/          (its *.json and *.ndjson files)";

/// Import FHIR R4 resources into the record as signed entries.
#[derive(ClapArgs, Debug)]
#[command(after_help = IMPORT_HELP)]
pub struct ImportArgs {
    /// Bundle or resource files (.json), NDJSON files (.ndjson), or directories of them
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,

    /// The source system to record as the entries' provenance [default: each resource's
    /// meta.source, else the file's name]
    #[arg(long, value_name = "NAME")]
    source: Option<String>,

    #[command(flatten)]
    out: Out,
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
        Command::Import(a) => import(ctx, a),
        Command::Export(a) => export(ctx, a),
    }
}

/// The files to read: the paths given, and the `.json`/`.ndjson` files of directories.
fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let p = output::resolve(p);
        let meta = std::fs::metadata(&p).map_err(|e| CliError::io("read", &p, &e))?;
        if meta.is_dir() {
            let mut found = Vec::new();
            for e in std::fs::read_dir(&p).map_err(|e| CliError::io("read", &p, &e))? {
                let path = e.map_err(|e| CliError::io("read", &p, &e))?.path();
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                if path.is_file() && (ext == "json" || ext == "ndjson") {
                    found.push(path);
                }
            }
            found.sort();
            out.extend(found);
        } else {
            out.push(p);
        }
        if out.len() > MAX_FILES {
            return Err(CliError::invalid(format!(
                "more than {MAX_FILES} files to import; import them in parts"
            )));
        }
    }
    Ok(out)
}

/// One file's resources: stored together.
struct Unit {
    file: PathBuf,
    kind: String,
    items: Vec<fhir::BundleItem>,
}

fn read_unit(file: &Path) -> std::result::Result<Unit, FhirError> {
    let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    if len > fhir::MAX_INPUT as u64 {
        return Err(FhirError::TooLarge {
            what: "the file".into(),
            len: usize::try_from(len).unwrap_or(usize::MAX),
            max: fhir::MAX_INPUT,
        });
    }
    let bytes = std::fs::read(file).map_err(|e| FhirError::NotJson {
        reason: format!("cannot read: {e}"),
    })?;
    let ndjson = file.extension().is_some_and(|e| e == "ndjson");
    if ndjson {
        let items = fhir::parse_ndjson(&bytes)?
            .into_iter()
            .enumerate()
            .map(|(i, resource)| fhir::BundleItem {
                path: format!("resource {}", i + 1),
                full_url: None,
                method: None,
                resource,
            })
            .collect();
        return Ok(Unit {
            file: file.to_path_buf(),
            kind: "ndjson".into(),
            items,
        });
    }
    let json = fhir::parse(&bytes)?;
    if fhir::resource_type(&json)? == "Bundle" {
        let kind = fhir::bundle_type(&json)?.to_owned();
        return Ok(Unit {
            file: file.to_path_buf(),
            kind,
            items: fhir::bundle_items(&json)?,
        });
    }
    Ok(Unit {
        file: file.to_path_buf(),
        kind: "resource".into(),
        items: vec![fhir::BundleItem {
            path: "resource".into(),
            full_url: None,
            method: None,
            resource: json,
        }],
    })
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

/// A resource mapped and ready to store.
struct Ready {
    resource_type: String,
    id: Option<String>,
    category: Category,
    body: cophr_protocol::Value,
}

/// The files read, each with its resources mapped and ready to store.
type Mapped = Vec<(Unit, Vec<Ready>)>;

fn import(ctx: &Ctx, args: ImportArgs) -> Result<()> {
    check_source(args.source.as_deref())?;
    let files = files(&args.paths)?;
    // Read and map everything first: nothing is stored unless all of it is valid.
    let (units, skipped) = read_all(&files, args.source.as_deref())?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let device = ctx.device(&me);
    let (units, already_held) = drop_held(&store, &me, &record, now, units)?;
    if units.iter().any(|(_, r)| !r.is_empty()) {
        context::publish_profile(ctx, &store, &me, &record)?;
    }
    let stored = store_units(&store, &me, &record, now, device, units)?;
    if !stored.entries.is_empty() {
        ctx.mark_changed(&record);
    }
    let summary = Summary {
        record,
        files: files.len(),
        already_held,
        skipped,
        stored,
    };
    if ctx.json(args.out) {
        return summary.json();
    }
    summary.print()
}

/// Refuses a `--source` that is empty, too long or not one line.
fn check_source(source: Option<&str>) -> Result<()> {
    if let Some(s) = source {
        if s.trim().is_empty() || s.len() > fhir::MAX_SOURCE || s.chars().any(char::is_control) {
            return Err(CliError::invalid(format!(
                "--source must be one line of at most {} bytes",
                fhir::MAX_SOURCE
            )));
        }
    }
    Ok(())
}

/// Reads and maps every file: the units with their ready resources and the skipped ones,
/// or every problem found.
fn read_all(files: &[PathBuf], source_arg: Option<&str>) -> Result<(Mapped, Vec<Json>)> {
    let mut errors: Vec<String> = Vec::new();
    let mut skipped: Vec<Json> = Vec::new();
    let mut units: Mapped = Vec::new();
    for file in files {
        let unit = match read_unit(file) {
            Ok(u) => u,
            Err(e) => {
                errors.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        let ready = map_unit(file, &unit, source_arg, &mut errors, &mut skipped);
        units.push((unit, ready));
    }
    refuse_invalid(&errors)?;
    Ok((units, skipped))
}

/// Maps the resources of one file, noting the skipped ones and any problem.
fn map_unit(
    file: &Path,
    unit: &Unit,
    source_arg: Option<&str>,
    errors: &mut Vec<String>,
    skipped: &mut Vec<Json>,
) -> Vec<Ready> {
    let name = file_name(file);
    let source = source_arg.map_or_else(|| name.clone(), str::to_owned);
    let mut ready = Vec::new();
    for item in &unit.items {
        let has_meta_source = item
            .resource
            .get("meta")
            .and_then(|m| m.get("source"))
            .is_some_and(Json::is_string);
        let meta = ImportMeta {
            source: if source_arg.is_none() && has_meta_source {
                None
            } else {
                Some(&source)
            },
            full_url: item.full_url.as_deref(),
        };
        match fhir::import_with(&item.resource, &meta) {
            Ok(i) => ready.push(Ready {
                resource_type: i.resource_type,
                id: i.id,
                category: i.category,
                body: i.body,
            }),
            Err(e) if e.is_unmapped() => skipped.push(json!({
                "file": name,
                "at": item.path,
                "resourceType": item.resource["resourceType"],
                "id": item.resource.get("id"),
            })),
            Err(e) => errors.push(format!("{} ({}): {e}", file.display(), item.path)),
        }
    }
    if unit.kind == "transaction" && ready.len() > MAX_WRITE_ALL {
        errors.push(format!(
            "{}: a transaction of {} resources is more than can be stored at once \
             ({MAX_WRITE_ALL})",
            file.display(),
            ready.len()
        ));
    }
    ready
}

/// Refuses the import, listing the problems, if there are any.
fn refuse_invalid(errors: &[String]) -> Result<()> {
    if errors.is_empty() {
        return Ok(());
    }
    let n = errors.len();
    let mut msg = format!(
        "{n} invalid FHIR input{}; nothing was stored:",
        if n == 1 { "" } else { "s" }
    );
    for e in errors.iter().take(MAX_LISTED) {
        msg.push_str("\n  ");
        msg.push_str(e);
    }
    if n > MAX_LISTED {
        msg.push_str(&format!("\n  … and {} more", n - MAX_LISTED));
    }
    Err(CliError::invalid(msg))
}

/// Drops the resources the record already holds unchanged; gives how many were dropped.
fn drop_held(
    store: &Store,
    me: &Identity,
    record: &RecordId,
    now: Timestamp,
    units: Mapped,
) -> Result<(Mapped, usize)> {
    // A resource the record already holds unchanged (an import run twice, a Bundle that
    // repeats a resource) is not stored again.
    let mut held: HashSet<String> = store.with_record(record, |r| {
        let viewer = r.viewer(&me.actor(), now);
        fold::current(r, &viewer)
            .items
            .iter()
            .filter_map(|i| {
                i.body
                    .get(schema::FHIR_RESOURCE)?
                    .as_text()
                    .map(str::to_owned)
            })
            .collect()
    })?;
    let mut already_held = 0usize;
    let units: Mapped = units
        .into_iter()
        .map(|(u, ready)| {
            let fresh: Vec<Ready> = ready
                .into_iter()
                .filter(|r| {
                    let text = r
                        .body
                        .get(schema::FHIR_RESOURCE)
                        .and_then(cophr_protocol::Value::as_text)
                        .unwrap_or_default();
                    let new = held.insert(text.to_owned());
                    already_held += usize::from(!new);
                    new
                })
                .collect();
            (u, fresh)
        })
        .collect();
    Ok((units, already_held))
}

/// What an import stored: the entries, counted by resource type and by category, and the
/// files stored so far.
#[derive(Default)]
struct Stored {
    entries: Vec<Json>,
    by_type: BTreeMap<String, usize>,
    by_category: BTreeMap<String, usize>,
    files: Vec<String>,
}

/// Stores the ready resources, one durable write per file (or per `MAX_WRITE_ALL` of them).
fn store_units(
    store: &Store,
    me: &Identity,
    record: &RecordId,
    now: Timestamp,
    device: Option<String>,
    units: Mapped,
) -> Result<Stored> {
    let mut stored = Stored::default();
    for (unit, ready) in units {
        let name = file_name(&unit.file);
        for chunk in ready.chunks(MAX_WRITE_ALL) {
            let payloads: Vec<Payload> = chunk
                .iter()
                .map(|r| Payload::Create {
                    category: r.category.clone(),
                    body: r.body.clone(),
                })
                .collect();
            let info = BatchInfo {
                action: Action::Import,
                detail: Some(format!(
                    "FHIR import: {} resources from {name} ({})",
                    chunk.len(),
                    unit.kind
                )),
            };
            let ids = store
                .write_all(record, &me.key, payloads, info, now, device.clone())
                .map_err(|e| write_error(e, store, me, record, chunk, &name, &stored))?;
            for (id, r) in ids.iter().zip(chunk) {
                *stored.by_type.entry(r.resource_type.clone()).or_default() += 1;
                *stored
                    .by_category
                    .entry(r.category.name().to_owned())
                    .or_default() += 1;
                stored.entries.push(json!({
                    "entry": id,
                    "category": r.category.name(),
                    "resourceType": r.resource_type,
                    "id": r.id,
                    "file": name,
                }));
            }
        }
        stored.files.push(name);
    }
    Ok(stored)
}

/// The error for a refused write of `chunk` from file `name`: which resource and why, and
/// what was stored before it.
fn write_error(
    e: BatchError,
    store: &Store,
    me: &Identity,
    record: &RecordId,
    chunk: &[Ready],
    name: &str,
    stored: &Stored,
) -> CliError {
    let err = match e {
        BatchError::Refused { index, error } => {
            let r = &chunk[index];
            let why = store
                .with_record(record, |rec| {
                    context::session_error(cophr_node::session::explain(
                        rec,
                        &me.actor(),
                        error.clone(),
                    ))
                })
                .unwrap_or_else(|_| error.into());
            CliError::new(
                why.code,
                format!(
                    "{name}: {} {}: {}",
                    r.resource_type,
                    r.id.as_deref().unwrap_or("(no id)"),
                    why.message
                ),
            )
        }
        BatchError::Store(s) => s.into(),
        other => CliError::invalid(other.to_string()),
    };
    let done = if stored.files.is_empty() {
        "nothing was stored".to_owned()
    } else {
        format!(
            "stored before this: {} resources from {}",
            stored.entries.len(),
            stored.files.join(", ")
        )
    };
    CliError::new(err.code, format!("{}; {done}", err.message))
}

/// The outcome of an import, as shown to the user.
struct Summary {
    record: RecordId,
    files: usize,
    already_held: usize,
    skipped: Vec<Json>,
    stored: Stored,
}

impl Summary {
    /// Prints the outcome as JSON.
    fn json(&self) -> Result<()> {
        output::json(&json!({
            "record": self.record,
            "files": self.files,
            "imported": self.stored.entries.len(),
            "already_held": self.already_held,
            "by_type": self.stored.by_type,
            "by_category": self.stored.by_category,
            "skipped": self.skipped,
            "entries": self.stored.entries,
        }))
    }

    /// Prints the outcome as text.
    fn print(&self) -> Result<()> {
        let list = |m: &BTreeMap<String, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Stored {
            entries,
            by_type,
            by_category,
            ..
        } = &self.stored;
        output::line(format!(
            "Imported {} resources from {} file{} into record {}",
            entries.len(),
            self.files,
            if self.files == 1 { "" } else { "s" },
            self.record.short()
        ))?;
        if !by_type.is_empty() {
            output::line(format!("  by type: {}", list(by_type)))?;
            output::line(format!("  by category: {}", list(by_category)))?;
        }
        let already_held = self.already_held;
        if already_held > 0 {
            output::line(format!(
                "{already_held} resources were already in the record unchanged and were not \
                 stored again"
            ))?;
        }
        if !self.skipped.is_empty() {
            let mut types: BTreeMap<String, usize> = BTreeMap::new();
            for s in &self.skipped {
                let t = s["resourceType"].as_str().unwrap_or("?").to_owned();
                *types.entry(t).or_default() += 1;
            }
            output::line(format!(
                "Skipped {} resources of types cophr does not map: {}",
                self.skipped.len(),
                list(&types)
            ))?;
        }
        Ok(())
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
        let mut by_type: BTreeMap<String, Vec<&Json>> = BTreeMap::new();
        for (_, _, r) in &exported {
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

impl From<FhirError> for CliError {
    fn from(e: FhirError) -> Self {
        CliError::new(Code::Invalid, e.to_string())
    }
}
