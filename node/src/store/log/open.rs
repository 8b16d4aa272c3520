//! Opening a log: checking the header, scanning every frame, cutting off a torn tail, and
//! starting the writer thread.

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use super::*;

/// Options for [`Log::open_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// fsync after every frame instead of once per group of queued appends (group commit).
    /// Slower; exists to measure what group commit gains.
    pub sync_each: bool,
    /// An offset up to which the log was checked before, at the end of a frame this
    /// node wrote (the index's applied position; never an offset from elsewhere):
    /// only the frames after it are scanned, so opening costs the tail, not the whole
    /// history. Falls back to scanning every frame when anything there is wrong (not a
    /// frame boundary, past the end, a bad or torn frame, an unfinished batch). Damage to
    /// frames before it is then found when they are read (every read checks the frame's
    /// CRC and the entry's hash) or by [`Log::verify`], not at open.
    pub scan_from: Option<u64>,
}

/// What [`Log::open`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Valid frames in the log.
    pub frames: u64,
    /// Length of the log after recovery (file header plus valid frames).
    pub valid_len: u64,
    /// Bytes of torn or corrupt tail that were cut off (0 after a clean shutdown). Only
    /// unacknowledged writes leave a torn tail, unless the last frame was damaged on disk.
    pub truncated_bytes: u64,
    /// Where the scan started: the end of the file header, or [`LogOptions::scan_from`]
    /// when that was used ([`Recovery::frames`] then counts the frames after it).
    pub scanned_from: u64,
}

/// Check the header (creating it on empty storage), scan all frames (or those after
/// `scan_from`, see [`LogOptions::scan_from`]) and cut off a bad tail. With `repair`, cut
/// at the first bad frame even when valid frames follow it.
pub(super) fn recover(
    file: &mut dyn LogFile,
    repair: bool,
    scan_from: Option<u64>,
) -> Result<Recovery, LogError> {
    let len = file.len()?;
    if let Some(fresh) = check_header(file, len)? {
        return Ok(fresh);
    }
    if let Some(from) = scan_from.filter(|f| *f > HEADER_LEN && *f <= len && !repair) {
        match scan(file, from, len, false) {
            Ok((frames, None)) => {
                return Ok(Recovery {
                    frames,
                    valid_len: len,
                    truncated_bytes: 0,
                    scanned_from: from,
                })
            }
            _ => tracing::info!(
                from,
                "log: the tail after the index's position is not clean; scanning every frame"
            ),
        }
    }
    let (frames, cut) = scan(file, HEADER_LEN, len, repair)?;
    let valid_len = cut.unwrap_or(len);
    let truncated_bytes = len - valid_len;
    if truncated_bytes > 0 {
        tracing::warn!(
            valid_len,
            truncated_bytes,
            repair,
            "log: cutting off a torn or corrupt tail"
        );
        file.truncate(valid_len)?;
        file.sync()?;
    }
    Ok(Recovery {
        frames,
        valid_len,
        truncated_bytes,
        scanned_from: HEADER_LEN,
    })
}

/// Checks the file header of storage `len` bytes long. Storage shorter than a header (empty,
/// or a header whose creation was torn) gets a new header: the recovery of an empty log is
/// returned. `None` when a whole, right header is there.
fn check_header(file: &mut dyn LogFile, len: u64) -> Result<Option<Recovery>, LogError> {
    if len < HEADER_LEN {
        let mut head = vec![0u8; len as usize];
        file.read_at(0, &mut head)?;
        if head[..] != FILE_HEADER[..head.len()] {
            return Err(LogError::BadHeader);
        }
        if len > 0 {
            file.truncate(0)?;
        }
        file.append(&FILE_HEADER)?;
        file.sync()?;
        return Ok(Some(Recovery {
            frames: 0,
            valid_len: HEADER_LEN,
            truncated_bytes: len,
            scanned_from: HEADER_LEN,
        }));
    }
    let mut head = [0u8; FILE_HEADER.len()];
    file.read_at(0, &mut head)?;
    if head != FILE_HEADER {
        return Err(LogError::BadHeader);
    }
    Ok(None)
}

