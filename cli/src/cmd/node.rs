//! `cophr node run`: this home's long-running node.
//!
//! The node opens the home's store once, joins the network (libp2p: TCP and QUIC, noise,
//! yamux, Kademlia, the sync protocol) acting as the home's identity, with the home's node
//! key as its libp2p key, and serves the control socket through which every other `cophr`
//! command runs inside it (see `control`). It writes `node.json` (peer id, addresses, pid)
//! once it listens, and removes it and the socket when it stops (SIGINT or SIGTERM).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args as ClapArgs, Subcommand};
use cophr_node::http::{self, AppState, HttpConfig};
use cophr_node::net::{self, NetConfig};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;

use crate::context::{Ctx, NodeCtx};
use crate::control::{self, NodeInfo, Reply, Request};
use crate::error::{CliError, Code, Result};
use crate::home::{write_atomic, Home};
use crate::logging::{self, LogFormat};
use crate::output;

/// Commands forwarded through the control socket that may run at once.
const CONTROL_CONCURRENCY: usize = 8;
/// How long a caller may take to send its command.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the listeners to come up.
const LISTEN_WAIT: Duration = Duration::from_secs(5);
/// How long shutting down may wait for the network and running commands.
const STOP_WAIT: Duration = Duration::from_secs(10);

const AFTER_HELP: &str = "The config file is TOML with the network settings (every key optional):
  listen = [\"/ip4/0.0.0.0/tcp/4001\", \"/ip4/0.0.0.0/udp/4001/quic-v1\"]
  bootstrap = [\"/ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…\"]
  sync_interval = 10          # seconds between catch-ups with every known peer
  request_timeout = 30        # seconds
  max_connections = 256
  max_connections_per_peer = 4
  max_connections_per_ip = 32   # inbound, from one IP address (an IPv6 /64)
  reserved_connections = 64     # of max_connections, kept for peers this node knows
  max_pending = 64
  requests_per_minute = 600   # per peer
  max_message_bytes = 16777216
  log_format = \"text\"         # or \"json\"
  http = \"127.0.0.1:7380\"     # the HTTP API (REST, FHIR, web app); false for none
  http_allow_remote = false   # allow a non-loopback HTTP address
  scrub_rate = 8              # MiB/s of documents read back and checked; 0 for none
  disk_reserve = 64           # MiB kept free on the store's disk (writes stop first)
  documents = \"eager\"        # or \"on-demand\": when a replica fetches documents' files
  [host]                      # which patients' records this node hosts, and how much
  admission = { mode = \"open\" }   # or { mode = \"allow-list\", records = [\"a-…\"] },
                                    # { mode = \"invitation\" } or { mode = \"closed\" }
  quotas = { record_bytes = 1073741824, records = 10000, total_bytes = 107374182400 }
  identity = \"P5\"             # host and serve only people attested P5+ (see `cophr trust`)
Flags override it. A patient whose record is not admitted, or would exceed a quota, is
refused with that reason (`cophr host` says so); records already hosted keep syncing.
Byte quotas count entries and the documents they name (at their stored size). By default the node listens on loopback only (127.0.0.1, TCP and QUIC,
ephemeral ports); other addresses are used only when given with --listen or in the file.

While the node runs, every other cophr command for this home runs inside it (through
HOME/control.sock), so `cophr add …` reaches the record's home host and subscribers at
once. HOME/node.json holds the node's peer id, addresses and pid. Stop it with Ctrl-C or
SIGTERM.

The HTTP API (REST under /api/v1, FHIR R4 under /fhir/r4, the web app at /) is served on
127.0.0.1:7380 unless --http or --no-http says otherwise; every request but the web app's
files needs `Authorization: Bearer $(cophr token)`. A non-loopback --http address is
refused without --http-allow-remote.

Examples:
  cophr node run
  cophr node run --http 127.0.0.1:0
  cophr node run --listen /ip4/0.0.0.0/tcp/4001 --log-format json
  cophr node run --bootstrap /ip4/192.0.2.7/tcp/4001/p2p/12D3KooW…";

/// Node commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run this home's node: replicate records with peers, serve them, take commands
    #[command(after_help = AFTER_HELP)]
    Run(Box<RunArgs>),
    /// Invite a patient to host their record here (for a node run with `--admission
    /// invitation`): prints a one-time code to give them; they run `cophr host ADDR
    /// --invitation CODE`. Only the code's hash is stored.
    Invite(InviteArgs),
}

/// `node invite`.
#[derive(ClapArgs, Debug)]
pub struct InviteArgs {
    #[command(flatten)]
    out: crate::context::Out,
}

fn invite(ctx: &Ctx, args: InviteArgs) -> Result<()> {
    let store = ctx.store()?;
    let code = cophr_node::net::server::issue_invitation(&store)?;
    if ctx.json(args.out) {
        return output::json(&serde_json::json!({ "invitation": code }));
    }
    output::line(format!(
        "Invitation (one use): {code}\nThe patient runs: cophr host <this node's address> --invitation {code}"
    ))
}

/// `node run`.
#[derive(ClapArgs, Debug)]
pub struct RunArgs {
    /// Read settings from this TOML file (flags override it)
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Listen on this multiaddr (repeat for several; replaces the loopback-only default)
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<Multiaddr>,

    /// A bootstrap peer for discovery, ending in /p2p/PEER_ID (repeat for several)
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<Multiaddr>,

    /// Be reachable through this relay (a multiaddr ending in /p2p/PEER_ID), for a node
    /// behind NAT; hole punching upgrades to a direct connection when it can (repeat for
    /// several)
    #[arg(long, value_name = "MULTIADDR")]
    relay: Vec<Multiaddr>,

    /// Offer the relay service to nodes behind NAT (as a community host would)
    #[arg(long)]
    relay_server: bool,

    /// Seconds between catch-ups with every known peer of every record [default: 10]
    #[arg(long, value_name = "SECS")]
    sync_interval: Option<f64>,

    /// Log format on stderr [default: text]
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,

    /// Serve the HTTP API (REST, FHIR, web app) on this address [default: 127.0.0.1:7380;
    /// port 0 for an ephemeral port]
    #[arg(long, value_name = "ADDR", conflicts_with = "no_http")]
    http: Option<std::net::SocketAddr>,

    /// Do not serve the HTTP API
    #[arg(long)]
    no_http: bool,

    /// Which patients' records this node takes when asked to host them: open (any),
    /// allow-list (only those given with --admit), invitation (only patients presenting a
    /// code from `cophr node invite`) or closed [default: open]
    #[arg(long, value_enum)]
    admission: Option<AdmissionMode>,

    /// Admit this patient's record (an actor id a-…; repeat for several; implies
    /// --admission allow-list)
    #[arg(long, value_name = "RECORD")]
    admit: Vec<cophr_protocol::RecordId>,

    /// Most bytes stored per record: its entries and the documents they name
    #[arg(long, value_name = "BYTES")]
    quota_record_bytes: Option<u64>,

    /// Most records stored
    #[arg(long, value_name = "N")]
    quota_records: Option<u64>,

    /// Most bytes stored in all: entries and documents (each document once)
    #[arg(long, value_name = "BYTES")]
    quota_total_bytes: Option<u64>,

    /// Host and serve only people attested at this level or higher (P0, P5, P9) by an
    /// identity assurance service on this home's trust list (`cophr trust`)
    #[arg(long, value_name = "LEVEL")]
    require_identity: Option<cophr_protocol::trust::AssuranceLevel>,

    /// Allow the HTTP API on an address other machines can reach (it is always
    /// authenticated with the token of `cophr token`)
    #[arg(long)]
    http_allow_remote: bool,

    /// Most records kept loaded in memory (least recently used ones are dropped and load
    /// again when asked for) [default: 1024]
    #[arg(long, value_name = "N")]
    cache_records: Option<usize>,

    /// Most entries held by the records kept loaded in memory (about 250 bytes each; a
    /// record of more than a few thousand entries reloads from its snapshot) [default:
    /// 2000000]
    #[arg(long, value_name = "N")]
    cache_entries: Option<usize>,

    /// Read back and check the documents held at this many MiB a second, in the background
    /// (a damaged one is fetched again from a peer at the next sync); a pass a day at most;
    /// 0 for no scrub [default: 8]
    #[arg(long, value_name = "MIB")]
    scrub_rate: Option<u64>,

    /// Keep this many MiB free on the store's disk: a write that would leave less is
    /// refused (HTTP 507), reads go on (their audit events may use most of it), and writes
    /// resume once space is freed; 0 for none [default: 64]
    #[arg(long, value_name = "MIB")]
    disk_reserve: Option<u64>,

    /// When this node, as a replica, fetches the files of the documents it may see:
    /// eager (after every sync, so each is here before anyone asks) or on-demand (only
    /// the one asked for, by `cophr download`, the HTTP or FHIR API or the web app, from
    /// the record's peers, home host first). A record's home host always fetches what is
    /// pushed to it [default: eager]
    #[arg(long, value_enum, value_name = "WHEN")]
    documents: Option<DocumentsMode>,
}

/// `--documents`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum DocumentsMode {
    Eager,
    OnDemand,
}

/// `--admission`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum AdmissionMode {
    Open,
    AllowList,
    Invitation,
    Closed,
}

