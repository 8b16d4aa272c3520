//! `cophr fhir import`: whole exports in bounded memory, one patient per record, updates as
//! versions.
//!
//! Two passes over the files, each streaming one resource at a time ([`super::stream`]):
//! 1. check: every resource is mapped (errors collected: without `--keep-going` any error
//!    stops the import before anything is stored) and every Patient noted in a
//!    [`PatientIndex`];
//! 2. store: each resource of the record's patient (or about no patient) is matched by its
//!    identity (type and id) against what the record holds: unchanged (`meta` aside) stores
//!    nothing, changed amends the entry (a new version), new creates one. Writes go in
//!    chunks of at most [`CHUNK`] resources, each one durable write: an import stopped
//!    midway keeps its finished chunks, and running it again stores nothing twice.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args as ClapArgs;
use cophr_protocol::access::Level;
use cophr_protocol::audit::Action;
use cophr_protocol::entry::Payload;
use cophr_protocol::fhir::{self, FhirError, ImportMeta, Owner, PatientIndex, PatientKey};
use cophr_protocol::trust::attestation::Attributes;
use cophr_protocol::trust::TrustList;
use cophr_protocol::{fold, schema, Category, RecordId, Timestamp, Value};
use serde_json::{json, Value as Json};

use super::stream::{self, FileError, Item};
use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Code, Result};
use crate::home::Identity;
use crate::output;
use crate::store::Store;
use cophr_node::store::{BatchError, BatchInfo, Held, Holdings, MAX_WRITE_ALL};

/// The NHS number's FHIR identifier system.
const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// Most resources stored in one durable write (below the store's [`MAX_WRITE_ALL`]).
pub const CHUNK: usize = 1000;
const _: () = assert!(CHUNK <= MAX_WRITE_ALL);
/// Most problems listed in a refusal's message.
const MAX_LISTED: usize = 20;
/// Most refused resources (each with its OperationOutcome), skipped resources and stored
/// entries listed one by one in the JSON report; beyond, only counted.
pub const MAX_REPORTED: usize = 10_000;
/// Most Binary resources one import stores (each a document file stored apart, linked by
/// its fullUrl and `Binary/<id>`).
pub const MAX_BINARIES: usize = 100_000;

const IMPORT_HELP: &str = "Reads Bundles (transaction, batch, collection, document, \
searchset), single resources (.json), NDJSON files (.ndjson, one resource a line) and \
directories of them (a bulk export), of any size: files are read one resource at a time and \
stored in durable writes of at most 1000 resources.

