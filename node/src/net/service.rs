//! The event loop that owns the swarm, and the handle other tasks use to drive it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use libp2p::kad::{self, store::RecordStore, GetRecordOk, QueryResult, Quorum};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{
    connection_limits, dcutr, identify, identity, noise, ping, tcp, yamux, Multiaddr, PeerId,
    StreamProtocol, Swarm,
};
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};

use cophr_protocol::blob::BlobHash;
use cophr_protocol::home::{dht_key, SignedPointer};
use cophr_protocol::sync::{Refusal, Request, Response, PROTOCOL};
use cophr_protocol::trust::{SignedAttestation, TrustList};
use cophr_protocol::{ActorId, EntryId, Keypair, RecordId, Timestamp};

use super::server::{Effect, Peer, Server};
use super::{client, Behaviour, BehaviourEvent, NetConfig, NetError};
use crate::store::Store;

/// Capacity of the command channel.
const COMMANDS: usize = 256;
/// Most requests answered at once (each on a blocking thread).
const IN_FLIGHT: usize = 32;
/// Most subscribers remembered per record.
const MAX_SUBSCRIBERS: usize = 1024;
/// Most concurrent client syncs.
const MAX_SYNCS: usize = 16;
/// Most document fetches a node runs at once (each takes documents one slice at a time).
const MAX_DOCUMENT_FETCHES: usize = 4;
/// What one document slice request (`Request::Document`, up to 1 MiB) costs of a peer's
/// `requests_per_minute`: a sixteenth, so the limit allows 16 MiB of document bytes per
/// request it allows (at the default of 600, about 160 MiB/s), and a large document's
/// fetch is not cut off after 600 slices.
const DOCUMENT_SLICE_COST: f64 = 1.0 / 16.0;
/// Most change events held for a slow watcher (beyond that it is told how many it missed).
const WATCH_BUFFER: usize = 256;

/// Entries newly held in a record, written here or received from a peer, in the order
/// they were applied. What a watcher may be shown of them is for it to decide (with
/// `Record::can_see`): this carries ids only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    /// The record.
    pub record: RecordId,
    /// The new entries.
    pub entries: Vec<EntryId>,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> Timestamp {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Timestamp)
        .unwrap_or(0)
}

/// Who a node replicates each record from (and pushes its writes to).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct PeerBook {
    /// The record's home host, if known.
    pub home: Option<Multiaddr>,
    /// Other replicas to pull from when the home host is unreachable.
    pub replicas: Vec<Multiaddr>,
    /// Peers that proved access to the record when they synced with this node (so they
    /// hold what they may see of it): tried, after `replicas`, only when the home host
    /// cannot be reached. At most [`MAX_LEARNED_REPLICAS`].
    #[serde(default)]
    pub learned: Vec<Multiaddr>,
}

/// Most replicas a node learns per record.
pub const MAX_LEARNED_REPLICAS: usize = 8;

/// Records one tick visits at most (catching up with their sources, republishing their
/// home pointers, checking whether they moved away). A node holding more visits them all
/// over several ticks, in turn, so a tick's cost does not grow with the records held (a
/// community host of 1,000,000 records visits each every 977 ticks).
pub const TICK_RECORDS: usize = 1024;

/// The records a tick visits: the next `limit` in id order after `cursor` (the last one
/// the previous tick visited), from the first again once a slice reached the end; moves
/// `cursor` on.
fn tick_slice(
    store: &Store,
    cursor: &mut Option<RecordId>,
    limit: usize,
) -> Result<Vec<RecordId>, crate::store::StoreError> {
    let mut slice = store.records_after(cursor.as_ref(), limit)?;
    if slice.is_empty() && cursor.is_some() {
        slice = store.records_after(None, limit)?;
    }
    *cursor = match slice.len() < limit {
        true => None,
        false => slice.last().copied(),
    };
    Ok(slice)
}

/// Most peers whose listen addresses are remembered.
const MAX_KNOWN_PEERS: usize = 4096;

impl PeerBook {
    /// Every address, home first.
    pub fn all(&self) -> Vec<Multiaddr> {
        self.home
            .iter()
            .chain(self.replicas.iter())
            .cloned()
            .collect()
    }

    /// Where to turn when the home host cannot be reached: the configured replicas, then
    /// the learned ones.
    pub fn fallbacks(&self) -> Vec<Multiaddr> {
        self.replicas
            .iter()
            .chain(self.learned.iter().filter(|a| !self.replicas.contains(a)))
            .cloned()
            .collect()
    }

    /// Whether `peer` is in the book already.
    pub fn knows(&self, peer: &PeerId) -> bool {
        self.home
            .iter()
            .chain(&self.replicas)
            .chain(&self.learned)
            .any(|a| peer_of(a).as_ref() == Some(peer))
    }
}

/// The peer id at the end of a multiaddr (for a relayed address
/// `…/p2p/<relay>/p2p-circuit/p2p/<peer>`, the peer's, not the relay's).
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter()
        .filter_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        })
        .last()
}

