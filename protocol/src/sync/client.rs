//! The client side of sync, sans-IO: one [`ClientSession`] is one sync of one record with
//! one peer, as a state machine. The driver asks it for the next request
//! ([`ClientSession::poll_request`], time and a fresh nonce passed in), delivers the answer
//! ([`ClientSession::handle_response`], or [`ClientSession::handle_failure`] when none came),
//! and acts on its events ([`ClientSession::poll_event`]): store these received entries,
//! keep these audit events, the sync is done. The node drives it over libp2p, the
//! simulation over its virtual network.
//!
//! The exchange: Digests → Differ; Pull → Entries, again while the server has more and
//! the frontier moved; then, when pushing (to the home host), Push → Pushed in batches
//! bounded by count and bytes and the node's own audit events (AuditPush → Ack); then, when
//! the identity may read the audit trail, AuditPull → AuditEvents.
//!
//! **Entries whose parents are missing.** A pulled batch is applied in order and refused
//! whole if any entry in it does not apply — a missing parent included — and the session
//! fails. An honest server sends each chain as a prefix, in causal order (the
//! administrative stream first), a category stream references only itself and the
//! administrative stream, and every pull asks for the administrative stream too (it may
//! have moved at the server since the digests, as the simulation found), so every entry's
//! parents are either held or earlier in the same batch: a missing parent means the server
//! is broken or hostile. Buffering such
//! entries (as an earlier simulation did) would let a hostile peer fill memory with
//! entries that may never apply, and would hide the fault; refusing keeps the replica
//! exactly what it can verify and lets the driver try another peer.

use std::collections::{HashSet, VecDeque};

use serde_bytes::ByteBuf;

use super::{Frontier, Proof, Refusal, Request, Response, MAX_BATCH, MAX_BATCH_BYTES};
use crate::audit::SignedAudit;
use crate::entry::Timestamp;
use crate::ids::{ActorId, EntryId, RecordId};
use crate::keys::Keypair;
use crate::record::{Record, Stream};

/// How one sync runs.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// The record.
    pub record: RecordId,
    /// This node's transport identity (bytes of its peer id).
    pub local: Vec<u8>,
    /// The peer's transport identity.
    pub remote: Vec<u8>,
    /// Push back what the peer lacks (only to the record's home host).
    pub push: bool,
    /// Most entries asked for per pull.
    pub pull_limit: u32,
    /// Most entries per push.
    pub push_limit: usize,
    /// This node's own audit events for the record that the peer has not had yet, and
    /// the highest sequence among them (sent when pushing).
    pub audit_to_push: Option<(Vec<ByteBuf>, u64)>,
    /// For each node, the highest audit sequence held here (asked beyond, when this
    /// identity may read the audit trail).
    pub audit_have: Vec<(ActorId, u64)>,
    /// A host's invitation, sent with pushes (a host taking records by invitation reads
    /// it on the first push of a record it does not hold).
    pub invitation: Option<String>,
    /// The pushes ask the peer to start hosting the record (the patient choosing a home
    /// host): a host that released the record takes it again only from such pushes.
    pub host: bool,
    /// Attestations of this identity, presented with every request (a grant or host may
    /// require an attested identity before the identity's profile is in the record).
    pub attestations: Vec<crate::trust::SignedAttestation>,
    /// Guardians' approvals of a rotation to this identity, presented with every request
    /// while it recovers the record (it may then pull and push as the patient).
    pub recovery: Option<crate::recovery::Recovery>,
    /// An organisation's membership entries for this identity, presented with every
    /// request so a member who has not yet joined the record may pull it
    /// ([`crate::org`]).
    pub membership: Vec<serde_bytes::ByteBuf>,
}

impl SessionConfig {
    /// A sync of `record` between two peers, pulling only, with the default limits.
    pub fn new(record: RecordId, local: Vec<u8>, remote: Vec<u8>) -> SessionConfig {
        SessionConfig {
            record,
            local,
            remote,
            push: false,
            pull_limit: MAX_BATCH as u32,
            push_limit: MAX_BATCH,
            audit_to_push: None,
            audit_have: Vec::new(),
            invitation: None,
            host: false,
            attestations: Vec::new(),
            recovery: None,
            membership: Vec::new(),
        }
    }
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Entries received and stored.
    pub pulled: usize,
    /// Entries the peer accepted from us.
    pub pushed: usize,
    /// Entries the peer refused, with its reasons.
    pub rejected: Vec<(EntryId, String)>,
    /// Audit events received and kept.
    pub audit_pulled: usize,
    /// Round trips used.
    pub round_trips: usize,
}