Each resource becomes an entry signed by you, keeping the original resource (so it exports as \
it came in) and its source system. Mapped types go to their category; every other type \
(Encounter, Practitioner, Organization, Medication, Provenance, Claim, …) is kept whole in \
its own category ext:fhir/<type> (e.g. ext:fhir/encounter). A Binary resource's file is \
stored apart (sealed, its type checked against its content) and becomes the file of the \
DocumentReference or Media whose attachment url names it (the Binary's fullUrl, or \
Binary/<id>), as `cophr fhir export` writes them. Bundle, OperationOutcome and Parameters \
resources, and files in a directory that are not FHIR (a bulk export's log.ndjson), are \
skipped with a note.

One patient per record: resources about another patient than the record's (by the Patient \
resource, its identifiers such as the NHS number, and the subject/patient references to it) \
are reported per patient and not stored. A record with no Patient yet takes the input's only \
patient, or the one named by --patient (which can also name the record's patient in an input \
from a system that knows them by other ids).

On a provider node, --all-records imports a whole-practice export into the records held \
here of the patients who shared them: each patient of the input goes to the record whose \
patient has the same identifier (the NHS number of a Patient resource in the record, or the \
one an identity assurance service this node trusts attests in the patient's profile); \
resources about no patient go into each of those records; patients no record here is for, \
and categories this node may not write in a record, are reported and not stored.

Updates are versions: a resource is identified by its type and id. Importing it again \
unchanged (a change of meta alone, e.g. meta.lastUpdated, is no change) stores nothing; \
changed, it amends its entry (the earlier version stays in the history). So an import can \
be run again after a crash, or with a newer export, and stores nothing twice.

If any resource is invalid, nothing is stored and each problem is listed (exit code 5); \
with --keep-going the valid resources are stored and each invalid one is reported (with an \
OperationOutcome in --json). On a terminal, a progress line is shown on standard error.

Examples:
  cophr fhir import ips-bundle.json --source 'St Elsewhere GP'
  cophr fhir import bulk-export/ --keep-going      (its *.json and *.ndjson files)
  cophr fhir import practice.ndjson --patient 'https://fhir.nhs.uk/Id/nhs-number|9434765919'
  cophr fhir import practice-export/ --all-records --keep-going     (on a provider node)";

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

    /// Store the valid resources and report each invalid one, instead of storing nothing
    #[arg(long)]
    keep_going: bool,

    /// The input's patient who is the record's: needed when the record has no Patient yet
    /// and the input holds several; when the record has one, says this patient of the
    /// input is the same person (other ids, no shared identifier). `Patient/<id>`, an id,
    /// a fullUrl, or an identifier `system|value`
    #[arg(long, value_name = "PATIENT", conflicts_with = "all_records")]
    patient: Option<String>,

    /// A whole-practice export on a provider node: each patient's resources go into the
    /// record held here whose patient has the same identifier (e.g. NHS number), resources
    /// about no patient (Practitioner, Organization, Medication, …) into each of those
    /// records; resources of patients no record here is for, and those in categories this
    /// node may not write in a record, are reported and not stored
    #[arg(long)]
    all_records: bool,

    #[command(flatten)]
    out: Out,
}

/// A file to read, and whether it was found in a directory (then a file that is not FHIR
/// is skipped with a note, not an error).
struct Input {
    path: PathBuf,
    in_dir: bool,
}

/// The files to read: the paths given, and the `.json`/`.ndjson` files of directories.
fn files(paths: &[PathBuf]) -> Result<Vec<Input>> {
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
            out.extend(found.into_iter().map(|path| Input { path, in_dir: true }));
        } else {
            out.push(Input {
                path: p,
                in_dir: false,
            });
        }
    }
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
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

/// An OperationOutcome for one refused resource.
fn outcome(e: &FhirError) -> Json {
    let mut issue =
        json!({"severity": "error", "code": e.issue_code(), "diagnostics": e.to_string()});
    if let Some(p) = e.path() {
        issue["expression"] = json!([p]);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}

fn holdings(store: &Store, me: &Identity, record: &RecordId, now: Timestamp) -> Result<Holdings> {
    Ok(store.fhir_holdings(record, &me.actor(), now)?)
}

/// The outcome of an import.
#[derive(Default)]
struct Report {
    files: usize,
    created: usize,
    amended: usize,
    unchanged: usize,
    by_type: BTreeMap<String, usize>,
    by_category: BTreeMap<String, usize>,
    skipped: Vec<Json>,
    skipped_count: usize,
    /// Invalid resources and files: file, where, type and id, and the OperationOutcome.
    refused: Vec<Json>,
    refused_count: usize,
    /// One line per problem, for the message refusing the import.
    problems: Vec<String>,
    other_patients: BTreeMap<String, usize>,
    /// With `--all-records`: resources not stored because this node may not write their
    /// category in the record, by "record category".
    no_write: BTreeMap<String, usize>,
    /// With `--all-records`: patients several records here are for (none stored).
    ambiguous: Vec<String>,
    entries: Vec<Json>,
    read: usize,
    /// Files of Binary resources stored apart.
    binaries: usize,
}

impl Report {
    fn skip(&mut self, note: Json) {
        self.skipped_count += 1;
        if self.skipped.len() < MAX_REPORTED {
            self.skipped.push(note);
        }
    }

    fn refuse(&mut self, file: &Path, at: &str, resource: Option<&Json>, e: &FhirError) {
        self.refused_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(format!("{}: {at}: {e}", file.display()));
        }
        if self.refused.len() < MAX_REPORTED {
            self.refused.push(json!({
                "file": file_name(file),
                "at": at,
                "resourceType": resource.and_then(|r| r.get("resourceType")),
                "id": resource.and_then(|r| r.get("id")),
                "outcome": outcome(e),
            }));
        }
    }
}

/// Maps one resource as the importer's options say.
fn map_item(
    item: &Item,
    resource: &Json,
    name: &str,
    source_arg: Option<&str>,
    names: &fhir::Names,
) -> std::result::Result<fhir::Imported, FhirError> {
    let has_meta_source = resource
        .get("meta")
        .and_then(|m| m.get("source"))
        .is_some_and(Json::is_string);
    let meta = ImportMeta {
        source: if source_arg.is_none() && has_meta_source {
            None
        } else {
            Some(source_arg.unwrap_or(name))
        },
        full_url: item.full_url.as_deref(),
        names: Some(names),
    };
    fhir::import_with(resource, &meta)
}

pub(super) fn import(ctx: &Ctx, args: ImportArgs) -> Result<()> {
    check_source(args.source.as_deref())?;
    let inputs = files(&args.paths)?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = if args.all_records {
        if ctx.global.record.is_some() {
            return Err(CliError::new(
                Code::Usage,
                "--all-records imports into every record held here whose patient is in the \
                 input: leave out --record",
            ));
        }
        None
    } else {
        Some(ctx.record(&store, Some(&me.actor()))?)
    };
    let now = ctx.now()?;
    let device = ctx.device(&me);
    let held = match &record {
        Some(r) => holdings(&store, &me, r, now)?,
        None => Holdings::default(),
    };

    // Pass 1: check everything, note the patients (and the names of the Medications,
    // Practitioners, Encounters … the input holds, beside those the record holds: a
    // MedicationRequest naming its drug only by reference shows its name, and summaries
    // name the visit and the clinician).
    let mut names: fhir::Names = held.names.clone();
    let mut index = PatientIndex::default();
    let record_had_patient = !held.patient_keys.is_empty();
    let mine = if record_had_patient {
        Some(
            index
                .add_keys(&held.patient_keys)
                .map_err(|e| CliError::invalid(e.to_string()))?,
        )
    } else {
        None
    };
    let mut report = Report {
        files: inputs.len(),
        ..Report::default()
    };
    let mut bad_files: HashSet<usize> = HashSet::new();
    // The files of the input's Binary resources, by the urls that name them.
    let mut links: HashMap<String, BTreeMap<String, Value>> = HashMap::new();
    for (n, input) in inputs.iter().enumerate() {
        let name = file_name(&input.path);
        let mut too_many = None;
        let result = stream::read(&input.path, &mut |item| {
            let resource = match &item.resource {
                Ok(r) => r,
                Err(e) => {
                    report.refuse(&input.path, &item.at, None, e);
                    return Ok(());
                }
            };
            if resource["resourceType"] == "Binary" {
                match store_binary(&store, resource) {
                    Ok(Some(fields)) if links.len() < 2 * MAX_BINARIES => {
                        report.binaries += 1;
                        if let Some(u) = &item.full_url {
                            links.insert(u.clone(), fields.clone());
                        }
                        if let Some(id) = resource["id"].as_str() {
                            links.insert(format!("Binary/{id}"), fields);
                        }
                    }
                    Ok(Some(_)) => {
                        return Err(CliError::invalid(format!(
                            "more than {MAX_BINARIES} Binary resources in one import: \
                             import the files in parts"
                        )))
                    }
                    Ok(None) => {}
                    Err(e) => report.refuse(&input.path, &item.at, Some(resource), &e),
                }
                return Ok(());
            }
            for (k, v) in fhir::reference_names(resource, item.full_url.as_deref()) {
                if names.len() < fhir::MAX_NAMES {
                    names.insert(k, v);
                }
            }
            match map_item(&item, resource, &name, args.source.as_deref(), &names) {
                Ok(i) if i.resource_type == "Patient" => {
                    if let Err(e) = index.add(resource, item.full_url.as_deref()) {
                        too_many = Some(e.to_string());
                        return Err(CliError::invalid(e.to_string()));
                    }
                }
                Ok(_) => {}
                Err(e) if e.is_unmapped() => report.skip(json!({
                    "file": name,
                    "at": item.at,
                    "resourceType": resource["resourceType"],
                    "id": resource.get("id"),
                })),
                Err(e) => report.refuse(&input.path, &item.at, Some(resource), &e),
            }
            Ok(())
        });
        match result {
            Ok(_) => {}
            Err(FileError::NotFhir(why)) if input.in_dir => {
                bad_files.insert(n);
                report.skip(json!({"file": name, "note": format!("not a FHIR file: {why}")}));
            }
            Err(FileError::NotFhir(why)) => {
                bad_files.insert(n);
                report.refuse(
                    &input.path,
                    "file",
                    None,
                    &FhirError::NoResourceType {
                        path: format!("the file ({why})"),
                    },
                );
            }
            Err(FileError::Invalid(e)) => {
                bad_files.insert(n);
                report.refuse(&input.path, "file", None, &e);
            }
            Err(FileError::Stopped(e)) => return Err(too_many.map_or(e, CliError::invalid)),
        }
    }
    if report.refused_count > 0 && !args.keep_going {
        return Err(refusal(&report));
    }

    // Whose record it is.
    let mine = match (mine, args.patient.as_deref()) {
        _ if record.is_none() => None,
        (Some(m), None) => Some(m),
        (Some(_), Some(p)) => {
            // The person importing says this patient of the input is the record's (e.g.
            // from a system with other ids and no shared identifier): one patient.
            let key = PatientKey::parse(p);
            if index.find(&key).is_none() {
                return Err(CliError::invalid(format!(
                    "--patient {p}: no such patient in the input"
                )));
            }
            let Some(own) = held.patient_keys.first().cloned() else {
                return Err(CliError::invalid("the record's patient has no id"));
            };
            Some(
                index
                    .add_keys(&[own, key])
                    .map_err(|e| CliError::invalid(e.to_string()))?,
            )
        }
        (None, Some(p)) => Some(index.find(&PatientKey::parse(p)).ok_or_else(|| {
            CliError::invalid(format!("--patient {p}: no such patient in the input"))
        })?),
        (None, None) => match index.len() {
            0 => None,
            1 => index.patients().first().copied(),
            n => {
                let some: Vec<&str> = index
                    .patients()
                    .iter()
                    .take(5)
                    .map(|p| index.label(*p))
                    .collect();
                return Err(CliError::invalid(format!(
                    "the input holds {n} patients ({}{}) and the record has no Patient yet: \
                     name the record's patient with --patient; nothing was stored",
                    some.join(", "),
                    if n > 5 { ", …" } else { "" }
                )));
            }
        },
    };

    // Pass 2: store.
    let progress = std::io::stderr().is_terminal();
    let writer = |record: RecordId| Writer {
        ctx,
        store: &store,
        me: &me,
        record,
        now,
        device: device.clone(),
        chunk: Vec::new(),
        published: false,
        progress,
        stored: 0,
    };
    let (mut targets, route) = match record {
        Some(record) => (
            vec![Target {
                held,
                w: writer(record),
                viewer: None,
            }],
            Route::One(mine),
        ),
        None => {
            let trust = ctx.home.trust_list()?;
            let (matched, by_patient) =
                match_records(&store, &me, &trust, now, &mut index, &mut report)?;
            let mut targets = Vec::with_capacity(matched.len());
            for (r, viewer) in matched {
                targets.push(Target {
                    held: holdings(&store, &me, &r, now)?,
                    w: writer(r),
                    viewer: Some(viewer),
                });
            }
            (targets, Route::All(by_patient))
        }
    };
    for (n, input) in inputs.iter().enumerate() {
        if bad_files.contains(&n) {
            continue;
        }
        let name = file_name(&input.path);
        let result = stream::read(&input.path, &mut |item| {
            let Ok(resource) = &item.resource else {
                return Ok(());
            };
            report.read += 1;
            let Ok(mut i) = map_item(&item, resource, &name, args.source.as_deref(), &names) else {
                return Ok(());
            };
            if let Some(fields) = linked_file(&i, resource, &links) {
                match with_file(i.body, resource, fields) {
                    Ok(body) => i.body = body,
                    Err(e) => {
                        report.refuse(&input.path, &item.at, Some(resource), &e);
                        return Ok(());
                    }
                }
            }
            let dests: Vec<usize> = match &route {
                Route::One(mine) => {
                    let other = match index.owner(resource, item.full_url.as_deref()) {
                        Owner::Patient(p) => mine
                            .filter(|m| index.canonical(*m) != p)
                            .map(|_| index.label(p).to_owned()),
                        Owner::Unknown(r) => mine.map(|_| r),
                        Owner::Nobody => None,
                    };
                    if let Some(p) = other {
                        *report.other_patients.entry(p).or_default() += 1;
                        return Ok(());
                    }
                    vec![0]
                }
                Route::All(by_patient) => match index.owner(resource, item.full_url.as_deref()) {
                    Owner::Patient(p) => match by_patient.get(&index.canonical(p)) {
                        Some(t) => vec![*t],
                        None => {
                            *report
                                .other_patients
                                .entry(index.label(p).to_owned())
                                .or_default() += 1;
                            return Ok(());
                        }
                    },
                    Owner::Unknown(r) => {
                        *report.other_patients.entry(r).or_default() += 1;
                        return Ok(());
                    }
                    Owner::Nobody => (0..targets.len()).collect(),
                },
            };
            let hash = fhir::content_hash(resource);
            let key = fhir::identity(resource);
            let last = dests.len().saturating_sub(1);
            let mut i = Some(i);
            for (n, t) in dests.into_iter().enumerate() {
                let this = if n == last { i.take() } else { i.clone() };
                let Some(this) = this else {
                    break;
                };
                let target = &mut targets[t];
                if let Some(viewer) = &target.viewer {
                    let may = viewer.level_on(&this.category) >= Some(Level::Write);
                    if !may {
                        *report
                            .no_write
                            .entry(format!("{} {}", target.w.record.short(), this.category))
                            .or_default() += 1;
                        continue;
                    }
                }
                target.stage(
                    &mut report,
                    this,
                    key.clone(),
                    hash,
                    resource,
                    &input.path,
                    &item.at,
                    &name,
                )?;
            }
            Ok(())
        });
        match result {
            Ok(_) => {
                for t in &mut targets {
                    t.w.flush(&mut t.held, &mut report, &name)?;
                }
            }
            Err(FileError::Stopped(e)) => return Err(e),
            Err(FileError::NotFhir(why)) => {
                return Err(CliError::invalid(format!(
                    "{}: not FHIR: {why}",
                    input.path.display()
                )))
            }
            Err(FileError::Invalid(e)) => {
                return Err(CliError::invalid(format!("{}: {e}", input.path.display())))
            }
        }
    }
    if progress && report.read > 0 {
        eprintln!();
    }
    let mut records = Vec::with_capacity(targets.len());
    for t in &targets {
        if t.w.stored > 0 {
            ctx.mark_changed(&t.w.record);
        }
        records.push((t.w.record, t.w.stored));
    }
    if ctx.json(args.out) {
        return print_json(&records, args.all_records, &report);
    }
    print_text(&records, args.all_records, &report)
}

/// The records this node holds whose patient is one of the input's (`--all-records`),
/// each with what this node may do in it, and the input's patients → their record's
/// target. A record's patient is known by the identifiers (e.g. NHS number) of its
/// Patient resources (imported, or its demographics as FHIR) and the NHS number an identity
/// assurance service this node trusts attests in the patient's profile; ids are not used
/// (two systems' `Patient/1` are not one person). A patient two records claim is reported and
/// goes to neither.
#[allow(clippy::type_complexity)]
fn match_records(
    store: &Store,
    me: &Identity,
    trust: &TrustList,
    now: Timestamp,
    index: &mut PatientIndex,
    report: &mut Report,
) -> Result<(
    Vec<(RecordId, cophr_protocol::fold::Viewer)>,
    HashMap<usize, usize>,
)> {
    let input: Vec<usize> = index.patients();
    let mut claimed: Vec<(RecordId, usize, cophr_protocol::fold::Viewer)> = Vec::new();
    for r in store.records()? {
        let (keys, viewer) = store.with_record(&r, |rec| {
            let viewer = rec.viewer(&me.actor(), now);
            let mut keys = Vec::new();
            if viewer.has_access() && !viewer.is_patient() {
                for i in fold::current(rec, &viewer).in_category(&Category::Demographics) {
                    let Ok(j) = fhir::export(&r, &i.id, &i.category, &i.body, &Default::default())
                    else {
                        continue;
                    };
                    if j["resourceType"] == "Patient" {
                        keys.extend(
                            PatientIndex::keys_of(&j, None)
                                .into_iter()
                                .filter(|k| matches!(k, PatientKey::Identifier(_))),
                        );
                    }
                }
            }
            // And the NHS number an identity assurance service this node trusts attests
            // in the patient's profile.
            if let Some(profile) = rec.profile(&r, None) {
                for a in &profile.attestations {
                    if trust.why_not(&r, a, now).is_some() {
                        continue;
                    }
                    if let Attributes::Person {
                        national_number: Some(n),
                        ..
                    } = &a.attestation.attributes
                    {
                        if n.system.eq_ignore_ascii_case("nhs") {
                            let digits: String =
                                n.value.chars().filter(|c| !c.is_whitespace()).collect();
                            keys.push(PatientKey::Identifier(format!("{NHS_NUMBER}|{digits}")));
                        }
                    }
                }
            }
            (keys, viewer)
        })?;
        if keys.is_empty() {
            continue;
        }
        let p = index
            .add_keys(&keys)
            .map_err(|e| CliError::invalid(e.to_string()))?;
        claimed.push((r, p, viewer));
    }
    // Only records whose patient is one of the input's (after every merge).
    let wanted: HashSet<usize> = input.iter().map(|p| index.canonical(*p)).collect();
    let mut by_patient: HashMap<usize, Vec<usize>> = HashMap::new();
    for (n, (_, p, _)) in claimed.iter().enumerate() {
        let c = index.canonical(*p);
        if wanted.contains(&c) {
            by_patient.entry(c).or_default().push(n);
        }
    }
    let mut matched = Vec::new();
    let mut route = HashMap::new();
    let mut claimed: Vec<Option<(RecordId, usize, cophr_protocol::fold::Viewer)>> =
        claimed.into_iter().map(Some).collect();
    let mut patients: Vec<(usize, Vec<usize>)> = by_patient.into_iter().collect();
    patients.sort();
    for (c, records) in patients {
        if records.len() > 1 {
            let names: Vec<String> = records
                .iter()
                .filter_map(|n| claimed[*n].as_ref().map(|(r, _, _)| r.short()))
                .collect();
            report.ambiguous.push(format!(
                "patient {} is the patient of {} records here ({}): none of their \
                 resources was stored",
                index.label(c),
                records.len(),
                names.join(", ")
            ));
            continue;
        }
        if let Some((r, _, viewer)) = claimed[records[0]].take() {
            route.insert(c, matched.len());
            matched.push((r, viewer));
        }
    }
    Ok((matched, route))
}

/// The message refusing an import with invalid resources.
fn refusal(report: &Report) -> CliError {
    let n = report.refused_count;
    let mut msg = format!(
        "{n} invalid FHIR input{}; nothing was stored (--keep-going stores the valid ones):",
        if n == 1 { "" } else { "s" }
    );
    for e in &report.problems {
        msg.push_str("\n  ");
        msg.push_str(e);
    }
    if n > report.problems.len() {
        msg.push_str(&format!("\n  … and {} more", n - report.problems.len()));
    }
    CliError::invalid(msg)
}

/// How pass 2 sends each resource to a record: into the one record (with its patient, if
/// known), or, with `--all-records`, by patient (canonical patient → target).
enum Route {
    One(Option<usize>),
    All(HashMap<usize, usize>),
}

/// A record being imported into: what it holds, its writer, and (with `--all-records`)
/// what this node may do in it.
struct Target<'a> {
    held: Holdings,
    w: Writer<'a>,
    viewer: Option<cophr_protocol::fold::Viewer>,
}

