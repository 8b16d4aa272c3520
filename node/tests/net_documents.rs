//! Documents fetched over real libp2p connections on 127.0.0.1 (in one process), against a
//! hostile peer: a libp2p peer that speaks the sync protocol honestly (its answers are a
//! real sync server's, over George's store) except that it flips one byte of a document
//! slice, in its data or in its proof. The receiver refuses that slice, says at which chunk
//! group (or proof node) the flipped byte is, stores none of it, keeps what it had, and
//! completes the document from an honest peer, resuming where it stopped. A replica not
//! allowed to see documents is refused them and holds none of their bytes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol};

use cophr_node::net::client::{self, RejectedSlice};
use cophr_node::net::server::{Peer, Server};
use cophr_node::net::{self, DocumentFetch, NetConfig, NetError, NodeHandle, PeerBook};
use cophr_node::store::blobs::{SliceFault, GROUP_BYTES, MAX_SLICE_DATA};
use cophr_node::store::Store;
use cophr_protocol::access::Level;
use cophr_protocol::blob::{BlobRef, DocumentFile};
use cophr_protocol::sync::server::HostPolicy;
use cophr_protocol::sync::{Proof, Refusal, Request, Response, PROTOCOL};
use cophr_protocol::testkit::{grant, key, profile, SeededRng};
use cophr_protocol::{Category, Keypair, Payload, RecordId, Value};

/// Where the hostile peer flips a byte, in the slice at `slice` (its offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tamper {
    /// A byte of the slice's last chunk group (its data).
    Data { slice: u64 },
    /// A byte of the proof node over the slice's last two chunk groups.
    Proof { slice: u64 },
}

/// A node over a store in `dir`, acting as `identity`, listening on loopback.
async fn node(dir: &std::path::Path, name: &str, identity: &Keypair) -> NodeHandle {
    node_with(dir, name, identity, DocumentFetch::Eager).await
}

/// [`node`], fetching documents as `documents` says.
async fn node_with(
    dir: &std::path::Path,
    name: &str,
    identity: &Keypair,
    documents: DocumentFetch,
) -> NodeHandle {
    let (store, _) = Store::open(dir, key(14, &format!("{name}/node"))).unwrap();
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        sync_interval: Duration::from_secs(3600),
        documents,
        ..NetConfig::default()
    };
    let peer_key = key(14, &format!("{name}/peer")).secret_bytes();
    let (handle, _task) = net::start(store, identity.clone(), peer_key, config)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while handle.listen_addrs().await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never listened"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    handle
}

async fn addr(h: &NodeHandle) -> Multiaddr {
    h.listen_addrs().await.unwrap()[0].clone()
}

/// The hostile peer: answers sync requests with a real sync server over `store` (bound to
/// its own peer id), then flips a byte of a document slice as `tamper` says. Returns its
/// peer id and address.
async fn hostile_peer(store: Store, tamper: Arc<Mutex<Tamper>>) -> (PeerId, Multiaddr) {
    let max = cophr_protocol::sync::MAX_MESSAGE_BYTES as u64;
    let mut swarm = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                request_response::cbor::codec::Codec::<Request, Response>::default()
                    .set_request_size_maximum(max)
                    .set_response_size_maximum(max),
                [(StreamProtocol::new(PROTOCOL), ProtocolSupport::Full)],
                request_response::Config::default(),
            )
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let me = *swarm.local_peer_id();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let listening = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
            break address;
        }
    };
    let server = Server::new(me.to_bytes(), HostPolicy::default());
    tokio::spawn(async move {
        let mut store = store;
        loop {
            let SwarmEvent::Behaviour(request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Request {
                        request, channel, ..
                    },
                ..
            }) = swarm.select_next_some().await
            else {
                continue;
            };
            let from = Peer {
                id: peer.to_bytes(),
                label: format!("peer {peer}"),
            };
            let (mut response, _) =
                server.handle(&mut store, &from, request, net::service::now_ms());
            let how = *tamper.lock().unwrap();
            if let Response::DocumentSlice { offset, slice, .. } = &mut response {
                let n = slice.len();
                match how {
                    Tamper::Data { slice: at } if *offset == at => slice[n - 100] ^= 0x20,
                    Tamper::Proof { slice: at } if *offset == at => {
                        slice[n - 2 * GROUP_BYTES as usize - 64 + 3] ^= 0x20
                    }
                    _ => {}
                }
            }
            let _ = swarm.behaviour_mut().send_response(channel, response);
        }
    });
    (me, listening.with(libp2p::multiaddr::Protocol::P2p(me)))
}

