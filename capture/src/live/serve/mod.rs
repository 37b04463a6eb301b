//! The HTTP side of `smap watch`: `/` (the live map page), `/healthz`, `/readyz`,
//! `/metrics` (Prometheus text format), `/map` (the topology as `smap build` writes it)
//! and `/stats`.
//!
//! Handlers only read what the pipeline last published (a pointer swapped under a
//! lock held for nanoseconds, and atomic metrics), so a slow or busy client never holds
//! up event processing; `/map` and `/metrics` may wait for the pipeline's next tick to
//! bring the map up to date (see [`LiveState`]). smap's own metrics (`smap_*`) have labels from fixed sets (node
//! kinds, protocols, health states, event kinds); the per-dependency series
//! (`graph_metrics.rs`) have one series per dependency of the map.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use smap_analyze::events::{EmitterCounters, MapGauges, EVENT_TYPES, NODE_KINDS};
use smap_analyze::topology::Health;
use tokio::sync::Notify;

use crate::kernel::KernelCounters;
use crate::live::graph_metrics::GraphMetrics;
use crate::live::http_server::ConnectionMetrics;

/// Default address of the HTTP endpoints: loopback only, as a node agent should.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";

/// One label.
type L1 = [(&'static str, &'static str); 1];
/// Two labels.
type L2 = [(&'static str, &'static str); 2];
type Histograms = Family<L1, Histogram, fn() -> Histogram>;

/// Every metric `smap watch` exports (prefix `smap_`).
pub struct Metrics {
    services_discovered: Family<L1, Counter>,
    services_removed: Family<L1, Counter>,
    services_active: Family<L1, Gauge>,
    connections_tracked: Family<L1, Counter>,
    connections_active: Gauge,
    dependencies_detected: Family<L1, Counter>,
    dependencies_gone: Counter,
    dependencies_active: Gauge,
    health_changes: Family<L2, Counter>,
    unhealthy_services: Family<L1, Gauge>,
    k8s_api_calls: Family<L2, Counter>,
    ebpf_events: Family<L1, Counter>,
    events_dropped: Family<L1, Counter>,
    connections_evicted: Family<L1, Counter>,
    change_events: Family<L1, Counter>,
    ready: Gauge,
    processing: Histograms,
    otlp_exports_failed: Counter,
    http_refused: Family<L1, Counter>,
    http_open: Family<L1, Gauge>,
}

/// What the pipeline measures a duration of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Folding one batch of events and writing its change events.
    Batch,
    /// A once-a-second tick: idle timers, metrics, the published map.
    Tick,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Batch => "batch",
            Operation::Tick => "tick",
        }
    }
}

/// Everything the metrics are set from: the same state the change events come from.
pub struct MetricsInput<'a> {
    /// The emitter's counters.
    pub counters: &'a EmitterCounters,
    /// The emitter's current map.
    pub gauges: &'a MapGauges,
    /// Connections the engine tracks now.
    pub connections_active: u64,
    /// Connections the engine's bounded table evicted.
    pub engine_evicted: u64,
    /// The kernel side's counters, if it runs.
    pub kernel: Option<&'a KernelCounters>,
}

const HEALTH_STATES: [Health; 4] = [Health::Healthy, Health::Degraded, Health::Down, Health::Unknown];
const CONN_KINDS: [&str; 5] = ["tcp_connect", "tcp_accept", "tcp_close", "tcp_connect_failed", "udp_flow"];

/// Raises a counter to `total` (counters here mirror totals kept elsewhere).
fn set_total(counter: &Counter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}

fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

