//! A real Prometheus (Debian's package) scrapes `smap watch` over real traffic between
//! network namespaces: PromQL over its HTTP API finds one service-graph series per
//! dependency with the right counts, and `promtool check metrics` finds nothing wrong
//! with what smap serves.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use smap_e2e::{require_root, say_skipped, Cluster, ServicePort};

use crate::e2e::{kubectl_file, pod, service, wait_for_lines, Watch, ONE_AT_A_TIME};
use crate::watch::get;

/// Prometheus and promtool, or why the test cannot run.
fn prometheus_binaries() -> Result<(String, String), String> {
    let found = |name: &str| {
        ["/usr/bin", "/usr/local/bin"].iter().map(|d| format!("{d}/{name}")).find(|p| Path::new(p).exists())
    };
    match (found("prometheus"), found("promtool")) {
        (Some(server), Some(tool)) => Ok((server, tool)),
        _ => Err("Debian's prometheus package is not installed (.ci/run installs it)".to_owned()),
    }
}

/// A Prometheus server on a free loopback port, with its TSDB in `dir`, scraping
/// `target` every second; killed when dropped.
struct Prometheus {
    child: Child,
    address: SocketAddr,
}

impl Prometheus {
    fn start(binary: &str, dir: &Path, target: SocketAddr) -> Prometheus {
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: smap\n    static_configs: [{{targets: ['{target}']}}]\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus { child, address }
    }

    /// The result vector of an instant query, `[]` while the server is not up yet.
    fn query(&self, promql: &str) -> Vec<Value> {
        if std::net::TcpStream::connect(self.address).is_err() {
            return Vec::new();
        }
        let (status, _, body) = get(self.address, &format!("/api/v1/query?query={promql}"));
        if status != 200 {
            return Vec::new();
        }
        let answer: Value = serde_json::from_str(&body).unwrap();
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(client, server, connection_type, value)` per series of a result.
fn by_dependency(result: &[Value]) -> Vec<(String, String, String, u64)> {
    let mut out: Vec<_> = result
        .iter()
        .map(|r| {
            let label = |k: &str| r["metric"][k].as_str().unwrap_or_default().to_owned();
            let value: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
            (label("client"), label("server"), label("connection_type"), value as u64)
        })
        .collect();
    out.sort();
    out
}

fn dependency(client: &str, server: &str, kind: &str, value: u64) -> (String, String, String, u64) {
    (client.to_owned(), server.to_owned(), kind.to_owned(), value)
}

#[test]
fn prometheus_scrapes_one_service_graph_series_per_dependency() {
    if !require_root("prometheus_scrapes_one_service_graph_series_per_dependency") {
        return;
    }
    let (server, promtool) = match prometheus_binaries() {
        Ok(found) => found,
        Err(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{why}; CI=true, where it must run"),
        Err(why) => {
            return say_skipped(&format!("skipped: prometheus_scrapes_one_service_graph_series_per_dependency: {why}"))
        }
    };
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("prom").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let db = pod(&mut cluster, "db1", 30, "orders-db", "postgres:16.4", &[5432]);
    // payments has a pod but nothing listening: its connections are refused.
    let _payments = pod(&mut cluster, "pay1", 40, "payments", "registry.example/shop/payments:1.0", &[8080]);
    let api_svc = service(&mut cluster, "api", 20, ServicePort::tcp(80, 8080));
    let db_svc = service(&mut cluster, "orders-db", 30, ServicePort::tcp(5432, 5432));
    let payments_svc = service(&mut cluster, "payments", 40, ServicePort::tcp(80, 8080));
    let _api_server = cluster.serve_tcp(&api, 8080).unwrap();
    let _db_server = cluster.serve_tcp(&db, 5432).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "change_debounce: 100ms\nmin_emit_interval: 100ms\n").unwrap();
    let watch = Watch::start(dir.path(), &kubectl, &config, cluster.node_name());
    wait_for_lines(&watch.events, "\"service_discovered\"", 3);
    let prometheus = Prometheus::start(&server, dir.path(), watch.listen);

    for _ in 0..3 {
        assert!(cluster.tcp_call(&web, api_svc.addr(80), 500, 1500).unwrap().is_ok());
    }
    for _ in 0..2 {
        assert!(cluster.tcp_call(&web, db_svc.addr(5432), 100, 300).unwrap().is_ok());
        assert!(!cluster.tcp_call(&web, payments_svc.addr(80), 10, 10).unwrap().is_ok(), "refused");
    }
    let want_requests = vec![
        dependency("shop/web", "shop/api", "", 3),
        dependency("shop/web", "shop/orders-db", "database", 2),
        dependency("shop/web", "shop/payments", "", 0),
    ];
    let want_failed = vec![
        dependency("shop/web", "shop/api", "", 0),
        dependency("shop/web", "shop/orders-db", "database", 0),
        dependency("shop/web", "shop/payments", "", 2),
    ];
    let started = Instant::now();
    let (mut requests, mut failed) = (Vec::new(), Vec::new());
    while started.elapsed() < Duration::from_secs(60) {
        requests = by_dependency(&prometheus.query("traces_service_graph_request_total"));
        failed = by_dependency(&prometheus.query("traces_service_graph_request_failed_total"));
        if requests == want_requests && failed == want_failed {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(requests, want_requests, "one series per dependency, connections as counted");
    assert_eq!(failed, want_failed);
    let sent = prometheus.query("smap_dependency_bytes_total{server=\"shop/api\",direction=\"sent\"}");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["value"][1], "1500");
    // By cause, and only causes that occurred: one series, for the refusals.
    let causes = prometheus.query("smap_dependency_failures_total");
    let causes: Vec<(&str, &str, &str)> = causes
        .iter()
        .map(|s| {
            let m = &s["metric"];
            (m["server"].as_str().unwrap(), m["reason"].as_str().unwrap(), s["value"][1].as_str().unwrap())
        })
        .collect();
    assert_eq!(causes, [("shop/payments", "refused", "2")]);
    let ports = prometheus.query("smap_edge_connections_total{server=\"shop/orders-db\"}");
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(
        (ports[0]["metric"]["protocol"].as_str(), ports[0]["metric"]["port"].as_str()),
        (Some("tcp"), Some("5432"))
    );

    // promtool's linter on exactly what Prometheus scraped.
    let (_, _, metrics) = get(watch.listen, "/metrics");
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check.stdin.take().unwrap().write_all(metrics.as_bytes()).unwrap();
    let checked = check.wait_with_output().unwrap();
    let findings = format!("{}{}", String::from_utf8_lossy(&checked.stdout), String::from_utf8_lossy(&checked.stderr));
    assert!(checked.status.success() && findings.trim().is_empty(), "promtool check metrics:\n{findings}");
    drop(prometheus);
    watch.stop();
}
