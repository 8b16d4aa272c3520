//! Tests of the blob store. Deterministic: data from seeded generators, no sleeps.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use super::format::{blob_name, part_name, ranges_name, RangeSet, HEADER_LEN, RECORD_LEN};
use super::*;

const G: u64 = GROUP_BYTES;

/// A tampered slice, named, and the fault it must be refused with.
type Case = (&'static str, Slice, fn(&SliceFault) -> bool);

fn data(seed: u64, len: u64) -> Vec<u8> {
    let mut v = vec![0u8; len as usize];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

fn open_mem(dir: &MemDir) -> BlobStore {
    BlobStore::open(Arc::new(dir.clone())).expect("open")
}

fn open_mem_with(dir: &MemDir, limits: BlobLimits) -> BlobStore {
    BlobStore::open_with(Arc::new(dir.clone()), limits).expect("open")
}

/// Every slice of a blob, `step` bytes (whole groups) each, in order.
fn slices(src: &BlobStore, hash: &BlobHash, size: u64, step: u64) -> Vec<Slice> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < size {
        let s = src.slice(hash, at, step).expect("slice");
        assert_eq!(s.offset, at);
        assert!(s.len > 0 && s.len <= step.max(G));
        assert!(s.encoded.len() as u64 <= MAX_SLICE_BYTES);
        at += s.len;
        out.push(s);
    }
    out
}

/// Receive a whole blob from `src` into `dst`, slices in `order` (indexes into the slices).
fn receive(src: &BlobStore, dst: &BlobStore, hash: &BlobHash, step: u64) {
    let size = src.size(hash).expect("size");
    let first = dst.begin(hash, size).expect("begin");
    if size == 0 {
        assert_eq!(first, Progress::Complete);
        return;
    }
    assert_eq!(first, Progress::Partial { missing: size });
    let all = slices(src, hash, size, step);
    let n = all.len();
    for (i, s) in all.iter().enumerate() {
        let p = dst.write_slice(hash, s).expect("write_slice");
        if i + 1 == n {
            assert_eq!(p, Progress::Complete);
        } else {
            assert!(matches!(p, Progress::Partial { .. }), "{p:?}");
        }
    }
}

fn read_all(store: &BlobStore, hash: &BlobHash) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .open_blob(hash)
        .expect("open_blob")
        .read_to_end(&mut out)
        .expect("read");
    out
}

fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

const SIZES: &[u64] = &[
    0,
    1,
    1023,
    1024,
    1025,
    G - 1,
    G,
    G + 1,
    2 * G - 1,
    2 * G,
    2 * G + 1,
    (3 << 20) + 12_345,
];

#[test]
fn sizes_round_trip_through_import_reads_and_slices() {
    for (i, &size) in SIZES.iter().enumerate() {
        let bytes = data(i as u64, size);
        let src_dir = MemDir::new();
        let src = open_mem(&src_dir);
        let (hash, got) = src.import(&bytes[..]).expect("import");
        // The name is the plain BLAKE3 hash of the bytes.
        assert_eq!(hash, BlobHash::from(blake3::hash(&bytes)), "size {size}");
        assert_eq!(got, size);
        assert!(src.has(&hash));
        assert_eq!(src.size(&hash).unwrap(), size);
        assert_eq!(src.read_range(&hash, 0, size).unwrap(), bytes);
        assert_eq!(read_all(&src, &hash), bytes);
        if size > 3 {
            let (o, l) = (size / 3, size / 3);
            assert_eq!(
                src.read_range(&hash, o, l).unwrap(),
                &bytes[o as usize..(o + l) as usize]
            );
        }
        src.verify(&hash).expect("verify");
        assert_eq!(src_dir.names(), vec![blob_name(&hash)], "size {size}");

        let dst_dir = MemDir::new();
        let dst = open_mem(&dst_dir);
        receive(&src, &dst, &hash, 3 * G);
        assert!(dst.has(&hash));
        assert_eq!(read_all(&dst, &hash), bytes, "size {size}");
        dst.verify(&hash).expect("verify received");
        // Received or imported, a blob is the same file.
        assert_eq!(
            dst_dir.bytes(&blob_name(&hash)),
            src_dir.bytes(&blob_name(&hash))
        );
        assert_eq!(dst_dir.names(), vec![blob_name(&hash)]);
    }
}

