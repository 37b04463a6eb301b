//! Shared inputs of smap's benchmarks: simulated clusters held in memory, and the
//! soak of the live path.

pub mod heap;
pub mod soak;

use smap_replay::simulate::{simulate, Scenario, SimOptions};
use smap_replay::{ConnFacts, Event, MergedEvents, Recording};

/// Simulates a generated cluster of `services` services with pod churn and about
/// `events` connection events into a temporary directory, and opens it.
fn simulated_recording(services: u32, events: u64) -> (tempfile::TempDir, Recording) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let out = dir.path().join("rec");
    // About four events per connection, as `smap simulate --events` counts them.
    let connections = events.div_ceil(4).max(1);
    let options = SimOptions { connections, churn_per_1000: 1.0, seed: 42, ..SimOptions::default() };
    simulate(&Scenario::generated(services, 3, 10), &options, &out).unwrap_or_else(|e| panic!("simulate: {e}"));
    let recording = Recording::open(&out).unwrap_or_else(|e| panic!("open: {e}"));
    (dir, recording)
}

/// Events of a generated cluster of `services` services, `connections` connections
/// (about four events each) with pod churn, read back into memory in time order.
pub fn simulated_events(services: u32, connections: u64) -> Vec<Event> {
    let (_dir, recording) = simulated_recording(services, connections * 4);
    MergedEvents::new(&[recording], Vec::new())
        .unwrap_or_else(|e| panic!("merge: {e}"))
        .map(|e| e.unwrap_or_else(|e| panic!("read: {e}")))
        .collect()
}

/// About `events` connection events of a generated cluster, with its Kubernetes
/// objects, as the engine folds them in `smap build` (connection events reduced to
/// their facts), in time order.
pub fn simulated_facts(services: u32, events: u64) -> Vec<Event<ConnFacts>> {
    let (_dir, recording) = simulated_recording(services, events);
    MergedEvents::facts(&[recording], Vec::new())
        .unwrap_or_else(|e| panic!("merge: {e}"))
        .map(|e| e.unwrap_or_else(|e| panic!("read: {e}")))
        .collect()
}
