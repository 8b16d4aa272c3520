//! Documents stored apart from entries, served over sync (`Request::Document`): whoever
//! may see an entry naming a document may fetch its bytes, a relay included; nobody else
//! learns whether it exists; a document not held is said so; a fetch is audited once, as a
//! view of the entries naming it. Threat model: `docs/threat-model.md`.

use std::collections::BTreeMap;

use cophr_protocol::access::Level;
use cophr_protocol::audit::Action;
use cophr_protocol::blob::{BlobHash, BlobRef, DocumentFile, GROUP_BYTES};
use cophr_protocol::sync::mem::MemStore;
use cophr_protocol::sync::server::{HostPolicy, Peer, Server};
use cophr_protocol::sync::{Proof, Refusal, Request, Response};
use cophr_protocol::testkit::{grant, key, Fixture};
use cophr_protocol::{Category, Keypair, Value};

struct Host {
    server: Server,
    store: MemStore,
    george: Fixture,
    now: u64,
    nonce: u8,
}

impl Host {
    /// Sends a request made with `as_key`'s fresh proof; the response and its effects.
    fn handle(
        &mut self,
        as_key: &Keypair,
        make: impl FnOnce(Proof) -> Request,
    ) -> (Response, Vec<cophr_protocol::sync::server::Effect>) {
        self.nonce += 1;
        let proof = Proof::new(
            as_key,
            self.george.record.id(),
            b"client",
            b"host",
            [self.nonce; 16],
            self.now,
        );
        let peer = Peer {
            id: b"client".to_vec(),
            label: "client".into(),
        };
        self.server
            .handle(&mut self.store, &peer, make(proof), self.now)
    }

    fn ask(&mut self, as_key: &Keypair, doc: BlobRef, offset: u64, len: u64) -> Response {
        self.handle(as_key, |proof| Request::Document {
            proof,
            doc,
            offset,
            len,
        })
        .0
    }
}

fn refusal(r: &Response) -> Option<Refusal> {
    match r {
        Response::Refused { code, .. } => Some(*code),
        _ => None,
    }
}

fn document(title: &str, bytes: &[u8]) -> (Value, BlobRef) {
    let file = DocumentFile {
        hash: BlobHash::of(bytes),
        size: bytes.len() as u64,
        key: None,
    };
    let mut m = BTreeMap::new();
    m.insert("title".to_owned(), Value::Text(title.into()));
    m.insert("media-type".to_owned(), Value::Text("text/plain".into()));
    m.insert("file".to_owned(), file.to_value());
    (Value::Map(m), file.blob_ref())
}

