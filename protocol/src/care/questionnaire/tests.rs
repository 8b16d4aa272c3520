//! Questionnaires: definitions validated, responses scored and checked by the definition's
//! rule, and the gate refusing a response that breaks it (nothing stored).

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::access::Level;
use crate::category::Category;
use crate::entry::{Payload, Timestamp, Verified};
use crate::ids::EntryId;
use crate::keys::Keypair;
use crate::record::{Record, Rejection};
use crate::schema::body_from_json;
use crate::testkit::{grant, key, Fixture};

fn phq9() -> Definition {
    Definition::parse(built_in("phq-9").unwrap()).expect("PHQ-9 is valid")
}

fn gad7() -> Definition {
    Definition::parse(built_in("GAD-7").unwrap()).expect("GAD-7 is valid")
}

/// Answers to the scored items of `def`, each item `i` given the option of ordinal `v[i]`.
fn answers(def: &Definition, v: &[i64]) -> Vec<(String, Value)> {
    def.items
        .iter()
        .filter(|i| i.options.iter().any(|o| o.ordinal.is_some()))
        .zip(v)
        .map(|(i, n)| {
            let o = i.options.iter().find(|o| o.ordinal == Some(*n)).unwrap();
            (i.link_id.clone(), Value::Text(o.code.clone()))
        })
        .collect()
}

fn list(a: &[(String, Value)]) -> Value {
    Value::from_json(&json!(a
        .iter()
        .map(|(q, v)| json!({"question": q, "answer": v.to_json()}))
        .collect::<Vec<_>>()))
}

fn def_json(items: serde_json::Value) -> String {
    json!({"resourceType": "Questionnaire", "title": "Test", "status": "active", "item": items})
        .to_string()
}

#[test]
fn the_built_in_instruments_parse_with_their_bands() {
    let p = phq9();
    assert_eq!(p.items.len(), 10);
    assert_eq!(
        p.items
            .iter()
            .filter(|i| i.required && i.options.iter().all(|o| o.ordinal.is_some()))
            .count(),
        9
    );
    let bands: Vec<_> = p
        .scoring
        .as_ref()
        .unwrap()
        .bands
        .iter()
        .map(|b| (b.low, b.high, b.label.as_str()))
        .collect();
    assert_eq!(
        bands,
        [
            (0, 4, "minimal"),
            (5, 9, "mild"),
            (10, 14, "moderate"),
            (15, 19, "moderately severe"),
            (20, 27, "severe")
        ]
    );
    let g = gad7();
    assert_eq!(g.items.len(), 7);
    let bands: Vec<_> = g
        .scoring
        .as_ref()
        .unwrap()
        .bands
        .iter()
        .map(|b| (b.low, b.high))
        .collect();
    assert_eq!(bands, [(0, 4), (5, 9), (10, 14), (15, 21)]);
    assert!(built_in("eq-5d").is_none());
}

#[test]
fn phq9_scores_the_sum_and_reads_the_band_at_every_boundary() {
    let p = phq9();
    for (total, band) in [
        (0, "minimal"),
        (4, "minimal"),
        (5, "mild"),
        (9, "mild"),
        (10, "moderate"),
        (14, "moderate"),
        (15, "moderately severe"),
        (19, "moderately severe"),
        (20, "severe"),
        (27, "severe"),
    ] {
        // Spread the total over the nine items, at most 3 each.
        let v: Vec<i64> = (0..9).map(|i| (total - 3 * i).clamp(0, 3)).collect();
        assert_eq!(v.iter().sum::<i64>(), total);
        let s = p.score(&list(&answers(&p, &v))).unwrap();
        assert_eq!(s.score, Some(total));
        assert_eq!(s.band.as_deref(), Some(band), "{total}");
    }
    // The unscored tenth question adds nothing.
    let mut a = answers(&p, &[3; 9]);
    a.push(("phq9-10".into(), Value::Text("extremely".into())));
    assert_eq!(p.score(&list(&a)).unwrap().score, Some(27));
}

