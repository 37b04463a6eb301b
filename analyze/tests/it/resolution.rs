//! Every resolution rule of the engine, on hand-built events.

use std::sync::Arc;

use serde_json::{json, Value};
use smap_analyze::topology::{Health, NodeKind, ServiceType, Topology};
use smap_analyze::{Config, Engine};
use smap_replay::{ConnEvent, ConnKind, Event, ObjectAction, ObjectKind, Side};

use crate::object;

pub(crate) const T0: i64 = 1_767_225_600_000_000_000;

pub(crate) const MS: i64 = 1_000_000;

pub(crate) fn pod_json(
    ns: &str,
    name: &str,
    ip: &str,
    labels: Value,
    owner: Option<(&str, &str)>,
    ready: bool,
) -> Value {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "registry.example/app:1.0", "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.1",
                   "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
    });
    if let Some((kind, owner)) = owner {
        v["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "apps/v1", "kind": kind, "name": owner, "uid": "o", "controller": true}]);
    }
    v
}

pub(crate) fn pod(ns: &str, name: &str, ip: &str, app: &str) -> Event {
    object(ObjectKind::Pod, ObjectAction::Snapshot, pod_json(ns, name, ip, json!({"app": app}), None, true), T0)
}

pub(crate) fn service(ns: &str, name: &str, cluster_ip: &str, port: u16, target: u16) -> Event {
    object(
        ObjectKind::Service,
        ObjectAction::Snapshot,
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "uid": format!("svc-{name}")},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": name}, "ports": [{"port": port, "targetPort": target, "name": "http"}]},
        }),
        T0,
    )
}

pub(crate) fn slice(ns: &str, service: &str, endpoints: &[(&str, &str, bool)], t: i64, action: ObjectAction) -> Event {
    object(
        ObjectKind::EndpointSlice,
        action,
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": format!("{service}-abc"), "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
            "endpoints": endpoints.iter().map(|(ip, pod, ready)| json!({
                "addresses": [ip], "conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": pod, "namespace": ns}
            })).collect::<Vec<_>>(),
        }),
        t,
    )
}

pub(crate) fn conn(kind: ConnKind, side: Side, src: &str, sport: u16, dst: &str, dport: u16, t: i64) -> ConnEvent {
    ConnEvent {
        time_ns: t,
        node: Arc::from("node-1"),
        kind,
        side,
        src_ip: src.parse().unwrap(),
        src_port: sport,
        dst_ip: dst.parse().unwrap(),
        dst_port: dport,
        pid: 1,
        comm: Arc::from("x"),
        cgroup_id: 1,
        netns: 1,
        socket_id: 1,
        bytes_sent: 0,
        bytes_received: 0,
        retransmits: 0,
        error: 0,
    }
}

fn closed(mut e: ConnEvent, sent: u64, received: u64) -> ConnEvent {
    e.kind = ConnKind::TcpClose;
    e.bytes_sent = sent;
    e.bytes_received = received;
    e
}

/// A namespace `shop` with web (10.244.1.10) calling api (ClusterIP 10.96.0.20:80 ->
/// pod 10.244.2.20:8080).
pub(crate) fn shop() -> Vec<Event> {
    vec![
        pod("shop", "web-1", "10.244.1.10", "web"),
        pod("shop", "api-1", "10.244.2.20", "api"),
        service("shop", "web", "10.96.0.10", 80, 8080),
        service("shop", "api", "10.96.0.20", 80, 8080),
        slice("shop", "web", &[("10.244.1.10", "web-1", true)], T0, ObjectAction::Snapshot),
        slice("shop", "api", &[("10.244.2.20", "api-1", true)], T0, ObjectAction::Snapshot),
    ]
}

pub(crate) fn run(config: Config, events: Vec<Event>) -> Topology {
    let mut engine = Engine::new(config);
    for e in &events {
        engine.apply(e);
    }
    engine.topology()
}

pub(crate) fn edges(t: &Topology) -> Vec<(String, String, String, u16, u64, u64, u64, u64)> {
    t.edges
        .iter()
        .map(|e| {
            (
                e.source.clone(),
                e.destination.clone(),
                e.protocol.clone(),
                e.port,
                e.connections,
                e.failed,
                e.bytes_sent,
                e.bytes_received,
            )
        })
        .collect()
}

pub(crate) fn edge(
    s: &str,
    d: &str,
    proto: &str,
    port: u16,
    c: u64,
    f: u64,
    sent: u64,
    recv: u64,
) -> (String, String, String, u16, u64, u64, u64, u64) {
    (s.to_owned(), d.to_owned(), proto.to_owned(), port, c, f, sent, recv)
}