impl Target<'_> {
    /// Stages one mapped resource: unchanged stores nothing, changed amends its entry, new
    /// creates one; a chunk is written when full.
    #[allow(clippy::too_many_arguments)]
    fn stage(
        &mut self,
        report: &mut Report,
        i: fhir::Imported,
        key: Option<(String, String)>,
        hash: [u8; 32],
        resource: &Json,
        path: &Path,
        at: &str,
        name: &str,
    ) -> Result<()> {
        let held = &mut self.held;
        let w = &mut self.w;
        let target = match &key {
            Some(k) => {
                if held
                    .by_id
                    .get(k)
                    .is_some_and(|h| h.current.is_none() && h.hash != hash)
                {
                    // Changed again within this chunk: store the chunk first.
                    w.flush(held, report, name)?;
                }
                match held.by_id.get(k) {
                    Some(h) if h.hash == hash => {
                        report.unchanged += 1;
                        return Ok(());
                    }
                    Some(h) if h.category != i.category => {
                        report.refuse(
                            path,
                            at,
                            Some(resource),
                            &FhirError::BadValue {
                                path: i.resource_type.clone(),
                                value: k.1.chars().take(64).collect(),
                                reason: "the new version maps to another category than the \
                                         entry it updates",
                            },
                        );
                        return Ok(());
                    }
                    Some(h) => h.current,
                    None => None,
                }
            }
            None => {
                if held.no_id.insert(hash, None).is_some() {
                    report.unchanged += 1;
                    return Ok(());
                }
                None
            }
        };
        if let Some(k) = &key {
            held.by_id.insert(
                k.clone(),
                Held {
                    current: None,
                    category: i.category.clone(),
                    hash,
                },
            );
        }
        w.chunk.push(Ready {
            key,
            hash,
            id: i.id.clone(),
            resource_type: i.resource_type.clone(),
            payload: match target {
                Some(t) => Payload::Amend {
                    target: t,
                    body: i.body,
                },
                None => Payload::Create {
                    category: i.category.clone(),
                    body: i.body,
                },
            },
            category: i.category,
        });
        if w.chunk.len() >= CHUNK {
            w.flush(held, report, name)?;
        }
        Ok(())
    }
}

