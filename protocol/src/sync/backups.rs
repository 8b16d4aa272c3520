//! A host keeps people's encrypted key backups ([`crate::backup`]): one per actor, the
//! latest put by the actor's own key winning, handed to anyone who asks by actor id.
//!
//! Threat model: the host, and anyone who asks it, can have the ciphertext; security rests
//! on the passphrase and argon2id's cost per guess (the format bounds its parameters from
//! below). Putting needs a proof of possession of the actor's key, so nobody else can
//! replace or delete a person's backup; the proof must name a record held here that the
//! actor may see, so a host keeps backups only for people whose records it serves. Getting
//! needs no proof (whoever asks has lost the key) and is rate limited per peer, so the
//! host is not a free store of ciphertexts to fetch in bulk.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Refusal, Response};
use crate::backup::{KeyBackup, MAX_BACKUP_BYTES};
use crate::entry::Timestamp;
use crate::ids::ActorId;

/// Backup gets one peer may make per window.
pub const BACKUP_GETS_PER_WINDOW: u32 = 5;
/// The window of [`BACKUP_GETS_PER_WINDOW`].
pub const BACKUP_GET_WINDOW_MS: u64 = 10 * 60 * 1000;
/// Most peers whose gets are counted at once; when all are in their window, further
/// peers are refused until one's window ends.
pub const BACKUP_GET_PEERS: usize = 10_000;

/// Counts backup gets per peer, bounded in memory.
#[derive(Debug, Default)]
pub(super) struct GetLimiter {
    peers: Mutex<HashMap<Vec<u8>, (Timestamp, u32)>>,
}

impl GetLimiter {
    /// Counts one get by `peer` at `now`: refused when over the limit.
    pub(super) fn allow(&self, peer: &[u8], now: Timestamp) -> Result<(), Response> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = |start: Timestamp| now.saturating_sub(start) < BACKUP_GET_WINDOW_MS;
        if !peers.contains_key(peer) && peers.len() >= BACKUP_GET_PEERS {
            peers.retain(|_, (start, _)| fresh(*start));
            if peers.len() >= BACKUP_GET_PEERS {
                return Err(Response::refused(Refusal::RateLimited));
            }
        }
        let (start, count) = peers.entry(peer.to_vec()).or_insert((now, 0));
        if !fresh(*start) {
            *start = now;
            *count = 0;
        }
        if *count >= BACKUP_GETS_PER_WINDOW {
            return Err(Response::refused_because(
                Refusal::RateLimited,
                "too many key backup requests: try again later",
            ));
        }
        *count += 1;
        Ok(())
    }
}

