//! Encrypted key backups: an actor's secret key sealed under a passphrase, in a file a host
//! may keep without being able to open it.
//!
//! The key that encrypts is derived from the passphrase with argon2id (crate `argon2`);
//! the secret is sealed with XChaCha20-Poly1305 (crate `chacha20poly1305`). Nothing here
//! is hand-made cryptography: this module only chooses the parameters, lays out the file
//! and checks it. The salt and nonce come from the caller's randomness (`protocol` does
//! no I/O).
//!
//! ```text
//! file    = canonical CBOR { header, ciphertext }
//! header  = { v: 1, kdf: { m_kib, t, p }, salt: 16 bytes, nonce: 24 bytes, actor }
//! aad     = "cophr/v1/key-backup\0" ‖ canonical CBOR of header
//! ciphertext = XChaCha20-Poly1305(key = argon2id(passphrase, salt, kdf), nonce, aad,
//!              canonical CBOR { secret: 32 bytes, holder: { name, role, organisation }? })
//! ```
//!
//! The actor id is in clear so a host can keep one backup per actor and hand it out by id;
//! the whole header is the AEAD's associated data, so changing any of it (weaker
//! parameters, another actor) makes opening fail. After decryption the secret's public
//! key must be the header's actor.
//!
//! A backup is untrusted input until opened: [`KeyBackup::decode`] bounds its size and
//! the argon2id parameters (at most [`KdfParams::MAX`], at least [`KdfParams::MIN`])
//! before any key is derived, so a hostile file cannot make the opener allocate more than
//! 256 MiB or spin for long, nor trick it into a weak derivation.
//!
//! Threat model: whoever holds the file (the host, and anyone who asks the host for it)
//! can try passphrases offline. Security rests on the passphrase (at least
//! [`MIN_PASSPHRASE_CHARS`] characters) and argon2id's cost per guess.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::entry::{from_cbor_canonical, to_cbor, MAX_SHORT_TEXT};
use crate::ids::ActorId;
use crate::keys::Keypair;

/// The backup format's version.
pub const VERSION: u8 = 1;
/// Largest encoded backup accepted (a real one is a few hundred bytes).
pub const MAX_BACKUP_BYTES: usize = 4096;
/// Fewest characters (Unicode scalar values) in a passphrase that seals a backup.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// Longest passphrase accepted, in bytes.
pub const MAX_PASSPHRASE_BYTES: usize = 1024;
/// Salt length.
pub const SALT_BYTES: usize = 16;
/// XChaCha20-Poly1305 nonce length.
pub const NONCE_BYTES: usize = 24;
/// Poly1305 tag length.
const TAG_BYTES: usize = 16;

/// The associated data's domain-separation tag.
const AAD_TAG: &[u8] = b"cophr/v1/key-backup\0";

/// argon2id cost parameters, stored in the backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, in KiB.
    pub m_kib: u32,
    /// Iterations (passes over the memory).
    pub t: u32,
    /// Lanes (parallelism).
    pub p: u32,
}

