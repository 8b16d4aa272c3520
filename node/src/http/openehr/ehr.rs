//! The EHR endpoints beyond reading one (ITS-REST 1.0.3, EHR and EHR_STATUS):
//!
//! - `POST ehr` and `PUT ehr/{ehr_id}`: a node creates one EHR only, its own identity's
//!   record (as `cophr record create` or `POST /api/v1/records` do): the record is the
//!   patient's, its genesis signed with their key, which a patient's node holds. So a
//!   request naming no subject, or the identity itself (the body's EHR_STATUS `subject` in
//!   namespace `cophr`, or the `ehr_id` derived from it), creates that record when this
//!   node holds none yet: 201 with the EHR (`ETag` its id, `Location` its URL). An EHR that
//!   exists already for the subject or the `ehr_id` is answered as ITS-REST answers it,
//!   409 with the existing `ehr_id` (in the body, `ETag` and `Location`); any other subject
//!   is refused with 403 (`ehr_not_created`), saying why: a node creating a record for
//!   someone else would have to make (and hold) a key that is not its own.
//! - `PUT ehr/{ehr_id}/ehr_status` with `If-Match`: the EHR_STATUS is derived from the
//!   record, not stored, so it has one version and cannot change: `is_queryable` is always
//!   true (every record the identity has access to is queried, as far as its grants let it
//!   see), `is_modifiable` always true (who may write is decided by the record's grants,
//!   entry by entry) and `subject` is the record's patient. A stale `If-Match` is 412 (with
//!   the version in `ETag`; the body is checked first); a current one is refused with 400
//!   `ehr_status_fixed`, saying so. Nothing is stored.
//! - `GET ehr/{ehr_id}/versioned_ehr_status`, `…/revision_history`, `…/version[?version_at_time=]`
//!   and `…/version/{version_uid}`: the VERSIONED_EHR_STATUS and its one version, created
//!   with the record (its genesis: author, time and contribution).
//!
//! Every read is one audited read of the record's EHR_STATUS; an EHR the identity has no
//! access to is 404.

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cophr_protocol::openehr::versions::{
    contribution_uid, revision_history_json, version_json, Audit, ChangeType,
};
use cophr_protocol::openehr::{self, Composer};
use cophr_protocol::record::Record;
use cophr_protocol::RecordId;
use serde_json::{json, Value as JsonValue};

use super::super::api::{format_time, parse_time};
use super::{clip, etag, find_ehr, is_json, OeError, BASE};
use crate::http::AppState;

/// The largest body `POST ehr`, `PUT ehr/{ehr_id}` or `PUT ehr/{ehr_id}/ehr_status` takes
/// (an EHR_STATUS), in bytes.
pub const MAX_EHR_STATUS_BYTES: usize = 16 * 1024;

/// Why cophr creates no EHR for another subject over openEHR (the 403's message).
const NOT_CREATED: &str = "a node creates only its own identity's record (and its EHR), \
     signed with that identity's key; a record for anyone else is created on their own node \
     (`cophr init`)";

/// The body of an EHR request: empty, or a JSON EHR_STATUS of at most
/// [`MAX_EHR_STATUS_BYTES`].
async fn status_body(req: Request) -> Result<(HeaderMap, Option<JsonValue>), OeError> {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, MAX_EHR_STATUS_BYTES + 1)
        .await
        .map_err(|_| too_large())?;
    if bytes.len() > MAX_EHR_STATUS_BYTES {
        return Err(too_large());
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((parts.headers, None));
    }
    if !is_json(&parts.headers) {
        return Err(OeError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the EHR_STATUS as JSON (Content-Type: application/json)",
        ));
    }
    let v: JsonValue = serde_json::from_slice(&bytes)
        .map_err(|e| OeError::bad(format!("the body is not JSON: {e}")))?;
    if !v.is_object() || v.get("_type").is_some_and(|t| t != "EHR_STATUS") {
        return Err(OeError::bad("the body is not an EHR_STATUS"));
    }
    for flag in ["is_queryable", "is_modifiable"] {
        if v.get(flag).is_some_and(|f| !f.is_boolean()) {
            return Err(OeError::bad(format!("`{flag}` is true or false")));
        }
    }
    if v.get("subject").is_some_and(|s| !s.is_object()) {
        return Err(OeError::bad("`subject` is a PARTY_SELF (an object)"));
    }
    Ok((parts.headers, Some(v)))
}

