//! `cophr status`: the running node.

use clap::Args as ClapArgs;
use serde_json::json;

use crate::context::{Ctx, Out};
use crate::error::Result;
use crate::network::{self, BookOut};
use crate::output;

/// Show the running node: its peer id, the addresses it listens on (give one to others for
/// `cophr host`, `cophr peers` and `cophr follow`), the records it holds and where each
/// replicates from. Needs the node (`cophr node run`).
#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    out: Out,
}

/// Runs `status`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let handle = network::handle(ctx)?;
    let listen: Vec<String> = network::block_on(ctx, handle.listen_addrs())?
        .map_err(network::error)?
        .iter()
        .map(ToString::to_string)
        .collect();
    let mut records: Vec<BookOut> = Vec::new();
    for r in handle.store().records()? {
        records.push(network::book_out(handle, &r)?);
    }
    let releases: Vec<serde_json::Value> =
        cophr_node::net::client::pending_releases(handle.store())
            .map_err(network::error)?
            .into_iter()
            .map(|(record, host)| json!({"record": record, "host": host.to_string()}))
            .collect();
    let actor = handle.identity().actor();
    let http = crate::home::read_limited(&ctx.home.dir.join(crate::control::NODE_JSON), 1 << 20)
        .ok()
        .and_then(|b| serde_json::from_slice::<crate::control::NodeInfo>(&b).ok())
        .and_then(|i| i.http);
    if ctx.json(args.out) {
        return output::json(&json!({
            "peer_id": handle.peer_id().to_string(),
            "actor": actor,
            "pid": std::process::id(),
            "listen": listen,
            "http": http,
            "records": records,
            "pending_releases": releases,
        }));
    }
    let me = ctx.identity().map(|i| i.info.name).unwrap_or_default();
    output::line(format!(
        "Node {} (acting as {me}, {actor})",
        handle.peer_id()
    ))?;
    match &http {
        Some(url) => output::line(format!("HTTP API: {url} (token: `cophr token`)"))?,
        None => output::line("HTTP API: not served")?,
    }
    output::line("Listening on:")?;
    for a in &listen {
        output::line(format!("  {a}"))?;
    }
    if !releases.is_empty() {
        output::line("Pending releases (former hosts not yet confirmed deleting a record):")?;
        for r in &releases {
            output::line(format!(
                "  {} at {}",
                r["record"].as_str().unwrap_or_default(),
                r["host"].as_str().unwrap_or_default()
            ))?;
        }
    }
    if records.is_empty() {
        return output::line("No records held.");
    }
    output::line("Records:")?;
    for b in &records {
        network::print_book(b)?;
    }
    Ok(())
}
