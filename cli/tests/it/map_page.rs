//! The HTML map in a real browser (headless Chromium over the DevTools protocol): the
//! offline page of `smap build --format html` names every service, loads nothing and
//! draws; its time slider shows the map growing; `smap analyze --format html` marks the
//! report's findings; and the live page of `smap watch` follows traffic in the
//! namespace cluster without a reload.
//!
//! Needs Debian's chromium (a failure under CI=true, skipped with a reason elsewhere);
//! the live test also needs root. Each takes its turn with the capture tests, which see
//! every socket on the machine, the browser's among them.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use smap_e2e::browser::{distinct_colours, require_chromium, Browser};

use crate::e2e::ONE_AT_A_TIME;
use crate::{repo, smap, stderr, stdout};

const BOOKINFO: &str = "fixtures/recordings/bookinfo-simulated";
/// A real capture, whose calls were made one after another: its map grows over time.
const CAPTURED_SHOP: &str = "fixtures/recordings/captured-shop";

/// `smap build RECORDING --format html -o FILE`, and the same build's topology.
fn build_page(recording: &str, page: &Path) -> Value {
    let out = smap(&["build", recording, "--format", "html", "-o", page.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&smap(&["build", recording]))).unwrap()
}

fn file_url(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// Ids of services at either end of an edge.
fn services_with_traffic(topology: &Value) -> Vec<String> {
    let mut ids: Vec<String> = topology["edges"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| [e["source"].as_str().unwrap().to_owned(), e["destination"].as_str().unwrap().to_owned()])
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The page's own error list, which its error and policy-violation handlers fill.
fn page_errors(browser: &mut Browser) -> String {
    browser.eval("document.getElementById('page-errors').textContent").unwrap().as_str().unwrap_or_default().to_owned()
}

#[test]
fn the_offline_page_names_every_service_loads_nothing_and_draws() {
    if !require_chromium("the_offline_page_names_every_service_loads_nothing_and_draws") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("map.html");
    let topology = build_page(BOOKINFO, &page);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"), "nothing is linked from outside");

    let mut browser = Browser::launch().unwrap();
    let url = file_url(&page);
    browser.open(&url).unwrap();
    let text = browser.text().unwrap();
    let ids = services_with_traffic(&topology);
    assert_eq!(ids.len(), 4, "Bookinfo's four services call or are called: {ids:?}");
    for id in &ids {
        let service = &topology["services"][id];
        let name = service["name"].as_str().unwrap();
        assert!(text.contains(name), "{name} ({id}) is named in the page's text");
    }
    let rows = browser.eval("document.querySelectorAll('#dependencies tbody tr').length").unwrap();
    assert_eq!(rows.as_u64().unwrap(), topology["edges"].as_array().unwrap().len() as u64);

    let drawn = "[smapMap.cy.nodes(':childless').length, smapMap.cy.edges().length]";
    assert_eq!(browser.eval(drawn).unwrap(), serde_json::json!([4, 3]), "Bookinfo's services and calls, drawn");
    browser.eval("document.getElementById('collapse-all').click()").unwrap();
    let collapsed = browser.eval(drawn).unwrap();
    assert_eq!(collapsed, serde_json::json!([1, 0]), "one namespace, its calls inside it");
    browser.eval("document.getElementById('expand-all').click()").unwrap();
    assert_eq!(browser.eval(drawn).unwrap(), serde_json::json!([4, 3]));

    let requests = browser.requests().unwrap();
    assert_eq!(requests, [url], "the page itself and nothing else");
    assert_eq!(browser.errors().unwrap(), Vec::<String>::new());
    assert_eq!(page_errors(&mut browser), "");
    let drawn = browser.eval("document.querySelectorAll('#graph canvas').length").unwrap();
    assert!(drawn.as_u64().unwrap() > 0, "Cytoscape drew into canvases");
    let colours = distinct_colours(&browser.screenshot().unwrap());
    assert!(colours > 50, "a drawn map, not a blank page: {colours} colours");
}

#[test]
fn the_time_slider_shows_the_map_growing_as_the_recording_did() {
    if !require_chromium("the_time_slider_shows_the_map_growing_as_the_recording_did") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("map.html");
    let topology = build_page(CAPTURED_SHOP, &page);
    let mut browser = Browser::launch().unwrap();
    browser.open(&file_url(&page)).unwrap();

    let rows = "document.querySelectorAll('#dependencies tbody tr').length";
    let at_end = browser.eval(rows).unwrap().as_u64().unwrap();
    assert_eq!(at_end, topology["edges"].as_array().unwrap().len() as u64, "the slider starts at the end");
    let frames = browser.eval("Number(document.getElementById('frame').max) + 1").unwrap().as_u64().unwrap();
    assert!(frames >= 2, "{frames} frames");
    let first_frame = "(function () { var s = document.getElementById('frame'); s.value = '0';
        s.dispatchEvent(new Event('input')); return true; })()";
    browser.eval(first_frame).unwrap();
    let at_start = browser.eval(rows).unwrap().as_u64().unwrap();
    assert!(at_start < at_end, "fewer dependencies at the start ({at_start}) than at the end ({at_end})");
    assert_eq!(browser.errors().unwrap(), Vec::<String>::new());
    assert_eq!(page_errors(&mut browser), "");
}

