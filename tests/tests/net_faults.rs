//! Faults across real `cophr node run` processes: a partition healed, and a hostile peer
//! (an in-process libp2p node speaking the sync protocol with crafted messages) against a
//! real home host process.

mod cli_support;

use std::time::Duration;

use cli_support::node::{eventually, Node};
use cli_support::Person;
use cophr_node::net::{self, NetConfig};
use cophr_node::store::Store;
use cophr_protocol::sync::{Proof, Refusal, Request, Response};
use cophr_protocol::testkit::{bp, key};
use cophr_protocol::{Category, Payload};

fn entries(p: &Person) -> u64 {
    p.live_json(&["records"])["records"][0]["entries"]
        .as_u64()
        .unwrap_or(0)
}

#[test]
fn a_partition_with_writes_on_both_sides_heals_and_converges() {
    let george = Person::new("George Jones", "patient", None);
    let mary = Person::new("Mary Jones", "carer", None);
    let host = Person::new("Host", "host", None);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &mary.actor,
        "--level",
        "delete",
        "--categories",
        "all",
        "--delegate",
    ]);
    let mut h = Node::start(&host, &[]);
    let _g = Node::start(&george, &[]);
    let _m = Node::start(&mary, &[]);
    george.live_ok(&["host", &h.addr()]);
    mary.live_ok(&["follow", &george.actor, "--host", &h.addr()]);

    // The host goes away: George and Mary are cut off from each other.
    h.kill();
    let g1 = george.live_add(&["about-me", "--thing-1", "Written during the outage"]);
    let m1 = mary.live_add(&["vital-signs", "--systolic", "150", "--diastolic", "95"]);
    mary.live_ok(&["annotate", &m1, "--text", "taken after a walk"]);
    assert!(!george.sees(&m1) && !mary.sees(&g1));

    // It comes back (on a new port); both are told where, and everything converges.
    let h = Node::start(&host, &[]);
    for p in [&george, &mary] {
        p.live_ok(&["peers", "--record", &george.actor, "--host", &h.addr()]);
    }
    eventually("George to see Mary's outage writes", || george.sees(&m1));
    eventually("Mary to see George's outage write", || mary.sees(&g1));
    eventually("all three to hold the same entries", || {
        let n = entries(&george);
        n > 0 && n == entries(&mary) && n == entries(&host)
    });
}

