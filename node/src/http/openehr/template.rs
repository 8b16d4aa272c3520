//! `POST definition/template/adl1.4`: an openEHR operational template (OPT 1.4, XML; a
//! web template is taken too) defines an extension category whose entries are
//! compositions of that template, or gives its next version (issue 17;
//! `docs/extensions.md`). The node writes a `DefineSchema` entry as its identity, through
//! the gate, which decides who may define (the patient, or a grantee with write on that
//! category) and whether a version is compatible.
//!
//! Query: `ehr_id` (the record; optional when the identity has access to one record
//! only) and `category` (default `ext:openehr/<template id>`). Answers: 201 with
//! `Location` (the template's web template) and `{template_id, category, version,
//! ehr_id}`; 400 malformed (not UTF-8, not XML or JSON, not a template); 413 over
//! [`MAX_TEMPLATE_BYTES`]; 422 a template cophr cannot hold (naming the node); 409 an
//! incompatible next version, or the same template already in effect; 403 refused by the
//! record's grants. Nothing is stored on any refusal.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use cophr_protocol::schema::template::{sniff_template, TemplateKind, MAX_TEMPLATE_BYTES};
use cophr_protocol::schema::{DefinitionError, ExtensionSchema};
use cophr_protocol::{openehr, Category, Payload, RecordId};
use serde_json::json;

use super::{find_ehr, json_response, OeError, BASE};
use crate::http::AppState;

/// The status an unusable template is answered with (ITS-REST: 400 invalid, 409 in
/// conflict with what is stored, 422 not processable).
fn refusal(e: &DefinitionError) -> OeError {
    let (status, code) = match e {
        DefinitionError::Malformed(_) | DefinitionError::Template(_) => {
            (StatusCode::BAD_REQUEST, "invalid_template")
        }
        DefinitionError::TemplateTooLarge(_) | DefinitionError::TooLarge(_) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        }
        DefinitionError::Incompatible { .. } | DefinitionError::VersionNotNext { .. } => {
            (StatusCode::CONFLICT, "incompatible_template")
        }
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "unsupported_template"),
    };
    OeError::new(status, code, e.to_string())
}

/// The record a template is defined in: `ehr_id`, else the one record the identity has
/// access to.
fn record_for(st: &AppState, ehr_id: Option<&str>) -> Result<RecordId, OeError> {
    if let Some(e) = ehr_id {
        return find_ehr(st, e);
    }
    let me = st.actor();
    let now = st.now();
    let mut found = Vec::new();
    for r in st.store().records()? {
        if st
            .store()
            .with_record(&r, |rec| rec.viewer(&me, now).has_access())?
        {
            found.push(r);
        }
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(OeError::not_found("no EHR here to define a template in")),
        _ => Err(OeError::bad(
            "this node holds several EHRs: name one with ?ehr_id=",
        )),
    }
}

/// `POST definition/template/adl1.4`.
pub(super) async fn upload(State(st): State<AppState>, uri: Uri, body: Bytes) -> Response {
    let query: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    let param = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
    let (category_param, ehr_param) = (param("category"), param("ehr_id"));
    let run = move |st: &AppState| -> Result<(RecordId, ExtensionSchema), OeError> {
        if body.len() > MAX_TEMPLATE_BYTES {
            return Err(refusal(&DefinitionError::TemplateTooLarge(format!(
                "{} bytes; at most {MAX_TEMPLATE_BYTES}",
                body.len()
            ))));
        }
        let text = std::str::from_utf8(&body).map_err(|_| {
            OeError::new(
                StatusCode::BAD_REQUEST,
                "invalid_template",
                "the template is not UTF-8 text",
            )
        })?;
        if sniff_template(text) == TemplateKind::Description {
            return Err(OeError::new(
                StatusCode::BAD_REQUEST,
                "invalid_template",
                "not an openEHR template: send an OPT 1.4 (XML) or a web template (JSON); a cophr JSON definition goes to POST /api/v1/records/{id}/schemas",
            ));
        }
        let category = match category_param {
            Some(c) => Some(
                c.parse::<Category>()
                    .map_err(|e| OeError::bad(e.to_string()))?,
            ),
            None => None,
        };
        let record = record_for(st, ehr_param.as_deref())?;
        let current = st.store().with_record(&record, |r| {
            r.extension_schemas()
                .into_iter()
                .map(|(_, s)| s.clone())
                .collect::<Vec<_>>()
        })?;
        let def = ExtensionSchema::for_record(text, category, |c| {
            current.iter().find(|s| &s.category == c).cloned()
        })
        .map_err(|e| refusal(&e))?;
        if let Some(now) = current.iter().find(|s| s.category == def.category) {
            if now.template == def.template && now.fields == def.fields {
                return Err(OeError::new(
                    StatusCode::CONFLICT,
                    "template_exists",
                    format!(
                        "{} is already defined by this template (version {})",
                        def.category, now.version
                    ),
                ));
            }
            def.compatible_with(now).map_err(|e| refusal(&e))?;
        }
        // Another category must not already answer to this template id.
        let id = openehr::ext::template_id(&def);
        if let Some(other) = current
            .iter()
            .find(|s| s.category != def.category && openehr::ext::template_id(s) == id)
        {
            return Err(OeError::new(
                StatusCode::CONFLICT,
                "template_exists",
                format!("template {id} already defines {}", other.category),
            ));
        }
        let now = st.now();
        st.session()
            .write(&record, Payload::DefineSchema(def.clone()), now)?;
        Ok((record, def))
    };
    let out = st.blocking(move |st| Ok(run(st))).await;
    match out.map_err(OeError::from).and_then(|x| x) {
        Ok((record, def)) => {
            st.changed(record).await;
            let id = openehr::ext::template_id(&def);
            let body = json!({
                "template_id": id,
                "category": def.category.name(),
                "version": def.version,
                "ehr_id": openehr::ehr_id(&record),
            });
            let mut resp = json_response(StatusCode::CREATED, &body);
            let loc: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
            if let Ok(v) =
                HeaderValue::from_str(&format!("{BASE}/definition/template/adl1.4/{loc}"))
            {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp.into_response()
        }
        Err(e) => e.into_response(),
    }
}
