//! The HTML map at scale, in headless Chromium: for generated topologies up to 500
//! services and 3,000 edges, the page's size, the time from opening it to its first
//! drawing, the layout time of the opening view (namespaces collapsed past 150
//! services) and of every service expanded, and how long a search takes to highlight.
//!
//! `smap-map-page` prints a markdown table for BENCHMARKS.md. Needs Debian's chromium.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Instant;

use smap_analyze::html::{Page, Source};
use smap_analyze::topology::{
    BuildStats, Edge, Endpoints, Failures, Health, NodeKind, Service, ServiceType, Topology, Window, TOPOLOGY_SCHEMA,
};
use smap_e2e::browser::Browser;

/// Services per namespace of the generated clusters.
const PER_NAMESPACE: usize = 20;

/// A cluster of `services` in namespaces of [`PER_NAMESPACE`], with `edges` calls, four
/// in five within a namespace; deterministic.
fn generated(services: usize, edges: usize) -> Topology {
    let mut seed: u64 = 0x5eed;
    let mut next = move |n: usize| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        usize::try_from(seed >> 33).unwrap_or(0) % n.max(1)
    };
    let id = |i: usize| format!("ns{:02}/svc{i:03}", i / PER_NAMESPACE);
    let mut nodes = BTreeMap::new();
    for i in 0..services {
        let kind = if i % 10 == 9 { NodeKind::Workload } else { NodeKind::Service };
        nodes.insert(
            id(i),
            Service {
                namespace: format!("ns{:02}", i / PER_NAMESPACE),
                name: format!("svc{i:03}"),
                kind,
                service_type: [ServiceType::Api, ServiceType::Database, ServiceType::Cache][i % 3],
                version: Some(format!("1.{}.0", i % 7)),
                health: [Health::Healthy, Health::Healthy, Health::Degraded, Health::Down][i % 4],
                endpoints: Endpoints { ready: 2, total: 2 },
                labels: BTreeMap::from([("app".to_owned(), format!("svc{i:03}"))]),
                dns_name: None,
                dependencies: Vec::new(),
                dependents: Vec::new(),
            },
        );
    }
    let mut pairs = std::collections::BTreeSet::new();
    while pairs.len() < edges {
        let source = next(services);
        let destination = if next(5) < 4 {
            let base = source / PER_NAMESPACE * PER_NAMESPACE;
            (base + next(PER_NAMESPACE)).min(services - 1)
        } else {
            next(services)
        };
        if source != destination {
            pairs.insert((source, destination));
        }
    }
    let edges = pairs
        .into_iter()
        .map(|(s, d)| {
            let failed = u64::from(next(20) == 0);
            Edge {
                source: id(s),
                destination: id(d),
                protocol: "tcp".to_owned(),
                port: 8080,
                connections: 1 + u64::try_from(next(1000)).unwrap_or(0),
                failed,
                failures: Failures { refused: failed, ..Failures::default() },
                aborted: Failures::default(),
                processes: Default::default(),
                ingress: Vec::new(),
                retransmits: 0,
                bytes_sent: 1000,
                bytes_received: 5000,
                first_seen: "2026-01-01T00:00:00Z".to_owned(),
                last_seen: "2026-01-01T01:00:00Z".to_owned(),
            }
        })
        .collect();
    let window = Window { start: "2026-01-01T00:00:00Z".to_owned(), end: "2026-01-01T01:00:00Z".to_owned() };
    Topology { schema: TOPOLOGY_SCHEMA.to_owned(), window, services: nodes, edges, stats: BuildStats::default() }
}

struct Row {
    services: usize,
    edges: usize,
    bytes: usize,
    first_drawing_ms: f64,
    collapsed: bool,
    opening_layout_ms: String,
    full_layout_ms: String,
    search_ms: String,
}

fn measure(browser: &mut Browser, services: usize, edges: usize) -> Result<Row, Box<dyn std::error::Error>> {
    let topology = generated(services, edges);
    let html = Page { title: "scale", source: Source::Topology(&topology), report: None }.render();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("map.html");
    std::fs::write(&path, &html)?;
    let started = Instant::now();
    browser.open(&format!("file://{}", path.display()))?;
    let first_drawing_ms = started.elapsed().as_secs_f64() * 1000.0;
    let layout = "document.body.dataset.layoutMs";
    let opening_layout_ms = browser.eval(layout)?.as_str().unwrap_or("-").to_owned();
    let timed = |action: &str| {
        format!(
            "(function () {{ var t = performance.now(); {action}; return String(Math.round(performance.now() - t)); }})()"
        )
    };
    // Past 150 services the page opens collapsed: expanding lays every service out.
    let collapsed = browser
        .eval("document.querySelector('#graph') && document.body.dataset.collapsedAtOpen === '1'")?
        == serde_json::Value::Bool(true);
    let full_layout_ms = if collapsed {
        browser.eval("document.getElementById('expand-all').click()")?;
        browser.eval(layout)?.as_str().unwrap_or("-").to_owned()
    } else {
        opening_layout_ms.clone()
    };
    let search = "var s = document.getElementById('search'); s.value = 'svc12'; s.dispatchEvent(new Event('input'))";
    let search_ms = browser.eval(&timed(search))?;
    Ok(Row {
        services,
        edges,
        bytes: html.len(),
        first_drawing_ms,
        collapsed,
        opening_layout_ms,
        full_layout_ms,
        search_ms: search_ms.as_str().unwrap_or("-").to_owned(),
    })
}

#[expect(clippy::print_stdout, clippy::print_stderr, reason = "a measurement tool: the table is its output")]
fn main() -> ExitCode {
    let mut browser = match Browser::launch() {
        Ok(browser) => browser,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "| services | edges | page | opens | open to first drawing | its layout | layout of every service | search |"
    );
    println!("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    for (services, edges) in [(50, 300), (150, 900), (300, 1800), (500, 3000)] {
        match measure(&mut browser, services, edges) {
            Ok(r) => println!(
                "| {} | {} | {:.0} KiB | {} | {:.0} ms | {} ms | {} ms | {} ms |",
                r.services,
                r.edges,
                r.bytes as f64 / 1024.0,
                if r.collapsed { "collapsed" } else { "expanded" },
                r.first_drawing_ms,
                r.opening_layout_ms,
                r.full_layout_ms,
                r.search_ms
            ),
            Err(error) => {
                eprintln!("error: {services} services: {error}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
