//! A care organisation's staff (`docs/organisations.md`): the members its own record lists,
//! added and removed by its administrators (the organisation's key and its devices), each
//! member's proof of membership to hand over; and, on a member's node, the proofs it was
//! given. The record's rules decide who may do what (only an administrator adds or
//! removes, a removed member is never added again under that key, a role must be one the
//! organisation may give); their refusals come back as 4xx errors and store nothing.

use cophr_protocol::entry::MAX_SHORT_TEXT;
use cophr_protocol::org::{self, MemberInfo, Role};

use crate::store::memberships::{org_of, proof_from_text, proof_to_text};

use super::*;

fn member_json(r: &Record, m: &MemberInfo) -> Value {
    let time = |id: &EntryId| r.time_of(id).map(format_time);
    json!({
        "member": m.member,
        "label": m.label,
        "role": m.role.name,
        "level": m.role.level.name(),
        "scope": m.role.scope.to_string(),
        "added": m.added,
        "added_time": time(&m.added),
        "removed": m.removed,
        "removed_time": m.removed.as_ref().and_then(time),
        "status": if m.removed.is_some() { "removed" } else { "member" },
    })
}

/// The label the organisation gave its member (in the proof's `AddMember`).
fn label_of(entries: &[cophr_protocol::Verified]) -> Option<String> {
    entries.iter().find_map(|v| match &v.entry().payload {
        Payload::AddMember { label, .. } => Some(label.clone()),
        _ => None,
    })
}

/// 403 unless `me` administers the organisation whose record `r` is (its key or one of
/// its devices).
fn administrator(r: &Record, me: &ActorId) -> Result<(), ApiError> {
    if r.is_patient(me) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "you administer no organisation in record {}: only the organisation's key and its devices add, remove and vouch for members",
            r.id()
        )))
    }
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
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    viewer(r, &me, now)?;
                    let list = r.members();
                    seen.add(
                        list.iter()
                            .flat_map(|m| [Some(m.added), m.removed])
                            .flatten(),
                    );
                    seen.detail(format!("members (API): {}", list.len()));
                    Ok::<_, ApiError>(json!({
                        "organisation": person(r, &r.id(), None),
                        "is_administrator": r.is_patient(&me),
                        "roles": Role::PRESETS,
                        "members": list.iter().map(|m| member_json(r, m)).collect::<Vec<_>>(),
                    }))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MemberInput {
    member: String,
    role: String,
    label: String,
}

pub(super) async fn add(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<MemberInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let member = parse_actor("member", &input.member)?;
    let role = Role::preset(input.role.trim()).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown role `{}` (one of {})",
            input.role,
            Role::PRESETS.join(", ")
        ))
    })?;
    let label = input.label.trim().to_owned();
    if label.is_empty() || label.len() > MAX_SHORT_TEXT {
        return Err(ApiError::invalid(format!(
            "label must be 1 to {MAX_SHORT_TEXT} bytes: say who they are (\"Nurse Jo Bloggs\")"
        )));
    }
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            st.store()
                .with_record(&record, |r| administrator(r, &st.actor()))??;
            Ok(st.session().write(
                &record,
                Payload::AddMember {
                    member,
                    role,
                    label,
                },
                st.now(),
            )?)
        })
        .await?;
    st.changed(record).await;
    Ok(created(json!({ "id": id })))
}

pub(super) async fn remove(
    State(st): State<AppState>,
    Path((rid, actor)): Path<(String, String)>,
    OptionalJsonBody(input): OptionalJsonBody<ReasonInput>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let member = parse_actor("member", &actor)?;
    let reason = input
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "removed from the organisation (no reason given)".to_owned());
    if reason.len() > MAX_SHORT_TEXT {
        return Err(ApiError::invalid(format!(
            "reason must be at most {MAX_SHORT_TEXT} bytes"
        )));
    }
    let (id, records) = st
        .blocking(move |st| {
            held(st, &record)?;
            st.store().with_record(&record, |r| {
                administrator(r, &st.actor())?;
                match r.members().into_iter().find(|m| m.member == member) {
                    None => Err(ApiError::not_found(format!(
                        "{member} is not a member of organisation {record}"
                    ))),
                    Some(m) if m.removed.is_some() => Err(ApiError::conflict(format!(
                        "{member} ({}) was already removed",
                        m.label
                    ))),
                    Some(_) => Ok(()),
                }
            })??;
            Ok(st
                .session()
                .remove_member(&record, member, &reason, st.now())?)
        })
        .await?;
    st.changed(record).await;
    for r in &records {
        st.changed(*r).await;
    }
    Ok(Json(json!({ "id": id, "records": records })))
}

pub(super) async fn proof(
    State(st): State<AppState>,
    Path((rid, actor)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let member = parse_actor("member", &actor)?;
    let text = st
        .blocking(move |st| {
            held(st, &record)?;
            st.store().with_record(&record, |r| {
                administrator(r, &st.actor())?;
                r.membership_proof(&member)
                    .map(|p| proof_to_text(&p))
                    .ok_or_else(|| {
                        ApiError::not_found(format!(
                            "{member} is not a member of organisation {record} now"
                        ))
                    })
            })?
        })
        .await?;
    Ok(Json(
        json!({ "organisation": record, "member": member, "proof": text }),
    ))
}

/// The memberships this node's identity was given (a member's side).
pub(super) async fn memberships(State(st): State<AppState>) -> Result<Json<Value>, ApiError> {
    let out = st
        .blocking(move |st| {
            let me = st.actor();
            let list: Vec<Value> = st
                .store()
                .memberships()?
                .iter()
                .filter_map(|p| {
                    let org = org_of(p)?;
                    let (role, entries) = org::verify_membership(&org, &me, p).ok()?;
                    Some(json!({ "organisation": org, "role": role.name, "label": label_of(&entries) }))
                })
                .collect();
            Ok::<_, ApiError>(json!({ "memberships": list }))
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProofInput {
    proof: String,
}

/// Keeps a proof of membership given to this node's identity: from then on it acts for the
/// organisation in the records the organisation is granted.
pub(super) async fn use_membership(
    State(st): State<AppState>,
    JsonBody(input): JsonBody<ProofInput>,
) -> Result<Response, ApiError> {
    // A proof that does not decode, is no organisation's, or does not hold proves nothing:
    // 403 (the document says what a proof's text looks like, not what it must prove).
    if !input.proof.trim_start().starts_with("cophr-membership:") {
        return Err(ApiError::invalid(
            "not a proof of membership: it starts with cophr-membership:",
        ));
    }
    let proof = proof_from_text(&input.proof).map_err(|e| ApiError::forbidden(e.to_string()))?;
    let org = org_of(&proof)
        .ok_or_else(|| ApiError::forbidden("the proof of membership is not an organisation's"))?;
    let me = st.actor();
    let (role, entries) = org::verify_membership(&org, &me, &proof)
        .map_err(|e| ApiError::forbidden(format!("the proof of membership does not hold: {e}")))?;
    let label = label_of(&entries);
    st.blocking(move |st| {
        st.store()
            .keep_membership(&org, proof)
            .map_err(|e| match e {
                crate::store::StoreError::Busy(m) => ApiError::conflict(m),
                e => e.into(),
            })
    })
    .await?;
    Ok(created(
        json!({ "organisation": org, "role": role.name, "label": label }),
    ))
}
