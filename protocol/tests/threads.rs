//! Conversations (`docs/care-team.md`, "Conversations"): a thread is private to its
//! participants by the record's rules on every replica. Threat model: a participant, a
//! non-participant who holds a grant that reads (or writes) `messages`, and a blind host.
//! Each test plays the attack, not only the happy path.

use cophr_protocol::access::Level;
use cophr_protocol::care::thread::{ThreadError, READ_MARK};
use cophr_protocol::fold::current;
use cophr_protocol::record::{ContentState, Record, Rejection, SealPolicy};
use cophr_protocol::seal::{self, BoxKey, BoxPublic, EpochId, EpochKey, Place, ThreadEpoch};
use cophr_protocol::testkit::{grant, key, text_body, Fixture, SeededRng};
use cophr_protocol::{Category, EntryId, Keypair, Payload, Value, Verified};
use serde_json::json;

fn body(j: serde_json::Value) -> Value {
    Value::from_json(&j)
}

fn start(text: &str, participants: &[&Keypair]) -> Payload {
    let ids: Vec<String> = participants.iter().map(|k| k.actor().to_string()).collect();
    Payload::Create {
        category: Category::Messages,
        body: body(json!({"text": text, "subject": "Your kidneys", "participants": ids})),
    }
}

fn message(thread: EntryId, text: &str, reply: Option<EntryId>) -> Payload {
    let mut b = json!({"text": text, "thread": thread.to_string()});
    if let Some(r) = reply {
        b["in-reply-to"] = json!(r.to_string());
    }
    Payload::Create {
        category: Category::Messages,
        body: body(b),
    }
}

fn read(target: EntryId) -> Payload {
    Payload::Annotate {
        target,
        text: READ_MARK.into(),
    }
}

/// An entry as a replica receives it from the network: signed without the writer's
/// checks, then given to the gate.
fn from_network(r: &Record, k: &Keypair, payload: Payload, now: u64) -> Verified {
    let auth = r.grants_of(&k.actor()).first().copied();
    let e = r.next_entry(&k.actor(), payload, auth, now, None);
    Verified::trusted(e.sign(k))
}

struct Team {
    f: Fixture,
    gp: Keypair,
    nurse: Keypair,
    /// Holds write on messages, but is not in the thread.
    pharmacist: Keypair,
    nurse_grant: EntryId,
}

fn team() -> Team {
    let mut f = Fixture::new(1, "george");
    let gp = key(2, "gp");
    let nurse = key(3, "renal nurse");
    let pharmacist = key(4, "pharmacist");
    f.grant(grant(
        &gp,
        Level::Write,
        &[Category::Messages],
        false,
        false,
    ));
    let nurse_grant = f.grant(grant(
        &nurse,
        Level::Write,
        &[Category::Messages],
        false,
        false,
    ));
    f.grant(grant(
        &pharmacist,
        Level::Write,
        &[Category::Messages, Category::Medications],
        false,
        false,
    ));
    Team {
        f,
        gp,
        nurse,
        pharmacist,
        nurse_grant,
    }
}

fn texts_seen(r: &Record, k: &Keypair, now: u64) -> Vec<String> {
    let v = r.viewer(&k.actor(), now);
    let mut out: Vec<String> = current(r, &v)
        .in_category(&Category::Messages)
        .filter_map(|i| i.body.to_value().get("text")?.as_text().map(str::to_owned))
        .collect();
    out.sort();
    out
}

#[test]
fn a_non_participant_grantee_of_messages_sees_none_of_a_thread() {
    let mut t = team();
    let (gp, nurse, pharm) = (t.gp.clone(), t.nurse.clone(), t.pharmacist.clone());
    let s =
        t.f.write(&gp, start("Your eGFR is lower", &[&nurse]))
            .unwrap()
            .id();
    let m =
        t.f.write(&nurse, message(s, "I will call on Monday", Some(s)))
            .unwrap()
            .id();
    let patient = t.f.patient.clone();
    let receipt = t.f.write(&patient, read(m)).unwrap().id();
    t.f.write(
        &gp,
        Payload::Create {
            category: Category::Messages,
            body: text_body(&[("text", "Clinic closed on Friday")]),
        },
    )
    .unwrap();
    let now = t.f.now;
    let r = &t.f.record;
    let all = vec![
        "Clinic closed on Friday".to_owned(),
        "I will call on Monday".to_owned(),
        "Your eGFR is lower".to_owned(),
    ];
    // Participants (the starter, the named nurse, the patient) read the whole thread.
    for k in [&gp, &nurse, &patient] {
        assert_eq!(texts_seen(r, k, now), all, "{k:?}");
    }
    // The pharmacist holds write on messages and reads the loose message only: no start,
    // no message, no read receipt, by any read path (fold, `can_see` behind sync and
    // notifications).
    assert_eq!(texts_seen(r, &pharm, now), vec!["Clinic closed on Friday"]);
    let pv = r.viewer(&pharm.actor(), now);
    for id in [s, m, receipt] {
        assert!(!r.can_see(&pv, &id), "{id:?} seen by a non-participant");
    }
    assert!(!r.in_thread(&pv, &s));
    assert!(r.in_thread(&r.viewer(&nurse.actor(), now), &s));
    // Who has read: the patient.
    assert_eq!(r.read_by(&m), vec![(r.id(), receipt)]);
    assert_eq!(r.thread_entries(&s), vec![s, m, receipt]);
    assert_eq!(r.thread_starts(), vec![s]);
}

