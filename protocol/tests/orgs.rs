//! Care organisations (issue 19): the membership log in the organisation's own record, a
//! member joining a patient's record under the organisation's grant, roles narrowing the
//! grant, removal being future-only, and every refusal the issue lists as bad input.

use cophr_protocol::entry::{Payload, SignedEntry};
use cophr_protocol::org::{verify_membership, OrgError, Role, MAX_PROOF_ENTRIES};
use cophr_protocol::record::{AccessError, Record, Rejection, Status};
use cophr_protocol::testkit::{bp, grant, key, profile, Fixture};
use cophr_protocol::{Category, Keypair, Level, Verified};
use proptest::prelude::*;
use serde_bytes::ByteBuf;

const SEED: u64 = 19;

struct World {
    org_key: Keypair,
    admin: Keypair,
    org: Fixture,
    george: Fixture,
    org_grant: cophr_protocol::EntryId,
}

fn role(name: &str) -> Role {
    Role::preset(name).expect("a preset role")
}

fn add_member(
    f: &mut Fixture,
    by: &Keypair,
    member: &Keypair,
    r: Role,
) -> Result<Verified, Rejection> {
    f.write(
        by,
        Payload::AddMember {
            member: member.actor(),
            role: r,
            label: "staff".into(),
        },
    )
}

fn membership(e: Result<impl std::fmt::Debug, Rejection>) -> OrgError {
    match e {
        Err(Rejection::Access(AccessError::Membership(m))) => m,
        other => panic!("expected a membership refusal, got {other:?}"),
    }
}

fn access(e: Result<impl std::fmt::Debug, Rejection>) -> AccessError {
    match e {
        Err(Rejection::Access(a)) => a,
        other => panic!("expected an access refusal, got {other:?}"),
    }
}

/// Leeds Home Care (its key, an administrator's device), and George, who grants it write
/// on vital signs and appointments.
fn world() -> World {
    let org_key = key(SEED, "Leeds Home Care");
    let admin = key(SEED, "office manager's laptop");
    let mut org = Fixture::with_profile(
        org_key.clone(),
        profile("Leeds Home Care Ltd", "organisation", None),
    );
    org.write(
        &org_key,
        Payload::AddDevice {
            device: admin.actor(),
            label: "office manager".into(),
        },
    )
    .expect("the organisation adds an administrator's device");
    let mut george = Fixture::new(SEED, "George");
    let org_grant = george.grant(grant(
        &org_key,
        Level::Write,
        &[Category::VitalSigns, Category::Appointments],
        false,
        false,
    ));
    World {
        org_key,
        admin,
        org,
        george,
        org_grant,
    }
}

fn join(w: &mut World, member: &Keypair) -> Result<Verified, Rejection> {
    let proof = w
        .org
        .record
        .membership_proof(&member.actor())
        .expect("a current member has a proof");
    w.george.write(member, Payload::JoinOrg { proof })
}

