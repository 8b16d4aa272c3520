//! A record as it stood at a past time or causal position, built from the record's own
//! indexes without reading or re-checking a single entry.
//!
//! A causally closed subset of a valid record (a time prefix, since no entry is earlier
//! than its parents; or the causal past of some heads) is a valid record on its own, and
//! everything the rules decided of an entry from its causal past — its clock, depth,
//! stream, item, whom its author acts for, the proxy grants it relies on — is the same
//! there, since that past is all in the subset. So the subset copies those nodes (their
//! entries shared, not copied) and filters every index to the entries it holds. What
//! depends on what else is held is computed again: each stream's heads (the entries no
//! other entry of the stream has in its causal past) and every status (a revocation,
//! device removal or key rotation after the cut no longer voids anything). A property
//! test holds this equal to replaying the subset's entries one by one.

use super::*;

impl Record {
    /// A new record holding only the entries `keep` selects. `keep` must select a
    /// causally closed set (a time prefix or the past of some heads).
    pub(crate) fn subset(&self, keep: impl Fn(&Node) -> bool) -> Record {
        // Old positions (in the list held: all of a whole record, a part's own) to new ones.
        let mut moved = vec![NONE; self.nodes.values().len()];
        let old = |ix: Ix| self.nodes.listed(ix);
        let mut nodes = Nodes::default();
        for (i, n) in self.nodes.values().enumerate() {
            if !keep(n) {
                continue;
            }
            let remap = |ix: Ix| match old(ix) {
                Some(k) if ix != NONE => moved[k],
                _ => NONE,
            };
            let mut m = n.clone();
            m.h.auth = remap(n.h.auth);
            m.root = remap(n.root);
            m.rotation = remap(n.rotation);
            m.void = false;
            moved[i] = nodes.push(m);
        }
        let has = |id: &EntryId| {
            self.nodes
                .ix(id)
                .and_then(old)
                .is_some_and(|k| moved[k] != NONE)
        };
        let ids =
            |v: &Vec<EntryId>| -> Vec<EntryId> { v.iter().copied().filter(|i| has(i)).collect() };
        fn nonempty<K: Clone + Eq + std::hash::Hash>(
            m: &HashMap<K, Vec<EntryId>>,
            ids: &dyn Fn(&Vec<EntryId>) -> Vec<EntryId>,
        ) -> HashMap<K, Vec<EntryId>> {
            m.iter()
                .map(|(k, v)| (k.clone(), ids(v)))
                .filter(|(_, v)| !v.is_empty())
                .collect()
        }
        let positions = |m: &HashMap<EntryId, Vec<Ix>>| -> HashMap<EntryId, Vec<Ix>> {
            m.iter()
                .filter(|(k, _)| has(k))
                .map(|(k, v)| {
                    let v: Vec<Ix> = v
                        .iter()
                        .map(|i| old(*i).map_or(NONE, |k| moved[k]))
                        .filter(|i| *i != NONE)
                        .collect();
                    (*k, v)
                })
                .filter(|(_, v)| !v.is_empty())
                .collect()
        };
        let chains: HashMap<(ActorId, Stream), Vec<EntryId>> = nonempty(&self.chains, &ids);
        let grants = self
            .grants
            .iter()
            .filter(|(id, _)| has(id))
            .map(|(id, g)| {
                let mut g = g.clone();
                g.revoked_by.retain(|r| has(r));
                (*id, g)
            })
            .collect();
        let mut r = Record {
            id: self.id,
            nodes,
            actors: self.actors.clone(),
            streams: self.streams.clone(),
            epoch_ids: self.epoch_ids.clone(),
            voids: HashMap::default(),
            proxies: self
                .proxies
                .iter()
                .filter(|(k, _)| has(k))
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            vias: self
                .vias
                .iter()
                .filter(|(k, _)| has(k))
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            author_index: self.author_index.clone(),
            chains,
            skipped: HashMap::default(),
            heads: HashMap::default(),
            grants,
            by_grant: positions(&self.by_grant),
            by_proxy: positions(&self.by_proxy),
            sub_grants: nonempty(&self.sub_grants, &ids)
                .into_iter()
                .filter(|(k, _)| has(k))
                .collect(),
            versions: nonempty(&self.versions, &ids)
                .into_iter()
                .filter(|(k, _)| has(k))
                .collect(),
            annotations: nonempty(&self.annotations, &ids)
                .into_iter()
                .filter(|(k, _)| has(k))
                .collect(),
            // Fork proofs are evidence about entries refused, not part of any state.
            forks: Vec::new(),
            device_adds: nonempty(&self.device_adds, &ids),
            retirements: nonempty(&self.retirements, &ids),
            rotations_from: nonempty(&self.rotations_from, &ids),
            documents: self
                .documents
                .iter()
                .map(|(k, v)| (*k, ids(v)))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
            sealing: self.sealing.subset(&has),
            schema_defs: nonempty(&self.schema_defs, &ids),
            member_log: ids(&self.member_log),
            source: self.source.clone(),
            holding: None,
        };
        r.heads = r.maximal_per_stream();
        r.settle_statuses();
        r
    }

    /// Each stream's heads: of the last entries of its chains, those no other has in its
    /// causal past. (Every earlier entry of a chain is in the past of the next; and an
    /// entry's descendants in its own stream name it, or one of its descendants, as a
    /// parent, so the heads are exactly the stream's maximal entries.)
    fn maximal_per_stream(&self) -> HashMap<Stream, BTreeSet<EntryId>> {
        let mut last: HashMap<&Stream, Vec<&Node>> = HashMap::default();
        for ((_, stream), chain) in &self.chains {
            if let Some(n) = chain.last().and_then(|id| self.nodes.get(id)) {
                last.entry(stream).or_default().push(n);
            }
        }
        last.into_iter()
            .map(|(stream, ends)| {
                let heads = ends
                    .iter()
                    .filter(|n| !ends.iter().any(|o| o.h.id != n.h.id && o.has_in_past(n)))
                    .map(|n| n.h.id)
                    .collect();
                (stream.clone(), heads)
            })
            .collect()
    }

    /// Computes every status again from what is held, in causal order (a status may
    /// depend on the status of a device addition or key rotation before it).
    fn settle_statuses(&mut self) {
        if self.sealing_endings_empty() {
            // No revocation, device removal or key rotation: nothing is void.
            return;
        }
        let held: Vec<Ix> = self.nodes.held_positions().collect();
        for i in held {
            let n = self.nodes.at(i);
            let status = self.compute_status(n);
            if status != Status::Valid {
                let id = n.h.id;
                self.set_status(&id, status);
            }
        }
    }
}
