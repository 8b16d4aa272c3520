//! A real `cophr node run` on a disk that fills up (issue "Proven under attack",
//! exhaustion): its store on a small tmpfs, mounted in a mount namespace of the node's own
//! (`unshare --mount`, as root, as the network-namespace tests also need), while HTTP
//! writers fill it.
//!
//! - With the disk reserve (`--disk-reserve`, `node/src/store/disk.rs`): every write is
//!   acknowledged (201) or refused cleanly (507), never a server error; the patient's reads
//!   are answered on the full disk; writes resume once space returns, without a restart.
//! - With no reserve, the disk really runs out under the log and the index: every write is
//!   acknowledged, refused as a full disk (507) or, once the index failed, refused until
//!   the node restarts (503), never a server error; reads are answered once the log has
//!   room again; after a restart every acknowledged entry is there and writes go on.
//!
//! In both, after the node is killed, every acknowledged entry is held and the store
//! verifies in full. Nothing here asserts a time.

mod cli_support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cli_support::api::{agent, call};
use cli_support::node::{eventually, Node};
use cli_support::{cophr_bin, Person};
use serde_json::{json, Value};

/// Runs `cophr … node run` with HOME/store on a tmpfs of `$2` that grows to `$3` when a
/// line arrives on standard input; when the node exits, what the tmpfs holds is copied
/// back to HOME/store (as a disk would keep it), so the store outlives the namespace.
const SMALL_DISK: &str = r#"
set -e
S="$1"; size="$2"; grow="$3"; shift 3
mkdir -p "$S.small"
mount -t tmpfs -o "size=$size" tmpfs "$S.small"
cp -a "$S/." "$S.small/"
mount --bind "$S.small" "$S"
"$@" &
node=$!
if read line; then mount -o "remount,size=$grow" "$S.small"; fi
wait "$node" || true
umount "$S"
rm -rf "$S"
mkdir "$S"
cp -a "$S.small/." "$S/"
umount "$S.small"
rmdir "$S.small"
"#;

/// A node whose store is on a small disk of its own.
struct SmallDisk {
    child: Child,
    grow: Option<ChildStdin>,
    home: PathBuf,
    http: String,
    pid: u32,
}

impl SmallDisk {
    /// Starts `p`'s node with HOME/store on a tmpfs of `size` (e.g. "3m"), which grows to
    /// `grow` on [`SmallDisk::give_space`].
    fn start(p: &Person, size: &str, grow: &str, extra: &[&str]) -> SmallDisk {
        let home = p.dir().to_path_buf();
        let store = home.join("store");
        assert!(store.is_dir(), "the store exists before the node starts");
        let _ = std::fs::remove_file(home.join("node.json"));
        let log = std::fs::File::create(home.join("node.log")).expect("a log file");
        let mut child = Command::new("unshare")
            .args(["--mount", "sh", "-c", SMALL_DISK, "small-disk"])
            .arg(&store)
            .args([size, grow])
            .arg(cophr_bin())
            .arg("--home")
            .arg(&home)
            .args([
                "node",
                "run",
                "--http",
                "127.0.0.1:0",
                "--sync-interval",
                "1",
            ])
            .args(extra)
            .env_remove("COPHR_HOME")
            .env_remove("COPHR_DEVICE")
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("unshare runs (util-linux; needs root, as CI is)");
        let grow = child.stdin.take();
        let mut info = Value::Null;
        eventually("the node on the small disk to write node.json", || {
            if let Some(status) = child.try_wait().expect("wait") {
                panic!(
                    "the node on the small disk exited ({status}):\n{}",
                    std::fs::read_to_string(home.join("node.log")).unwrap_or_default()
                );
            }
            std::fs::read(home.join("node.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| {
                    info = v;
                    true
                })
        });
        SmallDisk {
            child,
            grow,
            home,
            http: info["http"].as_str().expect("an HTTP address").to_owned(),
            pid: info["pid"].as_u64().expect("a pid") as u32,
        }
    }

    /// Grows the tmpfs (space returns).
    fn give_space(&mut self) {
        let mut stdin = self.grow.take().expect("space given once");
        stdin
            .write_all(b"grow\n")
            .expect("the namespace's shell reads its input");
    }

    /// Kills the node (SIGKILL) and waits until its store is copied back to HOME/store.
    fn kill(mut self) {
        let sent = self.stop();
        assert!(sent, "kill -KILL {}", self.pid);
        let status = self.child.wait().expect("the namespace's shell ends");
        assert!(
            status.success(),
            "copying the store back failed ({status}):\n{}",
            std::fs::read_to_string(self.home.join("node.log")).unwrap_or_default()
        );
    }

