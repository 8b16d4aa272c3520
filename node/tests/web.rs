//! The web app in-process: its files are served from the binary without a token, with the
//! right content types and security headers, and load nothing from elsewhere; every API
//! route the app's script calls is in the OpenAPI document the server publishes.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use cophr_node::http::{router, web, AppState};
use cophr_node::store::Store;
use cophr_protocol::testkit::{key, profile};
use tower::ServiceExt;

fn state(dir: &std::path::Path) -> AppState {
    let (store, _) = Store::open(dir, key(9, "web/node")).expect("a store");
    AppState::new(
        store,
        key(1, "george"),
        profile("George Jones", "patient", None),
        Some("laptop".to_owned()),
        "the-token".to_owned(),
    )
}

/// GETs `path` without a token: status, content type, the CSP header and the body.
async fn get(state: &AppState, path: &str) -> (StatusCode, String, Option<String>, Vec<u8>) {
    let resp = router(state.clone())
        .oneshot(Request::get(path).body(Body::empty()).expect("a request"))
        .await
        .expect("a response");
    let status = resp.status();
    let header_text = |name| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
    };
    let ty = header_text(header::CONTENT_TYPE).unwrap_or_default();
    let csp = header_text(header::CONTENT_SECURITY_POLICY);
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .expect("the body");
    (status, ty, csp, body.to_vec())
}

#[tokio::test]
async fn the_app_files_are_served_without_a_token_with_their_types() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let st = state(dir.path());
    for (path, ty, content) in [
        ("/", "text/html", web::INDEX_HTML),
        ("/index.html", "text/html", web::INDEX_HTML),
        ("/app.js", "text/javascript", web::APP_JS),
        ("/charts.js", "text/javascript", web::CHARTS_JS),
        ("/app.css", "text/css", web::APP_CSS),
        ("/favicon.svg", "image/svg+xml", web::FAVICON_SVG),
    ] {
        let (status, got_ty, csp, body) = get(&st, path).await;
        assert_eq!(status, StatusCode::OK, "{path} without a token");
        assert!(
            got_ty.starts_with(ty),
            "{path} is served as {got_ty}, not {ty}"
        );
        assert_eq!(body, content.as_bytes(), "{path} is the embedded file");
        assert_eq!(csp.as_deref(), Some(web::CONTENT_SECURITY_POLICY), "{path}");
    }
    // The page loads the script and the style sheet that are served.
    assert!(web::INDEX_HTML.contains(r#"<script type="module" src="/app.js">"#));
    assert!(web::INDEX_HTML.contains(r#"href="/app.css""#));
    // The API itself still needs the token.
    let (status, _, _, _) = get(&st, "/api/v1/whoami").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn the_app_loads_nothing_from_elsewhere_and_keeps_the_token_out_of_urls() {
    for (name, text) in [
        ("index.html", web::INDEX_HTML),
        ("app.js", web::APP_JS),
        ("charts.js", web::CHARTS_JS),
        ("app.css", web::APP_CSS),
    ] {
        // The SVG namespace names the markup language; nothing is fetched from it.
        // So does a questionnaire's scoring extension (its FHIR extension URL, compared with
        // a published questionnaire's `extension[].url`).
        let text = text
            .replace("'http://www.w3.org/2000/svg'", "")
            .replace("'https://cophr.invalid/questionnaire-scoring'", "");
        for outside in [
            "http://",
            "https://",
            "url(//",
            "src=\"//",
            "href=\"//",
            "@import",
        ] {
            assert!(!text.contains(outside), "{name} refers outside: {outside}");
        }
    }
    // One fetch, through the one helper that sets the bearer header; no console output.
    assert_eq!(web::APP_JS.matches("fetch(").count(), 1);
    assert!(web::APP_JS.contains("headers.Authorization = `Bearer ${state.token}`"));
    assert!(!web::APP_JS.contains("console."));
    assert!(!web::APP_JS.contains("innerHTML"));
    assert!(
        !web::APP_JS.contains("localStorage"),
        "the token stays in sessionStorage"
    );
    // The charts draw from what the app gives them: no requests, no markup from text, and
    // no inline styles (the policy's style-src 'self' would refuse them).
    for forbidden in [
        "fetch(",
        "XMLHttpRequest",
        "console.",
        "innerHTML",
        "'style'",
        ".style",
        "localStorage",
        "sessionStorage",
    ] {
        assert!(
            !web::CHARTS_JS.contains(forbidden),
            "charts.js has {forbidden}"
        );
    }
    assert!(web::APP_JS.contains("from '/charts.js'"));
}

/// The `ROUTES` table of app.js: (name, method, path).
fn app_routes() -> Vec<(String, String, String)> {
    let js = web::APP_JS;
    let start = js
        .find("const ROUTES = {")
        .expect("app.js has a ROUTES table");
    let block = &js[start..];
    let block = &block[..block.find("\n};").expect("the end of ROUTES")];
    block
        .lines()
        .skip(1)
        .filter_map(|line| {
            // `  name: ['GET', '/path'],`
            let (name, rest) = line.trim().split_once(": [")?;
            let mut parts = rest
                .split('\'')
                .filter(|p| !p.trim().is_empty() && *p != ", ");
            let method = parts.next()?.to_owned();
            let path = parts.next()?.to_owned();
            Some((name.to_owned(), method, path))
        })
        .collect()
}

/// `/records/{rid}/entries/{eid}` → `/records/{}/entries/{}`.
fn shape(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for ch in path.chars() {
        match ch {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            _ => out.push(ch),
        }
    }
    out
}

#[tokio::test]
async fn every_api_route_the_app_calls_is_in_the_openapi_document() {
    let routes = app_routes();
    assert!(routes.len() >= 15, "the ROUTES table was read: {routes:?}");
    let names: BTreeSet<&str> = routes.iter().map(|(n, _, _)| n.as_str()).collect();

    // Every call in the script names a route of the table.
    let js = web::APP_JS;
    let mut calls = 0;
    for (i, _) in js.match_indices("api('") {
        let name = &js[i + 5..];
        let name = &name[..name.find('\'').expect("a closing quote")];
        assert!(
            names.contains(name),
            "app.js calls api('{name}'), which ROUTES lacks"
        );
        calls += 1;
    }
    assert!(
        calls >= routes.len(),
        "every route is called ({calls} calls)"
    );

    let dir = tempfile::tempdir().expect("a temporary directory");
    let st = state(dir.path());
    let (status, ty, _, body) = get(&st, "/api/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(ty.starts_with("application/json"), "{ty}");
    let doc: serde_json::Value = serde_json::from_slice(&body).expect("OpenAPI JSON");
    let paths = doc["paths"].as_object().expect("OpenAPI paths");
    let prefix = doc["servers"][0]["url"].as_str().unwrap_or("");
    for (name, method, path) in &routes {
        let found = paths.iter().find(|(p, _)| {
            let p = p.strip_prefix("/api/v1").unwrap_or(p);
            let p = p.strip_prefix(prefix).unwrap_or(p);
            shape(p) == shape(path)
        });
        let Some((p, ops)) = found else {
            panic!("app.js route {name} ({method} {path}) is not in the OpenAPI document");
        };
        assert!(
            ops.get(method.to_ascii_lowercase()).is_some(),
            "app.js route {name}: the OpenAPI document has {p} but not {method}"
        );
    }
}
