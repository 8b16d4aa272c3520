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
use cophr_protocol::schema;
use cophr_protocol::{ActorId, Category, EntryId, Payload, RecordId, Value};
use serde_json::{json, Value as Json};

use super::{
    base_url, binary, collect, fhir_response, find_one, resources, view, visible_records, Outcome,
};
use crate::http::{AppState, MAX_BODY};
use crate::session::explain;
use crate::store::{BatchError, BatchInfo, Held, Holdings, MAX_WRITE_ALL};
use std::collections::HashMap;

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
    /// Waiting Binaries the entry names (linked to its item once written).
    links: Vec<String>,
    /// Binaries stored for this entry (its attachment's data, stored apart), forgotten
    /// if the write fails.
    made: Vec<String>,
    /// Held already as sent: nothing is written, and the answer names the version held
    /// (the payload then amends that version, for the answer's sake only).
    unchanged: bool,
    /// The resource's place in the record's holdings, once written.
    held: Option<HeldKey>,
}

/// Where a written resource goes in its record's [`Holdings`].
#[derive(Debug, Clone)]
enum HeldKey {
    /// By identity (type and id).
    Id((String, String), Category, [u8; 32]),
    /// By content digest (no id).
    Digest([u8; 32]),
}

/// What the records a request writes into hold of FHIR resources, loaded once per record
/// per request ([`Store::fhir_holdings`]) and kept up to date as it writes: a `POST` of a
/// resource held already stores nothing, a changed one amends its entry.
#[derive(Default)]
struct HeldCache {
    records: HashMap<RecordId, Holdings>,
    /// Names of the request's Medications, Practitioners, Encounters … by how references
    /// name them (`fhir::reference_names`): a MedicationRequest naming its drug only by
    /// reference shows its name, and an entry's summary names the visit and clinician.
    names: fhir::Names,
}

impl HeldCache {
    /// A cache for a request of `items`.
    fn of(items: &[BundleItem]) -> HeldCache {
        let mut names = HashMap::new();
        for i in items {
            for (k, v) in fhir::reference_names(&i.resource, i.full_url.as_deref()) {
                if names.len() < fhir::MAX_NAMES {
                    names.insert(k, v);
                }
            }
        }
        HeldCache {
            records: HashMap::new(),
            names,
        }
    }

    fn load(&mut self, st: &AppState, record: &RecordId) -> Result<&mut Holdings, Outcome> {
        if !self.records.contains_key(record) {
            let h = st.store().fhir_holdings(record, &st.actor(), st.now())?;
            self.records.insert(*record, h);
        }
        Ok(self.records.entry(*record).or_default())
    }

    /// Notes a plan's outcome: written as `id` (`Some`), or not written (`None`: the
    /// record's holdings are loaded again when next needed).
    fn written(&mut self, plan: &Plan, id: Option<EntryId>) {
        let (Some(key), Some(h)) = (&plan.held, self.records.get_mut(&plan.record)) else {
            return;
        };
        match (key, id) {
            (HeldKey::Id(k, category, hash), Some(id)) => {
                h.by_id.insert(
                    k.clone(),
                    Held {
                        current: Some(id),
                        category: category.clone(),
                        hash: *hash,
                    },
                );
            }
            (HeldKey::Digest(hash), Some(id)) => {
                h.no_id.insert(*hash, Some(id));
            }
            (_, None) => {
                self.records.remove(&plan.record);
            }
        }
    }
}

/// Attachment data larger than this (decoded) is stored apart, as a Binary the entry
/// names, rather than kept in the entry (`docs/documents.md`, "FHIR").
pub const MAX_INLINE_DATA: usize = 256 * 1024;

/// A resource's attachment as prepared for import: the resource changed (its data stored
/// apart), what the attachment links to, and the Binary stored for it.
type Prepared = (Option<Json>, Option<binary::Linked>, Option<String>);

