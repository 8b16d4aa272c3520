//! The HTTP API, in process: the router driven with `tower::ServiceExt::oneshot` over a
//! store in a temporary directory, on a deterministic clock.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use cophr_node::http::{self, AppState, HttpConfig, HttpError};
use cophr_node::store::Store;
use cophr_protocol::access::{Grant, Level, Scope};
use cophr_protocol::entry::Payload;
use cophr_protocol::recovery::RecoveryRequest;
use cophr_protocol::{Category, Keypair, Profile, RecordId};
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;

const TOKEN: &str = "testtokenabcdefghijklmnopqrstuvwxyz234567abcdefghijk";
/// 2026-11-22T10:00:00Z.
const START: u64 = 1_795_341_600_000;

struct Fixture {
    _dir: TempDir,
    state: AppState,
    store: Store,
    clock: Arc<AtomicU64>,
}

fn profile(name: &str, role: &str) -> Profile {
    Profile {
        name: name.into(),
        role: role.into(),
        organisation: None,
        attestations: Vec::new(),
    }
}

/// A node acting as `me` over a fresh store, its clock one second further at every read.
fn fixture(me: &Keypair, who: Profile) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), Keypair::from_secret(&[9; 32])).unwrap();
    let clock = Arc::new(AtomicU64::new(START));
    let tick = clock.clone();
    let state = AppState::new(
        store.clone(),
        me.clone(),
        who,
        Some("test-laptop".into()),
        TOKEN.into(),
    )
    .with_clock(move || tick.fetch_add(1000, Ordering::SeqCst));
    Fixture {
        _dir: dir,
        state,
        store,
        clock,
    }
}

fn ann() -> Keypair {
    Keypair::from_secret(&[1; 32])
}

fn patient() -> Fixture {
    fixture(&ann(), profile("Ann Patient", "patient"))
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    bytes: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {}",
                String::from_utf8_lossy(&self.bytes[..self.bytes.len().min(400)])
            )
        })
    }

    /// Asserts the status and a JSON error body with this code; returns the message.
    fn error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.bytes)
        );
        let j = self.json();
        assert_eq!(j["error"]["code"], code, "{j}");
        let msg = j["error"]["message"]
            .as_str()
            .expect("a message")
            .to_owned();
        assert!(!msg.is_empty());
        msg
    }
}

