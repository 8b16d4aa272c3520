//! The openEHR REST API (ITS-REST 1.0.3) under `/openehr/v1` (and `/rest/openehr/v1`, where
//! clients built for EHRbase-style servers look), acting as the node's identity with the
//! REST API's bearer token, over the mapping in [`cophr_protocol::openehr`].
//!
//! - `GET ehr/{ehr_id}`, `GET ehr?subject_id={record id}&subject_namespace=cophr`: the
//!   record as an EHR (one per record; `ehr_id` derived from the record id);
//!   `GET ehr/{ehr_id}/ehr_status`.
//! - `POST ehr/{ehr_id}/composition`: a composition of a core template creates an item
//!   (a create entry through the session's write path: the record's grants decide).
//! - `GET ehr/{ehr_id}/composition/{uid}`: a version uid (`{uuid}::cophr::{n}`) gives that
//!   version; an object id gives the latest (204 when the item is deleted).
//! - `PUT ehr/{ehr_id}/composition/{versioned_object_uid}` with `If-Match:
//!   {preceding_version_uid}`: amends the item (412 when the version given is not the
//!   latest, with the latest's uid in `ETag`).
//! - `DELETE ehr/{ehr_id}/composition/{preceding_version_uid}`: the logical delete (409
//!   when the version given is not the latest; an object id deletes the latest).
//! - `GET definition/template/adl1.4`: the core templates, and the generic template of
//!   each extension schema in effect in the records the identity sees
//!   ([`openehr::ext`]); `GET definition/template/adl1.4/{id}` a template's web template.
//! - `POST definition/template/adl1.4` (`template.rs`): an OPT (or web template) defines
//!   an extension category whose entries are compositions of that template, or its next
//!   version, as the identity, through the gate.
//! - `POST|GET query/aql` ([`aql`]): a subset of AQL over the latest versions of the
//!   compositions the identity sees; only the rows returned are audited. Stored queries
//!   ([`query`]): `PUT|GET definition/query/{name}/{version}`, `GET|POST query/{name}`.
//! - `POST ehr`, `PUT ehr/{ehr_id}`, `PUT ehr/{ehr_id}/ehr_status` and
//!   `versioned_ehr_status` ([`ehr`]): no EHR is created over openEHR (409 for one that
//!   exists), and the EHR_STATUS, derived from the record, has one version.
//!
//! Every read is audited like the REST API's reads; an EHR or composition the identity
//! may not see is 404, never told apart from one that does not exist. Errors are JSON
//! `{"code", "message"}` (plus `"path"` for a composition refused at an element): 400 bad
//! input, 403 refused by the record's grants, 404 unknown, 409 conflict, 412 stale
//! `If-Match`, 413 too large, 415 not JSON.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cophr_protocol::fold::{self, Viewer};
use cophr_protocol::openehr::{self, Composer, Meta, OpenEhrError};
use cophr_protocol::record::Record;
use cophr_protocol::schema::ExtensionSchema;
use cophr_protocol::{Category, EntryId, Payload, RecordId, Timestamp, Value};
use serde_json::{json, Value as JsonValue};

use super::api::format_time;
use super::{ApiError, AppState};
use crate::session::{Cancelled, SessionError};
use crate::store::StoreError;

pub mod aql;
pub mod ehr;
pub mod query;
mod template;
pub mod versions;

/// Where the openEHR API is served.
pub const BASE: &str = "/openehr/v1";

/// The FLAT (simSDT) media type (ITS-REST 1.1).
pub const FLAT_MEDIA_TYPE: &str = "application/openehr.wt.flat+json";

/// The STRUCTURED media type (ITS-REST 1.1).
pub const STRUCTURED_MEDIA_TYPE: &str = "application/openehr.wt.structured+json";

/// The format a composition is read or written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Canonical JSON.
    Canonical,
    /// FLAT (simSDT).
    Flat,
    /// STRUCTURED ([`openehr::structured`]).
    Structured,
}

/// The format a request asks for: `?format=FLAT|STRUCTURED`, or the FLAT or STRUCTURED
/// media type in `header` (`Accept` for what it reads, `Content-Type` for what it sends).
fn format_of(uri: &axum::http::Uri, headers: &HeaderMap, name: header::HeaderName) -> Format {
    let by_query = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.to_ascii_lowercase());
    let media = headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if by_query.as_deref() == Some("flat") || media.contains("openehr.wt.flat+json") {
        Format::Flat
    } else if by_query.as_deref() == Some("structured")
        || media.contains("openehr.wt.structured+json")
    {
        Format::Structured
    } else {
        Format::Canonical
    }
}

/// The template a FLAT composition is of: the `openehr-template-id` header, or the
/// `templateId` (or `template_id`) query parameter.
fn flat_template(uri: &axum::http::Uri, headers: &HeaderMap) -> Option<String> {
    headers
        .get("openehr-template-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .find(|(k, _)| k == "templateId" || k == "template_id")
                .map(|(_, v)| v.into_owned())
        })
}

