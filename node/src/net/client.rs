//! Replicating as a client: ask a peer what differs, pull what this node may see and
//! lacks, push what the peer lacks (to the home host only), and exchange audit events.

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId};
use rand_core::{OsRng, RngCore};

use cophr_protocol::audit::SignedAudit;
use cophr_protocol::sync::{Frontier, Proof, Request, Response, MAX_BATCH};
use cophr_protocol::{EntryId, RecordId};

use super::service::{now_ms, NodeHandle};
use super::NetError;

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Entries received and stored.
    pub pulled: usize,
    /// Entries the peer accepted from us.
    pub pushed: usize,
    /// Entries the peer refused, with its reasons.
    pub rejected: Vec<(EntryId, String)>,
    /// Audit events received.
    pub audit_pulled: usize,
    /// Round trips used.
    pub round_trips: usize,
}

fn proof(handle: &NodeHandle, peer: &PeerId, record: RecordId) -> Proof {
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    Proof::new(
        handle.identity(),
        record,
        &handle.peer_id().to_bytes(),
        &peer.to_bytes(),
        nonce,
        now_ms(),
    )
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NetError::Setup(format!("blocking task failed: {e}")))
}

/// Syncs `record` with `peer`: pull, then (if `push`) push back what it lacks.
pub async fn sync(
    handle: &NodeHandle,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    record: RecordId,
    push: bool,
) -> Result<SyncReport, NetError> {
    let mut report = SyncReport::default();
    let store = handle.store().clone();
    let held = store.holds(&record)?;
    let digests = if held {
        store.with_record(&record, |r| r.digests())?
    } else {
        Vec::new()
    };
    report.round_trips += 1;
    let differ = match handle
        .request(
            peer,
            addrs.clone(),
            Request::Digests {
                proof: proof(handle, &peer, record),
                digests,
            },
        )
        .await?
    {
        Response::Differ { streams } => streams,
        Response::Refused { reason } if push && held && handle.identity().actor() == record => {
            // A host that does not hold the patient's record yet: give it everything.
            tracing::debug!(%peer, %reason, "peer lacks the record; pushing all of it");
            let all = Frontier::new();
            report.pushed +=
                push_beyond(handle, peer, &addrs, record, None, &all, &mut report).await?;
            return Ok(report);
        }
        Response::Refused { reason } => return Err(NetError::Refused { peer, reason }),
        other => return Err(unexpected(peer, &other)),
    };
    // The server names only streams it holds; what it lacks, only we can tell. So a sync
    // that may push asks about every stream we hold as well.
    let mut differ = differ;
    if push && held {
        for s in store.with_record(&record, |r| r.streams())? {
            if !differ.contains(&s) {
                differ.push(s);
            }
        }
    }
    if differ.is_empty() {
        return Ok(report);
    }
    // Pull.
    let mut theirs: Frontier;
    loop {
        let mine = if store.holds(&record)? {
            store.with_record(&record, |r| r.frontier())?
        } else {
            Frontier::new()
        };
        let ask: Frontier = differ
            .iter()
            .map(|s| (s.clone(), mine.get(s).cloned().unwrap_or_default()))
            .collect();
        report.round_trips += 1;
        let (entries, more, frontier) = match handle
            .request(
                peer,
                addrs.clone(),
                Request::Pull {
                    proof: proof(handle, &peer, record),
                    frontier: ask,
                    limit: MAX_BATCH as u32,
                },
            )
            .await?
        {
            Response::Entries {
                entries,
                more,
                frontier,
            } => (entries, more, frontier),
            Response::Refused { reason } => return Err(NetError::Refused { peer, reason }),
            other => return Err(unexpected(peer, &other)),
        };
        theirs = frontier;
        let got = entries.len();
        let store2 = store.clone();
        let stored = blocking(move || -> Result<usize, NetError> {
            let verified =
                super::verify::decode_verify_all(entries).map_err(|(i, e)| NetError::Protocol {
                    peer,
                    reason: format!("entry {i}: {e}"),
                })?;
            Ok(store2.ingest(&record, verified)?)
        })
        .await??;
        report.pulled += stored;
        if !more || got == 0 {
            break;
        }
    }
    if push {
        report.pushed += push_beyond(
            handle,
            peer,
            &addrs,
            record,
            Some(&differ),
            &theirs,
            &mut report,
        )
        .await?;
        push_audit(handle, peer, &addrs, record).await?;
    }
    report.audit_pulled = pull_audit(handle, peer, &addrs, record, &mut report)
        .await
        .unwrap_or(0);
    if report.pulled > 0 {
        follow_moves(handle, &record)?;
        handle.changed(record).await?;
    }
    Ok(report)
}

