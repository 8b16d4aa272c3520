//! Hostile bytes on the sync stream. A raw libp2p peer opens `/cophr/sync/1` streams and
//! writes whatever it likes: garbage, truncated or oversized CBOR, well-formed CBOR of the
//! wrong shape, non-canonical encodings; or it trickles its bytes, or never finishes its
//! request. The node answers or drops each stream, never panics, keeps serving honest
//! peers and stores nothing; slow streams are cut by its request timeout.

use std::io;
use std::time::{Duration, Instant};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm};
use rand_chacha::rand_core::{RngCore, SeedableRng};

use cophr_node::net::{self, client, NetConfig, NodeHandle, PeerBook};
use cophr_node::store::Store;
use cophr_protocol::access::Level;
use cophr_protocol::sync::{Proof, Request, Response, PROTOCOL};
use cophr_protocol::testkit::{bp, grant, key, profile};
use cophr_protocol::{Category, Payload, RecordId};

/// The host's request timeout: slow streams must be cut by it.
const TIMEOUT: Duration = Duration::from_secs(2);
/// The host's largest message.
const MAX_MESSAGE: u64 = 64 * 1024;

/// What the raw peer writes on one stream.
#[derive(Debug, Clone)]
struct Raw {
    bytes: Vec<u8>,
    /// Pause between single bytes (a slow peer), if any.
    trickle: Option<Duration>,
    /// Whether to finish the request (close the write side) after the bytes; if not, the
    /// request never ends.
    finish: bool,
}

impl Raw {
    fn bytes(b: Vec<u8>) -> Raw {
        Raw {
            bytes: b,
            trickle: None,
            finish: true,
        }
    }
}

/// A codec that writes requests as given and reads responses as raw bytes (bounded).
#[derive(Debug, Clone, Default)]
struct RawCodec;

#[async_trait::async_trait]
impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Raw;
    type Response = Vec<u8>;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
    ) -> io::Result<Raw> {
        Err(io::Error::other("the raw peer serves nothing"))
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        io.take(MAX_MESSAGE * 4).read_to_end(&mut out).await?;
        Ok(out)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Raw,
    ) -> io::Result<()> {
        match req.trickle {
            Some(pause) => {
                for b in &req.bytes {
                    io.write_all(&[*b]).await?;
                    io.flush().await?;
                    tokio::time::sleep(pause).await;
                }
            }
            None => {
                io.write_all(&req.bytes).await?;
                io.flush().await?;
            }
        }
        if req.finish {
            io.close().await?;
            return Ok(());
        }
        // Never finish: one more byte (an array's opening) every 250 ms, forever, until
        // the node cuts the stream.
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            io.write_all(&[0x81]).await?;
            io.flush().await?;
        }
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()> {
        Err(io::Error::other("the raw peer serves nothing"))
    }
}

type RawSwarm = Swarm<request_response::Behaviour<RawCodec>>;

/// A bare libp2p peer speaking `/cophr/sync/1` with raw bytes. Its own request timeout is
/// long, so any cut within the test's bounds comes from the node.
fn raw_peer() -> RawSwarm {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Outbound)],
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(120))
                    .with_max_concurrent_streams(64),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build()
}

/// What came back on a raw stream.
#[derive(Debug)]
enum Outcome {
    /// The node answered (the bytes of its response).
    Answered(Vec<u8>),
    /// The node dropped the stream (or the connection).
    Dropped(String),
}

