//! The clinician's worklist over a provider node's store: rows kept right after a local
//! write, a sync from another node and a restart; search by name and national number;
//! changes since the clinician last looked; unreviewed results and open tasks; a revoked
//! record gone; bounds; and the REST API (audited as a view of the demographics).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use cophr_node::http::{self, AppState};
use cophr_node::store::worklist::{self, Summary, WorklistError, MAX_PAGE_SIZE, MAX_QUERY_CHARS};
use cophr_node::store::Store;
use cophr_protocol::access::Level;
use cophr_protocol::audit::Action;
use cophr_protocol::entry::{Payload, Verified};
use cophr_protocol::testkit::{bp, grant, key, text_body};
use cophr_protocol::trust::attestation::{
    AssuranceLevel, Attestation, Attributes, Method as How, NationalNumber, ATTESTATION_VERSION,
};
use cophr_protocol::{Category, EntryId, Keypair, Profile, RecordId};
use serde_json::Value;
use tower::ServiceExt;

/// 2026-11-22T10:00:00Z.
const T0: u64 = 1_795_341_600_000;
const TOKEN: &str = "testtokenabcdefghijklmnopqrstuvwxyz234567abcdefghijk";

fn clinician() -> Keypair {
    key(100, "Dr Patel")
}

/// A patient's profile, attested with a national number when given.
fn patient_profile(p: &Keypair, name: &str, nhs: Option<&str>) -> Profile {
    let issuer = key(900, "AIS");
    let attestations = nhs
        .map(|n| {
            Attestation {
                v: ATTESTATION_VERSION,
                issuer: issuer.actor(),
                subject: p.actor(),
                attributes: Attributes::Person {
                    name: name.into(),
                    birth_date: None,
                    national_number: Some(NationalNumber {
                        system: "nhs".into(),
                        value: n.into(),
                    }),
                },
                level: AssuranceLevel::P9,
                method: How::InPerson,
                not_before: T0 - 1000,
                not_after: T0 + 300 * 24 * 3600 * 1000,
                serial: p.actor().as_bytes()[..16].to_vec(),
            }
            .sign(&issuer)
            .unwrap()
        })
        .into_iter()
        .collect();
    Profile {
        name: name.into(),
        role: "patient".into(),
        organisation: None,
        attestations,
    }
}

/// A patient's home store with their record, shared with the clinician (all categories,
/// write).
fn home(dir: &std::path::Path, p: &Keypair, name: &str, nhs: Option<&str>) -> (Store, EntryId) {
    let (s, _) = Store::open(dir, key(1, "home")).unwrap();
    s.unlock_with(p);
    s.create_record(p, patient_profile(p, name, nhs), T0, None)
        .unwrap();
    let g = s
        .write(
            &p.actor(),
            p,
            Payload::Grant(grant(&clinician(), Level::Write, &[], false, false)),
            T0 + 1,
            None,
        )
        .unwrap();
    (s, g)
}

fn provider(dir: &std::path::Path) -> Store {
    let (s, _) = Store::open(dir, key(2, "provider")).unwrap();
    s.unlock_with(&clinician());
    s
}

/// What sync brings: every entry of the record from `from` into `to`.
fn sync(from: &Store, to: &Store, rec: &RecordId) {
    let all: Vec<Verified> = from.with_record(rec, |r| r.entries().collect()).unwrap();
    to.ingest(rec, all).unwrap();
}

fn create(
    s: &Store,
    rec: &RecordId,
    who: &Keypair,
    c: Category,
    body: cophr_protocol::Value,
    t: u64,
) -> EntryId {
    s.write(rec, who, Payload::Create { category: c, body }, t, None)
        .unwrap()
}

fn rows(s: &Store, q: &str, now: u64) -> Vec<Summary> {
    s.worklist(&clinician().actor(), q, 0, MAX_PAGE_SIZE, now)
        .unwrap()
        .rows
}

fn row(s: &Store, rec: &RecordId, now: u64) -> Summary {
    rows(s, "", now)
        .into_iter()
        .find(|r| r.record == *rec)
        .unwrap_or_else(|| panic!("no row for {rec}"))
}

fn lab(test: &str) -> cophr_protocol::Value {
    text_body(&[("test", test), ("result", "4.1")])
}

