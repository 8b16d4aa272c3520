//! Emergency summary shares over the HTTP API, in process (`docs/emergency-summary.md`): made
//! by the patient only, served as ciphertext the node cannot read, every opening audited,
//! refused once ended or expired.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, StatusCode};
use cophr_node::http::share::{Limiter, OPENS_PER_ADDRESS_PER_MINUTE};
use cophr_node::http::{self, AppState};
use cophr_node::store::Store;
use cophr_protocol::audit::Action;
use cophr_protocol::share::{self, ShareId, ShareKey};
use cophr_protocol::{Keypair, Profile, RecordId};
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;

const TOKEN: &str = "testtokenabcdefghijklmnopqrstuvwxyz234567abcdefghijk";
/// 2026-11-22T10:00:00Z.
const START: u64 = 1_795_341_600_000;
const OPENER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 50_000);

struct Fixture {
    dir: TempDir,
    store: Store,
    ann: AppState,
    mary: AppState,
    clock: Arc<AtomicU64>,
    rid: String,
}

fn profile(name: &str, role: &str) -> Profile {
    Profile {
        name: name.into(),
        role: role.into(),
        organisation: None,
        attestations: Vec::new(),
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    bytes: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }
}

async fn send(st: &AppState, method: Method, path: &str, token: bool, body: Option<Value>) -> Resp {
    let mut req = Request::builder().method(method).uri(path);
    if token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&b).unwrap())
        }
        None => Body::empty(),
    };
    let mut req = req.body(body).unwrap();
    req.extensions_mut().insert(ConnectInfo(OPENER));
    let resp = http::router(st.clone()).oneshot(req).await.unwrap();
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

