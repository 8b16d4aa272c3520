//! Documents as FHIR (`protocol/src/fhir/attach.rs`): a file stored apart is the
//! attachment `url` `Binary/<id>` (never its hash or key); images are `Media`, other files
//! `DocumentReference`; Media imports as a documents entry; an attachment naming a Binary
//! of the server is left for the node to link, and the original resource still exports.

use std::collections::BTreeMap;

use cophr_protocol::blob::{BlobHash, BlobKey, DocumentFile};
use cophr_protocol::fhir::{self, ExportMeta, IdPolicy};
use cophr_protocol::testkit::SeededRng;
use cophr_protocol::{schema, ActorId, Category, EntryId, Value};
use serde_json::{json, Value as Json};

fn ids() -> (ActorId, EntryId) {
    (ActorId([1; 32]), EntryId([2; 32]))
}

fn file(size: u64) -> DocumentFile {
    DocumentFile {
        hash: BlobHash::of(b"sealed bytes"),
        size,
        key: Some(BlobKey::generate(&mut SeededRng::new(3))),
    }
}

/// A documents body with a file stored apart.
fn stored_apart(title: &str, media_type: &str, f: &DocumentFile, extra: &[(&str, &str)]) -> Value {
    let mut m = BTreeMap::from([
        ("title".to_owned(), Value::Text(title.into())),
        ("media-type".to_owned(), Value::Text(media_type.into())),
        ("file".to_owned(), f.to_value()),
    ]);
    for (k, v) in extra {
        m.insert((*k).to_owned(), Value::Text((*v).into()));
    }
    let body = Value::Map(m);
    schema::validate(&Category::Documents, &body).expect("a valid documents body");
    body
}

fn export(body: &Value) -> Json {
    let (p, e) = ids();
    fhir::export(
        &p,
        &e,
        &Category::Documents,
        body,
        &ExportMeta {
            ids: IdPolicy::Entry,
            link_patient: false,
        },
    )
    .expect("export")
}

/// The document's hash and key appear nowhere in the resource.
fn no_secrets(r: &Json, f: &DocumentFile) {
    let text = r.to_string();
    let key = f.key.as_ref().unwrap().as_bytes();
    for needle in [
        f.hash.to_hex(),
        data_encoding::BASE64.encode(f.hash.as_bytes()),
        data_encoding::HEXLOWER.encode(key),
        data_encoding::BASE64.encode(key),
    ] {
        assert!(!text.contains(&needle), "{needle} in {text}");
    }
}

#[test]
fn a_pdf_stored_apart_is_a_document_reference_naming_its_binary() {
    let (p, e) = ids();
    let f = file(300_000);
    let body = stored_apart(
        "Renal clinic letter",
        "application/pdf",
        &f,
        &[("date", "2026-11-30")],
    );
    let r = export(&body);
    assert_eq!(r["resourceType"], "DocumentReference");
    assert_eq!(r["subject"]["reference"], format!("Patient/{p}"));
    let att = &r["content"][0]["attachment"];
    assert_eq!(att["contentType"], "application/pdf");
    assert_eq!(att["url"], format!("Binary/{e}"));
    assert_eq!(att["size"], 300_000);
    assert_eq!(att["title"], "Renal clinic letter");
    assert_eq!(att["creation"], "2026-11-30");
    assert!(att.get("data").is_none());
    no_secrets(&r, &f);
}

#[test]
fn images_are_media_with_their_modality_and_other_files_are_not() {
    let (p, e) = ids();
    let f = file(5_000);
    let jpeg = export(&stored_apart(
        "Leg ulcer",
        "image/jpeg",
        &f,
        &[("date", "2026-11-02"), ("description", "Left shin")],
    ));
    assert_eq!(jpeg["resourceType"], "Media");
    assert_eq!(jpeg["status"], "completed");
    assert_eq!(jpeg["type"]["coding"][0]["code"], "image");
    assert_eq!(jpeg["subject"]["reference"], format!("Patient/{p}"));
    assert_eq!(jpeg["createdDateTime"], "2026-11-02");
    assert_eq!(jpeg["content"]["url"], format!("Binary/{e}"));
    assert_eq!(jpeg["content"]["contentType"], "image/jpeg");
    assert_eq!(jpeg["content"]["size"], 5_000);
    assert_eq!(jpeg["note"][0]["text"], "Left shin");
    assert!(jpeg.get("modality").is_none());
    no_secrets(&jpeg, &f);

    let dicom = export(&stored_apart(
        "Chest CT",
        "application/dicom",
        &f,
        &[("dicom-modality", "CT")],
    ));
    assert_eq!(dicom["resourceType"], "Media");
    assert_eq!(dicom["modality"]["coding"][0]["system"], fhir::DICOM_SYSTEM);
    assert_eq!(dicom["modality"]["coding"][0]["code"], "CT");

    // An image kept inline is a Media with its data; text and ODF are DocumentReferences.
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    png.extend([0u8; 32]);
    let inline = Value::Map(BTreeMap::from([
        ("title".to_owned(), Value::Text("Rash".into())),
        ("media-type".to_owned(), Value::Text("image/png".into())),
        ("data".to_owned(), Value::Bytes(png.clone())),
    ]));
    let r = export(&inline);
    assert_eq!(r["resourceType"], "Media");
    assert_eq!(
        r["content"]["data"],
        data_encoding::BASE64.encode(&png).as_str()
    );
    assert_eq!(r["content"]["size"], png.len());
    let text = export(&stored_apart("Notes", "text/plain", &f, &[]));
    assert_eq!(text["resourceType"], "DocumentReference");
    for ty in ["DocumentReference", "Media"] {
        assert!(fhir::types_for(&Category::Documents).contains(&ty));
    }
}

