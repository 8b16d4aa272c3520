//! Extension schemas: parsing, bounds, validation through the core code path, and version
//! compatibility (a property test: a compatible next version never refuses a body the
//! version before accepts).

use proptest::prelude::*;

use super::*;
use crate::schema::{SchemaError, EXAMPLES};
use crate::value::Value;

fn wound() -> ExtensionSchema {
    ExtensionSchema::from_json(EXAMPLES[1].1).expect("the wound-care example is valid")
}

fn body(pairs: &[(&str, Value)]) -> Value {
    Value::Map(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn qty(x: f64, u: &str) -> Value {
    body(&[("value", Value::Float(x)), ("unit", text(u))])
}

fn minimal(fields: &str) -> String {
    format!(
        r#"{{"category": "ext:test.ns/thing", "version": 1, "title": "Thing", "fields": [{fields}]}}"#
    )
}

#[test]
fn every_shipped_example_parses_and_round_trips() {
    for (name, json) in EXAMPLES {
        let s = ExtensionSchema::from_json(json).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(s.category.is_extension(), "{name}");
        assert_eq!(s.version, 1);
        assert_eq!(ExtensionSchema::from_json(&s.to_json()).as_ref(), Ok(&s));
    }
}

#[test]
fn a_body_is_checked_by_the_core_code_path_naming_the_field() {
    let s = wound();
    let good = body(&[
        ("wound-type", text("pressure-ulcer")),
        ("location", text("left heel")),
        ("length", qty(3.5, "cm")),
        ("pain-score", Value::Int(4)),
        ("assessed", text("2026-12-01T10:00:00Z")),
    ]);
    assert_eq!(s.validate(&good), Ok(()));
    let mut bad_code = good.clone();
    if let Value::Map(m) = &mut bad_code {
        m.insert("wound-type".into(), text("bruise"));
    }
    assert!(
        matches!(s.validate(&bad_code), Err(SchemaError::BadCode { field, .. }) if field == "wound-type")
    );
    let mut missing = good.clone();
    if let Value::Map(m) = &mut missing {
        m.remove("location");
    }
    assert!(
        matches!(s.validate(&missing), Err(SchemaError::MissingField { field, .. }) if field == "location")
    );
    let mut unknown = good.clone();
    if let Value::Map(m) = &mut unknown {
        m.insert("colour".into(), text("red"));
    }
    assert!(
        matches!(s.validate(&unknown), Err(SchemaError::UnknownField { field, .. }) if field == "colour")
    );
    let mut out = good.clone();
    if let Value::Map(m) = &mut out {
        m.insert("pain-score".into(), Value::Int(11));
    }
    assert!(
        matches!(s.validate(&out), Err(SchemaError::OutOfRange { field, .. }) if field == "pain-score")
    );
    let mut unit = good;
    if let Value::Map(m) = &mut unit {
        m.insert("length".into(), qty(3.0, "in"));
    }
    assert!(
        matches!(s.validate(&unit), Err(SchemaError::BadUnit { field, .. }) if field == "length")
    );
    assert!(matches!(
        s.validate(&body(&[])),
        Err(SchemaError::Empty { .. })
    ));
}

#[test]
fn malformed_definitions_are_refused_precisely() {
    let f = r#"{"name": "a", "title": "A", "type": "text"}"#;
    assert!(ExtensionSchema::from_json(&minimal(f)).is_ok());
    type Expect = fn(&DefinitionError) -> bool;
    let cases: Vec<(String, Expect)> = vec![
        ("not json".into(), |e| matches!(e, DefinitionError::Malformed(_))),
        (
            r#"{"category": "allergies", "version": 1, "title": "x", "fields": []}"#.into(),
            |e| matches!(e, DefinitionError::NotExtension(c) if c == "allergies"),
        ),
        (
            minimal(r#"{"name": "a", "title": "A", "type": "text", "access": "all"}"#),
            |e| matches!(e, DefinitionError::Access(k) if k == "fields[].access"),
        ),
        (
            r#"{"category": "ext:a/b", "version": 1, "title": "x", "grants": [], "fields": []}"#.into(),
            |e| matches!(e, DefinitionError::Access(k) if k == "grants"),
        ),
        (minimal(""), |e| matches!(e, DefinitionError::FieldCount(0))),
        (
            minimal(r#"{"name": "Bad Name", "title": "A", "type": "text"}"#),
            |e| matches!(e, DefinitionError::FieldName(_)),
        ),
        (
            minimal(&format!(r#"{{"name": "{}", "title": "A", "type": "text"}}"#, "a".repeat(MAX_FIELD_NAME + 1))),
            |e| matches!(e, DefinitionError::FieldName(_)),
        ),
        (
            minimal(&format!(r#"{{"name": "{}", "title": "A", "type": "text"}}"#, "a".repeat(MAX_FIELD_NAME))),
            |_| false,
        ),
        (
            minimal(r#"{"name": "a", "title": "A", "type": "text"}, {"name": "a", "title": "B", "type": "bool"}"#),
            |e| matches!(e, DefinitionError::DuplicateField(f) if f == "a"),
        ),
        (
            minimal(r#"{"name": "a", "title": "A", "type": "code"}"#),
            |e| matches!(e, DefinitionError::Field { field, .. } if field == "a"),
        ),
        (
            minimal(r#"{"name": "a", "title": "A", "type": "text", "codes": ["x"]}"#),
            |e| matches!(e, DefinitionError::Field { field, .. } if field == "a"),
        ),
        (
            minimal(r#"{"name": "a", "title": "A", "type": "quantity"}"#),
            |e| matches!(e, DefinitionError::Field { field, .. } if field == "a"),
        ),
        (
            minimal(r#"{"name": "a", "title": "A", "type": "code", "codes": ["x", "x"]}"#),
            |e| matches!(e, DefinitionError::Field { why, .. } if why.contains("twice")),
        ),
        (
            minimal(r#"{"name": "a", "title": "A", "type": "integer", "min": 5, "max": 1}"#),
            |e| matches!(e, DefinitionError::Field { .. }),
        ),
        (
            minimal(r#"{"name": "a", "title": "A", "type": "text", "min": 1}"#),
            |e| matches!(e, DefinitionError::Field { .. }),
        ),
        (
            minimal(r#"{"name": "a", "title": "A", "type": "blob"}"#),
            |e| matches!(e, DefinitionError::Malformed(_)),
        ),
        (
            minimal(r#"{"name": "a", "title": "", "type": "text"}"#),
            |e| matches!(e, DefinitionError::Text { .. }),
        ),
        (
            minimal(r#"{"name": "a", "title": "A", "type": "text", "codes": [["deep"]]}"#),
            |e| matches!(e, DefinitionError::TooDeep),
        ),
        (
            r#"{"category": "ext:a/b", "version": 0, "title": "x", "fields": [{"name": "a", "title": "A", "type": "text"}]}"#.into(),
            |e| matches!(e, DefinitionError::VersionZero),
        ),
        (
            r#"{"category": "ext:a/b", "version": 1, "title": "x", "summary": "zz", "fields": [{"name": "a", "title": "A", "type": "text"}]}"#.into(),
            |e| matches!(e, DefinitionError::Summary(_)),
        ),
    ];
    for (json, expected) in cases {
        match ExtensionSchema::from_json(&json) {
            Ok(_) if json.contains(&"a".repeat(MAX_FIELD_NAME)) => {}
            Ok(_) => panic!("accepted: {json}"),
            Err(e) => assert!(expected(&e), "{json}: {e}"),
        }
    }
}

#[test]
fn counts_and_sizes_are_bounded_at_their_limits() {
    let field = |i: usize| format!(r#"{{"name": "f{i}", "title": "F", "type": "bool"}}"#);
    let at = (0..MAX_SCHEMA_FIELDS)
        .map(field)
        .collect::<Vec<_>>()
        .join(",");
    assert!(ExtensionSchema::from_json(&minimal(&at)).is_ok());
    let over = (0..=MAX_SCHEMA_FIELDS)
        .map(field)
        .collect::<Vec<_>>()
        .join(",");
    assert_eq!(
        ExtensionSchema::from_json(&minimal(&over)),
        Err(DefinitionError::FieldCount(MAX_SCHEMA_FIELDS + 1))
    );
    let codes = |n: usize| {
        (0..n)
            .map(|i| format!("\"c{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    let code_field = |n: usize| {
        minimal(&format!(
            r#"{{"name": "a", "title": "A", "type": "code", "codes": [{}]}}"#,
            codes(n)
        ))
    };
    assert!(ExtensionSchema::from_json(&code_field(MAX_CODES)).is_ok());
    assert!(ExtensionSchema::from_json(&code_field(MAX_CODES + 1)).is_err());
    let long_code = minimal(&format!(
        r#"{{"name": "a", "title": "A", "type": "code", "codes": ["{}"]}}"#,
        "x".repeat(MAX_CODE + 1)
    ));
    assert!(ExtensionSchema::from_json(&long_code).is_err());
    let units = (0..=MAX_UNITS)
        .map(|i| format!("\"u{i}\""))
        .collect::<Vec<_>>()
        .join(",");
    let many_units = minimal(&format!(
        r#"{{"name": "a", "title": "A", "type": "quantity", "units": [{units}]}}"#
    ));
    assert!(ExtensionSchema::from_json(&many_units).is_err());
    let long_title = minimal(&format!(
        r#"{{"name": "a", "title": "{}", "type": "text"}}"#,
        "t".repeat(MAX_LABEL + 1)
    ));
    assert!(matches!(
        ExtensionSchema::from_json(&long_title),
        Err(DefinitionError::Text { .. })
    ));
    let huge = " ".repeat(MAX_DEFINITION_BYTES + 1);
    assert_eq!(
        ExtensionSchema::from_json(&huge),
        Err(DefinitionError::TooLarge(MAX_DEFINITION_BYTES + 1))
    );
}

fn next(s: &ExtensionSchema, change: impl FnOnce(&mut ExtensionSchema)) -> ExtensionSchema {
    let mut n = s.clone();
    n.version += 1;
    change(&mut n);
    n
}

#[test]
fn a_new_version_may_only_widen() {
    let v1 = wound();
    let ok = next(&v1, |n| {
        n.fields.push(ExtensionField {
            name: "tissue-viability-referral".into(),
            title: "Referred to tissue viability".into(),
            ty: ExtensionType::Bool,
            required: false,
            codes: vec![],
            units: vec![],
            min: None,
            max: None,
            help: String::new(),
            node: None,
        });
        n.fields[0].codes.push("burn".into());
        n.fields[0].title = "Type of wound".into();
        n.fields[3].units.push("in".into());
        n.fields[3].max = Some(1000.0);
        n.fields[1].required = false;
    });
    assert_eq!(ok.compatible_with(&v1), Ok(()));
    let why = |n: &ExtensionSchema| match n.compatible_with(&v1) {
        Err(DefinitionError::Incompatible { why, .. }) => why,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        why(&next(&v1, |n| {
            n.fields.remove(1);
        })),
        "field `location` is removed"
    );
    assert_eq!(
        why(&next(&v1, |n| n.fields[12].ty = ExtensionType::Decimal)),
        "field `pain-score` changes type from integer to decimal"
    );
    assert_eq!(
        why(&next(&v1, |n| n.fields[12].required = true)),
        "field `pain-score` becomes required"
    );
    assert_eq!(
        why(&next(&v1, |n| {
            n.fields[7].codes.retain(|c| c != "high");
        })),
        "field `exudate-level` drops code `high`"
    );
    assert_eq!(
        why(&next(&v1, |n| {
            n.fields[3].units = vec!["cm".into()];
        })),
        "field `length` drops unit `mm`"
    );
    assert_eq!(
        why(&next(&v1, |n| n.fields[12].max = Some(5.0))),
        "field `pain-score` narrows its range"
    );
    assert_eq!(
        why(&next(&v1, |n| n.fields[13].min = Some(1.0))),
        "field `dressing` narrows its range"
    );
    let mut required_new = ok.clone();
    if let Some(f) = required_new.fields.last_mut() {
        f.required = true;
    }
    assert_eq!(
        required_new.compatible_with(&v1),
        Err(DefinitionError::Incompatible {
            category: v1.category.name().to_owned(),
            version: 2,
            previous: 1,
            why: "new field `tissue-viability-referral` is required".into(),
        })
    );
    let mut skip = ok;
    skip.version = 3;
    assert_eq!(
        skip.compatible_with(&v1),
        Err(DefinitionError::VersionNotNext {
            category: v1.category.name().to_owned(),
            given: 3,
            expected: 2,
        })
    );
}

// --- Property: a compatible next version never refuses a body the old one accepts. ---

fn arb_field(i: usize) -> impl Strategy<Value = ExtensionField> {
    let kinds = prop_oneof![
        Just(ExtensionType::Text),
        Just(ExtensionType::LongText),
        Just(ExtensionType::Integer),
        Just(ExtensionType::Decimal),
        Just(ExtensionType::Bool),
        Just(ExtensionType::Date),
        Just(ExtensionType::DateTime),
        Just(ExtensionType::Code),
        Just(ExtensionType::Quantity),
        Just(ExtensionType::TextList),
    ];
    (
        kinds,
        any::<bool>(),
        1usize..5,
        proptest::option::of(-50i32..50),
        proptest::option::of(0i32..100),
    )
        .prop_map(move |(ty, required, n, min, span)| {
            let numeric = ty.numeric();
            let min = min.filter(|_| numeric).map(f64::from);
            let max = span
                .filter(|_| numeric)
                .map(|s| min.unwrap_or(0.0) + f64::from(s));
            ExtensionField {
                name: format!("f{i}"),
                title: format!("Field {i}"),
                ty,
                required,
                codes: if ty == ExtensionType::Code {
                    (0..n).map(|c| format!("c{c}")).collect()
                } else {
                    vec![]
                },
                units: if ty == ExtensionType::Quantity {
                    (0..n).map(|u| format!("u{u}")).collect()
                } else {
                    vec![]
                },
                min,
                max,
                help: String::new(),
                node: None,
            }
        })
}

fn arb_schema() -> impl Strategy<Value = ExtensionSchema> {
    (1usize..6)
        .prop_flat_map(|n| (0..n).map(arb_field).collect::<Vec<_>>())
        .prop_map(|fields| ExtensionSchema {
            category: "ext:test.prop/thing".parse().expect("a valid extension"),
            version: 1,
            title: "Thing".into(),
            description: String::new(),
            summary: None,
            fields,
            template: None,
        })
}

/// A value for a field: sometimes valid, sometimes not (the property is about bodies the
/// old version accepts, whichever they are).
fn arb_value(f: &ExtensionField) -> BoxedStrategy<Value> {
    let t = |s: &'static str| Just(Value::Text(s.into()));
    match f.ty {
        ExtensionType::Text | ExtensionType::LongText => {
            prop_oneof![t("hello"), t(""), Just(Value::Int(3))].boxed()
        }
        ExtensionType::Integer => (-120i64..120).prop_map(Value::Int).boxed(),
        ExtensionType::Decimal => (-120.0f64..120.0).prop_map(Value::Float).boxed(),
        ExtensionType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        ExtensionType::Date => prop_oneof![t("2026-02-03"), t("2026-02-30"), t("2019")].boxed(),
        ExtensionType::DateTime => prop_oneof![t("2026-02-03T10:00:00Z"), t("2026-02-03")].boxed(),
        ExtensionType::Code => (0usize..7)
            .prop_map(|c| Value::Text(format!("c{c}")))
            .boxed(),
        ExtensionType::Quantity => (-120.0f64..120.0, 0usize..7)
            .prop_map(|(x, u)| qty(x, &format!("u{u}")))
            .boxed(),
        ExtensionType::TextList => prop_oneof![
            Just(Value::List(vec![text("a"), text("b")])),
            Just(Value::List(vec![])),
        ]
        .boxed(),
    }
}

fn arb_body(s: &ExtensionSchema) -> BoxedStrategy<Value> {
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = s
        .fields
        .iter()
        .map(|f| {
            let name = f.name.clone();
            proptest::option::of(arb_value(f).prop_map(move |v| (name.clone(), v))).boxed()
        })
        .collect();
    fields
        .prop_map(|pairs| Value::Map(pairs.into_iter().flatten().collect()))
        .boxed()
}

/// A compatible next version: each change one the rules allow.
fn arb_next(old: ExtensionSchema) -> impl Strategy<Value = ExtensionSchema> {
    let n = old.fields.len();
    (proptest::collection::vec((0..n, 0u8..6), 0..6), 0usize..3).prop_map(
        move |(changes, added)| {
            let mut s = old.clone();
            s.version += 1;
            for (i, what) in changes {
                let f = &mut s.fields[i];
                match what {
                    0 if f.ty == ExtensionType::Code => f.codes.push(format!("c{}", f.codes.len())),
                    1 if f.ty == ExtensionType::Quantity => {
                        f.units.push(format!("u{}", f.units.len()))
                    }
                    2 => f.required = false,
                    3 => f.min = f.min.map(|m| m - 10.0),
                    4 => f.max = None,
                    5 => f.title = format!("{} (renamed)", f.title),
                    _ => {}
                }
            }
            for a in 0..added {
                s.fields.push(ExtensionField {
                    name: format!("new{a}"),
                    title: "New".into(),
                    ty: ExtensionType::Text,
                    required: false,
                    codes: vec![],
                    units: vec![],
                    min: None,
                    max: None,
                    help: String::new(),
                    node: None,
                });
            }
            s
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, rng_algorithm: proptest::test_runner::RngAlgorithm::ChaCha, ..ProptestConfig::default() })]

    #[test]
    fn a_compatible_version_never_invalidates_a_body_the_old_one_accepts(
        (old, new, bodies) in arb_schema().prop_flat_map(|old| {
            let bodies = proptest::collection::vec(arb_body(&old), 1..8);
            (Just(old.clone()), arb_next(old), bodies)
        })
    ) {
        prop_assert_eq!(old.check(), Ok(()));
        prop_assert_eq!(new.check(), Ok(()));
        prop_assert_eq!(new.compatible_with(&old), Ok(()));
        for b in bodies {
            if old.validate(&b).is_ok() {
                prop_assert_eq!(new.validate(&b), Ok(()), "body {:?}", b);
            }
        }
    }
}

#[test]
fn reordered_fields_keep_their_archetype_node_across_versions() {
    let v1 = wound();
    // Definitions written before nodes existed: the position gives the node.
    assert_eq!(v1.node_of(0), 1001);
    assert_eq!(v1.node_of(3), 1004);
    // Version 2 moves `length` first and adds a field in the middle.
    let mut v2 = next(&v1, |n| {
        let length = n.fields.remove(3);
        n.fields.insert(0, length);
        n.fields.insert(
            2,
            ExtensionField {
                name: "tunnelling".into(),
                title: "Tunnelling".into(),
                ty: ExtensionType::Bool,
                required: false,
                codes: vec![],
                units: vec![],
                min: None,
                max: None,
                help: String::new(),
                node: None,
            },
        );
    });
    // Without its nodes, positions would move `wound-type` from at1001 to at1002 (and
    // `length` to at1001): refused, naming the field.
    let e = v2
        .compatible_with(&v1)
        .expect_err("moves nodes")
        .to_string();
    assert!(
        e.contains("field `wound-type` changes its archetype node from at1001 to at1002"),
        "{e}"
    );
    // `assign_nodes` (what `schema define` and the API do) keeps each field's node and
    // gives the new one the next free node.
    v2.assign_nodes(Some(&v1));
    assert_eq!(v2.compatible_with(&v1), Ok(()));
    assert_eq!(v2.check(), Ok(()));
    let node = |s: &ExtensionSchema, name: &str| {
        s.node_of(s.fields.iter().position(|f| f.name == name).expect(name))
    };
    for f in &v1.fields {
        assert_eq!(node(&v2, &f.name), node(&v1, &f.name), "{}", f.name);
    }
    let last = u32::try_from(v1.fields.len()).expect("small") + 1000;
    assert_eq!(node(&v2, "tunnelling"), last + 1);
    // A version 1 gets the positional nodes.
    let mut fresh = v1.clone();
    fresh.assign_nodes(None);
    assert_eq!(
        (0..fresh.fields.len())
            .map(|i| fresh.node_of(i))
            .collect::<Vec<_>>(),
        (0..v1.fields.len())
            .map(|i| v1.node_of(i))
            .collect::<Vec<_>>()
    );
    // Two fields on one node, or a node out of range, are refused.
    let mut twice = v2.clone();
    twice.fields[1].node = twice.fields[0].node;
    assert!(matches!(twice.check(), Err(DefinitionError::Field { .. })));
    twice.fields[1].node = Some(MAX_NODE + 1);
    assert!(matches!(twice.check(), Err(DefinitionError::Field { .. })));
}
