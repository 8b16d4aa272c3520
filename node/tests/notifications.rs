//! Results released after review and notifications across nodes: a consultant releases a
//! result on their node, it syncs to George's node, and George's subscriptions give a
//! notification (live as server-sent events, caught up with `Last-Event-ID`, never
//! twice, kept across a restart); a subscriber without access to a category is refused
//! and hears nothing of it.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use cophr_node::http::{self, AppState};
use cophr_node::net::{self, client};
use cophr_node::notify::{Event, Notifier, MAX_NOTIFICATIONS, MAX_SUBSCRIPTIONS};
use cophr_node::store::Store;
use cophr_protocol::access::Level;
use cophr_protocol::care::release;
use cophr_protocol::testkit::{grant, key, profile, text_body};
use cophr_protocol::{Category, EntryId, Keypair, Payload, RecordId};
use futures::StreamExt;
use serde_json::{json, Value};
use support::{api_of, net_node, NetNode};
use tower::ServiceExt;

const TOKEN: &str = "notifytokenabcdefghijklmnopqrstuvwxyz234567abcdefgh";

async fn call(
    st: &AppState,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
    let body = match body {
        Some(b) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(b.to_string())
        }
        None => Body::empty(),
    };
    let resp = http::router(st.clone())
        .oneshot(req.body(body).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// An open event stream: its body's chunks, parsed into SSE events as they come.
struct Stream {
    body: axum::body::BodyDataStream,
    buf: String,
}

impl Stream {
    async fn open(st: &AppState, record: &RecordId, last: Option<&str>) -> Stream {
        let mut req = Request::builder()
            .uri(format!("/api/v1/records/{record}/notifications/stream"))
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        if let Some(l) = last {
            req = req.header("last-event-id", l);
        }
        let resp = http::router(st.clone())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "text/event-stream");
        Stream {
            body: resp.into_body().into_data_stream(),
            buf: String::new(),
        }
    }

    /// The next `notification` event's (id, data), waiting at most `wait`.
    async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                let mut event = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    }
                }
                if event.as_deref() == Some("notification") {
                    let data: Value = serde_json::from_str(&data.unwrap()).unwrap();
                    return Some((id.unwrap(), data));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??;
            self.buf.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        }
    }
}

async fn sync(n: &NetNode, with: &NetNode, record: RecordId, push: bool) {
    let a = with.handle.listen_addrs().await.unwrap()[0].clone();
    client::sync(&n.handle, with.handle.peer_id(), vec![a], record, push)
        .await
        .unwrap();
}

fn write(n: &NetNode, record: &RecordId, who: &Keypair, p: Payload) -> EntryId {
    n.handle
        .store()
        .write(record, who, p, net::service::now_ms(), None)
        .unwrap()
}

fn potassium(value: &str) -> Payload {
    Payload::Create {
        category: Category::LabResults,
        body: text_body(&[("test", "Potassium"), ("result", value), ("unit", "mmol/L")]),
    }
}

fn releasing(target: EntryId) -> Payload {
    Payload::Annotate {
        target,
        text: release::release_text(Some("Seen by the renal team")),
    }
}

