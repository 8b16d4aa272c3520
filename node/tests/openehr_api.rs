//! The openEHR REST API (`/openehr/v1`), driven in process through the node's router.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use cophr_node::http::{router, AppState};
use cophr_node::store::Store;
use cophr_protocol::openehr;
use cophr_protocol::testkit::key;
use cophr_protocol::{Category, Grant, Keypair, Level, Payload, Profile, RecordId, Scope};
use serde_json::{json, Value as Json};
use tower::ServiceExt;

const TOKEN: &str = "openehrtesttoken";
const T0: u64 = 1_700_000_000_000;

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    patient: Keypair,
    clock: Arc<AtomicU64>,
    app: Router,
}

type Answer = (StatusCode, HeaderMap, Json);

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), key(9, "node")).unwrap();
        let patient = key(9, "george");
        store
            .create_record(&patient, profile("George"), T0, None)
            .unwrap();
        let clock = Arc::new(AtomicU64::new(T0 + 1000));
        let app = app_for(&store, &patient, profile("George"), &clock);
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

    fn ehr(&self) -> String {
        openehr::ehr_id(&self.rid())
    }

    fn tick(&self) {
        self.clock.fetch_add(1000, Ordering::SeqCst);
    }

    /// (Entries, audit events) held: to check what a request stored or audited.
    fn footprint(&self) -> (usize, usize) {
        (
            self.store
                .with_record(&self.rid(), |r| {
                    r.entries()
                        .filter(|e| !matches!(e.entry().payload, Payload::KeyWrap { .. }))
                        .count()
                })
                .unwrap(),
            self.store.audit_events(&self.rid()).unwrap().len(),
        )
    }

    fn grant(&self, who: &Keypair, level: Level, categories: &[Category]) {
        self.tick();
        self.store
            .write(
                &self.rid(),
                &self.patient,
                Payload::Grant(Grant {
                    grantee: who.actor(),
                    level,
                    scope: Scope::Only(categories.iter().cloned().collect::<BTreeSet<_>>()),
                    not_before: None,
                    until: None,
                    audit: false,
                    delegate: false,
                    label: None,
                    requires: None,
                }),
                self.clock.load(Ordering::SeqCst),
                None,
            )
            .unwrap();
    }
}

fn profile(name: &str) -> Profile {
    Profile {
        name: name.into(),
        role: "patient".into(),
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
        .unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&bytes).unwrap_or(Json::Null),
    )
}

async fn get(app: &Router, uri: &str) -> Answer {
    send(app, "GET", uri, &[], Vec::new()).await
}

const JSON: (&str, &str) = ("content-type", "application/json");

fn dv_text(s: &str) -> Json {
    json!({"_type": "DV_TEXT", "value": s})
}

/// A blood pressure composition as an openEHR client writes it (by hand, not through the
/// mapping under test).
fn blood_pressure(systolic: i64, diastolic: i64) -> Json {
    let lang = json!({"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "ISO_639-1"}, "code_string": "en"});
    let observation = json!({
            "_type": "OBSERVATION",
            "name": dv_text("Blood pressure"),
            "archetype_node_id": "openEHR-EHR-OBSERVATION.blood_pressure.v2",
            "language": lang,
            "encoding": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "IANA_character-sets"}, "code_string": "UTF-8"},
            "subject": {"_type": "PARTY_SELF"},
            "data": {
                "_type": "HISTORY", "name": dv_text("History"), "archetype_node_id": "at0001",
                "origin": {"_type": "DV_DATE_TIME", "value": "2026-12-01T08:55:00Z"},
                "events": [{
                    "_type": "POINT_EVENT", "name": dv_text("Any event"), "archetype_node_id": "at0006",
                    "time": {"_type": "DV_DATE_TIME", "value": "2026-12-01T08:55:00Z"},
                    "data": {
                        "_type": "ITEM_TREE", "name": dv_text("blood pressure"), "archetype_node_id": "at0003",
                        "items": [
                            {"_type": "ELEMENT", "name": dv_text("Systolic"), "archetype_node_id": "at0004",
                             "value": {"_type": "DV_QUANTITY", "magnitude": systolic, "units": "mm[Hg]"}},
                            {"_type": "ELEMENT", "name": dv_text("Diastolic"), "archetype_node_id": "at0005",
                             "value": {"_type": "DV_QUANTITY", "magnitude": diastolic, "units": "mm[Hg]"}}
                        ]
                    }
                }]
            }
    });
    json!({
        "_type": "COMPOSITION",
        "name": dv_text("Vital signs"),
        "archetype_node_id": "openEHR-EHR-COMPOSITION.encounter.v1",
        "archetype_details": {
            "_type": "ARCHETYPED",
            "archetype_id": {"_type": "ARCHETYPE_ID", "value": "openEHR-EHR-COMPOSITION.encounter.v1"},
            "template_id": {"_type": "TEMPLATE_ID", "value": "cophr.vital_signs.v1"},
            "rm_version": "1.0.4"
        },
        "language": lang,
        "territory": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "ISO_3166-1"}, "code_string": "GB"},
        "category": {"_type": "DV_CODED_TEXT", "value": "event",
                     "defining_code": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "openehr"}, "code_string": "433"}},
        "composer": {"_type": "PARTY_IDENTIFIED", "name": "A client"},
        "context": {"_type": "EVENT_CONTEXT",
                    "start_time": {"_type": "DV_DATE_TIME", "value": "2026-12-01T09:00:00Z"},
                    "setting": {"_type": "DV_CODED_TEXT", "value": "home",
                                "defining_code": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "openehr"}, "code_string": "225"}}},
        "content": [observation],
    })
}

fn systolic_of(c: &Json) -> &Json {
    &c["content"][0]["data"]["events"][0]["data"]["items"][0]["value"]["magnitude"]
}

fn etag(h: &HeaderMap) -> String {
    h["etag"].to_str().unwrap().trim_matches('"').to_owned()
}

async fn post_composition(env: &Env, app: &Router, c: &Json) -> Answer {
    env.tick();
    send(
        app,
        "POST",
        &format!("/openehr/v1/ehr/{}/composition", env.ehr()),
        &[JSON],
        serde_json::to_vec(c).unwrap(),
    )
    .await
}

