//! Care organisations (issue 19), as the nodes run them: the organisation's own record
//! (its membership log, written by its key and its administrators' devices), members'
//! nodes holding a membership proof, presenting it when they sync and joining a patient's
//! record after their first pull (`Record::join_needed`, `Payload::JoinOrg`), and the
//! organisation's node doing after each pull what `node/src/net/client.rs` (`org_duties`)
//! and `node/src/store/orgs.rs` do: write the removals its record made
//! (`Record::departed_members`, a `RemoveDevice` as the organisation) and give members the
//! epoch keys (`Record::prepare_member_keys`).

use cophr_protocol::entry::Payload;
use cophr_protocol::org::Role as OrgRole;
use cophr_protocol::record::Record;
use cophr_protocol::{ActorId, RecordId};

use super::{NodeId, Sim};

/// A change to an organisation's membership, made by one of its administrators.
#[derive(Debug, Clone)]
pub(crate) enum MemberOp {
    /// Adds the node's actor as a member with the preset role.
    Add(NodeId, &'static str),
    /// Removes the node's actor.
    Remove(NodeId),
}

/// What the organisations did, for the report and the checks.
#[derive(Debug, Clone, Default)]
pub(crate) struct OrgCounters {
    /// Organisations' own records.
    pub records: Vec<RecordId>,
    /// `AddMember` and `RemoveMember` written, and refused by the writer's replica.
    pub added: u64,
    pub removed: u64,
    pub refused: u64,
    /// Proofs given to members' nodes (and attempts retried: the giver did not hold it).
    pub proofs_given: u64,
    /// Joins written by members' nodes.
    pub joins: u64,
    /// Key-wrap entries the organisation's node wrote for its members.
    pub keys_given: u64,
    /// Removals (`RemoveDevice`) the organisation's node wrote into patients' records.
    pub removals_written: u64,
    /// Pulls (digests or pull requests) by a removed member that an honest server holding
    /// the removal answered: with nothing written after the removal (refused, or entries in
    /// its causal past), and with something written after it (a violation).
    pub removed_pulls: (u64, u64),
    /// Writes by members: made, refused by their own replica (it held the removal).
    pub member_writes: (u64, u64),
}

impl Sim {
    /// `n` writes a membership change into the organisation's record it holds. The
    /// organisation's own node then writes the removal into every record the member joined
    /// that it holds (as `cophr org remove-member` does).
    pub(super) fn member_op(&mut self, n: NodeId, org_record: RecordId, op: MemberOp) {
        if !self.nodes[n].up || self.nodes[n].record(&org_record).is_none() {
            self.counters.writes_skipped += 1;
            return;
        }
        let payload = match &op {
            MemberOp::Add(m, role) => Payload::AddMember {
                member: self.nodes[*m].actor(),
                role: OrgRole::preset(role).unwrap_or_else(|| OrgRole {
                    name: (*role).to_string(),
                    level: cophr_protocol::access::Level::View,
                    scope: cophr_protocol::access::Scope::All,
                }),
                label: self.nodes[*m].name.clone(),
            },
            MemberOp::Remove(m) => Payload::RemoveMember {
                member: self.nodes[*m].actor(),
                reason: "left the service".into(),
            },
        };
        match self.commit(n, org_record, payload) {
            Ok(_) => {
                self.counters.writes += 1;
                match op {
                    MemberOp::Add(..) => self.org.added += 1,
                    MemberOp::Remove(_) => {
                        self.org.removed += 1;
                        if self.nodes[n].actor() == org_record {
                            let held: Vec<RecordId> =
                                self.nodes[n].replicas.keys().copied().collect();
                            for r in held {
                                self.org_duties(n, r);
                            }
                        }
                    }
                }
            }
            // Two administrators working from different views of the log: an addition of
            // someone already added, or a removal of someone not (yet) a member here.
            Err(_) => {
                self.counters.writes_refused += 1;
                self.org.refused += 1;
            }
        }
    }

    /// `from` gives `member`'s node its proof of membership (from its copy of the
    /// organisation's record), and tells it of `record`, which it starts replicating. If
    /// `from` does not hold the addition yet, it tries again a little later.
    pub(super) fn give_proof(
        &mut self,
        from: NodeId,
        member: NodeId,
        org_record: RecordId,
        record: RecordId,
    ) {
        let proof = self.nodes[from]
            .record(&org_record)
            .and_then(|r| r.membership_proof(&self.nodes[member].actor()));
        match proof {
            Some(p) if self.nodes[from].up => {
                self.org.proofs_given += 1;
                if !self.nodes[member].memberships.contains(&p) {
                    self.nodes[member].memberships.push(p);
                }
                self.add_replica(member, record);
            }
            _ => {
                let later = self.now + 30_000;
                if later < self.cfg.heal {
                    self.at(
                        later,
                        super::Act::GiveProof {
                            from,
                            member,
                            org_record,
                            record,
                        },
                    );
                }
            }
        }
    }

