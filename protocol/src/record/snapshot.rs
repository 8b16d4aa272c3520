//! A lean record's state written down, so that a node opens a large record without
//! reading and re-checking every entry (issue 13: a 1,000,000-entry record opens in a
//! second, and the first write after a restart does not load the whole record).
//!
//! A snapshot holds what [`Record::apply`] built for every entry (the nodes, with their
//! vector clocks written once per distinct clock) and every index, but no record data
//! (a lean record reads it from its source) and no key: the record it restores is
//! unlocked again by its readers ([`Record::unlock`]), which unwraps the epoch keys from
//! the key wraps it holds. Administrative entries, which a lean record keeps in memory,
//! are written as their signed bytes and checked against their ids on restore.
//!
//! A snapshot is derived state on the node's own disk, like its index: the node checks
//! it (a BLAKE3 hash over the encoding, the format version, the record id, every entry
//! id), restores from it, then applies the entries its log holds beyond it; on any doubt
//! it replays the whole record from the log instead. A property test holds a restored
//! record equal to the record it was taken of.
//!
//! Format: `COPHR-SNAP` (10 bytes), the BLAKE3 hash of the rest (32 bytes), then the
//! [`Snap`] structure in CBOR.

use serde::{Deserialize, Serialize};

use super::*;
use crate::entry::SignedEntry;
use crate::seal::EpochId;

/// The file's first bytes.
const MAGIC: &[u8; 10] = b"COPHR-SNAP";

/// This format's version.
const VERSION: u32 = 3;

/// Why a snapshot could not be restored (the node then replays the record from its log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot, or damaged (its hash does not match).
    #[error("not a snapshot, or damaged")]
    Damaged,
    /// Written by another version of the format.
    #[error("snapshot format version {0} is not this node's ({VERSION})")]
    Version(u32),
    /// A snapshot of another record.
    #[error("a snapshot of another record")]
    WrongRecord,
    /// Not a lean record's snapshot source: only lean records are snapshotted.
    #[error("only a lean record can be snapshotted")]
    NotLean,
    /// Its content does not hold together.
    #[error("snapshot inconsistent: {0}")]
    Inconsistent(String),
}

/// One node, as written: a CBOR array, in this order (no field names: a million of
/// them would double the snapshot): id, seq, time, author, auth, epoch, kind, clock
/// (position in [`Snap::clocks`]), chain, depth, root, principal, rotation, stream,
/// category, flags, and the signed entry for the entries a lean record keeps in memory
/// (empty otherwise).
#[derive(Serialize, Deserialize)]
struct SnapNode(
    EntryId,
    u64,
    Timestamp,
    u32,
    Ix,
    u32,
    u8,
    u32,
    u32,
    u32,
    Ix,
    u32,
    Ix,
    u16,
    u16,
    u8,
    #[serde(with = "serde_bytes")] Vec<u8>,
);

/// A grant: id, issuer, signer, parent, the grant, time, revocations.
type SnapGrant = (
    EntryId,
    ActorId,
    ActorId,
    Option<EntryId>,
    Grant,
    Timestamp,
    Vec<EntryId>,
);

/// Each chain's entries, as positions in [`Snap::nodes`].
type Chains = Vec<((ActorId, Stream), Vec<Ix>)>;
type Lists<K> = Vec<(K, Vec<EntryId>)>;

