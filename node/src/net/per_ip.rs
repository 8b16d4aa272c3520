//! Inbound connections per source address: one machine (or one IPv6 /64) cannot take
//! every connection place of the node.
//!
//! `connection_limits` bounds connections in total and per peer id, but peer ids cost
//! nothing: a flood of fresh identities from one machine would fill all
//! [`super::NetConfig::max_connections`] places, and the patient's own devices, her
//! carers and her host would be refused until the flood stops. This behaviour counts
//! inbound connections by the address they come from, pending (TCP open, handshake not
//! done) and established, and denies one beyond [`super::NetConfig::max_connections_per_ip`]
//! (pending: at most that, and at most a quarter of [`super::NetConfig::max_pending`]).
//! Connections that come through a relay are counted by peer only (their address is the
//! relay's), as are outbound ones (this node chose to dial).
//!
//! A flood from many addresses could still fill every place. So the last
//! [`super::NetConfig::reserved_connections`] places are kept for peers this node knows:
//! those it dialled, and those it answered with anything but a refusal (a valid proof for a
//! record held here), the most recent [`KNOWN_PEERS`] of them. A peer it never served (a
//! fresh id) is refused once only the reserve is left; the patient's devices, her carers'
//! nodes and her host, which synced before, still get in.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::task::{Context, Poll};

use libp2p::core::{transport::PortUse, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{
    dummy, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, ListenFailure,
    NetworkBehaviour, THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Where an inbound connection comes from, as counted: an IPv4 address, or an IPv6
/// address's /64 (one host's share of a network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl Source {
    /// The source of a connection from `remote`, if it came directly over IP (not through
    /// a relay).
    pub fn of(remote: &Multiaddr) -> Option<Source> {
        if remote.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
            return None;
        }
        match remote.iter().next()? {
            Protocol::Ip4(ip) => Some(Source(IpAddr::V4(ip))),
            Protocol::Ip6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => Some(Source(IpAddr::V4(v4))),
                None => {
                    let prefix = u128::from(ip) & !((1u128 << 64) - 1);
                    Some(Source(IpAddr::V6(prefix.into())))
                }
            },
            _ => None,
        }
    }
}

/// The denial of a connection beyond its source's share.
#[derive(Debug, thiserror::Error)]
#[error("{kind} connections from {from:?}: at most {limit}")]
pub struct Exceeded {
    kind: &'static str,
    from: Source,
    limit: u32,
}

/// Peers remembered as known (the most recent).
pub const KNOWN_PEERS: usize = 4096;

/// The denial of an unknown peer when only the reserved places are left.
#[derive(Debug, thiserror::Error)]
#[error("only the places kept for known peers are left")]
pub struct Reserved;

/// Counts inbound connections by source and denies those beyond the limits.
#[derive(Debug)]
pub struct Behaviour {
    max_established: u32,
    max_pending: u32,
    /// Established connections (both ways) beyond which only known peers get in.
    open_places: u32,
    total: std::collections::HashSet<ConnectionId>,
    known: std::collections::HashSet<PeerId>,
    known_order: std::collections::VecDeque<PeerId>,
    pending: HashMap<ConnectionId, Source>,
    established: HashMap<ConnectionId, Source>,
    pending_by: HashMap<Source, u32>,
    established_by: HashMap<Source, u32>,
}

impl Behaviour {
    /// At most `max_established` established and `max_pending` pending inbound
    /// connections from any one source (each at least 1); of `max_connections` in all, the
    /// last `reserved` (at most half) only for known peers.
    pub fn new(
        max_established: u32,
        max_pending: u32,
        max_connections: u32,
        reserved: u32,
    ) -> Behaviour {
        Behaviour {
            max_established: max_established.max(1),
            max_pending: max_pending.max(1),
            // At most half the places are reserved: a newcomer (a patient's first
            // hosting) always has the other half.
            open_places: max_connections - reserved.min(max_connections / 2),
            total: std::collections::HashSet::new(),
            known: std::collections::HashSet::new(),
            known_order: std::collections::VecDeque::new(),
            pending: HashMap::new(),
            established: HashMap::new(),
            pending_by: HashMap::new(),
            established_by: HashMap::new(),
        }
    }

    /// Remembers `peer` as known: it may use the reserved places.
    pub fn know(&mut self, peer: PeerId) {
        if self.known.insert(peer) {
            self.known_order.push_back(peer);
            if self.known_order.len() > KNOWN_PEERS {
                if let Some(old) = self.known_order.pop_front() {
                    self.known.remove(&old);
                }
            }
        }
    }

