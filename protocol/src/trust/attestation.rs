//! Attestations: an identity assurance service's signed statement that a key belongs to a
//! verified person, organisation or device, and the issuer's revocation of one.

use serde::{Deserialize, Serialize};

use crate::entry::{from_cbor_canonical, to_cbor, EntryError, Timestamp};
use crate::ids::{ActorId, Sig};
use crate::keys::{self, Domain, KeyError, Keypair};

/// Largest encoded signed attestation or revocation accepted.
pub const MAX_ATTESTATION_BYTES: usize = 4 * 1024;
/// Longest attribute text (names, professions, registration numbers, labels).
pub const MAX_ATTRIBUTE_TEXT: usize = 256;
/// Longest validity period an attestation may claim (ten years).
pub const MAX_VALIDITY_MS: u64 = 10 * 366 * 24 * 3600 * 1000;
/// Attestation format version.
pub const ATTESTATION_VERSION: u8 = 1;

/// An identity verification level: the NHS identity verification levels, each mapped to
/// the NIST SP 800-63A identity assurance level it corresponds to. Ordered: `P0 < P5 < P9`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AssuranceLevel {
    /// Low: the person controls the contact details given; identity not checked (IAL1).
    P0,
    /// Medium: identity checked against records, e.g. name, date of birth and NHS number
    /// matched, without photo ID (IAL2).
    P5,
    /// High: identity checked with photo ID and a likeness check or in person (IAL3).
    P9,
}

impl AssuranceLevel {
    /// The NIST identity assurance level (1–3) this level maps to.
    pub fn ial(self) -> u8 {
        match self {
            AssuranceLevel::P0 => 1,
            AssuranceLevel::P5 => 2,
            AssuranceLevel::P9 => 3,
        }
    }

    /// Every level, lowest first.
    pub const ALL: [AssuranceLevel; 3] =
        [AssuranceLevel::P0, AssuranceLevel::P5, AssuranceLevel::P9];
}

impl std::fmt::Display for AssuranceLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            AssuranceLevel::P0 => "P0",
            AssuranceLevel::P5 => "P5",
            AssuranceLevel::P9 => "P9",
        };
        f.write_str(s)
    }
}

impl std::str::FromStr for AssuranceLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "P0" | "IAL1" => Ok(AssuranceLevel::P0),
            "P5" | "IAL2" => Ok(AssuranceLevel::P5),
            "P9" | "IAL3" => Ok(AssuranceLevel::P9),
            _ => Err(format!(
                "unknown assurance level `{s}` (P0, P5 or P9; or IAL1, IAL2, IAL3)"
            )),
        }
    }
}

/// A national health or insurance number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NationalNumber {
    /// The numbering system: `nhs` (England, Wales, Isle of Man: ten digits, modulus 11
    /// check digit, checked), or another system's short name.
    pub system: String,
    /// The number.
    pub value: String,
}

/// A professional registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The regulator: `GMC`, `NMC`, `GPhC`, `HCPC`, `GDC`, `GOC`, `SWE` …
    pub body: String,
    /// The registration number.
    pub number: String,
}

/// An organisation, as attested attributes name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganisationRef {
    /// Its name.
    pub name: String,
    /// Its ODS code, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods: Option<String>,
}

/// What was verified about the key's holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attributes {
    /// A patient (or any person acting for themselves).
    Person {
        /// Full name.
        name: String,
        /// Date of birth, `YYYY-MM-DD`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        birth_date: Option<String>,
        /// National health number.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        national_number: Option<NationalNumber>,
    },
    /// A registered professional.
    Professional {
        /// Full name.
        name: String,
        /// Profession, e.g. `doctor`, `nurse`, `pharmacist`.
        profession: String,
        /// Professional registration.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registration: Option<Registration>,
        /// Employing organisation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        organisation: Option<OrganisationRef>,
    },
    /// An organisation's own key.
    Organisation(OrganisationRef),
    /// A device (a glucometer, say) and the person it acts for.
    Device {
        /// What it is.
        label: String,
        /// The person it belongs to.
        owner: ActorId,
    },
}

impl Attributes {
    /// The name to show.
    pub fn name(&self) -> &str {
        match self {
            Attributes::Person { name, .. } | Attributes::Professional { name, .. } => name,
            Attributes::Organisation(o) => &o.name,
            Attributes::Device { label, .. } => label,
        }
    }

