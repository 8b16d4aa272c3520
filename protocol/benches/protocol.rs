//! Protocol benchmarks: entry encode, sign, verify, batch verify, decode, and
//! state-at-time over a 100,000-entry record. Run: `cargo bench -p cophr-protocol`.
//! Set `COPHR_BENCH_ENTRIES` to change the record size for state-at-time. `cargo test`
//! runs every benchmark once, at a small size, so they cannot rot.

use std::time::Duration;

use cophr_protocol::entry::verify_batch;
use cophr_protocol::fold::current;
use cophr_protocol::testkit::{bp, Fixture};
use cophr_protocol::{Category, Payload, SignedEntry, Value};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// A vital-signs entry padded with a comment to about 1 KB encoded.
fn one_kb_body(i: u64) -> Value {
    let mut body = bp(100 + (i % 80) as i64, 70);
    if let Value::Map(m) = &mut body {
        m.insert("comment".into(), Value::Text("x".repeat(800)));
    }
    body
}

fn entries(c: &mut Criterion) {
    let f = Fixture::new(1, "George");
    let payload = Payload::Create {
        category: Category::VitalSigns,
        body: one_kb_body(1),
    };
    let entry = f
        .record
        .next_entry(&f.patient.actor(), payload.clone(), None, f.now, None);
    let signed = entry.clone().sign(&f.patient);
    let bytes = signed.bytes().to_vec();
    let mut g = c.benchmark_group("entry");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode", |b| b.iter(|| black_box(entry.signing_bytes())));
    g.bench_function("sign", |b| {
        b.iter(|| black_box(entry.clone().sign(&f.patient)))
    });
    g.bench_function("decode", |b| {
        b.iter(|| black_box(SignedEntry::decode(&bytes).is_ok()))
    });
    g.bench_function("verify", |b| {
        b.iter_batched(
            || signed.clone(),
            |s| black_box(s.verify().is_ok()),
            BatchSize::SmallInput,
        )
    });
    let batch: Vec<SignedEntry> = (0..64)
        .map(|i| {
            f.record
                .next_entry(
                    &f.patient.actor(),
                    Payload::Create {
                        category: Category::VitalSigns,
                        body: one_kb_body(i),
                    },
                    None,
                    f.now,
                    None,
                )
                .sign(&f.patient)
        })
        .collect();
    g.throughput(Throughput::Elements(64));
    g.bench_function("verify_batch_64", |b| {
        b.iter_batched(
            || batch.clone(),
            |v| black_box(verify_batch(v).is_ok()),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn state_at_time(c: &mut Criterion) {
    let n: u64 = std::env::var("COPHR_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        // `cargo test` runs this once as a smoke test (criterion's test mode, no `--bench`
        // argument): a small record is enough there.
        .unwrap_or(if std::env::args().any(|a| a == "--bench") {
            100_000
        } else {
            1_000
        });
    let mut f = Fixture::new(2, "George");
    let george = f.patient.clone();
    let mut items = Vec::new();
    for i in 0..n {
        let p = if i % 10 == 9 && !items.is_empty() {
            Payload::Amend {
                target: items[(i as usize * 7) % items.len()],
                body: bp(120, 80),
            }
        } else {
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(100 + (i % 80) as i64, 70),
            }
        };
        let v = f.write(&george, p).expect("valid");
        if matches!(v.entry().payload, Payload::Create { .. }) {
            items.push(v.id());
        }
    }
    let mid = f.now - (n * 1000) / 2;
    let viewer = f.record.viewer(&george.actor(), f.now);
    let mut g = c.benchmark_group("record");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function(format!("state_at_time_{n}"), |b| {
        b.iter(|| {
            let past = f.record.at_time(mid);
            black_box(current(&past, &viewer).items.len())
        })
    });
    g.bench_function(format!("current_state_{n}"), |b| {
        b.iter(|| black_box(current(&f.record, &viewer).items.len()))
    });
    g.finish();
}

criterion_group!(benches, entries, state_at_time);
criterion_main!(benches);
