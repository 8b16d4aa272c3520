//! The ITS-REST 1.0.3 specification's request and response shapes (its OpenAPI examples
//! and response definitions: status codes, `ETag` and `Location` headers, bodies), as far as
//! they fit cophr's templates, driven in process through the node's router. Written from
//! the specification's EHR, EHR_STATUS, COMPOSITION, CONTRIBUTION and QUERY sections.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use cophr_node::http::{router, AppState};
use cophr_node::store::Store;
use cophr_protocol::openehr;
use cophr_protocol::testkit::key;
use cophr_protocol::{Keypair, Profile};
use serde_json::{json, Value as Json};
use tower::ServiceExt;

const TOKEN: &str = "openehrspectoken";
const T0: u64 = 1_700_000_000_000;

struct Env {
    _dir: tempfile::TempDir,
    patient: Keypair,
    clock: Arc<AtomicU64>,
    app: Router,
}

impl Env {
    fn new() -> Env {
        Env::with_record(true)
    }

    /// A node acting as George, holding his record if `record`.
    fn with_record(record: bool) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), key(5, "node")).unwrap();
        let patient = key(5, "george");
        let p = Profile {
            name: "George".into(),
            role: "patient".into(),
            organisation: None,
            attestations: Vec::new(),
        };
        if record {
            store.create_record(&patient, p.clone(), T0, None).unwrap();
        }
        let clock = Arc::new(AtomicU64::new(T0 + 1000));
        let c = clock.clone();
        let app = router(
            AppState::new(store, patient.clone(), p, None, TOKEN.into())
                .with_clock(move || c.load(Ordering::SeqCst)),
        );
        Env {
            _dir: dir,
            patient,
            clock,
            app,
        }
    }

    fn ehr(&self) -> String {
        openehr::ehr_id(&self.patient.actor())
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (StatusCode, HeaderMap, Option<Json>) {
        self.clock.fetch_add(1000, Ordering::SeqCst);
        let mut b = Request::builder()
            .method(method)
            .uri(format!("/openehr/v1{path}"))
            .header("authorization", format!("Bearer {TOKEN}"));
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(b.body(Body::from(body.to_vec())).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = if bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&bytes).unwrap())
        };
        (status, headers, json)
    }

    async fn get(&self, path: &str) -> (StatusCode, HeaderMap, Option<Json>) {
        self.send("GET", path, &[], b"").await
    }
}

/// The `ETag` without its quotes; the spec requires them.
fn etag(h: &HeaderMap) -> String {
    let raw = h["etag"].to_str().unwrap();
    assert!(
        raw.starts_with('"') && raw.ends_with('"'),
        "ETag not quoted: {raw}"
    );
    raw.trim_matches('"').to_owned()
}

fn location(h: &HeaderMap) -> String {
    h["location"].to_str().unwrap().to_owned()
}

const JSON: (&str, &str) = ("content-type", "application/json");
const FULL: (&str, &str) = ("prefer", "return=representation");

/// A problem composition of cophr's problem list template, as a client writes it.
fn problem(name: &str) -> Json {
    let text = |s: &str| json!({"_type": "DV_TEXT", "value": s});
    json!({
        "_type": "COMPOSITION",
        "name": text("Problem list"),
        "archetype_node_id": "openEHR-EHR-COMPOSITION.problem_list.v2",
        "archetype_details": {"_type": "ARCHETYPED",
            "archetype_id": {"_type": "ARCHETYPE_ID", "value": "openEHR-EHR-COMPOSITION.problem_list.v2"},
            "template_id": {"_type": "TEMPLATE_ID", "value": "cophr.problems.v1"}, "rm_version": "1.0.4"},
        "language": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "ISO_639-1"}, "code_string": "en"},
        "territory": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "ISO_3166-1"}, "code_string": "GB"},
        "category": {"_type": "DV_CODED_TEXT", "value": "persistent",
            "defining_code": {"_type": "CODE_PHRASE", "terminology_id": {"_type": "TERMINOLOGY_ID", "value": "openehr"}, "code_string": "431"}},
        "composer": {"_type": "PARTY_IDENTIFIED", "name": "A user name"},
        "content": [{
            "_type": "EVALUATION",
            "name": text("Problem/Diagnosis"),
            "archetype_node_id": "openEHR-EHR-EVALUATION.problem_diagnosis.v1",
            "data": {"_type": "ITEM_TREE", "name": text("Structure"), "archetype_node_id": "at0001",
                "items": [{"_type": "ELEMENT", "name": text("Problem/Diagnosis name"),
                           "archetype_node_id": "at0002", "value": text(name)}]}
        }]
    })
}

