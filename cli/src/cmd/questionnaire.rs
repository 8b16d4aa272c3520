//! `cophr questionnaire`: publish questionnaires (PHQ-9 and GAD-7 built in, or a FHIR
//! Questionnaire), assign them with a due date, answer them, see the scores.

use std::path::PathBuf;

use clap::{Args as ClapArgs, Subcommand};
use cophr_protocol::care::questionnaire::{
    self as q, Definition, QuestionnaireError, DEFINITION, DEFINITION_ENTRY, TASK_KIND,
};
use cophr_protocol::care::TaskStatus;
use cophr_protocol::entry::Payload;
use cophr_protocol::fold::Item;
use cophr_protocol::record::Record;
use cophr_protocol::{schema, ActorId, Category, EntryId, Timestamp, Value};
use serde::Serialize;
use serde_json::json;

use crate::care;
use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use crate::times;

const AFTER_HELP: &str = "A questionnaire is published into the record (a FHIR Questionnaire: \
the built-in PHQ-9 and GAD-7, or one from a file), assigned to the patient with a due date \
(a task of kind `questionnaire`; `cophr task list` shows it too), and answered. The score and \
severity band are computed by the questionnaire's own rule; every node refuses a response \
whose answers or stated score do not match the questionnaire it names (exit code 5), and \
nothing is stored. Answering an assigned questionnaire completes its task.

Answers are `linkId=value`: a choice's code, its text or its score (0-3 for PHQ-9 and GAD-7), \
a whole number, true/false, or text. `cophr questionnaire show ENTRY` lists the questions.

Examples:
  cophr questionnaire publish phq-9
  cophr questionnaire assign e-abcdefghij --due 2026-12-20
  cophr questionnaire show e-abcdefghij
  cophr questionnaire answer e-taskidxxxx --answer phq9-1=1 --answer phq9-2=0 …
  cophr questionnaire answer e-taskidxxxx --file answers.json
  cophr questionnaire list";

/// Questionnaires (PROMs): publish, assign with a due date, answer, see scores and bands.
#[derive(Subcommand, Debug)]
#[command(after_help = AFTER_HELP)]
pub enum Command {
    /// Publish a questionnaire into the record: a built-in one by name (phq-9, gad-7) or a
    /// FHIR Questionnaire from a JSON file
    Publish(PublishArgs),
    /// Assign a published questionnaire to the patient (or someone else) with a due date
    Assign(AssignArgs),
    /// Answer a questionnaire (published or assigned); its task is completed
    Answer(AnswerArgs),
    /// Show a published questionnaire's questions, or a response's answers and score
    Show(ShowArgs),
    /// List published questionnaires, assignments (overdue ones marked) and responses
    List(ListArgs),
}

/// `cophr questionnaire publish`.
#[derive(ClapArgs, Debug)]
pub struct PublishArgs {
    /// A built-in questionnaire: phq-9 or gad-7
    #[arg(
        value_name = "NAME",
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    name: Option<String>,
    /// A FHIR R4 Questionnaire (JSON) to publish instead
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
}

/// `cophr questionnaire assign`.
#[derive(ClapArgs, Debug)]
pub struct AssignArgs {
    /// The published questionnaire (any version's id, or a unique prefix)
    questionnaire: String,
    /// When it is due (YYYY-MM-DD)
    #[arg(long, value_name = "DATE")]
    due: String,
    /// Who answers it: an actor id (default: the patient)
    #[arg(long, value_name = "ACTOR")]
    to: Option<String>,
    /// A note to whoever answers
    #[arg(long, value_name = "TEXT")]
    note: Option<String>,
}

/// `cophr questionnaire answer`.
#[derive(ClapArgs, Debug)]
pub struct AnswerArgs {
    /// The assignment (a task) or the published questionnaire answered
    entry: String,
    /// An answer, `linkId=value` (repeat for each question)
    #[arg(long = "answer", value_name = "LINKID=VALUE")]
    answers: Vec<String>,
    /// Answers from a JSON file: an object of linkId to value, or a list of
    /// {"question": linkId, "answer": value}
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
}