/// A DocumentReference's or Media's attachment prepared for import: data larger than
/// [`MAX_INLINE_DATA`] stored apart (the resource kept names it as `Binary/<id>`), and the
/// Binary its url names here resolved.
fn prepare_attachment(
    st: &AppState,
    resource: &Json,
    links: &binary::Links,
) -> Result<Prepared, Outcome> {
    let Some(att) = fhir::attachment_of(resource) else {
        return Ok((None, None, None));
    };
    let mut made = None;
    let mut rewritten = None;
    if let Some(data) = att.get("data").and_then(Json::as_str) {
        if data.len() / 4 * 3 <= MAX_INLINE_DATA {
            // Kept in the entry (or refused by the mapping, with its path).
            return Ok((None, None, None));
        }
        let content_type = att.get("contentType").and_then(Json::as_str);
        let binary = json!({"resourceType": "Binary", "contentType": content_type, "data": data});
        let id = binary::store_resource(st, &binary).map_err(|o| Outcome {
            message: format!("the attachment's data: {}", o.message),
            ..o
        })?;
        let mut r = resource.clone();
        let att = match r["resourceType"].as_str() {
            Some("Media") => &mut r["content"],
            _ => &mut r["content"][0]["attachment"],
        };
        if let Some(a) = att.as_object_mut() {
            a.remove("data");
            a.insert("url".into(), Json::String(format!("Binary/{id}")));
        }
        made = Some(id);
        rewritten = Some(r);
    }
    let r = rewritten.as_ref().unwrap_or(resource);
    let url = fhir::attachment_of(r)
        .and_then(|a| a.get("url"))
        .and_then(Json::as_str);
    let linked = match url {
        Some(u) => match binary::resolve(st, links, u) {
            Ok(l) => l,
            Err(o) => {
                if let Some(m) = &made {
                    st.binaries().forget(m);
                }
                return Err(o);
            }
        },
        None => None,
    };
    Ok((rewritten, linked, made))
}

/// Puts a linked file's fields in an imported body, checked: its media type must be the
/// one the attachment declares, and the body valid.
fn with_file(body: Value, resource: &Json, linked: &binary::Linked) -> Result<Value, Outcome> {
    let Value::Map(mut m) = body else {
        return Err(Outcome::invalid("not a map of fields"));
    };
    let declared = fhir::attachment_of(resource)
        .and_then(|a| a.get("contentType"))
        .and_then(Json::as_str);
    let found = linked.fields.get("media-type").and_then(Value::as_text);
    if let (Some(d), Some(f)) = (declared, found) {
        if !d.eq_ignore_ascii_case(f) {
            return Err(Outcome::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "business-rule",
                format!("the attachment says {d} but the Binary it names is {f}"),
            ));
        }
    }
    for (k, v) in &linked.fields {
        m.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let body = Value::Map(m);
    schema::validate(&Category::Documents, &body).map_err(|e| {
        Outcome::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "business-rule",
            format!("documents: {e}"),
        )
    })?;
    Ok(body)
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
    let headers = req.headers().clone();
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
    let bytes = super::body_text(&headers, bytes)?;
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
    if transaction {
        duplicate_full_url(&items)?;
    }
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

/// Refuses a transaction in which two entries share one `fullUrl` (FHIR: a `fullUrl` is
/// unique in a Bundle, which references rely on; otherwise the transaction would write both
/// and a reference to it would name either).
fn duplicate_full_url(items: &[BundleItem]) -> Result<(), Outcome> {
    let mut seen: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for item in items {
        let Some(u) = item.full_url.as_deref() else {
            continue;
        };
        if let Some(first) = seen.insert(u, &item.path) {
            return Err(Outcome {
                expression: Some(format!("{}.fullUrl", item.path)),
                ..Outcome::invalid(format!(
                    "{} has the fullUrl `{}` of {first} too: a fullUrl names one entry of a \
                     transaction; nothing was stored",
                    item.path,
                    u.chars().take(120).collect::<String>()
                ))
            });
        }
    }
    Ok(())
}