enum Command {
    Request {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Box<Request>,
        reply: oneshot::Sender<Result<Response, NetError>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Changed {
        record: RecordId,
    },
    PublishHome {
        pointer: SignedPointer,
    },
    /// This node gave the record up: its own home pointer for it leaves its DHT store.
    ForgetHome {
        record: RecordId,
    },
    LocalHome {
        record: RecordId,
        reply: oneshot::Sender<Option<SignedPointer>>,
    },
    FindHome {
        record: RecordId,
        reply: oneshot::Sender<Option<SignedPointer>>,
    },
    SyncDone {
        key: (PeerId, RecordId),
    },
    Watch {
        reply: oneshot::Sender<broadcast::Receiver<Changes>>,
    },
    Shutdown,
}

/// A claim on an on-demand fetch of one document: its lock, and its place in the map of
/// fetches under way, removed when the last claim on it goes.
#[derive(Debug)]
pub(crate) struct OnDemand {
    map: Arc<std::sync::Mutex<HashMap<BlobHash, Arc<tokio::sync::Mutex<()>>>>>,
    hash: BlobHash,
    pub(crate) lock: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for OnDemand {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        // The map's own reference and this one: nobody else waits.
        if Arc::strong_count(&self.lock) <= 2 {
            map.remove(&self.hash);
        }
    }
}

/// A DHT lookup in progress: the record, the best pointer so far, who to tell.
type Find = (
    RecordId,
    Option<SignedPointer>,
    oneshot::Sender<Option<SignedPointer>>,
);

struct Answered {
    channel: ResponseChannel<Response>,
    response: Response,
    effects: Vec<Effect>,
    peer: PeerId,
}

/// A cloneable handle to a running node.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    commands: mpsc::Sender<Command>,
    peer_id: PeerId,
    store: Store,
    identity: Arc<Keypair>,
    meter: Option<Arc<super::meter::Meter>>,
    server: Arc<Server>,
    attestations: Arc<std::sync::RwLock<Vec<SignedAttestation>>>,
    documents: super::DocumentFetch,
    /// Held while an upload is checked against the quotas and reserved.
    uploads: Arc<std::sync::Mutex<()>>,
    /// Documents being fetched on demand, each with the lock its fetchers take in turn
    /// (so two readers asking at once make one fetch). At most [`MAX_ON_DEMAND`].
    on_demand: Arc<std::sync::Mutex<HashMap<BlobHash, Arc<tokio::sync::Mutex<()>>>>>,
}

