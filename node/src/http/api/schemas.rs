//! Extension categories' schemas defined as data (`docs/extensions.md`): the ones a record
//! defines (in effect now), one category's with its versions, and defining one. Reads are
//! audited as views of the definition entries shown, for the viewer who may see them.

use cophr_protocol::schema::{DefinitionError, ExtensionSchema};

use super::*;

/// A definition as the API shows it: the category catalogue's form (what the web app's
/// forms read) with the definition entry, its author and time, and the definition itself.
fn schema_json(r: &Record, id: &EntryId, s: &ExtensionSchema) -> Value {
    let mut o = s.catalogue_json();
    o["entry"] = json!(id);
    o["defined_by"] = r
        .author_of_entry(id)
        .map_or(Value::Null, |a| person(r, &a, None));
    o["defined"] = r.time_of(id).map_or(Value::Null, |t| json!(format_time(t)));
    o["definition"] = serde_json::to_value(s).unwrap_or_default();
    o
}

/// A body from app JSON for `category` in `record`: converted by the extension's schema in
/// effect (a quantity may be a bare number), or the built-in category's.
pub(super) fn body_of(
    st: &AppState,
    record: &RecordId,
    category: &Category,
    json: &Value,
) -> Result<cophr_protocol::Value, ApiError> {
    let ext = if category.is_extension() {
        st.store().with_record(record, |r| {
            r.extension_schema(category).map(|(_, s)| s.clone())
        })?
    } else {
        None
    };
    let body = match &ext {
        Some(x) => x.with_view(|s| schema::body_from_json_in(category, Some(s), json)),
        None => schema::body_from_json(category, json),
    };
    body.map_err(|e| {
        let message = format!("{category}: {e}");
        // What the OpenAPI document cannot state as a schema is a 409, documented: a rule
        // across fields or about a value's content (dates in order, diastolic below
        // systolic, a document's one file and its type, JSON in a text), and an extension's
        // schema, which the record defines as data. Everything else the document states
        // (fields, types, codes, units, ranges, sizes): 422.
        if ext.is_some() || matches!(e, schema::SchemaError::Rule(_)) {
            ApiError::new(StatusCode::CONFLICT, "rule_failed", message)
        } else {
            ApiError::unprocessable(message)
        }
    })
}

pub(super) async fn list(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            // Nothing to show (most records): no read to audit (the web app asks on every
            // record it opens).
            let none = st.store().with_record(&record, |r| {
                Ok::<_, ApiError>(r.visible_schemas(&viewer(r, &me, now)?).is_empty())
            })??;
            if none {
                return Ok(Value::Array(Vec::new()));
            }
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    let list = r.visible_schemas(&v);
                    seen.add(list.iter().map(|(id, _)| *id));
                    seen.detail(format!("extension schemas (API): {}", list.len()));
                    let out: Vec<Value> =
                        list.iter().map(|(id, s)| schema_json(r, id, s)).collect();
                    Ok::<_, ApiError>(Value::Array(out))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VersionQuery {
    version: Option<u32>,
}

pub(super) async fn show(
    State(st): State<AppState>,
    Path((rid, cat)): Path<(String, String)>,
    QueryParams(q): QueryParams<VersionQuery>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let category = parse_category(&cat)?;
    if !category.is_extension() {
        return Err(ApiError::invalid(format!(
            "{category} is a core category with a fixed schema (GET /api/v1/categories)"
        )));
    }
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    let chosen = match q.version {
                        None => r.extension_schema(&category),
                        Some(n) => r
                            .schema_versions(&category)
                            .into_iter()
                            .find(|(_, s)| s.version == n),
                    };
                    let Some((id, s)) = chosen.filter(|(id, _)| r.can_see(&v, id)) else {
                        return Err(ApiError::not_found(match q.version {
                            None => format!("no schema is defined for {category} in this record"),
                            Some(n) => format!("{category} has no version {n} in this record"),
                        }));
                    };
                    seen.add([id]);
                    seen.detail(format!("extension schema {category} v{} (API)", s.version));
                    let mut o = schema_json(r, &id, s);
                    o["versions"] = r
                        .schema_versions(&category)
                        .iter()
                        .filter(|(vid, _)| r.can_see(&v, vid))
                        .map(|(vid, s)| json!({ "version": s.version, "entry": vid }))
                        .collect();
                    Ok(o)
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

pub(super) async fn define(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    // The same checks as a file's: bounded, no say on access, well formed.
    let text = input.to_string();
    // What the document states (types, sizes, codes and units by field type) is a 422;
    // rules across fields or values it cannot state — a name given twice, a summary that
    // names no field, a minimum above its maximum — a 409, documented.
    let definition = ExtensionSchema::from_json(&text).map_err(|e| match &e {
        DefinitionError::DuplicateField(_) | DefinitionError::Summary(_) => {
            ApiError::new(StatusCode::CONFLICT, "rule_failed", e.to_string())
        }
        DefinitionError::Field { why, .. } if why.contains("above its maximum") => {
            ApiError::new(StatusCode::CONFLICT, "rule_failed", e.to_string())
        }
        _ => ApiError::unprocessable(e.to_string()),
    })?;
    let (category, version) = (definition.category.clone(), definition.version);
    let mut definition = definition;
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            // Each field keeps its archetype node from the version in effect.
            let previous = st.store().with_record(&record, |r| {
                r.extension_schema(&definition.category)
                    .map(|(_, s)| s.clone())
                    .filter(|s| s.version.saturating_add(1) == definition.version)
            })?;
            definition.assign_nodes(previous.as_ref());
            Ok::<_, ApiError>(st.session().write(
                &record,
                Payload::DefineSchema(definition),
                st.now(),
            )?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({
        "id": id,
        "record": record,
        "category": category.name(),
        "version": version,
    })))
}
