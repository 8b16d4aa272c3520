//! `cophr recover`: take your record back with a new key, approved by your guardians.

use clap::{Args, Subcommand};
use cophr_node::net::client;
use cophr_protocol::recovery::{GuardianApproval, Recovery, RecoveryRequest};
use cophr_protocol::RecordId;
use serde_json::json;

use crate::context::{self, Ctx, Out};
use crate::error::{parse_id, CliError, Result};
use crate::{network, output};

/// Recover your record after losing your key: on a new home make a new identity (`cophr
/// init`), print a request for your record (`cophr recover request RECORD`) and give it to
/// your guardians; each checks it is really you and runs `cophr guardians approve
/// REQUEST`. With as many approvals as your threshold, `cophr recover finish --host ADDR
/// APPROVAL…` (with the node running) fetches the whole record from its home host and
/// writes the key rotation: from then on this identity is the patient, the record id and
/// every grant stay, and the old key writes nothing new.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the request to give your guardians (the record and this identity's key)
    Request(RequestArgs),
    /// With enough approvals: fetch the record and make this identity its patient
    Finish(FinishArgs),
}

/// `cophr recover request`.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// Your record: your first actor id (`a-…`), which is the record's id
    record: String,
    #[command(flatten)]
    out: Out,
}

/// `cophr recover finish`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  cophr recover finish --host /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW… cophr://approval/… cophr://approval/…"
)]
pub struct FinishArgs {
    /// The record's home host: a multiaddr ending in /p2p/PEER_ID
    #[arg(long, value_name = "ADDR")]
    host: String,
    /// The guardians' approvals (`cophr://approval/…`), as many as the threshold
    #[arg(required = true, num_args = 1..=cophr_protocol::entry::MAX_GUARDIANS)]
    approvals: Vec<String>,
    #[command(flatten)]
    out: Out,
}

/// Runs `recover`.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Request(a) => request(ctx, a),
        Command::Finish(a) => finish(ctx, a),
    }
}

fn request(ctx: &Ctx, args: RequestArgs) -> Result<()> {
    let record: RecordId = parse_id("record", &args.record)?;
    let me = ctx.identity()?;
    if me.actor() == record {
        return Err(CliError::invalid(
            "this identity is the record's own key: there is nothing to recover",
        ));
    }
    let text = RecoveryRequest {
        record,
        new: me.actor(),
    }
    .to_text();
    if ctx.json(args.out) {
        return output::json(&json!({ "record": record, "new_key": me.actor(), "request": text }));
    }
    output::line(format!(
        "Ask your guardians to approve key {} for record {record}:",
        me.actor()
    ))?;
    output::line(&text)?;
    output::print(&crate::cmd::invite::terminal_qr(&text)?)?;
    output::line(
        "Each runs `cophr guardians approve REQUEST` and gives you the approval it prints.",
    )
}

fn finish(ctx: &Ctx, args: FinishArgs) -> Result<()> {
    let (host, _) = network::parse_addr("--host", &args.host)?;
    let approvals: Vec<GuardianApproval> = args
        .approvals
        .iter()
        .map(|a| GuardianApproval::from_text(a).map_err(|e| CliError::invalid(e.to_string())))
        .collect::<Result<_>>()?;
    let me = ctx.identity()?;
    let record = approvals[0].claim.record;
    let recovery = Recovery::assemble(record, &me.actor(), &approvals)
        .map_err(|e| CliError::invalid(e.to_string()))?;
    let handle = network::handle(ctx)?;
    ctx.touch(handle.store(), &record);
    let now = ctx.now()?;
    let report = network::block_on(ctx, client::recover(handle, &host, record, recovery, now))?
        .map_err(network::error)?;
    ctx.mark_changed(&record);
    // Introduce the new key: the record's people see your name on what you write next.
    context::publish_profile(ctx, handle.store(), &me, &record)?;
    tracing::info!(%record, rotation = %report.rotation, "record recovered");
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": record,
            "rotation": report.rotation,
            "pulled": report.pulled,
            "pushed": report.pushed,
        }));
    }
    output::line(format!(
        "Recovered record {record}: {} entries received, key rotation {} accepted by the host.",
        report.pulled, report.rotation
    ))?;
    output::line(format!(
        "{} is now the patient's key; the old key can write nothing new.",
        me.actor()
    ))
}
