//! The sync benchmark: two real node processes (this binary, re-run as `syncbench node`)
//! on 127.0.0.1, connected over libp2p TCP (noise, yamux), replicating with the node's own
//! client and server (`cophr_node::net`). It measures:
//!
//! - bulk sync of N signed ~1 KB entries into an empty replica: entries/s and MB/s, against
//!   this machine's ed25519 single and batch verification rates measured in the same run;
//!   in rounds, each followed by Hypercore (npm `hypercore@11.37.1`, two node processes
//!   over TCP on 127.0.0.1, the harness in `simulations/hypercore/`) replicating N blocks
//!   of 1,024 bytes, so the report gives cophr's rate as a ratio to Hypercore's from the
//!   same run (target ≥ 5×) and to the all-cores batch verify rate (target ≥ 0.85);
//!   and the same of sealed entries (blind hosting), opened by the replica as they arrive,
//!   as a ratio to the plain rate of the same run;
//! - catch-up of 1, 10 and 1,000 new entries on a large record (and the up-to-date check):
//!   round trips and bytes beyond the entries, counted at the request-response layer;
//! - live push latency (a write on one node until it is held on the other), p50 and p99;
//! - peak memory (VmHWM) of each process, and start-up time and resident memory of a fresh
//!   process hosting many records;
//! - a provider node pulling every record of a host (`--provider`, `syncbench/provider.rs`):
//!   time, rate, and its memory while holding thousands of records.
//!
//! `cargo run --release -p cophr-simulations --bin syncbench -- --full` runs the sizes of
//! the targets; stores it generates are cached under `target/syncbench/cache/`, keyed by
//! their parameters. The report is printed and written as JSON (`--out`). The Hypercore
//! phase needs Node.js and the harness's pinned packages (`npm ci --prefix
//! simulations/hypercore`); `--no-hypercore` skips it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use cophr_node::net::{self, client, Meter, NetConfig, PeerBook};
use cophr_node::store::Store;
use cophr_protocol::entry::verify_batch;
use cophr_protocol::record::Record;
use cophr_protocol::testkit::{bp, grant, key, profile};
use cophr_protocol::{Category, Keypair, Level, Payload, RecordId, SignedEntry, Value};

/// Bump when the generated stores change shape, so old caches are not reused.
const CACHE_VERSION: u32 = 4;

/// The cache version of a kind of generated store: single records are at 5, since the
/// store leaves a record's admission part beside its snapshot (`node/src/store/snapshots.rs`);
/// hosts and providers (many small records, none snapshotted) are unchanged.
fn cache_version(kind: &str) -> u32 {
    if kind.ends_with("record") {
        5
    } else {
        CACHE_VERSION
    }
}

/// Threads writing a host's records at once when generating it (see [`generate_host`]).
const GENERATOR_WRITERS: usize = 8;
/// The record's patient and the replica's actor derive from this seed.
const SEED: u64 = 5;
/// Entry times start here (ms); one ms apart.
const T0: u64 = 1_700_000_000_000;
/// How long any one step may take before the benchmark gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(1800);
/// The Hypercore release the harness pins (`simulations/hypercore/package.json`).
const HYPERCORE_VERSION: &str = "11.37.1";
/// Bytes of each Hypercore block.
const HYPERCORE_BLOCK_BYTES: usize = 1024;
/// Bulk sync targets: entries/s ≥ 0.70 × the one-thread batch verify rate, ≥ 0.85 × the
/// all-cores batch verify rate, and ≥ 5 × Hypercore's blocks/s, all from the same run.
const BATCH_VERIFY_TARGET: f64 = 0.70;
const ALL_CORES_VERIFY_TARGET: f64 = 0.85;
const HYPERCORE_TARGET: f64 = 5.0;

#[derive(Parser, Debug)]
#[command(about = "Sync benchmark across two real node processes over TCP on 127.0.0.1")]
struct Cli {
    #[command(subcommand)]
    node: Option<Sub>,
    /// The targets' sizes: 100,000 entries bulk, a 1,000,000-entry record for catch-up,
    /// 200 live pushes, a 10,000-record host.
    #[arg(long)]
    full: bool,
    /// Entries in the bulk sync (default 10,000; 100,000 with --full).
    #[arg(long)]
    entries: Option<usize>,
    /// Entries in the record the catch-ups are measured on (default 10,000; 1,000,000 with
    /// --full).
    #[arg(long)]
    catchup_base: Option<usize>,
    /// Live pushes measured (default 100; 200 with --full).
    #[arg(long)]
    live: Option<usize>,
    /// Records on the host whose fresh-process start-up and memory are measured (default
    /// 1,000; 10,000 with --full), each of 100 entries.
    #[arg(long)]
    host_records: Option<usize>,
    /// Entries in each of the host's records (a genesis, then vital signs).
    #[arg(long, default_value_t = 100, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000))]
    host_entries: usize,
    /// Measure only the fresh host process (`--host-records`, `--host-entries`): start-up
    /// and memory, written to the report as `host`.
    #[arg(long)]
    host_only: bool,
    /// Measure only a provider node pulling every record of a host (`--host-records` records
    /// of `--host-entries` entries, each granting the provider a view): time, rate, its
    /// memory (target ≤ 1 GiB), and that every entry arrived; written to the report as
    /// `provider`.
    #[arg(long, conflicts_with = "host_only")]
    provider: bool,
    /// Records the provider pulls at once.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64))]
    provider_parallel: usize,
    /// Where stores are generated, cached and copied for each run (default
    /// `target/syncbench`).
    #[arg(long)]
    work: Option<PathBuf>,
    /// Where the JSON report goes (default `<work>/report.json`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Rounds of the bulk phase: each round is cophr's bulk sync and then
    /// Hypercore's replication of as many blocks; the report gives every round and the
    /// median of each.
    #[arg(long, alias = "hypercore-runs", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..))]
    bulk_runs: u64,
    /// Skip the Hypercore rounds (which need Node.js and `npm ci --prefix
    /// simulations/hypercore`).
    #[arg(long)]
    no_hypercore: bool,
    /// The Hypercore harness (`bench.js` with its `node_modules`); default
    /// `simulations/hypercore` of this source tree.
    #[arg(long)]
    hypercore_dir: Option<PathBuf>,
    /// Hypercore's inflightRange on both sides, as [R, R] (default: Hypercore's own, which
    /// keeps 48 block requests in flight over TCP).
    #[arg(long)]
    hypercore_inflight: Option<u64>,
    /// Measure only how costs grow with the record's size, at these sizes (e.g.
    /// `1000,10000,100000,1000000`): load time and resident memory of a fresh process, the
    /// first write after a restart, catch-up round trips and bytes, state at a time; the
    /// figures go to the report and an SVG plot (`--plot`).
    #[arg(long, value_delimiter = ',', value_name = "SIZES")]
    growth: Vec<usize>,
    /// Where `--growth` writes its plot (default `<work>/growth.svg`).
    #[arg(long)]
    plot: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// One node process, driven over stdin/stdout by the benchmark (not for direct use).
    #[command(hide = true)]
    Node {
        /// The store directory.
        #[arg(long)]
        dir: PathBuf,
        /// Who the node acts as: `patient` or `reader`.
        #[arg(long)]
        actor: String,
        /// Seed of the node's peer key.
        #[arg(long)]
        peer_seed: u64,
    },
    /// Generates a store (in its own process, so the driver's memory stays small).
    #[command(hide = true)]
    Generate {
        /// The store directory.
        #[arg(long)]
        dir: PathBuf,
        /// `record` (one record of N entries), `host` (N records of 100 entries) or
        /// `host-E` (N records of E entries).
        #[arg(long)]
        kind: String,
        /// N.
        #[arg(long)]
        n: usize,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.node {
        Some(Sub::Node {
            dir,
            actor,
            peer_seed,
        }) => return node_main(&dir, &actor, peer_seed),
        Some(Sub::Generate { dir, kind, n }) => {
            return match kind.as_str() {
                "record" => generate_record(&dir, n, false),
                "sealed-record" => generate_record(&dir, n, true),
                "host" => generate_host(&dir, n, 100),
                kind if kind.starts_with("provider-") => match kind["provider-".len()..].parse() {
                    Ok(entries) => provider::generate(&dir, n, entries),
                    Err(_) => bail!("unknown store kind {kind}"),
                },
                kind => match kind.strip_prefix("host-").map(str::parse::<usize>) {
                    Some(Ok(entries)) => generate_host(&dir, n, entries),
                    _ => bail!("unknown store kind {kind}"),
                },
            }
        }
        None => {}
    }
    let sizes = Sizes {
        bulk: cli
            .entries
            .unwrap_or(if cli.full { 100_000 } else { 10_000 }),
        catchup_base: cli
            .catchup_base
            .unwrap_or(if cli.full { 1_000_000 } else { 10_000 }),
        live: cli.live.unwrap_or(if cli.full { 200 } else { 100 }),
        host_records: cli
            .host_records
            .unwrap_or(if cli.full { 10_000 } else { 1_000 }),
        host_entries: cli.host_entries,
    };
    let work = cli
        .work
        .unwrap_or_else(|| PathBuf::from("target/syncbench"));
    let out = cli.out.unwrap_or_else(|| work.join("report.json"));
    if !cli.growth.is_empty() {
        let plot = cli.plot.unwrap_or_else(|| work.join("growth.svg"));
        return growth::run(&cli.growth, &work, &out, &plot);
    }
    if cli.provider {
        return one_part(&work, &out, "provider", |runs| {
            let p = provider::measure(&sizes, cli.provider_parallel, &work, runs)?;
            provider::print(&p);
            Ok(serde_json::to_value(p)?)
        });
    }
    if cli.host_only {
        return one_part(&work, &out, "host", |runs| {
            let host = measure_host(&sizes, &work, runs)?;
            print_host(&host);
            Ok(serde_json::to_value(host)?)
        });
    }
    let hypercore = if cli.no_hypercore {
        None
    } else {
        let dir = cli
            .hypercore_dir
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("hypercore"));
        // Checked before anything is measured, so a missing install fails at once.
        let node_version = hypercore_ready(&dir)?;
        Some(HypercoreSetup {
            dir,
            node_version,
            inflight: cli.hypercore_inflight,
        })
    };
    let rounds = cli.bulk_runs as usize;
    let report = run(&sizes, rounds, hypercore.as_ref(), &work)?;
    print_report(&report);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("\nreport written to {}", out.display());
    Ok(())
}

