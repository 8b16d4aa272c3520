use super::*;
use crate::access::Level;
use crate::entry::Payload;
use crate::entry::Timestamp;
use crate::ids::ActorId;
use crate::ids::EntryId;
use crate::record::Record;
use crate::record::Status;
use crate::testkit::{bp, grant, key, text_body, Fixture};
use crate::Category;
use std::collections::BTreeMap;

/// Replicates `server` into `replica` as `actor` sees it, the way two nodes would.
/// Returns the number of round trips used.
fn sync(server: &Record, replica: &mut Record, actor: &ActorId, now: Timestamp) -> usize {
    let viewer = server.viewer(actor, now);
    let mut trips = 1;
    let differ = server.differing(&viewer, &replica.digests());
    if differ.is_empty() {
        return trips;
    }
    loop {
        trips += 1;
        let mine = replica.frontier();
        let ask: Frontier = differ
            .iter()
            .map(|s| (s.clone(), mine.get(s).cloned().unwrap_or_default()))
            .collect();
        let (entries, more, _) = server.entries_beyond(&viewer, &ask, 7, MAX_BATCH_BYTES);
        for e in entries {
            replica
                .apply(e.clone())
                .expect("served entries apply in order");
        }
        if !more {
            return trips;
        }
    }
}

fn george() -> (Fixture, crate::Keypair, crate::Keypair) {
    let mut f = Fixture::new(20, "George");
    let pharmacist = key(20, "Pharmacist");
    let homecare = key(20, "HomeCare");
    f.grant(grant(
        &pharmacist,
        Level::View,
        &[Category::Medications, Category::Allergies],
        false,
        false,
    ));
    f.grant(grant(
        &homecare,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    let g = f.patient.clone();
    for i in 0..5 {
        f.create(&g, Category::VitalSigns, bp(120 + i, 80)).unwrap();
        f.create(
            &g,
            Category::Medications,
            text_body(&[("medication", "Metformin")]),
        )
        .unwrap();
    }
    f.create(
        &g,
        Category::Problems,
        text_body(&[("problem", "Renal disease")]),
    )
    .unwrap();
    (f, pharmacist, homecare)
}

#[test]
fn a_replica_receives_exactly_what_it_may_see_and_nothing_names_the_rest() {
    let (f, pharmacist, _) = george();
    let now = f.now;
    let viewer = f.record.viewer(&pharmacist.actor(), now);
    let mut replica = Record::new(f.record.id());
    // First contact: the server names only streams the pharmacist may see.
    let differ = f.record.differing(&viewer, &replica.digests());
    assert_eq!(differ, vec![None, Some(Category::Medications)]);
    sync(&f.record, &mut replica, &pharmacist.actor(), now);
    for e in replica.entries() {
        assert!(f.record.can_see(&viewer, &e.id()));
        let s = replica.stream_of(&e.id()).cloned().flatten();
        assert!(s.is_none() || s == Some(Category::Medications));
    }
    let visible = f
        .record
        .entries()
        .filter(|e| f.record.can_see(&viewer, &e.id()))
        .count();
    assert_eq!(replica.len(), visible);
    // Asking about a stream it may not see reveals nothing about it.
    let mut probe = replica.frontier();
    probe.insert(Some(Category::VitalSigns), BTreeMap::new());
    let (entries, _, frontier) = f
        .record
        .entries_beyond(&viewer, &probe, 100, MAX_BATCH_BYTES);
    assert!(entries.is_empty());
    assert!(!frontier.contains_key(&Some(Category::VitalSigns)));
    let d = vec![(Some(Category::Problems), [0u8; 32])];
    assert!(!f
        .record
        .differing(&viewer, &d)
        .contains(&Some(Category::Problems)));
}

#[test]
fn a_pull_sends_the_first_entries_in_causal_order_whatever_the_limit() {
    let (mut f, pharmacist, homecare) = george();
    let g = f.patient.clone();
    for i in 0..6 {
        f.create(&homecare, Category::VitalSigns, bp(110 + i, 70))
            .unwrap();
        f.create(&g, Category::VitalSigns, bp(130 + i, 85)).unwrap();
        f.create(
            &g,
            Category::Medications,
            text_body(&[("medication", "Ramipril")]),
        )
        .unwrap();
    }
    let record = &f.record;
    for actor in [g.actor(), pharmacist.actor(), homecare.actor()] {
        let viewer = record.viewer(&actor, f.now);
        let ask: Frontier = record
            .differing(&viewer, &Record::new(record.id()).digests())
            .into_iter()
            .map(|s| (s, BTreeMap::new()))
            .collect();
        // The order every pull must follow: administrative stream first, then depth,
        // then id, over everything the viewer may see beyond the frontier asked from.
        let mut expected: Vec<(bool, u32, EntryId)> = record
            .entries()
            .map(|e| e.id())
            .filter(|id| {
                let s = record.stream_of(id).cloned().flatten();
                ask.contains_key(&s) && record.can_see(&viewer, id)
            })
            .map(|id| {
                (
                    record.stream_of(&id).is_some_and(Option::is_some),
                    record.depth_of(&id),
                    id,
                )
            })
            .collect();
        expected.sort_unstable();
        let expected: Vec<EntryId> = expected.into_iter().map(|(_, _, id)| id).collect();
        assert!(expected.len() > 10, "{actor}: too few entries to test");
        for limit in 1..=expected.len() + 1 {
            let (es, more, _) = record.entries_beyond(&viewer, &ask, limit, MAX_BATCH_BYTES);
            let got: Vec<EntryId> = es.iter().map(|e| e.id()).collect();
            let n = limit.min(expected.len());
            assert_eq!(got, expected[..n], "{actor}, limit {limit}");
            assert_eq!(more, limit < expected.len(), "{actor}, limit {limit}");
        }
    }
}

#[test]
fn up_to_date_is_one_round_trip_and_a_small_catch_up_two() {
    let (mut f, pharmacist, _) = george();
    let mut replica = Record::new(f.record.id());
    sync(&f.record, &mut replica, &pharmacist.actor(), f.now);
    assert_eq!(sync(&f.record, &mut replica, &pharmacist.actor(), f.now), 1);
    let g = f.patient.clone();
    let new = f
        .create(
            &g,
            Category::Medications,
            text_body(&[("medication", "Ramipril")]),
        )
        .unwrap();
    // A change in a stream the pharmacist may not see changes nothing for it.
    f.create(&g, Category::VitalSigns, bp(130, 85)).unwrap();
    let viewer = f.record.viewer(&pharmacist.actor(), f.now);
    let differ = f.record.differing(&viewer, &replica.digests());
    assert_eq!(differ, vec![Some(Category::Medications)]);
    let before = replica.len();
    assert_eq!(sync(&f.record, &mut replica, &pharmacist.actor(), f.now), 2);
    assert_eq!(replica.len(), before + 1);
    assert!(replica.contains(&new));
    // The pull message for the catch-up is small.
    let ask: Frontier = differ
        .iter()
        .map(|s| (s.clone(), replica.frontier()[s].clone()))
        .collect();
    let p = Proof::new(
        &pharmacist,
        f.record.id(),
        b"client-peer",
        b"server-peer",
        [1; 16],
        f.now,
    );
    let msg = encode(&Request::Pull {
        proof: p,
        frontier: ask,
        limit: 100,
    });
    assert!(msg.len() < 1024, "{} bytes", msg.len());
}

#[test]
fn a_revoked_replica_gets_nothing_new() {
    let (mut f, _, homecare) = george();
    let mut replica = Record::new(f.record.id());
    sync(&f.record, &mut replica, &homecare.actor(), f.now);
    let held = replica.len();
    let g = f.patient.clone();
    let hc_grant = f.record.grants_of(&homecare.actor())[0];
    f.write(
        &g,
        Payload::Revoke {
            grant: hc_grant,
            category: None,
            reason: "ended".into(),
        },
    )
    .unwrap();
    f.create(&g, Category::VitalSigns, bp(140, 90)).unwrap();
    sync(&f.record, &mut replica, &homecare.actor(), f.now);
    // It may learn of its own revocation's cut, but of no entry after it.
    for e in replica.entries() {
        if !matches!(e.entry().payload, Payload::Revoke { .. }) {
            assert!(
                f.record
                    .in_past(&e.id(), &f.record.grant(&hc_grant).unwrap().revoked_by[0])
                    || f.record.stream_of(&e.id()) == Some(&None)
            );
        }
    }
    assert!(replica.len() <= held + 2);
    let viewer = f.record.viewer(&homecare.actor(), f.now);
    assert!(f.record.differing(&viewer, &replica.digests()).is_empty());
}

/// What a grantee's replica learns when its grant turned out void: George revokes
/// Mary while Mary, not knowing, delegates to a night sitter, who writes. The host
/// holds the revocation, then the sitter's grant and writes (void). The sitter's
/// replica, syncing from the host, receives exactly the administrative entries in the
/// revocation's causal past that it lacks (nothing written after the revocation, no
/// category data), applies the revocation, finds its grant and writes void, and can
/// write nothing more.
struct VoidCase {
    host: Record,
    sitter: Record,
    sitter_key: crate::Keypair,
    g2: EntryId,
    writes: Vec<EntryId>,
    revocation: EntryId,
    now: Timestamp,
}

/// `before`/`after`: the patient's writes before the revocation and after it (on the
/// host), as category choices (3 = a grant to someone else); `order`: the seed of the
/// order in which the sitter's branch reaches the host.
fn void_case(before: &[u8], after: &[u8], writes: usize, order: u64) -> VoidCase {
    let mut f = Fixture::new(31, "George");
    let george = f.patient.clone();
    let mary = key(31, "Mary");
    let sitter = key(31, "Sitter");
    let g1 = f.grant(grant(&mary, Level::Delete, &[], true, true));
    let patient_write = |f: &mut Fixture, k: u8, i: usize| match k % 4 {
        0 => f.create(&george, Category::VitalSigns, bp(110 + i as i64, 70)),
        1 => f.create(
            &george,
            Category::Problems,
            text_body(&[("problem", "Renal disease")]),
        ),
        2 => f.create(
            &george,
            Category::Medications,
            text_body(&[("medication", "Metformin")]),
        ),
        _ => Ok(f.grant(grant(
            &key(31, &format!("Other{i}")),
            Level::View,
            &[Category::Medications],
            false,
            false,
        ))),
    };
    for (i, k) in before.iter().enumerate() {
        patient_write(&mut f, *k, i).unwrap();
    }
    let base = f.record.clone();
    // The host: the revocation, then more of George's writes.
    let revocation = f
        .write(
            &george,
            Payload::Revoke {
                grant: g1,
                category: None,
                reason: "moved away".into(),
            },
        )
        .unwrap()
        .id();
    for (i, k) in after.iter().enumerate() {
        patient_write(&mut f, *k, 100 + i).unwrap();
    }
    // Mary's replica, not knowing: she delegates to the sitter.
    let mut marys = base;
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
            f.now,
            None,
        )
        .unwrap();
    marys.apply(g2.clone()).unwrap();
    // The sitter's replica, pulled from Mary's while its grant looked valid; it writes.
    let mut replica = Record::new(marys.id());
    sync(&marys, &mut replica, &sitter.actor(), f.now);
    assert!(replica.contains(&g2.id()));
    let mut branch = vec![g2.clone()];
    for i in 0..writes {
        let w = replica
            .prepare_as(
                &sitter,
                Payload::Create {
                    category: Category::VitalSigns,
                    body: bp(130 + i as i64, 85),
                },
                f.now + 1 + i as u64,
                None,
            )
            .unwrap();
        replica.apply(w.clone()).unwrap();
        branch.push(w);
    }
    // The branch reaches the host in some order (each entry once its parents are held).
    let mut s = order | 1;
    for i in (1..branch.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        branch.swap(i, (s % (i as u64 + 1)) as usize);
    }
    let mut host = f.record;
    while !branch.is_empty() {
        let before = branch.len();
        branch.retain(|e| host.apply(e.clone()).is_err());
        assert!(
            branch.len() < before,
            "the sitter's branch applies at the host"
        );
    }
    VoidCase {
        writes: replica
            .entries()
            .filter(|e| e.entry().author == sitter.actor())
            .map(|e| e.id())
            .collect(),
        host,
        sitter: replica,
        sitter_key: sitter,
        g2: g2.id(),
        revocation,
        now: f.now + 100,
    }
}

fn check_void_case(c: &mut VoidCase) {
    let sitter = c.sitter_key.actor();
    let held: std::collections::HashSet<EntryId> = c.sitter.entries().map(|e| e.id()).collect();
    // At the host the sitter's grant and writes are void.
    assert!(matches!(c.host.status(&c.g2), Some(Status::Void { .. })));
    let viewer = c.host.viewer(&sitter, c.now);
    assert!(viewer.has_access());
    assert!(!viewer.may_audit());
    for cat in [
        Category::VitalSigns,
        Category::Problems,
        Category::Medications,
    ] {
        assert_eq!(viewer.level_on(&cat), None);
    }
    sync(&c.host, &mut c.sitter, &sitter, c.now);
    // The sitter's replica learned why, …
    assert!(c.sitter.contains(&c.revocation));
    assert!(matches!(c.sitter.status(&c.g2), Some(Status::Void { .. })));
    for w in &c.writes {
        assert!(matches!(c.sitter.status(w), Some(Status::Void { .. })));
    }
    // … received only administrative entries in the revocation's causal past, …
    for e in c.sitter.entries() {
        if !held.contains(&e.id()) {
            assert_eq!(c.host.stream_of(&e.id()), Some(&None));
            assert!(c.host.in_past(&e.id(), &c.revocation));
        }
    }
    let lacking = c
        .host
        .entries()
        .filter(|e| {
            c.host.stream_of(&e.id()) == Some(&None)
                && c.host.in_past(&e.id(), &c.revocation)
                && !c.sitter.contains(&e.id())
        })
        .count();
    assert_eq!(lacking, 0, "every entry of the revocation's past arrived");
    // … and writes nothing more.
    let next = c.sitter.prepare_as(
        &c.sitter_key,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(150, 95),
        },
        c.now,
        None,
    );
    assert!(next.is_err(), "{next:?}");
}

