//! hostNetwork pods told from their node by the cgroup of the process that reported
//! the connection.

use std::sync::Arc;

use serde_json::json;
use smap_analyze::Config;
use smap_replay::{ConnKind, Event, ObjectAction, ObjectKind, PodCgroup, Side};

use crate::object;
use crate::resolution::{conn, edge, edges, pod_json, run, shop, MS, T0};

const UID: &str = "0f3c2a1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
const SYSTEMD_SCOPE: &str = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f3c2a1e_5b6d_4e7f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-4f1d.scope";

fn cluster_with_agent() -> Vec<Event> {
    let mut events = shop();
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.1"}]}});
    events.push(object(ObjectKind::Node, ObjectAction::Snapshot, node, T0));
    let mut agent =
        pod_json("shop", "agent-x1", "10.0.0.1", json!({"app": "agent"}), Some(("DaemonSet", "agent")), true);
    agent["metadata"]["uid"] = json!(UID);
    agent["spec"]["hostNetwork"] = json!(true);
    agent["spec"]["containers"][0]["ports"] = json!([{"containerPort": 9100}]);
    events.push(object(ObjectKind::Pod, ObjectAction::Snapshot, agent, T0));
    events
}

fn cgroup(node: &str, id: u64, path: &str) -> Event {
    Event::from(PodCgroup { time_ns: T0 + MS, node: Arc::from(node), cgroup_id: id, path: Arc::from(path) })
}

fn from(cgroup_id: u64, kind: ConnKind, side: Side, src: &str, sport: u16, dst: &str, dport: u16) -> Event {
    Event::Conn(smap_replay::ConnEvent { cgroup_id, ..conn(kind, side, src, sport, dst, dport, T0 + 2 * MS) })
}

#[test]
fn a_host_network_pods_calls_come_from_the_pod_not_its_node() {
    let mut events = cluster_with_agent();
    events.push(cgroup("node-1", 77, SYSTEMD_SCOPE));
    // The same id on another node is another cgroup.
    events.push(cgroup("node-2", 78, SYSTEMD_SCOPE));
    events.push(cgroup("node-1", 90, "/system.slice/kubelet.service"));
    events.extend([
        // The agent calls the api Service, then an undeclared port of a pod.
        from(77, ConnKind::TcpConnect, Side::Client, "10.0.0.1", 41000, "10.96.0.20", 80),
        from(77, ConnKind::TcpConnect, Side::Client, "10.0.0.1", 41001, "10.244.1.10", 9999),
        // The kubelet probes, from a cgroup that is no pod's.
        from(90, ConnKind::TcpConnect, Side::Client, "10.0.0.1", 41002, "10.244.2.20", 8080),
        // A process in cgroup 78 on this node is not the agent.
        from(78, ConnKind::TcpConnect, Side::Client, "10.0.0.1", 41003, "10.244.2.20", 8080),
        // An unknown cgroup (the kernel did not know the owner).
        from(0, ConnKind::TcpConnect, Side::Client, "10.0.0.1", 41004, "10.244.2.20", 8080),
        // The agent's server, on a port it does not declare, seen only at its end.
        from(77, ConnKind::TcpAccept, Side::Server, "10.244.1.10", 42000, "10.0.0.1", 9200),
        // Its declared port still resolves by the port, whoever reports.
        from(0, ConnKind::TcpConnect, Side::Client, "10.244.1.10", 42001, "10.0.0.1", 9100),
    ]);
    let t = run(Config { include_external_services: true, ..Config::default() }, events);
    let mut expected = vec![
        edge("shop/agent", "shop/api", "tcp", 80, 1, 0, 0, 0),
        edge("shop/agent", "shop/web", "tcp", 9999, 1, 0, 0, 0),
        edge("node/node-1", "shop/api", "tcp", 80, 3, 0, 0, 0),
        edge("shop/web", "shop/agent", "tcp", 9200, 1, 0, 0, 0),
        edge("shop/web", "shop/agent", "tcp", 9100, 1, 0, 0, 0),
    ];
    expected.sort();
    assert_eq!(edges(&t), expected);
    assert_eq!(t.stats.pod_cgroups, 3);
}

