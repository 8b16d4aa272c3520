use super::*;
use crate::openehr::{to_composition, version_uid, Meta};
use crate::schema;

fn problem(name: &str) -> Json {
    let body = schema::body_from_json(&Category::Problems, &json!({"problem": name})).unwrap();
    to_composition(
        &Category::Problems,
        &body,
        &Meta {
            uid: None,
            start_time: "2026-12-01T09:00:00Z".into(),
            composer: Composer {
                name: None,
                actor: "a-test".into(),
            },
        },
    )
    .unwrap()
}

fn version(change: (&str, &str), preceding: Option<&str>, data: Option<Json>) -> Json {
    let mut v = json!({
        "_type": "ORIGINAL_VERSION",
        "commit_audit": {"_type": "AUDIT_DETAILS",
                         "change_type": {"_type": "DV_CODED_TEXT", "value": change.0,
                                         "defining_code": {"terminology_id": {"value": "openehr"}, "code_string": change.1}}},
        "lifecycle_state": {"_type": "DV_CODED_TEXT", "value": "complete",
                            "defining_code": {"terminology_id": {"value": "openehr"}, "code_string": "532"}},
    });
    if let Some(p) = preceding {
        v["preceding_version_uid"] = json!({"_type": "OBJECT_VERSION_ID", "value": p});
    }
    if let Some(d) = data {
        v["data"] = d;
    }
    v
}

fn parse(versions: Vec<Json>) -> Result<Vec<Change>, OpenEhrError> {
    parse_contribution(
        &serde_json::to_vec(&json!({"_type": "CONTRIBUTION", "versions": versions})).unwrap(),
    )
}

fn uid(n: u8, v: usize) -> String {
    version_uid(&EntryId([n; 32]), v)
}

#[test]
fn a_contribution_reads_as_creates_modifications_and_deletes_in_order() {
    let got = parse(vec![
        version(("creation", "249"), None, Some(problem("Asthma"))),
        version(
            ("modification", "251"),
            Some(&uid(1, 2)),
            Some(problem("Gout")),
        ),
        version(("deleted", "523"), Some(&uid(2, 1)), None),
    ])
    .unwrap();
    assert_eq!(got.len(), 3);
    assert!(
        matches!(&got[0], Change::Create { category: Category::Problems, body } if body.to_json()["problem"] == "Asthma")
    );
    match &got[1] {
        Change::Modify {
            preceding, body, ..
        } => {
            assert_eq!(preceding.version, Some(2));
            assert_eq!(body.to_json()["problem"], "Gout");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&got[2], Change::Delete { preceding } if preceding.version == Some(1)));
    // An amendment (250) is a modification too; a lifecycle state `deleted` deletes.
    let mut del = version(("modification", "251"), Some(&uid(3, 1)), None);
    del["lifecycle_state"]["value"] = json!("deleted");
    del["lifecycle_state"]["defining_code"]["code_string"] = json!("523");
    let got = parse(vec![
        version(
            ("amendment", "250"),
            Some(&uid(1, 1)),
            Some(problem("Asthma")),
        ),
        del,
    ])
    .unwrap();
    assert!(matches!(got[0], Change::Modify { .. }));
    assert!(matches!(got[1], Change::Delete { .. }));
}

fn refused(versions: Vec<Json>) -> OpenEhrError {
    parse(versions).expect_err("refused")
}

