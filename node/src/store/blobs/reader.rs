//! [`BlobReader`]: a complete blob's bytes as a stream, checked a window at a time.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};
use std::sync::Arc;

use super::{verify, BlobFile, BlobHash, GROUP_BYTES};

/// Bytes checked and held at a time (whole chunk groups).
const READ_WINDOW: u64 = 256 << 10;

/// A reader of a complete blob ([`BlobStore::open_blob`](super::BlobStore::open_blob)).
/// Each window of 256 KiB is checked against the blob's hash before any of it
/// is returned; a damaged byte makes `read` fail with `InvalidData` carrying
/// [`BlobError::Corrupt`](super::BlobError::Corrupt). Memory is one window.
pub struct BlobReader {
    file: Arc<dyn BlobFile>,
    hash: BlobHash,
    size: u64,
    pos: u64,
    window_start: u64,
    window: Vec<u8>,
}

impl fmt::Debug for BlobReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlobReader")
            .field("hash", &self.hash)
            .field("size", &self.size)
            .field("pos", &self.pos)
            .finish()
    }
}

impl BlobReader {
    pub(super) fn new(file: Arc<dyn BlobFile>, hash: BlobHash, size: u64) -> BlobReader {
        BlobReader {
            file,
            hash,
            size,
            pos: 0,
            window_start: 0,
            window: Vec::new(),
        }
    }

    /// The blob's hash.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    /// The blob's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || buf.is_empty() {
            return Ok(0);
        }
        let in_window = self.pos >= self.window_start
            && self.pos < self.window_start + self.window.len() as u64;
        if !in_window {
            let start = self.pos - self.pos % GROUP_BYTES;
            let end = (start + READ_WINDOW).min(self.size);
            self.window.clear();
            self.window_start = start;
            verify::read_verified(
                &*self.file,
                &self.hash,
                self.size,
                start,
                end,
                &mut self.window,
            )
            .map_err(|e| {
                self.window.clear();
                e.into_io()
            })?;
        }
        let at = (self.pos - self.window_start) as usize;
        let n = buf.len().min(self.window.len() - at);
        buf[..n].copy_from_slice(&self.window[at..at + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the blob's start")
        })?;
        self.pos = target;
        Ok(target)
    }
}
