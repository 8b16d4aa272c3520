//! The node's HTTP server (axum): the REST API (`/api/v1`, [`api`]), the FHIR R4 API
//! ([`fhir`]) and the patient's web app ([`web`]), all acting as the node's identity.
//!
//! [`router`] merges the three under one [`AppState`], behind the bearer-token check
//! ([`auth`]) and an 8 MiB body limit. The server binds loopback by default; another address
//! needs [`HttpConfig::allow_remote`]. The token lives in `<home>/api-token` (0600, see
//! [`token`]) and is compared in constant time.

pub mod api;
pub mod browser;
pub mod conn;
pub mod fhir;
pub mod openapi;
pub mod openehr;
pub mod share;
pub mod token;
pub mod web;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use cophr_protocol::record::Rejection;
use cophr_protocol::{ActorId, Keypair, Profile, RecordId, Timestamp};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::net::NodeHandle;
use crate::session::{Cancel, Cancelled, Checkpoint, Reader, Session, SessionError};
use crate::store::{Store, StoreError, FHIR_INDEXES};

/// The largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// Requests doing store work at once (on blocking threads); others wait their turn.
pub const MAX_BLOCKING: usize = 16;

pub use conn::{
    ConnLimits, EVICTED_CLOSE_TIMEOUT, HEADER_TIMEOUT, LOOPBACK_RESERVED, MAX_CONNECTIONS,
    MAX_CONNECTIONS_PER_IP,
};

/// How often reminders coming due are looked for while notifications are derived.
pub const REMINDER_TICK: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest a request may take, reading its body included (408 beyond).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The default address: loopback, port 7380.
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 7380);

/// Paths served without a token: the web app's static files, the OpenAPI document and the
/// FHIR CapabilityStatement.
pub const PUBLIC_PATHS: &[&str] = &[
    "/",
    "/index.html",
    "/app.js",
    "/charts.js",
    "/app.css",
    "/favicon.svg",
    "/api/v1/openapi.json",
    "/fhir/r4/metadata",
];

/// Where and how the server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// The address to bind (port 0: an ephemeral port).
    pub addr: SocketAddr,
    /// Whether a non-loopback address may be bound.
    pub allow_remote: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            addr: DEFAULT_ADDR,
            allow_remote: false,
        }
    }
}

/// Errors setting up the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A non-loopback address without the explicit permission.
    #[error(
        "refusing to serve the HTTP API on {0}, which other machines can reach: give \
         --http-allow-remote to do so deliberately, or bind a loopback address (127.0.0.1)"
    )]
    Remote(SocketAddr),
    /// Binding failed.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl HttpConfig {
    /// Checks the address: a non-loopback one needs `allow_remote`.
    pub fn check(&self) -> Result<(), HttpError> {
        if !self.addr.ip().is_loopback() && !self.allow_remote {
            return Err(HttpError::Remote(self.addr));
        }
        Ok(())
    }

    /// Checks the address and binds it.
    pub async fn bind(&self) -> Result<tokio::net::TcpListener, HttpError> {
        self.check()?;
        tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(|source| HttpError::Bind {
                addr: self.addr,
                source,
            })
    }
}

/// The clock handlers read (injectable for tests).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system clock, in milliseconds since the Unix epoch.
pub fn system_clock() -> Timestamp {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}

#[derive(Clone)]
struct Inner {
    store: Store,
    key: Keypair,
    profile: Profile,
    device: Option<String>,
    token: String,
    clock: Clock,
    node: Option<NodeHandle>,
    permits: Arc<tokio::sync::Semaphore>,
    request_timeout: std::time::Duration,
    checkpoint: Option<Checkpoint>,
    /// The trust list used without a network node.
    trust: cophr_protocol::trust::TrustList,
    /// The rate limits of emergency summary openings.
    shares: Arc<share::Limiter>,
    /// FHIR Binaries sent here that no entry names yet.
    binaries: Arc<fhir::binary::Pending>,
    /// Subscriptions and notifications (`crate::notify`).
    notifier: Arc<crate::notify::Notifier>,
    /// Whether the task deriving notifications from the network node's changes runs.
    pump: Arc<std::sync::OnceLock<()>>,
    /// The FHIR API's per-record search indexes.
    fhir_index: Arc<fhir::index::Indexes>,
}

