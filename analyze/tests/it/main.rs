//! Integration tests of the engine: simulated clusters against their ground truth; and
//! of the graph analyses on fixture topologies (`fixtures/topologies/`), with insta
//! snapshots of what they find.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity, clippy::too_many_arguments, missing_docs)]

mod analysis;
mod events;
mod resolution;
mod truth;