#[tokio::test]
async fn the_record_is_an_ehr() {
    let env = Env::new();
    let id = env.ehr();
    let (s, _, ehr) = get(
        &env.app,
        &format!(
            "/openehr/v1/ehr?subject_id={}&subject_namespace=cophr",
            env.rid()
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{ehr}");
    assert_eq!(ehr["ehr_id"]["value"], id.as_str());
    assert_eq!(ehr["system_id"]["value"], "cophr");
    let before = env.footprint();
    let (s, _, again) = get(&env.app, &format!("/openehr/v1/ehr/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again, ehr);
    assert_eq!(env.footprint().1, before.1 + 1, "the read is audited");
    let (s, _, status) = get(&env.app, &format!("/openehr/v1/ehr/{id}/ehr_status")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["_type"], "EHR_STATUS");
    assert_eq!(
        status["subject"]["external_ref"]["id"]["value"],
        env.rid().to_string()
    );
    // Unknown EHRs and subjects: 404 with a JSON error.
    let other = openehr::ehr_id(&key(9, "nobody").actor());
    let (s, _, e) = get(&env.app, &format!("/openehr/v1/ehr/{other}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["code"], "not_found");
    let (s, _, _) = get(
        &env.app,
        &format!(
            "/openehr/v1/ehr?subject_id={}&subject_namespace=nhs",
            env.rid()
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The templates in use.
    let (s, _, list) = get(&env.app, "/openehr/v1/definition/template/adl1.4").await;
    assert_eq!(s, StatusCode::OK);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["template_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "cophr.vital_signs.v1",
            "cophr.problems.v1",
            "cophr.allergies.v1",
            "cophr.medications.v1",
            "cophr.procedures.v1",
            "cophr.immunisations.v1",
            "cophr.lab_results.v1",
            "cophr.alerts.v1",
            "cophr.family_history.v1",
            "cophr.lifestyle.v1",
            "cophr.examinations.v1",
            "cophr.investigations.v1",
            "cophr.about_me.v1",
            "cophr.key_contacts.v1",
            "cophr.preferences.v1",
        ]
    );
    // The same API where EHRbase-style clients look for it; `Prefer:
    // return=representation` answers with the composition as stored.
    let (s, _, alias) = get(&env.app, &format!("/rest/openehr/v1/ehr/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(alias, ehr);
    env.tick();
    let (s, h, c) = send(
        &env.app,
        "POST",
        &format!("/rest/openehr/v1/ehr/{id}/composition"),
        &[JSON, ("prefer", "return=representation")],
        serde_json::to_vec(&blood_pressure(118, 76)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(c["uid"]["value"], etag(&h).as_str());
    assert_eq!(*systolic_of(&c), json!(118));
    // Such clients delete by the versioned object id (`{uuid}::cophr`): the latest version.
    let object = openehr::parse_uid(&etag(&h)).unwrap().object;
    env.tick();
    let url = format!("/rest/openehr/v1/ehr/{id}/composition/{object}::cophr");
    let (s, _, _) = send(&env.app, "DELETE", &url, &[], Vec::new()).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = get(&env.app, &url).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "read as deleted");
    // The bearer token is needed.
    let resp = env
        .app
        .clone()
        .oneshot(
            Request::get(format!("/openehr/v1/ehr/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_blood_pressure_composition_is_created_read_versioned_and_deleted() {
    let env = Env::new();
    let ehr = env.ehr();
    let before = env.footprint();
    let (s, h, _) = post_composition(&env, &env.app, &blood_pressure(128, 82)).await;
    assert_eq!(s, StatusCode::CREATED);
    let v1 = etag(&h);
    let parsed = openehr::parse_uid(&v1).unwrap();
    assert_eq!(parsed.version, Some(1));
    assert_eq!(
        h["location"].to_str().unwrap(),
        format!("/openehr/v1/ehr/{ehr}/composition/{v1}")
    );
    assert_eq!(env.footprint().0, before.0 + 1, "one create entry");

    // Read back through openEHR, by version uid and by object id: the same values.
    let audits = env.footprint().1;
    let (s, h, c) = get(&env.app, &format!("/openehr/v1/ehr/{ehr}/composition/{v1}")).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(etag(&h), v1);
    assert_eq!(c["uid"]["value"], v1.as_str());
    assert_eq!(*systolic_of(&c), json!(128));
    assert_eq!(c["composer"]["name"], "George");
    assert_eq!(
        c["content"][0]["data"]["events"][0]["time"]["value"],
        "2026-12-01T08:55:00Z"
    );
    assert_eq!(env.footprint().1, audits + 1, "the read is audited");
    let (s, _, latest) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/composition/{}", parsed.object),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(latest, c);

    // Read back through the REST entries API: the same values.
    let (s, _, list) = get(
        &env.app,
        &format!("/api/v1/records/{}/entries?category=vital-signs", env.rid()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let body = &list[0]["body"];
    assert_eq!(body["systolic"], json!({"value": 128, "unit": "mm[Hg]"}));
    assert_eq!(body["diastolic"], json!({"value": 82, "unit": "mm[Hg]"}));
    assert_eq!(body["measured-at"], "2026-12-01T08:55:00Z");
    assert_eq!(
        openehr::item_uuid(&list[0]["id"].as_str().unwrap().parse().unwrap()),
        parsed.object
    );

    // A new version with If-Match the preceding one.
    let url = format!("/openehr/v1/ehr/{ehr}/composition/{}", parsed.object);
    env.tick();
    let (s, h, _) = send(
        &env.app,
        "PUT",
        &url,
        &[JSON, ("if-match", &format!("\"{v1}\""))],
        serde_json::to_vec(&blood_pressure(135, 85)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v2 = etag(&h);
    assert_eq!(v2, format!("{}::cophr::2", parsed.object));
    let (_, _, c2) = get(&env.app, &url).await;
    assert_eq!(*systolic_of(&c2), json!(135));
    let (_, _, c1) = get(&env.app, &format!("/openehr/v1/ehr/{ehr}/composition/{v1}")).await;
    assert_eq!(*systolic_of(&c1), json!(128), "version 1 is kept");
    let (_, _, list) = get(
        &env.app,
        &format!("/api/v1/records/{}/entries?category=vital-signs", env.rid()),
    )
    .await;
    assert_eq!(list[0]["body"]["systolic"]["value"], 135);
    assert_eq!(list[0]["versions"], 2);

    // A stale If-Match: 412, the latest named, nothing stored.
    let held = env.footprint().0;
    env.tick();
    let (s, h, e) = send(
        &env.app,
        "PUT",
        &url,
        &[JSON, ("if-match", &v1)],
        serde_json::to_vec(&blood_pressure(140, 90)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{e}");
    assert_eq!(e["code"], "stale_version");
    assert_eq!(etag(&h), v2);
    // No If-Match at all: 400.
    let (s, _, _) = send(
        &env.app,
        "PUT",
        &url,
        &[JSON],
        serde_json::to_vec(&blood_pressure(140, 90)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(env.footprint().0, held);

    // Delete: a stale version is a conflict; the latest deletes, and the composition
    // reads as deleted (204), the REST API shows it deleted.
    let (s, _, _) = send(
        &env.app,
        "DELETE",
        &format!("/openehr/v1/ehr/{ehr}/composition/{v1}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(env.footprint().0, held);
    env.tick();
    let (s, _, _) = send(
        &env.app,
        "DELETE",
        &format!("/openehr/v1/ehr/{ehr}/composition/{v2}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(env.footprint().0, held + 1);
    let (s, _, _) = get(&env.app, &url).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, list) = get(
        &env.app,
        &format!("/api/v1/records/{}/entries?category=vital-signs", env.rid()),
    )
    .await;
    assert_eq!(list, json!([]));
    // Its versions stay readable by uid.
    let (s, _, c2) = get(&env.app, &format!("/openehr/v1/ehr/{ehr}/composition/{v2}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(*systolic_of(&c2), json!(135));
}

#[tokio::test]
async fn a_clinician_without_vital_signs_access_gets_404() {
    let env = Env::new();
    let ehr = env.ehr();
    let (_, h, _) = post_composition(&env, &env.app, &blood_pressure(120, 80)).await;
    let v1 = etag(&h);
    let kay = key(9, "kay");
    env.grant(&kay, Level::View, &[Category::Problems]);
    let app = app_for(&env.store, &kay, profile("Dr Kay"), &env.clock);
    // The EHR is visible (she has access to the record) ...
    let (s, _, _) = get(&app, &format!("/openehr/v1/ehr/{ehr}")).await;
    assert_eq!(s, StatusCode::OK);
    // ... the vital signs composition is not there for her, whichever way she asks.
    let url = format!("/openehr/v1/ehr/{ehr}/composition/{v1}");
    let (s, _, e) = get(&app, &url).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["code"], "not_found");
    let object = openehr::parse_uid(&v1).unwrap().object;
    let (s, _, _) = get(&app, &format!("/openehr/v1/ehr/{ehr}/composition/{object}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let before = env.footprint().0;
    let (s, _, _) = send(
        &app,
        "PUT",
        &format!("/openehr/v1/ehr/{ehr}/composition/{object}"),
        &[JSON, ("if-match", &v1)],
        serde_json::to_vec(&blood_pressure(150, 95)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = send(&app, "DELETE", &url, &[], Vec::new()).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Writing needs a write grant on the category: 403.
    let (s, _, e) = post_composition(&env, &app, &blood_pressure(150, 95)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(env.footprint().0, before);
    // With vital signs granted she reads it.
    env.grant(
        &kay,
        Level::View,
        &[Category::Problems, Category::VitalSigns],
    );
    let (s, _, c) = get(&app, &url).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(*systolic_of(&c), json!(120));
    // A node with no access to the record does not find the EHR.
    let stranger = app_for(&env.store, &key(9, "stranger"), profile("S"), &env.clock);
    let (s, _, _) = get(&stranger, &format!("/openehr/v1/ehr/{ehr}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_compositions_are_refused_with_nothing_stored() {
    let env = Env::new();
    let before = env.footprint();
    let post = |body: Vec<u8>, ct: &'static str| {
        let app = env.app.clone();
        let uri = format!("/openehr/v1/ehr/{}/composition", env.ehr());
        async move { send(&app, "POST", &uri, &[("content-type", ct)], body).await }
    };
    let cases: Vec<(Json, &str)> = vec![
        // Wrong archetype: a pulse observation where the template has none such.
        (
            {
                let mut c = blood_pressure(120, 80);
                c["content"][0]["archetype_node_id"] = json!("openEHR-EHR-OBSERVATION.height.v2");
                c
            },
            "wrong_archetype",
        ),
        // Missing mandatory: a problem without its name.
        (
            {
                let mut c = blood_pressure(120, 80);
                c["archetype_details"]["template_id"]["value"] = json!("cophr.problems.v1");
                c["content"] = json!([]);
                c
            },
            "missing_mandatory",
        ),
        // Wrong data type: systolic as text.
        (
            {
                let mut c = blood_pressure(120, 80);
                c["content"][0]["data"]["events"][0]["data"]["items"][0]["value"] =
                    json!({"_type": "DV_TEXT", "value": "120"});
                c
            },
            "wrong_type",
        ),
        // An element at a path the template does not define.
        (
            {
                let mut c = blood_pressure(120, 80);
                c["content"][0]["data"]["events"][0]["data"]["items"][0]["archetype_node_id"] =
                    json!("at9999");
                c
            },
            "unknown_path",
        ),
        (
            {
                let mut c = blood_pressure(120, 80);
                c["archetype_details"]["template_id"]["value"] = json!("other.v1");
                c
            },
            "unknown_template",
        ),
    ];
    for (c, code) in cases {
        let (s, _, e) = post(serde_json::to_vec(&c).unwrap(), "application/json").await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{code}: {e}");
        assert_eq!(e["code"], code, "{e}");
    }
    let (s, _, e) = post(
        serde_json::to_vec(&{
            let mut c = blood_pressure(120, 80);
            c["content"][0]["data"]["events"][0]["data"]["items"][0]["value"] =
                json!({"_type": "DV_TEXT", "value": "120"});
            c
        })
        .unwrap(),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        e["path"]
            .as_str()
            .unwrap()
            .ends_with("/items[at0004]/value"),
        "{e}"
    );
    // Implausible: the schema's range.
    let (s, _, e) = post(
        serde_json::to_vec(&blood_pressure(900, 80)).unwrap(),
        "application/json",
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["code"], "invalid_composition");
    // Too large, not JSON, malformed.
    let big = vec![b' '; openehr::MAX_COMPOSITION_BYTES + 10];
    let (s, _, e) = post(big, "application/json").await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    assert_eq!(e["code"], "too_large");
    let (s, _, _) = post(b"{}".to_vec(), "text/plain").await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (s, _, e) = post(b"{\"_type\": ".to_vec(), "application/json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["code"], "invalid_composition");
    // An unknown EHR.
    let (s, _, _) = send(
        &env.app,
        "POST",
        "/openehr/v1/ehr/00000000-0000-8000-8000-000000000000/composition",
        &[JSON],
        serde_json::to_vec(&blood_pressure(120, 80)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(env.footprint(), before, "nothing stored, nothing audited");
}

async fn aql(app: &Router, q: &str) -> Answer {
    send(
        app,
        "POST",
        "/openehr/v1/query/aql",
        &[JSON],
        serde_json::to_vec(&json!({"q": q})).unwrap(),
    )
    .await
}

const SYSTOLIC: &str = "o/data[at0001]/events[at0006]/data[at0003]/items[at0004]/value/magnitude";

#[tokio::test]
async fn aql_queries_what_the_identity_sees() {
    let env = Env::new();
    for (s, d) in [(120, 80), (150, 95), (135, 88)] {
        let (st, _, _) = post_composition(&env, &env.app, &blood_pressure(s, d)).await;
        assert_eq!(st, StatusCode::CREATED);
    }
    let q = format!(
        "SELECT c/uid/value AS uid, {SYSTOLIC} AS systolic FROM EHR e \
         CONTAINS COMPOSITION c CONTAINS OBSERVATION o[openEHR-EHR-OBSERVATION.blood_pressure.v2] \
         WHERE {SYSTOLIC} > 125 ORDER BY systolic DESC"
    );
    let audits = env.footprint().1;
    let (s, _, r) = aql(&env.app, &q).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        r["columns"][1],
        json!({"name": "systolic", "path": SYSTOLIC})
    );
    let values: Vec<&Json> = r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| &row[1])
        .collect();
    assert_eq!(values, [&json!(150), &json!(135)]);
    assert!(r["rows"][0][0].as_str().unwrap().ends_with("::cophr::1"));
    assert_eq!(
        env.footprint().1,
        audits + 1,
        "one audited read of the record"
    );
    // LIMIT/OFFSET.
    let (_, _, r) = aql(
        &env.app,
        &format!(
            "SELECT {SYSTOLIC} FROM EHR e CONTAINS COMPOSITION c CONTAINS OBSERVATION o \
             ORDER BY {SYSTOLIC} LIMIT 1 OFFSET 1"
        ),
    )
    .await;
    assert_eq!(r["rows"], json!([[135]]));
    // Malformed AQL: 400 with where it went wrong; nothing audited.
    let audits = env.footprint().1;
    let (s, _, e) = aql(
        &env.app,
        "SELECT c FROM EHR e CONTAINS COMPOSITION c WHERE c/uid ~ 1",
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["code"], "invalid_aql");
    assert!(e["message"].as_str().unwrap().starts_with("at "), "{e}");
    let (s, _, _) = aql(&env.app, "SELECT x/uid FROM EHR e").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(env.footprint().1, audits);
    // A clinician without vital signs access gets no rows, and nothing is audited for her.
    let kay = key(9, "kay");
    env.grant(&kay, Level::View, &[Category::Problems]);
    let app = app_for(&env.store, &kay, profile("Dr Kay"), &env.clock);
    let audits = env.footprint().1;
    let (s, _, r) = aql(&app, &q).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(r["rows"], json!([]));
    assert_eq!(env.footprint().1, audits);
}

/// A CONTRIBUTION's ORIGINAL_VERSION (`data` none for a delete).
fn version(change: (&str, &str), preceding: Option<&str>, data: Option<Json>) -> Json {
    let mut v = json!({
        "_type": "ORIGINAL_VERSION",
        "commit_audit": {"_type": "AUDIT_DETAILS", "system_id": "a-client",
                         "change_type": {"_type": "DV_CODED_TEXT", "value": change.0,
                                         "defining_code": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "openehr"}, "code_string": change.1}}},
        "lifecycle_state": {"_type": "DV_CODED_TEXT", "value": "complete",
                            "defining_code": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "openehr"}, "code_string": "532"}},
    });
    if let Some(p) = preceding {
        v["preceding_version_uid"] = json!({"_type": "OBJECT_VERSION_ID", "value": p});
    }
    if let Some(d) = data {
        v["data"] = d;
    }
    v
}

async fn post_contribution(env: &Env, app: &Router, versions: Vec<Json>) -> Answer {
    env.tick();
    send(
        app,
        "POST",
        &format!("/openehr/v1/ehr/{}/contribution", env.ehr()),
        &[JSON, ("prefer", "return=representation")],
        serde_json::to_vec(&json!({"_type": "CONTRIBUTION", "versions": versions})).unwrap(),
    )
    .await
}

fn version_ids(c: &Json) -> Vec<String> {
    c["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"]["value"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_composition_s_versions_are_its_entry_versions_nothing_overwritten() {
    let env = Env::new();
    let ehr = env.ehr();
    let (_, h, _) = post_composition(&env, &env.app, &blood_pressure(120, 80)).await;
    let v1 = etag(&h);
    let object = openehr::parse_uid(&v1).unwrap().object;
    let between = env.clock.load(Ordering::SeqCst) + 500;
    env.tick();
    let (s, h, _) = send(
        &env.app,
        "PUT",
        &format!("/openehr/v1/ehr/{ehr}/composition/{object}"),
        &[JSON, ("if-match", &v1)],
        serde_json::to_vec(&blood_pressure(135, 85)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let v2 = etag(&h);
    let base = format!("/openehr/v1/ehr/{ehr}/versioned_composition/{object}");

    let (s, _, vc) = get(&env.app, &base).await;
    assert_eq!(s, StatusCode::OK, "{vc}");
    assert_eq!(vc["_type"], "VERSIONED_COMPOSITION");
    assert_eq!(vc["uid"]["value"], object);
    assert_eq!(vc["owner_id"]["value"], ehr);

    let (s, _, hist) = get(&env.app, &format!("{base}/revision_history")).await;
    assert_eq!(s, StatusCode::OK, "{hist}");
    let uids: Vec<&str> = hist
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["version_id"]["value"].as_str().unwrap())
        .collect();
    assert_eq!(uids, [v1.as_str(), v2.as_str()]);
    assert_eq!(
        hist[0]["audits"][0]["change_type"]["defining_code"]["code_string"],
        "249"
    );
    assert_eq!(
        hist[1]["audits"][0]["change_type"]["defining_code"]["code_string"],
        "251"
    );
    assert_eq!(hist[1]["audits"][0]["committer"]["name"], "George");

    // Each version by uid, with its own data: version 1 is not overwritten by 2.
    let audits = env.footprint().1;
    let (s, _, x1) = get(&env.app, &format!("{base}/version/{v1}")).await;
    assert_eq!(s, StatusCode::OK, "{x1}");
    assert_eq!(env.footprint().1, audits + 1, "one audited read");
    assert_eq!(x1["_type"], "ORIGINAL_VERSION");
    assert_eq!(x1["uid"]["value"], v1);
    assert!(x1.get("preceding_version_uid").is_none());
    assert_eq!(*systolic_of(&x1["data"]), json!(120));
    assert_eq!(x1["lifecycle_state"]["defining_code"]["code_string"], "532");
    let (_, _, x2) = get(&env.app, &format!("{base}/version/{v2}")).await;
    assert_eq!(x2["preceding_version_uid"]["value"], v1);
    assert_eq!(*systolic_of(&x2["data"]), json!(135));
    // At a time: the version in effect then; none before the first; the latest without.
    let at = |t: u64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t) * 1_000_000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (s, _, x) = get(
        &env.app,
        &format!("{base}/version?version_at_time={}", at(between)),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{x}");
    assert_eq!(x["uid"]["value"], v1);
    let (_, _, x) = get(&env.app, &format!("{base}/version")).await;
    assert_eq!(x["uid"]["value"], v2);
    let (s, _, _) = get(
        &env.app,
        &format!("{base}/version?version_at_time={}", at(T0 - 1)),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, e) = get(&env.app, &format!("{base}/version?version_at_time=soon")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    // The composition endpoint takes version_at_time too (with an object id).
    let comp = format!("/openehr/v1/ehr/{ehr}/composition/{object}");
    let (s, h, c) = get(&env.app, &format!("{comp}?version_at_time={}", at(between))).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(etag(&h), v1);
    assert_eq!(*systolic_of(&c), json!(120));
    let (s, _, _) = get(&env.app, &format!("{comp}?version_at_time={}", at(T0 - 1))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = get(&env.app, &format!("{comp}?version_at_time=soon")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Versions that are not there, or not of this composition; malformed ids.
    let v9 = v1.replace("::1", "::9");
    let (s, _, _) = get(&env.app, &format!("{base}/version/{v9}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let other = format!("{}::cophr::1", openehr::ehr_id(&env.rid()));
    let (s, _, _) = get(&env.app, &format!("{base}/version/{other}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = get(&env.app, &format!("{base}/version/{object}")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/versioned_composition/nope"),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Deleted: one more version, with no data; the earlier ones stay.
    env.tick();
    let (s, _, _) = send(
        &env.app,
        "DELETE",
        &format!("/openehr/v1/ehr/{ehr}/composition/{v2}"),
        &[],
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, hist) = get(&env.app, &format!("{base}/revision_history")).await;
    assert_eq!(hist.as_array().unwrap().len(), 3);
    assert_eq!(
        hist[2]["audits"][0]["change_type"]["defining_code"]["code_string"],
        "523"
    );
    let (s, _, x3) = get(&env.app, &format!("{base}/version")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(x3["preceding_version_uid"]["value"], v2);
    assert_eq!(x3["lifecycle_state"]["value"], "deleted");
    assert!(x3.get("data").is_none());
    let (s, h, _) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/composition/{object}"),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(etag(&h), x3["uid"]["value"].as_str().unwrap());
    let (_, _, x1) = get(&env.app, &format!("{base}/version/{v1}")).await;
    assert_eq!(*systolic_of(&x1["data"]), json!(120));

    // A clinician without vital-signs access finds none of it.
    let kay = key(9, "kay");
    env.grant(&kay, Level::View, &[Category::Problems]);
    let app = app_for(&env.store, &kay, profile("Dr Kay"), &env.clock);
    for url in [
        base.clone(),
        format!("{base}/revision_history"),
        format!("{base}/version"),
        format!("{base}/version/{v1}"),
    ] {
        let (s, _, _) = get(&app, &url).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{url}");
    }
}

#[tokio::test]
async fn a_contribution_is_checked_whole_then_written_and_read_back() {
    let env = Env::new();
    let ehr = env.ehr();
    let (_, h, _) = post_composition(&env, &env.app, &blood_pressure(120, 80)).await;
    let a1 = etag(&h);
    let (_, h, _) = post_composition(&env, &env.app, &blood_pressure(110, 70)).await;
    let b1 = etag(&h);
    let held = env.footprint().0;

    // A stale preceding version: 412, and nothing of the contribution is written (not
    // even the creation before it).
    let (s, h, e) = post_contribution(
        &env,
        &env.app,
        vec![
            version(("creation", "249"), None, Some(blood_pressure(125, 82))),
            version(
                ("modification", "251"),
                Some(&a1.replace("::1", "::2")),
                Some(blood_pressure(140, 90)),
            ),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED, "{e}");
    assert_eq!(e["path"], "/versions[1]");
    assert_eq!(etag(&h), a1);
    assert_eq!(env.footprint().0, held);
    // A bad composition in it: 400 naming the version, nothing written.
    let mut bad = blood_pressure(1, 1);
    bad["content"][0]["archetype_node_id"] = json!("openEHR-EHR-OBSERVATION.height.v2");
    let (s, _, e) = post_contribution(
        &env,
        &env.app,
        vec![
            version(("creation", "249"), None, Some(blood_pressure(125, 82))),
            version(("creation", "249"), None, Some(bad)),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["code"], "wrong_archetype");
    assert!(
        e["message"].as_str().unwrap().starts_with("versions[1]"),
        "{e}"
    );
    assert_eq!(env.footprint().0, held);
    // Too many versions; no versions; a change without its preceding version.
    let many = vec![
        version(("creation", "249"), None, Some(blood_pressure(125, 82)));
        openehr::versions::MAX_CONTRIBUTION_VERSIONS + 1
    ];
    let (s, _, _) = post_contribution(&env, &env.app, many).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = post_contribution(&env, &env.app, vec![]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, e) = post_contribution(
        &env,
        &env.app,
        vec![version(("deleted", "523"), None, None)],
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["code"], "missing_mandatory");
    assert_eq!(env.footprint().0, held);

    // A creation, a modification and a delete in one contribution.
    let (s, h, c) = post_contribution(
        &env,
        &env.app,
        vec![
            version(("creation", "249"), None, Some(blood_pressure(125, 82))),
            version(
                ("modification", "251"),
                Some(&a1),
                Some(blood_pressure(140, 90)),
            ),
            version(("deleted", "523"), Some(&b1), None),
        ],
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(env.footprint().0, held + 3);
    let ids = version_ids(&c);
    assert_eq!(ids.len(), 3);
    assert!(ids[0].ends_with("::cophr::1"));
    assert_eq!(ids[1], a1.replace("::1", "::2"));
    assert_eq!(ids[2], b1.replace("::1", "::2"));
    let cuid = c["uid"]["value"].as_str().unwrap().to_owned();
    assert_eq!(etag(&h), cuid);
    assert!(h["location"]
        .to_str()
        .unwrap()
        .ends_with(&format!("/contribution/{cuid}")));
    // What it wrote reads back, through openEHR and the REST API.
    let (_, _, x) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/composition/{}", ids[1]),
    )
    .await;
    assert_eq!(*systolic_of(&x), json!(140));
    let (s, _, _) = get(
        &env.app,
        &format!(
            "/openehr/v1/ehr/{ehr}/composition/{}",
            openehr::parse_uid(&b1).unwrap().object
        ),
    )
    .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (_, _, list) = get(
        &env.app,
        &format!("/api/v1/records/{}/entries?category=vital-signs", env.rid()),
    )
    .await;
    let mut sys: Vec<i64> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"]["systolic"]["value"].as_i64().unwrap())
        .collect();
    sys.sort_unstable();
    assert_eq!(sys, [125, 140]);
    // The contribution reads back with its versions (one audited read), and each version
    // names it.
    let audits = env.footprint().1;
    let (s, _, got) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/contribution/{cuid}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(env.footprint().1, audits + 1);
    let mut a = version_ids(&got);
    let mut b = ids.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(got["audit"]["change_type"]["value"], "modification");
    let object = openehr::parse_uid(&ids[1]).unwrap().object;
    let (_, _, v) = get(
        &env.app,
        &format!(
            "/openehr/v1/ehr/{ehr}/versioned_composition/{object}/version/{}",
            ids[1]
        ),
    )
    .await;
    assert_eq!(v["contribution"]["id"]["value"], cuid);
    // The first composition's own create is a contribution of its own.
    let (_, _, v) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/versioned_composition/{object}/version/{a1}"),
    )
    .await;
    let first = v["contribution"]["id"]["value"].as_str().unwrap();
    assert_ne!(first, cuid);
    let (_, _, got) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/contribution/{first}"),
    )
    .await;
    assert_eq!(version_ids(&got), std::slice::from_ref(&a1));
    assert_eq!(got["audit"]["change_type"]["value"], "creation");
    // Unknown and malformed contribution ids.
    let (s, _, _) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/contribution/{ehr}"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = get(&env.app, &format!("/openehr/v1/ehr/{ehr}/contribution/x")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Someone without vital-signs access: the contribution is not there for her, and she
    // may not write one (403, nothing stored).
    let kay = key(9, "kay");
    env.grant(&kay, Level::Write, &[Category::Problems]);
    let app = app_for(&env.store, &kay, profile("Dr Kay"), &env.clock);
    let (s, _, _) = get(&app, &format!("/openehr/v1/ehr/{ehr}/contribution/{cuid}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let held = env.footprint().0;
    let (s, _, e) = post_contribution(
        &env,
        &app,
        vec![version(
            ("creation", "249"),
            None,
            Some(blood_pressure(125, 82)),
        )],
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(env.footprint().0, held);
}

#[tokio::test]
async fn flat_compositions_of_the_core_templates_in_and_out() {
    let env = Env::new();
    let ehr = env.ehr();
    // The web template of each core template; an unknown one is 404.
    let (s, _, list) = get(&env.app, "/openehr/v1/definition/template/adl1.4").await;
    assert_eq!(s, StatusCode::OK);
    for t in list.as_array().unwrap() {
        let id = t["template_id"].as_str().unwrap();
        let (s, _, wt) = get(
            &env.app,
            &format!("/openehr/v1/definition/template/adl1.4/{id}"),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{id}");
        assert_eq!(wt["templateId"], id);
        assert_eq!(wt["tree"]["rmType"], "COMPOSITION");
    }
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["template_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"cophr.procedures.v1") && ids.contains(&"cophr.immunisations.v1"));
    let (s, _, _) = get(
        &env.app,
        "/openehr/v1/definition/template/adl1.4/cophr.nothing.v1",
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // A procedure sent as FLAT (by the ITS-REST media type).
    let flat = json!({
        "ctx/language": "en", "ctx/territory": "GB", "ctx/composer_name": "A client",
        "procedures_list/procedure:0/procedure": "Appendicectomy",
        "procedures_list/procedure:0/body_site": "abdomen",
        "procedures_list/procedure:0/time": "2011-07-14T10:30:00Z",
    });
    let held = env.footprint().0;
    env.tick();
    let (s, h, c) = send(
        &env.app,
        "POST",
        &format!("/openehr/v1/ehr/{ehr}/composition"),
        &[
            ("content-type", "application/openehr.wt.flat+json"),
            ("openehr-template-id", "cophr.procedures.v1"),
            ("accept", "application/openehr.wt.flat+json"),
            ("prefer", "return=representation"),
        ],
        serde_json::to_vec(&flat).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(h["content-type"], "application/openehr.wt.flat+json");
    assert_eq!(c["procedures_list/procedure/procedure"], "Appendicectomy");
    assert_eq!(c["procedures_list/procedure/time"], "2011-07-14");
    let v1 = etag(&h);
    // It reads back canonical, FLAT by ?format=FLAT, and through the REST API.
    let (_, _, canon) = get(&env.app, &format!("/openehr/v1/ehr/{ehr}/composition/{v1}")).await;
    assert_eq!(
        canon["content"][0]["archetype_node_id"],
        "openEHR-EHR-ACTION.procedure.v1"
    );
    assert_eq!(canon["content"][0]["time"]["value"], "2011-07-14");
    let (s, _, f) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/composition/{v1}?format=FLAT"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(f["procedures_list/procedure/body_site"], "abdomen");
    let (_, _, list) = get(
        &env.app,
        &format!("/api/v1/records/{}/entries?category=procedures", env.rid()),
    )
    .await;
    assert_eq!(list[0]["body"]["procedure"], "Appendicectomy");
    assert_eq!(list[0]["body"]["date"], "2011-07-14");
    // An update in FLAT (?format=FLAT with templateId) makes version 2.
    let object = openehr::parse_uid(&v1).unwrap().object;
    let mut changed = flat.clone();
    changed["procedures_list/procedure:0/body_site"] = json!("right iliac fossa");
    env.tick();
    let (s, h, e) = send(
        &env.app,
        "PUT",
        &format!(
            "/openehr/v1/ehr/{ehr}/composition/{object}?format=FLAT&templateId=cophr.procedures.v1"
        ),
        &[JSON, ("if-match", &v1)],
        serde_json::to_vec(&changed).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert!(etag(&h).ends_with("::2"));

    // Bad FLAT, nothing stored: no template, an unknown key, a missing mandatory element.
    let held2 = env.footprint().0;
    assert_eq!(held2, held + 2);
    for (headers, body, code) in [
        (
            vec![("content-type", "application/openehr.wt.flat+json")],
            flat.clone(),
            "bad_request",
        ),
        (
            vec![
                ("content-type", "application/openehr.wt.flat+json"),
                ("openehr-template-id", "cophr.procedures.v1"),
            ],
            json!({"procedures_list/procedure/procedure": "x", "procedures_list/procedure/surgeon": "y"}),
            "unknown_path",
        ),
        (
            vec![
                ("content-type", "application/openehr.wt.flat+json"),
                ("openehr-template-id", "cophr.procedures.v1"),
            ],
            json!({"procedures_list/procedure/body_site": "abdomen", "procedures_list/procedure/time": "2011-07-14"}),
            "missing_mandatory",
        ),
        (
            vec![
                ("content-type", "application/openehr.wt.flat+json"),
                ("openehr-template-id", "cophr.nothing.v1"),
            ],
            flat.clone(),
            "unknown_template",
        ),
    ] {
        env.tick();
        let (s, _, e) = send(
            &env.app,
            "POST",
            &format!("/openehr/v1/ehr/{ehr}/composition"),
            &headers,
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
        // No template: not readable (400); the rest are the template's refusals (422).
        let want = if code == "bad_request" {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        assert_eq!(s, want, "{e}");
        assert_eq!(e["code"], code, "{e}");
    }
    assert_eq!(env.footprint().0, held2);
}

#[tokio::test]
async fn the_later_core_templates_go_both_ways() {
    let env = Env::new();
    let ehr = env.ehr();
    // A lab result sent as FLAT, its keys written by hand from the web template.
    let lab = "laboratory_result_report/laboratory_test_result:0/any_event:0";
    let flat = json!({
        "ctx/language": "en", "ctx/territory": "GB",
        format!("{lab}/test"): "HbA1c",
        format!("{lab}/laboratory_analyte_result/result"): "48",
        format!("{lab}/laboratory_analyte_result/unit"): "mmol/mol",
        format!("{lab}/laboratory_analyte_result/status|code"): "final",
        format!("{lab}/time"): "2026-11-30T08:10:00Z",
    });
    env.tick();
    let (s, h, c) = send(
        &env.app,
        "POST",
        &format!("/openehr/v1/ehr/{ehr}/composition"),
        &[
            ("content-type", "application/openehr.wt.flat+json"),
            ("openehr-template-id", "cophr.lab_results.v1"),
        ],
        serde_json::to_vec(&flat).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let v1 = etag(&h);
    // Through the REST API and FHIR: the same values.
    let (_, _, list) = get(
        &env.app,
        &format!("/api/v1/records/{}/entries?category=lab-results", env.rid()),
    )
    .await;
    let b = &list[0]["body"];
    assert_eq!(
        (&b["test"], &b["result"], &b["unit"], &b["status"]),
        (
            &json!("HbA1c"),
            &json!("48"),
            &json!("mmol/mol"),
            &json!("final")
        )
    );
    assert_eq!(b["collected"], "2026-11-30T08:10:00Z");
    let (s, _, all) = get(
        &env.app,
        &format!("/fhir/r4/Patient/{}/$everything", env.rid()),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let text = all.to_string();
    assert!(text.contains("HbA1c") && text.contains("mmol/mol"), "{all}");
    // Canonical: the result a DV_TEXT in the analyte cluster.
    let (_, _, canon) = get(&env.app, &format!("/openehr/v1/ehr/{ehr}/composition/{v1}")).await;
    assert_eq!(
        canon["content"][0]["archetype_node_id"],
        openehr::LAB_RESULT
    );

    // An alert sent canonical, written by hand.
    let alert = json!({
        "_type": "COMPOSITION",
        "name": dv_text("Alerts"),
        "archetype_node_id": "openEHR-EHR-COMPOSITION.health_summary.v1",
        "archetype_details": {"archetype_id": {"value": "openEHR-EHR-COMPOSITION.health_summary.v1"},
                              "template_id": {"value": "cophr.alerts.v1"}, "rm_version": "1.0.4"},
        "content": [{
            "_type": "EVALUATION",
            "name": dv_text("Alert"),
            "archetype_node_id": "openEHR-EHR-EVALUATION.alert.v0",
            "data": {"_type": "ITEM_TREE", "archetype_node_id": "at0001", "name": dv_text("Tree"),
                     "items": [
                         {"_type": "ELEMENT", "archetype_node_id": "at0002", "name": dv_text("Alert"),
                          "value": dv_text("Metallic hip implant")},
                         {"_type": "ELEMENT", "archetype_node_id": "at9001", "name": dv_text("Severity"),
                          "value": {"_type": "DV_CODED_TEXT", "value": "high",
                                    "defining_code": {"terminology_id": {"value": "cophr"}, "code_string": "high"}}}
                     ]}
        }]
    });
    let (s, _, e) = post_composition(&env, &env.app, &alert).await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let (_, _, list) = get(
        &env.app,
        &format!("/api/v1/records/{}/entries?category=alerts", env.rid()),
    )
    .await;
    assert_eq!(list[0]["body"]["alert"], "Metallic hip implant");
    assert_eq!(list[0]["body"]["severity"], "high");
    // A severity the schema does not know: refused, nothing stored.
    let held = env.footprint();
    let mut bad = alert.clone();
    bad["content"][0]["data"]["items"][1]["value"]["defining_code"]["code_string"] =
        json!("medium");
    bad["content"][0]["data"]["items"][1]["value"]["value"] = json!("medium");
    let (s, _, _) = post_composition(&env, &env.app, &bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(env.footprint(), held);

    // A family history written through the REST API reads as a composition, canonical
    // and FLAT, and AQL finds it by its archetype.
    env.tick();
    let (s, _, made) = send(
        &env.app,
        "POST",
        &format!("/api/v1/records/{}/entries", env.rid()),
        &[JSON],
        serde_json::to_vec(&json!({"category": "family-history",
            "body": {"condition": "Breast cancer", "relative": "mother", "genomic-markers": ["BRCA1", "BRCA2"]}}))
        .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{made}");
    let id: cophr_protocol::EntryId = made["id"].as_str().unwrap().parse().unwrap();
    let object = openehr::item_uuid(&id);
    let (s, _, canon) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/composition/{object}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{canon}");
    assert_eq!(
        canon["archetype_details"]["template_id"]["value"],
        "cophr.family_history.v1"
    );
    assert_eq!(
        canon["content"][0]["archetype_node_id"],
        openehr::FAMILY_HISTORY
    );
    let (_, _, f) = get(
        &env.app,
        &format!("/openehr/v1/ehr/{ehr}/composition/{object}?format=FLAT"),
    )
    .await;
    assert_eq!(
        f["family_history/family_history/affected_relative"],
        "mother"
    );
    assert_eq!(
        f["family_history/family_history/genomic_markers"],
        "BRCA1\nBRCA2"
    );
    let (s, _, rows) = aql(
        &env.app,
        "SELECT f/data[at0001]/items[at9000]/value/value FROM EHR e CONTAINS COMPOSITION c \
         CONTAINS EVALUATION f[openEHR-EHR-EVALUATION.family_history.v2]",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    assert_eq!(rows["rows"], json!([["Breast cancer"]]));
    // Every template is listed.
    let (_, _, list) = get(&env.app, "/openehr/v1/definition/template/adl1.4").await;
    assert_eq!(
        list.as_array().map(Vec::len),
        Some(openehr::templates().len())
    );
}

#[tokio::test]
async fn extension_entries_are_compositions_of_their_definition_s_template() {
    let env = Env::new();
    let ehr = env.ehr();
    let tid = "cophr.ext.uk.nhs.tissue-viability.wound-care.v1";
    let root = "wound_assessment_tissue_viability/wound_assessment_tissue_viability";
    let flat = json!({
        format!("{root}/wound_type|code"): "pressure-ulcer",
        format!("{root}/location"): "left heel",
        format!("{root}/length|magnitude"): 3.5,
        format!("{root}/length|unit"): "cm",
        format!("{root}/signs_of_infection"): false,
        format!("{root}/pain_score"): 4,
        format!("{root}/assessed"): "2026-12-01T10:00:00Z",
    });
    let post_flat = |body: Json| {
        let app = env.app.clone();
        let ehr = ehr.clone();
        async move {
            send(
                &app,
                "POST",
                &format!("/openehr/v1/ehr/{ehr}/composition"),
                &[
                    ("content-type", "application/openehr.wt.flat+json"),
                    ("openehr-template-id", tid),
                ],
                serde_json::to_vec(&body).unwrap(),
            )
            .await
        }
    };
    // Before its schema is defined: no such template, nothing stored.
    let held = env.footprint();
    env.tick();
    let (s, _, e) = post_flat(flat.clone()).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_template"))
    );
    let (s, _, _) = get(
        &env.app,
        &format!("/openehr/v1/definition/template/adl1.4/{tid}"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(env.footprint(), held);

    // The patient defines wound care (the shipped example).
    let def = cophr_protocol::schema::ExtensionSchema::from_json(
        cophr_protocol::schema::EXAMPLES
            .iter()
            .find(|(n, _)| *n == "wound-care")
            .unwrap()
            .1,
    )
    .unwrap();
    env.tick();
    env.store
        .write(
            &env.rid(),
            &env.patient,
            Payload::DefineSchema(def),
            env.clock.load(Ordering::SeqCst),
            None,
        )
        .unwrap();
    // Listed among the templates, with its web template.
    let (_, _, list) = get(&env.app, "/openehr/v1/definition/template/adl1.4").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["template_id"] == tid),
        "{list}"
    );
    let (s, _, wt) = get(
        &env.app,
        &format!("/openehr/v1/definition/template/adl1.4/{tid}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(wt["templateId"], tid);

    // Written in FLAT, read through the REST API, canonical, and found by AQL CONTAINS on
    // its archetype id.
    env.tick();
    let (s, h, c) = post_flat(flat.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let v1 = etag(&h);
    let (_, _, list) = get(
        &env.app,
        &format!(
            "/api/v1/records/{}/entries?category=ext:uk.nhs.tissue-viability/wound-care",
            env.rid()
        ),
    )
    .await;
    let b = &list[0]["body"];
    assert_eq!(b["location"], "left heel");
    assert_eq!(b["pain-score"], 4);
    assert_eq!(b["signs-of-infection"], false);
    let (_, _, canon) = get(&env.app, &format!("/openehr/v1/ehr/{ehr}/composition/{v1}")).await;
    let archetype = "openEHR-EHR-EVALUATION.cophr_ext_uk_nhs_tissue_viability__wound_care.v1";
    assert_eq!(canon["content"][0]["archetype_node_id"], archetype);
    let (s, _, rows) = aql(
        &env.app,
        &format!(
            "SELECT w/data[at0001]/items[at1002]/value/value, w/data[at0001]/items[at1013]/value/magnitude \
             FROM EHR e CONTAINS COMPOSITION c CONTAINS EVALUATION w[{archetype}] \
             WHERE w/data[at0001]/items[at1013]/value/magnitude > 3"
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    assert_eq!(rows["rows"], json!([["left heel", 4]]));
    // Canonical in, an amend through PUT.
    let mut changed = canon.clone();
    let items = changed["content"][0]["data"]["items"]
        .as_array_mut()
        .unwrap();
    let loc = items
        .iter_mut()
        .find(|i| i["archetype_node_id"] == "at1002")
        .unwrap();
    loc["value"]["value"] = json!("right heel");
    let object = openehr::parse_uid(&v1).unwrap().object;
    env.tick();
    let (s, h, e) = send(
        &env.app,
        "PUT",
        &format!("/openehr/v1/ehr/{ehr}/composition/{object}"),
        &[JSON, ("if-match", &v1)],
        serde_json::to_vec(&changed).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert!(etag(&h).ends_with("::2"));

    // Invalid compositions refused, nothing stored: a field the definition has not, a
    // wrong type, a mandatory field missing, a code outside its value set.
    let held = env.footprint();
    let mut bad_type = flat.clone();
    bad_type[format!("{root}/pain_score")] = json!("four");
    let mut missing = flat.clone();
    missing
        .as_object_mut()
        .unwrap()
        .remove(&format!("{root}/location"));
    let mut bad_code = flat.clone();
    bad_code[format!("{root}/wound_type|code")] = json!("graze");
    let mut unknown = flat.clone();
    unknown[format!("{root}/surgeon")] = json!("Dr X");
    for (body, code) in [
        (unknown, "unknown_path"),
        (bad_type, "wrong_type"),
        (missing, "missing_mandatory"),
        (bad_code, "invalid_composition"),
    ] {
        env.tick();
        let (s, _, e) = post_flat(body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
        assert_eq!(e["code"], code, "{e}");
    }
    let mut extra = canon.clone();
    extra["content"][0]["data"]["items"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"_type": "ELEMENT", "archetype_node_id": "at1999", "name": dv_text("x"),
                     "value": dv_text("y")}),
        );
    let (s, _, e) = post_composition(&env, &env.app, &extra).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_path"))
    );
    assert_eq!(env.footprint(), held);
}
