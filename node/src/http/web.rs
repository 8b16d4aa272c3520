//! The patient's web app (`/`, `/app.js`, `/app.css`, `/favicon.svg`; owner: the web
//! helper), embedded in the binary. Routes carry their full paths and are merged at the
//! root by [`super::router`]; no fallback here.

use axum::Router;

use super::AppState;

/// The web app's routes (none yet).
pub fn routes() -> Router<AppState> {
    Router::new()
}
