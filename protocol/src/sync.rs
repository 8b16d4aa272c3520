//! Sync: what two nodes say to replicate a record, and the pure logic on each side.
//!
//! A replica's holdings are described exactly by its *frontier*: for each (stream, author)
//! chain, the highest sequence number held (entries arrive in causal order, so a chain is
//! always held as a prefix). The exchange:
//!
//! 1. The requester sends a digest per stream it holds ([`Request::Digests`]); the server
//!    answers which streams *it may show the requester* differ ([`Response::Differ`]). An
//!    up-to-date check is this one round trip.
//! 2. The requester sends its frontier for those streams ([`Request::Pull`]); the server
//!    answers with the entries the requester lacks and may see, in causal order, in bounded
//!    batches ([`Response::Entries`]), with its own frontier so the requester can push back
//!    what the server lacks ([`Request::Push`]).
//!
//! The cost is linear in the number of chains plus the difference, never in the record's
//! size. The server never names a stream, chain, id or count the requester may not see:
//! everything it computes is restricted to [`Record::can_see`].
//!
//! Every request carries a [`Proof`] that the requester holds the grantee's key, bound to
//! both peers of this connection and a fresh nonce; [`NonceCache`] refuses replays.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::entry::{from_cbor_canonical, to_cbor, EntryError, Timestamp, Verified};
use crate::fold::Viewer;
use crate::ids::{ActorId, EntryId, RecordId, Sig};
use crate::keys::{self, Domain, Keypair};
use crate::record::{Record, Stream};

/// The request-response protocol id (versioned).
pub const PROTOCOL: &str = "/cophr/sync/1";
/// Largest encoded message.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// Most entries in one response or push.
pub const MAX_BATCH: usize = 1024;
/// Most chains a frontier may list.
pub const MAX_CHAINS: usize = 16 * 1024;
/// How far a proof's time may be from the server's clock.
pub const PROOF_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Per stream, per author: the highest sequence number held.
pub type Frontier = BTreeMap<Stream, BTreeMap<ActorId, u64>>;

/// A stream digest: BLAKE3 over its chains' (author, highest sequence) pairs.
pub type Digest = [u8; 32];

/// Proof that the requester holds `actor`'s key, bound to this connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    /// The grantee (or patient) the request is made as.
    pub actor: ActorId,
    /// The record asked about.
    pub record: RecordId,
    /// The requesting peer's id (bytes of its libp2p peer id).
    #[serde(with = "serde_bytes")]
    pub client: Vec<u8>,
    /// The serving peer's id.
    #[serde(with = "serde_bytes")]
    pub server: Vec<u8>,
    /// Fresh randomness.
    pub nonce: [u8; 16],
    /// Requester's time.
    pub time: Timestamp,
    /// `actor`'s signature over all of the above.
    pub sig: Sig,
}

#[derive(Serialize)]
struct ProofBody<'a> {
    actor: &'a ActorId,
    record: &'a RecordId,
    #[serde(with = "serde_bytes")]
    client: &'a [u8],
    #[serde(with = "serde_bytes")]
    server: &'a [u8],
    nonce: &'a [u8; 16],
    time: Timestamp,
}

/// Why a proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Made for another pair of peers (copied from elsewhere).
    #[error("proof is bound to another connection")]
    WrongPeers,
    /// Too old or from the future.
    #[error("proof time is outside the accepted window")]
    Stale,
    /// Seen before.
    #[error("proof was already used")]
    Replayed,
    /// Bad signature.
    #[error("proof signature does not verify")]
    Signature,
}

impl Proof {
    /// Signs a proof for a request as `key`'s actor.
    pub fn new(
        key: &Keypair,
        record: RecordId,
        client: &[u8],
        server: &[u8],
        nonce: [u8; 16],
        time: Timestamp,
    ) -> Proof {
        let actor = key.actor();
        let body = to_cbor(&ProofBody {
            actor: &actor,
            record: &record,
            client,
            server,
            nonce: &nonce,
            time,
        });
        Proof {
            actor,
            record,
            client: client.to_vec(),
            server: server.to_vec(),
            nonce,
            time,
            sig: key.sign(Domain::Possession, &body),
        }
    }

