//! The change events `smap watch` streams and `smap build --events` prints: one JSON
//! object per line, `{"event_type", "timestamp", "data"}` as the collector's
//! `service_map` event has it. Documented for users in `docs/events.md`.

use std::collections::BTreeMap;

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};
use smap_replay::time::{format_rfc3339, parse_rfc3339};
use smap_replay::TimeNs;

use crate::topology::{Endpoints, Failures, Health, NodeKind, ServiceType};

/// One change event: what changed, stamped with the event time it changed at.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeEvent {
    /// Event time (nanoseconds since the Unix epoch), written as RFC 3339 `timestamp`.
    pub time_ns: TimeNs,
    /// What changed.
    pub data: ChangeData,
}

/// The kinds of change events and their payloads (`event_type` and `data` in JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data", rename_all = "snake_case")]
pub enum ChangeData {
    /// A service (or workload, external, node) appeared in the map.
    ServiceDiscovered(ServiceDiscovered),
    /// A service left the map.
    ServiceRemoved(ServiceRemoved),
    /// A calls B: the first time, or again after it was gone.
    DependencyDetected(DependencyDetected),
    /// No traffic from A to B for `connection_ttl`, or one end was deleted.
    DependencyGone(DependencyGone),
    /// A service's health changed.
    HealthChanged(HealthChanged),
    /// A service's version changed (a deployment).
    VersionChanged(VersionChanged),
    /// A service's ready or total endpoints changed.
    EndpointsChanged(EndpointsChanged),
    /// A dependency's traffic since the last report.
    ConnectionStats(ConnectionStats),
    /// The whole map.
    ServiceMap(ServiceMap),
    /// One raw connection event (only with `--debug-connections`).
    NetworkConnection(NetworkConnection),
}

/// Every `event_type`, in the order of [`ChangeData`]'s variants (bounded metric labels).
pub const EVENT_TYPES: [&str; 10] = [
    "service_discovered",
    "service_removed",
    "dependency_detected",
    "dependency_gone",
    "health_changed",
    "version_changed",
    "endpoints_changed",
    "connection_stats",
    "service_map",
    "network_connection",
];

impl ChangeData {
    /// The `event_type` string.
    pub fn event_type(&self) -> &'static str {
        EVENT_TYPES[self.index()]
    }

    /// Position of this kind in [`EVENT_TYPES`].
    pub fn index(&self) -> usize {
        match self {
            ChangeData::ServiceDiscovered(_) => 0,
            ChangeData::ServiceRemoved(_) => 1,
            ChangeData::DependencyDetected(_) => 2,
            ChangeData::DependencyGone(_) => 3,
            ChangeData::HealthChanged(_) => 4,
            ChangeData::VersionChanged(_) => 5,
            ChangeData::EndpointsChanged(_) => 6,
            ChangeData::ConnectionStats(_) => 7,
            ChangeData::ServiceMap(_) => 8,
            ChangeData::NetworkConnection(_) => 9,
        }
    }
}

impl Serialize for ChangeEvent {
    /// `event_type` first, as the collector wrote it; then `timestamp`, then `data`.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ChangeEvent", 3)?;
        s.serialize_field("event_type", self.data.event_type())?;
        s.serialize_field("timestamp", &format_rfc3339(self.time_ns))?;
        match &self.data {
            ChangeData::ServiceDiscovered(d) => s.serialize_field("data", d)?,
            ChangeData::ServiceRemoved(d) => s.serialize_field("data", d)?,
            ChangeData::DependencyDetected(d) => s.serialize_field("data", d)?,
            ChangeData::DependencyGone(d) => s.serialize_field("data", d)?,
            ChangeData::HealthChanged(d) => s.serialize_field("data", d)?,
            ChangeData::VersionChanged(d) => s.serialize_field("data", d)?,
            ChangeData::EndpointsChanged(d) => s.serialize_field("data", d)?,
            ChangeData::ConnectionStats(d) => s.serialize_field("data", d)?,
            ChangeData::ServiceMap(d) => s.serialize_field("data", d)?,
            ChangeData::NetworkConnection(d) => s.serialize_field("data", d)?,
        }
        s.end()
    }
}

