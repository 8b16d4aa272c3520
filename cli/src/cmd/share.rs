//! `cophr share`: an emergency summary (about me, alerts, allergies, medications, problems)
//! shown to any clinician by a time-limited link and QR code, without cophr
//! (`docs/emergency-summary.md`). The node that serves the HTTP API serves the link.

use clap::{Args, Subcommand};
use cophr_node::http::share::{self as node_share, ShareFailure};
use cophr_node::session::Cancel;
use cophr_protocol::share::ShareId;
use serde_json::json;

use cophr_node::net::client;

use crate::context::{session, session_error, Ctx, Out};
use crate::error::{CliError, Result};
use crate::network;
use crate::output::{self, Table};
use crate::times;

const AFTER_HELP: &str = "Examples:
  cophr share create --expires 24h --label 'A&E'
  cophr share list
  cophr share end ID

The link carries the key that decrypts the summary after its `#`; the node keeps only
ciphertext and never the key. Anyone with the link sees the summary until it expires or
you end it; every opening is in `cophr audit` with its time and network address. The link
points at this node's HTTP server (`cophr node run`, which other machines reach with
`--http ADDR --http-allow-remote`, best behind https), or give --base-url.";

/// Share an emergency summary by a time-limited link and QR code; list or end shares.
#[derive(Subcommand, Debug)]
#[command(after_help = AFTER_HELP)]
pub enum Command {
    /// Make a link (and QR code) to your emergency summary
    Create(CreateArgs),
    /// List your shares: status, expiry, openings
    List(Out),
    /// End a share now: the link opens no more
    End(EndArgs),
}

/// `cophr share create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// How long the link opens: e.g. 30m, 12h, 7d (at most 7d)
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    expires: String,

    /// What it is for, shown in your list, e.g. "A&E" or "Holiday in Spain"
    #[arg(long)]
    label: Option<String>,

    /// The start of the link, e.g. `https://phr.example` [default: the running node's HTTP URL]
    #[arg(long, value_name = "URL", conflicts_with = "on_host")]
    base_url: Option<String>,

    /// Let your record's home host serve the link, at its public HTTP URL (e.g.
    /// `https://host.example`): it gets only the ciphertext, never the key, and audits
    /// every opening in your record's trail. Needs the node.
    #[arg(long, value_name = "URL")]
    on_host: Option<String>,

    /// Do not print the QR code
    #[arg(long)]
    no_qr: bool,

    #[command(flatten)]
    out: Out,
}

/// `cophr share end`.
#[derive(Args, Debug)]
pub struct EndArgs {
    /// The share's id (from `cophr share list`)
    #[arg(allow_hyphen_values = true)]
    id: String,

    #[command(flatten)]
    out: Out,
}

/// Runs `share`.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Create(a) => create(ctx, a),
        Command::List(out) => list(ctx, out),
        Command::End(a) => end(ctx, a),
    }
}

fn failure(e: ShareFailure) -> CliError {
    match e {
        ShareFailure::NotPatient => CliError::access(e.to_string()),
        ShareFailure::NotHeld(_) | ShareFailure::NotFound => CliError::not_found(e.to_string()),
        ShareFailure::Invalid(_) => CliError::invalid(e.to_string()),
        ShareFailure::Store(s) => s.into(),
        ShareFailure::Session(s) => session_error(s),
        _ => CliError::other(e.to_string()),
    }
}

/// The running node's HTTP URL, from `node.json`.
fn node_http(ctx: &Ctx) -> Option<String> {
    crate::home::read_limited(&ctx.home.dir.join(crate::control::NODE_JSON), 1 << 20)
        .ok()
        .and_then(|b| serde_json::from_slice::<crate::control::NodeInfo>(&b).ok())
        .and_then(|i| i.http)
}