/// The bytes of George's scan: a PDF header, then seeded pseudo-random bytes.
fn scan(len: usize) -> Vec<u8> {
    let mut rng = SeededRng::new(14);
    let mut bytes = b"%PDF-1.7\n".to_vec();
    let mut block = [0u8; 64];
    while bytes.len() < len {
        rand_core::RngCore::fill_bytes(&mut rng, &mut block);
        bytes.extend_from_slice(&block);
    }
    bytes.truncate(len);
    bytes
}

/// The `.part` file of a document being received, in a store opened at `dir`.
fn part_file(dir: &std::path::Path, doc: &BlobRef) -> std::path::PathBuf {
    dir.join("blobs").join(format!("{}.part", doc.hash))
}

/// Files of the blob store at `dir` (any kind: complete, partial, range records).
fn blob_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir.join("blobs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_from_a_hostile_peer_is_refused_at_its_chunk_and_an_honest_peer_completes() {
    let george = key(14, "George");
    let gp = key(14, "GP");
    let nurse = key(14, "Nurse");
    let rec: RecordId = george.actor();
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let george_node = node(dirs[0].path(), "George", &george).await;
    let gp_node = node(dirs[1].path(), "GP", &gp).await;
    let nurse_node = node(dirs[2].path(), "Nurse", &nurse).await;

    // George's record: the GP may view documents, the nurse vital signs only; a scan of
    // three and a bit slices, sealed in George's blob store.
    let s = george_node.store();
    let now = net::service::now_ms;
    s.create_record(&george, profile("George", "patient", None), now(), None)
        .unwrap();
    for (who, level, cat) in [
        (&gp, Level::View, Category::Documents),
        (&nurse, Level::Write, Category::VitalSigns),
    ] {
        s.write(
            &rec,
            &george,
            Payload::Grant(grant(who, level, &[cat], false, false)),
            now(),
            None,
        )
        .unwrap();
    }
    let plain = scan(3 * MAX_SLICE_DATA as usize + 5_000);
    let file: DocumentFile = s
        .import_document(&plain[..], plain.len() as u64, &mut SeededRng::new(7))
        .unwrap();
    let doc = file.blob_ref();
    assert!(doc.size > 3 * MAX_SLICE_DATA && doc.size < 4 * MAX_SLICE_DATA);
    write_scan(s, &george, &file, "CT scan");

    // Mallory's peer serves George's record (as a replica of it would) and tampers with
    // the second slice's data.
    let tamper = Arc::new(Mutex::new(Tamper::Data {
        slice: MAX_SLICE_DATA,
    }));
    let (mallory, mallory_addr) = hostile_peer(s.clone(), tamper.clone()).await;

    // The GP syncs with Mallory: the entries arrive; the fetch that follows stores the
    // first slice and refuses the second.
    client::sync(&gp_node, mallory, vec![mallory_addr.clone()], rec, false)
        .await
        .unwrap();
    let blobs = gp_node.store().blobs();
    let missing = || blobs.missing_ranges(&doc.hash).unwrap();
    assert_eq!(missing(), vec![MAX_SLICE_DATA..doc.size]);
    let part = part_file(dirs[1].path(), &doc);
    // Bytes of the `.part` file's data for the second slice (after the 64-byte header).
    let second = || {
        let bytes = std::fs::read(&part).unwrap();
        bytes[64 + MAX_SLICE_DATA as usize..64 + 2 * MAX_SLICE_DATA as usize].to_vec()
    };
    assert!(second().iter().all(|b| *b == 0));

    // Asked again, Mallory sends the same slice: refused at the chunk group holding the
    // flipped byte (the slice's last, 100 bytes before its end), nothing of it stored.
    let f = client::fetch_documents(&gp_node, mallory, vec![mallory_addr.clone()], rec)
        .await
        .unwrap();
    let flipped_at = 2 * MAX_SLICE_DATA - 100;
    assert_eq!(
        f.rejected,
        vec![RejectedSlice {
            doc: doc.hash,
            offset: MAX_SLICE_DATA,
            fault: SliceFault::DataMismatch {
                offset: flipped_at - flipped_at % GROUP_BYTES
            },
        }]
    );
    assert_eq!((f.completed, f.bytes), (0, 0));
    assert_eq!(missing(), vec![MAX_SLICE_DATA..doc.size]);
    assert!(second().iter().all(|b| *b == 0));

    // A flipped byte in the proof: refused at the proof node it is in (the one over the
    // slice's last two chunk groups), nothing stored.
    *tamper.lock().unwrap() = Tamper::Proof {
        slice: MAX_SLICE_DATA,
    };
    let f = client::fetch_documents(&gp_node, mallory, vec![mallory_addr], rec)
        .await
        .unwrap();
    assert_eq!(
        f.rejected,
        vec![RejectedSlice {
            doc: doc.hash,
            offset: MAX_SLICE_DATA,
            fault: SliceFault::ProofMismatch {
                offset: 2 * MAX_SLICE_DATA - 2 * GROUP_BYTES
            },
        }]
    );
    assert_eq!(missing(), vec![MAX_SLICE_DATA..doc.size]);
    assert!(second().iter().all(|b| *b == 0));
    assert!(!gp_node.store().has_document(&doc));

    // George's own node is honest: the fetch resumes after the first slice and completes.
    let f = client::fetch_documents(
        &gp_node,
        george_node.peer_id(),
        vec![addr(&george_node).await],
        rec,
    )
    .await
    .unwrap();
    assert!(f.rejected.is_empty(), "{f:?}");
    assert_eq!((f.completed, f.bytes), (1, doc.size - MAX_SLICE_DATA));
    assert!(gp_node.store().has_document(&doc));
    let mut back = Vec::new();
    std::io::Read::read_to_end(
        &mut gp_node.store().open_document(&file).unwrap(),
        &mut back,
    )
    .unwrap();
    assert!(back == plain, "the document reads back byte for byte");
    assert!(!part.exists());

    // The nurse may see vital signs only: she syncs, is given no document, and a direct
    // request for the document's bytes is refused as if it did not exist.
    client::sync(
        &nurse_node,
        george_node.peer_id(),
        vec![addr(&george_node).await],
        rec,
        false,
    )
    .await
    .unwrap();
    let ask = |offset: u64, n: u8| Request::Document {
        proof: Proof::new(
            &nurse,
            rec,
            &nurse_node.peer_id().to_bytes(),
            &george_node.peer_id().to_bytes(),
            [0xA0 + n; 16],
            now(),
        ),
        doc,
        offset,
        len: MAX_SLICE_DATA,
    };
    for (n, offset) in [(0, 0), (1, MAX_SLICE_DATA)] {
        let r = nurse_node
            .request(
                george_node.peer_id(),
                vec![addr(&george_node).await],
                ask(offset, n),
            )
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Response::Refused {
                    code: Refusal::NoAccess,
                    ..
                }
            ),
            "{r:?}"
        );
    }
    assert!(nurse_node.store().blobs().list().is_empty());
    assert!(nurse_node.store().blobs().partials().is_empty());
    assert!(
        !blob_files(dirs[2].path())
            .iter()
            .any(|n| n.ends_with(".blob") || n.ends_with(".part") || n.ends_with(".ranges")),
        "{:?}",
        blob_files(dirs[2].path())
    );
}

