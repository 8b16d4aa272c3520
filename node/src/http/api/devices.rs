//! A person's devices in a record (the patient's, or a grantee's own) and the patient's
//! guardians (`docs/trust.md` "Devices and key recovery"): list, add and remove devices;
//! show and set the guardians. The record's rules decide who may do what (a device adds and
//! removes nothing, only the current patient key names guardians); their refusals come back
//! as 4xx errors and store nothing.

use cophr_protocol::entry::{MAX_GUARDIANS, MAX_SHORT_TEXT};
use cophr_protocol::record::DeviceInfo;

use super::*;

/// Whose devices `me` manages in `r`: the patient (the record id) for the current patient
/// key or a patient's device, the owner for another person's device, else `me` (who must
/// have access to the record). 403 for a retired key or a removed device.
fn owner(r: &Record, me: &ActorId, now: Timestamp) -> Result<ActorId, ApiError> {
    let who = r.acts_for(me).ok_or_else(|| {
        ApiError::forbidden(
            "this key no longer acts in this record (a retired patient key or a removed device)",
        )
    })?;
    if who != r.id() {
        viewer(r, me, now)?;
    }
    Ok(who)
}

fn device_json(r: &Record, d: &DeviceInfo, me: &ActorId) -> Value {
    let status = if d.removed.is_some() {
        "removed"
    } else if status_name(r, &d.added) == "void" {
        "void"
    } else {
        "active"
    };
    json!({
        "device": d.device,
        "label": d.label,
        "added": d.added,
        "time": format_time(d.time),
        "removed": d.removed,
        "status": status,
        "this_node": d.device == *me,
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
            st.read(now, |rd| {
                rd.record(&record, |r, seen| {
                    let who = owner(r, &me, now)?;
                    let devices = r.devices_of(&who);
                    seen.add(
                        devices
                            .iter()
                            .flat_map(|d| [Some(d.added), d.removed])
                            .flatten(),
                    );
                    seen.detail(format!("devices (API): {}", devices.len()));
                    let list: Vec<Value> = devices.iter().map(|d| device_json(r, d, &me)).collect();
                    Ok::<_, ApiError>(json!({
                        "record": record,
                        "owner": person(r, &who, None),
                        "is_patient": who == r.id(),
                        "devices": list,
                    }))
                })?
            })
        })
        .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceInput {
    device: String,
    label: String,
}

pub(super) async fn add(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<DeviceInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    let device = parse_actor("device", &input.device)?;
    let label = input.label.trim().to_owned();
    if label.is_empty() || label.len() > MAX_SHORT_TEXT {
        return Err(ApiError::invalid(format!(
            "label must be 1 to {MAX_SHORT_TEXT} bytes: say what the device is (\"George's phone\")"
        )));
    }
    if device == st.actor() {
        return Err(ApiError::invalid(
            "that is this node's own key: a device is another key (the other device's `cophr whoami`)",
        ));
    }
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            Ok(st
                .session()
                .write(&record, Payload::AddDevice { device, label }, st.now())?)
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
    let device = parse_actor("device", &actor)?;
    let reason = input
        .reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "removed (no reason given)".to_owned());
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            let now = st.now();
            let me = st.actor();
            st.store().with_record(&record, |r| {
                let who = owner(r, &me, now)?;
                let found = r.devices_of(&who).into_iter().find(|d| d.device == device);
                match found {
                    None => Err(ApiError::not_found(format!(
                        "{device} is not one of {} devices in record {record}",
                        if who == r.id() {
                            "the patient's"
                        } else {
                            "your"
                        }
                    ))),
                    Some(d) if d.removed.is_some() => Err(ApiError::conflict(format!(
                        "{device} ({}) was already removed",
                        d.label
                    ))),
                    Some(_) => Ok(()),
                }
            })??;
            // `category: None`: the record writes the removal's part in each stream the
            // device wrote in, then the administrative part.
            Ok(st.session().write(
                &record,
                Payload::RemoveDevice {
                    device,
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

pub(super) async fn guardians(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let me = st.actor();
    let out = read_as_viewer(&st, record, move |r, v, seen, _| {
        let set = r.guardians().filter(|g| r.can_see(v, &g.entry));
        seen.add(set.iter().map(|g| g.entry));
        seen.detail("guardians (API)");
        let Some(g) = set else {
            return Ok::<_, ApiError>(json!({
                "record": record,
                "entry": null,
                "time": null,
                "set_by": null,
                "threshold": null,
                "guardians": [],
                "i_am_guardian": false,
            }));
        };
        let held = r.get(&g.entry);
        let e = held.as_ref().map(|e| e.entry());
        Ok(json!({
            "record": record,
            "entry": g.entry,
            "time": e.map(|e| format_time(e.time)),
            "set_by": e.map(|e| person(r, &e.author, Some(e.time))),
            "threshold": g.threshold,
            "guardians": g.guardians.iter().map(|a| person(r, a, None)).collect::<Vec<_>>(),
            "i_am_guardian": g.guardians.contains(&me),
        }))
    })
    .await?;
    Ok(Json(out))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GuardiansInput {
    guardians: Vec<String>,
    #[serde(deserialize_with = "crate::http::whole_number")]
    threshold: u64,
}

pub(super) async fn set_guardians(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<GuardiansInput>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    let n = input.guardians.len();
    if n == 0 || n > MAX_GUARDIANS {
        return Err(ApiError::invalid(format!(
            "name 1 to {MAX_GUARDIANS} guardians, not {n}"
        )));
    }
    let mut guardians = input
        .guardians
        .iter()
        .map(|g| parse_actor("guardian", g))
        .collect::<Result<Vec<ActorId>, _>>()?;
    guardians.sort();
    if let Some(w) = guardians.windows(2).find(|w| w[0] == w[1]) {
        return Err(ApiError::invalid(format!(
            "{} is named twice as a guardian",
            w[0]
        )));
    }
    let bad = || {
        format!(
            "threshold must be 1 to the number of guardians ({n}), not {}",
            input.threshold
        )
    };
    let threshold = u8::try_from(input.threshold)
        .ok()
        .filter(|t| *t >= 1 && usize::from(*t) <= MAX_GUARDIANS)
        .ok_or_else(|| ApiError::invalid(bad()))?;
    if usize::from(threshold) > n {
        // Across fields (JSON Schema cannot compare two values): 409, documented.
        return Err(ApiError::conflict(bad()));
    }
    if guardians.contains(&st.actor()) {
        return Err(ApiError::conflict("you cannot be your own guardian"));
    }
    let id = st
        .blocking(move |st| {
            held(st, &record)?;
            Ok(st.session().write(
                &record,
                Payload::SetGuardians {
                    guardians,
                    threshold,
                },
                st.now(),
            )?)
        })
        .await?;
    st.changed(record).await;
    Ok(Json(json!({ "id": id })))
}
