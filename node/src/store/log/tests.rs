//! The log's tests: round trips, group commit, crashes at every byte, corruption, repair,
//! failing storage.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

fn random_payload(rng: &mut ChaCha8Rng, max: u32) -> Vec<u8> {
    let mut p = vec![0u8; (rng.next_u32() % (max + 1)) as usize];
    rng.fill_bytes(&mut p);
    p
}

fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    encode_into(&mut v, kind, payload).unwrap();
    v
}

fn all_frames(log: &Log) -> Vec<(u64, u8, Vec<u8>)> {
    log.iter_from(0).collect::<Result<_, _>>().unwrap()
}

#[test]
fn log_handle_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Log>();
    fn check_send<T: Send>() {}
    check_send::<LogIter>();
}

#[test]
fn round_trip_in_memory() {
    let mem = MemLog::new();
    let (log, rec) = Log::open(mem.clone()).unwrap();
    assert_eq!(
        rec,
        Recovery {
            frames: 0,
            valid_len: HEADER_LEN,
            truncated_bytes: 0,
            scanned_from: HEADER_LEN,
        }
    );
    assert!(log.is_empty());
    let a = log.append(1, b"hello").unwrap();
    let b = log.append(2, b"").unwrap();
    let c = log.append_batch(&[(3, b"x"), (4, b"yz")]).unwrap();
    assert_eq!(a, HEADER_LEN);
    assert_eq!(b, a + FRAME_HEADER_LEN as u64 + 5);
    assert_eq!(log.read(a).unwrap(), (1, b"hello".to_vec()));
    assert_eq!(log.read(b).unwrap(), (2, Vec::new()));
    assert_eq!(log.read(c[1]).unwrap(), (4, b"yz".to_vec()));
    assert_eq!(log.len(), mem.bytes().len() as u64);
    assert_eq!(log.len(), mem.synced_len());
    assert!(!log.is_empty());
    let frames = all_frames(&log);
    assert_eq!(frames.len(), 4);
    assert_eq!(frames[2], (c[0], 3, b"x".to_vec()));
    assert_eq!(log.iter_from(c[0]).count(), 2);
    assert_eq!(log.iter_from(log.len()).count(), 0);
    assert!(matches!(
        log.iter_from(log.len() + 1).next(),
        Some(Err(LogError::OutOfRange { .. }))
    ));
    let report = log.verify().unwrap();
    assert!(report.is_ok());
    assert_eq!(report.frames, 4);
    assert_eq!(mem.bytes()[..8], FILE_HEADER);
    assert_eq!(mem.bytes()[8..10], [0xFE, 0xC0]);

    drop(log);
    let (log, rec) = Log::open(mem.crash()).unwrap();
    assert_eq!(rec.frames, 4);
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(all_frames(&log), frames);
}

#[test]
fn file_log_round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("entries.log");
    let (log, _) = Log::open_path(&path).unwrap();
    let offsets: Vec<u64> = (0..50u8)
        .map(|i| log.append(i, &vec![i; usize::from(i) * 7]).unwrap())
        .collect();
    for (i, off) in offsets.iter().enumerate() {
        let i = i as u8;
        assert_eq!(log.read(*off).unwrap(), (i, vec![i; usize::from(i) * 7]));
    }
    let len = log.len();
    drop(log);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    let (log, rec) = Log::open_path(&path).unwrap();
    assert_eq!(rec.frames, 50);
    assert_eq!(rec.valid_len, len);
    assert_eq!(log.read(offsets[49]).unwrap().1, vec![49; 343]);
    assert!(log.verify().unwrap().is_ok());
}

