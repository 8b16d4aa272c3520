//! The structure of atomic batches: a begin marker, its frames, a commit marker.

use super::*;

/// An atomic batch being scanned.
#[derive(Debug, Clone, Copy)]
pub(super) struct OpenBatch {
    /// Offset of its begin marker.
    pub(super) begin: u64,
    /// Valid frames before it.
    pub(super) frames_before: u64,
    /// Frames it announced.
    pub(super) count: u32,
    /// Frames seen since its begin.
    pub(super) seen: u32,
}

/// Checks the batch markers' structure while frames are scanned in order.
#[derive(Debug, Default)]
pub(super) struct BatchCheck {
    pub(super) open: Option<OpenBatch>,
}

pub(super) fn marker_count(payload: Option<&[u8]>) -> Option<u32> {
    let bytes: [u8; 4] = payload?.try_into().ok()?;
    Some(u32::from_le_bytes(bytes))
}

impl BatchCheck {
    /// Takes the valid frame at `pos` (`payload` is given for markers); false if it is out
    /// of place.
    pub(super) fn step(
        &mut self,
        pos: u64,
        frames_before: u64,
        kind: u8,
        payload: Option<&[u8]>,
    ) -> bool {
        match (kind, self.open.as_mut()) {
            (KIND_BATCH_BEGIN, None) => match marker_count(payload) {
                Some(count) if count >= 1 => {
                    self.open = Some(OpenBatch {
                        begin: pos,
                        frames_before,
                        count,
                        seen: 0,
                    });
                    true
                }
                _ => false,
            },
            (KIND_BATCH_COMMIT, Some(open)) => {
                if open.seen == open.count && marker_count(payload) == Some(open.count) {
                    self.open = None;
                    true
                } else {
                    false
                }
            }
            (KIND_BATCH_BEGIN | KIND_BATCH_COMMIT, _) => false,
            (_, Some(open)) => {
                open.seen += 1;
                open.seen <= open.count
            }
            (_, None) => true,
        }
    }
}
