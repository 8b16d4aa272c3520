//! `cophr peers`: show or set where a record replicates from.

use clap::Args as ClapArgs;
use serde_json::json;

use crate::context::{Ctx, Out};
use crate::error::Result;
use crate::network::{self, BookOut};
use crate::output;

const AFTER_HELP: &str = "Addresses are multiaddrs ending in /p2p/<peer id>, as `cophr status`
prints them on the other node.

Examples:
  cophr peers
  cophr peers --record a-… --host /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…
  cophr peers --replica /ip4/127.0.0.1/tcp/4002/p2p/12D3KooW…";

/// Show or set a record's peer book: its home host (which this node pulls from and pushes
/// its writes to) and other replicas (pulled from too, so the record stays available while
/// the home host is down). The node syncs with every one of them regularly. Needs the node.
#[derive(ClapArgs, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// Set the record's home host
    #[arg(long, value_name = "ADDR")]
    host: Option<String>,

    /// Set the other replicas (repeat for several; replaces the list)
    #[arg(long, value_name = "ADDR")]
    replica: Vec<String>,

    /// Forget the other replicas
    #[arg(long, conflicts_with = "replica")]
    no_replicas: bool,

    #[command(flatten)]
    out: Out,
}

/// Runs `peers`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let handle = network::handle(ctx)?;
    let store = handle.store().clone();
    let setting = args.host.is_some() || !args.replica.is_empty() || args.no_replicas;
    let records = if setting || ctx.global.record.is_some() {
        vec![network::record(ctx, &store)?]
    } else {
        store.records()?
    };
    if setting {
        let record = &records[0];
        let mut book = handle.peer_book(record).map_err(network::error)?;
        if let Some(h) = &args.host {
            book.home = Some(network::parse_addr("--host", h)?.0);
        }
        if !args.replica.is_empty() || args.no_replicas {
            let mut replicas = Vec::new();
            for r in &args.replica {
                let (a, _) = network::parse_addr("--replica", r)?;
                if !replicas.contains(&a) && book.home.as_ref() != Some(&a) {
                    replicas.push(a);
                }
            }
            book.replicas = replicas;
        }
        handle
            .set_peer_book(record, &book)
            .map_err(network::error)?;
    }
    let books: Vec<BookOut> = records
        .iter()
        .map(|r| network::book_out(handle, r))
        .collect::<Result<_>>()?;
    if ctx.json(args.out) {
        return output::json(&json!({ "records": books }));
    }
    if books.is_empty() {
        return output::line("No records held.");
    }
    for b in &books {
        network::print_book(b)?;
    }
    Ok(())
}