#[test]
fn a_void_grantee_pulls_only_the_revocation_that_explains_it() {
    let mut c = void_case(&[0, 1, 3, 2], &[0, 1, 3, 0], 2, 7);
    check_void_case(&mut c);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, .. Default::default() })]

    /// The same holds for any history around the revocation and any arrival order.
    #[test]
    fn void_grantees_learn_exactly_their_revocation(
        before in proptest::collection::vec(0u8..4, 0..6),
        after in proptest::collection::vec(0u8..4, 0..6),
        writes in 0usize..4,
        order in proptest::prelude::any::<u64>(),
    ) {
        let mut c = void_case(&before, &after, writes, order);
        check_void_case(&mut c);
    }
}

#[test]
fn proofs_are_bound_to_the_connection_and_used_once() {
    let k = key(1, "Mary");
    let rec = key(1, "George").actor();
    let p = Proof::new(&k, rec, b"client", b"server", [7; 16], 1_000_000);
    let mut seen = NonceCache::new(16);
    assert_eq!(
        p.check(b"client", b"server", 1_000_500, &mut seen),
        Ok(k.actor())
    );
    assert_eq!(
        p.check(b"client", b"server", 1_000_600, &mut seen),
        Err(ProofError::Replayed)
    );
    let mut fresh = NonceCache::new(16);
    assert_eq!(
        p.check(b"thief", b"server", 1_000_500, &mut fresh),
        Err(ProofError::WrongPeers)
    );
    assert_eq!(
        p.check(
            b"client",
            b"server",
            1_000_000 + PROOF_WINDOW_MS + 1,
            &mut fresh
        ),
        Err(ProofError::Stale)
    );
    let mut forged = p.clone();
    forged.nonce = [8; 16];
    assert_eq!(
        forged.check(b"client", b"server", 1_000_500, &mut fresh),
        Err(ProofError::Signature)
    );
}