#[test]
fn both_ends_of_a_clusterip_connection_count_once_with_the_clients_bytes() {
    let mut events = shop();
    let client = conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, T0 + MS);
    let server = conn(ConnKind::TcpAccept, Side::Server, "10.244.1.10", 40000, "10.244.2.20", 8080, T0 + 2 * MS);
    events.push(Event::Conn(client.clone()));
    events.push(Event::Conn(server.clone()));
    events.push(Event::Conn(closed(client, 100, 2500)));
    events.push(Event::Conn(closed(server, 2500, 100)));
    let t = run(Config::default(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "tcp", 80, 1, 0, 100, 2500)]);
    assert_eq!(t.stats.both_ends_merged, 1);
    assert_eq!(t.services["shop/web"].dependencies, vec!["shop/api"]);
    assert_eq!(t.services["shop/api"].dependents, vec!["shop/web"]);
}

#[test]
fn a_connection_open_longer_than_the_ttl_still_counts_once() {
    let mut events = shop();
    let client = conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, T0 + MS);
    let server = conn(ConnKind::TcpAccept, Side::Server, "10.244.1.10", 40000, "10.244.2.20", 8080, T0 + 2 * MS);
    events.push(Event::Conn(client.clone()));
    events.push(Event::Conn(server.clone()));
    // Other traffic keeps event time moving for ten minutes: twice connection_ttl.
    for minute in 1..=10 {
        let t = T0 + minute * 60_000 * MS;
        events.push(Event::Conn(conn(
            ConnKind::TcpConnect,
            Side::Client,
            "10.244.2.20",
            50000 + minute as u16,
            "10.96.0.10",
            80,
            t,
        )));
    }
    let late = T0 + 11 * 60_000 * MS;
    events.push(Event::Conn(closed(ConnEvent { time_ns: late, ..client }, 5, 6)));
    events.push(Event::Conn(closed(ConnEvent { time_ns: late + MS, ..server }, 6, 5)));
    let t = run(Config::default(), events);
    assert_eq!(edges(&t)[0], edge("shop/api", "shop/web", "tcp", 80, 10, 0, 0, 0));
    assert_eq!(edges(&t)[1], edge("shop/web", "shop/api", "tcp", 80, 1, 0, 5, 6));
}

#[test]
fn the_server_end_alone_maps_the_pod_port_to_the_service_port() {
    let mut events = shop();
    let server = conn(ConnKind::TcpAccept, Side::Server, "10.244.1.10", 40000, "10.244.2.20", 8080, T0 + MS);
    events.push(Event::Conn(server.clone()));
    events.push(Event::Conn(closed(server, 700, 30)));
    let t = run(Config::default(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "tcp", 80, 1, 0, 30, 700)]);
}

#[test]
fn a_named_target_port_maps_the_pod_port_to_the_service_port() {
    let mut events = shop();
    events.push(object(ObjectKind::Service, ObjectAction::Modified, json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "api", "namespace": "shop", "uid": "svc-api"},
        "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": "web", "name": "http"}]},
    }), T0));
    let mut api = pod_json("shop", "api-1", "10.244.2.20", json!({"app": "api"}), None, true);
    api["spec"]["containers"][0]["ports"] = json!([{"containerPort": 8080, "name": "web"}]);
    events.push(object(ObjectKind::Pod, ObjectAction::Modified, api, T0));
    let server = conn(ConnKind::TcpAccept, Side::Server, "10.244.1.10", 40000, "10.244.2.20", 8080, T0 + MS);
    events.push(Event::Conn(server));
    let t = run(Config::default(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "tcp", 80, 1, 0, 0, 0)]);
}

#[test]
fn a_close_without_its_open_counts_once_even_from_both_ends() {
    let mut events = shop();
    let client = conn(ConnKind::TcpClose, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, T0 + MS);
    let server = conn(ConnKind::TcpClose, Side::Server, "10.244.1.10", 40000, "10.244.2.20", 8080, T0 + 2 * MS);
    events.push(Event::Conn(closed(client, 10, 20)));
    events.push(Event::Conn(closed(server, 20, 10)));
    let t = run(Config::default(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "tcp", 80, 1, 0, 10, 20)]);
}

#[test]
fn failed_connects_land_on_their_edge() {
    let mut events = shop();
    let mut refused = conn(ConnKind::TcpConnectFailed, Side::Client, "10.244.1.10", 40001, "10.96.0.20", 80, T0 + MS);
    refused.error = 111;
    let mut timed_out = refused.clone();
    timed_out.src_port = 40002;
    timed_out.error = 110;
    events.push(Event::Conn(refused));
    events.push(Event::Conn(timed_out));
    let t = run(Config::default(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "tcp", 80, 0, 2, 0, 0)]);
}

