//! `cophr accept`: accept an invitation to someone's record.

use clap::Args as ClapArgs;
use cophr_node::net::client;
use cophr_protocol::invite::Invitation;
use rand_core::RngCore;
use serde_json::json;

use crate::context::{Ctx, Out};
use crate::error::{CliError, Result};
use crate::{network, output};

/// Accept an invitation (a `cophr://invite/…` link): proves you hold the link and sends
/// who you are (your profile and attestations) to the record's home host. The patient then
/// sees who accepted and confirms; from then on your node replicates what they gave you.
/// Needs the node.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The invitation link
    link: String,

    #[command(flatten)]
    out: Out,
}

/// Runs `accept`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let invitation =
        Invitation::from_link(&args.link).map_err(|e| CliError::invalid(e.to_string()))?;
    let me = ctx.identity()?;
    if me.actor() == invitation.record {
        return Err(CliError::invalid(
            "this is an invitation to your own record",
        ));
    }
    let handle = network::handle(ctx)?;
    let now = ctx.now()?;
    let mut nonce = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut nonce);
    let acceptance = invitation
        .accept(me.actor(), me.info.profile(), nonce, now)
        .map_err(|e| CliError::invalid(e.to_string()))?;
    let home = network::block_on(
        ctx,
        client::accept_invitation(handle, &invitation, &acceptance),
    )?
    .map_err(|e| match &e {
        cophr_node::net::NetError::Refused { code, reason, .. } => {
            CliError::access(format!("the invitation was refused: {reason} ({code})"))
        }
        _ => network::error(e),
    })?;
    ctx.touch(handle.store(), &invitation.record);
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": invitation.record,
            "from": invitation.from,
            "label": invitation.label,
            "host": home.to_string(),
        }));
    }
    output::line(format!(
        "Accepted {}'s invitation{} to record {}. They will see who you are and confirm; \
         your node replicates what they give you as soon as they do (`cophr sync --record {}` \
         to check now).",
        invitation.from,
        invitation
            .label
            .as_deref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default(),
        invitation.record,
        invitation.record
    ))
}
