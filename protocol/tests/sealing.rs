//! Sealed content (blind hosting): a relay checks and serves what it cannot read; readers
//! open it; a revoked reader opens nothing written after its revocation; the gate refuses
//! sealing for former readers, plain content in a sealed stream, and incomplete openings;
//! content that fails its schema is flagged, never hidden. Threat model:
//! `docs/threat-model.md`.

use cophr_protocol::access::Level;
use cophr_protocol::entry::SignedEntry;
use cophr_protocol::fold::current;
use cophr_protocol::record::{ContentState, Record, Rejection, SealPolicy, SealingError};
use cophr_protocol::seal::{self, BoxKey, EpochId, EpochKey, Place, Wrapped};
use cophr_protocol::testkit::{bp, grant, key, profile, text_body, SeededRng};
use cophr_protocol::{Category, EntryId, Keypair, Payload, Value, Verified};

const DEAF: &str = "I am deaf in my left ear";

/// One shared record, written through each writer's own unlocked replica.
struct World {
    /// Every entry, as a relay holds it (no keys).
    relay: Record,
    george: Keypair,
    now: u64,
    rng: SeededRng,
    policy: SealPolicy,
}

impl World {
    fn new(seed: u64) -> World {
        let george = key(seed, "George");
        let mut relay = Record::new(george.actor());
        let g = relay
            .prepare(
                &george,
                Payload::Genesis {
                    profile: profile("George", "patient", None),
                },
                None,
                1_700_000_000_000,
                None,
            )
            .unwrap();
        relay.apply(g).unwrap();
        World {
            relay,
            george,
            now: 1_700_000_001_000,
            rng: SeededRng::new(seed),
            policy: SealPolicy {
                seal_new_streams: true,
                history: false,
            },
        }
    }

    /// `key`'s own replica: every entry, unlocked with its key.
    fn replica(&self, key: &Keypair) -> Record {
        let mut r = self.relay.clone();
        r.unlock(key);
        r
    }

    fn write(&mut self, key: &Keypair, payload: Payload) -> Result<Vec<Verified>, Rejection> {
        let mine = self.replica(key);
        let vs = mine.prepare_sealed(key, payload, self.now, None, self.policy, &mut self.rng)?;
        self.now += 1000;
        for v in &vs {
            self.relay.apply(v.clone())?;
        }
        Ok(vs)
    }

    /// George grants `level` on `categories` (empty: all) to `to`; the grant's id.
    fn grant(&mut self, to: &Keypair, level: Level, categories: &[Category]) -> EntryId {
        let g = self.george.clone();
        let vs = self.write(
            &g,
            Payload::Grant(grant(to, level, categories, false, false)),
        );
        vs.unwrap()[0].id()
    }

    /// George revokes a grant; everything the revocation wrote.
    fn revoke(&mut self, grant: EntryId) -> Vec<Verified> {
        let g = self.george.clone();
        let revoke = Payload::Revoke {
            grant,
            category: None,
            reason: "ended".into(),
        };
        self.write(&g, revoke).unwrap()
    }

    fn create(&mut self, key: &Keypair, c: Category, body: Value) -> EntryId {
        let vs = self
            .write(key, Payload::Create { category: c, body })
            .unwrap();
        vs.last().unwrap().id()
    }