#[test]
fn a_real_directory_round_trips_and_detects_a_flipped_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = FsDir::open(tmp.path().join("blobs")).unwrap();
    let store = BlobStore::open(Arc::new(dir.clone())).unwrap();
    let bytes = data(99, 5 * G + 77);
    let (hash, size) = store.import(&bytes[..]).unwrap();
    assert_eq!(read_all(&store, &hash), bytes);
    drop(store);
    let store = BlobStore::open(Arc::new(dir.clone())).unwrap();
    assert_eq!(store.list(), vec![(hash, size)]);
    assert_eq!(read_all(&store, &hash), bytes);

    let path = tmp.path().join("blobs").join(blob_name(&hash));
    let mut on_disk = std::fs::read(&path).unwrap();
    on_disk[(HEADER_LEN + 2 * G + 5) as usize] ^= 0x80;
    std::fs::write(&path, &on_disk).unwrap();
    match store.verify(&hash) {
        Err(BlobError::Corrupt { hash: h, offset }) => {
            assert_eq!(h, hash);
            assert_eq!(offset, 2 * G);
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(matches!(
        store.read_range(&hash, 2 * G, 10),
        Err(BlobError::Corrupt { .. })
    ));
    // Other groups still read.
    assert_eq!(store.read_range(&hash, 0, G).unwrap(), &bytes[..G as usize]);
}

#[test]
fn import_twice_is_one_blob() {
    let dir = MemDir::new();
    let store = open_mem(&dir);
    let bytes = data(1, 40_000);
    let a = store.import(&bytes[..]).unwrap();
    let file = dir.bytes(&blob_name(&a.0)).unwrap();
    let b = store.import(&bytes[..]).unwrap();
    assert_eq!(a, b);
    assert_eq!(store.list(), vec![a]);
    assert_eq!(dir.names(), vec![blob_name(&a.0)]);
    assert_eq!(dir.bytes(&blob_name(&a.0)).unwrap(), file);
}

#[test]
fn an_import_replaces_a_partial_of_the_same_blob() {
    let dir = MemDir::new();
    let store = open_mem(&dir);
    let bytes = data(2, 3 * G);
    let hash = BlobHash::of(&bytes);
    store.begin(&hash, 3 * G).unwrap();
    assert_eq!(store.partials(), vec![(hash, 3 * G)]);
    store.import(&bytes[..]).unwrap();
    assert!(store.partials().is_empty());
    assert_eq!(dir.names(), vec![blob_name(&hash)]);
    assert_eq!(
        store.missing_ranges(&hash).unwrap(),
        Vec::<std::ops::Range<u64>>::new()
    );
}

#[test]
fn a_flipped_data_byte_is_detected_by_reads_verify_and_serving() {
    let dir = MemDir::new();
    let store = open_mem(&dir);
    let bytes = data(3, 200_000);
    let (hash, _) = store.import(&bytes[..]).unwrap();
    assert!(dir.corrupt(&blob_name(&hash), HEADER_LEN + 100_000, 0x01));
    let group = 100_000 - 100_000 % G;
    let corrupt_at = |r: Result<(), BlobError>| match r {
        Err(BlobError::Corrupt { hash: h, offset }) => {
            assert_eq!(h, hash);
            offset
        }
        Err(e) => panic!("expected Corrupt, got {e:?}"),
        Ok(_) => panic!("expected Corrupt, got bytes"),
    };
    assert_eq!(
        corrupt_at(store.read_range(&hash, 99_990, 20).map(|_| ())),
        group
    );
    assert_eq!(corrupt_at(store.verify(&hash)), group);
    assert_eq!(corrupt_at(store.slice(&hash, group, G).map(|_| ())), group);
    let mut reader = store.open_blob(&hash).unwrap();
    let err = reader.read_to_end(&mut Vec::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(matches!(
        err.into_inner()
            .and_then(|e| e.downcast::<BlobError>().ok())
            .as_deref(),
        Some(BlobError::Corrupt { .. })
    ));
    // The groups around it read as before.
    assert_eq!(
        store.read_range(&hash, 0, group).unwrap(),
        &bytes[..group as usize]
    );
    assert_eq!(
        store.read_range(&hash, group + G, 1000).unwrap(),
        &bytes[(group + G) as usize..(group + G + 1000) as usize]
    );
}

#[test]
fn a_flipped_outboard_byte_is_detected() {
    let dir = MemDir::new();
    let store = open_mem(&dir);
    let bytes = data(4, 10 * G);
    let (hash, size) = store.import(&bytes[..]).unwrap();
    // Every outboard byte is checked: flip each in turn.
    let outboard = (size.div_ceil(G) - 1) * 64;
    for i in (0..outboard).step_by(13) {
        let at = HEADER_LEN + size + i;
        assert!(dir.corrupt(&blob_name(&hash), at, 0x40));
        assert!(
            matches!(store.verify(&hash), Err(BlobError::Corrupt { .. })),
            "outboard byte {i}"
        );
        assert!(dir.corrupt(&blob_name(&hash), at, 0x40));
    }
    store.verify(&hash).unwrap();
}

#[test]
fn a_damaged_header_sets_the_blob_aside_until_it_is_received_again() {
    let dir = MemDir::new();
    let store = open_mem(&dir);
    let bytes = data(5, 3 * G + 3);
    let (hash, _) = store.import(&bytes[..]).unwrap();
    drop(store);
    assert!(dir.corrupt(&blob_name(&hash), 41, 0x02));
    let store = open_mem(&dir);
    assert_eq!(store.recovery().damaged, vec![blob_name(&hash)]);
    assert!(!store.has(&hash));
    assert!(matches!(
        store.read_range(&hash, 0, 1),
        Err(BlobError::NotFound { .. })
    ));
    let src = open_mem(&MemDir::new());
    src.import(&bytes[..]).unwrap();
    receive(&src, &store, &hash, G);
    assert_eq!(read_all(&store, &hash), bytes);
    drop(store);
    let store = open_mem(&dir);
    assert_eq!(store.recovery(), &Recovery::default());
    assert_eq!(read_all(&store, &hash), bytes);
}

#[test]
fn a_tampered_slice_is_refused_and_nothing_stored_changes() {
    let src = open_mem(&MemDir::new());
    let bytes = data(6, 300_000);
    let (hash, size) = src.import(&bytes[..]).unwrap();
    let other = src.import(&data(7, 300_000)[..]).unwrap().0;
    let dir = MemDir::new();
    let dst = open_mem(&dir);
    dst.begin(&hash, size).unwrap();
    let all = slices(&src, &hash, size, 4 * G);
    dst.write_slice(&hash, &all[0]).unwrap();

    let part = || dir.bytes(&part_name(&hash)).unwrap();
    let ranges = || dir.bytes(&ranges_name(&hash)).unwrap();
    let (part0, ranges0, missing0, syncs0) = (
        part(),
        ranges(),
        dst.missing_ranges(&hash).unwrap(),
        dir.sync_counts(),
    );

    let good = all[1].clone();
    let data_at = good.encoded.len() - 100;
    let mut cases: Vec<Case> = Vec::new();
    let mut s = good.clone();
    s.encoded[data_at] ^= 1;
    cases.push(("data byte", s, |f| {
        matches!(f, SliceFault::DataMismatch { .. })
    }));
    let mut s = good.clone();
    s.encoded[3] ^= 1;
    cases.push(("proof byte", s, |f| {
        matches!(f, SliceFault::ProofMismatch { offset: 0 })
    }));
    let mut s = good.clone();
    s.encoded.truncate(s.encoded.len() - 1);
    cases.push(("truncated", s, |f| *f == SliceFault::Truncated));
    let mut s = good.clone();
    s.encoded.push(0);
    cases.push(("trailing", s, |f| {
        *f == SliceFault::TrailingBytes { extra: 1 }
    }));
    let mut s = good.clone();
    s.offset += G;
    cases.push(("moved", s, |f| {
        matches!(
            f,
            SliceFault::DataMismatch { .. }
                | SliceFault::ProofMismatch { .. }
                | SliceFault::Truncated
                | SliceFault::TrailingBytes { .. }
        )
    }));
    let mut s = good.clone();
    s.offset += 1;
    cases.push(("misaligned", s, |f| *f == SliceFault::Misaligned));
    let mut s = good.clone();
    s.len -= 1;
    cases.push(("short end", s, |f| *f == SliceFault::Misaligned));
    let mut s = good.clone();
    s.len = 0;
    cases.push(("empty", s, |f| *f == SliceFault::Empty));
    let mut s = good.clone();
    s.offset = u64::MAX - G + 1;
    cases.push(("overflow", s, |f| *f == SliceFault::OutOfBounds));
    let mut s = good.clone();
    s.offset = size - size % G;
    s.len = 2 * G;
    cases.push(("past the end", s, |f| *f == SliceFault::OutOfBounds));
    let mut s = good.clone();
    s.len = MAX_SLICE_DATA + G;
    cases.push(("too long", s, |f| matches!(f, SliceFault::TooLong { .. })));
    let mut s = good.clone();
    s.encoded = vec![0; MAX_SLICE_BYTES as usize + 1];
    cases.push(("too many bytes", s, |f| {
        matches!(f, SliceFault::TooManyBytes { .. })
    }));
    let s = src.slice(&other, good.offset, 4 * G).unwrap();
    cases.push(("another blob's slice", s, |f| {
        matches!(f, SliceFault::ProofMismatch { .. })
    }));

    for (what, slice, fits) in cases {
        match dst.write_slice(&hash, &slice) {
            Err(BlobError::SliceRejected {
                hash: h,
                offset,
                fault,
            }) => {
                assert_eq!(h, hash, "{what}");
                assert_eq!(offset, slice.offset, "{what}");
                assert!(fits(&fault), "{what}: {fault:?}");
            }
            other => panic!("{what}: expected SliceRejected, got {other:?}"),
        }
        assert_eq!(part(), part0, "{what}");
        assert_eq!(ranges(), ranges0, "{what}");
        assert_eq!(dst.missing_ranges(&hash).unwrap(), missing0, "{what}");
        assert_eq!(dir.sync_counts(), syncs0, "{what}: nothing written");
    }
    // The honest slices still complete it.
    for s in &all[1..] {
        dst.write_slice(&hash, s).unwrap();
    }
    assert_eq!(read_all(&dst, &hash), bytes);
}

#[test]
fn out_of_order_and_repeated_slices_complete_the_blob() {
    let src = open_mem(&MemDir::new());
    let bytes = data(8, (1 << 20) + 5000);
    let (hash, size) = src.import(&bytes[..]).unwrap();
    let mut all = slices(&src, &hash, size, G);
    shuffle(&mut all, 42);
    let repeat = all[3].clone();
    all.insert(10, repeat);
    let dir = MemDir::new();
    let dst = open_mem(&dir);
    dst.begin(&hash, size).unwrap();
    let mut last_missing = size;
    for (i, s) in all.iter().enumerate() {
        match dst.write_slice(&hash, s).unwrap() {
            Progress::Partial { missing } => {
                assert!(missing <= last_missing);
                assert_eq!(
                    missing,
                    dst.missing_ranges(&hash)
                        .unwrap()
                        .iter()
                        .map(|r| r.end - r.start)
                        .sum::<u64>()
                );
                last_missing = missing;
            }
            Progress::Complete => assert_eq!(i + 1, all.len()),
        }
    }
    assert!(dst.has(&hash));
    assert_eq!(read_all(&dst, &hash), bytes);
    // A slice after completion changes nothing.
    assert_eq!(dst.write_slice(&hash, &all[0]).unwrap(), Progress::Complete);
    assert_eq!(dir.names(), vec![blob_name(&hash)]);
}

#[test]
fn a_restart_mid_receive_resumes_from_the_persisted_ranges() {
    let src = open_mem(&MemDir::new());
    let bytes = data(9, 500_000);
    let (hash, size) = src.import(&bytes[..]).unwrap();
    let all = slices(&src, &hash, size, 4 * G);
    let tmp = tempfile::tempdir().unwrap();
    let dir = FsDir::open(tmp.path()).unwrap();
    {
        let dst = BlobStore::open(Arc::new(dir.clone())).unwrap();
        dst.begin(&hash, size).unwrap();
        dst.write_slice(&hash, &all[0]).unwrap();
        dst.write_slice(&hash, &all[3]).unwrap();
    }
    let dst = BlobStore::open(Arc::new(dir.clone())).unwrap();
    assert_eq!(dst.recovery().resumed, vec![(hash, 8 * G)]);
    assert_eq!(dst.partials(), vec![(hash, size)]);
    assert_eq!(
        dst.missing_ranges(&hash).unwrap(),
        vec![4 * G..12 * G, 16 * G..size]
    );
    assert_eq!(
        dst.begin(&hash, size).unwrap(),
        Progress::Partial {
            missing: size - 8 * G
        }
    );
    for (i, s) in all.iter().enumerate() {
        if i != 0 && i != 3 {
            dst.write_slice(&hash, s).unwrap();
        }
    }
    assert!(dst.has(&hash));
    drop(dst);
    let dst = BlobStore::open(Arc::new(dir.clone())).unwrap();
    assert_eq!(dst.recovery(), &Recovery::default());
    assert_eq!(read_all(&dst, &hash), bytes);
    assert_eq!(dir.list().unwrap(), vec![blob_name(&hash)]);
}

#[test]
fn a_crash_mid_receive_keeps_only_what_was_recorded_durably() {
    let src = open_mem(&MemDir::new());
    let bytes = data(10, 10 * G);
    let (hash, size) = src.import(&bytes[..]).unwrap();
    let all = slices(&src, &hash, size, 2 * G);
    let dir = MemDir::new();
    let dst = open_mem(&dir);
    dst.begin(&hash, size).unwrap();
    dst.write_slice(&hash, &all[1]).unwrap();
    let after_one = vec![0..2 * G, 4 * G..size];
    // A crash now keeps the slice.
    let crashed = dir.crash();
    assert_eq!(open_mem(&crashed).missing_ranges(&hash).unwrap(), after_one);
    // A failed fsync of the data: refused, not recorded, not there after a crash.
    dir.set_fail_file_sync(true);
    assert!(matches!(
        dst.write_slice(&hash, &all[2]),
        Err(BlobError::Io(_))
    ));
    dir.set_fail_file_sync(false);
    assert_eq!(dst.missing_ranges(&hash).unwrap(), after_one);
    let crashed = dir.crash();
    let reopened = open_mem(&crashed);
    assert_eq!(reopened.missing_ranges(&hash).unwrap(), after_one);
    // The reopened store finishes the blob.
    for s in &all {
        reopened.write_slice(&hash, s).unwrap();
    }
    assert_eq!(read_all(&reopened, &hash), bytes);
    // And the original one too, after its failure.
    for s in &all {
        dst.write_slice(&hash, s).unwrap();
    }
    assert_eq!(read_all(&dst, &hash), bytes);
}

/// Batched receiving: slices wait unsynced until the batch fills, `flush` or completion;
/// a crash before loses only them (never recorded), a failed fsync drops them from the
/// present ranges, and a recorded range is always durable.
#[test]
fn batched_slices_are_durable_at_the_batch_flush_or_completion_and_a_crash_loses_only_them() {
    let src = open_mem(&MemDir::new());
    // 40 MiB + a bit: two full batches of 16 slices, then the rest.
    let size = 2 * SYNC_BATCH_BYTES + 8 * MAX_SLICE_DATA + 5 * G + 7;
    let bytes = data(21, size);
    let (hash, size) = src.import(&bytes[..]).unwrap();
    let all = slices(&src, &hash, size, MAX_SLICE_DATA);
    let per_batch = (SYNC_BATCH_BYTES / MAX_SLICE_DATA) as usize;
    let dir = MemDir::new();
    let dst = open_mem(&dir);
    dst.begin(&hash, size).unwrap();
    let syncs = dir.sync_counts();
    for s in &all[..per_batch - 1] {
        dst.write_slice_batched(&hash, s).unwrap();
    }
    // Written, counted present here, not synced, not recorded: a crash loses them all.
    assert_eq!(dir.sync_counts(), syncs);
    let waiting = (per_batch as u64 - 1) * MAX_SLICE_DATA;
    assert_eq!(dst.missing_ranges(&hash).unwrap(), vec![waiting..size]);
    assert_eq!(
        open_mem(&dir.crash()).missing_ranges(&hash).unwrap(),
        vec![0..size]
    );
    // The batch's last slice makes the whole batch durable: one data fsync, one record
    // fsync.
    dst.write_slice_batched(&hash, &all[per_batch - 1]).unwrap();
    assert_eq!(dir.sync_counts(), (syncs.0 + 2, syncs.1));
    assert_eq!(
        open_mem(&dir.crash()).missing_ranges(&hash).unwrap(),
        vec![SYNC_BATCH_BYTES..size]
    );
    // `flush` makes a part batch durable.
    for s in &all[per_batch..per_batch + 3] {
        dst.write_slice_batched(&hash, s).unwrap();
    }
    dst.flush(&hash).unwrap();
    let flushed = SYNC_BATCH_BYTES + 3 * MAX_SLICE_DATA;
    assert_eq!(
        open_mem(&dir.crash()).missing_ranges(&hash).unwrap(),
        vec![flushed..size]
    );
    // A failed fsync at the flush: the waiting slices are no longer present (fetched
    // again), the records file keeps its valid prefix.
    for s in &all[per_batch + 3..per_batch + 5] {
        dst.write_slice_batched(&hash, s).unwrap();
    }
    dir.set_fail_file_sync(true);
    assert!(matches!(dst.flush(&hash), Err(BlobError::Io(_))));
    dir.set_fail_file_sync(false);
    assert_eq!(dst.missing_ranges(&hash).unwrap(), vec![flushed..size]);
    let reopened = open_mem(&dir.crash());
    assert_eq!(reopened.missing_ranges(&hash).unwrap(), vec![flushed..size]);
    // The rest, out of order, batched: the last completes the blob (checked whole).
    let mut rest: Vec<&Slice> = all[per_batch + 3..].iter().collect();
    shuffle(&mut rest, 4);
    let n = rest.len();
    for (i, s) in rest.into_iter().enumerate() {
        let p = dst.write_slice_batched(&hash, s).unwrap();
        assert_eq!(p == Progress::Complete, i + 1 == n, "{i}: {p:?}");
    }
    assert_eq!(read_all(&dst, &hash), bytes);
    assert_eq!(read_all(&open_mem(&dir.crash()), &hash), bytes);
    dst.flush(&hash).unwrap();
    // The reopened store (at the failed flush) finishes it too.
    for s in &all {
        reopened.write_slice_batched(&hash, s).unwrap();
    }
    assert_eq!(read_all(&reopened, &hash), bytes);
}

#[test]
fn an_import_is_reported_only_once_durable() {
    let bytes = data(11, 3 * G + 1);
    // A failed file fsync: refused, no file left.
    let dir = MemDir::new();
    let store = open_mem(&dir);
    dir.set_fail_file_sync(true);
    assert!(matches!(store.import(&bytes[..]), Err(BlobError::Io(_))));
    assert!(store.list().is_empty());
    assert!(dir.names().is_empty());
    assert!(open_mem(&dir.crash()).list().is_empty());

    // A failed directory fsync after the rename: not reported held; after a power loss the
    // name is gone; without one, the file (fsync'd) opens as a good blob.
    let dir = MemDir::new();
    let store = open_mem(&dir);
    dir.set_fail_dir_sync(true);
    let err = store.import(&bytes[..]).unwrap_err();
    assert!(matches!(err, BlobError::Io(_)), "{err:?}");
    let hash = BlobHash::of(&bytes);
    assert!(!store.has(&hash));
    assert!(store.list().is_empty());
    assert!(open_mem(&dir.crash()).list().is_empty());
    dir.set_fail_dir_sync(false);
    let reopened = open_mem(&dir);
    assert_eq!(read_all(&reopened, &hash), bytes);

    // A successful import survives a power loss right after.
    let dir = MemDir::new();
    let store = open_mem(&dir);
    let (hash, _) = store.import(&bytes[..]).unwrap();
    let (files, dirs) = dir.sync_counts();
    assert!(files >= 1 && dirs >= 1);
    let crashed = open_mem(&dir.crash());
    assert!(crashed.has(&hash));
    assert_eq!(read_all(&crashed, &hash), bytes);
    crashed.verify(&hash).unwrap();
}

#[test]
fn a_received_blob_is_reported_complete_only_once_durable() {
    let src = open_mem(&MemDir::new());
    let bytes = data(12, 6 * G + 9);
    let (hash, size) = src.import(&bytes[..]).unwrap();
    let all = slices(&src, &hash, size, 2 * G);
    let (last, rest) = all.split_last().unwrap();

    // The last slice's directory fsync fails: not complete; after a power loss the partial
    // holds every range and completes on the next begin.
    let dir = MemDir::new();
    let dst = open_mem(&dir);
    dst.begin(&hash, size).unwrap();
    for s in rest {
        dst.write_slice(&hash, s).unwrap();
    }
    dir.set_fail_dir_sync(true);
    assert!(matches!(
        dst.write_slice(&hash, last),
        Err(BlobError::Io(_))
    ));
    assert!(!dst.has(&hash));
    let crashed = open_mem(&dir.crash());
    assert!(!crashed.has(&hash));
    assert_eq!(
        crashed.missing_ranges(&hash).unwrap(),
        Vec::<std::ops::Range<u64>>::new()
    );
    assert_eq!(crashed.begin(&hash, size).unwrap(), Progress::Complete);
    assert_eq!(read_all(&crashed, &hash), bytes);

    // The last slice's data fsync fails: after a power loss, that range is missing again.
    let dir = MemDir::new();
    let dst = open_mem(&dir);
    dst.begin(&hash, size).unwrap();
    for s in rest {
        dst.write_slice(&hash, s).unwrap();
    }
    dir.set_fail_file_sync(true);
    assert!(matches!(
        dst.write_slice(&hash, last),
        Err(BlobError::Io(_))
    ));
    assert!(!dst.has(&hash));
    let crashed = open_mem(&dir.crash());
    assert_eq!(
        crashed.missing_ranges(&hash).unwrap(),
        vec![last.offset..size]
    );
    assert_eq!(
        crashed.write_slice(&hash, last).unwrap(),
        Progress::Complete
    );
    assert_eq!(read_all(&crashed, &hash), bytes);
}

#[test]
fn rot_in_a_partial_is_found_at_completion_and_fetched_again() {
    let src = open_mem(&MemDir::new());
    let bytes = data(13, 5 * G);
    let (hash, size) = src.import(&bytes[..]).unwrap();
    let all = slices(&src, &hash, size, G);
    let dir = MemDir::new();
    let dst = open_mem(&dir);
    dst.begin(&hash, size).unwrap();
    for s in &all[..4] {
        dst.write_slice(&hash, s).unwrap();
    }
    // A recorded group rots on disk before the blob completes.
    assert!(dir.corrupt(&part_name(&hash), HEADER_LEN + 2 * G + 7, 0x10));
    match dst.write_slice(&hash, &all[4]) {
        Err(BlobError::Corrupt { offset, .. }) => assert_eq!(offset, 2 * G),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!dst.has(&hash));
    assert_eq!(dst.missing_ranges(&hash).unwrap(), vec![2 * G..3 * G]);
    // The rewritten record survives a restart.
    let crashed = dir.crash();
    assert_eq!(
        open_mem(&crashed).missing_ranges(&hash).unwrap(),
        vec![2 * G..3 * G]
    );
    assert_eq!(dst.write_slice(&hash, &all[2]).unwrap(), Progress::Complete);
    assert_eq!(read_all(&dst, &hash), bytes);
}

#[test]
fn open_cleans_temp_files_broken_partials_and_torn_records() {
    let src = open_mem(&MemDir::new());
    let bytes = data(14, 8 * G);
    let (hash, size) = src.import(&bytes[..]).unwrap();
    let done = src.import(&data(15, 100)[..]).unwrap().0;
    let all = slices(&src, &hash, size, 2 * G);
    let dir = MemDir::new();
    {
        let dst = open_mem(&dir);
        dst.begin(&hash, size).unwrap();
        dst.write_slice(&hash, &all[0]).unwrap();
        dst.write_slice(&hash, &all[2]).unwrap();
        receive(&src, &dst, &done, G);
    }
    // An interrupted import, a torn record, a broken partial, an orphan record file, and a
    // partial left beside its complete blob.
    dir.create("tmp-3").unwrap().write_at(0, b"half").unwrap();
    let rfile = dir.open(&ranges_name(&hash)).unwrap();
    let rlen = rfile.len().unwrap();
    assert_eq!(rlen, 8 + 2 * RECORD_LEN as u64);
    rfile.write_at(rlen, &[1, 2, 3, 4, 5, 6, 7]).unwrap();
    let broken = BlobHash::of(b"broken");
    dir.create(&part_name(&broken))
        .unwrap()
        .write_at(0, b"not a header")
        .unwrap();
    dir.create(&ranges_name(&broken)).unwrap();
    let orphan = BlobHash::of(b"orphan");
    dir.create(&ranges_name(&orphan)).unwrap();
    dir.create(&part_name(&done)).unwrap();
    dir.create("README").unwrap();

    let dst = open_mem(&dir);
    let rec = dst.recovery();
    assert_eq!(rec.removed_temp, 1);
    assert_eq!(rec.discarded, vec![broken]);
    assert_eq!(rec.resumed, vec![(hash, 4 * G)]);
    assert!(rec.damaged.is_empty());
    let mut want = vec![
        blob_name(&done),
        part_name(&hash),
        ranges_name(&hash),
        "README".to_string(),
    ];
    want.sort();
    assert_eq!(dir.names(), want);
    assert_eq!(dir.bytes(&ranges_name(&hash)).unwrap().len() as u64, rlen);
    assert_eq!(
        dst.missing_ranges(&hash).unwrap(),
        vec![2 * G..4 * G, 6 * G..size]
    );
    for s in &all {
        dst.write_slice(&hash, s).unwrap();
    }
    assert_eq!(read_all(&dst, &hash), bytes);
}

#[test]
fn limits_are_refused() {
    // The declared size is checked before anything is written: 2 GiB is taken (nothing
    // allocated), more than MAX_BLOB_BYTES is not.
    const { assert!(MAX_BLOB_BYTES >= 1 << 31) };
    let dir = MemDir::new();
    let store = open_mem(&dir);
    let big = BlobHash::of(b"a big scan");
    assert!(matches!(
        store.begin(&big, MAX_BLOB_BYTES + 1),
        Err(BlobError::TooLarge { size, limit: MAX_BLOB_BYTES }) if size == MAX_BLOB_BYTES + 1
    ));
    assert!(dir.names().is_empty());
    assert_eq!(
        store.begin(&big, 1 << 31).unwrap(),
        Progress::Partial { missing: 1 << 31 }
    );
    assert_eq!(store.missing_ranges(&big).unwrap(), vec![0..1 << 31]);
    assert_eq!(
        dir.bytes(&part_name(&big)).unwrap().len() as u64,
        HEADER_LEN
    );
    assert!(matches!(
        store.begin(&big, 1 << 30),
        Err(BlobError::SizeMismatch { known, declared, .. }) if known == 1 << 31 && declared == 1 << 30
    ));
    store.remove(&big).unwrap();
    assert!(dir.names().is_empty());

    // Import past the blob limit: refused as soon as it is passed, nothing left.
    let limits = BlobLimits {
        max_blob_bytes: 100_000,
        max_partials: 2,
        max_partial_bytes: 300_000,
    };
    let store = open_mem_with(&dir, limits);
    assert!(matches!(
        store.import(&data(16, 100_001)[..]),
        Err(BlobError::TooLarge { limit: 100_000, .. })
    ));
    assert!(dir.names().is_empty());
    let (exact, _) = store.import(&data(16, 100_000)[..]).unwrap();

    // Partial blobs: count and declared bytes.
    let h = |n: u8| BlobHash::from_bytes([n; 32]);
    store.begin(&h(1), 100_000).unwrap();
    store.begin(&h(2), 100_000).unwrap();
    assert!(matches!(
        store.begin(&h(3), 10),
        Err(BlobError::LimitReached {
            limit: Limit::Partials,
            max: 2
        })
    ));
    store.remove(&h(1)).unwrap();
    let limits = BlobLimits {
        max_partials: 10,
        ..limits
    };
    let store = open_mem_with(&dir, limits);
    assert_eq!(store.partials(), vec![(h(2), 100_000)]);
    store.begin(&h(3), 100_000).unwrap();
    store.begin(&h(4), 100_000).unwrap();
    assert!(matches!(
        store.begin(&h(5), 1),
        Err(BlobError::LimitReached {
            limit: Limit::PartialBytes,
            max: 300_000
        })
    ));
    store.remove(&h(2)).unwrap();
    store.begin(&h(5), 100_000).unwrap();

    // Reads and slices.
    assert!(matches!(
        store.read_range(&exact, 0, MAX_READ_BYTES + 1),
        Err(BlobError::ReadTooLarge { .. })
    ));
    assert!(matches!(
        store.read_range(&exact, 99_999, 2),
        Err(BlobError::InvalidRange { .. })
    ));
    assert!(matches!(
        store.slice(&exact, 1, G),
        Err(BlobError::InvalidRange { .. })
    ));
    assert!(matches!(
        store.slice(&exact, 100_000 - 100_000 % G + G, G),
        Err(BlobError::InvalidRange { .. })
    ));
    let src = open_mem(&MemDir::new());
    let (large, size) = src.import(&data(17, 3 << 20)[..]).unwrap();
    let s = src.slice(&large, G, u64::MAX).unwrap();
    assert_eq!((s.offset, s.len), (G, MAX_SLICE_DATA));
    assert!(s.encoded.len() as u64 <= MAX_SLICE_BYTES);
    let s = src.slice(&large, size - G, u64::MAX).unwrap();
    assert_eq!(s.len, G);
}

#[test]
fn the_slice_byte_limit_holds_for_the_largest_blob() {
    use bao_tree::iter::BaoChunk;
    let tree = verify::tree(MAX_BLOB_BYTES);
    let mut rng = ChaCha8Rng::seed_from_u64(18);
    let groups = MAX_BLOB_BYTES / G;
    let per_slice = MAX_SLICE_DATA / G;
    let mut starts = vec![0, groups / 2 - 1, groups - per_slice, groups / 3];
    starts.extend((0..200).map(|_| rng.next_u64() % (groups - per_slice + 1)));
    let mut worst = 0;
    for g in starts {
        let (start, end) = (g * G, g * G + MAX_SLICE_DATA);
        let ranges = verify::chunk_ranges(start, end, MAX_BLOB_BYTES);
        let mut bytes = 0u64;
        for item in tree.ranges_pre_order_chunks_iter_ref(&ranges, 0) {
            bytes += match item {
                BaoChunk::Parent { .. } => 64,
                BaoChunk::Leaf { size, .. } => size as u64,
            };
        }
        worst = worst.max(bytes);
    }
    assert!(worst > MAX_SLICE_DATA);
    assert!(
        worst <= MAX_SLICE_BYTES,
        "worst slice {worst} > {MAX_SLICE_BYTES}"
    );
}

#[test]
fn empty_blobs_and_unknown_hashes() {
    let dir = MemDir::new();
    let store = open_mem(&dir);
    let empty = BlobHash::of(&[]);
    let other = BlobHash::from_bytes([9; 32]);
    assert!(matches!(
        store.begin(&other, 0),
        Err(BlobError::HashMismatch { size: 0, .. })
    ));
    assert_eq!(store.begin(&empty, 0).unwrap(), Progress::Complete);
    assert_eq!(store.read_range(&empty, 0, 0).unwrap(), Vec::<u8>::new());
    assert!(matches!(
        store.slice(&empty, 0, 1),
        Err(BlobError::InvalidRange { .. })
    ));
    for r in [
        store.size(&other).map(|_| ()),
        store.verify(&other),
        store.open_blob(&other).map(|_| ()),
        store.remove(&other),
        store.missing_ranges(&other).map(|_| ()),
        store.slice(&other, 0, G).map(|_| ()),
        store
            .write_slice(
                &other,
                &Slice {
                    offset: 0,
                    len: G,
                    encoded: vec![0; 10],
                },
            )
            .map(|_| ()),
    ] {
        assert!(matches!(r, Err(BlobError::NotFound { hash }) if hash == other));
    }
    store.remove(&empty).unwrap();
    assert!(!store.has(&empty));
    assert!(dir.names().is_empty());
}

#[test]
fn readers_seek_and_read_across_windows() {
    let store = open_mem(&MemDir::new());
    let bytes = data(19, 700_000);
    let (hash, size) = store.import(&bytes[..]).unwrap();
    let mut r = store.open_blob(&hash).unwrap();
    assert_eq!((r.hash(), r.size()), (hash, size));
    for at in [0u64, 1, G - 1, 262_143, 262_144, 500_001, size - 3] {
        r.seek(SeekFrom::Start(at)).unwrap();
        let mut buf = vec![0u8; 70_000];
        let mut got = Vec::new();
        let n = (&mut r).take(70_000).read_to_end(&mut got).unwrap();
        let end = (at as usize + 70_000).min(bytes.len());
        assert_eq!(n, end - at as usize);
        assert_eq!(got, &bytes[at as usize..end]);
        buf.clear();
    }
    r.seek(SeekFrom::End(-10)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, &bytes[bytes.len() - 10..]);
    assert!(r.seek(SeekFrom::Current(-(size as i64) - 1)).is_err());
}

#[test]
fn blob_hash_text_round_trips_and_refuses_anything_else() {
    let h = BlobHash::of(b"x");
    assert_eq!(h.to_string().parse::<BlobHash>().unwrap(), h);
    assert_eq!(h.to_string(), blake3::hash(b"x").to_hex().as_str());
    let upper = h.to_string().to_uppercase();
    let multibyte = format!("{}é", &h.to_string()[..62]);
    for bad in [
        "",
        "00",
        upper.as_str(),
        &h.to_string()[1..],
        multibyte.as_str(),
        &"g".repeat(64),
    ] {
        assert!(bad.parse::<BlobHash>().is_err(), "{bad:?}");
    }
}

#[test]
fn range_set_matches_a_bitmap() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 256,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[20; 32]),
    );
    let ops = proptest::collection::vec((any::<bool>(), 0u64..64, 0u64..64), 0..40);
    runner
        .run(&ops, |ops| {
            let mut set = RangeSet::default();
            let mut bits = [false; 64];
            for (add, a, b) in ops {
                let r = a.min(b)..a.max(b);
                if add {
                    set.insert(r.clone());
                } else {
                    set.remove(r.clone());
                }
                for bit in &mut bits[r.start as usize..r.end as usize] {
                    *bit = add;
                }
                let total = bits.iter().filter(|b| **b).count() as u64;
                prop_assert_eq!(set.total(), total);
                let missing: Vec<u64> = set
                    .missing(64)
                    .into_iter()
                    .flat_map(|r| r.start..r.end)
                    .collect();
                let want: Vec<u64> = (0..64).filter(|&i| !bits[i as usize]).collect();
                prop_assert_eq!(missing, want);
                for w in set.ranges().windows(2) {
                    prop_assert!(w[0].end < w[1].start, "merged and sorted");
                }
                for i in 0..63u64 {
                    prop_assert_eq!(
                        set.contains(&(i..i + 2)),
                        bits[i as usize] && bits[i as usize + 1]
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn random_slice_orders_and_splits_complete_to_the_same_bytes() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 24,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[21; 32]),
    );
    let strategy = (
        1u64..200_000,
        any::<u64>(),
        proptest::collection::vec(1u64..=4, 1..16),
        any::<u64>(),
        any::<bool>(),
    );
    runner
        .run(&strategy, |(size, seed, splits, order, crash)| {
            let bytes = data(seed, size);
            let src = open_mem(&MemDir::new());
            let (hash, _) = src.import(&bytes[..]).unwrap();
            // Cut the blob into runs of 1 to 4 groups, cycling through `splits`.
            let mut cut = Vec::new();
            let mut at = 0;
            let mut i = 0;
            while at < size {
                let s = src.slice(&hash, at, splits[i % splits.len()] * G).unwrap();
                at += s.len;
                i += 1;
                cut.push(s);
            }
            shuffle(&mut cut, order);
            let dir = MemDir::new();
            let mut dst = open_mem(&dir);
            dst.begin(&hash, size).unwrap();
            let half = cut.len() / 2;
            for (n, s) in cut.iter().enumerate() {
                if crash && n == half {
                    dst = open_mem(&dir.crash());
                }
                let p = dst.write_slice(&hash, s).unwrap();
                prop_assert_eq!(p == Progress::Complete, n + 1 == cut.len());
            }
            prop_assert_eq!(read_all(&dst, &hash), bytes);
            Ok(())
        })
        .unwrap();
}

#[test]
fn arbitrary_slices_from_a_peer_are_refused_without_panicking() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let src = open_mem(&MemDir::new());
    let bytes = data(22, 5 * G + 100);
    let (hash, size) = src.import(&bytes[..]).unwrap();
    let good = slices(&src, &hash, size, 2 * G);
    let dir = MemDir::new();
    let dst = open_mem(&dir);
    dst.begin(&hash, size).unwrap();
    let before = (
        dir.bytes(&part_name(&hash)).unwrap(),
        dir.bytes(&ranges_name(&hash)).unwrap(),
    );
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 512,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[23; 32]),
    );
    let offsets = prop_oneof![
        Just(0u64),
        Just(G),
        Just(2 * G),
        Just(4 * G),
        any::<u64>(),
        0u64..size + G
    ];
    let lens = prop_oneof![
        Just(G),
        Just(2 * G),
        Just(size - 4 * G),
        any::<u64>(),
        0u64..3 * G
    ];
    let encodings = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..3000),
        // A real slice's encoding with a byte changed, then cut or lengthened.
        (0usize..3, any::<usize>(), 1u8.., 0usize..70, any::<bool>()).prop_map(
            move |(which, at, x, cut, grow)| {
                let mut e = good[which].encoded.clone();
                let i = at % e.len();
                e[i] ^= x;
                if grow {
                    e.extend(std::iter::repeat_n(0, cut));
                } else {
                    e.truncate(e.len() - cut);
                }
                e
            }
        ),
    ];
    runner
        .run(&(offsets, lens, encodings), |(offset, len, encoded)| {
            let slice = Slice {
                offset,
                len,
                encoded,
            };
            let r = dst.write_slice(&hash, &slice);
            prop_assert!(matches!(r, Err(BlobError::SliceRejected { .. })), "{:?}", r);
            Ok(())
        })
        .unwrap();
    assert_eq!(
        (
            dir.bytes(&part_name(&hash)).unwrap(),
            dir.bytes(&ranges_name(&hash)).unwrap()
        ),
        before
    );
}

