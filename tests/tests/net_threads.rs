//! Conversations across real `cophr node run` processes (issue 15): the renal nurse starts
//! a thread with George on her node; it replicates, sealed, through George's blind home
//! host to George's node, where he reads it and replies; his read receipt and reply reach
//! the nurse. The pharmacist, whose node follows the same record with write on messages,
//! lists no thread, is refused writing into it (exit 3) and is notified of nothing in it.
//! Her node holds the thread's sealed entries (the blind host serves every sealed entry of
//! messages to every reader of the stream), yet a modified node reading her store ignoring
//! every rule unwraps no key of the thread and opens none of it (per-thread keys); after
//! the nurse's grant is revoked, she unwraps nothing George writes in it next.
//! Run `cargo build -p cophr` first.

mod cli_support;

use cli_support::node::{eventually, Node};
use cli_support::Person;
use cophr_protocol::record::{ContentState, Record};
use cophr_protocol::seal::{self, BoxKey, EpochId, Place};
use cophr_protocol::{EntryId, Keypair, Payload};
use serde_json::Value;

/// `p`'s signing key, read from their home as a modified node would.
fn key_of(p: &Person) -> Keypair {
    let text = std::fs::read_to_string(p.dir().join("identity.key")).expect("identity.key");
    let bytes: Vec<u8> = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&text.trim()[i..i + 2], 16).expect("hex"))
        .collect();
    Keypair::from_secret(&bytes.try_into().expect("32 bytes"))
}

/// Every entry `p`'s node holds of the record (its export, which carries the record as
/// signed, sealed entries included), rebuilt and checked.
fn held(p: &Person, dir: &std::path::Path) -> Record {
    let file = dir.join(format!("{}.cophr", p.actor));
    p.live_ok(&["export", file.to_str().expect("utf-8")]);
    let bytes = std::fs::read(&file).expect("export");
    cophr_protocol::export::verify(&bytes)
        .expect("a valid export")
        .record
}

/// The epochs of `r` whose key `k` unwraps from the wraps held, by hand, ignoring every
/// rule (the attack).
fn unwrappable(r: &Record, k: &Keypair) -> Vec<EpochId> {
    let mine = BoxKey::of(k);
    let rid = r.id();
    r.entries()
        .filter_map(|v| match &v.entry().payload {
            Payload::KeyWrap {
                category,
                epoch,
                wraps,
                ..
            } => {
                let place = Place {
                    record: &rid,
                    stream: category.name(),
                    epoch: *epoch,
                };
                wraps
                    .iter()
                    .any(|w| seal::unwrap(w, &mine, place).is_ok())
                    .then_some(*epoch)
            }
            _ => None,
        })
        .collect()
}

fn epoch_of(r: &Record, id: &EntryId) -> EpochId {
    r.get(id)
        .expect("held")
        .entry()
        .payload
        .sealed()
        .expect("sealed")
        .epoch
}

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
    let mut grants = Vec::new();
    for p in [&nurse, &pharmacist] {
        let g = george.live_json(&[
            "grant",
            &p.actor,
            "--level",
            "write",
            "--categories",
            "messages",
        ]);
        grants.push(g["grant"].as_str().expect("grant id").to_owned());
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

    // The attack: her node holds the thread's sealed entries; read by hand with her key,
    // ignoring the read rule, they stay shut. George's own key opens them.
    let dir = tempfile::TempDir::new().expect("a directory");
    let r = held(&pharmacist, dir.path());
    let start: EntryId = thread.parse().expect("an entry id");
    let loose: EntryId = loose.parse().expect("an entry id");
    assert!(r.get(&start).is_some(), "her node holds the sealed start");
    let e = epoch_of(&r, &start);
    let pk = key_of(&pharmacist);
    assert!(unwrappable(&r, &pk).contains(&epoch_of(&r, &loose)));
    assert!(
        !unwrappable(&r, &pk).contains(&e),
        "a thread key reached her"
    );
    let mut theirs = r.clone();
    theirs.unlock(&pk);
    assert_eq!(theirs.content_state(&start), Some(ContentState::Locked));
    assert_eq!(theirs.content_state(&loose), Some(ContentState::Opened));
    let mut his = r.clone();
    his.unlock(&key_of(&george));
    assert_eq!(his.content_state(&start), Some(ContentState::Opened));

    // The nurse's grant is revoked; George's next message in the thread opens a new epoch
    // of it that she cannot unwrap (her node keeps what she was shown).
    george.live_ok(&["revoke", &grants[0], "--reason", "moved to another trust"]);
    let after = george.live_json(&["thread", "send", &thread, "Thanks, all sorted"]);
    let after: EntryId = after["entry"]
        .as_str()
        .expect("entry id")
        .parse()
        .expect("an entry id");
    let r = held(&george, dir.path());
    let e2 = epoch_of(&r, &after);
    assert_ne!(e2, e);
    let nk = key_of(&nurse);
    assert!(unwrappable(&r, &nk).contains(&e));
    assert!(
        !unwrappable(&r, &nk).contains(&e2),
        "a revoked participant's key"
    );
    let mut hers = r.clone();
    hers.unlock(&nk);
    assert_eq!(hers.content_state(&after), Some(ContentState::Locked));
    assert_eq!(hers.content_state(&start), Some(ContentState::Opened));
}
