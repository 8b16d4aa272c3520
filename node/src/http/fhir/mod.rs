//! The FHIR R4 API under `/fhir/r4`, acting as the node's identity, with the REST API's
//! bearer token (`metadata` is open).
//!
//! - `GET metadata`: the CapabilityStatement ([`capabilities`]: exactly what is served).
//! - `GET [type]/[id]`, `GET [type]/[id]/_history[/[vid]]`, `GET [type]/_history`,
//!   `GET _history` (every stored version of every type: `history_types`),
//!   `GET [type]?…` (search by `_id`, `patient`, `subject`, `category`, `code`, `date`; see
//!   [`search`]; pages of `_count`, default 100, with `next`/`previous` links carrying
//!   `_offset`) and `GET Patient/[id]/$everything` (paged the same way, as are both
//!   `_history` reads; only the page delivered is audited), for every type entries export as
//!   (`cophr_protocol::fhir`) and the derived Provenance (entry signatures), AuditEvent
//!   (audit events; needs the audit right) and Consent (grants). A resource's id is its
//!   item's entry id (`e-…`; the record's patient is `Patient/<record id>`); its versions
//!   are the item's amend chain. Every read is audited like the REST API's. `_id` also
//!   finds an imported resource by the id it came in with.
//! - Reads of the types items are served as (searches, reads by id, an item's versions,
//!   `$everything` up to its derived resources) go through a per-record search index
//!   ([`index`]: in memory, caught up with the record before each use), so they cost what
//!   they return; the derived types, type-level `_history`, and records too big to index
//!   fold the whole record. `$everything` lists the patient, the items by type, then the
//!   derived Consent, Practitioner, Provenance and AuditEvent resources; its `total` is
//!   given once a page reaches the derived ones (before, a full page links a next one).
//! - `POST /fhir/r4` with a `transaction` Bundle (all or nothing: one durable write, one
//!   audit event) or a `batch` Bundle (per entry), see `write.rs`; `POST [type]` creates one
//!   resource of any mapped type. A body is read in the charset it declares (`body_text`).
//! - Documents ([`binary`]): a documents item is one `DocumentReference`, or a `Media` for
//!   an image (JPEG, PNG, DICOM); a file stored apart is its attachment's `url`
//!   `Binary/<item id>`. `GET Binary/[id][/_history/[vid]]` gives the file's bytes (or a
//!   FHIR `Binary`, up to 16 MiB, to a client asking for FHIR JSON), under the item's
//!   access rules and audited as a view; `POST Binary` stores a file (raw or FHIR JSON)
//!   for a `DocumentReference` or `Media` (alone or in a Bundle, by `urn:uuid:`) to name;
//!   attachment data over `write::MAX_INLINE_DATA` (256 KiB) is stored apart the same way.
//!   `Patient/$everything` gives the DocumentReference and Media resources, not the
//!   Binaries (a Binary is in no compartment).
//!
//! Errors are OperationOutcomes: 400 invalid JSON or resource, 401 (the token check in
//! [`super::auth`]), 403 refused by the record's grants, 404 unknown id, or unknown or
//! unsupported type (`not-supported`), 405 an unsupported interaction, 410 a deleted
//! resource, 413 too large, 415 not JSON (or a charset other than UTF-8, ISO-8859-1,
//! US-ASCII), 422 a business rule, 408 (from the request time limit) timed out; nothing is
//! stored on any error.

pub mod binary;
pub mod index;
mod indexed;
pub mod resources;
pub mod search;
pub mod staff;
mod view;
mod write;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use cophr_protocol::fhir::{self, FhirError, SearchKeys};
use cophr_protocol::{Category, EntryId, RecordId, Timestamp};
use serde_json::{json, Value as Json};

use super::{ApiError, AppState};
use crate::session::{Cancelled, Reader, SessionError};
use crate::store::StoreError;
use resources::{TypeCapability, DERIVED_TYPES};
use search::Search;

/// Where the FHIR API is served.
pub const BASE: &str = "/fhir/r4";

/// The FHIR routes: everything under [`BASE`] goes through one dispatcher, so unknown
/// types, paths and methods get OperationOutcomes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(BASE, any(root))
        .route("/fhir/r4/", any(root))
        .route("/fhir/r4/{*path}", any(dispatch))
}

/// An error answered with an OperationOutcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `issue.code`.
    pub code: &'static str,
    /// The `issue.diagnostics`.
    pub message: String,
    /// The `issue.expression` (an element path), if any.
    pub expression: Option<String>,
}

