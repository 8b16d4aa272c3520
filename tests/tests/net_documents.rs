//! Documents stored apart, across real `cophr node run` processes: George attaches a
//! clinic letter on his node; his home host fetches it (sealed) when the entry is pushed
//! and can read none of it; his GP's node fetches it from the host and saves it byte for
//! byte; a nurse who may see vital signs only is sent neither the entry nor the file.

mod cli_support;

use std::io::Write;
use std::path::Path;

use cli_support::node::{eventually, Node};
use cli_support::search;
use cli_support::Person;

/// Count of `.blob` files (complete documents) under a home's store.
fn documents_held(home: &std::path::Path) -> usize {
    std::fs::read_dir(home.join("store").join("blobs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".blob"))
                .count()
        })
        .unwrap_or(0)
}

/// Names of the files in a home's blob store.
fn blob_files(home: &Path) -> Vec<String> {
    std::fs::read_dir(home.join("store").join("blobs"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends one `Request::Document` (the first slice of `doc` in `record`) to the node at
/// `addr`, from an in-process libp2p node acting as the person whose home is `home` (their
/// own key, read from `identity.key`); the response.
fn document_request(
    home: &Path,
    record: &str,
    addr: &str,
    doc: cophr_protocol::blob::BlobRef,
) -> cophr_protocol::sync::Response {
    use cophr_node::net::{self, NetConfig};
    let hex = std::fs::read_to_string(home.join("identity.key")).unwrap();
    let secret: [u8; 32] = data_encoding::HEXLOWER_PERMISSIVE
        .decode(hex.trim().as_bytes())
        .unwrap()
        .try_into()
        .unwrap();
    let who = cophr_protocol::Keypair::from_secret(&secret);
    let record: cophr_protocol::RecordId = record.parse().unwrap();
    let addr: libp2p::Multiaddr = addr.parse().unwrap();
    let peer = net::service::peer_of(&addr).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (store, _) = cophr_node::store::Store::open(
            dir.path(),
            cophr_protocol::testkit::key(14, "nurse's other node"),
        )
        .unwrap();
        let config = NetConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            sync_interval: std::time::Duration::from_secs(3600),
            ..NetConfig::default()
        };
        let peer_key = cophr_protocol::testkit::key(14, "nurse's other peer").secret_bytes();
        let (handle, _task) = net::start(store, who.clone(), peer_key, config)
            .await
            .unwrap();
        let proof = cophr_protocol::sync::Proof::new(
            &who,
            record,
            &handle.peer_id().to_bytes(),
            &peer.to_bytes(),
            [0x14; 16],
            net::service::now_ms(),
        );
        let request = cophr_protocol::sync::Request::Document {
            proof,
            doc,
            offset: 0,
            len: 1 << 20,
        };
        let response = handle.request(peer, vec![addr], request).await.unwrap();
        let _ = handle.shutdown().await;
        response
    })
}

