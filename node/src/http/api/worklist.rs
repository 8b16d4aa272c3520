//! The clinician's worklist (`docs/organisations.md`, "Worklist"): the records shared with
//! the node's identity, one row each, searched and paged over the store's persisted
//! summaries ([`crate::store::worklist`]).
//!
//! A row reveals the patient's name (profile), the name of the demographics item in effect
//! (if the identity may see demographics), the national number attested in the patient's
//! profile, and counts (changes since the identity last looked, by category; unreviewed lab
//! results; open tasks) — never any other content. Every row returned is audited as a view
//! of that record's demographics: one view event per record shown, naming the demographics
//! entry the row shows, with a detail saying it was a worklist row.

use super::*;
use crate::store::worklist::{self, Summary, WorklistError, DEFAULT_PAGE_SIZE};

/// `GET /worklist` query parameters.
#[derive(Debug, Deserialize)]
pub(super) struct WorklistQuery {
    /// Search text (name, national number).
    q: Option<String>,
    /// Page, 0-based.
    page: Option<usize>,
    /// Rows per page.
    limit: Option<usize>,
}

fn worklist_error(e: WorklistError) -> ApiError {
    match e {
        WorklistError::Store(s) => s.into(),
        other => ApiError::invalid(other.to_string()),
    }
}

fn row_json(s: &Summary) -> Value {
    json!({
        "record": s.record,
        "name": s.name,
        "demographics_name": s.demographics_name,
        "national_number": s.national_number,
        "changed": s.changed,
        "changed_total": s.changed_total,
        "last_change": s.last_change.map(format_time),
        "looked": s.looked.map(format_time),
        "unreviewed_results": s.unreviewed_results,
        "open_tasks": s.open_tasks,
        "needs_attention": s.needs_attention(),
    })
}

/// `GET /worklist?q=&page=&limit=`: one page of the worklist, each row audited as a view
/// of the record's demographics.
pub(super) async fn list(
    State(st): State<AppState>,
    QueryParams(q): QueryParams<WorklistQuery>,
) -> Result<Json<Value>, ApiError> {
    let text = q.q.unwrap_or_default();
    let page = q.page.unwrap_or(0);
    let limit = q.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    worklist::check_query(&text, limit).map_err(worklist_error)?;
    let out = st
        .blocking(move |st| {
            let me = st.actor();
            let now = st.now();
            st.read(now, |rd| {
                let p = rd
                    .store()
                    .worklist(&me, &text, page, limit, now)
                    .map_err(worklist_error)?;
                rd.detail("worklist row (API): name, national number, counts");
                for row in &p.rows {
                    rd.seen(&row.record).add(row.shows.iter().copied());
                }
                Ok::<_, ApiError>(json!({
                    "rows": p.rows.iter().map(row_json).collect::<Vec<_>>(),
                    "total": p.total,
                    "page": p.page,
                    "page_size": p.page_size,
                    "max_page_size": worklist::MAX_PAGE_SIZE,
                    "max_query_chars": worklist::MAX_QUERY_CHARS,
                }))
            })
        })
        .await?;
    Ok(Json(out))
}

/// `GET /worklist/count`: how many records are shared with the identity (nothing of any
/// record is shown, so nothing is audited): whether the web app shows its Worklist tab.
pub(super) async fn count(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let total = st
        .blocking(|st| {
            let p = st
                .store()
                .worklist(&st.actor(), "", 0, 1, st.now())
                .map_err(worklist_error)?;
            Ok(p.total)
        })
        .await?;
    Ok(Json(json!({ "total": total })))
}

/// `POST /worklist/{rid}/looked`: the identity looked at the record now (what changed is
/// counted from here). Opening a record's summary (`GET /records/{rid}`) does the same.
pub(super) async fn looked(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let me = st.actor();
            let now = st.now();
            st.store()
                .with_record(&record, |r| viewer(r, &me, now).map(drop))??;
            let l = st.store().worklist_looked(&me, &record, now)?;
            Ok(json!({ "record": record, "looked": format_time(l.time) }))
        })
        .await?;
    Ok(Json(out))
}
