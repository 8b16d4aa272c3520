//! Documents as FHIR: attachments, `Binary`, and which of `DocumentReference` and `Media`
//! an entry of the documents category is.
//!
//! - **Which type.** An entry imported from FHIR keeps its type. Any other documents entry
//!   whose file is an image ([`IMAGE_TYPES`]: JPEG, PNG, DICOM) is a `Media`, every other
//!   one a `DocumentReference`: each item is exactly one resource, so a search by type
//!   and `Patient/$everything` list it once.
//! - **Out.** A document stored apart (the `file` field) is the attachment `url`
//!   `Binary/<id>`, relative to the FHIR base, with its `contentType`, `size`, `title` and
//!   `creation`; the id is the one the resource carries (the item's entry id on the node's
//!   API), never the document's hash or key ([`link_file`]). R4's `Attachment.size` is an
//!   `unsignedInt`, so a file of 2 GiB or more has no `size`.
//! - **In.** An attachment `url` naming a Binary of the same server ([`local_binary`]:
//!   `Binary/<id>`, with or without `/_history/<v>`, or a Bundle's `urn:uuid:`) is not
//!   kept as the entry's `url`: the node that holds the Binary puts its file in the
//!   entry's `file` field. [`binary_of`] reads a FHIR `Binary` resource a client sends,
//!   [`binary`] builds one to send.

use serde_json::{json, Value as Json};

use super::error::{self, FhirError};
use super::read::El;
use crate::blob::DocumentFile;
use crate::category::Category;
use crate::value::Value;

/// The DICOM code system (modalities: `CT`, `MR`, `US`, `DX`, …).
pub const DICOM_SYSTEM: &str = "http://dicom.nema.org/resources/ontology/DCM";
/// The code system of `Media.type` (`image`, `video`, `audio`).
pub const MEDIA_TYPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/media-type";
/// Media types a documents entry not imported from FHIR exports as `Media` for.
pub const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "application/dicom"];
/// The largest document carried in a FHIR `Binary` resource as base64 (in or out), in
/// bytes of the file: larger files go as their raw bytes.
pub const MAX_BINARY_JSON: usize = 16 * 1024 * 1024;
/// The largest `Attachment.size` R4 can say (`unsignedInt`).
const MAX_ATTACHMENT_SIZE: u64 = i32::MAX as u64;

/// An attachment `url` naming a Binary of the server the resource is sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BinaryLink {
    /// `Binary/<id>` (or `Binary/<id>/_history/<v>`): the id.
    Id(String),
    /// A `urn:uuid:` (or `urn:oid:`) reference: a Bundle entry's `fullUrl`.
    Urn(String),
}

/// What an attachment `url` names, if it is a Binary of this server: relative
/// `Binary/<id>` (a FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`), optionally with
/// `/_history/<v>`, or a `urn:uuid:`/`urn:oid:` reference. Absolute URLs are the caller's
/// to match against its own base.
pub fn local_binary(url: &str) -> Option<BinaryLink> {
    if url.starts_with("urn:uuid:") || url.starts_with("urn:oid:") {
        return Some(BinaryLink::Urn(url.to_owned()));
    }
    let rest = url.strip_prefix("Binary/")?;
    let mut parts = rest.split('/');
    let id = parts.next()?;
    let ok_id = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => {}
        (Some("_history"), Some(v), None) if !v.is_empty() => {}
        _ => return None,
    }
    ok_id.then(|| BinaryLink::Id(id.to_owned()))
}

/// The attachment of a `DocumentReference` (its first `content`'s) or `Media` (its
/// `content`), if it has one.
pub fn attachment_of(resource: &Json) -> Option<&Json> {
    match resource.get("resourceType")?.as_str()? {
        "DocumentReference" => resource.get("content")?.get(0)?.get("attachment"),
        "Media" => resource.get("content"),
        _ => None,
    }
    .filter(|a| a.is_object())
}

