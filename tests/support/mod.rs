//! Shared helpers for integration tests. Include with `mod support;` from a file in `tests/`.

// Each test binary uses a different part of the helpers.
#![allow(dead_code)]

pub mod fake_api;
pub mod raw_http;
