//! The records a store keeps loaded in memory, bounded.
//!
//! A node holding many records (a provider node with the shared parts of thousands of
//! patients' records, a community host) cannot keep every record it ever touched in
//! memory. Loaded records are kept up to [`CacheLimits`]: a number of records and a number
//! of entries held in them (the cost that grows with history). When a record is loaded,
//! or a loaded one used while the limits may be exceeded, the least recently used records
//! that nobody is using are dropped; they are loaded again from the log (verified, hash-checked) when next asked
//! for. A record in use (a read or write holds its handle) is never dropped, and a record
//! larger than the limit on its own is still loaded: the limit bounds what is kept, not
//! what may be read.
//!
//! What a loaded record holds that the log does not (content opened on a read, fork
//! evidence found in this process) is rebuilt or re-found as after a restart.
//!
//! The store drops records only while every frame in the log is indexed, so a record is
//! never reloaded without a write that was acknowledged (see `Store::handle`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use cophr_protocol::record::Record;
use cophr_protocol::RecordId;

/// How many loaded records a store keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Most records kept loaded.
    pub records: usize,
    /// Most entries held by the records kept loaded (each loaded entry costs memory: see
    /// `docs/benchmarks.md`).
    pub entries: usize,
}

impl CacheLimits {
    /// The default: 1,024 records, 2,000,000 entries. Loaded records are lean (about
    /// 250 bytes of memory per entry, `docs/benchmarks.md`), so the entries bound keeps
    /// the records loaded to about 500 MB; a record let go reloads from its snapshot.
    pub const DEFAULT: CacheLimits = CacheLimits {
        records: 1024,
        entries: 2_000_000,
    };
}

impl Default for CacheLimits {
    fn default() -> Self {
        CacheLimits::DEFAULT
    }
}

/// What is loaded now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loaded {
    /// Records loaded.
    pub records: usize,
    /// Entries held by them (as last seen: a record being written counts what it held
    /// when last looked at).
    pub entries: usize,
    /// Records dropped from memory since the store opened (each loads again when asked
    /// for).
    pub dropped: u64,
}

/// How often (in uses of loaded records) the entries they hold are counted again.
const RECHECK_EVERY: u64 = 64;

/// A loaded record: its handle, when it was last used, and its size when last seen.
#[derive(Debug)]
struct Slot {
    handle: Arc<RwLock<Record>>,
    used: u64,
    entries: usize,
}

/// The loaded records, least recently used dropped first.
#[derive(Debug)]
pub(super) struct Cache {
    slots: HashMap<RecordId, Slot>,
    tick: u64,
    limits: CacheLimits,
    dropped: u64,
}

impl Cache {
    pub(super) fn new(limits: CacheLimits) -> Cache {
        Cache {
            slots: HashMap::new(),
            tick: 0,
            limits,
            dropped: 0,
        }
    }

    pub(super) fn set_limits(&mut self, limits: CacheLimits) {
        self.limits = limits;
    }

