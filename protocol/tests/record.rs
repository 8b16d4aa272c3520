//! Record validation: authorship, access levels, delegation, revocation, forks, versions.

use cophr_protocol::access::Level;
use cophr_protocol::fold::{self, current, history};
use cophr_protocol::record::{AccessError, Applied, Rejection, Status};
use cophr_protocol::testkit::{bp, grant, key, text_body, Fixture};
use cophr_protocol::{Category, Payload, SignedEntry};

fn allergy(agent: &str) -> cophr_protocol::Value {
    text_body(&[("agent", agent)])
}

#[test]
fn only_the_patients_genesis_starts_a_record() {
    let mut f = Fixture::new(1, "George");
    let mary = key(1, "Mary");
    // A second genesis is refused.
    let e = f.record.next_entry(
        &f.patient.actor(),
        Payload::Genesis {
            profile: cophr_protocol::testkit::profile("G", "patient", None),
        },
        None,
        f.now,
        None,
    );
    let v = SignedEntry::decode(e.sign(&f.patient).bytes());
    assert!(
        v.is_err(),
        "genesis with a backlink is structurally invalid"
    );
    // Someone without a grant writes nothing.
    let err = f
        .create(&mary, Category::Allergies, allergy("nuts"))
        .unwrap_err();
    assert_eq!(err, Rejection::Access(AccessError::NoGrant));
    assert_eq!(f.record.len(), 1);
}

#[test]
fn george_access_matrix() {
    let mut f = Fixture::new(2, "George");
    let george = f.patient.clone();
    let mary = key(2, "Mary");
    let patricia = key(2, "Patricia");
    let homecare = key(2, "HomeCare");
    let consultant = key(2, "Consultant");
    let pharmacist = key(2, "Pharmacist");
    f.grant(grant(&mary, Level::Delete, &[], true, true));
    f.grant(grant(&patricia, Level::View, &[], true, false));
    f.grant(grant(
        &homecare,
        Level::Write,
        &[
            Category::VitalSigns,
            Category::Procedures,
            Category::LabResults,
        ],
        false,
        false,
    ));
    f.grant(grant(&consultant, Level::Write, &[], false, false));
    f.grant(grant(
        &pharmacist,
        Level::View,
        &[
            Category::Problems,
            Category::Medications,
            Category::Allergies,
        ],
        false,
        false,
    ));

    let m_bp = f.create(&mary, Category::VitalSigns, bp(140, 90)).unwrap();
    f.create(&homecare, Category::VitalSigns, bp(135, 85))
        .unwrap();
    f.create(
        &consultant,
        Category::Problems,
        text_body(&[("problem", "Type 2 diabetes")]),
    )
    .unwrap();
    f.create(&george, Category::Allergies, allergy("Penicillin"))
        .unwrap();

    // Disallowed writes: each refused with a precise reason, nothing stored.
    let before = f.record.len();
    assert!(matches!(
        f.create(&patricia, Category::VitalSigns, bp(120, 80)),
        Err(Rejection::Access(AccessError::Level {
            needed: Level::Write,
            held: Level::View,
            ..
        }))
    ));
    assert!(matches!(
        f.create(
            &homecare,
            Category::Medications,
            text_body(&[("medication", "Metformin")])
        ),
        Err(Rejection::Access(AccessError::Scope(Category::Medications)))
    ));
    assert!(matches!(
        f.create(
            &pharmacist,
            Category::Medications,
            text_body(&[("medication", "Metformin")])
        ),
        Err(Rejection::Access(AccessError::Level { .. }))
    ));
    // The consultant may not amend Mary's reading (not author, not proxy).
    assert!(matches!(
        f.write(
            &consultant,
            Payload::Amend {
                target: m_bp,
                body: bp(141, 90)
            }
        ),
        Err(Rejection::Access(AccessError::NotAuthorOrProxy(_)))
    ));
    // Viewers cannot annotate.
    assert!(f
        .write(
            &patricia,
            Payload::Annotate {
                target: m_bp,
                text: "hello".into()
            }
        )
        .is_err());
    assert_eq!(f.record.len(), before);

    // What each sees.
    let now = f.now;
    let sees = |who: &cophr_protocol::Keypair| {
        let v = f.record.viewer(&who.actor(), now);
        let s = current(&f.record, &v);
        let mut cats: Vec<String> = s.items.iter().map(|i| i.category.to_string()).collect();
        cats.sort();
        (cats, v.may_audit())
    };
    assert_eq!(sees(&george).0.len(), 4);
    assert_eq!(
        sees(&patricia),
        (
            vec![
                "allergies".into(),
                "problems".into(),
                "vital-signs".into(),
                "vital-signs".into()
            ],
            true
        )
    );
    assert_eq!(
        sees(&homecare),
        (vec!["vital-signs".into(), "vital-signs".into()], false)
    );
    assert_eq!(
        sees(&pharmacist),
        (vec!["allergies".into(), "problems".into()], false)
    );
    assert!(
        !sees(&consultant).1,
        "the consultant cannot see the audit trail"
    );
}

