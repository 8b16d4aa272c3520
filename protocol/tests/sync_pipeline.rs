//! A pull asked ahead (`ClientSession::poll_ahead`): the next batch is asked for while one is
//! verified and stored, as the node does, driven here in process over `MemStore`s.

use cophr_protocol::access::Level;
use cophr_protocol::entry::SignedEntry;
use cophr_protocol::sync::client::{
    decode_verify, ClientEvent, ClientSession, SessionConfig, SyncError, SyncReport,
};
use cophr_protocol::sync::mem::MemStore;
use cophr_protocol::sync::server::{HostPolicy, Peer, Server, SyncStore};
use cophr_protocol::sync::{decode, encode, Request, Response};
use cophr_protocol::testkit::{bp, grant, key, text_body, Fixture};
use cophr_protocol::{Category, EntryId, Keypair};

const NOW: u64 = 1_700_000_100_000;

fn nonces() -> impl FnMut() -> [u8; 16] {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    || u128::from(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)).to_le_bytes()
}

/// A record of many entries in two category streams, with amends and annotations of
/// entries from earlier batches and from the same batch.
fn record() -> (Fixture, Keypair) {
    let mut f = Fixture::new(31, "George");
    let nurse = key(31, "Nurse");
    f.grant(grant(
        &nurse,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    let g = f.patient.clone();
    let mut made = Vec::new();
    for i in 0..40 {
        made.push(f.create(&g, Category::VitalSigns, bp(120 + i, 80)).unwrap());
        f.create(&nurse, Category::VitalSigns, bp(100 + i, 70))
            .unwrap();
        if i % 3 == 0 {
            f.create(
                &g,
                Category::Medications,
                text_body(&[("medication", "Metformin")]),
            )
            .unwrap();
        }
        if i % 7 == 6 {
            f.write(
                &g,
                cophr_protocol::Payload::Amend {
                    target: made[made.len() - 5],
                    body: bp(121, 81),
                },
            )
            .unwrap();
        }
    }
    (f, nurse)
}

fn store_of(f: &Fixture) -> MemStore {
    let mut s = MemStore::new(key(7, "host"));
    for e in f.record.entries() {
        s.write(e.clone()).unwrap();
    }
    s
}

/// How the driver orders the answer asked ahead and the batch stored.
#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// The batch is stored first (the node's order).
    StoredFirst,
    /// The answer comes in first.
    AnswerFirst,
}

struct Run {
    result: Result<SyncReport, SyncError>,
    /// Every pull's frontier, in the order sent.
    pulls: Vec<String>,
    /// The ids of every batch stored, in order.
    stored: Vec<Vec<EntryId>>,
    asked_ahead: usize,
}

/// Drives a pulling session, asking ahead whenever the session offers to, the server
/// answering each request as it is sent (so it prepares batch k + 1 before batch k is
/// stored). `tamper` may change the n-th entries answer (counted from 0).
fn run(
    f: &Fixture,
    actor: &Keypair,
    limit: u32,
    order: Order,
    tamper: impl Fn(usize, &mut Vec<serde_bytes::ByteBuf>),
) -> (Run, MemStore) {
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let mut host = store_of(f);
    let mut replica = MemStore::new(key(7, "replica"));
    let record = f.record.id();
    let mut cfg = SessionConfig::new(record, b"client".to_vec(), b"server".to_vec());
    cfg.pull_limit = limit;
    let mut session = ClientSession::new(actor.clone(), cfg);
    let mut nonce = nonces();
    let peer = Peer {
        id: b"client".to_vec(),
        label: "client".into(),
    };
    let mut answers = 0usize;
    let mut out = Run {
        result: Err(SyncError::Protocol("not run".into())),
        pulls: Vec::new(),
        stored: Vec::new(),
        asked_ahead: 0,
    };
    let ask = |request: Request,
               host: &mut MemStore,
               pulls: &mut Vec<String>,
               answers: &mut usize|
     -> Response {
        let request: Request = decode(&encode(&request)).unwrap();
        if let Request::Pull { frontier, .. } = &request {
            pulls.push(format!("{frontier:?}"));
        }
        let (response, _) = server.handle(host, &peer, request, NOW);
        let mut response: Response = decode(&encode(&response)).unwrap();
        if let Response::Entries { entries, .. } = &mut response {
            tamper(*answers, entries);
            *answers += 1;
        }
        response
    };
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::Received(entries) => {
                    let decoded: Vec<SignedEntry> = entries
                        .iter()
                        .map(|b| SignedEntry::decode(b).unwrap())
                        .collect();
                    let ahead = session.poll_ahead(&decoded, NOW, nonce(), replica.record(&record));
                    // The peer answers the pull asked ahead before this batch is stored.
                    let answer = ahead.map(|r| {
                        out.asked_ahead += 1;
                        ask(r, &mut host, &mut out.pulls, &mut answers)
                    });
                    if order == Order::AnswerFirst {
                        if let Some(a) = answer.clone() {
                            session.handle_response(a, replica.record(&record));
                        }
                    }
                    let ids: Vec<EntryId> = decoded.iter().map(SignedEntry::id).collect();
                    let stored = decode_verify(&record, &entries).and_then(|v| {
                        replica
                            .ingest(&record, v)
                            .map_err(|e| SyncError::BadEntries(e.to_string()))
                    });
                    if stored.is_ok() {
                        out.stored.push(ids);
                    }
                    session.handle_stored(stored, replica.record(&record));
                    if order == Order::StoredFirst {
                        if let Some(a) = answer {
                            session.handle_response(a, replica.record(&record));
                        }
                    }
                }
                ClientEvent::AuditReceived(events) => {
                    let kept = replica
                        .keep_audit(&events)
                        .map_err(|e| SyncError::Store(e.to_string()));
                    session.handle_audit_kept(kept);
                }
                ClientEvent::Done(result) => {
                    out.result = result;
                    return (out, replica);
                }
                _ => {}
            }
        }
        let Some(request) = session.poll_request(NOW, nonce(), replica.record(&record)) else {
            assert!(session.is_done(), "the session stalled: {session:?}");
            continue;
        };
        let response = ask(request, &mut host, &mut out.pulls, &mut answers);
        session.handle_response(response, replica.record(&record));
    }
}

