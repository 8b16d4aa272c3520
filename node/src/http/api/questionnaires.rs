//! Questionnaires (PROMs, `docs/care-team.md`): the built-in instruments, publishing one
//! into a record, assigning it with a due date (a task of kind `questionnaire`), answering
//! it (the score and band computed by the questionnaire's rule, the assignment completed),
//! and listing what the identity may see. The rules are the protocol's
//! (`cophr_protocol::care::questionnaire`); the record's gate checks every response.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;
use cophr_protocol::care::questionnaire::{
    self as q, Definition, QuestionnaireError, DEFINITION, DEFINITION_ENTRY, TASK, TASK_KIND,
};
use cophr_protocol::care::TaskStatus;
use cophr_protocol::entry::Payload;
use cophr_protocol::fold::{self, Item};
use cophr_protocol::record::Record;
use cophr_protocol::{schema, ActorId, Category, EntryId, Value as Body};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    created, format_time, held, parse_actor, parse_entry, parse_record, read_as_viewer, viewer,
    ApiError, AppState, JsonBody,
};

/// Most answers in one response (the schema's bound on a body's answers).
pub const MAX_ANSWERS: usize = schema::MAX_ANSWERS;

fn q_error(e: QuestionnaireError) -> ApiError {
    ApiError::unprocessable(e.to_string())
}

fn schema_err(e: schema::SchemaError) -> ApiError {
    ApiError::unprocessable(e.to_string())
}

fn definition_json(d: &Definition) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