#[test]
fn group_commit_from_eight_threads() {
    let mem = MemLog::new();
    // A slow disk makes appenders queue up behind the fsync in progress.
    mem.set_sync_delay(Duration::from_micros(500));
    let (log, _) = Log::open(mem.clone()).unwrap();
    let results: Vec<Vec<(u64, u8, Vec<u8>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8u8)
            .map(|t| {
                let log = log.clone();
                s.spawn(move || {
                    (0..200u32)
                        .map(|i| {
                            let p = format!("thread {t} entry {i}").into_bytes();
                            (log.append(t, &p).unwrap(), t, p)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seen = HashSet::new();
    for (off, kind, p) in results.iter().flatten() {
        assert!(seen.insert(*off), "offset {off} handed out twice");
        assert_eq!(log.read(*off).unwrap(), (*kind, p.clone()));
    }
    assert_eq!(seen.len(), 1600);
    assert_eq!(all_frames(&log).len(), 1600);
    // Each thread's appends are in its program order.
    for r in &results {
        assert!(r.windows(2).all(|w| w[0].0 < w[1].0));
    }
    // Fsyncs were shared: one at open plus fewer than one per append.
    assert!(mem.sync_count() < 1600, "syncs: {}", mem.sync_count());
}

#[test]
fn append_batch_uses_one_fsync() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let before = mem.sync_count();
    let payloads: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
    let items: Vec<(u8, &[u8])> = payloads.iter().map(|p| (9, p.as_slice())).collect();
    let offsets = log.append_batch(&items).unwrap();
    assert_eq!(mem.sync_count(), before + 1);
    assert_eq!(offsets.len(), 100);
    for (off, p) in offsets.iter().zip(&payloads) {
        assert_eq!(log.read(*off).unwrap(), (9, p.clone()));
    }
    assert!(log.append_batch(&[]).unwrap().is_empty());
}

#[test]
fn sync_each_fsyncs_every_frame() {
    let mem = MemLog::new();
    let (log, _) = Log::open_with(
        mem.clone(),
        LogOptions {
            sync_each: true,
            ..Default::default()
        },
    )
    .unwrap();
    let before = mem.sync_count();
    let a = log.append(1, b"a").unwrap();
    let bc = log.append_batch(&[(2, b"b"), (3, b"c")]).unwrap();
    assert_eq!(mem.sync_count(), before + 3);
    assert_eq!(log.read(a).unwrap(), (1, b"a".to_vec()));
    assert_eq!(log.read(bc[1]).unwrap(), (3, b"c".to_vec()));
    assert_eq!(log.len(), mem.synced_len());
}

#[test]
fn torn_tail_is_truncated_and_every_ack_survives() {
    let mut rng = ChaCha8Rng::seed_from_u64(0xC0FE);
    let (mut truncated, mut unacked_kept) = (0, 0);
    for iteration in 0..200 {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let mut acked = Vec::new();
        for _ in 0..1 + rng.next_u32() % 8 {
            let kind = (rng.next_u32() % 0xFE) as u8;
            let p = random_payload(&mut rng, 300);
            acked.push((log.append(kind, &p).unwrap(), kind, p));
        }
        // Writes in flight when the power goes: written, never fsync'd, never acked.
        mem.set_fail_sync(true);
        let pending: Vec<(u8, Vec<u8>)> = (0..1 + rng.next_u32() % 4)
            .map(|_| ((rng.next_u32() % 0xFE) as u8, random_payload(&mut rng, 300)))
            .collect();
        let items: Vec<(u8, &[u8])> = pending.iter().map(|(k, p)| (*k, &p[..])).collect();
        assert!(log.append_batch(&items).is_err());
        drop(log);
        let durable = mem.synced_len();
        let unsynced = mem.bytes().len() as u64 - durable;
        let crashed = if iteration % 4 == 3 {
            // Some file systems leave garbage rather than a prefix of what was written.
            let mut bytes = mem.crash().bytes();
            let garbage = random_payload(&mut rng, 64);
            bytes.extend_from_slice(&garbage);
            MemLog::from_bytes(bytes)
        } else {
            mem.crash_torn(rng.next_u64() % (unsynced + 1))
        };
        let crashed_len = crashed.bytes().len() as u64;

        let (log, rec) = Log::open(crashed.clone()).unwrap();
        assert_eq!(rec.valid_len + rec.truncated_bytes, crashed_len);
        assert_eq!(crashed.bytes().len() as u64, rec.valid_len);
        assert!(rec.valid_len >= durable);
        for (off, kind, p) in &acked {
            assert_eq!(log.read(*off).unwrap(), (*kind, p.clone()));
        }
        let frames = all_frames(&log);
        assert_eq!(frames.len() as u64, rec.frames);
        assert!(frames.len() >= acked.len() && frames.len() <= acked.len() + pending.len());
        truncated += usize::from(rec.truncated_bytes > 0);
        unacked_kept += usize::from(frames.len() > acked.len());
        for (i, (_, kind, p)) in frames.iter().enumerate() {
            let (k, q) = match acked.get(i) {
                Some((_, k, q)) => (k, q),
                None => {
                    let (k, q) = &pending[i - acked.len()];
                    (k, q)
                }
            };
            assert_eq!((kind, p), (k, q));
        }
        // The recovered log takes appends and reopens cleanly.
        let off = log.append(7, b"after").unwrap();
        drop(log);
        let (log, rec) = Log::open(crashed.crash()).unwrap();
        assert_eq!(rec.truncated_bytes, 0);
        assert_eq!(log.read(off).unwrap(), (7, b"after".to_vec()));
    }
    // The seeded tears cover both cases: cut tails, and whole unacked frames that made it.
    assert!(truncated > 100, "{truncated}");
    assert!(unacked_kept > 10, "{unacked_kept}");
}

#[test]
fn unsynced_data_is_lost_but_acked_data_never_is() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let a = log.append(1, b"acked").unwrap();
    mem.set_fail_sync(true);
    assert!(matches!(
        log.append(2, b"never acked"),
        Err(LogError::Io(_))
    ));
    assert!(mem.bytes().len() as u64 > mem.synced_len());
    let (log2, rec) = Log::open(mem.crash()).unwrap();
    assert_eq!(rec.frames, 1);
    assert_eq!(log2.read(a).unwrap(), (1, b"acked".to_vec()));
    assert_eq!(all_frames(&log2).len(), 1);
}

#[test]
fn acks_survive_crashes_taken_during_concurrent_appends() {
    let mem = MemLog::new();
    mem.set_sync_delay(Duration::from_micros(200));
    let (log, _) = Log::open(mem.clone()).unwrap();
    let acks = Mutex::new(Vec::new());
    let mut snapshots = Vec::new();
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let (log, acks) = (log.clone(), &acks);
            s.spawn(move || {
                for i in 0..150u32 {
                    let p = format!("{t}/{i}").into_bytes();
                    let off = log.append(t, &p).unwrap();
                    acks.lock().unwrap().push((off, t, p));
                }
            });
        }
        for n in 0..20u64 {
            std::thread::sleep(Duration::from_millis(2));
            // Acks read *before* the crash must all be in it.
            let acked_before = acks.lock().unwrap().clone();
            snapshots.push((acked_before, mem.crash_torn(n * 37)));
        }
    });
    for (acked, crashed) in snapshots {
        let (log, _) = Log::open(crashed).unwrap();
        for (off, kind, p) in acked {
            assert_eq!(log.read(off).unwrap(), (kind, p));
        }
    }
}

fn ten_frames() -> (MemLog, Vec<u64>) {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let offsets = (0..10u8)
        .map(|i| log.append(i, &[i; 100]).unwrap())
        .collect();
    (mem, offsets)
}

#[test]
fn corruption_in_the_middle_is_reported_not_truncated() {
    let (mem, offsets) = ten_frames();
    let bytes = mem.bytes();
    let f3 = offsets[3];
    // magic, kind, each len byte, crc, payload
    for delta in [0u64, 1, 2, 3, 4, 5, 6, 7, 11, 60] {
        for xor in [0x01u8, 0x80, 0xFF] {
            let bad = MemLog::from_bytes(bytes.clone());
            bad.corrupt(f3 + delta, xor);
            let before = bad.bytes();
            match Log::open(bad.clone()) {
                Err(LogError::Corrupt { offset }) => assert_eq!(offset, f3),
                other => panic!("delta {delta} xor {xor:#x}: {other:?}"),
            }
            assert_eq!(
                bad.bytes(),
                before,
                "a refused open must not change the file"
            );
        }
    }
    // Operator repair cuts at the first bad frame.
    let bad = MemLog::from_bytes(bytes.clone());
    bad.corrupt(f3 + 40, 0x10);
    let rec = Log::repair(bad.clone()).unwrap();
    assert_eq!(rec.frames, 3);
    assert_eq!(rec.valid_len, f3);
    assert_eq!(rec.truncated_bytes, bytes.len() as u64 - f3);
    let (log, rec) = Log::open(bad).unwrap();
    assert_eq!(rec.frames, 3);
    assert_eq!(all_frames(&log).len(), 3);
}

#[test]
fn corrupt_last_frame_is_a_tail_and_reported() {
    let (mem, offsets) = ten_frames();
    let bad = MemLog::from_bytes(mem.bytes());
    bad.corrupt(offsets[9] + 50, 0x04);
    let (log, rec) = Log::open(bad).unwrap();
    assert_eq!(rec.frames, 9);
    assert_eq!(rec.valid_len, offsets[9]);
    assert_eq!(rec.truncated_bytes, FRAME_HEADER_LEN as u64 + 100);
    assert_eq!(all_frames(&log).len(), 9);
}

#[test]
fn verify_and_read_report_damage_on_a_live_log() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let offsets: Vec<u64> = (0..10u8)
        .map(|i| log.append(i, &[i; 100]).unwrap())
        .collect();
    mem.corrupt(offsets[2] + 20, 0x01);
    mem.corrupt(offsets[6], 0xFF);
    assert!(matches!(
        log.read(offsets[2]),
        Err(LogError::Corrupt { offset }) if offset == offsets[2]
    ));
    assert!(matches!(
        log.read(offsets[6]),
        Err(LogError::Corrupt { .. })
    ));
    assert!(log.read(offsets[3]).is_ok());
    let report = log.verify().unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.frames, 8);
    assert_eq!(report.corrupt_regions, 2);
    assert_eq!(
        report.corrupt,
        vec![
            CorruptRegion {
                offset: offsets[2],
                len: offsets[3] - offsets[2]
            },
            CorruptRegion {
                offset: offsets[6],
                len: offsets[7] - offsets[6]
            },
        ]
    );
    let items: Vec<_> = log.iter_from(0).collect();
    assert_eq!(items.len(), 3);
    assert!(matches!(items[2], Err(LogError::Corrupt { .. })));
}

