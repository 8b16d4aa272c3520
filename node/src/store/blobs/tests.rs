//! Tests of the blob store.
