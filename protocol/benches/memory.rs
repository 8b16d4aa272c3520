//! Memory per entry of a loaded record, full and lean ([`Record::set_source`]), measured
//! in one run: `cargo bench -p cophr-protocol --bench memory` (100,000 entries of about
//! 1 KB; `COPHR_BENCH_ENTRIES` sets the size). `cargo test` runs it once at 2,000 entries,
//! so it cannot rot.
//!
//! The heap is counted by dhat (bytes and blocks live, not pages touched: freed memory
//! the allocator keeps would hide growth from a resident-set reading). The entries are
//! generated first and kept as their encoded bytes; the lean record's source decodes them
//! when asked, as the node's source reads them from the log. Each record is measured as
//! the heap it holds once built (its entries decoded one at a time, as a node loads them).

use std::sync::Arc;

use cophr_protocol::record::{EntrySource, Record};
use cophr_protocol::testkit::{bp, Fixture};
use cophr_protocol::{Category, EntryId, Payload, SignedEntry, Value, Verified};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// Heap bytes and blocks live now.
fn heap() -> (u64, u64) {
    let s = dhat::HeapStats::get();
    (s.curr_bytes as u64, s.curr_blocks as u64)
}

/// The entries' encoded bytes, decoded when asked.
#[derive(Debug)]
struct Encoded(std::collections::HashMap<EntryId, Vec<u8>>);

impl EntrySource for Encoded {
    fn load(&self, id: &EntryId) -> Option<Verified> {
        let e = SignedEntry::decode_known(self.0.get(id)?.clone(), id).ok()?;
        Some(Verified::trusted(e))
    }
}

fn one_kb_body(i: u64) -> Value {
    let mut body = bp(100 + (i % 80) as i64, 70);
    if let Value::Map(m) = &mut body {
        m.insert("comment".into(), Value::Text("x".repeat(800)));
    }
    body
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("COPHR_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 100_000 } else { 2_000 });
    let bytes: Vec<(EntryId, Vec<u8>)> = {
        let mut f = Fixture::new(6, "George");
        let george = f.patient.clone();
        for i in 0..n {
            let p = Payload::Create {
                category: Category::VitalSigns,
                body: one_kb_body(i),
            };
            f.write(&george, p).expect("valid");
        }
        f.record
            .entries()
            .map(|e| (e.id(), e.signed().bytes().to_vec()))
            .collect()
    };
    let id = Fixture::new(6, "George").record.id();
    let total = bytes.len() as u64;
    let encoded: u64 = bytes.iter().map(|(_, b)| b.len() as u64).sum();
    let decode = |b: &[u8]| Verified::trusted(SignedEntry::decode(b).expect("decodes"));

    let source = Arc::new(Encoded(bytes.iter().cloned().collect()));
    let _profiler = dhat::Profiler::builder()
        .testing()
        .trim_backtraces(Some(1))
        .build();
    let before = heap();
    let mut lean = Record::new(id);
    lean.set_source(source.clone());
    for (_, b) in &bytes {
        lean.apply_known(decode(b)).expect("applies");
    }
    let after = heap();
    let lean_mem = (after.0 - before.0, after.1 - before.1);
    assert_eq!(lean.len() as u64, total);
    let held = lean.held_in_memory();

    let before = heap();
    let mut full = Record::new(id);
    for (_, b) in &bytes {
        full.apply_known(decode(b)).expect("applies");
    }
    let after = heap();
    let full_mem = (after.0 - before.0, after.1 - before.1);
    assert_eq!(full.len() as u64, total);

    let per = |m: (u64, u64)| m.0 as f64 / total as f64;
    let blocks = |m: (u64, u64)| m.1 as f64 / total as f64;
    println!(
        "memory: {total} entries ({:.0} bytes each encoded); the lean record holds {held} of \
         them in memory",
        encoded as f64 / total as f64
    );
    println!(
        "  full record: {:>6.0} heap bytes/entry in {:.1} blocks ({:.1} MiB)",
        per(full_mem),
        blocks(full_mem),
        full_mem.0 as f64 / 1048576.0
    );
    println!(
        "  lean record: {:>6.0} heap bytes/entry in {:.1} blocks ({:.1} MiB); target 300 \
         bytes/entry: ratio {:.2}",
        per(lean_mem),
        blocks(lean_mem),
        lean_mem.0 as f64 / 1048576.0,
        per(lean_mem) / 300.0
    );
    println!(
        "  full / lean: {:.1}",
        full_mem.0 as f64 / lean_mem.0.max(1) as f64
    );
    drop(full);
    drop(lean);
}
