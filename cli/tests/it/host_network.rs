//! End to end, as root: a hostNetwork pod (its processes in the node's network
//! namespace, in a cgroup named as kubelet names a pod's) is that pod, not the node,
//! for connections it opens during the capture and for one it held open from before.
//!
//! Needs root, iproute2, iptables and a writable cgroup2 hierarchy; skipped with a
//! printed reason elsewhere, and a failure under CI=true.

use std::net::SocketAddrV4;
use std::time::Duration;

use smap_e2e::{require_root, CallReport, Cluster, ContainerPort, Owner, PodSpec, ServicePort};
use smap_replay::{ConnKind, Recording, Side};

use crate::e2e::{build, kubectl_file, pod, service, Capture, NS, ONE_AT_A_TIME};
use crate::smap;

#[test]
fn a_host_network_pods_traffic_is_the_pods_and_the_nodes_stays_the_nodes() {
    if !require_root("a_host_network_pods_traffic_is_the_pods_and_the_nodes_stays_the_nodes") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("hostnet").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api_pod = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let api = service(&mut cluster, "api", 20, ServicePort::tcp(80, 8080));
    let agent = cluster
        .add_host_network_pod(
            PodSpec::new(NS, "node-agent-x7k2p", cluster.node_ip())
                .label("app", "node-agent")
                .owner(Owner::DaemonSet("node-agent".into()))
                .container("agent", "registry.example/node-agent:1.2", vec![ContainerPort::tcp(9100)]),
        )
        .unwrap();
    let mut api_server = cluster.serve_tcp(&api_pod, 8080).unwrap();
    let mut agent_server = cluster.serve_tcp(&agent, 9100).unwrap();
    // A pooled connection the agent opened before smap started, open past its end.
    let mut pooled = cluster.tcp_hold(&agent, api.addr(80)).unwrap();
    assert!(pooled.report().is_some_and(CallReport::is_ok), "{:?}", pooled.report());

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    pooled.send(700).unwrap();
    assert!(cluster.tcp_call(&agent, api.addr(80), 100, 0).unwrap().is_ok());
    // The kubelet (a node process in no pod's cgroup) calls the same Service.
    let out = cluster
        .node_command(smap_e2e::peer_binary().unwrap())
        .unwrap()
        .args(["tcp-call", &api.addr(80).to_string(), "50", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // web scrapes the agent on the node's address.
    assert!(cluster.tcp_call(&web, SocketAddrV4::new(cluster.node_ip(), 9100), 10, 300).unwrap().is_ok());
    api_server.wait_exchanges(2, Duration::from_secs(5)).unwrap();
    agent_server.wait_exchanges(1, Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();
    assert!(pooled.release().unwrap().is_ok());

    let cgroups: Vec<_> = Recording::open(&recording).unwrap().pod_cgroups().map(Result::unwrap).collect();
    assert!(
        cgroups.iter().any(|c| c.path.contains("kubepods-besteffort-pod") && c.pod_uid().is_some()),
        "the agent's cgroup is recorded: {cgroups:?}"
    );
    // The pooled connection was found open by the enumeration, where no task of its
    // owner runs: its cgroup is the socket's.
    let agent_cgroups: Vec<u64> = cgroups.iter().filter(|c| c.pod_uid().is_some()).map(|c| c.cgroup_id).collect();
    let existing: Vec<_> = Recording::open(&recording)
        .unwrap()
        .conn_events()
        .map(Result::unwrap)
        .filter(|e| e.kind == ConnKind::TcpExisting && e.side == Side::Client)
        .collect();
    assert!(!existing.is_empty());
    assert!(existing.iter().all(|e| agent_cgroups.contains(&e.cgroup_id)), "{existing:?} {agent_cgroups:?}");
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "include_external_services: true\n").unwrap();
    let out = smap(&["build", recording.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let topology: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let node = format!("node/{}", cluster.node_name());
    let mut found: Vec<String> = topology["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{} -> {} :{} connections={}", e["source"], e["destination"], e["port"], e["connections"]))
        .collect();
    found.sort();
    let mut expected = vec![
        format!("\"shop/node-agent\" -> \"shop/api\" :80 connections=2"),
        format!("\"{node}\" -> \"shop/api\" :80 connections=1"),
        format!("\"shop/web\" -> \"shop/node-agent\" :9100 connections=1"),
    ];
    expected.sort();
    assert_eq!(found, expected, "{}", topology["stats"]);
    // The default build leaves the node out, and keeps the pod.
    let default = build(&recording);
    assert_eq!(default["services"]["shop/node-agent"]["kind"], "workload", "{}", default["services"]);
}
