//! A community host operator running several host processes (the `city` scenario).
//!
//! Placement is rendezvous (highest random weight) hashing of the record id over the
//! operator's host processes: each host scores `hash(record id, host peer id)` and the
//! highest score is the record's host. Any party that knows the host list computes it from
//! the record id alone (the operator's front answering a patient, the operator's
//! rebalancing), nothing is stored per record, the load is balanced within binomial noise,
//! and adding a host moves exactly the records that now score highest on it (about
//! `1/(H+1)` of them, all to the new host, the least any balanced placement can move).
//!
//! A host cannot move a record by itself: the protocol answers `Host` and `Release` only
//! to the patient's proof, and the home pointer and the move-home entry are the patient's
//! signatures. So the operator's rebalancing *asks* each affected patient's node to move
//! (a notice outside the sync protocol: `cophr` has no message for it), and the patient's
//! node runs the same procedure as `cophr move` (`procs.rs`).

use std::collections::{BTreeMap, BTreeSet};

use cophr_protocol::RecordId;

use super::{Act, NodeId, Sim};
use crate::Time;

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A host's rendezvous score for a record.
pub(crate) fn score(record: &RecordId, host: &[u8]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for chunk in record.as_bytes().chunks(8).chain(host.chunks(8)) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        h = mix(h ^ u64::from_le_bytes(w));
    }
    h
}

/// Rendezvous placement: the position in `hosts` (peer ids) of the host with the highest
/// score for `record` (the first of equal scores); `None` when there is no host.
pub(crate) fn place(record: &RecordId, hosts: &[&[u8]]) -> Option<usize> {
    let mut best: Option<(u64, usize)> = None;
    for (i, h) in hosts.iter().enumerate() {
        let s = score(record, h);
        if best.is_none_or(|(b, _)| s > b) {
            best = Some((s, i));
        }
    }
    best.map(|(_, i)| i)
}

/// What the operator did and when.
#[derive(Debug, Default)]
pub(crate) struct Operator {
    /// Host processes in service, in the order started.
    pub hosts: Vec<NodeId>,
    /// The host process added mid-run, once added.
    pub added: Option<(NodeId, Time)>,
    /// When the rebalancing started.
    pub rebalanced_at: Option<Time>,
    /// Passes of the rebalancing (the operator runs it again until nothing is left to
    /// move: a record whose first hosting was still in flight is found by a later pass).
    pub passes: u32,
    /// Records each host held when the rebalancing started, in `hosts` order.
    pub load_before: Vec<(NodeId, usize)>,
    /// Moves the rebalancing asked of patients: record → (from, to, when the notice
    /// reached the patient's node).
    pub asked: BTreeMap<RecordId, (NodeId, NodeId, Time)>,
    /// Moves finished (new host confirmed, move entry pushed, old host released): when.
    pub done: BTreeMap<RecordId, Time>,
    /// Records admitted (first hosted) through the operator's front, and how many of them
    /// after the host was added.
    pub admitted: (u64, u64),
    /// (replica, moved record) pairs where a node other than the patient synced with the
    /// record's new host (which it learnt from the move entry or the DHT).
    pub reached: BTreeSet<(NodeId, RecordId)>,
}

impl Sim {
    /// The host the operator's placement names for `record` now.
    pub(crate) fn placement(&self, record: &RecordId) -> Option<NodeId> {
        let op = self.operator.as_ref()?;
        let peers: Vec<&[u8]> = op.hosts.iter().map(|&h| &self.nodes[h].peer[..]).collect();
        place(record, &peers).map(|i| op.hosts[i])
    }

    /// The patient's node asks the operator's front where to host its record, and hosts
    /// it there (`cophr host` with the address and invitation the front gave).
    pub(super) fn admit(&mut self, node: NodeId, record: RecordId) {
        let Some(to) = self.placement(&record) else {
            return;
        };
        if let Some(op) = self.operator.as_mut() {
            op.admitted.0 += 1;
            op.admitted.1 += u64::from(op.added.is_some());
        }
        self.start_proc(node, record, to);
    }

    /// A new host process joins the operator's set (its address goes into the front's
    /// host list).
    pub(super) fn add_host(&mut self, host: NodeId) {
        let now = self.now;
        if let Some(op) = self.operator.as_mut() {
            if !op.hosts.contains(&host) {
                op.hosts.push(host);
                op.added = Some((host, now));
            }
        }
        self.open_windows.insert("rebalancing".into(), now);
    }