    /// Sends the node SIGKILL and closes the shell's input; whether the signal was sent.
    fn stop(&mut self) -> bool {
        drop(self.grow.take());
        Command::new("kill")
            .args(["-KILL", &self.pid.to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for SmallDisk {
    /// A failed test leaves no node behind (the shell then unmounts and exits).
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.stop();
            let _ = self.child.wait();
        }
    }
}

/// A vital-signs entry with a long comment, so the disk fills in a few hundred writes.
fn reading(n: u64) -> Value {
    json!({"category": "vital-signs", "body": {
        "heart-rate": {"value": 60 + n % 40, "unit": "/min"},
        "comment": format!("reading {n}: {}", "x".repeat(4000)),
    }})
}

/// What the writers saw.
#[derive(Debug, Default)]
struct Seen {
    acked: BTreeSet<String>,
    statuses: std::collections::BTreeMap<u16, u64>,
}

/// `writers` threads POST readings until each has been refused `refusals` times in a row;
/// every acknowledged id is kept. Panics on any status not in `allowed`.
fn fill(base: &str, token: &str, record: &str, writers: u64, allowed: &[u16]) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("{base}/api/v1/records/{record}/entries");
    std::thread::scope(|s| {
        for w in 0..writers {
            let (seen, stop, url) = (seen.clone(), stop.clone(), url.clone());
            s.spawn(move || {
                let mut refused_in_a_row = 0;
                let mut n = w * 1_000_000;
                while refused_in_a_row < 3 && !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let (status, v) = call(&url, token, Some(&reading(n)));
                    let mut s = seen.lock().unwrap();
                    *s.statuses.entry(status).or_default() += 1;
                    if !allowed.contains(&status) {
                        stop.store(true, Ordering::Relaxed);
                        panic!("a write answered {status} (allowed {allowed:?}): {v}");
                    }
                    if status == 201 {
                        refused_in_a_row = 0;
                        s.acked.insert(v["id"].as_str().expect("an id").to_owned());
                    } else {
                        refused_in_a_row += 1;
                        let message = v["error"]["message"].as_str().unwrap_or_default();
                        assert!(
                            message.contains("disk is full") || message.contains("index failed"),
                            "a refusal says why: {v}"
                        );
                    }
                    assert!(n < w * 1_000_000 + 100_000, "the disk never filled");
                }
            });
        }
    });
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

/// Every entry id the store at `p`'s home holds, as `show --json` lists the items.
fn held(p: &Person) -> BTreeSet<String> {
    let v = p.json(&["show"]);
    let mut out = BTreeSet::new();
    for i in v["items"].as_array().into_iter().flatten() {
        for k in ["id", "version"] {
            if let Some(s) = i[k].as_str() {
                out.insert(s.to_owned());
            }
        }
    }
    out
}

/// George, his record and one entry, so the store exists before the node starts.
fn george() -> (Person, String) {
    let george = Person::new("George", "patient", None);
    george.ok(&["record", "create"]);
    george.add(&["problems", "--problem", "Type 2 diabetes"]);
    let token = george.ok(&["token"]).trim().to_owned();
    (george, token)
}

fn store_verifies(p: &Person) {
    let out = p.ok(&["verify"]);
    assert!(!out.to_lowercase().contains("problem"), "verify: {out}");
}

fn timeline(base: &str, token: &str, record: &str) -> u16 {
    call(
        &format!("{base}/api/v1/records/{record}/timeline?limit=5"),
        token,
        None,
    )
    .0
}

/// Sends only the headers of a document upload of `len` bytes that waits for
/// `100 Continue`, and returns the status line of the node's first answer.
fn first_answer_when_expecting_continue(
    base: &str,
    token: &str,
    record: &str,
    len: usize,
) -> String {
    use std::io::{BufRead, BufReader};
    let host = base.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).expect("connect to the node");
    // A guard against a hang, not an ordering: the node answers at once or the test fails.
    conn.set_read_timeout(Some(std::time::Duration::from_secs(60)))
        .expect("a read timeout");
    write!(
        conn,
        "POST /api/v1/records/{record}/documents?title=Scan HTTP/1.1\r\nHost: {host}\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/pdf\r\n\
         Content-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
    )
    .expect("send the headers");
    let mut line = String::new();
    BufReader::new(conn)
        .read_line(&mut line)
        .expect("the node answers");
    line.trim_end().to_owned()
}

fn log_of(home: &Path) -> String {
    std::fs::read_to_string(home.join("node.log")).unwrap_or_default()
}

