//! End to end, as root: `smap capture` loads the eBPF programs while real pods (network
//! namespaces) call each other through real ClusterIPs (iptables DNAT), and `smap build`
//! on the recording gives exactly the traffic the test made.
//!
//! Needs root, iproute2 and iptables; skipped with a printed reason elsewhere, and a
//! failure under CI=true. The tests of this module take turns: every capture sees every
//! socket on the machine, and the clusters reuse the same pod addresses.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use smap_e2e::{
    require_root, CallOptions, CallReport, Cluster, ContainerPort, Owner, PodRef, PodSpec, ServicePort, ServiceSpec,
};
use smap_replay::{ConnKind, Recording, Side};

use crate::{repo, smap, stderr};

pub(crate) static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub(crate) const NS: &str = "shop";

pub(crate) fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, 1, last)
}

/// A pod, with a process living in it as Kubernetes' pause container does.
pub(crate) fn pod(cluster: &mut Cluster, name: &str, last: u8, app: &str, image: &str, ports: &[u16]) -> PodRef {
    let ports: Vec<ContainerPort> = ports.iter().map(|p| ContainerPort::tcp(*p)).collect();
    let pod = cluster
        .add_pod(
            PodSpec::new(NS, format!("{app}-5d8f7c9b4-{name}"), ip(last))
                .label("app", app)
                .owner(Owner::Deployment(app.to_owned()))
                .container(app, image, ports),
        )
        .unwrap();
    // The cluster kills it when the pod or the cluster goes away.
    std::mem::forget(cluster.spawn_in(&pod, "sleep", ["3600"]).unwrap());
    pod
}

pub(crate) struct Capture {
    child: Child,
    dir: PathBuf,
}

impl Capture {
    /// Starts `smap capture` and waits until its programs are attached (the recording
    /// directory appears once they are).
    pub(crate) fn start(dir: &Path, kubectl: &Path, node: &str) -> Capture {
        Self::start_with(dir, kubectl, node, &[])
    }

    /// Starts it with extra arguments.
    pub(crate) fn start_with(dir: &Path, kubectl: &Path, node: &str, extra: &[&str]) -> Capture {
        let out = dir.join("rec");
        let child = Command::new(env!("CARGO_BIN_EXE_smap"))
            .args(["capture", "--out", out.to_str().unwrap(), "--k8s-from", kubectl.to_str().unwrap(), "--node", node])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !out.join("recording.json").exists() {
            assert!(started.elapsed() < Duration::from_secs(30), "capture did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Capture { child, dir: out }
    }

    /// Kills it with SIGKILL, as the OOM killer or an eviction past its grace period
    /// would: no flush, no finish.
    pub(crate) fn kill(mut self) -> PathBuf {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.dir
    }

    /// Stops it as Ctrl-C does and returns its summary line.
    pub(crate) fn stop(self) -> (PathBuf, String) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on a child we spawned and have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
        let output = self.child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "capture failed: {err}");
        (self.dir, String::from_utf8(output.stdout).unwrap())
    }
}

/// The Service `name` on ClusterIP 10.96.0.`last`, selecting the pods labelled `app=name`.
pub(crate) fn service(cluster: &mut Cluster, name: &str, last: u8, port: ServicePort) -> smap_e2e::ServiceRef {
    cluster
        .add_service(ServiceSpec::new(NS, name, Ipv4Addr::new(10, 96, 0, last)).port(port).selector("app", name))
        .unwrap()
}

