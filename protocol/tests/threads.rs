//! Conversations (`docs/care-team.md`, "Conversations"): a thread is private to its
//! participants by the record's rules on every replica. Threat model: a participant, a
//! non-participant who holds a grant that reads (or writes) `messages`, and a blind host.
//! Each test plays the attack, not only the happy path.

use cophr_protocol::access::Level;
use cophr_protocol::care::thread::{ThreadError, READ_MARK};
use cophr_protocol::fold::current;
use cophr_protocol::record::{Record, Rejection, SealPolicy};
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
    assert!(!r.can_see(&pv, &s) && !r.can_see(&pv, &m));
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
