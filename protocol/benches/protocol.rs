//! Protocol benchmarks: entry encode, sign, verify, batch verify, decode,
//! state-at-time over a 100,000-entry record, and sealing (the gate on sealed entries,
//! as a relay and as a reader, beside plain ones in the same run; a revocation's key
//! rotation with 20 grantees). Run: `cargo bench -p cophr-protocol`.
//! Set `COPHR_BENCH_ENTRIES` to change the record size for state-at-time. `cargo test`
//! runs every benchmark once, at a small size, so they cannot rot.

use std::time::Duration;

use cophr_protocol::access::Level;
use cophr_protocol::entry::verify_batch;
use cophr_protocol::fold::current;
use cophr_protocol::record::{Record, SealPolicy};
use cophr_protocol::testkit::{bp, grant, key, text_body, Fixture, SeededRng};
use cophr_protocol::{Category, Keypair, Payload, SignedEntry, Value, Verified};
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

/// Entries kept as their encoded bytes, decoded when a lean record asks.
#[derive(Debug)]
struct Encoded(std::collections::HashMap<cophr_protocol::EntryId, Vec<u8>>);

impl cophr_protocol::record::EntrySource for Encoded {
    fn load(&self, id: &cophr_protocol::EntryId) -> Option<Verified> {
        // As a node reads its log: hash-checked against the id, then decoded.
        let e = SignedEntry::decode_known(self.0.get(id)?.clone(), id).ok()?;
        Some(Verified::trusted(e))
    }
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
    // The same record lean: its record data decoded from bytes when asked (as a node's
    // lean record reads it from its log, less the read itself).
    let mut lean = f.record.clone();
    lean.set_source(std::sync::Arc::new(Encoded(
        f.record
            .entries()
            .map(|e| (e.id(), e.signed().bytes().to_vec()))
            .collect(),
    )));
    g.bench_function(format!("current_state_lean_{n}"), |b| {
        b.iter(|| black_box(current(&lean, &viewer).items.len()))
    });
    g.bench_function(format!("state_at_time_lean_{n}"), |b| {
        b.iter(|| {
            let past = lean.at_time(mid);
            black_box(current(&past, &viewer).items.len())
        })
    });
    // The same, then every body shown read (what a listing of everything costs; a listing
    // of one category, or one page, reads only its own bodies).
    g.bench_function(format!("state_at_time_lean_{n}_every_body_read"), |b| {
        b.iter(|| {
            let past = lean.at_time(mid);
            let s = current(&past, &viewer);
            black_box(
                s.items
                    .iter()
                    .filter(|i| !matches!(*i.body, Value::Null))
                    .count(),
            )
        })
    });
    // The same on one thread (`current` folds a large record on every core).
    g.bench_function(format!("state_at_time_lean_{n}_one_thread"), |b| {
        b.iter(|| {
            let past = lean.at_time(mid);
            black_box(
                cophr_protocol::fold::current_on(&past, &viewer, 1)
                    .items
                    .len(),
            )
        })
    });
    g.bench_function(format!("at_time_lean_{n}"), |b| {
        b.iter(|| black_box(lean.at_time(mid).len()))
    });
    // One item (an amended one) without folding the whole record.
    let one = items[7 % items.len()];
    g.bench_function(format!("one_item_{n}"), |b| {
        b.iter(|| black_box(cophr_protocol::fold::item(&f.record, &viewer, &one).is_some()))
    });
    g.finish();
}

/// Writes `n` ~1 KB vital-signs entries as the patient of a record with 20 view grantees,
/// sealed or plain; returns the record, the prefix (genesis, grants) and the entries.
fn sealing_fixture(n: u64, sealed: bool) -> (Fixture, Vec<Verified>, Vec<Verified>) {
    let mut f = Fixture::new(3, "George");
    let george = f.patient.clone();
    for i in 0..20 {
        f.grant(grant(
            &key(3, &format!("grantee {i}")),
            Level::View,
            &[],
            false,
            false,
        ));
    }
    let prefix: Vec<Verified> = f.record.entries().collect();
    let mut rng = SeededRng::new(3);
    let policy = SealPolicy {
        seal_new_streams: sealed,
        history: false,
    };
    f.record.unlock(&george);
    let mut written = Vec::new();
    for i in 0..n {
        let p = Payload::Create {
            category: Category::VitalSigns,
            body: one_kb_body(i),
        };
        let vs = f
            .record
            .prepare_sealed(&george, p, f.now, None, policy, &mut rng)
            .expect("valid");
        f.now += 1000;
        for v in vs {
            f.record.apply(v.clone()).expect("applies");
            written.push(v);
        }
    }
    (f, prefix, written)
}

