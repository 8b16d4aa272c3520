//! The REST API under `/api/v1`: JSON in and out, acting as the node's identity. Reads are
//! audited like the CLI's (`show`, `history`, `grants`, `audit`, `export`); writes go
//! through [`crate::session::Session`] (checked first, profile published, refusals
//! explained) and are announced to the network. The contract is `openapi.json`, served at
//! `/api/v1/openapi.json`.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cophr_protocol::audit::{self, Action, AuditQuery, AuditRow, Own, SignedAudit};
use cophr_protocol::entry::Payload;
use cophr_protocol::fold::{self, Item, Viewer};
use cophr_protocol::record::{GrantInfo, Record, Status};
use cophr_protocol::{
    schema, ActorId, Category, EntryId, Grant, Level, Profile, RecordId, Scope, Timestamp,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{ApiError, AppState, JsonBody, OptionalJsonBody};

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Default and largest `limit` of the timeline and the audit trail.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 10_000;

/// The `/api/v1` routes (paths relative to it).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/whoami", get(whoami))
        .route("/categories", get(categories))
        .route("/records", get(list_records).post(create_record))
        .route("/records/{rid}", get(record_summary))
        .route("/records/{rid}/entries", get(list_entries).post(add_entry))
        .route(
            "/records/{rid}/entries/{eid}",
            get(get_entry).put(amend_entry).delete(delete_entry),
        )
        .route("/records/{rid}/entries/{eid}/history", get(entry_history))
        .route("/records/{rid}/entries/{eid}/annotations", post(annotate))
        .route("/records/{rid}/timeline", get(timeline))
        .route("/records/{rid}/grants", get(list_grants).post(add_grant))
        .route("/records/{rid}/grants/{gid}/revoke", post(revoke))
        .route("/records/{rid}/audit", get(audit_trail))
        .route("/records/{rid}/export", get(export))
}

// ---------------------------------------------------------------------------------------
// Input helpers

/// Query parameters, with a JSON 400 when they do not parse.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::invalid(format!("bad query parameters: {}", e.body_text())))
    }
}

/// Formats milliseconds since the epoch as RFC 3339 UTC.
pub fn format_time(t: Timestamp) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
        .ok()
        .and_then(|dt| dt.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{t} ms"))
}

/// Parses an RFC 3339 time (or a date: the end of that day, UTC).
pub fn parse_time(what: &str, s: &str) -> Result<Timestamp, ApiError> {
    parse_time_or_day(what, s, false)
}

/// Parses an RFC 3339 time, or a date: the start of that day (`start`) or its end, UTC.
pub fn parse_time_or_day(what: &str, s: &str, start: bool) -> Result<Timestamp, ApiError> {
    let s = s.trim();
    let dt = OffsetDateTime::parse(s, &Rfc3339)
        .ok()
        .or_else(|| {
            let d = time::Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
                .ok()?;
            let t = if start {
                time::Time::MIDNIGHT
            } else {
                time::Time::from_hms_milli(23, 59, 59, 999).ok()?
            };
            Some(d.with_time(t).assume_utc())
        })
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "{what} `{s}` is not a time: write RFC 3339 (e.g. 2026-11-22T10:15:00Z) or a date"
            ))
        })?;
    Timestamp::try_from(dt.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| ApiError::invalid(format!("{what} `{s}` is before 1970")))
}

fn parse_record(s: &str) -> Result<RecordId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::invalid(format!("`{s}` is not a record id: {e}")))
}

fn parse_entry(s: &str) -> Result<EntryId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::invalid(format!("`{s}` is not an entry id: {e}")))
}

fn parse_category(s: &str) -> Result<Category, ApiError> {
    s.trim().parse::<Category>().map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_category",
            format!("{e} (GET /api/v1/categories lists them)"),
        )
    })
}

