//! Dependencies worth a look: across namespaces, to and from outside the cluster,
//! fan-in and fan-out per service, and failure ratios per edge.

use petgraph::Direction;
use serde::Serialize;

use crate::topology::{Failures, NodeKind};

use super::graph::{Link, ServiceGraph};

/// A dependency with its traffic over all its ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// Caller id.
    pub source: String,
    /// Callee id.
    pub destination: String,
    /// `protocol/port` of each edge, sorted.
    pub ports: Vec<String>,
    /// Established connections.
    pub connections: u64,
    /// Failed connection attempts.
    pub failed: u64,
    /// DNS name of the end outside the cluster, when known (external dependencies only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
}

impl Dependency {
    /// A dependency from its ends and traffic.
    pub fn new(source: &str, destination: &str, link: &Link) -> Self {
        Dependency {
            source: source.to_owned(),
            destination: destination.to_owned(),
            ports: link.ports.iter().cloned().collect(),
            connections: link.connections,
            failed: link.failed,
            dns_name: None,
        }
    }
}

/// Calls crossing the cluster's boundary.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct External {
    /// Calls from the cluster (or a node) to an address outside it.
    pub outbound: Vec<Dependency>,
    /// Calls from an address outside the cluster into it.
    pub inbound: Vec<Dependency>,
}

/// How many distinct services a service calls and is called by (itself aside).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Fan {
    /// Service id.
    pub id: String,
    /// Distinct callers.
    pub fan_in: usize,
    /// Distinct callees.
    pub fan_out: usize,
}

/// One edge of the topology with failed connection attempts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FailingEdge {
    /// Caller id.
    pub source: String,
    /// Callee id.
    pub destination: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// Destination port.
    pub port: u16,
    /// Established connections.
    pub connections: u64,
    /// Failed attempts.
    pub failed: u64,
    /// The failed attempts by cause (absent when the topology does not say: one
    /// written by an older smap).
    #[serde(skip_serializing_if = "Failures::is_empty")]
    pub failures: Failures,
    /// failed / (connections + failed), rounded to 4 decimals.
    pub failure_ratio: f64,
}

/// Dependencies worth a look.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Dependencies {
    /// Calls between Services or workloads of different namespaces, by (source,
    /// destination).
    pub cross_namespace: Vec<Dependency>,
    /// Calls to and from outside the cluster, by (source, destination).
    pub external: External,
    /// Fan-in and fan-out of every Service and workload, by id.
    pub fan: Vec<Fan>,
    /// Edges with failures, highest failure ratio first, then by (source, destination,
    /// protocol, port).
    pub failing_edges: Vec<FailingEdge>,
}

/// Collects the dependencies worth a look.
pub fn dependencies(graph: &ServiceGraph<'_>) -> Dependencies {
    let g = &graph.graph;
    let mut report = Dependencies::default();
    // Edge indices follow the sorted (source, destination) pairs they were made from.
    for edge in g.edge_indices() {
        let Some((from, to)) = g.edge_endpoints(edge) else { continue };
        let (source, destination) = (graph.service(from), graph.service(to));
        let dependency = || Dependency::new(graph.id(from), graph.id(to), &g[edge]);
        if graph.in_cluster(from) && graph.in_cluster(to) && source.namespace != destination.namespace {
            report.cross_namespace.push(dependency());
        }
        if destination.kind == NodeKind::External {
            report.external.outbound.push(Dependency { dns_name: destination.dns_name.clone(), ..dependency() });
        } else if source.kind == NodeKind::External {
            report.external.inbound.push(Dependency { dns_name: source.dns_name.clone(), ..dependency() });
        }
    }
    for node in graph.nodes().filter(|node| graph.in_cluster(*node)) {
        report.fan.push(Fan {
            id: graph.id(node).to_owned(),
            fan_in: graph.neighbors(node, Direction::Incoming).count(),
            fan_out: graph.neighbors(node, Direction::Outgoing).count(),
        });
    }
    for edge in graph.topology.edges.iter().filter(|edge| edge.failed > 0) {
        let attempts = edge.connections.saturating_add(edge.failed);
        let ratio = edge.failed as f64 / attempts as f64;
        report.failing_edges.push(FailingEdge {
            source: edge.source.clone(),
            destination: edge.destination.clone(),
            protocol: edge.protocol.clone(),
            port: edge.port,
            connections: edge.connections,
            failed: edge.failed,
            failures: edge.failures,
            failure_ratio: (ratio * 10_000.0).round() / 10_000.0,
        });
    }
    report.failing_edges.sort_by(|a, b| {
        b.failure_ratio.total_cmp(&a.failure_ratio).then_with(|| {
            (&a.source, &a.destination, &a.protocol, a.port).cmp(&(&b.source, &b.destination, &b.protocol, b.port))
        })
    });
    report
}
