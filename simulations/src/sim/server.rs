//! The server side of a simulated node: an honest node answers every request with the
//! protocol's [`Server::handle`](cophr_protocol::sync::server::Server::handle) over its own
//! [`SimStore`](super::SimStore), and acts on the returned effects the way the node's event
//! loop does (`node/src/net/service.rs`, `on_answered`). The hostile node answers with its
//! own server (`hostile.rs`).

use std::collections::BTreeSet;

use cophr_protocol::sync::server::{id_of_bytes, Effect, Peer};
use cophr_protocol::sync::{self, Refusal, Request, Response};
use cophr_protocol::{ActorId, RecordId};

use super::{NodeId, Replica, Role, Sim, MAX_SUBSCRIBERS, TAP};

/// The record and proven actor a request names (`None` for an announcement).
fn asker(req: &Request) -> Option<(RecordId, ActorId)> {
    match req {
        Request::Digests { proof, .. }
        | Request::Pull { proof, .. }
        | Request::Push { proof, .. }
        | Request::Host { proof, .. }
        | Request::Release { proof }
        | Request::AuditPull { proof, .. }
        | Request::AuditPush { proof, .. }
        | Request::OfferInvitation { proof, .. }
        | Request::AcceptInvitation { proof, .. }
        | Request::Invitations { proof }
        | Request::CloseInvitation { proof, .. }
        | Request::BackupPut { proof, .. }
        | Request::SharePut { proof, .. }
        | Request::ShareEnd { proof, .. }
        | Request::Document { proof, .. } => Some((proof.record, proof.actor)),
        Request::Announce { .. } | Request::BackupGet { .. } => None,
    }
}

impl Sim {
    /// A request reached server `s` from client `c`: decode it, answer it, send the answer.
    pub(super) fn on_request(
        &mut self,
        s: NodeId,
        c: NodeId,
        session: u64,
        step: u32,
        bytes: &[u8],
    ) {
        let honest = self.nodes[s].honest();
        let (resp, asked) = match sync::decode::<Request>(bytes) {
            Err(e) => (
                Response::refused_because(Refusal::Malformed, format!("malformed request: {e}")),
                None,
            ),
            Ok(req) => {
                if self.nodes[c].honest()
                    && honest
                    && matches!(req, Request::Digests { .. } | Request::Pull { .. })
                {
                    // The hostile node's tap on the network.
                    if self.tap.len() >= TAP {
                        self.tap.pop_front();
                    }
                    self.tap.push_back((s, req.clone()));
                }
                let asked = asker(&req);
                if honest {
                    (self.serve(s, c, req), asked)
                } else {
                    (self.serve_hostile(s, c, req), None)
                }
            }
        };
        let bytes = sync::encode(&resp);
        if let (Response::Entries { .. }, Some((record, actor))) = (&resp, asked) {
            self.note_served(s, record, actor, &bytes);
        }
        self.send(s, c, session, step, false, bytes);
    }

    /// Notes what an honest server sent in an `Entries` response, read back from the bytes
    /// on the wire, for the audit invariant.
    fn note_served(&mut self, s: NodeId, record: RecordId, actor: ActorId, bytes: &[u8]) {
        let Ok(Response::Entries { entries, .. }) = sync::decode::<Response>(bytes) else {
            self.violations.push(format!(
                "{}'s entries response does not decode",
                self.nodes[s].name
            ));
            return;
        };
        self.counters.entries_served += entries.len() as u64;
        if entries.is_empty() {
            return;
        }
        let served = self.served.entry((s, record, actor)).or_default();
        served.extend(entries.iter().map(|b| id_of_bytes(b)));
    }

