//! [`BlobStore`]: import, reads, slices served and received, verify, remove, and open with
//! recovery (the protocol is in the module docs of `blobs`).

use std::collections::HashMap;
use std::io::{self, Read};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::format::{
    blob_name, decode_header, decode_record, encode_header, encode_record, file_len, parse_name,
    part_name, ranges_name, temp_name, Name, RangeSet, HEADER_LEN, RANGES_MAGIC, RECORD_LEN,
};
use super::reader::BlobReader;
use super::verify::{self, Slice};
use super::{
    BlobDir, BlobError, BlobFile, BlobHash, BlobLimits, Limit, GROUP_BYTES, MAX_BLOB_BYTES,
    MAX_READ_BYTES, MAX_SLICE_DATA, SYNC_BATCH_BYTES,
};

/// Read and hash buffer of an import.
const IMPORT_BUF: usize = 64 << 10;
/// Bytes checked at a time by [`BlobStore::verify`] and at completion.
const VERIFY_WINDOW: u64 = 1 << 20;
/// `.ranges` bytes read at a time when a partial blob is resumed.
const RANGES_READ: usize = RECORD_LEN * 4096;

/// Where a blob stands after [`BlobStore::begin`] or [`BlobStore::write_slice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The blob is complete and durable here.
    Complete,
    /// The blob is being received; this many bytes are still missing.
    Partial {
        /// Bytes not yet received (see [`BlobStore::missing_ranges`]).
        missing: u64,
    },
}

/// What [`BlobStore::open`] found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Temporary files deleted (imports or rewrites a crash or failure interrupted).
    pub removed_temp: usize,
    /// Partial blobs resumed, with the bytes they already hold.
    pub resumed: Vec<(BlobHash, u64)>,
    /// Partial blobs deleted because their file's header was unreadable.
    pub discarded: Vec<BlobHash>,
    /// Complete blob files whose header, name or length is wrong: left in place, not served;
    /// receiving the blob again replaces them.
    pub damaged: Vec<String>,
}

#[derive(Debug)]
struct Partial {
    hash: BlobHash,
    size: u64,
    file: Arc<dyn BlobFile>,
    ranges: Arc<dyn BlobFile>,
    /// Length of the `.ranges` file's valid prefix.
    ranges_len: u64,
    present: RangeSet,
    /// Ranges written into the file by [`BlobStore::write_slice_batched`] but not yet
    /// fsync'd nor recorded in `.ranges` (they are in `present`: not asked for again in
    /// this run; a crash loses them, and they are fetched again).
    unsynced: Vec<Range<u64>>,
    /// Completed, aborted or replaced by an import: no longer written.
    gone: bool,
}

#[derive(Debug, Default)]
struct State {
    complete: HashMap<BlobHash, u64>,
    /// Partial blobs with their declared sizes (kept outside the partial's lock: the state's
    /// lock is never held while a partial's is taken).
    partials: HashMap<BlobHash, (u64, Arc<Mutex<Partial>>)>,
    /// Sum of the declared sizes of `partials`.
    partial_bytes: u64,
}

