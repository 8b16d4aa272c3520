//! Structure-aware: arbitrary sequences of requests from honest, partly authorised and
//! hostile peers, answered by the sync server over an in-memory store. Never panics, and
//! after every answer: nothing served is invisible to the proven actor, every served entry
//! is audited, a peer without access learns only "no access", and nothing invalid is
//! stored (every entry the store holds still applies through the one gate).
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use cophr_protocol::access::Level;
use cophr_protocol::record::{Record, Stream};
use cophr_protocol::sync::mem::MemStore;
use cophr_protocol::sync::server::{HostPolicy, Peer, Server};
use cophr_protocol::sync::{decode, encode, Frontier, Proof, Refusal, Request, Response};
use cophr_protocol::testkit::{bp, grant, key, text_body, Fixture};
use cophr_protocol::{Category, Keypair, Verified};
use libfuzzer_sys::fuzz_target;
use serde_bytes::ByteBuf;

const NOW: u64 = 1_700_000_100_000;

struct World {
    record: Record,
    keys: Vec<Keypair>,
    /// Entries a peer might push: the record's own and more, some the rules refuse.
    pool: Vec<Verified>,
    streams: Vec<Stream>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let mut f = Fixture::new(40, "George");
        let g = f.patient.clone();
        let pharmacist = key(40, "Pharmacist");
        let nurse = key(40, "Nurse");
        let stranger = key(40, "Stranger");
        f.grant(grant(
            &pharmacist,
            Level::View,
            &[Category::Medications],
            false,
            false,
        ));
        f.grant(grant(
            &nurse,
            Level::Write,
            &[Category::VitalSigns],
            false,
            true,
        ));
        for i in 0..6 {
            f.create(&g, Category::VitalSigns, bp(120 + i, 80)).unwrap();
        }
        f.create(
            &g,
            Category::Medications,
            text_body(&[("medication", "Metformin")]),
        )
        .unwrap();
        let base = f.record.clone();
        // More entries, written on a copy: the nurse's readings (valid), and beyond.
        let mut more = f.clone();
        for i in 0..4 {
            more.create(&nurse, Category::VitalSigns, bp(130 + i, 85))
                .unwrap();
        }
        more.create(&g, Category::Problems, text_body(&[("problem", "CKD")]))
            .unwrap();
        let pool: Vec<Verified> = more.record.entries().collect();
        let streams = more.record.streams();
        World {
            record: base,
            keys: vec![g, pharmacist, nurse, stranger],
            pool,
            streams,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Item {
    Known(u8),
    Flipped(u8, u16, u8),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Digests {
        who: u8,
        streams: Vec<(u8, [u8; 32])>,
    },
    Pull {
        who: u8,
        frontier: Vec<(u8, u8, u16)>,
        limit: u32,
    },
    Push {
        who: u8,
        items: Vec<Item>,
        host: bool,
    },
    Host {
        who: u8,
        pointer: Vec<u8>,
    },
    Release {
        who: u8,
    },
    AuditPull {
        who: u8,
        have: Vec<(u8, u64)>,
    },
    AuditPush {
        who: u8,
        events: Vec<Vec<u8>>,
    },
    Announce,
    /// The previous request again (a replay).
    Replay,
    /// A request whose proof names another connection.
    Stolen {
        who: u8,
    },
    /// Bytes off the wire.
    Raw(Vec<u8>),
}

fuzz_target!(|ops: Vec<Op>| {
    let w = world();
    let server = Server::new(b"server".to_vec(), HostPolicy::default());
    let mut store = MemStore::new(key(40, "host"));
    for e in w.record.entries() {
        store.write(e.clone()).unwrap();
    }
    let me = Peer {
        id: b"client".to_vec(),
        label: "peer client".into(),
    };
    let mut nonce = 0u128;
    let mut proof = |who: u8, peer: &[u8]| {
        nonce += 1;
        let k = &w.keys[who as usize % w.keys.len()];
        Proof::new(k, w.record.id(), peer, b"server", nonce.to_le_bytes(), NOW)
    };
    let mut last: Option<Request> = None;
    for op in ops.into_iter().take(64) {
        let req = match op {
            Op::Digests { who, streams } => Request::Digests {
                proof: proof(who, b"client"),
                digests: streams
                    .into_iter()
                    .take(32)
                    .map(|(s, d)| (w.streams[s as usize % w.streams.len()].clone(), d))
                    .collect(),
            },
            Op::Pull {
                who,
                frontier,
                limit,
            } => {
                let mut f = Frontier::new();
                for (s, a, seq) in frontier.into_iter().take(32) {
                    f.entry(w.streams[s as usize % w.streams.len()].clone())
                        .or_default()
                        .insert(w.keys[a as usize % w.keys.len()].actor(), u64::from(seq));
                }
                Request::Pull {
                    proof: proof(who, b"client"),
                    frontier: f,
                    limit,
                }
            }
            Op::Push { who, items, host } => Request::Push {
                proof: proof(who, b"client"),
                entries: items
                    .into_iter()
                    .take(32)
                    .map(|i| match i {
                        Item::Known(n) => ByteBuf::from(
                            w.pool[n as usize % w.pool.len()].signed().bytes().to_vec(),
                        ),
                        Item::Flipped(n, at, x) => {
                            let mut b = w.pool[n as usize % w.pool.len()].signed().bytes().to_vec();
                            let at = at as usize % b.len();
                            b[at] ^= x.max(1);
                            ByteBuf::from(b)
                        }
                        Item::Bytes(b) => ByteBuf::from(b),
                    })
                    .collect(),
                invitation: None,
                host,
            },
            Op::Host { who, pointer } => Request::Host {
                proof: proof(who, b"client"),
                pointer: ByteBuf::from(pointer),
            },
            Op::Release { who } => Request::Release {
                proof: proof(who, b"client"),
            },
            Op::AuditPull { who, have } => Request::AuditPull {
                proof: proof(who, b"client"),
                have: have
                    .into_iter()
                    .take(16)
                    .map(|(a, s)| (w.keys[a as usize % w.keys.len()].actor(), s))
                    .collect(),
            },
            Op::AuditPush { who, events } => Request::AuditPush {
                proof: proof(who, b"client"),
                events: events.into_iter().take(16).map(ByteBuf::from).collect(),
            },
            Op::Announce => Request::Announce {
                record: w.record.id(),
            },
            Op::Replay => match &last {
                Some(r) => r.clone(),
                None => continue,
            },
            Op::Stolen { who } => Request::Digests {
                proof: proof(who, b"somebody else"),
                digests: Vec::new(),
            },
            Op::Raw(bytes) => match decode::<Request>(&bytes) {
                Ok(r) => r,
                Err(_) => continue,
            },
        };
        last = Some(req.clone());
        // Through the wire encoding, as a peer's request arrives.
        let req: Request = decode(&encode(&req)).expect("an encoded request decodes");
        let asker = match &req {
            Request::Digests { proof, .. }
            | Request::Pull { proof, .. }
            | Request::Push { proof, .. }
            | Request::AuditPull { proof, .. } => Some(proof.actor),
            _ => None,
        };
        let audited_before = audited(&store);
        let (resp, _) = server.handle(&mut store, &me, req, NOW);
        let record = store.record(&w.record.id());
        let viewer = asker.and_then(|a| record.map(|r| r.viewer(&a, NOW)));
        match &resp {
            Response::Entries { entries, .. } => {
                let (r, v) = (record.unwrap(), viewer.as_ref().unwrap());
                for b in entries {
                    let e = cophr_protocol::SignedEntry::decode(b).unwrap();
                    assert!(
                        r.can_see(v, &e.id()),
                        "served an entry the actor may not see"
                    );
                }
                assert!(
                    audited(&store) >= audited_before + entries.len(),
                    "served but not audited"
                );
            }
            Response::Differ { .. } | Response::AuditEvents { .. } => {
                assert!(
                    viewer.is_some_and(|v| v.has_access()),
                    "answered a peer without access"
                );
            }
            Response::Refused { code, .. } => {
                if viewer.as_ref().is_some_and(|v| !v.has_access()) {
                    assert!(
                        matches!(
                            code,
                            Refusal::NoAccess | Refusal::BadProof | Refusal::NotAdmitted
                        ),
                        "a peer without access learned {code:?}"
                    );
                }
            }
            _ => {}
        }
        // Nothing invalid is held: every entry re-applies through the one gate, in order.
        if let Some(r) = store.record(&w.record.id()) {
            let mut again = Record::new(r.id());
            for e in r.entries() {
                again.apply(e.clone()).expect("a held entry re-applies");
            }
        }
    }
});

fn audited(store: &MemStore) -> usize {
    store
        .audit_events(&world().record.id())
        .iter()
        .map(|a| a.event.entries.len())
        .sum()
}