/// Refuses a transaction holding another patient's resources than the record's (a record
/// holds one patient's data), naming the first such entry ([`PatientCheck`]).
fn one_patient<'a>(
    st: &AppState,
    record: &RecordId,
    items: impl Iterator<Item = &'a BundleItem> + Clone,
) -> Result<(), Outcome> {
    let check = PatientCheck::new(st, record, items.clone())?;
    match items.filter_map(|i| check.refusal(i)).next() {
        Some(o) => Err(o),
        None => Ok(()),
    }
}

/// Whose data a Bundle's entries are, against a record's one patient: the record's
/// Patient resources (matched by id and identifiers such as the NHS number,
/// `fhir::PatientIndex`), else the Bundle's only Patient. An entry naming another Patient,
/// or a `Patient/…` that is neither the record's nor `Patient/<record id>`, is refused
/// with its entry's path; when the record has no Patient and the Bundle holds several,
/// every Patient of them is refused (which is the record's cannot be told).
struct PatientCheck {
    index: fhir::PatientIndex,
    /// The record's patient, when known.
    mine: Option<usize>,
    /// Patients in the Bundle when the record has none and there are several.
    several: Option<usize>,
    record: RecordId,
}

impl PatientCheck {
    fn new<'a>(
        st: &AppState,
        record: &RecordId,
        items: impl Iterator<Item = &'a BundleItem>,
    ) -> Result<PatientCheck, Outcome> {
        let me = st.actor();
        let now = st.now();
        let keys: Vec<fhir::PatientKey> = st.store().with_record(record, |r| {
            let viewer = r.viewer(&me, now);
            fold::current(r, &viewer)
                .items
                .iter()
                .filter(|i| i.category == Category::Demographics)
                .filter_map(|i| {
                    let text = i.body.get(schema::FHIR_RESOURCE)?.as_text()?;
                    let j: Json = serde_json::from_str(text).ok()?;
                    // By id and identifiers: a `fullUrl` names an entry of one Bundle only.
                    Some(fhir::PatientIndex::keys_of(&j, None))
                })
                .flatten()
                .collect()
        })?;
        let mut index = fhir::PatientIndex::default();
        let mut mine = None;
        if !keys.is_empty() {
            mine = Some(
                index
                    .add_keys(&keys)
                    .map_err(|e| Outcome::invalid(e.to_string()))?,
            );
        }
        for item in items {
            if item.resource["resourceType"] == "Patient" {
                index
                    .add(&item.resource, item.full_url.as_deref())
                    .map_err(|e| refuse(item, e.to_string()))?;
            }
        }
        let mut several = None;
        if mine.is_none() {
            match index.len() {
                0 => {}
                1 => mine = index.patients().first().copied(),
                n => several = Some(n),
            }
        }
        Ok(PatientCheck {
            mine: mine.map(|m| index.canonical(m)),
            index,
            several,
            record: *record,
        })
    }

    /// Why `item` may not be written into the record, if it may not.
    fn refusal(&self, item: &BundleItem) -> Option<Outcome> {
        if let Some(n) = self.several {
            return (item.resource["resourceType"] == "Patient").then(|| {
                refuse(
                    item,
                    format!(
                        "the Bundle holds {n} patients; a record holds one patient's data: \
                         nothing was stored"
                    ),
                )
            });
        }
        let mine = self.mine?;
        let own = format!("Patient/{}", self.record);
        let other = match self.index.owner(&item.resource, item.full_url.as_deref()) {
            fhir::Owner::Patient(p) if p != mine => Some(self.index.label(p).to_owned()),
            fhir::Owner::Unknown(r)
                if !(r == own || r.ends_with(&format!("/{own}")))
                    && named_record(&item.resource) != Some(self.record) =>
            {
                Some(r)
            }
            _ => None,
        }?;
        Some(refuse(
            item,
            format!(
                "it is about another patient ({other}) than the record's ({}); a record holds \
                 one patient's data: nothing was stored",
                self.index.label(mine)
            ),
        ))
    }
}