    /// One line for tables: name, then what identifies them.
    pub fn summary(&self) -> String {
        match self {
            Attributes::Person {
                name,
                birth_date,
                national_number,
            } => {
                let mut s = name.clone();
                if let Some(d) = birth_date {
                    s.push_str(&format!(", born {d}"));
                }
                if let Some(n) = national_number {
                    s.push_str(&format!(", {} {}", n.system.to_uppercase(), n.value));
                }
                s
            }
            Attributes::Professional {
                name,
                profession,
                registration,
                organisation,
            } => {
                let mut s = format!("{name}, {profession}");
                if let Some(r) = registration {
                    s.push_str(&format!(" ({} {})", r.body, r.number));
                }
                if let Some(o) = organisation {
                    s.push_str(&format!(", {}", o.name));
                    if let Some(ods) = &o.ods {
                        s.push_str(&format!(" [ODS {ods}]"));
                    }
                }
                s
            }
            Attributes::Organisation(o) => match &o.ods {
                Some(ods) => format!("{} [ODS {ods}]", o.name),
                None => o.name.clone(),
            },
            Attributes::Device { label, owner } => format!("{label} (device of {owner})"),
        }
    }
}

/// How the issuer verified the holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// An OpenID Connect ID token from this issuer (URL) was verified.
    Oidc {
        /// The identity provider's issuer URL.
        issuer: String,
    },
    /// An operator checked the person in person.
    InPerson,
}

/// An identity assurance service's statement about a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// Format version ([`ATTESTATION_VERSION`]).
    pub v: u8,
    /// The identity assurance service that signs it.
    pub issuer: ActorId,
    /// The key attested.
    pub subject: ActorId,
    /// What was verified.
    pub attributes: Attributes,
    /// How sure the issuer is.
    pub level: AssuranceLevel,
    /// How it was verified.
    pub method: Method,
    /// Valid from (ms since the Unix epoch).
    pub not_before: Timestamp,
    /// Valid until.
    pub not_after: Timestamp,
    /// Random bytes chosen by the issuer, so two attestations never share an id.
    #[serde(with = "serde_bytes")]
    pub serial: Vec<u8>,
}

/// An attestation's id: BLAKE3 of its signed encoding. Text (`t-…`) in human-readable
/// formats, bytes in CBOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AttestationId(pub [u8; 32]);

impl Serialize for AttestationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_string())
        } else {
            serde_bytes::Bytes::new(&self.0).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for AttestationId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let b = serde_bytes::ByteBuf::deserialize(d)?;
            let arr: [u8; 32] = b
                .into_vec()
                .try_into()
                .map_err(|_| serde::de::Error::custom("an attestation id is 32 bytes"))?;
            Ok(AttestationId(arr))
        }
    }
}

impl std::fmt::Display for AttestationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "t-{}",
            data_encoding::BASE32_NOPAD
                .encode(&self.0)
                .to_ascii_lowercase()
        )
    }
}

impl std::str::FromStr for AttestationId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let body = s
            .strip_prefix("t-")
            .ok_or_else(|| format!("`{s}` is not an attestation id (t-…)"))?;
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|_| format!("`{s}` is not an attestation id (t-…)"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| format!("`{s}` is not an attestation id (t-…)"))?;
        Ok(AttestationId(arr))
    }
}

