//! The engine finds exactly the edges a simulation played, also under pod churn with
//! IP reuse across services, with both ends of every connection recorded.

use std::collections::BTreeMap;
use std::path::Path;

use smap_analyze::{build_topology, BuildInput, Config, Topology};
use smap_replay::simulate::{simulate, Scenario, SimOptions, SimOutcome, TruthEdge, TruthKey};
use smap_replay::Recording;

pub fn bookinfo() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios/bookinfo.yaml");
    Scenario::from_file(&path).unwrap()
}

pub fn build(dir: &Path, config: Config) -> Topology {
    let recording = Recording::open(dir).unwrap();
    build_topology(BuildInput { recordings: vec![recording], snapshot: vec![] }, config, &mut |_| {}).unwrap()
}

pub fn edges_of(topology: &Topology) -> BTreeMap<TruthKey, TruthEdge> {
    topology
        .edges
        .iter()
        .map(|e| {
            let protocol = if e.protocol == "udp" { "udp" } else { "tcp" };
            (
                (e.source.clone(), e.destination.clone(), protocol, e.port),
                TruthEdge {
                    connections: e.connections,
                    failed: e.failed,
                    bytes_sent: e.bytes_sent,
                    bytes_received: e.bytes_received,
                },
            )
        })
        .collect()
}

fn simulate_into(scenario: &Scenario, options: &SimOptions) -> (tempfile::TempDir, SimOutcome) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let outcome = simulate(scenario, options, &out).unwrap();
    (dir, outcome)
}

#[test]
fn bookinfo_edges_match_the_truth_exactly() {
    let (dir, outcome) = simulate_into(&bookinfo(), &SimOptions { connections: 3000, ..SimOptions::default() });
    let topology = build(&dir.path().join("rec"), Config::default());
    assert_eq!(edges_of(&topology), outcome.truth);
    assert_eq!(topology.stats.both_ends_merged, 3000, "every connection was seen from both ends");
}

#[test]
fn churn_with_ip_reuse_is_attributed_by_time() {
    let options = SimOptions { connections: 20_000, churn_per_1000: 5.0, seed: 7, ..SimOptions::default() };
    let (dir, outcome) = simulate_into(&bookinfo(), &options);
    assert!(outcome.churn_steps >= 90, "the simulation must exercise IP reuse");
    let topology = build(&dir.path().join("rec"), Config::default());
    assert_eq!(edges_of(&topology), outcome.truth);
}

#[test]
fn generated_cluster_with_externals_failures_and_churn_matches_the_truth() {
    let scenario = Scenario::generated(60, 3, 4);
    let options = SimOptions { connections: 30_000, churn_per_1000: 3.0, seed: 11, ..SimOptions::default() };
    let (dir, outcome) = simulate_into(&scenario, &options);
    let config = Config { include_external_services: true, ..Config::default() };
    let topology = build(&dir.path().join("rec"), config);
    assert_eq!(edges_of(&topology), outcome.truth);
    assert!(outcome.truth.keys().any(|k| k.1.starts_with("external/")));
    assert!(outcome.truth.values().any(|v| v.failed > 0));
}