fn attachment_mut(resource: &mut Json) -> Option<&mut serde_json::Map<String, Json>> {
    let ty = resource.get("resourceType")?.as_str()?.to_owned();
    match ty.as_str() {
        "DocumentReference" => resource
            .get_mut("content")?
            .get_mut(0)?
            .get_mut("attachment")?
            .as_object_mut(),
        "Media" => resource.get_mut("content")?.as_object_mut(),
        _ => None,
    }
}

/// The fields an entry's file brings beside what a resource maps to (its `file`, the
/// file's media type and what a DICOM header said): left out when an entry is compared
/// with the resource it was imported from.
pub(crate) const FILE_FIELDS: &[&str] = &[
    "file",
    "media-type",
    "dicom-patient",
    "dicom-study",
    "dicom-modality",
];

/// Whether a body has a file stored apart.
pub(crate) fn has_file(body: &Value) -> bool {
    body.get("file").is_some()
}

/// The body without [`FILE_FIELDS`].
pub(crate) fn without_file(body: &Value) -> Value {
    match body {
        Value::Map(m) => {
            let mut m = m.clone();
            for f in FILE_FIELDS {
                m.remove(*f);
            }
            Value::Map(m)
        }
        other => other.clone(),
    }
}

/// Whether a documents body's file is an image ([`IMAGE_TYPES`]), which exports as `Media`.
pub(crate) fn is_image(body: &Value) -> bool {
    body.get("media-type")
        .and_then(Value::as_text)
        .is_some_and(|t| IMAGE_TYPES.contains(&t))
}

/// Sets the attachment of an exported documents resource from the entry's file stored
/// apart: `contentType`, `url` = `Binary/<id>`, `size` (when R4 can say it), and `title`
/// and `creation` when the resource has none. Never the document's hash or key; no
/// `data`. A body without a `file` is left as it is.
pub fn link_file(resource: &mut Json, id: &str, category: &Category, body: &Value) {
    if *category != Category::Documents {
        return;
    }
    let Some(file) = body
        .get("file")
        .and_then(|v| DocumentFile::from_value(v).ok())
    else {
        return;
    };
    let text = |k: &str| body.get(k).and_then(Value::as_text).map(str::to_owned);
    let Some(att) = attachment_mut(resource) else {
        return;
    };
    att.remove("data");
    att.remove("hash");
    if let Some(mt) = text("media-type") {
        att.insert("contentType".into(), mt.into());
    }
    att.insert("url".into(), format!("Binary/{id}").into());
    if file.size <= MAX_ATTACHMENT_SIZE {
        att.insert("size".into(), file.size.into());
    } else {
        att.remove("size");
    }
    if !att.contains_key("title") {
        if let Some(t) = text("title") {
            att.insert("title".into(), t.into());
        }
    }
    if !att.contains_key("creation") {
        if let Some(d) = text("date") {
            att.insert("creation".into(), d.into());
        }
    }
}

/// Points an exported documents resource's attachment at `url` (e.g. a Bundle's
/// `urn:uuid:` of the `Binary` carrying the file). Returns whether it had an attachment.
pub fn set_attachment_url(resource: &mut Json, url: &str) -> bool {
    match attachment_mut(resource) {
        Some(att) => {
            att.insert("url".into(), url.into());
            true
        }
        None => false,
    }
}

/// Decodes a FHIR `base64Binary` (which may hold whitespace between its groups).
pub(crate) fn base64(data: &str) -> Option<Vec<u8>> {
    if data.bytes().any(|b| b.is_ascii_whitespace()) {
        let packed: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        return data_encoding::BASE64.decode(&packed).ok();
    }
    data_encoding::BASE64.decode(data.as_bytes()).ok()
}

/// A FHIR `Binary` resource carrying `data` as base64, with `id`, `contentType` and the
/// resource whose access rules are the Binary's (`securityContext`, e.g.
/// `DocumentReference/<id>`). The caller bounds `data` ([`MAX_BINARY_JSON`]).
pub fn binary(id: &str, content_type: &str, data: &[u8], security_context: Option<&str>) -> Json {
    let mut b = json!({
        "resourceType": "Binary",
        "id": id,
        "contentType": content_type,
    });
    if let Some(s) = security_context {
        b["securityContext"] = json!({ "reference": s });
    }
    b["data"] = Json::String(data_encoding::BASE64.encode(data));
    b
}

