//! Traffic that enters through a node port, a load balancer or an external IP lands
//! on the Service behind it, on the same edge the server's end of it resolves to.

use serde_json::json;
use smap_analyze::analysis::{analyze, Options};
use smap_analyze::Config;
use smap_replay::{ConnKind, Event, ObjectAction, ObjectKind, Side};

use crate::object;
use crate::resolution::{conn, edge, edges, run, shop, slice, MS, T0};

const NODE_IP: &str = "10.0.0.1";
const LB_IP: &str = "192.0.2.80";

/// The shop, with node-1 at 10.0.0.1, api exposed as a LoadBalancer (port 80, node
/// port 30080, load-balancer IP 192.0.2.80) and a second Service, admin (port 9000),
/// sharing that load-balancer IP.
fn exposed_shop() -> Vec<Event> {
    let mut events = shop();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "uid": "n1"},
                      "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}});
    events.push(object(ObjectKind::Node, ObjectAction::Snapshot, node, T0));
    let api = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "api", "namespace": "shop", "uid": "svc-api", "resourceVersion": "2"},
        "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.20", "selector": {"app": "api"},
                 "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080, "name": "http"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": LB_IP}]}},
    });
    events.push(object(ObjectKind::Service, ObjectAction::Modified, api, T0));
    let admin = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "admin", "namespace": "shop", "uid": "svc-admin"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.30", "externalIPs": [LB_IP], "selector": {"app": "admin"},
                 "ports": [{"port": 9000, "targetPort": 9000}]},
    });
    events.push(object(ObjectKind::Service, ObjectAction::Snapshot, admin, T0));
    events.push(crate::resolution::pod("shop", "admin-1", "10.244.3.30", "admin"));
    events.push(slice("shop", "admin", &[("10.244.3.30", "admin-1", true)], T0, ObjectAction::Snapshot));
    events
}

/// With externals and nodes kept: this is about them.
fn config() -> Config {
    Config { include_external_services: true, ..Config::default() }
}

/// A connection from `src` to `dst:port`, seen by the client and by api's pod.
fn through(events: &mut Vec<Event>, src: &str, sport: u16, dst: &str, port: u16, pod: (&str, u16), t: i64) {
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, src, sport, dst, port, t)));
    events.push(Event::Conn(conn(ConnKind::TcpAccept, Side::Server, src, sport, pod.0, pod.1, t + MS)));
}

#[test]
fn a_node_port_is_the_service_on_its_service_port() {
    let mut events = exposed_shop();
    through(&mut events, "10.244.1.10", 40000, NODE_IP, 30080, ("10.244.2.20", 8080), T0 + MS);
    let t = run(config(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "tcp", 80, 1, 0, 0, 0)]);
    assert_eq!(t.stats.both_ends_merged, 1, "the client's and the server's end are one connection");
}

#[test]
fn another_port_of_the_node_is_still_the_node() {
    let mut events = exposed_shop();
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, NODE_IP, 10250, T0 + MS)));
    let t = run(config(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "node/node-1", "tcp", 10250, 1, 0, 0, 0)]);
}

#[test]
fn a_shared_load_balancer_ip_is_told_apart_by_port() {
    let mut events = exposed_shop();
    // From outside the cluster (no SNAT: externalTrafficPolicy Local), to each port.
    through(&mut events, "198.51.100.7", 50000, LB_IP, 80, ("10.244.2.20", 8080), T0 + MS);
    through(&mut events, "198.51.100.7", 50001, LB_IP, 9000, ("10.244.3.30", 9000), T0 + 3 * MS);
    // A port neither Service has stays an outside address.
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40002, LB_IP, 443, T0 + 5 * MS)));
    let t = run(config(), events);
    assert_eq!(
        edges(&t),
        vec![
            edge("external/198.51.100.7", "shop/admin", "tcp", 9000, 1, 0, 0, 0),
            edge("external/198.51.100.7", "shop/api", "tcp", 80, 1, 0, 0, 0),
            edge("shop/web", "external/192.0.2.80:443", "tcp", 443, 1, 0, 0, 0),
        ]
    );
}

#[test]
fn a_node_port_goes_with_its_service() {
    let mut events = exposed_shop();
    let api = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "api", "namespace": "shop", "uid": "svc-api", "resourceVersion": "3"},
        "spec": {"clusterIP": "10.96.0.20"},
    });
    events.push(object(ObjectKind::Service, ObjectAction::Deleted, api, T0 + MS));
    events.push(Event::Conn(conn(
        ConnKind::TcpConnect,
        Side::Client,
        "10.244.1.10",
        40000,
        NODE_IP,
        30080,
        T0 + 2 * MS,
    )));
    let t = run(config(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "node/node-1", "tcp", 30080, 1, 0, 0, 0)]);
}

#[test]
fn the_api_servers_service_is_the_control_plane_not_an_orphan() {
    // default/kubernetes, its endpoints the API server's address (no pod), and a
    // Service of the shop that nothing calls: only the latter is an orphan.
    let mut events = shop();
    let kubernetes = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "uid": "svc-kubernetes"},
        "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
    });
    events.push(object(ObjectKind::Service, ObjectAction::Snapshot, kubernetes, T0));
    let endpoints = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "endpoints": [{"addresses": ["10.0.0.100"], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": 6443}],
    });
    events.push(object(ObjectKind::EndpointSlice, ObjectAction::Snapshot, endpoints, T0));
    let t = run(config(), events);
    assert!(t.services.contains_key("default/kubernetes"));
    let report = analyze(&t, None, None, &Options::default()).unwrap();
    let orphans: Vec<&str> = report.orphans.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(orphans, ["shop/api", "shop/web"]);
}
