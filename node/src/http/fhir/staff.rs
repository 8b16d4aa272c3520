//! `PractitionerRole` in, on a care organisation's node (`docs/organisations.md`, "FHIR"):
//! `POST PractitionerRole` naming the organisation this node administers adds a member
//! (an `AddMember` in its own record, with the role its `code` names); `PUT
//! PractitionerRole/[id]` of a member (the id its `AddMember` is served under) with
//! `active: false` removes them, from now on, in the organisation's record and in every
//! record held here they joined (as `cophr org remove-member` does). The record's rules
//! decide the rest (only an administrator writes; a removed member is never added again).
//!
//! The member is named by key — `practitioner.reference` `Practitioner/a-…`, or a
//! `practitioner.identifier` in the `urn:cophr:actor` system — since a member acts by
//! signing with it; `practitioner.display` says who they are.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use cophr_protocol::entry::MAX_SHORT_TEXT;
use cophr_protocol::org::{MemberInfo, Role};
use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, EntryId, Payload, RecordId};
use serde_json::Value as Json;

use super::{fhir_response, resources, write::read_resource, Outcome};
use crate::http::AppState;

/// What a `PractitionerRole` says of a membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffInput {
    /// The organisation (`organization.reference`).
    pub org: ActorId,
    /// The member's key.
    pub member: ActorId,
    /// Their role (`code`).
    pub role: Role,
    /// Who they are (`practitioner.display`).
    pub label: String,
    /// `active` (true when absent).
    pub active: bool,
}

fn at(o: Outcome, path: &str) -> Outcome {
    Outcome {
        expression: Some(path.to_owned()),
        ..o
    }
}

fn key_in(reference: Option<&str>, prefix: &str) -> Option<ActorId> {
    reference?.strip_prefix(prefix)?.parse().ok()
}

/// Reads a `PractitionerRole` as a membership.
///
/// # Errors
/// 400 naming the element: not a PractitionerRole, no member key, no organisation key, no
/// or an unknown role, no or an oversized `practitioner.display`, `active` not a boolean.
pub fn staff_input(r: &Json) -> Result<StaffInput, Outcome> {
    if r["resourceType"] != "PractitionerRole" {
        return Err(Outcome::invalid("not a PractitionerRole"));
    }
    let p = &r["practitioner"];
    let by_identifier = p["identifier"]["system"]
        .as_str()
        .filter(|s| *s == resources::ACTOR_SYSTEM)
        .and_then(|_| p["identifier"]["value"].as_str())
        .and_then(|v| v.parse().ok());
    let member = key_in(p["reference"].as_str(), "Practitioner/")
        .or(by_identifier)
        .ok_or_else(|| {
            at(
                Outcome::invalid(
                    "name the member by key: `practitioner.reference` `Practitioner/a-…` (their `cophr whoami`)",
                ),
                "PractitionerRole.practitioner",
            )
        })?;
    let org =
        key_in(r["organization"]["reference"].as_str(), "Organization/").ok_or_else(|| {
            at(
                Outcome::invalid(
                    "name the organisation: `organization.reference` `Organization/a-…`",
                ),
                "PractitionerRole.organization",
            )
        })?;
    let words: Vec<String> = r["code"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| {
            let codes = c["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x["code"].as_str().map(str::to_owned));
            codes.chain(c["text"].as_str().map(str::to_owned))
        })
        .collect();
    let role = words
        .iter()
        .find_map(|w| Role::preset(&w.trim().to_ascii_lowercase()))
        .ok_or_else(|| {
            at(
                Outcome::invalid(format!(
                    "say the member's role in `code` (a code or text: one of {})",
                    Role::PRESETS.join(", ")
                )),
                "PractitionerRole.code",
            )
        })?;
    let label = p["display"].as_str().map(str::trim).unwrap_or_default();
    if label.is_empty() || label.len() > MAX_SHORT_TEXT {
        return Err(at(
            Outcome::invalid(format!(
                "say who the member is in `practitioner.display` (1 to {MAX_SHORT_TEXT} bytes)"
            )),
            "PractitionerRole.practitioner.display",
        ));
    }
    let active = match &r["active"] {
        Json::Null => true,
        Json::Bool(b) => *b,
        _ => {
            return Err(at(
                Outcome::invalid("`active` is a boolean"),
                "PractitionerRole.active",
            ))
        }
    };
    Ok(StaffInput {
        org,
        member,
        role,
        label: label.to_owned(),
        active,
    })
}

/// The organisation's record, held here and administered by this node's identity.
fn administered(st: &AppState, org: &RecordId) -> Result<(), Outcome> {
    if !st.store().holds(org)? {
        return Err(Outcome::not_found(format!(
            "organisation {org} has no record on this node"
        )));
    }
    let me = st.actor();
    if !st.store().with_record(org, |r| r.is_patient(&me))? {
        return Err(Outcome::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this node does not administer organisation {org}: only its key and its devices add and remove members"),
        ));
    }
    Ok(())
}

fn served(r: &Record, added: &EntryId) -> Option<(MemberInfo, Json)> {
    let m = r.members().into_iter().find(|m| m.added == *added)?;
    let mut j = resources::staff_role(r, &m);
    let t = m.removed.or(Some(m.added)).and_then(|e| r.time_of(&e));
    resources::set_meta(&mut j, 1 + usize::from(m.removed.is_some()), t.unwrap_or(0));
    Some((m, j))
}

