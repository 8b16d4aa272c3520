//! A patient with no node of their own, against a real host: the page's protocol core
//! (`cophr-wasm`, here natively) opens the key backup the host keeps and syncs, reads and
//! writes over the host's `POST /sync` (the router in process, a real network node and
//! store behind it). The host is a blind relay: it holds what the page wrote, signed by the
//! patient, and cannot open it. Refusals of malformed requests are clear and store nothing.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use cophr_node::http::{self, AppState};
use cophr_protocol::backup::{KdfParams, KeyBackup};
use cophr_protocol::record::ContentState;
use cophr_protocol::sync::server::SyncStore;
use cophr_protocol::testkit::{key, profile};
use cophr_protocol::{Keypair, Payload, RecordId};
use cophr_wasm::Patient;
use data_encoding::BASE64;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::{json, Value};
use tower::ServiceExt;

mod support;
use support::{api_of, net_node, net_node_hosting, NetNode};

const TOKEN: &str = "testtokenabcdefghijklmnopqrstuvwxyz234567abcdefghijk";
const PASS: &str = "a long passphrase George chose";

/// A request without any token, as a browser on the host's page sends it.
async fn send(
    st: &AppState,
    method: Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let resp = http::router(st.clone())
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, bytes)
}

async fn post_sync(st: &AppState, body: Vec<u8>) -> Vec<u8> {
    let (status, bytes) = send(st, Method::POST, "/sync", Some("application/cbor"), body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    bytes
}

/// One sync of the page with the host, over `POST /sync`.
async fn sync(st: &AppState, p: &mut Patient, push: bool, rng: &mut impl RngCore) -> Value {
    p.start_sync(push);
    let mut trips = 0;
    loop {
        let mut nonce = [0u8; 16];
        rng.fill_bytes(&mut nonce);
        let Some(request) = p.next_request(http::system_clock(), nonce) else {
            break;
        };
        trips += 1;
        assert!(trips < 100, "the sync ends");
        let answer = post_sync(st, request).await;
        p.handle_response(&answer);
    }
    p.sync_report()
}

/// George's record, written on his own node (sealed, with an allergy), hosted on a
/// community host that keeps his encrypted key backup and is only a relay.
async fn georges_record_on_a_relay() -> (NetNode, AppState, Keypair, RecordId, Vec<u8>) {
    georges_record_on_a_host(Default::default()).await
}

/// [`georges_record_on_a_relay`], the host taking records as `policy` says.
async fn georges_record_on_a_host(
    policy: cophr_protocol::sync::server::HostPolicy,
) -> (NetNode, AppState, Keypair, RecordId, Vec<u8>) {
    let george = key(3, "George");
    let gnode = net_node("browser/george", &george).await;
    let gst = api_of(
        &gnode,
        &george,
        profile("George Jones", "patient", None),
        TOKEN,
    );
    let host_identity = key(3, "Host");
    let host = net_node_hosting("browser/host", &host_identity, policy).await;
    let hst = api_of(
        &host,
        &host_identity,
        profile("Leeds Community Host", "host", None),
        TOKEN,
    );
    let auth = |m: Method, path: &str, body: Value| {
        Request::builder()
            .method(m)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let resp = http::router(gst.clone())
        .oneshot(auth(Method::POST, "/api/v1/records", json!({})))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let record = george.actor();
    let resp = http::router(gst.clone())
        .oneshot(auth(
            Method::POST,
            &format!("/api/v1/records/{record}/entries"),
            json!({"category": "allergies", "body": {"agent": "Penicillin", "reaction": "I am deaf in my left ear"}}),
        ))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // The host takes a replica of the record (as a push to it would) and the backup.
    let all = gnode
        .handle
        .store()
        .with_record(&record, |r| r.entries().collect::<Vec<_>>())
        .unwrap();
    host.handle.store().ingest(&record, all).unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(3);
    let backup = KeyBackup::seal(&george, None, PASS, KdfParams::MIN, &mut rng)
        .unwrap()
        .bytes()
        .to_vec();
    let mut store = host.handle.store().clone();
    store.put_backup(&george.actor(), &backup).unwrap();
    drop(gnode);
    (host, hst, george, record, backup)
}

#[tokio::test]
async fn a_browser_patient_reads_and_writes_a_sealed_record_through_a_blind_host() {
    let (host, hst, george, record, backup) = georges_record_on_a_relay().await;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(4);

    // The page learns the host's transport identity, to bind its proofs to.
    let (status, info) = send(&hst, Method::GET, "/sync", None, Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    let info: Value = serde_json::from_slice(&info).unwrap();
    let server = BASE64
        .decode(info["server"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(server, host.handle.peer_id().to_bytes());

    // The backup comes over the same endpoint, and opens only in the page.
    let answer = post_sync(
        &hst,
        cophr_wasm::backup_request(&george.actor().to_string()).unwrap(),
    )
    .await;
    let fetched = cophr_wasm::backup_from_response(&answer).unwrap();
    assert_eq!(fetched, backup);
    let mut page = Patient::open(&fetched, PASS, None, &server).unwrap();

    let report = sync(&hst, &mut page, false, &mut rng).await;
    assert_eq!(report["error"], Value::Null, "{report}");
    let items = page.items(http::system_clock());
    assert_eq!(
        items["items"][0]["body"]["reaction"], "I am deaf in my left ear",
        "{items}"
    );

    // Written in the page: sealed and signed there, pushed to the host.
    let id = page
        .add(
            "allergies",
            r#"{"agent": "Latex", "reaction": "written in a browser"}"#,
            http::system_clock(),
            &mut rng,
        )
        .unwrap();
    let report = sync(&hst, &mut page, true, &mut rng).await;
    assert_eq!(report["error"], Value::Null, "{report}");
    assert!(report["pushed"].as_u64().unwrap() >= 1, "{report}");
    let (author, sealed, state) = host
        .handle
        .store()
        .with_record(&record, |r| {
            let e = r.get(&id).expect("the host holds it");
            (
                e.entry().author,
                matches!(e.entry().payload, Payload::SealedCreate { .. }),
                matches!(r.content_state(&id), Some(ContentState::Locked)),
            )
        })
        .unwrap();
    assert_eq!(
        author,
        george.actor(),
        "signed by George's key, in the page"
    );
    assert!(
        sealed && state,
        "the host holds it sealed and cannot open it"
    );
    // The pull by the page is in the host's audit trail, naming the web client.
    let audit = host.handle.store().audit_events(&record).unwrap();
    assert!(
        audit
            .iter()
            .any(|a| format!("{:?}", a.event).contains("web client")),
        "the host audited what it served to the page"
    );
}

#[tokio::test]
async fn malformed_or_misdirected_sync_requests_are_refused_and_store_nothing() {
    let (host, hst, _george, record, backup) = georges_record_on_a_relay().await;
    let before = host
        .handle
        .store()
        .with_record(&record, |r| r.len())
        .unwrap();
    // Not CBOR: 415. Garbage CBOR: 400.
    let (s, _) = send(
        &hst,
        Method::POST,
        "/sync",
        Some("application/json"),
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, body) = send(
        &hst,
        Method::POST,
        "/sync",
        Some("application/cbor"),
        vec![0xff; 64],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("not a sync request"));
    // A proof bound to another host is refused by the sync server.
    let mut page = Patient::open(&backup, PASS, None, b"another host").unwrap();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
    let report = sync(&hst, &mut page, false, &mut rng).await;
    assert!(
        report["error"].as_str().unwrap_or("").contains("refused"),
        "{report}"
    );
    assert_eq!(page.items(http::system_clock())["entries"], 0);
    // Without a network node there is no sync endpoint (503), and no token is needed to
    // learn that.
    let bare = AppState::new(
        host.handle.store().clone(),
        key(3, "Host"),
        profile("Host", "host", None),
        None,
        TOKEN.into(),
    );
    let (s, _) = send(&bare, Method::GET, "/sync", None, Vec::new()).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let after = host
        .handle
        .store()
        .with_record(&record, |r| r.len())
        .unwrap();
    assert_eq!(before, after);
}

#[tokio::test]
async fn the_page_and_its_webassembly_are_served_without_a_token_under_a_strict_policy() {
    let (_host, hst, ..) = georges_record_on_a_relay().await;
    for (path, ty) in [
        ("/patient.html", "text/html"),
        ("/patient.js", "text/javascript"),
        ("/patient.css", "text/css"),
        ("/pkg/cophr_wasm.js", "text/javascript"),
        ("/pkg/cophr_wasm_bg.wasm", "application/wasm"),
    ] {
        let resp = http::router(hst.clone())
            .oneshot(Request::builder().uri(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let h = resp.headers();
        assert!(
            h[header::CONTENT_TYPE].to_str().unwrap().starts_with(ty),
            "{path}"
        );
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
    }
    // The REST API still needs the token.
    let resp = http::router(hst.clone())
        .oneshot(
            Request::builder()
                .uri("/api/v1/records")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

/// Key backup gets carry no proof and are rate limited; over HTTP every browser has the
/// same client identity, so they are counted per address: one caller using up its gets
/// does not lock everyone else out.
#[tokio::test]
async fn key_backup_gets_over_http_are_limited_per_address() {
    use axum::extract::ConnectInfo;
    use cophr_protocol::sync::{Refusal, Response, BACKUP_GETS_PER_WINDOW};
    let (_host, hst, george, ..) = georges_record_on_a_relay().await;
    let ask = |ip: [u8; 4]| {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/sync")
            .header(header::CONTENT_TYPE, "application/cbor")
            .body(Body::from(
                cophr_wasm::backup_request(&george.actor().to_string()).unwrap(),
            ))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(std::net::SocketAddr::from((ip, 40000))));
        let st = hst.clone();
        async move {
            let resp = http::router(st).oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            cophr_protocol::sync::decode::<Response>(&bytes).unwrap()
        }
    };
    for _ in 0..BACKUP_GETS_PER_WINDOW {
        assert!(matches!(
            ask([10, 0, 0, 1]).await,
            Response::Backup { backup: Some(_) }
        ));
    }
    assert!(matches!(
        ask([10, 0, 0, 1]).await,
        Response::Refused {
            code: Refusal::RateLimited,
            ..
        }
    ));
    // Another address still gets it.
    assert!(matches!(
        ask([10, 0, 0, 2]).await,
        Response::Backup { backup: Some(_) }
    ));
}

/// A request to `/sync/blobs/…` without a token, with its proof header (if any) and its
/// declared length.
async fn send_blob(
    st: &AppState,
    method: Method,
    path: &str,
    proof: Option<String>,
    length: Option<u64>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(p) = proof {
        req = req.header("x-cophr-proof", p);
    }
    if let Some(n) = length {
        req = req.header(header::CONTENT_LENGTH, n);
    }
    let resp = http::router(st.clone())
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    (status, bytes)
}

/// The page's proof header for one transfer.
fn blob_proof(
    page: &Patient,
    op: cophr_protocol::sync::BlobOp,
    doc: &cophr_protocol::blob::BlobRef,
    rng: &mut impl RngCore,
) -> String {
    let mut nonce = [0u8; 16];
    rng.fill_bytes(&mut nonce);
    BASE64.encode(&page.blob_proof(op, doc, http::system_clock(), nonce))
}

/// A PNG of a few segments, sealed as the page seals it.
fn sealed_png(
    rng: &mut rand_chacha::ChaCha20Rng,
) -> (Vec<u8>, cophr_wasm::SealedDocument, Vec<u8>) {
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend((0..150_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let mut sealer = cophr_wasm::DocumentSealer::new(file.len() as u64, rng).unwrap();
    let mut sealed = Vec::new();
    for i in 0..sealer.segments() {
        let (at, len) = sealer.span(i).unwrap();
        sealed.extend(sealer.seal(&file[at as usize..at as usize + len]).unwrap());
    }
    (file, sealer.finish().unwrap(), sealed)
}

/// Whether the host's blob store holds anything at all.
fn blobs_held(host: &NetNode) -> usize {
    host.handle.store().blobs().list().len()
}

/// The page attaches a document through the blind host: its sealed bytes go up with a
/// proof for exactly that upload, the entry naming them is pushed sealed, and the page
/// fetches the sealed bytes back (audited) and opens them to the file. The host holds only
/// sealed bytes.
#[tokio::test]
async fn a_browser_patient_attaches_and_opens_a_document_through_a_blind_host() {
    use cophr_protocol::sync::BlobOp;
    let (host, hst, _george, record, backup) = georges_record_on_a_relay().await;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
    let server = host.handle.peer_id().to_bytes();
    let mut page = Patient::open(&backup, PASS, None, &server).unwrap();
    sync(&hst, &mut page, false, &mut rng).await;

    let (file, doc, sealed) = sealed_png(&mut rng);
    let r = doc.blob_ref();
    let path = format!("/sync/blobs/{}", r.hash);
    let proof = blob_proof(&page, BlobOp::Put, &r, &mut rng);
    let (s, body) = send_blob(
        &hst,
        Method::PUT,
        &path,
        Some(proof.clone()),
        Some(r.size),
        sealed.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    assert!(host.handle.store().blobs().has(&r.hash));
    // The same proof again is a replay: refused.
    let (s, _) = send_blob(
        &hst,
        Method::PUT,
        &path,
        Some(proof),
        Some(r.size),
        sealed.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let id = page
        .add_document(&doc, "Wound photo", None, http::system_clock(), &mut rng)
        .unwrap();
    let report = sync(&hst, &mut page, true, &mut rng).await;
    assert_eq!(report["error"], Value::Null, "{report}");
    let named = host
        .handle
        .store()
        .with_record(&record, |r| {
            matches!(r.content_state(&id), Some(ContentState::Locked))
        })
        .unwrap();
    assert!(named, "the host holds the entry and cannot open it");

    // Fetched back whole, sealed; opened in the page to the file, byte for byte.
    let audited_before = host.handle.store().audit_events(&record).unwrap().len();
    let get = format!("{path}?size={}", r.size);
    let proof = blob_proof(&page, BlobOp::Get, &r, &mut rng);
    let (s, fetched) = send_blob(&hst, Method::GET, &get, Some(proof), None, Vec::new()).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&fetched));
    assert_eq!(fetched, sealed);
    let mut opener = page
        .document(&id.to_string(), http::system_clock())
        .unwrap();
    let mut opened = Vec::new();
    for piece in fetched.chunks(40_000) {
        opened.extend(opener.push(piece).unwrap());
    }
    opener.finish().unwrap();
    assert_eq!(opened, file);
    // The fetch is in the host's audit trail (before a byte was sent): a view by George of
    // the entry naming it, from the web client.
    let audit = host.handle.store().audit_events(&record).unwrap();
    let served = audit.get(audited_before..).unwrap_or_default();
    assert!(
        served.iter().any(|a| {
            let e = format!("{:?}", a.event);
            e.contains("View") && e.contains("web client") && e.contains(&format!("{:?}", id))
        }),
        "the host audited the document it served: {served:?}"
    );
    // A proof for the upload does not fetch, and no proof fetches nothing.
    let wrong = blob_proof(&page, BlobOp::Put, &r, &mut rng);
    let (s, body) = send_blob(&hst, Method::GET, &get, Some(wrong), None, Vec::new()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(body.len() < 1024 && !body.windows(64).any(|w| w == &sealed[..64]));
    let (s, _) = send_blob(&hst, Method::GET, &get, None, None, Vec::new()).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

/// Bytes that do not hash to what is declared (or are not as many) are refused and
/// nothing is kept; someone who may see no entry naming a document gets no byte of it and
/// may upload nothing; a declared size beyond the limit, or that no sealed document has,
/// is refused before a byte is read.
#[tokio::test]
async fn blob_uploads_and_downloads_are_checked_bounded_and_for_the_right_people_only() {
    use cophr_protocol::blob::{BlobHash, BlobRef, MAX_BLOB_BYTES};
    use cophr_protocol::sync::BlobOp;
    let (host, hst, _george, _record, backup) = georges_record_on_a_relay().await;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let server = host.handle.peer_id().to_bytes();
    let mut page = Patient::open(&backup, PASS, None, &server).unwrap();
    sync(&hst, &mut page, false, &mut rng).await;
    let (_file, doc, sealed) = sealed_png(&mut rng);
    let r = doc.blob_ref();

    // Declared as other bytes (a wrong hash): 422, nothing kept.
    let mut other = sealed.clone();
    other[1000] ^= 0x55;
    let lie = BlobRef {
        hash: BlobHash::of(&other),
        size: r.size,
    };
    let (s, body) = send_blob(
        &hst,
        Method::PUT,
        &format!("/sync/blobs/{}", lie.hash),
        Some(blob_proof(&page, BlobOp::Put, &lie, &mut rng)),
        Some(lie.size),
        sealed.clone(),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(blobs_held(&host), 0, "nothing was kept");
    // Fewer bytes than declared: refused, nothing kept.
    let (s, _) = send_blob(
        &hst,
        Method::PUT,
        &format!("/sync/blobs/{}", r.hash),
        Some(blob_proof(&page, BlobOp::Put, &r, &mut rng)),
        Some(r.size),
        sealed[..sealed.len() - 100].to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(blobs_held(&host), 0, "nothing was kept");

    // Declared beyond the limit: 413; a size no sealed document has: 422; no length: 411.
    let huge = BlobRef {
        hash: r.hash,
        size: MAX_BLOB_BYTES + 1,
    };
    let (s, _) = send_blob(
        &hst,
        Method::PUT,
        &format!("/sync/blobs/{}", r.hash),
        Some(blob_proof(&page, BlobOp::Put, &huge, &mut rng)),
        Some(huge.size),
        sealed.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let odd = BlobRef {
        hash: r.hash,
        size: 5,
    };
    let (s, _) = send_blob(
        &hst,
        Method::PUT,
        &format!("/sync/blobs/{}", r.hash),
        Some(blob_proof(&page, BlobOp::Put, &odd, &mut rng)),
        Some(5),
        vec![0; 5],
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = send_blob(
        &hst,
        Method::PUT,
        &format!("/sync/blobs/{}", r.hash),
        Some(blob_proof(&page, BlobOp::Put, &r, &mut rng)),
        None,
        sealed.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::LENGTH_REQUIRED);
    // Not a hash, a garbage proof: 400.
    let (s, _) = send_blob(
        &hst,
        Method::PUT,
        "/sync/blobs/nothex",
        Some("AAAA".into()),
        Some(r.size),
        sealed.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = send_blob(
        &hst,
        Method::PUT,
        &format!("/sync/blobs/{}", r.hash),
        Some("not base64!".into()),
        Some(r.size),
        sealed.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(blobs_held(&host), 0, "nothing was kept");

    // The patient stores it and names it.
    let (s, _) = send_blob(
        &hst,
        Method::PUT,
        &format!("/sync/blobs/{}", r.hash),
        Some(blob_proof(&page, BlobOp::Put, &r, &mut rng)),
        Some(r.size),
        sealed.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    page.add_document(&doc, "Wound photo", None, http::system_clock(), &mut rng)
        .unwrap();
    let report = sync(&hst, &mut page, true, &mut rng).await;
    assert_eq!(report["error"], Value::Null, "{report}");

    // Mary holds no grant: she gets no byte of it (the refusal a missing document gets),
    // and may not upload into George's record.
    let mary = key(4, "Mary");
    let as_mary = Patient::with_key(mary, page.record_id(), &server);
    let (s, body) = send_blob(
        &hst,
        Method::GET,
        &format!("/sync/blobs/{}?size={}", r.hash, r.size),
        Some(blob_proof(&as_mary, BlobOp::Get, &r, &mut rng)),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(body.len() < 1024 && !body.windows(64).any(|w| w == &sealed[..64]));
    let nobody = BlobRef {
        hash: BlobHash::of(b"no entry names this"),
        size: r.size,
    };
    let (s, _) = send_blob(
        &hst,
        Method::GET,
        &format!("/sync/blobs/{}?size={}", nobody.hash, nobody.size),
        Some(blob_proof(&page, BlobOp::Get, &nobody, &mut rng)),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "a document no entry names: the same refusal"
    );
    let mary_put = blob_proof(&as_mary, BlobOp::Put, &lie, &mut rng);
    let (s, _) = send_blob(
        &hst,
        Method::PUT,
        &format!("/sync/blobs/{}", lie.hash),
        Some(mary_put),
        Some(lie.size),
        other.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(blobs_held(&host), 1, "only George's document is kept");
}

#[tokio::test]
async fn uploads_never_named_count_against_the_quota_so_they_cannot_fill_a_host() {
    use cophr_protocol::sync::server::{HostPolicy, Quotas};
    use cophr_protocol::sync::BlobOp;
    // Threat: a patient of a hosted record uploads document after document and names none;
    // each upload alone fits the record's quota. Room for about two of these documents.
    let policy = HostPolicy {
        quotas: Quotas {
            record_bytes: Some(400_000),
            ..Quotas::default()
        },
        ..HostPolicy::default()
    };
    let (host, hst, _george, _record, backup) = georges_record_on_a_host(policy).await;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
    let server = host.handle.peer_id().to_bytes();
    let mut page = Patient::open(&backup, PASS, None, &server).unwrap();
    sync(&hst, &mut page, false, &mut rng).await;
    let put = |page: &Patient, rng: &mut rand_chacha::ChaCha20Rng| {
        let (_file, doc, sealed) = sealed_png(rng);
        let r = doc.blob_ref();
        let proof = blob_proof(page, BlobOp::Put, &r, rng);
        let hst = hst.clone();
        async move {
            let (s, body) = send_blob(
                &hst,
                Method::PUT,
                &format!("/sync/blobs/{}", r.hash),
                Some(proof),
                Some(r.size),
                sealed,
            )
            .await;
            (s, String::from_utf8_lossy(&body).into_owned(), doc)
        }
    };
    let (s, body, first) = put(&page, &mut rng).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert!(first.blob_ref().size > 150_000 && first.blob_ref().size < 200_000);
    let (s, body, _second) = put(&page, &mut rng).await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // The third would take the record over its quota with the two never named: refused,
    // nothing of it kept.
    let (s, body, third) = put(&page, &mut rng).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{body}");
    assert!(body.contains("quota"), "{body}");
    assert!(!host.handle.store().has_document(&third.blob_ref()));
    assert_eq!(blobs_held(&host), 2);
    // Naming the first one does not count it twice: still no room for a third.
    page.add_document(&first, "Wound photo", None, http::system_clock(), &mut rng)
        .unwrap();
    let report = sync(&hst, &mut page, true, &mut rng).await;
    assert_eq!(report["error"], Value::Null, "{report}");
    let (s, body, _) = put(&page, &mut rng).await;
    assert_eq!(s, StatusCode::INSUFFICIENT_STORAGE, "{body}");
}
