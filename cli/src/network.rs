//! What the network commands share: driving the node from a command's thread, addresses,
//! and turning network errors into exit codes.

use std::future::Future;

use cophr_node::net::{NetError, NodeHandle, PeerBook};
use cophr_protocol::RecordId;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use serde::Serialize;

use crate::context::Ctx;
use crate::error::{parse_id, CliError, Result};
use crate::store::Store;

/// The running node's handle, or the error telling the user to start it.
pub fn handle(ctx: &Ctx) -> Result<&NodeHandle> {
    Ok(&ctx.node()?.0)
}

/// Runs a future on the node's runtime, from the command's (blocking) thread.
pub fn block_on<F: Future>(ctx: &Ctx, f: F) -> Result<F::Output> {
    Ok(ctx.node()?.1.block_on(f))
}

/// A network error, with the exit code it means.
pub fn error(e: NetError) -> CliError {
    match &e {
        NetError::Refused {
            code: cophr_protocol::sync::Refusal::NoAccess,
            ..
        } => CliError::access(format!("not authorised: {e}")),
        NetError::Refused {
            code: cophr_protocol::sync::Refusal::OverQuota,
            ..
        } => CliError::access(e.to_string()),
        NetError::Refused {
            code: cophr_protocol::sync::Refusal::NotAdmitted,
            ..
        } => CliError::access(format!(
            "{e} (a host taking records by invitation needs `--invitation CODE` from its operator's `cophr node invite`)"
        )),
        NetError::Refused {
            code: cophr_protocol::sync::Refusal::AssuranceRequired,
            reason,
            ..
        } => CliError::access(format!(
            "{reason} (add an attestation with `cophr identity add FILE`; `cophr identity show` shows yours)"
        )),
        NetError::NotFound(_) => CliError::not_found(e.to_string()),
        NetError::Store(_) => CliError::other(e.to_string()),
        _ => CliError::other(e.to_string()),
    }
}

/// Parses a peer address: a multiaddr ending in `/p2p/<peer id>`.
pub fn parse_addr(what: &str, s: &str) -> Result<(Multiaddr, PeerId)> {
    let addr: Multiaddr = s.trim().parse().map_err(|e| {
        CliError::invalid(format!(
            "{what} `{s}` is not a multiaddr ({e}); addresses look like \
             /ip4/127.0.0.1/tcp/4001/p2p/12D3KooW… (`cophr status` on that node prints them)"
        ))
    })?;
    let peer = match addr.iter().last() {
        Some(Protocol::P2p(p)) => p,
        _ => {
            return Err(CliError::invalid(format!(
                "{what} `{s}` does not end in /p2p/<peer id>: the peer id is needed to know \
                 the node is the right one (`cophr status` on that node prints its addresses)"
            )))
        }
    };
    Ok((addr, peer))
}

/// The record a network command acts on: `--record` (held or not: it may be about to be
/// replicated here), else as the other commands choose.
pub fn record(ctx: &Ctx, store: &Store) -> Result<RecordId> {
    match &ctx.global.record {
        Some(r) => {
            let id: RecordId = parse_id("record", r)?;
            ctx.touch(store, &id);
            Ok(id)
        }
        None => {
            let me = ctx.identity().ok().map(|i| i.actor());
            ctx.record(store, me.as_ref())
        }
    }
}

/// A record's peer book, as printed.
#[derive(Debug, Serialize)]
pub struct BookOut {
    /// The record.
    pub record: RecordId,
    /// The patient's name, if the record is held and names them.
    pub patient: Option<String>,
    /// Entries held here.
    pub entries: usize,
    /// Whether this node is the record's home host.
    pub hosted_here: bool,
    /// The home host.
    pub home: Option<String>,
    /// Other replicas.
    pub replicas: Vec<String>,
    /// Replicas learned from peers that proved access (fallbacks when home is down).
    pub learned: Vec<String>,
}

/// A record's peer book and what this node knows of it.
pub fn book_out(handle: &NodeHandle, record: &RecordId) -> Result<BookOut> {
    let store = handle.store();
    let book: PeerBook = handle.peer_book(record).map_err(error)?;
    let held = store.holds(record)?;
    let (patient, entries) = if held {
        store.with_record(record, |r| {
            (r.profile(record, None).map(|p| p.name.clone()), r.len())
        })?
    } else {
        (None, 0)
    };
    Ok(BookOut {
        record: *record,
        patient,
        entries,
        hosted_here: held
            && store
                .meta(&cophr_node::net::server::home_key(record))?
                .is_some_and(|p| !p.is_empty()),
        home: book.home.map(|a| a.to_string()),
        replicas: book.replicas.iter().map(ToString::to_string).collect(),
        learned: book.learned.iter().map(ToString::to_string).collect(),
    })
}

/// Prints a peer book for people.
pub fn print_book(b: &BookOut) -> Result<()> {
    let mut about = vec![format!("{} entries held", b.entries)];
    if b.hosted_here {
        about.push("hosted here".into());
    }
    crate::output::line(format!(
        "{}{}: {}",
        b.record,
        b.patient
            .as_deref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default(),
        about.join(", ")
    ))?;
    crate::output::line(format!("  home:     {}", b.home.as_deref().unwrap_or("-")))?;
    if b.replicas.is_empty() {
        crate::output::line("  replicas: -")?;
    } else {
        for (i, r) in b.replicas.iter().enumerate() {
            crate::output::line(format!(
                "  {}{r}",
                if i == 0 { "replicas: " } else { "          " }
            ))?;
        }
    }
    for (i, r) in b.learned.iter().enumerate() {
        crate::output::line(format!(
            "  {}{r}",
            if i == 0 { "learned:  " } else { "          " }
        ))?;
    }
    Ok(())
}