#[test]
fn a_non_participant_cannot_write_into_a_thread_from_any_replica() {
    let mut t = team();
    let (gp, nurse, pharm) = (t.gp.clone(), t.nurse.clone(), t.pharmacist.clone());
    let s =
        t.f.write(&gp, start("Your eGFR is lower", &[&nurse]))
            .unwrap()
            .id();
    let len = t.f.record.len();
    let want = Rejection::Thread(ThreadError::NotParticipant {
        thread: s,
        actor: pharm.actor(),
    });
    // Through its own writer…
    assert_eq!(
        t.f.write(&pharm, message(s, "Let me in", None))
            .unwrap_err(),
        want
    );
    // …and signed by hand, arriving from the network: the gate refuses it.
    let now = t.f.now;
    for p in [message(s, "Let me in", None), read(s)] {
        let v = from_network(&t.f.record, &pharm, p, now);
        assert_eq!(t.f.record.apply(v).unwrap_err(), want);
    }
    assert_eq!(t.f.record.len(), len, "nothing stored");
    // A message naming as its thread something that is not a thread's start.
    let loose =
        t.f.create(&pharm, Category::Messages, text_body(&[("text", "hello")]))
            .unwrap();
    assert_eq!(
        t.f.write(&nurse, message(loose, "x", None)).unwrap_err(),
        Rejection::Thread(ThreadError::NotAThread(loose))
    );
}

