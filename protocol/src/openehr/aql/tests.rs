use serde_json::json;

use super::*;
use crate::category::Category;
use crate::ids::{ActorId, EntryId};
use crate::openehr::{ehr_json, to_composition, version_uid, Composer, Meta};
use crate::schema;

fn vitals(n: u8, systolic: i64, at: &str) -> Json {
    let body = schema::body_from_json(
        &Category::VitalSigns,
        &json!({"systolic": {"value": systolic, "unit": "mm[Hg]"},
                "diastolic": {"value": 80, "unit": "mm[Hg]"},
                "measured-at": at}),
    )
    .expect("body");
    let meta = Meta {
        uid: Some(version_uid(&EntryId([n; 32]), 1)),
        start_time: at.into(),
        composer: Composer {
            name: None,
            actor: "a-x".into(),
        },
    };
    to_composition(&Category::VitalSigns, &body, &meta).expect("maps")
}

fn problem(name: &str) -> Json {
    let body =
        schema::body_from_json(&Category::Problems, &json!({"problem": name})).expect("body");
    let meta = Meta {
        uid: None,
        start_time: "2026-01-01T00:00:00Z".into(),
        composer: Composer {
            name: None,
            actor: "a-x".into(),
        },
    };
    to_composition(&Category::Problems, &body, &meta).expect("maps")
}

fn sources() -> Vec<Source> {
    let e1 = ehr_json(&ActorId([1; 32]), "t");
    let e2 = ehr_json(&ActorId([2; 32]), "t");
    vec![
        Source {
            ehr: e1.clone(),
            composition: vitals(1, 140, "2026-12-01T08:00:00Z"),
        },
        Source {
            ehr: e1.clone(),
            composition: vitals(2, 120, "2026-12-02T08:00:00Z"),
        },
        Source {
            ehr: e1,
            composition: problem("Asthma"),
        },
        Source {
            ehr: e2,
            composition: vitals(3, 160, "2026-12-03T08:00:00Z"),
        },
    ]
}

const SYS: &str = "o/data[at0001]/events[at0006]/data[at0003]/items[at0004]/value/magnitude";
const BP: &str = "openEHR-EHR-OBSERVATION.blood_pressure.v2";

fn run_q(q: &str) -> ResultSet {
    run(
        &parse(q).expect("parses"),
        &sources(),
        &serde_json::Map::new(),
    )
    .expect("runs")
}

#[test]
fn contains_where_order_limit_offset() {
    let q = format!(
        "SELECT c/uid/value AS uid, {SYS} AS systolic FROM EHR e CONTAINS COMPOSITION c \
         CONTAINS OBSERVATION o[{BP}] WHERE {SYS} >= 130 ORDER BY systolic DESC"
    );
    let r = run_q(&q);
    assert_eq!(r.columns[1], ("systolic".to_owned(), SYS.to_owned()));
    let values: Vec<&Json> = r.rows.iter().map(|(_, c)| &c[1]).collect();
    assert_eq!(values, [&json!(160), &json!(140)]);
    assert_eq!(r.rows[0].0, 3, "the source of each row");
    // OR, AND, parentheses, NOT, and an EHR predicate.
    let ehr1 = ehr_json(&ActorId([1; 32]), "t")["ehr_id"]["value"].clone();
    let q = format!(
        "select {SYS} from EHR e[ehr_id/value='{}'] contains COMPOSITION c contains OBSERVATION o[{BP}] \
         where ({SYS} = 120 or {SYS} = 160) and not {SYS} > 150 order by {SYS} asc",
        ehr1.as_str().expect("id")
    );
    let r = run_q(&q);
    assert_eq!(
        r.rows.iter().map(|(_, c)| c[0].clone()).collect::<Vec<_>>(),
        [json!(120)]
    );
    // LIMIT and OFFSET page the ordered rows.
    let q = format!(
        "SELECT {SYS} FROM EHR e CONTAINS COMPOSITION c CONTAINS OBSERVATION o[{BP}] \
         ORDER BY {SYS} LIMIT 2 OFFSET 1"
    );
    let r = run_q(&q);
    assert_eq!(
        r.rows.iter().map(|(_, c)| c[0].clone()).collect::<Vec<_>>(),
        [json!(140), json!(160)]
    );
    // Strings compare (dates as ISO text); EVALUATION by archetype; a composition filter.
    let r = run_q(
        "SELECT o/data[at0001]/items[at0002]/value/value FROM EHR e CONTAINS COMPOSITION c \
         CONTAINS EVALUATION o[openEHR-EHR-EVALUATION.problem_diagnosis.v1]",
    );
    assert_eq!(r.rows.len(), 1);
    assert_eq!(r.rows[0].1[0], json!("Asthma"));
    let r = run_q(
        "SELECT c/context/start_time/value FROM EHR e CONTAINS COMPOSITION c[openEHR-EHR-COMPOSITION.encounter.v1] \
         WHERE c/context/start_time/value > '2026-12-01T12:00:00Z'",
    );
    assert_eq!(r.rows.len(), 2);
}

