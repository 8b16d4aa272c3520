//! Emergency summary shares: a time-limited link (and QR code) that shows a clinician without
//! cophr the patient's about-me, alerts, allergies, medications and problems, as an
//! International Patient Summary (a FHIR R4 `Bundle` of type `document`) rendered readably in
//! the browser. The model is SMART Health Links': the link carries the decryption key in its
//! fragment (`https://HOST/s/<id>#<key>`), which browsers never send to the server, so the
//! host that serves the link holds and sees only ciphertext.
//!
//! - [`summary`] builds the document from the record as the patient sees it: exactly the
//!   five [`CATEGORIES`], nothing else (no results, notes, documents or messages).
//! - [`seal`] encrypts it as a JWE compact serialisation with `alg` `dir` and `enc`
//!   `A256GCM` (RFC 7516/7518, as SMART Health Links use): a random 256-bit key, a random
//!   96-bit IV, the protected header's base64url text as the associated data; the `aes-gcm`
//!   crate does the cryptography. [`open`] is the reverse (tampering fails it).
//! - [`Share`] is what the serving node keeps beside the ciphertext: the id (16 random
//!   bytes, base64url), record, created, expires (at most [`MAX_SHARE_MS`] later), label,
//!   whether the patient ended it, and how often it was opened.
//! - [`link`] and [`shlink`] make the link to give: a plain `https://` link, and a
//!   `shlink:/` payload (flag `U`: the URL returns the encrypted file directly).
//!
//! Nothing here does I/O; time, ids, keys and IVs come in as arguments.

use aes_gcm::aead::{Aead, KeyInit, Payload as AeadPayload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use crate::category::Category;
use crate::entry::Timestamp;
use crate::fhir::{self, ExportMeta, IdPolicy};
use crate::fold::{self, Viewer};
use crate::ids::{ActorId, EntryId, RecordId};
use crate::keys::Keypair;
use crate::record::Record;
use crate::schema;
use crate::value::Value;

/// The categories a summary shows, in this order; nothing else is ever included.
pub const CATEGORIES: [Category; 5] = [
    Category::AboutMe,
    Category::Alerts,
    Category::Allergies,
    Category::Medications,
    Category::Problems,
];
/// The longest a share may stay open.
pub const MAX_SHARE_MS: u64 = 7 * 24 * 3600 * 1000;
/// The shortest.
pub const MIN_SHARE_MS: u64 = 60 * 1000;
/// The lifetime when none is asked for.
pub const DEFAULT_SHARE_MS: u64 = 24 * 3600 * 1000;
/// Longest label.
pub const MAX_LABEL: usize = 200;
/// Most items shown per section (the newest are kept).
pub const MAX_SECTION_ITEMS: usize = 200;
/// Largest summary (the plaintext Bundle's JSON bytes).
pub const MAX_PLAINTEXT: usize = 512 * 1024;
/// Largest encrypted summary (JWE text) accepted by [`open`].
pub const MAX_JWE: usize = MAX_PLAINTEXT / 3 * 4 + 1024;
/// Most shares a node keeps per record (ended and expired ones are dropped first).
pub const MAX_SHARES: usize = 32;
/// Bytes of a share id.
pub const ID_BYTES: usize = 16;
/// Bytes of a share key.
pub const KEY_BYTES: usize = 32;
/// Bytes of an AES-GCM IV.
pub const IV_BYTES: usize = 12;
/// Longest base URL a link is made from.
pub const MAX_BASE_URL: usize = 512;
/// The JWE protected header of every sealed summary.
pub const JWE_HEADER: &str = r#"{"alg":"dir","enc":"A256GCM","cty":"application/fhir+json"}"#;

/// LOINC: Patient summary Document.
pub const LOINC_PATIENT_SUMMARY: &str = "60591-5";

/// The IPS section of each category: (LOINC code, LOINC display, section title).
pub fn section_code(c: &Category) -> Option<(&'static str, &'static str, &'static str)> {
    Some(match c {
        Category::AboutMe => (
            "81338-6",
            "Patient Goals, preferences, and priorities for care experience",
            "About me",
        ),
        Category::Alerts => ("104605-1", "Alert", "Alerts"),
        Category::Allergies => (
            "48765-2",
            "Allergies and adverse reactions Document",
            "Allergies and intolerances",
        ),
        Category::Medications => (
            "10160-0",
            "History of Medication use Narrative",
            "Medications",
        ),
        Category::Problems => ("11450-4", "Problem list - Reported", "Problems"),
        _ => return None,
    })
}

/// Why a share, summary or sealed summary is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareError {
    /// The lifetime is outside [`MIN_SHARE_MS`]..=[`MAX_SHARE_MS`].
    #[error("a share lasts from 1 minute to 7 days")]
    Lifetime,
    /// The label is too long or has control characters.
    #[error("the label is longer than {MAX_LABEL} characters or has control characters")]
    Label,
    /// The base URL is not an http(s) URL without fragment, query or user info.
    #[error("the base URL must be http:// or https://, without a query or fragment")]
    BaseUrl,
    /// The summary is larger than [`MAX_PLAINTEXT`].
    #[error("the summary is {0} bytes, more than the {MAX_PLAINTEXT}-byte limit")]
    TooLarge(usize),
    /// Not a share id (22 base64url characters, 16 bytes).
    #[error("not a share id")]
    Id,
    /// Not a share key (43 base64url characters, 32 bytes).
    #[error("not a share key")]
    Key,
    /// A malformed JWE.
    #[error("malformed encrypted summary: {0}")]
    Malformed(&'static str),
    /// Decryption failed: the wrong key, or the ciphertext was altered.
    #[error("the summary does not decrypt with this key (wrong key or altered)")]
    Decrypt,
}

/// A share's id: 16 random bytes, shown as 22 base64url characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareId(pub [u8; ID_BYTES]);

impl std::fmt::Display for ShareId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&BASE64URL_NOPAD.encode(&self.0))
    }
}

