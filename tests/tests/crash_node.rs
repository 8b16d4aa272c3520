//! The node killed at random moments while it writes, across its write paths (issue
//! "Proven under attack", a thousand kills): concurrent HTTP writers (group commit), CLI
//! writes through the control socket, FHIR transaction imports, and pulls being ingested
//! (Mary writes on her node; George's node pulls her entries from the host while it is
//! killed). After every SIGKILL the node is restarted on the same home, and:
//!
//! - every write the node acknowledged (an HTTP 201 with its id, a `cophr add` that printed
//!   its id, a FHIR transaction answered 200 with its locations) is held;
//! - the store opens without repair (a torn tail is cut, nothing in the middle is bad), and
//!   every `VERIFY_EVERY` kills and after the last one it verifies in full (signatures,
//!   record rules, audit chains);
//! - in the end George's node holds every entry Mary wrote (the pull path recovered).
//!
//! The default run is a smoke of a few kills. The campaign is
//! `COPHR_NODE_KILLS=1000 cargo test --release -p cophr-tests --test crash_node -- --nocapture`
//! (figures in `docs/reliability.md`); `COPHR_NODE_CRASH_SEED` picks another seed.

mod cli_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cli_support::node::{eventually, Node};
use cli_support::{setting, Person};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::{json, Value};

const DEFAULT_KILLS: u64 = 4;
const DEFAULT_SEED: u64 = 0x00C0_FFEE_0000_1000;
const VERIFY_EVERY: u64 = 25;
const HTTP_WRITERS: usize = 3;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// POSTs JSON with the bearer token; the status and body, or `None` if the node is gone.
fn post(url: &str, token: &str, body: &Value) -> Option<(u16, Value)> {
    let mut resp = agent()
        .post(url)
        .header("authorization", format!("Bearer {token}"))
        .content_type(if url.contains("/fhir/") {
            "application/fhir+json"
        } else {
            "application/json"
        })
        .send(body.to_string())
        .ok()?;
    let status = resp.status().as_u16();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(4 << 20)
        .read_to_vec()
        .unwrap_or_default();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Some((status, v))
}

