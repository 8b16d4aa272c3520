//! Record data: entries by category or at a time, one entry and its history, adding,
//! amending, deleting and annotating, and the timeline.

use super::*;

/// A current item as the API shows it.
pub(super) fn item_json(r: &Record, i: &Item) -> Value {
    // The entry the body was read from, if plain (not read a second time).
    let device = match i.body.entry() {
        Some(e) => e.entry().device.clone(),
        None => r.get(&i.current).and_then(|e| e.entry().device.clone()),
    };
    json!({
        "id": i.id,
        "current": i.current,
        "category": i.category.name(),
        "body": i.body.to_json(),
        "summary": schema::summary(&i.category, &i.body),
        "author": person(r, &i.author, None),
        "device": device,
        "time": format_time(i.updated),
        "created": format_time(i.created),
        "status": status_name(r, &i.current),
        "version": i.versions,
        "versions": i.versions,
        "conflict": i.conflict,
        "deleted": false,
        "annotations": i.annotations.iter().filter_map(|a| annotation(r, a)).collect::<Vec<_>>(),
        // The release of the version in effect (a reviewed result), among the annotations
        // the viewer sees.
        "released": released(r, i),
        // Sealed content that, opened, fails its category's rules: shown, and said so.
        "flag": i.flag,
    })
}

/// The release of an item's version in effect, if the viewer sees one.
fn released(r: &Record, i: &Item) -> Option<Value> {
    let id = i.annotations.iter().find(|a| {
        matches!(r.payload(a).as_deref(),
            Some(Payload::Annotate { target, text })
                if *target == i.current && cophr_protocol::care::release::is_release(text))
    })?;
    let e = r.get(id)?;
    Some(json!({
        "id": id,
        "by": person(r, &e.entry().author, Some(e.entry().time)),
        "time": format_time(e.entry().time),
    }))
}

