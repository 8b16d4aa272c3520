//! cophr node.
pub mod log;
pub mod net;
pub mod store;
