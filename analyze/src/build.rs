//! The offline driver: merges recordings (and a kubectl snapshot) in time order and
//! folds them through the engine into a topology.

use smap_replay::{MergedEvents, ObjectEvent, Recording, ReplayError, TimeNs};

use crate::config::Config;
use crate::engine::Engine;
use crate::topology::Topology;

/// What a build reads.
pub struct BuildInput {
    /// Recordings, e.g. one per node.
    pub recordings: Vec<Recording>,
    /// Extra Kubernetes objects (from `--k8s-from`), applied before all traffic.
    pub snapshot: Vec<ObjectEvent>,
}

impl BuildInput {
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
    let mut engine = Engine::new(config);
    for recording in &input.recordings {
        let c = &recording.meta().counters;
        engine.add_source_losses(c.dropped, c.evicted, c.unparsed);
    }
    let events = MergedEvents::facts(&input.recordings, input.snapshot)?;
    let mut folded = 0u64;
    for event in events {
        engine.apply(&event?);
        folded += 1;
        if folded.is_multiple_of(PROGRESS_EVERY) {
            progress(folded);
        }
    }
    progress(folded);
    Ok(engine)
}
