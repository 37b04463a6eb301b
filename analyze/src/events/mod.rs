//! Change events: what changed in the service map, event by event, as `smap watch`
//! streams it live and `smap build --events` replays it from a recording.
//!
//! [`ChangeTracker`] is the one code path both use: the engine plus the [`Emitter`],
//! fed the same time-ordered events, so a replay of a live session's recording gives
//! the same stream. Shapes are in [`model`]; rules in `docs/events.md`.

mod emitter;
pub mod model;

use std::ops::ControlFlow;
use std::time::Duration;

use smap_replay::{Event, TimeNs};

pub use emitter::{kind_str, Emitter, EmitterCounters, EmitterFootprint, EmitterOptions, MapGauges, NODE_KINDS};
pub use model::{ChangeData, ChangeEvent, ChangeEventError, EVENT_TYPES};

use crate::build::{replay_each, BuildError, BuildInput};
use crate::config::Config;
use crate::engine::{Applied, Engine};

/// How far behind its wall clock a live session advances idle time (debounce windows,
/// TTLs): room for events still on their way (kernel drain, reordering), which then
/// cannot be overtaken by a timer. A replay advances to the recording's last tick less
/// this, as the live session did.
pub const IDLE_LAG: Duration = Duration::from_secs(2);

/// [`IDLE_LAG`] in event-time nanoseconds.
pub fn idle_lag_ns() -> TimeNs {
    i64::try_from(IDLE_LAG.as_nanos()).unwrap_or(i64::MAX)
}

/// The engine and the emitter, driven together.
pub struct ChangeTracker {
    engine: Engine,
    emitter: Emitter,
}

impl ChangeTracker {
    /// A tracker with this configuration.
    pub fn new(config: Config, options: EmitterOptions) -> Self {
        let emitter = Emitter::new(&config, options);
        ChangeTracker { engine: Engine::new(config), emitter }
    }

    /// Folds one event; appends the change events it settles or causes to `out`.
    /// Events must come in non-decreasing time order, objects before connections at
    /// equal times (the order of a replay and of the live pipeline).
    pub fn apply(&mut self, event: &Event, out: &mut Vec<ChangeEvent>) -> Applied {
        self.emitter.before(&self.engine, event.time_ns(), out);
        if let Event::Object(object) = event {
            self.emitter.before_object(&self.engine, object);
        }
        let applied = self.engine.apply(event);
        if let Some(forgotten) = self.engine.take_forgotten() {
            // Before anything reads the engine's ids: the event may reuse one already.
            self.emitter.forget(&self.engine, &forgotten);
        }
        self.emitter.after(&self.engine, event, applied, out);
        applied
    }

    /// Time passed without events (live only): fires what was due before `now`.
    pub fn advance(&mut self, now: TimeNs, out: &mut Vec<ChangeEvent>) {
        self.emitter.advance(&self.engine, now, out);
    }

    /// The stream ends: flushes pending changes and emits a final snapshot.
    pub fn finish(&mut self, out: &mut Vec<ChangeEvent>) {
        self.emitter.finish(&self.engine, out);
    }

    /// Adds losses reported by a recording's producer (or the live kernel side).
    pub fn add_source_losses(&mut self, dropped: u64, evicted: u64, unparsed: u64) {
        self.engine.add_source_losses(dropped, evicted, unparsed);
    }

    /// The engine (for `/map`: [`Engine::topology`]).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The emitter (for counters and gauges).
    pub fn emitter(&self) -> &Emitter {
        &self.emitter
    }
}

/// Replays recordings through a [`ChangeTracker`], handing the change events to `sink`
/// as they are produced; `sink` may stop the replay early (a closed pipe). Returns the
/// tracker at the end.
pub fn replay(
    input: BuildInput,
    config: Config,
    options: EmitterOptions,
    progress: &mut dyn FnMut(u64),
    sink: &mut dyn FnMut(&[ChangeEvent]) -> ControlFlow<()>,
) -> Result<ChangeTracker, BuildError> {
    let mut tracker = ChangeTracker::new(config, options);
    for recording in &input.recordings {
        let c = &recording.meta().counters;
        tracker.add_source_losses(c.dropped, c.evicted, c.unparsed);
    }
    let last_tick = input.recordings.iter().filter_map(|r| r.meta().last_tick_ns).max();
    let mut out = Vec::new();
    let flow = replay_each(input.into_events()?, progress, |event| {
        tracker.apply(event, &mut out);
        if out.is_empty() {
            return ControlFlow::Continue(());
        }
        let flow = sink(&out);
        out.clear();
        flow
    })?;
    if flow.is_break() {
        return Ok(tracker);
    }
    // A live session went on ticking after its last event: its idle timers fired.
    if let Some(tick) = last_tick {
        tracker.advance(tick.saturating_sub(idle_lag_ns()), &mut out);
    }
    tracker.finish(&mut out);
    // The stream ends here either way: whether the sink wants more does not matter.
    let _ = sink(&out);
    Ok(tracker)
}
