//! Traffic through an ingress controller, captured for real: an outside client and a
//! pod call the controller (through its node port and its ClusterIP), the controller
//! routes each request by its Host header to a backend pod, and the map labels the
//! controller's calls with the Ingress rules they serve.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use serde_json::{json, Value};
use smap_e2e::{require_root, Cluster, ContainerPort, IngressSpec, Owner, PodSpec, ServicePort, ServiceSpec};

use crate::e2e::{kubectl_file, pod, service, Capture, ONE_AT_A_TIME};
use crate::{smap, stderr};

/// (source, destination, port, connections, ingress) of each edge.
fn routed(topology: &Value) -> Vec<(String, String, u64, u64, Value)> {
    topology["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["source"].as_str().unwrap().to_owned(),
                e["destination"].as_str().unwrap().to_owned(),
                e["port"].as_u64().unwrap(),
                e["connections"].as_u64().unwrap(),
                e.get("ingress").cloned().unwrap_or(Value::Null),
            )
        })
        .collect()
}

#[test]
fn an_ingress_controllers_calls_carry_the_rules_they_serve() {
    if !require_root("an_ingress_controllers_calls_carry_the_rules_they_serve") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("ingress").unwrap();
    let controller = cluster
        .add_pod(
            PodSpec::new("ingress-nginx", "ingress-nginx-controller-7c6b9d8f4-k2x9z", Ipv4Addr::new(10, 244, 1, 80))
                .label("app.kubernetes.io/name", "ingress-nginx")
                .owner(Owner::Deployment("ingress-nginx-controller".to_owned()))
                .container("controller", "registry.k8s.io/ingress-nginx/controller:v1.11.2", [ContainerPort::tcp(80)]),
        )
        .unwrap();
    cluster
        .add_service(
            ServiceSpec::new("ingress-nginx", "ingress-nginx-controller", Ipv4Addr::new(10, 96, 0, 80))
                .port(ServicePort::tcp(80, 80).node_port(30080))
                .selector("app.kubernetes.io/name", "ingress-nginx"),
        )
        .unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "registry.example/shop/web:3.1", &[]);
    let storefront = pod(&mut cluster, "store1", 20, "storefront", "registry.example/shop/storefront:2.0", &[8080]);
    let api = pod(&mut cluster, "api1", 30, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let storefront_svc = service(&mut cluster, "storefront", 20, ServicePort::tcp(80, 8080));
    service(&mut cluster, "api", 30, ServicePort::tcp(80, 8080));
    cluster
        .add_ingress(IngressSpec::new("shop", "shop").rule("shop.example", "/", "storefront", 80).rule(
            "api.shop.example",
            "/v1",
            "api",
            80,
        ))
        .unwrap();
    let mut backends = [cluster.serve_tcp(&storefront, 8080).unwrap(), cluster.serve_tcp(&api, 8080).unwrap()];
    // ingress-nginx dials its backends' pod IPs, not their ClusterIPs.
    let routes = [
        ("shop.example", SocketAddrV4::new(storefront.ip, 8080)),
        ("api.shop.example", SocketAddrV4::new(api.ip, 8080)),
    ];
    let mut proxy = cluster.serve_ingress(&controller, 80, &routes, 300).unwrap();
    let browser = cluster.add_external("browser", &[Ipv4Addr::new(198, 51, 100, 7)]).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    let node_port = SocketAddr::from(SocketAddrV4::new(cluster.node_ip(), 30080));
    let cluster_ip = SocketAddr::from(SocketAddrV4::new(Ipv4Addr::new(10, 96, 0, 80), 80));
    for (from, target, host) in [
        (&browser, node_port, "shop.example"),
        (&browser, node_port, "shop.example"),
        (&browser, node_port, "api.shop.example"),
        (&web, cluster_ip, "shop.example"),
    ] {
        let report = cluster.http_get(from, target, host).unwrap();
        assert!(report.is_ok(), "{host} via {target}: {report:?}");
    }
    // And one call that passes no ingress.
    assert!(cluster.tcp_call(&web, storefront_svc.addr(80), 100, 300).unwrap().is_ok());
    proxy.wait_exchanges(4, Duration::from_secs(5)).unwrap();
    backends[0].wait_exchanges(4, Duration::from_secs(5)).unwrap();
    backends[1].wait_exchanges(1, Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();

    let config = dir.path().join("smap.yaml");
    std::fs::write(&config, "include_external_services: true\n").unwrap();
    let out = smap(&["build", recording.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let topology: Value = serde_json::from_slice(&out.stdout).unwrap();
    let controller_id = "ingress-nginx/ingress-nginx-controller";
    let rule = |host: &str, path: &str| json!([{"ingress": "shop/shop", "host": host, "path": path}]);
    let s = |v: &str| v.to_owned();
    assert_eq!(
        routed(&topology),
        [
            (s("external/198.51.100.7"), s(controller_id), 80, 3, Value::Null),
            (s(controller_id), s("shop/api"), 80, 1, rule("api.shop.example", "/v1")),
            (s(controller_id), s("shop/storefront"), 80, 3, rule("shop.example", "/")),
            (s("shop/web"), s(controller_id), 80, 1, Value::Null),
            (s("shop/web"), s("shop/storefront"), 80, 1, Value::Null),
        ],
        "the controller's calls name their rules; a pod's own call to a backend does not"
    );
    assert_eq!(topology["services"][controller_id]["type"], "proxy");
}
