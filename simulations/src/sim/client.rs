//! The client side of a simulated node: every sync is the protocol's
//! [`ClientSession`], driven over the virtual network the way `node/src/net/client.rs`
//! (`sync`) drives it over libp2p: requests encoded and sent with a timeout, answers
//! decoded and handed back, a request unanswered is a failure. Received batches are
//! decoded and verified with [`decode_verify`] and stored all or nothing; a batch that does
//! not apply (a missing parent included) fails the session. Also here: when to sync and
//! with whom (periodic catch-up, fallback peers, following the home host).

use cophr_protocol::entry::Payload;
use cophr_protocol::sync::client::{
    decode_verify, ClientEvent, ClientSession, SessionConfig, SyncError, SyncReport,
};
use cophr_protocol::sync::server::SyncStore;
use cophr_protocol::sync::{self, Request, Response, MAX_BATCH};
use cophr_protocol::{EntryId, RecordId};
use serde_bytes::ByteBuf;

use super::{Event, NodeId, Purpose, Session, Sim};
use crate::report::fmt_time;
use crate::trace;

impl Sim {
    pub(super) fn new_session(&mut self, n: NodeId, s: Session) -> u64 {
        let id = self.next_session;
        self.next_session += 1;
        self.nodes[n].sessions.insert(id, s);
        id
    }

    /// Starts a sync with `peer` unless one is in flight (then syncs again after it).
    pub(super) fn request_sync(&mut self, n: NodeId, record: RecordId, peer: NodeId) {
        let Some(rep) = self.nodes[n].replicas.get_mut(&record) else {
            return;
        };
        if rep.busy.is_some() {
            rep.again = Some(peer);
            return;
        }
        self.start_sync(n, record, peer, Purpose::Sync, None);
    }

    /// This node's own audit events for the record that `peer` has not had yet, and the
    /// highest sequence among them (what the node pushes with a sync to the home host).
    fn audit_to_push(
        &self,
        n: NodeId,
        record: &RecordId,
        peer: NodeId,
    ) -> Option<(Vec<ByteBuf>, u64)> {
        let node = &self.nodes[n];
        let done = node
            .audit_pushed
            .get(&(*record, peer))
            .copied()
            .unwrap_or(0);
        let mine: Vec<_> = node
            .store
            .audit_events(record)
            .into_iter()
            .filter(|a| a.event.node == node.audit_signer && a.event.seq > done)
            .take(MAX_BATCH)
            .collect();
        let last = mine.iter().map(|a| a.event.seq).max()?;
        Some((
            mine.iter()
                .map(|a| ByteBuf::from(a.bytes().to_vec()))
                .collect(),
            last,
        ))
    }

    /// Starts a [`ClientSession`] of `record` with `peer`. It pushes when `force_push` says
    /// so, else when the peer is the home host and may lack something held here.
    pub(super) fn start_sync(
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
        let mut cfg = SessionConfig::new(
            record,
            self.nodes[n].peer.clone(),
            self.nodes[peer].peer.clone(),
        );
        cfg.push = push;
        cfg.pull_limit = self.cfg.pull_limit;
        cfg.push_limit = self.cfg.push_batch;
        if push {
            cfg.audit_to_push = self.audit_to_push(n, &record, peer);
        }
        cfg.audit_have = self.nodes[n].store.audit_have(&record);
        cfg.membership = self.membership_to_present(n, &record);
        let client = ClientSession::new(self.nodes[n].key.clone(), cfg);
        let sid = self.new_session(
            n,
            Session {
                record,
                peer,
                step: 0,
                purpose,
                client: Some(client),
                push,
                gen,
                pulled: 0,
            },
        );
        if purpose == Purpose::Sync {
            if let Some(rep) = self.nodes[n].replicas.get_mut(&record) {
                rep.busy = Some(sid);
            }
            self.counters.syncs += 1;
        }
        self.drive(n, sid);
    }