/// Everything a snapshot holds.
#[derive(Serialize, Deserialize)]
struct Snap {
    version: u32,
    id: RecordId,
    clocks: Vec<Vec<u64>>,
    nodes: Vec<SnapNode>,
    actors: Vec<ActorId>,
    streams: Vec<Stream>,
    epoch_ids: Vec<EpochId>,
    voids: Vec<(EntryId, EntryId)>,
    proxies: Lists<EntryId>,
    vias: Lists<EntryId>,
    author_index: Vec<((ActorId, Stream), u64)>,
    chains: Chains,
    heads: Vec<(Stream, Vec<EntryId>)>,
    grants: Vec<SnapGrant>,
    by_grant: Vec<(EntryId, Vec<Ix>)>,
    by_proxy: Vec<(EntryId, Vec<Ix>)>,
    sub_grants: Lists<EntryId>,
    versions: Lists<EntryId>,
    annotations: Lists<EntryId>,
    device_adds: Lists<ActorId>,
    retirements: Lists<(ActorId, ActorId)>,
    rotations_from: Lists<ActorId>,
    documents: Lists<crate::blob::BlobRef>,
    epochs: Vec<(EpochId, Category, Vec<EntryId>)>,
    openings: Vec<(Category, Vec<EntryId>)>,
    endings: Vec<EntryId>,
    sealed: Vec<(EpochId, Vec<EntryId>)>,
    /// Set in an admission part's snapshot ([`Record::admission`]): the whole record's
    /// position of each node, how many entries the whole record has, and how many entries
    /// at the start of each chain the part skips. Absent in a whole record's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    part: Option<SnapPart>,
}

/// An admission part's positions, length and skipped chain starts.
type SnapPart = (Vec<Ix>, u64, Vec<((ActorId, Stream), u64)>);

fn lists<K: Clone>(m: &HashMap<K, Vec<EntryId>>) -> Lists<K> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn kind_code(k: Kind) -> u8 {
    match k {
        Kind::Create => 0,
        Kind::Amend => 1,
        Kind::Delete => 2,
        Kind::Annotate => 3,
        Kind::Other => 4,
    }
}

fn kind_of(c: u8) -> Result<Kind, SnapshotError> {
    Ok(match c {
        0 => Kind::Create,
        1 => Kind::Amend,
        2 => Kind::Delete,
        3 => Kind::Annotate,
        4 => Kind::Other,
        _ => return Err(SnapshotError::Inconsistent(format!("entry kind {c}"))),
    })
}

const VOID: u8 = 1;
const PROXIED: u8 = 2;
const DEVICE: u8 = 4;

