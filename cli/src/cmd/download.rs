//! `cophr download`: a document's file, as attached.

use std::io::Write;
use std::path::PathBuf;

use clap::Args as ClapArgs;
use cophr_node::session::Cancel;
use cophr_protocol::blob::DocumentFile;
use cophr_protocol::schema::{self, FieldType};
use cophr_protocol::{fold, Payload, Value};
use serde_json::json;

use cophr_node::net::{client, NetError};

use crate::context::{self, resolve_entry, Ctx};
use crate::error::{CliError, Result};
use crate::{network, output};

/// Save a document's file: the version in effect of the entry (or the version named).
/// Its bytes are checked against the hash the entry names as they are read. A file this
/// node does not hold yet (a node run with `--documents on-demand`) is fetched first from
/// the record's peers, home host first, through the running node. Viewing is recorded in
/// the record's audit trail.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The entry: its id or a unique prefix as tables show (`e-…`), or one version's id
    entry: String,

    /// Where to save it (`-` for standard output; default: its title, in this directory;
    /// an existing file is never overwritten)
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Fetches the file of `version`, not held here, from the record's peers (home host
/// first), through the running node: a replica fetching documents on demand, or one whose
/// fetch after a pull has not run yet.
fn fetch(
    ctx: &Ctx,
    record: cophr_protocol::RecordId,
    file: &DocumentFile,
    version: &cophr_protocol::EntryId,
) -> Result<()> {
    if ctx.node().is_err() {
        return Err(CliError::not_found(format!(
            "the file of {version} is not held here: start the node (`cophr node run`) and \
             it is fetched from a replica that holds it"
        )));
    }
    let handle = network::handle(ctx)?;
    if !ctx.json {
        output::write_err(&format!(
            "fetching the file of {version} ({:.1} MiB) from the record's peers…\n",
            file.size as f64 / (1024.0 * 1024.0)
        ));
    }
    let fetched = network::block_on(ctx, client::fetch_document(handle, record, file.blob_ref()))?;
    fetched.map(|_| ()).map_err(|e| match e {
        e @ NetError::DocumentUnavailable { .. } => CliError::not_found(e.to_string()),
        e => network::error(e),
    })
}

/// Runs `download`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let found = session.read(&Cancel::new(), now, |rd| {
        rd.record(
            &record,
            |r, seen| -> Result<(DocumentFile, Value, cophr_protocol::EntryId)> {
                let viewer = r.viewer(&me.actor(), now);
                if !viewer.has_access() {
                    return Err(CliError::access("no access to this record"));
                }
                let id = resolve_entry(r, &viewer, &args.entry)?;
                // An item's id stands for its version in effect.
                let version = fold::current(r, &viewer)
                    .items
                    .iter()
                    .find(|i| i.id == id)
                    .map_or(id, |i| i.current);
                let body = match r.payload(&version).as_deref() {
                    Some(Payload::Create { body, .. } | Payload::Amend { body, .. }) => {
                        body.clone()
                    }
                    Some(_) => {
                        return Err(CliError::invalid(format!(
                            "{version} is not a document (a create or amend of one)"
                        )))
                    }
                    None => {
                        return Err(CliError::access(format!(
                            "{version} is sealed with a key not held here"
                        )))
                    }
                };
                let category = r.category_of(&version).cloned();
                let field = category
                    .as_ref()
                    .and_then(schema::schema)
                    .and_then(|s| s.fields.iter().find(|f| f.ty == FieldType::Document))
                    .and_then(|f| body.get(f.name))
                    .ok_or_else(|| {
                        CliError::invalid(format!(
                            "{version} has no document stored apart (a small file kept in the \
                         entry shows with `cophr show --json`)"
                        ))
                    })?;
                let file = DocumentFile::from_value(field)
                    .map_err(|e| CliError::invalid(format!("{version}: {e}")))?;
                seen.add([version]);
                seen.detail("download: document");
                Ok((file, body, version))
            },
        )?
    })?;
    let (file, body, version) = found;
    if !store.has_document(&file.blob_ref()) {
        fetch(ctx, record, &file, &version)?;
    }
    let mut reader = store
        .open_document(&file)
        .map_err(|e| CliError::other(format!("could not read the file of {version}: {e}")))?;
    let text = |k: &str| match body.get(k) {
        Some(Value::Text(t)) => Some(t.as_str()),
        _ => None,
    };
    let to_stdout = args.output.as_deref() == Some(std::path::Path::new("-"));
    if to_stdout {
        let mut buf = Vec::new();
        std::io::copy(&mut reader, &mut buf)
            .map_err(|e| CliError::other(format!("could not read the file of {version}: {e}")))?;
        return output::write_out(&buf);
    }
    let name = args.output.clone().unwrap_or_else(|| {
        PathBuf::from(cophr_node::store::document_file_name(
            text("title").unwrap_or("document"),
            text("media-type").unwrap_or(""),
        ))
    });
    let path = output::resolve(&name);
    let partial = path.with_extension(match path.extension() {
        Some(e) => format!("{}.part", e.to_string_lossy()),
        None => "part".into(),
    });
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)
        .map_err(|e| CliError::invalid(format!("cannot write {}: {e}", partial.display())))?;
    let copied = std::io::copy(&mut reader, &mut out).and_then(|n| out.flush().map(|()| n));
    let n = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(CliError::other(format!(
                "could not read the file of {version}: {e}"
            )));
        }
    };
    if path.exists() {
        let _ = std::fs::remove_file(&partial);
        return Err(CliError::invalid(format!(
            "{} exists: give another name with -o",
            path.display()
        )));
    }
    std::fs::rename(&partial, &path)
        .map_err(|e| CliError::other(format!("cannot write {}: {e}", path.display())))?;
    if ctx.json {
        return output::json(&json!({
            "entry": version,
            "file": path,
            "size": n,
            "media-type": text("media-type"),
        }));
    }
    output::line(format!("{} ({n} bytes)", path.display()))
}
