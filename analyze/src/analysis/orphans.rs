//! Orphaned services: what nothing used in the window.

use petgraph::Direction;
use serde::Serialize;

use crate::topology::{NodeKind, ServiceType};

use super::entries::{EntryPoint, EntryReason};
use super::graph::ServiceGraph;

/// Why a service is an orphan.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrphanReason {
    /// No traffic in the window: nothing called it and it called nothing (calls to
    /// itself and calls from nodes, which are kubelet probes, aside).
    Idle,
    /// A Kubernetes Service nothing but nodes called, not even from outside, though a
    /// Service exists to be called; it only made calls of its own. Proxies (ingress
    /// controllers, gateways) are how traffic gets in and are not counted. A frontend
    /// behind a load balancer looks like this when externals are not recorded: declare
    /// it in the policy's `entry_points`.
    Uncalled,
}

impl OrphanReason {
    /// How the reason reads in a report.
    pub fn describe(self) -> &'static str {
        match self {
            OrphanReason::Idle => "idle: no traffic in the window",
            OrphanReason::Uncalled => {
                "uncalled: a Service nothing called (declare it in entry_points if it takes outside traffic)"
            }
        }
    }
}

/// A service nothing used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Orphan {
    /// Service id.
    pub id: String,
    /// Why.
    pub reason: OrphanReason,
}

/// The API server's Service, which Kubernetes makes in every cluster with the
/// control plane's addresses as endpoints: it is no application's, and a window in
/// which no pod called it says nothing about whether it is needed.
pub const API_SERVER: &str = "default/kubernetes";

/// Orphans in id order. Only Services and workloads can be orphans; a workload without
/// a Service that nothing calls is a worker or a job doing its work, not an orphan, and
/// a proxy nothing in the cluster calls is how outside traffic gets in.
pub fn orphans(graph: &ServiceGraph<'_>, entries: &[(petgraph::graph::NodeIndex, EntryPoint)]) -> Vec<Orphan> {
    let mut orphans = Vec::new();
    for node in graph.nodes() {
        // Kubelet probes come from nodes and reach every pod with a probe: they are not use.
        let used =
            graph.neighbors(node, Direction::Incoming).any(|caller| graph.service(caller).kind != NodeKind::Node);
        if !graph.in_cluster(node) || used || graph.id(node) == API_SERVER {
            continue;
        }
        let service = graph.service(node);
        let calls = graph.neighbors(node, Direction::Outgoing).next().is_some();
        let declared =
            entries.iter().any(|(entry, point)| *entry == node && point.reasons.contains(&EntryReason::Declared));
        let reason = if !calls {
            OrphanReason::Idle
        } else if service.kind == NodeKind::Service && service.service_type != ServiceType::Proxy && !declared {
            OrphanReason::Uncalled
        } else {
            continue;
        };
        orphans.push(Orphan { id: graph.id(node).to_owned(), reason });
    }
    orphans
}