impl std::fmt::Debug for ShareId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShareId({self})")
    }
}

impl std::str::FromStr for ShareId {
    type Err = ShareError;
    fn from_str(s: &str) -> Result<Self, ShareError> {
        let s = s.trim();
        if s.len() != 22 {
            return Err(ShareError::Id);
        }
        let bytes = BASE64URL_NOPAD
            .decode(s.as_bytes())
            .map_err(|_| ShareError::Id)?;
        let id: [u8; ID_BYTES] = bytes.try_into().map_err(|_| ShareError::Id)?;
        // Only the canonical spelling (the last character's spare bits zero).
        (ShareId(id).to_string() == s)
            .then_some(ShareId(id))
            .ok_or(ShareError::Id)
    }
}

impl Serialize for ShareId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ShareId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl ShareId {
    /// The pseudonymous actor that opens this share in the audit trail: a key derived
    /// from the id, so every opening of one share is shown as the same "someone with the
    /// link" and no real actor is implied.
    pub fn opener(&self) -> ActorId {
        let seed = blake3::derive_key("cophr 2026 emergency summary share opener", &self.0);
        Keypair::from_secret(&seed).actor()
    }
}

/// A share's key (never stored by the serving node, never logged).
#[derive(Clone, PartialEq, Eq)]
pub struct ShareKey(pub [u8; KEY_BYTES]);

impl std::fmt::Debug for ShareKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ShareKey(…)")
    }
}

impl Drop for ShareKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl ShareKey {
    /// The key as 43 base64url characters (the link's fragment).
    pub fn to_text(&self) -> String {
        BASE64URL_NOPAD.encode(&self.0)
    }

    /// Parses [`ShareKey::to_text`].
    pub fn from_text(s: &str) -> Result<Self, ShareError> {
        let bytes = BASE64URL_NOPAD
            .decode(s.trim().as_bytes())
            .map_err(|_| ShareError::Key)?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| ShareError::Key)?;
        Ok(ShareKey(key))
    }
}

/// Where a share stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShareStatus {
    /// Opens.
    Active,
    /// Past its expiry.
    Expired,
    /// Ended early by the patient.
    Ended,
}

impl ShareStatus {
    /// The name shown.
    pub fn name(self) -> &'static str {
        match self {
            ShareStatus::Active => "active",
            ShareStatus::Expired => "expired",
            ShareStatus::Ended => "ended",
        }
    }
}