/// Why a line is not a change event.
#[derive(Debug, thiserror::Error)]
pub enum ChangeEventError {
    /// Not JSON, or not of a change event's shape.
    #[error("not a smap change event: {0}")]
    Json(#[from] serde_json::Error),
    /// The timestamp is not RFC 3339.
    #[error("not a smap change event: timestamp `{0}` is not RFC 3339")]
    Timestamp(String),
}

impl ChangeEvent {
    /// One JSON line (no trailing newline).
    pub fn to_json(&self) -> String {
        // Plain structs, strings and BTreeMaps always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses one JSON line as written by [`ChangeEvent::to_json`].
    pub fn from_json(line: &str) -> Result<ChangeEvent, ChangeEventError> {
        #[derive(Deserialize)]
        struct Raw {
            event_type: String,
            timestamp: String,
            data: serde_json::Value,
        }
        let raw: Raw = serde_json::from_str(line)?;
        let time_ns = parse_rfc3339(&raw.timestamp).ok_or(ChangeEventError::Timestamp(raw.timestamp))?;
        let data = serde_json::from_value(serde_json::json!({"event_type": raw.event_type, "data": raw.data}))?;
        Ok(ChangeEvent { time_ns, data })
    }
}

/// `service_discovered`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDiscovered {
    /// Topology id (`namespace/name`, `external/ip:port`, `node/name`).
    pub service: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// Detected type.
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    /// Version, if known.
    pub version: Option<String>,
    /// Health now.
    pub health: Health,
    /// Endpoints now.
    pub endpoints: Endpoints,
}

/// Why a service left the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// The Kubernetes Service was deleted.
    Deleted,
    /// A workload, external or node whose last dependency is gone.
    Idle,
}

/// `service_removed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRemoved {
    /// Topology id.
    pub service: String,
    /// What it stood for.
    pub kind: NodeKind,
    /// Why it left.
    pub reason: RemovalReason,
}

/// A protocol and port a dependency uses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRef {
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Port as dialed.
    pub port: u16,
}

/// `dependency_detected`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyDetected {
    /// Caller id.
    pub source: String,
    /// Callee id.
    pub destination: String,
    /// Whether the two are in different namespaces.
    pub cross_namespace: bool,
    /// False when the dependency was seen before and had gone.
    pub first_time: bool,
    /// Protocols and ports seen so far, sorted.
    pub ports: Vec<PortRef>,
    /// Connections established so far.
    pub connections: u64,
    /// Failed attempts so far.
    pub failed: u64,
    /// The failed attempts so far by cause (absent when none failed).
    #[serde(default, skip_serializing_if = "Failures::is_empty")]
    pub failures: Failures,
}

/// Why a dependency is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoneReason {
    /// No traffic for `connection_ttl`.
    Idle,
    /// One of the two Services was deleted.
    ServiceRemoved,
}

/// `dependency_gone`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyGone {
    /// Caller id.
    pub source: String,
    /// Callee id.
    pub destination: String,
    /// Why.
    pub reason: GoneReason,
    /// Last traffic (RFC 3339).
    pub last_seen: String,
    /// Connections established in total.
    pub connections: u64,
}

/// `health_changed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthChanged {
    /// Service id.
    pub service: String,
    /// Health as last reported.
    pub from: Health,
    /// Health now.
    pub to: Health,
    /// The service went down or recovered from down (emitted immediately; other
    /// changes wait for the debounce window).
    pub critical: bool,
    /// Endpoints now.
    pub endpoints: Endpoints,
}

/// `version_changed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionChanged {
    /// Service id.
    pub service: String,
    /// Version as last reported.
    pub from: Option<String>,
    /// Version now (several, comma-separated, during a rollout).
    pub to: Option<String>,
}

/// `endpoints_changed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointsChanged {
    /// Service id.
    pub service: String,
    /// Endpoints as last reported.
    pub from: Endpoints,
    /// Endpoints now.
    pub to: Endpoints,
}