/// Why an attestation or revocation is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AttestationError {
    /// Not decodable, not canonical or too large.
    #[error("attestation: {0}")]
    Encoding(#[from] EntryError),
    /// Not signed by its issuer.
    #[error("attestation is not signed by its issuer: {0}")]
    Forged(#[from] KeyError),
    /// Unknown format version.
    #[error("unsupported attestation version {0}")]
    Version(u8),
    /// A text attribute is empty or too long.
    #[error("attestation field `{0}` is empty or too long")]
    Text(&'static str),
    /// The date of birth is not a `YYYY-MM-DD` date.
    #[error("date of birth `{0}` is not a YYYY-MM-DD date")]
    BirthDate(String),
    /// An NHS number that fails its check digit.
    #[error("`{0}` is not a valid NHS number")]
    NhsNumber(String),
    /// The validity period is empty or longer than [`MAX_VALIDITY_MS`].
    #[error("the validity period is empty or longer than ten years")]
    Period,
    /// An issuer attesting itself.
    #[error("an issuer cannot attest its own key")]
    SelfAttested,
    /// The serial is not 16 bytes.
    #[error("the serial must be 16 bytes")]
    Serial,
}

/// An attestation with its issuer's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAttestation {
    /// The statement.
    pub attestation: Attestation,
    /// The issuer's signature over its canonical encoding.
    pub sig: Sig,
}

fn text(field: &'static str, s: &str) -> Result<(), AttestationError> {
    if s.trim().is_empty() || s.len() > MAX_ATTRIBUTE_TEXT {
        return Err(AttestationError::Text(field));
    }
    Ok(())
}

/// Whether `s` is a valid ten-digit NHS number (modulus 11 check digit).
pub fn valid_nhs_number(s: &str) -> bool {
    let digits: Vec<u32> = s
        .chars()
        .filter(|c| *c != ' ')
        .map(|c| c.to_digit(10))
        .collect::<Option<_>>()
        .unwrap_or_default();
    if digits.len() != 10 {
        return false;
    }
    let sum: u32 = digits[..9]
        .iter()
        .enumerate()
        .map(|(i, d)| d * (10 - i as u32))
        .sum();
    let check = 11 - sum % 11;
    let check = if check == 11 { 0 } else { check };
    check != 10 && check == digits[9]
}

fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) => {
            let days = match m {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
                2 => 28,
                _ => return false,
            };
            (1800..=9999).contains(&y) && (1..=days).contains(&d)
        }
        _ => false,
    }
}

impl Attestation {
    /// Checks everything that needs no signature: version, texts, dates, numbers, period.
    pub fn check(&self) -> Result<(), AttestationError> {
        if self.v != ATTESTATION_VERSION {
            return Err(AttestationError::Version(self.v));
        }
        if self.issuer == self.subject {
            return Err(AttestationError::SelfAttested);
        }
        if self.serial.len() != 16 {
            return Err(AttestationError::Serial);
        }
        if self.not_after <= self.not_before || self.not_after - self.not_before > MAX_VALIDITY_MS {
            return Err(AttestationError::Period);
        }
        if let Method::Oidc { issuer } = &self.method {
            text("method.issuer", issuer)?;
        }
        match &self.attributes {
            Attributes::Person {
                name,
                birth_date,
                national_number,
            } => {
                text("name", name)?;
                if let Some(d) = birth_date {
                    if !valid_date(d) {
                        return Err(AttestationError::BirthDate(d.clone()));
                    }
                }
                if let Some(n) = national_number {
                    text("national_number.system", &n.system)?;
                    text("national_number.value", &n.value)?;
                    if n.system.eq_ignore_ascii_case("nhs") && !valid_nhs_number(&n.value) {
                        return Err(AttestationError::NhsNumber(n.value.clone()));
                    }
                }
            }
            Attributes::Professional {
                name,
                profession,
                registration,
                organisation,
            } => {
                text("name", name)?;
                text("profession", profession)?;
                if let Some(r) = registration {
                    text("registration.body", &r.body)?;
                    text("registration.number", &r.number)?;
                }
                if let Some(o) = organisation {
                    check_org(o)?;
                }
            }
            Attributes::Organisation(o) => check_org(o)?,
            Attributes::Device { label, .. } => text("label", label)?,
        }
        Ok(())
    }

    /// Signs the attestation with the issuer's key (which must be `self.issuer`'s).
    pub fn sign(self, issuer: &Keypair) -> Result<SignedAttestation, AttestationError> {
        self.check()?;
        let sig = issuer.sign(Domain::Attestation, &to_cbor(&self));
        Ok(SignedAttestation {
            attestation: self,
            sig,
        })
    }

    /// Whether `t` is within the validity period.
    pub fn valid_at(&self, t: Timestamp) -> bool {
        self.not_before <= t && t <= self.not_after
    }
}

/// The bytes of the unpadded base64url text form of a signed attestation or revocation,
/// bounded before decoding.
fn from_base64url(text: &str) -> Result<Vec<u8>, AttestationError> {
    let text = text.trim();
    if text.len() > MAX_ATTESTATION_BYTES * 4 / 3 + 4 {
        return Err(EntryError::TooLarge(text.len()).into());
    }
    Ok(data_encoding::BASE64URL_NOPAD
        .decode(text.as_bytes())
        .map_err(|e| EntryError::Malformed(format!("not base64url: {e}")))?)
}

