//! The engine: nodes holding `Record` replicas, a priority queue of events in virtual time,
//! the sync server and client (the same exchange as `node/src/net/`), the patient's host and
//! move procedure, hostile actors, and the ground truth the invariants are checked against.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use cophr_protocol::access::Grant;
use cophr_protocol::category::Category;
use cophr_protocol::entry::{verify_batch, Payload, SignedEntry, Timestamp, Verified};
use cophr_protocol::home::{HomePointer, SignedPointer};
use cophr_protocol::record::{Applied, Record, Rejection, Stream};
use cophr_protocol::sync::{
    self, Frontier, NonceCache, Proof, Request, Response, MAX_BATCH, PROOF_WINDOW_MS,
};
use cophr_protocol::{ActorId, EntryId, Keypair, RecordId};
use serde_bytes::ByteBuf;

use crate::net::{Fate, Faults, Net};
use crate::report::fmt_time;
use crate::rng::Rng;
use crate::trace;
use crate::{body, Time};

/// Wall-clock time of virtual time 0.
pub(crate) const EPOCH: Timestamp = 1_700_000_000_000;
/// Nonces a node remembers.
const NONCE_CAPACITY: usize = 4096;
/// Entries a replica buffers while their parents are missing.
const MAX_PENDING: usize = 1024;
/// Subscribers a node remembers per record.
const MAX_SUBSCRIBERS: usize = 256;
/// Honest requests the hostile node's tap remembers.
const TAP: usize = 32;

pub(crate) type NodeId = usize;

/// What a node is, for the report and the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Role {
    Patient,
    Carer,
    Family,
    Provider,
    Host,
    Hostile,
}

/// One record as one node holds it.
#[derive(Debug)]
pub(crate) struct Replica {
    pub record: Record,
    /// The home host, as this node knows it.
    pub home: Option<NodeId>,
    /// Whether this node stores the record as a host.
    pub hosted: bool,
    /// Entries waiting for their parents.
    pub pending: Vec<Verified>,
    /// Bumped whenever the home host may lack something this replica holds.
    pub dirty: u64,
    /// The `dirty` value the home host is known to have caught up with.
    pub clean: u64,
    /// The sync session in flight, if any.
    pub busy: Option<u64>,
    /// Sync again with this peer when the session in flight ends.
    pub again: Option<NodeId>,
    /// Failed syncs with the home host since the last success.
    pub home_fails: u32,
    /// Round-robin position among fallback peers.
    pub next_peer: usize,
    /// Whether the last attempt after a home failure went to another replica.
    pub tried_fallback: bool,
    /// The patient's home pointer sequence.
    pub pointer_seq: u64,
    /// When this node started holding the record.
    pub since: Time,
}

impl Replica {
    fn new(id: RecordId, since: Time) -> Self {
        Replica {
            since,
            record: Record::new(id),
            home: None,
            hosted: false,
            pending: Vec::new(),
            dirty: 0,
            clean: 0,
            busy: None,
            again: None,
            home_fails: 0,
            next_peer: 0,
            tried_fallback: false,
            pointer_seq: 0,
        }
    }
}

/// What a client session is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Sync,
    Proc,
    Attack(usize),
}

/// Where a client session is in the exchange.
#[derive(Debug)]
enum SState {
    Differ,
    Entries {
        differ: Vec<Stream>,
        asked: Frontier,
    },
    Pushed {
        batches: VecDeque<Vec<ByteBuf>>,
    },
    Ack,
    Probe,
}

#[derive(Debug)]
struct Session {
    record: RecordId,
    peer: NodeId,
    step: u32,
    push: bool,
    purpose: Purpose,
    state: SState,
    gen: u64,
    pulled: usize,
    pushed: usize,
    rejected: usize,
}

/// Why a session ended without success.
#[derive(Debug, Clone, PartialEq)]
enum Fail {
    Timeout,
    Refused(String),
    BadEntries(String),
    Protocol(String),
}

/// The patient's procedure to host the record (and, when it had a home, move it).
#[derive(Debug, Clone)]
pub(crate) struct Proc {
    to: NodeId,
    old: Option<NodeId>,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    PushAll,
    Check,
    Host,
    MoveEntry,
    PushMove,
    Release,
}

/// A simulated node.
#[derive(Debug)]
pub(crate) struct Node {
    pub name: String,
    pub role: Role,
    pub peer: Vec<u8>,
    pub key: Keypair,
    pub skew: i64,
    pub up: bool,
    pub replicas: BTreeMap<RecordId, Replica>,
    nonces: NonceCache,
    sessions: BTreeMap<u64, Session>,
    subscribers: BTreeMap<RecordId, BTreeSet<NodeId>>,
    procs: BTreeMap<RecordId, Proc>,
}

impl Node {
    pub(crate) fn actor(&self) -> ActorId {
        self.key.actor()
    }
    pub(crate) fn honest(&self) -> bool {
        self.role != Role::Hostile
    }
}

/// What a scripted write does.
#[derive(Debug, Clone)]
pub(crate) enum WriteKind {
    Create(Category),
    /// Amend the writer's latest version in the category (a create if there is none).
    AmendOwn(Category),
    /// Annotate the latest entry by someone else in the category.
    Annotate(Category),
    Grant(Grant),
}

/// What a scripted write must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    Ok,
    Refused,
    Any,
    /// Refused once the writer's replica holds a revocation that cuts it.
    RefusedIfRevoked,
}

/// What a hostile (or misbehaving) node tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Attack {
    /// An entry naming the patient as author, signed with the attacker's key.
    ForgedSignature,
    /// A real entry with one signature byte changed.
    Tampered,
    /// A correctly signed write beyond the attacker's grant (scope or level).
    Escalate,
    /// A write under a grant the writer knows is revoked.
    RevokedWrite,
    /// A captured honest request, resent from the attacker's own peer.
    ReplayCaptured,
    /// One proof used twice.
    ReplayOwn,
    /// A proof from outside the accepted time window.
    StaleProof,
    /// A proof naming the patient, signed with the attacker's key.
    Impersonate,
    /// Asking for a record the attacker has no grant on.
    PullUnauthorised,
    /// Asking for every stream of a record it may see only part of.
    ProbeStreams,
    /// Forged entries pushed to a replica that is not the home host.
    PushToReplica,
    /// Announcing to every replica, so that those that know the attacker pull forged data.
    AnnounceSpam,
}

impl Attack {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Attack::ForgedSignature => "forged signature",
            Attack::Tampered => "tampered entry",
            Attack::Escalate => "escalated write",
            Attack::RevokedWrite => "write after revocation",
            Attack::ReplayCaptured => "replayed captured proof",
            Attack::ReplayOwn => "proof used twice",
            Attack::StaleProof => "stale proof",
            Attack::Impersonate => "impersonated proof",
            Attack::PullUnauthorised => "pull without a grant",
            Attack::ProbeStreams => "probe of unseen streams",
            Attack::PushToReplica => "forged push to a replica",
            Attack::AnnounceSpam => "announce spam",
        }
    }
}

/// What an attack must come to.
#[derive(Debug, Clone)]
enum AttackExpect {
    /// The response must be a refusal.
    Refused,
    /// None of these entries may be accepted.
    NoneAccepted(Vec<EntryId>),
    /// Everything answered must be visible to the attacker.
    OnlyVisible(ActorId),
    /// At most one of this attempt and its twin may be answered.
    NotBoth(usize),
    /// Nothing to check on the answer (the invariants check the effects).
    Nothing,
}

#[derive(Debug, Clone)]
pub(crate) struct AttackLog {
    pub kind: Attack,
    expect: AttackExpect,
    /// `Some(true)`: refused as it must be; `Some(false)`: it succeeded; `None`: unanswered.
    pub refused: Option<bool>,
    answered: bool,
    pub detail: String,
}

/// A scripted action.
#[derive(Debug, Clone)]
pub(crate) enum Act {
    Write {
        node: NodeId,
        record: RecordId,
        what: WriteKind,
        expect: Expect,
    },
    /// `node` revokes every grant it can revoke that names `grantee`'s actor.
    Revoke {
        node: NodeId,
        record: RecordId,
        grantee: NodeId,
    },
    /// The patient's node hosts the record on `to` (a move if it has a home already).
    Host {
        node: NodeId,
        record: RecordId,
        to: NodeId,
    },
    ProcRetry {
        node: NodeId,
        record: RecordId,
    },
    Down(NodeId),
    Up(NodeId),
    Partition(Vec<u8>, String),
    /// The partition ends (other faults stay).
    Unpartition,
    Heal,
    Faults(Faults, String),
    Attack {
        node: NodeId,
        record: RecordId,
        attack: Attack,
        /// For attacks aimed at a particular node.
        target: Option<NodeId>,
    },
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        session: u64,
        step: u32,
        request: bool,
        bytes: std::rc::Rc<Vec<u8>>,
    },
    Timeout {
        node: NodeId,
        session: u64,
        step: u32,
    },
    Tick {
        node: NodeId,
        record: RecordId,
        periodic: bool,
    },
    Act(Act),
    Sample,
}

