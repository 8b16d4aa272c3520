//! Assessing a person's attestations against a node's own trust list.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::attestation::{
    AssuranceLevel, AttestationId, Attributes, SignedAttestation, SignedRevocation,
};
use crate::entry::Timestamp;
use crate::ids::ActorId;

/// Most issuers one trust list holds.
pub const MAX_TRUSTED_ISSUERS: usize = 256;
/// Most revocations one trust list remembers.
pub const MAX_REVOCATIONS: usize = 100_000;

/// An identity assurance service this node trusts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedIssuer {
    /// The AIS's key.
    pub id: ActorId,
    /// Its name, as shown ("NHS login AIS", "Leeds Care Record registration desk").
    pub name: String,
    /// The highest level this node accepts from it: a higher level it claims is capped.
    pub max_level: AssuranceLevel,
}

/// Why an attestation a person carries is not accepted here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Why {
    /// Its issuer is not on this node's trust list.
    Untrusted,
    /// Its validity period has ended.
    Expired,
    /// Its validity period has not begun.
    NotYetValid,
    /// Its issuer revoked it.
    Revoked,
    /// It is about another key.
    OtherSubject,
    /// Its signature does not verify.
    Forged,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Why::Untrusted => "issuer not trusted here",
            Why::Expired => "expired",
            Why::NotYetValid => "not yet valid",
            Why::Revoked => "revoked by its issuer",
            Why::OtherSubject => "about another key",
            Why::Forged => "signature does not verify",
        })
    }
}

/// An attestation that was not accepted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unaccepted {
    /// Its id.
    pub id: AttestationId,
    /// Who signed it.
    pub issuer: ActorId,
    /// Why it does not count.
    pub why: Why,
}

/// An accepted attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verification {
    /// Its id.
    pub id: AttestationId,
    /// The AIS.
    pub issuer: ActorId,
    /// The AIS's name on this node's trust list.
    pub issuer_name: String,
    /// The level, capped at what this node accepts from the issuer.
    pub level: AssuranceLevel,
    /// What was verified.
    pub attributes: Attributes,
    /// Valid until.
    pub not_after: Timestamp,
}

/// How sure this node is of who a key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Assurance {
    /// At least one attestation from a trusted issuer is valid now; the highest-level one.
    Verified(Box<Verification>),
    /// Nothing accepted: what the person says about themselves is all there is.
    SelfAsserted {
        /// Attestations carried but not accepted, with the reason.
        unaccepted: Vec<Unaccepted>,
    },
}

impl Assurance {
    /// The accepted level, if verified.
    pub fn level(&self) -> Option<AssuranceLevel> {
        match self {
            Assurance::Verified(v) => Some(v.level),
            Assurance::SelfAsserted { .. } => None,
        }
    }

    /// Whether verified at `level` or higher.
    pub fn at_least(&self, level: AssuranceLevel) -> bool {
        self.level().is_some_and(|l| l >= level)
    }
}

impl std::fmt::Display for Assurance {
    /// `verified P9 by NHS login AIS` or `self-asserted`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Assurance::Verified(v) => write!(f, "verified {} by {}", v.level, v.issuer_name),
            Assurance::SelfAsserted { .. } => f.write_str("self-asserted"),
        }
    }
}

/// Why a trust list change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustListError {
    /// More than [`MAX_TRUSTED_ISSUERS`].
    #[error("the trust list is full ({MAX_TRUSTED_ISSUERS} issuers)")]
    Full,
    /// The name is empty or too long.
    #[error("an issuer's name must be 1 to 256 characters")]
    Name,
    /// A revocation not signed by an issuer on the list.
    #[error("revocation from an issuer that is not trusted here")]
    UntrustedRevocation,
    /// A revocation whose signature does not verify.
    #[error("revocation signature does not verify")]
    ForgedRevocation,
    /// Too many revocations remembered.
    #[error("too many revocations ({MAX_REVOCATIONS})")]
    TooManyRevocations,
}

/// The issuers this node trusts and the revocations it has learnt of.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustList {
    issuers: Vec<TrustedIssuer>,
    revoked: BTreeSet<AttestationId>,
}

impl TrustList {
    /// An empty list: everyone is self-asserted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The trusted issuers.
    pub fn issuers(&self) -> &[TrustedIssuer] {
        &self.issuers
    }

    /// The issuer with this key, if trusted.
    pub fn issuer(&self, id: &ActorId) -> Option<&TrustedIssuer> {
        self.issuers.iter().find(|i| i.id == *id)
    }

