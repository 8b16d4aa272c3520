//! The node's store, as the command uses it.

pub use cophr_node::store::log::LogError;
pub use cophr_node::store::{Store, StoreError};
