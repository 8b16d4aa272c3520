//! Real `cophr node run` processes replicating George's record over libp2p on 127.0.0.1:
//! a home host, George's personal node, Mary (his carer) and a pharmacist, each its own
//! process with its own keys; every command goes through the running node's control
//! socket. Conditions are polled with a deadline, never waited for with a fixed sleep.

mod cli_support;

use std::collections::BTreeSet;

use cli_support::node::{eventually, Node};
use cli_support::Person;
use serde_json::Value;

/// George's record with grants to Mary (everything, audit, delegate) and a pharmacist
/// (view problems, medications, allergies), and a few entries in several categories.
struct Cast {
    george: Person,
    mary: Person,
    pharmacist: Person,
    host: Person,
}

impl Cast {
    fn new() -> Cast {
        let george = Person::new("George Jones", "patient", None);
        let mary = Person::new("Mary Jones", "carer", None);
        let pharmacist = Person::new("Ana Silva", "pharmacist", Some("Oakwood Pharmacy"));
        let host = Person::new("Community Host", "host", Some("Leeds Community Host"));
        george.live_ok(&["record", "create"]);
        george.live_ok(&[
            "grant",
            &mary.actor,
            "--level",
            "delete",
            "--categories",
            "all",
            "--audit",
            "--delegate",
        ]);
        george.live_ok(&[
            "grant",
            &pharmacist.actor,
            "--level",
            "view",
            "--categories",
            "problems,medications,allergies",
        ]);
        george.live_add(&["problems", "--problem", "Type 2 diabetes"]);
        george.live_add(&["medications", "--medication", "Metformin"]);
        george.live_add(&["allergies", "--agent", "Penicillin"]);
        george.live_add(&["vital-signs", "--systolic", "150", "--diastolic", "90"]);
        george.live_add(&["about-me", "--thing-1", "I am deaf in my left ear"]);
        Cast {
            george,
            mary,
            pharmacist,
            host,
        }
    }

    fn record(&self) -> &str {
        &self.george.actor
    }
}

/// George's record hosted on the host, Mary following it there; all three nodes running.
struct Hosted {
    cast: Cast,
    host: Node,
    george: Node,
    mary: Node,
}

fn hosted() -> Hosted {
    let cast = Cast::new();
    let host = Node::start(&cast.host, &[]);
    let george = Node::start(&cast.george, &[]);
    let mary = Node::start(&cast.mary, &[]);
    let out = cast.george.live_ok(&["host", &host.addr()]);
    assert!(out.contains("is now hosted at"), "{out}");
    let follow = cast
        .mary
        .live_json(&["follow", cast.record(), "--host", &host.addr()]);
    assert_eq!(follow["home"].as_str(), Some(host.addr().as_str()));
    assert!(follow["pulled"].as_u64().unwrap() >= 7, "{follow}");
    Hosted {
        cast,
        host,
        george,
        mary,
    }
}

fn records(p: &Person) -> Vec<Value> {
    p.live_json(&["records"])["records"]
        .as_array()
        .expect("records")
        .clone()
}

fn entries_held(p: &Person) -> u64 {
    records(p)
        .iter()
        .map(|r| r["entries"].as_u64().expect("entries"))
        .sum()
}

fn home_of(p: &Person, record: &str) -> Option<String> {
    let v = p.live_json(&["peers", "--record", record]);
    v["records"][0]["home"].as_str().map(str::to_owned)
}

#[test]
fn a_write_on_marys_node_reaches_georges_node_live_through_the_home_host() {
    let h = hosted();
    let c = &h.cast;
    // The host holds the whole record and knows it is its home; the CLI reached it
    // through its control socket (its node holds the store).
    let status = c.host.live_json(&["status"]);
    assert_eq!(status["peer_id"].as_str(), Some(h.host.peer_id().as_str()));
    let rec = &status["records"][0];
    assert_eq!(rec["record"].as_str(), Some(c.record()));
    assert_eq!(rec["hosted_here"], Value::Bool(true));
    assert_eq!(home_of(&c.george, c.record()), Some(h.host.addr()));
    assert_eq!(home_of(&c.mary, c.record()), Some(h.host.addr()));
    // Mary sees everything George wrote.
    assert!(c.mary.categories_live().contains("about-me"));

    // Mary writes while her node runs; it reaches George's node with no command on his side.
    let reading = c
        .mary
        .live_add(&["vital-signs", "--systolic", "141", "--diastolic", "89"]);
    eventually("Mary's reading to reach George's node", || {
        c.george.sees(&reading)
    });
    // And George's writes reach Mary the same way.
    let note = c
        .george
        .live_add(&["problems", "--problem", "Hypertension"]);
    eventually("George's note to reach Mary's node", || c.mary.sees(&note));
    // The reading is Mary's, signed by her.
    let show = c.george.live_json(&["show"]);
    let item = show["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"].as_str() == Some(reading.as_str()))
        .expect("the reading")
        .clone();
    assert!(item.to_string().contains("Mary Jones"), "{item}");
    drop(h.mary);
    drop(h.george);
}

