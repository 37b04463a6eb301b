//! The topology model: what `smap build` writes and `smap analyze` reads (`smap.topology/v1`).
//!
//! Documented for users in `docs/topology.md`. Maps are `BTreeMap` and lists are sorted
//! so the JSON is byte-for-byte deterministic.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The schema tag of this topology format.
pub const TOPOLOGY_SCHEMA: &str = "smap.topology/v1";

/// A service topology over a time window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    /// Always [`TOPOLOGY_SCHEMA`].
    pub schema: String,
    /// Event-time window the topology covers.
    pub window: Window,
    /// Services and other endpoints by id (`<namespace>/<name>`, `external/<ip>:<port>`,
    /// `node/<name>`).
    pub services: BTreeMap<String, Service>,
    /// Who calls whom, sorted by (source, destination, protocol, port).
    pub edges: Vec<Edge>,
    /// What the topology was built from and what was lost on the way.
    #[serde(default)]
    pub stats: BuildStats,
}

/// An event-time window, RFC 3339 UTC timestamps with nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// First event time.
    pub start: String,
    /// Last event time.
    pub end: String,
}

/// What a topology node stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A Kubernetes Service.
    Service,
    /// A workload without a Service (Deployment, StatefulSet, DaemonSet, Job, CronJob, bare Pod).
    Workload,
    /// An address outside the cluster.
    External,
    /// A node (host network).
    Node,
}

/// What a service is, detected from ports, images, labels and annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceType {
    /// A database (PostgreSQL, MySQL, MongoDB...).
    Database,
    /// A cache (Redis, Memcached...).
    Cache,
    /// A queue or broker (Kafka, RabbitMQ, NATS...).
    Queue,
    /// An application API.
    Api,
    /// A proxy or gateway (nginx, Envoy, HAProxy...).
    Proxy,
    /// Nothing matched.
    Other,
}

impl ServiceType {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::Database => "database",
            ServiceType::Cache => "cache",
            ServiceType::Queue => "queue",
            ServiceType::Api => "api",
            ServiceType::Proxy => "proxy",
            ServiceType::Other => "other",
        }
    }

    /// Parses a lower-case name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "database" => ServiceType::Database,
            "cache" => ServiceType::Cache,
            "queue" => ServiceType::Queue,
            "api" => ServiceType::Api,
            "proxy" => ServiceType::Proxy,
            "other" => ServiceType::Other,
            _ => return None,
        })
    }
}

/// Health from endpoint readiness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Every endpoint ready (and at least one).
    Healthy,
    /// Some endpoints ready, some not.
    Degraded,
    /// Endpoints exist (or are expected) but none is ready.
    Down,
    /// Nothing to judge by (externals, Services without selector or slices).
    Unknown,
}

impl Health {
    /// Lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }
}

/// Ready and total endpoints (pods) behind a service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// Ready endpoints.
    pub ready: u32,
    /// All endpoints.
    pub total: u32,
}

/// A node of the topology.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Namespace (`external` for externals, empty for nodes).
    pub namespace: String,
    /// Name (`ip:port` for externals).
    pub name: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// Detected type.
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    /// Version from labels or image tags; several, comma-separated, during a rollout.
    pub version: Option<String>,
    /// Health at the end of the window.
    pub health: Health,
    /// Endpoints at the end of the window.
    pub endpoints: Endpoints,
    /// Labels of the Service (or of the workload's pods), for policy selectors.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// DNS name of an external endpoint, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
    /// Ids this service calls, sorted.
    pub dependencies: Vec<String>,
    /// Ids that call this service, sorted.
    pub dependents: Vec<String>,
}