/// Applies the admission and quota flags over the config file's `[host]` settings.
fn host_policy(args: &RunArgs, config: &mut NetConfig) {
    use cophr_protocol::sync::server::Admission;
    let listed = |config: &NetConfig| match &config.host.admission {
        Admission::AllowList(l) => l.clone(),
        _ => Default::default(),
    };
    match args.admission {
        Some(AdmissionMode::Open) => config.host.admission = Admission::Open,
        Some(AdmissionMode::Closed) => config.host.admission = Admission::Closed,
        Some(AdmissionMode::Invitation) => config.host.admission = Admission::Invitation,
        Some(AdmissionMode::AllowList) => {
            config.host.admission = Admission::AllowList(listed(config))
        }
        None => {}
    }
    if !args.admit.is_empty() {
        let mut list = listed(config);
        list.extend(args.admit.iter().copied());
        config.host.admission = Admission::AllowList(list);
    }
    let q = &mut config.host.quotas;
    q.record_bytes = args.quota_record_bytes.or(q.record_bytes);
    q.records = args.quota_records.or(q.records);
    q.total_bytes = args.quota_total_bytes.or(q.total_bytes);
    config.host.identity = args.require_identity.or(config.host.identity);
}

/// Applies `--documents` over the config file's `documents`.
fn documents_policy(args: &RunArgs, config: &mut NetConfig) {
    use cophr_node::net::DocumentFetch;
    match args.documents {
        Some(DocumentsMode::Eager) => config.documents = DocumentFetch::Eager,
        Some(DocumentsMode::OnDemand) => config.documents = DocumentFetch::OnDemand,
        None => {}
    }
}

