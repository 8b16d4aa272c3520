//! cophr node.
pub mod http;
pub mod log;
pub mod net;
pub mod session;
pub mod store;