fn has_audit(store: &Store, record: &RecordId, detail: &str, entry: &EntryId) -> bool {
    store
        .audit_events(record)
        .unwrap()
        .iter()
        .any(|a| a.event.detail.as_deref() == Some(detail) && a.event.entries.contains(entry))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_released_on_the_consultants_node_reaches_georges_stream_once() {
    let george = key(9, "George");
    let consultant = key(9, "Consultant");
    let gnode = net_node("george", &george).await;
    let cnode = net_node("consultant", &consultant).await;
    let rec = george.actor();
    gnode
        .handle
        .store()
        .create_record(
            &george,
            profile("George", "patient", None),
            net::service::now_ms(),
            None,
        )
        .unwrap();
    write(
        &gnode,
        &rec,
        &george,
        Payload::Grant(grant(
            &consultant,
            Level::Write,
            &[Category::LabResults],
            false,
            false,
        )),
    );
    let api = api_of(&gnode, &george, profile("George", "patient", None), TOKEN);
    let base = format!("/api/v1/records/{rec}");

    // George subscribes to released results (every result category).
    let (s, sub) = call(
        &api,
        Method::POST,
        &format!("{base}/subscriptions"),
        Some(json!({"events": ["result-released"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    assert_eq!(sub["categories"], json!(["lab-results", "investigations"]));
    let mut live = Stream::open(&api, &rec, None).await;

    // The consultant's node replicates the record; the lab result is written there and
    // reaches George's node, unreleased: no notification.
    sync(&cnode, &gnode, rec, false).await;
    let result = write(&cnode, &rec, &consultant, potassium("5.9"));
    sync(&cnode, &gnode, rec, true).await;
    assert!(gnode
        .handle
        .store()
        .with_record(&rec, |r| r.contains(&result))
        .unwrap());
    let (_, list) = call(&api, Method::GET, &format!("{base}/notifications"), None).await;
    assert_eq!(
        list["total"], 0,
        "an unreleased result notifies no one: {list}"
    );

    // Released on the consultant's node, synced: George's stream says so.
    let rel = write(&cnode, &rec, &consultant, releasing(result));
    sync(&cnode, &gnode, rec, true).await;
    let (id, data) = live
        .next(Duration::from_secs(10))
        .await
        .expect("a notification");
    assert_eq!(id, format!("result-released:{result}"));
    assert_eq!(data["event"], "result-released");
    assert_eq!(data["entry"], json!(result));
    assert_eq!(data["by"], json!(rel));
    assert_eq!(data["category"], "lab-results");
    // Minimal: no clinical content.
    assert!(!data.to_string().contains("Potassium") && !data.to_string().contains("5.9"));
    assert!(
        has_audit(
            gnode.handle.store(),
            &rec,
            "notifications (API): 1",
            &result
        ),
        "delivering it is an audited view"
    );

    // A re-sync brings nothing new and repeats nothing.
    sync(&cnode, &gnode, rec, true).await;
    sync(&gnode, &cnode, rec, true).await;
    assert!(live.next(Duration::from_millis(300)).await.is_none());
    let (_, list) = call(&api, Method::GET, &format!("{base}/notifications"), None).await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["unread"], 1, "{list}");
    drop(live);

    // Offline: a second result is released meanwhile. Catching up from the last event id
    // gives only what was missed, then live ones.
    let second = write(&cnode, &rec, &consultant, potassium("4.1"));
    write(&cnode, &rec, &consultant, releasing(second));
    sync(&cnode, &gnode, rec, true).await;
    let mut again = Stream::open(&api, &rec, Some(&id)).await;
    let (id2, _) = again
        .next(Duration::from_secs(10))
        .await
        .expect("the missed one");
    assert_eq!(id2, format!("result-released:{second}"));
    assert!(
        again.next(Duration::from_millis(300)).await.is_none(),
        "nothing twice"
    );
    drop(again);
    // Without an id: everything kept.
    let mut all = Stream::open(&api, &rec, None).await;
    assert_eq!(all.next(Duration::from_secs(5)).await.unwrap().0, id);
    assert_eq!(all.next(Duration::from_secs(5)).await.unwrap().0, id2);
    drop(all);

    // Mark one read.
    let (s, read) = call(
        &api,
        Method::POST,
        &format!("{base}/notifications/read"),
        Some(json!({"ids": [id]})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(read, json!({"marked": 1, "unread": 1}));

    // A fresh notifier over the same store (as after a restart) keeps the book and
    // derives nothing twice.
    let fresh = Notifier::new(gnode.handle.store().clone());
    assert!(fresh
        .process(&rec, &rec, net::service::now_ms())
        .unwrap()
        .is_empty());
    let page = fresh.list(&rec, &rec, 0, 50).unwrap();
    assert_eq!(page.total, 2);
    assert_eq!(page.unread, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_without_access_to_a_category_is_refused_and_hears_nothing_of_it() {
    let george = key(9, "George");
    let consultant = key(9, "Consultant");
    let pharmacist = key(9, "Pharmacist");
    let gnode = net_node("george", &george).await;
    let pnode = net_node("pharmacy", &pharmacist).await;
    let rec = george.actor();
    gnode
        .handle
        .store()
        .create_record(
            &george,
            profile("George", "patient", None),
            net::service::now_ms(),
            None,
        )
        .unwrap();
    write(
        &gnode,
        &rec,
        &george,
        Payload::Grant(grant(
            &consultant,
            Level::Write,
            &[Category::LabResults, Category::Tasks],
            false,
            false,
        )),
    );
    write(
        &gnode,
        &rec,
        &george,
        Payload::Grant(grant(
            &pharmacist,
            Level::View,
            &[Category::Medications, Category::Tasks],
            false,
            false,
        )),
    );
    sync(&pnode, &gnode, rec, false).await;
    let api = api_of(
        &pnode,
        &pharmacist,
        profile("Pharmacist", "pharmacist", None),
        TOKEN,
    );
    let base = format!("/api/v1/records/{rec}");
    for body in [
        json!({"events": ["result-released"]}),
        json!({"events": ["result-released"], "categories": ["lab-results"]}),
        json!({"events": ["new-message"]}),
    ] {
        let (s, e) = call(
            &api,
            Method::POST,
            &format!("{base}/subscriptions"),
            Some(body),
        )
        .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("may not see"),
            "{e}"
        );
    }
    let (_, subs) = call(&api, Method::GET, &format!("{base}/subscriptions"), None).await;
    assert_eq!(subs, json!([]), "nothing stored");
    // A category no chosen event is about is invalid.
    let (s, _) = call(
        &api,
        Method::POST,
        &format!("{base}/subscriptions"),
        Some(json!({"events": ["task-status"], "categories": ["medications"]})),
    )
    .await;
    // A category no event chosen is about: a rule across the two lists (409).
    assert_eq!(s, StatusCode::CONFLICT);
    // What she may see: tasks.
    let (s, _) = call(
        &api,
        Method::POST,
        &format!("{base}/subscriptions"),
        Some(json!({"events": ["task-status"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);

    // The consultant releases a result and sends a referral (written on George's node for
    // brevity: it is the entries landing that count); the pharmacy pulls them.
    let result = write(&gnode, &rec, &consultant, potassium("5.9"));
    write(&gnode, &rec, &consultant, releasing(result));
    let task = write(
        &gnode,
        &rec,
        &consultant,
        Payload::Create {
            category: Category::Tasks,
            body: cophr_protocol::schema::body_from_json(
                &Category::Tasks,
                &json!({
                    "kind": "referral",
                    "description": "Review potassium",
                    "requester": consultant.actor().to_string(),
                    "owner": george.actor().to_string(),
                    "status": "sent",
                }),
            )
            .unwrap(),
        },
    );
    sync(&pnode, &gnode, rec, false).await;
    let (_, list) = call(&api, Method::GET, &format!("{base}/notifications"), None).await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "only the task: {list}");
    assert_eq!(items[0]["event"], "task-status");
    assert_eq!(items[0]["entry"], json!(task));
    assert!(
        !list.to_string().contains(&result.to_string()),
        "not a word of the result"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_and_kept_notifications_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), key(9, "node")).unwrap();
    let george = key(9, "George");
    let rec = george.actor();
    let now = net::service::now_ms();
    store
        .create_record(&george, profile("George", "patient", None), now, None)
        .unwrap();
    let lab = key(9, "Lab");
    store
        .write(
            &rec,
            &george,
            Payload::Grant(grant(
                &lab,
                Level::Write,
                &[Category::LabResults],
                false,
                false,
            )),
            now,
            None,
        )
        .unwrap();
    let n = Notifier::new(store.clone());
    for _ in 0..MAX_SUBSCRIPTIONS {
        n.subscribe(&rec, &rec, &[Event::ResultReleased], &[], now)
            .unwrap();
    }
    assert!(matches!(
        n.subscribe(&rec, &rec, &[Event::ResultReleased], &[], now),
        Err(cophr_node::notify::NotifyError::TooMany)
    ));
    // More released results than are kept: the oldest are dropped.
    let extra = 3;
    let mut all = Vec::new();
    let entries: Vec<Payload> = (0..MAX_NOTIFICATIONS + extra)
        .map(|i| potassium(&format!("{}", 3 + i % 3)))
        .collect();
    for p in entries {
        all.push(store.write(&rec, &lab, p, now, None).unwrap());
    }
    let consultant = key(9, "Consultant");
    store
        .write(
            &rec,
            &george,
            Payload::Grant(grant(
                &consultant,
                Level::Annotate,
                &[Category::LabResults],
                false,
                false,
            )),
            now,
            None,
        )
        .unwrap();
    for r in &all {
        store
            .write(&rec, &consultant, releasing(*r), now, None)
            .unwrap();
    }
    let fresh = n.process(&rec, &rec, now).unwrap();
    assert_eq!(fresh.len(), MAX_NOTIFICATIONS + extra);
    let page = n.list(&rec, &rec, 0, 10_000).unwrap();
    assert_eq!(page.total, MAX_NOTIFICATIONS);
    assert_eq!(page.items.len(), cophr_node::notify::MAX_PAGE);
    assert_eq!(page.items[0].entry, *all.last().unwrap(), "newest first");
    let kept = n.since(&rec, &rec, None).unwrap();
    assert_eq!(kept[0].entry, all[extra], "the oldest {extra} dropped");
}

/// A task sent and stepped, a message and a reminder coming due each give their event
/// once; an edit keeping a task's status, and one's own writes, give none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_messages_and_reminders_notify_once_each_and_edits_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), key(9, "node")).unwrap();
    let george = key(9, "George");
    let nurse = key(9, "Nurse");
    let rec = george.actor();
    // 2027-01-15T08:00:00Z.
    let t0 = 1_800_000_000_000u64;
    store
        .create_record(&george, profile("George", "patient", None), t0, None)
        .unwrap();
    store
        .write(
            &rec,
            &george,
            Payload::Grant(grant(
                &nurse,
                Level::Write,
                &[Category::Tasks, Category::Messages, Category::Appointments],
                false,
                false,
            )),
            t0,
            None,
        )
        .unwrap();
    let n = Notifier::new(store.clone());
    n.subscribe(
        &rec,
        &rec,
        &[Event::TaskStatus, Event::NewMessage, Event::ReminderDue],
        &[],
        t0,
    )
    .unwrap();
    let body = |c: &Category, j: Value| cophr_protocol::schema::body_from_json(c, &j).unwrap();
    let task_json = |status: &str, description: &str| {
        json!({
            "kind": "blood-test-request",
            "description": description,
            "requester": nurse.actor().to_string(),
            "owner": george.actor().to_string(),
            "status": status,
        })
    };
    let task = store
        .write(
            &rec,
            &nurse,
            Payload::Create {
                category: Category::Tasks,
                body: body(&Category::Tasks, task_json("sent", "U&E before clinic")),
            },
            t0 + 1000,
            None,
        )
        .unwrap();
    // The requester's edit keeps the status: not a step.
    store
        .write(
            &rec,
            &nurse,
            Payload::Amend {
                target: task,
                body: body(
                    &Category::Tasks,
                    task_json("sent", "U&E and HbA1c before clinic"),
                ),
            },
            t0 + 2000,
            None,
        )
        .unwrap();
    let message = store
        .write(
            &rec,
            &nurse,
            Payload::Create {
                category: Category::Messages,
                body: body(&Category::Messages, json!({"text": "Bloods on Tuesday?"})),
            },
            t0 + 3000,
            None,
        )
        .unwrap();
    // George's own message is not news to him.
    store
        .write(
            &rec,
            &george,
            Payload::Create {
                category: Category::Messages,
                body: body(&Category::Messages, json!({"text": "Yes, thanks"})),
            },
            t0 + 4000,
            None,
        )
        .unwrap();
    let hour = 3_600_000u64;
    let appointment = store
        .write(
            &rec,
            &nurse,
            Payload::Create {
                category: Category::Appointments,
                body: body(
                    &Category::Appointments,
                    json!({
                        "status": "booked",
                        "start": "2027-01-15T11:00:00Z",
                        "reminders": ["1h"],
                    }),
                ),
            },
            t0 + 5000,
            None,
        )
        .unwrap();
    let got = n.process(&rec, &rec, t0 + 6000).unwrap();
    let ids: Vec<&str> = got.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            format!("task-status:{task}").as_str(),
            format!("new-message:{message}").as_str()
        ],
        "{got:?}"
    );
    // The reminder comes due an hour before the start (2027-01-15T11:00Z), once.
    let at = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .unix_timestamp() as u64
            * 1000
    };
    let eleven = at("2027-01-15T11:00:00Z");
    assert!(n.process(&rec, &rec, eleven - 2 * hour).unwrap().is_empty());
    let due = n.process(&rec, &rec, eleven - hour + 1000).unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].event, Event::ReminderDue);
    assert_eq!(due[0].entry, appointment);
    assert!(
        n.process(&rec, &rec, eleven - hour + 60_000)
            .unwrap()
            .is_empty(),
        "once"
    );
    assert_eq!(n.list(&rec, &rec, 0, 50).unwrap().total, 3);
}

/// Once the grant that showed a category is revoked, a release after the revocation tells
/// the subscriber nothing (her subscription stays; the read rules decide). What was in the
/// revocation's past stays visible to her, as the record's rule says, and so does its
/// notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_revocation_a_subscriber_hears_nothing_new_of_that_category() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), key(9, "node")).unwrap();
    let george = key(9, "George");
    let nurse = key(9, "Nurse");
    let lab = key(9, "Lab");
    let rec = george.actor();
    let now = net::service::now_ms();
    let w = |who: &Keypair, p: Payload| {
        store
            .write(&rec, who, p, net::service::now_ms(), None)
            .unwrap()
    };
    store
        .create_record(&george, profile("George", "patient", None), now, None)
        .unwrap();
    w(
        &george,
        Payload::Grant(grant(
            &lab,
            Level::Write,
            &[Category::LabResults],
            false,
            false,
        )),
    );
    let results = w(
        &george,
        Payload::Grant(grant(
            &nurse,
            Level::View,
            &[Category::LabResults],
            false,
            false,
        )),
    );
    w(
        &george,
        Payload::Grant(grant(&nurse, Level::View, &[Category::Tasks], false, false)),
    );
    let api = AppState::new(
        store.clone(),
        nurse.clone(),
        profile("Nurse", "nurse", None),
        None,
        TOKEN.into(),
    );
    let base = format!("/api/v1/records/{rec}");
    let (s, _) = call(
        &api,
        Method::POST,
        &format!("{base}/subscriptions"),
        Some(json!({"events": ["result-released"], "categories": ["lab-results"]})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let result = w(&lab, potassium("6.1"));
    // The lab may annotate (it writes): it releases what it reported.
    w(&lab, releasing(result));
    let (_, list) = call(&api, Method::GET, &format!("{base}/notifications"), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    store
        .write(
            &rec,
            &george,
            Payload::Revoke {
                grant: results,
                category: None,
                reason: "left the team".into(),
            },
            net::service::now_ms(),
            None,
        )
        .unwrap();
    let after = w(&lab, potassium("4.4"));
    w(&lab, releasing(after));
    let (s, list) = call(&api, Method::GET, &format!("{base}/notifications"), None).await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{list}");
    assert_eq!(items[0]["entry"], json!(result));
    assert!(!list.to_string().contains(&after.to_string()), "{list}");
}

/// A new message in a thread notifies its participants only: the pharmacist, who reads
/// messages but is not in the thread, hears of the loose message and nothing of the
/// thread (the read rule of conversations, `docs/care-team.md`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_message_in_a_thread_notifies_its_participants_only() {
    let dir = tempfile::tempdir().unwrap();
    let pharmacist = key(11, "Pharmacist");
    let (store, _) = Store::open(dir.path(), pharmacist.clone()).unwrap();
    let george = key(11, "George");
    let nurse = key(11, "Nurse");
    let rec = george.actor();
    let t0 = 1_800_000_000_000u64;
    store
        .create_record(&george, profile("George", "patient", None), t0, None)
        .unwrap();
    for k in [&nurse, &pharmacist] {
        store
            .write(
                &rec,
                &george,
                Payload::Grant(grant(k, Level::Write, &[Category::Messages], false, false)),
                t0,
                None,
            )
            .unwrap();
    }
    let n = Notifier::new(store.clone());
    for k in [&nurse, &pharmacist] {
        n.subscribe(&k.actor(), &rec, &[Event::NewMessage], &[], t0)
            .unwrap();
    }
    let body = |j: Value| cophr_protocol::schema::body_from_json(&Category::Messages, &j).unwrap();
    let put = |who: &Keypair, j: Value, t: u64| {
        store
            .write(
                &rec,
                who,
                Payload::Create {
                    category: Category::Messages,
                    body: body(j),
                },
                t,
                None,
            )
            .unwrap()
    };
    let start = put(
        &george,
        json!({"text": "Can you call me?", "participants": [nurse.actor().to_string()]}),
        t0 + 1000,
    );
    let reply = put(
        &nurse,
        json!({"text": "Monday at 10", "thread": start.to_string()}),
        t0 + 2000,
    );
    let loose = put(
        &george,
        json!({"text": "New address from March"}),
        t0 + 3000,
    );
    let ids = |who: &Keypair| -> Vec<String> {
        n.process(&who.actor(), &rec, t0 + 4000)
            .unwrap()
            .into_iter()
            .map(|x| x.id)
            .collect()
    };
    assert_eq!(
        ids(&nurse),
        vec![
            format!("new-message:{start}"),
            format!("new-message:{loose}")
        ],
        "her own reply is not news to her"
    );
    assert_eq!(ids(&pharmacist), vec![format!("new-message:{loose}")]);
    let listed = n.list(&pharmacist.actor(), &rec, 0, 50).unwrap();
    assert_eq!(listed.total, 1);
    assert!(!format!("{listed:?}").contains(&reply.to_string()));
}

/// A PHQ-9 assigned through the REST API by the GP: George hears it was assigned and, as
/// its due date nears, that it is due; the GP (subscribed by assigning) hears of question
/// 9 answered above *Not at all*, and only then. A nurse who subscribed to flags but whose
/// grant was revoked before the answers hears nothing of them; a pharmacist without
/// `questionnaires` cannot subscribe to flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_questionnaire_assigned_coming_due_and_flagged_notifies_those_who_may_see_it() {
    use cophr_protocol::care::questionnaire as q;
    let dir = tempfile::tempdir().unwrap();
    let gp = key(13, "GP");
    let (store, _) = Store::open(dir.path(), gp.clone()).unwrap();
    let george = key(13, "George");
    let nurse = key(13, "Nurse");
    let pharmacist = key(13, "Pharmacist");
    let rec = george.actor();
    let t0 = net::service::now_ms();
    store
        .create_record(&george, profile("George", "patient", None), t0, None)
        .unwrap();
    let both = [Category::Questionnaires, Category::Tasks];
    let g = |k: &Keypair, level, cats: &[Category]| {
        store
            .write(
                &rec,
                &george,
                Payload::Grant(grant(k, level, cats, false, false)),
                net::service::now_ms(),
                None,
            )
            .unwrap()
    };
    g(&gp, Level::Write, &both);
    let nurses = g(&nurse, Level::View, &both);
    g(&pharmacist, Level::View, &[Category::Tasks]);
    let n = Notifier::new(store.clone());
    n.subscribe(
        &rec,
        &rec,
        &[Event::QuestionnaireAssigned, Event::QuestionnaireDue],
        &[],
        t0,
    )
    .unwrap();
    n.subscribe(&nurse.actor(), &rec, &[Event::QuestionnaireFlag], &[], t0)
        .unwrap();
    assert!(matches!(
        n.subscribe(
            &pharmacist.actor(),
            &rec,
            &[Event::QuestionnaireFlag],
            &[],
            t0
        ),
        Err(cophr_node::notify::NotifyError::NotVisible(
            Category::Questionnaires
        ))
    ));
    let api = AppState::new(
        store.clone(),
        gp.clone(),
        profile("GP", "gp", None),
        None,
        TOKEN.into(),
    );
    let base = format!("/api/v1/records/{rec}");
    let (s, published) = call(
        &api,
        Method::POST,
        &format!("{base}/questionnaires"),
        Some(json!({"built_in": "phq-9"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{published}");
    let def: EntryId = published["id"].as_str().unwrap().parse().unwrap();
    let (s, assigned) = call(
        &api,
        Method::POST,
        &format!("{base}/questionnaires/{def}/assign"),
        Some(json!({"due": "2030-06-20"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{assigned}");
    let task: EntryId = assigned["id"].as_str().unwrap().parse().unwrap();
    let sub = assigned["flag_subscription"]
        .as_str()
        .expect("subscribed by assigning");
    let subs = n.subscriptions(&gp.actor(), Some(&rec)).unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].id, sub);
    assert!(subs[0].events.contains(&Event::QuestionnaireFlag));
    // A second assignment makes no second subscription.
    let (_, again) = call(
        &api,
        Method::POST,
        &format!("{base}/questionnaires/{def}/assign"),
        Some(json!({"due": "2030-07-20"})),
    )
    .await;
    assert!(again["flag_subscription"].is_null(), "{again}");
    let second: EntryId = again["id"].as_str().unwrap().parse().unwrap();
    let got: Vec<String> = n
        .process(&rec, &rec, t0)
        .unwrap()
        .into_iter()
        .map(|x| x.id)
        .collect();
    assert_eq!(
        got,
        vec![
            format!("questionnaire-assigned:{task}"),
            format!("questionnaire-assigned:{second}")
        ]
    );
    // Due: from the start of 2030-06-19 (two days before the end of the 20th), once.
    let day = |s: &str| {
        time::OffsetDateTime::parse(
            &format!("{s}T00:00:00Z"),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp() as u64
            * 1000
    };
    assert!(n.process(&rec, &rec, day("2030-06-18")).unwrap().is_empty());
    let due = n.process(&rec, &rec, day("2030-06-19")).unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(due[0].id, format!("questionnaire-due:{task}:2030-06-20"));
    assert_eq!(due[0].event, Event::QuestionnaireDue);
    assert!(n
        .process(&rec, &rec, day("2030-06-19") + 60_000)
        .unwrap()
        .is_empty());
    // The nurse leaves the team before George answers.
    store
        .write(
            &rec,
            &george,
            Payload::Revoke {
                grant: nurses,
                category: None,
                reason: "left the team".into(),
            },
            net::service::now_ms(),
            None,
        )
        .unwrap();
    let p = q::Definition::parse(q::built_in("phq-9").unwrap()).unwrap();
    let answer = |rest: &str, q9: &str| {
        let mut a: Vec<(String, cophr_protocol::Value)> = (1..=8)
            .map(|i| {
                (
                    format!("phq9-{i}"),
                    cophr_protocol::Value::Text(rest.into()),
                )
            })
            .collect();
        a.push(("phq9-9".into(), cophr_protocol::Value::Text(q9.into())));
        let j = q::response_json(&p, &def, &a, "2030-06-19T10:00:00Z", None).unwrap();
        store
            .write(
                &rec,
                &george,
                Payload::Create {
                    category: Category::Questionnaires,
                    body: cophr_protocol::schema::body_from_json(&Category::Questionnaires, &j)
                        .unwrap(),
                },
                net::service::now_ms(),
                None,
            )
            .unwrap()
    };
    let calm = answer("LA6568-5", "LA6568-5"); // Not at all
    let flagged = answer("LA6568-5", "LA6569-3"); // Several days
    let gp_got = n.process(&gp.actor(), &rec, t0).unwrap();
    assert_eq!(gp_got.len(), 1, "{gp_got:?}");
    assert_eq!(gp_got[0].id, format!("questionnaire-flag:{flagged}"));
    assert_eq!(gp_got[0].category, Category::Questionnaires);
    assert!(!format!("{gp_got:?}").contains(&calm.to_string()));
    assert!(
        n.process(&nurse.actor(), &rec, t0).unwrap().is_empty(),
        "the nurse may no longer see the response"
    );
    assert!(n.process(&pharmacist.actor(), &rec, t0).unwrap().is_empty());
    // The REST list shows the flag on the response, and none on the calm one.
    let (s, list) = call(&api, Method::GET, &format!("{base}/questionnaires"), None).await;
    assert_eq!(s, StatusCode::OK);
    let responses = list["responses"].as_array().unwrap();
    let flags_of =
        |id: &EntryId| responses.iter().find(|r| r["id"] == json!(id)).unwrap()["flags"].clone();
    assert_eq!(flags_of(&calm), json!([]));
    assert_eq!(flags_of(&flagged)[0]["question"], "phq9-9");
    assert_eq!(flags_of(&flagged)[0]["answer"], "Several days");
    assert!(flags_of(&flagged)[0].get("total").is_none());
    // A total of 24 (severe) with question 9 "Not at all": the flag over the total score,
    // worked out from the answers, notifies the GP as any flag does.
    let severe = answer("LA6571-9", "LA6568-5"); // Nearly every day, then Not at all
    let gp_got = n.process(&gp.actor(), &rec, t0).unwrap();
    assert_eq!(gp_got.len(), 1, "{gp_got:?}");
    assert_eq!(gp_got[0].id, format!("questionnaire-flag:{severe}"));
    let (_, list) = call(&api, Method::GET, &format!("{base}/questionnaires"), None).await;
    let r = list["responses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == json!(severe))
        .unwrap()
        .clone();
    assert_eq!(r["score"], 24);
    assert_eq!(r["flags"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["flags"][0]["question"], "total");
    assert_eq!(r["flags"][0]["total"], true);
    assert_eq!(r["flags"][0]["answer"], "total score 24");
}