#[test]
fn administrators_add_and_remove_members_and_nobody_else_can() {
    let mut w = world();
    let nurse = key(SEED, "nurse Jo");
    let admin = w.admin.clone();
    add_member(&mut w.org, &admin, &nurse, role("nurse")).expect("an administrator adds a nurse");
    let members = w.org.record.members();
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].member, nurse.actor());
    assert_eq!(members[0].role, role("nurse"));

    // A member is not an administrator: they add nobody.
    let other = key(SEED, "someone");
    let e = add_member(&mut w.org, &nurse, &other, role("nurse"));
    assert!(
        matches!(access(e), AccessError::NoGrant),
        "a member adds nobody"
    );
    // Neither does a stranger.
    let e = add_member(&mut w.org, &other, &other, role("nurse"));
    assert!(matches!(e, Err(Rejection::Access(_))));
    // The organisation's own key is not its member.
    let org_key = w.org_key.clone();
    let e = add_member(&mut w.org, &admin, &org_key, role("nurse"));
    assert!(
        matches!(&e, Err(Rejection::Malformed(m)) if m.to_string().contains("own key")),
        "{e:?}"
    );
    // Twice is refused.
    let e = add_member(&mut w.org, &admin, &nurse, role("viewer"));
    assert_eq!(membership(e), OrgError::AlreadyMember(nurse.actor()));
    // Removing a non-member is refused.
    let e = w.org.write(
        &admin,
        Payload::RemoveMember {
            member: other.actor(),
            reason: "never joined".into(),
        },
    );
    assert_eq!(membership(e), OrgError::NotAMember(other.actor()));
    // Removed, then never added again under that key.
    w.org
        .write(
            &admin,
            Payload::RemoveMember {
                member: nurse.actor(),
                reason: "left".into(),
            },
        )
        .expect("an administrator removes a member");
    assert!(w.org.record.members()[0].removed.is_some());
    assert!(w.org.record.membership_proof(&nurse.actor()).is_none());
    let e = add_member(&mut w.org, &admin, &nurse, role("nurse"));
    assert_eq!(membership(e), OrgError::WasRemoved(nurse.actor()));
    // Membership entries mean nothing in a patient's record written by a grantee.
    let e = w.george.write(
        &org_key,
        Payload::AddMember {
            member: nurse.actor(),
            role: role("nurse"),
            label: "x".into(),
        },
    );
    assert_eq!(membership(e), OrgError::NotAdministratorHere);
}

#[test]
fn a_member_joins_with_the_organisations_proof_and_writes_under_its_grant() {
    let mut w = world();
    let nurse = key(SEED, "nurse Jo");
    let admin = w.admin.clone();
    add_member(&mut w.org, &admin, &nurse, role("nurse")).unwrap();
    // Before joining, the grant is not theirs.
    let e = w.george.create(&nurse, Category::VitalSigns, bp(120, 80));
    assert!(matches!(e, Err(Rejection::Access(_))), "{e:?}");
    let j = join(&mut w, &nurse).expect("a member joins");
    assert_eq!(j.entry().auth, Some(w.org_grant));
    let v = w
        .george
        .create(&nurse, Category::VitalSigns, bp(132, 84))
        .expect("a joined nurse writes vital signs");
    // The entry names the person (its author) and the organisation (the grant's grantee).
    let written = w.george.record.get(&v).unwrap();
    assert_eq!(written.entry().author, nurse.actor());
    let grantee = w
        .george
        .record
        .grant(&written.entry().auth.unwrap())
        .unwrap()
        .grant
        .grantee;
    assert_eq!(grantee, w.org_key.actor());
    // Not beyond the organisation's grant.
    let e = w.george.create(
        &nurse,
        Category::Medications,
        cophr_protocol::testkit::text_body(&[("medication", "Metformin 500 mg")]),
    );
    assert!(matches!(
        access(e),
        AccessError::Scope(_) | AccessError::NoGrant
    ));
    // The patient's record lists the member, with their organisation and role.
    let joined = w.george.record.joined_members();
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0].member, nurse.actor());
    assert_eq!(joined[0].org, w.org_key.actor());
    assert_eq!(joined[0].role, role("nurse"));
    assert!(joined[0].removed.is_none());
    // Joining twice is refused.
    let e = join(&mut w, &nurse);
    assert_eq!(membership(e), OrgError::AlreadyJoined(nurse.actor()));
    // The member sees what the grant opens, as a viewer.
    let viewer = w.george.record.viewer(&nurse.actor(), w.george.now);
    assert!(viewer.has_access());
    assert!(w.george.record.can_see(&viewer, &v));
}

