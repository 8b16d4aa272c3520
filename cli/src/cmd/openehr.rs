//! `cophr openehr export|import`: the record's compositions out as openEHR files, and
//! composition files in, through the same gate as every other write.

use std::path::{Path, PathBuf};

use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use cophr_node::http::openehr::{items, Format};
use cophr_node::session::Cancel;
use cophr_protocol::entry::Payload;
use cophr_protocol::openehr;
use cophr_protocol::schema::ExtensionSchema;
use cophr_protocol::{Category, Value};
use serde_json::{json, Value as Json};

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Code, Result};
use crate::home::write_atomic;
use crate::output;

/// Most composition files one `cophr openehr import` takes.
pub const MAX_IMPORT_FILES: usize = 1000;

/// openEHR compositions in and out (canonical JSON or FLAT).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write every composition you may see of the record into DIR, one file each
    Export(ExportArgs),
    /// Import composition files as new entries (all checked before any is written)
    Import(ImportArgs),
}

/// The format of exported compositions.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// Canonical JSON
    Canonical,
    /// FLAT (simSDT) keys
    Flat,
}

/// Write the record's compositions (the latest version of each item of a core template or
/// an extension with a schema) into a directory.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Each composition goes to DIR/<object id>.json (its uid names its \
version). Exporting is recorded in the audit trail.

Examples:
  cophr openehr export out/
  cophr openehr export --format flat out/"
)]
pub struct ExportArgs {
    /// The directory to write into (created if missing)
    dir: PathBuf,

    /// canonical (the default) or flat
    #[arg(long, value_enum, default_value = "canonical")]
    format: ExportFormat,

    #[command(flatten)]
    out: Out,
}

/// Import openEHR compositions as new entries of the record: each is read with its
/// template (as the openEHR API reads it) and checked by the category's schema; every file
/// is checked before any is written, and your grants decide each write.
#[derive(ClapArgs, Debug)]
#[command(after_help = "A canonical composition names its template \
(archetype_details/template_id); a FLAT one needs --template.

Examples:
  cophr openehr import problem.json
  cophr openehr import --template cophr.problems.v1 problem.flat.json")]
pub struct ImportArgs {
    /// The composition files (canonical JSON, or FLAT with --template)
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// The template of FLAT files (`GET /openehr/v1/definition/template/adl1.4` lists them)
    #[arg(long, value_name = "ID")]
    template: Option<String>,

    #[command(flatten)]
    out: Out,
}

/// Runs `openehr`.
pub fn run(ctx: &Ctx, c: Command) -> Result<()> {
    match c {
        Command::Export(a) => export(ctx, a),
        Command::Import(a) => import(ctx, a),
    }
}

fn exts(r: &cophr_protocol::record::Record) -> Vec<ExtensionSchema> {
    r.extension_schemas()
        .into_iter()
        .map(|(_, s)| s.clone())
        .collect()
}

fn export(ctx: &Ctx, args: ExportArgs) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let fmt = match args.format {
        ExportFormat::Canonical => Format::Canonical,
        ExportFormat::Flat => Format::Flat,
    };
    let session = context::session(ctx, &store, &me);
    let found = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let viewer = r.viewer(&me.actor(), now);
            if !viewer.has_access() {
                return Err(CliError::access("no access to this record"));
            }
            let mut out = Vec::new();
            for f in items(r, &viewer) {
                let Some(n) = f.current else { continue };
                let Some(c) = f.composition_as(r, n, fmt) else {
                    continue;
                };
                seen.add([f.item, f.versions[n - 1].id]);
                out.push((openehr::item_uuid(&f.item), c));
            }
            seen.export();
            seen.detail(format!("openEHR export: {} compositions", out.len()));
            Ok(out)
        })?
    })?;
    let dir = output::resolve(&args.dir);
    std::fs::create_dir_all(&dir).map_err(|e| CliError::io("create", &dir, &e))?;
    let mut written = Vec::new();
    for (object, c) in &found {
        let text = serde_json::to_string_pretty(c).map_err(|e| CliError::other(e.to_string()))?;
        let path = dir.join(format!("{object}.json"));
        write_atomic(&path, text.as_bytes(), 0o600)?;
        written.push(path);
    }
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": record, "compositions": written.len(), "files": written,
        }));
    }
    output::line(format!(
        "Exported {} compositions of record {} into {}",
        written.len(),
        record.short(),
        dir.display()
    ))
}

/// Reads one composition file: at most [`openehr::MAX_COMPOSITION_BYTES`], JSON.
fn read_file(path: &Path) -> Result<Json> {
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            CliError::not_found(format!("{}: no such file", path.display()))
        } else {
            CliError::io("read", path, &e)
        }
    })?;
    if meta.len() > openehr::MAX_COMPOSITION_BYTES as u64 {
        return Err(CliError::invalid(format!(
            "{}: {} bytes; a composition is at most {}",
            path.display(),
            meta.len(),
            openehr::MAX_COMPOSITION_BYTES
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| CliError::io("read", path, &e))?;
    openehr::parse(&bytes).map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))
}

fn import(ctx: &Ctx, args: ImportArgs) -> Result<()> {
    if args.files.len() > MAX_IMPORT_FILES {
        return Err(CliError::new(
            Code::Usage,
            format!("at most {MAX_IMPORT_FILES} files at once"),
        ));
    }
    let as_json = ctx.json(args.out);
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let schemas = store
        .with_record(&record, exts)
        .map_err(|e| CliError::other(e.to_string()))?;
    // Every file read and checked before any is written.
    let mut ready: Vec<(PathBuf, Category, Value)> = Vec::new();
    for path in &args.files {
        let c = read_file(path)?;
        let canonical = c["_type"] == "COMPOSITION";
        let read = match (&args.template, canonical) {
            (_, true) => openehr::from_composition_in(&schemas, &c),
            (Some(t), false) => openehr::flat::from_flat_in(&schemas, t, &c),
            (None, false) => {
                return Err(CliError::new(
                    Code::Usage,
                    format!(
                        "{}: not a canonical COMPOSITION; a FLAT one needs --template",
                        path.display()
                    ),
                ))
            }
        };
        let (category, body) =
            read.map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?;
        ready.push((path.clone(), category, body));
    }
    let mut written = Vec::new();
    for (path, category, body) in ready {
        let id = context::write(
            ctx,
            &store,
            &me,
            &record,
            Payload::Create { category, body },
        )
        .map_err(|e| CliError::new(e.code, format!("{}: {}", path.display(), e.message)))?;
        written.push(json!({"file": path, "entry": id}));
    }
    if as_json {
        return output::json(&json!({"record": record, "imported": written}));
    }
    output::line(format!(
        "Imported {} compositions into record {}",
        written.len(),
        record.short()
    ))
}
