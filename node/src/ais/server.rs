//! The AIS's HTTP service (axum).
//!
//! - `GET  /ais/v1/info` — `{"ais": "a-…", "providers": ["nhs-login", …]}`.
//! - `POST /ais/v1/start` — `{"request": B64URL, "provider": NAME?}`, the request a
//!   [`SignedRequest`] for [`Purpose::Start`] signed by the person's key → `{"authorization_url",
//!   "expires_in"}`. The state, nonce and PKCE verifier stay here ([`MAX_PENDING`] at most,
//!   [`PENDING_TTL_MS`] each, used once).
//! - `GET  /ais/v1/callback?code=…&state=…` — the provider's redirect: the state is taken
//!   (once), the code exchanged, the ID token verified against that state's nonce, the
//!   claims mapped, an attestation signed and kept for the subject; a plain HTML page.
//! - `POST /ais/v1/collect` — `{"request": B64URL}` for [`Purpose::Collect`] →
//!   `{"attestations": [B64URL of SignedAttestation CBOR, …]}` (unrevoked, unexpired).
//! - `GET  /ais/v1/revocations` — `{"revocations": [B64URL of SignedRevocation CBOR, …]}`.
//!
//! B64URL is base64url without padding. Bodies are at most [`MAX_BODY_BYTES`]; a signed
//! request is refused if seen before ([`Replay`]). Nothing here logs a token, code, secret
//! or personal attribute.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cophr_protocol::trust::attestation::{Attestation, ATTESTATION_VERSION};
use cophr_protocol::trust::request::{Purpose, SignedRequest};
use cophr_protocol::trust::{AssuranceLevel, Method};
use cophr_protocol::{ActorId, Keypair, Timestamp};
use data_encoding::BASE64URL_NOPAD;
use openidconnect::Nonce;
use rand_core::RngCore;
use serde::{Deserialize, Serialize};

use super::config::AisConfig;
use super::oidc::{map_claims, Provider};
use super::store::AisStore;
use super::AisError;
use crate::http::conn::{serve_with, ConnLimits};

/// Largest request body.
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Most verifications in progress at once.
pub const MAX_PENDING: usize = 1024;
/// Most verifications in progress for one key.
pub const MAX_PENDING_PER_SUBJECT: usize = 4;
/// How long a started verification may take.
pub const PENDING_TTL_MS: u64 = 10 * 60 * 1000;
/// Most signed request nonces remembered.
pub const MAX_SEEN: usize = 16 * 1024;
/// Longest accepted `code` or `state` parameter.
const MAX_PARAM: usize = 2048;

/// Signed request nonces seen within the skew window: a request is accepted once.
#[derive(Debug, Default)]
pub struct Replay {
    seen: HashMap<[u8; 16], Timestamp>,
}

impl Replay {
    /// Records `nonce` (valid until `until`); false if it was seen before, or if the table
    /// is full of unexpired nonces (refusing is safe; accepting could allow a replay).
    pub fn first_use(&mut self, nonce: &[u8], now: Timestamp, until: Timestamp) -> bool {
        let Ok(key) = <[u8; 16]>::try_from(nonce) else {
            return false;
        };
        if self.seen.contains_key(&key) {
            return false;
        }
        if self.seen.len() >= MAX_SEEN {
            self.seen.retain(|_, t| *t >= now);
            if self.seen.len() >= MAX_SEEN {
                return false;
            }
        }
        self.seen.insert(key, until);
        true
    }
}

/// A verification started and not yet finished.
#[derive(Debug)]
struct Pending {
    subject: ActorId,
    provider: usize,
    nonce: Nonce,
    pkce_verifier: String,
    expires: Timestamp,
}

/// The service: its key, its store, its providers and what is in progress.
pub struct AisService {
    key: Keypair,
    store: AisStore,
    providers: Vec<Provider>,
    pending: Mutex<HashMap<String, Pending>>,
    seen: Mutex<Replay>,
    clock: Box<dyn Fn() -> Timestamp + Send + Sync>,
}

impl std::fmt::Debug for AisService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AisService")
            .field("ais", &self.key.actor())
            .field("providers", &self.providers.len())
            .finish_non_exhaustive()
    }
}

/// The error body: a stable code and a reason for people.
#[derive(Debug, Serialize)]
struct ErrorBody {
    error: &'static str,
    message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorBody {
            error: code,
            message: message.into(),
        }),
    )
        .into_response()
}