/// Most documents fetched on demand at once.
pub const MAX_ON_DEMAND: usize = 16;

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl NodeHandle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The store the node serves.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The actor this node acts as (its proofs are signed with this key).
    pub fn identity(&self) -> &Keypair {
        &self.identity
    }

    /// When this node, as a replica, fetches documents ([`super::DocumentFetch`]).
    pub fn document_fetch(&self) -> super::DocumentFetch {
        self.documents
    }

    /// The lock of an on-demand fetch of `hash` (shared with any fetch of it under way),
    /// or `None` when [`MAX_ON_DEMAND`] other documents are being fetched.
    pub(crate) fn on_demand_lock(&self, hash: BlobHash) -> Option<OnDemand> {
        let mut map = self.on_demand.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(&hash) && map.len() >= MAX_ON_DEMAND {
            return None;
        }
        let lock = map.entry(hash).or_default().clone();
        Some(OnDemand {
            map: self.on_demand.clone(),
            hash,
            lock,
        })
    }

    /// The attestations of the node's identity that its requests present.
    pub fn attestations(&self) -> Vec<SignedAttestation> {
        self.attestations
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the attestations of the node's identity that its requests present.
    pub fn set_attestations(&self, attestations: Vec<SignedAttestation>) {
        *self.attestations.write().unwrap_or_else(|p| p.into_inner()) = attestations;
    }

    /// Replaces the trust list the node checks identity requirements against (the
    /// issuers it trusts, the revocations it knows).
    pub fn set_trust(&self, trust: TrustList) {
        self.server.set_trust(trust);
    }

    /// The trust list in use.
    pub fn trust(&self) -> TrustList {
        self.server.trust()
    }

    async fn send(&self, c: Command) -> Result<(), NetError> {
        self.commands.send(c).await.map_err(|_| NetError::Stopped)
    }

    /// A handle whose requests (and their responses) are counted in `meter`.
    pub fn metered(&self, meter: Arc<super::meter::Meter>) -> NodeHandle {
        NodeHandle {
            meter: Some(meter),
            ..self.clone()
        }
    }

    /// Sends a request and waits for the response.
    pub async fn request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Request,
    ) -> Result<Response, NetError> {
        if let Some(m) = &self.meter {
            m.request(&request);
        }
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request {
            peer,
            addrs,
            request: Box::new(request),
            reply,
        })
        .await?;
        let response = rx.await.map_err(|_| NetError::Stopped)??;
        if let Some(m) = &self.meter {
            m.response(&response);
        }
        Ok(response)
    }

    /// The addresses the node listens on (with its peer id).
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::ListenAddrs { reply }).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// A record changed locally: push to its home host and tell subscribers.
    pub async fn changed(&self, record: RecordId) -> Result<(), NetError> {
        self.send(Command::Changed { record }).await
    }

    /// Answers a sync request that came over HTTP (`POST /sync`, from a browser, which has
    /// no libp2p identity) with this node's sync server, exactly as one from a peer: its
    /// proof must be bound to [`cophr_protocol::sync::HTTP_CLIENT`] and this node. Blocking
    /// (it touches the store): call it from a blocking thread, then
    /// [`NodeHandle::after_http`] with the effects.
    ///
    /// A key backup get (which carries no proof, so binds nothing) is counted against the
    /// caller's address (`from`): every browser has the same client identity, and one
    /// caller must not use up everyone's gets.
    pub fn answer_http(
        &self,
        request: Request,
        from: Option<std::net::IpAddr>,
        label: String,
    ) -> (Response, Vec<Effect>) {
        let mut id = cophr_protocol::sync::HTTP_CLIENT.to_vec();
        if let (Request::BackupGet { .. }, Some(ip)) = (&request, from) {
            id.extend_from_slice(format!(" {ip}").as_bytes());
        }
        let peer = Peer { id, label };
        let mut store = self.store.clone();
        self.server.handle(&mut store, &peer, request, now_ms())
    }

    /// Whether a browser may hand this node a document's sealed bytes over HTTP (`PUT
    /// /sync/blobs/{hash}`): the sync server's rule ([`cophr_protocol::sync::server::Server::blob_put`],
    /// the record's patient only, the proof bound to this upload). Blocking: call it from
    /// a blocking thread, then [`NodeHandle::after_http`] with the effects of a refusal.
    pub fn blob_put_http(
        &self,
        proof: &cophr_protocol::sync::Proof,
        doc: &cophr_protocol::blob::BlobRef,
        label: &str,
    ) -> Result<ActorId, (Response, Vec<Effect>)> {
        // Checked and reserved as one step, so two uploads at once cannot both pass a quota
        // only one fits (`Store::reserve_upload`).
        let _one = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let actor = self.server.blob_put(&self.store, label, proof, doc, now)?;
        let named = self
            .store
            .with_record(&proof.record, |r| r.names_document(doc))
            .unwrap_or(false);
        // Only quotas count reservations (and forget them once named).
        let counted = self.server.policy().quotas != Default::default();
        if counted && !named && !self.store.has_document(doc) {
            self.store
                .reserve_upload(&proof.record, doc, now)
                .map_err(|e| {
                    (
                        Response::refused_because(Refusal::Busy, e.to_string()),
                        Vec::new(),
                    )
                })?;
        }
        Ok(actor)
    }

    /// Whether a browser may fetch a document's sealed bytes over HTTP (`GET
    /// /sync/blobs/{hash}`): the sync server's rule for a document
    /// ([`cophr_protocol::sync::server::Server::blob_get`]: whoever may see an entry naming
    /// it, the proof bound to this download), audited before a byte is sent. Blocking, as
    /// [`NodeHandle::blob_put_http`].
    pub fn blob_get_http(
        &self,
        proof: &cophr_protocol::sync::Proof,
        doc: &cophr_protocol::blob::BlobRef,
        label: &str,
    ) -> Result<ActorId, (Response, Vec<Effect>)> {
        let mut store = self.store.clone();
        self.server
            .blob_get(&mut store, label, proof, doc, now_ms())
    }

    /// Acts on the effects of an answer over HTTP: entries stored are pushed on and
    /// announced, a pointer is published. A browser cannot be told of changes (it asks),
    /// so subscriptions and announcements from it mean nothing.
    pub async fn after_http(&self, effects: Vec<Effect>) -> Result<(), NetError> {
        for effect in effects {
            match effect {
                Effect::Changed(record) => self.changed(record).await?,
                Effect::Host(pointer) => self.publish_home(pointer).await?,
                Effect::StoreFailed(error) => {
                    tracing::warn!(%error, "store error answering a web client")
                }
                Effect::Subscribe(..)
                | Effect::Announced(_)
                | Effect::Released(_)
                | Effect::Documents(_) => {}
            }
        }
        Ok(())
    }

    /// Publishes a record's home pointer in the DHT (this node hosts it).
    pub async fn publish_home(&self, pointer: SignedPointer) -> Result<(), NetError> {
        self.send(Command::PublishHome { pointer }).await
    }

    /// Takes this node's own home pointer for `record` (one naming this node) out of its
    /// DHT store, once it no longer holds the record: nothing naming the record stays
    /// behind on a former host. A pointer naming another host is kept (this node may be
    /// among the DHT nodes that hold it for the network).
    pub async fn forget_home(&self, record: RecordId) -> Result<(), NetError> {
        self.send(Command::ForgetHome { record }).await
    }

    /// The home pointer for `record` this node's own DHT store holds, if any (the one
    /// [`NodeHandle::find_home`] counts as local).
    pub async fn local_home(&self, record: RecordId) -> Result<Option<SignedPointer>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::LocalHome { record, reply }).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Looks a record's home pointer up in the DHT (newest valid one).
    pub async fn find_home(&self, record: RecordId) -> Result<SignedPointer, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::FindHome { record, reply }).await?;
        rx.await
            .map_err(|_| NetError::Stopped)?
            .ok_or(NetError::NotFound(record))
    }

    /// Watches the records held: one [`Changes`] per batch of entries newly held, from
    /// now on. The stream is bounded: a watcher that falls behind by more than a few
    /// hundred events gets `RecvError::Lagged` with the number it missed.
    pub async fn watch(&self) -> Result<broadcast::Receiver<Changes>, NetError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Watch { reply }).await?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Stops the node.
    pub async fn shutdown(&self) -> Result<(), NetError> {
        self.send(Command::Shutdown).await
    }

    /// The peer book of a record.
    pub fn peer_book(&self, record: &RecordId) -> Result<PeerBook, NetError> {
        Ok(self
            .store
            .meta(&format!("peers/{record}"))?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default())
    }

    /// Replaces the peer book of a record.
    pub fn set_peer_book(&self, record: &RecordId, book: &PeerBook) -> Result<(), NetError> {
        let bytes = serde_json::to_vec(book).map_err(|e| NetError::Setup(e.to_string()))?;
        self.store.set_meta(&format!("peers/{record}"), &bytes)?;
        Ok(())
    }
}

