//! The REST API under `/api/v1`: JSON in and out, acting as the node's identity. Reads are
//! audited like the CLI's (`show`, `history`, `grants`, `audit`, `export`); writes go
//! through [`crate::session::Session`] (checked first, profile published, refusals
//! explained) and are announced to the network. The contract is `openapi.json`, served at
//! `/api/v1/openapi.json`.
//!
//! This file holds the routes and what the handlers share (input parsing, access checks,
//! how people and grants are shown); the handlers live by job in `api/`: `records` (list,
//! create, summary, export), `entries` (record data: read, add, amend, delete, annotate,
//! history, timeline), `grants` (list, grant, revoke), `audit` (who viewed what),
//! `invitations`, `devices` (a person's devices and the patient's guardians), `recovery`
//! (a guardian's approval, a recovery request, recovering a record onto this identity) and
//! `schemas` (extension categories' schemas defined as data), `worklist` (the clinician's
//! worklist over the records shared with the identity), `questionnaires` (publish, assign,
//! answer and list questionnaires).

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cophr_protocol::audit::SignedAudit;
use cophr_protocol::entry::Payload;
use cophr_protocol::fold::{self, Item, Viewer};
use cophr_protocol::record::{GrantInfo, Record, Status};
use cophr_protocol::trust::{SignedAttestation, TrustList};
use cophr_protocol::{
    schema, ActorId, Category, EntryId, Level, Profile, RecordId, Scope, Timestamp,
};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{ApiError, AppState, JsonBody, OptionalJsonBody};

mod audit;
mod devices;
pub(crate) mod documents;
mod threads;
pub(crate) use documents::ChannelReader;
pub use documents::DRAIN_BYTES;
mod entries;
pub mod grants;
mod invitations;
mod keys;
mod notifications;
mod orgs;
mod questionnaires;
mod records;
mod recovery;
mod schemas;
mod worklist;

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
        .route(
            "/records",
            get(records::list_records).post(records::create_record),
        )
        .route("/records/{rid}", get(records::record_summary))
        .route("/worklist", get(worklist::list))
        .route("/worklist/count", get(worklist::count))
        .route("/worklist/{rid}/looked", post(worklist::looked))
        .route(
            "/records/{rid}/entries",
            get(entries::list_entries).post(entries::add_entry),
        )
        .route(
            "/records/{rid}/entries/{eid}",
            get(entries::get_entry)
                .put(entries::amend_entry)
                .delete(entries::delete_entry),
        )
        .route(
            "/records/{rid}/entries/{eid}/history",
            get(entries::entry_history),
        )
        .route(
            "/records/{rid}/entries/{eid}/document",
            get(documents::get_document),
        )
        .route("/records/{rid}/documents", post(documents::add_document))
        .route(
            "/records/{rid}/entries/{eid}/annotations",
            post(entries::annotate),
        )
        .route(
            "/records/{rid}/entries/{eid}/release",
            post(notifications::release),
        )
        .route(
            "/records/{rid}/subscriptions",
            get(notifications::subscriptions).post(notifications::subscribe),
        )
        .route(
            "/records/{rid}/subscriptions/{subid}",
            axum::routing::delete(notifications::unsubscribe),
        )
        .route("/records/{rid}/notifications", get(notifications::list))
        .route(
            "/records/{rid}/notifications/read",
            post(notifications::mark_read),
        )
        .route(
            "/records/{rid}/notifications/stream",
            get(notifications::stream),
        )
        .route("/records/{rid}/members", get(orgs::list).post(orgs::add))
        .route("/records/{rid}/members/{actor}/remove", post(orgs::remove))
        .route("/records/{rid}/members/{actor}/proof", get(orgs::proof))
        .route(
            "/memberships",
            get(orgs::memberships).post(orgs::use_membership),
        )
        .route("/records/{rid}/timeline", get(entries::timeline))
        .route("/records/{rid}/reminders", get(entries::reminders))
        .route("/records/{rid}/threads", get(threads::list))
        .route("/records/{rid}/threads/{eid}", get(threads::show))
        .route(
            "/records/{rid}/threads/{eid}/read",
            post(threads::mark_read),
        )
        .route(
            "/records/{rid}/threads/{eid}/attachments",
            post(threads::attach),
        )
        .route("/questionnaires/built-in", get(questionnaires::built_in))
        .route(
            "/records/{rid}/questionnaires",
            get(questionnaires::list).post(questionnaires::publish),
        )
        .route(
            "/records/{rid}/questionnaires/{eid}/assign",
            post(questionnaires::assign),
        )
        .route(
            "/records/{rid}/questionnaires/{eid}/responses",
            post(questionnaires::answer),
        )
        .route(
            "/records/{rid}/grants",
            get(grants::list_grants).post(grants::add_grant),
        )
        .route("/records/{rid}/grants/{gid}/revoke", post(grants::revoke))
        .route("/records/{rid}/audit", get(audit::audit_trail))
        .route(
            "/records/{rid}/schemas",
            get(schemas::list).post(schemas::define),
        )
        .route("/records/{rid}/schemas/{category}", get(schemas::show))
        .route("/records/{rid}/export", get(records::export))
        .route(
            "/records/{rid}/export/documents",
            get(records::export_documents),
        )
        .route(
            "/records/{rid}/export/documents/{hash}",
            get(records::export_document),
        )
        .route(
            "/records/{rid}/invitations",
            get(invitations::list).post(invitations::create),
        )
        .route(
            "/records/{rid}/invitations/{iid}/confirm",
            post(invitations::confirm),
        )
        .route(
            "/records/{rid}/invitations/{iid}/decline",
            post(invitations::decline),
        )
        .route("/invitations/accept", post(invitations::accept))
        .route(
            "/records/{rid}/devices",
            get(devices::list).post(devices::add),
        )
        .route(
            "/records/{rid}/devices/{actor}/remove",
            post(devices::remove),
        )
        .route(
            "/records/{rid}/guardians",
            get(devices::guardians).put(devices::set_guardians),
        )
        .route("/records/{rid}/recovery-approvals", post(recovery::approve))
        .route("/recovery-request", get(recovery::request))
        .route("/recover", post(recovery::recover))
        .route("/key-backup", post(keys::backup))
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

