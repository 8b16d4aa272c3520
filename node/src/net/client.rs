//! Replicating as a client: ask a peer what differs, pull what this node may see and
//! lacks, push what the peer lacks (to the home host only), and exchange audit events.

use std::collections::HashMap;

use libp2p::{Multiaddr, PeerId};
use rand_core::{OsRng, RngCore};

use cophr_protocol::audit::SignedAudit;
use cophr_protocol::home::SignedPointer;
use cophr_protocol::record::Record;
use cophr_protocol::recovery::Recovery;
use cophr_protocol::sync::client::{ClientEvent, ClientSession, SessionConfig, SyncError};
use cophr_protocol::sync::{Proof, Refusal, Request, Response, MAX_BATCH};
use cophr_protocol::{ActorId, EntryId, RecordId, Timestamp};

use super::service::{now_ms, NodeHandle};
use super::NetError;
use crate::store::blobs::{BlobError, SliceFault};
use crate::store::{Store, StoreError};

pub use cophr_protocol::sync::client::SyncReport;

fn nonce() -> [u8; 16] {
    let mut nonce = [0u8; 16];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

fn proof(handle: &NodeHandle, peer: &PeerId, record: RecordId) -> Proof {
    Proof::new(
        handle.identity(),
        record,
        &handle.peer_id().to_bytes(),
        &peer.to_bytes(),
        nonce(),
        now_ms(),
    )
    .with_attestations(handle.attestations())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, NetError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NetError::Setup(format!("blocking task failed: {e}")))
}

/// Runs `f` on the record as held here (`None` when it is not).
fn with_local<T>(
    store: &Store,
    record: &RecordId,
    f: impl FnOnce(Option<&Record>) -> T,
) -> Result<T, NetError> {
    if store.holds(record)? {
        Ok(store.with_record(record, |r| f(Some(r)))?)
    } else {
        Ok(f(None))
    }
}

/// The marker remembering which of this node's audit events a peer already has.
fn audit_marker(record: &RecordId, peer: &PeerId) -> String {
    format!("audit-pushed/{record}/{peer}")
}

/// This node's own audit events for the record that `peer` has not had yet.
fn audit_to_push(
    store: &Store,
    record: &RecordId,
    peer: &PeerId,
) -> Result<Option<(Vec<serde_bytes::ByteBuf>, u64)>, NetError> {
    let done: u64 = store
        .meta(&audit_marker(record, peer))?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0);
    let have: HashMap<_, _> = [(store.node_id(), done)].into_iter().collect();
    let mine: Vec<SignedAudit> = store
        .audit_beyond(record, &have, MAX_BATCH)?
        .into_iter()
        .filter(|a| a.event.node == store.node_id())
        .collect();
    let Some(last) = mine.iter().map(|a| a.event.seq).max() else {
        return Ok(None);
    };
    Ok(Some((
        mine.iter()
            .map(|a| serde_bytes::ByteBuf::from(a.bytes().to_vec()))
            .collect(),
        last,
    )))
}

/// For each node, the highest audit sequence held here for the record, when `me` may read
/// the audit trail (otherwise the trail is never asked for, and not read here).
fn audit_have(
    store: &Store,
    record: &RecordId,
    me: &ActorId,
) -> Result<Vec<(ActorId, u64)>, NetError> {
    let mut have: HashMap<ActorId, u64> = HashMap::new();
    let may = store.holds(record)?
        && store.with_record(record, |r| r.viewer(me, now_ms()).may_audit())?;
    if may {
        for a in store.audit_events(record)? {
            let e = have.entry(a.event.node).or_default();
            *e = (*e).max(a.event.seq);
        }
    }
    Ok(have.into_iter().collect())
}

fn refused(peer: PeerId, e: SyncError) -> NetError {
    match e {
        SyncError::Refused { code, reason } => NetError::Refused { peer, code, reason },
        SyncError::Transport(reason) => NetError::Request { peer, reason },
        SyncError::Protocol(reason) | SyncError::BadEntries(reason) => {
            NetError::Protocol { peer, reason }
        }
        SyncError::Store(reason) => NetError::Setup(reason),
    }
}

/// Syncs `record` with `peer`: pull, then (if `push`) push back what it lacks and this
/// node's audit events, then fetch the audit trail if this identity may read it. Drives
/// `cophr_protocol::sync::client::ClientSession`, the same state machine the simulation
/// drives.
pub async fn sync(
    handle: &NodeHandle,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    record: RecordId,
    push: bool,
) -> Result<SyncReport, NetError> {
    let push = if push { Push::Back } else { Push::No };
    run_sync(handle, peer, addrs, record, push, None).await
}

/// What a sync sends back to the peer.
#[derive(Debug, Clone, Copy)]
enum Push<'a> {
    /// Nothing: it only pulls.
    No,
    /// What the peer lacks (to the record's home host).
    Back,
    /// The whole record, asking the peer to start hosting it, with the host's invitation
    /// if it takes records by invitation only.
    Host { invitation: Option<&'a str> },
}