/// When cophr's core templates were published (their `created_timestamp`).
pub const TEMPLATES_CREATED: &str = "2026-12-06T00:00:00Z";

/// The same API where openEHR clients built for EHRbase-style servers look for it
/// (`{server}/rest/openehr/v1`).
pub const REST_BASE: &str = "/rest/openehr/v1";

/// The openEHR routes, under [`BASE`] and [`REST_BASE`].
pub fn routes() -> Router<AppState> {
    routes_at(BASE).merge(routes_at(REST_BASE))
}

fn routes_at(base: &str) -> Router<AppState> {
    Router::new()
        .route(
            &format!("{base}/ehr"),
            get(ehr_by_subject).post(ehr::post_ehr),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}"),
            get(get_ehr).put(ehr::put_ehr),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/ehr_status"),
            get(get_status).put(ehr::put_status),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/versioned_ehr_status"),
            get(ehr::versioned),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/versioned_ehr_status/revision_history"),
            get(ehr::history),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/versioned_ehr_status/version"),
            get(ehr::version_at),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/versioned_ehr_status/version/{{uid}}"),
            get(ehr::version_by_uid),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/ehr_status/{{uid}}"),
            get(get_status_version),
        )
        .route(&format!("{base}/ehr/{{ehr_id}}/composition"), post(create))
        .route(
            &format!("{base}/ehr/{{ehr_id}}/composition/{{uid}}"),
            get(read).put(update).delete(remove),
        )
        .route(
            &format!("{base}/definition/template/adl1.4"),
            get(templates).post(template::upload),
        )
        .route(
            &format!("{base}/definition/template/adl1.4/{{template_id}}"),
            get(web_template),
        )
        .route(
            &format!("{base}/query/aql"),
            post(aql::query).get(aql::query_get),
        )
        .route(&format!("{base}/definition/query"), get(query::list_all))
        .route(
            &format!("{base}/definition/query/{{qualified_query_name}}"),
            get(query::list),
        )
        .route(
            &format!("{base}/definition/query/{{qualified_query_name}}/{{version}}"),
            get(query::show).put(query::store_query),
        )
        .route(
            &format!("{base}/query/{{qualified_query_name}}"),
            get(query::get_latest).post(query::post_latest),
        )
        .route(
            &format!("{base}/query/{{qualified_query_name}}/{{version}}"),
            get(query::get_version).post(query::post_version),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/versioned_composition/{{object}}"),
            get(versions::versioned),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/versioned_composition/{{object}}/revision_history"),
            get(versions::revision_history),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/versioned_composition/{{object}}/version"),
            get(versions::version_at),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/versioned_composition/{{object}}/version/{{uid}}"),
            get(versions::version_by_uid),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/contribution"),
            post(versions::create),
        )
        .route(
            &format!("{base}/ehr/{{ehr_id}}/contribution/{{uid}}"),
            get(versions::read),
        )
}

/// An openEHR API error: the status and `{"code", "message", "path"?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OeError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A machine-readable code.
    pub code: &'static str,
    /// What went wrong.
    pub message: String,
    /// The element refused, if any.
    pub path: Option<String>,
    /// The latest version's uid (a 412 or 409 tells it, in `ETag`).
    pub latest: Option<String>,
    /// Where the latest version is (a 412 or 409 tells it, in `Location`).
    pub location: Option<String>,
}

impl OeError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        OeError {
            status,
            code,
            message: message.into(),
            path: None,
            latest: None,
            location: None,
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        OeError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        OeError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A CONTRIBUTION refused: as [`OeError::from_mapping`], but 400 whatever the reason
    /// (ITS-REST `400_CONTRIBUTION`), 413 when too large.
    pub fn from_contribution(e: &OpenEhrError) -> Self {
        let inner = OeError::from_mapping(e);
        if inner.status == StatusCode::PAYLOAD_TOO_LARGE {
            return inner;
        }
        OeError {
            status: StatusCode::BAD_REQUEST,
            ..inner
        }
    }

