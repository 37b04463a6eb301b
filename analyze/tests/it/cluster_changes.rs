//! Resolution as the cluster changes: an address is attributed by the state as of each
//! event's time, through IP reuse, late copies of old versions, node deletion, readiness
//! and the engine's resolution caches.

use serde_json::json;
use smap_analyze::topology::{Health, ServiceType};
use smap_analyze::Config;
use smap_replay::{ConnKind, Event, ObjectAction, ObjectKind, Side};

use crate::object;
use crate::resolution::{conn, edge, edges, pod, pod_json, run, service, shop, slice, MS, T0};

#[test]
fn an_ip_reused_by_another_services_pod_is_attributed_by_time() {
    let mut events = shop();
    events.push(pod("shop", "db-1", "10.244.3.30", "db"));
    events.push(service("shop", "db", "10.96.0.30", 5432, 5432));
    events.push(slice("shop", "db", &[("10.244.3.30", "db-1", true)], T0, ObjectAction::Snapshot));
    // web-1 calls api, then is deleted; its IP goes to a pod of api, which calls db.
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, T0 + MS)));
    let deleted = pod_json("shop", "web-1", "10.244.1.10", json!({"app": "web"}), None, true);
    events.push(object(ObjectKind::Pod, ObjectAction::Deleted, deleted, T0 + 10 * MS));
    events.push(slice("shop", "web", &[], T0 + 10 * MS, ObjectAction::Modified));
    let reused = pod_json("shop", "api-2", "10.244.1.10", json!({"app": "api"}), None, true);
    events.push(object(ObjectKind::Pod, ObjectAction::Added, reused, T0 + 11 * MS));
    events.push(slice(
        "shop",
        "api",
        &[("10.244.2.20", "api-1", true), ("10.244.1.10", "api-2", true)],
        T0 + 11 * MS,
        ObjectAction::Modified,
    ));
    events.push(Event::Conn(conn(
        ConnKind::TcpConnect,
        Side::Client,
        "10.244.1.10",
        40001,
        "10.96.0.30",
        5432,
        T0 + 20 * MS,
    )));
    let t = run(Config::default(), events);
    assert_eq!(
        edges(&t),
        vec![edge("shop/api", "shop/db", "tcp", 5432, 1, 0, 0, 0), edge("shop/web", "shop/api", "tcp", 80, 1, 0, 0, 0)]
    );
}

#[test]
fn a_lagging_nodes_copy_of_an_old_version_does_not_undo_a_delete() {
    let with_version = |event: Event, version: &str| match event {
        Event::Object(mut o) => {
            o.resource_version = version.to_owned();
            Event::Object(o)
        }
        other => other,
    };
    let mut events = shop();
    let web = pod_json("shop", "web-1", "10.244.1.10", json!({"app": "web"}), None, true);
    events.push(with_version(object(ObjectKind::Pod, ObjectAction::Deleted, web.clone(), T0 + 10 * MS), "6"));
    let reused = pod_json("shop", "api-2", "10.244.1.10", json!({"app": "api"}), None, true);
    events.push(with_version(object(ObjectKind::Pod, ObjectAction::Added, reused, T0 + 11 * MS), "7"));
    events.push(slice(
        "shop",
        "api",
        &[("10.244.2.20", "api-1", true), ("10.244.1.10", "api-2", true)],
        T0 + 11 * MS,
        ObjectAction::Modified,
    ));
    // Another node's recording still carries web-1's older version, and a second copy
    // of its delete.
    events.push(with_version(object(ObjectKind::Pod, ObjectAction::Modified, web.clone(), T0 + 12 * MS), "5"));
    events.push(with_version(object(ObjectKind::Pod, ObjectAction::Deleted, web, T0 + 12 * MS), "6"));
    events.push(Event::Conn(conn(
        ConnKind::TcpConnect,
        Side::Client,
        "10.244.1.10",
        40001,
        "10.96.0.10",
        80,
        T0 + 20 * MS,
    )));
    let t = run(Config::default(), events);
    assert_eq!(edges(&t), vec![edge("shop/api", "shop/web", "tcp", 80, 1, 0, 0, 0)]);
    assert_eq!(t.stats.duplicate_objects, 2);
}

#[test]
fn a_deleted_nodes_address_is_outside_the_cluster_again() {
    let mut events = shop();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-9", "uid": "n9"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.9"}]}});
    events.push(object(ObjectKind::Node, ObjectAction::Snapshot, node.clone(), T0));
    events.push(Event::Conn(conn(
        ConnKind::TcpConnect,
        Side::Client,
        "10.244.2.20",
        40000,
        "10.0.0.9",
        10250,
        T0 + MS,
    )));
    events.push(object(ObjectKind::Node, ObjectAction::Deleted, node, T0 + 2 * MS));
    events.push(Event::Conn(conn(
        ConnKind::TcpConnect,
        Side::Client,
        "10.244.2.20",
        40001,
        "10.0.0.9",
        10250,
        T0 + 3 * MS,
    )));
    let t = run(Config { include_external_services: true, ..Config::default() }, events);
    assert_eq!(
        edges(&t),
        vec![
            edge("shop/api", "external/10.0.0.9:10250", "tcp", 10250, 1, 0, 0, 0),
            edge("shop/api", "node/node-9", "tcp", 10250, 1, 0, 0, 0),
        ]
    );
}