/// Traffic from one node to another on one protocol and port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    /// Calling node id.
    pub source: String,
    /// Called node id.
    pub destination: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Destination port as dialed (the Service port for ClusterIP traffic).
    pub port: u16,
    /// Connections (TCP) or flows (UDP) that were established.
    pub connections: u64,
    /// Connection attempts that failed.
    pub failed: u64,
    /// The failed attempts by why they failed (absent when none failed).
    #[serde(default, skip_serializing_if = "Failures::is_empty")]
    pub failures: Failures,
    /// Established connections that ended without the FIN exchange, by cause: a reset
    /// sent or received (`reset`), a retransmission timeout (`timed_out`), another
    /// socket error (`other`). Absent when none were.
    #[serde(default, skip_serializing_if = "Failures::is_empty")]
    pub aborted: Failures,
    /// The names of the processes seen on each end (Linux `comm`, up to 8 each,
    /// sorted): which binary in a pod makes or serves these calls. Absent when none
    /// were known.
    #[serde(default, skip_serializing_if = "Processes::is_empty")]
    pub processes: Processes,
    /// The Ingress rules this edge serves: set on edges from an ingress controller (a
    /// `proxy` node) to a Service that Ingresses route to, one entry per rule routing
    /// to that Service port, sorted. Absent otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IngressRoute>,
    /// TCP segments retransmitted by either end, as counted when the connections
    /// closed (absent when none were).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub retransmits: u64,
    /// Payload bytes from source to destination.
    pub bytes_sent: u64,
    /// Payload bytes from destination to source.
    pub bytes_received: u64,
    /// First time seen (RFC 3339).
    pub first_seen: String,
    /// Last time seen (RFC 3339).
    pub last_seen: String,
}

/// The process names on each end of an edge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Processes {
    /// Processes that made the calls.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client: Vec<String>,
    /// Processes that served them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server: Vec<String>,
}

impl Processes {
    /// Whether no name is known on either end.
    pub fn is_empty(&self) -> bool {
        self.client.is_empty() && self.server.is_empty()
    }
}

/// One rule of an Ingress: a host and path it routes to a Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IngressRoute {
    /// The Ingress, `namespace/name`.
    pub ingress: String,
    /// The rule's host; `*` when it has none (every host), as for the default backend.
    pub host: String,
    /// The rule's path; `/` for the default backend and a rule without one.
    pub path: String,
}

/// Connections that failed, by cause, from the error the kernel gave the socket: for
/// connection attempts every key may occur, for aborted established connections
/// `reset`, `timed_out` and `other`. Each key is written only when non-zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// Refused: nothing listened, the peer answered the SYN with a reset (ECONNREFUSED).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub refused: u64,
    /// Timed out: the SYNs went unanswered (ETIMEDOUT), as behind a firewall that drops.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub timed_out: u64,
    /// Unreachable: a router or the local stack had no way there (EHOSTUNREACH,
    /// ENETUNREACH).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreachable: u64,
    /// Reset while the handshake was under way (ECONNRESET).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reset: u64,
    /// Abandoned: the application closed the socket before the handshake finished,
    /// with no error from the kernel; a client's own connect timeout does this.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub abandoned: u64,
    /// Any other errno.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub other: u64,
}

impl Failures {
    /// Counts one failed attempt by the errno the kernel reported for it.
    pub fn count(&mut self, errno: u16) {
        let slot = match errno {
            0 => &mut self.abandoned,
            111 => &mut self.refused,
            110 => &mut self.timed_out,
            101 | 113 => &mut self.unreachable,
            104 => &mut self.reset,
            _ => &mut self.other,
        };
        *slot += 1;
    }

    /// Counts one established connection aborted with this errno (its close's).
    pub fn count_abort(&mut self, errno: u16) {
        let slot = match errno {
            // EPIPE: the reset came after the peer's FIN (in CLOSE_WAIT).
            104 | 32 => &mut self.reset,
            110 => &mut self.timed_out,
            _ => &mut self.other,
        };
        *slot += 1;
    }

    /// Adds another set of counts.
    pub fn add(&mut self, other: &Failures) {
        self.refused += other.refused;
        self.timed_out += other.timed_out;
        self.unreachable += other.unreachable;
        self.reset += other.reset;
        self.abandoned += other.abandoned;
        self.other += other.other;
    }

