//! Several devices per person, and social recovery of the patient key (issue 11 parts 4
//! and 5b): the rules of `Record::apply`, their refusals, and their independence of arrival
//! order.

use cophr_protocol::entry::{Approval, EntryError, RotationClaim};
use cophr_protocol::fold::{current, history};
use cophr_protocol::record::{AccessError, Applied, Record, Rejection, Status};
use cophr_protocol::testkit::{bp, grant, key, text_body, Fixture};
use cophr_protocol::{Category, EntryId, GrantStatus, Keypair, Level, Payload, Verified};
use proptest::prelude::*;

fn add_device(f: &mut Fixture, owner: &Keypair, device: &Keypair, label: &str) -> EntryId {
    f.write(
        owner,
        Payload::AddDevice {
            device: device.actor(),
            label: label.into(),
        },
    )
    .expect("owner adds a device")
    .id()
}

fn vitals(f: &mut Fixture, k: &Keypair, s: i64) -> Result<EntryId, Rejection> {
    f.create(k, Category::VitalSigns, bp(s, 60))
}

fn amend(f: &mut Fixture, k: &Keypair, target: EntryId, s: i64) -> Result<Verified, Rejection> {
    f.write(
        k,
        Payload::Amend {
            target,
            body: bp(s, 60),
        },
    )
}

fn refused(r: Result<impl std::fmt::Debug, Rejection>) -> AccessError {
    match r {
        Err(Rejection::Access(e)) => e,
        other => panic!("expected an access refusal, got {other:?}"),
    }
}

/// Applies entries in order, retrying those whose parents have not arrived yet.
fn deliver(base: Record, entries: &[Verified]) -> Record {
    let mut r = base;
    let mut pending: Vec<Verified> = entries.to_vec();
    loop {
        let before = pending.len();
        let mut left = Vec::new();
        for e in pending {
            match r.apply(e.clone()) {
                Err(Rejection::MissingParents(_))
                | Err(Rejection::Backlink(_))
                | Err(Rejection::Target {
                    why: "not held", ..
                }) => left.push(e),
                Err(other) => panic!("a valid entry was refused: {other}"),
                Ok(_) => {}
            }
        }
        if left.is_empty() || left.len() == before {
            return r;
        }
        pending = left;
    }
}

fn genesis_record(r: &Record) -> Record {
    let mut base = Record::new(r.id());
    base.apply(r.entries().next().expect("genesis").clone())
        .expect("genesis applies");
    base
}

/// The entries of `from` not in `into`, in `from`'s order.
fn new_in(from: &Record, into: &Record) -> Vec<Verified> {
    from.entries().filter(|e| !into.contains(&e.id())).collect()
}

#[test]
fn george_amends_on_his_phone_what_his_laptop_wrote() {
    let mut f = Fixture::new(1, "George");
    let laptop = f.patient.clone();
    let phone = key(1, "George's phone");
    let mary = key(1, "Mary");
    add_device(&mut f, &laptop, &phone, "George's phone");
    let bp1 = vitals(&mut f, &laptop, 140).unwrap();
    // Principle 9: the item is the patient's, whichever of his keys wrote it.
    let v = amend(&mut f, &phone, bp1, 135).unwrap();
    assert_eq!(v.entry().auth, None);
    assert_eq!(f.record.status(&v.id()), Some(&Status::Valid));
    let bp2 = vitals(&mut f, &phone, 150).unwrap();
    amend(&mut f, &laptop, bp2, 145).unwrap();
    // The phone does everything the patient may: grant and revoke.
    let g = f
        .write(
            &phone,
            Payload::Grant(grant(&mary, Level::View, &[], false, false)),
        )
        .unwrap()
        .id();
    assert_eq!(f.record.grant(&g).unwrap().issuer, f.record.id());
    assert_eq!(f.record.grant(&g).unwrap().signer, phone.actor());
    f.write(
        &laptop,
        Payload::Revoke {
            grant: g,
            category: None,
            reason: "test".into(),
        },
    )
    .unwrap();
    assert_eq!(f.record.grant_status(&g, f.now), Some(GrantStatus::Revoked));
    // But it manages no keys.
    let tablet = key(1, "tablet");
    assert_eq!(
        refused(f.write(
            &phone,
            Payload::AddDevice {
                device: tablet.actor(),
                label: "tablet".into(),
            },
        )),
        AccessError::DeviceMayNot("add devices")
    );
    assert_eq!(
        refused(f.write(
            &phone,
            Payload::SetGuardians {
                guardians: vec![mary.actor()],
                threshold: 1,
            },
        )),
        AccessError::DeviceMayNot("name guardians")
    );
    // Adding it twice, or adding the patient's own key, is refused.
    assert_eq!(
        refused(f.write(
            &laptop,
            Payload::AddDevice {
                device: phone.actor(),
                label: "again".into(),
            },
        )),
        AccessError::DeviceExists(phone.actor())
    );
    // The queries.
    let r = &f.record;
    assert!(r.is_patient(&phone.actor()));
    assert_eq!(r.acts_for(&phone.actor()), Some(r.id()));
    assert!(r.viewer(&phone.actor(), f.now).is_patient());
    let devices = r.devices_of(&r.id());
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].device, phone.actor());
    assert_eq!(devices[0].removed, None);
    // The phone sees what the laptop sees.
    assert_eq!(
        current(r, &r.viewer(&phone.actor(), f.now)),
        current(r, &r.viewer(&laptop.actor(), f.now))
    );
}

