//! The node's log as it is found on disk at open (`node/src/store/log`): any bytes. Opening
//! never panics; when it succeeds (a torn tail cut, or nothing to cut), every frame it
//! counted reads back, and what it left reopens clean with nothing more to cut. Opening
//! from a frame's offset (`LogOptions::scan_from`, as the store does) keeps exactly what
//! the whole scan keeps and counts the frames after where it started; from any offset at
//! all, it never panics.
#![no_main]

use cophr_node::store::log::{Log, LogOptions, MemLog};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = MemLog::from_bytes(data.to_vec());
    let Ok((log, recovery)) = Log::open(file.clone()) else {
        return;
    };
    let mut frames = 0u64;
    let mut offsets = Vec::new();
    for f in log.iter_from(0) {
        let (offset, _, _) = f.expect("a frame the recovered log counted reads back");
        offsets.push(offset);
        frames += 1;
    }
    assert_eq!(frames, recovery.frames);
    drop(log);
    let (_, again) = Log::open(MemLog::from_bytes(file.bytes())).expect("a recovered log reopens");
    assert_eq!(again.truncated_bytes, 0, "reopening cut more");
    assert_eq!(again.frames, recovery.frames);

    // From a frame's offset (what the store passes: its index's applied position, always
    // the end of a frame it wrote): exactly what the whole scan keeps.
    for from in offsets.iter().copied().skip(1).take(4) {
        let options = LogOptions {
            scan_from: Some(from),
            ..LogOptions::default()
        };
        let (log, r) = Log::open_with(MemLog::from_bytes(data.to_vec()), options)
            .expect("what opens whole opens from a frame's offset");
        assert_eq!(
            r.valid_len, recovery.valid_len,
            "from {from}: kept another length"
        );
        let after = log.iter_from(r.scanned_from).count() as u64;
        assert_eq!(after, r.frames, "from {from}: counted other frames");
    }
    // From any offset at all: never a panic, and every frame counted reads back.
    let arbitrary = (data.len() as u64).wrapping_mul(7919) % (data.len() as u64 + 2);
    let options = LogOptions {
        scan_from: Some(arbitrary),
        ..LogOptions::default()
    };
    if let Ok((log, r)) = Log::open_with(MemLog::from_bytes(data.to_vec()), options) {
        for f in log.iter_from(r.scanned_from) {
            f.expect("a frame counted reads back");
        }
    }
});