/// Checks the record is held here.
fn held(st: &AppState, record: &RecordId) -> Result<(), ApiError> {
    if !st.store().holds(record)? {
        return Err(ApiError::not_found(format!(
            "record {record} is not held on this node"
        )));
    }
    Ok(())
}

/// The identity's view of the record now, or 403.
fn viewer(r: &Record, me: &ActorId, now: Timestamp) -> Result<Viewer, ApiError> {
    let v = r.viewer(me, now);
    if !v.has_access() {
        return Err(ApiError::forbidden(
            "not authorised: no access to this record",
        ));
    }
    Ok(v)
}

/// A visible entry of the record, or 404.
fn visible(r: &Record, v: &Viewer, id: &EntryId) -> Result<(), ApiError> {
    if r.contains(id) && r.can_see(v, id) {
        return Ok(());
    }
    Err(ApiError::not_found(format!(
        "no entry {id} that you can see in record {}",
        r.id()
    )))
}

// ---------------------------------------------------------------------------------------
// Output helpers

fn person(r: &Record, actor: &ActorId, at: Option<Timestamp>) -> Value {
    let p = r.profile(actor, at).or_else(|| r.profile(actor, None));
    person_of(actor, p)
}

fn person_of(actor: &ActorId, p: Option<&Profile>) -> Value {
    json!({
        "actor": actor,
        "name": p.map(|p| p.name.clone()),
        "role": p.map(|p| p.role.clone()),
        "organisation": p.and_then(|p| p.organisation.clone()),
    })
}

fn status_name(r: &Record, id: &EntryId) -> &'static str {
    match r.status(id) {
        Some(Status::Valid) | None => "valid",
        Some(Status::Void { .. }) => "void",
    }
}

fn annotation(r: &Record, id: &EntryId) -> Option<Value> {
    let e = r.get(id)?.entry();
    let Payload::Annotate { text, .. } = &e.payload else {
        return None;
    };
    Some(json!({
        "id": id,
        "text": text,
        "author": person(r, &e.author, Some(e.time)),
        "time": format_time(e.time),
    }))
}

/// A current item as the API shows it.
fn item_json(r: &Record, i: &Item) -> Value {
    let device = r.get(&i.current).and_then(|e| e.entry().device.clone());
    json!({
        "id": i.id,
        "current": i.current,
        "category": i.category.name(),
        "body": i.body.to_json(),
        "summary": schema::summary(&i.category, &i.body),
        "author": person(r, &i.author, None),
        "device": device,
        "time": format_time(i.updated),
        "created": format_time(i.created),
        "status": status_name(r, &i.current),
        "version": i.versions,
        "versions": i.versions,
        "conflict": i.conflict,
        "deleted": false,
        "annotations": i.annotations.iter().filter_map(|a| annotation(r, a)).collect::<Vec<_>>(),
    })
}

/// A deleted item (its last data version, marked deleted).
fn deleted_json(r: &Record, v: &Viewer, id: &EntryId) -> Option<Value> {
    let h = fold::history(r, v, id)?;
    let data: Vec<&fold::Version> = h
        .versions
        .iter()
        .filter(|x| matches!(x.kind, "create" | "amend"))
        .collect();
    let last = data.last()?;
    let delete = h.versions.iter().rev().find(|x| x.kind == "delete")?;
    let notes: Vec<Value> = h
        .versions
        .iter()
        .filter(|x| x.kind == "annotate")
        .filter_map(|x| annotation(r, &x.id))
        .collect();
    Some(json!({
        "id": h.item,
        "current": delete.id,
        "category": h.category.name(),
        "body": last.content.to_json(),
        "summary": schema::summary(&h.category, &last.content),
        "author": person(r, &delete.provenance.author, None),
        "device": delete.provenance.device,
        "time": format_time(delete.provenance.time),
        "created": format_time(data.first()?.provenance.time),
        "status": status_name(r, &delete.id),
        "version": data.len(),
        "versions": data.len(),
        "conflict": false,
        "deleted": true,
        "annotations": notes,
    }))
}

