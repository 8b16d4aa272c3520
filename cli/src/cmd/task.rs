//! `cophr task`: send referrals and care-team tasks, step them, see where each stands.

use clap::{Args as ClapArgs, Subcommand};
use cophr_protocol::care::{TaskStatus, TASK_KINDS, TASK_STATUSES};
use cophr_protocol::fold;
use cophr_protocol::{ActorId, Category, EntryId, Level};
use serde::Serialize;
use serde_json::json;

use crate::care;
use crate::context::{Ctx, Out};
use crate::error::Result;
use crate::output::{self, Person, Table};
use crate::times;

const AFTER_HELP: &str = "A task's status moves one step at a time, each step written by the \
party that took it:
  sent -> received -> accepted -> in-progress -> completed   (the owner, who must act)
  sent or received -> rejected                              (the owner)
  any open status -> cancelled                               (the requester)
Completed, rejected and cancelled close it. Every node refuses a step out of order or by \
another party (exit code 3 for the wrong party, 5 out of order), whoever wrote it; \
`cophr history ENTRY` shows every step with who took it and when.

Examples:
  cophr task send --kind referral --to a-renalclinic… --description 'eGFR falling: please review'
  cophr task send --kind blood-test-request --to 'Leeds Home Care' --description 'HbA1c at home'
  cophr task update e-abcdefghij --status received
  cophr task update e-abcdefghij --status rejected --note 'Not our service: try diabetes'
  cophr task list --open";

/// Referrals and care-team tasks (blood-test requests too): who asked, who must act, and
/// where each stands.
#[derive(Subcommand, Debug)]
#[command(after_help = AFTER_HELP)]
pub enum Command {
    /// Send a task (a referral: --kind referral) to the person or service who must act
    Send(SendArgs),
    /// Take a task's next step (the owner) or cancel it (the requester)
    Update(UpdateArgs),
    /// List the tasks you may see, with where each stands and its steps
    List(ListArgs),
}

/// `cophr task send`.
#[derive(ClapArgs, Debug)]
pub struct SendArgs {
    /// What kind of task
    #[arg(long, default_value = "task", value_parser = TASK_KINDS.to_vec())]
    kind: String,
    /// Who must act: their actor id (`a-…`), or the name (in their profile, or their
    /// grant's label) of the one grantee whose grant writes tasks, or the patient, who goes
    /// by it, case aside
    #[arg(long, value_name = "ACTOR|NAME")]
    to: String,
    /// What is asked
    #[arg(long, value_name = "TEXT")]
    description: String,
    /// When it is due (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    due: Option<String>,
    /// A note
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
}

/// `cophr task update`.
#[derive(ClapArgs, Debug)]
pub struct UpdateArgs {
    /// The task: any version's id, or a unique prefix as tables show
    entry: String,
    /// The new status
    #[arg(long, value_parser = TASK_STATUSES.to_vec())]
    status: String,
    /// A note with the step (e.g. why it was rejected)
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
}

/// `cophr task list`.
#[derive(ClapArgs, Debug)]
pub struct ListArgs {
    /// Only tasks not yet completed, rejected or cancelled
    #[arg(long)]
    open: bool,
    /// Only this kind
    #[arg(long, value_parser = TASK_KINDS.to_vec())]
    kind: Option<String>,
    #[command(flatten)]
    out: Out,
}

/// One step of a task: a version in effect.
#[derive(Debug, Serialize)]
struct Step {
    status: String,
    by: Person,
    time: String,
    entry: EntryId,
}

/// One task, as listed.
#[derive(Debug, Serialize)]
struct Listed {
    id: EntryId,
    version: EntryId,
    kind: String,
    status: String,
    description: String,
    requester: Option<Person>,
    owner: Option<Person>,
    due: Option<String>,
    note: Option<String>,
    steps: Vec<Step>,
    conflict: bool,
}