fn too_large() -> OeError {
    OeError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("an EHR_STATUS is at most {MAX_EHR_STATUS_BYTES} bytes"),
    )
}

/// The subject an EHR_STATUS names: (id, namespace), if it names one.
fn subject_of(status: &JsonValue) -> Option<(String, String)> {
    let r = &status["subject"]["external_ref"];
    Some((
        r["id"]["value"].as_str()?.trim().to_owned(),
        r["namespace"].as_str()?.trim().to_owned(),
    ))
}

/// The record an EHR request names that already has an EHR the identity sees: by
/// `ehr_id`, else by the body's subject, else (neither given) the identity's own.
fn existing(
    st: &AppState,
    ehr_id: Option<&str>,
    status: Option<&JsonValue>,
) -> Result<Option<RecordId>, OeError> {
    let seen = |record: &RecordId| find_ehr(st, &openehr::ehr_id(record)).ok();
    if let Some(id) = ehr_id {
        if let Ok(r) = find_ehr(st, id) {
            return Ok(Some(r));
        }
    }
    match status.and_then(subject_of) {
        Some((id, ns)) => Ok((ns == openehr::SUBJECT_NAMESPACE)
            .then(|| id.parse::<RecordId>().ok())
            .flatten()
            .and_then(|r| seen(&r))),
        None if ehr_id.is_none() => Ok(seen(&st.actor())),
        None => Ok(None),
    }
}

/// `409`: the EHR exists, with its id in the body, `ETag` and `Location`.
fn conflict(record: &RecordId) -> Response {
    let id = openehr::ehr_id(record);
    let mut resp = (
        StatusCode::CONFLICT,
        Json(json!({
            "code": "ehr_exists",
            "message": format!("an EHR exists for this subject already: {id}"),
            "ehr_id": {"value": id},
        })),
    )
        .into_response();
    if let Some(t) = etag(&id) {
        resp.headers_mut().insert(header::ETAG, t);
    }
    if let Ok(l) = HeaderValue::from_str(&format!("{BASE}/ehr/{id}")) {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    resp
}

async fn create_at(st: AppState, ehr_id: Option<String>, req: Request) -> Response {
    if let Some(id) = &ehr_id {
        if !openehr::is_uuid(id.trim()) {
            return OeError::bad(format!("`{}` is not an ehr_id (a UUID)", clip(id)))
                .into_response();
        }
    }
    let status = match status_body(req).await {
        Ok((_, s)) => s,
        Err(e) => return e.into_response(),
    };
    let me = st.actor();
    // Whether the request names this node's own identity (or no one).
    let own = ehr_id
        .as_deref()
        .is_none_or(|id| id.trim() == openehr::ehr_id(&me))
        && status
            .as_ref()
            .and_then(subject_of)
            .is_none_or(|(id, ns)| ns == openehr::SUBJECT_NAMESPACE && id == me.to_string());
    let out = st
        .blocking(move |st| {
            Ok((|| -> Result<Made, OeError> {
                if let Some(record) = existing(st, ehr_id.as_deref(), status.as_ref())? {
                    return Ok(Made::Exists(record));
                }
                if !own || st.store().holds(&me)? {
                    return Ok(Made::Refused);
                }
                st.store().create_record(
                    st.keypair(),
                    st.profile().clone(),
                    st.now(),
                    st.device().map(str::to_owned),
                )?;
                Ok(Made::Created(ehr_read_created(st, me)))
            })())
        })
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok(Made::Exists(record)) => conflict(&record),
        Ok(Made::Refused) => {
            OeError::new(StatusCode::FORBIDDEN, "ehr_not_created", NOT_CREATED).into_response()
        }
        Ok(Made::Created(body)) => {
            st.changed(me).await;
            created(&me, body)
        }
        Err(e) => e.into_response(),
    }
}

