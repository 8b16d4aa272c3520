//! Content encryption for blind hosting (`docs/blind-hosting.md`): the primitives, pure.
//!
//! - **Box keys.** Every actor's X25519 key pair for receiving epoch keys is its Ed25519
//!   signing key in Montgomery form ([`BoxKey::of`], [`BoxPublic::of`]; the conversions
//!   are `ed25519-dalek`'s own, the construction libsodium and age use, whose joint
//!   security with Ed25519 is shown in "On using the same key pair for Ed25519 and an X25519
//!   based KEM", ePrint 2021/509). So anyone who knows an actor id can wrap to it, a key
//!   backup or a restored device restores it, and no box key has to be published.
//! - **Epoch keys.** One random 256-bit [`EpochKey`] per category stream and epoch (an
//!   epoch is named by a random [`EpochId`], so concurrent openings never collide). It is
//!   wrapped for each reader with HPKE (base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//!   ChaCha20-Poly1305; crate `hpke`), the info string binding it to the record, stream and
//!   epoch ([`wrap`], [`unwrap`]).
//! - **Sealed content.** A body (or any content) is sealed with XChaCha20-Poly1305 under
//!   the epoch key with a random 192-bit nonce; the associated data binds it to the record,
//!   stream, epoch and author ([`seal`], [`open`]), so a ciphertext moved to another place
//!   does not open. Signatures cover the sealed bytes, so a relay that cannot open them
//!   still checks authorship, chains, authorisation, sizes and forks.
//!
//! Randomness comes in as an argument (no I/O here). Nothing is hand-made: HPKE, the AEAD
//! and the KDF are well-kept crates; this module only fixes the parameters and the binding.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::ids::{ActorId, RecordId};
use crate::keys::Keypair;

type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type WrapAead = hpke::aead::ChaCha20Poly1305;

/// Bytes of an epoch key.
pub const EPOCH_KEY_BYTES: usize = 32;
/// Bytes of a sealed content's nonce.
pub const NONCE_BYTES: usize = 24;
/// The largest plaintext sealed (an entry's content is bounded by the entry's own limit).
pub const MAX_PLAINTEXT: usize = crate::entry::MAX_ENTRY_BYTES;

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The ciphertext does not open with this key in this place: the wrong key, another
    /// record, stream, epoch or author, or altered bytes.
    #[error("the content does not decrypt with this key here (wrong key, moved or altered)")]
    Open,
    /// A wrapped epoch key does not unwrap with this box key.
    #[error("the epoch key is not wrapped for this key, or was altered")]
    Unwrap,
    /// A box public key or encapsulated key is not a valid X25519 point encoding.
    #[error("not a valid X25519 public key")]
    BadKey,
    /// More than [`MAX_PLAINTEXT`] bytes.
    #[error("{0} bytes is more than the {MAX_PLAINTEXT}-byte limit")]
    TooLarge(usize),
}

/// An actor's X25519 public key for receiving epoch keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BoxPublic(pub [u8; 32]);

impl BoxPublic {
    /// The box public key of an actor: its Ed25519 key in Montgomery form. Refused for a
    /// bytes string that is not a valid Ed25519 point or is a weak (small-order) key.
    ///
    /// The conversion costs a field inversion, and a record's sealing checks ask it of
    /// the same few readers for every entry, so each thread remembers the last ones
    /// (as [`crate::keys::verifying_key`] does).
    pub fn of(actor: &ActorId) -> Result<BoxPublic, SealError> {
        BOX_PUBLIC.with(|m| {
            m.get(actor, |actor| {
                let vk = crate::keys::verifying_key(actor).map_err(|_| SealError::BadKey)?;
                Ok(BoxPublic(vk.to_montgomery().to_bytes()))
            })
        })
    }
}

thread_local! {
    static BOX_PUBLIC: crate::keys::Memo<Result<BoxPublic, SealError>> = crate::keys::Memo::new();
}

/// The name of one epoch of a stream: random, chosen by whoever opens the epoch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EpochId(#[serde(with = "serde_bytes")] pub [u8; 16]);

impl EpochId {
    /// A fresh random epoch name.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> EpochId {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        EpochId(b)
    }
}

