//! The FHIR API's search index (`node/src/http/fhir/index.rs`) answers exactly as the full
//! scan: every read compared through two routers on one store, one with the index and one
//! without (`AppState::without_fhir_index`), as the patient and as a grantee whose grant
//! ends midway (so later versions are hidden from them), after random creates, amends and
//! deletes read between writes (the index caught up step by step), after a restart, and
//! after entries synced from another node.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use cophr_node::http::{router, AppState};
use cophr_node::session::Cancel;
use cophr_node::store::{BatchInfo, Store};
use cophr_protocol::audit::Action;
use cophr_protocol::testkit::{bp, grant, key, profile};
use cophr_protocol::{fhir, Category, EntryId, Keypair, Level, Payload, Value};
use proptest::prelude::*;
use serde_json::{json, Value as Json};
use tower::ServiceExt;

const TOKEN: &str = "indextesttoken";
const T0: u64 = 1_700_000_000_000;

fn observation(code: u8, day: u8, original: u8) -> Value {
    let (loinc, value) = match code {
        0 => ("8867-4", 72),
        _ => ("9279-1", 16),
    };
    let j = json!({"resourceType": "Observation", "id": format!("obs-{original}"),
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": format!("Patient/p-{original}")},
        "effectiveDateTime": format!("2025-01-{:02}T10:00:00Z", 1 + day % 28),
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}});
    fhir::import(&j, Some("test")).expect("import").body
}

/// What one step does.
#[derive(Debug, Clone)]
enum Step {
    /// A new item: an imported Observation (code, day, original id) or a blood pressure.
    Create(Option<(u8, u8, u8)>),
    /// Amends the n-th item (mod the number written) to an Observation.
    Amend(usize, u8, u8, u8),
    /// Deletes the n-th item.
    Delete(usize),
    /// Compares every read.
    Check,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => proptest::option::weighted(0.7, (0u8..2, 0u8..28, 0u8..4)).prop_map(Step::Create),
        2 => (any::<usize>(), 0u8..2, 0u8..28, 0u8..4).prop_map(|(n, c, d, o)| Step::Amend(n, c, d, o)),
        1 => any::<usize>().prop_map(Step::Delete),
        2 => Just(Step::Check),
    ]
}

struct World {
    dir: tempfile::TempDir,
    store: Store,
    patient: Keypair,
    mary: Keypair,
    /// Sees every vital sign (a grant with no end): the patient's counts hold for her.
    ann: Keypair,
    clock: Arc<AtomicU64>,
    /// Each item: its latest version, and whether deleted.
    items: Vec<(EntryId, EntryId, bool)>,
    t: u64,
    /// As the patient and as Mary: a server with the index and one without, kept from
    /// read to read (so the index is caught up step by step).
    apps: Vec<(Keypair, Router, Router)>,
}

fn app(store: &Store, who: &Keypair, clock: &Arc<AtomicU64>, indexed: bool) -> Router {
    let st = state(store, who, clock);
    router(if indexed { st } else { st.without_fhir_index() })
}

