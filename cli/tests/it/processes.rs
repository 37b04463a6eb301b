//! Which binary on each end: the process names the kernel saw, captured for real (a
//! client binary under its own name, and the server).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use smap_e2e::{peer_binary, require_root, Cluster, ServicePort};

use crate::e2e::{build, kubectl_file, pod, service, Capture, ONE_AT_A_TIME};

#[test]
fn each_end_of_an_edge_names_its_processes() {
    if !require_root("each_end_of_an_edge_names_its_processes") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("processes").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "registry.example/shop/web:3.1", &[]);
    let api = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let svc = service(&mut cluster, "api", 20, ServicePort::tcp(80, 8080));
    let mut server = cluster.serve_tcp(&api, 8080).unwrap();
    // The same client under another name, as a pod's second binary.
    let dir = tempfile::tempdir().unwrap();
    let worker = dir.path().join("orders-worker");
    std::fs::copy(peer_binary().unwrap(), &worker).unwrap();
    std::fs::set_permissions(&worker, std::fs::Permissions::from_mode(0o755)).unwrap();

    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    assert!(cluster.tcp_call(&web, svc.addr(80), 100, 400).unwrap().is_ok());
    let out = cluster
        .command_in(&web, &worker)
        .unwrap()
        .args(["tcp-call", &svc.addr(80).to_string(), "100", "400"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.wait_exchanges(2, Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();

    let topology = build(&recording);
    assert_eq!(topology["edges"].as_array().unwrap().len(), 1);
    assert_eq!(
        topology["edges"][0]["processes"],
        serde_json::json!({"client": ["orders-worker", "smap-e2e-peer"], "server": ["smap-e2e-peer"]})
    );
}
