//! Request bodies to the node's HTTP API and FHIR API (arbitrary bytes, JSON or not, to
//! every route that takes a body), answered by the real router over a real store: never a
//! panic, never a server error (5xx other than "no network node here" and a timeout); the
//! record stays whole (every entry held still re-applies through the gate).
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use cophr_node::http::{router, AppState};
use cophr_node::store::Store;
use cophr_protocol::record::Record;
use cophr_protocol::testkit::{bp, key, profile};
use cophr_protocol::{Category, EntryId, Payload, RecordId};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token-0123456789abcdef";

#[derive(Debug, Arbitrary)]
struct Input {
    route: u8,
    json_type: bool,
    body: Vec<u8>,
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    state: AppState,
    store: Store,
    record: RecordId,
    entry: EntryId,
    grant: EntryId,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a directory");
        let (store, _) = Store::open(dir.path(), key(9, "node")).expect("a store");
        let g = key(1, "George");
        store
            .create_record(
                &g,
                profile("George", "patient", None),
                1_700_000_000_000,
                None,
            )
            .expect("a record");
        let record = g.actor();
        let entry = store
            .write(
                &record,
                &g,
                Payload::Create {
                    category: Category::VitalSigns,
                    body: bp(120, 80),
                },
                1_700_000_001_000,
                None,
            )
            .expect("an entry");
        let grant = store
            .write(
                &record,
                &g,
                Payload::Grant(cophr_protocol::testkit::grant(
                    &key(1, "Mary"),
                    cophr_protocol::Level::View,
                    &[],
                    false,
                    false,
                )),
                1_700_000_002_000,
                None,
            )
            .expect("a grant");
        let state = AppState::new(
            store.clone(),
            g,
            profile("George", "patient", None),
            None,
            TOKEN.into(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        Fixture {
            rt,
            state,
            store,
            record,
            entry,
            grant,
            _dir: dir,
        }
    })
}

fn routes(f: &Fixture) -> Vec<(Method, String)> {
    let (r, e, g) = (f.record, f.entry, f.grant);
    let mary = key(1, "Mary").actor();
    vec![
        (Method::POST, "/api/v1/records".into()),
        (Method::POST, format!("/api/v1/records/{r}/entries")),
        (Method::PUT, format!("/api/v1/records/{r}/entries/{e}")),
        (
            Method::POST,
            format!("/api/v1/records/{r}/entries/{e}/annotations"),
        ),
        (Method::POST, format!("/api/v1/records/{r}/grants")),
        (
            Method::POST,
            format!("/api/v1/records/{r}/grants/{g}/revoke"),
        ),
        (Method::POST, format!("/api/v1/records/{r}/invitations")),
        (Method::POST, "/api/v1/invitations/accept".into()),
        (Method::POST, format!("/api/v1/records/{r}/shares")),
        (Method::POST, format!("/api/v1/records/{r}/devices")),
        (
            Method::POST,
            format!("/api/v1/records/{r}/devices/{mary}/remove"),
        ),
        (Method::PUT, format!("/api/v1/records/{r}/guardians")),
        (
            Method::POST,
            format!("/api/v1/records/{r}/recovery-approvals"),
        ),
        (Method::POST, "/api/v1/recover".into()),
        (Method::POST, "/api/v1/key-backup".into()),
        (Method::POST, "/fhir/r4".into()),
        (Method::POST, "/fhir/r4/Observation".into()),
        (Method::POST, "/fhir/r4/AllergyIntolerance".into()),
        (Method::PUT, format!("/fhir/r4/Observation/{e}")),
    ]
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let all = routes(f);
    let (method, path) = &all[input.route as usize % all.len()];
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path.as_str())
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    if input.json_type {
        let ct = if path.starts_with("/fhir") {
            "application/fhir+json"
        } else {
            "application/json"
        };
        req = req.header(header::CONTENT_TYPE, ct);
    }
    let req = req.body(Body::from(input.body)).expect("a request");
    let status = f.rt.block_on(async {
        router(f.state.clone())
            .oneshot(req)
            .await
            .expect("the router answers")
            .status()
    });
    assert!(
        !status.is_server_error()
            || status == StatusCode::SERVICE_UNAVAILABLE
            || status == StatusCode::GATEWAY_TIMEOUT,
        "{method} {path}: {status}"
    );
    // The record stays whole: every entry re-applies through the gate, in order.
    let whole = f
        .store
        .with_record(&f.record, |r| {
            let mut again = Record::new(r.id());
            r.entries().all(|v| again.apply(v.clone()).is_ok())
        })
        .expect("the record is held");
    assert!(whole, "an entry held no longer applies");
});