proptest! {
    #[test]
    fn a_score_is_the_sum_of_the_ordinals_chosen_and_its_band_contains_it(
        v in proptest::collection::vec(0i64..=3, 9),
        gad in any::<bool>(),
    ) {
        let def = if gad { gad7() } else { phq9() };
        let n = if gad { 7 } else { 9 };
        let a = answers(&def, &v[..n]);
        let s = def.score(&list(&a)).unwrap();
        let total: i64 = v[..n].iter().sum();
        prop_assert_eq!(s.score, Some(total));
        let band = def.scoring.as_ref().unwrap().bands.iter().find(|b| b.low <= total && total <= b.high).unwrap();
        prop_assert_eq!(s.band.as_deref(), Some(band.label.as_str()));
        // What the writer builds passes the check; any other stated score does not.
        let entry = EntryId([7; 32]);
        let body = Value::from_json(&response_json(&def, &entry, &a, "2026-12-01T10:00:00Z", None).unwrap());
        prop_assert_eq!(check_response(&def, &body).unwrap(), s);
        let mut wrong = body.clone();
        if let Value::Map(m) = &mut wrong { m.insert("score".into(), Value::Int(total + 1)); }
        let is_mismatch = matches!(check_response(&def, &wrong), Err(QuestionnaireError::ScoreMismatch { .. }));
        prop_assert!(is_mismatch);
    }
}

#[test]
fn each_broken_answer_is_refused_with_its_own_error() {
    let p = phq9();
    let good = answers(&p, &[1; 9]);
    let with = |q: &str, v: Value| {
        let mut a = good.clone();
        a.retain(|(k, _)| k != q);
        a.push((q.to_owned(), v));
        p.score(&list(&a)).unwrap_err()
    };
    assert_eq!(
        with("phq9-99", Value::Text("LA6568-5".into())),
        QuestionnaireError::UnknownLinkId("phq9-99".into())
    );
    assert!(matches!(
        with("phq9-1", Value::Int(2)),
        QuestionnaireError::WrongType { link_id, .. } if link_id == "phq9-1"
    ));
    assert!(matches!(
        with("phq9-1", Value::Text("LA9999-9".into())),
        QuestionnaireError::NotAnOption { link_id, answer, .. } if link_id == "phq9-1" && answer == "LA9999-9"
    ));
    let mut missing = good.clone();
    missing.retain(|(k, _)| k != "phq9-9");
    assert_eq!(
        p.score(&list(&missing)).unwrap_err(),
        QuestionnaireError::MissingRequired("phq9-9".into())
    );
    let mut twice = good.clone();
    twice.push(("phq9-2".into(), Value::Text("LA6568-5".into())));
    assert_eq!(
        p.score(&list(&twice)).unwrap_err(),
        QuestionnaireError::DuplicateAnswer("phq9-2".into())
    );
    // Types other than choice.
    let d = Definition::parse(&def_json(json!([
        {"linkId": "n", "type": "integer", "required": true},
        {"linkId": "s", "type": "string"},
        {"linkId": "b", "type": "boolean"},
        {"linkId": "info", "type": "display", "text": "Read this"}
    ])))
    .unwrap();
    let ok = [
        ("n".to_owned(), Value::Int(3)),
        ("s".into(), Value::Text("x".into())),
        ("b".into(), Value::Bool(true)),
    ];
    assert_eq!(d.score(&list(&ok)).unwrap(), Scored::default());
    for (q, v) in [
        ("n", Value::Text("3".into())),
        ("s", Value::Int(1)),
        ("b", Value::Text("yes".into())),
        ("info", Value::Text("x".into())),
    ] {
        let mut a = ok.to_vec();
        a.retain(|(k, _)| k != q);
        a.push((q.into(), v));
        assert!(
            matches!(d.score(&list(&a)), Err(QuestionnaireError::WrongType { link_id, .. }) if link_id == q),
            "{q}"
        );
    }
    assert_eq!(d.answer_from_text("b", "no").unwrap(), Value::Bool(false));
    assert_eq!(
        p.answer_from_text("phq9-1", "2").unwrap(),
        Value::Text("LA6570-1".into())
    );
    assert_eq!(
        p.answer_from_text("phq9-1", "several days").unwrap(),
        Value::Text("LA6569-3".into())
    );
    assert!(matches!(
        p.answer_from_text("phq9-1", "7"),
        Err(QuestionnaireError::NotAnOption { .. })
    ));
}

