//! Nodes replicating over real libp2p connections on 127.0.0.1 (in one process).

use std::collections::HashSet;
use std::time::Duration;

use cophr_node::net::{self, client, NetConfig, NetError, NodeHandle, PeerBook};
use cophr_node::store::Store;
use cophr_protocol::access::Level;
use cophr_protocol::record::Status;
use cophr_protocol::sync::{Refusal, Request, Response};
use cophr_protocol::testkit::{bp, grant, key, profile, text_body};
use cophr_protocol::{ActorId, Category, EntryId, Keypair, Payload, RecordId};

struct Node {
    handle: NodeHandle,
    _dir: tempfile::TempDir,
}

/// A node for `name` (its identity, node and peer keys derive from the name) with quiet
/// periodic sync, listening on loopback.
async fn node(name: &str) -> Node {
    node_config(
        name,
        name,
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            sync_interval: Duration::from_secs(3600),
            ..NetConfig::default()
        },
    )
    .await
}

/// A node acting as `identity`, with keys from `name`, started with `config`; returns once
/// it listens (or, for a relayed node, once it has any address).
async fn node_config(name: &str, identity: &str, config: NetConfig) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), key(9, &format!("{name}/node"))).unwrap();
    let peer_key = key(9, &format!("{name}/peer")).secret_bytes();
    let (handle, _task) = net::start(store, key(9, identity), peer_key, config)
        .await
        .unwrap();
    for _ in 0..500 {
        if !handle.listen_addrs().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Node { handle, _dir: dir }
}

async fn addr(n: &Node) -> libp2p::Multiaddr {
    n.handle.listen_addrs().await.unwrap()[0].clone()
}

/// Polls `cond` until it holds or 10 s pass.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An address on a port free now, to listen on again after a restart.
fn fixed_listen() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("/ip4/127.0.0.1/tcp/{port}")
}

/// Creates George's record, `patient`'s, in `store`.
fn create_on(store: &Store, patient: &Keypair) {
    store
        .create_record(
            patient,
            profile("George", "patient", None),
            net::service::now_ms(),
            None,
        )
        .unwrap();
}

/// Creates the patient's record on their node.
fn create(n: &Node, patient: &Keypair) -> RecordId {
    n.handle
        .store()
        .create_record(
            patient,
            profile("George", "patient", None),
            net::service::now_ms(),
            None,
        )
        .unwrap();
    patient.actor()
}

/// Syncs `n`'s copy of `record` with `with` (pushing if `push`).
async fn sync_with(n: &Node, with: &Node, record: RecordId, push: bool) -> client::SyncReport {
    let a = addr(with).await;
    client::sync(&n.handle, with.handle.peer_id(), vec![a], record, push)
        .await
        .unwrap()
}

