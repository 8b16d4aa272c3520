//! [`MemDir`]: a blob directory in memory that can simulate a power loss, failed fsyncs
//! (of files or of the directory) and bit rot.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::{BlobDir, BlobFile};

/// One file's bytes: what is written, and what the last successful sync made durable.
#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    synced: Vec<u8>,
}

impl std::fmt::Debug for Inode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Lengths only, never the content.
        f.debug_struct("Inode")
            .field("len", &self.data.len())
            .field("synced_len", &self.synced.len())
            .finish()
    }
}

type Node = Arc<Mutex<Inode>>;

#[derive(Debug, Default)]
struct DirState {
    /// The names as the running system sees them.
    names: BTreeMap<String, Node>,
    /// The names as the last successful directory sync left them on "disk".
    durable: BTreeMap<String, Node>,
    fail_file_sync: bool,
    fail_dir_sync: bool,
    file_syncs: u64,
    dir_syncs: u64,
}

/// An in-memory [`BlobDir`] for tests. Clones share one directory. Both file contents and
/// names are durable only once synced (file sync, directory sync), so [`MemDir::crash`]
/// gives what a power loss would leave: the names of the last directory sync, each file with
/// the contents of its last file sync (a file never synced is empty).
#[derive(Debug, Clone, Default)]
pub struct MemDir {
    state: Arc<Mutex<DirState>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemDir {
    /// An empty directory.
    pub fn new() -> MemDir {
        MemDir::default()
    }

    /// What survives a power loss now, as a new independent directory.
    pub fn crash(&self) -> MemDir {
        let st = lock(&self.state);
        let mut names = BTreeMap::new();
        for (name, node) in &st.durable {
            let synced = lock(node).synced.clone();
            let inode = Inode {
                data: synced.clone(),
                synced,
            };
            names.insert(name.clone(), Arc::new(Mutex::new(inode)));
        }
        MemDir {
            state: Arc::new(Mutex::new(DirState {
                durable: names.clone(),
                names,
                ..DirState::default()
            })),
        }
    }

    /// XOR the byte at `offset` of file `name` with `xor`, on "disk" too (bit rot). False if
    /// there is no such file or byte.
    pub fn corrupt(&self, name: &str, offset: u64, xor: u8) -> bool {
        let st = lock(&self.state);
        let Some(node) = st.names.get(name) else {
            return false;
        };
        let mut inode = lock(node);
        let Ok(i) = usize::try_from(offset) else {
            return false;
        };
        let mut hit = false;
        if let Some(b) = inode.data.get_mut(i) {
            *b ^= xor;
            hit = true;
        }
        if let Some(b) = inode.synced.get_mut(i) {
            *b ^= xor;
        }
        hit
    }

    /// Every byte of file `name` as written (synced or not), if it exists.
    pub fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        let st = lock(&self.state);
        st.names.get(name).map(|node| lock(node).data.clone())
    }

    /// The names the running system sees.
    pub fn names(&self) -> Vec<String> {
        lock(&self.state).names.keys().cloned().collect()
    }

    /// Make every later file sync fail (syncing nothing) while `fail` is true.
    pub fn set_fail_file_sync(&self, fail: bool) {
        lock(&self.state).fail_file_sync = fail;
    }

    /// Make every later directory sync fail (syncing nothing) while `fail` is true.
    pub fn set_fail_dir_sync(&self, fail: bool) {
        lock(&self.state).fail_dir_sync = fail;
    }

    /// How many file syncs and directory syncs were asked for (successful or not).
    pub fn sync_counts(&self) -> (u64, u64) {
        let st = lock(&self.state);
        (st.file_syncs, st.dir_syncs)
    }

    fn file(&self, node: Node) -> Arc<dyn BlobFile> {
        Arc::new(MemFile {
            node,
            dir: Arc::clone(&self.state),
        })
    }
}

impl BlobDir for MemDir {
    fn create(&self, name: &str) -> io::Result<Arc<dyn BlobFile>> {
        let node: Node = Arc::default();
        lock(&self.state)
            .names
            .insert(name.to_string(), Arc::clone(&node));
        Ok(self.file(node))
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn BlobFile>> {
        let node = lock(&self.state)
            .names
            .get(name)
            .cloned()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(self.file(node))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut st = lock(&self.state);
        let node = st
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        st.names.insert(to.to_string(), node);
        Ok(())
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        lock(&self.state)
            .names
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(self.names())
    }
    fn sync(&self) -> io::Result<()> {
        let mut st = lock(&self.state);
        st.dir_syncs += 1;
        if st.fail_dir_sync {
            return Err(io::Error::other(
                "injected directory fsync failure (MemDir)",
            ));
        }
        st.durable = st.names.clone();
        Ok(())
    }
}

#[derive(Debug)]
struct MemFile {
    node: Node,
    dir: Arc<Mutex<DirState>>,
}

impl BlobFile for MemFile {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.node).data.len() as u64)
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        let inode = lock(&self.node);
        let src = usize::try_from(off)
            .ok()
            .and_then(|start| inode.data.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        let start = usize::try_from(off)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let end = start
            .checked_add(data.len())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let mut inode = lock(&self.node);
        if inode.data.len() < end {
            inode.data.resize(end, 0);
        }
        inode.data[start..end].copy_from_slice(data);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        lock(&self.node).data.resize(len, 0);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        {
            let mut st = lock(&self.dir);
            st.file_syncs += 1;
            if st.fail_file_sync {
                return Err(io::Error::other("injected file fsync failure (MemDir)"));
            }
        }
        let mut inode = lock(&self.node);
        inode.synced = inode.data.clone();
        Ok(())
    }
}