#[test]
fn a_pull_asked_ahead_stores_every_batch_in_causal_order_and_asks_for_nothing_twice() {
    let (f, nurse) = record();
    for order in [Order::StoredFirst, Order::AnswerFirst] {
        for (who, limit) in [(&f.patient, 7), (&f.patient, 1), (&nurse, 5)] {
            let (run, replica) = run(&f, who, limit, order, |_, _| {});
            let report = run.result.expect("synced");
            let viewer = f.record.viewer(&who.actor(), NOW);
            let visible = f
                .record
                .entries()
                .filter(|e| f.record.can_see(&viewer, &e.id()))
                .count();
            let r = replica.record(&f.record.id()).unwrap();
            assert_eq!(r.len(), visible);
            assert_eq!(report.pulled, visible);
            assert!(run.stored.len() > 5, "{} batches", run.stored.len());
            // Every batch but the first was asked for ahead, and no pull was sent twice.
            assert_eq!(run.asked_ahead, run.stored.len() - 1);
            let mut distinct = run.pulls.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), run.pulls.len(), "a pull asked twice");
            // Stored in the order received: each batch applied on what came before.
            let order_stored: Vec<EntryId> = run.stored.concat();
            let mut seen = std::collections::HashSet::new();
            for id in &order_stored {
                let e = r.get(id).unwrap();
                for p in &e.entry().parents {
                    assert!(seen.contains(p) || !r.contains(p), "parent after child");
                }
                seen.insert(*id);
            }
        }
    }
}

#[test]
fn a_bad_entry_in_the_batch_asked_ahead_is_refused_and_nothing_of_it_is_stored() {
    let (f, _) = record();
    for order in [Order::StoredFirst, Order::AnswerFirst] {
        // The fourth answer (asked ahead while the third batch was stored) carries one
        // badly signed entry.
        let (run, replica) = run(&f, &f.patient, 6, order, |n, entries| {
            if n == 3 {
                let e = SignedEntry::decode(&entries[2]).unwrap();
                let forged = e.entry().clone().sign(&key(99, "Mallory"));
                entries[2] = serde_bytes::ByteBuf::from(forged.bytes().to_vec());
            }
        });
        assert!(
            matches!(run.result, Err(SyncError::BadEntries(_))),
            "{:?}",
            run.result.map(|_| ())
        );
        assert_eq!(
            run.stored.len(),
            3,
            "the three batches before it are stored"
        );
        let r = replica.record(&f.record.id()).unwrap();
        assert_eq!(
            r.len(),
            run.stored.concat().len(),
            "nothing of the bad batch"
        );
    }
}