impl Person {
    fn categories_live(&self) -> BTreeSet<String> {
        self.live_json(&["show"])["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["category"].as_str().expect("category").to_owned())
            .collect()
    }
}

#[test]
fn the_pharmacist_finds_the_record_in_the_dht_sees_only_its_categories_and_cannot_write() {
    let h = hosted();
    let c = &h.cast;
    // The pharmacy's node knows only a bootstrap peer; it finds the record's home host
    // from the record id alone (a pointer signed by George).
    let pharmacy = Node::start(&c.pharmacist, &["--bootstrap", &h.host.addr()]);
    let follow = c.pharmacist.live_json(&["follow", c.record()]);
    assert_eq!(follow["home"].as_str(), Some(h.host.addr().as_str()));
    let seen = c.pharmacist.categories_live();
    let allowed: BTreeSet<String> = ["problems", "medications", "allergies"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(seen, allowed, "the pharmacist sees exactly its categories");
    // Nothing of the other categories was even sent to it.
    let held = entries_held(&c.pharmacist);
    assert!(held < entries_held(&c.george), "held {held}");
    // New entries in its categories arrive; others do not.
    let med = c
        .george
        .live_add(&["medications", "--medication", "Ramipril"]);
    let bp = c
        .george
        .live_add(&["vital-signs", "--systolic", "135", "--diastolic", "85"]);
    eventually("the new medication to reach the pharmacy", || {
        c.pharmacist.sees(&med)
    });
    assert!(!c.pharmacist.sees(&bp));
    // Its writes are refused (exit 3), and nothing is stored or sent.
    let before = entries_held(&c.pharmacist);
    let r = c.pharmacist.live(&["add", "allergies", "--agent", "Latex"]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(r.stderr.contains("not authorised"), "{}", r.stderr);
    assert_eq!(entries_held(&c.pharmacist), before);
    // A stranger's node is refused by the host (exit 3) and holds nothing.
    let stranger = Person::new("Eve", "stranger", None);
    let _eve = Node::start(&stranger, &[]);
    let r = stranger.live(&["follow", c.record(), "--host", &h.host.addr()]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(records(&stranger).is_empty());
    drop(pharmacy);
}

#[test]
fn with_the_home_host_down_marys_node_syncs_from_another_replica() {
    let mut h = hosted();
    let c = &h.cast;
    // George's own node is another replica of his record.
    c.mary.live_ok(&["peers", "--replica", &h.george.addr()]);
    h.host.kill();
    // The killed host left a stale control socket: commands in its home run locally.
    assert!(h.host.socket().exists());
    assert_eq!(records(&c.host).len(), 1);
    // George writes while the host is down; Mary gets it from George's node.
    let note = c
        .george
        .live_add(&["problems", "--problem", "Chronic kidney disease"]);
    let out = c.mary.live_json(&["sync"]);
    let results = out["results"].as_array().expect("results");
    let ok: Vec<&Value> = results
        .iter()
        .filter(|r| r["ok"] == Value::Bool(true))
        .collect();
    assert_eq!(ok.len(), 1, "{out}");
    assert_eq!(ok[0]["role"].as_str(), Some("replica"), "{out}");
    assert_eq!(ok[0]["peer"].as_str(), Some(h.george.addr().as_str()));
    eventually("George's entry to reach Mary from his node", || {
        c.mary.sees(&note)
    });
    // With no peer at all reachable, sync fails with a clear error.
    h.george.kill();
    let r = c.mary.live(&["sync"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("could not sync"), "{}", r.stderr);
}

#[test]
fn moving_home_releases_the_old_host_and_replicas_follow_the_move() {
    let h = hosted();
    let c = &h.cast;
    let host2_person = Person::new("Second Host", "host", None);
    let host2 = Node::start(&host2_person, &[]);
    // Mary knows only the old host: when it no longer serves the record, her node finds
    // the new home through the DHT (a pointer signed by George) by itself.
    let out = c.george.live_json(&["move", "--to", &host2.addr()]);
    assert_eq!(out["to"].as_str(), Some(host2.addr().as_str()));
    assert_eq!(out["from"].as_str(), Some(h.host.addr().as_str()));
    // The old host deletes its copy when told. If the release request did not get through
    // at once (a loaded machine), it stays pending and George's node retries it on its
    // next tick, until the old host confirms.
    match out["released"].as_bool() {
        Some(true) => assert!(
            records(&c.host).is_empty(),
            "the old host said it released the record but still holds it"
        ),
        Some(false) => eventually("the pending release to reach the old host", || {
            records(&c.host).is_empty()
        }),
        None => panic!("no `released` in {out}"),
    }
    eventually("the new host to hold every entry George holds", || {
        entries_held(&host2_person) == entries_held(&c.george)
    });
    assert_eq!(home_of(&c.george, c.record()), Some(host2.addr()));
    // Mary's node follows the move by itself.
    eventually("Mary's node to follow the move", || {
        home_of(&c.mary, c.record()) == Some(host2.addr())
    });
    // Her next write reaches the new host, and George through it: every grant survived.
    let before = entries_held(&host2_person);
    let reading = c
        .mary
        .live_add(&["vital-signs", "--systolic", "128", "--diastolic", "79"]);
    eventually("Mary's write to reach the new host", || {
        entries_held(&host2_person) > before
    });
    eventually("Mary's write to reach George", || c.george.sees(&reading));
}

#[test]
fn sigterm_stops_a_node_cleanly() {
    let p = Person::new("George Jones", "patient", None);
    p.live_ok(&["record", "create"]);
    let mut node = Node::start(&p, &[]);
    assert!(node.socket().exists());
    // The socket is the owner's only.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(node.socket()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // A second node in the same home is refused.
    let second = p.live(&["node", "run"]);
    assert_eq!(second.code, 7, "{second:?}");
    assert!(
        second.stderr.contains("already running"),
        "{}",
        second.stderr
    );
    // A malformed or oversized control message gets an error back; the node carries on.
    for message in [
        (u32::MAX).to_be_bytes().to_vec(),
        [&4u32.to_be_bytes()[..], b"{]}x"].concat(),
    ] {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(node.socket()).unwrap();
        s.write_all(&message).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        let v: Value = serde_json::from_slice(&reply[4..]).unwrap();
        assert_eq!(v["code"].as_u64(), Some(2), "{v}");
    }
    // Commands run through it.
    let id = p.live_add(&["vital-signs", "--systolic", "120", "--diastolic", "80"]);
    assert_eq!(
        p.live_json(&["status"])["pid"].as_u64(),
        Some(u64::from(node.pid()))
    );
    let status = node.terminate();
    assert_eq!(status.code(), Some(0), "{}", node.log());
    assert!(!node.socket().exists(), "the control socket is removed");
    assert!(
        !node.home().join("node.json").exists(),
        "node.json is removed"
    );
    // Without the node, commands run locally again, and network ones say to start it.
    assert!(p.sees(&id));
    let r = p.live(&["status"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("start the node first: cophr node run"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_config_file_configures_the_node_and_flags_override_it() {
    let p = Person::new("Host", "host", None);
    let config = p.dir().join("node.toml");
    std::fs::write(
        &config,
        "listen = [\"/ip4/127.0.0.1/tcp/0\"]\nsync_interval = 30\nlog_format = \"json\"\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let node = Node::start(&p, &["--config", config]);
    // Only the TCP listener of the file, and logs as JSON lines.
    let listen = node.info["listen"].as_array().unwrap();
    assert_eq!(listen.len(), 1, "{listen:?}");
    assert!(listen[0].as_str().unwrap().contains("/tcp/"));
    let log = node.log();
    let first = log.lines().next().expect("a log line");
    let line: Value = serde_json::from_str(first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(line["level"].is_string(), "{line}");
    drop(node);
    // --listen overrides the file.
    let node = Node::start(
        &p,
        &[
            "--config",
            config,
            "--listen",
            "/ip4/127.0.0.1/udp/0/quic-v1",
        ],
    );
    let listen = node.info["listen"].as_array().unwrap();
    assert_eq!(listen.len(), 1);
    assert!(
        listen[0].as_str().unwrap().contains("/quic-v1/"),
        "{listen:?}"
    );
    drop(node);
    // A bad file is refused before anything starts.
    let bad = p.dir().join("bad.toml");
    std::fs::write(&bad, "listen_on = []\n").unwrap();
    let r = p.live(&["node", "run", "--config", bad.to_str().unwrap()]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stderr.contains("bad.toml"), "{}", r.stderr);
    // The record cache's bounds come from the file or the flags; zero is refused.
    let zero = p.dir().join("zero.toml");
    std::fs::write(&zero, "cache_records = 0\n").unwrap();
    let r = p.live(&["node", "run", "--config", zero.to_str().unwrap()]);
    assert_eq!(r.code, 5, "{r:?}");
    assert!(r.stderr.contains("--cache-records"), "{}", r.stderr);
    let r = p.live(&["node", "run", "--cache-entries", "0"]);
    assert_eq!(r.code, 5, "{r:?}");
}