impl Metrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            services_discovered: Family::default(),
            services_removed: Family::default(),
            services_active: Family::default(),
            connections_tracked: Family::default(),
            connections_active: Gauge::default(),
            dependencies_detected: Family::default(),
            dependencies_gone: Counter::default(),
            dependencies_active: Gauge::default(),
            health_changes: Family::default(),
            unhealthy_services: Family::default(),
            k8s_api_calls: Family::default(),
            ebpf_events: Family::default(),
            events_dropped: Family::default(),
            connections_evicted: Family::default(),
            change_events: Family::default(),
            ready: Gauge::default(),
            otlp_exports_failed: Counter::default(),
            http_refused: Family::default(),
            http_open: Family::default(),
            processing: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_01, 4.0, 11))),
        };
        let r = registry;
        r.register("services_discovered", "Services that entered the map, by kind", m.services_discovered.clone());
        r.register("services_removed", "Services that left the map, by kind", m.services_removed.clone());
        r.register("services_active", "Services in the map now, by kind", m.services_active.clone());
        r.register(
            "connections_tracked",
            "Connections (TCP) and flows (UDP) counted, both ends merged, by protocol",
            m.connections_tracked.clone(),
        );
        r.register("connections_active", "Connections the engine tracks now", m.connections_active.clone());
        r.register(
            "dependencies_detected",
            "Dependencies detected (first time, or again after gone), by cross_namespace",
            m.dependencies_detected.clone(),
        );
        r.register(
            "dependencies_gone",
            "Dependencies gone (idle for connection_ttl, or deleted)",
            m.dependencies_gone.clone(),
        );
        r.register("dependencies_active", "Dependencies in the map now", m.dependencies_active.clone());
        r.register("health_changes", "Health changes reported, by from and to", m.health_changes.clone());
        r.register("unhealthy_services", "Services down or degraded now, by health", m.unhealthy_services.clone());
        r.register(
            "k8s_api_calls",
            "Kubernetes object events received, by resource and operation (list, added, modified, deleted)",
            m.k8s_api_calls.clone(),
        );
        r.register("ebpf_events", "Connection events from the kernel, by event_type", m.ebpf_events.clone());
        r.register("events_dropped", "Kernel events lost, by reason", m.events_dropped.clone());
        r.register(
            "connections_evicted",
            "Connections evicted from bounded tables, by table",
            m.connections_evicted.clone(),
        );
        r.register("change_events", "Change events emitted, by event_type", m.change_events.clone());
        r.register("ready", "1 once the kernel programs are attached and Kubernetes state is in", m.ready.clone());
        r.register(
            "otlp_exports_failed",
            "OTLP exports that failed after their retries (--otlp-endpoint)",
            m.otlp_exports_failed.clone(),
        );
        r.register(
            "http_connections_refused",
            "HTTP connections closed at accept because the listener's connection cap was reached, by listener",
            m.http_refused.clone(),
        );
        r.register("http_connections_open", "HTTP connections open now, by listener", m.http_open.clone());
        r.register_with_unit(
            "processing_duration",
            "Time spent in the pipeline, by operation",
            prometheus_client::registry::Unit::Seconds,
            m.processing.clone(),
        );
        // Every label value exists from the start, so a scrape sees zeros, not gaps.
        for kind in NODE_KINDS {
            drop(m.services_discovered.get_or_create(&[("kind", kind)]));
            drop(m.services_removed.get_or_create(&[("kind", kind)]));
            drop(m.services_active.get_or_create(&[("kind", kind)]));
        }
        for protocol in ["tcp", "udp"] {
            drop(m.connections_tracked.get_or_create(&[("protocol", protocol)]));
        }
        for cross in ["false", "true"] {
            drop(m.dependencies_detected.get_or_create(&[("cross_namespace", cross)]));
        }
        for health in ["down", "degraded"] {
            drop(m.unhealthy_services.get_or_create(&[("health", health)]));
        }
        for kind in CONN_KINDS {
            drop(m.ebpf_events.get_or_create(&[("event_type", kind)]));
        }
        for reason in ["ring_buffer", "malformed", "recursion_miss"] {
            drop(m.events_dropped.get_or_create(&[("reason", reason)]));
        }
        for table in ["engine", "kernel_tcp", "kernel_udp"] {
            drop(m.connections_evicted.get_or_create(&[("table", table)]));
        }
        for kind in EVENT_TYPES {
            drop(m.change_events.get_or_create(&[("event_type", kind)]));
        }
        m
    }

    /// Sets every metric from the pipeline's state.
    pub fn update(&self, input: &MetricsInput<'_>) {
        let c = input.counters;
        for kind in NODE_KINDS {
            set_total(
                &self.services_discovered.get_or_create(&[("kind", kind)]),
                c.discovered.get(kind).copied().unwrap_or(0),
            );
            set_total(
                &self.services_removed.get_or_create(&[("kind", kind)]),
                c.removed.get(kind).copied().unwrap_or(0),
            );
            let active = input.gauges.services.get(kind).copied().unwrap_or(0);
            self.services_active.get_or_create(&[("kind", kind)]).set(gauge(active));
        }
        for (protocol, total) in &c.connections_tracked {
            set_total(&self.connections_tracked.get_or_create(&[("protocol", protocol)]), *total);
        }
        self.connections_active.set(gauge(input.connections_active));
        set_total(
            &self.dependencies_detected.get_or_create(&[("cross_namespace", "false")]),
            c.dependencies_detected[0],
        );
        set_total(
            &self.dependencies_detected.get_or_create(&[("cross_namespace", "true")]),
            c.dependencies_detected[1],
        );
        set_total(&self.dependencies_gone, c.dependencies_gone);
        self.dependencies_active.set(gauge(input.gauges.dependencies));
        for from in HEALTH_STATES {
            for to in HEALTH_STATES {
                if let Some(total) = c.health_changes.get(&(from, to)) {
                    let labels = [("from", from.as_str()), ("to", to.as_str())];
                    set_total(&self.health_changes.get_or_create(&labels), *total);
                }
            }
        }
        self.unhealthy_services.get_or_create(&[("health", "down")]).set(gauge(input.gauges.down));
        self.unhealthy_services.get_or_create(&[("health", "degraded")]).set(gauge(input.gauges.degraded));
        for ((kind, action), total) in &c.object_events {
            let labels = [("resource", resource(kind)), ("operation", operation(action))];
            set_total(&self.k8s_api_calls.get_or_create(&labels), *total);
        }
        for (kind, total) in &c.conn_events {
            set_total(&self.ebpf_events.get_or_create(&[("event_type", kind)]), *total);
        }
        set_total(&self.connections_evicted.get_or_create(&[("table", "engine")]), input.engine_evicted);
        if let Some(k) = input.kernel {
            set_total(&self.events_dropped.get_or_create(&[("reason", "ring_buffer")]), k.ringbuf_drops);
            set_total(&self.events_dropped.get_or_create(&[("reason", "malformed")]), k.events_malformed);
            set_total(&self.events_dropped.get_or_create(&[("reason", "recursion_miss")]), k.recursion_misses);
            set_total(&self.connections_evicted.get_or_create(&[("table", "kernel_tcp")]), k.conn_evictions);
            set_total(&self.connections_evicted.get_or_create(&[("table", "kernel_udp")]), k.udp_flow_evictions);
        }
        for (index, kind) in EVENT_TYPES.iter().enumerate() {
            set_total(&self.change_events.get_or_create(&[("event_type", kind)]), c.emitted[index]);
        }
    }

    /// Records how long an operation took.
    pub fn observe(&self, operation: Operation, seconds: f64) {
        self.processing.get_or_create(&[("operation", operation.as_str())]).observe(seconds);
    }

    /// Counts an OTLP export that failed after its retries.
    pub fn otlp_export_failed(&self) {
        self.otlp_exports_failed.inc();
    }
}

