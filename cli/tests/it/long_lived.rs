//! End to end, as root: connections that were open before smap started, as every real
//! cluster has them (gRPC channels, HTTP/2 and database pools), carrying bytes during
//! the capture and still open when it stops.
//!
//! Needs root, iproute2 and iptables; skipped with a printed reason elsewhere, and a
//! failure under CI=true. Takes turns with the other end-to-end tests.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use smap_e2e::{require_root, CallReport, Cluster, HeldConnection, ServicePort, ServiceSpec};
use smap_replay::{ConnKind, Recording};

use crate::e2e::{
    assert_replay_is_the_live_stream, build, edges, kubectl_file, pod, wait_for_lines, Capture, Watch, NS,
    ONE_AT_A_TIME,
};

/// web calls api, orders-db and cache through their ClusterIPs.
struct Shop {
    cluster: Cluster,
    web: smap_e2e::PodRef,
    api: smap_e2e::ServiceRef,
    db: smap_e2e::ServiceRef,
    cache: smap_e2e::ServiceRef,
    _servers: Vec<smap_e2e::Server>,
}

fn shop(label: &str) -> Shop {
    let mut cluster = Cluster::new(label).unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api_pod = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let db_pod = pod(&mut cluster, "db1", 30, "orders-db", "postgres:16.4", &[5432]);
    let cache_pod = pod(&mut cluster, "cache1", 40, "cache", "redis:7.4", &[6379]);
    let mut service = |name: &str, last: u8, port: u16, target: u16| {
        cluster
            .add_service(
                ServiceSpec::new(NS, name, Ipv4Addr::new(10, 96, 0, last))
                    .port(ServicePort::tcp(port, target))
                    .selector("app", name),
            )
            .unwrap()
    };
    let (api, db, cache) =
        (service("api", 20, 80, 8080), service("orders-db", 30, 5432, 5432), service("cache", 40, 6379, 6379));
    let servers = vec![
        cluster.serve_tcp(&api_pod, 8080).unwrap(),
        cluster.serve_tcp(&db_pod, 5432).unwrap(),
        cluster.serve_tcp(&cache_pod, 6379).unwrap(),
    ];
    Shop { cluster, web, api, db, cache, _servers: servers }
}

fn hold(shop: &Shop, to: std::net::SocketAddrV4) -> HeldConnection {
    let held = shop.cluster.tcp_hold(&shop.web, to).unwrap();
    assert!(held.report().is_some_and(CallReport::is_ok), "{:?}", held.report());
    held
}

fn kinds(recording: &Path, kind: ConnKind) -> usize {
    Recording::open(recording).unwrap().conn_events().map(Result::unwrap).filter(|e| e.kind == kind).count()
}

#[test]
fn connections_open_before_the_capture_and_at_its_end_are_each_counted_once() {
    if !require_root("connections_open_before_the_capture_and_at_its_end_are_each_counted_once") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let shop = shop("longcap");
    // Opened before smap starts, as a pool or a gRPC channel is.
    let mut api = hold(&shop, shop.api.addr(80));
    let mut db = hold(&shop, shop.db.addr(5432));
    let idle = hold(&shop, shop.cache.addr(6379));
    let mut closing = hold(&shop, shop.api.addr(80));

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &shop.cluster);
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "progress_interval: 1s\n").unwrap();
    let capture =
        Capture::start_with(dir.path(), &kubectl, shop.cluster.node_name(), &["--config", config.to_str().unwrap()]);
    api.send(1000).unwrap();
    db.send(5000).unwrap();
    closing.send(300).unwrap();
    assert!(closing.release().unwrap().is_ok(), "closes during the capture");
    // Past the progress interval, more bytes: a progress report.
    std::thread::sleep(Duration::from_millis(1500));
    api.send(2000).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();
    for held in [api, db, idle] {
        assert!(held.release().unwrap().is_ok());
    }

    let topology = build(&recording);
    assert_eq!(
        edges(&topology),
        [
            "shop/web -> shop/api tcp/80 connections=2 failed=0 sent=3300 received=0",
            "shop/web -> shop/cache tcp/6379 connections=1 failed=0 sent=0 received=0",
            "shop/web -> shop/orders-db tcp/5432 connections=1 failed=0 sent=5000 received=0",
        ],
        "each connection once, with the bytes it moved during the capture"
    );
    assert_eq!(topology["stats"]["open_before_capture"], 4, "{}", topology["stats"]);
    // Both ends of each live on this node: 2 x 4 first sightings, 2 x 3 still open.
    assert_eq!(kinds(&recording, ConnKind::TcpExisting), 8);
    assert_eq!(kinds(&recording, ConnKind::TcpOpenAtEnd), 6);
    assert!(kinds(&recording, ConnKind::TcpProgress) >= 2, "both ends of api report progress");
}