impl Record {
    /// The record's state, written down (see the module docs). Only a lean record is
    /// snapshotted: a full one holds its record data only in memory.
    pub fn snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        if !self.is_lean() {
            return Err(SnapshotError::NotLean);
        }
        // Each distinct clock once.
        let mut clocks: Vec<Vec<u64>> = Vec::new();
        let mut clock_at: std::collections::HashMap<*const u64, u32> =
            std::collections::HashMap::new();
        let mut nodes = Vec::with_capacity(self.nodes.values().len());
        for n in self.nodes.values() {
            let clock = *clock_at.entry(n.base.as_ptr()).or_insert_with(|| {
                clocks.push(n.base.to_vec());
                (clocks.len() - 1) as u32
            });
            nodes.push(SnapNode(
                n.h.id,
                n.h.seq,
                n.h.time,
                n.h.author,
                n.h.auth,
                n.h.epoch,
                kind_code(n.h.kind),
                clock,
                n.chain,
                n.depth,
                n.root,
                n.principal,
                n.rotation,
                n.stream,
                n.category,
                (u8::from(n.void) * VOID)
                    | (u8::from(n.proxied) * PROXIED)
                    | (u8::from(n.device) * DEVICE),
                n.e.as_ref()
                    .map(|v| v.signed().bytes().to_vec())
                    .unwrap_or_default(),
            ));
        }
        let (epochs, openings, endings, sealed) = self.sealing.indexes();
        let snap = Snap {
            version: VERSION,
            id: self.id,
            clocks,
            nodes,
            actors: self.actors.list().to_vec(),
            streams: self.streams.list().to_vec(),
            epoch_ids: self.epoch_ids.list().to_vec(),
            voids: self
                .voids
                .iter()
                .filter_map(|(id, s)| match s {
                    Status::Void { revocation } => Some((*id, *revocation)),
                    Status::Valid => None,
                })
                .collect(),
            proxies: lists(&self.proxies),
            vias: lists(&self.vias),
            author_index: self
                .author_index
                .iter()
                .map(|(k, v)| (k.clone(), *v as u64))
                .collect(),
            chains: self
                .chains
                .iter()
                .map(|(k, v)| {
                    let at = v.iter().filter_map(|id| self.nodes.ix(id)).collect();
                    (k.clone(), at)
                })
                .collect(),
            heads: self
                .heads
                .iter()
                .map(|(s, h)| (s.clone(), h.iter().copied().collect()))
                .collect(),
            grants: self
                .grants
                .values()
                .map(|g| {
                    (
                        g.id,
                        g.issuer,
                        g.signer,
                        g.parent,
                        g.grant.clone(),
                        g.time,
                        g.revoked_by.clone(),
                    )
                })
                .collect(),
            by_grant: self.by_grant.iter().map(|(k, v)| (*k, v.clone())).collect(),
            by_proxy: self.by_proxy.iter().map(|(k, v)| (*k, v.clone())).collect(),
            sub_grants: lists(&self.sub_grants),
            versions: lists(&self.versions),
            annotations: lists(&self.annotations),
            device_adds: lists(&self.device_adds),
            retirements: lists(&self.retirements),
            rotations_from: lists(&self.rotations_from),
            documents: self
                .documents
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect(),
            epochs,
            openings,
            endings,
            sealed,
            part: self.nodes.positions().map(|at| {
                (
                    at.to_vec(),
                    self.nodes.len() as u64,
                    self.skipped.iter().map(|(k, n)| (k.clone(), *n)).collect(),
                )
            }),
        };
        let body = crate::entry::to_cbor(&snap);
        let mut out = Vec::with_capacity(MAGIC.len() + 32 + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(blake3::hash(&body).as_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Restores a lean record from a snapshot of it, reading its record data from
    /// `source`. The record has no reader: unlock it ([`Record::unlock`]) as a new one.
    pub fn restore(
        id: RecordId,
        bytes: &[u8],
        source: Arc<dyn EntrySource>,
    ) -> Result<Record, SnapshotError> {
        let body = bytes
            .strip_prefix(&MAGIC[..])
            .filter(|b| b.len() >= 32)
            .ok_or(SnapshotError::Damaged)?;
        let (hash, body) = body.split_at(32);
        if blake3::hash(body).as_bytes() != hash {
            return Err(SnapshotError::Damaged);
        }
        let s: Snap = cbor4ii::serde::from_slice(body).map_err(|_| SnapshotError::Damaged)?;
        if s.version != VERSION {
            return Err(SnapshotError::Version(s.version));
        }
        if s.id != id {
            return Err(SnapshotError::WrongRecord);
        }
        let bad = |what: String| SnapshotError::Inconsistent(what);
        let clocks: Vec<Arc<[u64]>> = s.clocks.into_iter().map(Arc::from).collect();
        let mut r = Record::new(id);
        for (i, a) in s.actors.iter().enumerate() {
            if r.actors.intern(a) as usize != i {
                return Err(bad("actors repeat".into()));
            }
        }
        r.streams = Interner::default();
        for (i, st) in s.streams.iter().enumerate() {
            if r.streams.intern(st) as usize != i {
                return Err(bad("streams repeat".into()));
            }
        }
        for (i, e) in s.epoch_ids.iter().enumerate() {
            if r.epoch_ids.intern(e) as usize != i {
                return Err(bad("epochs repeat".into()));
            }
        }
        let len = s.nodes.len();
        // An admission part's nodes keep their positions in the whole record.
        let (positions, whole, skipped) = match s.part {
            None => (None, len, Vec::new()),
            Some((at, whole, skipped)) => {
                let whole = usize::try_from(whole).map_err(|_| bad("length".into()))?;
                let ascending = at.windows(2).all(|w| w[0] < w[1]);
                if at.len() != len || !ascending || at.last().is_some_and(|i| *i as usize >= whole)
                {
                    return Err(bad("an admission part's positions".into()));
                }
                (Some(at), whole, skipped)
            }
        };
        let placed = |i: Ix| match &positions {
            None => (i as usize) < len,
            Some(at) => at.binary_search(&i).is_ok(),
        };
        let ix_ok = |i: Ix| i == NONE || (i as usize) < whole;
        let mut part_nodes = Vec::new();
        let mut seen = HashSet::new();
        for (i, n) in s.nodes.into_iter().enumerate() {
            let SnapNode(
                id,
                seq,
                time,
                author,
                auth,
                epoch,
                kind,
                clock,
                chain,
                depth,
                root,
                principal,
                rotation,
                stream,
                category,
                flags,
                held,
            ) = n;
            let e = if held.is_empty() {
                None
            } else {
                let signed = SignedEntry::decode_known(held, &id)
                    .map_err(|err| bad(format!("entry {id}: {err}")))?;
                Some(Verified::trusted(signed))
            };
            let base = clocks
                .get(clock as usize)
                .cloned()
                .ok_or_else(|| bad(format!("clock {clock}")))?;
            let refs_ok = (author as usize) < s.actors.len()
                && (principal as usize) < s.actors.len()
                && (stream as usize) < s.streams.len()
                && (category == NO_CATEGORY || (category as usize) < s.streams.len())
                && (epoch == NONE || (epoch as usize) < s.epoch_ids.len())
                && [auth, root, rotation].into_iter().all(ix_ok);
            if !refs_ok {
                return Err(bad(format!("entry {id} refers outside the snapshot")));
            }
            let node = Node {
                h: Header {
                    id,
                    seq,
                    time,
                    author,
                    auth,
                    epoch,
                    kind: kind_of(kind)?,
                },
                e,
                base,
                chain,
                depth,
                root,
                principal,
                rotation,
                stream,
                category,
                void: flags & VOID != 0,
                proxied: flags & PROXIED != 0,
                device: flags & DEVICE != 0,
            };
            let id = node.h.id;
            // (A whole record's table of ids finds a repeat as it takes the entry in; a
            // part's, small, a set.)
            match &positions {
                Some(at) => {
                    if !seen.insert(id) {
                        return Err(bad(format!("entry {id} twice")));
                    }
                    part_nodes.push((at[i], node));
                }
                None => match r.nodes.push_new(node) {
                    None => return Err(bad(format!("entry {id} twice"))),
                    Some(at) if at as usize != i => return Err(bad("positions".into())),
                    Some(_) => {}
                },
            }
        }
        drop(seen);
        if positions.is_some() {
            let placeholder = match part_nodes.first() {
                Some((_, n)) => n.clone(),
                None => return Err(bad("an empty admission part".into())),
            };
            r.nodes = Nodes::part(part_nodes, whole, placeholder);
        }
        let held = |id: &EntryId| r.nodes.contains_key(id);
        let all_held = |ids: &[EntryId]| ids.iter().all(held);
        let lists_ok = [
            &s.proxies,
            &s.vias,
            &s.sub_grants,
            &s.versions,
            &s.annotations,
        ]
        .into_iter()
        .flatten()
        .all(|(k, v)| held(k) && all_held(v))
            && s.chains.iter().all(|(_, v)| v.iter().all(|i| placed(*i)))
            && s.heads.iter().all(|(_, v)| all_held(v))
            && s.voids.iter().all(|(k, v)| held(k) && held(v))
            && s.grants.iter().all(|g| held(&g.0) && all_held(&g.6))
            && s.device_adds.iter().all(|(_, v)| all_held(v))
            && s.retirements.iter().all(|(_, v)| all_held(v))
            && s.rotations_from.iter().all(|(_, v)| all_held(v))
            && s.documents.iter().all(|(_, v)| all_held(v))
            && s.epochs.iter().all(|(_, _, v)| all_held(v))
            && s.openings.iter().all(|(_, v)| all_held(v))
            && all_held(&s.endings)
            && s.sealed.iter().all(|(_, v)| all_held(v))
            && [&s.by_grant, &s.by_proxy]
                .into_iter()
                .flatten()
                .all(|(k, v)| held(k) && v.iter().all(|i| (*i as usize) < whole));
        if !lists_ok {
            return Err(bad("an index names an entry not in the snapshot".into()));
        }
        // Chains' clock components: each position once, and every node's among them.
        let chains = s.author_index.len() as u64;
        let mut positions: Vec<u64> = s.author_index.iter().map(|(_, v)| *v).collect();
        positions.sort_unstable();
        positions.dedup();
        if positions.len() as u64 != chains
            || positions.last().is_some_and(|p| *p >= chains)
            || r.nodes.values().any(|n| u64::from(n.chain) >= chains)
        {
            return Err(bad("chain positions".into()));
        }
        r.voids = s
            .voids
            .into_iter()
            .map(|(id, revocation)| (id, Status::Void { revocation }))
            .collect();
        r.proxies = s.proxies.into_iter().collect();
        r.vias = s.vias.into_iter().collect();
        r.author_index = s
            .author_index
            .into_iter()
            .map(|(k, v)| (k, v as usize))
            .collect();
        r.chains = s
            .chains
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|i| r.nodes.at(i).h.id).collect()))
            .collect();
        r.skipped = skipped.into_iter().collect();
        r.heads = s
            .heads
            .into_iter()
            .map(|(st, h)| (st, h.into_iter().collect()))
            .collect();
        r.grants = s
            .grants
            .into_iter()
            .map(|(id, issuer, signer, parent, grant, time, revoked_by)| {
                (
                    id,
                    GrantInfo {
                        id,
                        issuer,
                        signer,
                        parent,
                        grant,
                        time,
                        revoked_by,
                    },
                )
            })
            .collect();
        r.by_grant = s.by_grant.into_iter().collect();
        r.by_proxy = s.by_proxy.into_iter().collect();
        r.sub_grants = s.sub_grants.into_iter().collect();
        r.versions = s.versions.into_iter().collect();
        r.annotations = s.annotations.into_iter().collect();
        r.device_adds = s.device_adds.into_iter().collect();
        r.retirements = s.retirements.into_iter().collect();
        r.rotations_from = s.rotations_from.into_iter().collect();
        r.documents = s.documents.into_iter().collect();
        r.sealing = sealing::Sealing::from_indexes(s.epochs, s.openings, s.endings, s.sealed);
        r.source = Some(source);
        r.reindex_definitions();
        r.reindex_membership();
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{bp, Fixture, MemSource};