/// What the serving node keeps about a share (beside its ciphertext; never the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    /// The id.
    pub id: ShareId,
    /// The record summarised.
    pub record: RecordId,
    /// When made.
    pub created: Timestamp,
    /// When it stops opening.
    pub expires: Timestamp,
    /// What it is for ("A&E, St James's").
    pub label: Option<String>,
    /// The items shown (what an opening touched, for the audit trail).
    pub entries: Vec<EntryId>,
    /// When the patient ended it, if they did.
    pub ended: Option<Timestamp>,
    /// How often the encrypted summary was fetched.
    pub opens: u64,
    /// The last time it was.
    pub last_opened: Option<Timestamp>,
}

impl Share {
    /// A share of `record` made `now`, for `lifetime` milliseconds.
    ///
    /// # Errors
    /// A lifetime outside the bounds, or a bad label.
    pub fn new(
        id: ShareId,
        record: RecordId,
        now: Timestamp,
        lifetime: u64,
        label: Option<String>,
        entries: Vec<EntryId>,
    ) -> Result<Share, ShareError> {
        if !(MIN_SHARE_MS..=MAX_SHARE_MS).contains(&lifetime) {
            return Err(ShareError::Lifetime);
        }
        let label = label.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty());
        if let Some(l) = &label {
            if l.chars().count() > MAX_LABEL || l.chars().any(char::is_control) {
                return Err(ShareError::Label);
            }
        }
        let mut entries = entries;
        entries.truncate(crate::audit::MAX_AUDIT_ENTRIES);
        Ok(Share {
            id,
            record,
            created: now,
            expires: now.saturating_add(lifetime),
            label,
            entries,
            ended: None,
            opens: 0,
            last_opened: None,
        })
    }

    /// Its canonical CBOR (what a patient hands the home host with the ciphertext).
    pub fn encode(&self) -> Vec<u8> {
        crate::entry::to_cbor(self)
    }

    /// Decodes [`Share::encode`]'s bytes (canonical only; bounds are [`check_hosted`]'s).
    pub fn decode(bytes: &[u8]) -> Result<Share, crate::entry::EntryError> {
        crate::entry::from_cbor_canonical(bytes)
    }

    /// Where it stands at `now`.
    pub fn status(&self, now: Timestamp) -> ShareStatus {
        if self.ended.is_some() {
            ShareStatus::Ended
        } else if now >= self.expires {
            ShareStatus::Expired
        } else {
            ShareStatus::Active
        }
    }

    /// Ends it (a second end keeps the first time).
    pub fn end(&mut self, now: Timestamp) {
        self.ended.get_or_insert(now);
    }

    /// Counts an opening.
    pub fn opened(&mut self, now: Timestamp) {
        self.opens = self.opens.saturating_add(1);
        self.last_opened = Some(now);
    }
}

/// Checks a base URL (`https://host[:port][/path]`), returning it without a trailing `/`.
pub fn check_base(base: &str) -> Result<&str, ShareError> {
    let b = base.trim().trim_end_matches('/');
    let rest = b
        .strip_prefix("https://")
        .or_else(|| b.strip_prefix("http://"))
        .ok_or(ShareError::BaseUrl)?;
    if b.len() > MAX_BASE_URL
        || rest.is_empty()
        || rest.starts_with('/')
        || rest
            .chars()
            .any(|c| matches!(c, '#' | '?' | '@' | '\\') || c.is_whitespace() || c.is_control())
    {
        return Err(ShareError::BaseUrl);
    }
    Ok(b)
}

/// The link to give: `BASE/s/<id>#<key>` (the key in the fragment, never sent to a server).
pub fn link(base: &str, id: &ShareId, key: &ShareKey) -> Result<String, ShareError> {
    let base = check_base(base)?;
    Ok(format!("{base}/s/{id}#{}", key.to_text()))
}

/// The SMART Health Link payload for the share: `shlink:/` and the base64url of
/// `{"url", "key", "exp", "flag": "U", "label"}` (`url` returns the JWE directly; `exp` in
/// seconds).
pub fn shlink(base: &str, share: &Share, key: &ShareKey) -> Result<String, ShareError> {
    let base = check_base(base)?;
    let mut p = json!({
        "url": format!("{base}/s/{}/blob", share.id),
        "key": key.to_text(),
        "exp": share.expires / 1000,
        "flag": "U",
    });
    if let Some(l) = &share.label {
        p["label"] = Json::String(l.chars().take(80).collect());
    }
    Ok(format!(
        "shlink:/{}",
        BASE64URL_NOPAD.encode(p.to_string().as_bytes())
    ))
}