#[test]
fn parameters_are_substituted() {
    let q = parse(&format!(
        "SELECT {SYS} FROM EHR e CONTAINS COMPOSITION c CONTAINS OBSERVATION o[{BP}] WHERE {SYS} < $max"
    ))
    .expect("parses");
    let mut params = serde_json::Map::new();
    assert_eq!(
        run(&q, &sources(), &params),
        Err(AqlError::MissingParameter("max".into()))
    );
    params.insert("max".into(), json!(130));
    assert_eq!(run(&q, &sources(), &params).expect("runs").rows.len(), 1);
}

#[test]
fn malformed_queries_are_refused_precisely() {
    assert!(matches!(
        parse("SELEKT c FROM EHR e"),
        Err(AqlError::Unexpected { at: 0, .. })
    ));
    let q = "SELECT c/uid FROM EHR e CONTAINS COMPOSITION c WHERE c/uid = 'x";
    assert_eq!(
        parse(q),
        Err(AqlError::Unterminated(q.find('\'').expect("quote")))
    );
    match parse("SELECT x/uid FROM EHR e CONTAINS COMPOSITION c") {
        Err(AqlError::UnknownVariable { name, at, defined }) => {
            assert_eq!(name, "x");
            assert_eq!(at, 7);
            assert_eq!(defined, "e, c");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        parse("SELECT c FROM EHR e CONTAINS COMPOSITION c WHERE c/name/value IN 'x'"),
        Err(AqlError::Unsupported { .. })
    ));
    assert!(matches!(
        parse("SELECT c FROM EHR e CONTAINS COMPOSITION c WHERE c/name/value ="),
        Err(AqlError::Unexpected { expected, .. }) if expected.contains("path, string")
    ));
    assert!(matches!(
        parse("SELECT c FROM EHR e CONTAINS SECTION s"),
        Err(AqlError::Unexpected { .. })
    ));
    assert!(matches!(
        parse("SELECT c FROM EHR e LIMIT 5 garbage"),
        Err(AqlError::Unexpected { .. })
    ));
}

