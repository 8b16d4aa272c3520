//! OpenID Connect, relying-party side, with the `openidconnect` crate: discovery (and the
//! provider's JWKS), the authorization URL with state, nonce and PKCE, the code exchange,
//! ID token verification (signature against the JWKS, issuer, audience, expiry, nonce),
//! and the mapping of the verified claims to attested attributes and a level.
//!
//! HTTP goes through ureq (rustls), which follows no redirect (the crate asks for that, so a
//! provider cannot send the AIS's requests elsewhere) and reads at most
//! [`MAX_RESPONSE_BYTES`] of a response.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use cophr_protocol::trust::attestation::{valid_nhs_number, NationalNumber};
use cophr_protocol::trust::{AssuranceLevel, Attributes};
use cophr_protocol::Timestamp;
use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, Client, ClientId, ClientSecret,
    CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet, HttpRequest,
    HttpResponse, IdToken, IdTokenClaims, IdTokenFields, IdTokenVerifier, IssuerUrl, JsonWebKeySet,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, StandardErrorResponse,
    StandardTokenResponse, SyncHttpClient, TokenResponse,
};
use serde::{Deserialize, Serialize};

use super::config::ProviderConfig;

/// Largest HTTP response read from a provider (discovery, JWKS, token).
pub const MAX_RESPONSE_BYTES: u64 = 256 * 1024;
/// Longest an ID token may be.
pub const MAX_ID_TOKEN_BYTES: usize = 16 * 1024;
/// How long discovered metadata and keys are used before they are fetched again.
pub const METADATA_TTL_MS: u64 = 10 * 60 * 1000;
/// How long one HTTP exchange with a provider may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(20);

/// The signature algorithms accepted on ID tokens: asymmetric only, so a token is never
/// accepted on a key the AIS itself knows (no HMAC with the client secret, never `none`).
pub const ALLOWED_ALGS: [CoreJwsSigningAlgorithm; 10] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EcdsaP521Sha512,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// Claims beyond the standard ones (NHS login's `nhs_number`, `identity_proofing_level` …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExtraClaims {
    /// Every other claim, by name.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

/// An ID token with [`ExtraClaims`].
pub type AisIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
/// Its verified claims.
pub type AisClaims = IdTokenClaims<ExtraClaims, CoreGenderClaim>;
type AisTokenResponse = StandardTokenResponse<
    IdTokenFields<
        ExtraClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;
type AisClient = Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    AisTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why an OpenID Connect verification failed. The messages never carry tokens, codes,
/// secrets or personal attributes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OidcError {
    /// The provider's metadata or keys could not be fetched or are invalid.
    #[error("cannot discover the identity provider: {0}")]
    Discovery(String),
    /// The code could not be exchanged for tokens.
    #[error("the identity provider refused the code exchange: {0}")]
    Exchange(String),
    /// The token response has no ID token.
    #[error("the identity provider returned no ID token")]
    NoIdToken,
    /// The ID token is too large or not a JWT.
    #[error("the ID token is malformed: {0}")]
    Malformed(String),
    /// The ID token's signature does not verify against the provider's published keys.
    #[error("the ID token's signature does not verify against the provider's keys: {0}")]
    Signature(String),
    /// Issued for another client.
    #[error("the ID token was issued for another client (wrong audience)")]
    Audience,
    /// Issued by another issuer.
    #[error("the ID token was issued by another issuer")]
    Issuer,
    /// Expired.
    #[error("the ID token has expired")]
    Expired,
    /// Its nonce is not the one issued with this verification's state (a replayed or
    /// injected token).
    #[error("the ID token's nonce does not match this verification (replayed or injected)")]
    Nonce,
    /// Another claim check failed.
    #[error("the ID token is not acceptable: {0}")]
    Invalid(String),
    /// A claim needed for the attestation is missing or invalid.
    #[error("the identity provider's claims cannot be attested: {0}")]
    Claims(String),
}

impl From<ClaimsVerificationError> for OidcError {
    fn from(e: ClaimsVerificationError) -> Self {
        match e {
            ClaimsVerificationError::Expired(_) => OidcError::Expired,
            ClaimsVerificationError::InvalidAudience(_) => OidcError::Audience,
            ClaimsVerificationError::InvalidIssuer(_) => OidcError::Issuer,
            ClaimsVerificationError::InvalidNonce(_) => OidcError::Nonce,
            ClaimsVerificationError::SignatureVerification(s) => {
                OidcError::Signature(s.to_string())
            }
            other => OidcError::Invalid(other.to_string()),
        }
    }
}

