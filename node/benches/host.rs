//! Storage and host benchmarks, printed as figures (not criterion: these are one-shot
//! measurements of latency percentiles, start-up time and memory).
//!
//! Run: `cargo bench -p cophr-node --bench host` (sizes via COPHR_BENCH_RECORDS,
//! COPHR_BENCH_ENTRIES_PER_RECORD, COPHR_BENCH_APPENDS, COPHR_BENCH_LARGE). With `--smoke`
//! (used by the tests) everything runs at tiny sizes.

use std::time::{Duration, Instant};

use cophr_node::store::Store;
use cophr_protocol::testkit::{bp, key, profile};
use cophr_protocol::{Category, Payload};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    run(std::env::args().any(|a| a == "--smoke"));
}

/// Runs every measurement; `smoke` uses tiny sizes (the tests run it so it cannot rot).
pub fn run(smoke: bool) {
    let (records, per_record, appends) = if smoke {
        (20, 5, 50)
    } else {
        (
            env("COPHR_BENCH_RECORDS", 10_000),
            env("COPHR_BENCH_ENTRIES_PER_RECORD", 100),
            env("COPHR_BENCH_APPENDS", 2_000),
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");

    // 1. Local durable write latency: one writer, each write fsync'd before it returns.
    {
        let (store, _) = Store::open(&dir.path().join("latency"), key(0, "node")).expect("open");
        let g = key(1, "George");
        store
            .create_record(&g, profile("George", "patient", None), 1, None)
            .expect("create");
        let mut lat = Vec::with_capacity(appends);
        let start = Instant::now();
        for i in 0..appends {
            let t = Instant::now();
            store
                .write(
                    &g.actor(),
                    &g,
                    Payload::Create {
                        category: Category::VitalSigns,
                        body: bp(100 + (i % 80) as i64, 70),
                    },
                    2 + i as u64,
                    None,
                )
                .expect("write");
            lat.push(t.elapsed());
        }
        let total = start.elapsed();
        lat.sort();
        println!(
            "durable write (sign, validate, fsync entry + audit event): {appends} writes, p50 {:?}, p99 {:?}, max {:?}, {:.0} writes/s (target p99 <= 20 ms)",
            percentile(&lat, 0.50),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or_default(),
            appends as f64 / total.as_secs_f64()
        );
    }

    // 2. A community host: many records; start-up time and memory.
    let host_dir = dir.path().join("host");
    {
        let (store, _) = Store::open(&host_dir, key(0, "host")).expect("open");
        let start = Instant::now();
        for r in 0..records {
            let p = key(2, &format!("patient-{r}"));
            let mut trial = cophr_protocol::record::Record::new(p.actor());
            let mut batch = Vec::with_capacity(per_record);
            let g = trial
                .prepare(
                    &p,
                    Payload::Genesis {
                        profile: profile("P", "patient", None),
                    },
                    None,
                    1,
                    None,
                )
                .expect("genesis");
            trial.apply(g.clone()).expect("apply");
            batch.push(g);
            for i in 1..per_record {
                let v = trial
                    .prepare(
                        &p,
                        Payload::Create {
                            category: Category::VitalSigns,
                            body: bp(100 + (i % 80) as i64, 70),
                        },
                        None,
                        1 + i as u64,
                        None,
                    )
                    .expect("entry");
                trial.apply(v.clone()).expect("apply");
                batch.push(v);
            }
            store.ingest(&p.actor(), batch).expect("ingest");
        }
        println!(
            "filled a host with {records} records of {per_record} entries in {:?}",
            start.elapsed()
        );
    }
    let before = rss_kib().unwrap_or(0);
    let start = Instant::now();
    let (store, report) = Store::open(&host_dir, key(0, "host")).expect("reopen");
    let held = store.records().expect("records").len();
    let startup = start.elapsed();
    let after = rss_kib().unwrap_or(0);
    assert_eq!(held, records);
    println!(
        "host start-up with {held} records: {startup:?} (target <= 2 s; ratio {:.2}), resident memory +{} MiB, replayed {} frames",
        startup.as_secs_f64() / 2.0,
        after.saturating_sub(before) / 1024,
        report.replayed
    );
    // First access to one record loads it from the log.
    let t = Instant::now();
    let n = store
        .with_record(&key(2, "patient-0").actor(), |r| r.len())
        .expect("load");
    println!("first load of one {n}-entry record: {:?}", t.elapsed());
    // A node touching every record it holds (a provider node syncing them all) keeps only
    // a bounded cache of them loaded.
    let limits = cophr_node::store::CacheLimits {
        records: if smoke { 2 } else { 1024 },
        entries: if smoke { 10 } else { 100_000 },
    };
    store.set_record_cache(limits);
    let before = rss_kib().unwrap_or(0);
    let t = Instant::now();
    for i in 0..records {
        store
            .with_record(&key(2, &format!("patient-{i}")).actor(), |r| r.len())
            .expect("load");
    }
    let took = t.elapsed();
    let loaded = store.loaded();
    assert!(loaded.records <= limits.records.max(1), "{loaded:?}");
    println!(
        "touched all {records} records with a cache of {} records / {} entries: {:?} per record, resident memory +{} MiB, loaded {} records ({} entries), dropped {}",
        limits.records,
        limits.entries,
        took / records.max(1) as u32,
        rss_kib().unwrap_or(0).saturating_sub(before) / 1024,
        loaded.records,
        loaded.entries,
        loaded.dropped
    );
    drop(store);

    // 3. One large record: opening it after a restart, from its snapshot and from the
    // whole log, and the first write after a restart.
    let large = if smoke {
        3_000
    } else {
        env("COPHR_BENCH_LARGE", 1_000_000)
    };
    large_record(&dir.path().join("large"), large);
}

/// Fills a store with one record of `n` entries (about 1 KB each, plain), leaves it as a
/// node does at shutdown (with its snapshot), then opens it again: from the snapshot, and
/// (the snapshot set aside) from the whole log.
fn large_record(dir: &std::path::Path, n: usize) {
    let p = key(3, "large");
    {
        let (store, _) = Store::open(dir, key(0, "node")).expect("open");
        let mut trial = cophr_protocol::record::Record::new(p.actor());
        let mut batch = Vec::new();
        let g = trial
            .prepare(
                &p,
                Payload::Genesis {
                    profile: profile("P", "patient", None),
                },
                None,
                1,
                None,
            )
            .expect("genesis");
        trial.apply(g.clone()).expect("apply");
        batch.push(g);
        let start = Instant::now();
        for i in 1..n {
            let mut body = bp(100 + (i % 80) as i64, 70);
            if let cophr_protocol::Value::Map(m) = &mut body {
                m.insert(
                    "comment".into(),
                    cophr_protocol::Value::Text("x".repeat(800)),
                );
            }
            let v = trial
                .prepare(
                    &p,
                    Payload::Create {
                        category: Category::VitalSigns,
                        body,
                    },
                    None,
                    1 + i as u64,
                    None,
                )
                .expect("entry");
            trial.apply_known(v.clone()).expect("apply");
            batch.push(v);
            if batch.len() >= 16_384 {
                store
                    .ingest(&p.actor(), std::mem::take(&mut batch))
                    .expect("ingest");
                // Keep only what a node keeps: the store's lean copy.
                trial = store
                    .with_record(&p.actor(), |r| r.clone())
                    .expect("record");
            }
        }
        store.ingest(&p.actor(), batch).expect("ingest");
        println!("filled one record of {n} entries in {:?}", start.elapsed());
        store.snapshot_all();
    }
    let snapshot = dir.join("snapshots").join(p.actor().to_string());
    let bytes = std::fs::metadata(&snapshot).map(|m| m.len()).unwrap_or(0);
    let open = |label: &str| {
        let before = rss_kib().unwrap_or(0);
        let start = Instant::now();
        let (store, _) = Store::open(dir, key(0, "node")).expect("reopen");
        let held = store.with_record(&p.actor(), |r| r.len()).expect("load");
        let took = start.elapsed();
        let rss = rss_kib().unwrap_or(0).saturating_sub(before);
        assert_eq!(held, n);
        println!(
            "open + load the {n}-entry record {label}: {took:?} (target <= 1 s; ratio {:.2}), resident memory +{} MiB ({} bytes/entry; target <= 300 MB at 1,000,000: ratio {:.2})",
            took.as_secs_f64(),
            rss / 1024,
            rss * 1024 / n as u64,
            (rss as f64 * 1024.0 / n as f64) / 300.0
        );
        (store, took)
    };
    let (store, from_snapshot) = open(&format!("from its snapshot ({} MB)", bytes / 1_000_000));
    assert_eq!(store.loads(), (1, 0), "loaded from the snapshot");
    drop(store);
    // The first write after a restart.
    let n = {
        let (store, _) = Store::open(dir, key(0, "node")).expect("reopen");
        let t = Instant::now();
        store
            .write(
                &p.actor(),
                &p,
                Payload::Create {
                    category: Category::VitalSigns,
                    body: bp(120, 80),
                },
                10 + n as u64,
                None,
            )
            .expect("write");
        println!(
            "first write after a restart (load, sign, validate, fsync): {:?}",
            t.elapsed()
        );
        store.with_record(&p.actor(), |r| r.len()).expect("load")
    };
    std::fs::remove_file(&snapshot).expect("set the snapshot aside");
    let before = rss_kib().unwrap_or(0);
    let start = Instant::now();
    let (store, _) = Store::open(dir, key(0, "node")).expect("reopen");
    store.set_snapshot_min_new(usize::MAX);
    let held = store.with_record(&p.actor(), |r| r.len()).expect("load");
    let replayed = start.elapsed();
    assert_eq!(held, n);
    assert_eq!(store.loads(), (0, 1));
    println!(
        "open + load the same record from the whole log (no snapshot): {replayed:?}, resident memory +{} MiB; snapshot / log: {:.3}",
        rss_kib().unwrap_or(0).saturating_sub(before) / 1024,
        from_snapshot.as_secs_f64() / replayed.as_secs_f64()
    );
}
