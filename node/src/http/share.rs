//! Emergency summary shares (`docs/emergency-summary.md`): the patient makes a time-limited
//! link to their about-me, alerts, allergies, medications and problems
//! ([`cophr_protocol::share`]); anyone with the link opens it in a browser, without cophr.
//!
//! The node keeps, in the store's metadata (durable through the log), each share's
//! descriptor ([`Share`]: never the key) and its ciphertext (a JWE); the key is only in the
//! link's fragment, which browsers never send. Routes:
//! - `GET /s/{id}`: a static page (no token, strict CSP, no inline script) whose script
//!   (`/share.js`) reads the key from `location.hash`, fetches the ciphertext, decrypts it
//!   with WebCrypto and shows the summary, with the IPS Bundle to download;
//! - `GET /s/{id}/blob`: the ciphertext (`application/jose`); 404 for an unknown id, 410
//!   once ended or expired; every fetch is audited in the record's trail (a view by the
//!   share's pseudonymous opener, with the address) before it is sent; rate limited per
//!   address and per share;
//! - `POST|GET /api/v1/records/{rid}/shares` and `DELETE /api/v1/records/{rid}/shares/{sid}`
//!   (token, patient only): make (link, `shlink:/`, QR code as SVG), list (with openings),
//!   end early.
//!
//! [`create`], [`list`] and [`end`] are also what `cophr share` runs.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cophr_protocol::share::{self, Share, ShareError, ShareId, ShareKey, ShareStatus};
use cophr_protocol::{RecordId, Timestamp};
use rand_core::{CryptoRng, RngCore};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::format_time;
use super::{ApiError, AppState, JsonBody};
use crate::session::{Cancel, Session, SessionError};
use crate::store::{AuditInput, Store, StoreError};

/// The share page.
pub const SHARE_HTML: &str = include_str!("../../web/share.html");
/// The share page's script (an ES module).
pub const SHARE_JS: &str = include_str!("../../web/share.js");
/// The share page's style sheet.
pub const SHARE_CSS: &str = include_str!("../../web/share.css");

/// Ciphertext fetches allowed per address per minute.
pub const OPENS_PER_ADDRESS_PER_MINUTE: u32 = 20;
/// Ciphertext fetches allowed per share per hour.
pub const OPENS_PER_SHARE_PER_HOUR: u32 = 120;
/// Addresses and shares the rate limiter tracks at once (beyond: refused until a window ends).
pub const LIMITER_CAPACITY: usize = 4096;

/// How the opener of a share is named in the audit trail.
pub const OPENER_NAME: &str = "Someone with the emergency summary link";
/// The opener's role in the audit trail.
pub const OPENER_ROLE: &str = "share-link";

/// Serialises changes to share metadata (read-modify-write of the per-record index).
static LOCK: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

fn share_key(id: &ShareId) -> String {
    format!("share/{id}")
}

fn blob_key(id: &ShareId) -> String {
    format!("share-blob/{id}")
}

fn index_key(record: &RecordId) -> String {
    format!("shares/{record}")
}

/// Why a share operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareFailure {
    /// Only the record's patient makes, lists and ends shares.
    #[error("only the record's patient can share an emergency summary")]
    NotPatient,
    /// The record is not held here.
    #[error("record {0} is not held on this node")]
    NotHeld(RecordId),
    /// Bad input.
    #[error(transparent)]
    Invalid(#[from] ShareError),
    /// Too many live shares.
    #[error("{} shares are open for this record: end one first", share::MAX_SHARES)]
    TooMany,
    /// No such share (for this record).
    #[error("no such share")]
    NotFound,
    /// Ended or expired.
    #[error("this emergency summary link has {}", if *.0 == ShareStatus::Ended { "been ended by the patient" } else { "expired" })]
    Gone(ShareStatus),
    /// Too many openings.
    #[error("too many requests: try again in a minute")]
    TooManyRequests,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The read failed.
    #[error(transparent)]
    Session(#[from] SessionError),
}

impl From<ShareFailure> for ApiError {
    fn from(e: ShareFailure) -> Self {
        match e {
            ShareFailure::NotPatient => ApiError::forbidden(e.to_string()),
            ShareFailure::NotHeld(_) | ShareFailure::NotFound => ApiError::not_found(e.to_string()),
            ShareFailure::Invalid(_) => ApiError::invalid(e.to_string()),
            ShareFailure::TooMany => ApiError::conflict(e.to_string()),
            ShareFailure::Gone(_) => ApiError::new(StatusCode::GONE, "gone", e.to_string()),
            ShareFailure::TooManyRequests => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string())
            }
            ShareFailure::Store(s) => s.into(),
            ShareFailure::Session(s) => s.into(),
        }
    }
}

