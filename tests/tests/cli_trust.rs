//! Verified identities with the `cophr` command, across separate homes exchanging export
//! files: George trusts an identity assurance service (AIS) and grants Dr Patel write
//! access that requires a P9 attestation by it; Dr Patel is refused until she adds her
//! attestation, then writes; George sees her as verified, and someone the AIS did not
//! attest as self-asserted. Forged attestations and attestations about someone else are
//! refused. Run `cargo build -p cophr` first.

mod cli_support;

use cli_support::node::{eventually, Node};
use cli_support::Person;
use cophr_protocol::testkit::key;
use cophr_protocol::trust::attestation::{
    Attestation, Attributes, Method, OrganisationRef, Registration, ATTESTATION_VERSION,
};
use cophr_protocol::trust::{AssuranceLevel, SignedAttestation};
use cophr_protocol::{ActorId, Keypair};

/// 2026-02-01T00:00:00Z: the attestations are valid for a year from then (the CLI tests'
/// clock runs in March 2026).
const FEB_2026: u64 = 1_769_904_000_000;

fn professional(ais: &Keypair, subject: &str) -> SignedAttestation {
    professional_from(ais, subject, FEB_2026)
}

fn professional_from(ais: &Keypair, subject: &str, not_before: u64) -> SignedAttestation {
    let subject: ActorId = subject.parse().unwrap();
    Attestation {
        v: ATTESTATION_VERSION,
        issuer: ais.actor(),
        subject,
        attributes: Attributes::Professional {
            name: "Rena Patel".into(),
            profession: "doctor".into(),
            registration: Some(Registration {
                body: "GMC".into(),
                number: "7123456".into(),
            }),
            organisation: Some(OrganisationRef {
                name: "Leeds Teaching Hospitals NHS Trust".into(),
                ods: Some("RR8".into()),
            }),
        },
        level: AssuranceLevel::P9,
        method: Method::InPerson,
        not_before,
        not_after: not_before + 365 * 24 * 3600 * 1000,
        serial: vec![3; 16],
    }
    .sign(ais)
    .unwrap()
}

