//! cophr node.
pub mod log;
pub mod store;
pub mod net;