#[test]
fn the_analyze_page_marks_the_findings_of_the_report() {
    if !require_chromium("the_analyze_page_marks_the_findings_of_the_report") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("analyze.html");
    let cycle = repo().join("fixtures/topologies/cycle.json");
    let cycle = cycle.to_str().unwrap();
    let out = smap(&["analyze", cycle, "--format", "html", "-o", page.to_str().unwrap()]);
    assert!(out.status.code().is_some(), "{}", stderr(&out));
    let text_report = stdout(&smap(&["analyze", cycle]));
    let report: Value = serde_json::from_str(&stdout(&smap(&["analyze", cycle, "--format", "json"]))).unwrap();

    let mut browser = Browser::launch().unwrap();
    browser.open(&file_url(&page)).unwrap();
    let shown = browser.eval("document.getElementById('report').textContent").unwrap();
    assert_eq!(shown.as_str().unwrap(), text_report, "the findings panel is smap analyze's text report");
    let marked = browser
        .eval(
            "Array.from(document.querySelectorAll('#dependencies tbody tr'))
                .filter(function (r) { return r.lastChild.textContent.indexOf('cycle') >= 0; })
                .map(function (r) { return r.cells[0].textContent + ' -> ' + r.cells[1].textContent; })",
        )
        .unwrap();
    let mut expected: Vec<String> = report["cycles"]["components"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["edges"].as_array().unwrap().iter())
        .map(|e| format!("{} -> {}", e["source"].as_str().unwrap(), e["destination"].as_str().unwrap()))
        .collect();
    expected.sort();
    let mut marked: Vec<String> = serde_json::from_value(marked).unwrap();
    marked.sort();
    assert!(!expected.is_empty());
    assert_eq!(marked, expected, "exactly the report's cycle edges are marked");
    assert_eq!(browser.errors().unwrap(), Vec::<String>::new());
}

#[test]
fn the_live_page_follows_traffic_in_the_cluster_without_a_reload() {
    use smap_e2e::{require_root, Cluster, ServicePort};

    use crate::e2e::{kubectl_file, pod, service, Watch};

    let name = "the_live_page_follows_traffic_in_the_cluster_without_a_reload";
    if !require_root(name) || !require_chromium(name) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("livepage").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let api_svc = service(&mut cluster, "api", 20, ServicePort::tcp(80, 8080));
    let _api_server = cluster.serve_tcp(&api, 8080).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "change_debounce: 100ms\nmin_emit_interval: 100ms\n").unwrap();
    let watch = Watch::start(dir.path(), &kubectl, &config, cluster.node_name());

    let mut browser = Browser::launch().unwrap();
    let url = format!("http://{}/", watch.listen);
    browser.open(&url).unwrap();
    let services = "Array.from(document.querySelectorAll('#services tbody tr')).map(function (r) { return r.cells[0].textContent; })";
    let dependencies = "document.querySelectorAll('#dependencies tbody tr').length";
    browser.wait_for(&format!("{services}.indexOf('api') >= 0"), Duration::from_secs(20)).unwrap();
    assert_eq!(browser.eval(dependencies).unwrap(), 0, "no traffic yet");
    // Set on this document: a reload would lose it.
    browser.eval("window.smapSameDocument = true").unwrap();

    for _ in 0..3 {
        assert!(cluster.tcp_call(&web, api_svc.addr(80), 500, 1500).unwrap().is_ok());
    }
    browser
        .wait_for(&format!("{services}.indexOf('web') >= 0 && {dependencies} === 1"), Duration::from_secs(30))
        .unwrap();
    assert_eq!(browser.eval("window.smapSameDocument === true").unwrap(), true, "updated without a reload");
    let row = browser
        .eval("Array.from(document.querySelector('#dependencies tbody tr').cells).slice(0, 5).map(function (c) { return c.textContent; })")
        .unwrap();
    assert_eq!(row, serde_json::json!(["shop/web", "shop/api", "tcp/80", "3", "0"]), "web -> api, 3 connections");
    let agent = browser.eval("document.getElementById('agent').textContent").unwrap();
    assert!(agent.as_str().unwrap().starts_with("agent: events "), "{agent}");
    let requests = browser.requests().unwrap();
    assert!(requests.iter().all(|r| r.starts_with(&url)), "only the agent is asked: {requests:?}");
    assert_eq!(browser.errors().unwrap(), Vec::<String>::new());
    drop(browser);
    watch.stop();
}

#[test]
fn an_edges_details_give_why_its_connects_failed() {
    if !require_chromium("an_edges_details_give_why_its_connects_failed") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("map.html");
    let topology = build_page(CAPTURED_SHOP, &page);
    let ghost = topology["edges"].as_array().unwrap().iter().find(|e| e["destination"] == "shop/ghost").unwrap();
    assert_eq!(ghost["failures"], serde_json::json!({"abandoned": 1}), "the recording's call with a 500 ms timeout");

    let mut browser = Browser::launch().unwrap();
    browser.open(&file_url(&page)).unwrap();
    let details = "(function () {
        var edge = smapMap.cy.edges().filter(function (e) { return e.target().id() === 'shop/ghost'; })[0];
        edge.emit('tap');
        return document.getElementById('details').textContent;
    })()";
    let text = browser.eval(details).unwrap();
    let text = text.as_str().unwrap();
    assert!(text.contains("failed1 (1 abandoned)"), "{text}");
    assert!(!text.contains("retransmits"), "none retransmitted: no row for it: {text}");
    assert_eq!(page_errors(&mut browser), "");
}
