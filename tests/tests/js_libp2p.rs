//! An independent libp2p implementation talks to a cophr node: a js-libp2p peer (npm
//! `libp2p` with TCP, noise, yamux, identify and ping; `tests/js-peer/`, installed by
//! `.ci/deps`) dials a real `cophr node run`, pings it, and completes identify, learning
//! the cophr protocols. The node stays up and serves its own commands afterwards.

mod cli_support;

use std::path::PathBuf;
use std::process::Command;

use cli_support::node::Node;
use cli_support::Person;
use serde_json::Value;

fn js_peer() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js-peer");
    assert!(
        dir.join("node_modules/libp2p/package.json").is_file(),
        "js-libp2p is not installed in {}: run bash .ci/deps",
        dir.display()
    );
    dir
}

#[test]
fn a_js_libp2p_peer_pings_and_identifies_a_cophr_node() {
    let dir = js_peer();
    let george = Person::new("George Jones", "patient", None);
    let node = Node::start(&george, &[]);
    let out = Command::new("node")
        .current_dir(&dir)
        .arg("peer.mjs")
        .arg(node.addr())
        .output()
        .expect("node (Node.js) runs: .ci/deps installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the js-libp2p peer failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(v["peer"], node.peer_id().as_str(), "{v}");
    assert!(v["rtt"].as_f64().is_some(), "{v}");
    assert_eq!(v["protocolVersion"], "/cophr/1");
    assert!(v["agentVersion"]
        .as_str()
        .is_some_and(|a| a.starts_with("rust-libp2p/")));
    let protocols: Vec<&str> = v["protocols"]
        .as_array()
        .expect("protocols")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for p in ["/cophr/sync/1", "/ipfs/ping/1.0.0", "/ipfs/id/1.0.0"] {
        assert!(protocols.contains(&p), "{p} not announced: {protocols:?}");
    }
    // The node is still up and answers its own commands.
    let status = george.live_json(&["status"]);
    assert_eq!(status["peer_id"], node.peer_id().as_str(), "{status}");
}
