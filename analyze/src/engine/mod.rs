//! The engine: a pure fold from time-ordered events to a topology.
//!
//! No clock, no network, no kernel: the same events always give the same topology,
//! live (`smap watch`) or replayed (`smap build`).
//!
//! Its parts: [`cluster`] (Kubernetes state as of each event) and [`resolve`] (an
//! address at a time to what it was), the connection table that joins both ends of a
//! connection, [`classify`] (a service's type), and [`assemble`] (the topology built
//! from the engine's nodes and edges).

use std::net::IpAddr;

use hashbrown::HashMap;
use slab::Slab;
use smap_replay::{
    ConnFacts, ConnKind, ConnRecord, DnsAnswer, Event, ObjectEvent, PodCgroup, ProcessName, Protocol, Side, TimeNs,
};

use self::cluster::{Changed, ClusterState};
use self::conn_table::ConnTable;
use self::dns_names::DnsNames;
use self::object_versions::ObjectVersions;
use self::resolve::{is_local, resolve_destination, resolve_source, EntityRef};
use crate::config::Config;
use crate::topology::{BuildStats, Failures};

pub mod assemble;
pub mod classify;
pub mod cluster;
mod conn_table;
mod connections;
mod dns_names;
mod host_pods;
mod ids;
mod object_versions;
pub mod resolve;
mod retention;

pub use self::ids::{EdgeId, EntityId};
pub use self::retention::{Footprint, Forgotten};

/// What identifies an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EdgeKey {
    /// Caller.
    pub source: EntityId,
    /// Callee.
    pub destination: EntityId,
    /// Transport.
    pub protocol: Protocol,
    /// Port as dialed (the Service port for Services).
    pub port: u16,
}

/// Traffic totals of one edge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EdgeStats {
    /// The edge.
    pub key: EdgeKey,
    /// Established connections (TCP) or flows (UDP).
    pub connections: u64,
    /// Failed connection attempts.
    pub failed: u64,
    /// The failed attempts by cause.
    pub failures: Failures,
    /// Established connections aborted (reset, timed out), by cause.
    pub aborted: Failures,
    /// Process names seen on each end (client, server), in the order first seen, at
    /// most [`PROCESSES_PER_END`] each.
    pub processes: [Vec<ProcessName>; 2],
    /// TCP segments retransmitted, as reported at close.
    pub retransmits: u64,
    /// Payload bytes caller to callee.
    pub bytes_sent: u64,
    /// Payload bytes callee to caller.
    pub bytes_received: u64,
    /// First event time.
    pub first_seen: TimeNs,
    /// Last event time.
    pub last_seen: TimeNs,
}

fn bit(side: Side) -> u8 {
    match side {
        Side::Client => 1,
        Side::Server => 2,
    }
}

/// What applying one event changed, for live consumers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// An edge seen for the first time.
    pub new_edge: Option<EdgeId>,
    /// The edge whose counters changed.
    pub touched_edge: Option<EdgeId>,
    /// An edge a connection moved off (to `touched_edge`): its counters went down.
    pub moved_from: Option<EdgeId>,
    /// Kubernetes state changed.
    pub cluster_changed: bool,
}

/// The folding state.
pub struct Engine {
    config: Config,
    cluster: ClusterState,
    entities: Slab<EntityRef>,
    entity_ids: HashMap<EntityRef, EntityId>,
    edges: Slab<EdgeStats>,
    edge_ids: HashMap<EdgeKey, EdgeId>,
    conns: ConnTable,
    source_cache: HashMap<IpAddr, EntityId>,
    /// Per address, the ports resolved so far: (port dialed, node, port of the edge).
    destination_cache: HashMap<IpAddr, Vec<(u16, EntityId, u16)>>,
    /// What each client resolved by DNS, for naming the outside addresses it dials.
    dns_names: DnsNames,
    /// Which pod each pod cgroup is, for traffic from the node's own address.
    host_pods: host_pods::HostPods,
    window: Option<(TimeNs, TimeNs)>,
    stats: BuildStats,
    object_versions: ObjectVersions,
    /// Some connection was keyed by its server (a client port talking to several at
    /// once): from then on every TCP event looks for one.
    server_keyed: bool,
    /// Event time of the next look for what `map_retention` lets go.
    next_sweep: Option<TimeNs>,
    /// What the last sweep let go, until a consumer takes it.
    forgotten: Option<Forgotten>,
}