#[test]
fn random_offsets_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let mut valid = HashSet::new();
    for _ in 0..100 {
        let p = random_payload(&mut rng, 200);
        valid.insert(log.append((rng.next_u32() % 0xFE) as u8, &p).unwrap());
    }
    let len = log.len();
    for i in 0..20_000u64 {
        let off = match i % 3 {
            0 => rng.next_u64(),
            _ => rng.next_u64() % (len + 64),
        };
        if log.read(off).is_ok() {
            assert!(
                valid.contains(&off),
                "read a frame at non-frame offset {off}"
            );
        }
        if i % 100 == 0 {
            for item in log.iter_from(off).take(3) {
                let _ = item;
            }
        }
    }
    for &off in &[0, 1, HEADER_LEN - 1, len - 1, len, u64::MAX] {
        assert!(log.read(off).is_err());
    }
    // Damage (also to the length field) still gives errors, never a panic.
    for _ in 0..200 {
        mem.corrupt(rng.next_u64() % len, (rng.next_u32() as u8) | 1);
    }
    for &off in &valid {
        let _ = log.read(off);
    }
    let _ = log.verify().unwrap();
    let _ = all_frames_lossy(&log);
}

fn all_frames_lossy(log: &Log) -> usize {
    log.iter_from(0).filter(Result::is_ok).count()
}

