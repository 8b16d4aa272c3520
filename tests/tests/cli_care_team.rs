//! The care team around George (issue 15): a referral moving from sent to accepted, each
//! step written by the party that took it, and appointments booked, changed and cancelled
//! as versions, with their reminders. Played with the `cophr` command by separate people,
//! each with their own home, keys and store, exchanging the record through export files.
//! Run `cargo build -p cophr` first.

mod cli_support;

use cli_support::Person;
use serde_json::Value;
use tempfile::TempDir;

struct Team {
    files: TempDir,
    george: Person,
    gp: Person,
    clinic: Person,
}

impl Team {
    /// `from` exports; each of `to` imports.
    fn share(&self, from: &Person, to: &[&Person]) {
        let f = self
            .files
            .path()
            .join(format!("{}.cophr", cli_support::tick()));
        from.export(&f);
        for p in to {
            p.import(&f);
        }
    }
}

fn setup() -> Team {
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let gp = Person::new("Dr Ann Lee", "gp", Some("Headingley Surgery"));
    let clinic = Person::new("Renal clinic", "clinic", Some("Leeds Renal Unit"));
    for p in [&gp, &clinic] {
        george.ok(&[
            "grant",
            p.actor.as_str(),
            "--level",
            "write",
            "--categories",
            "tasks,appointments",
            "--label",
            &p.name,
        ]);
    }
    let t = Team {
        files: TempDir::new().expect("a temporary directory"),
        george,
        gp,
        clinic,
    };
    t.share(&t.george, &[&t.gp, &t.clinic]);
    t
}

fn task<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("task {id} listed in {list}"))
}

#[test]
fn a_referral_moves_step_by_step_and_george_sees_where_it_stands() {
    let t = setup();
    let id =
        t.gp.ok(&[
            "task",
            "send",
            "--kind",
            "referral",
            "--to",
            t.clinic.actor.as_str(),
            "--description",
            "eGFR falling: please review",
        ])
        .trim()
        .to_owned();
    assert!(id.starts_with("e-"), "task send printed {id}");
    t.share(&t.gp, &[&t.clinic, &t.george]);
    let seen = t.george.json(&["task", "list"]);
    assert_eq!(task(&seen, &id)["status"], "sent");
    assert_eq!(task(&seen, &id)["kind"], "referral");

    t.clinic
        .ok(&["task", "update", id.as_str(), "--status", "received"]);
    t.share(&t.clinic, &[&t.george, &t.gp]);

    // George may not take the owner's step: refused, nothing stored.
    let held = t.george.entries_held();
    let err = t
        .george
        .fails(3, &["task", "update", id.as_str(), "--status", "accepted"]);
    assert!(err.contains("only the task's owner"), "{err}");
    assert_eq!(t.george.entries_held(), held);
    // Nor may the GP (the requester).
    let err =
        t.gp.fails(3, &["task", "update", id.as_str(), "--status", "accepted"]);
    assert!(err.contains("only the task's owner"), "{err}");

    t.clinic
        .ok(&["task", "update", id.as_str(), "--status", "accepted"]);
    // Out of order: accepted cannot go straight to completed.
    let held = t.clinic.entries_held();
    let err = t
        .clinic
        .fails(5, &["task", "update", id.as_str(), "--status", "completed"]);
    assert!(
        err.contains("cannot go from `accepted` to `completed`"),
        "{err}"
    );
    assert_eq!(t.clinic.entries_held(), held);
    t.share(&t.clinic, &[&t.george]);

    let seen = t.george.json(&["task", "list"]);
    let task = task(&seen, &id);
    assert_eq!(task["status"], "accepted");
    let steps: Vec<(&str, &str)> = task["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["status"].as_str().expect("status"),
                s["by"]["id"].as_str().expect("by"),
            )
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            ("sent", t.gp.actor.as_str()),
            ("received", t.clinic.actor.as_str()),
            ("accepted", t.clinic.actor.as_str()),
        ]
    );
    assert_eq!(task["owner"]["id"], t.clinic.actor.as_str());
    // The table says where it stands too.
    let table = t.george.ok(&["task", "list"]);
    assert!(table.contains("accepted by Renal clinic"), "{table}");
    // The clinic may not cancel (the requester's step); the GP may.
    t.clinic
        .fails(3, &["task", "update", id.as_str(), "--status", "cancelled"]);
    t.share(&t.george, &[&t.gp]);
    t.gp.ok(&["task", "update", id.as_str(), "--status", "cancelled"]);
    let open = t.gp.json(&["task", "list", "--open"]);
    assert!(
        open["tasks"].as_array().expect("tasks").is_empty(),
        "{open}"
    );
}