/// Process names kept per end of an edge: a pod runs few binaries; past it, more are
/// not listed.
pub const PROCESSES_PER_END: usize = 8;

/// Resolution caches are dropped past this size so odd traffic cannot grow them.
const CACHE_LIMIT: usize = 65_536;
/// Ports remembered per destination address (searched linearly: services listen on few).
const PORTS_PER_ADDRESS: usize = 32;

impl Engine {
    /// A new engine with this configuration.
    pub fn new(config: Config) -> Self {
        let grace = duration_ns(config.dns_name_grace);
        Engine {
            conns: ConnTable::new(config.max_connections),
            config,
            cluster: ClusterState::default(),
            entities: Slab::new(),
            entity_ids: HashMap::new(),
            edges: Slab::new(),
            edge_ids: HashMap::new(),
            source_cache: HashMap::new(),
            destination_cache: HashMap::new(),
            dns_names: DnsNames::new(grace),
            host_pods: host_pods::HostPods::default(),
            window: None,
            stats: BuildStats::default(),
            object_versions: ObjectVersions::default(),
            server_keyed: false,
            next_sweep: None,
            forgotten: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Kubernetes state as of the last event.
    pub fn cluster(&self) -> &ClusterState {
        &self.cluster
    }

    /// A node seen in traffic and held, by id.
    pub fn entity(&self, id: EntityId) -> Option<&EntityRef> {
        self.entities.get(id as usize)
    }

    /// The id of a node the engine holds.
    pub fn entity_id(&self, entity: &EntityRef) -> Option<EntityId> {
        self.entity_ids.get(entity).copied()
    }

    /// An edge held, by id.
    pub fn edge(&self, id: EdgeId) -> Option<&EdgeStats> {
        self.edges.get(id as usize)
    }

    /// The edges held, in id order.
    pub fn edges(&self) -> impl Iterator<Item = &EdgeStats> {
        self.edges.iter().map(|(_, edge)| edge)
    }

    /// Counters so far (unparsed objects included).
    pub fn stats(&self) -> BuildStats {
        BuildStats { unparsed: self.stats.unparsed + self.cluster.unparsed(), ..self.stats.clone() }
    }

    /// Adds losses reported by a recording's producer.
    pub fn add_source_losses(&mut self, dropped: u64, evicted: u64, unparsed: u64) {
        self.stats.dropped += dropped;
        self.stats.evicted += evicted;
        self.stats.unparsed += unparsed;
    }

    /// First and last event time.
    pub fn window(&self) -> Option<(TimeNs, TimeNs)> {
        self.window
    }

    /// Connections tracked now.
    pub fn live_connections(&self) -> usize {
        self.conns.len()
    }

    /// Folds one event. Events must come in non-decreasing time order.
    pub fn apply<C: ConnRecord>(&mut self, event: &Event<C>) -> Applied {
        let t = event.time_ns();
        self.sweep_if_due(t);
        self.window = Some(match self.window {
            None => (t, t),
            Some((start, end)) => (start.min(t), end.max(t)),
        });
        match event {
            Event::Object(object) => self.apply_object(object),
            Event::Conn(conn) => self.apply_conn(&conn.facts()),
            Event::Dns(answer) => self.apply_dns(answer),
            Event::Cgroup(cgroup) => self.apply_cgroup(cgroup),
        }
    }

    fn apply_cgroup(&mut self, cgroup: &PodCgroup) -> Applied {
        self.stats.pod_cgroups += 1;
        self.host_pods.learn(cgroup, &self.cluster);
        Applied::default()
    }

    fn apply_dns(&mut self, answer: &DnsAnswer) -> Applied {
        self.stats.dns_answers += 1;
        self.dns_names.learn(answer);
        Applied::default()
    }

    fn apply_object(&mut self, object: &ObjectEvent) -> Applied {
        self.stats.object_events += 1;
        if self.object_versions.seen_before(object) {
            self.stats.duplicate_objects += 1;
            return Applied::default();
        }
        let changed = self.cluster.apply(object);
        if changed != Changed::Nothing {
            self.host_pods.cluster_changed();
        }
        match changed {
            Changed::Nothing => {}
            Changed::Everything => {
                self.source_cache.clear();
                self.destination_cache.clear();
            }
            Changed::Addresses(addresses) => {
                for ip in addresses {
                    // Events may carry either form of an IPv4 address.
                    for form in [ip, mapped_form(ip)] {
                        self.source_cache.remove(&form);
                        self.destination_cache.remove(&form);
                    }
                }
            }
        }
        Applied { cluster_changed: true, ..Applied::default() }
    }

    fn apply_conn(&mut self, e: &ConnFacts) -> Applied {
        self.stats.conn_events += 1;
        self.expire(e.time_ns);
        if is_local(&e.src_ip) || is_local(&e.dst_ip) {
            self.stats.loopback_events += 1;
            return Applied::default();
        }
        let applied = self.apply_kind(e);
        // Every kind: a connection open before the capture may name its owner only in a
        // later report, or at its close (skipping closes measured no faster).
        if let (Some(edge), false) = (applied.touched_edge, e.comm.is_empty()) {
            let names = &mut self.edges[edge as usize].processes[usize::from(e.side == Side::Server)];
            if names.len() < PROCESSES_PER_END && !names.contains(&e.comm) {
                names.push(e.comm);
            }
        }
        applied
    }

    fn apply_kind(&mut self, e: &ConnFacts) -> Applied {
        match e.kind {
            ConnKind::TcpConnectFailed => {
                let (edge, new) = self.edge_for(e);
                let stats = &mut self.edges[edge as usize];
                stats.failed += 1;
                stats.failures.count(e.error);
                stats.last_seen = stats.last_seen.max(e.time_ns);
                Applied { new_edge: new.then_some(edge), touched_edge: Some(edge), ..Applied::default() }
            }
            ConnKind::TcpConnect | ConnKind::TcpAccept => self.on_open(e),
            ConnKind::TcpExisting | ConnKind::TcpProgress | ConnKind::TcpOpenAtEnd => self.on_report(e),
            ConnKind::TcpClose => self.on_close(e),
            ConnKind::UdpFlow => self.on_flow(e),
        }
    }

    /// The node and edge port an event's server resolves to, for its client and at
    /// its time: an outside address the client resolved by DNS is that name.
    fn server_of(&mut self, e: &ConnFacts) -> (EntityId, u16) {
        let (destination, port) = self.destination_entity(&e.dst_ip, e.dst_port);
        if let Some(pod) = self.host_pod_reporting(e, destination, Side::Server) {
            return pod;
        }
        let outside = matches!(self.entities.get(destination as usize), Some(EntityRef::External { .. }));
        if !outside {
            return (destination, port);
        }
        match self.dns_names.name(&e.src_ip, &e.dst_ip, e.time_ns) {
            Some(name) => {
                let named = EntityRef::ExternalName { name: std::sync::Arc::clone(name), port };
                (self.intern(named), port)
            }
            None => (destination, port),
        }
    }

    /// Whether two resolutions of an event's server are one server: the same node, or
    /// the event's address in both its forms, named and not. A connection keeps the
    /// name it began with once the answer has expired, and the address form it began
    /// with once a later answer names the address: a long-lived UDP flow is one flow.
    fn same_server(&self, a: EntityId, b: EntityId, e: &ConnFacts) -> bool {
        let address = crate::engine::resolve::canonical(&e.dst_ip);
        let named_and_not = |x: EntityId, y: EntityId| match (self.entity(x), self.entity(y)) {
            (Some(EntityRef::ExternalName { name, .. }), Some(EntityRef::External { ip, .. })) => {
                *ip == address && self.dns_names.last_name_is(&e.src_ip, &e.dst_ip, name)
            }
            _ => false,
        };
        a == b || named_and_not(a, b) || named_and_not(b, a)
    }

    fn edge_for(&mut self, e: &ConnFacts) -> (EdgeId, bool) {
        let source = self.source_entity(&e.src_ip);
        let source = match self.host_pod_reporting(e, source, Side::Client) {
            Some((pod, _)) => pod,
            None => source,
        };
        let (destination, port) = self.server_of(e);
        self.edge_with_key(EdgeKey { source, destination, protocol: e.kind.protocol(), port }, e)
    }

    /// The edge of `key`, made at `e`'s time if new.
    fn edge_with_key(&mut self, key: EdgeKey, e: &ConnFacts) -> (EdgeId, bool) {
        if let Some(id) = self.edge_ids.get(&key) {
            let stats = &mut self.edges[*id as usize];
            stats.last_seen = stats.last_seen.max(e.time_ns);
            return (*id, false);
        }
        let id = index(self.edges.insert(EdgeStats {
            key,
            connections: 0,
            failed: 0,
            failures: Failures::default(),
            aborted: Failures::default(),
            processes: [Vec::new(), Vec::new()],
            retransmits: 0,
            bytes_sent: 0,
            bytes_received: 0,
            first_seen: e.time_ns,
            last_seen: e.time_ns,
        }));
        self.edge_ids.insert(key, id);
        (id, true)
    }

    fn source_entity(&mut self, ip: &IpAddr) -> EntityId {
        if let Some(id) = self.source_cache.get(ip) {
            return *id;
        }
        let entity = resolve_source(&self.cluster, ip);
        let id = self.intern(entity);
        if self.source_cache.len() >= CACHE_LIMIT {
            self.source_cache.clear();
        }
        self.source_cache.insert(*ip, id);
        id
    }

    fn destination_entity(&mut self, ip: &IpAddr, port: u16) -> (EntityId, u16) {
        let ports = self.destination_cache.get(ip);
        if let Some(&(_, id, edge_port)) = ports.and_then(|ports| ports.iter().find(|(p, _, _)| *p == port)) {
            return (id, edge_port);
        }
        let (entity, edge_port) = resolve_destination(&self.cluster, ip, port);
        let id = self.intern(entity);
        if self.destination_cache.len() >= CACHE_LIMIT {
            self.destination_cache.clear();
        }
        let ports = self.destination_cache.entry(*ip).or_default();
        if ports.len() >= PORTS_PER_ADDRESS {
            ports.clear();
        }
        ports.push((port, id, edge_port));
        (id, edge_port)
    }

    fn intern(&mut self, entity: EntityRef) -> EntityId {
        if let Some(id) = self.entity_ids.get(&entity) {
            return *id;
        }
        // The cluster bounds services, workloads and nodes; outside addresses are
        // unbounded (scanners, CDNs), so past max_services they share one node.
        let outside = matches!(entity, EntityRef::External { .. } | EntityRef::ExternalName { .. });
        if self.entities.len() >= self.config.max_services && outside {
            self.stats.external_overflow += 1;
            let other = EntityRef::other_external();
            if let Some(id) = self.entity_ids.get(&other) {
                return *id;
            }
            return self.push_entity(other);
        }
        self.push_entity(entity)
    }

    fn push_entity(&mut self, entity: EntityRef) -> EntityId {
        let id = index(self.entities.insert(entity.clone()));
        self.entity_ids.insert(entity, id);
        id
    }
}

/// The other spelling of an IPv4 address (IPv4-mapped IPv6 and back).
fn mapped_form(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V6(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
    }
}

fn index(len: usize) -> u32 {
    // More than 4 billion nodes or edges cannot be held in memory anyway.
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// A config duration in event-time nanoseconds.
pub fn duration_ns(d: std::time::Duration) -> TimeNs {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}