/// Resource names as the Kubernetes API spells them (bounded: the kinds smap reads).
fn resource(kind: &str) -> &'static str {
    match kind {
        "Pod" => "pods",
        "Service" => "services",
        "EndpointSlice" => "endpointslices",
        "Node" => "nodes",
        "Namespace" => "namespaces",
        "Ingress" => "ingresses",
        "NetworkPolicy" => "networkpolicies",
        _ => "other",
    }
}

/// The API operation behind an object event: the initial list, or a watch event.
fn operation(action: &str) -> &'static str {
    match action {
        "snapshot" => "list",
        "added" => "added",
        "modified" => "modified",
        "deleted" => "deleted",
        _ => "other",
    }
}

/// What the pipeline last published for `/map` and `/stats`.
#[derive(Clone, Debug, Default)]
pub struct Published {
    /// The topology JSON, as `smap build` writes it.
    pub map: Bytes,
    /// The `/stats` document (without `uptime_seconds` and `ready`, added per request).
    pub stats: serde_json::Value,
}

/// How long `/map` and `/metrics` wait for the pipeline to bring a stale map up to
/// date (it does at its next tick, once a second) before serving what they have.
const FRESH_WAIT: Duration = Duration::from_secs(3);

/// The state the pipeline publishes and the endpoints serve.
///
/// The topology behind `/map` and the per-dependency series costs time in proportion to
/// the map (tens of milliseconds for thousands of edges), so the pipeline builds it only
/// when a request wants it: a request that finds the map stale asks for it and waits
/// for the next tick. Nobody asking costs nothing; a scrape every 15 s costs one build.
pub struct LiveState {
    ready: AtomicBool,
    started: Instant,
    published: Mutex<Arc<Published>>,
    /// Traffic or Kubernetes changed since the map was last built.
    stale: AtomicBool,
    /// A request is waiting for a fresh map.
    wanted: AtomicBool,
    refreshed: Notify,
    registry: Registry,
    metrics: Metrics,
    graph: Arc<GraphMetrics>,
}