/// The HTTP client openidconnect uses: ureq, no redirects, bounded responses.
#[derive(Debug, Clone)]
pub struct Http(ureq::Agent);

/// An HTTP failure talking to a provider.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

impl Http {
    /// A client with the AIS's settings.
    pub fn new() -> Self {
        let config = ureq::Agent::config_builder()
            .max_redirects(0)
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build();
        Http(config.into())
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl SyncHttpClient for Http {
    type Error = HttpError;
    fn call(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = self.0.run(request).map_err(|e| HttpError(e.to_string()))?;
        let (parts, mut body) = response.into_parts();
        let bytes = body
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| HttpError(e.to_string()))?;
        Ok(HttpResponse::from_parts(parts, bytes))
    }
}

/// What the verifier expects of an ID token.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The provider's issuer.
    pub issuer: &'a IssuerUrl,
    /// This AIS's client id there (the audience).
    pub client_id: &'a ClientId,
    /// The provider's published keys.
    pub jwks: &'a JsonWebKeySet<CoreJsonWebKey>,
    /// The nonce sent with this verification's authorization request.
    pub nonce: &'a Nonce,
    /// Now, ms since the Unix epoch.
    pub now: Timestamp,
}

/// Verifies an ID token: signature against the provider's keys (asymmetric algorithms
/// only), issuer, audience (and authorized party), expiry, issue time and nonce.
pub fn verify_id_token(
    token: &AisIdToken,
    expected: &Expected<'_>,
) -> Result<AisClaims, OidcError> {
    let now = DateTime::<Utc>::from_timestamp_millis(expected.now as i64)
        .ok_or_else(|| OidcError::Invalid("the clock is out of range".into()))?;
    let verifier: IdTokenVerifier<'_, CoreJsonWebKey> = IdTokenVerifier::new_public_client(
        expected.client_id.clone(),
        expected.issuer.clone(),
        expected.jwks.clone(),
    )
    .set_allowed_algs(ALLOWED_ALGS)
    .set_time_fn(move || now);
    let claims = token.claims(&verifier, expected.nonce)?;
    Ok(claims.clone())
}

/// Parses an ID token's text (bounded).
pub fn parse_id_token(text: &str) -> Result<AisIdToken, OidcError> {
    if text.len() > MAX_ID_TOKEN_BYTES {
        return Err(OidcError::Malformed(format!(
            "longer than {MAX_ID_TOKEN_BYTES} bytes"
        )));
    }
    text.parse::<AisIdToken>()
        .map_err(|_| OidcError::Malformed("not a signed JWT".into()))
}

fn claim_text<'a>(claims: &'a AisClaims, name: &str) -> Option<&'a str> {
    claims
        .additional_claims()
        .other
        .get(name)
        .and_then(|v| v.as_str())
}

/// Maps verified claims to a person's attributes and the level to attest, as the provider's
/// configuration says.
pub fn map_claims(
    claims: &AisClaims,
    provider: &ProviderConfig,
) -> Result<(Attributes, AssuranceLevel), OidcError> {
    let name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.as_str().trim().to_string())
        .filter(|n| !n.is_empty())
        .or_else(|| {
            let given = claims.given_name().and_then(|n| n.get(None))?;
            let family = claims.family_name().and_then(|n| n.get(None))?;
            Some(format!(
                "{} {}",
                given.as_str().trim(),
                family.as_str().trim()
            ))
        })
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            OidcError::Claims("no `name` (nor `given_name` and `family_name`) claim".into())
        })?;
    let birth_date = claims.birthdate().map(|b| b.as_str().to_string());
    let national_number = match &provider.nhs_number_claim {
        None => None,
        Some(claim) => match claim_text(claims, claim) {
            None => None,
            Some(n) => {
                let n: String = n.chars().filter(|c| *c != ' ').collect();
                if !valid_nhs_number(&n) {
                    return Err(OidcError::Claims(format!(
                        "the `{claim}` claim is not a valid NHS number"
                    )));
                }
                Some(NationalNumber {
                    system: "nhs".into(),
                    value: n,
                })
            }
        },
    };
    let level = match (&provider.level, &provider.level_claim) {
        (Some(l), _) => *l,
        (None, Some(claim)) => claim_text(claims, claim)
            .ok_or_else(|| OidcError::Claims(format!("no `{claim}` claim")))?
            .parse::<AssuranceLevel>()
            .map_err(|_| OidcError::Claims(format!("the `{claim}` claim is not P0, P5 or P9")))?,
        (None, None) => return Err(OidcError::Claims("no level is configured".into())),
    };
    let attributes = Attributes::Person {
        name,
        birth_date,
        national_number,
    };
    Ok((attributes, level.min(provider.max_level)))
}