    /// The membership proof `n` presents when syncing `record` (`Record::proof_to_present`:
    /// a record not held yet, or held empty, is not known yet).
    pub(super) fn membership_to_present(
        &self,
        n: NodeId,
        record: &RecordId,
    ) -> Vec<serde_bytes::ByteBuf> {
        let node = &self.nodes[n];
        if node.memberships.is_empty() {
            return Vec::new();
        }
        let held = node.record(record).filter(|r| !r.is_empty());
        Record::proof_to_present(held, &node.memberships)
            .cloned()
            .unwrap_or_default()
    }

    /// What a node does after a pull that brought entries of `record`: the organisation's
    /// duties, and a member's join.
    pub(super) fn after_pull(&mut self, n: NodeId, record: RecordId) {
        self.org_duties(n, record);
        let me = self.nodes[n].actor();
        let proof = match self.nodes[n].record(&record) {
            Some(r) if !self.nodes[n].memberships.is_empty() => {
                r.join_needed(&me, &self.nodes[n].memberships)
            }
            _ => None,
        };
        if let Some(proof) = proof {
            match self.commit(n, record, Payload::JoinOrg { proof }) {
                Ok(_) => self.org.joins += 1,
                Err(e) => self.violations.push(format!(
                    "{}'s join of {} was refused: {e}",
                    self.nodes[n].name,
                    record.short()
                )),
            }
        }
    }

    /// For a node whose identity is an organisation holding its own record with members
    /// (`Store::org_duties`): in `record`, the removals its record made of members who
    /// joined here, then the epoch keys for the members still joined.
    pub(super) fn org_duties(&mut self, n: NodeId, record: RecordId) {
        let me: ActorId = self.nodes[n].actor();
        if record == me || !self.nodes[n].up {
            return;
        }
        let departed = {
            let node = &self.nodes[n];
            let Some(own) = node.record(&me) else { return };
            if own.members().is_empty() {
                return;
            }
            match node.record(&record) {
                Some(r) => r.departed_members(own),
                None => return,
            }
        };
        for member in departed {
            let payload = Payload::RemoveDevice {
                device: member,
                category: None,
                reason: "removed from the organisation".into(),
            };
            match self.commit(n, record, payload) {
                Ok(_) => self.org.removals_written += 1,
                Err(e) => self.violations.push(format!(
                    "{} could not write a member's removal into {}: {e}",
                    self.nodes[n].name,
                    record.short()
                )),
            }
        }
        let now = self.clock(n);
        let keys = {
            let node = &self.nodes[n];
            let Some(r) = node.record(&record) else {
                return;
            };
            r.prepare_member_keys(&node.key, now, &None, &mut self.seal_rng)
        };
        match keys {
            Ok(vs) if vs.is_empty() => {}
            Ok(vs) => {
                let k = vs.len() as u64;
                if self.commit_prepared(n, record, vs).is_ok() {
                    self.org.keys_given += k;
                }
            }
            Err(e) => self.violations.push(format!(
                "{} could not give its members keys in {}: {e}",
                self.nodes[n].name,
                record.short()
            )),
        }
    }

    /// Whether `actor` joined `r` as a member and `r` holds its removal.
    pub(super) fn removed_member_here(r: &Record, actor: &ActorId) -> bool {
        r.joined_members()
            .iter()
            .any(|m| m.member == *actor && m.removed.is_some())
    }
}

impl Sim {
    /// The organisation's node makes `admin`'s key an administrator (an `AddDevice` in its
    /// own record), and `admin`'s node starts replicating that record.
    pub(crate) fn add_administrator(&mut self, org: NodeId, admin: NodeId) {
        let org_record = self.nodes[org].actor();
        let payload = Payload::AddDevice {
            device: self.nodes[admin].actor(),
            label: self.nodes[admin].name.clone(),
        };
        if let Err(e) = self.commit(org, org_record, payload) {
            self.violations.push(format!(
                "the organisation could not add an administrator: {e}"
            ));
        }
        self.org.records.push(org_record);
        self.add_replica(admin, org_record);
    }
}
