//! Helpers for the admission webhook integration tests: a test PKI and HTTPS client, the real
//! TLS server running in front of the shared fake API, and AdmissionReview builders. Include
//! with `mod support; mod support_webhook;` from a file in `tests/`.

// Each test binary uses a different part of the helpers.
#![allow(dead_code)]

pub mod harness;
pub mod https;
pub mod reviews;
