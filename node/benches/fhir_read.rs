//! FHIR read latency against record size (issue 16): the first page of
//! `Patient/$everything` (target ≤ 200 ms at 100,000 entries), searches by code, date,
//! patient, subject and original id (target ≤ 20 ms median), the first page of an item's
//! `_history`, the first pages of `Provenance` and of `Observation/_history` (type-level),
//! and a later page of a search by code, each the median of a few requests
//! through the node's router (audit event and all), on records of vital-signs entries
//! (blood pressures) with one in four an imported FHIR heart rate.
//!
//! Each read is measured twice in the same run: through the search index (built first as
//! the server builds it at start, off the request path — that build's time is reported
//! apart, then the record's first read), and without
//! it (`AppState::without_fhir_index`: the whole record folded, as before the index), the
//! latter only up to `COPHR_BENCH_FHIR_READ_SCAN_MAX` entries (default 10,000).
//!
//! Run: `cargo bench -p cophr-node --bench fhir_read` (sizes 1,000 and 10,000;
//! `COPHR_BENCH_FHIR_READ_SIZES=1000,10000,100000` for more, `COPHR_BENCH_FHIR_READ_RUNS`
//! requests per figure, default 5). Prints each median and its ratio to the target.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use cophr_node::http::{router, AppState};
use cophr_node::session::Cancel;
use cophr_node::store::{BatchInfo, Store, MAX_WRITE_ALL};
use cophr_protocol::audit::Action;
use cophr_protocol::fhir;
use cophr_protocol::testkit::{bp, grant, key, profile};
use cophr_protocol::{Category, Level, Payload};
use serde_json::{json, Value as Json};
use tower::ServiceExt;

const TOKEN: &str = "benchtoken";
const T0: u64 = 1_700_000_000_000;

/// One measured request.
#[derive(Debug, Clone)]
pub struct Figure {
    /// Entries in the record.
    pub size: usize,
    /// What was asked.
    pub what: &'static str,
    /// Median latency.
    pub median: Duration,
    /// The target.
    pub target: Duration,
    /// Entries in the answer.
    pub entries: usize,
    /// Through the index (`false`: the whole record folded).
    pub indexed: bool,
}

