//! Dependency chains: the longest call path from each entry point, and the critical
//! path (the longest of all).
//!
//! The longest simple path of a graph with cycles is NP-hard, so chains are computed on
//! the graph without the back edges of a depth-first search from the entry points:
//! what remains is acyclic, and in a graph without cycles (the usual case) the result is
//! exact. A chain never visits a service twice; cycles are reported on their own.

use std::collections::HashSet;

use petgraph::graph::NodeIndex;
use petgraph::visit::{depth_first_search, DfsEvent};
use serde::Serialize;

use super::entries::EntryPoint;
use super::graph::ServiceGraph;

/// The longest chain from one entry point.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// The entry point it starts at.
    pub entry: String,
    /// Calls in the chain (`a -> b -> c` has depth 2).
    pub depth: usize,
    /// Service ids, from the entry point on.
    pub services: Vec<String>,
}

/// Chains of a graph.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Chains {
    /// Depth of the longest chain (the critical path), 0 without entry points.
    pub max_depth: usize,
    /// The longest chain of each entry point, longest first, then by entry id. Ties
    /// between chains of one entry point go to the one whose ids sort first.
    pub longest: Vec<Chain>,
}

impl Chains {
    /// The critical path: the longest chain of all.
    pub fn critical(&self) -> Option<&Chain> {
        self.longest.first()
    }
}

/// Longest chains from each entry point.
pub fn chains(graph: &ServiceGraph<'_>, entries: &[(NodeIndex, EntryPoint)]) -> Chains {
    let g = &graph.graph;
    // Entry points first, so the back edges cut are the ones that lead back towards
    // where traffic comes from; then every other node, so the whole graph is covered.
    let starts: Vec<NodeIndex> = entries.iter().map(|(node, _)| *node).chain(g.node_indices()).collect();
    let mut back_edges = HashSet::new();
    let mut finish_order = Vec::with_capacity(g.node_count());
    depth_first_search(g, starts, |event| match event {
        DfsEvent::BackEdge(from, to) => {
            back_edges.insert((from, to));
        }
        DfsEvent::Finish(node, _) => finish_order.push(node),
        _ => {}
    });
    // Without its back edges the graph is acyclic and finish order is a reverse
    // topological order: every callee is done before its callers.
    let mut best: Vec<(usize, Option<NodeIndex>)> = vec![(0, None); g.node_count()];
    for &node in &finish_order {
        for callee in g.neighbors(node) {
            if back_edges.contains(&(node, callee)) {
                continue;
            }
            let depth = best[callee.index()].0 + 1;
            let (current, next) = best[node.index()];
            if depth > current || (depth == current && next.is_some_and(|next| callee < next)) {
                best[node.index()] = (depth, Some(callee));
            }
        }
    }
    let mut longest: Vec<Chain> = entries
        .iter()
        .map(|(node, entry)| {
            let mut services = vec![graph.id(*node).to_owned()];
            let mut at = *node;
            while let Some(next) = best[at.index()].1 {
                services.push(graph.id(next).to_owned());
                at = next;
            }
            Chain { entry: entry.id.clone(), depth: best[node.index()].0, services }
        })
        .collect();
    longest.sort_by(|a, b| b.depth.cmp(&a.depth).then_with(|| a.entry.cmp(&b.entry)));
    Chains { max_depth: longest.first().map_or(0, |chain| chain.depth), longest }
}