    /// Runs a session's events, then sends its next request (or ends it).
    fn drive(&mut self, n: NodeId, sid: u64) {
        let Some(mut s) = self.nodes[n].sessions.remove(&sid) else {
            return;
        };
        let Some(mut client) = s.client.take() else {
            self.nodes[n].sessions.insert(sid, s);
            return;
        };
        loop {
            while let Some(event) = client.poll_event() {
                match event {
                    ClientEvent::Received(entries) => {
                        let stored = self.store_received(n, s.peer, s.record, &entries);
                        if let Ok(k) = stored {
                            s.pulled += k;
                        }
                        client.handle_stored(stored, self.nodes[n].record(&s.record));
                    }
                    ClientEvent::AuditReceived(events) => {
                        let kept = self.nodes[n]
                            .store
                            .keep_audit(&events)
                            .map_err(|e| SyncError::Store(e.to_string()));
                        if let Ok(k) = kept {
                            self.counters.audit_pulled += k as u64;
                        }
                        client.handle_audit_kept(kept);
                    }
                    ClientEvent::AuditPushed(last) => {
                        self.nodes[n].audit_pushed.insert((s.record, s.peer), last);
                    }
                    ClientEvent::Done(result) => return self.end_session(n, s, result),
                }
            }
            let now = self.clock(n);
            let nonce = self.nonce_rng.nonce();
            match client.poll_request(now, nonce, self.nodes[n].record(&s.record)) {
                Some(req) => {
                    if let Request::Push { entries, .. } = &req {
                        self.counters.entries_pushed += entries.len() as u64;
                    }
                    s.step += 1;
                    self.request(n, s.peer, sid, s.step, &req);
                    s.client = Some(client);
                    self.nodes[n].sessions.insert(sid, s);
                    return;
                }
                None if client.is_done() => continue,
                None => {
                    let stalled = Err(SyncError::Protocol("the session stalled".into()));
                    self.violations
                        .push(format!("{}'s sync session stalled", self.nodes[n].name));
                    return self.end_session(n, s, stalled);
                }
            }
        }
    }

    /// Decodes, verifies and stores a received batch, all or nothing. Returns how many
    /// entries were new.
    fn store_received(
        &mut self,
        n: NodeId,
        from: NodeId,
        record: RecordId,
        entries: &[ByteBuf],
    ) -> Result<usize, SyncError> {
        let verified = match decode_verify(&record, entries) {
            Ok(v) => v,
            Err(e) => {
                self.counters.bad_batches += 1;
                self.trace_refused(n, from, &e);
                return Err(e);
            }
        };
        match self.nodes[n].store.ingest(&record, verified) {
            Ok(k) => {
                for (r, id) in self.nodes[n].store.take_fresh() {
                    self.gained(n, r, id);
                }
                Ok(k)
            }
            Err(e) => {
                self.counters.served_refused += 1;
                if self.nodes[from].honest() {
                    self.counters.honest_refused += 1;
                }
                let e = SyncError::BadEntries(e.to_string());
                self.trace_refused(n, from, &e);
                Err(e)
            }
        }
    }

    fn trace_refused(&self, n: NodeId, from: NodeId, e: &SyncError) {
        if trace::node(&self.nodes[n].name) {
            eprintln!(
                "[{}] {} refused a batch {} served: {e}",
                fmt_time(self.now),
                self.nodes[n].name,
                self.nodes[from].name
            );
        }
    }

    /// An answer reached client `n` from `from`.
    pub(super) fn on_response(
        &mut self,
        n: NodeId,
        from: NodeId,
        sid: u64,
        step: u32,
        bytes: &[u8],
    ) {
        let Some(s) = self.nodes[n].sessions.get(&sid) else {
            self.counters.stale_responses += u64::from(sid != 0);
            return;
        };
        if s.step != step || s.peer != from {
            self.counters.stale_responses += 1;
            return;
        }
        let decoded = sync::decode::<Response>(bytes);
        if s.client.is_none() {
            // A single request: host, release, or an attack.
            let Some(s) = self.nodes[n].sessions.remove(&sid) else {
                return;
            };
            let resp = decoded.unwrap_or_else(|e| {
                Response::refused_because(sync::Refusal::Malformed, format!("bad answer: {e}"))
            });
            if let Purpose::Attack(i) = s.purpose {
                return self.attack_answer(n, i, resp);
            }
            let result = match resp {
                Response::Ack => Ok(SyncReport::default()),
                Response::Refused { code, reason } => Err(SyncError::Refused { code, reason }),
                other => Err(SyncError::Protocol(format!("unexpected {}", other.kind()))),
            };
            return self.end_session(n, s, result);
        }
        let node = &mut self.nodes[n];
        let Some(s) = node.sessions.get_mut(&sid) else {
            return;
        };
        let record = s.record;
        if let Some(client) = s.client.as_mut() {
            match decoded {
                Ok(resp) => client.handle_response(resp, node.store.record(&record)),
                Err(e) => client.handle_failure(format!("the answer does not decode: {e}")),
            }
        }
        self.drive(n, sid);
    }