    /// The counts less an earlier reading of them (saturating).
    pub fn since(&self, earlier: &Failures) -> Failures {
        Failures {
            refused: self.refused.saturating_sub(earlier.refused),
            timed_out: self.timed_out.saturating_sub(earlier.timed_out),
            unreachable: self.unreachable.saturating_sub(earlier.unreachable),
            reset: self.reset.saturating_sub(earlier.reset),
            abandoned: self.abandoned.saturating_sub(earlier.abandoned),
            other: self.other.saturating_sub(earlier.other),
        }
    }

    /// Each cause with its count, in a fixed order, zeros included: metric labels.
    pub fn by_reason(&self) -> [(&'static str, u64); 6] {
        [
            ("refused", self.refused),
            ("timed_out", self.timed_out),
            ("unreachable", self.unreachable),
            ("reset", self.reset),
            ("abandoned", self.abandoned),
            ("other", self.other),
        ]
    }

    /// Whether no attempt failed.
    pub fn is_empty(&self) -> bool {
        self.by_reason().iter().all(|(_, n)| *n == 0)
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Inputs and losses behind a topology.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildStats {
    /// Connection events folded.
    pub conn_events: u64,
    /// Kubernetes object events folded.
    pub object_events: u64,
    /// Connections counted once although both ends were seen.
    pub both_ends_merged: u64,
    /// TCP connections first seen open (they were open before the capture started):
    /// counted once, with the bytes they moved after that.
    #[serde(default)]
    pub open_before_capture: u64,
    /// Events the kernel side lost, as the recordings report.
    pub dropped: u64,
    /// Connections evicted from bounded tables (recordings plus this build).
    pub evicted: u64,
    /// Objects that could not be parsed.
    pub unparsed: u64,
    /// Object events skipped because that version (or a newer one) of the object was
    /// applied already: the copies every node's recording carries.
    #[serde(default)]
    pub duplicate_objects: u64,
    /// Loopback events skipped (traffic inside one pod or host).
    pub loopback_events: u64,
    /// UDP flow reports without a byte either way (connected, never used), skipped.
    #[serde(default)]
    pub empty_flows: u64,
    /// Connections to or from outside addresses counted under `external/other` because
    /// `max_services` nodes were tracked already.
    #[serde(default)]
    pub external_overflow: u64,
    /// DNS answers folded (one per address a reply gave), which name the outside
    /// addresses their clients dial.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dns_answers: u64,
    /// Pod cgroups folded, which tell a hostNetwork pod's traffic from its node's.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pod_cgroups: u64,
    /// Connections first seen at their server from a node's address that moved to the
    /// hostNetwork pod their client end then reported from.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub moved_to_host_pods: u64,
    /// Reports from a connection's end after that end's close, folded into the
    /// connection instead of counted as another: an accept() that returned the socket
    /// of a connection its client reset while it waited in the accept queue.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub late_reports: u64,
    /// Edges left out by filters (namespaces, externals, min_connection_count).
    pub filtered_edges: u64,
    /// Edges forgotten after `map_retention` without traffic (a live map's old news).
    #[serde(default)]
    pub forgotten_edges: u64,
}

impl Topology {
    /// Parses a topology JSON document, checking its schema tag.
    pub fn from_json(text: &str) -> Result<Topology, TopologyError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(TopologyError::Json)?;
        match value.get("schema").and_then(|s| s.as_str()) {
            Some(TOPOLOGY_SCHEMA) => {}
            other => return Err(TopologyError::Schema(other.unwrap_or("none").to_owned())),
        }
        serde_json::from_value(value).map_err(TopologyError::Json)
    }

    /// Serializes as pretty, deterministic JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        // Serializing plain structs, BTreeMaps and strings cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// Why a topology document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Not JSON, or not of the topology's shape.
    #[error("not a valid smap topology: {0}")]
    Json(serde_json::Error),
    /// A different schema tag.
    #[error("topology schema `{0}` is not supported (expected `smap.topology/v1`)")]
    Schema(String),
}