/// Encrypts `plaintext` as a JWE compact serialisation (`dir`, `A256GCM`) under `key` with
/// the IV `iv` (random, never reused with a key: each share has its own key).
///
/// # Errors
/// A plaintext larger than [`MAX_PLAINTEXT`].
pub fn seal(key: &ShareKey, iv: [u8; IV_BYTES], plaintext: &[u8]) -> Result<String, ShareError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(ShareError::TooLarge(plaintext.len()));
    }
    let header = BASE64URL_NOPAD.encode(JWE_HEADER.as_bytes());
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.0));
    let mut sealed = cipher
        .encrypt(
            Nonce::from_slice(&iv),
            AeadPayload {
                msg: plaintext,
                aad: header.as_bytes(),
            },
        )
        .map_err(|_| ShareError::TooLarge(plaintext.len()))?;
    let tag = sealed.split_off(sealed.len() - 16);
    Ok(format!(
        "{header}..{}.{}.{}",
        BASE64URL_NOPAD.encode(&iv),
        BASE64URL_NOPAD.encode(&sealed),
        BASE64URL_NOPAD.encode(&tag)
    ))
}

/// Checks what a patient hands their home host to serve: a share of `record` that is
/// active at `now` and within every bound ([`Share::new`]'s, and entries at most
/// [`crate::audit::MAX_AUDIT_ENTRIES`]), and a sealed summary of the form [`seal`] makes
/// (at most [`MAX_JWE`] bytes; the host cannot decrypt it and does not try).
///
/// # Errors
/// Which bound or form is broken.
pub fn check_hosted(
    share: &Share,
    sealed: &[u8],
    record: &RecordId,
    now: Timestamp,
) -> Result<(), ShareError> {
    if share.record != *record {
        return Err(ShareError::Malformed("a share of another record"));
    }
    let lifetime = share.expires.saturating_sub(share.created);
    if !(MIN_SHARE_MS..=MAX_SHARE_MS).contains(&lifetime) {
        return Err(ShareError::Lifetime);
    }
    if share.status(now) != ShareStatus::Active || share.created > now.saturating_add(MIN_SHARE_MS)
    {
        return Err(ShareError::Malformed("not active now"));
    }
    if let Some(l) = &share.label {
        if l.is_empty() || l.chars().count() > MAX_LABEL || l.chars().any(char::is_control) {
            return Err(ShareError::Label);
        }
    }
    if share.entries.len() > crate::audit::MAX_AUDIT_ENTRIES {
        return Err(ShareError::Malformed("too many entries"));
    }
    if sealed.len() > MAX_JWE {
        return Err(ShareError::Malformed("too large"));
    }
    let text = std::str::from_utf8(sealed).map_err(|_| ShareError::Malformed("not text"))?;
    let parts: Vec<&str> = text.split('.').collect();
    let [header, "", iv, ct, tag] = parts[..] else {
        return Err(ShareError::Malformed("not a dir JWE in compact form"));
    };
    if header != BASE64URL_NOPAD.encode(JWE_HEADER.as_bytes()) {
        return Err(ShareError::Malformed("not dir + A256GCM"));
    }
    let len = |s: &str| BASE64URL_NOPAD.decode(s.as_bytes()).map(|b| b.len());
    match (len(iv), len(ct), len(tag)) {
        (Ok(IV_BYTES), Ok(_), Ok(16)) => Ok(()),
        _ => Err(ShareError::Malformed("bad IV, ciphertext or tag")),
    }
}

