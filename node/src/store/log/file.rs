//! The storage under a log: the [`LogFile`] trait and [`FileLog`], a real file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// Byte storage under a [`Log`](super::Log): a real file ([`FileLog`]) or memory
/// ([`MemLog`](super::MemLog), for crash tests).
pub trait LogFile: Send {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the storage holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fill `buf` with the bytes at `off`; an error (`UnexpectedEof`) if they do not all exist.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Append `data` at the end. On error, part of `data` may have been appended.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Make everything appended (and any truncation) durable.
    fn sync(&mut self) -> io::Result<()>;
    /// Cut the storage to `len` bytes.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// A handle that reads concurrently with appends and syncs, if the storage has one.
    /// Without it, reads wait for the writer (including its fsync).
    fn reader(&self) -> Option<Arc<dyn LogRead>> {
        None
    }
}

/// Positional reads that may run concurrently with a [`LogFile`]'s writes.
pub trait LogRead: Send + Sync {
    /// Fill `buf` with the bytes at `off`; an error if they do not all exist.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
}

// ---------------------------------------------------------------------------------------------
// FileLog

/// A [`LogFile`] on a real file, opened for reading and appending; `sync` is `sync_data`
/// (fdatasync).
#[derive(Debug)]
pub struct FileLog {
    file: Arc<File>,
}

impl FileLog {
    /// Open `path`, creating it if missing. When the file is new (or empty) its directory is
    /// fsync'd too, so the file itself survives a power loss.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FileLog> {
        let path = path.as_ref();
        let mut opts = OpenOptions::new();
        opts.read(true).append(true);
        let (file, created) = match opts.clone().create_new(true).open(path) {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (opts.open(path)?, false),
            Err(e) => return Err(e),
        };
        if created || file.metadata()?.len() == 0 {
            sync_parent_dir(path)?;
        }
        Ok(FileLog {
            file: Arc::new(file),
        })
    }
}

pub(super) fn sync_parent_dir(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

#[cfg(unix)]
pub(super) fn pread_exact(file: &File, off: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, off)
}

#[cfg(windows)]
pub(super) fn pread_exact(file: &File, mut off: u64, mut buf: &mut [u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !buf.is_empty() {
        match file.seek_read(buf, off) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
pub(super) fn pread_exact(_file: &File, _off: u64, _buf: &mut [u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "positional reads are not supported on this platform",
    ))
}

pub(super) struct FileReader(Arc<File>);

impl LogRead for FileReader {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        pread_exact(&self.0, off, buf)
    }
}

impl LogFile for FileLog {
    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        pread_exact(&self.file, off, buf)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        (&*self.file).write_all(data)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn reader(&self) -> Option<Arc<dyn LogRead>> {
        Some(Arc::new(FileReader(Arc::clone(&self.file))))
    }
}
