//! `POST /fhir/r4`: transaction and batch Bundles.
//!
//! Each entry is a `POST` (a new item: the resource is mapped by `cophr_protocol::fhir`,
//! keeping the original JSON and its `fullUrl`) or a `PUT [type]/[id]` of an item held here
//! (an amend of its current version). New items go to the record their `subject`/`patient`
//! names (`Patient/<record id>`), else to the identity's own record. Resources are kept as
//! sent (references included, with their `fullUrl`), so they read back equal; the source
//! system (the resource's `meta.source`, else the Bundle's) is kept for their Provenance.
//!
//! A transaction is all or nothing: every entry is mapped and checked against the record's
//! rules first, then everything is written in one durable write with one audit event;
//! on any failure nothing is stored and the answer is that entry's OperationOutcome. A
//! batch does each entry on its own and reports each entry's `response.status`.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use axum::response::Response;
use cophr_protocol::audit::Action;
use cophr_protocol::fhir::{self, BundleItem, ImportMeta};
use cophr_protocol::fold;
use cophr_protocol::{ActorId, EntryId, Payload, RecordId};
use serde_json::{json, Value as Json};

use super::{
    base_url, collect, fhir_response, find_one, resources, view, visible_records, Outcome,
};
use crate::http::{AppState, MAX_BODY};
use crate::session::explain;
use crate::store::{BatchError, BatchInfo, MAX_WRITE_ALL};

/// A refusal explained in the identity's terms.
fn explain_in(
    st: &AppState,
    record: &RecordId,
    r: cophr_protocol::record::Rejection,
) -> crate::session::SessionError {
    st.session()
        .store_error(record, crate::store::StoreError::Rejected(r))
}

/// One entry's planned write.
#[derive(Debug, Clone)]
struct Plan {
    record: RecordId,
    resource_type: String,
    payload: Payload,
}

fn is_fhir_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/fhir+json" || m == "application/json"
        })
        .unwrap_or(false)
}

/// Answers a Bundle POSTed to the base.
pub(super) async fn bundle(st: AppState, req: Request) -> Result<Response, Outcome> {
    if !is_fhir_json(&req) {
        return Err(Outcome::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "send the Bundle as `Content-Type: application/fhir+json` (or application/json)",
        ));
    }
    let base = base_url(req.headers());
    let bytes = Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Outcome::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-long",
                format!(
                    "the request body is more than the {} MiB limit",
                    MAX_BODY >> 20
                ),
            )
        } else {
            Outcome::invalid(format!("cannot read the request body: {e}"))
        }
    })?;
    let bundle = fhir::parse(&bytes).map_err(|e| Outcome::from_fhir(&e))?;
    let kind = fhir::bundle_type(&bundle).map_err(|e| Outcome::from_fhir(&e))?;
    let transaction = match kind {
        "transaction" => true,
        "batch" => false,
        other => {
            return Err(Outcome::new(
                StatusCode::BAD_REQUEST,
                "not-supported",
                format!(
                    "POST to {} takes a transaction or batch Bundle, not a {other}",
                    super::BASE
                ),
            ))
        }
    };
    let items = fhir::bundle_items(&bundle).map_err(|e| Outcome::from_fhir(&e))?;
    let urls: Vec<String> = bundle["entry"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["request"]["url"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default();
    // The source system (kept as provenance): the resource's own `meta.source`, else the
    // Bundle's.
    let source = bundle["meta"]["source"].as_str().map(str::to_owned);
    // Store work on a blocking thread, within the server's limit on concurrent store work.
    let (body, changed) = st
        .blocking(move |st| {
            Ok(if transaction {
                run_transaction(st, &base, &items, &urls, source.as_deref())
            } else {
                Ok(run_batch(st, &base, &items, &urls, source.as_deref()))
            })
        })
        .await??;
    for r in changed {
        st.changed(r).await;
    }
    Ok(fhir_response(StatusCode::OK, &body))
}

/// The record a resource names as its patient (`Patient/<record id>`), if any.
fn named_record(resource: &Json) -> Option<RecordId> {
    ["subject", "patient"].iter().find_map(|el| {
        let r = resource.get(el)?.get("reference")?.as_str()?;
        let mut parts = r.rsplit('/');
        let id = parts.next()?;
        (parts.next()? == "Patient").then_some(())?;
        id.parse::<ActorId>().ok()
    })
}

/// The record new items go to when a resource names none: the identity's own.
fn default_record(st: &AppState) -> Result<RecordId, Outcome> {
    let me = st.actor();
    if st.store().holds(&me)? {
        return Ok(me);
    }
    Err(Outcome::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "business-rule",
        "the resource names no record (`subject`/`patient` as Patient/<record id>) and this \
         identity has no record of its own here",
    ))
}

