//! The FHIR R4 API (`/fhir/r4`), driven in process through the node's router.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use cophr_node::http::{router, AppState};
use cophr_node::store::Store;
use cophr_protocol::keys::{self, Domain};
use cophr_protocol::testkit::key;
use cophr_protocol::{
    ActorId, Category, Grant, Keypair, Level, Payload, Profile, RecordId, Scope, SignedEntry,
};
use serde_json::{json, Value as Json};
use tower::ServiceExt;

const TOKEN: &str = "fhirtesttoken";
const T0: u64 = 1_700_000_000_000;

fn test_data(package: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-data")
        .join(package)
        .join("package");
    assert!(
        dir.is_dir(),
        "FHIR test data missing at {}: run bash .ci/deps",
        dir.display()
    );
    dir
}

fn example(package: &str, file: &str) -> Json {
    let p = test_data(package).join(file);
    let text = std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e} (run bash .ci/deps)", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn r4(file: &str) -> Json {
    example("hl7.fhir.r4.examples", file)
}

struct Env {
    _dir: tempfile::TempDir,
    store: Store,
    patient: Keypair,
    clock: Arc<AtomicU64>,
    app: Router,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), key(7, "node")).unwrap();
        let patient = key(7, "george");
        store
            .create_record(&patient, profile("George", "patient", None), T0, None)
            .unwrap();
        let clock = Arc::new(AtomicU64::new(T0 + 1000));
        let app = app_for(&store, &patient, profile("George", "patient", None), &clock);
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

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1000, Ordering::SeqCst) + 1000
    }

    /// Entries and audit events held, to check that nothing was stored.
    /// (Entries other than key management, audit events): what resources and profiles
    /// were written as. (Sealing adds a stream's opening before its first entry.)
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

    async fn get(&self, uri: &str) -> Answer {
        send(&self.app, "GET", uri, Some(TOKEN), None, Vec::new()).await
    }

    async fn post(&self, body: &Json) -> Answer {
        self.tick();
        send(
            &self.app,
            "POST",
            "/fhir/r4",
            Some(TOKEN),
            Some("application/fhir+json"),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }
}