impl KdfParams {
    /// For real use: 64 MiB, 3 passes, one lane.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 1,
    };
    /// The floor: no backup with less is sealed or opened (OWASP's argon2id minimum,
    /// 19 MiB and 2 passes). Tests seal with it, being the cheapest allowed.
    pub const MIN: KdfParams = KdfParams {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
    /// The ceiling: no backup asking more is opened (256 MiB, 10 passes, 4 lanes), so a
    /// hostile file cannot exhaust the opener's memory or time.
    pub const MAX: KdfParams = KdfParams {
        m_kib: 256 * 1024,
        t: 10,
        p: 4,
    };

    /// Checks the parameters are within [`KdfParams::MIN`] and [`KdfParams::MAX`].
    pub fn check(&self) -> Result<(), BackupError> {
        let within = |what: &str, v: u32, min: u32, max: u32| {
            if v < min || v > max {
                Err(BackupError::Params(format!(
                    "{what} {v} is outside {min}..={max}"
                )))
            } else {
                Ok(())
            }
        };
        within("memory (KiB)", self.m_kib, Self::MIN.m_kib, Self::MAX.m_kib)?;
        within("iterations", self.t, Self::MIN.t, Self::MAX.t)?;
        within("parallelism", self.p, Self::MIN.p, Self::MAX.p)?;
        Ok(())
    }

    fn argon2(&self) -> Result<Argon2<'static>, BackupError> {
        self.check()?;
        let params = Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| BackupError::Params(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Who the key belongs to, sealed with it so a restored home gets its identity back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// Display name.
    pub name: String,
    /// Role.
    pub role: String,
    /// Organisation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
}

impl Holder {
    fn check(&self) -> Result<(), BackupError> {
        let ok = |s: &str| !s.trim().is_empty() && s.len() <= MAX_SHORT_TEXT;
        if ok(&self.name) && ok(&self.role) && self.organisation.as_deref().is_none_or(ok) {
            Ok(())
        } else {
            Err(BackupError::Corrupt(
                "the holder's name, role or organisation is empty or too long".into(),
            ))
        }
    }
}

/// Why a backup could not be made or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackupError {
    /// Authentication failed: the passphrase is wrong, or the file was altered.
    #[error("wrong passphrase (or the backup was altered)")]
    WrongPassphrase,
    /// The bytes are not a backup of this format.
    #[error("not a valid key backup: {0}")]
    Corrupt(String),
    /// Larger than [`MAX_BACKUP_BYTES`].
    #[error("key backup is {0} bytes, more than the {MAX_BACKUP_BYTES}-byte limit")]
    TooLarge(usize),
    /// argon2id parameters outside the accepted bounds.
    #[error("key backup parameters refused: {0}")]
    Params(String),
    /// A format version this code does not read.
    #[error("key backup format version {0} is not supported (this cophr reads version {VERSION})")]
    Version(u8),
    /// The decrypted key is not the actor the backup names.
    #[error("the key in the backup does not belong to the actor it names")]
    KeyMismatch,
    /// A passphrase too short to seal with, or too long.
    #[error(
        "the passphrase must be at least {MIN_PASSPHRASE_CHARS} characters and at most \
         {MAX_PASSPHRASE_BYTES} bytes"
    )]
    Passphrase,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    v: u8,
    kdf: KdfParams,
    salt: [u8; SALT_BYTES],
    nonce: [u8; NONCE_BYTES],
    actor: ActorId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Wire {
    header: Header,
    ciphertext: serde_bytes::ByteBuf,
}

/// Only the version, read first so a future format is reported as such.
#[derive(Deserialize)]
struct VersionProbe {
    header: HeaderProbe,
}

#[derive(Deserialize)]
struct HeaderProbe {
    v: u8,
}

/// The sealed plaintext.
#[derive(Serialize, Deserialize)]
struct Sealed {
    secret: [u8; 32],
    #[serde(default, skip_serializing_if = "Option::is_none")]
    holder: Option<Holder>,
}

impl Drop for Sealed {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// Largest plaintext: the secret and three short texts, with CBOR overhead.
const MAX_PLAINTEXT: usize = 32 + 3 * MAX_SHORT_TEXT + 128;

/// A decoded (not yet opened) key backup. Its bytes are what is written to a file or
/// kept by a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBackup {
    header: Header,
    bytes: Vec<u8>,
    ciphertext: Vec<u8>,
}

/// An opened backup: the key, and who it belongs to (if the backup says).
#[derive(Debug, Clone)]
pub struct Restored {
    /// The actor's key (its actor is the backup's).
    pub key: Keypair,
    /// Who it belongs to.
    pub holder: Option<Holder>,
}

fn check_passphrase(passphrase: &str) -> Result<(), BackupError> {
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS || passphrase.len() > MAX_PASSPHRASE_BYTES
    {
        return Err(BackupError::Passphrase);
    }
    Ok(())
}

fn aad(header: &Header) -> Vec<u8> {
    let mut aad = AAD_TAG.to_vec();
    aad.extend_from_slice(&to_cbor(header));
    aad
}

fn derive(passphrase: &str, header: &Header) -> Result<Zeroizing<[u8; 32]>, BackupError> {
    let mut key = Zeroizing::new([0u8; 32]);
    header
        .kdf
        .argon2()?
        .hash_password_into(passphrase.as_bytes(), &header.salt, key.as_mut())
        .map_err(|e| BackupError::Params(e.to_string()))?;
    Ok(key)
}