#[test]
fn a_task_goes_to_a_grantee_or_the_patient_by_name_and_an_unknown_name_is_refused() {
    let t = setup();
    // The clinic goes by its grant's label (case aside); George by his profile's name.
    let to_clinic = t.gp.ok(&[
        "task",
        "send",
        "--to",
        "renal clinic",
        "--description",
        "Review",
    ]);
    let to_george = t.gp.ok(&[
        "task",
        "send",
        "--kind",
        "blood-test-request",
        "--to",
        "George Jones",
        "--description",
        "HbA1c at home",
    ]);
    let list = t.gp.json(&["task", "list"]);
    assert_eq!(
        task(&list, to_clinic.trim())["owner"]["id"],
        t.clinic.actor.as_str(),
        "{list}"
    );
    assert_eq!(
        task(&list, to_george.trim())["owner"]["id"],
        t.george.actor.as_str(),
        "{list}"
    );
    // No one goes by this name: not found, nothing written.
    let before = t.gp.entries_held();
    let err = t.gp.fails(
        4,
        &[
            "task",
            "send",
            "--to",
            "Nobody Here",
            "--description",
            "Review",
        ],
    );
    assert!(err.contains("Nobody Here"), "{err}");
    assert_eq!(t.gp.entries_held(), before);
    t.gp.fails(
        2,
        &[
            "task",
            "send",
            "--kind",
            "letter",
            "--to",
            t.clinic.actor.as_str(),
        ],
    );
}

#[test]
fn an_appointment_is_booked_changed_and_cancelled_as_versions_with_reminders() {
    let t = setup();
    let at = |day: u32, hour: u32| format!("2026-04-{day:02}T{hour:02}:00:00Z");
    let book = |now: &str, start: &str, reminders: &[&str]| {
        let mut args = vec![
            "appointment",
            "book",
            "--start",
            start,
            "--description",
            "Renal clinic review",
            "--place",
            "St James's, outpatients 4",
            "--with",
            "Dr Patel",
        ];
        for r in reminders {
            args.extend(["--reminder", r]);
        }
        t.clinic.run_at(now, &args)
    };
    // A reminder already past when written is refused, and nothing is stored.
    let held = t.clinic.entries_held();
    let r = book(&at(10, 12), &at(11, 9), &["1d"]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stderr.contains("already in the past"), "{}", r.stderr);
    assert_eq!(t.clinic.entries_held(), held);

    let args_ok = |r: cli_support::Run| {
        assert_eq!(r.code, 0, "{r:?}");
        r.stdout.trim().to_owned()
    };
    let first = args_ok(book(&at(10, 12), &at(12, 9), &["1d", "2h"]));
    let moved = args_ok(t.clinic.run_at(
        &at(10, 13),
        &[
            "appointment",
            "change",
            first.as_str(),
            "--start",
            &at(13, 9),
        ],
    ));
    let cancelled = args_ok(t.clinic.run_at(
        &at(10, 14),
        &[
            "appointment",
            "cancel",
            first.as_str(),
            "--reason",
            "Clinic closed",
        ],
    ));
    let kept = args_ok(book(&at(10, 15), &at(20, 9), &["1d", "2h"]));
    t.share(&t.clinic, &[&t.george]);

    // The cancelled one: one entry, three versions, in George's history.
    let h = t.george.json(&["history", first.as_str()]);
    let versions: Vec<&str> = h["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        versions,
        vec![first.as_str(), moved.as_str(), cancelled.as_str()]
    );
    let all = t.george.json(&["appointment", "list", "--all"]);
    let listed = all
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["id"] == first.as_str())
        .expect("the cancelled appointment is listed with --all");
    assert_eq!(listed["status"], "cancelled");
    assert_eq!(listed["versions"], 3);
    assert_eq!(listed["start"], at(13, 9).as_str());
    let booked = t.george.json(&["appointment", "list"]);
    let ids: Vec<&str> = booked
        .as_array()
        .expect("list")
        .iter()
        .map(|a| a["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec![kept.as_str()]);

    // 23 hours before the kept one: its day's reminder is due, the 2-hour one
    // upcoming; the cancelled one gives none.
    let r = t
        .george
        .run_at(&at(19, 10), &["--json", "reminders", "--within", "1d"]);
    assert_eq!(r.code, 0, "{r:?}");
    let rem: Value = serde_json::from_str(&r.stdout).expect("json");
    let got: Vec<(&str, &str, &str)> = rem
        .as_array()
        .expect("reminders")
        .iter()
        .map(|x| {
            (
                x["before"].as_str().expect("before"),
                x["state"].as_str().expect("state"),
                x["appointment"].as_str().expect("appointment"),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("1d", "due", kept.as_str()),
            ("2h", "upcoming", kept.as_str())
        ]
    );
    // Not George's to change: he did not book it.
    t.george.fails(3, &["appointment", "cancel", kept.as_str()]);
}