fn unexpected(peer: PeerId, r: &Response) -> NetError {
    let kind = match r {
        Response::Differ { .. } => "differ",
        Response::Entries { .. } => "entries",
        Response::Pushed { .. } => "pushed",
        Response::AuditEvents { .. } => "audit events",
        Response::Ack => "ack",
        Response::Refused { .. } => "refused",
    };
    NetError::Protocol {
        peer,
        reason: format!("unexpected {kind} response"),
    }
}

/// Pushes the entries this node holds beyond `theirs` (in `streams`, or all), in causal
/// order and bounded batches. Returns how many the peer accepted.
async fn push_beyond(
    handle: &NodeHandle,
    peer: PeerId,
    addrs: &[Multiaddr],
    record: RecordId,
    streams: Option<&[cophr_protocol::record::Stream]>,
    theirs: &Frontier,
    report: &mut SyncReport,
) -> Result<usize, NetError> {
    let me = handle.identity().actor();
    let now = now_ms();
    let batches: Vec<Vec<serde_bytes::ByteBuf>> = handle.store().with_record(&record, |r| {
        let viewer = r.viewer(&me, now);
        let mine = r.frontier();
        let ask: Frontier = mine
            .keys()
            .filter(|s| streams.is_none_or(|ss| ss.contains(s)))
            .map(|s| (s.clone(), theirs.get(s).cloned().unwrap_or_default()))
            .collect();
        let (entries, _, _) = r.entries_beyond(&viewer, &ask, usize::MAX);
        entries
            .chunks(MAX_BATCH)
            .map(|c| {
                c.iter()
                    .map(|e| serde_bytes::ByteBuf::from(e.signed().bytes().to_vec()))
                    .collect()
            })
            .collect()
    })?;
    let mut accepted = 0;
    for entries in batches {
        report.round_trips += 1;
        match handle
            .request(
                peer,
                addrs.to_vec(),
                Request::Push {
                    proof: proof(handle, &peer, record),
                    entries,
                },
            )
            .await?
        {
            Response::Pushed {
                accepted: a,
                rejected,
            } => {
                accepted += a.len();
                report.rejected.extend(rejected);
            }
            Response::Refused { reason } => return Err(NetError::Refused { peer, reason }),
            other => return Err(unexpected(peer, &other)),
        }
    }
    Ok(accepted)
}

/// Sends this node's own audit events for the record that the peer has not had yet.
async fn push_audit(
    handle: &NodeHandle,
    peer: PeerId,
    addrs: &[Multiaddr],
    record: RecordId,
) -> Result<(), NetError> {
    let marker = format!("audit-pushed/{record}/{peer}");
    let store = handle.store();
    let done: u64 = store
        .meta(&marker)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    let have: HashMap<_, _> = [(store.node_id(), done)].into_iter().collect();
    let mine: Vec<SignedAudit> = store
        .audit_beyond(&record, &have, MAX_BATCH)?
        .into_iter()
        .filter(|a| a.event.node == store.node_id())
        .collect();
    let Some(last) = mine.iter().map(|a| a.event.seq).max() else {
        return Ok(());
    };
    let events = mine
        .iter()
        .map(|a| serde_bytes::ByteBuf::from(a.bytes().to_vec()))
        .collect();
    match handle
        .request(
            peer,
            addrs.to_vec(),
            Request::AuditPush {
                proof: proof(handle, &peer, record),
                events,
            },
        )
        .await?
    {
        Response::Ack => store.set_meta(&marker, &last.to_be_bytes())?,
        Response::Refused { reason } => return Err(NetError::Refused { peer, reason }),
        other => return Err(unexpected(peer, &other)),
    }
    Ok(())
}