fn grant_status(r: &Record, g: &GrantInfo, now: Timestamp) -> &'static str {
    if !matches!(r.status(&g.id), Some(Status::Valid)) {
        return "void";
    }
    if g.revoked_by
        .iter()
        .any(|rv| matches!(r.status(rv), Some(Status::Valid)))
    {
        return "revoked";
    }
    if g.grant.until.is_some_and(|u| now > u) {
        return "expired";
    }
    if g.grant.not_before.is_some_and(|nb| now < nb) {
        return "not-yet-valid";
    }
    "active"
}

fn grant_json(r: &Record, g: &GrantInfo, now: Timestamp) -> Value {
    let categories = match &g.grant.scope {
        Scope::All => json!("all"),
        Scope::Only(set) => json!(set.iter().map(Category::name).collect::<Vec<_>>()),
    };
    json!({
        "id": g.id,
        "grantee": person(r, &g.grant.grantee, None),
        "categories": categories,
        "level": g.grant.level,
        "from": g.grant.not_before.map(format_time),
        "expires": g.grant.until.map(format_time),
        "audit": g.grant.audit,
        "delegate": g.grant.delegate,
        "label": g.grant.label,
        "status": grant_status(r, g, now),
        "granted_by": person(r, &g.issuer, None),
        "time": format_time(g.time),
        "parent": g.parent,
        "revoked_by": g.revoked_by,
    })
}

fn audit_json(r: &Record, a: &SignedAudit) -> Value {
    let e = &a.event;
    let known = r
        .profile(&e.actor, Some(e.time))
        .or_else(|| r.profile(&e.actor, None));
    let first = e.entries.first();
    let category = first
        .and_then(|id| r.category_of(id))
        .map(|c| c.name().to_owned());
    json!({
        "id": a.id(),
        "time": format_time(e.time),
        "actor": {
            "actor": e.actor,
            "name": e.actor_name.clone().or_else(|| known.map(|p| p.name.clone())),
            "role": e.actor_role.clone().or_else(|| known.map(|p| p.role.clone())),
            "organisation": e.actor_organisation.clone()
                .or_else(|| known.and_then(|p| p.organisation.clone())),
        },
        "action": e.action.name(),
        "entry": first,
        "entries": e.entries,
        "category": category,
        "detail": e.detail,
        "node": e.node,
        "seq": e.seq,
        "device": e.device,
    })
}

fn created(v: Value) -> Response {
    (StatusCode::CREATED, Json(v)).into_response()
}

// ---------------------------------------------------------------------------------------
// Handlers

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn whoami(State(st): State<AppState>) -> Json<Value> {
    let p = st.profile();
    Json(json!({
        "actor": st.actor(),
        "name": p.name,
        "role": p.role,
        "organisation": p.organisation,
        "device": st.device(),
        "node_peer_id": st.node().map(|n| n.peer_id().to_string()),
    }))
}

async fn categories() -> Json<Value> {
    let list: Vec<Value> = schema::all()
        .iter()
        .map(|s| {
            let fields: Vec<Value> = s
                .fields
                .iter()
                .map(|f| {
                    let mut o = json!({
                        "name": f.name,
                        "title": f.title,
                        "type": f.ty.kind(),
                        "required": f.required,
                        "description": f.ty.describe(),
                    });
                    match f.ty {
                        schema::FieldType::Quantity { units } => {
                            o["unit"] = json!(units.first());
                            o["units"] = json!(units);
                        }
                        schema::FieldType::Code(codes) => o["codes"] = json!(codes),
                        _ => {}
                    }
                    o
                })
                .collect();
            json!({
                "name": s.category.name(),
                "title": s.title,
                "description": s.description,
                "fields": fields,
                "fhir": s.fhir,
            })
        })
        .collect();
    Json(Value::Array(list))
}

