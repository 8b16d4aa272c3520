//! `cophr move`: move your record to another home host.

use clap::Args as ClapArgs;
use cophr_node::net::client;
use serde_json::json;

use crate::context::{Ctx, Out};
use crate::error::Result;
use crate::network;
use crate::output;

/// Move your record to another home host in one step: the new host takes and verifies the
/// whole record, you sign a move-home entry (replicas follow it by themselves) and a new
/// pointer (the DHT then points at the new host), and only then is the old host told to
/// delete its copy. Every grant keeps working. Needs the node.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Example:\n  cophr move --to /ip4/192.0.2.8/tcp/4001/p2p/12D3KooW…")]
pub struct Args {
    /// The new host's address: a multiaddr ending in /p2p/PEER_ID
    #[arg(long, value_name = "ADDR")]
    to: String,

    /// A one-time invitation from the host's operator (`cophr node invite` on the host),
    /// for a host that takes records by invitation only
    #[arg(long, value_name = "CODE")]
    invitation: Option<String>,

    #[command(flatten)]
    out: Out,
}

/// Runs `move`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let (to, _) = network::parse_addr("--to", &args.to)?;
    let record = crate::cmd::host::own_record_first_key(ctx, "move")?;
    let handle = network::handle(ctx)?;
    let moved = network::block_on(
        ctx,
        client::move_home(handle, &to, record, args.invitation.as_deref()),
    )?
    .map_err(network::error)?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": record,
            "from": moved.from.as_ref().map(ToString::to_string),
            "to": to.to_string(),
            "released": moved.released,
        }));
    }
    output::line(format!("Record {record} moved to {to}."))?;
    match (&moved.from, moved.released) {
        (Some(f), true) => output::line(format!("The former host {f} deleted its copy.")),
        (Some(f), false) => output::line(format!(
            "Pending: the former host {f} could not be reached to delete its copy. This node \
             keeps asking it while it runs (`cophr status` lists pending releases), and the \
             former host deletes its copy by itself when it comes back and finds the move."
        )),
        (None, _) => Ok(()),
    }
}