/// Fetches audit events the peer holds beyond ours, if we may read the audit trail.
async fn pull_audit(
    handle: &NodeHandle,
    peer: PeerId,
    addrs: &[Multiaddr],
    record: RecordId,
    report: &mut SyncReport,
) -> Result<usize, NetError> {
    let store = handle.store();
    let me = handle.identity().actor();
    if !store.holds(&record)?
        || !store.with_record(&record, |r| r.viewer(&me, now_ms()).may_audit())?
    {
        return Ok(0);
    }
    let mut have: HashMap<cophr_protocol::ActorId, u64> = HashMap::new();
    for a in store.audit_events(&record)? {
        let e = have.entry(a.event.node).or_default();
        *e = (*e).max(a.event.seq);
    }
    report.round_trips += 1;
    let events = match handle
        .request(
            peer,
            addrs.to_vec(),
            Request::AuditPull {
                proof: proof(handle, &peer, record),
                have: have.into_iter().collect(),
            },
        )
        .await?
    {
        Response::AuditEvents { events } => events,
        Response::Refused { reason } => return Err(NetError::Refused { peer, reason }),
        other => return Err(unexpected(peer, &other)),
    };
    let mut decoded = Vec::new();
    for e in &events {
        match SignedAudit::decode(e) {
            Ok(a) if a.event.record == record => decoded.push(a),
            _ => {
                return Err(NetError::Protocol {
                    peer,
                    reason: "bad audit event".into(),
                });
            }
        }
    }
    Ok(store.keep_audit(&decoded)?)
}

/// The latest home pointer this store holds for a record (set when hosting or moving).
fn pointer_seq(handle: &NodeHandle, record: &RecordId) -> Result<u64, NetError> {
    Ok(handle
        .store()
        .meta(&format!("pointer/{record}"))?
        .and_then(|b| cophr_protocol::home::SignedPointer::decode(&b, record).ok())
        .map_or(0, |p| p.pointer.seq))
}

fn split(addr: &Multiaddr) -> Result<(PeerId, Multiaddr), NetError> {
    let peer = super::service::peer_of(addr)
        .ok_or_else(|| NetError::Setup(format!("{addr} does not end in /p2p/<peer id>")))?;
    let bare: Multiaddr = addr
        .iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect();
    Ok((peer, bare))
}

/// The patient makes `host` (an address ending in `/p2p/<peer id>`) the record's home:
/// pushes the whole record, checks the host holds all of it, signs a home pointer with
/// the next sequence number, asks the host to publish it, and records the host as home in
/// the peer book. Only the patient's node can do this (it signs with the patient's key).
pub async fn host(
    handle: &NodeHandle,
    host: &Multiaddr,
    record: RecordId,
) -> Result<SyncReport, NetError> {
    if handle.identity().actor() != record {
        return Err(NetError::Setup(
            "only the patient can choose the record's home host".into(),
        ));
    }
    let (peer, bare) = split(host)?;
    let report = sync(handle, peer, vec![host.clone()], record, true).await?;
    // The host must now hold everything this node holds.
    let check = sync(handle, peer, vec![host.clone()], record, true).await?;
    if check.pushed > 0 || !check.rejected.is_empty() {
        return Err(NetError::Protocol {
            peer,
            reason: format!(
                "the host did not take the whole record: {:?}",
                check.rejected
            ),
        });
    }
    let pointer = cophr_protocol::home::HomePointer {
        record,
        host: peer.to_bytes(),
        addrs: vec![bare.to_string()],
        seq: pointer_seq(handle, &record)? + 1,
        time: now_ms(),
    }
    .sign(handle.identity());
    let bytes = pointer.encode();
    match handle
        .request(
            peer,
            vec![host.clone()],
            Request::Host {
                proof: proof(handle, &peer, record),
                pointer: serde_bytes::ByteBuf::from(bytes.clone()),
            },
        )
        .await?
    {
        Response::Ack => {}
        Response::Refused { reason } => return Err(NetError::Refused { peer, reason }),
        other => return Err(unexpected(peer, &other)),
    }
    handle
        .store()
        .set_meta(&format!("pointer/{record}"), &bytes)?;
    let mut book = handle.peer_book(&record)?;
    book.home = Some(host.clone());
    handle.set_peer_book(&record, &book)?;
    handle.publish_home(pointer).await?;
    Ok(report)
}

