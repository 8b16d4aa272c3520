//! `cophr host`: choose your record's home host.

use clap::Args as ClapArgs;
use cophr_node::net::client;
use serde_json::json;

use crate::context::{self, Ctx, Out};
use crate::error::{CliError, Result};
use crate::network;
use crate::output;

/// Host your record on a home host (an always-on node, yours or a community host): it takes
/// the whole record from you and verifies it, you sign a pointer naming it (published in
/// the DHT, so others find it from your record id alone), and from then on it serves the
/// record to the people you granted access and takes their writes. Only the patient can
/// do this, from their own node. Needs the node.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Example:\n  cophr host /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…")]
pub struct Args {
    /// The host's address: a multiaddr ending in /p2p/PEER_ID (`cophr status` prints it)
    addr: String,

    /// A one-time invitation from the host's operator (`cophr node invite` on the host),
    /// for a host that takes records by invitation only
    #[arg(long, value_name = "CODE")]
    invitation: Option<String>,

    #[command(flatten)]
    out: Out,
}

/// The caller's own record, which must be held here: the one whose patient they are (by
/// its first key, a key recovered with guardians, or a device the patient added).
pub fn own_record(ctx: &Ctx, what: &str) -> Result<cophr_protocol::RecordId> {
    let me = ctx.identity()?;
    let handle = network::handle(ctx)?;
    let store = handle.store();
    let record = match &ctx.global.record {
        Some(r) => {
            let id: cophr_protocol::RecordId = crate::error::parse_id("record", r)?;
            if !store.holds(&id)? || !store.with_record(&id, |r| r.is_patient(&me.actor()))? {
                return Err(CliError::access(format!(
                    "only the patient can {what} a record: {id} is not yours (or not held here)"
                )));
            }
            id
        }
        None => context::own_records(store, &me.actor())?
            .first()
            .copied()
            .ok_or_else(|| {
                CliError::not_found(
                    "your record is not held here: create it with `cophr record create` (or \
                     recover it with `cophr recover`)",
                )
            })?,
    };
    ctx.touch(store, &record);
    Ok(record)
}

/// The caller's own record, for what only the record's first key signs (the home pointer
/// that names its host).
pub fn own_record_first_key(ctx: &Ctx, what: &str) -> Result<cophr_protocol::RecordId> {
    let record = own_record(ctx, what)?;
    if record != ctx.identity()?.actor() {
        return Err(CliError::access(format!(
            "only the record's first key can {what} the record: its home pointer is signed with \
             it, and acting as the patient from a device or a recovered key does not extend to \
             that yet"
        )));
    }
    Ok(record)
}

/// Runs `host`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let (addr, _) = network::parse_addr("the host address", &args.addr)?;
    let record = own_record_first_key(ctx, "choose the home host of")?;
    let handle = network::handle(ctx)?;
    let report = network::block_on(
        ctx,
        client::host(handle, &addr, record, args.invitation.as_deref()),
    )?
    .map_err(network::error)?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": record,
            "host": addr.to_string(),
            "pushed": report.pushed,
            "pulled": report.pulled,
        }));
    }
    output::line(format!(
        "Record {record} is now hosted at {addr} ({} entries sent, {} received)",
        report.pushed, report.pulled
    ))?;
    output::line(format!(
        "Others follow it with `cophr follow {record} --host {addr}` (or without --host, through the DHT)."
    ))
}
