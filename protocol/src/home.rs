//! Where a record lives: a statement signed by the patient naming the home host's peer id
//! and addresses. Discovery (a DHT) stores it under [`dht_key`]; whoever fetches it checks
//! the patient's signature, and the highest `seq` wins, so a move is followed everywhere.

use serde::{Deserialize, Serialize};

use crate::entry::{from_cbor_canonical, to_cbor, EntryError, Timestamp};
use crate::ids::{RecordId, Sig};
use crate::keys::{self, Domain, KeyError, Keypair};

/// Most addresses a pointer may list.
pub const MAX_ADDRS: usize = 16;
/// Longest address.
pub const MAX_ADDR_LEN: usize = 256;

/// Where a record lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomePointer {
    /// The record (its patient signs the pointer).
    pub record: RecordId,
    /// The home host's peer id (bytes).
    #[serde(with = "serde_bytes")]
    pub host: Vec<u8>,
    /// Addresses the host listens on (multiaddr text, without the peer id).
    pub addrs: Vec<String>,
    /// Increases with every move; the highest wins.
    pub seq: u64,
    /// When it was signed.
    pub time: Timestamp,
    /// The heads of the record that the host confirmed holding whole before the pointer
    /// was signed (at most [`MAX_HEADS`]; empty when there were more). A former host that
    /// finds a newer pointer naming another host deletes its copy by itself only when
    /// everything it holds is in the causal past of these heads, so nothing is lost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heads: Vec<crate::ids::EntryId>,
}

/// Most heads a pointer carries.
pub const MAX_HEADS: usize = 64;

#[derive(Serialize, Deserialize)]
struct Wire {
    pointer: HomePointer,
    sig: Sig,
}

/// Why a pointer is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PointerError {
    /// Not decodable.
    #[error(transparent)]
    Encoding(#[from] EntryError),
    /// Not signed by the record's patient.
    #[error("home pointer is not signed by the patient: {0}")]
    Key(#[from] KeyError),
    /// Too many or too long addresses.
    #[error("home pointer lists too many or too long addresses")]
    Addresses,
    /// For another record than the one looked up.
    #[error("home pointer is for another record")]
    WrongRecord,
}

/// A pointer with the patient's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPointer {
    /// The statement.
    pub pointer: HomePointer,
    /// The patient's signature.
    pub sig: Sig,
}

impl HomePointer {
    /// Signs the pointer; `patient` must be the record's patient.
    pub fn sign(self, patient: &Keypair) -> SignedPointer {
        let sig = patient.sign(Domain::Pointer, &to_cbor(&self));
        SignedPointer { pointer: self, sig }
    }
}

impl SignedPointer {
    /// The encoding stored in the DHT.
    pub fn encode(&self) -> Vec<u8> {
        to_cbor(&Wire {
            pointer: self.pointer.clone(),
            sig: self.sig,
        })
    }

    /// Decodes and checks a pointer fetched for `record`.
    pub fn decode(bytes: &[u8], record: &RecordId) -> Result<Self, PointerError> {
        if bytes.len() > 16 * 1024 {
            return Err(EntryError::TooLarge(bytes.len()).into());
        }
        let w: Wire = from_cbor_canonical(bytes)?;
        if w.pointer.record != *record {
            return Err(PointerError::WrongRecord);
        }
        if w.pointer.addrs.len() > MAX_ADDRS
            || w.pointer.addrs.iter().any(|a| a.len() > MAX_ADDR_LEN)
            || w.pointer.host.len() > 128
            || w.pointer.heads.len() > MAX_HEADS
        {
            return Err(PointerError::Addresses);
        }
        keys::verify(
            &w.pointer.record,
            Domain::Pointer,
            &to_cbor(&w.pointer),
            &w.sig,
        )?;
        Ok(SignedPointer {
            pointer: w.pointer,
            sig: w.sig,
        })
    }

    /// Whether `self` supersedes `other` (higher sequence, then later time).
    pub fn newer_than(&self, other: &SignedPointer) -> bool {
        (self.pointer.seq, self.pointer.time) > (other.pointer.seq, other.pointer.time)
    }
}

/// Whether a former host (transport identity `me`) that holds `held` may delete its copy on
/// finding `newer`, a pointer signed after the one it was given: only when it names another
/// host and everything held here is in the causal past of the heads that host confirmed
/// holding. Otherwise the copy stays until the patient's release arrives.
pub fn may_release(held: &crate::record::Record, newer: &HomePointer, me: &[u8]) -> bool {
    newer.host != me && !newer.heads.is_empty() && held.at_heads(&newer.heads).len() == held.len()
}

/// The DHT key under which a record's home pointer is stored.
pub fn dht_key(record: &RecordId) -> Vec<u8> {
    let mut k = b"/cophr/home/".to_vec();
    k.extend_from_slice(record.as_bytes());
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::key;

    #[test]
    fn a_former_host_may_release_only_what_the_new_host_confirmed_holding() {
        use crate::testkit::{bp, Fixture};
        let mut f = Fixture::new(2, "George");
        let g = f.patient.clone();
        f.create(&g, crate::Category::VitalSigns, bp(120, 80))
            .unwrap();
        let confirmed = f.record.heads();
        let p = HomePointer {
            record: g.actor(),
            host: b"new".to_vec(),
            addrs: Vec::new(),
            seq: 2,
            time: 5,
            heads: confirmed.clone(),
        };
        assert!(may_release(&f.record, &p, b"old"));
        assert!(!may_release(&f.record, &p, b"new"), "not the host it names");
        let no_heads = HomePointer {
            heads: Vec::new(),
            ..p.clone()
        };
        assert!(!may_release(&f.record, &no_heads, b"old"));
        // An entry the old host holds beyond what the new host confirmed: keep the copy.
        f.create(&g, crate::Category::VitalSigns, bp(121, 80))
            .unwrap();
        assert!(!may_release(&f.record, &p, b"old"));
    }

    #[test]
    fn pointers_are_checked_against_the_patient() {
        let george = key(1, "George");
        let mallory = key(1, "Mallory");
        let p = HomePointer {
            record: george.actor(),
            host: vec![1, 2, 3],
            addrs: vec!["/ip4/127.0.0.1/tcp/4001".into()],
            seq: 1,
            time: 5,
            heads: Vec::new(),
        };
        let good = p.clone().sign(&george);
        let bytes = good.encode();
        assert_eq!(
            SignedPointer::decode(&bytes, &george.actor()),
            Ok(good.clone())
        );
        assert_eq!(
            SignedPointer::decode(&bytes, &mallory.actor()),
            Err(PointerError::WrongRecord)
        );
        let forged = p.clone().sign(&mallory).encode();
        assert!(matches!(
            SignedPointer::decode(&forged, &george.actor()),
            Err(PointerError::Key(_))
        ));
        let moved = HomePointer { seq: 2, ..p }.sign(&george);
        assert!(moved.newer_than(&good) && !good.newer_than(&moved));
    }
}