/// The patient moves the record from its current home host to `to`: the new host takes
/// and confirms the whole record, the patient signs a move-home entry (replicas follow
/// it) and a new pointer, and only then is the old host told to delete its copy.
pub async fn move_home(
    handle: &NodeHandle,
    to: &Multiaddr,
    record: RecordId,
) -> Result<(), NetError> {
    let old = handle.peer_book(&record)?.home;
    host(handle, to, record).await?;
    let (peer, bare) = split(to)?;
    let me = handle.identity().clone();
    handle.store().write(
        &record,
        &me,
        cophr_protocol::Payload::MoveHome {
            host: peer.to_bytes(),
            addrs: vec![bare.to_string()],
        },
        now_ms(),
        None,
    )?;
    // The move entry reaches the new host (and through it every replica).
    sync(handle, peer, vec![to.clone()], record, true).await?;
    if let Some(old) = old.filter(|o| o != to) {
        let (old_peer, _) = split(&old)?;
        match handle
            .request(
                old_peer,
                vec![old.clone()],
                Request::Release {
                    proof: proof(handle, &old_peer, record),
                },
            )
            .await
        {
            Ok(Response::Ack) => {}
            Ok(Response::Refused { reason }) => {
                tracing::warn!(%reason, "the old host refused to release the record")
            }
            Ok(other) => return Err(unexpected(old_peer, &other)),
            Err(e) => {
                tracing::warn!(error = %e, "the old host could not be told to release the record")
            }
        }
    }
    Ok(())
}

/// Follows a move: if the record holds a move-home entry naming another host than the
/// peer book's, the newest one becomes home. Returns whether the book changed.
pub fn follow_moves(handle: &NodeHandle, record: &RecordId) -> Result<bool, NetError> {
    // Moves are the patient's, in the administrative stream: only that chain is read, not
    // the whole record (this runs after every pull that brought something new).
    let latest = handle.store().with_record(record, |r| {
        r.author_chain(record, &None)
            .iter()
            .filter_map(|id| r.get(id))
            .filter_map(|e| match &e.entry().payload {
                cophr_protocol::Payload::MoveHome { host, addrs } => {
                    Some((e.entry().time, host.clone(), addrs.clone()))
                }
                _ => None,
            })
            .max_by_key(|(t, _, _)| *t)
    })?;
    let Some((_, host, addrs)) = latest else {
        return Ok(false);
    };
    let Ok(peer) = PeerId::from_bytes(&host) else {
        return Ok(false);
    };
    let Some(addr) = addrs.first().and_then(|a| a.parse::<Multiaddr>().ok()) else {
        return Ok(false);
    };
    let addr = addr.with(libp2p::multiaddr::Protocol::P2p(peer));
    let mut book = handle.peer_book(record)?;
    if book.home.as_ref() == Some(&addr) {
        return Ok(false);
    }
    book.home = Some(addr.clone());
    book.replicas.retain(|r| r != &addr);
    handle.set_peer_book(record, &book)?;
    Ok(true)
}

/// Finds a record's home host through the DHT, checks the patient's signature, and
/// records it in the peer book.
pub async fn follow(handle: &NodeHandle, record: RecordId) -> Result<Multiaddr, NetError> {
    let p = handle.find_home(record).await?;
    let peer = PeerId::from_bytes(&p.pointer.host).map_err(|_| NetError::NotFound(record))?;
    let book = handle.peer_book(&record)?;
    if let Some(current) = book
        .home
        .as_ref()
        .filter(|h| super::service::peer_of(h) == Some(peer))
    {
        // Same host: keep the address we know works rather than an older published one.
        return Ok(current.clone());
    }
    let addr = p
        .pointer
        .addrs
        .first()
        .and_then(|a| a.parse::<Multiaddr>().ok())
        .ok_or(NetError::NotFound(record))?
        .with(libp2p::multiaddr::Protocol::P2p(peer));
    let mut book = book;
    book.home = Some(addr.clone());
    handle.set_peer_book(&record, &book)?;
    Ok(addr)
}
