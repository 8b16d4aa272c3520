//! The FHIR R4 API (`/fhir/r4/...`; owner: the fhir-api helper). Routes carry their full
//! paths and are merged at the root by [`super::router`]; no fallback here.

use axum::Router;

use super::AppState;

/// The FHIR routes (none yet).
pub fn routes() -> Router<AppState> {
    Router::new()
}
