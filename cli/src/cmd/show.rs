//! `cophr show`: the record's current (or past) state, as the caller may see it.

use std::collections::BTreeSet;

use clap::Args as ClapArgs;
use cophr_protocol::entry::Payload;
use cophr_protocol::fold;
use cophr_protocol::record::Record;
use cophr_protocol::{schema, ActorId, Category, EntryId, RecordId, Timestamp};
use serde::Serialize;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Person, Table};
use crate::times::{self, DayEnd};
use cophr_node::session::Cancel;

/// Show the record as you may see it: "about me" and alerts first, then every current item
/// by category. Deleted items are not shown (their history is kept). Content is sealed: items
/// whose keys you were not given are counted, not shown, and content that opens but fails
/// its category's rules is shown marked FLAGGED. Viewing is recorded in the record's audit
/// trail.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  cophr show\n  cophr show --category medications,allergies\n  cophr show --at 2026-03-01            (as it stood at the end of that day, UTC)\n  cophr show --at 2026-03-01T09:00:00Z --json"
)]
pub struct Args {
    /// Only these categories (comma separated or repeated)
    #[arg(long, value_delimiter = ',', value_name = "CATEGORY")]
    category: Vec<String>,

    /// The state as it stood at this time: RFC 3339, or a date (the end of that day, UTC)
    #[arg(long, value_name = "TIME")]
    at: Option<String>,

    #[command(flatten)]
    out: Out,
}

/// One annotation, as shown.
#[derive(Debug, Serialize)]
pub struct NoteOut {
    /// The annotation entry.
    pub id: EntryId,
    /// Who wrote it.
    pub author: Person,
    /// When.
    pub time: String,
    /// The note.
    pub text: String,
}

/// One current item, as shown.
#[derive(Debug, Serialize)]
pub struct ItemOut {
    /// The item's id (its first version).
    pub id: EntryId,
    /// The version in effect.
    pub version: EntryId,
    /// Category.
    pub category: String,
    /// One-line summary.
    pub summary: String,
    /// The data.
    pub body: serde_json::Value,
    /// Who wrote the version in effect.
    pub author: Person,
    /// Device named on that version.
    pub device: Option<String>,
    /// When the item was created.
    pub created: String,
    /// When the version in effect was written.
    pub updated: String,
    /// How many versions.
    pub versions: usize,
    /// Whether concurrent versions exist.
    pub conflict: bool,
    /// Why the content is flagged (sealed content that fails its category's rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// Notes on the item.
    pub annotations: Vec<NoteOut>,
}

#[derive(Debug, Serialize)]
struct ShowOut {
    record: RecordId,
    patient: Person,
    viewer: Person,
    at: Option<String>,
    items: Vec<ItemOut>,
    deleted: usize,
    /// Items the caller may see whose content is sealed under a key not held here.
    locked: usize,
}

fn note(r: &Record, id: &EntryId) -> Option<NoteOut> {
    let held = r.get(id)?;
    let e = held.entry();
    let Payload::Annotate { text, .. } = &*r.payload(id)? else {
        return None;
    };
    Some(NoteOut {
        id: *id,
        author: Person::of(r, &e.author, None),
        time: times::format(e.time),
        text: text.clone(),
    })
}

