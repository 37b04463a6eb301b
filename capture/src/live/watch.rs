//! The live consumer of `smap watch`: folds the live stream through the same
//! [`ChangeTracker`] `smap build --events` replays with, writes the change events as
//! NDJSON, and publishes what the HTTP endpoints serve (see [`crate::live::serve`]).
//!
//! Idle time: the tracker only knows event time. Once a second the consumer advances
//! it to the wall clock less [`IDLE_LAG`], so debounce windows and TTLs still end in a
//! quiet cluster; the lag leaves room for events still on their way (kernel drain,
//! reordering), which then cannot be overtaken by a timer, and the live stream stays
//! the one a replay of its recording gives.
//!
//! The change events are written on a thread of their own (`background.rs`): a
//! reader that stops reading (a paused terminal, a stuck log shipper) fills the pipe,
//! and the capture must go on draining the kernel meanwhile. Up to
//! [`MAX_PENDING_BYTES`] wait for it; past that, batches are dropped and counted
//! (`change_events_dropped_bytes` in `/stats`).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use serde_json::json;
use smap_analyze::config::Config;
use smap_analyze::events::{ChangeEvent, ChangeTracker, EmitterOptions, EVENT_TYPES};
use smap_replay::time::format_rfc3339;
use smap_replay::{Event, LossCounters, TimeNs};
use tokio::sync::Notify;

use crate::kernel::KernelCounters;
use crate::live::background::Worker;
use crate::live::record::LiveConsumer;
use crate::live::serve::{LiveState, MetricsInput, Operation, Published};

pub use smap_analyze::events::IDLE_LAG;

/// Change-event bytes waiting for a slow reader, at most.
pub const MAX_PENDING_BYTES: u64 = 64 << 20;

/// Feeds the change tracker, writes change events, publishes live state.
pub struct WatchConsumer {
    tracker: ChangeTracker,
    sink: Worker<Vec<u8>, std::io::Error>,
    failure: Option<std::io::Error>,
    stop: Arc<Notify>,
    state: Arc<LiveState>,
    buffer: Vec<ChangeEvent>,
    kernel: Option<KernelCounters>,
    lost: LossCounters,
    idle_lag: TimeNs,
    unpublished: bool,
}

impl WatchConsumer {
    /// A consumer writing NDJSON change events to `sink` and publishing into `state`.
    /// Fails only if the writing thread cannot start.
    pub fn new(
        config: Config,
        options: EmitterOptions,
        sink: Box<dyn Write + Send>,
        state: Arc<LiveState>,
    ) -> std::io::Result<Self> {
        let mut out = sink;
        // A chunk is one batch, serialized whole: written and flushed at once, so a
        // reader sees every batch as it happens.
        let write = move |chunk: Vec<u8>| {
            out.write_all(&chunk)?;
            out.flush()
        };
        let sink = Worker::start(
            "smap-events-out",
            MAX_PENDING_BYTES,
            "the change-event reader is not keeping up: dropping change events until it does",
            write,
            || Ok(()),
        )?;
        Ok(WatchConsumer {
            tracker: ChangeTracker::new(config, options),
            sink,
            failure: None,
            stop: Arc::new(Notify::new()),
            state,
            buffer: Vec::new(),
            kernel: None,
            lost: LossCounters::default(),
            idle_lag: smap_analyze::events::idle_lag_ns(),
            unpublished: true,
        })
    }

    /// Notified when the consumer cannot go on (its output was closed): the capture's
    /// shutdown future should include it.
    pub fn stop_signal(&self) -> Arc<Notify> {
        self.stop.clone()
    }

    /// The engine and emitter.
    pub fn tracker(&self) -> &ChangeTracker {
        &self.tracker
    }

