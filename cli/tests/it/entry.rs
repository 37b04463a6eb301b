//! Traffic entering a Service through a node port, captured for real: a pod dials the
//! node's address, kube-proxy's DNAT rule sends it to the Service's pod, and the map
//! shows one connection to the Service, from both ends.

use std::time::Duration;

use smap_e2e::{require_root, Cluster, ServicePort};

use crate::e2e::{build, edges, kubectl_file, pod, service, Capture, ONE_AT_A_TIME};

#[test]
fn a_node_port_call_lands_on_the_service_from_both_ends() {
    if !require_root("a_node_port_call_lands_on_the_service_from_both_ends") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("nodeport").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    service(&mut cluster, "api", 20, ServicePort::tcp(80, 8080).node_port(30080));
    let mut server = cluster.serve_tcp(&api, 8080).unwrap();
    let node_port = std::net::SocketAddrV4::new(cluster.node_ip(), 30080);

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    for _ in 0..2 {
        let call = cluster.tcp_call(&web, node_port, 100, 400).unwrap();
        assert!(call.is_ok(), "{call:?}");
    }
    server.wait_exchanges(2, Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();

    let topology = build(&recording);
    assert_eq!(
        edges(&topology),
        ["shop/web -> shop/api tcp/80 connections=2 failed=0 sent=200 received=800"],
        "keyed by the Service port, as the pod's end resolves it"
    );
    assert_eq!(topology["stats"]["both_ends_merged"], 2);
    assert_eq!(topology["services"]["shop/api"]["type"], "api");
}