/// A refusal of one entry under the one-patient rule (422, naming the entry).
fn refuse(item: &BundleItem, msg: String) -> Outcome {
    at(
        Outcome::new(StatusCode::UNPROCESSABLE_ENTITY, "business-rule", msg),
        &item.path,
    )
}

/// The record a resource names as its patient (`Patient/<record id>`), if any: in
/// `subject`, `patient`, a Task's `for` or an Appointment's participants
/// ([`fhir::patient_refs`]).
fn named_record(resource: &Json) -> Option<RecordId> {
    fhir::patient_refs(resource).into_iter().find_map(|r| {
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
    links: &binary::Links,
    held: &mut HeldCache,
) -> Result<Plan, Outcome> {
    let (rewritten, linked, made) =
        prepare_attachment(st, &item.resource, links).map_err(|o| at(o, &item.path))?;
    let forget = |o: Outcome| {
        if let Some(m) = &made {
            st.binaries().forget(m);
        }
        o
    };
    let mut plan = plan_entry(st, item, rewritten.as_ref(), url, source, held).map_err(forget)?;
    if let Some(l) = linked {
        let resource = rewritten.as_ref().unwrap_or(&item.resource);
        if let Some(r) = l.record.filter(|r| *r != plan.record) {
            return Err(forget(at(
                Outcome::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "business-rule",
                    format!(
                        "the attachment names the Binary of a document in record {r}; an \
                         entry of record {} may not name it (send the file again)",
                        plan.record
                    ),
                ),
                &item.path,
            )));
        }
        let body = match &mut plan.payload {
            Payload::Create { body, .. } | Payload::Amend { body, .. } => body,
            _ => return Err(forget(Outcome::invalid("not a create or amend"))),
        };
        if body.get("data").is_none() {
            *body = with_file(std::mem::replace(body, Value::Null), resource, &l)
                .map_err(|o| forget(at(o, &item.path)))?;
            plan.links.extend(l.pending);
        }
    }
    plan.made.extend(made);
    Ok(plan)
}

/// Maps one Bundle entry (`resource`: its resource as prepared, if changed) to the write
/// it asks for.
fn plan_entry(
    st: &AppState,
    item: &BundleItem,
    resource: Option<&Json>,
    url: &str,
    source: Option<&str>,
    held: &mut HeldCache,
) -> Result<Plan, Outcome> {
    let resource = resource.unwrap_or(&item.resource);
    let own = resource["meta"]["source"].as_str();
    let imported = fhir::import_with(
        resource,
        &ImportMeta {
            source: own.or(source),
            full_url: item.full_url.as_deref(),
            names: Some(&held.names),
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
                links: Vec::new(),
                made: Vec::new(),
                unchanged: false,
                held: None,
            })
        }
        _ => {
            let record = match named_record(resource) {
                Some(r) if visible_records(st)?.contains(&r) => r,
                Some(r) => {
                    return Err(at(
                        Outcome::not_found(format!("no record {r} is held here")),
                        &item.path,
                    ))
                }
                None => default_record(st).map_err(|o| at(o, &item.path))?,
            };
            // Held already (by identity, else by content): unchanged stores nothing, a
            // change amends the entry (a new version), as an import does.
            let hash = fhir::content_hash(&item.resource);
            let key = fhir::identity(&item.resource);
            let holdings = held.load(st, &record)?;
            let same_as_earlier = || {
                at(
                    Outcome::invalid(format!(
                        "{} is the same resource as an earlier entry of this transaction: \
                         send one version of it; nothing was stored",
                        item.path
                    )),
                    &item.path,
                )
            };
            let found = match &key {
                Some(k) => holdings
                    .by_id
                    .get(k)
                    .map(|h| (h.current, h.hash == hash, Some(h.category.clone()))),
                None => holdings.no_id.get(&hash).map(|c| (*c, true, None)),
            };
            let (payload, unchanged) = match found {
                Some((None, _, _)) => return Err(same_as_earlier()),
                Some((Some(_), _, Some(c))) if c != imported.category => {
                    return Err(at(
                        Outcome::new(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "business-rule",
                            format!(
                                "the new version maps to {} but the {} held as {} is in {c}",
                                imported.category,
                                imported.resource_type,
                                key.as_ref().map_or("", |k| k.1.as_str())
                            ),
                        ),
                        &item.path,
                    ))
                }
                Some((Some(current), same, _)) => (
                    Payload::Amend {
                        target: current,
                        body: imported.body,
                    },
                    same,
                ),
                None => (
                    Payload::Create {
                        category: imported.category.clone(),
                        body: imported.body,
                    },
                    false,
                ),
            };
            let held_key = match key {
                Some(k) => HeldKey::Id(k, imported.category, hash),
                None => HeldKey::Digest(hash),
            };
            if !unchanged {
                // Pending until written: a second entry of it in this request is refused
                // (a transaction) or amends what the first wrote (a batch).
                match &held_key {
                    HeldKey::Id(k, c, h) => {
                        holdings.by_id.insert(
                            k.clone(),
                            Held {
                                current: None,
                                category: c.clone(),
                                hash: *h,
                            },
                        );
                    }
                    HeldKey::Digest(h) => {
                        holdings.no_id.insert(*h, None);
                    }
                }
            }
            Ok(Plan {
                record,
                resource_type: imported.resource_type,
                payload,
                links: Vec::new(),
                made: Vec::new(),
                unchanged,
                held: Some(held_key),
            })
        }
    }
}

