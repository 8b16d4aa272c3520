//! The pure difference: frontiers, stream digests, and what a viewer lacks and may see.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use super::{Digest, Frontier};
use crate::category::Category;
use crate::entry::Verified;
use crate::fold::Viewer;
use crate::ids::{ActorId, EntryId};
use crate::record::{Record, Stream};

fn digest_of(chains: &BTreeMap<ActorId, u64>) -> Digest {
    let mut h = blake3::Hasher::new();
    for (a, s) in chains {
        if *s > 0 {
            h.update(a.as_bytes());
            h.update(&s.to_le_bytes());
        }
    }
    *h.finalize().as_bytes()
}

impl Record {
    /// This replica's whole frontier.
    pub fn frontier(&self) -> Frontier {
        let mut f = Frontier::new();
        for ((author, stream), chain) in self.chains() {
            f.entry(stream.clone())
                .or_default()
                .insert(*author, chain.len() as u64);
        }
        f
    }

    /// The frontier of what sync sends `viewer` ([`Record::can_send`]): of each chain, the
    /// prefix before the first entry not sent. A revocation cut, an expiry and a scope are
    /// all causally closed, so outside `messages` what is sent is a prefix, found by binary
    /// search. In `messages`, the thread rule is per entry: the chain is walked to its first
    /// entry not sent (a thread message in plain content, for a non-participant), and
    /// nothing after it is sent.
    pub fn visible_frontier(&self, viewer: &Viewer) -> Frontier {
        let mut f = Frontier::new();
        for ((author, stream), chain) in self.chains() {
            let sent = |id: &EntryId| self.can_send(viewer, id);
            let visible = if *stream == Some(Category::Messages) {
                chain.iter().take_while(|id| sent(id)).count() as u64
            } else {
                chain.partition_point(sent) as u64
            };
            if visible > 0 {
                f.entry(stream.clone())
                    .or_default()
                    .insert(*author, visible);
            }
        }
        f
    }

    /// Digests of every stream this replica holds (the requester's first message).
    pub fn digests(&self) -> Vec<(Stream, Digest)> {
        self.frontier()
            .iter()
            .map(|(s, chains)| (s.clone(), digest_of(chains)))
            .collect()
    }