    fn bodies(&self, reader: &Keypair) -> Vec<Value> {
        let r = self.replica(reader);
        let v = r.viewer(&reader.actor(), self.now);
        current(&r, &v)
            .items
            .into_iter()
            .map(|i| i.body.to_value())
            .collect()
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_relay_holds_checks_and_serves_what_it_cannot_read() {
    let mut w = World::new(1);
    let nurse = key(1, "Nurse");
    let host = key(1, "Community host");
    let g = w.george.clone();
    w.grant(&nurse, Level::View, &[Category::VitalSigns]);
    w.grant(&host, Level::Relay, &[]);
    let item = w.create(&g, Category::VitalSigns, bp(141, 92));
    w.write(
        &g,
        Payload::Annotate {
            target: item,
            text: DEAF.into(),
        },
    )
    .unwrap();
    let problem = w.create(
        &g,
        Category::Problems,
        text_body(&[("problem", "Type 2 diabetes")]),
    );

    // No entry carries the plaintext.
    for e in w.relay.entries() {
        let b = e.signed().bytes();
        for s in [DEAF.as_bytes(), b"Type 2 diabetes", b"mm[Hg]"] {
            assert!(!contains(b, s), "plaintext in an entry");
        }
    }
    // A relay replays every entry from bytes, checking everything, with no key at all.
    let mut fresh = Record::new(w.george.actor());
    for e in w.relay.entries() {
        let v = SignedEntry::decode(e.signed().bytes())
            .unwrap()
            .verify()
            .unwrap();
        fresh.apply(v).unwrap();
    }
    assert_eq!(fresh.len(), w.relay.len());
    // Signatures cover the ciphertext: a flipped bit in it is caught by any relay.
    let sealed = w.relay.get(&item).unwrap();
    let ct = &sealed.entry().payload.sealed().unwrap().ct;
    let bytes = sealed.signed().bytes();
    let at = bytes
        .windows(ct.len())
        .position(|x| x == ct.as_slice())
        .unwrap();
    let mut tampered = bytes.to_vec();
    tampered[at + 3] ^= 0x20;
    let decoded = SignedEntry::decode(&tampered).unwrap();
    assert!(decoded.verify().is_err(), "tampered ciphertext verifies");
    fresh.unlock(&host);
    let hv = fresh.viewer(&host.actor(), w.now);
    assert_eq!(hv.level_on(&Category::VitalSigns), Some(Level::Relay));
    let hs = current(&fresh, &hv);
    assert!(hs.items.is_empty(), "a relay reads nothing");
    assert_eq!(hs.locked.len(), 2);
    assert!(fresh.can_see(&hv, &problem), "a relay serves everything");
    assert_eq!(fresh.content_state(&item), Some(ContentState::Locked));
    assert!(!fresh.readers(&Category::VitalSigns).contains(&host.actor()));

    // The nurse opens vital signs (and the note on it), not problems.
    let nr = w.replica(&nurse);
    let nv = nr.viewer(&nurse.actor(), w.now);
    let ns = current(&nr, &nv);
    assert_eq!(ns.items.len(), 1);
    assert_eq!(ns.items[0].body, bp(141, 92));
    assert_eq!(nr.content_state(&item), Some(ContentState::Opened));
    let note = ns.items[0].annotations[0];
    assert_eq!(
        nr.payload(&note).as_deref(),
        Some(&Payload::Annotate {
            target: item,
            text: DEAF.into()
        })
    );
    assert_eq!(nr.content_state(&problem), Some(ContentState::Locked));
    // George reads all of it, also as it stood in the past.
    assert_eq!(w.bodies(&g).len(), 2);
    let gr = w.replica(&g);
    let past = gr.at_time(w.now - 1500);
    let pv = past.viewer(&g.actor(), w.now);
    assert_eq!(current(&past, &pv).items[0].body, bp(141, 92));
}

#[test]
fn a_revocation_rotates_and_the_revoked_reader_opens_nothing_written_after() {
    let mut w = World::new(2);
    let nurse = key(2, "Nurse");
    let carer = key(2, "Carer");
    let g = w.george.clone();
    let nurse_grant = w.grant(&nurse, Level::View, &[]);
    w.grant(&carer, Level::Write, &[Category::VitalSigns]);
    let before = w.create(&carer, Category::VitalSigns, bp(120, 80));
    let vs = w.revoke(nurse_grant);
    // The revocation's parts, then a new epoch for the sealed stream, not for the nurse.
    let wrap = vs
        .iter()
        .find_map(|v| match &v.entry().payload {
            Payload::KeyWrap { opens, wraps, .. } => Some((*opens, wraps.clone())),
            _ => None,
        })
        .expect("a new epoch");
    assert!(wrap.0);
    assert!(wrap.1.iter().all(|x| x.to != nurse.actor()));
    assert!(wrap.1.iter().any(|x| x.to == carer.actor()));
    let after = w.create(&carer, Category::VitalSigns, bp(150, 95));
    let by_george = w.create(&g, Category::VitalSigns, bp(151, 96));

    let nr = w.replica(&nurse);
    assert_eq!(nr.content_state(&before), Some(ContentState::Opened));
    assert_eq!(nr.content_state(&after), Some(ContentState::Locked));
    assert_eq!(nr.content_state(&by_george), Some(ContentState::Locked));
    // The carer and George read everything.
    assert_eq!(w.bodies(&carer).len(), 3);
    assert_eq!(w.bodies(&g).len(), 3);
}

/// The epoch key `reader` holds for the epoch an entry was sealed under.
fn epoch_key_of(r: &Record, reader: &Keypair, sealed_entry: &EntryId) -> (EpochId, EpochKey) {
    let epoch = r
        .get(sealed_entry)
        .unwrap()
        .entry()
        .payload
        .sealed()
        .unwrap()
        .epoch;
    let c = r.category_of(sealed_entry).unwrap().clone();
    let bk = BoxKey::of(reader);
    for e in r.entries() {
        if let Payload::KeyWrap {
            epoch: ep, wraps, ..
        } = &e.entry().payload
        {
            if *ep != epoch {
                continue;
            }
            if let Some(x) = wraps.iter().find(|x| x.to == reader.actor()) {
                let place = Place {
                    record: &r.id(),
                    stream: c.name(),
                    epoch,
                };
                return (epoch, seal::unwrap(x, &bk, place).unwrap());
            }
        }
    }
    panic!("no wrap for the reader");
}

fn sealed_create(
    r: &Record,
    author: &Keypair,
    c: Category,
    epoch: EpochId,
    k: &EpochKey,
    body: &Value,
    now: u64,
) -> Verified {
    let place = Place {
        record: &r.id(),
        stream: c.name(),
        epoch,
    };
    let mut rng = SeededRng::new(99);
    let bytes = cbor(body);
    let content = seal::seal(k, place, &author.actor(), &bytes, &mut rng).unwrap();
    let auth = r.grants_of(&author.actor()).first().copied();
    let auth = if r.is_patient(&author.actor()) {
        None
    } else {
        auth
    };
    let e = r.next_entry(
        &author.actor(),
        Payload::SealedCreate {
            category: c,
            content,
        },
        auth,
        now,
        None,
    );
    Verified::trusted(e.sign(author))
}

/// The canonical CBOR the record's own sealing uses (cbor4ii, as the entries).
fn cbor(v: &Value) -> Vec<u8> {
    cbor4ii::serde::to_vec(Vec::new(), v).unwrap()
}

#[test]
fn a_writer_cannot_seal_for_a_revoked_reader_nor_write_plain_in_a_sealed_stream() {
    let mut w = World::new(3);
    let nurse = key(3, "Nurse");
    let carer = key(3, "Carer");
    let ng = w.grant(&nurse, Level::View, &[]);
    w.grant(&carer, Level::Write, &[Category::VitalSigns]);
    let first = w.create(&carer, Category::VitalSigns, bp(120, 80));
    let cr = w.replica(&carer);
    let (old_epoch, old_key) = epoch_key_of(&cr, &carer, &first);
    w.revoke(ng);
    // The attack: the carer (or a tampered client) seals under the epoch the revoked
    // nurse still holds.
    let cr = w.replica(&carer);
    let v = sealed_create(
        &cr,
        &carer,
        Category::VitalSigns,
        old_epoch,
        &old_key,
        &bp(150, 95),
        w.now,
    );
    match w.relay.apply(v) {
        Err(Rejection::Sealing(SealingError::FormerReader { epoch, reader })) => {
            assert_eq!(epoch, old_epoch);
            assert_eq!(reader, nurse.actor());
        }
        other => panic!("expected FormerReader, got {other:?}"),
    }
    // Plain content in the sealed stream is refused outright.
    let plain = cr
        .prepare_all(
            &carer,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(150, 95),
            },
            w.now,
            None,
        )
        .unwrap_err();
    assert_eq!(
        plain,
        Rejection::Sealing(SealingError::MustSeal(Category::VitalSigns))
    );
    // An epoch nobody opened is refused too.
    let v = sealed_create(
        &cr,
        &carer,
        Category::VitalSigns,
        EpochId([7; 16]),
        &old_key,
        &bp(150, 95),
        w.now,
    );
    assert_eq!(
        w.relay.check(&v),
        Err(Rejection::Sealing(SealingError::UnknownEpoch(EpochId(
            [7; 16]
        ))))
    );
}

fn key_wrap(
    r: &Record,
    author: &Keypair,
    c: Category,
    epoch: EpochId,
    opens: bool,
    to: &[Keypair],
    now: u64,
) -> Verified {
    let mut rng = SeededRng::new(5);
    let k = EpochKey::generate(&mut rng);
    let place = Place {
        record: &r.id(),
        stream: c.name(),
        epoch,
    };
    let mut to: Vec<_> = to.iter().map(|k| k.actor()).collect();
    to.sort();
    let wraps: Vec<Wrapped> = to
        .iter()
        .map(|a| seal::wrap(&k, *a, &seal::BoxPublic::of(a).unwrap(), place, &mut rng).unwrap())
        .collect();
    let e = r.next_entry(
        &author.actor(),
        Payload::KeyWrap {
            category: c,
            epoch,
            opens,
            wraps,
            thread: None,
        },
        None,
        now,
        None,
    );
    Verified::trusted(e.sign(author))
}

#[test]
fn an_opening_wraps_for_every_reader_and_only_readers() {
    let mut w = World::new(4);
    let nurse = key(4, "Nurse");
    let stranger = key(4, "Stranger");
    let g = w.george.clone();
    w.grant(&nurse, Level::View, &[]);
    let c = Category::Allergies;
    let missing = key_wrap(
        &w.relay,
        &g,
        c.clone(),
        EpochId([1; 16]),
        true,
        std::slice::from_ref(&g),
        w.now,
    );
    assert_eq!(
        w.relay.check(&missing),
        Err(Rejection::Sealing(SealingError::MissingReader(
            nurse.actor()
        )))
    );
    let extra = key_wrap(
        &w.relay,
        &g,
        c.clone(),
        EpochId([1; 16]),
        true,
        &[g.clone(), nurse.clone(), stranger.clone()],
        w.now,
    );
    assert_eq!(
        w.relay.check(&extra),
        Err(Rejection::Sealing(SealingError::NotAReader(
            stranger.actor()
        )))
    );
    let ok = key_wrap(
        &w.relay,
        &g,
        c.clone(),
        EpochId([1; 16]),
        true,
        &[g.clone(), nurse.clone()],
        w.now,
    );
    w.relay.apply(ok).unwrap();
    // Reopening the same epoch, or adding wraps to an unknown one, is refused.
    let again = key_wrap(
        &w.relay,
        &g,
        c.clone(),
        EpochId([1; 16]),
        true,
        &[g.clone(), nurse.clone()],
        w.now,
    );
    assert_eq!(
        w.relay.check(&again),
        Err(Rejection::Sealing(SealingError::Reopened(EpochId([1; 16]))))
    );
    let unknown = key_wrap(
        &w.relay,
        &g,
        c,
        EpochId([2; 16]),
        false,
        std::slice::from_ref(&nurse),
        w.now,
    );
    assert_eq!(
        w.relay.check(&unknown),
        Err(Rejection::Sealing(SealingError::UnknownEpoch(EpochId(
            [2; 16]
        ))))
    );
}

#[test]
fn content_that_fails_its_schema_or_does_not_open_is_flagged_not_hidden() {
    let mut w = World::new(5);
    let g = w.george.clone();
    let first = w.create(&g, Category::VitalSigns, bp(120, 80));
    let gr = w.replica(&g);
    let (epoch, k) = epoch_key_of(&gr, &g, &first);
    let bad = text_body(&[("no-such-field", "x")]);
    let v = sealed_create(&gr, &g, Category::VitalSigns, epoch, &k, &bad, w.now);
    let bad_id = v.id();
    // A relay cannot tell: it accepts the entry (its signature and rules hold).
    w.relay.apply(v).unwrap();
    // Sealed under a key that is not the epoch's: does not open.
    let gr = w.replica(&g);
    let mut rng = SeededRng::new(6);
    let wrong = EpochKey::generate(&mut rng);
    let v = sealed_create(
        &gr,
        &g,
        Category::VitalSigns,
        epoch,
        &wrong,
        &bp(1, 1),
        w.now + 10,
    );
    let wrong_id = v.id();
    w.relay.apply(v).unwrap();

    let gr = w.replica(&g);
    let s = current(&gr, &gr.viewer(&g.actor(), w.now));
    assert_eq!(s.items.len(), 3, "flagged items are shown");
    let flagged: Vec<_> = s.items.iter().filter(|i| i.flag.is_some()).collect();
    assert_eq!(flagged.len(), 2);
    let bad_item = s.items.iter().find(|i| i.id == bad_id).unwrap();
    assert!(bad_item.flag.as_ref().unwrap().contains("no-such-field"));
    assert_eq!(bad_item.body, bad);
    let wrong_item = s.items.iter().find(|i| i.id == wrong_id).unwrap();
    assert!(wrong_item
        .flag
        .as_ref()
        .unwrap()
        .contains("does not decrypt"));
    assert_eq!(wrong_item.body, Value::Null);
    let mut f: Vec<EntryId> = gr.flagged().into_iter().map(|(id, _)| id).collect();
    f.sort();
    let mut want = vec![bad_id, wrong_id];
    want.sort();
    assert_eq!(f, want);
}

#[test]
fn a_new_grantee_reads_from_its_grant_on_or_with_history_every_epoch() {
    let mut w = World::new(6);
    let gp = key(6, "GP");
    let pharmacist = key(6, "Pharmacist");
    let carer = key(6, "Carer");
    let g = w.george.clone();
    let cg = w.grant(&carer, Level::View, &[]);
    let old = w.create(
        &g,
        Category::Medications,
        text_body(&[("medication", "Metformin")]),
    );
    // A revocation: the old epoch is left behind.
    w.revoke(cg);
    let mid = w.create(
        &g,
        Category::Medications,
        text_body(&[("medication", "Ramipril")]),
    );
    w.grant(&gp, Level::View, &[Category::Medications]);
    w.policy.history = true;
    w.grant(&pharmacist, Level::View, &[Category::Medications]);
    w.policy.history = false;
    let new = w.create(
        &g,
        Category::Medications,
        text_body(&[("medication", "Insulin")]),
    );

    let gpr = w.replica(&gp);
    // From its grant on: a new epoch was opened with the grant, so even the epoch that
    // was current when it was granted stays closed to it.
    assert_eq!(gpr.content_state(&old), Some(ContentState::Locked));
    assert_eq!(gpr.content_state(&mid), Some(ContentState::Locked));
    assert_eq!(gpr.content_state(&new), Some(ContentState::Opened));
    let ph = w.replica(&pharmacist);
    for id in [old, mid, new] {
        assert_eq!(ph.content_state(&id), Some(ContentState::Opened));
    }
}

#[test]
fn the_patients_devices_and_guardians_read_everything() {
    let mut w = World::new(7);
    let phone = key(7, "George's phone");
    let mary = key(7, "Mary");
    let g = w.george.clone();
    let a = w.create(
        &g,
        Category::Allergies,
        text_body(&[("agent", "Penicillin")]),
    );
    w.write(
        &g,
        Payload::AddDevice {
            device: phone.actor(),
            label: "phone".into(),
        },
    )
    .unwrap();
    w.write(
        &g,
        Payload::SetGuardians {
            guardians: vec![mary.actor()],
            threshold: 1,
        },
    )
    .unwrap();
    // The phone writes, sealed, as the patient.
    let b = w.create(
        &phone,
        Category::Allergies,
        text_body(&[("agent", "Latex")]),
    );
    for k in [&phone, &mary, &g] {
        let r = w.replica(k);
        assert_eq!(
            r.content_state(&a),
            Some(ContentState::Opened),
            "{}",
            k.actor()
        );
        assert_eq!(r.content_state(&b), Some(ContentState::Opened));
    }
    // Removing the phone rotates: the phone opens nothing written after.
    w.write(
        &g,
        Payload::RemoveDevice {
            device: phone.actor(),
            category: None,
            reason: "lost".into(),
        },
    )
    .unwrap();
    let c = w.create(&g, Category::Allergies, text_body(&[("agent", "Nuts")]));
    assert_eq!(
        w.replica(&phone).content_state(&c),
        Some(ContentState::Locked)
    );
    assert_eq!(
        w.replica(&mary).content_state(&c),
        Some(ContentState::Opened)
    );
}

mod churn {
    //! Concurrent writes, revocations and key rotations on two replicas, merged at random
    //! moments and delivered in any order: a revoked reader never opens anything written
    //! after its revocation; every remaining reader opens everything; replicas converge.

    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Op {
        /// 0: George on his laptop; 1: the carer on her node.
        replica: usize,
        kind: u8,
        pick: usize,
        merge: bool,
    }

    fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            (
                0usize..2,
                0u8..7,
                any::<usize>(),
                prop::bool::weighted(0.25),
            )
                .prop_map(|(replica, kind, pick, merge)| Op {
                    replica,
                    kind,
                    pick,
                    merge,
                }),
            1..30,
        )
    }

    struct Run {
        replicas: [Record; 2],
        george: Keypair,
        carer: Keypair,
        nurse: Keypair,
        pharmacist: Keypair,
        revocations: Vec<EntryId>,
        now: u64,
    }

    fn merge(into: &mut Record, from: &Record) {
        for e in from.entries() {
            let _ = into.apply_known(e.clone());
        }
    }

    fn run(ops: &[Op], seed: u64) -> Run {
        let mut w = World::new(40);
        let george = w.george.clone();
        let carer = key(40, "Carer");
        let nurse = key(40, "Nurse");
        let pharmacist = key(40, "Pharmacist");
        w.write(
            &george,
            Payload::Grant(grant(
                &carer,
                Level::Write,
                &[Category::VitalSigns, Category::Problems],
                false,
                false,
            )),
        )
        .unwrap();
        let mut grants = vec![
            w.write(
                &george,
                Payload::Grant(grant(&nurse, Level::View, &[], false, false)),
            )
            .unwrap()[0]
                .id(),
            w.write(
                &george,
                Payload::Grant(grant(
                    &pharmacist,
                    Level::View,
                    &[Category::VitalSigns],
                    false,
                    false,
                )),
            )
            .unwrap()[0]
                .id(),
        ];
        let mut replicas = [w.relay.clone(), w.relay.clone()];
        replicas[0].unlock(&george);
        replicas[1].unlock(&carer);
        let writers = [george.clone(), carer.clone()];
        let mut rng = SeededRng::new(seed);
        let mut now = w.now;
        let mut revocations = Vec::new();
        for op in ops {
            let r = op.replica;
            let rec = &replicas[r];
            let items: Vec<EntryId> = rec
                .entries()
                .filter(|e| {
                    let p = &e.entry().payload;
                    p.is_create() || p.is_amend()
                })
                .map(|e| e.id())
                .collect();
            let target = (!items.is_empty()).then(|| items[op.pick % items.len()]);
            let payload = match (op.kind, target) {
                (1, Some(t)) => Payload::Amend {
                    target: t,
                    body: bp(120, 80),
                },
                (2, Some(t)) => Payload::Annotate {
                    target: t,
                    text: "seen".into(),
                },
                (3, _) => Payload::Create {
                    category: Category::Problems,
                    body: text_body(&[("problem", "Hypertension")]),
                },
                (4 | 5, _) if r == 0 && !grants.is_empty() => Payload::Revoke {
                    grant: grants.remove(op.pick % grants.len()),
                    category: None,
                    reason: "ended".into(),
                },
                _ => Payload::Create {
                    category: Category::VitalSigns,
                    body: bp(100 + (op.pick % 80) as i64, 70),
                },
            };
            now += 1000;
            let policy = SealPolicy {
                seal_new_streams: true,
                history: false,
            };
            // A write another replica's concurrent change makes invalid here is simply
            // not made (the amend of an item the carer may not amend, …).
            if let Ok(vs) = rec.prepare_sealed(&writers[r], payload, now, None, policy, &mut rng) {
                for v in vs {
                    if matches!(v.entry().payload, Payload::Revoke { category: None, .. }) {
                        revocations.push(v.id());
                    }
                    replicas[r].apply(v).unwrap();
                }
            }
            if op.merge {
                let (a, b) = replicas.split_at_mut(1);
                merge(&mut a[0], &b[0]);
                merge(&mut b[0], &a[0]);
            }
        }
        let (a, b) = replicas.split_at_mut(1);
        merge(&mut a[0], &b[0]);
        merge(&mut b[0], &a[0]);
        Run {
            replicas,
            george,
            carer,
            nurse,
            pharmacist,
            revocations,
            now,
        }
    }

    /// Applies entries in the given order, buffering any whose parents have not arrived.
    fn deliver(mut r: Record, mut pending: Vec<Verified>) -> Record {
        loop {
            let before = pending.len();
            let mut left = Vec::new();
            for e in pending {
                if let Err(Rejection::MissingParents(_) | Rejection::Backlink(_)) =
                    r.apply_known(e.clone())
                {
                    left.push(e);
                }
            }
            if left.is_empty() || left.len() == before {
                return r;
            }
            pending = left;
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

        #[test]
        fn revoked_readers_open_nothing_after_and_everyone_else_opens_everything(
            ops in arb_ops(),
            seed in any::<u64>(),
        ) {
            let run = run(&ops, seed);
            let reference = &run.replicas[0];
            prop_assert_eq!(reference.len(), run.replicas[1].len());
            // Delivered to the nurse and the pharmacist in a shuffled order.
            let mut shuffled: Vec<Verified> = reference.entries().collect();
            let genesis = shuffled.remove(0);
            let mut s = seed | 1;
            for i in (1..shuffled.len()).rev() {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                shuffled.swap(i, (s % (i as u64 + 1)) as usize);
            }
            for reader in [&run.nurse, &run.pharmacist] {
                let mut base = Record::new(reference.id());
                base.unlock(reader);
                base.apply_known(genesis.clone()).unwrap();
                let theirs = deliver(base, shuffled.clone());
                prop_assert_eq!(theirs.len(), reference.len());
                let grant_of = |r: &EntryId| match &reference.get(r).unwrap().entry().payload {
                    Payload::Revoke { grant, .. } => reference.grant(grant).unwrap().grant.grantee,
                    _ => unreachable!(),
                };
                for e in reference.entries() {
                    if e.entry().payload.sealed().is_none() {
                        continue;
                    }
                    let id = e.id();
                    let after = run
                        .revocations
                        .iter()
                        .any(|r| grant_of(r) == reader.actor() && reference.in_past(r, &id));
                    let state = theirs.content_state(&id);
                    if after {
                        prop_assert_eq!(state, Some(ContentState::Locked), "opened after revocation");
                    }
                    // Nothing is ever flagged: every writer sealed well-formed content.
                    prop_assert!(!matches!(state, Some(ContentState::Flagged(_))), "{:?}", state);
                }
            }
            // The patient and the carer (never revoked) open everything in their scope,
            // and both replicas fold to the same state.
            prop_assert!(run.replicas[1].unlocked_for(&run.carer.actor()));
            for rec in &run.replicas {
                for e in rec.entries() {
                    if e.entry().payload.sealed().is_some() {
                        prop_assert_eq!(rec.content_state(&e.id()), Some(ContentState::Opened));
                    }
                }
            }
            let g = run.george.actor();
            let mut carer_view = run.replicas[1].clone();
            carer_view.unlock(&run.george);
            prop_assert_eq!(
                current(&run.replicas[0], &run.replicas[0].viewer(&g, run.now)),
                current(&carer_view, &carer_view.viewer(&g, run.now))
            );
        }

        /// A record's admission part decides sealed creates as the whole record does:
        /// the same entries prepared (sealed under the same epoch, with the same
        /// randomness), the same outcome applied; a write that must open a new epoch (after
        /// a revocation) is left to the whole record, and once it is opened the part
        /// decides the patient's and the carer's next creates itself.
        #[test]
        fn an_admission_part_seals_and_decides_as_the_whole_record(
            ops in arb_ops(),
            seed in any::<u64>(),
        ) {
            let run = run(&ops, seed);
            let writers = [run.george.clone(), run.carer.clone()];
            let policy = SealPolicy { seal_new_streams: true, history: false };
            for (r, writer) in writers.iter().enumerate() {
                let mut whole = run.replicas[r].clone();
                let mut part = whole.admission();
                let mut now = run.now;
                for round in 0..3u64 {
                    for c in [Category::VitalSigns, Category::Problems, Category::Medications] {
                        now += 1000;
                        let body = if c == Category::VitalSigns {
                            bp(110 + round as i64, 70)
                        } else {
                            text_body(&[("problem", "Hypertension")])
                        };
                        let payload = Payload::Create { category: c.clone(), body };
                        let want = whole.prepare_sealed(writer, payload.clone(), now, None, policy, &mut SeededRng::new(seed ^ now));
                        let got = part.prepare_sealed(writer, payload, now, None, policy, &mut SeededRng::new(seed ^ now));
                        match &got {
                            Err(Rejection::NeedsWholeRecord) => {
                                prop_assert!(round == 0, "round {}: {:?} left to the whole record", round, c);
                            }
                            got => prop_assert_eq!(
                                got.clone().map(|v| v.iter().map(Verified::id).collect::<Vec<_>>()),
                                want.clone().map(|v| v.iter().map(Verified::id).collect::<Vec<_>>())
                            ),
                        }
                        for v in want.into_iter().flatten() {
                            let want = whole.apply(v.clone());
                            match part.apply(v) {
                                Err(Rejection::NeedsWholeRecord) => part = whole.admission(),
                                got => prop_assert_eq!(got, want),
                            }
                        }
                    }
                }
                prop_assert_eq!(part.heads(), whole.heads());
            }
        }
    }
}

