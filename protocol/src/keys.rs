//! Signing keys and strict verification with domain separation.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};

use crate::ids::{ActorId, Sig};

/// What a signature is over. Each purpose has its own domain-separation tag, so a
/// signature made for one purpose can never be replayed as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A record entry.
    Entry,
    /// An audit event signed by the node that saw it.
    Audit,
    /// An export manifest.
    Manifest,
    /// A proof of key possession bound to a connection (used by sync).
    Possession,
    /// A record's home pointer (discovery).
    Pointer,
    /// An identity attestation issued by an identity assurance service.
    Attestation,
    /// An AIS's revocation of an attestation it issued.
    AttestationRevocation,
    /// An invitee's acceptance, signed with the key derived from an invitation's secret.
    Invitation,
    /// A request to an identity assurance service, signed by the key it is about.
    AisRequest,
    /// A guardian's (or the old key's own) approval of a patient key rotation.
    KeyRotation,
}

impl Domain {
    fn tag(self) -> &'static [u8] {
        match self {
            Domain::Entry => b"cophr/v1/entry\0",
            Domain::Audit => b"cophr/v1/audit\0",
            Domain::Manifest => b"cophr/v1/manifest\0",
            Domain::Possession => b"cophr/v1/possession\0",
            Domain::Pointer => b"cophr/v1/pointer\0",
            Domain::Attestation => b"cophr/v1/attestation\0",
            Domain::AttestationRevocation => b"cophr/v1/attestation-revocation\0",
            Domain::Invitation => b"cophr/v1/invitation\0",
            Domain::AisRequest => b"cophr/v1/ais-request\0",
            Domain::KeyRotation => b"cophr/v1/key-rotation\0",
        }
    }

    fn message(self, bytes: &[u8]) -> Vec<u8> {
        let tag = self.tag();
        let mut m = Vec::with_capacity(tag.len() + bytes.len());
        m.extend_from_slice(tag);
        m.extend_from_slice(bytes);
        m
    }
}

/// Why a signature or key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The public key bytes are not a valid curve point.
    #[error("not a valid ed25519 public key")]
    InvalidKey,
    /// The public key has small order (a weak key that would verify forged signatures).
    #[error("weak ed25519 public key refused")]
    WeakKey,
    /// The signature does not verify under strict rules.
    #[error("signature does not verify")]
    BadSignature,
}

/// An actor's secret signing key. Never logged: its `Debug` shows only the public id.
pub struct Keypair(SigningKey);

impl std::fmt::Debug for Keypair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keypair({})", self.actor())
    }
}

impl Clone for Keypair {
    fn clone(&self) -> Self {
        Keypair(SigningKey::from_bytes(&self.0.to_bytes()))
    }
}

impl Keypair {
    /// Generates a new key from the given randomness source.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Keypair(SigningKey::generate(rng))
    }

    /// Rebuilds a key from its 32 secret bytes.
    pub fn from_secret(bytes: &[u8; 32]) -> Self {
        Keypair(SigningKey::from_bytes(bytes))
    }

    /// The 32 secret bytes, for writing to a 0600 key file.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// This key's actor id (its public key).
    pub fn actor(&self) -> ActorId {
        ActorId(self.0.verifying_key().to_bytes())
    }

    /// Signs `bytes` under the given domain.
    pub fn sign(&self, domain: Domain, bytes: &[u8]) -> Sig {
        Sig(self.0.sign(&domain.message(bytes)).to_bytes())
    }
}

/// Most parsed keys each thread keeps ([`verifying_key`]); when full, it forgets them all.
/// A key is about 200 bytes, so at most about 50 KB a thread.
pub const PARSED_KEYS_PER_THREAD: usize = 256;

/// A small per-thread memo of a pure function of an actor id, bounded by
/// [`PARSED_KEYS_PER_THREAD`] (forgotten whole when full).
pub(crate) struct Memo<T>(std::cell::RefCell<foldhash::HashMap<ActorId, T>>);

impl<T: Clone> Memo<T> {
    pub(crate) fn new() -> Memo<T> {
        Memo(std::cell::RefCell::new(foldhash::HashMap::default()))
    }

