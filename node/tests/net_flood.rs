//! A flood of libp2p connections from one machine (issue "Proven under attack",
//! exhaustion): forty fresh peer ids from 127.0.0.1 each connect to a host that takes 24
//! connections in all. Each flooder pings over its connection, so a connection that stays
//! is one the host serves. The host keeps at most its per-address share
//! (`max_connections_per_ip`, here 8) for them, so the patient's node, from another
//! address (::1: libp2p's TCP transport cannot choose a dial's source address, and every
//! loopback IPv4 connection comes from 127.0.0.1), still connects and hosts her record
//! there. Without the per-address limit the flood takes every place and the patient is
//! refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cophr_node::net::{self, client, NetConfig, NodeHandle};
use cophr_node::store::Store;
use cophr_protocol::testkit::{key, profile};
use libp2p::futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, ping, tcp, yamux, Multiaddr};

const FLOODERS: usize = 40;
const PLACES: u32 = 24;
const PER_IP: u32 = 8;
/// How often a refused flooder tries again.
const TRIES: usize = 20;

struct Node {
    handle: NodeHandle,
    _dir: tempfile::TempDir,
}

async fn node(name: &str, config: NetConfig) -> Node {
    let dir = tempfile::tempdir().expect("a directory");
    let (store, _) = Store::open(dir.path(), key(9, &format!("{name}/node"))).expect("a store");
    let peer_key = key(9, &format!("{name}/peer")).secret_bytes();
    let (handle, _task) = net::start(store, key(9, name), peer_key, config)
        .await
        .expect("the node starts");
    for _ in 0..500 {
        if !handle.listen_addrs().await.expect("addresses").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Node { handle, _dir: dir }
}

/// Creates `patient`'s record on `n`.
fn create(n: &Node, patient: &cophr_protocol::Keypair) {
    n.handle
        .store()
        .create_record(
            patient,
            profile("George", "patient", None),
            net::service::now_ms(),
            None,
        )
        .expect("a record");
}

/// What became of the flooders' connections.
#[derive(Default)]
struct Outcomes {
    /// Connections over which a ping was answered: places the host gave.
    served: AtomicUsize,
    /// Connections refused or closed before a ping was answered.
    refused: AtomicUsize,
}

impl Outcomes {
    fn settled(&self) -> usize {
        self.served.load(Ordering::SeqCst) + self.refused.load(Ordering::SeqCst)
    }
}

/// A peer with a fresh identity that connects to `target` (again when refused, up to
/// [`TRIES`] times), then keeps the connection and pings over it.
async fn flooder(target: Multiaddr, outcomes: Arc<Outcomes>) {
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|_| ping::Behaviour::new(ping::Config::new()))
        .expect("ping")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    swarm.dial(target.clone()).expect("dial");
    let (mut settled, mut tries) = (false, 1);
    loop {
        let event = swarm.select_next_some().await;
        if settled {
            continue;
        }
        match event {
            SwarmEvent::Behaviour(ping::Event { result: Ok(_), .. }) => {
                outcomes.served.fetch_add(1, Ordering::SeqCst);
                settled = true;
            }
            SwarmEvent::ConnectionClosed { .. } | SwarmEvent::OutgoingConnectionError { .. }
                if tries < TRIES =>
            {
                // Refused: as an attacker would, try again.
                tries += 1;
                swarm.dial(target.clone()).expect("dial");
            }
            SwarmEvent::ConnectionClosed { .. } | SwarmEvent::OutgoingConnectionError { .. } => {
                outcomes.refused.fetch_add(1, Ordering::SeqCst);
                settled = true;
            }
            _ => {}
        }
    }
}

