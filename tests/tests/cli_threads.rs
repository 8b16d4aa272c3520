//! Conversations (issue 15): a thread between George, his GP and the renal nurse, private
//! to them. The pharmacist holds write on messages and still reads none of it, nor writes
//! into it. Played with the `cophr` command by separate people, each with their own home,
//! keys and store (sealing on, as every node writes), exchanging the record through export
//! files. Run `cargo build -p cophr` first.

mod cli_support;

use cli_support::Person;
use serde_json::Value;
use tempfile::TempDir;

struct Team {
    files: TempDir,
    george: Person,
    gp: Person,
    nurse: Person,
    pharmacist: Person,
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

fn threads(p: &Person) -> Vec<Value> {
    p.json(&["thread", "list"])["threads"]
        .as_array()
        .expect("threads")
        .clone()
}

#[test]
fn a_thread_is_private_to_its_participants_with_replies_and_read_receipts() {
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let gp = Person::new("Dr Ann Lee", "gp", Some("Headingley Surgery"));
    let nurse = Person::new("Sam Patel", "renal nurse", Some("Leeds Renal Unit"));
    let pharmacist = Person::new("Raj Shah", "pharmacist", Some("Boots Headingley"));
    for p in [&gp, &nurse, &pharmacist] {
        george.ok(&[
            "grant",
            p.actor.as_str(),
            "--level",
            "write",
            "--categories",
            "messages",
        ]);
    }
    let t = Team {
        files: TempDir::new().expect("a temporary directory"),
        george,
        gp,
        nurse,
        pharmacist,
    };
    t.share(&t.george, &[&t.gp, &t.nurse, &t.pharmacist]);

    let started = t.gp.json(&[
        "thread",
        "start",
        "--with",
        t.nurse.actor.as_str(),
        "--subject",
        "Your eGFR",
        "Your eGFR has fallen: Sam will call you.",
    ]);
    let thread = started["thread"].as_str().expect("thread id").to_owned();
    t.share(&t.gp, &[&t.george, &t.nurse, &t.pharmacist]);

    let sent = t.nurse.json(&[
        "thread",
        "send",
        thread.as_str(),
        "Is Monday at 10 good?",
        "--reply-to",
        thread.as_str(),
    ]);
    let reply = sent["entry"].as_str().expect("entry").to_owned();
    t.share(&t.nurse, &[&t.george, &t.gp, &t.pharmacist]);

    // George lists the thread with two unread messages, reads it, marks it read.
    let list = threads(&t.george);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["thread"]["subject"], "Your eGFR");
    assert_eq!(list[0]["thread"]["unread"], 2);
    let shown = t.george.json(&["thread", "show", thread.as_str()]);
    let msgs = shown["thread"]["messages"].as_array().expect("messages");
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[1]["in_reply_to"], thread.as_str());
    assert_eq!(msgs[1]["text"], "Is Monday at 10 good?");
    let marked = t.george.json(&["thread", "read", thread.as_str()]);
    assert_eq!(marked["marked"].as_array().map(Vec::len), Some(2));
    assert_eq!(threads(&t.george)[0]["thread"]["unread"], 0);
    t.share(&t.george, &[&t.gp, &t.nurse, &t.pharmacist]);

    // The nurse, who sent the reply, sees that George has read it.
    let shown = t.nurse.json(&["thread", "show", thread.as_str()]);
    let msgs = shown["thread"]["messages"].as_array().expect("messages");
    let read_by = msgs
        .iter()
        .find(|m| m["version"] == reply.as_str())
        .expect("the reply")["read_by"]
        .clone();
    assert_eq!(read_by, serde_json::json!([t.george.actor.as_str()]));

    // The pharmacist, with write on messages: no thread listed, none shown, and a message
    // into it is refused (exit 3) with nothing stored.
    assert!(threads(&t.pharmacist).is_empty());
    t.pharmacist.fails(4, &["thread", "show", thread.as_str()]);
    let held = t.pharmacist.entries_held();
    let err = t.pharmacist.fails(
        3,
        &[
            "add",
            "messages",
            "--text",
            "Let me in",
            "--thread",
            thread.as_str(),
        ],
    );
    assert!(err.contains("does not take part"), "{err}");
    assert_eq!(t.pharmacist.entries_held(), held);
    // A plain `cophr show` of messages does not list the thread's texts either.
    let all = t.pharmacist.ok(&["show", "--category", "messages"]);
    assert!(!all.contains("Sam will call"), "{all}");
    assert!(!all.contains("Monday at 10"), "{all}");
}

#[test]
fn participants_are_chosen_by_a_grantees_name_when_only_one_has_it() {
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    let nurse = Person::new("Sam Patel", "renal nurse", Some("Leeds Renal Unit"));
    let alex1 = Person::new("Alex Kim", "gp", Some("Headingley Surgery"));
    let alex2 = Person::new("Alex Kim", "physio", None);
    let viewer = Person::new("Pat Doe", "dietitian", None);
    for (p, label, cats) in [
        (&nurse, "Sam Patel", "messages"),
        (&alex1, "Alex Kim", "messages"),
        (&alex2, "Alex Kim", "messages"),
        (&viewer, "Pat Doe", "allergies"),
    ] {
        george.ok(&[
            "grant",
            p.actor.as_str(),
            "--level",
            "write",
            "--categories",
            cats,
            "--label",
            label,
        ]);
    }
    let before = george.entries_held();
    // Two grantees go by "Alex Kim": refused, naming both, nothing written.
    let err = george.fails(5, &["thread", "start", "--with", "alex kim", "Hello"]);
    assert!(
        err.contains(&alex1.actor) && err.contains(&alex2.actor),
        "{err}"
    );
    // No grantee who reads messages goes by these names.
    let err = george.fails(4, &["thread", "start", "--with", "Nobody Here", "Hello"]);
    assert!(err.contains("Nobody Here"), "{err}");
    george.fails(4, &["thread", "start", "--with", "Pat Doe", "Hello"]);
    assert_eq!(george.entries_held(), before);
    // One does: the thread names the nurse.
    let started = george.json(&[
        "thread",
        "start",
        "--with",
        " sam PATEL ",
        "--subject",
        "Results",
        "Can we talk?",
    ]);
    let thread = started["thread"].as_str().expect("thread id").to_owned();
    let shown = george.json(&["thread", "show", thread.as_str()]);
    let parts = shown["thread"]["participants"].to_string();
    assert!(parts.contains(&nurse.actor), "{shown}");
    assert!(
        !parts.contains(&alex1.actor) && !parts.contains(&alex2.actor),
        "{shown}"
    );
}