    fn touch(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    /// The handle of a loaded record, marked used now.
    pub(super) fn get(&mut self, id: &RecordId) -> Option<Arc<RwLock<Record>>> {
        let now = self.touch();
        let slot = self.slots.get_mut(id)?;
        slot.used = now;
        Some(slot.handle.clone())
    }

    /// Keeps `handle` as the loaded record `id` unless one is loaded already (then that
    /// one is returned and `handle` is dropped by the caller).
    pub(super) fn insert(
        &mut self,
        id: RecordId,
        handle: Arc<RwLock<Record>>,
    ) -> Arc<RwLock<Record>> {
        let now = self.touch();
        let entries = handle.try_read().map_or(0, |r| r.resident());
        let slot = self.slots.entry(id).or_insert(Slot {
            handle,
            used: now,
            entries,
        });
        slot.used = now;
        slot.handle.clone()
    }

    pub(super) fn remove(&mut self, id: &RecordId) -> Option<Arc<RwLock<Record>>> {
        self.slots.remove(id).map(|s| s.handle)
    }

    /// Drops every loaded record; returns their handles (to drop outside the lock).
    pub(super) fn clear(&mut self) -> Vec<Arc<RwLock<Record>>> {
        self.slots.drain().map(|(_, s)| s.handle).collect()
    }

    /// Every loaded record's handle.
    pub(super) fn handles(&self) -> Vec<Arc<RwLock<Record>>> {
        self.slots.values().map(|s| s.handle.clone()).collect()
    }

    /// What is loaded (sizes refreshed where a record is not being written).
    pub(super) fn loaded(&mut self) -> Loaded {
        self.refresh();
        Loaded {
            records: self.slots.len(),
            entries: self.slots.values().map(|s| s.entries).sum(),
            dropped: self.dropped,
        }
    }

    /// Whether the cache may be over its limits and should be trimmed: more records than
    /// allowed, or (every [`RECHECK_EVERY`] uses, since loaded records grow as they are
    /// written) possibly more entries.
    pub(super) fn should_trim(&self) -> bool {
        self.slots.len() > self.limits.records || self.tick.is_multiple_of(RECHECK_EVERY)
    }

    /// Whether `id` is loaded.
    pub(super) fn contains(&self, id: &RecordId) -> bool {
        self.slots.contains_key(id)
    }

    fn refresh(&mut self) {
        for s in self.slots.values_mut() {
            if let Ok(r) = s.handle.try_read() {
                s.entries = r.resident();
            }
        }
    }

    /// Drops the least recently used records nobody holds until the limits hold (or none
    /// is left to drop). Returns the dropped handles: the caller lets them go after
    /// releasing its locks (dropping a large record takes time).
    pub(super) fn evict(&mut self) -> Vec<Arc<RwLock<Record>>> {
        self.refresh();
        let mut records = self.slots.len();
        let mut entries: usize = self.slots.values().map(|s| s.entries).sum();
        if records <= self.limits.records && entries <= self.limits.entries {
            return Vec::new();
        }
        let mut idle: Vec<(u64, RecordId)> = self
            .slots
            .iter()
            .filter(|(_, s)| Arc::strong_count(&s.handle) == 1)
            .map(|(id, s)| (s.used, *id))
            .collect();
        idle.sort_unstable();
        let mut dropped = Vec::new();
        for (_, id) in idle {
            if records <= self.limits.records && entries <= self.limits.entries {
                break;
            }
            if let Some(s) = self.slots.remove(&id) {
                records -= 1;
                entries = entries.saturating_sub(s.entries);
                dropped.push(s.handle);
            }
        }
        self.dropped += dropped.len() as u64;
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cophr_protocol::testkit::Fixture;

    fn record(seed: u64, entries: usize) -> (RecordId, Arc<RwLock<Record>>) {
        let mut f = Fixture::new(seed, "P");
        let p = f.patient.clone();
        for i in 0..entries.saturating_sub(1) {
            f.create(
                &p,
                cophr_protocol::Category::VitalSigns,
                cophr_protocol::testkit::bp(120 + i as i64, 80),
            )
            .unwrap();
        }
        (f.record.id(), Arc::new(RwLock::new(f.record)))
    }

    #[test]
    fn the_least_recently_used_idle_records_go_first_and_one_in_use_stays() {
        let mut c = Cache::new(CacheLimits {
            records: 2,
            entries: 1000,
        });
        let (a, ha) = record(1, 1);
        let (b, hb) = record(2, 1);
        let (d, hd) = record(3, 1);
        c.insert(a, ha);
        c.insert(b, hb);
        // `a` is used again: `b` is now the least recently used.
        let held_a = c.get(&a).unwrap();
        drop(held_a);
        c.insert(d, hd);
        let dropped = c.evict();
        assert_eq!(dropped.len(), 1);
        assert!(c.contains(&a) && c.contains(&d) && !c.contains(&b));
        // A record in use is never dropped, even when over the limit.
        let in_use = c.get(&a).unwrap();
        let also = c.get(&d).unwrap();
        let (e, he) = record(4, 1);
        c.insert(e, he);
        let _ = c.evict();
        assert!(c.contains(&a) && c.contains(&d), "both in use");
        drop((in_use, also));
        let _ = c.evict();
        assert_eq!(c.loaded().records, 2);
    }

    #[test]
    fn entries_held_are_bounded_but_one_large_record_still_loads() {
        let mut c = Cache::new(CacheLimits {
            records: 100,
            entries: 10,
        });
        for seed in 0..4 {
            let (id, h) = record(seed, 4);
            c.insert(id, h);
            let _ = c.evict();
            assert!(c.loaded().entries <= 10, "{:?}", c.loaded());
        }
        assert_eq!(c.loaded().records, 2);
        let (big, h) = record(9, 25);
        let held = c.insert(big, h);
        let _ = c.evict();
        assert!(c.contains(&big), "the record asked for is loaded");
        let l = c.loaded();
        assert_eq!((l.records, l.entries), (1, 25));
        assert_eq!(
            l.dropped, 4,
            "2 to keep 10 entries, then both for the large one"
        );
        drop(held);
    }
}
