//! Version history and contributions (ITS-REST 1.0.3), over an item's entry versions
//! ([`cophr_protocol::openehr::versions`]):
//!
//! - `GET ehr/{ehr_id}/versioned_composition/{object id}`: the VERSIONED_COMPOSITION;
//!   `…/revision_history`: every version with its audit (creation, modification, deleted);
//!   `…/version?version_at_time={RFC 3339}`: the version in effect then (the latest
//!   without a time); `…/version/{version_uid}`: that version (an ORIGINAL_VERSION with its
//!   composition, none for the delete).
//! - `POST ehr/{ehr_id}/contribution`: versions (creation, amendment or modification,
//!   deleted) checked whole, then written as entries of one author and time; `GET
//!   ehr/{ehr_id}/contribution/{uid}`: the versions of one contribution.
//!
//! Every read is one audited read of what it shows; what the identity may not see is 404.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cophr_protocol::openehr::versions::{
    self, contribution_json, contribution_uid, revision_history_json, version_json,
    versioned_composition_json, Audit, Change, ChangeType,
};
use cophr_protocol::openehr::{self, Composer};
use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, EntryId, Payload, RecordId, Timestamp};
use serde_json::Value as JsonValue;

use super::super::api::{format_time, parse_time};
use super::{
    clip, etag, find_ehr, find_item, items, latest_of, no_composition, wants_representation, Found,
    OeError, BASE,
};
use crate::http::AppState;

/// One version of an item: (its entry, author, time, what it did).
pub(super) fn version_meta(
    f: &Found,
    n: usize,
) -> Option<(EntryId, ActorId, Timestamp, ChangeType)> {
    if n >= 1 && n <= f.versions.len() {
        let v = &f.versions[n - 1];
        let change = if n == 1 {
            ChangeType::Creation
        } else {
            ChangeType::Modification
        };
        return Some((v.id, v.provenance.author, v.provenance.time, change));
    }
    let d = f.deleted.as_ref().filter(|_| n == f.count())?;
    Some((
        d.id,
        d.provenance.author,
        d.provenance.time,
        ChangeType::Deleted,
    ))
}

fn committer(r: &Record, author: ActorId, time: Timestamp) -> Composer {
    Composer {
        name: r.profile(&author, Some(time)).map(|p| p.name.clone()),
        actor: author.to_string(),
    }
}

/// The versions of one contribution, as the viewer sees them: every version of a mapped
/// item by `author` at `time`, as (item, version number, entry), ordered by entry id.
fn group(all: &[Found], author: ActorId, time: Timestamp) -> Vec<(usize, usize, EntryId)> {
    let mut out = Vec::new();
    for (i, f) in all.iter().enumerate() {
        for n in 1..=f.count() {
            if let Some((id, a, t, _)) = version_meta(f, n) {
                if a == author && t == time {
                    out.push((i, n, id));
                }
            }
        }
    }
    out.sort_by_key(|x| x.2);
    out
}

/// The uid of the contribution a version belongs to.
fn contribution_of(all: &[Found], author: ActorId, time: Timestamp) -> String {
    group(all, author, time)
        .first()
        .map(|x| contribution_uid(&x.2))
        .unwrap_or_default()
}

/// Version `n` of `f` as an ORIGINAL_VERSION.
fn version_of(r: &Record, all: &[Found], f: &Found, n: usize) -> Option<JsonValue> {
    let (_, author, time, change) = version_meta(f, n)?;
    let audit = Audit {
        committer: committer(r, author, time),
        time: format_time(time),
        change,
    };
    let data = match change {
        ChangeType::Deleted => None,
        _ => Some(f.composition(r, n)?),
    };
    let preceding = (n > 1).then(|| openehr::version_uid(&f.item, n - 1));
    Some(version_json(
        &openehr::version_uid(&f.item, n),
        preceding.as_deref(),
        &contribution_of(all, author, time),
        &audit,
        data,
    ))
}

/// An object id as the path gives it (`{uuid}` or `{uuid}::cophr`): 400 otherwise.
fn object_id(s: &str) -> Result<String, OeError> {
    match openehr::parse_uid(s.trim()) {
        Some(u) if u.version.is_none() => Ok(u.object),
        _ => Err(OeError::bad(format!(
            "`{}` is not a versioned object id ({{uuid}} or {{uuid}}::{})",
            clip(s),
            openehr::SYSTEM_ID
        ))),
    }
}

