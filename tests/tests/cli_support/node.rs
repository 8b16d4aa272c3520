//! Real `cophr node run` processes for the network tests: started in a person's home on
//! 127.0.0.1 with ephemeral ports, found through the `node.json` they write, killed when
//! dropped. Commands run without `--now` (the nodes use the real clock for what they sign
//! themselves, and an entry may not be older than its causal past).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{cophr_bin, Person, Run};

/// How long a node may take to come up, or a condition to hold.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `cond` until it holds, or panics with `what` after `DEADLINE`.
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out after {DEADLINE:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn command() -> Command {
    let mut c = Command::new(cophr_bin());
    c.env_remove("COPHR_HOME")
        .env_remove("COPHR_DEVICE")
        .env_remove("RUST_LOG");
    c
}

impl Person {
    /// Runs `cophr --home HOME ARGS…` on the real clock (through the node if one runs).
    pub fn live(&self, args: &[&str]) -> Run {
        self.exec(None, args)
    }

    /// Runs on the real clock and asserts success; returns stdout.
    pub fn live_ok(&self, args: &[&str]) -> String {
        self.succeeded(args, self.live(args))
    }

    /// Runs on the real clock with `--json` and parses the output.
    pub fn live_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.live_ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Adds an entry on the real clock, returning its id.
    pub fn live_add(&self, args: &[&str]) -> String {
        let mut all = vec!["add"];
        all.extend_from_slice(args);
        let id = self.live_ok(&all).trim().to_owned();
        assert!(id.starts_with("e-"), "add printed {id}");
        id
    }

    /// The status of task `id` in this person's `task list`, if listed.
    pub fn task_status(&self, id: &str) -> Option<String> {
        let list: Value = self.live_json(&["task", "list"]);
        list["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["id"] == id)
            .and_then(|t| t["status"].as_str().map(str::to_owned))
    }

    /// Whether this person's current view of the record includes entry `id`.
    pub fn sees(&self, id: &str) -> bool {
        let r = self.live(&["--json", "show"]);
        r.code == 0
            && serde_json::from_str::<Value>(&r.stdout)
                .ok()
                .and_then(|v| v["items"].as_array().cloned())
                .is_some_and(|items| super::has_item(&items, id))
    }
}

/// A running `cophr node run`.
#[derive(Debug)]
pub struct Node {
    /// Whose node.
    pub name: String,
    home: PathBuf,
    child: Option<Child>,
    /// What the node wrote to `node.json`.
    pub info: Value,
}

impl Node {
    /// Starts `cophr node run` in `p`'s home (syncing every second unless `extra` gives
    /// `--sync-interval`) with `extra` flags,
    /// and waits until it has written `node.json`. Its log goes to HOME/node.log. The HTTP
    /// API listens on an ephemeral loopback port unless `extra` says otherwise.
    pub fn start(p: &Person, extra: &[&str]) -> Node {
        Node::start_in(p, None, extra)
    }

    /// Like [`Node::start`], in network namespace `netns` if given (`ip netns exec`; the
    /// control socket is a file, so commands still reach the node).
    pub fn start_in(p: &Person, netns: Option<&str>, extra: &[&str]) -> Node {
        let home = p.dir().to_path_buf();
        let http: &[&str] = if extra
            .iter()
            .any(|a| a.starts_with("--http") || *a == "--no-http")
        {
            &[]
        } else {
            &["--http", "127.0.0.1:0"]
        };
        let sync: &[&str] = if extra.contains(&"--sync-interval") {
            &[]
        } else {
            &["--sync-interval", "1"]
        };
        let _ = std::fs::remove_file(home.join("node.json"));
        let log = File::create(home.join("node.log")).expect("a log file");
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns])
                    .arg(cophr_bin())
                    .env_remove("COPHR_HOME")
                    .env_remove("COPHR_DEVICE");
                c
            }
            None => command(),
        };
        let child = cmd
            .arg("--home")
            .arg(&home)
            .args(["node", "run"])
            .args(sync)
            .args(http)
            .args(extra)
            .env("RUST_LOG", "info,cophr_node=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cophr node run starts");
        let mut node = Node {
            name: p.name.clone(),
            home,
            child: Some(child),
            info: Value::Null,
        };
        let json = node.home.join("node.json");
        eventually(&format!("{}'s node to write node.json", node.name), || {
            if let Some(status) = node
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "{}'s node exited ({status}) before it listened:\n{}",
                    node.name,
                    node.log()
                );
            }
            std::fs::read(&json)
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                .is_some_and(|v| {
                    node.info = v;
                    true
                })
        });
        node
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("node.log")).unwrap_or_default()
    }

    /// Its peer id.
    pub fn peer_id(&self) -> String {
        self.info["peer_id"].as_str().expect("peer id").to_owned()
    }

    /// Its TCP address, ending in /p2p/<peer id>.
    pub fn addr(&self) -> String {
        self.info["listen"]
            .as_array()
            .expect("listen addresses")
            .iter()
            .filter_map(Value::as_str)
            .find(|a| a.contains("/tcp/"))
            .expect("a TCP address")
            .to_owned()
    }

    /// The HTTP API's base URL (`http://127.0.0.1:PORT`), if the node serves it.
    pub fn http(&self) -> Option<String> {
        self.info["http"].as_str().map(str::to_owned)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// The home's control socket.
    pub fn socket(&self) -> PathBuf {
        self.home.join("control.sock")
    }

    /// The home.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Kills the node with SIGKILL (as a crash or power loss would) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the node to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success(), "kill -TERM failed");
        let mut status = None;
        eventually(
            &format!("{}'s node to exit after SIGTERM", self.name),
            || {
                status = c.try_wait().expect("wait");
                status.is_some()
            },
        );
        status.expect("exited")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
