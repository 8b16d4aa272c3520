//! `POST /openehr/v1/query/aql`: `{"q": "<AQL>", "query_parameters": {…}, "offset": n,
//! "fetch": n}`, and `GET /openehr/v1/query/aql?q=…&offset=&fetch=&{name}={value}` (every
//! other URL parameter is a query parameter, as ITS-REST's `query_parameters` in form
//! style), run over the latest version of every composition the identity sees, in every
//! record it has access to ([`cophr_protocol::openehr::aql`] for the subset). `offset` and
//! `fetch` page the rows the query gives (after its own `LIMIT`/`OFFSET`). The answer is
//! an ITS-REST result set (`meta`, `q`, `columns`, `rows`); the compositions whose rows
//! are returned are audited as viewed, nothing else.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cophr_protocol::openehr::{self, aql};
use cophr_protocol::{EntryId, RecordId};
use serde::Deserialize;
use serde_json::{json, Map, Value as JsonValue};

use super::{items, OeError};
use crate::http::api::format_time;
use crate::http::AppState;

/// Largest request body of a query (the query and its parameters), in bytes.
pub const MAX_QUERY_BODY: usize = 64 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    q: String,
    #[serde(default)]
    query_parameters: Map<String, JsonValue>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    fetch: Option<usize>,
    #[serde(default)]
    ehr_id: Option<String>,
}

/// How the rows a query gives are paged (ITS-REST `offset` and `fetch`).
#[derive(Debug, Clone, Default)]
pub struct Paging {
    /// Rows skipped (at most [`aql::MAX_ROWS`]: no query gives more).
    pub offset: usize,
    /// Rows returned at most ([`aql::MAX_ROWS`] when not given, and at most that).
    pub fetch: Option<usize>,
    /// The EHR the query runs in (ITS-REST's `ehr_id`, in the URL or the body), if given:
    /// only its compositions are read, and it is the `$ehr_id` parameter unless that is
    /// given.
    pub ehr: Option<String>,
}

impl Paging {
    /// Sets the EHR the query runs in: a UUID (400 otherwise).
    pub(super) fn in_ehr(mut self, ehr: Option<String>) -> Result<Paging, OeError> {
        if let Some(e) = &ehr {
            if !openehr::is_uuid(e.trim()) {
                return Err(OeError::bad(format!(
                    "ehr_id `{}` is not an EHR id (a UUID)",
                    clip(e)
                )));
            }
        }
        self.ehr = ehr;
        Ok(self)
    }

    pub(super) fn checked(offset: Option<usize>, fetch: Option<usize>) -> Result<Paging, OeError> {
        for (name, n) in [("offset", offset), ("fetch", fetch)] {
            if let Some(n) = n.filter(|n| *n > aql::MAX_ROWS) {
                return Err(OeError::bad(format!(
                    "{name} is at most {} rows, not {n}",
                    aql::MAX_ROWS
                )));
            }
        }
        Ok(Paging {
            offset: offset.unwrap_or(0),
            fetch,
            ehr: None,
        })
    }
}

pub(super) fn invalid(e: &aql::AqlError) -> OeError {
    let status = match e {
        aql::AqlError::TooLong(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    OeError::new(status, "invalid_aql", e.to_string())
}

/// Runs a query.
pub async fn query(State(st): State<AppState>, req: Request) -> Response {
    match run(st, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn run(st: AppState, req: Request) -> Result<Response, OeError> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(OeError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send {\"q\": …} as JSON (Content-Type: application/json)",
        ));
    }
    let url_ehr = form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "ehr_id")
        .map(|(_, v)| v.into_owned());
    let bytes = axum::body::to_bytes(req.into_body(), MAX_QUERY_BODY)
        .await
        .map_err(|_| {
            OeError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a query's body is at most {MAX_QUERY_BODY} bytes"),
            )
        })?;
    let body: QueryBody = serde_json::from_slice(&bytes)
        .map_err(|e| OeError::bad(format!("the body is not {{\"q\": …}}: {e}")))?;
    // `ehr_id` in the body, or in the URL as clients send it with a POST.
    let paging = Paging::checked(body.offset, body.fetch)?.in_ehr(body.ehr_id.or(url_ehr))?;
    answer(st, body.q, body.query_parameters, paging).await
}