/// Checks a backup put by `actor`: bounded, well-formed (its parameters within bounds),
/// and the actor's own.
pub(super) fn check_put(actor: &ActorId, backup: &[u8]) -> Result<KeyBackup, Response> {
    if backup.len() > MAX_BACKUP_BYTES {
        return Err(Response::refused_because(
            Refusal::Malformed,
            format!("key backup larger than {MAX_BACKUP_BYTES} bytes"),
        ));
    }
    let b = KeyBackup::decode(backup)
        .map_err(|e| Response::refused_because(Refusal::Malformed, e.to_string()))?;
    if b.actor() != *actor {
        return Err(Response::refused_because(
            Refusal::NoAccess,
            "a key backup is kept only for its own actor",
        ));
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::KdfParams;
    use crate::keys::Keypair;
    use crate::sync::mem::MemStore;
    use crate::sync::server::{HostPolicy, Peer, Server, SyncStore};
    use crate::sync::{Proof, Request};
    use crate::testkit::{key, Fixture};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const PASS: &str = "a long enough passphrase";

    struct Host {
        server: Server,
        store: MemStore,
        george: Fixture,
        now: Timestamp,
        nonce: u8,
    }

    impl Host {
        fn new() -> Host {
            let george = Fixture::new(30, "George");
            let mut store = MemStore::new(key(30, "Host"));
            for v in george.record.entries() {
                store.write(v.clone()).expect("genesis");
            }
            Host {
                server: Server::new(b"host".to_vec(), HostPolicy::default()),
                store,
                now: george.now,
                george,
                nonce: 0,
            }
        }

        fn peer(id: &[u8]) -> Peer {
            Peer {
                id: id.to_vec(),
                label: String::from_utf8_lossy(id).into_owned(),
            }
        }

        fn put(&mut self, as_key: &Keypair, record: ActorId, backup: &[u8]) -> Response {
            self.nonce += 1;
            let proof = Proof::new(
                as_key,
                record,
                b"client",
                b"host",
                [self.nonce; 16],
                self.now,
            );
            let req = Request::BackupPut {
                proof,
                backup: serde_bytes::ByteBuf::from(backup.to_vec()),
            };
            self.server
                .handle(&mut self.store, &Self::peer(b"client"), req, self.now)
                .0
        }

        fn get(&mut self, peer: &[u8], actor: ActorId) -> Response {
            self.server
                .handle(
                    &mut self.store,
                    &Self::peer(peer),
                    Request::BackupGet { actor },
                    self.now,
                )
                .0
        }
    }

    fn seal(k: &Keypair, seed: u64) -> KeyBackup {
        KeyBackup::seal(
            k,
            None,
            PASS,
            KdfParams::MIN,
            &mut ChaCha20Rng::seed_from_u64(seed),
        )
        .expect("sealed")
    }

    fn refusal(r: &Response) -> Option<Refusal> {
        match r {
            Response::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    #[test]
    fn the_actor_puts_the_latest_backup_and_anyone_gets_it() {
        let mut h = Host::new();
        let g = h.george.patient.clone();
        let first = seal(&g, 1);
        let second = seal(&g, 2);
        assert!(matches!(h.put(&g, g.actor(), first.bytes()), Response::Ack));
        assert!(matches!(
            h.put(&g, g.actor(), second.bytes()),
            Response::Ack
        ));
        match h.get(b"someone", g.actor()) {
            Response::Backup { backup: Some(b) } => {
                assert_eq!(b.as_slice(), second.bytes());
                let opened = KeyBackup::decode(&b).unwrap().open(PASS).unwrap();
                assert_eq!(opened.key.actor(), g.actor());
            }
            r => panic!("{r:?}"),
        }
        let nobody = key(31, "Nobody").actor();
        assert!(matches!(
            h.get(b"someone", nobody),
            Response::Backup { backup: None }
        ));
    }

    #[test]
    fn nobody_else_replaces_a_backup() {
        let mut h = Host::new();
        let g = h.george.patient.clone();
        let mallory = key(32, "Mallory");
        assert!(matches!(
            h.put(&g, g.actor(), seal(&g, 3).bytes()),
            Response::Ack
        ));
        // Mallory proves her own key but sends a backup naming George: refused.
        let forged = seal(&mallory, 4);
        let r = h.put(&mallory, g.actor(), seal(&g, 5).bytes());
        assert_eq!(refusal(&r), Some(Refusal::NoAccess), "{r:?}");
        // Her own backup, naming a record she has no access to: refused too (a host keeps
        // backups only for people whose records it serves).
        let r = h.put(&mallory, g.actor(), forged.bytes());
        assert_eq!(refusal(&r), Some(Refusal::NoAccess), "{r:?}");
        let r = h.put(&mallory, mallory.actor(), forged.bytes());
        assert_eq!(refusal(&r), Some(Refusal::NoAccess), "{r:?}");
        assert!(h.store.backup(&mallory.actor()).unwrap().is_none());
        // A proof signed by George but sent from another connection is refused.
        h.nonce += 1;
        let proof = Proof::new(&g, g.actor(), b"elsewhere", b"host", [h.nonce; 16], h.now);
        let req = Request::BackupPut {
            proof,
            backup: serde_bytes::ByteBuf::from(forged.bytes().to_vec()),
        };
        let r = h
            .server
            .handle(&mut h.store, &Host::peer(b"client"), req, h.now)
            .0;
        assert_eq!(refusal(&r), Some(Refusal::BadProof), "{r:?}");
    }

    #[test]
    fn malformed_or_oversized_backups_are_refused() {
        let mut h = Host::new();
        let g = h.george.patient.clone();
        for bad in [vec![], vec![0xff; 64], vec![0; MAX_BACKUP_BYTES + 1]] {
            let r = h.put(&g, g.actor(), &bad);
            assert_eq!(refusal(&r), Some(Refusal::Malformed), "{r:?}");
        }
        assert!(h.store.backup(&g.actor()).unwrap().is_none());
    }

    #[test]
    fn gets_are_rate_limited_per_peer() {
        let mut h = Host::new();
        let g = h.george.patient.actor();
        for _ in 0..BACKUP_GETS_PER_WINDOW {
            assert!(matches!(h.get(b"guesser", g), Response::Backup { .. }));
        }
        let r = h.get(b"guesser", g);
        assert_eq!(refusal(&r), Some(Refusal::RateLimited), "{r:?}");
        assert!(matches!(h.get(b"other", g), Response::Backup { .. }));
        h.now += BACKUP_GET_WINDOW_MS;
        assert!(matches!(h.get(b"guesser", g), Response::Backup { .. }));
    }

    #[test]
    fn gets_are_limited_per_peer_and_window() {
        let l = GetLimiter::default();
        for _ in 0..BACKUP_GETS_PER_WINDOW {
            assert!(l.allow(b"a", 1000).is_ok());
        }
        assert!(l.allow(b"a", 1001).is_err());
        assert!(l.allow(b"b", 1001).is_ok());
        assert!(l.allow(b"a", 1000 + BACKUP_GET_WINDOW_MS).is_ok());
    }

    #[test]
    fn the_peer_table_is_bounded() {
        let l = GetLimiter::default();
        for i in 0..BACKUP_GET_PEERS {
            assert!(l.allow(&(i as u64).to_be_bytes(), 0).is_ok());
        }
        assert!(l.allow(b"one more", 1).is_err());
        assert!(l.allow(b"one more", BACKUP_GET_WINDOW_MS).is_ok());
        assert!(l.peers.lock().unwrap().len() <= BACKUP_GET_PEERS);
    }
}