    /// Answers one request with the protocol's server over the node's store, then acts on
    /// the effects.
    fn serve(&mut self, s: NodeId, c: NodeId, req: Request) -> Response {
        let peer = Peer {
            id: self.nodes[c].peer.clone(),
            label: format!("peer {}", self.nodes[c].name),
        };
        let record = asker(&req).map(|(r, _)| r);
        // A pull by a member whose removal this server holds: it may bring her the removal
        // (so that her node learns of it) and what came before it, nothing written after.
        let removed_pull = match (&req, asker(&req)) {
            (Request::Digests { .. } | Request::Pull { .. }, Some((r, actor))) => self.nodes[s]
                .record(&r)
                .is_some_and(|rec| Sim::removed_member_here(rec, &actor))
                .then_some((r, actor)),
            _ => None,
        };
        let now = self.clock(s);
        let node = &mut self.nodes[s];
        let (resp, effects) = node.server.handle(&mut node.store, &peer, req, now);
        if let Some((r, actor)) = removed_pull {
            let after = match &resp {
                Response::Entries { entries, .. } => self.nodes[s].record(&r).map_or(0, |rec| {
                    let parts: Vec<_> = rec
                        .removals_of(&actor)
                        .into_iter()
                        .flat_map(|(_, parts)| parts)
                        .collect();
                    entries
                        .iter()
                        .map(|b| id_of_bytes(b))
                        .filter(|id| {
                            !parts.iter().any(|p| {
                                rec.stream_of(p) == rec.stream_of(id) && rec.in_past(id, p)
                            })
                        })
                        .count()
                }),
                _ => 0,
            };
            if after == 0 {
                self.org.removed_pulls.0 += 1;
            } else {
                self.org.removed_pulls.1 += 1;
                self.violations.push(format!(
                    "{} served a removed member {after} entries written after her removal",
                    self.nodes[s].name
                ));
            }
        }
        // A host that took a record it did not hold starts knowing about it.
        if let Some(r) = record {
            let node = &mut self.nodes[s];
            if node.store.record(&r).is_some() && !node.replicas.contains_key(&r) {
                let mut rep = Replica::new(self.now);
                rep.hosted = node.role == Role::Host;
                node.replicas.insert(r, rep);
            }
        }
        for (r, id) in self.nodes[s].store.take_fresh() {
            self.gained(s, r, id);
        }
        for effect in effects {
            self.effect(s, c, effect);
        }
        resp
    }

    /// What the node's event loop does with a server effect.
    fn effect(&mut self, s: NodeId, c: NodeId, effect: Effect) {
        match effect {
            Effect::Subscribe(record, _) => self.subscribe(s, record, c),
            Effect::Changed(record) => self.changed(s, record, Some(c)),
            Effect::Host(p) => {
                let record = p.pointer.record;
                if let Some(rep) = self.nodes[s].replicas.get_mut(&record) {
                    rep.hosted = true;
                }
                let newer = self
                    .directory
                    .get(&record)
                    .is_none_or(|old| p.newer_than(old));
                if newer {
                    self.directory.insert(record, p);
                }
            }
            Effect::Released(record) => {
                self.nodes[s].subscribers.remove(&record);
                self.nodes[s].replicas.remove(&record);
            }
            Effect::Announced(record) => self.announced(s, c, record),
            // The simulated people write no documents, so no push names one; documents'
            // replication is tested across real nodes (`tests/tests/net_documents.rs`).
            Effect::Documents(_) => {}
            Effect::StoreFailed(e) => self.violations.push(format!(
                "{}'s store failed while answering: {e}",
                self.nodes[s].name
            )),
        }
    }

    fn subscribe(&mut self, s: NodeId, record: RecordId, c: NodeId) {
        let subs = self.nodes[s].subscribers.entry(record).or_default();
        if subs.len() < MAX_SUBSCRIBERS {
            subs.insert(c);
        }
    }

    /// Something changed in `record` at `n`: tell subscribers, and push on to the home host.
    pub(super) fn changed(&mut self, n: NodeId, record: RecordId, from: Option<NodeId>) {
        let subs: BTreeSet<NodeId> = self.nodes[n]
            .subscribers
            .get(&record)
            .cloned()
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
}
