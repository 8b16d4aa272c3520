//! Extensions defined by an openEHR template (issue 17): an OPT uploaded through
//! `POST /openehr/v1/definition/template/adl1.4` defines an extension whose entries are
//! compositions of that template, both ways (FLAT and canonical in, `cophr add`-style
//! entries out), found by AQL on the template's archetype ids; who may upload; bad,
//! unsupported and incompatible templates refused with nothing stored.

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

const OPT: &str = cophr_protocol::schema::WOUND_OPT;
const TID: &str = "Wound assessment.v1";
const TID_URL: &str = "Wound%20assessment.v1";
const CAT: &str = "ext:openehr/wound-assessment";
const ROOT: &str = "wound_assessment/wound_examination/any_event";

async fn upload(app: &Router, query: &str, body: &str) -> Answer {
    send(
        app,
        "POST",
        &format!("/openehr/v1/definition/template/adl1.4{query}"),
        &[("content-type", "application/xml")],
        body.as_bytes().to_vec(),
    )
    .await
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

/// The OPT with one more optional element (`Odour`, at0140): a compatible version 2.
fn opt_v2() -> String {
    let extra = "<children xsi:type=\"C_COMPLEX_OBJECT\"><rm_type_name>ELEMENT</rm_type_name><node_id>at0140</node_id><occurrences><lower>0</lower><upper>1</upper></occurrences><attributes xsi:type=\"C_SINGLE_ATTRIBUTE\"><rm_attribute_name>value</rm_attribute_name><children xsi:type=\"C_COMPLEX_OBJECT\"><rm_type_name>DV_TEXT</rm_type_name><node_id/></children></attributes></children>";
    OPT.replacen(
        "<rm_attribute_name>items</rm_attribute_name>",
        &format!("<rm_attribute_name>items</rm_attribute_name>{extra}"),
        1,
    )
    .replacen(
        "<term_definitions code=\"at0130\">",
        "<term_definitions code=\"at0140\"><items id=\"text\">Odour</items></term_definitions><term_definitions code=\"at0130\">",
        1,
    )
}

#[tokio::test]
async fn an_uploaded_opt_defines_an_extension_whose_entries_are_compositions_of_the_template() {
    let env = Env::new();
    let ehr = env.ehr();
    // Before: no such template.
    let (s, _, _) = get(
        &env.app,
        &format!("/openehr/v1/definition/template/adl1.4/{TID_URL}"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    env.tick();
    let (s, h, out) = upload(&env.app, "", OPT).await;
    assert_eq!(s, StatusCode::CREATED, "{out}");
    assert_eq!(out["category"], CAT);
    assert_eq!(out["version"], 1);
    assert_eq!(out["template_id"], TID);
    assert_eq!(
        h["location"].to_str().unwrap(),
        format!(
            "/openehr/v1/definition/template/adl1.4/{}",
            TID.replace(' ', "+")
        )
    );
    // The definition is an entry of the record, signed by the patient, with its map.
    let def = env
        .store
        .with_record(&env.rid(), |r| {
            r.extension_schema(&CAT.parse().unwrap())
                .map(|(_, s)| s.clone())
        })
        .unwrap()
        .expect("defined");
    assert_eq!(def.template.as_ref().unwrap().id, TID);
    // Listed, and its web template served.
    let (_, _, list) = get(&env.app, "/openehr/v1/definition/template/adl1.4").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["template_id"] == TID),
        "{list}"
    );
    let (s, _, wt) = get(
        &env.app,
        &format!("/openehr/v1/definition/template/adl1.4/{TID_URL}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(wt["templateId"], TID);
    assert_eq!(
        wt["tree"]["children"][1]["nodeId"],
        "openEHR-EHR-OBSERVATION.exam.v1"
    );

    // A FLAT composition of the template, as a client writes it from the web template.
    env.tick();
    let flat = json!({
        "ctx/language": "en", "ctx/territory": "GB",
        format!("{ROOT}/time"): "2026-12-02T10:00:00Z",
        format!("{ROOT}/body_site"): "left heel",
        format!("{ROOT}/wound_type|code"): "at0101",
        format!("{ROOT}/length|magnitude"): 3.5,
        format!("{ROOT}/length|unit"): "cm",
        "wound_assessment/plan/synopsis": "foam dressing",
    });
    let (s, h, c) = send(
        &env.app,
        "POST",
        &format!("/openehr/v1/ehr/{ehr}/composition"),
        &[
            ("content-type", "application/openehr.wt.flat+json"),
            ("openehr-template-id", TID),
        ],
        serde_json::to_vec(&flat).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let v1 = h["etag"].to_str().unwrap().trim_matches('"').to_owned();
    // Stored as an entry of the extension category, read through the REST API.
    let (_, _, list) = get(
        &env.app,
        &format!("/api/v1/records/{}/entries?category={CAT}", env.rid()),
    )
    .await;
    let b = &list[0]["body"];
    assert_eq!(b["body-site"], "left heel", "{list}");
    assert_eq!(b["wound-type"], "Pressure ulcer");
    assert_eq!(b["length"], json!({"value": 3.5, "unit": "cm"}));
    assert_eq!(b["synopsis"], "foam dressing");
    // Read back as the template's canonical composition.
    let (_, _, canon) = get(&env.app, &format!("/openehr/v1/ehr/{ehr}/composition/{v1}")).await;
    assert_eq!(canon["archetype_details"]["template_id"]["value"], TID);
    assert_eq!(
        canon["content"][0]["archetype_node_id"],
        "openEHR-EHR-OBSERVATION.exam.v1"
    );
    assert_eq!(
        canon["content"][1]["archetype_node_id"],
        "openEHR-EHR-EVALUATION.clinical_synopsis.v1"
    );
    // Canonical in: the same composition posted again is a second entry.
    env.tick();
    let mut again = canon.clone();
    let items = again["content"][0]["data"]["events"][0]["data"]["items"]
        .as_array_mut()
        .unwrap();
    let site = items
        .iter_mut()
        .find(|i| i["archetype_node_id"] == "at0004")
        .unwrap();
    site["value"]["value"] = json!("sacrum");
    let (s, _, e) = send(
        &env.app,
        "POST",
        &format!("/openehr/v1/ehr/{ehr}/composition"),
        &[JSON],
        serde_json::to_vec(&again).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    // An entry written as `cophr add` writes it reads back as the template's composition.
    env.tick();
    let body = def
        .with_view(|sch| {
            cophr_protocol::schema::body_from_json_in(
                &def.category,
                Some(sch),
                &json!({"body-site": "right heel", "wound-type": "Surgical wound"}),
            )
        })
        .unwrap();
    let id = env
        .store
        .write(
            &env.rid(),
            &env.patient,
            Payload::Create {
                category: def.category.clone(),
                body,
            },
            env.clock.load(Ordering::SeqCst),
            None,
        )
        .unwrap();
    let (s, _, c) = get(
        &env.app,
        &format!(
            "/openehr/v1/ehr/{ehr}/composition/{}",
            openehr::item_uuid(&id)
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let wt_el = c["content"][0]["data"]["events"][0]["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["archetype_node_id"] == "at0100")
        .unwrap()
        .clone();
    assert_eq!(wt_el["value"]["defining_code"]["code_string"], "at0103");
    assert_eq!(wt_el["value"]["value"], "Surgical wound");
    // AQL CONTAINS on the template's archetype id finds all three.
    let (s, _, rows) = aql(
        &env.app,
        "SELECT o/data[at0001]/events[at0002]/data[at0003]/items[at0004]/value/value \
         FROM EHR e CONTAINS COMPOSITION c CONTAINS OBSERVATION o[openEHR-EHR-OBSERVATION.exam.v1]",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{rows}");
    let mut sites: Vec<String> = rows["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect();
    sites.sort();
    assert_eq!(sites, ["left heel", "right heel", "sacrum"]);

    // The same template again: 409, nothing stored.
    let held = env.footprint().0;
    env.tick();
    let (s, _, e) = upload(&env.app, "", OPT).await;
    assert_eq!(
        (s, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("template_exists")),
        "{e}"
    );
    assert_eq!(env.footprint().0, held);
    // A compatible next version: version 2, and the earlier data still reads.
    env.tick();
    let (s, _, out) = upload(&env.app, "", &opt_v2()).await;
    assert_eq!(s, StatusCode::CREATED, "{out}");
    assert_eq!(out["version"], 2);
    let (s, _, c) = get(&env.app, &format!("/openehr/v1/ehr/{ehr}/composition/{v1}")).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    // An incompatible one (Signs of infection removed): 409 naming the field, nothing stored.
    let held = env.footprint().0;
    env.tick();
    let gone = opt_v2().replacen("<node_id>at0130</node_id>", "<node_id>at0131</node_id>", 1);
    let (s, _, e) = upload(&env.app, "", &gone).await;
    assert_eq!(s, StatusCode::CONFLICT, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("signs-of-infection"),
        "{e}"
    );
    assert_eq!(env.footprint().0, held);
}

#[tokio::test]
async fn bad_templates_are_refused_with_nothing_stored() {
    let env = Env::new();
    let held = env.footprint().0;
    for (body, status, code) in [
        (
            "<template><oops></template>",
            StatusCode::BAD_REQUEST,
            "invalid_template",
        ),
        (
            "{\"templateId\": \"x\"",
            StatusCode::BAD_REQUEST,
            "invalid_template",
        ),
        (
            cophr_protocol::schema::EXAMPLES[0].1,
            StatusCode::BAD_REQUEST,
            "invalid_template",
        ),
    ] {
        env.tick();
        let (s, _, e) = upload(&env.app, "", body).await;
        assert_eq!((s, e["code"].as_str()), (status, Some(code)), "{e}");
    }
    // An unsupported data type: 422 naming the node.
    let media = OPT.replacen(
        "<rm_type_name>DV_BOOLEAN</rm_type_name>",
        "<rm_type_name>DV_MULTIMEDIA</rm_type_name>",
        1,
    );
    env.tick();
    let (s, _, e) = upload(&env.app, "", &media).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(
        e["message"],
        "DV_MULTIMEDIA at /content[openEHR-EHR-OBSERVATION.exam.v1]/data[at0001]/events[at0002]/data[at0003]/items[at0130] is not supported: the data types supported are DV_TEXT, DV_CODED_TEXT (local codes), DV_QUANTITY, DV_COUNT, DV_BOOLEAN, DV_DATE and DV_DATE_TIME"
    );
    // Over the size bound: 413.
    let big = format!(
        "{OPT}{}",
        " ".repeat(cophr_protocol::schema::template::MAX_TEMPLATE_BYTES)
    );
    let (s, _, _) = upload(&env.app, "", &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    // A core category cannot be defined by a template.
    let (s, _, e) = upload(&env.app, "?category=allergies", OPT).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(env.footprint().0, held);
}

#[tokio::test]
async fn who_may_upload_a_template_the_patient_or_a_writer_of_that_category() {
    let env = Env::new();
    let cat: Category = CAT.parse().unwrap();
    let other: Category = "ext:openehr/other".parse().unwrap();
    let ehr = env.ehr();
    let q = format!("?ehr_id={ehr}");
    // A viewer of the category, and a writer of another, are refused: 403, nothing stored.
    let vera = key(9, "vera");
    env.grant(&vera, Level::View, std::slice::from_ref(&cat));
    let app = app_for(&env.store, &vera, profile("Vera"), &env.clock);
    let held = env.footprint().0;
    env.tick();
    let (s, _, e) = upload(&app, &q, OPT).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(env.footprint().0, held);
    let walt = key(9, "walt");
    env.grant(&walt, Level::Write, &[other]);
    let app_w = app_for(&env.store, &walt, profile("Walt"), &env.clock);
    let held = env.footprint().0;
    env.tick();
    let (s, _, e) = upload(&app_w, &q, OPT).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(env.footprint().0, held);
    // A stranger does not find the EHR.
    let stranger = app_for(&env.store, &key(9, "stranger"), profile("S"), &env.clock);
    let (s, _, _) = upload(&stranger, &q, OPT).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A grantee with write on that category defines it, as herself.
    let wendy = key(9, "wendy");
    env.grant(&wendy, Level::Write, std::slice::from_ref(&cat));
    let app = app_for(&env.store, &wendy, profile("Wendy"), &env.clock);
    env.tick();
    let (s, _, out) = upload(&app, &q, OPT).await;
    assert_eq!(s, StatusCode::CREATED, "{out}");
    let author = env
        .store
        .with_record(&env.rid(), |r| {
            let (id, _) = r.extension_schema(&cat).unwrap();
            r.get(&id).unwrap().entry().author
        })
        .unwrap();
    assert_eq!(author, wendy.actor());
}
