//! The sync state machines (client session and server) driven in process over
//! `MemStore`s, every message encoded and decoded as on the wire.

use cophr_protocol::access::Level;
use cophr_protocol::sync::client::{ClientSession, SessionConfig, SyncError};
use cophr_protocol::sync::mem::{run_session, MemStore};
use cophr_protocol::sync::server::{Admission, HostPolicy, Peer, Quotas, Server, SyncStore};
use cophr_protocol::sync::{Refusal, MAX_MESSAGE_BYTES};
use cophr_protocol::testkit::{bp, grant, key, text_body, Fixture};
use cophr_protocol::value::Value;
use cophr_protocol::{Category, Keypair, RecordId};

const NOW: u64 = 1_700_000_100_000;

fn peer(name: &str) -> Peer {
    Peer {
        id: name.as_bytes().to_vec(),
        label: format!("peer {name}"),
    }
}

/// Fresh nonces, never repeated within the test binary.
fn nonces() -> impl FnMut() -> [u8; 16] {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    || u128::from(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)).to_le_bytes()
}

/// A store holding the fixture's record, signing audit events as `node`.
fn store_of(f: &Fixture, node: &str) -> MemStore {
    let mut s = MemStore::new(key(7, node));
    for e in f.record.entries() {
        s.write(e.clone()).unwrap();
    }
    s
}

fn session(k: &Keypair, record: RecordId, push: bool) -> ClientSession {
    let mut cfg = SessionConfig::new(record, b"client".to_vec(), b"server".to_vec());
    cfg.push = push;
    ClientSession::new(k.clone(), cfg)
}

fn george() -> (Fixture, Keypair) {
    let mut f = Fixture::new(30, "George");
    let pharmacist = key(30, "Pharmacist");
    f.grant(grant(
        &pharmacist,
        Level::View,
        &[Category::Medications],
        false,
        false,
    ));
    let g = f.patient.clone();
    for i in 0..20 {
        f.create(&g, Category::VitalSigns, bp(120 + i, 80)).unwrap();
    }
    f.create(
        &g,
        Category::Medications,
        text_body(&[("medication", "Metformin")]),
    )
    .unwrap();
    (f, pharmacist)
}

#[test]
fn a_replica_pulls_what_it_may_see_and_the_server_audits_exactly_what_it_served() {
    let (f, pharmacist) = george();
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let mut host = store_of(&f, "host");
    let mut replica = MemStore::new(key(7, "pharmacy node"));
    let mut s = session(&pharmacist, f.record.id(), false);
    let (result, _) = run_session(
        &mut s,
        &mut replica,
        &peer("client"),
        &server,
        &mut host,
        NOW,
        nonces(),
    );
    let report = result.unwrap();
    let held = replica.record(&f.record.id()).unwrap();
    assert_eq!(report.pulled, held.len());
    let viewer = f.record.viewer(&pharmacist.actor(), NOW);
    let visible: Vec<_> = f
        .record
        .entries()
        .filter(|e| f.record.can_see(&viewer, &e.id()))
        .map(|e| e.id())
        .collect();
    assert_eq!(held.len(), visible.len());
    assert!(held.entries().all(|e| visible.contains(&e.id())));
    // Exactly the served entries are audited, as viewed by the pharmacist from its peer.
    let mut audited: Vec<_> = host
        .audit_events(&f.record.id())
        .iter()
        .filter(|a| a.event.actor == pharmacist.actor())
        .flat_map(|a| {
            assert_eq!(a.event.device.as_deref(), Some("peer client"));
            a.event.entries.clone()
        })
        .collect();
    audited.sort();
    let mut served = visible.clone();
    served.sort();
    assert_eq!(audited, served);
}

#[test]
fn a_patient_hosts_on_an_empty_host_and_a_second_sync_finds_nothing_to_do() {
    let (f, _) = george();
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let mut host = MemStore::new(key(7, "host"));
    let mut mine = store_of(&f, "laptop");
    let mut s = session(&f.patient, f.record.id(), true);
    let (r, _) = run_session(
        &mut s,
        &mut mine,
        &peer("client"),
        &server,
        &mut host,
        NOW,
        nonces(),
    );
    let r = r.unwrap();
    assert_eq!(r.pushed, f.record.len());
    assert!(r.rejected.is_empty());
    assert_eq!(host.record(&f.record.id()).unwrap().len(), f.record.len());
    let mut again = session(&f.patient, f.record.id(), true);
    let (r, _) = run_session(
        &mut again,
        &mut mine,
        &peer("client"),
        &server,
        &mut host,
        NOW + 1,
        nonces(),
    );
    let r = r.unwrap();
    assert_eq!((r.pulled, r.pushed), (0, 0));
    // Digests, one pull of the streams held here (the host may lack them), and the
    // audit trail the patient may read.
    assert_eq!(r.round_trips, 3);
}

