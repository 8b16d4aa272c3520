//! The DHT's record store, on disk: the home pointers this node publishes (one for each
//! record it hosts) and those other nodes put here.
//!
//! libp2p's `MemoryStore` keeps every record in memory and holds at most 1,024 of them. A
//! host of more records than that could not publish their pointers (a put is stored
//! locally first, and failed once the store was full), and its memory would grow by about
//! half a KiB for each record it hosts. [`DiskRecords`] keeps them in a sled database of
//! their own: the memory it takes is sled's cache ([`DHT_CACHE_BYTES`]), however many it
//! holds, up to [`MAX_DHT_RECORDS`] records of at most [`MAX_DHT_VALUE_BYTES`] each.
//!
//! Kademlia's own periodic jobs (re-putting every record held each hour, and collecting
//! them all in memory to do it) are turned off ([`super::service`]); the node republishes
//! the pointers of the records it hosts on its tick, a slice of them at a time.
//!
//! A stored record is `expires (u64, big-endian ms since the Unix epoch; u64::MAX for
//! none) | publisher length (u8) | publisher (peer id bytes) | value`, under the record's
//! key. It is a cache: a damaged one is dropped when read; nothing else depends on it.
//!
//! How many records are held is kept in a tree of its own (`meta`, key `count`, a
//! big-endian u64), written when the store is closed and taken out (durably) when it is
//! opened, so a store opened after a clean close does not count a million records one by
//! one, and one opened after a crash (no count found) counts them. Records' keys come from
//! other peers, so nothing of the store's own shares their tree.
//! Provider records are not used by cophr, and are kept in a small `MemoryStore`.