#[test]
fn a_role_narrows_the_organisations_grant_and_never_widens_it() {
    let mut w = world();
    let receptionist = key(SEED, "receptionist");
    let nurse = key(SEED, "nurse");
    let admin = w.admin.clone();
    add_member(&mut w.org, &admin, &receptionist, role("receptionist")).unwrap();
    add_member(&mut w.org, &admin, &nurse, role("nurse")).unwrap();
    join(&mut w, &receptionist).unwrap();
    join(&mut w, &nurse).unwrap();
    let reading = w
        .george
        .create(&nurse, Category::VitalSigns, bp(140, 90))
        .unwrap();
    // The grant covers vital signs; the receptionist's role does not.
    let e = w
        .george
        .create(&receptionist, Category::VitalSigns, bp(120, 80));
    assert!(matches!(
        access(e),
        AccessError::Scope(Category::VitalSigns)
    ));
    let viewer = w.george.record.viewer(&receptionist.actor(), w.george.now);
    assert!(
        !w.george.record.can_see(&viewer, &reading),
        "the receptionist does not see vital signs"
    );
    assert!(!w
        .george
        .record
        .readers(&Category::VitalSigns)
        .contains(&receptionist.actor()));
    assert!(w
        .george
        .record
        .readers(&Category::VitalSigns)
        .contains(&nurse.actor()));
    assert!(w
        .george
        .record
        .readers(&Category::Appointments)
        .contains(&receptionist.actor()));

    // A role with every right under a view-only grant writes nothing.
    let mut george = Fixture::new(SEED + 1, "Georgina");
    george.grant(grant(&w.org_key, Level::View, &[], false, false));
    let proof = w.org.record.membership_proof(&nurse.actor()).unwrap();
    george
        .write(&nurse, Payload::JoinOrg { proof })
        .expect("a member joins under a view grant");
    let e = george.create(&nurse, Category::VitalSigns, bp(120, 80));
    assert!(
        matches!(access(e), AccessError::Level { .. }),
        "a role never widens the grant"
    );
}

#[test]
fn forged_or_borrowed_proofs_are_refused() {
    let mut w = world();
    let nurse = key(SEED, "nurse");
    let admin = w.admin.clone();
    add_member(&mut w.org, &admin, &nurse, role("nurse")).unwrap();
    let proof = w.org.record.membership_proof(&nurse.actor()).unwrap();
    assert_eq!(
        proof.len(),
        2,
        "the addition and its signer's administrator device"
    );
    let org = w.org_key.actor();

    // Someone else presenting the nurse's proof.
    let thief = key(SEED, "thief");
    let e = w.george.write(
        &thief,
        Payload::JoinOrg {
            proof: proof.clone(),
        },
    );
    assert_eq!(membership(e), OrgError::NotNamed(thief.actor()));

    // Without the administrator's device entry, the signer is nobody.
    let e = verify_membership(&org, &nurse.actor(), &proof[1..]);
    assert_eq!(e.unwrap_err(), OrgError::NotAdministrator(admin.actor()));

    // A membership "signed" by a key the organisation never made an administrator: a
    // stranger's own record naming the same organisation id cannot be made (its entries
    // name the stranger's record), and a tampered entry does not verify.
    let mut tampered = proof.clone();
    let last = tampered.last_mut().unwrap();
    let n = last.len();
    last[n - 10] ^= 1;
    assert!(matches!(
        verify_membership(&org, &nurse.actor(), &tampered),
        Err(OrgError::ProofEntry(_))
    ));

    // A proof from another organisation's record.
    let rival_key = key(SEED, "Rival Care");
    let mut rival =
        Fixture::with_profile(rival_key.clone(), profile("Rival", "organisation", None));
    add_member(&mut rival, &rival_key, &nurse, role("nurse")).unwrap();
    let rival_proof = rival.record.membership_proof(&nurse.actor()).unwrap();
    let e = verify_membership(&org, &nurse.actor(), &rival_proof);
    assert_eq!(e.unwrap_err(), OrgError::OtherOrganisation { org });
    // George granted the rival nothing: the nurse cannot join under its name.
    let e = w
        .george
        .write(&nurse, Payload::JoinOrg { proof: rival_proof });
    assert!(matches!(e, Err(Rejection::Access(_))));

    // Too many entries, or none.
    let mut long = proof.clone();
    while long.len() <= MAX_PROOF_ENTRIES {
        long.insert(0, proof[0].clone());
    }
    assert_eq!(
        verify_membership(&org, &nurse.actor(), &long).unwrap_err(),
        OrgError::ProofSize
    );
    assert_eq!(
        verify_membership(&org, &nurse.actor(), &[]).unwrap_err(),
        OrgError::ProofSize
    );
    // An extra, unrelated entry of the organisation's.
    let genesis = w.org.record.entries().next().unwrap();
    let extra = vec![
        ByteBuf::from(genesis.signed().bytes().to_vec()),
        proof[1].clone(),
    ];
    assert!(verify_membership(&org, &nurse.actor(), &extra).is_err());
    // Garbage.
    let junk = vec![ByteBuf::from(vec![0xff; 64])];
    assert!(matches!(
        verify_membership(&org, &nurse.actor(), &junk),
        Err(OrgError::ProofEntry(_))
    ));
    // Nothing was stored by any of these.
    assert!(w.george.record.joined_members().is_empty());
}

