//! The `organisation` scenario's invariants and figures (issue 19): what the membership
//! rules must give on every replica after the run, checked against the ground truth and
//! each replica's own copy.

use cophr_protocol::entry::Payload;
use cophr_protocol::record::{Record, Status};
use cophr_protocol::{ActorId, EntryId, RecordId};
use std::collections::BTreeMap;

use crate::check::{fail, named, Check};
use crate::sim::{NodeId, Role, Sim};

/// What the organisations and their members did in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrgFigures {
    /// `AddMember` and `RemoveMember` entries written, and membership changes an
    /// administrator's replica refused (it did not know of an earlier change yet, or knew
    /// of a concurrent one).
    pub membership: (u64, u64, u64),
    /// Concurrent membership entries in the merged log: members added more than once, and
    /// removed more than once.
    pub forks: (usize, usize),
    /// Proofs given to members' nodes, and joins their nodes wrote.
    pub proofs_joins: (u64, u64),
    /// Key-wrap entries the organisation's node wrote for its members.
    pub keys_given: u64,
    /// Removals (`RemoveDevice`) the organisation's node wrote into patients' records.
    pub removals_written: u64,
    /// Members' writes: made, refused by their own replica (it held their removal).
    pub member_writes: (u64, u64),
    /// Members' entries in the patients' records at the home host: valid, void (written
    /// concurrently with the member's removal).
    pub member_entries: (usize, usize),
    /// Pulls by removed members answered by an honest server that held the removal: kept
    /// to the removal's causal past, not (a violation).
    pub removed_pulls: (u64, u64),
}

pub(crate) fn figures(sim: &Sim) -> Option<OrgFigures> {
    if sim.org.records.is_empty() {
        return None;
    }
    let mut f = OrgFigures {
        membership: (sim.org.added, sim.org.removed, sim.org.refused),
        proofs_joins: (sim.org.proofs_given, sim.org.joins),
        keys_given: sim.org.keys_given,
        removals_written: sim.org.removals_written,
        member_writes: sim.org.member_writes,
        removed_pulls: sim.org.removed_pulls,
        ..OrgFigures::default()
    };
    for id in &sim.org.records {
        if let Some(o) = sim.oracle.get(id) {
            let (adds, removes) = membership_counts(o);
            f.forks.0 += adds.values().filter(|k| **k > 1).count();
            f.forks.1 += removes.values().filter(|k| **k > 1).count();
        }
    }
    for (record, o) in &sim.oracle {
        if sim.org.records.contains(record) {
            continue;
        }
        let members: Vec<ActorId> = o.joined_members().iter().map(|m| m.member).collect();
        for e in o.entries() {
            if members.contains(&e.entry().author) {
                match o.status(&e.id()) {
                    Some(Status::Valid) => f.member_entries.0 += 1,
                    Some(Status::Void { .. }) => f.member_entries.1 += 1,
                    None => {}
                }
            }
        }
    }
    Some(f)
}

/// Per member: how many `AddMember` and `RemoveMember` entries name them.
fn membership_counts(o: &Record) -> (BTreeMap<ActorId, usize>, BTreeMap<ActorId, usize>) {
    let (mut adds, mut removes) = (BTreeMap::new(), BTreeMap::new());
    for e in o.entries() {
        match &e.entry().payload {
            Payload::AddMember { member, .. } => *adds.entry(*member).or_default() += 1,
            Payload::RemoveMember { member, .. } => *removes.entry(*member).or_default() += 1,
            _ => {}
        }
    }
    (adds, removes)
}

/// The `RemoveDevice` parts in `r` removing `member`: (stream, id).
fn removal_parts(r: &Record, member: &ActorId) -> Vec<(Option<String>, EntryId)> {
    r.entries()
        .filter_map(|e| match &e.entry().payload {
            Payload::RemoveDevice {
                device, category, ..
            } if device == member => Some((category.as_ref().map(|c| c.to_string()), e.id())),
            _ => None,
        })
        .collect()
}

/// The organisation invariants (empty when the run has no organisation).
pub(crate) fn check(sim: &Sim, holders: &BTreeMap<RecordId, Vec<NodeId>>) -> Vec<Check> {
    if sim.org.records.is_empty() {
        return Vec::new();
    }
    let mut removed = named(
        "a removed member's entry with the removal in its causal past is valid nowhere; one \
         written concurrently is void on every replica alike",
    );
    let mut joined = named("replicas agree on the members who joined a record");
    let mut log = named("the organisation's nodes and host agree on its members after healing");
    let mut pulls =
        named("a removed member's pull brings her removal and nothing written after it");
    for (record, o) in &sim.oracle {
        let held = holders.get(record).map_or(&[][..], Vec::as_slice);
        if sim.org.records.contains(record) {
            let truth = o.members();
            for &n in held {
                let Some(r) = sim.nodes[n].record(record) else {
                    continue;
                };
                if r.members() != truth {
                    fail(
                        &mut log,
                        format!(
                            "{}'s members of {} differ from the merged log's",
                            sim.nodes[n].name,
                            record.short()
                        ),
                    );
                }
            }
            continue;
        }
        check_removals(sim, o, held, &mut removed);
        let truth = o.joined_members();
        for &n in held {
            let node = &sim.nodes[n];
            let Some(r) = node.record(record) else {
                continue;
            };
            // A removed member's replica (it pulls up to her removal, nothing after) is
            // not expected to hear of later joins; nor one with no access at all.
            if node.role != Role::Host
                && *record != node.actor()
                && (!o.removals_of(&node.actor()).is_empty()
                    || !o
                        .viewer(&node.actor(), crate::sim::EPOCH + sim.now)
                        .has_access())
            {
                continue;
            }
            if r.joined_members() != truth {
                fail(
                    &mut joined,
                    format!(
                        "{}'s joined members of {} differ from the truth's",
                        node.name,
                        record.short()
                    ),
                );
            }
        }
    }
    for v in &sim.violations {
        if v.contains("written after her removal") {
            fail(&mut pulls, v.clone());
        }
    }
    vec![removed, joined, log, pulls]
}

