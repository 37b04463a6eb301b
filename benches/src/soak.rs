//! The soak: a day (or more) of simulated churn ([`Churn`]) through the live path of
//! `smap watch` ([`WatchConsumer`]: engine, change emitter, published `/map` and
//! `/stats`, and the map and per-dependency series a scrape every 15 s asks for),
//! ticking as the live session ticks, with what the engine and emitter hold sampled
//! along the way. `smap-soak` reports it with heap figures; the soak test
//! checks it stays flat.

use std::time::Duration;

use smap_analyze::engine::Footprint;
use smap_analyze::events::{EmitterFootprint, EmitterOptions};
use smap_analyze::Config;
use smap_capture::kernel::KernelCounters;
use smap_capture::live::record::LiveConsumer;
use smap_capture::live::serve::LiveState;
use smap_capture::live::watch::WatchConsumer;
use smap_replay::simulate::churn::{Churn, ChurnOptions};
use smap_replay::simulate::SIM_EPOCH_NS;
use smap_replay::{Event, TimeNs};

/// What the live path holds at one point of the soak.
#[derive(Clone, Copy, Debug)]
pub struct SoakSample {
    /// Event time since the start.
    pub elapsed: Duration,
    /// Events folded so far.
    pub events: u64,
    /// Services alive in the simulated cluster.
    pub cluster_services: usize,
    /// What the engine holds.
    pub engine: Footprint,
    /// What the change emitter holds.
    pub emitter: EmitterFootprint,
}

/// How often the soak asks for the map, as a Prometheus scraping every 15 s does.
const SCRAPE_EVERY: TimeNs = 15_000_000_000;

fn nanos(d: Duration) -> TimeNs {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Plays `churn` through a [`WatchConsumer`] configured with `config`, handing it
/// events in batches of `tick` of event time and ticking after each (a live session
/// ticks every second); calls `sample` every `every` of event time and at the end.
/// Returns the consumer, finished, for a look at the final map.
pub fn soak(
    churn: ChurnOptions,
    config: Config,
    tick: Duration,
    every: Duration,
    mut sample: impl FnMut(&SoakSample),
) -> std::io::Result<WatchConsumer> {
    let state = LiveState::new();
    let mut consumer = WatchConsumer::new(config, EmitterOptions::default(), Box::new(std::io::sink()), state.clone())?;
    let mut events = Churn::new(churn);
    let (tick, every) = (nanos(tick).max(1), nanos(every).max(1));
    let (mut next_tick, mut next_sample) = (SIM_EPOCH_NS + tick, SIM_EPOCH_NS + every);
    let mut next_scrape = SIM_EPOCH_NS + SCRAPE_EVERY;
    let mut batch: Vec<Event> = Vec::new();
    let mut folded = 0u64;
    let mut last_tick = SIM_EPOCH_NS;
    let counters = KernelCounters::default();
    let mut take = |consumer: &WatchConsumer, at: TimeNs, folded: u64, services: usize| {
        let tracker = consumer.tracker();
        sample(&SoakSample {
            elapsed: Duration::from_nanos(u64::try_from(at - SIM_EPOCH_NS).unwrap_or(0)),
            events: folded,
            cluster_services: services,
            engine: tracker.engine().footprint(),
            emitter: tracker.emitter().footprint(),
        });
    };
    loop {
        let event = events.next();
        let t = event.as_ref().map_or(TimeNs::MAX, Event::time_ns);
        while t >= next_tick && next_tick != TimeNs::MAX {
            consumer.events(&batch);
            folded += batch.len() as u64;
            batch.clear();
            if next_tick >= next_scrape {
                // What a Prometheus scraping `/metrics` asks of the pipeline.
                state.want_map();
                next_scrape += SCRAPE_EVERY;
            }
            consumer.tick(next_tick, &counters);
            last_tick = next_tick;
            if next_tick >= next_sample {
                take(&consumer, next_tick, folded, events.services());
                next_sample += every;
            }
            next_tick = if event.is_some() { next_tick + tick } else { TimeNs::MAX };
        }
        match event {
            Some(event) => batch.push(event),
            None => break,
        }
    }
    consumer.finish()?;
    take(&consumer, last_tick, folded, events.services());
    Ok(consumer)
}
