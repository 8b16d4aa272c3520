//! The care team around George across real `cophr node run` processes on 127.0.0.1
//! (issue 15): George's record is hosted by a blind community host; his GP sends a
//! referral owned by the renal clinic, the clinic takes its steps, and George's node sees
//! where it stands as each step replicates through the host (whose gate checks each step
//! as every replica's does); the clinic books an appointment, which reaches George's node
//! (listing its reminders). The host holds both sealed: it reads neither the referral's
//! description nor the appointment (its gate checks each step on the lifecycle fields
//! signed in clear beside the sealed task). Run `cargo build -p cophr` first.

mod cli_support;

use cli_support::node::{eventually, Node};
use cli_support::{search, Person};

#[test]
fn a_referral_moves_through_a_blind_host_and_george_sees_each_step() {
    let george = Person::new("George Jones", "patient", None);
    let gp = Person::new("Dr Ann Lee", "gp", Some("Headingley Surgery"));
    let clinic = Person::new("Renal clinic", "clinic", Some("Leeds Renal Unit"));
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    for p in [&gp, &clinic] {
        george.live_ok(&[
            "grant",
            &p.actor,
            "--level",
            "write",
            "--categories",
            "tasks,appointments",
        ]);
    }
    george.live_ok(&["host", &host_node.addr()]);
    let _gp_node = Node::start(&gp, &[]);
    let _clinic_node = Node::start(&clinic, &[]);
    for p in [&gp, &clinic] {
        p.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    }

    // The GP refers George to the renal clinic.
    let id = gp
        .live_ok(&[
            "task",
            "send",
            "--kind",
            "referral",
            "--to",
            &clinic.actor,
            "--description",
            "eGFR falling: please review",
        ])
        .trim()
        .to_owned();
    eventually("George's node to see the referral sent", || {
        george.task_status(&id).as_deref() == Some("sent")
    });
    eventually("the clinic's node to see the referral", || {
        clinic.task_status(&id).as_deref() == Some("sent")
    });

    // The clinic, its owner, marks it received: the step goes through the host, whose gate
    // checks it, and reaches George's node.
    clinic.live_ok(&["task", "update", &id, "--status", "received"]);
    eventually("George's node to see the referral received", || {
        george.task_status(&id).as_deref() == Some("received")
    });
    // George may not take the owner's step: refused on his own node, nothing stored.
    let r = george.live(&["task", "update", &id, "--status", "accepted"]);
    assert_eq!(r.code, 3, "{r:?}");
    clinic.live_ok(&["task", "update", &id, "--status", "accepted"]);
    eventually("George's node to see the referral accepted", || {
        george.task_status(&id).as_deref() == Some("accepted")
    });
    eventually("the GP's node to see the referral accepted", || {
        gp.task_status(&id).as_deref() == Some("accepted")
    });

    // The host checked every step without reading the referral: its description is
    // nowhere in the host's files (docs/care-team.md, "Sealed tasks").
    assert_eq!(
        search::in_files(host.dir(), &["eGFR falling: please review"]),
        vec![0],
        "the host holds the referral sealed"
    );

    // The clinic books the appointment: George's node lists its reminders; the host holds
    // it sealed (its words are nowhere in the host's files).
    let start = (time::OffsetDateTime::now_utc() + time::Duration::days(3))
        .replace_nanosecond(0)
        .expect("whole seconds")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    let appt = clinic
        .live_ok(&[
            "appointment",
            "book",
            "--start",
            &start,
            "--description",
            "Nephrology outpatients",
            "--reminder",
            "1d",
        ])
        .trim()
        .to_owned();
    eventually("George's node to list the appointment's reminder", || {
        george.sees(&appt)
            && george
                .live_ok(&["reminders", "--within", "7d"])
                .contains("Nephrology outpatients")
    });
    assert_eq!(
        search::in_files(host.dir(), &["Nephrology outpatients"]),
        vec![0],
        "the host holds the appointment sealed"
    );
}