/// Whether `text` has the documented form of a token: `prefix` then base64url text. One of
/// that form that decodes to nothing is answered 404 or 403 (the document can state the
/// form, not what the bytes must hold); one not of that form, 400.
fn token_form(text: &str, prefix: &str) -> Result<(), ApiError> {
    let ok = text.trim().strip_prefix(prefix).is_some_and(|b| {
        !b.is_empty()
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!("not of the form {prefix}…")))
    }
}

fn parse_record(s: &str) -> Result<RecordId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::invalid(format!("`{s}` is not a record id: {e}")))
}

fn parse_entry(s: &str) -> Result<EntryId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::invalid(format!("`{s}` is not an entry id: {e}")))
}

fn parse_actor(what: &str, s: &str) -> Result<ActorId, ApiError> {
    s.trim()
        .parse()
        .map_err(|e| ApiError::invalid(format!("{what} `{s}` is not an actor id: {e}")))
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

/// Reads `record`, held here, as the node's identity, who must have access to it (404
/// when not held, 403 without access): `f` gets the record, the identity's view of it now,
/// what the read shows (audited once `f` returns, as [`AppState::read`] does) and the time.
async fn read_as_viewer<T, F>(st: &AppState, record: RecordId, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Record, &Viewer, &mut crate::session::Seen, Timestamp) -> Result<T, ApiError>
        + Send
        + 'static,
{
    st.blocking(move |st| {
        held(st, &record)?;
        let now = st.now();
        let me = st.actor();
        st.read(now, |rd| {
            rd.record(&record, |r, seen| {
                let v = viewer(r, &me, now)?;
                f(r, &v, seen, now)
            })?
        })
    })
    .await
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

thread_local! {
    /// The trust list and time people are assessed against on this (blocking) thread, set
    /// by [`AppState::blocking`] before each request's work.
    static TRUST: std::cell::RefCell<(TrustList, Timestamp)> =
        std::cell::RefCell::new((TrustList::new(), 0));
}

/// Assess the people in the answers built next on this thread against `trust` at `now`.
pub fn assess_with(trust: TrustList, now: Timestamp) {
    TRUST.with(|t| *t.borrow_mut() = (trust, now));
}

fn person(r: &Record, actor: &ActorId, at: Option<Timestamp>) -> Value {
    let p = r.profile(actor, at).or_else(|| r.profile(actor, None));
    let mut v = person_of(actor, p);
    let attestations = r
        .latest_profile(actor)
        .map_or(&[][..], |p| p.attestations.as_slice());
    v["assurance"] = assurance(actor, attestations);
    // A member of an organisation acting in the record is named with it (what the record
    // proves, not what their profile claims).
    if let Some(m) = r.joined_member(actor) {
        let org = r.latest_profile(&m.org).map(|p| p.name.clone());
        v["member_of"] = json!({ "actor": m.org, "name": org, "role": m.role.name });
        v["organisation"] = json!(org.unwrap_or_else(|| m.org.to_string()));
    }
    v
}

/// How the node's trust list (as set for this thread) assesses `actor`'s attestations.
pub(crate) fn assess(
    actor: &ActorId,
    attestations: &[SignedAttestation],
) -> cophr_protocol::trust::Assurance {
    TRUST.with(|t| {
        let (list, now) = &*t.borrow();
        list.assess(actor, attestations, *now)
    })
}

/// `{"status": "verified", "level", "issuer", "issuer_name", "attributes", …, "shown":
/// "verified P9 by …"}` or `{"status": "self-asserted", "unaccepted": […], "shown": …}`.
fn assurance(actor: &ActorId, attestations: &[SignedAttestation]) -> Value {
    TRUST.with(|t| {
        let (list, now) = &*t.borrow();
        let a = list.assess(actor, attestations, *now);
        let mut v = serde_json::to_value(&a).unwrap_or(Value::Null);
        v["shown"] = Value::String(a.to_string());
        v
    })
}

fn person_of(actor: &ActorId, p: Option<&Profile>) -> Value {
    let attestations = p.map_or(&[][..], |p| p.attestations.as_slice());
    json!({
        "actor": actor,
        "name": p.map(|p| p.name.clone()),
        "role": p.map(|p| p.role.clone()),
        "organisation": p.and_then(|p| p.organisation.clone()),
        "assurance": assurance(actor, attestations),
    })
}

fn status_name(r: &Record, id: &EntryId) -> &'static str {
    match r.status(id) {
        Some(Status::Valid) | None => "valid",
        Some(Status::Void { .. }) => "void",
    }
}

fn annotation(r: &Record, id: &EntryId) -> Option<Value> {
    let held = r.get(id)?;
    let e = held.entry();
    let Payload::Annotate { text, .. } = &*r.payload(id)? else {
        return None;
    };
    Some(json!({
        "id": id,
        "text": text,
        "author": person(r, &e.author, Some(e.time)),
        "time": format_time(e.time),
    }))
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
        "status": r.grant_status(&g.id, now),
        "granted_by": person(r, &g.issuer, None),
        "time": format_time(g.time),
        "parent": g.parent,
        "revoked_by": g.revoked_by,
        // A grant to an organisation: its members who joined the record, as far as the
        // record knows them (removed ones included).
        "members": r
            .joined_members()
            .into_iter()
            .filter(|m| m.org == g.grant.grantee)
            .map(|m| json!({
                "member": person(r, &m.member, None),
                "role": m.role.name,
                "level": m.role.level,
                "categories": m.role.scope.to_string(),
                "label": m.label,
                "joined": m.joined,
                "removed": m.removed,
            }))
            .collect::<Vec<_>>(),
    })
}

