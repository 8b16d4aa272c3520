//! Identity assurance in the record and in sync: attestations carried in profiles, grants
//! that require their grantee to be attested, and hosts that require the people they host
//! and serve to be attested. Each attack (forged, untrusted, expired, revoked, too low,
//! about someone else, a weakened delegation) is refused with its reason.

use cophr_protocol::access::{Level, Requirement, Widening};
use cophr_protocol::entry::{EntryError, Payload, Profile};
use cophr_protocol::record::{AccessError, Rejection};
use cophr_protocol::sync::client::{ClientSession, SessionConfig, SyncError};
use cophr_protocol::sync::mem::{run_session, MemStore};
use cophr_protocol::sync::server::{HostPolicy, Peer, Server};
use cophr_protocol::sync::Refusal;
use cophr_protocol::testkit::{attestation, bp, grant, key, profile, text_body, Fixture};
use cophr_protocol::trust::attestation::Revocation;
use cophr_protocol::trust::{AssuranceLevel, SignedAttestation, TrustList, TrustedIssuer};
use cophr_protocol::{Category, Keypair};

const DAY: u64 = 24 * 3600 * 1000;
/// The fixture's clock starts here.
const T0: u64 = 1_700_000_000_000;

fn requires(level: AssuranceLevel, ais: &Keypair) -> Option<Requirement> {
    Some(Requirement {
        level,
        issuers: vec![ais.actor()],
    })
}

fn attested(name: &str, role: &str, a: Vec<SignedAttestation>) -> Profile {
    let mut p = profile(name, role, Some("Leeds Teaching Hospitals"));
    p.attestations = a;
    p
}

/// George's record with a grant to Dr Patel that requires P9 from the AIS.
fn george_and_patel() -> (Fixture, Keypair, Keypair) {
    let mut f = Fixture::new(40, "George");
    let (patel, ais) = (key(40, "Dr Patel"), key(40, "AIS"));
    let mut g = grant(&patel, Level::Write, &[Category::VitalSigns], false, false);
    g.requires = requires(AssuranceLevel::P9, &ais);
    f.grant(g);
    let george = f.patient.clone();
    f.create(&george, Category::VitalSigns, bp(140, 90))
        .unwrap();
    (f, patel, ais)
}

fn unattested(r: Result<impl std::fmt::Debug, Rejection>) -> bool {
    matches!(r, Err(Rejection::Access(AccessError::Unattested { .. })))
}

#[test]
fn a_grant_that_requires_attestation_refuses_writes_until_the_grantee_is_attested() {
    let (mut f, patel, ais) = george_and_patel();
    // Self-asserted: refused, with the reason.
    let r = f.create(&patel, Category::VitalSigns, bp(150, 95));
    let err = r.clone().unwrap_err().to_string();
    assert!(unattested(r), "{err}");
    assert!(err.contains("attested P9 or higher"), "{err}");
    // A self-asserted profile is refused too (it brings nothing that meets the grant).
    assert!(unattested(f.write(
        &patel,
        Payload::Profile(profile("Dr Rena Patel", "consultant", None))
    )));
    // The profile that brings a qualifying attestation is accepted, then writes are.
    let a = attestation(&ais, &patel.actor(), "Rena Patel", AssuranceLevel::P9, T0);
    f.write(
        &patel,
        Payload::Profile(attested("Dr Rena Patel", "consultant", vec![a])),
    )
    .unwrap();
    f.create(&patel, Category::VitalSigns, bp(150, 95)).unwrap();
}

#[test]
fn attestations_that_are_too_low_untrusted_or_out_of_period_do_not_meet_a_grant() {
    let (f, patel, ais) = george_and_patel();
    let other_ais = key(40, "Some other AIS");
    let cases = [
        (
            "too low",
            attestation(&ais, &patel.actor(), "Rena Patel", AssuranceLevel::P5, T0),
        ),
        (
            "an issuer the grant does not name",
            attestation(
                &other_ais,
                &patel.actor(),
                "Rena Patel",
                AssuranceLevel::P9,
                T0,
            ),
        ),
        (
            "not yet valid",
            attestation(
                &ais,
                &patel.actor(),
                "Rena Patel",
                AssuranceLevel::P9,
                T0 + 30 * DAY,
            ),
        ),
        (
            "expired",
            attestation(
                &ais,
                &patel.actor(),
                "Rena Patel",
                AssuranceLevel::P9,
                T0 - 400 * DAY,
            ),
        ),
    ];
    for (what, a) in cases {
        let mut f = f.clone();
        let r = f.write(
            &patel,
            Payload::Profile(attested("Dr Rena Patel", "consultant", vec![a])),
        );
        assert!(unattested(r), "{what}: accepted");
        assert!(
            unattested(f.create(&patel, Category::VitalSigns, bp(150, 95))),
            "{what}"
        );
    }
}

