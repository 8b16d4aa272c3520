//! Results released after review and notifications (`crate::notify`): releasing a
//! result, the identity's subscriptions, its notifications (a bounded list with the unread
//! count, marking read) and a live stream of them as server-sent events, caught up from
//! `Last-Event-ID` after being offline.
//!
//! Delivering a notification is a view of the entry it names (and of the release that
//! caused it): it is re-checked against the identity's viewer at delivery (a grant revoked
//! since hides it), and audited like any read (`notifications (API): N`). A notification
//! carries no clinical content: event, entry id, category, time.

use std::collections::HashSet;
use std::convert::Infallible;

use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use cophr_protocol::care::release;
use tokio::sync::broadcast::error::RecvError;

use super::*;
use crate::notify::{Event, Notification, NotifyError, CHANNEL, MAX_PAGE};

impl From<NotifyError> for ApiError {
    fn from(e: NotifyError) -> Self {
        match e {
            NotifyError::NotVisible(_) | NotifyError::NoAccess => {
                ApiError::forbidden(e.to_string())
            }
            NotifyError::Invalid(_) => ApiError::unprocessable(e.to_string()),
            NotifyError::TooMany | NotifyError::NotAbout(_) => ApiError::conflict(e.to_string()),
            NotifyError::NotFound(_) => ApiError::not_found(e.to_string()),
            NotifyError::Store(s) => s.into(),
        }
    }
}

/// A notification as the API shows it.
fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "record": n.record,
        "event": n.event.name(),
        "entry": n.entry,
        "by": n.by,
        "category": n.category.name(),
        "time": format_time(n.time),
        "read": n.read,
    })
}