#[test]
fn a_stated_score_or_band_not_the_rules_is_refused() {
    let p = phq9();
    let a = answers(&p, &[2; 9]);
    let entry = EntryId([1; 32]);
    let body = response_json(&p, &entry, &a, "2026-12-01T10:00:00Z", None).unwrap();
    assert_eq!(body["score"], 18);
    assert_eq!(body["band"], "moderately severe");
    let set = |k: &str, v: serde_json::Value| {
        let mut b = body.clone();
        b[k] = v;
        check_response(&p, &Value::from_json(&b))
    };
    assert_eq!(
        set("score", json!(17)),
        Err(QuestionnaireError::ScoreMismatch {
            stated: Some(17),
            computed: Some(18)
        })
    );
    assert_eq!(
        set("band", json!("mild")),
        Err(QuestionnaireError::BandMismatch {
            stated: Some("mild".into()),
            computed: Some("moderately severe".into())
        })
    );
    let mut none = body.clone();
    none.as_object_mut().unwrap().remove("score");
    assert_eq!(
        check_response(&p, &Value::from_json(&none)),
        Err(QuestionnaireError::ScoreMismatch {
            stated: None,
            computed: Some(18)
        })
    );
}

#[test]
fn malformed_definitions_are_refused_precisely() {
    let parse = |s: &str| Definition::parse(s).unwrap_err();
    assert!(matches!(
        parse("{not json"),
        QuestionnaireError::Malformed(_)
    ));
    assert!(matches!(parse("[]"), QuestionnaireError::Malformed(_)));
    assert!(matches!(
        parse(&json!({"resourceType": "Patient", "title": "x", "item": []}).to_string()),
        QuestionnaireError::Malformed(m) if m.contains("resourceType")
    ));
    assert!(matches!(
        parse(&def_json(json!([]))),
        QuestionnaireError::Malformed(_)
    ));
    assert_eq!(
        parse(&def_json(
            json!([{"linkId": "a", "type": "string"}, {"linkId": "a", "type": "integer"}])
        )),
        QuestionnaireError::DuplicateLinkId("a".into())
    );
    assert!(matches!(
        parse(&def_json(json!([{"linkId": "a", "type": "attachment"}]))),
        QuestionnaireError::UnsupportedType { link_id, ty } if link_id == "a" && ty == "attachment"
    ));
    assert!(matches!(
        parse(&def_json(json!([{"linkId": "a", "type": "choice"}]))),
        QuestionnaireError::Malformed(_)
    ));
    assert!(matches!(
        parse(&def_json(json!([{"type": "string"}]))),
        QuestionnaireError::Malformed(m) if m.contains("linkId")
    ));
    assert!(matches!(
        parse(&def_json(
            json!([{"linkId": "g", "type": "group", "item": [{"linkId": "x", "type": "string"}]}])
        )),
        QuestionnaireError::Malformed(_) | QuestionnaireError::UnsupportedType { .. }
    ));
    // Bounds.
    let many: Vec<_> = (0..=MAX_ITEMS)
        .map(|i| json!({"linkId": format!("q{i}"), "type": "string"}))
        .collect();
    assert_eq!(
        parse(&def_json(json!(many))),
        QuestionnaireError::TooMany {
            what: "items",
            got: MAX_ITEMS + 1,
            max: MAX_ITEMS
        }
    );
    let opts: Vec<_> = (0..=MAX_OPTIONS)
        .map(|i| json!({"valueCoding": {"code": format!("c{i}")}}))
        .collect();
    assert!(matches!(
        parse(&def_json(
            json!([{"linkId": "a", "type": "choice", "answerOption": opts}])
        )),
        QuestionnaireError::TooMany {
            max: MAX_OPTIONS,
            ..
        }
    ));
    let big = format!(
        "{}{}",
        def_json(json!([{"linkId": "a", "type": "string"}])),
        " ".repeat(MAX_DEFINITION_BYTES)
    );
    assert!(matches!(
        parse(&big),
        QuestionnaireError::TooLarge {
            max: MAX_DEFINITION_BYTES,
            ..
        }
    ));
    assert!(matches!(
        parse(&def_json(
            json!([{"linkId": "x".repeat(MAX_LINK_ID + 1), "type": "string"}])
        )),
        QuestionnaireError::Malformed(_)
    ));
    // A scoring rule with overlapping bands, or an unknown method.
    let mut phq: serde_json::Value = serde_json::from_str(built_in("phq-9").unwrap()).unwrap();
    phq["extension"][0]["extension"][2]["extension"][0]["valueInteger"] = json!(3);
    assert!(matches!(
        Definition::from_json(&phq),
        Err(QuestionnaireError::Scoring(m)) if m.contains("overlap")
    ));
    phq["extension"][0]["extension"][0]["valueCode"] = json!("average");
    assert!(matches!(
        Definition::from_json(&phq),
        Err(QuestionnaireError::Scoring(_))
    ));
}