#[test]
fn patient_annotates_but_only_author_or_proxy_amends_and_deletes() {
    let mut f = Fixture::new(3, "George");
    let george = f.patient.clone();
    let mary = key(3, "Mary");
    let nurse = key(3, "Nurse");
    f.grant(grant(&mary, Level::Delete, &[], true, true));
    f.grant(grant(&nurse, Level::Delete, &[], false, false));
    let n = f
        .create(
            &nurse,
            Category::Problems,
            text_body(&[("problem", "Leg ulcer")]),
        )
        .unwrap();
    // The patient may annotate but not amend or delete the nurse's entry.
    f.write(
        &george,
        Payload::Annotate {
            target: n,
            text: "Healing well".into(),
        },
    )
    .unwrap();
    assert!(matches!(
        f.write(
            &george,
            Payload::Amend {
                target: n,
                body: text_body(&[("problem", "x")])
            }
        ),
        Err(Rejection::Access(AccessError::NotAuthorOrProxy(_)))
    ));
    // Mary (George's proxy) amends George's own entry.
    let g = f
        .create(
            &george,
            Category::AboutMe,
            text_body(&[("thing-1", "I am deaf in one ear")]),
        )
        .unwrap();
    let a = f
        .write(
            &mary,
            Payload::Amend {
                target: g,
                body: text_body(&[("thing-1", "Deaf in the left ear")]),
            },
        )
        .unwrap();
    // The nurse deletes her own entry; the original stays in history.
    f.write(
        &nurse,
        Payload::Delete {
            target: n,
            reason: "entered in error".into(),
        },
    )
    .unwrap();
    let v = f.record.viewer(&george.actor(), f.now);
    let s = current(&f.record, &v);
    assert_eq!(s.deleted, vec![n]);
    let item = s.items.iter().find(|i| i.id == g).unwrap();
    assert_eq!(item.current, a.id());
    assert_eq!(item.versions, 2);
    let h = history(&f.record, &v, &n).unwrap();
    let kinds: Vec<&str> = h.versions.iter().map(|v| v.kind).collect();
    assert_eq!(kinds, ["create", "annotate", "delete"]);
    assert_eq!(h.versions[0].provenance.author, nurse.actor());
}

#[test]
fn delegation_only_narrows() {
    let mut f = Fixture::new(4, "George");
    let mary = key(4, "Mary");
    let alex = key(4, "Alex");
    let gp = key(4, "GP");
    f.grant(grant(
        &mary,
        Level::Write,
        &[Category::VitalSigns, Category::Medications],
        false,
        true,
    ));
    f.grant(grant(&gp, Level::Write, &[], false, false));
    // Mary may delegate a subset …
    f.write(
        &mary,
        Payload::Grant(grant(
            &alex,
            Level::View,
            &[Category::VitalSigns],
            false,
            false,
        )),
    )
    .unwrap();
    // … never more.
    for (g, why) in [
        (
            grant(&alex, Level::Delete, &[Category::VitalSigns], false, false),
            "level",
        ),
        (grant(&alex, Level::View, &[], false, false), "scope"),
        (
            grant(&alex, Level::View, &[Category::VitalSigns], true, false),
            "audit",
        ),
    ] {
        let r = f.write(&mary, Payload::Grant(g));
        assert!(
            matches!(r, Err(Rejection::Access(AccessError::Widening(_)))),
            "{why}: {r:?}"
        );
    }
    // Without the delegate right, no granting at all.
    let r = f.write(
        &gp,
        Payload::Grant(grant(&alex, Level::View, &[], false, false)),
    );
    assert!(matches!(
        r,
        Err(Rejection::Access(AccessError::Widening(_)))
    ));
    // Alex sees vital signs only.
    f.create(&mary, Category::VitalSigns, bp(120, 80)).unwrap();
    f.create(
        &mary,
        Category::Medications,
        text_body(&[("medication", "Ramipril")]),
    )
    .unwrap();
    let v = f.record.viewer(&alex.actor(), f.now);
    let s = current(&f.record, &v);
    assert_eq!(s.items.len(), 1);
    assert_eq!(s.items[0].category, Category::VitalSigns);
}