    /// `f(actor)`, computed once while remembered.
    pub(crate) fn get(&self, actor: &ActorId, f: impl FnOnce(&ActorId) -> T) -> T {
        if let Some(v) = self.0.borrow().get(actor) {
            return v.clone();
        }
        let v = f(actor);
        let mut m = self.0.borrow_mut();
        if m.len() >= PARSED_KEYS_PER_THREAD {
            m.clear();
        }
        m.insert(*actor, v.clone());
        v
    }
}

thread_local! {
    static PARSED: Memo<Result<VerifyingKey, KeyError>> = Memo::new();
}

/// Parses and checks a public key: a valid point that is not of small order. The point's
/// decompression costs about a third of a signature check, and a record's entries, a
/// sync's proofs and a node's audit events come from few keys, so each thread remembers
/// the last keys it parsed (the answer depends on the bytes alone).
pub fn verifying_key(actor: &ActorId) -> Result<VerifyingKey, KeyError> {
    PARSED.with(|m| m.get(actor, parse_key))
}

fn parse_key(actor: &ActorId) -> Result<VerifyingKey, KeyError> {
    let key = VerifyingKey::from_bytes(actor.as_bytes()).map_err(|_| KeyError::InvalidKey)?;
    if key.is_weak() {
        return Err(KeyError::WeakKey);
    }
    Ok(key)
}

/// Verifies a signature with `verify_strict` (canonical `s`, no small-order `R` or key).
pub fn verify(actor: &ActorId, domain: Domain, bytes: &[u8], sig: &Sig) -> Result<(), KeyError> {
    let key = verifying_key(actor)?;
    let sig = ed25519_dalek::Signature::from_bytes(&sig.0);
    key.verify_strict(&domain.message(bytes), &sig)
        .map_err(|_| KeyError::BadSignature)
}