/// Decrypts a JWE made by [`seal`] (only `dir` + `A256GCM` is accepted).
///
/// # Errors
/// Malformed input, or a wrong key or altered text ([`ShareError::Decrypt`]).
pub fn open(key: &ShareKey, jwe: &[u8]) -> Result<Vec<u8>, ShareError> {
    if jwe.len() > MAX_JWE {
        return Err(ShareError::Malformed("too large"));
    }
    let text = std::str::from_utf8(jwe).map_err(|_| ShareError::Malformed("not text"))?;
    let parts: Vec<&str> = text.trim().split('.').collect();
    let [header, enc_key, iv, ct, tag] = parts[..] else {
        return Err(ShareError::Malformed("not five parts"));
    };
    let d = |s: &str| {
        BASE64URL_NOPAD
            .decode(s.as_bytes())
            .map_err(|_| ShareError::Malformed("bad base64url"))
    };
    let h: Json =
        serde_json::from_slice(&d(header)?).map_err(|_| ShareError::Malformed("bad header"))?;
    if h["alg"] != "dir" || h["enc"] != "A256GCM" || h.get("zip").is_some() {
        return Err(ShareError::Malformed("not dir + A256GCM"));
    }
    if !enc_key.is_empty() {
        return Err(ShareError::Malformed("an encrypted key with dir"));
    }
    let iv = d(iv)?;
    let tag = d(tag)?;
    if iv.len() != IV_BYTES || tag.len() != 16 {
        return Err(ShareError::Malformed("bad IV or tag length"));
    }
    let mut msg = d(ct)?;
    msg.extend_from_slice(&tag);
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.0));
    cipher
        .decrypt(
            Nonce::from_slice(&iv),
            AeadPayload {
                msg: &msg,
                aad: header.as_bytes(),
            },
        )
        .map_err(|_| ShareError::Decrypt)
}

/// A summary made by [`summary`].
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The IPS document (a FHIR `Bundle` of type `document`).
    pub bundle: Json,
    /// The same, as plain text for people.
    pub text: String,
    /// The items shown.
    pub entries: Vec<EntryId>,
}

impl Summary {
    /// The Bundle's JSON bytes (what [`seal`] encrypts).
    ///
    /// # Errors
    /// A summary larger than [`MAX_PLAINTEXT`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, ShareError> {
        let bytes = serde_json::to_vec(&self.bundle).unwrap_or_default();
        if bytes.len() > MAX_PLAINTEXT {
            return Err(ShareError::TooLarge(bytes.len()));
        }
        Ok(bytes)
    }
}

