//! Hole punching through real NATs. Two private networks, each behind its own NAT
//! (network namespaces, veth pairs, nftables masquerade; `netns/nat.sh`), and a relay on
//! the public network between them. George's personal node is reachable only through the
//! relay; Mary's node follows his record there; the nodes upgrade to a direct connection
//! (dcutr) and keep syncing over it once the relay is gone.
//!
//! Needs root, iproute2 and nftables (`bash .ci/deps` installs them; CI runs as root).
//! Without them the test fails and says so: it never skips.

mod cli_support;

use std::path::Path;
use std::process::Command;

use cli_support::node::{eventually, Node};
use cli_support::Person;
use serde_json::Value;

/// The namespaces of one test run, removed when dropped.
struct Nat {
    prefix: String,
}

fn script() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/netns/nat.sh"))
}

impl Nat {
    fn up() -> Nat {
        let uid = Command::new("id").arg("-u").output().expect("`id` runs");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "the NAT test creates network namespaces and needs root (CI runs as root)"
        );
        for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
            let found = Command::new(tool).arg("-V").output().is_ok();
            assert!(
                found,
                "the NAT test needs `{tool}` (Debian package {package}): run `bash .ci/deps`"
            );
        }
        let prefix = format!("cn{}", std::process::id() % 100_000);
        let out = Command::new("bash")
            .arg(script())
            .args(["up", &prefix])
            .output()
            .expect("bash runs");
        let nat = Nat { prefix };
        assert!(
            out.status.success(),
            "setting up the NAT namespaces failed (are network namespaces allowed here?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        nat
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", &self.prefix])
            .status();
    }
}

fn listen(p: &Person) -> Vec<String> {
    p.live_json(&["status"])["listen"]
        .as_array()
        .expect("listen addresses")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

#[test]
fn nodes_behind_separate_nats_punch_a_hole_and_sync_directly() {
    // Declared first, so the namespaces go after the nodes in them.
    let nat = Nat::up();
    let relay_person = Person::new("Leeds Community Host", "host", None);
    let george = Person::new("George Jones", "patient", None);
    let mary = Person::new("Mary Jones", "carer", None);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &mary.actor,
        "--level",
        "view",
        "--categories",
        "all",
    ]);
    george.live_add(&["problems", "--problem", "Type 2 diabetes"]);

    // The relay, on the public network.
    let mut relay = Node::start_in(
        &relay_person,
        Some(&nat.ns("pub")),
        &[
            "--listen",
            "/ip4/203.0.113.1/udp/0/quic-v1",
            "--relay-server",
        ],
    );
    let relay_addr = relay.info["listen"]
        .as_array()
        .expect("listen addresses")
        .iter()
        .filter_map(Value::as_str)
        .find(|a| a.contains("/quic-v1/"))
        .expect("the relay's QUIC address")
        .to_owned();

    // George's node behind NAT A, reachable through the relay.
    let george_node = Node::start_in(
        &george,
        Some(&nat.ns("a")),
        &[
            "--listen",
            "/ip4/198.51.100.2/udp/0/quic-v1",
            "--relay",
            &relay_addr,
        ],
    );
    let mut circuit = None;
    eventually("George's node to listen through the relay", || {
        circuit = listen(&george)
            .into_iter()
            .find(|a| a.contains("/p2p-circuit/") && a.contains("/quic-v1/"));
        circuit.is_some()
    });
    let circuit = circuit.expect("a relayed address");

    // Mary's node behind NAT B follows George's record at his relayed address.
    let mary_node = Node::start_in(
        &mary,
        Some(&nat.ns("b")),
        &["--listen", "/ip4/192.0.2.2/udp/0/quic-v1"],
    );
    let follow = mary.live_json(&["follow", &george.actor, "--host", &circuit]);
    assert!(follow["pulled"].as_u64().unwrap() >= 3, "{follow}");

    // The relayed connection is upgraded: a direct connection between the NATs' public
    // addresses, made by hole punching.
    let george_peer = george_node.peer_id();
    eventually("a hole-punched direct connection", || {
        let log = mary_node.log() + &george_node.log();
        log.contains("hole punch: direct connection")
    });
    let log = mary_node.log();
    assert!(
        log.lines().any(|l| l.contains("connection established")
            && l.contains(&george_peer)
            && l.contains("address=/ip4/203.0.113.2/")
            && l.contains("relayed=false")),
        "Mary's node has no direct connection to George's NAT:\n{log}"
    );

    // With the relay gone, George's new entry still reaches Mary, over the direct path.
    relay.kill();
    let id = george.live_add(&["problems", "--problem", "Hypertension"]);
    eventually("George's new entry to reach Mary without the relay", || {
        mary.sees(&id)
    });
    drop(mary_node);
    drop(george_node);
}
