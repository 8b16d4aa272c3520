//! cophr's protocol core: identities, entries, canonical CBOR, signing, categories and their
//! schemas, capability rules, and folding a record into its current or past state.
//!
//! Nothing here does I/O: time and randomness come in as arguments, so every function is
//! deterministic and testable on its own. The node crate drives this crate; it does not
//! re-decide any rule made here.

pub mod access;
pub mod audit;
pub mod backup;
pub mod blob;
pub mod care;
pub mod category;
pub mod entry;
pub mod export;
pub mod fhir;
pub mod fold;
pub mod home;
pub mod ids;
pub mod invite;
pub mod keys;
pub mod openehr;
pub mod org;
pub mod record;
pub mod recovery;
pub mod schema;
pub mod seal;
pub mod share;
pub mod sync;
pub mod testkit;
pub mod trust;
pub mod value;

pub use access::{Grant, GrantStatus, Level, Scope};
pub use category::Category;
pub use entry::{Entry, Payload, Profile, SignedEntry, Timestamp, Verified};
pub use ids::{ActorId, EntryId, RecordId, Sig};
pub use keys::Keypair;
pub use value::Value;