    /// A composition refused by the mapping, naming the path: 400 when it cannot be read
    /// as a COMPOSITION (not JSON, not a COMPOSITION, too complex), 413 when too large, and
    /// 422 when it is one but its template is unknown or refuses it (ITS-REST
    /// `422_COMPOSITION`). In a CONTRIBUTION, every refusal is 400 (`400_CONTRIBUTION`).
    pub fn from_mapping(e: &OpenEhrError) -> Self {
        if let OpenEhrError::InVersion { index, error } = e {
            let inner = OeError::from_mapping(error);
            let status = if inner.status == StatusCode::PAYLOAD_TOO_LARGE {
                inner.status
            } else {
                StatusCode::BAD_REQUEST
            };
            return OeError {
                status,
                path: Some(format!(
                    "/versions[{index}]{}",
                    inner.path.as_deref().unwrap_or_default()
                )),
                message: e.to_string(),
                ..inner
            };
        }
        let semantic = StatusCode::UNPROCESSABLE_ENTITY;
        let (status, code) = match e {
            OpenEhrError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            OpenEhrError::WrongArchetype { .. } | OpenEhrError::DuplicateArchetype { .. } => {
                (semantic, "wrong_archetype")
            }
            OpenEhrError::UnknownTemplate { .. } => (semantic, "unknown_template"),
            OpenEhrError::MissingMandatory { .. } => (semantic, "missing_mandatory"),
            // Not a COMPOSITION (or not a FLAT object) at all: it cannot be read as one.
            OpenEhrError::WrongType { path, .. } if path == "/_type" || path == "/" => {
                (StatusCode::BAD_REQUEST, "wrong_type")
            }
            OpenEhrError::WrongType { .. } => (semantic, "wrong_type"),
            OpenEhrError::UnknownPath { .. } => (semantic, "unknown_path"),
            OpenEhrError::Schema(_) | OpenEhrError::Unmapped(_) => {
                (semantic, "invalid_composition")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_composition"),
        };
        let path = match e {
            OpenEhrError::WrongType { path, .. } | OpenEhrError::MissingMandatory { path } => {
                Some(path.clone())
            }
            OpenEhrError::UnknownPath {
                archetype, path, ..
            } => Some(format!("{archetype}{path}")),
            _ => None,
        };
        OeError {
            path,
            ..OeError::new(status, code, e.to_string())
        }
    }
}

impl From<ApiError> for OeError {
    fn from(e: ApiError) -> Self {
        OeError::new(e.status, e.code, e.message)
    }
}

impl From<StoreError> for OeError {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<SessionError> for OeError {
    fn from(e: SessionError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<Cancelled> for OeError {
    fn from(e: Cancelled) -> Self {
        SessionError::from(e).into()
    }
}

impl IntoResponse for OeError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(p) = &self.path {
            body["path"] = json!(p);
        }
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(l) = self.latest.as_deref().and_then(etag) {
            resp.headers_mut().insert(header::ETAG, l);
        }
        if let Some(l) = self
            .location
            .as_deref()
            .and_then(|l| HeaderValue::from_str(l).ok())
        {
            resp.headers_mut().insert(header::LOCATION, l);
        }
        resp
    }
}

fn etag(uid: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{uid}\"")).ok()
}