/// A deleted item (its last data version, marked deleted).
fn deleted_json(r: &Record, v: &Viewer, id: &EntryId) -> Option<Value> {
    let h = fold::history(r, v, id)?;
    let data: Vec<&fold::Version> = h
        .versions
        .iter()
        .filter(|x| matches!(x.kind, "create" | "amend"))
        .collect();
    let last = data.last()?;
    let delete = h.versions.iter().rev().find(|x| x.kind == "delete")?;
    let notes: Vec<Value> = h
        .versions
        .iter()
        .filter(|x| x.kind == "annotate")
        .filter_map(|x| annotation(r, &x.id))
        .collect();
    Some(json!({
        "id": h.item,
        "current": delete.id,
        "category": h.category.name(),
        "body": last.content.to_json(),
        "summary": schema::summary(&h.category, &last.content),
        "author": person(r, &delete.provenance.author, None),
        "device": delete.provenance.device,
        "time": format_time(delete.provenance.time),
        "created": format_time(data.first()?.provenance.time),
        "status": status_name(r, &delete.id),
        "version": data.len(),
        "versions": data.len(),
        "conflict": false,
        "deleted": true,
        "annotations": notes,
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct EntriesQuery {
    category: Option<String>,
    at: Option<String>,
    #[serde(default)]
    include_deleted: bool,
}

pub(super) async fn list_entries(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    QueryParams(q): QueryParams<EntriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let only: BTreeSet<Category> = q
        .category
        .as_deref()
        .map(|s| {
            // An empty name (`category=`, `a,,b`) is refused like any unknown one.
            s.split(',').map(parse_category).collect::<Result<_, _>>()
        })
        .transpose()?
        .unwrap_or_default();
    let at = q.at.as_deref().map(|t| parse_time("at", t)).transpose()?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let now = st.now();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let past;
                    let r = match at {
                        Some(t) => {
                            past = r.at_time(t);
                            &past
                        }
                        None => r,
                    };
                    let v = r.viewer(&me, at.unwrap_or(now));
                    if !v.has_access() {
                        return Err(ApiError::forbidden(match at {
                            Some(_) => "not authorised: no access to this record at that time",
                            None => "not authorised: no access to this record",
                        }));
                    }
                    let state = fold::current(r, &v);
                    let wanted = |c: &Category| only.is_empty() || only.contains(c);
                    let mut list = Vec::new();
                    for i in state.items.iter().filter(|i| wanted(&i.category)) {
                        seen.add(std::iter::once(i.current).chain(i.annotations.iter().copied()));
                        list.push(item_json(r, i));
                    }
                    if q.include_deleted {
                        for d in &state.deleted {
                            if r.category_of(d).is_some_and(wanted) {
                                if let Some(j) = deleted_json(r, &v, d) {
                                    seen.add([*d]);
                                    list.push(j);
                                }
                            }
                        }
                    }
                    let mut detail = format!("entries (API): {} items", list.len());
                    if !only.is_empty() {
                        let names: Vec<&str> = only.iter().map(Category::name).collect();
                        detail.push_str(&format!(" in {}", names.join(",")));
                    }
                    if let Some(t) = at {
                        detail.push_str(&format!(" as at {}", format_time(t)));
                    }
                    seen.detail(detail);
                    Ok(Value::Array(list))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RemindersQuery {
    /// How far ahead upcoming reminders are listed (`30m`, `2h`, `1d`, `1w`).
    within: Option<String>,
}

/// The reminders of the appointments the caller may see: due now, and upcoming within
/// `within` (default a week), earliest first (`cophr_protocol::care::reminders`). Audited
/// as a view of the appointments they come from.
pub(super) async fn reminders(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    QueryParams(q): QueryParams<RemindersQuery>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let within = q.within.unwrap_or_else(|| "7d".into());
    let minutes = cophr_protocol::care::reminder_minutes(&within).ok_or_else(|| {
        ApiError::invalid(format!(
            "within `{}` is not a duration: write e.g. 30m, 2h, 1d or 1w",
            within.chars().take(32).collect::<String>()
        ))
    })?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let now = st.now();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    let state = fold::current(r, &v);
                    let due = cophr_protocol::care::reminders(&state, now, minutes * 60_000);
                    seen.add(
                        state
                            .items
                            .iter()
                            .filter(|i| due.iter().any(|d| d.appointment == i.id))
                            .map(|i| i.current),
                    );
                    seen.detail(format!("reminders (API): {}", due.len()));
                    Ok(Value::Array(
                        due.into_iter()
                            .map(|d| {
                                json!({
                                    "appointment": d.appointment,
                                    "state": if d.due { "due" } else { "upcoming" },
                                    "at": format_time(d.at),
                                    "start": format_time(d.start),
                                    "before": d.before,
                                    "summary": d.summary,
                                })
                            })
                            .collect(),
                    ))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewEntry {
    category: String,
    body: Value,
}

pub(super) async fn add_entry(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<NewEntry>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let category = parse_category(&input.category)?;
    let (id, summary) = st
        .blocking(move |st| {
            held(st, &record)?;
            let body = schemas::body_of(st, &record, &category, &input.body)?;
            let summary = schema::summary(&category, &body);
            let id = st
                .session()
                .write(&record, Payload::Create { category, body }, st.now())?;
            Ok::<_, ApiError>((id, summary))
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({
        "id": id,
        "record": record,
        "category": input.category.trim(),
        "summary": summary,
    })))
}

/// The item an entry id (any version) belongs to, current or deleted, as `me` sees it now.
fn item_of(r: &Record, me: &ActorId, now: Timestamp, id: &EntryId) -> Result<Value, ApiError> {
    let v = viewer(r, me, now)?;
    visible(r, &v, id)?;
    let h = fold::history(r, &v, id).ok_or_else(|| {
        let kind = r.get(id).map_or("entry", |e| e.entry().payload.kind());
        ApiError::not_found(format!(
            "{id} is a {kind} entry, not record data (create, amend, delete, annotate)"
        ))
    })?;
    if let Some(fold::ItemState::Current(i)) = fold::item(r, &v, &h.item) {
        return Ok(item_json(r, &i));
    }
    deleted_json(r, &v, &h.item)
        .ok_or_else(|| ApiError::not_found(format!("no item {} that you can see", h.item)))
}

pub(super) async fn get_entry(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let entry = parse_entry(&eid)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let out = item_of(r, &me, now, &entry)?;
                    if let Some(c) = out["current"].as_str().and_then(|s| s.parse().ok()) {
                        seen.add([c]);
                    }
                    seen.detail(format!("entry (API): {}", entry.short()));
                    Ok(out)
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

pub(super) async fn entry_history(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let entry = parse_entry(&eid)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    visible(r, &v, &entry)?;
                    let h = fold::history(r, &v, &entry).ok_or_else(|| {
                        ApiError::not_found(format!(
                            "{entry} is not record data: it has no history"
                        ))
                    })?;
                    let list: Vec<Value> = h
                        .versions
                        .iter()
                        .map(|x| {
                            let p = &x.provenance;
                            let author = match &p.profile {
                                Some(pr) => person_of(&p.author, Some(pr)),
                                None => person(r, &p.author, None),
                            };
                            let mut o = json!({
                                "id": x.id,
                                "kind": x.kind,
                                "target": x.target,
                                "author": author,
                                "device": p.device,
                                "time": format_time(p.time),
                                "grant": p.grant,
                                "in_effect": x.in_effect,
                                "current": x.current,
                            });
                            let content = x.content.to_json();
                            match x.kind {
                                "create" | "amend" => {
                                    o["summary"] = json!(schema::summary(&h.category, &x.content));
                                    o["body"] = content;
                                }
                                "delete" => o["reason"] = content,
                                "annotate" => o["text"] = content,
                                _ => {}
                            }
                            o
                        })
                        .collect();
                    seen.add(h.versions.iter().map(|x| x.id));
                    seen.detail(format!("history of {} (API)", h.item.short()));
                    Ok::<_, ApiError>(Value::Array(list))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AmendInput {
    body: Value,
}

/// The current item (not deleted) an entry id belongs to: (version in effect, category,
/// body).
fn current_of(
    r: &Record,
    me: &ActorId,
    now: Timestamp,
    id: &EntryId,
) -> Result<(EntryId, EntryId, Category, cophr_protocol::Value), ApiError> {
    let v = viewer(r, me, now)?;
    visible(r, &v, id)?;
    let h = fold::history(r, &v, id)
        .ok_or_else(|| ApiError::not_found(format!("{id} is not record data")))?;
    match fold::item(r, &v, &h.item) {
        Some(fold::ItemState::Current(i)) => Ok((i.id, i.current, i.category, i.body.to_value())),
        Some(fold::ItemState::Locked) => Err(ApiError::conflict(format!(
            "{} is sealed with a key this node was not given",
            h.item.short()
        ))),
        _ => Err(ApiError::conflict(format!(
            "{} has been deleted; its history is kept",
            h.item.short()
        ))),
    }
}

pub(super) async fn amend_entry(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    JsonBody(input): JsonBody<AmendInput>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let entry = parse_entry(&eid)?;
    let (id, item) = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            let (item, current, category, old) = st
                .store()
                .with_record(&record, |r| current_of(r, &me, now, &entry))??;
            // Which body is valid depends on the category of the entry amended, which the
            // path names only by id: a body that fits another category conflicts with the
            // entry as it is (409, documented), not a malformed request.
            let body = schemas::body_of(st, &record, &category, &input.body).map_err(|e| {
                if e.status == StatusCode::UNPROCESSABLE_ENTITY {
                    ApiError::new(StatusCode::CONFLICT, e.code, e.message)
                } else {
                    e
                }
            })?;
            if body == old {
                return Err(ApiError::conflict(
                    "nothing to change: the new version would equal the current one",
                ));
            }
            let id = st.session().write(
                &record,
                Payload::Amend {
                    target: current,
                    body,
                },
                now,
            )?;
            Ok((id, item))
        })
        .await?;
    st.changed(record).await;
    Ok(Json(json!({ "id": id, "item": item })))
}

pub(super) async fn delete_entry(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    OptionalJsonBody(input): OptionalJsonBody<ReasonInput>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let entry = parse_entry(&eid)?;
    let reason = input
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "deleted (no reason given)".to_owned());
    let (id, item) = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            let (item, current, _, _) = st
                .store()
                .with_record(&record, |r| current_of(r, &me, now, &entry))??;
            let id = st.session().write(
                &record,
                Payload::Delete {
                    target: current,
                    reason,
                },
                now,
            )?;
            Ok((id, item))
        })
        .await?;
    st.changed(record).await;
    Ok(Json(json!({ "id": id, "item": item })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnnotateInput {
    text: String,
}

pub(super) async fn annotate(
    State(st): State<AppState>,
    Path((rid, eid)): Path<(String, String)>,
    JsonBody(input): JsonBody<AnnotateInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let target = parse_entry(&eid)?;
    let text = input.text.trim().to_owned();
    if text.is_empty() {
        return Err(ApiError::unprocessable("the annotation's text is empty"));
    }
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.store().with_record(&record, |r| {
                let v = viewer(r, &me, now)?;
                visible(r, &v, &target)
            })??;
            Ok(st
                .session()
                .write(&record, Payload::Annotate { target, text }, now)?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({ "id": id })))
}

pub(super) async fn timeline(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    QueryParams(q): QueryParams<LimitQuery>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let n = limit(&q)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    let state = fold::current(r, &v);
                    let mut items: Vec<&Item> = state.items.iter().collect();
                    items.sort_by_key(|i| std::cmp::Reverse((i.updated, i.current)));
                    items.truncate(n);
                    seen.add(items.iter().map(|i| i.current));
                    seen.detail(format!("timeline (API): {} items", items.len()));
                    let list: Vec<Value> = items.into_iter().map(|i| item_json(r, i)).collect();
                    Ok::<_, ApiError>(Value::Array(list))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}
