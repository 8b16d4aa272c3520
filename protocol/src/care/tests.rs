//! The care team's rules: the task lifecycle at the gate (order, party, staleness,
//! concurrency), appointment reminders at write and [`reminders`].

use proptest::prelude::*;

use super::*;
use crate::access::Level;
use crate::entry::{Payload, Verified};
use crate::fold::{self, Viewer};
use crate::keys::Keypair;
use crate::record::{Record, Rejection};
use crate::schema::body_from_json;
use crate::testkit::{grant, key, Fixture};

struct Team {
    f: Fixture,
    gp: Keypair,
    clinic: Keypair,
}

/// George's record; the GP and the renal clinic may write tasks and appointments.
fn team() -> Team {
    let mut f = Fixture::new(1, "george");
    let gp = key(2, "gp");
    let clinic = key(3, "renal");
    for k in [&gp, &clinic] {
        f.grant(grant(
            k,
            Level::Write,
            &[Category::Tasks, Category::Appointments],
            false,
            false,
        ));
    }
    Team { f, gp, clinic }
}

fn task_body(requester: &ActorId, owner: &ActorId, status: &str) -> Value {
    body_from_json(
        &Category::Tasks,
        &serde_json::json!({"kind": "referral", "description": "Please review George's eGFR",
            "requester": requester.to_string(), "owner": owner.to_string(), "status": status}),
    )
    .expect("a valid task body")
}

fn with_status(body: &Value, status: &str) -> Value {
    let mut b = body.clone();
    if let Value::Map(m) = &mut b {
        m.insert("status".into(), Value::Text(status.into()));
    }
    b
}

/// An entry as a replica would receive it from the network: built and signed without the
/// writer-side check, then given to the gate.
fn from_network(r: &Record, k: &Keypair, payload: Payload, now: Timestamp) -> Verified {
    let auth = r.grants_of(&k.actor()).first().copied();
    let e = r.next_entry(&k.actor(), payload, auth, now, None);
    Verified::trusted(e.sign(k))
}