/// `cophr questionnaire show`.
#[derive(ClapArgs, Debug)]
pub struct ShowArgs {
    /// A published questionnaire, a response or an assignment
    entry: String,
    #[command(flatten)]
    out: Out,
}

/// `cophr questionnaire list`.
#[derive(ClapArgs, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    out: Out,
}

/// Largest answers file read, in bytes.
pub const MAX_ANSWERS_FILE: u64 = 256 * 1024;

/// Runs `questionnaire`.
pub fn run(ctx: &mut Ctx, command: Command) -> Result<()> {
    match command {
        Command::Publish(a) => publish(ctx, a),
        Command::Assign(a) => assign(ctx, a),
        Command::Answer(a) => answer(ctx, a),
        Command::Show(a) => show(ctx, a),
        Command::List(a) => list(ctx, a),
    }
}

fn q_error(e: QuestionnaireError) -> CliError {
    CliError::invalid(e.to_string())
}

fn read_file(path: &PathBuf, max: u64, what: &str) -> Result<String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))?;
    if meta.len() > max {
        return Err(CliError::invalid(format!(
            "{}: the {what} is {} bytes, at most {max}",
            path.display(),
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| CliError::invalid(format!("{}: {e}", path.display())))
}

fn publish(ctx: &Ctx, a: PublishArgs) -> Result<()> {
    let text = match (&a.name, &a.file) {
        (Some(n), _) => q::built_in(n)
            .ok_or_else(|| {
                CliError::invalid(format!(
                    "no built-in questionnaire `{n}`: {} (or give --file)",
                    q::BUILT_IN.map(|(n, _)| n).join(", ")
                ))
            })?
            .to_owned(),
        (None, Some(f)) => read_file(f, q::MAX_DEFINITION_BYTES as u64, "questionnaire")?,
        (None, None) => return Err(CliError::invalid("give a built-in name or --file")),
    };
    let canonical = q::canonical(&text).map_err(q_error)?;
    let def = Definition::parse(&canonical).map_err(q_error)?;
    care::create(ctx, Category::Questionnaires, |_| {
        Ok(json!({"questionnaire": def.title, DEFINITION: canonical}))
    })
}

/// The published questionnaire's version `id` as the caller reads it.
fn definition_at(r: &Record, id: &EntryId) -> Result<Definition> {
    let not = || CliError::invalid(format!("{} is not a published questionnaire", id.short()));
    let p = r.payload(id).ok_or_else(not)?;
    match &*p {
        Payload::Create { body, .. } | Payload::Amend { body, .. }
            if r.category_of_payload(&p) == Some(Category::Questionnaires) =>
        {
            q::definition_of(body).ok_or_else(not)?.map_err(q_error)
        }
        _ => Err(not()),
    }
}

fn item_of(ctx: &Ctx, entry: &str) -> Result<(Item, ActorId, Timestamp, RecordId)> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = ctx.record(&store, Some(&me.actor()))?;
    let now = ctx.now()?;
    let (item, person) = store.with_record(&record, |r| {
        crate::cmd::amend::current_item(r, &me.actor(), now, entry)
            .map(|i| (i, care::person(r, &me.actor())))
    })??;
    Ok((item, person, now, record))
}

use cophr_protocol::RecordId;

fn assign(ctx: &Ctx, a: AssignArgs) -> Result<()> {
    let (item, _, _, record) = item_of(ctx, &a.questionnaire)?;
    // The store is opened once at a time: this one is closed before the write opens it.
    let def = ctx
        .store()?
        .with_record(&record, |r| definition_at(r, &item.current))??;
    let owner: ActorId = match &a.to {
        Some(t) => t.trim().parse().map_err(|e| {
            CliError::invalid(format!("--to `{}` is not an actor id: {e}", t.trim()))
        })?,
        None => record,
    };
    care::create(ctx, Category::Tasks, |requester| {
        let mut m = serde_json::Map::new();
        m.insert("kind".into(), TASK_KIND.into());
        m.insert(
            "description".into(),
            format!("Please complete the {}", def.title).into(),
        );
        m.insert("requester".into(), requester.to_string().into());
        m.insert("owner".into(), owner.to_string().into());
        m.insert("status".into(), TaskStatus::Sent.name().into());
        m.insert("due".into(), a.due.clone().into());
        m.insert("questionnaire".into(), item.current.to_string().into());
        if let Some(n) = &a.note {
            m.insert("note".into(), n.clone().into());
        }
        Ok(m.into())
    })?;
    // The assigning clinician hears of a clinical flag in the answers (PHQ-9 question 9):
    // a subscription of their own, listed by `cophr notifications subscriptions`.
    let me = ctx.identity()?.actor();
    let now = ctx.now()?;
    let n = cophr_node::notify::Notifier::new(ctx.store()?);
    match n.follow_flags(&me, &record, now) {
        Ok(Some(s)) => output::write_err(&format!(
            "subscribed to questionnaire-flag in this record ({}): you will be told when an \
             answer trips a clinical flag\n",
            s.id
        )),
        Ok(None) => {}
        Err(e) => output::write_err(&format!(
            "not subscribed to questionnaire-flag: {e} (the assignment stands)\n"
        )),
    }
    Ok(())
}

fn parse_answers(def: &Definition, a: &AnswerArgs) -> Result<Vec<(String, Value)>> {
    let mut out: Vec<(String, Value)> = Vec::new();
    if let Some(f) = &a.file {
        let text = read_file(f, MAX_ANSWERS_FILE, "answers file")?;
        let j: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| CliError::invalid(format!("{}: not JSON: {e}", f.display())))?;
        let pairs: Vec<(String, serde_json::Value)> = match j {
            serde_json::Value::Object(m) => m.into_iter().collect(),
            serde_json::Value::Array(l) => l
                .into_iter()
                .map(|x| {
                    let q = x["question"].as_str().map(str::to_owned);
                    match (q, x.get("answer")) {
                        (Some(q), Some(v)) => Ok((q, v.clone())),
                        _ => Err(CliError::invalid(format!(
                            "{}: each answer is {{\"question\": linkId, \"answer\": value}}",
                            f.display()
                        ))),
                    }
                })
                .collect::<Result<_>>()?,
            _ => {
                return Err(CliError::invalid(format!(
                    "{}: an object of linkId to answer, or a list of answers",
                    f.display()
                )))
            }
        };
        for (k, v) in pairs {
            let v = match v {
                serde_json::Value::String(s) => def.answer_from_text(&k, &s).map_err(q_error)?,
                serde_json::Value::Number(n) => match def.item(&k).map(|i| i.ty) {
                    Some(q::ItemType::Choice) => {
                        def.answer_from_text(&k, &n.to_string()).map_err(q_error)?
                    }
                    _ => Value::from_json(&serde_json::Value::Number(n)),
                },
                other => Value::from_json(&other),
            };
            out.push((k, v));
        }
    }
    for s in &a.answers {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| CliError::invalid(format!("--answer `{s}` is not linkId=value")))?;
        let v = def.answer_from_text(k.trim(), v).map_err(q_error)?;
        out.push((k.trim().to_owned(), v));
    }
    if out.is_empty() {
        return Err(CliError::invalid(
            "no answers: give --answer linkId=value or --file",
        ));
    }
    Ok(out)
}