/// Why a sync failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// The peer refused.
    #[error("refused: {reason}")]
    Refused {
        /// The refusal's code.
        code: Refusal,
        /// Its detail.
        reason: String,
    },
    /// The peer answered with something unexpected or invalid.
    #[error("bad answer: {0}")]
    Protocol(String),
    /// Received entries did not decode, verify or apply (the batch was refused whole).
    #[error("bad entries: {0}")]
    BadEntries(String),
    /// No answer came (timed out, connection closed, unreachable).
    #[error("request failed: {0}")]
    Transport(String),
    /// Storing what arrived failed here.
    #[error("storing failed: {0}")]
    Store(String),
}

/// What the driver must do.
#[derive(Debug)]
pub enum ClientEvent {
    /// Decode, verify and apply these entries in order, all or nothing, then call
    /// [`ClientSession::handle_stored`].
    Received(Vec<ByteBuf>),
    /// Keep these audit events (decoded, verified, of this record), then call
    /// [`ClientSession::handle_audit_kept`].
    AuditReceived(Vec<SignedAudit>),
    /// The peer has this node's audit events up to this sequence: remember it.
    AuditPushed(u64),
    /// The sync ended.
    Done(Result<SyncReport, SyncError>),
}

#[derive(Debug)]
enum State {
    /// Send the digests.
    Start,
    AwaitDiffer,
    /// Send a pull for these streams.
    Pull(Vec<Stream>),
    AwaitEntries {
        differ: Vec<Stream>,
        asked: Frontier,
    },
    /// Waiting for the driver to store a batch (and perhaps for the next batch, asked for
    /// ahead).
    Storing {
        differ: Vec<Stream>,
        asked: Frontier,
        more: bool,
        theirs: Frontier,
        ahead: Ahead,
    },
    /// A pull asked ahead turned out wrong (the batch stored left another frontier than
    /// predicted): its answer is dropped when it comes, then on to `then`.
    Discarding(Box<State>),
    /// Push what the peer lacks beyond `theirs` in `streams` (all, when `None`).
    Push {
        streams: Option<Vec<Stream>>,
        theirs: Frontier,
    },
    AwaitPushed {
        streams: Option<Vec<Stream>>,
        theirs: Frontier,
    },
    AuditPush,
    AwaitAuditPushed(u64),
    AuditPull,
    AwaitAuditEvents,
    AwaitAuditKept,
    Done,
}

/// The next pull asked for while a batch is stored ([`ClientSession::poll_ahead`]).
#[derive(Debug)]
enum Ahead {
    /// Nothing asked ahead.
    No,
    /// A pull from this (predicted) frontier is out.
    Asked(Frontier),
    /// Its answer came before the batch was stored: kept until it is.
    Answered(Frontier, Box<Response>),
}

/// One sync of one record with one peer.
#[derive(Debug)]
pub struct ClientSession {
    cfg: SessionConfig,
    key: Keypair,
    state: State,
    report: SyncReport,
    events: VecDeque<ClientEvent>,
    /// A request is out and unanswered.
    waiting: bool,
}

impl ClientSession {
    /// A session acting as `key`'s actor.
    pub fn new(key: Keypair, cfg: SessionConfig) -> ClientSession {
        ClientSession {
            cfg,
            key,
            state: State::Start,
            report: SyncReport::default(),
            events: VecDeque::new(),
            waiting: false,
        }
    }

    /// The record synced.
    pub fn record(&self) -> RecordId {
        self.cfg.record
    }

    /// Whether the session has ended (its `Done` event may still be waiting).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// What it did so far.
    pub fn report(&self) -> &SyncReport {
        &self.report
    }

