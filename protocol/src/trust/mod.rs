//! Trust: who a key belongs to, as far as this node believes.
//!
//! An identity assurance service (AIS) is a cophr identity that signs
//! [`attestation::Attestation`]s: a binding of a key to verified attributes (a person's
//! name, date of birth and NHS number; a professional's registration and organisation; an
//! organisation; a device), with an assurance level and a validity period. Attestations
//! travel inside profiles, so every replica holds them; each node decides for itself which
//! issuers it trusts ([`assess::TrustList`]) and shows every person as *verified* (by whom, at
//! which level) or *self-asserted*. A grant may require its grantee to be attested
//! ([`crate::access::Requirement`]); the record enforces that for writes and reads.
//!
//! See `docs/trust.md` for the threat model.

pub mod assess;
pub mod attestation;

pub use assess::{Assurance, TrustList, TrustedIssuer, Unaccepted, Verification, Why};
pub use attestation::{
    AssuranceLevel, Attestation, AttestationError, AttestationId, Attributes, Method,
    SignedAttestation, SignedRevocation,
};
