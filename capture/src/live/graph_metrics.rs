//! Per-dependency metrics on `/metrics`, in the OpenTelemetry service-graph form that
//! Tempo, Beyla and Grafana's service graph and Node Graph panels read:
//! `traces_service_graph_request_total` and `traces_service_graph_request_failed_total`
//! by `client`, `server` and `connection_type`, plus `smap_dependency_bytes_total` by
//! direction, `smap_dependency_failures_total` and `smap_dependency_aborted_total` by
//! cause, `smap_dependency_retransmits_total` and `smap_edge_connections_total` by
//! protocol and port.
//!
//! `client` and `server` are topology ids (`namespace/name`, `external/ip:port`,
//! `node/name`): unique across namespaces, and the ids `/map` and the change events use.
//! The series are those of the map `/map` serves, so the filters of the config
//! (namespaces, externals, `min_connection_count`) apply, and a dependency forgotten
//! after `map_retention` leaves `/metrics` with it (a counter that comes back later
//! starts again from its new total, which `rate()` reads as a reset). At most one
//! series per dependency and metric: the map holds at most `max_services` nodes, and in
//! practice a few per service.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use smap_analyze::topology::{Failures, NodeKind, ServiceType, Topology};

/// One dependency's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Dependency {
    connection_type: &'static str,
    requests: u64,
    failed: u64,
    failures: Failures,
    aborted: Failures,
    retransmits: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

/// One dependency's totals, for exporters other than `/metrics` (OTLP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyTotals {
    /// Caller id.
    pub client: String,
    /// Callee id.
    pub server: String,
    /// Tempo's `connection_type` of the callee.
    pub connection_type: &'static str,
    /// Connections (TCP) and flows (UDP).
    pub requests: u64,
    /// Failed connection attempts.
    pub failed: u64,
    /// The failed attempts by cause.
    pub failures: Failures,
    /// Established connections aborted, by cause.
    pub aborted: Failures,
    /// TCP segments retransmitted, counted at close.
    pub retransmits: u64,
    /// Payload bytes client to server.
    pub bytes_sent: u64,
    /// Payload bytes server to client.
    pub bytes_received: u64,
}

/// One of a dependency's totals.
type Total = fn(&Dependency) -> u64;
/// One of a dependency's counts by cause.
type CauseCounts = fn(&Dependency) -> Failures;

/// The series of one published map.
#[derive(Debug, Default)]
struct Series {
    dependencies: BTreeMap<(String, String), Dependency>,
    /// (client, server, protocol, port) -> connections.
    edges: Vec<(String, String, String, String, u64)>,
}

/// Holds the last map's series and encodes them at each scrape.
#[derive(Debug, Default)]
pub struct GraphMetrics {
    latest: Mutex<Arc<Series>>,
}

/// Tempo's `connection_type`: how the server is reached, by what it is.
fn connection_type(kind: NodeKind, service_type: ServiceType) -> &'static str {
    match (kind, service_type) {
        (NodeKind::External | NodeKind::Node, _) => "virtual_node",
        (_, ServiceType::Database | ServiceType::Cache) => "database",
        (_, ServiceType::Queue) => "messaging_system",
        _ => "",
    }
}

impl GraphMetrics {
    /// Takes the series of `topology`, the map `/map` now serves.
    pub fn update(&self, topology: &Topology) {
        let mut series = Series::default();
        for edge in &topology.edges {
            let server = topology.services.get(&edge.destination);
            let (kind, service_type) =
                server.map_or((NodeKind::External, ServiceType::Other), |s| (s.kind, s.service_type));
            let dependency = series.dependencies.entry((edge.source.clone(), edge.destination.clone())).or_default();
            dependency.connection_type = connection_type(kind, service_type);
            dependency.requests += edge.connections;
            dependency.failed += edge.failed;
            dependency.failures.add(&edge.failures);
            dependency.aborted.add(&edge.aborted);
            dependency.retransmits += edge.retransmits;
            dependency.bytes_sent += edge.bytes_sent;
            dependency.bytes_received += edge.bytes_received;
            series.edges.push((
                edge.source.clone(),
                edge.destination.clone(),
                edge.protocol.clone(),
                edge.port.to_string(),
                edge.connections,
            ));
        }
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(series);
    }

    fn series(&self) -> Arc<Series> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The totals of every dependency of the last map.
    pub fn dependency_totals(&self) -> Vec<DependencyTotals> {
        self.series()
            .dependencies
            .iter()
            .map(|((client, server), d)| DependencyTotals {
                client: client.clone(),
                server: server.clone(),
                connection_type: d.connection_type,
                requests: d.requests,
                failed: d.failed,
                failures: d.failures,
                aborted: d.aborted,
                retransmits: d.retransmits,
                bytes_sent: d.bytes_sent,
                bytes_received: d.bytes_received,
            })
            .collect()
    }
}

impl Collector for GraphMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let series = self.series();
        let counters: [(&str, &str, Total); 2] = [
            ("traces_service_graph_request", "Connections (TCP) and flows (UDP) from client to server", |d| d.requests),
            ("traces_service_graph_request_failed", "Failed connection attempts from client to server", |d| d.failed),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((client, server), dependency) in &series.dependencies {
                let labels = [
                    ("client", client.as_str()),
                    ("server", server.as_str()),
                    ("connection_type", dependency.connection_type),
                ];
                ConstCounter::new(value(dependency)).encode(family.encode_family(&labels)?)?;
            }
        }
        let mut family = encoder.encode_descriptor(
            "smap_dependency_bytes",
            "Payload bytes between client and server, by direction (sent: client to server)",
            None,
            MetricType::Counter,
        )?;
        for ((client, server), dependency) in &series.dependencies {
            for (direction, bytes) in [("sent", dependency.bytes_sent), ("received", dependency.bytes_received)] {
                let labels = [("client", client.as_str()), ("server", server.as_str()), ("direction", direction)];
                ConstCounter::new(bytes).encode(family.encode_family(&labels)?)?;
            }
        }
        // Only causes that occurred: a healthy dependency adds no series.
        let by_cause: [(&str, &str, CauseCounts); 2] = [
            ("smap_dependency_failures", "Failed connection attempts from client to server, by cause", |d| d.failures),
            (
                "smap_dependency_aborted",
                "Established connections from client to server that ended without the FIN exchange, by cause",
                |d| d.aborted,
            ),
        ];
        for (name, help, counts) in by_cause {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for ((client, server), dependency) in &series.dependencies {
                for (reason, count) in counts(dependency).by_reason().into_iter().filter(|(_, n)| *n > 0) {
                    let labels = [("client", client.as_str()), ("server", server.as_str()), ("reason", reason)];
                    ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "smap_dependency_retransmits",
            "TCP segments retransmitted between client and server, counted when connections close",
            None,
            MetricType::Counter,
        )?;
        for ((client, server), dependency) in series.dependencies.iter().filter(|(_, d)| d.retransmits > 0) {
            let labels = [("client", client.as_str()), ("server", server.as_str())];
            ConstCounter::new(dependency.retransmits).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "smap_edge_connections",
            "Connections (TCP) and flows (UDP) from client to server, by protocol and port as dialed",
            None,
            MetricType::Counter,
        )?;
        for (client, server, protocol, port, connections) in &series.edges {
            let labels = [
                ("client", client.as_str()),
                ("server", server.as_str()),
                ("protocol", protocol.as_str()),
                ("port", port.as_str()),
            ];
            ConstCounter::new(*connections).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