/// The bounds of the records kept loaded: the flags over the config file over the
/// defaults.
fn record_cache(args: &RunArgs, settings: &NodeSettings) -> Result<cophr_node::store::CacheLimits> {
    let d = cophr_node::store::CacheLimits::DEFAULT;
    let limits = cophr_node::store::CacheLimits {
        records: args
            .cache_records
            .or(settings.cache_records)
            .unwrap_or(d.records),
        entries: args
            .cache_entries
            .or(settings.cache_entries)
            .unwrap_or(d.entries),
    };
    if limits.records == 0 || limits.entries == 0 {
        return Err(CliError::invalid(
            "--cache-records and --cache-entries must be at least 1",
        ));
    }
    Ok(limits)
}

/// Settings of the node itself (beside the network's) in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSettings {
    log_format: Option<LogFormat>,
    /// The HTTP API's address, or `false` for none.
    http: Option<HttpSetting>,
    http_allow_remote: Option<bool>,
    cache_records: Option<usize>,
    cache_entries: Option<usize>,
    scrub_rate: Option<u64>,
    disk_reserve: Option<u64>,
}

/// `http = "127.0.0.1:7380"` or `http = false` in the config file.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum HttpSetting {
    Addr(std::net::SocketAddr),
    Enabled(bool),
}

/// Reads the config file: the network settings, and the node's own.
fn load_config(path: Option<&Path>) -> Result<(NetConfig, NodeSettings)> {
    let Some(path) = path else {
        return Ok((NetConfig::default(), NodeSettings::default()));
    };
    let bad = |e: &dyn std::fmt::Display| {
        CliError::invalid(format!("config file {}: {e}", path.display()))
    };
    let text = crate::home::read_limited(path, 1024 * 1024)?;
    let text = String::from_utf8(text).map_err(|e| bad(&e))?;
    let mut table: toml::Table = toml::from_str(&text).map_err(|e| bad(&e))?;
    let mut node = toml::Table::new();
    for key in [
        "log_format",
        "http",
        "http_allow_remote",
        "cache_records",
        "cache_entries",
        "scrub_rate",
        "disk_reserve",
    ] {
        if let Some(v) = table.remove(key) {
            node.insert(key.to_owned(), v);
        }
    }
    let settings: NodeSettings = toml::Value::Table(node).try_into().map_err(|e| bad(&e))?;
    let net: NetConfig = toml::Value::Table(table).try_into().map_err(|e| bad(&e))?;
    Ok((net, settings))
}