/// Measures one part alone (`--provider`, `--host-only`) in a fresh `<work>/run`, and
/// writes its figures to the report under `name`.
fn one_part(
    work: &Path,
    out: &Path,
    name: &str,
    measure: impl FnOnce(&Path) -> Result<Json>,
) -> Result<()> {
    let runs = work.join("run");
    if runs.exists() {
        std::fs::remove_dir_all(&runs)?;
    }
    std::fs::create_dir_all(&runs)?;
    let figures = measure(&runs)?;
    let _ = std::fs::remove_dir_all(&runs);
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, serde_json::to_vec_pretty(&json!({ name: figures }))?)
        .with_context(|| format!("writing {}", out.display()))?;
    println!("\nreport written to {}", out.display());
    Ok(())
}

// ----------------------------------------------------------------------------------------
// The record

fn patient() -> Keypair {
    key(SEED, "patient")
}

fn reader() -> Keypair {
    key(SEED, "reader")
}

fn record_id() -> RecordId {
    patient().actor()
}

/// A vital-signs entry padded with a comment to about 1 KB encoded (as in the protocol
/// benchmark).
fn one_kb_body(i: u64) -> Value {
    let mut body = bp(100 + (i % 80) as i64, 70);
    if let Value::Map(m) = &mut body {
        m.insert("comment".into(), Value::Text("x".repeat(800)));
    }
    body
}

fn one_kb(i: u64) -> Payload {
    Payload::Create {
        category: Category::VitalSigns,
        body: one_kb_body(i),
    }
}

/// Generates the patient's record (genesis, a view-everything grant to the reader, then
/// `n` 1 KB vital-signs entries) into a new store at `dir`, in batches; with `sealed`, as
/// the patient's node writes it (blind hosting): the stream opened with its first entry,
/// wrapped for the patient and the reader, and every entry sealed.
fn generate_record(dir: &Path, n: usize, sealed: bool) -> Result<()> {
    use cophr_protocol::record::SealPolicy;
    use rand_chacha::rand_core::SeedableRng;
    let p = patient();
    let (store, _) = Store::open(dir, key(SEED, "generator"))?;
    let mut rec = Record::new(p.actor());
    rec.unlock(&p);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(SEED);
    let policy = SealPolicy {
        seal_new_streams: sealed,
        history: true,
    };
    let mut batch = Vec::new();
    let g = genesis(&mut rec, &p, "Bench Patient")?;
    batch.push(g);
    let grant = Payload::Grant(grant(&reader(), Level::View, &[], false, false));
    for v in rec.prepare_sealed(&p, grant, T0 + 1, None, policy, &mut rng)? {
        rec.apply(v.clone())?;
        batch.push(v);
    }
    let start = Instant::now();
    for i in 0..n as u64 {
        for v in rec.prepare_sealed(&p, one_kb(i), T0 + 2 + i, None, policy, &mut rng)? {
            rec.apply_known(v.clone())?;
            batch.push(v);
        }
        if batch.len() >= 16_384 {
            store.ingest(&p.actor(), std::mem::take(&mut batch))?;
            eprint!("\r  generated {} of {n} entries", i + 1);
        }
    }
    store.ingest(&p.actor(), batch)?;
    eprintln!("\r  generated {n} entries in {:.1?}", start.elapsed());
    // As a node leaves it when it shuts down: with its snapshot.
    store.snapshot_all();
    Ok(())
}

/// A host with `records` records of `entries` entries each (a genesis, then vital signs).
/// Each entry is stored on its own, as when people write one entry at a time (the most
/// index updates a host can have for its entries; a record pulled in bulk is indexed in a
/// few), from [`GENERATOR_WRITERS`] threads at once, so the log's group commit shares the
/// fsyncs as it does for a host's many writers.
fn generate_host(dir: &Path, records: usize, entries: usize) -> Result<()> {
    let (store, _) = Store::open(dir, key(SEED, "generator"))?;
    let one = |r: usize| -> Result<()> {
        let p = key(SEED, &format!("host-patient-{r}"));
        let batch = small_record(&p, None, entries)?;
        for e in batch {
            store.ingest(&p.actor(), vec![e])?;
        }
        Ok(())
    };
    in_writers(records, entries, &one)
}

/// `p`'s genesis for a new record `rec` (of `p`), applied.
fn genesis(rec: &mut Record, p: &Keypair, name: &str) -> Result<cophr_protocol::entry::Verified> {
    let g = rec.prepare(
        p,
        Payload::Genesis {
            profile: profile(name, "patient", None),
        },
        None,
        T0,
        None,
    )?;
    rec.apply(g.clone())?;
    Ok(g)
}

/// A patient's record of `entries` entries (at least its genesis): the genesis, a grant of
/// view to `viewer` if given, then vital-signs readings, each a millisecond apart.
fn small_record(
    p: &Keypair,
    viewer: Option<&Keypair>,
    entries: usize,
) -> Result<Vec<cophr_protocol::entry::Verified>> {
    let mut rec = Record::new(p.actor());
    let mut batch = Vec::with_capacity(entries);
    let g = genesis(&mut rec, p, "P")?;
    batch.push(g);
    if let Some(viewer) = viewer {
        let view = Payload::Grant(grant(viewer, Level::View, &[], false, false));
        let g = rec.prepare(p, view, None, T0 + 1, None)?;
        rec.apply(g.clone())?;
        batch.push(g);
    }
    for i in batch.len() as u64..entries as u64 {
        let v = rec.prepare(
            p,
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(100 + (i % 80) as i64, 70),
            },
            None,
            T0 + i,
            None,
        )?;
        rec.apply_known(v.clone())?;
        batch.push(v);
    }
    Ok(batch)
}

/// Runs `one` for each of `records` records from [`GENERATOR_WRITERS`] threads, and
/// reports progress and the time taken.
fn in_writers(
    records: usize,
    entries: usize,
    one: &(dyn Fn(usize) -> Result<()> + Sync),
) -> Result<()> {
    let start = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let step = (records / 100).max(1);
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..GENERATOR_WRITERS)
            .map(|w| {
                let done = &done;
                scope.spawn(move || -> Result<()> {
                    (w..records).step_by(GENERATOR_WRITERS).try_for_each(|r| {
                        one(r)?;
                        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        if n.is_multiple_of(step) {
                            eprint!("\r  generated {n} of {records} records");
                        }
                        Ok(())
                    })
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
        }
        Ok(())
    })?;
    eprintln!(
        "\r  generated {records} records of {entries} entries in {:.1?}",
        start.elapsed()
    );
    Ok(())
}