// --- At the gate. -----------------------------------------------------------------------

struct Clinic {
    f: Fixture,
    gp: Keypair,
}

fn clinic() -> Clinic {
    let mut f = Fixture::new(11, "george");
    let gp = key(12, "gp");
    f.grant(grant(
        &gp,
        Level::Write,
        &[Category::Questionnaires, Category::Tasks],
        false,
        false,
    ));
    Clinic { f, gp }
}

fn publish(c: &mut Clinic, name: &str) -> EntryId {
    let body = body_from_json(
        &Category::Questionnaires,
        &json!({"questionnaire": name.to_uppercase(), DEFINITION: built_in(name).unwrap()}),
    )
    .unwrap();
    let gp = c.gp.clone();
    c.f.create(&gp, Category::Questionnaires, body).unwrap()
}

fn assign(c: &mut Clinic, def: &str) -> Result<EntryId, Rejection> {
    let body = body_from_json(
        &Category::Tasks,
        &json!({"kind": TASK_KIND, "description": "Please complete the PHQ-9",
            "requester": c.gp.actor().to_string(), "owner": c.f.record.id().to_string(),
            "status": "sent", "due": "2026-12-20", "questionnaire": def}),
    )
    .unwrap();
    let gp = c.gp.clone();
    c.f.create(&gp, Category::Tasks, body)
}

fn from_network(r: &Record, k: &Keypair, payload: Payload, now: Timestamp) -> Verified {
    let auth = r.grants_of(&k.actor()).first().copied();
    Verified::trusted(r.next_entry(&k.actor(), payload, auth, now, None).sign(k))
}

fn response(def: &EntryId, body: serde_json::Value) -> Payload {
    let _ = def;
    Payload::Create {
        category: Category::Questionnaires,
        body: body_from_json(&Category::Questionnaires, &body).unwrap(),
    }
}

#[test]
fn a_published_phq9_is_assigned_answered_scored_and_its_task_completed() {
    let mut c = clinic();
    let def = publish(&mut c, "phq-9");
    let task = assign(&mut c, &def.to_string()).unwrap();
    let p = phq9();
    let a = answers(&p, &[1, 1, 2, 1, 0, 1, 2, 1, 0]);
    let body = response_json(&p, &def, &a, "2026-12-01T10:00:00Z", Some(&task)).unwrap();
    assert_eq!(
        (body["score"].clone(), body["band"].clone()),
        (json!(9), json!("mild"))
    );
    let george = c.f.patient.clone();
    c.f.write(&george, response(&def, body))
        .expect("George answers");
    // George (the owner) completes the assignment straight from `sent`.
    let sent = c.f.record.payload(&task).map(|p| p.into_owned()).unwrap();
    let Payload::Create { body: mut t, .. } = sent else {
        panic!()
    };
    if let Value::Map(m) = &mut t {
        m.insert("status".into(), Value::Text("completed".into()));
    }
    c.f.write(
        &george,
        Payload::Amend {
            target: task,
            body: t.clone(),
        },
    )
    .expect("the owner completes it");
    // The clinician cannot mark it completed for him.
    let mut c2 = clinic();
    let def2 = publish(&mut c2, "gad-7");
    let task2 = assign(&mut c2, &def2.to_string()).unwrap();
    let mut t2 = match c2.f.record.payload(&task2).map(|p| p.into_owned()).unwrap() {
        Payload::Create { body, .. } => body,
        _ => panic!(),
    };
    if let Value::Map(m) = &mut t2 {
        m.insert("status".into(), Value::Text("completed".into()));
    }
    let gp = c2.gp.clone();
    assert!(matches!(
        c2.f.write(
            &gp,
            Payload::Amend {
                target: task2,
                body: t2
            }
        ),
        Err(Rejection::Task(crate::care::TaskError::NotOwner { .. }))
    ));
}