fn state(store: &Store, who: &Keypair, clock: &Arc<AtomicU64>) -> AppState {
    let c = clock.clone();
    AppState::new(
        store.clone(),
        who.clone(),
        profile("Someone", "patient", None),
        None,
        TOKEN.into(),
    )
    .with_clock(move || c.load(Ordering::SeqCst))
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("store"), key(1, "node")).unwrap();
        let patient = key(2, "patient");
        let mary = key(3, "mary");
        let ann = key(4, "ann");
        store
            .create_record(&patient, profile("George", "patient", None), T0, None)
            .unwrap();
        let mut w = World {
            dir,
            store,
            patient,
            mary: mary.clone(),
            ann: ann.clone(),
            clock: Arc::new(AtomicU64::new(T0 + 1_000_000_000)),
            items: Vec::new(),
            t: T0 + 1000,
            apps: Vec::new(),
        };
        w.serve();
        // Mary sees vital signs written up to the 12th step.
        let mut g = grant(&mary, Level::View, &[Category::VitalSigns], false, false);
        g.until = Some(T0 + 12_000);
        w.write(Payload::Grant(g));
        // Ann sees every vital sign, whenever written.
        w.write(Payload::Grant(grant(
            &ann,
            Level::View,
            &[Category::VitalSigns],
            false,
            false,
        )));
        w
    }

    fn serve(&mut self) {
        self.apps = [self.patient.clone(), self.mary.clone(), self.ann.clone()]
            .into_iter()
            .map(|k| {
                let a = app(&self.store, &k, &self.clock, true);
                let b = app(&self.store, &k, &self.clock, false);
                (k, a, b)
            })
            .collect();
    }

    /// Closes the store and opens it again, with new servers.
    fn restart(&mut self) {
        self.apps.clear();
        let elsewhere = tempfile::tempdir().unwrap();
        let (dummy, _) = Store::open(elsewhere.path(), key(1, "node")).unwrap();
        drop(std::mem::replace(&mut self.store, dummy));
        self.store = Store::open(&self.dir.path().join("store"), key(1, "node"))
            .unwrap()
            .0;
        self.serve();
    }

    fn write(&mut self, p: Payload) -> EntryId {
        self.t += 1000;
        let ids = self
            .store
            .write_all(
                &self.patient.actor(),
                &self.patient,
                vec![p],
                BatchInfo {
                    action: Action::Add,
                    detail: None,
                },
                self.t,
                None,
            )
            .unwrap();
        ids[0]
    }

    fn apply(&mut self, s: &Step) {
        match s {
            Step::Create(o) => {
                let body = match o {
                    Some((c, d, orig)) => observation(*c, *d, *orig),
                    None => bp(120, 80),
                };
                let id = self.write(Payload::Create {
                    category: Category::VitalSigns,
                    body,
                });
                self.items.push((id, id, false));
            }
            Step::Amend(n, c, d, o) if !self.items.is_empty() => {
                let i = n % self.items.len();
                let (_, latest, deleted) = self.items[i];
                if !deleted {
                    let id = self.write(Payload::Amend {
                        target: latest,
                        body: observation(*c, *d, *o),
                    });
                    self.items[i].1 = id;
                }
            }
            Step::Delete(n) if !self.items.is_empty() => {
                let i = n % self.items.len();
                let (_, latest, deleted) = self.items[i];
                if !deleted {
                    let id = self.write(Payload::Delete {
                        target: latest,
                        reason: "entered in error".into(),
                    });
                    self.items[i] = (self.items[i].0, id, true);
                }
            }
            _ => {}
        }
    }

    fn reads(&self) -> Vec<String> {
        let rid = self.patient.actor();
        let mut out: Vec<String> = [
            "Observation".to_owned(),
            "Observation?code=8867-4".into(),
            "Observation?code=http://loinc.org|8867-4".into(),
            "Observation?code=|8867-4".into(),
            "Observation?code=http://snomed.info/sct|8867-4".into(),
            "Observation?code=8867-4&_count=1&_offset=1".into(),
            "Observation?code=http://loinc.org|9279-1&_count=2&_offset=2".into(),
            "Condition?code=8867-4".into(),
            "Observation?date=ge2025-01-05&date=lt2025-01-20&_count=2&_offset=1".into(),
            "Observation?date=le2025-01-08".into(),
            "Observation?date=gt2025-01-08&_count=1".into(),
            "Observation?date=2025-01".into(),
            "Observation?date=eb2025-01-10&_count=3&_offset=2".into(),
            "Observation?date=ge2026".into(),
            "Observation/_history?_count=2&_offset=1".into(),
            "Observation/_history?_count=3".into(),
            "Patient/_history".into(),
            "Provenance".into(),
            "Provenance?_count=3&_offset=2".into(),
            "Provenance?date=ge2023-11-14T22:13:30Z&_count=4".into(),
            "Provenance?date=lt2023-11-14T22:13:26Z".into(),
            "Observation?code=http://loinc.org|9279-1,8867-4".into(),
            "Observation?code=http://loinc.org|".into(),
            "Observation?date=ge2025-01-10".into(),
            "Observation?date=2025-01-03".into(),
            "Observation?date=lt2025-01-05&code=9279-1".into(),
            "Observation?date=ne2025-01-04".into(),
            "Observation?date=sa2025-01-04&date=eb2025-01-20".into(),
            "Observation?category=vital-signs".into(),
            format!("Observation?patient={rid}"),
            format!("Observation?subject=Patient/{rid}&_count=2&_offset=1"),
            "Observation?_id=obs-1".into(),
            "Observation?_id=obs-2,obs-3&code=9279-1".into(),
            format!("Patient?_id={rid}"),
            "Patient".into(),
            format!("Patient/{rid}"),
            "Observation/e-none".into(),
            "Observation/_history".into(),
        ]
        .into_iter()
        .map(|q| format!("/fhir/r4/{q}"))
        .collect();
        if let Some((root, latest, _)) = self.items.first() {
            out.push(format!("/fhir/r4/Provenance?_id={root},{latest}"));
        }
        for (root, _, _) in &self.items {
            out.push(format!("/fhir/r4/Observation?_id={root}"));
            out.push(format!("/fhir/r4/Observation/{root}"));
            out.push(format!("/fhir/r4/Observation/{root}/_history"));
        }
        out
    }
}