/// The record an `ehr_id` names, if the identity has any access to it (else 404).
pub(crate) fn find_ehr(st: &AppState, ehr_id: &str) -> Result<RecordId, OeError> {
    let me = st.actor();
    let now = st.now();
    let wanted = ehr_id.trim().to_ascii_lowercase();
    if openehr::is_uuid(&wanted) {
        for r in st.store().records()? {
            if openehr::ehr_id(&r) == wanted
                && st
                    .store()
                    .with_record(&r, |rec| rec.viewer(&me, now).has_access())?
            {
                return Ok(r);
            }
        }
    }
    Err(OeError::not_found(format!(
        "no EHR with id `{}` here",
        clip(ehr_id)
    )))
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

fn json_response(status: StatusCode, body: &JsonValue) -> Response {
    (status, Json(body.clone())).into_response()
}

fn created_time(r: &Record) -> String {
    format_time(r.entries().next().map_or(0, |e| e.entry().time))
}

/// Reads a record's EHR (or its status) as one audited read.
pub(super) fn ehr_read(
    st: &AppState,
    record: RecordId,
    status: bool,
) -> Result<JsonValue, OeError> {
    st.read(st.now(), |rd| {
        rd.record(&record, |r, seen| {
            seen.detail(if status {
                "openEHR EHR_STATUS"
            } else {
                "openEHR EHR"
            });
            if status {
                openehr::ehr_status_json(&record)
            } else {
                openehr::ehr_json(&record, &created_time(r))
            }
        })
        .map_err(OeError::from)
    })
}

async fn get_ehr(State(st): State<AppState>, Path(ehr_id): Path<String>) -> Response {
    let out = st
        .blocking(
            move |st| Ok(find_ehr(st, &ehr_id).and_then(|record| ehr_read(st, record, false))),
        )
        .await;
    respond(out.map_err(OeError::from).and_then(|x| x), StatusCode::OK)
}

/// `GET ehr/{ehr_id}/ehr_status`: the EHR_STATUS, with its version uid in `ETag` and its
/// URL in `Location` (ITS-REST `200_EHR_STATUS_retrieved`).
async fn get_status(State(st): State<AppState>, Path(ehr_id): Path<String>) -> Response {
    status_response(st, ehr_id, None).await
}

/// `GET ehr/{ehr_id}/ehr_status/{version_uid}`: the EHR_STATUS by its one version's uid.
async fn get_status_version(
    State(st): State<AppState>,
    Path((ehr_id, uid)): Path<(String, String)>,
) -> Response {
    status_response(st, ehr_id, Some(uid)).await
}

async fn status_response(st: AppState, ehr_id: String, uid: Option<String>) -> Response {
    let ehr = ehr_id.clone();
    let out = st
        .blocking(move |st| {
            Ok(find_ehr(st, &ehr).and_then(|record| {
                let want = openehr::ehr_status_json(&record)["uid"]["value"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if uid.is_some_and(|u| u.trim() != want) {
                    return Err(OeError::not_found("no such EHR_STATUS version here"));
                }
                ehr_read(st, record, true)
            }))
        })
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok(b) => {
            let uid = b["uid"]["value"].as_str().unwrap_or_default().to_owned();
            let mut resp = json_response(StatusCode::OK, &b);
            if let Some(t) = etag(&uid) {
                resp.headers_mut().insert(header::ETAG, t);
            }
            if let Ok(l) = HeaderValue::from_str(&format!("{BASE}/ehr/{ehr_id}/ehr_status/{uid}")) {
                resp.headers_mut().insert(header::LOCATION, l);
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

fn respond(out: Result<JsonValue, OeError>, status: StatusCode) -> Response {
    match out {
        Ok(b) => json_response(status, &b),
        Err(e) => e.into_response(),
    }
}

async fn ehr_by_subject(State(st): State<AppState>, req: Request) -> Response {
    let pairs: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let (Some(subject), Some(ns)) = (get("subject_id"), get("subject_namespace")) else {
        return OeError::bad("give subject_id and subject_namespace").into_response();
    };
    if ns != openehr::SUBJECT_NAMESPACE {
        return OeError::not_found(format!(
            "no EHR for a subject in namespace `{}` (cophr records are in `{}`)",
            clip(&ns),
            openehr::SUBJECT_NAMESPACE
        ))
        .into_response();
    }
    let out = st
        .blocking(move |st| {
            let Ok(record) = subject.trim().parse::<RecordId>() else {
                return Ok(Err(OeError::not_found(format!(
                    "no EHR for subject `{}`",
                    clip(&subject)
                ))));
            };
            Ok(find_ehr(st, &openehr::ehr_id(&record)).and_then(|r| ehr_read(st, r, false)))
        })
        .await;
    respond(out.map_err(OeError::from).and_then(|x| x), StatusCode::OK)
}

/// The extension schemas in effect in a record: the definitions its compositions map
/// with (in the administrative stream, which every reader holds).
pub(crate) fn exts_of(r: &Record) -> Vec<ExtensionSchema> {
    r.extension_schemas()
        .into_iter()
        .map(|(_, s)| s.clone())
        .collect()
}

/// Whether an item of `c` in `r` maps to a composition: a core template, or an extension
/// with a schema in effect.
fn mapped(r: &Record, c: &Category) -> bool {
    if c.is_extension() {
        r.extension_schema(c).is_some()
    } else {
        openehr::template_for(c).is_some()
    }
}

/// The extension schemas in effect in every record the identity has access to and may
/// see the definition of, with their definition's time: one audited read of the
/// definition entries (as `GET /api/v1/records/{id}/schemas`), none when there are none.
/// A template id defined in two records is taken from the first.
fn visible_exts(st: &AppState) -> Result<Vec<(ExtensionSchema, String)>, OeError> {
    let me = st.actor();
    let now = st.now();
    let mut out: Vec<(ExtensionSchema, String)> = Vec::new();
    for record in st.store().records()? {
        let any = st.store().with_record(&record, |r| {
            let v = r.viewer(&me, now);
            v.has_access() && !r.visible_schemas(&v).is_empty()
        })?;
        if !any {
            continue;
        }
        let found = st.read(now, |rd| {
            rd.record(&record, |r, seen| {
                let v = r.viewer(&me, now);
                let list = r.visible_schemas(&v);
                seen.add(list.iter().map(|(id, _)| *id));
                seen.detail(format!(
                    "openEHR templates: {} extension schemas",
                    list.len()
                ));
                list.iter()
                    .map(|(id, s)| {
                        let at = r.get(id).map_or(0, |e| e.entry().time);
                        ((*s).clone(), format_time(at))
                    })
                    .collect::<Vec<_>>()
            })
            .map_err(OeError::from)
        })?;
        for (s, at) in found {
            let id = openehr::ext::template_id(&s);
            if !out.iter().any(|(o, _)| openehr::ext::template_id(o) == id) {
                out.push((s, at));
            }
        }
    }
    Ok(out)
}

/// `GET definition/template/adl1.4/{template_id}`: a template's web template (JSON;
/// cophr serves no OPT XML).
async fn web_template(State(st): State<AppState>, Path(id): Path<String>) -> Response {
    let id = id.trim().to_owned();
    if let Some(wt) = openehr::flat::web_template(&id) {
        return json_response(StatusCode::OK, &wt);
    }
    let wanted = id.clone();
    let out = st
        .blocking(move |st| {
            let run = || -> Result<Option<JsonValue>, OeError> {
                let exts: Vec<ExtensionSchema> =
                    visible_exts(st)?.into_iter().map(|(s, _)| s).collect();
                Ok(openehr::flat::web_template_in(&exts, &wanted))
            };
            Ok(run())
        })
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok(Some(wt)) => json_response(StatusCode::OK, &wt),
        Ok(None) => OeError::not_found(format!(
            "no template `{}` here (GET /definition/template/adl1.4 lists them)",
            clip(&id)
        ))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn templates(State(st): State<AppState>) -> Response {
    let out = st
        .blocking(move |st| {
            let run = || -> Result<JsonValue, OeError> {
                let exts = visible_exts(st)?;
                Ok(openehr::template_list_in(&exts, TEMPLATES_CREATED))
            };
            Ok(run())
        })
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok(list) => json_response(StatusCode::OK, &list),
        Err(e) => e.into_response(),
    }
}

/// One item as the openEHR API finds it.
#[derive(Debug, Clone)]
pub struct Found {
    /// The item (its root create).
    pub item: EntryId,
    /// Its category.
    pub category: Category,
    /// Its data versions in effect, oldest first: (entry, author, time, body).
    pub versions: Vec<fold::Version>,
    /// The version in effect now (1-based), `None` when deleted.
    pub current: Option<usize>,
    /// When the item was created.
    pub created: Timestamp,
    /// The logical delete in effect, if deleted: one more version, with no data.
    pub deleted: Option<fold::Version>,
}

impl Found {
    /// How many versions it has: its creates and amends in effect, and its delete.
    pub fn count(&self) -> usize {
        self.versions.len() + usize::from(self.deleted.is_some())
    }

    /// The latest version's uid (the delete's, once deleted).
    pub fn latest_uid(&self) -> String {
        openehr::version_uid(&self.item, self.current.unwrap_or(self.count()))
    }

    /// Version `n` (1-based) as a canonical composition.
    pub fn composition(&self, r: &Record, n: usize) -> Option<JsonValue> {
        self.composition_as(r, n, Format::Canonical)
    }

    /// Version `n` (1-based) as a composition in format `fmt`.
    pub fn composition_as(&self, r: &Record, n: usize, fmt: Format) -> Option<JsonValue> {
        let v = self.versions.get(n.checked_sub(1)?)?;
        let author = v.provenance.author;
        let meta = Meta {
            uid: Some(openehr::version_uid(&self.item, n)),
            start_time: format_time(self.created),
            composer: Composer {
                name: r
                    .profile(&author, Some(v.provenance.time))
                    .map(|p| p.name.clone()),
                actor: author.to_string(),
            },
        };
        let exts = if self.category.is_extension() {
            exts_of(r)
        } else {
            Vec::new()
        };
        match fmt {
            Format::Flat => openehr::flat::to_flat_in(&exts, &self.category, &v.content, &meta),
            Format::Structured => {
                openehr::structured::to_structured_in(&exts, &self.category, &v.content, &meta)
            }
            Format::Canonical => {
                openehr::to_composition_in(&exts, &self.category, &v.content, &meta)
            }
        }
        .ok()
    }
}

/// One item as the openEHR API finds it, if its category has a template.
fn found(r: &Record, v: &Viewer, state: &fold::State, id: &EntryId) -> Option<Found> {
    let h = fold::history_with(r, v, state, id)?;
    if !mapped(r, &h.category) {
        return None;
    }
    let deleted = h
        .versions
        .iter()
        .rfind(|x| x.kind == "delete" && x.in_effect && !x.locked)
        .cloned();
    let versions: Vec<fold::Version> = h
        .versions
        .into_iter()
        .filter(|x| matches!(x.kind, "create" | "amend") && x.in_effect && !x.locked)
        .collect();
    let current = state
        .items
        .iter()
        .find(|i| i.id == *id)
        .and_then(|i| versions.iter().position(|x| x.id == i.current))
        .map(|p| p + 1);
    let created = versions.first().map_or(0, |x| x.provenance.time);
    Some(Found {
        item: h.item,
        category: h.category,
        versions,
        deleted: deleted.filter(|_| current.is_none()),
        current,
        created,
    })
}

/// The items of a record the viewer sees whose category has a template (current and
/// deleted).
pub fn items(r: &Record, v: &Viewer) -> Vec<Found> {
    let state = fold::current(r, v);
    state
        .items
        .iter()
        .filter(|i| mapped(r, &i.category))
        .map(|i| i.id)
        .chain(state.deleted.iter().copied())
        .filter_map(|id| found(r, v, &state, &id))
        .collect()
}

/// The item whose composition's object id is `object`, as the viewer sees it.
pub(crate) fn find_item(r: &Record, v: &Viewer, object: &str) -> Option<Found> {
    let state = fold::current(r, v);
    let id = state
        .items
        .iter()
        .map(|i| i.id)
        .chain(state.deleted.iter().copied())
        .find(|id| openehr::item_uuid(id) == object)?;
    found(r, v, &state, &id)
}

fn parse_uid(s: &str) -> Result<openehr::Uid, OeError> {
    openehr::parse_uid(s.trim()).ok_or_else(|| {
        OeError::not_found(format!(
            "no composition `{}` here (ids are {{uuid}} or {{uuid}}::{}::{{version}})",
            clip(s),
            openehr::SYSTEM_ID
        ))
    })
}

fn no_composition(uid: &str) -> OeError {
    OeError::not_found(format!("no composition `{}` in this EHR", clip(uid)))
}

fn location(ehr_id: &str, uid: &str) -> String {
    format!("{BASE}/ehr/{ehr_id}/composition/{uid}")
}

/// A composition response with its `ETag` (the version uid) and `Location`.
fn composition_response(
    status: StatusCode,
    ehr_id: &str,
    uid: &str,
    body: Option<&JsonValue>,
    fmt: Format,
) -> Response {
    let mut resp = match body {
        Some(b) => (status, Json(b.clone())).into_response(),
        None => status.into_response(),
    };
    let media = match fmt {
        Format::Flat => Some(FLAT_MEDIA_TYPE),
        Format::Structured => Some(STRUCTURED_MEDIA_TYPE),
        Format::Canonical => None,
    };
    if let (Some(m), Some(_)) = (media, body) {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(m));
    }
    if let Some(t) = etag(uid) {
        resp.headers_mut().insert(header::ETAG, t);
    }
    if let Ok(l) = HeaderValue::from_str(&location(ehr_id, uid)) {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    resp
}

enum ReadOut {
    Composition(String, JsonValue),
    Deleted(String),
}

async fn read(
    State(st): State<AppState>,
    Path((ehr_id, uid)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let flat = format_of(&uri, &headers, header::ACCEPT);
    // `?version_at_time=`: the version in effect then (with an object id).
    let at = match form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "version_at_time")
        .map(|(_, v)| super::api::parse_time("version_at_time", &v))
    {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return OeError::from(e).into_response(),
    };
    let ehr = ehr_id.clone();
    let out = st
        .blocking(move |st| {
            let run = || -> Result<ReadOut, OeError> {
                let record = find_ehr(st, &ehr)?;
                let want = parse_uid(&uid)?;
                let me = st.actor();
                let now = st.now();
                st.read(now, |rd| {
                    rd.record(&record, |r, seen| {
                        let v = r.viewer(&me, now);
                        let f =
                            find_item(r, &v, &want.object).ok_or_else(|| no_composition(&uid))?;
                        let n = match (want.version, at) {
                            (Some(n), _) => n,
                            (None, Some(t)) => (1..=f.count())
                                .rev()
                                .find(|n| versions::version_meta(&f, *n).is_some_and(|m| m.2 <= t))
                                .ok_or_else(|| {
                                    OeError::not_found(format!(
                                        "composition `{}` has no version at that time",
                                        clip(&uid)
                                    ))
                                })?,
                            (None, None) => match f.current {
                                Some(n) => n,
                                None => {
                                    seen.add([f.item]);
                                    seen.detail("openEHR composition (deleted)");
                                    return Ok(ReadOut::Deleted(f.latest_uid()));
                                }
                            },
                        };
                        if f.deleted.is_some() && n == f.count() {
                            // The delete: a version with no data.
                            seen.add([f.item]);
                            seen.detail("openEHR composition (deleted)");
                            return Ok(ReadOut::Deleted(f.latest_uid()));
                        }
                        let c = f
                            .composition_as(r, n, flat)
                            .ok_or_else(|| no_composition(&uid))?;
                        let entry = f.versions[n - 1].id;
                        seen.add([f.item, entry]);
                        seen.detail(format!("openEHR composition {}", f.category.name()));
                        Ok(ReadOut::Composition(openehr::version_uid(&f.item, n), c))
                    })?
                })
            };
            Ok(run())
        })
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok(ReadOut::Composition(uid, c)) => {
            composition_response(StatusCode::OK, &ehr_id, &uid, Some(&c), flat)
        }
        Ok(ReadOut::Deleted(uid)) => composition_response(
            StatusCode::NO_CONTENT,
            &ehr_id,
            &uid,
            None,
            Format::Canonical,
        ),
        Err(e) => e.into_response(),
    }
}

/// A composition as a request sent it, parsed but not yet read (its template may be an
/// extension's, known only once the record is).
struct Incoming {
    c: JsonValue,
    /// The FLAT or STRUCTURED template, when sent as FLAT or STRUCTURED.
    flat_template: Option<String>,
    /// Sent as STRUCTURED.
    structured: bool,
}

impl Incoming {
    /// Reads it as a category and body, with the record's extension schemas.
    fn read(&self, st: &AppState, record: &RecordId) -> Result<(Category, Value), OeError> {
        let exts = st.store().with_record(record, exts_of)?;
        match &self.flat_template {
            Some(t) if self.structured => {
                openehr::structured::from_structured_in(&exts, t.trim(), &self.c)
            }
            Some(t) => openehr::flat::from_flat_in(&exts, t.trim(), &self.c),
            None => openehr::from_composition_in(&exts, &self.c),
        }
        .map_err(|e| OeError::from_mapping(&e))
    }
}

/// Whether a request's `Content-Type` is JSON (`application/json` or any `+json` type).
pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        })
}

/// The composition in a request's body (JSON, at most
/// [`openehr::MAX_COMPOSITION_BYTES`]), parsed.
async fn composition_in(req: Request) -> Result<(HeaderMap, Incoming, Format), OeError> {
    let (parts, body) = req.into_parts();
    let flat_in = format_of(&parts.uri, &parts.headers, header::CONTENT_TYPE);
    let flat_out = format_of(&parts.uri, &parts.headers, header::ACCEPT);
    if !is_json(&parts.headers) {
        return Err(OeError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the composition as canonical JSON (Content-Type: application/json)",
        ));
    }
    let bytes: Bytes = axum::body::to_bytes(body, openehr::MAX_COMPOSITION_BYTES + 1)
        .await
        .map_err(|_| {
            OeError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the composition is more than {} bytes, the most accepted",
                    openehr::MAX_COMPOSITION_BYTES
                ),
            )
        })?;
    let c = openehr::parse(&bytes).map_err(|e| OeError::from_mapping(&e))?;
    let flat_template = if flat_in == Format::Canonical {
        None
    } else {
        let Some(t) = flat_template(&parts.uri, &parts.headers) else {
            return Err(OeError::bad(
                "a FLAT or STRUCTURED composition needs its template: the openehr-template-id header or templateId",
            ));
        };
        Some(t)
    };
    let structured = flat_in == Format::Structured;
    Ok((
        parts.headers,
        Incoming {
            c,
            flat_template,
            structured,
        },
        flat_out,
    ))
}

