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

/// The organisation's own record: its genesis and `members` members added by its key.
fn org_record(
    org: &Keypair,
    members: &[Keypair],
) -> (Record, Vec<cophr_protocol::entry::Verified>) {
    let profile = Profile {
        name: "Leeds Teaching Hospitals".into(),
        role: "organisation".into(),
        organisation: None,
        attestations: Vec::new(),
    };
    let mut r = Record::new(org.actor());
    let mut out = Vec::new();
    let mut payloads = vec![Payload::Genesis { profile }];
    payloads.extend(members.iter().enumerate().map(|(j, m)| {
        Payload::AddMember {
            member: m.actor(),
            role: cophr_protocol::org::Role::preset(if j % 10 == 0 {
                "receptionist"
            } else {
                "nurse"
            })
            .expect("a preset role"),
            label: format!("staff {j}"),
        }
    }));
    for (n, payload) in payloads.into_iter().enumerate() {
        let v = r
            .prepare(org, payload, None, T0 + n as u64, None)
            .expect("prepare");
        r.apply(v.clone()).expect("apply");
        out.push(v);
    }
    (r, out)
}

/// Patient `i`'s record shared with the organisation (as [`record`]), joined by `joiners`
/// of its members, each of whom (but a receptionist) records a blood pressure.
fn org_patient(
    i: usize,
    org: &Keypair,
    issuer: &Keypair,
    own: &Record,
    joiners: &[&Keypair],
) -> (Keypair, Vec<cophr_protocol::entry::Verified>) {
    let (p, mut out) = record(i, org, issuer);
    let mut r = Record::new(p.actor());
    for v in &out {
        r.apply(v.clone()).expect("apply");
    }
    let mut t = T0 + 100;
    for m in joiners {
        let proof = own.membership_proof(&m.actor()).expect("a member's proof");
        let bp = Payload::Create {
            category: Category::VitalSigns,
            body: bp(130, 85),
        };
        for v in r
            .prepare_all(m, Payload::JoinOrg { proof }, t, None)
            .expect("join")
        {
            r.apply(v.clone()).expect("apply");
            out.push(v);
        }
        // A receptionist's role does not reach vital signs: they only join.
        if let Ok(all) = r.prepare_all(m, bp, t + 1, None) {
            for v in all {
                r.apply(v.clone()).expect("apply");
                out.push(v);
            }
        }
        t += 2;
    }
    (p, out)
}

/// A provider node of an organisation of `staff` members holding `records` records shared
/// with the organisation, each joined by two members: the worklist as the organisation and
/// as one member, what each pull costs the organisation's node (`org_duties`), and a
/// member's removal reaching every record she joined.
fn run_organisation(records: usize, staff: usize, searches: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("organisation");
    let org = key(6, "organisation");
    let issuer = key(2, "AIS");
    let members: Vec<Keypair> = (0..staff).map(|j| key(7, &format!("member-{j}"))).collect();
    let now = T0 + 1_000_000;
    let (own, own_entries) = org_record(&org, &members);
    let start = Instant::now();
    {
        let (store, _) = Store::open(&path, org.clone()).expect("open");
        store.ingest(&org.actor(), own_entries).expect("ingest");
        for i in 0..records {
            let a = &members[(2 * i) % staff];
            let b = &members[(2 * i + 1) % staff];
            let (p, entries) = org_patient(i, &org, &issuer, &own, &[a, b]);
            store.ingest(&p.actor(), entries).expect("ingest");
        }
    }
    println!(
        "organisation: filled a node with its {staff}-member record and {records} records shared with it, each joined by 2 members, in {:?}",
        start.elapsed()
    );
    {
        let (store, _) = Store::open(&path, org.clone()).expect("open");
        let start = Instant::now();
        let page = store
            .worklist(&org.actor(), "", 0, 25, now)
            .expect("worklist");
        assert_eq!(page.total, records);
        println!(
            "organisation: first worklist (summaries built from {records} records): {:?}",
            start.elapsed()
        );
    }
    let before = rss_kib().unwrap_or(0);
    let start = Instant::now();
    let (store, _) = Store::open(&path, org.clone()).expect("reopen");
    let page = store
        .worklist(&org.actor(), "", 0, 25, now)
        .expect("worklist");
    let startup = start.elapsed();
    let after = rss_kib().unwrap_or(0);
    assert_eq!(page.total, records);
    println!(
        "organisation: start-up (store open and the first page) {startup:?}; resident memory +{} MiB (process {} MiB)",
        after.saturating_sub(before) / 1024,
        after / 1024
    );
    let mut times = Vec::with_capacity(searches);
    for s in 0..searches {
        let i = (s * 7919) % records;
        let q = if s % 2 == 0 {
            name(i)
        } else {
            number(i)[..8].to_owned()
        };
        let start = Instant::now();
        let page = store
            .worklist(&org.actor(), &q, 0, 25, now)
            .expect("search");
        times.push(start.elapsed());
        assert!(page.total > 0, "every search finds its patient");
    }
    times.sort();
    println!(
        "organisation: search over {records} rows ({searches} searches): median {:?}, p99 {:?}",
        percentile(&times, 0.5),
        percentile(&times, 0.99)
    );
    // One member's worklist: the records she joined for the organisation.
    let nurse = &members[1];
    let start = Instant::now();
    let page = store
        .worklist(&nurse.actor(), "", 0, 25, now)
        .expect("worklist");
    let expected = (0..records)
        .filter(|i| (2 * i) % staff == 1 || (2 * i + 1) % staff == 1)
        .count();
    assert_eq!(page.total, expected);
    println!(
        "a member's first worklist ({} records she joined among {records}): {:?}",
        page.total,
        start.elapsed()
    );
    // What each pull costs the organisation's node: its duties for one record.
    let p = key(3, "patient-1");
    let mut duty = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        store.org_duties(&p.actor(), &org, now).expect("duties");
        duty.push(start.elapsed());
    }
    duty.sort();
    println!(
        "organisation duties after a pull of one record (members' keys, removals; {staff} members): median {:?}",
        percentile(&duty, 0.5)
    );
    // A member leaves: the removal reaches every record she joined.
    let session = cophr_node::session::Session {
        store: store.clone(),
        key: org.clone(),
        profile: own.latest_profile(&org.actor()).expect("a profile").clone(),
        device: None,
    };
    let start = Instant::now();
    let (_, reached) = session
        .remove_member(&org.actor(), nurse.actor(), "left the service", now)
        .expect("remove");
    assert_eq!(reached.len(), expected);
    println!(
        "a member's removal written in the {} records she joined (found among {records}): {:?}",
        reached.len(),
        start.elapsed()
    );
    println!(
        "organisation: resident memory at the end: {} MiB",
        rss_kib().unwrap_or(0) / 1024
    );
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
    drop(store);

    if smoke {
        run_organisation(30, 10, 10);
    } else {
        run_organisation(
            env("COPHR_BENCH_WORKLIST_ORG_RECORDS", records),
            env("COPHR_BENCH_WORKLIST_STAFF", 500),
            searches,
        );
    }
}