fn pdf(size: usize, seed: u8) -> Value {
    let mut data = b"%PDF-1.7\n".to_vec();
    data.resize(size, seed);
    Value::Map(
        [
            ("title".to_string(), Value::Text(format!("Scan {seed}"))),
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

#[test]
fn a_record_far_larger_than_one_message_replicates_in_messages_under_the_cap() {
    let mut f = Fixture::new(31, "George");
    let g = f.patient.clone();
    // 9 five-megabyte PDFs: 45 MB, over the 32 MiB message cap.
    for i in 0..9 {
        f.create(&g, Category::Documents, pdf(5_000_000, i))
            .unwrap();
    }
    let total: usize = f.record.entries().map(|e| e.signed().bytes().len()).sum();
    assert!(total > MAX_MESSAGE_BYTES);
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    // Pushed to a host …
    let mut host = MemStore::new(key(7, "host"));
    let mut mine = store_of(&f, "laptop");
    let (r, sizes) = run_session(
        &mut session(&g, f.record.id(), true),
        &mut mine,
        &peer("client"),
        &server,
        &mut host,
        NOW,
        nonces(),
    );
    assert_eq!(r.unwrap().pushed, f.record.len());
    assert!(sizes.iter().all(|s| *s <= MAX_MESSAGE_BYTES), "{sizes:?}");
    // … and pulled from it by a new device of the patient's.
    let mut device = MemStore::new(key(7, "phone"));
    let (r, sizes) = run_session(
        &mut session(&g, f.record.id(), false),
        &mut device,
        &peer("client"),
        &server,
        &mut host,
        NOW,
        nonces(),
    );
    assert_eq!(r.unwrap().pulled, f.record.len());
    assert!(sizes.iter().all(|s| *s <= MAX_MESSAGE_BYTES), "{sizes:?}");
}

/// A server that answers a pull with entries whose parents it leaves out.
#[test]
fn a_batch_with_missing_parents_is_refused_whole_and_nothing_is_kept() {
    let (f, _) = george();
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let mut host = store_of(&f, "host");
    let mut mine = MemStore::new(key(7, "laptop"));
    let record = f.record.id();
    let mut s = session(&f.patient, record, false);
    let mut nonce = nonces();
    let req = s.poll_request(NOW, nonce(), None).unwrap();
    let (resp, _) = server.handle(&mut host, &peer("client"), req, NOW);
    s.handle_response(resp, None);
    let req = s.poll_request(NOW, nonce(), None).unwrap();
    let (resp, _) = server.handle(&mut host, &peer("client"), req, NOW);
    let cophr_protocol::sync::Response::Entries {
        mut entries,
        more,
        frontier,
    } = resp
    else {
        panic!("entries expected");
    };
    // Drop the genesis: every later entry now misses a parent.
    entries.remove(0);
    s.handle_response(
        cophr_protocol::sync::Response::Entries {
            entries,
            more,
            frontier,
        },
        None,
    );
    let Some(cophr_protocol::sync::client::ClientEvent::Received(batch)) = s.poll_event() else {
        panic!("a batch to store");
    };
    let stored = cophr_protocol::sync::client::decode_verify(&record, &batch).and_then(|v| {
        mine.ingest(&record, v)
            .map_err(|e| SyncError::BadEntries(e.to_string()))
    });
    assert!(matches!(stored, Err(SyncError::BadEntries(_))));
    s.handle_stored(stored, mine.record(&record));
    assert!(matches!(
        s.poll_event(),
        Some(cophr_protocol::sync::client::ClientEvent::Done(Err(
            SyncError::BadEntries(_)
        )))
    ));
    assert!(mine.record(&record).is_none_or(|r| r.is_empty()));
}

#[test]
fn refusals_are_typed() {
    let (f, pharmacist) = george();
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let mut host = store_of(&f, "host");
    let stranger = key(30, "Stranger");
    let mut replica = MemStore::new(key(7, "x"));
    let (r, _) = run_session(
        &mut session(&stranger, f.record.id(), false),
        &mut replica,
        &peer("client"),
        &server,
        &mut host,
        NOW,
        nonces(),
    );
    assert!(matches!(
        r,
        Err(SyncError::Refused {
            code: Refusal::NoAccess,
            ..
        })
    ));
    // A proof made for another connection.
    let (r, _) = run_session(
        &mut session(&pharmacist, f.record.id(), false),
        &mut replica,
        &peer("someone else"),
        &server,
        &mut host,
        NOW,
        nonces(),
    );
    assert!(matches!(
        r,
        Err(SyncError::Refused {
            code: Refusal::BadProof,
            ..
        })
    ));
}

fn host_with(policy: HostPolicy, f: &Fixture) -> Result<(), SyncError> {
    let server = Server::new(b"server".to_vec(), policy);
    let mut host = MemStore::new(key(7, "host"));
    let mut mine = store_of(f, "laptop");
    run_session(
        &mut session(&f.patient, f.record.id(), true),
        &mut mine,
        &peer("client"),
        &server,
        &mut host,
        NOW,
        nonces(),
    )
    .0
    .map(|_| ())
}

#[test]
fn a_host_takes_only_the_records_its_admission_policy_and_quotas_allow() {
    let (f, _) = george();
    let refused = |code| Err::<(), Refusal>(code);
    let host_with = |policy, f: &Fixture| {
        host_with(policy, f).map_err(|e| match e {
            SyncError::Refused { code, .. } => code,
            other => panic!("{other:?}"),
        })
    };
    assert_eq!(host_with(HostPolicy::default(), &f), Ok(()));
    let closed = HostPolicy {
        admission: Admission::Closed,
        ..HostPolicy::default()
    };
    assert_eq!(host_with(closed, &f), refused(Refusal::NotAdmitted));
    let other = HostPolicy {
        admission: Admission::AllowList([key(1, "Someone").actor()].into()),
        ..HostPolicy::default()
    };
    assert_eq!(host_with(other, &f), refused(Refusal::NotAdmitted));
    let listed = HostPolicy {
        admission: Admission::AllowList([f.record.id()].into()),
        ..HostPolicy::default()
    };
    assert_eq!(host_with(listed, &f), Ok(()));
    let small = HostPolicy {
        quotas: Quotas {
            record_bytes: Some(2_000),
            ..Quotas::default()
        },
        ..HostPolicy::default()
    };
    assert_eq!(host_with(small, &f), refused(Refusal::OverQuota));
    let no_room = HostPolicy {
        quotas: Quotas {
            records: Some(0),
            ..Quotas::default()
        },
        ..HostPolicy::default()
    };
    assert_eq!(host_with(no_room, &f), refused(Refusal::OverQuota));
}

#[test]
fn the_audit_trail_travels_to_an_identity_with_the_audit_right() {
    let (f, pharmacist) = george();
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let mut host = store_of(&f, "host");
    // The pharmacist's pull is audited at the host …
    let mut pharmacy = MemStore::new(key(7, "pharmacy"));
    run_session(
        &mut session(&pharmacist, f.record.id(), false),
        &mut pharmacy,
        &peer("client"),
        &server,
        &mut host,
        NOW,
        nonces(),
    )
    .0
    .unwrap();
    // … and George's phone, catching up, receives that audit event (not the pharmacist).
    assert!(pharmacy.audit_events(&f.record.id()).is_empty());
    let mut phone = MemStore::new(key(7, "phone"));
    let (r, _) = run_session(
        &mut session(&f.patient, f.record.id(), false),
        &mut phone,
        &peer("client"),
        &server,
        &mut host,
        NOW,
        nonces(),
    );
    assert!(r.unwrap().audit_pulled >= 1);
    assert!(phone
        .audit_events(&f.record.id())
        .iter()
        .any(|a| a.event.actor == pharmacist.actor()));
}

#[test]
fn a_host_by_invitation_takes_a_record_only_with_an_unused_code() {
    let (f, _) = george();
    let other = Fixture::new(32, "Ada");
    let policy = HostPolicy {
        admission: Admission::Invitation,
        ..HostPolicy::default()
    };
    let server = Server::new(b"server".to_vec(), policy);
    let mut host = MemStore::new(key(7, "host"));
    host.invite("inv-1");
    let push = |f: &Fixture, code: Option<&str>, host: &mut MemStore| {
        let mut cfg = SessionConfig::new(f.record.id(), b"client".to_vec(), b"server".to_vec());
        cfg.push = true;
        cfg.invitation = code.map(str::to_owned);
        let mut mine = store_of(f, "laptop");
        run_session(
            &mut ClientSession::new(f.patient.clone(), cfg),
            &mut mine,
            &peer("client"),
            &server,
            host,
            NOW,
            nonces(),
        )
        .0
        .map(|_| ())
    };
    let not_admitted = Err(SyncError::Refused {
        code: Refusal::NotAdmitted,
        reason: Refusal::NotAdmitted.to_string(),
    });
    assert_eq!(push(&f, None, &mut host), not_admitted);
    assert_eq!(push(&f, Some("inv-guessed"), &mut host), not_admitted);
    assert_eq!(push(&f, Some("inv-1"), &mut host), Ok(()));
    assert!(host.record(&f.record.id()).is_some());
    // Used once: another patient cannot reuse it.
    assert_eq!(push(&other, Some("inv-1"), &mut host), not_admitted);
    assert!(host.record(&other.record.id()).is_none());
}

/// Found by the simulation: the administrative stream changes at the server between the
/// digests and the pull, and a category entry written meanwhile names the new
/// administrative head as a parent. The pull brings the administrative stream too, so the
/// batch applies.
#[test]
fn a_pull_brings_the_administrative_stream_that_changed_since_the_digests() {
    let (mut f, pharmacist) = george();
    let g = f.patient.clone();
    let mut phone = store_of(&f, "phone");
    f.create(&g, Category::VitalSigns, bp(131, 81)).unwrap();
    let mut host = store_of(&f, "host");
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let record = f.record.id();
    let mut s = session(&g, record, false);
    let mut nonce = nonces();
    let req = s.poll_request(NOW, nonce(), phone.record(&record)).unwrap();
    let (resp, _) = server.handle(&mut host, &peer("client"), req, NOW);
    let cophr_protocol::sync::Response::Differ { streams } = &resp else {
        panic!("differ expected");
    };
    assert_eq!(streams, &vec![Some(Category::VitalSigns)]);
    s.handle_response(resp, phone.record(&record));
    // Meanwhile at the host: a new grant (administrative), then a reading after it.
    let nurse = key(30, "Nurse");
    f.grant(grant(
        &nurse,
        Level::View,
        &[Category::VitalSigns],
        false,
        false,
    ));
    f.create(&g, Category::VitalSigns, bp(132, 82)).unwrap();
    for e in f.record.entries() {
        host.write(e.clone()).unwrap();
    }
    let req = s.poll_request(NOW, nonce(), phone.record(&record)).unwrap();
    let (resp, _) = server.handle(&mut host, &peer("client"), req, NOW);
    s.handle_response(resp, phone.record(&record));
    let Some(cophr_protocol::sync::client::ClientEvent::Received(batch)) = s.poll_event() else {
        panic!("a batch to store");
    };
    let stored = cophr_protocol::sync::client::decode_verify(&record, &batch).and_then(|v| {
        phone
            .ingest(&record, v)
            .map_err(|e| SyncError::BadEntries(e.to_string()))
    });
    assert_eq!(stored, Ok(3), "the grant and both readings");
    let _ = pharmacist;
}

/// A release is done only when the host deletes its copy or holds none, and the two
/// refusals say which: someone other than the patient asking is refused "no access" (the
/// copy stays, and the patient's node keeps the release pending), a host holding no copy
/// answers "not held" (nothing is left to delete).
#[test]
fn a_release_by_anyone_but_the_patient_is_refused_and_one_of_nothing_held_says_so() {
    use cophr_protocol::sync::{Proof, Request, Response};
    let (f, pharmacist) = george();
    let record = f.record.id();
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let mut host = store_of(&f, "host");
    let mut nonce = nonces();
    let by = |k: &Keypair, nonce: [u8; 16], at| Request::Release {
        proof: Proof::new(k, record, b"client", b"server", nonce, at),
    };
    let (answer, _) = server.handle(
        &mut host,
        &peer("client"),
        by(&pharmacist, nonce(), NOW),
        NOW,
    );
    assert!(
        matches!(
            answer,
            Response::Refused {
                code: Refusal::NoAccess,
                ..
            }
        ),
        "{answer:?}"
    );
    assert!(host.holds(&record).unwrap(), "the copy stays");
    let (answer, _) = server.handle(
        &mut host,
        &peer("client"),
        by(&f.patient, nonce(), NOW + 1),
        NOW + 1,
    );
    assert!(matches!(answer, Response::Ack), "{answer:?}");
    assert!(!host.holds(&record).unwrap());
    // Asked again (a retry whose answer was lost): nothing held, and it says so.
    let (answer, _) = server.handle(
        &mut host,
        &peer("client"),
        by(&f.patient, nonce(), NOW + 2),
        NOW + 2,
    );
    assert!(
        matches!(
            answer,
            Response::Refused {
                code: Refusal::NotHeld,
                ..
            }
        ),
        "{answer:?}"
    );
}

/// A host released George's record (he moved it away) while a push of his was still on
/// its way: the push, and any later one that does not ask the host to host the record,
/// is refused and re-creates nothing; a patient who asks the host to host the record
/// again (`SessionConfig::host`, then `Request::Host`) is taken as any patient is.
#[test]
fn a_released_record_is_taken_again_only_when_its_patient_asks_the_host_to_host_it() {
    use cophr_protocol::sync::{Proof, Request, Response};
    let (mut f, _) = george();
    let record = f.record.id();
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let mut host = MemStore::new(key(7, "host"));
    let mut mine = store_of(&f, "laptop");
    let mut nonce = nonces();
    let (r, _) = run_session(
        &mut session(&f.patient, record, true),
        &mut mine,
        &peer("client"),
        &server,
        &mut host,
        NOW,
        nonces(),
    );
    r.unwrap();
    assert!(host.holds(&record).unwrap());

    // George writes; his node's push of it is made, then the move's release overtakes it.
    let g = f.patient.clone();
    let new = f
        .create(&g, Category::VitalSigns, bp(150, 95))
        .expect("a new reading");
    let entry = f.record.get(&new).expect("held").clone();
    mine.write(entry.clone()).unwrap();
    let in_flight = Request::Push {
        proof: Proof::new(&g, record, b"client", b"server", nonce(), NOW + 10),
        entries: vec![serde_bytes::ByteBuf::from(entry.signed().bytes().to_vec())],
        invitation: None,
        host: false,
    };
    let release = Request::Release {
        proof: Proof::new(&g, record, b"client", b"server", nonce(), NOW + 20),
    };
    let (answer, _) = server.handle(&mut host, &peer("client"), release, NOW + 20);
    assert!(matches!(answer, Response::Ack), "{answer:?}");
    assert!(!host.holds(&record).unwrap());
    let (answer, _) = server.handle(&mut host, &peer("client"), in_flight, NOW + 30);
    assert!(
        matches!(
            answer,
            Response::Refused {
                code: Refusal::Released,
                ..
            }
        ),
        "{answer:?}"
    );
    assert!(!host.holds(&record).unwrap(), "the push re-created nothing");

    // A sync that pushes back what the host lacks (a node still taking it for home) is
    // refused too.
    let (r, _) = run_session(
        &mut session(&f.patient, record, true),
        &mut mine,
        &peer("client"),
        &server,
        &mut host,
        NOW + 40,
        nonces(),
    );
    assert!(
        matches!(
            r,
            Err(SyncError::Refused {
                code: Refusal::Released,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(!host.holds(&record).unwrap());

    // George asks the host to host his record again: it takes the whole record, and once
    // it is home again the release is forgotten.
    let mut cfg = SessionConfig::new(record, b"client".to_vec(), b"server".to_vec());
    cfg.push = true;
    cfg.host = true;
    let (r, _) = run_session(
        &mut ClientSession::new(g.clone(), cfg),
        &mut mine,
        &peer("client"),
        &server,
        &mut host,
        NOW + 50,
        nonces(),
    );
    assert_eq!(r.unwrap().pushed, f.record.len());
    assert_eq!(host.record(&record).unwrap().len(), f.record.len());
    assert!(host.released(&record).unwrap());
    let pointer = cophr_protocol::home::HomePointer {
        record,
        host: b"server".to_vec(),
        addrs: vec!["/ip4/127.0.0.1/tcp/1".into()],
        seq: 3,
        time: NOW + 60,
        heads: Vec::new(),
    }
    .sign(&g);
    let (answer, _) = server.handle(
        &mut host,
        &peer("client"),
        Request::Host {
            proof: Proof::new(&g, record, b"client", b"server", nonce(), NOW + 60),
            pointer: serde_bytes::ByteBuf::from(pointer.encode()),
        },
        NOW + 60,
    );
    assert!(!matches!(answer, Response::Refused { .. }), "{answer:?}");
    assert!(!host.released(&record).unwrap());
}