fn write(n: &Node, record: &RecordId, who: &Keypair, p: Payload) -> cophr_protocol::EntryId {
    n.handle
        .store()
        .write(record, who, p, net::service::now_ms(), None)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_receive_what_they_may_see_and_writes_flow_back_live() {
    let host = node("host").await;
    let george_node = node("George").await;
    let mary_node = node("Mary").await;
    let pharmacy = node("Pharmacist").await;
    let stranger = node("Stranger").await;
    let george = key(9, "George");
    let rec = george.actor();
    let s = george_node.handle.store();
    s.create_record(
        &george,
        profile("George", "patient", None),
        net::service::now_ms(),
        None,
    )
    .unwrap();
    write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(&key(9, "Mary"), Level::Delete, &[], true, true)),
    );
    write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(
            &key(9, "Pharmacist"),
            Level::View,
            &[Category::Medications],
            false,
            false,
        )),
    );
    write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::Medications,
            body: text_body(&[("medication", "Metformin")]),
        },
    );
    let private = write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::Problems,
            body: text_body(&[("problem", "Renal disease")]),
        },
    );

    // George hosts his record on the host: the host takes it from its patient.
    let host_addr = addr(&host).await;
    let book = PeerBook {
        home: Some(host_addr.clone()),
        replicas: vec![],
        learned: vec![],
    };
    for n in [&george_node, &mary_node, &pharmacy, &stranger] {
        n.handle.set_peer_book(&rec, &book).unwrap();
    }
    let hp = host.handle.peer_id();
    let r = sync_with(&george_node, &host, rec, true).await;
    // Genesis, two grants, and per stream written an epoch's opening and the entry.
    assert!(r.pushed >= 7, "{r:?}");
    assert_eq!(
        host.handle.store().with_record(&rec, |r| r.len()).unwrap(),
        7
    );
    // The host holds and serves it, and cannot read it.
    assert!(host
        .handle
        .store()
        .with_record(&rec, |r| matches!(
            r.content_state(&private),
            Some(cophr_protocol::record::ContentState::Locked)
        ))
        .unwrap());

    // Mary (everything) and the pharmacist (medications only) replicate from the host.
    sync_with(&mary_node, &host, rec, true).await;
    sync_with(&pharmacy, &host, rec, false).await;
    // Mary reads everything; the pharmacist reads the medications.
    assert!(mary_node
        .handle
        .store()
        .with_record(&rec, |r| r.contains(&private)
            && matches!(
                r.payload(&private).as_deref(),
                Some(Payload::Create { .. })
            ))
        .unwrap());
    assert!(pharmacy
        .handle
        .store()
        .with_record(&rec, |r| r
            .entries()
            .any(|e| matches!(r.payload(&e.id()).as_deref(), Some(Payload::Create { category, .. }) if *category == Category::Medications)))
        .unwrap());
    let pharm_holds = pharmacy
        .handle
        .store()
        .with_record(&rec, |r| {
            r.entries()
                .map(|e| r.stream_of(&e.id()).cloned().flatten())
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert!(
        pharm_holds
            .iter()
            .all(|s| s.is_none() || *s == Some(Category::Medications)),
        "{pharm_holds:?}"
    );
    assert!(!pharmacy
        .handle
        .store()
        .with_record(&rec, |r| r.contains(&private))
        .unwrap());

    // A peer with no grant is refused and learns nothing.
    let err = client::sync(&stranger.handle, hp, vec![host_addr.clone()], rec, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no access"), "{err}");
    assert!(!stranger.handle.store().holds(&rec).unwrap());

    // George subscribes (by syncing); Mary writes; it reaches the host and George live.
    sync_with(&george_node, &host, rec, true).await;
    let reading = write(
        &mary_node,
        &rec,
        &key(9, "Mary"),
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(141, 89),
        },
    );
    mary_node.handle.changed(rec).await.unwrap();
    let h = host.handle.store().clone();
    eventually("Mary's reading reaches the host", || {
        h.with_record(&rec, |r| r.contains(&reading))
            .unwrap_or(false)
    })
    .await;
    let g = george_node.handle.store().clone();
    eventually("Mary's reading reaches George", || {
        g.with_record(&rec, |r| r.contains(&reading))
            .unwrap_or(false)
    })
    .await;
    // Reads served to peers were audited on the host, and George (patient) receives them.
    sync_with(&george_node, &host, rec, true).await;
    let host_node = host.handle.store().node_id();
    let served: Vec<_> = g
        .audit_events(&rec)
        .unwrap()
        .into_iter()
        .filter(|e| e.event.node == host_node)
        .collect();
    assert!(
        served
            .iter()
            .any(|e| e.event.actor == key(9, "Pharmacist").actor()
                && e.event.detail.as_deref() == Some("served to a replica")),
        "the patient sees who was served what: {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_or_copied_proofs_open_nothing() {
    let host = node("host2").await;
    let george_node = node("George2").await;
    let thief = node("Thief").await;
    let george = key(9, "George2");
    let rec = george.actor();
    create(&george_node, &george);
    let host_addr = addr(&host).await;
    let hp = host.handle.peer_id();
    sync_with(&george_node, &host, rec, true).await;
    // A proof made for George's connection, replayed by another peer, is refused.
    let proof = cophr_protocol::sync::Proof::new(
        &george,
        rec,
        &george_node.handle.peer_id().to_bytes(),
        &hp.to_bytes(),
        [5; 16],
        net::service::now_ms(),
    );
    let digests = |p| Request::Digests {
        proof: p,
        digests: vec![],
    };
    let resp = thief
        .handle
        .request(hp, vec![host_addr.clone()], digests(proof.clone()))
        .await
        .unwrap();
    assert!(
        matches!(resp, Response::Refused { code: Refusal::BadProof, ref reason } if reason.contains("another connection")),
        "{resp:?}"
    );
    // On George's own connection, the second use of the same nonce is refused.
    let first = george_node
        .handle
        .request(hp, vec![host_addr.clone()], digests(proof.clone()))
        .await
        .unwrap();
    assert!(matches!(first, Response::Differ { .. }), "{first:?}");
    let again = george_node
        .handle
        .request(hp, vec![host_addr.clone()], digests(proof))
        .await
        .unwrap();
    assert!(
        matches!(again, Response::Refused { code: Refusal::BadProof, ref reason } if reason.contains("already used")),
        "{again:?}"
    );
}

async fn node_with(name: &str, bootstrap: Vec<libp2p::Multiaddr>) -> Node {
    node_config(
        name,
        name,
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap,
            sync_interval: Duration::from_millis(300),
            ..NetConfig::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_finds_the_home_and_replicas_follow_a_move() {
    let boot = node_with("boot", vec![]).await;
    let b = addr(&boot).await;
    let host1 = node_with("host-a", vec![b.clone()]).await;
    let host2 = node_with("host-b", vec![b.clone()]).await;
    let george_node = node_with("George3", vec![b.clone()]).await;
    let nurse_node = node_with("Nurse3", vec![b.clone()]).await;
    let george = key(9, "George3");
    let nurse = key(9, "Nurse3");
    let rec = george.actor();
    let gs = george_node.handle.store();
    gs.create_record(
        &george,
        profile("George", "patient", None),
        net::service::now_ms(),
        None,
    )
    .unwrap();
    write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(
            &nurse,
            Level::Write,
            &[Category::VitalSigns],
            false,
            false,
        )),
    );
    let a1 = addr(&host1).await;
    client::host(&george_node.handle, &a1, rec, None)
        .await
        .unwrap();

    // The nurse knows only the record id and a bootstrap peer: the DHT names the home.
    let mut found = None;
    for _ in 0..50 {
        if let Ok(a) = client::follow(&nurse_node.handle, rec).await {
            found = Some(a);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        found.as_ref(),
        Some(&a1),
        "the home pointer is found and checked"
    );
    client::sync(
        &nurse_node.handle,
        host1.handle.peer_id(),
        vec![a1.clone()],
        rec,
        true,
    )
    .await
    .unwrap();
    assert!(nurse_node.handle.store().holds(&rec).unwrap());

    // George moves to the second host; the first deletes its copy only afterwards.
    let a2 = addr(&host2).await;
    client::move_home(&george_node.handle, &a2, rec, None)
        .await
        .unwrap();
    assert!(host2.handle.store().holds(&rec).unwrap());
    assert!(
        !host1.handle.store().holds(&rec).unwrap(),
        "the old host released the record"
    );

    // The nurse's node follows by itself: its next write reaches the new host.
    let reading = write(
        &nurse_node,
        &rec,
        &nurse,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(128, 82),
        },
    );
    nurse_node.handle.changed(rec).await.unwrap();
    let h2 = host2.handle.store().clone();
    eventually("the nurse's write reaches the new home", || {
        h2.with_record(&rec, |r| r.contains(&reading))
            .unwrap_or(false)
    })
    .await;
    let book = nurse_node.handle.peer_book(&rec).unwrap();
    assert_eq!(book.home.as_ref(), Some(&a2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_pushes_are_refused_and_store_nothing() {
    let host = node("host4").await;
    let george_node = node("George4").await;
    let mallory_node = node("Mallory4").await;
    let george = key(9, "George4");
    let mallory = key(9, "Mallory4");
    let victim = key(9, "Victim4");
    let rec = george.actor();
    create(&george_node, &george);
    // Mallory may view vital signs only, with no delegate right; her grant expires soon.
    let mut g = grant(&mallory, Level::View, &[Category::VitalSigns], false, false);
    g.until = Some(net::service::now_ms() + 60_000);
    write(&george_node, &rec, &george, Payload::Grant(g));
    let host_addr = addr(&host).await;
    let hp = host.handle.peer_id();
    sync_with(&george_node, &host, rec, true).await;
    client::sync(
        &mallory_node.handle,
        hp,
        vec![host_addr.clone()],
        rec,
        false,
    )
    .await
    .unwrap();
    let before = host.handle.store().with_record(&rec, |r| r.len()).unwrap();
    let base = mallory_node
        .handle
        .store()
        .with_record(&rec, |r| r.clone())
        .unwrap();
    let now = net::service::now_ms();
    let push = |entries: Vec<Vec<u8>>| Request::Push {
        proof: cophr_protocol::sync::Proof::new(
            &mallory,
            rec,
            &mallory_node.handle.peer_id().to_bytes(),
            &hp.to_bytes(),
            rand_nonce(),
            net::service::now_ms(),
        ),
        entries: entries
            .into_iter()
            .map(serde_bytes::ByteBuf::from)
            .collect(),
        invitation: None,
        host: false,
    };
    let my_grant = base.grants_of(&mallory.actor())[0];
    // 1. A write beyond her level (escalation), signed properly.
    let write_attempt = base
        .next_entry(
            &mallory.actor(),
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(120, 80),
            },
            Some(my_grant),
            now,
            None,
        )
        .sign(&mallory);
    // 2. A grant issued without the delegate right.
    let grant_attempt = base
        .next_entry(
            &mallory.actor(),
            Payload::Grant(grant(
                &victim,
                Level::View,
                &[Category::VitalSigns],
                false,
                false,
            )),
            Some(my_grant),
            now,
            None,
        )
        .sign(&mallory);
    // 3. A forged signature: George's name, Mallory's key.
    let mut forged_entry = base.next_entry(
        &george.actor(),
        Payload::Create {
            category: Category::Problems,
            body: text_body(&[("problem", "forged")]),
        },
        None,
        now,
        None,
    );
    forged_entry.author = george.actor();
    let forged = forged_entry.sign(&mallory);
    // 4. A write after her grant expired (time beyond `until`).
    let late = base
        .next_entry(
            &mallory.actor(),
            Payload::Profile(profile("Mallory", "nurse", None)),
            Some(my_grant),
            now + 3_600_000,
            None,
        )
        .sign(&mallory);
    for (what, e) in [
        ("escalation", write_attempt),
        ("grant without delegate right", grant_attempt),
        ("forged signature", forged),
        ("expired capability", late),
    ] {
        let resp = mallory_node
            .handle
            .request(hp, vec![host_addr.clone()], push(vec![e.bytes().to_vec()]))
            .await
            .unwrap();
        match resp {
            Response::Pushed { accepted, rejected } => {
                assert!(accepted.is_empty(), "{what} accepted");
                assert_eq!(rejected.len(), 1, "{what}: {rejected:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
    // 5. An oversized message is refused by the codec; the node keeps serving.
    let huge = vec![0u8; 40 * 1024 * 1024];
    let r = mallory_node
        .handle
        .request(hp, vec![host_addr.clone()], push(vec![huge]))
        .await;
    assert!(
        r.is_err() || matches!(r, Ok(Response::Refused { .. })),
        "{r:?}"
    );
    assert_eq!(
        host.handle.store().with_record(&rec, |r| r.len()).unwrap(),
        before,
        "nothing stored"
    );
    client::sync(&george_node.handle, hp, vec![host_addr.clone()], rec, true)
        .await
        .expect("the host still serves after hostile input");
}

fn rand_nonce() -> [u8; 16] {
    use rand_core::RngCore;
    let mut n = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut n);
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_heal_and_another_replica_serves_when_the_host_is_down() {
    let host = node("host5").await;
    let george_node = node("George5").await;
    let mary_node = node("Mary5").await;
    let nurse_node = node("Nurse5").await;
    let george = key(9, "George5");
    let mary = key(9, "Mary5");
    let nurse = key(9, "Nurse5");
    let rec = george.actor();
    create(&george_node, &george);
    write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(&mary, Level::Delete, &[], true, true)),
    );
    write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(&nurse, Level::Write, &[], false, false)),
    );
    sync_with(&george_node, &host, rec, true).await;
    sync_with(&mary_node, &host, rec, true).await;
    sync_with(&nurse_node, &host, rec, true).await;

    // Partition: George and Mary each write while cut off from each other and the host.
    let g1 = write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::AboutMe,
            body: text_body(&[("thing-1", "Hard of hearing")]),
        },
    );
    let m1 = write(
        &mary_node,
        &rec,
        &mary,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(150, 95),
        },
    );
    let m2 = write(
        &mary_node,
        &rec,
        &mary,
        Payload::Annotate {
            target: m1,
            text: "after a walk".into(),
        },
    );
    // Heal: both sync with the host, then again to collect each other's writes.
    for _ in 0..2 {
        sync_with(&george_node, &host, rec, true).await;
        sync_with(&mary_node, &host, rec, true).await;
    }
    let heads = |n: &Node| n.handle.store().with_record(&rec, |r| r.heads()).unwrap();
    assert_eq!(heads(&george_node), heads(&mary_node));
    assert_eq!(heads(&george_node), heads(&host));
    for id in [g1, m1, m2] {
        assert!(george_node
            .handle
            .store()
            .with_record(&rec, |r| r.contains(&id))
            .unwrap());
    }

    // The host goes down; the nurse catches up from George's node instead.
    let g_addr = addr(&george_node).await;
    host.handle.shutdown().await.unwrap();
    let r = client::sync(
        &nurse_node.handle,
        george_node.handle.peer_id(),
        vec![g_addr],
        rec,
        false,
    )
    .await
    .unwrap();
    assert!(r.pulled >= 3, "{r:?}");
    assert!(nurse_node
        .handle
        .store()
        .with_record(&rec, |r| r.contains(&m2))
        .unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_node_keeps_what_it_had_gets_nothing_new_and_writes_nothing() {
    let host = node("host6").await;
    let george_node = node("George6").await;
    let care_node = node("HomeCare6").await;
    let george = key(9, "George6");
    let care = key(9, "HomeCare6");
    let rec = george.actor();
    create(&george_node, &george);
    let g = write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(
            &care,
            Level::Write,
            &[Category::VitalSigns],
            false,
            false,
        )),
    );
    let ha = addr(&host).await;
    sync_with(&george_node, &host, rec, true).await;
    sync_with(&care_node, &host, rec, true).await;
    let seen = write(
        &care_node,
        &rec,
        &care,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(130, 80),
        },
    );
    sync_with(&care_node, &host, rec, true).await;
    sync_with(&george_node, &host, rec, true).await;

    // George revokes; then adds a reading.
    write(
        &george_node,
        &rec,
        &george,
        Payload::Revoke {
            grant: g,
            category: None,
            reason: "changed provider".into(),
        },
    );
    let after = write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(125, 78),
        },
    );
    sync_with(&george_node, &host, rec, true).await;

    // Home care's write made without knowing of the revocation is refused by the host.
    let late = write(
        &care_node,
        &rec,
        &care,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(140, 90),
        },
    );
    let r = sync_with(&care_node, &host, rec, true).await;
    let on_host = host
        .handle
        .store()
        .with_record(&rec, |r| r.status(&late).cloned())
        .unwrap();
    assert!(
        !matches!(on_host, Some(cophr_protocol::record::Status::Valid)),
        "the host holds the late write as void or not at all: {on_host:?}, {r:?}"
    );
    // It keeps what it had, and receives nothing written after the revocation.
    let cs = care_node.handle.store();
    assert!(cs.with_record(&rec, |r| r.contains(&seen)).unwrap());
    assert!(!cs.with_record(&rec, |r| r.contains(&after)).unwrap());
    // And it can still fetch, from the host, what it was allowed to see before.
    let fresh = node("HomeCare6").await;
    fresh
        .handle
        .set_peer_book(
            &rec,
            &PeerBook {
                home: Some(ha.clone()),
                replicas: vec![],
                learned: vec![],
            },
        )
        .unwrap();
    sync_with(&fresh, &host, rec, false).await;
    let fs = fresh.handle.store();
    assert!(fs.with_record(&rec, |r| r.contains(&seen)).unwrap());
    assert!(!fs.with_record(&rec, |r| r.contains(&after)).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forks_are_kept_as_proof_and_reported() {
    let host = node("host7").await;
    let george_node = node("George7").await;
    let nurse_node = node("Nurse7").await;
    let george = key(9, "George7");
    let nurse = key(9, "Nurse7");
    let rec = george.actor();
    create(&george_node, &george);
    write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(&nurse, Level::Write, &[], false, false)),
    );
    let ha = addr(&host).await;
    let hp = host.handle.peer_id();
    sync_with(&george_node, &host, rec, true).await;
    sync_with(&nurse_node, &host, rec, true).await;
    // The nurse's key signs two different entries with the same sequence number.
    let base = nurse_node
        .handle
        .store()
        .with_record(&rec, |r| r.clone())
        .unwrap();
    let now = net::service::now_ms();
    let a = base
        .prepare_as(
            &nurse,
            Payload::Create {
                category: Category::Problems,
                body: text_body(&[("problem", "A")]),
            },
            now,
            None,
        )
        .unwrap();
    let b = base
        .prepare_as(
            &nurse,
            Payload::Create {
                category: Category::Problems,
                body: text_body(&[("problem", "B")]),
            },
            now,
            None,
        )
        .unwrap();
    let push = |e: &cophr_protocol::Verified| Request::Push {
        proof: cophr_protocol::sync::Proof::new(
            &nurse,
            rec,
            &nurse_node.handle.peer_id().to_bytes(),
            &hp.to_bytes(),
            rand_nonce(),
            net::service::now_ms(),
        ),
        entries: vec![serde_bytes::ByteBuf::from(e.signed().bytes().to_vec())],
        invitation: None,
        host: false,
    };
    let first = nurse_node
        .handle
        .request(hp, vec![ha.clone()], push(&a))
        .await
        .unwrap();
    assert!(
        matches!(first, Response::Pushed { ref accepted, .. } if accepted == &vec![a.id()]),
        "{first:?}"
    );
    let second = nurse_node
        .handle
        .request(hp, vec![ha.clone()], push(&b))
        .await
        .unwrap();
    match second {
        Response::Pushed { accepted, rejected } => {
            assert!(accepted.is_empty());
            assert!(rejected[0].1.contains("fork"), "{rejected:?}");
        }
        other => panic!("{other:?}"),
    }
    let proofs = host.handle.store().fork_proofs(&rec).unwrap();
    assert_eq!(
        proofs.iter().map(|p| p.id()).collect::<Vec<_>>(),
        vec![b.id()]
    );
    assert!(
        host.handle.store().verify().unwrap().is_ok(),
        "the record is not corrupted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_request_budget_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), key(9, "host8/node")).unwrap();
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        requests_per_minute: 3,
        sync_interval: Duration::from_secs(3600),
        ..NetConfig::default()
    };
    let (host, _task) = net::start(
        store,
        key(9, "host8"),
        key(9, "host8/peer").secret_bytes(),
        config,
    )
    .await
    .unwrap();
    let mut ha = Vec::new();
    for _ in 0..500 {
        ha = host.listen_addrs().await.unwrap();
        if !ha.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let client_node = node("Chatty8").await;
    let rec = key(9, "Nobody8").actor();
    let mut refusals = Vec::new();
    for _ in 0..5 {
        let r = client_node
            .handle
            .request(
                host.peer_id(),
                ha.clone(),
                Request::Announce { record: rec },
            )
            .await
            .unwrap();
        refusals.push(matches!(
            r,
            Response::Refused {
                code: Refusal::RateLimited,
                ..
            }
        ));
    }
    assert_eq!(refusals, [false, false, false, true, true]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reachable_only_through_a_relay_is_synced_through_it() {
    // A relay (e.g. a community host) and George's personal node that accepts no direct
    // connections: it listens only through the relay.
    let relay = node_config(
        "relay",
        "relay",
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            relay_server: true,
            sync_interval: Duration::from_secs(3600),
            ..NetConfig::default()
        },
    )
    .await;
    let ra = addr(&relay).await;
    let george = key(9, "George9");
    let g = node_config(
        "George9",
        "George9",
        NetConfig {
            listen: vec![],
            relays: vec![ra],
            sync_interval: Duration::from_secs(3600),
            ..NetConfig::default()
        },
    )
    .await;
    create(&g, &george);
    // Its only address is a circuit through the relay.
    let addrs = g.handle.listen_addrs().await.unwrap();
    assert!(
        addrs.iter().all(|a| a.to_string().contains("p2p-circuit")),
        "{addrs:?}"
    );
    // George's own laptop (a second node acting as George) pulls his record through it.
    let laptop = node_config(
        "laptop",
        "George9",
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            sync_interval: Duration::from_secs(3600),
            ..NetConfig::default()
        },
    )
    .await;
    let r = client::sync(
        &laptop.handle,
        g.handle.peer_id(),
        addrs,
        george.actor(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.pulled, 1, "{r:?}");
}

/// George revokes Mary while Mary, not knowing, delegates to a night sitter, whose node
/// pulls from Mary's and writes. The host has the revocation, then gets Mary's grant to the
/// sitter (void). The sitter's node, syncing with the host, is not refused: it receives the
/// administrative entries in the revocation's causal past (nothing else), its replica
/// applies the revocation, finds its grant and writes void, and it writes nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_grantee_learns_of_the_revocation_and_stops() {
    let host = node("host10").await;
    let george_node = node("George10").await;
    let mary_node = node("Mary10").await;
    let sitter_node = node("Sitter10").await;
    let george = key(9, "George10");
    let mary = key(9, "Mary10");
    let sitter = key(9, "Sitter10");
    let rec = create(&george_node, &george);
    let g1 = write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(&mary, Level::Delete, &[], true, true)),
    );
    write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::Problems,
            body: text_body(&[("problem", "Renal disease")]),
        },
    );
    sync_with(&george_node, &host, rec, true).await;
    sync_with(&mary_node, &host, rec, true).await;
    // George revokes Mary and goes on writing; the host has it all.
    write(
        &george_node,
        &rec,
        &george,
        Payload::Revoke {
            grant: g1,
            category: None,
            reason: "moved away".into(),
        },
    );
    let revocation = george_node
        .handle
        .store()
        .with_record(&rec, |r| *r.grant(&g1).unwrap().revoked_by.last().unwrap())
        .unwrap();
    let after_grant = write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(
            &key(9, "Pharmacist10"),
            Level::View,
            &[Category::Medications],
            false,
            false,
        )),
    );
    let after_reading = write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(128, 82),
        },
    );
    sync_with(&george_node, &host, rec, true).await;
    // Mary, offline, delegates to the sitter, whose node pulls from hers and writes.
    let g2 = write(
        &mary_node,
        &rec,
        &mary,
        Payload::Grant(grant(
            &sitter,
            Level::Write,
            &[Category::VitalSigns],
            false,
            false,
        )),
    );
    sync_with(&sitter_node, &mary_node, rec, false).await;
    let w = write(
        &sitter_node,
        &rec,
        &sitter,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(135, 85),
        },
    );
    sync_with(&mary_node, &host, rec, true).await;
    let hs = host.handle.store();
    assert!(matches!(
        hs.with_record(&rec, |r| r.status(&g2).cloned()).unwrap(),
        Some(Status::Void { .. })
    ));
    let held: HashSet<EntryId> = sitter_node
        .handle
        .store()
        .with_record(&rec, |r| r.entries().map(|e| e.id()).collect())
        .unwrap();

    // The sitter syncs with the host: it learns why, and its write arrives there, void.
    let report = sync_with(&sitter_node, &host, rec, true).await;
    assert!(report.pulled > 0, "{report:?}");
    let ss = sitter_node.handle.store();
    let (has_revocation, g2_status, w_status, new) = ss
        .with_record(&rec, |r| {
            (
                r.contains(&revocation),
                r.status(&g2).cloned(),
                r.status(&w).cloned(),
                r.entries()
                    .map(|e| e.id())
                    .filter(|id| !held.contains(id))
                    .collect::<Vec<_>>(),
            )
        })
        .unwrap();
    assert!(has_revocation);
    assert!(matches!(g2_status, Some(Status::Void { .. })));
    assert!(matches!(w_status, Some(Status::Void { .. })));
    // Only administrative entries in the revocation's causal past reached it.
    hs.with_record(&rec, |r| {
        for id in &new {
            assert_eq!(r.stream_of(id), Some(&None), "{id} is administrative");
            assert!(
                r.in_past(id, &revocation),
                "{id} is in the revocation's past"
            );
        }
    })
    .unwrap();
    assert!(!ss
        .with_record(&rec, |r| r.contains(&after_grant)
            || r.contains(&after_reading))
        .unwrap());
    assert!(matches!(
        hs.with_record(&rec, |r| r.status(&w).cloned()).unwrap(),
        Some(Status::Void { .. })
    ));
    // It writes nothing more.
    let next = ss.write(
        &rec,
        &sitter,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(140, 90),
        },
        net::service::now_ms(),
        None,
    );
    assert!(next.is_err(), "{next:?}");
}