#[derive(Debug)]
struct Queued {
    at: Time,
    seq: u64,
    ev: Event,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    fn cmp(&self, o: &Self) -> Ordering {
        // BinaryHeap is a max-heap: the earliest event is the greatest.
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Timing and sizes of one run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// Periodic catch-up with the home host.
    pub sync_every: Time,
    /// Jitter added to each periodic catch-up.
    pub sync_jitter: Time,
    /// A request unanswered for this long has failed.
    pub timeout: Time,
    /// Convergence is sampled this often.
    pub sample_every: Time,
    /// Entries asked for per pull.
    pub pull_limit: u32,
    /// Entries per push.
    pub push_batch: usize,
    /// From here on: no faults, no writes.
    pub heal: Time,
    /// The run ends (and the invariants are checked) here.
    pub end: Time,
}

/// A revocation written by an honest node.
#[derive(Debug, Clone)]
pub(crate) struct Revocation {
    pub record: RecordId,
    /// The administrative revoke entry.
    pub admin: EntryId,
    /// Actors whose access it cuts (the grantee and grantees of grants delegated from it).
    pub cuts: Vec<ActorId>,
}

/// Counters for the report.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    pub requests: BTreeMap<&'static str, u64>,
    pub syncs: u64,
    pub syncs_failed: u64,
    pub entries_served: u64,
    pub entries_pushed: u64,
    pub bad_batches: u64,
    pub served_refused: u64,
    pub writes: u64,
    pub writes_refused: u64,
    pub writes_skipped: u64,
    pub stale_responses: u64,
    pub moves_followed: u64,
    pub homes_found: u64,
}

/// The simulation.
#[derive(Debug)]
pub(crate) struct Sim {
    pub seed: u64,
    pub now: Time,
    pub cfg: Config,
    pub rng: Rng,
    nonce_rng: Rng,
    queue: BinaryHeap<Queued>,
    qseq: u64,
    next_session: u64,
    pub nodes: Vec<Node>,
    pub net: Net,
    peers: BTreeMap<Vec<u8>, NodeId>,
    /// The DHT: the newest home pointer per record.
    pub directory: BTreeMap<RecordId, SignedPointer>,
    /// Nodes that replicate each record (the patient tells them when granting); each is a
    /// fallback peer for the others when the home host cannot be reached.
    pub replicators: BTreeMap<RecordId, Vec<NodeId>>,
    /// Ground truth: every entry honest nodes wrote, applied in the order written.
    pub oracle: BTreeMap<RecordId, Record>,
    /// When each honest entry was written.
    pub created: BTreeMap<EntryId, Time>,
    /// Delay from writing an entry to each honest node holding it.
    pub arrivals: Vec<(NodeId, EntryId, Time)>,
    pub revocations: Vec<Revocation>,
    pub forged: BTreeSet<EntryId>,
    pub attacks: Vec<AttackLog>,
    tap: VecDeque<(NodeId, Request)>,
    pub counters: Counters,
    pub violations: Vec<String>,
    pub last_write: Time,
    /// When the last fault ended (a partition healed, a node came back, loss stopped).
    pub last_fault_end: Time,
    pub last_gain: Time,
    pub series: Vec<(Time, f64)>,
    /// Fault windows for the plot: start, end, label.
    pub windows: Vec<(Time, Time, String)>,
    open_windows: BTreeMap<String, Time>,
    down_since: BTreeMap<NodeId, Time>,
}

fn refused(reason: &str) -> Response {
    Response::Refused {
        code: sync::Refusal::NoAccess,
        reason: reason.into(),
    }
}

const NO_ACCESS: &str = "no access";

fn request_kind(r: &Request) -> &'static str {
    match r {
        Request::Digests { .. } => "digests",
        Request::Pull { .. } => "pull",
        Request::Push { .. } => "push",
        Request::Announce { .. } => "announce",
        Request::Host { .. } => "host",
        Request::Release { .. } => "release",
        Request::AuditPull { .. } => "audit-pull",
        Request::AuditPush { .. } => "audit-push",
    }
}

fn bytes_of(v: &Verified) -> ByteBuf {
    ByteBuf::from(v.signed().bytes().to_vec())
}

impl Sim {
    pub(crate) fn new(seed: u64, cfg: Config) -> Self {
        Sim {
            seed,
            now: 0,
            cfg,
            rng: Rng::new(seed, 0),
            nonce_rng: Rng::new(seed, 1),
            queue: BinaryHeap::new(),
            qseq: 0,
            next_session: 1,
            nodes: Vec::new(),
            net: Net::new(seed),
            peers: BTreeMap::new(),
            directory: BTreeMap::new(),
            replicators: BTreeMap::new(),
            oracle: BTreeMap::new(),
            created: BTreeMap::new(),
            arrivals: Vec::new(),
            revocations: Vec::new(),
            forged: BTreeSet::new(),
            attacks: Vec::new(),
            tap: VecDeque::new(),
            counters: Counters::default(),
            violations: Vec::new(),
            last_write: 0,
            last_fault_end: 0,
            last_gain: 0,
            series: Vec::new(),
            windows: Vec::new(),
            open_windows: BTreeMap::new(),
            down_since: BTreeMap::new(),
        }
    }

    /// Adds a node whose key is derived from the seed and its name.
    pub(crate) fn add_node(&mut self, name: &str, role: Role) -> NodeId {
        let id = self.nodes.len();
        let key = cophr_protocol::testkit::key(self.seed, name);
        let peer = format!("sim-peer/{id}/{name}").into_bytes();
        let skew = self.rng.range(0, 4000) as i64 - 2000;
        self.peers.insert(peer.clone(), id);
        self.nodes.push(Node {
            name: name.to_string(),
            role,
            peer,
            key,
            skew,
            up: true,
            replicas: BTreeMap::new(),
            nonces: NonceCache::new(NONCE_CAPACITY),
            sessions: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            procs: BTreeMap::new(),
        });
        id
    }

    /// A node's clock (virtual time plus its skew), as a wall-clock timestamp.
    pub(crate) fn clock(&self, n: NodeId) -> Timestamp {
        (EPOCH as i64 + self.now as i64 + self.nodes[n].skew) as Timestamp
    }

    pub(crate) fn at(&mut self, at: Time, act: Act) {
        self.push(at, Event::Act(act));
    }

    fn push(&mut self, at: Time, ev: Event) {
        self.qseq += 1;
        self.queue.push(Queued {
            at,
            seq: self.qseq,
            ev,
        });
    }

    /// Runs every event up to the end, then samples once more.
    pub(crate) fn run(&mut self) {
        self.push(0, Event::Sample);
        while let Some(q) = self.queue.pop() {
            if q.at > self.cfg.end {
                break;
            }
            self.now = q.at;
            self.dispatch(q.ev);
        }
        self.now = self.cfg.end;
        let open: Vec<(String, Time)> =
            std::mem::take(&mut self.open_windows).into_iter().collect();
        for (label, start) in open {
            self.windows.push((start, self.now, label));
        }
        self.sample();
    }

    fn dispatch(&mut self, ev: Event) {
        match ev {
            Event::Deliver {
                from,
                to,
                session,
                step,
                request,
                bytes,
            } => {
                if !self.nodes[to].up || !self.net.reachable(from, to) {
                    self.net.lost += 1;
                    return;
                }
                if request {
                    self.on_request(to, from, session, step, &bytes);
                } else {
                    self.on_response(to, from, session, step, &bytes);
                }
            }
            Event::Timeout {
                node,
                session,
                step,
            } => {
                let live = self.nodes[node]
                    .sessions
                    .get(&session)
                    .is_some_and(|s| s.step == step);
                if live {
                    self.end_session(node, session, Err(Fail::Timeout));
                }
            }
            Event::Tick {
                node,
                record,
                periodic,
            } => self.tick(node, record, periodic),
            Event::Act(a) => self.act(a),
            Event::Sample => {
                self.sample();
                let next = self.now + self.cfg.sample_every;
                self.push(next, Event::Sample);
            }
        }
    }

    // ---------------------------------------------------------------- transport

    fn send(
        &mut self,
        from: NodeId,
        to: NodeId,
        session: u64,
        step: u32,
        request: bool,
        b: Vec<u8>,
    ) {
        if !self.nodes[from].up {
            return;
        }
        match self.net.send(from, to, b.len()) {
            Fate::Lost => {}
            Fate::Deliver(delays) => {
                let bytes = std::rc::Rc::new(b);
                for d in delays {
                    self.push(
                        self.now + d,
                        Event::Deliver {
                            from,
                            to,
                            session,
                            step,
                            request,
                            bytes: bytes.clone(),
                        },
                    );
                }
            }
        }
    }

    fn request(&mut self, from: NodeId, to: NodeId, session: u64, step: u32, req: &Request) {
        *self.counters.requests.entry(request_kind(req)).or_default() += 1;
        let bytes = sync::encode(req);
        self.send(from, to, session, step, true, bytes);
        if session != 0 {
            self.push(
                self.now + self.cfg.timeout,
                Event::Timeout {
                    node: from,
                    session,
                    step,
                },
            );
        }
    }

    fn proof(&mut self, n: NodeId, record: RecordId, peer: NodeId) -> Proof {
        let nonce = self.nonce_rng.nonce();
        Proof::new(
            &self.nodes[n].key,
            record,
            &self.nodes[n].peer,
            &self.nodes[peer].peer,
            nonce,
            self.clock(n),
        )
    }

    // ---------------------------------------------------------------- server

