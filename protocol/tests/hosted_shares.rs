//! A home host serving emergency summary shares its patient hands it (sync `SharePut` and
//! `ShareEnd`): only the patient, only well-formed ciphertext, bounded in number; ending
//! drops the ciphertext.

use cophr_protocol::access::Level;
use cophr_protocol::share::{self, Share, ShareId, ShareKey, MAX_SHARES};
use cophr_protocol::sync::mem::MemStore;
use cophr_protocol::sync::server::{HostPolicy, Peer, Server};
use cophr_protocol::sync::{Proof, Refusal, Request, Response};
use cophr_protocol::testkit::{grant, key, Fixture};
use cophr_protocol::{Keypair, RecordId};

struct Host {
    server: Server,
    store: MemStore,
    george: Fixture,
    nurse: Keypair,
    now: u64,
    nonce: u8,
}

impl Host {
    fn new() -> Host {
        let mut george = Fixture::new(51, "George");
        let nurse = key(51, "Nurse");
        george.grant(grant(&nurse, Level::Write, &[], true, false));
        let mut store = MemStore::new(key(51, "Host"));
        for v in george.record.entries() {
            store.write(v.clone()).unwrap();
        }
        Host {
            server: Server::new(b"host".to_vec(), HostPolicy::default()),
            store,
            now: george.now,
            george,
            nurse,
            nonce: 0,
        }
    }

    fn ask(&mut self, as_key: &Keypair, make: impl FnOnce(Proof) -> Request) -> Response {
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
            .0
    }

    fn put(&mut self, as_key: &Keypair, s: &Share, sealed: &[u8]) -> Response {
        self.ask(as_key, |proof| Request::SharePut {
            proof,
            share: serde_bytes::ByteBuf::from(s.encode()),
            sealed: serde_bytes::ByteBuf::from(sealed.to_vec()),
        })
    }
}

fn share_of(record: RecordId, n: u8, now: u64) -> (Share, String) {
    let s = Share::new(ShareId([n; 16]), record, now, 3_600_000, None, Vec::new()).unwrap();
    let sealed = share::seal(
        &ShareKey([n; 32]),
        [n; 12],
        b"{\"resourceType\":\"Bundle\"}",
    )
    .unwrap();
    (s, sealed)
}

fn refusal(r: &Response) -> Option<Refusal> {
    match r {
        Response::Refused { code, .. } => Some(*code),
        _ => None,
    }
}

#[test]
fn only_the_patient_hands_the_host_a_share_and_ends_it() {
    let mut h = Host::new();
    let record = h.george.record.id();
    let patient = h.george.patient.clone();
    let nurse = h.nurse.clone();
    let (s, sealed) = share_of(record, 1, h.now);
    // A grantee, even with the audit right, cannot.
    assert_eq!(
        refusal(&h.put(&nurse, &s, sealed.as_bytes())),
        Some(Refusal::NoAccess)
    );
    assert!(h.store.share(&s.id).is_none());
    assert!(matches!(
        h.put(&patient, &s, sealed.as_bytes()),
        Response::Ack
    ));
    assert_eq!(h.store.share(&s.id).unwrap().1, sealed.as_bytes());
    let id = s.id;
    assert_eq!(
        refusal(&h.ask(&nurse, |proof| Request::ShareEnd { proof, id })),
        Some(Refusal::NoAccess)
    );
    assert!(h.store.share(&id).unwrap().0.ended.is_none());
    assert!(matches!(
        h.ask(&patient, |proof| Request::ShareEnd { proof, id }),
        Response::Ack
    ));
    let (ended, blob) = h.store.share(&id).unwrap();
    assert!(ended.ended.is_some());
    assert!(blob.is_empty(), "the ciphertext is dropped");
}

#[test]
fn malformed_or_too_many_shares_are_refused_and_nothing_is_kept() {
    let mut h = Host::new();
    let record = h.george.record.id();
    let patient = h.george.patient.clone();
    let (s, sealed) = share_of(record, 2, h.now);
    let mut bad: Vec<(Share, Vec<u8>)> = Vec::new();
    // Not a JWE; another algorithm's header; too large.
    bad.push((s.clone(), b"plain text summary".to_vec()));
    let mut parts: Vec<&str> = sealed.split('.').collect();
    parts[0] = "eyJhbGciOiJSU0EtT0FFUCJ9";
    bad.push((s.clone(), parts.join(".").into_bytes()));
    bad.push((s.clone(), vec![b'A'; share::MAX_JWE + 1]));
    // A share of another record; one already expired; one lasting over 7 days.
    let mut other = s.clone();
    other.record = key(51, "Someone else").actor();
    bad.push((other, sealed.clone().into_bytes()));
    let mut expired = s.clone();
    expired.expires = h.now - 1;
    expired.created = h.now - 3_600_000;
    bad.push((expired, sealed.clone().into_bytes()));
    let mut long = s.clone();
    long.expires = s.created + 8 * 24 * 3_600_000;
    bad.push((long, sealed.clone().into_bytes()));
    for (b, bytes) in &bad {
        let r = h.put(&patient, b, bytes);
        assert!(
            matches!(refusal(&r), Some(Refusal::Malformed)),
            "{r:?} for {b:?}"
        );
        assert!(h.store.share(&b.id).is_none());
    }
    // Not canonical CBOR for the descriptor.
    let r = h.ask(&patient, |proof| Request::SharePut {
        proof,
        share: serde_bytes::ByteBuf::from(vec![0xff, 0x00]),
        sealed: serde_bytes::ByteBuf::from(sealed.clone().into_bytes()),
    });
    assert_eq!(refusal(&r), Some(Refusal::Malformed));
    // At most MAX_SHARES active ones.
    for n in 0..MAX_SHARES as u8 {
        let (s, sealed) = share_of(record, 100 + n, h.now);
        assert!(matches!(
            h.put(&patient, &s, sealed.as_bytes()),
            Response::Ack
        ));
    }
    let (s, sealed) = share_of(record, 250, h.now);
    assert_eq!(
        refusal(&h.put(&patient, &s, sealed.as_bytes())),
        Some(Refusal::OverQuota)
    );
    assert!(h.store.share(&s.id).is_none());
    // A retried hand-over of one already kept is taken again.
    let (s, sealed) = share_of(record, 100, h.now);
    assert!(matches!(
        h.put(&patient, &s, sealed.as_bytes()),
        Response::Ack
    ));
}
