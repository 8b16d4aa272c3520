//! `cophr notifications`: your subscriptions and notifications on this node
//! (`cophr_node::notify`; the HTTP API and `cophr watch` show the same ones).

use clap::{Args as ClapArgs, Subcommand};
use cophr_node::notify::{Event, Notifier, MAX_PAGE};
use cophr_node::store::AuditInput;
use cophr_protocol::audit::Action;
use cophr_protocol::Category;
use serde_json::json;

use crate::context::{Ctx, Out};
use crate::error::{CliError, Code, Result};
use crate::output::{self, Table};
use crate::times;

const AFTER_HELP: &str = "Events: result-released (lab-results, investigations), task-status \
(tasks), new-message (messages), reminder-due (appointments), questionnaire-assigned and \
questionnaire-due (tasks: a questionnaire assigned to you, and its reminder from two days \
before the end of its due day), questionnaire-flag (questionnaires: an answer tripping a \
clinical flag, such as PHQ-9 question 9 above Not at all; assigning a questionnaire \
subscribes you to it). A subscription to a category you may not see is refused (exit code 3). Notifications follow from entries as they reach \
this node, whoever wrote them; each is shown once, and says only the event, the entry, its \
category and the time.

Examples:
  cophr notifications subscribe --events result-released,task-status
  cophr notifications list
  cophr notifications read --all";

/// Notifications: subscribe to events in the record, list them, mark them read.
#[derive(Subcommand, Debug)]
#[command(after_help = AFTER_HELP)]
pub enum Command {
    /// Subscribe to events (comma-separated), optionally only in some categories
    Subscribe(SubscribeArgs),
    /// Remove a subscription
    Unsubscribe(UnsubscribeArgs),
    /// Your subscriptions
    Subscriptions(OutArgs),
    /// Your notifications, newest first, with the unread count
    List(OutArgs),
    /// Mark notifications read (those named, or --all)
    Read(ReadArgs),
}

/// `subscribe`.
#[derive(ClapArgs, Debug)]
pub struct SubscribeArgs {
    /// Events: result-released, task-status, new-message, reminder-due,
    /// questionnaire-assigned, questionnaire-due, questionnaire-flag
    #[arg(long, value_delimiter = ',', required = true)]
    events: Vec<String>,
    /// Only these categories (default: every category the events are about)
    #[arg(long, value_delimiter = ',')]
    categories: Vec<String>,
    #[command(flatten)]
    out: Out,
}

/// `unsubscribe`.
#[derive(ClapArgs, Debug)]
pub struct UnsubscribeArgs {
    /// The subscription (`s-1`)
    id: String,
}

/// `list`, `subscriptions`.
#[derive(ClapArgs, Debug)]
pub struct OutArgs {
    #[command(flatten)]
    out: Out,
}

/// `read`.
#[derive(ClapArgs, Debug)]
pub struct ReadArgs {
    /// Notification ids
    ids: Vec<String>,
    /// All of them
    #[arg(long, conflicts_with = "ids")]
    all: bool,
}

fn error(e: cophr_node::notify::NotifyError) -> CliError {
    use cophr_node::notify::NotifyError as E;
    let code = match &e {
        E::NotVisible(_) | E::NoAccess => Code::Access,
        E::Invalid(_) | E::NotAbout(_) => Code::Invalid,
        E::TooMany => Code::Conflict,
        E::NotFound(_) => Code::NotFound,
        E::Store(_) => Code::Other,
    };
    CliError::new(code, e.to_string())
}

/// Runs `notifications`.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let n = Notifier::new(store.clone());
    let actor = me.actor();
    match cmd {
        Command::Subscribe(a) => {
            let events = a
                .events
                .iter()
                .map(|e| {
                    Event::parse(e).ok_or_else(|| {
                        CliError::new(
                            Code::Usage,
                            format!(
                                "--events: unknown event `{e}` (one of {})",
                                Event::ALL.map(Event::name).join(", ")
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            let categories = a
                .categories
                .iter()
                .map(|c| {
                    c.trim()
                        .parse::<Category>()
                        .map_err(|e| CliError::new(Code::Usage, format!("--categories: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            let s = n
                .subscribe(&actor, &record, &events, &categories, now)
                .map_err(error)?;
            if ctx.json(a.out) {
                return output::json(&s);
            }
            output::line(format!("Subscribed ({})", s.id))
        }
        Command::Unsubscribe(a) => {
            n.unsubscribe(&actor, &a.id).map_err(error)?;
            output::line(format!("Removed {}", a.id))
        }
        Command::Subscriptions(a) => {
            let subs = n.subscriptions(&actor, Some(&record)).map_err(error)?;
            if ctx.json(a.out) {
                return output::json(&subs);
            }
            let mut t = Table::new(&["ID", "EVENTS", "CATEGORIES"]);
            for s in &subs {
                t.row(vec![
                    s.id.clone(),
                    s.events
                        .iter()
                        .map(|e| e.name())
                        .collect::<Vec<_>>()
                        .join(","),
                    s.categories
                        .iter()
                        .map(Category::name)
                        .collect::<Vec<_>>()
                        .join(","),
                ]);
            }
            output::print(&t.render())
        }
        Command::List(a) => {
            n.process(&actor, &record, now).map_err(error)?;
            let page = n.list(&actor, &record, 0, MAX_PAGE).map_err(error)?;
            // Only what the person may still see; showing it is a view, audited.
            let shown: Vec<_> = store.with_record(&record, |r| {
                let v = r.viewer(&actor, now);
                page.items
                    .iter()
                    .filter(|x| r.can_see(&v, &x.entry) && x.by.is_none_or(|b| r.can_see(&v, &b)))
                    .cloned()
                    .collect()
            })?;
            if !shown.is_empty() {
                store.audit(
                    &record,
                    AuditInput {
                        action: Action::View,
                        actor,
                        device: me.info.device.clone(),
                        entries: shown
                            .iter()
                            .flat_map(|x| std::iter::once(x.entry).chain(x.by))
                            .collect(),
                        detail: Some(format!("notifications: {}", shown.len())),
                    },
                    now,
                )?;
            }
            if ctx.json(a.out) {
                return output::json(
                    &json!({ "unread": page.unread, "total": page.total, "items": shown }),
                );
            }
            let mut t = Table::new(&["WHEN", "EVENT", "CATEGORY", "ENTRY", "READ", "ID"]);
            for x in &shown {
                t.row(vec![
                    times::format(x.time),
                    x.event.name().to_owned(),
                    x.category.name().to_owned(),
                    x.entry.short(),
                    if x.read { "yes" } else { "" }.to_owned(),
                    x.id.clone(),
                ]);
            }
            output::line(format!("{} unread of {}", page.unread, page.total))?;
            output::print(&t.render())
        }
        Command::Read(a) => {
            if !a.all && a.ids.is_empty() {
                return Err(CliError::new(
                    Code::Usage,
                    "name notifications, or give --all",
                ));
            }
            let ids = (!a.all).then_some(a.ids);
            let marked = n
                .mark_read(&actor, &record, ids.as_deref())
                .map_err(error)?;
            output::line(format!("Marked {marked} read"))
        }
    }
}