/// What a version request asks for.
enum Which {
    /// The object.
    Object,
    /// Its revision history.
    History,
    /// The version in effect at a time (the latest when `None`).
    At(Option<Timestamp>),
    /// One version, by uid.
    Version(usize),
}

/// Reads one item's versioned composition as `which` asks (one audited read).
fn versioned_read(
    st: &AppState,
    ehr_id: &str,
    object: &str,
    which: &Which,
) -> Result<JsonValue, OeError> {
    let record = find_ehr(st, ehr_id)?;
    let object = object_id(object)?;
    let me = st.actor();
    let now = st.now();
    st.read(now, |rd| {
        rd.record(&record, |r, seen| {
            let v = r.viewer(&me, now);
            let f = find_item(r, &v, &object).ok_or_else(|| no_composition(&object))?;
            match which {
                Which::Object => {
                    seen.add([f.item]);
                    seen.detail("openEHR versioned composition");
                    Ok(versioned_composition_json(
                        &openehr::item_uuid(&f.item),
                        &openehr::ehr_id(&record),
                        &format_time(f.created),
                    ))
                }
                Which::History => {
                    seen.add([f.item]);
                    seen.detail("openEHR revision history");
                    let list: Vec<(String, Audit)> = (1..=f.count())
                        .filter_map(|n| {
                            let (_, author, time, change) = version_meta(&f, n)?;
                            Some((
                                openehr::version_uid(&f.item, n),
                                Audit {
                                    committer: committer(r, author, time),
                                    time: format_time(time),
                                    change,
                                },
                            ))
                        })
                        .collect();
                    Ok(revision_history_json(&list))
                }
                Which::At(_) | Which::Version(_) => {
                    let n = match which {
                        Which::Version(n) => *n,
                        Which::At(Some(t)) => (1..=f.count())
                            .rev()
                            .find(|n| version_meta(&f, *n).is_some_and(|m| m.2 <= *t))
                            .ok_or_else(|| {
                                OeError::not_found(format!(
                                    "composition `{object}` has no version at that time"
                                ))
                            })?,
                        _ => f.count(),
                    };
                    let all = items(r, &v);
                    let out = version_of(r, &all, &f, n).ok_or_else(|| {
                        OeError::not_found(format!(
                            "composition `{object}` has no version {n} (it has {})",
                            f.count()
                        ))
                    })?;
                    if let Some((entry, ..)) = version_meta(&f, n) {
                        seen.add([f.item, entry]);
                    }
                    seen.detail(format!("openEHR composition version {}", f.category.name()));
                    Ok(out)
                }
            }
        })?
    })
}