/// [`sync`], presenting a host's invitation with the pushes, or guardians' approvals of
/// a rotation to this node's identity with every request.
async fn run_sync(
    handle: &NodeHandle,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    record: RecordId,
    push: Push<'_>,
    recovery: Option<Recovery>,
) -> Result<SyncReport, NetError> {
    let store = handle.store().clone();
    let mut cfg = SessionConfig::new(record, handle.peer_id().to_bytes(), peer.to_bytes());
    cfg.attestations = handle.attestations();
    cfg.push = !matches!(push, Push::No);
    if let Push::Host { invitation } = push {
        cfg.host = true;
        cfg.invitation = invitation.map(str::to_owned);
    }
    cfg.recovery = recovery;
    cfg.membership = membership_to_present(&store, &record)?;
    if cfg.push {
        cfg.audit_to_push = audit_to_push(&store, &record, &peer)?;
    }
    cfg.audit_have = audit_have(&store, &record, &handle.identity().actor())?;
    let mut session = ClientSession::new(handle.identity().clone(), cfg);
    loop {
        while let Some(event) = session.poll_event() {
            match event {
                ClientEvent::Received(entries) => {
                    // Decoded first (on the verify threads), so that the next batch is asked
                    // for, from the frontier this one will leave, while this one is verified
                    // and stored: the peer prepares it meanwhile. At most that one is asked
                    // ahead; every entry is verified before it is stored, batches are stored
                    // in order, and a batch refused stops the sync (its successor unread).
                    let entries: Vec<Vec<u8>> = entries
                        .into_iter()
                        .map(serde_bytes::ByteBuf::into_vec)
                        .collect();
                    let decoded = blocking(move || super::verify::decode_all(entries)).await?;
                    let decoded = match decoded {
                        Ok(d) => d,
                        Err((i, e)) => {
                            let bad = Err(SyncError::BadEntries(format!("entry {i}: {e}")));
                            with_local(&store, &record, |r| session.handle_stored(bad, r))?;
                            continue;
                        }
                    };
                    let ahead = with_local(&store, &record, |r| {
                        session.poll_ahead(&decoded, now_ms(), nonce(), r)
                    })?;
                    let store2 = store.clone();
                    let ingest = blocking(move || -> Result<usize, SyncError> {
                        let verified = super::verify::verify_all(decoded)
                            .map_err(|(i, e)| SyncError::BadEntries(format!("entry {i}: {e}")))?;
                        store2.ingest(&record, verified).map_err(|e| match e {
                            StoreError::Rejected(r) => SyncError::BadEntries(r.to_string()),
                            other => SyncError::Store(other.to_string()),
                        })
                    });
                    let (stored, answer) = match ahead {
                        Some(request) => {
                            let (stored, answer) =
                                tokio::join!(ingest, handle.request(peer, addrs.clone(), request));
                            (stored?, Some(answer))
                        }
                        None => (ingest.await?, None),
                    };
                    with_local(&store, &record, |r| session.handle_stored(stored, r))?;
                    match answer {
                        Some(Ok(response)) => {
                            with_local(&store, &record, |r| session.handle_response(response, r))?
                        }
                        Some(Err(e)) => session.handle_failure(e.to_string()),
                        None => {}
                    }
                }
                ClientEvent::AuditReceived(events) => {
                    let kept = store
                        .keep_audit(&events)
                        .map_err(|e| SyncError::Store(e.to_string()));
                    session.handle_audit_kept(kept);
                }
                ClientEvent::AuditPushed(last) => {
                    store.set_meta(&audit_marker(&record, &peer), &last.to_be_bytes())?;
                }
                ClientEvent::Done(result) => {
                    let report = result.map_err(|e| refused(peer, e))?;
                    if report.pulled > 0 {
                        follow_moves(handle, &record)?;
                        give_owed_keys(handle, &record).await;
                        org_duties(handle, &record).await;
                        handle.changed(record).await?;
                    }
                    // Documents the entries name that are not held yet (newly pulled, or
                    // left by an earlier fetch): a failure waits for the next sync. A
                    // replica fetching on demand leaves them until a reader asks.
                    if !fetches_eagerly(handle, &record) {
                        return Ok(report);
                    }
                    match fetch_documents(handle, peer, addrs.clone(), record).await {
                        Ok(f) if f.completed == 0 => {}
                        Ok(f) => {
                            tracing::info!(%peer, %record, documents = f.completed, "fetched documents");
                            handle.changed(record).await?;
                        }
                        Err(e) => {
                            tracing::warn!(%peer, %record, error = %e, "could not fetch documents")
                        }
                    }
                    return Ok(report);
                }
            }
        }
        let request = with_local(&store, &record, |r| {
            session.poll_request(now_ms(), nonce(), r)
        })?;
        let Some(request) = request else {
            if session.is_done() {
                continue;
            }
            return Err(NetError::Protocol {
                peer,
                reason: "the sync session stalled".into(),
            });
        };
        match handle.request(peer, addrs.clone(), request).await {
            Ok(response) => with_local(&store, &record, |r| session.handle_response(response, r))?,
            Err(e) => session.handle_failure(e.to_string()),
        }
    }
}

/// Whether this node fetches `record`'s documents after each pull: unless it fetches on
/// demand ([`crate::net::DocumentFetch`]) and is not the record's home host (a home host
/// serves them to the others).
fn fetches_eagerly(handle: &NodeHandle, record: &RecordId) -> bool {
    if handle.document_fetch() == super::DocumentFetch::Eager {
        return true;
    }
    let home = handle
        .peer_book(record)
        .ok()
        .and_then(|b| b.home)
        .and_then(|h| super::service::peer_of(&h));
    home == Some(handle.peer_id())
}

/// Slice requests kept in flight to one peer while a document is fetched: the peer reads
/// and checks the next slices while this node checks and stores the one before (each
/// slice is stored in order, one at a time). At most this many slices' bytes wait here.
pub const SLICES_IN_FLIGHT: usize = 4;

/// A slice a peer sent that failed its check against the document's hash: nothing of it
/// was stored, and the peer was left for that document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedSlice {
    /// The document.
    pub doc: cophr_protocol::blob::BlobHash,
    /// The slice's offset.
    pub offset: u64,
    /// What was wrong, and where: [`SliceFault::DataMismatch`] names the chunk group whose
    /// data does not hash as its proof says, [`SliceFault::ProofMismatch`] the first byte
    /// the failing proof node covers.
    pub fault: SliceFault,
}

/// What one [`fetch_documents`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentsFetched {
    /// Documents completed (now wholly held here).
    pub completed: usize,
    /// Bytes of slices received, checked and stored.
    pub bytes: u64,
    /// Slices refused because they failed their check.
    pub rejected: Vec<RejectedSlice>,
}

