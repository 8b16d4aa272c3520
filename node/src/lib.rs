//! cophr node.
pub mod http;
pub mod net;
pub mod session;
pub mod store;
