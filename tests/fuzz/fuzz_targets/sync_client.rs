//! Structure-aware: a client sync session fed arbitrary answers (well-formed, wrong,
//! hostile, out of order) and failures. Never panics; the replica holds only entries that
//! applied through the one gate; a finished session asks nothing more.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use cophr_protocol::record::{Record, Stream};
use cophr_protocol::sync::client::{
    decode_verify, ClientEvent, ClientSession, SessionConfig, SyncError,
};
use cophr_protocol::sync::mem::MemStore;
use cophr_protocol::sync::server::SyncStore;
use cophr_protocol::sync::{decode, Frontier, Refusal, Response};
use cophr_protocol::testkit::{bp, key, text_body, Fixture};
use cophr_protocol::{Category, EntryId, Keypair, Verified};
use libfuzzer_sys::fuzz_target;
use serde_bytes::ByteBuf;

struct World {
    patient: Keypair,
    record: Record,
    pool: Vec<Verified>,
    streams: Vec<Stream>,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let mut f = Fixture::new(41, "George");
        let g = f.patient.clone();
        for i in 0..8 {
            f.create(&g, Category::VitalSigns, bp(120 + i, 80)).unwrap();
        }
        f.create(&g, Category::Problems, text_body(&[("problem", "CKD")]))
            .unwrap();
        let pool: Vec<Verified> = f.record.entries().collect();
        World {
            patient: g,
            streams: f.record.streams(),
            record: f.record,
            pool,
        }
    })
}

#[derive(Arbitrary, Debug)]
enum Answer {
    Differ(Vec<u8>),
    Entries {
        picks: Vec<u8>,
        flip: Option<(u8, u16)>,
        more: bool,
        frontier: Vec<(u8, u16)>,
    },
    Pushed {
        accepted: u8,
        rejected: u8,
    },
    AuditEvents(Vec<Vec<u8>>),
    Ack,
    Refused(u8),
    Failure,
    Raw(Vec<u8>),
}

fuzz_target!(|input: (bool, bool, Vec<Answer>)| {
    let (push, held, answers) = input;
    let w = world();
    let mut mine = MemStore::new(key(41, "laptop"));
    if held {
        for e in w.pool.iter().take(3) {
            mine.write(e.clone()).unwrap();
        }
    }
    let mut cfg = SessionConfig::new(w.record.id(), b"client".to_vec(), b"server".to_vec());
    cfg.push = push;
    let mut s = ClientSession::new(w.patient.clone(), cfg);
    let mut done = false;
    let mut nonce = 0u128;
    for a in answers.into_iter().take(64) {
        nonce += 1;
        let local = mine.record(&w.record.id());
        let asked = s.poll_request(1_700_000_100_000, nonce.to_le_bytes(), local);
        if done {
            assert!(asked.is_none(), "a finished session asked again");
        }
        let resp = match a {
            Answer::Failure => {
                s.handle_failure("lost");
                None
            }
            Answer::Differ(picks) => Some(Response::Differ {
                streams: picks
                    .into_iter()
                    .take(16)
                    .map(|p| w.streams[p as usize % w.streams.len()].clone())
                    .collect(),
            }),
            Answer::Entries {
                picks,
                flip,
                more,
                frontier,
            } => {
                let mut entries: Vec<ByteBuf> = picks
                    .into_iter()
                    .take(32)
                    .map(|p| {
                        ByteBuf::from(w.pool[p as usize % w.pool.len()].signed().bytes().to_vec())
                    })
                    .collect();
                if let (Some((i, at)), false) = (flip, entries.is_empty()) {
                    let i = i as usize % entries.len();
                    let at = at as usize % entries[i].len();
                    entries[i][at] ^= 0x40;
                }
                let mut f = Frontier::new();
                for (st, seq) in frontier.into_iter().take(8) {
                    f.entry(w.streams[st as usize % w.streams.len()].clone())
                        .or_default()
                        .insert(w.patient.actor(), u64::from(seq));
                }
                Some(Response::Entries {
                    entries,
                    more,
                    frontier: f,
                })
            }
            Answer::Pushed { accepted, rejected } => Some(Response::Pushed {
                accepted: (0..accepted % 8).map(|i| EntryId([i; 32])).collect(),
                rejected: (0..rejected % 8)
                    .map(|i| (EntryId([i; 32]), "no".into()))
                    .collect(),
            }),
            Answer::AuditEvents(evs) => Some(Response::AuditEvents {
                events: evs.into_iter().take(8).map(ByteBuf::from).collect(),
            }),
            Answer::Ack => Some(Response::Ack),
            Answer::Refused(c) => Some(Response::refused(
                [
                    Refusal::NoAccess,
                    Refusal::Busy,
                    Refusal::BadProof,
                    Refusal::NotAdmitted,
                ][c as usize % 4],
            )),
            Answer::Raw(b) => decode::<Response>(&b).ok(),
        };
        if let Some(r) = resp {
            s.handle_response(r, mine.record(&w.record.id()));
        }
        while let Some(ev) = s.poll_event() {
            match ev {
                ClientEvent::Received(entries) => {
                    let record = w.record.id();
                    let stored = decode_verify(&record, &entries).and_then(|v| {
                        mine.ingest(&record, v)
                            .map_err(|e| SyncError::BadEntries(e.to_string()))
                    });
                    s.handle_stored(stored, mine.record(&record));
                }
                ClientEvent::AuditReceived(events) => {
                    let kept = mine
                        .keep_audit(&events)
                        .map_err(|e| SyncError::Store(e.to_string()));
                    s.handle_audit_kept(kept);
                }
                ClientEvent::AuditPushed(_) => {}
                ClientEvent::Done(_) => done = true,
            }
        }
    }
    // Whatever happened, the replica holds only what applies through the one gate.
    if let Some(r) = mine.record(&w.record.id()) {
        let mut again = Record::new(r.id());
        for e in r.entries() {
            again.apply(e.clone()).expect("a held entry re-applies");
        }
    }
});