/// `GET query/aql?q=…`: the query in the URL.
pub async fn query_get(State(st): State<AppState>, uri: axum::http::Uri) -> Response {
    match run_get(st, &uri).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// Reads `GET query/aql`'s URL parameters: `q`, `offset`, `fetch`, `ehr_id` (the EHR the
/// query runs in, and `$ehr_id`), and every other one a query parameter (a text value).
pub fn url_query(query: &str) -> Result<(String, Map<String, JsonValue>, Paging), OeError> {
    if query.len() > MAX_QUERY_BODY {
        return Err(OeError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("a query's URL parameters are at most {MAX_QUERY_BODY} bytes"),
        ));
    }
    let mut q = None;
    let mut params = Map::new();
    let (mut offset, mut fetch, mut ehr) = (None, None, None);
    let number = |k: &str, v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| OeError::bad(format!("{k} is a number of rows, not `{}`", clip(v))))
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "q" => q = Some(v.into_owned()),
            "offset" => offset = Some(number("offset", &v)?),
            "fetch" => fetch = Some(number("fetch", &v)?),
            "ehr_id" => ehr = Some(v.into_owned()),
            _ => {
                if params.len() >= MAX_PARAMETERS {
                    return Err(OeError::bad(format!(
                        "at most {MAX_PARAMETERS} query parameters"
                    )));
                }
                params.insert(k.into_owned(), JsonValue::String(v.into_owned()));
            }
        }
    }
    let Some(q) = q else {
        return Err(OeError::bad("give the query as ?q=…"));
    };
    Ok((q, params, Paging::checked(offset, fetch)?.in_ehr(ehr)?))
}

/// The most query parameters a `GET query/aql` takes.
pub const MAX_PARAMETERS: usize = 64;

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

async fn run_get(st: AppState, uri: &axum::http::Uri) -> Result<Response, OeError> {
    let (q, params, paging) = url_query(uri.query().unwrap_or_default())?;
    answer(st, q, params, paging).await
}

/// Runs query `text` and answers with its result set.
pub async fn answer(
    st: AppState,
    text: String,
    mut params: Map<String, JsonValue>,
    paging: Paging,
) -> Result<Response, OeError> {
    let q = aql::parse(&text).map_err(|e| invalid(&e))?;
    if let Some(e) = &paging.ehr {
        params
            .entry("ehr_id")
            .or_insert_with(|| JsonValue::String(e.clone()));
    }
    let pages = paging.clone();
    let out = st
        .blocking(move |st| Ok(evaluate(st, &q, &params, &pages)))
        .await
        .map_err(OeError::from)??;
    let columns: Vec<JsonValue> = out
        .columns
        .iter()
        .map(|(name, path)| json!({"name": name, "path": path}))
        .collect();
    let mut meta = json!({
        "_type": "RESULTSET",
        "_schema_version": "1.0.0",
        "_executed_aql": text,
        "resultsize": out.rows.len(),
    });
    if paging.offset > 0 {
        meta["offset"] = json!(paging.offset);
    }
    if let Some(f) = paging.fetch {
        meta["fetch"] = json!(f);
    }
    Ok((
        StatusCode::OK,
        Json(json!({
            "meta": meta,
            "q": text,
            "columns": columns,
            "rows": out.rows.into_iter().map(|(_, r)| r).collect::<Vec<_>>(),
        })),
    )
        .into_response())
}

/// Gathers the sources the identity sees, runs the query, audits the rows' compositions.
fn evaluate(
    st: &AppState,
    q: &aql::Query,
    params: &Map<String, JsonValue>,
    paging: &Paging,
) -> Result<aql::ResultSet, OeError> {
    let me = st.actor();
    let now = st.now();
    let mut sources = Vec::new();
    let mut origin: Vec<(RecordId, [EntryId; 2])> = Vec::new();
    let wanted = q.ehr_id(params).map_err(|e| invalid(&e))?;
    for rid in st.store().records()? {
        let ehr = openehr::ehr_id(&rid);
        if wanted
            .iter()
            .chain(&paging.ehr)
            .any(|id| ehr != id.trim().to_ascii_lowercase())
        {
            continue;
        }
        st.cancel().check()?;
        st.store().with_record(&rid, |r| {
            let v = r.viewer(&me, now);
            if !v.has_access() {
                return;
            }
            let ehr = openehr::ehr_json(
                &rid,
                &format_time(r.entries().next().map_or(0, |e| e.entry().time)),
            );
            for f in items(r, &v) {
                let Some(n) = f.current else { continue };
                let Some(c) = f.composition(r, n) else {
                    continue;
                };
                sources.push(aql::Source {
                    ehr: ehr.clone(),
                    composition: c,
                });
                origin.push((rid, [f.item, f.versions[n - 1].id]));
            }
        })?;
    }
    let mut out = aql::run(q, &sources, params).map_err(|e| invalid(&e))?;
    out.rows = out
        .rows
        .into_iter()
        .skip(paging.offset)
        .take(paging.fetch.unwrap_or(aql::MAX_ROWS))
        .collect();
    if out.rows.is_empty() {
        return Ok(out);
    }
    st.read(now, |rd| {
        for (i, _) in &out.rows {
            if let Some((rid, entries)) = origin.get(*i) {
                let seen = rd.seen(rid);
                seen.add(entries.iter().copied());
                seen.detail("openEHR AQL query");
            }
        }
        Ok::<_, OeError>(())
    })?;
    Ok(out)
}