fn is_loopback(addr: &Multiaddr) -> bool {
    addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_loopback(),
        Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

/// Runs a node subcommand.
pub fn run(ctx: &Ctx, cmd: Command) -> Result<()> {
    match cmd {
        Command::Run(a) => run_node(ctx, *a),
        Command::Invite(a) => invite(ctx, a),
    }
}

fn run_node(ctx: &Ctx, args: RunArgs) -> Result<()> {
    let loaded = load_config(args.config.as_deref());
    let format = args
        .log_format
        .or_else(|| loaded.as_ref().ok().and_then(|(_, s)| s.log_format))
        .unwrap_or_default();
    logging::init(ctx.global.verbose, format, "info");
    let (mut config, settings) = loaded?;
    let http = http_plan(&args, &settings)?;
    let cache = record_cache(&args, &settings)?;
    let scrub_rate = scrub_rate(&args, &settings)?;
    let disk_reserve = disk_reserve(&args, &settings)?;
    host_policy(&args, &mut config);
    documents_policy(&args, &mut config);
    if !args.listen.is_empty() {
        config.listen = args.listen;
    }
    if !args.bootstrap.is_empty() {
        config.bootstrap = args.bootstrap;
    }
    if !args.relay.is_empty() {
        config.relays = args.relay;
    }
    config.relay_server |= args.relay_server;
    // The DHT's records (home pointers published here and put here by others) are kept
    // on disk beside the store, so a host of many records holds them without memory.
    config.dht_dir = Some(ctx.home.dir.join("dht"));
    if let Some(s) = args.sync_interval {
        if !(0.1..=86_400.0).contains(&s) {
            return Err(CliError::invalid(
                "--sync-interval must be 0.1 to 86400 seconds",
            ));
        }
        config.sync_interval = Duration::from_secs_f64(s);
    }
    if config.listen.is_empty() && config.relays.is_empty() {
        return Err(CliError::invalid(
            "the node needs at least one listen address",
        ));
    }
    for b in config.bootstrap.iter().chain(&config.relays) {
        if !matches!(b.iter().last(), Some(Protocol::P2p(_))) {
            return Err(CliError::invalid(format!(
                "bootstrap or relay address {b} does not end in /p2p/<peer id>"
            )));
        }
    }
    for a in config.listen.iter().filter(|a| !is_loopback(a)) {
        tracing::warn!(address = %a, "listening beyond this machine: other hosts can connect (every request is still authenticated and checked against the record's grants)");
    }

    let me = ctx.identity()?;
    let dir = std::fs::canonicalize(&ctx.home.dir)
        .map_err(|e| CliError::io("cannot open the home", &ctx.home.dir, &e))?;
    let home = Home::new(dir.clone());
    if let Some(_live) = control::connect(&dir)? {
        let pid = read_info(&dir).map(|i| format!(" (pid {})", i.pid));
        return Err(CliError::new(
            Code::Conflict,
            format!(
                "a node is already running in {}{}; stop it first",
                dir.display(),
                pid.unwrap_or_default()
            ),
        ));
    }
    let store = ctx.store()?;
    store.set_record_cache(cache);
    store.set_disk_reserve(disk_reserve);
    collect_unreferenced_documents(&store);
    // Stops (after the step in progress) when dropped, as the node stops.
    let _scrub = scrub_documents(&store, scrub_rate);
    let node_key = home.node_key_or_create()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cophr-node")
        .build()
        .map_err(|e| CliError::other(format!("cannot start the runtime: {e}")))?;
    let result = rt.block_on(serve(
        home,
        store,
        me,
        node_key.secret_bytes(),
        config,
        http,
    ));
    rt.shutdown_timeout(STOP_WAIT);
    result
}

/// Deletes, in the background, the documents held at start-up that no record names (a
/// removed record's, one whose entry write failed, an upload never named). Taken before
/// the node serves, so no write in progress can be about to name one.
fn collect_unreferenced_documents(store: &cophr_node::store::Store) {
    let candidates = store.documents_held();
    if candidates.is_empty() {
        return;
    }
    let store = store.clone();
    let spawned = std::thread::Builder::new()
        .name("cophr-collect".into())
        .spawn(
            move || match store.collect_unreferenced_documents(&candidates) {
                Ok(removed) if !removed.is_empty() => tracing::info!(
                    documents = removed.len(),
                    bytes = removed.iter().map(|(_, b)| b).sum::<u64>(),
                    "deleted documents no record names"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not collect unreferenced documents"),
            },
        );
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start collecting unreferenced documents");
    }
}

/// The most `--scrub-rate` takes, in MiB a second.
const MAX_SCRUB_RATE: u64 = 1 << 20;

/// The scrub's rate in MiB a second: the flag over the config file over the default.
fn scrub_rate(args: &RunArgs, settings: &NodeSettings) -> Result<u64> {
    let rate = args
        .scrub_rate
        .or(settings.scrub_rate)
        .unwrap_or(cophr_node::store::scrub::DEFAULT_BYTES_PER_SECOND >> 20);
    if rate > MAX_SCRUB_RATE {
        return Err(CliError::invalid(format!(
            "--scrub-rate must be 0 to {MAX_SCRUB_RATE} MiB a second"
        )));
    }
    Ok(rate)
}

/// The most `--disk-reserve` takes, in MiB (1 TiB).
const MAX_DISK_RESERVE: u64 = 1 << 20;

/// The bytes kept free on the store's disk: the flag over the config file over the default.
fn disk_reserve(args: &RunArgs, settings: &NodeSettings) -> Result<u64> {
    let mib = args
        .disk_reserve
        .or(settings.disk_reserve)
        .unwrap_or(cophr_node::store::DEFAULT_DISK_RESERVE >> 20);
    if mib > MAX_DISK_RESERVE {
        return Err(CliError::invalid(format!(
            "--disk-reserve must be 0 to {MAX_DISK_RESERVE} MiB"
        )));
    }
    Ok(mib << 20)
}

/// Starts the background scrub of the documents held at `rate` MiB a second (none for 0).
fn scrub_documents(
    store: &cophr_node::store::Store,
    rate: u64,
) -> Option<cophr_node::store::scrub::Scrubber> {
    use cophr_node::store::scrub::{ScrubConfig, Scrubber};
    if rate == 0 {
        return None;
    }
    let config = ScrubConfig {
        bytes_per_second: rate << 20,
        ..ScrubConfig::default()
    };
    Scrubber::start(store.clone(), config, None)
        .map_err(|e| tracing::warn!(error = %e, "could not start the scrub of documents"))
        .ok()
}

/// Whether and where to serve HTTP: `(config, explicit)`; `explicit` is false for the
/// default address, which is skipped with a warning when taken (another node runs).
fn http_plan(args: &RunArgs, settings: &NodeSettings) -> Result<Option<(HttpConfig, bool)>> {
    let (addr, explicit) = match (args.no_http, args.http, settings.http) {
        (true, _, _) | (false, None, Some(HttpSetting::Enabled(false))) => return Ok(None),
        (false, Some(a), _) | (false, None, Some(HttpSetting::Addr(a))) => (a, true),
        (false, None, None | Some(HttpSetting::Enabled(true))) => (http::DEFAULT_ADDR, false),
    };
    let config = HttpConfig {
        addr,
        allow_remote: args.http_allow_remote || settings.http_allow_remote.unwrap_or(false),
    };
    config
        .check()
        .map_err(|e| CliError::new(Code::Usage, e.to_string()))?;
    Ok(Some((config, explicit)))
}

fn read_info(home: &Path) -> Option<NodeInfo> {
    let bytes = crate::home::read_limited(&home.join(control::NODE_JSON), 1024 * 1024).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Shared by the control connections.
struct State {
    home: Home,
    node: NodeCtx,
    permits: Arc<Semaphore>,
    /// Room for `watch` streams (they hold no command permit).
    watchers: Arc<Semaphore>,
    /// The uid owning the home: only it may send commands.
    uid: u32,
}

async fn serve(
    home: Home,
    store: crate::store::Store,
    me: crate::home::Identity,
    peer_key: [u8; 32],
    config: NetConfig,
    http: Option<(HttpConfig, bool)>,
) -> Result<()> {
    let identity = me.key.clone();
    // Signals are caught from the start, so a stop during start-up is clean too.
    let signal = |kind| {
        tokio::signal::unix::signal(kind)
            .map_err(|e| CliError::other(format!("cannot handle signals: {e}")))
    };
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    // Only the owner of the home may send commands.
    let uid = std::fs::metadata(&home.dir)
        .map(|m| m.uid())
        .map_err(|e| CliError::io("cannot read", &home.dir, &e))?;
    let expected = config.listen.len();
    let (handle, mut task) = net::start(store, identity.clone(), peer_key, config)
        .await
        .map_err(|e| CliError::other(format!("cannot start the node: {e}")))?;
    // Who this home trusts to attest identities, and who it is: checked against the
    // records' identity requirements, presented with its requests.
    handle.set_trust(home.trust_list()?);
    handle.set_attestations(me.info.signed_attestations());
    let addrs = wait_listening(&handle, expected).await?;

    // The HTTP API, bound before node.json is written (so its address can be published).
    let http_listener = bind_http(&handle, http).await?;
    let http_url = http_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| format!("http://{a}"));
    let http = match http_listener {
        Some(listener) => Some(start_http(&home, &me, &handle, listener)?),
        None => None,
    };

    let socket = control::socket(&home.dir);
    let info_path = home.dir.join(control::NODE_JSON);
    let info = NodeInfo {
        peer_id: handle.peer_id().to_string(),
        listen: addrs.iter().map(ToString::to_string).collect(),
        pid: std::process::id(),
        actor: identity.actor().to_string(),
        control: socket.clone(),
        http: http_url.clone(),
    };
    // No node answered on the socket (checked before the store was opened): it is stale.
    let _ = std::fs::remove_file(&socket);
    let listener = match control_listener(&socket, &info_path, &info) {
        Ok(l) => l,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            let _ = handle.shutdown().await;
            return Err(e);
        }
    };
    announce(&handle, &info, http_url.as_deref());

    let state = Arc::new(State {
        home,
        node: (handle.clone(), tokio::runtime::Handle::current()),
        permits: Arc::new(Semaphore::new(CONTROL_CONCURRENCY)),
        watchers: Arc::new(Semaphore::new(super::watch::MAX_WATCHERS)),
        uid,
    });
    let network_stopped = take_commands(&listener, &state, &mut term, &mut int, &mut task).await;
    // New commands now run locally (and wait for the store until this process exits).
    drop(listener);
    if let Some(http) = http {
        stop_http(http).await;
    }
    let _ = std::fs::remove_file(&socket);
    if !network_stopped {
        let _ = handle.shutdown().await;
        if tokio::time::timeout(STOP_WAIT, &mut task).await.is_err() {
            tracing::warn!("the network did not stop in time");
        }
    }
    // Let commands already running finish (their writes are durable once acknowledged).
    drain_commands(&state).await;
    // Large records leave a snapshot, so the next start opens them fast.
    let store = handle.store().clone();
    let _ = tokio::task::spawn_blocking(move || store.snapshot_all()).await;
    let _ = std::fs::remove_file(&info_path);
    tracing::info!("shutdown complete");
    if network_stopped {
        return Err(CliError::other("the node's network stopped unexpectedly"));
    }
    Ok(())
}

