//! The page's logic against a real sync server over a relay's store, every message encoded
//! and decoded as over `POST /sync`.

use super::*;
use cophr_protocol::backup::KdfParams;
use cophr_protocol::record::ContentState;
use cophr_protocol::sync::server::{HostPolicy, Peer, Server};
use cophr_protocol::sync::Refusal;
use cophr_protocol::testkit::{key, profile, text_body};
use cophr_protocol::Verified;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const PASS: &str = "correct horse battery staple";
const T0: Timestamp = 1_800_000_000_000;
const HOST: &[u8] = b"host-peer-id";

/// George's record written on his own node (sealed, as every node writes), handed to a
/// relay host that also keeps his key backup.
struct World {
    george: Keypair,
    host: MemStore,
    server: Server,
    backup: Vec<u8>,
    rng: ChaCha20Rng,
}

fn world() -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let george = key(7, "George");
    let mut home = MemStore::new(george.clone());
    home.unlock_with(&george);
    let record = george.actor();
    let policy = SealPolicy {
        seal_new_streams: true,
        history: true,
    };
    let write = |home: &mut MemStore, payload: Payload, now, rng: &mut ChaCha20Rng| {
        let r = home
            .record(&record)
            .cloned()
            .unwrap_or_else(|| Record::new(record));
        for v in r
            .prepare_sealed(&george, payload, now, None, policy, rng)
            .expect("george may write")
        {
            home.write(v).expect("applies");
        }
    };
    write(
        &mut home,
        Payload::Genesis {
            profile: profile("George", "patient", None),
        },
        T0,
        &mut rng,
    );
    write(
        &mut home,
        Payload::Create {
            category: Category::Allergies,
            body: text_body(&[
                ("agent", "penicillin"),
                ("reaction", "I am deaf in my left ear"),
            ]),
        },
        T0 + 1000,
        &mut rng,
    );
    let entries: Vec<Verified> = home.record(&record).expect("held").entries().collect();
    let mut host = MemStore::new(key(7, "Host"));
    host.ingest(&record, entries).expect("the relay takes them");
    let backup = KeyBackup::seal(&george, None, PASS, KdfParams::MIN, &mut rng)
        .expect("sealed")
        .bytes()
        .to_vec();
    host.put_backup(&george.actor(), &backup).expect("kept");
    World {
        george,
        host,
        server: Server::new(HOST.to_vec(), HostPolicy::default()),
        backup,
        rng,
    }
}

/// Runs the page's sync to its end against the host, as `patient.js` does over HTTP.
fn sync(w: &mut World, p: &mut Patient, push: bool, now: Timestamp) -> Value {
    let peer = Peer {
        id: HTTP_CLIENT.to_vec(),
        label: "web client".into(),
    };
    p.start_sync(push);
    let mut trips = 0;
    while let Some(request) = p.next_request(now, {
        let mut n = [0u8; 16];
        w.rng.fill_bytes(&mut n);
        n
    }) {
        trips += 1;
        assert!(trips < 100, "the sync ends");
        let request = sync::decode(&request).expect("a request the host decodes");
        let (response, _effects) = w.server.handle(&mut w.host, &peer, request, now);
        p.handle_response(&sync::encode(&response));
    }
    p.sync_report()
}

