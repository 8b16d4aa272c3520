//! Extension schemas defined as data, at the gate (`docs/extensions.md`): who may define,
//! versions, validation at the entry's causal position, refusals that store nothing.

use cophr_protocol::access::Level;
use cophr_protocol::entry::EntryError;
use cophr_protocol::record::{AccessError, Rejection};
use cophr_protocol::schema::{DefinitionError, ExtensionSchema, SchemaError, EXAMPLES};
use cophr_protocol::testkit::{grant, key, Fixture};
use cophr_protocol::{Category, Payload, SignedEntry, Value};

fn example(name: &str) -> ExtensionSchema {
    let json = EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, j)| *j)
        .expect("a shipped example");
    ExtensionSchema::from_json(json).expect("a valid example")
}

fn wound_body(location: &str, wound_type: &str) -> Value {
    let json = serde_json::json!({
        "wound-type": wound_type,
        "location": location,
        "assessed": "2026-12-01T10:00:00Z",
    });
    Value::from_json(&json)
}

fn wound_cat() -> Category {
    example("wound-care").category
}

fn define(
    f: &mut Fixture,
    who: &cophr_protocol::Keypair,
    s: &ExtensionSchema,
) -> Result<(), Rejection> {
    f.write(who, Payload::DefineSchema(s.clone())).map(|_| ())
}

#[test]
fn once_defined_an_extensions_entries_must_validate_and_earlier_ones_stay() {
    let mut f = Fixture::new(1, "George");
    let george = f.patient.clone();
    // Before a definition, any non-empty map is accepted.
    let early = f
        .create(
            &george,
            wound_cat(),
            Value::from_json(&serde_json::json!({"free": "form"})),
        )
        .expect("free-form before a definition");
    define(&mut f, &george, &example("wound-care")).expect("the patient defines");
    let (_, now) = f.record.extension_schema(&wound_cat()).expect("in effect");
    assert_eq!(now.version, 1);
    f.create(
        &george,
        wound_cat(),
        wound_body("left heel", "pressure-ulcer"),
    )
    .expect("a valid body");
    let len = f.record.len();
    let err = f
        .create(&george, wound_cat(), wound_body("left heel", "bruise"))
        .unwrap_err();
    assert!(
        matches!(&err, Rejection::Body(SchemaError::BadCode { field, .. }) if field == "wound-type"),
        "{err}"
    );
    assert!(err.to_string().contains("wound-type"), "{err}");
    let err = f
        .create(
            &george,
            wound_cat(),
            Value::from_json(&serde_json::json!({"free": "form"})),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Rejection::Body(SchemaError::UnknownField { field, .. }) if field == "free")
    );
    assert_eq!(f.record.len(), len, "nothing stored on refusal");
    // The entry written before the definition is kept as it was.
    assert!(f.record.contains(&early));
    // An amend of it now must validate.
    let err = f
        .write(
            &george,
            Payload::Amend {
                target: early,
                body: Value::from_json(&serde_json::json!({"free": "changed"})),
            },
        )
        .unwrap_err();
    assert!(matches!(
        err,
        Rejection::Body(SchemaError::UnknownField { .. })
    ));
}

#[test]
fn versions_only_widen_and_an_incompatible_one_is_refused_precisely() {
    let mut f = Fixture::new(2, "George");
    let george = f.patient.clone();
    let v1 = example("wound-care");
    // Not version 1 first.
    let mut v2 = v1.clone();
    v2.version = 2;
    let err = define(&mut f, &george, &v2).unwrap_err();
    assert_eq!(
        err,
        Rejection::Definition(DefinitionError::VersionNotNext {
            category: v1.category.name().into(),
            given: 2,
            expected: 1
        })
    );
    define(&mut f, &george, &v1).unwrap();
    // The same version again.
    assert!(matches!(
        define(&mut f, &george, &v1),
        Err(Rejection::Definition(DefinitionError::VersionNotNext {
            expected: 2,
            ..
        }))
    ));
    // Incompatible: a code dropped. Nothing stored.
    let len = f.record.len();
    let mut bad = v2.clone();
    bad.fields[0].codes.retain(|c| c != "pressure-ulcer");
    let err = define(&mut f, &george, &bad).unwrap_err();
    assert_eq!(
        err.to_string(),
        "schema definition refused: ext:uk.nhs.tissue-viability/wound-care version 2 is \
         incompatible with version 1: field `wound-type` drops code `pressure-ulcer` (a new \
         version may only add optional fields, widen value sets, units and ranges, and relabel)"
    );
    assert_eq!(f.record.len(), len);
    // Compatible: a new optional field, a wider value set.
    let mut ok = v2.clone();
    ok.fields[0].codes.push("burn".into());
    let mut extra = ok.fields[13].clone();
    extra.name = "dressing-brand".into();
    ok.fields.push(extra);
    define(&mut f, &george, &ok).unwrap();
    let mut body = wound_body("sacrum", "burn");
    if let Value::Map(m) = &mut body {
        m.insert("dressing-brand".into(), Value::Text("Mepilex".into()));
    }
    f.create(&george, wound_cat(), body)
        .expect("valid under version 2");
    f.create(&george, wound_cat(), wound_body("heel", "pressure-ulcer"))
        .expect("what version 1 accepted, version 2 accepts");
    let versions = f.record.schema_versions(&wound_cat());
    assert_eq!(
        versions.iter().map(|(_, s)| s.version).collect::<Vec<_>>(),
        [1, 2]
    );
}