#[test]
fn pods_without_a_service_are_named_by_their_workload() {
    let owners = [
        (
            "worker-7d4f9c-abcde",
            Some(("ReplicaSet", "worker-7d4f9c")),
            json!({"pod-template-hash": "7d4f9c"}),
            "shop/worker",
        ),
        ("redis-0", Some(("StatefulSet", "redis")), json!({}), "shop/redis"),
        ("agent-x1", Some(("DaemonSet", "agent")), json!({}), "shop/agent"),
        ("backup-29000000-q", Some(("Job", "backup-29000000")), json!({}), "shop/backup"),
        ("migrate-q", Some(("Job", "migrate")), json!({}), "shop/migrate"),
        ("debug", None, json!({}), "shop/debug"),
    ];
    let mut events = shop();
    let mut expected = Vec::new();
    for (i, (name, owner, labels, id)) in owners.iter().enumerate() {
        let ip = format!("10.244.5.{}", i + 1);
        events.push(object(
            ObjectKind::Pod,
            ObjectAction::Snapshot,
            pod_json("shop", name, &ip, labels.clone(), *owner, true),
            T0,
        ));
        events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, &ip, 40000, "10.96.0.20", 80, T0 + MS)));
        expected.push(edge(id, "shop/api", "tcp", 80, 1, 0, 0, 0));
    }
    let t = run(Config::default(), events);
    expected.sort();
    assert_eq!(edges(&t), expected);
    assert_eq!(t.services["shop/worker"].kind, NodeKind::Workload);
    assert!(!t.services["shop/worker"].labels.contains_key("pod-template-hash"));
    assert_eq!(t.services["shop/redis"].kind, NodeKind::Workload);
}

#[test]
fn selectors_stand_in_when_a_service_has_no_endpoint_slices() {
    let events = vec![
        pod("shop", "web-1", "10.244.1.10", "web"),
        pod("shop", "api-1", "10.244.2.20", "api"),
        service("shop", "web", "10.96.0.10", 80, 8080),
        service("shop", "api", "10.96.0.20", 80, 8080),
        Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.244.2.20", 8080, T0 + MS)),
    ];
    let t = run(Config::default(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "tcp", 80, 1, 0, 0, 0)]);
    assert_eq!(t.services["shop/api"].health, Health::Healthy, "health from the selected pods");
}

#[test]
fn nodes_host_network_pods_and_externals() {
    let mut events = shop();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
    events.push(object(ObjectKind::Node, ObjectAction::Snapshot, node, T0));
    let mut exporter =
        pod_json("shop", "exporter-abc", "10.0.0.1", json!({"app": "exporter"}), Some(("DaemonSet", "exporter")), true);
    exporter["spec"]["hostNetwork"] = json!(true);
    exporter["spec"]["containers"][0]["ports"] = json!([{"containerPort": 9100}]);
    events.push(object(ObjectKind::Pod, ObjectAction::Snapshot, exporter, T0));
    let calls = [
        ("10.0.0.1", "10.244.2.20", 8080),  // kubelet probe: node -> api
        ("10.244.2.20", "10.0.0.1", 9100),  // scrape of a hostNetwork exporter
        ("10.244.2.20", "10.0.0.1", 10250), // the node's kubelet
        ("10.244.2.20", "93.184.216.34", 443),
        ("203.0.113.9", "10.244.2.20", 8080),
    ];
    for (i, (src, dst, port)) in calls.iter().enumerate() {
        events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, src, 40000 + i as u16, dst, *port, T0 + MS)));
    }
    let t = run(Config::default(), events.clone());
    assert_eq!(
        edges(&t),
        vec![edge("shop/api", "shop/exporter", "tcp", 9100, 1, 0, 0, 0)],
        "externals and nodes are off by default"
    );
    assert_eq!(t.stats.filtered_edges, 4);
    let t = run(Config { include_external_services: true, ..Config::default() }, events);
    let mut expected = vec![
        edge("node/node-1", "shop/api", "tcp", 80, 1, 0, 0, 0),
        edge("shop/api", "shop/exporter", "tcp", 9100, 1, 0, 0, 0),
        edge("shop/api", "node/node-1", "tcp", 10250, 1, 0, 0, 0),
        edge("shop/api", "external/93.184.216.34:443", "tcp", 443, 1, 0, 0, 0),
        edge("external/203.0.113.9", "shop/api", "tcp", 80, 1, 0, 0, 0),
    ];
    expected.sort();
    assert_eq!(edges(&t), expected);
    assert_eq!(t.services["external/93.184.216.34:443"].kind, NodeKind::External);
    assert_eq!(t.services["external/93.184.216.34:443"].service_type, ServiceType::Proxy);
    assert_eq!(t.services["node/node-1"].kind, NodeKind::Node);
}

