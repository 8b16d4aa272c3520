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