tokio::task_local! {
    /// The cancellation flag of the request being handled (set by [`time_limit`]).
    static REQUEST: Cancel;
}

/// What every handler gets: the store, the identity the server acts as (key, profile,
/// device), the clock, and the running network node (to announce changes), if any.
/// Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    /// The cancellation flag of the request this state serves (inside
    /// [`AppState::blocking`]); a fresh one elsewhere.
    cancel: Cancel,
}

/// Why a document an entry names cannot be served.
#[derive(Debug)]
pub(crate) enum DocumentMissing {
    /// Not held here, and no network node runs to fetch it.
    NotHeld,
    /// Not held here, and no peer of the record is known to fetch it from: nothing to try
    /// again (answered like [`DocumentMissing::NotHeld`], 404, not as a transient failure).
    NoPeer,
    /// Not held here, and fetching it from the record's peers failed (why).
    Unavailable(String),
}

impl DocumentMissing {
    /// What to tell the reader.
    pub(crate) fn message(&self) -> String {
        match self {
            DocumentMissing::NotHeld => "the file is not held on this node, and no network \
                node runs here to fetch it from a replica that holds it (`cophr node run`)"
                .to_owned(),
            DocumentMissing::NoPeer => "the file is not held on this node, and no peer of \
                the record is known here to fetch it from (`cophr follow` or `cophr peers add`)"
                .to_owned(),
            DocumentMissing::Unavailable(why) => format!(
                "the file is not held on this node and could not be fetched from the \
                 record's peers now: {why}"
            ),
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("AppState")
            .field("actor", &self.actor())
            .field("device", &self.inner.device)
            .field("node", &self.inner.node.is_some())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State acting as `key` (with its `profile` and `device`) over `store`, accepting
    /// `token`, on the system clock, without a network node.
    pub fn new(
        store: Store,
        key: Keypair,
        profile: Profile,
        device: Option<String>,
        token: String,
    ) -> Self {
        AppState {
            inner: Arc::new(Inner {
                notifier: Arc::new(crate::notify::Notifier::new(store.clone())),
                pump: Arc::new(std::sync::OnceLock::new()),
                store,
                key,
                profile,
                device,
                token,
                clock: Arc::new(system_clock),
                node: None,
                permits: Arc::new(tokio::sync::Semaphore::new(MAX_BLOCKING)),
                request_timeout: REQUEST_TIMEOUT,
                checkpoint: None,
                trust: cophr_protocol::trust::TrustList::new(),
                shares: Arc::new(share::Limiter::default()),
                binaries: Arc::new(fhir::binary::Pending::default()),
                fhir_index: Arc::new(fhir::index::Indexes::default()),
            }),
            cancel: Cancel::new(),
        }
    }

    /// Serves the FHIR API without its search index: every read folds the whole record, as
    /// before the index (to measure against, and to test the index against).
    pub fn without_fhir_index(mut self) -> Self {
        Arc::make_mut(&mut self.inner).fhir_index = Arc::new(fhir::index::Indexes::off());
        self
    }

    /// Ends requests after `limit` instead of [`REQUEST_TIMEOUT`] (for tests).
    pub fn with_request_timeout(mut self, limit: std::time::Duration) -> Self {
        Arc::make_mut(&mut self.inner).request_timeout = limit;
        self
    }

    /// Runs `hook` at every cancellation checkpoint of a request's reading work (a test
    /// hook: hold the work at a checkpoint, count them).
    pub fn with_checkpoint(mut self, hook: Checkpoint) -> Self {
        Arc::make_mut(&mut self.inner).checkpoint = Some(hook);
        self
    }

    /// The cancellation flag of the current request.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// Reads as the identity ([`Session::read`]) under the current request's
    /// cancellation flag: the result comes back only once what `f` says it showed is
    /// audited, and a request that timed out or was dropped audits nothing.
    pub fn read<T, E: From<SessionError>>(
        &self,
        now: Timestamp,
        f: impl FnOnce(&mut Reader<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.session().read(&self.cancel, now, f)
    }

    /// Waits until no request's store work is running (every blocking permit free), for
    /// tests that check what a cancelled request left behind.
    pub async fn quiesce(&self) {
        let n = u32::try_from(MAX_BLOCKING).unwrap_or(u32::MAX);
        if let Ok(all) = self.inner.permits.acquire_many(n).await {
            drop(all);
        }
    }

    /// Uses this clock instead of the system's.
    pub fn with_clock(mut self, clock: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Arc::make_mut(&mut self.inner).clock = Arc::new(clock);
        self
    }

    /// Tells this network node when a record changes.
    pub fn with_node(mut self, node: NodeHandle) -> Self {
        Arc::make_mut(&mut self.inner).node = Some(node);
        self
    }

    /// FHIR Binaries sent to this server that no entry names yet.
    pub(crate) fn binaries(&self) -> &fhir::binary::Pending {
        &self.inner.binaries
    }

    /// Builds the FHIR search indexes of the records this identity reads (at most
    /// [`fhir::index::MAX_INDEXED_RECORDS`]), in slices of [`FHIR_INDEX_SLICE`] entries or
    /// items, letting go of the record between slices (so writes and reads go on; a read
    /// meanwhile catches up the rest itself). What [`serve`] runs in the background at
    /// start, so a record's first FHIR read after a start does not build its index.
    /// Stops (`Err`) once `stop` is cancelled; what is built stays.
    pub fn build_fhir_indexes(&self, stop: &Cancel) -> Result<(), Cancelled> {
        build_indexes(&self.inner, stop)
    }

    /// Runs [`AppState::build_fhir_indexes`] on a thread of its own, until done, until
    /// `stop` is cancelled, or until the server's state is dropped.
    pub fn start_fhir_index_build(&self, stop: Cancel) {
        let weak = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new()
            .name("fhir-index".into())
            .spawn(move || {
                let Some(inner) = weak.upgrade() else { return };
                let records = index_targets(&inner);
                drop(inner);
                for rid in records {
                    if let Some(inner) = weak.upgrade() {
                        restore_index(&inner, &rid);
                    }
                    loop {
                        // The state is held for one slice at a time only.
                        let Some(inner) = weak.upgrade() else { return };
                        match build_slice(&inner, &rid, &stop) {
                            Ok(true) => {
                                save_index(&inner, &rid, fhir::index::SAVE_MIN_NEW);
                                break;
                            }
                            Ok(false) => {}
                            Err(_) => return,
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("could not start the FHIR index build: {e}");
        }
    }

    /// Saves every held FHIR search index that is settled and took in any entry since it
    /// was last saved, so the next start reads it instead of building it (what [`serve`]
    /// does as it stops).
    pub fn save_fhir_indexes(&self) {
        for rid in self.inner.fhir_index.held() {
            save_index(&self.inner, &rid, 1);
        }
    }

    /// The FHIR API's per-record search indexes.
    pub(crate) fn fhir_index(&self) -> &fhir::index::Indexes {
        &self.inner.fhir_index
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The identity's key.
    pub fn keypair(&self) -> &Keypair {
        &self.inner.key
    }

    /// The identity's actor id.
    pub fn actor(&self) -> ActorId {
        self.inner.key.actor()
    }

    /// The identity's profile (name, role, organisation).
    pub fn profile(&self) -> &Profile {
        &self.inner.profile
    }

    /// The device named on entries and audit events.
    pub fn device(&self) -> Option<&str> {
        self.inner.device.as_deref()
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        (self.inner.clock)()
    }

    /// The trust list people are assessed against: the running node's, else the one
    /// given with [`AppState::with_trust`].
    pub fn trust(&self) -> cophr_protocol::trust::TrustList {
        match &self.inner.node {
            Some(node) => node.trust(),
            None => self.inner.trust.clone(),
        }
    }

    /// Assesses people against `trust` when no network node runs.
    pub fn with_trust(mut self, trust: cophr_protocol::trust::TrustList) -> Self {
        Arc::make_mut(&mut self.inner).trust = trust;
        self
    }

    /// The rate limiter of emergency summary openings ([`share`]).
    pub fn shares_limiter(&self) -> &share::Limiter {
        &self.inner.shares
    }

    /// The running network node, if any.
    pub fn node(&self) -> Option<&NodeHandle> {
        self.inner.node.as_ref()
    }

    /// Makes sure the document `doc`, which an entry of `record` the caller may see names,
    /// is held here whole before it is served: a node that lacks it (a replica fetching
    /// documents on demand, or one whose fetch after a pull has not run yet) fetches it
    /// now from the record's peers, home host first, every slice checked before it is
    /// stored ([`crate::net::client::fetch_document`]).
    pub(crate) async fn ensure_document(
        &self,
        record: RecordId,
        doc: cophr_protocol::blob::BlobRef,
    ) -> Result<(), DocumentMissing> {
        if self.inner.store.has_document(&doc) {
            return Ok(());
        }
        let Some(node) = self.node() else {
            return Err(DocumentMissing::NotHeld);
        };
        let known = node
            .peer_book(&record)
            .is_ok_and(|b| b.home.is_some() || !b.fallbacks().is_empty());
        if !known {
            return Err(DocumentMissing::NoPeer);
        }
        crate::net::client::fetch_document(node, record, doc)
            .await
            .map(|_| ())
            .map_err(|e| DocumentMissing::Unavailable(e.to_string()))
    }

    /// The identity acting on the store (writes, audited reads).
    pub fn session(&self) -> Session {
        Session {
            store: self.inner.store.clone(),
            key: self.inner.key.clone(),
            profile: self.inner.profile.clone(),
            device: self.inner.device.clone(),
        }
    }

    /// Whether `given` is the API token (constant-time comparison).
    pub fn token_matches(&self, given: &str) -> bool {
        bool::from(given.as_bytes().ct_eq(self.inner.token.as_bytes()))
    }

    /// Runs store work (which may fsync) on a blocking thread, at most [`MAX_BLOCKING`]
    /// at once.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    {
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("the node is stopping"))?;
        let mut st = self.clone();
        st.cancel = REQUEST.try_with(Cancel::clone).unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            // People in the answer are shown as verified or self-asserted by the node's
            // trust list.
            api::assess_with(st.trust(), st.now());
            let out = f(&st);
            drop(permit);
            out
        })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "an HTTP request's work failed");
            ApiError::internal("the request failed inside the node")
        })?
    }

    /// Tells the network that `record` changed (pushes it to its home host and
    /// subscribers), as the control socket does after a command. Failures are logged.
    pub async fn changed(&self, record: RecordId) {
        if let Some(node) = &self.inner.node {
            if let Err(e) = node.changed(record).await {
                tracing::warn!(%record, error = %e, "could not announce a change");
            }
        } else {
            // Without a network node, nothing else tells the notifier of a local write.
            self.notify(record).await;
        }
    }

    /// Subscriptions and notifications of the identity.
    pub fn notifier(&self) -> &Arc<crate::notify::Notifier> {
        &self.inner.notifier
    }

    /// Derives the identity's notifications from what `record` newly holds.
    pub async fn notify(&self, record: RecordId) {
        let n = self.inner.notifier.clone();
        let me = self.actor();
        let now = self.now();
        let done = tokio::task::spawn_blocking(move || n.process(&me, &record, now)).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(%record, error = %e, "could not derive notifications");
        }
    }