/// Fetches from `peer` the documents of `record` that entries held here name and this
/// node lacks, slice by slice: each slice is checked against the document's hash before a
/// byte of it is stored, and a fetch resumes where an earlier one stopped (the blob store
/// says which ranges are missing, after a break or a restart). [`SLICES_IN_FLIGHT`]
/// requests are kept in flight; slices are stored in order. A document the peer does not
/// hold, will not serve, or serves wrongly is left for another peer (or the next sync); a
/// slice that fails its check is reported in [`DocumentsFetched::rejected`] (and logged).
pub async fn fetch_documents(
    handle: &NodeHandle,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    record: RecordId,
) -> Result<DocumentsFetched, NetError> {
    let store = handle.store().clone();
    let wanted: Vec<cophr_protocol::blob::BlobRef> = with_local(&store, &record, |r| {
        r.map(|r| r.documents().copied().collect())
            .unwrap_or_default()
    })?;
    let mut fetched = DocumentsFetched::default();
    for doc in wanted {
        fetch_one(handle, peer, &addrs, record, doc, &mut fetched).await?;
    }
    Ok(fetched)
}

/// Fetches from `peer` the one document `doc` of `record`, resuming where an earlier fetch
/// stopped, unless it is held here whole already; adds what it did to `fetched`. A peer
/// that does not hold it, refuses it or serves a slice that fails its check leaves it
/// partly fetched (`Ok`); a request that fails is an error.
async fn fetch_one(
    handle: &NodeHandle,
    peer: PeerId,
    addrs: &[Multiaddr],
    record: RecordId,
    doc: cophr_protocol::blob::BlobRef,
    fetched: &mut DocumentsFetched,
) -> Result<(), NetError> {
    let store = handle.store().clone();
    if store.has_document(&doc) {
        return Ok(());
    }
    let counted = fetched.bytes;
    let mut present = None;
    // Rounds: each asks for every range missing; another round only if the last one
    // stored something and left ranges missing (a peer may send shorter slices).
    loop {
        let s = store.clone();
        let missing = match blocking(move || s.document_missing(&doc)).await? {
            Ok(m) => m,
            Err(e) => {
                // Over the limit on documents being received, say: the next sync retries.
                tracing::debug!(%record, hash = %doc.hash, error = %e, "document not fetched now");
                break;
            }
        };
        let left: u64 = missing.iter().map(|r| r.end - r.start).sum();
        present.get_or_insert(doc.size - left);
        if missing.is_empty() {
            break;
        }
        let before = fetched.bytes;
        let round = fetch_ranges(handle, peer, addrs, record, doc, missing, fetched).await;
        // Whatever stopped the round, what it stored is made durable now.
        let s = store.clone();
        if let Err(e) = blocking(move || s.flush_document(&doc)).await? {
            tracing::warn!(%record, hash = %doc.hash, error = %e, "could not make a document's slices durable");
            break;
        }
        let go_on = round?;
        if !go_on || fetched.bytes == before {
            break;
        }
    }
    if store.has_document(&doc) {
        fetched.completed += 1;
        tracing::info!(
            %peer,
            %record,
            hash = %doc.hash,
            size = doc.size,
            fetched = fetched.bytes - counted,
            held_before = present.unwrap_or(0),
            "document fetched"
        );
    } else if fetched.bytes > counted {
        tracing::info!(
            %peer,
            %record,
            hash = %doc.hash,
            size = doc.size,
            fetched = fetched.bytes - counted,
            held_before = present.unwrap_or(0),
            "document partly fetched"
        );
    }
    Ok(())
}