fn status_of(r: &Record, viewer: &Viewer, item: &EntryId) -> String {
    match fold::item(r, viewer, item) {
        Some(fold::ItemState::Current(i)) => i
            .body
            .get("status")
            .and_then(Value::as_text)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

fn amend(t: &mut Team, k: &Keypair, target: EntryId, body: Value) -> Result<EntryId, Rejection> {
    let k = k.clone();
    t.f.write(&k, Payload::Amend { target, body })
        .map(|v| v.id())
}

#[test]
fn the_table_allows_exactly_the_lifecycle() {
    use TaskStatus::*;
    let allowed = [
        (Sent, Received),
        (Sent, Rejected),
        (Sent, Cancelled),
        (Received, Accepted),
        (Received, Rejected),
        (Received, Cancelled),
        (Accepted, InProgress),
        (Accepted, Cancelled),
        (InProgress, Completed),
        (InProgress, Cancelled),
    ];
    for from in TaskStatus::ALL {
        for to in TaskStatus::ALL {
            assert_eq!(
                from.next().contains(&to),
                allowed.contains(&(from, to)),
                "{from} -> {to}"
            );
        }
        assert_eq!(TaskStatus::parse(from.name()), Some(from));
    }
    assert_eq!(TASK_STATUSES.len(), TaskStatus::ALL.len());
}

#[test]
fn a_referral_moves_step_by_step_each_written_by_its_party() {
    let mut t = team();
    let (gp, clinic) = (t.gp.actor(), t.clinic.actor());
    let sent = task_body(&gp, &clinic, "sent");
    let gpk = t.gp.clone();
    let id = t.f.create(&gpk, Category::Tasks, sent.clone()).unwrap();
    let ck = t.clinic.clone();
    let v2 = amend(&mut t, &ck, id, with_status(&sent, "received")).unwrap();
    let v3 = amend(&mut t, &ck, v2, with_status(&sent, "accepted")).unwrap();
    let patient = t.f.record.viewer(&t.f.record.id(), t.f.now);
    assert_eq!(status_of(&t.f.record, &patient, &id), "accepted");
    // The requester may cancel; the version history keeps every step.
    let v4 = amend(&mut t, &gpk, v3, with_status(&sent, "cancelled")).unwrap();
    assert_eq!(status_of(&t.f.record, &patient, &id), "cancelled");
    // Closed: nothing more, by anyone.
    let err = amend(&mut t, &ck, v4, with_status(&sent, "in-progress")).unwrap_err();
    assert_eq!(
        err,
        Rejection::Task(TaskError::Closed(TaskStatus::Cancelled))
    );
}

#[test]
fn a_step_by_the_wrong_party_or_out_of_order_is_refused_from_the_network_and_nothing_is_stored() {
    let mut t = team();
    let (gp, clinic) = (t.gp.actor(), t.clinic.actor());
    let sent = task_body(&gp, &clinic, "sent");
    let gpk = t.gp.clone();
    let ck = t.clinic.clone();
    let id = t.f.create(&gpk, Category::Tasks, sent.clone()).unwrap();
    let patient = t.f.patient.clone();
    let now = t.f.now;
    let cases: Vec<(&Keypair, &str, Rejection)> = vec![
        (
            &patient,
            "accepted",
            TaskError::NotOwner {
                owner: clinic,
                to: TaskStatus::Accepted,
            }
            .into(),
        ),
        (
            &patient,
            "received",
            TaskError::NotOwner {
                owner: clinic,
                to: TaskStatus::Received,
            }
            .into(),
        ),
        (
            &gpk,
            "received",
            TaskError::NotOwner {
                owner: clinic,
                to: TaskStatus::Received,
            }
            .into(),
        ),
        (
            &ck,
            "cancelled",
            TaskError::NotRequester {
                requester: gp,
                what: "mark it `cancelled`",
            }
            .into(),
        ),
        (
            &ck,
            "accepted",
            TaskError::OutOfOrder {
                from: TaskStatus::Sent,
                to: TaskStatus::Accepted,
                allowed: "received, rejected, cancelled".into(),
            }
            .into(),
        ),
        (
            &ck,
            "completed",
            TaskError::OutOfOrder {
                from: TaskStatus::Sent,
                to: TaskStatus::Completed,
                allowed: "received, rejected, cancelled".into(),
            }
            .into(),
        ),
    ];
    for (k, status, want) in cases {
        let before = t.f.record.len();
        let v = from_network(
            &t.f.record,
            k,
            Payload::Amend {
                target: id,
                body: with_status(&sent, status),
            },
            now,
        );
        assert_eq!(t.f.record.apply(v).unwrap_err(), want, "{status}");
        assert_eq!(t.f.record.len(), before, "nothing stored");
    }
    // The owner may not rewrite what was asked, nor hand the task on.
    let mut changed = with_status(&sent, "received");
    if let Value::Map(m) = &mut changed {
        m.insert("description".into(), Value::Text("Something else".into()));
    }
    assert_eq!(
        amend(&mut t, &ck, id, changed).unwrap_err(),
        Rejection::Task(TaskError::Fixed("description"))
    );
    let other = key(9, "other").actor();
    assert_eq!(
        amend(&mut t, &gpk, id, task_body(&gp, &other, "sent")).unwrap_err(),
        Rejection::Task(TaskError::Fixed("owner"))
    );
}

#[test]
fn a_task_is_sent_by_its_requester() {
    let mut t = team();
    let (gp, clinic) = (t.gp.actor(), t.clinic.actor());
    let gpk = t.gp.clone();
    assert_eq!(
        t.f.create(&gpk, Category::Tasks, task_body(&gp, &clinic, "accepted"))
            .unwrap_err(),
        Rejection::Task(TaskError::CreatedNotSent(TaskStatus::Accepted))
    );
    assert_eq!(
        t.f.create(&gpk, Category::Tasks, task_body(&clinic, &clinic, "sent"))
            .unwrap_err(),
        Rejection::Task(TaskError::RequesterNotAuthor {
            requester: clinic,
            author: gp,
        })
    );
    // The patient sends a task as the record's own id.
    let george = t.f.patient.clone();
    let me = t.f.record.id();
    t.f.create(&george, Category::Tasks, task_body(&me, &clinic, "sent"))
        .unwrap();
}

#[test]
fn an_amend_of_a_version_its_author_saw_superseded_is_refused() {
    let mut t = team();
    let (gp, clinic) = (t.gp.actor(), t.clinic.actor());
    let sent = task_body(&gp, &clinic, "sent");
    let gpk = t.gp.clone();
    let ck = t.clinic.clone();
    let id = t.f.create(&gpk, Category::Tasks, sent.clone()).unwrap();
    let v2 = amend(&mut t, &ck, id, with_status(&sent, "received")).unwrap();
    amend(&mut t, &ck, v2, with_status(&sent, "accepted")).unwrap();
    // Back to `received` by building on the first version again.
    assert_eq!(
        amend(&mut t, &ck, id, with_status(&sent, "received")).unwrap_err(),
        Rejection::Task(TaskError::Stale {
            target: id,
            newer: v2,
        })
    );
}

#[test]
fn concurrent_steps_are_both_kept_and_resolve_the_same_on_every_replica() {
    let mut t = team();
    let (gp, clinic) = (t.gp.actor(), t.clinic.actor());
    let sent = task_body(&gp, &clinic, "sent");
    let gpk = t.gp.clone();
    let id = t.f.create(&gpk, Category::Tasks, sent.clone()).unwrap();
    let base = t.f.record.clone();
    let now = t.f.now;
    // Neither knew of the other: the clinic received while the GP cancelled.
    let received = base
        .prepare_as(
            &t.clinic,
            Payload::Amend {
                target: id,
                body: with_status(&sent, "received"),
            },
            now,
            None,
        )
        .unwrap();
    let cancelled = base
        .prepare_as(
            &t.gp,
            Payload::Amend {
                target: id,
                body: with_status(&sent, "cancelled"),
            },
            now + 5,
            None,
        )
        .unwrap();
    let mut a = base.clone();
    a.apply(received.clone()).unwrap();
    a.apply(cancelled.clone()).unwrap();
    let mut b = base;
    b.apply(cancelled).unwrap();
    b.apply(received).unwrap();
    let (va, vb) = (a.viewer(&a.id(), now + 10), b.viewer(&b.id(), now + 10));
    let (sa, sb) = (status_of(&a, &va, &id), status_of(&b, &vb, &id));
    assert_eq!(sa, sb);
    assert!(sa == "received" || sa == "cancelled");
    match fold::item(&a, &va, &id) {
        Some(fold::ItemState::Current(i)) => assert!(i.conflict && i.versions == 3),
        _ => panic!("the task is current"),
    }
}

/// One attempted step in a random run: who writes which status.
#[derive(Debug, Clone, Copy)]
enum Who {
    Requester,
    Owner,
    Patient,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    /// Every attempt is accepted exactly when the lifecycle table allows the status from the
    /// current one and the writer is the party for it; a refused attempt stores nothing.
    #[test]
    fn random_steps_follow_the_model(
        steps in prop::collection::vec(
            (prop::sample::select(vec![Who::Requester, Who::Owner, Who::Patient]),
             prop::sample::select(TaskStatus::ALL.to_vec())),
            1..12,
        )
    ) {
        let mut t = team();
        let (gp, clinic) = (t.gp.actor(), t.clinic.actor());
        let sent = task_body(&gp, &clinic, "sent");
        let gpk = t.gp.clone();
        let id = t.f.create(&gpk, Category::Tasks, sent.clone()).unwrap();
        let (mut head, mut status) = (id, TaskStatus::Sent);
        for (who, to) in steps {
            let k = match who {
                Who::Requester => t.gp.clone(),
                Who::Owner => t.clinic.clone(),
                Who::Patient => t.f.patient.clone(),
            };
            let party_ok = match (to.party(), who) {
                _ if to == status => matches!(who, Who::Requester),
                (Party::Requester, Who::Requester) | (Party::Owner, Who::Owner) => true,
                _ => false,
            };
            let ok = !status.is_closed()
                && (to == status || status.next().contains(&to))
                && party_ok;
            let before = t.f.record.len();
            let got = amend(&mut t, &k, head, with_status(&sent, to.name()));
            prop_assert_eq!(got.is_ok(), ok, "{:?} {} -> {}: {:?}", who, status, to, got);
            match got {
                Ok(v) => {
                    head = v;
                    status = to;
                }
                Err(_) => prop_assert_eq!(t.f.record.len(), before),
            }
        }
        let v = t.f.record.viewer(&t.f.record.id(), t.f.now);
        prop_assert_eq!(status_of(&t.f.record, &v, &id), status.name());
    }
}

fn appointment(start: &str, status: &str, reminders: &[&str]) -> Value {
    body_from_json(
        &Category::Appointments,
        &serde_json::json!({"status": status, "start": start, "description": "Renal clinic",
            "place": "St James's", "with": ["Dr Patel"], "reminders": reminders}),
    )
    .expect("a valid appointment")
}

/// The fixture's clock starts at 2023-11-14T22:13:20Z.
const SOON: &str = "2023-11-15T09:00:00Z";

#[test]
fn a_reminder_already_past_when_written_is_refused_unless_carried_over() {
    let mut t = team();
    let ck = t.clinic.clone();
    // Eleven hours before the start: a 1-day reminder is past, 2 hours is not.
    let err =
        t.f.create(
            &ck,
            Category::Appointments,
            appointment(SOON, "booked", &["2h", "1d"]),
        )
        .unwrap_err();
    assert_eq!(
        err,
        Rejection::Appointment(AppointmentError::ReminderInPast {
            reminder: "1d".into(),
            start: SOON.into(),
        })
    );
    let id =
        t.f.create(
            &ck,
            Category::Appointments,
            appointment(SOON, "booked", &["2h"]),
        )
        .unwrap();
    // A change keeping the start keeps its reminders; a cancellation is never checked.
    let mut moved = appointment(SOON, "booked", &["2h"]);
    if let Value::Map(m) = &mut moved {
        m.insert("place".into(), Value::Text("Room 2".into()));
    }
    let v2 = amend(&mut t, &ck, id, moved).unwrap();
    let v3 = amend(&mut t, &ck, v2, appointment(SOON, "cancelled", &["1w"])).unwrap();
    assert_ne!(v3, v2);
    let r = &t.f.record;
    match fold::item(r, &r.viewer(&r.id(), t.f.now), &id) {
        Some(fold::ItemState::Current(i)) => assert_eq!(i.versions, 3),
        _ => panic!("the appointment is current"),
    }
    // The same refusal from the network: nothing stored.
    let before = t.f.record.len();
    let v = from_network(
        &t.f.record,
        &t.clinic,
        Payload::Create {
            category: Category::Appointments,
            body: appointment(SOON, "booked", &["1w"]),
        },
        t.f.now,
    );
    assert!(matches!(
        t.f.record.apply(v),
        Err(Rejection::Appointment(
            AppointmentError::ReminderInPast { .. }
        ))
    ));
    assert_eq!(t.f.record.len(), before);
}

#[test]
fn reminders_are_due_or_upcoming_and_a_cancelled_appointment_gives_none() {
    let mut t = team();
    let ck = t.clinic.clone();
    let start = "2023-11-20T09:00:00Z";
    let start_ms = date_time_ms(start).unwrap() as u64;
    let id =
        t.f.create(
            &ck,
            Category::Appointments,
            appointment(start, "booked", &["1d", "2h", "30"]),
        )
        .unwrap();
    let gone =
        t.f.create(
            &ck,
            Category::Appointments,
            appointment(start, "booked", &["1d"]),
        )
        .unwrap();
    amend(&mut t, &ck, gone, appointment(start, "cancelled", &["1d"])).unwrap();
    let r = &t.f.record;
    let state = fold::current(r, &r.viewer(&r.id(), t.f.now));
    let hour = 3_600_000;
    // Three hours before: the day's reminder is due, the 2-hour one upcoming within 2 h,
    // the 30-minute one beyond the horizon.
    let now = start_ms - 3 * hour;
    let got = reminders(&state, now, 2 * hour);
    let seen: Vec<(&str, bool)> = got.iter().map(|r| (r.before.as_str(), r.due)).collect();
    assert_eq!(seen, vec![("1d", true), ("2h", false)]);
    assert!(got
        .iter()
        .all(|r| r.appointment == id && r.start == start_ms));
    assert_eq!(got[0].at, start_ms - 24 * hour);
    // Once the appointment has started, none.
    assert!(reminders(&state, start_ms, hour).is_empty());
    // Someone who may not see appointments gets none.
    let stranger = r.viewer(&key(9, "stranger").actor(), t.f.now);
    assert!(reminders(&fold::current(r, &stranger), now, hour).is_empty());
}

#[test]
fn reminder_offsets_parse_and_are_bounded() {
    assert_eq!(reminder_minutes("30"), Some(30));
    assert_eq!(reminder_minutes("30m"), Some(30));
    assert_eq!(reminder_minutes("2h"), Some(120));
    assert_eq!(reminder_minutes("1d"), Some(1440));
    assert_eq!(reminder_minutes("1w"), Some(10080));
    assert_eq!(reminder_minutes("366d"), Some(MAX_REMINDER_MINUTES));
    assert_eq!(reminder_minutes("367d"), None);
    for bad in ["", "h", "-1h", "1y", "1.5h", "9999999"] {
        assert_eq!(reminder_minutes(bad), None, "{bad}");
    }
    let many: Vec<String> = (1..=MAX_REMINDERS + 1).map(|i| format!("{i}h")).collect();
    let body = serde_json::json!({"status": "booked", "start": SOON, "reminders": many});
    let err = body_from_json(&Category::Appointments, &body)
        .and_then(|b| crate::schema::validate(&Category::Appointments, &b).map(|_| b))
        .unwrap_err();
    assert!(err.to_string().contains("at most 8 reminders"), "{err}");
    let with: Vec<String> = (0..=MAX_PARTICIPANTS).map(|i| format!("p{i}")).collect();
    let body = serde_json::json!({"status": "booked", "start": SOON, "with": with});
    let err = body_from_json(&Category::Appointments, &body)
        .and_then(|b| crate::schema::validate(&Category::Appointments, &b).map(|_| b))
        .unwrap_err();
    assert!(err.to_string().contains("at most 32 participants"), "{err}");
    let body = serde_json::json!({"status": "booked", "start": SOON,
        "end": "2023-11-15T08:00:00Z"});
    let err = body_from_json(&Category::Appointments, &body)
        .and_then(|b| crate::schema::validate(&Category::Appointments, &b).map(|_| b))
        .unwrap_err();
    assert!(err.to_string().contains("earlier than `start`"), "{err}");
}

#[test]
fn date_times_convert_to_milliseconds() {
    assert_eq!(date_time_ms("1970-01-01T00:00:00Z"), Some(0));
    assert_eq!(
        date_time_ms("2023-11-14T22:13:20Z"),
        Some(1_700_000_000_000)
    );
    assert_eq!(
        date_time_ms("2023-11-14T23:13:20.5+01:00"),
        Some(1_700_000_000_500)
    );
    assert_eq!(
        date_time_ms("2024-02-29T00:00:00Z"),
        Some(1_709_164_800_000)
    );
    assert_eq!(date_time_ms("2023-02-29T00:00:00Z"), None);
}

#[test]
fn a_task_is_sealed_with_its_lifecycle_fields_in_clear_beside_it() {
    let mut t = team();
    let policy = crate::record::SealPolicy {
        seal_new_streams: true,
        history: true,
    };
    let mut rng = crate::testkit::SeededRng::new(7);
    let patient = t.f.patient.clone();
    t.f.record.unlock(&patient);
    let me = t.f.record.id();
    let clinic = t.clinic.actor();
    let out =
        t.f.record
            .prepare_sealed(
                &patient,
                Payload::Create {
                    category: Category::Tasks,
                    body: task_body(&me, &clinic, "sent"),
                },
                t.f.now,
                None,
                policy,
                &mut rng,
            )
            .expect("the patient may write");
    // An epoch opened, then the task sealed: its description is not in clear, its
    // lifecycle fields are (and nothing else).
    let last = out.last().expect("written");
    let Payload::SealedCreate { content, .. } = &last.entry().payload else {
        panic!("not sealed: {}", last.entry().payload.kind());
    };
    assert_eq!(
        content.task,
        Some(TaskClear {
            kind: "referral".into(),
            requester: me,
            owner: clinic,
            status: "sent".into(),
            questionnaire: None,
        })
    );
    let bytes = last.signed().bytes();
    let needle = b"review George's eGFR";
    assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    for v in out {
        t.f.record.apply(v).unwrap();
    }
}

#[test]
fn an_appointment_is_sealed_like_other_content_and_its_writer_checks_its_reminders() {
    let mut t = team();
    let ck = t.clinic.clone();
    t.f.record.unlock(&ck);
    let policy = crate::record::SealPolicy {
        seal_new_streams: true,
        history: true,
    };
    let mut rng = crate::testkit::SeededRng::new(15);
    // Sealed: a host relaying it reads neither the clinic nor the time.
    let out =
        t.f.record
            .prepare_sealed(
                &ck,
                Payload::Create {
                    category: Category::Appointments,
                    body: appointment(SOON, "booked", &["2h"]),
                },
                t.f.now,
                None,
                policy,
                &mut rng,
            )
            .unwrap();
    let last = out.last().expect("written");
    assert!(
        matches!(last.entry().payload, Payload::SealedCreate { .. }),
        "{}",
        last.entry().payload.kind()
    );
    for v in out {
        t.f.record.apply(v).unwrap();
    }
    // A reminder already past is refused by its writer before it is sealed (the gate
    // cannot read sealed content): nothing written.
    let err =
        t.f.record
            .prepare_sealed(
                &ck,
                Payload::Create {
                    category: Category::Appointments,
                    body: appointment(SOON, "booked", &["1d"]),
                },
                t.f.now,
                None,
                policy,
                &mut rng,
            )
            .unwrap_err();
    assert!(
        matches!(
            err,
            Rejection::Appointment(AppointmentError::ReminderInPast { .. })
        ),
        "{err:?}"
    );
}

#[test]
fn sealed_content_in_tasks_without_its_lifecycle_in_clear_is_refused() {
    let mut t = team();
    let patient = t.f.patient.clone();
    t.f.record.unlock(&patient);
    let policy = crate::record::SealPolicy {
        seal_new_streams: true,
        history: true,
    };
    let mut rng = crate::testkit::SeededRng::new(9);
    // A sealed problem: an epoch opened, then sealed content.
    let sealed =
        t.f.record
            .prepare_sealed(
                &patient,
                Payload::Create {
                    category: Category::Problems,
                    body: crate::testkit::text_body(&[("problem", "CKD stage 3")]),
                },
                t.f.now,
                None,
                policy,
                &mut rng,
            )
            .unwrap();
    let (wrap, create) = (sealed[0].clone(), sealed[1].clone());
    t.f.record.apply(wrap).unwrap();
    let Payload::SealedCreate { content, .. } = create.entry().payload.clone() else {
        panic!("not sealed");
    };
    // Relabelled as a task, with no clear part: the gate could not check its lifecycle.
    let before = t.f.record.len();
    let v = from_network(
        &t.f.record,
        &patient,
        Payload::SealedCreate {
            category: Category::Tasks,
            content: content.clone(),
        },
        t.f.now,
    );
    assert_eq!(
        t.f.record.apply(v).unwrap_err(),
        Rejection::Sealing(crate::record::SealingError::TaskClear(Category::Tasks))
    );
    // A problem carrying a task's clear part: refused too (nothing but a task has one).
    let me = t.f.record.id();
    let clear = TaskClear::of_body(&task_body(&me, &t.clinic.actor(), "sent")).unwrap();
    let v = from_network(
        &t.f.record,
        &patient,
        Payload::SealedCreate {
            category: Category::Problems,
            content: crate::seal::Sealed {
                task: Some(clear),
                ..content
            },
        },
        t.f.now,
    );
    assert_eq!(
        t.f.record.apply(v).unwrap_err(),
        Rejection::Sealing(crate::record::SealingError::TaskClear(Category::Problems))
    );
    assert_eq!(t.f.record.len(), before);
}

#[test]
fn an_owners_sealed_step_changing_the_description_passes_the_gate_and_is_flagged_by_readers() {
    let mut t = team();
    let policy = crate::record::SealPolicy {
        seal_new_streams: true,
        history: true,
    };
    let mut rng = crate::testkit::SeededRng::new(21);
    let (gp, clinic) = (t.gp.clone(), t.clinic.clone());
    let mut gp_replica = t.f.record.clone();
    gp_replica.unlock(&gp);
    let sent = task_body(&gp.actor(), &clinic.actor(), "sent");
    for v in gp_replica
        .prepare_sealed(
            &gp,
            Payload::Create {
                category: Category::Tasks,
                body: sent.clone(),
            },
            t.f.now,
            None,
            policy,
            &mut rng,
        )
        .unwrap()
    {
        t.f.record.apply(v).unwrap();
    }
    let task = t.f.record.entries().last().unwrap().id();
    let mut mine = t.f.record.clone();
    mine.unlock(&clinic);
    // The clinic's modified node seals a "received" step that also rewrites what was
    // asked: its writer would refuse it, the gate cannot see it (the clear part is a valid
    // step by the owner).
    let body = with_status(&sent, "received");
    let mut lied = body.clone();
    if let Value::Map(m) = &mut lied {
        m.insert("description".into(), Value::Text("Nothing needed".into()));
    }
    let err = mine
        .prepare_sealed(
            &clinic,
            Payload::Amend {
                target: task,
                body: lied.clone(),
            },
            t.f.now,
            None,
            policy,
            &mut rng,
        )
        .unwrap_err();
    assert_eq!(err, Rejection::Task(TaskError::Fixed("description")));
    let epoch = mine.writing_epoch(&Category::Tasks).unwrap();
    let sealed = mine
        .seal_payload(
            &clinic.actor(),
            &Category::Tasks,
            epoch,
            Payload::Amend {
                target: task,
                body: lied,
            },
            &mut rng,
        )
        .unwrap();
    let v = from_network(&t.f.record, &clinic, sealed, t.f.now);
    let id = v.id();
    t.f.record.apply(v).unwrap();
    // A replica without the key holds it locked; every reader that opens it flags it.
    assert_eq!(
        t.f.record.content_state(&id),
        Some(crate::record::ContentState::Locked)
    );
    for reader in [&t.f.patient, &gp, &clinic] {
        let mut r = t.f.record.clone();
        r.unlock(reader);
        match r.content_state(&id) {
            Some(crate::record::ContentState::Flagged(why)) => {
                assert!(why.contains("`description`"), "{why}")
            }
            other => panic!("not flagged: {other:?}"),
        }
    }
}