impl Outcome {
    /// An outcome with a status, issue code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Outcome {
            status,
            code,
            message: message.into(),
            expression: None,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Outcome::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Outcome::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    fn method(method: &Method, what: &str) -> Self {
        Outcome::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            format!("{method} is not supported on {what} (see {BASE}/metadata)"),
        )
    }

    /// The outcome for FHIR input refused by the mapping.
    pub fn from_fhir(e: &FhirError) -> Self {
        let status = match e {
            FhirError::Line { error, .. } => return Outcome::from_fhir(error),
            FhirError::TooLarge { .. } | FhirError::TooMany { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            FhirError::Unmapped { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        Outcome {
            status,
            code: e.issue_code(),
            message: e.to_string(),
            expression: e.path().map(str::to_owned),
        }
    }

    /// The OperationOutcome resource.
    pub fn body(&self) -> Json {
        let severity = if self.status.is_server_error() {
            "fatal"
        } else {
            "error"
        };
        let mut o = resources::outcome(severity, self.code, &self.message);
        if let Some(x) = &self.expression {
            o["issue"][0]["expression"] = json!([x]);
        }
        o
    }
}

impl From<ApiError> for Outcome {
    fn from(e: ApiError) -> Self {
        let code = match e.status {
            StatusCode::UNAUTHORIZED => "login",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not-found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "too-long",
            StatusCode::UNPROCESSABLE_ENTITY => "business-rule",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "not-supported",
            s if s.is_server_error() => "exception",
            _ => "invalid",
        };
        Outcome::new(e.status, code, e.message)
    }
}

impl From<StoreError> for Outcome {
    fn from(e: StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<SessionError> for Outcome {
    fn from(e: SessionError) -> Self {
        ApiError::from(e).into()
    }
}

impl From<Cancelled> for Outcome {
    fn from(e: Cancelled) -> Self {
        SessionError::from(e).into()
    }
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        fhir_response(self.status, &self.body())
    }
}

/// A FHIR JSON response.
pub fn fhir_response(status: StatusCode, body: &Json) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    resp
}

fn resource_response(body: &Json) -> Response {
    let mut resp = fhir_response(StatusCode::OK, body);
    if let Some(v) = body["meta"]["versionId"].as_str() {
        if let Ok(h) = HeaderValue::from_str(&format!("W/\"{v}\"")) {
            resp.headers_mut().insert(header::ETAG, h);
        }
    }
    resp
}

/// Every resource type served: the types entries export as, the derived ones, the types
/// kept whole, and `Binary` (documents' files, [`binary`]).
pub fn served_types() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = vec!["Binary"];
    let from_categories = Category::BUILT_IN.iter().flat_map(fhir::types_for);
    // The types kept whole (Encounter, Organization, Medication, …: `ext:fhir/<type>`).
    let kept = fhir::R4_RESOURCE_TYPES.iter().filter(|t| fhir::is_kept(t));
    for t in fhir::MAPPED_TYPES
        .iter()
        .chain(from_categories)
        .chain(DERIVED_TYPES.iter())
        .chain(kept)
    {
        if !out.contains(t) {
            out.push(*t);
        }
    }
    out.sort_unstable();
    out
}

/// Whether `POST [type]` creates a resource of this type: every type mapped to a category.
fn creatable(ty: &str) -> bool {
    fhir::MAPPED_TYPES.contains(&ty)
}

/// The types the system `_history` lists: every served type but `Binary` (a document's
/// file is its DocumentReference's or Media's). Of the derived types only what is stored
/// as items is listed (an imported Practitioner, Provenance …): a derived resource (a
/// signature's Provenance, a grant's Consent, a profile's Practitioner, the Patient of a
/// record with no demographics item) is a view of the record, with no history of its own.
fn history_types() -> Vec<&'static str> {
    served_types()
        .into_iter()
        .filter(|t| *t != "Binary")
        .collect()
}

/// What the CapabilityStatement lists for each served type.
pub fn capabilities() -> Vec<TypeCapability> {
    served_types()
        .into_iter()
        .map(|t| {
            let mut search: Vec<(&'static str, &'static str)> = vec![("_id", "token")];
            for p in search::params_for(t) {
                let kind = match *p {
                    "date" => "date",
                    "patient" | "subject" => "reference",
                    _ => "token",
                };
                search.push((*p, kind));
            }
            if t == "Binary" {
                return TypeCapability {
                    name: t.to_owned(),
                    interactions: vec!["read", "vread", "create"],
                    search: Vec::new(),
                    operations: Vec::new(),
                };
            }
            let mut interactions = vec![
                "read",
                "vread",
                "search-type",
                "history-instance",
                "history-type",
            ];
            if creatable(t) {
                interactions.push("create");
            }
            if t == "PractitionerRole" {
                interactions.extend(["create", "update"]);
            }
            TypeCapability {
                name: t.to_owned(),
                interactions,
                search,
                operations: if t == "Patient" {
                    vec![(
                        "everything",
                        "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    )]
                } else {
                    Vec::new()
                },
            }
        })
        .collect()
}

/// Charsets a FHIR JSON body may declare besides UTF-8 (the default): ISO-8859-1 (Latin-1)
/// and US-ASCII, decoded as such.
pub const CHARSETS: &[&str] = &[
    "utf-8",
    "utf8",
    "iso-8859-1",
    "iso8859-1",
    "iso_8859-1",
    "latin1",
    "latin-1",
    "l1",
    "us-ascii",
    "ascii",
];

/// A FHIR JSON request body as UTF-8: decoded from the `charset` its `Content-Type`
/// declares (UTF-8 when none; ISO-8859-1 and US-ASCII decoded). Any other charset is
/// refused (415) rather than read as something it is not.
pub(crate) fn body_text(headers: &HeaderMap, bytes: Bytes) -> Result<Bytes, Outcome> {
    let charset = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|v| v.split(';').skip(1))
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"').to_ascii_lowercase());
    match charset.as_deref() {
        None | Some("utf-8" | "utf8") => Ok(bytes),
        Some("us-ascii" | "ascii") => {
            if let Some(i) = bytes.iter().position(|b| !b.is_ascii()) {
                return Err(Outcome::invalid(format!(
                    "the body declares charset US-ASCII but byte {i} is not ASCII"
                )));
            }
            Ok(bytes)
        }
        Some(c) if CHARSETS.contains(&c) => {
            // ISO-8859-1: each byte is the code point of the same number.
            let text: String = bytes.iter().map(|b| char::from(*b)).collect();
            Ok(Bytes::from(text.into_bytes()))
        }
        Some(other) => Err(Outcome::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            format!(
                "charset `{}` is not supported (send UTF-8, or ISO-8859-1)",
                other.chars().take(40).collect::<String>()
            ),
        )),
    }
}