/// Fetches one document of `record` on demand, for a reader asking for it on a node that
/// lacks it (a replica under [`crate::net::DocumentFetch::OnDemand`], or one whose eager
/// fetch has not run yet): from the record's peers in its peer book, home host first, then
/// the other replicas and the peers learned, until one has given it whole. Each slice is
/// checked against the document's hash before it is stored, and the fetch resumes where an
/// earlier one stopped. Two readers asking for the same document at once make one fetch
/// (the second waits for the first). `Ok` once the document is held here whole; the
/// entries naming `doc` are the caller's to have checked (the peers check again that this
/// node may see it).
pub async fn fetch_document(
    handle: &NodeHandle,
    record: RecordId,
    doc: cophr_protocol::blob::BlobRef,
) -> Result<DocumentsFetched, NetError> {
    let mut fetched = DocumentsFetched::default();
    let store = handle.store().clone();
    if store.has_document(&doc) {
        return Ok(fetched);
    }
    let unavailable = |reason: String| NetError::DocumentUnavailable {
        hash: doc.hash,
        reason,
    };
    let claim = handle.on_demand_lock(doc.hash).ok_or_else(|| {
        unavailable(format!(
            "{} other documents are being fetched; try again shortly",
            super::service::MAX_ON_DEMAND
        ))
    })?;
    let _turn = claim.lock.lock().await;
    if store.has_document(&doc) {
        // Fetched by the reader before this one.
        return Ok(fetched);
    }
    let book = handle.peer_book(&record)?;
    let me = handle.peer_id();
    let mut peers: Vec<(PeerId, Multiaddr)> = Vec::new();
    for addr in book.home.iter().chain(book.fallbacks().iter()) {
        if let Some(peer) = super::service::peer_of(addr) {
            if peer != me && !peers.iter().any(|(p, _)| *p == peer) {
                peers.push((peer, addr.clone()));
            }
        }
    }
    if peers.is_empty() {
        return Err(unavailable(format!(
            "no peer of record {record} is known here (`cophr follow` or `cophr peers add`)"
        )));
    }
    let mut why = Vec::new();
    for (peer, addr) in peers {
        let before = (fetched.bytes, fetched.rejected.len());
        match fetch_one(handle, peer, &[addr], record, doc, &mut fetched).await {
            Ok(()) if store.has_document(&doc) => return Ok(fetched),
            Ok(()) if fetched.rejected.len() > before.1 => {
                why.push(format!("{peer} sent a slice that failed its check"))
            }
            Ok(()) if fetched.bytes > before.0 => why.push(format!("{peer} gave part of it")),
            Ok(()) => why.push(format!("{peer} does not hold it or may not give it")),
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(unavailable(why.join("; ")))
}

/// Fetches the byte ranges `missing` of `doc` from `peer`, [`SLICES_IN_FLIGHT`] slices at a
/// time, storing each in order. Returns whether the peer may be asked again (it served
/// every slice asked, without a refusal or a slice that failed its check).
async fn fetch_ranges(
    handle: &NodeHandle,
    peer: PeerId,
    addrs: &[Multiaddr],
    record: RecordId,
    doc: cophr_protocol::blob::BlobRef,
    missing: Vec<std::ops::Range<u64>>,
    fetched: &mut DocumentsFetched,
) -> Result<bool, NetError> {
    use crate::store::blobs::MAX_SLICE_DATA;
    use futures::stream::{FuturesOrdered, StreamExt};
    let store = handle.store().clone();
    let mut slices = missing.into_iter().flat_map(|range| {
        (range.start..range.end)
            .step_by(MAX_SLICE_DATA as usize)
            .map(move |at| (at, (range.end - at).min(MAX_SLICE_DATA)))
    });
    let mut in_flight = FuturesOrdered::new();
    loop {
        while in_flight.len() < SLICES_IN_FLIGHT {
            let Some((at, len)) = slices.next() else {
                break;
            };
            let request = Request::Document {
                proof: proof(handle, &peer, record),
                doc,
                offset: at,
                len,
            };
            let (handle, addrs) = (handle.clone(), addrs.to_vec());
            in_flight.push_back(async move { (at, handle.request(peer, addrs, request).await) });
        }
        // Dropping what is still in flight (on leaving) abandons those requests.
        let Some((at, answer)) = in_flight.next().await else {
            return Ok(true);
        };
        match answer? {
            Response::DocumentSlice { offset, len, slice } if offset == at && len > 0 => {
                let s = store.clone();
                let kept =
                    blocking(move || s.receive_document_slice(&doc, offset, len, slice.into_vec()))
                        .await?;
                match kept {
                    Ok(_) => fetched.bytes += len,
                    Err(StoreError::Blob(BlobError::SliceRejected { offset, fault, .. })) => {
                        tracing::warn!(%peer, %record, hash = %doc.hash, offset, %fault, "a document slice failed its check; the peer is left for this document");
                        fetched.rejected.push(RejectedSlice {
                            doc: doc.hash,
                            offset,
                            fault,
                        });
                        return Ok(false);
                    }
                    Err(e) => {
                        tracing::warn!(%peer, %record, hash = %doc.hash, error = %e, "a document slice was not stored");
                        return Ok(false);
                    }
                }
            }
            Response::Refused { .. } => return Ok(false),
            other => return Err(unexpected(peer, &other)),
        }
    }
}

/// After pulling, gives the epoch keys this node holds to whoever should hold them all and
/// lacks some (a recovered patient key, a device, a guardian: [`Store::give_owed_keys`]);
/// the next push takes them to the home host. A failure is logged, not fatal: the pull
/// stands, and the next one tries again.
async fn give_owed_keys(handle: &NodeHandle, record: &RecordId) {
    let store = handle.store().clone();
    let key = handle.identity().clone();
    let record = *record;
    let given = blocking(move || store.give_owed_keys(&record, &key, now_ms(), None)).await;
    match given {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::info!(%record, entries = n, "gave epoch keys owed"),
        Ok(Err(e)) => tracing::warn!(%record, error = %e, "could not give epoch keys owed"),
        Err(e) => tracing::warn!(%record, error = %e, "could not give epoch keys owed"),
    }
}

/// The membership proof to present when syncing `record` (an organisation's member who
/// has not joined it yet pulls with it, [`cophr_protocol::org`]): the one whose
/// organisation holds a grant in the record as held here, else the first kept.
fn membership_to_present(
    store: &Store,
    record: &RecordId,
) -> Result<Vec<serde_bytes::ByteBuf>, NetError> {
    let proofs = store.memberships()?;
    if proofs.is_empty() {
        return Ok(Vec::new());
    }
    let chosen = if store.holds(record)? {
        store.with_record(record, |r| {
            cophr_protocol::record::Record::proof_to_present(Some(r), &proofs).cloned()
        })?
    } else {
        cophr_protocol::record::Record::proof_to_present(None, &proofs).cloned()
    };
    Ok(chosen.unwrap_or_default())
}

/// After pulling, an organisation's node writes the removals its own record made and gives
/// its members the keys it holds ([`Store::org_duties`]); a member's node joins the record
/// under its organisation's grant if it has not yet (the next push takes either to the
/// home host). A failure is logged, not fatal: the pull stands, the next one tries again.
async fn org_duties(handle: &NodeHandle, record: &RecordId) {
    let store = handle.store().clone();
    let key = handle.identity().clone();
    let record = *record;
    let done = blocking(move || -> Result<(usize, usize, bool), StoreError> {
        if record == key.actor() {
            // The organisation's own record changed (another administrator removed a
            // member, say): every record it holds gets the removals now, not only when
            // that record next changes.
            let (mut keys, mut removed) = (0, 0);
            for r in store.records()? {
                let d = store.org_duties(&r, &key, now_ms())?;
                keys += d.keys_given;
                removed += d.removed.len();
            }
            return Ok((keys, removed, false));
        }
        let d = store.org_duties(&record, &key, now_ms())?;
        let proofs = store.memberships()?;
        let mut joined = false;
        if !proofs.is_empty() {
            let proof = store.with_record(&record, |r| r.join_needed(&key.actor(), &proofs))?;
            if let Some(proof) = proof {
                let join = cophr_protocol::Payload::JoinOrg { proof };
                store.write(&record, &key, join, now_ms(), None)?;
                joined = true;
            }
        }
        Ok((d.keys_given, d.removed.len(), joined))
    })
    .await;
    match done {
        Ok(Ok((0, 0, false))) => {}
        Ok(Ok((keys, removed, joined))) => {
            tracing::info!(%record, keys, removed, joined, "organisation duties done")
        }
        Ok(Err(e)) => tracing::warn!(%record, error = %e, "organisation duties failed"),
        Err(e) => tracing::warn!(%record, error = %e, "organisation duties failed"),
    }
}

fn unexpected(peer: PeerId, r: &Response) -> NetError {
    NetError::Protocol {
        peer,
        reason: format!("unexpected {} response", r.kind()),
    }
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

/// What a recovery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverReport {
    /// Entries received from the host.
    pub pulled: usize,
    /// The rotation entry (this node's identity is the patient from it on).
    pub rotation: EntryId,
    /// Entries the host accepted (the rotation and its parts).
    pub pushed: usize,
}

/// Recovers `record` onto this node's identity, a new key, with guardians' approvals
/// (`recovery`) of a rotation to it: makes `host` (the record's home, an address ending in
/// `/p2p/<peer id>`) the record's home in the peer book, pulls the whole record presenting
/// the approvals (the host serves it only if the record would accept the rotation), writes
/// the rotation (and its part in each stream the old key wrote in), and pushes it. From
/// then on this identity is the patient: every grant and replica keeps working, and the
/// old key writes nothing anyone accepts. A refusal stores nothing new (what was pulled
/// stays, as any replica's would).
pub async fn recover(
    handle: &NodeHandle,
    host: &Multiaddr,
    record: RecordId,
    recovery: Recovery,
    now: Timestamp,
) -> Result<RecoverReport, NetError> {
    let me = handle.identity().actor();
    if let Some(true) = with_local(handle.store(), &record, |r| r.map(|r| r.is_patient(&me)))? {
        return Err(NetError::Setup(format!(
            "{me} already acts as the patient of record {record}: nothing to recover"
        )));
    }
    let (peer, _) = split(host)?;
    let before = handle.peer_book(&record)?;
    let mut book = before.clone();
    book.replicas.retain(|r| r != host);
    book.home = Some(host.clone());
    handle.set_peer_book(&record, &book)?;
    let pulled = match run_sync(
        handle,
        peer,
        vec![host.clone()],
        record,
        Push::No,
        Some(recovery.clone()),
    )
    .await
    {
        Ok(r) => r.pulled,
        Err(e) => {
            // Refused (too few approvals, say): forget the host, so the node does not keep
            // syncing a record it may not see.
            handle.set_peer_book(&record, &before)?;
            return Err(e);
        }
    };
    let store = handle.store().clone();
    let key = handle.identity().clone();
    let payload = recovery.payload();
    let rotation = blocking(move || store.write(&record, &key, payload, now, None)).await??;
    let report = run_sync(
        handle,
        peer,
        vec![host.clone()],
        record,
        Push::Back,
        Some(recovery),
    )
    .await?;
    if !report.rejected.is_empty() {
        return Err(NetError::Protocol {
            peer,
            reason: format!("the host refused the rotation: {:?}", report.rejected),
        });
    }
    Ok(RecoverReport {
        pulled,
        rotation,
        pushed: report.pushed,
    })
}

/// The patient makes `host` (an address ending in `/p2p/<peer id>`) the record's home
/// (presenting `invitation` to a host that takes records by invitation only):
/// pushes the whole record, checks the host holds all of it, signs a home pointer with
/// the next sequence number, asks the host to publish it, and records the host as home in
/// the peer book. Only the patient's node can do this (it signs with the patient's key).
pub async fn host(
    handle: &NodeHandle,
    host: &Multiaddr,
    record: RecordId,
    invitation: Option<&str>,
) -> Result<SyncReport, NetError> {
    if handle.identity().actor() != record {
        return Err(NetError::Setup(
            "only the patient can choose the record's home host".into(),
        ));
    }
    let (peer, bare) = split(host)?;
    let report = run_sync(
        handle,
        peer,
        vec![host.clone()],
        record,
        Push::Host { invitation },
        None,
    )
    .await?;
    // The host must now hold everything this node holds (at least up to these heads).
    let heads = handle.store().with_record(&record, |r| r.heads())?;
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
        heads: if heads.len() <= cophr_protocol::home::MAX_HEADS {
            heads
        } else {
            Vec::new()
        },
    }
    .sign(handle.identity());
    let bytes = pointer.encode();
    let named = match handle
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
        Response::Ack => None,
        Response::Hosting { host } => Some(host),
        Response::Refused { code, reason } => return Err(NetError::Refused { peer, code, reason }),
        other => return Err(unexpected(peer, &other)),
    };
    handle
        .store()
        .set_meta(&format!("pointer/{record}"), &bytes)?;
    let mut book = handle.peer_book(&record)?;
    book.home = Some(host.clone());
    handle.set_peer_book(&record, &book)?;
    handle.publish_home(pointer).await?;
    if let Some(actor) = named {
        if name_relay(handle, record, actor, &peer)? {
            sync(handle, peer, vec![host.clone()], record, true).await?;
        }
    }
    Ok(report)
}