/// A resource ready to store.
struct Ready {
    key: Option<(String, String)>,
    hash: [u8; 32],
    id: Option<String>,
    resource_type: String,
    category: Category,
    payload: Payload,
}

/// Stores chunks of ready resources, one durable write each.
struct Writer<'a> {
    ctx: &'a Ctx,
    store: &'a Store,
    me: &'a Identity,
    record: RecordId,
    now: Timestamp,
    device: Option<String>,
    chunk: Vec<Ready>,
    published: bool,
    progress: bool,
    /// Resources stored (created or amended) in this record.
    stored: usize,
}

impl Writer<'_> {
    fn flush(&mut self, held: &mut Holdings, report: &mut Report, name: &str) -> Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        if !self.published {
            context::publish_profile(self.ctx, self.store, self.me, &self.record)?;
            self.published = true;
        }
        let chunk = std::mem::take(&mut self.chunk);
        let info = BatchInfo {
            action: Action::Import,
            detail: Some(format!(
                "FHIR import: {} resources from {name}",
                chunk.len()
            )),
        };
        let ids = self
            .store
            .write_all(
                &self.record,
                &self.me.key,
                chunk.iter().map(|r| r.payload.clone()).collect(),
                info,
                self.now,
                self.device.clone(),
            )
            .map_err(|e| write_error(e, self.store, self.me, &self.record, &chunk, name, report))?;
        self.stored += chunk.len();
        for (id, r) in ids.into_iter().zip(&chunk) {
            let amend = matches!(r.payload, Payload::Amend { .. });
            if amend {
                report.amended += 1;
            } else {
                report.created += 1;
            }
            if let Some(k) = &r.key {
                held.by_id.insert(
                    k.clone(),
                    Held {
                        current: Some(id),
                        category: r.category.clone(),
                        hash: r.hash,
                    },
                );
            }
            *report.by_type.entry(r.resource_type.clone()).or_default() += 1;
            *report
                .by_category
                .entry(r.category.name().to_owned())
                .or_default() += 1;
            if report.entries.len() < MAX_REPORTED {
                report.entries.push(json!({
                    "entry": id,
                    "category": r.category.name(),
                    "resourceType": r.resource_type,
                    "id": r.id,
                    "file": name,
                    "amended": amend,
                }));
            }
        }
        if self.progress {
            eprint!(
                "\rFHIR import: {} resources read, {} stored ({} new, {} amended)…",
                report.read,
                report.created + report.amended,
                report.created,
                report.amended
            );
        }
        Ok(())
    }
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
    report: &Report,
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
    let stored = report.created + report.amended;
    let done = if stored == 0 {
        "nothing was stored".to_owned()
    } else {
        format!("stored before this: {stored} resources (running the import again stores nothing twice)")
    };
    CliError::new(err.code, format!("{}; {done}", err.message))
}

