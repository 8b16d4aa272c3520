//! `cophr amend`: a new version of an entry.

use std::path::PathBuf;

use clap::Args as ClapArgs;
use cophr_protocol::entry::Payload;
use cophr_protocol::fold::{self, Item};
use cophr_protocol::record::Record;
use cophr_protocol::{schema, ActorId, Timestamp};
use serde_json::json;

use crate::context::{self, resolve_entry, Ctx};
use crate::error::{CliError, Result};
use crate::fields;
use crate::output;

const AFTER_HELP: &str = "The fields given replace those of the current version; the others \
are kept. With --json, the object's fields merge over the current version's (a null removes a \
field). Only the entry's author (or their proxy) may amend it.

Examples:
  cophr amend e-abcdefghij --systolic 150
  cophr amend e-abcdefghij --json changes.json";

/// Amend an entry: write a new version with some fields changed. The original stays in the
/// entry's history (`cophr history`).
#[derive(ClapArgs, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The entry: any version's id, or a unique prefix as tables show
    entry: String,

    /// Read the changed fields from a JSON object in FILE (`-` for standard input)
    #[arg(long, value_name = "FILE")]
    json: Option<String>,

    /// Replace the attachment (documents)
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,

    /// The changed fields: --FIELD VALUE or --FIELD=VALUE
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "--FIELD VALUE"
    )]
    fields: Vec<String>,
}

/// The item an entry id (any of its versions) belongs to, as the caller sees it now.
pub fn current_item(r: &Record, me: &ActorId, now: Timestamp, text: &str) -> Result<Item> {
    let viewer = r.viewer(me, now);
    if !viewer.has_access() {
        return Err(CliError::access("no access to this record"));
    }
    let id = resolve_entry(r, &viewer, text)?;
    let h = fold::history(r, &viewer, &id).ok_or_else(|| {
        let kind = r.get(&id).map_or("entry", |e| e.entry().payload.kind());
        CliError::invalid(format!("{id} is a {kind} entry, not record data"))
    })?;
    match fold::item(r, &viewer, &h.item) {
        Some(fold::ItemState::Current(i)) => Ok(*i),
        Some(fold::ItemState::Locked) => Err(CliError::invalid(format!(
            "{} is sealed with a key this identity was not given",
            h.item.short()
        ))),
        _ => Err(CliError::invalid(format!(
            "{} has been deleted; its history is kept (`cophr history {}`)",
            h.item.short(),
            h.item.short()
        ))),
    }
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

/// Runs `amend`.
pub fn run(ctx: &mut Ctx, args: Args) -> Result<()> {
    // Global options written among the fields (--home, --record, --now) are needed before
    // the store is opened; the category, which decides the rest, is known only after.
    let mut first = fields::parse(&args.fields, None)?;
    crate::cmd::add::apply_overrides(ctx, &mut first, None, None)?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let item = store.with_record(&record, |r| current_item(r, &me.actor(), now, &args.entry))??;
    let mut body_args = fields::parse(&args.fields, Some(&item.category))?;
    if body_args.help {
        return output::print(&fields::fields_help(&item.category));
    }
    crate::cmd::add::apply_overrides(ctx, &mut body_args, args.json, args.file)?;
    if body_args.json.is_none() && body_args.file.is_none() && body_args.pairs.is_empty() {
        return Err(CliError::invalid(format!(
            "nothing to change: give the changed fields as --FIELD VALUE or with --json FILE \
             (run `cophr schema {}` for the fields)",
            item.category
        )));
    }
    let base = item.body.as_map().cloned().unwrap_or_default();
    let ext = crate::cmd::add::extension_schema(&store, &record, &item.category)?;
    let body = fields::body(&item.category, ext.as_ref(), &body_args, &base)?;
    if body == item.body {
        return Err(CliError::invalid(
            "nothing to change: the new version would equal the current one",
        ));
    }
    let summary = schema::summary(&item.category, &body);
    let id = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::Amend {
            target: item.current,
            body,
        },
    )?;
    if ctx.json {
        return output::json(&json!({
            "entry": id,
            "item": item.id,
            "supersedes": item.current,
            "category": item.category.name(),
            "summary": summary,
        }));
    }
    output::line(id.to_string())
}
