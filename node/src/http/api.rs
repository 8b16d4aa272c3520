//! The REST API under `/api/v1`: JSON in and out, acting as the node's identity. Reads are
//! audited like the CLI's; writes go through [`crate::session::Session`] and are announced
//! to the network. The contract is `openapi.json` (served at `/api/v1/openapi.json`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value as Json_};

use super::{ApiError, AppState};

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The `/api/v1` routes (paths relative to it).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/whoami", get(whoami))
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn whoami(State(st): State<AppState>) -> Result<Json<Json_>, ApiError> {
    let p = st.profile();
    Ok(Json(json!({
        "actor": st.actor(),
        "name": p.name,
        "role": p.role,
        "organisation": p.organisation,
        "device": st.device(),
        "node_peer_id": st.node().map(|n| n.peer_id().to_string()),
    })))
}