/// A QR code of `text` as an SVG document (for links and texts people carry to each other).
fn qr_svg(text: &str) -> Result<String, ApiError> {
    super::qr_svg(text).ok_or_else(|| ApiError::internal("cannot make a QR code of this text"))
}

/// The running network node, or 503 (`what`: "invitations need", …).
fn node(st: &AppState, what: &str) -> Result<crate::net::NodeHandle, ApiError> {
    st.node().cloned().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_network",
            format!("{what} the network node (`cophr node run`)"),
        )
    })
}

/// A network failure as the API reports it: a peer's refusal 403, a setup problem 409,
/// anything else 502.
fn net_error(e: crate::net::NetError) -> ApiError {
    use crate::net::NetError;
    match e {
        NetError::Refused { reason, .. } => ApiError::forbidden(reason),
        NetError::Setup(m) => ApiError::conflict(m),
        other => ApiError::new(StatusCode::BAD_GATEWAY, "unreachable", other.to_string()),
    }
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
    Json(schema::catalogue())
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonInput {
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LimitQuery {
    limit: Option<usize>,
}

fn limit(q: &LimitQuery) -> Result<usize, ApiError> {
    match q.limit {
        None => Ok(DEFAULT_LIMIT),
        Some(0) => Err(ApiError::invalid("limit must be at least 1")),
        Some(n) if n > MAX_LIMIT => Err(ApiError::invalid(format!(
            "limit must be at most {MAX_LIMIT} (page through more)"
        ))),
        Some(n) => Ok(n),
    }
}
