//! Single points of failure: what the loss of each service takes down, ranked.
//!
//! Three measures, all counting Services and workloads of the cluster only:
//! - transitive dependents: every service that calls it, directly or through others
//!   (reverse reachability); they fail or degrade when it goes;
//! - cut off: every service that entry points reach only through it, from the
//!   dominator tree (Cooper, Harvey and Kennedy's algorithm) rooted at a virtual node
//!   calling every entry point; traffic no longer reaches them when it goes;
//! - articulation point: whether removing it splits the cluster's map in two (Tarjan,
//!   on the map without directions).
//!
//! "Affected" is the union of the first two. The ranking divides it by the ready
//! endpoints, so one ready pod behind many dependents comes first: losing that pod
//! loses the service.

use std::cmp::Ordering;
use std::collections::HashSet;

use petgraph::algo::articulation_points::articulation_points;
use petgraph::algo::dominators::simple_fast;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex, UnGraph};
use petgraph::visit::{Dfs, Reversed, VisitMap};
use petgraph::Direction;
use serde::Serialize;

use crate::topology::{Endpoints, Health, NodeKind, ServiceType};

use super::entries::EntryPoint;
use super::graph::ServiceGraph;

/// What the loss of one service takes down.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Impact {
    /// Position in the ranking, from 1.
    pub rank: usize,
    /// Service id.
    pub id: String,
    /// What the node stands for.
    pub kind: NodeKind,
    /// Detected type.
    #[serde(rename = "type")]
    pub service_type: ServiceType,
    /// Health at the end of the window.
    pub health: Health,
    /// Ready and total endpoints (replicas).
    pub endpoints: Endpoints,
    /// Services that call it directly.
    pub dependents: usize,
    /// Services that call it directly or through others.
    pub transitive_dependents: usize,
    /// Services that entry points reach only through it.
    pub cut_off: usize,
    /// Services in either of the two sets above.
    pub affected: usize,
    /// Whether removing it splits the cluster's service map.
    pub articulation_point: bool,
    /// A single point of failure: a Service or workload with at most one ready endpoint
    /// (and a known health) whose loss affects at least `min_affected` services.
    pub spof: bool,
}

/// Ranked failure impact.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinglePoints {
    /// How many affected services make a service without redundancy a single point of
    /// failure.
    pub min_affected: usize,
    /// Every node whose loss affects at least one service, worst first: by affected
    /// services per ready endpoint, then affected services, then id.
    pub ranked: Vec<Impact>,
}

impl SinglePoints {
    /// The services flagged as single points of failure, in rank order.
    pub fn flagged(&self) -> impl Iterator<Item = &Impact> {
        self.ranked.iter().filter(|impact| impact.spof)
    }
}

/// Ranks every node by what its loss takes down.
pub fn single_points(
    graph: &ServiceGraph<'_>,
    entries: &[(NodeIndex, EntryPoint)],
    min_affected: usize,
) -> SinglePoints {
    let g = &graph.graph;
    let cut_off = dominated(graph, entries);
    let articulation = articulation(graph);
    let reversed = Reversed(g);
    let mut ranked = Vec::new();
    for node in graph.nodes() {
        let mut affected: HashSet<NodeIndex> = HashSet::new();
        let mut dfs = Dfs::new(reversed, node);
        while let Some(dependent) = dfs.next(reversed) {
            if dependent != node && graph.in_cluster(dependent) {
                affected.insert(dependent);
            }
        }
        let transitive_dependents = affected.len();
        affected.extend(cut_off[node.index()].iter().copied());
        if affected.is_empty() {
            continue;
        }
        let service = graph.service(node);
        let spof = graph.in_cluster(node)
            && service.health != Health::Unknown
            && service.endpoints.ready <= 1
            && affected.len() >= min_affected;
        ranked.push(Impact {
            rank: 0,
            id: graph.id(node).to_owned(),
            kind: service.kind,
            service_type: service.service_type,
            health: service.health,
            endpoints: service.endpoints,
            dependents: graph.neighbors(node, Direction::Incoming).filter(|n| graph.in_cluster(*n)).count(),
            transitive_dependents,
            cut_off: cut_off[node.index()].len(),
            affected: affected.len(),
            articulation_point: articulation.contains(&node),
            spof,
        });
    }
    ranked.sort_by(worse_first);
    for (rank, impact) in ranked.iter_mut().enumerate() {
        impact.rank = rank + 1;
    }
    SinglePoints { min_affected, ranked }
}

/// Ready endpoints that share the load, for ranking: unknown redundancy (externals,
/// Services without endpoints smap could see) counts as one.
fn redundancy(impact: &Impact) -> u64 {
    if impact.health == Health::Unknown {
        1
    } else {
        u64::from(impact.endpoints.ready.max(1))
    }
}

fn worse_first(a: &Impact, b: &Impact) -> Ordering {
    // a.affected / a.redundancy against b's, without floating point.
    let a_score = a.affected as u64 * redundancy(b);
    let b_score = b.affected as u64 * redundancy(a);
    b_score.cmp(&a_score).then_with(|| b.affected.cmp(&a.affected)).then_with(|| a.id.cmp(&b.id))
}

/// For each node, the in-cluster services it strictly dominates from the entry points.
fn dominated(graph: &ServiceGraph<'_>, entries: &[(NodeIndex, EntryPoint)]) -> Vec<Vec<NodeIndex>> {
    let g = &graph.graph;
    let mut rooted: DiGraph<(), ()> = g.map(|_, _| (), |_, _| ());
    let root = rooted.add_node(());
    let mut roots: Vec<NodeIndex> = entries.iter().map(|(node, _)| *node).collect();
    let mut reached = Dfs::empty(g);
    for node in &roots {
        reached.move_to(*node);
        while reached.next(g).is_some() {}
    }
    // What no entry point reaches (a cycle nothing else calls, callers from outside the
    // cluster) hangs off the root too, so every node is in the dominator tree. Tarjan
    // lists components callees first; walking it backwards meets callers first, so only
    // components nothing else calls become roots.
    for component in tarjan_scc(g).into_iter().rev() {
        if component.iter().all(|node| !reached.discovered.is_visited(node)) {
            for node in &component {
                reached.move_to(*node);
                while reached.next(g).is_some() {}
            }
            roots.extend(component);
        }
    }
    for node in roots {
        rooted.add_edge(root, node, ());
    }
    let dominators = simple_fast(&rooted, root);
    let mut dominated = vec![Vec::new(); g.node_count()];
    for node in g.node_indices() {
        if !graph.in_cluster(node) {
            continue;
        }
        for dominator in dominators.strict_dominators(node).into_iter().flatten() {
            if dominator != root {
                dominated[dominator.index()].push(node);
            }
        }
    }
    dominated
}

/// Articulation points of the cluster's services, with directions ignored.
fn articulation(graph: &ServiceGraph<'_>) -> HashSet<NodeIndex> {
    let cluster: UnGraph<NodeIndex, ()> =
        graph.graph.filter_map(|node, _| graph.in_cluster(node).then_some(node), |_, _| Some(())).into_edge_type();
    articulation_points(&cluster).into_iter().map(|node| cluster[node]).collect()
}
