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

/// The query of a message with a file attached (the file is the request's body).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewAttachment {
    /// The message's text.
    text: String,
    /// The message replied to (a version in the thread).
    #[serde(rename = "in-reply-to")]
    in_reply_to: Option<String>,
    /// The file's type, if the client declares one (its content must agree).
    #[serde(rename = "media-type")]
    media_type: Option<String>,
}

/// `POST /records/{rid}/threads/{eid}/attachments?text=…[&in-reply-to=…&media-type=…]`, the
/// file as the body (its length given): a message in the thread `eid` with the file
/// attached. The message's fields and the caller's place in the thread are checked before a
/// byte is stored; the file is then sealed as it streams into the blob store (as a
/// document's, `POST …/documents`), and the message naming it is written, the record's
/// rules deciding as for any message.
pub(super) async fn attach(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    QueryParams(q): QueryParams<NewAttachment>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let size = super::documents::upload_size(&headers)?;
    let drain = super::documents::Drain::of(&headers, size);
    let checked = attachable(&st, &rid, &eid, q.text, q.in_reply_to, size).await;
    let (record, thread_id, mut fields) = match checked {
        Ok(checked) => checked,
        Err(e) => return Err(super::documents::refused(body, drain, e).await),
    };
    let crate::store::Received { file, .. } =
        super::documents::receive(&st, body, size, drain, q.media_type).await?;
    fields.insert("attachment".to_owned(), file.to_value());
    let body = cophr_protocol::Value::Map(fields);
    let summary = schema::summary(&Category::Messages, &body);
    let id = st
        .blocking(move |st| {
            Ok(st.session().write(
                &record,
                Payload::Create {
                    category: Category::Messages,
                    body,
                },
                st.now(),
            )?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({
        "id": id,
        "record": record,
        "category": "messages",
        "summary": summary,
        "thread": thread_id,
        "size": size,
    })))
}

/// A message with a file attached, checked before a byte of the file is read: its
/// fields (with a stand-in for the file), and the caller's place in the thread `eid` of
/// the record `rid`. Returns the record, the thread and the message's fields.
async fn attachable(
    st: &AppState,
    rid: &str,
    eid: &str,
    text: String,
    in_reply_to: Option<String>,
    size: u64,
) -> Result<(RecordId, EntryId, BTreeMap<String, cophr_protocol::Value>), ApiError> {
    use cophr_protocol::blob::DocumentFile;
    let record = parse_record(rid)?;
    let thread_id = parse_entry(eid)?;
    let mut fields = BTreeMap::new();
    fields.insert("text".to_owned(), cophr_protocol::Value::Text(text));
    fields.insert(
        thread::THREAD.to_owned(),
        cophr_protocol::Value::Text(thread_id.to_string()),
    );
    if let Some(r) = in_reply_to {
        let reply = parse_entry(&r)?;
        fields.insert(
            "in-reply-to".to_owned(),
            cophr_protocol::Value::Text(reply.to_string()),
        );
    }
    // The fields (with a stand-in for the file) and the caller's place in the thread are
    // checked before a byte is stored.
    let mut check = fields.clone();
    check.insert(
        "attachment".to_owned(),
        DocumentFile {
            hash: cophr_protocol::blob::BlobHash::of(b""),
            size,
            key: None,
        }
        .to_value(),
    );
    schema::validate(
        &Category::Messages,
        &cophr_protocol::Value::Map(check.clone()),
    )
    .map_err(|e| ApiError::unprocessable(format!("messages: {e}")))?;
    let dry = Payload::Create {
        category: Category::Messages,
        body: cophr_protocol::Value::Map(check),
    };
    st.blocking(move |st| {
        held(st, &record)?;
        let now = st.now();
        let me = st.actor();
        st.store().with_record(&record, |r| {
            let v = viewer(r, &me, now)?;
            thread_of(r, &v, &thread_id).map(|_| ())
        })??;
        st.session().check_write(&record, &dry, now)?;
        Ok(())
    })
    .await?;
    Ok((record, thread_id, fields))
}
