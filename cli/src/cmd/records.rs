//! `cophr records`: list the records held.

use clap::Args as ClapArgs;
use cophr_protocol::{Category, Level};
use serde::Serialize;

use crate::context::{Ctx, Out};
use crate::error::Result;
use crate::output::{self, Person, Table};

/// List the records this store holds: patient, entry count, and your access to each.
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    out: Out,
}

#[derive(Serialize)]
struct Row {
    record: cophr_protocol::RecordId,
    patient: Person,
    entries: usize,
    access: String,
}

/// Runs `records`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let me = ctx.identity().ok().map(|i| i.actor());
    let store = ctx.store()?;
    let now = ctx.now()?;
    let mut rows = Vec::new();
    for id in store.records()? {
        let row = match store.with_record(&id, |r| {
            let access = match me {
                Some(m) if r.is_patient_key(&m) => "patient".to_owned(),
                Some(m) if r.is_patient(&m) => "patient (device)".to_owned(),
                Some(m) if r.is_patient_key_ever(&m) => "retired patient key".to_owned(),
                Some(m) => {
                    let v = r.viewer(&m, now);
                    let best: Option<Level> = Category::BUILT_IN
                        .iter()
                        .filter_map(|c| v.level_on(c))
                        .max();
                    match (best, v.has_access()) {
                        (Some(l), _) => l.to_string(),
                        (None, true) => "revoked".to_owned(),
                        (None, false) => "none".to_owned(),
                    }
                }
                None => "-".to_owned(),
            };
            Row {
                record: id,
                patient: Person::of(r, &r.patient(), None),
                entries: r.len(),
                access,
            }
        }) {
            Ok(row) => row,
            // Removed since it was listed (its patient moved it away): not held.
            Err(cophr_node::store::StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        rows.push(row);
    }
    if ctx.json(args.out) {
        return output::json(&serde_json::json!({ "records": rows }));
    }
    if rows.is_empty() {
        return output::line(
            "No records held. Create yours with `cophr record create`, or `cophr import FILE`.",
        );
    }
    let mut t = Table::new(&["RECORD", "PATIENT", "ENTRIES", "YOUR ACCESS"]);
    for r in &rows {
        t.row(vec![
            r.record.to_string(),
            r.patient.short(),
            r.entries.to_string(),
            r.access.clone(),
        ]);
    }
    output::print(&t.render())
}
