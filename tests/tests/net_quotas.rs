//! A host's byte quotas count the documents a record's entries name, across real
//! `cophr node run` processes: a record whose documents would take it over the host's
//! per-record quota is refused, with the reason, and nothing of it is stored there; one
//! that fits is hosted, document and all.

mod cli_support;

use cli_support::node::{eventually, Node};
use cli_support::Person;

/// Count of `.blob` and `.part` files (documents held or being received) under a home.
fn documents_held(home: &std::path::Path) -> usize {
    std::fs::read_dir(home.join("store").join("blobs"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.ends_with(".blob") || name.ends_with(".part")
                })
                .count()
        })
        .unwrap_or(0)
}

/// A text file of about `bytes` bytes.
fn letter(dir: &std::path::Path, name: &str, bytes: usize) -> std::path::PathBuf {
    let mut text = String::from("Clinic letter\n");
    let mut i = 0;
    while text.len() < bytes {
        text.push_str(&format!("Line {i}: blood pressure reviewed, no change.\n"));
        i += 1;
    }
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_host_refuses_a_record_whose_documents_exceed_its_quota_and_hosts_one_that_fits() {
    let host = Person::new("Community Host", "host", None);
    // The entries of a small record are a few KB; 300 KB leaves room for a small letter
    // and not for a large one.
    let host_node = Node::start(&host, &["--quota-record-bytes", "300000"]);
    let files = tempfile::tempdir().unwrap();

    let george = Person::new("George Jones", "patient", None);
    let _george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    let big = letter(files.path(), "scan-report.txt", 600_000);
    george.live_ok(&["attach", big.to_str().unwrap(), "--title", "Scan report"]);
    let r = george.live(&["host", &host_node.addr()]);
    assert_eq!(r.code, 3, "{r:?}");
    assert!(
        r.stderr.contains("quota") && r.stderr.contains("documents"),
        "{}",
        r.stderr
    );
    let held = host.live_json(&["records", "--json"]);
    assert_eq!(held["records"].as_array().map(Vec::len), Some(0), "{held}");
    assert_eq!(documents_held(host.dir()), 0);

    let mary = Person::new("Mary Smith", "patient", None);
    let _mary_node = Node::start(&mary, &[]);
    mary.live_ok(&["record", "create"]);
    let small = letter(files.path(), "clinic-letter.txt", 100_000);
    mary.live_ok(&[
        "attach",
        small.to_str().unwrap(),
        "--title",
        "Clinic letter",
    ]);
    let out = mary.live_ok(&["host", &host_node.addr()]);
    assert!(out.contains("is now hosted at"), "{out}");
    eventually("the host to fetch Mary's letter", || {
        documents_held(host.dir()) == 1
    });
}