fn view(
    r: &Record,
    me: &ActorId,
    now: Timestamp,
    at: Option<Timestamp>,
    only: &BTreeSet<Category>,
) -> Result<ShowOut> {
    let past;
    let r = match at {
        Some(t) => {
            past = r.at_time(t);
            &past
        }
        None => r,
    };
    let viewer = r.viewer(me, at.unwrap_or(now));
    if !viewer.has_access() {
        return Err(CliError::access(match at {
            Some(_) => "no access to this record at that time",
            None => "no access to this record",
        }));
    }
    let state = fold::current(r, &viewer);
    let wanted = |c: &Category| only.is_empty() || only.contains(c);
    let items = state
        .items
        .iter()
        .filter(|i| wanted(&i.category))
        .map(|i| ItemOut {
            id: i.id,
            version: i.current,
            category: i.category.name().to_owned(),
            summary: schema::summary(&i.category, &i.body),
            body: i.body.to_json(),
            author: Person::of(r, &i.author, None),
            device: r.get(&i.current).and_then(|e| e.entry().device.clone()),
            created: times::format(i.created),
            updated: times::format(i.updated),
            versions: i.versions,
            conflict: i.conflict,
            flag: i.flag.clone(),
            annotations: i.annotations.iter().filter_map(|a| note(r, a)).collect(),
        })
        .collect();
    let locked = state
        .locked
        .iter()
        .filter(|d| r.category_of(d).is_some_and(wanted))
        .count();
    let deleted = state
        .deleted
        .iter()
        .filter(|d| r.category_of(d).is_some_and(wanted))
        .count();
    Ok(ShowOut {
        record: r.id(),
        patient: Person::of(r, &r.patient(), None),
        viewer: Person::of(r, me, None),
        at: at.map(times::format),
        items,
        deleted,
        locked,
    })
}

/// Runs `show`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let only: BTreeSet<Category> = args
        .category
        .iter()
        .map(|c| c.trim().parse::<Category>())
        .collect::<Result<_, _>>()?;
    let at = args
        .at
        .as_deref()
        .map(|t| times::parse(t, DayEnd::End).map_err(|e| e.context("--at")))
        .transpose()?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let shown = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let shown = view(r, &me.actor(), now, at, &only)?;
            seen.add(shown.items.iter().flat_map(|i| {
                std::iter::once(i.version).chain(i.annotations.iter().map(|a| a.id))
            }));
            let mut detail = format!("show: {} items", shown.items.len());
            if !only.is_empty() {
                let names: Vec<&str> = only.iter().map(Category::name).collect();
                detail.push_str(&format!(" in {}", names.join(",")));
            }
            if let Some(t) = at {
                detail.push_str(&format!(" as at {}", times::format(t)));
            }
            seen.detail(detail);
            Ok::<_, CliError>(shown)
        })?
    })?;
    if at.is_none()
        && only.is_empty()
        && !store.with_record(&record, |r| r.is_patient(&me.actor()))?
    {
        // Seeing the whole record now is looking at it: `cophr worklist` counts changes
        // from here.
        store.worklist_looked(&me.actor(), &record, now)?;
    }

    if ctx.json(args.out) {
        return output::json(&shown);
    }
    let mut head = format!(
        "Record of {} ({})",
        shown.patient.long(),
        shown.record.short()
    );
    if let Some(t) = &shown.at {
        head.push_str(&format!(" as at {t}"));
    }
    output::line(head)?;
    if shown.items.is_empty() {
        output::line("No entries you may see.")?;
    } else {
        let mut t = Table::new(&["ID", "CATEGORY", "SUMMARY", "AUTHOR", "UPDATED", "NOTES"]);
        for i in &shown.items {
            let mut summary = i.summary.clone();
            if i.versions > 1 {
                summary.push_str(&format!(" [v{}]", i.versions));
            }
            if i.conflict {
                summary.push_str(" [concurrent edits]");
            }
            if let Some(why) = &i.flag {
                summary = format!("[FLAGGED: {why}] {summary}");
            }
            t.row(vec![
                i.id.short(),
                i.category.clone(),
                summary,
                i.author.short(),
                i.updated.clone(),
                if i.annotations.is_empty() {
                    String::new()
                } else {
                    i.annotations.len().to_string()
                },
            ]);
        }
        output::print(&t.render())?;
    }
    if shown.locked > 0 {
        output::line(format!(
            "({} item{} sealed with keys not held here: not shared with you, or not yet \
             given to this key)",
            shown.locked,
            if shown.locked == 1 { " is" } else { "s are" }
        ))?;
    }
    if shown.deleted > 0 {
        output::line(format!(
            "({} deleted item{} not shown; `cophr history ENTRY` shows every version)",
            shown.deleted,
            if shown.deleted == 1 { "" } else { "s" }
        ))?;
    }
    Ok(())
}