#[test]
fn the_page_opens_the_backup_pulls_and_reads_the_sealed_record() {
    let mut w = world();
    // The backup comes from the host through the same request the page sends.
    let peer = Peer {
        id: HTTP_CLIENT.to_vec(),
        label: "web client".into(),
    };
    let ask = sync::decode(&backup_request(&w.george.actor().to_string()).expect("an id"))
        .expect("decodes");
    let (answer, _) = w.server.handle(&mut w.host, &peer, ask, T0);
    let backup = backup_from_response(&sync::encode(&answer)).expect("the host keeps it");
    assert_eq!(backup, w.backup);

    let mut p = Patient::open(&backup, PASS, None, HOST).expect("opens");
    assert_eq!(p.actor(), w.george.actor());
    let report = sync(&mut w, &mut p, false, T0 + 5000);
    assert_eq!(report["error"], Value::Null, "{report}");
    assert!(report["pulled"].as_u64().unwrap_or(0) >= 2, "{report}");
    let items = p.items(T0 + 5000);
    assert_eq!(items["locked"], 0, "{items}");
    let allergy = &items["items"][0];
    assert_eq!(allergy["body"]["reaction"], "I am deaf in my left ear");
    assert!(allergy["summary"]
        .as_str()
        .unwrap_or("")
        .contains("penicillin"));
    // The relay holds it and cannot read it.
    let held = w.host.record(&w.george.actor()).expect("held");
    let id: EntryId = allergy["current"]
        .as_str()
        .expect("id")
        .parse()
        .expect("an id");
    assert!(matches!(
        held.content_state(&id),
        Some(ContentState::Locked)
    ));
}