    /// The stream ends: flushes pending changes and the final snapshot, publishes the
    /// final state. Returns the first error writing the events, if any.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.tracker.finish(&mut self.buffer);
        self.write();
        self.publish(true);
        if !self.sink.join() {
            return Err(std::io::Error::other("the change-event writer panicked"));
        }
        match self.failure.take().or_else(|| self.sink.take_error()) {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Hands the buffered change events to the writing thread and clears them; after a
    /// failure they are dropped (the pipeline goes on folding until the shutdown it
    /// asked for).
    fn write(&mut self) {
        if self.failure.is_none() {
            if let Some(error) = self.sink.take_error() {
                if error.kind() != std::io::ErrorKind::BrokenPipe {
                    tracing::error!("writing change events: {error}; stopping");
                }
                self.failure = Some(error);
                self.stop.notify_one();
            }
        }
        if self.buffer.is_empty() {
            return;
        }
        if self.failure.is_none() {
            let mut chunk = Vec::new();
            for event in &self.buffer {
                // Serializing our own types into memory cannot fail.
                if serde_json::to_writer(&mut chunk, event).is_ok() {
                    chunk.push(b'\n');
                }
            }
            let cost = chunk.len() as u64;
            self.sink.submit(chunk, cost);
        }
        self.buffer.clear();
    }

    /// Sets the metrics and, when anything changed, the stats the endpoints serve, and
    /// the map too when a request wants it (or `final_map`: the stream ended).
    fn publish(&mut self, final_map: bool) {
        let engine = self.tracker.engine();
        let emitter = self.tracker.emitter();
        let counters = emitter.counters();
        let gauges = emitter.gauges();
        let engine_stats = engine.stats();
        self.state.metrics().update(&MetricsInput {
            counters,
            gauges: &gauges,
            connections_active: engine.live_connections() as u64,
            engine_evicted: engine_stats.evicted,
            kernel: self.kernel.as_ref(),
        });
        if !self.unpublished {
            return;
        }
        let change_events: serde_json::Map<String, serde_json::Value> =
            EVENT_TYPES.iter().zip(counters.emitted).map(|(kind, n)| ((*kind).to_owned(), n.into())).collect();
        let stats = json!({
            "clock": emitter.clock().map(format_rfc3339),
            "events": {
                "conn": counters.conn_events.values().sum::<u64>(),
                "object": counters.object_events.values().sum::<u64>(),
            },
            "change_events": change_events,
            "change_events_dropped_bytes": self.sink.dropped(),
            "map": {
                "services": gauges.services,
                "dependencies": gauges.dependencies,
                "down": gauges.down,
                "degraded": gauges.degraded,
            },
            "connections_active": engine.live_connections(),
            "engine": engine_stats,
            "footprint": {"engine": engine.footprint(), "emitter": emitter.footprint()},
            "kernel": self.kernel.as_ref().map(kernel_json),
        });
        if !(final_map || self.state.take_map_demand()) {
            self.state.publish_stats(stats);
            return;
        }
        self.unpublished = false;
        let mut topology = engine.topology();
        // As `smap build` reports them from the recording's counters.
        topology.stats.dropped += self.lost.dropped;
        topology.stats.evicted += self.lost.evicted;
        topology.stats.unparsed += self.lost.unparsed;
        self.state.graph().update(&topology);
        let map = Bytes::from(topology.to_json());
        self.state.publish(Published { map, stats });
    }
}

fn kernel_json(k: &KernelCounters) -> serde_json::Value {
    json!({
        "udp_path": k.udp_path.name(),
        "events_received": k.events_received,
        "events_malformed": k.events_malformed,
        "ringbuf_drops": k.ringbuf_drops,
        "conn_evictions": k.conn_evictions,
        "udp_flow_evictions": k.udp_flow_evictions,
        "udp_flow_reports": k.udp_flow_reports,
        "close_untracked": k.close_untracked,
        "recursion_misses": k.recursion_misses,
        "tcp_existing": k.tcp_existing,
        "tcp_enumerated": k.tcp_enumerated,
        "namespaces_enumerated": k.namespaces_enumerated,
        "namespaces_not_enumerated": k.namespaces_not_enumerated,
        "tcp_progress": k.tcp_progress,
        "sides_by_port_order": k.sides_by_port_order,
        "dns_replies": k.dns_replies,
        "dns_skipped": k.dns_skipped,
        "dns_answers": k.dns_answers,
        "dns_truncated": k.dns_truncated,
        "dns_malformed": k.dns_malformed,
    })
}

impl LiveConsumer for WatchConsumer {
    fn events(&mut self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let started = Instant::now();
        for event in events {
            self.tracker.apply(event, &mut self.buffer);
        }
        self.write();
        self.unpublished = true;
        self.state.metrics().observe(Operation::Batch, started.elapsed().as_secs_f64());
    }

    fn tick(&mut self, now: TimeNs, counters: &KernelCounters) {
        let started = Instant::now();
        self.kernel = Some(*counters);
        self.tracker.advance(now.saturating_sub(self.idle_lag), &mut self.buffer);
        if !self.buffer.is_empty() {
            self.unpublished = true;
        }
        self.write();
        self.publish(false);
        self.state.metrics().observe(Operation::Tick, started.elapsed().as_secs_f64());
    }

    fn losses(&mut self, losses: &LossCounters) {
        if *losses != self.lost {
            // /map reports losses too.
            self.lost = *losses;
            self.unpublished = true;
        }
    }

    fn ready(&mut self) {
        self.state.set_ready();
    }
}
