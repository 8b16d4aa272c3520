//! The HTTP API of a real `cophr node run` process: the token from `cophr token`, a record
//! written and read over HTTP, seen by the CLI through the same node, an export that
//! `cophr verify` accepts, and the address rules of `--http`.

mod cli_support;

use std::os::unix::fs::PermissionsExt;

use cli_support::node::{eventually, Node};
use cli_support::Person;
use serde_json::{json, Value};

struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
}

impl Api {
    fn new(base: String, token: String) -> Api {
        // A fresh connection per request: a pooled one the node has just closed made a
        // request fail with "Peer disconnected" once in CI.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .build()
            .into();
        Api { base, token, agent }
    }

    /// A request: (status, body bytes, content type).
    fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Vec<u8>, String) {
        let url = format!("{}{path}", self.base);
        let auth = token.map(|t| format!("Bearer {t}"));
        let resp = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (m, body) => {
                let mut r = match m {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    other => panic!("method {other}"),
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.header("Content-Type", "application/json")
                    .send(body.unwrap_or(json!({})).to_string())
            }
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .expect("a body");
        (status, bytes, ct)
    }

    fn json(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
        let (status, bytes, _) = self.call(method, path, Some(&self.token), body);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        assert_eq!(status, want, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }
}

#[test]
fn the_api_of_a_running_node_writes_reads_audits_and_exports() {
    let ann = Person::new("Ann Patient", "patient", None);
    // The token is created with the identity, mode 0600.
    let token_file = ann.dir().join("api-token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let token = ann.live_ok(&["token"]).trim().to_owned();
    assert_eq!(token.len(), 52, "{token}");

    let node = Node::start(&ann, &[]);
    let base = node.http().expect("node.json names the HTTP API");
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let status = ann.live_ok(&["status"]);
    assert!(status.contains(&base), "{status}");
    let api = Api::new(base, token.clone());

    // Missing and wrong tokens.
    for t in [None, Some("wrong")] {
        let (status, bytes, ct) = api.call("POST", "/api/v1/records", t, Some(json!({})));
        assert_eq!(status, 401);
        assert!(ct.starts_with("application/json"), "{ct}");
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["error"]["code"], "unauthorized");
    }
    assert_eq!(ann.live_json(&["records"])["records"], json!([]));

    let who = api.json("GET", "/api/v1/whoami", None, 200);
    assert_eq!(who["actor"], ann.actor.as_str());
    assert_eq!(who["node_peer_id"], node.peer_id().as_str());

    // Create the record and an entry over HTTP; the CLI (through the node) sees them.
    let rid = api.json("POST", "/api/v1/records", None, 201)["record"]
        .as_str()
        .unwrap()
        .to_owned();
    let added = api.json(
        "POST",
        &format!("/api/v1/records/{rid}/entries"),
        Some(json!({"category": "medications", "body": {"medication": "Metformin", "dose": "500 mg"}})),
        201,
    );
    let eid = added["id"].as_str().unwrap().to_owned();
    let items = ann.live_json(&["show"])["items"].clone();
    assert_eq!(items[0]["id"], eid.as_str(), "{items}");
    assert_eq!(items[0]["body"]["medication"], "Metformin");

    // Read it over HTTP: audited like the CLI's reads, with the node's identity.
    let list = api.json("GET", &format!("/api/v1/records/{rid}/entries"), None, 200);
    assert_eq!(list[0]["id"], eid.as_str());
    let audit = ann.live_json(&["audit", "--all"]);
    let events = audit["events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["action"] == "view"
            && e["detail"].as_str().unwrap_or_default().contains("(API)")
            && e["entries"][0] == eid.as_str()),
        "{audit}"
    );

    // The export downloads a file that `cophr verify` accepts.
    let (status, bytes, ct) = api.call(
        "GET",
        &format!("/api/v1/records/{rid}/export"),
        Some(&token),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(ct, "application/octet-stream");
    let file = ann.dir().join("download.cophr");
    std::fs::write(&file, &bytes).unwrap();
    let out = ann.live_ok(&["verify", file.to_str().unwrap()]);
    assert!(out.contains(": OK"), "{out}");

    // An oversized body is refused with 413 and stores nothing.
    let before = ann.live_json(&["records"])["records"][0]["entries"].clone();
    let big = "x".repeat(9 << 20);
    let (status, _, _) = api.call(
        "POST",
        &format!("/api/v1/records/{rid}/entries"),
        Some(&token),
        Some(json!({"category": "about-me", "body": {"thing-1": big}})),
    );
    assert_eq!(status, 413);
    assert_eq!(ann.live_json(&["records"])["records"][0]["entries"], before);
}

#[test]
fn a_non_loopback_http_address_needs_the_flag_and_no_http_serves_none() {
    let p = Person::new("Bo Patient", "patient", None);
    let r = p.live(&["node", "run", "--http", "0.0.0.0:0"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("--http-allow-remote"), "{}", r.stderr);
    assert!(!p.dir().join("node.json").exists());
    let node = Node::start(&p, &["--no-http"]);
    assert_eq!(node.http(), None);
    let status = p.live_ok(&["status"]);
    assert!(status.contains("HTTP API: not served"), "{status}");
}

#[test]
fn a_write_through_the_api_is_pushed_to_the_home_host_at_once() {
    let ann = Person::new("Ann Patient", "patient", None);
    let host = Person::new("Community Host", "host", Some("Leeds Community Host"));
    // No periodic catch-up within the test's deadline: only the announcement moves it.
    let slow = ["--sync-interval", "3600"];
    let host_node = Node::start(&host, &slow);
    // A home without a token (made before tokens existed) gets one when its node starts.
    let token_file = ann.dir().join("api-token");
    std::fs::remove_file(&token_file).unwrap();
    let node = Node::start(&ann, &slow);
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    ann.live_ok(&["record", "create"]);
    let out = ann.live_ok(&["host", &host_node.addr()]);
    assert!(out.contains("is now hosted at"), "{out}");
    let held = || host.live_json(&["records"])["records"][0]["entries"].as_u64();
    let before = held().expect("the host holds the record");
    let api = Api::new(
        node.http().unwrap(),
        ann.live_ok(&["token"]).trim().to_owned(),
    );
    api.json(
        "POST",
        &format!("/api/v1/records/{}/entries", ann.actor),
        Some(json!({"category": "allergies", "body": {"agent": "Latex"}})),
        201,
    );
    eventually("the home host to receive the API's write", || {
        held().is_some_and(|n| n > before)
    });
}