#[test]
fn what_the_page_writes_is_sealed_signed_by_the_patient_and_reaches_the_host() {
    let mut w = world();
    let mut p = Patient::open(&w.backup.clone(), PASS, None, HOST).expect("opens");
    // Writing before anything is synced is refused, clearly.
    let early = p.add("allergies", r#"{"agent": "latex"}"#, T0 + 2000, &mut w.rng);
    assert!(early.unwrap_err().0.contains("sync"));
    sync(&mut w, &mut p, false, T0 + 3000);
    // Bodies are checked against the category's rules before anything is written.
    let bad = p.add(
        "allergies",
        r#"{"reaction": "no agent"}"#,
        T0 + 4000,
        &mut w.rng,
    );
    assert!(bad.unwrap_err().0.contains("agent"));
    let id = p
        .add(
            "allergies",
            r#"{"agent": "latex", "reaction": "written in the browser"}"#,
            T0 + 4000,
            &mut w.rng,
        )
        .expect("written");
    let report = sync(&mut w, &mut p, true, T0 + 5000);
    assert_eq!(report["error"], Value::Null, "{report}");
    assert!(report["pushed"].as_u64().unwrap_or(0) >= 1, "{report}");

    let held = w.host.record(&w.george.actor()).expect("held");
    let e = held.get(&id).expect("the host has the entry");
    assert_eq!(e.entry().author, w.george.actor(), "signed by George's key");
    assert!(matches!(e.entry().payload, Payload::SealedCreate { .. }));
    assert!(matches!(
        held.content_state(&id),
        Some(ContentState::Locked)
    ));
    // George's own key (on any node of his) opens it.
    let mut mine = held.clone();
    mine.unlock(&w.george);
    let body = mine.payload(&id).expect("opens");
    assert!(format!("{body:?}").contains("written in the browser"));
}

#[test]
fn a_wrong_passphrase_a_bad_id_and_a_hostile_answer_are_clear_errors() {
    let mut w = world();
    let wrong = Patient::open(&w.backup, "not the passphrase at all", None, HOST).unwrap_err();
    assert!(
        wrong.0.contains("passphrase") || wrong.0.contains("open"),
        "{wrong}"
    );
    assert!(Patient::open(b"junk", PASS, None, HOST).is_err());
    assert!(backup_request("not-an-id")
        .unwrap_err()
        .0
        .contains("cophr id"));
    assert!(backup_from_response(b"\xff\x00").is_err());
    let none = sync::encode(&Response::Backup { backup: None });
    assert!(backup_from_response(&none)
        .unwrap_err()
        .0
        .contains("no key backup"));

    // Garbage instead of an answer ends the sync with an error; nothing is applied.
    let mut p = Patient::open(&w.backup.clone(), PASS, None, HOST).expect("opens");
    p.start_sync(false);
    let mut n = [0u8; 16];
    w.rng.fill_bytes(&mut n);
    assert!(p.next_request(T0, n).is_some());
    p.handle_response(b"\x00\x01garbage");
    while p.next_request(T0, n).is_some() {
        p.handle_failure("no answer");
    }
    let report = p.sync_report();
    assert_ne!(report["error"], Value::Null, "{report}");
    assert_eq!(p.items(T0)["entries"], 0);
}

#[test]
fn a_proof_made_for_http_is_refused_over_another_transport() {
    let mut w = world();
    let mut p = Patient::open(&w.backup.clone(), PASS, None, HOST).expect("opens");
    p.start_sync(false);
    let request = p.next_request(T0, [9; 16]).expect("a request");
    let request: Request = sync::decode(&request).expect("decodes");
    // The same bytes arriving from a libp2p peer (another transport identity).
    let other = Peer {
        id: b"some-libp2p-peer".to_vec(),
        label: "peer".into(),
    };
    let (answer, _) = w.server.handle(&mut w.host, &other, request, T0);
    assert!(
        matches!(
            answer,
            Response::Refused {
                code: Refusal::BadProof,
                ..
            }
        ),
        "{answer:?}"
    );
}

/// Seals `file` as the page does: slice by slice, as the sealer says.
fn seal_in_page(file: &[u8], rng: &mut ChaCha20Rng) -> (SealedDocument, Vec<u8>) {
    let mut sealer = DocumentSealer::new(file.len() as u64, rng).expect("a sealer");
    let mut sealed = Vec::new();
    for i in 0..sealer.segments() {
        let (at, len) = sealer.span(i).expect("a segment");
        let at = at as usize;
        sealed.extend(sealer.seal(&file[at..at + len]).expect("sealed"));
    }
    (sealer.finish().expect("every segment sealed"), sealed)
}

#[test]
fn a_document_sealed_in_the_page_is_uploaded_named_and_opened_back_only_by_its_readers() {
    let mut w = world();
    let mut p = Patient::open(&w.backup.clone(), PASS, None, HOST).expect("opens");
    sync(&mut w, &mut p, false, T0 + 3000);
    // A PDF of three segments and a bit.
    let mut file = b"%PDF-1.4\n% written in the browser\n".to_vec();
    file.extend((0..3 * blob::SEGMENT_BYTES as u32 + 77).map(|i| (i % 251) as u8));
    let (doc, sealed) = seal_in_page(&file, &mut w.rng);
    assert_eq!(doc.media_type, "application/pdf");
    let r = doc.blob_ref();
    assert_eq!(r.size, sealed.len() as u64);
    assert_eq!(r.hash, BlobHash::of(&sealed));
    assert!(
        !sealed.windows(16).any(|s| s == &file[40..56]),
        "the sealed bytes hold no plaintext"
    );
    let nonce = |rng: &mut ChaCha20Rng| {
        let mut n = [0u8; 16];
        rng.fill_bytes(&mut n);
        n
    };
    let proof = |p: &Patient, op, r: &BlobRef, rng: &mut ChaCha20Rng| -> Proof {
        sync::decode(&p.blob_proof(op, r, T0 + 4000, nonce(rng))).expect("a proof")
    };
    // The host's rule for the upload: the patient, with a proof for exactly this upload.
    let put = proof(&p, BlobOp::Put, &r, &mut w.rng);
    let by = w
        .server
        .blob_put(&w.host, "web client", &put, &r, T0 + 4000)
        .expect("the patient may upload");
    assert_eq!(by, w.george.actor());
    // The same proof again (a replay), or made for another document or for a get: refused.
    let refused = |x: Result<ActorId, (Response, Vec<sync::server::Effect>)>| match x {
        Err((Response::Refused { code, .. }, _)) => code,
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(
        refused(w.server.blob_put(&w.host, "web", &put, &r, T0 + 4000)),
        Refusal::BadProof
    );
    let other = BlobRef {
        hash: BlobHash::of(b"another"),
        size: r.size,
    };
    let for_other = proof(&p, BlobOp::Put, &other, &mut w.rng);
    assert_eq!(
        refused(w.server.blob_put(&w.host, "web", &for_other, &r, T0 + 4000)),
        Refusal::BadProof
    );
    // The host keeps the sealed bytes; the page writes the entry and pushes it.
    assert_eq!(w.host.put_document(sealed.clone()), r);
    let id = p
        .add_document(
            &doc,
            "Letter from the clinic",
            Some("2025-03-01"),
            T0 + 4000,
            &mut w.rng,
        )
        .expect("written");
    let report = sync(&mut w, &mut p, true, T0 + 5000);
    assert_eq!(report["error"], Value::Null, "{report}");
    // Listed with its sizes, never its key.
    let items = p.items(T0 + 5000);
    let listed = items["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["category"] == "documents")
        .expect("the document is listed")
        .clone();
    assert_eq!(listed["body"]["file"]["size"], file.len() as u64);
    assert_eq!(listed["body"]["file"]["hash"], r.hash.to_hex());
    assert!(listed["body"]["file"].get("key").is_none(), "{listed}");
    assert!(listed["summary"]
        .as_str()
        .unwrap_or("")
        .contains("application/pdf"));

    // Fetching it back: George may (audited), and the bytes open to the file in any pieces.
    let get = proof(&p, BlobOp::Get, &r, &mut w.rng);
    w.server
        .blob_get(&mut w.host, "web client", &get, &r, T0 + 5000)
        .expect("the patient may fetch it");
    let mut opener = p.document(&id.to_string(), T0 + 5000).expect("an opener");
    assert_eq!(opener.blob_ref(), r);
    assert_eq!(opener.about()["media-type"], "application/pdf");
    let mut opened = Vec::new();
    for piece in sealed.chunks(10_000) {
        opened.extend(opener.push(piece).expect("opens"));
    }
    opener.finish().expect("whole and the document's");
    assert_eq!(opened, file);
    // Other bytes, a flipped byte or too few are errors, never the file.
    let mut flipped = sealed.clone();
    flipped[70_000] ^= 1;
    let mut o = p.document(&id.to_string(), T0 + 5000).expect("an opener");
    assert!(o.push(&flipped).is_err());
    let mut o = p.document(&id.to_string(), T0 + 5000).expect("an opener");
    o.push(&sealed[..sealed.len() - 1])
        .expect("whole segments open");
    assert!(o.finish().is_err(), "a short answer is refused");
    let mut o = p.document(&id.to_string(), T0 + 5000).expect("an opener");
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(o.push(&longer).is_err());

    // Someone without access (Mary, no grant) gets the refusal a missing document gets.
    let mary = key(8, "Mary");
    let as_mary = Patient::with_key(mary, w.george.actor(), HOST);
    let mary_get = proof(&as_mary, BlobOp::Get, &r, &mut w.rng);
    assert_eq!(
        refused(
            w.server
                .blob_get(&mut w.host, "web", &mary_get, &r, T0 + 5000)
        ),
        Refusal::NoAccess
    );
    // Nor may she upload into George's record.
    let mary_put = proof(&as_mary, BlobOp::Put, &other, &mut w.rng);
    assert_eq!(
        refused(
            w.server
                .blob_put(&w.host, "web", &mary_put, &other, T0 + 5000)
        ),
        Refusal::NoAccess
    );
}

#[test]
fn a_file_of_no_accepted_type_or_too_large_is_refused_before_anything_is_sealed() {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let mut s = DocumentSealer::new(4, &mut rng).expect("a sealer");
    assert!(s
        .seal(&[0, 1, 2, 3])
        .unwrap_err()
        .0
        .contains("accepted type"));
    assert!(s.finish().is_err());
    assert!(DocumentSealer::new(blob::MAX_DOCUMENT_BYTES + 1, &mut rng).is_err());
    // A segment of the wrong length is refused.
    let mut s = DocumentSealer::new(10, &mut rng).expect("a sealer");
    assert!(s.seal(b"%PDF-").is_err());
}