fn print_json(records: &[(RecordId, usize)], all: bool, r: &Report) -> Result<()> {
    let mut v = json!({
        "record": records.first().map(|(r, _)| *r),
        "files": r.files,
        "imported": r.created + r.amended,
        "created": r.created,
        "amended": r.amended,
        "unchanged": r.unchanged,
        "already_held": r.unchanged,
        "binaries": r.binaries,
        "skipped_count": r.skipped_count,
        "refused_count": r.refused_count,
        "other_patients": r.other_patients,
        "other_patients_resources": r.other_patients.values().sum::<usize>(),
        "by_type": r.by_type,
        "by_category": r.by_category,
        "skipped": r.skipped,
        "refused": r.refused,
        "entries": r.entries,
    });
    if all {
        v["records"] = records
            .iter()
            .map(|(r, n)| json!({"record": r, "stored": n}))
            .collect();
        v["no_write"] = json!(r.no_write);
        v["ambiguous"] = json!(r.ambiguous);
    }
    output::json(&v)
}

fn print_text(records: &[(RecordId, usize)], all: bool, r: &Report) -> Result<()> {
    let list = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let into = if all {
        format!(
            "{} record{}",
            records.len(),
            if records.len() == 1 { "" } else { "s" }
        )
    } else {
        records
            .first()
            .map_or_else(String::new, |(r, _)| format!("record {}", r.short()))
    };
    output::line(format!(
        "Imported {} resources from {} file{} into {into}: {} new, {} amended, {} unchanged",
        r.created + r.amended,
        r.files,
        if r.files == 1 { "" } else { "s" },
        r.created,
        r.amended,
        r.unchanged
    ))?;
    if all {
        for (rec, n) in records {
            output::line(format!("  record {}: {n} stored", rec.short()))?;
        }
        for a in &r.ambiguous {
            output::line(format!("Not stored: {a}"))?;
        }
        if !r.no_write.is_empty() {
            output::line(format!(
                "Not stored (this node may not write these categories in these records): {}",
                list(&r.no_write)
            ))?;
        }
    }
    if r.binaries > 0 {
        output::line(format!(
            "  {} document file{} from Binary resources stored apart",
            r.binaries,
            if r.binaries == 1 { "" } else { "s" }
        ))?;
    }
    if !r.by_type.is_empty() {
        output::line(format!("  by type: {}", list(&r.by_type)))?;
        output::line(format!("  by category: {}", list(&r.by_category)))?;
    }
    if r.unchanged > 0 {
        output::line(format!(
            "{} resources were already in the record unchanged and were not stored again",
            r.unchanged
        ))?;
    }
    if r.skipped_count > 0 {
        let mut types: BTreeMap<String, usize> = BTreeMap::new();
        for s in &r.skipped {
            let t = s["resourceType"]
                .as_str()
                .map_or_else(|| "files that are not FHIR".to_owned(), str::to_owned);
            *types.entry(t).or_default() += 1;
        }
        output::line(format!("Skipped {}: {}", r.skipped_count, list(&types)))?;
        for s in r
            .skipped
            .iter()
            .filter(|s| s.get("note").is_some())
            .take(MAX_LISTED)
        {
            output::line(format!(
                "  {}: {}",
                s["file"].as_str().unwrap_or_default(),
                s["note"].as_str().unwrap_or_default()
            ))?;
        }
    }
    if !r.other_patients.is_empty() {
        let n: usize = r.other_patients.values().sum();
        let mut shown: Vec<(&String, &usize)> = r.other_patients.iter().collect();
        shown.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let shown: Vec<String> = shown
            .iter()
            .take(MAX_LISTED)
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        output::line(format!(
            "Not stored: {n} resources of {} other patient{} ({}{})",
            r.other_patients.len(),
            if r.other_patients.len() == 1 { "" } else { "s" },
            shown.join(", "),
            if r.other_patients.len() > MAX_LISTED {
                ", …"
            } else {
                ""
            }
        ))?;
    }
    if r.refused_count > 0 {
        output::line(format!("Refused {} invalid resources:", r.refused_count))?;
        for p in &r.problems {
            output::line(format!("  {p}"))?;
        }
        if r.refused_count > r.problems.len() {
            output::line(format!(
                "  … and {} more",
                r.refused_count - r.problems.len()
            ))?;
        }
    }
    Ok(())
}