#[test]
fn a_document_replicates_sealed_through_a_blind_host_to_those_who_may_see_it() {
    let george = Person::new("George Jones", "patient", None);
    let gp = Person::new("Dr Rao", "gp", Some("Oakwood Surgery"));
    let nurse = Person::new("Jo Smith", "nurse", None);
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &gp.actor,
        "--level",
        "view",
        "--categories",
        "documents",
    ]);
    george.live_ok(&[
        "grant",
        &nurse.actor,
        "--level",
        "write",
        "--categories",
        "vital-signs",
    ]);
    let out = george.live_ok(&["host", &host_node.addr()]);
    assert!(out.contains("is now hosted at"), "{out}");

    // A letter of ~600 KB: several slices, several sealed segments.
    let files = tempfile::tempdir().unwrap();
    let letter = files.path().join("letter.txt");
    let mut text = String::from("Renal clinic letter\n");
    for i in 0..12_000 {
        text.push_str(&format!(
            "Line {i}: eGFR stable at 48, continue Ramipril 5 mg.\n"
        ));
    }
    std::fs::write(&letter, &text).unwrap();
    let entry = george.live_ok(&[
        "attach",
        letter.to_str().unwrap(),
        "--title",
        "Renal clinic letter",
        "--date",
        "2026-11-20",
    ]);
    let entry = entry.trim().to_owned();
    assert!(entry.starts_with("e-"), "{entry}");

    // The host fetches the document when the entry reaches it, and holds it sealed.
    eventually("the host to hold the document", || {
        documents_held(host.dir()) == 1
    });
    let secret = "continue Ramipril 5 mg";
    assert_eq!(
        search::in_files(host.dir(), &[secret, "Renal clinic letter"]),
        vec![0, 0],
        "the host holds no plaintext of the document or its entry"
    );
    // George's own node holds it sealed on disk as well (the plaintext is only in his file).
    assert_eq!(search::in_files(george.dir(), &[secret]), vec![0]);

    // The GP's node follows the record at the host, and fetches the file from it.
    let _gp_node = Node::start(&gp, &[]);
    gp.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    eventually("the GP's node to hold the document", || {
        documents_held(gp.dir()) == 1
    });
    let saved = files.path().join("from-gp.txt");
    let out = gp.live_ok(&["download", &entry, "-o", saved.to_str().unwrap()]);
    assert!(out.contains(&format!("({} bytes)", text.len())), "{out}");
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), text);
    // Saving over an existing file is refused.
    let again = gp.live(&["download", &entry, "-o", saved.to_str().unwrap()]);
    assert_ne!(again.code, 0);
    assert!(again.stderr.contains("exists"), "{}", again.stderr);

    // The nurse sees vital signs only: neither the entry nor the file reaches her node.
    let _nurse_node = Node::start(&nurse, &[]);
    nurse.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    let r = nurse.live(&["download", &entry]);
    assert_ne!(r.code, 0, "{r:?}");
    assert_eq!(documents_held(nurse.dir()), 0);
    assert_eq!(search::in_files(nurse.dir(), &[secret]), vec![0]);
    // No byte of it either: no complete, partial or range file in her blob store.
    let files = blob_files(nurse.dir());
    assert!(
        !files
            .iter()
            .any(|n| n.ends_with(".blob") || n.ends_with(".part") || n.ends_with(".ranges")),
        "{files:?}"
    );
    // Asked directly with her own key, the host refuses her the document's bytes, as if
    // no such document existed.
    let held = blob_files(host.dir());
    let hash = held
        .iter()
        .find_map(|n| n.strip_suffix(".blob"))
        .expect("the host holds the document");
    let doc = cophr_protocol::blob::BlobRef {
        hash: hash.parse().expect("a blob hash"),
        size: cophr_protocol::blob::sealed_len(text.len() as u64),
    };
    let refusal = document_request(nurse.dir(), &george.actor, &host_node.addr(), doc);
    assert!(
        matches!(
            refusal,
            cophr_protocol::sync::Response::Refused {
                code: cophr_protocol::sync::Refusal::NoAccess,
                ..
            }
        ),
        "{refusal:?}"
    );

    // George moves his record to another blind host: it fetches the document (sealed)
    // with the entries, and the former host, released, deletes its copy.
    let host_b = Person::new("Other Host", "host", None);
    let host_b_node = Node::start(&host_b, &[]);
    george.live_ok(&["move", "--to", &host_b_node.addr()]);
    eventually("the new host to hold the document", || {
        documents_held(host_b.dir()) == 1
    });
    eventually("the former host to delete its copy", || {
        documents_held(host.dir()) == 0
    });
    assert_eq!(
        search::in_files(host_b.dir(), &[secret, "Renal clinic letter"]),
        vec![0, 0]
    );
}

/// Size of the document the kill-and-resume test replicates: `COPHR_DOC_TEST_BYTES`, by
/// default 64 MiB (64 slices). The figure, 1 GiB, is run by hand
/// (`docs/documents.md`, "Tested across real nodes").
const DEFAULT_DOC_TEST_BYTES: u64 = 64 << 20;

fn doc_test_bytes() -> u64 {
    std::env::var("COPHR_DOC_TEST_BYTES")
        .ok()
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|e| panic!("COPHR_DOC_TEST_BYTES={s:?}: {e}"))
        })
        .unwrap_or(DEFAULT_DOC_TEST_BYTES)
}

/// Writes a "PDF" of `len` bytes to `path` (the header, then bytes from a seeded ChaCha8),
/// streamed a MiB at a time, never whole in memory; returns its BLAKE3 hash.
fn write_seeded_file(path: &Path, len: u64, seed: u64) -> blake3::Hash {
    use rand_core::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    let mut first = true;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        rng.fill_bytes(&mut buf[..n]);
        if first {
            let magic = b"%PDF-1.7\n";
            buf[..magic.len()].copy_from_slice(magic);
            first = false;
        }
        out.write_all(&buf[..n]).unwrap();
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    out.flush().unwrap();
    hasher.finalize()
}

/// The BLAKE3 hash and length of a file, streamed.
fn hash_file(path: &Path) -> (blake3::Hash, u64) {
    let mut hasher = blake3::Hasher::new();
    let n = std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut hasher).unwrap();
    (hasher.finalize(), n)
}