#[test]
fn limits_are_enforced() {
    let long = format!("SELECT c FROM EHR e WHERE {}", "c/a = 1 AND ".repeat(1000));
    assert_eq!(parse(&long), Err(AqlError::TooLong(long.len())));
    let nested = format!(
        "SELECT c FROM EHR e CONTAINS COMPOSITION c WHERE {}c/a = 1{}",
        "(".repeat(MAX_NESTING + 1),
        ")".repeat(MAX_NESTING + 1)
    );
    assert!(matches!(parse(&nested), Err(AqlError::TooComplex(_))));
    let columns = vec!["c/uid"; MAX_COLUMNS + 1].join(", ");
    assert!(matches!(
        parse(&format!(
            "SELECT {columns} FROM EHR e CONTAINS COMPOSITION c"
        )),
        Err(AqlError::TooComplex(_))
    ));
    let steps = vec!["a"; MAX_STEPS + 1].join("/");
    assert!(matches!(
        parse(&format!(
            "SELECT c/{steps} FROM EHR e CONTAINS COMPOSITION c"
        )),
        Err(AqlError::TooComplex(_))
    ));
    assert!(matches!(
        parse(&format!(
            "SELECT c FROM EHR e CONTAINS COMPOSITION c LIMIT {}",
            MAX_ROWS + 1
        )),
        Err(AqlError::TooComplex(_))
    ));
    let many = vec!["c/a = 1"; MAX_TOKENS / 3 + 1].join(" OR ");
    assert!(matches!(
        parse(&format!(
            "SELECT c FROM EHR e CONTAINS COMPOSITION c WHERE {many}"
        )),
        Err(AqlError::TooComplex(_))
    ));
}

#[test]
fn actions_are_found_by_archetype() {
    let body = schema::body_from_json(
        &Category::Procedures,
        &json!({"procedure": "Appendicectomy", "date": "2011-07-14"}),
    )
    .expect("body");
    let meta = Meta {
        uid: None,
        start_time: "2026-01-01T00:00:00Z".into(),
        composer: Composer {
            name: None,
            actor: "a-x".into(),
        },
    };
    let mut all = sources();
    all.push(Source {
        ehr: ehr_json(&ActorId([1; 32]), "t"),
        composition: to_composition(&Category::Procedures, &body, &meta).expect("maps"),
    });
    let q = parse(
        "SELECT a/description[at0001]/items[at0002]/value/value, a/time/value FROM EHR e \
         CONTAINS COMPOSITION c CONTAINS ACTION a[openEHR-EHR-ACTION.procedure.v1]",
    )
    .expect("parses");
    let r = run(&q, &all, &serde_json::Map::new()).expect("runs");
    assert_eq!(r.rows.len(), 1);
    assert_eq!(r.rows[0].1, [json!("Appendicectomy"), json!("2011-07-14")]);
}

#[test]
fn the_ehr_id_may_be_a_parameter() {
    let q = parse("SELECT c/uid/value FROM EHR e[ehr_id/value=$ehr_id] CONTAINS COMPOSITION c")
        .expect("parses");
    assert_eq!(q.from.ehr_param.as_deref(), Some("ehr_id"));
    let mut params = serde_json::Map::new();
    assert!(matches!(
        q.ehr_id(&params),
        Err(AqlError::MissingParameter(_))
    ));
    params.insert("ehr_id".into(), json!("abc"));
    assert_eq!(q.ehr_id(&params).expect("given"), Some("abc".into()));
    assert!(matches!(
        parse("SELECT c FROM EHR e[ehr_id/value=$] CONTAINS COMPOSITION c"),
        Err(AqlError::Unsupported { .. })
    ));
}