/// Sends raw requests and waits (at most `within`) for every outcome, in order.
async fn send_all(
    swarm: &mut RawSwarm,
    peer: PeerId,
    reqs: Vec<Raw>,
    within: Duration,
) -> Vec<Outcome> {
    let ids: Vec<OutboundRequestId> = reqs
        .into_iter()
        .map(|r| swarm.behaviour_mut().send_request(&peer, r))
        .collect();
    let mut out: Vec<Option<Outcome>> = ids.iter().map(|_| None).collect();
    let deadline = tokio::time::Instant::now() + within;
    while out.iter().any(Option::is_none) {
        let event = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .unwrap_or_else(|_| panic!("no outcome within {within:?}: {out:?}"));
        let (id, outcome) = match event {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            }) if response.is_empty() => (
                request_id,
                Outcome::Dropped("closed without an answer".into()),
            ),
            SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            }) => (request_id, Outcome::Answered(response)),
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            }) => (request_id, Outcome::Dropped(error.to_string())),
            _ => continue,
        };
        if let Some(i) = ids.iter().position(|x| *x == id) {
            out[i] = Some(outcome);
        }
    }
    out.into_iter().flatten().collect()
}

/// The response in `bytes`, as the node's codec (CBOR) encodes it.
fn response(bytes: &[u8]) -> Response {
    cbor4ii::serde::from_slice(bytes).unwrap_or_else(|e| panic!("undecodable answer: {e}"))
}

struct Host {
    handle: NodeHandle,
    task: tokio::task::JoinHandle<()>,
    addr: Multiaddr,
    _dir: tempfile::TempDir,
}

async fn start(name: &str, identity: &str, config: NetConfig) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), key(11, &format!("{name}/node"))).unwrap();
    let peer_key = key(11, &format!("{name}/peer")).secret_bytes();
    let (handle, task) = net::start(store, key(11, identity), peer_key, config)
        .await
        .unwrap();
    let mut addrs = Vec::new();
    for _ in 0..500 {
        addrs = handle.listen_addrs().await.unwrap();
        if !addrs.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Host {
        handle,
        task,
        addr: addrs[0].clone(),
        _dir: dir,
    }
}

fn quiet(timeout: Duration) -> NetConfig {
    NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        sync_interval: Duration::from_secs(3600),
        request_timeout: timeout,
        max_message_bytes: MAX_MESSAGE,
        ..NetConfig::default()
    }
}

/// A host holding George's record (a grant to Mary, a reading), and Mary's node.
async fn george_hosted() -> (Host, Host, RecordId, usize) {
    let host = start("host", "host", quiet(TIMEOUT)).await;
    let george_node = start("George", "George", quiet(Duration::from_secs(30))).await;
    let mary = start("Mary", "Mary", quiet(Duration::from_secs(30))).await;
    let george = key(11, "George");
    let rec = george.actor();
    let s = george_node.handle.store();
    let now = net::service::now_ms();
    s.create_record(&george, profile("George", "patient", None), now, None)
        .unwrap();
    s.write(
        &rec,
        &george,
        Payload::Grant(grant(
            &key(11, "Mary"),
            Level::Write,
            &[Category::VitalSigns],
            false,
            false,
        )),
        now,
        None,
    )
    .unwrap();
    s.write(
        &rec,
        &george,
        Payload::Create {
            category: Category::VitalSigns,
            body: bp(120, 80),
        },
        now,
        None,
    )
    .unwrap();
    let book = PeerBook {
        home: Some(host.addr.clone()),
        replicas: vec![],
        learned: vec![],
    };
    for n in [&george_node, &mary] {
        n.handle.set_peer_book(&rec, &book).unwrap();
    }
    client::sync(
        &george_node.handle,
        host.handle.peer_id(),
        vec![host.addr.clone()],
        rec,
        true,
    )
    .await
    .unwrap();
    let held = host.handle.store().with_record(&rec, |r| r.len()).unwrap();
    // Genesis, the grant, the vital-signs stream's opening and the reading.
    assert_eq!(held, 4);
    (host, mary, rec, held)
}

