//! `--threads`: a build reads on as many threads as it is given, and its topology and
//! change events are byte for byte those of a build on one thread.

use std::num::NonZeroUsize;
use std::ops::ControlFlow;
use std::path::Path;

use smap_analyze::events::{replay, EmitterOptions};
use smap_analyze::{build_topology, BuildInput, Config};
use smap_replay::simulate::SimOptions;
use smap_replay::{Recording, Threads, WriterOptions};

use crate::truth::{bookinfo, simulate_into, split_by_node};

const THREADS: [usize; 4] = [1, 2, 3, 8];

fn input(recordings: &[Recording], threads: usize) -> BuildInput {
    let threads = Threads::new(NonZeroUsize::new(threads).unwrap());
    BuildInput { recordings: recordings.to_vec(), snapshot: vec![], threads }
}

fn topology_json(recordings: &[Recording], threads: usize) -> String {
    let config = Config { include_external_services: true, ..Config::default() };
    build_topology(input(recordings, threads), config, &mut |_| {}).unwrap().to_json()
}

fn change_events(recordings: &[Recording], threads: usize) -> String {
    let mut out = String::new();
    let mut sink = |events: &[smap_analyze::events::ChangeEvent]| {
        for event in events {
            out.push_str(&serde_json::to_string(event).unwrap());
            out.push('\n');
        }
        ControlFlow::Continue(())
    };
    replay(input(recordings, threads), Config::default(), EmitterOptions::default(), &mut |_| {}, &mut sink).unwrap();
    out
}

fn assert_same_on_every_thread_count(recordings: &[Recording]) {
    let one = topology_json(recordings, 1);
    let events = change_events(recordings, 1);
    assert!(one.len() > 100 && !events.is_empty());
    for threads in THREADS {
        assert!(topology_json(recordings, threads) == one, "the topology on {threads} threads differs");
        assert!(change_events(recordings, threads) == events, "the change events on {threads} threads differ");
    }
}

#[test]
fn every_fixture_recording_builds_the_same_on_any_number_of_threads() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recordings");
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures).unwrap() {
        let recording = Recording::open(&entry.unwrap().path()).unwrap();
        assert_same_on_every_thread_count(&[recording]);
        seen += 1;
    }
    assert!(seen >= 4);
}

/// Row groups of at most 2,000 rows in segments of 9,000: the events of one stream come
/// from many row groups, some cut short by a segment's end, decoded by different threads.
fn small_row_groups() -> WriterOptions {
    WriterOptions { batch_rows: 1_000, segment_rows: 9_000, row_group_rows: 2_000, ..WriterOptions::default() }
}

#[test]
fn a_churning_recording_in_many_row_groups_builds_the_same_on_any_number_of_threads() {
    let options = SimOptions {
        connections: 8_000,
        churn_per_1000: 5.0,
        seed: 11,
        writer: small_row_groups(),
        ..SimOptions::default()
    };
    let (dir, outcome) = simulate_into(&bookinfo(), &options);
    assert!(outcome.churn_steps >= 30, "the simulation must exercise IP reuse");
    let recording = Recording::open(&dir.path().join("rec")).unwrap();
    let conn_segments = recording.segments().filter(|p| p.to_string_lossy().contains("conn-")).count();
    assert!(conn_segments >= 3, "several connection segments, not {conn_segments}");
    assert_same_on_every_thread_count(&[recording]);
}

#[test]
fn one_recording_per_node_builds_the_same_on_any_number_of_threads() {
    let options = SimOptions { connections: 4_000, churn_per_1000: 3.0, seed: 5, ..SimOptions::default() };
    let (dir, _) = simulate_into(&bookinfo(), &options);
    let parts = split_by_node(&dir.path().join("rec"), dir.path(), small_row_groups());
    assert_eq!(parts.len(), 3);
    assert_same_on_every_thread_count(&parts);
}
