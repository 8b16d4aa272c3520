//! The person's side of an AIS (`cophr ais request`): ask it to start a verification of
//! one's key, and collect what it issued. Blocking (ureq).

use std::time::Duration;

use cophr_protocol::trust::request::{Purpose, Request, REQUEST_NONCE_BYTES};
use cophr_protocol::trust::SignedAttestation;
use cophr_protocol::{ActorId, Keypair, Timestamp};
use data_encoding::BASE64URL_NOPAD;
use rand_core::RngCore;
use serde::Deserialize;

use super::AisError;

/// Largest response read from an AIS.
const MAX_RESPONSE_BYTES: u64 = 1024 * 1024;
/// Most attestations accepted from one collection.
const MAX_COLLECTED: usize = 64;

/// An AIS, as the person reaches it.
#[derive(Debug, Clone)]
pub struct AisClient {
    base: String,
    agent: ureq::Agent,
}

/// `GET /ais/v1/info`.
#[derive(Debug, Clone, Deserialize)]
pub struct Info {
    /// The AIS's key.
    pub ais: ActorId,
    /// Its providers' names.
    pub providers: Vec<String>,
}

#[derive(Deserialize)]
struct Refusal {
    message: String,
}

impl AisClient {
    /// The AIS at `base` (`http(s)://host:port`).
    pub fn new(base: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        AisClient {
            base: base.trim_end_matches('/').to_string(),
            agent,
        }
    }

    fn read<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, AisError> {
        let remote = |e: String| AisError::Remote(format!("{what}: {e}"));
        let response = response.map_err(|e| remote(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| remote(e.to_string()))?;
        if !status.is_success() {
            let reason = serde_json::from_slice::<Refusal>(&bytes)
                .map(|r| r.message)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(remote(reason));
        }
        serde_json::from_slice(&bytes).map_err(|e| remote(format!("unexpected answer: {e}")))
    }

    /// The AIS's key and providers.
    pub fn info(&self) -> Result<Info, AisError> {
        let r = self.agent.get(format!("{}/ais/v1/info", self.base)).call();
        self.read("the AIS's info", r)
    }

    fn signed(key: &Keypair, ais: &ActorId, purpose: Purpose, now: Timestamp) -> String {
        let mut nonce = vec![0u8; REQUEST_NONCE_BYTES];
        rand_core::OsRng.fill_bytes(&mut nonce);
        let r = Request {
            ais: *ais,
            subject: key.actor(),
            purpose,
            time: now,
            nonce,
        }
        .sign(key);
        BASE64URL_NOPAD.encode(&r.encode())
    }

    /// Starts a verification of `key`'s holder: the URL to open in a browser.
    pub fn start(
        &self,
        key: &Keypair,
        ais: &ActorId,
        provider: Option<&str>,
        now: Timestamp,
    ) -> Result<String, AisError> {
        #[derive(Deserialize)]
        struct Started {
            authorization_url: String,
        }
        let body = serde_json::json!({
            "request": Self::signed(key, ais, Purpose::Start, now),
            "provider": provider,
        });
        let r = self
            .agent
            .post(format!("{}/ais/v1/start", self.base))
            .header("content-type", "application/json")
            .send(body.to_string());
        let s: Started = self.read("starting a verification", r)?;
        Ok(s.authorization_url)
    }

    /// Collects the attestations the AIS holds for `key`: each decoded and verified, and
    /// refused unless signed by `ais` about `key`.
    pub fn collect(
        &self,
        key: &Keypair,
        ais: &ActorId,
        now: Timestamp,
    ) -> Result<Vec<SignedAttestation>, AisError> {
        #[derive(Deserialize)]
        struct Collected {
            attestations: Vec<String>,
        }
        let body = serde_json::json!({ "request": Self::signed(key, ais, Purpose::Collect, now) });
        let r = self
            .agent
            .post(format!("{}/ais/v1/collect", self.base))
            .header("content-type", "application/json")
            .send(body.to_string());
        let c: Collected = self.read("collecting attestations", r)?;
        let mut out = Vec::new();
        for b64 in c.attestations.iter().take(MAX_COLLECTED) {
            let bytes = BASE64URL_NOPAD
                .decode(b64.as_bytes())
                .map_err(|_| AisError::Remote("an attestation is not base64url".into()))?;
            let a = SignedAttestation::decode(&bytes).map_err(AisError::Attestation)?;
            if a.attestation.issuer != *ais || a.attestation.subject != key.actor() {
                return Err(AisError::Remote(
                    "the AIS returned an attestation by another issuer or about another key".into(),
                ));
            }
            out.push(a);
        }
        Ok(out)
    }
}