/// George's record on his node, with the GP allowed to view documents, and `n` scans of
/// two and a bit slices each; the scans' files and plaintexts.
fn george_with_scans(
    s: &Store,
    george: &Keypair,
    gp: &Keypair,
    n: u64,
) -> Vec<(DocumentFile, Vec<u8>)> {
    let rec = george.actor();
    let now = net::service::now_ms;
    s.create_record(george, profile("George", "patient", None), now(), None)
        .unwrap();
    s.write(
        &rec,
        george,
        Payload::Grant(grant(gp, Level::View, &[Category::Documents], false, false)),
        now(),
        None,
    )
    .unwrap();
    (0..n)
        .map(|i| {
            let mut plain = scan(2 * MAX_SLICE_DATA as usize + 3_000);
            plain[20] = i as u8;
            let file: DocumentFile = s
                .import_document(&plain[..], plain.len() as u64, &mut SeededRng::new(i))
                .unwrap();
            write_scan(s, george, &file, &format!("Scan {i}"));
            (file, plain)
        })
        .collect()
}

/// George writes a documents entry (a PDF titled `title`) naming `file`.
fn write_scan(s: &Store, george: &Keypair, file: &DocumentFile, title: &str) {
    let mut body = std::collections::BTreeMap::new();
    body.insert("title".to_owned(), Value::Text(title.into()));
    body.insert(
        "media-type".to_owned(),
        Value::Text("application/pdf".into()),
    );
    body.insert("file".to_owned(), file.to_value());
    s.write(
        &george.actor(),
        george,
        Payload::Create {
            category: Category::Documents,
            body: Value::Map(body),
        },
        net::service::now_ms(),
        None,
    )
    .unwrap();
}

