//! Social key recovery from the web app (`protocol::recovery`, `docs/trust.md` "Devices and
//! key recovery"): the recovering person's node shows its recovery request (the record and
//! this identity's key) to read out to the guardians; a guardian's node approves a request
//! from its replica of the record; with enough approvals the recovering node recovers the
//! record from its home host (pull, write the rotation, push), which needs the network node.
//!
//! Request and approval texts carry no secret (an approval is bound to one record, old key,
//! new key and guardian set); they are still never logged.

use cophr_protocol::entry::MAX_GUARDIANS;
use cophr_protocol::recovery::{GuardianApproval, Recovery, RecoveryError, RecoveryRequest};

use super::*;
use crate::net::client;

/// A refusal of a recovery step as the API reports it.
fn recovery_error(e: RecoveryError) -> ApiError {
    match e {
        RecoveryError::NotAGuardian(_) | RecoveryError::NoGuardians => {
            ApiError::forbidden(e.to_string())
        }
        RecoveryError::KeyInUse(_) => ApiError::conflict(e.to_string()),
        RecoveryError::Text { .. }
        | RecoveryError::Signature(_)
        | RecoveryError::OtherRecord { .. }
        | RecoveryError::OtherKey { .. }
        | RecoveryError::Mismatch(..)
        | RecoveryError::Duplicate(_)
        | RecoveryError::Count(_) => ApiError::invalid(e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApproveInput {
    request: String,
}

/// A guardian approves a recovery request from this node's replica of the record.
pub(super) async fn approve(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<ApproveInput>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    // A request of the documented form whose content is no recovery request names nothing.
    token_form(&input.request, "cophr://recover/")?;
    let request = RecoveryRequest::from_text(&input.request).map_err(|e| match e {
        RecoveryError::Text { .. } | RecoveryError::Signature(_) => {
            ApiError::not_found(e.to_string())
        }
        e => recovery_error(e),
    })?;
    if request.record != record {
        // The request and the path name different records: a rule across the two (409).
        return Err(ApiError::conflict(
            RecoveryError::OtherRecord {
                named: request.record,
                expected: record,
            }
            .to_string(),
        ));
    }
    let approval = st
        .blocking(move |st| {
            held(st, &record)?;
            st.store()
                .with_record(&record, |r| {
                    GuardianApproval::approve(r, st.keypair(), &request)
                })?
                .map_err(recovery_error)
        })
        .await?;
    let text = approval.to_text();
    Ok(Json(json!({
        "record": record,
        "old": approval.claim.old,
        "new": approval.claim.new,
        "guardians": approval.claim.guardians,
        "approval": text,
        "qr_svg": qr_svg(&text)?,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct RequestQuery {
    record: String,
}

/// This identity's recovery request for a record: what its guardians approve.
pub(super) async fn request(
    State(st): State<AppState>,
    QueryParams(q): QueryParams<RequestQuery>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&q.record)?;
    let me = st.actor();
    let mine = st
        .blocking(move |st| {
            Ok(st.store().holds(&record)?
                && st.store().with_record(&record, |r| r.is_patient(&me))?)
        })
        .await?;
    if mine {
        return Err(ApiError::conflict(format!(
            "this identity already acts as the patient of record {record}: nothing to recover"
        )));
    }
    let text = RecoveryRequest { record, new: me }.to_text();
    Ok(Json(json!({
        "record": record,
        "new": me,
        "request": text,
        "qr_svg": qr_svg(&text)?,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RecoverInput {
    host: String,
    approvals: Vec<String>,
}

/// Recovers a record onto this identity with guardians' approvals, from its home host.
pub(super) async fn recover(
    State(st): State<AppState>,
    JsonBody(input): JsonBody<RecoverInput>,
) -> Result<Json<Value>, ApiError> {
    let handle = node(&st, "recovering a record needs")?;
    let n = input.approvals.len();
    if n == 0 || n > MAX_GUARDIANS {
        return Err(ApiError::invalid(format!(
            "give 1 to {MAX_GUARDIANS} guardians' approvals, not {n}"
        )));
    }
    let host: libp2p::Multiaddr = input.host.trim().parse().map_err(|e| {
        ApiError::invalid(format!(
            "host `{}` is not a multiaddr: {e}",
            input.host.trim()
        ))
    })?;
    if crate::net::service::peer_of(&host).is_none() {
        return Err(ApiError::invalid(
            "the host address must end in /p2p/<peer id> (the record's home host)",
        ));
    }
    let approvals = input
        .approvals
        .iter()
        .enumerate()
        .map(|(i, a)| {
            // An approval of the documented form that does not decode or verify approves
            // nothing.
            token_form(a, "cophr://approval/")?;
            GuardianApproval::from_text(a).map_err(|e| {
                ApiError::forbidden(format!("approval {}: {}", i + 1, recovery_error(e).message))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let record = approvals[0].claim.record;
    let recovery = Recovery::assemble(record, &st.actor(), &approvals).map_err(recovery_error)?;
    let report = client::recover(&handle, &host, record, recovery, st.now())
        .await
        .map_err(net_error)?;
    st.changed(record).await;
    Ok(Json(json!({
        "record": record,
        "rotation": report.rotation,
        "pulled": report.pulled,
        "pushed": report.pushed,
    })))
}