/// The documents being received under a home: (hash, bytes recorded present in its
/// `.ranges` file, read as the store reads it: records up to the first torn one).
fn partials(home: &Path) -> Vec<(String, u64)> {
    let dir = home.join("store").join("blobs");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(hash) = name.strip_suffix(".part") else {
            continue;
        };
        let ranges = std::fs::read(dir.join(format!("{hash}.ranges"))).unwrap_or_default();
        let mut present = 0;
        if ranges.starts_with(b"COPHRBR1") {
            for rec in ranges[8..].chunks_exact(20) {
                if crc32(&rec[..16]) != u32::from_le_bytes(rec[16..].try_into().unwrap()) {
                    break;
                }
                present += u64::from_le_bytes(rec[8..16].try_into().unwrap());
            }
        }
        out.push((hash.to_owned(), present));
    }
    out
}

/// CRC-32 (IEEE), as the blob store's range records carry it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The sum of a numeric field (`name=N`) over the log lines containing `message`.
fn logged(log: &str, message: &str, name: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains(message))
        .filter_map(|l| {
            let at = l.find(&format!("{name}="))? + name.len() + 1;
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Polls `cond` every few milliseconds until it holds; panics with `what` after `limit`
/// (a bound on a hang, not a measure: the test asserts no time).
fn until(what: &str, limit: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "gave up after {limit:?} waiting for: {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_large_document_fetched_by_a_node_killed_half_way_resumes_and_arrives_whole() {
    let size = doc_test_bytes();
    let slices = size.div_ceil(1 << 20);
    assert!(slices >= 8, "COPHR_DOC_TEST_BYTES must be at least 8 MiB");
    let limit = std::time::Duration::from_secs(120 + size / (1 << 20));
    let george = Person::new("George Jones", "patient", None);
    let gp = Person::new("Dr Rao", "gp", Some("Oakwood Surgery"));
    let george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &gp.actor,
        "--level",
        "view",
        "--categories",
        "documents",
    ]);
    let mut gp_node = Node::start(&gp, &[]);
    gp.live_ok(&["follow", &george.actor, "--host", &george_node.addr()]);

    // George attaches a scan generated on disk from a seeded PRNG.
    let files = tempfile::tempdir().unwrap();
    let scan = files.path().join("scan.pdf");
    let t = std::time::Instant::now();
    let original = write_seeded_file(&scan, size, 0x0014_D0C5);
    eprintln!("generated {size} bytes in {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let entry = george.live_ok(&[
        "attach",
        scan.to_str().unwrap(),
        "--title",
        "CT scan",
        "--media-type",
        "application/pdf",
    ]);
    let entry = entry.trim().to_owned();
    std::fs::remove_file(&scan).unwrap();
    eprintln!("attached in {:?}", t.elapsed());
    let t = std::time::Instant::now();

    // The GP's node fetches it; once a quarter of its slices are recorded durable, it is
    // killed (SIGKILL: no chance to tidy up).
    let mut at_kill = (String::new(), 0);
    until(
        "the GP's node to have fetched a quarter of the scan",
        limit,
        || match partials(gp.dir()).pop() {
            Some(p) if p.1 >= size / 4 => {
                gp_node.kill();
                at_kill = p;
                true
            }
            _ => false,
        },
    );
    // What survived the kill: at least what was recorded when it was killed, not all.
    let (hash, present) = partials(gp.dir()).pop().expect("a partial document");
    assert_eq!(hash, at_kill.0);
    assert!(
        present >= at_kill.1 && present < cophr_protocol::blob::sealed_len(size),
        "{present} of {size} bytes"
    );
    assert_eq!(documents_held(gp.dir()), 0);

    // Restarted, it resumes: the ranges recorded are kept, and only the rest is fetched.
    eprintln!("killed after {:?} with {present} bytes held", t.elapsed());
    let t = std::time::Instant::now();
    let gp_node = Node::start(&gp, &[]);
    until("the GP's node to hold the scan", limit, || {
        documents_held(gp.dir()) == 1
    });
    eprintln!("restarted and completed in {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let log = gp_node.log();
    let resumed = logged(&log, "fetch resumes where it stopped", "held");
    assert_eq!(resumed, vec![present], "{log}");
    let fetched: u64 = logged(&log, "document fetched", "fetched")
        .iter()
        .sum::<u64>()
        + logged(&log, "document partly fetched", "fetched")
            .iter()
            .sum::<u64>();
    // The blob is the sealed scan (a tag per 64 KiB segment).
    let stored = cophr_protocol::blob::sealed_len(size);
    assert!(
        fetched <= stored - present,
        "{fetched} bytes fetched after the restart, {present} of {stored} held before"
    );
    assert!(partials(gp.dir()).is_empty());

    // Downloaded at the GP's, it is the original byte for byte.
    let saved = files.path().join("from-gp.pdf");
    let out = gp.live_ok(&["download", &entry, "-o", saved.to_str().unwrap()]);
    assert!(out.contains(&format!("({size} bytes)")), "{out}");
    assert_eq!(hash_file(&saved), (original, size));
    eprintln!("downloaded and compared in {:?}", t.elapsed());
}

