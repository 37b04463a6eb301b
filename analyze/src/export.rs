//! Graph-database and graph-tool exports of a topology: Cypher for Neo4j (idempotent
//! `MERGE` statements, so loading the map of every day into one database updates it)
//! and GraphML for Gephi, yEd and networkx.

use std::fmt::Write as _;

use crate::events::kind_str;
use crate::topology::Topology;

/// A Cypher string literal.
fn cypher_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// Cypher statements, one per line: a `MERGE` per service (node label `Service`, keyed
/// by `id`, its properties set), then a `MERGE` per edge (relationship `CALLS`, keyed
/// by protocol and port, its counters set). Running them twice changes nothing.
pub fn to_cypher(topology: &Topology) -> String {
    let mut out =
        String::from("CREATE CONSTRAINT smap_service_id IF NOT EXISTS FOR (s:Service) REQUIRE s.id IS UNIQUE;\n");
    for (id, service) in &topology.services {
        let version = service.version.as_deref().map_or_else(|| "null".to_owned(), cypher_string);
        let _ = writeln!(
            out,
            "MERGE (s:Service {{id: {}}}) SET s.namespace = {}, s.name = {}, s.kind = {}, s.type = {}, s.version = {version}, s.health = {}, s.endpoints_ready = {}, s.endpoints_total = {};",
            cypher_string(id),
            cypher_string(&service.namespace),
            cypher_string(&service.name),
            cypher_string(kind_str(service.kind)),
            cypher_string(service.service_type.as_str()),
            cypher_string(service.health.as_str()),
            service.endpoints.ready,
            service.endpoints.total,
        );
    }
    for edge in &topology.edges {
        let _ = writeln!(
            out,
            "MATCH (a:Service {{id: {}}}), (b:Service {{id: {}}}) MERGE (a)-[r:CALLS {{protocol: {}, port: {}}}]->(b) SET r.connections = {}, r.failed = {}, r.bytes_sent = {}, r.bytes_received = {}, r.first_seen = datetime({}), r.last_seen = datetime({});",
            cypher_string(&edge.source),
            cypher_string(&edge.destination),
            cypher_string(&edge.protocol),
            edge.port,
            edge.connections,
            edge.failed,
            edge.bytes_sent,
            edge.bytes_received,
            cypher_string(&edge.first_seen),
            cypher_string(&edge.last_seen),
        );
    }
    out
}

/// Text escaped for XML content and attribute values.
fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

const NODE_KEYS: [(&str, &str); 8] = [
    ("namespace", "string"),
    ("name", "string"),
    ("kind", "string"),
    ("type", "string"),
    ("version", "string"),
    ("health", "string"),
    ("endpoints_ready", "int"),
    ("endpoints_total", "int"),
];

const EDGE_KEYS: [(&str, &str); 8] = [
    ("protocol", "string"),
    ("port", "int"),
    ("connections", "long"),
    ("failed", "long"),
    ("bytes_sent", "long"),
    ("bytes_received", "long"),
    ("first_seen", "string"),
    ("last_seen", "string"),
];

/// GraphML: one directed graph, a node per service (keyed by id), an edge per
/// protocol and port, with typed attributes.
pub fn to_graphml(topology: &Topology) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<graphml xmlns=\"http://graphml.graphdrawing.org/xmlns\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:schemaLocation=\"http://graphml.graphdrawing.org/xmlns http://graphml.graphdrawing.org/xmlns/1.0/graphml.xsd\">\n",
    );
    for (name, kind) in NODE_KEYS {
        let _ = writeln!(out, "  <key id=\"n_{name}\" for=\"node\" attr.name=\"{name}\" attr.type=\"{kind}\"/>");
    }
    for (name, kind) in EDGE_KEYS {
        let _ = writeln!(out, "  <key id=\"e_{name}\" for=\"edge\" attr.name=\"{name}\" attr.type=\"{kind}\"/>");
    }
    out.push_str("  <graph id=\"smap\" edgedefault=\"directed\">\n");
    for (id, service) in &topology.services {
        let _ = writeln!(out, "    <node id=\"{}\">", xml(id));
        let mut values = vec![
            ("namespace", xml(&service.namespace)),
            ("name", xml(&service.name)),
            ("kind", kind_str(service.kind).to_owned()),
            ("type", service.service_type.as_str().to_owned()),
        ];
        if let Some(version) = &service.version {
            values.push(("version", xml(version)));
        }
        values.push(("health", service.health.as_str().to_owned()));
        values.push(("endpoints_ready", service.endpoints.ready.to_string()));
        values.push(("endpoints_total", service.endpoints.total.to_string()));
        for (key, value) in values {
            let _ = writeln!(out, "      <data key=\"n_{key}\">{value}</data>");
        }
        out.push_str("    </node>\n");
    }
    for (index, edge) in topology.edges.iter().enumerate() {
        let _ = writeln!(
            out,
            "    <edge id=\"e{index}\" source=\"{}\" target=\"{}\">",
            xml(&edge.source),
            xml(&edge.destination)
        );
        let values = [
            ("protocol", xml(&edge.protocol)),
            ("port", edge.port.to_string()),
            ("connections", edge.connections.to_string()),
            ("failed", edge.failed.to_string()),
            ("bytes_sent", edge.bytes_sent.to_string()),
            ("bytes_received", edge.bytes_received.to_string()),
            ("first_seen", xml(&edge.first_seen)),
            ("last_seen", xml(&edge.last_seen)),
        ];
        for (key, value) in values {
            let _ = writeln!(out, "      <data key=\"e_{key}\">{value}</data>");
        }
        out.push_str("    </edge>\n");
    }
    out.push_str("  </graph>\n</graphml>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(cypher_string(r"it's a \ path"), r"'it\'s a \\ path'");
        assert_eq!(xml(r#"<a href="x">&'"#), "&lt;a href=&quot;x&quot;&gt;&amp;&apos;");
    }
}