/// `k8s.json` in `dir` for a cluster with no objects (a capture without it warns).
pub(crate) fn empty_kubectl(dir: &Path) -> PathBuf {
    let path = dir.join("k8s.json");
    std::fs::write(&path, r#"{"apiVersion":"v1","kind":"List","items":[]}"#).unwrap();
    path
}

/// `k8s.json` in `dir`, holding the cluster's objects as `kubectl get -o json` gives them.
pub(crate) fn kubectl_file(dir: &Path, cluster: &Cluster) -> PathBuf {
    let path = dir.join("k8s.json");
    write_kubectl(cluster, &path);
    path
}

pub(crate) fn write_kubectl(cluster: &Cluster, path: &Path) {
    let text = serde_json::to_string_pretty(&cluster.kubectl_json()).unwrap();
    // Write then rename, so the capture never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

pub(crate) fn build(recording: &Path) -> Value {
    let out = smap(&["build", recording.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn edges(topology: &Value) -> Vec<String> {
    topology["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} -> {} {}/{} connections={} failed={} sent={} received={}",
                e["source"].as_str().unwrap(),
                e["destination"].as_str().unwrap(),
                e["protocol"].as_str().unwrap(),
                e["port"],
                e["connections"],
                e["failed"],
                e["bytes_sent"],
                e["bytes_received"]
            )
        })
        .collect()
}

/// Times and counts of whatever else the machine did meanwhile (every capture sees all
/// sockets: loopback chatter of other tests is counted, then left out) out, for
/// snapshots.
fn without_times(mut topology: Value) -> Value {
    topology["window"] = Value::String("[window]".into());
    for noisy in ["conn_events", "loopback_events", "empty_flows"] {
        topology["stats"][noisy] = Value::String("[count]".into());
    }
    for edge in topology["edges"].as_array_mut().unwrap() {
        edge["first_seen"] = Value::String("[time]".into());
        edge["last_seen"] = Value::String("[time]".into());
    }
    topology
}

#[test]
fn capture_records_clusterip_pod_ip_failed_and_udp_traffic_exactly() {
    if !require_root("capture_records_clusterip_pod_ip_failed_and_udp_traffic_exactly") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("cap").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let db = pod(&mut cluster, "db1", 30, "orders-db", "postgres:16.4", &[5432]);
    let dns = pod(&mut cluster, "dns1", 40, "dns", "coredns/coredns:1.11.1", &[]);
    let api_svc = cluster
        .add_service(
            ServiceSpec::new(NS, "api", Ipv4Addr::new(10, 96, 0, 20))
                .port(ServicePort::tcp(80, 8080))
                .port(ServicePort::tcp(81, 8081))
                .selector("app", "api"),
        )
        .unwrap();
    cluster
        .add_service(
            ServiceSpec::new(NS, "orders-db", Ipv4Addr::new(10, 96, 0, 30))
                .port(ServicePort::tcp(5432, 5432))
                .selector("app", "orders-db"),
        )
        .unwrap();
    let dns_svc = cluster
        .add_service(
            ServiceSpec::new(NS, "dns", Ipv4Addr::new(10, 96, 0, 53))
                .port(ServicePort::udp(53, 5353))
                .selector("app", "dns"),
        )
        .unwrap();
    let ghost = cluster
        .add_service(
            ServiceSpec::new(NS, "ghost", Ipv4Addr::new(10, 96, 0, 99))
                .port(ServicePort::tcp(80, 8080))
                .endpoints([ip(99)]),
        )
        .unwrap();
    cluster.blackhole(ip(99)).unwrap();
    let _api_server = cluster.serve_tcp(&api, 8080).unwrap();
    let mut db_server = cluster.serve_tcp(&db, 5432).unwrap();
    let _dns_server = cluster.serve_udp(&dns, 5353).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());

    let mut calls: Vec<CallReport> = Vec::new();
    for _ in 0..3 {
        calls.push(cluster.tcp_call(&web, api_svc.addr(80), 1000, 2500).unwrap());
    }
    for _ in 0..2 {
        calls.push(cluster.tcp_call(&web, db.addr(5432), 300, 700).unwrap());
    }
    assert!(calls.iter().all(CallReport::is_ok), "{calls:?}");
    let refused = cluster.tcp_call(&web, api_svc.addr(81), 10, 10).unwrap();
    assert!(!refused.is_ok());
    let quick = CallOptions { connect_timeout: Duration::from_millis(500), ..CallOptions::default() };
    let abandoned = cluster.tcp_call_with(&web, ghost.addr(80), 10, 10, quick).unwrap();
    assert!(!abandoned.is_ok());
    // One SYN retry: the kernel gives up after about 3 s, before the client's 5 s.
    let retries =
        cluster.command_in(&web, "sysctl").unwrap().args(["-qw", "net.ipv4.tcp_syn_retries=1"]).status().unwrap();
    assert!(retries.success());
    let timed_out = cluster.tcp_call(&web, ghost.addr(80), 10, 10).unwrap();
    assert!(!timed_out.is_ok());
    let udp = cluster.udp_call(&web, dns_svc.addr(53), 40, 120).unwrap();
    assert!(udp.is_ok(), "{udp:?}");
    let served = db_server.wait_exchanges(2, Duration::from_secs(5)).unwrap();
    // The kernel's close and the UDP flow report are asynchronous; give them a moment.
    std::thread::sleep(Duration::from_millis(300));
    let (recording, summary) = capture.stop();
    assert!(summary.starts_with("captured "), "{summary}");

    let topology = build(&recording);
    let udp_events: Vec<String> = Recording::open(&recording)
        .unwrap()
        .conn_events()
        .map(Result::unwrap)
        .filter(|e| e.kind == ConnKind::UdpFlow)
        .map(|e| {
            format!(
                "{:?} {}:{} -> {}:{} {}/{}",
                e.side, e.src_ip, e.src_port, e.dst_ip, e.dst_port, e.bytes_sent, e.bytes_received
            )
        })
        .collect();
    assert_eq!(
        edges(&topology),
        [
            "shop/web -> shop/api tcp/80 connections=3 failed=0 sent=3000 received=7500",
            "shop/web -> shop/api tcp/81 connections=0 failed=1 sent=0 received=0",
            "shop/web -> shop/dns udp/53 connections=1 failed=0 sent=40 received=120",
            "shop/web -> shop/ghost tcp/80 connections=0 failed=2 sent=0 received=0",
            "shop/web -> shop/orders-db tcp/5432 connections=2 failed=0 sent=600 received=1400",
        ],
        "UDP events: {udp_events:?}"
    );
    assert_eq!(topology["stats"]["both_ends_merged"], 6, "5 TCP connections and 1 UDP flow seen from both ends");
    // Each failure by its cause: nothing listening on 81; the client's own 500 ms
    // timeout against the dropping address, then the kernel's.
    let failures: Vec<String> = topology["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("failures").is_some())
        .map(|e| format!("{} -> {}:{} {}", e["source"], e["destination"], e["port"], e["failures"]))
        .collect();
    assert_eq!(
        failures,
        [
            r#""shop/web" -> "shop/api":81 {"refused":1}"#,
            r#""shop/web" -> "shop/ghost":80 {"abandoned":1,"timed_out":1}"#,
        ]
    );
    insta::assert_json_snapshot!("e2e_capture_topology", without_times(topology.clone()));

    // The right processes: the client's connect and the server's accept carry their pids.
    let events: Vec<_> = Recording::open(&recording).unwrap().conn_events().map(Result::unwrap).collect();
    for call in &calls {
        let port = call.local_port().unwrap();
        let connect = events.iter().find(|e| e.kind == ConnKind::TcpConnect && e.src_port == port).unwrap();
        assert_eq!((connect.pid, &*connect.comm, connect.side), (call.pid, "smap-e2e-peer", Side::Client));
    }
    let accepted: Vec<u16> = served.iter().map(|x| x.peer.port()).collect();
    for port in accepted {
        let accept = events.iter().find(|e| e.kind == ConnKind::TcpAccept && e.src_port == port).unwrap();
        assert_eq!(accept.pid, db_server.pid(), "the server's pid, not the client's");
    }
    let failed: Vec<u16> = events.iter().filter(|e| e.kind == ConnKind::TcpConnectFailed).map(|e| e.error).collect();
    assert_eq!(failed.len(), 3);
    assert!(failed.contains(&111) && failed.contains(&110), "refused and timed out: {failed:?}");

    // Replays are deterministic.
    assert_eq!(build(&recording), topology);
    if std::env::var_os("SMAP_UPDATE_FIXTURES").is_some() {
        copy_fixture(&recording, "captured-shop", &kubectl);
    }
}

#[test]
fn a_connection_older_than_the_capture_and_an_ip_reused_mid_capture() {
    if !require_root("a_connection_older_than_the_capture_and_an_ip_reused_mid_capture") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("reuse").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let api_svc = cluster
        .add_service(
            ServiceSpec::new(NS, "api", Ipv4Addr::new(10, 96, 0, 20))
                .port(ServicePort::tcp(80, 8080))
                .selector("app", "api"),
        )
        .unwrap();
    cluster
        .add_service(
            ServiceSpec::new(NS, "cache", Ipv4Addr::new(10, 96, 0, 40))
                .port(ServicePort::tcp(6379, 6379))
                .selector("app", "cache"),
        )
        .unwrap();
    let api_server = cluster.serve_tcp(&api, 8080).unwrap();
    // Opened before the capture starts: only its close will be seen.
    let held = cluster.tcp_hold(&web, api_svc.addr(80)).unwrap();
    assert!(held.report().is_some_and(CallReport::is_ok));

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    let before = cluster.tcp_call(&web, api.addr(8080), 100, 200).unwrap();
    assert!(before.is_ok(), "{before:?}");
    held.release().unwrap();

    // The api pod goes away and a cache pod gets its IP; kubectl output taken again.
    drop(api_server);
    cluster.delete_pod(&api).unwrap();
    let cache = pod(&mut cluster, "cache1", 20, "cache", "redis:7.4", &[6379]);
    assert_eq!(cache.ip, api.ip, "the IP is reused");
    let _cache_server = cluster.serve_tcp(&cache, 6379).unwrap();
    write_kubectl(&cluster, &kubectl);
    // The capture polls the file every second.
    std::thread::sleep(Duration::from_millis(2500));
    let after = cluster.tcp_call(&web, cache.addr(6379), 50, 60).unwrap();
    assert!(after.is_ok(), "{after:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();

    let topology = build(&recording);
    assert_eq!(
        edges(&topology),
        [
            "shop/web -> shop/api tcp/80 connections=2 failed=0 sent=100 received=200",
            "shop/web -> shop/cache tcp/6379 connections=1 failed=0 sent=50 received=60",
        ]
    );
    assert_eq!(topology["services"]["shop/api"]["health"], "down", "its only pod is gone");
    if std::env::var_os("SMAP_UPDATE_FIXTURES").is_some() {
        copy_fixture(&recording, "captured-ip-reuse", &kubectl);
    }
}

fn copy_fixture(recording: &Path, name: &str, kubectl: &Path) {
    let to = repo().join("fixtures/recordings").join(name);
    let _ = std::fs::remove_dir_all(&to);
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(recording).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    std::fs::copy(kubectl, repo().join("fixtures/k8s").join(format!("{name}.json"))).unwrap();
}

/// Waits until `path` holds at least `lines` lines matching `needle`.
pub(crate) fn wait_for_lines(path: &Path, needle: &str, lines: usize) -> String {
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().filter(|l| l.contains(needle)).count() >= lines {
            return text;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "waited for {lines} x {needle}:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running `smap watch` recording into `rec`, its change events in `events`.
pub(crate) struct Watch {
    child: Child,
    pub(crate) rec: PathBuf,
    pub(crate) events: PathBuf,
    pub(crate) listen: std::net::SocketAddr,
}

impl Watch {
    /// Starts it on a free loopback port and waits until `/readyz` answers 200.
    pub(crate) fn start(dir: &Path, kubectl: &Path, config: &Path, node: &str) -> Watch {
        use crate::watch::get;

        let (rec, events) = (dir.join("rec"), dir.join("events.ndjson"));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_smap"))
            .args(["watch", "--k8s-from", kubectl.to_str().unwrap(), "--record", rec.to_str().unwrap()])
            .args(["--events", events.to_str().unwrap(), "--config", config.to_str().unwrap()])
            .args(["--listen", &listen.to_string(), "--node", node])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(listen).is_err() || get(listen, "/readyz").0 != 200 {
            assert!(started.elapsed() < Duration::from_secs(30), "watch never became ready");
            std::thread::sleep(Duration::from_millis(100));
        }
        Watch { child, rec, events, listen }
    }

    /// Stops it with SIGTERM, which flushes the recording and the event stream.
    pub(crate) fn stop(self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on a child we spawned and have not reaped yet.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let output = self.child.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
}

/// `smap build --events` on the recording gives exactly the live event stream.
pub(crate) fn assert_replay_is_the_live_stream(rec: &Path, config: &Path, events: &Path) {
    let replayed = smap(&["build", rec.to_str().unwrap(), "--config", config.to_str().unwrap(), "--events", "-"]);
    assert!(replayed.status.success(), "{}", stderr(&replayed));
    let live = std::fs::read_to_string(events).unwrap();
    let replay = String::from_utf8(replayed.stdout).unwrap();
    // On a mismatch, what the replay read: tells a recording that differs from the live
    // stream from a replay that reads it differently.
    let recorded = if replay == live {
        String::new()
    } else {
        let merged = smap_replay::MergedEvents::new(&[Recording::open(rec).unwrap()], Vec::new()).unwrap();
        merged.take(200).map(|event| format!("{:?}\n", event.unwrap())).collect()
    };
    assert_eq!(replay, live, "the replay reproduces the live event stream; the recording's events:\n{recorded}");
}

#[test]
fn watch_streams_events_serves_metrics_and_map_and_replays_the_same() {
    use crate::watch::{get, parse_prometheus, sample};

    if !require_root("watch_streams_events_serves_metrics_and_map_and_replays_the_same") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("watch").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let db = pod(&mut cluster, "db1", 30, "orders-db", "postgres:16.4", &[5432]);
    let api_svc = cluster
        .add_service(
            ServiceSpec::new(NS, "api", Ipv4Addr::new(10, 96, 0, 20))
                .port(ServicePort::tcp(80, 8080))
                .selector("app", "api"),
        )
        .unwrap();
    let db_svc = cluster
        .add_service(
            ServiceSpec::new(NS, "orders-db", Ipv4Addr::new(10, 96, 0, 30))
                .port(ServicePort::tcp(5432, 5432))
                .selector("app", "orders-db"),
        )
        .unwrap();
    let _api_server = cluster.serve_tcp(&api, 8080).unwrap();
    let _db_server = cluster.serve_tcp(&db, 5432).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "change_debounce: 100ms\nmin_emit_interval: 100ms\n").unwrap();
    let watch = Watch::start(dir.path(), &kubectl, &config, cluster.node_name());
    let (rec, events, listen) = (watch.rec.clone(), watch.events.clone(), watch.listen);
    // The two Services; web, a workload without one, appears with its first call.
    wait_for_lines(&events, "\"service_discovered\"", 2);

    for _ in 0..3 {
        assert!(cluster.tcp_call(&web, api_svc.addr(80), 500, 1500).unwrap().is_ok());
    }
    for _ in 0..2 {
        assert!(cluster.tcp_call(&web, db_svc.addr(5432), 100, 300).unwrap().is_ok());
    }
    let live = wait_for_lines(&events, "\"dependency_detected\"", 2);
    let detected: Vec<&str> = live.lines().filter(|l| l.contains("\"dependency_detected\"")).collect();
    assert!(detected[0].contains("\"source\":\"shop/web\""), "{}", detected[0]);

    // /map refreshes every second; the metrics count what the engine saw.
    std::thread::sleep(Duration::from_millis(1300));
    let (status, _, map) = get(listen, "/map");
    assert_eq!(status, 200);
    let map: Value = serde_json::from_str(&map).unwrap();
    let (_, _, metrics) = get(listen, "/metrics");
    let samples = parse_prometheus(&metrics);
    assert_eq!(sample(&samples, "smap_dependencies_detected_total{cross_namespace=\"false\"}"), 2.0);
    assert_eq!(sample(&samples, "smap_connections_tracked_total{protocol=\"tcp\"}"), 5.0);
    assert_eq!(sample(&samples, "smap_ready"), 1.0);
    let (_, _, stats) = get(listen, "/stats");
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let udp_path = stats["kernel"]["udp_path"].as_str().unwrap_or_default().to_owned();
    assert!(["functions", "tracepoints"].contains(&udp_path.as_str()), "UDP datagrams seen by: {udp_path:?}");

    // SIGTERM stops cleanly and flushes the recording and the event stream.
    watch.stop();

    let built = build(&rec);
    assert_eq!(edges(&built), edges(&map), "/map is what smap build makes of the recording");
    assert_eq!(
        edges(&built),
        [
            "shop/web -> shop/api tcp/80 connections=3 failed=0 sent=1500 received=4500",
            "shop/web -> shop/orders-db tcp/5432 connections=2 failed=0 sent=200 received=600",
        ]
    );
    assert_replay_is_the_live_stream(&rec, &config, &events);
    let meta = smap_replay::Recording::open(&rec).unwrap().meta().clone();
    assert!(meta.last_tick_ns > meta.start_ns, "the session's clock ticks are recorded: {meta:?}");
}

#[test]
fn ctrl_c_while_the_capture_starts_still_finishes_the_recording() {
    if !require_root("ctrl_c_while_the_capture_starts_still_finishes_the_recording") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    let child = Command::new(env!("CARGO_BIN_EXE_smap"))
        .args(["capture", "--out", out.to_str().unwrap(), "--node", "early"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // SIGINT must be handled from before the programs load until the end: wait until
    // the handler is installed (SigCgt in /proc), which must come before the recording.
    let pid = i32::try_from(child.id()).unwrap();
    let status = format!("/proc/{pid}/status");
    let catches_sigint = || {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        let mask = text.lines().find_map(|l| l.strip_prefix("SigCgt:")).map(str::trim).unwrap_or("0");
        u64::from_str_radix(mask, 16).unwrap_or(0) & (1 << (libc::SIGINT - 1)) != 0
    };
    let started = Instant::now();
    while !catches_sigint() {
        assert!(!out.join("recording.json").exists(), "the recording began before SIGINT was handled");
        assert!(started.elapsed() < Duration::from_secs(30), "SIGINT never handled");
        std::thread::sleep(Duration::from_millis(1));
    }
    // SAFETY: kill(2) on a child we spawned and have not reaped yet.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{:?}: {}", output.status, String::from_utf8_lossy(&output.stderr));
    let recording = Recording::open(&out).unwrap();
    assert!(recording.meta().complete, "finished cleanly");
}
