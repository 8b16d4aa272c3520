//! `cophr history`: every version and annotation of an entry.

use clap::Args as ClapArgs;
use cophr_node::session::Cancel;
use cophr_protocol::fold;
use cophr_protocol::record::Record;
use cophr_protocol::{schema, ActorId, EntryId, Timestamp, Value};
use serde::Serialize;

use crate::context::{self, resolve_entry, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Person};
use crate::times;

/// Show every version of an entry (create, amends, delete) and every annotation, oldest
/// first, with who wrote it (name, role, organisation), on which device, and when. Viewing
/// is recorded in the record's audit trail.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The entry: any version's id, or a unique prefix as tables show (`e-…`)
    entry: String,

    #[command(flatten)]
    out: Out,
}

#[derive(Debug, Serialize)]
struct VersionOut {
    id: EntryId,
    kind: &'static str,
    target: Option<EntryId>,
    author: Person,
    device: Option<String>,
    time: String,
    grant: Option<EntryId>,
    in_effect: bool,
    current: bool,
    summary: Option<String>,
    content: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct HistoryOut {
    item: EntryId,
    category: String,
    versions: Vec<VersionOut>,
}

fn build(
    r: &Record,
    me: &ActorId,
    now: Timestamp,
    text: &str,
) -> Result<(HistoryOut, Vec<Vec<String>>)> {
    let viewer = r.viewer(me, now);
    if !viewer.has_access() {
        return Err(CliError::access("no access to this record"));
    }
    let id = resolve_entry(r, &viewer, text)?;
    let h = fold::history(r, &viewer, &id).ok_or_else(|| {
        let kind = r.get(&id).map_or("entry", |e| e.entry().payload.kind());
        CliError::invalid(format!(
            "{id} is a {kind} entry, not record data: history is kept for items (create, \
             amend, delete, annotate)"
        ))
    })?;
    let versions = h
        .versions
        .iter()
        .map(|v| {
            let p = &v.provenance;
            let known = Person::of(r, &p.author, None);
            let author = Person {
                id: p.author,
                name: p.profile.as_ref().map(|x| x.name.clone()),
                role: p.profile.as_ref().map(|x| x.role.clone()),
                organisation: if known.member {
                    known.organisation.clone()
                } else {
                    p.profile.as_ref().and_then(|x| x.organisation.clone())
                },
                member: known.member,
                assurance: known.assurance.clone(),
            };
            let author = if author.name.is_none() {
                Person::of(r, &p.author, None)
            } else {
                author
            };
            let summary = matches!(v.kind, "create" | "amend")
                .then(|| schema::summary(&h.category, &v.content));
            VersionOut {
                id: v.id,
                kind: v.kind,
                target: v.target,
                author,
                device: p.device.clone(),
                time: times::format(p.time),
                grant: p.grant,
                in_effect: v.in_effect,
                current: v.current,
                summary,
                content: v.content.to_json(),
            }
        })
        .collect();
    let lines = h.versions.iter().map(|v| fields(&v.content)).collect();
    Ok((
        HistoryOut {
            item: h.item,
            category: h.category.name().to_owned(),
            versions,
        },
        lines,
    ))
}

fn fields(v: &Value) -> Vec<String> {
    match v {
        Value::Map(m) => m
            .iter()
            .map(|(k, v)| {
                let shown = match v {
                    Value::Text(t) if k == schema::FHIR_RESOURCE => {
                        format!("(the original FHIR resource, {} bytes of JSON)", t.len())
                    }
                    Value::Bytes(b) => format!("({} bytes)", b.len()),
                    Value::Text(t) => t.clone(),
                    other => {
                        let j = other.to_json();
                        match (j.get("value"), j.get("unit")) {
                            (Some(n), Some(serde_json::Value::String(u))) => format!("{n} {u}"),
                            _ => j.to_string(),
                        }
                    }
                };
                format!("{k}: {shown}")
            })
            .collect(),
        Value::Text(t) => vec![t.clone()],
        other => vec![other.to_json().to_string()],
    }
}

/// Runs `history`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let (out, contents) = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let (out, contents) = build(r, &me.actor(), now, &args.entry)?;
            seen.add(out.versions.iter().map(|v| v.id));
            seen.detail(format!("history of {}", out.item.short()));
            Ok::<_, CliError>((out, contents))
        })?
    })?;
    if ctx.json(args.out) {
        return output::json(&out);
    }
    output::line(format!("History of {} ({})", out.item, out.category))?;
    for (v, lines) in out.versions.iter().zip(contents) {
        let mut flags = Vec::new();
        if v.current {
            flags.push("current");
        }
        if !v.in_effect {
            flags.push("void: written after a revocation");
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!("  [{}]", flags.join(", "))
        };
        output::line("")?;
        output::line(format!("{}  {}  {}{flags}", v.time, v.kind, v.id))?;
        output::line(format!(
            "  by {}{}",
            v.author.long(),
            v.device
                .as_deref()
                .map(|d| format!(" on {d}"))
                .unwrap_or_default()
        ))?;
        if let Some(t) = v.target {
            let what = match v.kind {
                "annotate" => "on",
                _ => "supersedes",
            };
            output::line(format!("  {what} {t}"))?;
        }
        let label = match v.kind {
            "delete" => "reason: ",
            "annotate" => "note: ",
            _ => "",
        };
        for l in lines {
            output::line(format!("    {label}{l}"))?;
        }
    }
    Ok(())
}