#[test]
fn a_removed_device_is_refused_after_and_void_when_concurrent_in_any_order() {
    let mut f = Fixture::new(2, "George");
    let laptop = f.patient.clone();
    let phone = key(2, "phone");
    add_device(&mut f, &laptop, &phone, "phone");
    let before = vitals(&mut f, &phone, 120).unwrap();
    // The phone, offline, writes concurrently with its removal.
    let mut offline = f.clone();
    let concurrent = vitals(&mut offline, &phone, 190).unwrap();
    let concurrent_admin = offline
        .write(
            &phone,
            Payload::Profile(cophr_protocol::testkit::profile("phone", "device", None)),
        )
        .unwrap()
        .id();
    let removal = f
        .record
        .prepare_all(
            &laptop,
            Payload::RemoveDevice {
                device: phone.actor(),
                category: None,
                reason: "stolen".into(),
            },
            f.now,
            None,
        )
        .unwrap();
    // A part in the vital-signs stream the phone wrote in, then the administrative part.
    assert_eq!(removal.len(), 2);
    let mut a = f.record.clone();
    for v in &removal {
        a.apply(v.clone()).unwrap();
    }
    // Removal first, then the concurrent entries: kept, void.
    let mut order1 = a.clone();
    for v in new_in(&offline.record, &f.record) {
        match order1.apply(v).unwrap() {
            Applied::Added { status, .. } => assert!(matches!(status, Status::Void { .. })),
            Applied::Duplicate => panic!("new"),
        }
    }
    // Concurrent entries first, then the removal: they become void.
    let mut order2 = offline.record.clone();
    let mut voided = Vec::new();
    for v in &removal {
        if let Applied::Added { voided: v, .. } = order2.apply(v.clone()).unwrap() {
            voided.extend(v);
        }
    }
    voided.sort();
    let mut expect = vec![concurrent, concurrent_admin];
    expect.sort();
    assert_eq!(voided, expect);
    for r in [&order1, &order2] {
        assert!(matches!(r.status(&concurrent), Some(Status::Void { .. })));
        assert!(matches!(
            r.status(&concurrent_admin),
            Some(Status::Void { .. })
        ));
        // What the phone wrote before stays.
        assert_eq!(r.status(&before), Some(&Status::Valid));
        assert!(!r.is_patient(&phone.actor()));
        assert_eq!(r.acts_for(&phone.actor()), None);
    }
    let p = f.patient.actor();
    assert_eq!(
        current(&order1, &order1.viewer(&p, f.now)),
        current(&order2, &order2.viewer(&p, f.now))
    );
    // After learning of its removal the phone writes nothing.
    let mut g = Fixture {
        record: order1.clone(),
        ..f.clone()
    };
    let err = refused(g.record.prepare(
        &phone,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(100, 60),
        },
        None,
        g.now,
        None,
    ));
    assert!(matches!(err, AccessError::DeviceRemoved { device, .. } if device == phone.actor()));
    assert_eq!(
        g.record.devices_of(&p)[0].removed,
        Some(removal[removal.len() - 1].id())
    );
    // And it is never added again.
    assert_eq!(
        refused(g.write(
            &laptop,
            Payload::AddDevice {
                device: phone.actor(),
                label: "found it".into(),
            },
        )),
        AccessError::DeviceExists(phone.actor())
    );
}