    /// Whether `peer` is known.
    pub fn knows(&self, peer: &PeerId) -> bool {
        self.known.contains(peer)
    }

    /// Established inbound connections from `source` now.
    pub fn established_from(&self, source: &Source) -> u32 {
        self.established_by.get(source).copied().unwrap_or(0)
    }

    fn forget_pending(&mut self, id: &ConnectionId) {
        if let Some(s) = self.pending.remove(id) {
            decrement(&mut self.pending_by, &s);
        }
    }
}

fn decrement(counts: &mut HashMap<Source, u32>, s: &Source) {
    if let Some(n) = counts.get_mut(s) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            counts.remove(s);
        }
    }
}

fn denied(kind: &'static str, source: Source, limit: u32) -> ConnectionDenied {
    ConnectionDenied::new(Exceeded {
        kind,
        from: source,
        limit,
    })
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        let Some(source) = Source::of(remote) else {
            return Ok(());
        };
        let n = self.pending_by.entry(source).or_default();
        if *n >= self.max_pending {
            let limit = self.max_pending;
            tracing::debug!(
                ?source,
                limit,
                "pending connection denied: too many from one address"
            );
            return Err(denied("pending", source, limit));
        }
        *n += 1;
        self.pending.insert(id, source);
        Ok(())
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.forget_pending(&id);
        if self.total.len() as u32 >= self.open_places && !self.knows(&peer) {
            tracing::debug!(%peer, "connection denied: only places kept for known peers are left");
            return Err(ConnectionDenied::new(Reserved));
        }
        let Some(source) = Source::of(remote) else {
            self.total.insert(id);
            return Ok(dummy::ConnectionHandler);
        };
        let n = self.established_by.entry(source).or_default();
        if *n >= self.max_established {
            let limit = self.max_established;
            tracing::debug!(
                ?source,
                limit,
                "connection denied: too many from one address"
            );
            return Err(denied("established", source, limit));
        }
        *n += 1;
        self.established.insert(id, source);
        self.total.insert(id);
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _addr: &Multiaddr,
        _role: Endpoint,
        _port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // This node chose to dial it.
        self.know(peer);
        self.total.insert(id);
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm<'_>) {
        match event {
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                self.total.remove(&connection_id);
                if let Some(s) = self.established.remove(&connection_id) {
                    decrement(&mut self.established_by, &s);
                }
            }
            FromSwarm::ListenFailure(ListenFailure { connection_id, .. }) => {
                self.forget_pending(&connection_id);
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _peer: PeerId,
        _id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Multiaddr {
        s.parse().expect("a multiaddr")
    }

    #[test]
    fn sources_are_ipv4_addresses_ipv6_slash_64s_and_never_a_relay() {
        assert_eq!(
            Source::of(&addr("/ip4/192.0.2.7/tcp/4001")),
            Source::of(&addr("/ip4/192.0.2.7/udp/9/quic-v1"))
        );
        assert_ne!(
            Source::of(&addr("/ip4/192.0.2.7/tcp/4001")),
            Source::of(&addr("/ip4/192.0.2.8/tcp/4001"))
        );
        assert_eq!(
            Source::of(&addr("/ip6/2001:db8:1:2:aaaa::1/tcp/1")),
            Source::of(&addr("/ip6/2001:db8:1:2:bbbb::9/tcp/2"))
        );
        assert_ne!(
            Source::of(&addr("/ip6/2001:db8:1:2::1/tcp/1")),
            Source::of(&addr("/ip6/2001:db8:1:3::1/tcp/1"))
        );
        assert_eq!(
            Source::of(&addr("/ip6/::ffff:192.0.2.7/tcp/1")),
            Source::of(&addr("/ip4/192.0.2.7/tcp/1"))
        );
        assert_eq!(
            Source::of(&addr(
                "/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWGzBaa1WAZNpnSbrmuXV2E6Mx1x3mhmFCnwzNwhcdTe8x/p2p-circuit"
            )),
            None
        );
        assert_eq!(Source::of(&addr("/dns4/example.org/tcp/1")), None);
    }

    #[test]
    fn one_source_gets_at_most_its_share_and_its_places_come_back_when_closed() {
        let mut b = Behaviour::new(2, 3, 100, 10);
        let local = addr("/ip4/127.0.0.1/tcp/4001");
        let flood = addr("/ip4/192.0.2.7/tcp/5000");
        let other = addr("/ip4/192.0.2.8/tcp/5000");
        let peer = PeerId::random();
        // Pending: three from the flooding address, not a fourth; another address goes on.
        let ids: Vec<ConnectionId> = (0..4)
            .map(|_| ConnectionId::new_unchecked(rand_id()))
            .collect();
        for id in &ids[..3] {
            b.handle_pending_inbound_connection(*id, &local, &flood)
                .expect("within the pending share");
        }
        assert!(b
            .handle_pending_inbound_connection(ids[3], &local, &flood)
            .is_err());
        let o = ConnectionId::new_unchecked(rand_id());
        b.handle_pending_inbound_connection(o, &local, &other)
            .expect("another address");
        // Established: two, not a third.
        for id in &ids[..2] {
            b.handle_established_inbound_connection(*id, peer, &local, &flood)
                .expect("within the share");
        }
        assert!(b
            .handle_established_inbound_connection(ids[2], peer, &local, &flood)
            .is_err());
        let source = Source::of(&flood).expect("a source");
        assert_eq!(b.established_from(&source), 2);
        b.handle_established_inbound_connection(o, peer, &local, &other)
            .expect("another address");
        // A relayed connection is not counted by address.
        let relayed = addr("/ip4/192.0.2.7/tcp/4001/p2p/12D3KooWGzBaa1WAZNpnSbrmuXV2E6Mx1x3mhmFCnwzNwhcdTe8x/p2p-circuit");
        let r = ConnectionId::new_unchecked(rand_id());
        b.handle_pending_inbound_connection(r, &local, &relayed)
            .expect("relayed");
        b.handle_established_inbound_connection(r, peer, &local, &relayed)
            .expect("relayed");
        assert_eq!(b.established_from(&source), 2);
        // The denied handshake failed; nothing pending is left from the flooding address.
        b.on_swarm_event(FromSwarm::ListenFailure(ListenFailure {
            local_addr: &local,
            send_back_addr: &flood,
            error: &libp2p::swarm::ListenError::Aborted,
            connection_id: ids[3],
            peer_id: None,
        }));
        assert_eq!(b.pending_by.get(&source), None);
        // A connection closed gives its place back.
        let endpoint = libp2p::core::ConnectedPoint::Listener {
            local_addr: local.clone(),
            send_back_addr: flood.clone(),
        };
        b.on_swarm_event(FromSwarm::ConnectionClosed(ConnectionClosed {
            peer_id: peer,
            connection_id: ids[0],
            endpoint: &endpoint,
            cause: None,
            remaining_established: 0,
        }));
        assert_eq!(b.established_from(&source), 1);
        let again = ConnectionId::new_unchecked(rand_id());
        b.handle_pending_inbound_connection(again, &local, &flood)
            .expect("a place again");
        b.handle_established_inbound_connection(again, peer, &local, &flood)
            .expect("a place again");
        assert_eq!(b.established_from(&source), 2);
    }

    #[test]
    fn the_last_places_are_kept_for_known_peers() {
        let mut b = Behaviour::new(100, 100, 5, 2);
        let local = addr("/ip4/127.0.0.1/tcp/4001");
        let connect = |b: &mut Behaviour, peer: PeerId, from: &str| {
            let id = ConnectionId::new_unchecked(rand_id());
            let from = addr(from);
            b.handle_pending_inbound_connection(id, &local, &from)?;
            b.handle_established_inbound_connection(id, peer, &local, &from)
                .map(|_| ())
        };
        // Three strangers from three addresses take the open places; a fourth is refused.
        for i in 0..3 {
            connect(&mut b, PeerId::random(), &format!("/ip4/192.0.2.{i}/tcp/1"))
                .expect("an open place");
        }
        assert!(connect(&mut b, PeerId::random(), "/ip4/192.0.2.9/tcp/1").is_err());
        // A peer this node served gets a reserved place, as does one it dials.
        let patient = PeerId::random();
        b.know(patient);
        connect(&mut b, patient, "/ip4/198.51.100.1/tcp/1").expect("a reserved place");
        let dialled = PeerId::random();
        b.handle_established_outbound_connection(
            ConnectionId::new_unchecked(rand_id()),
            dialled,
            &addr("/ip4/198.51.100.2/tcp/1"),
            Endpoint::Dialer,
            PortUse::Reuse,
        )
        .expect("outbound");
        assert!(b.knows(&dialled));
        assert_eq!(b.total.len(), 5);
    }

    #[test]
    fn known_peers_are_bounded_by_the_most_recent() {
        let mut b = Behaviour::new(1, 1, 1, 1);
        let first = PeerId::random();
        b.know(first);
        for _ in 0..KNOWN_PEERS {
            b.know(PeerId::random());
        }
        assert!(!b.knows(&first));
        assert_eq!(b.known.len(), KNOWN_PEERS);
    }

    fn rand_id() -> usize {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(1_000_000);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }
}
