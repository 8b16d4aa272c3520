//! The web app in-process: its files are served from the binary without a token, with the
//! right content types and security headers, and load nothing from elsewhere.

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
        ("app.css", web::APP_CSS),
    ] {
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
}
