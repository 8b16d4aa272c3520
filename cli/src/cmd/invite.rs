//! `cophr invite`: a one-time, expiring invitation for a chosen access, as a link and a
//! QR code, instead of asking for someone's actor id.

use clap::Args as ClapArgs;
use cophr_node::net::client;
use cophr_protocol::invite::{Invitation, MAX_INVITATION_MS};
use libp2p::multiaddr::Protocol;
use rand_core::RngCore;
use serde_json::json;

use crate::cmd::grant::{terms_json, Access};
use crate::context::{Ctx, Out};
use crate::error::{CliError, Result};
use crate::times;
use crate::{network, output};

const AFTER_HELP: &str = "Examples:
  cophr invite --level view --categories problems,medications,allergies --label Pharmacy
  cophr invite --level delete --categories all --audit --delegate --label 'Mary (wife)' --expires 2d

Give the link (or let them scan the QR code) to the person you invite; they run
`cophr accept LINK`. `cophr invitations` then shows who accepted, verified or
self-asserted, and `cophr invitations confirm ID` writes their grant. Until you confirm,
the invitation opens nothing; it works once, and not after it expires.";

/// Invite someone to your record: a one-time link and QR code for the access you choose
/// (the record's home host keeps the invitation; needs the node and a home host).
#[derive(ClapArgs, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    #[command(flatten)]
    access: Access,

    /// How long the invitation may be accepted: e.g. 30m, 12h, 7d (at most 30d)
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    expires: String,

    /// Do not print the QR code
    #[arg(long)]
    no_qr: bool,

    #[command(flatten)]
    out: Out,
}

/// Parses `30m`, `12h`, `7d` into milliseconds.
pub fn parse_duration(s: &str) -> Result<u64> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| CliError::invalid(format!("`{s}` is not a duration like 30m, 12h or 7d")))?;
    let ms = match unit {
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(CliError::invalid(format!(
                "`{s}` is not a duration like 30m, 12h or 7d"
            )))
        }
    };
    n.checked_mul(ms)
        .filter(|d| *d > 0 && *d <= MAX_INVITATION_MS)
        .ok_or_else(|| CliError::invalid("an invitation expires after 1 minute to 30 days"))
}

/// A QR code of `text` for a terminal.
pub fn terminal_qr(text: &str) -> Result<String> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| CliError::other(format!("cannot make a QR code: {e}")))?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .quiet_zone(true)
        .build())
}

/// Runs `invite`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let terms = args.access.terms(ctx)?;
    let lifetime = parse_duration(&args.expires)?;
    let me = ctx.identity()?;
    let record = crate::cmd::host::own_record(ctx, "invite people to")?;
    let handle = network::handle(ctx)?;
    let home = handle
        .peer_book(&record)
        .map_err(network::error)?
        .home
        .ok_or_else(|| {
            CliError::other(
                "your record has no home host yet: invitations are kept by it, so that people \
             can accept while you are offline (`cophr host ADDR` first)",
            )
        })?;
    let (_, host_peer) = network::parse_addr("the home host", &home.to_string())?;
    let bare: libp2p::Multiaddr = home
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    let now = ctx.now()?;
    let mut secret = [0u8; 32];
    rand_core::OsRng.fill_bytes(&mut secret);
    let invitation = Invitation::new(
        record,
        secret,
        host_peer.to_bytes(),
        vec![bare.to_string()],
        now + lifetime,
        me.info.name.clone(),
        terms.label.clone(),
        now,
    )
    .map_err(|e| CliError::invalid(e.to_string()))?;
    let offer = invitation
        .offer(terms.clone(), now)
        .map_err(|e| CliError::invalid(e.to_string()))?;
    network::block_on(ctx, client::offer_invitation(handle, record, &offer))?
        .map_err(network::error)?;
    let link = invitation.to_link();
    let id = cophr_protocol::invite::display_id(&invitation.id());
    if ctx.json(args.out) {
        let mut out = terms_json(&terms);
        out["invitation"] = json!(id);
        out["link"] = json!(link);
        out["record"] = json!(record);
        out["expires"] = json!(times::format(invitation.expires));
        return output::json(&out);
    }
    output::line(format!(
        "Invitation {id} ({} on {}{}), until {}:",
        terms.level,
        terms.scope,
        terms
            .label
            .as_deref()
            .map(|l| format!(", for {l}"))
            .unwrap_or_default(),
        times::format(invitation.expires)
    ))?;
    output::line(&link)?;
    if !args.no_qr {
        output::print(&terminal_qr(&link)?)?;
        output::line("")?;
    }
    output::line(
        "They run `cophr accept LINK`; then `cophr invitations` shows who accepted and \
         `cophr invitations confirm ID` gives them the access.",
    )
}
