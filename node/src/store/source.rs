//! Where the store's lean records read their record data: the log, at the locations the
//! index holds.
//!
//! A record loaded by the store is lean ([`Record::set_source`]): it keeps in memory what
//! its rules and sync need of every entry and lets the bodies of record data go. When a
//! fold, a read or a sync answer needs one, the record asks its [`LogSource`], which reads
//! the frame, checks its CRC (the log) and the entry's hash against its id (here), and
//! hands it back. Locations are learnt from the index's `o` keys for the record: all of
//! them the first time, then only the keys after the last location known (an entry is
//! located once written, and later entries are later in the log). A compaction rewrites
//! every offset: the store's log generation changes, and the next read learns them anew.
//!
//! A read that fails (the frame damaged, the index wrong) is never papered over: the
//! source logs it and counts it in the store's read failures, and the store turns the
//! operation that asked into an error ([`super::Store::with_record`]).
//!
//! [`Record::set_source`]: cophr_protocol::record::Record::set_source

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{RwLock, Weak};

use cophr_protocol::record::EntrySource;
use cophr_protocol::{EntryId, RecordId, Verified};

use super::{key, locations, Inner, Store, StoreError};

/// What one record's source knows of where its entries are.
#[derive(Debug, Default)]
struct Located {
    /// The log generation the offsets belong to.
    generation: u64,
    /// Entry locations (log offsets).
    at: HashMap<EntryId, u64>,
    /// The offset of the last location learnt (later entries are after it).
    last: Option<u64>,
}

/// Reads one record's entries from the store's log (see the module docs).
#[derive(Debug)]
pub(super) struct LogSource {
    /// The store (weak: the store holds the records that hold their sources).
    store: Weak<Inner>,
    record: RecordId,
    located: RwLock<Located>,
}

impl LogSource {
    pub(super) fn new(store: &Store, record: RecordId) -> LogSource {
        LogSource {
            store: std::sync::Arc::downgrade(&store.inner),
            record,
            located: RwLock::new(Located::default()),
        }
    }

    /// Learns the locations indexed after the last one known (all of them after a
    /// compaction, or the first time).
    fn learn(&self, store: &Store) -> Result<(), StoreError> {
        // Under a log guard: a compaction (which rebuilds the index under the log's
        // exclusive lock) never runs while the index is read.
        let _log = store.log();
        let generation = store.inner.generation.load(Ordering::Acquire);
        let mut l = self.located.write().unwrap_or_else(|p| p.into_inner());
        if l.generation != generation {
            *l = Located {
                generation,
                ..Located::default()
            };
        }
        let prefix = key(b'o', &[self.record.as_bytes()]);
        let start = match l.last {
            Some(last) => key(b'o', &[self.record.as_bytes(), &(last + 1).to_be_bytes()]),
            None => prefix.clone(),
        };
        for kv in store.db().range(start..) {
            let (k, v) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            for (offset, id) in locations(&k, &v)? {
                l.at.insert(id, offset);
                l.last = Some(l.last.map_or(offset, |x| x.max(offset)));
            }
        }
        Ok(())
    }

    fn offset(&self, store: &Store, id: &EntryId) -> Result<Option<u64>, StoreError> {
        let generation = store.inner.generation.load(Ordering::Acquire);
        {
            let l = self.located.read().unwrap_or_else(|p| p.into_inner());
            if l.generation == generation {
                if let Some(o) = l.at.get(id) {
                    return Ok(Some(*o));
                }
            }
        }
        self.learn(store)?;
        let l = self.located.read().unwrap_or_else(|p| p.into_inner());
        Ok(l.at.get(id).copied())
    }

    /// Reads `id` at its indexed location with `read` (once more if a compaction moved
    /// everything while the read was under way).
    fn read<T>(
        &self,
        store: &Store,
        id: &EntryId,
        read: impl Fn(&Store, u64) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let generation = store.inner.generation.load(Ordering::Acquire);
        let once = || -> Result<T, StoreError> {
            let offset = self
                .offset(store, id)?
                .ok_or_else(|| StoreError::Corrupt(format!("entry {id} is not in the index")))?;
            read(store, offset)
        };
        match once() {
            // A compaction moved everything while this read was under way: once more.
            Err(_) if store.inner.generation.load(Ordering::Acquire) != generation => once(),
            other => other,
        }
    }

    /// Runs `read` on the store, reporting a failure (logged, counted in the store's read
    /// failures) as `None`.
    fn reported<T>(
        &self,
        id: &EntryId,
        read: impl Fn(&Store, u64) -> Result<T, StoreError>,
    ) -> Option<T> {
        let store = Store {
            inner: self.store.upgrade()?,
        };
        match self.read(&store, id, read) {
            Ok(v) => Some(v),
            Err(e) => {
                store.read_failed(&self.record);
                if store.removed_since(&self.record).unwrap_or(false) {
                    // Removed (released) while it was read: its entries left with it.
                    tracing::debug!(record = %self.record, entry = %id,
                        "an entry of a record removed meanwhile was not read");
                } else {
                    tracing::error!(record = %self.record, entry = %id, error = %e,
                        "an entry of a loaded record could not be read from the log");
                }
                None
            }
        }
    }
}

impl EntrySource for LogSource {
    fn load(&self, id: &EntryId) -> Option<Verified> {
        // Hash-checked against its id (read_entry): bytes this node verified before it
        // stored them.
        self.reported(id, |store, offset| {
            Ok(Verified::trusted(store.read_entry(offset, id)?))
        })
    }

    fn load_bytes(&self, id: &EntryId) -> Option<Vec<u8>> {
        // The frame's CRC (the log) and the bytes' hash against the id (read_entry_bytes),
        // never decoded: a server sends them as they are.
        self.reported(id, |store, offset| store.read_entry_bytes(offset, id))
    }
}
