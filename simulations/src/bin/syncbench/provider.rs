//! A provider node syncing many records (`syncbench --provider --host-records 10000
//! --host-entries 1000`): a care provider's node holding the shared parts of thousands of
//! patients' records, each of its own history.
//!
//! - A host holds `--host-records` records of `--host-entries` entries each: a genesis, a
//!   grant of view to the provider (the benchmark's `reader`), then vital signs. The store
//!   is generated once (each record stored in one batch, from several threads) and cached.
//! - A fresh provider process, its store empty, pulls every record from the host,
//!   `--provider-parallel` at a time, with the node's own client over libp2p TCP, as its
//!   sync would after being granted them. Its store keeps loaded records within its cache's
//!   bounds (`cophr_node::store::CacheLimits`), so what it holds in memory does not grow
//!   with what it has pulled.
//! - The report gives the time and rate of the whole pull, the provider's peak and
//!   resident memory (target: ≤ 1 GiB), and the host's; then every record is counted on
//!   the provider (loaded again from its log) to check that every entry arrived.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use cophr_node::net::{client, NodeHandle};
use cophr_node::store::Store;
use cophr_protocol::testkit::key;
use cophr_protocol::RecordId;

use super::{cached, mib, num, reader, Memory, Proc, Sizes, SEED};

/// The provider's memory target: ≤ 1 GiB resident.
const MEMORY_TARGET_MIB: f64 = 1024.0;

/// The `r`th record on the host (its patient's key derives from the benchmark's seed).
pub(super) fn record_id(r: usize) -> RecordId {
    key(SEED, &format!("provider-patient-{r}")).actor()
}

/// Generates the host's store: `records` records of `entries` entries each (a genesis, a
/// grant of view to the provider, then vital signs), each stored in one batch.
pub(super) fn generate(dir: &Path, records: usize, entries: usize) -> Result<()> {
    if entries < 2 {
        bail!("a provider's record holds at least a genesis and its grant: 2 entries");
    }
    let (store, _) = Store::open(dir, key(SEED, "generator"))?;
    let one = |r: usize| -> Result<()> {
        let p = key(SEED, &format!("provider-patient-{r}"));
        let batch = super::small_record(&p, Some(&reader()), entries)?;
        store.ingest(&p.actor(), batch)?;
        Ok(())
    };
    super::in_writers(records, entries, &one)
}