/// Takes commands on the control socket until a signal or the network's end; whether the
/// network ended.
async fn take_commands(
    listener: &UnixListener,
    state: &Arc<State>,
    term: &mut tokio::signal::unix::Signal,
    int: &mut tokio::signal::unix::Signal,
    task: &mut tokio::task::JoinHandle<()>,
) -> bool {
    loop {
        tokio::select! {
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    tokio::spawn(control_connection(stream, state.clone()));
                }
                Err(e) => tracing::warn!(error = %e, "control socket accept failed"),
            },
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break false; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break false; }
            _ = &mut *task => { tracing::error!("the network event loop ended"); break true; }
        }
    }
}

/// Waits (a while) for the commands already running to finish.
async fn drain_commands(state: &State) {
    let all = CONTROL_CONCURRENCY as u32;
    if tokio::time::timeout(STOP_WAIT, state.permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("commands still running at shutdown");
    }
}

/// Waits until the listeners are up (every one, or at least one once the wait is over);
/// their addresses. Shuts the node down if none is.
async fn wait_listening(handle: &net::NodeHandle, expected: usize) -> Result<Vec<Multiaddr>> {
    let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
    loop {
        let addrs = handle
            .listen_addrs()
            .await
            .map_err(|e| CliError::other(format!("the node stopped: {e}")))?;
        let late = tokio::time::Instant::now() >= deadline;
        if addrs.len() >= expected || (late && !addrs.is_empty()) {
            return Ok(addrs);
        }
        if late {
            let _ = handle.shutdown().await;
            return Err(CliError::other(
                "the node could not listen on any address (in use, or not on this machine?)",
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Binds the HTTP API's listener, if asked for: a default address in use only warns, an
/// explicit one shuts the node down.
async fn bind_http(
    handle: &net::NodeHandle,
    http: Option<(HttpConfig, bool)>,
) -> Result<Option<tokio::net::TcpListener>> {
    Ok(match http {
        None => None,
        Some((cfg, explicit)) => match cfg.bind().await {
            Ok(l) => Some(l),
            Err(e) if !explicit => {
                tracing::warn!(error = %e, "HTTP API not served (give --http ADDR, or --no-http)");
                None
            }
            Err(e) => {
                let _ = handle.shutdown().await;
                return Err(CliError::other(e.to_string()));
            }
        },
    })
}

/// A running HTTP API: its stop signal and its task.
type HttpServer = (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
);

/// Starts serving the HTTP API on `listener`.
fn start_http(
    home: &Home,
    me: &crate::home::Identity,
    handle: &net::NodeHandle,
    listener: tokio::net::TcpListener,
) -> Result<HttpServer> {
    let token = home.api_token_or_create()?;
    let state = AppState::new(
        handle.store().clone(),
        me.key.clone(),
        me.info.profile(),
        me.info.device.clone(),
        token,
    )
    .with_node(handle.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(http::serve(listener, state, async {
        let _ = rx.await;
    }));
    Ok((tx, task))
}

/// Logs and prints that the node runs: its peer id, addresses and HTTP API.
fn announce(handle: &net::NodeHandle, info: &NodeInfo, http_url: Option<&str>) {
    tracing::info!(peer_id = %handle.peer_id(), addrs = ?info.listen, "node running");
    let _ = output::line(format!("Node {} running; listening on:", handle.peer_id()));
    for a in &info.listen {
        let _ = output::line(format!("  {a}"));
    }
    if let Some(url) = http_url {
        tracing::info!(url = %url, "HTTP API serving");
        let _ = output::line(format!(
            "HTTP API on {url} (token: `cophr token`; web app at {url}/)"
        ));
    }
    let _ =
        output::line("Other cophr commands for this home now run inside it. Stop it with Ctrl-C.");
}

/// Stops the HTTP API and waits (a while) for it to finish.
async fn stop_http((stop, task): HttpServer) {
    let _ = stop.send(());
    match tokio::time::timeout(STOP_WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "the HTTP server failed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "the HTTP server failed"),
        Err(_) => tracing::warn!("the HTTP server did not stop in time"),
    }
}

/// Binds the control socket (mode 0600), then writes `node.json`: once it exists, the node
/// takes commands.
fn control_listener(socket: &Path, info_path: &Path, info: &NodeInfo) -> Result<UnixListener> {
    let listener = UnixListener::bind(socket)
        .map_err(|e| CliError::io("cannot create the control socket", socket, &e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| CliError::io("cannot set permissions of", socket, &e))?;
    let json = serde_json::to_string_pretty(info)
        .map_err(|e| CliError::other(format!("cannot encode node.json: {e}")))?;
    write_atomic(info_path, format!("{json}\n").as_bytes(), 0o644)?;
    Ok(listener)
}

/// Reads one message from a control connection, bounded in size.
async fn read_request(stream: &mut UnixStream) -> std::io::Result<Request> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let n = control::length(prefix)?;
    let mut body = Vec::new();
    (&mut *stream).take(n as u64).read_to_end(&mut body).await?;
    if body.len() != n {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    control::decode(&body)
}

async fn control_connection(mut stream: UnixStream, state: Arc<State>) {
    match stream.peer_cred() {
        Ok(c) if c.uid() == state.uid => {}
        _ => {
            tracing::warn!("refused a control connection from another user");
            return;
        }
    }
    let reply = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(request)) if super::watch::parse(&request).is_some() => {
            let Some(args) = super::watch::parse(&request) else {
                return;
            };
            match state.watchers.clone().try_acquire_owned() {
                Ok(permit) => {
                    super::watch::stream(stream, request, args, state.node.clone()).await;
                    drop(permit);
                    return;
                }
                Err(_) => Reply::error(Code::Other, "too many watchers on this node"),
            }
        }
        Ok(Ok(request)) => match state.permits.clone().acquire_owned().await {
            Ok(permit) => {
                let st = state.clone();
                let ran = tokio::task::spawn_blocking(move || {
                    let reply = control::execute(request, &st.home, &st.node);
                    drop(permit);
                    reply
                })
                .await;
                ran.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "a forwarded command failed");
                    Reply::error(Code::Other, "the command failed inside the node")
                })
            }
            Err(_) => Reply::error(Code::Other, "the node is stopping"),
        },
        Ok(Err(e)) => Reply::error(Code::Usage, &format!("bad control message: {e}")),
        Err(_) => Reply::error(Code::Usage, "timed out waiting for the command"),
    };
    match control::encode(&reply) {
        Ok(bytes) => {
            let _ = stream.write_all(&bytes).await;
            let _ = stream.flush().await;
        }
        Err(e) => tracing::warn!(error = %e, "cannot send a command's reply"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Result<(NetConfig, NodeSettings)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, text).unwrap();
        load_config(Some(&path))
    }

    #[test]
    fn the_admission_policy_and_quotas_come_from_the_file_and_the_flags() {
        use clap::Parser;
        use cophr_protocol::sync::server::Admission;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let george = cophr_protocol::testkit::key(1, "George").actor();
        let mary = cophr_protocol::testkit::key(1, "Mary").actor();
        let (mut net, _) = config(&format!(
            "[host]\nadmission = {{ mode = \"allow-list\", records = [\"{george}\"] }}\n\
             quotas = {{ record_bytes = 1000, records = 5 }}\n"
        ))
        .unwrap();
        assert_eq!(net.host.admission, Admission::AllowList([george].into()));
        assert_eq!(net.host.quotas.record_bytes, Some(1000));
        assert_eq!(net.host.quotas.records, Some(5));
        let args = Cli::try_parse_from([
            "run",
            "--admit",
            &mary.to_string(),
            "--quota-total-bytes",
            "9000",
            "--quota-records",
            "7",
            "--require-identity",
            "P9",
        ])
        .unwrap()
        .run;
        host_policy(&args, &mut net);
        assert_eq!(
            net.host.identity,
            Some(cophr_protocol::trust::AssuranceLevel::P9)
        );
        assert_eq!(
            net.host.admission,
            Admission::AllowList([george, mary].into())
        );
        assert_eq!(net.host.quotas.records, Some(7));
        assert_eq!(net.host.quotas.total_bytes, Some(9000));
        let closed = Cli::try_parse_from(["run", "--admission", "closed"])
            .unwrap()
            .run;
        host_policy(&closed, &mut net);
        assert_eq!(net.host.admission, Admission::Closed);
        assert!(config("[host]\nadmission = { mode = \"sometimes\" }\n").is_err());
        let (net, _) = config("[host]\nidentity = \"P5\"\n").unwrap();
        assert_eq!(
            net.host.identity,
            Some(cophr_protocol::trust::AssuranceLevel::P5)
        );
        assert!(config("[host]\nidentity = \"P7\"\n").is_err());
        assert!(Cli::try_parse_from(["run", "--admit", "not-an-actor"]).is_err());
    }

    #[test]
    fn the_scrub_rate_comes_from_the_flag_the_file_or_the_default() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let none = Cli::try_parse_from(["run"]).unwrap().run;
        let (_, default) = config("").unwrap();
        assert_eq!(scrub_rate(&none, &default).unwrap(), 8);
        let (_, file) = config("scrub_rate = 0\n").unwrap();
        assert_eq!(scrub_rate(&none, &file).unwrap(), 0);
        let flag = Cli::try_parse_from(["run", "--scrub-rate", "64"])
            .unwrap()
            .run;
        assert_eq!(scrub_rate(&flag, &file).unwrap(), 64);
        let huge = Cli::try_parse_from(["run", "--scrub-rate", "99999999"])
            .unwrap()
            .run;
        assert_eq!(scrub_rate(&huge, &default).unwrap_err().code, Code::Invalid);
        assert!(Cli::try_parse_from(["run", "--scrub-rate", "-1"]).is_err());
        assert!(config("scrub_rate = \"fast\"").is_err());
    }

    #[test]
    fn the_disk_reserve_comes_from_the_flag_the_file_or_the_default() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let none = Cli::try_parse_from(["run"]).unwrap().run;
        let (_, default) = config("").unwrap();
        assert_eq!(disk_reserve(&none, &default).unwrap(), 64 << 20);
        let (_, file) = config("disk_reserve = 0\n").unwrap();
        assert_eq!(disk_reserve(&none, &file).unwrap(), 0);
        let flag = Cli::try_parse_from(["run", "--disk-reserve", "8"])
            .unwrap()
            .run;
        assert_eq!(disk_reserve(&flag, &file).unwrap(), 8 << 20);
        let huge = Cli::try_parse_from(["run", "--disk-reserve", "99999999"])
            .unwrap()
            .run;
        assert_eq!(
            disk_reserve(&huge, &default).unwrap_err().code,
            Code::Invalid
        );
        assert!(Cli::try_parse_from(["run", "--disk-reserve", "-1"]).is_err());
    }

    #[test]
    fn the_document_fetch_policy_comes_from_the_flag_the_file_or_the_default() {
        use clap::Parser;
        use cophr_node::net::DocumentFetch;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        let none = Cli::try_parse_from(["run"]).unwrap().run;
        let (mut net, _) = config("").unwrap();
        documents_policy(&none, &mut net);
        assert_eq!(net.documents, DocumentFetch::Eager);
        let (mut net, _) = config("documents = \"on-demand\"\n").unwrap();
        documents_policy(&none, &mut net);
        assert_eq!(net.documents, DocumentFetch::OnDemand);
        let eager = Cli::try_parse_from(["run", "--documents", "eager"])
            .unwrap()
            .run;
        documents_policy(&eager, &mut net);
        assert_eq!(net.documents, DocumentFetch::Eager);
        let lazy = Cli::try_parse_from(["run", "--documents", "on-demand"])
            .unwrap()
            .run;
        let (mut net, _) = config("").unwrap();
        documents_policy(&lazy, &mut net);
        assert_eq!(net.documents, DocumentFetch::OnDemand);
        assert!(Cli::try_parse_from(["run", "--documents", "lazy"]).is_err());
        assert!(config("documents = \"sometimes\"").is_err());
    }

    #[test]
    fn the_config_file_holds_network_and_node_settings() {
        let (net, node) = config(
            "listen = [\"/ip4/0.0.0.0/tcp/4001\"]\nsync_interval = 2\nrequest_timeout = 1.5\n\
             log_format = \"json\"\n",
        )
        .unwrap();
        assert_eq!(net.listen.len(), 1);
        assert!(!is_loopback(&net.listen[0]));
        assert_eq!(net.sync_interval, Duration::from_secs(2));
        assert_eq!(net.request_timeout, Duration::from_millis(1500));
        assert_eq!(node.log_format, Some(LogFormat::Json));
        // Defaults: loopback only.
        let (net, node) = config("").unwrap();
        assert!(net.listen.iter().all(is_loopback));
        assert_eq!(node.log_format, None);
        // Unknown keys, bad values and bad TOML are refused with the file named.
        for bad in [
            "listen_on = []",
            "sync_interval = -1",
            "listen = [\"not an address\"]",
            "log_format = \"xml\"",
            "[[",
        ] {
            let e = config(bad).unwrap_err();
            assert_eq!(e.code, Code::Invalid, "{bad}: {e}");
            assert!(e.message.contains("node.toml"), "{e}");
        }
    }
}