    /// Trusts an issuer (replacing an entry for the same key).
    pub fn trust(&mut self, issuer: TrustedIssuer) -> Result<(), TrustListError> {
        if issuer.name.trim().is_empty() || issuer.name.len() > 256 {
            return Err(TrustListError::Name);
        }
        if let Some(old) = self.issuers.iter_mut().find(|i| i.id == issuer.id) {
            *old = issuer;
            return Ok(());
        }
        if self.issuers.len() >= MAX_TRUSTED_ISSUERS {
            return Err(TrustListError::Full);
        }
        self.issuers.push(issuer);
        Ok(())
    }

    /// Stops trusting an issuer. Whether it was trusted.
    pub fn distrust(&mut self, id: &ActorId) -> bool {
        let before = self.issuers.len();
        self.issuers.retain(|i| i.id != *id);
        before != self.issuers.len()
    }

    /// Records an issuer's signed revocation. Only revocations by trusted issuers are kept
    /// (an untrusted issuer's attestations count for nothing anyway). Whether it was new.
    pub fn add_revocation(&mut self, r: &SignedRevocation) -> Result<bool, TrustListError> {
        if self.issuer(&r.revocation.issuer).is_none() {
            return Err(TrustListError::UntrustedRevocation);
        }
        r.verify().map_err(|_| TrustListError::ForgedRevocation)?;
        if self.revoked.contains(&r.revocation.attestation) {
            return Ok(false);
        }
        if self.revoked.len() >= MAX_REVOCATIONS {
            return Err(TrustListError::TooManyRevocations);
        }
        Ok(self.revoked.insert(r.revocation.attestation))
    }

    /// Whether an attestation is known to be revoked.
    pub fn is_revoked(&self, id: &AttestationId) -> bool {
        self.revoked.contains(id)
    }

    /// How many revocations are remembered.
    pub fn revocation_count(&self) -> usize {
        self.revoked.len()
    }

    /// Why one attestation of `subject` is not accepted at `now`, or `None` if it is.
    pub fn why_not(&self, subject: &ActorId, a: &SignedAttestation, now: Timestamp) -> Option<Why> {
        let t = &a.attestation;
        if a.verify().is_err() {
            return Some(Why::Forged);
        }
        if t.subject != *subject {
            return Some(Why::OtherSubject);
        }
        if self.issuer(&t.issuer).is_none() {
            return Some(Why::Untrusted);
        }
        if self.is_revoked(&a.id()) {
            return Some(Why::Revoked);
        }
        if now < t.not_before {
            return Some(Why::NotYetValid);
        }
        if now > t.not_after {
            return Some(Why::Expired);
        }
        None
    }