#[test]
fn misshapen_key_wraps_and_sealed_content_are_refused_before_the_gate() {
    use cophr_protocol::entry::{check_structure, EntryError};
    let w = World::new(8);
    let g = w.george.clone();
    let nurse = key(8, "Nurse");
    let good = key_wrap(
        &w.relay,
        &g,
        Category::Allergies,
        EpochId([1; 16]),
        true,
        &[g.clone(), nurse.clone()],
        w.now,
    );
    let with_wraps = |f: &dyn Fn(&mut Vec<Wrapped>)| {
        let mut e = good.entry().clone();
        if let Payload::KeyWrap { wraps, .. } = &mut e.payload {
            f(wraps);
        }
        check_structure(&e)
    };
    assert_eq!(
        with_wraps(&|w| w.reverse()),
        Err(EntryError::Wraps("not sorted by reader or duplicated"))
    );
    assert_eq!(
        with_wraps(&|w| {
            w.truncate(1);
            w[0].ct.pop();
        }),
        Err(EntryError::Wraps("a wrapped key of the wrong size"))
    );
    assert_eq!(
        with_wraps(&|w| w.clear()),
        Err(EntryError::Wraps("1 to 512 wrapped keys"))
    );
    let mut e = good.entry().clone();
    e.payload = Payload::SealedCreate {
        category: Category::Allergies,
        content: seal::Sealed {
            epoch: EpochId([1; 16]),
            nonce: [0; 24],
            ct: vec![0; 15],
            blobs: Vec::new(),
            task: None,
        },
    };
    assert_eq!(check_structure(&e), Err(EntryError::Text("content")));
}