/// Starts [`FLOODERS`] flooders against `target` and waits until each is served or
/// refused; returns how many were served, and the flood (which holds its connections
/// until aborted).
async fn flood(target: &Multiaddr) -> (usize, Vec<tokio::task::JoinHandle<()>>) {
    let outcomes = Arc::new(Outcomes::default());
    let flood: Vec<_> = (0..FLOODERS)
        .map(|_| tokio::spawn(flooder(target.clone(), outcomes.clone())))
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while outcomes.settled() < FLOODERS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "every flooder to be served or refused: {} of {FLOODERS} so far",
            outcomes.settled()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (outcomes.served.load(Ordering::SeqCst), flood)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_peer_ids_from_one_address_leaves_places_for_everyone_else() {
    let host = node(
        "Host",
        NetConfig {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".parse().expect("an address"),
                "/ip6/::1/tcp/0".parse().expect("an address"),
            ],
            sync_interval: Duration::from_secs(3600),
            max_connections: PLACES,
            max_connections_per_ip: PER_IP,
            ..NetConfig::default()
        },
    )
    .await;
    let addrs = host.handle.listen_addrs().await.expect("addresses");
    let on = |ip: &str| {
        addrs
            .iter()
            .find(|a| a.to_string().starts_with(ip))
            .unwrap_or_else(|| panic!("the host listens on {ip}: {addrs:?}"))
            .clone()
    };
    let (target, other) = (on("/ip4/127.0.0.1/"), on("/ip6/::1/"));

    let (served, flood) = flood(&target).await;
    assert!(
        served <= PER_IP as usize,
        "one address holds {served} connections, more than its share of {PER_IP}"
    );
    assert!(served > 0, "the flooders were served within their share");

    // The flood still holds its connections; the patient, from another address (::1),
    // hosts her record on the host.
    let george = key(9, "George");
    let laptop = node(
        "George",
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("an address")],
            sync_interval: Duration::from_secs(3600),
            ..NetConfig::default()
        },
    )
    .await;
    create(&laptop, &george);
    let report = client::host(&laptop.handle, &other, george.actor(), None)
        .await
        .expect("the patient connects and hosts her record despite the flood");
    assert!(report.pushed > 0);
    assert!(host
        .handle
        .store()
        .holds(&george.actor())
        .expect("the host's store"));
    for f in flood {
        f.abort();
    }
}

/// A flood of fresh peer ids from many addresses (here one address with a per-address
/// share as large as the node: libp2p's TCP transport cannot choose a dial's source) fills
/// the open places, but not those kept for known peers (`reserved_connections`, here 6 of
/// 24): the patient's node, which the host served before, reconnects and syncs her record
/// while the flood holds every open place. Without the reserve she is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_addresses_leaves_the_reserved_places_to_peers_the_host_knows() {
    const RESERVED: u32 = 6;
    let host = node(
        "Host2",
        NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("an address")],
            sync_interval: Duration::from_secs(3600),
            max_connections: PLACES,
            max_connections_per_ip: 1000,
            reserved_connections: RESERVED,
            ..NetConfig::default()
        },
    )
    .await;
    let target = host.handle.listen_addrs().await.expect("addresses")[0].clone();
    let laptop_config = || NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("an address")],
        sync_interval: Duration::from_secs(3600),
        ..NetConfig::default()
    };
    // George hosts his record there: the host has served his node.
    let george = key(9, "George2");
    let laptop = node("George2", laptop_config()).await;
    create(&laptop, &george);
    client::host(&laptop.handle, &target, george.actor(), None)
        .await
        .expect("hosted");
    // His node goes away (its connection with it).
    laptop.handle.shutdown().await.expect("shut down");
    drop(laptop);

    let (served, flood) = flood(&target).await;
    assert!(
        served <= (PLACES - RESERVED) as usize,
        "strangers hold {served} connections, more than the {} open places",
        PLACES - RESERVED
    );
    assert!(served > 0);
    // George's node is back (the same peer id), on a new connection: it pulls his record.
    let laptop = node("George2", laptop_config()).await;
    let host_peer = host.handle.peer_id();
    let report = client::sync(
        &laptop.handle,
        host_peer,
        vec![target.clone()],
        george.actor(),
        false,
    )
    .await
    .expect("a known peer gets a reserved place despite the flood");
    assert!(report.pulled > 0);
    for f in flood {
        f.abort();
    }
}
