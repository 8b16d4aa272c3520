//! Invitations across real node processes: George invites "Pharmacy" with a link instead of
//! an actor id; Priya accepts it on her node; George sees who accepted (self-asserted) and
//! confirms; Priya then replicates exactly what the invitation offered. The link works once:
//! Eve, who got hold of it, is refused; a mangled link is refused. Nothing opens before
//! George confirms.

mod cli_support;

use cli_support::node::{eventually, Node};
use cli_support::Person;

#[test]
fn george_invites_the_pharmacy_by_link_and_confirms_who_accepted() {
    let george = Person::new("George Jones", "patient", None);
    let priya = Person::new("Priya Shah", "pharmacist", Some("Leeds Pharmacy"));
    let eve = Person::new("Eve", "pharmacist", None);
    let host = Person::new("Community Host", "host", None);
    george.live_ok(&["record", "create"]);
    let med = george.live_add(&["medications", "--medication", "Metformin 500mg"]);
    let problem = george.live_add(&["problems", "--problem", "Chronic kidney disease"]);
    let host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    let _priya_node = Node::start(&priya, &[]);
    let _eve_node = Node::start(&eve, &[]);
    george.live_ok(&["host", &host_node.addr()]);

    let inv = george.live_json(&[
        "invite",
        "--level",
        "view",
        "--categories",
        "medications",
        "--label",
        "Pharmacy",
        "--expires",
        "2d",
    ]);
    let link = inv["link"].as_str().unwrap().to_owned();
    let id = inv["invitation"].as_str().unwrap().to_owned();
    assert!(link.starts_with("cophr://invite/"), "{link}");
    // The text form prints a QR code too.
    let text = george.live_ok(&[
        "invite",
        "--level",
        "view",
        "--categories",
        "medications",
        "--expires",
        "1h",
    ]);
    assert!(
        text.contains('█') || text.contains('▀'),
        "no QR code: {text}"
    );

    // Priya accepts; nothing opens before George confirms.
    let out = priya.live_ok(&["accept", &link]);
    assert!(
        out.contains("Accepted George Jones's invitation (Pharmacy)"),
        "{out}"
    );
    let r = priya.live(&["sync", "--record", &george.actor]);
    assert_ne!(r.code, 0, "synced before George confirmed: {}", r.stdout);
    assert!(!priya.sees(&med));

    // The link works once: Eve is refused, with the reason.
    let r = eve.live(&["accept", &link]);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("already used"), "{}", r.stderr);
    // A mangled link is refused before anything is sent.
    let r = eve.live(&["accept", &format!("{}x", &link[..link.len() - 5])]);
    assert_eq!(r.code, 5, "{}{}", r.stdout, r.stderr);

    // George sees who accepted, self-asserted, and confirms.
    let list = george.live_json(&["invitations", "list"]);
    let row = list["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["invitation"] == id.as_str())
        .expect("the invitation is listed")
        .clone();
    assert_eq!(row["status"], "accepted");
    assert_eq!(row["accepted_by"]["name"], "Priya Shah");
    assert_eq!(row["accepted_by"]["id"], priya.actor.as_str());
    assert_eq!(row["accepted_by"]["assurance"]["status"], "self-asserted");
    let table = george.live_ok(&["invitations", "list"]);
    assert!(
        table.contains("accepted by Priya Shah (pharmacist, Leeds Pharmacy) [self-asserted]"),
        "{table}"
    );
    let confirmed = george.live_json(&["invitations", "confirm", &id[..12]]);
    assert!(confirmed["grant"].as_str().unwrap().starts_with("e-"));

    // Priya's node replicates by itself (it waits for the records it accepted
    // invitations to) what the invitation offered: medications, not problems.
    eventually("Priya sees George's medication", || priya.sees(&med));
    assert!(!priya.sees(&problem));
    // The invitation is closed: it is no longer listed, and cannot be confirmed again.
    let list = george.live_json(&["invitations", "list"]);
    assert!(list["invitations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["invitation"] != id.as_str()));
    let again = george.live(&["invitations", "confirm", &id[..12]]);
    assert_eq!(again.code, 4, "{}", again.stderr);
    // The other (never accepted) invitation: confirming it is refused; George withdraws it.
    let open = list["invitations"][0]["invitation"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(list["invitations"][0]["status"], "open");
    let r = george.live(&["invitations", "confirm", &open]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("has not been accepted"), "{}", r.stderr);
    george.live_ok(&["invitations", "decline", &open]);
    let list = george.live_json(&["invitations", "list"]);
    assert_eq!(list["invitations"], serde_json::json!([]), "{list}");
}
