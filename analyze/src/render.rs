//! DOT and Mermaid renderings of a topology: the same graph, grouped by namespace,
//! nodes labelled by type; and the entry point of every `smap build` format (the
//! graph-database exports are in `export.rs`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::topology::{Edge, Service, Topology};

/// Output formats `smap build` offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The topology JSON.
    Json,
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
    /// Cypher `MERGE` statements for Neo4j.
    Cypher,
    /// GraphML (Gephi, yEd, networkx).
    Graphml,
}

/// Renders a topology in a format.
pub fn render(topology: &Topology, format: Format) -> String {
    match format {
        Format::Json => topology.to_json(),
        Format::Dot => to_dot(topology, &Highlights::default()),
        Format::Mermaid => to_mermaid(topology, &Highlights::default()),
        Format::Cypher => crate::export::to_cypher(topology),
        Format::Graphml => crate::export::to_graphml(topology),
    }
}

/// Nodes and edges to draw in a warning colour (cycles, single points of failure,
/// policy violations), by id and by (source, destination).
#[derive(Clone, Debug, Default)]
pub struct Highlights {
    /// Node ids.
    pub nodes: std::collections::BTreeSet<String>,
    /// Edges as (source, destination).
    pub edges: std::collections::BTreeSet<(String, String)>,
}

fn by_namespace(topology: &Topology) -> BTreeMap<&str, Vec<(&String, &Service)>> {
    let mut groups: BTreeMap<&str, Vec<(&String, &Service)>> = BTreeMap::new();
    for (id, service) in &topology.services {
        groups.entry(service.namespace.as_str()).or_default().push((id, service));
    }
    groups
}

fn edge_label(edge: &Edge) -> String {
    let mut label = format!("{}/{} x{}", edge.protocol, edge.port, edge.connections);
    if edge.failed > 0 {
        let _ = write!(label, " ({} failed)", edge.failed);
    }
    label
}

fn dot_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

/// Graphviz DOT, one cluster per namespace.
pub fn to_dot(topology: &Topology, highlights: &Highlights) -> String {
    let mut out = String::from("digraph smap {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for (index, (namespace, services)) in by_namespace(topology).into_iter().enumerate() {
        let indent = if namespace.is_empty() { "  " } else { "    " };
        if !namespace.is_empty() {
            let _ =
                writeln!(out, "  subgraph cluster_{index} {{\n    label={};\n    style=dashed;", dot_quote(namespace));
        }
        for (id, service) in services {
            let label = format!("{}\n{}", service.name, service.service_type.as_str());
            let mut attrs = format!("label={}", dot_quote(&label));
            if highlights.nodes.contains(id) {
                attrs.push_str(", color=red, penwidth=2");
            }
            let _ = writeln!(out, "{indent}{} [{attrs}];", dot_quote(id));
        }
        if !namespace.is_empty() {
            out.push_str("  }\n");
        }
    }
    for edge in &topology.edges {
        let mut attrs = format!("label={}", dot_quote(&edge_label(edge)));
        if highlights.edges.contains(&(edge.source.clone(), edge.destination.clone())) {
            attrs.push_str(", color=red, penwidth=2");
        }
        if edge.protocol == "udp" {
            attrs.push_str(", style=dashed");
        }
        let _ = writeln!(out, "  {} -> {} [{attrs}];", dot_quote(&edge.source), dot_quote(&edge.destination));
    }
    out.push_str("}\n");
    out
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// A Mermaid flowchart, one subgraph per namespace.
pub fn to_mermaid(topology: &Topology, highlights: &Highlights) -> String {
    let ids: BTreeMap<&str, String> =
        topology.services.keys().enumerate().map(|(i, id)| (id.as_str(), format!("n{i}"))).collect();
    let mut out = String::from("flowchart LR\n");
    for (index, (namespace, services)) in by_namespace(topology).into_iter().enumerate() {
        let indent = if namespace.is_empty() { "  " } else { "    " };
        if !namespace.is_empty() {
            let _ = writeln!(out, "  subgraph ns{index}[\"{}\"]", mermaid_text(namespace));
        }
        for (id, service) in services {
            let _ = writeln!(
                out,
                "{indent}{}[\"{}<br/>{}\"]",
                ids[id.as_str()],
                mermaid_text(&service.name),
                service.service_type.as_str()
            );
        }
        if !namespace.is_empty() {
            out.push_str("  end\n");
        }
    }
    let mut red_edges = Vec::new();
    for (index, edge) in topology.edges.iter().enumerate() {
        let (Some(source), Some(destination)) = (ids.get(edge.source.as_str()), ids.get(edge.destination.as_str()))
        else {
            continue;
        };
        let arrow = if edge.protocol == "udp" { "-.->" } else { "-->" };
        let _ = writeln!(out, "  {source} {arrow}|\"{}\"| {destination}", mermaid_text(&edge_label(edge)));
        if highlights.edges.contains(&(edge.source.clone(), edge.destination.clone())) {
            red_edges.push(index.to_string());
        }
    }
    for id in &highlights.nodes {
        if let Some(node) = ids.get(id.as_str()) {
            let _ = writeln!(out, "  style {node} stroke:#d00,stroke-width:3px");
        }
    }
    if !red_edges.is_empty() {
        let _ = writeln!(out, "  linkStyle {} stroke:#d00,stroke-width:3px", red_edges.join(","));
    }
    out
}