/// Ann's record with an allergy, a medication and a lab result, on a node where Ann and
/// (over the same store) Mary act.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), Keypair::from_secret(&[9; 32])).unwrap();
    let clock = Arc::new(AtomicU64::new(START));
    let state = |key: Keypair, p: Profile| {
        let c = clock.clone();
        AppState::new(store.clone(), key, p, None, TOKEN.into())
            .with_clock(move || c.load(Ordering::SeqCst))
    };
    let ann = state(
        Keypair::from_secret(&[1; 32]),
        profile("Ann Patient", "patient"),
    );
    let mary = state(Keypair::from_secret(&[2; 32]), profile("Mary", "carer"));
    let r = send(&ann, Method::POST, "/api/v1/records", true, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let rid = r.json()["record"].as_str().unwrap().to_owned();
    for (category, body) in [
        (
            "allergies",
            json!({"agent": "Penicillin", "reaction": "rash"}),
        ),
        ("medications", json!({"medication": "Metformin 500 mg"})),
        (
            "lab-results",
            json!({"test": "HbA1c", "result": "SECRET-48"}),
        ),
    ] {
        clock.fetch_add(1000, Ordering::SeqCst);
        let r = send(
            &ann,
            Method::POST,
            &format!("/api/v1/records/{rid}/entries"),
            true,
            Some(json!({"category": category, "body": body})),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    }
    Fixture {
        dir,
        store,
        ann,
        mary,
        clock,
        rid,
    }
}

async fn create(f: &Fixture, body: Value) -> Resp {
    send(
        &f.ann,
        Method::POST,
        &format!("/api/v1/records/{}/shares", f.rid),
        true,
        Some(body),
    )
    .await
}

/// The share id and key of a link.
fn parts(link: &str) -> (ShareId, ShareKey) {
    let (url, key) = link.split_once('#').unwrap();
    let id = url.rsplit('/').next().unwrap().parse().unwrap();
    (id, ShareKey::from_text(key).unwrap())
}

fn files_under(dir: &std::path::Path, out: &mut Vec<Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(std::fs::read(&p).unwrap());
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_share_serves_ciphertext_audits_every_opening_and_never_holds_the_key() {
    let f = fixture().await;
    let r = create(
        &f,
        json!({"expires_in": "12h", "label": "A&E", "base_url": "https://phr.example/"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    let made = r.json();
    let link = made["link"].as_str().unwrap();
    assert!(link.starts_with("https://phr.example/s/"), "{link}");
    assert!(made["shlink"].as_str().unwrap().starts_with("shlink:/"));
    assert!(made["qr_svg"].as_str().unwrap().contains("<svg"));
    assert_eq!(made["status"], "active");
    assert_eq!(made["items"], 2);
    let (id, key) = parts(link);
    assert_eq!(made["id"], id.to_string());

    // The page: static, public, under the strict policy, holding nothing of the share.
    let page = send(&f.mary, Method::GET, &format!("/s/{id}"), false, None).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .contains("script-src 'self'"));
    let html = String::from_utf8(page.bytes).unwrap();
    assert!(html.contains("/share.js") && !html.contains("Penicillin"));
    let js = send(&f.mary, Method::GET, "/share.js", false, None).await;
    assert_eq!(js.status, StatusCode::OK);

    // The ciphertext, without a token; it opens with the link's key only.
    let audit_before = f.store.audit_events(&f.rid.parse().unwrap()).unwrap().len();
    let blob = send(&f.mary, Method::GET, &format!("/s/{id}/blob"), false, None).await;
    assert_eq!(blob.status, StatusCode::OK);
    assert_eq!(blob.headers[header::CONTENT_TYPE], "application/jose");
    assert_eq!(blob.headers[header::CACHE_CONTROL], "no-store");
    assert!(!contains(&blob.bytes, b"Penicillin"));
    let plain = share::open(&key, &blob.bytes).unwrap();
    let bundle: Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(bundle["type"], "document");
    assert_eq!(
        bundle["entry"][0]["resource"]["resourceType"],
        "Composition"
    );
    let text = bundle.to_string();
    assert!(text.contains("Penicillin") && text.contains("Metformin 500 mg"));
    assert!(!text.contains("SECRET-48"), "lab results are not shared");

    // Audited: a view by the share's pseudonymous opener, from the address, naming the
    // items; never the key or the contents.
    let rid: RecordId = f.rid.parse().unwrap();
    let events = f.store.audit_events(&rid).unwrap();
    assert_eq!(events.len(), audit_before + 1);
    let e = &events.last().unwrap().event;
    assert_eq!(e.action, Action::View);
    assert_eq!(e.actor, id.opener());
    assert_eq!(e.device.as_deref(), Some("192.0.2.7"));
    assert_eq!(
        e.actor_name.as_deref(),
        Some("Someone with the emergency summary link")
    );
    assert_eq!(e.entries.len(), 2);
    let detail = e.detail.as_deref().unwrap();
    assert!(
        detail.contains(&format!("emergency summary opened via share {id}"))
            && detail.contains("from 192.0.2.7"),
        "{detail}"
    );
    // Making it was audited as the patient's export of those items.
    assert!(events.iter().any(|a| a.event.action == Action::Export
        && a.event.actor == rid
        && a.event
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("emergency summary shared")));
    // And over the API: the audit trail shows it to the patient.
    let trail = send(
        &f.ann,
        Method::GET,
        &format!("/api/v1/records/{}/audit", f.rid),
        true,
        None,
    )
    .await;
    assert!(trail
        .json()
        .to_string()
        .contains("emergency summary opened via share"));

    // Listed with its openings.
    let list = send(
        &f.ann,
        Method::GET,
        &format!("/api/v1/records/{}/shares", f.rid),
        true,
        None,
    )
    .await;
    assert_eq!(list.status, StatusCode::OK);
    let rows = list.json();
    assert_eq!(rows[0]["id"], id.to_string());
    assert_eq!(rows[0]["opens"], 1);
    assert_eq!(rows[0]["label"], "A&E");
    assert!(rows[0].get("link").is_none(), "the key is never listed");

    // The node never holds the key or the plaintext summary in what it keeps of the
    // share; no file of the store holds the key.
    let kept = f.store.meta(&format!("share-blob/{id}")).unwrap().unwrap();
    assert!(!contains(&kept, b"Penicillin") && !contains(&kept, b"Metformin"));
    let desc = f.store.meta(&format!("share/{id}")).unwrap().unwrap();
    assert!(!contains(&desc, b"Penicillin"));
    let mut files = Vec::new();
    files_under(f.dir.path(), &mut files);
    assert!(!files.is_empty());
    for bytes in &files {
        assert!(!contains(bytes, key.to_text().as_bytes()));
        assert!(!contains(bytes, &key.0));
    }
}

#[tokio::test]
async fn an_ended_share_is_gone_and_its_ciphertext_dropped() {
    let f = fixture().await;
    let made = create(&f, json!({"base_url": "https://phr.example"}))
        .await
        .json();
    let (id, _) = parts(made["link"].as_str().unwrap());
    let path = format!("/api/v1/records/{}/shares/{id}", f.rid);
    // Not by anyone else.
    let r = send(&f.mary, Method::DELETE, &path, true, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = send(&f.ann, Method::DELETE, &path, true, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json());
    assert_eq!(r.json()["status"], "ended");
    let rid: RecordId = f.rid.parse().unwrap();
    let audit_before = f.store.audit_events(&rid).unwrap().len();
    let blob = send(&f.mary, Method::GET, &format!("/s/{id}/blob"), false, None).await;
    assert_eq!(blob.status, StatusCode::GONE);
    assert_eq!(blob.json()["error"]["code"], "gone");
    assert_eq!(
        f.store.audit_events(&rid).unwrap().len(),
        audit_before,
        "nothing served"
    );
    assert_eq!(
        f.store.meta(&format!("share-blob/{id}")).unwrap().unwrap(),
        b""
    );
    // Ending again is fine; the list says ended.
    let r = send(&f.ann, Method::DELETE, &path, true, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = send(
        &f.ann,
        Method::GET,
        &format!("/api/v1/records/{}/shares", f.rid),
        true,
        None,
    )
    .await;
    assert_eq!(list.json()[0]["status"], "ended");
    // An unknown share.
    let other = ShareId([7; 16]);
    let r = send(
        &f.ann,
        Method::DELETE,
        &format!("/api/v1/records/{}/shares/{other}", f.rid),
        true,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(
        &f.mary,
        Method::GET,
        &format!("/s/{other}/blob"),
        false,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = send(&f.mary, Method::GET, "/s/..%2F..%2Fetc/blob", false, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_expired_share_is_refused() {
    let f = fixture().await;
    let made = create(
        &f,
        json!({"expires_in": "30m", "base_url": "https://phr.example"}),
    )
    .await
    .json();
    let (id, _) = parts(made["link"].as_str().unwrap());
    let blob = send(&f.mary, Method::GET, &format!("/s/{id}/blob"), false, None).await;
    assert_eq!(blob.status, StatusCode::OK);
    f.clock.fetch_add(30 * 60 * 1000, Ordering::SeqCst);
    let blob = send(&f.mary, Method::GET, &format!("/s/{id}/blob"), false, None).await;
    assert_eq!(blob.status, StatusCode::GONE);
    let list = send(
        &f.ann,
        Method::GET,
        &format!("/api/v1/records/{}/shares", f.rid),
        true,
        None,
    )
    .await;
    assert_eq!(list.json()[0]["status"], "expired");
    assert_eq!(list.json()[0]["opens"], 1);
}

#[tokio::test]
async fn only_the_patient_shares_and_input_is_bounded() {
    let f = fixture().await;
    let base = format!("/api/v1/records/{}/shares", f.rid);
    let rid: RecordId = f.rid.parse().unwrap();
    let audit_before = f.store.audit_events(&rid).unwrap().len();
    let r = send(
        &f.mary,
        Method::POST,
        &base,
        true,
        Some(json!({"base_url": "https://x.example"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.json());
    let r = send(&f.mary, Method::GET, &base, true, None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Without the token.
    let r = send(&f.ann, Method::POST, &base, false, Some(json!({}))).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    for bad in [
        json!({"expires_in": "8d", "base_url": "https://x.example"}),
        json!({"expires_in": "0m", "base_url": "https://x.example"}),
        json!({"expires_in": "soon", "base_url": "https://x.example"}),
        json!({"label": "x".repeat(201), "base_url": "https://x.example"}),
        json!({"base_url": "javascript:alert(1)"}),
        json!({"base_url": "https://x.example/#frag"}),
        json!({"unknown": 1}),
    ] {
        let r = create(&f, bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.json());
    }
    // Without a Host header and a base URL, there is nothing to link to.
    let r = create(&f, json!({})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Nothing refused was audited or kept.
    assert_eq!(f.store.audit_events(&rid).unwrap().len(), audit_before);
    let list = send(&f.ann, Method::GET, &base, true, None).await;
    assert_eq!(list.json(), json!([]));
    // A record not held here.
    let other = Keypair::from_secret(&[3; 32]).actor();
    let r = send(
        &f.ann,
        Method::GET,
        &format!("/api/v1/records/{other}/shares"),
        true,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn the_link_follows_the_host_the_patient_used() {
    let f = fixture().await;
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v1/records/{}/shares", f.rid))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::HOST, "node.local:7380")
        .body(Body::from("{}"))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(OPENER));
    let resp = http::router(f.ann.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(v["link"]
        .as_str()
        .unwrap()
        .starts_with("http://node.local:7380/s/"));
    // 24 hours by default.
    assert_eq!(v["expires"], "2026-11-23T10:00:03Z");
}

#[test]
fn openings_are_rate_limited_per_address_and_per_share() {
    let l = Limiter::default();
    let a = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let b = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
    let id = ShareId([1; 16]);
    let t = START;
    for _ in 0..OPENS_PER_ADDRESS_PER_MINUTE {
        assert!(l.allow(a, &id, t));
    }
    assert!(!l.allow(a, &id, t + 1000), "over the per-address limit");
    assert!(l.allow(b, &id, t + 1000), "another address");
    assert!(l.allow(a, &id, t + 60_000), "the next minute");
    // Per share, whatever the address.
    let other = ShareId([2; 16]);
    let mut allowed = 0;
    for n in 0..500u64 {
        let from = Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n as u32)));
        if l.allow(from, &other, t) {
            allowed += 1;
        }
    }
    assert_eq!(allowed, cophr_node::http::share::OPENS_PER_SHARE_PER_HOUR);
}

#[tokio::test]
async fn shares_per_record_are_bounded_and_ended_ones_make_room() {
    let f = fixture().await;
    let mut ids = Vec::new();
    for _ in 0..share::MAX_SHARES {
        let r = create(&f, json!({"base_url": "https://phr.example"})).await;
        assert_eq!(r.status, StatusCode::CREATED);
        ids.push(r.json()["id"].as_str().unwrap().to_owned());
    }
    let rid: RecordId = f.rid.parse().unwrap();
    let audit_before = f.store.audit_events(&rid).unwrap().len();
    let r = create(&f, json!({"base_url": "https://phr.example"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        f.store.audit_events(&rid).unwrap().len(),
        audit_before,
        "nothing read"
    );
    let path = format!("/api/v1/records/{}/shares/{}", f.rid, ids[0]);
    assert_eq!(
        send(&f.ann, Method::DELETE, &path, true, None).await.status,
        StatusCode::OK
    );
    let r = create(&f, json!({"base_url": "https://phr.example"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let list = send(
        &f.ann,
        Method::GET,
        &format!("/api/v1/records/{}/shares", f.rid),
        true,
        None,
    )
    .await;
    assert_eq!(list.json().as_array().unwrap().len(), share::MAX_SHARES);
}