fn ais_refusal(e: &AisError) -> Response {
    match e {
        AisError::Request(_) => refuse(StatusCode::FORBIDDEN, "bad-request-proof", e.to_string()),
        AisError::Malformed(_) => refuse(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
        AisError::Replayed => refuse(StatusCode::FORBIDDEN, "replayed", e.to_string()),
        AisError::NotFound(_) => refuse(StatusCode::NOT_FOUND, "not-found", e.to_string()),
        AisError::Full(_) => refuse(StatusCode::SERVICE_UNAVAILABLE, "busy", e.to_string()),
        AisError::Oidc(_) => refuse(StatusCode::BAD_GATEWAY, "provider", e.to_string()),
        _ => refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `POST /ais/v1/start` and `/collect` bodies.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    request: String,
    #[serde(default)]
    provider: Option<String>,
}

/// `GET /ais/v1/callback` parameters.
#[derive(Debug, Deserialize)]
struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

impl AisService {
    /// A service signing with `key`, keeping its log in `home`, accepting the configured
    /// providers; `public_url` is where browsers reach it (callbacks default to
    /// `PUBLIC_URL/ais/v1/callback`).
    pub fn new(
        key: Keypair,
        home: &std::path::Path,
        config: &AisConfig,
        public_url: &str,
        clock: impl Fn() -> Timestamp + Send + Sync + 'static,
    ) -> Result<Self, AisError> {
        config.check()?;
        let public = config
            .public_url
            .as_deref()
            .unwrap_or(public_url)
            .trim_end_matches('/');
        let mut providers = Vec::new();
        for p in &config.providers {
            let redirect = p
                .redirect_url
                .clone()
                .unwrap_or_else(|| format!("{public}/ais/v1/callback"));
            providers.push(Provider::new(p.clone(), &redirect).map_err(AisError::Oidc)?);
        }
        Ok(AisService {
            key,
            store: AisStore::new(home),
            providers,
            pending: Mutex::new(HashMap::new()),
            seen: Mutex::new(Replay::default()),
            clock: Box::new(clock),
        })
    }

    /// This AIS's id.
    pub fn actor(&self) -> ActorId {
        self.key.actor()
    }

    /// The callback URLs, by provider name.
    pub fn redirect_urls(&self) -> Vec<(String, String)> {
        self.providers
            .iter()
            .map(|p| (p.config.name.clone(), p.redirect_url().to_string()))
            .collect()
    }

    fn now(&self) -> Timestamp {
        (self.clock)()
    }

    /// Decodes and checks a signed request (AIS, purpose, time, signature), once only.
    fn check_request(&self, b64: &str, purpose: Purpose) -> Result<ActorId, AisError> {
        if b64.len() > MAX_BODY_BYTES {
            return Err(AisError::Malformed(
                "the signed request is too large".into(),
            ));
        }
        let bytes = BASE64URL_NOPAD
            .decode(b64.as_bytes())
            .map_err(|_| AisError::Malformed("the signed request is not base64url".into()))?;
        let now = self.now();
        let r = SignedRequest::decode_and_check(&bytes, &self.actor(), purpose, now)?;
        let until = now + 2 * cophr_protocol::trust::request::MAX_REQUEST_SKEW_MS;
        if !self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_use(&r.request.nonce, now, until)
        {
            return Err(AisError::Replayed);
        }
        Ok(r.request.subject)
    }

    /// Starts a verification: the authorization URL for the person's browser. Blocking.
    pub fn start(&self, b64: &str, provider: Option<&str>) -> Result<String, AisError> {
        let subject = self.check_request(b64, Purpose::Start)?;
        let index = match provider {
            None => 0,
            Some(name) => self
                .providers
                .iter()
                .position(|p| p.config.name == name)
                .ok_or_else(|| AisError::NotFound(format!("no identity provider `{name}` here")))?,
        };
        let now = self.now();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            pending.retain(|_, p| p.expires > now);
            if pending.len() >= MAX_PENDING {
                return Err(AisError::Full(
                    "too many verifications in progress; try again in a few minutes".into(),
                ));
            }
            if pending.values().filter(|p| p.subject == subject).count() >= MAX_PENDING_PER_SUBJECT
            {
                return Err(AisError::Full(
                    "too many verifications in progress for this key; finish one or wait ten \
                     minutes"
                        .into(),
                ));
            }
        }
        let begun = self.providers[index].begin(now)?;
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if pending.len() >= MAX_PENDING {
            return Err(AisError::Full(
                "too many verifications in progress; try again in a few minutes".into(),
            ));
        }
        pending.insert(
            begun.state,
            Pending {
                subject,
                provider: index,
                nonce: begun.nonce,
                pkce_verifier: begun.pkce_verifier,
                expires: now + PENDING_TTL_MS,
            },
        );
        Ok(begun.url)
    }

    /// Finishes a verification from the provider's redirect. Blocking. Returns the issued
    /// attestation's id, subject and level.
    fn callback(
        &self,
        params: &CallbackParams,
    ) -> Result<
        (
            cophr_protocol::trust::AttestationId,
            ActorId,
            AssuranceLevel,
        ),
        AisError,
    > {
        let state = params.state.as_deref().ok_or(AisError::State)?;
        if state.len() > MAX_PARAM {
            return Err(AisError::State);
        }
        let now = self.now();
        // Taken once: a replayed callback (same state, same nonce) finds nothing.
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
            .ok_or(AisError::State)?;
        if pending.expires <= now {
            return Err(AisError::State);
        }
        let provider = &self.providers[pending.provider];
        if let Some(error) = &params.error {
            let error: String = error
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            return Err(AisError::Oidc(super::OidcError::Exchange(format!(
                "the identity provider reported `{error}`"
            ))));
        }
        let code = params
            .code
            .as_deref()
            .filter(|c| !c.is_empty() && c.len() <= MAX_PARAM)
            .ok_or_else(|| {
                AisError::Oidc(super::OidcError::Exchange("no authorization code".into()))
            })?;
        if let Some(iss) = &params.iss {
            // RFC 9207: the response names its issuer; another one is a mix-up attack.
            let metadata = provider.metadata(now, false)?;
            if iss.as_str() != metadata.issuer().as_str() {
                return Err(AisError::Oidc(super::OidcError::Issuer));
            }
        }
        let claims = provider.finish(code, pending.pkce_verifier, &pending.nonce, now)?;
        let (attributes, level) = map_claims(&claims, &provider.config)?;
        let mut serial = vec![0u8; 16];
        rand_core::OsRng.fill_bytes(&mut serial);
        let attestation = Attestation {
            v: ATTESTATION_VERSION,
            issuer: self.actor(),
            subject: pending.subject,
            attributes,
            level,
            method: Method::Oidc {
                issuer: provider.config.issuer.clone(),
            },
            not_before: now,
            not_after: now + u64::from(provider.config.valid_days) * 24 * 3600 * 1000,
            serial,
        }
        .sign(&self.key)
        .map_err(|e| {
            AisError::Oidc(super::OidcError::Claims(super::oidc::attestation_problem(
                &e,
            )))
        })?;
        let id = self.store.issue(&attestation)?;
        tracing::info!(attestation = %id, %level, provider = %provider.config.name, "issued an attestation");
        Ok((id, pending.subject, level))
    }

    /// The subject's current attestations (unrevoked, valid now), encoded.
    fn collect(&self, b64: &str) -> Result<Vec<String>, AisError> {
        let subject = self.check_request(b64, Purpose::Collect)?;
        let now = self.now();
        Ok(self
            .store
            .for_subject(&subject)?
            .into_iter()
            .filter(|i| i.revocation.is_none() && i.attestation.attestation.valid_at(now))
            .map(|i| BASE64URL_NOPAD.encode(&i.attestation.encode()))
            .collect())
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t}</title></head>\n<body><h1>{t}</h1>\n<p>{body}</p>\n</body></html>\n",
        t = esc(title)
    );
    (
        status,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Html(html),
    )
        .into_response()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AisError> + Send + 'static,
) -> Result<T, AisError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|_| Err(AisError::Io("the request's task failed".into())))
}