/// The label of the `relay` grant naming a record's home host.
fn relay_label(peer: &PeerId) -> String {
    format!("home host {peer}")
}

/// Names the home host (its node's identity `actor`, at transport identity `peer`) in a
/// `relay` grant on every category: it stores, verifies and serves the record, and is
/// given no key, so it reads nothing. Skipped when the host already holds a grant (the
/// patient gave it more, or named it before) or is the patient's own identity. Returns
/// whether a grant was written.
fn name_relay(
    handle: &NodeHandle,
    record: RecordId,
    actor: ActorId,
    peer: &PeerId,
) -> Result<bool, NetError> {
    let me = handle.identity().clone();
    if actor == me.actor() || actor == record {
        return Ok(false);
    }
    if !handle
        .store()
        .with_record(&record, |r| r.grants_of(&actor).is_empty())?
    {
        return Ok(false);
    }
    handle.store().write(
        &record,
        &me,
        cophr_protocol::Payload::Grant(cophr_protocol::Grant {
            grantee: actor,
            level: cophr_protocol::Level::Relay,
            scope: cophr_protocol::Scope::All,
            not_before: None,
            until: None,
            audit: false,
            delegate: false,
            label: Some(relay_label(peer)),
            requires: None,
        }),
        now_ms(),
        None,
    )?;
    Ok(true)
}

