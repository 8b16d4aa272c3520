//! Property tests: delegation never widens; folds do not depend on arrival order;
//! state at a time equals the state the record had then; tampering is always caught.

use std::collections::BTreeSet;

use cophr_protocol::access::{Grant, Level, Scope};
use cophr_protocol::fold::{current, item, ItemState};
use cophr_protocol::record::{Record, Rejection, Status};
use cophr_protocol::testkit::{bp, grant, key, text_body, Fixture, MemSource};
use cophr_protocol::{Category, EntryId, Keypair, Payload, SignedEntry, Verified};
use proptest::prelude::*;

fn arb_level() -> impl Strategy<Value = Level> {
    prop::sample::select(Level::ALL.to_vec())
}

fn arb_scope() -> impl Strategy<Value = Scope> {
    prop_oneof![
        Just(Scope::All),
        prop::collection::btree_set(prop::sample::select(Category::BUILT_IN.to_vec()), 0..6)
            .prop_map(Scope::Only),
    ]
}

fn arb_grant() -> impl Strategy<Value = Grant> {
    (
        arb_level(),
        arb_scope(),
        prop::option::of(0u64..100),
        prop::option::of(100u64..200),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(level, scope, not_before, until, audit, delegate)| Grant {
            grantee: key(0, "x").actor(),
            level,
            scope,
            not_before,
            until,
            audit,
            delegate,
            label: None,
            requires: None,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// If a child grant is accepted under a parent, every right it gives the parent has.
    #[test]
    fn delegation_never_widens(parent in arb_grant(), child in arb_grant()) {
        if child.narrows(&parent).is_ok() {
            for c in Category::BUILT_IN.iter() {
                for l in Level::ALL {
                    prop_assert!(!child.allows(l, c) || parent.allows(l, c));
                }
            }
            prop_assert!(!child.audit || parent.audit);
            for t in [0u64, 50, 99, 100, 150, 199, 250] {
                prop_assert!(!child.in_period(t) || parent.in_period(t));
            }
        }
    }

    /// Chains of delegation in a record: whoever is at the end sees no category the
    /// start of the chain could not.
    #[test]
    fn delegated_viewers_see_a_subset(grants in prop::collection::vec(arb_grant(), 1..4)) {
        let mut f = Fixture::new(42, "George");
        let people: Vec<Keypair> = (0..grants.len()).map(|i| key(42, &format!("p{i}"))).collect();
        for (i, g) in grants.iter().enumerate() {
            let mut g = g.clone();
            g.grantee = people[i].actor();
            g.not_before = None;
            g.until = None;
            let issuer = if i == 0 { f.patient.clone() } else { people[i - 1].clone() };
            if f.write(&issuer, Payload::Grant(g)).is_err() {
                break;
            }
        }
        for c in Category::BUILT_IN.iter() {
            for w in people.windows(2) {
                let upper = f.record.viewer(&w[0].actor(), f.now).level_on(c);
                let lower = f.record.viewer(&w[1].actor(), f.now).level_on(c);
                prop_assert!(lower <= upper, "{c}: {lower:?} > {upper:?}");
            }
        }
    }
}

/// A random workload: actors writing on two replicas that sometimes merge.
#[derive(Debug, Clone)]
struct Op {
    actor: usize,
    kind: u8,
    pick: usize,
    merge: bool,
}

fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        (0usize..4, 0u8..6, any::<usize>(), prop::bool::weighted(0.2)).prop_map(
            |(actor, kind, pick, merge)| Op {
                actor,
                kind,
                pick,
                merge,
            },
        ),
        1..40,
    )
}

struct World {
    f: Fixture,
    actors: Vec<Keypair>,
    replicas: [Record; 2],
    all: Vec<Verified>,
    /// (time, patient's view of the state at that time) snapshots of replica 0 when merged.
    snapshots: Vec<(u64, cophr_protocol::fold::State)>,
    nurse_grant: EntryId,
}

fn sync(into: &mut Record, from: &Record) {
    for e in from.entries() {
        let _ = into.apply_known(e.clone());
    }
}

