//! A real `cophr node run` under a hostile flood of HTTP clients from other machines (issue
//! "Proven under attack", exhaustion): a network namespace of its own with thirty
//! addresses (`ip netns`, veth; root, as CI runs) holds 1,200 connections open to the
//! node's HTTP port — silent ones, slowloris (half a request head) and slow bodies (a head,
//! then a trickle) — reopening each the moment the node closes it, while four more stream
//! bodies of gigabytes (declared, and chunked) as fast as they can
//! (`exhaustion/flood.py`). Meanwhile the patient, on the node's own machine, writes and
//! reads. Checked:
//!
//! - every request of the patient's is answered, none refused or failed;
//! - the flood gets no server error, and every huge body is refused (413) or cut off;
//! - the node holds a bounded number of connections (its open files stay within its
//!   connection places) and its peak memory grows by less than [`MEMORY_BOUND`]: no body
//!   is held whole, no connection is queued without limit;
//! - afterwards every entry the patient wrote is held and the store verifies.
//!
//! Nothing here asserts a time; the flood runs for as long as the patient's work takes.

mod cli_support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use cli_support::api::call;
use cli_support::node::Node;
use cli_support::Person;
use serde_json::{json, Value};

/// Connections the flood keeps open.
const FLOOD: usize = 1_200;
/// Source addresses it uses (so the node's per-address limit is not the only one met).
const SOURCES: usize = 30;
/// Huge bodies streamed at once.
const HUGE: usize = 4;
/// The patient's write-and-read rounds during the flood.
const ROUNDS: usize = 60;
/// How much the node's peak resident memory may grow over the flood.
const MEMORY_BOUND: u64 = 256 << 20;

/// A network namespace joined to this one by a veth pair: this side 10.88.0.1, the
/// namespace 10.88.1.1 to 10.88.1.SOURCES. Removed when dropped.
struct Elsewhere {
    name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip runs (iproute2; root, as CI runs)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Elsewhere {
    fn new() -> Elsewhere {
        let name = format!("cx{}", std::process::id() % 100_000);
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let (here, there) = (format!("{name}-h"), format!("{name}-n"));
        let _ = Command::new("ip").args(["link", "del", &here]).output();
        ip(&["netns", "add", &name]);
        let e = Elsewhere { name };
        ip(&["link", "add", &here, "type", "veth", "peer", "name", &there]);
        ip(&["link", "set", &there, "netns", &e.name]);
        ip(&["addr", "add", "10.88.0.1/16", "dev", &here]);
        ip(&["link", "set", &here, "up"]);
        for i in 1..=SOURCES {
            ip(&[
                "-n",
                &e.name,
                "addr",
                "add",
                &format!("10.88.1.{i}/16"),
                "dev",
                &there,
            ]);
        }
        ip(&["-n", &e.name, "link", "set", &there, "up"]);
        ip(&["-n", &e.name, "link", "set", "lo", "up"]);
        e
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A field of /proc/PID/status, in bytes (`VmRSS`, `VmHWM`).
fn memory(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the node runs");
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("a number of kB");
    kb * 1024
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the node runs")
        .count()
}

fn flood_script() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/exhaustion/flood.py"
    ))
}

