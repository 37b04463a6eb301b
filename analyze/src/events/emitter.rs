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

use std::collections::{BTreeMap, BTreeSet, HashMap};

use slab::Slab;

use smap_replay::time::format_rfc3339;
use smap_replay::{ConnEvent, Event, ObjectEvent, ObjectKind, TimeNs};

use crate::cluster::Key;
use crate::config::Config;
use crate::engine::{duration_ns, Applied, EdgeId, Engine, EntityId};
use crate::events::model::{
    ChangeData, ChangeEvent, ConnectionStats, DependencyDetected, DependencyGone, EndpointsChanged, GoneReason,
    HealthChanged, MapService, MapSummary, NetworkConnection, PortRef, RemovalReason, ServiceDiscovered, ServiceMap,
    ServiceRemoved, SnapshotReason, Traffic, VersionChanged, EVENT_TYPES,
};
use crate::resolve::EntityRef;
use crate::topology::{Endpoints, Health, NodeKind, ServiceType};

mod forget;

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

    /// Call after the engine applied `event`, with what it changed.
    pub fn after(&mut self, engine: &Engine, event: &Event, applied: Applied, out: &mut Vec<ChangeEvent>) {
        match event {
            Event::Object(object) => self.on_object(object),
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

    // ---- Kubernetes changes -------------------------------------------------------

    fn on_object(&mut self, object: &ObjectEvent) {
        *self.counters.object_events.entry((object.kind.as_str(), object.action.as_str())).or_default() += 1;
        let included = self.config.namespace_included(&object.namespace);
        match object.kind {
            ObjectKind::Service if included => {
                self.dirty_services.insert(Key::from(format!("{}/{}", object.namespace, object.name)));
            }
            ObjectKind::EndpointSlice if included => {
                if let Some(service) = slice_service(&object.object) {
                    self.dirty_services.insert(Key::from(format!("{}/{service}", object.namespace)));
                }
            }
            ObjectKind::Pod => {
                self.dirty_pods.insert(Key::from(format!("{}/{}", object.namespace, object.name)));
            }
            // Excluded namespaces are not in the map; nodes, namespaces and the rest
            // change how addresses resolve (or what is allowed), not what a service is.
            _ => {}
        }
    }

    /// Re-evaluates the services the pending Kubernetes changes touched.
    fn flush(&mut self, engine: &Engine, out: &mut Vec<ChangeEvent>) {
        if self.dirty_services.is_empty() && self.dirty_pods.is_empty() {
            return;
        }
        let mut touched: BTreeSet<ViewIdx> = BTreeSet::new();
        for key in std::mem::take(&mut self.dirty_services) {
            touched.insert(self.view_for(engine, &EntityRef::Service(key)));
        }
        let cluster = engine.cluster();
        for pod_key in std::mem::take(&mut self.dirty_pods) {
            if let Some(views) = self.pod_views.get(&pod_key) {
                touched.extend(views.iter().copied());
            }
            let Some(pod) = cluster.pod(&pod_key) else { continue };
            let services: Vec<Key> = cluster
                .services_of_pod(pod)
                .into_iter()
                .filter(|s| self.config.namespace_included(&s.namespace))
                .map(|s| s.key.clone())
                .collect();
            for key in services {
                touched.insert(self.view_for(engine, &EntityRef::Service(key)));
            }
            if let Some(view) = self.view_ids.get(&EntityRef::Workload(pod.workload.clone())) {
                touched.insert(*view);
            }
        }
        for view in touched {
            self.recompute(engine, view, out);
        }
    }

    fn recompute(&mut self, engine: &Engine, index: ViewIdx, out: &mut Vec<ChangeEvent>) {
        let view = &self.views[index as usize];
        let Some((node, pods)) = engine.node_details(&view.entity) else { return };
        let exists = match &view.entity {
            EntityRef::Service(key) => engine.cluster().service_exists(key),
            _ => true,
        };
        self.index_pods(index, pods);
        let details = Details {
            service_type: node.service_type,
            version: node.version,
            health: node.health,
            endpoints: node.endpoints,
        };
        let view = &mut self.views[index as usize];
        let old = std::mem::replace(&mut view.details, details);
        view.exists = exists;
        let (present, kind) = (view.present, view.kind);
        if old != self.views[index as usize].details && present {
            self.generation += 1;
        }
        if kind == NodeKind::Service {
            if exists && !present && self.views[index as usize].kept {
                self.discover(index, out);
                return;
            }
            if !exists && present {
                self.retire(index, out);
                return;
            }
        }
        if present {
            self.diff(index, &old);
        }
    }

    fn index_pods(&mut self, index: ViewIdx, pods: Vec<Key>) {
        let old = std::mem::replace(&mut self.views[index as usize].pods, pods);
        for pod in old {
            if let Some(views) = self.pod_views.get_mut(&pod) {
                views.retain(|v| *v != index);
                if views.is_empty() {
                    self.pod_views.remove(&pod);
                }
            }
        }
        for pod in &self.views[index as usize].pods {
            let views = self.pod_views.entry(pod.clone()).or_default();
            if !views.contains(&index) {
                views.push(index);
            }
        }
    }

    /// Schedules reports of what changed on a present service.
    fn diff(&mut self, index: ViewIdx, old: &Details) {
        let now = self.now();
        let immediate = self.config.emit_on_change;
        let view = &self.views[index as usize];
        // No pods for a moment (a pod replaced) leaves the version unknown, not changed.
        let version = view.details.version != old.version && view.details.version.is_some();
        let (health, endpoints) = (view.details.health, view.details.endpoints != old.endpoints);
        if health != old.health {
            // Down, or back from down, is critical: reported at once (rate limit allowing).
            let critical = health == Health::Down || view.health.reported == Health::Down;
            let due = self.due(now, view.health.last, immediate && critical);
            self.schedule(Timer::Health(index), due);
        }
        if version {
            let due = self.due(now, self.views[index as usize].version.last, immediate);
            self.schedule(Timer::Version(index), due);
        }
        if endpoints {
            let due = self.due(now, self.views[index as usize].endpoints.last, false);
            self.schedule(Timer::Endpoints(index), due);
        }
    }

    /// When a report may go out: now (immediate) or after the debounce window, and no
    /// sooner than `min_emit_interval` after the previous report of the same kind.
    fn due(&self, now: TimeNs, last: Option<TimeNs>, immediate: bool) -> TimeNs {
        let wanted = if immediate { now } else { now.saturating_add(self.debounce) };
        match last {
            Some(last) => wanted.max(last.saturating_add(self.min_emit)),
            None => wanted,
        }
    }

    /// Sets a report's timer to `due`, unless one is already set no later. Timers due
    /// now still wait for time to move on, so changes of one instant come out together.
    fn schedule(&mut self, timer: Timer, due: TimeNs) {
        let slot_due = match timer {
            Timer::Health(v) => &mut self.views[v as usize].health.due,
            Timer::Version(v) => &mut self.views[v as usize].version.due,
            Timer::Endpoints(v) => &mut self.views[v as usize].endpoints.due,
            Timer::Stats(p) => &mut self.pairs[p as usize].stats.due,
            Timer::Expire(p) => &mut self.pairs[p as usize].expiry,
            Timer::Snapshot => &mut self.snapshot_due,
            Timer::Periodic => &mut self.periodic_due,
        };
        match *slot_due {
            Some(current) if current <= due => return,
            Some(current) => {
                self.timers.remove(&(current, timer));
            }
            None => {}
        }
        *slot_due = Some(due);
        self.timers.insert((due, timer));
    }

    fn cancel(&mut self, timer: Timer) {
        let slot_due = match timer {
            Timer::Health(v) => self.views[v as usize].health.due.take(),
            Timer::Version(v) => self.views[v as usize].version.due.take(),
            Timer::Endpoints(v) => self.views[v as usize].endpoints.due.take(),
            Timer::Stats(p) => self.pairs[p as usize].stats.due.take(),
            Timer::Expire(p) => self.pairs[p as usize].expiry.take(),
            Timer::Snapshot => self.snapshot_due.take(),
            Timer::Periodic => self.periodic_due.take(),
        };
        if let Some(due) = slot_due {
            self.timers.remove(&(due, timer));
        }
    }

    fn schedule_periodic(&mut self, due: TimeNs) {
        self.cancel(Timer::Periodic);
        self.schedule(Timer::Periodic, due);
    }

    /// Services or dependencies came or went: a snapshot follows once this instant is
    /// over, rate limit allowing.
    fn significant(&mut self) {
        self.generation += 1;
        if !self.config.emit_on_change {
            return;
        }
        let due = self.due(self.now(), self.last_snapshot_at, true);
        self.schedule(Timer::Snapshot, due);
    }

    fn discover(&mut self, index: ViewIdx, out: &mut Vec<ChangeEvent>) {
        let now = self.now();
        let view = &mut self.views[index as usize];
        view.present = true;
        view.health = Slot::new(view.details.health);
        view.version = Slot::new(view.details.version.clone());
        view.endpoints = Slot::new(view.details.endpoints);
        let data = ServiceDiscovered {
            service: view.id.clone(),
            kind: view.kind,
            service_type: view.details.service_type,
            version: view.details.version.clone(),
            health: view.details.health,
            endpoints: view.details.endpoints,
        };
        self.emit(out, now, ChangeData::ServiceDiscovered(data));
        self.significant();
    }

    fn remove(&mut self, index: ViewIdx, reason: RemovalReason, out: &mut Vec<ChangeEvent>) {
        for timer in [Timer::Health(index), Timer::Version(index), Timer::Endpoints(index)] {
            self.cancel(timer);
        }
        let now = self.now();
        let view = &mut self.views[index as usize];
        view.present = false;
        let data = ServiceRemoved { service: view.id.clone(), kind: view.kind, reason };
        self.emit(out, now, ChangeData::ServiceRemoved(data));
        self.significant();
    }

    /// A Kubernetes Service was deleted: its dependencies go with it, then it goes.
    fn retire(&mut self, index: ViewIdx, out: &mut Vec<ChangeEvent>) {
        let active: Vec<PairIdx> =
            self.views[index as usize].pairs.iter().copied().filter(|p| self.pairs[*p as usize].active).collect();
        let mut others = Vec::new();
        for pair in active {
            let now = self.now();
            others.extend(self.deactivate(pair, GoneReason::ServiceRemoved, now, out));
        }
        self.remove(index, RemovalReason::Deleted, out);
        for other in others {
            self.check_idle(other, out);
        }
    }

    /// Removes a workload, external or node with no current dependency left.
    fn check_idle(&mut self, index: ViewIdx, out: &mut Vec<ChangeEvent>) {
        let view = &self.views[index as usize];
        if view.present && view.active_pairs == 0 && view.kind != NodeKind::Service {
            self.remove(index, RemovalReason::Idle, out);
        }
    }

    // ---- traffic ------------------------------------------------------------------

    fn on_conn(&mut self, engine: &Engine, conn: &ConnEvent, applied: Applied, out: &mut Vec<ChangeEvent>) {
        *self.counters.conn_events.entry(conn.kind.as_str()).or_default() += 1;
        if self.options.debug_connections {
            let ids = applied.touched_edge.and_then(|edge| {
                let key = engine.edge(edge)?.key;
                Some((engine.entity(key.source)?.id(), engine.entity(key.destination)?.id()))
            });
            let (source, destination) = ids.unzip();
            let data = NetworkConnection {
                source_ip: conn.src_ip.to_string(),
                dest_ip: conn.dst_ip.to_string(),
                source_port: conn.src_port,
                dest_port: conn.dst_port,
                protocol: conn.kind.protocol().as_str().to_uppercase(),
                process: conn.comm.to_string(),
                pid: conn.pid,
                kind: conn.kind.as_str().to_owned(),
                side: conn.side.as_str().to_owned(),
                node: conn.node.to_string(),
                bytes_sent: conn.bytes_sent,
                bytes_received: conn.bytes_received,
                error: conn.error,
                source,
                destination,
            };
            let now = self.now();
            self.emit(out, now, ChangeData::NetworkConnection(data));
        }
        // Off the old edge first, so a moved connection is never counted twice.
        if let Some(edge) = applied.moved_from {
            self.on_edge(engine, edge, out);
        }
        if let Some(edge) = applied.touched_edge {
            self.on_edge(engine, edge, out);
        }
    }

    fn on_edge(&mut self, engine: &Engine, edge: EdgeId, out: &mut Vec<ChangeEvent>) {
        let Some(stats) = engine.edge(edge) else { return };
        let traffic = Traffic {
            connections: stats.connections,
            failed: stats.failed,
            failures: stats.failures,
            aborted: stats.aborted,
            bytes_sent: stats.bytes_sent,
            bytes_received: stats.bytes_received,
        };
        let (key, last_seen) = (stats.key, stats.last_seen);
        if self.edges.len() <= edge as usize {
            self.edges.resize(edge as usize + 1, EdgeView::default());
        }
        let cached = &mut self.edges[edge as usize];
        let delta = traffic.since(&cached.traffic);
        // Counters only grow, but for a connection that moved to another edge.
        let moved_off = cached.traffic.since(&traffic);
        cached.traffic = traffic;
        let tracked = self.counters.connections_tracked.entry(key.protocol.as_str()).or_default();
        *tracked = (*tracked + delta.connections).saturating_sub(moved_off.connections);

        let pair = match cached.pair {
            Some(pair) => {
                let state = &mut self.pairs[pair as usize];
                state.traffic.add(&delta);
                state.traffic = state.traffic.since(&moved_off);
                // A moved connection already reported with this pair leaves the report
                // too (counter-wise min), so the next one's delta hides nothing.
                state.reported = state.reported.since(&state.reported.since(&state.traffic));
                pair
            }
            None => {
                if traffic.connections + traffic.failed < self.config.min_connection_count {
                    return;
                }
                let (Some(source), Some(destination)) =
                    (self.entity_view(engine, key.source), self.entity_view(engine, key.destination))
                else {
                    return;
                };
                if !self.views[source as usize].kept || !self.views[destination as usize].kept {
                    return;
                }
                let pair = self.pair_for(source, destination);
                self.edges[edge as usize].pair = Some(pair);
                let pair_state = &mut self.pairs[pair as usize];
                pair_state.edges += 1;
                pair_state.traffic.add(&traffic);
                pair_state.ports.insert(PortRef { protocol: key.protocol.as_str().to_owned(), port: key.port });
                pair
            }
        };
        let state = &mut self.pairs[pair as usize];
        state.last_seen = state.last_seen.max(last_seen);
        if state.active {
            if delta != Traffic::default() {
                self.generation += 1;
                let due = self.due(self.now(), self.pairs[pair as usize].stats.last, false);
                self.schedule(Timer::Stats(pair), due);
            }
        } else {
            self.activate(pair, out);
        }
    }

    fn pair_for(&mut self, source: ViewIdx, destination: ViewIdx) -> PairIdx {
        if let Some(pair) = self.pair_ids.get(&(source, destination)) {
            return *pair;
        }
        let index = index_of(self.pairs.insert(Pair {
            source,
            destination,
            edges: 0,
            ports: BTreeSet::new(),
            traffic: Traffic::default(),
            last_seen: TimeNs::MIN,
            active: false,
            ever_active: false,
            reported: Traffic::default(),
            reported_at: 0,
            stats: Slot::new(()),
            expiry: None,
        }));
        self.pair_ids.insert((source, destination), index);
        self.views[source as usize].pairs.push(index);
        if source != destination {
            self.views[destination as usize].pairs.push(index);
        }
        index
    }

    /// A dependency with traffic whose two ends are in the map (a Service only while
    /// it exists): announced, after the ends it brings into the map.
    fn activate(&mut self, pair: PairIdx, out: &mut Vec<ChangeEvent>) {
        let (source, destination) = (self.pairs[pair as usize].source, self.pairs[pair as usize].destination);
        if !self.views[source as usize].exists || !self.views[destination as usize].exists {
            return;
        }
        for end in [source, destination] {
            self.views[end as usize].active_pairs += 1;
            if !self.views[end as usize].present {
                self.discover(end, out);
            }
        }
        let now = self.now();
        let state = &mut self.pairs[pair as usize];
        let first_time = !state.ever_active;
        state.active = true;
        state.ever_active = true;
        state.reported = state.traffic;
        state.reported_at = now;
        let expiry = state.last_seen.saturating_add(self.ttl);
        let (from, to) = (&self.views[source as usize], &self.views[destination as usize]);
        let data = DependencyDetected {
            source: from.id.clone(),
            destination: to.id.clone(),
            cross_namespace: namespaced(from.kind) && namespaced(to.kind) && from.namespace != to.namespace,
            first_time,
            ports: state.ports.iter().cloned().collect(),
            connections: state.traffic.connections,
            failed: state.traffic.failed,
            failures: state.traffic.failures,
        };
        self.emit(out, now, ChangeData::DependencyDetected(data));
        self.schedule(Timer::Expire(pair), expiry);
        self.significant();
    }

    /// Ends a dependency; returns its two ends, to be checked for removal.
    fn deactivate(
        &mut self,
        pair: PairIdx,
        reason: GoneReason,
        at: TimeNs,
        out: &mut Vec<ChangeEvent>,
    ) -> [ViewIdx; 2] {
        self.cancel(Timer::Stats(pair));
        self.cancel(Timer::Expire(pair));
        let state = &mut self.pairs[pair as usize];
        state.active = false;
        let (source, destination) = (state.source, state.destination);
        let data = DependencyGone {
            source: self.views[source as usize].id.clone(),
            destination: self.views[destination as usize].id.clone(),
            reason,
            last_seen: format_rfc3339(state.last_seen),
            connections: state.traffic.connections,
        };
        for end in [source, destination] {
            let view = &mut self.views[end as usize];
            view.active_pairs = view.active_pairs.saturating_sub(1);
        }
        self.emit(out, at, ChangeData::DependencyGone(data));
        self.significant();
        [source, destination]
    }

    /// The view of an engine entity, created on first sight.
    fn entity_view(&mut self, engine: &Engine, entity: EntityId) -> Option<ViewIdx> {
        if let Some(Some(view)) = self.entity_views.get(entity as usize) {
            return Some(*view);
        }
        let entity_ref = engine.entity(entity)?.clone();
        let view = self.view_for(engine, &entity_ref);
        if self.entity_views.len() <= entity as usize {
            self.entity_views.resize(entity as usize + 1, None);
        }
        self.entity_views[entity as usize] = Some(view);
        Some(view)
    }

    /// The view of a node, created (with its details as of now) on first sight.
    fn view_for(&mut self, engine: &Engine, entity: &EntityRef) -> ViewIdx {
        if let Some(view) = self.view_ids.get(entity) {
            return *view;
        }
        let (node, pods) = engine.node_details(entity).unwrap_or_else(|| {
            // A Service never seen: a placeholder that is not in the map.
            let (namespace, name) =
                entity.id().split_once('/').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap_or_default();
            (placeholder(namespace, name), Vec::new())
        });
        let kept = self.config.keeps(entity);
        let exists = match entity {
            EntityRef::Service(key) => engine.cluster().service_exists(key),
            EntityRef::Workload(_)
            | EntityRef::External { .. }
            | EntityRef::ExternalName { .. }
            | EntityRef::Node(_) => true,
        };
        let details = Details {
            service_type: node.service_type,
            version: node.version,
            health: node.health,
            endpoints: node.endpoints,
        };
        let index = index_of(self.views.insert(View {
            entity: entity.clone(),
            id: entity.id(),
            kind: node.kind,
            namespace: node.namespace,
            health: Slot::new(details.health),
            version: Slot::new(details.version.clone()),
            endpoints: Slot::new(details.endpoints),
            details,
            exists,
            kept,
            present: false,
            active_pairs: 0,
            pairs: Vec::new(),
            pods: Vec::new(),
        }));
        self.view_ids.insert(entity.clone(), index);
        self.index_pods(index, pods);
        index
    }

    // ---- timers -------------------------------------------------------------------

    fn fire(&mut self, timer: Timer, at: TimeNs, out: &mut Vec<ChangeEvent>) {
        match timer {
            Timer::Health(v) => {
                let view = &mut self.views[v as usize];
                view.health.due = None;
                let (from, to) = (view.health.reported, view.details.health);
                if view.present && from != to {
                    view.health.reported = to;
                    view.health.last = Some(at);
                    let data = HealthChanged {
                        service: view.id.clone(),
                        from,
                        to,
                        critical: from == Health::Down || to == Health::Down,
                        endpoints: view.details.endpoints,
                    };
                    self.emit(out, at, ChangeData::HealthChanged(data));
                }
            }
            Timer::Version(v) => {
                let view = &mut self.views[v as usize];
                view.version.due = None;
                if view.present && view.details.version.is_some() && view.version.reported != view.details.version {
                    let to = view.details.version.clone();
                    let from = std::mem::replace(&mut view.version.reported, to.clone());
                    view.version.last = Some(at);
                    let data = VersionChanged { service: view.id.clone(), from, to };
                    self.emit(out, at, ChangeData::VersionChanged(data));
                }
            }
            Timer::Endpoints(v) => {
                let view = &mut self.views[v as usize];
                view.endpoints.due = None;
                let (from, to) = (view.endpoints.reported, view.details.endpoints);
                if view.present && from != to {
                    view.endpoints.reported = to;
                    view.endpoints.last = Some(at);
                    let data = EndpointsChanged { service: view.id.clone(), from, to };
                    self.emit(out, at, ChangeData::EndpointsChanged(data));
                }
            }
            Timer::Stats(p) => self.fire_stats(p, at, out),
            Timer::Expire(p) => {
                let state = &mut self.pairs[p as usize];
                state.expiry = None;
                if !state.active {
                    return;
                }
                let deadline = state.last_seen.saturating_add(self.ttl);
                if deadline > at {
                    // Traffic since the timer was set: the dependency lives on.
                    self.schedule(Timer::Expire(p), deadline);
                    return;
                }
                let ends = self.deactivate(p, GoneReason::Idle, at, out);
                for end in ends {
                    self.check_idle(end, out);
                }
            }
            Timer::Snapshot => {
                self.snapshot_due = None;
                if self.emit_snapshot(SnapshotReason::TopologyChanged, at, out) {
                    self.schedule_periodic(at.saturating_add(self.snapshot_every));
                }
            }
            Timer::Periodic => {
                self.periodic_due = None;
                self.emit_snapshot(SnapshotReason::Periodic, at, out);
                self.schedule_periodic(at.saturating_add(self.snapshot_every));
            }
        }
    }

    fn fire_stats(&mut self, pair: PairIdx, at: TimeNs, out: &mut Vec<ChangeEvent>) {
        let state = &mut self.pairs[pair as usize];
        state.stats.due = None;
        let delta = state.traffic.since(&state.reported);
        if !state.active || delta == Traffic::default() {
            return;
        }
        let interval = at.saturating_sub(state.reported_at);
        let seconds = interval as f64 / 1e9;
        // Rounded to thousandths: plenty for rates, and the JSON reads back exactly.
        let per_second = |n: u64| if interval > 0 { (n as f64 / seconds * 1000.0).round() / 1000.0 } else { 0.0 };
        let data = ConnectionStats {
            source: self.views[state.source as usize].id.clone(),
            destination: self.views[state.destination as usize].id.clone(),
            total: state.traffic,
            delta,
            interval_seconds: seconds,
            connections_per_second: per_second(delta.connections),
            bytes_per_second: per_second(delta.bytes_sent + delta.bytes_received),
        };
        state.reported = state.traffic;
        state.reported_at = at;
        state.stats.last = Some(at);
        self.emit(out, at, ChangeData::ConnectionStats(data));
    }

    /// Emits a `service_map`, unless `skip_unchanged` and it equals the previous one.
    /// Returns whether one was emitted.
    fn emit_snapshot(&mut self, reason: SnapshotReason, at: TimeNs, out: &mut Vec<ChangeEvent>) -> bool {
        let skip = self.config.skip_unchanged;
        if skip && self.snapshot_generation == Some(self.generation) {
            return false;
        }
        let map = self.map(reason);
        self.snapshot_generation = Some(self.generation);
        if skip
            && self
                .last_map
                .as_ref()
                .is_some_and(|last| last.services == map.services && last.connections == map.connections)
        {
            return false;
        }
        self.last_snapshot_at = Some(at);
        self.last_map = Some(map.clone());
        self.emit(out, at, ChangeData::ServiceMap(map));
        true
    }
}

/// The Service an EndpointSlice belongs to (label `kubernetes.io/service-name`).
fn slice_service(object: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Slice {
        metadata: Meta,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }
    let slice: Slice = serde_json::from_str(object).ok()?;
    slice.metadata.labels.get("kubernetes.io/service-name").cloned()
}

fn placeholder(namespace: String, name: String) -> crate::topology::Service {
    crate::topology::Service {
        namespace,
        name,
        kind: NodeKind::Service,
        service_type: ServiceType::Other,
        version: None,
        health: Health::Unknown,
        endpoints: Endpoints::default(),
        labels: BTreeMap::new(),
        dns_name: None,
        dependencies: Vec::new(),
        dependents: Vec::new(),
    }
}

/// Whether a node kind lives in a namespace (externals and nodes do not).
fn namespaced(kind: NodeKind) -> bool {
    matches!(kind, NodeKind::Service | NodeKind::Workload)
}

fn index_of(len: usize) -> u32 {
    // More than 4 billion services or dependencies cannot be held in memory anyway.
    u32::try_from(len).unwrap_or(u32::MAX)
}
