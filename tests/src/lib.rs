//! Integration tests live in `tests/tests/`.

pub mod practice;
