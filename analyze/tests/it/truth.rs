//! The engine finds exactly the edges a simulation played, also under pod churn with
//! IP reuse across services, with both ends of every connection recorded.

use std::collections::BTreeMap;
use std::path::Path;

use smap_analyze::{build_topology, BuildInput, Config, Topology};
use smap_replay::simulate::{simulate, Scenario, SimOptions, SimOutcome, TruthEdge, TruthKey};
use smap_replay::{LossCounters, Recording, RecordingMeta, RecordingWriter, WriterOptions};

pub fn bookinfo() -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios/bookinfo.yaml");
    Scenario::from_file(&path).unwrap()
}

pub fn build(dir: &Path, config: Config) -> Topology {
    let recording = Recording::open(dir).unwrap();
    build_topology(BuildInput::new(vec![recording], vec![]), config, &mut |_| {}).unwrap()
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

pub fn simulate_into(scenario: &Scenario, options: &SimOptions) -> (tempfile::TempDir, SimOutcome) {
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

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/scenarios").join(name);
    Scenario::from_file(&path).unwrap()
}

#[test]
fn shop_scenario_matches_the_truth_with_direct_pod_dials_udp_and_externals() {
    let options = SimOptions { connections: 5000, churn_per_1000: 2.0, seed: 5, ..SimOptions::default() };
    let (dir, outcome) = simulate_into(&scenario("shop.yaml"), &options);
    let config = Config { include_external_services: true, ..Config::default() };
    let topology = build(&dir.path().join("rec"), config);
    assert_eq!(edges_of(&topology), outcome.truth);
    assert!(outcome.truth.keys().any(|k| k.2 == "udp"));
}

#[test]
fn one_recording_per_node_gives_the_same_topology_as_one_for_all() {
    let options = SimOptions { connections: 3000, churn_per_1000: 3.0, seed: 2, ..SimOptions::default() };
    let (dir, _) = simulate_into(&bookinfo(), &options);
    let parts = split_by_node(&dir.path().join("rec"), dir.path(), WriterOptions::default());
    assert_eq!(parts.len(), 3);
    let split = build_topology(BuildInput::new(parts, vec![]), Config::default(), &mut |_| {}).unwrap();
    let single = build(&dir.path().join("rec"), Config::default());
    assert_eq!(split.edges, single.edges);
    assert_eq!(split.services, single.services);
    assert_eq!(split.stats.duplicate_objects, 2 * single.stats.object_events, "each object applied once");
}

/// Splits a recording by node, as a DaemonSet records: each node's connection events,
/// and the Kubernetes objects in every recording (each node watches the API).
pub fn split_by_node(whole: &Path, into: &Path, options: WriterOptions) -> Vec<Recording> {
    let whole = Recording::open(whole).unwrap();
    let mut writers: BTreeMap<String, RecordingWriter> = BTreeMap::new();
    for event in whole.conn_events() {
        let event = event.unwrap();
        let node = event.node.to_string();
        let writer = writers.entry(node.clone()).or_insert_with(|| {
            let meta = RecordingMeta::new("capture", &node, "");
            RecordingWriter::create(&into.join(&node), meta, options.clone()).unwrap()
        });
        writer.write_conn(&event).unwrap();
    }
    let mut parts = Vec::new();
    for (node, mut writer) in writers {
        for object in whole.object_events() {
            writer.write_object(&object.unwrap()).unwrap();
        }
        writer.finish(&LossCounters::default()).unwrap();
        parts.push(Recording::open(&into.join(node)).unwrap());
    }
    parts
}