#[test]
fn oversized_payload_is_refused() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let big = vec![0u8; MAX_PAYLOAD + 1];
    assert!(matches!(
        log.append(1, &big),
        Err(LogError::TooLarge { len }) if len == MAX_PAYLOAD as u64 + 1
    ));
    assert!(matches!(
        log.append_batch(&[(1, b"ok"), (1, &big)]),
        Err(LogError::TooLarge { .. })
    ));
    assert!(log.is_empty(), "nothing of a refused batch is written");
    let off = log.append(1, &big[..MAX_PAYLOAD]).unwrap();
    assert_eq!(log.read(off).unwrap().1.len(), MAX_PAYLOAD);
    let (_, rec) = Log::open(mem.crash()).unwrap();
    assert_eq!(rec.frames, 1);
}

#[test]
fn wrong_file_is_refused_and_torn_header_recreated() {
    let other = MemLog::from_bytes(b"SQLite format 3\0 and more".to_vec());
    assert!(matches!(Log::open(other.clone()), Err(LogError::BadHeader)));
    assert_eq!(other.bytes(), b"SQLite format 3\0 and more");
    assert!(matches!(
        Log::open(MemLog::from_bytes(b"xyz".to_vec())),
        Err(LogError::BadHeader)
    ));
    let torn = MemLog::from_bytes(b"COPH".to_vec());
    let (log, rec) = Log::open(torn.clone()).unwrap();
    assert_eq!(rec.truncated_bytes, 4);
    assert_eq!(torn.bytes(), FILE_HEADER);
    assert!(log.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"hello, this is not a log").unwrap();
    assert!(matches!(Log::open_path(&path), Err(LogError::BadHeader)));
    assert_eq!(std::fs::read(&path).unwrap(), b"hello, this is not a log");
}

