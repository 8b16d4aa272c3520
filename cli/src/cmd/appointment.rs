//! `cophr appointment`: book, change, cancel and list appointments.

use clap::{Args as ClapArgs, Subcommand};
use cophr_protocol::care::{APPOINTMENT_STATUSES, REMINDED_STATUSES};
use cophr_protocol::{Category, EntryId};
use serde::Serialize;
use serde_json::json;

use crate::care;
use crate::context::{Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Person, Table};

const AFTER_HELP: &str = "An appointment is booked by a clinician (with the write level on \
appointments) or by the patient. A change or a cancellation is a new version of the same \
entry (`cophr history ENTRY` shows every version); only whoever booked it (or their proxy) \
may change it.

Reminders are times before the start: 30m, 2h, 1d, 1w (a bare number is minutes); at most 8. \
A reminder whose time has already passed when it is written is refused. `cophr reminders` \
lists those due and upcoming.

Examples:
  cophr appointment book --start 2026-12-10T09:30:00Z --end 2026-12-10T10:00:00Z \\
      --description 'Renal clinic review' --place \"St James's, outpatients 4\" \\
      --with 'Dr Patel' --reminder 1d --reminder 2h
  cophr appointment change e-abcdefghij --start 2026-12-17T09:30:00Z
  cophr appointment cancel e-abcdefghij --reason 'Clinic closed'
  cophr appointment list";

/// Appointments: booked by a clinician or the patient; changes and cancellations are
/// versions of the same entry.
#[derive(Subcommand, Debug)]
#[command(after_help = AFTER_HELP)]
pub enum Command {
    /// Book an appointment (status booked, or proposed)
    Book(BookArgs),
    /// Change an appointment: a new version with the given fields changed
    Change(ChangeArgs),
    /// Cancel an appointment: a new version with status cancelled (its reminders stop)
    Cancel(CancelArgs),
    /// List the appointments you may see, soonest first
    List(ListArgs),
}

/// The fields of an appointment a command line may give.
#[derive(ClapArgs, Debug, Default)]
pub struct Fields {
    /// When it ends (RFC 3339)
    #[arg(long, value_name = "TIME")]
    end: Option<String>,
    /// What it is for
    #[arg(long, value_name = "TEXT")]
    description: Option<String>,
    /// Where
    #[arg(long, value_name = "TEXT")]
    place: Option<String>,
    /// With whom: a name or an actor id (repeat for several)
    #[arg(long = "with", value_name = "WHO")]
    with: Vec<String>,
    /// A reminder before the start: 30m, 2h, 1d, 1w (repeat for several)
    #[arg(long = "reminder", value_name = "BEFORE")]
    reminders: Vec<String>,
    /// A comment
    #[arg(long, value_name = "TEXT")]
    comment: Option<String>,
}