    fn on_request(&mut self, s: NodeId, c: NodeId, session: u64, step: u32, bytes: &[u8]) {
        let resp = match sync::decode::<Request>(bytes) {
            Err(e) => refused(&format!("malformed request: {e}")),
            Ok(req) => {
                let both_honest = self.nodes[c].honest() && self.nodes[s].honest();
                if both_honest && matches!(req, Request::Digests { .. } | Request::Pull { .. }) {
                    // The hostile node's tap on the network.
                    if self.tap.len() >= TAP {
                        self.tap.pop_front();
                    }
                    self.tap.push_back((s, req.clone()));
                }
                if self.nodes[s].honest() {
                    self.serve(s, c, req)
                } else {
                    self.serve_hostile(s, c, req)
                }
            }
        };
        self.send(s, c, session, step, false, sync::encode(&resp));
    }

    fn check_proof(&mut self, s: NodeId, c: NodeId, proof: &Proof) -> Result<ActorId, Response> {
        let now = self.clock(s);
        let (client, server) = (self.nodes[c].peer.clone(), self.nodes[s].peer.clone());
        proof
            .check(&client, &server, now, &mut self.nodes[s].nonces)
            .map_err(|e| refused(&e.to_string()))
    }

    fn viewer_of(
        &self,
        s: NodeId,
        record: &RecordId,
        actor: &ActorId,
    ) -> Option<cophr_protocol::fold::Viewer> {
        let now = self.clock(s);
        let v = self.nodes[s]
            .replicas
            .get(record)?
            .record
            .viewer(actor, now);
        v.has_access().then_some(v)
    }

    fn subscribe(&mut self, s: NodeId, record: RecordId, c: NodeId) {
        let subs = self.nodes[s].subscribers.entry(record).or_default();
        if subs.len() < MAX_SUBSCRIBERS {
            subs.insert(c);
        }
    }

    /// Answers one request the way `node/src/net/server.rs` does.
    fn serve(&mut self, s: NodeId, c: NodeId, req: Request) -> Response {
        match req {
            Request::Announce { record } => {
                self.announced(s, c, record);
                Response::Ack
            }
            Request::Digests { proof, digests } => {
                let actor = match self.check_proof(s, c, &proof) {
                    Ok(a) => a,
                    Err(r) => return r,
                };
                let Some(viewer) = self.viewer_of(s, &proof.record, &actor) else {
                    return refused(NO_ACCESS);
                };
                let streams = self.nodes[s].replicas[&proof.record]
                    .record
                    .differing(&viewer, &digests);
                self.subscribe(s, proof.record, c);
                Response::Differ { streams }
            }
            Request::Pull {
                proof,
                frontier,
                limit,
            } => {
                let actor = match self.check_proof(s, c, &proof) {
                    Ok(a) => a,
                    Err(r) => return r,
                };
                let Some(viewer) = self.viewer_of(s, &proof.record, &actor) else {
                    return refused(NO_ACCESS);
                };
                let limit = (limit as usize).clamp(1, MAX_BATCH);
                let (entries, more, frontier) = {
                    let r = &self.nodes[s].replicas[&proof.record].record;
                    let (es, more, f) =
                        r.entries_beyond(&viewer, &frontier, limit, sync::MAX_BATCH_BYTES);
                    (es.into_iter().map(bytes_of).collect::<Vec<_>>(), more, f)
                };
                self.counters.entries_served += entries.len() as u64;
                self.subscribe(s, proof.record, c);
                Response::Entries {
                    entries,
                    more,
                    frontier,
                }
            }
            Request::Push { proof, entries, .. } => {
                let actor = match self.check_proof(s, c, &proof) {
                    Ok(a) => a,
                    Err(r) => return r,
                };
                let record = proof.record;
                if self.nodes[s].replicas.contains_key(&record) {
                    if self.viewer_of(s, &record, &actor).is_none() {
                        return refused(NO_ACCESS);
                    }
                } else if actor == record && self.nodes[s].role == Role::Host {
                    // A host takes a record it does not hold only from its patient.
                    let mut rep = Replica::new(record, self.now);
                    rep.hosted = true;
                    self.nodes[s].replicas.insert(record, rep);
                } else {
                    return refused(NO_ACCESS);
                }
                let (accepted, rejected) = self.ingest(s, record, &entries);
                self.subscribe(s, record, c);
                if self.nodes[s].replicas[&record].record.is_empty() {
                    // Nothing usable arrived for a record it did not hold.
                    self.nodes[s].replicas.remove(&record);
                }
                if !accepted.is_empty() {
                    self.changed(s, record, Some(c));
                }
                Response::Pushed { accepted, rejected }
            }
            Request::Host { proof, pointer } => {
                let actor = match self.check_proof(s, c, &proof) {
                    Ok(a) => a,
                    Err(r) => return r,
                };
                if actor != proof.record {
                    return refused(NO_ACCESS);
                }
                let p = match SignedPointer::decode(&pointer, &proof.record) {
                    Ok(p) => p,
                    Err(e) => return refused(&e.to_string()),
                };
                if p.pointer.host != self.nodes[s].peer {
                    return refused("the pointer names another host");
                }
                let Some(rep) = self.nodes[s].replicas.get_mut(&proof.record) else {
                    return refused("push the record before asking to host it");
                };
                rep.hosted = true;
                let newer = self
                    .directory
                    .get(&proof.record)
                    .is_none_or(|old| p.newer_than(old));
                if newer {
                    self.directory.insert(proof.record, p);
                }
                Response::Ack
            }
            Request::Release { proof } => {
                let actor = match self.check_proof(s, c, &proof) {
                    Ok(a) => a,
                    Err(r) => return r,
                };
                if actor != proof.record || !self.nodes[s].replicas.contains_key(&proof.record) {
                    return refused(NO_ACCESS);
                }
                self.nodes[s].replicas.remove(&proof.record);
                self.nodes[s].subscribers.remove(&proof.record);
                Response::Ack
            }
            Request::AuditPull { .. } | Request::AuditPush { .. } => {
                refused("the audit exchange is not simulated")
            }
        }
    }

    /// Validates and stores pushed entries, one by one so each refusal has its reason.
    fn ingest(
        &mut self,
        s: NodeId,
        record: RecordId,
        entries: &[ByteBuf],
    ) -> (Vec<EntryId>, Vec<(EntryId, String)>) {
        let mut decoded = Vec::new();
        let mut rejected = Vec::new();
        for b in entries.iter().take(MAX_BATCH) {
            match SignedEntry::decode(b) {
                Ok(e) if e.entry().record == record => decoded.push(e),
                Ok(e) => rejected.push((e.id(), "entry for another record".to_string())),
                Err(err) => rejected.push((EntryId([0; 32]), err.to_string())),
            }
        }
        let verified: Vec<Verified> = match verify_batch(decoded.clone()) {
            Ok(v) => v,
            Err(_) => decoded
                .into_iter()
                .filter_map(|e| {
                    let id = e.id();
                    match e.verify() {
                        Ok(v) => Some(v),
                        Err(err) => {
                            rejected.push((id, err.to_string()));
                            None
                        }
                    }
                })
                .collect(),
        };
        let mut accepted = Vec::new();
        for v in verified {
            let id = v.id();
            let res = match self.nodes[s].replicas.get_mut(&record) {
                Some(rep) => rep.record.apply(v),
                None => continue,
            };
            match res {
                Ok(Applied::Added { .. }) => {
                    self.gained(s, record, id);
                    accepted.push(id);
                }
                Ok(Applied::Duplicate) => accepted.push(id),
                Err(e) => rejected.push((id, e.to_string())),
            }
        }
        (accepted, rejected)
    }

    /// Something changed in `record` at `n`: tell subscribers, and push on to the home host.
    fn changed(&mut self, n: NodeId, record: RecordId, from: Option<NodeId>) {
        let subs: Vec<NodeId> = self.nodes[n]
            .subscribers
            .get(&record)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for peer in subs {
            if Some(peer) != from {
                self.request(n, peer, 0, 0, &Request::Announce { record });
            }
        }
        let Some(rep) = self.nodes[n].replicas.get(&record) else {
            return;
        };
        if rep.hosted {
            return;
        }
        if let Some(home) = rep.home {
            if Some(home) != from && home != n {
                self.request_sync(n, record, home);
            }
        }
    }

    /// A peer says a record changed: pull from it if it is a known source.
    fn announced(&mut self, n: NodeId, from: NodeId, record: RecordId) {
        let Some(rep) = self.nodes[n].replicas.get(&record) else {
            return;
        };
        if rep.hosted {
            return;
        }
        let known = rep.home == Some(from)
            || self
                .replicators
                .get(&record)
                .is_some_and(|f| f.contains(&from));
        if known {
            self.request_sync(n, record, from);
        }
    }

    // ---------------------------------------------------------------- hostile server

