//! cophr node.
pub mod ais;
pub mod dicom;
pub mod http;
pub mod net;
pub mod notify;
pub mod session;
pub mod store;
