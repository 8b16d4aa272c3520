//! Requests to a real node's HTTP API, as a client would make them: a fresh connection
//! each time, every status returned rather than raised.

use std::time::Duration;

use serde_json::Value;

/// An agent that returns every status and keeps no idle connection.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

/// The status and JSON body (`Null` if none) of a request with the bearer `token`: a POST
/// of `body` if given, else a GET. Panics, naming the URL, if the node does not answer.
pub fn call(url: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let resp = match body {
        Some(b) => agent()
            .post(url)
            .header("authorization", &auth)
            .content_type("application/json")
            .send(b.to_string()),
        None => agent().get(url).header("authorization", &auth).call(),
    };
    let mut resp = resp.unwrap_or_else(|e| panic!("the request to {url} failed: {e}"));
    let status = resp.status().as_u16();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_vec()
        .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