fn run(ops: &[Op]) -> World {
    let mut f = Fixture::new(7, "George");
    let mary = key(7, "Mary");
    let nurse = key(7, "Nurse");
    let viewer = key(7, "Viewer");
    f.grant(grant(&mary, Level::Delete, &[], true, true));
    let nurse_grant = f.grant(grant(
        &nurse,
        Level::Write,
        &[Category::VitalSigns, Category::Problems],
        false,
        false,
    ));
    f.grant(grant(
        &viewer,
        Level::Annotate,
        &[Category::VitalSigns],
        false,
        false,
    ));
    let actors = vec![f.patient.clone(), mary, nurse, viewer];
    let replicas = [f.record.clone(), f.record.clone()];
    let mut w = World {
        all: f.record.entries().collect(),
        f,
        actors,
        replicas,
        snapshots: Vec::new(),
        nurse_grant,
    };
    for op in ops {
        // Each actor writes on one replica (one key, one device: no forks).
        let r = op.actor % 2;
        let rec = &w.replicas[r];
        let items: Vec<EntryId> = rec
            .entries()
            .filter(|e| {
                matches!(
                    e.entry().payload,
                    Payload::Create { .. } | Payload::Amend { .. }
                )
            })
            .map(|e| e.id())
            .collect();
        let target = if items.is_empty() {
            None
        } else {
            Some(items[op.pick % items.len()])
        };
        let payload = match (op.kind, target) {
            (0, _) | (1, None) | (2, None) | (3, None) => Payload::Create {
                category: Category::VitalSigns,
                body: bp(100 + (op.pick % 80) as i64, 70),
            },
            (1, Some(t)) => Payload::Amend {
                target: t,
                body: bp(120, 80),
            },
            (2, Some(t)) => Payload::Delete {
                target: t,
                reason: "error".into(),
            },
            (3, Some(t)) => Payload::Annotate {
                target: t,
                text: "seen".into(),
            },
            (4, _) => Payload::Create {
                category: Category::Problems,
                body: text_body(&[("problem", "Hypertension")]),
            },
            _ => Payload::Revoke {
                grant: w.nurse_grant,
                category: None,
                reason: "ended".into(),
            },
        };
        w.f.now += 1000;
        if let Ok(all) = rec.prepare_all(&w.actors[op.actor], payload, w.f.now, None) {
            for v in all {
                if w.replicas[r].apply(v.clone()).is_ok() {
                    w.all.push(v);
                }
            }
        }
        if op.merge {
            let (a, b) = w.replicas.split_at_mut(1);
            sync(&mut a[0], &b[0]);
            sync(&mut b[0], &a[0]);
            let rec = &w.replicas[0];
            // Merged: the state at this time is recorded for the at-time property.
            let t = w.f.now;
            w.f.now += 1000;
            w.snapshots
                .push((t, current(rec, &rec.viewer(&rec.patient(), t))));
        }
    }
    let (a, b) = w.replicas.split_at_mut(1);
    sync(&mut a[0], &b[0]);
    sync(&mut b[0], &a[0]);
    w
}