    /// Checks the proof for a request that arrived from `client` at `server`, and records
    /// its nonce. Returns the actor it proves.
    pub fn check(
        &self,
        client: &[u8],
        server: &[u8],
        now: Timestamp,
        seen: &mut NonceCache,
    ) -> Result<ActorId, ProofError> {
        if self.client != client || self.server != server {
            return Err(ProofError::WrongPeers);
        }
        if self.time.abs_diff(now) > PROOF_WINDOW_MS {
            return Err(ProofError::Stale);
        }
        let body = to_cbor(&ProofBody {
            actor: &self.actor,
            record: &self.record,
            client: &self.client,
            server: &self.server,
            nonce: &self.nonce,
            time: self.time,
        });
        keys::verify(&self.actor, Domain::Possession, &body, &self.sig)
            .map_err(|_| ProofError::Signature)?;
        seen.insert(self.actor, self.nonce, now)?;
        Ok(self.actor)
    }
}

/// Nonces seen within the proof window, bounded in size.
#[derive(Debug, Clone)]
pub struct NonceCache {
    seen: HashMap<(ActorId, [u8; 16]), Timestamp>,
    order: VecDeque<(Timestamp, ActorId, [u8; 16])>,
    capacity: usize,
}

impl NonceCache {
    /// A cache holding at most `capacity` nonces; beyond that the oldest are forgotten
    /// (and proofs older than the window are refused anyway).
    pub fn new(capacity: usize) -> Self {
        NonceCache {
            seen: HashMap::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    fn insert(
        &mut self,
        actor: ActorId,
        nonce: [u8; 16],
        now: Timestamp,
    ) -> Result<(), ProofError> {
        while let Some((t, a, n)) = self.order.front().copied() {
            if now.saturating_sub(t) > 2 * PROOF_WINDOW_MS || self.order.len() >= self.capacity {
                self.order.pop_front();
                self.seen.remove(&(a, n));
            } else {
                break;
            }
        }
        if self.seen.insert((actor, nonce), now).is_some() {
            return Err(ProofError::Replayed);
        }
        self.order.push_back((now, actor, nonce));
        Ok(())
    }
}

/// A request from one node to another.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    /// Round one: a digest of each stream the requester holds.
    Digests {
        /// Who is asking.
        proof: Proof,
        /// Stream digests.
        digests: Vec<(Stream, Digest)>,
    },
    /// Round two: the requester's frontier for the streams that differ.
    Pull {
        /// Who is asking.
        proof: Proof,
        /// What the requester holds of those streams.
        frontier: Frontier,
        /// Most entries wanted in this response.
        limit: u32,
    },
    /// Entries the requester wrote or holds that the server lacks.
    Push {
        /// Who is pushing.
        proof: Proof,
        /// Encoded signed entries, in causal order.
        entries: Vec<serde_bytes::ByteBuf>,
    },
    /// Something changed in a record the receiver replicates from the sender: pull when
    /// ready. Carries nothing else, so it reveals nothing.
    Announce {
        /// The record.
        record: RecordId,
    },
    /// The patient asks the receiver to be the record's home host and publish this
    /// pointer (signed by the patient) in the DHT.
    Host {
        /// The patient.
        proof: Proof,
        /// The encoded [`crate::home::SignedPointer`].
        pointer: serde_bytes::ByteBuf,
    },
    /// The patient tells a former home host to delete its copy (after a move).
    Release {
        /// The patient.
        proof: Proof,
    },
    /// Audit events beyond what the requester holds (patient or audit right only).
    AuditPull {
        /// Who is asking.
        proof: Proof,
        /// For each node, the highest audit sequence held.
        have: Vec<(ActorId, u64)>,
    },
    /// Audit events for the receiver to keep with the record.
    AuditPush {
        /// Who is pushing.
        proof: Proof,
        /// Encoded signed audit events.
        events: Vec<serde_bytes::ByteBuf>,
    },
}

/// A response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Response {
    /// Streams (that the requester may see) whose digests differ or that it lacks.
    Differ {
        /// The streams.
        streams: Vec<Stream>,
    },
    /// Entries the requester lacks, in causal order.
    Entries {
        /// Encoded signed entries.
        entries: Vec<serde_bytes::ByteBuf>,
        /// Whether more remain (pull again).
        more: bool,
        /// The server's visible frontier for the streams asked about.
        frontier: Frontier,
    },
    /// The outcome of a push.
    Pushed {
        /// Entries stored.
        accepted: Vec<EntryId>,
        /// Entries refused, with the reason.
        rejected: Vec<(EntryId, String)>,
    },
    /// Audit events, in each node's sequence order.
    AuditEvents {
        /// Encoded signed audit events.
        events: Vec<serde_bytes::ByteBuf>,
    },
    /// Done.
    Ack,
    /// The request was refused.
    Refused {
        /// Why (never reveals anything about the record to an unauthorised peer).
        reason: String,
    },
}

