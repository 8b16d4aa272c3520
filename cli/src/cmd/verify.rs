//! `cophr verify`: check an export file offline, or the local store.

use std::collections::BTreeMap;

use clap::Args as ClapArgs;
use cophr_protocol::export;
use cophr_protocol::ActorId;
use serde::Serialize;
use serde_json::json;

use crate::cmd::import::read_export;
use crate::context::{Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Person};
use crate::times;

/// Verify an export file offline (no identity or store needed): the manifest's signature and
/// hashes, every entry's encoding and signature, every record rule (author chains, grants,
/// authorisations) and the audit trail's signatures and hash chains. A change to any byte is
/// detected. Without FILE, verify this home's store.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The export file (`-` for standard input); without it, the local store
    file: Option<String>,

    #[command(flatten)]
    out: Out,
}

#[derive(Debug, Serialize)]
struct Author {
    #[serde(flatten)]
    person: Person,
    entries: usize,
}

impl Args {
    /// Whether the export is read from standard input.
    pub fn reads_stdin(&self) -> bool {
        self.file.as_deref() == Some("-")
    }
}

/// Runs `verify`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let json = ctx.json(args.out);
    let Some(file) = args.file else {
        return verify_store(ctx, json);
    };
    let bytes = read_export(&file)?;
    let v = export::verify(&bytes)?;
    let r = &v.record;
    let mut counts: BTreeMap<ActorId, usize> = BTreeMap::new();
    for e in r.entries() {
        *counts.entry(e.entry().author).or_default() += 1;
    }
    let authors: Vec<Author> = counts
        .iter()
        .map(|(a, n)| Author {
            person: Person::of(r, a, None),
            entries: *n,
        })
        .collect();
    let m = &v.manifest;
    let patient = Person::of(r, &r.patient(), None);
    let exporter = Person::of(r, &m.exporter, None);
    if json {
        return output::json(&json!({
            "ok": true,
            "file": file,
            "record": m.record,
            "patient": patient,
            "entries": r.len(),
            "authors": authors,
            "audit_events": v.audit.len(),
            "exporter": exporter,
            "exported": times::format(m.time),
            "heads": m.heads,
            "forks": r.forks().len(),
        }));
    }
    output::line(format!("{file}: OK"))?;
    output::line(format!("  record:       {} ({})", m.record, patient.long()))?;
    output::line(format!(
        "  entries:      {} (signatures, hashes, chains and authorisations verified)",
        r.len()
    ))?;
    output::line(format!("  authors:      {}", authors.len()))?;
    for a in &authors {
        output::line(format!(
            "    {}  {} ({} entries)",
            a.person.id.short(),
            a.person.long(),
            a.entries
        ))?;
    }
    output::line(format!(
        "  audit events: {} (signatures and chains verified)",
        v.audit.len()
    ))?;
    output::line(format!(
        "  exported by:  {} at {}",
        if exporter.name.is_some() {
            format!("{} {}", exporter.long(), m.exporter.short())
        } else {
            m.exporter.to_string()
        },
        times::format(m.time)
    ))
}

fn verify_store(ctx: &Ctx, json: bool) -> Result<()> {
    let store = ctx.store()?;
    let report = store.verify()?;
    if json {
        output::json(&json!({
            "ok": report.is_ok(),
            "store": ctx.home.store(),
            "records": report.records,
            "entries": report.entries,
            "audit_events": report.audit_events,
            "problems": report.problems,
        }))?;
    } else {
        output::line(format!(
            "{}: {} records, {} entries, {} audit events checked",
            ctx.home.store().display(),
            report.records,
            report.entries,
            report.audit_events
        ))?;
    }
    if !report.is_ok() {
        return Err(CliError::verify(format!(
            "the store has {} problem(s):\n  {}\n(run `cophr repair`, or restore from a replica or an export)",
            report.problems.len(),
            report.problems.join("\n  ")
        )));
    }
    if !json {
        output::line("OK")?;
    }
    Ok(())
}
