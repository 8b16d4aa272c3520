//! The engine: nodes, a priority queue of events in virtual time, the in-memory transport,
//! scripted actions and faults, and the ground truth the invariants are checked against.
//!
//! Honest nodes run the protocol's own sync code: each answers requests with
//! [`cophr_protocol::sync::server::Server::handle`] over its [`SimStore`] (`server.rs`)
//! and runs every sync as a [`cophr_protocol::sync::client::ClientSession`] driven over the
//! virtual network (`client.rs`). What is the simulation's own: the hostile node's server
//! and attacks (`hostile.rs`), the patient's host/move procedure (`procs.rs`), the scripted
//! writes and the truth (`writes.rs`).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

use cophr_protocol::entry::Timestamp;
use cophr_protocol::home::SignedPointer;
use cophr_protocol::record::Record;
use cophr_protocol::sync::client::ClientSession;
use cophr_protocol::sync::server::{Admission, HostPolicy, Server};
use cophr_protocol::sync::{self, Request};
use cophr_protocol::{ActorId, EntryId, Keypair, RecordId};

use crate::net::{Fate, Faults, Net};
use crate::rng::Rng;
use crate::Time;

mod client;
mod hostile;
mod operator;
mod orgs;
mod procs;
mod server;
mod store;
mod writes;

pub(crate) use hostile::{Attack, AttackLog};
pub(crate) use operator::Operator;
pub(crate) use orgs::{MemberOp, OrgCounters};
pub(crate) use procs::Proc;
pub(crate) use store::SimStore;
pub(crate) use writes::{Expect, WriteKind};

/// Wall-clock time of virtual time 0.
pub(crate) const EPOCH: Timestamp = 1_700_000_000_000;
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