    /// Starts, once, the task that derives the identity's notifications from every batch
    /// of entries the network node newly holds (written here or received from a peer) and
    /// from reminders coming due ([`REMINDER_TICK`]). Without a network node, local writes
    /// notify through [`AppState::changed`] and reads catch up.
    pub fn start_notifications(&self) {
        let Some(node) = self.inner.node.clone() else {
            return;
        };
        if self.inner.pump.set(()).is_err() {
            return;
        }
        let st = self.clone();
        tokio::spawn(async move {
            let Ok(mut rx) = node.watch().await else {
                return;
            };
            // Anything that landed before the watch began.
            {
                let n = st.inner.notifier.clone();
                let (me, now) = (st.actor(), st.now());
                let _ = tokio::task::spawn_blocking(move || n.process_all(&me, now)).await;
            }
            let mut tick = tokio::time::interval(REMINDER_TICK);
            loop {
                tokio::select! {
                    got = rx.recv() => match got {
                        Ok(c) => st.notify(c.record).await,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            // Missed batches: the cursors catch up on the next pass.
                            let n = st.inner.notifier.clone();
                            let (me, now) = (st.actor(), st.now());
                            let _ = tokio::task::spawn_blocking(move || n.process_all(&me, now)).await;
                        }
                        Err(_) => return,
                    },
                    _ = tick.tick() => {
                        let n = st.inner.notifier.clone();
                        let (me, now) = (st.actor(), st.now());
                        let _ = tokio::task::spawn_blocking(move || n.process_all(&me, now)).await;
                    }
                }
            }
        });
    }
}