async fn list_records(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let out = st
        .blocking(|st| {
            let me = st.actor();
            let now = st.now();
            let mut rows = Vec::new();
            for id in st.store().records()? {
                let home = st
                    .node()
                    .and_then(|n| n.peer_book(&id).ok())
                    .and_then(|b| b.home.map(|a| a.to_string()));
                let row = st.store().with_record(&id, |r| {
                    let v = r.viewer(&me, now);
                    let mut levels = BTreeMap::new();
                    for c in Category::BUILT_IN.iter() {
                        if let Some(l) = v.level_on(c) {
                            levels.insert(c.name().to_owned(), l);
                        }
                    }
                    json!({
                        "record": id,
                        "patient_name": r.profile(&r.patient(), None).map(|p| p.name.clone()),
                        "is_mine": r.patient() == me,
                        "home": home,
                        "entries": r.len(),
                        "categories_visible": levels.keys().collect::<Vec<_>>(),
                        "level_by_category": levels,
                    })
                })?;
                rows.push(row);
            }
            Ok(Value::Array(rows))
        })
        .await?;
    Ok(Json(out))
}

async fn create_record(
    State(st): State<AppState>,
    OptionalJsonBody(_body): OptionalJsonBody<Value>,
) -> Result<Response, ApiError> {
    let record = st
        .blocking(|st| {
            let me = st.actor();
            if st.store().holds(&me)? {
                return Err(ApiError::conflict(format!(
                    "your record {me} already exists on this node"
                )));
            }
            st.store().create_record(
                st.keypair(),
                st.profile().clone(),
                st.now(),
                st.device().map(str::to_owned),
            )?;
            Ok(me)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({ "record": record })))
}

