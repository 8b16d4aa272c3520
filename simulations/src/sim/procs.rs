//! The patient's procedure to host the record (and, when it had a home, move it), as
//! `node/src/net/client.rs` (`host`, `move_home`) runs it: push the whole record to the
//! new host, check it holds all of it, ask it to host (a signed home pointer), then, for a
//! move, write the move entry, push it, and ask the old host to release the record. The
//! syncs are the protocol's client sessions; host and release are single requests, answered
//! by the protocol's server.

use cophr_protocol::entry::Payload;
use cophr_protocol::home::HomePointer;
use cophr_protocol::sync::client::{SyncError, SyncReport};
use cophr_protocol::sync::{Refusal, Request};
use cophr_protocol::RecordId;
use serde_bytes::ByteBuf;

use super::{Act, NodeId, Purpose, Session, Sim};

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

impl Sim {
    /// The patient's node `n` starts hosting `record` on `to`.
    pub(super) fn start_proc(&mut self, n: NodeId, record: RecordId, to: NodeId) {
        let old = self.nodes[n].replicas.get(&record).and_then(|r| r.home);
        // A move the operator's rebalancing asked for is shown by the rebalancing's window,
        // not one window per patient.
        let rebalanced = self
            .operator
            .as_ref()
            .is_some_and(|o| o.asked.contains_key(&record));
        if old.is_some() && !rebalanced {
            self.open_windows
                .insert(format!("move {}", self.nodes[n].name), self.now);
        }
        self.nodes[n].procs.insert(
            record,
            Proc {
                to,
                old,
                stage: Stage::PushAll,
            },
        );
        self.proc_advance(n, record);
    }

    /// Sends a single request of the procedure, answered with an acknowledgement.
    fn proc_request(&mut self, n: NodeId, record: RecordId, to: NodeId, req: &Request) {
        let sid = self.new_session(
            n,
            Session {
                record,
                peer: to,
                step: 0,
                purpose: Purpose::Proc,
                client: None,
                push: false,
                gen: 0,
                pulled: 0,
            },
        );
        self.request(n, to, sid, 0, req);
    }

    pub(super) fn proc_advance(&mut self, n: NodeId, record: RecordId) {
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
                    heads: self.nodes[n]
                        .record(&record)
                        .map(|r| r.heads())
                        .unwrap_or_default(),
                }
                .sign(&self.nodes[n].key);
                let proof = self.proof(n, record, p.to);
                let req = Request::Host {
                    proof,
                    pointer: ByteBuf::from(pointer.encode()),
                };
                self.proc_request(n, record, p.to, &req);
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
                let proof = self.proof(n, record, old);
                self.proc_request(n, record, old, &Request::Release { proof });
            }
        }
    }

    fn set_stage(&mut self, n: NodeId, record: RecordId, stage: Stage) {
        if let Some(p) = self.nodes[n].procs.get_mut(&record) {
            p.stage = stage;
        }
    }

    /// A step of the procedure ended: go on, retry later, or finish.
    pub(super) fn proc_done(
        &mut self,
        n: NodeId,
        record: RecordId,
        result: Result<SyncReport, SyncError>,
    ) {
        let Some(p) = self.nodes[n].procs.get(&record).cloned() else {
            return;
        };
        let next = match (p.stage, result) {
            // The old host confirmed, or answered that it holds no such record (it already
            // forgot it): done. Any other failure (lost, timed out, the host down) leaves
            // the release pending, retried as the node retries its pending releases.
            (
                Stage::Release,
                Ok(_)
                | Err(SyncError::Refused {
                    code: Refusal::NotHeld,
                    ..
                }),
            ) => None,
            (_, Err(_)) => {
                let at = self.now + 5_000;
                self.at(at, Act::ProcRetry { node: n, record });
                return;
            }
            (Stage::PushAll, Ok(_)) => Some(Stage::Check),
            // The host must now hold everything this node holds.
            (Stage::Check, Ok(r)) if r.pushed == 0 && r.rejected.is_empty() => Some(Stage::Host),
            (Stage::Check, Ok(_)) => Some(Stage::Check),
            (Stage::Host, Ok(_)) => {
                if let Some(rep) = self.nodes[n].replicas.get_mut(&record) {
                    rep.pointer_seq += 1;
                    rep.home = Some(p.to);
                    rep.home_fails = 0;
                }
                p.old.map(|_| Stage::MoveEntry)
            }
            (Stage::MoveEntry, Ok(_)) => Some(Stage::PushMove),
            (Stage::PushMove, Ok(_)) => match p.old {
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
                self.proc_finished(record);
                let open = format!("move {}", self.nodes[n].name);
                if let Some(start) = self.open_windows.remove(&open) {
                    self.windows.push((start, self.now, open));
                }
            }
        }
    }
}