#[test]
fn participants_must_read_messages_and_stay_fixed() {
    let mut t = team();
    let (gp, nurse) = (t.gp.clone(), t.nurse.clone());
    let outsider = key(9, "neighbour");
    let physio = key(10, "physio");
    t.f.grant(grant(
        &physio,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    for k in [&outsider, &physio] {
        assert_eq!(
            t.f.write(&gp, start("hello", &[k])).unwrap_err(),
            Rejection::Thread(ThreadError::NoAccess(k.actor()))
        );
    }
    let s = t.f.write(&gp, start("hello", &[&nurse])).unwrap().id();
    // Adding someone later is a new thread: a version keeps the participants.
    let pharm = t.pharmacist.clone();
    let ids = vec![nurse.actor().to_string(), pharm.actor().to_string()];
    assert_eq!(
        t.f.write(
            &gp,
            Payload::Amend {
                target: s,
                body: body(json!({"text": "hello", "participants": ids})),
            },
        )
        .unwrap_err(),
        Rejection::Thread(ThreadError::ParticipantsFixed)
    );
    // A message stays in its thread; a reply answers an entry of the same thread.
    let patient = t.f.patient.clone();
    let other = t.f.write(&gp, start("second", &[&patient])).unwrap().id();
    let m =
        t.f.write(&nurse, message(s, "in the first", None))
            .unwrap()
            .id();
    assert_eq!(
        t.f.write(
            &nurse,
            Payload::Amend {
                target: m,
                body: body(json!({"text": "moved", "thread": other.to_string()})),
            },
        )
        .unwrap_err(),
        Rejection::Thread(ThreadError::Moved)
    );
    assert_eq!(
        t.f.write(&gp, message(other, "wrong reply", Some(m)))
            .unwrap_err(),
        Rejection::Thread(ThreadError::ReplyElsewhere(m))
    );
    // The nurse is not in the second thread (the GP started it naming only George).
    let pv = t.f.record.viewer(&nurse.actor(), t.f.now);
    assert!(!t.f.record.can_see(&pv, &other));
}

#[test]
fn a_participant_removed_by_revocation_is_refused_from_then_on() {
    let mut t = team();
    let (gp, nurse) = (t.gp.clone(), t.nurse.clone());
    let s =
        t.f.write(&gp, start("Your eGFR is lower", &[&nurse]))
            .unwrap()
            .id();
    let before = t.f.write(&nurse, message(s, "Seen it", None)).unwrap().id();
    let patient = t.f.patient.clone();
    t.f.write(
        &patient,
        Payload::Revoke {
            grant: t.nurse_grant,
            category: None,
            reason: "moved to another trust".into(),
        },
    )
    .unwrap();
    let after =
        t.f.write(&gp, message(s, "After she left", None))
            .unwrap()
            .id();
    let len = t.f.record.len();
    // Her write is refused, through her writer and from the network.
    assert!(matches!(
        t.f.write(&nurse, message(s, "Still here?", None))
            .unwrap_err(),
        Rejection::Access(_)
    ));
    let v = from_network(
        &t.f.record,
        &nurse,
        message(s, "Still here?", None),
        t.f.now,
    );
    let err = t.f.record.apply(v).unwrap_err();
    assert!(matches!(err, Rejection::Access(_)), "{err:?}");
    assert_eq!(t.f.record.len(), len);
    // She keeps what she was shown; nothing new.
    let nv = t.f.record.viewer(&nurse.actor(), t.f.now);
    assert!(t.f.record.can_see(&nv, &s));
    assert!(t.f.record.can_see(&nv, &before));
    assert!(!t.f.record.can_see(&nv, &after));
    // And she can no longer be named in a new thread.
    assert_eq!(
        t.f.write(&gp, start("new", &[&nurse])).unwrap_err(),
        Rejection::Thread(ThreadError::NoAccess(nurse.actor()))
    );
}

#[test]
fn sealed_threads_are_checked_by_their_writer_and_filtered_by_readers() {
    let mut t = team();
    let (gp, nurse, pharm) = (t.gp.clone(), t.nurse.clone(), t.pharmacist.clone());
    let host = key(11, "community host");
    t.f.grant(grant(&host, Level::Relay, &[], false, false));
    let policy = SealPolicy {
        seal_new_streams: true,
        history: true,
    };
    let mut rng = SeededRng::new(5);
    let mut write = |t: &mut Team, k: &Keypair, p: Payload| -> Result<EntryId, Rejection> {
        let mut mine = t.f.record.clone();
        mine.unlock(k);
        let vs = mine.prepare_sealed(k, p, t.f.now, None, policy, &mut rng)?;
        t.f.now += 1000;
        for v in &vs {
            t.f.record.apply(v.clone())?;
        }
        Ok(vs.last().unwrap().id())
    };
    let s = write(&mut t, &gp, start("Your eGFR is lower", &[&nurse])).unwrap();
    let m = write(&mut t, &nurse, message(s, "I will call", Some(s))).unwrap();
    assert!(matches!(
        t.f.record.get(&m).unwrap().entry().payload,
        Payload::SealedCreate { .. }
    ));
    // The pharmacist's writer refuses to write into the thread (the gate cannot read
    // sealed content; the writer checks before sealing).
    let len = t.f.record.len();
    // She holds no key for the thread (so cannot read who takes part): sealed under a
    // conversation's key not given to her, she does not take part.
    assert_eq!(
        write(&mut t, &pharm, message(s, "Let me in", None)).unwrap_err(),
        Rejection::Thread(ThreadError::NotParticipant {
            thread: s,
            actor: pharm.actor()
        })
    );
    assert_eq!(t.f.record.len(), len);
    let now = t.f.now;
    // Each reader's own replica.
    let replica = |k: &Keypair| {
        let mut r = t.f.record.clone();
        r.unlock(k);
        r
    };
    for k in [&gp, &nurse] {
        let r = replica(k);
        assert_eq!(texts_seen(&r, k, now).len(), 2, "{k:?}");
    }
    let r = replica(&pharm);
    assert!(texts_seen(&r, &pharm, now).is_empty());
    let pv = r.viewer(&pharm.actor(), now);
    // Her replica holds no key for it: someone else's conversation, left out of her views
    // (not counted among what she lacks the keys for).
    assert!(r.others_conversation(&pv, &s) && r.others_conversation(&pv, &m));
    let state = current(&r, &pv);
    assert!(!state.locked.contains(&s) && !state.locked.contains(&m));
    // The blind host holds both and reads neither.
    let r = replica(&host);
    assert!(r.thread_starts().is_empty());
    assert!(texts_seen(&r, &host, now).is_empty());
}

#[test]
fn a_participant_lists_threads_and_sees_who_has_read_each_message() {
    use cophr_protocol::care::thread::{thread, threads};
    let mut t = team();
    let (gp, nurse, pharm) = (t.gp.clone(), t.nurse.clone(), t.pharmacist.clone());
    let patient = t.f.patient.clone();
    let s =
        t.f.write(&gp, start("Your eGFR is lower", &[&nurse]))
            .unwrap()
            .id();
    let m =
        t.f.write(&nurse, message(s, "I will call", Some(s)))
            .unwrap()
            .id();
    t.f.write(&patient, read(m)).unwrap();
    t.f.write(&gp, read(m)).unwrap();
    t.f.write(&gp, read(m)).unwrap();
    let now = t.f.now;
    let r = &t.f.record;
    let gv = r.viewer(&gp.actor(), now);
    let list = threads(r, &gv);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].subject.as_deref(), Some("Your kidneys"));
    assert_eq!(list[0].messages, 2);
    assert_eq!(
        list[0].unread, 0,
        "the GP wrote the start and read the reply"
    );
    let mut want = vec![r.id(), gp.actor(), nurse.actor()];
    want.sort();
    assert_eq!(list[0].participants, want);
    let view = thread(r, &gv, &s).unwrap();
    assert_eq!(view.messages[1].in_reply_to, Some(s));
    assert_eq!(view.messages[1].read_by, vec![r.id(), gp.actor()]);
    assert!(view.messages[0].mine && !view.messages[1].mine);
    // The nurse has not read the GP's start.
    let nv = r.viewer(&nurse.actor(), now);
    assert_eq!(threads(r, &nv)[0].unread, 1);
    // The pharmacist lists nothing and opens nothing.
    let pv = r.viewer(&pharm.actor(), now);
    assert!(threads(r, &pv).is_empty());
    assert!(thread(r, &pv, &s).is_none());
}