impl From<FhirError> for CliError {
    fn from(e: FhirError) -> Self {
        CliError::new(Code::Invalid, e.to_string())
    }
}

/// Stores a FHIR `Binary` resource's file apart (sealed; its type recognised from its
/// content and checked against the `contentType`): the fields a documents entry naming it
/// takes. `None` for a Binary with no data (nothing to store).
fn store_binary(
    store: &Store,
    resource: &Json,
) -> std::result::Result<Option<BTreeMap<String, Value>>, FhirError> {
    use cophr_node::store::Upload;
    if resource.get("data").is_none() {
        return Ok(None);
    }
    let (content_type, bytes) = fhir::binary_of(resource)?;
    let declared = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let declared =
        (!declared.is_empty() && declared != "application/octet-stream").then_some(declared);
    match cophr_node::store::import_recognised_bytes(store, &bytes, declared) {
        Ok(r) => Ok(Some(r.fields())),
        Err(Upload::Type) => Err(FhirError::BadValue {
            path: "Binary.data".into(),
            value: content_type,
            reason: "is not a file of an accepted type, as far as its content shows",
        }),
        Err(Upload::Declared(d, _)) => Err(FhirError::BadValue {
            path: "Binary.contentType".into(),
            value: d,
            reason: "is not the type of the data",
        }),
        Err(Upload::Failed(e) | Upload::Full(e)) => Err(FhirError::BadValue {
            path: "Binary.data".into(),
            value: e,
            reason: "could not be stored",
        }),
    }
}