/// A copy of the cached store of `kind` and size `n` (generated by a child process if
/// missing), at `to`.
fn cached(work: &Path, kind: &str, n: usize, to: &Path) -> Result<()> {
    let cache = work
        .join("cache")
        .join(format!("v{}-seed{SEED}-{kind}-{n}", cache_version(kind)));
    if !cache.join("complete").exists() {
        if cache.exists() {
            std::fs::remove_dir_all(&cache)?;
        }
        eprintln!("generating {} (cached for next runs)", cache.display());
        let status = Command::new(std::env::current_exe()?)
            .args(["generate", "--kind", kind, "--n"])
            .arg(n.to_string())
            .arg("--dir")
            .arg(cache.join("store"))
            .status()
            .context("running the generator")?;
        if !status.success() {
            bail!("generating {} failed", cache.display());
        }
        std::fs::write(cache.join("complete"), b"")?;
    }
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let status = Command::new("cp")
        .arg("-r")
        .arg(cache.join("store"))
        .arg(to)
        .status()
        .context("running cp")?;
    if !status.success() {
        bail!("copying {} failed", cache.display());
    }
    // Write the copy back to disk now. Otherwise the node's first fsync of its log also
    // writes back the whole copied file (hundreds of ms for a 1,000,000-entry record),
    // which a real node, whose log is already on disk, never pays.
    let status = Command::new("sync").status().context("running sync")?;
    if !status.success() {
        bail!("sync after copying {} failed", cache.display());
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------
// A node process

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn held(store: &Store, record: &RecordId) -> usize {
    match store.holds(record) {
        Ok(true) => store.with_record(record, |r| r.len()).unwrap_or(0),
        _ => 0,
    }
}

fn node_main(dir: &Path, actor: &str, peer_seed: u64) -> Result<()> {
    let identity = match actor {
        "patient" => patient(),
        "reader" => reader(),
        other => bail!("unknown actor {other}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let started = Instant::now();
        let (store, _) = Store::open(dir, key(peer_seed, "node"))?;
        let open_ms = started.elapsed().as_secs_f64() * 1e3;
        // The generated records are plain, and so are the writes measured here (sealed
        // sync is measured beside plain in `docs/blind-hosting.md`'s own benchmark).
        store.set_seal_new_streams(false);
        let mut peer_key = [0u8; 32];
        peer_key[..8].copy_from_slice(&peer_seed.to_le_bytes());
        peer_key[8] = 0xC0;
        let config = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse()?],
            sync_interval: Duration::from_secs(86_400),
            requests_per_minute: 1_000_000,
            request_timeout: Duration::from_secs(600),
            ..NetConfig::default()
        };
        let (handle, _task) = net::start(store.clone(), identity, peer_key, config).await?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Some(a) = handle.listen_addrs().await?.into_iter().next() {
                break a;
            }
            if Instant::now() > deadline {
                bail!("the node did not start listening");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let startup_ms = started.elapsed().as_secs_f64() * 1e3;
        // Listed once listening (a node serves without listing its records), for the
        // benchmark's check that every record is held, and timed on its own.
        let listing = Instant::now();
        let records = store.records()?.len();
        let list_ms = listing.elapsed().as_secs_f64() * 1e3;
        reply(json!({
            "addr": addr.to_string(),
            "records": records,
            "startup_ms": startup_ms,
            "open_ms": open_ms,
            "list_ms": list_ms,
        }));
        let record = record_id();
        // Commands arrive on stdin, read on a plain thread.
        let (tx, mut lines) = tokio::sync::mpsc::channel::<String>(16);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(|l| l.ok()) {
                if tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        while let Some(line) = lines.recv().await {
            let cmd: Json = serde_json::from_str(&line)?;
            let op = cmd["op"].as_str().unwrap_or_default();
            let answer = match op {
                "load" => {
                    let t = Instant::now();
                    let s = store.clone();
                    let n = tokio::task::spawn_blocking(move || held(&s, &record_id())).await?;
                    json!({"entries": n, "ms": t.elapsed().as_secs_f64() * 1e3})
                }
                "count" => json!({"entries": held(&store, &record)}),
                "state_at" => {
                    let at = cmd["at"].as_u64().unwrap_or(T0);
                    let reps = cmd["reps"].as_u64().unwrap_or(5).max(1);
                    let s = store.clone();
                    // The state settled (which version of each item is shown, its body read
                    // when first asked), then the same with every shown body read (what a
                    // listing of everything costs).
                    type Times = (Vec<f64>, Vec<f64>, usize);
                    let (ms, read_ms, items) =
                        tokio::task::spawn_blocking(move || -> Result<Times> {
                            let (mut ms, mut read_ms) = (Vec::new(), Vec::new());
                            let mut items = 0;
                            for read in [false, true] {
                                for _ in 0..reps {
                                    let t = Instant::now();
                                    items = s.with_record(&record_id(), |r| {
                                        let past = r.at_time(at);
                                        let v = past.viewer(&patient().actor(), at);
                                        let state = cophr_protocol::fold::current(&past, &v);
                                        if read {
                                            state
                                                .items
                                                .iter()
                                                .filter(|i| !i.body.unreadable())
                                                .count()
                                        } else {
                                            state.items.len()
                                        }
                                    })?;
                                    let took = t.elapsed().as_secs_f64() * 1e3;
                                    if read {
                                        read_ms.push(took)
                                    } else {
                                        ms.push(took)
                                    }
                                }
                            }
                            Ok((ms, read_ms, items))
                        })
                        .await??;
                    json!({"ms": ms, "read_ms": read_ms, "items": items})
                }
                "opened" => json!({"opened": store.with_record(&record, |r| {
                    r.entries()
                        .filter(|e| matches!(
                            r.content_state(&e.id()),
                            Some(cophr_protocol::record::ContentState::Opened)
                        ))
                        .count()
                }).unwrap_or(0)}),
                "sync" => {
                    let addr: libp2p::Multiaddr = cmd["peer"]
                        .as_str()
                        .ok_or_else(|| anyhow!("sync needs a peer"))?
                        .parse()?;
                    let peer = net::service::peer_of(&addr)
                        .ok_or_else(|| anyhow!("address without a peer id"))?;
                    let meter = std::sync::Arc::new(Meter::default());
                    let metered = handle.metered(meter.clone());
                    let t = Instant::now();
                    let r = client::sync(&metered, peer, vec![addr], record, false).await?;
                    let secs = t.elapsed().as_secs_f64();
                    json!({
                        "pulled": r.pulled,
                        "secs": secs,
                        "traffic": meter.traffic(),
                        "held": held(&store, &record),
                    })
                }
                "write" => {
                    let n = cmd["n"].as_u64().unwrap_or(1);
                    let t0 = now_ns();
                    let p = patient();
                    let s = store.clone();
                    tokio::task::spawn_blocking(move || -> Result<()> {
                        for i in 0..n {
                            s.write(&record_id(), &p, one_kb(i), net::service::now_ms(), None)?;
                        }
                        Ok(())
                    })
                    .await??;
                    if cmd["announce"].as_bool().unwrap_or(false) {
                        handle.changed(record).await?;
                    }
                    let ms = (now_ns() - t0) as f64 / 1e6;
                    let admission_loads = store.admission_loads();
                    json!({"t0": t0.to_string(), "ms": ms, "admission_loads": admission_loads, "held": held(&store, &record)})
                }
                "await" => {
                    let want = cmd["count"].as_u64().unwrap_or(0) as usize;
                    let s = store.clone();
                    let t1 = tokio::task::spawn_blocking(move || -> Result<u128> {
                        let deadline = Instant::now() + STEP_TIMEOUT;
                        loop {
                            if held(&s, &record_id()) >= want {
                                return Ok(now_ns());
                            }
                            if Instant::now() > deadline {
                                bail!("timed out waiting for {want} entries");
                            }
                            std::thread::sleep(Duration::from_micros(100));
                        }
                    })
                    .await??;
                    json!({"t1": t1.to_string()})
                }
                "follow" => {
                    let addr: libp2p::Multiaddr = cmd["peer"]
                        .as_str()
                        .ok_or_else(|| anyhow!("follow needs a peer"))?
                        .parse()?;
                    handle.set_peer_book(
                        &record,
                        &PeerBook {
                            home: None,
                            replicas: vec![addr],
                            learned: vec![],
                        },
                    )?;
                    json!({})
                }
                "sync_all" => provider::sync_all(&handle, &cmd).await?,
                "count_all" => {
                    let (s, n) = (store.clone(), cmd["n"].as_u64().unwrap_or(0) as usize);
                    tokio::task::spawn_blocking(move || provider::count_all(&s, n)).await?
                }
                "quit" => break,
                other => json!({"error": format!("unknown op {other}")}),
            };
            reply(answer);
        }
        handle.shutdown().await?;
        Ok(())
    })
}

#[path = "syncbench/growth.rs"]
mod growth;
#[path = "syncbench/provider.rs"]
mod provider;

fn reply(v: Json) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

// ----------------------------------------------------------------------------------------
// The driver's view of a node process

struct Proc {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    addr: String,
    ready: Json,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, dir: &Path, actor: &str, peer_seed: u64, logs: &Path) -> Result<Proc> {
        let log = logs.join(format!("{name}.log"));
        let t = Instant::now();
        let mut child = Command::new(std::env::current_exe()?)
            .args(["node", "--actor", actor, "--peer-seed"])
            .arg(peer_seed.to_string())
            .arg("--dir")
            .arg(dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning a node process")?;
        let stdin = child.stdin.take().context("node stdin")?;
        let stdout = child.stdout.take().context("node stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut p = Proc {
            name: name.into(),
            child,
            stdin,
            lines,
            addr: String::new(),
            ready: Json::Null,
            log,
        };
        let mut ready = p.read()?;
        p.addr = ready["addr"]
            .as_str()
            .ok_or_else(|| anyhow!("{name} did not report an address"))?
            .into();
        ready["spawn_to_ready_ms"] = json!(t.elapsed().as_secs_f64() * 1e3);
        p.ready = ready;
        Ok(p)
    }

    fn send(&mut self, cmd: Json) -> Result<()> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        Ok(())
    }

    fn read(&mut self) -> Result<Json> {
        match self.lines.recv_timeout(STEP_TIMEOUT) {
            Ok(line) => Ok(serde_json::from_str(&line)?),
            Err(_) => bail!(
                "node process {} stopped answering; see {}",
                self.name,
                self.log.display()
            ),
        }
    }

    fn call(&mut self, cmd: Json) -> Result<Json> {
        self.send(cmd)?;
        self.read()
    }

    /// Peak and current resident memory, KiB (VmHWM, VmRSS).
    fn memory(&self) -> Result<Memory> {
        memory_of(self.child.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.send(json!({"op": "quit"}));
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Memory {
    peak_kib: u64,
    resident_kib: u64,
}

fn memory_of(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        peak_kib: field("VmHWM:"),
        resident_kib: field("VmRSS:"),
    })
}

// ----------------------------------------------------------------------------------------
// The measurements

struct Sizes {
    bulk: usize,
    catchup_base: usize,
    live: usize,
    host_records: usize,
    host_entries: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Report {
    machine: Machine,
    verify: VerifyRates,
    bulk: Bulk,
    /// Hypercore's rounds beside the bulk sync's (null with --no-hypercore).
    hypercore: Option<BesideHypercore>,
    sealed: SealedBulk,
    catchup: CatchUp,
    live: Live,
    host: Host,
}

#[derive(Debug, Serialize, Deserialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    memory_kib: u64,
    load_average_at_start: String,
    load_average_at_end: String,
    date_unix: u64,
    debug_build: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct VerifyRates {
    entry_bytes: usize,
    single_per_s: f64,
    batch_64_per_s: f64,
    batch_1024_per_s: f64,
    /// The higher single-thread batch rate: what the bulk target is measured against.
    batch_per_s: f64,
    /// Batches of 1024 decoded and verified the way a replica does
    /// (`cophr_node::net::verify`, on up to all cores).
    batch_all_cores_per_s: f64,
    /// Each rate is the median of this many timed windows, half measured before the bulk
    /// sync and half after it, so a burst of other work on the machine moves it little.
    windows: usize,
    /// The lowest and highest window of the one-thread batch-of-1024 rate.
    batch_1024_range: (f64, f64),
    /// The CPU an entry costs in the sync, in verification and in the work beside it that
    /// no faster code path may skip; with the ceiling that sets.
    beside: Beside,
}

/// See [`VerifyRates::beside`]. Each cost is CPU time (the process's, not the wall clock,
/// so other work on the machine does not inflate it), µs per entry, the median of the
/// windows.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Beside {
    /// Decoding and verifying in batches of 1,024 on all cores (the all-cores rate's
    /// work).
    verify_us: f64,
    /// The transport's ChaCha20-Poly1305 (Noise) sealing the entry's bytes on the server
    /// and opening them on the replica.
    aead_us: f64,
    /// BLAKE3 of the bytes: the server's check of what it read against the id.
    hash_us: f64,
    /// Storing a verified batch of 1,024 durably in a fresh store (apply, log append,
    /// fsync, index), on the replica.
    store_us: f64,
    /// The cores the server and the replica share.
    cores: usize,
    /// The highest share of the all-cores verify rate a sync could reach on these cores:
    /// cores ÷ ((verify + aead + hash + store) × the all-cores rate). Every other cost of a
    /// real sync (TCP, yamux, framing, scheduling, the pull's own messages) only lowers it.
    ceiling: f64,
}

/// Timed windows of each verification rate (entries/s).
#[derive(Debug, Default)]
struct VerifySamples {
    entry_bytes: usize,
    single: Vec<f64>,
    batch_64: Vec<f64>,
    batch_1024: Vec<f64>,
    all_cores: Vec<f64>,
    /// CPU µs per entry (see [`Beside`]).
    verify_cpu: Vec<f64>,
    aead: Vec<f64>,
    hash: Vec<f64>,
    store: Vec<f64>,
}

/// The index of the median of `xs` (of an even count, the lower middle one).
fn median_index(xs: &[f64]) -> usize {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    order
        .get(xs.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or(0)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if !n.is_multiple_of(2) => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl VerifySamples {
    fn extend(&mut self, other: VerifySamples) {
        self.entry_bytes = other.entry_bytes;
        self.single.extend(other.single);
        self.batch_64.extend(other.batch_64);
        self.batch_1024.extend(other.batch_1024);
        self.all_cores.extend(other.all_cores);
        self.verify_cpu.extend(other.verify_cpu);
        self.aead.extend(other.aead);
        self.hash.extend(other.hash);
        self.store.extend(other.store);
    }

    fn rates(&self) -> VerifyRates {
        let (b64, b1024) = (median(&self.batch_64), median(&self.batch_1024));
        let lo = self
            .batch_1024
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        let hi = self.batch_1024.iter().copied().fold(0.0, f64::max);
        let all_cores = median(&self.all_cores);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let beside = Beside {
            verify_us: median(&self.verify_cpu),
            aead_us: median(&self.aead),
            hash_us: median(&self.hash),
            store_us: median(&self.store),
            cores,
            ceiling: 0.0,
        };
        let per_entry_s =
            (beside.verify_us + beside.aead_us + beside.hash_us + beside.store_us) / 1e6;
        VerifyRates {
            entry_bytes: self.entry_bytes,
            single_per_s: median(&self.single),
            batch_64_per_s: b64,
            batch_1024_per_s: b1024,
            batch_per_s: b64.max(b1024),
            batch_all_cores_per_s: all_cores,
            windows: self.batch_1024.len(),
            batch_1024_range: (lo, hi),
            beside: Beside {
                ceiling: cores as f64 / (per_entry_s * all_cores),
                ..beside
            },
        }
    }
}

/// The bulk sync: the figures of the median round (of an even number of rounds, the
/// slower middle one), with every round in `runs`.
#[derive(Debug, Serialize, Deserialize)]
struct Bulk {
    entries: usize,
    /// The median round's figures.
    #[serde(flatten)]
    median: BulkRun,
    /// entries/s ÷ batch verify rate.
    share_of_batch_verify: f64,
    /// The target is 0.70 of the batch verify rate; this is share ÷ 0.70 (≥ 1 meets it).
    ratio_to_target: f64,
    /// entries/s ÷ the all-cores batch verify rate (`VerifyRates::batch_all_cores_per_s`).
    share_of_all_cores_verify: f64,
    /// The target share of the all-cores batch verify rate (0.85).
    all_cores_target: f64,
    /// share_of_all_cores_verify ÷ all_cores_target (≥ 1 meets it).
    all_cores_ratio_to_target: f64,
    /// The index in `runs` of the round these figures are from.
    median_run: usize,
    runs: Vec<BulkRun>,
}

/// One round's bulk sync into an empty replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BulkRun {
    held_after: usize,
    server_load_ms: f64,
    secs: f64,
    entries_per_s: f64,
    mb_per_s: f64,
    round_trips: u64,
    overhead_bytes: u64,
    server_memory: Memory,
    replica_memory: Memory,
}

/// Where the Hypercore harness is and how to run it.
struct HypercoreSetup {
    dir: PathBuf,
    node_version: String,
    inflight: Option<u64>,
}

/// One run of the Hypercore harness (`simulations/hypercore/bench.js`): the reader's
/// replication of every block, timed from connecting until all are verified and stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HypercoreRun {
    seconds: f64,
    blocks_per_s: f64,
    /// Block bytes per second (1,024 per block; cophr's MB/s counts its ~1,165-byte
    /// signed entries).
    bytes_per_s: f64,
    held: usize,
    /// CPU (user + system) of the reader while replicating, and of the writer while serving.
    reader_cpu_seconds: f64,
    writer_cpu_seconds: f64,
    reader_peak_kib: u64,
    writer_peak_kib: u64,
    /// The writer's untimed appends that built its core.
    writer_append_seconds: f64,
}

/// Hypercore beside cophr's bulk sync, in the same run.
#[derive(Debug, Serialize, Deserialize)]
struct BesideHypercore {
    hypercore: String,
    node: String,
    blocks: usize,
    block_bytes: usize,
    /// inflightRange given to both sides, if not Hypercore's default.
    inflight: Option<u64>,
    runs: Vec<HypercoreRun>,
    /// The index in `runs` of the median run (of an even number, the slower middle one).
    median_run: usize,
    blocks_per_s: f64,
    /// The bulk sync's median entries/s (`Bulk::entries_per_s`).
    cophr_entries_per_s: f64,
    /// cophr entries/s ÷ Hypercore blocks/s, medians of the same run.
    ratio: f64,
    /// Each round's cophr entries/s ÷ the same round's Hypercore blocks/s.
    round_ratios: Vec<f64>,
    /// The target ratio (5).
    target: f64,
    /// ratio ÷ target (≥ 1 meets it).
    ratio_to_target: f64,
}

/// Bulk sync of sealed entries, measured in the same run as the plain one.
#[derive(Debug, Serialize, Deserialize)]
struct SealedBulk {
    entries: usize,
    secs: f64,
    entries_per_s: f64,
    /// Entries the replica opened (must be all of them).
    opened: usize,
    /// entries/s ÷ the plain bulk sync's entries/s (the target is ≥ 0.90).
    ratio_to_plain: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CatchUpRun {
    new_entries: usize,
    pulled: usize,
    round_trips: u64,
    request_bytes: u64,
    response_bytes: u64,
    entry_bytes: u64,
    overhead_bytes: u64,
    ms: f64,
    /// round trips ÷ 3 (≤ 1 meets the target).
    round_trips_ratio: f64,
    /// overhead ÷ 4096 bytes (≤ 1 meets the target).
    overhead_ratio: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct CatchUp {
    base_entries: usize,
    server_load_ms: f64,
    replica_load_ms: f64,
    runs: Vec<CatchUpRun>,
    held_after: usize,
    expected_after: usize,
    server_memory: Memory,
    replica_memory: Memory,
}

#[derive(Debug, Serialize, Deserialize)]
struct Live {
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    held_after: usize,
    expected_after: usize,
}

#[derive(Debug, Serialize, Deserialize)]
struct Host {
    records: usize,
    entries_per_record: usize,
    records_listed: usize,
    /// Spawn until listening (store opened, network up), in a fresh process.
    startup_ms: f64,
    /// Of which: opening the store.
    open_ms: f64,
    /// Listing every record held, once listening (not part of the start-up).
    list_ms: f64,
    /// The first start after the store was written (sled replaying its log since its
    /// last snapshot, as after a crash); `startup_ms` is a restart after a clean stop.
    first_startup_ms: f64,
    /// Of which: opening the store.
    first_open_ms: f64,
    /// startup ÷ 2 s (≤ 1 meets the target).
    startup_ratio: f64,
    memory: Memory,
}

fn machine(load_start: String) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        memory_kib: meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        load_average_at_start: load_start,
        load_average_at_end: load_average(),
        date_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        debug_build: cfg!(debug_assertions),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// CPU time this process has used, in seconds (all its threads).
fn process_cpu_s() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Windows timed by [`verify_samples`] for each rate.
const VERIFY_WINDOWS: usize = 5;

/// ed25519 verification of 1 KB entries on this machine, one at a time and in batches
/// (the same calls the sync path makes): [`VERIFY_WINDOWS`] windows of 300 ms each.
fn verify_samples() -> Result<VerifySamples> {
    let p = patient();
    let mut rec = Record::new(p.actor());
    let genesis = genesis(&mut rec, &p, "Bench Patient")?;
    // A chain of 1,024 entries (applied in turn, so a store takes them as a batch).
    let mut verified = Vec::with_capacity(1024);
    for i in 0..1024u64 {
        let v = rec.prepare(&p, one_kb(i), None, T0 + 1 + i, None)?;
        rec.apply_known(v.clone())?;
        verified.push(v);
    }
    let entries: Vec<SignedEntry> = verified.iter().map(|v| v.signed().clone()).collect();
    let entry_bytes = entries.iter().map(|e| e.bytes().len()).sum::<usize>() / entries.len();
    let budget = Duration::from_millis(300);
    let rate = |f: &dyn Fn() -> usize| -> Vec<f64> {
        (0..VERIFY_WINDOWS)
            .map(|_| {
                let t = Instant::now();
                let mut n = 0;
                while t.elapsed() < budget {
                    n += f();
                }
                n as f64 / t.elapsed().as_secs_f64()
            })
            .collect()
    };
    let single = rate(&|| {
        for e in &entries[..64] {
            assert!(e.clone().verify().is_ok());
        }
        64
    });
    let batch = |size: usize| {
        rate(&|| {
            for c in entries.chunks(size) {
                assert!(verify_batch(c.to_vec()).is_ok());
            }
            entries.len()
        })
    };
    let batch_64 = batch(64);
    let batch_1024 = batch(1024);
    let raw: Vec<Vec<u8>> = entries.iter().map(|e| e.bytes().to_vec()).collect();
    let all_cores = rate(&|| {
        assert!(net::verify::decode_verify_all(raw.clone()).is_ok());
        entries.len()
    });
    // The CPU an entry costs, in verification and beside it (see `Beside`): process CPU
    // time per entry, in windows of about 300 ms.
    let cpu_us = |f: &dyn Fn() -> usize| -> Vec<f64> {
        (0..VERIFY_WINDOWS)
            .map(|_| {
                let (t, c) = (Instant::now(), process_cpu_s());
                let mut n = 0;
                while t.elapsed() < budget {
                    n += f();
                }
                (process_cpu_s() - c) * 1e6 / n as f64
            })
            .collect()
    };
    let verify_cpu = cpu_us(&|| {
        assert!(net::verify::decode_verify_all(raw.clone()).is_ok());
        entries.len()
    });
    let aead = {
        use chacha20poly1305::aead::{Aead, KeyInit};
        let cipher = chacha20poly1305::ChaCha20Poly1305::new(&[7u8; 32].into());
        let nonce = [0u8; 12].into();
        cpu_us(&|| {
            for b in &raw {
                let sealed = cipher.encrypt(&nonce, b.as_slice()).expect("sealing");
                let opened = cipher.decrypt(&nonce, sealed.as_slice()).expect("opening");
                assert_eq!(opened.len(), b.len());
            }
            raw.len()
        })
    };
    let hash = cpu_us(&|| {
        for (b, e) in raw.iter().zip(&entries) {
            assert_eq!(blake3::hash(b).as_bytes(), e.id().as_bytes());
        }
        raw.len()
    });
    let mut store = Vec::new();
    for w in 0..VERIFY_WINDOWS {
        let dir = std::env::temp_dir().join(format!(
            "syncbench-store-{}-{w}-{}",
            std::process::id(),
            now_ns()
        ));
        let (s, _) = Store::open(&dir, key(SEED, "floor"))?;
        s.ingest(&p.actor(), vec![genesis.clone()])?;
        let c = process_cpu_s();
        s.ingest(&p.actor(), verified.clone())?;
        store.push((process_cpu_s() - c) * 1e6 / verified.len() as f64);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(VerifySamples {
        entry_bytes,
        single,
        batch_64,
        batch_1024,
        all_cores,
        verify_cpu,
        aead,
        hash,
        store,
    })
}

fn num(v: &Json, field: &str) -> Result<f64> {
    v[field]
        .as_f64()
        .ok_or_else(|| anyhow!("missing {field} in {v}"))
}

fn traffic(v: &Json) -> Result<net::Traffic> {
    Ok(serde_json::from_value(v["traffic"].clone())?)
}

/// The patient's node serving the store at `runs/<phase>-server` (peer seed `seed`) and
/// the reader's replica over `runs/<phase>-replica` (peer seed `seed + 1`).
fn spawn_pair(phase: &str, seed: u64, runs: &Path) -> Result<(Proc, Proc)> {
    let [server, replica] = ["server", "replica"].map(|side| format!("{phase}-{side}"));
    Ok((
        Proc::spawn(&server, &runs.join(&server), "patient", seed, runs)?,
        Proc::spawn(&replica, &runs.join(&replica), "reader", seed + 1, runs)?,
    ))
}

/// One bulk sync of the `n`-entry record into an empty replica; the pair of nodes is
/// returned running (stores at `runs/bulk-server` and `runs/bulk-replica`).
fn cophr_bulk(work: &Path, runs: &Path, n: usize) -> Result<(BulkRun, Proc, Proc)> {
    cached(work, "record", n, &runs.join("bulk-server"))?;
    let (mut server, mut replica) = spawn_pair("bulk", 1, runs)?;
    let loaded = server.call(json!({"op": "load"}))?;
    let total = n + 2;
    if loaded["entries"].as_u64() != Some(total as u64) {
        bail!("the bulk server holds {loaded}, expected {total} entries");
    }
    let synced = replica.call(json!({"op": "sync", "peer": server.addr}))?;
    let secs = num(&synced, "secs")?;
    let t = traffic(&synced)?;
    let pulled = num(&synced, "pulled")? as usize;
    let run = BulkRun {
        held_after: num(&synced, "held")? as usize,
        server_load_ms: num(&loaded, "ms")?,
        secs,
        entries_per_s: pulled as f64 / secs,
        mb_per_s: t.entry_bytes as f64 / 1e6 / secs,
        round_trips: t.requests,
        overhead_bytes: t.overhead(),
        server_memory: server.memory()?,
        replica_memory: replica.memory()?,
    };
    if run.held_after != total {
        bail!(
            "bulk sync incomplete: the replica holds {} of {total}",
            run.held_after
        );
    }
    Ok((run, server, replica))
}

/// Checks that Node.js runs and the harness at `dir` has the pinned hypercore installed;
/// gives node's version, or an error that says how to install them.
fn hypercore_ready(dir: &Path) -> Result<String> {
    let install = format!(
        "run `npm ci --prefix {}` (npm fetches the pinned packages from its registry), or \
         pass --no-hypercore to skip the Hypercore rounds",
        dir.display()
    );
    let node = Command::new("node").arg("--version").output();
    let node_version = match node {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => bail!(
            "the Hypercore rounds need Node.js, and `node --version` failed ({}): install \
             Node.js 20 or newer with npm, then {install}",
            out.status
        ),
        Err(e) => bail!(
            "the Hypercore rounds need Node.js, and `node` did not run ({e}): install Node.js \
             20 or newer with npm, then {install}"
        ),
    };
    if !dir.join("bench.js").is_file() {
        bail!(
            "no Hypercore harness at {} (bench.js is missing); pass --hypercore-dir or \
             --no-hypercore",
            dir.display()
        );
    }
    let pkg = dir.join("node_modules/hypercore/package.json");
    let text = std::fs::read_to_string(&pkg).map_err(|_| {
        anyhow!(
            "the Hypercore harness's packages are not installed ({} is missing): {install}",
            pkg.display()
        )
    })?;
    let installed: Json =
        serde_json::from_str(&text).with_context(|| format!("reading {}", pkg.display()))?;
    match installed["version"].as_str() {
        Some(HYPERCORE_VERSION) => Ok(node_version),
        other => bail!(
            "{} holds hypercore {}, the benchmark pins {HYPERCORE_VERSION}: {install}",
            pkg.display(),
            other.unwrap_or("of no version")
        ),
    }
}

/// One run of the Hypercore harness replicating `n` blocks; its stores go under
/// `runs/hypercore-<round>`, removed when it ends.
fn hypercore_run(
    setup: &HypercoreSetup,
    n: usize,
    runs: &Path,
    round: usize,
) -> Result<HypercoreRun> {
    let dir = runs.join(format!("hypercore-{round}"));
    std::fs::create_dir_all(&dir)?;
    let mut cmd = Command::new("node");
    cmd.arg(setup.dir.join("bench.js"))
        .arg("--blocks")
        .arg(n.to_string())
        .arg("--block-bytes")
        .arg(HYPERCORE_BLOCK_BYTES.to_string())
        .arg("--dir")
        .arg(&dir);
    if let Some(r) = setup.inflight {
        cmd.arg("--inflight").arg(r.to_string());
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("running the Hypercore harness")?;
    if !out.status.success() {
        bail!(
            "the Hypercore harness failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout
        .lines()
        .last()
        .ok_or_else(|| anyhow!("the Hypercore harness printed nothing"))?;
    let v: Json = serde_json::from_str(last)
        .with_context(|| format!("the Hypercore harness printed {last}"))?;
    if v["hypercore"].as_str() != Some(HYPERCORE_VERSION) {
        bail!(
            "the Hypercore harness ran hypercore {}, not {HYPERCORE_VERSION}",
            v["hypercore"]
        );
    }
    let run: HypercoreRun = serde_json::from_value(v)?;
    if run.held != n {
        bail!(
            "Hypercore replication incomplete: the reader holds {} of {n}",
            run.held
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(run)
}

/// Hypercore's rounds set beside the bulk sync's.
fn beside_hypercore(
    setup: &HypercoreSetup,
    n: usize,
    runs: Vec<HypercoreRun>,
    bulk: &Bulk,
) -> BesideHypercore {
    let rates: Vec<f64> = runs.iter().map(|r| r.blocks_per_s).collect();
    let median_run = median_index(&rates);
    let blocks_per_s = rates[median_run];
    let ratio = bulk.median.entries_per_s / blocks_per_s;
    BesideHypercore {
        hypercore: HYPERCORE_VERSION.into(),
        node: setup.node_version.clone(),
        blocks: n,
        block_bytes: HYPERCORE_BLOCK_BYTES,
        inflight: setup.inflight,
        round_ratios: bulk
            .runs
            .iter()
            .zip(&runs)
            .map(|(c, h)| c.entries_per_s / h.blocks_per_s)
            .collect(),
        runs,
        median_run,
        blocks_per_s,
        cophr_entries_per_s: bulk.median.entries_per_s,
        ratio,
        target: HYPERCORE_TARGET,
        ratio_to_target: ratio / HYPERCORE_TARGET,
    }
}

fn run(
    sizes: &Sizes,
    rounds: usize,
    hypercore: Option<&HypercoreSetup>,
    work: &Path,
) -> Result<Report> {
    let load_start = load_average();
    std::fs::create_dir_all(work)?;
    let runs = work.join("run");
    if runs.exists() {
        std::fs::remove_dir_all(&runs)?;
    }
    std::fs::create_dir_all(&runs)?;

    eprintln!("measuring ed25519 verification rates");
    let mut samples = verify_samples()?;

    // 1. Bulk sync into an empty replica, in rounds: cophr's bulk sync, then Hypercore
    //    replicating as many blocks between two node processes (unless --no-hypercore), so
    //    both meet the same machine; on a noisy machine, rounds interleave the noise. The
    //    last round's pair of nodes stays up for the live pushes.
    let n = sizes.bulk;
    let mut cophr_runs = Vec::with_capacity(rounds);
    let mut hypercore_runs = Vec::with_capacity(rounds);
    let mut pair: Option<(Proc, Proc)> = None;
    for round in 1..=rounds {
        if let Some(previous) = pair.take() {
            drop(previous);
            std::fs::remove_dir_all(runs.join("bulk-server"))?;
            std::fs::remove_dir_all(runs.join("bulk-replica"))?;
        }
        eprintln!("bulk sync of {n} entries (round {round} of {rounds})");
        let (run, server, replica) = cophr_bulk(work, &runs, n)?;
        cophr_runs.push(run);
        pair = Some((server, replica));
        if let Some(setup) = hypercore {
            eprintln!("Hypercore replicating {n} blocks (round {round} of {rounds})");
            hypercore_runs.push(hypercore_run(setup, n, &runs, round)?);
        }
    }
    let (mut server, mut replica) = pair.context("no bulk round ran")?;
    let total = n + 2;
    eprintln!("measuring ed25519 verification rates again");
    samples.extend(verify_samples()?);
    let verify = samples.rates();
    let rates: Vec<f64> = cophr_runs.iter().map(|r| r.entries_per_s).collect();
    let mid = median_index(&rates);
    let m = cophr_runs[mid].clone();
    let entries_per_s = m.entries_per_s;
    let share = entries_per_s / verify.batch_per_s;
    let all_cores_share = entries_per_s / verify.batch_all_cores_per_s;
    let bulk = Bulk {
        entries: n,
        median: m,
        share_of_batch_verify: share,
        ratio_to_target: share / BATCH_VERIFY_TARGET,
        share_of_all_cores_verify: all_cores_share,
        all_cores_target: ALL_CORES_VERIFY_TARGET,
        all_cores_ratio_to_target: all_cores_share / ALL_CORES_VERIFY_TARGET,
        median_run: mid,
        runs: cophr_runs,
    };
    let hypercore = hypercore.map(|setup| beside_hypercore(setup, n, hypercore_runs, &bulk));

    // 1b. The same bulk sync of sealed entries into a replica holding the key (blind
    //     hosting's cost, beside the plain rate; content opens when first read, and every
    //     entry is then opened and checked, untimed, to show the replica can).
    eprintln!("bulk sync of {} sealed entries", sizes.bulk);
    cached(work, "sealed-record", n, &runs.join("sealed-server"))?;
    let (mut sserver, mut sreplica) = spawn_pair("sealed", 7, &runs)?;
    let sloaded = sserver.call(json!({"op": "load"}))?;
    let stotal = n + 3;
    if sloaded["entries"].as_u64() != Some(stotal as u64) {
        bail!("the sealed bulk server holds {sloaded}, expected {stotal} entries");
    }
    let ssynced = sreplica.call(json!({"op": "sync", "peer": sserver.addr}))?;
    let ssecs = num(&ssynced, "secs")?;
    let spulled = num(&ssynced, "pulled")? as usize;
    let opened = num(&sreplica.call(json!({"op": "opened"}))?, "opened")? as usize;
    if opened != n {
        bail!("the sealed replica opened {opened} of {n} entries");
    }
    let sealed = SealedBulk {
        entries: n,
        secs: ssecs,
        entries_per_s: spulled as f64 / ssecs,
        opened,
        ratio_to_plain: (spulled as f64 / ssecs) / entries_per_s,
    };
    drop(sserver);
    drop(sreplica);
    std::fs::remove_dir_all(runs.join("sealed-server"))?;
    std::fs::remove_dir_all(runs.join("sealed-replica"))?;

    // 2. Live push: a write on the server until the replica holds it. The replica follows
    //    the server; the server announces each write; the replica pulls.
    eprintln!("live push, {} writes", sizes.live);
    replica.call(json!({"op": "follow", "peer": server.addr}))?;
    let mut lat = Vec::with_capacity(sizes.live);
    let mut count = total;
    for _ in 0..sizes.live {
        count += 1;
        replica.send(json!({"op": "await", "count": count}))?;
        let w = server.call(json!({"op": "write", "n": 1, "announce": true}))?;
        let got = replica.read()?;
        let t0: u128 = w["t0"].as_str().unwrap_or("0").parse()?;
        let t1: u128 = got["t1"].as_str().unwrap_or("0").parse()?;
        lat.push(t1.saturating_sub(t0) as f64 / 1e6);
    }
    lat.sort_by(f64::total_cmp);
    let live_held = num(&replica.call(json!({"op": "count"}))?, "entries")? as usize;
    let live = Live {
        samples: lat.len(),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        max_ms: lat.last().copied().unwrap_or(0.0),
        held_after: live_held,
        expected_after: count,
    };
    drop(server);
    drop(replica);
    // Each phase's copies go as soon as it ends (a large record's copies take gigabytes).
    std::fs::remove_dir_all(runs.join("bulk-server"))?;
    std::fs::remove_dir_all(runs.join("bulk-replica"))?;

    // 3. Catch-up on a large record.
    let m = sizes.catchup_base;
    eprintln!("catch-up on a {m}-entry record");
    for side in ["catchup-server", "catchup-replica"] {
        cached(work, "record", m, &runs.join(side))?;
    }
    let (mut server, mut replica) = spawn_pair("catchup", 3, &runs)?;
    // Both load the record (as a running node would have it), in parallel.
    server.send(json!({"op": "load"}))?;
    replica.send(json!({"op": "load"}))?;
    let server_load = server.read()?;
    let replica_load = replica.read()?;
    let mut runs_out = Vec::new();
    let mut expected = m + 2;
    for k in [0usize, 1, 10, 1000] {
        if k > 0 {
            server.call(json!({"op": "write", "n": k}))?;
        }
        expected += k;
        let synced = replica.call(json!({"op": "sync", "peer": server.addr}))?;
        let t = traffic(&synced)?;
        let run = CatchUpRun {
            new_entries: k,
            pulled: num(&synced, "pulled")? as usize,
            round_trips: t.requests,
            request_bytes: t.request_bytes,
            response_bytes: t.response_bytes,
            entry_bytes: t.entry_bytes,
            overhead_bytes: t.overhead(),
            ms: num(&synced, "secs")? * 1e3,
            round_trips_ratio: t.requests as f64 / 3.0,
            overhead_ratio: t.overhead() as f64 / 4096.0,
        };
        if run.pulled != k {
            bail!("catch-up of {k} pulled {}", run.pulled);
        }
        runs_out.push(run);
    }
    let catchup = CatchUp {
        base_entries: m,
        server_load_ms: num(&server_load, "ms")?,
        replica_load_ms: num(&replica_load, "ms")?,
        runs: runs_out,
        held_after: num(&replica.call(json!({"op": "count"}))?, "entries")? as usize,
        expected_after: expected,
        server_memory: server.memory()?,
        replica_memory: replica.memory()?,
    };
    drop(server);
    drop(replica);
    std::fs::remove_dir_all(runs.join("catchup-server"))?;
    std::fs::remove_dir_all(runs.join("catchup-replica"))?;

    // 4. A fresh process hosting many records: start-up and memory.
    let host = measure_host(sizes, work, &runs)?;
    let _ = std::fs::remove_dir_all(&runs);

    Ok(Report {
        machine: machine(load_start),
        verify,
        bulk,
        hypercore,
        sealed,
        catchup,
        live,
        host,
    })
}

/// A fresh process hosting `sizes.host_records` records of `sizes.host_entries` entries:
/// spawn until listening, and its memory.
fn measure_host(sizes: &Sizes, work: &Path, runs: &Path) -> Result<Host> {
    let (h, e) = (sizes.host_records, sizes.host_entries);
    eprintln!("a fresh host process with {h} records of {e} entries");
    let kind = match e {
        100 => "host".to_owned(),
        e => format!("host-{e}"),
    };
    cached(work, &kind, h, &runs.join("host"))?;
    // The first start after the store was written: sled replays its own log since its
    // last snapshot of its page table (as after a crash); it writes one when the node
    // stops cleanly. Then a restart, as a host is restarted: the figure the target is
    // for.
    let first = Proc::spawn("host-first", &runs.join("host"), "patient", 5, runs)?;
    let first_startup_ms = num(&first.ready, "spawn_to_ready_ms")? - num(&first.ready, "list_ms")?;
    let first_open_ms = num(&first.ready, "open_ms")?;
    drop(first);
    let host_proc = Proc::spawn("host", &runs.join("host"), "patient", 5, runs)?;
    // Spawn until listening: the listing of every record (for the check) follows it.
    let list_ms = num(&host_proc.ready, "list_ms")?;
    let startup_ms = num(&host_proc.ready, "spawn_to_ready_ms")? - list_ms;
    let host = Host {
        records: h,
        entries_per_record: e,
        records_listed: num(&host_proc.ready, "records")? as usize,
        startup_ms,
        open_ms: num(&host_proc.ready, "open_ms")?,
        list_ms,
        first_startup_ms,
        first_open_ms,
        startup_ratio: startup_ms / 2000.0,
        memory: host_proc.memory()?,
    };
    drop(host_proc);
    Ok(host)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn print_report(r: &Report) {
    let m = &r.machine;
    println!("cophr sync benchmark: two node processes over TCP on 127.0.0.1");
    println!(
        "machine: {} × {}, {:.1} GiB; load average {} at start, {} at end{}",
        m.cpus,
        m.cpu_model,
        m.memory_kib as f64 / 1024.0 / 1024.0,
        m.load_average_at_start,
        m.load_average_at_end,
        if m.debug_build {
            " (DEBUG BUILD: figures not meaningful)"
        } else {
            ""
        }
    );
    let v = &r.verify;
    println!(
        "\ned25519, {}-byte entries (medians of {} windows, half before and half after the bulk sync): verify {:.0}/s; batch of 64 {:.0}/s; batch of 1024 {:.0}/s (one thread; windows {:.0} to {:.0}); decoded and verified in batches of 1024 on all cores {:.0}/s",
        v.entry_bytes, v.windows, v.single_per_s, v.batch_64_per_s, v.batch_1024_per_s,
        v.batch_1024_range.0, v.batch_1024_range.1, v.batch_all_cores_per_s
    );
    let f = &v.beside;
    println!(
        "CPU per entry: decoded and verified {:.1} µs (on all cores); beside it, ChaCha20-Poly1305 sealed and opened {:.1} µs, BLAKE3 read check {:.1} µs, stored durably in a batch {:.1} µs. On {} cores the most a sync can reach is {:.2} of the all-cores rate ({} the {:.2} target)",
        f.verify_us,
        f.aead_us,
        f.hash_us,
        f.store_us,
        f.cores,
        f.ceiling,
        if f.ceiling >= ALL_CORES_VERIFY_TARGET { "within" } else { "below" },
        ALL_CORES_VERIFY_TARGET
    );
    let b = &r.bulk;
    println!(
        "\nbulk sync of {} entries (median of {} rounds): {:.2} s, {:.0} entries/s, {:.1} MB/s, {} round trips, {} bytes beyond the entries",
        b.entries, b.runs.len(), b.median.secs, b.median.entries_per_s, b.median.mb_per_s, b.median.round_trips, b.median.overhead_bytes
    );
    println!(
        "  rounds: {} entries/s",
        b.runs
            .iter()
            .map(|run| format!("{:.0}", run.entries_per_s))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  = {:.2} of the one-thread batch verify rate ({:.2} of single verify); target >= {:.2}: ratio {:.2}, {}",
        b.share_of_batch_verify,
        b.median.entries_per_s / v.single_per_s,
        BATCH_VERIFY_TARGET,
        b.ratio_to_target,
        met(b.ratio_to_target >= 1.0)
    );
    println!(
        "  = {:.2} of the all-cores batch verify rate ({:.0}/s, decoded and verified in batches of 1024 on all cores); target >= {:.2}: ratio {:.2}, {}",
        b.share_of_all_cores_verify,
        v.batch_all_cores_per_s,
        b.all_cores_target,
        b.all_cores_ratio_to_target,
        met(b.all_cores_ratio_to_target >= 1.0)
    );
    match &r.hypercore {
        Some(h) => {
            println!(
                "\nbeside Hypercore {} (node {}; two node processes over TCP on 127.0.0.1, {} blocks of {} bytes, {}), one run after each bulk round:",
                h.hypercore,
                h.node,
                h.blocks,
                h.block_bytes,
                match h.inflight {
                    Some(r) => format!("inflightRange [{r}, {r}]"),
                    None => "default options".into(),
                }
            );
            for (i, run) in h.runs.iter().enumerate() {
                println!(
                    "  run {}: {:.2} s, {:.0} blocks/s, {:.1} MB/s; reader CPU {:.1} s, writer CPU {:.1} s; peak memory reader {:.0} MiB, writer {:.0} MiB",
                    i + 1,
                    run.seconds,
                    run.blocks_per_s,
                    run.bytes_per_s / 1e6,
                    run.reader_cpu_seconds,
                    run.writer_cpu_seconds,
                    mib(run.reader_peak_kib),
                    mib(run.writer_peak_kib)
                );
            }
            println!(
                "  median {:.0} blocks/s; cophr {:.0} entries/s ÷ Hypercore {:.0} blocks/s = {:.2}× (rounds: {}); target >= {:.0}×: ratio {:.2}, {}",
                h.blocks_per_s,
                h.cophr_entries_per_s,
                h.blocks_per_s,
                h.ratio,
                h.round_ratios
                    .iter()
                    .map(|x| format!("{x:.2}×"))
                    .collect::<Vec<_>>()
                    .join(", "),
                h.target,
                h.ratio_to_target,
                met(h.ratio_to_target >= 1.0)
            );
            println!(
                "  bulk sync ahead of the best peer (>= {:.0}× Hypercore and >= {:.2} of the all-cores batch verify rate, same run): {}",
                h.target,
                b.all_cores_target,
                met(h.ratio_to_target >= 1.0 && b.all_cores_ratio_to_target >= 1.0)
            );
        }
        None => println!("\nHypercore: not run (--no-hypercore)"),
    }
    println!(
        "  peak memory: server {:.0} MiB, replica {:.0} MiB (server loaded the record in {:.0} ms)",
        mib(b.median.server_memory.peak_kib),
        mib(b.median.replica_memory.peak_kib),
        b.median.server_load_ms
    );
    let s = &r.sealed;
    println!(
        "\nbulk sync of {} sealed entries into a replica holding the key (content opens when first read; all {} opened and checked after the sync, not timed): {:.2} s, {:.0} entries/s = {:.2} of the plain rate in this run; target >= 0.90: {}",
        s.entries,
        s.opened,
        s.secs,
        s.entries_per_s,
        s.ratio_to_plain,
        met(s.ratio_to_plain >= 0.90)
    );
    let c = &r.catchup;
    println!(
        "\ncatch-up on a {}-entry record (loaded in {:.1} s by the server, {:.1} s by the replica):",
        c.base_entries,
        c.server_load_ms / 1e3,
        c.replica_load_ms / 1e3
    );
    for run in &c.runs {
        println!(
            "  {:>5} new: {} round trips (ratio to 3: {:.2}, {}), {} bytes beyond the entries (ratio to 4096: {:.2}, {}), {:.1} ms",
            run.new_entries,
            run.round_trips,
            run.round_trips_ratio,
            met(run.round_trips <= 3),
            run.overhead_bytes,
            run.overhead_ratio,
            met(run.overhead_bytes <= 4096),
            run.ms
        );
    }
    println!(
        "  peak memory: server {:.0} MiB, replica {:.0} MiB",
        mib(c.server_memory.peak_kib),
        mib(c.replica_memory.peak_kib)
    );
    let l = &r.live;
    println!(
        "\nlive push ({} writes, each announced, pulled and stored): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        l.samples, l.p50_ms, l.p99_ms, l.max_ms
    );
    print_host(&r.host);
}

fn print_host(h: &Host) {
    let peak_mb = h.memory.peak_kib as f64 * 1024.0 / 1e6;
    println!(
        "\nfresh host process with {} records of {} entries, restarted: listening in {:.0} ms (store opened in {:.0} ms; target <= 2 s: ratio {:.2}, {}); resident {:.0} MiB, peak {:.0} MB (target <= 500 MB: ratio {:.2}, {}); then every record listed in {:.0} ms. Its first start after the store was written (as after a crash): listening in {:.0} ms (store opened in {:.0} ms)",
        h.records,
        h.entries_per_record,
        h.startup_ms,
        h.open_ms,
        h.startup_ratio,
        met(h.startup_ratio <= 1.0),
        mib(h.memory.resident_kib),
        peak_mb,
        peak_mb / 500.0,
        met(peak_mb <= 500.0),
        h.list_ms,
        h.first_startup_ms,
        h.first_open_ms
    );
}
