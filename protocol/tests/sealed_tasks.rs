//! Sealed tasks (`docs/care-team.md`, "Sealed tasks"): a task's description, due date and
//! note are sealed; its kind, parties, status (and an assigned questionnaire) are signed in
//! clear beside them, so a relay holding only ciphertext still enforces the lifecycle.
//! Each test is the attack: what a blind host holds, a forged or out-of-order step given
//! to a key-less relay's gate, a writer lying in one of the two parts, old in-clear tasks.

use cophr_protocol::access::Level;
use cophr_protocol::care::{TaskClear, TaskError};
use cophr_protocol::entry::SignedEntry;
use cophr_protocol::fold::current;
use cophr_protocol::record::{ContentState, Record, Rejection, SealPolicy, SealingError};
use cophr_protocol::schema::body_from_json;
use cophr_protocol::testkit::{grant, key, profile, SeededRng};
use cophr_protocol::{ActorId, Category, EntryId, Keypair, Payload, Value, Verified};

const REFERRAL: &str = "Refer George to the renal clinic: eGFR falling";
const OLD: &str = "Home blood test before the diabetes review";

/// One shared record, written through each writer's own unlocked replica; `relay` holds
/// every entry and no key.
struct World {
    relay: Record,
    george: Keypair,
    gp: Keypair,
    clinic: Keypair,
    pharmacist: Keypair,
    host: Keypair,
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
        let mut w = World {
            relay,
            george,
            gp: key(seed + 1, "GP"),
            clinic: key(seed + 2, "Renal clinic"),
            pharmacist: key(seed + 3, "Pharmacist"),
            host: key(seed + 4, "Home host"),
            now: 1_700_000_001_000,
            rng: SeededRng::new(seed),
            policy: SealPolicy {
                seal_new_streams: false,
                history: false,
            },
        };
        let g = w.george.clone();
        for (k, level) in [
            (w.gp.clone(), Level::Write),
            (w.clinic.clone(), Level::Write),
            (w.pharmacist.clone(), Level::Write),
            (w.host.clone(), Level::Relay),
        ] {
            let cats: &[Category] = if level == Level::Relay {
                &[]
            } else {
                &[Category::Tasks]
            };
            w.write(&g, Payload::Grant(grant(&k, level, cats, false, false)))
                .unwrap();
        }
        w
    }

    fn replica(&self, key: &Keypair) -> Record {
        let mut r = self.relay.clone();
        r.unlock(key);
        r
    }

    fn prepare(&mut self, key: &Keypair, payload: Payload) -> Result<Vec<Verified>, Rejection> {
        let mine = self.replica(key);
        mine.prepare_sealed(key, payload, self.now, None, self.policy, &mut self.rng)
    }

    fn write(&mut self, key: &Keypair, payload: Payload) -> Result<Vec<Verified>, Rejection> {
        let vs = self.prepare(key, payload)?;
        self.now += 1000;
        for v in &vs {
            self.relay.apply(v.clone())?;
        }
        Ok(vs)
    }

    /// A key-less relay replaying every entry from its bytes, checking everything.
    fn fresh_relay(&self) -> Record {
        let mut fresh = Record::new(self.george.actor());
        for e in self.relay.entries() {
            let v = SignedEntry::decode(e.signed().bytes())
                .unwrap()
                .verify()
                .unwrap();
            fresh.apply(v).unwrap();
        }
        fresh
    }

    /// `payload` signed by `key` at the relay's heads, as a modified node would send it
    /// (no writer-side check).
    fn forged(&self, key: &Keypair, payload: Payload) -> Verified {
        let auth = self.relay.grants_of(&key.actor()).first().copied();
        let e = self
            .relay
            .next_entry(&key.actor(), payload, auth, self.now, None);
        e.sign(key).verify().unwrap()
    }

    fn body_of(&self, reader: &Keypair, item: &EntryId) -> Value {
        let r = self.replica(reader);
        let v = r.viewer(&reader.actor(), self.now);
        current(&r, &v)
            .items
            .into_iter()
            .find(|i| i.id == *item)
            .map(|i| i.body.to_value())
            .expect("the item is shown")
    }
}

fn task(requester: &ActorId, owner: &ActorId, status: &str, description: &str) -> Value {
    body_from_json(
        &Category::Tasks,
        &serde_json::json!({"kind": "referral", "description": description,
            "requester": requester.to_string(), "owner": owner.to_string(),
            "status": status, "note": format!("urgent: {description}")}),
    )
    .unwrap()
}