#[test]
fn rows_follow_sync_local_writes_looks_and_a_restart() {
    let dirs = [(); 3].map(|()| tempfile::tempdir().unwrap());
    let (george, ann) = (key(1, "George"), key(2, "Ann"));
    let (gh, _) = home(
        dirs[0].path(),
        &george,
        "George Smith",
        Some("943 476 5919"),
    );
    let (ah, _) = home(dirs[1].path(), &ann, "Ann Jones", None);
    let (g, a) = (george.actor(), ann.actor());
    create(&gh, &g, &george, Category::VitalSigns, bp(140, 90), T0 + 10);
    let hb = create(
        &gh,
        &g,
        &george,
        Category::LabResults,
        lab("HbA1c"),
        T0 + 11,
    );
    create(
        &gh,
        &g,
        &george,
        Category::LabResults,
        lab("Ferritin"),
        T0 + 12,
    );
    let s = provider(dirs[2].path());
    assert!(rows(&s, "", T0 + 20).is_empty(), "nothing shared yet");

    // A sync from the patients' nodes brings their rows.
    sync(&gh, &s, &g);
    sync(&ah, &s, &a);
    let all = rows(&s, "", T0 + 20);
    assert_eq!(all.len(), 2);
    let r = row(&s, &g, T0 + 20);
    assert_eq!(r.name.as_deref(), Some("George Smith"));
    assert_eq!(r.national_number.as_deref(), Some("9434765919"));
    assert_eq!(r.unreviewed_results, 2);
    assert_eq!(r.changed.get("lab-results"), Some(&2));
    assert_eq!(r.changed.get("vital-signs"), Some(&1));
    assert_eq!(r.looked, None);

    // Search by name (any case, any part) and by national number (spaces ignored).
    let names = |q: &str| -> Vec<String> {
        rows(&s, q, T0 + 21)
            .into_iter()
            .filter_map(|r| r.name)
            .collect()
    };
    assert_eq!(names("smith"), vec!["George Smith"]);
    assert_eq!(names("JON"), vec!["Ann Jones"]);
    assert_eq!(names("9434765919"), vec!["George Smith"]);
    assert_eq!(names("943 476"), vec!["George Smith"]);
    assert!(names("nobody").is_empty());

    // Opening the record resets what changed; the patient's next entry counts again.
    s.worklist_looked(&clinician().actor(), &g, T0 + 30)
        .unwrap();
    let r = row(&s, &g, T0 + 31);
    assert_eq!(r.changed_total, 0);
    assert_eq!(r.looked, Some(T0 + 30));
    create(&gh, &g, &george, Category::VitalSigns, bp(150, 95), T0 + 40);
    sync(&gh, &s, &g);
    let r = row(&s, &g, T0 + 41);
    assert_eq!(r.changed_total, 1);
    assert_eq!(r.changed.get("vital-signs"), Some(&1));

    // A local write by the clinician: an annotation reviews a result (and is not a
    // change to them).
    let c = clinician();
    s.write(
        &g,
        &c,
        Payload::Annotate {
            target: hb,
            text: "reviewed, fine".into(),
        },
        T0 + 50,
        None,
    )
    .unwrap();
    let r = row(&s, &g, T0 + 51);
    assert_eq!(r.unreviewed_results, 1, "{r:?}");
    assert_eq!(
        r.changed_total, 1,
        "the clinician's own note is not a change"
    );

    // A write made after the last question, then a restart: the row is right.
    create(&gh, &g, &george, Category::LabResults, lab("TSH"), T0 + 60);
    sync(&gh, &s, &g);
    drop(s);
    let s = provider(dirs[2].path());
    let r = row(&s, &g, T0 + 61);
    assert_eq!(r.unreviewed_results, 2);
    assert_eq!(r.changed.get("lab-results"), Some(&1));
    assert_eq!(r.looked, Some(T0 + 30), "the marker survives a restart");
    assert_eq!(rows(&s, "", T0 + 61).len(), 2);
    let before = rows(&s, "", T0 + 62);
    drop(s);

    // The index (and the worklist tree beside it) lost: rebuilt from the records.
    std::fs::remove_dir_all(dirs[2].path().join("index")).unwrap();
    let s = provider(dirs[2].path());
    assert_eq!(rows(&s, "", T0 + 62), before);
}