fn observation(n: u64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                             "display": "Heart rate"}]},
        "effectiveDateTime": "2026-01-01T10:00:00Z",
        "valueQuantity": {"value": 60 + (n % 40), "unit": "beats/minute",
                          "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

/// The entry ids a FHIR transaction response names (`Type/<id>/_history/n`).
fn locations(v: &Value) -> Vec<String> {
    v["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .filter_map(|e| e["response"]["location"].as_str())
                .filter_map(|l| l.split('/').nth(1).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every entry id `p` holds in the record (any version), by `cophr history`-free means:
/// the items and their versions as `show --json` lists them.
fn held(p: &Person) -> BTreeSet<String> {
    let r = p.run(&["--json", "show"]);
    assert_eq!(r.code, 0, "show after a kill: {}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).expect("show prints JSON");
    let mut out = BTreeSet::new();
    for i in v["items"].as_array().into_iter().flatten() {
        for k in ["id", "version"] {
            if let Some(s) = i[k].as_str() {
                out.insert(s.to_owned());
            }
        }
    }
    out
}

#[test]
fn acknowledged_writes_survive_sigkill_on_every_write_path() {
    let kills = setting("COPHR_NODE_KILLS", DEFAULT_KILLS);
    let seed = setting("COPHR_NODE_CRASH_SEED", DEFAULT_SEED);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let george = Person::new("George Jones", "patient", None);
    let mary = Person::new("Mary Jones", "carer", None);
    let host = Person::new("Community Host", "host", None);
    george.ok(&["record", "create"]);
    george.ok(&[
        "grant",
        &mary.actor,
        "--level",
        "write",
        "--categories",
        "all",
    ]);
    let host_node = Node::start(&host, &[]);
    let mut george_node = Node::start(&george, &[]);
    let _mary_node = Node::start(&mary, &[]);
    george.live_ok(&["host", &host_node.addr()]);
    mary.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    let token = george.ok(&["token"]).trim().to_owned();
    let record = george.actor.clone();

    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut marys: BTreeSet<String> = BTreeSet::new();
    let (mut http_acks, mut cli_acks, mut fhir_acks) = (0u64, 0u64, 0u64);
    let mut n = 0u64;
    for kill in 1..=kills {
        let base = george_node.http().expect("George's HTTP API");
        let base = base.trim_end_matches('/').to_owned();
        // Mary writes on her node: George's node pulls these while it is killed.
        for _ in 0..2 {
            n += 1;
            let s = (100 + n % 60).to_string();
            marys.insert(mary.live_add(&[
                "--record",
                &record,
                "vital-signs",
                "--systolic",
                &s,
                "--diastolic",
                "80",
            ]));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<Mutex<(u64, u64, u64)>> = Arc::default();
        let mut threads = Vec::new();
        for w in 0..HTTP_WRITERS {
            let (stop, acked, counts, base, token, record) = (
                stop.clone(),
                acked.clone(),
                counts.clone(),
                base.clone(),
                token.clone(),
                record.clone(),
            );
            threads.push(std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    i += 1;
                    let body = json!({"category": "vital-signs",
                        "body": {"systolic": 110 + (i % 50), "diastolic": 70 + w}});
                    match post(
                        &format!("{base}/api/v1/records/{record}/entries"),
                        &token,
                        &body,
                    ) {
                        Some((201, v)) => {
                            let id = v["id"].as_str().expect("an id").to_owned();
                            acked.lock().unwrap().insert(id);
                            counts.lock().unwrap().0 += 1;
                        }
                        Some((s, v)) if s >= 500 => {
                            // The node may fail a write it cannot make durable; it must
                            // then not have acknowledged it. Anything else is a bug.
                            assert!(v["error"].is_object(), "{s}: {v}");
                        }
                        Some((s, v)) => panic!("HTTP write refused: {s} {v}"),
                        None => break,
                    }
                }
            }));
        }
        {
            let (stop, acked, counts, home) = (
                stop.clone(),
                acked.clone(),
                counts.clone(),
                george.dir().to_path_buf(),
            );
            threads.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let out = std::process::Command::new(cli_support::cophr_bin())
                        .arg("--home")
                        .arg(&home)
                        .args(["add", "allergies", "--agent", "Latex", "--reaction", "rash"])
                        .output()
                        .expect("cophr runs");
                    if out.status.success() {
                        let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                        assert!(id.starts_with("e-"), "{id}");
                        acked.lock().unwrap().insert(id);
                        counts.lock().unwrap().1 += 1;
                    }
                }
            }));
        }
        {
            let (stop, acked, counts, base, token) = (
                stop.clone(),
                acked.clone(),
                counts.clone(),
                base.clone(),
                token.clone(),
            );
            let start = n * 1000;
            threads.push(std::thread::spawn(move || {
                let mut i = start;
                while !stop.load(Ordering::SeqCst) {
                    i += 3;
                    let bundle = json!({"resourceType": "Bundle", "type": "transaction",
                        "entry": (0..3).map(|k| json!({
                            "resource": observation(i + k),
                            "request": {"method": "POST", "url": "Observation"}})).collect::<Vec<_>>()});
                    match post(&format!("{base}/fhir/r4"), &token, &bundle) {
                        Some((200, v)) => {
                            let ids = locations(&v);
                            assert_eq!(ids.len(), 3, "{v}");
                            acked.lock().unwrap().extend(ids);
                            counts.lock().unwrap().2 += 1;
                        }
                        Some((s, v)) if s >= 500 => assert!(v.is_object(), "{s}: {v}"),
                        Some((s, v)) => panic!("FHIR transaction refused: {s} {v}"),
                        None => break,
                    }
                }
            }));
        }
        // A random moment, then SIGKILL.
        std::thread::sleep(Duration::from_millis(50 + rng.next_u64() % 700));
        stop.store(true, Ordering::SeqCst);
        george_node.kill();
        for t in threads {
            t.join().expect("a writer thread panicked");
        }
        let c = *counts.lock().unwrap();
        http_acks += c.0;
        cli_acks += c.1;
        fhir_acks += c.2;
        // The store opens as it is (no repair) and holds every acknowledged write.
        let have = held(&george);
        let acked_now = acked.lock().unwrap().clone();
        let lost: Vec<&String> = acked_now.difference(&have).collect();
        assert!(
            lost.is_empty(),
            "kill {kill} (seed {seed:#x}): {} acknowledged writes lost: {lost:?}",
            lost.len()
        );
        if kill % VERIFY_EVERY == 0 || kill == kills {
            george.ok(&["verify"]);
        }
        george_node = Node::start(&george, &[]);
    }
    // The pull path recovered: George's node holds all Mary wrote.
    eventually("George's node to hold every entry Mary wrote", || {
        let have = held(&george);
        marys.iter().all(|m| have.contains(m))
    });
    george.ok(&["verify"]);
    let total = acked.lock().unwrap().len();
    eprintln!(
        "node crash campaign: seed {seed:#x}, {kills} kills, {total} acknowledged entries \
         ({http_acks} HTTP writes, {cli_acks} CLI writes, {fhir_acks} FHIR transactions of 3), \
         {} pulled from Mary, 0 lost, 0 corrupt",
        marys.len()
    );
}
