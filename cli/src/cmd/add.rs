//! `cophr add`: a new entry.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args as ClapArgs;
use cophr_protocol::entry::Payload;
use cophr_protocol::{schema, Category};
use serde_json::json;

use crate::context::{self, Ctx};
use crate::error::{CliError, Result};
use crate::fields::{self, BodyArgs};
use crate::home::Home;
use crate::output;

const AFTER_HELP: &str = "Fields are given after the category as --FIELD VALUE or \
--FIELD=VALUE; `cophr schema CATEGORY` lists them.
Quantities are written `140` (the first unit) or `37.2 Cel`; lists comma separated.

Examples:
  cophr add vital-signs --systolic 140 --diastolic 90 --heart-rate 72
  cophr add allergies --agent Penicillin --reaction rash --severity severe
  cophr add about-me --thing-1 'I am deaf in my left ear'
  cophr add documents --file letter.pdf --title 'Renal clinic letter'
  cophr add medications --json metformin.json

Before your first write into someone else's record, your profile (name, role,
organisation) is written into it, so they can see who wrote.";

/// Add an entry to the record: the fields are checked against the category's schema, the
/// entry is signed with your key, and your grant must allow writing that category.
#[derive(ClapArgs, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The category, e.g. vital-signs, medications, allergies (see `cophr schema`)
    category: String,

    /// Read the body from a JSON object in FILE (`-` for standard input) instead of flags
    #[arg(long, value_name = "FILE")]
    json: Option<String>,

    /// Attach a file (documents: PDF, JPEG or PNG); sets data, media-type and a default title
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,

    /// The fields: --FIELD VALUE or --FIELD=VALUE
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "--FIELD VALUE"
    )]
    fields: Vec<String>,
}

/// Applies global options written among the fields, and merges `--json`/`--file`.
pub fn apply_overrides(
    ctx: &mut Ctx,
    body: &mut BodyArgs,
    json: Option<String>,
    file: Option<PathBuf>,
) -> Result<()> {
    if let Some(j) = json {
        if body.json.replace(j).is_some() {
            return Err(CliError::invalid("--json is given more than once"));
        }
    }
    if let Some(f) = file {
        if body.file.replace(f).is_some() {
            return Err(CliError::invalid("--file is given more than once"));
        }
    }
    if let Some(h) = body.home.take() {
        // Inside a running node the home is the node's (the caller chose the node by it).
        if ctx.node.is_none() {
            ctx.home = Home::new(h.clone());
            ctx.global.home = Some(h);
        }
    }
    if let Some(r) = body.record.take() {
        ctx.global.record = Some(r);
    }
    if let Some(n) = body.now.take() {
        ctx.global.now = Some(n);
    }
    if let Some(d) = body.device.take() {
        ctx.global.device = Some(d);
    }
    Ok(())
}

/// If the category has a `device` field and `--device` was written after the category (where
/// clap took it as the global option), its value.
fn device_field_taken_by_clap(
    argv: &[String],
    category: &Category,
    category_arg: &str,
    fields: &[String],
) -> Option<String> {
    schema::schema(category)?.field("device")?;
    let add = argv.iter().position(|a| a == "add")?;
    let cat = add + 1 + argv[add + 1..].iter().position(|a| a == category_arg)?;
    let end = argv.len().saturating_sub(fields.len()).max(cat + 1);
    let between = &argv[cat + 1..end];
    let mut i = 0;
    while i < between.len() {
        if between[i] == "--device" {
            return between.get(i + 1).cloned();
        }
        if let Some(v) = between[i].strip_prefix("--device=") {
            return Some(v.to_owned());
        }
        i += 1;
    }
    None
}

impl Args {
    /// `--home DIR` written among the fields (it overrides the global option).
    pub fn home_override(&self) -> Option<PathBuf> {
        fields::parse(&self.fields, None).ok()?.home
    }

    /// Whether the body is read from standard input (`--json -`).
    pub fn reads_stdin(&self) -> bool {
        self.json.as_deref() == Some("-")
            || fields::parse(&self.fields, None)
                .ok()
                .is_some_and(|b| b.json.as_deref() == Some("-"))
    }
}

/// The schema an extension category has in `record` now (defined as data), if any.
pub fn extension_schema(
    store: &cophr_node::store::Store,
    record: &cophr_protocol::RecordId,
    category: &Category,
) -> Result<Option<schema::ExtensionSchema>> {
    if !category.is_extension() {
        return Ok(None);
    }
    Ok(store.with_record(record, |r| {
        r.extension_schema(category).map(|(_, s)| s.clone())
    })?)
}

/// Runs `add`.
pub fn run(ctx: &mut Ctx, args: Args) -> Result<()> {
    let category: Category = args.category.parse()?;
    let mut body_args = fields::parse(&args.fields, Some(&category))?;
    if body_args.help {
        return output::print(&fields::fields_help(&category));
    }
    if let Some(device) =
        device_field_taken_by_clap(&ctx.argv, &category, &args.category, &args.fields)
    {
        // `cophr add wearables --device Fitbit`: clap read `--device` as the global option,
        // but it names a field of this category (fields come first after the category).
        body_args.pairs.insert(0, ("device".to_owned(), device));
        ctx.global.device = ctx.env_device.clone();
    }
    apply_overrides(ctx, &mut body_args, args.json, args.file)?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let ext = extension_schema(&store, &record, &category)?;
    let body = fields::body(&category, ext.as_ref(), &body_args, &BTreeMap::new())?;
    let summary = schema::summary(&category, &body);
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::Create {
            category: category.clone(),
            body,
        },
    )?;
    if ctx.json {
        return output::json(&json!({
            "entry": id,
            "record": record,
            "category": category.name(),
            "summary": summary,
        }));
    }
    output::line(id.to_string())
}
