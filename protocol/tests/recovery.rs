//! Social key recovery as people carry it out: a request, guardians' approvals as text, and
//! a new key that pulls the whole record with them and writes the rotation over sync.

use cophr_protocol::access::Level;
use cophr_protocol::recovery::{
    GuardianApproval, Recovery, RecoveryError, RecoveryRequest, MAX_TEXT_LEN,
};
use cophr_protocol::sync::client::{ClientSession, SessionConfig, SyncError};
use cophr_protocol::sync::mem::{run_session, MemStore};
use cophr_protocol::sync::server::{HostPolicy, Peer, Server};
use cophr_protocol::sync::Refusal;
use cophr_protocol::testkit::{bp, grant, key, Fixture};
use cophr_protocol::{Category, Keypair, Payload};

const NOW: u64 = 1_700_000_100_000;

fn peer() -> Peer {
    Peer {
        id: b"client".to_vec(),
        label: "peer client".into(),
    }
}

fn nonces() -> impl FnMut() -> [u8; 16] {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    || u128::from(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)).to_le_bytes()
}

struct George {
    f: Fixture,
    mary: Keypair,
    gp: Keypair,
    ais: Keypair,
    stranger: Keypair,
    new: Keypair,
}

fn george() -> George {
    let mut f = Fixture::new(41, "George");
    let mary = key(41, "Mary");
    let gp = key(41, "GP practice");
    let ais = key(41, "AIS");
    f.grant(grant(&mary, Level::Write, &[], false, true));
    let g = f.patient.clone();
    for i in 0..5 {
        f.create(&g, Category::VitalSigns, bp(120 + i, 80)).unwrap();
    }
    let mut gs = vec![mary.actor(), gp.actor(), ais.actor()];
    gs.sort();
    f.write(
        &g,
        Payload::SetGuardians {
            guardians: gs,
            threshold: 2,
        },
    )
    .unwrap();
    George {
        f,
        mary,
        gp,
        ais,
        stranger: key(41, "Stranger"),
        new: key(41, "George's new key"),
    }
}

fn host_of(g: &George) -> MemStore {
    let mut s = MemStore::new(key(7, "host"));
    for e in g.f.record.entries() {
        s.write(e.clone()).unwrap();
    }
    s
}

fn sync(
    k: &Keypair,
    g: &George,
    recovery: Option<Recovery>,
    push: bool,
    local: &mut MemStore,
    host: &mut MemStore,
) -> Result<cophr_protocol::sync::client::SyncReport, SyncError> {
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let mut cfg = SessionConfig::new(g.f.record.id(), b"client".to_vec(), b"server".to_vec());
    cfg.push = push;
    cfg.recovery = recovery;
    let mut s = ClientSession::new(k.clone(), cfg);
    run_session(&mut s, local, &peer(), &server, host, NOW, nonces()).0
}

/// A guardian approves from their replica and hands the approval on as text.
fn approval(g: &George, guardian: &Keypair) -> GuardianApproval {
    let request = RecoveryRequest {
        record: g.f.record.id(),
        new: g.new.actor(),
    };
    let text = RecoveryRequest::from_text(&request.to_text()).unwrap();
    assert_eq!(text, request);
    let a = GuardianApproval::approve(&g.f.record, guardian, &request).unwrap();
    GuardianApproval::from_text(&a.to_text()).unwrap()
}