impl std::fmt::Debug for EpochId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EpochId({self})")
    }
}

impl std::fmt::Display for EpochId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Which thread an epoch of `messages` is for (`docs/care-team.md`, "Conversations"): a
/// thread's epoch is wrapped only for its participants' reader keys, so a reader of the
/// stream who does not take part holds no key for what is sealed under it. Carried in
/// clear on the epoch's opening, as the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ThreadEpoch {
    /// Opened for a thread starting now: its start is sealed under it (the start's id is
    /// not known before the start is written).
    New,
    /// Opened for the thread started by this entry (a later epoch of an existing thread).
    Of(crate::ids::EntryId),
}

/// An actor's X25519 key pair for receiving epoch keys.
pub struct BoxKey {
    secret: <Kem as hpke::Kem>::PrivateKey,
    public: BoxPublic,
}

impl std::fmt::Debug for BoxKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoxKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl BoxKey {
    /// The box key of a signing key: its Ed25519 secret scalar as an X25519 secret, so
    /// whoever holds the signing key (a restored backup, the same identity on a new
    /// machine) holds the box key, and its public half is [`BoxPublic::of`] the actor.
    pub fn of(key: &Keypair) -> BoxKey {
        let mut secret = key.secret_bytes();
        let signing = ed25519_dalek::SigningKey::from_bytes(&secret);
        secret.zeroize();
        let mut scalar = signing.to_scalar_bytes();
        let public = BoxPublic(signing.verifying_key().to_montgomery().to_bytes());
        // 32 bytes always decode (the scalar is clamped on use).
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&scalar)
            .unwrap_or_else(|_| Kem::derive_keypair(&scalar).0);
        scalar.zeroize();
        BoxKey { secret: sk, public }
    }

    /// The public half, to publish.
    pub fn public(&self) -> BoxPublic {
        self.public
    }
}

/// A stream's key for one epoch.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct EpochKey(pub [u8; EPOCH_KEY_BYTES]);

impl std::fmt::Debug for EpochKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EpochKey(…)")
    }
}

impl EpochKey {
    /// A fresh random key.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> EpochKey {
        let mut k = [0u8; EPOCH_KEY_BYTES];
        rng.fill_bytes(&mut k);
        EpochKey(k)
    }
}

/// Where an epoch key or a sealed content belongs: what the encryption is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place<'a> {
    /// The record.
    pub record: &'a RecordId,
    /// The category stream's name (`vital-signs`, `ext:ns/name`, …).
    pub stream: &'a str,
    /// The epoch.
    pub epoch: EpochId,
}

impl Place<'_> {
    fn bytes(&self, what: &[u8]) -> Vec<u8> {
        let mut b = Vec::with_capacity(96 + self.stream.len());
        b.extend_from_slice(what);
        b.extend_from_slice(self.record.as_bytes());
        b.extend_from_slice(&(self.stream.len() as u32).to_be_bytes());
        b.extend_from_slice(self.stream.as_bytes());
        b.extend_from_slice(&self.epoch.0);
        b
    }
}

/// An epoch key wrapped for one reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wrapped {
    /// The reader (their box key is in their profile).
    pub to: ActorId,
    /// HPKE's encapsulated key.
    #[serde(with = "serde_bytes")]
    pub enc: Vec<u8>,
    /// The wrapped epoch key (with its tag).
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
}

/// Wraps `key` for `to` (whose box public key is `recipient`) at `place`.
pub fn wrap<R: RngCore + CryptoRng>(
    key: &EpochKey,
    to: ActorId,
    recipient: &BoxPublic,
    place: Place<'_>,
    rng: &mut R,
) -> Result<Wrapped, SealError> {
    let pk =
        <Kem as hpke::Kem>::PublicKey::from_bytes(&recipient.0).map_err(|_| SealError::BadKey)?;
    let info = place.bytes(b"cophr/v1/epoch-key\0");
    let (enc, ct) = hpke::single_shot_seal::<WrapAead, Kdf, Kem, _>(
        &OpModeS::Base,
        &pk,
        &info,
        &key.0,
        to.as_bytes(),
        rng,
    )
    .map_err(|_| SealError::BadKey)?;
    Ok(Wrapped {
        to,
        enc: enc.to_bytes().to_vec(),
        ct,
    })
}

