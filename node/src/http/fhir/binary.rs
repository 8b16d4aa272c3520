//! FHIR `Binary`: a document's bytes (`docs/documents.md`, "FHIR").
//!
//! - **Ids.** A documents item's file is `Binary/<item id>` (the same `e-…` id as its
//!   `DocumentReference` or `Media`), the file of the item's version in effect;
//!   `Binary/<item id>/_history/<n>` is version *n*'s. The id is derived from the entry,
//!   never from the document's hash or key, and the exported attachment names it
//!   (`cophr_protocol::fhir::link_file`).
//! - **Read.** `GET Binary/<id>` streams the file (checked and opened as it is read) with
//!   its media type, unless the client asks for FHIR JSON (`Accept:
//!   application/fhir+json` or `application/json`, or `_format=json`): then a `Binary`
//!   resource with the file as base64, for files of at most
//!   [`MAX_BINARY_JSON`] (16 MiB; a larger one is
//!   refused with an OperationOutcome telling the client to ask for the raw bytes). The
//!   same access rules as the document's resource (the identity must see the entry: a
//!   reader without the documents category gets the 404 any unseen resource gets) and the
//!   same audit (a view of the item and the version read), before a byte is sent.
//! - **Create.** `POST Binary` takes the raw bytes (`Content-Type` the media type,
//!   `Content-Length` required, at most `MAX_DOCUMENT_BYTES`; sealed as they stream into
//!   the blob store, never whole in memory) or a FHIR `Binary` resource (`Content-Type:
//!   application/fhir+json`, within the request body limit). The type is recognised from
//!   the content (a declared one must agree). The answer is 201 with `Location:
//!   [base]/Binary/<id>/_history/1`, the id a fresh `b-…` one.
//! - **Waiting Binaries.** No entry names a new Binary yet: it waits in [`Pending`], in
//!   this server's memory only, readable by the identity that sent it and no one else
//!   (other nodes never hear of it: nothing names it), until a `DocumentReference` or
//!   `Media` whose attachment `url` is `Binary/<id>` links it (its `file`). From then on
//!   `Binary/<b-id>` reads as the item's Binary, under the item's rules. A Binary not
//!   linked within [`PENDING_FOR_MS`] (24 h), or when the server restarts, is forgotten:
//!   its sealed bytes stay in the blob store, unreferenced and never served, until a
//!   collection of unreferenced blobs exists (`docs/documents.md`, "Next steps").
//!   At most [`MAX_PENDING`] wait at once (503 beyond).
//! - **Not in `$everything`.** A Binary is in no compartment (FHIR R4 `Binary`: "not
//!   in any compartment"), so `Patient/$everything` gives the `DocumentReference` and
//!   `Media` resources, whose attachments name their Binaries.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::sync::Mutex;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use cophr_protocol::blob::DocumentFile;
use cophr_protocol::fhir::{self, MAX_BINARY_JSON};
use cophr_protocol::{ActorId, EntryId, Payload, RecordId, Timestamp, Value};
use rand_core::RngCore;
use serde_json::{json, Value as Json};

use super::{
    base_url, collect_types, fhir_response, item_versions, resources, saw, search, visible_records,
    Outcome, BASE,
};
use crate::http::api::documents;
use crate::http::{AppState, MAX_BODY};
use crate::store::Received;

/// Most Binaries waiting for an entry to name them, per server.
pub const MAX_PENDING: usize = 1024;
/// How long a Binary waits for an entry to name it (24 h), in milliseconds.
pub const PENDING_FOR_MS: u64 = 24 * 60 * 60 * 1000;
/// The resource types whose attachments are Binaries.
pub const DOCUMENT_TYPES: [&str; 2] = ["DocumentReference", "Media"];

/// A document's fields an entry takes from its file: `file`, `media-type` and a DICOM
/// header's fields.
pub(super) type FileFields = BTreeMap<String, Value>;

fn file_fields(r: &Received) -> FileFields {
    r.fields()
}

#[derive(Debug, Clone)]
enum Slot {
    /// Stored, named by no entry yet.
    Waiting(FileFields),
    /// Named by this item.
    Linked(EntryId),
}

#[derive(Debug)]
struct Held {
    owner: ActorId,
    at: Timestamp,
    slot: Slot,
}