/// The absolute base URL the client used (from `Host`), or the path alone.
fn base_url(headers: &HeaderMap) -> String {
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(h) if !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()) => {
            format!("http://{h}{BASE}")
        }
        _ => BASE.to_owned(),
    }
}

/// What a read needs: the request's base URL, its own URL, and its query.
#[derive(Debug, Clone)]
struct Ctx {
    base: String,
    self_link: String,
    query: Vec<(String, String)>,
}

/// Notes what a read delivers, for the audit trail: one event per record read (an
/// audit-read where the audit trail was read, else a view).
fn saw(rd: &mut Reader<'_>, record: RecordId, entries: &[EntryId], audit_read: bool) {
    let s = rd.seen(&record);
    s.add(entries.iter().copied());
    if audit_read {
        s.audit_trail();
    }
}

async fn root(State(st): State<AppState>, req: Request) -> Response {
    if req.method() != Method::POST {
        return Outcome::method(
            req.method(),
            "the FHIR base (only transaction and batch Bundles are accepted)",
        )
        .into_response();
    }
    match write::bundle(st, req).await {
        Ok(r) => r,
        Err(o) => o.into_response(),
    }
}

async fn dispatch(State(st): State<AppState>, req: Request) -> Response {
    match handle(st, req).await {
        Ok(r) => r,
        Err(o) => o.into_response(),
    }
}

/// The operations served on a GET.
#[derive(Debug, Clone)]
enum Op {
    Metadata,
    Search(String),
    TypeHistory(String),
    /// `GET _history`: every stored resource's versions, newest first.
    SystemHistory,
    Read(String, String),
    History(String, String),
    VRead(String, String, String),
    Everything(String),
    /// `GET Binary/[id][/_history/[vid]]`.
    BinaryRead(String, Option<String>),
    /// `POST Binary`.
    BinaryCreate,
    /// `POST DocumentReference` or `POST Media`.
    Create(String),
    /// `POST PractitionerRole`: a member added to the organisation this node administers.
    StaffCreate,
    /// `PUT PractitionerRole/[id]`: a member removed (`active` false).
    StaffUpdate(String),
}

fn route(method: &Method, path: &str) -> Result<Op, Outcome> {
    let segs: Vec<String> = path
        .trim_start_matches(BASE)
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("%24", "$"))
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let Some((ty, rest)) = segs.split_first() else {
        return Err(Outcome::not_found("no FHIR path given"));
    };
    if *ty == "_history" && rest.is_empty() {
        return if method == Method::GET || method == Method::HEAD {
            Ok(Op::SystemHistory)
        } else {
            Err(Outcome::method(method, "_history"))
        };
    }
    if *ty == "metadata" && rest.is_empty() {
        return if method == Method::GET {
            Ok(Op::Metadata)
        } else {
            Err(Outcome::method(method, "metadata"))
        };
    }
    if !served_types().contains(ty) {
        let known = fhir::R4_RESOURCE_TYPES.contains(ty);
        let clipped: String = ty.chars().take(64).collect();
        return Err(Outcome::new(
            StatusCode::NOT_FOUND,
            "not-supported",
            if known {
                format!("{clipped} resources are not served here (see {BASE}/metadata)")
            } else {
                format!("`{clipped}` is not a FHIR R4 resource type")
            },
        ));
    }
    let ty = (*ty).to_owned();
    if ty == "Binary" {
        return match (method, rest) {
            (&Method::POST, []) => Ok(Op::BinaryCreate),
            (&Method::GET | &Method::HEAD, [id]) => Ok(Op::BinaryRead((*id).to_owned(), None)),
            (&Method::GET | &Method::HEAD, [id, "_history", vid]) => {
                Ok(Op::BinaryRead((*id).to_owned(), Some((*vid).to_owned())))
            }
            (_, [] | [_] | [_, "_history", _]) => Err(Outcome::method(
                method,
                "Binary (read, vread and create are served)",
            )),
            _ => Err(Outcome::not_found(format!("no such FHIR path: {path}"))),
        };
    }
    if ty == "PractitionerRole" {
        match (method, rest) {
            (&Method::POST, []) => return Ok(Op::StaffCreate),
            (&Method::PUT, [id]) => return Ok(Op::StaffUpdate((*id).to_owned())),
            _ => {}
        }
    }
    if method == Method::POST && rest.is_empty() && creatable(&ty) {
        return Ok(Op::Create(ty));
    }
    let op = match rest {
        [] => Op::Search(ty),
        ["_history"] => Op::TypeHistory(ty),
        [id] => Op::Read(ty, (*id).to_owned()),
        [id, "_history"] => Op::History(ty, (*id).to_owned()),
        [id, "_history", vid] => Op::VRead(ty, (*id).to_owned(), (*vid).to_owned()),
        [id, "$everything"] if ty == "Patient" => Op::Everything((*id).to_owned()),
        _ => return Err(Outcome::not_found(format!("no such FHIR path: {path}"))),
    };
    if method != Method::GET && method != Method::HEAD {
        let what = match &op {
            Op::Search(t) => {
                format!("{t} (not mapped to a category: it cannot be created here)")
            }
            Op::Read(t, _) => {
                format!("{t} instances (the record is changed through transaction Bundles)")
            }
            _ => "this path".to_owned(),
        };
        return Err(Outcome::method(method, &what));
    }
    Ok(op)
}