#[test]
fn forged_attestations_and_attestations_about_someone_else_are_refused_at_the_gate() {
    let (mut f, patel, ais) = george_and_patel();
    let mut forged = attestation(&ais, &patel.actor(), "Rena Patel", AssuranceLevel::P5, T0);
    forged.attestation.level = AssuranceLevel::P9;
    let len = f.record.len();
    let r = f.write(
        &patel,
        Payload::Profile(attested("Dr Rena Patel", "consultant", vec![forged])),
    );
    assert!(
        matches!(r, Err(Rejection::Malformed(EntryError::Attestation(_)))),
        "{r:?}"
    );
    let mary = key(40, "Mary");
    let about_mary = attestation(&ais, &mary.actor(), "Mary Jones", AssuranceLevel::P9, T0);
    let r = f.write(
        &patel,
        Payload::Profile(attested("Dr Rena Patel", "consultant", vec![about_mary])),
    );
    assert!(
        matches!(r, Err(Rejection::Malformed(EntryError::AttestationSubject))),
        "{r:?}"
    );
    let too_many = (0..9)
        .map(|i| {
            attestation(
                &key(i, "AIS"),
                &patel.actor(),
                "Rena Patel",
                AssuranceLevel::P9,
                T0,
            )
        })
        .collect();
    let r = f.write(
        &patel,
        Payload::Profile(attested("Dr Rena Patel", "consultant", too_many)),
    );
    assert!(
        matches!(
            r,
            Err(Rejection::Malformed(EntryError::TooManyAttestations))
        ),
        "{r:?}"
    );
    assert_eq!(f.record.len(), len, "nothing refused was stored");
}

#[test]
fn a_delegated_grant_cannot_weaken_the_identity_requirement() {
    let mut f = Fixture::new(41, "George");
    let (mary, nurse, ais) = (key(41, "Mary"), key(41, "Nurse"), key(41, "AIS"));
    let mut g = grant(&mary, Level::Write, &[], false, true);
    g.requires = requires(AssuranceLevel::P5, &ais);
    f.grant(g);
    let a = attestation(&ais, &mary.actor(), "Mary Jones", AssuranceLevel::P5, T0);
    f.write(&mary, Payload::Profile(attested("Mary", "carer", vec![a])))
        .unwrap();
    let weaker = grant(&nurse, Level::View, &[], false, false);
    let r = f.write(&mary, Payload::Grant(weaker));
    assert!(
        matches!(
            r,
            Err(Rejection::Access(AccessError::Widening(
                Widening::Assurance
            )))
        ),
        "{r:?}"
    );
    let mut other_issuer = grant(&nurse, Level::View, &[], false, false);
    other_issuer.requires = requires(AssuranceLevel::P9, &key(41, "Another AIS"));
    assert!(f.write(&mary, Payload::Grant(other_issuer)).is_err());
    let mut same = grant(&nurse, Level::View, &[], false, false);
    same.requires = requires(AssuranceLevel::P9, &ais);
    f.write(&mary, Payload::Grant(same)).unwrap();
}

#[test]
fn a_grant_that_requires_attestation_shows_nothing_to_an_unattested_grantee() {
    let (mut f, patel, ais) = george_and_patel();
    let now = f.now;
    let v = f.record.viewer(&patel.actor(), now);
    assert!(!v.has_access());
    assert_eq!(v.unattested().len(), 1);
    let a = attestation(&ais, &patel.actor(), "Rena Patel", AssuranceLevel::P9, T0);
    let id = a.id();
    f.write(
        &patel,
        Payload::Profile(attested("Dr Rena Patel", "consultant", vec![a])),
    )
    .unwrap();
    assert!(f.record.viewer(&patel.actor(), f.now).has_access());
    // After the attestation expires, the grant opens nothing again.
    assert!(!f.record.viewer(&patel.actor(), T0 + 366 * DAY).has_access());
    // A node that knows the attestation is revoked opens nothing either.
    let v = f
        .record
        .viewer_checked(&patel.actor(), f.now, &[], &|a| a.id() == id);
    assert!(!v.has_access());
}

// --- over the sync state machine ---

fn peer(name: &str) -> Peer {
    Peer {
        id: name.as_bytes().to_vec(),
        label: format!("peer {name}"),
    }
}

fn nonces() -> impl FnMut() -> [u8; 16] {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    || u128::from(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)).to_le_bytes()
}

fn store_of(f: &Fixture) -> MemStore {
    let mut s = MemStore::new(key(7, "host"));
    for e in f.record.entries() {
        s.write(e.clone()).unwrap();
    }
    s
}

fn sync(
    k: &Keypair,
    f: &Fixture,
    server: &Server,
    host: &mut MemStore,
    push: bool,
    now: u64,
) -> Result<usize, SyncError> {
    sync_presenting(k, f, server, host, push, now, Vec::new())
}