impl LiveState {
    /// Fresh state: not ready, an empty map.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::default();
        let metrics = Metrics::register(registry.sub_registry_with_prefix("smap"));
        // The service-graph series keep the names Tempo and Grafana know.
        let graph = Arc::new(GraphMetrics::default());
        registry.register_collector(Box::new(graph.clone()));
        let empty = Published { map: Bytes::from_static(b"{}\n"), stats: serde_json::json!({}) };
        Arc::new(LiveState {
            ready: AtomicBool::new(false),
            started: Instant::now(),
            published: Mutex::new(Arc::new(empty)),
            stale: AtomicBool::new(true),
            wanted: AtomicBool::new(false),
            refreshed: Notify::new(),
            registry,
            metrics,
            graph,
        })
    }

    /// Marks the pipeline ready (`/readyz` answers 200 from now on).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
        self.metrics.ready.set(1);
    }

    /// Whether the pipeline is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The metrics, for the pipeline to update.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The per-dependency series, for the pipeline to update with each map.
    pub fn graph(&self) -> &GraphMetrics {
        &self.graph
    }

    /// Replaces what `/map` and `/stats` serve: the map is fresh again.
    pub fn publish(&self, published: Published) {
        let published = Arc::new(published);
        {
            // A poisoned lock only means a panic elsewhere mid-swap of a pointer: the
            // pointer is still whole, so keep serving.
            let mut slot = self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *slot = published;
        }
        self.stale.store(false, Ordering::Release);
        self.refreshed.notify_waiters();
    }

    /// Replaces what `/stats` serves, keeping the map (now stale).
    pub fn publish_stats(&self, stats: serde_json::Value) {
        self.stale.store(true, Ordering::Release);
        let mut slot = self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Arc::new(Published { map: slot.map.clone(), stats });
    }

    /// Asks the pipeline for a fresh map at its next tick.
    pub fn want_map(&self) {
        self.wanted.store(true, Ordering::Release);
    }

    /// For the pipeline: whether a request asked for a fresh map since the last call.
    pub fn take_map_demand(&self) -> bool {
        self.wanted.swap(false, Ordering::AcqRel)
    }

    /// Waits (at most `timeout`, blocking the thread) until the map is up to date: for
    /// exporters on threads of their own.
    pub fn wait_fresh_blocking(&self, timeout: Duration) {
        let started = Instant::now();
        while self.stale.load(Ordering::Acquire) && started.elapsed() < timeout {
            self.want_map();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits (at most [`FRESH_WAIT`]) until the map is up to date.
    async fn fresh(&self) {
        if !self.stale.load(Ordering::Acquire) {
            return;
        }
        let refreshed = self.refreshed.notified();
        tokio::pin!(refreshed);
        // Registered before asking, so a publish right after the ask still wakes it.
        refreshed.as_mut().enable();
        self.want_map();
        let _ = tokio::time::timeout(FRESH_WAIT, refreshed).await;
    }

    /// What was last published.
    pub fn published(&self) -> Arc<Published> {
        self.published.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The metrics in the Prometheus text format (version 0.0.4).
    pub fn render_metrics(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// The counters of one listener's connections (`listener` label).
    fn connection_metrics(&self, listener: &'static str) -> ConnectionMetrics {
        let label = [("listener", listener)];
        ConnectionMetrics {
            refused: self.metrics.http_refused.get_or_create(&label).clone(),
            open: self.metrics.http_open.get_or_create(&label).clone(),
        }
    }

    /// The `/stats` document.
    pub fn stats(&self) -> serde_json::Value {
        let mut stats = self.published().stats.clone();
        if let Some(object) = stats.as_object_mut() {
            object.insert("ready".to_owned(), self.is_ready().into());
            object.insert("uptime_seconds".to_owned(), self.started.elapsed().as_secs_f64().into());
        }
        stats
    }
}

mod routes;

pub use routes::{restricted_router, router, serve, serve_probes, serve_restricted, PAGE_POLL_MS};