async fn info(State(s): State<Arc<AisService>>) -> Response {
    let names: Vec<&str> = s.providers.iter().map(|p| p.config.name.as_str()).collect();
    Json(serde_json::json!({ "ais": s.actor().to_string(), "providers": names })).into_response()
}

async fn start(
    State(s): State<Arc<AisService>>,
    body: Result<Json<RequestBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return refuse(e.status(), "invalid", e.body_text()),
    };
    match blocking(move || s.start(&body.request, body.provider.as_deref())).await {
        Ok(url) => Json(serde_json::json!({
            "authorization_url": url,
            "expires_in": PENDING_TTL_MS / 1000,
        }))
        .into_response(),
        Err(e) => {
            tracing::info!(error = %e, "refused a verification start");
            ais_refusal(&e)
        }
    }
}

async fn callback(
    State(s): State<Arc<AisService>>,
    params: Result<Query<CallbackParams>, QueryRejection>,
) -> Response {
    let Ok(Query(params)) = params else {
        return page(
            StatusCode::BAD_REQUEST,
            "Identity not verified",
            "The identity provider's response is malformed. Start again with <code>cophr ais request</code>.",
        );
    };
    match blocking(move || s.callback(&params)).await {
        Ok((id, subject, level)) => page(
            StatusCode::OK,
            "Identity verified",
            &format!(
                "Your key <code>{}</code> is now attested at level {} (attestation <code>{}</code>). \
                 Return to cophr: <code>cophr ais request</code> collects it.",
                esc(&subject.to_string()),
                level,
                esc(&id.to_string())
            ),
        ),
        Err(e) => {
            tracing::info!(error = %e, "refused a verification callback");
            let status = match e {
                AisError::State | AisError::Oidc(_) => StatusCode::BAD_REQUEST,
                AisError::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            page(
                status,
                "Identity not verified",
                &format!("{}. Nothing was issued.", esc(&e.to_string())),
            )
        }
    }
}

async fn collect(
    State(s): State<Arc<AisService>>,
    body: Result<Json<RequestBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return refuse(e.status(), "invalid", e.body_text()),
    };
    match blocking(move || s.collect(&body.request)).await {
        Ok(list) => Json(serde_json::json!({ "attestations": list })).into_response(),
        Err(e) => ais_refusal(&e),
    }
}