#[test]
fn the_gate_refuses_a_response_that_breaks_its_definition_and_stores_nothing() {
    let mut c = clinic();
    let def = publish(&mut c, "phq-9");
    let p = phq9();
    let good = response_json(
        &p,
        &def,
        &answers(&p, &[3; 9]),
        "2026-12-01T10:00:00Z",
        None,
    )
    .unwrap();
    let george = c.f.patient.clone();
    let refused = |c: &Clinic, body: serde_json::Value| {
        let before = c.f.record.len();
        let mut r = c.f.record.clone();
        let v = from_network(&r, &george, response(&def, body), c.f.now);
        let err = r.apply(v).unwrap_err();
        assert_eq!(r.len(), before, "nothing stored");
        err
    };
    let mut wrong = good.clone();
    wrong["score"] = json!(26);
    assert!(matches!(
        refused(&c, wrong),
        Rejection::Questionnaire(QuestionnaireError::ScoreMismatch {
            stated: Some(26),
            computed: Some(27)
        })
    ));
    let mut unknown_q = good.clone();
    unknown_q["answers"][0]["question"] = json!("nope");
    assert!(matches!(
        refused(&c, unknown_q),
        Rejection::Questionnaire(QuestionnaireError::UnknownLinkId(q)) if q == "nope"
    ));
    let mut not_option = good.clone();
    not_option["answers"][0]["answer"] = json!("LA0000-0");
    assert!(matches!(
        refused(&c, not_option),
        Rejection::Questionnaire(QuestionnaireError::NotAnOption { .. })
    ));
    let mut missing = good.clone();
    missing["answers"].as_array_mut().unwrap().pop();
    assert!(matches!(
        refused(&c, missing),
        Rejection::Questionnaire(QuestionnaireError::MissingRequired(_))
    ));
    let mut wrong_type = good.clone();
    wrong_type["answers"][0]["answer"] = json!(true);
    assert!(matches!(
        refused(&c, wrong_type),
        Rejection::Questionnaire(QuestionnaireError::WrongType { .. })
    ));
    // A response to an unknown questionnaire, or to an entry that is not one.
    let mut unknown = good.clone();
    unknown[DEFINITION_ENTRY] = json!(EntryId([9; 32]).to_string());
    assert!(matches!(
        refused(&c, unknown),
        Rejection::Questionnaire(QuestionnaireError::UnknownQuestionnaire(_))
    ));
    let free =
        c.f.write(
            &george,
            response(
                &def,
                json!({"questionnaire": "EQ-5D-5L",
            "answers": [{"question": "Mobility", "answer": "no problems"}]}),
            ),
        )
        .unwrap()
        .id();
    let mut not_def = good.clone();
    not_def[DEFINITION_ENTRY] = json!(free.to_string());
    assert!(matches!(
        refused(&c, not_def),
        Rejection::Questionnaire(QuestionnaireError::NotAQuestionnaire(_))
    ));
    // The good one is accepted.
    c.f.write(&george, response(&def, good)).unwrap();
    // An assignment names a questionnaire by its entry id (whether it is a published one
    // is its writer's check: the tasks stream may be held without the questionnaires one).
    let before = c.f.record.len();
    assert!(matches!(
        assign(&mut c, "e-nothing"),
        Err(Rejection::Task(crate::care::TaskError::Field(
            "questionnaire"
        )))
    ));
    assert_eq!(c.f.record.len(), before);
}

#[test]
fn a_malformed_or_oversize_definition_is_refused_by_the_schema() {
    let mut c = clinic();
    let gp = c.gp.clone();
    let before = c.f.record.len();
    let dup =
        def_json(json!([{"linkId": "a", "type": "string"}, {"linkId": "a", "type": "string"}]));
    let body = Value::from_json(&json!({"questionnaire": "X", DEFINITION: dup}));
    let err = c.f.create(&gp, Category::Questionnaires, body).unwrap_err();
    assert!(
        matches!(&err, Rejection::Body(e) if e.to_string().contains("linkId `a` is used by two items")),
        "{err}"
    );
    let big = " ".repeat(MAX_DEFINITION_BYTES + 1);
    let body = Value::from_json(&json!({"questionnaire": "X", DEFINITION: big}));
    assert!(matches!(
        c.f.create(&gp, Category::Questionnaires, body),
        Err(Rejection::Body(_))
    ));
    // A definition carrying answers is neither one nor the other.
    let body = Value::from_json(
        &json!({"questionnaire": "X", DEFINITION: built_in("gad-7").unwrap(),
        "answers": [{"question": "gad7-1", "answer": "LA6568-5"}]}),
    );
    assert!(matches!(
        c.f.create(&gp, Category::Questionnaires, body),
        Err(Rejection::Body(_))
    ));
    assert_eq!(c.f.record.len(), before);
}