#[test]
fn a_file_of_2_gib_or_more_has_no_attachment_size() {
    let f = file(3 << 30);
    let r = export(&stored_apart("Scan series", "application/dicom", &f, &[]));
    assert_eq!(r["content"]["url"], format!("Binary/{}", ids().1));
    assert!(r["content"].get("size").is_none(), "{r}");
}

#[test]
fn a_media_resource_imports_as_a_documents_entry() {
    let jpeg = data_encoding::BASE64.encode(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F']);
    let media = json!({
        "resourceType": "Media", "status": "completed",
        "modality": {"coding": [{"system": fhir::DICOM_SYSTEM, "code": "XC",
                                 "display": "External-camera photography"}]},
        "subject": {"reference": "Patient/example"},
        "createdDateTime": "2026-10-01T09:30:00Z",
        "content": {"contentType": "image/jpeg", "data": jpeg, "title": "Wound, day 3"},
        "note": [{"text": "Healing well"}]
    });
    let i = fhir::import(&media, None).expect("import");
    assert_eq!(i.category, Category::Documents);
    assert_eq!(i.resource_type, "Media");
    let text = |k: &str| i.body.get(k).and_then(Value::as_text).map(str::to_owned);
    assert_eq!(text("title").as_deref(), Some("Wound, day 3"));
    assert_eq!(text("media-type").as_deref(), Some("image/jpeg"));
    assert_eq!(text("date").as_deref(), Some("2026-10-01"));
    assert_eq!(text("dicom-modality").as_deref(), Some("XC"));
    assert_eq!(text("description").as_deref(), Some("Healing well"));
    assert!(matches!(i.body.get("data"), Some(Value::Bytes(b)) if b.len() == 8));
    // It exports as it came in.
    let (p, e) = ids();
    let out = fhir::export(&p, &e, &i.category, &i.body, &ExportMeta::default()).unwrap();
    assert_eq!(out, media);

    // Media needs its status and content; whitespace in base64 is allowed.
    let mut no_content = media.clone();
    no_content.as_object_mut().unwrap().remove("content");
    assert!(fhir::import(&no_content, None).is_err());
    let mut no_status = media.clone();
    no_status.as_object_mut().unwrap().remove("status");
    assert!(fhir::import(&no_status, None).is_err());
    let mut spaced = media.clone();
    spaced["content"]["data"] = json!(format!("{} {}", &jpeg[..4], &jpeg[4..]));
    assert!(fhir::import(&spaced, None).is_ok());
    let mut bad = media;
    bad["content"]["data"] = json!("%%%not base64");
    assert!(fhir::import(&bad, None).is_err());
}

#[test]
fn an_attachment_naming_a_binary_here_is_left_to_link_and_exports_linked() {
    for url in [
        "Binary/b-0123",
        "urn:uuid:6f1d2a9e-0000-4000-8000-000000000001",
    ] {
        let doc = json!({
            "resourceType": "DocumentReference", "status": "current",
            "description": "Discharge summary",
            "type": {"text": "Discharge summary"},
            "content": [{"attachment": {"contentType": "application/pdf", "url": url}}]
        });
        let i = fhir::import(&doc, None).expect("import");
        assert!(
            i.body.get("url").is_none(),
            "{url} is not kept as the entry's url"
        );
        assert!(fhir::local_binary(url).is_some());
        assert_eq!(
            fhir::attachment_of(&doc).unwrap()["url"],
            url,
            "the attachment is found"
        );
        // The node links the Binary's file: the original still exports, its attachment
        // now naming the entry's Binary.
        let f = file(1234);
        let Value::Map(mut m) = i.body.clone() else {
            panic!()
        };
        m.insert("file".into(), f.to_value());
        m.insert("media-type".into(), Value::Text("application/pdf".into()));
        let body = Value::Map(m);
        schema::validate(&Category::Documents, &body).unwrap();
        let out = export(&body);
        assert_eq!(
            out["description"], "Discharge summary",
            "the original: {out}"
        );
        assert_eq!(out["type"]["text"], "Discharge summary");
        let att = &out["content"][0]["attachment"];
        assert_eq!(att["url"], format!("Binary/{}", ids().1));
        assert_eq!(att["size"], 1234);
        assert_eq!(att["contentType"], "application/pdf");
        no_secrets(&out, &f);
    }
    // A link elsewhere stays the entry's url.
    let doc = json!({
        "resourceType": "DocumentReference", "status": "current",
        "content": [{"attachment": {"url": "https://example.org/Binary/1"}}]
    });
    let i = fhir::import(&doc, None).unwrap();
    assert_eq!(
        i.body.get("url").and_then(Value::as_text),
        Some("https://example.org/Binary/1")
    );
}
