//! Devices, guardians and social key recovery over the REST API (`/api/v1`): the router
//! driven in process over stores in temporary directories, and for `POST /recover` real
//! network nodes on loopback (a home host, the recovering node). Every refusal is a JSON
//! 4xx and stores nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use cophr_node::http::{self, AppState};
use cophr_node::net::client;
use cophr_node::store::Store;
use cophr_protocol::recovery::{GuardianApproval, Recovery, RecoveryRequest};
use cophr_protocol::testkit::{key, profile};
use cophr_protocol::{ActorId, EntryId, Keypair, Profile, RecordId};
use serde_json::{json, Value};
use tempfile::TempDir;
use tower::ServiceExt;

mod support;
use support::net_node;

const TOKEN: &str = "testtokenabcdefghijklmnopqrstuvwxyz234567abcdefghijk";
/// 2026-11-22T10:00:00Z.
const START: u64 = 1_795_341_600_000;

struct Fixture {
    _dir: TempDir,
    state: AppState,
    store: Store,
}

/// A node acting as `me` over a fresh store, its clock one second further at every read.
fn fixture(me: &Keypair, who: Profile) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), Keypair::from_secret(&[9; 32])).unwrap();
    let clock = Arc::new(AtomicU64::new(START));
    let state = AppState::new(
        store.clone(),
        me.clone(),
        who,
        Some("test".into()),
        TOKEN.into(),
    )
    .with_clock(move || clock.fetch_add(1000, Ordering::SeqCst));
    Fixture {
        _dir: dir,
        state,
        store,
    }
}

struct Resp {
    status: StatusCode,
    bytes: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.bytes)))
    }

    fn ok(&self, status: StatusCode) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.bytes)
        );
        self.json()
    }

    /// Asserts the status and a JSON error with this code; returns the message.
    fn error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.bytes)
        );
        let j = self.json();
        assert_eq!(j["error"]["code"], code, "{j}");
        j["error"]["message"]
            .as_str()
            .expect("a message")
            .to_owned()
    }
}

async fn send(st: &AppState, method: Method, path: &str, body: Option<Value>) -> Resp {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&b).unwrap())
        }
        None => Body::empty(),
    };
    let resp = http::router(st.clone())
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Resp { status, bytes }
}

async fn get(st: &AppState, path: &str) -> Resp {
    send(st, Method::GET, path, None).await
}

async fn post(st: &AppState, path: &str, body: Value) -> Resp {
    send(st, Method::POST, path, Some(body)).await
}

async fn put(st: &AppState, path: &str, body: Value) -> Resp {
    send(st, Method::PUT, path, Some(body)).await
}

/// Entries in the record and audit events: what a refused request must leave unchanged.
fn counts(store: &Store, record: &RecordId) -> (usize, usize) {
    let entries = store.with_record(record, |r| r.len()).unwrap_or(0);
    let audit = store.audit_events(record).map(|a| a.len()).unwrap_or(0);
    (entries, audit)
}

/// Copies every entry of `record` from one store into another (a replica).
fn replicate(from: &Store, to: &Store, record: &RecordId) {
    let all = from
        .with_record(record, |r| r.entries().collect::<Vec<_>>())
        .unwrap();
    to.ingest(record, all).unwrap();
}

fn george() -> Keypair {
    key(1, "george")
}
fn mary() -> Keypair {
    key(1, "mary")
}
fn bob() -> Keypair {
    key(1, "bob")
}
fn phone() -> Keypair {
    key(1, "george/phone")
}

