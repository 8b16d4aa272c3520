//! Documents stored apart, across real `cophr node run` processes: George attaches a
//! clinic letter on his node; his home host fetches it (sealed) when the entry is pushed
//! and can read none of it; his GP's node fetches it from the host and saves it byte for
//! byte; a nurse who may see vital signs only is sent neither the entry nor the file.

mod cli_support;

use cli_support::node::{eventually, Node};
use cli_support::search;
use cli_support::Person;

/// Count of `.blob` files (complete documents) under a home's store.
fn documents_held(home: &std::path::Path) -> usize {
    std::fs::read_dir(home.join("store").join("blobs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".blob"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_document_replicates_sealed_through_a_blind_host_to_those_who_may_see_it() {
    let george = Person::new("George Jones", "patient", None);
    let gp = Person::new("Dr Rao", "gp", Some("Oakwood Surgery"));
    let nurse = Person::new("Jo Smith", "nurse", None);
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &gp.actor,
        "--level",
        "view",
        "--categories",
        "documents",
    ]);
    george.live_ok(&[
        "grant",
        &nurse.actor,
        "--level",
        "write",
        "--categories",
        "vital-signs",
    ]);
    let out = george.live_ok(&["host", &host_node.addr()]);
    assert!(out.contains("is now hosted at"), "{out}");

    // A letter of ~600 KB: several slices, several sealed segments.
    let files = tempfile::tempdir().unwrap();
    let letter = files.path().join("letter.txt");
    let mut text = String::from("Renal clinic letter\n");
    for i in 0..12_000 {
        text.push_str(&format!(
            "Line {i}: eGFR stable at 48, continue Ramipril 5 mg.\n"
        ));
    }
    std::fs::write(&letter, &text).unwrap();
    let entry = george.live_ok(&[
        "attach",
        letter.to_str().unwrap(),
        "--title",
        "Renal clinic letter",
        "--date",
        "2026-11-20",
    ]);
    let entry = entry.trim().to_owned();
    assert!(entry.starts_with("e-"), "{entry}");

    // The host fetches the document when the entry reaches it, and holds it sealed.
    eventually("the host to hold the document", || {
        documents_held(host.dir()) == 1
    });
    let secret = "continue Ramipril 5 mg";
    assert_eq!(
        search::in_files(host.dir(), &[secret, "Renal clinic letter"]),
        vec![0, 0],
        "the host holds no plaintext of the document or its entry"
    );
    // George's own node holds it sealed on disk as well (the plaintext is only in his file).
    assert_eq!(search::in_files(george.dir(), &[secret]), vec![0]);

    // The GP's node follows the record at the host, and fetches the file from it.
    let _gp_node = Node::start(&gp, &[]);
    gp.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    eventually("the GP's node to hold the document", || {
        documents_held(gp.dir()) == 1
    });
    let saved = files.path().join("from-gp.txt");
    let out = gp.live_ok(&["download", &entry, "-o", saved.to_str().unwrap()]);
    assert!(out.contains(&format!("({} bytes)", text.len())), "{out}");
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), text);
    // Saving over an existing file is refused.
    let again = gp.live(&["download", &entry, "-o", saved.to_str().unwrap()]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);

    // The nurse sees vital signs only: neither the entry nor the file reaches her node.
    let _nurse_node = Node::start(&nurse, &[]);
    nurse.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    let r = nurse.live(&["download", &entry]);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(documents_held(nurse.dir()), 0);
    assert_eq!(search::in_files(nurse.dir(), &[secret]), vec![0]);

    // George moves his record to another blind host: it fetches the document (sealed)
    // with the entries, and the former host, released, deletes its copy.
    let host_b = Person::new("Other Host", "host", None);
    let host_b_node = Node::start(&host_b, &[]);
    george.live_ok(&["move", "--to", &host_b_node.addr()]);
    eventually("the new host to hold the document", || {
        documents_held(host_b.dir()) == 1
    });
    eventually("the former host to delete its copy", || {
        documents_held(host.dir()) == 0
    });
    assert_eq!(
        search::in_files(host_b.dir(), &[secret, "Renal clinic letter"]),
        vec![0, 0]
    );
}
