//! A document whose stored bytes are damaged on one node (a flipped bit on disk) is found
//! by `cophr repair`, set aside, and its damaged part fetched again from a peer holding the
//! record: afterwards it reads back byte for byte. Across real `cophr node run` processes.

mod cli_support;

use std::path::{Path, PathBuf};

use cli_support::node::{eventually, Node};
use cli_support::Person;

/// The blob store's files under a home whose names end with `suffix`.
fn blob_files(home: &Path, suffix: &str) -> Vec<PathBuf> {
    std::fs::read_dir(home.join("store").join("blobs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_damaged_document_is_set_aside_and_fetched_again_from_a_peer() {
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let george = Person::new("George Jones", "patient", None);
    let mut george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    let out = george.live_ok(&["host", &host_node.addr()]);
    assert!(out.contains("is now hosted at"), "{out}");

    let files = tempfile::tempdir().unwrap();
    let letter = files.path().join("letter.txt");
    let mut text = String::from("Renal clinic letter\n");
    for i in 0..8_000 {
        text.push_str(&format!("Line {i}: eGFR 48, potassium 4.9.\n"));
    }
    std::fs::write(&letter, &text).unwrap();
    let entry = george.live_ok(&["attach", letter.to_str().unwrap(), "--title", "Letter"]);
    let entry = entry.trim().to_owned();
    eventually("the host to hold the letter", || {
        blob_files(host.dir(), ".blob").len() == 1
    });

    // A bit flips in George's copy while his node is stopped; `cophr repair` finds it.
    george_node.terminate();
    flip(george.dir());
    let out = george.ok(&["repair"]);
    assert!(out.contains("Documents: 1 checked, 1 damaged"), "{out}");
    assert!(out.contains("16384 bytes damaged"), "{out}");
    assert!(blob_files(george.dir(), ".blob").is_empty(), "set aside");
    assert_eq!(blob_files(george.dir(), ".part").len(), 1);
    let broken = george.run(&["download", &entry, "-o", "-"]);
    assert_ne!(broken.code, 0, "a document set aside is not given out");

    // His node fetches the damaged part again from the host, and the letter is whole.
    let mut george_node = Node::start(&george, &[]);
    let whole = || {
        blob_files(george.dir(), ".blob").len() == 1 && blob_files(george.dir(), ".part").is_empty()
    };
    eventually("George's node to fetch the damaged part again", whole);
    let saved = files.path().join("saved.txt");
    george.live_ok(&["download", &entry, "-o", saved.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), text);

    // Damage found by a read is set aside the same way, without `cophr repair`.
    george_node.terminate();
    flip(george.dir());
    let broken = george.run(&["download", &entry, "-o", "-"]);
    assert_ne!(broken.code, 0, "damaged bytes are never given out");
    assert_eq!(
        blob_files(george.dir(), ".part").len(),
        1,
        "set aside by the read"
    );
    let _george_node = Node::start(&george, &[]);
    eventually("George's node to fetch the damaged part again", whole);
    let again = files.path().join("again.txt");
    george.live_ok(&["download", &entry, "-o", again.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&again).unwrap(), text);
}

/// Flips a bit of the one complete document under `home`, in its data.
fn flip(home: &Path) {
    let blobs = blob_files(home, ".blob");
    assert_eq!(blobs.len(), 1);
    let mut bytes = std::fs::read(&blobs[0]).unwrap();
    bytes[64 + 100_000] ^= 0x04;
    std::fs::write(&blobs[0], &bytes).unwrap();
}
