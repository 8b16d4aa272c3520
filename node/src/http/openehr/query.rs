//! Stored queries (ITS-REST 1.0.3, DEFINITION and QUERY): AQL kept by the node under a
//! qualified name (`{namespace}::{name}`) and a version (`major.minor.patch`), and run by
//! name.
//!
//! - `PUT definition/query/{qualified_query_name}/{version}`: stores the query (the body:
//!   the AQL as `text/plain`, or `{"q": …}` as JSON). It must parse (400 with the reason
//!   otherwise). A version is never replaced: storing one again is 409. 201, `Location`.
//! - `GET definition/query[/{qualified_query_name}]`: every stored query or its versions,
//!   the latest version first; `…/{version}` one (`name`, `version`, `type` AQL, `saved`,
//!   `q`).
//! - `GET|POST query/{qualified_query_name}[/{version}]`: runs it (the latest version when
//!   none is given) as `query/aql` runs a query: the same identity, access and audit,
//!   `offset`, `fetch`, `ehr_id` and query parameters (in the URL for GET, in a body
//!   `{"query_parameters", "offset", "fetch", "ehr_id"}` for POST).
//!
//! Stored queries are the node's, not a patient's: they sit in the node's metadata (what a
//! node operator configures), not in any record, so they are not synced or exported.
//! At most [`MAX_STORED_QUERIES`] are kept, each at most [`aql::MAX_QUERY_BYTES`].

use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cophr_protocol::openehr::aql;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value as JsonValue};

use super::aql::{answer, url_query, Paging, MAX_QUERY_BODY};
use super::{OeError, BASE};
use crate::http::api::format_time;
use crate::http::AppState;
use crate::store::Store;

/// The most stored queries a node keeps (every version counts).
pub const MAX_STORED_QUERIES: usize = 64;

/// The longest qualified query name, in bytes.
pub const MAX_QUERY_NAME: usize = 200;

/// The node metadata the stored queries are kept in.
const META: &str = "openehr-stored-queries";

/// Serialises the read-modify-write of the stored queries.
static WRITING: Mutex<()> = Mutex::new(());

/// One stored query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredQuery {
    /// Its qualified name, `{namespace}::{name}`.
    pub name: String,
    /// Its version, `major.minor.patch`.
    pub version: String,
    /// When it was stored (ms since the epoch).
    pub saved: u64,
    /// The AQL.
    pub q: String,
}

impl StoredQuery {
    fn json(&self) -> JsonValue {
        json!({
            "name": self.name,
            "version": self.version,
            "type": "AQL",
            "saved": format_time(self.saved),
            "q": self.q,
        })
    }
}

/// Whether `s` is a qualified query name: `{namespace}::{name}`, each of letters, digits,
/// `.`, `_` and `-`, at most [`MAX_QUERY_NAME`] bytes.
pub fn is_query_name(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    s.len() <= MAX_QUERY_NAME && s.split_once("::").is_some_and(|(a, b)| ok(a) && ok(b))
}