/// `GET /questionnaires/built-in`: the questionnaires shipped with cophr.
pub(super) async fn built_in() -> Result<Json<Value>, ApiError> {
    let list = q::BUILT_IN
        .iter()
        .filter_map(|(name, text)| {
            let d = Definition::parse(text).ok()?;
            Some(json!({"name": name, "title": d.title, "definition": definition_json(&d)}))
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

/// The person the identity writes as in `r` (the record id for the patient).
fn person(r: &Record, me: &ActorId) -> ActorId {
    if r.is_patient(me) {
        return r.id();
    }
    r.owners_of(me).into_iter().next().unwrap_or(*me)
}

/// The published questionnaire at version `id`.
fn definition_at(r: &Record, id: &EntryId) -> Result<Definition, ApiError> {
    let not = || ApiError::not_found(format!("{id} is not a published questionnaire"));
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

/// The current version of the item `id` (any version's id) the identity may see.
fn current(r: &Record, v: &fold::Viewer, id: &EntryId) -> Result<Item, ApiError> {
    let root = fold::history(r, v, id)
        .map(|h| h.item)
        .ok_or_else(|| ApiError::not_found(format!("no entry {id} you may see")))?;
    match fold::item(r, v, &root) {
        Some(fold::ItemState::Current(i)) => Ok(*i),
        _ => Err(ApiError::not_found(format!(
            "entry {id} is deleted or not visible"
        ))),
    }
}

fn text<'a>(b: &'a Body, k: &str) -> Option<&'a str> {
    b.get(k).and_then(Body::as_text)
}

/// `GET /records/{rid}/questionnaires`: published questionnaires, assignments (overdue ones
/// marked) and responses the identity may see; audited as a view of them.
pub(super) async fn list(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = read_as_viewer(&st, record, |r, v, seen, now| {
        let today = format_time(now)[..10].to_owned();
        let state = fold::current(r, v);
        let (mut published, mut assigned, mut responses) = (Vec::new(), Vec::new(), Vec::new());
        for i in &state.items {
            match i.category {
                Category::Questionnaires => {
                    seen.add([i.current]);
                    let title = text(&i.body, "questionnaire").unwrap_or_default();
                    if let Some(d) = q::definition_of(&i.body) {
                        let Ok(d) = d else { continue };
                        published.push(json!({"id": i.id, "version": i.current,
                            "title": title, "definition": definition_json(&d)}));
                    } else {
                        responses.push(json!({"id": i.id, "questionnaire": title,
                            "questionnaire_entry": text(&i.body, DEFINITION_ENTRY),
                            "task": text(&i.body, TASK),
                            "score": i.body.get("score").map(Body::to_json),
                            "band": text(&i.body, "band"),
                            "flags": q::flags_of_response(r, &i.current),
                            "completed": text(&i.body, "completed")}));
                    }
                }
                Category::Tasks if text(&i.body, "kind") == Some(TASK_KIND) => {
                    seen.add([i.current]);
                    let status = text(&i.body, "status").unwrap_or_default();
                    let due = text(&i.body, "due");
                    let open = !TaskStatus::parse(status).is_some_and(TaskStatus::is_closed);
                    let qid = text(&i.body, "questionnaire");
                    let title = qid
                        .and_then(|t| t.parse::<EntryId>().ok())
                        .and_then(|id| definition_at(r, &id).ok())
                        .map(|d| d.title);
                    assigned.push(json!({"id": i.id, "version": i.current,
                        "questionnaire": qid, "title": title,
                        "description": text(&i.body, "description"),
                        "status": status, "due": due,
                        "overdue": open && due.is_some_and(|d| d < today.as_str()),
                        "owner": text(&i.body, "owner"),
                        "requester": text(&i.body, "requester")}));
                }
                _ => {}
            }
        }
        seen.detail(format!(
            "questionnaires (API): {} published, {} assigned, {} responses",
            published.len(),
            assigned.len(),
            responses.len()
        ));
        Ok(json!({"published": published, "assigned": assigned,
            "responses": responses}))
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PublishInput {
    built_in: Option<String>,
    questionnaire: Option<Value>,
}

/// `POST /records/{rid}/questionnaires`: publish a built-in questionnaire by name or a FHIR
/// Questionnaire; 422 with what is wrong, nothing stored.
pub(super) async fn publish(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<PublishInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let text = match (&input.built_in, &input.questionnaire) {
        (Some(n), None) => q::built_in(n)
            .ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "no built-in questionnaire `{}`: {}",
                    n.chars().take(32).collect::<String>(),
                    q::BUILT_IN.map(|(n, _)| n).join(", ")
                ))
            })?
            .to_owned(),
        (None, Some(j)) => j.to_string(),
        _ => {
            return Err(ApiError::invalid(
                "give either `built_in` (a name) or `questionnaire` (a FHIR Questionnaire)",
            ))
        }
    };
    let canonical = q::canonical(&text).map_err(q_error)?;
    let def = Definition::parse(&canonical).map_err(q_error)?;
    let body = schema::body_from_json(
        &Category::Questionnaires,
        &json!({"questionnaire": def.title, DEFINITION: canonical}),
    )
    .map_err(schema_err)?;
    let title = def.title.clone();
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            Ok(st.session().write(
                &record,
                Payload::Create {
                    category: Category::Questionnaires,
                    body,
                },
                now,
            )?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({"id": id, "title": title})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AssignInput {
    due: String,
    to: Option<String>,
    note: Option<String>,
}

/// `POST /records/{rid}/questionnaires/{eid}/assign`: assign the published questionnaire
/// (its current version) with a due date, as a task owned by the patient (or `to`).
pub(super) async fn assign(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    JsonBody(input): JsonBody<AssignInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let target = parse_entry(&eid)?;
    let to = input
        .to
        .as_deref()
        .map(|t| parse_actor("to", t))
        .transpose()?;
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let now = st.now();
            let (version, title, requester) = st.store().with_record(&record, |r| {
                let v = viewer(r, &me, now)?;
                let item = current(r, &v, &target)?;
                let d = definition_at(r, &item.current)?;
                Ok::<_, ApiError>((item.current, d.title, person(r, &me)))
            })??;
            let mut m = serde_json::Map::new();
            m.insert("kind".into(), TASK_KIND.into());
            m.insert(
                "description".into(),
                format!("Please complete the {title}").into(),
            );
            m.insert("requester".into(), requester.to_string().into());
            m.insert("owner".into(), to.unwrap_or(record).to_string().into());
            m.insert("status".into(), TaskStatus::Sent.name().into());
            m.insert("due".into(), input.due.into());
            m.insert("questionnaire".into(), version.to_string().into());
            if let Some(n) = input.note {
                m.insert("note".into(), n.into());
            }
            let body =
                schema::body_from_json(&Category::Tasks, &Value::Object(m)).map_err(schema_err)?;
            schema::validate(&Category::Tasks, &body).map_err(schema_err)?;
            let id = st.session().write(
                &record,
                Payload::Create {
                    category: Category::Tasks,
                    body,
                },
                now,
            )?;
            // The assigning clinician hears of a clinical flag in the answers: a
            // subscription of their own (listed, removable), unless one names it already.
            // Refused (at the bound, or the category not visible): the assignment stands.
            let follow = st.notifier().follow_flags(&me, &record, now);
            let (subscription, note) = match follow {
                Ok(s) => (s.map(|s| s.id), None),
                Err(e) => (None, Some(e.to_string())),
            };
            Ok((id, subscription, note))
        })
        .await?;
    st.changed(record).await;
    let (id, subscription, note) = id;
    Ok(created(
        json!({"id": id, "flag_subscription": subscription, "flag_subscription_refused": note}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnswerInput {
    answers: Vec<AnswerPair>,
    task: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnswerPair {
    question: String,
    answer: Value,
}

/// `POST /records/{rid}/questionnaires/{eid}/responses`: answer the published questionnaire
/// version `eid` (for the assignment `task`, which the answer completes when the identity
/// owns it). The score and band are computed here by the questionnaire's rule; 422 naming
/// the first answer that breaks it, nothing stored.
pub(super) async fn answer(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    JsonBody(input): JsonBody<AnswerInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let def_id = parse_entry(&eid)?;
    if input.answers.len() > MAX_ANSWERS {
        return Err(ApiError::unprocessable(format!(
            "at most {MAX_ANSWERS} answers (got {})",
            input.answers.len()
        )));
    }
    let task = input.task.as_deref().map(parse_entry).transpose()?;
    let answers: Vec<(String, Body)> = input
        .answers
        .into_iter()
        .map(|a| (a.question, Body::from_json(&a.answer)))
        .collect();
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let now = st.now();
            let (def, task_item, me_person) = st.store().with_record(&record, |r| {
                let v = viewer(r, &me, now)?;
                let def = definition_at(r, &def_id)?;
                let t = match &task {
                    Some(t) => {
                        let item = current(r, &v, t)?;
                        if item.category != Category::Tasks
                            || text(&item.body, "kind") != Some(TASK_KIND)
                            || text(&item.body, "questionnaire")
                                != Some(def_id.to_string().as_str())
                        {
                            return Err(ApiError::unprocessable(format!(
                                "{t} is not an assignment of questionnaire {def_id}"
                            )));
                        }
                        let status = text(&item.body, "status").and_then(TaskStatus::parse);
                        if status.is_some_and(TaskStatus::is_closed) {
                            return Err(ApiError::conflict(format!(
                                "the assignment {t} is already {}",
                                status.map(TaskStatus::name).unwrap_or_default()
                            )));
                        }
                        Some(item)
                    }
                    None => None,
                };
                Ok((def, t, person(r, &me)))
            })??;
            let completed = format_time(now);
            let j = q::response_json(
                &def,
                &def_id,
                &answers,
                &completed,
                task_item.as_ref().map(|t| &t.id),
            )
            .map_err(q_error)?;
            let flags = def
                .score(&Body::from_json(&j["answers"]))
                .map(|s| s.flags)
                .unwrap_or_default();
            let body = schema::body_from_json(&Category::Questionnaires, &j).map_err(schema_err)?;
            schema::validate(&Category::Questionnaires, &body).map_err(schema_err)?;
            let session = st.session();
            let id = session.write(
                &record,
                Payload::Create {
                    category: Category::Questionnaires,
                    body,
                },
                now,
            )?;
            let mut task_step = None;
            if let Some(t) = task_item {
                let owner = text(&t.body, "owner").and_then(|o| o.parse::<ActorId>().ok());
                if owner == Some(me_person) {
                    let mut m = match t.body.to_json() {
                        Value::Object(m) => m,
                        _ => serde_json::Map::new(),
                    };
                    m.insert("status".into(), TaskStatus::Completed.name().into());
                    m.insert("note".into(), format!("Answered: {id}").into());
                    let b = schema::body_from_json(&Category::Tasks, &Value::Object(m))
                        .map_err(schema_err)?;
                    task_step = Some(session.write(
                        &record,
                        Payload::Amend {
                            target: t.current,
                            body: b,
                        },
                        now,
                    )?);
                }
            }
            Ok(
                json!({"id": id, "score": j.get("score"), "band": j.get("band"),
                "flags": flags, "task": task_step}),
            )
        })
        .await?;
    st.changed(record).await;
    Ok(created(out))
}