async fn get(app: &Router, uri: &str) -> (StatusCode, Json) {
    let req = Request::get(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("host", "localhost")
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Json::Null))
}

/// A `$everything` Bundle without what each read changes (the audit trail, and so the
/// total), and whether it links a next page.
fn everything_view(b: &Json) -> (Vec<Json>, bool) {
    let entries = b["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["resource"]["resourceType"] != "AuditEvent")
        .cloned()
        .collect();
    let next = b["link"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|l| l["relation"] == "next");
    (entries, next)
}

/// Every read answers the same through the index as by the scan, for the patient, for
/// Mary (whose grant ends) and for Ann (who sees every vital sign: counted as the
/// patient). Returns how many reads were compared.
fn compare(w: &World, rt: &tokio::runtime::Runtime) -> usize {
    let rid = w.patient.actor();
    let mut n = 0;
    for (who, indexed, scan) in &w.apps {
        for uri in w.reads() {
            let a = rt.block_on(get(indexed, &uri));
            let b = rt.block_on(get(scan, &uri));
            assert_eq!(a, b, "{uri} as {}", who.actor());
            n += 1;
        }
        for count in [1000, 3] {
            let uri = format!("/fhir/r4/Patient/{rid}/$everything?_count={count}");
            let (sa, a) = rt.block_on(get(indexed, &uri));
            let (sb, b) = rt.block_on(get(scan, &uri));
            assert_eq!(sa, sb, "{uri}");
            assert_eq!(everything_view(&a), everything_view(&b), "{uri}");
            n += 1;
        }
    }
    n
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    #[test]
    fn the_index_answers_as_the_full_scan(steps in proptest::collection::vec(step(), 1..24)) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let mut w = World::new();
        for s in &steps {
            if let Step::Check = s {
                compare(&w, &rt);
            } else {
                w.apply(s);
            }
        }
        compare(&w, &rt);
    }
}

