//! The clinician's worklist on a provider node holding many small records shared with it:
//! the first build of the summaries from the records, start-up (store open and the first
//! worklist page, read from the persisted summaries), search latency (median, p99), the
//! cost of a page after one record changed, and resident memory. Printed as figures (not
//! criterion: one-shot percentiles, start-up and memory), like `host`.
//!
//! Run: `cargo bench -p cophr-node --bench worklist` (size via COPHR_BENCH_WORKLIST_RECORDS,
//! default 20,000; searches via COPHR_BENCH_WORKLIST_SEARCHES). With `--smoke` (used by the
//! tests) it runs at a tiny size.

use std::time::{Duration, Instant};

use cophr_node::store::Store;
use cophr_protocol::record::Record;
use cophr_protocol::testkit::{bp, grant, key, text_body};
use cophr_protocol::trust::attestation::{
    AssuranceLevel, Attestation, Attributes, Method, NationalNumber, ATTESTATION_VERSION,
};
use cophr_protocol::{Category, Keypair, Level, Payload, Profile};

const T0: u64 = 1_795_341_600_000;
const SURNAMES: &[&str] = &[
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel",
    "Wright", "Khan", "Walker", "Evans", "Roberts", "Green", "Hughes", "Ali", "Edwards",
];
const FORENAMES: &[&str] = &[
    "George", "Ann", "Mary", "Olivia", "Amelia", "Isla", "Oliver", "Harry", "Noah", "Jack", "Leo",
    "Aisha", "Mohammed", "Zara", "Grace", "Ivy", "Freddie", "Alfie",
];

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

/// A deterministic, valid NHS number (modulus 11 check digit) for patient `i`.
fn number(i: usize) -> String {
    let mut base = 400_000_000u64 + (i as u64) * 20;
    loop {
        let digits: Vec<u64> = format!("{base:09}")
            .bytes()
            .map(|b| u64::from(b - b'0'))
            .collect();
        let sum: u64 = digits.iter().zip((2..=10).rev()).map(|(d, w)| d * w).sum();
        let check = (11 - sum % 11) % 11;
        if check != 10 {
            return format!("{base:09}{check}");
        }
        base += 1;
    }
}

fn name(i: usize) -> String {
    format!(
        "{} {}",
        FORENAMES[i % FORENAMES.len()],
        SURNAMES[(i / FORENAMES.len()) % SURNAMES.len()]
    )
}

/// Patient `i`'s small record, shared with `clinician`: genesis (an attested national
/// number), a grant, demographics, a blood pressure and a lab result.
fn record(
    i: usize,
    clinician: &Keypair,
    issuer: &Keypair,
) -> (Keypair, Vec<cophr_protocol::entry::Verified>) {
    let p = key(3, &format!("patient-{i}"));
    let attestation = Attestation {
        v: ATTESTATION_VERSION,
        issuer: issuer.actor(),
        subject: p.actor(),
        attributes: Attributes::Person {
            name: name(i),
            birth_date: None,
            national_number: Some(NationalNumber {
                system: "nhs".into(),
                value: number(i),
            }),
        },
        level: AssuranceLevel::P9,
        method: Method::InPerson,
        not_before: T0 - 1000,
        not_after: T0 + 300 * 24 * 3600 * 1000,
        serial: p.actor().as_bytes()[..16].to_vec(),
    }
    .sign(issuer)
    .expect("attestation");
    let profile = Profile {
        name: name(i),
        role: "patient".into(),
        organisation: None,
        attestations: vec![attestation],
    };
    let (surname, forename) = {
        let n = name(i);
        let (f, s) = n.split_once(' ').expect("two names");
        (s.to_owned(), f.to_owned())
    };
    let mut r = Record::new(p.actor());
    let mut out = Vec::new();
    let payloads = vec![
        Payload::Genesis { profile },
        Payload::Grant(grant(clinician, Level::Write, &[], false, false)),
        Payload::Create {
            category: Category::Demographics,
            body: text_body(&[("surname", &surname), ("forename", &forename)]),
        },
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(120 + (i % 40) as i64, 80),
        },
        Payload::Create {
            category: Category::LabResults,
            body: text_body(&[("test", "HbA1c"), ("result", "48")]),
        },
    ];
    for (n, payload) in payloads.into_iter().enumerate() {
        let v = r
            .prepare(&p, payload, None, T0 + n as u64, None)
            .expect("prepare");
        r.apply(v.clone()).expect("apply");
        out.push(v);
    }
    (p, out)
}