/// Applies entries in the given order, buffering any whose parents have not arrived.
fn deliver(base: Record, entries: Vec<Verified>) -> Record {
    let mut r = base;
    let mut pending = entries;
    loop {
        let before = pending.len();
        let mut left = Vec::new();
        for e in pending {
            match r.apply_known(e.clone()) {
                Err(Rejection::MissingParents(_)) | Err(Rejection::Backlink(_)) => left.push(e),
                _ => {}
            }
        }
        if left.is_empty() || left.len() == before {
            return r;
        }
        pending = left;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// The fold of a record does not depend on the order its entries arrived in.
    #[test]
    fn fold_is_independent_of_arrival_order(ops in arb_ops(), seed in any::<u64>()) {
        let w = run(&ops);
        let reference = &w.replicas[0];
        let mut shuffled: Vec<Verified> = reference.entries().collect();
        let genesis = shuffled.remove(0);
        // Deterministic shuffle from the seed.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut base = Record::new(reference.id());
        base.apply_known(genesis).unwrap();
        let other = deliver(base, shuffled);
        prop_assert_eq!(other.len(), reference.len());
        for a in &w.actors {
            let t = w.f.now;
            prop_assert_eq!(
                current(reference, &reference.viewer(&a.actor(), t)),
                current(&other, &other.viewer(&a.actor(), t))
            );
        }
        // Both replicas converged to the same state too.
        let p = w.f.patient.actor();
        prop_assert_eq!(
            current(&w.replicas[0], &w.replicas[0].viewer(&p, w.f.now)),
            current(&w.replicas[1], &w.replicas[1].viewer(&p, w.f.now))
        );
        prop_assert!(w.all.len() <= reference.len() + 1);
    }

    /// One item folded alone is exactly its place in the whole record's fold, for every
    /// item and every viewer.
    #[test]
    fn one_item_folds_as_in_the_whole_record(ops in arb_ops()) {
        let w = run(&ops);
        let r = &w.replicas[0];
        for a in w.actors.iter().chain([&w.f.patient]) {
            let v = r.viewer(&a.actor(), w.f.now);
            let state = current(r, &v);
            let mut seen = (0, 0);
            for e in r.entries() {
                match item(r, &v, &e.id()) {
                    Some(ItemState::Current(i)) => {
                        prop_assert!(state.items.contains(&*i));
                        seen.0 += 1;
                    }
                    Some(ItemState::Deleted) => {
                        prop_assert!(state.deleted.contains(&e.id()));
                        seen.1 += 1;
                    }
                    Some(ItemState::Locked) => prop_assert!(state.locked.contains(&e.id())),
                    None => {
                        prop_assert!(!state.items.iter().any(|i| i.id == e.id()));
                        prop_assert!(!state.deleted.contains(&e.id()));
                    }
                }
            }
            prop_assert_eq!(seen, (state.items.len(), state.deleted.len()));
        }
    }

    /// The state at a past time equals the state the (merged) record had at that time.
    #[test]
    fn state_at_time_equals_the_prefix(ops in arb_ops()) {
        let w = run(&ops);
        let r = &w.replicas[0];
        for (t, snap) in &w.snapshots {
            let past = r.at_time(*t);
            let got = current(&past, &past.viewer(&r.patient(), *t));
            // Entries written after t on the other replica never appear in the past state.
            for item in &got.items {
                prop_assert!(item.updated <= *t);
            }
            prop_assert_eq!(&got, snap);
        }
    }

    /// Changing any byte of an encoded entry is always detected.
    #[test]
    fn any_tampered_entry_is_rejected(pos in any::<prop::sample::Index>(), bit in 0u8..8, body in "[a-z]{1,40}") {
        let f = Fixture::new(9, "George");
        let v = f.record.prepare(&f.patient, Payload::Create { category: Category::AboutMe, body: text_body(&[("thing-1", &body)]) }, None, f.now, None).unwrap();
        let mut bytes = v.signed().bytes().to_vec();
        let i = pos.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let accepted = SignedEntry::decode(&bytes).and_then(|e| e.verify());
        prop_assert!(accepted.is_err(), "tampered byte {i} accepted");
    }
}

#[test]
fn scope_sets_compare_by_subset() {
    let a = Scope::Only(BTreeSet::from([Category::VitalSigns]));
    let b = Scope::Only(BTreeSet::from([Category::VitalSigns, Category::Problems]));
    assert!(a.within(&b) && !b.within(&a) && b.within(&Scope::All) && !Scope::All.within(&b));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]

    /// A replica holding only the administrative stream and some categories' streams
    /// validates every entry it holds without needing (or being told of) any other entry.
    #[test]
    fn a_partial_replica_needs_only_its_streams(ops in arb_ops()) {
        let w = run(&ops);
        let full = &w.replicas[0];
        for keep in [Category::VitalSigns, Category::Problems] {
            let mut partial = Record::new(full.id());
            for e in full.entries() {
                let s = full.stream_of(&e.id()).cloned().flatten();
                if s.is_none() || s.as_ref() == Some(&keep) {
                    for p in &e.entry().parents {
                        let ps = full.stream_of(p).cloned().flatten();
                        prop_assert!(ps.is_none() || ps.as_ref() == Some(&keep));
                    }
                    prop_assert!(partial.apply_known(e.clone()).is_ok());
                }
            }
            // Statuses agree with the full record for every entry held.
            for e in partial.entries() {
                prop_assert_eq!(partial.status(&e.id()), full.status(&e.id()));
            }
        }
    }
}

