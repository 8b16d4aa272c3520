//! The storage under a blob store: the [`BlobDir`] and [`BlobFile`] traits and [`FsDir`], a
//! real directory.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A flat directory of files under a [`BlobStore`](super::BlobStore): a real one
/// ([`FsDir`]) or memory ([`MemDir`](super::MemDir), for crash tests). Names are the store's
/// own (hex digits, dots, dashes), never a path.
pub trait BlobDir: Send + Sync + fmt::Debug {
    /// Create `name` empty, replacing a file of that name.
    fn create(&self, name: &str) -> io::Result<Arc<dyn BlobFile>>;
    /// Open the existing `name` for reading and writing (`NotFound` if it does not exist).
    fn open(&self, name: &str) -> io::Result<Arc<dyn BlobFile>>;
    /// Rename `from` to `to`, replacing `to`, atomically. Durable after [`BlobDir::sync`].
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Remove `name` (`NotFound` if it does not exist). Durable after [`BlobDir::sync`].
    fn remove(&self, name: &str) -> io::Result<()>;
    /// The names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Make creations, renames and removals durable (fsync of the directory).
    fn sync(&self) -> io::Result<()>;
}

/// One file of a [`BlobDir`]: positional reads and writes, shared between threads.
pub trait BlobFile: Send + Sync + fmt::Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// True when the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Fill `buf` with the bytes at `off`; `UnexpectedEof` if they do not all exist.
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Write all of `data` at `off`, growing the file if needed (a gap reads as zeros).
    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()>;
    /// Cut or extend the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Make the file's contents durable (fsync).
    fn sync(&self) -> io::Result<()>;
}

/// A [`BlobDir`] on a real directory; file syncs are `sync_all`, directory syncs fsync the
/// directory itself.
#[derive(Debug, Clone)]
pub struct FsDir {
    path: PathBuf,
}

impl FsDir {
    /// Use the directory `path`, creating it (and its parents) if missing.
    pub fn open(path: impl AsRef<Path>) -> io::Result<FsDir> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path)?;
        Ok(FsDir { path })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn join(&self, name: &str) -> io::Result<PathBuf> {
        if name.is_empty() || name.contains(['/', '\\']) || name == "." || name == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a blob store file name",
            ));
        }
        Ok(self.path.join(name))
    }
}

impl BlobDir for FsDir {
    fn create(&self, name: &str) -> io::Result<Arc<dyn BlobFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.join(name)?)?;
        Ok(Arc::new(FsFile(file)))
    }
    fn open(&self, name: &str) -> io::Result<Arc<dyn BlobFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.join(name)?)?;
        Ok(Arc::new(FsFile(file)))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.join(from)?, self.join(to)?)
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.join(name)?)
    }
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.path)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }
    fn sync(&self) -> io::Result<()> {
        #[cfg(unix)]
        File::open(&self.path)?.sync_all()?;
        Ok(())
    }
}

#[derive(Debug)]
struct FsFile(File);

impl BlobFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        pread_exact(&self.0, off, buf)
    }
    fn write_at(&self, off: u64, data: &[u8]) -> io::Result<()> {
        pwrite_all(&self.0, off, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_all()
    }
}

#[cfg(unix)]
fn pread_exact(file: &File, off: u64, buf: &mut [u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, off)
}

#[cfg(unix)]
fn pwrite_all(file: &File, off: u64, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(data, off)
}

#[cfg(windows)]
fn pread_exact(file: &File, mut off: u64, mut buf: &mut [u8]) -> io::Result<()> {
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

#[cfg(windows)]
fn pwrite_all(file: &File, mut off: u64, mut data: &[u8]) -> io::Result<()> {
    use std::os::windows::fs::FileExt;
    while !data.is_empty() {
        match file.seek_write(data, off) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(not(any(unix, windows)))]
fn pread_exact(_file: &File, _off: u64, _buf: &mut [u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "positional reads are not supported on this platform",
    ))
}

#[cfg(not(any(unix, windows)))]
fn pwrite_all(_file: &File, _off: u64, _data: &[u8]) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "positional writes are not supported on this platform",
    ))
}
