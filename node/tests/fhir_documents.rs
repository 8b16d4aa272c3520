//! Documents through the FHIR R4 API (`node/src/http/fhir/binary.rs`): files stored apart
//! come out as DocumentReference or Media naming `Binary/<id>`, the Binary reads back byte
//! for byte (raw or as FHIR JSON) under the entry's access rules and audit, and files come
//! in as Binaries that DocumentReference and Media resources name.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use cophr_node::http::{router, AppState};
use cophr_node::store::Store;
use cophr_protocol::testkit::key;
use cophr_protocol::{Category, Grant, Keypair, Level, Payload, Profile, RecordId, Scope};
use serde_json::{json, Value as Json};
use tower::ServiceExt;

const TOKEN: &str = "fhirdocstoken";
const T0: u64 = 1_700_000_000_000;

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    patient: Keypair,
    clock: Arc<AtomicU64>,
    app: Router,
}

fn profile(name: &str, role: &str) -> Profile {
    Profile {
        name: name.into(),
        role: role.into(),
        organisation: None,
        attestations: Vec::new(),
    }
}

fn app_for(store: &Store, key: &Keypair, p: Profile, clock: &Arc<AtomicU64>) -> Router {
    let c = clock.clone();
    router(
        AppState::new(
            store.clone(),
            key.clone(),
            p,
            Some("test-device".into()),
            TOKEN.into(),
        )
        .with_clock(move || c.load(Ordering::SeqCst)),
    )
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), key(7, "node")).unwrap();
        let patient = key(7, "george");
        store
            .create_record(&patient, profile("George", "patient"), T0, None)
            .unwrap();
        let clock = Arc::new(AtomicU64::new(T0 + 1000));
        let app = app_for(&store, &patient, profile("George", "patient"), &clock);
        Env {
            _dir: dir,
            store,
            patient,
            clock,
            app,
        }
    }

    fn rid(&self) -> RecordId {
        self.patient.actor()
    }

    fn tick(&self) {
        self.clock.fetch_add(1000, Ordering::SeqCst);
    }

    fn audit_count(&self) -> usize {
        self.store.audit_events(&self.rid()).unwrap().len()
    }

    fn entry_count(&self) -> usize {
        self.store
            .with_record(&self.rid(), |r| r.entries().count())
            .unwrap()
    }
}

/// Status, headers and body bytes of a response.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Json {
        serde_json::from_slice(&self.bytes).unwrap_or(Json::Null)
    }

    fn outcome(&self, status: StatusCode, code: &str) -> String {
        let b = self.json();
        assert_eq!(self.status, status, "{b}");
        assert_eq!(b["resourceType"], "OperationOutcome", "{b}");
        assert_eq!(b["issue"][0]["code"], code, "{b}");
        b["issue"][0]["diagnostics"].as_str().unwrap().to_owned()
    }
}

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {TOKEN}"));
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        bytes,
    }
}

async fn get(app: &Router, uri: &str, accept: Option<&str>) -> Answer {
    let h: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
    send(app, "GET", uri, &h, Vec::new()).await
}

async fn post_json(app: &Router, uri: &str, body: &Json) -> Answer {
    send(
        app,
        "POST",
        uri,
        &[("content-type", "application/fhir+json")],
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

fn pdf() -> Vec<u8> {
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..300_000u32).map(|i| (i % 251) as u8));
    pdf
}

fn jpeg() -> Vec<u8> {
    let mut j = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
    ];
    j.extend((0..150_000u32).map(|i| (i % 249) as u8));
    j
}

