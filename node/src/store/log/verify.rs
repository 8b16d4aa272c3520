//! Verify (scan a live log and report bad regions) and repair (cut at the first bad frame).

use super::*;

/// One region of bad bytes found by [`Log::verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptRegion {
    /// Offset of the first bad frame of the region.
    pub offset: u64,
    /// Bytes up to the next valid frame (or the end of the log).
    pub len: u64,
}

/// The result of [`Log::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Valid frames.
    pub frames: u64,
    /// Bytes checked (the durable length of the log).
    pub bytes: u64,
    /// Bad regions, in order (at most the first 1000; see `corrupt_regions`).
    pub corrupt: Vec<CorruptRegion>,
    /// Number of bad regions found.
    pub corrupt_regions: u64,
}

impl VerifyReport {
    /// True when every frame checked out.
    pub fn is_ok(&self) -> bool {
        self.corrupt_regions == 0
    }
}

impl Log {
    /// Destructive repair for an operator: like [`Log::open`]'s recovery, but cut the log at
    /// its first bad frame even when valid frames follow (they are lost from this copy; take
    /// a copy of the file first and restore them from a replica). Do not use on storage a
    /// [`Log`] has open.
    pub fn repair(mut file: impl LogFile) -> Result<Recovery, LogError> {
        recover(&mut file, true, None)
    }

    /// Scan the whole durable log again, checking the header, every frame and the batch
    /// markers' structure, and report regions of bad frames (reading concurrently with
    /// appends): a marker out of place is reported as its frame, a batch without its commit
    /// as the bytes from its begin to the end.
    pub fn verify(&self) -> Result<VerifyReport, LogError> {
        let end = self.len();
        let mut head = [0u8; FILE_HEADER.len()];
        self.shared.reader.read_at(0, &mut head)?;
        if head != FILE_HEADER {
            return Err(LogError::BadHeader);
        }
        let mut w = Window::new(self.shared.reader.clone(), end, SCAN_CHUNK);
        let mut report = VerifyReport {
            frames: 0,
            bytes: end,
            corrupt: Vec::new(),
            corrupt_regions: 0,
        };
        let mut pos = HEADER_LEN;
        let mut batch = BatchCheck::default();
        let add = |report: &mut VerifyReport, offset: u64, len: u64| {
            report.corrupt_regions += 1;
            if report.corrupt.len() < MAX_REPORTED_REGIONS {
                report.corrupt.push(CorruptRegion { offset, len });
            }
        };
        while pos < end {
            match w.frame_at(pos)? {
                Some(f) => {
                    let marker = if is_batch_marker(f.kind) {
                        Some(w.slice(pos + FRAME_HEADER_LEN as u64, f.len)?.to_vec())
                    } else {
                        None
                    };
                    if !batch.step(pos, report.frames, f.kind, marker.as_deref()) {
                        // A marker out of place: the frame is reported, the check restarts.
                        add(&mut report, pos, f.next - pos);
                        batch = BatchCheck::default();
                    }
                    report.frames += 1;
                    pos = f.next;
                }
                None => {
                    let stop = match w.find_frame_after(pos + 1)? {
                        Resync::Found(next) => next,
                        Resync::None | Resync::GaveUp => end,
                    };
                    add(&mut report, pos, stop - pos);
                    batch = BatchCheck::default();
                    pos = stop;
                }
            }
        }
        if let Some(open) = batch.open {
            // The durable log only ever holds whole batches.
            add(&mut report, open.begin, end - open.begin);
        }
        Ok(report)
    }
}