/// A REST error: the status and `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A machine-readable code (`invalid_json`, `not_found`, …).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 invalid input.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    /// 401 missing or wrong token.
    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API token is required: send `Authorization: Bearer <token>` (`cophr token` \
             prints it)",
        )
    }

    /// 403 not authorised by the record's grants.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 not found.
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409 conflict.
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422 the body fails the category's schema (or another validation).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        )
    }

    /// 500 internal failure.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({ "error": { "code": self.code, "message": self.message } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// A QR code of `text` as an SVG document (share links, invitation links, recovery texts).
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(240, 240)
            .quiet_zone(true)
            .build(),
    )
}

/// The status and code for an entry the record's rules refused.
pub fn rejection_status(r: &Rejection) -> (StatusCode, &'static str) {
    use cophr_protocol::care::TaskError;
    use cophr_protocol::record::AccessError;
    match r {
        Rejection::Access(AccessError::DeviceExists(_) | AccessError::KeyInUse(_)) => {
            (StatusCode::CONFLICT, "conflict")
        }
        Rejection::Access(AccessError::NotADevice(_)) => (StatusCode::NOT_FOUND, "not_found"),
        Rejection::Access(_) => (StatusCode::FORBIDDEN, "forbidden"),
        Rejection::Body(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
        // A task step by a party who may not take it is an access refusal; one built on a
        // superseded version, a conflict; any other break of the lifecycle, invalid input.
        Rejection::Task(TaskError::NotOwner { .. } | TaskError::NotRequester { .. }) => {
            (StatusCode::FORBIDDEN, "forbidden")
        }
        Rejection::Task(TaskError::Stale { .. }) => (StatusCode::CONFLICT, "conflict"),
        // A release by the patient is an access refusal; a second one, a conflict.
        Rejection::Release(cophr_protocol::care::ReleaseError::ByPatient) => {
            (StatusCode::FORBIDDEN, "forbidden")
        }
        Rejection::Release(cophr_protocol::care::ReleaseError::AlreadyReleased { .. }) => {
            (StatusCode::CONFLICT, "conflict")
        }
        // Writing into a thread one does not take part in (or naming someone without
        // access) is an access refusal; any other break of a thread's rules, invalid.
        Rejection::Thread(
            cophr_protocol::care::ThreadError::NotParticipant { .. }
            | cophr_protocol::care::ThreadError::NoAccess(_),
        ) => (StatusCode::FORBIDDEN, "forbidden"),
        // Any other break of the record's rules for threads, tasks, appointments, releases,
        // questionnaires and extension definitions: rules across fields and with what the
        // record holds, which no request schema can state (409, documented).
        Rejection::Thread(_)
        | Rejection::Task(_)
        | Rejection::Appointment(_)
        | Rejection::Release(_)
        | Rejection::Questionnaire(_)
        | Rejection::Definition(_) => (StatusCode::CONFLICT, "rule_failed"),
        Rejection::Sealing(_) => (StatusCode::CONFLICT, "conflict"),
        Rejection::Target { .. }
        | Rejection::WrongRecord(_)
        | Rejection::Malformed(_)
        | Rejection::NoGenesis => (StatusCode::BAD_REQUEST, "invalid_input"),
        Rejection::GenesisExists
        | Rejection::Fork { .. }
        | Rejection::MissingParents(_)
        | Rejection::Backlink(_)
        | Rejection::CrossStream(_)
        | Rejection::TimeTravel => (StatusCode::CONFLICT, "conflict"),
        // The store asks the whole record whenever an admission part cannot decide: this
        // never reaches a client unless something is wrong inside the node.
        Rejection::NeedsWholeRecord => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::Rejected(r) => {
                let (status, code) = rejection_status(r);
                ApiError::new(status, code, e.to_string())
            }
            StoreError::NotFound(_) => ApiError::not_found(e.to_string()),
            // Nothing was stored; the client may try again once there is room (507, RFC 4918).
            StoreError::Full(_) => {
                tracing::warn!(error = %e, "a write refused: the disk is full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    e.to_string(),
                )
            }
            StoreError::IndexFailed(_) | StoreError::Busy(_) => {
                tracing::warn!(error = %e, "a request refused: the store cannot take it now");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
            }
            _ => {
                tracing::error!(error = %e, "store failure in an HTTP request");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Refused { rejection, message } => {
                let (status, code) = rejection_status(&rejection);
                ApiError::new(status, code, message)
            }
            SessionError::Store(s) => s.into(),
            SessionError::Cancelled(c) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                format!("{c}: the request timed out or was abandoned"),
            ),
        }
    }
}