    /// The hostile node answers pulls with forged entries.
    fn serve_hostile(&mut self, h: NodeId, _c: NodeId, req: Request) -> Response {
        match req {
            Request::Announce { .. } => Response::Ack,
            Request::Digests { proof, .. } => {
                let mut streams: Vec<Stream> = vec![None, Some(Category::Problems)];
                if let Some(rep) = self.nodes[h].replicas.get(&proof.record) {
                    streams.extend(rep.record.streams());
                }
                streams.sort();
                streams.dedup();
                Response::Differ { streams }
            }
            Request::Pull { proof, .. } => {
                let which = self.rng.below(3);
                let forged = match which {
                    0 => self.forge(h, proof.record, Attack::ForgedSignature),
                    1 => self.forge(h, proof.record, Attack::Escalate),
                    _ => self.forge(h, proof.record, Attack::Tampered),
                };
                Response::Entries {
                    entries: forged
                        .into_iter()
                        .map(|e| ByteBuf::from(e.bytes().to_vec()))
                        .collect(),
                    more: false,
                    frontier: Frontier::new(),
                }
            }
            Request::Push { .. } => Response::Pushed {
                accepted: Vec::new(),
                rejected: Vec::new(),
            },
            _ => refused(NO_ACCESS),
        }
    }

    /// Builds forged entries of one kind from what node `h` holds of `record`.
    fn forge(&mut self, h: NodeId, record: RecordId, kind: Attack) -> Vec<SignedEntry> {
        let now = self.clock(h);
        let node = &self.nodes[h];
        let Some(rep) = node.replicas.get(&record) else {
            return Vec::new();
        };
        let r = &rep.record;
        let me = node.actor();
        let problem = body::body(&Category::Problems, self.seed ^ now);
        let out = match kind {
            Attack::ForgedSignature => {
                let e = r.next_entry(
                    &record,
                    Payload::Create {
                        category: Category::Problems,
                        body: problem,
                    },
                    None,
                    now,
                    None,
                );
                vec![e.sign(&node.key)]
            }
            Attack::Tampered => match r.entries().last() {
                Some(v) => {
                    let mut b = v.signed().bytes().to_vec();
                    if let Some(x) = b.last_mut() {
                        *x ^= 0x5a;
                    }
                    SignedEntry::decode(&b).into_iter().collect()
                }
                None => Vec::new(),
            },
            Attack::Escalate | Attack::RevokedWrite => {
                // Under the actor's best grant, or its revoked one for a revoked write.
                let grants: Vec<EntryId> = {
                    let mut g: Vec<EntryId> = r
                        .grants()
                        .filter(|g| g.grant.grantee == me)
                        .map(|g| g.id)
                        .collect();
                    g.sort();
                    g
                };
                let auth = grants.first().copied();
                let (category, body) = if kind == Attack::RevokedWrite {
                    (Category::VitalSigns, cophr_protocol::testkit::bp(150, 95))
                } else if self.nonce_rng.chance(0.5) {
                    (Category::Problems, problem)
                } else {
                    let b = body::body(&Category::Allergies, now);
                    (Category::Allergies, b)
                };
                let e = r.next_entry(&me, Payload::Create { category, body }, auth, now, None);
                vec![e.sign(&node.key)]
            }
            _ => Vec::new(),
        };
        for e in &out {
            self.forged.insert(e.id());
        }
        out
    }

    // ---------------------------------------------------------------- client

    fn new_session(&mut self, n: NodeId, s: Session) -> u64 {
        let id = self.next_session;
        self.next_session += 1;
        self.nodes[n].sessions.insert(id, s);
        id
    }

    /// Starts a sync with `peer` unless one is in flight (then syncs again after it).
    fn request_sync(&mut self, n: NodeId, record: RecordId, peer: NodeId) {
        let Some(rep) = self.nodes[n].replicas.get_mut(&record) else {
            return;
        };
        if rep.busy.is_some() {
            rep.again = Some(peer);
            return;
        }
        self.start_sync(n, record, peer, Purpose::Sync, None);
    }

    /// Digests → Differ; Pull → Entries (repeated while `more`); Push → Pushed when `push`.
    fn start_sync(
        &mut self,
        n: NodeId,
        record: RecordId,
        peer: NodeId,
        purpose: Purpose,
        force_push: Option<bool>,
    ) {
        if !self.nodes[n].up || peer == n {
            return;
        }
        let Some(rep) = self.nodes[n].replicas.get(&record) else {
            return;
        };
        let push = force_push.unwrap_or(rep.home == Some(peer) && rep.dirty > rep.clean);
        let gen = rep.dirty;
        let digests = rep.record.digests();
        let sid = self.new_session(
            n,
            Session {
                record,
                peer,
                step: 0,
                push,
                purpose,
                state: SState::Differ,
                gen,
                pulled: 0,
                pushed: 0,
                rejected: 0,
            },
        );
        if purpose == Purpose::Sync {
            if let Some(rep) = self.nodes[n].replicas.get_mut(&record) {
                rep.busy = Some(sid);
            }
            self.counters.syncs += 1;
        }
        let proof = self.proof(n, record, peer);
        self.request(n, peer, sid, 0, &Request::Digests { proof, digests });
    }

    fn next_step(&mut self, n: NodeId, sid: u64) -> Option<(u32, RecordId, NodeId)> {
        let s = self.nodes[n].sessions.get_mut(&sid)?;
        s.step += 1;
        Some((s.step, s.record, s.peer))
    }

    /// What this replica holds of `differ`: the frontier a pull sends.
    fn ask(&self, n: NodeId, record: &RecordId, differ: &[Stream]) -> Frontier {
        let mine = self.nodes[n].replicas[record].record.frontier();
        differ
            .iter()
            .map(|s| (s.clone(), mine.get(s).cloned().unwrap_or_default()))
            .collect()
    }

    fn send_pull(&mut self, n: NodeId, sid: u64, differ: Vec<Stream>) {
        let Some((step, record, peer)) = self.next_step(n, sid) else {
            return;
        };
        let ask = self.ask(n, &record, &differ);
        if let Some(s) = self.nodes[n].sessions.get_mut(&sid) {
            s.state = SState::Entries {
                differ,
                asked: ask.clone(),
            };
        }
        let proof = self.proof(n, record, peer);
        let limit = self.cfg.pull_limit;
        self.request(
            n,
            peer,
            sid,
            step,
            &Request::Pull {
                proof,
                frontier: ask,
                limit,
            },
        );
    }

    fn send_next_push(&mut self, n: NodeId, sid: u64) {
        let batch = match self.nodes[n].sessions.get_mut(&sid) {
            Some(Session {
                state: SState::Pushed { batches },
                ..
            }) => batches.pop_front(),
            _ => None,
        };
        let Some(entries) = batch else {
            self.end_session(n, sid, Ok(()));
            return;
        };
        let Some((step, record, peer)) = self.next_step(n, sid) else {
            return;
        };
        self.counters.entries_pushed += entries.len() as u64;
        let proof = self.proof(n, record, peer);
        self.request(
            n,
            peer,
            sid,
            step,
            &Request::Push {
                proof,
                entries,
                invitation: None,
            },
        );
    }

    /// What this replica holds beyond `theirs` (in `streams`, or all), in push batches.
    fn push_batches(
        &self,
        n: NodeId,
        record: &RecordId,
        streams: Option<&[Stream]>,
        theirs: &Frontier,
    ) -> VecDeque<Vec<ByteBuf>> {
        let r = &self.nodes[n].replicas[record].record;
        let viewer = r.viewer(&self.nodes[n].actor(), self.clock(n));
        let ask: Frontier = r
            .frontier()
            .keys()
            .filter(|s| streams.is_none_or(|ss| ss.contains(s)))
            .map(|s| (s.clone(), theirs.get(s).cloned().unwrap_or_default()))
            .collect();
        let (entries, _, _) = r.entries_beyond(&viewer, &ask, usize::MAX, usize::MAX);
        entries
            .chunks(self.cfg.push_batch.clamp(1, MAX_BATCH))
            .map(|c| c.iter().map(|e| bytes_of(e)).collect())
            .collect()
    }

    fn on_response(&mut self, n: NodeId, from: NodeId, sid: u64, step: u32, bytes: &[u8]) {
        let Some(s) = self.nodes[n].sessions.get(&sid) else {
            self.counters.stale_responses += u64::from(sid != 0);
            return;
        };
        if s.step != step || s.peer != from {
            self.counters.stale_responses += 1;
            return;
        }
        let resp = match sync::decode::<Response>(bytes) {
            Ok(r) => r,
            Err(e) => return self.end_session(n, sid, Err(Fail::Protocol(e.to_string()))),
        };
        if let Purpose::Attack(i) = s.purpose {
            self.attack_answer(n, sid, i, resp);
            return;
        }
        let (record, push, purpose) = (s.record, s.push, s.purpose);
        let is_patient = self.nodes[n].actor() == record;
        match (&s.state, resp) {
            (SState::Differ, Response::Differ { streams }) => {
                let mut differ = streams;
                if push {
                    for st in self.nodes[n].replicas[&record].record.streams() {
                        if !differ.contains(&st) {
                            differ.push(st);
                        }
                    }
                }
                if differ.is_empty() {
                    self.end_session(n, sid, Ok(()));
                } else {
                    self.send_pull(n, sid, differ);
                }
            }
            (SState::Differ, Response::Refused { .. })
                if push
                    && is_patient
                    && purpose == Purpose::Proc
                    && !self.nodes[n].replicas[&record].record.is_empty() =>
            {
                // A host that does not hold the patient's record yet: give it everything.
                let batches = self.push_batches(n, &record, None, &Frontier::new());
                if let Some(s) = self.nodes[n].sessions.get_mut(&sid) {
                    s.state = SState::Pushed { batches };
                }
                self.send_next_push(n, sid);
            }
            (_, Response::Refused { reason, .. }) => {
                self.end_session(n, sid, Err(Fail::Refused(reason)))
            }
            (
                SState::Entries { differ, asked },
                Response::Entries {
                    entries,
                    more,
                    frontier,
                },
            ) => {
                let (differ, asked) = (differ.clone(), asked.clone());
                if let Err(f) = self.take_entries(n, sid, record, &entries) {
                    self.counters.bad_batches += 1;
                    return self.end_session(n, sid, Err(f));
                }
                // Pull on while the server has more and the frontier moved (asking the same
                // frontier again would be served the same batch, forever).
                if more && self.ask(n, &record, &differ) != asked {
                    self.send_pull(n, sid, differ);
                } else if push {
                    let batches = self.push_batches(n, &record, Some(&differ), &frontier);
                    if let Some(s) = self.nodes[n].sessions.get_mut(&sid) {
                        s.state = SState::Pushed { batches };
                    }
                    self.send_next_push(n, sid);
                } else {
                    self.end_session(n, sid, Ok(()));
                }
            }
            (SState::Pushed { .. }, Response::Pushed { accepted, rejected }) => {
                if let Some(s) = self.nodes[n].sessions.get_mut(&sid) {
                    s.pushed += accepted.len();
                    s.rejected += rejected.len();
                }
                self.send_next_push(n, sid);
            }
            (SState::Ack, Response::Ack) => self.end_session(n, sid, Ok(())),
            _ => self.end_session(n, sid, Err(Fail::Protocol("unexpected response".into()))),
        }
    }