#[test]
fn a_grant_requiring_a_verified_identity_opens_only_once_the_grantee_is_attested() {
    let files = tempfile::tempdir().unwrap();
    let file = |n: &str| files.path().join(n);
    let george = Person::new("George Jones", "patient", None);
    let patel = Person::new(
        "Dr Rena Patel",
        "consultant",
        Some("Leeds Teaching Hospitals"),
    );
    let mallory = Person::new(
        "Dr Rena Patel",
        "consultant",
        Some("Leeds Teaching Hospitals"),
    );
    let ais = key(11, "Leeds AIS");
    george.ok(&["record", "create"]);

    // George trusts the AIS and grants Dr Patel write access requiring P9 by it.
    george.ok(&[
        "trust",
        "add",
        &ais.actor().to_string(),
        "--name",
        "Leeds AIS",
        "--max-level",
        "P9",
    ]);
    let listed = george.ok(&["trust", "list"]);
    assert!(
        listed.contains("Leeds AIS") && listed.contains("P9"),
        "{listed}"
    );
    george.ok(&[
        "grant",
        &patel.actor,
        "--level",
        "write",
        "--categories",
        "vital-signs",
        "--require",
        "P9",
    ]);
    // Mallory claims to be Dr Patel too: same name, same role, same grant.
    george.ok(&[
        "grant",
        &mallory.actor,
        "--level",
        "view",
        "--categories",
        "vital-signs",
    ]);
    george.export(&file("g1.cophr"));
    patel.import(&file("g1.cophr"));

    // Self-asserted: refused, with the reason, and nothing stored.
    let held = patel.entries_held();
    let err = patel.fails(
        3,
        &[
            "add",
            "vital-signs",
            "--systolic",
            "150",
            "--diastolic",
            "95",
        ],
    );
    assert!(
        err.contains("requires its grantee to be attested P9"),
        "{err}"
    );
    assert_eq!(patel.entries_held(), held);

    // A forged attestation and one about someone else are refused by `identity add`.
    let mut forged = professional(&ais, &patel.actor);
    forged.attestation.level = AssuranceLevel::P9;
    forged.attestation.not_after += 1;
    std::fs::write(file("forged.att"), forged.to_text()).unwrap();
    let err = patel.fails(
        6,
        &["identity", "add", file("forged.att").to_str().unwrap()],
    );
    assert!(err.contains("not a valid attestation"), "{err}");
    std::fs::write(
        file("mallory.att"),
        professional(&ais, &patel.actor).to_text(),
    )
    .unwrap();
    let err = mallory.fails(
        5,
        &["identity", "add", file("mallory.att").to_str().unwrap()],
    );
    assert!(err.contains("not about you"), "{err}");

    // Dr Patel adds her attestation (as the AIS's CBOR file): her writes are accepted.
    std::fs::write(file("patel.att"), professional(&ais, &patel.actor).encode()).unwrap();
    let out = patel.ok(&["identity", "add", file("patel.att").to_str().unwrap()]);
    assert!(out.contains("GMC 7123456"), "{out}");
    // Her own home does not trust the AIS: to herself she shows as self-asserted.
    assert!(out.contains("here: self-asserted"), "{out}");
    patel.add(&["vital-signs", "--systolic", "150", "--diastolic", "95"]);
    patel.export(&file("p1.cophr"));
    george.import(&file("p1.cophr"));

    // George sees Dr Patel verified by the AIS he trusts, Mallory self-asserted.
    let grants = george.ok(&["grants"]);
    assert!(
        grants.contains("Dr Rena Patel (consultant) [verified P9 by Leeds AIS]"),
        "{grants}"
    );
    let history_of = george.json(&["show", "--json"]);
    let text = history_of.to_string();
    assert!(text.contains("verified"), "{text}");
    let json = george.json(&["grants", "--json"]);
    let statuses: Vec<String> = json["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            format!(
                "{} {}",
                g["grantee"]["id"].as_str().unwrap(),
                g["grantee"]["assurance"]["status"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        statuses.contains(&format!("{} verified", patel.actor)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&format!("{} self-asserted", mallory.actor)),
        "{statuses:?}"
    );

    // Once George no longer trusts the AIS, Dr Patel shows as self-asserted to him.
    george.ok(&["trust", "remove", &ais.actor().to_string()]);
    let grants = george.ok(&["grants"]);
    assert!(
        grants.contains("Dr Rena Patel (consultant) [self-asserted]"),
        "{grants}"
    );

    // Dr Patel removes her attestation from her profile; an unknown id is not found.
    let shown = patel.json(&["identity", "show"]);
    let id = shown["attestations"][0]["id"].as_str().unwrap().to_owned();
    patel.fails(4, &["identity", "remove", "t-nosuchattestation"]);
    patel.ok(&["identity", "remove", &id[..12]]);
    let shown = patel.json(&["identity", "show"]);
    assert_eq!(shown["attestations"], serde_json::json!([]), "{shown}");
    assert_eq!(shown["shown_as"], "self-asserted");
}

/// Across real node processes: a pharmacist whose grant requires a P9 attestation cannot
/// follow George's record until her node presents one; then she replicates what the grant
/// shows.
#[test]
fn over_the_network_a_grant_requiring_attestation_opens_once_the_grantee_presents_one() {
    let files = tempfile::tempdir().unwrap();
    let george = Person::new("George Jones", "patient", None);
    let pharmacist = Person::new("Priya Shah", "pharmacist", Some("Leeds Pharmacy"));
    let host = Person::new("Community Host", "host", None);
    let ais = key(12, "Leeds AIS");
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "trust",
        "add",
        &ais.actor().to_string(),
        "--name",
        "Leeds AIS",
    ]);
    george.live_ok(&[
        "grant",
        &pharmacist.actor,
        "--level",
        "view",
        "--categories",
        "medications",
        "--require",
        "P9",
    ]);
    let med = george.live_add(&["medications", "--medication", "Metformin 500mg"]);
    let host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    let _pharmacy_node = Node::start(&pharmacist, &[]);
    let out = george.live_ok(&["host", &host_node.addr()]);
    assert!(out.contains("is now hosted at"), "{out}");

    // Self-asserted: the host refuses, and says why.
    let r = pharmacist.live(&["follow", &george.actor, "--host", &host_node.addr()]);
    let said = format!("{}{}", r.stdout, r.stderr);
    assert!(
        said.contains("requires its grantee to be attested P9"),
        "follow should be refused for want of an attestation: {said}"
    );
    assert!(!pharmacist.sees(&med));

    // With her attestation added (given to her running node), she replicates.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let att = files.path().join("priya.att");
    std::fs::write(
        &att,
        professional_from(&ais, &pharmacist.actor, now - 24 * 3600 * 1000).to_text(),
    )
    .unwrap();
    pharmacist.live_ok(&["identity", "add", att.to_str().unwrap()]);
    pharmacist.live_json(&["follow", &george.actor, "--host", &host_node.addr()]);
    eventually("the pharmacist sees George's medication", || {
        pharmacist.sees(&med)
    });
}

/// A host that serves only attested people (`--require-identity P5`) refuses a
/// self-asserted patient's record, with the reason, and takes it once the patient's node
/// presents an attestation by an AIS the host trusts.
#[test]
fn a_host_requiring_identity_takes_only_an_attested_patients_record() {
    let files = tempfile::tempdir().unwrap();
    let george = Person::new("George Jones", "patient", None);
    let host = Person::new("Verified-only Host", "host", None);
    let ais = key(13, "Leeds AIS");
    host.live_ok(&[
        "trust",
        "add",
        &ais.actor().to_string(),
        "--name",
        "Leeds AIS",
    ]);
    george.live_ok(&["record", "create"]);
    let host_node = Node::start(&host, &["--require-identity", "P5"]);
    let _george_node = Node::start(&george, &[]);
    let r = george.live(&["host", &host_node.addr()]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr
            .contains("this host takes only patients attested P5")
            && r.stderr.contains("self-asserted"),
        "{}",
        r.stderr
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut a = professional_from(&ais, &george.actor, now - 24 * 3600 * 1000);
    a.attestation.attributes = Attributes::Person {
        name: "George Jones".into(),
        birth_date: Some("1948-02-03".into()),
        national_number: None,
    };
    let a = a.attestation.sign(&ais).unwrap();
    let file = files.path().join("george.att");
    std::fs::write(&file, a.to_text()).unwrap();
    george.live_ok(&["identity", "add", file.to_str().unwrap()]);
    let out = george.live_ok(&["host", &host_node.addr()]);
    assert!(out.contains("is now hosted at"), "{out}");
}