#[test]
fn two_of_three_guardians_let_a_new_key_pull_the_record_and_rotate_it_over_sync() {
    let g = george();
    let mut host = host_of(&g);
    let record = g.f.record.id();

    // Without approvals the new key is nobody.
    let mut phone = MemStore::new(key(7, "new node"));
    let r = sync(&g.new, &g, None, false, &mut phone, &mut host);
    assert!(
        matches!(
            r,
            Err(SyncError::Refused {
                code: Refusal::NoAccess,
                ..
            })
        ),
        "{r:?}"
    );

    // One approval of a threshold of two opens nothing, and says why.
    let one = Recovery::assemble(record, &g.new.actor(), &[approval(&g, &g.mary)]).unwrap();
    let r = sync(&g.new, &g, Some(one), false, &mut phone, &mut host);
    match r {
        Err(SyncError::Refused {
            code: Refusal::NoAccess,
            reason,
        }) => assert!(reason.contains("threshold is 2"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(phone.record(&record).is_none(), "nothing was served");

    // Two guardians: the whole record comes, then the rotation goes.
    let two = Recovery::assemble(
        record,
        &g.new.actor(),
        &[approval(&g, &g.gp), approval(&g, &g.mary)],
    )
    .unwrap();
    let report = sync(&g.new, &g, Some(two.clone()), false, &mut phone, &mut host).unwrap();
    assert_eq!(report.pulled, g.f.record.len());
    let held = phone.record(&record).unwrap().clone();
    let rotation = held
        .prepare_all(&g.new, two.payload(), NOW, None)
        .expect("the rotation is accepted by the replica just pulled");
    for v in rotation {
        phone.write(v).unwrap();
    }
    let report = sync(&g.new, &g, Some(two), true, &mut phone, &mut host).unwrap();
    assert!(
        report.pushed >= 1 && report.rejected.is_empty(),
        "{report:?}"
    );
    let at_host = host.record(&record).unwrap();
    assert!(at_host.is_patient(&g.new.actor()));
    assert!(!at_host.is_patient(&g.f.patient.actor()));

    // From now on the new key syncs as the patient without approvals; the old key's
    // writes are refused at the host.
    let entry = phone
        .record(&record)
        .unwrap()
        .prepare_as(
            &g.new,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(118, 76),
            },
            NOW,
            None,
        )
        .unwrap();
    phone.write(entry).unwrap();
    let report = sync(&g.new, &g, None, true, &mut phone, &mut host).unwrap();
    assert_eq!(report.pushed, 1);
    let mut thief = MemStore::new(key(7, "thief"));
    for e in host.record(&record).unwrap().entries() {
        thief.write(e.clone()).unwrap();
    }
    let old = thief.record(&record).unwrap().prepare(
        &g.f.patient,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(99, 60),
        },
        None,
        NOW,
        None,
    );
    assert!(
        old.is_err(),
        "the old key cannot even prepare a write: {old:?}"
    );
}

#[test]
fn approvals_that_are_not_enough_or_not_genuine_open_nothing() {
    let g = george();
    let record = g.f.record.id();
    let new = g.new.actor();
    let request = RecoveryRequest { record, new };

    // Someone who is not a guardian cannot approve from their replica; a forged approval
    // by a non-guardian opens nothing at the host.
    assert_eq!(
        GuardianApproval::approve(&g.f.record, &g.stranger, &request).unwrap_err(),
        RecoveryError::NotAGuardian(g.stranger.actor())
    );
    let forged = GuardianApproval {
        claim: g.f.record.rotation_claim(&new, false),
        approval: g.f.record.rotation_claim(&new, false).approve(&g.stranger),
    };
    let r = Recovery::assemble(record, &new, &[approval(&g, &g.mary), forged]).unwrap();
    let mut host = host_of(&g);
    let mut phone = MemStore::new(key(7, "new node"));
    match sync(&g.new, &g, Some(r), false, &mut phone, &mut host) {
        Err(SyncError::Refused { code, reason }) => {
            assert_eq!(code, Refusal::NoAccess);
            assert!(reason.contains("not a guardian"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // Approvals presented by another key than the one they name open nothing.
    let two =
        Recovery::assemble(record, &new, &[approval(&g, &g.mary), approval(&g, &g.ais)]).unwrap();
    let r = sync(
        &g.stranger,
        &g,
        Some(two.clone()),
        false,
        &mut phone,
        &mut host,
    );
    assert!(
        matches!(
            r,
            Err(SyncError::Refused {
                code: Refusal::NoAccess,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(phone.record(&record).is_none());

    // An altered approval does not parse; one for another key or record, two by one
    // guardian, or approvals of different rotations do not assemble.
    let text = approval(&g, &g.mary).to_text();
    let mut bytes = text.into_bytes();
    let i = bytes.len() - 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(bytes).unwrap();
    assert!(GuardianApproval::from_text(&altered).is_err());
    assert!(matches!(
        Recovery::assemble(record, &g.stranger.actor(), &[approval(&g, &g.mary)]),
        Err(RecoveryError::OtherKey { .. })
    ));
    assert!(matches!(
        Recovery::assemble(g.mary.actor(), &new, &[approval(&g, &g.mary)]),
        Err(RecoveryError::OtherRecord { .. })
    ));
    assert_eq!(
        Recovery::assemble(
            record,
            &new,
            &[approval(&g, &g.mary), approval(&g, &g.mary)]
        )
        .unwrap_err(),
        RecoveryError::Duplicate(g.mary.actor())
    );
    assert_eq!(
        Recovery::assemble(record, &new, &[]).unwrap_err(),
        RecoveryError::Count(0)
    );
    let mut later = george();
    let mary_before = approval(&later, &later.mary);
    let p = later.f.patient.clone();
    let mut gs = vec![later.mary.actor(), later.ais.actor()];
    gs.sort();
    later
        .f
        .write(
            &p,
            Payload::SetGuardians {
                guardians: gs,
                threshold: 2,
            },
        )
        .unwrap();
    let ais_after = approval(&later, &later.ais);
    assert!(matches!(
        Recovery::assemble(record, &new, &[mary_before, ais_after]),
        Err(RecoveryError::Mismatch(..))
    ));

    // Texts: wrong prefix, not base64url, too long.
    for bad in [
        "cophr://invite/abc".to_string(),
        "cophr://approval/!!!".to_string(),
        format!("cophr://approval/{}", "A".repeat(MAX_TEXT_LEN)),
    ] {
        assert!(matches!(
            GuardianApproval::from_text(&bad),
            Err(RecoveryError::Text { .. })
        ));
        assert!(RecoveryRequest::from_text(&bad).is_err());
    }

    // A request to make an existing key the patient's is refused by the guardian.
    assert_eq!(
        GuardianApproval::approve(
            &g.f.record,
            &g.mary,
            &RecoveryRequest {
                record,
                new: g.f.patient.actor()
            }
        )
        .unwrap_err(),
        RecoveryError::KeyInUse(g.f.patient.actor())
    );
}