fn with(body: &Value, field: &str, value: &str) -> Value {
    let mut b = body.clone();
    if let Value::Map(m) = &mut b {
        m.insert(field.into(), Value::Text(value.into()));
    }
    b
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn status_of(body: &Value) -> &str {
    body.get("status").and_then(Value::as_text).unwrap()
}

/// The sealed amend `key` would write (not applied), to be tampered with.
fn sealed_step(w: &mut World, key: &Keypair, target: EntryId, body: Value) -> Payload {
    let vs = w.prepare(key, Payload::Amend { target, body }).unwrap();
    assert_eq!(vs.len(), 1, "an epoch is already open");
    let p = vs[0].entry().payload.clone();
    assert!(matches!(p, Payload::SealedAmend { .. }), "{}", p.kind());
    p
}

fn set_status(p: &Payload, status: &str) -> Payload {
    let mut p = p.clone();
    if let Payload::SealedAmend { content, .. } = &mut p {
        content.task.as_mut().unwrap().status = status.into();
    }
    p
}

#[test]
fn a_blind_host_holds_no_referral_text_yet_its_gate_refuses_forged_and_out_of_order_steps() {
    let mut w = World::new(40);
    let (gp, clinic, pharmacist) = (w.gp.clone(), w.clinic.clone(), w.pharmacist.clone());
    let (gpa, ca) = (gp.actor(), clinic.actor());

    // Before sealing: an old task written in clear.
    let old = w
        .write(
            &gp,
            Payload::Create {
                category: Category::Tasks,
                body: task(&gpa, &ca, "sent", OLD),
            },
        )
        .unwrap()[0]
        .id();
    assert!(matches!(
        w.relay.get(&old).unwrap().entry().payload,
        Payload::Create { .. }
    ));

    // Sealing on: the referral is sealed, its lifecycle fields in clear.
    w.policy.seal_new_streams = true;
    let sent = w
        .write(
            &gp,
            Payload::Create {
                category: Category::Tasks,
                body: task(&gpa, &ca, "sent", REFERRAL),
            },
        )
        .unwrap();
    let referral = sent.last().unwrap().id();
    let stored = w.relay.get(&referral).unwrap();
    let Payload::SealedCreate { content, .. } = &stored.entry().payload else {
        panic!("the referral is not sealed");
    };
    assert_eq!(
        content.task,
        Some(TaskClear {
            kind: "referral".into(),
            requester: gpa,
            owner: ca,
            status: "sent".into(),
            questionnaire: None,
        })
    );

    // The attack: a blind host's files hold neither the description nor the note.
    for e in w.relay.entries() {
        // (the note repeats the description)
        assert!(
            !contains(e.signed().bytes(), REFERRAL.as_bytes()),
            "referral text in clear"
        );
    }
    // A key-less relay replays everything, and reads nothing of the referral.
    let mut relay = w.fresh_relay();
    assert_eq!(relay.len(), w.relay.len());
    assert_eq!(relay.content_state(&referral), Some(ContentState::Locked));
    relay.unlock(&w.host);
    let hv = relay.viewer(&w.host.actor(), w.now);
    let hs = current(&relay, &hv);
    assert!(
        hs.items.iter().all(|i| i.id != referral),
        "the host reads the referral"
    );

    // A forged step by the wrong party: the pharmacist (write on tasks, not the owner)
    // marks it received. The relay's gate, holding only ciphertext, refuses it.
    let honest = sealed_step(
        &mut w,
        &clinic,
        referral,
        with(&task(&gpa, &ca, "sent", REFERRAL), "status", "received"),
    );
    let before = relay.len();
    let forged = w.forged(&pharmacist, honest.clone());
    assert!(
        matches!(
            relay.apply(forged),
            Err(Rejection::Task(TaskError::NotOwner { .. }))
        ),
        "the relay took a step by someone who is not the owner"
    );
    // The requester cannot take the owner's step either.
    let forged = w.forged(&gp, honest.clone());
    assert!(matches!(
        relay.apply(forged),
        Err(Rejection::Task(TaskError::NotOwner { .. }))
    ));
    // Out of order, by the owner: sent → completed.
    let forged = w.forged(&clinic, set_status(&honest, "completed"));
    assert!(matches!(
        relay.apply(forged),
        Err(Rejection::Task(TaskError::OutOfOrder { .. }))
    ));
    // Its clear part stripped: the gate cannot check it, so refuses it.
    let mut stripped = honest.clone();
    if let Payload::SealedAmend { content, .. } = &mut stripped {
        content.task = None;
    }
    let forged = w.forged(&clinic, stripped);
    assert_eq!(
        relay.apply(forged).unwrap_err(),
        Rejection::Sealing(SealingError::TaskClear(Category::Tasks))
    );
    assert_eq!(relay.len(), before, "nothing stored");

    // The honest step passes every gate, the relay's included.
    let step = w.forged(&clinic, honest);
    w.relay.apply(step.clone()).unwrap();
    relay.apply(step.clone()).unwrap();
    // A writer with the key refuses an owner's step that changes the sealed description
    // (the gate reads only the clear part).
    let changed = task(&gpa, &ca, "accepted", "Something else entirely");
    assert!(matches!(
        w.prepare(
            &clinic,
            Payload::Amend {
                target: step.id(),
                body: changed
            }
        ),
        Err(Rejection::Task(TaskError::Fixed("description")))
    ));

    // The old in-clear task still reads, and its next step (sealed now) is checked
    // against it: by the owner, in order.
    let step_old = w
        .write(
            &clinic,
            Payload::Amend {
                target: old,
                body: task(&gpa, &ca, "received", OLD),
            },
        )
        .unwrap()[0]
        .clone();
    assert!(matches!(
        step_old.entry().payload,
        Payload::SealedAmend { .. }
    ));
    relay.apply(step_old).unwrap();
    // Plain content in the sealed stream is refused (the old task's next step is sealed).
    let plain = w.forged(
        &clinic,
        Payload::Amend {
            target: step.id(),
            body: task(&gpa, &ca, "accepted", REFERRAL),
        },
    );
    assert_eq!(
        relay.apply(plain).unwrap_err(),
        Rejection::Sealing(SealingError::MustSeal(Category::Tasks))
    );

    // Readers with the key read both, unflagged.
    let george = w.george.clone();
    for reader in [&george, &gp, &clinic] {
        let r = w.replica(reader);
        assert_eq!(r.content_state(&step.id()), Some(ContentState::Opened));
        let b = w.body_of(reader, &referral);
        assert_eq!(status_of(&b), "received");
        assert_eq!(
            b.get("description").and_then(Value::as_text),
            Some(REFERRAL)
        );
        let b = w.body_of(reader, &old);
        assert_eq!(status_of(&b), "received");
        assert_eq!(b.get("description").and_then(Value::as_text), Some(OLD));
    }
    assert!(w.replica(&george).flagged().is_empty());
}

#[test]
fn a_writer_lying_in_the_clear_part_is_flagged_by_every_reader() {
    let mut w = World::new(50);
    w.policy.seal_new_streams = true;
    let (gp, clinic) = (w.gp.clone(), w.clinic.clone());
    let (gpa, ca) = (gp.actor(), clinic.actor());
    let referral = w
        .write(
            &gp,
            Payload::Create {
                category: Category::Tasks,
                body: task(&gpa, &ca, "sent", REFERRAL),
            },
        )
        .unwrap()
        .last()
        .unwrap()
        .id();
    // The clinic's modified node seals "received" but signs "rejected" in clear: the gate
    // reads a valid step (the owner may reject a sent task), so every replica takes it…
    let honest = sealed_step(
        &mut w,
        &clinic,
        referral,
        task(&gpa, &ca, "received", REFERRAL),
    );
    let lie = w.forged(&clinic, set_status(&honest, "rejected"));
    w.relay.apply(lie.clone()).unwrap();
    let mut relay = w.fresh_relay();
    assert_eq!(relay.content_state(&lie.id()), Some(ContentState::Locked));
    // …and every reader that opens it flags it: the two parts disagree.
    for reader in [&w.george, &gp, &clinic] {
        let r = w.replica(reader);
        match r.content_state(&lie.id()) {
            Some(ContentState::Flagged(why)) => assert!(why.contains("disagree"), "{why}"),
            other => panic!("not flagged: {other:?}"),
        }
    }
    // The gate goes by the clear part on every replica: the task is closed, the owner's
    // next step refused by the relay as by anyone.
    let Payload::SealedAmend { content, .. } = set_status(&honest, "accepted") else {
        unreachable!()
    };
    let next = w.forged(
        &clinic,
        Payload::SealedAmend {
            target: lie.id(),
            content,
        },
    );
    assert!(matches!(
        relay.apply(next),
        Err(Rejection::Task(TaskError::Closed(_)))
    ));
}