/// Scans every frame from `start` (the end of the header, or a frame boundary known to
/// be outside any batch): the valid frames kept, and where to cut (`None` to keep
/// everything). A bad frame is a tail to cut unless valid frames follow it, which is
/// [`LogError::Corrupt`] (without `repair`); a batch without its commit is cut whole.
fn scan(
    file: &dyn LogFile,
    start: u64,
    len: u64,
    repair: bool,
) -> Result<(u64, Option<u64>), LogError> {
    let mut w = Window::new(file, len, SCAN_CHUNK);
    let mut pos = start;
    let mut frames = 0u64;
    let mut batch = BatchCheck::default();
    let bad_at = loop {
        if pos >= len {
            break None;
        }
        match w.frame_at(pos)? {
            Some(f) => {
                let marker = if is_batch_marker(f.kind) {
                    Some(w.slice(pos + FRAME_HEADER_LEN as u64, f.len)?.to_vec())
                } else {
                    None
                };
                if !batch.step(pos, frames, f.kind, marker.as_deref()) {
                    break Some(pos);
                }
                frames += 1;
                pos = f.next;
            }
            None => break Some(pos),
        }
    };
    if let Some(bad) = bad_at {
        if !repair {
            match w.find_frame_after(bad + 1)? {
                Resync::None => {}
                Resync::Found(_) | Resync::GaveUp => {
                    return Err(LogError::Corrupt { offset: bad });
                }
            }
        }
    }
    // A batch whose commit is not there was never acknowledged: cut it off whole.
    Ok(match batch.open {
        Some(open) => (open.frames_before, Some(open.begin)),
        None => (frames, bad_at),
    })
}

impl Log {
    /// Open a log on `file` with default options (group commit): check the header (writing it
    /// on empty storage), scan every frame (see [`LogOptions::scan_from`]), cut off a torn
    /// tail, and start the writer thread.
    /// A bad frame followed by valid frames is [`LogError::Corrupt`] and nothing is changed.
    pub fn open(file: impl LogFile + 'static) -> Result<(Log, Recovery), LogError> {
        Log::open_with(file, LogOptions::default())
    }

    /// [`Log::open`] with options.
    pub fn open_with(
        file: impl LogFile + 'static,
        options: LogOptions,
    ) -> Result<(Log, Recovery), LogError> {
        let mut file: Box<dyn LogFile> = Box::new(file);
        let recovery = recover(&mut *file, false, options.scan_from)?;
        let direct = file.reader();
        let file: SharedFile = Arc::new(Mutex::new(file));
        let reader = match direct {
            Some(r) => Reader::Direct(r),
            None => Reader::Locked(Arc::clone(&file)),
        };
        let core = Arc::new(Core {
            durable_len: AtomicU64::new(recovery.valid_len),
            poison: OnceLock::new(),
        });
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let writer = Writer {
            file,
            core: Arc::clone(&core),
            len: recovery.valid_len,
            sync_each: options.sync_each,
        };
        let handle = std::thread::Builder::new()
            .name("cophr-log-writer".into())
            .spawn(move || writer.run(rx))?;
        let log = Log {
            shared: Arc::new(Shared {
                tx: Some(tx),
                core,
                reader,
                budget: Budget {
                    used: Mutex::new(0),
                    freed: Condvar::new(),
                },
                writer: Some(handle),
            }),
        };
        Ok((log, recovery))
    }

    /// Open (creating if missing) the log file at `path` with default options.
    pub fn open_path(path: impl AsRef<Path>) -> Result<(Log, Recovery), LogError> {
        Log::open(FileLog::open(path)?)
    }

    /// Open (creating if missing) the log file at `path` with options.
    pub fn open_path_with(
        path: impl AsRef<Path>,
        options: LogOptions,
    ) -> Result<(Log, Recovery), LogError> {
        Log::open_with(FileLog::open(path)?, options)
    }
}
