//! A reader opening sealed content a malicious writer chose: arbitrary plaintext bytes,
//! sealed correctly under an epoch the reader holds (so they decrypt), as a create and then
//! an amend, delete or annotation of it, in any core category. The gate accepts them (it
//! cannot read them); reading them (payload, content state, the fold, the flagged list)
//! must never panic, and what does not decode or fails its category's rules is flagged.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use cophr_protocol::care::TaskClear;
use cophr_protocol::entry::Verified;
use cophr_protocol::fold::current;
use cophr_protocol::record::{ContentState, Record};
use cophr_protocol::seal::{self, BoxPublic, EpochId, EpochKey, Place, Sealed, Wrapped};
use cophr_protocol::testkit::{key, profile, SeededRng};
use cophr_protocol::{Category, EntryId, Keypair, Payload};
use libfuzzer_sys::fuzz_target;

const T0: u64 = 1_700_000_000_000;

#[derive(Debug, Arbitrary)]
struct Input {
    category: u8,
    kind: u8,
    first: Vec<u8>,
    second: Vec<u8>,
}

/// Per core category that can be sealed: a record with an epoch opened in that stream,
/// unlocked by the patient, and the epoch's key.
fn bases() -> &'static [(Category, Record, EpochId, EpochKey)] {
    static BASES: OnceLock<Vec<(Category, Record, EpochId, EpochKey)>> = OnceLock::new();
    BASES.get_or_init(|| {
        let g = patient();
        let mut base = Record::new(g.actor());
        let genesis = base
            .prepare(
                &g,
                Payload::Genesis {
                    profile: profile("George", "patient", None),
                },
                None,
                T0,
                None,
            )
            .expect("genesis");
        base.apply(genesis).expect("genesis applies");
        base.unlock(&g);
        let mut rng = SeededRng::new(7);
        Category::BUILT_IN
            .iter()
            .map(|c| {
                let mut r = base.clone();
                let epoch = EpochId::generate(&mut rng);
                let k = EpochKey::generate(&mut rng);
                let place = Place {
                    record: &r.id(),
                    stream: c.name(),
                    epoch,
                };
                let a = g.actor();
                let wraps: Vec<Wrapped> = vec![seal::wrap(
                    &k,
                    a,
                    &BoxPublic::of(&a).expect("a box key"),
                    place,
                    &mut rng,
                )
                .expect("wraps")];
                let e = r.next_entry(
                    &a,
                    Payload::KeyWrap {
                        category: c.clone(),
                        epoch,
                        opens: true,
                        wraps,
                        thread: None,
                    },
                    None,
                    T0 + 1,
                    None,
                );
                r.apply(Verified::trusted(e.sign(&g)))
                    .expect("the opening applies");
                (c.clone(), r, epoch, k)
            })
            .collect()
    })
}

fn patient() -> Keypair {
    key(1, "George")
}

fuzz_target!(|input: Input| {
    let all = bases();
    let (c, base, epoch, k) = &all[input.category as usize % all.len()];
    let g = patient();
    let mut r = base.clone();
    let mut rng = SeededRng::new(input.kind as u64);
    let place = Place {
        record: &r.id(),
        stream: c.name(),
        epoch: *epoch,
    };
    let Ok(mut first) = seal::seal(k, place, &g.actor(), &input.first, &mut rng) else {
        return;
    };
    // A task's create and amend carry its lifecycle fields in clear (the gate reads them);
    // readers check what is sealed agrees.
    let task = |status: &str| {
        (*c == Category::Tasks).then(|| TaskClear {
            kind: "referral".into(),
            requester: g.actor(),
            owner: g.actor(),
            status: status.into(),
            questionnaire: None,
        })
    };
    first.task = task("sent");
    let e = r.next_entry(
        &g.actor(),
        Payload::SealedCreate {
            category: c.clone(),
            content: first,
        },
        None,
        T0 + 2,
        None,
    );
    let created: EntryId = match r.apply(Verified::trusted(e.sign(&g))) {
        Ok(_) => r.entries().last().map(|v| v.id()).expect("held"),
        Err(_) => return,
    };
    if let Ok(second) = seal::seal(k, place, &g.actor(), &input.second, &mut rng) {
        let payload = match input.kind % 3 {
            0 => Payload::SealedAmend {
                target: created,
                content: Sealed {
                    task: task("received"),
                    ..second
                },
            },
            1 => Payload::SealedDelete {
                target: created,
                content: second,
            },
            _ => Payload::SealedAnnotate {
                target: created,
                content: second,
            },
        };
        let e = r.next_entry(&g.actor(), payload, None, T0 + 3, None);
        let _ = r.apply(Verified::trusted(e.sign(&g)));
    }
    for v in r.entries() {
        let id = v.id();
        let state = r.content_state(&id);
        assert!(
            !matches!(state, Some(ContentState::Locked)),
            "the patient holds the epoch key"
        );
        let _ = r.payload(&id);
    }
    let _ = r.flagged();
    let _ = current(&r, &r.viewer(&g.actor(), T0 + 4));
});