#[test]
fn search_by_code_date_subject_and_original_id_finds_the_items() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut w = World::new();
    for s in [
        Step::Create(Some((0, 2, 1))),
        Step::Create(Some((1, 9, 2))),
        Step::Create(None),
        Step::Amend(1, 0, 20, 3),
    ] {
        w.apply(&s);
    }
    let rid = w.patient.actor();
    let app = app(&w.store, &w.patient, &w.clock, true);
    let ids = |q: &str| -> Vec<String> {
        let (s, b) = rt.block_on(get(&app, &format!("/fhir/r4/{q}")));
        assert_eq!(s, StatusCode::OK, "{q}: {b}");
        let mut v: Vec<String> = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let (first, second, third) = (
        w.items[0].0.to_string(),
        w.items[1].0.to_string(),
        w.items[2].0.to_string(),
    );
    let mut both = vec![first.clone(), second.clone()];
    both.sort();
    // The second was amended from a respiratory rate on the 10th to a heart rate on the
    // 21st: found by what it is now, never by what it was.
    assert_eq!(ids("Observation?code=http://loinc.org|8867-4"), both);
    assert!(ids("Observation?code=9279-1").is_empty());
    assert_eq!(ids("Observation?date=2025-01-21"), vec![second.clone()]);
    assert!(ids("Observation?date=2025-01-10").is_empty());
    assert_eq!(ids("Observation?_id=obs-1"), vec![first.clone()]);
    assert_eq!(ids("Observation?_id=obs-3"), vec![second.clone()]);
    assert!(ids("Observation?_id=obs-2").is_empty());
    let mut all = vec![first, second, third];
    all.sort();
    assert_eq!(ids(&format!("Observation?subject=Patient/{rid}")), all);
    assert_eq!(ids(&format!("Observation?subject={rid}")), all);
    assert!(ids(&format!(
        "Observation?subject=Patient/{}",
        key(9, "x").actor()
    ))
    .is_empty());
    // A deleted item is not served stale.
    w.apply(&Step::Delete(0));
    assert_eq!(ids("Observation?_id=obs-1"), Vec::<String>::new());
    assert_eq!(ids("Observation?code=8867-4").len(), 1);
}

#[test]
fn paging_follows_next_links_to_every_match_once() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut w = World::new();
    for i in 0..23u8 {
        w.apply(&Step::Create(Some((i % 2, i, i % 4))));
    }
    // Versions for the histories.
    w.apply(&Step::Amend(3, 1, 9, 1));
    w.apply(&Step::Amend(5, 0, 2, 2));
    w.apply(&Step::Amend(3, 0, 4, 1));
    w.apply(&Step::Delete(7));
    let rid = w.patient.actor();
    let scan = app(&w.store, &w.patient, &w.clock, false);
    let app = app(&w.store, &w.patient, &w.clock, true);
    for first in [
        "/fhir/r4/Observation?code=8867-4&_count=4".to_owned(),
        format!("/fhir/r4/Observation?patient={rid}&_count=5"),
        format!("/fhir/r4/Patient/{rid}/$everything?_count=6"),
        "/fhir/r4/Observation/_history?_count=4".to_owned(),
        "/fhir/r4/Provenance?_count=5".to_owned(),
        "/fhir/r4/Observation?date=ge2025-01-03&_count=3".to_owned(),
    ] {
        // The whole answer at once, by the scan.
        let (path, query) = first.split_once('?').unwrap();
        let query = query
            .split('&')
            .map(|p| {
                if p.starts_with("_count=") {
                    "_count=1000"
                } else {
                    p
                }
            })
            .collect::<Vec<_>>()
            .join("&");
        let all = format!("{path}?{query}");
        let (_, whole) = rt.block_on(get(&scan, &all));
        let mut uri = first.clone();
        let mut seen = Vec::new();
        for _ in 0..100 {
            let (s, b) = rt.block_on(get(&app, &uri));
            assert_eq!(s, StatusCode::OK, "{uri}: {b}");
            seen.extend(
                b["entry"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["fullUrl"].as_str().unwrap().to_owned()),
            );
            match b["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == "next")
            {
                Some(l) => {
                    uri = l["url"]
                        .as_str()
                        .unwrap()
                        .trim_start_matches("http://localhost")
                        .to_owned()
                }
                None => break,
            }
        }
        let no_audit: Vec<&String> = seen
            .iter()
            .filter(|u| !u.contains("/AuditEvent/"))
            .collect();
        let want: Vec<String> = whole["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["fullUrl"].as_str().unwrap().to_owned())
            .filter(|u| !u.contains("/AuditEvent/"))
            .collect();
        let want: Vec<&String> = want.iter().collect();
        assert!(no_audit.len() >= 12, "{first}");
        assert!(
            first.contains("everything") || whole["total"] == no_audit.len(),
            "{first}"
        );
        // Every entry once, in the order of the whole answer.
        assert_eq!(no_audit, want, "{first}");
    }
}

#[test]
fn the_index_stays_right_after_a_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut w = World::new();
    for i in 0..6u8 {
        w.apply(&Step::Create(Some((i % 2, i, i))));
    }
    compare(&w, &rt);
    // Restart: the store closed and opened again, a new server (its index built anew).
    w.restart();
    w.apply(&Step::Amend(2, 0, 27, 3));
    w.apply(&Step::Delete(4));
    assert!(compare(&w, &rt) > 0);
}

