//! The server's accept loop: which connections are held, and for how long.
//!
//! A connection that sends nothing must not hold a place: every connection must send a
//! complete request head within [`ConnLimits::header_timeout`] (for its first request and
//! between keep-alive requests), or it is closed. Places are bounded and shared fairly:
//!
//! - At most [`ConnLimits::max`] connections from other machines (non-loopback addresses),
//!   and at most [`ConnLimits::per_ip`] from any one of them; one more from that address
//!   is closed at once.
//! - [`ConnLimits::reserved_local`] more places are kept for loopback clients only (the
//!   patient's own web app, apps and CLI on the node's machine), so a flood from the
//!   network never locks the patient out.
//! - When a new connection finds its places full, it takes the place of the oldest
//!   connection that has not yet sent a request (a loopback arrival from any connection, a
//!   remote one from another remote connection); if every connection is busy with a
//!   request, the new one is closed at once. A connection is never queued in the kernel
//!   without a time limit.
//! - A connection given an evicted one's place is served only once the evicted one's
//!   socket is closed (or refused after [`EVICTED_CLOSE_TIMEOUT`]), so the sockets the
//!   node holds never exceed its places plus the one just accepted, however slowly the
//!   evicted connections' tasks are scheduled.
//!
//! [`Admission`] is the bookkeeping (pure, unit-tested); [`serve_with`] the loop.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::Service;

/// Connections from other machines held at once.
pub const MAX_CONNECTIONS: usize = 128;

/// Connections from one other machine (IP address) held at once.
pub const MAX_CONNECTIONS_PER_IP: usize = 16;

/// Places beyond [`MAX_CONNECTIONS`] kept for loopback clients.
pub const LOOPBACK_RESERVED: usize = 32;

/// How long a connection may take to send a request head (from opening, or after its
/// previous response) before it is closed.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a new connection waits for the connection it evicted to close its socket
/// before it is refused instead (see the module docs).
pub const EVICTED_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The limits on connections (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Connections from non-loopback addresses held at once.
    pub max: usize,
    /// Connections from one non-loopback address held at once.
    pub per_ip: usize,
    /// Further places for loopback connections only.
    pub reserved_local: usize,
    /// How long a connection may take to send a request head.
    pub header_timeout: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            max: MAX_CONNECTIONS,
            per_ip: MAX_CONNECTIONS_PER_IP,
            reserved_local: LOOPBACK_RESERVED,
            header_timeout: HEADER_TIMEOUT,
        }
    }
}

/// Whether an address is this machine's (IPv4-mapped IPv6 loopback included).
pub fn is_loopback(ip: &IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

#[derive(Debug)]
struct Held {
    ip: IpAddr,
    local: bool,
    /// Set once the connection has begun a request.
    spoke: Arc<AtomicBool>,
    /// Told when the connection loses its place.
    evict: Arc<tokio::sync::Notify>,
    /// Completes when the connection's socket is closed.
    closed: tokio::sync::oneshot::Receiver<()>,
}

/// Which connections hold a place (pure bookkeeping; see the module docs).
#[derive(Debug)]
pub struct Admission {
    limits: ConnLimits,
    next: u64,
    /// By age (ids increase).
    held: BTreeMap<u64, Held>,
    per_ip: HashMap<IpAddr, usize>,
    remote: usize,
}

/// Why a connection was refused a place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its address already holds [`ConnLimits::per_ip`] connections.
    PerAddress,
    /// Every place it may take is held by a connection busy with a request.
    Full,
}

/// A place given to a connection.
#[derive(Debug)]
pub struct Place {
    /// The place's id (to release it).
    pub id: u64,
    /// Set by the connection when it begins a request.
    pub spoke: Arc<AtomicBool>,
    /// Notified when another connection took this place.
    pub evict: Arc<tokio::sync::Notify>,
    /// Dropped once this connection's socket is closed (declare it before the socket).
    pub closing: Closing,
    /// The sockets of the connections evicted for this one: serve it only once each
    /// has closed.
    pub waits_for: Vec<tokio::sync::oneshot::Receiver<()>>,
}