async fn record_summary(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let now = st.now();
            st.read(now, |rd| {
                rd.detail("record summary (API): about me, alerts, counts");
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    let state = fold::current(r, &v);
                    let pick = |c: Category| {
                        state
                            .in_category(&c)
                            .map(|i| item_json(r, i))
                            .collect::<Vec<_>>()
                    };
                    let about = pick(Category::AboutMe);
                    let alerts = pick(Category::Alerts);
                    seen.add(
                        state
                            .items
                            .iter()
                            .filter(|i| matches!(i.category, Category::AboutMe | Category::Alerts))
                            .map(|i| i.current),
                    );
                    let mut counts: BTreeMap<Category, usize> = BTreeMap::new();
                    for i in &state.items {
                        *counts.entry(i.category.clone()).or_default() += 1;
                    }
                    let cats: Vec<Value> = counts
                        .iter()
                        .map(|(c, n)| json!({ "name": c.name(), "title": c.title(), "count": n }))
                        .collect();
                    let mine: Vec<Value> = r
                        .grants()
                        .filter(|g| g.grant.grantee == me)
                        .map(|g| grant_json(r, g, now))
                        .collect();
                    let patient = r.patient();
                    Ok::<_, ApiError>(json!({
                        "record": record,
                        "patient": {
                            "actor": patient,
                            "name": r.profile(&patient, None).map(|p| p.name.clone()),
                        },
                        "about_me": about,
                        "alerts": alerts,
                        "categories": cats,
                        "my_access": { "is_patient": v.is_patient(), "grants": mine },
                    }))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
struct EntriesQuery {
    category: Option<String>,
    at: Option<String>,
    #[serde(default)]
    include_deleted: bool,
}

async fn list_entries(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    QueryParams(q): QueryParams<EntriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let only: BTreeSet<Category> = q
        .category
        .as_deref()
        .map(|s| {
            s.split(',')
                .filter(|c| !c.trim().is_empty())
                .map(parse_category)
                .collect::<Result<_, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let at = q.at.as_deref().map(|t| parse_time("at", t)).transpose()?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let now = st.now();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let past;
                    let r = match at {
                        Some(t) => {
                            past = r.at_time(t);
                            &past
                        }
                        None => r,
                    };
                    let v = r.viewer(&me, at.unwrap_or(now));
                    if !v.has_access() {
                        return Err(ApiError::forbidden(match at {
                            Some(_) => "not authorised: no access to this record at that time",
                            None => "not authorised: no access to this record",
                        }));
                    }
                    let state = fold::current(r, &v);
                    let wanted = |c: &Category| only.is_empty() || only.contains(c);
                    let mut list = Vec::new();
                    for i in state.items.iter().filter(|i| wanted(&i.category)) {
                        seen.add(std::iter::once(i.current).chain(i.annotations.iter().copied()));
                        list.push(item_json(r, i));
                    }
                    if q.include_deleted {
                        for d in &state.deleted {
                            if r.category_of(d).is_some_and(wanted) {
                                if let Some(j) = deleted_json(r, &v, d) {
                                    seen.add([*d]);
                                    list.push(j);
                                }
                            }
                        }
                    }
                    let mut detail = format!("entries (API): {} items", list.len());
                    if !only.is_empty() {
                        let names: Vec<&str> = only.iter().map(Category::name).collect();
                        detail.push_str(&format!(" in {}", names.join(",")));
                    }
                    if let Some(t) = at {
                        detail.push_str(&format!(" as at {}", format_time(t)));
                    }
                    seen.detail(detail);
                    Ok(Value::Array(list))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewEntry {
    category: String,
    body: Value,
}

async fn add_entry(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<NewEntry>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let category = parse_category(&input.category)?;
    let body = schema::body_from_json(&category, &input.body)
        .map_err(|e| ApiError::unprocessable(format!("{category}: {e}")))?;
    let summary = schema::summary(&category, &body);
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            Ok(st
                .session()
                .write(&record, Payload::Create { category, body }, st.now())?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({
        "id": id,
        "record": record,
        "category": input.category.trim(),
        "summary": summary,
    })))
}

/// The item an entry id (any version) belongs to, current or deleted, as `me` sees it now.
fn item_of(r: &Record, me: &ActorId, now: Timestamp, id: &EntryId) -> Result<Value, ApiError> {
    let v = viewer(r, me, now)?;
    visible(r, &v, id)?;
    let h = fold::history(r, &v, id).ok_or_else(|| {
        let kind = r.get(id).map_or("entry", |e| e.entry().payload.kind());
        ApiError::not_found(format!(
            "{id} is a {kind} entry, not record data (create, amend, delete, annotate)"
        ))
    })?;
    let state = fold::current(r, &v);
    if let Some(i) = state.items.iter().find(|i| i.id == h.item) {
        return Ok(item_json(r, i));
    }
    deleted_json(r, &v, &h.item)
        .ok_or_else(|| ApiError::not_found(format!("no item {} that you can see", h.item)))
}

async fn get_entry(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let entry = parse_entry(&eid)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let out = item_of(r, &me, now, &entry)?;
                    if let Some(c) = out["current"].as_str().and_then(|s| s.parse().ok()) {
                        seen.add([c]);
                    }
                    seen.detail(format!("entry (API): {}", entry.short()));
                    Ok(out)
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

async fn entry_history(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let entry = parse_entry(&eid)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    visible(r, &v, &entry)?;
                    let h = fold::history(r, &v, &entry).ok_or_else(|| {
                        ApiError::not_found(format!(
                            "{entry} is not record data: it has no history"
                        ))
                    })?;
                    let list: Vec<Value> = h
                        .versions
                        .iter()
                        .map(|x| {
                            let p = &x.provenance;
                            let author = match &p.profile {
                                Some(pr) => person_of(&p.author, Some(pr)),
                                None => person(r, &p.author, None),
                            };
                            let mut o = json!({
                                "id": x.id,
                                "kind": x.kind,
                                "target": x.target,
                                "author": author,
                                "device": p.device,
                                "time": format_time(p.time),
                                "grant": p.grant,
                                "in_effect": x.in_effect,
                                "current": x.current,
                            });
                            let content = x.content.to_json();
                            match x.kind {
                                "create" | "amend" => {
                                    o["summary"] = json!(schema::summary(&h.category, &x.content));
                                    o["body"] = content;
                                }
                                "delete" => o["reason"] = content,
                                "annotate" => o["text"] = content,
                                _ => {}
                            }
                            o
                        })
                        .collect();
                    seen.add(h.versions.iter().map(|x| x.id));
                    seen.detail(format!("history of {} (API)", h.item.short()));
                    Ok::<_, ApiError>(Value::Array(list))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmendInput {
    body: Value,
}

/// The current item (not deleted) an entry id belongs to: (version in effect, category,
/// body).
fn current_of(
    r: &Record,
    me: &ActorId,
    now: Timestamp,
    id: &EntryId,
) -> Result<(EntryId, EntryId, Category, cophr_protocol::Value), ApiError> {
    let v = viewer(r, me, now)?;
    visible(r, &v, id)?;
    let h = fold::history(r, &v, id)
        .ok_or_else(|| ApiError::not_found(format!("{id} is not record data")))?;
    let state = fold::current(r, &v);
    let i = state
        .items
        .into_iter()
        .find(|i| i.id == h.item)
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "{} has been deleted; its history is kept",
                h.item.short()
            ))
        })?;
    Ok((i.id, i.current, i.category, i.body))
}

async fn amend_entry(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    JsonBody(input): JsonBody<AmendInput>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let entry = parse_entry(&eid)?;
    let (id, item) = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            let (item, current, category, old) = st
                .store()
                .with_record(&record, |r| current_of(r, &me, now, &entry))??;
            let body = schema::body_from_json(&category, &input.body)
                .map_err(|e| ApiError::unprocessable(format!("{category}: {e}")))?;
            if body == old {
                return Err(ApiError::invalid(
                    "nothing to change: the new version would equal the current one",
                ));
            }
            let id = st.session().write(
                &record,
                Payload::Amend {
                    target: current,
                    body,
                },
                now,
            )?;
            Ok((id, item))
        })
        .await?;
    st.changed(record).await;
    Ok(Json(json!({ "id": id, "item": item })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonInput {
    reason: Option<String>,
}

async fn delete_entry(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    OptionalJsonBody(input): OptionalJsonBody<ReasonInput>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let entry = parse_entry(&eid)?;
    let reason = input
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "deleted (no reason given)".to_owned());
    let (id, item) = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            let (item, current, _, _) = st
                .store()
                .with_record(&record, |r| current_of(r, &me, now, &entry))??;
            let id = st.session().write(
                &record,
                Payload::Delete {
                    target: current,
                    reason,
                },
                now,
            )?;
            Ok((id, item))
        })
        .await?;
    st.changed(record).await;
    Ok(Json(json!({ "id": id, "item": item })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnnotateInput {
    text: String,
}

async fn annotate(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    JsonBody(input): JsonBody<AnnotateInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let target = parse_entry(&eid)?;
    let text = input.text.trim().to_owned();
    if text.is_empty() {
        return Err(ApiError::unprocessable("the annotation's text is empty"));
    }
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.store().with_record(&record, |r| {
                let v = viewer(r, &me, now)?;
                visible(r, &v, &target)
            })??;
            Ok(st
                .session()
                .write(&record, Payload::Annotate { target, text }, now)?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({ "id": id })))
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

fn limit(q: &LimitQuery) -> Result<usize, ApiError> {
    match q.limit {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::invalid("limit must be at least 1")),
        Some(n) => Ok(n.min(MAX_LIMIT)),
    }
}

async fn timeline(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    QueryParams(q): QueryParams<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let n = limit(&q)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    let state = fold::current(r, &v);
                    let mut items: Vec<&Item> = state.items.iter().collect();
                    items.sort_by_key(|i| std::cmp::Reverse((i.updated, i.current)));
                    items.truncate(n);
                    seen.add(items.iter().map(|i| i.current));
                    seen.detail(format!("timeline (API): {} items", items.len()));
                    let list: Vec<Value> = items.into_iter().map(|i| item_json(r, i)).collect();
                    Ok::<_, ApiError>(Value::Array(list))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

async fn list_grants(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    let mut grants: Vec<&GrantInfo> =
                        r.grants().filter(|g| r.can_see(&v, &g.id)).collect();
                    grants.sort_by_key(|g| (g.time, g.id));
                    seen.add(grants.iter().map(|g| g.id));
                    seen.detail(format!("grants (API): {}", grants.len()));
                    let list: Vec<Value> = grants.iter().map(|g| grant_json(r, g, now)).collect();
                    Ok::<_, ApiError>(Value::Array(list))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantInput {
    grantee: String,
    categories: Value,
    level: String,
    from: Option<String>,
    expires: Option<String>,
    #[serde(default)]
    delegate: bool,
    #[serde(default)]
    audit: bool,
    label: Option<String>,
}

fn scope_of(v: &Value) -> Result<Scope, ApiError> {
    let bad =
        || ApiError::invalid("categories must be \"all\" or a non-empty list of category names");
    match v {
        Value::String(s) if s.trim().eq_ignore_ascii_case("all") => Ok(Scope::All),
        Value::Array(list) => {
            let set: BTreeSet<Category> = list
                .iter()
                .map(|c| c.as_str().ok_or_else(bad).and_then(parse_category))
                .collect::<Result<_, _>>()?;
            if set.is_empty() {
                return Err(bad());
            }
            Ok(Scope::Only(set))
        }
        _ => Err(bad()),
    }
}

async fn add_grant(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<GrantInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let grantee: ActorId =
        input.grantee.trim().parse().map_err(|e| {
            ApiError::invalid(format!("`{}` is not an actor id: {e}", input.grantee))
        })?;
    let scope = scope_of(&input.categories)?;
    let level: Level = input.level.trim().parse().map_err(|_| {
        ApiError::invalid(format!(
            "`{}` is not a level: view, annotate, write or delete",
            input.level
        ))
    })?;
    let not_before = input
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?;
    let until = input
        .expires
        .as_deref()
        .map(|t| parse_time("expires", t))
        .transpose()?;
    if let (Some(a), Some(b)) = (not_before, until) {
        if a > b {
            return Err(ApiError::invalid("from is after expires"));
        }
    }
    if grantee == st.actor() {
        return Err(ApiError::invalid("you cannot grant access to yourself"));
    }
    let grant = Grant {
        grantee,
        level,
        scope,
        not_before,
        until,
        audit: input.audit,
        delegate: input.delegate,
        label: input
            .label
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty()),
    };
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            Ok(st
                .session()
                .write(&record, Payload::Grant(grant), st.now())?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({ "id": id })))
}

async fn revoke(
    State(st): State<AppState>,
    Path((rid, gid)): Path<(String, String)>,
    OptionalJsonBody(input): OptionalJsonBody<ReasonInput>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let grant = parse_entry(&gid)?;
    let reason = input
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "revoked (no reason given)".to_owned());
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.store().with_record(&record, |r| {
                let v = viewer(r, &me, now)?;
                visible(r, &v, &grant)?;
                if r.grant(&grant).is_none() {
                    return Err(ApiError::not_found(format!("{grant} is not a grant")));
                }
                Ok(())
            })??;
            Ok(st.session().write(
                &record,
                Payload::Revoke {
                    grant,
                    category: None,
                    reason,
                },
                now,
            )?)
        })
        .await?;
    st.changed(record).await;
    Ok(Json(json!({ "id": id })))
}