async fn run_read(st: AppState, ehr_id: String, object: String, which: Which) -> Response {
    let out = st
        .blocking(move |st| Ok(versioned_read(st, &ehr_id, &object, &which)))
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok(b) => (StatusCode::OK, Json(b)).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET ehr/{ehr_id}/versioned_composition/{object id}`.
pub async fn versioned(
    State(st): State<AppState>,
    Path((ehr_id, object)): Path<(String, String)>,
) -> Response {
    run_read(st, ehr_id, object, Which::Object).await
}

/// `GET ehr/{ehr_id}/versioned_composition/{object id}/revision_history`.
pub async fn revision_history(
    State(st): State<AppState>,
    Path((ehr_id, object)): Path<(String, String)>,
) -> Response {
    run_read(st, ehr_id, object, Which::History).await
}

/// `GET ehr/{ehr_id}/versioned_composition/{object id}/version[?version_at_time=]`.
pub async fn version_at(
    State(st): State<AppState>,
    Path((ehr_id, object)): Path<(String, String)>,
    req: Request,
) -> Response {
    let at = form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "version_at_time")
        .map(|(_, v)| v.into_owned());
    let at = match at {
        None => None,
        Some(s) => match parse_time("version_at_time", &s) {
            Ok(t) => Some(t),
            Err(e) => return OeError::from(e).into_response(),
        },
    };
    run_read(st, ehr_id, object, Which::At(at)).await
}

/// `GET ehr/{ehr_id}/versioned_composition/{object id}/version/{version_uid}`.
pub async fn version_by_uid(
    State(st): State<AppState>,
    Path((ehr_id, object, uid)): Path<(String, String, String)>,
) -> Response {
    let want = openehr::parse_uid(uid.trim());
    let Some(n) = want.as_ref().and_then(|w| w.version) else {
        return OeError::bad(format!(
            "`{}` is not a version uid ({{uuid}}::{}::{{n}})",
            clip(&uid),
            openehr::SYSTEM_ID
        ))
        .into_response();
    };
    let same = match (object_id(&object), want) {
        (Ok(o), Some(w)) => o == w.object,
        (Err(e), _) => return e.into_response(),
        _ => false,
    };
    if !same {
        return OeError::not_found(format!(
            "version `{}` is not a version of `{}`",
            clip(&uid),
            clip(&object)
        ))
        .into_response();
    }
    run_read(st, ehr_id, object, Which::Version(n)).await
}

/// One change checked and ready to write.
struct Ready {
    payload: Payload,
    /// The item (for a change of an existing one) and the version number it makes.
    item: Option<(EntryId, usize)>,
}

/// Checks every change against the record as it is (preceding versions the latest,
/// categories, something changed, the identity allowed to write each), writing nothing.
fn check(
    st: &AppState,
    record: &RecordId,
    changes: Vec<Change>,
    now: Timestamp,
) -> Result<Vec<Ready>, OeError> {
    let mut out = Vec::with_capacity(changes.len());
    for (i, c) in changes.into_iter().enumerate() {
        let at = |e: OeError| OeError {
            message: format!("versions[{i}]: {}", e.message),
            path: Some(format!(
                "/versions[{i}]{}",
                e.path.as_deref().unwrap_or_default()
            )),
            ..e
        };
        let ready = match c {
            Change::Create { category, body } => Ready {
                payload: Payload::Create { category, body },
                item: None,
            },
            c => {
                let Some(preceding) = c.preceding().cloned() else {
                    return Err(at(OeError::bad("a change needs its preceding_version_uid")));
                };
                let given = format!(
                    "{}::{}::{}",
                    preceding.object,
                    openehr::SYSTEM_ID,
                    preceding.version.unwrap_or(0)
                );
                let (f, current, latest, old) =
                    latest_of(st, record, &preceding.object, &given).map_err(at)?;
                if given != latest {
                    return Err(at(OeError {
                        latest: Some(latest.clone()),
                        ..OeError::new(
                            StatusCode::PRECONDITION_FAILED,
                            "stale_version",
                            format!(
                                "preceding_version_uid `{given}` is not the latest version ({latest})"
                            ),
                        )
                    }));
                }
                let n = f.current.unwrap_or(f.versions.len()) + 1;
                match c {
                    Change::Modify { category, body, .. } => {
                        if category != f.category {
                            return Err(at(OeError::bad(format!(
                                "this composition is a {} composition; the one sent is {}",
                                f.category.name(),
                                category.name()
                            ))));
                        }
                        if body == old {
                            return Err(at(OeError::bad(
                                "nothing to change: the new version would equal the latest one",
                            )));
                        }
                        Ready {
                            payload: Payload::Amend {
                                target: current,
                                body,
                            },
                            item: Some((f.item, n)),
                        }
                    }
                    _ => Ready {
                        payload: Payload::Delete {
                            target: current,
                            reason: "deleted through an openEHR contribution".into(),
                        },
                        item: Some((f.item, n)),
                    },
                }
            }
        };
        st.session()
            .check_write(record, &ready.payload, now)
            .map_err(|e| at(e.into()))?;
        out.push(ready);
    }
    Ok(out)
}

/// `POST ehr/{ehr_id}/contribution`: every version is checked before any is written; they
/// are then written in order, as entries of the identity at one time.
pub async fn create(
    State(st): State<AppState>,
    Path(ehr_id): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || m.ends_with("+json")
        });
    if !json {
        return OeError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the contribution as canonical JSON (Content-Type: application/json)",
        )
        .into_response();
    }
    let bytes: Bytes = match axum::body::to_bytes(body, versions::MAX_CONTRIBUTION_BYTES + 1).await
    {
        Ok(b) => b,
        Err(_) => {
            return OeError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the contribution is more than {} bytes, the most accepted",
                    versions::MAX_CONTRIBUTION_BYTES
                ),
            )
            .into_response()
        }
    };
    // Read once the record is known: its compositions may be of its extensions' templates.
    let full = wants_representation(&parts.headers);
    let ehr = ehr_id.clone();
    let out = st
        .blocking(move |st| {
            let run = || -> Result<(RecordId, String, JsonValue), OeError> {
                let record = find_ehr(st, &ehr)?;
                let exts = st.store().with_record(&record, super::exts_of)?;
                let changes = versions::parse_contribution_in(&exts, &bytes)
                    .map_err(|e| OeError::from_contribution(&e))?;
                let now = st.now();
                let ready = check(st, &record, changes, now)?;
                let mut written = Vec::with_capacity(ready.len());
                let mut last = None;
                for r in ready {
                    let id = st.session().write(&record, r.payload, now)?;
                    last = Some(id);
                    written.push(match r.item {
                        None => openehr::version_uid(&id, 1),
                        Some((item, n)) => openehr::version_uid(&item, n),
                    });
                }
                let me = st.actor();
                let (uid, body) = st.store().with_record(&record, |r| {
                    let time = last
                        .and_then(|id| r.get(&id))
                        .map_or(now, |e| e.entry().time);
                    let all = items(r, &r.viewer(&me, st.now()));
                    let uid = contribution_of(&all, me, time);
                    let audit = Audit {
                        committer: committer(r, me, time),
                        time: format_time(time),
                        change: ChangeType::Creation,
                    };
                    let body = contribution_json(&uid, &written, &audit);
                    (uid, body)
                })?;
                Ok((record, uid, body))
            };
            Ok(run())
        })
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok((record, uid, body)) => {
            st.changed(record).await;
            let mut resp = if full {
                (StatusCode::CREATED, Json(body)).into_response()
            } else {
                StatusCode::CREATED.into_response()
            };
            if let Some(t) = etag(&uid) {
                resp.headers_mut().insert(header::ETAG, t);
            }
            if let Ok(l) = HeaderValue::from_str(&format!("{BASE}/ehr/{ehr_id}/contribution/{uid}"))
            {
                resp.headers_mut().insert(header::LOCATION, l);
            }
            resp
        }
        Err(e) => e.into_response(),
    }
}

/// `GET ehr/{ehr_id}/contribution/{uid}`: the versions of one contribution the identity
/// sees (one audited read).
pub async fn read(
    State(st): State<AppState>,
    Path((ehr_id, uid)): Path<(String, String)>,
) -> Response {
    let want = uid.trim().to_ascii_lowercase();
    if !openehr::is_uuid(&want) {
        return OeError::bad(format!(
            "`{}` is not a contribution uid (a UUID)",
            clip(&uid)
        ))
        .into_response();
    }
    let out = st
        .blocking(move |st| {
            let run = || -> Result<JsonValue, OeError> {
                let record = find_ehr(st, &ehr_id)?;
                let me = st.actor();
                let now = st.now();
                st.read(now, |rd| {
                    rd.record(&record, |r, seen| {
                        let v = r.viewer(&me, now);
                        let all = items(r, &v);
                        // The smallest entry of each (author, time) a version has, in one
                        // pass; the contribution is the group whose smallest entry gives
                        // `want`.
                        let mut firsts: BTreeMap<(ActorId, Timestamp), EntryId> = BTreeMap::new();
                        for f in &all {
                            for n in 1..=f.count() {
                                if let Some((id, a, t, _)) = version_meta(f, n) {
                                    let slot = firsts.entry((a, t)).or_insert(id);
                                    if id < *slot {
                                        *slot = id;
                                    }
                                }
                            }
                        }
                        let (author, time) = firsts
                            .iter()
                            .find(|(_, id)| contribution_uid(id) == want)
                            .map(|(k, _)| *k)
                            .ok_or_else(|| {
                                OeError::not_found(format!(
                                    "no contribution `{}` in this EHR",
                                    clip(&want)
                                ))
                            })?;
                        let members = group(&all, author, time);
                        let changes: Vec<ChangeType> = members
                            .iter()
                            .filter_map(|(i, n, _)| version_meta(&all[*i], *n).map(|m| m.3))
                            .collect();
                        let change = if changes.iter().all(|c| *c == ChangeType::Creation) {
                            ChangeType::Creation
                        } else if changes.iter().all(|c| *c == ChangeType::Deleted) {
                            ChangeType::Deleted
                        } else {
                            ChangeType::Modification
                        };
                        let uids: Vec<String> = members
                            .iter()
                            .map(|(i, n, _)| openehr::version_uid(&all[*i].item, *n))
                            .collect();
                        seen.add(members.iter().map(|x| x.2));
                        seen.detail("openEHR contribution");
                        Ok(contribution_json(
                            &want,
                            &uids,
                            &Audit {
                                committer: committer(r, author, time),
                                time: format_time(time),
                                change,
                            },
                        ))
                    })?
                })
            };
            Ok(run())
        })
        .await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok(b) => (StatusCode::OK, Json(b)).into_response(),
        Err(e) => e.into_response(),
    }
}