fn wants_representation(h: &HeaderMap) -> bool {
    h.get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("return=representation"))
}

async fn create(State(st): State<AppState>, Path(ehr_id): Path<String>, req: Request) -> Response {
    let (headers, incoming, flat) = match composition_in(req).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let full = wants_representation(&headers);
    let ehr = ehr_id.clone();
    let out = st
        .blocking(move |st| {
            let run = || -> Result<(RecordId, String, Option<JsonValue>), OeError> {
                let record = find_ehr(st, &ehr)?;
                let (category, body) = incoming.read(st, &record)?;
                let now = st.now();
                let id = st
                    .session()
                    .write(&record, Payload::Create { category, body }, now)?;
                let uid = openehr::version_uid(&id, 1);
                let shown = if full {
                    shown_version(st, &record, &id, 1, flat)?
                } else {
                    None
                };
                Ok((record, uid, shown))
            };
            Ok(run())
        })
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok((record, uid, shown)) => {
            st.changed(record).await;
            composition_response(StatusCode::CREATED, &ehr_id, &uid, shown.as_ref(), flat)
        }
        Err(e) => e.into_response(),
    }
}

/// Version `n` of an item just written, as a composition (an audited read).
fn shown_version(
    st: &AppState,
    record: &RecordId,
    item: &EntryId,
    n: usize,
    flat: Format,
) -> Result<Option<JsonValue>, OeError> {
    let me = st.actor();
    let now = st.now();
    st.read(now, |rd| {
        rd.record(record, |r, seen| {
            let v = r.viewer(&me, now);
            let f = found(r, &v, &fold::current(r, &v), item);
            let c = f.as_ref().and_then(|f| f.composition_as(r, n, flat));
            if let Some(f) = &f {
                if let Some(x) = f.versions.get(n - 1) {
                    seen.add([f.item, x.id]);
                }
            }
            seen.detail("openEHR composition (as written)");
            c
        })
        .map_err(OeError::from)
    })
}