/// A JSON request body: `Content-Type: application/json` (else 415), at most
/// [`MAX_BODY`] bytes (else 413), well-formed (else 400 `invalid_json`) and of the expected
/// shape (else 400 `invalid_input`), each with a JSON error body.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

/// Like [`JsonBody`], but an empty body (without a content type) is `T::default()`.
#[derive(Debug, Clone)]
pub struct OptionalJsonBody<T>(pub T);

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| {
            let m = m.trim().to_ascii_lowercase();
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
        .unwrap_or(false)
}

async fn read_body<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<(bool, bool, axum::body::Bytes), ApiError> {
    let json = is_json(req.headers());
    let typed = req.headers().contains_key(header::CONTENT_TYPE);
    let bytes = axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!(
                        "the request body is more than the {} MiB limit",
                        MAX_BODY >> 20
                    ),
                )
            } else {
                ApiError::invalid(format!("cannot read the request body: {e}"))
            }
        })?;
    Ok((json, typed, bytes))
}

fn not_json() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "the request body must be JSON: send `Content-Type: application/json`",
    )
}

/// Parses a JSON document into `T`, with a 400 naming what is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ApiError::invalid(format!(
                "the request body does not have the expected fields: {e}"
            ))
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!("the request body is not valid JSON: {e}"),
            )
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = is_json(req.headers());
        if !is_json {
            return Err(not_json());
        }
        let (_, _, bytes) = read_body(req, state).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (json, typed, bytes) = read_body(req, state).await?;
        if bytes.is_empty() && (!typed || json) {
            return Ok(OptionalJsonBody(T::default()));
        }
        if !json {
            return Err(not_json());
        }
        parse_json(&bytes).map(OptionalJsonBody)
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `path` is served without a token ([`PUBLIC_PATHS`] and the emergency summary
/// page's paths, [`share::is_public`]).
pub fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path) || browser::is_public(path) || share::is_public(path)
}

