//! Room on the store's disk.
//!
//! A full disk must refuse writes cleanly: nothing half-written, nothing acknowledged that
//! is not durable, reads still answered, and writes again once space returns. Running into
//! `ENOSPC` is the wrong place to find out: the log copes (a torn frame is cut at the next
//! open), but the index (sled) makes any I/O error sticky until it is opened again. So the
//! store keeps a *reserve*: before it appends anything it asks the file system how much is
//! free ([`available`], `statvfs`), and refuses a write that would leave less than the
//! reserve ([`Room::Write`]). Audit events of reads may use most of the reserve
//! ([`Room::Audit`]: they are small, and a view that cannot be audited is not served), so
//! a patient can still read her record on a disk too full to take new entries. The index,
//! snapshots and derived files grow within the reserve.
//!
//! If the disk fills anyway (another program writing, or a reserve of 0), `ENOSPC` from
//! the log or the index is reported as [`super::StoreError::Full`], and an index that
//! failed refuses every later write ([`super::StoreError::IndexFailed`]) until the store is
//! opened again, which indexes what the log holds beyond it.

use std::io;
use std::path::Path;

/// Bytes kept free on the store's disk by default: writes stop before less is left.
pub const DEFAULT_DISK_RESERVE: u64 = 64 << 20;

/// What a write needs room for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// New entries, others' audit events, documents' bytes: the whole reserve stays free.
    Write,
    /// Only this node's audit event of a read: may use all but an eighth of the reserve.
    Audit,
}

impl Room {
    /// The bytes that must stay free after a write of this kind.
    pub fn margin(self, reserve: u64) -> u64 {
        match self {
            Room::Write => reserve,
            Room::Audit => reserve / 8,
        }
    }
}

/// Bytes free for an unprivileged writer on the file system holding `path`.
pub fn available(path: &Path) -> io::Result<u64> {
    let s = rustix::fs::statvfs(path)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Whether an I/O error means the disk (or the user's quota) is full.
pub fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull
        || e.kind() == io::ErrorKind::QuotaExceeded
        || e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
        || e.raw_os_error() == Some(rustix::io::Errno::DQUOT.raw_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_free_space_of_a_real_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available(dir.path()).unwrap() > 0);
        assert!(available(&dir.path().join("not-there")).is_err());
    }

    #[test]
    fn no_space_and_quota_errors_are_a_full_disk_and_others_are_not() {
        assert!(is_full(&io::Error::from(io::ErrorKind::StorageFull)));
        assert!(is_full(&io::Error::from_raw_os_error(
            rustix::io::Errno::NOSPC.raw_os_error()
        )));
        assert!(is_full(&io::Error::from_raw_os_error(
            rustix::io::Errno::DQUOT.raw_os_error()
        )));
        assert!(!is_full(&io::Error::from(io::ErrorKind::PermissionDenied)));
        assert!(!is_full(&io::Error::other("bad frame")));
    }

    #[test]
    fn a_read_audit_may_use_most_of_the_reserve() {
        assert_eq!(Room::Write.margin(64 << 20), 64 << 20);
        assert_eq!(Room::Audit.margin(64 << 20), 8 << 20);
        assert_eq!(Room::Audit.margin(0), 0);
    }
}