/// A version `major.minor.patch` as numbers, if it is one (each at most 4 digits).
pub fn parse_version(s: &str) -> Option<[u16; 3]> {
    let mut out = [0u16; 3];
    let mut parts = s.split('.');
    for slot in &mut out {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

/// The stored queries, oldest first.
fn stored(store: &Store) -> Result<Vec<StoredQuery>, OeError> {
    match store.meta(META)? {
        None => Ok(Vec::new()),
        Some(b) => serde_json::from_slice(&b).map_err(|e| {
            OeError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the stored queries cannot be read: {e}"),
            )
        }),
    }
}

fn check_name(name: &str) -> Result<(), OeError> {
    if is_query_name(name) {
        Ok(())
    } else {
        Err(OeError::bad(format!(
            "`{}` is not a qualified query name ({{namespace}}::{{name}}: letters, digits, `.`, `_`, `-`; at most {MAX_QUERY_NAME} bytes)",
            super::clip(name)
        )))
    }
}

fn check_version(v: &str) -> Result<[u16; 3], OeError> {
    parse_version(v).ok_or_else(|| {
        OeError::bad(format!(
            "`{}` is not a query version (major.minor.patch)",
            super::clip(v)
        ))
    })
}

/// `PUT definition/query/{qualified_query_name}/{version}`.
pub async fn store_query(
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    req: Request,
) -> Response {
    match store_run(st, name, version, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn store_run(
    st: AppState,
    name: String,
    version: String,
    req: Request,
) -> Result<Response, OeError> {
    check_name(&name)?;
    check_version(&version)?;
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let json = media == "application/json";
    if !json && media != "text/plain" {
        return Err(OeError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the AQL as text/plain, or {\"q\": …} as application/json",
        ));
    }
    let bytes: Bytes = axum::body::to_bytes(req.into_body(), MAX_QUERY_BODY)
        .await
        .map_err(|_| {
            OeError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a stored query's body is at most {MAX_QUERY_BODY} bytes"),
            )
        })?;
    let q = if json {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            q: String,
        }
        serde_json::from_slice::<Body>(&bytes)
            .map_err(|e| OeError::bad(format!("the body is not {{\"q\": …}}: {e}")))?
            .q
    } else {
        String::from_utf8(bytes.to_vec()).map_err(|_| OeError::bad("the AQL is not UTF-8 text"))?
    };
    aql::parse(&q).map_err(|e| super::aql::invalid(&e))?;
    let (n, v) = (name.clone(), version.clone());
    st.blocking(move |st| {
        Ok((|| -> Result<(), OeError> {
            let _one = WRITING.lock().unwrap_or_else(|p| p.into_inner());
            let mut all = stored(st.store())?;
            if all.iter().any(|s| s.name == n && s.version == v) {
                return Err(OeError::new(
                    StatusCode::CONFLICT,
                    "exists",
                    format!(
                        "query `{n}` version {v} is stored already (a version is never replaced)"
                    ),
                ));
            }
            if all.len() >= MAX_STORED_QUERIES {
                return Err(OeError::new(
                    StatusCode::CONFLICT,
                    "too_many",
                    format!("this node keeps at most {MAX_STORED_QUERIES} stored queries"),
                ));
            }
            all.push(StoredQuery {
                name: n,
                version: v,
                saved: st.now(),
                q,
            });
            let bytes = serde_json::to_vec(&all).map_err(|e| OeError::bad(e.to_string()))?;
            st.store().set_meta(META, &bytes)?;
            Ok(())
        })())
    })
    .await
    .map_err(OeError::from)??;
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(l) = HeaderValue::from_str(&format!("{BASE}/definition/query/{name}/{version}")) {
        resp.headers_mut().insert(header::LOCATION, l);
    }
    Ok(resp)
}

/// The stored versions of `name` (all when `version` is `None`), the latest first.
async fn versions_of(
    st: &AppState,
    name: String,
    version: Option<String>,
) -> Result<Vec<StoredQuery>, OeError> {
    check_name(&name)?;
    if let Some(v) = &version {
        check_version(v)?;
    }
    let all = st
        .blocking(move |st| Ok(stored(st.store())))
        .await
        .map_err(OeError::from)??;
    let mut found: Vec<StoredQuery> = all
        .into_iter()
        .filter(|s| s.name == name && version.as_ref().is_none_or(|v| *v == s.version))
        .collect();
    found.sort_by_key(|s| std::cmp::Reverse(parse_version(&s.version)));
    if found.is_empty() {
        return Err(OeError::not_found(format!(
            "no stored query `{}`{}",
            super::clip(&name),
            version.map(|v| format!(" version {v}")).unwrap_or_default()
        )));
    }
    Ok(found)
}

/// `GET definition/query`: every stored query, by name, the latest version first.
pub async fn list_all(State(st): State<AppState>) -> Response {
    let out = st.blocking(move |st| Ok(stored(st.store()))).await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok(mut all) => {
            all.sort_by(|a, b| {
                a.name
                    .cmp(&b.name)
                    .then(parse_version(&b.version).cmp(&parse_version(&a.version)))
            });
            (
                StatusCode::OK,
                Json(JsonValue::Array(
                    all.iter().map(StoredQuery::json).collect(),
                )),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET definition/query/{qualified_query_name}`: its versions, the latest first.
pub async fn list(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    match versions_of(&st, name, None).await {
        Ok(all) => (
            StatusCode::OK,
            Json(JsonValue::Array(
                all.iter().map(StoredQuery::json).collect(),
            )),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET definition/query/{qualified_query_name}/{version}`.
pub async fn show(
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    match versions_of(&st, name, Some(version)).await {
        Ok(all) => (StatusCode::OK, Json(all[0].json())).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The query to run: that version, or the latest.
async fn pick(
    st: &AppState,
    name: String,
    version: Option<String>,
) -> Result<StoredQuery, OeError> {
    let all = versions_of(st, name, version).await?;
    all.into_iter()
        .next()
        .ok_or_else(|| OeError::not_found("no such stored query"))
}

async fn run_get(
    st: AppState,
    name: String,
    version: Option<String>,
    uri: &axum::http::Uri,
) -> Result<Response, OeError> {
    // `q` is not a parameter here: the stored query is.
    let query = uri.query().unwrap_or_default();
    if form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "q") {
        return Err(OeError::bad("a stored query is run by name: no `q`"));
    }
    let (_, params, paging) = url_query(&format!("{query}&q="))?;
    let stored = pick(&st, name, version).await?;
    answer(st, stored.q, params, paging).await
}

async fn run_post(
    st: AppState,
    name: String,
    version: Option<String>,
    req: Request,
) -> Result<Response, OeError> {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct Body {
        #[serde(default)]
        query_parameters: Map<String, JsonValue>,
        #[serde(default)]
        offset: Option<usize>,
        #[serde(default)]
        fetch: Option<usize>,
        #[serde(default)]
        ehr_id: Option<String>,
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_QUERY_BODY)
        .await
        .map_err(|_| {
            OeError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("a query's body is at most {MAX_QUERY_BODY} bytes"),
            )
        })?;
    let body: Body = if bytes.iter().all(u8::is_ascii_whitespace) {
        Body::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| {
            OeError::bad(format!(
                "the body is not {{\"query_parameters\", \"offset\", \"fetch\"}}: {e}"
            ))
        })?
    };
    let paging = Paging::checked(body.offset, body.fetch)?.in_ehr(body.ehr_id)?;
    let stored = pick(&st, name, version).await?;
    answer(st, stored.q, body.query_parameters, paging).await
}

fn done(r: Result<Response, OeError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `GET query/{qualified_query_name}`.
pub async fn get_latest(
    State(st): State<AppState>,
    Path(name): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    done(run_get(st, name, None, &uri).await)
}

/// `GET query/{qualified_query_name}/{version}`.
pub async fn get_version(
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    uri: axum::http::Uri,
) -> Response {
    done(run_get(st, name, Some(version), &uri).await)
}

/// `POST query/{qualified_query_name}`.
pub async fn post_latest(
    State(st): State<AppState>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    done(run_post(st, name, None, req).await)
}

/// `POST query/{qualified_query_name}/{version}`.
pub async fn post_version(
    State(st): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    req: Request,
) -> Response {
    done(run_post(st, name, Some(version), req).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_and_versions_are_checked() {
        assert!(is_query_name("org.example::problems"));
        assert!(is_query_name("cophr::bp-over_140"));
        for bad in [
            "problems",
            "::problems",
            "org::",
            "org::a b",
            "org::a/b",
            "a::b::c",
        ] {
            assert!(!is_query_name(bad), "{bad}");
        }
        assert!(!is_query_name(&format!(
            "a::{}",
            "b".repeat(MAX_QUERY_NAME)
        )));
        assert_eq!(parse_version("1.0.12"), Some([1, 0, 12]));
        for bad in [
            "1",
            "1.0",
            "1.0.0.0",
            "1.a.0",
            "1..0",
            "12345.0.0",
            "-1.0.0",
        ] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
        // Numeric order, not text order.
        assert!(parse_version("1.10.0") > parse_version("1.9.0"));
    }
}