/// The response entry for a resource held already as sent: nothing written; `200 OK`
/// naming the version held (`current`), with an outcome saying so.
fn held_already(st: &AppState, base: &str, plan: &Plan, current: EntryId) -> Json {
    let mut made = created(st, base, plan, current);
    made["response"]["status"] = json!("200 OK");
    made["response"]["outcome"] = resources::ok_outcome(
        "held already as sent (a change of meta alone is not a change): nothing was stored",
    );
    made
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
    let mut made = json!({
        "fullUrl": format!("{base}/{}/{id}", plan.resource_type),
        "response": {
            "status": if amend { "200 OK" } else { "201 Created" },
            "location": format!("{}/{id}/_history/{version}", plan.resource_type),
            "etag": format!("W/\"{version}\""),
            "lastModified": resources::instant(updated),
        }
    });
    // Warnings the import raised (implausible values, kept in the entry) are shown.
    let warnings = match &plan.payload {
        Payload::Create { body, .. } | Payload::Amend { body, .. } => {
            body.get(schema::FHIR_WARNINGS).and_then(Value::as_text)
        }
        _ => None,
    };
    if let Some(w) = warnings {
        made["response"]["outcome"] = resources::warnings_outcome(w);
    }
    made
}

/// The item an entry written by `plan` belongs to (the entry for a create).
fn item_of(st: &AppState, plan: &Plan, entry: EntryId) -> EntryId {
    let Payload::Amend { target, .. } = &plan.payload else {
        return entry;
    };
    let me = st.actor();
    let now = st.now();
    st.store()
        .with_record(&plan.record, |r| {
            fold::history(r, &r.viewer(&me, now), target).map_or(entry, |h| h.item)
        })
        .unwrap_or(entry)
}

/// Notes the waiting Binaries a written entry names as linked to its item.
fn link_written(st: &AppState, plan: &Plan, entry: EntryId) {
    if plan.links.is_empty() {
        return;
    }
    let item = item_of(st, plan, entry);
    for id in &plan.links {
        st.binaries().link(id, item);
    }
}