fn at(o: Outcome, path: &str) -> Outcome {
    Outcome {
        expression: o.expression.or_else(|| Some(path.to_owned())),
        message: format!("{path}: {}", o.message),
        ..o
    }
}

/// Maps one Bundle entry to the write it asks for.
fn plan(
    st: &AppState,
    item: &BundleItem,
    url: &str,
    source: Option<&str>,
) -> Result<Plan, Outcome> {
    let own = item.resource["meta"]["source"].as_str();
    let imported = fhir::import_with(
        &item.resource,
        &ImportMeta {
            source: own.or(source),
            full_url: item.full_url.as_deref(),
        },
    )
    .map_err(|e| at(Outcome::from_fhir(&e), &item.path))?;
    let url_path = url.split('?').next().unwrap_or_default();
    let mut segs = url_path
        .trim_start_matches(&format!("{}/", super::BASE))
        .split('/');
    let url_type = segs.next().unwrap_or_default();
    if url_type != imported.resource_type {
        return Err(at(
            Outcome::invalid(format!(
                "request.url `{}` does not name the resource's type {}",
                url.chars().take(80).collect::<String>(),
                imported.resource_type
            )),
            &item.path,
        ));
    }
    match item.method.as_deref() {
        Some("PUT") => {
            let Some(id) = segs.next().filter(|s| !s.is_empty()) else {
                return Err(at(
                    Outcome::invalid("a PUT needs request.url `[type]/[id]`"),
                    &item.path,
                ));
            };
            let found = find_one(st, url_type, id).map_err(|o| {
                at(
                    Outcome {
                        message: format!(
                            "{} (this server assigns ids: POST new resources)",
                            o.message
                        ),
                        ..o
                    },
                    &item.path,
                )
            })?;
            let (Some(_), Some(current)) = (&found.resource, found.current) else {
                return Err(at(
                    Outcome::new(
                        StatusCode::GONE,
                        "deleted",
                        format!("{url_type}/{id} was deleted"),
                    ),
                    &item.path,
                ));
            };
            let category = st
                .store()
                .with_record(&found.record, |r| r.category_of(&current).cloned())?;
            if category.as_ref() != Some(&imported.category) {
                return Err(at(
                    Outcome::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "business-rule",
                        format!(
                            "the new version maps to {} but {url_type}/{id} is in {}",
                            imported.category,
                            category.map_or_else(|| "no category".to_owned(), |c| c.to_string())
                        ),
                    ),
                    &item.path,
                ));
            }
            Ok(Plan {
                record: found.record,
                resource_type: imported.resource_type,
                payload: Payload::Amend {
                    target: current,
                    body: imported.body,
                },
            })
        }
        _ => {
            let record = match named_record(&item.resource) {
                Some(r) if visible_records(st)?.contains(&r) => r,
                Some(r) => {
                    return Err(at(
                        Outcome::not_found(format!("no record {r} is held here")),
                        &item.path,
                    ))
                }
                None => default_record(st).map_err(|o| at(o, &item.path))?,
            };
            Ok(Plan {
                record,
                resource_type: imported.resource_type,
                payload: Payload::Create {
                    category: imported.category,
                    body: imported.body,
                },
            })
        }
    }
}

/// The response entry for a written item: its id (the record id for the record's patient),
/// the version the entry made, and when.
fn created(st: &AppState, base: &str, plan: &Plan, entry: EntryId) -> Json {
    let now = st.now();
    let me = st.actor();
    let fallback = (entry.to_string(), 1, now);
    let (id, version, updated) = if plan.resource_type == "Patient" {
        // The record's patient is served under the record id.
        collect(st, &[plan.record], "Patient")
            .ok()
            .and_then(|all| {
                all.into_iter()
                    .find(|f| f.item == Some(entry) || f.current == Some(entry))
            })
            .map_or(fallback, |f| (f.id, f.version, f.updated))
    } else {
        st.store()
            .with_record(&plan.record, |r| {
                let viewer = r.viewer(&me, now);
                let time = r.get(&entry).map_or(now, |e| e.entry().time);
                match &plan.payload {
                    Payload::Amend { target, .. } => {
                        let root = fold::history(r, &viewer, target).map_or(entry, |h| h.item);
                        let n = view::versions(r, &viewer, &root, &root.to_string())
                            .iter()
                            .find(|v| v.entry == entry)
                            .map_or(1, |v| v.n);
                        (root.to_string(), n, time)
                    }
                    _ => (entry.to_string(), 1, time),
                }
            })
            .unwrap_or(fallback)
    };
    let amend = matches!(plan.payload, Payload::Amend { .. });
    json!({
        "fullUrl": format!("{base}/{}/{id}", plan.resource_type),
        "response": {
            "status": if amend { "200 OK" } else { "201 Created" },
            "location": format!("{}/{id}/_history/{version}", plan.resource_type),
            "etag": format!("W/\"{version}\""),
            "lastModified": resources::instant(updated),
        }
    })
}