#[test]
fn a_thread_exports_to_fhir_as_communications_with_part_of_in_response_to_and_recipients() {
    use cophr_protocol::fhir::{self, ExportMeta};
    let mut t = team();
    let (gp, nurse) = (t.gp.clone(), t.nurse.clone());
    let s =
        t.f.write(&gp, start("Your eGFR is lower", &[&nurse]))
            .unwrap();
    let m =
        t.f.write(&nurse, message(s.id(), "I will call", Some(s.id())))
            .unwrap();
    let rid = t.f.record.id();
    let body_of = |v: &Verified| match &v.entry().payload {
        Payload::Create { body, .. } => body.clone(),
        other => panic!("{other:?}"),
    };
    let c = Category::Messages;
    let start_fhir = fhir::export(&rid, &s.id(), &c, &body_of(&s), &ExportMeta::default()).unwrap();
    assert_eq!(start_fhir["resourceType"], "Communication");
    assert_eq!(
        start_fhir["recipient"][0]["identifier"]["value"],
        nurse.actor().to_string()
    );
    assert!(start_fhir.get("partOf").is_none());
    let msg = fhir::export(&rid, &m.id(), &c, &body_of(&m), &ExportMeta::default()).unwrap();
    let part_of = format!("Communication/{}", s.id());
    assert_eq!(msg["partOf"][0]["reference"], part_of.as_str());
    assert_eq!(msg["inResponseTo"][0]["reference"], part_of.as_str());
    assert_eq!(msg["payload"][0]["contentString"], "I will call");
}

// ---- per-thread keys -------------------------------------------------------------------
//
// Threat model: a grantee of `messages` who does not take part in a thread runs a modified
// node that ignores the read rule, and obtains every sealed entry of `messages` (a blind
// host serves them all to every reader of the stream). The thread's content must not open
// for them: it is sealed under the thread's own epoch, wrapped only for its participants'
// readers.

const SEALED: SealPolicy = SealPolicy {
    seal_new_streams: true,
    history: true,
};

/// Writes through `k`'s own (unlocked) writer, sealing, and applies what it prepared.
fn sealed_write(
    t: &mut Team,
    k: &Keypair,
    p: Payload,
    policy: SealPolicy,
    rng: &mut SeededRng,
) -> Result<Vec<Verified>, Rejection> {
    let mut mine = t.f.record.clone();
    mine.unlock(k);
    let vs = mine.prepare_sealed(k, p, t.f.now, None, policy, rng)?;
    t.f.now += 1000;
    for v in &vs {
        t.f.record.apply(v.clone())?;
    }
    Ok(vs)
}

/// `k`'s replica of the record, reading as `k`.
fn replica(r: &Record, k: &Keypair) -> Record {
    let mut r = r.clone();
    r.unlock(k);
    r
}

/// The epochs whose key `k` unwraps from the key wraps held, by hand (as a modified node
/// would, ignoring every rule).
fn unwrappable(r: &Record, k: &Keypair) -> Vec<EpochId> {
    let mine = BoxKey::of(k);
    let rid = r.id();
    let mut out = Vec::new();
    for v in r.entries() {
        if let Payload::KeyWrap {
            category,
            epoch,
            wraps,
            ..
        } = &v.entry().payload
        {
            let place = Place {
                record: &rid,
                stream: category.name(),
                epoch: *epoch,
            };
            if wraps.iter().any(|w| seal::unwrap(w, &mine, place).is_ok()) {
                out.push(*epoch);
            }
        }
    }
    out
}

fn epoch_of(r: &Record, id: &EntryId) -> EpochId {
    r.get(id).unwrap().entry().payload.sealed().unwrap().epoch
}

/// George's team with sealing on: the GP starts a thread with the renal nurse, the nurse
/// answers, George marks it read; and a loose message everyone who reads messages reads.
struct SealedThread {
    t: Team,
    rng: SeededRng,
    start: EntryId,
    reply: EntryId,
    receipt: EntryId,
    loose: EntryId,
}