async fn revocations(State(s): State<Arc<AisService>>) -> Response {
    let store = s.store.clone();
    match blocking(move || store.revocations()).await {
        Ok(list) => {
            let list: Vec<String> = list
                .iter()
                .map(|r| BASE64URL_NOPAD.encode(&r.encode()))
                .collect();
            Json(serde_json::json!({ "revocations": list })).into_response()
        }
        Err(e) => ais_refusal(&e),
    }
}

/// The service's routes.
pub fn router(service: Arc<AisService>) -> Router {
    Router::new()
        .route("/ais/v1/info", get(info))
        .route("/ais/v1/start", post(start))
        .route("/ais/v1/callback", get(callback))
        .route("/ais/v1/collect", post(collect))
        .route("/ais/v1/revocations", get(revocations))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(service)
}

/// Serves the AIS on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<AisService>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router(service), ConnLimits::default(), shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use cophr_protocol::testkit::key;
    use cophr_protocol::trust::request::Request;

    fn service(dir: &std::path::Path) -> AisService {
        let config: AisConfig = toml::from_str(
            "[[provider]]\nname = \"nhs\"\nissuer = \"http://127.0.0.1:9\"\n\
             client_id = \"c\"\nlevel = \"P5\"\nmax_level = \"P9\"\n",
        )
        .unwrap();
        AisService::new(key(7, "AIS"), dir, &config, "http://127.0.0.1:1", || {
            1_000_000
        })
        .unwrap()
    }

    fn signed(ais: &ActorId, who: &Keypair, purpose: Purpose, nonce: u8) -> String {
        let r = Request {
            ais: *ais,
            subject: who.actor(),
            purpose,
            time: 1_000_000,
            nonce: vec![nonce; 16],
        }
        .sign(who);
        BASE64URL_NOPAD.encode(&r.encode())
    }

    #[test]
    fn requests_are_checked_and_accepted_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        let george = key(7, "George");
        let collect = signed(&s.actor(), &george, Purpose::Collect, 1);
        assert_eq!(s.collect(&collect).unwrap(), Vec::<String>::new());
        assert_eq!(s.collect(&collect).unwrap_err(), AisError::Replayed);
        let start = signed(&s.actor(), &george, Purpose::Start, 2);
        assert!(matches!(s.collect(&start), Err(AisError::Request(_))));
        let elsewhere = signed(&george.actor(), &key(7, "Mary"), Purpose::Collect, 3);
        assert!(matches!(s.collect(&elsewhere), Err(AisError::Request(_))));
        assert!(matches!(s.collect("!!"), Err(AisError::Malformed(_))));
        assert!(matches!(
            s.start(
                &signed(&s.actor(), &george, Purpose::Start, 4),
                Some("other")
            ),
            Err(AisError::NotFound(_))
        ));
    }

    #[test]
    fn a_callback_with_an_unknown_state_issues_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = service(dir.path());
        for state in [None, Some("nope".to_string()), Some("x".repeat(5000))] {
            let params = CallbackParams {
                code: Some("code".into()),
                state,
                iss: None,
                error: None,
            };
            assert_eq!(s.callback(&params).unwrap_err(), AisError::State);
        }
        assert!(s.store.list().unwrap().is_empty());
    }

    #[test]
    fn the_replay_table_is_bounded() {
        let mut r = Replay::default();
        assert!(r.first_use(&[1; 16], 0, 10));
        assert!(!r.first_use(&[1; 16], 0, 10));
        assert!(!r.first_use(&[1; 3], 0, 10));
        for i in 0..MAX_SEEN as u32 {
            let mut n = [0u8; 16];
            n[..4].copy_from_slice(&i.to_be_bytes());
            n[15] = 9;
            r.first_use(&n, 0, 10);
        }
        assert!(!r.first_use(&[2; 16], 5, 10), "full of live nonces: refuse");
        assert!(r.first_use(&[2; 16], 11, 20), "expired ones make room");
    }
}