#[test]
fn messages_round_trip_and_garbage_is_refused() {
    let k = key(1, "Mary");
    let p = Proof::new(&k, k.actor(), b"c", b"s", [0; 16], 5);
    let m = encode(&Request::Digests {
        proof: p,
        digests: vec![(None, [3; 32])],
    });
    assert!(matches!(decode::<Request>(&m), Ok(Request::Digests { .. })));
    assert!(decode::<Request>(&m[..m.len() - 1]).is_err());
    assert!(decode::<Request>(b"\xff\xff\xff").is_err());
}

/// A source that hands out bytes only: a lean record serving a pull must never decode.
#[derive(Debug)]
struct BytesOnly(std::collections::HashMap<EntryId, Vec<u8>>);

impl crate::record::EntrySource for BytesOnly {
    fn load(&self, id: &EntryId) -> Option<crate::entry::Verified> {
        panic!("entry {id} decoded to be served");
    }
    fn load_bytes(&self, id: &EntryId) -> Option<Vec<u8>> {
        self.0.get(id).cloned()
    }
}

#[test]
fn a_lean_record_serves_its_stored_bytes_without_decoding_them() {
    let (mut f, pharmacist, homecare) = george();
    let g = f.patient.clone();
    for i in 0..4 {
        f.create(&homecare, Category::VitalSigns, bp(110 + i, 70))
            .unwrap();
    }
    let full = f.record.clone();
    let stored: std::collections::HashMap<EntryId, Vec<u8>> = full
        .entries()
        .map(|e| (e.id(), e.signed().bytes().to_vec()))
        .collect();
    let mut lean = full.clone();
    lean.set_source(std::sync::Arc::new(BytesOnly(stored.clone())));
    assert!(lean.held_in_memory() < lean.len());
    for actor in [g.actor(), pharmacist.actor(), homecare.actor()] {
        let viewer = full.viewer(&actor, f.now);
        let ask: Frontier = full
            .differing(&viewer, &Record::new(full.id()).digests())
            .into_iter()
            .map(|s| (s, BTreeMap::new()))
            .collect();
        for limit in [1, 3, 100] {
            let (want, want_more, want_f) =
                full.entries_beyond(&viewer, &ask, limit, MAX_BATCH_BYTES);
            let (got, more, got_f) = lean.entry_bytes_beyond(&viewer, &ask, limit, MAX_BATCH_BYTES);
            assert_eq!((more, got_f), (want_more, want_f));
            assert_eq!(got.len(), want.len());
            for (b, v) in got.iter().zip(&want) {
                assert_eq!(b.id, v.id());
                assert_eq!(b.bytes, v.signed().bytes(), "{actor}: bytes as stored");
                assert_eq!(b.bytes, stored[&v.id()]);
                assert_eq!((b.author, b.seq), (v.entry().author, v.entry().seq));
                assert_eq!(Some(&b.stream), full.stream_of(&v.id()));
            }
        }
    }
}
