//! cophr node.