/// A `urn:uuid:` from 16 bytes.
fn urn_uuid(b: &[u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Milliseconds since the epoch as a FHIR `instant` (UTC).
pub fn instant(t: Timestamp) -> String {
    let secs = t / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        t % 1000
    )
}

/// Escapes text for XHTML.
fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// The lines a person reads for one item.
fn item_lines(category: &Category, body: &Value) -> Vec<String> {
    if *category == Category::AboutMe {
        let lines: Vec<String> = schema::schema(category)
            .map(|s| {
                s.fields
                    .iter()
                    .filter_map(|f| body.get(f.name).and_then(Value::as_text))
                    .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                    .filter(|t| !t.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if !lines.is_empty() {
            return lines;
        }
    }
    vec![schema::summary(category, body)]
}

/// The emergency summary of `record` as `viewer` (the patient) sees it at `now`: an IPS
/// document Bundle (a Composition with one section per category in [`CATEGORIES`], each with
/// a narrative and its resources; the Patient; the resources) and its plain text.
/// `doc_id` names the document (its `identifier`). Sections with nothing say so (with an
/// `emptyReason`), as IPS asks of the required allergies, medications and problems.
pub fn summary(
    record: &Record,
    viewer: &Viewer,
    now: Timestamp,
    doc_id: &[u8; ID_BYTES],
) -> Summary {
    let rid = record.id();
    let state = fold::current(record, viewer);
    let patient_name = record
        .latest_profile(&rid)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| "Unnamed patient".to_owned());
    let patient_url = {
        let h = blake3::derive_key("cophr 2026 share patient", rid.as_bytes());
        let mut b = [0u8; 16];
        b.copy_from_slice(&h[..16]);
        urn_uuid(&b)
    };
    let patient = json!({
        "resourceType": "Patient",
        "id": rid.to_string(),
        "identifier": [{"system": "https://cophr.invalid/actor", "value": rid.to_string()}],
        "name": [{"text": patient_name}],
    });
    let mut text = format!(
        "Emergency summary: {patient_name}\nMade {} from the patient's own record (cophr).\n",
        instant(now)
    );
    let mut sections = Vec::new();
    let mut resources: Vec<(String, Json)> = Vec::new();
    let mut entries = Vec::new();
    for c in &CATEGORIES {
        let Some((code, display, title)) = section_code(c) else {
            continue;
        };
        let mut items: Vec<&fold::Item> = state.in_category(c).collect();
        // The newest first, bounded.
        items.sort_by_key(|i| std::cmp::Reverse((i.updated, i.id)));
        items.truncate(MAX_SECTION_ITEMS);
        text.push_str(&format!("\n{title}\n"));
        let mut lis = String::new();
        let mut refs = Vec::new();
        for i in &items {
            entries.push(i.id);
            for l in item_lines(c, &i.body) {
                text.push_str(&format!("  - {l}\n"));
                lis.push_str(&format!("<li>{}</li>", xml_escape(&l)));
            }
            let Ok(mut r) = fhir::export(
                &rid,
                &i.id,
                c,
                &i.body,
                &ExportMeta {
                    ids: IdPolicy::Entry,
                    link_patient: true,
                },
            ) else {
                continue;
            };
            // References resolve inside the document: the patient by its fullUrl.
            for el in ["subject", "patient"] {
                if r.get(el).is_some_and(|v| v["reference"].as_str().is_some()) {
                    r[el]["reference"] = Json::String(patient_url.clone());
                }
            }
            let url = fhir::full_url(&i.id, &Value::Null);
            refs.push(json!({"reference": url}));
            resources.push((url, r));
        }
        let mut section = json!({
            "title": title,
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        });
        if items.is_empty() {
            text.push_str("  (none recorded)\n");
            section["text"] = json!({
                "status": "generated",
                "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>None recorded.</p></div>",
            });
            section["emptyReason"] = json!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                "code": "unavailable",
                "display": "Unavailable",
            }]});
        } else {
            section["text"] = json!({
                "status": "generated",
                "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><ul>{lis}</ul></div>"),
            });
            if !refs.is_empty() {
                section["entry"] = Json::Array(refs);
            }
        }
        sections.push(section);
    }
    let composition_url = {
        let mut b = *doc_id;
        b[0] ^= 0xff;
        urn_uuid(&b)
    };
    let composition = json!({
        "resourceType": "Composition",
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": LOINC_PATIENT_SUMMARY, "display": "Patient summary Document"}]},
        "subject": {"reference": patient_url, "display": patient_name},
        "date": instant(now),
        "author": [{"reference": patient_url, "display": patient_name}],
        "title": format!("Emergency summary: {patient_name}"),
        "confidentiality": "R",
        "section": sections,
    });
    let mut all = vec![
        json!({"fullUrl": composition_url, "resource": composition}),
        json!({"fullUrl": patient_url, "resource": patient}),
    ];
    all.extend(
        resources
            .into_iter()
            .map(|(u, r)| json!({"fullUrl": u, "resource": r})),
    );
    let bundle = json!({
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": urn_uuid(doc_id)},
        "type": "document",
        "timestamp": instant(now),
        "entry": all,
    });
    Summary {
        bundle,
        text,
        entries,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::Payload;
    use crate::testkit::{text_body, Fixture};

    fn fixture() -> Fixture {
        let mut f = Fixture::new(7, "George Jones");
        let p = f.patient.clone();
        let add = |f: &mut Fixture, c: Category, pairs: &[(&str, &str)]| {
            f.create(&p, c, text_body(pairs)).unwrap();
        };
        add(
            &mut f,
            Category::Allergies,
            &[("agent", "Penicillin"), ("reaction", "rash")],
        );
        add(
            &mut f,
            Category::Medications,
            &[("medication", "Metformin 500 mg")],
        );
        add(
            &mut f,
            Category::Problems,
            &[("problem", "Type 2 diabetes")],
        );
        add(&mut f, Category::Alerts, &[("alert", "Lives alone")]);
        add(
            &mut f,
            Category::AboutMe,
            &[("thing-1", "I am hard of hearing")],
        );
        add(
            &mut f,
            Category::LabResults,
            &[("test", "HbA1c SECRETLAB"), ("result", "48")],
        );
        add(
            &mut f,
            Category::FamilyHistory,
            &[("condition", "SECRETFAMILY"), ("relative", "mother")],
        );
        f
    }

    fn make() -> (Fixture, Summary) {
        let f = fixture();
        let v = f.record.viewer(&f.patient.actor(), f.now);
        let s = summary(&f.record, &v, f.now, &[3; 16]);
        (f, s)
    }

    #[test]
    fn the_summary_is_an_ips_document_of_exactly_the_five_categories() {
        let (f, s) = make();
        let b = &s.bundle;
        assert_eq!(b["resourceType"], "Bundle");
        assert_eq!(b["type"], "document");
        assert!(b["identifier"]["value"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:"));
        let entries = b["entry"].as_array().unwrap();
        let comp = &entries[0]["resource"];
        assert_eq!(comp["resourceType"], "Composition");
        assert_eq!(comp["type"]["coding"][0]["code"], LOINC_PATIENT_SUMMARY);
        let codes: Vec<&str> = comp["section"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["code"]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(
            codes,
            ["81338-6", "104605-1", "48765-2", "10160-0", "11450-4"]
        );
        // Every section entry resolves inside the Bundle; the patient too.
        let urls: Vec<&str> = entries
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap())
            .collect();
        for sec in comp["section"].as_array().unwrap() {
            for r in sec["entry"].as_array().unwrap() {
                assert!(urls.contains(&r["reference"].as_str().unwrap()));
            }
        }
        assert!(urls.contains(&comp["subject"]["reference"].as_str().unwrap()));
        let types: Vec<&str> = entries
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "Composition",
                "Patient",
                "Basic",
                "Flag",
                "AllergyIntolerance",
                "MedicationStatement",
                "Condition"
            ]
        );
        let all = b.to_string();
        for shown in [
            "Penicillin",
            "Metformin 500 mg",
            "Type 2 diabetes",
            "Lives alone",
            "hard of hearing",
            "George Jones",
        ] {
            assert!(all.contains(shown), "{shown}");
            assert!(s.text.contains(shown), "{shown}: {}", s.text);
        }
        for hidden in ["SECRETLAB", "SECRETFAMILY", "HbA1c"] {
            assert!(!all.contains(hidden), "{hidden}");
            assert!(!s.text.contains(hidden), "{hidden}");
        }
        assert_eq!(s.entries.len(), 5);
        for e in &s.entries {
            let c = match &f.record.get(e).unwrap().entry().payload {
                Payload::Create { category, .. } => category.clone(),
                _ => panic!("not a create"),
            };
            assert!(CATEGORIES.contains(&c));
        }
    }

    #[test]
    fn an_empty_record_gives_empty_sections_with_a_reason() {
        let f = Fixture::new(8, "Ann");
        let v = f.record.viewer(&f.patient.actor(), f.now);
        let s = summary(&f.record, &v, f.now, &[1; 16]);
        let comp = &s.bundle["entry"][0]["resource"];
        for sec in comp["section"].as_array().unwrap() {
            assert!(sec.get("entry").is_none());
            assert_eq!(sec["emptyReason"]["coding"][0]["code"], "unavailable");
        }
        assert!(s.text.contains("none recorded"));
    }

    #[test]
    fn narratives_escape_what_people_wrote() {
        let mut f = Fixture::new(9, "Bob");
        let p = f.patient.clone();
        f.create(
            &p,
            Category::Allergies,
            text_body(&[("agent", "<script>alert(1)</script> & co")]),
        )
        .unwrap();
        let v = f.record.viewer(&p.actor(), f.now);
        let s = summary(&f.record, &v, f.now, &[1; 16]);
        let div = s.bundle["entry"][0]["resource"]["section"][2]["text"]["div"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(!div.contains("<script>"), "{div}");
        assert!(
            div.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; co"),
            "{div}"
        );
    }

    #[test]
    fn sealed_summaries_round_trip_and_tampering_fails() {
        let (_, s) = make();
        let key = ShareKey([7; 32]);
        let bytes = s.to_bytes().unwrap();
        let jwe = seal(&key, [1; 12], &bytes).unwrap();
        assert!(!jwe.contains("Penicillin"));
        assert_eq!(jwe.split('.').count(), 5);
        assert_eq!(open(&key, jwe.as_bytes()).unwrap(), bytes);
        // Another key fails.
        assert_eq!(
            open(&ShareKey([8; 32]), jwe.as_bytes()),
            Err(ShareError::Decrypt)
        );
        // Every part altered fails, never panics.
        let parts: Vec<&str> = jwe.split('.').collect();
        for i in [0, 2, 3, 4] {
            let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            let mut b = BASE64URL_NOPAD.decode(p[i].as_bytes()).unwrap();
            b[0] ^= 1;
            p[i] = BASE64URL_NOPAD.encode(&b);
            assert!(open(&key, p.join(".").as_bytes()).is_err(), "part {i}");
        }
        for junk in [&b""[..], b"....", b"a.b.c.d.e", &[0xff; 40][..]] {
            assert!(open(&key, junk).is_err());
        }
        assert!(matches!(
            seal(&key, [0; 12], &vec![b'x'; MAX_PLAINTEXT + 1]),
            Err(ShareError::TooLarge(_))
        ));
    }

    #[test]
    fn lifetimes_are_bounded_and_status_follows_time_and_end() {
        let rid = Fixture::new(1, "A").patient.actor();
        let id = ShareId([5; 16]);
        let t = 1_000_000;
        assert_eq!(
            Share::new(id, rid, t, MAX_SHARE_MS + 1, None, vec![]),
            Err(ShareError::Lifetime)
        );
        assert_eq!(
            Share::new(id, rid, t, 1000, None, vec![]),
            Err(ShareError::Lifetime)
        );
        assert_eq!(
            Share::new(id, rid, t, MIN_SHARE_MS, Some("x\u{7}".into()), vec![]),
            Err(ShareError::Label)
        );
        let mut s = Share::new(id, rid, t, MAX_SHARE_MS, Some(" A&E ".into()), vec![]).unwrap();
        assert_eq!(s.label.as_deref(), Some("A&E"));
        assert_eq!(s.status(t), ShareStatus::Active);
        assert_eq!(s.status(t + MAX_SHARE_MS - 1), ShareStatus::Active);
        assert_eq!(s.status(t + MAX_SHARE_MS), ShareStatus::Expired);
        s.end(t + 5);
        s.end(t + 9);
        assert_eq!(s.ended, Some(t + 5));
        assert_eq!(s.status(t + 6), ShareStatus::Ended);
    }

    #[test]
    fn ids_keys_and_links() {
        let id = ShareId([0xfb; 16]);
        let text = id.to_string();
        assert_eq!(text.len(), 22);
        assert_eq!(text.parse::<ShareId>().unwrap(), id);
        assert!("short".parse::<ShareId>().is_err());
        assert!("../../../../etc/passwd00".parse::<ShareId>().is_err());
        let key = ShareKey([9; 32]);
        assert_eq!(ShareKey::from_text(&key.to_text()).unwrap(), key);
        assert_eq!(format!("{key:?}"), "ShareKey(…)");
        let l = link("https://host.example/", &id, &key).unwrap();
        assert_eq!(l, format!("https://host.example/s/{id}#{}", key.to_text()));
        assert!(link("javascript:alert(1)", &id, &key).is_err());
        assert!(link("https://a.example/?q#", &id, &key).is_err());
        assert!(link("https://", &id, &key).is_err());
        let s = Share::new(
            id,
            Keypair::from_secret(&[1; 32]).actor(),
            0,
            MIN_SHARE_MS,
            None,
            vec![],
        );
        let s = s.unwrap();
        let sh = shlink("http://127.0.0.1:7380", &s, &key).unwrap();
        let p: Json = serde_json::from_slice(
            &BASE64URL_NOPAD
                .decode(sh.strip_prefix("shlink:/").unwrap().as_bytes())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(p["flag"], "U");
        assert_eq!(p["url"], format!("http://127.0.0.1:7380/s/{id}/blob"));
        // Openers are pseudonyms per share.
        assert_ne!(id.opener(), ShareId([1; 16]).opener());
    }

    #[test]
    fn instants_are_utc() {
        assert_eq!(instant(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(instant(1_600_000_000_123), "2020-09-13T12:26:40.123Z");
        assert_eq!(instant(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