fn sealed_thread() -> SealedThread {
    let mut t = team();
    let mut rng = SeededRng::new(41);
    let (gp, nurse) = (t.gp.clone(), t.nurse.clone());
    let patient = t.f.patient.clone();
    let loose = Payload::Create {
        category: Category::Messages,
        body: body(json!({"text": "Clinic closed on Friday"})),
    };
    let loose = sealed_write(&mut t, &gp, loose, SEALED, &mut rng).unwrap();
    let s = sealed_write(
        &mut t,
        &gp,
        start("Your eGFR is lower", &[&nurse]),
        SEALED,
        &mut rng,
    )
    .unwrap();
    let start_id = s.last().unwrap().id();
    let m = sealed_write(
        &mut t,
        &nurse,
        message(start_id, "I will call", Some(start_id)),
        SEALED,
        &mut rng,
    )
    .unwrap();
    let reply = m.last().unwrap().id();
    let rc = sealed_write(&mut t, &patient, read(reply), SEALED, &mut rng).unwrap();
    SealedThread {
        start: start_id,
        reply,
        receipt: rc.last().unwrap().id(),
        loose: loose.last().unwrap().id(),
        t,
        rng,
    }
}

#[test]
fn a_non_participant_reader_of_messages_unwraps_no_thread_key_and_opens_no_thread_entry() {
    let st = sealed_thread();
    let t = &st.t;
    let r = &t.f.record;
    let thread_entries = [st.start, st.reply, st.receipt];
    // The thread's entries are sealed under a thread's epoch, named on its opening, not the
    // stream's own epoch the loose message is under.
    let e = epoch_of(r, &st.start);
    assert!(matches!(r.epoch_thread(&e), Some(ThreadEpoch::New)));
    for id in thread_entries {
        assert_eq!(epoch_of(r, &id), e, "one epoch for the whole thread");
    }
    assert_ne!(epoch_of(r, &st.loose), e);
    assert_eq!(r.epoch_thread(&epoch_of(r, &st.loose)), None);
    // The attack: the pharmacist reads messages (write, even) and holds every entry; by
    // hand she unwraps the stream's epochs, never the thread's.
    let pharm = t.pharmacist.clone();
    let hers = unwrappable(r, &pharm);
    assert!(hers.contains(&epoch_of(r, &st.loose)));
    assert!(
        !hers.contains(&e),
        "a thread's key wrapped for a non-participant"
    );
    // Her replica (the read rule aside) opens the loose message and nothing of the thread.
    let pr = replica(r, &pharm);
    assert_eq!(pr.content_state(&st.loose), Some(ContentState::Opened));
    for id in thread_entries {
        assert_eq!(pr.content_state(&id), Some(ContentState::Locked), "{id}");
        assert!(matches!(
            pr.payload(&id).as_deref(),
            Some(Payload::SealedCreate { .. } | Payload::SealedAnnotate { .. })
        ));
    }
    assert!(pr.thread_starts().is_empty());
    // Every participant's replica (George, the GP, the nurse) opens all of it, unflagged.
    for k in [&t.f.patient, &t.gp, &t.nurse] {
        assert!(unwrappable(r, k).contains(&e), "{k:?}");
        let mine = replica(r, k);
        for id in thread_entries.into_iter().chain([st.loose]) {
            assert_eq!(
                mine.content_state(&id),
                Some(ContentState::Opened),
                "{k:?} {id}"
            );
        }
        assert_eq!(mine.thread_starts(), vec![st.start]);
    }
}

#[test]
fn a_grantee_given_the_history_gets_no_thread_key_and_the_patients_new_device_does() {
    let mut st = sealed_thread();
    let patient = st.t.f.patient.clone();
    // A dietitian granted read on messages with the history: she is given the stream's
    // earlier epochs, never the thread's.
    let dietitian = key(5, "dietitian");
    let g = grant(&dietitian, Level::View, &[Category::Messages], false, false);
    let vs = sealed_write(&mut st.t, &patient, Payload::Grant(g), SEALED, &mut st.rng).unwrap();
    assert!(vs.len() > 1, "the history is given");
    let r = &st.t.f.record;
    let e = epoch_of(r, &st.start);
    assert!(unwrappable(r, &dietitian).contains(&epoch_of(r, &st.loose)));
    assert!(!unwrappable(r, &dietitian).contains(&e));
    let dr = replica(r, &dietitian);
    assert_eq!(dr.content_state(&st.loose), Some(ContentState::Opened));
    assert_eq!(dr.content_state(&st.start), Some(ContentState::Locked));
    // A device the patient adds is given everything, the thread's epoch included (the
    // patient takes part in every thread).
    let phone = key(6, "george's phone");
    sealed_write(
        &mut st.t,
        &patient,
        Payload::AddDevice {
            device: phone.actor(),
            label: "phone".into(),
        },
        SEALED,
        &mut st.rng,
    )
    .unwrap();
    let r = &st.t.f.record;
    assert!(unwrappable(r, &phone).contains(&e));
    assert_eq!(
        replica(r, &phone).content_state(&st.reply),
        Some(ContentState::Opened)
    );
    // Gifts asked for explicitly (a modified writer asking for everyone) still leave the
    // thread's epoch out for a non-participant.
    let mut mine = replica(r, &patient);
    mine.unlock(&patient);
    let gifts = mine
        .prepare_key_gifts(
            &patient,
            &Category::Messages,
            &[st.t.pharmacist.actor(), dietitian.actor()],
            true,
            st.t.f.now,
            &None,
            &mut st.rng,
        )
        .unwrap();
    assert!(gifts.iter().all(|v| !matches!(
        &v.entry().payload,
        Payload::KeyWrap { epoch, .. } if *epoch == e
    )));
}