/// Whether the client accepts JSON (`Accept` and `_format`); only JSON is served.
fn check_format(headers: &HeaderMap, query: &[(String, String)]) -> Result<(), Outcome> {
    let json_like = |m: &str| {
        let m = m
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        m == "*/*" || m == "application/*" || m == "json" || m.ends_with("json")
    };
    let accept_ok = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.split(',').any(json_like));
    let format_ok = query
        .iter()
        .filter(|(k, _)| k == "_format")
        .all(|(_, v)| json_like(v));
    if accept_ok && format_ok {
        Ok(())
    } else {
        Err(Outcome::new(
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
            "only FHIR JSON (application/fhir+json) is served",
        ))
    }
}

async fn handle(st: AppState, req: Request) -> Result<Response, Outcome> {
    let op = route(req.method(), req.uri().path())?;
    match op {
        Op::BinaryRead(id, vid) => return binary::read(st, req, id, vid).await,
        Op::BinaryCreate => return binary::create(st, req).await,
        Op::Create(ty) => return write::create(st, req, ty).await,
        Op::StaffCreate => return staff::create(st, req).await,
        Op::StaffUpdate(id) => return staff::update(st, req, id).await,
        _ => {}
    }
    let query =
        search::query_pairs(req.uri().query()).map_err(|e| Outcome::invalid(e.to_string()))?;
    check_format(req.headers(), &query)?;
    let ctx = Ctx {
        base: base_url(req.headers()),
        self_link: format!(
            "{}{}",
            base_url(req.headers()).trim_end_matches(BASE),
            req.uri()
        ),
        query,
    };
    // Store work on a blocking thread, within the server's limit on concurrent store work.
    st.blocking(move |st| Ok(run(st, op, &ctx))).await?
}

/// One resource found for a read or search.
#[derive(Debug, Clone)]
struct Found {
    /// The resource type.
    ty: String,
    record: RecordId,
    /// The FHIR id.
    id: String,
    /// Another id it is known by (the patient item's entry id).
    alt_id: Option<String>,
    /// The item, for the item types (versions).
    item: Option<EntryId>,
    /// The item's current version.
    current: Option<EntryId>,
    /// The current resource (`None`: deleted).
    resource: Option<Json>,
    version: usize,
    updated: Timestamp,
    date: Option<search::Range>,
    keys: SearchKeys,
    /// Entries this read reveals (for the audit trail).
    entries: Vec<EntryId>,
    /// Whether reading it reads the audit trail.
    audit_read: bool,
    /// The id it came in with, if imported (matched by `_id` in a search).
    original: Option<String>,
}

impl Found {
    fn is(&self, id: &str) -> bool {
        self.id == id || self.alt_id.as_deref() == Some(id)
    }
}

