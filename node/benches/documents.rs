//! Document replication throughput against loopback TCP, in one run (issue 14: replicating
//! a blob should reach at least 70 % of the loopback TCP rate measured beside it).
//!
//! Three measurements over the same number of bytes (the sealed document's):
//!
//! 1. **loopback TCP**: a tokio `TcpStream` writing that many bytes through 127.0.0.1 to a
//!    reader, 1 MiB writes and reads; the ceiling.
//! 2. **replication**: two nodes (`net::start`, libp2p over TCP with noise and yamux, on
//!    127.0.0.1); the receiver holds the record's entries and runs
//!    `net::client::fetch_documents`, the real fetch path: `Request::Document` slice by
//!    slice, answered by the sync server from the sender's blob store (each group read and
//!    checked), each slice checked and written by the receiver's blob store with its
//!    fsyncs, the whole blob read back and checked at completion.
//! 3. **store only**: the same slices served and received (batched, as the fetch path
//!    does) between two blob stores in one thread, no network: what the stores cost.
//!
//! And three parts of the work, alone, to show where the ceiling is on the machine:
//!
//! 4. **durable write**: the bytes written to a file in 1 MiB writes with an fsync every
//!    16 MiB and at the end (as the receiving blob store batches them), nothing checked, no
//!    network. Durable before acknowledged is the design, so replication cannot be faster
//!    than this, whatever the transport.
//! 5. **cipher**: the bytes sealed and opened with ChaCha20-Poly1305 in noise's frames
//!    (65,519 bytes of data and a 16-byte tag), one core: the transport's encryption, both
//!    ends, no network.
//! 6. **hash**: one BLAKE3 pass over the bytes, one core (replication makes three: the
//!    sender's check as it reads, the receiver's check of each slice, the completion check).
//!
//! Run: `cargo bench -p cophr-node --bench documents` (size in bytes via
//! `COPHR_BENCH_DOC_BYTES`, default 256 MiB; `COPHR_BENCH_DOC_RUNS` runs, default 1). With
//! `--smoke` (used by the tests) it runs once at 3 MiB.

use std::io::Read;
use std::time::{Duration, Instant};

use cophr_node::net::{self, client, NetConfig, NodeHandle};
use cophr_node::store::blobs::{BlobStore, FsDir, Progress, MAX_SLICE_DATA};
use cophr_node::store::Store;
use cophr_protocol::blob::DocumentFile;
use cophr_protocol::testkit::{key, profile, SeededRng};
use cophr_protocol::{Category, Payload, RecordId, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    run(std::env::args().any(|a| a == "--smoke"));
}

/// Seeded bytes of any length, streamed (BLAKE3 in XOF mode), never whole in memory.
struct Seeded {
    xof: blake3::OutputReader,
    left: u64,
}

impl Read for Seeded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = usize::try_from(self.left).map_or(buf.len(), |l| l.min(buf.len()));
        self.xof.fill(&mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

fn seeded(len: u64) -> Seeded {
    Seeded {
        xof: blake3::Hasher::new_keyed(&[14; 32]).finalize_xof(),
        left: len,
    }
}

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1 << 20) as f64
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    /// Bytes moved by each measurement (the sealed document's size).
    pub bytes: u64,
    /// Loopback TCP.
    pub tcp: Duration,
    /// Replication between two nodes.
    pub replication: Duration,
    /// Serving and receiving between two blob stores, no network.
    pub store_only: Duration,
    /// Writing the bytes to a file durably (fsync per 16 MiB), nothing else.
    pub durable_write: Duration,
    /// Sealing and opening the bytes in noise's frames, one core.
    pub cipher: Duration,
    /// One BLAKE3 pass, one core.
    pub hash: Duration,
}