    /// Decodes, verifies and applies pulled entries in order, buffering those whose
    /// parents are missing. A batch that does not decode or verify is refused whole.
    fn take_entries(
        &mut self,
        n: NodeId,
        sid: u64,
        record: RecordId,
        entries: &[ByteBuf],
    ) -> Result<usize, Fail> {
        let mut decoded = Vec::with_capacity(entries.len());
        for b in entries {
            let e = SignedEntry::decode(b).map_err(|e| Fail::BadEntries(e.to_string()))?;
            if e.entry().record != record {
                return Err(Fail::BadEntries("entry for another record".into()));
            }
            decoded.push(e);
        }
        let verified =
            verify_batch(decoded).map_err(|(i, e)| Fail::BadEntries(format!("entry {i}: {e}")))?;
        let mut pulled = 0;
        for v in verified {
            if self.receive(n, record, v) {
                pulled += 1;
            }
        }
        if let Some(s) = self.nodes[n].sessions.get_mut(&sid) {
            s.pulled += pulled;
        }
        Ok(pulled)
    }

    /// Applies one received entry; returns whether it was added.
    fn receive(&mut self, n: NodeId, record: RecordId, v: Verified) -> bool {
        let id = v.id();
        let Some(rep) = self.nodes[n].replicas.get_mut(&record) else {
            return false;
        };
        match rep.record.apply(v.clone()) {
            Ok(Applied::Added { .. }) => {
                self.gained(n, record, id);
                self.drain_pending(n, record);
                true
            }
            Ok(Applied::Duplicate) => false,
            Err(Rejection::MissingParents(_)) => {
                if rep.pending.len() < MAX_PENDING && !rep.pending.iter().any(|p| p.id() == id) {
                    rep.pending.push(v);
                }
                false
            }
            Err(e) => {
                if trace::node(&self.nodes[n].name) {
                    eprintln!(
                        "[{}] {} refused served entry {}: {e}",
                        fmt_time(self.now),
                        self.nodes[n].name,
                        id.short()
                    );
                }
                self.counters.served_refused += 1;
                false
            }
        }
    }

    fn drain_pending(&mut self, n: NodeId, record: RecordId) {
        loop {
            let Some(rep) = self.nodes[n].replicas.get_mut(&record) else {
                return;
            };
            if rep.pending.is_empty() {
                return;
            }
            let waiting = std::mem::take(&mut rep.pending);
            let mut added = Vec::new();
            for v in waiting {
                let id = v.id();
                match rep.record.apply(v.clone()) {
                    Ok(Applied::Added { .. }) => added.push(id),
                    Ok(Applied::Duplicate) => {}
                    Err(Rejection::MissingParents(_)) => rep.pending.push(v),
                    Err(_) => self.counters.served_refused += 1,
                }
            }
            if added.is_empty() {
                return;
            }
            for id in added {
                self.gained(n, record, id);
            }
        }
    }

    /// An honest node now holds an entry it did not hold.
    fn gained(&mut self, n: NodeId, record: RecordId, id: EntryId) {
        if !self.nodes[n].honest() {
            return;
        }
        if trace::entry(&id) {
            eprintln!(
                "[{}] {} gained {}",
                fmt_time(self.now),
                self.nodes[n].name,
                id.short()
            );
        }
        if let Some(&t) = self.created.get(&id) {
            let since = self.nodes[n]
                .replicas
                .get(&record)
                .map_or(t, |r| r.since.max(t));
            self.arrivals.push((n, id, self.now - since));
            self.last_gain = self.now;
        }
    }

    fn end_session(&mut self, n: NodeId, sid: u64, result: Result<(), Fail>) {
        let Some(s) = self.nodes[n].sessions.remove(&sid) else {
            return;
        };
        match s.purpose {
            Purpose::Sync => self.sync_done(n, s, result),
            Purpose::Proc => self.proc_done(n, s.record, result.is_ok(), s.pushed, s.rejected),
            // An attack unanswered (lost, or its target down) stays unjudged.
            Purpose::Attack(_) => {}
        }
    }

    fn sync_done(&mut self, n: NodeId, s: Session, result: Result<(), Fail>) {
        let record = s.record;
        if trace::node(&self.nodes[n].name) {
            let pending = self.nodes[n]
                .replicas
                .get(&record)
                .map_or(0, |r| r.pending.len());
            eprintln!(
                "[{}] {} synced {} with {} (push {}): {:?}; pulled {}, pushed {}, rejected {}, \
                 pending {}",
                fmt_time(self.now),
                self.nodes[n].name,
                record.short(),
                self.nodes[s.peer].name,
                s.push,
                result,
                s.pulled,
                s.pushed,
                s.rejected,
                pending
            );
        }
        let Some(rep) = self.nodes[n].replicas.get_mut(&record) else {
            return;
        };
        rep.busy = None;
        let from_home = rep.home == Some(s.peer);
        if result.is_err() {
            self.counters.syncs_failed += 1;
        }
        match &result {
            Ok(()) if from_home => {
                rep.home_fails = 0;
                if s.push && s.rejected == 0 {
                    rep.clean = rep.clean.max(s.gen);
                }
            }
            Ok(()) => {
                if s.pulled > 0 {
                    // What came from another replica may be missing at the home host.
                    rep.dirty += 1;
                }
            }
            Err(_) if from_home => {
                rep.home_fails += 1;
                let soon = self.now + self.rng.range(3_000, 12_000);
                self.push(
                    soon,
                    Event::Tick {
                        node: n,
                        record,
                        periodic: false,
                    },
                );
            }
            Err(_) => {}
        }
        if let (Err(Fail::Refused(_)), true) = (&result, from_home) {
            // The home may have moved: follow the newest pointer in the DHT.
            self.follow_directory(n, record);
        }
        if s.pulled > 0 {
            self.follow_moves(n, record);
            self.changed(n, record, Some(s.peer));
        }
        let again = self.nodes[n]
            .replicas
            .get_mut(&record)
            .and_then(|r| r.again.take());
        if let Some(p) = again {
            self.request_sync(n, record, p);
        }
    }

    /// Looks the record's home up in the DHT (checking the patient's signature).
    fn follow_directory(&mut self, n: NodeId, record: RecordId) {
        let Some(p) = self.directory.get(&record) else {
            return;
        };
        let Ok(p) = SignedPointer::decode(&p.encode(), &record) else {
            return;
        };
        let Some(&host) = self.peers.get(&p.pointer.host) else {
            return;
        };
        self.set_home(n, record, host);
    }

    /// Follows the newest move-home entry the patient wrote.
    fn follow_moves(&mut self, n: NodeId, record: RecordId) {
        let latest = self.nodes[n].replicas[&record]
            .record
            .entries()
            .filter(|e| e.entry().author == record)
            .filter_map(|e| match &e.entry().payload {
                Payload::MoveHome { host, .. } => Some((e.entry().time, e.id(), host.clone())),
                _ => None,
            })
            .max();
        if let Some((_, _, host)) = latest {
            if let Some(&h) = self.peers.get(&host) {
                self.set_home(n, record, h);
            }
        }
    }

    fn set_home(&mut self, n: NodeId, record: RecordId, host: NodeId) {
        let Some(rep) = self.nodes[n].replicas.get_mut(&record) else {
            return;
        };
        if rep.hosted || rep.home == Some(host) || host == n {
            return;
        }
        let moved = rep.home.is_some();
        rep.home = Some(host);
        rep.home_fails = 0;
        if moved {
            // The new home may lack what was pushed to the old one.
            rep.dirty += 1;
            self.counters.moves_followed += 1;
        } else {
            self.counters.homes_found += 1;
        }
    }

