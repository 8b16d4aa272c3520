//! `cophr attach`: a document (a letter, a scan, a DICOM study) stored apart from its entry.

use std::fs::File;
use std::io::{Read, Seek};
use std::path::PathBuf;

use clap::Args as ClapArgs;
use cophr_protocol::blob::MAX_DOCUMENT_BYTES;
use cophr_protocol::entry::Payload;
use cophr_protocol::schema::{self, FieldType, DOCUMENT_MEDIA_TYPES, SNIFF_BYTES};
use cophr_protocol::{Category, Value};
use rand_core::OsRng;
use serde_json::json;

use crate::context::{self, Ctx};
use crate::error::{CliError, Result};
use crate::output;

const AFTER_HELP: &str = "The file is sealed (encrypted under a key of its own, which only \
those who may read the entry are given) and kept apart from the entry, which names it by \
hash; it replicates to every node allowed to see the category, checked as it streams.
Accepted: PDF, JPEG, PNG, DICOM, OpenDocument (text, spreadsheet, presentation, drawing) and \
plain text, recognised by their content.

Examples:
  cophr attach letter.pdf --title 'Renal clinic letter' --date 2026-11-20
  cophr attach ct-head.dcm --title 'CT head' --description 'Leeds General, Dr Rao'";

/// Attach a document to the record: stored apart from its entry, sealed, named by hash;
/// up to 4 GiB.
#[derive(ClapArgs, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The file
    file: PathBuf,

    /// Its title (default: the file's name)
    #[arg(long)]
    title: Option<String>,

    /// Its media type, if you want it checked (it is recognised from the content)
    #[arg(long, value_name = "TYPE")]
    media_type: Option<String>,

    /// The document's date (YYYY-MM-DD)
    #[arg(long)]
    date: Option<String>,

    /// A description
    #[arg(long)]
    description: Option<String>,

    /// The category (one with a document field)
    #[arg(long, default_value = "documents")]
    category: String,
}

/// Prints how far an attach has gone, in tenths, for files of a megabyte or more.
struct Progress<R> {
    inner: R,
    done: u64,
    total: u64,
    shown: u64,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        if self.total >= 1 << 20 {
            let tenths = self.done * 10 / self.total;
            if tenths > self.shown {
                self.shown = tenths;
                let bar: String = (0..10)
                    .map(|i| if i < tenths { '#' } else { '-' })
                    .collect();
                output::write_err(&format!(
                    "[{bar}] {:>3}%  {:.1} of {:.1} MiB\n",
                    tenths * 10,
                    self.done as f64 / f64::from(1 << 20),
                    self.total as f64 / f64::from(1 << 20)
                ));
            }
        }
        Ok(n)
    }
}

/// Runs `attach`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let category: Category = args.category.parse()?;
    let field = schema::schema(&category)
        .and_then(|s| s.fields.iter().find(|f| f.ty == FieldType::Document))
        .ok_or_else(|| {
            CliError::invalid(format!(
                "{category} has no field for a document stored apart: attach into documents"
            ))
        })?;
    let path = output::resolve(&args.file);
    let mut file = File::open(&path)
        .map_err(|e| CliError::invalid(format!("cannot read {}: {e}", path.display())))?;
    let size = file
        .metadata()
        .map_err(|e| CliError::invalid(format!("cannot read {}: {e}", path.display())))?
        .len();
    if size > MAX_DOCUMENT_BYTES {
        return Err(CliError::invalid(format!(
            "{} is {size} bytes; a document may be at most {MAX_DOCUMENT_BYTES}",
            path.display()
        )));
    }
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| CliError::invalid(format!("cannot read {}: {e}", path.display())))?;
    file.rewind()
        .map_err(|e| CliError::invalid(format!("cannot read {}: {e}", path.display())))?;
    let found = schema::sniff(&head).ok_or_else(|| {
        CliError::invalid(format!(
            "{} is not a file of an accepted type ({}), as far as its content shows",
            path.display(),
            DOCUMENT_MEDIA_TYPES.join(", ")
        ))
    })?;
    if let Some(declared) = &args.media_type {
        if declared != found {
            return Err(CliError::invalid(format!(
                "{} is {found}, not {declared}",
                path.display()
            )));
        }
    }
    let title = match args.title {
        Some(t) => t,
        None => path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Document".into()),
    };
    let mut body = std::collections::BTreeMap::new();
    body.insert("title".to_owned(), Value::Text(title));
    body.insert("media-type".to_owned(), Value::Text(found.to_owned()));
    if let Some(d) = args.date {
        body.insert("date".to_owned(), Value::Text(d));
    }
    if let Some(d) = args.description {
        body.insert("description".to_owned(), Value::Text(d));
    }
    // What a DICOM file's header says it holds (the patient named in it, the study, the
    // modality), shown beside the document.
    if found == "application/dicom" {
        let mut first = Vec::new();
        (&mut file)
            .take(cophr_node::dicom::MAX_HEADER_BYTES as u64)
            .read_to_end(&mut first)
            .map_err(|e| CliError::invalid(format!("cannot read {}: {e}", path.display())))?;
        file.rewind()
            .map_err(|e| CliError::invalid(format!("cannot read {}: {e}", path.display())))?;
        if let Some(h) = cophr_node::dicom::DicomHeader::read(&first) {
            h.fill(&mut body);
        }
    }
    // Checked before the file is stored (the document field is added after).
    let mut check = body.clone();
    check.insert(
        field.name.to_owned(),
        cophr_protocol::blob::DocumentFile {
            hash: cophr_protocol::blob::BlobHash::of(b""),
            size,
            key: None,
        }
        .to_value(),
    );
    schema::validate(&category, &Value::Map(check))?;

    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let reader = Progress {
        inner: file,
        done: 0,
        total: size,
        shown: 0,
    };
    let doc = store
        .import_document(reader, size, &mut OsRng)
        .map_err(|e| CliError::other(format!("could not store {}: {e}", path.display())))?;
    body.insert(field.name.to_owned(), doc.to_value());
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::Create {
            category: category.clone(),
            body: Value::Map(body),
        },
    )?;
    if ctx.json {
        return output::json(&json!({
            "entry": id,
            "record": record,
            "category": category.name(),
            "media-type": found,
            "size": size,
            "hash": doc.hash.to_hex(),
        }));
    }
    output::line(id.to_string())
}