/// Watchers of a node are told of the entries it newly holds, by id, whether written
/// there or received from a peer, and only of those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchers_are_told_of_new_entries_written_or_received() {
    let host = node("host11").await;
    let george_node = node("George11").await;
    let george = key(9, "George11");
    let rec = create(&george_node, &george);
    let book = PeerBook {
        home: Some(addr(&host).await),
        replicas: vec![],
        learned: vec![],
    };
    george_node.handle.set_peer_book(&rec, &book).unwrap();
    sync_with(&george_node, &host, rec, true).await;
    let mut at_host = host.handle.watch().await.unwrap();
    let mut at_george = george_node.handle.watch().await.unwrap();
    // A lab result written on George's node, announced as the CLI does.
    let lab = write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::LabResults,
            body: text_body(&[("test", "HbA1c"), ("result", "48"), ("unit", "mmol/mol")]),
        },
    );
    george_node.handle.changed(rec).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), at_george.recv())
        .await
        .expect("a change event on George's node")
        .unwrap();
    // The lab-results stream's first epoch was opened before it: both are new.
    let opening = george_node
        .handle
        .store()
        .with_record(&rec, |r| {
            r.entries()
                .find(|e| matches!(e.entry().payload, Payload::KeyWrap { .. }))
                .map(|e| e.id())
        })
        .unwrap()
        .expect("the stream's opening");
    assert_eq!(
        got,
        net::Changes {
            record: rec,
            entries: vec![opening, lab]
        }
    );
    // The change reaches the host (pushed there, or pulled by its own sync in rounds that
    // may split it): its watcher is told of each entry, once.
    let mut told = Vec::new();
    while told.len() < 2 {
        let got = tokio::time::timeout(Duration::from_secs(10), at_host.recv())
            .await
            .expect("a change event on the host")
            .unwrap();
        assert_eq!(got.record, rec);
        told.extend(got.entries);
    }
    told.sort();
    let mut expected = vec![opening, lab];
    expected.sort();
    assert_eq!(told, expected, "each entry told once");
    // Nothing else was reported.
    assert!(at_host.try_recv().is_err());
    assert!(at_george.try_recv().is_err());
}