/// The audit trail's query parameters (see [`cophr_protocol::audit::AuditQuery`]).
#[derive(Debug, Deserialize)]
struct AuditParams {
    /// Actor ids, comma-separated.
    actor: Option<String>,
    /// Action names, comma-separated.
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    /// `hide-reads` (default), `include` or `only`.
    own: Option<String>,
    /// Group runs of sync reads (default true).
    group: Option<bool>,
    page: Option<usize>,
    limit: Option<usize>,
}

fn audit_query(me: ActorId, p: &AuditParams) -> Result<AuditQuery, ApiError> {
    let list = |s: &Option<String>| -> Vec<String> {
        s.as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut q = AuditQuery::new(me);
    q.actors = list(&p.actor)
        .iter()
        .map(|a| {
            a.parse::<ActorId>()
                .map_err(|e| ApiError::invalid(format!("actor `{a}` is not an actor id: {e}")))
        })
        .collect::<Result<_, _>>()?;
    q.actions = list(&p.action)
        .iter()
        .map(|a| {
            Action::from_name(a).ok_or_else(|| {
                let names: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                ApiError::invalid(format!("action `{a}` is not one of {}", names.join(", ")))
            })
        })
        .collect::<Result<_, _>>()?;
    q.since = p
        .since
        .as_deref()
        .map(|t| parse_time_or_day("since", t, true))
        .transpose()?;
    q.until = p
        .until
        .as_deref()
        .map(|t| parse_time_or_day("until", t, false))
        .transpose()?;
    if let (Some(a), Some(b)) = (q.since, q.until) {
        if a > b {
            return Err(ApiError::invalid("since is after until"));
        }
    }
    q.own = match p.own.as_deref().map(str::trim) {
        None | Some("hide-reads") => Own::HideReads,
        Some("include") => Own::Include,
        Some("only") => Own::Only,
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "own `{other}` is not one of hide-reads, include, only"
            )))
        }
    };
    q.group_sync = p.group.unwrap_or(true);
    q.page = match p.page {
        Some(0) => return Err(ApiError::invalid("page must be at least 1")),
        Some(n) => n,
        None => 1,
    };
    q.limit = limit(&LimitQuery { limit: p.limit })?;
    Ok(q)
}