/// An authorization request, ready for the person's browser.
#[derive(Debug)]
pub struct Begun {
    /// The provider's authorization URL with client id, redirect, scopes, state, nonce and
    /// PKCE challenge.
    pub url: String,
    /// The state sent.
    pub state: String,
    /// The nonce sent.
    pub nonce: Nonce,
    /// The PKCE verifier, kept for the exchange.
    pub pkce_verifier: String,
}

/// One configured provider, with its metadata and keys as last discovered.
#[derive(Debug)]
pub struct Provider {
    /// Its configuration.
    pub config: ProviderConfig,
    redirect: RedirectUrl,
    http: Http,
    metadata: Mutex<Option<(CoreProviderMetadata, Timestamp)>>,
}

impl Provider {
    /// A provider whose callback is `redirect`.
    pub fn new(config: ProviderConfig, redirect: &str) -> Result<Self, OidcError> {
        let redirect = RedirectUrl::new(redirect.to_string())
            .map_err(|e| OidcError::Discovery(format!("bad redirect URL: {e}")))?;
        IssuerUrl::new(config.issuer.clone())
            .map_err(|e| OidcError::Discovery(format!("bad issuer URL: {e}")))?;
        Ok(Provider {
            config,
            redirect,
            http: Http::new(),
            metadata: Mutex::new(None),
        })
    }

    /// The redirect (callback) URL.
    pub fn redirect_url(&self) -> &str {
        self.redirect.as_str()
    }

    /// The provider's metadata and keys, discovered again when older than
    /// [`METADATA_TTL_MS`] (or when `refresh`). Blocking.
    pub fn metadata(
        &self,
        now: Timestamp,
        refresh: bool,
    ) -> Result<CoreProviderMetadata, OidcError> {
        if !refresh {
            let cached = self.metadata.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((m, at)) = cached.as_ref() {
                if now.saturating_sub(*at) < METADATA_TTL_MS {
                    return Ok(m.clone());
                }
            }
        }
        let issuer = IssuerUrl::new(self.config.issuer.clone())
            .map_err(|e| OidcError::Discovery(e.to_string()))?;
        let m = CoreProviderMetadata::discover(&issuer, &self.http)
            .map_err(|e| OidcError::Discovery(error_chain(&e)))?;
        *self.metadata.lock().unwrap_or_else(|p| p.into_inner()) = Some((m.clone(), now));
        Ok(m)
    }

    fn client(&self, metadata: CoreProviderMetadata) -> AisClient {
        AisClient::from_provider_metadata(
            metadata,
            ClientId::new(self.config.client_id.clone()),
            self.config.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect.clone())
    }

