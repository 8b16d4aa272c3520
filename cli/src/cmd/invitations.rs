//! `cophr invitations`: who accepted your invitations; confirm or decline them.

use clap::{Args, Subcommand};
use cophr_node::net::client;
use cophr_protocol::entry::Payload;
use cophr_protocol::invite::{display_id, InvitationBox, OfferState};
use cophr_protocol::ActorId;
use serde_json::json;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::output::{self, Table};
use crate::{network, times};

/// Your invitations, as your record's home host keeps them: open, expired, or accepted by
/// someone (shown verified or self-asserted). Confirm to write their grant; decline or
/// withdraw to close the invitation. Needs the node.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List the invitations and who accepted them
    List(Out),
    /// Give the person who accepted an invitation the access it offered
    Confirm(IdArgs),
    /// Close an invitation without giving access (declined, or withdrawn before use)
    Decline(IdArgs),
}

/// An invitation id (`i-…`, or a unique prefix, as `cophr invitations list` shows).
#[derive(Args, Debug)]
pub struct IdArgs {
    /// The invitation (`i-…`)
    id: String,
    #[command(flatten)]
    out: Out,
}

/// Runs `invitations`.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::List(out) => list(ctx, out),
        Command::Confirm(a) => confirm(ctx, a),
        Command::Decline(a) => decline(ctx, a),
    }
}

fn fetch(ctx: &Ctx) -> Result<(cophr_protocol::RecordId, InvitationBox)> {
    let record = crate::cmd::host::own_record(ctx, "see the invitations of")?;
    let handle = network::handle(ctx)?;
    let b = network::block_on(ctx, client::invitations(handle, record))?.map_err(network::error)?;
    Ok((record, b))
}

fn who(o: &OfferState) -> Option<(ActorId, output::Person)> {
    let a = &o.accepted.as_ref()?.acceptance;
    Some((
        a.invitee,
        output::Person {
            id: a.invitee,
            name: Some(a.profile.name.clone()),
            role: Some(a.profile.role.clone()),
            organisation: a.profile.organisation.clone(),
            member: false,
            assurance: output::assurance(&a.invitee, &a.profile.attestations),
        },
    ))
}

fn list(ctx: &Ctx, out: Out) -> Result<()> {
    let (record, b) = fetch(ctx)?;
    let now = ctx.now()?;
    if ctx.json(out) {
        return output::json(&json!({
            "record": record,
            "invitations": b.offers.iter().map(|o| json!({
                "invitation": display_id(&o.offer.id),
                "status": o.status(now),
                "label": o.offer.terms.label,
                "level": o.offer.terms.level,
                "categories": o.offer.terms.scope.to_string(),
                "requires": o.offer.terms.requires,
                "expires": times::format(o.offer.expires),
                "accepted_by": who(o).map(|(_, p)| p),
                "accepted": o.accepted.as_ref().map(|a| times::format(a.acceptance.time)),
            })).collect::<Vec<_>>(),
        }));
    }
    if b.offers.is_empty() {
        return output::line("no invitations (make one with `cophr invite`)");
    }
    let mut t = Table::new(&["INVITATION", "FOR", "ACCESS", "EXPIRES", "STATUS"]);
    for o in &b.offers {
        let st = match who(o) {
            Some((id, p)) => format!("accepted by {} {}", p.long(), id.short()),
            None => o.status(now).to_owned(),
        };
        t.row(vec![
            display_id(&o.offer.id).chars().take(14).collect(),
            o.offer.terms.label.clone().unwrap_or_else(|| "-".into()),
            format!("{} on {}", o.offer.terms.level, o.offer.terms.scope),
            times::format(o.offer.expires),
            st,
        ]);
    }
    output::print(&t.render())
}

fn find<'a>(b: &'a InvitationBox, id: &str) -> Result<&'a OfferState> {
    let want = id.trim().to_ascii_lowercase();
    let matching: Vec<_> = b
        .offers
        .iter()
        .filter(|o| display_id(&o.offer.id).starts_with(&want))
        .collect();
    match matching.as_slice() {
        [one] => Ok(one),
        [] => Err(CliError::not_found(format!("no invitation {want}"))),
        _ => Err(CliError::invalid(format!(
            "{want} matches several invitations"
        ))),
    }
}

fn confirm(ctx: &Ctx, a: IdArgs) -> Result<()> {
    let (record, b) = fetch(ctx)?;
    let o = find(&b, &a.id)?;
    let (invitee, person) = who(o).ok_or_else(|| {
        CliError::invalid(format!(
            "invitation {} has not been accepted (yet): nothing to confirm",
            display_id(&o.offer.id)
        ))
    })?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let grant = o.offer.terms.grant(invitee);
    let gid = context::write(ctx, &store, &me, &record, Payload::Grant(grant))?;
    ctx.mark_changed(&record);
    let handle = network::handle(ctx)?;
    network::block_on(ctx, client::close_invitation(handle, record, o.offer.id))?
        .map_err(network::error)?;
    if ctx.json(a.out) {
        return output::json(&json!({
            "grant": gid,
            "grantee": person,
            "invitation": display_id(&o.offer.id),
        }));
    }
    output::line(format!(
        "{} now has {} on {} (grant {gid})",
        person.long(),
        o.offer.terms.level,
        o.offer.terms.scope
    ))
}

fn decline(ctx: &Ctx, a: IdArgs) -> Result<()> {
    let (record, b) = fetch(ctx)?;
    let o = find(&b, &a.id)?;
    let handle = network::handle(ctx)?;
    network::block_on(ctx, client::close_invitation(handle, record, o.offer.id))?
        .map_err(network::error)?;
    if ctx.json(a.out) {
        return output::json(&json!({ "closed": display_id(&o.offer.id) }));
    }
    output::line(format!(
        "invitation {} closed: it opens nothing",
        display_id(&o.offer.id)
    ))
}