#[test]
fn file_log_recovers_from_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torn.log");
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let mut acked = Vec::new();
    {
        let (log, _) = Log::open_path(&path).unwrap();
        for i in 0..20u8 {
            let p = random_payload(&mut rng, 500);
            acked.push((log.append(i, &p).unwrap(), i, p));
        }
    }
    let clean_len = std::fs::metadata(&path).unwrap().len();
    for tail in [
        // Half of a frame.
        encode(99, &[5u8; 300])[..150].to_vec(),
        // Just part of a frame header.
        encode(99, b"abc")[..5].to_vec(),
        // Garbage.
        random_payload(&mut rng, 4000),
        // Zeros (a file system that extended the size but lost the data).
        vec![0u8; 4096],
    ] {
        if tail.is_empty() {
            continue;
        }
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&tail).unwrap();
        drop(f);
        let (log, rec) = Log::open_path(&path).unwrap();
        assert_eq!(rec.truncated_bytes, tail.len() as u64);
        assert_eq!(rec.valid_len, clean_len);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), clean_len);
        for (off, kind, p) in &acked {
            assert_eq!(log.read(*off).unwrap(), (*kind, p.clone()));
        }
    }
    let (log, _) = Log::open_path(&path).unwrap();
    let off = log.append(1, b"more").unwrap();
    drop(log);
    let (log, rec) = Log::open_path(&path).unwrap();
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(rec.frames, 21);
    assert_eq!(log.read(off).unwrap(), (1, b"more".to_vec()));
}

#[test]
fn failed_fsync_fails_every_waiter_and_poisons_the_log() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let a = log.append(1, b"before").unwrap();
    mem.set_fail_sync(true);
    mem.set_sync_delay(Duration::from_millis(2));
    let results: Vec<Result<u64, LogError>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let log = log.clone();
                s.spawn(move || log.append(2, b"during"))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results.iter().all(Result::is_err));
    assert!(results.iter().any(|r| matches!(r, Err(LogError::Io(_)))));
    mem.set_fail_sync(false);
    let err = log.append(3, b"after").unwrap_err();
    assert!(matches!(err, LogError::Poisoned { .. }), "{err}");
    assert!(err.to_string().contains("fsync failed"));
    // Reads of what was durable still work; nothing unsynced became visible.
    assert_eq!(log.read(a).unwrap(), (1, b"before".to_vec()));
    assert_eq!(all_frames(&log).len(), 1);
    // Reopening from disk is the way back.
    drop(log);
    let (log, _) = Log::open(mem.crash()).unwrap();
    assert!(log.append(4, b"reopened").is_ok());
}

#[test]
fn disk_full_is_reported_and_rolled_back() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let a = log.append(1, b"fits").unwrap();
    let len = log.len();
    mem.set_capacity(Some(len + 20));
    match log.append(2, &[7u8; 100]) {
        Err(LogError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::StorageFull),
        other => panic!("{other:?}"),
    }
    assert_eq!(mem.bytes().len() as u64, len, "partial frame removed");
    assert_eq!(log.len(), len);
    // Not poisoned: once there is room again, appends work.
    mem.set_capacity(None);
    let b = log.append(3, b"room again").unwrap();
    assert_eq!(b, len);
    let (log, rec) = Log::open(mem.crash()).unwrap();
    assert_eq!(rec.frames, 2);
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(log.read(a).unwrap().0, 1);
}