#[test]
fn with_the_reserve_a_full_disk_refuses_writes_cleanly_reads_go_on_and_writes_resume() {
    let (george, token) = george();
    let record = george.actor.clone();
    let mut node = SmallDisk::start(&george, "4m", "64m", &["--disk-reserve", "1"]);
    let base = node.http.clone();

    let seen = fill(&base, &token, &record, 3, &[201, 507]);
    assert!(seen.acked.len() > 50, "writes were taken first: {seen:?}");
    assert!(seen.statuses.get(&507).copied().unwrap_or(0) >= 3);

    // The disk is full: the patient still reads (her read's audit event uses the reserve),
    // and a CLI write through the node (as large as those refused) is refused with the
    // reason.
    assert_eq!(
        timeline(&base, &token, &record),
        200,
        "{}",
        log_of(&node.home)
    );
    let long = "y".repeat(6000);
    let refused = george.live(&[
        "add",
        "problems",
        "--problem",
        "Hypertension",
        "--description",
        &long,
    ]);
    assert_ne!(refused.code, 0, "a CLI write on the full disk is refused");
    assert!(
        refused.stderr.contains("disk is full"),
        "{}",
        refused.stderr
    );
    // So is a document's file, before a byte of it is stored.
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..300_000u32).map(|i| (i % 251) as u8));
    let mut resp = agent()
        .post(&format!(
            "{base}/api/v1/records/{record}/documents?title=Clinic%20letter"
        ))
        .header("authorization", &format!("Bearer {token}"))
        .content_type("application/pdf")
        .send(&pdf[..])
        .expect("the node answers");
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    assert_eq!(
        resp.status().as_u16(),
        507,
        "a document on the full disk: {body}"
    );

    // A client that waits for `100 Continue` (as curl does for a large body) is answered
    // 507 without being asked for a byte of its file.
    assert_eq!(
        first_answer_when_expecting_continue(&base, &token, &record, 300_000),
        "HTTP/1.1 507 Insufficient Storage"
    );

    // Space returns: writes are taken again, without a restart.
    node.give_space();
    let url = format!("{base}/api/v1/records/{record}/entries");
    let mut after = None;
    eventually("a write to be taken once space returns", || {
        let (status, v) = call(&url, &token, Some(&reading(9_999_999)));
        assert!(status == 201 || status == 507, "{status}: {v}");
        if status == 201 {
            after = v["id"].as_str().map(str::to_owned);
        }
        status == 201
    });
    let after = after.expect("an id");
    assert_eq!(timeline(&base, &token, &record), 200);

    node.kill();
    let held = held(&george);
    let lost: Vec<_> = seen.acked.iter().filter(|id| !held.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    assert!(held.contains(&after));
    store_verifies(&george);
}

#[test]
fn with_no_reserve_enospc_is_refused_cleanly_reads_go_on_and_a_restart_recovers() {
    let (george, token) = george();
    let record = george.actor.clone();
    let mut node = SmallDisk::start(&george, "3m", "64m", &["--disk-reserve", "0"]);
    let base = node.http.clone();

    // The log or the index runs out of space: 507, or 503 once the index has failed.
    let seen = fill(&base, &token, &record, 3, &[201, 503, 507]);
    assert!(seen.acked.len() > 50, "writes were taken first: {seen:?}");
    // Until space returns a read may be refused too (its audit event cannot be written);
    // never a server error.
    let status = timeline(&base, &token, &record);
    assert!(
        [200, 503, 507].contains(&status),
        "a read on a full disk: {status}"
    );

    node.give_space();
    // Reads are answered again (if the index failed, their audit events go to the log
    // unindexed); writes are taken, or refused until the restart if the index failed.
    eventually("reads to be answered once space returns", || {
        let status = timeline(&base, &token, &record);
        assert!([200, 503, 507].contains(&status), "a read: {status}");
        status == 200
    });
    let url = format!("{base}/api/v1/records/{record}/entries");
    let (status, v) = call(&url, &token, Some(&reading(7_777_777)));
    assert!(status == 201 || status == 503, "{status}: {v}");

    // A crash, then a restart on a disk with room: every acknowledged entry is there, the
    // store verifies, and writes go on.
    node.kill();
    let held_after = held(&george);
    let lost: Vec<_> = seen
        .acked
        .iter()
        .filter(|id| !held_after.contains(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    store_verifies(&george);
    let node = Node::start(&george, &[]);
    let base = node.http().expect("HTTP");
    let (status, v) = call(
        &format!("{base}/api/v1/records/{record}/entries"),
        &token,
        Some(&reading(8_888_888)),
    );
    assert_eq!(status, 201, "a write after the restart: {v}");
    assert_eq!(timeline(&base, &token, &record), 200);
}