#[test]
fn a_removed_member_is_refused_from_the_removal_on_and_keeps_what_came_before() {
    let mut w = world();
    let nurse = key(SEED, "nurse");
    let admin = w.admin.clone();
    add_member(&mut w.org, &admin, &nurse, role("nurse")).unwrap();
    let old_proof = w.org.record.membership_proof(&nurse.actor()).unwrap();
    join(&mut w, &nurse).unwrap();
    let before = w
        .george
        .create(&nurse, Category::VitalSigns, bp(120, 80))
        .unwrap();
    // Written on the nurse's own replica, which has not seen the removal yet.
    let branch: Record = w.george.record.clone();
    let concurrent = branch
        .prepare_as(
            &nurse,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(150, 95),
            },
            w.george.now,
            None,
        )
        .unwrap();

    // The organisation removes the nurse from its log, and its node writes the removal
    // into George's record, as the organisation.
    w.org
        .write(
            &admin,
            Payload::RemoveMember {
                member: nurse.actor(),
                reason: "left the service".into(),
            },
        )
        .unwrap();
    let org_key = w.org_key.clone();
    w.george
        .write(
            &org_key,
            Payload::RemoveDevice {
                device: nurse.actor(),
                category: None,
                reason: "left the service".into(),
            },
        )
        .expect("the organisation removes its member from the record");

    // From the removal on: refused (naming the organisation's grant, as a member would).
    let e = w.george.record.prepare(
        &nurse,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(120, 80),
        },
        Some(w.org_grant),
        w.george.now,
        None,
    );
    assert!(
        matches!(access(e.clone()), AccessError::DeviceRemoved { .. }),
        "{e:?}"
    );
    // The old proof replayed: refused too.
    let e = w.george.write(
        &nurse,
        Payload::JoinOrg {
            proof: old_proof.clone(),
        },
    );
    assert!(
        matches!(access(e.clone()), AccessError::DeviceRemoved { .. }),
        "{e:?}"
    );
    // What was written concurrently is void; what came before stays.
    w.george
        .record
        .apply(concurrent.clone())
        .expect("held as evidence");
    assert!(matches!(
        w.george.record.status(&concurrent.id()),
        Some(Status::Void { .. })
    ));
    assert_eq!(w.george.record.status(&before), Some(&Status::Valid));
    // Not a reader any more; the listing shows the removal.
    assert!(!w
        .george
        .record
        .readers(&Category::VitalSigns)
        .contains(&nurse.actor()));
    assert!(w.george.record.joined_members()[0].removed.is_some());
    // The old proof opens no pull either.
    assert!(w
        .george
        .record
        .member_viewer(&nurse.actor(), &old_proof, w.george.now, &[], &|_| false)
        .is_err());
    // The revocation of the whole service still works, and ends every member.
    let nurse2 = key(SEED, "nurse two");
    add_member(&mut w.org, &admin, &nurse2, role("nurse")).unwrap();
    join(&mut w, &nurse2).unwrap();
    let patient = w.george.patient.clone();
    w.george
        .write(
            &patient,
            Payload::Revoke {
                grant: w.org_grant,
                category: None,
                reason: "changed provider".into(),
            },
        )
        .unwrap();
    let e = w.george.create(&nurse2, Category::VitalSigns, bp(120, 80));
    assert!(e.is_err(), "a revoked organisation's members write nothing");
}

