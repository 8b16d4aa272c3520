//! `cophr share` against a running node (`docs/emergency-summary.md`): the link points at the
//! node's HTTP server, which serves the ciphertext to anyone with the link until the patient
//! ends it; the key is only in the link. Or the record's home host serves it, holding only
//! the ciphertext (who may hand a host shares: `protocol/tests/hosted_shares.rs`).

mod cli_support;

use cli_support::node::Node;
use cli_support::Person;
use cophr_protocol::share::{self, ShareKey};
use serde_json::Value;

fn fetch(url: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let mut resp = agent.get(url).call().expect("the node answers");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(4 << 20)
        .read_to_vec()
        .expect("a body");
    (status, body)
}

#[test]
fn cophr_share_makes_a_link_the_node_serves_until_it_is_ended() {
    let george = Person::new("George Jones", "patient", None);
    george.ok(&["record", "create"]);
    george.add(&["allergies", "--agent", "Penicillin", "--reaction", "rash"]);
    george.add(&["problems", "--problem", "Type 2 diabetes"]);
    // Without a node there is no server for the link, unless one is named.
    let err = george.fails(1, &["share", "create"]);
    assert!(err.contains("cophr node run"), "{err}");

    let node = Node::start(&george, &["--http", "127.0.0.1:0"]);
    let base = node.http().expect("the node's HTTP address");
    let base = base.trim_end_matches('/');
    let made = george.live_json(&["share", "create", "--expires", "2h", "--label", "A&E"]);
    let link = made["link"].as_str().expect("a link");
    assert!(link.starts_with(&format!("{base}/s/")), "{link}");
    let (url, key) = link.split_once('#').expect("the key in the fragment");
    let id = made["id"].as_str().expect("an id");
    // The human form prints the link and a QR code.
    let text = george.live_ok(&["share", "create", "--expires", "30m"]);
    assert!(text.contains(&format!("{base}/s/")), "{text}");
    assert!(
        text.contains('█') || text.contains('▀'),
        "a QR code: {text}"
    );

    // The page and the ciphertext, without a token; the key opens it.
    let (status, page) = fetch(url);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&page).contains("/share.js"));
    let (status, blob) = fetch(&format!("{url}/blob"));
    assert_eq!(status, 200);
    let plain = share::open(&ShareKey::from_text(key).unwrap(), &blob).expect("decrypts");
    let bundle: Value = serde_json::from_slice(&plain).unwrap();
    let all = bundle.to_string();
    assert!(all.contains("Penicillin") && all.contains("Type 2 diabetes"));

    let list = george.live_json(&["share", "list"]);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .expect("listed")
        .clone();
    assert_eq!(row["opens"], 1);
    assert_eq!(row["label"], "A&E");
    assert!(!list.to_string().contains(key), "the key is never listed");

    george.live_ok(&["share", "end", id]);
    let (status, _) = fetch(&format!("{url}/blob"));
    assert_eq!(status, 410);
    let audit = george.live_ok(&["audit"]);
    assert!(
        audit.contains(&format!("emergency summary opened via share {id}")),
        "{audit}"
    );
    assert!(!audit.contains(key));
    drop(node);
}

#[test]
fn the_home_host_serves_a_share_it_cannot_read_and_the_openings_reach_the_patient() {
    let george = Person::new("George Jones", "patient", None);
    let host = Person::new("Community Host", "host", None);
    george.ok(&["record", "create"]);
    george.add(&["allergies", "--agent", "Penicillin", "--reaction", "rash"]);
    // George's own node serves no HTTP at all: the host does.
    let host_node = Node::start(&host, &["--http", "127.0.0.1:0"]);
    let _george_node = Node::start(&george, &["--no-http"]);
    george.live_ok(&["host", &host_node.addr()]);
    let host_url = host_node.http().expect("the host's HTTP address");
    let host_url = host_url.trim_end_matches('/').to_owned();

    let made = george.live_json(&[
        "share",
        "create",
        "--expires",
        "2h",
        "--label",
        "Holiday",
        "--on-host",
        &host_url,
    ]);
    let link = made["link"].as_str().expect("a link");
    assert!(link.starts_with(&format!("{host_url}/s/")), "{link}");
    assert_eq!(made["served_by"], host_node.addr().as_str());
    let (url, key) = link.split_once('#').unwrap();
    let id = made["id"].as_str().unwrap().to_owned();

    // Anyone with the link opens it at the host; the host holds only ciphertext.
    let (status, blob) = fetch(&format!("{url}/blob"));
    assert_eq!(status, 200);
    let plain = share::open(&ShareKey::from_text(key).unwrap(), &blob).expect("decrypts");
    assert!(String::from_utf8_lossy(&plain).contains("Penicillin"));
    assert!(!String::from_utf8_lossy(&blob).contains("Penicillin"));
    assert!(!String::from_utf8_lossy(&blob).contains(key));

    // The opening is audited by the host in George's record's trail, and reaches George.
    let opened = format!("emergency summary opened via share {id}");
    cli_support::node::eventually("the opening reaches George's audit trail", || {
        let _ = george.live(&["sync"]);
        george.live_ok(&["audit"]).contains(&opened)
    });

    // George ends it: the host serves it no more.
    george.live_ok(&["share", "end", &id]);
    let (status, _) = fetch(&format!("{url}/blob"));
    assert_eq!(status, 410);
}