#[test]
fn after_a_revocation_the_removed_participant_opens_nothing_new_in_the_thread() {
    let mut st = sealed_thread();
    let (gp, nurse, patient) = (st.t.gp.clone(), st.t.nurse.clone(), st.t.f.patient.clone());
    let first = epoch_of(&st.t.f.record, &st.start);
    let nurse_grant = st.t.nurse_grant;
    sealed_write(
        &mut st.t,
        &patient,
        Payload::Revoke {
            grant: nurse_grant,
            category: None,
            reason: "moved to another trust".into(),
        },
        SEALED,
        &mut st.rng,
    )
    .unwrap();
    // The GP's next message opens a new epoch of the thread (the old one was given to a
    // former reader), for those who remain.
    let vs = sealed_write(
        &mut st.t,
        &gp,
        message(st.start, "After she left", None),
        SEALED,
        &mut st.rng,
    )
    .unwrap();
    let after = vs.last().unwrap().id();
    let r = &st.t.f.record;
    let second = epoch_of(r, &after);
    assert_ne!(second, first);
    assert_eq!(r.epoch_thread(&second), Some(ThreadEpoch::Of(st.start)));
    assert!(!unwrappable(r, &nurse).contains(&second));
    let nr = replica(r, &nurse);
    assert_eq!(nr.content_state(&after), Some(ContentState::Locked));
    // What she was shown before stays readable to her.
    assert_eq!(nr.content_state(&st.reply), Some(ContentState::Opened));
    for k in [&gp, &patient] {
        assert_eq!(
            replica(r, k).content_state(&after),
            Some(ContentState::Opened)
        );
    }
    // George's answer goes under the same new epoch.
    let vs = sealed_write(
        &mut st.t,
        &patient,
        message(st.start, "Thanks", Some(after)),
        SEALED,
        &mut st.rng,
    )
    .unwrap();
    assert_eq!(vs.len(), 1, "no new epoch needed");
    assert_eq!(epoch_of(&st.t.f.record, &vs[0].id()), second);
}

/// Opens a thread's epoch by hand (a modified participant's node) wrapped for `to`.
fn hand_epoch(
    r: &Record,
    author: &Keypair,
    thread: Option<ThreadEpoch>,
    to: &[&Keypair],
    seed: u64,
) -> (Verified, EpochId, EpochKey) {
    let mut rng = SeededRng::new(seed);
    let epoch = EpochId::generate(&mut rng);
    let k = EpochKey::generate(&mut rng);
    let rid = r.id();
    let place = Place {
        record: &rid,
        stream: Category::Messages.name(),
        epoch,
    };
    let mut to: Vec<_> = to.iter().map(|k| k.actor()).collect();
    to.sort();
    let wraps = to
        .iter()
        .map(|a| seal::wrap(&k, *a, &BoxPublic::of(a).unwrap(), place, &mut rng).unwrap())
        .collect();
    let p = Payload::KeyWrap {
        category: Category::Messages,
        epoch,
        opens: true,
        wraps,
        thread,
    };
    (from_network(r, author, p, 0), epoch, k)
}

/// A message sealed by hand under `k`.
fn hand_sealed(
    r: &Record,
    author: &Keypair,
    epoch: EpochId,
    k: &EpochKey,
    b: serde_json::Value,
) -> Verified {
    let mut rng = SeededRng::new(77);
    let rid = r.id();
    let place = Place {
        record: &rid,
        stream: Category::Messages.name(),
        epoch,
    };
    let bytes = cbor4ii::serde::to_vec(Vec::new(), &body(b)).unwrap();
    let content = seal::seal(k, place, &author.actor(), &bytes, &mut rng).unwrap();
    let p = Payload::SealedCreate {
        category: Category::Messages,
        content,
    };
    from_network(r, author, p, 0)
}