/// What a node knows about one record it holds, beyond the record itself (which is in its
/// [`SimStore`]). Present exactly while the store holds the record.
#[derive(Debug)]
pub(crate) struct Replica {
    /// The home host, as this node knows it.
    pub home: Option<NodeId>,
    /// Whether this node stores the record as a host.
    pub hosted: bool,
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
    fn new(since: Time) -> Self {
        Replica {
            since,
            home: None,
            hosted: false,
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

/// One exchange a node started: a sync (the protocol's [`ClientSession`]) or a single
/// request (host, release, an attack).
#[derive(Debug)]
struct Session {
    record: RecordId,
    peer: NodeId,
    /// Which request of the session is out (answers to earlier ones are stale).
    step: u32,
    purpose: Purpose,
    /// The sync state machine; `None` for a single request.
    client: Option<ClientSession>,
    /// Whether the sync pushes (to the home host).
    push: bool,
    /// The replica's `dirty` when the sync started.
    gen: u64,
    /// Entries stored from this session so far.
    pulled: usize,
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
    /// The records and audit trails it holds.
    pub store: SimStore,
    /// The node key that signs its audit events.
    pub audit_signer: ActorId,
    /// Per record held: what the node knows about it.
    pub replicas: BTreeMap<RecordId, Replica>,
    /// The protocol's sync server (its only state: the replay cache).
    server: Server,
    sessions: BTreeMap<u64, Session>,
    subscribers: BTreeMap<RecordId, BTreeSet<NodeId>>,
    procs: BTreeMap<RecordId, Proc>,
    /// Per (record, peer): the highest of this node's own audit sequences the peer has.
    audit_pushed: BTreeMap<(RecordId, NodeId), u64>,
    /// Proofs of membership of organisations this node's actor holds.
    pub memberships: Vec<Vec<serde_bytes::ByteBuf>>,
}

impl Node {
    pub(crate) fn actor(&self) -> ActorId {
        self.key.actor()
    }
    pub(crate) fn honest(&self) -> bool {
        self.role != Role::Hostile
    }
    /// The record, if held.
    pub(crate) fn record(&self, id: &RecordId) -> Option<&Record> {
        self.store.record(id)
    }
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
    /// The patient's node asks the operator's front where to host the record, and hosts it
    /// there (`city`).
    Admit {
        node: NodeId,
        record: RecordId,
    },
    /// A new host process joins the operator's set (`city`).
    AddHost(NodeId),
    /// The operator asks the patients of records the placement now puts on another host to
    /// move them, one notice every `pace` (`city`).
    Rebalance {
        pace: Time,
    },
    /// An administrator's node changes the organisation's membership (its own record).
    Member {
        node: NodeId,
        org_record: RecordId,
        op: MemberOp,
    },
    /// `from` gives `member`'s node its proof of membership, and tells it of `record`.
    GiveProof {
        from: NodeId,
        member: NodeId,
        org_record: RecordId,
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
    pub honest_refused: u64,
    pub audit_pulled: u64,
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
    /// Randomness for sealing (epoch ids and keys, nonces), its own seeded stream.
    pub(crate) seal_rng: rand_chacha::ChaCha8Rng,
    queue: BinaryHeap<Queued>,
    qseq: u64,
    next_session: u64,
    pub nodes: Vec<Node>,
    pub net: Net,
    peers: BTreeMap<Vec<u8>, NodeId>,
    /// The DHT: the newest home pointer per record.
    pub directory: BTreeMap<RecordId, SignedPointer>,
    /// Each record's patient node.
    pub patients: BTreeMap<RecordId, NodeId>,
    /// The community host operator running several host processes (`city`).
    pub operator: Option<Operator>,
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
    /// What honest servers sent in `Entries` responses, as decoded from the wire: per
    /// (server, record, proven actor), the entry ids.
    pub served: BTreeMap<(NodeId, RecordId, ActorId), BTreeSet<EntryId>>,
    tap: VecDeque<(NodeId, Request)>,
    pub counters: Counters,
    /// What organisations and their members did (`organisation`).
    pub org: OrgCounters,
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

impl Sim {
    pub(crate) fn new(seed: u64, cfg: Config) -> Self {
        Sim {
            seed,
            now: 0,
            cfg,
            rng: Rng::new(seed, 0),
            nonce_rng: Rng::new(seed, 1),
            seal_rng: {
                use rand_core::SeedableRng;
                let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
                r.set_stream(2);
                r
            },
            queue: BinaryHeap::new(),
            qseq: 0,
            next_session: 1,
            nodes: Vec::new(),
            net: Net::new(seed),
            peers: BTreeMap::new(),
            directory: BTreeMap::new(),
            patients: BTreeMap::new(),
            operator: None,
            replicators: BTreeMap::new(),
            oracle: BTreeMap::new(),
            created: BTreeMap::new(),
            arrivals: Vec::new(),
            revocations: Vec::new(),
            forged: BTreeSet::new(),
            attacks: Vec::new(),
            served: BTreeMap::new(),
            tap: VecDeque::new(),
            counters: Counters::default(),
            org: OrgCounters::default(),
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

    /// Adds a node whose key is derived from the seed and its name. Hosts take any
    /// patient's record (open admission); other nodes take none they do not replicate.
    pub(crate) fn add_node(&mut self, name: &str, role: Role) -> NodeId {
        let id = self.nodes.len();
        let key = cophr_protocol::testkit::key(self.seed, name);
        let node_key = cophr_protocol::testkit::key(self.seed, &format!("{name} node"));
        let peer = format!("sim-peer/{id}/{name}").into_bytes();
        let skew = self.rng.range(0, 4000) as i64 - 2000;
        let policy = HostPolicy {
            admission: if role == Role::Host {
                Admission::Open
            } else {
                Admission::Closed
            },
            ..HostPolicy::default()
        };
        self.peers.insert(peer.clone(), id);
        let mut store = SimStore::new(node_key.clone());
        store.unlock_with(&key);
        self.nodes.push(Node {
            name: name.to_string(),
            role,
            server: Server::new(peer.clone(), policy),
            peer,
            key,
            skew,
            up: true,
            audit_signer: node_key.actor(),
            store,
            replicas: BTreeMap::new(),
            sessions: BTreeMap::new(),
            subscribers: BTreeMap::new(),
            procs: BTreeMap::new(),
            audit_pushed: BTreeMap::new(),
            memberships: Vec::new(),
        });
        id
    }

    /// The node with this transport identity.
    pub(crate) fn node_of_peer(&self, peer: &[u8]) -> Option<NodeId> {
        self.peers.get(peer).copied()
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
            } => self.on_timeout(node, session, step),
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

    /// Sends a request, encoded as on the wire; a session's request times out unanswered.
    fn request(&mut self, from: NodeId, to: NodeId, session: u64, step: u32, req: &Request) {
        *self.counters.requests.entry(req.kind()).or_default() += 1;
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

    fn proof(&mut self, n: NodeId, record: RecordId, peer: NodeId) -> sync::Proof {
        let nonce = self.nonce_rng.nonce();
        sync::Proof::new(
            &self.nodes[n].key,
            record,
            &self.nodes[n].peer,
            &self.nodes[peer].peer,
            nonce,
            self.clock(n),
        )
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
            Act::Host { node, record, to } => self.start_proc(node, record, to),
            Act::ProcRetry { node, record } => self.proc_advance(node, record),
            Act::Admit { node, record } => self.admit(node, record),
            Act::AddHost(h) => self.add_host(h),
            Act::Rebalance { pace } => self.rebalance(pace),
            Act::Member {
                node,
                org_record,
                op,
            } => self.member_op(node, org_record, op),
            Act::GiveProof {
                from,
                member,
                org_record,
                record,
            } => self.give_proof(from, member, org_record, record),
            Act::Down(n) => self.down(n),
            Act::Up(n) => self.up(n),
            Act::Partition(groups, label) => {
                self.net.groups = Some(groups);
                self.open_windows.insert(label, self.now);
            }
            Act::Unpartition => self.unpartition(),
            Act::Heal => self.heal(),
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

    /// The node goes down: what it keeps only in memory is lost (sessions, subscribers,
    /// the server's replay cache); its store is durable.
    fn down(&mut self, n: NodeId) {
        if !self.nodes[n].up {
            return;
        }
        self.nodes[n].up = false;
        self.down_since.insert(n, self.now);
        let sessions = std::mem::take(&mut self.nodes[n].sessions);
        for (_, s) in sessions {
            if s.purpose == Purpose::Sync {
                self.counters.syncs_failed += 1;
            }
        }
        let node = &mut self.nodes[n];
        node.subscribers.clear();
        node.server.forget_nonces();
        for rep in node.replicas.values_mut() {
            rep.busy = None;
            rep.again = None;
        }
    }

    /// The node comes back: it syncs its replicas with their home hosts and resumes its
    /// procedures.
    fn up(&mut self, n: NodeId) {
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

    fn unpartition(&mut self) {
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

    fn heal(&mut self) {
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
            self.up(n);
        }
    }

    // ---------------------------------------------------------------- convergence

    /// The fraction of (replica, entry it may see) pairs held, counting the home host as a
    /// replica that may see everything.
    fn sample(&mut self) {
        let (mut total, mut held) = (0u64, 0u64);
        let now = EPOCH + self.now;
        for (record, o) in &self.oracle {
            let ids: Vec<EntryId> = o.entries().map(|e| e.id()).collect();
            let home = self
                .directory
                .get(record)
                .and_then(|p| self.peers.get(&p.pointer.host).copied());
            if let Some(h) = home {
                let r = self.nodes[h].record(record);
                total += ids.len() as u64;
                held += r.map_or(0, |r| ids.iter().filter(|id| r.contains(id)).count()) as u64;
            }
            for &n in self.replicators.get(record).into_iter().flatten() {
                let node = &self.nodes[n];
                if !node.honest() {
                    continue;
                }
                let Some(r) = node.record(record) else {
                    continue;
                };
                let v = o.viewer(&node.actor(), now);
                for id in &ids {
                    if o.can_see(&v, id) {
                        total += 1;
                        held += u64::from(r.contains(id));
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