/// What an EHR creation request came to.
enum Made {
    /// The EHR exists already (409).
    Exists(RecordId),
    /// Not this node's own identity, or its record exists under another id (403).
    Refused,
    /// Created: the EHR's JSON (201).
    Created(JsonValue),
}

/// The EHR just created: its JSON, as `GET ehr/{ehr_id}` reads it (audited), or, if that
/// read fails, its id alone.
fn ehr_read_created(st: &AppState, record: RecordId) -> JsonValue {
    super::ehr_read(st, record, false)
        .unwrap_or_else(|_| json!({"ehr_id": {"value": openehr::ehr_id(&record)}}))
}

/// `201`: the EHR created, with its id in `ETag` and its URL in `Location`.
fn created(record: &RecordId, body: JsonValue) -> Response {
    let id = openehr::ehr_id(record);
    let mut resp = (StatusCode::CREATED, Json(body)).into_response();
    if let Some(t) = etag(&id) {
        resp.headers_mut().insert(header::ETAG, t);
    }
    if let Ok(l) = HeaderValue::from_str(&format!("{BASE}/ehr/{id}")) {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    resp
}

/// `POST ehr`.
pub async fn post_ehr(State(st): State<AppState>, req: Request) -> Response {
    create_at(st, None, req).await
}

/// `PUT ehr/{ehr_id}`.
pub async fn put_ehr(
    State(st): State<AppState>,
    Path(ehr_id): Path<String>,
    req: Request,
) -> Response {
    create_at(st, Some(ehr_id), req).await
}

/// The EHR_STATUS version uid and its object id.
fn status_ids(record: &RecordId) -> (String, String) {
    let uid = openehr::ehr_status_json(record)["uid"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let object = uid.split("::").next().unwrap_or_default().to_owned();
    (uid, object)
}

/// `PUT ehr/{ehr_id}/ehr_status`: 412 for a stale `If-Match`, else the precise refusal.
pub async fn put_status(
    State(st): State<AppState>,
    Path(ehr_id): Path<String>,
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
    let ehr = ehr_id.clone();
    let found = st.blocking(move |st| Ok(find_ehr(st, &ehr))).await;
    let record = match found.map_err(OeError::from).and_then(|x| x) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let sent = match status_body(req).await {
        Ok((_, Some(s))) => s,
        Ok((_, None)) => return OeError::bad("send the new EHR_STATUS").into_response(),
        Err(e) => return e.into_response(),
    };
    let Some(preceding) = if_match else {
        return OeError::bad("PUT needs If-Match: {preceding_version_uid}").into_response();
    };
    let (uid, _) = status_ids(&record);
    if preceding != uid {
        return OeError {
            latest: Some(uid.clone()),
            location: Some(format!("{BASE}/ehr/{ehr_id}/ehr_status/{uid}")),
            ..OeError::new(
                StatusCode::PRECONDITION_FAILED,
                "stale_version",
                format!(
                    "If-Match `{}` is not the EHR_STATUS's version ({uid})",
                    clip(&preceding)
                ),
            )
        }
        .into_response();
    }
    let current = openehr::ehr_status_json(&record);
    let changes: Vec<&str> = ["is_queryable", "is_modifiable"]
        .into_iter()
        .filter(|k| sent.get(*k).is_some_and(|v| *v != current[*k]))
        .chain(
            subject_of(&sent)
                .filter(|s| Some(s) != subject_of(&current).as_ref())
                .map(|_| "subject"),
        )
        .collect();
    let what = if changes.is_empty() {
        "nothing would change".to_owned()
    } else {
        format!("it would change {}", changes.join(", "))
    };
    OeError::new(
        StatusCode::BAD_REQUEST,
        "ehr_status_fixed",
        format!(
            "cophr's EHR_STATUS is derived from the record and does not change ({what}): \
             is_queryable is always true (a record is queried as far as its grants let each \
             reader see), is_modifiable always true (the record's grants decide each write) \
             and the subject is the record's patient"
        ),
    )
    .into_response()
}

/// What a versioned EHR_STATUS request asks for.
enum Which {
    Object,
    History,
    At(Option<String>),
    Version(String),
}

/// The record's genesis: (author, time, entry) — the EHR_STATUS's one version's audit.
fn genesis(r: &Record) -> Option<(Audit, String)> {
    let g = r.entries().next()?;
    let author = g.entry().author;
    let time = g.entry().time;
    Some((
        Audit {
            committer: Composer {
                name: r.profile(&author, Some(time)).map(|p| p.name.clone()),
                actor: author.to_string(),
            },
            time: format_time(time),
            change: ChangeType::Creation,
        },
        contribution_uid(&g.id()),
    ))
}

fn versioned_read(st: &AppState, ehr_id: &str, which: &Which) -> Result<JsonValue, OeError> {
    let record = find_ehr(st, ehr_id)?;
    let (uid, object) = status_ids(&record);
    let at = match which {
        Which::At(Some(t)) => Some(parse_time("version_at_time", t).map_err(OeError::from)?),
        _ => None,
    };
    if let Which::Version(v) = which {
        if v.trim() != uid {
            return Err(OeError::not_found(format!(
                "no EHR_STATUS version `{}` here",
                clip(v)
            )));
        }
    }
    st.read(st.now(), |rd| {
        rd.record(&record, |r, seen| {
            seen.detail("openEHR VERSIONED_EHR_STATUS");
            let (audit, contribution) =
                genesis(r).ok_or_else(|| OeError::not_found("the record has no genesis"))?;
            let created = r.entries().next().map_or(0, |e| e.entry().time);
            Ok(match which {
                Which::Object => json!({
                    "_type": "VERSIONED_EHR_STATUS",
                    "uid": {"_type": "HIER_OBJECT_ID", "value": object},
                    "owner_id": {"_type": "HIER_OBJECT_ID", "value": openehr::ehr_id(&record)},
                    "time_created": {"_type": "DV_DATE_TIME", "value": format_time(created)},
                }),
                Which::History => revision_history_json(&[(uid.clone(), audit)]),
                Which::At(_) | Which::Version(_) => {
                    if at.is_some_and(|t| t < created) {
                        return Err(OeError::not_found(
                            "the EHR_STATUS has no version at that time",
                        ));
                    }
                    version_json(
                        &uid,
                        None,
                        &contribution,
                        &audit,
                        Some(openehr::ehr_status_json(&record)),
                    )
                }
            })
        })?
    })
}

async fn versioned_answer(st: AppState, ehr_id: String, which: Which) -> Response {
    let out = st
        .blocking(move |st| Ok(versioned_read(st, &ehr_id, &which)))
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok(b) => (StatusCode::OK, Json(b)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET ehr/{ehr_id}/versioned_ehr_status`.
pub async fn versioned(State(st): State<AppState>, Path(ehr_id): Path<String>) -> Response {
    versioned_answer(st, ehr_id, Which::Object).await
}

/// `GET ehr/{ehr_id}/versioned_ehr_status/revision_history`.
pub async fn history(State(st): State<AppState>, Path(ehr_id): Path<String>) -> Response {
    versioned_answer(st, ehr_id, Which::History).await
}

/// `GET ehr/{ehr_id}/versioned_ehr_status/version[?version_at_time=]`.
pub async fn version_at(
    State(st): State<AppState>,
    Path(ehr_id): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    let at = form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "version_at_time")
        .map(|(_, v)| v.into_owned());
    versioned_answer(st, ehr_id, Which::At(at)).await
}

/// `GET ehr/{ehr_id}/versioned_ehr_status/version/{version_uid}`.
pub async fn version_by_uid(
    State(st): State<AppState>,
    Path((ehr_id, uid)): Path<(String, String)>,
) -> Response {
    versioned_answer(st, ehr_id, Which::Version(uid)).await
}