/// Starts a node: builds the swarm, listens, and spawns the event loop on the current
/// tokio runtime. `peer_key` is the node's 32-byte ed25519 secret; `identity` is the actor
/// the node acts as, and reads sealed content as ([`Store::unlock_with`]).
pub async fn start(
    store: Store,
    identity: Keypair,
    peer_key: [u8; 32],
    config: NetConfig,
) -> Result<(NodeHandle, tokio::task::JoinHandle<()>), NetError> {
    store.unlock_with(&identity);
    let mut secret = peer_key;
    let key = identity::Keypair::ed25519_from_bytes(&mut secret)
        .map_err(|e| NetError::Setup(e.to_string()))?;
    let local = key.public().to_peer_id();
    let swarm = build_swarm(key, &config)?;
    let (tx, rx) = mpsc::channel(COMMANDS);
    let server = Arc::new(
        Server::new(local.to_bytes(), config.host.clone()).with_identity(identity.actor()),
    );
    let handle = NodeHandle {
        commands: tx,
        peer_id: local,
        store: store.clone(),
        identity: Arc::new(identity),
        meter: None,
        server: server.clone(),
        attestations: Arc::default(),
        documents: config.documents,
        uploads: Arc::default(),
        on_demand: Arc::default(),
    };
    let (answered_tx, answered_rx) = mpsc::channel(IN_FLIGHT * 2);
    let event_loop = EventLoop {
        swarm,
        commands: rx,
        handle: handle.clone(),
        server,
        answered_tx,
        answered_rx,
        fetching: Arc::new(Semaphore::new(MAX_DOCUMENT_FETCHES)),
        answering: Arc::new(Semaphore::new(IN_FLIGHT)),
        pending: HashMap::new(),
        finds: HashMap::new(),
        subscribers: HashMap::new(),
        syncing: HashSet::new(),
        again: HashSet::new(),
        buckets: HashMap::new(),
        addrs: HashMap::new(),
        listening: HashMap::new(),
        learned: HashSet::new(),
        watch: broadcast::channel(WATCH_BUFFER).0,
        seen: HashMap::new(),
        housekeeping: Arc::default(),
        tick_cursor: None,
        config,
    };
    let task = tokio::spawn(event_loop.run());
    Ok((handle, task))
}

/// The DHT's record store in `dir`; a temporary one if `dir` is `None`, or cannot be
/// opened (another process holds it: it is a cache, which the node's tick fills again).
fn open_dht(
    local: PeerId,
    dir: Option<&std::path::Path>,
) -> Result<super::dht::DiskRecords, NetError> {
    if let Some(d) = dir {
        match super::dht::DiskRecords::open(local, Some(d)) {
            Ok(r) => return Ok(r),
            Err(e) => {
                tracing::warn!(dir = %d.display(), error = %e, "cannot open the DHT's record store; using a temporary one")
            }
        }
    }
    super::dht::DiskRecords::open(local, None)
        .map_err(|e| NetError::Setup(format!("cannot open a temporary DHT record store: {e}")))
}

