//! Snapshots of large records, so that a node opens one without reading and re-checking
//! every entry (a 1,000,000-entry record in about a second instead of twenty), and the
//! first write or read after a restart does not stall on loading the whole record.
//!
//! A snapshot ([`Record::snapshot`]) is derived state, like the index: the log stays the
//! one source of truth. It is written, atomically (a temporary file, fsync'd, renamed into
//! place, the directory fsync'd), to `snapshots/<record>` in the store's directory:
//! - after a load that replayed at least [`SNAPSHOT_MIN_NEW`] entries from the log;
//! - when the cache lets a record go that grew by that many since its last snapshot;
//! - when the node shuts down ([`Store::snapshot_all`]).
//!
//! Loading a record tries its snapshot first: the snapshot is checked (hash, version,
//! record, every reference; [`Record::restore`]), the node's reader keys unlock it, and
//! every entry the log indexes for the record that the snapshot lacks is read and applied
//! (checked again, as in a replay). If the snapshot holds an entry the log's index does not
//! (a record removed and received again, a restored backup of the log), or anything else
//! is wrong, it is set aside with a warning and the record is replayed from the log. A
//! removed record's snapshot is deleted with it.

use std::path::PathBuf;
use std::sync::Arc;

use cophr_protocol::record::Record;
use cophr_protocol::{RecordId, Verified};

use super::{key, locations, source, Store, StoreError};

/// The folder of the records' snapshots.
const SNAPSHOTS: &str = "snapshots";

/// The folder of the records' FHIR search indexes, as the HTTP API saves them
/// (`http::fhir::index`): derived state, rebuilt from the record when missing or stale.
pub const FHIR_INDEXES: &str = "fhir-indexes";

/// A record's snapshot is (re)written once this many of its entries are not in it.
pub const SNAPSHOT_MIN_NEW: usize = 2_000;

/// The largest snapshot file read (larger ones are ignored and the record replayed).
pub const MAX_SNAPSHOT_BYTES: u64 = 2 << 30;

impl Store {
    /// Sets how many entries a record's snapshot must lack before it is written again
    /// (default [`SNAPSHOT_MIN_NEW`]; smaller in tests).
    pub fn set_snapshot_min_new(&self, n: usize) {
        self.inner
            .snapshot_min_new
            .store(n.max(1), std::sync::atomic::Ordering::Relaxed);
    }