#[test]
fn health_follows_endpoint_readiness() {
    let mut events = shop();
    events.push(slice(
        "shop",
        "api",
        &[("10.244.2.20", "api-1", true), ("10.244.2.21", "api-2", false)],
        T0 + MS,
        ObjectAction::Modified,
    ));
    events.push(slice("shop", "web", &[("10.244.1.10", "web-1", false)], T0 + MS, ObjectAction::Modified));
    events.push(object(
        ObjectKind::Service,
        ObjectAction::Snapshot,
        json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "legacy", "namespace": "shop"},
        "spec": {"clusterIP": "10.96.0.99", "ports": [{"port": 5432}]}}),
        T0,
    ));
    let t = run(Config::default(), events);
    let api = &t.services["shop/api"];
    assert_eq!((api.health, api.endpoints.ready, api.endpoints.total), (Health::Degraded, 1, 2));
    assert_eq!(t.services["shop/web"].health, Health::Down);
    assert_eq!(t.services["shop/legacy"].health, Health::Unknown, "no selector, no slices");
    assert_eq!(t.services["shop/legacy"].service_type, ServiceType::Database);
    assert_eq!(t.services["shop/api"].version.as_deref(), Some("1.0"), "image tag");
}

#[test]
fn cached_resolutions_follow_the_cluster_as_it_changes() {
    // The same addresses are dialed after each change: an answer cached before it
    // would show up as a wrong edge.
    let dial = |port: u16, t: i64| {
        [
            conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", port, "10.244.3.30", 8080, t),
            conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", port + 1, "fd00::30", 8080, t),
            conn(ConnKind::TcpConnect, Side::Client, "10.244.3.30", port, "10.96.0.20", 80, t),
        ]
        .map(Event::Conn)
    };
    let mut dual_stack = pod_json("shop", "cache-1", "10.244.3.30", json!({"app": "cache"}), None, true);
    dual_stack["status"]["podIPs"] = json!([{"ip": "10.244.3.30"}, {"ip": "fd00::30"}]);
    let mut events = shop();
    events.push(object(ObjectKind::Pod, ObjectAction::Added, dual_stack.clone(), T0 + MS));
    events.extend(dial(41000, T0 + 2 * MS));
    // A Service selects the pod; it has no EndpointSlice yet.
    events.push(service("shop", "cache", "10.96.0.30", 80, 8080));
    events.extend(dial(42000, T0 + 3 * MS));
    // Its first EndpointSlice lists some other pod: selectors no longer stand in.
    events.push(slice("shop", "cache", &[("10.244.9.9", "elsewhere", true)], T0 + 3 * MS, ObjectAction::Added));
    events.extend(dial(42500, T0 + 3 * MS + 1));
    // api's slice now lists the pod's IPv4 address: both of its addresses are api's.
    let both = [("10.244.2.20", "api-1", true), ("10.244.3.30", "cache-1", true)];
    events.push(slice("shop", "api", &both, T0 + 4 * MS, ObjectAction::Modified));
    events.extend(dial(43000, T0 + 5 * MS));
    // The pod goes, another takes its IPv4 address, api's slice lets go of it.
    events.push(object(ObjectKind::Pod, ObjectAction::Deleted, dual_stack, T0 + 6 * MS));
    events.push(object(
        ObjectKind::Pod,
        ObjectAction::Added,
        pod_json("shop", "debug", "10.244.3.30", json!({"app": "debug"}), None, true),
        T0 + 6 * MS,
    ));
    events.push(slice("shop", "api", &[("10.244.2.20", "api-1", true)], T0 + 6 * MS, ObjectAction::Modified));
    events.extend(dial(44000, T0 + 7 * MS));
    let t = run(Config { include_external_services: true, ..Config::default() }, events);
    let mut expected = vec![
        edge("shop/web", "shop/cache-1", "tcp", 8080, 4, 0, 0, 0),
        edge("shop/cache-1", "shop/api", "tcp", 80, 2, 0, 0, 0),
        edge("shop/web", "shop/cache", "tcp", 80, 2, 0, 0, 0),
        edge("shop/cache", "shop/api", "tcp", 80, 1, 0, 0, 0),
        edge("shop/web", "shop/api", "tcp", 80, 2, 0, 0, 0),
        edge("shop/api", "shop/api", "tcp", 80, 1, 0, 0, 0),
        edge("shop/web", "shop/debug", "tcp", 8080, 1, 0, 0, 0),
        edge("shop/web", "external/[fd00::30]:8080", "tcp", 8080, 1, 0, 0, 0),
        edge("shop/debug", "shop/api", "tcp", 80, 1, 0, 0, 0),
    ];
    expected.sort();
    let mut found = edges(&t);
    found.sort();
    assert_eq!(found, expected);
}
