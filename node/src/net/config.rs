//! Network configuration: listen addresses, bootstrap peers and limits.

use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

/// How the node networks. Every limit is finite.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Addresses to listen on (TCP and QUIC).
    pub listen: Vec<Multiaddr>,
    /// Bootstrap peers (with `/p2p/<peer id>`), for discovery.
    pub bootstrap: Vec<Multiaddr>,
    /// Most established connections in total.
    pub max_connections: u32,
    /// Most established connections per peer.
    pub max_connections_per_peer: u32,
    /// Most established inbound connections from one IP address (an IPv6 /64), so that
    /// one machine's fresh peer ids cannot take every place ([`super::per_ip`]). A clinic
    /// whose staff's nodes all reach a host through one NAT address may need more.
    pub max_connections_per_ip: u32,
    /// Of `max_connections`, the last places kept for peers this node knows (those it
    /// dialled and those it answered with anything but a refusal), so that a flood of
    /// fresh peer ids from many addresses leaves room for the record's own peers. At most
    /// half of `max_connections` is kept: newcomers always have the other half.
    pub reserved_connections: u32,
    /// Most connections being set up at once.
    pub max_pending: u32,
    /// How long a request may take before it fails.
    #[serde(with = "secs")]
    pub request_timeout: Duration,
    /// Requests a peer may make per minute before being refused.
    pub requests_per_minute: u32,
    /// How often to catch up with every known peer of every record held.
    #[serde(with = "secs")]
    pub sync_interval: Duration,
    /// Largest sync message accepted, in bytes.
    pub max_message_bytes: u64,
    /// Offer the relay service to nodes behind NAT (a community host would).
    pub relay_server: bool,
    /// Relays to be reachable through (each `…/p2p/<relay peer id>`), for a node that
    /// cannot accept direct connections; hole punching (dcutr) upgrades when it can.
    pub relays: Vec<Multiaddr>,
    /// Which patients' records this node takes when asked to host them, and how much it
    /// stores (`[net.host]`: `admission = { mode = "open" }`, `{ mode = "allow-list",
    /// records = ["a-…"] }` or `{ mode = "closed" }`; `quotas = { record_bytes = …,
    /// records = …, total_bytes = … }`, bytes of entries and of the documents they name).
    pub host: cophr_protocol::sync::server::HostPolicy,
    /// When this node, as a replica, fetches the documents the entries it pulls name
    /// (`documents = "eager"` or `"on-demand"`). A record's home host fetches every document
    /// pushed to it whatever this says: it serves them to the others.
    pub documents: DocumentFetch,
    /// Where the DHT's records are kept ([`super::dht::DiskRecords`]); `None` for a
    /// temporary store. Set by the node from its home, not by the config file.
    #[serde(skip)]
    pub dht_dir: Option<std::path::PathBuf>,
}

/// When a replica fetches the documents (files stored apart) the entries it holds name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DocumentFetch {
    /// After every pull, every document it may see and lacks: each is here before anyone
    /// asks for it (a provider node that must work offline, a backup replica).
    #[default]
    Eager,
    /// Only when one is asked for (`cophr download`, the HTTP and FHIR downloads, the web
    /// app): the node fetches that one document from the record's peers, home host first,
    /// with the same checks, then serves it. Entries replicate as always; a node that holds
    /// many records' entries but opens few of their files keeps only those.
    OnDemand,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            listen: vec![
                "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
                "/ip4/127.0.0.1/udp/0/quic-v1"
                    .parse()
                    .expect("valid multiaddr"),
            ],
            bootstrap: Vec::new(),
            max_connections: 256,
            max_connections_per_peer: 4,
            max_connections_per_ip: 32,
            reserved_connections: 64,
            max_pending: 64,
            request_timeout: Duration::from_secs(30),
            requests_per_minute: 600,
            sync_interval: Duration::from_secs(10),
            max_message_bytes: cophr_protocol::sync::MAX_MESSAGE_BYTES as u64,
            relay_server: false,
            relays: Vec::new(),
            host: Default::default(),
            documents: DocumentFetch::Eager,
            dht_dir: None,
        }
    }
}

mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let v = f64::deserialize(d)?;
        if !(0.0..=86_400.0).contains(&v) {
            return Err(serde::de::Error::custom("duration must be 0–86400 seconds"));
        }
        Ok(Duration::from_secs_f64(v))
    }
}
