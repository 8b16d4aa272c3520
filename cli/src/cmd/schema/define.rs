//! `cophr schema define FILE`: an extension category's schema (or its next version) from a
//! JSON definition, an openEHR web template or an OPT, written into the record's
//! administrative stream.

use std::path::Path;

use clap::Args as ClapArgs;
use cophr_protocol::category::Category;
use cophr_protocol::entry::Payload;
use cophr_protocol::schema::template::{sniff_template, TemplateKind, MAX_TEMPLATE_BYTES};
use cophr_protocol::schema::{ExtensionSchema, MAX_DEFINITION_BYTES};
use serde_json::json;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::home::read_limited;
use crate::output;

const AFTER_HELP: &str = "The file is one of (told apart by its content):
- a JSON definition: category (ext:<namespace>/<name>), version (1, then each new version \
the one before plus one), title, description, summary (the field shown in lists) and fields, \
each with name, title, type (text, long-text, integer, decimal, bool, date, date-time, code, \
quantity, text-list), required, codes (code), units (quantity), min and max (numbers), help;
- an openEHR web template (JSON with templateId and tree) or operational template (OPT 1.4, \
XML): each data element becomes a field, and the extension's entries are compositions of that \
template. Its category is --category, else ext:openehr/<template id>; its version the next one.

A new version may only add optional fields, widen value sets, units and ranges, and relabel; \
each field keeps its archetype node. A schema has no say on access: grants decide.

The patient (or their device) defines, or anyone whose grant writes that extension.
Examples ship in protocol/src/schema/examples/ (ReSPECT, wound care, blood test request,
maternity; wound-assessment.opt):
  cophr schema define wound-care.json
  cophr schema define wound-assessment.opt --category ext:uk.nhs.tissue-viability/wound-assessment";

/// Define an extension category's schema (or give its next version) from a JSON
/// definition, an openEHR web template or an OPT.
#[derive(ClapArgs, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The definition: JSON description, web template (JSON) or OPT (XML)
    file: String,

    /// For a template: the extension category it defines (default ext:openehr/<template id>)
    #[arg(long)]
    category: Option<Category>,

    #[command(flatten)]
    out: Out,
}

/// Runs `schema define`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let path = output::resolve(Path::new(&args.file));
    let bytes = read_limited(&path, MAX_TEMPLATE_BYTES as u64)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::invalid(format!("{} is not UTF-8 text", path.display())))?;
    if sniff_template(&text) == TemplateKind::Description && text.len() > MAX_DEFINITION_BYTES {
        return Err(CliError::invalid(format!(
            "{} is {} bytes, more than the {MAX_DEFINITION_BYTES}-byte limit of a JSON definition",
            path.display(),
            text.len()
        )));
    }
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let current = |c: &Category| {
        store
            .with_record(&record, |r| r.extension_schema(c).map(|(_, s)| s.clone()))
            .ok()
            .flatten()
    };
    let definition = ExtensionSchema::for_record(&text, args.category, current)
        .map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?;
    let (category, version) = (definition.category.clone(), definition.version);
    let template = definition.template.as_ref().map(|t| t.id.clone());
    let id = context::write(ctx, &store, &me, &record, Payload::DefineSchema(definition))?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "entry": id,
            "record": record,
            "category": category.name(),
            "version": version,
            "template": template,
        }));
    }
    match template {
        Some(t) => output::line(format!(
            "{id}  {category} version {version} (openEHR template {t})"
        )),
        None => output::line(format!("{id}  {category} version {version}")),
    }
}
