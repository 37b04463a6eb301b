//! One petgraph graph of a topology, built once and shared by every analysis.
//!
//! A topology lists one edge per (caller, callee, protocol, port); the analyses reason
//! about dependencies, so the graph has one edge per (caller, callee) with the traffic
//! of all its ports summed. Calls of a service to itself are kept aside: they are peers
//! of one service talking to each other (a database cluster, gossip), not a dependency,
//! and a self-loop would make every such service a "cycle".

use std::collections::{BTreeMap, BTreeSet};

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::topology::{NodeKind, Service, Topology};

use super::AnalysisError;

/// The traffic of every edge from one node to another, over all protocols and ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// Established connections.
    pub connections: u64,
    /// Failed connection attempts.
    pub failed: u64,
    /// `protocol/port` of each edge, sorted.
    pub ports: BTreeSet<String>,
}

impl Link {
    fn add(&mut self, edge: &crate::topology::Edge) {
        self.connections += edge.connections;
        self.failed += edge.failed;
        self.ports.insert(format!("{}/{}", edge.protocol, edge.port));
    }
}

/// The dependencies of a topology by (caller, callee), self-calls included, checking
/// that every edge names a listed service.
pub fn dependency_pairs(topology: &Topology) -> Result<BTreeMap<(&str, &str), Link>, AnalysisError> {
    let mut pairs: BTreeMap<(&str, &str), Link> = BTreeMap::new();
    for edge in &topology.edges {
        for end in [&edge.source, &edge.destination] {
            if !topology.services.contains_key(end) {
                return Err(AnalysisError::UnknownService {
                    edge: format!("{} -> {}", edge.source, edge.destination),
                    missing: end.clone(),
                });
            }
        }
        pairs.entry((edge.source.as_str(), edge.destination.as_str())).or_default().add(edge);
    }
    Ok(pairs)
}

/// Whether a node is a workload of the cluster (a Service or a workload), as opposed to
/// an address outside it or a node's host network.
pub fn in_cluster(kind: NodeKind) -> bool {
    matches!(kind, NodeKind::Service | NodeKind::Workload)
}

/// A topology as a directed graph: an edge from caller to callee.
///
/// Nodes are added in id order, so a smaller [`NodeIndex`] is a smaller id and every
/// traversal that starts from sorted nodes is deterministic.
#[derive(Debug)]
pub struct ServiceGraph<'t> {
    /// The topology the graph was built from.
    pub topology: &'t Topology,
    /// Node weights are service ids; one edge per (caller, callee), no self-loops.
    pub graph: DiGraph<&'t str, Link>,
    /// Node of each id.
    pub index: BTreeMap<&'t str, NodeIndex>,
    /// Services that call themselves, with that traffic.
    pub self_calls: BTreeMap<&'t str, Link>,
}

impl<'t> ServiceGraph<'t> {
    /// Builds the graph; fails when an edge names a service the topology does not list.
    pub fn new(topology: &'t Topology) -> Result<Self, AnalysisError> {
        let pairs = dependency_pairs(topology)?;
        let mut graph = DiGraph::with_capacity(topology.services.len(), pairs.len());
        let mut index = BTreeMap::new();
        for id in topology.services.keys() {
            index.insert(id.as_str(), graph.add_node(id.as_str()));
        }
        let mut self_calls = BTreeMap::new();
        for ((source, destination), link) in pairs {
            if source == destination {
                self_calls.insert(source, link);
            } else {
                graph.add_edge(index[source], index[destination], link);
            }
        }
        Ok(ServiceGraph { topology, graph, index, self_calls })
    }

    /// The id of a node.
    pub fn id(&self, node: NodeIndex) -> &'t str {
        self.graph[node]
    }

    /// The service of a node.
    pub fn service(&self, node: NodeIndex) -> &'t Service {
        // Every node was made from a key of `topology.services`.
        &self.topology.services[self.graph[node]]
    }

    /// Whether a node is a Service or workload of the cluster.
    pub fn in_cluster(&self, node: NodeIndex) -> bool {
        in_cluster(self.service(node).kind)
    }

    /// Every node, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.node_indices()
    }

    /// Distinct callers (`Incoming`) or callees (`Outgoing`) of a node, other than itself.
    pub fn neighbors(&self, node: NodeIndex, direction: Direction) -> impl Iterator<Item = NodeIndex> + '_ {
        self.graph.neighbors_directed(node, direction)
    }
}