fn answer(ctx: &Ctx, a: AnswerArgs) -> Result<()> {
    let (item, person, now, record) = item_of(ctx, &a.entry)?;
    let store = ctx.store()?;
    // An assignment names the questionnaire's version to answer; else the current one.
    let (def_id, task) = match item.category {
        Category::Tasks => {
            if care::text(&item.body, "kind") != Some(TASK_KIND) {
                return Err(CliError::invalid(format!(
                    "{} is a task but not an assigned questionnaire",
                    item.id.short()
                )));
            }
            let status = care::text(&item.body, "status").and_then(TaskStatus::parse);
            if status.is_some_and(TaskStatus::is_closed) {
                return Err(CliError::invalid(format!(
                    "the assignment {} is already {}",
                    item.id.short(),
                    status.map(TaskStatus::name).unwrap_or_default()
                )));
            }
            let id: EntryId = care::text(&item.body, "questionnaire")
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| CliError::invalid("the assignment names no questionnaire"))?;
            (id, Some(item.clone()))
        }
        Category::Questionnaires => (item.current, None),
        other => {
            return Err(CliError::invalid(format!(
                "{} is an entry in {other}, not a questionnaire or an assignment",
                item.id.short()
            )))
        }
    };
    let def = store.with_record(&record, |r| definition_at(r, &def_id))??;
    let answers = parse_answers(&def, &a)?;
    let completed = times::format(now);
    let body_json = q::response_json(
        &def,
        &def_id,
        &answers,
        &completed,
        task.as_ref().map(|t| &t.id),
    )
    .map_err(q_error)?;
    let body = schema::body_from_json(&Category::Questionnaires, &body_json)?;
    schema::validate(&Category::Questionnaires, &body)?;
    let me = ctx.identity()?;
    let response = context::write(
        ctx,
        &store,
        &me,
        &record,
        Payload::Create {
            category: Category::Questionnaires,
            body,
        },
    )?;
    let (score, band) = (
        body_json.get("score").cloned(),
        body_json.get("band").cloned(),
    );
    let flags = def
        .score(&Value::from_json(&body_json["answers"]))
        .map(|s| s.flags)
        .unwrap_or_default();
    let mut completed_task = None;
    if let Some(t) = task {
        // The owner completes the assignment; someone else answering leaves it to them.
        let owner = care::text(&t.body, "owner").and_then(|o| o.parse::<ActorId>().ok());
        if owner == Some(person) {
            let mut m = care::object(&t.body);
            m.insert("status".into(), TaskStatus::Completed.name().into());
            m.insert("note".into(), format!("Answered: {response}").into());
            let new = schema::body_from_json(&Category::Tasks, &serde_json::Value::Object(m))?;
            completed_task = Some(context::write(
                ctx,
                &store,
                &me,
                &record,
                Payload::Amend {
                    target: t.current,
                    body: new,
                },
            )?);
        }
    }
    if ctx.json {
        return output::json(&json!({
            "entry": response, "questionnaire": def_id, "score": score, "band": band,
            "flags": flags, "task": completed_task,
        }));
    }
    let mut line = response.to_string();
    if let Some(s) = score {
        line.push_str(&format!("  score {s}"));
        if let Some(serde_json::Value::String(b)) = band {
            line.push_str(&format!(" ({b})"));
        }
    }
    for f in &flags {
        line.push_str(&format!(
            "\nFLAG {}: {} ({})",
            f.question, f.label, f.answer
        ));
    }
    output::line(line)
}

