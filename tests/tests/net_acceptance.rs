//! The acceptance scenario (BRIEF, blueprint Appendix 1) across real `cophr node run`
//! processes on 127.0.0.1, each person with their own keys and node: George's home host,
//! George, Mary, their children Patricia and Alex, the home-care service, the renal
//! consultant, the diabetes nurse and the pharmacist. Every party sees exactly what the
//! matrix allows; allowed writes arrive everywhere they may be seen; disallowed writes are
//! refused; the move to a new host keeps every grant; the revocation is future-only.

mod cli_support;

use std::collections::BTreeSet;

use cli_support::node::{eventually, Node};
use cli_support::Person;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn categories(p: &Person) -> BTreeSet<String> {
    p.live_json(&["show"])["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["category"].as_str().expect("category").to_owned())
        .collect()
}

fn grant(george: &Person, who: &Person, level: &str, cats: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "grant",
        who.actor.as_str(),
        "--level",
        level,
        "--categories",
        cats,
    ];
    args.extend_from_slice(extra);
    george.live_ok(&args).trim().to_owned()
}

#[test]
fn george_and_his_care_network() {
    let george = Person::new("George Jones", "patient", None);
    let mary = Person::new("Mary Jones", "carer", None);
    let patricia = Person::new("Patricia Jones", "family", None);
    let alex = Person::new("Alex Jones", "family", None);
    let homecare = Person::new("Sam Patel", "nurse", Some("Leeds Home Care"));
    let consultant = Person::new("Dr Okafor", "consultant", Some("Renal Unit"));
    let nurse = Person::new("Jo Smith", "diabetes nurse", Some("Diabetes Service"));
    let pharmacist = Person::new("Ana Silva", "pharmacist", Some("Oakwood Pharmacy"));
    let host_a = Person::new("Host A", "host", Some("Community Host A"));
    let host_b = Person::new("Host B", "host", Some("Community Host B"));

    // The professionals are verified in person by an identity assurance service George
    // trusts; the clinical grants require that (P9); family is self-asserted.
    let ais = cophr_protocol::testkit::key(21, "Leeds AIS");
    let files = tempfile::tempdir().expect("a directory");
    for (p, profession, org) in [
        (&homecare, "nurse", "Leeds Home Care"),
        (&consultant, "doctor", "Renal Unit"),
        (&nurse, "nurse", "Diabetes Service"),
        (&pharmacist, "pharmacist", "Oakwood Pharmacy"),
    ] {
        cli_support::attest_professional(files.path(), &ais, p, profession, org);
    }
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "trust",
        "add",
        &ais.actor().to_string(),
        "--name",
        "Leeds AIS",
    ]);
    grant(&george, &mary, "delete", "all", &["--audit", "--delegate"]);
    grant(&george, &patricia, "view", "all", &["--audit"]);
    grant(&george, &alex, "view", "all", &["--audit"]);
    let hc_grant = grant(
        &george,
        &homecare,
        "write",
        "vital-signs,procedures,lab-results",
        &[],
    );
    grant(&george, &consultant, "write", "all", &["--require", "P9"]);
    grant(&george, &nurse, "write", "all", &["--require", "P9"]);
    grant(
        &george,
        &pharmacist,
        "view",
        "problems,medications,allergies",
        &["--require", "P9"],
    );
    george.live_add(&["problems", "--problem", "Chronic kidney disease"]);
    george.live_add(&[
        "medications",
        "--medication",
        "Metformin 500 mg at breakfast",
    ]);
    george.live_add(&[
        "about-me",
        "--thing-1",
        "I am deaf in my left ear since 1998",
    ]);

    // Every party runs its own node; George hosts his record on host A; all follow it.
    let ha = Node::start(&host_a, &[]);
    let hb = Node::start(&host_b, &["--bootstrap", &ha.addr()]);
    let people = [
        &george,
        &mary,
        &patricia,
        &alex,
        &homecare,
        &consultant,
        &nurse,
        &pharmacist,
    ];
    let nodes: Vec<Node> = people
        .iter()
        .map(|p| Node::start(p, &["--bootstrap", &ha.addr()]))
        .collect();
    george.live_ok(&["host", &ha.addr()]);
    for p in &people[1..] {
        p.live_ok(&["follow", &george.actor, "--host", &ha.addr()]);
    }

    // Allowed writes, each by its own author on its own node.
    let bp = mary.live_add(&["vital-signs", "--systolic", "148", "--diastolic", "92"]);
    let wound = homecare.live_add(&["procedures", "--procedure", "Leg ulcer dressing"]);
    let bloods = homecare.live_add(&[
        "lab-results",
        "--test",
        "HbA1c request",
        "--result",
        "requested",
    ]);
    let diagnosis = consultant.live_add(&["problems", "--problem", "Hypertension"]);
    let insulin = nurse.live_add(&["medications", "--medication", "Insulin glargine"]);

    // They arrive everywhere they may be seen — and nowhere else.
    let sees_all = [&george, &mary, &patricia, &alex, &consultant, &nurse];
    for p in sees_all {
        for id in [&bp, &wound, &bloods, &diagnosis, &insulin] {
            eventually(&format!("{} to see {id}", p.name), || p.sees(id));
        }
    }
    for id in [&bp, &wound, &bloods] {
        eventually(&format!("home care to see {id}"), || homecare.sees(id));
    }
    for id in [&diagnosis, &insulin] {
        eventually(&format!("the pharmacist to see {id}"), || {
            pharmacist.sees(id)
        });
    }
    assert!(!homecare.sees(&diagnosis) && !homecare.sees(&insulin));
    assert!(!pharmacist.sees(&bp) && !pharmacist.sees(&wound));
    assert_eq!(
        categories(&homecare),
        set(&["lab-results", "procedures", "vital-signs"])
    );
    assert_eq!(categories(&pharmacist), set(&["medications", "problems"]));
    assert_eq!(
        categories(&patricia),
        set(&[
            "about-me",
            "lab-results",
            "medications",
            "problems",
            "procedures",
            "vital-signs"
        ])
    );

    // Disallowed writes are refused with "not authorised" (exit 3).
    for (who, args) in [
        (
            &patricia,
            vec![
                "add",
                "vital-signs",
                "--systolic",
                "120",
                "--diastolic",
                "80",
            ],
        ),
        (&alex, vec!["add", "about-me", "--thing-1", "x"]),
        (
            &homecare,
            vec!["add", "medications", "--medication", "Aspirin"],
        ),
        (&pharmacist, vec!["add", "allergies", "--agent", "Latex"]),
        (&consultant, vec!["amend", bp.as_str(), "--systolic", "150"]),
    ] {
        let r = who.live(&args);
        assert_eq!(r.code, 3, "{}: {:?}", who.name, r);
    }
    // The children see the audit trail; the consultant and the nurse do not.
    assert!(patricia.live_json(&["audit"])["events"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));
    assert_eq!(consultant.live(&["audit"]).code, 3);
    assert_eq!(nurse.live(&["audit"]).code, 3);

    // George moves his record to host B; every grant keeps working.
    george.live_ok(&["move", "--to", &hb.addr()]);
    eventually("host A to release the record", || {
        host_a.live_json(&["records"])["records"]
            .as_array()
            .is_some_and(|r| r.is_empty())
    });
    let after_move = mary.live_add(&["vital-signs", "--systolic", "139", "--diastolic", "85"]);
    eventually("Mary's post-move reading to reach host B", || {
        host_b.live_json(&["records"])["records"][0]["entries"]
            .as_u64()
            .is_some()
            && george.sees(&after_move)
    });
    let new_med = nurse.live_add(&["medications", "--medication", "Ramipril"]);
    eventually(
        "the nurse's post-move entry to reach the pharmacist",
        || pharmacist.sees(&new_med),
    );

    // George revokes home care: it keeps what it saw, sees nothing new, writes nothing.
    george.live_ok(&["revoke", &hc_grant, "--reason", "changed provider"]);
    let after_revoke = george.live_add(&["vital-signs", "--systolic", "131", "--diastolic", "80"]);
    eventually("the revocation to reach home care", || {
        homecare
            .live(&[
                "add",
                "vital-signs",
                "--systolic",
                "120",
                "--diastolic",
                "80",
            ])
            .code
            == 3
    });
    eventually("Mary to see George's reading", || mary.sees(&after_revoke));
    homecare.live_ok(&["sync"]);
    assert!(
        homecare.sees(&bp) && homecare.sees(&wound),
        "home care keeps what it saw"
    );
    assert!(
        !homecare.sees(&after_revoke),
        "home care sees nothing after the revocation"
    );
    // Verified identities: George sees the clinicians verified by the AIS he trusts and
    // his family as self-asserted.
    let grants = george.live_ok(&["grants"]);
    for shown in [
        "Dr Okafor (consultant) [verified P9 by Leeds AIS]",
        "Jo Smith (diabetes nurse) [verified P9 by Leeds AIS]",
        "Ana Silva (pharmacist) [verified P9 by Leeds AIS]",
        "Mary Jones (carer) [self-asserted]",
    ] {
        assert!(grants.contains(shown), "{shown}: {grants}");
    }

    // Both hosts were blind relays: nothing anyone wrote is in their files (log, index,
    // every file of their homes) or in their running node's memory. George's node, which
    // reads, holds it in memory: the search finds what is there.
    let written = [
        "Chronic kidney disease",
        "Metformin 500 mg at breakfast",
        "left ear since 1998",
        "Leg ulcer dressing",
        "HbA1c request",
        "Hypertension",
        "Insulin glargine",
        "Ramipril",
    ];
    // (Words the program itself does not contain: every process holds its help text.)
    let program = std::fs::read(cli_support::cophr_bin()).expect("the cophr binary");
    for words in written {
        assert!(
            !program.windows(words.len()).any(|w| w == words.as_bytes()),
            "{words:?} is in the program"
        );
    }
    let none = vec![0; written.len()];
    for (host, node) in [(&host_a, &ha), (&host_b, &hb)] {
        let files = cli_support::search::in_files(host.dir(), &written);
        assert_eq!(files, none, "{written:?} in {}'s files", host.name);
        let memory = cli_support::search::in_memory(node.pid(), &written);
        assert_eq!(memory, none, "{written:?} in {}'s memory", host.name);
    }
    let georges = cli_support::search::in_memory(nodes[0].pid(), &written);
    assert!(
        georges.iter().any(|n| *n > 0),
        "George's node reads: {georges:?}"
    );
    drop(nodes);
}