fn audit_row_json(r: &Record, row: &AuditRow<'_>) -> Value {
    match row {
        AuditRow::Event(a) => {
            let mut j = audit_json(r, a);
            j["kind"] = json!("event");
            j
        }
        AuditRow::Sync(run) => {
            let first = audit_json(r, run.first);
            let l = &run.last.event;
            json!({
                "kind": "sync",
                "time": format_time(l.time),
                "first": first["time"],
                "last": format_time(l.time),
                "count": run.count,
                "entries_served": run.entries,
                "actor": first["actor"],
                "action": l.action.name(),
                "detail": l.detail,
                "node": l.node,
                "device": l.device,
            })
        }
    }
}

async fn audit_trail(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    QueryParams(p): QueryParams<AuditParams>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let q = audit_query(st.actor(), &p)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                let events = rd.audit_events(&record)?;
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    if !v.may_audit() {
                        return Err(ApiError::forbidden(
                            "not authorised: your grant does not include the audit right, so \
                             you may not read this record's audit trail",
                        ));
                    }
                    let page = audit::query(&events, &q);
                    seen.audit_trail();
                    seen.detail(format!(
                        "{} of {} events (API)",
                        page.matched, page.events
                    ));
                    Ok(json!({
                        "record": record,
                        "rows": page.rows.iter().map(|row| audit_row_json(r, row)).collect::<Vec<_>>(),
                        "page": page.page,
                        "limit": page.limit,
                        "pages": page.pages(),
                        "total": page.total_rows,
                        "matched": page.matched,
                        "events": page.events,
                    }))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

async fn export(State(st): State<AppState>, Path(rid): Path<String>) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let bytes = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.store()
                .with_record(&record, |r| viewer(r, &me, now).map(drop))??;
            Ok(st
                .store()
                .export(&record, st.keypair(), now, st.device().map(str::to_owned))?)
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{record}.cophr\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