    /// The operator lists the records each host holds, and asks the patient of every record
    /// the placement now puts elsewhere (and not asked before) to move it there: one notice every `pace`, each
    /// reaching the patient's node after a short delay.
    pub(super) fn rebalance(&mut self, pace: Time) {
        let Some(hosts) = self.operator.as_ref().map(|o| o.hosts.clone()) else {
            return;
        };
        let mut load = Vec::new();
        let mut moves = Vec::new();
        for &h in &hosts {
            let held: Vec<RecordId> = self.nodes[h]
                .replicas
                .iter()
                .filter(|(_, r)| r.hosted)
                .map(|(id, _)| *id)
                .collect();
            load.push((h, held.len()));
            for record in held {
                if self
                    .operator
                    .as_ref()
                    .is_some_and(|o| o.asked.contains_key(&record))
                {
                    continue;
                }
                match self.placement(&record) {
                    Some(to) if to != h => moves.push((record, h, to)),
                    _ => {}
                }
            }
        }
        let now = self.now;
        let mut at = now;
        let mut notices = Vec::new();
        for (record, from, to) in moves {
            let Some(&patient) = self.patients.get(&record) else {
                continue;
            };
            at += pace;
            let delivered = at + self.rng.range(200, 5_000);
            notices.push((delivered, patient, record, to));
            if let Some(op) = self.operator.as_mut() {
                op.asked.insert(record, (from, to, delivered));
            }
        }
        if let Some(op) = self.operator.as_mut() {
            if op.rebalanced_at.is_none() {
                op.rebalanced_at = Some(now);
                op.load_before = load;
            }
            op.passes += 1;
        }
        for (t, node, record, to) in notices {
            self.at(t, Act::Host { node, record, to });
        }
    }

    /// The patient's procedure for `record` ended (hosted, or moved and released).
    pub(super) fn proc_finished(&mut self, record: RecordId) {
        let now = self.now;
        let Some(op) = self.operator.as_mut() else {
            return;
        };
        if op.asked.contains_key(&record) && !op.done.contains_key(&record) {
            op.done.insert(record, now);
            if op.done.len() == op.asked.len() {
                if let Some(start) = self.open_windows.remove("rebalancing") {
                    self.windows.push((start, now, "rebalancing".into()));
                }
            }
        }
    }

    /// A sync by `n` with `peer` succeeded: note it if `peer` is the new host of a moved
    /// record and `n` is not its patient.
    pub(super) fn note_reached(&mut self, n: NodeId, peer: NodeId, record: RecordId) {
        if record == self.nodes[n].actor() {
            return;
        }
        let Some(op) = self.operator.as_mut() else {
            return;
        };
        if op.asked.get(&record).is_some_and(|&(_, to, _)| to == peer) {
            op.reached.insert((n, record));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> RecordId {
        cophr_protocol::testkit::key(i, "resident").actor()
    }

    /// Adding a host moves only records onto the new host, about `1/(H+1)` of them, and
    /// leaves every host's load within five binomial standard deviations of the mean;
    /// removing it puts every record back where it was.
    #[test]
    fn adding_a_host_moves_only_the_records_the_new_host_wins() {
        let names: Vec<Vec<u8>> = (0..5).map(|i| format!("host {i}").into_bytes()).collect();
        let four: Vec<&[u8]> = names[..4].iter().map(Vec::as_slice).collect();
        let five: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        let n = 5_000u64;
        let (mut moved, mut load) = (0u64, [0u64; 5]);
        for i in 0..n {
            let r = record(i);
            let (a, b) = (place(&r, &four), place(&r, &five));
            let b = b.expect("a host");
            load[b] += 1;
            if a != Some(b) {
                assert_eq!(b, 4, "a record moved between old hosts");
                moved += 1;
            }
        }
        let mean = n as f64 / 5.0;
        let sd = (n as f64 * 0.2 * 0.8).sqrt();
        assert!((moved as f64 - mean).abs() <= 5.0 * sd, "moved {moved}");
        for l in load {
            assert!((l as f64 - mean).abs() <= 5.0 * sd, "{load:?}");
        }
        assert_eq!(place(&record(1), &[]), None);
    }
}
