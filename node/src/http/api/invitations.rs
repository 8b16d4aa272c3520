//! Invitations from the web app: make one (a link and a QR code), see who accepted
//! (verified or self-asserted), confirm (writes their grant) or decline; and accept one
//! made by someone else. The record's home host keeps them (over sync), so these need the
//! running network node.

use cophr_protocol::invite::{
    display_id, Invitation, InvitationBox, OfferState, MAX_INVITATION_MS,
};
use rand_core::RngCore;

use super::grants::terms_of;
use super::*;
use crate::net::{client, NodeHandle};

/// How long an invitation made without `valid_for_hours` may be accepted.
const DEFAULT_VALID_HOURS: u64 = 7 * 24;

fn node(st: &AppState) -> Result<NodeHandle, ApiError> {
    super::node(st, "invitations need")
}

/// Only the patient (the current patient key, or one of the patient's devices: the home
/// host checks the same, and a device may grant) makes, lists, confirms and declines the
/// record's invitations.
async fn patient_only(st: &AppState, record: &RecordId) -> Result<(), ApiError> {
    let record = *record;
    let patient = st
        .blocking(move |st| {
            let me = st.actor();
            Ok(st.store().holds(&record)?
                && st.store().with_record(&record, |r| r.is_patient(&me))?)
        })
        .await?;
    if !patient {
        return Err(ApiError::forbidden(
            "only the patient makes and confirms invitations to their record",
        ));
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InviteInput {
    categories: Value,
    level: String,
    from: Option<String>,
    expires: Option<String>,
    #[serde(default)]
    delegate: bool,
    #[serde(default)]
    audit: bool,
    label: Option<String>,
    #[serde(default, deserialize_with = "crate::http::whole_number_opt")]
    valid_for_hours: Option<u64>,
}

pub(super) async fn create(
    State(st): State<AppState>,
    Path(rid): Path<String>,
    JsonBody(input): JsonBody<InviteInput>,
) -> Result<Response, ApiError> {
    let record = parse_record(&rid)?;
    patient_only(&st, &record).await?;
    let handle = node(&st)?;
    let terms = terms_of(
        &input.categories,
        &input.level,
        input.from.as_deref(),
        input.expires.as_deref(),
        input.audit,
        input.delegate,
        input.label,
    )?;
    let hours = input.valid_for_hours.unwrap_or(DEFAULT_VALID_HOURS);
    let lifetime = hours
        .checked_mul(3_600_000)
        .filter(|d| *d > 0 && *d <= MAX_INVITATION_MS)
        .ok_or_else(|| ApiError::invalid("valid_for_hours must be 1 to 720"))?;
    let home = handle
        .peer_book(&record)
        .map_err(net_error)?
        .home
        .ok_or_else(|| {
            ApiError::conflict(
                "the record has no home host yet: invitations are kept by it (host it first)",
            )
        })?;
    let host_peer = crate::net::service::peer_of(&home)
        .ok_or_else(|| ApiError::internal("the home host's address has no peer id"))?;
    let bare: libp2p::Multiaddr = home
        .iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect();
    let now = st.now();
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    let invitation = Invitation::new(
        record,
        secret,
        host_peer.to_bytes(),
        vec![bare.to_string()],
        now + lifetime,
        st.profile().name.clone(),
        terms.label.clone(),
        now,
    )
    .map_err(|e| ApiError::invalid(e.to_string()))?;
    let offer = invitation
        .offer(terms, now)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    client::offer_invitation(&handle, record, &offer)
        .await
        .map_err(net_error)?;
    let link = invitation.to_link();
    Ok(created(json!({
        "invitation": display_id(&invitation.id()),
        "link": link,
        "qr_svg": qr_svg(&link)?,
        "expires": format_time(invitation.expires),
    })))
}

fn offer_json(o: &OfferState, now: Timestamp) -> Value {
    let t = &o.offer.terms;
    let categories = match &t.scope {
        Scope::All => json!("all"),
        Scope::Only(set) => json!(set.iter().map(|c| c.name()).collect::<Vec<_>>()),
    };
    json!({
        "invitation": display_id(&o.offer.id),
        "status": o.status(now),
        "label": t.label,
        "level": t.level,
        "categories": categories,
        "audit": t.audit,
        "delegate": t.delegate,
        "expires": format_time(o.offer.expires),
        "accepted_by": o.accepted.as_ref().map(|a| person_of(&a.acceptance.invitee, Some(&a.acceptance.profile))),
        "accepted": o.accepted.as_ref().map(|a| format_time(a.acceptance.time)),
    })
}

async fn fetch(st: &AppState, record: RecordId) -> Result<InvitationBox, ApiError> {
    let handle = node(st)?;
    client::invitations(&handle, record)
        .await
        .map_err(net_error)
}

pub(super) async fn list(
    State(st): State<AppState>,
    Path(rid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    patient_only(&st, &record).await?;
    let b = fetch(&st, record).await?;
    // Built on a blocking thread, where who accepted is assessed against the trust list.
    let list = st
        .blocking(move |st| {
            let now = st.now();
            Ok(b.offers.iter().map(|o| offer_json(o, now)).collect())
        })
        .await?;
    Ok(Json(Value::Array(list)))
}

fn find(b: &InvitationBox, iid: &str) -> Result<OfferState, ApiError> {
    let want = iid.trim().to_ascii_lowercase();
    b.offers
        .iter()
        .find(|o| display_id(&o.offer.id) == want)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no invitation {want}")))
}

pub(super) async fn confirm(
    State(st): State<AppState>,
    Path((rid, iid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    patient_only(&st, &record).await?;
    let b = fetch(&st, record).await?;
    let o = find(&b, &iid)?;
    let a = o.accepted.clone().ok_or_else(|| {
        ApiError::conflict("this invitation has not been accepted (yet): nothing to confirm")
    })?;
    let grant = o.offer.terms.grant(a.acceptance.invitee);
    let (id, grantee) = st
        .blocking(move |st| {
            held(st, &record)?;
            let id = st
                .session()
                .write(&record, Payload::Grant(grant), st.now())?;
            // Assessed here, where the trust list is set for this thread.
            let who = person_of(&a.acceptance.invitee, Some(&a.acceptance.profile));
            Ok((id, who))
        })
        .await?;
    st.changed(record).await;
    let handle = node(&st)?;
    client::close_invitation(&handle, record, o.offer.id)
        .await
        .map_err(net_error)?;
    Ok(Json(json!({ "grant": id, "grantee": grantee })))
}

pub(super) async fn decline(
    State(st): State<AppState>,
    Path((rid, iid)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = parse_record(&rid)?;
    patient_only(&st, &record).await?;
    let b = fetch(&st, record).await?;
    let o = find(&b, &iid)?;
    let handle = node(&st)?;
    client::close_invitation(&handle, record, o.offer.id)
        .await
        .map_err(net_error)?;
    Ok(Json(json!({ "closed": display_id(&o.offer.id) })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AcceptInput {
    link: String,
}

pub(super) async fn accept(
    State(st): State<AppState>,
    JsonBody(input): JsonBody<AcceptInput>,
) -> Result<Json<Value>, ApiError> {
    let handle = node(&st)?;
    // A link of the documented form whose content is no invitation names nothing.
    token_form(&input.link, "cophr://invite/")?;
    let invitation =
        Invitation::from_link(&input.link).map_err(|e| ApiError::not_found(e.to_string()))?;
    let me = st.actor();
    let record = invitation.record;
    let own = st
        .blocking(move |st| {
            Ok(st.store().holds(&record)?
                && st.store().with_record(&record, |r| r.is_patient(&me))?)
        })
        .await?;
    if own {
        return Err(ApiError::conflict(
            "this is an invitation to your own record",
        ));
    }
    let mut nonce = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let acceptance = invitation
        .accept(st.actor(), st.profile().clone(), nonce, st.now())
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    client::accept_invitation(&handle, &invitation, &acceptance)
        .await
        .map_err(net_error)?;
    Ok(Json(json!({
        "record": invitation.record,
        "from": invitation.from,
        "label": invitation.label,
    })))
}