    /// How many records were loaded from a snapshot, and how many by replaying the log,
    /// since the store opened.
    pub fn loads(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.inner.loads[0].load(Relaxed),
            self.inner.loads[1].load(Relaxed),
        )
    }

    fn snapshot_path(&self, id: &RecordId) -> Option<PathBuf> {
        self.derived_path(SNAPSHOTS, id)
    }

    /// Where a record's derived file of `kind` lives: `<kind>/<record>` in the store's
    /// directory (`None` for a store in memory).
    fn derived_path(&self, kind: &str, id: &RecordId) -> Option<PathBuf> {
        Some(self.inner.dir.as_ref()?.join(kind).join(id.to_string()))
    }

    /// Writes a record's derived file of `kind` (state rebuilt from the log when lost,
    /// e.g. the FHIR search index, [`FHIR_INDEXES`]) atomically: a temporary file,
    /// fsync'd, renamed into place, the directory fsync'd. Nothing for a store in memory.
    pub fn write_derived(&self, kind: &str, id: &RecordId, bytes: &[u8]) -> Result<(), StoreError> {
        let Some(path) = self.derived_path(kind, id) else {
            return Ok(());
        };
        let dir = path.parent().expect("a derived file's folder");
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        // Of a record being removed, or removed already (a copy loaded before, let go of
        // by the cache, say): nothing of it stays on disk. A removal that begins after
        // this check deletes the file itself.
        if super::lock(&self.inner.removing).contains(id) || !self.holds(id)? {
            std::fs::remove_file(&path)?;
            super::lock(&self.inner.snapshotted).remove(id);
        }
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// A record's derived file of `kind`, if there is one of at most `max` bytes (a larger
    /// or unreadable one is passed over with a warning: the caller rebuilds what it held).
    pub fn read_derived(&self, kind: &str, id: &RecordId, max: u64) -> Option<Vec<u8>> {
        let path = self.derived_path(kind, id)?;
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Ok(m) if m.len() > max => {
                tracing::warn!(record = %id, kind, "derived file too large to read; rebuilding");
                None
            }
            _ => match std::fs::read(&path) {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(record = %id, kind, error = %e, "derived file unreadable; rebuilding");
                    None
                }
            },
        }
    }

    /// Deletes a record's derived file of `kind`, if any.
    fn drop_derived(&self, kind: &str, id: &RecordId) -> Result<(), StoreError> {
        let Some(path) = self.derived_path(kind, id) else {
            return Ok(());
        };
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Writes a loaded record's snapshot if it holds [`SNAPSHOT_MIN_NEW`] entries not in
    /// its last one. Failures are logged, never fatal: the log is the record.
    pub(super) fn snapshot_if_grown(&self, r: &Record) {
        let known = super::lock(&self.inner.snapshotted)
            .get(&r.id())
            .copied()
            .unwrap_or(0);
        let min = self
            .inner
            .snapshot_min_new
            .load(std::sync::atomic::Ordering::Relaxed);
        if r.len() < known + min {
            return;
        }
        if let Err(e) = self.write_snapshot(r) {
            tracing::warn!(record = %r.id(), "snapshot not written: {e}");
        }
    }

    fn write_snapshot(&self, r: &Record) -> Result<(), StoreError> {
        let Some(path) = self.snapshot_path(&r.id()) else {
            return Ok(());
        };
        drop(path);
        let bytes = r
            .snapshot()
            .map_err(|e| StoreError::Corrupt(format!("snapshot: {e}")))?;
        super::lock(&self.inner.snapshotted).insert(r.id(), r.len());
        if let Err(e) = self.write_derived(SNAPSHOTS, &r.id(), &bytes) {
            super::lock(&self.inner.snapshotted).remove(&r.id());
            return Err(e);
        }
        tracing::debug!(record = %r.id(), entries = r.len(), bytes = bytes.len(), "snapshot written");
        Ok(())
    }

    /// Writes the snapshot of every loaded record that grew by [`SNAPSHOT_MIN_NEW`]
    /// entries since its last one (the node calls this as it shuts down).
    pub fn snapshot_all(&self) {
        let loaded = super::lock(&self.inner.records).handles();
        for h in loaded {
            let r = h.read().unwrap_or_else(|p| p.into_inner());
            self.snapshot_if_grown(&r);
        }
    }

    /// Deletes a record's snapshot and its other derived files (the record was removed).
    pub(super) fn drop_snapshot(&self, id: &RecordId) -> Result<(), StoreError> {
        super::lock(&self.inner.snapshotted).remove(id);
        self.drop_derived(FHIR_INDEXES, id)?;
        self.drop_derived(SNAPSHOTS, id)
    }

    /// The record from its snapshot and the entries of the log beyond it; `None` (with a
    /// warning) if there is no usable snapshot, and the caller replays the log.
    pub(super) fn restore(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        let Some(path) = self.snapshot_path(id) else {
            return Ok(None);
        };
        let bytes = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Ok(m) if m.len() > MAX_SNAPSHOT_BYTES => {
                tracing::warn!(record = %id, "snapshot too large to read; replaying the log");
                return Ok(None);
            }
            _ => match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(record = %id, "snapshot unreadable ({e}); replaying the log");
                    return Ok(None);
                }
            },
        };
        let source = Arc::new(source::LogSource::new(self, *id));
        let mut r = match Record::restore(*id, &bytes, source) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(record = %id, "snapshot not used ({e}); replaying the log");
                return Ok(None);
            }
        };
        drop(bytes);
        self.unlock_readers(&mut r);
        let in_snapshot = r.len();
        let mut found = 0usize;
        // Under one log guard: no compaction moves the entries between index and log.
        let log = self.log();
        for kv in self.db().scan_prefix(key(b'o', &[id.as_bytes()])) {
            let (k, v) = kv?;
            for (offset, eid) in locations(&k, &v)? {
                if found < in_snapshot && r.contains(&eid) {
                    found += 1;
                    continue;
                }
                let e = super::read_entry_in(&log, offset, &eid)?;
                if let Err(err) = r.apply_known(Verified::trusted(e)) {
                    tracing::warn!(record = %id, "an entry beyond the snapshot does not apply ({err}); replaying the log");
                    return Ok(None);
                }
            }
        }
        if found != in_snapshot {
            tracing::warn!(record = %id, "the snapshot holds entries the log does not; replaying the log");
            return Ok(None);
        }
        super::lock(&self.inner.snapshotted).insert(*id, in_snapshot);
        Ok(Some(r))
    }
}