    /// A snapshot re-framed with a correct hash after `change`.
    fn altered(bytes: &[u8], change: impl FnOnce(&mut Snap)) -> Vec<u8> {
        let mut s: Snap = cbor4ii::serde::from_slice(&bytes[MAGIC.len() + 32..]).unwrap();
        change(&mut s);
        let body = crate::entry::to_cbor(&s);
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(blake3::hash(&body).as_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// George's lean record of `n` readings, with the source it reads them from.
    fn george_lean(n: i64) -> (crate::keys::Keypair, Arc<MemSource>, Record) {
        let mut f = Fixture::new(3, "George");
        let george = f.patient.clone();
        for s in 0..n {
            f.create(&george, Category::VitalSigns, bp(120 + s, 80))
                .unwrap();
        }
        let source = Arc::new(MemSource::of(f.record.entries()));
        let mut lean = f.record.clone();
        lean.set_source(source.clone());
        (george, source, lean)
    }

    /// An admission part's snapshot claiming a whole record of billions of entries (a
    /// damaged or hostile file on the node's disk) restores to a part that answers every
    /// question without allocating or walking by that length: its past states, its own
    /// snapshot, a fold, a new entry.
    #[test]
    fn a_part_claiming_a_huge_record_answers_without_walking_it() {
        let (george, source, lean) = george_lean(5);
        let bytes = lean.admission().snapshot().unwrap();
        let huge = altered(&bytes, |s| {
            if let Some(part) = &mut s.part {
                part.1 = u64::from(u32::MAX);
            }
        });
        let mut r = Record::restore(lean.id(), &huge, source).unwrap();
        assert!(r.is_admission());
        assert_eq!(r.len(), u32::MAX as usize);
        let v = r.viewer(&george.actor(), 1 << 40);
        let _ = crate::fold::current(&r, &v);
        let _ = crate::fold::current(&r.at_time(1 << 20), &v);
        assert!(r.snapshot().unwrap().len() < 100_000);
        r.unlock(&george);
        let _ = r.prepare_all(
            &george,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(120, 80),
            },
            1 << 41,
            None,
        );
    }

    /// An entry twice in a snapshot is refused as such, whole or part.
    #[test]
    fn an_entry_twice_is_refused() {
        let (_, source, lean) = george_lean(3);
        for bytes in [
            lean.snapshot().unwrap(),
            lean.admission().snapshot().unwrap(),
        ] {
            let twice = altered(&bytes, |s| {
                let n = s.nodes.len();
                s.nodes[n - 1].0 = s.nodes[n - 2].0;
            });
            match Record::restore(lean.id(), &twice, source.clone()) {
                Err(SnapshotError::Inconsistent(why)) => assert!(why.contains("twice"), "{why}"),
                other => panic!("{:?}", other.map(|r| r.len())),
            }
        }
    }

    /// Every index of a snapshot that names an entry, or a position, outside it makes the
    /// snapshot refused (it would otherwise panic a later lookup), even under a correct
    /// hash; the unaltered snapshot restores.
    #[test]
    fn a_snapshot_naming_what_it_does_not_hold_is_refused() {
        let (_, source, lean) = george_lean(1);
        let bytes = lean.snapshot().unwrap();
        let id = lean.id();
        assert!(Record::restore(id, &altered(&bytes, |_| {}), source.clone()).is_ok());
        let stranger = EntryId([7; 32]);
        let actor = crate::ids::ActorId([9; 32]);
        type Change = Box<dyn FnOnce(&mut Snap)>;
        let changes: Vec<Change> = vec![
            Box::new(move |s| s.retirements.push(((actor, actor), vec![stranger]))),
            Box::new(move |s| s.device_adds.push((actor, vec![stranger]))),
            Box::new(move |s| s.rotations_from.push((actor, vec![stranger]))),
            Box::new(move |s| {
                s.documents.push((
                    crate::blob::BlobRef {
                        hash: crate::blob::BlobHash([1; 32]),
                        size: 1,
                    },
                    vec![stranger],
                ))
            }),
            Box::new(move |s| s.endings.push(stranger)),
            Box::new(move |s| s.versions.push((stranger, vec![]))),
            Box::new(move |s| s.heads.push((None, vec![stranger]))),
            Box::new(move |s| s.chains.push(((actor, None), vec![1_000]))),
            Box::new(move |s| s.by_grant.push((s.nodes[0].0, vec![1_000]))),
            Box::new(move |s| s.nodes[1].4 = 1_000),
            Box::new(move |s| s.nodes[1].7 = 1_000),
            Box::new(move |s| s.author_index.push(((actor, None), 0))),
            // One entry twice.
            Box::new(move |s| s.nodes[1].0 = s.nodes[0].0),
            // An admission part's positions: one per node, ascending, inside the record.
            Box::new(move |s| s.part = Some((vec![0], 1_000, vec![]))),
            Box::new(move |s| {
                s.part = Some(((0..s.nodes.len() as Ix).rev().collect(), 1_000, vec![]))
            }),
            Box::new(move |s| s.part = Some(((0..s.nodes.len() as Ix).collect(), 1, vec![]))),
            // A chain naming a position the part does not hold.
            Box::new(move |s| {
                s.part = Some((
                    (0..s.nodes.len() as Ix).map(|i| i * 2).collect(),
                    1_000,
                    vec![],
                ));
                s.chains.push(((actor, None), vec![1]));
            }),
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let got = Record::restore(id, &altered(&bytes, change), source.clone());
            assert!(
                matches!(got, Err(SnapshotError::Inconsistent(_))),
                "change {i}: {:?}",
                got.err()
            );
        }
    }
}