/// The latest version of the item `uid` names, for a change: (item, version in effect,
/// its uid, category, body).
fn latest_of(
    st: &AppState,
    record: &RecordId,
    object: &str,
    uid: &str,
) -> Result<(Found, EntryId, String, Value), OeError> {
    let me = st.actor();
    let now = st.now();
    st.store()
        .with_record(record, |r| {
            let v = r.viewer(&me, now);
            let f = find_item(r, &v, object).ok_or_else(|| no_composition(uid))?;
            let Some(n) = f.current else {
                return Err(OeError::new(
                    StatusCode::CONFLICT,
                    "deleted",
                    format!("composition `{}` has been deleted", clip(uid)),
                ));
            };
            let x = &f.versions[n - 1];
            let (entry, body) = (x.id, x.content.clone());
            Ok((f.clone(), entry, openehr::version_uid(&f.item, n), body))
        })
        .map_err(OeError::from)?
}

async fn update(
    State(st): State<AppState>,
    Path((ehr_id, uid)): Path<(String, String)>,
    req: Request,
) -> Response {
    let if_match = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_owned()
        })
        .filter(|v| !v.is_empty());
    let Some(preceding) = if_match else {
        return OeError::bad("PUT needs If-Match: {preceding_version_uid}").into_response();
    };
    let (headers, incoming, flat) = match composition_in(req).await {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let full = wants_representation(&headers);
    let ehr = ehr_id.clone();
    let out = st
        .blocking(move |st| {
            let run = || -> Result<(RecordId, String, Option<JsonValue>), OeError> {
                let record = find_ehr(st, &ehr)?;
                let (category, body) = incoming.read(st, &record)?;
                let want = parse_uid(&uid)?;
                let (f, current, latest, old) = latest_of(st, &record, &want.object, &uid)?;
                if preceding != latest {
                    return Err(OeError {
                        latest: Some(latest.clone()),
                        location: Some(location(&ehr, &latest)),
                        ..OeError::new(
                            StatusCode::PRECONDITION_FAILED,
                            "stale_version",
                            format!(
                                "If-Match `{}` is not the latest version ({latest})",
                                clip(&preceding)
                            ),
                        )
                    });
                }
                if category != f.category {
                    return Err(OeError::bad(format!(
                        "this composition is a {} composition; the one sent is {}",
                        f.category.name(),
                        category.name()
                    )));
                }
                if body == old {
                    return Err(OeError::bad(
                        "nothing to change: the new version would equal the latest one",
                    ));
                }
                st.session().write(
                    &record,
                    Payload::Amend {
                        target: current,
                        body,
                    },
                    st.now(),
                )?;
                let n = f.current.unwrap_or(f.versions.len()) + 1;
                let shown = if full {
                    shown_version(st, &record, &f.item, n, flat)?
                } else {
                    None
                };
                Ok((record, openehr::version_uid(&f.item, n), shown))
            };
            Ok(run())
        })
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok((record, uid, shown)) => {
            st.changed(record).await;
            composition_response(StatusCode::OK, &ehr_id, &uid, shown.as_ref(), flat)
        }
        Err(e) => e.into_response(),
    }
}