/// Binaries sent to this server that wait for an entry to name them (see the module docs).
#[derive(Debug, Default)]
pub struct Pending {
    held: Mutex<HashMap<String, Held>>,
}

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a received file for `owner`; its new id.
    pub(super) fn add(
        &self,
        owner: ActorId,
        now: Timestamp,
        fields: FileFields,
    ) -> Result<String, Outcome> {
        let mut held = self.lock();
        held.retain(|_, h| now.saturating_sub(h.at) < PENDING_FOR_MS);
        if held.len() >= MAX_PENDING {
            // Links are conveniences: the oldest goes first.
            let oldest = held
                .iter()
                .filter(|(_, h)| matches!(h.slot, Slot::Linked(..)))
                .min_by_key(|(_, h)| h.at)
                .map(|(k, _)| k.clone());
            match oldest {
                Some(k) => {
                    held.remove(&k);
                }
                None => {
                    return Err(Outcome::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "transient",
                        format!(
                            "{MAX_PENDING} Binaries already wait for a DocumentReference or \
                             Media to name them: name those first"
                        ),
                    ))
                }
            }
        }
        let mut b = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut b);
        let id = format!("b-{}", data_encoding::HEXLOWER.encode(&b));
        held.insert(
            id.clone(),
            Held {
                owner,
                at: now,
                slot: Slot::Waiting(fields),
            },
        );
        Ok(id)
    }

    /// What `id` is for `owner`, if it is theirs and not expired.
    fn get(&self, id: &str, owner: &ActorId, now: Timestamp) -> Option<(Slot, Timestamp)> {
        let held = self.lock();
        let h = held.get(id)?;
        (h.owner == *owner && now.saturating_sub(h.at) < PENDING_FOR_MS)
            .then(|| (h.slot.clone(), h.at))
    }

    /// Notes that `id` is now named by `item`.
    pub(super) fn link(&self, id: &str, item: EntryId) {
        if let Some(h) = self.lock().get_mut(id) {
            h.slot = Slot::Linked(item);
        }
    }

    /// Forgets `id` (a transaction that stored it failed).
    pub(super) fn forget(&self, id: &str) {
        self.lock().remove(id);
    }
}

/// A document's content, for a read.
enum Content {
    Stored(DocumentFile),
    Inline(Vec<u8>),
}

impl Content {
    fn size(&self) -> u64 {
        match self {
            Content::Stored(f) => f.size,
            Content::Inline(b) => b.len() as u64,
        }
    }
}

/// One version of a documents item, as far as its Binary is concerned.
pub(super) struct Doc {
    pub record: RecordId,
    /// The resource (`DocumentReference/<id>` or `Media/<id>`).
    security: String,
    id: String,
    version: usize,
    updated: Timestamp,
    media_type: String,
    content: Content,
    /// The entries reading it reveals (item, version).
    entries: Vec<EntryId>,
    /// The file's fields, for an entry naming the same file.
    pub fields: FileFields,
}

/// The document of `Binary/<id>[/_history/<vid>]` the identity sees, from its records.
fn document(st: &AppState, id: &str, vid: Option<&str>) -> Result<Doc, Outcome> {
    let not_found = || {
        Outcome::not_found(format!(
            "no Binary with id `{}` here",
            id.chars().take(80).collect::<String>()
        ))
    };
    let records = visible_records(st)?;
    let f = collect_types(st, &records, &DOCUMENT_TYPES)?
        .into_iter()
        .find(|f| f.is(id))
        .ok_or_else(not_found)?;
    let (Some(item), Some(current)) = (f.item, f.current) else {
        return Err(not_found());
    };
    let (entry, version, updated) = match vid {
        None => {
            if f.resource.is_none() {
                return Err(super::gone("Binary", id));
            }
            (current, f.version, f.updated)
        }
        Some(vid) => {
            let vs = item_versions(st, &f.record, &item, &f.id)?;
            let v = vs
                .iter()
                .find(|v| v.n.to_string() == vid || v.entry.to_string() == vid)
                .ok_or_else(|| {
                    Outcome::not_found(format!(
                        "Binary/{id} has no version `{}`",
                        vid.chars().take(80).collect::<String>()
                    ))
                })?;
            if v.resource.is_none() {
                return Err(super::gone("Binary", id));
            }
            (v.entry, v.n, v.time)
        }
    };
    let body = st
        .store()
        .with_record(&f.record, |r| match r.payload(&entry).as_deref() {
            Some(Payload::Create { body, .. } | Payload::Amend { body, .. }) => Some(body.clone()),
            _ => None,
        })?;
    let body = body.ok_or_else(not_found)?;
    let media_type = body
        .get("media-type")
        .and_then(Value::as_text)
        .unwrap_or("application/octet-stream")
        .to_owned();
    let content = match (body.get("file"), body.get("data")) {
        (Some(v), _) => Content::Stored(DocumentFile::from_value(v).map_err(|e| {
            Outcome::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "processing",
                format!("Binary/{id}: {e}"),
            )
        })?),
        (None, Some(Value::Bytes(b))) => Content::Inline(b.clone()),
        _ => {
            return Err(Outcome::not_found(format!(
                "{}/{id} has no file here (its attachment is a link elsewhere)",
                f.ty
            )))
        }
    };
    let mut fields = FileFields::new();
    if let Value::Map(m) = &body {
        for k in [
            "file",
            "media-type",
            "dicom-patient",
            "dicom-study",
            "dicom-modality",
        ] {
            if let Some(v) = m.get(k) {
                fields.insert(k.to_owned(), v.clone());
            }
        }
    }
    Ok(Doc {
        record: f.record,
        security: format!("{}/{}", f.ty, f.id),
        id: f.id.clone(),
        version,
        updated,
        media_type,
        content,
        entries: vec![item, entry],
        fields,
    })
}

