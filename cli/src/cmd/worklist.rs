//! `cophr worklist`: the records shared with you, one row each (the clinician's worklist).

use clap::Args as ClapArgs;
use cophr_node::session::Cancel;
use cophr_node::store::worklist::{self, Summary, WorklistError, DEFAULT_PAGE_SIZE};
use serde::Serialize;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use crate::times;

/// The records held here that are shared with you (a grant to you, in effect), one row
/// each: the patient's name and national number, what changed since you last looked
/// (`cophr show --record R` marks a record looked at), lab results no clinician has
/// reviewed, and open tasks and referrals. Rows needing attention come first. Each row
/// shown is recorded in that record's audit trail as a view of its demographics.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  cophr worklist\n  cophr worklist --search smith\n  cophr worklist --search 9434765919 --json"
)]
pub struct Args {
    /// Only patients whose name or national number contains this text
    #[arg(long, value_name = "TEXT")]
    search: Option<String>,
    /// The page to show (from 1)
    #[arg(long, default_value_t = 1)]
    page: usize,
    /// Rows per page
    #[arg(long, default_value_t = DEFAULT_PAGE_SIZE)]
    limit: usize,
    #[command(flatten)]
    out: Out,
}

#[derive(Serialize)]
struct PageOut<'a> {
    rows: &'a [Summary],
    total: usize,
    page: usize,
    page_size: usize,
}

fn error(e: WorklistError) -> CliError {
    match e {
        WorklistError::Store(s) => s.into(),
        other => CliError::invalid(other.to_string()),
    }
}

/// Runs `worklist`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let text = args.search.unwrap_or_default();
    worklist::check_query(&text, args.limit).map_err(error)?;
    if args.page == 0 {
        return Err(CliError::invalid("--page counts from 1"));
    }
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let now = ctx.now()?;
    let session = context::session(ctx, &store, &me);
    let page = session.read(&Cancel::new(), now, |rd| {
        let p = rd
            .store()
            .worklist(&me.actor(), &text, args.page - 1, args.limit, now)
            .map_err(error)?;
        rd.detail("worklist row (CLI): name, national number, counts");
        for row in &p.rows {
            rd.seen(&row.record).add(row.shows.iter().copied());
        }
        Ok::<_, CliError>(p)
    })?;
    if ctx.json(args.out) {
        return output::json(&PageOut {
            rows: &page.rows,
            total: page.total,
            page: page.page + 1,
            page_size: page.page_size,
        });
    }
    if page.total == 0 {
        return output::line(if text.is_empty() {
            "No records are shared with you on this node."
        } else {
            "No patient shared with you matches that search."
        });
    }
    let mut t = Table::new(&[
        "PATIENT",
        "NATIONAL NO.",
        "CHANGED SINCE YOU LOOKED",
        "UNREVIEWED RESULTS",
        "OPEN TASKS",
        "RECORD",
    ]);
    for r in &page.rows {
        let name = match (&r.demographics_name, &r.name) {
            (Some(d), _) => d.clone(),
            (None, Some(n)) => n.clone(),
            (None, None) => "-".into(),
        };
        let changed = if r.changed_total == 0 {
            "-".to_owned()
        } else {
            let by: Vec<String> = r.changed.iter().map(|(c, n)| format!("{c} {n}")).collect();
            let since = r
                .looked
                .map_or_else(|| "never looked".to_owned(), times::format);
            format!("{} ({}; {since})", r.changed_total, by.join(", "))
        };
        t.row(vec![
            name,
            r.national_number.clone().unwrap_or_else(|| "-".into()),
            changed,
            r.unreviewed_results.to_string(),
            r.open_tasks.to_string(),
            r.record.to_string(),
        ]);
    }
    output::print(&t.render())?;
    let pages = page.total.div_ceil(page.page_size);
    output::line(format!(
        "{} {} shared with you; page {} of {pages}",
        page.total,
        if page.total == 1 {
            "patient"
        } else {
            "patients"
        },
        page.page + 1
    ))
}
