//! Helper process for `tests/tests/crash.rs`: appends entries to a store from several threads
//! and prints `<record id> <entry id>` on stdout for every acknowledged write (one line each,
//! flushed), so the parent can kill it with SIGKILL at any point and then check that every
//! entry it saw acknowledged survived.
//!
//! Usage: `crash_writer <store dir> <seed> <count>`. Thread 0 writes into George's record,
//! threads 1 and 2 into the records of patients P1 and P2; each record is created (and its
//! genesis entry printed) when it is not held yet. `count` vital-signs entries are written in
//! total, shared between the threads. Every third write is a batch ([`Store::write_all`]) of
//! 2 to 4 entries (device [`BATCH_DEVICE`], one import audit event), printed as one line per
//! entry in a single write once the batch is acknowledged. A fourth thread creates the
//! record of patient `Moved`, writes into it and removes it (compacting the log, as a host
//! does when it releases a record that moved away), a few times, printing `removed
//! <record id>` after each removal returned. Record contents are never printed.
//!
//! Records are snapshotted every [`SNAPSHOT_EVERY`] new entries (not 2,000), and at the end
//! of a run that was not killed, as a node does when it stops: so later runs write through
//! records' admission parts (`node/src/store/snapshots.rs`), and kills land in those writes
//! and in the catching up of a part with the log beyond it. After a write, a line `parts
//! <n>` says the run has loaded `n` records as their admission part so far.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cophr_node::store::{BatchInfo, Store, StoreError};
use cophr_protocol::audit::Action;
use cophr_protocol::testkit::{bp, key, profile};
use cophr_protocol::{Category, EntryId, Payload, RecordId};

/// The patients whose records are written, one writer thread each.
const PATIENTS: [&str; 3] = ["George", "P1", "P2"];

/// The device of entries written in batches (the crash test checks them all or nothing).
const BATCH_DEVICE: &str = "crash-writer-batch";

/// How many new entries make a record's snapshot and admission part be written again.
const SNAPSHOT_EVERY: usize = 25;

/// Start of the clock (ms since the epoch); each run and write advances it.
const EPOCH_MS: u64 = 1_700_000_000_000;

fn usage() -> ExitCode {
    eprintln!("usage: crash_writer <store dir> <seed> <count>");
    ExitCode::from(2)
}

/// Prints one acknowledged write and flushes, so the line is in the pipe before the next
/// write starts.
fn report(record: &RecordId, entry: &EntryId) -> Result<(), String> {
    report_all(record, std::slice::from_ref(entry))
}

/// Prints several acknowledged entries (one line each) in one write, and flushes.
fn report_all(record: &RecordId, entries: &[EntryId]) -> Result<(), String> {
    let lines: String = entries.iter().map(|e| format!("{record} {e}\n")).collect();
    let mut out = std::io::stdout().lock();
    out.write_all(lines.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("stdout: {e}"))
}

/// How many records this run has loaded as their admission part, as last printed.
static PARTS_PRINTED: AtomicU64 = AtomicU64::new(0);