/// Mary delegates to a night sitter while George, concurrently, revokes Mary; the sitter,
/// not knowing, opens the first epoch of a stream. Its opening wraps for the readers at its
/// own position (Mary and the sitter among them), and every replica judges it the same
/// whether it holds the revocation first or not: the gate's readers are causal, not the
/// grants' statuses now.
#[test]
fn a_concurrently_voided_grantees_opening_is_judged_the_same_in_any_arrival_order() {
    let mut w = World::new(12);
    let g = w.george.clone();
    let mary = key(12, "Mary");
    let sitter = key(12, "Sitter");
    let mg = w
        .write(
            &g,
            Payload::Grant(grant(&mary, Level::Write, &[], false, true)),
        )
        .unwrap()[0]
        .id();
    let base = w.relay.clone();
    // George's side: the revocation.
    let revocation = w.revoke(mg);
    // Mary's and the sitter's side, from before the revocation.
    let mut side = base.clone();
    side.unlock(&mary);
    let delegation = side
        .prepare_sealed(
            &mary,
            Payload::Grant(grant(
                &sitter,
                Level::Write,
                &[Category::VitalSigns],
                false,
                false,
            )),
            w.now,
            None,
            w.policy,
            &mut w.rng,
        )
        .unwrap();
    for v in &delegation {
        side.apply(v.clone()).unwrap();
    }
    side.unlock(&sitter);
    let write = side
        .prepare_sealed(
            &sitter,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(135, 85),
            },
            w.now + 1,
            None,
            w.policy,
            &mut w.rng,
        )
        .unwrap();
    assert!(matches!(
        write[0].entry().payload,
        Payload::KeyWrap { opens: true, .. }
    ));
    let theirs: Vec<Verified> = delegation.iter().chain(&write).cloned().collect();

    // Revocation first, then their entries: all accepted (kept, void).
    let mut a = w.relay.clone();
    for v in &theirs {
        a.apply(v.clone()).unwrap();
    }
    // Their entries first, then the revocation.
    let mut b = base.clone();
    for v in theirs.iter().chain(&revocation) {
        b.apply(v.clone()).unwrap();
    }
    assert_eq!(a.len(), b.len());
    let last = write.last().unwrap().id();
    assert_eq!(a.status(&last), b.status(&last));
    assert!(matches!(
        a.status(&last),
        Some(cophr_protocol::record::Status::Void { .. })
    ));
    // After the revocation, neither Mary nor the sitter is a reader any more.
    for r in [&a, &b] {
        let readers = r.readers(&Category::VitalSigns);
        assert!(!readers.contains(&mary.actor()) && !readers.contains(&sitter.actor()));
    }
}