#[test]
fn without_the_enumeration_an_open_connection_appears_on_its_first_bytes() {
    if !require_root("without_the_enumeration_an_open_connection_appears_on_its_first_bytes") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let shop = shop("longdata");
    let mut api = hold(&shop, shop.api.addr(80));
    let idle = hold(&shop, shop.cache.addr(6379));

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &shop.cluster);
    // As in the DaemonSet without CAP_SYS_ADMIN: no pod namespace can be entered.
    let empty = dir.path().join("no-netns");
    std::fs::create_dir(&empty).unwrap();
    let capture =
        Capture::start_with(dir.path(), &kubectl, shop.cluster.node_name(), &["--netns-dir", empty.to_str().unwrap()]);
    api.send(4000).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();
    for held in [api, idle] {
        assert!(held.release().unwrap().is_ok());
    }
    assert_eq!(
        edges(&build(&recording)),
        ["shop/web -> shop/api tcp/80 connections=1 failed=0 sent=4000 received=0"],
        "the idle connection is not seen; the one that moved bytes is, once"
    );
    assert_eq!(kinds(&recording, ConnKind::TcpExisting), 2, "both ends, on their first segments");
}

/// The dependency_detected / dependency_gone lines of an event stream.
fn dependency_lines(events: &str) -> Vec<&str> {
    events.lines().filter(|l| l.contains("\"dependency_detected\"") || l.contains("\"dependency_gone\"")).collect()
}

#[test]
fn watch_announces_an_open_connection_keeps_it_while_bytes_flow_and_replays_the_same() {
    if !require_root("watch_announces_an_open_connection_keeps_it_while_bytes_flow_and_replays_the_same") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let shop = shop("longwatch");
    let mut api = hold(&shop, shop.api.addr(80));
    let idle = hold(&shop, shop.cache.addr(6379));

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &shop.cluster);
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "change_debounce: 100ms\nmin_emit_interval: 100ms\nconnection_ttl: 3s\nprogress_interval: 1s\n",
    )
    .unwrap();
    let watch = Watch::start(dir.path(), &kubectl, &config, shop.cluster.node_name());
    let (rec, events) = (watch.rec.clone(), watch.events.clone());
    let ready = Instant::now();
    // The idle pool connection was enumerated at start: announced without a byte.
    let text = wait_for_lines(&events, "\"dependency_detected\"", 1);
    assert!(ready.elapsed() < Duration::from_secs(2), "announced {:?} after /readyz", ready.elapsed());
    assert!(text.contains("\"destination\":\"shop/cache\""), "{text}");

    // Bytes every half second for three TTLs: never gone.
    for _ in 0..18 {
        api.send(100).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let text = std::fs::read_to_string(&events).unwrap();
    let lines = dependency_lines(&text);
    let api_lines: Vec<&&str> = lines.iter().filter(|l| l.contains("\"destination\":\"shop/api\"")).collect();
    assert_eq!(api_lines.len(), 1, "detected once, never gone while bytes flowed: {lines:#?}");
    assert!(lines.iter().any(|l| l.contains("dependency_gone") && l.contains("shop/cache")), "idle: {lines:#?}");

    // Silent now: gone about a TTL after its last report.
    let quiet = Instant::now();
    let text = wait_for_lines(&events, "\"dependency_gone\"", 2);
    let waited = quiet.elapsed();
    assert!(waited > Duration::from_secs(2) && waited < Duration::from_secs(7), "gone after {waited:?}");
    assert!(dependency_lines(&text).iter().any(|l| l.contains("dependency_gone") && l.contains("shop/api")));

    watch.stop();
    for held in [api, idle] {
        assert!(held.release().unwrap().is_ok());
    }

    let built: Value = build(&rec);
    assert_eq!(
        edges(&built),
        [
            "shop/web -> shop/api tcp/80 connections=1 failed=0 sent=1800 received=0",
            "shop/web -> shop/cache tcp/6379 connections=1 failed=0 sent=0 received=0",
        ]
    );
    assert_replay_is_the_live_stream(&rec, &config, &events);
}