/// Attaches a file through the REST API (`POST …/documents`): the entry's id.
async fn attach(env: &Env, title: &str, bytes: &[u8]) -> String {
    env.tick();
    let len = bytes.len().to_string();
    let r = send(
        &env.app,
        "POST",
        &format!(
            "/api/v1/records/{}/documents?title={}&date=2026-11-30",
            env.rid(),
            title.replace(' ', "%20")
        ),
        &[
            ("content-type", "application/octet-stream"),
            ("content-length", &len),
        ],
        bytes.to_vec(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    r.json()["id"].as_str().unwrap().to_owned()
}

/// The `Binary/<id>` path an attachment url names.
fn binary_path(url: &Json) -> String {
    let u = url.as_str().expect("an attachment url");
    assert!(u.starts_with("Binary/"), "{u}");
    format!("/fhir/r4/{u}")
}

#[tokio::test]
async fn documents_attached_come_out_as_document_reference_and_media_with_binaries() {
    let env = Env::new();
    let pdf = pdf();
    let jpeg = jpeg();
    let letter = attach(&env, "Renal clinic letter", &pdf).await;
    let photo = attach(&env, "Leg ulcer", &jpeg).await;

    // The PDF is a DocumentReference, the photo a Media; each once, and not the other type.
    let r = get(
        &env.app,
        &format!("/fhir/r4/DocumentReference/{letter}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    let att = &doc["content"][0]["attachment"];
    assert_eq!(att["contentType"], "application/pdf");
    assert_eq!(att["size"], pdf.len());
    assert_eq!(att["title"], "Renal clinic letter");
    assert_eq!(att["creation"], "2026-11-30");
    assert_eq!(att["url"], format!("Binary/{letter}"));
    assert!(att.get("data").is_none());
    let r = get(&env.app, &format!("/fhir/r4/Media/{photo}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let media = r.json();
    assert_eq!(
        media["subject"]["reference"],
        format!("Patient/{}", env.rid())
    );
    assert_eq!(media["createdDateTime"], "2026-11-30");
    assert_eq!(media["content"]["contentType"], "image/jpeg");
    assert_eq!(media["content"]["size"], jpeg.len());
    assert_eq!(media["content"]["url"], format!("Binary/{photo}"));
    let r = get(&env.app, &format!("/fhir/r4/Media/{letter}"), None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let ids = |b: &Json| -> BTreeSet<String> {
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let refs = get(&env.app, "/fhir/r4/DocumentReference", None)
        .await
        .json();
    assert_eq!(ids(&refs), BTreeSet::from([letter.clone()]));
    let medias = get(
        &env.app,
        &format!("/fhir/r4/Media?patient={}&date=2026-11-30", env.rid()),
        None,
    )
    .await
    .json();
    assert_eq!(ids(&medias), BTreeSet::from([photo.clone()]));

    // No hash or key of the documents anywhere in what the API shows.
    for id in [&letter, &photo] {
        let eid = id.parse().unwrap();
        let body = env
            .store
            .with_record(&env.rid(), |r| match r.payload(&eid).as_deref() {
                Some(Payload::Create { body, .. }) => body.clone(),
                _ => panic!("not a create"),
            })
            .unwrap();
        let file =
            cophr_protocol::blob::DocumentFile::from_value(body.get("file").unwrap()).unwrap();
        let text = format!("{doc}{media}");
        assert!(!text.contains(&file.hash.to_hex()));
        assert!(!text.contains(&data_encoding::BASE64.encode(file.key.unwrap().as_bytes())));
    }

    // The Binary: raw bytes with the media type, byte for byte, audited as a view.
    let before = env.audit_count();
    let r = get(&env.app, &binary_path(&att["url"]), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "application/pdf");
    assert_eq!(r.headers["content-length"], pdf.len().to_string().as_str());
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    assert!(r.bytes == pdf, "the PDF byte for byte");
    assert_eq!(env.audit_count(), before + 1, "the read is audited");
    let last = env.store.audit_events(&env.rid()).unwrap().pop().unwrap();
    assert!(last
        .event
        .detail
        .as_deref()
        .unwrap_or_default()
        .contains("FHIR read Binary"));
    let r = get(
        &env.app,
        &binary_path(&media["content"]["url"]),
        Some("image/*"),
    )
    .await;
    assert_eq!(r.headers["content-type"], "image/jpeg");
    assert!(r.bytes == jpeg, "the JPEG byte for byte");

    // As FHIR JSON: the file in base64, and the resource whose rules it follows.
    for (accept, path) in [
        (
            Some("application/fhir+json"),
            format!("/fhir/r4/Binary/{letter}"),
        ),
        (None, format!("/fhir/r4/Binary/{letter}?_format=json")),
    ] {
        let r = get(&env.app, &path, accept).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/fhir+json"));
        let b = r.json();
        assert_eq!(b["resourceType"], "Binary");
        assert_eq!(b["id"], letter.as_str());
        assert_eq!(b["contentType"], "application/pdf");
        assert_eq!(
            b["securityContext"]["reference"],
            format!("DocumentReference/{letter}")
        );
        let data = data_encoding::BASE64
            .decode(b["data"].as_str().unwrap().as_bytes())
            .unwrap();
        assert!(data == pdf, "base64 of the PDF");
    }
    // Its version, and what is not there.
    let r = get(
        &env.app,
        &format!("/fhir/r4/Binary/{letter}/_history/1"),
        None,
    )
    .await;
    assert!(r.bytes == pdf);
    let r = get(
        &env.app,
        &format!("/fhir/r4/Binary/{letter}/_history/2"),
        None,
    )
    .await;
    r.outcome(StatusCode::NOT_FOUND, "not-found");
    let r = get(&env.app, "/fhir/r4/Binary/e-nothing", None).await;
    r.outcome(StatusCode::NOT_FOUND, "not-found");
    let r = get(&env.app, "/fhir/r4/Binary", None).await;
    r.outcome(StatusCode::METHOD_NOT_ALLOWED, "not-supported");

    // $everything lists the DocumentReference and the Media (not the Binaries).
    let all = get(
        &env.app,
        &format!("/fhir/r4/Patient/{}/$everything", env.rid()),
        None,
    )
    .await
    .json();
    let types: Vec<(String, String)> = all["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["resource"]["resourceType"].as_str().unwrap().to_owned(),
                e["resource"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(types.contains(&("DocumentReference".into(), letter.clone())));
    assert!(types.contains(&("Media".into(), photo.clone())));
    assert!(!types.iter().any(|(t, _)| t == "Binary"));

    // The CapabilityStatement lists Binary and Media with what they serve.
    let cs = get(&env.app, "/fhir/r4/metadata", None).await.json();
    let interactions = |ty: &str| -> BTreeSet<String> {
        cs["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == ty)
            .unwrap_or_else(|| panic!("{ty} not listed"))["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        interactions("Binary"),
        BTreeSet::from(["read".into(), "vread".into(), "create".into()])
    );
    assert!(interactions("Media").contains("search-type"));
    assert!(interactions("Media").contains("create"));
    assert!(interactions("DocumentReference").contains("create"));
}

#[tokio::test]
async fn a_reader_without_the_documents_category_gets_no_bytes() {
    let env = Env::new();
    let letter = attach(&env, "Letter", &pdf()).await;
    let kay = key(7, "kay");
    env.tick();
    env.store
        .write(
            &env.rid(),
            &env.patient,
            Payload::Grant(Grant {
                grantee: kay.actor(),
                level: Level::View,
                scope: Scope::Only(BTreeSet::from([Category::VitalSigns])),
                not_before: None,
                until: None,
                audit: false,
                delegate: false,
                label: None,
                requires: None,
            }),
            T0 + 100_000,
            None,
        )
        .unwrap();
    env.clock.store(T0 + 200_000, Ordering::SeqCst);
    let app = app_for(&env.store, &kay, profile("Dr Kay", "gp"), &env.clock);
    let before = env.audit_count();
    for accept in [None, Some("application/fhir+json")] {
        let r = get(&app, &format!("/fhir/r4/Binary/{letter}"), accept).await;
        r.outcome(StatusCode::NOT_FOUND, "not-found");
        assert!(!r.bytes.windows(9).any(|w| w == b"%PDF-1.7\n"));
        let r = get(
            &app,
            &format!("/fhir/r4/DocumentReference/{letter}"),
            accept,
        )
        .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(env.audit_count(), before, "nothing read, nothing audited");
    // Nor can Kay name George's document from a resource of his own.
    let doc = json!({"resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": format!("Patient/{}", env.rid())},
        "content": [{"attachment": {"contentType": "application/pdf",
                                    "url": format!("Binary/{letter}")}}]});
    let r = post_json(&app, "/fhir/r4/DocumentReference", &doc).await;
    assert!(r.status.is_client_error(), "{}", r.json());
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn a_binary_posted_then_named_by_a_document_reference_round_trips() {
    let env = Env::new();
    let pdf = pdf();
    let len = pdf.len().to_string();
    let r = send(
        &env.app,
        "POST",
        "/fhir/r4/Binary",
        &[
            ("content-type", "application/pdf"),
            ("content-length", &len),
        ],
        pdf.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let location = r.headers["location"].to_str().unwrap().to_owned();
    let id = location
        .split("/Binary/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert!(
        location.starts_with("http://localhost/fhir/r4/Binary/"),
        "{location}"
    );
    assert_eq!(r.json()["contentType"], "application/pdf");
    // Its sender reads it back before anything names it; no entry was written.
    let entries = env.entry_count();
    let r = get(&env.app, &format!("/fhir/r4/Binary/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.bytes == pdf);
    // Another identity on the same node does not see it.
    let kay = key(7, "kay");
    let other = app_for(&env.store, &kay, profile("Dr Kay", "gp"), &env.clock);
    let r = get(&other, &format!("/fhir/r4/Binary/{id}"), None).await;
    r.outcome(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(env.entry_count(), entries);

    env.tick();
    let doc = json!({"resourceType": "DocumentReference", "status": "current",
        "description": "Discharge summary",
        "subject": {"reference": format!("Patient/{}", env.rid())},
        "date": "2026-12-01T10:00:00Z",
        "content": [{"attachment": {"contentType": "application/pdf",
                                    "url": format!("Binary/{id}"),
                                    "title": "discharge.pdf"}}]});
    let r = post_json(&env.app, "/fhir/r4/DocumentReference", &doc).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let made = r.json();
    let item = made["id"].as_str().unwrap().to_owned();
    assert!(r.headers["location"]
        .to_str()
        .unwrap()
        .contains(&format!("DocumentReference/{item}/_history/1")));
    assert_eq!(
        made["description"], "Discharge summary",
        "the resource as sent"
    );
    let att = &made["content"][0]["attachment"];
    assert_eq!(att["url"], format!("Binary/{item}"));
    assert_eq!(att["title"], "discharge.pdf");
    assert_eq!(att["size"], pdf.len());
    // Byte for byte, under the entry's id and under the id it was sent as.
    for path in [binary_path(&att["url"]), format!("/fhir/r4/Binary/{id}")] {
        let r = get(&env.app, &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(r.bytes == pdf, "{path}");
    }
    // And through the REST API, as any document stored apart.
    let r = get(
        &env.app,
        &format!("/api/v1/records/{}/entries/{item}/document", env.rid()),
        None,
    )
    .await;
    assert!(r.bytes == pdf);

    // A Media naming a JSON Binary.
    let jpeg = jpeg();
    let b = json!({"resourceType": "Binary", "contentType": "image/jpeg",
                   "data": data_encoding::BASE64.encode(&jpeg)});
    let r = post_json(&env.app, "/fhir/r4/Binary", &b).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let jid = r.json()["id"].as_str().unwrap().to_owned();
    let media = json!({"resourceType": "Media", "status": "completed",
        "subject": {"reference": format!("Patient/{}", env.rid())},
        "modality": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM",
                                 "code": "XC"}]},
        "createdDateTime": "2026-12-02",
        "content": {"contentType": "image/jpeg", "url": format!("Binary/{jid}"),
                    "title": "Wound"}});
    env.tick();
    let r = post_json(&env.app, "/fhir/r4/Media", &media).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let m = r.json();
    assert_eq!(m["modality"]["coding"][0]["code"], "XC");
    let r = get(&env.app, &binary_path(&m["content"]["url"]), None).await;
    assert_eq!(r.headers["content-type"], "image/jpeg");
    assert!(r.bytes == jpeg);
}

#[tokio::test]
async fn a_transaction_with_a_binary_and_a_document_reference_works() {
    let env = Env::new();
    let pdf = pdf();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000002",
         "resource": {"resourceType": "DocumentReference", "status": "current",
                      "subject": {"reference": format!("Patient/{}", env.rid())},
                      "content": [{"attachment": {
                          "contentType": "application/pdf",
                          "url": "urn:uuid:00000000-0000-4000-8000-000000000001"}}]},
         "request": {"method": "POST", "url": "DocumentReference"}},
        {"fullUrl": "urn:uuid:00000000-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Binary", "contentType": "application/pdf",
                      "data": data_encoding::BASE64.encode(&pdf)},
         "request": {"method": "POST", "url": "Binary"}}
    ]});
    env.tick();
    let r = post_json(&env.app, "/fhir/r4", &bundle).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let resp = r.json();
    let loc = |i: usize| {
        resp["entry"][i]["response"]["location"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(loc(0).starts_with("DocumentReference/"), "{resp}");
    assert!(loc(1).starts_with("Binary/"), "{resp}");
    let doc_path = loc(0).split("/_history").next().unwrap().to_owned();
    let doc = get(&env.app, &format!("/fhir/r4/{doc_path}"), None)
        .await
        .json();
    let r = get(
        &env.app,
        &binary_path(&doc["content"][0]["attachment"]["url"]),
        None,
    )
    .await;
    assert!(r.bytes == pdf, "the transaction's PDF byte for byte");
    let bin_path = loc(1).split("/_history").next().unwrap().to_owned();
    let r = get(&env.app, &format!("/fhir/r4/{bin_path}"), None).await;
    assert!(r.bytes == pdf);

    // A transaction whose Binary is named wrongly stores no entry.
    let entries = env.entry_count();
    let mut bad = bundle.clone();
    bad["entry"][0]["resource"]["content"][0]["attachment"]["url"] =
        json!("urn:uuid:00000000-0000-4000-8000-00000000dead");
    let r = post_json(&env.app, "/fhir/r4", &bad).await;
    r.outcome(StatusCode::UNPROCESSABLE_ENTITY, "business-rule");
    assert_eq!(env.entry_count(), entries);
}

#[tokio::test]
async fn a_large_inline_attachment_is_stored_apart() {
    let env = Env::new();
    let mut pdf = b"%PDF-1.4\n".to_vec();
    pdf.extend((0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let doc = json!({"resourceType": "DocumentReference", "status": "current",
        "subject": {"reference": format!("Patient/{}", env.rid())},
        "content": [{"attachment": {"contentType": "application/pdf",
                                    "data": data_encoding::BASE64.encode(&pdf)}}]});
    env.tick();
    let r = post_json(&env.app, "/fhir/r4/DocumentReference", &doc).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let made = r.json();
    let att = &made["content"][0]["attachment"];
    assert!(att.get("data").is_none());
    assert_eq!(att["size"], pdf.len());
    let r = get(&env.app, &binary_path(&att["url"]), None).await;
    assert!(r.bytes == pdf, "stored apart, byte for byte");
    // The entry holds a reference, not the file.
    let item: cophr_protocol::EntryId = made["id"].as_str().unwrap().parse().unwrap();
    let body = env
        .store
        .with_record(&env.rid(), |r| match r.payload(&item).as_deref() {
            Some(Payload::Create { body, .. }) => body.clone(),
            _ => panic!("not a create"),
        })
        .unwrap();
    assert!(body.get("file").is_some());
    assert!(body.get("data").is_none());
    let kept = body
        .get("fhir-resource")
        .and_then(cophr_protocol::Value::as_text);
    assert!(kept.is_some_and(|t| t.len() < 4096), "{kept:?}");
}

#[tokio::test]
async fn malformed_and_oversized_binaries_get_an_outcome_and_store_nothing() {
    let env = Env::new();
    let blobs = || env.store.blobs().list().len();
    let entries = env.entry_count();
    let raw = |ct: &'static str, body: Vec<u8>, length: Option<String>| {
        let app = env.app.clone();
        async move {
            let mut h = vec![("content-type", ct)];
            let len;
            if let Some(l) = length {
                len = l;
                h.push(("content-length", len.as_str()));
            }
            send(&app, "POST", "/fhir/r4/Binary", &h, body).await
        }
    };
    // Not an accepted type; not the type declared; no length; more than any document.
    let r = raw(
        "application/pdf",
        b"MZ\x90\x00 nope".to_vec(),
        Some("9".into()),
    )
    .await;
    r.outcome(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-supported");
    let r = raw("image/png", pdf(), Some(pdf().len().to_string())).await;
    let msg = r.outcome(StatusCode::UNPROCESSABLE_ENTITY, "business-rule");
    assert!(msg.contains("application/pdf"), "{msg}");
    let r = raw("application/pdf", pdf(), None).await;
    assert_eq!(r.status, StatusCode::LENGTH_REQUIRED);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    let r = raw(
        "application/pdf",
        Vec::new(),
        Some((cophr_protocol::blob::MAX_DOCUMENT_BYTES + 1).to_string()),
    )
    .await;
    r.outcome(StatusCode::PAYLOAD_TOO_LARGE, "too-long");
    // Malformed FHIR Binaries.
    for (body, code) in [
        (b"{not json".to_vec(), "invalid"),
        (
            br#"{"resourceType": "Binary", "data": "JVBERi0="}"#.to_vec(),
            "required",
        ),
        (
            br#"{"resourceType": "Binary", "contentType": "application/pdf"}"#.to_vec(),
            "required",
        ),
        (
            br#"{"resourceType": "Binary", "contentType": "application/pdf", "data": "%%"}"#
                .to_vec(),
            "value",
        ),
        (
            br#"{"resourceType": "Media", "status": "x"}"#.to_vec(),
            "value",
        ),
        (br#"[1, 2]"#.to_vec(), "structure"),
    ] {
        let r = send(
            &env.app,
            "POST",
            "/fhir/r4/Binary",
            &[("content-type", "application/fhir+json")],
            body.clone(),
        )
        .await;
        assert!(
            r.status.is_client_error(),
            "{}",
            String::from_utf8_lossy(&body)
        );
        assert_eq!(r.json()["resourceType"], "OperationOutcome", "{code}");
    }
    // Over the request body limit as JSON.
    let big = vec![b' '; cophr_node::http::MAX_BODY + 1];
    let r = send(
        &env.app,
        "POST",
        "/fhir/r4/Binary",
        &[("content-type", "application/fhir+json")],
        big,
    )
    .await;
    r.outcome(StatusCode::PAYLOAD_TOO_LARGE, "too-long");
    // A DocumentReference naming no Binary held here.
    let doc = json!({"resourceType": "DocumentReference", "status": "current",
        "content": [{"attachment": {"url": "Binary/b-00000000000000000000000000000000"}}]});
    let r = post_json(&env.app, "/fhir/r4/DocumentReference", &doc).await;
    r.outcome(StatusCode::NOT_FOUND, "not-found");
    assert_eq!(blobs(), 0, "no blob stored");
    assert_eq!(env.entry_count(), entries, "no entry written");
    // Other methods on Binary.
    let r = send(&env.app, "DELETE", "/fhir/r4/Binary/x", &[], Vec::new()).await;
    r.outcome(StatusCode::METHOD_NOT_ALLOWED, "not-supported");
}