/// Mary (delegate right) makes the nurse her proxy while George revokes, and the nurse
/// amends Mary's reading under the nurse's own grant, as Mary's proxy. `variant`: 0 George
/// revokes Mary's grant concurrently with the proxy grant; 1 George revokes the proxy grant
/// concurrently with the amend; 2 George revokes the proxy grant after seeing the amend.
/// Returns the record before the two branches, both branches, and the amend's id.
fn proxy_case(variant: u8, noise: usize) -> (Record, Vec<Verified>, Vec<Verified>, EntryId) {
    let mut f = Fixture::new(12, "George");
    let george = f.patient.clone();
    let mary = key(12, "Mary");
    let nurse = key(12, "Nurse");
    let g1 = f.grant(grant(&mary, Level::Write, &[], false, true));
    let own = f.grant(grant(
        &nurse,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    let reading = f.create(&mary, Category::VitalSigns, bp(150, 95)).unwrap();
    let proxy = |f: &Fixture| {
        f.record
            .prepare_as(
                &mary,
                Payload::Grant(grant(
                    &nurse,
                    Level::Write,
                    &[Category::VitalSigns],
                    false,
                    true,
                )),
                f.now,
                None,
            )
            .unwrap()
    };
    let amend = |r: &Record, now: u64| {
        r.prepare(
            &nurse,
            Payload::Amend {
                target: reading,
                body: bp(140, 90),
            },
            Some(own),
            now,
            None,
        )
        .unwrap()
    };
    let revoke = |r: &Record, grant: EntryId, now: u64| {
        r.prepare_all(
            &george,
            Payload::Revoke {
                grant,
                category: None,
                reason: "x".into(),
            },
            now,
            None,
        )
        .unwrap()
    };
    let g2 = proxy(&f);
    if variant != 0 {
        f.record.apply(g2.clone()).unwrap();
        f.now += 1000;
    }
    if variant == 2 {
        let a = amend(&f.record, f.now);
        f.record.apply(a).unwrap();
        f.now += 1000;
    }
    let base = f.record.clone();
    // George's branch: the revocation, then some readings of his own.
    let mut george_side = base.clone();
    let mut a_branch = revoke(&base, if variant == 0 { g1 } else { g2.id() }, f.now);
    for v in &a_branch {
        george_side.apply(v.clone()).unwrap();
    }
    for i in 0..noise {
        let v = george_side
            .prepare(
                &george,
                Payload::Create {
                    category: Category::VitalSigns,
                    body: bp(120 + i as i64, 80),
                },
                None,
                f.now + 1 + i as u64,
                None,
            )
            .unwrap();
        george_side.apply(v.clone()).unwrap();
        a_branch.push(v);
    }
    // The nurse's branch: (the proxy grant and) the amend.
    let mut nurse_side = base.clone();
    let mut b_branch = Vec::new();
    if variant == 0 {
        nurse_side.apply(g2.clone()).unwrap();
        b_branch.push(g2);
    }
    let the_amend = if variant == 2 {
        base.entries().last().unwrap().id()
    } else {
        let a = amend(&nurse_side, f.now + 1);
        b_branch.push(a.clone());
        a.id()
    };
    (base, a_branch, b_branch, the_amend)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Whether an amend made as another author's proxy is accepted, and whether it is in
    /// effect, depends only on the set of entries held, never on their arrival order: a
    /// proxy grant voided or revoked concurrently leaves the amend kept but void.
    #[test]
    fn proxy_rights_do_not_depend_on_arrival_order(variant in 0u8..3, noise in 0usize..3, seed in any::<u64>()) {
        let (base, a, b, amend) = proxy_case(variant, noise);
        let mut all: Vec<Verified> = a.iter().chain(b.iter()).cloned().collect();
        let reference = deliver(base.clone(), all.clone());
        prop_assert_eq!(reference.len(), base.len() + all.len());
        let void = matches!(reference.status(&amend), Some(Status::Void { .. }));
        prop_assert_eq!(void, variant != 2);
        let mut s = seed | 1;
        for i in (1..all.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            all.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let other = deliver(base.clone(), all);
        prop_assert_eq!(other.len(), reference.len());
        prop_assert_eq!(
            matches!(other.status(&amend), Some(Status::Void { .. })),
            void
        );
        for e in reference.entries() {
            prop_assert_eq!(
                matches!(reference.status(&e.id()), Some(Status::Valid)),
                matches!(other.status(&e.id()), Some(Status::Valid))
            );
        }
        let p = reference.patient();
        prop_assert_eq!(
            current(&reference, &reference.viewer(&p, u64::MAX / 2)),
            current(&other, &other.viewer(&p, u64::MAX / 2))
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// A lean record — its record data read from a source when asked — answers exactly as
    /// the full record: the same entries, statuses, folds for every viewer, single items,
    /// histories and states at past times; whether it was lean from the first entry or
    /// made lean after. It keeps only administrative entries in memory.
    #[test]
    fn a_lean_record_answers_as_the_full_one(ops in arb_ops()) {
        let w = run(&ops);
        let full = &w.replicas[0];
        let source = std::sync::Arc::new(MemSource::of(full.entries()));
        let mut grown = Record::new(full.id());
        grown.set_source(source.clone());
        for e in full.entries() {
            grown.apply_known(e).unwrap();
        }
        let mut made = full.clone();
        made.set_source(source.clone());
        let admin = full
            .entries()
            .filter(|e| full.stream_of(&e.id()) == Some(&None) || !e.entry().payload.is_data())
            .count();
        for lean in [&grown, &made] {
            prop_assert!(lean.is_lean());
            prop_assert_eq!(lean.len(), full.len());
            prop_assert_eq!(lean.held_in_memory(), admin);
            prop_assert_eq!(
                lean.entries().map(|e| e.id()).collect::<Vec<_>>(),
                full.entries().map(|e| e.id()).collect::<Vec<_>>()
            );
            for e in full.entries() {
                prop_assert_eq!(lean.status(&e.id()), full.status(&e.id()));
                prop_assert_eq!(lean.get(&e.id()), Some(e.clone()));
            }
            for a in w.actors.iter().chain([&w.f.patient]) {
                let (vf, vl) = (full.viewer(&a.actor(), w.f.now), lean.viewer(&a.actor(), w.f.now));
                prop_assert_eq!(current(full, &vf), current(lean, &vl));
                for e in full.entries() {
                    prop_assert_eq!(item(full, &vf, &e.id()), item(lean, &vl, &e.id()));
                    prop_assert_eq!(
                        cophr_protocol::fold::history(full, &vf, &e.id()),
                        cophr_protocol::fold::history(lean, &vl, &e.id())
                    );
                }
            }
            for (t, snap) in &w.snapshots {
                let past = lean.at_time(*t);
                prop_assert!(past.is_lean());
                prop_assert_eq!(&current(&past, &past.viewer(&full.patient(), *t)), snap);
            }
        }
    }
}

/// `n` blood pressures written by the fixture's patient, one item each.
fn readings(f: &mut Fixture, n: i64) -> Vec<EntryId> {
    let g = f.patient.clone();
    (0..n)
        .map(|i| {
            let p = Payload::Create {
                category: Category::VitalSigns,
                body: bp(120 + i, 80),
            };
            f.write(&g, p).unwrap().id()
        })
        .collect()
}

/// The fixture's record made lean over a source holding its entries (the source, to count
/// or spoil its reads).
fn lean_of(f: &Fixture) -> (std::sync::Arc<MemSource>, Record) {
    let source = std::sync::Arc::new(MemSource::of(f.record.entries()));
    let mut lean = f.record.clone();
    lean.set_source(source.clone());
    (source, lean)
}

/// A lean record shows nothing its source hands back under another entry's id, and
/// what its source lost is missing, not made up.
#[test]
fn a_lean_record_never_shows_what_its_source_got_wrong() {
    let mut f = Fixture::new(3, "George");
    let g = f.patient.clone();
    let a = f
        .write(
            &g,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(120, 80),
            },
        )
        .unwrap()
        .id();
    let b = f
        .write(
            &g,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(150, 95),
            },
        )
        .unwrap()
        .id();
    let (source, lean) = lean_of(&f);
    assert_eq!(lean.held_in_memory(), f.record.len() - 2);
    let before = source.loads();
    assert_eq!(lean.get(&a).map(|e| e.id()), Some(a));
    assert_eq!(
        source.loads(),
        before + 1,
        "record data is read from the source"
    );
    // b's place now holds a's entry: refused, never shown as b.
    source.put_as(b, lean.get(&a).unwrap());
    assert_eq!(lean.get(&b), None);
    source.forget(&a);
    assert_eq!(lean.get(&a), None);
    // Administrative entries never need the source.
    let genesis = f.record.entries().next().unwrap().id();
    let loads = source.loads();
    assert!(lean.get(&genesis).is_some());
    assert_eq!(source.loads(), loads);
}

/// A lean record's fold settles what is shown without reading any entry: each shown
/// item's data is read from the source when its body is first read, once, and is what the
/// full record shows.
#[test]
fn a_lean_fold_reads_an_items_data_only_when_its_body_is_read() {
    let mut f = Fixture::new(4, "George");
    let g = f.patient.clone();
    let mut ids = Vec::new();
    for i in 0..20 {
        let category = if i % 2 == 0 {
            Category::VitalSigns
        } else {
            Category::Medications
        };
        let body = if i % 2 == 0 {
            bp(100 + i, 70)
        } else {
            text_body(&[("medication", "Metformin")])
        };
        ids.push(
            f.write(&g, Payload::Create { category, body })
                .unwrap()
                .id(),
        );
    }
    let (source, lean) = lean_of(&f);
    let v = lean.viewer(&g.actor(), f.now);
    let before = source.loads();
    let state = current(&lean, &v);
    assert_eq!(state.items.len(), 20);
    assert_eq!(source.loads(), before, "folding read no entry");
    // One category's bodies read: only those are loaded, each once.
    let vitals: Vec<_> = state.in_category(&Category::VitalSigns).collect();
    for i in &vitals {
        assert!(!i.body.unreadable());
        let _ = i.body.to_json();
    }
    assert_eq!(source.loads(), before + vitals.len());
    let _ = vitals[0].body.to_json();
    assert_eq!(
        vitals[0].body.entry().map(|e| e.id()),
        Some(vitals[0].current),
        "the body's entry is the version in effect"
    );
    assert_eq!(source.loads(), before + vitals.len(), "a body is read once");
    // And the whole state is the full record's.
    assert_eq!(
        state,
        current(&f.record, &f.record.viewer(&g.actor(), f.now))
    );
    let one = item(&lean, &v, &ids[3]);
    let loads = source.loads();
    let Some(ItemState::Current(one)) = one else {
        panic!("item 3 is current");
    };
    assert_eq!(source.loads(), loads, "folding one item read no entry");
    assert_eq!(one.body.to_json()["medication"], "Metformin");
}

/// One item's history, in a lean record, reads that item's entries once each, and nothing
/// of the rest of the record (no fold of the whole record to find its version in effect).
#[test]
fn one_items_history_reads_only_its_own_entries_once() {
    let mut f = Fixture::new(6, "George");
    let g = f.patient.clone();
    let ids = readings(&mut f, 10);
    // Every item amended once; the one asked about twice, and annotated.
    let mut amends = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let p = Payload::Amend {
            target: *id,
            body: bp(130 + i as i64, 85),
        };
        amends.push(f.write(&g, p).unwrap().id());
    }
    let asked = ids[4];
    let last = amends[4];
    let amend = f
        .write(
            &g,
            Payload::Amend {
                target: last,
                body: bp(111, 77),
            },
        )
        .unwrap()
        .id();
    let note = f
        .write(
            &g,
            Payload::Annotate {
                target: amend,
                text: "checked".into(),
            },
        )
        .unwrap()
        .id();
    let (source, lean) = lean_of(&f);
    let v = lean.viewer(&g.actor(), f.now);
    let before = source.loads();
    let h = cophr_protocol::fold::history(&lean, &v, &amend).expect("its history");
    assert_eq!(h.item, asked);
    assert_eq!(h.versions.len(), 4, "create, two amends, a note");
    assert_eq!(
        h.versions
            .iter()
            .filter(|x| x.current)
            .map(|x| x.id)
            .collect::<Vec<_>>(),
        vec![amend]
    );
    // Each version and the note once, and the two amends once more to settle which
    // version is in effect; nothing of the other nine items.
    assert_eq!(source.loads() - before, 4 + 2, "reads for a history of 4");
    // Asked by its note: the same history.
    assert_eq!(
        cophr_protocol::fold::history(&lean, &v, &note).as_ref(),
        Some(&h)
    );
    assert_eq!(
        h,
        cophr_protocol::fold::history(&f.record, &f.record.viewer(&g.actor(), f.now), &amend)
            .unwrap()
    );
}

/// An item whose data its lean record's source cannot read (lost, or another entry in its
/// place) is never shown as an item without data: its body says it is unreadable and the
/// item refuses to serialize.
#[test]
fn an_item_whose_data_cannot_be_read_is_not_shown_as_empty() {
    let mut f = Fixture::new(5, "George");
    let g = f.patient.clone();
    let ids = readings(&mut f, 3);
    let (source, lean) = lean_of(&f);
    source.forget(&ids[0]);
    source.put_as(ids[1], f.record.get(&ids[2]).unwrap());
    let v = lean.viewer(&g.actor(), f.now);
    let state = current(&lean, &v);
    let shown = |id: &EntryId| state.items.iter().find(|i| i.id == *id).unwrap();
    for bad in &ids[..2] {
        let i = shown(bad);
        assert!(i.body.unreadable(), "{bad}");
        assert_eq!(i.body.to_json(), serde_json::Value::Null);
        let err = serde_json::to_string(i).expect_err("an unreadable item does not serialize");
        assert!(err.to_string().contains("could not be read"), "{err}");
    }
    let good = shown(&ids[2]);
    assert!(!good.body.unreadable());
    assert!(serde_json::to_string(good).is_ok());
    assert!(
        serde_json::to_string(&state).is_err(),
        "nor does a state holding one"
    );
}

/// The entries of `full` that `keep` selects, replayed one by one into a new record.
fn replayed(full: &Record, keep: impl Fn(&Verified) -> bool) -> Record {
    let mut r = Record::new(full.id());
    for e in full.entries().filter(|e| keep(e)) {
        r.apply_known(e).expect("a closed subset re-applies");
    }
    r
}

/// Everything a reader can ask of two records answers the same.
fn answers_alike(got: &Record, want: &Record, w: &World, now: u64) -> Result<(), TestCaseError> {
    let ids: Vec<EntryId> = want.entries().map(|e| e.id()).collect();
    prop_assert_eq!(
        got.entries().map(|e| e.id()).collect::<Vec<_>>(),
        ids.clone()
    );
    prop_assert_eq!(got.len(), want.len());
    prop_assert_eq!(got.heads(), want.heads());
    prop_assert_eq!(got.streams(), want.streams());
    for s in want.streams() {
        prop_assert_eq!(got.stream_heads(&s), want.stream_heads(&s));
        for a in w.actors.iter() {
            prop_assert_eq!(
                got.author_chain(&a.actor(), &s),
                want.author_chain(&a.actor(), &s)
            );
        }
    }
    for id in &ids {
        prop_assert_eq!(got.status(id), want.status(id), "status of {}", id);
        prop_assert_eq!(got.grant_status(id, now), want.grant_status(id, now));
        prop_assert_eq!(got.annotations_of(id), want.annotations_of(id));
        for other in ids.iter().step_by(3) {
            prop_assert_eq!(got.in_past(other, id), want.in_past(other, id));
        }
    }
    for a in w.actors.iter() {
        let (vg, vw) = (got.viewer(&a.actor(), now), want.viewer(&a.actor(), now));
        prop_assert_eq!(current(got, &vg), current(want, &vw));
        prop_assert_eq!(got.grants_of(&a.actor()), want.grants_of(&a.actor()));
        for id in &ids {
            prop_assert_eq!(
                cophr_protocol::fold::history(got, &vg, id),
                cophr_protocol::fold::history(want, &vw, id)
            );
        }
    }
    // Both take the same next entry.
    let p = Payload::Create {
        category: Category::VitalSigns,
        body: bp(101, 71),
    };
    prop_assert_eq!(
        got.prepare(&w.f.patient, p.clone(), None, now, None)
            .map(|v| v.id()),
        want.prepare(&w.f.patient, p, None, now, None)
            .map(|v| v.id())
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// A record at a past time or causal position — built from the record's own indexes,
    /// without reading or checking entries again — answers exactly as its entries replayed
    /// one by one into a new record: entries, heads, chains, statuses (revocations after
    /// the cut no longer void anything), grants, folds and histories for every viewer,
    /// causal order, and the next entry written on it; for a full and a lean record.
    #[test]
    fn a_past_record_answers_as_its_entries_replayed(ops in arb_ops()) {
        let w = run(&ops);
        let full = &w.replicas[0];
        let mut lean = full.clone();
        lean.set_source(std::sync::Arc::new(MemSource::of(full.entries())));
        let mut times: Vec<u64> = full.entries().map(|e| e.entry().time).collect();
        times.sort();
        times.dedup();
        let step = (times.len() / 6).max(1);
        for t in times.iter().step_by(step).chain(times.last()) {
            let want = replayed(full, |e| e.entry().time <= *t);
            answers_alike(&full.at_time(*t), &want, &w, *t)?;
            answers_alike(&lean.at_time(*t), &want, &w, *t)?;
        }
        let ids: Vec<EntryId> = full.entries().map(|e| e.id()).collect();
        let step = (ids.len() / 4).max(1);
        for pair in ids.chunks(step).map(|c| [c[0], *c.last().expect("a chunk")]) {
            let want = replayed(full, |e| pair.iter().any(|h| full.in_past(&e.id(), h)));
            answers_alike(&full.at_heads(&pair), &want, &w, w.f.now)?;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    /// A lean record restored from its snapshot answers exactly as the record it was taken
    /// of — entries, heads, chains, statuses, grants, folds, histories, the next entry —
    /// and goes on taking the same entries; a damaged snapshot or one of another record
    /// is refused, never half restored.
    #[test]
    fn a_restored_snapshot_answers_as_the_record(ops in arb_ops(), cut in any::<prop::sample::Index>(), flip in any::<prop::sample::Index>()) {
        let w = run(&ops);
        let full = &w.replicas[0];
        let all: Vec<Verified> = full.entries().collect();
        let source = std::sync::Arc::new(MemSource::of(all.iter().cloned()));
        // Snapshot part-way (then apply the rest to both), and whole.
        for n in [cut.index(all.len()).max(1), all.len()] {
        let mut lean = Record::new(full.id());
        lean.set_source(source.clone());
        for e in &all[..n] {
            lean.apply_known(e.clone()).unwrap();
        }
        let snap = lean.snapshot().unwrap();
        let mut restored = Record::restore(full.id(), &snap, source.clone()).unwrap();
        prop_assert!(restored.is_lean());
        answers_alike(&restored, &lean, &w, w.f.now)?;
        for e in &all[n..] {
            prop_assert_eq!(restored.apply_known(e.clone()).is_ok(), lean.apply_known(e.clone()).is_ok());
        }
        answers_alike(&restored, &lean, &w, w.f.now)?;
        answers_alike(&restored, full, &w, w.f.now)?;
        }
        let mut lean = full.clone();
        lean.set_source(source.clone());
        let snap = lean.snapshot().unwrap();
        let mut damaged = snap.clone();
        let at = flip.index(damaged.len());
        damaged[at] ^= 0x20;
        prop_assert!(Record::restore(full.id(), &damaged, source.clone()).is_err());
        prop_assert!(Record::restore(full.id(), &snap[..snap.len() - 1], source.clone()).is_err());
        let other = Fixture::new(8, "Someone else").record.id();
        prop_assert_eq!(
            Record::restore(other, &snap, source.clone()).err(),
            Some(cophr_protocol::record::SnapshotError::WrongRecord)
        );
        prop_assert_eq!(full.snapshot().err(), Some(cophr_protocol::record::SnapshotError::NotLean));
    }
}

/// A snapshot keeps a void entry void: a nurse's entry written concurrently with the
/// revocation of her grant stays without effect in the restored record, and the state
/// each reader sees is the same.
#[test]
fn a_snapshot_keeps_void_entries_void() {
    let mut f = Fixture::new(11, "George");
    let nurse = key(11, "Nurse");
    let g = f.grant(grant(
        &nurse,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    f.create(&nurse, Category::VitalSigns, bp(120, 80)).unwrap();
    // The nurse writes on her replica while George revokes her grant on his.
    let mut hers = f.record.clone();
    let late = hers
        .prepare_as(
            &nurse,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(130, 85),
            },
            f.now,
            None,
        )
        .unwrap();
    hers.apply(late.clone()).unwrap();
    let george = f.patient.clone();
    f.write(
        &george,
        Payload::Revoke {
            grant: g,
            category: None,
            reason: "left".into(),
        },
    )
    .unwrap();
    f.record.apply(late.clone()).unwrap();
    assert!(matches!(
        f.record.status(&late.id()),
        Some(Status::Void { .. })
    ));
    let mut lean = f.record.clone();
    lean.set_source(std::sync::Arc::new(MemSource::of(f.record.entries())));
    let snap = lean.snapshot().unwrap();
    let restored = Record::restore(
        lean.id(),
        &snap,
        std::sync::Arc::new(MemSource::of(f.record.entries())),
    )
    .unwrap();
    for e in f.record.entries() {
        assert_eq!(
            restored.status(&e.id()),
            f.record.status(&e.id()),
            "{}",
            e.id()
        );
    }
    for who in [&george, &nurse] {
        let now = f.now;
        assert_eq!(
            current(&restored, &restored.viewer(&who.actor(), now)),
            current(&f.record, &f.record.viewer(&who.actor(), now))
        );
    }
}

/// What a payload decides by, for comparing a whole record's answer with its admission
/// part's: the ids prepared, or the refusal.
fn prepared_ids(r: &Result<Vec<Verified>, Rejection>) -> Result<Vec<EntryId>, Rejection> {
    r.clone().map(|v| v.iter().map(Verified::id).collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// A record's admission part (`Record::admission`: the administrative entries, the
    /// heads and each chain's last entry, no history) decides every entry it decides at
    /// all exactly as the whole record: the rest of a random record arriving in order, and
    /// new creates by the patient, a carer, a nurse (revoked in some workloads) and a
    /// viewer who may not write, in categories some may and some may not write. Whatever
    /// it cannot decide it says so (`NeedsWholeRecord`), and it always decides a create
    /// by the patient. The part decides alike after being written down as a snapshot and
    /// restored.
    #[test]
    fn an_admission_part_decides_as_the_whole_record(ops in arb_ops(), cut in any::<prop::sample::Index>()) {
        let w = run(&ops);
        let full = &w.replicas[0];
        let all: Vec<Verified> = full.entries().collect();
        let source = std::sync::Arc::new(MemSource::of(all.iter().cloned()));
        let n = cut.index(all.len()).max(1);
        let mut whole = Record::new(full.id());
        whole.set_source(source.clone());
        for e in &all[..n] {
            whole.apply_known(e.clone()).unwrap();
        }
        // Taken, written down and restored, as a node keeps it between runs.
        let taken = whole.admission();
        let mut part = Record::restore(full.id(), &taken.snapshot().unwrap(), source.clone()).unwrap();
        prop_assert!(part.is_admission());
        prop_assert!(part.resident() <= whole.resident());
        prop_assert_eq!(part.len(), whole.len());
        for e in &all[n..] {
            let want = whole.apply_known(e.clone());
            match part.apply_known(e.clone()) {
                Err(Rejection::NeedsWholeRecord) => part = whole.admission(),
                got => prop_assert_eq!(got, want, "{:?}", e.entry().payload.kind()),
            }
        }
        let mut now = w.f.now;
        let payloads = [
            Payload::Create { category: Category::VitalSigns, body: bp(131, 85) },
            Payload::Create { category: Category::Problems, body: text_body(&[("problem", "Asthma")]) },
            Payload::Create { category: Category::Medications, body: text_body(&[("medication", "Salbutamol")]) },
            Payload::Create { category: Category::VitalSigns, body: text_body(&[("nonsense", "x")]) },
        ];
        for round in 0..2 {
            for (a, actor) in w.actors.iter().enumerate() {
                for p in &payloads {
                    now += 1000;
                    let want = whole.prepare_all(actor, p.clone(), now, None);
                    let got = part.prepare_all(actor, p.clone(), now, None);
                    if got == Err(Rejection::NeedsWholeRecord) {
                        prop_assert!(a != 0, "a create by the patient is decided by the part");
                        part = whole.admission();
                    } else {
                        prop_assert_eq!(prepared_ids(&got), prepared_ids(&want), "actor {} round {}", a, round);
                    }
                    for v in want.into_iter().flatten() {
                        source.put(v.clone());
                        let want = whole.apply(v.clone());
                        match part.apply(v) {
                            Err(Rejection::NeedsWholeRecord) => part = whole.admission(),
                            got => prop_assert_eq!(got, want),
                        }
                    }
                }
            }
            // The part goes on deciding after its own writes as the whole record does:
            // the next round starts from it, not from a new part.
        }
        prop_assert_eq!(part.heads(), whole.heads());
        prop_assert_eq!(part.len(), whole.len());
    }
}
