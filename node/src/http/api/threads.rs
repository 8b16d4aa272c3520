//! Conversations (`docs/care-team.md`, "Conversations"): the threads the caller takes part
//! in, one thread's messages with who has read each, and marking a thread read. A thread
//! is started and written into through the entries API (`POST …/entries`, category
//! `messages`, with `participants` or `thread`); the record's rules decide who may.

use super::*;
use cophr_protocol::care::thread::{self, ThreadSummary, ThreadView};

fn summary_json(r: &Record, t: &ThreadSummary) -> Value {
    json!({
        "id": t.id,
        "subject": t.subject,
        "participants": t.participants.iter().map(|p| person(r, p, None)).collect::<Vec<_>>(),
        "started_by": person(r, &t.started_by, None),
        "started": format_time(t.started),
        "last": format_time(t.last),
        "messages": t.messages,
        "unread": t.unread,
    })
}

fn view_json(r: &Record, v: &ThreadView) -> Value {
    let messages: Vec<Value> = v
        .messages
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "version": m.version,
                "author": person(r, &m.author, None),
                "time": format_time(m.time),
                "text": m.text,
                "in_reply_to": m.in_reply_to,
                "attachment": m.attachment,
                "read_by": m.read_by.iter().map(|p| person(r, p, None)).collect::<Vec<_>>(),
                "mine": m.mine,
                "flag": m.flag,
            })
        })
        .collect();
    json!({ "thread": summary_json(r, &v.summary), "messages": messages })
}

/// A thread the viewer takes part in, or 404 (the same answer whether it exists or not).
fn thread_of(r: &Record, v: &Viewer, id: &EntryId) -> Result<ThreadView, ApiError> {
    thread::thread(r, v, id)
        .ok_or_else(|| ApiError::not_found(format!("no thread {id} that you take part in")))
}

/// `GET /records/{rid}/threads`: the threads the caller takes part in, newest activity
/// first. Audited as a view of their starts.
pub(super) async fn list(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = read_as_viewer(&st, record, |r, v, seen, _| {
        let list = thread::threads(r, v);
        seen.add(list.iter().map(|t| t.id));
        seen.detail(format!("threads (API): {}", list.len()));
        Ok(Value::Array(
            list.iter().map(|t| summary_json(r, t)).collect(),
        ))
    })
    .await?;
    Ok(Json(out))
}

/// `GET /records/{rid}/threads/{eid}`: one thread's messages, oldest first, with who has
/// read each. Audited as a view of every entry shown.
pub(super) async fn show(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let id = parse_entry(&eid)?;
    let out = read_as_viewer(&st, record, move |r, v, seen, _| {
        let view = thread_of(r, v, &id)?;
        seen.add(
            r.thread_entries(&id)
                .into_iter()
                .filter(|e| r.can_see(v, e)),
        );
        seen.detail(format!("thread (API): {} messages", view.messages.len()));
        Ok(view_json(r, &view))
    })
    .await?;
    Ok(Json(out))
}

/// `POST /records/{rid}/threads/{eid}/read`: marks every message of the thread the caller
/// has not read (and did not write) read, one signed receipt each; the senders see it.
pub(super) async fn mark_read(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let id = parse_entry(&eid)?;
    let marked = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            let unread = st.store().with_record(&record, |r| {
                let v = viewer(r, &me, now)?;
                let view = thread_of(r, &v, &id)?;
                let mut mine = v.people().to_vec();
                if v.is_patient() {
                    mine.push(r.id());
                }
                Ok::<_, ApiError>(
                    view.messages
                        .iter()
                        .filter(|m| !m.mine && !m.read_by.iter().any(|p| mine.contains(p)))
                        .map(|m| m.version)
                        .collect::<Vec<EntryId>>(),
                )
            })??;
            for target in &unread {
                st.session().write(
                    &record,
                    Payload::Annotate {
                        target: *target,
                        text: thread::READ_MARK.to_owned(),
                    },
                    now,
                )?;
            }
            Ok(unread)
        })
        .await?;
    if !marked.is_empty() {
        st.changed(record).await;
    }
    Ok(Json(json!({ "marked": marked })).into_response())
}