/// Verifies many signatures at once (ed25519 batch verification). All must be valid; on
/// failure, callers fall back to [`verify`] one by one to find which.
///
/// Each key is parsed and checked by [`verifying_key`] (point decompression, the weak-key
/// refusal), which remembers the keys a thread has parsed; a run of one author's items (a
/// pulled batch is nearly always one author's) asks it once.
pub fn verify_batch(items: &[(ActorId, Domain, &[u8], Sig)]) -> Result<(), KeyError> {
    let mut last: Option<(ActorId, VerifyingKey)> = None;
    let mut keys = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    // Every message (domain tag, then bytes) in one buffer, sliced after.
    let total: usize = items
        .iter()
        .map(|(_, d, b, _)| d.tag().len() + b.len())
        .sum();
    let mut buf = Vec::with_capacity(total);
    let mut ends = Vec::with_capacity(items.len());
    for (actor, domain, bytes, sig) in items {
        let key = match last {
            Some((a, k)) if a == *actor => k,
            _ => {
                let k = verifying_key(actor)?;
                last = Some((*actor, k));
                k
            }
        };
        keys.push(key);
        buf.extend_from_slice(domain.tag());
        buf.extend_from_slice(bytes);
        ends.push(buf.len());
        sigs.push(ed25519_dalek::Signature::from_bytes(&sig.0));
    }
    let mut start = 0;
    let msgs: Vec<&[u8]> = ends
        .iter()
        .map(|&end| {
            let m = &buf[start..end];
            start = end;
            m
        })
        .collect();
    ed25519_dalek::verify_batch(&msgs, &sigs, &keys).map_err(|_| KeyError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;

    #[test]
    fn domain_separation_prevents_cross_use() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let k = Keypair::generate(&mut rng);
        let sig = k.sign(Domain::Entry, b"hello");
        assert_eq!(verify(&k.actor(), Domain::Entry, b"hello", &sig), Ok(()));
        assert_eq!(
            verify(&k.actor(), Domain::Audit, b"hello", &sig),
            Err(KeyError::BadSignature)
        );
        assert_eq!(
            verify(&k.actor(), Domain::Entry, b"hellO", &sig),
            Err(KeyError::BadSignature)
        );
    }

    #[test]
    fn weak_keys_are_refused() {
        // The identity point (small order) encoded as a public key.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let actor = ActorId(weak);
        assert_eq!(verifying_key(&actor).err(), Some(KeyError::WeakKey));
    }

    /// The per-thread memo of parsed keys answers as parsing does, refusals included,
    /// and stays within its bound.
    #[test]
    fn remembered_keys_answer_as_parsing_does_and_stay_bounded() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let weak = ActorId(weak);
        // Not a point at all: y = 2 has no x on the curve.
        let mut invalid = [0u8; 32];
        invalid[0] = 2;
        let invalid = ActorId(invalid);
        let keys: Vec<Keypair> = (0..PARSED_KEYS_PER_THREAD + 40)
            .map(|_| Keypair::generate(&mut rng))
            .collect();
        for round in 0..3 {
            for k in &keys {
                let sig = k.sign(Domain::Entry, b"x");
                assert_eq!(verify(&k.actor(), Domain::Entry, b"x", &sig), Ok(()));
                assert_eq!(
                    verify(&k.actor(), Domain::Entry, b"y", &sig),
                    Err(KeyError::BadSignature)
                );
                assert_eq!(verifying_key(&k.actor()), parse_key(&k.actor()));
                assert_eq!(
                    crate::seal::BoxPublic::of(&k.actor()).unwrap().0,
                    parse_key(&k.actor()).unwrap().to_montgomery().to_bytes()
                );
            }
            assert_eq!(
                verifying_key(&weak).err(),
                Some(KeyError::WeakKey),
                "{round}"
            );
            assert_eq!(verifying_key(&invalid).err(), Some(KeyError::InvalidKey));
            assert!(crate::seal::BoxPublic::of(&weak).is_err());
            PARSED.with(|m| assert!(m.0.borrow().len() <= PARSED_KEYS_PER_THREAD));
        }
    }

    #[test]
    fn batch_verification_accepts_good_and_refuses_one_bad() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(2);
        let keys: Vec<Keypair> = (0..4).map(|_| Keypair::generate(&mut rng)).collect();
        let msgs: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 10]).collect();
        let mut items: Vec<(ActorId, Domain, &[u8], Sig)> = keys
            .iter()
            .zip(&msgs)
            .map(|(k, m)| {
                (
                    k.actor(),
                    Domain::Entry,
                    m.as_slice(),
                    k.sign(Domain::Entry, m),
                )
            })
            .collect();
        assert_eq!(verify_batch(&items), Ok(()));
        items[2].3 .0[0] ^= 1;
        assert_eq!(verify_batch(&items), Err(KeyError::BadSignature));
    }

    #[test]
    fn batch_verification_parses_each_key_once_and_still_refuses_weak_ones() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
        let keys: Vec<Keypair> = (0..3).map(|_| Keypair::generate(&mut rng)).collect();
        let msgs: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 1 + usize::from(i)]).collect();
        // Mixed authors, runs and returns: 0 0 0 1 2 1 0 ...
        let who = |i: usize| [0, 0, 0, 1, 2, 1, 0][i % 7];
        let mut items: Vec<(ActorId, Domain, &[u8], Sig)> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let k = &keys[who(i)];
                (
                    k.actor(),
                    Domain::Entry,
                    m.as_slice(),
                    k.sign(Domain::Entry, m),
                )
            })
            .collect();
        assert_eq!(verify_batch(&items), Ok(()));
        // A signature by another of the batch's keys, under a key seen before.
        items[13].3 = keys[1].sign(Domain::Entry, msgs[13].as_slice());
        assert_eq!(verify_batch(&items), Err(KeyError::BadSignature));
        items[13].3 = keys[who(13)].sign(Domain::Entry, msgs[13].as_slice());
        // Messages are told apart (one buffer, sliced): a byte moved across a boundary.
        let (a, b) = (b"ab".to_vec(), b"c".to_vec());
        let (a2, b2) = (b"a".to_vec(), b"bc".to_vec());
        let k = &keys[0];
        let moved = [
            (
                k.actor(),
                Domain::Entry,
                a2.as_slice(),
                k.sign(Domain::Entry, &a),
            ),
            (
                k.actor(),
                Domain::Entry,
                b2.as_slice(),
                k.sign(Domain::Entry, &b),
            ),
        ];
        assert_eq!(verify_batch(&moved), Err(KeyError::BadSignature));
        // A weak key anywhere (after a good key, again later) refuses the batch.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let weak = ActorId(weak);
        for at in [0, 7, 39] {
            let mut bad = items.clone();
            bad[at].0 = weak;
            assert_eq!(
                verify_batch(&bad),
                Err(KeyError::WeakKey),
                "weak key at {at}"
            );
        }
        let mut twice = items.clone();
        twice[5].0 = weak;
        twice[30].0 = weak;
        assert_eq!(verify_batch(&twice), Err(KeyError::WeakKey));
    }
}