    /// Periodic catch-up (and quick retries after a failure): with the home host, or after
    /// a failure, alternately with another replica.
    fn tick(&mut self, n: NodeId, record: RecordId, periodic: bool) {
        if periodic {
            let next = self.now + self.cfg.sync_every + self.rng.below(self.cfg.sync_jitter + 1);
            self.push(
                next,
                Event::Tick {
                    node: n,
                    record,
                    periodic: true,
                },
            );
        }
        if !self.nodes[n].up {
            return;
        }
        let Some(rep) = self.nodes[n].replicas.get(&record) else {
            return;
        };
        if rep.busy.is_some() || rep.hosted {
            return;
        }
        if rep.home.is_none() {
            self.follow_directory(n, record);
        }
        let rep = &self.nodes[n].replicas[&record];
        let peers: Vec<NodeId> = self
            .replicators
            .get(&record)
            .map(|f| f.iter().copied().filter(|p| *p != n).collect())
            .unwrap_or_default();
        // After a failed sync with the home host, the next attempt goes to another replica,
        // the one after that to the home host again.
        let fallback = rep.home_fails > 0 && !peers.is_empty() && !rep.tried_fallback;
        let target = if fallback {
            let i = rep.next_peer % peers.len();
            if let Some(rep) = self.nodes[n].replicas.get_mut(&record) {
                rep.next_peer += 1;
                rep.tried_fallback = true;
            }
            Some(peers[i])
        } else {
            let home = rep.home;
            if let Some(rep) = self.nodes[n].replicas.get_mut(&record) {
                rep.tried_fallback = false;
            }
            home
        };
        if let Some(t) = target {
            if t != n {
                self.start_sync(n, record, t, Purpose::Sync, None);
            }
        }
    }

    // ---------------------------------------------------------------- the patient's procedures

    fn proc_advance(&mut self, n: NodeId, record: RecordId) {
        let Some(p) = self.nodes[n].procs.get(&record).cloned() else {
            return;
        };
        if !self.nodes[n].up {
            return;
        }
        match p.stage {
            Stage::PushAll | Stage::Check | Stage::PushMove => {
                self.start_sync(n, record, p.to, Purpose::Proc, Some(true));
            }
            Stage::Host => {
                let seq = self.nodes[n].replicas[&record].pointer_seq + 1;
                let pointer = HomePointer {
                    record,
                    host: self.nodes[p.to].peer.clone(),
                    addrs: vec![format!("/sim/{}", self.nodes[p.to].name)],
                    seq,
                    time: self.clock(n),
                    heads: self.nodes[n].replicas[&record].record.heads(),
                }
                .sign(&self.nodes[n].key);
                let sid = self.new_session(
                    n,
                    Session {
                        record,
                        peer: p.to,
                        step: 0,
                        push: false,
                        purpose: Purpose::Proc,
                        state: SState::Ack,
                        gen: 0,
                        pulled: 0,
                        pushed: 0,
                        rejected: 0,
                    },
                );
                let proof = self.proof(n, record, p.to);
                self.request(
                    n,
                    p.to,
                    sid,
                    0,
                    &Request::Host {
                        proof,
                        pointer: ByteBuf::from(pointer.encode()),
                    },
                );
            }
            Stage::MoveEntry => {
                let payload = Payload::MoveHome {
                    host: self.nodes[p.to].peer.clone(),
                    addrs: vec![format!("/sim/{}", self.nodes[p.to].name)],
                };
                if self.commit(n, record, payload).is_ok() {
                    self.set_stage(n, record, Stage::PushMove);
                }
                self.proc_advance(n, record);
            }
            Stage::Release => {
                let Some(old) = p.old else { return };
                let sid = self.new_session(
                    n,
                    Session {
                        record,
                        peer: old,
                        step: 0,
                        push: false,
                        purpose: Purpose::Proc,
                        state: SState::Ack,
                        gen: 0,
                        pulled: 0,
                        pushed: 0,
                        rejected: 0,
                    },
                );
                let proof = self.proof(n, record, old);
                self.request(n, old, sid, 0, &Request::Release { proof });
            }
        }
    }

    fn set_stage(&mut self, n: NodeId, record: RecordId, stage: Stage) {
        if let Some(p) = self.nodes[n].procs.get_mut(&record) {
            p.stage = stage;
        }
    }

    fn proc_done(&mut self, n: NodeId, record: RecordId, ok: bool, pushed: usize, rejected: usize) {
        let Some(p) = self.nodes[n].procs.get(&record).cloned() else {
            return;
        };
        let next = match (p.stage, ok) {
            // The old host may refuse a release (it already forgot the record): done.
            (Stage::Release, _) => None,
            (_, false) => {
                let at = self.now + 5_000;
                self.at(at, Act::ProcRetry { node: n, record });
                return;
            }
            (Stage::PushAll, true) => Some(Stage::Check),
            (Stage::Check, true) if pushed == 0 && rejected == 0 => Some(Stage::Host),
            (Stage::Check, true) => Some(Stage::Check),
            (Stage::Host, true) => {
                if let Some(rep) = self.nodes[n].replicas.get_mut(&record) {
                    rep.pointer_seq += 1;
                    rep.home = Some(p.to);
                    rep.home_fails = 0;
                }
                if p.old.is_some() {
                    Some(Stage::MoveEntry)
                } else {
                    None
                }
            }
            (Stage::MoveEntry, true) => Some(Stage::PushMove),
            (Stage::PushMove, true) => match p.old {
                Some(o) if o != p.to => Some(Stage::Release),
                _ => None,
            },
        };
        match next {
            Some(stage) => {
                self.set_stage(n, record, stage);
                self.proc_advance(n, record);
            }
            None => {
                self.nodes[n].procs.remove(&record);
                let open = format!("move {}", self.nodes[n].name);
                if let Some(start) = self.open_windows.remove(&open) {
                    self.windows.push((start, self.now, open));
                }
            }
        }
    }

    // ---------------------------------------------------------------- writes

    /// Prepares and applies everything one action writes at `n`, recording it as truth.
    fn commit(
        &mut self,
        n: NodeId,
        record: RecordId,
        payload: Payload,
    ) -> Result<Vec<EntryId>, Rejection> {
        let now = self.clock(n);
        let device = Some(format!(
            "{}-device",
            self.nodes[n].name.to_lowercase().replace(' ', "-")
        ));
        let vs = {
            let node = &self.nodes[n];
            let rep = node.replicas.get(&record).ok_or(Rejection::NoGenesis)?;
            rep.record.prepare_all(&node.key, payload, now, device)?
        };
        let mut ids = Vec::new();
        for v in vs {
            let id = v.id();
            let rep = self.nodes[n]
                .replicas
                .get_mut(&record)
                .ok_or(Rejection::NoGenesis)?;
            if let Err(e) = rep.record.apply(v.clone()) {
                self.violations.push(format!(
                    "{} could not apply an entry it had just prepared: {e}",
                    self.nodes[n].name
                ));
                return Err(e);
            }
            self.created.insert(id, self.now);
            let o = self
                .oracle
                .entry(record)
                .or_insert_with(|| Record::new(record));
            if let Err(e) = o.apply(v) {
                self.violations.push(format!(
                    "order dependence: {}'s replica accepted its own entry {} but the set of \
                     all entries written refuses it: {e}",
                    self.nodes[n].name,
                    id.short()
                ));
            }
            ids.push(id);
        }
        self.last_write = self.now;
        if let Some(rep) = self.nodes[n].replicas.get_mut(&record) {
            rep.dirty += 1;
        }
        self.changed(n, record, None);
        Ok(ids)
    }

    fn write(&mut self, n: NodeId, record: RecordId, what: WriteKind, expect: Expect) {
        if !self.nodes[n].up || !self.nodes[n].replicas.contains_key(&record) {
            self.counters.writes_skipped += 1;
            return;
        }
        let me = self.nodes[n].actor();
        let revoked_known = {
            let r = &self.nodes[n].replicas[&record].record;
            self.revocations
                .iter()
                .any(|rv| rv.record == record && rv.cuts.contains(&me) && r.contains(&rv.admin))
        };
        // A writer whose replica does not hold its grant yet (not synced since it was
        // granted) cannot write: skipped, not judged.
        let unsynced = me != record
            && self.nodes[n].replicas[&record]
                .record
                .grants_of(&me)
                .is_empty();
        if unsynced && !revoked_known && matches!(expect, Expect::Ok | Expect::RefusedIfRevoked) {
            self.counters.writes_skipped += 1;
            return;
        }
        let seed = self.rng.below(u64::MAX);
        let payload = {
            let r = &self.nodes[n].replicas[&record].record;
            match &what {
                WriteKind::Create(c) => Payload::Create {
                    category: c.clone(),
                    body: body::body(c, seed),
                },
                WriteKind::AmendOwn(c) => {
                    let target = r
                        .entries()
                        .filter(|e| {
                            e.entry().author == me
                                && r.category_of(&e.id()) == Some(c)
                                && matches!(
                                    e.entry().payload,
                                    Payload::Create { .. } | Payload::Amend { .. }
                                )
                        })
                        .map(|e| e.id())
                        .last();
                    match target {
                        Some(target) => Payload::Amend {
                            target,
                            body: body::body(c, seed),
                        },
                        None => Payload::Create {
                            category: c.clone(),
                            body: body::body(c, seed),
                        },
                    }
                }
                WriteKind::Annotate(c) => {
                    let target = r
                        .entries()
                        .filter(|e| {
                            e.entry().author != me
                                && r.category_of(&e.id()) == Some(c)
                                && matches!(
                                    e.entry().payload,
                                    Payload::Create { .. } | Payload::Amend { .. }
                                )
                        })
                        .map(|e| e.id())
                        .last();
                    match target {
                        Some(target) => Payload::Annotate {
                            target,
                            text: "Seen; discussed at home.".into(),
                        },
                        None => Payload::Create {
                            category: c.clone(),
                            body: body::body(c, seed),
                        },
                    }
                }
                WriteKind::Grant(g) => Payload::Grant(g.clone()),
            }
        };
        let result = self.commit(n, record, payload);
        let name = &self.nodes[n].name;
        let must_refuse = match expect {
            Expect::Refused => true,
            Expect::RefusedIfRevoked => revoked_known,
            _ => false,
        };
        match &result {
            Ok(_) => {
                self.counters.writes += 1;
                if must_refuse {
                    self.violations.push(format!(
                        "{name} wrote {what:?} although it may not (revoked known: {revoked_known})"
                    ));
                }
            }
            Err(e) => {
                self.counters.writes_refused += 1;
                if expect == Expect::Ok {
                    self.violations.push(format!(
                        "{name}'s authorised write {what:?} was refused: {e}"
                    ));
                }
            }
        }
        if let (Ok(_), WriteKind::Grant(g)) = (&result, &what) {
            let grantee = self.nodes.iter().position(|x| x.actor() == g.grantee);
            if let Some(gn) = grantee {
                self.add_replica(gn, record);
            }
        }
    }

