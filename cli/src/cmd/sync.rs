//! `cophr sync`: replicate a record now.

use clap::Args as ClapArgs;
use cophr_node::net::client::{self, SyncReport};
use cophr_node::net::{NetError, PeerBook};
use cophr_protocol::{EntryId, RecordId};
use libp2p::Multiaddr;
use serde::Serialize;
use serde_json::json;

use crate::context::{Ctx, Out};
use crate::error::{CliError, Result};
use crate::network;
use crate::output;

/// Sync a record now: pull what you may see and lack, and push your writes. With its home
/// host first; if that cannot be reached, with the other replicas in its peer book (the
/// first that answers); if none answers, the home host is looked up in the DHT (it may
/// have moved). Prints what was pulled, pushed and refused. The node also syncs by itself
/// regularly and as entries are written. Needs the node.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Sync with this peer only (a multiaddr ending in /p2p/PEER_ID)
    #[arg(long, value_name = "ADDR")]
    peer: Option<String>,

    #[command(flatten)]
    out: Out,
}

#[derive(Debug, Serialize)]
struct Refused {
    entry: EntryId,
    reason: String,
}

#[derive(Debug, Serialize)]
struct Outcome {
    peer: String,
    role: &'static str,
    ok: bool,
    pulled: usize,
    pushed: usize,
    rejected: Vec<Refused>,
    audit_pulled: usize,
    error: Option<String>,
}

struct Target {
    addr: Multiaddr,
    role: &'static str,
    push: bool,
}

fn sync_one(ctx: &Ctx, record: RecordId, t: &Target) -> Result<(Outcome, Option<NetError>)> {
    let handle = network::handle(ctx)?;
    let (_, peer) = network::parse_addr("peer", &t.addr.to_string())?;
    let r = network::block_on(
        ctx,
        client::sync(handle, peer, vec![t.addr.clone()], record, t.push),
    )?;
    let mut o = Outcome {
        peer: t.addr.to_string(),
        role: t.role,
        ok: r.is_ok(),
        pulled: 0,
        pushed: 0,
        rejected: Vec::new(),
        audit_pulled: 0,
        error: None,
    };
    match r {
        Ok(SyncReport {
            pulled,
            pushed,
            rejected,
            audit_pulled,
            ..
        }) => {
            o.pulled = pulled;
            o.pushed = pushed;
            o.audit_pulled = audit_pulled;
            o.rejected = rejected
                .into_iter()
                .map(|(entry, reason)| Refused { entry, reason })
                .collect();
            Ok((o, None))
        }
        Err(e) => {
            o.error = Some(e.to_string());
            Ok((o, Some(e)))
        }
    }
}

/// The record's home host according to the DHT (a pointer signed by the patient), if it
/// names another host than the peer book's; it then becomes the book's home.
fn find_new_home(ctx: &Ctx, record: RecordId, book: &PeerBook) -> Result<Option<Multiaddr>> {
    let handle = network::handle(ctx)?;
    let pointer = match network::block_on(ctx, handle.find_home(record))? {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(%record, error = %e, "no home pointer found");
            return Ok(None);
        }
    };
    let Ok(peer) = libp2p::PeerId::from_bytes(&pointer.pointer.host) else {
        return Ok(None);
    };
    let Some(addr) = pointer
        .pointer
        .addrs
        .first()
        .and_then(|a| a.parse::<Multiaddr>().ok())
    else {
        return Ok(None);
    };
    let current = book.home.as_ref().and_then(|h| h.iter().last());
    if current == Some(libp2p::multiaddr::Protocol::P2p(peer)) {
        return Ok(None);
    }
    let addr = addr.with(libp2p::multiaddr::Protocol::P2p(peer));
    let mut new = book.clone();
    new.replicas.retain(|r| r != &addr);
    new.home = Some(addr.clone());
    handle
        .set_peer_book(&record, &new)
        .map_err(network::error)?;
    Ok(Some(addr))
}

/// Runs `sync`.
pub fn run(ctx: &Ctx, args: Args) -> Result<()> {
    let handle = network::handle(ctx)?;
    let store = handle.store().clone();
    let record = network::record(ctx, &store)?;
    let book: PeerBook = handle.peer_book(&record).map_err(network::error)?;
    let explicit = args.peer.is_some();
    let targets = targets(record, args.peer.as_deref(), &book)?;
    let mut synced = sync_targets(ctx, record, &targets, explicit)?;
    if !explicit {
        follow_moved_home(ctx, record, &book, &mut synced)?;
    }
    let Synced {
        outcomes,
        last_error,
    } = synced;
    let any_ok = outcomes.iter().any(|o| o.ok);
    if ctx.json(args.out) && any_ok {
        return output::json(&json!({ "record": record, "results": outcomes }));
    }
    print_outcomes(record, &outcomes, any_ok)?;
    if any_ok {
        return Ok(());
    }
    Err(none_synced(record, &outcomes, last_error))
}

