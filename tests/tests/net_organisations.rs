//! Care organisations across real `cophr node run` processes on 127.0.0.1 (issue 19's
//! acceptance scenario): George grants Leeds Home Care as an organisation, once; a nurse
//! who joins the service later reads and writes his vital signs with no word from George
//! (her proof of membership comes from the service's administrator); a nurse who leaves is
//! refused from then on, while what she wrote before stays; George's grants list shows the
//! service's members and his audit trail names the member who looked, with the service;
//! revoking the whole service still ends every member. Run `cargo build -p cophr` first.

mod cli_support;

use cli_support::node::{eventually, Node};
use cli_support::Person;
use serde_json::Value;

/// A FHIR read on `node`'s HTTP API as `who` (a fresh connection each time).
fn fhir(node: &Node, who: &Person, path: &str) -> Value {
    let token = who.live_ok(&["token"]).trim().to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .max_idle_connections(0)
        .build()
        .into();
    let url = format!("{}/fhir/r4/{path}", node.http().expect("HTTP API"));
    let mut resp = agent
        .get(&url)
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let text = resp.body_mut().read_to_string().expect("a body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The members George's grants list shows under the organisation's grant.
fn members(george: &Person, org: &str) -> Vec<Value> {
    let g: Value = george.live_json(&["grants"]);
    g["grants"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["grantee"]["id"] == org)
        .flat_map(|x| x["members"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn removed(george: &Person, org: &str, member: &str) -> bool {
    members(george, org)
        .iter()
        .any(|m| m["member"]["id"] == member && !m["removed"].is_null())
}

#[test]
fn a_service_granted_once_lets_staff_who_join_act_and_stops_staff_who_leave() {
    let george = Person::new("George Jones", "patient", None);
    let org = Person::new("Leeds Home Care Ltd", "organisation", None);
    let jo = Person::new("Jo Bloggs", "nurse", None);
    let sam = Person::new("Sam Hill", "nurse", None);
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &org.actor,
        "--level",
        "write",
        "--categories",
        "vital-signs,appointments",
    ]);
    george.live_ok(&["host", &host_node.addr()]);
    let before = george.live_add(&["vital-signs", "--heart-rate", "64"]);

    // The service's node: its own record holds its membership; it replicates George's.
    let _org_node = Node::start(&org, &[]);
    org.live_ok(&["record", "create"]);
    org.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);

    // Sam joins the service, and records a reading.
    org.live_ok(&[
        "org",
        "add-member",
        &sam.actor,
        "--role",
        "nurse",
        "--label",
        "Sam Hill",
    ]);
    let sam_proof = org.live_ok(&["org", "proof", &sam.actor]).trim().to_owned();
    let _sam_node = Node::start(&sam, &[]);
    sam.live_ok(&["org", "use", &sam_proof]);
    sam.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    eventually(
        "Sam to read George's vital signs (the service gave her its keys)",
        || sam.sees(&before),
    );
    let by_sam = sam.live_add(&["vital-signs", "--heart-rate", "71"]);
    eventually("George to see Sam's reading", || george.sees(&by_sam));

    // Jo joins later: George is not asked.
    org.live_ok(&[
        "org",
        "add-member",
        &jo.actor,
        "--role",
        "nurse",
        "--label",
        "Jo Bloggs",
    ]);
    let jo_proof = org.live_ok(&["org", "proof", &jo.actor]).trim().to_owned();
    let _jo_node = Node::start(&jo, &[]);
    jo.live_ok(&["org", "use", &jo_proof]);
    jo.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    eventually("Jo to read George's vital signs", || jo.sees(&before));
    let by_jo = jo.live_add(&["vital-signs", "--heart-rate", "75"]);
    eventually("George to see Jo's reading", || george.sees(&by_jo));
    // Her worklist lists George, shared with her service, not with her by name.
    let w: Value = jo.live_json(&["worklist"]);
    let rows = w["rows"].as_array().cloned().unwrap_or_default();
    assert!(
        rows.iter().any(|r| r["record"] == george.actor.as_str()),
        "a member's worklist lists the records shared with the organisation: {w}"
    );
    // A role narrows the grant: vital signs and appointments only, never more.
    let r = jo.live(&["add", "allergies", "--agent", "Penicillin"]);
    assert_eq!(r.code, 3, "{r:?}");

    // George sees the service's members under its one grant, each named with it.
    eventually("George's grants to list both members", || {
        members(&george, &org.actor).len() == 2
    });
    let listed = george.live_ok(&["grants"]);
    assert!(listed.contains("Members of"), "{listed}");
    assert!(listed.contains("for Leeds Home Care Ltd"), "{listed}");
    // His audit trail names the member, with the organisation.
    let audit = george.live_ok(&["audit"]);
    assert!(
        audit.contains("Jo Bloggs (nurse, for Leeds Home Care Ltd)"),
        "{audit}"
    );

    // FHIR: the Consent names the service as an Organization; the service, each member's
    // PractitionerRole and the CareTeam are served, and references resolve.
    let consents = fhir(&george_node, &george, "Consent");
    let names_org = consents["entry"].as_array().unwrap().iter().any(|e| {
        e["resource"]["provision"]["actor"][0]["reference"]["reference"]
            == format!("Organization/{}", org.actor).as_str()
    });
    assert!(names_org, "{consents}");
    let o = fhir(
        &george_node,
        &george,
        &format!("Organization/{}", org.actor),
    );
    assert_eq!(o["name"], "Leeds Home Care Ltd", "{o}");
    let roles = fhir(&george_node, &george, "PractitionerRole");
    let roles = roles["entry"].as_array().unwrap();
    assert_eq!(roles.len(), 2, "{roles:?}");
    assert!(roles
        .iter()
        .all(|r| r["resource"]["organization"]["reference"]
            == format!("Organization/{}", org.actor).as_str()
            && r["resource"]["active"] == true));
    let team = fhir(&george_node, &george, &format!("CareTeam/{}", george.actor));
    let participants = team["participant"].as_array().unwrap();
    assert!(participants.iter().any(|p| p["member"]["reference"]
        == format!("Practitioner/{}", jo.actor).as_str()
        && p["onBehalfOf"]["reference"] == format!("Organization/{}", org.actor).as_str()));

    // Sam leaves: the administrator removes her, in every record she joined.
    org.live_ok(&[
        "org",
        "remove-member",
        &sam.actor,
        "--reason",
        "left the service",
    ]);
    let listed: Value = org.live_json(&["org", "members"]);
    let sam_row = listed["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["member"] == sam.actor.as_str())
        .cloned()
        .unwrap();
    assert!(!sam_row["removed"].is_null());
    eventually("George's node to hold Sam's removal", || {
        removed(&george, &org.actor, &sam.actor)
    });
    // From then on she pulls nothing new: only her own removal, so that her node knows
    // (as a revoked grantee learns of its revocation) — and refuses her writes itself,
    // instead of keeping them where nobody else would ever accept them.
    let after_removal = george.live_add(&["vital-signs", "--heart-rate", "66"]);
    sam.live_ok(&["sync", "--peer", &host_node.addr()]);
    let r = sam.live(&["add", "vital-signs", "--heart-rate", "90"]);
    assert_eq!(r.code, 3, "her own node refuses her write: {r:?}");
    assert!(
        !sam.sees(&after_removal),
        "nothing written after her removal"
    );
    let r = sam.live(&["worklist"]);
    assert!(
        !r.stdout.contains("George Jones"),
        "George's record is no longer on her worklist: {r:?}"
    );
    // What she wrote before stays.
    assert!(george.sees(&by_sam));
    // Her proof of membership no longer holds at the service: no new proof is given.
    let r = org.live(&["org", "proof", &sam.actor]);
    assert_eq!(r.code, 4, "{r:?}");

    // George revokes the whole service: Jo writes nothing from then on.
    let grant_id = {
        let g: Value = george.live_json(&["grants"]);
        g["grants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["grantee"]["id"] == org.actor.as_str())
            .unwrap()["grant"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    george.live_ok(&["revoke", &grant_id, "--reason", "changed provider"]);
    eventually("Jo's writes to be refused after the revocation", || {
        jo.live(&["add", "vital-signs", "--heart-rate", "80"]).code == 3
    });
}
