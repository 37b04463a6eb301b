//! Entry points: where traffic enters the service map, so where dependency chains start
//! and what a service's loss can cut the rest of the cluster off from.

use petgraph::graph::NodeIndex;
use petgraph::Direction;
use serde::Serialize;

use crate::topology::NodeKind;

use super::graph::ServiceGraph;
use super::selector::Selector;

/// Why a service is an entry point.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryReason {
    /// An address outside the cluster calls it.
    ExternalTraffic,
    /// Nothing in the cluster calls it, but it calls others (a frontend behind a load
    /// balancer smap did not see, a job, a worker).
    NoCallers,
    /// The policy's `entry_points` name it.
    Declared,
}

impl EntryReason {
    /// How the reason reads in a report.
    pub fn describe(self) -> &'static str {
        match self {
            EntryReason::ExternalTraffic => "external traffic",
            EntryReason::NoCallers => "no callers in the cluster",
            EntryReason::Declared => "declared in the policy",
        }
    }
}

/// An entry point and why it is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EntryPoint {
    /// Service id.
    pub id: String,
    /// Why, sorted.
    pub reasons: Vec<EntryReason>,
}

/// Entry points of a graph, in id order, with their nodes.
///
/// Only Services and workloads are entry points. Calls from nodes do not count as
/// external traffic: they are mostly kubelet probes, which reach every pod with a
/// probe and would make every service an entry point.
pub fn entry_points(graph: &ServiceGraph<'_>, declared: &[Selector]) -> Vec<(NodeIndex, EntryPoint)> {
    let mut entries = Vec::new();
    for node in graph.nodes() {
        if !graph.in_cluster(node) {
            continue;
        }
        let callers: Vec<NodeKind> =
            graph.neighbors(node, Direction::Incoming).map(|caller| graph.service(caller).kind).collect();
        let has_callees = graph.neighbors(node, Direction::Outgoing).next().is_some();
        let mut reasons = Vec::new();
        if callers.contains(&NodeKind::External) {
            reasons.push(EntryReason::ExternalTraffic);
        }
        let in_cluster_callers = callers.iter().any(|kind| super::graph::in_cluster(*kind));
        if !in_cluster_callers && has_callees {
            reasons.push(EntryReason::NoCallers);
        }
        let service = graph.service(node);
        if declared.iter().any(|selector| selector.matches(graph.id(node), service)) {
            reasons.push(EntryReason::Declared);
        }
        if !reasons.is_empty() {
            entries.push((node, EntryPoint { id: graph.id(node).to_owned(), reasons }));
        }
    }
    entries
}