#[test]
fn a_document_is_served_to_whoever_may_see_an_entry_naming_it_and_to_nobody_else() {
    let mut george = Fixture::new(61, "George");
    let gp = key(61, "GP");
    let nurse = key(61, "Nurse");
    let relay = key(61, "Community host");
    let stranger = key(61, "Stranger");
    george.grant(grant(
        &gp,
        Level::View,
        &[Category::Documents],
        false,
        false,
    ));
    george.grant(grant(
        &nurse,
        Level::Write,
        &[Category::VitalSigns],
        false,
        false,
    ));
    george.grant(grant(&relay, Level::Relay, &[], false, false));
    let letter = b"Renal clinic letter: eGFR stable at 48.\n".repeat(1000);
    let (body, doc) = document("Renal clinic letter", &letter);
    let g = george.patient.clone();
    let entry = george.create(&g, Category::Documents, body).unwrap();
    // A document no entry names, and one named but not held here.
    let unnamed = b"never referenced".to_vec();
    let (other_body, missing) = document("Scan", b"a scan the host has not fetched yet");
    george.create(&g, Category::Documents, other_body).unwrap();

    let mut store = MemStore::new(key(61, "Host"));
    for v in george.record.entries() {
        store.write(v.clone()).unwrap();
    }
    assert_eq!(store.put_document(letter.clone()), doc);
    let unnamed_doc = store.put_document(unnamed);
    let mut host = Host {
        server: Server::new(b"host".to_vec(), HostPolicy::default()),
        store,
        now: george.now,
        george,
        nonce: 0,
    };
    let r = host.store.record(&host.george.record.id()).unwrap();
    assert_eq!(r.documents().copied().collect::<Vec<_>>(), {
        let mut both = vec![doc, missing];
        both.sort();
        both
    });

    // The GP reads documents: the bytes, in slices.
    let mut got = Vec::new();
    while (got.len() as u64) < doc.size {
        match host.ask(&gp, doc, got.len() as u64, GROUP_BYTES) {
            Response::DocumentSlice { offset, len, slice } => {
                assert_eq!(offset, got.len() as u64);
                assert_eq!(len, slice.len() as u64);
                got.extend_from_slice(&slice);
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, letter);
    // Audited once, as a view of the entry naming it, by the GP.
    let events = host.store.audit_events(&host.george.record.id());
    let served: Vec<_> = events
        .iter()
        .filter(|e| e.event.action == Action::View)
        .map(|e| (e.event.actor, e.event.entries.clone()))
        .collect();
    assert_eq!(served, vec![(gp.actor(), vec![entry])]);

    // A fetch that skips the first slice is audited all the same (once per hour).
    let audit_before = host.store.audit_events(&host.george.record.id()).len();
    let relay_first = host.ask(&relay, doc, GROUP_BYTES, GROUP_BYTES);
    assert!(matches!(relay_first, Response::DocumentSlice { .. }));
    assert_eq!(
        host.store.audit_events(&host.george.record.id()).len(),
        audit_before + 1,
        "a fetch from the middle is audited"
    );

    // The relay may hold it (sealed, in practice): it fetches it too.
    assert!(matches!(
        host.ask(&relay, doc, 0, 10),
        Response::DocumentSlice { .. }
    ));
    // The patient, of course.
    assert!(matches!(
        host.ask(&g, doc, 0, 10),
        Response::DocumentSlice { .. }
    ));
    // The nurse sees vital signs only; a stranger nothing. Neither learns it exists: the
    // same refusal as for a document no entry names.
    assert_eq!(
        refusal(&host.ask(&nurse, doc, 0, 10)),
        Some(Refusal::NoAccess)
    );
    assert_eq!(
        refusal(&host.ask(&stranger, doc, 0, 10)),
        Some(Refusal::NoAccess)
    );
    assert_eq!(
        refusal(&host.ask(&gp, unnamed_doc, 0, 10)),
        Some(Refusal::NoAccess)
    );
    // A size the entry does not name is another document.
    let resized = BlobRef {
        size: doc.size + 1,
        ..doc
    };
    assert_eq!(
        refusal(&host.ask(&gp, resized, 0, 10)),
        Some(Refusal::NoAccess)
    );
    // Named, visible, not held here: said so.
    assert_eq!(
        refusal(&host.ask(&gp, missing, 0, 10)),
        Some(Refusal::DocumentNotHeld)
    );
    // Beyond the end, or nothing asked for.
    assert_eq!(
        refusal(&host.ask(&gp, doc, doc.size, 10)),
        Some(Refusal::Malformed)
    );
    assert_eq!(refusal(&host.ask(&gp, doc, 0, 0)), Some(Refusal::Malformed));
    assert_eq!(
        refusal(&host.ask(&gp, doc, 10, 10)),
        Some(Refusal::Malformed)
    );
}

/// A push into a record naming documents the host lacks asks its driver to fetch them
/// from the pusher (`Effect::Documents`); once they are held, pushes ask nothing.
#[test]
fn a_push_naming_documents_not_held_asks_for_them() {
    use cophr_protocol::sync::server::Effect;
    let mut george = Fixture::new(62, "George");
    let g = george.patient.clone();
    let letter = b"Discharge summary".to_vec();
    let (body, doc) = document("Discharge summary", &letter);
    george.create(&g, Category::Documents, body).unwrap();
    let mut host = Host {
        server: Server::new(b"host".to_vec(), HostPolicy::default()),
        store: MemStore::new(key(62, "Host")),
        now: george.now,
        george,
        nonce: 0,
    };
    let push = |host: &mut Host, entries: Vec<cophr_protocol::Verified>| {
        host.handle(&g, |proof| Request::Push {
            proof,
            entries: entries
                .iter()
                .map(|v| serde_bytes::ByteBuf::from(v.signed().bytes().to_vec()))
                .collect(),
            invitation: None,
            host: false,
        })
        .1
    };
    let all: Vec<_> = host.george.record.entries().collect();
    let effects = push(&mut host, all);
    assert!(effects.contains(&Effect::Documents(host.george.record.id())));
    // Held now: a further push asks nothing.
    host.store.put_document(letter);
    let r = host.store.record(&host.george.record.id()).unwrap();
    assert_eq!(r.documents().copied().collect::<Vec<_>>(), vec![doc]);
    let more = host
        .george
        .create(
            &g,
            Category::Allergies,
            cophr_protocol::testkit::text_body(&[("agent", "Latex")]),
        )
        .unwrap();
    let v = host.george.record.get(&more).unwrap();
    let effects = push(&mut host, vec![v]);
    assert!(
        !effects.iter().any(|e| matches!(e, Effect::Documents(_))),
        "{effects:?}"
    );
}

/// A documents body naming a document of `size` stored bytes that nobody needs to hold
/// (the quotas count what an entry names, fetched or not).
fn named(title: &str, seed: u8, size: u64) -> (Value, BlobRef) {
    let file = DocumentFile {
        hash: BlobHash::of(&[seed; 8]),
        size,
        key: None,
    };
    let mut m = BTreeMap::new();
    m.insert("title".to_owned(), Value::Text(title.into()));
    m.insert("media-type".to_owned(), Value::Text("text/plain".into()));
    m.insert("file".to_owned(), file.to_value());
    (Value::Map(m), file.blob_ref())
}

/// Pushes `entries` of `f`'s record to a host as its patient; the response.
fn push_to(
    server: &Server,
    store: &mut MemStore,
    f: &Fixture,
    entries: &[cophr_protocol::Verified],
    nonce: u8,
) -> Response {
    let proof = Proof::new(
        &f.patient,
        f.record.id(),
        b"client",
        b"host",
        [nonce; 16],
        f.now,
    );
    let peer = Peer {
        id: b"client".to_vec(),
        label: "client".into(),
    };
    let request = Request::Push {
        proof,
        entries: entries
            .iter()
            .map(|v| serde_bytes::ByteBuf::from(v.signed().bytes().to_vec()))
            .collect(),
        invitation: None,
        host: false,
    };
    server.handle(store, &peer, request, f.now).0
}

fn quota_host(quotas: cophr_protocol::sync::server::Quotas) -> Server {
    Server::new(
        b"host".to_vec(),
        HostPolicy {
            quotas,
            ..HostPolicy::default()
        },
    )
}

fn over_quota_reason(r: &Response) -> String {
    match r {
        Response::Refused {
            code: Refusal::OverQuota,
            reason,
        } => reason.clone(),
        other => panic!("expected an over-quota refusal, got {other:?}"),
    }
}

#[test]
fn a_hosts_per_record_quota_counts_the_documents_entries_name() {
    use cophr_protocol::sync::server::Quotas;
    let mut george = Fixture::new(64, "George");
    let g = george.patient.clone();
    let (scan, _) = named("CT head", 1, 50_000);
    let scan_entry = george.create(&g, Category::Documents, scan).unwrap();
    let all: Vec<_> = george.record.entries().collect();
    let entry_bytes: u64 = all.iter().map(|v| v.signed().bytes().len() as u64).sum();
    assert!(entry_bytes < 40_000, "{entry_bytes}");

    // The entries alone fit in 40,000 bytes; with the 50,000-byte scan they name, not.
    let small = quota_host(Quotas {
        record_bytes: Some(40_000),
        ..Quotas::default()
    });
    let mut store = MemStore::new(key(64, "Host"));
    let refused = push_to(&small, &mut store, &george, &all, 1);
    let reason = over_quota_reason(&refused);
    assert!(
        reason.contains("per record") && reason.contains("documents"),
        "{reason}"
    );
    assert!(
        store.record(&george.record.id()).is_none(),
        "nothing stored"
    );

    let roomy = quota_host(Quotas {
        record_bytes: Some(60_000 + entry_bytes),
        ..Quotas::default()
    });
    let mut store = MemStore::new(key(64, "Host"));
    assert!(matches!(
        push_to(&roomy, &mut store, &george, &all, 2),
        Response::Pushed { ref rejected, .. } if rejected.is_empty()
    ));

    // An amend naming the scan the record names already adds no document bytes...
    let (retitled, _) = named("CT head (no acute change)", 1, 50_000);
    let amend = george
        .write(
            &g,
            cophr_protocol::Payload::Amend {
                target: scan_entry,
                body: retitled,
            },
        )
        .unwrap();
    assert!(matches!(
        push_to(&roomy, &mut store, &george, &[amend], 4),
        Response::Pushed { ref accepted, .. } if accepted.len() == 1
    ));
    // ... while another 30,000-byte document would take the record over its quota.
    let (xray, _) = named("Chest X-ray", 2, 30_000);
    let more = george.create(&g, Category::Documents, xray).unwrap();
    let v = george.record.get(&more).unwrap();
    let refused = push_to(&roomy, &mut store, &george, &[v], 3);
    over_quota_reason(&refused);
    assert!(store
        .record(&george.record.id())
        .unwrap()
        .get(&more)
        .is_none());
}

#[test]
fn a_hosts_total_quota_counts_a_document_held_for_two_records_once() {
    use cophr_protocol::sync::server::{Quotas, SyncStore};
    let shared = vec![7u8; 20_000];
    let (body, _) = document("Shared leaflet", &shared);
    let mut george = Fixture::new(65, "George");
    let mut mary = Fixture::new(66, "Mary");
    for f in [&mut george, &mut mary] {
        let k = f.patient.clone();
        f.create(&k, Category::Documents, body.clone()).unwrap();
    }
    let entries = |f: &Fixture| f.record.entries().collect::<Vec<_>>();
    let bytes = |f: &Fixture| -> u64 {
        entries(f)
            .iter()
            .map(|v| v.signed().bytes().len() as u64)
            .sum()
    };
    // Room for both records' entries and the leaflet once, not twice.
    let total = bytes(&george) + bytes(&mary) + 20_000 + 1_000;
    let host = quota_host(Quotas {
        total_bytes: Some(total),
        ..Quotas::default()
    });

    // Held here (fetched for George): Mary's record naming it adds only her entries.
    let mut store = MemStore::new(key(65, "Host"));
    assert!(matches!(
        push_to(&host, &mut store, &george, &entries(&george), 1),
        Response::Pushed { ref rejected, .. } if rejected.is_empty()
    ));
    store.put_document(shared.clone());
    assert_eq!(
        store.usage(&george.record.id()).unwrap().total_bytes,
        bytes(&george) + 20_000
    );
    assert!(matches!(
        push_to(&host, &mut store, &mary, &entries(&mary), 2),
        Response::Pushed { ref rejected, .. } if rejected.is_empty()
    ));
    assert_eq!(
        store.usage(&mary.record.id()).unwrap().total_bytes,
        bytes(&george) + bytes(&mary) + 20_000,
        "the leaflet counts once"
    );

    // Not held yet: it may still have to be fetched, so it counts for Mary's push too.
    let mut store = MemStore::new(key(65, "Host"));
    push_to(&host, &mut store, &george, &entries(&george), 3);
    let refused = push_to(&host, &mut store, &mary, &entries(&mary), 4);
    assert!(over_quota_reason(&refused).contains("in all"));
}

#[test]
fn a_browser_upload_counts_against_the_record_quota_before_its_entry_is_written() {
    use cophr_protocol::sync::server::Quotas;
    use cophr_protocol::sync::{http_blob_client, BlobOp};
    let george = Fixture::new(67, "George");
    let all: Vec<_> = george.record.entries().collect();
    let entry_bytes: u64 = all.iter().map(|v| v.signed().bytes().len() as u64).sum();
    let server = quota_host(Quotas {
        record_bytes: Some(entry_bytes + 10_000),
        ..Quotas::default()
    });
    let mut store = MemStore::new(key(67, "Host"));
    assert!(matches!(
        push_to(&server, &mut store, &george, &all, 1),
        Response::Pushed { ref rejected, .. } if rejected.is_empty()
    ));
    let upload = |doc: &BlobRef, nonce: u8| {
        let proof = Proof::new(
            &george.patient,
            george.record.id(),
            &http_blob_client(BlobOp::Put, doc),
            b"host",
            [nonce; 16],
            george.now,
        );
        server.blob_put(&store, "browser", &proof, doc, george.now)
    };
    let (_, large) = named("CT head", 3, 50_000);
    match upload(&large, 2) {
        Err((r, _)) => {
            over_quota_reason(&r);
        }
        Ok(_) => panic!("a 50,000-byte upload fits a 10,000-byte margin"),
    }
    let (_, small) = named("Letter", 4, 5_000);
    assert_eq!(upload(&small, 3).ok(), Some(george.patient.actor()));
}