/// Runs the measurements `COPHR_BENCH_DOC_RUNS` times (once when `smoke`) and prints them.
pub fn run(smoke: bool) -> Vec<Figures> {
    let (plain, runs) = if smoke {
        (3 * MAX_SLICE_DATA + 5_000, 1)
    } else {
        (
            env("COPHR_BENCH_DOC_BYTES", 256 << 20),
            env("COPHR_BENCH_DOC_RUNS", 1),
        )
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (src, file, rec) = source(&dir.path().join("src"), plain);
    let bytes = file.blob_ref().size;
    println!(
        "document of {plain} bytes, {bytes} stored (sealed); {} slices of at most {MAX_SLICE_DATA}",
        bytes.div_ceil(MAX_SLICE_DATA)
    );
    let mut all = Vec::new();
    for i in 0..runs {
        let tcp = rt.block_on(tcp_loopback(bytes));
        let replication = rt.block_on(replicate(
            &src,
            &file,
            rec,
            &dir.path().join(format!("dst-{i}")),
        ));
        let store_only = store_only(&src, &file, &dir.path().join(format!("only-{i}")));
        let durable_write = durable_write(bytes, &dir.path().join(format!("disk-{i}")));
        let cipher = cipher(bytes);
        let hash = hash(bytes);
        let f = Figures {
            bytes,
            tcp,
            replication,
            store_only,
            durable_write,
            cipher,
            hash,
        };
        println!(
            "run {}: loopback TCP {:.0} MiB/s ({:.2} s); replication {:.0} MiB/s ({:.2} s), {:.0} % of TCP; store only {:.0} MiB/s ({:.2} s)",
            i + 1,
            rate(f.bytes, f.tcp),
            f.tcp.as_secs_f64(),
            rate(f.bytes, f.replication),
            f.replication.as_secs_f64(),
            100.0 * f.tcp.as_secs_f64() / f.replication.as_secs_f64(),
            rate(f.bytes, f.store_only),
            f.store_only.as_secs_f64(),
        );
        let of_tcp = |d: Duration| 100.0 * f.tcp.as_secs_f64() / d.as_secs_f64();
        println!(
            "run {}: alone: durable write {:.0} MiB/s ({:.0} % of TCP); cipher, both ends, one core {:.0} MiB/s ({:.0} %); one BLAKE3 pass {:.0} MiB/s ({:.0} %)",
            i + 1,
            rate(f.bytes, f.durable_write),
            of_tcp(f.durable_write),
            rate(f.bytes, f.cipher),
            of_tcp(f.cipher),
            rate(f.bytes, f.hash),
            of_tcp(f.hash),
        );
        all.push(f);
    }
    all
}

/// A sender's store: George's record with one document of `plain` bytes (sealed).
fn source(dir: &std::path::Path, plain: u64) -> (Store, DocumentFile, RecordId) {
    let george = key(14, "George");
    let rec = george.actor();
    let (s, _) = Store::open(dir, key(14, "George/node")).expect("open");
    let now = net::service::now_ms;
    s.create_record(&george, profile("George", "patient", None), now(), None)
        .expect("record");
    let file = s
        .import_document(seeded(plain), plain, &mut SeededRng::new(7))
        .expect("import");
    let mut body = std::collections::BTreeMap::new();
    body.insert("title".to_owned(), Value::Text("CT scan".into()));
    body.insert(
        "media-type".to_owned(),
        Value::Text("application/pdf".into()),
    );
    body.insert("file".to_owned(), file.to_value());
    s.write(
        &rec,
        &george,
        Payload::Create {
            category: Category::Documents,
            body: Value::Map(body),
        },
        now(),
        None,
    )
    .expect("entry");
    (s, file, rec)
}

/// `bytes` through a loopback TCP connection, 1 MiB writes and reads.
async fn tcp_loopback(bytes: u64) -> Duration {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let at = listener.local_addr().expect("address");
    let reader = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; MAX_SLICE_DATA as usize];
        let mut got = 0u64;
        while got < bytes {
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "the writer stopped early");
            got += n as u64;
        }
    });
    let mut chunk = vec![0u8; MAX_SLICE_DATA as usize];
    seeded(MAX_SLICE_DATA)
        .read_exact(&mut chunk)
        .expect("bytes");
    let start = Instant::now();
    let mut s = tokio::net::TcpStream::connect(at).await.expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        s.write_all(&chunk[..n]).await.expect("write");
        left -= n as u64;
    }
    s.flush().await.expect("flush");
    reader.await.expect("reader");
    start.elapsed()
}

async fn node(store: Store, name: &str) -> NodeHandle {
    let config = NetConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("address")],
        sync_interval: Duration::from_secs(3600),
        // The per-peer request budget (600 a minute by default) would pace a fetch of
        // more than 600 slices; this measures the transport and the fetch path.
        requests_per_minute: 1_000_000,
        ..NetConfig::default()
    };
    let peer = key(14, &format!("{name}/peer")).secret_bytes();
    let (handle, _task) = net::start(store, key(14, "George"), peer, config)
        .await
        .expect("start");
    while handle.listen_addrs().await.expect("addrs").is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle
}

