//! Deterministic fixtures for tests, benchmarks and simulations: seeded keys and a record
//! with helpers to write into it. Not for production use (keys come from a seed).

use std::collections::BTreeSet;

use rand_core::{CryptoRng, RngCore, SeedableRng};

use crate::access::{Grant, Level, Scope};
use crate::category::Category;
use crate::entry::{Payload, Profile, Timestamp, Verified};
use crate::ids::{ActorId, EntryId};
use crate::keys::Keypair;
use crate::record::{Record, Rejection};
use crate::value::Value;

/// A seeded ChaCha-based RNG, so fixtures are reproducible.
#[derive(Debug, Clone)]
pub struct SeededRng(rand_chacha_like::Rng);

/// Keys derived from a seed and a name, reproducibly.
pub fn key(seed: u64, name: &str) -> Keypair {
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(blake3::hash(format!("{seed}/{name}").as_bytes()).as_bytes());
    Keypair::from_secret(&bytes)
}

mod rand_chacha_like {
    //! A tiny counter-mode RNG over BLAKE3, so the protocol crate needs no RNG crate.
    use super::*;

    /// Counter-mode BLAKE3 output.
    #[derive(Debug, Clone)]
    pub struct Rng {
        seed: [u8; 32],
        counter: u64,
    }

    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng {
                seed: *blake3::hash(&seed.to_le_bytes()).as_bytes(),
                counter: 0,
            }
        }
    }

    impl RngCore for Rng {
        fn next_u32(&mut self) -> u32 {
            self.next_u64() as u32
        }
        fn next_u64(&mut self) -> u64 {
            let mut b = [0u8; 8];
            self.fill_bytes(&mut b);
            u64::from_le_bytes(b)
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for chunk in dest.chunks_mut(32) {
                let mut h = blake3::Hasher::new_keyed(&self.seed);
                h.update(&self.counter.to_le_bytes());
                self.counter += 1;
                chunk.copy_from_slice(&h.finalize().as_bytes()[..chunk.len()]);
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    impl CryptoRng for Rng {}
}

impl SeededRng {
    /// A new RNG from a seed.
    pub fn new(seed: u64) -> Self {
        SeededRng(rand_chacha_like::Rng::new(seed))
    }
}

impl RngCore for SeededRng {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.try_fill_bytes(dest)
    }
}

impl CryptoRng for SeededRng {}

impl SeedableRng for SeededRng {
    type Seed = [u8; 8];
    fn from_seed(seed: Self::Seed) -> Self {
        SeededRng::new(u64::from_le_bytes(seed))
    }
}

/// A profile with a name and role.
pub fn profile(name: &str, role: &str, org: Option<&str>) -> Profile {
    Profile {
        name: name.into(),
        role: role.into(),
        organisation: org.map(Into::into),
        attestations: Vec::new(),
    }
}

/// An attestation by `issuer` that `subject` is the person `name`, at `level`, valid from
/// `not_before` for a year (a fixed serial from the subject's key, so it is reproducible).
pub fn attestation(
    issuer: &Keypair,
    subject: &ActorId,
    name: &str,
    level: crate::trust::AssuranceLevel,
    not_before: Timestamp,
) -> crate::trust::SignedAttestation {
    use crate::trust::attestation::{Attestation, Attributes, Method, ATTESTATION_VERSION};
    Attestation {
        v: ATTESTATION_VERSION,
        issuer: issuer.actor(),
        subject: *subject,
        attributes: Attributes::Person {
            name: name.into(),
            birth_date: None,
            national_number: None,
        },
        level,
        method: Method::InPerson,
        not_before,
        not_after: not_before + 365 * 24 * 3600 * 1000,
        serial: subject.as_bytes()[..16].to_vec(),
    }
    .sign(issuer)
    .expect("a valid attestation")
}

/// A grant of `level` on `categories` (empty = all).
pub fn grant(
    grantee: &Keypair,
    level: Level,
    categories: &[Category],
    audit: bool,
    delegate: bool,
) -> Grant {
    Grant {
        grantee: grantee.actor(),
        level,
        scope: if categories.is_empty() {
            Scope::All
        } else {
            Scope::Only(categories.iter().cloned().collect::<BTreeSet<_>>())
        },
        not_before: None,
        until: None,
        audit,
        delegate,
        label: None,
        requires: None,
    }
}

/// A vital-signs body with a blood pressure reading.
pub fn bp(systolic: i64, diastolic: i64) -> Value {
    let q = |v: i64| {
        Value::Map(
            [
                ("value".to_string(), Value::Int(v)),
                ("unit".to_string(), Value::Text("mm[Hg]".into())),
            ]
            .into_iter()
            .collect(),
        )
    };
    Value::Map(
        [
            ("systolic".to_string(), q(systolic)),
            ("diastolic".to_string(), q(diastolic)),
        ]
        .into_iter()
        .collect(),
    )
}

/// A map body from text pairs.
pub fn text_body(pairs: &[(&str, &str)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
            .collect(),
    )
}

/// A record with its patient, and a clock that advances one second per write.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The patient's key.
    pub patient: Keypair,
    /// The record.
    pub record: Record,
    /// The time the next write is made at.
    pub now: Timestamp,
}

