//! `cophr schema list`: the extension schemas a record defines, in effect now.

use cophr_node::session::Cancel;
use cophr_protocol::EntryId;
use serde::Serialize;
use serde_json::json;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Person, Table};
use crate::times;

/// One extension schema in effect.
#[derive(Debug, Serialize)]
struct Row {
    entry: EntryId,
    category: String,
    version: u32,
    title: String,
    fields: usize,
    defined_by: Option<Person>,
    defined: Option<String>,
}

/// Runs `schema list`: read as a view of the definitions shown (audited).
pub fn run(ctx: &Ctx, out: Out) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let rows: Vec<Row> = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let viewer = r.viewer(&me.actor(), now);
            let list = r.visible_schemas(&viewer);
            seen.add(list.iter().map(|(id, _)| *id));
            seen.detail(format!("extension schemas: {}", list.len()));
            list.iter()
                .map(|(id, s)| Row {
                    entry: *id,
                    category: s.category.name().to_owned(),
                    version: s.version,
                    title: s.title.clone(),
                    fields: s.fields.len(),
                    defined_by: r.author_of_entry(id).map(|a| Person::of(r, &a, None)),
                    defined: r.time_of(id).map(times::format),
                })
                .collect::<Vec<_>>()
        })
        .map_err(CliError::from)
    })?;
    if ctx.json(out) {
        return output::json(&json!({ "record": record, "schemas": rows }));
    }
    if rows.is_empty() {
        return output::line(
            "No extension schemas are defined in this record (`cophr schema define FILE`).",
        );
    }
    let mut t = Table::new(&[
        "CATEGORY",
        "VERSION",
        "TITLE",
        "FIELDS",
        "DEFINED BY",
        "WHEN",
    ]);
    for row in &rows {
        t.row(vec![
            row.category.clone(),
            row.version.to_string(),
            row.title.clone(),
            row.fields.to_string(),
            row.defined_by
                .as_ref()
                .map(Person::short)
                .unwrap_or_default(),
            row.defined.clone().unwrap_or_default(),
        ]);
    }
    output::print(&t.render())
}