/// What `Binary/<id>` names for a write by the identity: a waiting Binary (any record) or
/// the file of an item it sees. The pending id, when it is one.
pub(super) fn linkable(
    st: &AppState,
    id: &str,
) -> Result<(FileFields, Option<RecordId>, Option<String>), Outcome> {
    let id = match st.binaries().get(id, &st.actor(), st.now()) {
        Some((Slot::Waiting(fields), _)) => return Ok((fields, None, Some(id.to_owned()))),
        Some((Slot::Linked(item), _)) => item.to_string(),
        None => id.to_owned(),
    };
    let d = document(st, &id, None)?;
    if !d.fields.contains_key("file") {
        return Err(Outcome::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "business-rule",
            format!("Binary/{id} is kept inside its entry, not stored apart: send its data"),
        ));
    }
    Ok((d.fields, Some(d.record), None))
}

/// Whether the client asks for FHIR JSON rather than the raw bytes.
fn wants_json(headers: &HeaderMap, query: &[(String, String)]) -> bool {
    let json_type = |m: &str| {
        let m = m
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        m == "application/fhir+json" || m == "application/json" || m == "json"
    };
    let format = query.iter().any(|(k, v)| k == "_format" && json_type(v));
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(json_type));
    format || accept
}

/// A read's result: the document, or a waiting Binary of the identity's.
struct Target {
    doc: Doc,
}

fn too_large_for_json(id: &str, size: u64) -> Outcome {
    Outcome::new(
        StatusCode::NOT_ACCEPTABLE,
        "too-costly",
        format!(
            "Binary/{id} is {size} bytes, more than the {MAX_BINARY_JSON} bytes (16 MiB) a \
             FHIR JSON Binary carries here: ask for the raw bytes (an Accept header other \
             than FHIR JSON, e.g. */*)"
        ),
    )
}