/// Prints `parts <n>` when the store has loaded more records as their admission part
/// since last printed (so the parent knows which runs wrote through one).
fn report_parts(store: &Store) -> Result<(), String> {
    let n = store.admission_loads();
    if n > PARTS_PRINTED.fetch_max(n, Ordering::Relaxed) {
        let mut out = std::io::stdout().lock();
        out.write_all(format!("parts {n}\n").as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    Ok(())
}

/// SplitMix64: reproducible readings without an RNG dependency.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A blood pressure reading drawn from `r`.
fn reading(r: u64) -> Payload {
    Payload::Create {
        category: Category::VitalSigns,
        body: bp(100 + (r % 80) as i64, 60 + ((r >> 16) % 40) as i64),
    }
}

fn writer(
    store: &Store,
    patient: &str,
    seed: u64,
    count: u64,
    next: &AtomicU64,
) -> Result<(), String> {
    let patient_key = key(1, patient);
    let record = patient_key.actor();
    // Runs with different seeds write at different (possibly earlier) times; the record
    // keeps each entry's time at least that of its causal past.
    let base = EPOCH_MS + (seed % 1_000_000) * 10_000_000;
    let held = store
        .holds(&record)
        .map_err(|e| format!("{patient}: holds: {e}"))?;
    if !held {
        let genesis = store
            .create_record(&patient_key, profile(patient, "patient", None), base, None)
            .map_err(|e| format!("{patient}: create record: {e}"))?;
        report(&record, &genesis)?;
    }
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= count {
            return Ok(());
        }
        let r = mix(seed ^ mix(i));
        if i % 3 == 2 {
            let n = 2 + r % 3;
            let payloads = (0..n).map(|j| reading(mix(r ^ j))).collect();
            let ids = store
                .write_all(
                    &record,
                    &patient_key,
                    payloads,
                    BatchInfo {
                        action: Action::Import,
                        detail: Some(format!("{n} readings")),
                    },
                    base + 1_000 * (i + 1),
                    Some(BATCH_DEVICE.into()),
                )
                .map_err(|e| format!("{patient}: batch {i}: {e}"))?;
            report_all(&record, &ids)?;
            report_parts(store)?;
            continue;
        }
        let entry = store
            .write(
                &record,
                &patient_key,
                reading(r),
                base + 1_000 * (i + 1),
                Some("crash-writer".into()),
            )
            .map_err(|e| format!("{patient}: write {i}: {e}"))?;
        report(&record, &entry)?;
        report_parts(store)?;
    }
}

/// The patient whose record is removed again and again (as a host releases a record that
/// moved away): its removal compacts the log while the other threads write.
const MOVED: &str = "Moved";

/// Thread 3: creates `MOVED`'s record when not held, writes two readings into it, removes
/// it ([`Store::remove_record`], which compacts the log) and prints `removed <record>` once
/// that returned; `1 + seed % 3` times.
fn mover(store: &Store, seed: u64) -> Result<(), String> {
    let patient_key = key(1, MOVED);
    let record = patient_key.actor();
    let base = EPOCH_MS + (seed % 1_000_000) * 10_000_000;
    for cycle in 0..1 + seed % 3 {
        let t = base + 100_000 * (cycle + 1);
        if !store
            .holds(&record)
            .map_err(|e| format!("{MOVED}: holds: {e}"))?
        {
            let genesis = store
                .create_record(&patient_key, profile(MOVED, "patient", None), t, None)
                .map_err(|e| format!("{MOVED}: create record: {e}"))?;
            report(&record, &genesis)?;
        }
        for j in 0..2u64 {
            let r = mix(seed ^ mix(cycle * 7 + j));
            let entry = store
                .write(
                    &record,
                    &patient_key,
                    reading(r),
                    t + 1_000 * (j + 1),
                    Some("crash-writer".into()),
                )
                .map_err(|e| format!("{MOVED}: write: {e}"))?;
            report(&record, &entry)?;
        }
        store
            .remove_record(&record)
            .map_err(|e| format!("{MOVED}: remove: {e}"))?;
        let mut out = std::io::stdout().lock();
        out.write_all(format!("removed {record}\n").as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    Ok(())
}

fn run(dir: &Path, seed: u64, count: u64) -> Result<(), String> {
    // The parent may have dropped its own handle on the store a moment ago, and sled 0.34
    // releases its lock file from background threads: wait for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let store = loop {
        match Store::open(dir, key(0, "node")) {
            Ok((store, _)) => break store,
            Err(StoreError::Locked) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("open {}: {e}", dir.display())),
        }
    };
    store.set_snapshot_min_new(SNAPSHOT_EVERY);
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        let mut handles: Vec<_> = PATIENTS
            .iter()
            .map(|patient| {
                let (store, next) = (&store, &next);
                s.spawn(move || writer(store, patient, seed, count, next))
            })
            .collect();
        let store = &store;
        handles.push(s.spawn(move || mover(store, seed)));
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("writer thread panicked".into()))
            })
            .collect::<Result<Vec<()>, String>>()
    })?;
    // As a node stopping: every grown record's snapshot and admission part.
    store.snapshot_all();
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, seed, count] = args.as_slice() else {
        return usage();
    };
    let (Ok(seed), Ok(count)) = (seed.parse::<u64>(), count.parse::<u64>()) else {
        return usage();
    };
    match run(&PathBuf::from(dir), seed, count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crash_writer: {e}");
            ExitCode::FAILURE
        }
    }
}