fn sync_presenting(
    k: &Keypair,
    f: &Fixture,
    server: &Server,
    host: &mut MemStore,
    push: bool,
    now: u64,
    attestations: Vec<SignedAttestation>,
) -> Result<usize, SyncError> {
    let mut cfg = SessionConfig::new(f.record.id(), b"client".to_vec(), b"server".to_vec());
    cfg.push = push;
    cfg.attestations = attestations;
    let mut s = ClientSession::new(k.clone(), cfg);
    let mut mine = if push {
        store_of(f)
    } else {
        MemStore::new(key(8, "replica"))
    };
    run_session(
        &mut s,
        &mut mine,
        &peer("client"),
        server,
        host,
        now,
        nonces(),
    )
    .0
    .map(|r| r.pulled)
}

fn refused_for_assurance(r: Result<usize, SyncError>) -> String {
    match r {
        Err(SyncError::Refused {
            code: Refusal::AssuranceRequired,
            reason,
        }) => reason,
        other => panic!("expected an assurance refusal, got {other:?}"),
    }
}

fn trusting(ais: &Keypair) -> TrustList {
    let mut t = TrustList::new();
    t.trust(TrustedIssuer {
        id: ais.actor(),
        name: "Leeds AIS".into(),
        max_level: AssuranceLevel::P9,
    })
    .unwrap();
    t
}

#[test]
fn pulls_under_a_grant_that_requires_attestation_are_refused_with_the_reason() {
    let (mut f, patel, ais) = george_and_patel();
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let now = f.now;
    let reason = refused_for_assurance(sync(&patel, &f, &server, &mut store_of(&f), false, now));
    assert!(
        reason.contains("requires its grantee to be attested P9"),
        "{reason}"
    );

    let a = attestation(&ais, &patel.actor(), "Rena Patel", AssuranceLevel::P9, T0);
    let revocation = Revocation {
        issuer: ais.actor(),
        attestation: a.id(),
        subject: patel.actor(),
        time: now,
        reason: "registration suspended".into(),
    }
    .sign(&ais)
    .unwrap();
    // Presented with the request (before Dr Patel's profile is in the record): pulls work.
    let mut host = store_of(&f);
    let pulled = sync_presenting(&patel, &f, &server, &mut host, false, now, vec![a.clone()]);
    assert!(pulled.unwrap() > 0);
    // Someone else's attestation cannot be presented.
    let mary = key(40, "Mary");
    let about_mary = attestation(&ais, &mary.actor(), "Mary", AssuranceLevel::P9, T0);
    let r = sync_presenting(&patel, &f, &server, &mut host, false, now, vec![about_mary]);
    assert!(
        matches!(r, Err(SyncError::Refused { code: Refusal::BadProof, ref reason }) if reason.contains("another key")),
        "{r:?}"
    );
    // Or carried in the profile in the record.
    f.write(
        &patel,
        Payload::Profile(attested("Dr Rena Patel", "consultant", vec![a])),
    )
    .unwrap();
    let now = f.now;
    let mut host = store_of(&f);
    assert!(sync(&patel, &f, &server, &mut host, false, now).unwrap() > 0);

    // The host learns the AIS revoked it: pulls are refused again.
    let mut trust = trusting(&ais);
    trust.add_revocation(&revocation).unwrap();
    server.set_trust(trust);
    refused_for_assurance(sync(&patel, &f, &server, &mut host, false, now));
}

#[test]
fn a_host_that_requires_identity_takes_and_serves_only_attested_people() {
    let ais = key(42, "AIS");
    let policy = HostPolicy {
        identity: Some(AssuranceLevel::P5),
        ..HostPolicy::default()
    };
    let server = Server::new(b"server".to_vec(), policy);
    server.set_trust(trusting(&ais));

    // An unattested patient is not taken.
    let plain = Fixture::new(42, "Self-asserted Sam");
    let mut host = MemStore::new(key(7, "host"));
    let reason = refused_for_assurance(sync(
        &plain.patient,
        &plain,
        &server,
        &mut host,
        true,
        plain.now,
    ));
    assert!(reason.contains("self-asserted"), "{reason}");
    assert!(host.record(&plain.record.id()).is_none(), "nothing stored");

    // One attested at P5 by an issuer on the host's list is.
    let george = key(43, "George");
    let a = attestation(
        &ais,
        &george.actor(),
        "George Jones",
        AssuranceLevel::P5,
        T0,
    );
    let mut f = Fixture::with_profile(george.clone(), attested("George", "patient", vec![a]));
    let mary = key(43, "Mary");
    f.grant(grant(&mary, Level::View, &[], false, false));
    f.create(
        &george,
        Category::Medications,
        text_body(&[("medication", "Metformin")]),
    )
    .unwrap();
    let now = f.now;
    sync(&george, &f, &server, &mut host, true, now).unwrap();
    assert!(host.record(&f.record.id()).is_some());

    // Mary's grant requires nothing, but the host serves only attested people.
    let reason = refused_for_assurance(sync(&mary, &f, &server, &mut host, false, now));
    assert!(
        reason.contains("this host serves only people attested P5"),
        "{reason}"
    );
}
