//! `smap build --format cypher|graphml`: what Neo4j and graph tools load, checked by
//! parsing what is written (GraphML with an XML parser, Cypher statement by statement)
//! against the topology JSON of the same build, and a reviewed snapshot of each.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{repo, smap, stdout};

const SHOP: &str = "fixtures/recordings/shop-simulated";

fn build(format: &str) -> String {
    let config = repo().join("fixtures/config/with-externals.yaml");
    let out = smap(&["build", SHOP, "--config", config.to_str().unwrap(), "--format", format]);
    assert!(out.status.success(), "{format}");
    stdout(&out)
}

#[test]
fn graphml_parses_and_holds_every_service_and_edge_with_typed_values() {
    let topology: Value = serde_json::from_str(&build("json")).unwrap();
    let text = build("graphml");
    let doc = roxmltree::Document::parse(&text).unwrap();
    let graph = doc.descendants().find(|n| n.has_tag_name("graph")).unwrap();
    assert_eq!(graph.attribute("edgedefault"), Some("directed"));
    let keys: BTreeMap<&str, (&str, &str)> = doc
        .descendants()
        .filter(|n| n.has_tag_name("key"))
        .map(|k| (k.attribute("id").unwrap(), (k.attribute("attr.name").unwrap(), k.attribute("attr.type").unwrap())))
        .collect();
    let data = |node: roxmltree::Node| -> BTreeMap<String, String> {
        node.children()
            .filter(|c| c.has_tag_name("data"))
            .map(|d| {
                let (name, kind) = keys[d.attribute("key").unwrap()];
                let value = d.text().unwrap_or_default().to_owned();
                if ["int", "long"].contains(&kind) {
                    value.parse::<u64>().unwrap_or_else(|e| panic!("{name} = {value:?}: {e}"));
                }
                (name.to_owned(), value)
            })
            .collect()
    };
    let nodes: BTreeMap<&str, BTreeMap<String, String>> =
        graph.children().filter(|n| n.has_tag_name("node")).map(|n| (n.attribute("id").unwrap(), data(n))).collect();
    let services = topology["services"].as_object().unwrap();
    assert_eq!(nodes.keys().copied().collect::<Vec<_>>(), services.keys().map(String::as_str).collect::<Vec<_>>());
    for (id, service) in services {
        assert_eq!(nodes[id.as_str()]["type"], service["type"].as_str().unwrap(), "{id}");
        assert_eq!(nodes[id.as_str()]["health"], service["health"].as_str().unwrap(), "{id}");
    }
    let edges: Vec<(String, String, BTreeMap<String, String>)> = graph
        .children()
        .filter(|n| n.has_tag_name("edge"))
        .map(|e| (e.attribute("source").unwrap().to_owned(), e.attribute("target").unwrap().to_owned(), data(e)))
        .collect();
    let want = topology["edges"].as_array().unwrap();
    assert_eq!(edges.len(), want.len());
    for ((source, target, values), edge) in edges.iter().zip(want) {
        assert_eq!(source, edge["source"].as_str().unwrap());
        assert_eq!(target, edge["destination"].as_str().unwrap());
        assert!(nodes.contains_key(source.as_str()) && nodes.contains_key(target.as_str()), "an edge between nodes");
        assert_eq!(values["connections"], edge["connections"].to_string());
        assert_eq!(values["bytes_sent"], edge["bytes_sent"].to_string());
    }
    insta::assert_snapshot!("shop_graphml", text);
}

#[test]
fn cypher_is_one_idempotent_statement_per_service_and_edge() {
    let topology: Value = serde_json::from_str(&build("json")).unwrap();
    let text = build("cypher");
    let statements: Vec<&str> = text.lines().collect();
    assert!(statements[0].starts_with("CREATE CONSTRAINT smap_service_id IF NOT EXISTS"), "{}", statements[0]);
    let (mut merged, mut related) = (Vec::new(), Vec::new());
    for statement in &statements[1..] {
        assert!(statement.ends_with(';'), "{statement}");
        // Quotes balance once escaped ones are set aside: every literal is closed.
        let bare = statement.replace("\\\\", "").replace("\\'", "");
        assert_eq!(bare.matches('\'').count() % 2, 0, "{statement}");
        if let Some(rest) = statement.strip_prefix("MERGE (s:Service {id: '") {
            merged.push(rest.split('\'').next().unwrap().to_owned());
            assert!(statement.contains(" SET s.namespace = ") && statement.contains("s.health = "), "{statement}");
        } else if let Some(rest) = statement.strip_prefix("MATCH (a:Service {id: '") {
            let source = rest.split('\'').next().unwrap();
            let destination = rest.split("(b:Service {id: '").nth(1).unwrap().split('\'').next().unwrap();
            assert!(statement.contains("MERGE (a)-[r:CALLS {protocol: '"), "{statement}");
            assert!(statement.contains(" SET r.connections = "), "{statement}");
            related.push((source.to_owned(), destination.to_owned()));
        } else {
            panic!("neither a node nor a relationship MERGE: {statement}");
        }
    }
    let services: Vec<String> = topology["services"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(merged, services, "every service once, no CREATE that a second load would repeat");
    let edges: Vec<(String, String)> = topology["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["source"].as_str().unwrap().to_owned(), e["destination"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(related, edges);
    insta::assert_snapshot!("shop_cypher", text);
}