/// Runs `task`.
pub fn run(ctx: &mut Ctx, command: Command) -> Result<()> {
    match command {
        Command::Send(a) => send(ctx, a),
        Command::Update(a) => care::amend(ctx, &a.entry, Category::Tasks, |body, _| {
            let mut m = care::object(body);
            m.insert("status".into(), a.status.clone().into());
            if let Some(n) = &a.note {
                m.insert("note".into(), n.clone().into());
            }
            Ok(m.into())
        }),
        Command::List(a) => list(ctx, a),
    }
}

fn send(ctx: &Ctx, a: SendArgs) -> Result<()> {
    let owner = {
        let store = ctx.store()?;
        let me = ctx.identity()?;
        let record = ctx.record(&store, Some(&me.actor()))?;
        let people = store.with_record(&record, |r| {
            care::named_people(r, &Category::Tasks, Level::Write, true)
        })?;
        let who = "the patient or a grantee of this record who writes tasks";
        care::person_named(&people, "--to", &a.to, who)?
    };
    care::create(ctx, Category::Tasks, |requester| {
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), a.kind.into());
        m.insert("description".into(), a.description.into());
        m.insert("requester".into(), requester.to_string().into());
        m.insert("owner".into(), owner.to_string().into());
        m.insert("status".into(), TaskStatus::Sent.name().into());
        if let Some(d) = a.due {
            m.insert("due".into(), d.into());
        }
        if let Some(n) = a.note {
            m.insert("note".into(), n.into());
        }
        Ok(m.into())
    })
}

fn list(ctx: &Ctx, a: ListArgs) -> Result<()> {
    let (_, shown) = care::read(ctx, &Category::Tasks, "tasks", |r, viewer, items, seen| {
        let mut shown = Vec::new();
        for i in items {
            let status = care::text(&i.body, "status").unwrap_or_default().to_owned();
            let kind = care::text(&i.body, "kind").unwrap_or_default().to_owned();
            let closed = TaskStatus::parse(&status).is_some_and(TaskStatus::is_closed);
            if (a.open && closed) || a.kind.as_ref().is_some_and(|k| *k != kind) {
                continue;
            }
            let actor = |k: &str| {
                care::text(&i.body, k)
                    .and_then(|t| t.parse::<ActorId>().ok())
                    .map(|x| Person::of(r, &x, None))
            };
            // The steps: the versions in effect, oldest first, with who took each.
            let mut steps = Vec::new();
            if let Some(h) = fold::history(r, viewer, &i.id) {
                for v in h.versions.iter().filter(|v| v.in_effect) {
                    if let Some(s) = v.content.get("status").and_then(|s| s.as_text()) {
                        steps.push(Step {
                            status: s.to_owned(),
                            by: Person::of(r, &v.provenance.author, None),
                            time: times::format(v.provenance.time),
                            entry: v.id,
                        });
                    }
                }
            }
            seen.add(steps.iter().map(|s| s.entry).chain([i.current]));
            shown.push(Listed {
                id: i.id,
                version: i.current,
                kind,
                status,
                description: care::text(&i.body, "description")
                    .unwrap_or_default()
                    .to_owned(),
                requester: actor("requester"),
                owner: actor("owner"),
                due: care::text(&i.body, "due").map(str::to_owned),
                note: care::text(&i.body, "note").map(str::to_owned),
                steps,
                conflict: i.conflict,
            });
        }
        Ok(shown)
    })?;
    if ctx.json(a.out) {
        return output::json(&json!({ "tasks": shown }));
    }
    if shown.is_empty() {
        return output::line("No tasks you may see.");
    }
    let mut t = Table::new(&["ID", "KIND", "STATUS", "WHAT", "FROM", "TO", "LAST STEP"]);
    let who = |p: &Option<Person>| p.as_ref().map(Person::short).unwrap_or_default();
    for l in &shown {
        let mut status = l.status.clone();
        if l.conflict {
            status.push_str(" (concurrent steps)");
        }
        let last = l
            .steps
            .last()
            .map(|s| format!("{} by {} at {}", s.status, s.by.short(), s.time))
            .unwrap_or_default();
        t.row(vec![
            l.id.short(),
            l.kind.clone(),
            status,
            l.description.clone(),
            who(&l.requester),
            who(&l.owner),
            last,
        ]);
    }
    output::print(&t.render())
}