/// The response entry for a Binary stored from a Bundle.
fn binary_created(st: &AppState, base: &str, id: &str) -> Json {
    json!({
        "fullUrl": format!("{base}/Binary/{id}"),
        "response": {
            "status": "201 Created",
            "location": format!("Binary/{id}/_history/1"),
            "etag": "W/\"1\"",
            "lastModified": resources::instant(st.now()),
        }
    })
}

fn is_binary(item: &BundleItem) -> bool {
    item.resource["resourceType"] == "Binary"
}

/// Stores a Bundle's Binary entry as a waiting Binary (POST only).
fn store_binary(st: &AppState, item: &BundleItem) -> Result<String, Outcome> {
    if item.method.as_deref() == Some("PUT") {
        return Err(at(
            Outcome::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "not-supported",
                "a Binary is created (POST), never updated",
            ),
            &item.path,
        ));
    }
    binary::store_resource(st, &item.resource).map_err(|o| at(o, &item.path))
}

fn run_transaction(
    st: &AppState,
    base: &str,
    items: &[BundleItem],
    urls: &[String],
    source: Option<&str>,
) -> Result<(Json, Vec<RecordId>), Outcome> {
    // Binaries first, so the resources naming them (by `fullUrl`) find them; forgotten
    // again if the transaction fails (their sealed bytes stay, unreferenced).
    let mut made: Vec<String> = Vec::new();
    let result = transaction_steps(st, base, items, urls, source, &mut made);
    if result.is_err() {
        for id in &made {
            st.binaries().forget(id);
        }
    }
    result
}

