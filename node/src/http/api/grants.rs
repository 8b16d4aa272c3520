//! Who has access: the grants, granting and revoking.

use super::*;

pub(super) async fn list_grants(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let out = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let v = viewer(r, &me, now)?;
                    let mut grants: Vec<&GrantInfo> =
                        r.grants().filter(|g| r.can_see(&v, &g.id)).collect();
                    grants.sort_by_key(|g| (g.time, g.id));
                    seen.add(grants.iter().map(|g| g.id));
                    seen.detail(format!("grants (API): {}", grants.len()));
                    let list: Vec<Value> = grants.iter().map(|g| grant_json(r, g, now)).collect();
                    Ok::<_, ApiError>(Value::Array(list))
                })?
            })
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
}

pub(super) fn scope_of(v: &Value) -> Result<Scope, ApiError> {
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
    let scope = scope_of(&input.categories)?;
    let level: Level = input.level.trim().parse().map_err(|_| {
        ApiError::invalid(format!(
            "`{}` is not a level: view, annotate, write or delete",
            input.level
        ))
    })?;
    let not_before = input
        .from
        .as_deref()
        .map(|t| parse_time("from", t))
        .transpose()?;
    let until = input
        .expires
        .as_deref()
        .map(|t| parse_time("expires", t))
        .transpose()?;
    if let (Some(a), Some(b)) = (not_before, until) {
        if a > b {
            return Err(ApiError::invalid("from is after expires"));
        }
    }
    if grantee == st.actor() {
        return Err(ApiError::invalid("you cannot grant access to yourself"));
    }
    let grant = Grant {
        grantee,
        level,
        scope,
        not_before,
        until,
        audit: input.audit,
        delegate: input.delegate,
        label: input
            .label
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty()),
        requires: None,
    };
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            Ok(st
                .session()
                .write(&record, Payload::Grant(grant), st.now())?)
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