/// Encodes a message.
pub fn encode<T: Serialize>(m: &T) -> Vec<u8> {
    to_cbor(m)
}

/// Decodes a message, bounded and canonical.
pub fn decode<T: Serialize + for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, EntryError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(EntryError::TooLarge(bytes.len()));
    }
    from_cbor_canonical(bytes)
}

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

    /// The frontier of what `viewer` may see. Each chain's visible part is a prefix (a
    /// revocation cut, an expiry, a scope are all causally closed), found by binary search.
    pub fn visible_frontier(&self, viewer: &Viewer) -> Frontier {
        let mut f = Frontier::new();
        for ((author, stream), chain) in self.chains() {
            let visible = chain.partition_point(|id| self.can_see(viewer, id)) as u64;
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

    /// Server side of round two: up to `limit` entries visible to `viewer` beyond the
    /// requester's frontier (only in the streams it names), in causal order; whether more
    /// remain; and the server's visible frontier for those streams.
    pub fn entries_beyond(
        &self,
        viewer: &Viewer,
        theirs: &Frontier,
        limit: usize,
    ) -> (Vec<&Verified>, bool, Frontier) {
        let visible = self.visible_frontier(viewer);
        // The runs of each chain still to send: chain[from..upto].
        let mut runs: Vec<&[EntryId]> = Vec::new();
        let mut frontier = Frontier::new();
        for (stream, have) in theirs {
            let Some(chains) = visible.get(stream) else {
                continue;
            };
            frontier.insert(stream.clone(), chains.clone());
            for ((author, s), chain) in self.chains() {
                if s != stream {
                    continue;
                }
                let upto = chains.get(author).copied().unwrap_or(0) as usize;
                let from = have.get(author).copied().unwrap_or(0) as usize;
                if upto > from {
                    runs.push(&chain[from..upto]);
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
        let remaining: usize = runs.iter().map(|r| r.len()).sum();
        // (order key of a run's next entry, which run, its position in the run)
        type Head = ((bool, u32, EntryId), usize, usize);
        let mut heads: BinaryHeap<Reverse<Head>> = runs
            .iter()
            .enumerate()
            .map(|(r, run)| Reverse((key(&run[0]), r, 0)))
            .collect();
        let mut out = Vec::with_capacity(limit.min(remaining));
        while out.len() < limit {
            let Some(Reverse(((_, _, id), r, i))) = heads.pop() else {
                break;
            };
            if let Some(v) = self.get(&id) {
                out.push(v);
            }
            if let Some(next) = runs[r].get(i + 1) {
                heads.push(Reverse((key(next), r, i + 1)));
            }
        }
        (out, remaining > limit, frontier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Level;
    use crate::entry::Payload;
    use crate::ids::EntryId;
    use crate::record::Status;
    use crate::testkit::{bp, grant, key, text_body, Fixture};
    use crate::Category;

    /// Replicates `server` into `replica` as `actor` sees it, the way two nodes would.
    /// Returns the number of round trips used.
    fn sync(server: &Record, replica: &mut Record, actor: &ActorId, now: Timestamp) -> usize {
        let viewer = server.viewer(actor, now);
        let mut trips = 1;
        let differ = server.differing(&viewer, &replica.digests());
        if differ.is_empty() {
            return trips;
        }
        loop {
            trips += 1;
            let mine = replica.frontier();
            let ask: Frontier = differ
                .iter()
                .map(|s| (s.clone(), mine.get(s).cloned().unwrap_or_default()))
                .collect();
            let (entries, more, _) = server.entries_beyond(&viewer, &ask, 7);
            for e in entries {
                replica
                    .apply(e.clone())
                    .expect("served entries apply in order");
            }
            if !more {
                return trips;
            }
        }
    }

    fn george() -> (Fixture, crate::Keypair, crate::Keypair) {
        let mut f = Fixture::new(20, "George");
        let pharmacist = key(20, "Pharmacist");
        let homecare = key(20, "HomeCare");
        f.grant(grant(
            &pharmacist,
            Level::View,
            &[Category::Medications, Category::Allergies],
            false,
            false,
        ));
        f.grant(grant(
            &homecare,
            Level::Write,
            &[Category::VitalSigns],
            false,
            false,
        ));
        let g = f.patient.clone();
        for i in 0..5 {
            f.create(&g, Category::VitalSigns, bp(120 + i, 80)).unwrap();
            f.create(
                &g,
                Category::Medications,
                text_body(&[("medication", "Metformin")]),
            )
            .unwrap();
        }
        f.create(
            &g,
            Category::Problems,
            text_body(&[("problem", "Renal disease")]),
        )
        .unwrap();
        (f, pharmacist, homecare)
    }

    #[test]
    fn a_replica_receives_exactly_what_it_may_see_and_nothing_names_the_rest() {
        let (f, pharmacist, _) = george();
        let now = f.now;
        let viewer = f.record.viewer(&pharmacist.actor(), now);
        let mut replica = Record::new(f.record.id());
        // First contact: the server names only streams the pharmacist may see.
        let differ = f.record.differing(&viewer, &replica.digests());
        assert_eq!(differ, vec![None, Some(Category::Medications)]);
        sync(&f.record, &mut replica, &pharmacist.actor(), now);
        for e in replica.entries() {
            assert!(f.record.can_see(&viewer, &e.id()));
            let s = replica.stream_of(&e.id()).cloned().flatten();
            assert!(s.is_none() || s == Some(Category::Medications));
        }
        let visible = f
            .record
            .entries()
            .filter(|e| f.record.can_see(&viewer, &e.id()))
            .count();
        assert_eq!(replica.len(), visible);
        // Asking about a stream it may not see reveals nothing about it.
        let mut probe = replica.frontier();
        probe.insert(Some(Category::VitalSigns), BTreeMap::new());
        let (entries, _, frontier) = f.record.entries_beyond(&viewer, &probe, 100);
        assert!(entries.is_empty());
        assert!(!frontier.contains_key(&Some(Category::VitalSigns)));
        let d = vec![(Some(Category::Problems), [0u8; 32])];
        assert!(!f
            .record
            .differing(&viewer, &d)
            .contains(&Some(Category::Problems)));
    }

    #[test]
    fn a_pull_sends_the_first_entries_in_causal_order_whatever_the_limit() {
        let (mut f, pharmacist, homecare) = george();
        let g = f.patient.clone();
        for i in 0..6 {
            f.create(&homecare, Category::VitalSigns, bp(110 + i, 70))
                .unwrap();
            f.create(&g, Category::VitalSigns, bp(130 + i, 85)).unwrap();
            f.create(
                &g,
                Category::Medications,
                text_body(&[("medication", "Ramipril")]),
            )
            .unwrap();
        }
        let record = &f.record;
        for actor in [g.actor(), pharmacist.actor(), homecare.actor()] {
            let viewer = record.viewer(&actor, f.now);
            let ask: Frontier = record
                .differing(&viewer, &Record::new(record.id()).digests())
                .into_iter()
                .map(|s| (s, BTreeMap::new()))
                .collect();
            // The order every pull must follow: administrative stream first, then depth,
            // then id, over everything the viewer may see beyond the frontier asked from.
            let mut expected: Vec<(bool, u32, EntryId)> = record
                .entries()
                .map(|e| e.id())
                .filter(|id| {
                    let s = record.stream_of(id).cloned().flatten();
                    ask.contains_key(&s) && record.can_see(&viewer, id)
                })
                .map(|id| {
                    (
                        record.stream_of(&id).is_some_and(Option::is_some),
                        record.depth_of(&id),
                        id,
                    )
                })
                .collect();
            expected.sort_unstable();
            let expected: Vec<EntryId> = expected.into_iter().map(|(_, _, id)| id).collect();
            assert!(expected.len() > 10, "{actor}: too few entries to test");
            for limit in 1..=expected.len() + 1 {
                let (es, more, _) = record.entries_beyond(&viewer, &ask, limit);
                let got: Vec<EntryId> = es.iter().map(|e| e.id()).collect();
                let n = limit.min(expected.len());
                assert_eq!(got, expected[..n], "{actor}, limit {limit}");
                assert_eq!(more, limit < expected.len(), "{actor}, limit {limit}");
            }
        }
    }

    #[test]
    fn up_to_date_is_one_round_trip_and_a_small_catch_up_two() {
        let (mut f, pharmacist, _) = george();
        let mut replica = Record::new(f.record.id());
        sync(&f.record, &mut replica, &pharmacist.actor(), f.now);
        assert_eq!(sync(&f.record, &mut replica, &pharmacist.actor(), f.now), 1);
        let g = f.patient.clone();
        let new = f
            .create(
                &g,
                Category::Medications,
                text_body(&[("medication", "Ramipril")]),
            )
            .unwrap();
        // A change in a stream the pharmacist may not see changes nothing for it.
        f.create(&g, Category::VitalSigns, bp(130, 85)).unwrap();
        let viewer = f.record.viewer(&pharmacist.actor(), f.now);
        let differ = f.record.differing(&viewer, &replica.digests());
        assert_eq!(differ, vec![Some(Category::Medications)]);
        let before = replica.len();
        assert_eq!(sync(&f.record, &mut replica, &pharmacist.actor(), f.now), 2);
        assert_eq!(replica.len(), before + 1);
        assert!(replica.contains(&new));
        // The pull message for the catch-up is small.
        let ask: Frontier = differ
            .iter()
            .map(|s| (s.clone(), replica.frontier()[s].clone()))
            .collect();
        let p = Proof::new(
            &pharmacist,
            f.record.id(),
            b"client-peer",
            b"server-peer",
            [1; 16],
            f.now,
        );
        let msg = encode(&Request::Pull {
            proof: p,
            frontier: ask,
            limit: 100,
        });
        assert!(msg.len() < 1024, "{} bytes", msg.len());
    }

    #[test]
    fn a_revoked_replica_gets_nothing_new() {
        let (mut f, _, homecare) = george();
        let mut replica = Record::new(f.record.id());
        sync(&f.record, &mut replica, &homecare.actor(), f.now);
        let held = replica.len();
        let g = f.patient.clone();
        let hc_grant = f.record.grants_of(&homecare.actor())[0];
        f.write(
            &g,
            Payload::Revoke {
                grant: hc_grant,
                category: None,
                reason: "ended".into(),
            },
        )
        .unwrap();
        f.create(&g, Category::VitalSigns, bp(140, 90)).unwrap();
        sync(&f.record, &mut replica, &homecare.actor(), f.now);
        // It may learn of its own revocation's cut, but of no entry after it.
        for e in replica.entries() {
            if !matches!(e.entry().payload, Payload::Revoke { .. }) {
                assert!(
                    f.record
                        .in_past(&e.id(), &f.record.grant(&hc_grant).unwrap().revoked_by[0])
                        || f.record.stream_of(&e.id()) == Some(&None)
                );
            }
        }
        assert!(replica.len() <= held + 2);
        let viewer = f.record.viewer(&homecare.actor(), f.now);
        assert!(f.record.differing(&viewer, &replica.digests()).is_empty());
    }

    /// What a grantee's replica learns when its grant turned out void: George revokes
    /// Mary while Mary, not knowing, delegates to a night sitter, who writes. The host
    /// holds the revocation, then the sitter's grant and writes (void). The sitter's
    /// replica, syncing from the host, receives exactly the administrative entries in the
    /// revocation's causal past that it lacks (nothing written after the revocation, no
    /// category data), applies the revocation, finds its grant and writes void, and can
    /// write nothing more.
    struct VoidCase {
        host: Record,
        sitter: Record,
        sitter_key: crate::Keypair,
        g2: EntryId,
        writes: Vec<EntryId>,
        revocation: EntryId,
        now: Timestamp,
    }

    /// `before`/`after`: the patient's writes before the revocation and after it (on the
    /// host), as category choices (3 = a grant to someone else); `order`: the seed of the
    /// order in which the sitter's branch reaches the host.
    fn void_case(before: &[u8], after: &[u8], writes: usize, order: u64) -> VoidCase {
        let mut f = Fixture::new(31, "George");
        let george = f.patient.clone();
        let mary = key(31, "Mary");
        let sitter = key(31, "Sitter");
        let g1 = f.grant(grant(&mary, Level::Delete, &[], true, true));
        let patient_write = |f: &mut Fixture, k: u8, i: usize| match k % 4 {
            0 => f.create(&george, Category::VitalSigns, bp(110 + i as i64, 70)),
            1 => f.create(
                &george,
                Category::Problems,
                text_body(&[("problem", "Renal disease")]),
            ),
            2 => f.create(
                &george,
                Category::Medications,
                text_body(&[("medication", "Metformin")]),
            ),
            _ => Ok(f.grant(grant(
                &key(31, &format!("Other{i}")),
                Level::View,
                &[Category::Medications],
                false,
                false,
            ))),
        };
        for (i, k) in before.iter().enumerate() {
            patient_write(&mut f, *k, i).unwrap();
        }
        let base = f.record.clone();
        // The host: the revocation, then more of George's writes.
        let revocation = f
            .write(
                &george,
                Payload::Revoke {
                    grant: g1,
                    category: None,
                    reason: "moved away".into(),
                },
            )
            .unwrap()
            .id();
        for (i, k) in after.iter().enumerate() {
            patient_write(&mut f, *k, 100 + i).unwrap();
        }
        // Mary's replica, not knowing: she delegates to the sitter.
        let mut marys = base;
        let g2 = marys
            .prepare_as(
                &mary,
                Payload::Grant(grant(
                    &sitter,
                    Level::Write,
                    &[Category::VitalSigns],
                    false,
                    false,
                )),
                f.now,
                None,
            )
            .unwrap();
        marys.apply(g2.clone()).unwrap();
        // The sitter's replica, pulled from Mary's while its grant looked valid; it writes.
        let mut replica = Record::new(marys.id());
        sync(&marys, &mut replica, &sitter.actor(), f.now);
        assert!(replica.contains(&g2.id()));
        let mut branch = vec![g2.clone()];
        for i in 0..writes {
            let w = replica
                .prepare_as(
                    &sitter,
                    Payload::Create {
                        category: Category::VitalSigns,
                        body: bp(130 + i as i64, 85),
                    },
                    f.now + 1 + i as u64,
                    None,
                )
                .unwrap();
            replica.apply(w.clone()).unwrap();
            branch.push(w);
        }
        // The branch reaches the host in some order (each entry once its parents are held).
        let mut s = order | 1;
        for i in (1..branch.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            branch.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let mut host = f.record;
        while !branch.is_empty() {
            let before = branch.len();
            branch.retain(|e| host.apply(e.clone()).is_err());
            assert!(
                branch.len() < before,
                "the sitter's branch applies at the host"
            );
        }
        VoidCase {
            writes: replica
                .entries()
                .filter(|e| e.entry().author == sitter.actor())
                .map(|e| e.id())
                .collect(),
            host,
            sitter: replica,
            sitter_key: sitter,
            g2: g2.id(),
            revocation,
            now: f.now + 100,
        }
    }

    fn check_void_case(c: &mut VoidCase) {
        let sitter = c.sitter_key.actor();
        let held: std::collections::HashSet<EntryId> = c.sitter.entries().map(|e| e.id()).collect();
        // At the host the sitter's grant and writes are void.
        assert!(matches!(c.host.status(&c.g2), Some(Status::Void { .. })));
        let viewer = c.host.viewer(&sitter, c.now);
        assert!(viewer.has_access());
        assert!(!viewer.may_audit());
        for cat in [
            Category::VitalSigns,
            Category::Problems,
            Category::Medications,
        ] {
            assert_eq!(viewer.level_on(&cat), None);
        }
        sync(&c.host, &mut c.sitter, &sitter, c.now);
        // The sitter's replica learned why, …
        assert!(c.sitter.contains(&c.revocation));
        assert!(matches!(c.sitter.status(&c.g2), Some(Status::Void { .. })));
        for w in &c.writes {
            assert!(matches!(c.sitter.status(w), Some(Status::Void { .. })));
        }
        // … received only administrative entries in the revocation's causal past, …
        for e in c.sitter.entries() {
            if !held.contains(&e.id()) {
                assert_eq!(c.host.stream_of(&e.id()), Some(&None));
                assert!(c.host.in_past(&e.id(), &c.revocation));
            }
        }
        let lacking = c
            .host
            .entries()
            .filter(|e| {
                c.host.stream_of(&e.id()) == Some(&None)
                    && c.host.in_past(&e.id(), &c.revocation)
                    && !c.sitter.contains(&e.id())
            })
            .count();
        assert_eq!(lacking, 0, "every entry of the revocation's past arrived");
        // … and writes nothing more.
        let next = c.sitter.prepare_as(
            &c.sitter_key,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(150, 95),
            },
            c.now,
            None,
        );
        assert!(next.is_err(), "{next:?}");
    }

    #[test]
    fn a_void_grantee_pulls_only_the_revocation_that_explains_it() {
        let mut c = void_case(&[0, 1, 3, 2], &[0, 1, 3, 0], 2, 7);
        check_void_case(&mut c);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, .. Default::default() })]

        /// The same holds for any history around the revocation and any arrival order.
        #[test]
        fn void_grantees_learn_exactly_their_revocation(
            before in proptest::collection::vec(0u8..4, 0..6),
            after in proptest::collection::vec(0u8..4, 0..6),
            writes in 0usize..4,
            order in proptest::prelude::any::<u64>(),
        ) {
            let mut c = void_case(&before, &after, writes, order);
            check_void_case(&mut c);
        }
    }

    #[test]
    fn proofs_are_bound_to_the_connection_and_used_once() {
        let k = key(1, "Mary");
        let rec = key(1, "George").actor();
        let p = Proof::new(&k, rec, b"client", b"server", [7; 16], 1_000_000);
        let mut seen = NonceCache::new(16);
        assert_eq!(
            p.check(b"client", b"server", 1_000_500, &mut seen),
            Ok(k.actor())
        );
        assert_eq!(
            p.check(b"client", b"server", 1_000_600, &mut seen),
            Err(ProofError::Replayed)
        );
        let mut fresh = NonceCache::new(16);
        assert_eq!(
            p.check(b"thief", b"server", 1_000_500, &mut fresh),
            Err(ProofError::WrongPeers)
        );
        assert_eq!(
            p.check(
                b"client",
                b"server",
                1_000_000 + PROOF_WINDOW_MS + 1,
                &mut fresh
            ),
            Err(ProofError::Stale)
        );
        let mut forged = p.clone();
        forged.nonce = [8; 16];
        assert_eq!(
            forged.check(b"client", b"server", 1_000_500, &mut fresh),
            Err(ProofError::Signature)
        );
    }

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let k = key(1, "Mary");
        let p = Proof::new(&k, k.actor(), b"c", b"s", [0; 16], 5);
        let m = encode(&Request::Digests {
            proof: p,
            digests: vec![(None, [3; 32])],
        });
        assert!(matches!(decode::<Request>(&m), Ok(Request::Digests { .. })));
        assert!(decode::<Request>(&m[..m.len() - 1]).is_err());
        assert!(decode::<Request>(b"\xff\xff\xff").is_err());
    }
}
