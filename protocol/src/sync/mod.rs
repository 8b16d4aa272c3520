//! Sync: what two nodes say to replicate a record, and the pure logic on each side.
//!
//! A replica's holdings are described exactly by its *frontier*: for each (stream, author)
//! chain, the highest sequence number held (entries arrive in causal order, so a chain is
//! always held as a prefix). The exchange:
//!
//! 1. The requester sends a digest per stream it holds ([`Request::Digests`]); the server
//!    answers which streams *it may show the requester* differ ([`Response::Differ`]). An
//!    up-to-date check is this one round trip.
//! 2. The requester sends its frontier for those streams ([`Request::Pull`]); the server
//!    answers with the entries the requester lacks and may see, in causal order, in bounded
//!    batches ([`Response::Entries`]), with its own frontier so the requester can push back
//!    what the server lacks ([`Request::Push`]).
//!
//! The cost is linear in the number of chains plus the difference, never in the record's
//! size. The server never names a stream, chain, id or count the requester may not see:
//! everything it computes is restricted to [`Record::can_see`](crate::record::Record::can_see).
//!
//! Every request carries a [`Proof`] that the requester holds the grantee's key, bound to
//! both peers of this connection and a fresh nonce; [`NonceCache`] refuses replays.
//!
//! The module is sans-IO, in the manner of `quinn-proto`: [`client::ClientSession`] is one
//! sync as a state machine (`poll_request` / `handle_response` / `poll_event`, time and
//! randomness passed in) and [`server::Server`] answers one request against any
//! [`server::SyncStore`], returning the response and its effects as values. The node drives
//! both over libp2p; the simulation drives the very same code over its virtual network.

use std::collections::BTreeMap;

use crate::ids::ActorId;
use crate::record::Stream;

mod backups;
pub mod client;
mod diff;
pub mod mem;
mod message;
mod proof;
pub mod server;

pub use backups::{BACKUP_GETS_PER_WINDOW, BACKUP_GET_PEERS, BACKUP_GET_WINDOW_MS};
pub use diff::BeyondBytes;
pub use message::{decode, encode, Refusal, Request, Response, MAX_INVITATION_LEN};
pub use proof::{NonceCache, Proof, ProofError};

/// The request-response protocol id (versioned).
pub const PROTOCOL: &str = "/cophr/sync/1";
/// Largest encoded message.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// Most entries in one response or push.
pub const MAX_BATCH: usize = 1024;
/// Most bytes of entries in one response or push. A batch always carries at least one
/// entry (an entry is at most 8 MiB), so with this bound every message stays well below
/// [`MAX_MESSAGE_BYTES`] however large the record's entries are.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Most chains a frontier may list.
pub const MAX_CHAINS: usize = 16 * 1024;
/// The transport identity every caller over HTTP (`POST /sync` on a node's HTTP server)
/// has: a browser has no libp2p peer id, so its proofs name this as the client. It is not
/// the encoding of any libp2p peer id, so a proof made for HTTP is refused over libp2p and
/// the other way round; the nonce cache refuses a replay either way.
pub const HTTP_CLIENT: &[u8] = b"/cophr/http/1";
/// What a browser does with a document's sealed bytes over HTTP (a node's
/// `/sync/blobs/{hash}`): sync messages carry a document only in verified slices, which a
/// page has no tree to check, so a browser moves a document's sealed bytes whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOp {
    /// The record's patient hands the host a document's sealed bytes (before the entry
    /// naming them): [`server::Server::blob_put`].
    Put,
    /// A reader fetches them: [`server::Server::blob_get`].
    Get,
}

/// The client identity a browser's proof names for one transfer of a document's sealed
/// bytes over HTTP: [`HTTP_CLIENT`], the operation and the document (hash and stored size).
/// A proof made for one upload or download is good for nothing else (not for a sync
/// request, another document or the other direction; like [`HTTP_CLIENT`] it encodes no
/// libp2p peer id), and the nonce cache refuses its replay.
pub fn http_blob_client(op: BlobOp, doc: &crate::blob::BlobRef) -> Vec<u8> {
    let op = match op {
        BlobOp::Put => "put",
        BlobOp::Get => "get",
    };
    let mut id = HTTP_CLIENT.to_vec();
    id.extend_from_slice(format!(" blob {op} {} {}", doc.hash, doc.size).as_bytes());
    id
}

/// How far a proof's time may be from the server's clock.
pub const PROOF_WINDOW_MS: u64 = 5 * 60 * 1000;

/// Per stream, per author: the highest sequence number held.
pub type Frontier = BTreeMap<Stream, BTreeMap<ActorId, u64>>;

/// A stream digest: BLAKE3 over its chains' (author, highest sequence) pairs.
pub type Digest = [u8; 32];

#[cfg(test)]
mod tests;
