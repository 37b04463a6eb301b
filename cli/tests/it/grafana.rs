//! The Grafana dashboard and datasource settings in `deploy/grafana/`: every query is
//! PromQL that Prometheus's own parser accepts (`promtool check rules`), and names only
//! series smap serves (read from `/metrics` after a replay of the shop fixture).

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use smap_analyze::events::EmitterOptions;
use smap_capture::live::record::LiveConsumer;
use smap_capture::live::serve::LiveState;
use smap_capture::live::watch::WatchConsumer;
use smap_e2e::say_skipped;
use smap_replay::{MergedEvents, Recording};

use crate::repo;

/// The sample names `/metrics` serves once the shop fixture went through the live path.
fn served_names() -> BTreeSet<String> {
    let state = LiveState::new();
    let mut consumer =
        WatchConsumer::new(Default::default(), EmitterOptions::default(), Box::new(std::io::sink()), state.clone())
            .unwrap();
    let recording = Recording::open(&repo().join("fixtures/recordings/shop-simulated")).unwrap();
    let events: Vec<_> = MergedEvents::new(&[recording], Vec::new()).unwrap().map(Result::unwrap).collect();
    consumer.ready();
    consumer.events(&events);
    consumer.finish().unwrap();
    let text = state.render_metrics().unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

/// Every PromQL expression of the dashboard's panels.
fn expressions(dashboard: &Value) -> Vec<String> {
    dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_dashboard_queries_parse_and_name_only_series_smap_serves() {
    let text = std::fs::read_to_string(repo().join("deploy/grafana/smap-dashboard.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).unwrap();
    let exprs = expressions(&dashboard);
    assert!(exprs.len() >= 10, "{exprs:?}");
    let graph = dashboard["panels"].as_array().unwrap().iter().find(|p| p["type"] == "nodeGraph");
    assert_eq!(graph.unwrap()["targets"][0]["queryType"], "serviceMap", "the Node Graph panel draws the service graph");

    let served = served_names();
    for expr in &exprs {
        let names = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .filter(|t| t.starts_with("smap_") || t.starts_with("traces_service_graph_"));
        for name in names {
            assert!(served.contains(name), "{name} (in `{expr}`) is not served; /metrics has {served:?}");
        }
    }

    let datasources: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo().join("deploy/grafana/datasources.yaml")).unwrap())
            .unwrap();
    let list = datasources["datasources"].as_sequence().unwrap();
    let uid = |kind: &str| list.iter().find(|d| d["type"].as_str() == Some(kind)).unwrap()["uid"].clone();
    let tempo = list.iter().find(|d| d["type"].as_str() == Some("tempo")).unwrap();
    assert_eq!(
        tempo["jsonData"]["serviceMap"]["datasourceUid"],
        uid("prometheus"),
        "the service graph reads smap's series"
    );

    // Prometheus's own parser, through promtool: each query as a recording rule.
    let Some(promtool) =
        ["/usr/bin/promtool", "/usr/local/bin/promtool"].into_iter().find(|p| std::path::Path::new(p).exists())
    else {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "promtool missing; CI=true, where it must run");
        return say_skipped("skipped: the PromQL check needs promtool (Debian's prometheus package)");
    };
    let dir = tempfile::tempdir().unwrap();
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, expr)| serde_json::json!({"record": format!("smap:dashboard_query_{i}"), "expr": expr}))
        .collect();
    let file = dir.path().join("rules.json");
    // JSON is YAML: promtool reads it as a rules file.
    std::fs::write(&file, serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string()).unwrap();
    let check = Command::new(promtool).args(["check", "rules"]).arg(&file).output().unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}