    /// `n` starts replicating `record` (it was told of a grant): first sync soon, then
    /// periodically.
    pub(crate) fn add_replica(&mut self, n: NodeId, record: RecordId) {
        if self.nodes[n].replicas.contains_key(&record) {
            return;
        }
        self.nodes[n]
            .replicas
            .insert(record, Replica::new(record, self.now));
        let list = self.replicators.entry(record).or_default();
        if !list.contains(&n) {
            list.push(n);
        }
        let first = self.now + self.rng.range(1_000, 8_000);
        self.push(
            first,
            Event::Tick {
                node: n,
                record,
                periodic: true,
            },
        );
    }

    /// The patient's node starts its record with a genesis entry.
    pub(crate) fn genesis(&mut self, n: NodeId, role: &str) -> RecordId {
        let record = self.nodes[n].actor();
        self.nodes[n]
            .replicas
            .insert(record, Replica::new(record, self.now));
        self.replicators.entry(record).or_default().push(n);
        let profile = cophr_protocol::testkit::profile(&self.nodes[n].name, role, None);
        if let Err(e) = self.commit(n, record, Payload::Genesis { profile }) {
            self.violations.push(format!("genesis refused: {e}"));
        }
        let first = self.now + self.rng.range(1_000, 8_000) + self.cfg.sync_every;
        self.push(
            first,
            Event::Tick {
                node: n,
                record,
                periodic: true,
            },
        );
        record
    }

    fn revoke(&mut self, n: NodeId, record: RecordId, grantee: NodeId) {
        if !self.nodes[n].up || !self.nodes[n].replicas.contains_key(&record) {
            self.counters.writes_skipped += 1;
            return;
        }
        let me = self.nodes[n].actor();
        let target = self.nodes[grantee].actor();
        let (grants, cuts) = {
            let r = &self.nodes[n].replicas[&record].record;
            let mut gs: Vec<EntryId> = r
                .grants()
                .filter(|g| g.grant.grantee == target && g.revoked_by.is_empty())
                .filter(|g| me == record || g.issuer == me)
                .map(|g| g.id)
                .collect();
            gs.sort();
            // Everyone whose grant descends from a revoked one is cut too.
            let mut cuts = vec![target];
            for g in r.grants() {
                let mut cur = g.parent;
                let mut depth = 0;
                while let (Some(p), true) = (cur, depth < 64) {
                    if gs.contains(&p) && !cuts.contains(&g.grant.grantee) {
                        cuts.push(g.grant.grantee);
                    }
                    cur = r.grant(&p).and_then(|x| x.parent);
                    depth += 1;
                }
            }
            cuts.sort();
            (gs, cuts)
        };
        for grant in grants {
            let payload = Payload::Revoke {
                grant,
                category: None,
                reason: "access ended".into(),
            };
            match self.commit(n, record, payload) {
                Ok(ids) => {
                    self.counters.writes += 1;
                    if let Some(admin) = ids.last() {
                        self.revocations.push(Revocation {
                            record,
                            admin: *admin,
                            cuts: cuts.clone(),
                        });
                    }
                }
                Err(e) => {
                    self.counters.writes_refused += 1;
                    self.violations
                        .push(format!("{} could not revoke: {e}", self.nodes[n].name));
                }
            }
        }
    }

    // ---------------------------------------------------------------- attacks

    fn attack(&mut self, h: NodeId, record: RecordId, kind: Attack, target: Option<NodeId>) {
        if !self.nodes[h].up {
            return;
        }
        let home = self
            .directory
            .get(&record)
            .and_then(|p| self.peers.get(&p.pointer.host).copied());
        let Some(home) = home else { return };
        let to = target.unwrap_or(home);
        let log = |sim: &mut Sim, expect: AttackExpect, detail: String| -> usize {
            sim.attacks.push(AttackLog {
                kind,
                expect,
                refused: None,
                answered: false,
                detail,
            });
            sim.attacks.len() - 1
        };
        match kind {
            Attack::ForgedSignature
            | Attack::Tampered
            | Attack::Escalate
            | Attack::RevokedWrite
            | Attack::PushToReplica => {
                if kind == Attack::RevokedWrite {
                    // Only once the writer knows it is revoked.
                    let me = self.nodes[h].actor();
                    let knows = self.revocations.iter().any(|rv| {
                        rv.record == record
                            && rv.cuts.contains(&me)
                            && self.nodes[h]
                                .replicas
                                .get(&record)
                                .is_some_and(|r| r.record.contains(&rv.admin))
                    });
                    if !knows {
                        let at = self.now + 30_000;
                        if at < self.cfg.heal {
                            self.at(
                                at,
                                Act::Attack {
                                    node: h,
                                    record,
                                    attack: kind,
                                    target,
                                },
                            );
                        }
                        return;
                    }
                }
                let forge_kind = if kind == Attack::PushToReplica {
                    Attack::ForgedSignature
                } else {
                    kind
                };
                let forged = self.forge(h, record, forge_kind);
                if forged.is_empty() {
                    return;
                }
                let ids: Vec<EntryId> = forged.iter().map(SignedEntry::id).collect();
                let i = log(
                    self,
                    AttackExpect::NoneAccepted(ids),
                    format!("to {}", self.nodes[to].name),
                );
                let proof = self.proof(h, record, to);
                let entries = forged
                    .iter()
                    .map(|e| ByteBuf::from(e.bytes().to_vec()))
                    .collect();
                self.attack_send(
                    h,
                    to,
                    record,
                    i,
                    &Request::Push {
                        proof,
                        entries,
                        invitation: None,
                    },
                );
            }
            Attack::ReplayCaptured => {
                let Some((server, req)) = self.tap.back().cloned() else {
                    return;
                };
                let i = log(
                    self,
                    AttackExpect::Refused,
                    format!("to {}", self.nodes[server].name),
                );
                self.attack_send(h, server, record, i, &req);
            }
            Attack::ReplayOwn => {
                let proof = self.proof(h, record, to);
                let req = Request::Digests {
                    proof,
                    digests: Vec::new(),
                };
                let a = log(self, AttackExpect::Nothing, "first use".into());
                let b = log(self, AttackExpect::NotBoth(a), "second use".into());
                self.attack_send(h, to, record, a, &req);
                self.attack_send(h, to, record, b, &req);
            }
            Attack::StaleProof => {
                let mut proof = self.proof(h, record, to);
                let nonce = self.nonce_rng.nonce();
                proof = Proof::new(
                    &self.nodes[h].key,
                    record,
                    &proof.client,
                    &proof.server,
                    nonce,
                    proof.time - 2 * PROOF_WINDOW_MS,
                );
                let i = log(self, AttackExpect::Refused, String::new());
                self.attack_send(
                    h,
                    to,
                    record,
                    i,
                    &Request::Digests {
                        proof,
                        digests: Vec::new(),
                    },
                );
            }
            Attack::Impersonate => {
                let mut proof = self.proof(h, record, to);
                proof.actor = record;
                let i = log(self, AttackExpect::Refused, String::new());
                self.attack_send(
                    h,
                    to,
                    record,
                    i,
                    &Request::Digests {
                        proof,
                        digests: Vec::new(),
                    },
                );
            }
            Attack::PullUnauthorised => {
                let proof = self.proof(h, record, to);
                let i = log(self, AttackExpect::Refused, String::new());
                let mut frontier = Frontier::new();
                frontier.insert(None, BTreeMap::new());
                self.attack_send(
                    h,
                    to,
                    record,
                    i,
                    &Request::Pull {
                        proof,
                        frontier,
                        limit: 1024,
                    },
                );
            }
            Attack::ProbeStreams => {
                let proof = self.proof(h, record, to);
                let me = self.nodes[h].actor();
                let i = log(self, AttackExpect::OnlyVisible(me), String::new());
                let mut frontier = Frontier::new();
                frontier.insert(None, BTreeMap::new());
                for c in Category::BUILT_IN {
                    frontier.insert(Some(c), BTreeMap::new());
                }
                self.attack_send(
                    h,
                    to,
                    record,
                    i,
                    &Request::Pull {
                        proof,
                        frontier,
                        limit: 1024,
                    },
                );
            }
            Attack::AnnounceSpam => {
                // Judged by its effects: the forged batches clients refuse, the invariants.
                let i = log(self, AttackExpect::Nothing, String::new());
                self.attacks[i].refused = Some(true);
                let targets = self.replicators.get(&record).cloned().unwrap_or_default();
                for t in targets {
                    if t != h {
                        self.request(h, t, 0, 0, &Request::Announce { record });
                    }
                }
            }
        }
    }