/// Revokes the `relay` grants naming a former home host (by [`relay_label`]): after a
/// move it may no longer pull the record. Returns how many were revoked.
fn unname_relay(handle: &NodeHandle, record: RecordId, peer: &PeerId) -> Result<usize, NetError> {
    let label = relay_label(peer);
    let grants: Vec<EntryId> = handle.store().with_record(&record, |r| {
        r.grants()
            .filter(|g| {
                g.grant.level == cophr_protocol::Level::Relay
                    && g.grant.label.as_deref() == Some(label.as_str())
                    && r.grants_of(&g.grant.grantee).contains(&g.id)
            })
            .map(|g| g.id)
            .collect()
    })?;
    let me = handle.identity().clone();
    for grant in &grants {
        handle.store().write(
            &record,
            &me,
            cophr_protocol::Payload::Revoke {
                grant: *grant,
                category: None,
                reason: "the record moved to another host".into(),
            },
            now_ms(),
            None,
        )?;
    }
    Ok(grants.len())
}

/// What a move did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// The former home host, if there was one.
    pub from: Option<Multiaddr>,
    /// Whether the former host confirmed it deleted its copy. When not (it was offline or
    /// failed), the release is pending: the node retries it until the host confirms
    /// ([`pending_releases`]), and a former host that comes back and finds the newer
    /// pointer deletes its copy by itself once the new host is known to hold everything.
    pub released: bool,
}

/// Moves and retries of releases, one at a time in a node: a release retried while a move
/// makes its host home again would delete the new home's copy.
static MOVING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether two addresses name the same peer (each ends in `/p2p/<peer id>`).
fn same_host(a: &Multiaddr, b: &Multiaddr) -> bool {
    let a = super::service::peer_of(a);
    a.is_some() && a == super::service::peer_of(b)
}

/// The meta key of the releases still to be confirmed.
const RELEASES: &str = "releases";
/// Most pending releases remembered.
const MAX_RELEASES: usize = 1024;

/// Former home hosts that have not yet confirmed deleting a record: (record, host).
pub fn pending_releases(store: &Store) -> Result<Vec<(RecordId, Multiaddr)>, NetError> {
    let Some(bytes) = store.meta(RELEASES)? else {
        return Ok(Vec::new());
    };
    let list: Vec<(RecordId, String)> = serde_json::from_slice(&bytes).unwrap_or_default();
    Ok(list
        .into_iter()
        .filter_map(|(r, a)| a.parse().ok().map(|a| (r, a)))
        .collect())
}

fn set_pending_releases(store: &Store, list: &[(RecordId, Multiaddr)]) -> Result<(), NetError> {
    let list: Vec<(RecordId, String)> = list
        .iter()
        .take(MAX_RELEASES)
        .map(|(r, a)| (*r, a.to_string()))
        .collect();
    let bytes = serde_json::to_vec(&list).map_err(|e| NetError::Setup(e.to_string()))?;
    Ok(store.set_meta(RELEASES, &bytes)?)
}

/// Asks `old` to delete its copy of the patient's record. `Ok(true)` once it confirms (or
/// answers that it holds no such record: nothing is left to delete). Any refusal, "no
/// access" among them (the request was not the patient's), is an error: the release
/// stays pending.
pub async fn release(
    handle: &NodeHandle,
    old: &Multiaddr,
    record: RecordId,
) -> Result<bool, NetError> {
    let (old_peer, _) = split(old)?;
    match handle
        .request(
            old_peer,
            vec![old.clone()],
            Request::Release {
                proof: proof(handle, &old_peer, record),
            },
        )
        .await?
    {
        Response::Ack => {
            tracing::info!(%record, host = %old_peer, "the former host deleted its copy");
            Ok(true)
        }
        Response::Refused {
            code: Refusal::NotHeld,
            ..
        } => {
            tracing::info!(%record, host = %old_peer, "the former host holds no copy to delete");
            Ok(true)
        }
        Response::Refused { code, reason } => Err(NetError::Refused {
            peer: old_peer,
            code,
            reason,
        }),
        other => Err(unexpected(old_peer, &other)),
    }
}

/// Retries every pending release once; those confirmed are dropped from the list. Returns
/// how many remain.
pub async fn retry_releases(handle: &NodeHandle) -> Result<usize, NetError> {
    let _one = MOVING.lock().await;
    let pending = pending_releases(handle.store())?;
    if pending.is_empty() {
        return Ok(0);
    }
    let mut confirmed = Vec::new();
    for (record, old) in pending {
        // A host the record has since moved back to is its home, not a former host.
        let home = handle.peer_book(&record)?.home;
        if home.as_ref().is_some_and(|h| same_host(h, &old)) {
            confirmed.push((record, old));
            continue;
        }
        if let Ok(true) = release(handle, &old, record).await {
            confirmed.push((record, old));
        }
    }
    // Releases added meanwhile stay.
    let mut left = pending_releases(handle.store())?;
    left.retain(|p| !confirmed.contains(p));
    set_pending_releases(handle.store(), &left)?;
    Ok(left.len())
}