    /// Assesses the attestations a person's profile carries, at `now`: the best accepted
    /// one (highest capped level, then latest expiry), or self-asserted with the reasons.
    pub fn assess(
        &self,
        subject: &ActorId,
        attestations: &[SignedAttestation],
        now: Timestamp,
    ) -> Assurance {
        let mut best: Option<Verification> = None;
        let mut unaccepted = Vec::new();
        for a in attestations {
            let t = &a.attestation;
            if let Some(why) = self.why_not(subject, a, now) {
                unaccepted.push(Unaccepted {
                    id: a.id(),
                    issuer: t.issuer,
                    why,
                });
                continue;
            }
            let Some(issuer) = self.issuer(&t.issuer) else {
                continue;
            };
            let v = Verification {
                id: a.id(),
                issuer: t.issuer,
                issuer_name: issuer.name.clone(),
                level: t.level.min(issuer.max_level),
                attributes: t.attributes.clone(),
                not_after: t.not_after,
            };
            let better = best
                .as_ref()
                .is_none_or(|b| (v.level, v.not_after) > (b.level, b.not_after));
            if better {
                best = Some(v);
            }
        }
        match best {
            Some(v) => Assurance::Verified(Box::new(v)),
            None => Assurance::SelfAsserted { unaccepted },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Keypair;
    use crate::trust::attestation::{Attestation, Method, Revocation, ATTESTATION_VERSION};
    use rand_chacha::rand_core::SeedableRng;

    const DAY: u64 = 24 * 3600 * 1000;

    fn key(seed: u8) -> Keypair {
        Keypair::generate(&mut rand_chacha::ChaCha20Rng::from_seed([seed; 32]))
    }

    fn person(issuer: &Keypair, subject: &ActorId, level: AssuranceLevel) -> SignedAttestation {
        Attestation {
            v: ATTESTATION_VERSION,
            issuer: issuer.actor(),
            subject: *subject,
            attributes: Attributes::Person {
                name: "George Jones".into(),
                birth_date: Some("1948-03-02".into()),
                national_number: Some(super::super::attestation::NationalNumber {
                    system: "nhs".into(),
                    value: "9434765919".into(),
                }),
            },
            level,
            method: Method::InPerson,
            not_before: 10 * DAY,
            not_after: 400 * DAY,
            serial: vec![7; 16],
        }
        .sign(issuer)
        .unwrap()
    }

    fn list(ais: &Keypair, max: AssuranceLevel) -> TrustList {
        let mut l = TrustList::new();
        l.trust(TrustedIssuer {
            id: ais.actor(),
            name: "Leeds AIS".into(),
            max_level: max,
        })
        .unwrap();
        l
    }

    #[test]
    fn trusted_valid_attestation_verifies_and_untrusted_is_self_asserted() {
        let (ais, george) = (key(1), key(2));
        let a = person(&ais, &george.actor(), AssuranceLevel::P9);
        let trusted = list(&ais, AssuranceLevel::P9).assess(
            &george.actor(),
            std::slice::from_ref(&a),
            20 * DAY,
        );
        assert_eq!(trusted.to_string(), "verified P9 by Leeds AIS");
        let other = list(&key(3), AssuranceLevel::P9).assess(&george.actor(), &[a], 20 * DAY);
        match other {
            Assurance::SelfAsserted { unaccepted } => {
                assert_eq!(unaccepted[0].why, Why::Untrusted)
            }
            v => panic!("untrusted issuer accepted: {v}"),
        }
    }

    #[test]
    fn level_is_capped_at_what_the_node_accepts_from_the_issuer() {
        let (ais, george) = (key(1), key(2));
        let a = person(&ais, &george.actor(), AssuranceLevel::P9);
        let got = list(&ais, AssuranceLevel::P5).assess(&george.actor(), &[a], 20 * DAY);
        assert_eq!(got.level(), Some(AssuranceLevel::P5));
        assert!(!got.at_least(AssuranceLevel::P9));
    }

    #[test]
    fn expired_not_yet_valid_other_subject_forged_and_revoked_are_refused() {
        let (ais, george) = (key(1), key(2));
        let l = list(&ais, AssuranceLevel::P9);
        let a = person(&ais, &george.actor(), AssuranceLevel::P9);
        let why = |l: &TrustList, a: &SignedAttestation, t| l.why_not(&george.actor(), a, t);
        assert_eq!(why(&l, &a, 401 * DAY), Some(Why::Expired));
        assert_eq!(why(&l, &a, DAY), Some(Why::NotYetValid));
        assert_eq!(
            l.why_not(&key(4).actor(), &a, 20 * DAY),
            Some(Why::OtherSubject)
        );
        let mut forged = a.clone();
        forged.attestation.level = AssuranceLevel::P9;
        forged.attestation.attributes = Attributes::Person {
            name: "Someone Else".into(),
            birth_date: None,
            national_number: None,
        };
        assert_eq!(why(&l, &forged, 20 * DAY), Some(Why::Forged));

        let mut l = l;
        let rev = Revocation {
            issuer: ais.actor(),
            attestation: a.id(),
            subject: george.actor(),
            time: 30 * DAY,
            reason: "identity fraud reported".into(),
        }
        .sign(&ais)
        .unwrap();
        assert_eq!(l.add_revocation(&rev), Ok(true));
        assert_eq!(why(&l, &a, 20 * DAY), Some(Why::Revoked));
        assert_eq!(
            l.assess(&george.actor(), &[a], 20 * DAY).to_string(),
            "self-asserted"
        );
    }

    #[test]
    fn revocations_from_untrusted_or_forged_issuers_are_not_kept() {
        let (ais, george, mallory) = (key(1), key(2), key(5));
        let mut l = list(&ais, AssuranceLevel::P9);
        let a = person(&ais, &george.actor(), AssuranceLevel::P9);
        let by_mallory = Revocation {
            issuer: mallory.actor(),
            attestation: a.id(),
            subject: george.actor(),
            time: 30 * DAY,
            reason: "spite".into(),
        }
        .sign(&mallory)
        .unwrap();
        assert_eq!(
            l.add_revocation(&by_mallory),
            Err(TrustListError::UntrustedRevocation)
        );
        let mut forged = by_mallory.clone();
        forged.revocation.issuer = ais.actor();
        assert_eq!(
            l.add_revocation(&forged),
            Err(TrustListError::ForgedRevocation)
        );
        assert!(!l.is_revoked(&a.id()));
    }

    #[test]
    fn the_best_accepted_attestation_is_shown() {
        let (ais, george) = (key(1), key(2));
        let low = person(&ais, &george.actor(), AssuranceLevel::P0);
        let high = person(&ais, &george.actor(), AssuranceLevel::P9);
        let got = list(&ais, AssuranceLevel::P9).assess(&george.actor(), &[low, high], 20 * DAY);
        assert_eq!(got.level(), Some(AssuranceLevel::P9));
    }
}
