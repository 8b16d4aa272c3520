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
//!
//! ## Admission parts
//!
//! Beside each snapshot the store writes the record's admission part
//! ([`Record::admission`]: its administrative entries, heads and each chain's last entry,
//! no history) to `admission/<record>`, and a write of a record not loaded loads only that
//! part (`Store::write_with`): the first write after a restart then costs what the part
//! holds, not the record's history. Whatever the part cannot decide (anything but a create
//! of record data, or a create whose checks read what the part does not hold), and any
//! other use of the record (a read, a sync, an import), loads the whole record in its
//! place, under the same lock, so nothing written through the part is missed.
//!
//! The file is `COPHR-ADM1`, the log offset and id of the record's last entry when the
//! part was taken, then the part's snapshot. Loading it checks that the index lists that
//! entry at that offset for the record and that the log's frame there is that entry (so a
//! compaction, a log restored from a backup or a record removed and received again since
//! is noticed), that the part's own last entry is the same, then applies every entry the
//! index lists for the record after that offset. On any doubt the whole record is loaded
//! instead, as when there is no file.

use std::path::PathBuf;
use std::sync::Arc;

use cophr_protocol::record::{Record, Rejection};
use cophr_protocol::{EntryId, RecordId, Verified};

use super::{key, locations, source, Store, StoreError};

/// The folder of the records' snapshots.
const SNAPSHOTS: &str = "snapshots";

/// The folder of the records' admission parts.
const ADMISSION: &str = "admission";