fn run_transaction(
    st: &AppState,
    base: &str,
    items: &[BundleItem],
    urls: &[String],
    source: Option<&str>,
) -> Result<(Json, Vec<RecordId>), Outcome> {
    let mut plans = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        plans.push(plan(
            st,
            item,
            urls.get(i).map_or("", String::as_str),
            source,
        )?);
    }
    let Some(record) = plans.first().map(|p| p.record) else {
        let b = resources::bundle("transaction-response", base, Vec::new(), None);
        return Ok((b, Vec::new()));
    };
    if plans.len() > MAX_WRITE_ALL {
        return Err(Outcome::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-long",
            format!(
                "a transaction writes at most {MAX_WRITE_ALL} resources (this one has {})",
                plans.len()
            ),
        ));
    }
    if let Some(p) = plans.iter().find(|p| p.record != record) {
        return Err(Outcome::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "business-rule",
            format!(
                "a transaction writes into one record; it names both {record} and {}",
                p.record
            ),
        ));
    }
    // Check every write against the record as the earlier ones leave it, so a refusal
    // names its entry and nothing is stored.
    let key = st.keypair().clone();
    let now = st.now();
    let device = st.device().map(str::to_owned);
    st.store().with_record(&record, |r| {
        let mut trial = r.clone();
        for (i, p) in plans.iter().enumerate() {
            let vs = st
                .store()
                .prepare(
                    &mut trial,
                    &key,
                    p.payload.clone(),
                    now,
                    device.clone(),
                    true,
                )
                .map_err(|e| at(Outcome::from(explain(r, &key.actor(), e)), &items[i].path))?;
            for v in vs {
                trial
                    .apply(v)
                    .map_err(|e| at(Outcome::from(explain(r, &key.actor(), e)), &items[i].path))?;
            }
        }
        Ok::<(), Outcome>(())
    })??;
    let session = st.session();
    session.publish_profile(&record, now)?;
    let ids = st
        .store()
        .write_all(
            &record,
            &key,
            plans.iter().map(|p| p.payload.clone()).collect(),
            BatchInfo {
                action: Action::Import,
                detail: Some(format!("FHIR transaction: {} resources", plans.len())),
            },
            now,
            device,
        )
        .map_err(|e| match e {
            BatchError::TooMany { .. } => {
                Outcome::new(StatusCode::PAYLOAD_TOO_LARGE, "too-long", e.to_string())
            }
            BatchError::Refused { index, error } => at(
                Outcome::from(explain_in(st, &record, error)),
                items.get(index).map_or("Bundle.entry", |i| i.path.as_str()),
            ),
            BatchError::Store(e) => e.into(),
        })?;
    let entries: Vec<Json> = plans
        .iter()
        .zip(ids)
        .map(|(p, id)| created(st, base, p, id))
        .collect();
    Ok((
        resources::bundle("transaction-response", base, entries, None),
        vec![record],
    ))
}

fn status_line(s: StatusCode) -> String {
    format!(
        "{} {}",
        s.as_u16(),
        s.canonical_reason().unwrap_or_default()
    )
}

fn run_batch(
    st: &AppState,
    base: &str,
    items: &[BundleItem],
    urls: &[String],
    source: Option<&str>,
) -> (Json, Vec<RecordId>) {
    let session = st.session();
    let mut changed = Vec::new();
    let mut entries = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let result = plan(st, item, urls.get(i).map_or("", String::as_str), source).and_then(|p| {
            let id = session
                .write(&p.record, p.payload.clone(), st.now())
                .map_err(|e| at(Outcome::from(e), &item.path))?;
            Ok((p, id))
        });
        match result {
            Ok((p, id)) => {
                if !changed.contains(&p.record) {
                    changed.push(p.record);
                }
                entries.push(created(st, base, &p, id));
            }
            Err(o) => entries.push(json!({
                "response": {"status": status_line(o.status), "outcome": o.body()}
            })),
        }
    }
    (
        resources::bundle("batch-response", base, entries, None),
        changed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_references() {
        let a = ActorId([7; 32]);
        let r = json!({"subject": {"reference": format!("Patient/{a}")}});
        assert_eq!(named_record(&r), Some(a));
        let r = json!({"patient": {"reference": format!("http://x/fhir/r4/Patient/{a}")}});
        assert_eq!(named_record(&r), Some(a));
        assert_eq!(
            named_record(&json!({"subject": {"reference": "urn:uuid:1"}})),
            None
        );
        assert_eq!(
            named_record(&json!({"subject": {"reference": format!("Group/{a}")}})),
            None
        );
    }
}