/// A FHIR `Binary` resource a client sent: its `contentType` and its decoded `data`,
/// at most [`MAX_BINARY_JSON`] bytes.
///
/// # Errors
/// Not a `Binary`, no `contentType` code, no `data`, `data` not base64, or too large.
pub fn binary_of(resource: &Json) -> Result<(String, Vec<u8>), FhirError> {
    let ty = super::resource_type(resource)?;
    if ty != "Binary" {
        return Err(FhirError::BadValue {
            path: "resourceType".into(),
            value: error::clip(ty),
            reason: "expected a Binary",
        });
    }
    let b = El::new("Binary", resource);
    super::read::check_id(&b)?;
    let content_type = b.req_code("contentType")?.to_owned();
    let Some(data) = b.str_of("data")? else {
        return Err(FhirError::Missing {
            path: "Binary.data".into(),
        });
    };
    // Base64 is 4 characters per 3 bytes: refuse before decoding what would be too large.
    let decoded_len = data.len() / 4 * 3;
    if decoded_len > MAX_BINARY_JSON + 3 {
        return Err(FhirError::TooLarge {
            what: "the Binary's data".into(),
            len: decoded_len,
            max: MAX_BINARY_JSON,
        });
    }
    let bytes = base64(data).ok_or_else(|| FhirError::BadValue {
        path: "Binary.data".into(),
        value: error::clip(data),
        reason: "not base64",
    })?;
    if bytes.len() > MAX_BINARY_JSON {
        return Err(FhirError::TooLarge {
            what: "the Binary's data".into(),
            len: bytes.len(),
            max: MAX_BINARY_JSON,
        });
    }
    Ok((content_type, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_binaries_are_relative_binary_ids_and_bundle_urns() {
        assert_eq!(
            local_binary("Binary/b-12"),
            Some(BinaryLink::Id("b-12".into()))
        );
        assert_eq!(
            local_binary("Binary/e-ab.c/_history/2"),
            Some(BinaryLink::Id("e-ab.c".into()))
        );
        assert_eq!(
            local_binary("urn:uuid:0000"),
            Some(BinaryLink::Urn("urn:uuid:0000".into()))
        );
        for not in [
            "Binary/",
            "Binary/a/b",
            "Binary/a/_history/",
            "Binary/a b",
            "binary/a",
            "https://example.org/Binary/a",
            "DocumentReference/a",
            &format!("Binary/{}", "a".repeat(65)),
        ] {
            assert_eq!(local_binary(not), None, "{not}");
        }
    }

    #[test]
    fn a_binary_resource_round_trips_and_bad_ones_are_refused() {
        let data = b"%PDF-1.7 hello".to_vec();
        let b = binary(
            "e-1",
            "application/pdf",
            &data,
            Some("DocumentReference/e-1"),
        );
        assert_eq!(b["securityContext"]["reference"], "DocumentReference/e-1");
        assert_eq!(binary_of(&b).unwrap(), ("application/pdf".to_owned(), data));
        let bad = [
            json!({"resourceType": "Media", "status": "completed"}),
            json!({"resourceType": "Binary", "data": "AAAA"}),
            json!({"resourceType": "Binary", "contentType": "text/plain"}),
            json!({"resourceType": "Binary", "contentType": "text/plain", "data": "%%%"}),
            json!({"resourceType": "Binary", "contentType": 5, "data": "AAAA"}),
            json!({"resourceType": "Binary", "contentType": "text/plain", "data": ["AAAA"]}),
            json!("Binary"),
        ];
        for b in bad {
            assert!(binary_of(&b).is_err(), "{b}");
        }
        let big = "A".repeat((MAX_BINARY_JSON / 3 + 2) * 4);
        let e = binary_of(
            &json!({"resourceType": "Binary", "contentType": "text/plain",
                                  "data": big}),
        )
        .unwrap_err();
        assert!(matches!(e, FhirError::TooLarge { .. }), "{e}");
    }
}