/// The bearer-token check in front of every route but [`PUBLIC_PATHS`]: 401 with
/// `WWW-Authenticate: Bearer` (a JSON error, or an OperationOutcome under `/fhir/`).
pub async fn auth(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    match bearer(req.headers()) {
        Some(t) if state.token_matches(t) => next.run(req).await,
        _ => {
            if req.uri().path().starts_with("/fhir/") {
                let body = serde_json::json!({
                    "resourceType": "OperationOutcome",
                    "issue": [{
                        "severity": "error",
                        "code": "login",
                        "diagnostics": ApiError::unauthorized().message,
                    }]
                });
                let mut resp = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/fhir+json"),
                );
                return resp;
            }
            ApiError::unauthorized().into_response()
        }
    }
}

/// Logs every request (method, path and status; never headers, queries or bodies).
async fn log_request(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    tracing::debug!(%method, %path, status = resp.status().as_u16(), "HTTP request");
    resp
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such route: {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// The whole HTTP service: `/api/v1` ([`api`]), FHIR ([`fhir`]) and the web app ([`web`])
/// behind the token check, with the body limit and a JSON 404 for unknown routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .nest("/api/v1", api::routes())
        .merge(fhir::routes())
        .merge(openehr::routes())
        .merge(web::routes())
        .merge(share::routes())
        .merge(browser::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(middleware::from_fn(log_request))
        .layer(middleware::from_fn_with_state(
            RequestLimit {
                timeout: state.inner.request_timeout,
                checkpoint: state.inner.checkpoint.clone(),
            },
            time_limit,
        ))
        .with_state(state)
}

/// The request time limit and the test checkpoint hook, for [`time_limit`].
#[derive(Clone, Default)]
struct RequestLimit {
    timeout: std::time::Duration,
    checkpoint: Option<Checkpoint>,
}

/// Cancels a request's flag when the request's future is dropped (the client went away).
struct CancelOnDrop(Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Ends a request that takes longer than the state's request timeout
/// ([`REQUEST_TIMEOUT`] by default) with 408 (a slow client trickling its body holds
/// nothing for longer than that), and gives the request a cancellation flag: set when it
/// times out or its future is dropped, so its reading work stops and audits nothing. A
/// read whose result was already committed (audited) is waited for instead.
async fn time_limit(State(rl): State<RequestLimit>, req: Request, next: Next) -> Response {
    let cancel = match rl.checkpoint {
        Some(hook) => Cancel::with_checkpoint(hook),
        None => Cancel::new(),
    };
    let _on_drop = CancelOnDrop(cancel.clone());
    let limit = rl.timeout + upload_allowance(&req);
    let under_fhir = req.uri().path().starts_with("/fhir/");
    let work = REQUEST.scope(cancel.clone(), next.run(req));
    tokio::pin!(work);
    match tokio::time::timeout(limit, &mut work).await {
        Ok(response) => response,
        Err(_) if !cancel.cancel() => work.await,
        Err(_) => {
            let message = format!("the request took longer than {limit:?}");
            if under_fhir {
                // A FHIR client gets an OperationOutcome, like every other FHIR error.
                fhir::Outcome::new(StatusCode::REQUEST_TIMEOUT, "timeout", message).into_response()
            } else {
                ApiError::new(StatusCode::REQUEST_TIMEOUT, "timeout", message).into_response()
            }
        }
    }
}

/// The slowest a document upload may arrive and still finish (1 MiB/s): an upload gets
/// the request time limit plus its length at this rate, so a slow client still cannot
/// hold a request open for longer than its file needs.
pub const MIN_UPLOAD_RATE: u64 = 1 << 20;

/// The time a document upload (`POST …/documents`, a message's `POST …/attachments`, a
/// FHIR `POST Binary`, or a browser's sealed bytes, `PUT /sync/blobs/{hash}`) may take beyond the request time limit, from its
/// declared length ([`MIN_UPLOAD_RATE`]); nothing for other requests.
fn upload_allowance(req: &Request) -> std::time::Duration {
    let path = req.uri().path().trim_end_matches('/');
    let upload = match *req.method() {
        axum::http::Method::POST => {
            path.ends_with("/documents")
                || path.ends_with("/attachments")
                || path == "/fhir/r4/Binary"
        }
        axum::http::Method::PUT => path.starts_with(browser::BLOBS),
        _ => false,
    };
    if !upload {
        return std::time::Duration::ZERO;
    }
    let len: u64 = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
        .min(cophr_protocol::blob::MAX_DOCUMENT_BYTES);
    std::time::Duration::from_secs(len / MIN_UPLOAD_RATE)
}

/// Entries or items the background build of a FHIR search index takes in per slice (the
/// longest it holds a record, or keeps a read of it waiting: tens of milliseconds).
pub const FHIR_INDEX_SLICE: usize = 500;

/// The records whose FHIR index the background build makes: those the identity has any
/// access to, at most [`fhir::index::MAX_INDEXED_RECORDS`].
fn index_targets(inner: &Inner) -> Vec<RecordId> {
    let me = inner.key.actor();
    let now = (inner.clock)();
    let mut out = Vec::new();
    for r in inner.store.records().unwrap_or_default() {
        if out.len() >= fhir::index::MAX_INDEXED_RECORDS {
            break;
        }
        if inner
            .store
            .with_record(&r, |rec| rec.viewer(&me, now).has_access())
            .unwrap_or(false)
        {
            out.push(r);
        }
    }
    out
}

/// One slice of the build of `rid`'s index (`Ok(true)`: caught up, or not readable).
fn build_slice(inner: &Inner, rid: &RecordId, stop: &Cancel) -> Result<bool, Cancelled> {
    inner
        .store
        .with_record(rid, |rec| {
            inner.fhir_index.build_slice(rec, stop, FHIR_INDEX_SLICE)
        })
        .unwrap_or(Ok(true))
}

fn build_indexes(inner: &Inner, stop: &Cancel) -> Result<(), Cancelled> {
    for rid in index_targets(inner) {
        restore_index(inner, &rid);
        while !build_slice(inner, &rid, stop)? {}
        save_index(inner, &rid, fhir::index::SAVE_MIN_NEW);
    }
    Ok(())
}

/// Takes `rid`'s saved index, if it has a usable one and no index is held for it yet: the
/// build then catches up from where the saved one stopped (or starts again from empty if
/// the record is not what it was: see `RecordIndex::catch_up_within`).
fn restore_index(inner: &Inner, rid: &RecordId) {
    let Some(bytes) = inner
        .store
        .read_derived(FHIR_INDEXES, rid, fhir::index::MAX_SAVED_BYTES)
    else {
        return;
    };
    let Some(ix) = fhir::index::RecordIndex::from_bytes(rid, &bytes) else {
        tracing::info!(record = %rid, "saved FHIR index not usable (another release, or damaged): building it again");
        return;
    };
    let seen = ix.seen();
    let restored = inner
        .store
        .with_record(rid, |rec| inner.fhir_index.restore(rec, ix))
        .unwrap_or(false);
    if restored {
        inner.fhir_index.note_saved(rid, seen);
        tracing::debug!(record = %rid, entries = seen, "FHIR index restored");
    }
}

/// Saves `rid`'s index if it is settled and took in at least `min_new` entries since it
/// was last saved or restored (a small record's index is not saved: it is built again in
/// moments). A failure is logged: the index is derived state.
fn save_index(inner: &Inner, rid: &RecordId, min_new: usize) {
    let Some((seen, bytes)) = inner.fhir_index.saved(rid) else {
        return;
    };
    let last = inner.fhir_index.saved_at(rid).unwrap_or(0);
    if seen < last.saturating_add(min_new) {
        return;
    }
    match inner.store.write_derived(FHIR_INDEXES, rid, &bytes) {
        Ok(()) => inner.fhir_index.note_saved(rid, seen),
        Err(e) => tracing::warn!(record = %rid, error = %e, "could not save the FHIR index"),
    }
}

/// Serves [`router`] on `listener` until `shutdown` completes (then finishes the requests
/// in flight), under the default [`ConnLimits`] (see [`conn`]).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, ConnLimits::default(), shutdown).await
}

/// [`serve`] under other connection limits.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AppState,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    state.start_notifications();
    // The FHIR search indexes are built in the background, not by the first reads.
    let build = Cancel::new();
    state.start_fhir_index_build(build.clone());
    let saving = state.clone();
    let served = conn::serve_with(listener, router(state), limits, shutdown).await;
    build.cancel();
    // The indexes that grew since they were saved, for the next start.
    saving.save_fhir_indexes();
    served
}

/// Reads a whole number given as a JSON integer or as a number with no fraction (`2.0`):
/// JSON Schema's `integer` (what the OpenAPI document promises) allows both.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let n = <serde_json::Number as serde::Deserialize>::deserialize(d)?;
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .filter(|x| x.fract() == 0.0 && (0.0..=9_007_199_254_740_992.0).contains(x))
                // In range and whole, checked above.
                .map(|x| x as u64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("{n} is not a whole number")))
}

/// [`whole_number`] for an optional field (absent or `null`: `None`).
pub(crate) fn whole_number_opt<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    struct W(#[serde(deserialize_with = "whole_number")] u64);
    Ok(<Option<W> as serde::Deserialize>::deserialize(d)?.map(|w| w.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    #[tokio::test(start_paused = true)]
    async fn a_request_that_outlasts_the_time_limit_gets_408() {
        let app: Router = Router::new()
            .route("/slow", get(std::future::pending::<&'static str>))
            .route("/quick", get(|| async { "ok" }))
            .layer(middleware::from_fn_with_state(
                RequestLimit {
                    timeout: REQUEST_TIMEOUT,
                    checkpoint: None,
                },
                time_limit,
            ));
        let slow = app
            .clone()
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(slow.status(), StatusCode::REQUEST_TIMEOUT);
        let quick = app
            .oneshot(Request::get("/quick").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(quick.status(), StatusCode::OK);
    }
}
