//! The patient's web app (`/`, `/index.html`, `/app.js`, `/charts.js`, `/app.css`,
//! `/favicon.svg`),
//! embedded in the binary from `node/web/` (plain HTML, CSS and a JavaScript module: no build
//! step, nothing fetched from elsewhere). The files need no token; the app asks for it and
//! sends it to `/api/v1` as a bearer header. Routes carry their full paths and are merged at
//! the root by [`super::router`]; no fallback here.

use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

/// The app's page.
pub const INDEX_HTML: &str = include_str!("../../web/index.html");
/// The app's script (an ES module).
pub const APP_JS: &str = include_str!("../../web/app.js");
/// The trend charts (an ES module imported by the app and by the browser-only patient page).
pub const CHARTS_JS: &str = include_str!("../../web/charts.js");
/// The app's style sheet.
pub const APP_CSS: &str = include_str!("../../web/app.css");
/// The app's icon.
pub const FAVICON_SVG: &str = include_str!("../../web/favicon.svg");

/// The content security policy of every app file: only this origin's own script, style and
/// API; no inline script, no framing of the app, no plugins. A document's file fetched by
/// the app may be shown from a `blob:` URL (an image, or a PDF in a frame).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; frame-src blob:; connect-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The web app's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route("/app.js", get(app_js))
        .route("/charts.js", get(charts_js))
        .route("/app.css", get(app_css))
        .route("/favicon.svg", get(favicon))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    asset_with(content_type, CONTENT_SECURITY_POLICY, body)
}

/// A file embedded in the binary, with the security headers every app file carries and
/// this content security policy.
pub(super) fn asset_with(
    content_type: &'static str,
    csp: &'static str,
    body: impl IntoResponse,
) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // Small files from the binary: revalidate so an upgraded node serves its own.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(csp),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX_HTML)
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn charts_js() -> Response {
    asset("text/javascript; charset=utf-8", CHARTS_JS)
}

async fn app_css() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn favicon() -> Response {
    asset("image/svg+xml", FAVICON_SVG)
}