#[test]
fn a_result_amended_by_a_clinician_is_reviewed_and_open_tasks_are_counted() {
    let dirs = [(); 2].map(|()| tempfile::tempdir().unwrap());
    let george = key(1, "George");
    let g = george.actor();
    let (gh, _) = home(dirs[0].path(), &george, "George Smith", None);
    let c = clinician();
    let s = provider(dirs[1].path());
    sync(&gh, &s, &g);
    // The clinician writes a result (not a review) and then amends it (a review).
    let res = create(&s, &g, &c, Category::LabResults, lab("eGFR"), T0 + 10);
    assert_eq!(row(&s, &g, T0 + 11).unreviewed_results, 1);
    s.write(
        &g,
        &c,
        Payload::Amend {
            target: res,
            body: text_body(&[("test", "eGFR"), ("result", "58")]),
        },
        T0 + 12,
        None,
    )
    .unwrap();
    assert_eq!(row(&s, &g, T0 + 13).unreviewed_results, 0);
    // The patient amending their own result is no review.
    let own = create(&gh, &g, &george, Category::LabResults, lab("LDL"), T0 + 14);
    gh.write(
        &g,
        &george,
        Payload::Amend {
            target: own,
            body: text_body(&[("test", "LDL"), ("result", "2.9")]),
        },
        T0 + 15,
        None,
    )
    .unwrap();
    sync(&gh, &s, &g);
    assert_eq!(row(&s, &g, T0 + 16).unreviewed_results, 1);

    // Tasks: a referral sent to the clinician is open until completed or rejected.
    let task = |status: &str| {
        text_body(&[
            ("kind", "referral"),
            ("description", "Diabetes review"),
            ("requester", &g.to_string()),
            ("owner", &c.actor().to_string()),
            ("status", status),
        ])
    };
    let t1 = create(&gh, &g, &george, Category::Tasks, task("sent"), T0 + 20);
    create(&gh, &g, &george, Category::Tasks, task("sent"), T0 + 21);
    sync(&gh, &s, &g);
    assert_eq!(row(&s, &g, T0 + 22).open_tasks, 2);
    s.write(
        &g,
        &c,
        Payload::Amend {
            target: t1,
            body: task("rejected"),
        },
        T0 + 23,
        None,
    )
    .unwrap();
    assert_eq!(row(&s, &g, T0 + 24).open_tasks, 1);
}

#[test]
fn a_revoked_or_expired_grant_takes_the_row_away() {
    let dirs = [(); 2].map(|()| tempfile::tempdir().unwrap());
    let (george, ann) = (key(1, "George"), key(2, "Ann"));
    let (gh, gg) = home(dirs[0].path(), &george, "George Smith", None);
    let s = provider(dirs[1].path());
    let g = george.actor();
    sync(&gh, &s, &g);
    assert_eq!(rows(&s, "", T0 + 5).len(), 1);
    gh.write(
        &g,
        &george,
        Payload::Revoke {
            grant: gg,
            category: None,
            reason: "moved practice".into(),
        },
        T0 + 10,
        None,
    )
    .unwrap();
    sync(&gh, &s, &g);
    assert!(rows(&s, "", T0 + 11).is_empty(), "revoked: gone");

    // A grant until a time: the row goes when it expires, without any write.
    let dir = tempfile::tempdir().unwrap();
    let (ah, _) = {
        let (st, _) = Store::open(dir.path(), key(1, "home")).unwrap();
        st.unlock_with(&ann);
        st.create_record(&ann, patient_profile(&ann, "Ann Jones", None), T0, None)
            .unwrap();
        let mut gr = grant(&clinician(), Level::View, &[], false, false);
        gr.until = Some(T0 + 100);
        let id = st
            .write(&ann.actor(), &ann, Payload::Grant(gr), T0 + 1, None)
            .unwrap();
        (st, id)
    };
    sync(&ah, &s, &ann.actor());
    assert_eq!(rows(&s, "", T0 + 50).len(), 1);
    assert!(rows(&s, "", T0 + 101).is_empty(), "expired: gone");
}