    fn proof(&self, nonce: [u8; 16], now: Timestamp) -> Proof {
        Proof::new(
            &self.key,
            self.cfg.record,
            &self.cfg.local,
            &self.cfg.remote,
            nonce,
            now,
        )
        .with_attestations(self.cfg.attestations.clone())
        .with_recovery(self.cfg.recovery.clone())
        .with_membership(self.cfg.membership.clone())
    }

    fn finish(&mut self, result: Result<(), SyncError>) {
        self.state = State::Done;
        self.waiting = false;
        let report = std::mem::take(&mut self.report);
        self.events
            .push_back(ClientEvent::Done(result.map(|()| report)));
    }

    /// The next request to send, if one is due. `local` is the record as held here (`None`
    /// when not held); `nonce` is fresh randomness for the proof.
    pub fn poll_request(
        &mut self,
        now: Timestamp,
        nonce: [u8; 16],
        local: Option<&Record>,
    ) -> Option<Request> {
        if self.waiting {
            return None;
        }
        let request = loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Start => {
                    let digests = local.map(Record::digests).unwrap_or_default();
                    self.state = State::AwaitDiffer;
                    break Request::Digests {
                        proof: self.proof(nonce, now),
                        digests,
                    };
                }
                State::Pull(differ) => {
                    let mine = local.map(Record::frontier).unwrap_or_default();
                    let asked: Frontier = differ
                        .iter()
                        .map(|s| (s.clone(), mine.get(s).cloned().unwrap_or_default()))
                        .collect();
                    self.state = State::AwaitEntries {
                        differ,
                        asked: asked.clone(),
                    };
                    break Request::Pull {
                        proof: self.proof(nonce, now),
                        frontier: asked,
                        limit: self.cfg.pull_limit.clamp(1, MAX_BATCH as u32),
                    };
                }
                State::Push {
                    streams,
                    mut theirs,
                } => {
                    let entries = match local {
                        Some(r) => self.push_batch(r, streams.as_deref(), &mut theirs, now),
                        None => Vec::new(),
                    };
                    if entries.is_empty() {
                        self.state = State::AuditPush;
                        continue;
                    }
                    self.state = State::AwaitPushed { streams, theirs };
                    break Request::Push {
                        proof: self.proof(nonce, now),
                        entries,
                        invitation: self.cfg.invitation.clone(),
                        host: self.cfg.host,
                    };
                }
                State::AuditPush => match self.cfg.audit_to_push.take() {
                    Some((events, last)) if self.cfg.push && !events.is_empty() => {
                        self.state = State::AwaitAuditPushed(last);
                        break Request::AuditPush {
                            proof: self.proof(nonce, now),
                            events,
                        };
                    }
                    _ => {
                        self.state = State::AuditPull;
                        continue;
                    }
                },
                State::AuditPull => {
                    let me = self.key.actor();
                    let may = local.is_some_and(|r| r.viewer(&me, now).may_audit());
                    if !may {
                        self.finish(Ok(()));
                        return None;
                    }
                    self.state = State::AwaitAuditEvents;
                    break Request::AuditPull {
                        proof: self.proof(nonce, now),
                        have: std::mem::take(&mut self.cfg.audit_have),
                    };
                }
                other => {
                    // Waiting for the driver (storing) or done: nothing to send.
                    self.state = other;
                    return None;
                }
            }
        };
        self.waiting = true;
        self.report.round_trips += 1;
        Some(request)
    }

    /// The next batch to push beyond `theirs`, advancing `theirs` past it.
    fn push_batch(
        &self,
        r: &Record,
        streams: Option<&[Stream]>,
        theirs: &mut Frontier,
        now: Timestamp,
    ) -> Vec<ByteBuf> {
        let viewer = r.viewer(&self.key.actor(), now);
        let ask: Frontier = r
            .frontier()
            .keys()
            .filter(|s| streams.is_none_or(|ss| ss.contains(s)))
            .map(|s| (s.clone(), theirs.get(s).cloned().unwrap_or_default()))
            .collect();
        let limit = self.cfg.push_limit.clamp(1, MAX_BATCH);
        let (entries, _, _) = r.entry_bytes_beyond(&viewer, &ask, limit, MAX_BATCH_BYTES);
        for e in &entries {
            let seq = theirs
                .entry(e.stream.clone())
                .or_default()
                .entry(e.author)
                .or_default();
            *seq = (*seq).max(e.seq);
        }
        entries
            .into_iter()
            .map(|e| ByteBuf::from(e.bytes))
            .collect()
    }

    /// The peer's answer to the last request. `local` is the record as held here.
    pub fn handle_response(&mut self, response: Response, local: Option<&Record>) {
        if !self.waiting {
            // Nothing was asked: a stray or duplicated answer.
            return;
        }
        self.waiting = false;
        let state = std::mem::replace(&mut self.state, State::Done);
        let state = match state {
            // The answer to a pull asked ahead, before the batch is stored: kept (one
            // batch, bounded like any) until the driver has stored the batch.
            State::Storing {
                differ,
                asked,
                more,
                theirs,
                ahead: Ahead::Asked(f),
            } => {
                self.state = State::Storing {
                    differ,
                    asked,
                    more,
                    theirs,
                    ahead: Ahead::Answered(f, Box::new(response)),
                };
                return;
            }
            State::Discarding(then) => {
                self.state = *then;
                return;
            }
            other => other,
        };
        match (state, response) {
            (State::AwaitDiffer, Response::Differ { streams }) => {
                let mut differ = streams;
                // The server names only streams it holds; what it lacks, only we can tell.
                // So a sync that may push asks about every stream held here as well.
                if self.cfg.push {
                    if let Some(r) = local {
                        for s in r.streams() {
                            if !differ.contains(&s) {
                                differ.push(s);
                            }
                        }
                    }
                }
                let distinct: HashSet<&Stream> = differ.iter().collect();
                if distinct.len() != differ.len() {
                    return self.finish(Err(SyncError::Protocol("a stream named twice".into())));
                }
                if differ.is_empty() {
                    // Nothing differs: nothing to pull or push, and no audit to exchange.
                    return self.finish(Ok(()));
                }
                // A category entry's parents include the administrative stream's heads, and
                // that stream may have moved at the server since the digests: always pull it
                // too, so every batch carries what its entries depend on.
                if !differ.contains(&None) {
                    differ.push(None);
                }
                self.state = State::Pull(differ);
            }
            (State::AwaitDiffer, Response::Refused { code, .. })
                if code == Refusal::NoAccess
                    && self.cfg.push
                    && self.key.actor() == self.cfg.record
                    && local.is_some_and(|r| !r.is_empty()) =>
            {
                // A host that does not hold the patient's record yet: give it everything.
                self.state = State::Push {
                    streams: None,
                    theirs: Frontier::new(),
                };
            }
            // The audit trail is extra: a peer that will not share it fails nothing.
            (State::AwaitAuditEvents, Response::Refused { .. }) => self.finish(Ok(())),
            (_, Response::Refused { code, reason }) => {
                self.finish(Err(SyncError::Refused { code, reason }))
            }
            (
                State::AwaitEntries { differ, asked },
                Response::Entries {
                    entries,
                    more,
                    frontier,
                },
            ) => {
                if entries.len() > MAX_BATCH {
                    return self.finish(Err(SyncError::Protocol(format!(
                        "{} entries in one batch (at most {MAX_BATCH})",
                        entries.len()
                    ))));
                }
                if entries.is_empty() {
                    self.state = State::Storing {
                        differ,
                        asked,
                        more: false,
                        theirs: frontier,
                        ahead: Ahead::No,
                    };
                    return self.handle_stored(Ok(0), local);
                }
                self.state = State::Storing {
                    differ,
                    asked,
                    more,
                    theirs: frontier,
                    ahead: Ahead::No,
                };
                self.events.push_back(ClientEvent::Received(entries));
            }
            (State::AwaitPushed { streams, theirs }, Response::Pushed { accepted, rejected }) => {
                self.report.pushed += accepted.len();
                self.report
                    .rejected
                    .extend(rejected.into_iter().take(MAX_BATCH));
                self.state = State::Push { streams, theirs };
            }
            (State::AwaitAuditPushed(last), Response::Ack) => {
                self.events.push_back(ClientEvent::AuditPushed(last));
                self.state = State::AuditPull;
            }
            (State::AwaitAuditEvents, Response::AuditEvents { events }) => {
                match super::server::decode_audit(&self.cfg.record, &events) {
                    Ok(decoded) if decoded.is_empty() => self.finish(Ok(())),
                    Ok(decoded) => {
                        self.state = State::AwaitAuditKept;
                        self.events.push_back(ClientEvent::AuditReceived(decoded));
                    }
                    Err(_) => self.finish(Err(SyncError::Protocol("bad audit event".into()))),
                }
            }
            (_, other) => self.finish(Err(SyncError::Protocol(format!(
                "unexpected {} response",
                other.kind()
            )))),
        }
    }

    /// The driver stored (or failed to store) the last batch received. `local` is the record
    /// as held now.
    pub fn handle_stored(&mut self, result: Result<usize, SyncError>, local: Option<&Record>) {
        let State::Storing {
            differ,
            asked,
            more,
            theirs,
            ahead,
        } = std::mem::replace(&mut self.state, State::Done)
        else {
            if self.is_done() {
                // Already ended (a failure reported meanwhile): nothing more to say.
                return;
            }
            return self.finish(Err(SyncError::Protocol("nothing was being stored".into())));
        };
        match result {
            Ok(n) => self.report.pulled += n,
            // A batch refused or not stored ends the sync; an answer asked ahead is
            // dropped unread (`finish` stops waiting for it).
            Err(e) => return self.finish(Err(e)),
        }
        // Pull on while the server has more and the frontier moved (asking the same
        // frontier again would be served the same batch, forever).
        let mine = local.map(Record::frontier).unwrap_or_default();
        let now_have: Frontier = differ
            .iter()
            .map(|s| (s.clone(), mine.get(s).cloned().unwrap_or_default()))
            .collect();
        let next = if more && now_have != asked {
            State::Pull(differ)
        } else if self.cfg.push {
            State::Push {
                streams: Some(differ),
                theirs,
            }
        } else {
            State::AuditPull
        };
        self.state = match (ahead, next) {
            (Ahead::No, next) => next,
            // The pull asked ahead is the one due now (the frontier predicted is the one
            // the batch left): its answer is the next batch, arrived or on its way.
            (Ahead::Asked(f), State::Pull(differ)) if f == now_have => {
                self.waiting = true;
                State::AwaitEntries { differ, asked: f }
            }
            (Ahead::Answered(f, response), State::Pull(differ)) if f == now_have => {
                self.state = State::AwaitEntries { differ, asked: f };
                self.waiting = true;
                return self.handle_response(*response, local);
            }
            // Asked from a wrong frontier (never expected of an honest peer): its answer
            // is dropped, and what is due is done as without asking ahead.
            (Ahead::Asked(_), next) => {
                self.waiting = true;
                State::Discarding(Box::new(next))
            }
            (Ahead::Answered(..), next) => next,
        };
    }

    /// While the batch received last ([`ClientEvent::Received`]) is verified and stored,
    /// the pull for the batch after it, so the peer prepares that one meanwhile: at most
    /// one batch is asked ahead of the one being stored. `batch` is that batch, decoded
    /// (not yet verified: nothing of it is stored or trusted here, only its authors,
    /// sequence numbers and streams predict the frontier it will leave); `local` is the
    /// record as held. `None` when there is nothing more to ask, when a pull is already out,
    /// or when the frontier cannot be predicted (an entry's target neither held nor in the
    /// batch): the next pull then waits for [`ClientSession::handle_stored`] as usual.
    ///
    /// The driver sends the request and delivers its answer (or failure) as any other,
    /// before or after it reports the batch stored; the session checks the prediction
    /// against the frontier actually stored, and a wrong one only costs that answer.
    pub fn poll_ahead(
        &mut self,
        batch: &[crate::entry::SignedEntry],
        now: Timestamp,
        nonce: [u8; 16],
        local: Option<&Record>,
    ) -> Option<Request> {
        if self.waiting {
            return None;
        }
        let State::Storing {
            asked,
            more: true,
            ahead: ahead @ Ahead::No,
            ..
        } = &mut self.state
        else {
            return None;
        };
        let predicted = predict(asked, batch, local)?;
        if predicted == *asked {
            return None;
        }
        *ahead = Ahead::Asked(predicted.clone());
        self.waiting = true;
        self.report.round_trips += 1;
        Some(Request::Pull {
            proof: self.proof(nonce, now),
            frontier: predicted,
            limit: self.cfg.pull_limit.clamp(1, MAX_BATCH as u32),
        })
    }

    /// The driver kept the audit events received (`Ok(new)`), or failed to.
    pub fn handle_audit_kept(&mut self, result: Result<usize, SyncError>) {
        if !matches!(self.state, State::AwaitAuditKept) {
            return;
        }
        match result {
            Ok(n) => {
                self.report.audit_pulled += n;
                self.finish(Ok(()));
            }
            Err(e) => self.finish(Err(e)),
        }
    }

    /// The last request got no answer (timed out, connection lost, unreachable).
    pub fn handle_failure(&mut self, reason: impl Into<String>) {
        if self.is_done() {
            return;
        }
        // A pull asked ahead failed: forget it; the batch being stored goes on, and the
        // next pull is asked once it is stored, as without asking ahead.
        if let State::Storing {
            ahead: ahead @ Ahead::Asked(_),
            ..
        } = &mut self.state
        {
            *ahead = Ahead::No;
            self.waiting = false;
            return;
        }
        // The answer to be dropped will not come: on to what was due.
        if matches!(self.state, State::Discarding(_)) {
            if let State::Discarding(then) = std::mem::replace(&mut self.state, State::Done) {
                self.state = *then;
            }
            self.waiting = false;
            return;
        }
        if matches!(self.state, State::AwaitAuditEvents) {
            // Everything else was done; the audit trail is extra.
            return self.finish(Ok(()));
        }
        self.finish(Err(SyncError::Transport(reason.into())));
    }

    /// The next thing the driver must do.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }
}