/// A published questionnaire, as listed.
#[derive(Debug, Serialize)]
struct Published {
    id: EntryId,
    version: EntryId,
    title: String,
    questions: usize,
    scored: bool,
}

/// An assignment, as listed.
#[derive(Debug, Serialize)]
struct Assigned {
    id: EntryId,
    questionnaire: Option<String>,
    title: String,
    status: String,
    due: Option<String>,
    overdue: bool,
    owner: Option<String>,
}

/// A response, as listed.
#[derive(Debug, Serialize)]
struct Answered {
    id: EntryId,
    questionnaire: String,
    questionnaire_entry: Option<String>,
    score: Option<serde_json::Value>,
    band: Option<String>,
    flags: Vec<q::Tripped>,
    completed: Option<String>,
}

fn list(ctx: &Ctx, a: ListArgs) -> Result<()> {
    let now = ctx.now()?;
    let today = times::format(now)[..10].to_owned();
    let (_, (published, answered)) = care::read(
        ctx,
        &Category::Questionnaires,
        "questionnaires",
        |rec, _, items, seen| {
            let mut p = Vec::new();
            let mut r = Vec::new();
            for i in items {
                seen.add([i.current]);
                let title = care::text(&i.body, "questionnaire")
                    .unwrap_or_default()
                    .to_owned();
                if let Some(d) = q::definition_of(&i.body) {
                    let d = d.ok();
                    p.push(Published {
                        id: i.id,
                        version: i.current,
                        title,
                        questions: d.as_ref().map_or(0, |d| d.items.len()),
                        scored: d.is_some_and(|d| d.scoring.is_some()),
                    });
                } else {
                    r.push(Answered {
                        id: i.id,
                        questionnaire: title,
                        questionnaire_entry: care::text(&i.body, DEFINITION_ENTRY)
                            .map(str::to_owned),
                        score: i.body.get("score").map(Value::to_json),
                        band: care::text(&i.body, "band").map(str::to_owned),
                        flags: q::flags_of_response(rec, &i.current),
                        completed: care::text(&i.body, "completed").map(str::to_owned),
                    });
                }
            }
            Ok((p, r))
        },
    )?;
    let (_, assigned) = care::read(ctx, &Category::Tasks, "tasks", |r, _, items, seen| {
        let mut out = Vec::new();
        for i in items {
            if care::text(&i.body, "kind") != Some(TASK_KIND) {
                continue;
            }
            seen.add([i.current]);
            let qid = care::text(&i.body, "questionnaire").map(str::to_owned);
            let title = qid
                .as_deref()
                .and_then(|t| t.parse::<EntryId>().ok())
                .and_then(|id| definition_at(r, &id).ok())
                .map(|d| d.title)
                .unwrap_or_else(|| {
                    care::text(&i.body, "description")
                        .unwrap_or_default()
                        .to_owned()
                });
            let status = care::text(&i.body, "status").unwrap_or_default().to_owned();
            let due = care::text(&i.body, "due").map(str::to_owned);
            let open = !TaskStatus::parse(&status).is_some_and(TaskStatus::is_closed);
            out.push(Assigned {
                id: i.id,
                questionnaire: qid,
                title,
                overdue: open && due.as_deref().is_some_and(|d| d < today.as_str()),
                status,
                due,
                owner: care::text(&i.body, "owner").map(str::to_owned),
            });
        }
        Ok(out)
    })?;
    if ctx.json(a.out) {
        return output::json(&json!({
            "published": published, "assigned": assigned, "responses": answered,
        }));
    }
    let mut t = Table::new(&["ID", "PUBLISHED QUESTIONNAIRE", "QUESTIONS", "SCORED"]);
    for p in &published {
        t.row(vec![
            p.id.short(),
            p.title.clone(),
            p.questions.to_string(),
            if p.scored { "yes" } else { "no" }.into(),
        ]);
    }
    let mut out = t.render();
    let mut t = Table::new(&["ID", "ASSIGNED", "STATUS", "DUE"]);
    for a in &assigned {
        let mut due = a.due.clone().unwrap_or_default();
        if a.overdue {
            due.push_str(" (overdue)");
        }
        t.row(vec![a.id.short(), a.title.clone(), a.status.clone(), due]);
    }
    out.push('\n');
    out.push_str(&t.render());
    let mut t = Table::new(&["ID", "ANSWERED", "SCORE", "BAND", "FLAG", "COMPLETED"]);
    for r in &answered {
        t.row(vec![
            r.id.short(),
            r.questionnaire.clone(),
            r.score
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            r.band.clone().unwrap_or_default(),
            r.flags
                .iter()
                .map(|f| format!("FLAG {}", f.question))
                .collect::<Vec<_>>()
                .join(", "),
            r.completed.clone().unwrap_or_default(),
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    output::print(&out)
}

fn show(ctx: &Ctx, a: ShowArgs) -> Result<()> {
    let (item, _, _, record) = item_of(ctx, &a.entry)?;
    let store = ctx.store()?;
    let (def_id, response) = match item.category {
        Category::Tasks => (
            care::text(&item.body, "questionnaire").and_then(|t| t.parse::<EntryId>().ok()),
            None,
        ),
        Category::Questionnaires if q::definition_of(&item.body).is_some() => {
            (Some(item.current), None)
        }
        Category::Questionnaires => (
            care::text(&item.body, DEFINITION_ENTRY).and_then(|t| t.parse::<EntryId>().ok()),
            Some(item.body.clone()),
        ),
        other => {
            return Err(CliError::invalid(format!(
                "{} is an entry in {other}, not a questionnaire",
                item.id.short()
            )))
        }
    };
    let def = match def_id {
        Some(id) => Some(store.with_record(&record, |r| definition_at(r, &id))??),
        None => None,
    };
    drop(store);
    // Audited as a view of what is shown.
    let _ = care::read(ctx, &item.category, "questionnaire", |_, _, _, seen| {
        seen.add([item.current]);
        Ok(())
    })?;
    let flags = match (&def, &response) {
        (Some(d), Some(b)) => d
            .score(b.get("answers").unwrap_or(&Value::List(Vec::new())))
            .map(|s| s.flags)
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    if ctx.json(a.out) {
        return output::json(&json!({
            "entry": item.current, "definition": def, "response": response.map(|b| b.to_json()),
            "flags": flags,
        }));
    }
    let mut out = String::new();
    if let Some(d) = &def {
        out.push_str(&format!("{}\n", d.title));
        if let Some(desc) = &d.description {
            out.push_str(&format!("{desc}\n"));
        }
    }
    let answer_of = |link: &str| -> Option<String> {
        let b = response.as_ref()?;
        let Value::List(l) = b.get("answers")? else {
            return None;
        };
        l.iter()
            .find(|x| x.get("question").and_then(Value::as_text) == Some(link))
            .and_then(|x| x.get("answer"))
            .map(|v| match v {
                Value::Text(t) => t.clone(),
                other => other.to_json().to_string(),
            })
    };
    if let Some(d) = &def {
        for i in &d.items {
            out.push_str(&format!(
                "\n{}{} {}\n",
                i.link_id,
                if i.required { "*" } else { "" },
                i.text
            ));
            if response.is_some() {
                let given = answer_of(&i.link_id);
                let shown = given.as_deref().map(|g| {
                    i.options
                        .iter()
                        .find(|o| o.code == g)
                        .map_or_else(|| g.to_owned(), |o| o.display.clone())
                });
                out.push_str(&format!(
                    "  answer: {}\n",
                    shown.unwrap_or_else(|| "—".into())
                ));
            } else {
                for o in &i.options {
                    let score = o.ordinal.map(|n| format!(" ({n})")).unwrap_or_default();
                    out.push_str(&format!("  {} = {}{score}\n", o.code, o.display));
                }
                if i.options.is_empty() {
                    out.push_str(&format!("  ({:?})\n", i.ty).to_lowercase());
                }
            }
        }
        if let (Some(s), None) = (&d.scoring, &response) {
            out.push_str("\nScore: the sum of the options' values.");
            for b in &s.bands {
                out.push_str(&format!(" {}–{} {};", b.low, b.high, b.label));
            }
            out.push('\n');
        }
    }
    if let Some(b) = &response {
        if let Some(s) = b.get("score") {
            out.push_str(&format!("\nScore: {}", s.to_json()));
            if let Some(band) = b.get("band").and_then(Value::as_text) {
                out.push_str(&format!(" ({band})"));
            }
            out.push('\n');
        }
        for f in &flags {
            out.push_str(&format!(
                "FLAG {}: {} ({})\n",
                f.question, f.label, f.answer
            ));
        }
    }
    output::print(&out)
}