    /// Builds an authorization request with fresh state, nonce and PKCE. Blocking (it may
    /// discover).
    pub fn begin(&self, now: Timestamp) -> Result<Begun, OidcError> {
        let client = self.client(self.metadata(now, false)?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for s in &self.config.scopes {
            if s != "openid" {
                request = request.add_scope(Scope::new(s.clone()));
            }
        }
        if self.config.scopes.is_empty() {
            request = request.add_scope(Scope::new("profile".into()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok(Begun {
            url: url.to_string(),
            state: state.secret().clone(),
            nonce,
            pkce_verifier: verifier.secret().clone(),
        })
    }

    /// Exchanges the code (with the PKCE verifier) and verifies the ID token against the
    /// nonce of this verification. Blocking.
    pub fn finish(
        &self,
        code: &str,
        pkce_verifier: String,
        nonce: &Nonce,
        now: Timestamp,
    ) -> Result<AisClaims, OidcError> {
        let metadata = self.metadata(now, false)?;
        let client = self.client(metadata.clone());
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier))
            .request(&self.http)
            .map_err(|e| OidcError::Exchange(exchange_error(&e)))?;
        let token = response.id_token().ok_or(OidcError::NoIdToken)?;
        let expected = |m: &CoreProviderMetadata| -> Result<AisClaims, OidcError> {
            verify_id_token(
                token,
                &Expected {
                    issuer: m.issuer(),
                    client_id: client.client_id(),
                    jwks: m.jwks(),
                    nonce,
                    now,
                },
            )
        };
        match expected(&metadata) {
            // The provider may have rotated its keys since they were fetched: fetch once more.
            Err(OidcError::Signature(_)) => expected(&self.metadata(now, true)?),
            other => other,
        }
    }
}

/// Why a code exchange failed, without the response's content (which may hold tokens).
fn exchange_error<RE: std::error::Error + 'static>(
    e: &openidconnect::RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> String {
    use openidconnect::RequestTokenError;
    match e {
        RequestTokenError::ServerResponse(r) => {
            let code: String = r
                .error()
                .as_ref()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                .take(64)
                .collect();
            format!("the token endpoint answered `{code}`")
        }
        RequestTokenError::Request(e) => format!("cannot reach the token endpoint: {e}"),
        RequestTokenError::Parse(..) => "the token response is malformed".into(),
        RequestTokenError::Other(_) => "the token response is not acceptable".into(),
    }
}

/// Describes an attestation the claims could not make, without the claims' values.
pub fn attestation_problem(e: &cophr_protocol::trust::AttestationError) -> String {
    use cophr_protocol::trust::AttestationError as E;
    match e {
        E::BirthDate(_) => "the `birthdate` claim is not a YYYY-MM-DD date".into(),
        E::NhsNumber(_) => "the NHS number claim is not a valid NHS number".into(),
        E::Text(field) => format!("the claim for `{field}` is empty or too long"),
        other => other.to_string(),
    }
}

/// An error and its sources, on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    //! ID tokens minted here with locally generated keys: the failures a real provider will
    //! not produce on demand (another key, another audience, expired, another nonce).

    use super::*;
    use openidconnect::core::CoreEdDsaPrivateSigningKey;
    use openidconnect::{
        Audience, EndUserBirthday, EndUserName, JsonWebKeyId, LocalizedClaim, PrivateSigningKey,
        StandardClaims, SubjectIdentifier,
    };

    const ISSUER: &str = "https://login.example.test";
    const CLIENT: &str = "cophr-ais";
    const NOW: Timestamp = 1_800_000_000_000;

    fn signing_key(seed: u8, kid: &str) -> CoreEdDsaPrivateSigningKey {
        // PKCS#8 v1 for an Ed25519 seed (RFC 8410).
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend([seed; 32]);
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            data_encoding::BASE64.encode(&der)
        );
        CoreEdDsaPrivateSigningKey::from_ed25519_pem(&pem, Some(JsonWebKeyId::new(kid.into())))
            .unwrap()
    }

    struct Mint {
        key: CoreEdDsaPrivateSigningKey,
        audience: String,
        issuer: String,
        expires: Timestamp,
        nonce: String,
        extra: BTreeMap<String, serde_json::Value>,
    }

    impl Mint {
        fn new() -> Self {
            let mut extra = BTreeMap::new();
            extra.insert("nhs_number".into(), serde_json::json!("9434765919"));
            extra.insert("identity_proofing_level".into(), serde_json::json!("P9"));
            Mint {
                key: signing_key(1, "provider-1"),
                audience: CLIENT.into(),
                issuer: ISSUER.into(),
                expires: NOW + 300_000,
                nonce: "nonce-1".into(),
                extra,
            }
        }

        fn token(&self) -> AisIdToken {
            let at = |ms: Timestamp| DateTime::<Utc>::from_timestamp_millis(ms as i64).unwrap();
            let claims = AisClaims::new(
                IssuerUrl::new(self.issuer.clone()).unwrap(),
                vec![Audience::new(self.audience.clone())],
                at(self.expires),
                at(NOW - 1000),
                StandardClaims::new(SubjectIdentifier::new("george".into()))
                    .set_name(Some(LocalizedClaim::from(EndUserName::new(
                        "George Jones".into(),
                    ))))
                    .set_birthdate(Some(EndUserBirthday::new("1948-02-03".into()))),
                ExtraClaims {
                    other: self.extra.clone(),
                },
            )
            .set_nonce(Some(Nonce::new(self.nonce.clone())));
            let text = AisIdToken::new(
                claims,
                &self.key,
                CoreJwsSigningAlgorithm::EdDsa,
                None,
                None,
            )
            .unwrap()
            .to_string();
            // Through text, as it arrives.
            parse_id_token(&text).unwrap()
        }
    }