#[test]
fn a_mis_wrapped_thread_epoch_is_flagged_by_readers_and_never_reused() {
    let mut st = sealed_thread();
    let (gp, nurse, pharm) = (st.t.gp.clone(), st.t.nurse.clone(), st.t.pharmacist.clone());
    let patient = st.t.f.patient.clone();
    // The GP's modified node opens an epoch "for the thread" that also goes to the
    // pharmacist (a reader of messages, so a relay's gate, which cannot read who takes
    // part, accepts it), and seals a message under it.
    let (open, epoch, k) = hand_epoch(
        &st.t.f.record,
        &gp,
        Some(ThreadEpoch::Of(st.start)),
        &[&patient, &gp, &nurse, &pharm],
        9,
    );
    st.t.f.record.apply(open).unwrap();
    let leak = hand_sealed(
        &st.t.f.record,
        &gp,
        epoch,
        &k,
        json!({"text": "between us", "thread": st.start.to_string()}),
    );
    let leak_id = leak.id();
    st.t.f.record.apply(leak).unwrap();
    // A loose message sealed under a thread's key, and a message of the thread sealed
    // under another thread's key: both flagged too.
    let (open2, e2, k2) = hand_epoch(
        &st.t.f.record,
        &gp,
        Some(ThreadEpoch::New),
        &[&patient, &gp],
        10,
    );
    st.t.f.record.apply(open2).unwrap();
    let stray = hand_sealed(&st.t.f.record, &gp, e2, &k2, json!({"text": "loose"}));
    st.t.f.record.apply(stray.clone()).unwrap();
    let r = &st.t.f.record;
    for k in [&patient, &nurse] {
        let mine = replica(r, k);
        match mine.content_state(&leak_id) {
            Some(ContentState::Flagged(why)) => {
                assert!(why.contains("does not take part"), "{why}");
                assert!(why.contains(&pharm.actor().to_string()), "{why}");
            }
            other => panic!("{k:?}: {other:?}"),
        }
    }
    match replica(r, &patient).content_state(&stray.id()) {
        Some(ContentState::Flagged(why)) => assert!(why.contains("in no conversation"), "{why}"),
        other => panic!("{other:?}"),
    }
    // The honest writers' thread entries stay unflagged, and the nurse's next message is
    // not sealed under the mis-wrapped epoch (nor the pharmacist given anything new).
    assert_eq!(
        replica(r, &patient).content_state(&st.reply),
        Some(ContentState::Opened)
    );
    let vs = sealed_write(
        &mut st.t,
        &nurse,
        message(st.start, "Call me", None),
        SEALED,
        &mut st.rng,
    )
    .unwrap();
    let next = epoch_of(&st.t.f.record, &vs.last().unwrap().id());
    assert_ne!(next, epoch);
    assert!(!unwrappable(&st.t.f.record, &pharm).contains(&next));
}

/// An organisation (its own record, one member) holding write on George's messages.
fn organisation(t: &mut Team, seed: u64, name: &str, member: &Keypair) -> Keypair {
    use cophr_protocol::org::Role;
    use cophr_protocol::testkit::profile;
    let org_key = key(seed, name);
    let mut org = Fixture::with_profile(org_key.clone(), profile(name, "organisation", None));
    org.write(
        &org_key,
        Payload::AddMember {
            member: member.actor(),
            role: Role::preset("nurse").unwrap(),
            label: "staff".into(),
        },
    )
    .unwrap();
    t.f.grant(grant(
        &org_key,
        Level::Write,
        &[Category::Messages],
        false,
        false,
    ));
    let proof = org.record.membership_proof(&member.actor()).unwrap();
    t.f.write(member, Payload::JoinOrg { proof }).unwrap();
    org_key
}

#[test]
fn an_organisations_members_read_its_threads_and_no_other_organisations() {
    let mut t = team();
    let mut rng = SeededRng::new(43);
    let renal_nurse = key(31, "renal unit nurse");
    let chain_pharmacist = key(33, "pharmacy chain pharmacist");
    let renal = organisation(&mut t, 30, "Renal unit", &renal_nurse);
    let chain = organisation(&mut t, 32, "Pharmacy chain", &chain_pharmacist);
    let gp = t.gp.clone();
    let loose = Payload::Create {
        category: Category::Messages,
        body: body(json!({"text": "Clinic closed on Friday"})),
    };
    let loose = sealed_write(&mut t, &gp, loose, SEALED, &mut rng).unwrap();
    let loose = loose.last().unwrap().id();
    // The GP starts a thread with the renal unit (the organisation).
    let ids = vec![renal.actor().to_string()];
    let s = Payload::Create {
        category: Category::Messages,
        body: body(json!({"text": "Please review", "participants": ids})),
    };
    let s = sealed_write(&mut t, &gp, s, SEALED, &mut rng).unwrap();
    let s = s.last().unwrap().id();
    let r = &t.f.record;
    let e = epoch_of(r, &s);
    // The renal unit's member reads it; the pharmacy chain's reads messages, not the thread.
    assert!(unwrappable(r, &renal_nurse).contains(&e));
    assert_eq!(
        replica(r, &renal_nurse).content_state(&s),
        Some(ContentState::Opened)
    );
    assert!(!unwrappable(r, &chain_pharmacist).contains(&e));
    let cr = replica(r, &chain_pharmacist);
    assert_eq!(cr.content_state(&loose), Some(ContentState::Opened));
    assert_eq!(cr.content_state(&s), Some(ContentState::Locked));
    // The chain's node giving its members every key it holds (as on a join) gives none of
    // the thread's: it holds none. The renal unit's gives its member nothing new.
    for org in [&chain, &renal] {
        let mine = replica(r, org);
        let gifts = mine
            .prepare_member_keys(org, t.f.now, &None, &mut rng)
            .unwrap();
        assert!(gifts.iter().all(|v| !matches!(
            &v.entry().payload,
            Payload::KeyWrap { epoch, .. } if *epoch == e
        )));
    }
}

