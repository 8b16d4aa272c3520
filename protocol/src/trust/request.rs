//! Requests to an identity assurance service, signed by the key they are about.
//!
//! A person asks an AIS to start a verification for their key, and later collects what it
//! issued, by signing a [`Request`] with that key under [`Domain::AisRequest`]. The request
//! names the AIS (so it cannot be replayed at another), its purpose (so a collection cannot
//! start a verification), a time (so an old one is refused) and a random nonce (so the AIS
//! refuses the same request twice within its window: [`SignedRequest::check`] checks all but the
//! nonce, which only the AIS's memory can).

use serde::{Deserialize, Serialize};

use crate::entry::{from_cbor_canonical, to_cbor, EntryError, Timestamp};
use crate::ids::{ActorId, Sig};
use crate::keys::{self, Domain, KeyError, Keypair};

/// Largest encoded signed request accepted.
pub const MAX_REQUEST_BYTES: usize = 512;
/// How far a request's time may be from the AIS's clock, either way (five minutes).
pub const MAX_REQUEST_SKEW_MS: u64 = 5 * 60 * 1000;
/// The nonce's length.
pub const REQUEST_NONCE_BYTES: usize = 16;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    /// Start a verification of the signing key's holder.
    Start,
    /// Collect the attestations issued for the signing key.
    Collect,
}

impl std::fmt::Display for Purpose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Purpose::Start => "start",
            Purpose::Collect => "collect",
        })
    }
}

/// A request, before signing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The AIS asked.
    pub ais: ActorId,
    /// The key the request is about, which signs it.
    pub subject: ActorId,
    /// What it asks for.
    pub purpose: Purpose,
    /// When it was made (ms since the Unix epoch).
    pub time: Timestamp,
    /// Random bytes, so no two requests are alike.
    #[serde(with = "serde_bytes")]
    pub nonce: Vec<u8>,
}

/// A request with the subject's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRequest {
    /// The request.
    pub request: Request,
    /// The subject's signature over its canonical encoding.
    pub sig: Sig,
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Not decodable, not canonical or too large.
    #[error("request: {0}")]
    Encoding(#[from] EntryError),
    /// Not signed by the key it names.
    #[error("the request is not signed by its subject's key: {0}")]
    Forged(#[from] KeyError),
    /// Made for another AIS.
    #[error("the request was made for another identity assurance service ({0})")]
    OtherAis(ActorId),
    /// Made for another purpose.
    #[error("the request is for `{0}`, not `{1}`")]
    Purpose(Purpose, Purpose),
    /// Its time is too far from the AIS's clock.
    #[error("the request's time is more than five minutes from this service's clock")]
    Stale,
    /// The nonce is not [`REQUEST_NONCE_BYTES`] long.
    #[error("the request's nonce must be {REQUEST_NONCE_BYTES} bytes")]
    Nonce,
}

impl Request {
    /// Signs the request with the subject's key (which must be `self.subject`'s).
    pub fn sign(self, subject: &Keypair) -> SignedRequest {
        let sig = subject.sign(Domain::AisRequest, &to_cbor(&self));
        SignedRequest { request: self, sig }
    }
}

impl SignedRequest {
    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Decodes (bounded, canonical only) an untrusted request and checks its signature,
    /// AIS, purpose, time and nonce length. The caller still refuses a nonce seen before.
    pub fn decode_and_check(
        bytes: &[u8],
        ais: &ActorId,
        purpose: Purpose,
        now: Timestamp,
    ) -> Result<Self, RequestError> {
        if bytes.len() > MAX_REQUEST_BYTES {
            return Err(EntryError::TooLarge(bytes.len()).into());
        }
        let r: SignedRequest = from_cbor_canonical(bytes)?;
        r.check(ais, purpose, now)?;
        Ok(r)
    }

    /// Checks the signature, AIS, purpose, time and nonce length.
    pub fn check(
        &self,
        ais: &ActorId,
        purpose: Purpose,
        now: Timestamp,
    ) -> Result<(), RequestError> {
        let r = &self.request;
        if r.nonce.len() != REQUEST_NONCE_BYTES {
            return Err(RequestError::Nonce);
        }
        keys::verify(&r.subject, Domain::AisRequest, &to_cbor(r), &self.sig)?;
        if r.ais != *ais {
            return Err(RequestError::OtherAis(r.ais));
        }
        if r.purpose != purpose {
            return Err(RequestError::Purpose(r.purpose, purpose));
        }
        if r.time.abs_diff(now) > MAX_REQUEST_SKEW_MS {
            return Err(RequestError::Stale);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::key;

    fn request(ais: &Keypair, subject: &Keypair, purpose: Purpose, time: Timestamp) -> Request {
        Request {
            ais: ais.actor(),
            subject: subject.actor(),
            purpose,
            time,
            nonce: vec![7; REQUEST_NONCE_BYTES],
        }
    }

    #[test]
    fn a_request_is_bound_to_its_ais_purpose_time_and_signer() {
        let (ais, other, george, mallory) = (
            key(3, "AIS"),
            key(3, "Other AIS"),
            key(3, "George"),
            key(3, "Mallory"),
        );
        let now = 1_000_000_000;
        let good = request(&ais, &george, Purpose::Start, now).sign(&george);
        let bytes = good.encode();
        let ok = SignedRequest::decode_and_check(&bytes, &ais.actor(), Purpose::Start, now + 1000);
        assert_eq!(ok.unwrap(), good);
        assert!(matches!(
            SignedRequest::decode_and_check(&bytes, &other.actor(), Purpose::Start, now),
            Err(RequestError::OtherAis(_))
        ));
        assert!(matches!(
            SignedRequest::decode_and_check(&bytes, &ais.actor(), Purpose::Collect, now),
            Err(RequestError::Purpose(Purpose::Start, Purpose::Collect))
        ));
        assert_eq!(
            SignedRequest::decode_and_check(
                &bytes,
                &ais.actor(),
                Purpose::Start,
                now + MAX_REQUEST_SKEW_MS + 1
            ),
            Err(RequestError::Stale)
        );
        // Mallory signs a request naming George's key.
        let forged = request(&ais, &george, Purpose::Start, now).sign(&mallory);
        assert!(matches!(
            SignedRequest::decode_and_check(&forged.encode(), &ais.actor(), Purpose::Start, now),
            Err(RequestError::Forged(_))
        ));
        let mut short = request(&ais, &george, Purpose::Start, now);
        short.nonce = vec![1; 3];
        let short = short.sign(&george);
        assert_eq!(
            SignedRequest::decode_and_check(&short.encode(), &ais.actor(), Purpose::Start, now),
            Err(RequestError::Nonce)
        );
        assert!(SignedRequest::decode_and_check(
            &[0u8; MAX_REQUEST_BYTES + 1],
            &ais.actor(),
            Purpose::Start,
            now
        )
        .is_err());
        assert!(SignedRequest::decode_and_check(
            &bytes[..bytes.len() - 2],
            &ais.actor(),
            Purpose::Start,
            now
        )
        .is_err());
    }
}