#[test]
fn a_sealed_response_is_checked_by_its_writer_before_sealing() {
    let mut c = clinic();
    let def = publish(&mut c, "gad-7");
    let george = c.f.patient.clone();
    c.f.record.unlock(&george);
    let policy = crate::record::SealPolicy {
        seal_new_streams: true,
        history: true,
    };
    let mut rng = crate::testkit::SeededRng::new(5);
    let g = gad7();
    let mut body = response_json(
        &g,
        &def,
        &answers(&g, &[3; 7]),
        "2026-12-01T10:00:00Z",
        None,
    )
    .unwrap();
    body["score"] = json!(20);
    let err =
        c.f.record
            .prepare_sealed(
                &george,
                response(&def, body.clone()),
                c.f.now,
                None,
                policy,
                &mut rng,
            )
            .unwrap_err();
    assert!(
        matches!(
            err,
            Rejection::Questionnaire(QuestionnaireError::ScoreMismatch { .. })
        ),
        "{err}"
    );
    body["score"] = json!(21);
    let out =
        c.f.record
            .prepare_sealed(
                &george,
                response(&def, body),
                c.f.now,
                None,
                policy,
                &mut rng,
            )
            .unwrap();
    assert!(matches!(
        out.last().unwrap().entry().payload,
        Payload::SealedCreate { .. }
    ));
}

// --- Clinical flags. ----------------------------------------------------------------------

#[test]
fn phq9_question_9_above_not_at_all_trips_its_flag_and_nothing_else_does() {
    let p = phq9();
    let flagged: Vec<_> = p.items.iter().filter(|i| i.flag.is_some()).collect();
    assert_eq!(flagged.len(), 1, "only question 9 is a flag");
    assert_eq!(flagged[0].link_id, "phq9-9");
    assert_eq!(flagged[0].flag.as_ref().unwrap().from, 1);
    assert!(gad7().items.iter().all(|i| i.flag.is_none()));
    // Not at all: no flag on question 9, whatever the rest scores (27 less question 9's
    // 3: only the flag over the total, below).
    let s = p
        .score(&list(&answers(&p, &[3, 3, 3, 3, 3, 3, 3, 3, 0])))
        .unwrap();
    assert!(s.flags.iter().all(|f| f.total), "{s:?}");
    let s = p
        .score(&list(&answers(&p, &[2, 2, 2, 2, 2, 2, 2, 2, 0])))
        .unwrap();
    assert!(s.flags.is_empty(), "{s:?}");
    for (v, display) in [
        (1, "Several days"),
        (2, "More than half the days"),
        (3, "Nearly every day"),
    ] {
        let s = p
            .score(&list(&answers(&p, &[0, 0, 0, 0, 0, 0, 0, 0, v])))
            .unwrap();
        assert_eq!(s.score, Some(v), "a flag does not change the score");
        assert_eq!(s.band.as_deref(), Some("minimal"));
        assert_eq!(s.flags.len(), 1);
        assert_eq!(s.flags[0].question, "phq9-9");
        assert_eq!(s.flags[0].answer, display);
        assert!(s.flags[0].label.contains("self-harm"));
    }
}

#[test]
fn a_malformed_flag_is_refused_with_what_is_wrong() {
    let flag = |from: serde_json::Value, label: serde_json::Value| {
        json!({"url": FLAG, "extension": [{"url": "from", "valueInteger": from},
            {"url": "label", "valueString": label}]})
    };
    let opt = |code: &str, v: i64| {
        json!({"valueCoding": {"code": code},
            "extension": [{"url": ORDINAL_VALUE, "valueDecimal": v}]})
    };
    let choice = |ext: serde_json::Value| {
        def_json(json!([{"linkId": "q", "type": "choice",
            "answerOption": [opt("a", 0), opt("b", 1)], "extension": ext}]))
    };
    let ok = Definition::parse(&choice(json!([flag(json!(1), json!("Look"))]))).unwrap();
    assert_eq!(
        ok.items[0].flag,
        Some(Flag {
            from: 1,
            label: "Look".into()
        })
    );
    for (text, why) in [
        (choice(json!([flag(json!(2), json!("Look"))])), "never trip"),
        (
            choice(json!([flag(json!("x"), json!("Look"))])),
            "needs `from`",
        ),
        (choice(json!([flag(json!(1), json!(null))])), "needs `from`"),
        (
            choice(json!([
                flag(json!(1), json!("A")),
                flag(json!(1), json!("B"))
            ])),
            "twice",
        ),
        (
            def_json(json!([{"linkId": "q", "type": "integer",
                "extension": [flag(json!(1), json!("Look"))]}])),
            "not a choice",
        ),
    ] {
        let e = Definition::parse(&text).unwrap_err();
        assert!(e.to_string().contains(why), "{e} (wanted {why})");
    }
}