use std::borrow::Cow;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use libp2p::kad::store::{Error, MemoryStore, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use libp2p::PeerId;

/// Records the store holds at most: a put beyond it is refused.
pub const MAX_DHT_RECORDS: usize = 2_000_000;

/// The largest value stored (a home pointer is a few hundred bytes).
pub const MAX_DHT_VALUE_BYTES: usize = 16 * 1024;

/// The memory sled may use for its cache of the store.
pub const DHT_CACHE_BYTES: u64 = 16 << 20;

/// The DHT's records in a sled database (see the module docs).
pub struct DiskRecords {
    db: sled::Db,
    /// The store's own data (the count), apart from the records.
    meta: sled::Tree,
    /// Records held (kept as they are put and removed; counted at open).
    count: usize,
    providers: MemoryStore,
}

impl DiskRecords {
    /// Opens (creating) the store in `dir`, or, with `None`, a temporary one deleted when
    /// dropped.
    pub fn open(local: PeerId, dir: Option<&Path>) -> std::result::Result<Self, sled::Error> {
        let config = sled::Config::new().cache_capacity(DHT_CACHE_BYTES);
        let db = match dir {
            Some(d) => config.path(d).open()?,
            None => config.temporary(true).open()?,
        };
        let meta = db.open_tree("meta")?;
        let kept = meta
            .remove(COUNT_KEY)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .and_then(|b| usize::try_from(u64::from_be_bytes(b)).ok());
        let count = match kept {
            // Taken out durably before any put: a crash from now on leaves no count.
            Some(n) => {
                meta.flush()?;
                n
            }
            None => db.len(),
        };
        Ok(DiskRecords {
            db,
            meta,
            count,
            providers: MemoryStore::new(local),
        })
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Where the count of records is kept (in the `meta` tree).
const COUNT_KEY: &[u8] = b"count";

impl Drop for DiskRecords {
    /// Keeps the count for the next open (see the module docs).
    fn drop(&mut self) {
        let count = u64::try_from(self.count).unwrap_or(u64::MAX).to_be_bytes();
        if let Err(e) = self
            .meta
            .insert(COUNT_KEY, &count[..])
            .and_then(|_| self.db.flush())
        {
            tracing::warn!(error = %e, "could not keep the DHT store's count: it is counted at the next open");
        }
    }
}

impl std::fmt::Debug for DiskRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskRecords")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn encode(r: &Record) -> Vec<u8> {
    let expires = r.expires.map_or(u64::MAX, |at| {
        let left = at.saturating_duration_since(Instant::now());
        now_ms().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
    });
    let publisher = r.publisher.map(|p| p.to_bytes()).unwrap_or_default();
    let mut out = Vec::with_capacity(9 + publisher.len() + r.value.len());
    out.extend_from_slice(&expires.to_be_bytes());
    // A peer id's bytes are at most 66 (a multihash of at most 64).
    out.push(u8::try_from(publisher.len()).unwrap_or(0));
    if publisher.len() <= usize::from(u8::MAX) {
        out.extend_from_slice(&publisher);
    }
    out.extend_from_slice(&r.value);
    out
}

fn decode(key: &[u8], bytes: &[u8]) -> Option<Record> {
    let expires = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
    let n = usize::from(*bytes.get(8)?);
    let publisher = match n {
        0 => None,
        n => Some(PeerId::from_bytes(bytes.get(9..9 + n)?).ok()?),
    };
    let value = bytes.get(9 + n..)?.to_vec();
    let expires = (expires != u64::MAX).then(|| {
        let left = expires.saturating_sub(now_ms());
        Instant::now() + Duration::from_millis(left)
    });
    Some(Record {
        key: RecordKey::from(key.to_vec()),
        value,
        publisher,
        expires,
    })
}

impl RecordStore for DiskRecords {
    type RecordsIter<'a> = Box<dyn Iterator<Item = Cow<'a, Record>> + 'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, k: &RecordKey) -> Option<Cow<'_, Record>> {
        let bytes = match self.db.get(k.as_ref()) {
            Ok(b) => b?,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the DHT's record store");
                return None;
            }
        };
        decode(k.as_ref(), &bytes).map(Cow::Owned)
    }

    fn put(&mut self, r: Record) -> Result<()> {
        if r.value.len() > MAX_DHT_VALUE_BYTES {
            return Err(Error::ValueTooLarge);
        }
        let present = matches!(self.db.contains_key(r.key.as_ref()), Ok(true));
        if !present && self.count >= MAX_DHT_RECORDS {
            return Err(Error::MaxRecords);
        }
        match self.db.insert(r.key.as_ref(), encode(&r)) {
            Ok(old) => {
                if old.is_none() {
                    self.count += 1;
                }
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not write to the DHT's record store");
                // The nearest error libp2p has: the record is not stored.
                Err(Error::MaxRecords)
            }
        }
    }

    fn remove(&mut self, k: &RecordKey) {
        if let Ok(Some(_)) = self.db.remove(k.as_ref()) {
            self.count = self.count.saturating_sub(1);
        }
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        Box::new(self.db.iter().filter_map(|kv| {
            let (k, v) = kv.ok()?;
            decode(&k, &v).map(Cow::Owned)
        }))
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        self.providers.add_provider(record)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.providers.providers(key)
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.providers.provided()
    }

    fn remove_provider(&mut self, k: &RecordKey, p: &PeerId) {
        self.providers.remove_provider(k, p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32, value: &[u8]) -> Record {
        Record {
            key: RecordKey::new(&format!("/cophr/home/{n}")),
            value: value.to_vec(),
            publisher: Some(PeerId::random()),
            expires: Some(Instant::now() + Duration::from_secs(3600)),
        }
    }

    #[test]
    fn records_survive_a_reopen_with_their_publisher_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let me = PeerId::random();
        let r = record(1, b"pointer");
        {
            let mut s = DiskRecords::open(me, Some(dir.path())).unwrap();
            s.put(r.clone()).unwrap();
            s.put(record(2, b"other")).unwrap();
            s.remove(&record(2, b"").key);
            assert_eq!(s.len(), 1);
        }
        let s = DiskRecords::open(me, Some(dir.path())).unwrap();
        assert_eq!(s.len(), 1, "counted at open");
        let got = s.get(&r.key).unwrap().into_owned();
        assert_eq!(got.value, r.value);
        assert_eq!(got.publisher, r.publisher);
        let (a, b) = (got.expires.unwrap(), r.expires.unwrap());
        let apart = if a > b { a - b } else { b - a };
        assert!(apart < Duration::from_secs(2), "the expiry kept: {apart:?}");
        assert_eq!(s.records().count(), 1);
    }

    #[test]
    fn the_count_kept_at_close_is_read_at_open_and_a_crash_counts_again() {
        let dir = tempfile::tempdir().unwrap();
        let me = PeerId::random();
        {
            let mut s = DiskRecords::open(me, Some(dir.path())).unwrap();
            for n in 0..5 {
                s.put(record(n, b"p")).unwrap();
            }
        }
        // Closed cleanly: the count is kept, and read at open instead of counting. (Made
        // wrong on purpose here, to show it is the one read.)
        {
            let db = sled::open(dir.path()).unwrap();
            let meta = db.open_tree("meta").unwrap();
            assert_eq!(
                meta.get(COUNT_KEY).unwrap().as_deref(),
                Some(&5u64.to_be_bytes()[..])
            );
            meta.insert(COUNT_KEY, &7u64.to_be_bytes()[..]).unwrap();
            db.flush().unwrap();
        }
        {
            let s = DiskRecords::open(me, Some(dir.path())).unwrap();
            assert_eq!(s.len(), 7, "the kept count is read, not recounted");
            // Taken out at open (and flushed): a crash now would leave none.
            assert!(s.meta.get(COUNT_KEY).unwrap().is_none());
        }
        // As after a crash while open: the store on disk holds no count.
        {
            let db = sled::open(dir.path()).unwrap();
            db.open_tree("meta").unwrap().remove(COUNT_KEY).unwrap();
            db.flush().unwrap();
        }
        let s = DiskRecords::open(me, Some(dir.path())).unwrap();
        assert_eq!(s.len(), 5, "no count kept: the records are counted");
        assert_eq!(s.records().count(), 5);
    }

    #[test]
    fn more_than_memory_stores_1024_records_are_held_and_the_bounds_hold() {
        let mut s = DiskRecords::open(PeerId::random(), None).unwrap();
        for n in 0..3000 {
            s.put(record(n, b"p")).unwrap();
        }
        assert_eq!(s.len(), 3000);
        assert!(s.get(&record(2999, b"").key).is_some());
        // Putting one again replaces it, and is not counted twice.
        s.put(record(7, b"newer")).unwrap();
        assert_eq!(s.len(), 3000);
        assert_eq!(s.get(&record(7, b"").key).unwrap().value, b"newer");
        let huge = record(9999, &vec![0; MAX_DHT_VALUE_BYTES + 1]);
        assert!(matches!(s.put(huge), Err(Error::ValueTooLarge)));
        // Full: a new key is refused, an old one may still be replaced.
        s.count = MAX_DHT_RECORDS;
        assert!(matches!(s.put(record(5000, b"p")), Err(Error::MaxRecords)));
        s.put(record(8, b"again")).unwrap();
    }

    #[test]
    fn a_damaged_stored_record_reads_as_absent() {
        let mut s = DiskRecords::open(PeerId::random(), None).unwrap();
        let r = record(1, b"p");
        s.put(r.clone()).unwrap();
        s.db.insert(r.key.as_ref(), &[1u8, 2, 3][..]).unwrap();
        assert!(s.get(&r.key).is_none());
        assert_eq!(s.records().count(), 0);
        s.db.insert(
            r.key.as_ref(),
            &[0u8; 8].iter().chain(&[200u8]).copied().collect::<Vec<_>>()[..],
        )
        .unwrap();
        assert!(s.get(&r.key).is_none(), "a publisher longer than the bytes");
    }
}
