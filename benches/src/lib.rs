//! Shared inputs of smap's benchmarks: simulated clusters held in memory.

use smap_replay::simulate::{simulate, Scenario, SimOptions};
use smap_replay::{Event, MergedEvents, Recording};

/// Events of a generated cluster of `services` services, `connections` connections
/// (about four events each) with pod churn, read back into memory in time order.
pub fn simulated_events(services: u32, connections: u64) -> Vec<Event> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temporary directory: {e}"));
    let out = dir.path().join("rec");
    let options = SimOptions { connections, churn_per_1000: 1.0, seed: 42, ..SimOptions::default() };
    simulate(&Scenario::generated(services, 3, 10), &options, &out).unwrap_or_else(|e| panic!("simulate: {e}"));
    let recording = Recording::open(&out).unwrap_or_else(|e| panic!("open: {e}"));
    MergedEvents::new(&[recording], Vec::new())
        .unwrap_or_else(|e| panic!("merge: {e}"))
        .map(|e| e.unwrap_or_else(|e| panic!("read: {e}")))
        .collect()
}
