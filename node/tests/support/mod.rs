//! What several node integration tests share: a real network node on loopback over a
//! store in a temporary directory, and its HTTP API.

use std::time::Duration;

use cophr_node::http::AppState;
use cophr_node::net::{self, NetConfig, NodeHandle};
use cophr_node::store::Store;
use cophr_protocol::testkit::key;
use cophr_protocol::{Keypair, Profile};
use tempfile::TempDir;

/// A running network node and the directory of its store.
pub struct NetNode {
    pub handle: NodeHandle,
    _dir: TempDir,
}

/// Starts a network node acting as `identity` on 127.0.0.1 (an ephemeral port), its keys
/// derived from `name`, and waits until it listens.
pub async fn net_node(name: &str, identity: &Keypair) -> NetNode {
    net_node_hosting(name, identity, Default::default()).await
}

/// [`net_node`], taking records to host as `host` says (admission, quotas).
#[allow(dead_code)]
pub async fn net_node_hosting(
    name: &str,
    identity: &Keypair,
    host: cophr_protocol::sync::server::HostPolicy,
) -> NetNode {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), key(9, &format!("{name}/node"))).unwrap();
    let peer_key = key(9, &format!("{name}/peer")).secret_bytes();
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        sync_interval: Duration::from_secs(3600),
        host,
        ..NetConfig::default()
    };
    let (handle, _task) = net::start(store, identity.clone(), peer_key, config)
        .await
        .unwrap();
    for _ in 0..500 {
        if !handle.listen_addrs().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    NetNode { handle, _dir: dir }
}

/// The HTTP API of a network node acting as `identity` (`who`), accepting `token`, on the
/// system clock.
pub fn api_of(n: &NetNode, identity: &Keypair, who: Profile, token: &str) -> AppState {
    AppState::new(
        n.handle.store().clone(),
        identity.clone(),
        who,
        None,
        token.into(),
    )
    .with_node(n.handle.clone())
}