/// Mary's tablet delegates to a night sitter while, concurrently, George revokes Mary and
/// Mary removes the tablet: the sitter's grant is voided by two different entries. Mary,
/// holding the removal but not yet the revocation, opens a stream and leaves the sitter
/// out (in her past the removal voids the delegation). Every replica judges her opening
/// by what is in its past — whichever of the two voiders it holds, in whichever order —
/// so a replica holding the revocation too accepts it as well.
#[test]
fn a_grant_voided_by_two_entries_is_judged_by_the_positions_past() {
    let mut w = World::new(13);
    let g = w.george.clone();
    let mary = key(13, "Mary");
    let tablet = key(13, "Mary's tablet");
    let sitter = key(13, "Sitter");
    let mg = w
        .write(
            &g,
            Payload::Grant(grant(&mary, Level::Write, &[], false, true)),
        )
        .unwrap()[0]
        .id();
    w.write(
        &mary,
        Payload::AddDevice {
            device: tablet.actor(),
            label: "tablet".into(),
        },
    )
    .unwrap();
    let base = w.relay.clone();
    // George's side: the revocation of Mary.
    let revocation = w.revoke(mg);
    // The tablet's delegation to the sitter, from before either.
    let mut t = base.clone();
    t.unlock(&tablet);
    let delegation = t
        .prepare_sealed(
            &tablet,
            Payload::Grant(grant(
                &sitter,
                Level::Write,
                &[Category::VitalSigns],
                false,
                false,
            )),
            w.now,
            None,
            w.policy,
            &mut w.rng,
        )
        .unwrap();
    // Mary removes the tablet, not having seen the delegation; then it reaches her.
    let mut m = base.clone();
    m.unlock(&mary);
    let removal = m
        .prepare_sealed(
            &mary,
            Payload::RemoveDevice {
                device: tablet.actor(),
                category: None,
                reason: "lost".into(),
            },
            w.now + 1,
            None,
            w.policy,
            &mut w.rng,
        )
        .unwrap();
    for v in removal.iter().chain(&delegation) {
        m.apply(v.clone()).unwrap();
    }
    assert!(!m.readers(&Category::VitalSigns).contains(&sitter.actor()));
    // Mary writes the stream's first reading: she opens it, for the readers in her past.
    let write = m
        .prepare_sealed(
            &mary,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(128, 80),
            },
            w.now + 2,
            None,
            w.policy,
            &mut w.rng,
        )
        .unwrap();
    let Payload::KeyWrap {
        opens: true, wraps, ..
    } = &write[0].entry().payload
    else {
        panic!("the first write in a stream opens it");
    };
    assert!(!wraps.iter().any(|x| x.to == sitter.actor()));
    let theirs: Vec<Verified> = removal
        .iter()
        .chain(&delegation)
        .chain(&write)
        .cloned()
        .collect();

    // The revocation held first (the delegation's status names it), then theirs.
    let mut a = w.relay.clone();
    for v in &theirs {
        a.apply(v.clone())
            .unwrap_or_else(|e| panic!("refused with the revocation held: {e}"));
    }
    // Theirs first, then the revocation.
    let mut b = base.clone();
    for v in theirs.iter().chain(&revocation) {
        b.apply(v.clone()).unwrap();
    }
    assert_eq!(a.len(), b.len());
    for v in &theirs {
        assert_eq!(a.status(&v.id()), b.status(&v.id()));
    }
}