/// An admission file's first bytes.
const ADMISSION_MAGIC: &[u8; 10] = b"COPHR-ADM1";

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

    /// How many records were loaded as their admission part (for a write) since the
    /// store opened.
    pub fn admission_loads(&self) -> u64 {
        self.inner.loads[2].load(std::sync::atomic::Ordering::Relaxed)
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

    /// Writes a record's snapshot and its admission part's (of an admission part, only
    /// the part's).
    fn write_snapshot(&self, r: &Record) -> Result<(), StoreError> {
        let Some(path) = self.snapshot_path(&r.id()) else {
            return Ok(());
        };
        drop(path);
        super::lock(&self.inner.snapshotted).insert(r.id(), r.len());
        let written = if r.is_admission() {
            self.write_admission(r)
        } else {
            self.write_whole_snapshot(r)
                .and_then(|()| self.write_admission(&r.admission()))
        };
        if written.is_err() {
            super::lock(&self.inner.snapshotted).remove(&r.id());
        }
        written
    }

    fn write_whole_snapshot(&self, r: &Record) -> Result<(), StoreError> {
        let bytes = r
            .snapshot()
            .map_err(|e| StoreError::Corrupt(format!("snapshot: {e}")))?;
        self.write_derived(SNAPSHOTS, &r.id(), &bytes)?;
        tracing::debug!(record = %r.id(), entries = r.len(), bytes = bytes.len(), "snapshot written");
        Ok(())
    }

    /// Writes an admission part's file, if the index lists the part's last entry as the
    /// record's last (it always does, but for a write whose indexing is still pending:
    /// then nothing is written, and the part is written next time).
    fn write_admission(&self, part: &Record) -> Result<(), StoreError> {
        let id = part.id();
        let Some(last) = part.last_applied() else {
            return Ok(());
        };
        let indexed = {
            let _log = self.log();
            self.last_location(&id)?
        };
        let Some((offset, indexed_last)) = indexed.filter(|(_, e)| *e == last) else {
            tracing::debug!(record = %id, "admission part not written: the index is behind");
            return Ok(());
        };
        let snap = part
            .snapshot()
            .map_err(|e| StoreError::Corrupt(format!("admission part: {e}")))?;
        let mut bytes = Vec::with_capacity(ADMISSION_MAGIC.len() + 40 + snap.len());
        bytes.extend_from_slice(ADMISSION_MAGIC);
        bytes.extend_from_slice(&offset.to_be_bytes());
        bytes.extend_from_slice(indexed_last.as_bytes());
        bytes.extend_from_slice(&snap);
        self.write_derived(ADMISSION, &id, &bytes)?;
        tracing::debug!(record = %id, entries = part.len(), held = part.resident(), bytes = bytes.len(), "admission part written");
        Ok(())
    }

    /// The last location the index lists for a record: the offset and id of its last
    /// entry. Asked under a log guard.
    fn last_location(&self, id: &RecordId) -> Result<Option<(u64, EntryId)>, StoreError> {
        match self
            .db()
            .scan_prefix(key(b'o', &[id.as_bytes()]))
            .next_back()
        {
            None => Ok(None),
            Some(kv) => {
                let (k, v) = kv?;
                Ok(locations(&k, &v)?.last().copied())
            }
        }
    }

    /// A record's admission part from its file, with every entry the index lists for the
    /// record beyond it applied; `None` if there is no usable file or an entry beyond it
    /// is not the part's to decide (the caller loads the whole record). See the module
    /// docs for what is checked.
    pub(super) fn restore_admission(&self, id: &RecordId) -> Result<Option<Record>, StoreError> {
        let Some(bytes) = self.read_derived(ADMISSION, id, MAX_SNAPSHOT_BYTES) else {
            return Ok(None);
        };
        let Some(rest) = bytes
            .strip_prefix(&ADMISSION_MAGIC[..])
            .filter(|b| b.len() >= 40)
        else {
            tracing::warn!(record = %id, "admission part damaged; loading the whole record");
            return Ok(None);
        };
        let (head, snap) = rest.split_at(40);
        let through = u64::from_be_bytes(head[..8].try_into().expect("8 bytes"));
        let last = EntryId(head[8..40].try_into().expect("32 bytes"));
        let source = Arc::new(source::LogSource::new(self, *id));
        let mut r = match Record::restore(*id, snap, source) {
            Ok(r) if r.is_admission() && r.last_applied() == Some(last) => r,
            Ok(_) => {
                tracing::warn!(record = %id, "admission file holds no admission part of its last entry; loading the whole record");
                return Ok(None);
            }
            Err(e) => {
                tracing::warn!(record = %id, "admission part not used ({e}); loading the whole record");
                return Ok(None);
            }
        };
        drop(bytes);
        self.unlock_readers(&mut r);
        // Under one log guard: no compaction moves the entries between index and log.
        let log = self.log();
        let prefix = key(b'o', &[id.as_bytes()]);
        // The run of locations holding `through` starts at or before it.
        let from = match self
            .db()
            .range(prefix.clone()..=key(b'o', &[id.as_bytes(), &through.to_be_bytes()]))
            .next_back()
        {
            Some(kv) => kv?.0,
            None => return Ok(None),
        };
        let mut at_through = false;
        for kv in self.db().range(from..) {
            let (k, v) = kv?;
            if !k.starts_with(&prefix) {
                break;
            }
            for (offset, eid) in locations(&k, &v)? {
                if offset < through {
                    continue;
                }
                if offset == through {
                    // The entry the part was taken at: listed here and in the log.
                    if eid != last || super::read_entry_in(&log, offset, &eid).is_err() {
                        tracing::warn!(record = %id, "the log changed since the admission part was taken; loading the whole record");
                        return Ok(None);
                    }
                    at_through = true;
                    continue;
                }
                if !at_through {
                    return Ok(None);
                }
                let e = super::read_entry_in(&log, offset, &eid)?;
                match r.apply_known(Verified::trusted(e)) {
                    Ok(_) => {}
                    Err(Rejection::NeedsWholeRecord) => return Ok(None),
                    Err(err) => {
                        tracing::warn!(record = %id, "an entry beyond the admission part does not apply ({err}); loading the whole record");
                        return Ok(None);
                    }
                }
            }
        }
        if !at_through {
            tracing::warn!(record = %id, "the index no longer lists the admission part's last entry; loading the whole record");
            return Ok(None);
        }
        Ok(Some(r))
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
        self.drop_derived(ADMISSION, id)?;
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
                // In the order applied (the index's order) first, by id if not.
                if found < in_snapshot && (r.applied_at(found) == Some(eid) || r.contains(&eid)) {
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
