//! Networking: a libp2p node that replicates records under capabilities.
//!
//! One event loop ([`service`]) owns the swarm; a cloneable [`NodeHandle`] talks to it
//! over a bounded command channel with oneshot replies (the rust-libp2p file-sharing
//! pattern). Requests from peers are answered by [`server`] on blocking threads, since
//! answering touches the store (and fsync); the answer comes back to the loop to be sent.
//! Replication as a client (digests, pull, push, audit) is [`client`], driven from tasks
//! through the handle. The rules themselves are `cophr_protocol::sync`.

pub mod client;
pub mod config;
pub mod dht;
pub mod meter;
pub mod per_ip;
pub mod server;
pub mod service;
pub mod verify;

pub use config::{DocumentFetch, NetConfig};
pub use meter::{Meter, Traffic};
pub use service::{start, Changes, NodeHandle, PeerBook, MAX_LEARNED_REPLICAS};

use libp2p::{
    connection_limits, dcutr, identify, kad, ping, relay, request_response, swarm::NetworkBehaviour,
};

use cophr_protocol::sync::{Request, Response};

/// Errors from networking.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The node has shut down.
    #[error("the node has stopped")]
    Stopped,
    /// A request to a peer failed (unreachable, timed out, stream closed).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer.
        peer: libp2p::PeerId,
        /// Why.
        reason: String,
    },
    /// The peer refused.
    #[error("refused by {peer}: {reason}")]
    Refused {
        /// The peer.
        peer: libp2p::PeerId,
        /// The refusal's code.
        code: cophr_protocol::sync::Refusal,
        /// Its reason.
        reason: String,
    },
    /// The peer answered with something unexpected or invalid.
    #[error("bad answer from {peer}: {reason}")]
    Protocol {
        /// The peer.
        peer: libp2p::PeerId,
        /// What was wrong.
        reason: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Setting up the transport or listening failed.
    #[error("network setup: {0}")]
    Setup(String),
    /// The record's home host could not be found.
    #[error("no home host found for record {0}")]
    NotFound(cophr_protocol::RecordId),
    /// A document asked for on demand could not be fetched from any peer of its record.
    #[error("the document {hash} could not be fetched: {reason}")]
    DocumentUnavailable {
        /// The document's hash.
        hash: cophr_protocol::blob::BlobHash,
        /// Why (no peer known, none reachable, none holding it whole).
        reason: String,
    },
}

/// The node's libp2p behaviours.
#[allow(missing_debug_implementations)]
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    /// Connection limits (total, per peer, pending).
    pub limits: connection_limits::Behaviour,
    /// Inbound connections per source address (one machine cannot take every place).
    pub per_ip: per_ip::Behaviour,
    /// Identify: learn peers' listen addresses and protocols.
    pub identify: identify::Behaviour,
    /// Ping: keep connections alive, measure round trips.
    pub ping: ping::Behaviour,
    /// Kademlia: discovery of home pointers.
    pub kad: kad::Behaviour<dht::DiskRecords>,
    /// The versioned sync protocol.
    pub sync: request_response::cbor::Behaviour<Request, Response>,
    /// Relay client, for personal nodes behind NAT.
    pub relay: relay::client::Behaviour,
    /// Relay service for others (enabled by `NetConfig::relay_server`).
    pub relay_server: libp2p::swarm::behaviour::toggle::Toggle<relay::Behaviour>,
    /// Direct connection upgrade through relay (hole punching).
    pub dcutr: dcutr::Behaviour,
}