fn check_org(o: &OrganisationRef) -> Result<(), AttestationError> {
    text("organisation.name", &o.name)?;
    if let Some(ods) = &o.ods {
        text("organisation.ods", ods)?;
        if ods.len() > 16 || !ods.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(AttestationError::Text("organisation.ods"));
        }
    }
    Ok(())
}

impl SignedAttestation {
    /// The canonical encoding as unpadded base64url text (for JSON, config files, links).
    pub fn to_text(&self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(&self.encode())
    }

    /// Decodes and verifies the text form of [`SignedAttestation::to_text`].
    pub fn from_text(text: &str) -> Result<Self, AttestationError> {
        Self::decode(&from_base64url(text)?)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// The id.
    pub fn id(&self) -> AttestationId {
        AttestationId(*blake3::hash(&self.encode()).as_bytes())
    }

    /// Checks the statement and the issuer's signature.
    pub fn verify(&self) -> Result<(), AttestationError> {
        self.attestation.check()?;
        keys::verify(
            &self.attestation.issuer,
            Domain::Attestation,
            &to_cbor(&self.attestation),
            &self.sig,
        )?;
        Ok(())
    }

    /// Decodes (bounded, canonical only) and verifies an untrusted attestation.
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestationError> {
        if bytes.len() > MAX_ATTESTATION_BYTES {
            return Err(EntryError::TooLarge(bytes.len()).into());
        }
        let a: SignedAttestation = from_cbor_canonical(bytes)?;
        a.verify()?;
        Ok(a)
    }
}

/// An issuer's withdrawal of an attestation it signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The issuer (must be the attestation's).
    pub issuer: ActorId,
    /// The attestation withdrawn.
    pub attestation: AttestationId,
    /// The key it was about.
    pub subject: ActorId,
    /// When.
    pub time: Timestamp,
    /// Why.
    pub reason: String,
}

/// A revocation with its issuer's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRevocation {
    /// The statement.
    pub revocation: Revocation,
    /// The issuer's signature.
    pub sig: Sig,
}

impl Revocation {
    /// Signs the revocation with the issuer's key.
    pub fn sign(self, issuer: &Keypair) -> Result<SignedRevocation, AttestationError> {
        text("reason", &self.reason)?;
        let sig = issuer.sign(Domain::AttestationRevocation, &to_cbor(&self));
        Ok(SignedRevocation {
            revocation: self,
            sig,
        })
    }
}

impl SignedRevocation {
    /// The canonical encoding as unpadded base64url text.
    pub fn to_text(&self) -> String {
        data_encoding::BASE64URL_NOPAD.encode(&self.encode())
    }

    /// Decodes and verifies the text form of [`SignedRevocation::to_text`].
    pub fn from_text(text: &str) -> Result<Self, AttestationError> {
        Self::decode(&from_base64url(text)?)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(self)
    }

    /// Checks the issuer's signature.
    pub fn verify(&self) -> Result<(), AttestationError> {
        text("reason", &self.revocation.reason)?;
        keys::verify(
            &self.revocation.issuer,
            Domain::AttestationRevocation,
            &to_cbor(&self.revocation),
            &self.sig,
        )?;
        Ok(())
    }