async fn remove(
    State(st): State<AppState>,
    Path((ehr_id, uid)): Path<(String, String)>,
) -> Response {
    let ehr = ehr_id.clone();
    let out = st
        .blocking(move |st| {
            let run = || -> Result<(RecordId, String), OeError> {
                let record = find_ehr(st, &ehr_id)?;
                let want = parse_uid(&uid)?;
                // Already deleted: ITS-REST's `400_already_deleted`.
                let (f, current, latest, _) =
                    latest_of(st, &record, &want.object, &uid).map_err(|e| {
                        if e.code == "deleted" {
                            OeError {
                                status: StatusCode::BAD_REQUEST,
                                ..e
                            }
                        } else {
                            e
                        }
                    })?;
                // A version uid must be the latest; an object id (as EHRbase-style clients
                // send) deletes the latest.
                if want.version.is_some() && uid.trim() != latest {
                    return Err(OeError {
                        latest: Some(latest.clone()),
                        location: Some(location(&ehr_id, &latest)),
                        ..OeError::new(
                            StatusCode::CONFLICT,
                            "stale_version",
                            format!("`{}` is not the latest version ({latest})", clip(&uid)),
                        )
                    });
                }
                st.session().write(
                    &record,
                    Payload::Delete {
                        target: current,
                        reason: "deleted through the openEHR API".into(),
                    },
                    st.now(),
                )?;
                // The delete is the next version (ITS-REST `204_COMPOSITION_deleted`
                // gives it in ETag and Location).
                Ok((record, openehr::version_uid(&f.item, f.count() + 1)))
            };
            Ok(run())
        })
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok((record, uid)) => {
            st.changed(record).await;
            composition_response(StatusCode::NO_CONTENT, &ehr, &uid, None, Format::Canonical)
        }
        Err(e) => e.into_response(),
    }
}