/// The swarm: transports, behaviours and limits from `config`, listening and bootstrapped.
fn build_swarm(key: identity::Keypair, config: &NetConfig) -> Result<Swarm<Behaviour>, NetError> {
    let records = open_dht(key.public().to_peer_id(), config.dht_dir.as_deref())?;
    let max_msg = config.max_message_bytes;
    let relay_server = config.relay_server;
    let timeout = config.request_timeout;
    let (max_per_ip, max_pending) = (config.max_connections_per_ip, config.max_pending);
    let (max_connections, reserved) = (config.max_connections, config.reserved_connections);
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(config.max_connections))
        .with_max_established_per_peer(Some(config.max_connections_per_peer))
        .with_max_pending_incoming(Some(config.max_pending))
        .with_max_pending_outgoing(Some(config.max_pending));
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_quic()
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_behaviour(|key, relay| {
            let mut kad_config = kad::Config::new(StreamProtocol::new("/cophr/kad/1"));
            kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
            kad_config.set_query_timeout(Duration::from_secs(10));
            // Kademlia's own jobs put every record held again each hour (collecting them
            // all in memory first): a host republishes the pointers of the records it
            // hosts on its tick instead, a slice at a time (`TICK_RECORDS`).
            kad_config.set_replication_interval(None);
            kad_config.set_publication_interval(None);
            let mut kad =
                kad::Behaviour::with_config(key.public().to_peer_id(), records, kad_config);
            kad.set_mode(Some(kad::Mode::Server));
            let codec = request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(max_msg)
                .set_response_size_maximum(max_msg);
            Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                per_ip: super::per_ip::Behaviour::new(
                    max_per_ip,
                    max_per_ip.min(max_pending / 4),
                    max_connections,
                    reserved,
                ),
                identify: identify::Behaviour::new(identify::Config::new(
                    "/cophr/1".into(),
                    key.public(),
                )),
                ping: ping::Behaviour::default(),
                kad,
                sync: request_response::Behaviour::with_codec(
                    codec,
                    [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(timeout)
                        .with_max_concurrent_streams(64),
                ),
                relay,
                relay_server: relay_server
                    .then(|| {
                        libp2p::relay::Behaviour::new(
                            key.public().to_peer_id(),
                            libp2p::relay::Config::default(),
                        )
                    })
                    .into(),
                dcutr: dcutr::Behaviour::new(key.public().to_peer_id()),
            }
        })
        .map_err(|e| NetError::Setup(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NetError::Setup(format!("listen on {addr}: {e}")))?;
    }
    for relay in &config.relays {
        // Listening through a relay makes the node reachable at
        // `<relay address>/p2p-circuit/p2p/<this node>`.
        swarm
            .listen_on(relay.clone().with(Protocol::P2pCircuit))
            .map_err(|e| NetError::Setup(format!("listen through relay {relay}: {e}")))?;
    }
    for addr in &config.bootstrap {
        if let Some(peer) = peer_of(addr) {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
            let _ = swarm.dial(addr.clone());
        }
    }
    Ok(swarm)
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    handle: NodeHandle,
    server: Arc<Server>,
    answered_tx: mpsc::Sender<Answered>,
    answered_rx: mpsc::Receiver<Answered>,
    answering: Arc<Semaphore>,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, NetError>>>,
    finds: HashMap<kad::QueryId, Find>,
    subscribers: HashMap<RecordId, HashSet<PeerId>>,
    syncing: HashSet<(PeerId, RecordId)>,
    /// Syncs to run again when the one under way ends (a subset of `syncing`).
    again: HashSet<(PeerId, RecordId)>,
    /// Per-peer request budget: (tokens, last refill).
    buckets: HashMap<PeerId, Bucket>,
    /// The address each connected peer was last seen at.
    addrs: HashMap<PeerId, Multiaddr>,
    /// The first listen address each peer announced (identify): where it can be dialled.
    listening: HashMap<PeerId, Multiaddr>,
    /// (record, peer) pairs already considered as learned replicas.
    learned: HashSet<(RecordId, PeerId)>,
    /// Change events for watchers.
    watch: broadcast::Sender<Changes>,
    /// While anyone watches: how many entries of each record were already reported.
    seen: HashMap<RecordId, usize>,
    /// A housekeeping task (pending releases, moved-away records) is running.
    housekeeping: Arc<std::sync::atomic::AtomicBool>,
    /// The last record the previous tick visited (`None`: start from the first).
    tick_cursor: Option<RecordId>,
    /// Document fetches under way, bounded ([`MAX_DOCUMENT_FETCHES`]).
    fetching: Arc<Semaphore>,
    config: NetConfig,
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick =
            tokio::time::interval(self.config.sync_interval.max(Duration::from_millis(100)));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm(event),
                command = self.commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(c) => self.on_command(c),
                },
                Some(a) = self.answered_rx.recv() => self.on_answered(a),
                _ = tick.tick() => self.on_tick(),
            }
        }
        tracing::info!("node stopped");
    }

    fn allow(&mut self, peer: PeerId, cost: f64) -> bool {
        let per_min = f64::from(self.config.requests_per_minute.max(1));
        let bucket = self
            .buckets
            .entry(peer)
            .or_insert_with(|| Bucket::full(per_min));
        bucket.take(per_min, cost, Instant::now())
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                // A relay must announce where it can be reached in its reservations; a
                // node offering the service treats the addresses it was told to listen
                // on as reachable.
                if self.config.relay_server && !address.to_string().contains("p2p-circuit") {
                    self.swarm.add_external_address(address);
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let remote = endpoint.get_remote_address();
                tracing::debug!(
                    %peer_id,
                    address = %remote,
                    relayed = endpoint.is_relayed(),
                    "connection established"
                );
                self.addrs.insert(peer_id, remote.clone());
                // A source came (back) online: catch up with it.
                for record in self.records_from(&peer_id) {
                    self.spawn_sync(peer_id, record);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.addrs.remove(&peer_id);
                self.buckets.remove(&peer_id);
                for subs in self.subscribers.values_mut() {
                    subs.remove(&peer_id);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if let Some(first) = info.listen_addrs.first() {
                    if self.listening.len() < MAX_KNOWN_PEERS
                        || self.listening.contains_key(&peer_id)
                    {
                        self.listening.insert(peer_id, first.clone());
                    }
                }
                for a in info.listen_addrs.into_iter().take(16) {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(dcutr::Event {
                remote_peer_id,
                result,
            })) => match result {
                Ok(_) => tracing::info!(peer = %remote_peer_id, "hole punch: direct connection"),
                Err(error) => {
                    tracing::info!(peer = %remote_peer_id, %error, "hole punch failed")
                }
            },
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.on_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.on_kad(e),
            _ => {}
        }
    }

    fn on_sync(&mut self, event: request_response::Event<Request, Response>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let cost = match request {
                    Request::Document { .. } => DOCUMENT_SLICE_COST,
                    _ => 1.0,
                };
                if !self.allow(peer, cost) {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, Response::refused(Refusal::RateLimited));
                    return;
                }
                let Ok(permit) = self.answering.clone().try_acquire_owned() else {
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .sync
                        .send_response(channel, Response::refused(Refusal::Busy));
                    return;
                };
                let server = self.server.clone();
                let mut store = self.handle.store.clone();
                let tx = self.answered_tx.clone();
                let from = Peer {
                    id: peer.to_bytes(),
                    label: match self.addrs.get(&peer) {
                        Some(a) => format!("peer {peer} at {a}"),
                        None => format!("peer {peer}"),
                    },
                };
                tokio::task::spawn_blocking(move || {
                    let (response, effects) = server.handle(&mut store, &from, request, now_ms());
                    let _ = tx.blocking_send(Answered {
                        channel,
                        response,
                        effects,
                        peer,
                    });
                    drop(permit);
                });
            }
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(NetError::Request {
                        peer,
                        reason: error.to_string(),
                    }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "inbound request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }

    fn on_answered(&mut self, a: Answered) {
        // A peer answered with anything but a refusal proved a key with access here: it may
        // use the places kept for known peers.
        if !matches!(a.response, Response::Refused { .. }) {
            self.swarm.behaviour_mut().per_ip.know(a.peer);
        }
        let _ = self
            .swarm
            .behaviour_mut()
            .sync
            .send_response(a.channel, a.response);
        for effect in a.effects {
            match effect {
                Effect::Subscribe(record, _actor) => {
                    let subs = self.subscribers.entry(record).or_default();
                    if subs.len() < MAX_SUBSCRIBERS {
                        subs.insert(a.peer);
                    }
                    self.learn_replica(record, a.peer);
                }
                Effect::Changed(record) => self.changed(record, Some(a.peer)),
                Effect::Host(pointer) => self.publish(pointer),
                Effect::Released(record) => {
                    tracing::info!(%record, "released the record: the copy here is deleted");
                    self.subscribers.remove(&record);
                    self.forget_home(&record);
                }
                Effect::Announced(record) => {
                    if self.records_from(&a.peer).contains(&record) {
                        self.spawn_sync(a.peer, record);
                    }
                }
                Effect::StoreFailed(error) => {
                    tracing::warn!(peer = %a.peer, %error, "store error answering a peer")
                }
                Effect::Documents(record) => self.spawn_fetch_documents(a.peer, record),
            }
        }
    }

    /// Fetches from `peer` the documents of `record` this node lacks, unless as many
    /// fetches as allowed are under way (the next sync fetches what is still missing).
    fn spawn_fetch_documents(&mut self, peer: PeerId, record: RecordId) {
        let Ok(permit) = self.fetching.clone().try_acquire_owned() else {
            return;
        };
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match client::fetch_documents(&handle, peer, Vec::new(), record).await {
                Ok(f) if f.completed == 0 => {}
                Ok(f) => {
                    tracing::info!(%peer, %record, documents = f.completed, "fetched documents");
                    // Replicas that synced before the documents were here fetch them now.
                    let _ = handle.changed(record).await;
                }
                Err(e) => tracing::warn!(%peer, %record, error = %e, "could not fetch documents"),
            }
        });
    }

    fn on_kad(&mut self, event: kad::Event) {
        match event {
            kad::Event::InboundRequest {
                request:
                    kad::InboundRequest::PutRecord {
                        record: Some(r), ..
                    },
            } => {
                // Only well-formed, patient-signed pointers, and only newer ones, are kept.
                let Some(rec_id) = r
                    .key
                    .as_ref()
                    .strip_prefix(b"/cophr/home/".as_slice())
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                else {
                    return;
                };
                let record = cophr_protocol::ActorId(rec_id);
                let Ok(new) = SignedPointer::decode(&r.value, &record) else {
                    tracing::debug!("refused an invalid home pointer");
                    return;
                };
                let store = self.swarm.behaviour_mut().kad.store_mut();
                let newer = match store.get(&r.key) {
                    Some(old) => SignedPointer::decode(&old.value, &record)
                        .map_or(true, |o| new.newer_than(&o)),
                    None => true,
                };
                if newer {
                    let _ = store.put(r);
                }
            }
            kad::Event::OutboundQueryProgressed {
                id,
                result: QueryResult::GetRecord(res),
                step,
                ..
            } => {
                let Some((record, best, _)) = self.finds.get_mut(&id) else {
                    return;
                };
                if let Ok(GetRecordOk::FoundRecord(peer_record)) = &res {
                    if let Ok(p) = SignedPointer::decode(&peer_record.record.value, record) {
                        if best.as_ref().is_none_or(|b| p.newer_than(b)) {
                            *best = Some(p);
                        }
                    }
                }
                if step.last || res.is_err() {
                    if let Some((_, best, reply)) = self.finds.remove(&id) {
                        let _ = reply.send(best);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_command(&mut self, c: Command) {
        match c {
            Command::Request {
                peer,
                addrs,
                request,
                reply,
            } => {
                // Dial the given addresses ourselves when not connected, so a peer that
                // came back on a new address is reached there (not through a dial to an
                // old address still in progress).
                if !addrs.is_empty() && !self.swarm.is_connected(&peer) {
                    let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(addrs.clone())
                        .condition(libp2p::swarm::dial_opts::PeerCondition::Always)
                        .build();
                    if let Err(e) = self.swarm.dial(opts) {
                        tracing::debug!(%peer, error = %e, "dial failed");
                    }
                }
                let id = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request_with_addresses(&peer, *request, addrs);
                self.pending.insert(id, reply);
            }
            Command::ListenAddrs { reply } => {
                let local = *self.swarm.local_peer_id();
                let addrs = self
                    .swarm
                    .listeners()
                    .map(|a| {
                        // A relayed address already ends in this node's peer id.
                        if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
                            a.clone()
                        } else {
                            a.clone().with(Protocol::P2p(local))
                        }
                    })
                    .collect();
                let _ = reply.send(addrs);
            }
            Command::Changed { record } => self.changed(record, None),
            Command::PublishHome { pointer } => self.publish(pointer),
            Command::ForgetHome { record } => self.forget_home(&record),
            Command::LocalHome { record, reply } => {
                let _ = reply.send(self.local_pointer(&record));
            }
            Command::FindHome { record, reply } => {
                let key = kad::RecordKey::new(&dht_key(&record));
                // A pointer this node holds itself counts too.
                let local = self.local_pointer(&record);
                let id = self.swarm.behaviour_mut().kad.get_record(key);
                self.finds.insert(id, (record, local, reply));
            }
            Command::SyncDone { key } => {
                self.syncing.remove(&key);
                if self.again.remove(&key) {
                    self.spawn_sync(key.0, key.1);
                }
            }
            Command::Watch { reply } => {
                if self.watch.receiver_count() == 0 {
                    // The first watcher: what is held now is not news.
                    self.seen.clear();
                    let store = &self.handle.store;
                    for record in store.records().unwrap_or_default() {
                        if let Ok(n) = store.with_record(&record, |r| r.len()) {
                            self.seen.insert(record, n);
                        }
                    }
                }
                let _ = reply.send(self.watch.subscribe());
            }
            Command::Shutdown => {}
        }
    }

    fn on_tick(&mut self) {
        // Catch up with every source of the records held; republish hosted pointers; a
        // slice of them at a time (see `TICK_RECORDS`).
        let Ok(mut records) = tick_slice(&self.handle.store, &mut self.tick_cursor, TICK_RECORDS)
        else {
            return;
        };
        // Records this node accepted an invitation to: tried until the patient confirms.
        records.extend(client::awaiting_records(&self.handle.store, now_ms()).unwrap_or_default());
        let mut hosted = Vec::new();
        for record in records {
            if let Ok(book) = self.handle.peer_book(&record) {
                for addr in book.all() {
                    if let Some(peer) = peer_of(&addr) {
                        self.spawn_sync(peer, record);
                    }
                }
            }
            if let Ok(Some(bytes)) = self.handle.store.meta(&super::server::home_key(&record)) {
                if let Ok(p) = SignedPointer::decode(&bytes, &record) {
                    self.publish(p);
                    hosted.push(record);
                }
            }
        }
        // Releases still owed by former hosts (the patient's node), and records this
        // node hosted that moved away (a former host): one background task at a time.
        if !self
            .housekeeping
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            let handle = self.handle.clone();
            let busy = self.housekeeping.clone();
            tokio::spawn(async move {
                if let Err(e) = client::retry_releases(&handle).await {
                    tracing::debug!(error = %e, "retrying releases failed");
                }
                for record in hosted {
                    if let Err(e) = client::leave_if_moved(&handle, record).await {
                        tracing::debug!(%record, error = %e, "checking for a move failed");
                    }
                }
                busy.store(false, std::sync::atomic::Ordering::Release);
            });
        }
    }

    /// A peer proved access to a record this node replicates from a home host (not one it
    /// hosts): remember where it listens, to fall back on when the home host cannot be
    /// reached.
    fn learn_replica(&mut self, record: RecordId, peer: PeerId) {
        if self.learned.contains(&(record, peer)) {
            return;
        }
        let Some(addr) = self.listening.get(&peer).cloned() else {
            return;
        };
        let store = &self.handle.store;
        let hosted = store
            .meta(&super::server::home_key(&record))
            .ok()
            .flatten()
            .is_some_and(|p| !p.is_empty());
        if hosted || !store.holds(&record).unwrap_or(false) {
            return;
        }
        let Ok(mut book) = self.handle.peer_book(&record) else {
            return;
        };
        if self.learned.len() < MAX_KNOWN_PEERS {
            self.learned.insert((record, peer));
        }
        // Only a replica of a record it follows from a home host needs somewhere to turn.
        if book.home.is_none() || book.knows(&peer) || book.learned.len() >= MAX_LEARNED_REPLICAS {
            return;
        }
        let addr = if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
            addr
        } else {
            addr.with(Protocol::P2p(peer))
        };
        book.learned.push(addr);
        if let Err(e) = self.handle.set_peer_book(&record, &book) {
            tracing::debug!(%record, error = %e, "could not remember a replica");
        }
    }

    /// Records for which `peer` is a known source.
    fn records_from(&self, peer: &PeerId) -> Vec<RecordId> {
        let Ok(records) = self.handle.store.records() else {
            return Vec::new();
        };
        records
            .into_iter()
            .filter(|r| {
                self.handle
                    .peer_book(r)
                    .map(|b| b.all().iter().any(|a| peer_of(a).as_ref() == Some(peer)))
                    .unwrap_or(false)
            })
            .collect()
    }

    fn changed(&mut self, record: RecordId, from: Option<PeerId>) {
        self.report(record);
        // Tell connected subscribers (except the one the change came from) to pull.
        let subs: Vec<PeerId> = self
            .subscribers
            .get(&record)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for peer in subs {
            if Some(peer) != from && self.swarm.is_connected(&peer) {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_request(&peer, Request::Announce { record });
                let (reply, _) = oneshot::channel();
                self.pending.insert(id, reply);
            }
        }
        // Push local writes on to the home host.
        if let Ok(book) = self.handle.peer_book(&record) {
            if let Some(home) = book.home.as_ref().and_then(peer_of) {
                if Some(home) != from && home != *self.swarm.local_peer_id() {
                    self.spawn_sync(home, record);
                }
            }
        }
    }

    /// Tells watchers which entries of `record` are new since the last report (a record
    /// first held after watching began is new as a whole).
    fn report(&mut self, record: RecordId) {
        if self.watch.receiver_count() == 0 {
            self.seen.clear();
            return;
        }
        let from = self.seen.get(&record).copied().unwrap_or(0);
        let Ok((len, entries)) = self.handle.store.with_record(&record, |r| {
            // A record removed and held again since starts over.
            let from = if from > r.len() { 0 } else { from };
            let new: Vec<EntryId> = r.entries_since(from).map(|e| e.id()).collect();
            (r.len(), new)
        }) else {
            return;
        };
        self.seen.insert(record, len);
        if !entries.is_empty() {
            let _ = self.watch.send(Changes { record, entries });
        }
    }

    /// The valid home pointer for `record` in this node's own DHT store.
    fn local_pointer(&mut self, record: &RecordId) -> Option<SignedPointer> {
        let key = kad::RecordKey::new(&dht_key(record));
        self.swarm
            .behaviour_mut()
            .kad
            .store_mut()
            .get(&key)
            .and_then(|r| SignedPointer::decode(&r.value, record).ok())
    }

    /// See [`NodeHandle::forget_home`].
    fn forget_home(&mut self, record: &RecordId) {
        let local = self.swarm.local_peer_id().to_bytes();
        if self
            .local_pointer(record)
            .is_some_and(|p| p.pointer.host == local)
        {
            let key = kad::RecordKey::new(&dht_key(record));
            self.swarm.behaviour_mut().kad.store_mut().remove(&key);
        }
    }

    fn publish(&mut self, pointer: SignedPointer) {
        let record = kad::Record::new(
            kad::RecordKey::new(&dht_key(&pointer.pointer.record)),
            pointer.encode(),
        );
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .kad
            .put_record(record, Quorum::One)
        {
            tracing::warn!(error = %e, "could not store a home pointer");
        }
    }

    fn spawn_sync(&mut self, peer: PeerId, record: RecordId) {
        if peer == *self.swarm.local_peer_id() {
            return;
        }
        if self.syncing.contains(&(peer, record)) {
            // A sync with this peer is under way but may have asked before this change:
            // run another when it ends, so an announcement is never lost.
            self.again.insert((peer, record));
            return;
        }
        if self.syncing.len() >= MAX_SYNCS || !self.syncing.insert((peer, record)) {
            return;
        }
        let handle = self.handle.clone();
        let addrs: Vec<Multiaddr> = handle
            .peer_book(&record)
            .map(|b| {
                b.all()
                    .into_iter()
                    .filter(|a| peer_of(a) == Some(peer))
                    .collect()
            })
            .unwrap_or_default();
        tokio::spawn(async move {
            let home = handle
                .peer_book(&record)
                .ok()
                .and_then(|b| b.home.as_ref().and_then(peer_of));
            let push = home == Some(peer);
            match client::sync(&handle, peer, addrs, record, push).await {
                Ok(r) => {
                    tracing::debug!(%peer, %record, pulled = r.pulled, pushed = r.pushed, "synced")
                }
                Err(NetError::Refused {
                    code: Refusal::NoAccess,
                    ..
                }) if push => {
                    // The home host no longer serves us the record (it moved, and the old
                    // host released it): look the new home up and sync with it.
                    match client::follow(&handle, record).await {
                        Ok(addr) => {
                            if let Some(new) = peer_of(&addr).filter(|p| *p != peer) {
                                let r = client::sync(&handle, new, vec![addr], record, true).await;
                                tracing::info!(%record, home = %new, ok = r.is_ok(), "followed the record to its new home");
                            }
                        }
                        Err(e) => tracing::debug!(%record, error = %e, "no new home found"),
                    }
                }
                Err(e @ NetError::Request { .. }) if push => {
                    // The home host cannot be reached: catch up from another replica now.
                    tracing::debug!(%peer, %record, error = %e, "home unreachable; trying replicas");
                    let fallbacks = handle
                        .peer_book(&record)
                        .map(|b| b.fallbacks())
                        .unwrap_or_default();
                    for addr in fallbacks {
                        let Some(other) = peer_of(&addr).filter(|p| *p != peer) else {
                            continue;
                        };
                        if client::sync(&handle, other, vec![addr], record, false)
                            .await
                            .is_ok()
                        {
                            tracing::info!(%record, replica = %other, "caught up from a replica while the home host is down");
                            break;
                        }
                    }
                }
                Err(e) => tracing::debug!(%peer, %record, error = %e, "sync failed"),
            }
            let _ = handle
                .send(Command::SyncDone {
                    key: (peer, record),
                })
                .await;
        });
    }
}

/// A peer's request allowance: a token bucket refilled at `per_min` tokens a minute, holding
/// at most `per_min`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(per_min: f64) -> Bucket {
        Bucket {
            tokens: per_min,
            last: Instant::now(),
        }
    }

    /// Takes `cost` tokens at `now` if there are that many (after refilling).
    fn take(&mut self, per_min: f64, cost: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_min / 60.0).min(per_min);
        self.last = now;
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_may_fetch_sixteen_document_slices_for_each_other_request_allowed() {
        let start = Instant::now();
        let mut requests = Bucket {
            tokens: 600.0,
            last: start,
        };
        let allowed = (0..10_000)
            .take_while(|_| requests.take(600.0, 1.0, start))
            .count();
        assert_eq!(allowed, 600);
        let mut slices = Bucket {
            tokens: 600.0,
            last: start,
        };
        let allowed = (0..100_000)
            .take_while(|_| slices.take(600.0, DOCUMENT_SLICE_COST, start))
            .count();
        assert_eq!(
            allowed,
            600 * 16,
            "1 GiB in 1 MiB slices fits in a full bucket"
        );
        // Refilled at the rate: ten seconds later, a hundred more requests.
        let later = start + Duration::from_secs(10);
        let allowed = (0..10_000)
            .take_while(|_| requests.take(600.0, 1.0, later))
            .count();
        assert_eq!(allowed, 100);
    }

    #[test]
    fn ticks_visit_every_record_once_a_round_a_slice_at_a_time() {
        use cophr_protocol::testkit::{key, profile};
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), key(1, "node")).unwrap();
        let mut all = Vec::new();
        for n in 0..7 {
            let p = key(2, &format!("patient {n}"));
            store
                .create_record(&p, profile("P", "patient", None), 1, None)
                .unwrap();
            all.push(p.actor());
        }
        all.sort();
        let mut cursor = None;
        let slices: Vec<Vec<RecordId>> = (0..4)
            .map(|_| tick_slice(&store, &mut cursor, 3).unwrap())
            .collect();
        assert_eq!(slices[0], all[0..3]);
        assert_eq!(slices[1], all[3..6]);
        assert_eq!(slices[2], all[6..7], "the last slice reaches the end");
        assert_eq!(slices[3], all[0..3], "and the next round starts again");
        // A round that ends exactly on a slice's end starts again at once, not with an
        // empty tick.
        let mut cursor = None;
        let slices: Vec<Vec<RecordId>> = (0..4)
            .map(|_| tick_slice(&store, &mut cursor, 7).unwrap())
            .collect();
        assert!(slices.iter().all(|s| *s == all), "{slices:?}");
        // A record removed at the cursor does not stop the round.
        let mut cursor = None;
        tick_slice(&store, &mut cursor, 3).unwrap();
        store.remove_record(&all[2]).unwrap();
        assert_eq!(tick_slice(&store, &mut cursor, 3).unwrap(), all[3..6]);
    }

    #[test]
    fn the_peer_of_a_relayed_address_is_the_last_one() {
        let relay = PeerId::random();
        let peer = PeerId::random();
        let direct: Multiaddr = format!("/ip4/192.0.2.1/tcp/4001/p2p/{peer}")
            .parse()
            .unwrap();
        let relayed: Multiaddr =
            format!("/ip4/192.0.2.1/tcp/4001/p2p/{relay}/p2p-circuit/p2p/{peer}")
                .parse()
                .unwrap();
        assert_eq!(peer_of(&direct), Some(peer));
        assert_eq!(peer_of(&relayed), Some(peer));
        assert_eq!(peer_of(&"/ip4/192.0.2.1/tcp/1".parse().unwrap()), None);
    }
}