impl Fixture {
    /// A record with its genesis, for a patient named `name`.
    pub fn new(seed: u64, name: &str) -> Self {
        Self::with_profile(key(seed, name), profile(name, "patient", None))
    }

    /// A record with its genesis, for the patient with this key and profile.
    pub fn with_profile(patient: Keypair, profile: Profile) -> Self {
        let mut record = Record::new(patient.actor());
        let now = 1_700_000_000_000;
        let g = record
            .prepare(&patient, Payload::Genesis { profile }, None, now, None)
            .expect("genesis is valid");
        record.apply(g).expect("genesis applies");
        Fixture {
            patient,
            record,
            now: now + 1000,
        }
    }

    /// Writes as `key` (choosing a grant), applying everything the action writes (a
    /// revocation is several entries). Returns the last entry written.
    pub fn write(&mut self, key: &Keypair, payload: Payload) -> Result<Verified, Rejection> {
        let all = self.record.prepare_all(key, payload, self.now, None)?;
        self.now += 1000;
        let mut last = None;
        for v in all {
            self.record.apply(v.clone())?;
            last = Some(v);
        }
        last.ok_or(Rejection::Access(crate::record::AccessError::NoGrant))
    }

    /// The patient grants, returning the grant's id.
    pub fn grant(&mut self, g: Grant) -> EntryId {
        let patient = self.patient.clone();
        self.write(&patient, Payload::Grant(g))
            .expect("patient may grant")
            .id()
    }

    /// Creates an item as `key`.
    pub fn create(
        &mut self,
        key: &Keypair,
        category: Category,
        body: Value,
    ) -> Result<EntryId, Rejection> {
        self.write(key, Payload::Create { category, body })
            .map(|v| v.id())
    }
}

/// An [`crate::record::EntrySource`] over entries in memory, counting the loads (for
/// tests of lean records: what a lean record asks for, and that it answers as a full one).
#[derive(Debug, Default)]
pub struct MemSource {
    entries: std::sync::RwLock<std::collections::HashMap<EntryId, Verified>>,
    loads: std::sync::atomic::AtomicUsize,
}

impl MemSource {
    /// A source holding these entries.
    pub fn of(entries: impl IntoIterator<Item = Verified>) -> MemSource {
        let s = MemSource::default();
        for e in entries {
            s.put(e);
        }
        s
    }

    /// Adds an entry (as a node makes an entry durable before applying it).
    pub fn put(&self, e: Verified) {
        if let Ok(mut m) = self.entries.write() {
            m.insert(e.id(), e);
        }
    }

    /// Puts `e` where `id` should be (a broken or malicious source).
    pub fn put_as(&self, id: EntryId, e: Verified) {
        if let Ok(mut m) = self.entries.write() {
            m.insert(id, e);
        }
    }

    /// Forgets an entry (a source that lost it).
    pub fn forget(&self, id: &EntryId) {
        if let Ok(mut m) = self.entries.write() {
            m.remove(id);
        }
    }

    /// How many loads were asked for.
    pub fn loads(&self) -> usize {
        self.loads.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl crate::record::EntrySource for MemSource {
    fn load(&self, id: &EntryId) -> Option<Verified> {
        self.loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.entries.read().ok()?.get(id).cloned()
    }
}
