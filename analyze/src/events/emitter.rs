//! The change-event emitter: watches the engine fold events and says what changed,
//! driven by event time only, so a replay gives the same stream as the live run.
//!
//! It keeps its own small view of the map (per service: type, version, health,
//! endpoints; per dependency, i.e. caller-callee pair: traffic, last traffic) updated
//! incrementally from what each event touched, never by rebuilding the topology.
//!
//! Time: `before(t)` is called before the engine applies an event at `t`. Changes of
//! Kubernetes state made by events at one time are evaluated together once time moves
//! past it (or a connection event at the same time arrives: replay order puts objects
//! first), so a snapshot of many objects at one instant gives one settled answer, not
//! one per object. Timers (debounce windows, rate limits, TTL expiry, snapshots) fire
//! when event time passes their due time, strictly: a timer due at `d` fires before the
//! first event later than `d`, or at `advance(h)` with `h > d` in an idle live session.
//!
//! The work is split by concern: `kubernetes` (object events and the services they
//! touch), `traffic` (connection events, edges and dependencies), `views` (the nodes
//! of the map view), `timers` (what is due when) and `forget` (`map_retention`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use slab::Slab;

use smap_replay::{Event, ObjectEvent, TimeNs};

use crate::config::Config;
use crate::engine::cluster::Key;
use crate::engine::resolve::EntityRef;
use crate::engine::{duration_ns, Applied, Engine};
use crate::events::model::{
    ChangeData, ChangeEvent, MapService, MapSummary, PortRef, ServiceMap, SnapshotReason, Traffic, EVENT_TYPES,
};
use crate::topology::{Endpoints, Health, NodeKind, ServiceType};

mod forget;
mod kubernetes;
mod timers;
mod traffic;
mod views;

pub use self::forget::EmitterFootprint;

/// Emitter switches that are not engine configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmitterOptions {
    /// Emit a `network_connection` event for every connection event.
    pub debug_connections: bool,
}

/// What the emitter counted: the numbers `/metrics` and `/stats` show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EmitterCounters {
    /// Change events emitted, by position in [`EVENT_TYPES`].
    pub emitted: [u64; EVENT_TYPES.len()],
    /// `service_discovered` by node kind.
    pub discovered: BTreeMap<&'static str, u64>,
    /// `service_removed` by node kind.
    pub removed: BTreeMap<&'static str, u64>,
    /// `dependency_detected`: `[same namespace, cross namespace]`.
    pub dependencies_detected: [u64; 2],
    /// `dependency_gone`.
    pub dependencies_gone: u64,
    /// `health_changed` by (from, to).
    pub health_changes: BTreeMap<(Health, Health), u64>,
    /// Connection events folded, by kind (`tcp_connect`...).
    pub conn_events: BTreeMap<&'static str, u64>,
    /// Kubernetes object events folded, by (kind, action).
    pub object_events: BTreeMap<(&'static str, &'static str), u64>,
    /// Connections the engine counted (established, both ends merged), by protocol.
    pub connections_tracked: BTreeMap<&'static str, u64>,
}

/// Gauges of the emitter's current map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapGauges {
    /// Services in the map, by node kind.
    pub services: BTreeMap<&'static str, u64>,
    /// Current dependencies.
    pub dependencies: u64,
    /// Services down.
    pub down: u64,
    /// Services degraded.
    pub degraded: u64,
}

/// Every node kind, for bounded metric labels.
pub const NODE_KINDS: [&str; 4] = ["service", "workload", "external", "node"];

/// Lower-case name of a node kind.
pub fn kind_str(kind: NodeKind) -> &'static str {
    match kind {
        NodeKind::Service => "service",
        NodeKind::Workload => "workload",
        NodeKind::External => "external",
        NodeKind::Node => "node",
    }
}

type ViewIdx = u32;
type PairIdx = u32;