#[test]
fn revocation_is_future_only() {
    let mut f = Fixture::new(5, "George");
    let george = f.patient.clone();
    let hc = key(5, "HomeCare");
    let g = f.grant(grant(
        &hc,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    let before = f.create(&hc, Category::VitalSigns, bp(130, 80)).unwrap();
    f.create(&george, Category::VitalSigns, bp(125, 80))
        .unwrap();
    // A write by home care prepared (and made durable elsewhere) before it learns of the revocation.
    let concurrent = f
        .record
        .prepare(
            &hc,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(150, 95),
            },
            Some(g),
            f.now,
            None,
        )
        .unwrap();
    let rev = f
        .write(
            &george,
            Payload::Revoke {
                grant: g,
                category: None,
                reason: "changed provider".into(),
            },
        )
        .unwrap();
    let after_rev = f
        .create(&george, Category::VitalSigns, bp(118, 75))
        .unwrap();

    // New writes: refused.
    assert!(matches!(
        f.record.prepare(
            &hc,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(121, 81)
            },
            Some(g),
            f.now,
            None
        ),
        Err(Rejection::Access(AccessError::Revoked { .. }))
    ));
    // A concurrent write arriving later is kept but void.
    let applied = f.record.apply(concurrent.clone()).unwrap();
    let Applied::Added {
        status: Status::Void { revocation },
        voided,
    } = applied
    else {
        panic!("expected a void entry, got {applied:?}");
    };
    assert!(voided.is_empty());
    assert!(f.record.grant(&g).unwrap().revoked_by.contains(&revocation));
    assert_eq!(f.record.stream_of(&rev.id()), Some(&None));
    // Home care still sees what it saw before, and nothing after.
    let v = f.record.viewer(&hc.actor(), f.now);
    assert!(f.record.can_see(&v, &before));
    assert!(!f.record.can_see(&v, &after_rev));
    let s = current(&f.record, &v);
    assert!(s.items.iter().all(|i| i.id != concurrent.id()));
    assert_eq!(s.items.len(), 2);
}

