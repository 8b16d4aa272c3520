//! A record's admission part: what the gate needs to admit a new create, without the
//! record's history (issue 13: a write never costs the whole record).
//!
//! A write of record data checks the author's chain (its last entry), the entry's parents
//! (the heads of its stream and of the administrative stream), and the rules that read
//! the administrative entries: grants and their revocations, devices, keys and rotations,
//! guardians, organisation members, extension schemas, key epochs. None of that grows with
//! the record's data. So the part holds:
//!
//! - every entry a lean record keeps in memory (everything but the record data: creates,
//!   amends, deletes and annotations in category streams);
//! - every stream's heads and every chain's last entry;
//! - every index over those, and, for each chain, how many entries before them it skips.
//!
//! Entries keep their positions in the whole record, so everything that refers to them
//! reads the same. The part is the same [`Record`] type, running the same rules: it is not
//! a second implementation of the gate. It decides only an entry it admits in a part (a
//! create, plain or sealed) and only when the rules read nothing it does not hold:
//! any lookup of an entry it does not hold, or any walk of an index it holds only in part
//! (an item's versions, an entry's annotations, a whole chain, every entry), is noted as a
//! miss, and a check that missed answers [`Rejection::NeedsWholeRecord`] whatever it found.
//! The caller then asks the whole record. Misses are counted, never reset, so a check run
//! beside another on the same part can only see more of them than its own, never fewer:
//! it may give up needlessly, never decide wrongly.
//!
//! What an admitted entry changes is applied to the part as to the whole record (the same
//! [`Record::insert`]), so the part stays the admission part of the record with the entry
//! in it, and the next write is admitted the same way. A property test holds every
//! decision the part makes equal to the whole record's, for every author and grant, over
//! random workloads with revocations and concurrent replicas
//! (`protocol/tests/props.rs`, `an_admission_part_decides_as_the_whole_record`).
//!
//! The part answers nothing else alike: it is not folded, synced or snapshotted.

use super::*;

impl Record {
    /// The record's admission part (see the module docs).
    pub fn admission(&self) -> Record {
        let n = self.nodes.len();
        if n == 0 || self.nodes.is_part() {
            return self.clone();
        }
        let mut keep = vec![false; n];
        for (i, node) in self.nodes.values().enumerate() {
            keep[i] = !Record::lean_drops(node);
        }
        let mut mark = |id: &EntryId| {
            if let Some(i) = self.nodes.ix(id) {
                keep[i as usize] = true;
            }
        };
        for heads in self.heads.values() {
            heads.iter().for_each(&mut mark);
        }
        for chain in self.chains.values() {
            chain.last().into_iter().for_each(&mut mark);
        }
        let held = |id: &EntryId| self.nodes.ix(id).is_some_and(|i| keep[i as usize]);
        let nodes: Vec<(Ix, Node)> = self
            .nodes
            .values()
            .enumerate()
            .filter(|(i, _)| keep[*i])
            .map(|(i, node)| (i as Ix, node.clone()))
            .collect();
        let placeholder = self.nodes.at(0).clone();
        // Each chain: the longest run at its end that the part holds.
        let mut chains = HashMap::default();
        let mut skipped = HashMap::default();
        for (key, chain) in &self.chains {
            let tail = chain.iter().rev().take_while(|id| held(id)).count();
            let from = chain.len() - tail;
            chains.insert(key.clone(), chain[from..].to_vec());
            if from > 0 {
                skipped.insert(key.clone(), from as u64);
            }
        }
        let keyed = |m: &HashMap<EntryId, Vec<EntryId>>| -> HashMap<EntryId, Vec<EntryId>> {
            m.iter()
                .filter(|(k, _)| held(k))
                .map(|(k, v)| (*k, v.iter().copied().filter(|i| held(i)).collect()))
                .collect()
        };
        let positions = |m: &HashMap<EntryId, Vec<Ix>>| -> HashMap<EntryId, Vec<Ix>> {
            m.iter()
                .map(|(k, v)| {
                    let v: Vec<Ix> = v.iter().copied().filter(|i| keep[*i as usize]).collect();
                    (*k, v)
                })
                .filter(|(_, v)| !v.is_empty())
                .collect()
        };
        Record {
            id: self.id,
            nodes: Nodes::part(nodes, n, placeholder),
            actors: self.actors.clone(),
            streams: self.streams.clone(),
            epoch_ids: self.epoch_ids.clone(),
            voids: self
                .voids
                .iter()
                .filter(|(k, _)| held(k))
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            proxies: keyed(&self.proxies),
            vias: keyed(&self.vias),
            author_index: self.author_index.clone(),
            chains,
            skipped,
            heads: self.heads.clone(),
            grants: self.grants.clone(),
            by_grant: positions(&self.by_grant),
            by_proxy: positions(&self.by_proxy),
            sub_grants: self.sub_grants.clone(),
            versions: keyed(&self.versions),
            annotations: keyed(&self.annotations),
            forks: self.forks.clone(),
            device_adds: self.device_adds.clone(),
            retirements: self.retirements.clone(),
            rotations_from: self.rotations_from.clone(),
            documents: self
                .documents
                .iter()
                .map(|(k, v)| (*k, v.iter().copied().filter(|i| held(i)).collect()))
                .filter(|(_, v): &(_, Vec<EntryId>)| !v.is_empty())
                .collect(),
            sealing: self.sealing.subset(&held),
            schema_defs: self.schema_defs.clone(),
            member_log: self.member_log.clone(),
            source: self.source.clone(),
            holding: None,
        }
    }

    /// Whether this is a record's admission part ([`Record::admission`]).
    pub fn is_admission(&self) -> bool {
        self.nodes.is_part()
    }

    /// What an admission part may decide: a create of record data, plain or sealed.
    /// Everything else (a change to an item, which reads the item's versions; anything
    /// administrative, which may change the status of entries the part does not hold) is
    /// the whole record's to decide.
    pub(crate) fn admitted_in_part(p: &Payload) -> bool {
        matches!(p, Payload::Create { .. } | Payload::SealedCreate { .. })
    }

    /// How many entries at the start of a chain this admission part does not hold.
    pub(crate) fn skipped_of(&self, key: &(ActorId, Stream)) -> u64 {
        self.skipped.get(key).copied().unwrap_or(0)
    }
}