/// A removed member's replica must learn of its removal (else its later writes strand on
/// its node, accepted there and refused everywhere else): like a revoked grantee, it may
/// pull up to the removal's cut — the removal itself included — and nothing written after.
#[test]
fn a_removed_member_pulls_its_removal_and_nothing_after_it() {
    let mut w = world();
    let nurse = key(SEED, "nurse");
    let admin = w.admin.clone();
    add_member(&mut w.org, &admin, &nurse, role("nurse")).unwrap();
    join(&mut w, &nurse).unwrap();
    w.george
        .create(&nurse, Category::VitalSigns, bp(120, 80))
        .unwrap();
    // The nurse's replica, as it stands before the removal.
    let mut replica = w.george.record.clone();
    w.org
        .write(
            &admin,
            Payload::RemoveMember {
                member: nurse.actor(),
                reason: "left the service".into(),
            },
        )
        .unwrap();
    let org_key = w.org_key.clone();
    let now = w.george.now;
    let parts = w
        .george
        .record
        .prepare_all(
            &org_key,
            Payload::RemoveDevice {
                device: nurse.actor(),
                category: None,
                reason: "left the service".into(),
            },
            now,
            None,
        )
        .expect("the organisation removes its member in every stream she wrote");
    assert_eq!(
        parts.len(),
        2,
        "vital signs, then the administrative stream"
    );
    for p in parts {
        w.george.record.apply(p).unwrap();
    }
    let patient = w.george.patient.clone();
    let after = w
        .george
        .create(&patient, Category::VitalSigns, bp(150, 95))
        .unwrap();
    let grant_after = w.george.grant(grant(
        &key(SEED, "someone else"),
        Level::View,
        &[Category::Appointments],
        false,
        false,
    ));

    // George then revokes the whole service: the revocation's cut comes after her
    // removal's, and must not widen what she sees (both cuts apply).
    w.george
        .write(
            &patient,
            Payload::Revoke {
                grant: w.org_grant,
                category: None,
                reason: "changed provider".into(),
            },
        )
        .unwrap();

    // What the host lets the removed nurse pull.
    let v = w.george.record.viewer(&nurse.actor(), now);
    assert!(v.has_access(), "she may still pull up to her removal");
    assert_eq!(v.level_on(&Category::VitalSigns), None, "and write nothing");
    let removal = w.george.record.removals_of(&nurse.actor());
    assert_eq!(removal.len(), 1);
    assert_eq!(removal[0].0, w.org_key.actor());
    for id in &removal[0].1 {
        assert!(w.george.record.can_see(&v, id), "the removal is shown");
    }
    assert!(
        !w.george.record.can_see(&v, &after),
        "nothing written after it"
    );
    assert!(!w.george.record.can_see(&v, &grant_after));
    for e in w.george.record.entries() {
        if w.george.record.can_see(&v, &e.id()) && replica.get(&e.id()).is_none() {
            replica.apply(e.clone()).expect("pulled in causal order");
        }
    }
    // Her own replica now knows, and refuses her writes there too.
    assert!(replica.owners_of(&nurse.actor()).is_empty());
    let e = replica.prepare(
        &nurse,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(120, 80),
        },
        Some(w.org_grant),
        now,
        None,
    );
    assert!(
        matches!(access(e.clone()), AccessError::DeviceRemoved { .. }),
        "{e:?}"
    );
    // Another member who was never removed sees nothing of this: the cut is hers.
    let stranger = key(SEED, "not a member");
    assert!(!w.george.record.viewer(&stranger.actor(), now).has_access());
}

#[test]
fn a_member_who_has_not_joined_may_pull_with_a_proof() {
    let mut w = world();
    let nurse = key(SEED, "nurse");
    let admin = w.admin.clone();
    add_member(&mut w.org, &admin, &nurse, role("receptionist")).unwrap();
    let proof = w.org.record.membership_proof(&nurse.actor()).unwrap();
    let plain = w.george.record.viewer(&nurse.actor(), w.george.now);
    assert!(!plain.has_access());
    let v = w
        .george
        .record
        .member_viewer(&nurse.actor(), &proof, w.george.now, &[], &|_| false)
        .expect("a valid proof opens the organisation's grant");
    assert!(v.has_access());
    let org_key = w.org_key.clone();
    let reading = w
        .george
        .create(&org_key, Category::VitalSigns, bp(110, 70))
        .unwrap();
    assert!(
        !w.george.record.can_see(&v, &reading),
        "the presented role narrows the pull too"
    );
    // Someone else's proof opens nothing.
    let other = key(SEED, "other");
    assert!(w
        .george
        .record
        .member_viewer(&other.actor(), &proof, w.george.now, &[], &|_| false)
        .is_err());
}