fn nonce(n: u8) -> [u8; 16] {
    [n; 16]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_gets_nothing_and_stores_nothing_on_a_real_host() {
    let george = Person::new("George Jones", "patient", None);
    let host = Person::new("Host", "host", None);
    george.live_ok(&["record", "create"]);
    // Mallory may view vital signs only: no write, no delegate right.
    let mallory = key(31, "Mallory");
    let stranger = key(31, "Stranger");
    george.live_ok(&[
        "grant",
        &mallory.actor().to_string(),
        "--level",
        "view",
        "--categories",
        "vital-signs",
        "--until",
        "2099-01-01",
    ]);
    george.live_add(&["vital-signs", "--systolic", "140", "--diastolic", "90"]);
    george.live_add(&["problems", "--problem", "Renal disease"]);
    let h = Node::start(&host, &[]);
    let _g = Node::start(&george, &[]);
    george.live_ok(&["host", &h.addr()]);
    let before = entries(&host);

    // Mallory's own node, in this process, speaking the protocol directly.
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), key(31, "mallory-node")).unwrap();
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        sync_interval: Duration::from_secs(3600),
        ..NetConfig::default()
    };
    let (m, _task) = net::start(
        store,
        mallory.clone(),
        key(31, "mallory-peer").secret_bytes(),
        config,
    )
    .await
    .unwrap();
    let addr: libp2p::Multiaddr = h.addr().parse().unwrap();
    let hp = cophr_node::net::service::peer_of(&addr).unwrap();
    let rec: cophr_protocol::RecordId = george.actor.parse().unwrap();
    let now = net::service::now_ms();
    let me = m.peer_id().to_bytes();
    let ask = |proof: Proof| Request::Digests {
        proof,
        digests: vec![],
    };

    // Her honest pull works and gives only what she may see.
    let r = cophr_node::net::client::sync(&m, hp, vec![addr.clone()], rec, false)
        .await
        .unwrap();
    assert!(r.pulled > 0);
    let held = m
        .store()
        .with_record(&rec, |r| {
            r.entries()
                .map(|e| r.stream_of(&e.id()).cloned().flatten())
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert!(
        held.iter()
            .all(|s| s.is_none() || *s == Some(Category::VitalSigns)),
        "{held:?}"
    );

    // A stranger's sync request: refused, nothing revealed.
    let p = Proof::new(&stranger, rec, &me, &hp.to_bytes(), nonce(1), now);
    let resp = m.request(hp, vec![addr.clone()], ask(p)).await.unwrap();
    assert!(
        matches!(
            resp,
            Response::Refused {
                code: Refusal::NoAccess,
                ..
            }
        ),
        "{resp:?}"
    );
    // A proof bound to another connection, and a replayed one: refused.
    let p = Proof::new(
        &mallory,
        rec,
        b"someone-else",
        &hp.to_bytes(),
        nonce(2),
        now,
    );
    let resp = m.request(hp, vec![addr.clone()], ask(p)).await.unwrap();
    assert!(
        matches!(resp, Response::Refused { code: Refusal::BadProof, ref reason } if reason.contains("another connection")),
        "{resp:?}"
    );
    let p = Proof::new(&mallory, rec, &me, &hp.to_bytes(), nonce(3), now);
    assert!(matches!(
        m.request(hp, vec![addr.clone()], ask(p.clone()))
            .await
            .unwrap(),
        Response::Differ { .. }
    ));
    let resp = m.request(hp, vec![addr.clone()], ask(p)).await.unwrap();
    assert!(
        matches!(resp, Response::Refused { code: Refusal::BadProof, ref reason } if reason.contains("already used")),
        "{resp:?}"
    );

    // Crafted entries: a forged signature, an escalated write, a grant without the
    // delegate right, a write outside the grant's period. Each refused, none stored.
    let replica = m.store().with_record(&rec, |r| r.clone()).unwrap();
    let g = replica.grants_of(&mallory.actor())[0];
    let patient: cophr_protocol::ActorId = rec;
    let mut forged = replica.next_entry(
        &patient,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(100, 60),
        },
        None,
        now,
        None,
    );
    forged.author = patient;
    let crafted = vec![
        ("forged signature", forged.sign(&mallory)),
        (
            "escalated write",
            replica
                .next_entry(
                    &mallory.actor(),
                    Payload::Create {
                        category: Category::VitalSigns,
                        body: bp(100, 60),
                    },
                    Some(g),
                    now,
                    None,
                )
                .sign(&mallory),
        ),
        (
            "grant without the delegate right",
            replica
                .next_entry(
                    &mallory.actor(),
                    Payload::Grant(cophr_protocol::testkit::grant(
                        &stranger,
                        cophr_protocol::access::Level::View,
                        &[Category::VitalSigns],
                        false,
                        false,
                    )),
                    Some(g),
                    now,
                    None,
                )
                .sign(&mallory),
        ),
        (
            "expired capability",
            replica
                .next_entry(
                    &mallory.actor(),
                    Payload::Profile(cophr_protocol::testkit::profile("M", "nurse", None)),
                    Some(g),
                    4_102_444_800_000 + 1,
                    None,
                )
                .sign(&mallory),
        ),
    ];
    for (i, (what, e)) in crafted.into_iter().enumerate() {
        let p = Proof::new(&mallory, rec, &me, &hp.to_bytes(), nonce(10 + i as u8), now);
        let resp = m
            .request(
                hp,
                vec![addr.clone()],
                Request::Push {
                    proof: p,
                    entries: vec![serde_bytes::ByteBuf::from(e.bytes().to_vec())],
                    invitation: None,
                    host: false,
                },
            )
            .await
            .unwrap();
        match resp {
            Response::Pushed { accepted, rejected } => {
                assert!(accepted.is_empty(), "{what} accepted");
                assert_eq!(rejected.len(), 1, "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // An oversized message: the stream is closed; the host keeps serving.
    let p = Proof::new(&mallory, rec, &me, &hp.to_bytes(), nonce(20), now);
    let huge = Request::Push {
        proof: p,
        entries: vec![serde_bytes::ByteBuf::from(vec![0u8; 40 * 1024 * 1024])],
        invitation: None,
        host: false,
    };
    let r = m.request(hp, vec![addr.clone()], huge).await;
    assert!(
        r.is_err() || matches!(r, Ok(Response::Refused { .. })),
        "{r:?}"
    );

    assert_eq!(entries(&host), before, "nothing was stored");
    // The host still serves its patient.
    george.live_ok(&["sync"]);
}