/// Keeps the notifications the identity may still see (the entry, and the entry that
/// caused it), auditing them as one view. Runs on a blocking thread.
fn deliver(
    st: &AppState,
    record: &RecordId,
    list: Vec<Notification>,
    cancel: &crate::session::Cancel,
) -> Result<Vec<Notification>, ApiError> {
    if list.is_empty() {
        return Ok(list);
    }
    let me = st.actor();
    let now = st.now();
    st.session().read(cancel, now, |rd| {
        rd.record(record, |r, seen| {
            let v = r.viewer(&me, now);
            let keep: Vec<Notification> = list
                .into_iter()
                .filter(|n| r.can_see(&v, &n.entry) && n.by.is_none_or(|b| r.can_see(&v, &b)))
                .collect();
            seen.add(
                keep.iter()
                    .flat_map(|n| std::iter::once(n.entry).chain(n.by)),
            );
            seen.detail(format!("notifications (API): {}", keep.len()));
            Ok::<_, ApiError>(keep)
        })?
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReleaseInput {
    #[serde(default)]
    note: Option<String>,
}

/// `POST /records/{rid}/entries/{eid}/release`: releases a reviewed result to the patient.
pub(super) async fn release(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    OptionalJsonBody(input): OptionalJsonBody<ReleaseInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let target = parse_entry(&eid)?;
    let note = input.note;
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.store().with_record(&record, |r| {
                let v = viewer(r, &me, now)?;
                visible(r, &v, &target)
            })??;
            let text = release::release_text(note.as_deref());
            Ok(st
                .session()
                .write(&record, Payload::Annotate { target, text }, now)?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({ "id": id, "released": target })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubscribeInput {
    events: Vec<String>,
    #[serde(default)]
    categories: Vec<String>,
}

fn subscription_json(s: &crate::notify::Subscription) -> Value {
    json!({
        "id": s.id,
        "record": s.record,
        "events": s.events.iter().map(|e| e.name()).collect::<Vec<_>>(),
        "categories": s.categories.iter().map(Category::name).collect::<Vec<_>>(),
        "created": format_time(s.created),
    })
}

/// `GET /records/{rid}/subscriptions`.
pub(super) async fn subscriptions(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = st
        .blocking(move |st| {
            let list = st.notifier().subscriptions(&st.actor(), Some(&record))?;
            Ok(Value::Array(list.iter().map(subscription_json).collect()))
        })
        .await?;
    Ok(Json(out))
}

/// `POST /records/{rid}/subscriptions`: 403 for a category the identity may not see.
pub(super) async fn subscribe(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<SubscribeInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    if input.events.len() > Event::ALL.len() || input.categories.len() > Category::BUILT_IN.len() {
        return Err(ApiError::unprocessable("too many events or categories"));
    }
    let events = input
        .events
        .iter()
        .map(|e| {
            Event::parse(e).ok_or_else(|| {
                ApiError::unprocessable(format!(
                    "unknown event `{}` (one of {})",
                    e.chars().take(40).collect::<String>(),
                    Event::ALL.map(Event::name).join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let categories = input
        .categories
        .iter()
        .map(|c| parse_category(c))
        .collect::<Result<Vec<_>, _>>()?;
    let s = st
        .blocking(move |st| {
            held(st, &record)?;
            Ok(st
                .notifier()
                .subscribe(&st.actor(), &record, &events, &categories, st.now())?)
        })
        .await?;
    st.start_notifications();
    Ok(created(subscription_json(&s)))
}

/// `DELETE /records/{rid}/subscriptions/{sid}`.
pub(super) async fn unsubscribe(
    State(st): State<AppState>,
    Path((rid, sid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let _ = parse_record(&rid)?;
    let removed = sid.clone();
    st.blocking(move |st| Ok(st.notifier().unsubscribe(&st.actor(), &sid)?))
        .await?;
    Ok(Json(json!({ "removed": removed })))
}

#[derive(Debug, Deserialize)]
pub(super) struct PageQuery {
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /records/{rid}/notifications?offset=&limit=`: newest first, with the unread count.
pub(super) async fn list(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let limit = q.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!("limit must be 1 to {MAX_PAGE}")));
    }
    st.start_notifications();
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let now = st.now();
            st.store()
                .with_record(&record, |r| viewer(r, &me, now).map(|_| ()))??;
            st.notifier().process(&me, &record, now)?;
            let page = st
                .notifier()
                .list(&me, &record, q.offset.unwrap_or(0), limit)?;
            let hidden = page.items.len();
            let items = deliver(st, &record, page.items, st.cancel())?;
            let hidden = hidden - items.len();
            Ok(json!({
                "unread": page.unread.saturating_sub(hidden),
                "total": page.total,
                "items": items.iter().map(notification_json).collect::<Vec<_>>(),
            }))
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadInput {
    #[serde(default)]
    ids: Option<Vec<String>>,
}

/// `POST /records/{rid}/notifications/read`: marks those named (or all) read.
pub(super) async fn mark_read(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    OptionalJsonBody(input): OptionalJsonBody<ReadInput>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let ids = input.ids;
    if ids.as_ref().is_some_and(|i| i.len() > MAX_PAGE) {
        return Err(ApiError::invalid(format!("at most {MAX_PAGE} ids at once")));
    }
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let marked = st.notifier().mark_read(&me, &record, ids.as_deref())?;
            let unread = st.notifier().list(&me, &record, 0, 1)?.unread;
            Ok(json!({ "marked": marked, "unread": unread }))
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
pub(super) struct StreamQuery {
    /// For clients that cannot set the header (the catch-up point).
    #[serde(default)]
    last_event_id: Option<String>,
}

/// The longest `Last-Event-ID` read.
const MAX_EVENT_ID: usize = 200;

/// `GET /records/{rid}/notifications/stream`: server-sent events, one `notification` per
/// notification (its id the SSE id). First what was missed since `Last-Event-ID` (or every
/// kept one), then live ones. At most [`crate::notify::MAX_STREAMS`] at once (503 beyond).
pub(super) async fn stream(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<StreamQuery>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let header = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    for given in [&header, &q.last_event_id].into_iter().flatten() {
        if given.chars().count() > MAX_EVENT_ID {
            return Err(ApiError::invalid(format!(
                "Last-Event-ID is longer than {MAX_EVENT_ID} characters: it is no notification's id"
            )));
        }
    }
    let last: Option<String> = header.or(q.last_event_id);
    let permit = st.notifier().stream_permit().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many notification streams are open on this node; try again later",
        )
    })?;
    st.start_notifications();
    // Listening before catching up: nothing falls between the two.
    let mut live = st.notifier().live();
    let backlog = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let now = st.now();
            st.store()
                .with_record(&record, |r| viewer(r, &me, now).map(|_| ()))??;
            st.notifier().process(&me, &record, now)?;
            Ok(st.notifier().since(&me, &record, last.as_deref())?)
        })
        .await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(CHANNEL);
    let me = st.actor();
    let node = st.notifier().node();
    tokio::spawn(async move {
        let _permit = permit;
        // A stream outlives its request: its reads are its own (audited as delivered).
        let cancel = crate::session::Cancel::new();
        let mut sent: HashSet<String> = HashSet::new();
        let mut last_sent: Option<String> = None;
        let mut batch = backlog;
        loop {
            let st2 = st.clone();
            let c = cancel.clone();
            let fresh: Vec<Notification> = batch
                .into_iter()
                .filter(|n| !sent.contains(&n.id))
                .collect();
            let shown = match tokio::task::spawn_blocking(move || deliver(&st2, &record, fresh, &c))
                .await
            {
                Ok(Ok(s)) => s,
                _ => return,
            };
            for n in shown {
                let Ok(ev) = SseEvent::default()
                    .event("notification")
                    .id(n.id.clone())
                    .json_data(notification_json(&n))
                else {
                    continue;
                };
                if tx.send(ev).await.is_err() {
                    return;
                }
                sent.insert(n.id.clone());
                last_sent = Some(n.id);
            }
            batch = loop {
                let got = tokio::select! {
                    _ = tx.closed() => return,
                    got = live.recv() => got,
                };
                match got {
                    Ok((at, who, n)) if at == node && who == me && n.record == record => {
                        break vec![n]
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {
                        // Fell behind: catch up from the stored list.
                        let n = st.notifier().clone();
                        let l = last_sent.clone();
                        match tokio::task::spawn_blocking(move || {
                            n.since(&me, &record, l.as_deref())
                        })
                        .await
                        {
                            Ok(Ok(b)) => break b,
                            _ => return,
                        }
                    }
                    Err(RecvError::Closed) => return,
                }
            };
        }
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