    fn provider_config() -> ProviderConfig {
        toml::from_str(
            "name = \"nhs\"\nissuer = \"https://login.example.test\"\nclient_id = \"cophr-ais\"\n\
             level_claim = \"identity_proofing_level\"\nmax_level = \"P5\"\n\
             nhs_number_claim = \"nhs_number\"\n",
        )
        .unwrap()
    }

    fn verify(token: &AisIdToken, nonce: &str) -> Result<AisClaims, OidcError> {
        let jwks = JsonWebKeySet::new(vec![signing_key(1, "provider-1").as_verification_key()]);
        verify_id_token(
            token,
            &Expected {
                issuer: &IssuerUrl::new(ISSUER.into()).unwrap(),
                client_id: &ClientId::new(CLIENT.into()),
                jwks: &jwks,
                nonce: &Nonce::new(nonce.into()),
                now: NOW,
            },
        )
    }

    #[test]
    fn a_good_token_maps_to_a_person_at_the_capped_level() {
        let claims = verify(&Mint::new().token(), "nonce-1").unwrap();
        let (attributes, level) = map_claims(&claims, &provider_config()).unwrap();
        assert_eq!(
            attributes,
            Attributes::Person {
                name: "George Jones".into(),
                birth_date: Some("1948-02-03".into()),
                national_number: Some(NationalNumber {
                    system: "nhs".into(),
                    value: "9434765919".into()
                }),
            }
        );
        assert_eq!(level, AssuranceLevel::P5, "P9 claimed, capped at P5");
    }

    #[test]
    fn a_token_signed_by_another_key_is_refused() {
        // Another key under the same key id, and under an unknown one.
        let mut m = Mint::new();
        m.key = signing_key(2, "provider-1");
        assert!(matches!(
            verify(&m.token(), "nonce-1"),
            Err(OidcError::Signature(_))
        ));
        m.key = signing_key(2, "mallory");
        assert!(matches!(
            verify(&m.token(), "nonce-1"),
            Err(OidcError::Signature(_))
        ));
        // A good token whose payload was altered after signing.
        let good = Mint::new().token().to_string();
        let mut parts: Vec<String> = good.split('.').map(String::from).collect();
        let payload = data_encoding::BASE64URL_NOPAD
            .decode(parts[1].as_bytes())
            .unwrap();
        let altered = String::from_utf8(payload)
            .unwrap()
            .replace("George Jones", "Mallory Jones");
        parts[1] = data_encoding::BASE64URL_NOPAD.encode(altered.as_bytes());
        let altered = parse_id_token(&parts.join(".")).unwrap();
        assert!(matches!(
            verify(&altered, "nonce-1"),
            Err(OidcError::Signature(_))
        ));
    }

    #[test]
    fn wrong_audience_issuer_expiry_and_nonce_are_refused() {
        let mut m = Mint::new();
        m.audience = "another-client".into();
        assert_eq!(
            verify(&m.token(), "nonce-1").unwrap_err(),
            OidcError::Audience
        );
        let mut m = Mint::new();
        m.issuer = "https://evil.example.test".into();
        assert_eq!(
            verify(&m.token(), "nonce-1").unwrap_err(),
            OidcError::Issuer
        );
        let mut m = Mint::new();
        m.expires = NOW - 1;
        assert_eq!(
            verify(&m.token(), "nonce-1").unwrap_err(),
            OidcError::Expired
        );
        // A token replayed into another verification carries that one's nonce, not this.
        assert_eq!(
            verify(&Mint::new().token(), "nonce-2").unwrap_err(),
            OidcError::Nonce
        );
        let mut m = Mint::new();
        m.extra.clear();
        let claims = verify(&m.token(), "nonce-1").unwrap();
        assert!(matches!(
            map_claims(&claims, &provider_config()),
            Err(OidcError::Claims(_))
        ));
        let mut m = Mint::new();
        m.extra
            .insert("nhs_number".into(), serde_json::json!("9434765918"));
        let claims = verify(&m.token(), "nonce-1").unwrap();
        assert!(matches!(
            map_claims(&claims, &provider_config()),
            Err(OidcError::Claims(_))
        ));
        assert!(parse_id_token(&"a".repeat(MAX_ID_TOKEN_BYTES + 1)).is_err());
        assert!(parse_id_token("not.a.jwt").is_err());
    }
}
