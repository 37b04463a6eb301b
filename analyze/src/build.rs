//! The offline driver: merges recordings (and a kubectl snapshot) in time order and
//! folds them through the engine into a topology.

use std::ops::ControlFlow;

use smap_replay::{
    ConnEvent, ConnFacts, ConnRecord, Event, MergedEvents, ObjectEvent, Recording, ReplayError, Threads, TimeNs,
};

use crate::config::Config;
use crate::engine::Engine;
use crate::topology::Topology;

/// What a build reads.
pub struct BuildInput {
    /// Recordings, e.g. one per node.
    pub recordings: Vec<Recording>,
    /// Extra Kubernetes objects (from `--k8s-from`), applied before all traffic.
    pub snapshot: Vec<ObjectEvent>,
    /// Threads to read with; the result is the same whatever the number.
    pub threads: Threads,
}

impl BuildInput {
    /// Recordings and snapshot objects, read on as many threads as the machine has.
    pub fn new(recordings: Vec<Recording>, snapshot: Vec<ObjectEvent>) -> Self {
        BuildInput { recordings, snapshot, threads: Threads::available() }
    }

    /// Every event, in the order the engine folds them, connection events as the
    /// engine's facts.
    pub fn into_facts(self) -> Result<MergedEvents<ConnFacts>, ReplayError> {
        MergedEvents::facts_with_threads(&self.recordings, self.snapshot, self.threads)
    }

    /// Every event, in the order the engine folds them, connection events whole.
    pub fn into_events(self) -> Result<MergedEvents<ConnEvent>, ReplayError> {
        MergedEvents::new_with_threads(&self.recordings, self.snapshot, self.threads)
    }

    /// The time extra snapshots are stamped with: the first recording's start.
    pub fn snapshot_time(recordings: &[Recording]) -> TimeNs {
        recordings.iter().filter_map(|r| r.meta().start_ns).min().unwrap_or(0)
    }
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A recording could not be read.
    #[error(transparent)]
    Replay(#[from] ReplayError),
}

/// How often (in events) the progress callback is called.
pub const PROGRESS_EVERY: u64 = 1 << 16;

/// Folds every event of the input and returns the topology. `progress` is called every
/// [`PROGRESS_EVERY`] events with the number folded so far.
pub fn build_topology(
    input: BuildInput,
    config: Config,
    progress: &mut dyn FnMut(u64),
) -> Result<Topology, BuildError> {
    let engine = fold(input, config, progress)?;
    Ok(engine.topology())
}

/// Folds every event and returns the final engine.
pub fn fold(input: BuildInput, config: Config, progress: &mut dyn FnMut(u64)) -> Result<Engine, BuildError> {
    let mut engine = engine_for(&input, config);
    replay_all(input.into_facts()?, progress, |event| {
        engine.apply(event);
    })?;
    Ok(engine)
}

/// The one loop behind every replay (`smap build`, its frames and `--events`, `smap
/// analyze` and `smap netpol` on recordings): hands each event to `each` in order,
/// calls `progress` every [`PROGRESS_EVERY`] events and once at the end, and stops
/// early when `each` breaks, which it returns.
pub fn replay_each<C: ConnRecord>(
    events: MergedEvents<C>,
    progress: &mut dyn FnMut(u64),
    mut each: impl FnMut(&Event<C>) -> ControlFlow<()>,
) -> Result<ControlFlow<()>, ReplayError> {
    let mut folded = 0u64;
    for event in events {
        let flow = each(&event?);
        folded += 1;
        if flow.is_break() {
            progress(folded);
            return Ok(flow);
        }
        if folded.is_multiple_of(PROGRESS_EVERY) {
            progress(folded);
        }
    }
    progress(folded);
    Ok(ControlFlow::Continue(()))
}

/// [`replay_each`] for a fold that never stops early.
pub fn replay_all<C: ConnRecord>(
    events: MergedEvents<C>,
    progress: &mut dyn FnMut(u64),
    mut each: impl FnMut(&Event<C>),
) -> Result<(), ReplayError> {
    let _never_breaks = replay_each(events, progress, |event| {
        each(event);
        ControlFlow::Continue(())
    })?;
    Ok(())
}

/// The map as of one moment of the input: what a time slider shows.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// The moment: every event at or before it is folded.
    pub time_ns: TimeNs,
    /// The topology as of `time_ns`.
    pub topology: Topology,
}

/// Folds every event like [`fold`], and takes the topology at `frames` moments evenly
/// spread over the recordings' span, the last at its end. The engine computes each
/// frame, so a frame is exactly what `smap build` of the events up to then gives.
pub fn fold_frames(
    input: BuildInput,
    config: Config,
    frames: usize,
    progress: &mut dyn FnMut(u64),
) -> Result<(Engine, Vec<Frame>), BuildError> {
    let metas = input.recordings.iter().map(Recording::meta);
    let start = metas.clone().filter_map(|m| m.start_ns).min().unwrap_or(0);
    let end = metas.filter_map(|m| m.end_ns).max().unwrap_or(start).max(start);
    let frames = frames.max(1) as u64;
    let span = i128::from(end - start);
    let at = |i: u64| start + TimeNs::try_from(span * i128::from(i + 1) / i128::from(frames)).unwrap_or(end - start);
    let mut taken = Vec::new();
    let mut next = 0u64;
    let mut engine = engine_for(&input, config);
    replay_all(input.into_facts()?, progress, |event| {
        while next + 1 < frames && event.time_ns() > at(next) {
            taken.push(Frame { time_ns: at(next), topology: engine.topology() });
            next += 1;
        }
        engine.apply(event);
    })?;
    while next < frames {
        taken.push(Frame { time_ns: at(next), topology: engine.topology() });
        next += 1;
    }
    Ok((engine, taken))
}

/// A new engine that knows the losses the recordings report.
fn engine_for(input: &BuildInput, config: Config) -> Engine {
    let mut engine = Engine::new(config);
    for recording in &input.recordings {
        let c = &recording.meta().counters;
        engine.add_source_losses(c.dropped, c.evicted, c.unparsed);
    }
    engine
}
