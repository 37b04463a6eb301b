//! Integration tests of the engine: simulated clusters against their ground truth.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod truth;
