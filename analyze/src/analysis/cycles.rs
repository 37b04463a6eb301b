//! Circular dependencies: the strongly connected components of the graph (Tarjan) and
//! cycles inside each.
//!
//! A component can hold exponentially many elementary cycles, and enumerating them can
//! take exponential time even when few are wanted, which a CI gate cannot afford. So
//! each component lists, for every call inside it, the shortest cycle through that call
//! (the call, then a shortest path back, by A*): every call of the component is on a
//! listed cycle, in polynomial time. At most [`MAX_CYCLES_PER_COMPONENT`] are listed.

use std::collections::BTreeSet;

use petgraph::algo::{astar, tarjan_scc};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef as _;
use serde::Serialize;

use super::graph::ServiceGraph;
use super::EdgeRef;

/// The most cycles listed per component.
pub const MAX_CYCLES_PER_COMPONENT: usize = 100;

/// Services that all reach each other, and the cycles among them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Component {
    /// Service ids, sorted.
    pub services: Vec<String>,
    /// The shortest cycle through each call, each from its smallest id and without
    /// repeating it at the end (`[a, b, c]` is `a -> b -> c -> a`); shortest first, then
    /// by ids.
    pub cycles: Vec<Vec<String>>,
    /// Whether there were more than [`MAX_CYCLES_PER_COMPONENT`] cycles to list.
    pub truncated: bool,
    /// Every call between the component's services, sorted.
    pub edges: Vec<EdgeRef>,
}

/// Circular dependencies of a graph.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cycles {
    /// Components of two or more services, by their smallest id.
    pub components: Vec<Component>,
    /// Services that call themselves (peers of one service); not counted as cycles.
    pub self_calls: Vec<String>,
}

/// Finds every circular dependency.
pub fn cycles(graph: &ServiceGraph<'_>) -> Cycles {
    let mut components: Vec<Component> = tarjan_scc(&graph.graph)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .map(|mut scc| {
            scc.sort();
            component(graph, &scc)
        })
        .collect();
    components.sort_by(|a, b| a.services.cmp(&b.services));
    Cycles { components, self_calls: graph.self_calls.keys().map(|id| (*id).to_owned()).collect() }
}

fn component(graph: &ServiceGraph<'_>, scc: &[NodeIndex]) -> Component {
    // The component alone; `filter_map` keeps the order of the remaining nodes (so
    // smaller indices are still smaller ids) and weights remember the original node.
    let sub: DiGraph<NodeIndex, ()> =
        graph.graph.filter_map(|node, _| scc.binary_search(&node).is_ok().then_some(node), |_, _| Some(()));
    let mut found: BTreeSet<Vec<NodeIndex>> = BTreeSet::new();
    for call in sub.edge_references() {
        let (from, to) = (call.source(), call.target());
        // Every node of a component reaches every other, so a path back always exists.
        let Some((_, back)) = astar(&sub, to, |node| node == from, |_| 1_u32, |_| 0) else { continue };
        // `back` runs from `to` to `from`; the cycle is `from`, then `back` without its end.
        let mut cycle: Vec<NodeIndex> = std::iter::once(from).chain(back[..back.len() - 1].iter().copied()).collect();
        // Written from its smallest id, so each cycle is found once whatever call found it.
        let smallest = cycle.iter().enumerate().min_by_key(|(_, node)| **node).map_or(0, |(at, _)| at);
        cycle.rotate_left(smallest);
        found.insert(cycle.iter().map(|node| sub[*node]).collect());
    }
    let mut cycles: Vec<Vec<String>> =
        found.iter().map(|cycle| cycle.iter().map(|node| graph.id(*node).to_owned()).collect()).collect();
    cycles.sort_by(|a, b| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
    let truncated = cycles.len() > MAX_CYCLES_PER_COMPONENT;
    cycles.truncate(MAX_CYCLES_PER_COMPONENT);
    let mut edges: Vec<EdgeRef> = sub
        .edge_references()
        .map(|call| EdgeRef::new(graph.id(sub[call.source()]), graph.id(sub[call.target()])))
        .collect();
    edges.sort();
    Component { services: scc.iter().map(|n| graph.id(*n).to_owned()).collect(), cycles, truncated, edges }
}