/// The patient moves the record from its current home host to `to`: the new host takes
/// and confirms the whole record, the patient signs a move-home entry (replicas follow
/// it) and a new pointer, and only then is the old host told to delete its copy. When the
/// old host cannot be reached the release stays pending (see [`Moved`]).
pub async fn move_home(
    handle: &NodeHandle,
    to: &Multiaddr,
    record: RecordId,
    invitation: Option<&str>,
) -> Result<Moved, NetError> {
    let _one = MOVING.lock().await;
    // A release of `to` still pending from an earlier move away from it must not reach it
    // once it is home again.
    let mut pending = pending_releases(handle.store())?;
    let before = pending.len();
    pending.retain(|(r, a)| !(*r == record && same_host(a, to)));
    if pending.len() != before {
        set_pending_releases(handle.store(), &pending)?;
    }
    let old = handle.peer_book(&record)?.home;
    tracing::info!(%record, from = ?old.as_ref().map(|o| o.to_string()), %to, "moving the record's home");
    host(handle, to, record, invitation).await?;
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
    // The former host may no longer pull it.
    if let Some(former) = old.as_ref().filter(|o| *o != to) {
        if let Ok((old_peer, _)) = split(former) {
            if old_peer != peer {
                unname_relay(handle, record, &old_peer)?;
            }
        }
    }
    // The move entry (and any revocation) reaches the new host, and through it every
    // replica.
    sync(handle, peer, vec![to.clone()], record, true).await?;
    let Some(old) = old.filter(|o| o != to) else {
        return Ok(Moved {
            from: None,
            released: true,
        });
    };
    let released = match release(handle, &old, record).await {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(error = %e, "the old host could not be told to release the record");
            false
        }
    };
    if !released {
        let mut pending = pending_releases(handle.store())?;
        pending.retain(|(r, _)| *r != record);
        pending.push((record, old.clone()));
        set_pending_releases(handle.store(), &pending)?;
    }
    Ok(Moved {
        from: Some(old),
        released,
    })
}