fn heart_rate(i: usize) -> Json {
    json!({"resourceType": "Observation", "id": format!("hr-{i}"), "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "effectiveDateTime": format!("2025-{:02}-{:02}T10:00:00Z", 1 + i % 12, 1 + i % 28),
        "valueQuantity": {"value": 50 + (i % 60), "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
}

/// A store with one record of `size` entries (and a grant to a clinician of every vital
/// sign); the patient's state with the search index, the router serving it as the patient
/// without the index, and the record's id.
pub fn record(size: usize) -> (tempfile::TempDir, AppState, axum::Router, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = Store::open(&dir.path().join("store"), key(1, "node")).expect("open");
    let patient = key(2, "patient");
    store
        .create_record(&patient, profile("George", "patient", None), T0, None)
        .expect("record");
    store
        .write_all(
            &patient.actor(),
            &patient,
            vec![Payload::Grant(grant(
                &clinician(),
                Level::View,
                &[Category::VitalSigns],
                false,
                false,
            ))],
            BatchInfo {
                action: Action::Grant,
                detail: None,
            },
            T0 + 500,
            None,
        )
        .expect("grant");
    let mut written = 0;
    let mut t = T0 + 1000;
    while written < size {
        let n = (size - written).min(MAX_WRITE_ALL - 8);
        let payloads = (written..written + n)
            .map(|i| {
                let body = if i % 4 == 0 {
                    fhir::import(&heart_rate(i), Some("bench"))
                        .expect("import")
                        .body
                } else {
                    bp(100 + (i % 60) as i64, 60 + (i % 30) as i64)
                };
                Payload::Create {
                    category: Category::VitalSigns,
                    body,
                }
            })
            .collect();
        store
            .write_all(
                &patient.actor(),
                &patient,
                payloads,
                BatchInfo {
                    action: Action::Add,
                    detail: None,
                },
                t,
                None,
            )
            .expect("write");
        written += n;
        t += 1000;
    }
    let rid = patient.actor().to_string();
    let state = AppState::new(
        store,
        patient,
        profile("George", "patient", None),
        None,
        TOKEN.into(),
    )
    .with_clock(move || t + 10_000)
    .with_request_timeout(Duration::from_secs(3600));
    let scan = state.clone().without_fhir_index();
    (dir, state, router(scan), rid)
}

/// The clinician the record's patient granted every vital sign to.
fn clinician() -> cophr_protocol::Keypair {
    key(3, "clinician")
}

/// The patient's state acting as the clinician instead (same store and clock).
fn as_clinician(st: &AppState) -> AppState {
    let now = st.now();
    AppState::new(
        st.store().clone(),
        clinician(),
        profile("Dr Mary Jones", "clinician", None),
        None,
        TOKEN.into(),
    )
    .with_clock(move || now)
    .with_request_timeout(Duration::from_secs(3600))
}

async fn get(app: &axum::Router, uri: &str) -> (Duration, usize) {
    let req = Request::get(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("host", "localhost")
        .body(Body::empty())
        .expect("request");
    let start = Instant::now();
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    let took = start.elapsed();
    assert_eq!(status, StatusCode::OK, "{uri}");
    let b: Json = serde_json::from_slice(&bytes).expect("json");
    (took, b["entry"].as_array().map_or(0, Vec::len))
}

/// Measures every read at each size, through the index and (up to `scan_max` entries)
/// without it. The first figure of each size is the index's first build (one request).
pub fn run(sizes: &[usize], runs: usize, scan_max: usize) -> Vec<Figure> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut out = Vec::new();
    for &size in sizes {
        let (_dir, state, scan, rid) = record(size);
        // The index built as the server does at start, off the request path
        // (`AppState::build_fhir_indexes`), then the record's first read.
        let start = Instant::now();
        state.build_fhir_indexes(&Cancel::new()).expect("build");
        out.push(Figure {
            size,
            what: "index built at start (background, not a request)",
            median: start.elapsed(),
            target: Duration::from_millis(200),
            entries: 0,
            indexed: true,
        });
        let clinician = as_clinician(&state);
        let clinician_scan = router(clinician.clone().without_fhir_index());
        let clinician = router(clinician);
        let app = router(state);
        let (t, n) = rt.block_on(get(&app, "/fhir/r4/Observation?code=8867-4&_count=100"));
        // An item's history: the first Observation's.
        let (_, first) = rt.block_on(get_json(&app, "/fhir/r4/Observation?_count=1"));
        let item = first["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        out.push(Figure {
            size,
            what: "first read (after the build at start)",
            median: t,
            target: Duration::from_millis(200),
            entries: n,
            indexed: true,
        });
        let reads: [(&'static str, String, u64); 10] = [
            (
                "$everything, first page of 100",
                format!("/fhir/r4/Patient/{rid}/$everything?_count=100"),
                200,
            ),
            (
                "search by code",
                "/fhir/r4/Observation?code=http://loinc.org|8867-4&_count=100".into(),
                20,
            ),
            (
                "search by date",
                "/fhir/r4/Observation?date=ge2025-05-01&date=lt2025-06-01&_count=100".into(),
                20,
            ),
            (
                "search by patient",
                format!("/fhir/r4/Observation?patient={rid}&_count=100"),
                20,
            ),
            (
                "search by subject",
                format!("/fhir/r4/Observation?subject=Patient/{rid}&_count=100"),
                20,
            ),
            (
                "search by original id",
                "/fhir/r4/Observation?_id=hr-4".into(),
                20,
            ),
            (
                "an item's _history, first page",
                format!("/fhir/r4/Observation/{item}/_history?_count=100"),
                200,
            ),
            (
                "Provenance, first page of 100",
                "/fhir/r4/Provenance?_count=100".into(),
                200,
            ),
            (
                "Observation/_history, first page of 100",
                "/fhir/r4/Observation/_history?_count=100".into(),
                200,
            ),
            (
                "search by code, page 10 of 100",
                "/fhir/r4/Observation?code=8867-4&_count=100&_offset=900".into(),
                20,
            ),
        ];
        // The clinician, who sees every vital sign, searching the same way.
        let theirs: [(&'static str, String, u64); 3] = [
            (
                "search by code (a clinician's)",
                "/fhir/r4/Observation?code=http://loinc.org|8867-4&_count=100".into(),
                20,
            ),
            (
                "search by date (a clinician's)",
                "/fhir/r4/Observation?date=ge2025-05-01&date=lt2025-06-01&_count=100".into(),
                20,
            ),
            (
                "search by patient (a clinician's)",
                format!("/fhir/r4/Observation?patient={rid}&_count=100"),
                20,
            ),
        ];
        for (indexed, app, reads) in [
            (true, &app, &reads[..]),
            (true, &clinician, &theirs[..]),
            (false, &scan, &reads[..]),
            (false, &clinician_scan, &theirs[..]),
        ] {
            if !indexed && size > scan_max {
                continue;
            }
            for (what, uri, target_ms) in reads {
                let mut times = Vec::new();
                let mut entries = 0;
                for _ in 0..runs.max(1) {
                    let (t, n) = rt.block_on(get(app, uri));
                    times.push(t);
                    entries = n;
                }
                times.sort();
                out.push(Figure {
                    size,
                    what,
                    median: times[times.len() / 2],
                    target: Duration::from_millis(*target_ms),
                    entries,
                    indexed,
                });
            }
        }
    }
    out
}

async fn get_json(app: &axum::Router, uri: &str) -> (StatusCode, Json) {
    let req = Request::get(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("host", "localhost")
        .body(Body::empty())
        .expect("request");
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, serde_json::from_slice(&bytes).expect("json"))
}

#[allow(dead_code)]
fn main() {
    let sizes: Vec<usize> = std::env::var("COPHR_BENCH_FHIR_READ_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1000, 10_000]);
    let runs = std::env::var("COPHR_BENCH_FHIR_READ_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let scan_max = std::env::var("COPHR_BENCH_FHIR_READ_SCAN_MAX")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    println!("| entries | read | path | median | target | ratio | entries returned |");
    println!("|---:|---|---|---:|---:|---:|---:|");
    // Size by size, so each size's figures are out as soon as measured.
    for f in sizes.iter().flat_map(|s| run(&[*s], runs, scan_max)) {
        println!(
            "| {} | {} | {} | {:.1} ms | {} ms | {:.2} | {} |",
            f.size,
            f.what,
            if f.indexed { "index" } else { "scan" },
            f.median.as_secs_f64() * 1000.0,
            f.target.as_millis(),
            f.median.as_secs_f64() / f.target.as_secs_f64(),
            f.entries
        );
    }
}