#[test]
fn revocation_voids_writes_it_did_not_see_regardless_of_arrival_order() {
    let mut f = Fixture::new(6, "George");
    let george = f.patient.clone();
    let hc = key(6, "HomeCare");
    let g = f.grant(grant(
        &hc,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    let early = f.create(&hc, Category::VitalSigns, bp(130, 80)).unwrap();
    let base = f.record.clone();
    // Home care writes; independently, George revokes without having seen it.
    let w = base
        .prepare(
            &hc,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(121, 81),
            },
            Some(g),
            f.now,
            None,
        )
        .unwrap();
    let revocation = base
        .prepare_all(
            &george,
            Payload::Revoke {
                grant: g,
                category: None,
                reason: "x".into(),
            },
            f.now,
            None,
        )
        .unwrap();
    // One revoke entry in the vital-signs stream, one in the administrative stream.
    assert_eq!(revocation.len(), 2);
    let mut a = base.clone();
    a.apply(w.clone()).unwrap();
    let mut voided = Vec::new();
    for r in &revocation {
        if let Applied::Added { voided: v, .. } = a.apply(r.clone()).unwrap() {
            voided.extend(v);
        }
    }
    assert_eq!(voided, vec![w.id()]);
    let mut b = base;
    for r in &revocation {
        b.apply(r.clone()).unwrap();
    }
    b.apply(w.clone()).unwrap();
    for rec in [&a, &b] {
        assert!(matches!(rec.status(&w.id()), Some(Status::Void { .. })));
        assert_eq!(rec.status(&early), Some(&Status::Valid));
    }
    let v = a.viewer(&george.actor(), f.now);
    assert_eq!(
        current(&a, &v),
        current(&b, &b.viewer(&george.actor(), f.now))
    );
}

/// Found by the simulation (`revocation` scenario): George revokes Mary offline while Mary,
/// not knowing, delegates to a night sitter who writes. A replica that gets the revocation
/// first used to refuse the sitter's write ("grant is void"), and everything after it, while
/// one that got it last kept it as void.
#[test]
fn writes_under_a_grant_delegated_concurrently_with_a_revocation_are_void_in_any_order() {
    let mut f = Fixture::new(8, "George");
    let george = f.patient.clone();
    let mary = key(8, "Mary");
    let sitter = key(8, "Sitter");
    let g1 = f.grant(grant(&mary, Level::Delete, &[], true, true));
    f.create(&george, Category::VitalSigns, bp(120, 80))
        .unwrap();
    let base = f.record.clone();
    let revocation = base
        .prepare_all(
            &george,
            Payload::Revoke {
                grant: g1,
                category: None,
                reason: "x".into(),
            },
            f.now,
            None,
        )
        .unwrap();
    let mut marys = base.clone();
    let g2 = marys
        .prepare_as(
            &mary,
            Payload::Grant(grant(
                &sitter,
                Level::Write,
                &[Category::VitalSigns],
                false,
                false,
            )),
            f.now + 1,
            None,
        )
        .unwrap();
    marys.apply(g2.clone()).unwrap();
    let w = marys
        .prepare_as(
            &sitter,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(131, 82),
            },
            f.now + 2,
            None,
        )
        .unwrap();
    let orders = [
        [vec![g2.clone(), w.clone()], revocation.clone()].concat(),
        [revocation.clone(), vec![g2.clone(), w.clone()]].concat(),
        [vec![g2.clone()], revocation.clone(), vec![w.clone()]].concat(),
    ];
    let mut states = Vec::new();
    for order in orders {
        let mut r = base.clone();
        for v in order {
            r.apply(v).unwrap();
        }
        assert!(matches!(r.status(&g2.id()), Some(Status::Void { .. })));
        assert!(matches!(r.status(&w.id()), Some(Status::Void { .. })));
        states.push((r.len(), current(&r, &r.viewer(&george.actor(), f.now))));
    }
    assert!(states.windows(2).all(|p| p[0] == p[1]));
    // The sitter, once it has seen the revocation, writes nothing more.
    let mut seen = base;
    for v in revocation.iter().chain([&g2, &w]) {
        seen.apply(v.clone()).unwrap();
    }
    assert!(seen
        .prepare(
            &sitter,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(140, 90),
            },
            Some(g2.id()),
            f.now + 3,
            None,
        )
        .is_err());
}

#[test]
fn forks_are_detected_and_kept_as_proof() {
    let mut f = Fixture::new(7, "George");
    let george = f.patient.clone();
    let a = f
        .record
        .prepare(
            &george,
            Payload::Create {
                category: Category::Allergies,
                body: allergy("a"),
            },
            None,
            f.now,
            None,
        )
        .unwrap();
    let b = f
        .record
        .prepare(
            &george,
            Payload::Create {
                category: Category::Allergies,
                body: allergy("b"),
            },
            None,
            f.now,
            None,
        )
        .unwrap();
    f.record.apply(a.clone()).unwrap();
    let err = f.record.apply(b.clone()).unwrap_err();
    assert!(matches!(err, Rejection::Fork { existing, seq: 1, .. } if existing == a.id()));
    assert_eq!(f.record.forks().len(), 1);
    assert_eq!(f.record.forks()[0].conflicting.id(), b.id());
}

#[test]
fn missing_parents_and_time_travel_are_refused() {
    let mut f = Fixture::new(8, "George");
    let george = f.patient.clone();
    let mut other = f.record.clone();
    let a = other
        .prepare(
            &george,
            Payload::Create {
                category: Category::Allergies,
                body: allergy("a"),
            },
            None,
            f.now,
            None,
        )
        .unwrap();
    other.apply(a.clone()).unwrap();
    let b = other
        .prepare(
            &george,
            Payload::Create {
                category: Category::Allergies,
                body: allergy("b"),
            },
            None,
            f.now + 5,
            None,
        )
        .unwrap();
    assert_eq!(
        f.record.apply(b).unwrap_err(),
        Rejection::MissingParents(vec![a.id()])
    );
    let mut e = f.record.next_entry(
        &george.actor(),
        Payload::Create {
            category: Category::Allergies,
            body: allergy("c"),
        },
        None,
        0,
        None,
    );
    e.time = 5; // earlier than genesis
    let v = cophr_protocol::Verified::trusted(e.sign(&george));
    assert_eq!(f.record.apply(v).unwrap_err(), Rejection::TimeTravel);
}