/// A share just made: its descriptor and the links (which hold the key: shown to the
/// patient once, never stored or logged).
#[derive(Debug, Clone)]
pub struct Created {
    /// The descriptor.
    pub share: Share,
    /// `BASE/s/<id>#<key>`.
    pub link: String,
    /// The `shlink:/` payload.
    pub shlink: String,
}

fn load_index(store: &Store, record: &RecordId) -> Result<Vec<ShareId>, StoreError> {
    Ok(store
        .meta(&index_key(record))?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

fn load(store: &Store, id: &ShareId) -> Result<Option<Share>, StoreError> {
    Ok(store
        .meta(&share_key(id))?
        .filter(|b| !b.is_empty())
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

fn save(store: &Store, s: &Share) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(s).unwrap_or_default();
    store.set_meta(&share_key(&s.id), &bytes)
}

/// Makes a share of `record` (the session's own) for `lifetime` ms, linked from `base`
/// (`https://host[:port]`): the summary is read (audited as an export of its items),
/// sealed under a fresh key, and stored with its descriptor.
#[allow(clippy::too_many_arguments)]
pub fn create(
    session: &Session,
    cancel: &Cancel,
    record: &RecordId,
    now: Timestamp,
    lifetime: u64,
    label: Option<String>,
    base: &str,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Created, ShareFailure> {
    patient_only(session, record)?;
    if !session.store.holds(record)? {
        return Err(ShareFailure::NotHeld(*record));
    }
    share::check_base(base)?;
    let mut id = [0u8; share::ID_BYTES];
    rng.fill_bytes(&mut id);
    let id = ShareId(id);
    let mut key = ShareKey([0; share::KEY_BYTES]);
    rng.fill_bytes(&mut key.0);
    let mut iv = [0u8; share::IV_BYTES];
    rng.fill_bytes(&mut iv);
    let mut doc = [0u8; share::ID_BYTES];
    rng.fill_bytes(&mut doc);
    // Checked before anything is read or audited (and again when stored).
    Share::new(id, *record, now, lifetime, label.clone(), Vec::new())?;
    if live(&session.store, record, now)? >= share::MAX_SHARES {
        return Err(ShareFailure::TooMany);
    }
    let me = session.actor();
    let summary = session.read(cancel, now, |rd| {
        rd.record(record, |r, seen| {
            let v = r.viewer(&me, now);
            let s = share::summary(r, &v, now, &doc);
            seen.export();
            seen.add(s.entries.iter().copied());
            seen.detail(format!(
                "emergency summary shared by link {id} until {}",
                share::instant(now.saturating_add(lifetime))
            ));
            s
        })
        .map_err(ShareFailure::from)
    })?;
    let share = Share::new(id, *record, now, lifetime, label, summary.entries.clone())?;
    let jwe = share::seal(&key, iv, &summary.to_bytes()?)?;
    let link = share::link(base, &id, &key)?;
    let shlink = share::shlink(base, &share, &key)?;
    let store = &session.store;
    let _guard = lock();
    let mut index = load_index(store, record)?;
    if index.len() >= share::MAX_SHARES {
        // Drop ended and expired ones, oldest first, to make room.
        let mut keep = Vec::new();
        for sid in index {
            match load(store, &sid)? {
                Some(s) if s.status(now) == ShareStatus::Active => keep.push(sid),
                _ => {
                    store.set_meta(&share_key(&sid), &[])?;
                    store.set_meta(&blob_key(&sid), &[])?;
                }
            }
        }
        index = keep;
    }
    if index.len() >= share::MAX_SHARES {
        return Err(ShareFailure::TooMany);
    }
    store.set_meta(&blob_key(&id), jwe.as_bytes())?;
    save(store, &share)?;
    index.push(id);
    store.set_meta(
        &index_key(record),
        &serde_json::to_vec(&index).unwrap_or_default(),
    )?;
    Ok(Created {
        share,
        link,
        shlink,
    })
}

/// Keeps a share the record's patient handed this node (its home host) to serve: the
/// descriptor and ciphertext, as [`create`] keeps its own (already checked by the sync
/// server: `cophr_protocol::share::check_hosted`). A share with the same id of the same
/// record is replaced (a retried hand-over); `false` when the record has
/// [`share::MAX_SHARES`] active shares here, or the id is another record's.
pub fn keep(
    store: &Store,
    share: &Share,
    sealed: &[u8],
    now: Timestamp,
) -> Result<bool, StoreError> {
    let _guard = lock();
    if load(store, &share.id)?.is_some_and(|s| s.record != share.record) {
        return Ok(false);
    }
    let mut index = load_index(store, &share.record)?;
    if !index.contains(&share.id) {
        // Drop ended and expired ones to make room.
        let mut keep = Vec::new();
        for sid in index {
            match load(store, &sid)? {
                Some(s) if s.status(now) == ShareStatus::Active => keep.push(sid),
                _ => {
                    store.set_meta(&share_key(&sid), &[])?;
                    store.set_meta(&blob_key(&sid), &[])?;
                }
            }
        }
        index = keep;
        if index.len() >= share::MAX_SHARES {
            return Ok(false);
        }
        index.push(share.id);
    }
    let mut kept = share.clone();
    kept.opens = 0;
    kept.last_opened = None;
    store.set_meta(&blob_key(&share.id), sealed)?;
    save(store, &kept)?;
    store.set_meta(
        &index_key(&share.record),
        &serde_json::to_vec(&index).unwrap_or_default(),
    )?;
    Ok(true)
}

/// Ends a share of `record` kept here for its patient; `false` if there is none.
pub fn end_kept(
    store: &Store,
    record: &RecordId,
    id: &ShareId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let _guard = lock();
    let Some(mut s) = load(store, id)?.filter(|s| s.record == *record) else {
        return Ok(false);
    };
    if s.ended.is_none() {
        s.end(now);
        save(store, &s)?;
    }
    store.set_meta(&blob_key(id), &[])?;
    Ok(true)
}

/// A share of this node's and its ciphertext, as [`create`] kept them (to hand to the home
/// host).
pub fn parts(store: &Store, id: &ShareId) -> Result<Option<(Share, Vec<u8>)>, StoreError> {
    let Some(s) = load(store, id)? else {
        return Ok(None);
    };
    Ok(store
        .meta(&blob_key(id))?
        .filter(|b| !b.is_empty())
        .map(|b| (s, b)))
}

/// Only the record's patient (any of their current keys or devices) shares, lists and ends.
fn patient_only(session: &Session, record: &RecordId) -> Result<(), ShareFailure> {
    let me = session.actor();
    if *record == me {
        return Ok(());
    }
    match session.store.with_record(record, |r| r.is_patient(&me)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ShareFailure::NotPatient),
        Err(StoreError::NotFound(_)) => Err(ShareFailure::NotPatient),
        Err(e) => Err(e.into()),
    }
}

/// How many of the record's shares are active.
fn live(store: &Store, record: &RecordId, now: Timestamp) -> Result<usize, StoreError> {
    let mut n = 0;
    for id in load_index(store, record)? {
        if load(store, &id)?.is_some_and(|s| s.status(now) == ShareStatus::Active) {
            n += 1;
        }
    }
    Ok(n)
}

/// The record's shares (the session's own record), newest first.
pub fn list(session: &Session, record: &RecordId) -> Result<Vec<Share>, ShareFailure> {
    patient_only(session, record)?;
    if !session.store.holds(record)? {
        return Err(ShareFailure::NotHeld(*record));
    }
    let mut out = Vec::new();
    for id in load_index(&session.store, record)? {
        if let Some(s) = load(&session.store, &id)? {
            out.push(s);
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse((s.created, s.id)));
    Ok(out)
}

/// Ends a share of the session's own record now: it opens no more and its ciphertext is
/// dropped. Ending an ended or expired share is not an error.
pub fn end(
    session: &Session,
    record: &RecordId,
    id: &ShareId,
    now: Timestamp,
) -> Result<Share, ShareFailure> {
    patient_only(session, record)?;
    let store = &session.store;
    let _guard = lock();
    let mut s = load(store, id)?
        .filter(|s| s.record == *record)
        .ok_or(ShareFailure::NotFound)?;
    if s.ended.is_none() {
        s.end(now);
        save(store, &s)?;
    }
    store.set_meta(&blob_key(id), &[])?;
    Ok(s)
}

/// The ciphertext of an active share, for someone at `from`: the opening is counted and
/// audited in the record's trail (before the bytes are returned).
pub fn open(
    store: &Store,
    id: &ShareId,
    now: Timestamp,
    from: Option<IpAddr>,
) -> Result<Vec<u8>, ShareFailure> {
    let _guard = lock();
    let mut s = load(store, id)?.ok_or(ShareFailure::NotFound)?;
    let status = s.status(now);
    if status != ShareStatus::Active {
        store.set_meta(&blob_key(id), &[])?;
        return Err(ShareFailure::Gone(status));
    }
    let blob = store
        .meta(&blob_key(id))?
        .filter(|b| !b.is_empty())
        .ok_or(ShareFailure::NotFound)?;
    let from = from.map_or_else(|| "an unknown address".to_owned(), |a| a.to_string());
    store.audit_as(
        &s.record,
        AuditInput {
            action: cophr_protocol::audit::Action::View,
            actor: id.opener(),
            device: Some(from.clone()),
            entries: s.entries.clone(),
            detail: Some(format!(
                "emergency summary opened via share {id}{}, from {from}",
                s.label
                    .as_deref()
                    .map(|l| format!(" ({l})"))
                    .unwrap_or_default()
            )),
        },
        now,
        cophr_protocol::Profile::new(OPENER_NAME, OPENER_ROLE, None),
    )?;
    s.opened(now);
    save(store, &s)?;
    Ok(blob)
}

/// A fixed-window rate limiter for ciphertext fetches, bounded in what it tracks.
#[derive(Debug, Default)]
pub struct Limiter {
    windows: Mutex<HashMap<LimitKey, (Timestamp, u32)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum LimitKey {
    Address(IpAddr),
    Share(ShareId),
}

impl Limiter {
    /// Counts one fetch of `id` from `from` at `now`; false when over a limit.
    pub fn allow(&self, from: Option<IpAddr>, id: &ShareId, now: Timestamp) -> bool {
        let mut w = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys = vec![(LimitKey::Share(*id), 3_600_000, OPENS_PER_SHARE_PER_HOUR)];
        if let Some(a) = from {
            keys.push((LimitKey::Address(a), 60_000, OPENS_PER_ADDRESS_PER_MINUTE));
        }
        if w.len() + keys.len() > LIMITER_CAPACITY {
            w.retain(|k, (start, _)| {
                let span = match k {
                    LimitKey::Share(_) => 3_600_000,
                    LimitKey::Address(_) => 60_000,
                };
                now < start.saturating_add(span)
            });
            if w.len() + keys.len() > LIMITER_CAPACITY {
                return false;
            }
        }
        let over = keys.iter().any(|(k, span, max)| {
            w.get(k)
                .is_some_and(|(start, n)| now < start.saturating_add(*span) && *n >= *max)
        });
        if over {
            return false;
        }
        for (k, span, _) in keys {
            let e = w.entry(k).or_insert((now, 0));
            if now >= e.0.saturating_add(span) {
                *e = (now, 0);
            }
            e.1 += 1;
        }
        true
    }
}

// ---------------------------------------------------------------------------------------
// HTTP

/// The share routes (full paths; merged at the root by [`super::router`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/records/{rid}/shares",
            get(list_shares).post(create_share),
        )
        .route(
            "/api/v1/records/{rid}/shares/{sid}",
            axum::routing::delete(end_share),
        )
        .route("/s/{id}", get(page))
        .route("/s/{id}/blob", get(blob))
        .route("/share.js", get(share_js))
        .route("/share.css", get(share_css))
}

/// Whether `path` is one of the share page's public paths (no token).
pub fn is_public(path: &str) -> bool {
    matches!(path, "/share.js" | "/share.css") || path.starts_with("/s/")
}

fn parse_record(s: &str) -> Result<RecordId, ApiError> {
    s.parse()
        .map_err(|e| ApiError::invalid(format!("`{s}` is not a record id: {e}")))
}

fn parse_share(s: &str) -> Result<ShareId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::not_found("no such emergency summary link"))
}

/// The JSON shown for a share (never the key).
pub fn share_json(s: &Share, now: Timestamp) -> Value {
    json!({
        "id": s.id,
        "record": s.record,
        "label": s.label,
        "created": format_time(s.created),
        "expires": format_time(s.expires),
        "ended": s.ended.map(format_time),
        "status": s.status(now).name(),
        "opens": s.opens,
        "last_opened": s.last_opened.map(format_time),
        "items": s.entries.len(),
    })
}

/// Parses `30m`, `12h`, `7d` into milliseconds.
pub fn parse_lifetime(s: &str) -> Result<u64, ShareError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().map_err(|_| ShareError::Lifetime)?;
    let unit = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(ShareError::Lifetime),
    };
    let ms = n.checked_mul(unit).ok_or(ShareError::Lifetime)?;
    if !(share::MIN_SHARE_MS..=share::MAX_SHARE_MS).contains(&ms) {
        return Err(ShareError::Lifetime);
    }
    Ok(ms)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInput {
    /// `30m`, `12h`, `7d` (default 24h).
    expires_in: Option<String>,
    label: Option<String>,
    /// The base of the link (default: `http://` and the request's `Host`).
    base_url: Option<String>,
}