#[test]
fn bad_contributions_are_refused_naming_the_version() {
    // No versions, not a list, too many.
    assert!(matches!(
        parse(vec![]),
        Err(OpenEhrError::MissingMandatory { .. })
    ));
    assert!(matches!(
        parse_contribution(br#"{"versions": 3}"#),
        Err(OpenEhrError::WrongType { .. })
    ));
    assert!(matches!(
        parse_contribution(b"[1, 2]"),
        Err(OpenEhrError::WrongType { .. })
    ));
    assert!(matches!(
        parse_contribution(b"{"),
        Err(OpenEhrError::Json(_))
    ));
    let many =
        vec![version(("creation", "249"), None, Some(problem("x"))); MAX_CONTRIBUTION_VERSIONS + 1];
    assert!(matches!(parse(many), Err(OpenEhrError::TooComplex { .. })));
    let big = vec![b' '; MAX_CONTRIBUTION_BYTES + 1];
    assert!(matches!(
        parse_contribution(&big),
        Err(OpenEhrError::TooLarge { .. })
    ));
    let at = |e: OpenEhrError| match e {
        OpenEhrError::InVersion { index, error } => (index, *error),
        other => panic!("not in a version: {other:?}"),
    };
    let ok = version(("creation", "249"), None, Some(problem("Asthma")));
    // No change type; an unknown one.
    let mut v = ok.clone();
    v["commit_audit"] = json!({});
    let (i, e) = at(refused(vec![ok.clone(), v]));
    assert_eq!(i, 1);
    assert!(
        matches!(e, OpenEhrError::MissingMandatory { path } if path == "/commit_audit/change_type")
    );
    let (_, e) = at(refused(vec![version(
        ("synthesis", "252"),
        None,
        Some(problem("x")),
    )]));
    assert!(matches!(e, OpenEhrError::WrongType { .. }), "{e}");
    // A creation with a preceding version; a modification or delete without one.
    let (_, e) = at(refused(vec![version(
        ("creation", "249"),
        Some(&uid(1, 1)),
        Some(problem("x")),
    )]));
    assert!(matches!(e, OpenEhrError::WrongType { path, .. } if path == "/preceding_version_uid"));
    let (_, e) = at(refused(vec![version(
        ("modification", "251"),
        None,
        Some(problem("x")),
    )]));
    assert!(
        matches!(e, OpenEhrError::MissingMandatory { path } if path == "/preceding_version_uid")
    );
    let (_, e) = at(refused(vec![version(("deleted", "523"), None, None)]));
    assert!(matches!(e, OpenEhrError::MissingMandatory { .. }));
    // A preceding uid that is an object id or another system's.
    for bad in [
        "not-a-uid",
        "8f4e7a52-1111-8222-8333-444455556666",
        "8f4e7a52-1111-8222-8333-444455556666::ehrbase::1",
    ] {
        let (_, e) = at(refused(vec![version(
            ("modification", "251"),
            Some(bad),
            Some(problem("x")),
        )]));
        assert!(matches!(e, OpenEhrError::WrongType { .. }), "{bad}: {e}");
    }
    // No data; data that is a bad composition.
    let (_, e) = at(refused(vec![version(("creation", "249"), None, None)]));
    assert!(matches!(e, OpenEhrError::MissingMandatory { path } if path == "/data"));
    let mut c = problem("x");
    c["content"][0]["archetype_node_id"] = json!("openEHR-EHR-EVALUATION.alert.v0");
    let (i, e) = at(refused(vec![
        ok.clone(),
        ok.clone(),
        version(("creation", "249"), None, Some(c)),
    ]));
    assert_eq!(i, 2);
    assert!(matches!(e, OpenEhrError::WrongArchetype { .. }));
    // The same composition changed twice.
    let (i, _) = at(refused(vec![
        version(
            ("modification", "251"),
            Some(&uid(1, 1)),
            Some(problem("x")),
        ),
        version(("deleted", "523"), Some(&uid(1, 2)), None),
    ]));
    assert_eq!(i, 1);
}

#[test]
fn versions_carry_their_audit_lifecycle_and_contribution() {
    let audit = Audit {
        committer: Composer {
            name: Some("Dr Ada".into()),
            actor: "a-ada".into(),
        },
        time: "2026-12-01T09:00:00Z".into(),
        change: ChangeType::Modification,
    };
    let v = version_json(
        &uid(1, 2),
        Some(&uid(1, 1)),
        "c-uid",
        &audit,
        Some(problem("x")),
    );
    assert_eq!(v["uid"]["value"], uid(1, 2));
    assert_eq!(v["preceding_version_uid"]["value"], uid(1, 1));
    assert_eq!(v["contribution"]["id"]["value"], "c-uid");
    assert_eq!(
        v["commit_audit"]["change_type"]["defining_code"]["code_string"],
        "251"
    );
    assert_eq!(v["commit_audit"]["committer"]["name"], "Dr Ada");
    assert_eq!(v["lifecycle_state"]["value"], "complete");
    assert_eq!(v["data"]["_type"], "COMPOSITION");
    let d = version_json(
        &uid(1, 3),
        Some(&uid(1, 2)),
        "c",
        &Audit {
            change: ChangeType::Deleted,
            ..audit.clone()
        },
        None,
    );
    assert_eq!(d["lifecycle_state"]["defining_code"]["code_string"], "523");
    assert!(d.get("data").is_none());
    assert_ne!(
        contribution_uid(&EntryId([1; 32])),
        contribution_uid(&EntryId([2; 32]))
    );
    assert!(crate::openehr::is_uuid(&contribution_uid(&EntryId(
        [1; 32]
    ))));
}