/// A GET on a node's HTTP API with its token: (status, body).
fn http_get(base: &str, token: &str, path: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = agent
        .get(&format!("{base}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .call()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .expect("a body");
    (status, body)
}

#[test]
fn a_replica_fetching_on_demand_holds_no_file_until_one_is_asked_for_then_fetches_that_one() {
    let george = Person::new("George Jones", "patient", None);
    let consultant = Person::new("Dr Shah", "consultant", Some("Renal Unit"));
    let host = Person::new("Community Host", "host", None);
    let host_node = Node::start(&host, &[]);
    let _george_node = Node::start(&george, &[]);
    george.live_ok(&["record", "create"]);
    george.live_ok(&[
        "grant",
        &consultant.actor,
        "--level",
        "view",
        "--categories",
        "documents",
    ]);
    george.live_ok(&["host", &host_node.addr()]);

    // Three letters, each of several slices; the host fetches all three (it is their home).
    let files = tempfile::tempdir().unwrap();
    let mut letters = Vec::new();
    for (i, title) in ["Renal clinic letter", "Diabetes review", "Eye screening"]
        .into_iter()
        .enumerate()
    {
        let path = files.path().join(format!("letter{i}.txt"));
        let mut text = format!("{title}\n");
        for n in 0..6_000 {
            text.push_str(&format!("Line {n} of letter {i}: eGFR stable at 48.\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let entry = george.live_ok(&["attach", path.to_str().unwrap(), "--title", title]);
        letters.push((entry.trim().to_owned(), text));
    }
    eventually("the host to hold the three letters", || {
        documents_held(host.dir()) == 3
    });

    // The consultant's node fetches on demand: following the record (a sync) brings the
    // entries and no file; another sync does not either.
    let consultant_node = Node::start(&consultant, &["--documents", "on-demand"]);
    consultant.live_ok(&["follow", &george.actor, "--host", &host_node.addr()]);
    for (entry, _) in &letters {
        assert!(consultant.sees(entry), "{entry} replicated");
    }
    consultant.live_ok(&["sync"]);
    assert_eq!(
        documents_held(consultant.dir()),
        0,
        "{:?}",
        blob_files(consultant.dir())
    );

    // `cophr download` fetches the one file asked for from the home host, then saves it.
    let saved = files.path().join("first.txt");
    let run = consultant.live(&["download", &letters[0].0, "-o", saved.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("fetching the file"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), letters[0].1);
    assert_eq!(documents_held(consultant.dir()), 1);

    // The REST download fetches the second; the FHIR Binary read the third.
    let base = consultant_node.http().expect("the HTTP API");
    let token = consultant.live_ok(&["token"]).trim().to_owned();
    let (status, body) = http_get(
        &base,
        &token,
        &format!(
            "/api/v1/records/{}/entries/{}/document",
            george.actor, letters[1].0
        ),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        body == letters[1].1.as_bytes(),
        "the REST download is the letter"
    );
    assert_eq!(documents_held(consultant.dir()), 2);
    let (status, body) = http_get(&base, &token, &format!("/fhir/r4/Binary/{}", letters[2].0));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(
        body == letters[2].1.as_bytes(),
        "the FHIR Binary is the letter"
    );
    assert_eq!(documents_held(consultant.dir()), 3);

    // With its home host gone and no other peer holding it, a file not fetched yet is
    // unavailable (503 over HTTP, "not found" from the CLI), and nothing is stored.
    let extra = files.path().join("late.txt");
    std::fs::write(&extra, "Late letter\n".repeat(20_000)).unwrap();
    let late = george.live_ok(&["attach", extra.to_str().unwrap(), "--title", "Late letter"]);
    let late = late.trim().to_owned();
    eventually("the host to hold the late letter", || {
        documents_held(host.dir()) == 4
    });
    consultant.live_ok(&["sync"]);
    assert!(consultant.sees(&late));
    drop(host_node);
    let (status, body) = http_get(
        &base,
        &token,
        &format!("/api/v1/records/{}/entries/{late}/document", george.actor),
    );
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let run = consultant.live(&["download", &late, "-o", "-"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stderr.contains("could not be fetched"),
        "{}",
        run.stderr
    );
    assert_eq!(documents_held(consultant.dir()), 3);
}