#[test]
fn the_flags_of_a_stored_response_are_read_from_its_published_questionnaire() {
    let mut c = clinic();
    let def = publish(&mut c, "phq-9");
    let task = assign(&mut c, &def.to_string()).unwrap();
    let p = phq9();
    let george = c.f.patient.clone();
    let mut ids = Vec::new();
    for q9 in [0, 2] {
        let a = answers(&p, &[1, 0, 0, 0, 0, 0, 0, 0, q9]);
        let body = response_json(&p, &def, &a, "2026-12-01T10:00:00Z", Some(&task)).unwrap();
        ids.push(c.f.write(&george, response(&def, body)).unwrap().id());
    }
    assert!(flags_of_response(&c.f.record, &ids[0]).is_empty());
    let f = flags_of_response(&c.f.record, &ids[1]);
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].question.as_str(), f[0].answer.as_str()),
        ("phq9-9", "More than half the days")
    );
    // Neither a definition nor a task is a flagged response.
    assert!(flags_of_response(&c.f.record, &def).is_empty());
    assert!(flags_of_response(&c.f.record, &task).is_empty());
}

// --- Due reminders. -------------------------------------------------------------------------

#[test]
fn an_open_assignment_is_reminded_to_its_owner_as_its_due_date_nears() {
    let mut c = clinic();
    let def = publish(&mut c, "phq-9");
    let task = assign(&mut c, &def.to_string()).unwrap(); // due 2026-12-20
    let george = c.f.record.id();
    let ms = |s: &str| crate::schema::date_time_ms(s).unwrap() as u64;
    let state = |c: &Clinic, now| {
        let v = c.f.record.viewer(&c.f.patient.actor(), now);
        crate::fold::current(&c.f.record, &v)
    };
    let is_george = |a: &crate::ids::ActorId| *a == george;
    // Before the 19th: nothing; from the start of the 19th (two days before the end of
    // the 20th): one reminder, not overdue; from the 21st: overdue.
    let before = ms("2026-12-18T23:59:59Z");
    assert!(due_reminders(&state(&c, before), before, &is_george).is_empty());
    let on = ms("2026-12-19T00:00:00Z");
    let r = due_reminders(&state(&c, on), on, &is_george);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].task, r[0].due.as_str(), r[0].at),
        (task, "2026-12-20", on)
    );
    assert!(!r[0].overdue);
    let after = ms("2026-12-21T00:00:00Z");
    assert!(due_reminders(&state(&c, after), after, &is_george)[0].overdue);
    // Nobody else is reminded of George's assignment.
    let gp = c.gp.actor();
    assert!(due_reminders(&state(&c, on), on, &|a| *a == gp).is_empty());
    // Once answered (the task completed), no reminder.
    let mut t = match c.f.record.payload(&task).map(|p| p.into_owned()).unwrap() {
        Payload::Create { body, .. } => body,
        _ => panic!(),
    };
    if let Value::Map(m) = &mut t {
        m.insert("status".into(), Value::Text("completed".into()));
    }
    let p = c.f.patient.clone();
    c.f.write(
        &p,
        Payload::Amend {
            target: task,
            body: t,
        },
    )
    .unwrap();
    assert!(due_reminders(&state(&c, on), on, &is_george).is_empty());
}