/// The records the identity has any access to.
fn visible_records(st: &AppState) -> Result<Vec<RecordId>, Outcome> {
    let me = st.actor();
    let now = st.now();
    let mut out = Vec::new();
    for r in st.store().records()? {
        if st
            .store()
            .with_record(&r, |rec| rec.viewer(&me, now).has_access())?
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// Every resource of type `ty` in `records` the identity sees (deleted items included).
fn collect(st: &AppState, records: &[RecordId], ty: &str) -> Result<Vec<Found>, Outcome> {
    collect_types(st, records, &[ty])
}

/// Every resource of the given types in `records` the identity sees, type by type.
fn collect_types(
    st: &AppState,
    records: &[RecordId],
    types: &[&str],
) -> Result<Vec<Found>, Outcome> {
    let me = st.actor();
    let now = st.now();
    let mut out = Vec::new();
    for rid in records {
        let events = if types.contains(&"AuditEvent") {
            st.store().audit_events(rid)?
        } else {
            Vec::new()
        };
        st.store().with_record(rid, |rec| {
            let stop = st.cancel();
            let viewer = rec.viewer(&me, now);
            if !viewer.has_access() {
                return Ok(());
            }
            let all = view::items(rec, &viewer, stop)?;
            let derived = |ty: &str, list: Vec<(EntryId, Timestamp, Json)>, audit_read: bool| {
                let ty = ty.to_owned();
                list.into_iter().map(move |(id, t, j)| Found {
                    ty: ty.clone(),
                    record: *rid,
                    id: id.to_string(),
                    alt_id: None,
                    item: None,
                    current: None,
                    resource: Some(j),
                    version: 1,
                    updated: t,
                    date: Some(search::instant_range(t)),
                    keys: SearchKeys::default(),
                    entries: if audit_read { Vec::new() } else { vec![id] },
                    audit_read,
                    original: None,
                })
            };
            // The items of a type held in the record.
            let stored = |ty: &str| {
                all.iter()
                    .filter(move |r| r.resource_type == ty)
                    .map(|r| {
                        let r = r.clone();
                        let alt = (r.id != r.item.to_string()).then(|| r.item.to_string());
                        let date = r.keys.date.as_deref().and_then(search::date_range);
                        Found {
                            ty: r.resource_type,
                            record: r.record,
                            id: r.id,
                            alt_id: alt,
                            item: Some(r.item),
                            current: Some(r.current),
                            resource: r.resource,
                            version: r.version,
                            updated: r.updated,
                            date,
                            keys: r.keys,
                            entries: vec![r.item, r.current],
                            audit_read: false,
                            original: r.original,
                        }
                    })
                    .collect::<Vec<_>>()
            };
            for ty in types {
                stop.check()?;
                match *ty {
                    "Provenance" => {
                        out.extend(derived(
                            ty,
                            view::provenances(rec, &viewer, &all, stop)?,
                            false,
                        ));
                        // Provenance resources imported (kept whole) too.
                        out.extend(stored(ty));
                    }
                    "AuditEvent" => out.extend(derived(
                        ty,
                        view::audit_events(rec, &viewer, &events, &all, stop)?,
                        true,
                    )),
                    "Practitioner" => {
                        for (actor, profile, t, j) in view::practitioners(rec, &viewer, stop)? {
                            out.push(Found {
                                ty: (*ty).to_owned(),
                                record: *rid,
                                id: actor.to_string(),
                                alt_id: None,
                                item: None,
                                current: None,
                                resource: Some(j),
                                version: 1,
                                updated: t,
                                date: Some(search::instant_range(t)),
                                keys: SearchKeys::default(),
                                entries: vec![profile],
                                audit_read: false,
                                original: None,
                            });
                        }
                        // Practitioner resources imported (kept whole) too.
                        out.extend(stored(ty));
                    }
                    "Organization" | "PractitionerRole" | "CareTeam" => {
                        let list = match *ty {
                            "Organization" => view::organizations(rec, &viewer),
                            "PractitionerRole" => view::practitioner_roles(rec, &viewer),
                            _ => view::care_teams(rec, &viewer, now),
                        };
                        for (id, seen, t, j) in list {
                            out.push(Found {
                                ty: (*ty).to_owned(),
                                record: *rid,
                                id,
                                alt_id: None,
                                item: None,
                                current: None,
                                resource: Some(j),
                                version: 1,
                                updated: t,
                                date: Some(search::instant_range(t)),
                                keys: SearchKeys::default(),
                                entries: seen,
                                audit_read: false,
                                original: None,
                            });
                        }
                        // Resources of these types imported (kept whole) too.
                        out.extend(stored(ty));
                    }
                    _ => {
                        if *ty == "Consent" {
                            out.extend(derived(ty, view::consents(rec, &viewer, now), false));
                        }
                        out.extend(stored(ty));
                    }
                }
            }
            Ok::<_, Cancelled>(())
        })??;
    }
    Ok(out)
}

fn full_url(ctx: &Ctx, ty: &str, id: &str) -> String {
    format!("{}/{ty}/{id}", ctx.base)
}

fn only_params(ctx: &Ctx, allowed: &[&str]) -> Result<(), Outcome> {
    match ctx
        .query
        .iter()
        .find(|(k, _)| !allowed.contains(&k.as_str()))
    {
        Some((k, _)) => Err(Outcome::invalid(format!(
            "parameter `{}` is not supported here",
            k.chars().take(64).collect::<String>()
        ))),
        None => Ok(()),
    }
}

fn find_one(st: &AppState, ty: &str, id: &str) -> Result<Found, Outcome> {
    let records = visible_records(st)?;
    let not_found = || {
        Outcome::not_found(format!(
            "no {ty} with id `{}` here",
            id.chars().take(80).collect::<String>()
        ))
    };
    if !DERIVED_TYPES.contains(&ty) {
        match indexed::find(st, &records, ty, id)? {
            indexed::Lookup::Found(f) => return Ok(*f),
            indexed::Lookup::None => return Err(not_found()),
            indexed::Lookup::Scan => {}
        }
    }
    collect(st, &records, ty)?
        .into_iter()
        .find(|f| f.is(id))
        .ok_or_else(|| {
            Outcome::not_found(format!(
                "no {ty} with id `{}` here",
                id.chars().take(80).collect::<String>()
            ))
        })
}

fn gone(ty: &str, id: &str) -> Outcome {
    Outcome::new(
        StatusCode::GONE,
        "deleted",
        format!("{ty}/{id} was deleted (its history is kept)"),
    )
}

/// Answers a GET, as one audited read ([`AppState::read`]).
fn run(st: &AppState, op: Op, ctx: &Ctx) -> Result<Response, Outcome> {
    st.read(st.now(), |rd| read(st, rd, op, ctx))
}

fn read(st: &AppState, rd: &mut Reader<'_>, op: Op, ctx: &Ctx) -> Result<Response, Outcome> {
    let (resp, detail) = match op {
        Op::Metadata => {
            return Ok(fhir_response(
                StatusCode::OK,
                &resources::capability_statement(&ctx.base, &capabilities(), st.now()),
            ))
        }
        Op::Read(ty, id) => {
            only_params(ctx, &["_format"])?;
            let f = find_one(st, &ty, &id)?;
            let Some(r) = f.resource else {
                return Err(gone(&ty, &id));
            };
            saw(rd, f.record, &f.entries, f.audit_read);
            (resource_response(&r), format!("FHIR read {ty}"))
        }
        Op::VRead(ty, id, vid) => {
            only_params(ctx, &["_format"])?;
            let f = find_one(st, &ty, &id)?;
            let r = match f.item {
                None if vid == "1" => f.resource.clone(),
                None => None,
                Some(item) => {
                    let vs = item_versions(st, &f.record, &item, &f.id)?;
                    let Some(v) = vs
                        .iter()
                        .find(|v| v.n.to_string() == vid || v.entry.to_string() == vid)
                    else {
                        return Err(Outcome::not_found(format!(
                            "{ty}/{id} has no version `{}`",
                            vid.chars().take(80).collect::<String>()
                        )));
                    };
                    saw(rd, f.record, &[item, v.entry], false);
                    match &v.resource {
                        Some(r) => Some(r.clone()),
                        None => return Err(gone(&ty, &id)),
                    }
                }
            };
            let Some(r) = r else {
                return Err(Outcome::not_found(format!(
                    "{ty}/{id} has no version `{}`",
                    vid.chars().take(80).collect::<String>()
                )));
            };
            saw(rd, f.record, &f.entries, f.audit_read);
            (resource_response(&r), format!("FHIR vread {ty}"))
        }
        Op::History(ty, id) => {
            let (count, offset) = page_params(ctx)?;
            let f = find_one(st, &ty, &id)?;
            let entries = history_entries(st, ctx, &ty, &f)?;
            let b = paged(
                "history",
                ctx,
                &format!("{ty}/{id}/_history"),
                entries,
                count,
                offset,
                rd,
            );
            (
                fhir_response(StatusCode::OK, &b),
                format!("FHIR history {ty}"),
            )
        }
        Op::TypeHistory(ty) => {
            let (count, offset) = page_params(ctx)?;
            let records = visible_records(st)?;
            let indexable = served_types()
                .into_iter()
                .find(|t| *t == ty)
                .filter(|t| !DERIVED_TYPES.contains(t));
            if let Some(t) = indexable {
                let path = format!("{ty}/_history");
                if let Some(b) =
                    type_history_page(st, ctx, rd, &records, &[t], &path, offset, count)?
                {
                    rd.detail(format!("FHIR history {ty}"));
                    return Ok(fhir_response(StatusCode::OK, &b));
                }
            }
            let mut entries = Vec::new();
            for f in collect(st, &records, &ty)? {
                st.cancel().check()?;
                entries.extend(history_entries(st, ctx, &ty, &f)?);
            }
            entries.sort_by_key(|e| std::cmp::Reverse(e.key));
            let b = paged(
                "history",
                ctx,
                &format!("{ty}/_history"),
                entries,
                count,
                offset,
                rd,
            );
            (
                fhir_response(StatusCode::OK, &b),
                format!("FHIR history {ty}"),
            )
        }
        Op::SystemHistory => {
            let (count, offset) = page_params(ctx)?;
            let records = visible_records(st)?;
            let types = history_types();
            if let Some(b) =
                type_history_page(st, ctx, rd, &records, &types, "_history", offset, count)?
            {
                rd.detail("FHIR history (system)".to_owned());
                return Ok(fhir_response(StatusCode::OK, &b));
            }
            // A record too big to index: the scan, over the stored items only.
            let mut entries = Vec::new();
            for f in collect_types(st, &records, &types)? {
                st.cancel().check()?;
                if f.item.is_some() {
                    entries.extend(history_entries(st, ctx, &f.ty, &f)?);
                }
            }
            entries.sort_by_key(|e| std::cmp::Reverse(e.key));
            let b = paged("history", ctx, "_history", entries, count, offset, rd);
            (
                fhir_response(StatusCode::OK, &b),
                "FHIR history (system)".to_owned(),
            )
        }
        Op::Search(ty) => {
            let s = search::parse(&ty, &ctx.query).map_err(|e| Outcome::invalid(e.to_string()))?;
            let b = search_bundle(st, ctx, &ty, &s, rd)?;
            (
                fhir_response(StatusCode::OK, &b),
                format!("FHIR search {ty}"),
            )
        }
        Op::BinaryRead(..)
        | Op::BinaryCreate
        | Op::Create(_)
        | Op::StaffCreate
        | Op::StaffUpdate(_) => return Err(Outcome::not_found("not a read")),
        Op::Everything(id) => {
            let (count, offset) = page_params(ctx)?;
            let patient = find_one(st, "Patient", &id)?;
            let path = format!("Patient/{id}/$everything");
            let (items, derived) = everything_types();
            let b = match indexed::everything_items(st, ctx, &patient, &items, offset, count)? {
                Some((mut page, n)) => {
                    let end = offset.saturating_add(count);
                    if n > end {
                        // The items alone go beyond this page: the derived resources
                        // (one Provenance per entry) are not folded for it.
                        paged_window("searchset", ctx, &path, page, None, count, offset, rd)
                    } else {
                        let tail = everything(st, ctx, &patient, &derived, false)?;
                        let total = n + tail.len();
                        let room = count.saturating_sub(page.len());
                        page.extend(tail.into_iter().skip(offset.saturating_sub(n)).take(room));
                        paged_window(
                            "searchset",
                            ctx,
                            &path,
                            page,
                            Some(total),
                            count,
                            offset,
                            rd,
                        )
                    }
                }
                None => {
                    let mut types = items;
                    types.extend(derived);
                    let entries = everything(st, ctx, &patient, &types, true)?;
                    paged("searchset", ctx, &path, entries, count, offset, rd)
                }
            };
            (
                fhir_response(StatusCode::OK, &b),
                "FHIR Patient/$everything".to_owned(),
            )
        }
    };
    rd.detail(detail);
    Ok(resp)
}

/// A page of a type's `_history` through the index (`None`: a record is too big to
/// index, or the scan is needed): the entries placed by the index, each built from its
/// item's versions folded for the viewer as [`history_entries`] does.
#[allow(clippy::too_many_arguments)]
fn type_history_page(
    st: &AppState,
    ctx: &Ctx,
    rd: &mut Reader<'_>,
    records: &[RecordId],
    types: &[&'static str],
    path: &str,
    offset: usize,
    count: usize,
) -> Result<Option<Json>, Outcome> {
    let Some((total, places)) = indexed::type_history(st, records, types, offset, count)? else {
        return Ok(None);
    };
    let mut built: HashMap<(RecordId, EntryId, &str), Vec<PageEntry>> = HashMap::new();
    let mut page = Vec::new();
    for (record, item, ty, id, n) in places {
        st.cancel().check()?;
        if let std::collections::hash_map::Entry::Vacant(slot) = built.entry((record, item, ty)) {
            let f = Found {
                ty: ty.to_owned(),
                record,
                id,
                alt_id: None,
                item: Some(item),
                current: None,
                resource: None,
                version: n,
                updated: 0,
                date: None,
                keys: SearchKeys::default(),
                entries: Vec::new(),
                audit_read: false,
                original: None,
            };
            slot.insert(history_entries(st, ctx, ty, &f)?);
        }
        let Some(e) = built
            .get_mut(&(record, item, ty))
            .and_then(|es| es.iter().position(|e| e.key.1 == n).map(|p| es.remove(p)))
        else {
            // The index placed a version the fold does not give: never expected; the
            // scan answers instead.
            return Ok(None);
        };
        page.push(e);
    }
    Ok(Some(paged_window(
        "history",
        ctx,
        path,
        page,
        Some(total),
        count,
        offset,
        rd,
    )))
}

fn item_versions(
    st: &AppState,
    record: &RecordId,
    item: &EntryId,
    id: &str,
) -> Result<Vec<view::Version>, Outcome> {
    if let Some(vs) = indexed::versions(st, record, item, id)? {
        return Ok(vs);
    }
    let me = st.actor();
    let now = st.now();
    Ok(st.store().with_record(record, |rec| {
        let viewer = rec.viewer(&me, now);
        view::versions(rec, &viewer, item, id)
    })?)
}

/// One Bundle entry of a paged read (history or `$everything`): its sort key, the entry,
/// and what reading it reveals (audited only for the page delivered).
struct PageEntry {
    key: (Timestamp, usize),
    entry: Json,
    record: RecordId,
    entries: Vec<EntryId>,
    audit_read: bool,
}

/// `_count` (default [`search::DEFAULT_COUNT`], at most [`search::MAX_COUNT`]) and
/// `_offset` of a paged read that takes no other parameter than `_format`.
fn page_params(ctx: &Ctx) -> Result<(usize, usize), Outcome> {
    only_params(ctx, &["_format", "_count", "_offset"])?;
    let num = |name: &str| -> Result<Option<usize>, Outcome> {
        match ctx.query.iter().find(|(k, _)| k == name) {
            Some((_, v)) => v
                .parse()
                .map(Some)
                .map_err(|_| Outcome::invalid(format!("`{name}` must be a non-negative integer"))),
            None => Ok(None),
        }
    };
    let count = num("_count")?
        .unwrap_or(search::DEFAULT_COUNT)
        .min(search::MAX_COUNT);
    Ok((count, num("_offset")?.unwrap_or(0)))
}

/// A Bundle of one page of `entries` (`_count` from `_offset`) with `self`, `next` and
/// `previous` links (to `path` under the base) and the `total`; only the page is audited.
fn paged(
    kind: &str,
    ctx: &Ctx,
    path: &str,
    entries: Vec<PageEntry>,
    count: usize,
    offset: usize,
    rd: &mut Reader<'_>,
) -> Json {
    let total = entries.len();
    let page: Vec<PageEntry> = entries.into_iter().skip(offset).take(count).collect();
    paged_window(kind, ctx, path, page, Some(total), count, offset, rd)
}

/// A Bundle of one page (`_count` from `_offset`) with `self`, `next` and `previous` links
/// and the `total` when known (without it, a next page is linked whenever this one is
/// full); only the page is audited.
#[allow(clippy::too_many_arguments)]
fn paged_window(
    kind: &str,
    ctx: &Ctx,
    path: &str,
    page: Vec<PageEntry>,
    total: Option<usize>,
    count: usize,
    offset: usize,
    rd: &mut Reader<'_>,
) -> Json {
    let full = page.len() >= count;
    let page: Vec<Json> = page
        .into_iter()
        .map(|p| {
            saw(rd, p.record, &p.entries, p.audit_read);
            p.entry
        })
        .collect();
    let more = match total {
        Some(t) => offset.saturating_add(count) < t,
        None => full,
    };
    let mut b = resources::bundle(kind, &ctx.self_link, page, total);
    let link = |relation: &str, offset: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("_count", &count.to_string());
        q.append_pair("_offset", &offset.to_string());
        json!({"relation": relation, "url": format!("{}/{path}?{}", ctx.base, q.finish())})
    };
    if let Some(links) = b["link"].as_array_mut() {
        if count > 0 && more {
            links.push(link("next", offset + count));
        }
        if offset > 0 {
            links.push(link("previous", offset.saturating_sub(count)));
        }
    }
    b
}

/// History bundle entries of one resource, newest first.
fn history_entries(
    st: &AppState,
    ctx: &Ctx,
    ty: &str,
    f: &Found,
) -> Result<Vec<PageEntry>, Outcome> {
    let url = full_url(ctx, ty, &f.id);
    let Some(item) = f.item else {
        let Some(r) = &f.resource else {
            return Ok(Vec::new());
        };
        return Ok(vec![PageEntry {
            key: (f.updated, 1),
            entry: json!({"fullUrl": url, "resource": r,
                   "request": {"method": "POST", "url": ty},
                   "response": {"status": "201 Created", "etag": "W/\"1\"",
                                "lastModified": resources::instant(f.updated)}}),
            record: f.record,
            entries: f.entries.clone(),
            audit_read: f.audit_read,
        }]);
    };
    let vs = item_versions(st, &f.record, &item, &f.id)?;
    let mut out: Vec<PageEntry> = vs
        .iter()
        .map(|v| {
            let (method, req_url, status) = match (&v.resource, v.n) {
                (None, _) => ("DELETE", format!("{ty}/{}", f.id), "204 No Content"),
                (Some(_), 1) => ("POST", ty.to_owned(), "201 Created"),
                (Some(_), _) => ("PUT", format!("{ty}/{}", f.id), "200 OK"),
            };
            let mut e = json!({
                "fullUrl": url,
                "request": {"method": method, "url": req_url},
                "response": {"status": status, "etag": format!("W/\"{}\"", v.n),
                             "lastModified": resources::instant(v.time)},
            });
            if let Some(r) = &v.resource {
                e["resource"] = r.clone();
            }
            PageEntry {
                key: (v.time, v.n),
                entry: e,
                record: f.record,
                entries: vec![item, v.entry],
                audit_read: false,
            }
        })
        .collect();
    out.reverse();
    Ok(out)
}

fn search_bundle(
    st: &AppState,
    ctx: &Ctx,
    ty: &str,
    s: &Search,
    rd: &mut Reader<'_>,
) -> Result<Json, Outcome> {
    let visible = visible_records(st)?;
    let records: Vec<RecordId> = if s.patients.is_empty() {
        visible
    } else {
        visible
            .into_iter()
            .filter(|r| s.patients.iter().any(|p| *p == r.to_string()))
            .collect()
    };
    let count = s.count.unwrap_or(search::DEFAULT_COUNT);
    let indexed = if ty == "Provenance" {
        indexed::provenances(st, &records, s, s.offset, count)?
    } else if DERIVED_TYPES.contains(&ty) {
        None
    } else {
        indexed::search(st, &records, ty, s, s.offset, count)?
    };
    let (total, page) = match indexed {
        Some(found) => found,
        None => scan_search(st, &records, ty, s, count)?,
    };
    search_page(ctx, ty, s, rd, total, page, count)
}

/// A search by folding every record (the derived types, and records too big to index).
fn scan_search(
    st: &AppState,
    records: &[RecordId],
    ty: &str,
    s: &Search,
    count: usize,
) -> Result<(usize, Vec<Found>), Outcome> {
    let mut matched: Vec<Found> = collect(st, records, ty)?
        .into_iter()
        .filter(|f| f.resource.is_some())
        .filter(|f| {
            let id_ok = s.ids.is_empty()
                || s.ids
                    .iter()
                    .any(|i| f.is(i) || f.original.as_deref() == Some(i.as_str()));
            let mut s2 = s.clone();
            s2.ids.clear();
            id_ok && view::matches(&s2, &f.id, &f.keys, f.date)
        })
        .collect();
    let total = matched.len();
    let page: Vec<Found> = matched.drain(..).skip(s.offset).take(count).collect();
    Ok((total, page))
}

/// The searchset Bundle of one page of matches (`total` in all), the page audited.
fn search_page(
    ctx: &Ctx,
    ty: &str,
    s: &Search,
    rd: &mut Reader<'_>,
    total: usize,
    page: Vec<Found>,
    count: usize,
) -> Result<Json, Outcome> {
    let entries: Vec<Json> = page
        .into_iter()
        .map(|f| {
            saw(rd, f.record, &f.entries, f.audit_read);
            json!({"fullUrl": full_url(ctx, ty, &f.id), "resource": f.resource,
                   "search": {"mode": "match"}})
        })
        .collect();
    let mut b = resources::bundle("searchset", &ctx.self_link, entries, Some(total));
    let page_link = |relation: &str, offset: usize| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in ctx
            .query
            .iter()
            .filter(|(k, _)| k != "_offset" && k != "_count")
        {
            q.append_pair(k, v);
        }
        q.append_pair("_count", &count.to_string());
        q.append_pair("_offset", &offset.to_string());
        json!({"relation": relation, "url": format!("{}/{ty}?{}", ctx.base, q.finish())})
    };
    if let Some(links) = b["link"].as_array_mut() {
        if count > 0 && s.offset.saturating_add(count) < total {
            links.push(page_link("next", s.offset + count));
        }
        if s.offset > 0 {
            links.push(page_link("previous", s.offset.saturating_sub(count)));
        }
    }
    Ok(b)
}

/// The order of `$everything`: the types items are served as (alphabetical), then the
/// derived ones, audit events last (oldest first: the reads of earlier pages add events,
/// which then come after every page already delivered, so the offsets of the rest stay
/// put).
fn everything_types() -> (Vec<&'static str>, Vec<&'static str>) {
    let items = served_types()
        .into_iter()
        .filter(|t| !DERIVED_TYPES.contains(t))
        .collect();
    (
        items,
        vec![
            "Consent",
            "CareTeam",
            "Organization",
            "Practitioner",
            "PractitionerRole",
            "Provenance",
            "AuditEvent",
        ],
    )
}

/// The patient's compartment in `types`, the patient first if `with_patient`, as page
/// entries, by folding the record.
fn everything(
    st: &AppState,
    ctx: &Ctx,
    patient: &Found,
    types: &[&str],
    with_patient: bool,
) -> Result<Vec<PageEntry>, Outcome> {
    let mut entries = Vec::new();
    let all = collect_types(st, &[patient.record], types)?;
    let others = all
        .into_iter()
        .filter(|f| !(f.ty == "Patient" && f.id == patient.id));
    let first = with_patient.then(|| patient.clone());
    for f in first.into_iter().chain(others) {
        st.cancel().check()?;
        if let Some(r) = f.resource {
            entries.push(PageEntry {
                key: (f.updated, f.version),
                entry: json!({"fullUrl": full_url(ctx, &f.ty, &f.id), "resource": r,
                              "search": {"mode": "match"}}),
                record: f.record,
                entries: f.entries,
                audit_read: f.audit_read,
            });
        }
    }
    Ok(entries)
}