fn answer(status: StatusCode, base: &str, body: &Json) -> Response {
    let mut resp = fhir_response(status, body);
    let location = format!(
        "{base}/PractitionerRole/{}",
        body["id"].as_str().unwrap_or_default()
    );
    if let Ok(v) = axum::http::HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// `POST PractitionerRole`: adds a member.
pub(super) async fn create(st: AppState, req: Request) -> Result<Response, Outcome> {
    let (base, _, resource) = read_resource(req).await?;
    let input = staff_input(&resource)?;
    if !input.active {
        return Err(at(
            Outcome::invalid("a new member is active: `active` false adds nobody"),
            "PractitionerRole.active",
        ));
    }
    let org = input.org;
    let body = st
        .blocking(move |st| {
            Ok::<_, crate::http::ApiError>((|| {
                administered(st, &org)?;
                let id = st.session().write(
                    &org,
                    Payload::AddMember {
                        member: input.member,
                        role: input.role,
                        label: input.label,
                    },
                    st.now(),
                )?;
                st.store()
                    .with_record(&org, |r| served(r, &id).map(|(_, j)| j))?
                    .ok_or_else(|| Outcome::not_found("the member just added is not listed"))
            })())
        })
        .await??;
    st.changed(org).await;
    Ok(answer(StatusCode::CREATED, &base, &body))
}

/// `PUT PractitionerRole/[id]`: `active: false` removes the member; the same membership
/// again changes nothing; anything else is refused (a role is fixed per member key).
pub(super) async fn update(st: AppState, req: Request, id: String) -> Result<Response, Outcome> {
    let added: EntryId = id.parse().map_err(|_| {
        Outcome::not_found(format!(
            "no PractitionerRole {} here",
            id.chars().take(64).collect::<String>()
        ))
    })?;
    let (base, _, resource) = read_resource(req).await?;
    let input = staff_input(&resource)?;
    if resource["id"].as_str().is_some_and(|x| x != id) {
        return Err(at(
            Outcome::invalid("the resource's `id` differs from the one in the URL"),
            "PractitionerRole.id",
        ));
    }
    let org = input.org;
    let (status, body, records) = st
        .blocking(move |st| {
            Ok::<_, crate::http::ApiError>((|| {
            administered(st, &org)?;
            let (m, current) = st
                .store()
                .with_record(&org, |r| served(r, &added))?
                .ok_or_else(|| {
                    Outcome::not_found(format!("no member of organisation {org} is {added}"))
                })?;
            if m.member != input.member || m.role != input.role {
                return Err(Outcome::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "business-rule",
                    "a member's key and role are fixed: remove them (`active` false) and add their new key or role as a new PractitionerRole",
                ));
            }
            match (m.removed.is_some(), input.active) {
                (false, true) | (true, false) => Ok((StatusCode::OK, current, Vec::new())),
                (true, true) => Err(Outcome::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    "a removed member is never added again under the same key",
                )),
                (false, false) => {
                    let (_, records) = st.session().remove_member(
                        &org,
                        m.member,
                        "ended (FHIR PractitionerRole.active false)",
                        st.now(),
                    )?;
                    let body = st
                        .store()
                        .with_record(&org, |r| served(r, &added).map(|(_, j)| j))?
                        .unwrap_or(current);
                    Ok((StatusCode::OK, body, records))
                }
            }
            })())
        })
        .await??;
    st.changed(org).await;
    for r in records {
        st.changed(r).await;
    }
    Ok(answer(status, &base, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(member: &ActorId, org: &ActorId) -> Json {
        json!({
            "resourceType": "PractitionerRole",
            "practitioner": {"reference": format!("Practitioner/{member}"), "display": "Nurse Jo Bloggs"},
            "organization": {"reference": format!("Organization/{org}")},
            "code": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/practitioner-role", "code": "nurse"}]}],
        })
    }

    #[test]
    fn a_practitioner_role_reads_as_a_membership_and_each_missing_part_is_named() {
        let (m, o) = (ActorId([1; 32]), ActorId([2; 32]));
        let ok = staff_input(&role(&m, &o)).unwrap();
        assert_eq!((ok.member, ok.org, ok.role.name.as_str()), (m, o, "nurse"));
        assert!(ok.active);
        let by_text = {
            let mut r = role(&m, &o);
            r["code"] = json!([{"text": "Receptionist"}]);
            staff_input(&r).unwrap()
        };
        assert_eq!(by_text.role.name, "receptionist");
        let by_identifier = {
            let mut r = role(&m, &o);
            r["practitioner"] = json!({"identifier": {"system": resources::ACTOR_SYSTEM, "value": m.to_string()}, "display": "Jo"});
            staff_input(&r).unwrap()
        };
        assert_eq!(by_identifier.member, m);
        let refused = |f: &dyn Fn(&mut Json), path: &str| {
            let mut r = role(&m, &o);
            f(&mut r);
            let e = staff_input(&r).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert_eq!(e.expression.as_deref(), Some(path), "{}", e.message);
        };
        refused(
            &|r| r["practitioner"]["reference"] = json!("Practitioner/123"),
            "PractitionerRole.practitioner",
        );
        refused(
            &|r| r["organization"] = json!({"display": "Leeds"}),
            "PractitionerRole.organization",
        );
        refused(
            &|r| r["code"] = json!([{"text": "surgeon-general"}]),
            "PractitionerRole.code",
        );
        refused(
            &|r| r["practitioner"]["display"] = json!(" "),
            "PractitionerRole.practitioner.display",
        );
        refused(&|r| r["active"] = json!("no"), "PractitionerRole.active");
        assert!(staff_input(&json!({"resourceType": "Practitioner"})).is_err());
    }
}