/// George's node with his record, Mary (write, all) and Bob (view, all) granted.
async fn georges_record() -> (Fixture, RecordId) {
    let f = fixture(&george(), profile("George Jones", "patient", None));
    let r = post(&f.state, "/api/v1/records", json!({})).await;
    let rid: RecordId = r.ok(StatusCode::CREATED)["record"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    post(
        &f.state,
        &format!("/api/v1/records/{rid}/entries"),
        json!({"category": "allergies", "body": {"agent": "Penicillin", "reaction": "rash"}}),
    )
    .await
    .ok(StatusCode::CREATED);
    for (who, level) in [(mary(), "write"), (bob(), "view")] {
        post(
            &f.state,
            &format!("/api/v1/records/{rid}/grants"),
            json!({"grantee": who.actor().to_string(), "categories": "all", "level": level}),
        )
        .await
        .ok(StatusCode::CREATED);
    }
    (f, rid)
}

#[tokio::test]
async fn the_patient_adds_lists_and_removes_devices_and_refusals_store_nothing() {
    let (f, rid) = georges_record().await;
    let st = &f.state;
    let devices = format!("/api/v1/records/{rid}/devices");
    let ph = phone().actor().to_string();

    // Nothing yet; the listing is audited as a read.
    let before = counts(&f.store, &rid);
    let list = get(st, &devices).await.ok(StatusCode::OK);
    assert_eq!(list["is_patient"], true);
    assert_eq!(list["owner"]["name"], "George Jones");
    assert_eq!(list["devices"], json!([]));
    assert_eq!(counts(&f.store, &rid), (before.0, before.1 + 1));

    let r = post(
        st,
        &devices,
        json!({"device": ph, "label": "George's phone"}),
    )
    .await;
    let added = r.ok(StatusCode::CREATED)["id"].as_str().unwrap().to_owned();
    let list = get(st, &devices).await.ok(StatusCode::OK);
    let d = &list["devices"][0];
    assert_eq!(d["device"], ph.as_str());
    assert_eq!(d["label"], "George's phone");
    assert_eq!(d["added"], added.as_str());
    assert_eq!(d["status"], "active");
    assert_eq!(d["removed"], Value::Null);
    assert_eq!(d["this_node"], false);

    // Refused, with nothing stored (not even an audit event).
    let before = counts(&f.store, &rid);
    for (body, status, code) in [
        (
            json!({"device": ph, "label": "again"}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            json!({"device": "a-nonsense", "label": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            json!({"device": mary().actor().to_string(), "label": "  "}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            json!({"device": mary().actor().to_string(), "label": "x".repeat(513)}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            json!({"device": george().actor().to_string(), "label": "me"}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            json!({"device": ph, "label": "x", "extra": 1}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
    ] {
        let m = post(st, &devices, body.clone()).await.error(status, code);
        assert!(!m.is_empty(), "{body}");
        assert_eq!(counts(&f.store, &rid), before, "{body}");
    }
    // Removing a key that is not a device of George's: 404, nothing stored.
    let unknown = key(1, "stranger").actor();
    let m = post(
        st,
        &format!("{devices}/{unknown}/remove"),
        json!({"reason": "?"}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    assert!(m.contains("not one of the patient's devices"), "{m}");
    post(st, &format!("{devices}/a-bad/remove"), json!({}))
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(counts(&f.store, &rid), before);

    // The phone, as its own node with a replica, is the patient there.
    let pf = fixture(&phone(), profile("George Jones", "patient", None));
    replicate(&f.store, &pf.store, &rid);
    let rows = get(&pf.state, "/api/v1/records").await.ok(StatusCode::OK);
    assert_eq!(rows[0]["is_mine"], true, "{rows}");
    let mine = get(&pf.state, &devices).await.ok(StatusCode::OK);
    assert_eq!(mine["is_patient"], true);
    assert_eq!(mine["devices"][0]["this_node"], true);
    // A device adds no devices and names no guardians.
    let before = counts(&pf.store, &rid);
    let m = post(
        &pf.state,
        &devices,
        json!({"device": key(1, "tablet").actor().to_string(), "label": "tablet"}),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    assert!(m.contains("a device may not add devices"), "{m}");
    let m = put(
        &pf.state,
        &format!("/api/v1/records/{rid}/guardians"),
        json!({"guardians": [mary().actor().to_string()], "threshold": 1}),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    assert!(m.contains("name guardians"), "{m}");
    assert_eq!(counts(&pf.store, &rid), before);

    // George removes it (lost); it is listed as removed and cannot be removed again.
    let r = post(
        st,
        &format!("{devices}/{ph}/remove"),
        json!({"reason": "lost on the bus"}),
    )
    .await;
    let removal = r.ok(StatusCode::OK)["id"].as_str().unwrap().to_owned();
    let list = get(st, &devices).await.ok(StatusCode::OK);
    assert_eq!(list["devices"][0]["status"], "removed");
    assert_eq!(list["devices"][0]["removed"], removal.as_str());
    let before = counts(&f.store, &rid);
    post(st, &format!("{devices}/{ph}/remove"), json!({}))
        .await
        .error(StatusCode::CONFLICT, "conflict");
    assert_eq!(counts(&f.store, &rid), before);
    let rows = get(st, "/api/v1/records").await.ok(StatusCode::OK);
    assert_eq!(rows[0]["is_mine"], true);
}

#[tokio::test]
async fn a_grantee_manages_their_own_devices_and_a_stranger_nothing() {
    let (f, rid) = georges_record().await;
    let devices = format!("/api/v1/records/{rid}/devices");
    let mf = fixture(&mary(), profile("Mary Jones", "carer", None));
    replicate(&f.store, &mf.store, &rid);
    let laptop = key(1, "mary/laptop").actor().to_string();
    post(
        &mf.state,
        &devices,
        json!({"device": laptop, "label": "Mary's laptop"}),
    )
    .await
    .ok(StatusCode::CREATED);
    let list = get(&mf.state, &devices).await.ok(StatusCode::OK);
    assert_eq!(list["is_patient"], false);
    assert_eq!(list["owner"]["actor"], mary().actor().to_string());
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);
    assert_eq!(list["devices"][0]["device"], laptop.as_str());
    let rows = get(&mf.state, "/api/v1/records").await.ok(StatusCode::OK);
    assert_eq!(rows[0]["is_mine"], false);

    // Someone without a grant, holding a copy: 403 for reading and writing, nothing stored.
    let sf = fixture(&key(1, "stranger"), profile("Sam", "stranger", None));
    replicate(&f.store, &sf.store, &rid);
    let before = counts(&sf.store, &rid);
    get(&sf.state, &devices)
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    post(
        &sf.state,
        &devices,
        json!({"device": key(1, "sam/phone").actor().to_string(), "label": "phone"}),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    get(&sf.state, &format!("/api/v1/records/{rid}/guardians"))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(counts(&sf.store, &rid), before);
    // A record not held: 404.
    get(
        &sf.state,
        &format!("/api/v1/records/{}/devices", mary().actor()),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn the_patient_names_guardians_and_only_the_patient_key_may() {
    let (f, rid) = georges_record().await;
    let st = &f.state;
    let path = format!("/api/v1/records/{rid}/guardians");
    let none = get(st, &path).await.ok(StatusCode::OK);
    assert_eq!(none["entry"], Value::Null);
    assert_eq!(none["guardians"], json!([]));

    let (m, b) = (mary().actor().to_string(), bob().actor().to_string());
    let before = counts(&f.store, &rid);
    let seventeen: Vec<String> = (0..17)
        .map(|i| key(2, &i.to_string()).actor().to_string())
        .collect();
    for body in [
        json!({"guardians": [], "threshold": 1}),
        json!({"guardians": [m], "threshold": 0}),
        json!({"guardians": [m, b], "threshold": 300}),
        json!({"guardians": [m, m], "threshold": 1}),
        json!({"guardians": ["a-nonsense"], "threshold": 1}),
        json!({"guardians": seventeen, "threshold": 1}),
        json!({"guardians": [m]}),
    ] {
        put(st, &path, body.clone())
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(counts(&f.store, &rid), before, "{body}");
    }
    // Rules across fields or with the record, which the document cannot state: 409.
    for body in [
        json!({"guardians": [m, b], "threshold": 3}),
        json!({"guardians": [george().actor().to_string()], "threshold": 1}),
    ] {
        put(st, &path, body.clone())
            .await
            .error(StatusCode::CONFLICT, "conflict");
        assert_eq!(counts(&f.store, &rid), before, "{body}");
    }
    // George's phone is the patient, and so cannot be a guardian.
    post(
        st,
        &format!("/api/v1/records/{rid}/devices"),
        json!({"device": phone().actor().to_string(), "label": "phone"}),
    )
    .await
    .ok(StatusCode::CREATED);
    let before = counts(&f.store, &rid);
    let msg = put(
        st,
        &path,
        json!({"guardians": [phone().actor().to_string()], "threshold": 1}),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("own guardian"), "{msg}");
    assert_eq!(counts(&f.store, &rid), before);

    // Given unsorted: stored sorted.
    let mut sorted = vec![m.clone(), b.clone()];
    sorted.sort();
    let r = put(
        st,
        &path,
        json!({"guardians": [sorted[1], sorted[0]], "threshold": 2}),
    )
    .await;
    let id = r.ok(StatusCode::OK)["id"].as_str().unwrap().to_owned();
    let set = get(st, &path).await.ok(StatusCode::OK);
    assert_eq!(set["entry"], id.as_str());
    assert_eq!(set["threshold"], 2);
    assert_eq!(set["set_by"]["name"], "George Jones");
    let shown: Vec<&str> = set["guardians"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["actor"].as_str().unwrap())
        .collect();
    assert_eq!(shown, sorted);
    assert_eq!(set["i_am_guardian"], false);

    // Mary, a grantee, sees she is a guardian, and may not change the set.
    let mf = fixture(&mary(), profile("Mary Jones", "carer", None));
    replicate(&f.store, &mf.store, &rid);
    let seen = get(&mf.state, &path).await.ok(StatusCode::OK);
    assert_eq!(seen["i_am_guardian"], true);
    let before = counts(&mf.store, &rid);
    let msg = put(&mf.state, &path, json!({"guardians": [b], "threshold": 1}))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("only the patient may name guardians"), "{msg}");
    assert_eq!(counts(&mf.store, &rid), before);
}

#[tokio::test]
async fn guardians_approve_a_recovery_request_and_others_are_refused() {
    let (f, rid) = georges_record().await;
    let m = mary().actor().to_string();
    put(
        &f.state,
        &format!("/api/v1/records/{rid}/guardians"),
        json!({"guardians": [m], "threshold": 1}),
    )
    .await
    .ok(StatusCode::OK);

    // George, on a new machine with a new key, asks for approvals.
    let new = key(1, "george/new");
    let nf = fixture(&new, profile("George Jones", "patient", None));
    let r = get(&nf.state, &format!("/api/v1/recovery-request?record={rid}"))
        .await
        .ok(StatusCode::OK);
    assert_eq!(r["new"], new.actor().to_string());
    assert!(r["qr_svg"].as_str().unwrap().starts_with("<?xml"));
    let text = r["request"].as_str().unwrap().to_owned();
    assert_eq!(
        RecoveryRequest::from_text(&text).unwrap(),
        RecoveryRequest {
            record: rid,
            new: new.actor()
        }
    );
    // Not for a record one already is the patient of; not without a record id.
    get(&f.state, &format!("/api/v1/recovery-request?record={rid}"))
        .await
        .error(StatusCode::CONFLICT, "conflict");
    get(&nf.state, "/api/v1/recovery-request")
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    get(&nf.state, "/api/v1/recovery-request?record=a-x")
        .await
        .error(StatusCode::BAD_REQUEST, "invalid_input");

    let approvals = format!("/api/v1/records/{rid}/recovery-approvals");
    let mf = fixture(&mary(), profile("Mary Jones", "carer", None));
    replicate(&f.store, &mf.store, &rid);
    let bf = fixture(&bob(), profile("Bob Smith", "neighbour", None));
    replicate(&f.store, &bf.store, &rid);
    let before = (counts(&mf.store, &rid), counts(&bf.store, &rid));

    // Bob is not a guardian.
    let msg = post(&bf.state, &approvals, json!({"request": text}))
        .await
        .error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("not one of the record's guardians"), "{msg}");
    // Bad texts, another record, a key in use, a record not held.
    for (body, status, code) in [
        (
            json!({"request": "cophr://recover/AAAA"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"request": "hello"}),
            StatusCode::BAD_REQUEST,
            "invalid_input",
        ),
        (
            json!({"request": format!("cophr://recover/{}", "A".repeat(2000))}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"request": RecoveryRequest { record: mary().actor(), new: new.actor() }.to_text()}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            json!({"request": RecoveryRequest { record: rid, new: george().actor() }.to_text()}),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (json!({}), StatusCode::BAD_REQUEST, "invalid_input"),
    ] {
        post(&mf.state, &approvals, body.clone())
            .await
            .error(status, code);
    }
    let other = RecoveryRequest {
        record: bob().actor(),
        new: new.actor(),
    };
    post(
        &mf.state,
        &format!("/api/v1/records/{}/recovery-approvals", bob().actor()),
        json!({"request": other.to_text()}),
    )
    .await
    .error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!((counts(&mf.store, &rid), counts(&bf.store, &rid)), before);

    // Mary approves: a text and a QR code; it verifies, and assembles into a recovery the
    // record would accept.
    let r = post(&mf.state, &approvals, json!({"request": text}))
        .await
        .ok(StatusCode::OK);
    assert_eq!(r["new"], new.actor().to_string());
    assert_eq!(r["old"], george().actor().to_string());
    assert!(r["qr_svg"].as_str().unwrap().contains("<svg"));
    let a = GuardianApproval::from_text(r["approval"].as_str().unwrap()).unwrap();
    assert_eq!(a.approval.by, mary().actor());
    assert_eq!(a.claim.record, rid);
    let recovery = Recovery::assemble(rid, &new.actor(), &[a]).unwrap();
    f.store
        .with_record(&rid, |r| {
            r.check_recovery(
                &new.actor(),
                &recovery.old,
                &recovery.guardians,
                &recovery.approvals,
            )
        })
        .unwrap()
        .expect("the record would accept the rotation");
    // Approving wrote nothing.
    assert_eq!(counts(&mf.store, &rid), before.0);
}

// ---------------------------------------------------------------------------------------
// POST /recover over real nodes.

#[tokio::test]
async fn a_new_key_recovers_the_record_from_its_home_host_with_approvals() {
    let g = george();
    let host = net_node("devices-api/host", &key(1, "host")).await;
    let gnode = net_node("devices-api/george", &g).await;
    let gst = support::api_of(&gnode, &g, profile("George Jones", "patient", None), TOKEN);
    let rid: RecordId = post(&gst, "/api/v1/records", json!({}))
        .await
        .ok(StatusCode::CREATED)["record"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let allergy: EntryId = post(
        &gst,
        &format!("/api/v1/records/{rid}/entries"),
        json!({"category": "allergies", "body": {"agent": "Penicillin", "reaction": "rash"}}),
    )
    .await
    .ok(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let guardians: Vec<ActorId> = vec![mary().actor(), bob().actor()];
    for gd in &guardians {
        post(
            &gst,
            &format!("/api/v1/records/{rid}/grants"),
            json!({"grantee": gd.to_string(), "categories": "all", "level": "view"}),
        )
        .await
        .ok(StatusCode::CREATED);
    }
    put(
        &gst,
        &format!("/api/v1/records/{rid}/guardians"),
        json!({"guardians": guardians.iter().map(ActorId::to_string).collect::<Vec<_>>(), "threshold": 2}),
    )
    .await
    .ok(StatusCode::OK);
    let host_addr = host.handle.listen_addrs().await.unwrap()[0].clone();
    client::host(&gnode.handle, &host_addr, rid, None)
        .await
        .unwrap();

    // George's new machine: a new identity, its own node.
    let new = key(1, "george/new");
    let nnode = net_node("devices-api/george-new", &new).await;
    let nst = support::api_of(
        &nnode,
        &new,
        profile("George Jones", "patient", None),
        TOKEN,
    );
    let request = get(&nst, &format!("/api/v1/recovery-request?record={rid}"))
        .await
        .ok(StatusCode::OK)["request"]
        .as_str()
        .unwrap()
        .to_owned();
    // Both guardians approve from their replicas.
    let mut texts = Vec::new();
    for (k, name) in [(mary(), "Mary"), (bob(), "Bob")] {
        let gf = fixture(&k, profile(name, "guardian", None));
        replicate(gnode.handle.store(), &gf.store, &rid);
        let r = post(
            &gf.state,
            &format!("/api/v1/records/{rid}/recovery-approvals"),
            json!({"request": request}),
        )
        .await
        .ok(StatusCode::OK);
        texts.push(r["approval"].as_str().unwrap().to_owned());
    }

    // Bad input is refused before anything is asked of the network.
    let host_text = host_addr.to_string();
    let bare: libp2p::Multiaddr = host_addr
        .iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect();
    for body in [
        json!({"host": host_text, "approvals": []}),
        json!({"host": host_text, "approvals": vec![texts[0].clone(); 17]}),
        json!({"host": host_text, "approvals": [texts[0], texts[0]]}),
        json!({"host": "not an address", "approvals": [texts[0]]}),
        json!({"host": bare.to_string(), "approvals": [texts[0]]}),
    ] {
        post(&nst, "/api/v1/recover", body.clone())
            .await
            .error(StatusCode::BAD_REQUEST, "invalid_input");
    }
    // An approval of the documented form that decodes to nothing approves nothing.
    post(
        &nst,
        "/api/v1/recover",
        json!({"host": host_text, "approvals": ["cophr://approval/AAAA"]}),
    )
    .await
    .error(StatusCode::FORBIDDEN, "forbidden");
    assert!(!nnode.handle.store().holds(&rid).unwrap());
    // One approval of two: the host refuses to serve the record.
    let r = post(
        &nst,
        "/api/v1/recover",
        json!({"host": host_text, "approvals": [texts[0]]}),
    )
    .await;
    let msg = r.error(StatusCode::FORBIDDEN, "forbidden");
    assert!(msg.contains("the threshold is 2"), "{msg}");
    let store = nnode.handle.store();
    assert!(
        !store.holds(&rid).unwrap()
            || !store
                .with_record(&rid, |r| r.is_patient(&new.actor()))
                .unwrap()
    );

    // Both: recovered. The new key is the patient here and at the host.
    let r = post(
        &nst,
        "/api/v1/recover",
        json!({"host": host_text, "approvals": texts}),
    )
    .await
    .ok(StatusCode::OK);
    assert_eq!(r["record"], rid.to_string());
    assert!(r["pulled"].as_u64().unwrap() > 0, "{r}");
    assert!(r["pushed"].as_u64().unwrap() >= 1, "{r}");
    let rows = get(&nst, "/api/v1/records").await.ok(StatusCode::OK);
    assert_eq!(rows[0]["is_mine"], true, "{rows}");
    assert!(host
        .handle
        .store()
        .with_record(&rid, |r| r.is_patient_key(&new.actor()))
        .unwrap());
    // Nothing left to recover.
    get(&nst, &format!("/api/v1/recovery-request?record={rid}"))
        .await
        .error(StatusCode::CONFLICT, "conflict");

    // The content is sealed and the new key was given no old epoch: the allergy is held
    // but locked to it, until a guardian's node, seeing the rotation, gives it the keys.
    let state = |s: &Store| {
        s.with_record(&rid, |r| {
            matches!(
                r.content_state(&allergy),
                Some(cophr_protocol::record::ContentState::Opened)
            )
        })
        .unwrap()
    };
    assert!(!state(nnode.handle.store()));
    let mnode = net_node("devices-api/mary", &mary()).await;
    let hp = host.handle.peer_id();
    client::sync(&mnode.handle, hp, vec![host_addr.clone()], rid, true)
        .await
        .unwrap();
    assert!(state(mnode.handle.store()), "a guardian reads everything");
    // Mary's node gave the keys on pulling the rotation; they reach the host with her
    // next push, and George's new node with its next pull.
    client::sync(&mnode.handle, hp, vec![host_addr.clone()], rid, true)
        .await
        .unwrap();
    client::sync(&nnode.handle, hp, vec![host_addr.clone()], rid, false)
        .await
        .unwrap();
    assert!(
        state(nnode.handle.store()),
        "the recovered key reads its history"
    );
    assert!(!state(host.handle.store()), "the host reads nothing");
}

#[tokio::test]
async fn the_web_app_seals_a_key_backup_that_opens_only_with_its_passphrase() {
    let george = key(61, "George");
    let f = fixture(&george, profile("George Jones", "patient", None));
    // Too short a passphrase is refused before anything is derived.
    f_short(&f).await;
    let made = post(
        &f.state,
        "/api/v1/key-backup",
        json!({"passphrase": "correct horse battery staple"}),
    )
    .await
    .ok(StatusCode::CREATED);
    assert_eq!(made["actor"], george.actor().to_string());
    assert_eq!(made["host"], Value::Null);
    assert_eq!(
        made["file_name"],
        format!("cophr-key-{}.backup", george.actor())
    );
    assert!(!made.to_string().contains("correct horse"));
    let bytes = data_encoding::BASE64
        .decode(made["backup"].as_str().unwrap().as_bytes())
        .unwrap();
    let sealed = cophr_protocol::backup::KeyBackup::decode(&bytes).unwrap();
    assert!(sealed.open("correct horse battery stapler").is_err());
    let restored = sealed.open("correct horse battery staple").unwrap();
    assert_eq!(restored.key.actor(), george.actor());
    assert_eq!(restored.holder.unwrap().name, "George Jones");
    // Keeping it at the home host needs the network node.
    post(
        &f.state,
        "/api/v1/key-backup",
        json!({"passphrase": "correct horse battery staple", "to_host": true}),
    )
    .await
    .error(StatusCode::SERVICE_UNAVAILABLE, "no_network");
    // Unknown fields are refused.
    post(
        &f.state,
        "/api/v1/key-backup",
        json!({"passphrase": "correct horse battery staple", "key": "x"}),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "invalid_input");
}

async fn f_short(f: &Fixture) {
    let msg = post(
        &f.state,
        "/api/v1/key-backup",
        json!({"passphrase": "short"}),
    )
    .await
    .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert!(msg.contains("at least 12"), "{msg}");
}