/// `GET Binary/<id>[/_history/<vid>]`.
pub(super) async fn read(
    st: AppState,
    req: Request,
    id: String,
    vid: Option<String>,
) -> Result<Response, Outcome> {
    let query =
        search::query_pairs(req.uri().query()).map_err(|e| Outcome::invalid(e.to_string()))?;
    if let Some((k, _)) = query.iter().find(|(k, _)| k != "_format") {
        return Err(Outcome::invalid(format!(
            "parameter `{}` is not supported here",
            k.chars().take(64).collect::<String>()
        )));
    }
    let json = wants_json(req.headers(), &query);
    let target = st
        .blocking(move |st| {
            Ok((|| {
                let now = st.now();
                if let Some((slot, at)) = st.binaries().get(&id, &st.actor(), now) {
                    match slot {
                        Slot::Waiting(fields) => {
                            // The identity's own upload, in no record yet: nothing to audit.
                            if vid.as_deref().is_some_and(|v| v != "1") {
                                return Err(Outcome::not_found(format!(
                                    "Binary/{id} has one version"
                                )));
                            }
                            let file = fields
                                .get("file")
                                .and_then(|v| DocumentFile::from_value(v).ok())
                                .ok_or_else(|| Outcome::not_found("no such Binary"))?;
                            let doc = Doc {
                                record: st.actor(),
                                security: String::new(),
                                id: id.clone(),
                                version: 1,
                                updated: at,
                                media_type: fields
                                    .get("media-type")
                                    .and_then(Value::as_text)
                                    .unwrap_or("application/octet-stream")
                                    .to_owned(),
                                content: Content::Stored(file),
                                entries: Vec::new(),
                                fields,
                            };
                            check(st, &doc, json)?;
                            return Ok(Target { doc });
                        }
                        Slot::Linked(item) => {
                            return read_item(st, &item.to_string(), vid.as_deref(), json)
                        }
                    }
                }
                read_item(st, &id, vid.as_deref(), json)
            })())
        })
        .await??;
    let doc = target.doc;
    if let Content::Stored(f) = &doc.content {
        st.ensure_document(doc.record, f.blob_ref())
            .await
            .map_err(|m| match m {
                crate::http::DocumentMissing::NotHeld | crate::http::DocumentMissing::NoPeer => {
                    Outcome::not_found(m.message())
                }
                crate::http::DocumentMissing::Unavailable(_) => {
                    Outcome::new(StatusCode::SERVICE_UNAVAILABLE, "transient", m.message())
                }
            })?;
    }
    if json {
        let bytes = st
            .blocking(move |st| Ok(all_bytes(st, doc.content)))
            .await??;
        let security = (!doc.security.is_empty()).then_some(doc.security.as_str());
        let mut b = fhir::binary(&doc.id, &doc.media_type, &bytes, security);
        resources::set_meta(&mut b, doc.version, doc.updated);
        return Ok(super::resource_response(&b));
    }
    let size = doc.content.size();
    let body = match doc.content {
        Content::Inline(b) => Body::from(b),
        Content::Stored(f) => {
            let reader = st.store().open_document(&f).map_err(|e| {
                Outcome::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "exception",
                    format!("the file could not be read: {e}"),
                )
            })?;
            documents::stream_document(reader)
        }
    };
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    for (k, v) in [
        (header::CONTENT_TYPE, doc.media_type.clone()),
        (header::CONTENT_LENGTH, size.to_string()),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned()),
        (header::ETAG, format!("W/\"{}\"", doc.version)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    Ok(resp)
}

/// Checks a document can be served as asked: held here (or to be fetched), and within the
/// JSON limit.
fn check(st: &AppState, doc: &Doc, json: bool) -> Result<(), Outcome> {
    if json && doc.content.size() > MAX_BINARY_JSON as u64 {
        return Err(too_large_for_json(&doc.id, doc.content.size()));
    }
    // A file not held here is fetched from the record's peers once the read is allowed
    // (`AppState::ensure_document`), when a network node runs.
    if let Content::Stored(f) = &doc.content {
        if !st.store().has_document(&f.blob_ref()) && st.node().is_none() {
            return Err(Outcome::not_found(
                crate::http::DocumentMissing::NotHeld.message(),
            ));
        }
    }
    Ok(())
}

/// Reads an item's Binary as one audited read: found, checked, then audited as a view of
/// the item and the version, before any byte is sent.
fn read_item(st: &AppState, id: &str, vid: Option<&str>, json: bool) -> Result<Target, Outcome> {
    st.read(st.now(), |rd| {
        let doc = document(st, id, vid)?;
        check(st, &doc, json)?;
        saw(rd, doc.record, &doc.entries, false);
        rd.detail(format!(
            "FHIR read Binary{}",
            if json { " (JSON)" } else { "" }
        ));
        Ok(Target { doc })
    })
}

/// A document's bytes, whole (at most [`MAX_BINARY_JSON`], checked by the caller).
fn all_bytes(st: &AppState, content: Content) -> Result<Vec<u8>, Outcome> {
    match content {
        Content::Inline(b) => Ok(b),
        Content::Stored(f) => {
            let mut out = Vec::with_capacity(f.size.min(MAX_BINARY_JSON as u64) as usize);
            st.store()
                .open_document(&f)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    r.take(MAX_BINARY_JSON as u64)
                        .read_to_end(&mut out)
                        .map_err(|e| e.to_string())
                })
                .map_err(|e| {
                    Outcome::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "exception",
                        format!("the file could not be read: {e}"),
                    )
                })?;
            Ok(out)
        }
    }
}

/// The media type a request declares, unless it is none in particular.
fn declared(content_type: &str) -> Option<String> {
    let m = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    (!m.is_empty() && m != "application/octet-stream").then_some(m)
}

/// Whether a request's body is FHIR JSON.
pub(super) fn is_fhir_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/fhir+json" || m == "application/json"
        })
        .unwrap_or(false)
}

/// Stores a FHIR `Binary` resource's data (a Bundle's entry, or a create). Blocking.
pub(super) fn store_resource(st: &AppState, resource: &Json) -> Result<String, Outcome> {
    let (content_type, bytes) = fhir::binary_of(resource).map_err(|e| Outcome::from_fhir(&e))?;
    store_bytes(st, &bytes, declared(&content_type))
}