/// A former home host's own check, for a record it hosts: when the DHT holds a newer
/// patient-signed pointer naming another host, and everything held here is in the causal
/// past of the heads that host confirmed holding ([`cophr_protocol::home::may_release`]),
/// the copy here is deleted. Returns whether it was.
pub async fn leave_if_moved(handle: &NodeHandle, record: RecordId) -> Result<bool, NetError> {
    let key = super::server::home_key(&record);
    let Some(ours) = handle
        .store()
        .meta(&key)?
        .and_then(|b| SignedPointer::decode(&b, &record).ok())
    else {
        return Ok(false);
    };
    let Ok(found) = handle.find_home(record).await else {
        return Ok(false);
    };
    if !found.newer_than(&ours) {
        return Ok(false);
    }
    let me = handle.peer_id().to_bytes();
    let safe = handle.store().with_record(&record, |r| {
        cophr_protocol::home::may_release(r, &found.pointer, &me)
    })?;
    if !safe {
        tracing::info!(%record, "the record moved away, but this host holds entries the new host may lack: keeping it until the patient releases it");
        return Ok(false);
    }
    // No longer published from here. Cleared first: the removal's compaction then takes
    // every frame naming the record off the disk, this one too.
    handle.store().set_meta(&key, &[])?;
    // As a release does (the one rule for both): pushes of the record still in flight
    // from before the move do not bring it back (seed 14 of the release campaign, kill
    // 303, found one that did).
    cophr_protocol::sync::server::give_up(&mut handle.store().clone(), &record)?;
    handle.forget_home(record).await?;
    tracing::info!(%record, "the record moved to another host, which holds everything held here: copy deleted");
    Ok(true)
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

/// The record's home host, as this node's peer book has it.
fn home_of(handle: &NodeHandle, record: &RecordId) -> Result<(PeerId, Multiaddr), NetError> {
    let home = handle.peer_book(record)?.home.ok_or_else(|| {
        NetError::Setup(format!(
            "record {record} has no home host yet: host it first (`cophr host ADDR`)"
        ))
    })?;
    split(&home)
}

/// Sends one request to `peer` and expects an acknowledgement.
async fn ack(
    handle: &NodeHandle,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
    request: Request,
) -> Result<(), NetError> {
    match handle.request(peer, addrs, request).await? {
        Response::Ack => Ok(()),
        Response::Refused { code, reason } => Err(NetError::Refused { peer, code, reason }),
        other => Err(unexpected(peer, &other)),
    }
}

/// The patient registers an invitation's offer with the record's home host. Returns the
/// host's address (the link names it).
pub async fn offer_invitation(
    handle: &NodeHandle,
    record: RecordId,
    offer: &cophr_protocol::invite::Offer,
) -> Result<Multiaddr, NetError> {
    let (peer, addr) = home_of(handle, &record)?;
    ack(
        handle,
        peer,
        vec![addr.clone()],
        Request::OfferInvitation {
            proof: proof(handle, &peer, record),
            offer: serde_bytes::ByteBuf::from(offer.encode()),
        },
    )
    .await?;
    Ok(addr.with(libp2p::multiaddr::Protocol::P2p(peer)))
}

/// The invitee accepts `invitation` at the host its link names, sending `acceptance`
/// (signed with the invitation key); then remembers that host as the record's home, so
/// the node replicates the record once the patient confirms.
pub async fn accept_invitation(
    handle: &NodeHandle,
    invitation: &cophr_protocol::invite::Invitation,
    acceptance: &cophr_protocol::invite::SignedAcceptance,
) -> Result<Multiaddr, NetError> {
    let peer = PeerId::from_bytes(&invitation.host)
        .map_err(|_| NetError::Setup("the invitation names an invalid host".into()))?;
    let addrs: Vec<Multiaddr> = invitation
        .addrs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .map(|a| {
            a.iter()
                .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
                .collect()
        })
        .collect();
    let first = addrs
        .first()
        .cloned()
        .ok_or_else(|| NetError::Setup("the invitation names no usable address".into()))?;
    ack(
        handle,
        peer,
        addrs,
        Request::AcceptInvitation {
            proof: proof(handle, &peer, invitation.record),
            acceptance: serde_bytes::ByteBuf::from(acceptance.encode()),
        },
    )
    .await?;
    let home = first.with(libp2p::multiaddr::Protocol::P2p(peer));
    let mut book = handle.peer_book(&invitation.record)?;
    book.home = Some(home.clone());
    handle.set_peer_book(&invitation.record, &book)?;
    await_record(handle.store(), invitation.record, invitation.expires)?;
    Ok(home)
}

/// The store key of the records this node accepted invitations to and does not hold yet.
const AWAITING: &str = "awaiting-records";
/// Most such records remembered.
pub const MAX_AWAITING: usize = 64;

/// Remembers that this node accepted an invitation to `record`: until it holds the record
/// (or `until` passes: an invitation nobody confirmed in time), the node tries to sync it
/// at every tick, so the record arrives as soon as the patient confirms.
fn await_record(store: &Store, record: RecordId, until: Timestamp) -> Result<(), NetError> {
    let mut list = awaiting(store)?;
    list.retain(|(r, _)| *r != record);
    list.push((record, until));
    if list.len() > MAX_AWAITING {
        list.remove(0);
    }
    let bytes = serde_json::to_vec(&list).map_err(|e| NetError::Setup(e.to_string()))?;
    Ok(store.set_meta(AWAITING, &bytes)?)
}

/// The records this node accepted invitations to and still waits for; drops those it now
/// holds and those whose invitation expired (keeping the list current).
pub fn awaiting_records(store: &Store, now: Timestamp) -> Result<Vec<RecordId>, NetError> {
    let list = awaiting(store)?;
    let mut keep = Vec::new();
    for (r, until) in &list {
        // A confirmed grant may come a while after the invitation expired: wait a day more.
        if !store.holds(r)? && now <= until.saturating_add(24 * 3600 * 1000) {
            keep.push((*r, *until));
        }
    }
    if keep.len() != list.len() {
        let bytes = serde_json::to_vec(&keep).map_err(|e| NetError::Setup(e.to_string()))?;
        store.set_meta(AWAITING, &bytes)?;
    }
    Ok(keep.into_iter().map(|(r, _)| r).collect())
}

fn awaiting(store: &Store) -> Result<Vec<(RecordId, Timestamp)>, NetError> {
    Ok(store
        .meta(AWAITING)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default())
}

/// The patient fetches the record's invitations from its home host.
pub async fn invitations(
    handle: &NodeHandle,
    record: RecordId,
) -> Result<cophr_protocol::invite::InvitationBox, NetError> {
    let (peer, addr) = home_of(handle, &record)?;
    match handle
        .request(
            peer,
            vec![addr],
            Request::Invitations {
                proof: proof(handle, &peer, record),
            },
        )
        .await?
    {
        Response::Invitations { invitations } => {
            cophr_protocol::invite::InvitationBox::decode(&invitations).map_err(|e| {
                NetError::Protocol {
                    peer,
                    reason: e.to_string(),
                }
            })
        }
        Response::Refused { code, reason } => Err(NetError::Refused { peer, code, reason }),
        other => Err(unexpected(peer, &other)),
    }
}

/// The patient closes an invitation at the home host (confirmed, declined, withdrawn).
/// The patient hands the record's home host an emergency summary share to serve: the
/// descriptor and the ciphertext (never the key, which stays in the link's fragment).
pub async fn put_share(
    handle: &NodeHandle,
    share: &cophr_protocol::share::Share,
    sealed: Vec<u8>,
) -> Result<Multiaddr, NetError> {
    let record = share.record;
    let (peer, addr) = home_of(handle, &record)?;
    ack(
        handle,
        peer,
        vec![addr.clone()],
        Request::SharePut {
            proof: proof(handle, &peer, record),
            share: serde_bytes::ByteBuf::from(share.encode()),
            sealed: serde_bytes::ByteBuf::from(sealed),
        },
    )
    .await?;
    Ok(addr.with(libp2p::multiaddr::Protocol::P2p(peer)))
}

/// The patient ends a share the record's home host serves.
pub async fn end_share(
    handle: &NodeHandle,
    record: RecordId,
    id: cophr_protocol::share::ShareId,
) -> Result<(), NetError> {
    let (peer, addr) = home_of(handle, &record)?;
    ack(
        handle,
        peer,
        vec![addr],
        Request::ShareEnd {
            proof: proof(handle, &peer, record),
            id,
        },
    )
    .await
}

pub async fn close_invitation(
    handle: &NodeHandle,
    record: RecordId,
    id: ActorId,
) -> Result<(), NetError> {
    let (peer, addr) = home_of(handle, &record)?;
    ack(
        handle,
        peer,
        vec![addr],
        Request::CloseInvitation {
            proof: proof(handle, &peer, record),
            id,
        },
    )
    .await
}

/// Gives `host` (an address ending in `/p2p/<peer id>`) this identity's encrypted key
/// backup to keep, proving possession of the key for `record` (a record the host holds
/// and this identity may see, e.g. the patient's own). The latest backup replaces any
/// earlier one.
pub async fn put_backup(
    handle: &NodeHandle,
    host: &Multiaddr,
    record: RecordId,
    backup: Vec<u8>,
) -> Result<(), NetError> {
    let (peer, _) = split(host)?;
    match handle
        .request(
            peer,
            vec![host.clone()],
            Request::BackupPut {
                proof: proof(handle, &peer, record),
                backup: serde_bytes::ByteBuf::from(backup),
            },
        )
        .await?
    {
        Response::Ack => Ok(()),
        Response::Refused { code, reason } => Err(NetError::Refused { peer, code, reason }),
        other => Err(NetError::Protocol {
            peer,
            reason: format!("unexpected answer to a key backup: {}", other.kind()),
        }),
    }
}

/// Asks `host` for the encrypted key backup it keeps for `actor` (no proof: whoever asks
/// has lost the key; the backup opens only with its passphrase). `None` when it keeps
/// none.
pub async fn get_backup(
    handle: &NodeHandle,
    host: &Multiaddr,
    actor: ActorId,
) -> Result<Option<Vec<u8>>, NetError> {
    let (peer, _) = split(host)?;
    match handle
        .request(peer, vec![host.clone()], Request::BackupGet { actor })
        .await?
    {
        Response::Backup { backup } => Ok(backup.map(serde_bytes::ByteBuf::into_vec)),
        Response::Refused { code, reason } => Err(NetError::Refused { peer, code, reason }),
        other => Err(NetError::Protocol {
            peer,
            reason: format!(
                "unexpected answer to a key backup request: {}",
                other.kind()
            ),
        }),
    }
}
