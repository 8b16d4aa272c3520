//! `cophr verify`: check an export file offline, or the local store.

use std::collections::BTreeMap;

use clap::Args as ClapArgs;
use cophr_protocol::export;
use cophr_protocol::ActorId;
use serde::Serialize;
use serde_json::json;

use std::path::Path;

use cophr_node::store::{check_documents, documents_dir, DocumentsChecked};

use crate::cmd::import::read_export;
use crate::context::{Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Person};
use crate::times;

/// Verify an export file offline (no identity or store needed): the manifest's signature and
/// hashes, every entry's encoding and signature, every record rule (author chains, grants,
/// authorisations, sealing) and the audit trail's signatures and hash chains. A change to
/// any byte is detected. With an identity in this home, sealed content it may open is
/// opened and checked against its category's rules too (what fails is reported, and the
/// check fails). Without FILE, verify this home's store.
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
    let mut v = export::verify(&bytes)?;
    // Sealed content opens with this home's identity, if it has one and was given keys.
    let opener = ctx.home.identity().ok();
    if let Some(me) = &opener {
        v.record.unlock(&me.key);
    }
    let content = Content::of(&v.record);
    let r = &v.record;
    // The documents the entries name, beside the file: every byte hashed (no key needed).
    let docs: Vec<_> = r.documents().copied().collect();
    let checked = if file == "-" {
        DocumentsChecked {
            missing: docs.clone(),
            ..Default::default()
        }
    } else {
        check_documents(&docs, &documents_dir(&output::resolve(Path::new(&file))))
    };
    let documents_ok = || -> Result<()> {
        match checked.corrupt.first() {
            None => Ok(()),
            Some((d, why)) => Err(CliError::verify(format!(
                "document {} beside the export is not what its entry names: {why}",
                d.hash
            ))),
        }
    };
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
            "content": content,
            "documents": {
                "named": docs.len(),
                "verified": checked.verified,
                "missing": checked.missing.iter().map(|d| d.hash.to_hex()).collect::<Vec<_>>(),
                "corrupt": checked.corrupt.iter().map(|(d, why)| json!({"hash": d.hash.to_hex(), "why": why})).collect::<Vec<_>>(),
            },
        }))
        .and_then(|()| content.check())
        .and_then(|()| documents_ok());
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
        "  content:      {} sealed entries: {} opened and valid, {} flagged, {} not opened \
         (no key here{})",
        content.sealed,
        content.opened,
        content.flagged.len(),
        content.locked,
        if opener.is_some() {
            ""
        } else {
            ": this home has no identity"
        }
    ))?;
    for f in &content.flagged {
        output::line(format!("    FLAGGED {}: {}", f.entry, f.why))?;
    }
    if !docs.is_empty() {
        output::line(format!(
            "  documents:    {} named: {} beside the file with every byte verified, {} not \
             included, {} not what their entry names",
            docs.len(),
            checked.verified,
            checked.missing.len(),
            checked.corrupt.len()
        ))?;
        for (d, why) in &checked.corrupt {
            output::line(format!("    CORRUPT {}: {why}", d.hash))?;
        }
    }
    output::line(format!(
        "  exported by:  {} at {}",
        if exporter.name.is_some() {
            format!("{} {}", exporter.long(), m.exporter.short())
        } else {
            m.exporter.to_string()
        },
        times::format(m.time)
    ))?;
    content.check()?;
    documents_ok()
}

/// What of an export's sealed content opened here.
#[derive(Debug, Serialize)]
struct Content {
    sealed: usize,
    opened: usize,
    locked: usize,
    flagged: Vec<Flagged>,
}

#[derive(Debug, Serialize)]
struct Flagged {
    entry: cophr_protocol::EntryId,
    why: String,
}

impl Content {
    fn of(r: &cophr_protocol::record::Record) -> Content {
        use cophr_protocol::record::ContentState;
        let mut c = Content {
            sealed: 0,
            opened: 0,
            locked: 0,
            flagged: Vec::new(),
        };
        for e in r.entries() {
            match r.content_state(&e.id()) {
                Some(ContentState::Opened) => c.opened += 1,
                Some(ContentState::Locked) => c.locked += 1,
                Some(ContentState::Flagged(why)) => c.flagged.push(Flagged {
                    entry: e.id(),
                    why: why.to_owned(),
                }),
                Some(ContentState::Plain) | None => continue,
            }
            c.sealed += 1;
        }
        c
    }

    /// Flagged content fails the check.
    fn check(&self) -> Result<()> {
        if self.flagged.is_empty() {
            return Ok(());
        }
        Err(CliError::verify(format!(
            "{} sealed entr{} opened here fail{} their category's rules (listed above)",
            self.flagged.len(),
            if self.flagged.len() == 1 { "y" } else { "ies" },
            if self.flagged.len() == 1 { "s" } else { "" }
        )))
    }
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
