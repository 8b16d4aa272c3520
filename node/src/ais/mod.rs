//! The identity assurance service (AIS): a cophr home whose key signs attestations.
//!
//! - [`store`]: the issued log and the revocations, in the AIS's home.
//! - [`config`]: the OpenID Connect providers it accepts (TOML).
//! - [`oidc`]: discovery, authorization URL (state, nonce, PKCE), code exchange, ID token
//!   verification, claims to attributes — with the `openidconnect` crate.
//! - [`server`]: the HTTP service (`/ais/v1/…`, axum): start, callback, collect,
//!   revocations.
//! - [`client`]: the person's side (`cophr ais request`): sign the start request, collect.
//!
//! `docs/ais.md` describes the flow and the threat model.

pub mod client;
pub mod config;
pub mod oidc;
pub mod server;
pub mod store;

pub use config::{AisConfig, ProviderConfig};
pub use oidc::OidcError;
pub use server::{AisService, Replay};
pub use store::{AisStore, Issued};

use cophr_protocol::trust::attestation::AttestationError;
use cophr_protocol::trust::request::RequestError;
use cophr_protocol::trust::AttestationId;

/// What goes wrong in an AIS.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AisError {
    /// Reading or writing the AIS's files.
    #[error("{0}")]
    Io(String),
    /// A stored file does not verify.
    #[error("corrupt AIS store: {0}")]
    Corrupt(String),
    /// An attestation or revocation that is not acceptable.
    #[error("{0}")]
    Attestation(AttestationError),
    /// An unknown attestation or provider.
    #[error("{0}")]
    NotFound(String),
    /// Already revoked.
    #[error("{0} is already revoked")]
    AlreadyRevoked(AttestationId),
    /// The configuration is not acceptable.
    #[error("AIS configuration: {0}")]
    Config(String),
    /// A signed request that is not acceptable.
    #[error("{0}")]
    Request(#[from] RequestError),
    /// A request body that is not even a signed request.
    #[error("{0}")]
    Malformed(String),
    /// The same signed request was seen before.
    #[error("this request was already used (replayed)")]
    Replayed,
    /// An OpenID Connect failure.
    #[error("{0}")]
    Oidc(#[from] OidcError),
    /// The callback's state is unknown, expired or used.
    #[error("unknown, expired or already used verification (state); start again")]
    State,
    /// A bounded table or log is full.
    #[error("{0}")]
    Full(String),
    /// Talking to an AIS (person side).
    #[error("{0}")]
    Remote(String),
}