#[test]
fn dropping_the_last_handle_stops_the_writer() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let other = log.clone();
    log.append(1, b"x").unwrap();
    drop(log);
    other.append(2, b"y").unwrap();
    let iter = other.iter_from(0);
    drop(other);
    // The iterator keeps a reader, not the writer.
    assert_eq!(iter.count(), 2);
    // The writer thread has exited and released the storage.
    assert_eq!(Arc::strong_count(&mem.state), 1);
}

/// Storage without a concurrent reader: reads go through the writer's lock.
struct NoReader(MemLog);

impl LogFile for NoReader {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read_at(&self, off: u64, buf: &mut [u8]) -> io::Result<()> {
        LogFile::read_at(&self.0, off, buf)
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.append(data)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync()
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.truncate(len)
    }
}

#[test]
fn storage_without_a_reader_works_through_the_lock() {
    let mem = MemLog::new();
    let (log, _) = Log::open(NoReader(mem.clone())).unwrap();
    std::thread::scope(|s| {
        for t in 0..3u8 {
            let log = log.clone();
            s.spawn(move || {
                for i in 0..50u8 {
                    let off = log.append(t, &[i; 10]).unwrap();
                    assert_eq!(log.read(off).unwrap(), (t, vec![i; 10]));
                }
            });
        }
    });
    assert_eq!(all_frames(&log).len(), 150);
    assert!(log.verify().unwrap().is_ok());
    drop(log);
    assert_eq!(Arc::strong_count(&mem.state), 1);
}

#[test]
fn an_atomic_batch_cut_at_any_byte_is_all_or_nothing() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let before = log.append_batch(&[(1, b"first"), (2, b"second")]).unwrap();
    let before_len = log.len();
    let items: [(u8, &[u8]); 3] = [(1, b"alpha"), (1, b"beta"), (2, b"audit event")];
    let offsets = log.append_atomic(&items).unwrap();
    assert_eq!(offsets.len(), items.len() + 2, "begin, items, commit");
    assert_eq!(log.read(offsets[0]).unwrap().0, KIND_BATCH_BEGIN);
    assert_eq!(log.read(offsets[4]).unwrap().0, KIND_BATCH_COMMIT);
    for (off, (k, p)) in offsets[1..4].iter().zip(&items) {
        assert_eq!(log.read(*off).unwrap(), (*k, p.to_vec()));
    }
    let after_len = log.len();
    drop(log);
    let bytes = mem.bytes();
    assert_eq!(bytes.len() as u64, after_len);
    for cut in before_len..=after_len {
        let (log, rec) = Log::open(MemLog::from_bytes(bytes[..cut as usize].to_vec())).unwrap();
        let frames = all_frames(&log);
        let kinds: Vec<u8> = frames.iter().map(|f| f.1).collect();
        if cut == after_len {
            assert_eq!(rec.truncated_bytes, 0);
            assert_eq!(frames.len(), 7, "cut at {cut}");
            assert_eq!(kinds[2..], [KIND_BATCH_BEGIN, 1, 1, 2, KIND_BATCH_COMMIT]);
        } else {
            assert_eq!(rec.valid_len, before_len, "cut at {cut}");
            assert_eq!(rec.truncated_bytes, cut - before_len);
            assert_eq!(kinds, [1, 2], "cut at {cut}");
            assert_eq!(rec.frames, 2);
        }
        assert_eq!(log.read(before[1]).unwrap(), (2, b"second".to_vec()));
    }
}

#[test]
fn batch_markers_are_reserved_and_single_items_need_none() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    for kind in [KIND_BATCH_BEGIN, KIND_BATCH_COMMIT] {
        assert!(matches!(
            log.append_batch(&[(1, b"a"), (kind, b"x")]),
            Err(LogError::ReservedKind { .. })
        ));
        assert!(matches!(
            log.append_atomic(&[(1, b"a"), (kind, b"x")]),
            Err(LogError::ReservedKind { .. })
        ));
    }
    assert!(log.is_empty(), "nothing written");
    let one = log.append_atomic(&[(1, b"only")]).unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(all_frames(&log).len(), 1);
}