async fn create_share(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    headers: HeaderMap,
    JsonBody(input): JsonBody<CreateInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let lifetime = match input.expires_in.as_deref() {
        None => share::DEFAULT_SHARE_MS,
        Some(s) => parse_lifetime(s).map_err(|e| ApiError::invalid(e.to_string()))?,
    };
    let base = match input.base_url {
        Some(b) => b,
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .ok_or_else(|| {
                    ApiError::invalid("no Host header: give base_url, the link's https://host")
                })?;
            format!("http://{host}")
        }
    };
    let label = input.label;
    let out = st
        .blocking(move |st| {
            let now = st.now();
            let c = create(
                &st.session(),
                st.cancel(),
                &record,
                now,
                lifetime,
                label,
                &base,
                &mut rand_core::OsRng,
            )?;
            let mut v = share_json(&c.share, now);
            v["link"] = json!(c.link);
            v["shlink"] = json!(c.shlink);
            v["qr_svg"] = json!(super::qr_svg(&c.link));
            Ok(v)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

async fn list_shares(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = st
        .blocking(move |st| {
            let now = st.now();
            let all = list(&st.session(), &record)?;
            Ok(Value::Array(
                all.iter().map(|s| share_json(s, now)).collect(),
            ))
        })
        .await?;
    Ok(Json(out))
}

async fn end_share(
    State(st): State<AppState>,
    Path((rid, sid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let id = parse_share(&sid)?;
    let out = st
        .blocking(move |st| {
            let now = st.now();
            let s = end(&st.session(), &record, &id, now)?;
            Ok(share_json(&s, now))
        })
        .await?;
    Ok(Json(out))
}

fn headers(content_type: &'static str) -> [(header::HeaderName, HeaderValue); 6] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(super::web::CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        // The page's URL holds the key in its fragment (never sent in a Referer anyway).
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

async fn page(Path(id): Path<String>) -> Response {
    // The same static page for every id: the page says nothing about whether it exists.
    let _ = id;
    (headers("text/html; charset=utf-8"), SHARE_HTML).into_response()
}

async fn share_js() -> Response {
    (headers("text/javascript; charset=utf-8"), SHARE_JS).into_response()
}

async fn share_css() -> Response {
    (headers("text/css; charset=utf-8"), SHARE_CSS).into_response()
}

async fn blob(
    State(st): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let id = parse_share(&id)?;
    let from = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if !st.shares_limiter().allow(from, &id, st.now()) {
        return Err(ShareFailure::TooManyRequests.into());
    }
    let bytes = st
        .blocking(move |st| Ok(open(st.store(), &id, st.now(), from)?))
        .await?;
    Ok((headers("application/jose"), bytes).into_response())
}
