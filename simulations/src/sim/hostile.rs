//! The hostile node, Mallory: its own server (answering pulls with forged entries) and its
//! attacks on honest nodes, each logged with what it must come to. This is the attacker,
//! not a copy of the protocol's code: honest nodes answer it with the protocol's server.

use std::collections::BTreeMap;

use cophr_protocol::category::Category;
use cophr_protocol::entry::{Payload, SignedEntry};
use cophr_protocol::record::{Record, Stream};
use cophr_protocol::sync::{Frontier, Proof, Refusal, Request, Response, PROOF_WINDOW_MS};
use cophr_protocol::{ActorId, EntryId, RecordId};
use serde_bytes::ByteBuf;

use super::{Act, NodeId, Purpose, Session, Sim, EPOCH};
use crate::body;

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

impl Sim {
    /// The hostile node answers pulls with forged entries.
    pub(super) fn serve_hostile(&mut self, h: NodeId, _c: NodeId, req: Request) -> Response {
        match req {
            Request::Announce { .. } => Response::Ack,
            Request::Digests { proof, .. } => {
                let mut streams: Vec<Stream> = vec![None, Some(Category::Problems)];
                if let Some(r) = self.nodes[h].record(&proof.record) {
                    streams.extend(r.streams());
                }
                streams.sort();
                streams.dedup();
                Response::Differ { streams }
            }
            Request::Pull { proof, .. } => {
                let kind = match self.rng.below(3) {
                    0 => Attack::ForgedSignature,
                    1 => Attack::Escalate,
                    _ => Attack::Tampered,
                };
                let forged = self.forge(h, proof.record, kind);
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
            _ => Response::refused(Refusal::NoAccess),
        }
    }

    /// Builds forged entries of one kind from what node `h` holds of `record`.
    fn forge(&mut self, h: NodeId, record: RecordId, kind: Attack) -> Vec<SignedEntry> {
        let now = self.clock(h);
        let half = self.nonce_rng.chance(0.5);
        let node = &self.nodes[h];
        let Some(r) = node.record(&record) else {
            return Vec::new();
        };
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
                let mut grants: Vec<EntryId> = r
                    .grants()
                    .filter(|g| g.grant.grantee == me)
                    .map(|g| g.id)
                    .collect();
                grants.sort();
                let auth = grants.first().copied();
                let (category, body) = if kind == Attack::RevokedWrite {
                    (Category::VitalSigns, cophr_protocol::testkit::bp(150, 95))
                } else if half {
                    (Category::Problems, problem)
                } else {
                    (Category::Allergies, body::body(&Category::Allergies, now))
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

    fn log_attack(&mut self, kind: Attack, expect: AttackExpect, detail: String) -> usize {
        self.attacks.push(AttackLog {
            kind,
            expect,
            refused: None,
            answered: false,
            detail,
        });
        self.attacks.len() - 1
    }

    pub(super) fn attack(
        &mut self,
        h: NodeId,
        record: RecordId,
        kind: Attack,
        target: Option<NodeId>,
    ) {
        if !self.nodes[h].up {
            return;
        }
        let home = self
            .directory
            .get(&record)
            .and_then(|p| self.peers.get(&p.pointer.host).copied());
        let Some(home) = home else { return };
        let to = target.unwrap_or(home);
        match kind {
            Attack::ForgedSignature
            | Attack::Tampered
            | Attack::Escalate
            | Attack::RevokedWrite
            | Attack::PushToReplica => self.attack_push(h, record, kind, to, target),
            Attack::ReplayCaptured
            | Attack::ReplayOwn
            | Attack::StaleProof
            | Attack::Impersonate => self.attack_proof(h, record, kind, to),
            Attack::PullUnauthorised | Attack::ProbeStreams => {
                self.attack_pull(h, record, kind, to)
            }
            Attack::AnnounceSpam => {
                // Judged by its effects: the forged batches clients refuse, the invariants.
                let i = self.log_attack(kind, AttackExpect::Nothing, String::new());
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

    /// Forged or unauthorised entries pushed to `to`; a write after revocation waits until
    /// the writer knows it is revoked.
    fn attack_push(
        &mut self,
        h: NodeId,
        record: RecordId,
        kind: Attack,
        to: NodeId,
        target: Option<NodeId>,
    ) {
        if kind == Attack::RevokedWrite && !self.knows_revoked(h, record) {
            let at = self.now + 30_000;
            if at < self.cfg.heal {
                let attack = Act::Attack {
                    node: h,
                    record,
                    attack: kind,
                    target,
                };
                self.at(at, attack);
            }
            return;
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
        let detail = format!("to {}", self.nodes[to].name);
        let i = self.log_attack(kind, AttackExpect::NoneAccepted(ids), detail);
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
                host: false,
            },
        );
    }

    /// Replayed, stale and impersonated proofs.
    fn attack_proof(&mut self, h: NodeId, record: RecordId, kind: Attack, to: NodeId) {
        let digests = |proof| Request::Digests {
            proof,
            digests: Vec::new(),
        };
        match kind {
            Attack::ReplayCaptured => {
                let Some((server, req)) = self.tap.back().cloned() else {
                    return;
                };
                let detail = format!("to {}", self.nodes[server].name);
                let i = self.log_attack(kind, AttackExpect::Refused, detail);
                self.attack_send(h, server, record, i, &req);
            }
            Attack::ReplayOwn => {
                let req = digests(self.proof(h, record, to));
                let a = self.log_attack(kind, AttackExpect::Nothing, "first use".into());
                let b = self.log_attack(kind, AttackExpect::NotBoth(a), "second use".into());
                self.attack_send(h, to, record, a, &req);
                self.attack_send(h, to, record, b, &req);
            }
            Attack::StaleProof => {
                let fresh = self.proof(h, record, to);
                let nonce = self.nonce_rng.nonce();
                let proof = Proof::new(
                    &self.nodes[h].key,
                    record,
                    &fresh.client,
                    &fresh.server,
                    nonce,
                    fresh.time - 2 * PROOF_WINDOW_MS,
                );
                let i = self.log_attack(kind, AttackExpect::Refused, String::new());
                self.attack_send(h, to, record, i, &digests(proof));
            }
            _ => {
                let mut proof = self.proof(h, record, to);
                proof.actor = record;
                let i = self.log_attack(kind, AttackExpect::Refused, String::new());
                self.attack_send(h, to, record, i, &digests(proof));
            }
        }
    }

    /// A pull of a record without a grant, or of every stream of one it may see in part.
    fn attack_pull(&mut self, h: NodeId, record: RecordId, kind: Attack, to: NodeId) {
        let proof = self.proof(h, record, to);
        let mut frontier = Frontier::new();
        frontier.insert(None, BTreeMap::new());
        let expect = if kind == Attack::ProbeStreams {
            for c in Category::BUILT_IN {
                frontier.insert(Some(c), BTreeMap::new());
            }
            AttackExpect::OnlyVisible(self.nodes[h].actor())
        } else {
            AttackExpect::Refused
        };
        let i = self.log_attack(kind, expect, String::new());
        let req = Request::Pull {
            proof,
            frontier,
            limit: 1024,
        };
        self.attack_send(h, to, record, i, &req);
    }

    fn attack_send(&mut self, h: NodeId, to: NodeId, record: RecordId, i: usize, req: &Request) {
        let sid = self.new_session(
            h,
            Session {
                record,
                peer: to,
                step: 0,
                purpose: Purpose::Attack(i),
                client: None,
                push: false,
                gen: 0,
                pulled: 0,
            },
        );
        self.request(h, to, sid, 0, req);
    }

    /// Judges the answer to attack `i`.
    pub(super) fn attack_answer(&mut self, h: NodeId, i: usize, resp: Response) {
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
}