    fn attack_send(&mut self, h: NodeId, to: NodeId, record: RecordId, i: usize, req: &Request) {
        let sid = self.new_session(
            h,
            Session {
                record,
                peer: to,
                step: 0,
                push: false,
                purpose: Purpose::Attack(i),
                state: SState::Probe,
                gen: 0,
                pulled: 0,
                pushed: 0,
                rejected: 0,
            },
        );
        self.request(h, to, sid, 0, req);
    }

    fn attack_answer(&mut self, h: NodeId, sid: u64, i: usize, resp: Response) {
        self.nodes[h].sessions.remove(&sid);
        let Some(expect) = self.attacks.get(i).map(|a| a.expect.clone()) else {
            return;
        };
        let is_refusal = matches!(resp, Response::Refused { .. });
        let ok = match &expect {
            AttackExpect::Refused => is_refusal,
            AttackExpect::NoneAccepted(ids) => match &resp {
                Response::Refused { .. } => true,
                Response::Pushed { accepted, .. } => !accepted.iter().any(|a| ids.contains(a)),
                _ => false,
            },
            AttackExpect::OnlyVisible(me) => match &resp {
                Response::Refused { .. } => true,
                Response::Entries {
                    entries, frontier, ..
                } => self.all_visible(me, entries, frontier),
                _ => false,
            },
            // Judged when the run ends, once both uses have had their answer.
            AttackExpect::NotBoth(_) | AttackExpect::Nothing => true,
        };
        let a = &mut self.attacks[i];
        a.answered = !is_refusal;
        a.refused = Some(ok);
        if !ok {
            let msg = format!(
                "{}'s {} ({}) was not refused",
                self.nodes[h].name,
                a.kind.name(),
                a.detail
            );
            self.violations.push(msg);
        }
    }

    /// Judges attacks that can only be judged at the end (a proof used twice).
    pub(crate) fn finish_attacks(&mut self) {
        for j in 0..self.attacks.len() {
            if let AttackExpect::NotBoth(t) = self.attacks[j].expect {
                if self.attacks[j].answered && self.attacks[t].answered {
                    self.attacks[j].refused = Some(false);
                    self.violations
                        .push("a proof of possession was accepted twice".to_string());
                }
            }
        }
    }

    /// Whether every entry and stream in a response is visible to `me` (by the truth).
    fn all_visible(&self, me: &ActorId, entries: &[ByteBuf], frontier: &Frontier) -> bool {
        let Some(e0) = entries.first().and_then(|b| SignedEntry::decode(b).ok()) else {
            return frontier.keys().all(|s| self.stream_visible(me, s, None));
        };
        let record = e0.entry().record;
        let Some(o) = self.oracle.get(&record) else {
            return false;
        };
        let v = o.viewer(me, EPOCH + self.now);
        let entries_ok = entries.iter().all(|b| {
            SignedEntry::decode(b)
                .map(|e| o.can_see(&v, &e.id()))
                .unwrap_or(false)
        });
        entries_ok
            && frontier
                .keys()
                .all(|s| self.stream_visible(me, s, Some(record)))
    }

    fn stream_visible(&self, me: &ActorId, s: &Stream, record: Option<RecordId>) -> bool {
        let records: Vec<&Record> = match record {
            Some(r) => self.oracle.get(&r).into_iter().collect(),
            None => self.oracle.values().collect(),
        };
        records.iter().any(|o| {
            let v = o.viewer(me, EPOCH + self.now);
            o.entries()
                .any(|e| o.stream_of(&e.id()) == Some(s) && o.can_see(&v, &e.id()))
        })
    }

    // ---------------------------------------------------------------- scripted actions

    fn act(&mut self, a: Act) {
        match a {
            Act::Write {
                node,
                record,
                what,
                expect,
            } => self.write(node, record, what, expect),
            Act::Revoke {
                node,
                record,
                grantee,
            } => self.revoke(node, record, grantee),
            Act::Host { node, record, to } => {
                let old = self.nodes[node].replicas.get(&record).and_then(|r| r.home);
                if old.is_some() {
                    self.open_windows
                        .insert(format!("move {}", self.nodes[node].name), self.now);
                }
                self.nodes[node].procs.insert(
                    record,
                    Proc {
                        to,
                        old,
                        stage: Stage::PushAll,
                    },
                );
                self.proc_advance(node, record);
            }
            Act::ProcRetry { node, record } => self.proc_advance(node, record),
            Act::Down(n) => {
                if !self.nodes[n].up {
                    return;
                }
                self.nodes[n].up = false;
                self.down_since.insert(n, self.now);
                // What a node keeps only in memory is lost.
                let sessions = std::mem::take(&mut self.nodes[n].sessions);
                for (_, s) in sessions {
                    if s.purpose == Purpose::Sync {
                        self.counters.syncs_failed += 1;
                    }
                }
                let node = &mut self.nodes[n];
                node.subscribers.clear();
                node.nonces = NonceCache::new(NONCE_CAPACITY);
                for rep in node.replicas.values_mut() {
                    rep.busy = None;
                    rep.again = None;
                    rep.pending.clear();
                }
            }
            Act::Up(n) => {
                if self.nodes[n].up {
                    return;
                }
                self.nodes[n].up = true;
                self.last_fault_end = self.now;
                if let Some(start) = self.down_since.remove(&n) {
                    self.windows
                        .push((start, self.now, format!("{} down", self.nodes[n].name)));
                }
                let records: Vec<(RecordId, Option<NodeId>)> = self.nodes[n]
                    .replicas
                    .iter()
                    .filter(|(_, r)| !r.hosted)
                    .map(|(id, r)| (*id, r.home))
                    .collect();
                for (record, home) in records {
                    if let Some(h) = home {
                        self.request_sync(n, record, h);
                    }
                }
                let procs: Vec<RecordId> = self.nodes[n].procs.keys().copied().collect();
                for r in procs {
                    self.proc_advance(n, r);
                }
            }
            Act::Partition(groups, label) => {
                self.net.groups = Some(groups);
                self.open_windows.insert(label, self.now);
            }
            Act::Unpartition => {
                if self.net.groups.take().is_some() {
                    self.last_fault_end = self.now;
                }
                let open: Vec<String> = self
                    .open_windows
                    .keys()
                    .filter(|l| l.starts_with("partition") || l.ends_with("offline"))
                    .cloned()
                    .collect();
                for label in open {
                    if let Some(start) = self.open_windows.remove(&label) {
                        self.windows.push((start, self.now, label));
                    }
                }
            }
            Act::Heal => {
                if self.net.groups.take().is_some() || self.net.faults != Faults::default() {
                    self.last_fault_end = self.now;
                }
                self.net.faults = Faults::default();
                let open: Vec<(String, Time)> = std::mem::take(&mut self.open_windows)
                    .into_iter()
                    .filter(|(l, _)| !l.starts_with("move "))
                    .collect();
                for (label, start) in open {
                    self.windows.push((start, self.now, label));
                }
                let down: Vec<NodeId> = self.down_since.keys().copied().collect();
                for n in down {
                    self.act(Act::Up(n));
                }
            }
            Act::Faults(f, label) => {
                self.net.faults = f;
                self.open_windows.insert(label, self.now);
            }
            Act::Attack {
                node,
                record,
                attack,
                target,
            } => self.attack(node, record, attack, target),
        }
    }

    // ---------------------------------------------------------------- convergence

    /// The fraction of (replica, entry it may see) pairs held, counting the home host as a
    /// replica that may see everything.
    fn sample(&mut self) {
        let (mut total, mut held) = (0u64, 0u64);
        let now = EPOCH + self.now;
        for (record, o) in &self.oracle {
            let ids: Vec<EntryId> = o.entries().map(Verified::id).collect();
            let home = self
                .directory
                .get(record)
                .and_then(|p| self.peers.get(&p.pointer.host).copied());
            if let Some(h) = home {
                let r = self.nodes[h].replicas.get(record);
                total += ids.len() as u64;
                held +=
                    r.map_or(0, |r| ids.iter().filter(|id| r.record.contains(id)).count()) as u64;
            }
            for &n in self.replicators.get(record).into_iter().flatten() {
                let node = &self.nodes[n];
                if !node.honest() {
                    continue;
                }
                let Some(r) = node.replicas.get(record) else {
                    continue;
                };
                let v = o.viewer(&node.actor(), now);
                for id in &ids {
                    if o.can_see(&v, id) {
                        total += 1;
                        held += u64::from(r.record.contains(id));
                    }
                }
            }
        }
        let f = if total == 0 {
            1.0
        } else {
            held as f64 / total as f64
        };
        self.series.push((self.now, f));
    }
}