#[test]
fn a_flood_of_hostile_connections_and_huge_bodies_leaves_the_patient_answered_in_bounded_memory() {
    let george = Person::new("George", "patient", None);
    george.ok(&["record", "create"]);
    let token = george.ok(&["token"]).trim().to_owned();
    let record = george.actor.clone();
    let node = Node::start(&george, &["--http", "0.0.0.0:0", "--http-allow-remote"]);
    let http = node.http().expect("HTTP");
    let port = http.rsplit(':').next().expect("a port").to_owned();
    let local = format!("http://127.0.0.1:{port}");
    let entries = format!("{local}/api/v1/records/{record}/entries");
    let timeline = format!("{local}/api/v1/records/{record}/timeline?limit=5");
    let pid = node.pid();

    // Warm up, then take the baseline.
    for n in 0..5 {
        let (s, v) = call(&entries, &token, Some(&reading(n)));
        assert_eq!(s, 201, "{v}");
    }
    let base_rss = memory(pid, "VmRSS:");
    let base_files = open_files(pid);

    let elsewhere = Elsewhere::new();
    let sources: Vec<String> = (1..=SOURCES).map(|i| format!("10.88.1.{i}")).collect();
    let mut flood = Command::new("ip")
        .args(["netns", "exec", &elsewhere.name, "python3"])
        .arg(flood_script())
        .args(["10.88.0.1", &port, &record, &token])
        .args([FLOOD.to_string(), HUGE.to_string()])
        .args(&sources)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs in the namespace");
    let mut out = BufReader::new(flood.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("the flood reports");
    assert_eq!(line.trim(), "flooding", "the flood started");

    // The patient works through it, on fresh connections each time.
    let mut written = Vec::new();
    let mut most_files = 0;
    for n in 0..ROUNDS as u64 {
        let (s, v) = call(&entries, &token, Some(&reading(100 + n)));
        assert_eq!(s, 201, "the patient's write during the flood: {v}");
        written.push(v["id"].as_str().expect("an id").to_owned());
        let (s, v) = call(&timeline, &token, None);
        assert_eq!(s, 200, "the patient's read during the flood: {v}");
        most_files = most_files.max(open_files(pid));
    }

    drop(flood.stdin.take());
    let mut summary = String::new();
    out.read_line(&mut summary).expect("the flood's summary");
    assert!(flood.wait().expect("the flood ends").success());
    let seen: Value = serde_json::from_str(&summary).expect("a JSON summary");
    eprintln!("flood: {seen}");
    let peak = memory(pid, "VmHWM:");
    eprintln!(
        "node: resident {} MiB before, peak {} MiB; open files {base_files} before, at most {most_files}",
        base_rss >> 20,
        peak >> 20
    );

    // The flood met limits, not failures.
    let opened = seen["opened"].as_u64().expect("opened");
    assert!(
        opened >= FLOOD as u64,
        "the flood opened its connections: {seen}"
    );
    assert!(
        seen["closed_by_node"].as_u64().expect("closed") > 0,
        "the node closed connections it had no place for: {seen}"
    );
    for (status, n) in seen["statuses"].as_object().expect("statuses") {
        assert!(
            !status.starts_with('5'),
            "the flood got {n} × {status}: {seen}"
        );
    }
    let huge = seen["huge"].as_array().expect("huge");
    assert_eq!(huge.len(), HUGE);
    for h in huge {
        assert!(
            h == "413" || h == "closed",
            "a huge body was refused or cut off, not {h}: {seen}"
        );
    }
    // Bounded: connections held within the node's places (plus the one just accepted,
    // which waits for the socket it evicted to close), memory within the bound. The 16
    // more are files other than sockets that the write path may open meanwhile.
    let places = cophr_node::http::MAX_CONNECTIONS + cophr_node::http::LOOPBACK_RESERVED;
    assert!(
        most_files <= base_files + places + 1 + 16,
        "the node held {most_files} files during the flood ({base_files} before, {places} places)"
    );
    assert!(
        peak < base_rss + MEMORY_BOUND,
        "the node's peak resident memory {} MiB grew beyond {} MiB over {} MiB",
        peak >> 20,
        MEMORY_BOUND >> 20,
        base_rss >> 20
    );

    // Nothing the patient wrote is missing, and the store verifies.
    drop(node);
    let held = george.json(&["show"]);
    let held = held["items"].as_array().expect("items");
    for id in &written {
        assert!(cli_support::has_item(held, id), "entry {id} is held");
    }
    let verified = george.ok(&["verify"]);
    assert!(verified.trim_end().ends_with("OK"), "{verified}");
    let _ = std::io::stderr().flush();
}

fn reading(n: u64) -> Value {
    json!({"category": "vital-signs", "body": {
        "heart-rate": {"value": 60 + n % 40, "unit": "/min"},
    }})
}