fn profile(name: &str, role: &str, org: Option<&str>) -> Profile {
    Profile {
        name: name.into(),
        role: role.into(),
        organisation: org.map(str::to_owned),
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

/// Status, headers and JSON body of a response.
type Answer = (StatusCode, HeaderMap, Json);

async fn send(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let mut b = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "localhost");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    let resp = app
        .clone()
        .oneshot(b.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    answer(resp).await
}

/// A response's status, headers and JSON body (`null` when the body is not JSON).
async fn answer(resp: axum::response::Response) -> (StatusCode, HeaderMap, Json) {
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

/// The source system the test Bundles name.
const SOURCE: &str = "https://gp.example/fhir";

/// A transaction Bundle POSTing each resource, from [`SOURCE`].
fn transaction(resources: &[Json]) -> Json {
    let mut b = bundle_of("transaction", resources);
    b["meta"] = json!({"source": SOURCE});
    b
}

fn bundle_of(kind: &str, resources: &[Json]) -> Json {
    let entries: Vec<Json> = resources
        .iter()
        .enumerate()
        .map(|(i, r)| {
            json!({"fullUrl": format!("urn:uuid:00000000-0000-0000-0000-{i:012}"),
                   "resource": r,
                   "request": {"method": "POST", "url": r["resourceType"]}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn with_date(mut r: Json, date: &str) -> Json {
    r["effectiveDateTime"] = json!(date);
    r
}

/// Compares a resource read back with what was sent (the server sets `id` and `meta`).
fn same_resource(sent: &Json, got: &Json) {
    let strip = |j: &Json| {
        let mut j = j.clone();
        let o = j.as_object_mut().unwrap();
        o.remove("id");
        o.remove("meta");
        j
    };
    assert_eq!(strip(sent), strip(got));
}

/// The `reference`s in a resource, by their path.
fn references(j: &Json, at: &str, out: &mut Vec<(String, String)>) {
    match j {
        Json::Object(m) => {
            for (k, v) in m {
                let here = format!("{at}.{k}");
                match (k.as_str(), v.as_str()) {
                    ("reference", Some(r)) => out.push((here, r.to_owned())),
                    _ => references(v, &here, out),
                }
            }
        }
        Json::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                references(v, &format!("{at}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Compares a resource read back with what was sent, as [`same_resource`] does, except
/// for references the server names its resources by (`Type/<entry id>`, `Patient/<record
/// id>`): each of those must resolve on the server. Returns how many were rewritten.
async fn same_resource_served(env: &Env, sent: &Json, got: &Json) -> usize {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    references(sent, "", &mut a);
    references(got, "", &mut b);
    let paths = |v: &[(String, String)]| v.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&a), paths(&b), "the same references");
    let mut rewritten = 0;
    for ((_, from), (at, to)) in a.iter().zip(&b) {
        if from != to {
            rewritten += 1;
            let (s, _, _) = env.get(&format!("/fhir/r4/{to}")).await;
            assert_eq!(
                s,
                StatusCode::OK,
                "{at}: {from} served as {to}, which does not resolve"
            );
        }
    }
    let blank = |j: &Json| {
        let mut j = j.clone();
        fn walk(v: &mut Json) {
            match v {
                Json::Object(m) => {
                    for (k, x) in m.iter_mut() {
                        if k == "reference" && x.is_string() {
                            *x = json!("");
                        } else {
                            walk(x);
                        }
                    }
                }
                Json::Array(a) => a.iter_mut().for_each(walk),
                _ => {}
            }
        }
        walk(&mut j);
        j
    };
    same_resource(&blank(sent), &blank(got));
    rewritten
}

fn is_outcome(body: &Json, code: &str) {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert_eq!(body["issue"][0]["severity"], "error", "{body}");
    assert_eq!(body["issue"][0]["code"], code, "{body}");
    assert!(
        body["issue"][0]["diagnostics"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

fn locations(resp: &Json) -> Vec<String> {
    resp["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["location"].as_str().unwrap().to_owned())
        .collect()
}

/// `Type/id` of a `Type/id/_history/n` location.
fn resource_path(location: &str) -> String {
    location.split("/_history").next().unwrap().to_owned()
}

fn ids(bundle: &Json) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn metadata_lists_exactly_what_is_served() {
    let env = Env::new();
    let (status, headers, cs) =
        send(&env.app, "GET", "/fhir/r4/metadata", None, None, Vec::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/fhir+json"));
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let rest = &cs["rest"][0];
    let types: BTreeSet<&str> = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    for t in cophr_protocol::fhir::MAPPED_TYPES.iter().chain(&[
        "Provenance",
        "AuditEvent",
        "Consent",
        "Practitioner",
    ]) {
        assert!(types.contains(t), "{t} missing from {types:?}");
    }
    // The types kept whole are served too (nothing imported is lost).
    for t in [
        "Claim",
        "Encounter",
        "Organization",
        "Medication",
        "Location",
    ] {
        assert!(types.contains(t), "{t} missing from {types:?}");
    }
    assert!(!types.contains("Bundle") && !types.contains("OperationOutcome"));
    let obs = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Observation")
        .unwrap();
    let params: BTreeSet<&str> = obs["searchParam"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        BTreeSet::from(["_id", "patient", "subject", "category", "code", "date"])
    );
    let interactions: BTreeSet<&str> = obs["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        interactions,
        BTreeSet::from([
            "read",
            "vread",
            "search-type",
            "history-instance",
            "history-type",
            "create"
        ])
    );
    let patient = rest["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Patient")
        .unwrap();
    assert_eq!(patient["operation"][0]["name"], "everything");
    let system: BTreeSet<&str> = rest["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        system,
        BTreeSet::from(["transaction", "batch", "history-system"])
    );
    // Every listed search parameter is accepted; an unlisted one is refused.
    for p in &params {
        let v = match *p {
            "date" => "ge2000".to_owned(),
            "patient" | "subject" => env.rid().to_string(),
            _ => "x".to_owned(),
        };
        let (s, _, _) = env.get(&format!("/fhir/r4/Observation?{p}={v}")).await;
        assert_eq!(s, StatusCode::OK, "{p}");
    }
    let (s, _, body) = env.get("/fhir/r4/Observation?value-quantity=5").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    is_outcome(&body, "invalid");
}

/// Imports three observations and returns their `Observation/<id>` paths.
async fn three_observations(env: &Env) -> (Vec<Json>, Vec<String>) {
    let sent = vec![
        with_date(r4("Observation-heart-rate.json"), "2021-03-04T10:00:00Z"),
        with_date(
            r4("Observation-body-temperature.json"),
            "2021-06-01T08:30:00Z",
        ),
        with_date(
            example("hl7.fhir.uv.ips", "example/Observation-hemoglobin.json"),
            "2022-01-15",
        ),
    ];
    let (status, _, resp) = env.post(&transaction(&sent)).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    assert_eq!(resp["type"], "transaction-response");
    let paths: Vec<String> = locations(&resp).iter().map(|l| resource_path(l)).collect();
    for e in resp["entry"].as_array().unwrap() {
        assert_eq!(e["response"]["status"], "201 Created");
        assert!(e["response"]["location"]
            .as_str()
            .unwrap()
            .ends_with("/_history/1"));
    }
    (sent, paths)
}

#[tokio::test]
async fn read_vread_history_and_search() {
    let env = Env::new();
    let (sent, paths) = three_observations(&env).await;
    for (r, p) in sent.iter().zip(&paths) {
        let (s, h, got) = env.get(&format!("/fhir/r4/{p}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(h["etag"], "W/\"1\"");
        same_resource(r, &got);
        assert_eq!(format!("Observation/{}", got["id"].as_str().unwrap()), *p);
        assert_eq!(got["meta"]["versionId"], "1");
    }

    // A new version through a transaction PUT: the amend chain is the version history.
    let mut changed = sent[0].clone();
    changed["valueQuantity"]["value"] = json!(61);
    let put = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": changed, "request": {"method": "PUT", "url": paths[0]}}]});
    let (s, _, resp) = env.post(&put).await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    assert_eq!(resp["entry"][0]["response"]["status"], "200 OK");
    assert!(resp["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .ends_with("/_history/2"));
    let (_, _, now) = env.get(&format!("/fhir/r4/{}", paths[0])).await;
    assert_eq!(now["meta"]["versionId"], "2");
    same_resource(&changed, &now);
    let (s, _, v1) = env.get(&format!("/fhir/r4/{}/_history/1", paths[0])).await;
    assert_eq!(s, StatusCode::OK);
    same_resource(&sent[0], &v1);
    let (_, _, v2) = env.get(&format!("/fhir/r4/{}/_history/2", paths[0])).await;
    same_resource(&changed, &v2);
    let (s, _, body) = env.get(&format!("/fhir/r4/{}/_history/3", paths[0])).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    is_outcome(&body, "not-found");

    let (_, _, h) = env.get(&format!("/fhir/r4/{}/_history", paths[0])).await;
    assert_eq!(h["type"], "history");
    assert_eq!(h["total"], 2);
    assert_eq!(h["entry"][0]["resource"]["meta"]["versionId"], "2");
    assert_eq!(h["entry"][1]["resource"]["meta"]["versionId"], "1");
    assert_eq!(h["entry"][1]["request"]["method"], "POST");
    assert!(h["link"][0]["url"].as_str().unwrap().contains("/_history"));
    let (_, _, th) = env.get("/fhir/r4/Observation/_history").await;
    assert_eq!(th["total"], 4);

    let search = |q: &str| {
        let q = q.to_owned();
        let env = &env;
        async move {
            let (s, _, b) = env.get(&format!("/fhir/r4/Observation?{q}")).await;
            assert_eq!(s, StatusCode::OK, "{q}: {b}");
            assert_eq!(b["type"], "searchset");
            assert_eq!(b["link"][0]["relation"], "self");
            for e in b["entry"].as_array().unwrap() {
                let id = e["resource"]["id"].as_str().unwrap();
                assert_eq!(
                    e["fullUrl"],
                    format!("http://localhost/fhir/r4/Observation/{id}")
                );
            }
            assert_eq!(b["total"], b["entry"].as_array().unwrap().len());
            ids(&b)
        }
    };
    let id = |i: usize| paths[i].trim_start_matches("Observation/").to_owned();
    let all: BTreeSet<String> = (0..3).map(id).collect();
    assert_eq!(search(&format!("patient={}", env.rid())).await, all);
    assert_eq!(search(&format!("patient=Patient/{}", env.rid())).await, all);
    assert!(search(&format!("patient={}", ActorId([9; 32])))
        .await
        .is_empty());
    assert_eq!(
        search("category=vital-signs").await,
        BTreeSet::from([id(0), id(1)])
    );
    assert_eq!(
        search("category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
            .await,
        BTreeSet::from([id(2)])
    );
    assert_eq!(
        search("code=http://loinc.org|8867-4").await,
        BTreeSet::from([id(0)])
    );
    assert_eq!(
        search("code=8310-5,8867-4").await,
        BTreeSet::from([id(0), id(1)])
    );
    assert!(search("code=http://snomed.info/sct|8867-4")
        .await
        .is_empty());
    assert_eq!(search("date=2021").await, BTreeSet::from([id(0), id(1)]));
    assert_eq!(search("date=eq2021-03-04").await, BTreeSet::from([id(0)]));
    assert_eq!(
        search("date=ge2021-06-01").await,
        BTreeSet::from([id(1), id(2)])
    );
    assert_eq!(search("date=gt2021-06-01").await, BTreeSet::from([id(2)]));
    assert_eq!(
        search("date=le2021-06-01").await,
        BTreeSet::from([id(0), id(1)])
    );
    assert_eq!(search("date=lt2021-06-01").await, BTreeSet::from([id(0)]));
    assert_eq!(
        search("date=ge2021-01-01&date=lt2022-01-01&category=vital-signs").await,
        BTreeSet::from([id(0), id(1)])
    );
    assert_eq!(
        search(&format!("_id={}", id(2))).await,
        BTreeSet::from([id(2)])
    );
    // Paging: `_count` per page, `next` and `previous` links, every match once.
    let mut seen_ids = BTreeSet::new();
    let mut url = "/fhir/r4/Observation?category=vital-signs,laboratory&_count=1".to_owned();
    for page_no in 0..3 {
        let (s, _, page) = env.get(&url).await;
        assert_eq!(s, StatusCode::OK, "{url}: {page}");
        assert_eq!(page["total"], 3);
        assert_eq!(page["entry"].as_array().unwrap().len(), 1);
        seen_ids.extend(ids(&page));
        let link = |rel: &str| {
            page["link"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["relation"] == rel)
                .map(|l| l["url"].as_str().unwrap().to_owned())
        };
        assert_eq!(link("previous").is_some(), page_no > 0);
        match link("next") {
            Some(next) => {
                assert!(next.contains("category=vital-signs%2Claboratory"), "{next}");
                url = next.trim_start_matches("http://localhost").to_owned();
            }
            None => assert_eq!(page_no, 2),
        }
    }
    assert_eq!(seen_ids, all);
}

#[tokio::test]
async fn everything_returns_the_record_the_identity_sees() {
    let env = Env::new();
    let (_, paths) = three_observations(&env).await;
    let (s, _, b) = env
        .get(&format!("/fhir/r4/Patient/{}/$everything", env.rid()))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["type"], "searchset");
    let entries = b["entry"].as_array().unwrap();
    assert_eq!(entries[0]["resource"]["resourceType"], "Patient");
    assert_eq!(entries[0]["resource"]["id"], env.rid().to_string());
    assert_eq!(entries[0]["resource"]["name"][0]["text"], "George");
    let got: BTreeSet<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    for p in &paths {
        assert!(got.contains(p), "{p} missing");
    }
    // The derived resources too: each observation's Provenance, and the audit trail (the
    // patient holds the audit right).
    let types: BTreeSet<&str> = entries
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert!(
        types.contains("Provenance") && types.contains("AuditEvent"),
        "{types:?}"
    );
    for p in &paths {
        assert!(entries
            .iter()
            .any(|e| e["resource"]["resourceType"] == "Provenance"
                && e["resource"]["target"][0]["reference"] == format!("{p}/_history/1")));
    }
    assert_eq!(b["total"], entries.len());
    // An unknown patient.
    let (s, _, body) = env
        .get(&format!(
            "/fhir/r4/Patient/{}/$everything",
            ActorId([9; 32])
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    is_outcome(&body, "not-found");
}

#[tokio::test]
async fn provenance_carries_a_signature_that_verifies_with_the_authors_key() {
    let env = Env::new();
    let (_, paths) = three_observations(&env).await;
    let (_, _, b) = env
        .get(&format!("/fhir/r4/Provenance?patient={}", env.rid()))
        .await;
    let target = format!("{}/_history/1", paths[0]);
    let prov = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|p| p["target"][0]["reference"] == target)
        .unwrap_or_else(|| panic!("no Provenance for {target} in {b}"))
        .clone();
    let (s, _, again) = env
        .get(&format!(
            "/fhir/r4/Provenance/{}",
            prov["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again, prov);
    let agent = &prov["agent"][0];
    assert_eq!(agent["who"]["identifier"]["value"], env.rid().to_string());
    assert_eq!(agent["who"]["display"], "George");
    assert_eq!(agent["role"][0]["text"], "patient");
    // Whether the author's identity is verified, by the node's trust list (none here).
    let assurance = &agent["extension"][0];
    assert_eq!(assurance["url"], "urn:cophr:fhir:identity-assurance");
    assert_eq!(assurance["extension"][0]["valueCode"], "self-asserted");
    assert_eq!(assurance["extension"][1]["valueString"], "self-asserted");
    assert!(prov["recorded"].as_str().unwrap().ends_with('Z'));
    // Imported: the source system is the Provenance's source entity.
    assert_eq!(prov["entity"][0]["role"], "source");
    assert_eq!(prov["entity"][0]["what"]["display"], SOURCE);
    let sig = &prov["signature"][0];
    let b64 = data_encoding::BASE64;
    let sig_bytes: [u8; 64] = b64
        .decode(sig["data"].as_str().unwrap().as_bytes())
        .unwrap()
        .try_into()
        .unwrap();
    let message = b64
        .decode(
            sig["extension"][0]["valueBase64Binary"]
                .as_str()
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
    let author: ActorId = sig["who"]["identifier"]["value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The message is the domain tag and the entry's signed bytes; the signature verifies
    // over it with the author's public key (plain ed25519, strict).
    let tag = b"cophr/v1/entry\0";
    assert!(message.starts_with(tag));
    let vk = ed25519_dalek::VerifyingKey::from_bytes(author.as_bytes()).unwrap();
    vk.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig_bytes))
        .unwrap();
    keys::verify(
        &author,
        Domain::Entry,
        &message[tag.len()..],
        &cophr_protocol::Sig(sig_bytes),
    )
    .unwrap();
    // And it is the signature of the entry the Provenance names.
    let eid = prov["id"].as_str().unwrap().parse().unwrap();
    let stored: SignedEntry = env
        .store
        .with_record(&env.rid(), |r| r.get(&eid).unwrap().signed().clone())
        .unwrap();
    assert_eq!(stored.sig().0, sig_bytes);
    assert_eq!(stored.entry().signing_bytes(), message[tag.len()..]);
    // A tampered message does not verify.
    let mut bad = message.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(vk
        .verify_strict(&bad, &ed25519_dalek::Signature::from_bytes(&sig_bytes))
        .is_err());
}

#[tokio::test]
async fn a_read_appears_as_an_audit_event() {
    let env = Env::new();
    let (_, paths) = three_observations(&env).await;
    let before = env.store.audit_events(&env.rid()).unwrap().len();
    env.tick();
    let (s, _, _) = env.get(&format!("/fhir/r4/{}", paths[1])).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        env.store.audit_events(&env.rid()).unwrap().len(),
        before + 1
    );
    let (s, _, b) = env
        .get(&format!("/fhir/r4/AuditEvent?patient={}", env.rid()))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let reads: Vec<&Json> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|a| {
            a["action"] == "R"
                && a["entity"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["what"]["reference"] == paths[1])
        })
        .collect();
    assert_eq!(reads.len(), 1, "{b}");
    let a = reads[0];
    assert_eq!(
        a["agent"][0]["who"]["identifier"]["value"],
        env.rid().to_string()
    );
    assert_eq!(a["agent"][0]["network"]["address"], "test-device");
    assert_eq!(a["outcomeDesc"], "FHIR read Observation");
    // The import shows as a create.
    assert!(b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["resource"]["action"] == "C"));
    // Reading the audit trail is itself audited, as an audit-read.
    let last = env.store.audit_events(&env.rid()).unwrap();
    assert_eq!(
        last.iter()
            .max_by_key(|a| a.event.time)
            .unwrap()
            .event
            .action,
        cophr_protocol::audit::Action::AuditRead
    );
}

#[tokio::test]
async fn consent_reflects_a_grant_and_its_revocation() {
    let env = Env::new();
    let carer = key(7, "mary");
    let grant = Grant {
        grantee: carer.actor(),
        level: Level::Write,
        scope: Scope::Only(BTreeSet::from([Category::VitalSigns])),
        not_before: None,
        until: Some(T0 + 86_400_000),
        audit: true,
        delegate: false,
        label: Some("Mary (wife, main carer)".into()),
        requires: None,
    };
    let gid = env
        .store
        .write(
            &env.rid(),
            &env.patient,
            Payload::Grant(grant),
            env.tick(),
            None,
        )
        .unwrap();
    let (s, _, c) = env.get(&format!("/fhir/r4/Consent/{gid}")).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "active");
    assert_eq!(c["patient"]["reference"], format!("Patient/{}", env.rid()));
    let p = &c["provision"];
    assert_eq!(p["type"], "permit");
    assert_eq!(
        p["actor"][0]["reference"]["identifier"]["value"],
        carer.actor().to_string()
    );
    assert_eq!(
        p["actor"][0]["reference"]["display"],
        "Mary (wife, main carer)"
    );
    assert_eq!(p["code"][0]["coding"][0]["code"], "vital-signs");
    assert_eq!(p["class"][0]["code"], "Observation");
    let levels: Vec<&str> = p["action"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| {
            a["coding"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["system"] == "urn:cophr:level")
                .and_then(|c| c["code"].as_str())
        })
        .collect();
    assert_eq!(levels, ["view", "annotate", "write"]);
    assert!(p["period"]["end"].as_str().is_some());
    let (_, _, list) = env
        .get(&format!("/fhir/r4/Consent?patient={}", env.rid()))
        .await;
    assert_eq!(list["total"], 1);

    env.store
        .write(
            &env.rid(),
            &env.patient,
            Payload::Revoke {
                grant: gid,
                category: None,
                reason: "moved away".into(),
            },
            env.tick(),
            None,
        )
        .unwrap();
    let (_, _, c) = env.get(&format!("/fhir/r4/Consent/{gid}")).await;
    assert_eq!(c["status"], "inactive");
    // The grant's Provenance points at the Consent.
    let (_, _, prov) = env.get(&format!("/fhir/r4/Provenance/{gid}")).await;
    assert_eq!(prov["target"][0]["reference"], format!("Consent/{gid}"));
}

/// A grant whose period has not started is not a Consent to act on yet: `draft` (FHIR R4
/// "Pending: awaiting use, not yet intended to be acted upon"), never `active`; once the
/// period starts it is `active`.
#[tokio::test]
async fn consent_of_a_grant_not_yet_valid_is_draft_until_its_period_starts() {
    let env = Env::new();
    let locum = key(7, "locum");
    let starts = T0 + 86_400_000;
    let grant = Grant {
        grantee: locum.actor(),
        level: Level::View,
        scope: Scope::All,
        not_before: Some(starts),
        until: None,
        audit: false,
        delegate: false,
        label: None,
        requires: None,
    };
    let gid = env
        .store
        .write(
            &env.rid(),
            &env.patient,
            Payload::Grant(grant),
            env.tick(),
            None,
        )
        .unwrap();
    let (s, _, c) = env.get(&format!("/fhir/r4/Consent/{gid}")).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["status"], "draft");
    assert!(c["provision"]["period"]["start"].as_str().is_some(), "{c}");
    env.clock.store(starts, Ordering::SeqCst);
    let (_, _, c) = env.get(&format!("/fhir/r4/Consent/{gid}")).await;
    assert_eq!(c["status"], "active");
}

fn ips_bundle(name: &str) -> Json {
    example("hl7.fhir.uv.ips", &format!("example/{name}"))
}

/// An IPS document Bundle as a transaction of the resource types cophr maps.
fn ips_as_transaction(doc: &Json) -> (Json, Vec<Json>) {
    let mapped = cophr_protocol::fhir::MAPPED_TYPES;
    let mut sent = Vec::new();
    let entries: Vec<Json> = doc["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| mapped.contains(&e["resource"]["resourceType"].as_str().unwrap()))
        .map(|e| {
            sent.push(e["resource"].clone());
            let mut e = e.clone();
            e["request"] = json!({"method": "POST", "url": e["resource"]["resourceType"]});
            e
        })
        .collect();
    (
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        sent,
    )
}

#[tokio::test]
async fn an_ips_bundle_imports_as_a_transaction_and_reads_back_equal() {
    let dir = test_data("hl7.fhir.uv.ips").join("example");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("Bundle-") && n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(
        !names.is_empty(),
        "no IPS example Bundles: run bash .ci/deps"
    );
    for name in names {
        let env = Env::new();
        let doc = ips_bundle(&name);
        assert_eq!(doc["type"], "document");
        let (tx, sent) = ips_as_transaction(&doc);
        let before = env.footprint();
        let (s, _, resp) = env.post(&tx).await;
        assert_eq!(s, StatusCode::OK, "{name}: {resp}");
        assert_eq!(resp["type"], "transaction-response");
        let locs = locations(&resp);
        assert_eq!(locs.len(), sent.len());
        // One durable write: the entries (and the profile, for a first write) with one
        // audit event.
        let after = env.footprint();
        assert_eq!(after.0 - before.0, sent.len(), "{name}");
        assert_eq!(after.1 - before.1, 1, "{name}");
        for (r, loc) in sent.iter().zip(&locs) {
            let (s, _, got) = env.get(&format!("/fhir/r4/{}", resource_path(loc))).await;
            assert_eq!(s, StatusCode::OK, "{name} {loc}");
            same_resource_served(&env, r, &got).await;
            let (s, _, v1) = env.get(&format!("/fhir/r4/{loc}")).await;
            assert_eq!(s, StatusCode::OK);
            // A version reads with the same references as the current resource.
            same_resource(&got, &v1);
        }

        // The whole document as a transaction, in a fresh record: every resource is kept
        // (Composition, Organization, Practitioner, Medication… whole) and reads back.
        let env = Env::new();
        let mut whole = doc.clone();
        whole["type"] = json!("transaction");
        for e in whole["entry"].as_array_mut().unwrap() {
            e["request"] = json!({"method": "POST", "url": e["resource"]["resourceType"]});
        }
        let (s, _, body) = env.post(&whole).await;
        assert_eq!(s, StatusCode::OK, "{name}: {body}");
        let locs = locations(&body);
        let all = whole["entry"].as_array().unwrap();
        assert_eq!(locs.len(), all.len(), "{name}");
        // Every reference among them that named another entry of the document (by its
        // `fullUrl`) is served naming that resource as the server serves it, and resolves.
        let urls: BTreeSet<&str> = all.iter().filter_map(|e| e["fullUrl"].as_str()).collect();
        let mut rewritten = 0;
        for (e, loc) in all.iter().zip(&locs) {
            let (s, _, got) = env.get(&format!("/fhir/r4/{}", resource_path(loc))).await;
            assert_eq!(s, StatusCode::OK, "{name} {loc}");
            rewritten += same_resource_served(&env, &e["resource"], &got).await;
            let mut refs = Vec::new();
            references(&got, "", &mut refs);
            for (at, r) in refs {
                assert!(!urls.contains(r.as_str()), "{name} {loc} {at}: {r} dangles");
            }
        }
        assert!(
            rewritten > 0,
            "{name}: the document's references were rewritten"
        );
    }
}

#[tokio::test]
async fn a_prescription_naming_its_drug_by_reference_shows_the_drugs_name() {
    let env = Env::new();
    let pid = env.rid();
    let med = json!({"resourceType": "Medication", "code": {"text": "Metformin 500 MG"}});
    let rx = json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "medicationReference": {"reference": "urn:uuid:6a1f0000-0000-4000-8000-000000000001"},
        "subject": {"reference": format!("Patient/{pid}")}, "authoredOn": "2024-01-10"});
    let mut tx = transaction(&[med, rx.clone()]);
    tx["entry"][0]["fullUrl"] = json!("urn:uuid:6a1f0000-0000-4000-8000-000000000001");
    let (s, _, resp) = env.post(&tx).await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    // The REST API's summary names the drug, not the reference.
    let (s, _, entries) = env
        .get(&format!(
            "/api/v1/records/{pid}/entries?category=medications"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{entries}");
    let summary = entries[0]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("Metformin 500 MG"), "{entries}");
    // The resource still reads back as it came, its reference naming the Medication as
    // served (and resolving).
    let loc = locations(&resp).remove(1);
    let (s, _, got) = env.get(&format!("/fhir/r4/{}", resource_path(&loc))).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(same_resource_served(&env, &rx, &got).await, 1);
}

#[tokio::test]
async fn types_cophr_does_not_map_are_kept_whole_and_served() {
    let env = Env::new();
    let pid = env.rid();
    let sent = vec![
        json!({"resourceType": "Encounter", "id": "enc1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/{pid}")}}),
        json!({"resourceType": "Medication", "id": "med1",
            "code": {"text": "Metformin 500 MG"}}),
        json!({"resourceType": "Practitioner", "id": "pr1",
            "name": [{"family": "Shah", "given": ["Anna"]}]}),
        json!({"resourceType": "Claim", "id": "cl1", "status": "active", "use": "claim",
            "patient": {"reference": format!("Patient/{pid}")}}),
    ];
    let (s, _, resp) = env.post(&transaction(&sent)).await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let locs = locations(&resp);
    assert_eq!(locs.len(), 4);
    for (r, loc) in sent.iter().zip(&locs) {
        let (s, _, got) = env.get(&format!("/fhir/r4/{}", resource_path(loc))).await;
        assert_eq!(s, StatusCode::OK, "{loc}");
        same_resource(r, &got);
    }
    // Searched by type.
    for (ty, id) in [
        ("Encounter", "enc1"),
        ("Medication", "med1"),
        ("Claim", "cl1"),
    ] {
        let (s, _, b) = env.get(&format!("/fhir/r4/{ty}")).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b["total"], 1, "{ty}: {b}");
        // Served under its entry id (`e-…`), with the content that was sent.
        same_resource(
            sent.iter().find(|r| r["id"] == id).unwrap(),
            &b["entry"][0]["resource"],
        );
    }
    // An imported Practitioner is served beside the ones derived from profiles.
    let (_, _, b) = env.get("/fhir/r4/Practitioner").await;
    assert!(
        b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource"]["name"][0]["family"] == "Shah"),
        "{b}"
    );
}

#[tokio::test]
async fn a_transaction_with_two_entries_of_one_full_url_is_refused() {
    let env = Env::new();
    let hr = r4("Observation-heart-rate.json");
    let mut tx = transaction(&[hr.clone(), with_date(hr, "2021-03-04T10:00:00Z")]);
    tx["entry"][1]["fullUrl"] = tx["entry"][0]["fullUrl"].clone();
    let before = env.footprint();
    let (s, _, body) = env.post(&tx).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    is_outcome(&body, "invalid");
    let msg = body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        msg.contains("Bundle.entry[0]") && msg.contains("Bundle.entry[1]"),
        "{msg}"
    );
    assert_eq!(env.footprint(), before);
    // The same two with their own fullUrls are two versions of one resource (type and
    // id): refused, nothing stored.
    tx["entry"][1]["fullUrl"] = json!("urn:uuid:00000000-0000-0000-0000-00000000beef");
    let (s, _, body) = env.post(&tx).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("same resource"), "{body}");
    assert_eq!(env.footprint(), before);
    // Two resources with their own fullUrls are written.
    tx["entry"][1]["resource"]["id"] = json!("heart-rate-2");
    let (s, _, body) = env.post(&tx).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_transaction_holds_one_patient_the_records() {
    const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
    let env = Env::new();
    let patient = |id: &str, nhs: &str| {
        json!({"resourceType": "Patient", "id": id, "identifier": [{"system": NHS, "value": nhs}],
            "name": [{"family": "Jones"}]})
    };
    let obs = |pid: &str| {
        let mut o = r4("Observation-heart-rate.json");
        o["subject"] = json!({"reference": format!("Patient/{pid}")});
        o["id"] = json!(format!("heart-rate-{pid}"));
        o
    };
    // Two patients in one transaction into a record with none yet: refused.
    let before = env.footprint();
    let two = transaction(&[patient("a", "9434765919"), patient("b", "9434765870")]);
    let (s, _, body) = env.post(&two).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    is_outcome(&body, "business-rule");
    assert!(body.to_string().contains("2 patients"), "{body}");
    assert_eq!(env.footprint(), before);
    // One: it is the record's.
    let (s, _, body) = env
        .post(&transaction(&[patient("a", "9434765919"), obs("a")]))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Another patient's data: refused, naming the entry; nothing stored.
    let before = env.footprint();
    let (s, _, body) = env.post(&transaction(&[obs("a"), obs("zz")])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.to_string().contains("Patient/zz") && body.to_string().contains("Bundle.entry[1]"),
        "{body}"
    );
    let (s, _, body) = env
        .post(&transaction(&[
            patient("other", "9434765870"),
            obs("other"),
        ]))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(env.footprint(), before);
    // The same person from another system (another id, the same NHS number) is the record's.
    let (s, _, body) = env
        .post(&transaction(&[
            patient("hosp-1", "9434765919"),
            obs("hosp-1"),
        ]))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // `patient=` searches return only the record's own data.
    let (_, _, b) = env
        .get(&format!("/fhir/r4/Observation?patient={}", env.rid()))
        .await;
    assert_eq!(b["total"], 2, "{b}");
}

#[tokio::test]
async fn a_batch_refuses_each_entry_about_another_patient_and_keeps_the_records_own() {
    const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
    let env = Env::new();
    let patient = |id: &str, nhs: &str| {
        json!({"resourceType": "Patient", "id": id, "identifier": [{"system": NHS, "value": nhs}],
            "name": [{"family": "Jones"}]})
    };
    let obs = |pid: &str| {
        let mut o = r4("Observation-heart-rate.json");
        o["subject"] = json!({"reference": format!("Patient/{pid}")});
        o["id"] = json!(format!("heart-rate-{pid}"));
        o
    };
    // Two patients in one batch into a record with none yet: each Patient is refused (which
    // is the record's cannot be told), nothing of them stored.
    let before = env.footprint();
    let (s, _, resp) = env
        .post(&bundle_of(
            "batch",
            &[patient("a", "9434765919"), patient("b", "9434765870")],
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let e = resp["entry"].as_array().unwrap();
    for entry in e {
        assert_eq!(
            entry["response"]["status"], "422 Unprocessable Entity",
            "{resp}"
        );
        assert!(entry.to_string().contains("2 patients"), "{entry}");
    }
    assert_eq!(env.footprint(), before);
    // The record's patient, then a batch mixing their data with another patient's: the
    // other patient's entries are refused, naming the patient; the record's are kept.
    let (s, _, resp) = env
        .post(&bundle_of("batch", &[patient("a", "9434765919"), obs("a")]))
        .await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    assert!(resp["entry"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["response"]["status"] == "201 Created"));
    let before = env.footprint();
    let (s, _, resp) = env
        .post(&bundle_of(
            "batch",
            &[
                {
                    let mut o = obs("a");
                    o["id"] = json!("heart-rate-a-2");
                    o
                },
                obs("zz"),
                patient("other", "9434765870"),
                obs("other"),
            ],
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let e = resp["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "201 Created", "{resp}");
    for (i, who) in [(1, "Patient/zz"), (2, "other"), (3, "other")] {
        assert_eq!(
            e[i]["response"]["status"], "422 Unprocessable Entity",
            "{resp}"
        );
        let text = e[i].to_string();
        assert!(
            text.contains("another patient") && text.contains(who),
            "{text}"
        );
    }
    // One entry (and its audit event) stored: the record's own.
    assert_eq!(env.footprint().0 - before.0, 1);
    let (_, _, b) = env
        .get(&format!("/fhir/r4/Observation?patient={}", env.rid()))
        .await;
    assert_eq!(b["total"], 2, "{b}");
}

#[tokio::test]
async fn a_resource_posted_again_stores_nothing_and_a_changed_one_amends_its_entry() {
    let env = Env::new();
    let hr = r4("Observation-heart-rate.json");
    let (s, _, resp) = env.post(&transaction(std::slice::from_ref(&hr))).await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let first = locations(&resp).remove(0);
    assert!(first.ends_with("/_history/1"), "{first}");
    let path = resource_path(&first);

    // The same resource again, with only its meta changed, in a transaction, a batch and
    // through `POST [type]`: held already, nothing stored, answered with the version held.
    let mut meta_only = hr.clone();
    meta_only["meta"] = json!({"lastUpdated": "2026-12-01T10:00:00Z", "versionId": "7"});
    let before = env.footprint();
    for bundle in [
        transaction(&[meta_only.clone()]),
        bundle_of("batch", &[meta_only.clone()]),
    ] {
        let (s, _, resp) = env.post(&bundle).await;
        assert_eq!(s, StatusCode::OK, "{resp}");
        let r = &resp["entry"][0]["response"];
        assert_eq!(r["status"], "200 OK", "{resp}");
        assert_eq!(r["location"], first.as_str(), "{resp}");
        assert!(r["outcome"].to_string().contains("held already"), "{resp}");
    }
    let (s, _, body) = post_to(
        &env,
        "/fhir/r4/Observation",
        "application/fhir+json",
        &[],
        serde_json::to_vec(&meta_only).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(env.footprint().0, before.0, "no entry written");

    // Changed (a corrected value): a new version of the same item, the first kept in its
    // history; answered 200 with version 2.
    let mut corrected = hr.clone();
    corrected["valueQuantity"]["value"] = json!(48);
    let (s, _, resp) = env.post(&transaction(&[corrected.clone()])).await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let r = &resp["entry"][0]["response"];
    assert_eq!(r["status"], "200 OK", "{resp}");
    assert_eq!(r["location"], format!("{path}/_history/2"), "{resp}");
    let (_, _, got) = env.get(&format!("/fhir/r4/{path}")).await;
    assert_eq!(got["valueQuantity"]["value"], 48, "{got}");
    let (_, _, history) = env.get(&format!("/fhir/r4/{path}/_history")).await;
    assert_eq!(history["total"], 2, "{history}");
    let (_, _, all) = env.get("/fhir/r4/Observation").await;
    assert_eq!(all["total"], 1, "one item: {all}");

    // In a batch, a resource changed twice: each change a version, in order.
    let mut again = corrected.clone();
    again["valueQuantity"]["value"] = json!(50);
    let mut last = corrected.clone();
    last["valueQuantity"]["value"] = json!(52);
    let (s, _, resp) = env.post(&bundle_of("batch", &[again, last])).await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let l = locations(&resp);
    let (_, _, history) = env.get(&format!("/fhir/r4/{path}/_history")).await;
    assert_eq!(
        l,
        vec![format!("{path}/_history/3"), format!("{path}/_history/4")],
        "{resp} {history}"
    );
    let (_, _, got) = env.get(&format!("/fhir/r4/{path}")).await;
    assert_eq!(got["valueQuantity"]["value"], 52, "{got}");

    // A changed resource that maps to another category than its entry: refused (422),
    // nothing stored.
    let before = env.footprint();
    let mut other = r4("Observation-heart-rate.json");
    other["category"] = json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]);
    other["code"] = json!({"coding": [{"system": "http://loinc.org", "code": "718-7", "display": "Hemoglobin"}]});
    other["valueQuantity"] = json!({"value": 7.2, "unit": "g/dL", "system": "http://unitsofmeasure.org", "code": "g/dL"});
    let (s, _, body) = env.post(&transaction(&[other])).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body.to_string().contains("maps to"), "{body}");
    assert_eq!(env.footprint(), before);
}

#[tokio::test]
async fn a_batch_reports_each_entry_and_keeps_the_good_ones() {
    let env = Env::new();
    let good1 = r4("Observation-heart-rate.json");
    let mut bad = r4("Observation-body-temperature.json");
    bad["status"] = json!(42);
    let good2 = r4("Observation-bmi.json");
    let before = env.footprint();
    let (s, _, resp) = env
        .post(&bundle_of("batch", &[good1.clone(), bad, good2.clone()]))
        .await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    assert_eq!(resp["type"], "batch-response");
    let e = resp["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "201 Created");
    assert_eq!(e[1]["response"]["status"], "400 Bad Request");
    assert_eq!(
        e[1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(e[2]["response"]["status"], "201 Created");
    let (_, _, got) = env
        .get(&format!(
            "/fhir/r4/{}",
            e[2]["response"]["location"]
                .as_str()
                .unwrap()
                .split("/_history")
                .next()
                .unwrap()
        ))
        .await;
    same_resource(&good2, &got);
    // Two entries and a profile-less patient: two creates, each with its audit event.
    let after = env.footprint();
    assert_eq!(after.0 - before.0, 2);
    let (_, _, all) = env.get("/fhir/r4/Observation").await;
    assert_eq!(all["total"], 2);
}

#[tokio::test]
async fn bad_input_gets_an_operation_outcome_and_stores_nothing() {
    let env = Env::new();
    let (_, paths) = three_observations(&env).await;
    let obs = r4("Observation-heart-rate.json");
    let raw = |method: &str, uri: &str, token: Option<&str>, ct: Option<&str>, body: Vec<u8>| {
        let (m, u, t, c) = (
            method.to_owned(),
            uri.to_owned(),
            token.map(str::to_owned),
            ct.map(str::to_owned),
        );
        let app = env.app.clone();
        async move { send(&app, &m, &u, t.as_deref(), c.as_deref(), body).await }
    };
    let fj = Some("application/fhir+json");
    let tx = |r: Json| serde_json::to_vec(&transaction(&[r])).unwrap();
    let mut unknown_type = obs.clone();
    unknown_type["resourceType"] = json!("Spaceship");
    let mut missing_status = obs.clone();
    missing_status.as_object_mut().unwrap().remove("status");
    let mut bad_date = obs.clone();
    bad_date["effectiveDateTime"] = json!("yesterday");
    let delete = serde_json::to_vec(&json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": paths[0]}}]}))
    .unwrap();
    let two_records = {
        let mut a = obs.clone();
        a["subject"] = json!({"reference": format!("Patient/{}", ActorId([9; 32]))});
        tx(a)
    };
    // A new version in another category: a business rule, not a FHIR one.
    let other_category =
        serde_json::to_vec(&json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [{"resource": example("hl7.fhir.uv.ips", "example/Observation-hemoglobin.json"),
                   "request": {"method": "PUT", "url": paths[0]}}]}))
        .unwrap();
    let before = env.footprint();
    let cases: Vec<(&str, Answer, StatusCode, &str)> = vec![
        (
            "a new version in another category",
            raw("POST", "/fhir/r4", Some(TOKEN), fj, other_category).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "business-rule",
        ),
        (
            "a format other than JSON",
            raw(
                "GET",
                &format!("/fhir/r4/{}?_format=xml", paths[0]),
                Some(TOKEN),
                None,
                Vec::new(),
            )
            .await,
            StatusCode::NOT_ACCEPTABLE,
            "not-supported",
        ),
        (
            "invalid JSON",
            raw(
                "POST",
                "/fhir/r4",
                Some(TOKEN),
                fj,
                b"{\"resourceType\": ".to_vec(),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "structure",
        ),
        (
            "not a Bundle",
            raw(
                "POST",
                "/fhir/r4",
                Some(TOKEN),
                fj,
                serde_json::to_vec(&obs).unwrap(),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "value",
        ),
        (
            "a document Bundle",
            raw(
                "POST",
                "/fhir/r4",
                Some(TOKEN),
                fj,
                serde_json::to_vec(
                    &json!({"resourceType": "Bundle", "type": "document", "entry": []}),
                )
                .unwrap(),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "not-supported",
        ),
        (
            "invalid resource: unknown type",
            raw("POST", "/fhir/r4", Some(TOKEN), fj, tx(unknown_type)).await,
            StatusCode::BAD_REQUEST,
            "value",
        ),
        (
            "invalid resource: missing status",
            raw("POST", "/fhir/r4", Some(TOKEN), fj, tx(missing_status)).await,
            StatusCode::BAD_REQUEST,
            "required",
        ),
        (
            "invalid resource: bad date",
            raw("POST", "/fhir/r4", Some(TOKEN), fj, tx(bad_date)).await,
            StatusCode::BAD_REQUEST,
            "value",
        ),
        (
            "a type never kept, in a transaction",
            raw(
                "POST",
                "/fhir/r4",
                Some(TOKEN),
                fj,
                tx(json!({"resourceType": "OperationOutcome", "issue": []})),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "not-supported",
        ),
        (
            "a record not held here",
            raw("POST", "/fhir/r4", Some(TOKEN), fj, two_records).await,
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "DELETE in a transaction",
            raw("POST", "/fhir/r4", Some(TOKEN), fj, delete).await,
            StatusCode::BAD_REQUEST,
            "not-supported",
        ),
        (
            "not JSON",
            raw(
                "POST",
                "/fhir/r4",
                Some(TOKEN),
                Some("text/plain"),
                tx(obs.clone()),
            )
            .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-supported",
        ),
        (
            "oversized",
            raw(
                "POST",
                "/fhir/r4",
                Some(TOKEN),
                fj,
                vec![b' '; 9 * 1024 * 1024],
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-long",
        ),
        (
            "no token",
            raw(
                "GET",
                &format!("/fhir/r4/{}", paths[0]),
                None,
                None,
                Vec::new(),
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "login",
        ),
        (
            "wrong token",
            raw("POST", "/fhir/r4", Some("nope"), fj, tx(obs.clone())).await,
            StatusCode::UNAUTHORIZED,
            "login",
        ),
        (
            "unknown resource type",
            raw("GET", "/fhir/r4/Spaceship/1", Some(TOKEN), None, Vec::new()).await,
            StatusCode::NOT_FOUND,
            "not-supported",
        ),
        (
            "unsupported resource type",
            raw(
                "GET",
                "/fhir/r4/Bundle?name=x",
                Some(TOKEN),
                None,
                Vec::new(),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not-supported",
        ),
        (
            "unknown id",
            raw(
                "GET",
                &format!("/fhir/r4/Observation/{}", cophr_protocol::EntryId([3; 32])),
                Some(TOKEN),
                None,
                Vec::new(),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "malformed id",
            raw(
                "GET",
                "/fhir/r4/Observation/not-an-id",
                Some(TOKEN),
                None,
                Vec::new(),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "wrong type for an id",
            raw(
                "GET",
                &format!(
                    "/fhir/r4/Condition/{}",
                    paths[0].trim_start_matches("Observation/")
                ),
                Some(TOKEN),
                None,
                Vec::new(),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "create by POST to a type not mapped to a category",
            raw(
                "POST",
                "/fhir/r4/Provenance",
                Some(TOKEN),
                fj,
                serde_json::to_vec(&obs).unwrap(),
            )
            .await,
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
        ),
        (
            "update by PUT",
            raw(
                "PUT",
                &format!("/fhir/r4/{}", paths[0]),
                Some(TOKEN),
                fj,
                serde_json::to_vec(&obs).unwrap(),
            )
            .await,
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
        ),
        (
            "DELETE",
            raw(
                "DELETE",
                &format!("/fhir/r4/{}", paths[0]),
                Some(TOKEN),
                None,
                Vec::new(),
            )
            .await,
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
        ),
        (
            "unsupported search parameter",
            raw(
                "GET",
                "/fhir/r4/Observation?value-quantity=5",
                Some(TOKEN),
                None,
                Vec::new(),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            "malformed date",
            raw(
                "GET",
                "/fhir/r4/Observation?date=ge2021-13",
                Some(TOKEN),
                None,
                Vec::new(),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
    ];
    // The cases ran above; they must have stored nothing, not even an audit event.
    for (what, (status, headers, body), want, code) in cases {
        assert_eq!(status, want, "{what}: {body}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/fhir+json"),
            "{what}"
        );
        is_outcome(&body, code);
        if status == StatusCode::UNAUTHORIZED {
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
    }
    assert_eq!(env.footprint(), before);
    let (_, _, all) = env.get("/fhir/r4/Observation").await;
    assert_eq!(all["total"], 3);
}

#[tokio::test]
async fn writes_and_reads_follow_the_records_grants() {
    let env = Env::new();
    three_observations(&env).await;
    // A clinician acting on the same store with a view grant on vital signs only.
    let kay = key(7, "kay");
    env.store
        .write(
            &env.rid(),
            &env.patient,
            Payload::Grant(Grant {
                grantee: kay.actor(),
                level: Level::View,
                scope: Scope::Only(BTreeSet::from([Category::VitalSigns])),
                not_before: None,
                until: None,
                audit: false,
                delegate: false,
                label: None,
                requires: None,
            }),
            env.tick(),
            None,
        )
        .unwrap();
    let app = app_for(
        &env.store,
        &kay,
        profile("Dr Kay", "gp", Some("Leeds GP")),
        &env.clock,
    );
    let (s, _, b) = send(
        &app,
        "GET",
        "/fhir/r4/Observation",
        Some(TOKEN),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Heart rate and temperature are vital signs; the lab result is not visible.
    assert_eq!(b["total"], 2, "{b}");
    let (s, _, body) = send(
        &app,
        "GET",
        "/fhir/r4/AuditEvent",
        Some(TOKEN),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["total"], 0, "no audit right: {body}");
    // Writing needs a write grant: 403, nothing stored.
    let mut obs = r4("Observation-heart-rate.json");
    obs["subject"] = json!({"reference": format!("Patient/{}", env.rid())});
    let before = env.footprint();
    let (s, _, body) = send(
        &app,
        "POST",
        "/fhir/r4",
        Some(TOKEN),
        Some("application/json"),
        serde_json::to_vec(&transaction(&[obs.clone()])).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    is_outcome(&body, "forbidden");
    assert_eq!(env.footprint(), before);

    // With a write grant the same transaction is stored, authored by the clinician: her
    // profile is published first, and the Provenance names her role and organisation.
    env.store
        .write(
            &env.rid(),
            &env.patient,
            Payload::Grant(Grant {
                grantee: kay.actor(),
                level: Level::Write,
                scope: Scope::Only(BTreeSet::from([Category::VitalSigns])),
                not_before: None,
                until: None,
                audit: false,
                delegate: false,
                label: None,
                requires: None,
            }),
            env.tick(),
            None,
        )
        .unwrap();
    env.tick();
    let (s, _, resp) = send(
        &app,
        "POST",
        "/fhir/r4",
        Some(TOKEN),
        Some("application/json"),
        serde_json::to_vec(&transaction(&[obs.clone()])).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{resp}");
    let loc = locations(&resp).remove(0);
    let (_, _, got) = send(
        &app,
        "GET",
        &format!("/fhir/r4/{}", resource_path(&loc)),
        Some(TOKEN),
        None,
        Vec::new(),
    )
    .await;
    same_resource(&obs, &got);
    let (_, _, provs) = env.get("/fhir/r4/Provenance").await;
    let prov = provs["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|p| p["target"][0]["reference"] == loc)
        .unwrap_or_else(|| panic!("no Provenance for {loc}"));
    let agent = &prov["agent"][0];
    assert_eq!(agent["who"]["identifier"]["value"], kay.actor().to_string());
    assert_eq!(agent["who"]["display"], "Dr Kay");
    assert_eq!(agent["role"][0]["text"], "gp");
    assert_eq!(agent["onBehalfOf"]["display"], "Leeds GP");
}

#[tokio::test]
async fn practitioners_are_derived_from_profiles_verified_or_self_asserted() {
    use cophr_protocol::trust::attestation::{
        Attestation, Attributes, Method, OrganisationRef, Registration, ATTESTATION_VERSION,
    };
    use cophr_protocol::trust::{AssuranceLevel, TrustList, TrustedIssuer};
    let env = Env::new();
    let rid = env.rid();
    let ais = key(7, "Leeds AIS");
    let pharmacist = key(7, "Ana");
    let gp = key(7, "Rena");
    let mary = key(7, "Mary");
    let attested = Attestation {
        v: ATTESTATION_VERSION,
        issuer: ais.actor(),
        subject: pharmacist.actor(),
        attributes: Attributes::Professional {
            name: "Ana Silva".into(),
            profession: "pharmacist".into(),
            registration: Some(Registration {
                body: "GPhC".into(),
                number: "2071234".into(),
            }),
            organisation: Some(OrganisationRef {
                name: "Oakwood Pharmacy".into(),
                ods: Some("FA123".into()),
            }),
        },
        level: AssuranceLevel::P9,
        method: Method::InPerson,
        not_before: T0 - 1000,
        not_after: T0 + 365 * 24 * 3600 * 1000,
        serial: vec![1; 16],
    }
    .sign(&ais)
    .unwrap();
    for (who, p) in [
        (
            &pharmacist,
            Profile {
                attestations: vec![attested],
                ..profile("Ana Silva", "pharmacist", Some("Oakwood Pharmacy"))
            },
        ),
        (&gp, profile("Dr Rena Patel", "gp", Some("Leeds GP"))),
        (&mary, profile("Mary", "carer", None)),
    ] {
        env.store
            .write(
                &rid,
                &env.patient,
                Payload::Grant(Grant {
                    grantee: who.actor(),
                    level: Level::Write,
                    scope: Scope::All,
                    not_before: None,
                    until: None,
                    audit: false,
                    delegate: false,
                    label: None,
                    requires: None,
                }),
                env.tick(),
                None,
            )
            .unwrap();
        env.store
            .write(&rid, who, Payload::Profile(p), env.tick(), None)
            .unwrap();
    }
    env.store
        .write(
            &rid,
            &pharmacist,
            Payload::Create {
                category: Category::Medications,
                body: cophr_protocol::testkit::text_body(&[("medication", "Metformin")]),
            },
            env.tick(),
            None,
        )
        .unwrap();
    let mut trust = TrustList::new();
    trust
        .trust(TrustedIssuer {
            id: ais.actor(),
            name: "Leeds AIS".into(),
            max_level: AssuranceLevel::P9,
        })
        .unwrap();
    let c = env.clock.clone();
    let app = router(
        AppState::new(
            env.store.clone(),
            env.patient.clone(),
            profile("George", "patient", None),
            None,
            TOKEN.into(),
        )
        .with_clock(move || c.load(Ordering::SeqCst))
        .with_trust(trust),
    );
    let get = |uri: String| {
        let app = app.clone();
        async move { send(&app, "GET", &uri, Some(TOKEN), None, Vec::new()).await }
    };

    let (s, _, b) = get(format!("/fhir/r4/Practitioner?patient={rid}")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let found: Vec<Json> = b["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect();
    // The pharmacist and the GP; not George (the Patient) nor Mary (a carer).
    let ids: BTreeSet<&str> = found.iter().map(|p| p["id"].as_str().unwrap()).collect();
    let ana = pharmacist.actor().to_string();
    let rena = gp.actor().to_string();
    assert_eq!(
        ids,
        [ana.as_str(), rena.as_str()].into_iter().collect(),
        "{b}"
    );
    let (s, _, p) = get(format!("/fhir/r4/Practitioner/{ana}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p["name"][0]["text"], "Ana Silva");
    let assurance = &p["extension"][0];
    assert_eq!(assurance["url"], "urn:cophr:fhir:identity-assurance");
    assert_eq!(assurance["extension"][0]["valueCode"], "verified");
    assert_eq!(assurance["extension"][2]["valueCode"], "P9");
    // What the AIS attested, as identifier and qualification.
    assert!(p["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .any(
            |i| i["system"] == "https://fhir.hl7.org.uk/Id/gphc-number" && i["value"] == "2071234"
        ));
    assert_eq!(p["qualification"][0]["code"]["text"], "pharmacist");
    assert_eq!(p["qualification"][0]["issuer"]["display"], "GPhC");
    assert_eq!(
        p["extension"][1]["valueReference"]["identifier"]["value"],
        "FA123"
    );
    // The GP says who she is; nothing verifies it, so no registration is shown.
    let (_, _, r) = get(format!("/fhir/r4/Practitioner/{rena}")).await;
    assert_eq!(
        r["extension"][0]["extension"][0]["valueCode"],
        "self-asserted"
    );
    assert_eq!(r["identifier"].as_array().unwrap().len(), 1);
    assert_eq!(r["qualification"][0]["code"]["text"], "gp");
    // George and Mary are not practitioners.
    let (s, _, _) = get(format!("/fhir/r4/Practitioner/{rid}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, _) = get(format!("/fhir/r4/Practitioner/{}", mary.actor())).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The pharmacist's entry's Provenance points at her Practitioner.
    let (_, _, provs) = get(format!("/fhir/r4/Provenance?patient={rid}")).await;
    assert!(provs["entry"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["resource"]["agent"][0]["who"]["reference"]
            == format!("Practitioner/{ana}").as_str()));
    // $everything includes them.
    let (_, _, all) = get(format!("/fhir/r4/Patient/{rid}/$everything")).await;
    assert!(all["entry"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["resource"]["resourceType"] == "Practitioner"
            && e["resource"]["id"] == ana.as_str()));
    // The CapabilityStatement lists the type.
    let (_, _, cap) = get("/fhir/r4/metadata".into()).await;
    assert!(cap["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["type"] == "Practitioner"));
}

/// A heart rate Observation of the record's patient.
fn heart_rate(env: &Env, value: f64) -> Json {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": format!("Patient/{}", env.rid())},
        "effectiveDateTime": "2026-11-22T10:15:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

async fn post_to(
    env: &Env,
    uri: &str,
    ct: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    env.tick();
    let mut b = Request::builder()
        .method("POST")
        .uri(uri)
        .header("host", "localhost")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", ct);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = env
        .app
        .clone()
        .oneshot(b.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    answer(resp).await
}

#[tokio::test]
async fn writes_are_validated_naming_the_element_and_implausible_values_are_flagged() {
    let env = Env::new();
    let before = env.footprint();
    let mut finalised = heart_rate(&env, 72.0);
    finalised["status"] = json!("finalised");
    let mut two_values = heart_rate(&env, 72.0);
    two_values["valueString"] = json!("72");
    let mut unknown = heart_rate(&env, 72.0);
    unknown["colour"] = json!("red");
    let mut weight_mmol = heart_rate(&env, 72.5);
    weight_mmol["code"]["coding"][0] = json!({"system": "http://loinc.org", "code": "29463-7"});
    weight_mmol["valueQuantity"] = json!({"value": 72.5, "unit": "mmol/L",
        "system": "http://unitsofmeasure.org", "code": "mmol/L"});
    let mut negative_weight = weight_mmol.clone();
    negative_weight["valueQuantity"] = json!({"value": -72.5, "unit": "kg",
        "system": "http://unitsofmeasure.org", "code": "kg"});
    for (what, r, code, path) in [
        (
            "heart rate 999",
            heart_rate(&env, 999.0),
            "value",
            "Observation.valueQuantity.value",
        ),
        (
            "status finalised",
            finalised,
            "code-invalid",
            "Observation.status",
        ),
        (
            "two values",
            two_values,
            "structure",
            "Observation.value[x]",
        ),
        (
            "unknown element",
            unknown,
            "structure",
            "Observation.colour",
        ),
        (
            "weight in mmol/L",
            weight_mmol,
            "value",
            "Observation.valueQuantity.code",
        ),
        (
            "negative weight",
            negative_weight,
            "value",
            "Observation.valueQuantity.value",
        ),
    ] {
        // In a transaction and on its own (`POST [type]`).
        let (s, _, body) = env.post(&transaction(std::slice::from_ref(&r))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {body}");
        is_outcome(&body, code);
        assert_eq!(body["issue"][0]["expression"][0], path, "{what}: {body}");
        let (s, _, body) = post_to(
            &env,
            "/fhir/r4/Observation",
            "application/fhir+json",
            &[],
            serde_json::to_vec(&r).unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(body["issue"][0]["expression"][0], path, "{what}: {body}");
    }
    assert_eq!(env.footprint(), before, "a refused write stored something");

    // Implausible: stored, with a warning in the response's OperationOutcome.
    let (s, _, body) = env.post(&transaction(&[heart_rate(&env, 280.0)])).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let outcome = &body["entry"][0]["response"]["outcome"];
    assert_eq!(outcome["issue"][0]["severity"], "warning", "{body}");
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "Observation.valueQuantity.value"
    );
    let (s, _, body) = post_to(
        &env,
        "/fhir/r4/Observation",
        "application/fhir+json",
        &[("prefer", "return=OperationOutcome")],
        serde_json::to_vec(&heart_rate(&env, 281.0)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["resourceType"], "OperationOutcome");
    assert_eq!(body["issue"][0]["severity"], "warning", "{body}");
    // A usual value: no outcome in the transaction response.
    let (_, _, body) = env.post(&transaction(&[heart_rate(&env, 72.0)])).await;
    assert!(
        body["entry"][0]["response"].get("outcome").is_none(),
        "{body}"
    );
}

#[tokio::test]
async fn post_type_creates_and_subject_searches() {
    let env = Env::new();
    let (s, headers, body) = post_to(
        &env,
        "/fhir/r4/Observation",
        "application/fhir+json",
        &[],
        serde_json::to_vec(&heart_rate(&env, 72.0)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(body["valueQuantity"]["value"], 72.0);
    let location = headers["location"].to_str().unwrap().to_owned();
    let path = location.split("/fhir/r4/").nth(1).unwrap();
    let (s, _, read) = env.get(&format!("/fhir/r4/{}", resource_path(path))).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(read["id"], body["id"]);
    // A Condition too (every mapped type).
    let cond = json!({"resourceType": "Condition", "code": {"text": "Asthma"},
        "subject": {"reference": format!("Patient/{}", env.rid())}});
    let (s, _, body) = post_to(
        &env,
        "/fhir/r4/Condition",
        "application/fhir+json",
        &[],
        serde_json::to_vec(&cond).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    // A type of another kind than the URL's.
    let (s, _, body) = post_to(
        &env,
        "/fhir/r4/Condition",
        "application/fhir+json",
        &[],
        serde_json::to_vec(&heart_rate(&env, 72.0)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // `subject` is `patient`.
    let rid = env.rid();
    let (_, _, by_patient) = env
        .get(&format!("/fhir/r4/Observation?patient={rid}"))
        .await;
    let (s, _, by_subject) = env
        .get(&format!("/fhir/r4/Observation?subject=Patient/{rid}"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ids(&by_patient), ids(&by_subject));
    assert_eq!(ids(&by_subject).len(), 1);
    let (s, _, body) = env
        .get(&format!(
            "/fhir/r4/Observation?subject=Patient/{}",
            ActorId([9; 32])
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body["total"], 0, "{body}");
    let (s, _, body) = env.get("/fhir/r4/Observation?subject=Group/1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    is_outcome(&body, "invalid");
    let (s, _, _) = env
        .get(&format!("/fhir/r4/AllergyIntolerance?subject={rid}"))
        .await;
    assert_eq!(
        s,
        StatusCode::BAD_REQUEST,
        "AllergyIntolerance has no subject"
    );
}

#[tokio::test]
async fn bodies_are_decoded_in_their_declared_charset() {
    let env = Env::new();
    let cond = |text: &str| {
        format!(
            r#"{{"resourceType": "Condition", "code": {{"text": "{text}"}}, "subject": {{"reference": "Patient/{}"}}}}"#,
            env.rid()
        )
    };
    // "Zoë's rash" in ISO-8859-1: ë is the one byte 0xEB.
    let latin1: Vec<u8> = cond("Zo\u{eb}'s rash").chars().map(|c| c as u8).collect();
    assert!(std::str::from_utf8(&latin1).is_err());
    for (n, charset) in ["iso-8859-1", "latin1", "ISO-8859-1"]
        .into_iter()
        .enumerate()
    {
        let (s, _, body) = post_to(
            &env,
            "/fhir/r4/Condition",
            &format!("application/fhir+json; charset={charset}"),
            &[],
            latin1.clone(),
        )
        .await;
        // The same resource each time: created once, then held already (nothing stored).
        let want = if n == 0 {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        assert_eq!(s, want, "{charset}: {body}");
        assert_eq!(body["code"]["text"], "Zo\u{eb}'s rash", "{charset}");
    }
    // In a transaction too.
    let tx = format!(
        r#"{{"resourceType": "Bundle", "type": "transaction", "entry": [{{"resource": {}, "request": {{"method": "POST", "url": "Condition"}}}}]}}"#,
        cond("Zo\u{eb}")
    );
    let bytes: Vec<u8> = tx.chars().map(|c| c as u8).collect();
    let (s, _, body) = post_to(
        &env,
        "/fhir/r4",
        "application/fhir+json;charset=latin1",
        &[],
        bytes.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // Undeclared: UTF-8, which these bytes are not.
    let (s, _, body) = post_to(&env, "/fhir/r4", "application/fhir+json", &[], bytes).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // A charset not supported: 415, not a guess.
    let (s, _, body) = post_to(
        &env,
        "/fhir/r4/Condition",
        "application/fhir+json; charset=shift_jis",
        &[],
        cond("x").into_bytes(),
    )
    .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    is_outcome(&body, "not-supported");
}

#[tokio::test]
async fn the_capability_statement_matches_what_the_server_does() {
    let env = Env::new();
    let (_, _, cs) = env.get("/fhir/r4/metadata").await;
    let rid = env.rid();
    for r in cs["rest"][0]["resource"].as_array().unwrap() {
        let ty = r["type"].as_str().unwrap();
        let listed: BTreeSet<&str> = r["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap())
            .collect();
        // create: POST [type] is routed (a bad body is a 400/415, not a 405) exactly when
        // listed.
        let (s, _, body) = post_to(
            &env,
            &format!("/fhir/r4/{ty}"),
            "application/fhir+json",
            &[],
            b"{}".to_vec(),
        )
        .await;
        if listed.contains("create") {
            assert!(
                s == StatusCode::BAD_REQUEST || s == StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{ty} create: {s} {body}"
            );
        } else {
            assert_eq!(
                s,
                StatusCode::METHOD_NOT_ALLOWED,
                "{ty} create is not listed: {body}"
            );
        }
        if ty == "Binary" {
            continue;
        }
        for (interaction, uri, ok) in [
            ("search-type", format!("/fhir/r4/{ty}"), StatusCode::OK),
            (
                "history-type",
                format!("/fhir/r4/{ty}/_history"),
                StatusCode::OK,
            ),
            (
                "read",
                format!("/fhir/r4/{ty}/e-none"),
                StatusCode::NOT_FOUND,
            ),
            (
                "history-instance",
                format!("/fhir/r4/{ty}/e-none/_history"),
                StatusCode::NOT_FOUND,
            ),
            (
                "vread",
                format!("/fhir/r4/{ty}/e-none/_history/1"),
                StatusCode::NOT_FOUND,
            ),
        ] {
            assert!(
                listed.contains(interaction),
                "{ty}: {interaction} served but not listed"
            );
            let (s, _, body) = env.get(&uri).await;
            assert_eq!(s, ok, "{ty} {interaction}: {body}");
            if s == StatusCode::NOT_FOUND {
                is_outcome(&body, "not-found");
            }
        }
        // Every listed search parameter is accepted; `subject` exactly where listed.
        let params: BTreeSet<&str> = r["searchParam"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        for p in ["_id", "patient", "subject", "category", "code", "date"] {
            let v = match p {
                "date" => "ge2000".to_owned(),
                "patient" | "subject" => rid.to_string(),
                _ => "x".to_owned(),
            };
            let (s, _, body) = env.get(&format!("/fhir/r4/{ty}?{p}={v}")).await;
            let want = if params.contains(p) {
                StatusCode::OK
            } else {
                StatusCode::BAD_REQUEST
            };
            assert_eq!(s, want, "{ty}?{p}: {body}");
        }
        let ops: Vec<&str> = r["operation"]
            .as_array()
            .map(|a| a.iter().map(|o| o["name"].as_str().unwrap()).collect())
            .unwrap_or_default();
        if ty == "Patient" {
            assert_eq!(ops, ["everything"]);
            let (s, _, _) = env
                .get(&format!("/fhir/r4/Patient/{rid}/$everything"))
                .await;
            assert_eq!(s, StatusCode::OK);
        } else {
            assert!(ops.is_empty(), "{ty}: {ops:?}");
            let (s, _, _) = env.get(&format!("/fhir/r4/{ty}/x/$everything")).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{ty} has no $everything");
        }
    }
}

/// Follows a paged Bundle's `next` links from `first`, collecting every entry's fullUrl
/// and the number of pages.
async fn all_pages(env: &Env, first: &str) -> (Vec<String>, usize, Json) {
    let mut urls = Vec::new();
    let mut pages = 0;
    let mut uri = first.to_owned();
    let mut first_body = Json::Null;
    loop {
        let (s, _, b) = env.get(&uri).await;
        assert_eq!(s, StatusCode::OK, "{uri}: {b}");
        if pages == 0 {
            first_body = b.clone();
        }
        pages += 1;
        for e in b["entry"].as_array().unwrap() {
            urls.push(format!(
                "{} {}",
                e["fullUrl"].as_str().unwrap(),
                e["response"]["etag"].as_str().unwrap_or_default()
            ));
        }
        let next = b["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().to_owned());
        match next {
            Some(n) => uri = n.trim_start_matches("http://localhost").to_owned(),
            None => break,
        }
        assert!(pages < 100, "no end to the pages");
    }
    (urls, pages, first_body)
}

#[tokio::test]
async fn everything_and_history_are_paged_with_next_links() {
    let env = Env::new();
    let resources: Vec<Json> = (0..7)
        .map(|i| heart_rate(&env, 60.0 + f64::from(i)))
        .collect();
    let (s, _, _) = env.post(&transaction(&resources)).await;
    assert_eq!(s, StatusCode::OK);
    let rid = env.rid();
    for path in [
        format!("/fhir/r4/Patient/{rid}/$everything"),
        "/fhir/r4/Observation/_history".to_owned(),
    ] {
        let (_, _, whole) = env.get(&format!("{path}?_count=1000")).await;
        let total = whole["total"].as_u64().unwrap() as usize;
        assert_eq!(whole["entry"].as_array().unwrap().len(), total);
        assert!(total >= 7, "{whole}");
        let (urls, pages, first) = all_pages(&env, &format!("{path}?_count=3")).await;
        assert_eq!(first["entry"].as_array().unwrap().len(), 3, "{path}");
        assert!(pages >= total.div_ceil(3), "{path}");
        // Each read adds an AuditEvent (at the end of `$everything`): the rest is compared.
        let audit = |u: &String| u.contains("/AuditEvent/");
        let urls: Vec<String> = urls.into_iter().filter(|u| !audit(u)).collect();
        let all: Vec<String> = whole["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["fullUrl"].as_str().unwrap(),
                    e["response"]["etag"].as_str().unwrap_or_default()
                )
            })
            .filter(|u| !audit(u))
            .collect();
        // The pages hold every entry once, in the same order.
        assert_eq!(urls, all, "{path}");
        // A bad page size is refused.
        let (s, _, body) = env.get(&format!("{path}?_count=many")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        is_outcome(&body, "invalid");
    }
    // Instance history of an item with versions, one per page.
    let id = amend_first_observation(&env).await;
    let (urls, pages, first) = all_pages(
        &env,
        &format!("/fhir/r4/Observation/{id}/_history?_count=1"),
    )
    .await;
    assert_eq!(first["total"], 2);
    assert_eq!(pages, 2);
    assert!(
        urls[0].ends_with("W/\"2\"") && urls[1].ends_with("W/\"1\""),
        "{urls:?}"
    );
}

#[tokio::test]
async fn a_questionnaire_and_a_scored_response_in_and_out() {
    let env = Env::new();
    let rid = env.rid().to_string();
    let phq9: Json =
        serde_json::from_str(cophr_protocol::care::questionnaire::built_in("phq-9").unwrap())
            .unwrap();
    let (status, _, resp) = env.post(&transaction(std::slice::from_ref(&phq9))).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let q_path = resource_path(&locations(&resp)[0]);
    assert!(q_path.starts_with("Questionnaire/e-"), "{q_path}");
    let (s, _, got) = env.get(&format!("/fhir/r4/{q_path}")).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["title"], "Patient Health Questionnaire (PHQ-9)");
    assert_eq!(got["item"].as_array().unwrap().len(), 10);
    let response = |score: i64| {
        json!({"resourceType": "QuestionnaireResponse", "status": "completed",
            "questionnaire": q_path, "subject": {"reference": format!("Patient/{rid}")},
            "extension": [{"url": "https://cophr.invalid/field/score", "valueDecimal": score},
                          {"url": "https://cophr.invalid/field/band", "valueString": "minimal"}],
            "item": (1..=9).map(|i| json!({"linkId": format!("phq9-{i}"),
                "answer": [{"valueCoding": {"system": "http://loinc.org",
                    "code": if i == 1 { "LA6570-1" } else { "LA6568-5" }}}]})).collect::<Vec<_>>()})
    };
    // A stated score that is not the questionnaire's: refused, nothing stored.
    let (status, _, resp) = env.post(&transaction(&[response(9)])).await;
    assert!(status.is_client_error(), "{status} {resp}");
    assert!(
        resp.to_string()
            .contains("stated score (9) is not the questionnaire's (2)"),
        "{resp}"
    );
    let (status, _, resp) = env.post(&transaction(&[response(2)])).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let r_path = resource_path(&locations(&resp)[0]);
    let (s, _, got) = env.get(&format!("/fhir/r4/{r_path}")).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["questionnaire"], q_path.as_str(), "{got}");
    assert_eq!(
        got["item"][0]["answer"][0]["valueCoding"]["code"], "LA6570-1",
        "{got}"
    );
    let (s, _, b) = env
        .get(&format!("/fhir/r4/QuestionnaireResponse?patient={rid}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["total"], 1, "{b}");
}

#[tokio::test]
async fn appointments_and_referral_tasks_in_and_out() {
    let env = Env::new();
    let rid = env.rid().to_string();
    let clinic = key(8, "renal").actor().to_string();
    let actor =
        |id: &str| json!({"identifier": {"system": "https://cophr.invalid/actor", "value": id}});
    let appointment = json!({"resourceType": "Appointment", "status": "booked",
        "description": "Renal clinic review", "start": "2030-01-10T09:30:00Z",
        "end": "2030-01-10T10:00:00Z",
        "participant": [{"actor": {"reference": format!("Patient/{rid}")}, "status": "accepted"},
                        {"actor": {"display": "Dr Patel"}, "status": "accepted"}]});
    let task = json!({"resourceType": "Task", "status": "requested", "intent": "order",
        "code": {"coding": [{"system": "https://cophr.invalid/task-kind", "code": "referral"}],
                 "text": "referral"},
        "description": "eGFR falling: please review",
        "for": {"reference": format!("Patient/{rid}")},
        "requester": actor(&rid), "owner": actor(&clinic)});
    let (status, _, resp) = env
        .post(&transaction(&[appointment.clone(), task.clone()]))
        .await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let paths: Vec<String> = locations(&resp).iter().map(|l| resource_path(l)).collect();
    assert!(paths[0].starts_with("Appointment/") && paths[1].starts_with("Task/"));
    for (sent, p) in [&appointment, &task].into_iter().zip(&paths) {
        let (s, _, got) = env.get(&format!("/fhir/r4/{p}")).await;
        assert_eq!(s, StatusCode::OK, "{got}");
        same_resource(sent, &got);
    }
    for ty in ["Appointment", "Task"] {
        let (s, _, b) = env.get(&format!("/fhir/r4/{ty}?patient={rid}")).await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["total"], 1, "{ty}: {b}");
    }
    // A ServiceRequest (a referral) is served as one, alone: read, searched, in
    // `$everything`.
    let sr = json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "code": {"text": "Renal clinic: eGFR falling"},
        "subject": {"reference": format!("Patient/{rid}")},
        "requester": actor(&rid), "performer": [actor(&clinic)]});
    let (status, _, resp) = env.post(&transaction(std::slice::from_ref(&sr))).await;
    assert_eq!(status, StatusCode::OK, "{resp}");
    let sr_path = resource_path(&locations(&resp)[0]);
    let (s, _, got) = env.get(&format!("/fhir/r4/{sr_path}")).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["resourceType"], "ServiceRequest", "{got}");
    let (s, _, b) = env
        .get(&format!("/fhir/r4/ServiceRequest?patient={rid}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["total"], 1, "{b}");
    assert_eq!(b["entry"][0]["resource"], got, "{b}");
    let (_, _, all) = env
        .get(&format!("/fhir/r4/Patient/{rid}/$everything"))
        .await;
    assert!(all["entry"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["fullUrl"].as_str().unwrap().ends_with(&sr_path)));
    // A task arriving already accepted skips the steps its owner must write: refused,
    // nothing stored. So is one the patient did not send.
    let before = env.footprint();
    let mut accepted = task.clone();
    accepted["status"] = json!("accepted");
    let mut not_mine = task.clone();
    not_mine["requester"] = actor(&clinic);
    for bad in [accepted, not_mine] {
        let (status, _, body) = env.post(&transaction(&[bad])).await;
        assert!(status.is_client_error(), "{status}: {body}");
        assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
        assert_eq!(env.footprint(), before);
    }
}

/// Issue 19, FHIR in: on a care organisation's node, `POST PractitionerRole` adds a member
/// to its membership log (role from `code`), the member is served back as a
/// PractitionerRole of the organisation, and `PUT` with `active: false` removes them; a
/// changed role, a second addition, a removed member made active again, an organisation
/// not administered here and a member not named by key are refused, nothing stored.
#[tokio::test]
async fn a_practitioner_role_posted_to_an_organisation_adds_and_removes_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let org = key(19, "Leeds Home Care");
    let (store, _) = Store::open(dir.path(), org.clone()).unwrap();
    let org_profile = profile("Leeds Home Care Ltd", "organisation", None);
    store
        .create_record(&org, org_profile.clone(), T0, None)
        .unwrap();
    let clock = Arc::new(AtomicU64::new(T0 + 1000));
    let app = app_for(&store, &org, org_profile, &clock);
    let jo = key(19, "Jo Bloggs");
    let role_of = |code: &str| {
        json!({
            "resourceType": "PractitionerRole",
            "active": true,
            "practitioner": {"reference": format!("Practitioner/{}", jo.actor()), "display": "Nurse Jo Bloggs"},
            "organization": {"reference": format!("Organization/{}", org.actor())},
            "code": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/practitioner-role", "code": code}]}],
        })
    };
    let post = |body: Json| {
        let app = app.clone();
        let clock = clock.clone();
        async move {
            clock.fetch_add(1000, Ordering::SeqCst);
            send(
                &app,
                "POST",
                "/fhir/r4/PractitionerRole",
                Some(TOKEN),
                Some("application/fhir+json"),
                serde_json::to_vec(&body).unwrap(),
            )
            .await
        }
    };
    let members = || store.with_record(&org.actor(), |r| r.members()).unwrap();

    let (status, headers, body) = post(role_of("nurse")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    assert!(headers["location"]
        .to_str()
        .unwrap()
        .ends_with(&format!("/PractitionerRole/{id}")));
    let listed = members();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].member, jo.actor());
    assert_eq!(listed[0].role.name, "nurse");
    assert_eq!(listed[0].label, "Nurse Jo Bloggs");
    assert_eq!(listed[0].added.to_string(), id);
    // Served back from the organisation's record.
    let (status, _, read) = send(
        &app,
        "GET",
        &format!("/fhir/r4/PractitionerRole/{id}"),
        Some(TOKEN),
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["active"], true);
    assert_eq!(read["code"][0]["text"], "nurse");
    assert_eq!(
        read["organization"]["reference"],
        format!("Organization/{}", org.actor()).as_str()
    );

    // Refused, nothing stored: the same member again, an unknown role, a member not named
    // by key, an organisation not held here.
    let (status, _, body) = post(role_of("nurse")).await;
    assert!(status.is_client_error(), "{status} {body}");
    let (status, _, body) = post(role_of("astronaut")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["issue"][0]["expression"][0], "PractitionerRole.code");
    let mut unnamed = role_of("nurse");
    unnamed["practitioner"] = json!({"display": "Someone"});
    let (status, _, _) = post(unnamed).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut elsewhere = role_of("doctor");
    elsewhere["organization"]["reference"] =
        json!(format!("Organization/{}", key(19, "St Elsewhere").actor()));
    let (status, _, _) = post(elsewhere).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(members().len(), 1);

    let put = |body: Json| {
        let app = app.clone();
        let clock = clock.clone();
        let id = id.clone();
        async move {
            clock.fetch_add(1000, Ordering::SeqCst);
            send(
                &app,
                "PUT",
                &format!("/fhir/r4/PractitionerRole/{id}"),
                Some(TOKEN),
                Some("application/fhir+json"),
                serde_json::to_vec(&body).unwrap(),
            )
            .await
        }
    };
    // A role is fixed per key.
    let (status, _, _) = put(role_of("doctor")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(members()[0].removed.is_none());
    // `active: false` removes her.
    let mut ended = role_of("nurse");
    ended["active"] = json!(false);
    let (status, _, body) = put(ended.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active"], false);
    assert_eq!(body["meta"]["versionId"], "2");
    assert!(members()[0].removed.is_some());
    // The same again changes nothing; active again is refused.
    let (status, _, _) = put(ended).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = put(role_of("nurse")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(members().len(), 1);
}

#[tokio::test]
async fn the_system_history_lists_every_stored_version_of_every_type_newest_first_paged() {
    let env = Env::new();
    let rid = env.rid();
    let encounter = json!({"resourceType": "Encounter", "id": "enc-h", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{rid}")}});
    let condition = json!({"resourceType": "Condition",
        "code": {"text": "Type 2 diabetes"},
        "subject": {"reference": format!("Patient/{rid}")}});
    let resources = vec![
        heart_rate(&env, 61.0),
        heart_rate(&env, 62.0),
        condition,
        encounter,
    ];
    let (s, _, body) = env.post(&transaction(&resources)).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    // A second version of one Observation.
    let id = amend_first_observation(&env).await;

    // The system history is the types' histories together: 3 Observation versions, the
    // Condition, the Encounter.
    let (urls, pages, first) = all_pages(&env, "/fhir/r4/_history?_count=2").await;
    assert_eq!(first["type"], "history");
    assert_eq!(first["total"], 5, "{first}");
    assert_eq!(pages, 3);
    let mut by_type: Vec<String> = Vec::new();
    for ty in ["Observation", "Condition", "Encounter"] {
        let (u, _, _) = all_pages(&env, &format!("/fhir/r4/{ty}/_history")).await;
        by_type.extend(u);
    }
    let mut sorted = urls.clone();
    sorted.sort();
    by_type.sort();
    assert_eq!(sorted, by_type, "each stored version once, every type's");
    // Newest first: the amended Observation's second version leads.
    assert!(
        urls[0].contains(&format!("/Observation/{id} ")) && urls[0].ends_with("W/\"2\""),
        "{urls:?}"
    );
    let (_, _, whole) = env.get("/fhir/r4/_history").await;
    let times: Vec<&str> = whole["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["lastModified"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    // Derived resources (signatures' Provenance, the reads' AuditEvents) are not listed.
    assert!(
        whole["entry"].as_array().unwrap().iter().all(|e| {
            let u = e["fullUrl"].as_str().unwrap();
            !u.contains("/Provenance/") && !u.contains("/AuditEvent/")
        }),
        "{whole}"
    );
    // Listed in the CapabilityStatement; only read.
    let (_, _, cs) = env.get("/fhir/r4/metadata").await;
    assert!(cs["rest"][0]["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["code"] == "history-system"));
    let (s, _, body) = post_to(
        &env,
        "/fhir/r4/_history",
        "application/fhir+json",
        &[],
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    is_outcome(&body, "not-supported");
}

/// Amends the first Observation listed to a heart rate of 99 (its version 2) through a
/// transaction PUT; returns its id.
async fn amend_first_observation(env: &Env) -> String {
    let (_, _, page) = env.get("/fhir/r4/Observation?_count=1").await;
    let id = page["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut changed = heart_rate(env, 99.0);
    changed["id"] = json!(id);
    let put = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": changed, "request": {"method": "PUT", "url": format!("Observation/{id}")}}]});
    let (s, _, body) = env.post(&put).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    id
}