#[test]
fn a_total_score_at_or_above_a_flag_trips_it_worked_out_from_the_answers() {
    // PHQ-9: severe from 20; GAD-7: severe from 15. The flags are the built-ins' own.
    let p = phq9();
    let rule = p.scoring.as_ref().unwrap();
    assert_eq!(rule.flags.len(), 1);
    assert_eq!(rule.flags[0].from, 20);
    let total = |s: &Scored| {
        s.flags
            .iter()
            .filter(|f| f.total)
            .cloned()
            .collect::<Vec<_>>()
    };
    // 19: moderately severe, no flag; 20: severe, flagged, with the score.
    let s = p
        .score(&list(&answers(&p, &[3, 3, 3, 3, 3, 3, 1, 0, 0])))
        .unwrap();
    assert_eq!(s.score, Some(19));
    assert!(total(&s).is_empty(), "{s:?}");
    let s = p
        .score(&list(&answers(&p, &[3, 3, 3, 3, 3, 3, 2, 0, 0])))
        .unwrap();
    assert_eq!((s.score, s.band.as_deref()), (Some(20), Some("severe")));
    let t = total(&s);
    assert_eq!(t.len(), 1, "{s:?}");
    assert_eq!(t[0].question, TOTAL);
    assert_eq!(t[0].answer, "total score 20");
    assert!(t[0].label.contains("Severe depression"), "{}", t[0].label);
    // Beside question 9's own flag, not instead of it.
    let s = p
        .score(&list(&answers(&p, &[3, 3, 3, 3, 3, 3, 3, 3, 1])))
        .unwrap();
    assert_eq!(s.flags.len(), 2, "{s:?}");
    assert_eq!(s.flags[0].question, "phq9-9");
    assert!(s.flags[1].total);
    // GAD-7: 14 no, 15 yes.
    let g = gad7();
    let s = g
        .score(&list(&answers(&g, &[3, 3, 3, 3, 2, 0, 0])))
        .unwrap();
    assert_eq!(s.score, Some(14));
    assert!(s.flags.is_empty(), "{s:?}");
    let s = g
        .score(&list(&answers(&g, &[3, 3, 3, 3, 3, 0, 0])))
        .unwrap();
    assert_eq!(s.score, Some(15));
    assert_eq!(total(&s).len(), 1);
    assert!(s.flags[0].label.contains("Severe anxiety"));
}

#[test]
fn a_malformed_flag_over_the_total_is_refused() {
    let opt = |code: &str, v: i64| {
        json!({"valueCoding": {"code": code},
            "extension": [{"url": ORDINAL_VALUE, "valueDecimal": v}]})
    };
    let def = |flags: Vec<serde_json::Value>| {
        let mut ext = vec![json!({"url": "method", "valueCode": "sum"})];
        ext.extend(flags);
        json!({"resourceType": "Questionnaire", "title": "Test", "status": "active",
            "extension": [{"url": SCORING, "extension": ext}],
            "item": [{"linkId": "a", "type": "choice", "answerOption": [opt("n", 0), opt("y", 2)]},
                     {"linkId": "b", "type": "choice", "answerOption": [opt("n", 0), opt("y", 3)]}]})
        .to_string()
    };
    let flag = |from: serde_json::Value, label: serde_json::Value| {
        json!({"url": "flag", "extension": [{"url": "from", "valueInteger": from},
            {"url": "label", "valueString": label}]})
    };
    let ok = Definition::parse(&def(vec![flag(json!(5), json!("Top"))])).unwrap();
    assert_eq!(
        ok.scoring.unwrap().flags,
        vec![ScoreFlag {
            from: 5,
            label: "Top".into()
        }]
    );
    let err = |d: String| Definition::parse(&d).unwrap_err();
    // Unreachable: the answers sum to at most 5.
    assert!(matches!(
        err(def(vec![flag(json!(6), json!("Never"))])),
        QuestionnaireError::Scoring(m) if m.contains("at most 5")
    ));
    // No label, no `from`, `from` not a whole number.
    for f in [
        json!({"url": "flag", "extension": [{"url": "from", "valueInteger": 1}]}),
        json!({"url": "flag", "extension": [{"url": "label", "valueString": "x"}]}),
        flag(json!("3"), json!("x")),
    ] {
        assert!(matches!(err(def(vec![f])), QuestionnaireError::Scoring(_)));
    }
    // Too many.
    let many = (0..=MAX_SCORE_FLAGS)
        .map(|i| flag(json!(i), json!(format!("f{i}"))))
        .collect();
    assert!(matches!(
        err(def(many)),
        QuestionnaireError::TooMany {
            max: MAX_SCORE_FLAGS,
            ..
        }
    ));
}