/// Mary writes a reading and syncs it to the host; returns how long that took.
async fn honest_sync(mary: &Host, host: &Host, rec: RecordId, systolic: i64) -> Duration {
    let sync = || {
        client::sync(
            &mary.handle,
            host.handle.peer_id(),
            vec![host.addr.clone()],
            rec,
            true,
        )
    };
    let started = Instant::now();
    sync().await.unwrap();
    let written = mary
        .handle
        .store()
        .write(
            &rec,
            &key(11, "Mary"),
            Payload::Create {
                category: Category::VitalSigns,
                body: bp(systolic, 80),
            },
            net::service::now_ms(),
            None,
        )
        .unwrap();
    let r = sync().await.unwrap();
    // This sync pushes the reading, unless a sync the nodes started themselves (after an
    // announcement) got there first; either way the host holds it once this one is done.
    assert!(r.pushed <= 1, "{r:?}");
    let held = host
        .handle
        .store()
        .with_record(&rec, |r| r.contains(&written))
        .unwrap();
    assert!(held, "the host lacks the reading after the sync: {r:?}");
    started.elapsed()
}

/// Re-encodes canonical CBOR with every length and integer header in its longest
/// (8-byte) form: the same value, not canonically encoded.
fn widen(cbor: &[u8]) -> Vec<u8> {
    fn item(b: &[u8], i: &mut usize, out: &mut Vec<u8>) {
        let major = b[*i] >> 5;
        let info = b[*i] & 0x1f;
        *i += 1;
        let (arg, n) = match info {
            0..=23 => (u64::from(info), 0),
            24 => (u64::from(b[*i]), 1),
            25 => (u64::from(u16::from_be_bytes([b[*i], b[*i + 1]])), 2),
            26 => (
                u64::from(u32::from_be_bytes(b[*i..*i + 4].try_into().unwrap())),
                4,
            ),
            27 => (u64::from_be_bytes(b[*i..*i + 8].try_into().unwrap()), 8),
            _ => panic!("indefinite lengths are not produced"),
        };
        *i += n;
        if major == 7 {
            // Simple values and floats: copied as they are.
            out.push(b[*i - 1 - n]);
            out.extend_from_slice(&b[*i - n..*i]);
            return;
        }
        out.push((major << 5) | 27);
        out.extend_from_slice(&arg.to_be_bytes());
        match major {
            2 | 3 => {
                out.extend_from_slice(&b[*i..*i + arg as usize]);
                *i += arg as usize;
            }
            4 => (0..arg).for_each(|_| item(b, i, out)),
            5 => (0..2 * arg).for_each(|_| item(b, i, out)),
            6 => item(b, i, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < cbor.len() {
        item(cbor, &mut i, &mut out);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bytes_on_the_sync_stream_are_answered_or_dropped_and_store_nothing() {
    let (host, mary, rec, held) = george_hosted().await;
    let hp = host.handle.peer_id();
    let mut raw = raw_peer();
    raw.add_peer_address(hp, host.addr.clone());
    let raw_id = *raw.local_peer_id();

    // A valid request the raw peer could make (as a stranger), and an entry signed by
    // someone without access, to build the malformed variants from.
    let stranger = key(11, "Stranger");
    let proof = |nonce: u8| {
        Proof::new(
            &stranger,
            rec,
            &raw_id.to_bytes(),
            &hp.to_bytes(),
            [nonce; 16],
            net::service::now_ms(),
        )
    };
    let cbor = |r: &Request| cbor4ii::serde::to_vec(Vec::new(), r).unwrap();
    let digests = cbor(&Request::Digests {
        proof: proof(1),
        digests: vec![(None, [7; 32])],
    });
    // Mary may push: her requests reach the entry decoder. A new reading of hers,
    // widened to a non-canonical encoding of the same entry, must not be stored.
    let mary_key = key(11, "Mary");
    let mary_proof = |nonce: u8| {
        Proof::new(
            &mary_key,
            rec,
            &raw_id.to_bytes(),
            &hp.to_bytes(),
            [nonce; 16],
            net::service::now_ms(),
        )
    };
    let reading = host
        .handle
        .store()
        .with_record(&rec, |r| {
            // Sealed, as Mary's node writes it (the stream is sealed).
            let mut mine = r.clone();
            mine.unlock(&mary_key);
            mine.prepare_sealed(
                &mary_key,
                Payload::Create {
                    category: Category::VitalSigns,
                    body: bp(200, 120),
                },
                net::service::now_ms(),
                None,
                cophr_protocol::record::SealPolicy {
                    seal_new_streams: true,
                    history: true,
                },
                &mut rng_for_sealing(),
            )
        })
        .unwrap()
        .unwrap()
        .pop()
        .unwrap();
    let entry_bytes = reading.signed().bytes().to_vec();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut garbage = |n: usize| {
        let mut b = vec![0u8; n];
        rng.fill_bytes(&mut b);
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("random 1 byte", garbage(1)),
        ("random 100 bytes", garbage(100)),
        ("random 4 KiB", garbage(4096)),
        ("random 8 KiB", garbage(8192)),
        ("truncated request", digests[..digests.len() / 2].to_vec()),
        (
            "request cut by one byte",
            digests[..digests.len() - 1].to_vec(),
        ),
        (
            "request with trailing bytes",
            [digests.clone(), vec![0]].concat(),
        ),
        (
            "byte string of 2^64-1 bytes",
            [vec![0x5b], vec![0xff; 8]].concat(),
        ),
        (
            "array of 2^64-1 items",
            [vec![0x9b], vec![0xff; 8], vec![0; 16]].concat(),
        ),
        (
            "map of 2^32-1 pairs",
            [vec![0xba], vec![0xff; 4], vec![0x61, b'a']].concat(),
        ),
        (
            "text of 2^63 bytes in a map",
            [vec![0xa1, 0x7b, 0x80], vec![0; 7]].concat(),
        ),
        ("nested arrays 100k deep", vec![0x81; 100_000]),
        ("nested maps 60k deep", [0xa1u8, 0x61, b'k'].repeat(20_000)),
        (
            "oversized message",
            [
                vec![0x5a],
                (MAX_MESSAGE as u32 * 4).to_be_bytes().to_vec(),
                garbage(MAX_MESSAGE as usize * 2),
            ]
            .concat(),
        ),
        ("an integer", vec![0x18, 42]),
        (
            "a text",
            cbor4ii::serde::to_vec(Vec::new(), &"digests").unwrap(),
        ),
        (
            "a response instead of a request",
            cbor4ii::serde::to_vec(
                Vec::new(),
                &Response::refused(cophr_protocol::sync::Refusal::Busy),
            )
            .unwrap(),
        ),
        (
            "unknown variant",
            cbor4ii::serde::to_vec(
                Vec::new(),
                &std::collections::BTreeMap::from([("delete-everything", 1u8)]),
            )
            .unwrap(),
        ),
        (
            "deeply nested unknown field",
            [
                vec![0xa1, 0x67],
                b"digests".to_vec(),
                vec![0xa1, 0x67],
                b"unknown".to_vec(),
                vec![0x81; 100_000],
            ]
            .concat(),
        ),
        ("non-canonical request", widen(&digests)),
        (
            "push of non-canonical entries",
            cbor(&Request::Push {
                proof: mary_proof(3),
                entries: vec![serde_bytes::ByteBuf::from(widen(&entry_bytes))],
                invitation: None,
                host: false,
            }),
        ),
        (
            "push of garbage entries",
            cbor(&Request::Push {
                proof: mary_proof(4),
                entries: vec![
                    serde_bytes::ByteBuf::from(garbage(300)),
                    serde_bytes::ByteBuf::from(Vec::new()),
                ],
                invitation: None,
                host: false,
            }),
        ),
        (
            "audit push of garbage",
            cbor(&Request::AuditPush {
                proof: proof(5),
                events: vec![serde_bytes::ByteBuf::from(garbage(64))],
            }),
        ),
    ];
    let names: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let outcomes = send_all(
        &mut raw,
        hp,
        cases.iter().map(|c| Raw::bytes(c.1.clone())).collect(),
        Duration::from_secs(60),
    )
    .await;
    for (name, outcome) in names.iter().zip(&outcomes) {
        match outcome {
            // Anything the node answers is a refusal: none of these opens anything.
            Outcome::Answered(bytes) => match response(bytes) {
                Response::Refused { .. } => {}
                Response::Pushed { accepted, rejected } if name.starts_with("push") => {
                    assert!(accepted.is_empty(), "{name}: accepted {accepted:?}");
                    assert!(!rejected.is_empty(), "{name}");
                }
                other => panic!("{name}: answered {other:?}"),
            },
            Outcome::Dropped(_) => {}
        }
    }
    // The malformed ones were dropped; the well-formed ones from a stranger refused.
    for name in [
        "random 4 KiB",
        "truncated request",
        "byte string of 2^64-1 bytes",
    ] {
        let i = names.iter().position(|n| *n == name).unwrap();
        assert!(
            matches!(outcomes[i], Outcome::Dropped(_)),
            "{name}: {:?}",
            outcomes[i]
        );
    }

    // The node is still running, stored nothing, and serves honest peers.
    assert!(!host.task.is_finished(), "the node's loop stopped");
    let hs = host.handle.store();
    assert_eq!(hs.records().unwrap(), vec![rec]);
    assert_eq!(hs.with_record(&rec, |r| r.len()).unwrap(), held);
    assert!(!hs.with_record(&rec, |r| r.contains(&reading.id())).unwrap());
    assert!(hs.verify().unwrap().is_ok());
    honest_sync(&mary, &host, rec, 131).await;
    assert_eq!(hs.with_record(&rec, |r| r.len()).unwrap(), held + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_peers_are_cut_by_the_request_timeout_while_others_sync() {
    let (host, mary, rec, held) = george_hosted().await;
    let hp = host.handle.peer_id();
    let mut raw = raw_peer();
    raw.add_peer_address(hp, host.addr.clone());
    let announce = cbor4ii::serde::to_vec(Vec::new(), &Request::Announce { record: rec }).unwrap();
    // One stream trickles a valid request a byte every 300 ms (it would take ~15 s); one
    // sends half a request and then a byte every 250 ms, never finishing; one sends only
    // that endless trickle; several of each, to hold streams open at once.
    let mut slow = Vec::new();
    for _ in 0..4 {
        slow.push(Raw {
            bytes: announce.clone(),
            trickle: Some(Duration::from_millis(300)),
            finish: true,
        });
        slow.push(Raw {
            bytes: announce[..announce.len() / 2].to_vec(),
            trickle: None,
            finish: false,
        });
        slow.push(Raw {
            bytes: Vec::new(),
            trickle: None,
            finish: false,
        });
    }
    assert!(announce.len() as u32 * 300 > 4 * TIMEOUT.as_millis() as u32);
    let n = slow.len();
    let started = Instant::now();
    let slow_task = tokio::spawn(async move {
        let out = send_all(&mut raw, hp, slow, Duration::from_secs(60)).await;
        (out, started.elapsed(), raw)
    });
    // Meanwhile Mary syncs, twice, as usual.
    let took = honest_sync(&mary, &host, rec, 132).await;
    assert!(took < Duration::from_secs(10), "Mary's sync took {took:?}");
    let (outcomes, elapsed, _raw) = slow_task.await.unwrap();
    assert_eq!(outcomes.len(), n);
    // Every slow stream was cut by the node (the raw peer's own timeout is 120 s), soon
    // after the node's 2 s request timeout.
    for o in &outcomes {
        match o {
            Outcome::Dropped(why) => assert!(!why.is_empty()),
            other => panic!("a slow stream was answered: {other:?}"),
        }
    }
    assert!(
        elapsed < TIMEOUT * 5,
        "slow streams were cut only after {elapsed:?}"
    );
    assert!(!host.task.is_finished());
    let hs = host.handle.store();
    assert_eq!(hs.with_record(&rec, |r| r.len()).unwrap(), held + 1);
    honest_sync(&mary, &host, rec, 133).await;
}

fn rng_for_sealing() -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(12)
}