/// The document fetched from a node over `src` by another (George's second device) that
/// holds the record's entries: the time of `fetch_documents`.
async fn replicate(
    src: &Store,
    file: &DocumentFile,
    rec: RecordId,
    dir: &std::path::Path,
) -> Duration {
    let (dst, _) = Store::open(dir, key(14, "George/device-2")).expect("open");
    let entries = src
        .with_record(&rec, |r| r.entries().collect::<Vec<_>>())
        .expect("entries");
    dst.ingest(&rec, entries).expect("ingest");
    let sender = node(src.clone(), "sender").await;
    let receiver = node(dst.clone(), "receiver").await;
    let addrs = sender.listen_addrs().await.expect("addrs");
    // The connection is set up (and warmed) by a first request, not timed.
    let doc = file.blob_ref();
    receiver
        .request(
            sender.peer_id(),
            addrs.clone(),
            cophr_protocol::sync::Request::Digests {
                proof: cophr_protocol::sync::Proof::new(
                    receiver.identity(),
                    rec,
                    &receiver.peer_id().to_bytes(),
                    &sender.peer_id().to_bytes(),
                    [1; 16],
                    net::service::now_ms(),
                ),
                digests: vec![],
            },
        )
        .await
        .expect("warm-up");
    let start = Instant::now();
    let fetched = client::fetch_documents(&receiver, sender.peer_id(), addrs, rec)
        .await
        .expect("fetch");
    let took = start.elapsed();
    assert_eq!(fetched.completed, 1, "{fetched:?}");
    assert!(dst.has_document(&doc));
    let _ = receiver.shutdown().await;
    let _ = sender.shutdown().await;
    took
}

/// The document's slices served by `src`'s blob store and received by a new one, in one
/// thread: the stores' share of the cost.
fn store_only(src: &Store, file: &DocumentFile, dir: &std::path::Path) -> Duration {
    let dst = BlobStore::open(std::sync::Arc::new(FsDir::open(dir).expect("dir"))).expect("open");
    let (hash, size) = (file.hash, file.blob_ref().size);
    let start = Instant::now();
    dst.begin(&hash, size).expect("begin");
    let mut at = 0;
    while at < size {
        let slice = src.blobs().slice(&hash, at, MAX_SLICE_DATA).expect("slice");
        at += slice.len;
        let progress = dst.write_slice_batched(&hash, &slice).expect("write");
        assert_eq!(progress == Progress::Complete, at == size);
    }
    start.elapsed()
}

/// Bytes a batch of durable writes gathers before its fsync, as the receiving blob store's
/// `write_slice_batched` does.
const DURABLE_BATCH: u64 = 16 << 20;

/// `bytes` written to a new file in 1 MiB writes, fsync'd every [`DURABLE_BATCH`] and at the
/// end, with the directory fsync'd after: what making them durable costs, alone.
fn durable_write(bytes: u64, dir: &std::path::Path) -> Duration {
    use std::io::Write;
    std::fs::create_dir_all(dir).expect("dir");
    let mut chunk = vec![0u8; MAX_SLICE_DATA as usize];
    seeded(MAX_SLICE_DATA)
        .read_exact(&mut chunk)
        .expect("bytes");
    let start = Instant::now();
    let mut f = std::fs::File::create(dir.join("blob")).expect("create");
    let (mut left, mut unsynced) = (bytes, 0);
    while left > 0 {
        let n = left.min(chunk.len() as u64);
        f.write_all(&chunk[..n as usize]).expect("write");
        left -= n;
        unsynced += n;
        if unsynced >= DURABLE_BATCH || left == 0 {
            f.sync_data().expect("fsync");
            unsynced = 0;
        }
    }
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .expect("fsync dir");
    start.elapsed()
}

/// Data bytes in one noise transport frame (65,535 bytes, less the 16-byte tag).
const NOISE_FRAME_DATA: usize = 65_535 - 16;

/// `bytes` sealed and opened with ChaCha20-Poly1305 frame by frame, in one thread.
fn cipher(bytes: u64) -> Duration {
    use chacha20poly1305::aead::{AeadInPlace, KeyInit};
    use chacha20poly1305::{ChaCha20Poly1305, Nonce};
    let cipher = ChaCha20Poly1305::new(&[7u8; 32].into());
    let mut frame = vec![0u8; NOISE_FRAME_DATA];
    seeded(NOISE_FRAME_DATA as u64)
        .read_exact(&mut frame)
        .expect("bytes");
    let start = Instant::now();
    let (mut left, mut n) = (bytes, 0u64);
    while left > 0 {
        let len = left.min(NOISE_FRAME_DATA as u64) as usize;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_le_bytes());
        let nonce = Nonce::from(nonce);
        let tag = cipher
            .encrypt_in_place_detached(&nonce, b"", &mut frame[..len])
            .expect("seal");
        cipher
            .decrypt_in_place_detached(&nonce, b"", &mut frame[..len], &tag)
            .expect("open");
        left -= len as u64;
        n += 1;
    }
    start.elapsed()
}

/// One BLAKE3 pass over `bytes`, 1 MiB at a time, in one thread.
fn hash(bytes: u64) -> Duration {
    let mut chunk = vec![0u8; MAX_SLICE_DATA as usize];
    seeded(MAX_SLICE_DATA)
        .read_exact(&mut chunk)
        .expect("bytes");
    let start = Instant::now();
    let mut h = blake3::Hasher::new();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        h.update(&chunk[..n]);
        left -= n as u64;
    }
    std::hint::black_box(h.finalize());
    start.elapsed()
}