fn main() {
    run(std::env::args().any(|a| a == "--smoke"));
}

/// Runs every measurement; `smoke` uses a tiny size (the tests run it so it cannot rot).
pub fn run(smoke: bool) {
    let (records, searches) = if smoke {
        (30, 20)
    } else {
        (
            env("COPHR_BENCH_WORKLIST_RECORDS", 20_000),
            env("COPHR_BENCH_WORKLIST_SEARCHES", 500),
        )
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("provider");
    let clinician = key(1, "Dr Rao");
    let issuer = key(2, "AIS");
    let me = clinician.actor();
    let now = T0 + 1_000_000;
    {
        let (store, _) = Store::open(&path, key(0, "provider")).expect("open");
        let start = Instant::now();
        for i in 0..records {
            let (p, entries) = record(i, &clinician, &issuer);
            store.ingest(&p.actor(), entries).expect("ingest");
        }
        println!(
            "filled a provider node with {records} records shared with it in {:?}",
            start.elapsed()
        );
    }

    // The first worklist: every summary built from the records (once per viewer).
    {
        let (store, _) = Store::open(&path, key(0, "provider")).expect("open");
        let start = Instant::now();
        let page = store.worklist(&me, "", 0, 25, now).expect("worklist");
        assert_eq!(page.total, records);
        println!(
            "first worklist (summaries built from {records} records): {:?}",
            start.elapsed()
        );
    }

    // Start-up: open the store and answer the first page from the persisted summaries.
    let before = rss_kib().unwrap_or(0);
    let start = Instant::now();
    let (store, _) = Store::open(&path, key(0, "provider")).expect("reopen");
    let opened = start.elapsed();
    let page = store.worklist(&me, "", 0, 25, now).expect("worklist");
    let startup = start.elapsed();
    let after = rss_kib().unwrap_or(0);
    assert_eq!(page.total, records);
    assert_eq!(page.rows.len(), 25.min(records));
    println!(
        "start-up with {records} shared records: store open {opened:?}, first worklist page {startup:?}; resident memory +{} MiB (process {} MiB)",
        after.saturating_sub(before) / 1024,
        after / 1024
    );

    // Search latency: names (parts, any case) and national numbers, seeded.
    let mut rng: u64 = 0x5eed;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut times = Vec::with_capacity(searches);
    let mut hits = 0;
    for s in 0..searches {
        let i = (next() as usize) % records;
        let q = match s % 3 {
            0 => SURNAMES[(i / FORENAMES.len()) % SURNAMES.len()].to_lowercase(),
            1 => name(i),
            _ => number(i)[..8].to_owned(),
        };
        let start = Instant::now();
        let page = store.worklist(&me, &q, 0, 25, now).expect("search");
        times.push(start.elapsed());
        hits += page.total.min(1);
    }
    assert_eq!(hits, searches, "every search finds its patient");
    times.sort();
    println!(
        "search over {records} rows ({searches} searches: surname, full name, national number prefix): median {:?}, p99 {:?}, max {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times.last().copied().unwrap_or_default()
    );

    // One record changes (a synced entry): the next page recomputes only its row.
    let p = key(3, "patient-0");
    let extra = store
        .with_record(&p.actor(), |r| {
            r.prepare(
                &p,
                Payload::Create {
                    category: Category::VitalSigns,
                    body: bp(150, 95),
                },
                None,
                now,
                None,
            )
            .expect("prepare")
        })
        .expect("record");
    store.ingest(&p.actor(), vec![extra]).expect("ingest");
    let start = Instant::now();
    let page = store.worklist(&me, &name(0), 0, 25, now).expect("worklist");
    println!(
        "a page after one record changed (its row recomputed): {:?}",
        start.elapsed()
    );
    assert!(page.total > 0);
    let row = store
        .worklist_row(&me, &p.actor(), now)
        .expect("row")
        .expect("patient 0 is listed");
    assert_eq!(row.changed.get("vital-signs"), Some(&2));
    println!(
        "resident memory at the end: {} MiB",
        rss_kib().unwrap_or(0) / 1024
    );
}
