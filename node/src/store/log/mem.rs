//! [`MemLog`]: storage in memory that can simulate a crash, torn writes, corruption, a
//! failing fsync and a full disk.

use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::*;

#[derive(Debug, Default)]
pub(super) struct MemState {
    data: Vec<u8>,
    synced: usize,
    syncs: u64,
    fail_sync: bool,
    capacity: Option<u64>,
    sync_delay: Duration,
}

/// An in-memory [`LogFile`] for tests: clones share one buffer, which tracks the prefix that
/// was synced, so [`MemLog::crash`] can produce what a power loss would leave. It can also
/// inject failures (failed fsync, disk full) and slow fsyncs.
#[derive(Debug, Clone, Default)]
pub struct MemLog {
    pub(super) state: Arc<Mutex<MemState>>,
}

impl MemLog {
    /// An empty buffer.
    pub fn new() -> MemLog {
        MemLog::default()
    }

    /// A buffer holding `bytes`, all of them synced.
    pub fn from_bytes(bytes: Vec<u8>) -> MemLog {
        let synced = bytes.len();
        MemLog {
            state: Arc::new(Mutex::new(MemState {
                data: bytes,
                synced,
                ..MemState::default()
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every byte currently held, synced or not.
    pub fn bytes(&self) -> Vec<u8> {
        self.lock().data.clone()
    }

    /// Length of the synced prefix.
    pub fn synced_len(&self) -> u64 {
        self.lock().synced as u64
    }

    /// How many times `sync` was called (successful or not).
    pub fn sync_count(&self) -> u64 {
        self.lock().syncs
    }

    /// What survives a power loss now: the synced prefix only, as a new independent buffer.
    pub fn crash(&self) -> MemLog {
        self.crash_torn(0)
    }

    /// What survives a power loss that tore a write: the synced prefix plus the first
    /// `torn_tail` unsynced bytes (capped at what exists), as a new independent buffer.
    pub fn crash_torn(&self, torn_tail: u64) -> MemLog {
        let st = self.lock();
        let unsynced = (st.data.len() - st.synced) as u64;
        let keep = st.synced + usize::try_from(torn_tail.min(unsynced)).unwrap_or(0);
        MemLog::from_bytes(st.data[..keep].to_vec())
    }

    /// XOR the byte at `offset` with `xor` (simulated bit rot); no effect past the end.
    pub fn corrupt(&self, offset: u64, xor: u8) {
        let mut st = self.lock();
        if let Some(b) = usize::try_from(offset)
            .ok()
            .and_then(|i| st.data.get_mut(i))
        {
            *b ^= xor;
        }
    }

    /// Make every later `sync` fail (without syncing anything) while `fail` is true.
    pub fn set_fail_sync(&self, fail: bool) {
        self.lock().fail_sync = fail;
    }

    /// Limit the buffer to `capacity` bytes: an append beyond it writes what fits and fails
    /// with `StorageFull` (a full disk). `None` removes the limit.
    pub fn set_capacity(&self, capacity: Option<u64>) {
        self.lock().capacity = capacity;
    }

    /// Make every `sync` take at least `delay` (a slow disk).
    pub fn set_sync_delay(&self, delay: Duration) {
        self.lock().sync_delay = delay;
    }
}

pub(super) fn mem_read(st: &MemState, off: u64, buf: &mut [u8]) -> io::Result<()> {
    let src = usize::try_from(off)
        .ok()
        .and_then(|start| st.data.get(start..start.checked_add(buf.len())?))
        .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
    buf.copy_from_slice(src);
    Ok(())
}

pub(super) struct MemReader(Arc<Mutex<MemState>>);

impl LogRead for MemReader {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        mem_read(
            &self.0.lock().unwrap_or_else(PoisonError::into_inner),
            off,
            buf,
        )
    }
}

impl LogFile for MemLog {
    fn len(&self) -> io::Result<u64> {
        Ok(self.lock().data.len() as u64)
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        mem_read(&self.lock(), off, buf)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut st = self.lock();
        let room = match st.capacity {
            Some(cap) => {
                usize::try_from(cap.saturating_sub(st.data.len() as u64)).unwrap_or(usize::MAX)
            }
            None => usize::MAX,
        };
        if data.len() > room {
            st.data.extend_from_slice(&data[..room]);
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device (MemLog capacity)",
            ));
        }
        st.data.extend_from_slice(data);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let delay = self.lock().sync_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut st = self.lock();
        st.syncs += 1;
        if st.fail_sync {
            return Err(io::Error::other("injected fsync failure (MemLog)"));
        }
        st.synced = st.data.len();
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        let mut st = self.lock();
        st.data.resize(len, 0);
        st.synced = st.synced.min(len);
        Ok(())
    }
    fn reader(&self) -> Option<Arc<dyn LogRead>> {
        Some(Arc::new(MemReader(Arc::clone(&self.state))))
    }
}
