//! The records: the list, creating one's own, a record's summary, and its export.

use super::entries::item_json;
use super::*;

pub(super) async fn list_records(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let out = st
        .blocking(|st| {
            let me = st.actor();
            let now = st.now();
            let mut rows = Vec::new();
            for id in st.store().records()? {
                let home = st
                    .node()
                    .and_then(|n| n.peer_book(&id).ok())
                    .and_then(|b| b.home.map(|a| a.to_string()));
                let row = st.store().with_record(&id, |r| {
                    let v = r.viewer(&me, now);
                    let mut levels = BTreeMap::new();
                    for c in Category::BUILT_IN.iter() {
                        if let Some(l) = v.level_on(c) {
                            levels.insert(c.name().to_owned(), l);
                        }
                    }
                    json!({
                        "record": id,
                        "patient_name": r.profile(&r.patient(), None).map(|p| p.name.clone()),
                        "is_mine": r.is_patient(&me),
                        "home": home,
                        "entries": r.len(),
                        "categories_visible": levels.keys().collect::<Vec<_>>(),
                        "level_by_category": levels,
                    })
                })?;
                rows.push(row);
            }
            Ok(Value::Array(rows))
        })
        .await?;
    Ok(Json(out))
}

pub(super) async fn create_record(
    State(st): State<AppState>,
    OptionalJsonBody(_body): OptionalJsonBody<Value>,
) -> Result<Response, ApiError> {
    let record = st
        .blocking(|st| {
            let me = st.actor();
            if st.store().holds(&me)? {
                return Err(ApiError::conflict(format!(
                    "your record {me} already exists on this node"
                )));
            }
            st.store().create_record(
                st.keypair(),
                st.profile().clone(),
                st.now(),
                st.device().map(str::to_owned),
            )?;
            Ok(me)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({ "record": record })))
}

pub(super) async fn record_summary(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let now = st.now();
            let out = st.read(now, |rd| {
                rd.detail("record summary (API): about me, alerts, counts");
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    let state = fold::current(r, &v);
                    let pick = |c: Category| {
                        state
                            .in_category(&c)
                            .map(|i| item_json(r, i))
                            .collect::<Vec<_>>()
                    };
                    let about = pick(Category::AboutMe);
                    let alerts = pick(Category::Alerts);
                    seen.add(
                        state
                            .items
                            .iter()
                            .filter(|i| matches!(i.category, Category::AboutMe | Category::Alerts))
                            .map(|i| i.current),
                    );
                    let mut counts: BTreeMap<Category, usize> = BTreeMap::new();
                    for i in &state.items {
                        *counts.entry(i.category.clone()).or_default() += 1;
                    }
                    let cats: Vec<Value> = counts
                        .iter()
                        .map(|(c, n)| json!({ "name": c.name(), "title": c.title(), "count": n }))
                        .collect();
                    let mine: Vec<Value> = r
                        .grants()
                        .filter(|g| g.grant.grantee == me)
                        .map(|g| grant_json(r, g, now))
                        .collect();
                    let patient = r.patient();
                    let profile = r.profile(&patient, None);
                    Ok::<_, ApiError>(json!({
                        "record": record,
                        "patient": {
                            "actor": patient,
                            "name": profile.map(|p| p.name.clone()),
                            "role": profile.map(|p| p.role.clone()),
                        },
                        "about_me": about,
                        "alerts": alerts,
                        "categories": cats,
                        "my_access": { "is_patient": v.is_patient(), "grants": mine },
                    }))
                })?
            })?;
            // Opening a record shared with you is looking at it: the worklist counts
            // changes from here.
            if !st.store().with_record(&record, |r| r.is_patient(&me))? {
                st.store().worklist_looked(&me, &record, now)?;
            }
            Ok::<_, ApiError>(out)
        })
        .await?;
    Ok(Json(out))
}

pub(super) async fn export(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let bytes = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.store()
                .with_record(&record, |r| viewer(r, &me, now).map(drop))??;
            Ok(st
                .store()
                .export(&record, st.keypair(), now, st.device().map(str::to_owned))?)
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{record}.cophr\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// `GET /records/{rid}/export/documents`: the documents stored apart that the entries you
/// may see name (hash and stored size), to be saved beside the export as
/// `FILE.documents/<hash>` (the layout `cophr export` writes and `cophr verify` and
/// `cophr import` read), each from `…/export/documents/{hash}`.
pub(super) async fn export_documents(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let docs = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            let docs = st.store().with_record(&record, |r| {
                let v = viewer(r, &me, now)?;
                Ok::<_, ApiError>(
                    r.documents()
                        .filter(|d| !r.document_entries(&v, d).is_empty())
                        .copied()
                        .collect::<Vec<_>>(),
                )
            })??;
            let store = st.store();
            Ok::<_, ApiError>(
                docs.into_iter()
                    .map(|d| {
                        json!({
                            "hash": d.hash.to_string(),
                            "size": d.size,
                            "held": store.has_document(&d),
                            "url": format!("/api/v1/records/{record}/export/documents/{}", d.hash),
                        })
                    })
                    .collect::<Vec<_>>(),
            )
        })
        .await?;
    Ok(Json(json!({ "documents": docs })))
}

/// `GET /records/{rid}/export/documents/{hash}`: a document's stored (sealed) bytes as the
/// export carries them, for whoever may see an entry naming it; audited as a view of
/// those entries. Checked against the hash as they are read: a damaged byte ends the
/// response short, never with wrong bytes.
pub(super) async fn export_document(
    State(st): State<AppState>,
    Path((rid, hash)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let hash: cophr_protocol::blob::BlobHash = hash
        .parse()
        .map_err(|_| ApiError::invalid("a document hash is 64 lowercase hex digits"))?;
    let doc = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    let found = r.documents().find(|d| d.hash == hash).copied();
                    let entries = found
                        .map(|d| r.document_entries(&v, &d))
                        .unwrap_or_default();
                    let Some(doc) = found.filter(|_| !entries.is_empty()) else {
                        return Err(ApiError::not_found(
                            "no entry you may see names that document",
                        ));
                    };
                    seen.add(entries);
                    seen.detail(format!("document exported (API): {}", doc.hash));
                    Ok(doc)
                })?
            })
        })
        .await?;
    st.ensure_document(record, doc)
        .await
        .map_err(super::documents::missing)?;
    let store = st.store().clone();
    let reader = store
        .blobs()
        .open_blob(&doc.hash)
        .map_err(|e| ApiError::internal(format!("the document could not be read: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_LENGTH, doc.size.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}\"", doc.hash),
            ),
        ],
        super::documents::stream_document(reader),
    )
        .into_response())
}