#[test]
fn the_index_follows_entries_synced_from_another_node() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut w = World::new();
    for i in 0..5u8 {
        w.apply(&Step::Create(Some((i % 2, i, i))));
    }
    // Another node holding the record: given the entries as sync gives them.
    let other_dir = tempfile::tempdir().unwrap();
    let (other, _) = Store::open(other_dir.path(), key(5, "other")).unwrap();
    let rid = w.patient.actor();
    let entries = |s: &Store| {
        s.with_record(&rid, |r| r.entries().collect::<Vec<_>>())
            .unwrap()
    };
    other.ingest(&rid, entries(&w.store)).unwrap();
    let indexed = app(&other, &w.patient, &w.clock, true);
    let scan = app(&other, &w.patient, &w.clock, false);
    let q = "/fhir/r4/Observation?code=8867-4";
    // Sealed content: nothing is served before the node holds a key that opens it.
    let first = rt.block_on(get(&indexed, q));
    assert_eq!(first, rt.block_on(get(&scan, q)));
    assert_eq!(first.1["total"], 0);
    // Given the patient's key (as `node run` does with its identity), the content opens
    // without any new entry, and the index sees it.
    other.unlock_with(&w.patient);
    let first = rt.block_on(get(&indexed, q));
    assert_eq!(first, rt.block_on(get(&scan, q)));
    let before = first.1["total"].as_u64().unwrap();
    // More written on the first node (an amend to a heart rate, a delete), then synced.
    w.apply(&Step::Amend(1, 0, 3, 1));
    w.apply(&Step::Delete(0));
    w.apply(&Step::Create(Some((0, 7, 2))));
    let known: std::collections::HashSet<EntryId> =
        entries(&other).iter().map(|e| e.id()).collect();
    let new: Vec<_> = entries(&w.store)
        .into_iter()
        .filter(|e| !known.contains(&e.id()))
        .collect();
    assert_eq!(new.len(), 3);
    other.ingest(&rid, new).unwrap();
    // The same server, its index caught up with what sync brought.
    for uri in w.reads() {
        assert_eq!(
            rt.block_on(get(&indexed, &uri)),
            rt.block_on(get(&scan, &uri)),
            "{uri}"
        );
    }
    // Item 0 (a heart rate) deleted, item 1 now one, a new one: one more in all.
    let after = rt.block_on(get(&indexed, q)).1["total"].as_u64().unwrap();
    assert_eq!(after, before + 1);
}