/// A grantee who may delegate gives its delegate the keys it holds when it writes the
/// delegation (any reader may wrap for a reader): the night sitter Mary delegates to reads
/// George's earlier readings at once.
#[test]
fn a_delegate_gets_the_keys_from_the_grantee_who_delegates() {
    let mut w = World::new(13);
    w.policy.history = true;
    let g = w.george.clone();
    let mary = key(13, "Mary");
    let sitter = key(13, "Sitter");
    let reading = w.create(&g, Category::VitalSigns, bp(128, 82));
    w.write(
        &g,
        Payload::Grant(grant(&mary, Level::Write, &[], false, true)),
    )
    .unwrap();
    let written = w
        .write(
            &mary,
            Payload::Grant(grant(
                &sitter,
                Level::View,
                &[Category::VitalSigns],
                false,
                false,
            )),
        )
        .unwrap();
    assert!(
        written
            .iter()
            .any(|v| matches!(v.entry().payload, Payload::KeyWrap { opens: false, .. })),
        "Mary's delegation gives keys"
    );
    let sr = w.replica(&sitter);
    assert_eq!(sr.content_state(&reading), Some(ContentState::Opened));
    // And a write by the sitter's delegator afterwards is readable by the sitter too.
    let later = w.create(&g, Category::VitalSigns, bp(130, 84));
    assert_eq!(
        w.replica(&sitter).content_state(&later),
        Some(ContentState::Opened)
    );
}

/// Sealed content in a lean record (bodies read from a source when asked) opens, folds
/// and stays locked exactly as in a full one, for every reader; and a lean replica writes.
#[test]
fn a_lean_replica_opens_and_folds_sealed_content_as_a_full_one() {
    let mut w = World::new(4);
    let nurse = key(4, "Nurse");
    let carer = key(4, "Carer");
    let g = w.george.clone();
    let nurse_grant = w.grant(&nurse, Level::View, &[]);
    w.grant(&carer, Level::Write, &[Category::VitalSigns]);
    let before = w.create(&carer, Category::VitalSigns, bp(120, 80));
    w.revoke(nurse_grant);
    let after = w.create(&carer, Category::VitalSigns, bp(150, 95));
    let source = std::sync::Arc::new(cophr_protocol::testkit::MemSource::of(w.relay.entries()));
    for reader in [&nurse, &carer, &g] {
        let full = w.replica(reader);
        let mut lean = full.clone();
        lean.set_source(source.clone());
        assert!(lean.held_in_memory() < full.len());
        for id in [before, after] {
            assert_eq!(lean.content_state(&id), full.content_state(&id));
            assert_eq!(lean.payload(&id).as_deref(), full.payload(&id).as_deref());
        }
        let t = w.now;
        assert_eq!(
            current(&lean, &lean.viewer(&reader.actor(), t)),
            current(&full, &full.viewer(&reader.actor(), t))
        );
        // Reading opened the content in both; only the full record keeps it.
        assert_eq!(lean.opened_in_memory(), 0);
        if reader.actor() != nurse.actor() {
            assert!(full.opened_in_memory() >= 2);
        }
    }
    // The carer writes from a lean replica: the write checks and applies like any other.
    let mut lean = w.replica(&carer);
    lean.set_source(source.clone());
    let vs = lean
        .prepare_sealed(
            &carer,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(130, 85),
            },
            w.now,
            None,
            w.policy,
            &mut w.rng,
        )
        .unwrap();
    for v in vs {
        source.put(v.clone());
        w.relay.apply(v.clone()).unwrap();
        lean.apply(v).unwrap();
    }
    assert_eq!(lean.len(), w.relay.len());
    let cv = lean.viewer(&carer.actor(), w.now);
    assert_eq!(current(&lean, &cv).items.len(), 3);
}

/// A scan stored apart from its entry: its bytes are sealed under the document's own key,
/// which travels only in the sealed body; the entry lists the stored bytes' hash and size
/// in clear, so a relay knows what to fetch, check and serve, and nothing else; a reader
/// opens the body, the key and the bytes. A writer whose clear list is not its body's is
/// flagged by every reader (a relay would serve other bytes than the body names).
#[test]
fn a_document_stored_apart_is_sealed_listed_in_clear_and_checked_by_readers() {
    use cophr_protocol::blob::{self, BlobHash, BlobKey, DocumentFile};
    let mut w = World::new(21);
    let g = w.george.clone();
    let mut rng = SeededRng::new(21);
    let scan = [
        b"%PDF-1.7\n".as_slice(),
        &vec![7u8; 3 * blob::SEGMENT_BYTES + 5],
    ]
    .concat();
    let doc_key = BlobKey::generate(&mut rng);
    let stored = blob::seal_all(&doc_key, &scan).unwrap();
    let file = DocumentFile {
        hash: BlobHash::of(&stored),
        size: scan.len() as u64,
        key: Some(doc_key.clone()),
    };
    let body = {
        let mut m = std::collections::BTreeMap::new();
        m.insert(
            "title".to_owned(),
            Value::Text("Renal clinic letter".into()),
        );
        m.insert(
            "media-type".to_owned(),
            Value::Text("application/pdf".into()),
        );
        m.insert("file".to_owned(), file.to_value());
        Value::Map(m)
    };
    let id = w.create(&g, Category::Documents, body.clone());

    // The relay: the stored bytes' hash and size, never the key or the title.
    let v = w.relay.get(&id).unwrap();
    assert_eq!(w.relay.blobs_of(&v.entry().payload), vec![file.blob_ref()]);
    assert_eq!(file.blob_ref().size, stored.len() as u64);
    assert!(!contains(v.signed().bytes(), doc_key.as_bytes()));
    assert!(!contains(v.signed().bytes(), b"Renal clinic letter"));

    // A reader: the body, its key, the bytes.
    let r = w.replica(&g);
    let items = current(&r, &r.viewer(&g.actor(), w.now)).items;
    let item = items.iter().find(|i| i.id == id).unwrap();
    assert_eq!(item.flag, None);
    let got = DocumentFile::from_value(item.body.get("file").unwrap()).unwrap();
    assert_eq!(got, file);
    assert_eq!(
        blob::open_all(got.key.as_ref().unwrap(), &stored).unwrap(),
        scan
    );

    // Sealed without listing its document in clear: accepted by the relay (it cannot
    // tell), flagged by the reader.
    let (epoch, k) = epoch_key_of(&r, &g, &id);
    let unlisted = sealed_create(&r, &g, Category::Documents, epoch, &k, &body, w.now);
    let unlisted_id = unlisted.id();
    assert!(w.relay.blobs_of(&unlisted.entry().payload).is_empty());
    w.relay.apply(unlisted).unwrap();
    let r = w.replica(&g);
    let items = current(&r, &r.viewer(&g.actor(), w.now)).items;
    let flag = items
        .iter()
        .find(|i| i.id == unlisted_id)
        .and_then(|i| i.flag.clone())
        .expect("flagged");
    assert!(flag.contains("lists in clear"), "{flag}");
}