/// The provider node's `sync_all` command: pulls records `0..n` from `peer`, `parallel`
/// at a time.
pub(super) async fn sync_all(handle: &NodeHandle, cmd: &Json) -> Result<Json> {
    let addr: libp2p::Multiaddr = cmd["peer"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("sync_all needs a peer"))?
        .parse()?;
    let peer = cophr_node::net::service::peer_of(&addr)
        .ok_or_else(|| anyhow::anyhow!("address without a peer id"))?;
    let n = cmd["n"].as_u64().unwrap_or(0) as usize;
    let parallel = cmd["parallel"].as_u64().unwrap_or(4).max(1) as usize;
    let t = Instant::now();
    let mut running = tokio::task::JoinSet::new();
    let (mut next, mut pulled, mut round_trips, mut failed) = (0usize, 0usize, 0usize, 0usize);
    let mut first_error = None;
    let mut finished = 0usize;
    while finished < n {
        while next < n && running.len() < parallel {
            let (h, addr, record) = (handle.clone(), addr.clone(), record_id(next));
            running.spawn(async move { client::sync(&h, peer, vec![addr], record, false).await });
            next += 1;
        }
        let Some(done) = running.join_next().await else {
            break;
        };
        finished += 1;
        match done? {
            Ok(r) => {
                pulled += r.pulled;
                round_trips += r.round_trips;
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
        if finished.is_multiple_of(500) {
            eprintln!("provider: {finished} records pulled, {pulled} entries");
        }
    }
    Ok(json!({
        "records": finished,
        "failed": failed,
        "first_error": first_error,
        "pulled": pulled,
        "round_trips": round_trips,
        "secs": t.elapsed().as_secs_f64(),
    }))
}

/// The provider node's `count_all` command: entries held of records `0..n`, each loaded
/// from the store (and let go again within the cache's bounds).
pub(super) fn count_all(store: &Store, n: usize) -> Json {
    let (mut entries, mut records_held) = (0usize, 0usize);
    for r in 0..n {
        let held = super::held(store, &record_id(r));
        entries += held;
        records_held += usize::from(held > 0);
    }
    json!({"entries": entries, "records_held": records_held})
}

/// The provider's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Provider {
    records: usize,
    entries_per_record: usize,
    parallel: usize,
    /// Records pulled, and those whose sync failed.
    records_synced: usize,
    records_failed: usize,
    first_error: Option<String>,
    /// Entries the provider pulled and stored.
    pulled: usize,
    round_trips: usize,
    secs: f64,
    entries_per_s: f64,
    /// The provider process: before the pull, and after it.
    memory_before: Memory,
    memory: Memory,
    /// Peak memory ÷ 1 GiB (≤ 1 meets the target).
    memory_ratio: f64,
    host_memory: Memory,
    /// Counted after the pull: records held and entries in them.
    records_held: usize,
    held: usize,
    count_secs: f64,
    /// The provider process after the count (which loads every record again, one after
    /// another, within the cache's bounds).
    memory_after_count: Memory,
}

/// Generates (or reuses) the host's store, starts the host and a fresh provider, and
/// measures the provider pulling every record.
pub(super) fn measure(
    sizes: &Sizes,
    parallel: usize,
    work: &Path,
    runs: &Path,
) -> Result<Provider> {
    let (h, e) = (sizes.host_records, sizes.host_entries);
    eprintln!("a provider pulling {h} records of {e} entries, {parallel} at a time");
    cached(work, &format!("provider-{e}"), h, &runs.join("host"))?;
    let mut host = Proc::spawn("host", &runs.join("host"), "patient", 5, runs)?;
    let provider_dir = runs.join("provider");
    std::fs::create_dir_all(&provider_dir)?;
    let mut provider = Proc::spawn("provider", &provider_dir, "reader", 6, runs)?;
    let memory_before = provider.memory()?;
    let r = provider.call(json!({
        "op": "sync_all", "peer": host.addr, "n": h, "parallel": parallel,
    }))?;
    if let Some(err) = r.get("error").and_then(Json::as_str) {
        bail!("the provider's pull failed: {err}");
    }
    let memory = provider.memory()?;
    let host_memory = host.memory()?;
    let t = Instant::now();
    let c = provider.call(json!({"op": "count_all", "n": h}))?;
    let count_secs = t.elapsed().as_secs_f64();
    let memory_after_count = provider.memory()?;
    let _ = host.call(json!({"op": "count"}));
    let secs = num(&r, "secs")?;
    let pulled = num(&r, "pulled")? as usize;
    Ok(Provider {
        records: h,
        entries_per_record: e,
        parallel,
        records_synced: num(&r, "records")? as usize,
        records_failed: num(&r, "failed")? as usize,
        first_error: r["first_error"].as_str().map(str::to_owned),
        pulled,
        round_trips: num(&r, "round_trips")? as usize,
        secs,
        entries_per_s: pulled as f64 / secs.max(1e-9),
        memory_before,
        memory,
        memory_ratio: mib(memory.peak_kib) / MEMORY_TARGET_MIB,
        host_memory,
        records_held: num(&c, "records_held")? as usize,
        held: num(&c, "entries")? as usize,
        count_secs,
        memory_after_count,
    })
}

pub(super) fn print(p: &Provider) {
    let expected = p.records * p.entries_per_record;
    println!(
        "\nprovider pulling {} records of {} entries ({} entries), {} at a time: {} entries pulled in {:.1} s ({:.0} entries/s, {} round trips), {} records failed{}",
        p.records,
        p.entries_per_record,
        expected,
        p.parallel,
        p.pulled,
        p.secs,
        p.entries_per_s,
        p.round_trips,
        p.records_failed,
        p.first_error
            .as_deref()
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    println!(
        "  provider memory: peak {:.0} MiB (target <= 1 GiB: ratio {:.2}, {}), resident {:.0} MiB after the pull ({:.0} MiB before); host peak {:.0} MiB",
        mib(p.memory.peak_kib),
        p.memory_ratio,
        super::met(p.memory_ratio <= 1.0),
        mib(p.memory.resident_kib),
        mib(p.memory_before.resident_kib),
        mib(p.host_memory.peak_kib)
    );
    println!(
        "  counted after the pull: {} of {} records held, {} of {} entries ({}), in {:.1} s; provider peak {:.0} MiB after the count",
        p.records_held,
        p.records,
        p.held,
        expected,
        if p.held == expected {
            "every entry arrived"
        } else {
            "ENTRIES MISSING"
        },
        p.count_secs,
        mib(p.memory_after_count.peak_kib)
    );
}