#[test]
fn a_referral_written_in_cophr_is_served_alone_as_a_service_request() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut w = World::new();
    let rid = w.patient.actor();
    let clinic = key(8, "clinic").actor();
    let body = cophr_protocol::schema::body_from_json(
        &Category::Tasks,
        &json!({"kind": "referral", "description": "eGFR falling: please review",
                "requester": rid.to_string(), "owner": clinic.to_string(), "status": "sent"}),
    )
    .unwrap();
    let id = w.write(Payload::Create {
        category: Category::Tasks,
        body,
    });
    let (_, indexed, scan) = &w.apps[0];
    for uri in [
        format!("/fhir/r4/ServiceRequest/{id}"),
        format!("/fhir/r4/ServiceRequest?patient={rid}"),
        format!("/fhir/r4/Task/{id}"),
    ] {
        let a = rt.block_on(get(indexed, &uri));
        assert_eq!(a, rt.block_on(get(scan, &uri)), "{uri}");
        assert_eq!(a.0, StatusCode::OK, "{uri}: {}", a.1);
    }
    let (_, sr) = rt.block_on(get(indexed, &format!("/fhir/r4/ServiceRequest/{id}")));
    let (_, task) = rt.block_on(get(indexed, &format!("/fhir/r4/Task/{id}")));
    assert_eq!(sr["resourceType"], "ServiceRequest");
    assert_eq!(sr["id"], id.to_string());
    assert_eq!(sr["subject"]["reference"], format!("Patient/{rid}"));
    assert_eq!(sr["code"], task["contained"][0]["code"]);
    assert_eq!(sr["meta"], task["meta"]);
}

/// A flag cancelled at its `n`-th checkpoint (to stop a build midway).
fn cancelled_after(n: usize) -> Cancel {
    let me: Arc<OnceLock<Cancel>> = Arc::new(OnceLock::new());
    let seen = Arc::new(AtomicUsize::new(0));
    let (m, s) = (me.clone(), seen.clone());
    let c = Cancel::with_checkpoint(Arc::new(move || {
        if s.fetch_add(1, Ordering::SeqCst) == n {
            if let Some(c) = m.get() {
                c.cancel();
            }
        }
    }));
    let _ = me.set(c.clone());
    c
}

#[test]
fn a_background_build_stopped_anywhere_answers_as_the_scan() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut w = World::new();
    for i in 0..9u8 {
        w.apply(&Step::Create(Some((i % 2, i, i % 4))));
    }
    w.apply(&Step::Create(None));
    w.apply(&Step::Amend(1, 0, 20, 2));
    w.apply(&Step::Delete(3));
    // The build stopped after n of its steps (entries taken in, items settled), then the
    // reads: each catches the rest up itself.
    for n in [0, 1, 5, 12, 17, 30, 1000] {
        for i in 0..w.apps.len() {
            let st = state(&w.store, &w.apps[i].0, &w.clock);
            let stopped = st.build_fhir_indexes(&cancelled_after(n)).is_err();
            assert!(stopped || n > 0, "the build's first step was cancelled");
            assert!(!stopped || n < 1000, "the build has fewer than 1000 steps");
            w.apps[i].1 = router(st);
        }
        assert!(compare(&w, &rt) > 0);
    }
    // Built whole, then written to: the reads catch up what came after.
    for i in 0..w.apps.len() {
        let st = state(&w.store, &w.apps[i].0, &w.clock);
        st.build_fhir_indexes(&Cancel::new()).unwrap();
        w.apps[i].1 = router(st);
    }
    w.apply(&Step::Amend(2, 1, 4, 1));
    w.apply(&Step::Create(Some((0, 9, 3))));
    assert!(compare(&w, &rt) > 0);
}

#[test]
fn after_the_background_build_the_first_read_builds_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut w = World::new();
    for i in 0..40u8 {
        w.apply(&Step::Create(Some((i % 2, i, i % 4))));
    }
    let checks = |built: bool| {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        let st = state(&w.store, &w.patient, &w.clock);
        if built {
            st.build_fhir_indexes(&Cancel::new()).unwrap();
        }
        let app = router(st.with_checkpoint(Arc::new(move || {
            m.fetch_add(1, Ordering::SeqCst);
        })));
        let (s, b) = rt.block_on(get(&app, "/fhir/r4/Observation?_id=obs-1"));
        assert_eq!(s, StatusCode::OK, "{b}");
        n.load(Ordering::SeqCst)
    };
    let (cold, warm) = (checks(false), checks(true));
    // The cold read takes in every entry and settles every item (40 each at least); the
    // read after the build only looks at its candidates.
    assert!(cold >= warm + 80, "cold {cold}, warm {warm}");
}

