//! Notifications: George is told of his lab results. The lab writes a result on its own
//! node; it reaches the home host and George's node; `cophr watch` on George's side prints
//! one line for it (time, record, category, author, summary), and nothing for what its
//! filter leaves out. Real node processes on 127.0.0.1.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use cli_support::node::{Node, DEADLINE};
use cli_support::{cophr_bin, Person};

/// A running `cophr watch`, its standard output collected by a thread.
struct Watch {
    child: Child,
    out: mpsc::Receiver<String>,
}

impl Watch {
    /// Starts `cophr --home … [--json] watch ARGS…` and waits until it is subscribed.
    fn start(p: &Person, json: bool, args: &[&str]) -> Watch {
        let mut c = Command::new(cophr_bin());
        c.env_remove("COPHR_HOME")
            .env_remove("COPHR_DEVICE")
            .env_remove("RUST_LOG")
            .arg("--home")
            .arg(p.dir());
        if json {
            c.arg("--json");
        }
        let mut child = c
            .arg("watch")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cophr watch starts");
        let stderr = child.stderr.take().expect("stderr");
        let (etx, err) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = err
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("cophr watch did not start within {DEADLINE:?}"));
        assert!(first.starts_with("watching"), "watch said: {first}");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Watch { child, out }
    }

    fn next_line(&self) -> String {
        self.out
            .recv_timeout(DEADLINE)
            .unwrap_or_else(|_| panic!("no line from cophr watch within {DEADLINE:?}"))
    }

    /// Waits for the process to exit (after `--count` lines) and checks its status.
    fn finished(mut self) {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "cophr watch exited with {status}");
                return;
            }
            assert!(start.elapsed() < DEADLINE, "cophr watch did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn george_is_notified_of_his_lab_results() {
    let george = Person::new("George Jones", "patient", None);
    let lab = Person::new("Ana Costa", "biomedical scientist", Some("City Lab"));
    let host = Person::new("Community Host", "host", None);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &lab.actor,
        "--level",
        "write",
        "--categories",
        "lab-results",
    ]);
    let _host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    let _lab_node = Node::start(&lab, &[]);
    let out = george.live_ok(&["host", &_host_node.addr()]);
    assert!(out.contains("is now hosted at"), "{out}");
    lab.live_json(&["follow", &george.actor, "--host", &_host_node.addr()]);

    // George watches lab results only (as text), and everything (as JSON).
    let labs = Watch::start(
        &george,
        false,
        &["--categories", "lab-results", "--count", "1"],
    );
    let all = Watch::start(&george, true, &["--count", "2"]);
    // George notes a problem himself: not a lab result.
    george.live_add(&["problems", "--problem", "Renal disease"]);
    // The lab writes a result on its node.
    let id = lab.live_add(&[
        "lab-results",
        "--test",
        "HbA1c",
        "--result",
        "48",
        "--unit",
        "mmol/mol",
    ]);
    let line = labs.next_line();
    assert!(
        line.contains(
            "lab-results added by Ana Costa (biomedical scientist) [self-asserted]: HbA1c: 48 mmol/mol"
        ),
        "{line}"
    );
    assert!(line.contains(&george.actor[..10]), "{line}");
    labs.finished();
    // The unfiltered watcher saw both, in order, as JSON.
    let first: serde_json::Value = serde_json::from_str(&all.next_line()).unwrap();
    let second: serde_json::Value = serde_json::from_str(&all.next_line()).unwrap();
    assert_eq!(first["category"], "problems");
    assert_eq!(first["kind"], "added");
    assert_eq!(second["category"], "lab-results");
    assert_eq!(second["entry"], id.as_str());
    assert_eq!(second["author"], lab.actor.as_str());
    assert_eq!(second["author_name"], "Ana Costa");
    assert_eq!(second["author_assurance"], "self-asserted");
    all.finished();
}

/// `cophr watch` shows George's notifications too: subscribed to released results, he gets
/// a line for the lab's release of a result (once, with no content), besides the lines for
/// the entries themselves.
#[test]
fn watch_shows_a_released_result_as_a_notification() {
    let george = Person::new("George Jones", "patient", None);
    let lab = Person::new("Ana Costa", "biomedical scientist", Some("City Lab"));
    let host = Person::new("Community Host", "host", None);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &lab.actor,
        "--level",
        "write",
        "--categories",
        "lab-results",
    ]);
    let host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    let _lab_node = Node::start(&lab, &[]);
    george.live_ok(&["host", &host_node.addr()]);
    lab.live_json(&["follow", &george.actor, "--host", &host_node.addr()]);
    george.live_ok(&["notifications", "subscribe", "--events", "result-released"]);

    let watch = Watch::start(&george, true, &["--count", "3"]);
    let id = lab.live_add(&["lab-results", "--test", "eGFR", "--result", "38"]);
    lab.live_ok(&["result", "release", &id]);
    let lines: Vec<serde_json::Value> = (0..3)
        .map(|_| serde_json::from_str(&watch.next_line()).unwrap())
        .collect();
    watch.finished();
    let notes: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l.get("notification").is_some())
        .collect();
    assert_eq!(notes.len(), 1, "{lines:?}");
    assert_eq!(notes[0]["event"], "result-released");
    assert_eq!(notes[0]["entry"], id.as_str());
    assert_eq!(notes[0]["notification"], format!("result-released:{id}"));
    assert!(!notes[0].to_string().contains("eGFR"), "no content");
    assert_eq!(
        lines.iter().filter(|l| l["kind"] == "added").count(),
        1,
        "{lines:?}"
    );
}
