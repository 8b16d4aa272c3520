//! Questionnaires (issue 15): a GP publishes PHQ-9 into George's record and assigns it with a
//! due date; George sees it overdue, answers it with `cophr questionnaire answer`, and gets
//! the score and band the questionnaire's rule gives; his task is completed; the GP sees
//! the response. Bad answers and a forged score are refused with nothing stored. Played
//! with the `cophr` command by separate people exchanging export files. Run
//! `cargo build -p cophr` first.

mod cli_support;

use cli_support::Person;
use serde_json::Value;
use tempfile::TempDir;

fn share(files: &TempDir, from: &Person, to: &Person) {
    let f = files.path().join(format!("{}.cophr", cli_support::tick()));
    from.export(&f);
    to.import(&f);
}

fn answers(scores: &[u8]) -> Vec<String> {
    scores
        .iter()
        .enumerate()
        .map(|(i, s)| format!("phq9-{}={s}", i + 1))
        .collect()
}

#[test]
fn a_gp_assigns_phq9_and_george_answers_it_and_sees_his_score_and_band() {
    let files = TempDir::new().unwrap();
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let gp = Person::new("Dr Ann Lee", "gp", Some("Headingley Surgery"));
    george.ok(&[
        "grant",
        gp.actor.as_str(),
        "--level",
        "write",
        "--categories",
        "questionnaires,tasks",
    ]);
    share(&files, &george, &gp);

    // Unknown built-in names and malformed files are refused, nothing written.
    gp.fails(5, &["questionnaire", "publish", "eq-5d"]);
    let bad = files.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"resourceType": "Questionnaire", "title": "X", "status": "active",
            "item": [{"linkId": "a", "type": "string"}, {"linkId": "a", "type": "string"}]}"#,
    )
    .unwrap();
    let err = gp.fails(
        5,
        &["questionnaire", "publish", "--file", bad.to_str().unwrap()],
    );
    assert!(err.contains("linkId `a` is used by two items"), "{err}");
    let held = gp.entries_held();

    let def = gp
        .ok(&["questionnaire", "publish", "phq-9"])
        .trim()
        .to_owned();
    assert!(def.starts_with("e-"), "{def}");
    assert!(gp.entries_held() > held);
    let task = gp
        .ok(&["questionnaire", "assign", &def, "--due", "2020-01-01"])
        .trim()
        .to_owned();
    // Assigning subscribed the GP to clinical flags in George's record.
    let subs = gp.json(&["notifications", "subscriptions"]);
    assert!(subs.to_string().contains("questionnaire-flag"), "{subs}");
    share(&files, &gp, &george);

    // George sees the assignment, overdue, among his tasks too.
    let l = george.json(&["questionnaire", "list"]);
    let a = &l["assigned"][0];
    assert_eq!(a["id"], task.as_str());
    assert_eq!(a["title"], "Patient Health Questionnaire (PHQ-9)");
    assert_eq!(a["status"], "sent");
    assert_eq!(a["overdue"], true);
    assert_eq!(l["published"][0]["questions"], 10);
    let tasks = george.json(&["task", "list", "--open"]);
    assert_eq!(tasks["tasks"][0]["kind"], "questionnaire");
    let shown = george.ok(&["questionnaire", "show", &task]);
    assert!(
        shown.contains("Little interest or pleasure in doing things"),
        "{shown}"
    );
    assert!(shown.contains("LA6571-9 = Nearly every day (3)"), "{shown}");

    // Bad answers: not an option, an unknown question, a required one missing — exit 5,
    // nothing stored.
    let held = george.entries_held();
    let mut args = vec!["questionnaire", "answer", task.as_str()];
    let mut bad = answers(&[1, 1, 1, 1, 1, 1, 1, 1, 7]);
    let e = george.fails(
        5,
        &[
            &args[..],
            &bad.iter()
                .flat_map(|a| ["--answer", a.as_str()])
                .collect::<Vec<_>>()[..],
        ]
        .concat(),
    );
    assert!(
        e.contains("not one of the options of question `phq9-9`"),
        "{e}"
    );
    bad = answers(&[1, 1, 1, 1, 1, 1, 1, 1]);
    let e = george.fails(
        5,
        &[
            &args[..],
            &bad.iter()
                .flat_map(|a| ["--answer", a.as_str()])
                .collect::<Vec<_>>()[..],
        ]
        .concat(),
    );
    assert!(e.contains("question `phq9-9` must be answered"), "{e}");
    let e = george.fails(5, &[&args[..], &["--answer", "phq9-42=1"]].concat());
    assert!(e.contains("no question `phq9-42`"), "{e}");
    assert_eq!(george.entries_held(), held);

    // A good response: 2+2+1+2+1+1+2+0+0 = 11, moderate; question 9 "Not at all".
    let good = answers(&[2, 2, 1, 2, 1, 1, 2, 0, 0]);
    for a in &good {
        args.extend(["--answer", a.as_str()]);
    }
    args.extend(["--answer", "phq9-10=Somewhat difficult"]);
    let mut with_json = vec!["--json"];
    with_json.extend(args.iter());
    let out: Value = serde_json::from_str(&george.ok(&with_json)).unwrap();
    assert_eq!(out["score"], 11);
    assert_eq!(out["band"], "moderate");
    assert_eq!(
        out["flags"],
        serde_json::json!([]),
        "no flag: q9 Not at all"
    );
    assert!(
        out["task"].as_str().is_some_and(|t| t.starts_with("e-")),
        "{out}"
    );
    let l = george.json(&["questionnaire", "list"]);
    assert_eq!(l["assigned"][0]["status"], "completed");
    assert_eq!(l["assigned"][0]["overdue"], false);
    let r = &l["responses"][0];
    assert_eq!(
        (r["score"].clone(), r["band"].clone()),
        (Value::from(11), Value::from("moderate"))
    );
    let shown = george.ok(&["questionnaire", "show", r["id"].as_str().unwrap()]);
    assert!(shown.contains("answer: More than half the days"), "{shown}");
    assert!(shown.contains("Score: 11 (moderate)"), "{shown}");
    // A second answer to the completed assignment is refused.
    george.fails(5, &args);

    // A forged score (written with the generic `add`) is refused by the record's rules.
    let held = george.entries_held();
    let forged = files.path().join("forged.json");
    let ans: Vec<Value> = (1..=9)
        .map(|i| serde_json::json!({"question": format!("phq9-{i}"), "answer": "LA6568-5"}))
        .collect();
    std::fs::write(
        &forged,
        serde_json::json!({"questionnaire": "PHQ-9", "questionnaire-entry": def,
            "answers": ans, "score": 20, "band": "severe"})
        .to_string(),
    )
    .unwrap();
    let e = george.fails(
        5,
        &["add", "questionnaires", "--json", forged.to_str().unwrap()],
    );
    assert!(
        e.contains("stated score (20) is not the questionnaire's (0)"),
        "{e}"
    );
    assert_eq!(george.entries_held(), held);

    // A second, unassigned response with question 9 "Several days" trips the flag: shown
    // to George with his score, and in `show` and `list`.
    let mut args = vec!["--json", "questionnaire", "answer", def.as_str()];
    let flagged = answers(&[0, 0, 0, 0, 0, 0, 0, 0, 1]);
    for a in &flagged {
        args.extend(["--answer", a.as_str()]);
    }
    let out: Value = serde_json::from_str(&george.ok(&args)).unwrap();
    assert_eq!(out["score"], 1);
    assert_eq!(out["flags"][0]["question"], "phq9-9");
    assert_eq!(out["flags"][0]["answer"], "Several days");
    let flagged_id = out["entry"].as_str().unwrap().to_owned();
    let shown = george.ok(&["questionnaire", "show", &flagged_id]);
    assert!(shown.contains("FLAG phq9-9: Thoughts"), "{shown}");
    let table = george.ok(&["questionnaire", "list"]);
    assert!(table.contains("FLAG phq9-9"), "{table}");

    // A third with a total of 20 (severe) and question 9 "Not at all": the flag over the
    // total score, worked out from the answers.
    let mut args = vec!["--json", "questionnaire", "answer", def.as_str()];
    let severe = answers(&[3, 3, 3, 3, 3, 3, 2, 0, 0]);
    for a in &severe {
        args.extend(["--answer", a.as_str()]);
    }
    let out: Value = serde_json::from_str(&george.ok(&args)).unwrap();
    assert_eq!(
        (&out["score"], &out["band"]),
        (&Value::from(20), &Value::from("severe"))
    );
    assert_eq!(out["flags"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["flags"][0]["question"], "total");
    assert_eq!(out["flags"][0]["total"], true);
    let severe_id = out["entry"].as_str().unwrap().to_owned();
    let shown = george.ok(&["questionnaire", "show", &severe_id]);
    assert!(shown.contains("FLAG total: Severe depression"), "{shown}");
    let table = george.ok(&["questionnaire", "list"]);
    assert!(table.contains("FLAG total"), "{table}");

    // The GP sees George's responses and scores, and is told of the flags (only those two).
    share(&files, &george, &gp);
    let l = gp.json(&["questionnaire", "list"]);
    let scores: Vec<&Value> = l["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["score"])
        .collect();
    assert!(scores.contains(&&Value::from(11)), "{l}");
    assert_eq!(l["assigned"][0]["status"], "completed");
    let n = gp.json(&["notifications", "list"]);
    let items = n["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{n}");
    assert!(
        items.iter().all(|i| i["event"] == "questionnaire-flag"),
        "{n}"
    );
    let mut entries: Vec<&str> = items.iter().map(|i| i["entry"].as_str().unwrap()).collect();
    entries.sort_unstable();
    let mut want = vec![flagged_id.as_str(), severe_id.as_str()];
    want.sort_unstable();
    assert_eq!(entries, want);
}