/// Stores a document held in memory as a waiting Binary. Blocking.
pub(super) fn store_bytes(
    st: &AppState,
    bytes: &[u8],
    declared: Option<String>,
) -> Result<String, Outcome> {
    let r = documents::import_bytes(st.store(), bytes, declared)?;
    st.binaries().add(st.actor(), st.now(), file_fields(&r))
}

/// The answer to a created Binary.
fn created(base: &str, id: &str, media_type: &str, now: Timestamp) -> Response {
    let mut b = json!({"resourceType": "Binary", "id": id, "contentType": media_type});
    resources::set_meta(&mut b, 1, now);
    let mut resp = fhir_response(StatusCode::CREATED, &b);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/Binary/{id}/_history/1")) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::ETAG, HeaderValue::from_static("W/\"1\""));
    resp
}

/// `POST Binary`: raw bytes or a FHIR `Binary` resource (see the module docs).
pub(super) async fn create(st: AppState, req: Request) -> Result<Response, Outcome> {
    let base = base_url(req.headers());
    if is_fhir_json(req.headers()) {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, &()).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Outcome::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-long",
                    format!(
                        "a FHIR JSON Binary may be at most the {} MiB request body limit: send \
                         larger files as their raw bytes (Content-Type: the file's media type)",
                        MAX_BODY >> 20
                    ),
                )
            } else {
                Outcome::invalid(format!("cannot read the request body: {e}"))
            }
        })?;
        let bytes = super::body_text(&headers, bytes)?;
        let resource = fhir::parse(&bytes).map_err(|e| Outcome::from_fhir(&e))?;
        let (id, media_type, now) = st
            .blocking(move |st| {
                Ok(store_resource(st, &resource).map(|id| {
                    let mt = st
                        .binaries()
                        .get(&id, &st.actor(), st.now())
                        .and_then(|(s, _)| match s {
                            Slot::Waiting(f) => f
                                .get("media-type")
                                .and_then(Value::as_text)
                                .map(str::to_owned),
                            Slot::Linked(..) => None,
                        })
                        .unwrap_or_default();
                    (id, mt, st.now())
                }))
            })
            .await??;
        return Ok(created(&base, &id, &media_type, now));
    }
    let size = documents::upload_size(req.headers())?;
    let drain = documents::Drain::of(req.headers(), size);
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let r = documents::receive(&st, req.into_body(), size, drain, declared(&content_type)).await?;
    let media_type = r.media_type;
    let fields = file_fields(&r);
    let (id, now) = st
        .blocking(move |st| {
            Ok(st
                .binaries()
                .add(st.actor(), st.now(), fields)
                .map(|id| (id, st.now())))
        })
        .await??;
    Ok(created(&base, &id, media_type, now))
}

/// How a write finds the Binaries its attachments name: this server's base (absolute
/// URLs), and a Bundle's Binaries by `fullUrl`.
#[derive(Debug, Default)]
pub(super) struct Links {
    pub base: String,
    pub urns: HashMap<String, String>,
}

/// What an attachment links to, for a write.
pub(super) struct Linked {
    /// The entry's fields from the file.
    pub fields: FileFields,
    /// The record a file of an item belongs to (an entry of another record may not name
    /// it).
    pub record: Option<RecordId>,
    /// The waiting Binary linked, to note once written.
    pub pending: Option<String>,
}

/// The Binary an attachment url names here, resolved for a write: `None` when the url is
/// not a Binary of this server (a link elsewhere, kept as the entry's `url`).
pub(super) fn resolve(st: &AppState, links: &Links, url: &str) -> Result<Option<Linked>, Outcome> {
    let relative = url
        .strip_prefix(links.base.as_str())
        .or_else(|| url.strip_prefix(BASE))
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(url);
    let id = match fhir::local_binary(relative) {
        None => return Ok(None),
        Some(fhir::BinaryLink::Urn(u)) => links.urns.get(&u).cloned().ok_or_else(|| {
            Outcome::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "business-rule",
                format!(
                    "the attachment names {}, which is no Binary of this Bundle",
                    u.chars().take(80).collect::<String>()
                ),
            )
        })?,
        Some(fhir::BinaryLink::Id(id)) => id,
    };
    let (fields, record, pending) = linkable(st, &id).map_err(|o| Outcome {
        message: format!("the attachment's url: {}", o.message),
        ..o
    })?;
    Ok(Some(Linked {
        fields,
        record,
        pending,
    }))
}