    /// Decodes (bounded, canonical only) and verifies an untrusted revocation.
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestationError> {
        if bytes.len() > MAX_ATTESTATION_BYTES {
            return Err(EntryError::TooLarge(bytes.len()).into());
        }
        let r: SignedRevocation = from_cbor_canonical(bytes)?;
        r.verify()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::key;

    fn professional(issuer: &Keypair, subject: &ActorId) -> Attestation {
        Attestation {
            v: ATTESTATION_VERSION,
            issuer: issuer.actor(),
            subject: *subject,
            attributes: Attributes::Professional {
                name: "Rena Patel".into(),
                profession: "doctor".into(),
                registration: Some(Registration {
                    body: "GMC".into(),
                    number: "7123456".into(),
                }),
                organisation: Some(OrganisationRef {
                    name: "Leeds Teaching Hospitals NHS Trust".into(),
                    ods: Some("RR8".into()),
                }),
            },
            level: AssuranceLevel::P9,
            method: Method::Oidc {
                issuer: "https://auth.login.nhs.uk".into(),
            },
            not_before: 1_000,
            not_after: 2_000,
            serial: vec![1; 16],
        }
    }

    #[test]
    fn nhs_numbers_are_checked_by_their_modulus_11_digit() {
        assert!(valid_nhs_number("9434765919"));
        assert!(valid_nhs_number("943 476 5919"));
        assert!(!valid_nhs_number("9434765918"), "wrong check digit");
        assert!(!valid_nhs_number("943476591"), "nine digits");
        assert!(!valid_nhs_number("94347659x9"));
    }

    #[test]
    fn a_signed_attestation_decodes_to_itself_and_a_changed_one_does_not_verify() {
        let (ais, patel) = (key(1, "AIS"), key(1, "Patel"));
        let a = professional(&ais, &patel.actor()).sign(&ais).unwrap();
        let bytes = a.encode();
        assert_eq!(SignedAttestation::decode(&bytes).unwrap(), a);
        assert_eq!(a.id().to_string().parse::<AttestationId>().unwrap(), a.id());
        let mut changed = a.clone();
        changed.attestation.not_after = 9_000;
        assert!(matches!(
            SignedAttestation::decode(&changed.encode()),
            Err(AttestationError::Forged(_))
        ));
        // Signed by someone other than the issuer it names.
        let mallory = key(1, "Mallory");
        let mut by_mallory = professional(&ais, &patel.actor());
        by_mallory.issuer = ais.actor();
        let sig = mallory.sign(Domain::Attestation, &to_cbor(&by_mallory));
        let forged = SignedAttestation {
            attestation: by_mallory,
            sig,
        };
        assert!(matches!(
            SignedAttestation::decode(&forged.encode()),
            Err(AttestationError::Forged(_))
        ));
        assert!(SignedAttestation::decode(&vec![0u8; MAX_ATTESTATION_BYTES + 1]).is_err());
        assert!(SignedAttestation::decode(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn malformed_statements_are_refused_before_signing() {
        let (ais, george) = (key(2, "AIS"), key(2, "George"));
        let base = professional(&ais, &george.actor());
        let with = |f: &dyn Fn(&mut Attestation)| {
            let mut a = base.clone();
            f(&mut a);
            a.sign(&ais).unwrap_err()
        };
        assert_eq!(
            with(&|a| a.subject = a.issuer),
            AttestationError::SelfAttested
        );
        assert_eq!(
            with(&|a| a.not_after = a.not_before),
            AttestationError::Period
        );
        assert_eq!(
            with(&|a| a.not_after = a.not_before + MAX_VALIDITY_MS + 1),
            AttestationError::Period
        );
        assert_eq!(with(&|a| a.serial = vec![1; 3]), AttestationError::Serial);
        assert_eq!(with(&|a| a.v = 9), AttestationError::Version(9));
        let person = |birth: &'static str, nhs: &'static str| {
            move |a: &mut Attestation| {
                a.attributes = Attributes::Person {
                    name: "George Jones".into(),
                    birth_date: Some(birth.into()),
                    national_number: Some(NationalNumber {
                        system: "nhs".into(),
                        value: nhs.into(),
                    }),
                }
            }
        };
        assert_eq!(
            with(&person("1948-02-30", "9434765919")),
            AttestationError::BirthDate("1948-02-30".into())
        );
        assert_eq!(
            with(&person("1948-02-03", "9434765918")),
            AttestationError::NhsNumber("9434765918".into())
        );
        assert_eq!(
            with(
                &|a| a.attributes = Attributes::Organisation(OrganisationRef {
                    name: "Leeds".into(),
                    ods: Some("RR8; DROP".into()),
                })
            ),
            AttestationError::Text("organisation.ods")
        );
        assert_eq!(
            with(&|a| a.attributes = Attributes::Device {
                label: "x".repeat(MAX_ATTRIBUTE_TEXT + 1),
                owner: george.actor(),
            }),
            AttestationError::Text("label")
        );
    }

    #[test]
    fn levels_map_to_nist_ial_and_parse_either_way() {
        assert_eq!(AssuranceLevel::ALL.map(AssuranceLevel::ial), [1, 2, 3]);
        assert_eq!("ial3".parse::<AssuranceLevel>(), Ok(AssuranceLevel::P9));
        assert_eq!("p5".parse::<AssuranceLevel>(), Ok(AssuranceLevel::P5));
        assert!("P7".parse::<AssuranceLevel>().is_err());
        assert!(AssuranceLevel::P0 < AssuranceLevel::P5 && AssuranceLevel::P5 < AssuranceLevel::P9);
    }
}
