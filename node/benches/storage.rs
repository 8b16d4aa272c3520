//! Storage benchmarks: durable (fsync'd) appends of 1 KiB payloads to a [`FileLog`] in a
//! temporary directory, with group commit versus one fsync per entry. `cargo test` runs
//! each once (criterion's test mode), so they cannot rot.
//!
//! [`FileLog`]: cophr_node::store::log::FileLog

use std::hint::black_box;
use std::time::{Duration, Instant};

use cophr_node::store::log::{Log, LogOptions};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PAYLOAD: usize = 1024;
const THREADS: u64 = 4;
const BATCH: usize = 64;

/// `iters` appends spread over `THREADS` threads; the time until all are fsync'd.
fn append_from_threads(log: &Log, payload: &[u8], iters: u64) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let n = iters / THREADS + u64::from(t < iters % THREADS);
            s.spawn(move || {
                for _ in 0..n {
                    black_box(log.append(1, payload).expect("append"));
                }
            });
        }
    });
    start.elapsed()
}

fn durable_append(c: &mut Criterion) {
    let payload = vec![0xA5u8; PAYLOAD];
    let dir = tempfile::tempdir().expect("tempdir");

    let mut group = c.benchmark_group("log_durable_append_1KiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(1));
    for (name, options) in [
        (
            "group_commit_4_threads",
            LogOptions {
                sync_each: false,
                scan_from: None,
            },
        ),
        (
            "sync_each_4_threads",
            LogOptions {
                sync_each: true,
                scan_from: None,
            },
        ),
    ] {
        let (log, _) =
            Log::open_path_with(dir.path().join(format!("{name}.log")), options).expect("open log");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| append_from_threads(&log, &payload, iters));
        });
    }
    group.finish();

    // Bulk import / sync: many entries per fsync.
    let mut group = c.benchmark_group("log_durable_append_batch_1KiB");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    let (log, _) = Log::open_path(dir.path().join("batch.log")).expect("open log");
    let items: Vec<(u8, &[u8])> = (0..BATCH).map(|_| (1u8, payload.as_slice())).collect();
    group.bench_function(format!("append_batch_{BATCH}"), |b| {
        b.iter(|| black_box(log.append_batch(&items).expect("append_batch")));
    });
    group.finish();
}

criterion_group!(benches, durable_append);
criterion_main!(benches);