#[test]
fn a_cgroup_is_the_pod_only_while_the_pod_runs_with_host_network() {
    let mut events = cluster_with_agent();
    events.push(cgroup("node-1", 77, &format!("/kubepods/besteffort/pod{UID}/4f1d")));
    events.push(from(77, ConnKind::TcpConnect, Side::Client, "10.0.0.1", 41000, "10.96.0.20", 80));
    let mut agent =
        pod_json("shop", "agent-x1", "10.0.0.1", json!({"app": "agent"}), Some(("DaemonSet", "agent")), true);
    agent["metadata"]["uid"] = json!(UID);
    agent["spec"]["hostNetwork"] = json!(true);
    events.push(object(ObjectKind::Pod, ObjectAction::Deleted, agent, T0 + 3 * MS));
    events.push(Event::Conn(smap_replay::ConnEvent {
        cgroup_id: 77,
        ..conn(ConnKind::TcpConnect, Side::Client, "10.0.0.1", 41001, "10.96.0.20", 80, T0 + 4 * MS)
    }));
    let t = run(Config { include_external_services: true, ..Config::default() }, events);
    let mut expected = vec![
        edge("shop/agent", "shop/api", "tcp", 80, 1, 0, 0, 0),
        edge("node/node-1", "shop/api", "tcp", 80, 1, 0, 0, 0),
    ];
    expected.sort();
    assert_eq!(edges(&t), expected);
}

#[test]
fn a_connection_first_seen_at_its_server_moves_to_the_pod_its_client_reports_from() {
    let mut events = cluster_with_agent();
    events.push(cgroup("node-1", 77, SYSTEMD_SCOPE));
    // Open before the capture: the server's end reports first (it received the first
    // segment), from the node's address; then the agent's end, from its cgroup.
    // 100 bytes went to the server before the capture: counted by neither end.
    let existing = |side, cgroup_id, t| {
        let (bytes_sent, bytes_received) = if side == Side::Client { (100, 0) } else { (0, 100) };
        Event::Conn(smap_replay::ConnEvent {
            cgroup_id,
            bytes_sent,
            bytes_received,
            ..conn(ConnKind::TcpExisting, side, "10.0.0.1", 41000, "10.244.2.20", 8080, t)
        })
    };
    events.push(existing(Side::Server, 5, T0 + 2 * MS));
    events.push(existing(Side::Client, 77, T0 + 3 * MS));
    // Another node-sourced connection stays the node's.
    let mut later = conn(ConnKind::TcpExisting, Side::Server, "10.0.0.1", 41001, "10.244.2.20", 8080, T0 + 4 * MS);
    later.cgroup_id = 5;
    events.push(Event::Conn(later));
    let t = run(Config { include_external_services: true, ..Config::default() }, events);
    let mut expected = vec![
        edge("shop/agent", "shop/api", "tcp", 80, 1, 0, 0, 0),
        edge("node/node-1", "shop/api", "tcp", 80, 1, 0, 0, 0),
    ];
    expected.sort();
    assert_eq!(edges(&t), expected);
    assert_eq!(t.stats.moved_to_host_pods, 1);
}

#[test]
fn a_connection_first_seen_at_its_client_moves_to_the_host_network_server_it_reached() {
    let mut events = cluster_with_agent();
    events.push(cgroup("node-1", 77, SYSTEMD_SCOPE));
    // web calls the agent on a port it does not declare: the client's end says only
    // "the node"; the agent's end, from its cgroup, says which pod.
    events.push(Event::Conn(conn(
        ConnKind::TcpConnect,
        Side::Client,
        "10.244.1.10",
        42000,
        "10.0.0.1",
        9200,
        T0 + 2 * MS,
    )));
    events.push(from(77, ConnKind::TcpAccept, Side::Server, "10.244.1.10", 42000, "10.0.0.1", 9200));
    let t = run(Config { include_external_services: true, ..Config::default() }, events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/agent", "tcp", 9200, 1, 0, 0, 0)]);
    assert_eq!(t.stats.moved_to_host_pods, 1);
}
