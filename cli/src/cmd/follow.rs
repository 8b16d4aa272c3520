//! `cophr follow`: replicate someone's record.

use clap::Args as ClapArgs;
use cophr_node::net::client;
use cophr_protocol::RecordId;
use serde_json::json;

use crate::context::{self, Ctx, Out};
use crate::error::{parse_id, Result};
use crate::network;
use crate::output;

/// Follow a record you were granted access to: record its home host in the peer book (from
/// --host, or found through the DHT from the record id alone, checked against the patient's
/// signature), then sync: you receive what your grant lets you see, your writes go to the
/// home host, and the node keeps the replica up to date. Needs the node.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  cophr follow a-…\n  cophr follow a-… --host /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…"
)]
pub struct Args {
    /// The record: the patient's actor id (`a-…`)
    record: String,

    /// The record's home host, if known (else it is looked up in the DHT)
    #[arg(long, value_name = "ADDR")]
    host: Option<String>,

    #[command(flatten)]
    out: Out,
}

/// Runs `follow`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let record: RecordId = parse_id("record", &args.record)?;
    let handle = network::handle(ctx)?;
    ctx.touch(handle.store(), &record);
    let home = match &args.host {
        Some(h) => {
            let (addr, _) = network::parse_addr("--host", h)?;
            let mut book = handle.peer_book(&record).map_err(network::error)?;
            book.replicas.retain(|r| r != &addr);
            book.home = Some(addr.clone());
            handle
                .set_peer_book(&record, &book)
                .map_err(network::error)?;
            addr
        }
        None => network::block_on(ctx, client::follow(handle, record))?.map_err(network::error)?,
    };
    let (_, peer) = network::parse_addr("the home host", &home.to_string())?;
    let report = network::block_on(
        ctx,
        client::sync(handle, peer, vec![home.clone()], record, true),
    )?
    .map_err(network::error)?;
    // Introduce yourself in the record (name, role, organisation), if your grant lets you
    // write, so the patient's grants list and audit trail can name you.
    if let Ok(me) = ctx.identity() {
        if handle.store().holds(&record)? {
            context::publish_profile(ctx, handle.store(), &me, &record)?;
        }
    }
    let b = network::book_out(handle, &record)?;
    if ctx.json(args.out) {
        return output::json(&json!({
            "record": record,
            "patient": b.patient,
            "home": home.to_string(),
            "pulled": report.pulled,
            "pushed": report.pushed,
            "entries": b.entries,
        }));
    }
    output::line(format!(
        "Following record {record}{} at {home}: {} entries received, {} held",
        b.patient
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default(),
        report.pulled,
        b.entries
    ))
}