/// The frontier a pull from `asked` will leave once `batch` (its answer, in causal order)
/// is applied: each entry raises its author's sequence number in its stream. `None` when an
/// entry's stream cannot be told (an amend, delete or annotation of an entry neither held
/// in `local` nor earlier in the batch) or is not one asked about.
fn predict(
    asked: &Frontier,
    batch: &[crate::entry::SignedEntry],
    local: Option<&Record>,
) -> Option<Frontier> {
    let mut next = asked.clone();
    let mut in_batch: std::collections::HashMap<EntryId, Stream> = std::collections::HashMap::new();
    for e in batch {
        let entry = e.entry();
        // As `Record::category_of_payload` tells an entry's stream, a target earlier in
        // the batch counting as held.
        let stream: Stream = entry
            .payload
            .stream_given(|target| match in_batch.get(target) {
                Some(s) => Some(s.clone()),
                None => {
                    let r = local?;
                    r.contains(target).then(|| r.category_of(target).cloned())
                }
            })?;
        let seq = next.get_mut(&stream)?.entry(entry.author).or_default();
        *seq = (*seq).max(entry.seq);
        in_batch.insert(e.id(), stream);
    }
    Some(next)
}

/// Decodes and verifies a received batch of entries for `record`, in order: the whole batch
/// is refused (with the position and reason) if any entry does not decode, belongs to
/// another record or does not verify. The node does the same on several threads.
pub fn decode_verify(
    record: &RecordId,
    entries: &[ByteBuf],
) -> Result<Vec<crate::entry::Verified>, SyncError> {
    let mut decoded = Vec::with_capacity(entries.len());
    for (i, b) in entries.iter().enumerate() {
        let e = crate::entry::SignedEntry::decode(b)
            .map_err(|e| SyncError::BadEntries(format!("entry {i}: {e}")))?;
        if e.entry().record != *record {
            return Err(SyncError::BadEntries(format!(
                "entry {i} belongs to another record"
            )));
        }
        decoded.push(e);
    }
    crate::entry::verify_batch(decoded)
        .map_err(|(i, e)| SyncError::BadEntries(format!("entry {i}: {e}")))
}