#[test]
fn a_dual_stack_endpoint_counts_once() {
    let mut events = shop();
    let v6 = object(
        ObjectKind::EndpointSlice,
        ObjectAction::Snapshot,
        json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv6",
            "metadata": {"name": "api-v6", "namespace": "shop", "labels": {"kubernetes.io/service-name": "api"}},
            "endpoints": [{"addresses": ["fd00::20"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "api-1", "namespace": "shop"}}],
        }),
        T0,
    );
    events.push(v6);
    let t = run(Config::default(), events);
    let api = &t.services["shop/api"];
    assert_eq!((api.endpoints.ready, api.endpoints.total), (1, 1), "one pod behind two slices");
}

#[test]
fn loopback_is_not_an_edge() {
    let mut events = shop();
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "127.0.0.1", 40000, "127.0.0.1", 15001, T0 + MS)));
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "::1", 40000, "::1", 15001, T0 + MS)));
    let t = run(Config::default(), events);
    assert!(t.edges.is_empty());
    assert_eq!(t.stats.loopback_events, 2);
}

#[test]
fn namespace_filters_and_min_connection_count() {
    let mut events = shop();
    events.push(pod("kube-system", "coredns-1", "10.244.9.9", "coredns"));
    events.push(service("kube-system", "coredns", "10.96.0.53", 53, 53));
    let mut dns = conn(ConnKind::UdpFlow, Side::Client, "10.244.1.10", 50000, "10.96.0.53", 53, T0 + MS);
    dns.bytes_sent = 40;
    events.push(Event::Conn(dns));
    for i in 0..3 {
        events.push(Event::Conn(conn(
            ConnKind::TcpConnect,
            Side::Client,
            "10.244.1.10",
            40000 + i,
            "10.96.0.20",
            80,
            T0 + MS,
        )));
    }
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "10.244.2.20", 40000, "10.96.0.10", 80, T0 + MS)));
    let t = run(Config::default(), events.clone());
    assert_eq!(edges(&t).len(), 2, "kube-system is excluded by default");
    assert!(!t.services.contains_key("kube-system/coredns"));
    let t = run(Config { min_connection_count: 2, ..Config::default() }, events.clone());
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "tcp", 80, 3, 0, 0, 0)]);
    let t = run(
        Config { ignore_system_namespaces: false, exclude_namespaces: vec![], namespaces: vec![], ..Config::default() },
        events.clone(),
    );
    assert_eq!(edges(&t).len(), 3);
    let t = run(Config { namespaces: vec!["other".into()], ..Config::default() }, events);
    assert!(t.edges.is_empty() && t.services.is_empty());
}

#[test]
fn outside_addresses_past_max_services_share_one_node() {
    let mut events = shop();
    for i in 0..5u8 {
        let ip = format!("198.51.100.{i}");
        events.push(Event::Conn(conn(
            ConnKind::TcpConnect,
            Side::Client,
            "10.244.1.10",
            40000 + u16::from(i),
            &ip,
            443,
            T0 + MS,
        )));
    }
    let config = Config { max_services: 3, include_external_services: true, ..Config::default() };
    let t = run(config, events);
    assert_eq!(
        edges(&t),
        vec![
            edge("shop/web", "external/198.51.100.0:443", "tcp", 443, 1, 0, 0, 0),
            edge("shop/web", "external/198.51.100.1:443", "tcp", 443, 1, 0, 0, 0),
            edge("shop/web", "external/other", "tcp", 443, 3, 0, 0, 0),
        ]
    );
    assert_eq!(t.stats.external_overflow, 3);
    assert_eq!(t.services["external/other"].kind, NodeKind::External);
}

#[test]
fn evictions_are_counted_when_the_table_is_full() {
    let mut events = shop();
    for i in 0..10 {
        events.push(Event::Conn(conn(
            ConnKind::TcpConnect,
            Side::Client,
            "10.244.1.10",
            40000 + i,
            "10.96.0.20",
            80,
            T0 + MS,
        )));
    }
    let t = run(Config { max_connections: 4, ..Config::default() }, events);
    assert_eq!(t.stats.evicted, 6);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "tcp", 80, 10, 0, 0, 0)]);
}

#[test]
fn a_dual_stack_listeners_accept_joins_the_ipv4_clients_connect() {
    let mut events = shop();
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, T0 + MS)));
    // An AF_INET6 listening socket sees IPv4 peers as IPv4-mapped addresses.
    let accept =
        conn(ConnKind::TcpAccept, Side::Server, "::ffff:10.244.1.10", 40000, "::ffff:10.244.2.20", 8080, T0 + 2 * MS);
    events.push(Event::Conn(accept));
    let t = run(Config::default(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "tcp", 80, 1, 0, 0, 0)]);
    assert_eq!(t.stats.both_ends_merged, 1);
}