async fn send(
    st: &AppState,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Resp {
    send_with(st, method, path, token, content_type, &[], body).await
}

async fn send_with(
    st: &AppState,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if let Some(c) = content_type {
        req = req.header(header::CONTENT_TYPE, c);
    }
    if !body.is_empty() {
        req = req.header(header::CONTENT_LENGTH, body.len());
    }
    let resp = http::router(st.clone())
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Resp {
        status,
        headers,
        bytes,
    }
}

async fn get(st: &AppState, path: &str) -> Resp {
    send(st, Method::GET, path, Some(TOKEN), None, Vec::new()).await
}

async fn with_json(st: &AppState, method: Method, path: &str, body: Value) -> Resp {
    send(
        st,
        method,
        path,
        Some(TOKEN),
        Some("application/json"),
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

/// Entries in the record and audit events: what a refused request must leave unchanged.
fn counts(store: &Store, record: &RecordId) -> (usize, usize) {
    let entries = store.with_record(record, |r| r.len()).unwrap_or(0);
    let audit = store.audit_events(record).map(|a| a.len()).unwrap_or(0);
    (entries, audit)
}

/// Creates the patient's record and one allergy; returns (record, entry id).
async fn seeded(f: &Fixture) -> (String, String) {
    let r = with_json(&f.state, Method::POST, "/api/v1/records", json!({})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let rid = r.json()["record"].as_str().unwrap().to_owned();
    let r = with_json(
        &f.state,
        Method::POST,
        &format!("/api/v1/records/{rid}/entries"),
        json!({"category": "allergies", "body": {"agent": "Penicillin", "reaction": "rash"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    (rid, r.json()["id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn the_full_flow_through_the_api() {
    let f = patient();
    let st = &f.state;
    let who = get(st, "/api/v1/whoami").await.json();
    assert_eq!(who["actor"], ann().actor().to_string());
    assert_eq!(who["name"], "Ann Patient");
    assert_eq!(who["device"], "test-laptop");

    let (rid, eid) = seeded(&f).await;
    let base = format!("/api/v1/records/{rid}");
    // Creating it again is a conflict.
    let r = with_json(st, Method::POST, "/api/v1/records", json!({})).await;
    r.error(StatusCode::CONFLICT, "conflict");

    // Listed, with the patient's access.
    let records = get(st, "/api/v1/records").await.json();
    assert_eq!(records[0]["record"], rid.as_str());
    assert_eq!(records[0]["is_mine"], true);
    assert_eq!(records[0]["level_by_category"]["allergies"], "delete");

    // Add, list, show.
    let list = get(st, &format!("{base}/entries?category=allergies"))
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], eid.as_str());
    assert_eq!(list[0]["body"]["agent"], "Penicillin");
    assert_eq!(list[0]["author"]["name"], "Ann Patient");
    assert_eq!(list[0]["device"], "test-laptop");
    let one = get(st, &format!("{base}/entries/{eid}")).await.json();
    assert_eq!(one["summary"], list[0]["summary"]);
    assert_eq!(one["versions"], 1);

    // Amend: a new version; history has both.
    let r = with_json(
        st,
        Method::PUT,
        &format!("{base}/entries/{eid}"),
        json!({"body": {"agent": "Penicillin", "reaction": "hives", "severity": "severe"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let amended = r.json()["id"].as_str().unwrap().to_owned();
    let one = get(st, &format!("{base}/entries/{eid}")).await.json();
    assert_eq!(one["versions"], 2);
    assert_eq!(one["current"], amended.as_str());
    assert_eq!(one["body"]["reaction"], "hives");

    // Annotate.
    let r = with_json(
        st,
        Method::POST,
        &format!("{base}/entries/{eid}/annotations"),
        json!({"text": "Confirmed by the GP"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let one = get(st, &format!("{base}/entries/{eid}")).await.json();
    assert_eq!(one["annotations"][0]["text"], "Confirmed by the GP");
    let hist = get(st, &format!("{base}/entries/{amended}/history"))
        .await
        .json();
    let kinds: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["create", "amend", "annotate"]);
    assert_eq!(hist[0]["body"]["reaction"], "rash");
    assert_eq!(hist[1]["author"]["role"], "patient");

    // Grant and revoke.
    let mary = Keypair::from_secret(&[2; 32]).actor().to_string();
    let r = with_json(
        st,
        Method::POST,
        &format!("{base}/grants"),
        json!({"grantee": mary, "categories": ["allergies"], "level": "write", "delegate": false}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let gid = r.json()["id"].as_str().unwrap().to_owned();
    let grants = get(st, &format!("{base}/grants")).await.json();
    assert_eq!(grants[0]["id"], gid.as_str());
    assert_eq!(grants[0]["status"], "active");
    assert_eq!(grants[0]["categories"], json!(["allergies"]));
    let r = with_json(
        st,
        Method::POST,
        &format!("{base}/grants/{gid}/revoke"),
        json!({"reason": "moved away"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let grants = get(st, &format!("{base}/grants")).await.json();
    assert_eq!(grants[0]["status"], "revoked");

    // Delete: gone from the list, kept with include_deleted and in history.
    let r = with_json(
        st,
        Method::DELETE,
        &format!("{base}/entries/{eid}"),
        json!({"reason": "entered in error"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let list = get(st, &format!("{base}/entries")).await.json();
    assert!(list.as_array().unwrap().is_empty(), "{list}");
    let list = get(st, &format!("{base}/entries?include_deleted=true"))
        .await
        .json();
    assert_eq!(list[0]["deleted"], true);
    let hist = get(st, &format!("{base}/entries/{eid}/history"))
        .await
        .json();
    assert_eq!(
        hist.as_array().unwrap().last().unwrap()["reason"],
        "entered in error"
    );
    // The state at a time before the delete still has it.
    let at = "2026-11-22T10:00:05Z";
    let past = get(st, &format!("{base}/entries?at={at}")).await.json();
    assert_eq!(past[0]["id"], eid.as_str(), "{past}");

    // Timeline and summary.
    let r = with_json(
        st,
        Method::POST,
        &format!("{base}/entries"),
        json!({"category": "about-me", "body": {"thing-1": "I am deaf in my left ear"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let tl = get(st, &format!("{base}/timeline?limit=5")).await.json();
    assert_eq!(tl[0]["category"], "about-me");
    let sum = get(st, &base).await.json();
    assert_eq!(sum["about_me"][0]["category"], "about-me");
    assert_eq!(sum["my_access"]["is_patient"], true);

    // The audit trail shows the API's reads (and is itself audited): they are the
    // patient's own, so shown on asking.
    let audit = get(st, &format!("{base}/audit?own=include")).await.json();
    let events = audit["rows"].as_array().unwrap();
    let views: Vec<&Value> = events.iter().filter(|e| e["action"] == "view").collect();
    assert!(views.len() >= 8, "{audit}");
    assert!(views
        .iter()
        .any(|e| e["detail"].as_str().unwrap().starts_with("history of")));
    assert!(views.iter().all(|e| e["device"] == "test-laptop"));
    assert!(events.iter().any(|e| e["action"] == "edit"));
    let audit2 = get(st, &format!("{base}/audit?own=include&limit=1"))
        .await
        .json();
    assert_eq!(audit2["rows"][0]["action"], "audit-read");
    // By default the patient's own reads are hidden: who else looked.
    let others = get(st, &format!("{base}/audit")).await.json();
    assert!(others["rows"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["action"] != "view" && e["action"] != "audit-read"));

    // Export: a file that verifies offline, and the export is audited.
    let r = get(st, &format!("{base}/export")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/octet-stream");
    assert!(r.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains(&format!("{rid}.cophr")));
    let v = cophr_protocol::export::verify(&r.bytes).expect("the export verifies");
    assert_eq!(v.record.id().to_string(), rid);
    assert!(v.audit.iter().any(|a| a.event.action.name() == "export"));
}

/// A grant delegated under one that is later revoked is listed as `parent-revoked`, not
/// `active`.
#[tokio::test]
async fn a_grant_delegated_under_a_revoked_grant_is_listed_as_parent_revoked() {
    let f = patient();
    let st = &f.state;
    let (rid, _) = seeded(&f).await;
    let base = format!("/api/v1/records/{rid}");
    let mary = Keypair::from_secret(&[2; 32]);
    let son = Keypair::from_secret(&[3; 32]);
    let r = with_json(
        st,
        Method::POST,
        &format!("{base}/grants"),
        json!({"grantee": mary.actor().to_string(), "categories": "all", "level": "write",
               "delegate": true}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let marys = r.json()["id"].as_str().unwrap().to_owned();
    let record: RecordId = rid.parse().unwrap();
    let now = f.clock.load(Ordering::SeqCst);
    let sons = f
        .store
        .write(
            &record,
            &mary,
            Payload::Grant(Grant {
                grantee: son.actor(),
                level: Level::View,
                scope: Scope::Only([Category::Allergies].into()),
                not_before: None,
                until: None,
                audit: false,
                delegate: false,
                label: None,
                requires: None,
            }),
            now,
            None,
        )
        .unwrap()
        .to_string();
    let status_of = |grants: &Value, id: &str| {
        grants
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == id)
            .map(|g| g["status"].clone())
            .unwrap()
    };
    let grants = get(st, &format!("{base}/grants")).await.json();
    assert_eq!(status_of(&grants, &sons), "active");
    let r = with_json(
        st,
        Method::POST,
        &format!("{base}/grants/{marys}/revoke"),
        json!({"reason": "moved away"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    let grants = get(st, &format!("{base}/grants")).await.json();
    assert_eq!(status_of(&grants, &marys), "revoked");
    assert_eq!(status_of(&grants, &sons), "parent-revoked");
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_refused_and_stores_nothing() {
    let f = patient();
    let (rid, _) = seeded(&f).await;
    let record: RecordId = rid.parse().unwrap();
    let before = counts(&f.store, &record);
    let body = serde_json::to_vec(
        &json!({"category": "allergies", "body": {"agent": "Latex", "reaction": "rash"}}),
    )
    .unwrap();
    let path = format!("/api/v1/records/{rid}/entries");
    for token in [
        None,
        Some("wrong"),
        Some(&TOKEN[..TOKEN.len() - 1]),
        Some(""),
    ] {
        for (method, path) in [
            (Method::POST, path.as_str()),
            (Method::GET, path.as_str()),
            (Method::GET, "/api/v1/whoami"),
            (Method::GET, "/api/v1/no-such-route"),
        ] {
            let r = send(
                &f.state,
                method,
                path,
                token,
                Some("application/json"),
                body.clone(),
            )
            .await;
            r.error(StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(r.headers[header::WWW_AUTHENTICATE], "Bearer");
        }
    }
    // A scheme other than Bearer is refused too.
    let mut req = Request::get("/api/v1/whoami");
    req = req.header(header::AUTHORIZATION, format!("Basic {TOKEN}"));
    let resp = http::router(f.state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // FHIR paths answer with an OperationOutcome.
    let r = send(
        &f.state,
        Method::GET,
        "/fhir/r4/Patient",
        None,
        None,
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    // Nothing stored, not even an audit event.
    assert_eq!(counts(&f.store, &record), before);
    // The OpenAPI document needs no token.
    let r = send(
        &f.state,
        Method::GET,
        "/api/v1/openapi.json",
        None,
        None,
        vec![],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["openapi"], "3.1.0");
}

#[tokio::test]
async fn bad_input_gets_the_right_status_and_stores_nothing() {
    let f = patient();
    let st = &f.state;
    let (rid, eid) = seeded(&f).await;
    let record: RecordId = rid.parse().unwrap();
    let entries = format!("/api/v1/records/{rid}/entries");
    let before = counts(&f.store, &record);
    let raw = |ct: Option<&'static str>, body: Vec<u8>| {
        let entries = entries.clone();
        async move { send(st, Method::POST, &entries, Some(TOKEN), ct, body).await }
    };

    // Invalid JSON.
    raw(Some("application/json"), b"{\"category\": ".to_vec())
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_json");
    // Not JSON at all, or no content type.
    raw(Some("text/plain"), b"{}".to_vec())
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    raw(None, b"{}".to_vec())
        .await
        .error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    // The wrong shape.
    with_json(st, Method::POST, &entries, json!({"category": "allergies"}))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    with_json(st, Method::POST, &entries, json!([1, 2]))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    // An unknown category.
    let m = with_json(
        st,
        Method::POST,
        &entries,
        json!({"category": "horoscopes", "body": {"sign": "leo"}}),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "unknown_category");
    assert!(m.contains("horoscopes"), "{m}");
    // A body failing the category's schema: an unknown field, a wrong type, a missing one.
    for body in [
        json!({"agent": "Latex", "colour": "red"}),
        json!({"agent": 5}),
        json!({"reaction": "rash"}),
        json!("Latex"),
    ] {
        with_json(
            st,
            Method::POST,
            &entries,
            json!({"category": "allergies", "body": body}),
        )
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
    // Oversized bodies (valid JSON beyond 8 MiB).
    let mut big = b"{\"category\":\"documents\",\"body\":{\"title\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', http::MAX_BODY + 1));
    big.extend_from_slice(b"\"}}");
    raw(Some("application/json"), big)
        .await
        .error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Unknown record, unknown entry, malformed ids.
    let other = Keypair::from_secret(&[3; 32]).actor();
    get(st, &format!("/api/v1/records/{other}/entries"))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    // An entry id of another record.
    f.store
        .create_record(
            &Keypair::from_secret(&[3; 32]),
            profile("Other", "patient"),
            START,
            None,
        )
        .unwrap();
    let foreign = f
        .store
        .with_record(&other, |r| r.entries().next().unwrap().id())
        .unwrap();
    get(st, &format!("{entries}/{foreign}"))
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    with_json(
        st,
        Method::PUT,
        &format!("{entries}/{foreign}"),
        json!({"body": {"agent": "x"}}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    with_json(
        st,
        Method::POST,
        &format!("{entries}/{foreign}/annotations"),
        json!({"text": "x"}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    get(st, &format!("{entries}/e-nonsense"))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    get(st, "/api/v1/records/not-a-record")
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    get(st, &format!("{entries}?at=yesterday"))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    get(st, &format!("/api/v1/records/{rid}/timeline?limit=many"))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    // Beyond the documented maximum is refused, not clamped.
    get(st, &format!("/api/v1/records/{rid}/timeline?limit=10001"))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    get(st, "/api/v1/nothing-here")
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    // Amending to the same body changes nothing.
    with_json(
        st,
        Method::PUT,
        &format!("{entries}/{eid}"),
        json!({"body": {"agent": "Penicillin", "reaction": "rash"}}),
    )
    .await
    .error(StatusCode::CONFLICT, "conflict");
    // A grant with a bad level or categories.
    let grants = format!("/api/v1/records/{rid}/grants");
    let mary = Keypair::from_secret(&[2; 32]).actor().to_string();
    for bad in [
        json!({"grantee": mary, "categories": "all", "level": "own"}),
        json!({"grantee": mary, "categories": [], "level": "view"}),
        json!({"grantee": "bob", "categories": "all", "level": "view"}),
    ] {
        with_json(st, Method::POST, &grants, bad)
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_input");
    }
    with_json(
        st,
        Method::POST,
        &grants,
        json!({"grantee": mary, "categories": ["tarot"], "level": "view"}),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "unknown_category");
    // Revoking something that is not a grant.
    with_json(
        st,
        Method::POST,
        &format!("{grants}/{eid}/revoke"),
        json!({}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    // Nothing stored by any of it (refused reads write no audit event either).
    assert_eq!(counts(&f.store, &record), before);
}

#[tokio::test]
async fn writing_beyond_the_grants_is_forbidden_and_explained() {
    // The node acts as a pharmacist with view access to allergies in Ann's record.
    let pharm = Keypair::from_secret(&[4; 32]);
    let f = fixture(&pharm, profile("Pat Pharmacist", "pharmacist"));
    let ann = ann();
    let record = ann.actor();
    f.store
        .create_record(&ann, profile("Ann Patient", "patient"), START - 3000, None)
        .unwrap();
    f.store
        .write(
            &record,
            &ann,
            Payload::Create {
                category: Category::Allergies,
                body: cophr_protocol::schema::body_from_json(
                    &Category::Allergies,
                    &json!({"agent": "Penicillin"}),
                )
                .unwrap(),
            },
            START - 2000,
            None,
        )
        .unwrap();
    let grant = f
        .store
        .write(
            &record,
            &ann,
            Payload::Grant(Grant {
                grantee: pharm.actor(),
                level: Level::View,
                scope: Scope::Only([Category::Allergies].into_iter().collect()),
                not_before: None,
                until: None,
                audit: false,
                delegate: false,
                label: None,
                requires: None,
            }),
            START - 1000,
            None,
        )
        .unwrap();
    let st = &f.state;
    let base = format!("/api/v1/records/{record}");
    // It sees allergies.
    let list = get(st, &format!("{base}/entries")).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    let eid = list[0]["id"].as_str().unwrap().to_owned();
    let records = get(st, "/api/v1/records").await.json();
    assert_eq!(records[0]["is_mine"], false);
    assert_eq!(
        records[0]["level_by_category"],
        json!({"allergies": "view"})
    );
    let before = counts(&f.store, &record);
    // But may not write, amend, annotate, grant, read the audit trail.
    let m = with_json(
        st,
        Method::POST,
        &format!("{base}/entries"),
        json!({"category": "allergies", "body": {"agent": "Latex"}}),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    assert!(m.contains("not authorised") || m.contains("level"), "{m}");
    with_json(
        st,
        Method::POST,
        &format!("{base}/entries"),
        json!({"category": "medications", "body": {"medication": "Aspirin"}}),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    with_json(
        st,
        Method::PUT,
        &format!("{base}/entries/{eid}"),
        json!({"body": {"agent": "Amoxicillin"}}),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    with_json(
        st,
        Method::POST,
        &format!("{base}/entries/{eid}/annotations"),
        json!({"text": "hm"}),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    get(st, &format!("{base}/audit"))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(counts(&f.store, &record), before);

    // After the revocation, a write says the access was revoked, and why.
    f.store
        .write(
            &record,
            &ann,
            Payload::Revoke {
                grant,
                category: None,
                reason: "changed pharmacy".into(),
            },
            START + 500_000,
            None,
        )
        .unwrap();
    f.clock.store(START + 1_000_000, Ordering::SeqCst);
    let before = counts(&f.store, &record);
    let m = with_json(
        st,
        Method::POST,
        &format!("{base}/entries"),
        json!({"category": "allergies", "body": {"agent": "Latex"}}),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    assert!(
        m.contains("revoked") && m.contains("changed pharmacy"),
        "{m}"
    );
    assert_eq!(counts(&f.store, &record), before);
}

#[tokio::test]
async fn a_non_loopback_address_needs_the_explicit_flag() {
    let remote = HttpConfig {
        addr: "0.0.0.0:0".parse().unwrap(),
        allow_remote: false,
    };
    assert!(matches!(remote.bind().await, Err(HttpError::Remote(_))));
    let v6 = HttpConfig {
        addr: "[::]:0".parse().unwrap(),
        allow_remote: false,
    };
    assert!(matches!(v6.check(), Err(HttpError::Remote(_))));
    let allowed = HttpConfig {
        allow_remote: true,
        ..remote
    };
    assert!(allowed.check().is_ok());
    let local = HttpConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        allow_remote: false,
    };
    // A real listener on an ephemeral loopback port serves the API.
    let listener = local.bind().await.unwrap();
    let addr = listener.local_addr().unwrap();
    let f = patient();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listener, f.state.clone(), async {
        let _ = rx.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(
            format!(
                "GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\
                 Connection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("Ann Patient"), "{out}");
    tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

// ---------------------------------------------------------------------------------------
// The implementation against its OpenAPI document.

fn document() -> Value {
    serde_json::from_str(cophr_node::http::api::OPENAPI).expect("openapi.json is JSON")
}

const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// A validator for a schema of the document (its `$ref`s resolved within it).
fn validator(doc: &Value, schema: &Value) -> jsonschema::Validator {
    let mut s = schema.clone();
    if let Value::Object(m) = &mut s {
        m.insert("components".into(), doc["components"].clone());
    } else {
        s = json!({"allOf": [schema], "components": doc["components"]});
    }
    jsonschema::validator_for(&s).expect("a valid schema")
}

/// The openEHR ids of the record `rid` and its item `eid`: (ehr_id, EHR_STATUS version
/// uid, the item's object id, its first version's uid, the contribution that made it).
fn openehr_ids(rid: &str, eid: &str) -> [String; 5] {
    use cophr_protocol::openehr;
    let record: RecordId = rid.parse().unwrap();
    let item: cophr_protocol::EntryId = eid.parse().unwrap();
    let status = openehr::ehr_status_json(&record)["uid"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    [
        openehr::ehr_id(&record),
        status,
        openehr::item_uuid(&item),
        openehr::version_uid(&item, 1),
        openehr::versions::contribution_uid(&item),
    ]
}

/// Substitutes real ids into a documented path.
fn concrete(path: &str, rid: &str, eid: &str, gid: &str) -> String {
    let [ehr, status, object, version, contribution] = openehr_ids(rid, eid);
    let uid = if path.contains("ehr_status/") {
        status
    } else if path.contains("/contribution/") {
        contribution
    } else {
        version
    };
    path.replace("{ehr_id}", &ehr)
        .replace("{uid}", &uid)
        .replace("{object}", &object)
        .replace("{template_id}", "cophr.allergies.v1")
        .replace("{qualified_query_name}", "org.example::uids")
        .replace("{version}", "1.0.0")
        .replace("{rid}", rid)
        .replace("{eid}", eid)
        .replace("{gid}", gid)
        .replace("{sid}", "AAAAAAAAAAAAAAAAAAAAAA")
        .replace("{hash}", &"0".repeat(64))
        .replace("{category}", "ext%3Auk.nhs.tissue-viability%2Fwound-care")
        .replace(
            "{actor}",
            &Keypair::from_secret(&[6; 32]).actor().to_string(),
        )
}

/// An organisation's proof that Ann is its member, as the text it travels as.
fn membership_of_ann() -> String {
    let org = Keypair::from_secret(&[8; 32]);
    let mut r = cophr_protocol::record::Record::new(org.actor());
    let payloads = [
        Payload::Genesis {
            profile: profile("Leeds Home Care Ltd", "organisation"),
        },
        Payload::AddMember {
            member: ann().actor(),
            role: cophr_protocol::org::Role::preset("nurse").unwrap(),
            label: "Nurse Ann".into(),
        },
    ];
    for (i, p) in payloads.into_iter().enumerate() {
        let v = r.prepare(&org, p, None, START + i as u64, None).unwrap();
        r.apply(v).unwrap();
    }
    let proof = r.membership_proof(&ann().actor()).unwrap();
    cophr_node::store::memberships::proof_to_text(&proof)
}

#[tokio::test]
async fn the_router_matches_its_openapi_document() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mary = Keypair::from_secret(&[2; 32]).actor().to_string();
    let device = Keypair::from_secret(&[6; 32]).actor();
    let stranger = Keypair::from_secret(&[7; 32]).actor();
    let paths = doc["paths"].as_object().unwrap();
    let mut checked = 0;
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(method) else {
                continue;
            };
            // A fresh node per operation: a record with an allergy and a grant (creating
            // the record is tried on a node without one).
            let f = patient();
            let (rid, eid) = seeded(&f).await;
            let r = with_json(
                &f.state,
                Method::POST,
                &format!("/api/v1/records/{rid}/grants"),
                json!({"grantee": mary, "categories": "all", "level": "view"}),
            )
            .await;
            let gid = r.json()["id"].as_str().unwrap().to_owned();
            let mut uri = concrete(path, &rid, &eid, &gid);
            if path.contains("{sid}") {
                // An emergency summary share to end.
                let r = with_json(
                    &f.state,
                    Method::POST,
                    &format!("/api/v1/records/{rid}/shares"),
                    json!({"expires_in": "1h", "base_url": "https://phr.example"}),
                )
                .await;
                let sid = r.json()["id"].as_str().unwrap().to_owned();
                uri = path.replace("{rid}", &rid).replace("{sid}", &sid);
            }
            if path.contains("{subid}") {
                // A subscription to remove.
                let r = with_json(
                    &f.state,
                    Method::POST,
                    &format!("/api/v1/records/{rid}/subscriptions"),
                    json!({"events": ["result-released"]}),
                )
                .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
                let sid = r.json()["id"].as_str().unwrap().to_owned();
                uri = path.replace("{rid}", &rid).replace("{subid}", &sid);
            }
            if op.get("x-streamed") == Some(&json!(true)) {
                // An endless event stream (node/tests/notifications.rs reads it): here only
                // its refusal without a token.
                let resp = send(&f.state, Method::GET, &uri, None, None, vec![]).await;
                assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{path}");
                check_response(&doc, op, &resp, path);
                checked += 1;
                continue;
            }
            let clinician = path.ends_with("/release").then(|| {
                fixture(
                    &Keypair::from_secret(&[2; 32]),
                    profile("Mary", "consultant"),
                )
            });
            if let Some(c) = &clinician {
                // A consultant releases a lab result from their replica.
                let r = with_json(
                    &f.state,
                    Method::POST,
                    &format!("/api/v1/records/{rid}/grants"),
                    json!({"grantee": mary, "categories": ["lab-results"], "level": "annotate"}),
                )
                .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
                let r = with_json(
                    &f.state,
                    Method::POST,
                    &format!("/api/v1/records/{rid}/entries"),
                    json!({"category": "lab-results", "body": {"test": "Potassium", "result": "4.1"}}),
                )
                .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
                let result = r.json()["id"].as_str().unwrap().to_owned();
                uri = concrete(path, &rid, &result, &gid);
                let record: RecordId = rid.parse().unwrap();
                let all = f
                    .store
                    .with_record(&record, |r| r.entries().collect::<Vec<_>>())
                    .unwrap();
                c.store.unlock_with(&Keypair::from_secret(&[2; 32]));
                c.store.ingest(&record, all).unwrap();
            }
            if path.contains("/members/{actor}") {
                // A member to remove, or to give a proof of membership to.
                let r = with_json(
                    &f.state,
                    Method::POST,
                    &format!("/api/v1/records/{rid}/members"),
                    json!({"member": device.to_string(), "role": "nurse", "label": "Nurse Jo"}),
                )
                .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
            } else if path.contains("{actor}") {
                // A device to remove.
                let r = with_json(
                    &f.state,
                    Method::POST,
                    &format!("/api/v1/records/{rid}/devices"),
                    json!({"device": device.to_string(), "label": "old phone"}),
                )
                .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
            }
            // Required query parameters, from their examples.
            let query: Vec<String> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == true)
                .map(|p| {
                    let value = p["example"]
                        .as_str()
                        .unwrap()
                        .replace("{rid}", &rid)
                        .replace("{record}", &stranger.to_string());
                    format!(
                        "{}={}",
                        p["name"].as_str().unwrap(),
                        form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
                    )
                })
                .collect();
            if !query.is_empty() {
                uri = format!("{uri}?{}", query.join("&"));
            }
            if path.contains("/threads/{eid}") {
                // A conversation with Mary (who reads every category) to show, mark read or
                // attach a file in.
                let r = with_json(
                    &f.state,
                    Method::POST,
                    &format!("/api/v1/records/{rid}/entries"),
                    json!({"category": "messages", "body": {"text": "Can we talk on Monday?",
                        "subject": "Monday", "participants": [mary]}}),
                )
                .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
                let thread = r.json()["id"].as_str().unwrap().to_owned();
                let query = uri.split_once('?').map(|(_, q)| format!("?{q}"));
                uri = concrete(path, &rid, &thread, &gid) + &query.unwrap_or_default();
            }
            if path.contains("{category}") {
                // An extension schema to show.
                let r = with_json(
                    &f.state,
                    Method::POST,
                    &format!("/api/v1/records/{rid}/schemas"),
                    serde_json::from_str(cophr_protocol::schema::EXAMPLES[1].1).unwrap(),
                )
                .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
            }
            if path.contains("{qualified_query_name}") && method != "put" {
                // A stored query to show or run.
                let r = with_json(
                    &f.state,
                    Method::PUT,
                    "/openehr/v1/definition/query/org.example::uids/1.0.0",
                    json!({"q": "SELECT c/uid/value FROM EHR e CONTAINS COMPOSITION c"}),
                )
                .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
            }
            if path.contains("/questionnaires/{eid}") {
                // A published questionnaire to assign or answer.
                let r = with_json(
                    &f.state,
                    Method::POST,
                    &format!("/api/v1/records/{rid}/questionnaires"),
                    json!({"built_in": "phq-9"}),
                )
                .await;
                assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
                let q = r.json()["id"].as_str().unwrap().to_owned();
                uri = concrete(path, &rid, &q, &gid);
            }
            if path.ends_with("/document") {
                // A document stored apart to read.
                let text = b"Discharge summary: home on ramipril.\n";
                let doc = stored_document(&f, &rid, "Discharge summary", "text/plain", text).await;
                uri = concrete(path, &rid, &doc, &gid);
            }
            if path.ends_with("/export/documents/{hash}") {
                // A document the record's entries name, to export.
                let text = b"Discharge summary: home on ramipril.\n";
                stored_document(&f, &rid, "Discharge summary", "text/plain", text).await;
                let record: RecordId = rid.parse().unwrap();
                let hash = f
                    .store
                    .with_record(&record, |r| r.documents().next().map(|d| d.hash))
                    .unwrap()
                    .expect("the one document the record names");
                uri = path
                    .replace("{rid}", &rid)
                    .replace("{hash}", &hash.to_string());
            }
            let uri = uri.replace("{record}", &stranger.to_string());
            let example = op["requestBody"]["content"]["application/json"]["example"].clone();
            let request = RecoveryRequest {
                record: rid.parse().unwrap(),
                new: stranger,
            }
            .to_text();
            let body = if example.is_null() {
                Vec::new()
            } else {
                serde_json::to_string(&example)
                    .unwrap()
                    .replace(
                        "{grantee}",
                        &Keypair::from_secret(&[5; 32]).actor().to_string(),
                    )
                    .replace("{device}", &device.to_string())
                    .replace("{guardian}", &mary)
                    .replace("{request}", &request)
                    .into_bytes()
            };
            let body = if path == "/api/v1/memberships" && method == "post" {
                // A proof of membership naming this node's identity, from an organisation.
                serde_json::to_vec(&json!({ "proof": membership_of_ann() })).unwrap()
            } else {
                body
            };
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let mut ct = (!body.is_empty()).then_some("application/json");
            let binary = op["requestBody"]["content"]
                .get("application/octet-stream")
                .is_some();
            let body = if binary {
                // A file as it is (a plain-text letter).
                ct = Some("application/octet-stream");
                b"Clinic letter: blood pressure well controlled.\n".to_vec()
            } else if path == "/openehr/v1/definition/template/adl1.4" && method == "post" {
                // An operational template: the shipped wound assessment OPT.
                ct = Some("application/xml");
                cophr_protocol::schema::WOUND_OPT.as_bytes().to_vec()
            } else {
                body
            };
            let fresh = patient();
            let guardian = path
                .ends_with("/recovery-approvals")
                .then(|| fixture(&Keypair::from_secret(&[2; 32]), profile("Mary", "carer")));
            let target = if path == "/api/v1/records" && method == "post" {
                &fresh.state
            } else if let Some(c) = &clinician {
                &c.state
            } else if let Some(guardian) = &guardian {
                // A guardian approves from their replica: Ann names Mary, Mary's node holds
                // the record.
                let r = with_json(
                    &f.state,
                    Method::PUT,
                    &format!("/api/v1/records/{rid}/guardians"),
                    json!({"guardians": [mary], "threshold": 1}),
                )
                .await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.json());
                let record: RecordId = rid.parse().unwrap();
                let all = f
                    .store
                    .with_record(&record, |r| r.entries().collect::<Vec<_>>())
                    .unwrap();
                guardian.store.ingest(&record, all).unwrap();
                &guardian.state
            } else {
                &f.state
            };
            // Required headers with examples (an openEHR `If-Match`).
            let [_, status_uid, _, version_uid, _] = openehr_ids(&rid, &eid);
            let headers: Vec<(String, String)> = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "header" && p["required"] == true)
                .filter_map(|p| {
                    let value = p["example"]
                        .as_str()?
                        .replace("{status_uid}", &status_uid)
                        .replace("{version_uid}", &version_uid);
                    Some((p["name"].as_str()?.to_owned(), value))
                })
                .collect();
            let resp = send_with(
                target,
                m.clone(),
                &uri,
                Some(TOKEN),
                ct,
                &headers,
                body.clone(),
            )
            .await;
            let what = format!("{method} {path}");
            check_response(&doc, op, &resp, &what);
            if let Some(answer) = op.get("x-answer").and_then(Value::as_u64) {
                // An operation cophr answers with a refusal by design (an EHR it does not
                // create, an EHR_STATUS that does not change): that answer.
                assert_eq!(u64::from(resp.status.as_u16()), answer, "{what}");
            } else if op.get("x-needs-network") == Some(&json!(true)) {
                // Without a network node: the documented 503 (the network tests run it).
                assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE, "{what}");
            } else {
                assert!(
                    resp.status.is_success(),
                    "{what}: {} {}",
                    resp.status,
                    String::from_utf8_lossy(&resp.bytes)
                );
            }
            // Without the token: the documented 401 (unless the operation is public).
            let public = op.get("security") == Some(&json!([]));
            let resp = send(&f.state, m, &uri, None, ct, body).await;
            if public && op.get("x-needs-network") == Some(&json!(true)) {
                // A browser's blob transfer: proved by its own proof, answered by the sync
                // server (the network tests run it).
                assert_eq!(
                    resp.status,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "{what} is public"
                );
            } else if public {
                assert!(resp.status.is_success(), "{what} is public");
            } else {
                assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{what}");
                check_response(&doc, op, &resp, &format!("{what} without a token"));
            }
            checked += 1;
        }
        // Methods the document does not list are not served on the path.
        let f = patient();
        let (rid, eid) = seeded(&f).await;
        let uri = concrete(path, &rid, &eid, &eid);
        for method in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let resp = send(&f.state, m, &uri, Some(TOKEN), None, vec![]).await;
            assert_eq!(
                resp.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is served but not documented"
            );
        }
    }
    assert!(checked >= 17, "{checked} operations checked");

    // Every route the API's source registers is documented, and vice versa.
    let source = include_str!("../src/http/api.rs");
    let mut served: Vec<String> = source
        .split(".route(")
        .skip(1)
        .filter_map(|s| s.trim_start().strip_prefix('"'))
        .filter_map(|s| s.split('"').next())
        .map(|p| format!("/api/v1{p}"))
        .collect();
    // The emergency summary routes live in their own module, with full paths.
    let source = include_str!("../src/http/share.rs");
    served.extend(
        source
            .split(".route(")
            .skip(1)
            .filter_map(|s| s.trim_start().strip_prefix('"'))
            .filter_map(|s| s.split('"').next())
            .filter(|p| p.starts_with("/api/v1/"))
            .map(str::to_owned),
    );
    // A browser's document transfers, with full paths.
    let source = include_str!("../src/http/browser.rs");
    served.extend(
        source
            .split(".route(")
            .skip(1)
            .filter_map(|s| s.trim_start().strip_prefix('"'))
            .filter_map(|s| s.split('"').next())
            .filter(|p| p.starts_with("/sync/blobs/"))
            .map(str::to_owned),
    );
    // The openEHR API, at its base (the same routes are served at `/rest/openehr/v1`).
    let source = include_str!("../src/http/openehr/mod.rs");
    served.extend(
        source
            .split("&format!(\"{base}")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .map(|p| {
                format!(
                    "{}{}",
                    cophr_node::http::openehr::BASE,
                    p.replace("{{", "{").replace("}}", "}")
                )
            }),
    );
    served.sort();
    let mut documented: Vec<String> = paths.keys().cloned().collect();
    documented.sort();
    assert_eq!(served, documented);
}

fn check_response(doc: &Value, op: &Value, resp: &Resp, what: &str) {
    let code = resp.status.as_str();
    let documented = op["responses"]
        .get(code)
        .unwrap_or_else(|| panic!("{what}: status {code} is not documented"));
    let content = &documented["content"];
    if content.is_null() {
        // No content (an openEHR 204).
        assert!(resp.bytes.is_empty(), "{what}: a {code} with a body");
        return;
    }
    if let Some(schema) = content.get("application/json").map(|c| &c["schema"]) {
        let body = resp.json();
        let v = validator(doc, schema);
        if let Err(e) = v.validate(&body) {
            panic!("{what}: the {code} body does not match the document: {e}\n{body:#}");
        }
    } else {
        let ct = content.as_object().unwrap().keys().next().unwrap();
        // `*/*`: the resource's own media type (a document's file).
        if ct != "*/*" {
            assert_eq!(resp.headers[header::CONTENT_TYPE], ct.as_str(), "{what}");
        }
    }
}

/// The audit trail's filters, grouping and pages over the REST API, on a trail with the
/// patient's own reads, a GP's view and edit, and a replica syncing.
#[tokio::test]
async fn the_audit_trail_filters_groups_and_pages() {
    use cophr_node::store::AuditInput;
    use cophr_protocol::audit::{Action, SERVED_TO_REPLICA};
    let f = patient();
    let st = &f.state;
    let (rid, _) = seeded(&f).await;
    let record: RecordId = rid.parse().unwrap();
    let base = format!("/api/v1/records/{rid}");
    let gp = Keypair::from_secret(&[2; 32]).actor();
    let replica = Keypair::from_secret(&[3; 32]).actor();
    let t = |n: u64| START + 3_600_000 * n;
    let audit = |actor, action, detail: &str, at| {
        f.store
            .audit(
                &record,
                AuditInput {
                    action,
                    actor,
                    device: None,
                    entries: Vec::new(),
                    detail: Some(detail.into()),
                },
                at,
            )
            .unwrap();
    };
    for n in 10..15 {
        audit(replica, Action::View, SERVED_TO_REPLICA, t(n));
    }
    audit(gp, Action::View, "show", t(20));
    audit(replica, Action::View, SERVED_TO_REPLICA, t(21));
    audit(gp, Action::Edit, "amend", t(22));
    // The patient reads their own record (hidden by default).
    get(st, &format!("{base}/entries")).await;

    let rows = |j: &Value| j["rows"].as_array().unwrap().clone();
    let all = get(st, &format!("{base}/audit")).await.json();
    let r = rows(&all);
    assert!(r
        .iter()
        .all(|e| e["actor"]["actor"] != ann().actor().to_string()
            || (e["action"] != "view" && e["action"] != "audit-read")));
    let sync: Vec<&Value> = r.iter().filter(|e| e["kind"] == "sync").collect();
    assert_eq!(sync.len(), 2, "{all}");
    assert_eq!(sync[1]["count"], 5);
    assert_eq!(sync[1]["first"], api_time(t(10)));
    assert_eq!(sync[1]["last"], api_time(t(14)));
    assert_eq!(sync[0]["count"], 1);

    let by_gp = get(st, &format!("{base}/audit?actor={gp}")).await.json();
    let actions: Vec<Value> = rows(&by_gp).iter().map(|e| e["action"].clone()).collect();
    assert_eq!(actions, [json!("edit"), json!("view")]);
    let edits = get(st, &format!("{base}/audit?actor={gp}&action=edit"))
        .await
        .json();
    assert_eq!(rows(&edits).len(), 1);
    let window = get(
        st,
        &format!(
            "{base}/audit?actor={replica}&since={}&until={}&group=false",
            api_time(t(12)),
            api_time(t(21))
        ),
    )
    .await
    .json();
    assert_eq!(rows(&window).len(), 4, "{window}");
    assert!(rows(&window).iter().all(|e| e["kind"] == "event"));

    let mine = get(st, &format!("{base}/audit?own=only")).await.json();
    assert!(rows(&mine)
        .iter()
        .all(|e| e["actor"]["actor"] == ann().actor().to_string()));
    assert!(rows(&mine).iter().any(|e| e["action"] == "view"));

    // Pages (the patient's own reads hidden, so reading a page changes no page).
    let page = |n: usize| {
        let url = format!("{base}/audit?group=false&limit=3&page={n}");
        async move { get(st, &url).await.json() }
    };
    let (p1, p2) = (page(1).await, page(2).await);
    assert_eq!(p1["pages"], p2["pages"]);
    assert_eq!(p1["total"], p2["total"]);
    let pages = p1["pages"].as_u64().unwrap() as usize;
    assert!(pages >= 3, "{p1}");
    let mut ids = Vec::new();
    for n in 1..=pages {
        ids.extend(rows(&page(n).await).iter().map(|e| e["id"].clone()));
    }
    assert_eq!(ids.len(), p1["total"].as_u64().unwrap() as usize);
    let distinct: std::collections::BTreeSet<String> = ids.iter().map(|i| i.to_string()).collect();
    assert_eq!(distinct.len(), ids.len(), "every row on exactly one page");
    assert!(rows(&page(pages + 1).await).is_empty());

    for bad in [
        "action=peek",
        "actor=nobody",
        "own=some",
        "page=0",
        "since=yesterday",
        &format!("actor={}", vec![gp.to_string(); 65].join(",")),
    ] {
        get(st, &format!("{base}/audit?{bad}"))
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_input");
    }
    // A rule across two parameters, which the document cannot state: 409.
    get(
        st,
        &format!("{base}/audit?since=2027-01-02&until=2027-01-01"),
    )
    .await
    .error(StatusCode::CONFLICT, "conflict");
}

fn api_time(t: u64) -> String {
    cophr_node::http::api::format_time(t)
}

#[tokio::test]
async fn people_are_shown_verified_or_self_asserted_by_the_nodes_trust_list() {
    use cophr_protocol::testkit::{attestation, key};
    use cophr_protocol::trust::{AssuranceLevel, TrustList, TrustedIssuer};
    let ais = key(5, "Leeds AIS");
    let mut who = profile("Ann Patient", "patient");
    who.attestations = vec![attestation(
        &ais,
        &ann().actor(),
        "Ann Patient",
        AssuranceLevel::P9,
        START - 1000,
    )];
    let mut trust = TrustList::new();
    trust
        .trust(TrustedIssuer {
            id: ais.actor(),
            name: "Leeds AIS".into(),
            max_level: AssuranceLevel::P5,
        })
        .unwrap();
    let f = fixture(&ann(), who);
    let (rid, eid) = seeded(&f).await;
    let path = format!("/api/v1/records/{rid}/entries/{eid}");
    // Without trusting the AIS: self-asserted, and why.
    let one = get(&f.state, &path).await.json();
    assert_eq!(one["author"]["assurance"]["status"], "self-asserted");
    assert_eq!(one["author"]["assurance"]["shown"], "self-asserted");
    assert_eq!(
        one["author"]["assurance"]["unaccepted"][0]["why"],
        "untrusted"
    );
    // Trusting it up to P5: verified, capped at P5.
    let st = f.state.clone().with_trust(trust);
    let one = get(&st, &path).await.json();
    assert_eq!(one["author"]["assurance"]["status"], "verified");
    assert_eq!(one["author"]["assurance"]["level"], "P5");
    assert_eq!(
        one["author"]["assurance"]["shown"],
        "verified P5 by Leeds AIS"
    );
}

/// Whether `reader`, holding the whole record (as its own node would, with its own key
/// only), opens entry `id`.
fn opens_for(store: &Store, rid: &RecordId, reader: &Keypair, id: &str) -> bool {
    let id: cophr_protocol::EntryId = id.parse().unwrap();
    store
        .with_record(rid, |r| {
            let mut theirs = cophr_protocol::record::Record::new(*rid);
            theirs.unlock(reader);
            for v in r.entries() {
                theirs.apply(v.clone()).unwrap();
            }
            matches!(
                theirs.content_state(&id),
                Some(cophr_protocol::record::ContentState::Opened)
            )
        })
        .unwrap()
}

/// A grant over HTTP gives the history of the categories it opens, unless `"history":
/// false`; a `history` that is not a boolean is refused and stores nothing.
#[tokio::test]
async fn a_grant_gives_the_history_unless_asked_not_to() {
    let f = patient();
    let (rid, allergy) = seeded(&f).await;
    let record: RecordId = rid.parse().unwrap();
    let gp = Keypair::from_secret(&[31; 32]);
    let pharmacist = Keypair::from_secret(&[32; 32]);
    let grants = format!("/api/v1/records/{rid}/grants");
    let before = counts(&f.store, &record);
    let r = with_json(
        &f.state,
        Method::POST,
        &grants,
        json!({"grantee": pharmacist.actor().to_string(), "categories": ["allergies"],
               "level": "view", "history": "no"}),
    )
    .await;
    r.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(counts(&f.store, &record), before);
    for (who, history) in [(&gp, true), (&pharmacist, false)] {
        let r = with_json(
            &f.state,
            Method::POST,
            &grants,
            json!({"grantee": who.actor().to_string(), "categories": ["allergies"],
                   "level": "view", "history": history}),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    }
    let r = with_json(
        &f.state,
        Method::POST,
        &format!("/api/v1/records/{rid}/entries"),
        json!({"category": "allergies", "body": {"agent": "Latex"}}),
    )
    .await;
    let later = r.json()["id"].as_str().unwrap().to_owned();
    assert!(opens_for(&f.store, &record, &gp, &allergy));
    assert!(!opens_for(&f.store, &record, &pharmacist, &allergy));
    assert!(opens_for(&f.store, &record, &pharmacist, &later));
}

/// Sealed content that opens but fails its category's rules (written by a writer who
/// sealed it directly) is listed with its `flag`, not hidden.
#[tokio::test]
async fn sealed_content_failing_its_rules_is_listed_flagged() {
    use cophr_protocol::seal::{self, BoxKey, Place};
    let f = patient();
    let (rid, allergy) = seeded(&f).await;
    let record: RecordId = rid.parse().unwrap();
    let me = ann();
    // The allergies stream's key, unwrapped as the patient's node would.
    let bad = f
        .store
        .with_record(&record, |r| {
            let allergy: cophr_protocol::EntryId = allergy.parse().unwrap();
            let epoch = r
                .get(&allergy)
                .unwrap()
                .entry()
                .payload
                .sealed()
                .unwrap()
                .epoch;
            let place = Place {
                record: &record,
                stream: Category::Allergies.name(),
                epoch,
            };
            let k = r
                .entries()
                .find_map(|e| match &e.entry().payload {
                    Payload::KeyWrap {
                        epoch: ep, wraps, ..
                    } if *ep == epoch => wraps
                        .iter()
                        .find(|w| w.to == me.actor())
                        .map(|w| seal::unwrap(w, &BoxKey::of(&me), place).unwrap()),
                    _ => None,
                })
                .unwrap();
            let body = cophr_protocol::testkit::text_body(&[("no-such-field", "x")]);
            let mut bytes = Vec::new();
            cbor4ii::serde::to_writer(&mut bytes, &body).unwrap();
            let content =
                seal::seal(&k, place, &me.actor(), &bytes, &mut rand_core::OsRng).unwrap();
            let e = r.next_entry(
                &me.actor(),
                Payload::SealedCreate {
                    category: Category::Allergies,
                    content,
                },
                None,
                START + 60_000,
                None,
            );
            cophr_protocol::entry::Verified::trusted(e.sign(&me))
        })
        .unwrap();
    let bad_id = bad.id().to_string();
    f.store.ingest(&record, vec![bad]).unwrap();
    let list = get(
        &f.state,
        &format!("/api/v1/records/{rid}/entries?category=allergies"),
    )
    .await
    .json();
    let items = list.as_array().unwrap();
    let flagged = items
        .iter()
        .find(|i| i["id"] == bad_id.as_str())
        .expect("a flagged item is listed");
    assert!(
        flagged["flag"].as_str().unwrap().contains("no-such-field"),
        "{flagged}"
    );
    let good = items.iter().find(|i| i["id"] == allergy.as_str()).unwrap();
    assert_eq!(good["flag"], Value::Null);
}

/// Stores `bytes` as a document (sealed, in the node's blob store) and writes a documents
/// entry naming it through the API, by reference; the entry's id.
async fn stored_document(
    f: &Fixture,
    rid: &str,
    title: &str,
    media_type: &str,
    bytes: &[u8],
) -> String {
    let mut rng = cophr_protocol::testkit::SeededRng::new(7);
    let file = f
        .store
        .import_document(bytes, bytes.len() as u64, &mut rng)
        .unwrap();
    let key = data_encoding::BASE64.encode(file.key.as_ref().unwrap().as_bytes());
    let r = with_json(
        &f.state,
        Method::POST,
        &format!("/api/v1/records/{rid}/entries"),
        json!({"category": "documents", "body": {"title": title, "media-type": media_type,
            "file": {"hash": file.hash.to_hex(), "size": bytes.len(), "key": key}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    r.json()["id"].as_str().unwrap().to_owned()
}

/// A document stored apart, written through the API by reference (as a client that sealed
/// and stored it would), read back as its file: streamed, checked, with its media type
/// and name; audited; refused clearly when the entry has none or its file is not held.
#[tokio::test]
async fn a_documents_file_is_served_streamed_and_audited() {
    use cophr_protocol::blob::DocumentFile;
    let f = patient();
    let (rid, allergy) = seeded(&f).await;
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..300_000u32).map(|i| (i % 251) as u8));
    let doc = stored_document(&f, &rid, "Renal clinic letter", "application/pdf", &pdf).await;
    let record: RecordId = rid.parse().unwrap();
    let (_, audit_before) = counts(&f.store, &record);

    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/entries/{doc}/document"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, pdf);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/pdf");
    assert_eq!(
        r.headers[header::CONTENT_LENGTH],
        pdf.len().to_string().as_str()
    );
    assert_eq!(
        r.headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"Renal clinic letter.pdf\""
    );
    let (_, audit_after) = counts(&f.store, &record);
    assert_eq!(audit_after, audit_before + 1, "the read is audited");
    let events = f.store.audit_events(&record).unwrap();
    assert!(events.iter().any(|e| e
        .event
        .detail
        .as_deref()
        .unwrap_or("")
        .contains("document (API)")));
    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/entries/{doc}/document?disposition=inline"),
    )
    .await;
    assert!(r.headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .starts_with("inline;"));
    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/entries/{doc}/document?disposition=bogus"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    // An entry without a document, and a document whose file is not held here.
    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/entries/{allergy}/document"),
    )
    .await;
    let msg = r.error(StatusCode::NOT_FOUND, "not_found");
    assert!(msg.contains("no document"), "{msg}");
    let elsewhere = DocumentFile {
        hash: cophr_protocol::blob::BlobHash::of(b"held elsewhere"),
        size: 14,
        key: None,
    };
    let r = with_json(
        &f.state,
        Method::POST,
        &format!("/api/v1/records/{rid}/entries"),
        json!({"category": "documents", "body": {"title": "Scan",
            "media-type": "text/plain",
            "file": {"hash": elsewhere.hash.to_hex(), "size": 14}}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let scan = r.json()["id"].as_str().unwrap().to_owned();
    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/entries/{scan}/document"),
    )
    .await;
    let msg = r.error(StatusCode::NOT_FOUND, "not_found");
    assert!(msg.contains("not held"), "{msg}");
}

/// The export's documents over HTTP: listed with their hashes and sizes, each served as
/// its stored (sealed) bytes, which check offline against the entries' names as
/// `cophr verify` checks `FILE.documents/`; audited; unknown or malformed hashes refused.
#[tokio::test]
async fn an_exports_documents_are_listed_and_served_sealed_for_an_offline_check() {
    let f = patient();
    let (rid, _) = seeded(&f).await;
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..200_000u32).map(|i| (i % 241) as u8));
    stored_document(&f, &rid, "Renal clinic letter", "application/pdf", &pdf).await;
    let record: RecordId = rid.parse().unwrap();

    let r = get(&f.state, &format!("/api/v1/records/{rid}/export/documents")).await;
    assert_eq!(r.status, StatusCode::OK);
    let listed = r.json()["documents"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["held"], true);
    let (_, audit_before) = counts(&f.store, &record);
    let r = get(&f.state, listed[0]["url"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes.len() as u64, listed[0]["size"].as_u64().unwrap());
    assert_ne!(
        &r.bytes[..pdf.len().min(r.bytes.len())],
        &pdf[..],
        "sealed, not plain"
    );
    let (_, audit_after) = counts(&f.store, &record);
    assert_eq!(audit_after, audit_before + 1, "audited");

    // Saved beside the export, they check offline (no key) as `cophr verify` checks them.
    let dir = tempfile::tempdir().unwrap();
    let hash = listed[0]["hash"].as_str().unwrap();
    std::fs::write(dir.path().join(hash), &r.bytes).unwrap();
    let doc = cophr_protocol::blob::BlobRef {
        hash: hash.parse().unwrap(),
        size: r.bytes.len() as u64,
    };
    let checked = cophr_node::store::check_documents(&[doc], dir.path());
    assert_eq!(checked.verified, 1, "{checked:?}");

    let unknown = cophr_protocol::blob::BlobHash::of(b"nobody names this");
    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/export/documents/{unknown}"),
    )
    .await;
    r.error(StatusCode::NOT_FOUND, "not_found");
    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/export/documents/not-a-hash"),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

/// A file uploaded as it is (its length given), recognised by its content, sealed into the
/// blob store as it streams, named by a new documents entry; refused clearly, and nothing
/// written, when its type is not accepted or not the one declared, or its length unknown.
#[tokio::test]
async fn a_document_uploaded_is_stored_sealed_and_reads_back() {
    let f = patient();
    let (rid, _) = seeded(&f).await;
    let record: RecordId = rid.parse().unwrap();
    let mut png = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    png.extend((0..200_000u32).map(|i| (i % 253) as u8));
    let upload = |query: &str, body: Vec<u8>, length: bool| {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("/api/v1/records/{rid}/documents?{query}"))
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/octet-stream");
        if length {
            req = req.header(header::CONTENT_LENGTH, body.len());
        }
        let req = req.body(Body::from(body)).unwrap();
        let st = f.state.clone();
        async move {
            let resp = http::router(st).oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec();
            (status, bytes)
        }
    };
    let before = counts(&f.store, &record);
    let (status, _) = upload("title=Leg%20ulcer", png.clone(), false).await;
    assert_eq!(status, StatusCode::LENGTH_REQUIRED);
    let (status, _) = upload(
        "title=Leg%20ulcer",
        b"MZ\x00\x01 not a document".to_vec(),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = upload(
        "title=Leg%20ulcer&media-type=application/pdf",
        png.clone(),
        true,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(String::from_utf8_lossy(&body).contains("image/png"));
    assert_eq!(counts(&f.store, &record), before, "nothing written");

    let (status, body) = upload("title=Leg%20ulcer&date=2026-11-30", png.clone(), true).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let made: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(made["media-type"], "image/png");
    assert_eq!(made["size"], png.len());
    let id = made["id"].as_str().unwrap();
    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/entries/{id}/document"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, png);
    assert_eq!(r.headers[header::CONTENT_TYPE], "image/png");
    // Sealed on disk: the blob store holds no run of the plain file.
    let stored = f.store.blobs().list();
    assert_eq!(stored.len(), 1);
    let mut sealed = Vec::new();
    f.store
        .blobs()
        .open_blob(&stored[0].0)
        .unwrap()
        .read_to_end(&mut sealed)
        .unwrap();
    assert!(!sealed.windows(64).any(|w| w == &png[1000..1064]));
}

#[tokio::test]
async fn a_questionnaire_is_published_assigned_answered_and_scored_through_the_api() {
    let f = patient();
    let (rid, eid) = seeded(&f).await;
    let record: RecordId = rid.parse().unwrap();
    let base = format!("/api/v1/records/{rid}/questionnaires");
    let r = get(&f.state, "/api/v1/questionnaires/built-in").await;
    assert_eq!(r.status, StatusCode::OK);
    let names: Vec<_> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].clone())
        .collect();
    assert_eq!(names, [json!("phq-9"), json!("gad-7")]);
    // Bad questionnaires: refused with what is wrong, nothing stored.
    let before = counts(&f.store, &record).0;
    for (body, says) in [
        (json!({"built_in": "eq-5d"}), "no built-in questionnaire"),
        (
            json!({"questionnaire": {"resourceType": "Questionnaire", "title": "X",
                "item": [{"linkId": "a", "type": "string"}, {"linkId": "a", "type": "boolean"}]}}),
            "linkId `a` is used by two items",
        ),
        (
            json!({"questionnaire": {"resourceType": "Questionnaire", "title": "X",
                "item": [{"linkId": "a", "type": "string", "text": "x".repeat(70 * 1024)}]}}),
            "at most 65536",
        ),
        (
            json!({"questionnaire": {"resourceType": "Patient"}}),
            "resourceType",
        ),
    ] {
        let msg = with_json(&f.state, Method::POST, &base, body)
            .await
            .error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert!(msg.contains(says), "{msg}");
    }
    with_json(&f.state, Method::POST, &base, json!({}))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(counts(&f.store, &record).0, before);

    let r = with_json(&f.state, Method::POST, &base, json!({"built_in": "gad-7"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let q = r.json()["id"].as_str().unwrap().to_owned();
    // Assigning something that is not a questionnaire, or answering it: refused.
    with_json(
        &f.state,
        Method::POST,
        &format!("{base}/{eid}/assign"),
        json!({"due": "2026-12-01"}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    let r = with_json(
        &f.state,
        Method::POST,
        &format!("{base}/{q}/assign"),
        json!({"due": "2020-01-01"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let task = r.json()["id"].as_str().unwrap().to_owned();
    let l = get(&f.state, &base).await.json();
    assert_eq!(l["assigned"][0]["id"], task.as_str());
    assert_eq!(l["assigned"][0]["overdue"], true);
    assert_eq!(
        l["assigned"][0]["title"],
        "Generalized Anxiety Disorder (GAD-7)"
    );
    assert_eq!(
        l["published"][0]["definition"]["scoring"]["bands"][3]["label"],
        "severe"
    );

    let answers = |codes: &[&str]| -> Value {
        codes
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"question": format!("gad7-{}", i + 1), "answer": c}))
            .collect()
    };
    let url = format!("{base}/{q}/responses");
    let before = counts(&f.store, &record).0;
    for (a, says) in [
        (
            answers(&["LA6568-5"; 6]),
            "question `gad7-7` must be answered",
        ),
        (
            answers(&[
                "LA6568-5", "LA6568-5", "LA6568-5", "LA6568-5", "LA6568-5", "LA6568-5", "nope",
            ]),
            "not one of the options",
        ),
        (
            json!([{"question": "gad7-99", "answer": "LA6568-5"}]),
            "no question `gad7-99`",
        ),
        (
            json!([{"question": "gad7-1", "answer": 3}]),
            "takes one of its options' codes",
        ),
    ] {
        let msg = with_json(
            &f.state,
            Method::POST,
            &url,
            json!({"answers": a, "task": task}),
        )
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert!(msg.contains(says), "{msg}");
    }
    assert_eq!(counts(&f.store, &record).0, before);
    // 3+3+2+2+1+1+0 = 12: moderate; the assignment completed.
    let good = answers(&[
        "LA6571-9", "LA6571-9", "LA6570-1", "LA6570-1", "LA6569-3", "LA6569-3", "LA6568-5",
    ]);
    let r = with_json(
        &f.state,
        Method::POST,
        &url,
        json!({"answers": good, "task": task}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    assert_eq!(r.json()["score"], 12);
    assert_eq!(r.json()["band"], "moderate");
    let l = get(&f.state, &base).await.json();
    assert_eq!(l["assigned"][0]["status"], "completed");
    assert_eq!(l["assigned"][0]["overdue"], false);
    assert_eq!(l["responses"][0]["score"], 12);
    assert_eq!(l["responses"][0]["band"], "moderate");
    assert_eq!(l["responses"][0]["task"], task.as_str());
    // The completed assignment takes no second answer.
    with_json(
        &f.state,
        Method::POST,
        &url,
        json!({"answers": good, "task": task}),
    )
    .await
    .error(StatusCode::CONFLICT, "conflict");
    // A forged score through the generic entries API is refused by the gate.
    let before = counts(&f.store, &record).0;
    let msg = with_json(
        &f.state,
        Method::POST,
        &format!("/api/v1/records/{rid}/entries"),
        json!({"category": "questionnaires", "body": {"questionnaire": "GAD-7",
            "questionnaire-entry": q, "answers": good, "score": 2, "band": "minimal"}}),
    )
    .await
    .error(StatusCode::CONFLICT, "rule_failed");
    assert!(
        msg.contains("stated score (2) is not the questionnaire's (12)"),
        "{msg}"
    );
    assert_eq!(counts(&f.store, &record).0, before);
}

#[tokio::test]
async fn tasks_and_appointments_through_the_entries_api_follow_the_care_team_rules() {
    let f = patient();
    let (rid, _) = seeded(&f).await;
    let record: RecordId = rid.parse().unwrap();
    let entries = format!("/api/v1/records/{rid}/entries");
    let clinic = Keypair::from_secret(&[3; 32]).actor().to_string();
    let task = json!({"kind": "referral", "description": "eGFR falling: please review",
        "requester": rid, "owner": clinic, "status": "sent"});
    let r = with_json(
        &f.state,
        Method::POST,
        &entries,
        json!({"category": "tasks", "body": task}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let tid = r.json()["id"].as_str().unwrap().to_owned();
    // Ann sent it: only the clinic may mark it received; out of order is invalid.
    let mut step = task.clone();
    for (status, code, http) in [
        ("received", "forbidden", StatusCode::FORBIDDEN),
        ("completed", "forbidden", StatusCode::FORBIDDEN),
    ] {
        let before = counts(&f.store, &record);
        step["status"] = json!(status);
        let msg = with_json(
            &f.state,
            Method::PUT,
            &format!("{entries}/{tid}"),
            json!({ "body": step }),
        )
        .await
        .error(http, code);
        assert!(msg.contains("only the task's owner"), "{msg}");
        assert_eq!(counts(&f.store, &record).0, before.0);
    }
    step["status"] = json!("cancelled");
    let r = with_json(
        &f.state,
        Method::PUT,
        &format!("{entries}/{tid}"),
        json!({ "body": step }),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    // Closed: nothing follows.
    step["status"] = json!("sent");
    with_json(
        &f.state,
        Method::PUT,
        &format!("{entries}/{tid}"),
        json!({ "body": step }),
    )
    .await
    .error(StatusCode::CONFLICT, "rule_failed");

    // An appointment the next morning: a 1-day reminder is already past, refused.
    let before = counts(&f.store, &record);
    let appt = |reminders: Value| {
        json!({"category": "appointments", "body": {"status": "booked",
            "start": "2026-11-23T09:00:00Z", "description": "Renal clinic",
            "reminders": reminders}})
    };
    let msg = with_json(&f.state, Method::POST, &entries, appt(json!(["1d"])))
        .await
        .error(StatusCode::CONFLICT, "rule_failed");
    assert!(msg.contains("already in the past"), "{msg}");
    assert_eq!(counts(&f.store, &record).0, before.0);
    let r = with_json(&f.state, Method::POST, &entries, appt(json!(["2h", "20h"]))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let aid = r.json()["id"].as_str().unwrap().to_owned();
    // 20 hours before 09:00 is 13:00 today: upcoming within a day; 2 hours, tomorrow 07:00.
    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/reminders?within=4h"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let got = r.json();
    let got: Vec<(&str, &str)> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["before"].as_str().unwrap(), x["state"].as_str().unwrap()))
        .collect();
    assert_eq!(got, vec![("20h", "upcoming")]);
    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/reminders?within=1d"),
    )
    .await;
    assert_eq!(r.json().as_array().unwrap().len(), 2);
    assert!(r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["appointment"] == aid.as_str()));
    get(
        &f.state,
        &format!("/api/v1/records/{rid}/reminders?within=soon"),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "invalid_input");
}

#[tokio::test]
async fn extension_schemas_are_defined_listed_shown_and_enforced_through_the_api() {
    let f = patient();
    let (rid, _) = seeded(&f).await;
    let record: RecordId = rid.parse().unwrap();
    let wound: Value = serde_json::from_str(cophr_protocol::schema::EXAMPLES[1].1).unwrap();
    let schemas = format!("/api/v1/records/{rid}/schemas");
    // Refused definitions store nothing: a core category, a say on access, malformed.
    let before = counts(&f.store, &record);
    let mut core = wound.clone();
    core["category"] = json!("allergies");
    let msg = with_json(&f.state, Method::POST, &schemas, core)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(msg.contains("allergies is a core category"), "{msg}");
    let mut access = wound.clone();
    access["access"] = json!({"level": "view"});
    let msg = with_json(&f.state, Method::POST, &schemas, access)
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert!(msg.contains("no say on access"), "{msg}");
    assert_eq!(counts(&f.store, &record), before);
    // Defined, listed, shown.
    let r = with_json(&f.state, Method::POST, &schemas, wound.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let list = get(&f.state, &schemas).await.json();
    assert_eq!(list[0]["name"], "ext:uk.nhs.tissue-viability/wound-care");
    assert_eq!(list[0]["version"], 1);
    assert_eq!(list[0]["fields"][0]["codes"][0], "pressure-ulcer");
    let one = get(
        &f.state,
        &format!("{schemas}/ext%3Auk.nhs.tissue-viability%2Fwound-care"),
    )
    .await
    .json();
    let as_schema = |v: &Value| {
        cophr_protocol::schema::ExtensionSchema::from_json(&v.to_string()).expect("a definition")
    };
    // As posted, each field given its archetype node (from at1001, in order).
    let mut posted = as_schema(&wound);
    posted.assign_nodes(None);
    assert_eq!(as_schema(&one["definition"]), posted);
    assert_eq!(one["definition"]["fields"][1]["node"], 1002);
    assert_eq!(one["versions"].as_array().unwrap().len(), 1);
    // An incompatible version 2 is refused, naming the field.
    let mut v2 = wound.clone();
    v2["version"] = json!(2);
    v2["fields"][0]["codes"] = json!(["other"]);
    let msg = with_json(&f.state, Method::POST, &schemas, v2)
        .await
        .error(StatusCode::CONFLICT, "rule_failed");
    assert!(msg.contains("field `wound-type` drops code"), "{msg}");
    // Entries validate against it: a bare number is a quantity in the first unit.
    let entries = format!("/api/v1/records/{rid}/entries");
    let body = json!({"wound-type": "pressure-ulcer", "location": "sacrum", "length": 2.5,
                      "assessed": "2026-12-01T10:00:00Z"});
    let r = with_json(
        &f.state,
        Method::POST,
        &entries,
        json!({"category": "ext:uk.nhs.tissue-viability/wound-care", "body": body}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let before = counts(&f.store, &record);
    let msg = with_json(
        &f.state,
        Method::POST,
        &entries,
        json!({"category": "ext:uk.nhs.tissue-viability/wound-care",
               "body": {"wound-type": "graze", "location": "knee", "assessed": "2026-12-01T10:00:00Z"}}),
    )
    .await
    .error(StatusCode::CONFLICT, "rule_failed");
    assert!(msg.contains("field `wound-type`"), "{msg}");
    assert_eq!(counts(&f.store, &record), before);
    // Reading the schemas is audited as a view.
    let trail = get(
        &f.state,
        &format!("/api/v1/records/{rid}/audit?own=include"),
    )
    .await
    .json();
    assert!(
        trail.to_string().contains("extension schemas (API)"),
        "{trail}"
    );
}

/// A message with a file attached (`POST …/threads/{eid}/attachments`): written into the
/// thread with the file stored apart and served back; its text, the thread and the file's
/// type are checked — and a refusal stores nothing.
#[tokio::test]
async fn a_message_with_a_file_attached_is_checked_before_the_file_is_read() {
    let f = patient();
    let (rid, allergy) = seeded(&f).await;
    let record: RecordId = rid.parse().unwrap();
    let bob = Keypair::from_secret(&[2; 32]).actor().to_string();
    let r = with_json(
        &f.state,
        Method::POST,
        &format!("/api/v1/records/{rid}/grants"),
        json!({"grantee": bob, "categories": ["messages"], "level": "write"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let r = with_json(
        &f.state,
        Method::POST,
        &format!("/api/v1/records/{rid}/entries"),
        json!({"category": "messages", "body": {"text": "Your scan", "participants": [bob]}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let thread = r.json()["id"].as_str().unwrap().to_owned();
    let attach =
        |query: &str| format!("/api/v1/records/{rid}/threads/{thread}/attachments?{query}");
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..70_000u32).map(|i| (i % 251) as u8));

    // Refused, nothing stored: no text; not a thread; not a file of an accepted type; no
    // length.
    let before = counts(&f.store, &record);
    let blobs_before = f.store.documents_held().len();
    let post = |path: String, body: Vec<u8>| {
        let st = f.state.clone();
        async move { send(&st, Method::POST, &path, Some(TOKEN), None, body).await }
    };
    post(attach("text="), pdf.clone())
        .await
        .error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let path = format!("/api/v1/records/{rid}/threads/{allergy}/attachments?text=Hi");
    post(path, pdf.clone())
        .await
        .error(StatusCode::NOT_FOUND, "not_found");
    let r = post(attach("text=Hi"), vec![0x13; 4096]).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = post(attach("text=Hi"), Vec::new()).await;
    assert_eq!(r.status, StatusCode::LENGTH_REQUIRED);
    assert_eq!(counts(&f.store, &record).0, before.0, "no entry written");
    assert_eq!(
        f.store.documents_held().len(),
        blobs_before,
        "no file stored"
    );

    // Written: the thread shows the message with its attachment, and the file reads back.
    let r = post(
        attach(&format!("text=The%20report&in-reply-to={thread}")),
        pdf.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["thread"], thread.as_str());
    let view = get(&f.state, &format!("/api/v1/records/{rid}/threads/{thread}"))
        .await
        .json();
    let m = view["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == id.as_str())
        .cloned()
        .expect("the message in its thread");
    assert_eq!(m["text"], "The report");
    assert_eq!(m["in_reply_to"], thread.as_str());
    assert_eq!(m["attachment"]["size"], pdf.len());
    let r = get(
        &f.state,
        &format!("/api/v1/records/{rid}/entries/{id}/document"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.bytes, pdf);
}

/// The document's per-category body schemas are the ones generated from the category
/// tables (`cophr_node::http::openapi`). `COPHR_WRITE_OPENAPI=1` rewrites the document
/// with them (then review and commit it).
#[test]
fn the_document_holds_the_entry_schemas_generated_from_the_category_tables() {
    let doc = document();
    let want = cophr_node::http::openapi::with_generated(doc.clone());
    if doc == want {
        return;
    }
    if std::env::var("COPHR_WRITE_OPENAPI").as_deref() == Ok("1") {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/openapi.json");
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b" ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        serde::Serialize::serialize(&want, &mut ser).expect("JSON");
        out.push(b'\n');
        std::fs::write(&path, out).expect("write openapi.json");
        panic!("rewrote {}: rebuild and review it", path.display());
    }
    let generated = cophr_node::http::openapi::entry_schemas();
    let stale: Vec<&String> = generated
        .iter()
        .filter(|(k, v)| doc["components"]["schemas"].get(k.as_str()) != Some(v))
        .map(|(k, _)| k)
        .collect();
    panic!(
        "openapi.json's entry schemas differ from the category tables' ({stale:?}): run \
         COPHR_WRITE_OPENAPI=1 cargo test -p cophr-node --test http the_document_holds"
    );
}