fn create(ctx: &Ctx, args: CreateArgs) -> Result<()> {
    let lifetime = node_share::parse_lifetime(&args.expires)
        .map_err(|_| CliError::invalid("--expires: a duration like 30m, 12h or 7d, at most 7d"))?;
    let base = match args
        .on_host
        .clone()
        .or(args.base_url)
        .or_else(|| node_http(ctx))
    {
        Some(b) => b,
        None => {
            return Err(CliError::other(
                "no HTTP server to serve the link: run `cophr node run` (its HTTP API serves \
                 emergency summaries), or give --base-url for the server that does",
            ))
        }
    };
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let record = own(&store, &me)?;
    let now = ctx.now()?;
    let made = node_share::create(
        &session(ctx, &store, &me),
        &Cancel::new(),
        &record,
        now,
        lifetime,
        args.label,
        &base,
        &mut rand_core::OsRng,
    )
    .map_err(failure)?;
    let s = &made.share;
    let mut host = None;
    if args.on_host.is_some() {
        // The home host takes the ciphertext; if it cannot, the share is ended here too,
        // so no link is left pointing at nothing.
        let handed = node_share::parts(&store, &s.id)?
            .ok_or_else(|| CliError::other("the share just made is gone"))
            .and_then(|(share, sealed)| {
                let handle = network::handle(ctx)?;
                network::block_on(ctx, client::put_share(handle, &share, sealed))?
                    .map_err(network::error)
            });
        match handed {
            Ok(addr) => {
                store.set_meta(&hosted_key(&s.id), b"1")?;
                host = Some(addr.to_string());
            }
            Err(e) => {
                let _ = node_share::end(&session(ctx, &store, &me), &record, &s.id, now);
                return Err(e);
            }
        }
    }
    if ctx.json(args.out) {
        let mut v = node_share::share_json(s, now);
        v["link"] = json!(made.link);
        v["shlink"] = json!(made.shlink);
        v["served_by"] = json!(host);
        return output::json(&v);
    }
    output::line(format!(
        "Emergency summary {} ({} items: about me, alerts, allergies, medications, problems){}, until {}:",
        s.id,
        s.entries.len(),
        s.label
            .as_deref()
            .map(|l| format!(" for {l}"))
            .unwrap_or_default(),
        times::format(s.expires)
    ))?;
    output::line(&made.link)?;
    if !args.no_qr {
        output::print(&crate::cmd::invite::terminal_qr(&made.link)?)?;
        output::line("")?;
    }
    if let Some(h) = &host {
        output::line(format!(
            "Your home host {h} serves it (it holds only the ciphertext); openings there reach \
             your audit trail when your node syncs."
        ))?;
    }
    output::line(format!(
        "Anyone with the link sees the summary until then; every opening is audited. End it \
         early with `cophr share end {}`.",
        s.id
    ))
}

/// The caller's own record (as its patient, from any of their keys or devices).
fn own(
    store: &cophr_node::store::Store,
    me: &crate::home::Identity,
) -> Result<cophr_protocol::RecordId> {
    crate::context::own_records(store, &me.actor())?
        .first()
        .copied()
        .ok_or_else(|| {
            CliError::not_found(
                "your record is not held here: create it with `cophr record create`",
            )
        })
}

/// The store metadata key marking a share handed to the home host.
fn hosted_key(id: &ShareId) -> String {
    format!("share-hosted/{id}")
}

fn list(ctx: &Ctx, out: Out) -> Result<()> {
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let now = ctx.now()?;
    let record = own(&store, &me)?;
    let all = node_share::list(&session(ctx, &store, &me), &record).map_err(failure)?;
    if ctx.json(out) {
        let rows: Vec<serde_json::Value> =
            all.iter().map(|s| node_share::share_json(s, now)).collect();
        return output::json(&rows);
    }
    if all.is_empty() {
        return output::line("No emergency summary shares (`cophr share create` makes one).");
    }
    let mut t = Table::new(&["ID", "STATUS", "EXPIRES", "OPENS", "LAST OPENED", "LABEL"]);
    for s in &all {
        t.row(vec![
            s.id.to_string(),
            s.status(now).name().to_owned(),
            times::format(s.expires),
            s.opens.to_string(),
            s.last_opened.map(times::format).unwrap_or_default(),
            s.label.clone().unwrap_or_default(),
        ]);
    }
    output::print(&t.render())
}

fn end(ctx: &Ctx, args: EndArgs) -> Result<()> {
    let id: ShareId = args
        .id
        .parse()
        .map_err(|_| CliError::invalid(format!("`{}` is not a share id", args.id)))?;
    let me = ctx.identity()?;
    let store = ctx.store()?;
    let now = ctx.now()?;
    let record = own(&store, &me)?;
    let s = node_share::end(&session(ctx, &store, &me), &record, &id, now).map_err(failure)?;
    if store.meta(&hosted_key(&id))?.is_some_and(|b| !b.is_empty()) {
        let handle = network::handle(ctx)?;
        network::block_on(ctx, client::end_share(handle, record, id))?.map_err(network::error)?;
        store.set_meta(&hosted_key(&id), &[])?;
    }
    if ctx.json(args.out) {
        return output::json(&node_share::share_json(&s, now));
    }
    output::line(format!(
        "Ended emergency summary {id}: the link opens no more (it was opened {} times).",
        s.opens
    ))
}