/// A content-addressed, durable store of blobs over a [`BlobDir`]. Safe to share between
/// threads; reads run concurrently, writes to one partial blob one at a time.
#[derive(Debug)]
pub struct BlobStore {
    dir: Arc<dyn BlobDir>,
    limits: BlobLimits,
    state: Mutex<State>,
    next_temp: AtomicU64,
    recovery: Recovery,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_header(file: &dyn BlobFile, hash: &BlobHash) -> io::Result<Option<u64>> {
    let mut h = [0u8; HEADER_LEN as usize];
    match file.read_at(0, &mut h) {
        Ok(()) => Ok(decode_header(&h, hash)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

fn ignore_not_found(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl BlobStore {
    /// Open the store in `dir` with the default limits.
    pub fn open(dir: Arc<dyn BlobDir>) -> Result<BlobStore, BlobError> {
        BlobStore::open_with(dir, BlobLimits::default())
    }

    /// Open the store in `dir`, recovering from an interrupted run (see the module docs).
    pub fn open_with(dir: Arc<dyn BlobDir>, limits: BlobLimits) -> Result<BlobStore, BlobError> {
        let limits = BlobLimits {
            max_blob_bytes: limits.max_blob_bytes.min(MAX_BLOB_BYTES),
            ..limits
        };
        let mut recovery = Recovery::default();
        let mut state = State::default();
        let mut changed = false;
        let names = dir.list()?;
        let mut parts = Vec::new();
        let mut ranges_files = Vec::new();
        for name in &names {
            match parse_name(name) {
                Name::Temp => {
                    ignore_not_found(dir.remove(name))?;
                    recovery.removed_temp += 1;
                    changed = true;
                }
                Name::Blob(hash) => {
                    let file = dir.open(name)?;
                    match read_header(&*file, &hash)? {
                        Some(size)
                            if file.len()? == file_len(size)
                                && (size > 0 || hash == BlobHash::of(&[])) =>
                        {
                            state.complete.insert(hash, size);
                        }
                        _ => recovery.damaged.push(name.clone()),
                    }
                }
                Name::Part(hash) => parts.push(hash),
                Name::Ranges(hash) => ranges_files.push(hash),
                Name::Other => {}
            }
        }
        for hash in parts {
            let (pname, rname) = (part_name(&hash), ranges_name(&hash));
            if state.complete.contains_key(&hash) {
                // Completed (or imported) before the crash; the partial was not yet cleaned.
                ignore_not_found(dir.remove(&pname))?;
                ignore_not_found(dir.remove(&rname))?;
                changed = true;
                continue;
            }
            let file = dir.open(&pname)?;
            let size = match read_header(&*file, &hash)? {
                Some(size) if size > 0 && file.len()? <= file_len(size) => size,
                _ => {
                    ignore_not_found(dir.remove(&pname))?;
                    ignore_not_found(dir.remove(&rname))?;
                    recovery.discarded.push(hash);
                    changed = true;
                    continue;
                }
            };
            let (ranges, ranges_len, present, created) = load_ranges(&*dir, &rname, size)?;
            changed |= created;
            recovery.resumed.push((hash, present.total()));
            state.partial_bytes += size;
            state.partials.insert(
                hash,
                (
                    size,
                    Arc::new(Mutex::new(Partial {
                        hash,
                        size,
                        file,
                        ranges,
                        ranges_len,
                        present,
                        unsynced: Vec::new(),
                        gone: false,
                    })),
                ),
            );
        }
        for hash in ranges_files {
            if !state.partials.contains_key(&hash) {
                ignore_not_found(dir.remove(&ranges_name(&hash)))?;
                changed = true;
            }
        }
        if changed {
            dir.sync()?;
        }
        recovery.resumed.sort();
        Ok(BlobStore {
            dir,
            limits,
            state: Mutex::new(state),
            next_temp: AtomicU64::new(0),
            recovery,
        })
    }

    /// What [`BlobStore::open`] found and did.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The limits in force.
    pub fn limits(&self) -> BlobLimits {
        self.limits
    }

    fn temp(&self) -> String {
        temp_name(self.next_temp.fetch_add(1, Ordering::Relaxed))
    }

    // -----------------------------------------------------------------------------------------
    // Import

    /// Store the bytes `reader` gives (a local file being attached): streamed through a
    /// bounded buffer, hashed, written with their outboard to a temporary file, fsync'd and
    /// renamed into place, the directory fsync'd. Returns the blob's hash and size. When the
    /// blob is already held nothing changes (the temporary file is deleted).
    pub fn import(&self, mut reader: impl Read) -> Result<(BlobHash, u64), BlobError> {
        let name = self.temp();
        let file = self.dir.create(&name)?;
        let result = self.import_into(&mut reader, &name, &*file);
        if result.is_err() {
            let _ = self.dir.remove(&name);
        }
        result
    }

    fn import_into(
        &self,
        reader: &mut dyn Read,
        name: &str,
        file: &dyn BlobFile,
    ) -> Result<(BlobHash, u64), BlobError> {
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; IMPORT_BUF];
        let mut size: u64 = 0;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            size += n as u64;
            if size > self.limits.max_blob_bytes {
                return Err(BlobError::TooLarge {
                    size,
                    limit: self.limits.max_blob_bytes,
                });
            }
            file.write_at(HEADER_LEN + size - n as u64, &buf[..n])?;
            hasher.update(&buf[..n]);
        }
        let hash = BlobHash::from(hasher.finalize());
        if let Some(&known) = lock(&self.state).complete.get(&hash) {
            let _ = self.dir.remove(name);
            return Ok((hash, known));
        }
        drop(buf);
        // Second pass: the bytes read back give the outboard, and must hash as written.
        let root = verify::write_outboard(file, size)?;
        if BlobHash::from(root) != hash {
            return Err(io::Error::other(
                "the bytes read back from storage differ from the bytes written",
            )
            .into());
        }
        file.write_at(0, &encode_header(&hash, size))?;
        file.sync()?;
        self.install(name, hash, size, None)?;
        Ok((hash, size))
    }

    /// Rename the synced file `from` to `hash`'s blob name and fsync the directory, then (only
    /// then) index the blob and drop any partial of the same hash. Done under the state's
    /// lock, so no `begin` or `remove` of the hash comes in between. `own` is the partial
    /// being completed, if any: it must still be the state's, else nothing is renamed (it
    /// was removed meanwhile: [`BlobError::NotFound`], or an import completed the blob); if
    /// the rename or the fsync fails it is dropped from the state (a restart finds it, or
    /// the blob).
    fn install(
        &self,
        from: &str,
        hash: BlobHash,
        size: u64,
        own: Option<&Arc<Mutex<Partial>>>,
    ) -> Result<(), BlobError> {
        let mut st = lock(&self.state);
        if let Some(own) = own {
            let current = st
                .partials
                .get(&hash)
                .is_some_and(|(_, e)| Arc::ptr_eq(e, own));
            if !current {
                // Removed meanwhile, or completed by an import.
                return if st.complete.contains_key(&hash) {
                    Ok(())
                } else {
                    Err(BlobError::NotFound { hash })
                };
            }
        }
        let done = self
            .dir
            .rename(from, &blob_name(&hash))
            .and_then(|()| self.dir.sync());
        if let Err(e) = done {
            if own.is_some() {
                if let Some((s, _)) = st.partials.remove(&hash) {
                    st.partial_bytes = st.partial_bytes.saturating_sub(s);
                }
            }
            return Err(e.into());
        }
        st.complete.insert(hash, size);
        let other = st.partials.remove(&hash);
        if let Some((s, _)) = &other {
            st.partial_bytes = st.partial_bytes.saturating_sub(*s);
        }
        drop(st);
        if let Some((_, p)) = other {
            if own.is_some_and(|own| Arc::ptr_eq(own, &p)) {
                return Ok(());
            }
            // A partial of a blob now complete: its files go.
            let mut p = lock(&p);
            if !p.gone {
                p.gone = true;
                let _ = self.dir.remove(&part_name(&hash));
                let _ = self.dir.remove(&ranges_name(&hash));
            }
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------------
    // Complete blobs

    /// Whether the blob is complete and durable here.
    pub fn has(&self, hash: &BlobHash) -> bool {
        lock(&self.state).complete.contains_key(hash)
    }

    /// The size of a complete blob.
    pub fn size(&self, hash: &BlobHash) -> Result<u64, BlobError> {
        lock(&self.state)
            .complete
            .get(hash)
            .copied()
            .ok_or(BlobError::NotFound { hash: *hash })
    }

    /// Every complete blob with its size, by hash.
    pub fn list(&self) -> Vec<(BlobHash, u64)> {
        let mut all: Vec<_> = lock(&self.state)
            .complete
            .iter()
            .map(|(h, s)| (*h, *s))
            .collect();
        all.sort();
        all
    }

    fn open_file(&self, hash: &BlobHash) -> Result<(Arc<dyn BlobFile>, u64), BlobError> {
        let size = self.size(hash)?;
        match self.dir.open(&blob_name(hash)) {
            Ok(file) => Ok((file, size)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(BlobError::NotFound { hash: *hash })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A reader of a complete blob's bytes ([`std::io::Read`] and [`std::io::Seek`]), every
    /// byte checked against the hash before it is returned.
    pub fn open_blob(&self, hash: &BlobHash) -> Result<BlobReader, BlobError> {
        let (file, size) = self.open_file(hash)?;
        Ok(BlobReader::new(file, *hash, size))
    }

    /// The bytes `offset..offset + len` of a complete blob (at most [`MAX_READ_BYTES`]),
    /// checked against the hash: a damaged byte gives [`BlobError::Corrupt`], never wrong
    /// bytes.
    pub fn read_range(&self, hash: &BlobHash, offset: u64, len: u64) -> Result<Vec<u8>, BlobError> {
        if len > MAX_READ_BYTES {
            return Err(BlobError::ReadTooLarge {
                len,
                limit: MAX_READ_BYTES,
            });
        }
        let (file, size) = self.open_file(hash)?;
        let end =
            offset
                .checked_add(len)
                .filter(|&e| e <= size)
                .ok_or(BlobError::InvalidRange {
                    hash: *hash,
                    offset,
                    len,
                    size,
                    reason: "it reaches past the blob's end",
                })?;
        let from = offset - offset % GROUP_BYTES;
        let to = end
            .div_ceil(GROUP_BYTES)
            .saturating_mul(GROUP_BYTES)
            .min(size);
        let mut window = Vec::new();
        verify::read_verified(&*file, hash, size, from, to, &mut window)?;
        let skip = (offset - from) as usize;
        Ok(window[skip..skip + len as usize].to_vec())
    }

    /// Read the whole blob back against its hash (for repair: a damaged blob is reported as
    /// [`BlobError::Corrupt`] with the first damaged offset, so it can be fetched again).
    pub fn verify(&self, hash: &BlobHash) -> Result<(), BlobError> {
        let (file, size) = self.open_file(hash)?;
        verify_file(&*file, hash, size)
    }

    /// Remove a blob, complete or partial. Open readers keep reading what they opened.
    pub fn remove(&self, hash: &BlobHash) -> Result<(), BlobError> {
        let (was_complete, partial) = {
            let mut st = lock(&self.state);
            let was_complete = st.complete.remove(hash).is_some();
            let p = st.partials.remove(hash);
            if let Some((size, _)) = &p {
                st.partial_bytes = st.partial_bytes.saturating_sub(*size);
            }
            (was_complete, p)
        };
        if !was_complete && partial.is_none() {
            return Err(BlobError::NotFound { hash: *hash });
        }
        if let Some((_, p)) = partial {
            lock(&p).gone = true;
            ignore_not_found(self.dir.remove(&part_name(hash)))?;
            ignore_not_found(self.dir.remove(&ranges_name(hash)))?;
        }
        if was_complete {
            ignore_not_found(self.dir.remove(&blob_name(hash)))?;
        }
        self.dir.sync()?;
        Ok(())
    }

    /// Read a complete blob whole against its hash and, if any chunk group is damaged, set
    /// it aside: it becomes a partial blob missing exactly the damaged groups, so those
    /// (and only those) are fetched again from a peer, checked as any received slice, and
    /// the blob completes as a received one does (read back whole, then renamed into
    /// place). Returns the damaged ranges (empty: the blob is intact). The good ranges are
    /// recorded (temp file, fsync, rename) before the blob file is renamed to a partial
    /// (and the directory fsync'd): a crash in between leaves the blob as it was, to be
    /// found damaged again.
    pub fn repair(&self, hash: &BlobHash) -> Result<Vec<Range<u64>>, BlobError> {
        let (file, size) = self.open_file(hash)?;
        let damaged = damaged_groups(&*file, hash, size)?;
        if damaged.is_empty() {
            return Ok(Vec::new());
        }
        let mut present = RangeSet::default();
        present.insert(0..size);
        for r in &damaged {
            present.remove(r.clone());
        }
        let rname = ranges_name(hash);
        let name = self.temp();
        let written = (|| -> io::Result<u64> {
            let tmp = self.dir.create(&name)?;
            let mut bytes = RANGES_MAGIC.to_vec();
            for r in present.ranges() {
                bytes.extend_from_slice(&encode_record(r));
            }
            tmp.write_at(0, &bytes)?;
            tmp.sync()?;
            self.dir.rename(&name, &rname)?;
            Ok(bytes.len() as u64)
        })();
        let ranges_len = match written {
            Ok(len) => len,
            Err(e) => {
                let _ = self.dir.remove(&name);
                return Err(e.into());
            }
        };
        // The blob leaves the index and becomes a partial under the state's lock, so no
        // `begin` or `remove` of the same hash comes in between.
        let mut st = lock(&self.state);
        if st.complete.get(hash) != Some(&size) {
            drop(st);
            let _ = self.dir.remove(&rname);
            return Err(BlobError::NotFound { hash: *hash });
        }
        let (pname, bname) = (part_name(hash), blob_name(hash));
        let moved = self
            .dir
            .rename(&bname, &pname)
            .and_then(|()| self.dir.sync())
            .and_then(|()| Ok((self.dir.open(&pname)?, self.dir.open(&rname)?)));
        let (file, ranges) = match moved {
            Ok(files) => files,
            Err(e) => {
                // Reported as not held: open finds the blob or the partial.
                st.complete.remove(hash);
                return Err(e.into());
            }
        };
        st.complete.remove(hash);
        st.partial_bytes = st.partial_bytes.saturating_add(size);
        st.partials.insert(
            *hash,
            (
                size,
                Arc::new(Mutex::new(Partial {
                    hash: *hash,
                    size,
                    file,
                    ranges,
                    ranges_len,
                    present,
                    unsynced: Vec::new(),
                    gone: false,
                })),
            ),
        );
        Ok(damaged)
    }

    // -----------------------------------------------------------------------------------------
    // Serving

    /// A verified slice of a complete blob for a peer: the whole chunk groups from `offset`
    /// (a multiple of [`GROUP_BYTES`]) covering up to `len` bytes, at most
    /// [`MAX_SLICE_DATA`], with the proof that ties them to the hash. Each group is checked
    /// before it is encoded: a damaged blob gives [`BlobError::Corrupt`], never a bad slice.
    pub fn slice(&self, hash: &BlobHash, offset: u64, len: u64) -> Result<Slice, BlobError> {
        let (file, size) = self.open_file(hash)?;
        let invalid = |reason| BlobError::InvalidRange {
            hash: *hash,
            offset,
            len,
            size,
            reason,
        };
        if len == 0 {
            return Err(invalid("it is empty"));
        }
        if offset >= size {
            return Err(invalid("it starts at or past the blob's end"));
        }
        if !offset.is_multiple_of(GROUP_BYTES) {
            return Err(invalid("it does not start on a chunk group boundary"));
        }
        let want = len.min(MAX_SLICE_DATA);
        let end = offset
            .saturating_add(want)
            .div_ceil(GROUP_BYTES)
            .saturating_mul(GROUP_BYTES)
            .min(offset + MAX_SLICE_DATA)
            .min(size);
        let encoded = verify::encode_slice(&*file, hash, size, offset, end)?;
        Ok(Slice {
            offset,
            len: end - offset,
            encoded,
        })
    }

    // -----------------------------------------------------------------------------------------
    // Receiving

    /// Start (or continue) receiving the blob `hash` of `size` bytes. A new partial blob
    /// counts against [`BlobLimits::max_partials`] and [`BlobLimits::max_partial_bytes`]; an
    /// empty blob is complete at once (its hash is checked); a partial that already holds
    /// every range is completed now.
    pub fn begin(&self, hash: &BlobHash, size: u64) -> Result<Progress, BlobError> {
        if size > self.limits.max_blob_bytes {
            return Err(BlobError::TooLarge {
                size,
                limit: self.limits.max_blob_bytes,
            });
        }
        let existing = {
            let mut st = lock(&self.state);
            if let Some(&known) = st.complete.get(hash) {
                if known != size {
                    return Err(BlobError::SizeMismatch {
                        hash: *hash,
                        known,
                        declared: size,
                    });
                }
                return Ok(Progress::Complete);
            }
            match st.partials.get(hash) {
                Some((_, p)) => Some(Arc::clone(p)),
                None if size == 0 => None,
                None => {
                    if st.partials.len() >= self.limits.max_partials {
                        return Err(BlobError::LimitReached {
                            limit: Limit::Partials,
                            max: self.limits.max_partials as u64,
                        });
                    }
                    if st.partial_bytes.saturating_add(size) > self.limits.max_partial_bytes {
                        return Err(BlobError::LimitReached {
                            limit: Limit::PartialBytes,
                            max: self.limits.max_partial_bytes,
                        });
                    }
                    let p = self.create_partial(hash, size)?;
                    st.partial_bytes += size;
                    st.partials.insert(*hash, (size, Arc::clone(&p)));
                    return Ok(Progress::Partial { missing: size });
                }
            }
        };
        let Some(p) = existing else {
            // size == 0: one blob only has no bytes.
            if *hash != BlobHash::of(&[]) {
                return Err(BlobError::HashMismatch { hash: *hash, size });
            }
            self.import(io::empty())?;
            return Ok(Progress::Complete);
        };
        let mut guard = lock(&p);
        if guard.size != size {
            return Err(BlobError::SizeMismatch {
                hash: *hash,
                known: guard.size,
                declared: size,
            });
        }
        self.progress(&p, &mut guard)
    }

    fn create_partial(&self, hash: &BlobHash, size: u64) -> Result<Arc<Mutex<Partial>>, BlobError> {
        let (pname, rname) = (part_name(hash), ranges_name(hash));
        let made = (|| -> io::Result<Partial> {
            let file = self.dir.create(&pname)?;
            file.write_at(0, &encode_header(hash, size))?;
            file.sync()?;
            let ranges = self.dir.create(&rname)?;
            ranges.write_at(0, &RANGES_MAGIC)?;
            ranges.sync()?;
            self.dir.sync()?;
            Ok(Partial {
                hash: *hash,
                size,
                file,
                ranges,
                ranges_len: RANGES_MAGIC.len() as u64,
                present: RangeSet::default(),
                unsynced: Vec::new(),
                gone: false,
            })
        })();
        match made {
            Ok(p) => Ok(Arc::new(Mutex::new(p))),
            Err(e) => {
                let _ = self.dir.remove(&pname);
                let _ = self.dir.remove(&rname);
                Err(e.into())
            }
        }
    }

    /// The byte ranges of a partial blob still missing (runs of whole chunk groups, sorted);
    /// empty for a complete blob.
    pub fn missing_ranges(&self, hash: &BlobHash) -> Result<Vec<Range<u64>>, BlobError> {
        let p = {
            let st = lock(&self.state);
            if st.complete.contains_key(hash) {
                return Ok(Vec::new());
            }
            st.partials
                .get(hash)
                .map(|(_, p)| Arc::clone(p))
                .ok_or(BlobError::NotFound { hash: *hash })?
        };
        let p = lock(&p);
        Ok(p.present.missing(p.size))
    }

    /// The blobs being received, with their declared sizes, by hash.
    pub fn partials(&self) -> Vec<(BlobHash, u64)> {
        let mut all: Vec<_> = lock(&self.state)
            .partials
            .iter()
            .map(|(h, (size, _))| (*h, *size))
            .collect();
        all.sort();
        all
    }

    /// Take a slice received from a peer for a blob begun with [`BlobStore::begin`]. The
    /// slice is checked against the hash, whole, before anything is written; a slice that
    /// fails is refused with [`BlobError::SliceRejected`] and nothing stored changes. Its
    /// data and proof are fsync'd before its range is recorded (and that record fsync'd),
    /// all before this returns; when the last range arrives the blob is checked whole and
    /// made complete by one rename.
    pub fn write_slice(&self, hash: &BlobHash, slice: &Slice) -> Result<Progress, BlobError> {
        self.receive(hash, slice, 0)
    }

    /// [`BlobStore::write_slice`], with the fsyncs batched: the slice is checked the same
    /// way and written into the partial file, but its data is fsync'd, and its range
    /// recorded and that fsync'd, only once [`SYNC_BATCH_BYTES`] are waiting (then all of
    /// them together: one fsync of the data and one of the records for the batch), at
    /// [`BlobStore::flush`], or when the blob completes. Meanwhile its range counts as
    /// present ([`BlobStore::missing_ranges`] leaves it out); a crash or power loss before
    /// the batch is made durable loses only those ranges, which were never recorded, so
    /// they are fetched again. A range recorded is still a range durable.
    pub fn write_slice_batched(
        &self,
        hash: &BlobHash,
        slice: &Slice,
    ) -> Result<Progress, BlobError> {
        self.receive(hash, slice, SYNC_BATCH_BYTES)
    }

    /// Makes durable (fsync, record, fsync) what [`BlobStore::write_slice_batched`] wrote
    /// into `hash`'s partial file and left waiting. Nothing to do for a complete blob.
    pub fn flush(&self, hash: &BlobHash) -> Result<(), BlobError> {
        let entry = {
            let st = lock(&self.state);
            if st.complete.contains_key(hash) {
                return Ok(());
            }
            match st.partials.get(hash) {
                Some((_, p)) => Arc::clone(p),
                None => return Err(BlobError::NotFound { hash: *hash }),
            }
        };
        let mut p = lock(&entry);
        if p.gone {
            return self.gone(hash).map(|_| ());
        }
        sync_unsynced(&mut p)
    }

    /// Take a slice: check it, write it, and make what waits durable once `batch` bytes
    /// (0: at once) or the whole blob are written.
    fn receive(&self, hash: &BlobHash, slice: &Slice, batch: u64) -> Result<Progress, BlobError> {
        let (p, size) = {
            let st = lock(&self.state);
            if st.complete.contains_key(hash) {
                return Ok(Progress::Complete);
            }
            let (size, p) = st
                .partials
                .get(hash)
                .ok_or(BlobError::NotFound { hash: *hash })?;
            (Arc::clone(p), *size)
        };
        let checked =
            verify::check_slice(hash, size, slice).map_err(|fault| BlobError::SliceRejected {
                hash: *hash,
                offset: slice.offset,
                fault,
            })?;
        let entry = p;
        let mut p = lock(&entry);
        if p.gone {
            return self.gone(hash);
        }
        let range = slice.offset..slice.offset + slice.len;
        if !p.present.contains(&range) {
            // The parts of the slice not yet present (group-aligned: the slice and the
            // present ranges are runs of whole groups).
            let new: Vec<Range<u64>> = p
                .present
                .missing(size)
                .into_iter()
                .filter_map(|m| {
                    let r = m.start.max(range.start)..m.end.min(range.end);
                    (r.start < r.end).then_some(r)
                })
                .collect();
            verify::store_checked(&*p.file, hash, size, &checked)?;
            for r in new {
                p.present.insert(r.clone());
                p.unsynced.push(r);
            }
        }
        let waiting: u64 = p.unsynced.iter().map(|r| r.end - r.start).sum();
        if waiting > 0 && (waiting >= batch || p.present.total() == p.size) {
            sync_unsynced(&mut p)?;
        }
        self.progress(&entry, &mut p)
    }

    /// Where a blob stands whose partial was completed, aborted or replaced meanwhile.
    fn gone(&self, hash: &BlobHash) -> Result<Progress, BlobError> {
        if self.has(hash) {
            Ok(Progress::Complete)
        } else {
            Err(BlobError::NotFound { hash: *hash })
        }
    }

    /// Report a partial blob's progress, completing it when nothing is missing. `entry` is
    /// the partial's place in the state, `p` its locked contents.
    fn progress(
        &self,
        entry: &Arc<Mutex<Partial>>,
        p: &mut Partial,
    ) -> Result<Progress, BlobError> {
        if p.gone {
            return self.gone(&p.hash);
        }
        let missing = p.size - p.present.total();
        if missing > 0 {
            return Ok(Progress::Partial { missing });
        }
        self.complete(entry, p)?;
        Ok(Progress::Complete)
    }

    /// Check a partial blob whose every range is present, whole, then rename it into place.
    fn complete(&self, entry: &Arc<Mutex<Partial>>, p: &mut Partial) -> Result<(), BlobError> {
        p.file.sync()?;
        if let Err(e) = verify_file(&*p.file, &p.hash, p.size) {
            if let BlobError::Corrupt { offset, .. } = e {
                // The group is fetched again; the other ranges stay.
                let start = offset - offset % GROUP_BYTES;
                p.present.remove(start..start.saturating_add(GROUP_BYTES));
                self.rewrite_ranges(p)?;
            }
            return Err(e);
        }
        let hash = p.hash;
        // If the rename or the directory fsync fails, the blob is not reported complete: the
        // partial is dropped from memory, and open finds the partial, or the blob if the
        // rename reached the disk (its bytes were fsync'd and checked before).
        let installed = self.install(&part_name(&hash), hash, p.size, Some(entry));
        p.gone = true;
        installed?;
        // Left behind only when an import completed the blob first (open would clean it).
        let _ = self.dir.remove(&part_name(&hash));
        let _ = self.dir.remove(&ranges_name(&hash));
        Ok(())
    }

    /// Write a partial blob's `.ranges` file anew from its present set (temp file, fsync,
    /// rename, directory fsync).
    fn rewrite_ranges(&self, p: &mut Partial) -> Result<(), BlobError> {
        let name = self.temp();
        let result = (|| -> io::Result<(Arc<dyn BlobFile>, u64)> {
            let file = self.dir.create(&name)?;
            let mut bytes = RANGES_MAGIC.to_vec();
            for r in p.present.ranges() {
                bytes.extend_from_slice(&encode_record(r));
            }
            file.write_at(0, &bytes)?;
            file.sync()?;
            let rname = ranges_name(&p.hash);
            self.dir.rename(&name, &rname)?;
            self.dir.sync()?;
            Ok((self.dir.open(&rname)?, bytes.len() as u64))
        })();
        match result {
            Ok((file, len)) => {
                p.ranges = file;
                p.ranges_len = len;
                Ok(())
            }
            Err(e) => {
                let _ = self.dir.remove(&name);
                Err(e.into())
            }
        }
    }
}

/// Make a partial blob's waiting ranges durable: fsync its file, then append their records
/// to `.ranges` in one write and fsync that. On failure they are no longer present (they
/// are fetched again) and the records file keeps its valid prefix.
fn sync_unsynced(p: &mut Partial) -> Result<(), BlobError> {
    if p.unsynced.is_empty() {
        return Ok(());
    }
    let ranges = std::mem::take(&mut p.unsynced);
    let at = p.ranges_len;
    let synced = p.file.sync().and_then(|()| {
        let mut records = Vec::with_capacity(ranges.len() * RECORD_LEN);
        for r in &ranges {
            records.extend_from_slice(&encode_record(r));
        }
        p.ranges
            .write_at(at, &records)
            .and_then(|()| p.ranges.sync())
            .map(|()| records.len() as u64)
    });
    match synced {
        Ok(n) => {
            p.ranges_len += n;
            Ok(())
        }
        Err(e) => {
            // Best effort: keep the record file's valid prefix clean for later appends.
            let _ = p.ranges.set_len(at);
            for r in ranges {
                p.present.remove(r);
            }
            Err(e.into())
        }
    }
}

/// The chunk groups of a stored blob that do not verify against its hash (windows of
/// [`VERIFY_WINDOW`] read whole, a failing window group by group), merged into runs.
fn damaged_groups(
    file: &dyn BlobFile,
    hash: &BlobHash,
    size: u64,
) -> Result<Vec<Range<u64>>, BlobError> {
    let mut window = Vec::new();
    let mut damaged = RangeSet::default();
    let mut at = 0;
    while at < size {
        let end = (at + VERIFY_WINDOW).min(size);
        match verify::read_verified(file, hash, size, at, end, &mut window) {
            Ok(()) => {}
            Err(BlobError::Corrupt { .. }) => {
                let mut g = at;
                while g < end {
                    let g_end = (g + GROUP_BYTES).min(size);
                    match verify::read_verified(file, hash, size, g, g_end, &mut window) {
                        Ok(()) => {}
                        Err(BlobError::Corrupt { .. }) => damaged.insert(g..g_end),
                        Err(e) => return Err(e),
                    }
                    g = g_end;
                }
            }
            Err(e) => return Err(e),
        }
        at = end;
    }
    Ok(damaged.ranges().to_vec())
}

/// Read a stored blob whole against its hash, a window at a time.
fn verify_file(file: &dyn BlobFile, hash: &BlobHash, size: u64) -> Result<(), BlobError> {
    let mut window = Vec::new();
    let mut at = 0;
    while at < size {
        let end = (at + VERIFY_WINDOW).min(size);
        verify::read_verified(file, hash, size, at, end, &mut window)?;
        at = end;
    }
    Ok(())
}

/// Read a partial blob's `.ranges` file (creating it if missing): its records up to the
/// first torn or bad one, the file cut there. Returns the file, its valid length, the
/// present ranges and whether the directory changed.
fn load_ranges(
    dir: &dyn BlobDir,
    name: &str,
    size: u64,
) -> io::Result<(Arc<dyn BlobFile>, u64, RangeSet, bool)> {
    let fresh = |dir: &dyn BlobDir| -> io::Result<(Arc<dyn BlobFile>, u64, RangeSet, bool)> {
        let file = dir.create(name)?;
        file.write_at(0, &RANGES_MAGIC)?;
        file.sync()?;
        Ok((file, RANGES_MAGIC.len() as u64, RangeSet::default(), true))
    };
    let file = match dir.open(name) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return fresh(dir),
        Err(e) => return Err(e),
    };
    let len = file.len()?;
    let mut magic = [0u8; 8];
    if len < magic.len() as u64 {
        return fresh(dir);
    }
    file.read_at(0, &mut magic)?;
    if magic != RANGES_MAGIC {
        return fresh(dir);
    }
    let mut present = RangeSet::default();
    let mut valid = magic.len() as u64;
    let mut buf = vec![0u8; RANGES_READ];
    'read: while valid + RECORD_LEN as u64 <= len {
        let n = usize::try_from(len - valid).map_or(RANGES_READ, |l| l.min(RANGES_READ))
            / RECORD_LEN
            * RECORD_LEN;
        file.read_at(valid, &mut buf[..n])?;
        for rec in buf[..n].chunks_exact(RECORD_LEN) {
            match decode_record(rec, size) {
                Some(r) => {
                    present.insert(r);
                    valid += RECORD_LEN as u64;
                }
                None => break 'read,
            }
        }
    }
    if valid != len {
        file.set_len(valid)?;
        file.sync()?;
    }
    Ok((file, valid, present, false))
}