#[tokio::test]
async fn ehr_and_ehr_status_as_the_spec_shows_them() {
    let env = Env::new();
    let ehr = env.ehr();
    // 200_EHR: system_id, ehr_id, ehr_status and ehr_access as OBJECT_REFs, time_created.
    let (s, _, b) = env.get(&format!("/ehr/{ehr}")).await;
    assert_eq!(s, StatusCode::OK);
    let b = b.unwrap();
    assert!(b["system_id"]["value"].is_string());
    assert_eq!(b["ehr_id"]["value"], ehr.as_str());
    for r in ["ehr_status", "ehr_access"] {
        assert_eq!(b[r]["id"]["_type"], "OBJECT_VERSION_ID");
        assert_eq!(b[r]["namespace"], "local");
        assert_eq!(b[r]["type"], r.to_uppercase());
    }
    assert!(b["time_created"]["value"].is_string());
    // By subject (subject_id, subject_namespace); 404_EHR_subject for an unknown one.
    let rid = env.patient.actor();
    let (s, _, b) = env
        .get(&format!("/ehr?subject_id={rid}&subject_namespace=cophr"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.unwrap()["ehr_id"]["value"], ehr.as_str());
    let other = key(6, "nobody").actor();
    let (s, _, _) = env
        .get(&format!("/ehr?subject_id={other}&subject_namespace=cophr"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // 404_unknown_ehr_id.
    let (s, _, _) = env.get("/ehr/7d44b88c-4199-4bad-97dc-d78268e01398").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // 200_EHR_STATUS_retrieved: the EHR_STATUS, with ETag and Location of its version.
    let (s, h, b) = env.get(&format!("/ehr/{ehr}/ehr_status")).await;
    assert_eq!(s, StatusCode::OK);
    let b = b.unwrap();
    assert_eq!(b["_type"], "EHR_STATUS");
    assert_eq!(b["is_queryable"], true);
    assert_eq!(b["is_modifiable"], true);
    assert_eq!(b["subject"]["_type"], "PARTY_SELF");
    let uid = b["uid"]["value"].as_str().unwrap();
    assert_eq!(etag(&h), uid);
    assert!(
        location(&h).ends_with(&format!("/ehr/{ehr}/ehr_status/{uid}")),
        "{}",
        location(&h)
    );
}

#[tokio::test]
async fn composition_statuses_and_headers_as_the_spec_gives_them() {
    let env = Env::new();
    let ehr = env.ehr();
    let body = serde_json::to_vec(&problem("Asthma")).unwrap();
    // 201_COMPOSITION: headers only by default (return=minimal), ETag the quoted version
    // uid and Location its URL.
    let path = format!("/ehr/{ehr}/composition");
    let (s, h, b) = env.send("POST", &path, &[JSON], &body).await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(b.is_none(), "{b:?}");
    let v1 = etag(&h);
    assert!(v1.ends_with("::cophr::1"));
    assert!(location(&h).ends_with(&format!("/ehr/{ehr}/composition/{v1}")));
    // With return=representation, the COMPOSITION with its uid.
    let (s, h, b) = env.send("POST", &path, &[JSON, FULL], &body).await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(b.unwrap()["uid"]["value"], etag(&h).as_str());
    // 404_unknown_ehr_id.
    let (s, _, _) = env
        .send(
            "POST",
            "/ehr/7d44b88c-4199-4bad-97dc-d78268e01398/composition",
            &[JSON],
            &body,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // 400_COMPOSITION: the body cannot be read, or is not a COMPOSITION.
    for bad in [
        b"{not json".to_vec(),
        br#"{"_type": "EHR_STATUS"}"#.to_vec(),
    ] {
        let (s, _, b) = env.send("POST", &path, &[JSON], &bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{b:?}");
        assert!(b.unwrap()["message"].is_string());
    }
    // 422_COMPOSITION: a COMPOSITION its template does not validate, or of a template
    // not known.
    let mut unknown = problem("Asthma");
    unknown["archetype_details"]["template_id"]["value"] = json!("IDCR - Problem List.v1");
    let mut invalid = problem("Asthma");
    invalid["content"][0]["data"]["items"] = json!([]);
    let mut wrong = problem("Asthma");
    wrong["content"][0]["archetype_node_id"] = json!("openEHR-EHR-EVALUATION.alert.v0");
    for (c, code) in [
        (unknown, "unknown_template"),
        (invalid, "missing_mandatory"),
        (wrong, "wrong_archetype"),
    ] {
        let (s, _, b) = env
            .send("POST", &path, &[JSON], &serde_json::to_vec(&c).unwrap())
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b:?}");
        assert_eq!(b.unwrap()["code"], code);
    }
    // 200_COMPOSITION_retrieved, with ETag and Location.
    let (s, h, b) = env.get(&format!("/ehr/{ehr}/composition/{v1}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.unwrap()["_type"], "COMPOSITION");
    assert_eq!(etag(&h), v1);
    assert!(location(&h).ends_with(&v1));
    // PUT with If-Match: 200_COMPOSITION_updated; 412 for a stale one, with the latest
    // version uid in ETag and Location; 422 for a composition its template refuses.
    let object = openehr::parse_uid(&v1).unwrap().object;
    let put = format!("/ehr/{ehr}/composition/{object}");
    let changed = serde_json::to_vec(&problem("Asthma, well controlled")).unwrap();
    let quoted = format!("\"{v1}\"");
    let (s, h, _) = env
        .send("PUT", &put, &[JSON, ("if-match", &quoted)], &changed)
        .await;
    assert_eq!(s, StatusCode::OK);
    let v2 = etag(&h);
    assert!(v2.ends_with("::2"));
    assert!(location(&h).ends_with(&v2));
    let (s, h, _) = env
        .send("PUT", &put, &[JSON, ("if-match", &quoted)], &changed)
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    assert_eq!(etag(&h), v2);
    assert!(location(&h).ends_with(&v2), "412 without Location");
    let mut bad = problem("x");
    bad["content"][0]["data"]["items"] = json!([]);
    let q2 = format!("\"{v2}\"");
    let (s, _, _) = env
        .send(
            "PUT",
            &put,
            &[JSON, ("if-match", &q2)],
            &serde_json::to_vec(&bad).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    // DELETE: 409 when the uid is not the latest (latest in ETag and Location); 204 for
    // the latest; then 400_already_deleted; a read of it is 204_because_deleted.
    let (s, h, _) = env
        .send("DELETE", &format!("/ehr/{ehr}/composition/{v1}"), &[], b"")
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(etag(&h), v2);
    assert!(location(&h).ends_with(&v2), "409 without Location");
    let (s, h, _) = env
        .send("DELETE", &format!("/ehr/{ehr}/composition/{v2}"), &[], b"")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let v3 = etag(&h);
    assert!(v3.ends_with("::3"));
    assert!(location(&h).ends_with(&v3));
    let (s, _, _) = env
        .send("DELETE", &format!("/ehr/{ehr}/composition/{v3}"), &[], b"")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, b) = env.get(&format!("/ehr/{ehr}/composition/{object}")).await;
    assert_eq!((s, b), (StatusCode::NO_CONTENT, None));
}

#[tokio::test]
async fn contribution_and_query_as_the_spec_shows_them() {
    let env = Env::new();
    let ehr = env.ehr();
    // A NewContribution: versions (UPDATE_VERSION: data, lifecycle_state, commit_audit)
    // and an audit.
    let audit = json!({"change_type": {"value": "creation",
        "defining_code": {"terminology_id": {"value": "openehr"}, "code_string": "249"}},
        "description": {"value": "Description text"},
        "committer": {"_type": "PARTY_IDENTIFIED", "name": "A user name"}});
    let new = json!({
        "versions": [{
            "_type": "ORIGINAL_VERSION",
            "data": problem("Hay fever"),
            "lifecycle_state": {"value": "complete",
                "defining_code": {"terminology_id": {"value": "openehr"}, "code_string": "532"}},
            "commit_audit": audit
        }],
        "audit": {"committer": {"_type": "PARTY_IDENTIFIED", "name": "A user name"}}
    });
    let path = format!("/ehr/{ehr}/contribution");
    // 201_CONTRIBUTION: ETag the quoted contribution uid, Location its URL; the
    // CONTRIBUTION with return=representation: uid, versions as OBJECT_REFs, audit.
    let (s, h, b) = env
        .send(
            "POST",
            &path,
            &[JSON, FULL],
            &serde_json::to_vec(&new).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b:?}");
    let uid = etag(&h);
    assert!(openehr::is_uuid(&uid), "{uid}");
    assert!(location(&h).ends_with(&format!("/ehr/{ehr}/contribution/{uid}")));
    let b = b.unwrap();
    assert_eq!(b["uid"]["value"], uid.as_str());
    let r = &b["versions"][0];
    assert_eq!(r["id"]["_type"], "OBJECT_VERSION_ID");
    assert_eq!(r["namespace"], "local");
    assert_eq!(r["type"], "COMPOSITION");
    assert!(b["audit"]["time_committed"]["value"].is_string());
    assert_eq!(
        b["audit"]["change_type"]["defining_code"]["code_string"],
        "249"
    );
    assert!(b["audit"]["committer"]["_type"].is_string());
    // 200_CONTRIBUTION; 404_CONTRIBUTION for an unknown uid.
    let (s, _, got) = env.get(&format!("/ehr/{ehr}/contribution/{uid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(got.unwrap()["versions"], b["versions"]);
    let (s, _, _) = env
        .get(&format!(
            "/ehr/{ehr}/contribution/0826851c-c4c2-4d61-92b9-410fb8275ff0"
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // 400_CONTRIBUTION: not a CONTRIBUTION; a modification of nothing.
    let mut modify = new.clone();
    modify["versions"][0]["commit_audit"]["change_type"] = json!({"value": "modification",
        "defining_code": {"terminology_id": {"value": "openehr"}, "code_string": "251"}});
    for bad in [
        br#"{"versions": "x"}"#.to_vec(),
        serde_json::to_vec(&modify).unwrap(),
    ] {
        let (s, _, _) = env.send("POST", &path, &[JSON], &bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }

    // QUERY: POST query/aql with q and query_parameters; the result set has meta, q,
    // columns (name, path) and rows.
    let q = "SELECT c/uid/value AS uid, p/data[at0001]/items[at0002]/value/value AS problem \
             FROM EHR e[ehr_id/value=$ehr_id] CONTAINS COMPOSITION c \
             CONTAINS EVALUATION p[openEHR-EHR-EVALUATION.problem_diagnosis.v1] \
             ORDER BY c/uid/value LIMIT 10";
    let (s, _, b) = env
        .send(
            "POST",
            "/query/aql",
            &[JSON],
            &serde_json::to_vec(&json!({"q": q, "query_parameters": {"ehr_id": ehr}})).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b:?}");
    let b = b.unwrap();
    assert!(b["meta"].is_object());
    assert_eq!(b["q"], q);
    assert_eq!(b["columns"][1]["name"], "problem");
    assert!(b["columns"][1]["path"].is_string());
    assert_eq!(b["rows"][0][1], "Hay fever");
    let (s, _, b) = env
        .send(
            "POST",
            "/query/aql",
            &[JSON],
            &serde_json::to_vec(&json!({"q": "SELEC c FROM"})).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(b.unwrap()["message"].is_string());
}

#[tokio::test]
async fn a_node_creates_its_own_identitys_ehr_once_and_no_one_elses() {
    // A node acting as George, who has no record yet: another subject is refused and
    // nothing is created; his own EHR is created (201, as ITS-REST `201_EHR_created`), once.
    let env = Env::with_record(false);
    let ehr = env.ehr();
    let other = key(6, "nobody").actor().to_string();
    let other_status = serde_json::to_vec(&json!({
        "_type": "EHR_STATUS",
        "subject": {"external_ref": {"id": {"value": other}, "namespace": "cophr"}},
        "is_modifiable": true, "is_queryable": true
    }))
    .unwrap();
    let (s, _, _) = env.send("POST", "/ehr", &[JSON], &other_status).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = env
        .send(
            "PUT",
            "/ehr/7d44b88c-4199-4bad-97dc-d78268e01398",
            &[JSON],
            b"",
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = env.get(&format!("/ehr/{ehr}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was created");

    let (s, h, b) = env.send("POST", "/ehr", &[JSON], b"").await;
    assert_eq!(s, StatusCode::CREATED, "{b:?}");
    assert_eq!(etag(&h), ehr);
    assert!(location(&h).ends_with(&format!("/ehr/{ehr}")));
    assert_eq!(b.unwrap()["ehr_id"]["value"], ehr.as_str());
    let (s, _, b) = env.get(&format!("/ehr/{ehr}")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.unwrap()["ehr_id"]["value"], ehr.as_str());
    // A composition can be written into it at once.
    let (s, _, b) = env
        .send(
            "POST",
            &format!("/ehr/{ehr}/composition"),
            &[JSON],
            &serde_json::to_vec(&problem("Asthma")).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b:?}");
    // Again: it exists (409), by POST or by PUT at its id.
    let (s, _, b) = env.send("POST", "/ehr", &[JSON], b"").await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(b.unwrap()["ehr_id"]["value"], ehr.as_str());
    let (s, _, _) = env.send("PUT", &format!("/ehr/{ehr}"), &[JSON], b"").await;
    assert_eq!(s, StatusCode::CONFLICT);
}

#[tokio::test]
async fn ehr_creation_and_the_versioned_ehr_status_as_the_spec_answers_them() {
    let env = Env::new();
    let ehr = env.ehr();
    let rid = env.patient.actor().to_string();
    let status = |id: &str, ns: &str| {
        serde_json::to_vec(&json!({
            "_type": "EHR_STATUS",
            "archetype_node_id": "openEHR-EHR-EHR_STATUS.generic.v1",
            "name": {"value": "EHR Status"},
            "subject": {"external_ref": {"id": {"_type": "GENERIC_ID", "value": id, "scheme": "id_scheme"},
                                         "namespace": ns, "type": "PERSON"}},
            "is_modifiable": true,
            "is_queryable": true
        }))
        .unwrap()
    };
    // 409_EHR_exists: the identity's own EHR (no body), the subject's, the ehr_id's; with
    // the existing id in the body, ETag and Location.
    for (method, path, body) in [
        ("POST", "/ehr".to_owned(), Vec::new()),
        ("POST", "/ehr".to_owned(), status(&rid, "cophr")),
        ("PUT", format!("/ehr/{ehr}"), Vec::new()),
    ] {
        let (s, h, b) = env.send(method, &path, &[JSON, FULL], &body).await;
        assert_eq!(s, StatusCode::CONFLICT, "{method} {path}: {b:?}");
        assert_eq!(b.unwrap()["ehr_id"]["value"], ehr.as_str());
        assert_eq!(etag(&h), ehr);
        assert!(location(&h).ends_with(&format!("/ehr/{ehr}")));
    }
    // A new EHR is not created (a record is the patient's own, made by `cophr init`):
    // another subject, another namespace, an unknown ehr_id; a bad ehr_id or body is 400.
    let other = key(6, "nobody").actor().to_string();
    for (method, path, body) in [
        ("POST", "/ehr".to_owned(), status(&other, "cophr")),
        ("POST", "/ehr".to_owned(), status(&rid, "elsewhere")),
        (
            "PUT",
            "/ehr/7d44b88c-4199-4bad-97dc-d78268e01398".to_owned(),
            Vec::new(),
        ),
    ] {
        let (s, _, b) = env.send(method, &path, &[JSON], &body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}");
        let b = b.unwrap();
        assert_eq!(b["code"], "ehr_not_created");
        assert!(b["message"].as_str().unwrap().contains("cophr init"));
    }
    let (s, _, _) = env.send("PUT", "/ehr/not-a-uuid", &[JSON], b"").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = env.send("POST", "/ehr", &[JSON], b"[1]").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = env
        .send("POST", "/ehr", &[JSON], br#"{"is_queryable": {}}"#)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = env
        .send("POST", "/ehr", &[JSON], &vec![b' '; 17 * 1024])
        .await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);

    // PUT ehr_status: If-Match needed (400), a stale one 412 with the version in ETag; a
    // current one refused precisely (the status is derived), nothing changed.
    let (_, h, before) = env.get(&format!("/ehr/{ehr}/ehr_status")).await;
    let version = etag(&h);
    let path = format!("/ehr/{ehr}/ehr_status");
    let mut hidden: Json = serde_json::from_slice(&status(&rid, "cophr")).unwrap();
    hidden["is_queryable"] = json!(false);
    let hidden = serde_json::to_vec(&hidden).unwrap();
    let (s, _, _) = env.send("PUT", &path, &[JSON], &hidden).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = env
        .send("PUT", &path, &[JSON, ("if-match", "")], &hidden)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "an empty If-Match is none");
    let stale = format!("\"{}::cophr::2\"", version.split("::").next().unwrap());
    let (s, h, _) = env
        .send("PUT", &path, &[JSON, ("if-match", &stale)], &hidden)
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    assert_eq!(etag(&h), version);
    let current = format!("\"{version}\"");
    let (s, _, b) = env
        .send("PUT", &path, &[JSON, ("if-match", &current)], &hidden)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let b = b.unwrap();
    assert_eq!(b["code"], "ehr_status_fixed");
    assert!(
        b["message"].as_str().unwrap().contains("is_queryable"),
        "{b}"
    );
    let (_, _, after) = env.get(&path).await;
    assert_eq!(after, before);

    // VERSIONED_EHR_STATUS: its uid is the status's object id, owned by the EHR; one
    // version (a creation, with the record), by time and by uid.
    let object = version.split("::").next().unwrap().to_owned();
    let (s, _, b) = env.get(&format!("/ehr/{ehr}/versioned_ehr_status")).await;
    assert_eq!(s, StatusCode::OK);
    let b = b.unwrap();
    assert_eq!(b["_type"], "VERSIONED_EHR_STATUS");
    assert_eq!(b["uid"]["value"], object.as_str());
    assert_eq!(b["owner_id"]["value"], ehr.as_str());
    assert!(b["time_created"]["value"].is_string());
    let (s, _, b) = env
        .get(&format!("/ehr/{ehr}/versioned_ehr_status/revision_history"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let b = b.unwrap();
    assert_eq!(b.as_array().unwrap().len(), 1);
    assert_eq!(b[0]["version_id"]["value"], version.as_str());
    assert_eq!(
        b[0]["audits"][0]["change_type"]["defining_code"]["code_string"],
        "249"
    );
    for q in [
        "/version".to_owned(),
        "/version?version_at_time=2100-01-01T00:00:00Z".to_owned(),
        format!("/version/{version}"),
    ] {
        let (s, _, b) = env
            .get(&format!("/ehr/{ehr}/versioned_ehr_status{q}"))
            .await;
        assert_eq!(s, StatusCode::OK, "{q}");
        let b = b.unwrap();
        assert_eq!(b["_type"], "ORIGINAL_VERSION");
        assert_eq!(b["uid"]["value"], version.as_str());
        assert_eq!(b["data"], before.clone().unwrap());
        assert!(b["contribution"]["id"]["value"].is_string());
    }
    for (q, want) in [
        ("/version?version_at_time=2000-01-01", StatusCode::NOT_FOUND),
        (
            "/version?version_at_time=yesterday",
            StatusCode::BAD_REQUEST,
        ),
        (
            "/version/7d44b88c-4199-4bad-97dc-d78268e01398::cophr::1",
            StatusCode::NOT_FOUND,
        ),
    ] {
        let (s, _, _) = env
            .get(&format!("/ehr/{ehr}/versioned_ehr_status{q}"))
            .await;
        assert_eq!(s, want, "{q}");
    }
    let (s, _, _) = env
        .get("/ehr/7d44b88c-4199-4bad-97dc-d78268e01398/versioned_ehr_status")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn query_aql_by_get_and_post_pages_with_offset_and_fetch() {
    let env = Env::new();
    let ehr = env.ehr();
    for name in ["Asthma", "Eczema", "Hay fever"] {
        let (s, _, _) = env
            .send(
                "POST",
                &format!("/ehr/{ehr}/composition"),
                &[JSON],
                &serde_json::to_vec(&problem(name)).unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let q = "SELECT p/data[at0001]/items[at0002]/value/value AS problem \
             FROM EHR e[ehr_id/value=$ehr_id] CONTAINS COMPOSITION c \
             CONTAINS EVALUATION p[openEHR-EHR-EVALUATION.problem_diagnosis.v1] \
             ORDER BY p/data[at0001]/items[at0002]/value/value";
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    // GET query/aql: q, the query parameters as URL parameters, offset and fetch.
    let (s, _, b) = env
        .get(&format!("/query/aql?q={}&ehr_id={ehr}", enc(q)))
        .await;
    assert_eq!(s, StatusCode::OK, "{b:?}");
    let b = b.unwrap();
    assert_eq!(b["q"], q);
    assert_eq!(b["meta"]["_type"], "RESULTSET");
    assert_eq!(b["rows"], json!([["Asthma"], ["Eczema"], ["Hay fever"]]));
    let (s, _, b) = env
        .get(&format!(
            "/query/aql?q={}&ehr_id={ehr}&offset=1&fetch=1",
            enc(q)
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let b = b.unwrap();
    assert_eq!(b["rows"], json!([["Eczema"]]));
    assert_eq!(b["meta"]["offset"], 1);
    assert_eq!(b["meta"]["fetch"], 1);
    assert_eq!(b["meta"]["resultsize"], 1);
    // POST takes offset and fetch too.
    let (s, _, b) = env
        .send(
            "POST",
            "/query/aql",
            &[JSON],
            &serde_json::to_vec(
                &json!({"q": q, "query_parameters": {"ehr_id": ehr}, "offset": 2, "fetch": 5}),
            )
            .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.unwrap()["rows"], json!([["Hay fever"]]));
    // `ehr_id` in the URL of a POST (as clients send it) scopes a query without one: an
    // unknown EHR gives no rows.
    let open = "SELECT c/uid/value FROM EHR e CONTAINS COMPOSITION c";
    for (id, want) in [
        (ehr.as_str(), 3),
        ("7d44b88c-4199-4bad-97dc-d78268e01398", 0),
    ] {
        let (s, _, b) = env
            .send(
                "POST",
                &format!("/query/aql?ehr_id={id}"),
                &[JSON],
                &serde_json::to_vec(&json!({ "q": open })).unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(b.unwrap()["rows"].as_array().unwrap().len(), want, "{id}");
    }
    // 400: no q, malformed AQL (with the reason), a bad or too large fetch, a missing
    // parameter.
    let too_many = format!("/query/aql?q={}&ehr_id={ehr}&fetch=1001", enc(q));
    let no_param = format!("/query/aql?q={}", enc(q));
    for path in [
        "/query/aql".to_owned(),
        format!("/query/aql?q={}", enc("SELEC c FROM")),
        format!("/query/aql?q={}&fetch=many", enc(q)),
        too_many,
        no_param,
        format!("/query/aql?q={}&ehr_id=not-an-ehr", enc(q)),
    ] {
        let (s, _, b) = env.get(&path).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}");
        assert!(b.unwrap()["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn stored_queries_are_kept_by_the_node_and_run_by_name() {
    let env = Env::new();
    let ehr = env.ehr();
    for name in ["Asthma", "Eczema"] {
        let (s, _, _) = env
            .send(
                "POST",
                &format!("/ehr/{ehr}/composition"),
                &[JSON],
                &serde_json::to_vec(&problem(name)).unwrap(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let q = |order: &str| {
        format!(
            "SELECT p/data[at0001]/items[at0002]/value/value AS problem \
             FROM EHR e[ehr_id/value=$ehr_id] CONTAINS COMPOSITION c \
             CONTAINS EVALUATION p[openEHR-EHR-EVALUATION.problem_diagnosis.v1] \
             ORDER BY p/data[at0001]/items[at0002]/value/value {order}"
        )
    };
    const TEXT: (&str, &str) = ("content-type", "text/plain");
    let def = "/definition/query/org.example::problems";
    // PUT definition/query/{name}/{version}: stored (201, Location); a version is never
    // replaced (409); JSON {"q"} is taken too.
    let (s, h, _) = env
        .send("PUT", &format!("{def}/1.0.0"), &[TEXT], q("ASC").as_bytes())
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert!(location(&h).ends_with("/definition/query/org.example::problems/1.0.0"));
    let (s, _, _) = env
        .send(
            "PUT",
            &format!("{def}/1.0.0"),
            &[TEXT],
            q("DESC").as_bytes(),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _, _) = env
        .send(
            "PUT",
            &format!("{def}/1.10.0"),
            &[JSON],
            &serde_json::to_vec(&json!({"q": q("DESC")})).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Refused: malformed AQL (with the reason), a bad name or version, another media type.
    for (path, headers, body, want) in [
        (
            format!("{def}/2.0.0"),
            TEXT,
            "SELEC c FROM".to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/definition/query/problems/1.0.0".to_owned(),
            TEXT,
            q("ASC"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{def}/1.0"),
            TEXT,
            q("ASC"),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("{def}/2.0.0"),
            ("content-type", "application/xml"),
            q("ASC"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ] {
        let (s, _, b) = env.send("PUT", &path, &[headers], body.as_bytes()).await;
        assert_eq!(s, want, "{path}");
        assert!(b.unwrap()["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // GET definition/query/{name}[/{version}].
    let (s, _, b) = env.get(def).await;
    assert_eq!(s, StatusCode::OK);
    let b = b.unwrap();
    assert_eq!(b.as_array().unwrap().len(), 2);
    assert_eq!(b[0]["version"], "1.10.0", "the latest first");
    assert_eq!(b[0]["type"], "AQL");
    let (s, _, b) = env.get("/definition/query").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.unwrap()[1]["version"], "1.0.0");
    let (s, _, b) = env.get(&format!("{def}/1.10.0")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.unwrap()["q"], q("DESC"));
    let (s, _, _) = env.get(&format!("{def}/3.0.0")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Run by name: the latest version (1.10.0 > 1.0.0), or the one named; GET with URL
    // parameters, POST with a body.
    let run = "/query/org.example::problems";
    let (s, _, b) = env.get(&format!("{run}?ehr_id={ehr}")).await;
    assert_eq!(s, StatusCode::OK, "{b:?}");
    assert_eq!(b.unwrap()["rows"], json!([["Eczema"], ["Asthma"]]));
    let (s, _, b) = env.get(&format!("{run}/1.0.0?ehr_id={ehr}&fetch=1")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.unwrap()["rows"], json!([["Asthma"]]));
    let (s, _, b) = env
        .send(
            "POST",
            &format!("{run}/1.0.0"),
            &[JSON],
            &serde_json::to_vec(&json!({"query_parameters": {"ehr_id": ehr}, "offset": 1}))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b.unwrap()["rows"], json!([["Eczema"]]));
    // `ehr_id` in a POST's body (as clients send it) is the EHR and `$ehr_id`.
    let (s, _, b) = env
        .send(
            "POST",
            run,
            &[JSON],
            &serde_json::to_vec(&json!({"ehr_id": ehr, "fetch": 1})).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b:?}");
    assert_eq!(b.unwrap()["rows"], json!([["Eczema"]]));
    let (s, _, _) = env.get(&format!("{run}?q=SELECT")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _, _) = env.get("/query/org.example::unknown").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // At most MAX_STORED_QUERIES are kept.
    let max = cophr_node::http::openehr::query::MAX_STORED_QUERIES;
    for i in 2..max {
        let (s, _, _) = env
            .send(
                "PUT",
                &format!("{def}/1.0.{i}"),
                &[TEXT],
                q("ASC").as_bytes(),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{i}");
    }
    let (s, _, b) = env
        .send("PUT", &format!("{def}/9.0.0"), &[TEXT], q("ASC").as_bytes())
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(b.unwrap()["code"], "too_many");
}

#[tokio::test]
async fn structured_compositions_in_and_out_beside_flat() {
    let env = Env::new();
    let ehr = env.ehr();
    const STRUCTURED: &str = "application/openehr.wt.structured+json";
    // Written canonical, read back STRUCTURED (by Accept or ?format=STRUCTURED): FLAT's keys
    // as a tree.
    let (s, h, _) = env
        .send(
            "POST",
            &format!("/ehr/{ehr}/composition"),
            &[JSON],
            &serde_json::to_vec(&problem("Asthma")).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let uid = etag(&h);
    let path = format!("/ehr/{ehr}/composition/{uid}");
    let (s, h, b) = env.send("GET", &path, &[("accept", STRUCTURED)], b"").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], STRUCTURED);
    let structured = b.unwrap();
    let name = &structured["problem_list"]["problem_diagnosis"][0];
    assert!(name.is_object(), "{structured:#}");
    let (_, _, by_query) = env.get(&format!("{path}?format=STRUCTURED")).await;
    assert_eq!(by_query.unwrap(), structured);
    let text = structured.to_string();
    assert!(text.contains("\"Asthma\""), "{text}");
    // Written STRUCTURED (with its template), read back canonical: the same problem.
    let other: Json = serde_json::from_str(&text.replace("\"Asthma\"", "\"Eczema\"")).unwrap();
    let tid = ("openehr-template-id", "cophr.problems.v1");
    let (s, h, b) = env
        .send(
            "POST",
            &format!("/ehr/{ehr}/composition"),
            &[
                ("content-type", STRUCTURED),
                tid,
                FULL,
                ("accept", STRUCTURED),
            ],
            &serde_json::to_vec(&other).unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b:?}");
    assert_eq!(h["content-type"], STRUCTURED);
    assert!(b.unwrap().to_string().contains("\"Eczema\""));
    let (_, _, canonical) = env
        .get(&format!("/ehr/{ehr}/composition/{}", etag(&h)))
        .await;
    let canonical = canonical.unwrap();
    assert_eq!(
        canonical["content"][0]["data"]["items"][0]["value"]["value"], "Eczema",
        "{canonical:#}"
    );
    // Refused, nothing stored: without its template (400), not a tree (400), a node the
    // template has not (422).
    let count = |b: Option<Json>| b.unwrap()["rows"].as_array().unwrap().len();
    let q = json!({"q": "SELECT c/uid/value FROM EHR e CONTAINS COMPOSITION c"});
    let (_, _, before) = env
        .send(
            "POST",
            "/query/aql",
            &[JSON],
            &serde_json::to_vec(&q).unwrap(),
        )
        .await;
    for (headers, body, want) in [
        (
            vec![("content-type", STRUCTURED)],
            json!(other),
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("content-type", STRUCTURED), tid],
            json!([1]),
            StatusCode::BAD_REQUEST,
        ),
        (
            vec![("content-type", STRUCTURED), tid],
            json!({"problem_list": {"nonsense": [{"x": ["y"]}]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (s, _, _) = env
            .send(
                "POST",
                &format!("/ehr/{ehr}/composition"),
                &headers,
                &serde_json::to_vec(&body).unwrap(),
            )
            .await;
        assert_eq!(s, want, "{body}");
    }
    let (_, _, after) = env
        .send(
            "POST",
            "/query/aql",
            &[JSON],
            &serde_json::to_vec(&q).unwrap(),
        )
        .await;
    assert_eq!(count(after), count(before));
}