fn sealing(c: &mut Criterion) {
    let n: u64 = if std::env::args().any(|a| a == "--bench") {
        2_000
    } else {
        50
    };
    let (_, prefix, plain) = sealing_fixture(n, false);
    let (sealed_f, sealed_prefix, sealed) = sealing_fixture(n, true);
    let reader = key(3, "grantee 7");
    let mut g = c.benchmark_group("sealing");
    g.sample_size(10).throughput(Throughput::Elements(n));
    let apply_all = |prefix: &[Verified], entries: &[Verified], unlock: Option<&Keypair>| {
        let mut r = Record::new(prefix[0].entry().record);
        if let Some(k) = unlock {
            r.unlock(k);
        }
        for v in prefix.iter().chain(entries) {
            r.apply(v.clone()).expect("applies");
        }
        r.len()
    };
    g.bench_function(format!("apply_plain_{n}"), |b| {
        b.iter(|| black_box(apply_all(&prefix, &plain, None)))
    });
    g.bench_function(format!("apply_sealed_as_relay_{n}"), |b| {
        b.iter(|| black_box(apply_all(&sealed_prefix, &sealed, None)))
    });
    g.bench_function(format!("apply_sealed_as_reader_{n}"), |b| {
        b.iter(|| black_box(apply_all(&sealed_prefix, &sealed, Some(&reader))))
    });
    // Content opens when first read: applied, then every entry read once (decrypted,
    // decoded, schema-checked), against plain entries applied and read.
    let read_all = |r: &Record| {
        r.entries()
            .filter(|e| r.payload(&e.id()).is_some_and(|p| p.is_create()))
            .count()
    };
    g.bench_function(format!("apply_and_read_plain_{n}"), |b| {
        b.iter(|| {
            let mut r = Record::new(prefix[0].entry().record);
            for v in prefix.iter().chain(&plain) {
                r.apply(v.clone()).expect("applies");
            }
            black_box(read_all(&r))
        })
    });
    g.bench_function(format!("apply_and_read_sealed_as_reader_{n}"), |b| {
        b.iter(|| {
            let mut r = Record::new(sealed_prefix[0].entry().record);
            r.unlock(&reader);
            for v in sealed_prefix.iter().chain(&sealed) {
                r.apply(v.clone()).expect("applies");
            }
            black_box(read_all(&r))
        })
    });
    g.finish();

    // A revocation in a record with 20 grantees and four sealed streams: the revocation's
    // parts and a new epoch per stream, each wrapped for the 20 remaining readers.
    let mut f = sealed_f;
    let george = f.patient.clone();
    let mut rng = SeededRng::new(4);
    let policy = SealPolicy {
        seal_new_streams: true,
        history: false,
    };
    let more = [
        (
            Category::Problems,
            text_body(&[("problem", "Hypertension")]),
        ),
        (Category::Allergies, text_body(&[("agent", "Penicillin")])),
        (
            Category::Medications,
            text_body(&[("medication", "Metformin")]),
        ),
    ];
    for (category, body) in more {
        let vs = f
            .record
            .prepare_sealed(
                &george,
                Payload::Create { category, body },
                f.now,
                None,
                policy,
                &mut rng,
            )
            .expect("valid");
        for v in vs {
            f.record.apply(v).expect("applies");
        }
    }
    let target = f.record.grants_of(&reader.actor())[0];
    let mut g = c.benchmark_group("sealing");
    g.sample_size(10);
    g.bench_function("revoke_and_rotate_20_grantees", |b| {
        b.iter(|| {
            let vs = f
                .record
                .prepare_sealed(
                    &george,
                    Payload::Revoke {
                        grant: target,
                        category: None,
                        reason: "bench".into(),
                    },
                    f.now,
                    None,
                    policy,
                    &mut rng,
                )
                .expect("valid");
            black_box(vs.len())
        })
    });
    g.finish();
}

criterion_group!(benches, entries, state_at_time, sealing);
criterion_main!(benches);