#[test]
fn the_server_builds_indexes_in_the_background_and_reads_meanwhile_answer_right() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut w = World::new();
    for i in 0..30u8 {
        w.apply(&Step::Create(Some((i % 2, i, i % 4))));
    }
    let st = state(&w.store, &w.patient, &w.clock);
    let stop = Cancel::new();
    st.start_fhir_index_build(stop.clone());
    w.apps[0].1 = router(st);
    // Reads race the build: whichever gets the index first, the answers are the scan's.
    assert!(compare(&w, &rt) > 0);
    stop.cancel();
}

#[test]
fn a_saved_index_is_read_at_the_next_start_and_answers_as_the_scan() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut w = World::new();
    for i in 0..40u8 {
        w.apply(&Step::Create(Some((i % 2, i, i % 4))));
    }
    w.apply(&Step::Amend(3, 1, 7, 2));
    w.apply(&Step::Delete(5));
    let rid = w.patient.actor();
    let file = w
        .dir
        .path()
        .join("store")
        .join("fhir-indexes")
        .join(rid.to_string());
    // Built and saved as a server saves it when it stops.
    let st = state(&w.store, &w.patient, &w.clock);
    st.build_fhir_indexes(&Cancel::new()).unwrap();
    assert!(
        !file.exists(),
        "a small record's index is not saved by the build"
    );
    st.save_fhir_indexes();
    assert!(file.exists(), "saved when the server stops");
    drop(st);
    // After a restart, before the node reads the record with the key it was read with
    // then, the saved index is not taken (it would show what the record cannot open
    // now): a build from empty, which takes far more than 20 steps (40 entries, 40 items).
    w.restart();
    let st = state(&w.store, &w.patient, &w.clock);
    assert!(
        st.build_fhir_indexes(&cancelled_after(20)).is_err(),
        "a saved index was taken before its keys"
    );
    drop(st);
    // With the key (as a node unlocks its store with its identity at start): the saved
    // index is read instead of built, for every identity the server acts as.
    w.restart();
    w.store.unlock_with(&w.patient);
    for i in 0..w.apps.len() {
        let st = state(&w.store, &w.apps[i].0, &w.clock);
        st.build_fhir_indexes(&cancelled_after(20))
            .expect("restored from the saved index: nothing to build");
    }
    for i in 0..w.apps.len() {
        let st = state(&w.store, &w.apps[i].0, &w.clock);
        st.build_fhir_indexes(&Cancel::new()).unwrap();
        w.apps[i].1 = router(st);
    }
    assert!(compare(&w, &rt) > 0);
    // Written to after the save: the restored index catches up the rest.
    w.apply(&Step::Amend(2, 0, 11, 1));
    w.apply(&Step::Create(Some((1, 12, 3))));
    w.restart();
    w.store.unlock_with(&w.patient);
    for i in 0..w.apps.len() {
        let st = state(&w.store, &w.apps[i].0, &w.clock);
        st.build_fhir_indexes(&Cancel::new()).unwrap();
        w.apps[i].1 = router(st);
    }
    assert!(compare(&w, &rt) > 0);
    // A damaged saved index is not read: built again from empty (the 20-step build is
    // cancelled), and the answers are still the scan's.
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    w.restart();
    w.store.unlock_with(&w.patient);
    let st = state(&w.store, &w.patient, &w.clock);
    assert!(
        st.build_fhir_indexes(&cancelled_after(20)).is_err(),
        "a damaged saved index was read"
    );
    for i in 0..w.apps.len() {
        let st = state(&w.store, &w.apps[i].0, &w.clock);
        st.build_fhir_indexes(&Cancel::new()).unwrap();
        w.apps[i].1 = router(st);
    }
    assert!(compare(&w, &rt) > 0);
}