#[test]
fn misplaced_markers_in_the_middle_are_corruption_and_repair_cuts_there() {
    let count = 2u32.to_le_bytes();
    let mut bytes = FILE_HEADER.to_vec();
    bytes.extend(encode(1, b"kept"));
    let bad = bytes.len() as u64;
    // A begin whose batch never commits, followed by acknowledged-looking frames.
    bytes.extend(encode(KIND_BATCH_BEGIN, &count));
    bytes.extend(encode(1, b"a"));
    bytes.extend(encode(KIND_BATCH_BEGIN, &count));
    bytes.extend(encode(1, b"b"));
    bytes.extend(encode(1, b"c"));
    bytes.extend(encode(KIND_BATCH_COMMIT, &count));
    bytes.extend(encode(1, b"later"));
    match Log::open(MemLog::from_bytes(bytes.clone())) {
        Err(LogError::Corrupt { .. }) => {}
        other => panic!("expected corruption, got {other:?}"),
    }
    let mem = MemLog::from_bytes(bytes);
    let rec = Log::repair(mem.clone()).unwrap();
    assert_eq!(rec.valid_len, bad);
    let (log, _) = Log::open(mem).unwrap();
    assert_eq!(all_frames(&log).len(), 1);

    // A commit with the wrong count, or without a begin, at the very end is a torn tail.
    for tail in [
        vec![
            encode(KIND_BATCH_BEGIN, &count),
            encode(1, b"a"),
            encode(KIND_BATCH_COMMIT, &1u32.to_le_bytes()),
        ],
        vec![encode(KIND_BATCH_COMMIT, &count)],
    ] {
        let mut bytes = FILE_HEADER.to_vec();
        bytes.extend(encode(1, b"kept"));
        for f in tail {
            bytes.extend(f);
        }
        let (log, rec) = Log::open(MemLog::from_bytes(bytes)).unwrap();
        assert_eq!(rec.valid_len, bad);
        assert_eq!(all_frames(&log).len(), 1);
    }
}