#[test]
fn a_core_category_cannot_be_defined() {
    let mut f = Fixture::new(3, "George");
    let george = f.patient.clone();
    let mut s = example("respect");
    s.category = Category::Allergies;
    let len = f.record.len();
    let err = define(&mut f, &george, &s).unwrap_err();
    assert_eq!(
        err,
        Rejection::Malformed(EntryError::Definition(DefinitionError::NotExtension(
            "allergies".into()
        )))
    );
    assert_eq!(f.record.len(), len);
    // Nor does such an entry decode, wherever it comes from.
    let e = f
        .record
        .next_entry(&george.actor(), Payload::DefineSchema(s), None, f.now, None);
    assert!(SignedEntry::decode(e.sign(&george).bytes()).is_err());
}

#[test]
fn who_may_define_the_patient_their_device_or_a_grantee_with_write_on_it() {
    let mut f = Fixture::new(4, "George");
    let george = f.patient.clone();
    let phone = key(4, "phone");
    f.write(
        &george,
        Payload::AddDevice {
            device: phone.actor(),
            label: "phone".into(),
        },
    )
    .unwrap();
    let nurse = key(4, "home-care");
    let viewer = key(4, "viewer");
    let other = key(4, "other");
    let wound = wound_cat();
    let blood = example("blood-test-request");
    f.grant(grant(
        &nurse,
        Level::Write,
        &[wound.clone(), blood.category.clone()],
        false,
        false,
    ));
    f.grant(grant(
        &viewer,
        Level::View,
        std::slice::from_ref(&wound),
        false,
        false,
    ));
    f.grant(grant(
        &other,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    let len = f.record.len();
    let err = define(&mut f, &viewer, &example("wound-care")).unwrap_err();
    assert!(
        matches!(
            &err,
            Rejection::Access(AccessError::Level {
                needed: Level::Write,
                ..
            })
        ),
        "{err}"
    );
    let err = define(&mut f, &other, &example("wound-care")).unwrap_err();
    assert!(
        matches!(&err, Rejection::Access(AccessError::Scope(c)) if *c == wound),
        "{err}"
    );
    let stranger = key(4, "stranger");
    assert!(matches!(
        define(&mut f, &stranger, &example("wound-care")),
        Err(Rejection::Access(_))
    ));
    assert_eq!(f.record.len(), len, "nothing stored");
    define(&mut f, &nurse, &example("wound-care")).expect("write on the extension");
    define(&mut f, &nurse, &blood).expect("write on the extension");
    define(&mut f, &phone, &example("respect")).expect("the patient's device");
    assert_eq!(f.record.extension_schemas().len(), 3);
}

#[test]
fn an_entry_is_checked_against_the_schema_in_its_causal_past() {
    let mut f = Fixture::new(5, "George");
    let george = f.patient.clone();
    let nurse = key(5, "home-care");
    f.grant(grant(&nurse, Level::Write, &[wound_cat()], false, false));
    // The nurse's replica, before the definition.
    let nurse_view = f.record.clone();
    define(&mut f, &george, &example("wound-care")).unwrap();
    // Written concurrently (the definition not in its past): free-form, kept.
    let free = Value::from_json(&serde_json::json!({"note": "red, 3 cm"}));
    let concurrent = nurse_view
        .prepare_as(
            &nurse,
            Payload::Create {
                category: wound_cat(),
                body: free.clone(),
            },
            f.now,
            None,
        )
        .expect("valid where it was written");
    f.record
        .apply(concurrent)
        .expect("the definition is not in its causal past");
    // Written after seeing it: refused.
    assert!(matches!(
        f.create(&nurse, wound_cat(), free),
        Err(Rejection::Body(SchemaError::UnknownField { .. }))
    ));
    // A past state before the definition has none.
    let first = f.record.heads();
    assert!(f
        .record
        .at_heads(&first)
        .extension_schema(&wound_cat())
        .is_some());
    assert!(f
        .record
        .at_time(f.now - 100_000)
        .extension_schema(&wound_cat())
        .is_none());
}
