//! The node's log as it is found on disk at open (`node/src/store/log`): any bytes. Opening
//! never panics; when it succeeds (a torn tail cut, or nothing to cut), every frame it
//! counted reads back, and what it left reopens clean with nothing more to cut.
#![no_main]

use cophr_node::store::log::{Log, MemLog};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = MemLog::from_bytes(data.to_vec());
    let Ok((log, recovery)) = Log::open(file.clone()) else {
        return;
    };
    let mut frames = 0u64;
    for f in log.iter_from(0) {
        f.expect("a frame the recovered log counted reads back");
        frames += 1;
    }
    assert_eq!(frames, recovery.frames);
    drop(log);
    let (_, again) = Log::open(MemLog::from_bytes(file.bytes())).expect("a recovered log reopens");
    assert_eq!(again.truncated_bytes, 0, "reopening cut more");
    assert_eq!(again.frames, recovery.frames);
});