/// Tells the connection that evicted this one, when dropped, that its socket is closed.
#[derive(Debug)]
pub struct Closing(#[allow(dead_code)] tokio::sync::oneshot::Sender<()>);

impl Admission {
    /// No connections held yet.
    pub fn new(limits: ConnLimits) -> Self {
        Admission {
            limits,
            next: 0,
            held: BTreeMap::new(),
            per_ip: HashMap::new(),
            remote: 0,
        }
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no connection is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn full_for(&self, local: bool) -> bool {
        let total = self.limits.max.saturating_add(self.limits.reserved_local);
        self.held.len() >= total || (!local && self.remote >= self.limits.max)
    }

    /// Gives a connection from `ip` a place, evicting the oldest silent connection it may
    /// displace when the places are full.
    pub fn admit(&mut self, ip: IpAddr) -> Result<Place, Refused> {
        let ip = ip.to_canonical();
        let local = is_loopback(&ip);
        if !local && self.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.per_ip {
            return Err(Refused::PerAddress);
        }
        let mut waits_for = Vec::new();
        while self.full_for(local) {
            let victim = self
                .held
                .iter()
                .find(|(_, h)| !h.spoke.load(Ordering::SeqCst) && (local || !h.local))
                .map(|(id, _)| *id)
                .ok_or(Refused::Full)?;
            if let Some(h) = self.release(victim) {
                h.evict.notify_one();
                waits_for.push(h.closed);
            }
        }
        let id = self.next;
        self.next += 1;
        let (closing, closed) = tokio::sync::oneshot::channel();
        let place = Place {
            id,
            spoke: Arc::new(AtomicBool::new(false)),
            evict: Arc::new(tokio::sync::Notify::new()),
            closing: Closing(closing),
            waits_for,
        };
        if !local {
            self.remote += 1;
            *self.per_ip.entry(ip).or_default() += 1;
        }
        self.held.insert(
            id,
            Held {
                ip,
                local,
                spoke: place.spoke.clone(),
                evict: place.evict.clone(),
                closed,
            },
        );
        Ok(place)
    }

    /// Frees a place (nothing if it was already taken over).
    fn release(&mut self, id: u64) -> Option<Held> {
        let h = self.held.remove(&id)?;
        if !h.local {
            self.remote -= 1;
            if let Some(n) = self.per_ip.get_mut(&h.ip) {
                *n -= 1;
                if *n == 0 {
                    self.per_ip.remove(&h.ip);
                }
            }
        }
        Some(h)
    }

    /// Frees a place when its connection closes.
    pub fn close(&mut self, id: u64) {
        self.release(id);
    }
}

fn lock(a: &Mutex<Admission>) -> std::sync::MutexGuard<'_, Admission> {
    a.lock().unwrap_or_else(|p| p.into_inner())
}

/// Frees the place when the connection's task ends.
struct PlaceGuard {
    admission: Arc<Mutex<Admission>>,
    id: u64,
}

impl Drop for PlaceGuard {
    fn drop(&mut self) {
        lock(&self.admission).close(self.id);
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then finishes
/// the requests in flight.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let admission = Arc::new(Mutex::new(Admission::new(limits)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Every connection task holds a receiver; `closed` completes when all have ended.
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let mut place = match lock(&admission).admit(peer.ip()) {
            Ok(p) => p,
            Err(why) => {
                tracing::debug!(?why, "HTTP connection refused a place");
                drop(stream);
                continue;
            }
        };
        let guard = PlaceGuard {
            admission: admission.clone(),
            id: place.id,
        };
        // Accept nothing more until the evicted connections' sockets are closed.
        let evicted = std::mem::take(&mut place.waits_for);
        if !evicted.is_empty() {
            let all_closed = futures::future::join_all(evicted);
            if tokio::time::timeout(EVICTED_CLOSE_TIMEOUT, all_closed)
                .await
                .is_err()
            {
                tracing::warn!("an evicted HTTP connection did not close in time");
                drop(stream);
                continue;
            }
        }
        let mut stop = stop_rx.clone();
        let done = done_rx.clone();
        let app = app.clone();
        tokio::spawn(async move {
            // Dropped last, after the socket (locals drop in reverse order).
            let _closing = place.closing;
            let _guard = guard;
            let _done = done;
            let spoke = place.spoke;
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                spoke.store(true, Ordering::SeqCst);
                let mut app = app.clone();
                let mut req = req.map(Body::new);
                // The client's address, for handlers that record it (emergency summary
                // openings are audited with it).
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                async move { Ok::<_, Infallible>(app.call(req).await.unwrap_or_else(|e| match e {})) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "HTTP connection ended");
                    }
                }
                // Another connection took this place: dropping `conn` closes the socket.
                () = place.evict.notified() => {}
                changed = stop.changed() => {
                    if changed.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                    // Finish the request in flight, then end.
                    if let Err(e) = conn.as_mut().await {
                        tracing::debug!(error = %e, "HTTP connection ended");
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnLimits {
        ConnLimits {
            max: 4,
            per_ip: 2,
            reserved_local: 2,
            header_timeout: HEADER_TIMEOUT,
        }
    }

    fn remote(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn one_address_holds_at_most_its_share() {
        let mut a = Admission::new(limits());
        a.admit(remote(1)).unwrap();
        a.admit(remote(1)).unwrap();
        assert_eq!(a.admit(remote(1)).unwrap_err(), Refused::PerAddress);
        // IPv4-mapped IPv6 is the same address.
        let mapped = IpAddr::from(std::net::Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(a.admit(mapped).unwrap_err(), Refused::PerAddress);
        a.admit(remote(2)).unwrap();
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn a_remote_flood_leaves_the_loopback_places_and_evicts_only_silent_remotes() {
        let mut a = Admission::new(limits());
        let flood: Vec<Place> = (1..=4).map(|n| a.admit(remote(n)).unwrap()).collect();
        // Every remote place is taken by silent connections: loopback still gets in,
        // without evicting anyone.
        let l1 = a.admit(LOCAL).unwrap();
        let l2 = a.admit(LOCAL).unwrap();
        assert_eq!(a.len(), 6);
        // A further remote connection takes the oldest silent remote's place.
        flood[1].spoke.store(true, Ordering::SeqCst);
        let r = a.admit(remote(9)).unwrap();
        assert_eq!(a.len(), 6);
        assert!(
            !a.held.contains_key(&flood[0].id),
            "the oldest silent remote went"
        );
        assert!(a.held.contains_key(&l1.id) && a.held.contains_key(&l2.id));
        // Once every remote is busy, a remote arrival is refused; loopback ones are not
        // evicted for it.
        for p in flood.iter().skip(2).chain([&r]) {
            p.spoke.store(true, Ordering::SeqCst);
        }
        assert_eq!(a.admit(remote(10)).unwrap_err(), Refused::Full);
        assert!(a.held.contains_key(&l1.id) && a.held.contains_key(&l2.id));
    }

    #[test]
    fn a_loopback_arrival_displaces_the_oldest_silent_connection_of_any_kind() {
        let mut a = Admission::new(limits());
        let silent: Vec<Place> = (0..6).map(|_| a.admit(LOCAL).unwrap()).collect();
        silent[0].spoke.store(true, Ordering::SeqCst);
        let p = a.admit(LOCAL).unwrap();
        assert_eq!(a.len(), 6);
        assert!(
            a.held.contains_key(&silent[0].id),
            "a busy connection stays"
        );
        assert!(
            !a.held.contains_key(&silent[1].id),
            "the oldest silent one went"
        );
        assert!(a.held.contains_key(&p.id));
        // Closing frees the place and the address count.
        a.close(p.id);
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn a_connection_given_an_evicted_place_waits_for_that_socket_to_close() {
        let mut a = Admission::new(limits());
        let mut silent: Vec<Place> = (0..6).map(|_| a.admit(LOCAL).unwrap()).collect();
        assert!(
            silent.iter().all(|p| p.waits_for.is_empty()),
            "nobody evicted"
        );
        let mut p = a.admit(LOCAL).unwrap();
        assert_eq!(p.waits_for.len(), 1, "it waits for the one it evicted");
        let mut waiting = p.waits_for.pop().unwrap();
        assert_eq!(
            waiting.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty),
            "the evicted connection's socket is still open"
        );
        // The evicted connection (the oldest) drops its socket, then its `closing`.
        drop(silent.remove(0).closing);
        assert_eq!(
            waiting.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Closed),
            "closing the evicted socket lets the new connection be served"
        );
        // A place closed in the ordinary way leaves nobody waiting.
        a.close(silent[0].id);
        assert!(a.admit(LOCAL).unwrap().waits_for.is_empty());
    }
}
