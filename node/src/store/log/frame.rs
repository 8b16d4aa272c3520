//! Frames: encoding, checking, and scanning a range of the log for them (with a bounded
//! search for the next valid frame after a bad one).

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::*;

pub(super) type SharedFile = Arc<Mutex<Box<dyn LogFile>>>;

pub(super) fn lock_file(file: &SharedFile) -> io::Result<MutexGuard<'_, Box<dyn LogFile>>> {
    file.lock()
        .map_err(|_| io::Error::other("log storage lock poisoned by a panic"))
}

/// Where a [`Log`] reads from.
#[derive(Clone)]
pub(super) enum Reader {
    Direct(Arc<dyn LogRead>),
    Locked(SharedFile),
}

pub(super) trait ReadAt {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl ReadAt for Reader {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        match self {
            Reader::Direct(r) => r.read_at(off, buf),
            Reader::Locked(f) => lock_file(f)?.read_at(off, buf),
        }
    }
}

impl<T: LogFile + ?Sized> ReadAt for &T {
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        LogFile::read_at(*self, off, buf)
    }
}

pub(super) fn frame_crc(kind: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    h.finalize()
}

pub(super) fn encode_into(out: &mut Vec<u8>, kind: u8, payload: &[u8]) -> Result<usize, LogError> {
    let too_large = || LogError::TooLarge {
        len: payload.len() as u64,
    };
    if payload.len() > MAX_PAYLOAD {
        return Err(too_large());
    }
    let len = u32::try_from(payload.len()).map_err(|_| too_large())?;
    out.extend_from_slice(&MAGIC_BYTES);
    out.push(kind);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&frame_crc(kind, payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(FRAME_HEADER_LEN + payload.len())
}

/// The parsed fixed part of a frame: (kind, payload length, crc), if magic and length are sane.
pub(super) fn parse_frame_header(h: &[u8]) -> Option<(u8, usize, u32)> {
    let h: &[u8; FRAME_HEADER_LEN] = h.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
    if h[..2] != MAGIC_BYTES {
        return None;
    }
    let len = u32::from_le_bytes([h[3], h[4], h[5], h[6]]) as usize;
    if len > MAX_PAYLOAD {
        return None;
    }
    Some((h[2], len, u32::from_le_bytes([h[7], h[8], h[9], h[10]])))
}

#[derive(Debug, Clone, Copy)]
pub(super) struct FrameInfo {
    pub(super) kind: u8,
    pub(super) len: usize,
    pub(super) next: u64,
}

pub(super) enum Resync {
    /// No valid frame follows.
    None,
    /// A valid frame starts at this offset.
    Found(u64),
    /// The search hit its work budget; valid frames may follow.
    GaveUp,
}

/// A read-ahead window over `[0, end)` of a source.
pub(super) struct Window<R> {
    pub(super) src: R,
    pub(super) end: u64,
    pub(super) chunk: usize,
    pub(super) start: u64,
    pub(super) buf: Vec<u8>,
    pub(super) hashed: u64,
}

impl<R: ReadAt> Window<R> {
    pub(super) fn new(src: R, end: u64, chunk: usize) -> Self {
        Window {
            src,
            end,
            chunk,
            start: 0,
            buf: Vec::new(),
            hashed: 0,
        }
    }

    /// The `n` bytes at `off`, which must lie inside `[0, end)`.
    pub(super) fn slice(&mut self, off: u64, n: usize) -> io::Result<&[u8]> {
        let want_end = off
            .checked_add(n as u64)
            .filter(|&e| e <= self.end)
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
        let cached = off >= self.start && want_end <= self.start + self.buf.len() as u64;
        if !cached {
            // `n <= end - off`, so this is at least `n`.
            let len = (n.max(self.chunk) as u64).min(self.end - off);
            let len = usize::try_from(len).unwrap_or(n);
            self.buf.clear();
            self.buf.resize(len, 0);
            if let Err(e) = self.src.read_at(off, &mut self.buf) {
                self.buf.clear();
                return Err(e);
            }
            self.start = off;
        }
        let s = usize::try_from(off - self.start).unwrap_or(usize::MAX);
        self.buf
            .get(s..s.saturating_add(n))
            .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))
    }

    /// The valid frame at `pos`, if there is one.
    pub(super) fn frame_at(&mut self, pos: u64) -> io::Result<Option<FrameInfo>> {
        if pos < HEADER_LEN || self.end.saturating_sub(pos) < FRAME_HEADER_LEN as u64 {
            return Ok(None);
        }
        let Some((kind, len, crc)) = parse_frame_header(self.slice(pos, FRAME_HEADER_LEN)?) else {
            return Ok(None);
        };
        let total = FRAME_HEADER_LEN + len;
        if self.end - pos < total as u64 {
            return Ok(None);
        }
        self.hashed = self.hashed.saturating_add(len as u64);
        let frame = self.slice(pos, total)?;
        if frame_crc(kind, &frame[FRAME_HEADER_LEN..]) != crc {
            return Ok(None);
        }
        Ok(Some(FrameInfo {
            kind,
            len,
            next: pos + total as u64,
        }))
    }

    /// Search `[from, end)` for the start of a valid frame.
    pub(super) fn find_frame_after(&mut self, from: u64) -> io::Result<Resync> {
        let budget_end = self.hashed.saturating_add(RESYNC_HASH_BUDGET);
        let mut p = from;
        while self.end.saturating_sub(p) >= FRAME_HEADER_LEN as u64 {
            let n =
                usize::try_from((self.end - p).min(self.chunk.max(4096) as u64)).unwrap_or(4096);
            let hit = self.slice(p, n)?.windows(2).position(|w| w == MAGIC_BYTES);
            match hit {
                Some(i) => {
                    let cand = p + i as u64;
                    if self.frame_at(cand)?.is_some() {
                        return Ok(Resync::Found(cand));
                    }
                    if self.hashed > budget_end {
                        return Ok(Resync::GaveUp);
                    }
                    p = cand + 1;
                }
                // The last byte may be the first half of a magic split across windows.
                None => p += (n - 1) as u64,
            }
        }
        Ok(Resync::None)
    }
}