    /// Server side of round one: the streams visible to `viewer` whose digest differs from
    /// the requester's (or that it lacks). Streams it may not see are never mentioned.
    pub fn differing(&self, viewer: &Viewer, theirs: &[(Stream, Digest)]) -> Vec<Stream> {
        let theirs: HashMap<&Stream, &Digest> = theirs.iter().map(|(s, d)| (s, d)).collect();
        self.visible_frontier(viewer)
            .iter()
            .filter(|(s, chains)| theirs.get(s) != Some(&&digest_of(chains)))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// Server side of round two: up to `limit` entries and `max_bytes` encoded bytes (but
    /// always at least one entry, when any remain) visible to `viewer` beyond the
    /// requester's frontier (only in the streams it names), in causal order; whether more
    /// remain; and the server's visible frontier for those streams.
    pub fn entries_beyond(
        &self,
        viewer: &Viewer,
        theirs: &Frontier,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<Verified>, bool, Frontier) {
        self.beyond(viewer, theirs, limit, max_bytes, |id, _| {
            let v = self.get(id)?;
            let size = v.signed().bytes().len();
            Some((v, size))
        })
    }

    /// [`Record::entries_beyond`] as the entries' canonical signed bytes, not decoded (what
    /// a server sends: a lean record reads them from its source, hash-checked, and never
    /// decodes them), each with where it sits: its chain (author, stream) and sequence
    /// number.
    pub fn entry_bytes_beyond(
        &self,
        viewer: &Viewer,
        theirs: &Frontier,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<BeyondBytes>, bool, Frontier) {
        self.beyond(viewer, theirs, limit, max_bytes, |id, (chain, seq)| {
            let bytes = self.entry_bytes(id)?.into_owned();
            let size = bytes.len();
            Some((
                BeyondBytes {
                    id: *id,
                    author: chain.0,
                    stream: chain.1.clone(),
                    seq,
                    bytes,
                },
                size,
            ))
        })
    }

    /// The walk behind [`Record::entries_beyond`]: `fetch` reads each entry taken (given
    /// its chain and sequence number) as whatever the caller sends, with its size in bytes.
    fn beyond<T>(
        &self,
        viewer: &Viewer,
        theirs: &Frontier,
        limit: usize,
        max_bytes: usize,
        mut fetch: impl FnMut(&EntryId, (&(ActorId, Stream), u64)) -> Option<(T, usize)>,
    ) -> (Vec<T>, bool, Frontier) {
        let visible = self.visible_frontier(viewer);
        // The runs of each chain still to send: chain[from..upto], with the chain and
        // `from` (so the entry at position i of a run has sequence number from + i + 1).
        type Run<'a> = (&'a (ActorId, Stream), usize, &'a [EntryId]);
        let mut runs: Vec<Run<'_>> = Vec::new();
        let mut frontier = Frontier::new();
        for (stream, have) in theirs {
            let Some(chains) = visible.get(stream) else {
                continue;
            };
            frontier.insert(stream.clone(), chains.clone());
            for (key, chain) in self.chains() {
                if &key.1 != stream {
                    continue;
                }
                let upto = chains.get(&key.0).copied().unwrap_or(0) as usize;
                let from = have.get(&key.0).copied().unwrap_or(0) as usize;
                if upto > from {
                    runs.push((key, from, &chain[from..upto]));
                }
            }
        }
        // Grants and revocations (the administrative stream, which never depends on
        // category entries) travel first; then everything else in causal (depth) order.
        // Each run is already in that order (an entry is deeper than its backlink, and a
        // chain keeps to one stream), so the first `limit` are taken by merging the runs:
        // the cost follows the batch, not what is still to come, which a bulk transfer
        // asks for again and again.
        let key = |id: &EntryId| {
            (
                self.stream_of(id).is_some_and(Option::is_some),
                self.depth_of(id),
                *id,
            )
        };
        let remaining: usize = runs.iter().map(|r| r.2.len()).sum();
        // (order key of a run's next entry, which run, its position in the run)
        type Head = ((bool, u32, EntryId), usize, usize);
        let mut heads: BinaryHeap<Reverse<Head>> = runs
            .iter()
            .enumerate()
            .map(|(r, run)| Reverse((key(&run.2[0]), r, 0)))
            .collect();
        let mut out = Vec::with_capacity(limit.min(remaining));
        let mut bytes = 0usize;
        let mut taken = 0usize;
        while out.len() < limit {
            let Some(Reverse(((k, d, id), r, i))) = heads.pop() else {
                break;
            };
            let (chain, from, run) = runs[r];
            if let Some((v, size)) = fetch(&id, (chain, (from + i + 1) as u64)) {
                if !out.is_empty() && bytes + size > max_bytes {
                    heads.push(Reverse(((k, d, id), r, i)));
                    break;
                }
                bytes += size;
                out.push(v);
            }
            taken += 1;
            if let Some(next) = run.get(i + 1) {
                heads.push(Reverse((key(next), r, i + 1)));
            }
        }
        (out, remaining > taken, frontier)
    }
}

/// One entry of [`Record::entry_bytes_beyond`]: its canonical signed bytes and where it
/// sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BeyondBytes {
    /// The entry's id (the BLAKE3 hash of `bytes`).
    pub id: EntryId,
    /// Its author.
    pub author: ActorId,
    /// Its stream.
    pub stream: Stream,
    /// Its sequence number in its author's chain in that stream.
    pub seq: u64,
    /// The canonical signed entry.
    pub bytes: Vec<u8>,
}