#[test]
fn concurrent_receivers_and_an_import_of_one_blob_agree() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<BlobStore>();
    let src = open_mem(&MemDir::new());
    let bytes = data(24, 40 * G + 321);
    let (hash, size) = src.import(&bytes[..]).unwrap();
    let all = slices(&src, &hash, size, G);
    for round in 0..8u64 {
        let dir = MemDir::new();
        let dst = open_mem(&dir);
        dst.begin(&hash, size).unwrap();
        std::thread::scope(|scope| {
            for t in 0..3u64 {
                let mut order = all.clone();
                shuffle(&mut order, round * 10 + t);
                let dst = &dst;
                scope.spawn(move || {
                    for s in &order {
                        let p = dst.write_slice(&hash, s).expect("write_slice");
                        if p == Progress::Complete {
                            assert!(dst.has(&hash));
                        }
                    }
                });
            }
            let (dst, bytes) = (&dst, &bytes);
            scope.spawn(move || {
                if round % 2 == 0 {
                    assert_eq!(dst.import(&bytes[..]).unwrap(), (hash, size));
                }
            });
            scope.spawn(move || {
                for _ in 0..50 {
                    if !dst.has(&hash) {
                        // Missing ranges only shrink to nothing, or the blob is complete.
                        let _ = dst.missing_ranges(&hash).expect("missing_ranges");
                    }
                    assert!(dst.partials().len() <= 1);
                }
            });
        });
        assert!(dst.has(&hash), "round {round}");
        assert!(dst.partials().is_empty());
        assert_eq!(read_all(&dst, &hash), bytes);
        assert_eq!(dir.names(), vec![blob_name(&hash)], "round {round}");
        let reopened = open_mem(&dir);
        assert_eq!(reopened.recovery(), &Recovery::default());
    }
}