/// Unwraps an epoch key wrapped for the holder of `mine` at `place`.
pub fn unwrap(w: &Wrapped, mine: &BoxKey, place: Place<'_>) -> Result<EpochKey, SealError> {
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&w.enc).map_err(|_| SealError::Unwrap)?;
    let info = place.bytes(b"cophr/v1/epoch-key\0");
    let mut pt = hpke::single_shot_open::<WrapAead, Kdf, Kem>(
        &OpModeR::Base,
        &mine.secret,
        &enc,
        &info,
        &w.ct,
        w.to.as_bytes(),
    )
    .map_err(|_| SealError::Unwrap)?;
    let out = <[u8; EPOCH_KEY_BYTES]>::try_from(pt.as_slice()).map_err(|_| SealError::Unwrap);
    pt.zeroize();
    out.map(EpochKey)
}

/// Content sealed under an epoch key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The stream's epoch whose key sealed it.
    pub epoch: EpochId,
    /// The random nonce.
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; NONCE_BYTES],
    /// The ciphertext with its tag.
    #[serde(with = "serde_bytes")]
    pub ct: Vec<u8>,
    /// The documents the sealed body references, in clear (hash and stored size, never
    /// their keys: [`crate::blob`]), so a relay fetches, checks and serves their bytes; a
    /// reader checks they are the body's. Sorted by hash; absent when empty (so content
    /// without documents encodes as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blobs: Vec<crate::blob::BlobRef>,
    /// A task's create or amend only: its lifecycle fields, in clear and signed with the
    /// entry, so every replica's gate enforces the lifecycle without the key
    /// (`docs/care-team.md`, "Sealed tasks"); readers check the sealed body agrees. Absent
    /// otherwise (so other content encodes as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<crate::care::TaskClear>,
}

impl Sealed {
    /// Its canonical CBOR.
    pub fn encode(&self) -> Vec<u8> {
        crate::entry::to_cbor(self)
    }

    /// Decodes [`Sealed::encode`]'s bytes (canonical only).
    pub fn decode(bytes: &[u8]) -> Result<Sealed, crate::entry::EntryError> {
        crate::entry::from_cbor_canonical(bytes)
    }
}

fn aad(place: Place<'_>, author: &ActorId) -> Vec<u8> {
    let mut b = place.bytes(b"cophr/v1/content\0");
    b.extend_from_slice(author.as_bytes());
    b
}

/// Seals `plaintext` written by `author` at `place` under `key`.
pub fn seal<R: RngCore + CryptoRng>(
    key: &EpochKey,
    place: Place<'_>,
    author: &ActorId,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Sealed, SealError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(SealError::TooLarge(plaintext.len()));
    }
    let mut nonce = [0u8; NONCE_BYTES];
    rng.fill_bytes(&mut nonce);
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&key.0));
    let ct = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad: &aad(place, author),
            },
        )
        .map_err(|_| SealError::TooLarge(plaintext.len()))?;
    Ok(Sealed {
        epoch: place.epoch,
        nonce,
        ct,
        blobs: Vec::new(),
        task: None,
    })
}

