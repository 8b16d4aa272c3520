//! Conversations across real `cophr node run` processes (issue 15): the renal nurse starts
//! a thread with George on her node; it replicates, sealed, through George's blind home
//! host to George's node, where he reads it and replies; his read receipt and reply reach
//! the nurse. The pharmacist, whose node follows the same record with write on messages,
//! lists no thread, is refused writing into it (exit 3) and is notified of nothing in it.
//! Run `cargo build -p cophr` first.

mod cli_support;

use cli_support::node::{eventually, Node};
use cli_support::Person;
use serde_json::Value;

fn thread_view(p: &Person, thread: &str) -> Option<Value> {
    let r = p.live(&["--json", "thread", "show", thread]);
    (r.code == 0).then(|| serde_json::from_str(&r.stdout).expect("JSON"))
}

#[test]
fn a_thread_replicates_through_a_blind_host_to_its_participants_only() {
    let george = Person::new("George Jones", "patient", None);
    let nurse = Person::new("Sam Patel", "renal nurse", Some("Leeds Renal Unit"));
    let pharmacist = Person::new("Raj Shah", "pharmacist", Some("Boots Headingley"));
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    for p in [&nurse, &pharmacist] {
        george.live_ok(&[
            "grant",
            &p.actor,
            "--level",
            "write",
            "--categories",
            "messages",
        ]);
    }
    george.live_ok(&["host", &host_node.addr()]);
    let _nurse_node = Node::start(&nurse, &[]);
    nurse.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    let _pharmacist_node = Node::start(&pharmacist, &[]);
    pharmacist.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    pharmacist.live_ok(&["notifications", "subscribe", "--events", "new-message"]);

    let out = nurse.live_ok(&[
        "--json",
        "thread",
        "start",
        "--with",
        &george.actor,
        "--subject",
        "Your eGFR",
        "Can I call you on Monday?",
    ]);
    let thread = serde_json::from_str::<Value>(&out).expect("JSON")["thread"]
        .as_str()
        .expect("thread id")
        .to_owned();
    eventually("George's node to hold the thread", || {
        thread_view(&george, &thread).is_some()
    });
    george.live_ok(&["thread", "read", &thread]);
    george.live_ok(&["thread", "send", &thread, "Monday at 10 is fine"]);
    eventually("the nurse to see George's reply and receipt", || {
        thread_view(&nurse, &thread).is_some_and(|v| {
            let m = &v["thread"]["messages"];
            m.as_array().map(Vec::len) == Some(2)
                && m[0]["read_by"] == serde_json::json!([george.actor])
        })
    });

    // A loose message reaches the pharmacist (so her node is in sync) …
    let loose = george.live_add(&["messages", "--text", "New address from March"]);
    eventually("the pharmacist's node to hold the loose message", || {
        pharmacist.sees(&loose)
    });
    // … and nothing of the thread does, by any read path.
    let list = pharmacist.live_json(&["thread", "list"]);
    assert_eq!(list["threads"].as_array().map(Vec::len), Some(0), "{list}");
    assert!(thread_view(&pharmacist, &thread).is_none());
    let shown = pharmacist.live_ok(&["show", "--category", "messages"]);
    assert!(shown.contains("New address"), "{shown}");
    assert!(!shown.contains("Monday"), "{shown}");
    let r = pharmacist.live(&[
        "add",
        "messages",
        "--text",
        "Let me in",
        "--thread",
        &thread,
    ]);
    assert_eq!(r.code, 3, "{r:?}");
    let notes = pharmacist.live_json(&["notifications", "list"]);
    let text = notes.to_string();
    assert!(text.contains(&loose), "{notes}");
    assert!(!text.contains(&thread), "{notes}");
}