fn transaction_steps(
    st: &AppState,
    base: &str,
    items: &[BundleItem],
    urls: &[String],
    source: Option<&str>,
    made: &mut Vec<String>,
) -> Result<(Json, Vec<RecordId>), Outcome> {
    let mut links = binary::Links {
        base: base.to_owned(),
        ..Default::default()
    };
    let mut binaries: Vec<(usize, String)> = Vec::new();
    for (i, item) in items.iter().enumerate().filter(|(_, i)| is_binary(i)) {
        let id = store_binary(st, item)?;
        made.push(id.clone());
        if let Some(u) = &item.full_url {
            links.urns.insert(u.clone(), id.clone());
        }
        binaries.push((i, id));
    }
    let mut plans = Vec::with_capacity(items.len());
    let mut held = HeldCache::of(items);
    for (i, item) in items.iter().enumerate().filter(|(_, i)| !is_binary(i)) {
        let p = plan(
            st,
            item,
            urls.get(i).map_or("", String::as_str),
            source,
            &links,
            &mut held,
        )?;
        made.extend(p.made.iter().cloned());
        plans.push((i, p));
    }
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
    let mut response: Vec<Option<Json>> = vec![None; items.len()];
    for (i, id) in &binaries {
        response[*i] = Some(binary_created(st, base, id));
    }
    // Nothing to write (Binaries only, or every resource held already): the answers so
    // far, no record changed.
    let nothing_written = |response: Vec<Option<Json>>| {
        let b = resources::bundle(
            "transaction-response",
            base,
            response.into_iter().flatten().collect(),
            None,
        );
        Ok((b, Vec::new()))
    };
    let Some(record) = plans.first().map(|(_, p)| p.record) else {
        return nothing_written(response);
    };
    if let Some((_, p)) = plans.iter().find(|(_, p)| p.record != record) {
        return Err(Outcome::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "business-rule",
            format!(
                "a transaction writes into one record; it names both {record} and {}",
                p.record
            ),
        ));
    }
    one_patient(st, &record, plans.iter().map(|(i, _)| &items[*i]))?;
    // Resources held already as sent store nothing: answered with the version held.
    let (unchanged, plans): (Vec<_>, Vec<_>) = plans.into_iter().partition(|(_, p)| p.unchanged);
    for (i, p) in &unchanged {
        if let Payload::Amend { target, .. } = &p.payload {
            response[*i] = Some(held_already(st, base, p, *target));
        }
    }
    if plans.is_empty() {
        return nothing_written(response);
    }
    // Check every write against the record as the earlier ones leave it, so a refusal
    // names its entry and nothing is stored.
    let key = st.keypair().clone();
    let now = st.now();
    let device = st.device().map(str::to_owned);
    st.store().with_record(&record, |r| {
        let mut trial = r.clone();
        for (i, p) in &plans {
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
                .map_err(|e| at(Outcome::from(explain(r, &key.actor(), e)), &items[*i].path))?;
            for v in vs {
                trial
                    .apply(v)
                    .map_err(|e| at(Outcome::from(explain(r, &key.actor(), e)), &items[*i].path))?;
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
            plans.iter().map(|(_, p)| p.payload.clone()).collect(),
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
                plans
                    .get(index)
                    .and_then(|(i, _)| items.get(*i))
                    .map_or("Bundle.entry", |i| i.path.as_str()),
            ),
            BatchError::Store(e) => e.into(),
        })?;
    for ((i, p), id) in plans.iter().zip(ids) {
        link_written(st, p, id);
        response[*i] = Some(created(st, base, p, id));
    }
    Ok((
        resources::bundle(
            "transaction-response",
            base,
            response.into_iter().flatten().collect(),
            None,
        ),
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
    let mut entries: Vec<Option<Json>> = vec![None; items.len()];
    let failed =
        |o: Outcome| json!({"response": {"status": status_line(o.status), "outcome": o.body()}});
    let mut links = binary::Links {
        base: base.to_owned(),
        ..Default::default()
    };
    for (i, item) in items.iter().enumerate().filter(|(_, i)| is_binary(i)) {
        entries[i] = Some(match store_binary(st, item) {
            Ok(id) => {
                if let Some(u) = &item.full_url {
                    links.urns.insert(u.clone(), id.clone());
                }
                binary_created(st, base, &id)
            }
            Err(o) => failed(o),
        });
    }
    // The one-patient rule, per record written into: an entry about another patient is
    // refused on its own (the others go ahead, as a batch does).
    let mut checks: HashMap<RecordId, Result<PatientCheck, Outcome>> = HashMap::new();
    let mut held = HeldCache::of(items);
    for (i, item) in items.iter().enumerate().filter(|(_, i)| !is_binary(i)) {
        let result = plan(
            st,
            item,
            urls.get(i).map_or("", String::as_str),
            source,
            &links,
            &mut held,
        )
        .and_then(|p| {
            let check = checks.entry(p.record).or_insert_with(|| {
                PatientCheck::new(st, &p.record, items.iter().filter(|i| !is_binary(i)))
            });
            let refused = match check {
                Ok(c) => c.refusal(item),
                Err(o) => Some(o.clone()),
            };
            match refused {
                Some(o) => {
                    for m in &p.made {
                        st.binaries().forget(m);
                    }
                    held.written(&p, None);
                    Err(o)
                }
                None => Ok(p),
            }
        })
        .and_then(|p| {
            if p.unchanged {
                return Ok((p, None));
            }
            match session
                .write(&p.record, p.payload.clone(), st.now())
                .map_err(|e| at(Outcome::from(e), &item.path))
            {
                Ok(id) => {
                    held.written(&p, Some(id));
                    Ok((p, Some(id)))
                }
                Err(o) => {
                    for m in &p.made {
                        st.binaries().forget(m);
                    }
                    held.written(&p, None);
                    Err(o)
                }
            }
        });
        entries[i] = Some(match result {
            Ok((p, None)) => match &p.payload {
                Payload::Amend { target, .. } => held_already(st, base, &p, *target),
                _ => failed(Outcome::invalid("nothing was written")),
            },
            Ok((p, Some(id))) => {
                if !changed.contains(&p.record) {
                    changed.push(p.record);
                }
                link_written(st, &p, id);
                created(st, base, &p, id)
            }
            Err(o) => failed(o),
        });
    }
    (
        resources::bundle(
            "batch-response",
            base,
            entries.into_iter().flatten().collect(),
            None,
        ),
        changed,
    )
}

/// `POST DocumentReference` or `POST Media`: one resource, written as a batch of one would
/// be (its attachment's Binary linked). 201 with `Location` and the resource as it now
/// reads. (Other types are created through transaction or batch Bundles.)
/// A FHIR JSON resource sent as a request's body: `application/fhir+json` (else 415),
/// within [`MAX_BODY`] (else 413), decoded by its charset and parsed (else 400). Also the
/// request's base URL and headers.
pub(super) async fn read_resource(
    req: Request,
) -> Result<(String, axum::http::HeaderMap, Json), Outcome> {
    if !binary::is_fhir_json(req.headers()) {
        return Err(Outcome::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
            "send the resource as `Content-Type: application/fhir+json` (or application/json)",
        ));
    }
    let base = base_url(req.headers());
    let headers = req.headers().clone();
    let bytes = Bytes::from_request(req, &()).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Outcome::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-long",
                format!(
                    "the request body is more than the {} MiB limit (send a large file as a \
                     Binary first, then name it)",
                    MAX_BODY >> 20
                ),
            )
        } else {
            Outcome::invalid(format!("cannot read the request body: {e}"))
        }
    })?;
    let bytes = super::body_text(&headers, bytes)?;
    let resource = fhir::parse(&bytes).map_err(|e| Outcome::from_fhir(&e))?;
    Ok((base, headers, resource))
}

