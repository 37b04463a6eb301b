//! Edges from an ingress controller carry the Ingress rules that route to their
//! destination Service port; other callers' edges do not.

use serde_json::json;
use smap_analyze::topology::IngressRoute;
use smap_analyze::Config;
use smap_replay::{ConnKind, Event, ObjectAction, ObjectKind, Side};

use crate::object;
use crate::resolution::{conn, run, shop, slice, MS, T0};

/// The shop, with an nginx ingress controller pod (no Service) and an Ingress.
fn shop_behind_an_ingress(ingress: serde_json::Value) -> Vec<Event> {
    let mut events = shop();
    let controller = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "ingress-nginx-controller-5d8f7c9b4-abcde", "namespace": "ingress-nginx", "uid": "ctl",
                     "labels": {"app.kubernetes.io/name": "ingress-nginx", "pod-template-hash": "5d8f7c9b4"},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": "ingress-nginx-controller-5d8f7c9b4", "controller": true}]},
        "spec": {"nodeName": "node-1", "containers": [{"name": "controller", "image": "registry.k8s.io/ingress-nginx/controller:v1.11.2"}]},
        "status": {"phase": "Running", "podIP": "10.244.9.9", "podIPs": [{"ip": "10.244.9.9"}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    });
    events.push(object(ObjectKind::Pod, ObjectAction::Snapshot, controller, T0));
    events.push(object(ObjectKind::Ingress, ObjectAction::Snapshot, ingress, T0));
    events.push(slice("shop", "api", &[("10.244.2.20", "api-1", true)], T0, ObjectAction::Modified));
    events
}

fn ingress(rules: serde_json::Value, default_backend: Option<serde_json::Value>) -> serde_json::Value {
    let mut spec = json!({"ingressClassName": "nginx", "rules": rules});
    if let Some(backend) = default_backend {
        spec["defaultBackend"] = backend;
    }
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": "shop", "namespace": "shop", "uid": "ing-shop", "resourceVersion": "7"}, "spec": spec})
}

fn call(events: &mut Vec<Event>, src: &str, sport: u16, dst: &str, port: u16) {
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, src, sport, dst, port, T0 + MS)));
}

fn route(host: &str, path: &str) -> IngressRoute {
    IngressRoute { ingress: "shop/shop".to_owned(), host: host.to_owned(), path: path.to_owned() }
}

#[test]
fn rules_by_number_by_port_name_and_the_default_backend_label_the_controllers_edge() {
    let rules = json!([
        {"host": "api.shop.example", "http": {"paths": [
            {"path": "/v1", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 80}}}},
            {"path": "/v2", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"name": "http"}}}},
            {"path": "/admin", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 9000}}}},
        ]}},
        {"http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}},
    ]);
    let default = json!({"service": {"name": "api", "port": {"number": 80}}});
    let mut events = shop_behind_an_ingress(ingress(rules, Some(default)));
    // The controller dials api's pod, web's ClusterIP; web calls api itself.
    call(&mut events, "10.244.9.9", 40000, "10.244.2.20", 8080);
    call(&mut events, "10.244.9.9", 40001, "10.96.0.10", 80);
    call(&mut events, "10.244.1.10", 40002, "10.96.0.20", 80);
    let t = run(Config::default(), events);
    let labels: Vec<(&str, &str, Vec<IngressRoute>)> =
        t.edges.iter().map(|e| (e.source.as_str(), e.destination.as_str(), e.ingress.clone())).collect();
    assert_eq!(
        labels,
        vec![
            (
                "ingress-nginx/ingress-nginx-controller",
                "shop/api",
                vec![route("*", "/"), route("api.shop.example", "/v1"), route("api.shop.example", "/v2")]
            ),
            ("ingress-nginx/ingress-nginx-controller", "shop/web", vec![route("*", "/")]),
            ("shop/web", "shop/api", vec![]),
        ],
        "port 9000 is not the edge's port; web is no ingress controller"
    );
    let json: serde_json::Value = serde_json::from_str(&t.to_json()).unwrap();
    assert!(json["edges"][2].get("ingress").is_none(), "absent, not empty");
}

#[test]
fn a_deleted_ingress_labels_nothing() {
    let rules = json!([{"host": "api.shop.example", "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}}]);
    let doc = ingress(rules, None);
    let mut events = shop_behind_an_ingress(doc.clone());
    events.push(object(ObjectKind::Ingress, ObjectAction::Deleted, doc, T0 + MS));
    call(&mut events, "10.244.9.9", 40000, "10.244.2.20", 8080);
    let t = run(Config::default(), events);
    assert_eq!(t.edges.len(), 1);
    assert!(t.edges[0].ingress.is_empty());
}
