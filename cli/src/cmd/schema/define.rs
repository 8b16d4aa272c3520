//! `cophr schema define FILE`: an extension category's schema (or its next version) from a
//! JSON definition, written into the record's administrative stream.

use std::path::Path;

use clap::Args as ClapArgs;
use cophr_protocol::entry::Payload;
use cophr_protocol::schema::{ExtensionSchema, MAX_DEFINITION_BYTES};
use serde_json::json;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::home::read_limited;
use crate::output;

const AFTER_HELP: &str = "The file is a JSON definition: category (ext:<namespace>/<name>), \
version (1, then each new version the one before plus one), title, description, summary \
(the field shown in lists) and fields, each with name, title, type (text, long-text, integer, \
decimal, bool, date, date-time, code, quantity, text-list), required, codes (code), units \
(quantity), min and max (numbers), help. A new version may only add optional fields, widen \
value sets, units and ranges, and relabel. A schema has no say on access: grants decide.

The patient (or their device) defines, or anyone whose grant writes that extension.
Examples ship in protocol/src/schema/examples/ (ReSPECT, wound care, blood test request,
maternity):
  cophr schema define wound-care.json";

/// Define an extension category's schema (or give its next version) from a JSON file.
#[derive(ClapArgs, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The JSON definition
    file: String,

    #[command(flatten)]
    out: Out,
}

/// Runs `schema define`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let path = output::resolve(Path::new(&args.file));
    let bytes = read_limited(&path, MAX_DEFINITION_BYTES as u64)?;
    let text = String::from_utf8(bytes)
        .map_err(|_| CliError::invalid(format!("{} is not UTF-8 text", path.display())))?;
    let definition = ExtensionSchema::from_json(&text)
        .map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let (category, version) = (definition.category.clone(), definition.version);
    let id = context::write(ctx, &store, &me, &record, Payload::DefineSchema(definition))?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "entry": id,
            "record": record,
            "category": category.name(),
            "version": version,
        }));
    }
    output::line(format!("{id}  {category} version {version}"))
}