#[test]
fn a_damaged_blob_is_set_aside_and_only_its_damaged_groups_are_fetched_again() {
    let dir = MemDir::new();
    let store = open_mem(&dir);
    let peer = open_mem(&MemDir::new());
    let size = 3 * 1024 * 1024 + 100;
    let bytes = data(41, size);
    let (hash, _) = store.import(&bytes[..]).unwrap();
    peer.import(&bytes[..]).unwrap();
    // Intact: nothing to do.
    assert_eq!(
        store.repair(&hash).unwrap(),
        Vec::<std::ops::Range<u64>>::new()
    );
    assert!(store.has(&hash));

    // Two flipped bytes, in two groups far apart (one in the last, short group).
    let (a, b) = (5 * G + 7, size - 10);
    assert!(dir.corrupt(&blob_name(&hash), HEADER_LEN + a, 0x20));
    assert!(dir.corrupt(&blob_name(&hash), HEADER_LEN + b, 0x01));
    let last = (size / G) * G;
    let damaged = store.repair(&hash).unwrap();
    assert_eq!(damaged, vec![5 * G..6 * G, last..size]);
    assert!(!store.has(&hash), "set aside: not served");
    assert!(matches!(
        store.slice(&hash, 0, G),
        Err(BlobError::NotFound { .. })
    ));
    assert_eq!(store.missing_ranges(&hash).unwrap(), damaged);

    // The set-aside survives a crash (it was made durable before it was reported).
    let dir = dir.crash();
    let store = open_mem(&dir);
    assert_eq!(store.missing_ranges(&hash).unwrap(), damaged);

    // Only the damaged groups are fetched again, and the blob completes, byte for byte.
    assert_eq!(
        store.begin(&hash, size).unwrap(),
        Progress::Partial {
            missing: G + (size - last)
        }
    );
    for r in &damaged {
        let s = peer.slice(&hash, r.start, r.end - r.start).unwrap();
        store.write_slice(&hash, &s).unwrap();
    }
    assert!(store.has(&hash));
    assert_eq!(read_all(&store, &hash), bytes);
}

#[test]
fn a_damaged_outboard_is_repaired_from_a_peer_too() {
    let dir = MemDir::new();
    let store = open_mem(&dir);
    let peer = open_mem(&MemDir::new());
    let bytes = data(42, 40 * G);
    let (hash, size) = store.import(&bytes[..]).unwrap();
    peer.import(&bytes[..]).unwrap();
    // A flipped byte in the outboard (a hash pair near the top of the tree).
    let outboard = (size.div_ceil(G) - 1) * 64;
    assert!(dir.corrupt(&blob_name(&hash), HEADER_LEN + size + outboard - 40, 0x08));
    let damaged = store.repair(&hash).unwrap();
    assert!(!damaged.is_empty());
    for r in store.missing_ranges(&hash).unwrap() {
        let mut at = r.start;
        while at < r.end {
            let s = peer.slice(&hash, at, r.end - at).unwrap();
            at += s.len;
            store.write_slice(&hash, &s).unwrap();
        }
    }
    assert!(store.has(&hash));
    store.verify(&hash).unwrap();
    assert_eq!(read_all(&store, &hash), bytes);
}