impl Fields {
    /// Puts the fields given over `m`.
    fn apply(&self, m: &mut serde_json::Map<String, serde_json::Value>) -> Result<()> {
        if let Some(e) = &self.end {
            m.insert("end".into(), care::time("--end", e)?.into());
        }
        for (k, v) in [
            ("description", &self.description),
            ("place", &self.place),
            ("comment", &self.comment),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        if !self.with.is_empty() {
            m.insert("with".into(), json!(self.with));
        }
        if !self.reminders.is_empty() {
            m.insert("reminders".into(), json!(self.reminders));
        }
        Ok(())
    }
}

/// `cophr appointment book`.
#[derive(ClapArgs, Debug)]
pub struct BookArgs {
    /// When it starts (RFC 3339, e.g. 2026-12-10T09:30:00Z)
    #[arg(long, value_name = "TIME")]
    start: String,
    /// booked, or proposed (not yet confirmed)
    #[arg(long, default_value = "booked", value_parser = ["booked", "proposed"])]
    status: String,
    #[command(flatten)]
    fields: Fields,
}

/// `cophr appointment change`.
#[derive(ClapArgs, Debug)]
pub struct ChangeArgs {
    /// The appointment: any version's id, or a unique prefix as tables show
    entry: String,
    /// A new start (RFC 3339)
    #[arg(long, value_name = "TIME")]
    start: Option<String>,
    /// A new status
    #[arg(long, value_parser = APPOINTMENT_STATUSES.to_vec())]
    status: Option<String>,
    /// Remove every reminder
    #[arg(long, conflicts_with = "reminders")]
    no_reminders: bool,
    #[command(flatten)]
    fields: Fields,
}

/// `cophr appointment cancel`.
#[derive(ClapArgs, Debug)]
pub struct CancelArgs {
    /// The appointment: any version's id, or a unique prefix as tables show
    entry: String,
    /// Why (kept as the appointment's comment)
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

/// `cophr appointment list`.
#[derive(ClapArgs, Debug)]
pub struct ListArgs {
    /// Also those cancelled, fulfilled, arrived or missed
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    out: Out,
}

/// One appointment, as listed.
#[derive(Debug, Serialize)]
struct Listed {
    id: EntryId,
    version: EntryId,
    status: String,
    start: Option<String>,
    end: Option<String>,
    summary: String,
    body: serde_json::Value,
    booked_by: Person,
    versions: usize,
    conflict: bool,
}

/// Runs `appointment`.
pub fn run(ctx: &mut Ctx, command: Command) -> Result<()> {
    match command {
        Command::Book(a) => {
            let mut m = serde_json::Map::new();
            m.insert("status".into(), a.status.into());
            m.insert("start".into(), care::time("--start", &a.start)?.into());
            a.fields.apply(&mut m)?;
            care::create(ctx, Category::Appointments, |_| Ok(m.into()))
        }
        Command::Change(a) => care::amend(ctx, &a.entry, Category::Appointments, |body, _| {
            let mut m = care::object(body);
            if let Some(s) = &a.start {
                m.insert("start".into(), care::time("--start", s)?.into());
            }
            if let Some(s) = &a.status {
                m.insert("status".into(), s.clone().into());
            }
            if a.no_reminders {
                m.remove("reminders");
            }
            a.fields.apply(&mut m)?;
            Ok(m.into())
        }),
        Command::Cancel(a) => care::amend(ctx, &a.entry, Category::Appointments, |body, _| {
            if care::text(body, "status") == Some("cancelled") {
                return Err(CliError::invalid("the appointment is already cancelled"));
            }
            let mut m = care::object(body);
            m.insert("status".into(), "cancelled".into());
            if let Some(r) = &a.reason {
                m.insert("comment".into(), r.clone().into());
            }
            Ok(m.into())
        }),
        Command::List(a) => list(ctx, a),
    }
}

fn list(ctx: &Ctx, a: ListArgs) -> Result<()> {
    let (_, mut shown) = care::read(
        ctx,
        &Category::Appointments,
        "appointments",
        |r, _, items, seen| {
            let shown: Vec<Listed> = items
                .into_iter()
                .filter(|i| {
                    a.all
                        || care::text(&i.body, "status")
                            .is_some_and(|s| REMINDED_STATUSES.contains(&s))
                })
                .map(|i| Listed {
                    id: i.id,
                    version: i.current,
                    status: care::text(&i.body, "status").unwrap_or_default().to_owned(),
                    start: care::text(&i.body, "start").map(str::to_owned),
                    end: care::text(&i.body, "end").map(str::to_owned),
                    summary: cophr_protocol::schema::summary(&i.category, &i.body),
                    body: i.body.to_json(),
                    booked_by: Person::of(r, &r.author_of_entry(&i.id).unwrap_or(i.author), None),
                    versions: i.versions,
                    conflict: i.conflict,
                })
                .collect();
            seen.add(shown.iter().map(|l| l.version));
            Ok(shown)
        },
    )?;
    // Soonest first (RFC 3339 UTC text sorts by time); those without a start last.
    shown.sort_by(|x, y| {
        (x.start.is_none(), &x.start, x.id).cmp(&(y.start.is_none(), &y.start, y.id))
    });
    if ctx.json(a.out) {
        return output::json(&shown);
    }
    if shown.is_empty() {
        return output::line("No appointments you may see.");
    }
    let mut t = Table::new(&[
        "ID",
        "START",
        "STATUS",
        "APPOINTMENT",
        "BOOKED BY",
        "VERSIONS",
    ]);
    for l in &shown {
        let mut versions = l.versions.to_string();
        if l.conflict {
            versions.push_str(" (concurrent edits)");
        }
        t.row(vec![
            l.id.short(),
            l.start.clone().unwrap_or_default(),
            l.status.clone(),
            l.summary.clone(),
            l.booked_by.short(),
            versions,
        ]);
    }
    output::print(&t.render())
}