#[test]
fn like_exists_and_matches() {
    const NAME: &str = "o/data[at0001]/items[at0002]/value/value";
    let problems = format!(
        "SELECT {NAME} FROM EHR e CONTAINS COMPOSITION c \
         CONTAINS EVALUATION o[openEHR-EHR-EVALUATION.problem_diagnosis.v1]"
    );
    let hits = |w: &str| run_q(&format!("{problems} WHERE {w}")).rows.len();
    assert_eq!(hits(&format!("{NAME} LIKE 'Ast*'")), 1);
    assert_eq!(hits(&format!("{NAME} LIKE '?sthm?'")), 1);
    assert_eq!(
        hits(&format!("{NAME} LIKE 'sthm*'")),
        0,
        "the whole text matches"
    );
    assert_eq!(hits(&format!("{NAME} LIKE 'asthma'")), 0, "case matters");
    assert_eq!(hits(&format!("EXISTS {NAME}")), 1);
    assert_eq!(hits("EXISTS o/data[at0001]/items[at0009]/value/value"), 0);
    assert_eq!(
        hits(&format!(
            "NOT EXISTS o/data[at0001]/items[at0009] AND {NAME} matches {{'Eczema', 'Asthma'}}"
        )),
        1
    );
    assert_eq!(hits(&format!("{NAME} matches {{'Eczema'}}")), 0);
    // Numbers in matches, and a parameter as a LIKE pattern.
    let q = format!(
        "SELECT {SYS} FROM EHR e CONTAINS COMPOSITION c CONTAINS OBSERVATION o[{BP}] \
         WHERE {SYS} matches {{120, 160}}"
    );
    assert_eq!(run_q(&q).rows.len(), 2);
    let q = parse(&format!("{problems} WHERE {NAME} LIKE $p")).expect("parses");
    let mut params = serde_json::Map::new();
    params.insert("p".into(), json!("*ma"));
    assert_eq!(run(&q, &sources(), &params).expect("runs").rows.len(), 1);
    // Refused: a pattern that is not text, too long, matches without braces or with a
    // path, too many values.
    for bad in [
        format!("{problems} WHERE {NAME} LIKE 5"),
        format!("{problems} WHERE {NAME} matches 'x'"),
        format!("{problems} WHERE {NAME} matches {{'x'"),
    ] {
        assert!(
            matches!(parse(&bad), Err(AqlError::Unexpected { .. })),
            "{bad}"
        );
    }
    assert!(matches!(
        parse(&format!("{problems} WHERE {NAME} matches {{c/uid/value}}")),
        Err(AqlError::Unsupported { .. })
    ));
    assert!(matches!(
        parse(&format!(
            "{problems} WHERE {NAME} LIKE '{}'",
            "x".repeat(MAX_PATTERN + 1)
        )),
        Err(AqlError::TooComplex(_))
    ));
    let many = vec!["1"; MAX_MATCHES + 1].join(", ");
    assert!(matches!(
        parse(&format!("{problems} WHERE {NAME} matches {{{many}}}")),
        Err(AqlError::TooComplex(_))
    ));
}

#[test]
fn like_patterns() {
    for (text, pattern, want) in [
        ("", "", true),
        ("", "*", true),
        ("", "?", false),
        ("abc", "abc", true),
        ("abc", "a*", true),
        ("abc", "*c", true),
        ("abc", "a*b*c", true),
        ("abc", "a?c", true),
        ("abc", "a?", false),
        ("aXbXc", "a*c", true),
        ("aaab", "*a*ab", true),
        ("a*c", "a\\*c", true),
        ("abc", "a\\*c", false),
        ("héllo", "h?llo", true),
        ("mississippi", "m*iss*ppi", true),
        ("mississippi", "m*iss*x", false),
    ] {
        assert_eq!(like(text, pattern), want, "{text:?} LIKE {pattern:?}");
    }
}

#[test]
fn like_agrees_with_a_regex_reading_of_the_pattern() {
    // A seeded sweep: every pattern over a small alphabet against every short text,
    // checked against a plain recursive reading of the wildcards.
    fn slow(t: &[char], p: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|k| slow(&t[k..], &p[1..])),
            Some('?') => !t.is_empty() && slow(&t[1..], &p[1..]),
            Some(c) => t.first() == Some(c) && slow(&t[1..], &p[1..]),
        }
    }
    let words = |alphabet: &[char], max: usize| {
        let mut out = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            let next: Vec<String> = last
                .iter()
                .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                .collect();
            out.extend(next.iter().cloned());
            last = next;
        }
        out
    };
    let texts = words(&['a', 'b'], 4);
    let patterns = words(&['a', 'b', '*', '?'], 4);
    for p in &patterns {
        let pc: Vec<char> = p.chars().collect();
        for t in &texts {
            let tc: Vec<char> = t.chars().collect();
            assert_eq!(like(t, p), slow(&tc, &pc), "{t:?} LIKE {p:?}");
        }
    }
}