/// The list in clear is bounded, sorted and only on a create or an amend.
#[test]
fn document_lists_in_clear_are_checked_before_the_gate() {
    use cophr_protocol::blob::{BlobHash, BlobRef, MAX_BLOBS_PER_ENTRY, MAX_BLOB_BYTES};
    use cophr_protocol::entry::{check_structure, EntryError};
    let mut w = World::new(22);
    let g = w.george.clone();
    let id = w.create(&g, Category::Allergies, text_body(&[("agent", "Latex")]));
    let good = w.relay.get(&id).unwrap().entry().clone();
    let r = |b: u8, size| BlobRef {
        hash: BlobHash([b; 32]),
        size,
    };
    let with = |blobs: Vec<BlobRef>, delete: bool| {
        let mut e = good.clone();
        let Payload::SealedCreate { content, .. } = &e.payload else {
            panic!("sealed");
        };
        let mut content = content.clone();
        content.blobs = blobs;
        e.payload = if delete {
            Payload::SealedDelete {
                target: id,
                content,
            }
        } else {
            Payload::SealedCreate {
                category: Category::Allergies,
                content,
            }
        };
        check_structure(&e)
    };
    assert_eq!(with(vec![r(1, 10), r(2, 10)], false), Ok(()));
    assert!(matches!(
        with(vec![r(2, 10), r(1, 10)], false),
        Err(EntryError::Documents(_))
    ));
    assert!(matches!(
        with(vec![r(1, MAX_BLOB_BYTES + 1)], false),
        Err(EntryError::Documents(_))
    ));
    let many = (0..=MAX_BLOBS_PER_ENTRY as u8).map(|b| r(b, 1)).collect();
    assert!(matches!(with(many, false), Err(EntryError::Documents(_))));
    assert!(matches!(
        with(vec![r(1, 10)], true),
        Err(EntryError::Documents(_))
    ));
}

/// Issue 19: a member of an organisation reads what the organisation reads once its node
/// gives them the keys, writes sealed content under the organisation's grant, and after
/// the organisation removes them opens nothing written after (a new epoch leaves them out).
#[test]
fn an_organisations_member_gets_its_keys_and_loses_them_from_their_removal_on() {
    use cophr_protocol::org::Role;
    let mut w = World::new(19);
    let org = key(19, "Leeds Home Care");
    let nurse = key(19, "nurse");
    let mut org_record = cophr_protocol::testkit::Fixture::with_profile(
        org.clone(),
        profile("Leeds Home Care", "organisation", None),
    );
    org_record
        .write(
            &org,
            Payload::AddMember {
                member: nurse.actor(),
                role: Role::preset("nurse").unwrap(),
                label: "Jo".into(),
            },
        )
        .unwrap();
    let proof = org_record.record.membership_proof(&nurse.actor()).unwrap();
    w.grant(&org, Level::Write, &[Category::VitalSigns]);
    let g = w.george.clone();
    let before_join = w.create(&g, Category::VitalSigns, bp(118, 76));
    // A sealed stream outside the organisation's grant: its removal of a member must not
    // need (nor try) to open an epoch there.
    w.create(
        &g,
        Category::Allergies,
        text_body(&[("agent", "Penicillin")]),
    );
    // The nurse joins (an administrative entry, in clear), then the organisation's node
    // gives them every key it holds.
    let nurse_rec = w.replica(&nurse);
    let join = nurse_rec.prepare_join(&nurse, proof, w.now, None).unwrap();
    w.now += 1000;
    w.relay.apply(join).unwrap();
    let org_rec = w.replica(&org);
    let gifts = org_rec
        .prepare_member_keys(&org, w.now, &None, &mut w.rng)
        .unwrap();
    assert!(
        !gifts.is_empty(),
        "the member is owed the organisation's keys"
    );
    for v in gifts {
        w.relay.apply(v).unwrap();
    }
    assert!(
        w.replica(&org)
            .prepare_member_keys(&org, w.now, &None, &mut w.rng)
            .unwrap()
            .is_empty(),
        "nothing owed twice"
    );
    let by_nurse = w.create(&nurse, Category::VitalSigns, bp(130, 85));
    let nr = w.replica(&nurse);
    assert_eq!(nr.content_state(&before_join), Some(ContentState::Opened));
    assert_eq!(nr.content_state(&by_nurse), Some(ContentState::Opened));
    assert_eq!(
        w.replica(&g).content_state(&by_nurse),
        Some(ContentState::Opened)
    );

    // The organisation removes the nurse: a new epoch, not for them.
    let vs = w
        .write(
            &org,
            Payload::RemoveDevice {
                device: nurse.actor(),
                category: None,
                reason: "left".into(),
            },
        )
        .unwrap();
    let opened = vs.iter().any(|v| {
        matches!(&v.entry().payload, Payload::KeyWrap { opens: true, wraps, .. }
            if wraps.iter().all(|x| x.to != nurse.actor()))
    });
    assert!(opened, "a new epoch follows the removal");
    let after = w.create(&g, Category::VitalSigns, bp(150, 95));
    let nr = w.replica(&nurse);
    assert_eq!(nr.content_state(&by_nurse), Some(ContentState::Opened));
    assert_eq!(nr.content_state(&after), Some(ContentState::Locked));
}