#[test]
fn search_text_and_page_size_are_bounded_and_pages_cover_every_row() {
    let dirs = [(); 2].map(|()| tempfile::tempdir().unwrap());
    let s = provider(dirs[1].path());
    let (p0, _) = home(dirs[0].path(), &key(10, "p"), "Patient 0", None);
    sync(&p0, &s, &key(10, "p").actor());
    let me = clinician().actor();
    let long = "x".repeat(MAX_QUERY_CHARS + 1);
    assert!(matches!(
        s.worklist(&me, &long, 0, 10, T0),
        Err(WorklistError::QueryTooLong(n)) if n == MAX_QUERY_CHARS + 1
    ));
    assert!(s
        .worklist(&me, &"x".repeat(MAX_QUERY_CHARS), 0, 10, T0)
        .is_ok());
    assert!(matches!(
        s.worklist(&me, "", 0, MAX_PAGE_SIZE + 1, T0),
        Err(WorklistError::PageSize(_))
    ));
    assert!(matches!(
        s.worklist(&me, "", 0, 0, T0),
        Err(WorklistError::PageSize(0))
    ));
    assert!(worklist::check_query("", MAX_PAGE_SIZE).is_ok());

    // More records, paged two at a time: every row once.
    for i in 11..16u64 {
        let d = tempfile::tempdir().unwrap();
        let p = key(i, "p");
        let (h, _) = home(d.path(), &p, &format!("Patient {i}"), None);
        sync(&h, &s, &p.actor());
    }
    let mut seen = Vec::new();
    for page in 0..4 {
        let p = s.worklist(&me, "patient", page, 2, T0 + 5).unwrap();
        assert_eq!(p.total, 6);
        seen.extend(p.rows.into_iter().map(|r| r.record));
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 6);
}

async fn api(st: &AppState, method: Method, path: &str) -> (StatusCode, Value) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let resp = http::router(st.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_api_pages_searches_audits_each_row_and_opening_resets_changes() {
    let dirs = [(); 2].map(|()| tempfile::tempdir().unwrap());
    let george = key(1, "George");
    let g = george.actor();
    let (gh, _) = home(dirs[0].path(), &george, "George Smith", Some("9434765919"));
    create(
        &gh,
        &g,
        &george,
        Category::Demographics,
        text_body(&[("surname", "Smith"), ("forename", "George")]),
        T0 + 5,
    );
    create(&gh, &g, &george, Category::LabResults, lab("HbA1c"), T0 + 6);
    let s = provider(dirs[1].path());
    sync(&gh, &s, &g);
    let clock = Arc::new(AtomicU64::new(T0 + 1000));
    let tick = clock.clone();
    let st = AppState::new(
        s.clone(),
        clinician(),
        Profile::new("Dr Patel", "gp", Some("Leeds GP".into())),
        None,
        TOKEN.into(),
    )
    .with_clock(move || tick.fetch_add(1000, Ordering::SeqCst));

    let (status, count) = api(&st, Method::GET, "/api/v1/worklist/count").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(count["total"], 1);
    let views = |s: &Store| -> Vec<_> {
        s.audit_events(&g)
            .unwrap()
            .into_iter()
            .filter(|a| a.event.action == Action::View && a.event.actor == clinician().actor())
            .collect()
    };
    assert!(
        views(&s).is_empty(),
        "the count shows nothing and audits nothing"
    );

    let (status, page) = api(&st, Method::GET, "/api/v1/worklist?q=smi").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], 1);
    let r = &page["rows"][0];
    assert_eq!(r["name"], "George Smith");
    assert_eq!(r["demographics_name"], "Smith, George");
    assert_eq!(r["national_number"], "9434765919");
    assert_eq!(r["unreviewed_results"], 1);
    assert_eq!(r["changed"]["lab-results"], 1);
    assert!(r.get("body").is_none());
    // Audited as a view of the demographics item the row shows.
    let v = views(&s);
    assert_eq!(v.len(), 1);
    let demo = s
        .with_record(&g, |rec| {
            let v = rec.viewer(&clinician().actor(), T0 + 5000);
            cophr_protocol::fold::current(rec, &v)
                .in_category(&Category::Demographics)
                .next()
                .map(|i| i.current)
        })
        .unwrap()
        .unwrap();
    assert_eq!(v[0].event.entries, vec![demo]);
    assert!(v[0]
        .event
        .detail
        .as_deref()
        .unwrap_or("")
        .contains("worklist"));

    // No match: nothing shown, nothing audited.
    let (_, page) = api(&st, Method::GET, "/api/v1/worklist?q=jones").await;
    assert_eq!(page["total"], 0);
    assert_eq!(views(&s).len(), 1);

    // Bounds are a 400.
    let long = "x".repeat(MAX_QUERY_CHARS + 1);
    let (status, _) = api(&st, Method::GET, &format!("/api/v1/worklist?q={long}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api(
        &st,
        Method::GET,
        &format!("/api/v1/worklist?limit={}", MAX_PAGE_SIZE + 1),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Opening the record (its summary) is looking at it.
    let (status, _) = api(&st, Method::GET, &format!("/api/v1/records/{g}")).await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = api(&st, Method::GET, "/api/v1/worklist").await;
    assert_eq!(page["rows"][0]["changed_total"], 0, "{page}");
    assert!(page["rows"][0]["looked"].is_string());
}