#[test]
fn a_grantees_device_writes_under_the_grantees_grant_and_only_that() {
    let mut f = Fixture::new(3, "George");
    let mary = key(3, "Mary");
    let marys_phone = key(3, "Mary's phone");
    let g = f.grant(grant(
        &mary,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    add_device(&mut f, &mary, &marys_phone, "Mary's phone");
    let item = vitals(&mut f, &marys_phone, 130).unwrap();
    let e = f.record.get(&item).unwrap().entry().clone();
    assert_eq!(e.auth, Some(g));
    // The item is Mary's: her own key amends what her phone wrote.
    amend(&mut f, &mary, item, 125).unwrap();
    // Only within Mary's grant.
    assert_eq!(
        refused(f.create(
            &marys_phone,
            Category::Problems,
            text_body(&[("problem", "x")])
        )),
        AccessError::Scope(Category::Problems)
    );
    // Not as the patient.
    assert_eq!(
        refused(f.record.prepare(
            &marys_phone,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(100, 60),
            },
            None,
            f.now,
            None,
        )),
        AccessError::NoGrant
    );
    // George's items stay George's.
    let george = f.patient.clone();
    let georges = vitals(&mut f, &george, 150).unwrap();
    assert_eq!(
        refused(amend(&mut f, &marys_phone, georges, 100)),
        AccessError::NotAuthorOrProxy(georges)
    );
    let r = &f.record;
    assert_eq!(r.acts_for(&marys_phone.actor()), Some(mary.actor()));
    assert!(!r.is_patient(&marys_phone.actor()));
    let v = r.viewer(&marys_phone.actor(), f.now);
    assert_eq!(v.level_on(&Category::VitalSigns), Some(Level::Write));
    assert_eq!(v.level_on(&Category::Problems), None);
    // Revoking Mary's grant stops her phone too.
    let patient = f.patient.clone();
    f.write(
        &patient,
        Payload::Revoke {
            grant: g,
            category: None,
            reason: "ended".into(),
        },
    )
    .unwrap();
    assert!(matches!(
        refused(vitals(&mut f, &marys_phone, 100)),
        AccessError::Revoked { .. } | AccessError::NoGrant
    ));
}

/// George's record with Mary's and a pharmacist's grants, some data, and guardians Mary,
/// the GP and an AIS, 2 of 3.
struct Recovery {
    f: Fixture,
    mary: Keypair,
    gp: Keypair,
    ais: Keypair,
    pharmacist: Keypair,
    marys_grant: EntryId,
    pharmacy_grant: EntryId,
    guardians: EntryId,
    new: Keypair,
    item: EntryId,
}

fn recovery(seed: u64) -> Recovery {
    let mut f = Fixture::new(seed, "George");
    let mary = key(seed, "Mary");
    let gp = key(seed, "GP practice");
    let ais = key(seed, "AIS");
    let pharmacist = key(seed, "Pharmacist");
    let marys_grant = f.grant(grant(&mary, Level::Write, &[], false, true));
    let pharmacy_grant = f.grant(grant(
        &pharmacist,
        Level::View,
        &[Category::Medications, Category::VitalSigns],
        false,
        false,
    ));
    let patient = f.patient.clone();
    let item = vitals(&mut f, &patient, 140).unwrap();
    f.create(&mary, Category::VitalSigns, bp(150, 90)).unwrap();
    let mut gs = vec![mary.actor(), gp.actor(), ais.actor()];
    gs.sort();
    let guardians = f
        .write(
            &patient,
            Payload::SetGuardians {
                guardians: gs,
                threshold: 2,
            },
        )
        .unwrap()
        .id();
    Recovery {
        f,
        mary,
        gp,
        ais,
        pharmacist,
        marys_grant,
        pharmacy_grant,
        guardians,
        new: key(seed, "George's new key"),
        item,
    }
}

fn approvals(claim: &RotationClaim, by: &[&Keypair]) -> Vec<Approval> {
    let mut v: Vec<Approval> = by.iter().map(|k| claim.approve(k)).collect();
    v.sort_by_key(|a| a.by);
    v
}

fn rotate(r: &Recovery, approvals: Vec<Approval>) -> Result<Vec<Verified>, Rejection> {
    r.f.record.prepare_all(
        &r.new,
        Payload::RotateKey {
            old: r.f.patient.actor(),
            guardians: Some(r.guardians),
            approvals,
        },
        r.f.now,
        None,
    )
}

#[test]
fn a_rotation_below_threshold_or_with_bad_approvals_is_refused_and_stores_nothing() {
    let r = recovery(4);
    let claim = r.f.record.rotation_claim(&r.new.actor(), false);
    assert_eq!(claim.guardians, Some(r.guardians));
    let len = r.f.record.len();
    // One approval of two.
    assert_eq!(
        refused(rotate(&r, approvals(&claim, &[&r.mary]))),
        AccessError::TooFewApprovals { have: 1, need: 2 }
    );
    // A non-guardian's signature.
    assert_eq!(
        refused(rotate(&r, approvals(&claim, &[&r.mary, &r.pharmacist]))),
        AccessError::NotAGuardian(r.pharmacist.actor())
    );
    // One guardian twice.
    let twice = vec![claim.approve(&r.gp), claim.approve(&r.gp)];
    assert_eq!(
        rotate(&r, twice).unwrap_err(),
        Rejection::Malformed(EntryError::DuplicateApproval(r.gp.actor()))
    );
    // Approvals over another new key.
    let other =
        r.f.record
            .rotation_claim(&key(4, "someone else").actor(), false);
    assert_eq!(
        refused(rotate(&r, approvals(&other, &[&r.mary, &r.gp]))),
        AccessError::BadApproval(approvals(&other, &[&r.mary, &r.gp])[0].by)
    );
    // Approvals over another record.
    let elsewhere = RotationClaim {
        record: key(4, "Someone's record").actor(),
        ..claim.clone()
    };
    assert!(matches!(
        refused(rotate(&r, approvals(&elsewhere, &[&r.ais, &r.gp]))),
        AccessError::BadApproval(_)
    ));
    // Relying on another guardian set.
    let stale = RotationClaim {
        guardians: Some(r.marys_grant),
        ..claim.clone()
    };
    assert_eq!(
        refused(r.f.record.prepare_all(
            &r.new,
            Payload::RotateKey {
                old: r.f.patient.actor(),
                guardians: Some(r.marys_grant),
                approvals: approvals(&stale, &[&r.ais, &r.gp]),
            },
            r.f.now,
            None,
        )),
        AccessError::GuardiansNotCurrent {
            named: Some(r.marys_grant),
            current: r.guardians
        }
    );
    // From a key that is not the current one.
    let wrong_old = RotationClaim {
        old: r.mary.actor(),
        ..claim.clone()
    };
    assert_eq!(
        refused(r.f.record.prepare_all(
            &r.new,
            Payload::RotateKey {
                old: r.mary.actor(),
                guardians: Some(r.guardians),
                approvals: approvals(&wrong_old, &[&r.ais, &r.gp]),
            },
            r.f.now,
            None,
        )),
        AccessError::RotationFrom {
            named: r.mary.actor(),
            current: r.f.patient.actor()
        }
    );
    // Without guardians nothing but the old key's own approval rotates.
    let mut bare = Fixture::new(4, "Alice");
    let claim = bare.record.rotation_claim(&r.new.actor(), false);
    assert_eq!(
        refused(bare.write(
            &r.new,
            Payload::RotateKey {
                old: bare.patient.actor(),
                guardians: None,
                approvals: approvals(&claim, &[&r.mary]),
            },
        )),
        AccessError::NoGuardians
    );
    // Nothing was stored.
    assert_eq!(r.f.record.len(), len);
    assert_eq!(r.f.record.current_patient_key(), r.f.patient.actor());
}

#[test]
fn guardians_rotate_the_key_and_everything_keeps_working() {
    let mut r = recovery(5);
    let old = r.f.patient.clone();
    let p = r.f.record.id();
    let now = r.f.now;
    let views_before: Vec<_> = [&old, &r.mary, &r.pharmacist]
        .iter()
        .map(|k| current(&r.f.record, &r.f.record.viewer(&k.actor(), now)))
        .collect();
    let history_before = history(&r.f.record, &r.f.record.viewer(&p, now), &r.item);
    // A thief holding the old key writes, offline, concurrently with the rotation.
    let mut thief = r.f.clone();
    let thief_data = vitals(&mut thief, &old, 80).unwrap();
    let thief_grant = thief
        .write(
            &old,
            Payload::Grant(grant(
                &key(5, "thief's friend"),
                Level::Delete,
                &[],
                true,
                true,
            )),
        )
        .unwrap()
        .id();
    // Mary's device is also offline, and keeps working.
    let claim = r.f.record.rotation_claim(&r.new.actor(), false);
    let rotation = rotate(&r, approvals(&claim, &[&r.mary, &r.ais])).unwrap();
    // The rotation, then its part in the one category stream the old key wrote in.
    assert_eq!(rotation.len(), 2);
    for v in &rotation {
        r.f.record.apply(v.clone()).unwrap();
    }
    let rec = &r.f.record;
    assert_eq!(rec.id(), p);
    assert_eq!(rec.current_patient_key(), r.new.actor());
    assert_eq!(rec.patient_keys(), vec![old.actor(), r.new.actor()]);
    assert!(rec.is_patient(&r.new.actor()));
    assert!(!rec.is_patient(&old.actor()));
    assert_eq!(rec.acts_for(&old.actor()), None);
    // History unchanged, every view unchanged (the patient's through the new key).
    let views_after: Vec<_> = [&r.new, &r.mary, &r.pharmacist]
        .iter()
        .map(|k| current(rec, &rec.viewer(&k.actor(), now)))
        .collect();
    assert_eq!(views_before, views_after);
    assert_eq!(
        history_before,
        history(rec, &rec.viewer(&r.new.actor(), now), &r.item)
    );
    for e in rec.entries() {
        assert_eq!(rec.status(&e.id()), Some(&Status::Valid));
        e.signed().clone().verify().expect("history verifies");
    }
    assert_eq!(
        rec.grant_status(&r.marys_grant, now),
        Some(GrantStatus::Active)
    );
    assert_eq!(
        rec.grant_status(&r.pharmacy_grant, now),
        Some(GrantStatus::Active)
    );
    // The new key writes, amends the old key's item, grants and revokes.
    let new = r.new.clone();
    vitals(&mut r.f, &new, 120).unwrap();
    amend(&mut r.f, &new, r.item, 130).unwrap();
    let gp_grant =
        r.f.write(
            &new,
            Payload::Grant(grant(&r.gp, Level::View, &[], false, false)),
        )
        .unwrap()
        .id();
    assert_eq!(r.f.record.grant(&gp_grant).unwrap().issuer, p);
    r.f.write(
        &new,
        Payload::Revoke {
            grant: r.pharmacy_grant,
            category: None,
            reason: "changed pharmacy".into(),
        },
    )
    .unwrap();
    // Existing grants keep working.
    let mary = r.mary.clone();
    vitals(&mut r.f, &mary, 118).unwrap();
    // The old key, having seen the rotation, writes nothing.
    let err = refused(vitals(&mut r.f, &old, 100));
    assert!(
        matches!(err, AccessError::KeyRetired { key, by } if key == old.actor() && by == rotation[0].id())
    );
    // The thief's concurrent entries are kept but void, in either arrival order.
    let stolen = new_in(&thief.record, &r.f.record);
    let mut a = r.f.record.clone();
    for v in &stolen {
        a.apply(v.clone()).unwrap();
    }
    let mut b = genesis_record(&r.f.record);
    let mut everything: Vec<Verified> = stolen.clone();
    everything.extend(r.f.record.entries().skip(1));
    b = deliver(b, &everything);
    for rec in [&a, &b] {
        assert_eq!(rec.len(), r.f.record.len() + stolen.len());
        assert!(matches!(rec.status(&thief_data), Some(Status::Void { .. })));
        assert!(matches!(
            rec.status(&thief_grant),
            Some(Status::Void { .. })
        ));
        assert_eq!(rec.grant_status(&thief_grant, now), Some(GrantStatus::Void));
    }
    let t = r.f.now;
    for k in [&r.new, &r.mary, &r.pharmacist, &r.gp] {
        assert_eq!(
            current(&a, &a.viewer(&k.actor(), t)),
            current(&b, &b.viewer(&k.actor(), t))
        );
    }
    // A second rotation relies on the guardian set the old key named (inherited).
    assert_eq!(a.guardians().unwrap().entry, r.guardians);
}

/// A planned rotation of the patient key from `old` to `new`, approved by `old` alone.
fn rotate_planned(f: &mut Fixture, old: &Keypair, new: &Keypair) {
    let claim = f.record.rotation_claim(&new.actor(), true);
    f.write(
        new,
        Payload::RotateKey {
            old: old.actor(),
            guardians: None,
            approvals: approvals(&claim, &[old]),
        },
    )
    .unwrap();
}

#[test]
fn a_planned_rotation_needs_only_the_old_key_and_devices_stay() {
    let mut f = Fixture::new(6, "George");
    let old = f.patient.clone();
    let phone = key(6, "phone");
    let new = key(6, "new");
    add_device(&mut f, &old, &phone, "phone");
    rotate_planned(&mut f, &old, &new);
    assert_eq!(f.record.current_patient_key(), new.actor());
    // The phone the old key added still acts for the patient until removed.
    assert!(f.record.is_patient(&phone.actor()));
    vitals(&mut f, &phone, 110).unwrap();
    // A rotation to a key already in use is refused.
    let claim = f.record.rotation_claim(&phone.actor(), true);
    assert_eq!(
        refused(f.write(
            &phone,
            Payload::RotateKey {
                old: new.actor(),
                guardians: None,
                approvals: approvals(&claim, &[&new]),
            },
        )),
        AccessError::KeyInUse(phone.actor())
    );
    // The new key removes the phone.
    f.write(
        &new,
        Payload::RemoveDevice {
            device: phone.actor(),
            category: None,
            reason: "replaced".into(),
        },
    )
    .unwrap();
    assert!(!f.record.is_patient(&phone.actor()));
}

#[test]
fn key_management_limits_are_enforced() {
    let mut f = Fixture::new(7, "George");
    let patient = f.patient.clone();
    let many: Vec<_> = (0..17).map(|i| key(7, &format!("g{i}")).actor()).collect();
    let mut sorted = many.clone();
    sorted.sort();
    let set = |g: Vec<cophr_protocol::ActorId>, threshold: u8| Payload::SetGuardians {
        guardians: g,
        threshold,
    };
    let malformed = |r: Result<Verified, Rejection>| match r {
        Err(Rejection::Malformed(e)) => e,
        other => panic!("expected malformed, got {other:?}"),
    };
    assert!(matches!(
        malformed(f.write(&patient, set(sorted.clone(), 2))),
        EntryError::Guardians(_)
    ));
    assert!(matches!(
        malformed(f.write(&patient, set(vec![], 1))),
        EntryError::Guardians(_)
    ));
    assert!(matches!(
        malformed(f.write(&patient, set(sorted[..3].to_vec(), 0))),
        EntryError::Guardians(_)
    ));
    assert!(matches!(
        malformed(f.write(&patient, set(sorted[..3].to_vec(), 4))),
        EntryError::Guardians(_)
    ));
    let mut unsorted = sorted[..3].to_vec();
    unsorted.reverse();
    assert!(matches!(
        malformed(f.write(&patient, set(unsorted, 2))),
        EntryError::Guardians(_)
    ));
    // 16 is the limit; the patient is never their own guardian.
    f.write(&patient, set(sorted[..16].to_vec(), 16)).unwrap();
    let mut with_me = vec![patient.actor(), sorted[0]];
    with_me.sort();
    assert_eq!(
        refused(f.write(&patient, set(with_me, 1))),
        AccessError::GuardianIsPatient(patient.actor())
    );
    // A grantee names no guardians.
    let mary = key(7, "Mary");
    f.grant(grant(&mary, Level::Write, &[], false, false));
    assert_eq!(
        refused(f.write(&mary, set(sorted[..2].to_vec(), 1))),
        AccessError::PatientKeyOnly("name guardians")
    );
    // A device is never the record's own key.
    assert!(matches!(
        malformed(f.write(
            &mary,
            Payload::AddDevice {
                device: f.record.id(),
                label: "x".into()
            }
        )),
        EntryError::Keys(_)
    ));
    // Removing a key that is no device.
    assert_eq!(
        refused(f.write(
            &patient,
            Payload::RemoveDevice {
                device: mary.actor(),
                category: None,
                reason: "x".into()
            }
        )),
        AccessError::NotADevice(mary.actor())
    );
}

#[test]
fn concurrent_rotations_resolve_to_the_smallest_id_everywhere() {
    let r = recovery(8);
    let other = key(8, "another new key");
    let c1 = r.f.record.rotation_claim(&r.new.actor(), false);
    let c2 = r.f.record.rotation_claim(&other.actor(), false);
    let r1 = rotate(&r, approvals(&c1, &[&r.mary, &r.gp])).unwrap();
    let r2 =
        r.f.record
            .prepare_all(
                &other,
                Payload::RotateKey {
                    old: r.f.patient.actor(),
                    guardians: Some(r.guardians),
                    approvals: approvals(&c2, &[&r.ais, &r.gp]),
                },
                r.f.now,
                None,
            )
            .unwrap();
    let winner = r1[0].id().min(r2[0].id());
    let mut a = r.f.record.clone();
    let mut b = r.f.record.clone();
    for v in r1.iter().chain(&r2) {
        a.apply(v.clone()).unwrap();
    }
    for v in r2.iter().chain(&r1) {
        b.apply(v.clone()).unwrap();
    }
    for rec in [&a, &b] {
        assert_eq!(rec.status(&winner), Some(&Status::Valid));
        let loser = if winner == r1[0].id() {
            r2[0].id()
        } else {
            r1[0].id()
        };
        assert_eq!(
            rec.status(&loser),
            Some(&Status::Void { revocation: winner })
        );
        let key = rec.get(&winner).unwrap().entry().author;
        assert_eq!(rec.current_patient_key(), key);
    }
}

#[test]
fn a_guardians_rotation_wins_over_a_thiefs_concurrent_planned_rotation_in_any_order() {
    // Seeds chosen so that the thief's rotation has the smaller entry id in some runs and
    // the larger in others: the guardians' rotation must win either way.
    let mut thief_smaller = false;
    let mut thief_larger = false;
    for seed in 20..40 {
        let r = recovery(seed);
        let thief = key(seed, "thief's key");
        let planned = r.f.record.rotation_claim(&thief.actor(), true);
        let stolen =
            r.f.record
                .prepare_all(
                    &thief,
                    Payload::RotateKey {
                        old: r.f.patient.actor(),
                        guardians: None,
                        approvals: approvals(&planned, &[&r.f.patient]),
                    },
                    r.f.now,
                    None,
                )
                .unwrap();
        let claim = r.f.record.rotation_claim(&r.new.actor(), false);
        let recovered = rotate(&r, approvals(&claim, &[&r.mary, &r.ais])).unwrap();
        if stolen[0].id() < recovered[0].id() {
            thief_smaller = true;
        } else {
            thief_larger = true;
        }
        let mut a = r.f.record.clone();
        let mut b = r.f.record.clone();
        for v in stolen.iter().chain(&recovered) {
            a.apply(v.clone()).unwrap();
        }
        for v in recovered.iter().chain(&stolen) {
            b.apply(v.clone()).unwrap();
        }
        for rec in [&a, &b] {
            assert_eq!(rec.current_patient_key(), r.new.actor());
            assert_eq!(rec.status(&recovered[0].id()), Some(&Status::Valid));
            assert_eq!(
                rec.status(&stolen[0].id()),
                Some(&Status::Void {
                    revocation: recovered[0].id()
                })
            );
            assert!(!rec.is_patient(&thief.actor()));
        }
    }
    assert!(
        thief_smaller && thief_larger,
        "both id orders were exercised"
    );
}

/// A scenario mixing devices and rotation with concurrent writes on three replicas; the
/// universe of entries it makes.
fn scenario(seed: u64, variant: u8) -> Vec<Verified> {
    let mut r = recovery(seed);
    let old = r.f.patient.clone();
    let phone = key(seed, "phone");
    let marys_phone = key(seed, "Mary's phone");
    let mary = r.mary.clone();
    add_device(&mut r.f, &old, &phone, "phone");
    add_device(&mut r.f, &mary, &marys_phone, "Mary's phone");
    vitals(&mut r.f, &phone, 101).unwrap();
    let mut offline = r.f.clone();
    let mut third = r.f.clone();
    // Offline: the old key, its phone and Mary's phone write.
    if variant & 1 != 0 {
        vitals(&mut offline, &old, 102).unwrap();
        offline
            .create(&old, Category::Problems, text_body(&[("problem", "x")]))
            .unwrap();
    }
    if variant & 2 != 0 {
        vitals(&mut offline, &phone, 103).unwrap();
    }
    vitals(&mut offline, &marys_phone, 104).unwrap();
    // Offline: a thief holding the old key rotates it to their own key and writes.
    if variant & 32 != 0 {
        let thief = key(seed, "thief");
        let claim = offline.record.rotation_claim(&thief.actor(), true);
        offline
            .write(
                &thief,
                Payload::RotateKey {
                    old: old.actor(),
                    guardians: None,
                    approvals: approvals(&claim, &[&old]),
                },
            )
            .unwrap();
        vitals(&mut offline, &thief, 107).unwrap();
    }
    // Online (the old key is lost: it writes nothing here): the key is rotated, the new
    // key writes and removes the phone the old key added.
    let claim = r.f.record.rotation_claim(&r.new.actor(), false);
    let vs = rotate(&r, approvals(&claim, &[&r.mary, &r.gp])).unwrap();
    for v in vs {
        r.f.record.apply(v).unwrap();
    }
    let new = r.new.clone();
    vitals(&mut r.f, &new, 105).unwrap();
    if variant & 4 != 0 {
        r.f.write(
            &new,
            Payload::RemoveDevice {
                device: phone.actor(),
                category: None,
                reason: "lost".into(),
            },
        )
        .unwrap();
    }
    if variant & 8 != 0 {
        // Mary removes her phone.
        r.f.write(
            &mary,
            Payload::RemoveDevice {
                device: marys_phone.actor(),
                category: None,
                reason: "lost".into(),
            },
        )
        .unwrap();
    }
    // A third replica: a competing rotation.
    if variant & 16 != 0 {
        let other = key(seed, "competing key");
        let c = third.record.rotation_claim(&other.actor(), false);
        let vs = third
            .record
            .prepare_all(
                &other,
                Payload::RotateKey {
                    old: old.actor(),
                    guardians: Some(r.guardians),
                    approvals: approvals(&c, &[&r.ais, &r.gp]),
                },
                third.now,
                None,
            )
            .unwrap();
        for v in vs {
            third.record.apply(v).unwrap();
        }
        vitals(&mut third, &other, 106).unwrap();
    }
    let mut all: Vec<Verified> = r.f.record.entries().collect();
    for rep in [&offline.record, &third.record] {
        for e in rep.entries() {
            if !all.iter().any(|a| a.id() == e.id()) {
                all.push(e.clone());
            }
        }
    }
    all
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// Statuses, the patient key, devices and every view depend only on the set of
    /// entries, not on the order they arrive in.
    #[test]
    fn devices_and_rotation_do_not_depend_on_arrival_order(variant in 0u8..64, seed in any::<u64>()) {
        let all = scenario(9, variant);
        let mut reference = Record::new(all[0].entry().record);
        reference = deliver({ reference.apply(all[0].clone()).unwrap(); reference }, &all[1..]);
        prop_assert_eq!(reference.len(), all.len());
        let mut shuffled = all[1..].to_vec();
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let other = deliver(genesis_record(&reference), &shuffled);
        prop_assert_eq!(other.len(), reference.len());
        for e in &all {
            prop_assert_eq!(reference.status(&e.id()), other.status(&e.id()), "{}", e.entry().payload.kind());
        }
        prop_assert_eq!(reference.patient_keys(), other.patient_keys());
        let p = reference.id();
        prop_assert_eq!(reference.devices_of(&p), other.devices_of(&p));
        let t = u64::MAX / 2;
        let actors: Vec<_> = ["George", "Mary", "Pharmacist", "phone", "Mary's phone", "George's new key", "competing key"]
            .iter().map(|n| key(9, n).actor()).collect();
        for a in actors {
            prop_assert_eq!(reference.is_patient(&a), other.is_patient(&a));
            prop_assert_eq!(
                current(&reference, &reference.viewer(&a, t)),
                current(&other, &other.viewer(&a, t))
            );
        }
    }
}

/// A record's admission part (`Record::admission`) decides a create by every kind of
/// writer as the whole record does: the patient's old key, after a planned rotation its
/// new key, the patient's phone before and after its removal, a grantee and the grantee's
/// phone, a stranger; in a category the grantee may write and one it may not.
#[test]
fn an_admission_part_decides_devices_and_rotated_keys_as_the_whole_record() {
    let mut f = Fixture::new(9, "George");
    let old = f.patient.clone();
    let phone = key(9, "phone");
    let new = key(9, "new");
    let mary = key(9, "Mary");
    let marys_phone = key(9, "Mary's phone");
    let stranger = key(9, "stranger");
    f.grant(grant(
        &mary,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    add_device(&mut f, &old, &phone, "phone");
    add_device(&mut f, &mary, &marys_phone, "Mary's phone");
    for (i, k) in [&old, &phone, &mary, &marys_phone].into_iter().enumerate() {
        for s in 0..3 {
            vitals(&mut f, k, 100 + (i * 10 + s) as i64).unwrap();
        }
    }
    let writers = [&old, &phone, &mary, &marys_phone, &stranger, &new];
    let compare = |f: &mut Fixture, stage: &str| {
        let mut part = f.record.admission();
        for (w, k) in writers.iter().enumerate() {
            for c in [Category::VitalSigns, Category::Problems] {
                f.now += 1000;
                let p = Payload::Create {
                    category: c.clone(),
                    body: if c == Category::VitalSigns {
                        bp(120, 80)
                    } else {
                        text_body(&[("problem", "Asthma")])
                    },
                };
                let want = f.record.prepare_all(k, p.clone(), f.now, None);
                let got = part.prepare_all(k, p, f.now, None);
                let ids = |r: &Result<Vec<Verified>, Rejection>| {
                    r.clone()
                        .map(|v| v.iter().map(Verified::id).collect::<Vec<_>>())
                };
                assert_ne!(
                    got,
                    Err(Rejection::NeedsWholeRecord),
                    "{stage}: writer {w} in {c}"
                );
                assert_eq!(ids(&got), ids(&want), "{stage}: writer {w} in {c}");
                for v in want.into_iter().flatten() {
                    assert_eq!(
                        part.apply(v.clone()),
                        f.record.apply(v),
                        "{stage}: writer {w}"
                    );
                }
            }
        }
    };
    compare(&mut f, "with devices");
    rotate_planned(&mut f, &old, &new);
    compare(&mut f, "after a rotation");
    f.write(
        &new,
        Payload::RemoveDevice {
            device: phone.actor(),
            category: None,
            reason: "lost".into(),
        },
    )
    .unwrap();
    compare(&mut f, "after the phone's removal");
}