fn read_back(store: &Store, file: &DocumentFile) -> Vec<u8> {
    let mut back = Vec::new();
    std::io::Read::read_to_end(&mut store.open_document(file).unwrap(), &mut back).unwrap();
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_a_replica_fetches_only_the_document_asked_for_from_the_first_peer_that_gives_it_whole(
) {
    let george = key(14, "George");
    let gp = key(14, "GP");
    let rec: RecordId = george.actor();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let george_node = node(dirs[0].path(), "George", &george).await;
    let gp_node = node_with(dirs[1].path(), "GP", &gp, DocumentFetch::OnDemand).await;
    assert_eq!(gp_node.document_fetch(), DocumentFetch::OnDemand);
    let scans = george_with_scans(george_node.store(), &george, &gp, 3);
    let george_addr = addr(&george_node).await;

    // The GP's node pulls the entries, and no file: it fetches on demand.
    let report = client::sync(
        &gp_node,
        george_node.peer_id(),
        vec![george_addr.clone()],
        rec,
        false,
    )
    .await
    .unwrap();
    assert!(report.pulled >= 4, "{report:?}");
    assert!(gp_node.store().blobs().list().is_empty());
    assert!(gp_node.store().blobs().partials().is_empty());

    // Knowing no peer of the record, it cannot fetch one.
    let e = client::fetch_document(&gp_node, rec, scans[0].0.blob_ref())
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::DocumentUnavailable { .. }), "{e}");
    assert!(e.to_string().contains("no peer of record"), "{e}");

    // Its peer book names Mallory as home (a peer that serves the record but flips a byte
    // of the second slice) and George's node as a replica: the first scan asked for is
    // refused from Mallory at the flipped chunk, completed from George's node, and reads
    // back byte for byte. The other scans are not fetched.
    let tamper = Arc::new(Mutex::new(Tamper::Data {
        slice: MAX_SLICE_DATA,
    }));
    let (_, mallory_addr) = hostile_peer(george_node.store().clone(), tamper).await;
    gp_node
        .set_peer_book(
            &rec,
            &PeerBook {
                home: Some(mallory_addr),
                replicas: vec![george_addr],
                learned: Vec::new(),
            },
        )
        .unwrap();
    let (file, plain) = &scans[0];
    let f = client::fetch_document(&gp_node, rec, file.blob_ref())
        .await
        .unwrap();
    assert_eq!(f.completed, 1, "{f:?}");
    assert_eq!(f.rejected.len(), 1, "{f:?}");
    assert_eq!(f.rejected[0].offset, MAX_SLICE_DATA);
    assert_eq!(
        f.bytes,
        file.blob_ref().size,
        "the first slice from Mallory, the rest from George"
    );
    assert!(read_back(gp_node.store(), file) == *plain);
    assert_eq!(gp_node.store().blobs().list().len(), 1);
    // Held now: asked again, nothing is fetched.
    let again = client::fetch_document(&gp_node, rec, file.blob_ref())
        .await
        .unwrap();
    assert_eq!((again.completed, again.bytes), (0, 0));

    // Two readers asking for the second scan at once make one fetch: the bytes fetched
    // between them are the document's, once.
    let (file, plain) = &scans[1];
    let (a, b) = tokio::join!(
        client::fetch_document(&gp_node, rec, file.blob_ref()),
        client::fetch_document(&gp_node, rec, file.blob_ref())
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.completed + b.completed, 1, "{a:?} {b:?}");
    assert_eq!(
        a.bytes + b.bytes,
        file.blob_ref().size,
        "one fetch: Mallory's first slice, George's rest, each once"
    );
    assert!(read_back(gp_node.store(), file) == *plain);
    assert_eq!(gp_node.store().blobs().list().len(), 2);
    assert!(!gp_node.store().has_document(&scans[2].0.blob_ref()));
}
