//! Integration tests of the engine: simulated clusters against their ground truth; and
//! of the graph analyses on fixture topologies (`fixtures/topologies/`), with insta
//! snapshots of what they find.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity, clippy::too_many_arguments, missing_docs)]

mod analysis;
mod events;
mod resolution;
mod truth;

/// A fresh resourceVersion: the engine applies each version of an object once.
pub fn next_resource_version() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string()
}
