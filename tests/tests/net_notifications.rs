//! Results released after review, across real `cophr node run` processes (issue 15): the
//! consultant releases a reviewed lab result on their node; it replicates through George's
//! blind home host to George's node, whose HTTP API streams the notification (server-sent
//! events) to George's app. Before the release, the result reaches George's node and
//! notifies no one. Run `cargo build -p cophr` first.

mod cli_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use cli_support::node::{eventually, Node};
use cli_support::Person;

/// An open SSE stream on George's node (raw HTTP/1.1 over loopback).
struct Events {
    conn: TcpStream,
    seen: String,
}

impl Events {
    fn open(base: &str, token: &str, record: &str) -> Events {
        let addr = base.trim_start_matches("http://");
        let mut conn = TcpStream::connect(addr).expect("George's HTTP API");
        write!(
            conn,
            "GET /api/v1/records/{record}/notifications/stream HTTP/1.1\r\nHost: {addr}\r\n\
             Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        Events {
            conn,
            seen: String::new(),
        }
    }

    /// Reads until `needle` has arrived (true) or `wait` passed (false).
    fn wait_for(&mut self, needle: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut buf = [0u8; 4096];
        while !self.seen.contains(needle) {
            if Instant::now() > deadline {
                return false;
            }
            match self.conn.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("the stream failed: {e}"),
            }
        }
        true
    }
}

#[test]
fn the_consultant_releases_a_result_and_georges_app_stream_says_so() {
    let george = Person::new("George Jones", "patient", None);
    let consultant = Person::new("Dr Rao", "consultant", Some("Leeds Renal Unit"));
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &consultant.actor,
        "--level",
        "write",
        "--categories",
        "lab-results",
    ]);
    george.live_ok(&["host", &host_node.addr()]);
    let _consultant_node = Node::start(&consultant, &[]);
    consultant.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);

    // George subscribes to released results and his app opens the stream.
    let out = george.live_ok(&["notifications", "subscribe", "--events", "result-released"]);
    assert!(out.contains("Subscribed"), "{out}");
    let token = george.live_ok(&["token"]).trim().to_owned();
    let base = george_node.http().expect("George's node serves HTTP");
    let mut events = Events::open(&base, &token, &george.actor);
    assert!(
        events.wait_for("text/event-stream", Duration::from_secs(10)),
        "{}",
        events.seen
    );

    // The lab result arrives (written on the consultant's node) and reaches George's node:
    // not yet released, so no notification.
    let result = consultant.live_add(&[
        "lab-results",
        "--test",
        "Potassium",
        "--result",
        "5.9",
        "--unit",
        "mmol/L",
    ]);
    eventually("George's node to hold the result", || george.sees(&result));
    let list = george.live_json(&["notifications", "list"]);
    assert_eq!(list["total"], 0, "{list}");
    assert!(!events.wait_for("event: notification", Duration::from_millis(500)));

    // The patient cannot release his own result (exit 3).
    let r = george.live(&["result", "release", &result]);
    assert_eq!(r.code, 3, "{r:?}");

    // The consultant releases it: George's stream delivers the notification.
    let released_at = Instant::now();
    consultant.live_ok(&[
        "result",
        "release",
        &result,
        "--note",
        "Seen by the renal team",
    ]);
    let id = format!("id: result-released:{result}");
    assert!(
        events.wait_for(&id, Duration::from_secs(30)),
        "no notification on George's stream: {}\n{}",
        events.seen,
        george_node.log()
    );
    eprintln!("released → George's stream: {:?}", released_at.elapsed());
    assert!(!events.seen.contains("Potassium"), "no clinical content");
    // A second release of the version is refused on the consultant's node (exit 7).
    let again = consultant.live(&["result", "release", &result]);
    assert_eq!(again.code, 7, "{again:?}");

    // Listed once, unread; delivering it was audited on George's node.
    let list = george.live_json(&["notifications", "list"]);
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["unread"], 1, "{list}");
    let audit = george.live_json(&["audit", "--all"]);
    assert!(
        audit.to_string().contains("notifications (API): 1"),
        "{audit}"
    );
}