/// A node with its store in `dir` (kept by the caller), listening on `listen`.
async fn node_in(name: &str, dir: &std::path::Path, listen: &str, tick: Duration) -> NodeHandle {
    node_in_with(name, dir, listen, tick, Vec::new()).await
}

/// [`node_in`], bootstrapped from `bootstrap`.
async fn node_in_with(
    name: &str,
    dir: &std::path::Path,
    listen: &str,
    tick: Duration,
    bootstrap: Vec<libp2p::Multiaddr>,
) -> NodeHandle {
    // The store of a node just stopped may still be closing: try for a while.
    let mut opened = None;
    for _ in 0..500 {
        match Store::open(dir, key(9, &format!("{name}/node"))) {
            Ok((s, _)) => {
                opened = Some(s);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    let store = opened.expect("the store reopens");
    let peer_key = key(9, &format!("{name}/peer")).secret_bytes();
    let config = NetConfig {
        listen: vec![listen.parse().unwrap()],
        sync_interval: tick,
        bootstrap,
        ..NetConfig::default()
    };
    let (handle, _task) = net::start(store, key(9, name), peer_key, config)
        .await
        .unwrap();
    for _ in 0..500 {
        if !handle.listen_addrs().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_away_from_an_offline_host_stays_pending_until_the_host_returns_and_deletes() {
    let listen = fixed_listen();
    let old_dir = tempfile::tempdir().unwrap();
    let old = node_in(
        "oldhost7",
        old_dir.path(),
        &listen,
        Duration::from_secs(3600),
    )
    .await;
    let old_addr = old.listen_addrs().await.unwrap()[0].clone();
    let new = node("newhost7").await;
    let george = key(9, "George7");
    let george_dir = tempfile::tempdir().unwrap();
    // George's node catches up (and retries what is pending) every 200 ms.
    let george_node = node_in(
        "George7",
        george_dir.path(),
        "/ip4/127.0.0.1/tcp/0",
        Duration::from_millis(200),
    )
    .await;
    let rec = george.actor();
    create_on(george_node.store(), &george);
    client::host(&george_node, &old_addr, rec, None)
        .await
        .unwrap();
    assert!(old.store().holds(&rec).unwrap());

    // The old host goes offline; George moves anyway.
    old.shutdown().await.unwrap();
    drop(old);
    let new_addr = addr(&new).await;
    let moved = client::move_home(&george_node, &new_addr, rec, None)
        .await
        .unwrap();
    assert_eq!(moved.from.as_ref(), Some(&old_addr));
    assert!(
        !moved.released,
        "an offline host cannot have deleted anything"
    );
    assert_eq!(
        client::pending_releases(george_node.store()).unwrap(),
        vec![(rec, old_addr.clone())]
    );
    assert!(new.handle.store().holds(&rec).unwrap());

    // The old host comes back on the same address: George's node tells it again, and it
    // deletes its copy; nothing is pending any more.
    let back = node_in(
        "oldhost7",
        old_dir.path(),
        &listen,
        Duration::from_secs(3600),
    )
    .await;
    let back_store = back.store().clone();
    eventually("the returning host deletes its copy", || {
        !back_store.holds(&rec).unwrap()
    })
    .await;
    let gs = george_node.store().clone();
    eventually("the release is no longer pending", || {
        client::pending_releases(&gs).unwrap().is_empty()
    })
    .await;
}

/// A host that releases a record also takes the home pointer it published for it (naming
/// itself) out of its own DHT store: nothing naming the record stays behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_host_keeps_no_pointer_naming_itself() {
    let host = node("host14").await;
    let george = key(9, "George14");
    let george_node = node("George14").await;
    let rec = create(&george_node, &george);
    let host_addr = addr(&host).await;
    client::host(&george_node.handle, &host_addr, rec, None)
        .await
        .unwrap();
    let host_id = host.handle.peer_id().to_bytes();
    let published = host.handle.local_home(rec).await.unwrap();
    assert_eq!(
        published.map(|p| p.pointer.host),
        Some(host_id.clone()),
        "hosting, it holds the pointer naming itself"
    );
    assert!(client::release(&george_node.handle, &host_addr, rec)
        .await
        .unwrap());
    assert!(!host.handle.store().holds(&rec).unwrap());
    let kept = host.handle.local_home(rec).await.unwrap();
    assert!(
        kept.is_none(),
        "its own pointer left its DHT store: {kept:?}"
    );
}

/// George moves away from a host that is offline (its release stays pending), then back to
/// it before his node retried the release: the pending release is dropped, and a retry
/// does not delete the copy on what is now his home again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_still_pending_never_reaches_a_host_the_record_moved_back_to() {
    let listen = fixed_listen();
    let a_dir = tempfile::tempdir().unwrap();
    let a = node_in("hostA11", a_dir.path(), &listen, Duration::from_secs(3600)).await;
    let a_addr = a.listen_addrs().await.unwrap()[0].clone();
    let b = node("hostB11").await;
    let george = key(9, "George11");
    let george_dir = tempfile::tempdir().unwrap();
    // George's node retries nothing by itself here: the test calls the retry.
    let george_node = node_in(
        "George11",
        george_dir.path(),
        "/ip4/127.0.0.1/tcp/0",
        Duration::from_secs(3600),
    )
    .await;
    let rec = george.actor();
    create_on(george_node.store(), &george);
    client::host(&george_node, &a_addr, rec, None)
        .await
        .unwrap();
    a.shutdown().await.unwrap();
    drop(a);
    let b_addr = addr(&b).await;
    let moved = client::move_home(&george_node, &b_addr, rec, None)
        .await
        .unwrap();
    assert!(!moved.released);
    assert_eq!(
        client::pending_releases(george_node.store()).unwrap(),
        vec![(rec, a_addr.clone())]
    );
    // A comes back (still holding the record), and George moves home to it again.
    let a = node_in("hostA11", a_dir.path(), &listen, Duration::from_secs(3600)).await;
    assert!(a.store().holds(&rec).unwrap());
    let moved = client::move_home(&george_node, &a_addr, rec, None)
        .await
        .unwrap();
    assert!(moved.released, "B released the record");
    assert!(!b.handle.store().holds(&rec).unwrap());
    assert!(
        client::pending_releases(george_node.store())
            .unwrap()
            .is_empty(),
        "the release of A, now home again, is no longer pending"
    );
    client::retry_releases(&george_node).await.unwrap();
    assert!(
        a.store().holds(&rec).unwrap(),
        "A, his home, keeps the record"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_refuses_records_its_admission_policy_does_not_take() {
    use cophr_protocol::sync::server::{Admission, HostPolicy};
    let george = key(9, "George8");
    let closed = node_config(
        "closedhost8",
        "closedhost8",
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            sync_interval: Duration::from_secs(3600),
            host: HostPolicy {
                admission: Admission::AllowList([key(9, "Someone8").actor()].into()),
                ..HostPolicy::default()
            },
            ..NetConfig::default()
        },
    )
    .await;
    let george_node = node("George8").await;
    let rec = create(&george_node, &george);
    let err = client::host(&george_node.handle, &addr(&closed).await, rec, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            net::NetError::Refused {
                code: Refusal::NotAdmitted,
                ..
            }
        ),
        "{err}"
    );
    assert!(!closed.handle.store().holds(&rec).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_home_host_down_a_replica_catches_up_from_a_replica_it_learned() {
    let host = node("host9").await;
    let george = key(9, "George9");
    let mary = key(9, "Mary9");
    let rec = george.actor();
    let george_node = node("George9").await;
    let mary_dir = tempfile::tempdir().unwrap();
    let mary_node = node_in(
        "Mary9",
        mary_dir.path(),
        "/ip4/127.0.0.1/tcp/0",
        Duration::from_millis(200),
    )
    .await;
    create(&george_node, &george);
    write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(&mary, Level::Delete, &[], true, true)),
    );
    let ha = addr(&host).await;
    client::host(&george_node.handle, &ha, rec, None)
        .await
        .unwrap();
    mary_node
        .set_peer_book(
            &rec,
            &PeerBook {
                home: Some(ha.clone()),
                replicas: vec![],
                learned: vec![],
            },
        )
        .unwrap();
    let ms = mary_node.store().clone();
    client::sync(
        &mary_node,
        host.handle.peer_id(),
        vec![ha.clone()],
        rec,
        true,
    )
    .await
    .unwrap();
    assert!(ms.holds(&rec).unwrap());
    // George's node pulls from Mary's, proving access: Mary's node learns where it is.
    let ma = mary_node.listen_addrs().await.unwrap()[0].clone();
    let mh = mary_node.clone();
    for _ in 0..50 {
        client::sync(
            &george_node.handle,
            mh.peer_id(),
            vec![ma.clone()],
            rec,
            false,
        )
        .await
        .unwrap();
        if !mh.peer_book(&rec).unwrap().learned.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let learned = mh.peer_book(&rec).unwrap().learned;
    assert_eq!(
        learned
            .iter()
            .filter_map(net::service::peer_of)
            .collect::<Vec<_>>(),
        vec![george_node.handle.peer_id()]
    );
    // The home host goes down; George writes; Mary's node catches up from George's.
    host.handle.shutdown().await.unwrap();
    let reading = write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(150, 95),
        },
    );
    eventually("Mary's node catches up from the replica it learned", || {
        ms.with_record(&rec, |r| r.contains(&reading))
            .unwrap_or(false)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_by_invitation_takes_a_record_with_a_code_its_operator_issued() {
    use cophr_protocol::sync::server::{Admission, HostPolicy};
    let host = node_config(
        "invitehost10",
        "invitehost10",
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            sync_interval: Duration::from_secs(3600),
            host: HostPolicy {
                admission: Admission::Invitation,
                ..HostPolicy::default()
            },
            ..NetConfig::default()
        },
    )
    .await;
    let george = key(9, "George10");
    let george_node = node("George10").await;
    let rec = create(&george_node, &george);
    let ha = addr(&host).await;
    let err = client::host(&george_node.handle, &ha, rec, None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            net::NetError::Refused {
                code: Refusal::NotAdmitted,
                ..
            }
        ),
        "{err}"
    );
    let code = net::server::issue_invitation(host.handle.store()).unwrap();
    client::host(&george_node.handle, &ha, rec, Some(&code))
        .await
        .unwrap();
    assert!(host.handle.store().holds(&rec).unwrap());
}

/// A PDF body of `size` bytes.
fn pdf(size: usize, n: u8) -> cophr_protocol::value::Value {
    use cophr_protocol::value::Value;
    let mut data = b"%PDF-1.7\n".to_vec();
    data.resize(size, n);
    Value::Map(
        [
            ("title".to_string(), Value::Text(format!("Scan {n}"))),
            (
                "media-type".to_string(),
                Value::Text("application/pdf".into()),
            ),
            ("data".to_string(), Value::Bytes(data)),
        ]
        .into_iter()
        .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_well_over_the_message_cap_hosts_replicates_and_moves() {
    let host1 = node("host11").await;
    let host2 = node("host11b").await;
    let george = key(9, "George11");
    let mary = key(9, "Mary11");
    let george_node = node("George11").await;
    let mary_node = node("Mary11").await;
    let rec = create(&george_node, &george);
    write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(&mary, Level::View, &[], false, false)),
    );
    // 7 five-megabyte scans: 35 MB, beyond the 32 MiB a message may carry.
    for n in 0..7 {
        write(
            &george_node,
            &rec,
            &george,
            Payload::Create {
                category: Category::Documents,
                body: pdf(5_000_000, n),
            },
        );
    }
    let total = george_node
        .handle
        .store()
        .with_record(&rec, |r| r.len())
        .unwrap();
    let a1 = addr(&host1).await;
    client::host(&george_node.handle, &a1, rec, None)
        .await
        .unwrap();
    // Hosting named the host in a relay grant (one entry more), which the host holds too.
    let hosted = george_node
        .handle
        .store()
        .with_record(&rec, |r| r.len())
        .unwrap();
    assert_eq!(hosted, total + 1);
    assert_eq!(
        host1.handle.store().with_record(&rec, |r| r.len()).unwrap(),
        hosted
    );
    assert_eq!(
        relays(&george_node, &rec),
        vec![host1.handle.identity().actor()]
    );
    let total = hosted;
    let r = client::sync(
        &mary_node.handle,
        host1.handle.peer_id(),
        vec![a1],
        rec,
        false,
    )
    .await
    .unwrap();
    assert_eq!(r.pulled, total);
    let a2 = addr(&host2).await;
    client::move_home(&george_node.handle, &a2, rec, None)
        .await
        .unwrap();
    // The new host holds it all: its own relay grant, the move entry, and the revocation
    // of the former host's relay grant (which may no longer pull it).
    let moved = george_node
        .handle
        .store()
        .with_record(&rec, |r| r.len())
        .unwrap();
    assert!(
        moved >= total + 3,
        "{moved} entries after the move, {total} before"
    );
    assert_eq!(
        host2.handle.store().with_record(&rec, |r| r.len()).unwrap(),
        moved
    );
    assert_eq!(
        relays(&george_node, &rec),
        vec![host2.handle.identity().actor()]
    );
    // Neither host can open the content.
    for host in [&host1, &host2] {
        let locked = host
            .handle
            .store()
            .with_record(&rec, |r| {
                r.entries()
                    .filter(|e| e.entry().payload.sealed().is_some())
                    .all(|e| {
                        matches!(
                            r.content_state(&e.id()),
                            Some(cophr_protocol::record::ContentState::Locked)
                        )
                    })
            })
            .unwrap_or(true);
        assert!(locked, "a relay opens nothing");
    }
}

/// A host publishes the home pointers of more records than libp2p's in-memory store held
/// (1,024): each is stored here, so a lookup answers with it (before, every put beyond
/// the 1,024th was refused locally, and never sent).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_publishes_the_pointers_of_more_than_1024_records() {
    let host = node("ManyHost").await;
    let me = host.handle.peer_id().to_bytes();
    let patients: Vec<Keypair> = (0..1100)
        .map(|n| key(31, &format!("patient {n}")))
        .collect();
    for p in &patients {
        let pointer = cophr_protocol::home::HomePointer {
            record: p.actor(),
            host: me.clone(),
            addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
            seq: 1,
            time: net::service::now_ms(),
            heads: Vec::new(),
        }
        .sign(p);
        host.handle.publish_home(pointer).await.unwrap();
    }
    for p in [&patients[0], &patients[1099]] {
        let found = host.handle.find_home(p.actor()).await.unwrap();
        assert_eq!(found.pointer.record, p.actor());
        assert_eq!(found.pointer.host, me);
    }
}

/// The identities holding a relay grant in effect on `rec`, as `n` sees it.
fn relays(n: &Node, rec: &RecordId) -> Vec<ActorId> {
    n.handle
        .store()
        .with_record(rec, |r| {
            r.grants()
                .filter(|g| {
                    g.grant.level == Level::Relay && r.grants_of(&g.grant.grantee).contains(&g.id)
                })
                .map(|g| g.grant.grantee)
                .collect()
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_former_host_back_while_the_patient_is_offline_finds_the_move_and_deletes_its_copy() {
    let listen = fixed_listen();
    let old_dir = tempfile::tempdir().unwrap();
    let hour = Duration::from_secs(3600);
    let old = node_in("oldhost12", old_dir.path(), &listen, hour).await;
    let old_addr = old.listen_addrs().await.unwrap()[0].clone();
    let new = node("newhost12").await;
    let george = key(9, "George12");
    let george_node = node("George12").await;
    let rec = create(&george_node, &george);
    write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(141, 91),
        },
    );
    client::host(&george_node.handle, &old_addr, rec, None)
        .await
        .unwrap();
    old.shutdown().await.unwrap();
    drop(old);
    let new_addr = addr(&new).await;
    let moved = client::move_home(&george_node.handle, &new_addr, rec, None)
        .await
        .unwrap();
    assert!(!moved.released);
    // George's node goes offline for good: nobody will retry the release.
    george_node.handle.shutdown().await.unwrap();
    // The former host comes back, bootstrapped from the new host (which holds the newer,
    // patient-signed pointer), and checks its hosted records every 200 ms.
    let back = node_in_with(
        "oldhost12",
        old_dir.path(),
        &listen,
        Duration::from_millis(200),
        vec![new_addr.clone()],
    )
    .await;
    let store = back.store().clone();
    eventually("the former host deletes its copy by itself", || {
        !store.holds(&rec).unwrap()
    })
    .await;
    assert!(
        new.handle.store().holds(&rec).unwrap(),
        "the new host keeps it"
    );
    // The pointer naming the former host, which its tick published while it hosted the
    // record, leaves its DHT store too.
    let back_id = back.peer_id().to_bytes();
    for _ in 0..200 {
        let kept = back.local_home(rec).await.unwrap();
        if kept.is_none_or(|p| p.pointer.host != back_id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = back.local_home(rec).await.unwrap();
    assert!(
        kept.is_none_or(|p| p.pointer.host != back_id),
        "the former host's own pointer left its DHT store"
    );
    // A push of the record from a node of George's that has not heard of the move (as
    // one in flight from before the move would arrive): refused as released, and the
    // former host does not take the record back (the release campaign's seed 14 found
    // such a push re-creating the record after the former host's own check removed it).
    let george_again = node("George12").await;
    sync_with(&george_again, &new, rec, false).await;
    assert!(george_again.handle.store().holds(&rec).unwrap());
    let mut book = george_again.handle.peer_book(&rec).unwrap();
    book.home = Some(old_addr.clone());
    george_again.handle.set_peer_book(&rec, &book).unwrap();
    let pushed = client::sync(
        &george_again.handle,
        back.peer_id(),
        vec![old_addr.clone()],
        rec,
        true,
    )
    .await;
    assert!(
        matches!(
            pushed,
            Err(NetError::Refused {
                code: Refusal::Released,
                ..
            })
        ),
        "the push is refused as released: {pushed:?}"
    );
    assert!(
        !store.holds(&rec).unwrap(),
        "the push did not bring the record back"
    );
}

/// George grants a backup node `relay`: it pulls and keeps every entry of every category,
/// as signed, opens none, and serves Mary (who may read) what she may see; Mary reads it
/// from the relay's copy, the relay still reads nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_keeps_and_serves_everything_and_reads_nothing() {
    use cophr_protocol::record::ContentState;
    let george_node = node("George13").await;
    let backup = node("Backup13").await;
    let mary_node = node("Mary13").await;
    let george = key(9, "George13");
    let rec = create(&george_node, &george);
    write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(&key(9, "Backup13"), Level::Relay, &[], false, false)),
    );
    write(
        &george_node,
        &rec,
        &george,
        Payload::Grant(grant(&key(9, "Mary13"), Level::View, &[], false, false)),
    );
    let problem = write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::Problems,
            body: text_body(&[("problem", "Renal disease")]),
        },
    );
    let reading = write(
        &george_node,
        &rec,
        &george,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(141, 92),
        },
    );
    // The relay pulls from George's node: everything, every category.
    let r = sync_with(&backup, &george_node, rec, false).await;
    assert!(r.pulled >= 7, "{r:?}");
    let all = |n: &Node| n.handle.store().with_record(&rec, |r| r.len()).unwrap();
    assert_eq!(all(&backup), all(&george_node));
    let state = |n: &Node, id: &cophr_protocol::EntryId| {
        n.handle
            .store()
            .with_record(&rec, |r| {
                matches!(r.content_state(id), Some(ContentState::Opened))
            })
            .unwrap()
    };
    assert!(!state(&backup, &problem) && !state(&backup, &reading));
    // It writes nothing: a relay grant gives no write.
    let refused = backup.handle.store().write(
        &rec,
        &key(9, "Backup13"),
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(120, 80),
        },
        net::service::now_ms(),
        None,
    );
    assert!(refused.is_err(), "{refused:?}");
    // Mary pulls from the relay and reads.
    sync_with(&mary_node, &backup, rec, false).await;
    assert!(state(&mary_node, &problem) && state(&mary_node, &reading));
    assert!(!state(&backup, &problem));
}