/// The file of the input's Binary that a documents resource's attachment url names.
fn linked_file<'a>(
    i: &fhir::Imported,
    resource: &Json,
    links: &'a HashMap<String, BTreeMap<String, Value>>,
) -> Option<&'a BTreeMap<String, Value>> {
    if i.category != Category::Documents {
        return None;
    }
    let url = fhir::attachment_of(resource)?.get("url")?.as_str()?;
    links.get(url)
}

/// An imported documents body with its linked file's fields, checked: the attachment's
/// declared type must be the file's, and the body valid.
fn with_file(
    body: Value,
    resource: &Json,
    fields: &BTreeMap<String, Value>,
) -> std::result::Result<Value, FhirError> {
    let Value::Map(mut m) = body else {
        return Err(FhirError::BadValue {
            path: "attachment".into(),
            value: String::new(),
            reason: "maps to no fields",
        });
    };
    let declared = fhir::attachment_of(resource)
        .and_then(|a| a.get("contentType"))
        .and_then(Json::as_str);
    let found = fields.get("media-type").and_then(Value::as_text);
    if let (Some(d), Some(f)) = (declared, found) {
        if !d.eq_ignore_ascii_case(f) {
            return Err(FhirError::BadValue {
                path: "attachment.contentType".into(),
                value: d.to_owned(),
                reason: "is not the type of the Binary the attachment names",
            });
        }
    }
    for (k, v) in fields {
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let body = Value::Map(m);
    schema::validate(&Category::Documents, &body)?;
    Ok(body)
}