impl KeyBackup {
    /// Seals `key` (and who it belongs to) under `passphrase`, deriving with `params`
    /// ([`KdfParams::DEFAULT`] for real use). The salt and nonce are drawn from `rng`.
    pub fn seal<R: RngCore + CryptoRng>(
        key: &Keypair,
        holder: Option<&Holder>,
        passphrase: &str,
        params: KdfParams,
        rng: &mut R,
    ) -> Result<KeyBackup, BackupError> {
        check_passphrase(passphrase)?;
        params.check()?;
        if let Some(h) = holder {
            h.check()?;
        }
        let mut salt = [0u8; SALT_BYTES];
        let mut nonce = [0u8; NONCE_BYTES];
        rng.fill_bytes(&mut salt);
        rng.fill_bytes(&mut nonce);
        let header = Header {
            v: VERSION,
            kdf: params,
            salt,
            nonce,
            actor: key.actor(),
        };
        let plain = Sealed {
            secret: key.secret_bytes(),
            holder: holder.cloned(),
        };
        let plaintext = Zeroizing::new(to_cbor(&plain));
        drop(plain);
        let aead_key = derive(passphrase, &header)?;
        let cipher = XChaCha20Poly1305::new(Key::from_slice(aead_key.as_ref()));
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&header.nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad(&header),
                },
            )
            .map_err(|_| BackupError::Corrupt("encryption failed".into()))?;
        let wire = Wire {
            header: header.clone(),
            ciphertext: serde_bytes::ByteBuf::from(ciphertext.clone()),
        };
        Ok(KeyBackup {
            bytes: to_cbor(&wire),
            header,
            ciphertext,
        })
    }

    /// Decodes untrusted bytes: bounded in size, canonical only, a known version, argon2id
    /// parameters within bounds. Derives nothing and decrypts nothing.
    pub fn decode(bytes: &[u8]) -> Result<KeyBackup, BackupError> {
        if bytes.len() > MAX_BACKUP_BYTES {
            return Err(BackupError::TooLarge(bytes.len()));
        }
        if let Ok(probe) = cbor4ii::serde::from_slice::<VersionProbe>(bytes) {
            if probe.header.v != VERSION {
                return Err(BackupError::Version(probe.header.v));
            }
        }
        let wire: Wire =
            from_cbor_canonical(bytes).map_err(|e| BackupError::Corrupt(e.to_string()))?;
        if wire.header.v != VERSION {
            return Err(BackupError::Version(wire.header.v));
        }
        wire.header.kdf.check()?;
        let n = wire.ciphertext.len();
        if !(TAG_BYTES + 32..=TAG_BYTES + MAX_PLAINTEXT).contains(&n) {
            return Err(BackupError::Corrupt(format!(
                "ciphertext of {n} bytes cannot hold a key"
            )));
        }
        Ok(KeyBackup {
            header: wire.header,
            bytes: bytes.to_vec(),
            ciphertext: wire.ciphertext.into_vec(),
        })
    }

    /// The encoded backup.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The actor whose key this is (in clear, so a host can keep it by actor).
    pub fn actor(&self) -> ActorId {
        self.header.actor
    }

    /// The argon2id parameters it was sealed with.
    pub fn params(&self) -> KdfParams {
        self.header.kdf
    }

    /// Opens the backup with `passphrase`: derives the key (as costly as the stored
    /// parameters, which [`KeyBackup::decode`] bounded), authenticates header and
    /// ciphertext, and checks the key is the named actor's.
    pub fn open(&self, passphrase: &str) -> Result<Restored, BackupError> {
        if passphrase.len() > MAX_PASSPHRASE_BYTES {
            return Err(BackupError::Passphrase);
        }
        let aead_key = derive(passphrase, &self.header)?;
        let cipher = XChaCha20Poly1305::new(Key::from_slice(aead_key.as_ref()));
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(&self.header.nonce),
                    Payload {
                        msg: &self.ciphertext,
                        aad: &aad(&self.header),
                    },
                )
                .map_err(|_| BackupError::WrongPassphrase)?,
        );
        let sealed: Sealed = cbor4ii::serde::from_slice(&plaintext)
            .map_err(|e| BackupError::Corrupt(format!("sealed contents: {e}")))?;
        let key = Keypair::from_secret(&sealed.secret);
        if key.actor() != self.header.actor {
            return Err(BackupError::KeyMismatch);
        }
        if let Some(h) = &sealed.holder {
            h.check()?;
        }
        Ok(Restored {
            key,
            holder: sealed.holder.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const PASS: &str = "correct horse battery staple";

    fn george() -> Holder {
        Holder {
            name: "George Jones".into(),
            role: "patient".into(),
            organisation: None,
        }
    }

    fn sealed(seed: u64) -> (Keypair, KeyBackup) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let key = Keypair::generate(&mut rng);
        let b =
            KeyBackup::seal(&key, Some(&george()), PASS, KdfParams::MIN, &mut rng).expect("sealed");
        (key, b)
    }

    /// Re-encodes a backup after `f` changed its wire form (the ciphertext is kept).
    fn altered(b: &KeyBackup, f: impl FnOnce(&mut Wire)) -> Vec<u8> {
        let mut wire: Wire = from_cbor_canonical(b.bytes()).expect("decodes");
        f(&mut wire);
        to_cbor(&wire)
    }

    #[test]
    fn round_trip_restores_the_key_and_holder() {
        let (key, b) = sealed(1);
        let decoded = KeyBackup::decode(b.bytes()).expect("decodes");
        assert_eq!(decoded, b);
        assert_eq!(decoded.actor(), key.actor());
        assert_eq!(decoded.params(), KdfParams::MIN);
        let r = decoded.open(PASS).expect("opens");
        assert_eq!(r.key.secret_bytes(), key.secret_bytes());
        assert_eq!(r.holder, Some(george()));
        assert!(b.bytes().len() < 300, "{} bytes", b.bytes().len());
    }

    #[test]
    fn the_file_does_not_contain_the_secret() {
        let (key, b) = sealed(2);
        let secret = key.secret_bytes();
        assert!(!b.bytes().windows(32).any(|w| w == secret));
        assert!(!b.bytes().windows(6).any(|w| w == b"George"));
    }

    #[test]
    fn wrong_passphrase_is_refused() {
        let (_, b) = sealed(3);
        assert_eq!(
            b.open("correct horse battery stapler").unwrap_err(),
            BackupError::WrongPassphrase
        );
        assert_eq!(b.open("").unwrap_err(), BackupError::WrongPassphrase);
    }

    #[test]
    fn short_or_huge_passphrases_do_not_seal() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let key = Keypair::generate(&mut rng);
        for p in ["", "elevenchars", &"x".repeat(MAX_PASSPHRASE_BYTES + 1)] {
            assert_eq!(
                KeyBackup::seal(&key, None, p, KdfParams::MIN, &mut rng).unwrap_err(),
                BackupError::Passphrase
            );
        }
        // Twelve characters (not bytes) is enough.
        let b = KeyBackup::seal(&key, None, "ééééééééééé1", KdfParams::MIN, &mut rng)
            .expect("twelve characters seal");
        assert!(b.open("ééééééééééé1").unwrap().holder.is_none());
    }

    #[test]
    fn weak_or_hostile_params_are_refused_before_deriving() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let key = Keypair::generate(&mut rng);
        let weak = KdfParams {
            t: 1,
            ..KdfParams::MIN
        };
        assert!(matches!(
            KeyBackup::seal(&key, None, PASS, weak, &mut rng),
            Err(BackupError::Params(_))
        ));
        let (_, b) = sealed(5);
        for kdf in [
            KdfParams {
                m_kib: 4 * 1024 * 1024,
                ..KdfParams::DEFAULT
            },
            KdfParams {
                m_kib: u32::MAX,
                ..KdfParams::DEFAULT
            },
            KdfParams {
                t: 11,
                ..KdfParams::DEFAULT
            },
            KdfParams {
                t: u32::MAX,
                ..KdfParams::DEFAULT
            },
            KdfParams {
                p: 5,
                ..KdfParams::DEFAULT
            },
            KdfParams {
                p: 0,
                ..KdfParams::DEFAULT
            },
            KdfParams {
                m_kib: 8,
                ..KdfParams::MIN
            },
            KdfParams {
                t: 0,
                ..KdfParams::MIN
            },
        ] {
            let bytes = altered(&b, |w| w.header.kdf = kdf);
            assert!(
                matches!(KeyBackup::decode(&bytes), Err(BackupError::Params(_))),
                "{kdf:?}"
            );
        }
    }

    #[test]
    fn a_tampered_header_does_not_open() {
        let (_, b) = sealed(6);
        let other = Keypair::generate(&mut ChaCha20Rng::seed_from_u64(60)).actor();
        type Change = Box<dyn Fn(&mut Wire)>;
        let changes: Vec<Change> = vec![
            Box::new(|w| w.header.salt[0] ^= 1),
            Box::new(|w| w.header.nonce[23] ^= 1),
            Box::new(move |w| w.header.actor = other),
            Box::new(|w| w.header.kdf.t += 1),
        ];
        for change in changes {
            let bytes = altered(&b, change);
            let d = KeyBackup::decode(&bytes).expect("still well-formed");
            assert_eq!(d.open(PASS).unwrap_err(), BackupError::WrongPassphrase);
        }
    }

    #[test]
    fn a_tampered_ciphertext_does_not_open() {
        let (_, b) = sealed(7);
        let n = b.ciphertext.len();
        for i in [0, n / 2, n - 1] {
            let bytes = altered(&b, |w| w.ciphertext[i] ^= 0x80);
            let d = KeyBackup::decode(&bytes).expect("still well-formed");
            assert_eq!(d.open(PASS).unwrap_err(), BackupError::WrongPassphrase);
        }
        // A shortened ciphertext cannot hold a key at all.
        let bytes = altered(&b, |w| w.ciphertext.truncate(TAG_BYTES + 8));
        assert!(matches!(
            KeyBackup::decode(&bytes),
            Err(BackupError::Corrupt(_))
        ));
    }

    #[test]
    fn a_key_not_matching_the_actor_is_refused() {
        // Sealed properly by someone who knows the passphrase, but naming another actor:
        // the header (with the wrong actor) is authenticated, the key inside is not its.
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let key = Keypair::generate(&mut rng);
        let other = Keypair::generate(&mut rng).actor();
        let header = Header {
            v: VERSION,
            kdf: KdfParams::MIN,
            salt: [1; SALT_BYTES],
            nonce: [2; NONCE_BYTES],
            actor: other,
        };
        let plaintext = to_cbor(&Sealed {
            secret: key.secret_bytes(),
            holder: None,
        });
        let k = derive(PASS, &header).unwrap();
        let ciphertext = XChaCha20Poly1305::new(Key::from_slice(k.as_ref()))
            .encrypt(
                XNonce::from_slice(&header.nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad(&header),
                },
            )
            .unwrap();
        let bytes = to_cbor(&Wire {
            header,
            ciphertext: serde_bytes::ByteBuf::from(ciphertext),
        });
        let d = KeyBackup::decode(&bytes).expect("well-formed");
        assert_eq!(d.open(PASS).unwrap_err(), BackupError::KeyMismatch);
    }

    #[test]
    fn truncated_oversized_and_future_files_are_refused() {
        let (_, b) = sealed(9);
        let bytes = b.bytes();
        for n in 0..bytes.len() {
            assert!(
                matches!(KeyBackup::decode(&bytes[..n]), Err(BackupError::Corrupt(_))),
                "truncated at {n}"
            );
        }
        let big = vec![0u8; MAX_BACKUP_BYTES + 1];
        assert_eq!(
            KeyBackup::decode(&big).unwrap_err(),
            BackupError::TooLarge(MAX_BACKUP_BYTES + 1)
        );
        let v2 = altered(&b, |w| w.header.v = 2);
        assert_eq!(KeyBackup::decode(&v2).unwrap_err(), BackupError::Version(2));
        // Not canonical: the same value with a trailing byte.
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert!(KeyBackup::decode(&trailing).is_err());
    }

    #[test]
    fn the_same_key_seals_differently_each_time() {
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let key = Keypair::generate(&mut rng);
        let a = KeyBackup::seal(&key, None, PASS, KdfParams::MIN, &mut rng).unwrap();
        let b = KeyBackup::seal(&key, None, PASS, KdfParams::MIN, &mut rng).unwrap();
        assert_ne!(a.bytes(), b.bytes());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = KeyBackup::decode(&bytes);
        }

        #[test]
        fn mutated_backups_decode_without_panic(i in 0usize..400, x in 1u8..=255) {
            static ONE: std::sync::OnceLock<KeyBackup> = std::sync::OnceLock::new();
            let b = ONE.get_or_init(|| sealed(11).1);
            let mut bytes = b.bytes().to_vec();
            let i = i % bytes.len();
            bytes[i] ^= x;
            // Decoding never panics; if it decodes, its parameters are within bounds.
            if let Ok(d) = KeyBackup::decode(&bytes) {
                prop_assert!(d.params().check().is_ok());
            }
        }
    }
}