#[test]
fn verify_reports_a_batch_whose_commit_was_overwritten() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    let offsets = log.append_atomic(&[(1, b"a"), (1, b"b")]).unwrap();
    log.append(1, b"after").unwrap();
    assert!(log.verify().unwrap().is_ok());
    // Replace the commit marker, in place, with a valid frame of another kind and the
    // same length (damage a CRC cannot see).
    let commit = offsets[3];
    let old = encode(KIND_BATCH_COMMIT, &2u32.to_le_bytes());
    let new = encode(1, b"zzzz");
    assert_eq!(old.len(), new.len());
    for (i, (o, n)) in old.iter().zip(&new).enumerate() {
        mem.corrupt(commit + i as u64, o ^ n);
    }
    let report = log.verify().unwrap();
    assert_eq!(report.corrupt_regions, 1, "{report:?}");
    assert_eq!(report.corrupt[0].offset, commit);
    // Opening refuses it as corruption in the middle; repair cuts the batch whole.
    drop(log);
    assert!(matches!(
        Log::open(mem.crash()),
        Err(LogError::Corrupt { .. })
    ));
    let rec = Log::repair(mem.clone()).unwrap();
    assert_eq!(rec.valid_len, offsets[0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_payloads_round_trip(
        items in prop::collection::vec(
            (0u8..0xFE, prop::collection::vec(any::<u8>(), 0..600), any::<bool>()),
            0..40,
        )
    ) {
        let mem = MemLog::new();
        let (log, _) = Log::open(mem.clone()).unwrap();
        let mut expect = Vec::new();
        let mut batch: Vec<(u8, &[u8])> = Vec::new();
        for (kind, payload, flush) in &items {
            batch.push((*kind, payload.as_slice()));
            if *flush {
                for (off, (k, p)) in log.append_batch(&batch).unwrap().into_iter().zip(&batch) {
                    expect.push((off, *k, p.to_vec()));
                }
                batch.clear();
            }
        }
        for (kind, payload) in batch {
            expect.push((log.append(kind, payload).unwrap(), kind, payload.to_vec()));
        }
        for (off, kind, payload) in &expect {
            prop_assert_eq!(log.read(*off).unwrap(), (*kind, payload.clone()));
        }
        prop_assert_eq!(&all_frames(&log), &expect);
        drop(log);
        let (log, rec) = Log::open(mem.crash()).unwrap();
        prop_assert_eq!(rec.truncated_bytes, 0);
        prop_assert_eq!(rec.frames, expect.len() as u64);
        prop_assert_eq!(&all_frames(&log), &expect);
    }
}

fn open_from(mem: &MemLog, from: u64) -> Result<(Log, Recovery), LogError> {
    Log::open_with(
        mem.clone(),
        LogOptions {
            scan_from: Some(from),
            ..Default::default()
        },
    )
}

#[test]
fn opening_from_a_checked_position_scans_only_the_frames_after_it() {
    let (mem, offsets) = ten_frames();
    let (log, rec) = open_from(&mem, offsets[7]).unwrap();
    assert_eq!(rec.scanned_from, offsets[7]);
    assert_eq!(rec.frames, 3, "frames 7, 8 and 9 only");
    assert_eq!(rec.valid_len, mem.bytes().len() as u64);
    assert_eq!(rec.truncated_bytes, 0);
    // Nothing is lost: every frame reads, and appends go on after the last.
    assert_eq!(all_frames(&log).len(), 10);
    let next = log.append(42, b"after").unwrap();
    assert_eq!(next, rec.valid_len);
    // At the very end: nothing to scan.
    drop(log);
    let end = mem.bytes().len() as u64;
    let (_, rec) = open_from(&mem, end).unwrap();
    assert_eq!((rec.scanned_from, rec.frames), (end, 0));
}

#[test]
fn a_position_that_is_not_clean_falls_back_to_scanning_every_frame() {
    let (mem, offsets) = ten_frames();
    let len = mem.bytes().len() as u64;
    // Not a frame boundary, past the end, at or before the header: every frame scanned.
    for from in [offsets[4] + 1, len + 1, 0, HEADER_LEN] {
        let (_, rec) = open_from(&mem, from).unwrap();
        assert_eq!(rec.scanned_from, HEADER_LEN, "from {from}");
        assert_eq!(rec.frames, 10, "from {from}");
    }
    // A torn tail after the position is cut, after a whole scan.
    let torn = MemLog::from_bytes(mem.bytes());
    torn.corrupt(offsets[9] + 50, 0x04);
    let (log, rec) = open_from(&torn, offsets[5]).unwrap();
    assert_eq!(rec.scanned_from, HEADER_LEN);
    assert_eq!(rec.valid_len, offsets[9]);
    assert_eq!(all_frames(&log).len(), 9);
    // Damage in the middle after the position: refused, as without it.
    let bad = MemLog::from_bytes(mem.bytes());
    bad.corrupt(offsets[7] + 20, 0x10);
    assert!(matches!(
        open_from(&bad, offsets[5]),
        Err(LogError::Corrupt { offset }) if offset == offsets[7]
    ));
}

#[test]
fn a_position_inside_a_batch_falls_back_to_scanning_every_frame() {
    let mem = MemLog::new();
    let (log, _) = Log::open(mem.clone()).unwrap();
    log.append(1, b"one").unwrap();
    let batch = log.append_atomic(&[(2, b"x"), (3, b"y")]).unwrap();
    drop(log);
    // The batch's second frame: a commit marker follows with no begin in sight.
    let (log, rec) = open_from(&mem, batch[1]).unwrap();
    assert_eq!(rec.scanned_from, HEADER_LEN);
    assert_eq!(rec.truncated_bytes, 0);
    assert_eq!(all_frames(&log).len(), 5, "one, begin, x, y, commit");
}

/// What scanning from a position gives up: damage before it is not found at open, but
/// every read of the damaged frame and `verify` still find it.
#[test]
fn damage_before_the_position_is_found_by_reads_and_verify() {
    let (mem, offsets) = ten_frames();
    let bad = MemLog::from_bytes(mem.bytes());
    bad.corrupt(offsets[2] + 30, 0x01);
    assert!(matches!(
        Log::open(bad.clone()),
        Err(LogError::Corrupt { .. })
    ));
    let (log, rec) = open_from(&bad, offsets[6]).unwrap();
    assert_eq!(rec.scanned_from, offsets[6]);
    assert!(
        log.read(offsets[2]).is_err(),
        "the damaged frame fails its check"
    );
    assert_eq!(log.read(offsets[3]).unwrap(), (3, vec![3; 100]));
    let report = log.verify().unwrap();
    assert!(!report.is_ok());
}