/// Traffic counters of a dependency.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Traffic {
    /// Connections (TCP) or flows (UDP) established.
    pub connections: u64,
    /// Failed connection attempts.
    pub failed: u64,
    /// The failed attempts by cause (absent when none failed).
    #[serde(default, skip_serializing_if = "Failures::is_empty")]
    pub failures: Failures,
    /// Established connections aborted, by cause (absent when none were).
    #[serde(default, skip_serializing_if = "Failures::is_empty")]
    pub aborted: Failures,
    /// Payload bytes caller to callee.
    pub bytes_sent: u64,
    /// Payload bytes callee to caller.
    pub bytes_received: u64,
}

impl Traffic {
    /// Counter-wise `self - earlier` (saturating: counters only grow).
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            connections: self.connections.saturating_sub(earlier.connections),
            failed: self.failed.saturating_sub(earlier.failed),
            failures: self.failures.since(&earlier.failures),
            aborted: self.aborted.since(&earlier.aborted),
            bytes_sent: self.bytes_sent.saturating_sub(earlier.bytes_sent),
            bytes_received: self.bytes_received.saturating_sub(earlier.bytes_received),
        }
    }

    /// Counter-wise sum.
    pub fn add(&mut self, other: &Traffic) {
        self.connections += other.connections;
        self.failed += other.failed;
        self.failures.add(&other.failures);
        self.aborted.add(&other.aborted);
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
    }
}

/// `connection_stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionStats {
    /// Caller id.
    pub source: String,
    /// Callee id.
    pub destination: String,
    /// Totals so far.
    pub total: Traffic,
    /// Since the previous report (or the detection).
    pub delta: Traffic,
    /// Length of that period in seconds.
    pub interval_seconds: f64,
    /// `delta.connections` per second over the period (to thousandths).
    pub connections_per_second: f64,
    /// `delta.bytes_sent + delta.bytes_received` per second over the period (to thousandths).
    pub bytes_per_second: f64,
}

/// Why a `service_map` snapshot was emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotReason {
    /// Services or dependencies appeared or went.
    TopologyChanged,
    /// `full_snapshot_interval` passed.
    Periodic,
    /// The stream ended (shutdown, or the end of a recording).
    Final,
}

/// A service as the `service_map` snapshot shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapService {
    /// What it stands for.
    pub kind: NodeKind,
    /// Detected type.
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    /// Version, if known.
    pub version: Option<String>,
    /// Health now.
    pub health: Health,
    /// Endpoints now.
    pub endpoints: Endpoints,
    /// Ids it calls (current dependencies), sorted.
    pub dependencies: Vec<String>,
    /// Ids that call it, sorted.
    pub dependents: Vec<String>,
}

/// Counts of a `service_map` snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapSummary {
    /// Services in the map.
    pub services: u64,
    /// Current dependencies.
    pub dependencies: u64,
    /// Services down or degraded.
    pub unhealthy: u64,
}

/// `service_map`: the current map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMap {
    /// Why it was emitted.
    pub reason: SnapshotReason,
    /// Services by id.
    pub services: BTreeMap<String, MapService>,
    /// Connections established per current dependency, keyed `source->destination`.
    pub connections: BTreeMap<String, u64>,
    /// Counts.
    pub summary: MapSummary,
}

/// `network_connection` (debug): one connection event as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConnection {
    /// Client address.
    pub source_ip: String,
    /// Server address as the reporting socket saw it.
    pub dest_ip: String,
    /// Client port.
    pub source_port: u16,
    /// Server port.
    pub dest_port: u16,
    /// `TCP` or `UDP`.
    pub protocol: String,
    /// Process name of the reporting process.
    pub process: String,
    /// Process id of the reporting process.
    pub pid: u32,
    /// Event kind (`tcp_connect`, `tcp_accept`, `tcp_close`, `tcp_connect_failed`, `udp_flow`).
    pub kind: String,
    /// Which end reported it (`client`, `server`).
    pub side: String,
    /// Node it was observed on.
    pub node: String,
    /// Payload bytes the reporting socket sent.
    pub bytes_sent: u64,
    /// Payload bytes the reporting socket received.
    pub bytes_received: u64,
    /// errno of a failed connect, else 0.
    pub error: u16,
    /// The caller's topology id, when the event was attributed to a dependency.
    pub source: Option<String>,
    /// The callee's topology id, likewise.
    pub destination: Option<String>,
}
