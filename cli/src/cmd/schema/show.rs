//! `cophr schema show CATEGORY`: an extension category's schema in effect (or one of its
//! versions), as a table of fields or (`--json`) its definition.

use clap::Args as ClapArgs;
use cophr_node::session::Cancel;
use cophr_protocol::Category;
use serde_json::{json, Value};

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Person};
use crate::times;

/// Show the schema in effect for an extension category, or one of its versions.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The extension category, e.g. ext:uk.respect/respect (see `cophr schema list`)
    category: String,

    /// A past version instead of the one in effect
    #[arg(long = "schema-version", value_name = "N")]
    schema_version: Option<u32>,

    #[command(flatten)]
    out: Out,
}

impl Args {
    /// `cophr schema CATEGORY` for an extension defined here.
    pub fn of(category: Category, out: Out) -> Args {
        Args {
            category: category.name().to_owned(),
            schema_version: None,
            out,
        }
    }
}

/// Whether the record at hand defines a schema for `category` (quietly: no record, no).
pub fn defined_here(ctx: &Ctx, category: &Category) -> bool {
    let Ok(me) = ctx.identity() else {
        return false;
    };
    let Ok(store) = ctx.store() else {
        return false;
    };
    let Ok(record) = ctx.record(&store, Some(&me.actor())) else {
        return false;
    };
    store
        .with_record(&record, |r| r.extension_schema(category).is_some())
        .unwrap_or(false)
}

/// Runs `schema show`: read as a view of the definition shown (audited).
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let category: Category = args.category.parse()?;
    if !category.is_extension() {
        return Err(CliError::invalid(format!(
            "{category} is a core category with a fixed schema: run `cophr schema {category}`"
        )));
    }
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let found = session.read(&Cancel::new(), now, |rd| {
        rd.record(&record, |r, seen| {
            let viewer = r.viewer(&me.actor(), now);
            let chosen = match args.schema_version {
                None => r.extension_schema(&category),
                Some(v) => r
                    .schema_versions(&category)
                    .into_iter()
                    .find(|(_, s)| s.version == v),
            };
            let (id, s) = chosen.filter(|(id, _)| r.can_see(&viewer, id))?;
            seen.add([id]);
            seen.detail(format!("extension schema {category} v{}", s.version));
            let versions: Vec<u32> = r
                .schema_versions(&category)
                .iter()
                .map(|(_, s)| s.version)
                .collect();
            Some((
                id,
                s.clone(),
                r.author_of_entry(&id).map(|a| Person::of(r, &a, None)),
                r.time_of(&id).map(times::format),
                versions,
            ))
        })
        .map_err(CliError::from)
    })?;
    let Some((id, s, by, when, versions)) = found else {
        return Err(CliError::not_found(match args.schema_version {
            None => format!("no schema is defined for {category} in this record"),
            Some(v) => format!("{category} has no version {v} in this record"),
        }));
    };
    if ctx.json(args.out) {
        let definition: Value = serde_json::to_value(&s).unwrap_or_default();
        return output::json(&json!({
            "record": record,
            "entry": id,
            "defined_by": by,
            "defined": when,
            "versions": versions,
            "definition": definition,
        }));
    }
    output::line(format!(
        "{} ({}, version {})",
        s.title, s.category, s.version
    ))?;
    if !s.description.is_empty() {
        output::line(format!("  {}", s.description))?;
    }
    output::line(format!(
        "  defined by {} at {}, entry {id}",
        by.as_ref().map(Person::short).unwrap_or_default(),
        when.unwrap_or_default()
    ))?;
    output::line("")?;
    s.with_view(|v| output::print(&super::fields_table(v).render()))?;
    let ranges: Vec<String> = s
        .fields
        .iter()
        .filter(|f| f.min.is_some() || f.max.is_some())
        .map(|f| {
            let b = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_else(|| "…".into());
            format!("  {:<18} {} to {}", f.name, b(f.min), b(f.max))
        })
        .collect();
    if !ranges.is_empty() {
        output::line("\nPlausible ranges:")?;
        for r in ranges {
            output::line(r)?;
        }
    }
    output::line(format!(
        "\nWrite one with `cophr add {} --FIELD VALUE …` (or --json FILE).",
        s.category
    ))
}