#[test]
fn concurrent_amends_are_both_kept_and_one_wins_deterministically() {
    let mut f = Fixture::new(9, "George");
    let george = f.patient.clone();
    let mary = key(9, "Mary");
    f.grant(grant(&mary, Level::Delete, &[], false, true));
    let item = f
        .create(&george, Category::Allergies, allergy("peanut"))
        .unwrap();
    let base = f.record.clone();
    let x = base
        .prepare(
            &george,
            Payload::Amend {
                target: item,
                body: allergy("peanuts"),
            },
            None,
            f.now,
            None,
        )
        .unwrap();
    let y = base
        .prepare_as(
            &mary,
            Payload::Amend {
                target: item,
                body: allergy("peanut oil"),
            },
            f.now,
            None,
        )
        .unwrap();
    let mut r1 = base.clone();
    r1.apply(x.clone()).unwrap();
    r1.apply(y.clone()).unwrap();
    let mut r2 = base;
    r2.apply(y).unwrap();
    r2.apply(x).unwrap();
    let v = r1.viewer(&george.actor(), f.now);
    let s1 = current(&r1, &v);
    let s2 = current(&r2, &r2.viewer(&george.actor(), f.now));
    assert_eq!(s1, s2);
    let it = s1.items.iter().find(|i| i.id == item).unwrap();
    assert!(it.conflict);
    assert_eq!(it.versions, 3);
    assert_eq!(fold::history(&r1, &v, &item).unwrap().versions.len(), 3);
}

#[test]
fn versions_written_in_the_same_millisecond_are_listed_in_causal_order() {
    let mut f = Fixture::new(12, "George");
    let george = f.patient.clone();
    let item = f
        .create(&george, Category::Allergies, allergy("peanut"))
        .unwrap();
    // Several amends, each of the one before, all at one time: whatever their ids, the
    // history lists them in the order each was written after the other.
    let at = f.now;
    let mut target = item;
    let mut written = vec![item];
    for agent in [
        "peanuts",
        "peanut oil",
        "groundnut",
        "arachis oil",
        "peanut (all forms)",
    ] {
        let v = f
            .record
            .prepare(
                &george,
                Payload::Amend {
                    target,
                    body: allergy(agent),
                },
                None,
                at,
                None,
            )
            .unwrap();
        target = v.id();
        written.push(v.id());
        f.record.apply(v).unwrap();
    }
    let v = f.record.viewer(&george.actor(), at);
    let listed: Vec<_> = fold::history(&f.record, &v, &item)
        .unwrap()
        .versions
        .iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(listed, written);
    let depths: Vec<u64> = written
        .iter()
        .map(|id| f.record.causal_depth(id).unwrap())
        .collect();
    assert!(depths.windows(2).all(|w| w[0] < w[1]), "{depths:?}");
}

#[test]
fn state_at_time_and_at_heads() {
    let mut f = Fixture::new(10, "George");
    let george = f.patient.clone();
    let a = f
        .create(&george, Category::Allergies, allergy("a"))
        .unwrap();
    let t_after_a = f.now - 1;
    let heads_after_a = f.record.heads();
    f.write(
        &george,
        Payload::Amend {
            target: a,
            body: allergy("a2"),
        },
    )
    .unwrap();
    f.create(&george, Category::Allergies, allergy("b"))
        .unwrap();
    let v = f.record.viewer(&george.actor(), f.now);
    let now_state = current(&f.record, &v);
    assert_eq!(now_state.items.len(), 2);
    for past in [
        f.record.at_time(t_after_a),
        f.record.at_heads(&heads_after_a),
    ] {
        let s = current(&past, &past.viewer(&george.actor(), f.now));
        assert_eq!(s.items.len(), 1);
        assert_eq!(s.items[0].body, allergy("a"));
    }
}