/// On each replica of a patient's record: every entry by a member whose removal that
/// replica holds, with a removal part in its causal past, is not valid; one written
/// concurrently with its stream's part (the administrative part where the replica holds
/// none in its stream) is void; and each such entry has the same status on every replica
/// that holds the whole removal as in the truth.
fn check_removals(sim: &Sim, o: &Record, held: &[NodeId], c: &mut Check) {
    let gone: Vec<ActorId> = o
        .joined_members()
        .iter()
        .filter(|m| m.removed.is_some())
        .map(|m| m.member)
        .collect();
    for &n in held {
        let node = &sim.nodes[n];
        let Some(r) = node.record(&o.id()) else {
            continue;
        };
        for m in &gone {
            let parts = removal_parts(r, m);
            if parts.is_empty() {
                continue;
            }
            let whole = removal_parts(o, m).iter().all(|p| parts.contains(p));
            for e in r.entries().filter(|e| e.entry().author == *m) {
                let id = e.id();
                let status = r.status(&id);
                let valid = matches!(status, Some(Status::Valid));
                let stream = r.category_of(&id).map(|c| c.to_string());
                let mine: Vec<EntryId> = {
                    let s: Vec<EntryId> = parts
                        .iter()
                        .filter(|(c, _)| *c == stream)
                        .map(|(_, p)| *p)
                        .collect();
                    if s.is_empty() {
                        parts
                            .iter()
                            .filter(|(c, _)| c.is_none())
                            .map(|(_, p)| *p)
                            .collect()
                    } else {
                        s
                    }
                };
                let after = parts.iter().any(|(_, p)| r.in_past(p, &id));
                let before = !mine.is_empty() && mine.iter().all(|p| r.in_past(&id, p));
                let what = e.entry().payload.kind();
                if after && valid {
                    fail(
                        c,
                        format!(
                            "{} holds {} ({what}) by a removed member as valid, the removal in \
                             its past",
                            node.name,
                            id.short()
                        ),
                    );
                } else if !after && !before && valid {
                    fail(
                        c,
                        format!(
                            "{} holds {} ({what}), written concurrently with its author's \
                             removal, as valid",
                            node.name,
                            id.short()
                        ),
                    );
                }
                // Alike wherever the whole removal is held (a replica holding only some
                // of its parts judges by those).
                if whole && status != o.status(&id) {
                    fail(
                        c,
                        format!(
                            "{} and the truth judge {} ({what}) by a removed member differently: \
                             {status:?} / {:?}",
                            node.name,
                            id.short(),
                            o.status(&id)
                        ),
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{scenario, Options, Scenario, Size};

    fn failures(sim: &mut Sim, starts: &str) -> Vec<String> {
        let checks = crate::check::check(sim);
        checks
            .checks
            .iter()
            .find(|c| c.name.starts_with(starts))
            .map(|c| c.failures.clone())
            .expect("the invariant")
    }

    fn node(sim: &Sim, name: &str) -> NodeId {
        sim.nodes
            .iter()
            .position(|n| n.name == name)
            .expect("the node")
    }

    /// The membership invariants hold on a run, and fail when one administrator's copy of
    /// the log has a change the others lack, or one replica of a patient's record holds a
    /// join the others lack.
    #[test]
    fn the_membership_invariants_see_replicas_that_disagree() {
        let mut sim = scenario::build(Scenario::Organisation, 1, Size::Small, Options::default());
        sim.run();
        assert_eq!(
            failures(&mut sim, "the organisation's nodes"),
            Vec::<String>::new()
        );
        assert_eq!(
            failures(&mut sim, "replicas agree on the members"),
            Vec::<String>::new()
        );
        assert_eq!(
            failures(&mut sim, "a removed member's entry"),
            Vec::<String>::new()
        );

        // The office manager adds a member the others never hear of.
        let admin = node(&sim, "Office manager");
        let org_record = sim.org.records[0];
        let stranger = cophr_protocol::testkit::key(99, "agency nurse");
        let now = sim.clock(admin);
        let add = {
            let r = sim.nodes[admin].record(&org_record).expect("held");
            r.prepare_all(
                &sim.nodes[admin].key,
                Payload::AddMember {
                    member: stranger.actor(),
                    role: cophr_protocol::org::Role::preset("nurse").expect("preset"),
                    label: "agency".into(),
                },
                now,
                None,
            )
            .expect("an administrator adds a member")
        };
        for v in add {
            sim.nodes[admin].store.write(v).expect("applies");
        }
        let f = failures(&mut sim, "the organisation's nodes");
        assert!(f.len() == 1 && f[0].contains("Office manager"), "{f:?}");

        // Nurse Lee's replica alone holds the stranger's join of George's record.
        let lee = node(&sim, "Nurse Lee");
        let george = node(&sim, "George");
        let record = sim.nodes[george].actor();
        let proof = sim.nodes[admin]
            .record(&org_record)
            .and_then(|r| r.membership_proof(&stranger.actor()))
            .expect("a proof");
        let join = sim.nodes[lee]
            .record(&record)
            .expect("held")
            .prepare_join(&stranger, proof, now, None)
            .expect("the stranger joins");
        sim.nodes[lee].store.write(join).expect("applies");
        let f = failures(&mut sim, "replicas agree on the members");
        assert!(f.len() == 1 && f[0].contains("Nurse Lee"), "{f:?}");
    }
}