/// `replica` pulls from `server` as `actor` until nothing more is sent (the sync state
/// machine's two rounds, in memory); returns the ids received.
fn pull(
    server: &Record,
    replica: &mut Record,
    actor: &cophr_protocol::ActorId,
    now: u64,
) -> Vec<EntryId> {
    let viewer = server.viewer(actor, now);
    let differ = server.differing(&viewer, &replica.digests());
    let mut got = Vec::new();
    loop {
        let mine = replica.frontier();
        let ask: cophr_protocol::sync::Frontier = differ
            .iter()
            .map(|s| (s.clone(), mine.get(s).cloned().unwrap_or_default()))
            .collect();
        let (entries, more, _) = server.entries_beyond(&viewer, &ask, 5, usize::MAX);
        for e in entries {
            got.push(e.id());
            replica.apply(e).expect("served entries apply in order");
        }
        if !more {
            return got;
        }
    }
}

/// Sync from a participant's node (which opens the thread) to a non-participant who reads
/// messages. Sealed (as nodes write): she receives the thread's entries as ciphertext
/// only, as from a blind host, so the GP's later loose messages reach her — no gap in the
/// GP's chain — and she opens none of the thread. Threat: a participant's node serving a
/// non-participant directly.
#[test]
fn a_non_participant_pulling_from_a_participants_node_gets_later_messages_and_none_of_the_thread() {
    let mut st = sealed_thread();
    let gp = st.t.gp.clone();
    let later = Payload::Create {
        category: Category::Messages,
        body: body(json!({"text": "Flu clinic next week"})),
    };
    let later = sealed_write(&mut st.t, &gp, later, SEALED, &mut st.rng)
        .unwrap()
        .last()
        .unwrap()
        .id();
    let now = st.t.f.now;
    let pharm = st.t.pharmacist.clone();
    // The GP's node opens the thread; the pharmacist's node starts empty.
    let server = replica(&st.t.f.record, &gp);
    assert_eq!(server.thread_starts(), vec![st.start]);
    let mut hers = Record::new(server.id());
    hers.unlock(&pharm);
    let got = pull(&server, &mut hers, &pharm.actor(), now);
    assert!(got.contains(&later), "the GP's message after the thread");
    assert!(got.contains(&st.loose));
    // The thread's entries came as ciphertext she cannot open; she reads only the loose
    // messages and sees no thread.
    for id in [st.start, st.reply] {
        assert!(got.contains(&id), "{id}");
        assert_eq!(hers.content_state(&id), Some(ContentState::Locked), "{id}");
    }
    assert!(hers.thread_starts().is_empty());
    assert_eq!(
        texts_seen(&hers, &pharm, now),
        vec![
            "Clinic closed on Friday".to_owned(),
            "Flu clinic next week".to_owned()
        ]
    );
}

/// The same with plain content (a record written without sealing): a thread's entries
/// never leave a participant's node for a non-participant, wherever they sit in an
/// author's chain — the walk stops at the first one (a binary search over a chain that is
/// not a visible prefix would have sent it when later entries are visible).
#[test]
fn a_plain_thread_entry_never_leaves_for_a_non_participant_whatever_follows_it() {
    let mut t = team();
    let (gp, nurse, pharm) = (t.gp.clone(), t.nurse.clone(), t.pharmacist.clone());
    let loose = |text: &str| Payload::Create {
        category: Category::Messages,
        body: text_body(&[("text", text)]),
    };
    t.f.write(&gp, loose("Clinic closed on Friday")).unwrap();
    let s =
        t.f.write(&gp, start("Your eGFR is lower", &[&nurse]))
            .unwrap()
            .id();
    for text in ["Flu clinic", "Parking", "New phone number", "Holiday cover"] {
        t.f.write(&gp, loose(text)).unwrap();
    }
    let now = t.f.now;
    let mut hers = Record::new(t.f.record.id());
    let got = pull(&t.f.record, &mut hers, &pharm.actor(), now);
    assert!(
        !got.contains(&s),
        "a plain thread start sent to a non-participant"
    );
    assert!(hers.entries().all(
        |e| !matches!(&e.entry().payload, Payload::Create { body, .. }
            if body.get("text").and_then(|t| t.as_text()) == Some("Your eGFR is lower"))
    ));
    assert_eq!(
        texts_seen(&hers, &pharm, now),
        vec!["Clinic closed on Friday".to_owned()]
    );
}