    /// A request went unanswered for the timeout.
    pub(super) fn on_timeout(&mut self, n: NodeId, sid: u64, step: u32) {
        let Some(s) = self.nodes[n].sessions.get_mut(&sid) else {
            return;
        };
        if s.step != step {
            return;
        }
        match s.client.as_mut() {
            Some(client) => {
                client.handle_failure("timed out");
                self.drive(n, sid);
            }
            None => {
                if let Some(s) = self.nodes[n].sessions.remove(&sid) {
                    self.end_session(n, s, Err(SyncError::Transport("timed out".into())));
                }
            }
        }
    }

    /// An honest node now holds an entry it did not hold.
    pub(super) fn gained(&mut self, n: NodeId, record: RecordId, id: EntryId) {
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

    fn end_session(&mut self, n: NodeId, s: Session, result: Result<SyncReport, SyncError>) {
        match s.purpose {
            Purpose::Sync => self.sync_done(n, s, result),
            Purpose::Proc => self.proc_done(n, s.record, result),
            // An attack unanswered (lost, or its target down) stays unjudged.
            Purpose::Attack(_) => {}
        }
    }

    fn trace_sync(&self, n: NodeId, s: &Session, result: &Result<SyncReport, SyncError>) {
        if trace::node(&self.nodes[n].name) {
            eprintln!(
                "[{}] {} synced {} with {} (push {}): {:?}; pulled {}",
                fmt_time(self.now),
                self.nodes[n].name,
                s.record.short(),
                self.nodes[s.peer].name,
                s.push,
                result,
                s.pulled,
            );
        }
    }

    fn sync_done(&mut self, n: NodeId, s: Session, result: Result<SyncReport, SyncError>) {
        self.trace_sync(n, &s, &result);
        let record = s.record;
        let Some(rep) = self.nodes[n].replicas.get_mut(&record) else {
            return;
        };
        rep.busy = None;
        let from_home = rep.home == Some(s.peer);
        if result.is_err() {
            self.counters.syncs_failed += 1;
        }
        if result.is_ok() {
            self.note_reached(n, s.peer, record);
        }
        let Some(rep) = self.nodes[n].replicas.get_mut(&record) else {
            return;
        };
        match &result {
            Ok(r) if from_home => {
                rep.home_fails = 0;
                if s.push && r.rejected.is_empty() {
                    rep.clean = rep.clean.max(s.gen);
                }
            }
            Ok(_) => {
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
        if let (Err(SyncError::Refused { .. }), true) = (&result, from_home) {
            // The home may have moved: follow the newest pointer in the DHT.
            self.follow_directory(n, record);
        }
        if s.pulled > 0 {
            self.follow_moves(n, record);
            self.after_pull(n, record);
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
        let Ok(p) = cophr_protocol::home::SignedPointer::decode(&p.encode(), &record) else {
            return;
        };
        let Some(&host) = self.peers.get(&p.pointer.host) else {
            return;
        };
        self.set_home(n, record, host);
    }

    /// Follows the newest move-home entry the patient wrote.
    fn follow_moves(&mut self, n: NodeId, record: RecordId) {
        let Some(r) = self.nodes[n].record(&record) else {
            return;
        };
        let latest = r
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
    pub(super) fn tick(&mut self, n: NodeId, record: RecordId, periodic: bool) {
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
        if let Some(t) = self.sync_target(n, record) {
            if t != n {
                self.start_sync(n, record, t, Purpose::Sync, None);
            }
        }
    }

    /// Whom to sync with: the home host, except that after a failed sync with it the next
    /// attempt goes to another replica, the one after that to the home host again.
    fn sync_target(&mut self, n: NodeId, record: RecordId) -> Option<NodeId> {
        let peers: Vec<NodeId> = self
            .replicators
            .get(&record)
            .map(|f| f.iter().copied().filter(|p| *p != n).collect())
            .unwrap_or_default();
        let rep = self.nodes[n].replicas.get_mut(&record)?;
        let fallback = rep.home_fails > 0 && !peers.is_empty() && !rep.tried_fallback;
        if fallback {
            let i = rep.next_peer % peers.len();
            rep.next_peer += 1;
            rep.tried_fallback = true;
            Some(peers[i])
        } else {
            rep.tried_fallback = false;
            rep.home
        }
    }
}