/// Opens content `author` sealed at `place` (whose epoch must be the sealed one's).
pub fn open(
    key: &EpochKey,
    place: Place<'_>,
    author: &ActorId,
    sealed: &Sealed,
) -> Result<Vec<u8>, SealError> {
    if sealed.epoch != place.epoch || sealed.ct.len() > MAX_PLAINTEXT + 16 {
        return Err(SealError::Open);
    }
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&key.0));
    cipher
        .decrypt(
            XNonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ct,
                aad: &aad(place, author),
            },
        )
        .map_err(|_| SealError::Open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::key;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    fn place<'a>(record: &'a RecordId, stream: &'a str, epoch: u8) -> Place<'a> {
        Place {
            record,
            stream,
            epoch: EpochId([epoch; 16]),
        }
    }

    #[test]
    fn a_reader_unwraps_the_epoch_key_and_opens_what_was_sealed_under_it() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let george = key(1, "George");
        let nurse = key(1, "Nurse");
        let record = george.actor();
        let here = place(&record, "vital-signs", 3);
        let k = EpochKey::generate(&mut rng);
        let nurse_box = BoxKey::of(&nurse);
        // Derived, so the same identity on another machine has the same box key, and
        // anyone who knows the actor id knows its public half.
        assert_eq!(BoxKey::of(&nurse).public(), nurse_box.public());
        assert_eq!(BoxPublic::of(&nurse.actor()).unwrap(), nurse_box.public());
        assert_ne!(BoxKey::of(&george).public(), nurse_box.public());
        let w = wrap(&k, nurse.actor(), &nurse_box.public(), here, &mut rng).unwrap();
        let got = unwrap(&w, &nurse_box, here).unwrap();
        assert_eq!(got, k);
        let s = seal(
            &k,
            here,
            &george.actor(),
            b"I am deaf in my left ear",
            &mut rng,
        )
        .unwrap();
        assert!(!s.ct.windows(4).any(|w| w == b"deaf"));
        assert_eq!(
            open(&got, here, &george.actor(), &s).unwrap(),
            b"I am deaf in my left ear"
        );
    }

    #[test]
    fn wrong_keys_other_places_and_altered_bytes_are_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let george = key(2, "George");
        let nurse = key(2, "Nurse");
        let revoked = key(2, "Revoked pharmacist");
        let record = george.actor();
        let here = place(&record, "allergies", 1);
        let k = EpochKey::generate(&mut rng);
        let w = wrap(
            &k,
            nurse.actor(),
            &BoxKey::of(&nurse).public(),
            here,
            &mut rng,
        )
        .unwrap();
        // Someone else's box key; another stream, epoch or record; a wrap re-addressed.
        assert_eq!(
            unwrap(&w, &BoxKey::of(&revoked), here),
            Err(SealError::Unwrap)
        );
        let other_record = nurse.actor();
        for p in [
            place(&record, "allergies", 2),
            place(&record, "problems", 1),
            place(&other_record, "allergies", 1),
        ] {
            assert_eq!(unwrap(&w, &BoxKey::of(&nurse), p), Err(SealError::Unwrap));
        }
        let mut readdressed = w.clone();
        readdressed.to = revoked.actor();
        assert_eq!(
            unwrap(&readdressed, &BoxKey::of(&nurse), here),
            Err(SealError::Unwrap)
        );
        let mut bad = w.clone();
        bad.ct[0] ^= 1;
        assert_eq!(
            unwrap(&bad, &BoxKey::of(&nurse), here),
            Err(SealError::Unwrap)
        );
        bad = w.clone();
        bad.enc.truncate(5);
        assert_eq!(
            unwrap(&bad, &BoxKey::of(&nurse), here),
            Err(SealError::Unwrap)
        );

        let s = seal(&k, here, &george.actor(), b"Penicillin", &mut rng).unwrap();
        // A later epoch's key, another author, another place, altered bytes or nonce.
        let later = EpochKey::generate(&mut rng);
        assert_eq!(
            open(&later, here, &george.actor(), &s),
            Err(SealError::Open)
        );
        assert_eq!(open(&k, here, &nurse.actor(), &s), Err(SealError::Open));
        assert_eq!(
            open(&k, place(&record, "problems", 1), &george.actor(), &s),
            Err(SealError::Open)
        );
        assert_eq!(
            open(&k, place(&record, "allergies", 2), &george.actor(), &s),
            Err(SealError::Open)
        );
        let mut t = s.clone();
        t.ct[3] ^= 0x40;
        assert_eq!(open(&k, here, &george.actor(), &t), Err(SealError::Open));
        t = s.clone();
        t.nonce[0] ^= 1;
        assert_eq!(open(&k, here, &george.actor(), &t), Err(SealError::Open));
        // A low-order recipient key (all zeros: an all-zero shared secret) is refused.
        assert_eq!(
            wrap(&k, nurse.actor(), &BoxPublic([0; 32]), here, &mut rng).err(),
            Some(SealError::BadKey)
        );
        assert_eq!(
            seal(
                &k,
                here,
                &george.actor(),
                &vec![0; MAX_PLAINTEXT + 1],
                &mut rng
            ),
            Err(SealError::TooLarge(MAX_PLAINTEXT + 1))
        );
    }
}