/// The outcomes of the syncs tried, and the last network error met.
struct Synced {
    outcomes: Vec<Outcome>,
    last_error: Option<NetError>,
}

impl Synced {
    /// Notes the outcome of one sync.
    fn push(&mut self, (o, err): (Outcome, Option<NetError>)) {
        self.outcomes.push(o);
        if let Some(e) = err {
            self.last_error = Some(e);
        }
    }
}

/// Whom to sync with: the peer given, else the home host then the replicas in the peer book.
fn targets(record: RecordId, peer: Option<&str>, book: &PeerBook) -> Result<Vec<Target>> {
    let targets: Vec<Target> = match peer {
        Some(p) => {
            let (addr, peer) = network::parse_addr("--peer", p)?;
            let home = book.home.as_ref().and_then(|h| h.iter().last());
            let push = home == Some(libp2p::multiaddr::Protocol::P2p(peer));
            vec![Target {
                addr,
                role: if push { "home" } else { "peer" },
                push,
            }]
        }
        None => book
            .home
            .iter()
            .map(|a| Target {
                addr: a.clone(),
                role: "home",
                push: true,
            })
            .chain(book.fallbacks().into_iter().map(|a| Target {
                addr: a,
                role: "replica",
                push: false,
            }))
            .collect(),
    };
    if targets.is_empty() {
        return Err(CliError::not_found(format!(
            "no home host or replica is known for record {record}: set one with `cophr peers \
             --host ADDR`, or find it with `cophr follow {record}`"
        )));
    }
    Ok(targets)
}

/// Syncs with the targets in turn: every one if they were given, else until one answers.
fn sync_targets(ctx: &Ctx, record: RecordId, targets: &[Target], explicit: bool) -> Result<Synced> {
    let mut synced = Synced {
        outcomes: Vec::new(),
        last_error: None,
    };
    for t in targets {
        let one = sync_one(ctx, record, t)?;
        let ok = one.0.ok;
        synced.push(one);
        if ok && !explicit {
            break;
        }
    }
    Ok(synced)
}

/// Syncs with the record's new home, if it moved while syncing or nobody answered and the
/// DHT knows a new one.
fn follow_moved_home(
    ctx: &Ctx,
    record: RecordId,
    book: &PeerBook,
    synced: &mut Synced,
) -> Result<()> {
    let handle = network::handle(ctx)?;
    let now_home = handle.peer_book(&record).map_err(network::error)?.home;
    let found = if now_home.is_some() && now_home != book.home {
        // The record moved (a move-home entry arrived while syncing): follow it now.
        now_home
    } else if !synced.outcomes.iter().any(|o| o.ok) {
        // Nobody answered: the record may have moved; the DHT knows where.
        find_new_home(ctx, record, book)?
    } else {
        None
    };
    if let Some(addr) = found {
        synced.push(sync_one(
            ctx,
            record,
            &Target {
                addr,
                role: "new home",
                push: true,
            },
        )?);
    }
    Ok(())
}

/// Prints each sync's outcome; the failures only as warnings, when another sync worked.
fn print_outcomes(record: RecordId, outcomes: &[Outcome], any_ok: bool) -> Result<()> {
    for o in outcomes {
        if o.ok {
            output::line(format!(
                "Synced record {record} with {} {}: pulled {}, pushed {}, rejected {}",
                o.role,
                o.peer,
                o.pulled,
                o.pushed,
                o.rejected.len()
            ))?;
            for r in &o.rejected {
                output::line(format!("  rejected {}: {}", r.entry, r.reason))?;
            }
        } else if any_ok {
            output::write_err(&format!(
                "warning: could not sync with {} {}: {}\n",
                o.role,
                o.peer,
                o.error.as_deref().unwrap_or("failed")
            ));
        }
    }
    Ok(())
}

/// The error when no sync worked: each peer tried and why it failed.
fn none_synced(record: RecordId, outcomes: &[Outcome], last_error: Option<NetError>) -> CliError {
    let summary: Vec<String> = outcomes
        .iter()
        .map(|o| {
            format!(
                "{} {}: {}",
                o.role,
                o.peer,
                o.error.as_deref().unwrap_or("failed")
            )
        })
        .collect();
    let code = last_error.map(network::error).map(|e| e.code);
    CliError::new(
        code.unwrap_or(crate::error::Code::Other),
        format!(
            "could not sync record {record} with any peer:\n  {}",
            summary.join("\n  ")
        ),
    )
}
