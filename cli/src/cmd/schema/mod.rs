//! `cophr schema`: the categories and their fields; `define`, `show` and `list` for
//! extension categories' schemas defined as data (`docs/extensions.md`), one module each.

mod define;
mod list;
mod show;

use clap::{Args as ClapArgs, Subcommand};
use cophr_protocol::schema::{self, CategorySchema, FieldType};
use cophr_protocol::Category;
use serde_json::{json, Value};

use crate::context::{Ctx, Out};
use crate::error::Result;
use crate::output::{self, Table};

/// List the categories (name, title, openEHR archetype), or one category's fields: name,
/// type, whether required, units or allowed codes. Extension categories get their schema
/// from data: `define` one, `show` it, `list` those the record defines.
#[derive(ClapArgs, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,

    /// A category name, e.g. vital-signs (see the list without it)
    category: Option<String>,

    #[command(flatten)]
    out: Out,
}

/// `cophr schema define|show|list`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Define (or give a new version of) an extension category's schema from a JSON file
    Define(define::Args),
    /// Show the schema in effect for an extension category (or one of its versions)
    Show(show::Args),
    /// List the extension schemas the record defines
    List(Out),
}

fn allowed<'a>(ty: &FieldType<'a>) -> (Vec<&'a str>, &'static str) {
    match ty {
        FieldType::Code(codes) => (codes.to_vec(), "codes"),
        FieldType::Quantity { units } => (units.to_vec(), "units"),
        FieldType::Binary { media_types, .. } => (media_types.to_vec(), "media types"),
        _ => (Vec::new(), ""),
    }
}

/// The fields of a schema as a table: flag, type, required, units or codes, title.
fn fields_table(s: &CategorySchema<'_>) -> Table {
    let mut t = Table::new(&["FIELD", "TYPE", "REQUIRED", "UNITS / CODES", "TITLE"]);
    for f in s.fields {
        let (values, _) = allowed(&f.ty);
        t.row(vec![
            format!("--{}", f.name),
            f.ty.kind().to_owned(),
            output::yes_no(f.required),
            values.join(", "),
            f.title.to_owned(),
        ]);
    }
    t
}

fn fields_json(s: &CategorySchema<'_>) -> Value {
    let fields: Vec<Value> = s.fields.iter().map(schema::field_json).collect();
    json!({
        "category": s.category.name(),
        "title": s.title,
        "description": s.description,
        "archetype": s.archetype,
        "fhir": s.fhir,
        "fields": fields,
        "at_least_one": s.at_least_one,
        "together": s.together.iter().map(|(a, b)| json!([a, b])).collect::<Vec<_>>(),
        "ranges": s.ranges,
    })
}

/// Runs `schema`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    match args.command {
        Some(Command::Define(a)) => return define::run(ctx, a),
        Some(Command::Show(a)) => return show::run(ctx, a),
        Some(Command::List(out)) => return list::run(ctx, out),
        None => {}
    }
    let json = ctx.json(args.out);
    let Some(name) = args.category else {
        if json {
            let list: Vec<Value> = schema::all()
                .iter()
                .map(|s| {
                    json!({
                        "category": s.category.name(),
                        "title": s.title,
                        "archetype": s.archetype,
                        "fhir": s.fhir,
                    })
                })
                .collect();
            return output::json(&json!({ "categories": list }));
        }
        let mut t = Table::new(&["CATEGORY", "TITLE", "ARCHETYPE"]);
        for s in schema::all() {
            t.row(vec![
                s.category.name().to_owned(),
                s.title.to_owned(),
                s.archetype.to_owned(),
            ]);
        }
        output::print(&t.render())?;
        return output::line(
            "\nExtensions are written ext:<namespace>/<name>: their schemas are defined as data \
             in a record (`cophr schema list`, `cophr schema define FILE`); until defined they \
             accept any fields. Run `cophr schema CATEGORY` for a category's fields.",
        );
    };
    let category: Category = name.parse()?;
    let Some(s) = schema::schema(&category) else {
        if show::defined_here(ctx, &category) {
            return show::run(ctx, show::Args::of(category, args.out));
        }
        if json {
            return output::json(&json!({
                "category": category.name(),
                "extension": true,
                "fields": [],
            }));
        }
        return output::line(format!(
            "{category} is an extension category with no schema defined in this record: any \
             non-empty set of --FIELD VALUE pairs (kept as text) or a --json object is \
             accepted (define its schema with `cophr schema define FILE`)"
        ));
    };
    if json {
        return output::json(&fields_json(s));
    }
    output::line(format!("{} ({})", s.title, s.category))?;
    output::line(format!("  {}", s.description))?;
    output::line(format!("  openEHR archetype: {}", s.archetype))?;
    output::line(format!("  FHIR R4:           {}", s.fhir.join(", ")))?;
    output::line("")?;
    output::print(&fields_table(s).render())?;
    if !s.at_least_one.is_empty() {
        output::line(format!(
            "\nGive at least one of: {}",
            s.at_least_one.join(", ")
        ))?;
    }
    for (a, b) in s.together {
        output::line(format!("Give {a} and {b} together"))?;
    }
    if !s.ranges.is_empty() {
        output::line("\nPlausible ranges:")?;
        for r in s.ranges {
            output::line(format!(
                "  {:<18} {} to {} {}",
                r.field,
                r.min,
                r.max,
                r.unit.unwrap_or("")
            ))?;
        }
    }
    output::line(
        "\nQuantities are written `140` (first unit) or `37.2 Cel`; lists comma separated; \
         booleans yes/no.",
    )
}