/// What a scheduled timer is for. Ordered so timers due at the same time fire in a
/// fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Expire(PairIdx),
    Health(ViewIdx),
    Version(ViewIdx),
    Endpoints(ViewIdx),
    Stats(PairIdx),
    Snapshot,
    Periodic,
}

/// A reported value of a service, its last report time and any pending report.
#[derive(Clone, Debug)]
struct Slot<V> {
    reported: V,
    last: Option<TimeNs>,
    due: Option<TimeNs>,
}

impl<V> Slot<V> {
    fn new(reported: V) -> Self {
        Slot { reported, last: None, due: None }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Details {
    service_type: ServiceType,
    version: Option<String>,
    health: Health,
    endpoints: Endpoints,
}

/// One node of the emitter's map.
struct View {
    entity: EntityRef,
    id: String,
    kind: NodeKind,
    namespace: String,
    details: Details,
    /// Service views: the Kubernetes Service exists now. Others: always.
    exists: bool,
    /// Kept by the config's filters (namespaces, externals).
    kept: bool,
    /// Discovered and not removed.
    present: bool,
    active_pairs: u32,
    pairs: Vec<PairIdx>,
    pods: Vec<Key>,
    health: Slot<Health>,
    version: Slot<Option<String>>,
    endpoints: Slot<Endpoints>,
}

/// A dependency: all edges (protocols, ports) from one node to another.
struct Pair {
    source: ViewIdx,
    destination: ViewIdx,
    /// Engine edges that count into it: at none, and inactive, it can be forgotten.
    edges: u32,
    ports: BTreeSet<PortRef>,
    traffic: Traffic,
    last_seen: TimeNs,
    active: bool,
    ever_active: bool,
    reported: Traffic,
    reported_at: TimeNs,
    stats: Slot<()>,
    expiry: Option<TimeNs>,
}

/// The emitter's copy of an engine edge.
#[derive(Clone, Copy, Default)]
struct EdgeView {
    pair: Option<PairIdx>,
    traffic: Traffic,
}

/// Turns engine changes into change events. See the module docs for the time model
/// and `docs/events.md` for the rules.
pub struct Emitter {
    options: EmitterOptions,
    config: Config,
    debounce: TimeNs,
    min_emit: TimeNs,
    ttl: TimeNs,
    snapshot_every: TimeNs,
    /// Event time of the last change considered.
    clock: Option<TimeNs>,
    views: Slab<View>,
    view_ids: HashMap<EntityRef, ViewIdx>,
    entity_views: Vec<Option<ViewIdx>>,
    pod_views: HashMap<Key, Vec<ViewIdx>>,
    pairs: Slab<Pair>,
    pair_ids: HashMap<(ViewIdx, ViewIdx), PairIdx>,
    edges: Vec<EdgeView>,
    dirty_services: BTreeSet<Key>,
    dirty_pods: BTreeSet<Key>,
    timers: BTreeSet<(TimeNs, Timer)>,
    snapshot_due: Option<TimeNs>,
    periodic_due: Option<TimeNs>,
    last_snapshot_at: Option<TimeNs>,
    /// Bumped on every change of the map, so an unchanged map is known without building it.
    generation: u64,
    snapshot_generation: Option<u64>,
    last_map: Option<ServiceMap>,
    counters: EmitterCounters,
}

impl Emitter {
    /// An emitter for an engine with this configuration.
    pub fn new(config: &Config, options: EmitterOptions) -> Self {
        let min_emit = duration_ns(config.min_emit_interval);
        Emitter {
            options,
            config: config.clone(),
            debounce: duration_ns(config.change_debounce),
            min_emit,
            ttl: duration_ns(config.connection_ttl),
            // A periodic snapshot more often than the rate limit would only be skipped.
            snapshot_every: duration_ns(config.full_snapshot_interval).max(min_emit).max(1),
            clock: None,
            views: Slab::new(),
            view_ids: HashMap::new(),
            entity_views: Vec::new(),
            pod_views: HashMap::new(),
            pairs: Slab::new(),
            pair_ids: HashMap::new(),
            edges: Vec::new(),
            dirty_services: BTreeSet::new(),
            dirty_pods: BTreeSet::new(),
            timers: BTreeSet::new(),
            snapshot_due: None,
            periodic_due: None,
            last_snapshot_at: None,
            generation: 0,
            snapshot_generation: None,
            last_map: None,
            counters: EmitterCounters::default(),
        }
    }

    /// What was counted so far.
    pub fn counters(&self) -> &EmitterCounters {
        &self.counters
    }

    /// The emitter's event time: the latest event or advance seen.
    pub fn clock(&self) -> Option<TimeNs> {
        self.clock
    }

    /// Gauges of the current map.
    pub fn gauges(&self) -> MapGauges {
        let mut gauges = MapGauges::default();
        for kind in NODE_KINDS {
            gauges.services.insert(kind, 0);
        }
        for (_, view) in self.views.iter().filter(|(_, v)| v.present) {
            *gauges.services.entry(kind_str(view.kind)).or_default() += 1;
            match view.details.health {
                Health::Down => gauges.down += 1,
                Health::Degraded => gauges.degraded += 1,
                Health::Healthy | Health::Unknown => {}
            }
        }
        gauges.dependencies = self.pairs.iter().filter(|(_, p)| p.active).count() as u64;
        gauges
    }

    /// The current map, as a `service_map` snapshot would show it.
    pub fn map(&self, reason: SnapshotReason) -> ServiceMap {
        let mut services = BTreeMap::new();
        let mut dependencies: BTreeMap<ViewIdx, Vec<String>> = BTreeMap::new();
        let mut dependents: BTreeMap<ViewIdx, Vec<String>> = BTreeMap::new();
        let mut connections = BTreeMap::new();
        for (_, pair) in self.pairs.iter().filter(|(_, p)| p.active) {
            let (source, destination) =
                (&self.views[pair.source as usize].id, &self.views[pair.destination as usize].id);
            dependencies.entry(pair.source).or_default().push(destination.clone());
            dependents.entry(pair.destination).or_default().push(source.clone());
            connections.insert(format!("{source}->{destination}"), pair.traffic.connections);
        }
        let mut summary = MapSummary { dependencies: connections.len() as u64, ..MapSummary::default() };
        for (index, view) in self.views.iter().filter(|(_, v)| v.present) {
            let index = index as ViewIdx;
            let mut deps = dependencies.remove(&index).unwrap_or_default();
            deps.sort();
            deps.dedup();
            let mut callers = dependents.remove(&index).unwrap_or_default();
            callers.sort();
            callers.dedup();
            if matches!(view.details.health, Health::Down | Health::Degraded) {
                summary.unhealthy += 1;
            }
            services.insert(
                view.id.clone(),
                MapService {
                    kind: view.kind,
                    service_type: view.details.service_type,
                    version: view.details.version.clone(),
                    health: view.details.health,
                    endpoints: view.details.endpoints,
                    dependencies: deps,
                    dependents: callers,
                },
            );
        }
        summary.services = services.len() as u64;
        ServiceMap { reason, services, connections, summary }
    }

    /// Call before the engine applies an event at `t`: settles what happened before `t`.
    pub fn before(&mut self, engine: &Engine, t: TimeNs, out: &mut Vec<ChangeEvent>) {
        match self.clock {
            None => {
                self.clock = Some(t);
                self.schedule_periodic(t.saturating_add(self.snapshot_every));
            }
            Some(clock) if t > clock => self.settle(engine, t, out),
            Some(_) => {}
        }
    }

    /// Call before the engine applies a Kubernetes object event (after [`Emitter::before`]):
    /// notes whose view it may change while the engine still holds the object as it
    /// was, since a deletion may carry the object's identity only.
    pub fn before_object(&mut self, engine: &Engine, object: &ObjectEvent) {
        self.on_object(engine, object);
    }

    /// Call after the engine applied `event`, with what it changed.
    pub fn after(&mut self, engine: &Engine, event: &Event, applied: Applied, out: &mut Vec<ChangeEvent>) {
        match event {
            // Noted before the engine applied it.
            Event::Object(_) => {}
            // A name matters once a connection uses it, which the engine resolves.
            Event::Dns(_) => {}
            // Likewise which pod a cgroup is.
            Event::Cgroup(_) => {}
            Event::Conn(conn) => {
                // Replay order puts objects before connections at equal times: the
                // Kubernetes changes of this instant are complete.
                self.flush(engine, out);
                self.on_conn(engine, conn, applied, out);
            }
        }
    }

    /// Event time moved to `now` without events (an idle live session): fires what is
    /// due before `now`. Times at or before the clock are ignored.
    pub fn advance(&mut self, engine: &Engine, now: TimeNs, out: &mut Vec<ChangeEvent>) {
        if self.clock.is_some_and(|clock| now > clock) {
            self.settle(engine, now, out);
        }
    }

    /// The stream ends: settles pending changes, reports pending debounced and
    /// rate-limited changes now, and emits a final snapshot (unless `skip_unchanged`
    /// and nothing changed since the last one).
    pub fn finish(&mut self, engine: &Engine, out: &mut Vec<ChangeEvent>) {
        let Some(clock) = self.clock else { return };
        self.flush(engine, out);
        let pending: Vec<(TimeNs, Timer)> = self.timers.iter().copied().collect();
        for (due, timer) in pending {
            match timer {
                Timer::Health(_) | Timer::Version(_) | Timer::Endpoints(_) | Timer::Stats(_) => {
                    self.timers.remove(&(due, timer));
                    self.fire(timer, clock, out);
                }
                Timer::Expire(_) | Timer::Snapshot | Timer::Periodic => {}
            }
        }
        if let Some(due) = self.snapshot_due.take() {
            self.timers.remove(&(due, Timer::Snapshot));
        }
        self.emit_snapshot(SnapshotReason::Final, clock, out);
    }

    fn settle(&mut self, engine: &Engine, t: TimeNs, out: &mut Vec<ChangeEvent>) {
        self.flush(engine, out);
        while let Some(&(due, timer)) = self.timers.first() {
            if due >= t {
                break;
            }
            self.timers.remove(&(due, timer));
            self.clock = Some(self.clock.map_or(due, |c| c.max(due)));
            self.fire(timer, due, out);
        }
        self.clock = Some(self.clock.map_or(t, |c| c.max(t)));
    }

    fn now(&self) -> TimeNs {
        self.clock.unwrap_or(0)
    }

    fn emit(&mut self, out: &mut Vec<ChangeEvent>, time_ns: TimeNs, data: ChangeData) {
        self.counters.emitted[data.index()] += 1;
        match &data {
            ChangeData::ServiceDiscovered(d) => *self.counters.discovered.entry(kind_str(d.kind)).or_default() += 1,
            ChangeData::ServiceRemoved(d) => *self.counters.removed.entry(kind_str(d.kind)).or_default() += 1,
            ChangeData::DependencyDetected(d) => {
                self.counters.dependencies_detected[usize::from(d.cross_namespace)] += 1;
            }
            ChangeData::DependencyGone(_) => self.counters.dependencies_gone += 1,
            ChangeData::HealthChanged(d) => *self.counters.health_changes.entry((d.from, d.to)).or_default() += 1,
            _ => {}
        }
        out.push(ChangeEvent { time_ns, data });
    }
}

fn placeholder(namespace: String, name: String) -> crate::topology::Service {
    crate::engine::assemble::bare_node(&name, NodeKind::Service, &namespace, ServiceType::Other)
}

/// Whether a node kind lives in a namespace (externals and nodes do not).
fn namespaced(kind: NodeKind) -> bool {
    matches!(kind, NodeKind::Service | NodeKind::Workload)
}

fn index_of(len: usize) -> u32 {
    // More than 4 billion services or dependencies cannot be held in memory anyway.
    u32::try_from(len).unwrap_or(u32::MAX)
}
