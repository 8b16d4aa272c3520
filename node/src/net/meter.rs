//! Counting what a client sends and receives, for the sync benchmark: requests (each is
//! one round trip) and the encoded size of every request and response, with the bytes of
//! the signed entries they carry counted apart, so the cost *beyond the entries* is known.

use std::sync::atomic::{AtomicU64, Ordering};

use cophr_protocol::sync::{encode, Request, Response};

/// Traffic counters, shared by the handles made with [`super::NodeHandle::metered`].
#[derive(Debug, Default)]
pub struct Meter {
    requests: AtomicU64,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
    entry_bytes: AtomicU64,
}

/// A snapshot of a [`Meter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    /// Requests answered (round trips).
    pub requests: u64,
    /// Encoded bytes of the requests (canonical CBOR, as the codec sends them).
    pub request_bytes: u64,
    /// Encoded bytes of the responses.
    pub response_bytes: u64,
    /// Bytes of the signed entries carried in either direction (pushes and pulls).
    pub entry_bytes: u64,
}

impl Traffic {
    /// Bytes beyond the entries themselves: framing, proofs, digests, frontiers.
    pub fn overhead(&self) -> u64 {
        (self.request_bytes + self.response_bytes).saturating_sub(self.entry_bytes)
    }

    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            requests: self.requests - earlier.requests,
            request_bytes: self.request_bytes - earlier.request_bytes,
            response_bytes: self.response_bytes - earlier.response_bytes,
            entry_bytes: self.entry_bytes - earlier.entry_bytes,
        }
    }
}

fn entry_bytes(entries: &[serde_bytes::ByteBuf]) -> u64 {
    entries.iter().map(|e| e.len() as u64).sum()
}

impl Meter {
    /// The counts so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.requests.load(Ordering::Relaxed),
            request_bytes: self.request_bytes.load(Ordering::Relaxed),
            response_bytes: self.response_bytes.load(Ordering::Relaxed),
            entry_bytes: self.entry_bytes.load(Ordering::Relaxed),
        }
    }

    /// Counts a request about to be sent.
    pub(crate) fn request(&self, r: &Request) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.request_bytes
            .fetch_add(encode(r).len() as u64, Ordering::Relaxed);
        if let Request::Push { entries, .. } = r {
            self.entry_bytes
                .fetch_add(entry_bytes(entries), Ordering::Relaxed);
        }
    }

    /// Counts a response received.
    pub(crate) fn response(&self, r: &Response) {
        self.response_bytes
            .fetch_add(encode(r).len() as u64, Ordering::Relaxed);
        if let Response::Entries { entries, .. } = r {
            self.entry_bytes
                .fetch_add(entry_bytes(entries), Ordering::Relaxed);
        }
    }
}