#[test]
fn a_connected_udp_socket_older_than_the_capture_is_a_flow_from_its_first_datagram() {
    if !require_root("a_connected_udp_socket_older_than_the_capture_is_a_flow_from_its_first_datagram") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("longudp").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let statsd = pod(&mut cluster, "statsd1", 50, "statsd", "statsd/statsd:0.10", &[]);
    let svc = cluster
        .add_service(
            ServiceSpec::new(NS, "statsd", Ipv4Addr::new(10, 96, 0, 50))
                .port(ServicePort::udp(8125, 8125))
                .selector("app", "statsd"),
        )
        .unwrap();
    let _server = cluster.serve_udp(&statsd, 8125).unwrap();
    // Created and connected before the capture, as a metrics client's socket is.
    let mut socket = cluster.udp_hold(&web, svc.addr(8125)).unwrap();
    assert!(socket.report().is_some_and(CallReport::is_ok), "{:?}", socket.report());

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    for _ in 0..3 {
        socket.send(40).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();
    assert!(socket.release().unwrap().is_ok());
    assert_eq!(
        edges(&build(&recording)),
        ["shop/web -> shop/statsd udp/8125 connections=1 failed=0 sent=120 received=120"],
        "one flow, from the first datagram the capture saw"
    );
}

/// How the shop's calls are made.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// A new connection per call, opened while smap runs.
    Short,
    /// A connection per call opened before smap starts, carrying the call's bytes
    /// during the capture, still open when it stops.
    LongLived,
}

/// The shop's call plan, made in `mode`; the edges `smap build` finds.
fn shop_edges(mode: Mode) -> Vec<String> {
    let shop = shop(if mode == Mode::Short { "modeshort" } else { "modelong" });
    let plan =
        [(shop.api.addr(80), 1000), (shop.api.addr(80), 1000), (shop.db.addr(5432), 300), (shop.cache.addr(6379), 50)];
    let mut held: Vec<HeldConnection> =
        if mode == Mode::LongLived { plan.iter().map(|(to, _)| hold(&shop, *to)).collect() } else { Vec::new() };
    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &shop.cluster);
    let capture = Capture::start(dir.path(), &kubectl, shop.cluster.node_name());
    for (i, (to, bytes)) in plan.iter().enumerate() {
        match mode {
            Mode::Short => assert!(shop.cluster.tcp_call(&shop.web, *to, *bytes, 0).unwrap().is_ok()),
            Mode::LongLived => assert!(held[i].send(*bytes).unwrap().is_ok()),
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();
    for connection in held.drain(..) {
        assert!(connection.release().unwrap().is_ok());
    }
    edges(&build(&recording))
}

#[test]
fn the_shop_maps_the_same_whether_its_connections_are_short_or_long_lived() {
    if !require_root("the_shop_maps_the_same_whether_its_connections_are_short_or_long_lived") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let short = shop_edges(Mode::Short);
    assert_eq!(
        short,
        [
            "shop/web -> shop/api tcp/80 connections=2 failed=0 sent=2000 received=0",
            "shop/web -> shop/cache tcp/6379 connections=1 failed=0 sent=50 received=0",
            "shop/web -> shop/orders-db tcp/5432 connections=1 failed=0 sent=300 received=0",
        ]
    );
    assert_eq!(shop_edges(Mode::LongLived), short, "the same edges, connections and bytes in both modes");
}

#[test]
fn one_client_port_carrying_two_connections_at_once_maps_each_with_its_bytes() {
    if !require_root("one_client_port_carrying_two_connections_at_once_maps_each_with_its_bytes") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let shop = shop("portreuse");
    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &shop.cluster);
    let capture = Capture::start(dir.path(), &kubectl, shop.cluster.node_name());
    // Both from web's port 45000, to two servers, open at the same time.
    let options = smap_e2e::CallOptions { source_port: Some(45000), ..smap_e2e::CallOptions::default() };
    let mut api = shop.cluster.tcp_hold_with(&shop.web, shop.api.addr(80), options).unwrap();
    let mut db = shop.cluster.tcp_hold_with(&shop.web, shop.db.addr(5432), options).unwrap();
    for held in [&api, &db] {
        let report = held.report().unwrap();
        assert!(report.is_ok() && report.local_port() == Some(45000), "{report:?}");
    }
    api.send(100).unwrap();
    db.send(5000).unwrap();
    assert!(db.release().unwrap().is_ok());
    assert!(api.release().unwrap().is_ok());
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();
    assert_eq!(
        edges(&build(&recording)),
        [
            "shop/web -> shop/api tcp/80 connections=1 failed=0 sent=100 received=0",
            "shop/web -> shop/orders-db tcp/5432 connections=1 failed=0 sent=5000 received=0",
        ]
    );
}