/// The organisation's entries in a random arrival order.
fn shuffled(all: &[Verified], seed: u64) -> Vec<Verified> {
    let mut v = all.to_vec();
    let mut s = seed | 1;
    for i in (1..v.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v.swap(i, (s % (i as u64 + 1)) as usize);
    }
    v
}

fn deliver(genesis: &Verified, entries: &[Verified]) -> Record {
    let mut r = Record::new(genesis.entry().record);
    r.apply(genesis.clone()).unwrap();
    let mut pending = entries.to_vec();
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|v| r.apply(v.clone()).is_err());
        assert!(pending.len() < before, "stuck");
    }
    r
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    /// A forked membership log (two administrators writing without seeing each other):
    /// concurrent additions and removals of the same member resolve alike on every
    /// replica, whatever order the entries arrive in; a removal wins wherever it is known.
    #[test]
    fn concurrent_membership_changes_resolve_the_same_everywhere(ops in proptest::collection::vec((0u8..2, 0u8..3, any::<bool>()), 1..12), seed in any::<u64>()) {
        let org_key = key(SEED, "org");
        let admins = [key(SEED, "admin a"), key(SEED, "admin b")];
        let staff = [key(SEED, "s0"), key(SEED, "s1"), key(SEED, "s2")];
        let mut base = Fixture::with_profile(org_key.clone(), profile("Org", "organisation", None));
        for a in &admins {
            base.write(&org_key, Payload::AddDevice { device: a.actor(), label: "admin".into() }).unwrap();
        }
        // Two forks, one per administrator, each writing what it may.
        let mut forks = [base.clone(), base.clone()];
        for (admin, who, add) in ops {
            let f = &mut forks[admin as usize];
            let member = staff[who as usize].actor();
            let payload = if add {
                Payload::AddMember { member, role: Role::preset("nurse").unwrap(), label: "x".into() }
            } else {
                Payload::RemoveMember { member, reason: "left".into() }
            };
            let _ = f.write(&admins[admin as usize], payload);
        }
        let genesis = base.record.entries().next().unwrap();
        let mut all: Vec<Verified> = Vec::new();
        for f in &forks {
            for v in f.record.entries() {
                if !all.iter().any(|x| x.id() == v.id()) && v.id() != genesis.id() {
                    all.push(v);
                }
            }
        }
        let a = deliver(&genesis, &all);
        let b = deliver(&genesis, &shuffled(&all, seed));
        let summary = |r: &Record| {
            let mut m: Vec<_> = r.members().into_iter().map(|m| (m.member, m.removed.is_some())).collect();
            m.sort();
            m.dedup();
            m
        };
        prop_assert_eq!(summary(&a), summary(&b));
        for s in &staff {
            prop_assert_eq!(a.membership_proof(&s.actor()).is_some(), b.membership_proof(&s.actor()).is_some());
            // A removal anywhere means no proof.
            let removed = a.members().iter().any(|m| m.member == s.actor() && m.removed.is_some());
            if removed {
                prop_assert!(a.membership_proof(&s.actor()).is_none());
            }
        }
    }
}

#[test]
fn a_proof_entry_decodes_as_the_organisations_own_entry() {
    let mut w = world();
    let nurse = key(SEED, "nurse");
    let org_key = w.org_key.clone();
    add_member(&mut w.org, &org_key, &nurse, role("nurse")).unwrap();
    let proof = w.org.record.membership_proof(&nurse.actor()).unwrap();
    assert_eq!(
        proof.len(),
        1,
        "signed by the organisation's own key: nothing else needed"
    );
    let e = SignedEntry::decode(&proof[0]).unwrap();
    assert_eq!(e.entry().record, org_key.actor());
}