#[test]
fn grant_validity_period_is_enforced() {
    let mut f = Fixture::new(11, "George");
    let locum = key(11, "Locum");
    let mut g = grant(&locum, Level::Write, &[], false, false);
    g.until = Some(f.now + 2_000);
    f.grant(g);
    f.create(
        &locum,
        Category::Problems,
        text_body(&[("problem", "Cough")]),
    )
    .unwrap();
    f.now += 10_000;
    assert!(matches!(
        f.create(
            &locum,
            Category::Problems,
            text_body(&[("problem", "Cold")])
        ),
        Err(Rejection::Access(AccessError::OutOfPeriod(_)))
    ));
    let v = f.record.viewer(&locum.actor(), f.now);
    assert_eq!(
        current(&f.record, &v).items.len(),
        1,
        "what was seen before expiry stays visible"
    );
}

#[test]
fn entries_since_and_author_chains_list_what_they_name() {
    let mut f = Fixture::new(2, "George");
    let g = f.patient.clone();
    let mary = key(2, "Mary");
    let grant_id = f.grant(grant(
        &mary,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    let a = f.create(&g, Category::VitalSigns, bp(120, 80)).unwrap();
    let b = f.create(&mary, Category::VitalSigns, bp(125, 82)).unwrap();
    let c = f.create(&g, Category::VitalSigns, bp(130, 85)).unwrap();
    let all: Vec<_> = f.record.entries().map(|e| e.id()).collect();
    assert_eq!(all.len(), 5);
    for n in 0..=all.len() + 2 {
        let since: Vec<_> = f.record.entries_since(n).map(|e| e.id()).collect();
        assert_eq!(since, all[n.min(all.len())..], "since {n}");
    }
    let admin = f.record.author_chain(&g.actor(), &None);
    assert_eq!(admin, [all[0], grant_id]);
    let vitals = Some(Category::VitalSigns);
    assert_eq!(f.record.author_chain(&g.actor(), &vitals), [a, c]);
    assert_eq!(f.record.author_chain(&mary.actor(), &vitals), [b]);
    assert!(f.record.author_chain(&mary.actor(), &None).is_empty());
}

#[test]
fn the_patient_still_amends_his_item_after_his_proxy_amended_it() {
    let mut f = Fixture::new(12, "George");
    let george = f.patient.clone();
    let mary = key(12, "Mary");
    let stranger = key(12, "Nurse");
    f.grant(grant(&mary, Level::Delete, &[], false, true));
    f.grant(grant(&stranger, Level::Delete, &[], false, false));
    let item = f
        .create(
            &george,
            Category::AboutMe,
            text_body(&[("thing-1", "I am deaf in one ear")]),
        )
        .unwrap();
    // Mary, George's proxy, amends it.
    let by_mary = f
        .write(
            &mary,
            Payload::Amend {
                target: item,
                body: text_body(&[("thing-1", "Deaf in the left ear")]),
            },
        )
        .unwrap()
        .id();
    // George amends Mary's version: the item is still his.
    let by_george = f
        .write(
            &george,
            Payload::Amend {
                target: by_mary,
                body: text_body(&[("thing-1", "Deaf in the left ear since 2019")]),
            },
        )
        .unwrap()
        .id();
    // Mary, as his proxy, may still amend George's latest version.
    f.write(
        &mary,
        Payload::Amend {
            target: by_george,
            body: text_body(&[("thing-1", "Deaf in the left ear (2019)")]),
        },
    )
    .unwrap();
    // A stranger with the delete level but no proxy right is refused on every version.
    for target in [item, by_mary, by_george] {
        assert_eq!(
            f.write(
                &stranger,
                Payload::Amend {
                    target,
                    body: text_body(&[("thing-1", "x")]),
                },
            )
            .unwrap_err(),
            Rejection::Access(AccessError::NotAuthorOrProxy(target))
        );
        assert_eq!(
            f.write(
                &stranger,
                Payload::Delete {
                    target,
                    reason: "x".into(),
                },
            )
            .unwrap_err(),
            Rejection::Access(AccessError::NotAuthorOrProxy(target))
        );
    }
    // George deletes the item through Mary's version too.
    f.write(
        &george,
        Payload::Delete {
            target: by_mary,
            reason: "no longer relevant".into(),
        },
    )
    .unwrap();
    let v = f.record.viewer(&george.actor(), f.now);
    assert_eq!(current(&f.record, &v).deleted, vec![item]);
}

#[test]
fn grant_status_names_each_state_once() {
    use cophr_protocol::GrantStatus;
    let mut f = Fixture::new(13, "George");
    let george = f.patient.clone();
    let mary = key(13, "Mary");
    let son = key(13, "Son");
    let locum = key(13, "Locum");
    let student = key(13, "Student");
    let sitter = key(13, "Sitter");
    let t0 = f.now;
    // Active: no period, nothing revoked.
    let marys = f.grant(grant(&mary, Level::Delete, &[], true, true));
    assert_eq!(
        f.record.grant_status(&marys, f.now),
        Some(GrantStatus::Active)
    );
    // Expired: after its `until`; active up to and at it.
    let mut g = grant(&locum, Level::Write, &[], false, false);
    g.until = Some(t0 + 60_000);
    let locums = f.grant(g);
    assert_eq!(
        f.record.grant_status(&locums, t0 + 60_000),
        Some(GrantStatus::Active)
    );
    assert_eq!(
        f.record.grant_status(&locums, t0 + 60_001),
        Some(GrantStatus::Expired)
    );
    // Not yet valid: before its `not_before`; active from it.
    let mut g = grant(&student, Level::View, &[], false, false);
    g.not_before = Some(t0 + 3_600_000);
    let students = f.grant(g);
    assert_eq!(
        f.record.grant_status(&students, f.now),
        Some(GrantStatus::NotYetValid)
    );
    assert_eq!(
        f.record.grant_status(&students, t0 + 3_600_000),
        Some(GrantStatus::Active)
    );
    // Mary delegates to her son; George then revokes Mary: hers is revoked, her son's
    // (never revoked itself) is parent-revoked.
    let sons = f
        .write(
            &mary,
            Payload::Grant(grant(
                &son,
                Level::View,
                &[Category::Allergies],
                false,
                false,
            )),
        )
        .unwrap()
        .id();
    assert_eq!(
        f.record.grant_status(&sons, f.now),
        Some(GrantStatus::Active)
    );
    let base = f.record.clone();
    f.write(
        &george,
        Payload::Revoke {
            grant: marys,
            category: None,
            reason: "moved away".into(),
        },
    )
    .unwrap();
    assert_eq!(
        f.record.grant_status(&marys, f.now),
        Some(GrantStatus::Revoked)
    );
    assert_eq!(
        f.record.grant_status(&sons, f.now),
        Some(GrantStatus::ParentRevoked)
    );
    assert!(f.record.grant_status(&sons, f.now).unwrap().has_ended());
    // Void: Mary delegates concurrently with the revocation (she had not seen it).
    let concurrent = base;
    let sitters = concurrent
        .prepare_as(
            &mary,
            Payload::Grant(grant(&sitter, Level::View, &[], false, false)),
            f.now,
            None,
        )
        .unwrap();
    f.record.apply(sitters.clone()).unwrap();
    assert_eq!(
        f.record.grant_status(&sitters.id(), f.now),
        Some(GrantStatus::Void)
    );
    // Not a grant: no status.
    let genesis = f.record.entries().next().unwrap().id();
    assert_eq!(f.record.grant_status(&genesis, f.now), None);
    // The stable names round-trip, through serde too.
    for s in GrantStatus::ALL {
        assert_eq!(s.name().parse::<GrantStatus>(), Ok(s));
        assert_eq!(
            serde_json::to_value(s).unwrap(),
            serde_json::json!(s.name())
        );
    }
    let names: Vec<&str> = GrantStatus::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        [
            "active",
            "not-yet-valid",
            "expired",
            "revoked",
            "parent-revoked",
            "void"
        ]
    );
}

#[test]
fn what_an_author_signed_is_read_from_the_signed_bytes_not_encoded_again() {
    let mut f = Fixture::new(41, "George");
    let g = f.patient.clone();
    f.create(&g, Category::VitalSigns, bp(120, 80)).unwrap();
    f.create(&g, Category::Allergies, allergy("nuts")).unwrap();
    for v in f.record.entries() {
        let signed = v.signed();
        let part = signed.signing_bytes();
        assert!(matches!(part, std::borrow::Cow::Borrowed(_)));
        assert_eq!(*part, signed.entry().signing_bytes()[..]);
        // Decoded from bytes (kept as they are, not copied) it is the same.
        let again = SignedEntry::decode_vec(signed.bytes().to_vec()).unwrap();
        assert_eq!(again.signing_bytes(), part);
        assert_eq!(again.clone().verify().map(|v| v.id()), Ok(v.id()));
    }
}

/// Stored bytes read back by their id decode as the entry they were (without checking
/// their form again), and bytes of any other entry, or damaged, are refused.
#[test]
fn stored_bytes_decode_only_as_their_own_id() {
    let mut f = Fixture::new(21, "George");
    let george = f.patient.clone();
    let a = f
        .create(&george, Category::VitalSigns, bp(120, 80))
        .unwrap();
    let b = f
        .create(&george, Category::VitalSigns, bp(121, 81))
        .unwrap();
    let bytes = f.record.get(&a).unwrap().signed().bytes().to_vec();
    let known = SignedEntry::decode_known(bytes.clone(), &a).unwrap();
    assert_eq!(known, SignedEntry::decode(&bytes).unwrap());
    assert_eq!(
        SignedEntry::decode_known(bytes.clone(), &b).err(),
        Some(cophr_protocol::entry::EntryError::WrongId)
    );
    let mut damaged = bytes;
    let at = damaged.len() - 70;
    damaged[at] ^= 1;
    assert_eq!(
        SignedEntry::decode_known(damaged, &a).err(),
        Some(cophr_protocol::entry::EntryError::WrongId)
    );
}

/// A record large enough to be folded on several threads (`fold::PARALLEL_FOLD_MIN`
/// items) gives the same state on any number of them as on one, for the patient and for a
/// grantee who sees one category: amended, deleted and annotated items, in two categories,
/// and the same record lean (its entries decoded from bytes when read).
#[test]
fn a_large_record_folds_the_same_on_several_threads_as_on_one() {
    use cophr_protocol::fold::{current_on, PARALLEL_FOLD_MIN};
    let mut f = Fixture::new(41, "George");
    let g = f.patient.clone();
    let nurse = key(41, "Nurse");
    f.grant(grant(
        &nurse,
        Level::View,
        &[Category::VitalSigns],
        false,
        false,
    ));
    let mut items = Vec::new();
    let mut i = 0usize;
    while items.len() < PARALLEL_FOLD_MIN + 200 {
        i += 1;
        let payload = match i % 20 {
            7 if !items.is_empty() => Payload::Amend {
                target: items[(i * 7) % items.len()],
                body: bp(130, 85),
            },
            13 if !items.is_empty() => Payload::Delete {
                target: items[(i * 11) % items.len()],
                reason: "entered in error".into(),
            },
            17 if !items.is_empty() => Payload::Annotate {
                target: items[(i * 3) % items.len()],
                text: "checked".into(),
            },
            n if n % 3 == 0 => Payload::Create {
                category: Category::Medications,
                body: text_body(&[("medication", "Metformin")]),
            },
            _ => Payload::Create {
                category: Category::VitalSigns,
                body: bp(100 + (i % 60) as i64, 70),
            },
        };
        let created = matches!(payload, Payload::Create { .. });
        match f.write(&g, payload) {
            Ok(v) if created => items.push(v.id()),
            Ok(_) => {}
            // A second delete of a deleted item, or an amend of one: refused, as it should be.
            Err(_) => {}
        }
    }
    let mut lean = f.record.clone();
    lean.set_source(std::sync::Arc::new(cophr_protocol::testkit::MemSource::of(
        f.record.entries(),
    )));
    for actor in [g.actor(), nurse.actor()] {
        let v = f.record.viewer(&actor, f.now);
        let one = current_on(&f.record, &v, 1);
        assert!(!one.items.is_empty() && !one.deleted.is_empty());
        for threads in [2, 3, 8] {
            assert_eq!(current_on(&f.record, &v, threads), one, "{threads} threads");
            assert_eq!(
                current_on(&lean, &v, threads),
                one,
                "{threads} threads, lean"
            );
        }
        assert_eq!(current(&f.record, &v), one);
    }
}
