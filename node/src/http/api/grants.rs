//! Who has access: the grants, granting and revoking.

use cophr_protocol::invite::Terms;

use super::*;

pub(super) async fn list_grants(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = read_as_viewer(&st, record, |r, v, seen, now| {
        let mut grants: Vec<&GrantInfo> = r.grants().filter(|g| r.can_see(v, &g.id)).collect();
        grants.sort_by_key(|g| (g.time, g.id));
        seen.add(grants.iter().map(|g| g.id));
        seen.detail(format!("grants (API): {}", grants.len()));
        let list: Vec<Value> = grants.iter().map(|g| grant_json(r, g, now)).collect();
        Ok(Value::Array(list))
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GrantInput {
    grantee: String,
    categories: Value,
    level: String,
    from: Option<String>,
    expires: Option<String>,
    #[serde(default)]
    delegate: bool,
    #[serde(default)]
    audit: bool,
    label: Option<String>,
    /// Give the keys of what was written before the grant (default), or, with `false`,
    /// only of what is written from the grant on.
    #[serde(default = "yes")]
    history: bool,
}

fn yes() -> bool {
    true
}

fn scope_of(v: &Value) -> Result<Scope, ApiError> {
    let bad =
        || ApiError::invalid("categories must be \"all\" or a non-empty list of category names");
    match v {
        Value::String(s) if s.trim().eq_ignore_ascii_case("all") => Ok(Scope::All),
        Value::Array(list) => {
            let set: BTreeSet<Category> = list
                .iter()
                .map(|c| c.as_str().ok_or_else(bad).and_then(parse_category))
                .collect::<Result<_, _>>()?;
            if set.is_empty() {
                return Err(bad());
            }
            Ok(Scope::Only(set))
        }
        _ => Err(bad()),
    }
}

/// A level that may be granted: relay (store and serve the record, never read it: a
/// host), view, annotate, write or delete; an unknown level is explained.
pub fn grantable_level(text: &str) -> Result<Level, String> {
    text.trim().parse::<Level>().map_err(|_| {
        format!(
            "`{}` is not a level: relay, view, annotate, write or delete",
            text.trim()
        )
    })
}

/// The access a grant or an invitation gives, from the fields both take.
#[allow(clippy::too_many_arguments)]
pub(super) fn terms_of(
    categories: &Value,
    level: &str,
    from: Option<&str>,
    expires: Option<&str>,
    audit: bool,
    delegate: bool,
    label: Option<String>,
) -> Result<Terms, ApiError> {
    let scope = scope_of(categories)?;
    let level = grantable_level(level).map_err(ApiError::invalid)?;
    let not_before = from.map(|t| parse_time("from", t)).transpose()?;
    let until = expires.map(|t| parse_time("expires", t)).transpose()?;
    if let (Some(a), Some(b)) = (not_before, until) {
        if a > b {
            // A rule across two fields (the schema cannot compare them): 409, documented.
            return Err(ApiError::conflict("from is after expires"));
        }
    }
    Ok(Terms {
        level,
        scope,
        not_before,
        until,
        audit,
        delegate,
        label: label.map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()),
        requires: None,
    })
}

pub(super) async fn add_grant(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<GrantInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let grantee: ActorId =
        input.grantee.trim().parse().map_err(|e| {
            ApiError::invalid(format!("`{}` is not an actor id: {e}", input.grantee))
        })?;
    let terms = terms_of(
        &input.categories,
        &input.level,
        input.from.as_deref(),
        input.expires.as_deref(),
        input.audit,
        input.delegate,
        input.label,
    )?;
    if grantee == st.actor() {
        return Err(ApiError::invalid("you cannot grant access to yourself"));
    }
    let grant = terms.grant(grantee);
    let history = input.history;
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            Ok(st
                .session()
                .write_with(&record, Payload::Grant(grant), st.now(), history)?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({ "id": id })))
}

pub(super) async fn revoke(
    State(st): State<AppState>,
    Path((rid, gid)): Path<(String, String)>,
    OptionalJsonBody(input): OptionalJsonBody<ReasonInput>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let grant = parse_entry(&gid)?;
    let reason = input
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "revoked (no reason given)".to_owned());
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.store().with_record(&record, |r| {
                let v = viewer(r, &me, now)?;
                visible(r, &v, &grant)?;
                if r.grant(&grant).is_none() {
                    return Err(ApiError::not_found(format!("{grant} is not a grant")));
                }
                Ok(())
            })??;
            Ok(st.session().write(
                &record,
                Payload::Revoke {
                    grant,
                    category: None,
                    reason,
                },
                now,
            )?)
        })
        .await?;
    st.changed(record).await;
    Ok(Json(json!({ "id": id })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_is_grantable_and_unknown_levels_say_so() {
        assert_eq!(grantable_level(" write "), Ok(Level::Write));
        assert_eq!(grantable_level("relay"), Ok(Level::Relay));
        assert!(grantable_level("admin")
            .unwrap_err()
            .contains("`admin` is not a level"));
    }
}