pub(super) async fn create(st: AppState, req: Request, ty: String) -> Result<Response, Outcome> {
    let (base, headers, resource) = read_resource(req).await?;
    if resource["resourceType"] != ty.as_str() {
        return Err(Outcome::invalid(format!("POST {ty} takes a {ty} resource")));
    }
    let item = BundleItem {
        path: ty.clone(),
        full_url: None,
        method: Some("POST".into()),
        resource,
    };
    // `Prefer: return=OperationOutcome` answers with the outcome (warnings included)
    // instead of the resource.
    let outcome_wanted = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .any(|p| p.trim().eq_ignore_ascii_case("return=OperationOutcome"))
        });
    let (record, location, body, status) = st
        .blocking(move |st| {
            Ok((|| {
                let links = binary::Links {
                    base: base.clone(),
                    ..Default::default()
                };
                let p = plan(
                    st,
                    &item,
                    &ty,
                    None,
                    &links,
                    &mut HeldCache::of(std::slice::from_ref(&item)),
                )?;
                let (id, made) = match (&p.payload, p.unchanged) {
                    (Payload::Amend { target, .. }, true) => {
                        (*target, held_already(st, &base, &p, *target))
                    }
                    _ => {
                        let id = match st.session().write(&p.record, p.payload.clone(), st.now()) {
                            Ok(id) => id,
                            Err(e) => {
                                for m in &p.made {
                                    st.binaries().forget(m);
                                }
                                return Err(Outcome::from(e));
                            }
                        };
                        link_written(st, &p, id);
                        (id, created(st, &base, &p, id))
                    }
                };
                let status = if matches!(p.payload, Payload::Amend { .. }) {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                };
                let location = made["response"]["location"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if outcome_wanted {
                    let outcome = made["response"]
                        .get("outcome")
                        .cloned()
                        .unwrap_or_else(|| resources::ok_outcome("created"));
                    return Ok::<_, Outcome>((
                        p.record,
                        format!("{base}/{location}"),
                        outcome,
                        status,
                    ));
                }
                // What the writer sent, as it now reads (its own write: not a view).
                let resource = collect(st, &[p.record], &p.resource_type)?
                    .into_iter()
                    .find(|f| f.item == Some(id) || f.current == Some(id))
                    .and_then(|f| f.resource)
                    .unwrap_or(Json::Null);
                Ok::<_, Outcome>((p.record, format!("{base}/{location}"), resource, status))
            })())
        })
        .await??;
    st.changed(record).await;
    let mut resp = fhir_response(status, &body);
    if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
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
