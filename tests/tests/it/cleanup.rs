//! Cleanup: dropping a cluster, also while a test panics, leaves no namespace and no
//! process behind; leftovers of dead runs are swept.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use smap_e2e::{require_root, Cluster, PodSpec, ServicePort, ServiceSpec, NETNS_PREFIX};

use crate::{bookinfo, cluster, ip, netns_list};

/// Whether a pid is gone or a zombie (killed, not yet reaped by its parent).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_dead(pid: u32) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if dead(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn drop_removes_every_namespace_and_process() {
    let Some(mut cluster) = cluster("cleanup-drop") else { return };
    let app = bookinfo(&mut cluster);
    let names = cluster.namespaces();
    assert_eq!(names.len(), 7, "node + 6 pods: {names:?}");
    assert!(names.iter().all(|n| netns_list().contains(n)));
    let server = cluster.serve_tcp(&app.details, 9080).unwrap();
    let held = cluster.tcp_hold(&app.productpage, app.details_svc.addr(9080)).unwrap();
    // A child whose handle the test keeps: the cluster kills it anyway.
    let mut sleeper = cluster.spawn_in(&app.ratings, "sleep", ["600"]).unwrap();
    let pids = [server.pid(), held.report().unwrap().pid, sleeper.id()];
    std::mem::forget(server);
    std::mem::forget(held);

    drop(cluster);
    let left = netns_list();
    assert!(names.iter().all(|n| !left.contains(n)), "left: {left:?}");
    assert!(sleeper.wait().is_ok());
    for pid in pids {
        assert!(wait_dead(pid), "pid {pid} survived its cluster");
    }
}

#[test]
fn a_panicking_test_still_cleans_up() {
    if !require_root("cleanup-panic") {
        return;
    }
    let names = Mutex::new(Vec::new());
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut cluster = Cluster::new("cleanup-panic").unwrap().with_peer(crate::PEER);
        let pod = cluster.add_pod(PodSpec::new("default", "a", ip("10.244.1.10"))).unwrap();
        cluster
            .add_service(
                ServiceSpec::new("default", "a", ip("10.96.0.5")).port(ServicePort::tcp(80, 80)).selector("x", "y"),
            )
            .unwrap();
        let _server = cluster.serve_tcp(&pod, 80).unwrap();
        names.lock().unwrap().extend(cluster.namespaces());
        panic!("the test body fails here");
    }));
    assert!(result.is_err());
    let names = names.into_inner().unwrap();
    assert_eq!(names.len(), 2);
    let left = netns_list();
    assert!(names.iter().all(|n| !left.contains(n)), "left: {left:?}");
}

#[test]
fn sweep_removes_namespaces_of_dead_runs_only() {
    if !require_root("cleanup-sweep") {
        return;
    }
    // No pid exceeds pid_max (at most 2^22), so this run is surely dead.
    let dead_run = format!("{NETNS_PREFIX}99999999-0-crashed-node");
    let live_run = format!("{NETNS_PREFIX}{}-9999-alive-node", std::process::id());
    for name in [&dead_run, &live_run] {
        assert!(Command::new("ip").args(["netns", "add", name]).status().unwrap().success());
    }
    let swept = Cluster::sweep_stale();
    let left = netns_list();
    let _ = Command::new("ip").args(["netns", "del", &live_run]).status();
    let swept = swept.unwrap();
    // Another test's first Cluster::new may have swept it first; either way it is gone.
    assert!(!left.contains(&dead_run), "{left:?}");
    assert!(left.contains(&live_run), "{left:?}");
    assert!(!swept.contains(&live_run));
}

#[test]
fn rules_live_in_the_node_namespace_only() {
    let Some(mut cluster) = cluster("host-untouched") else { return };
    let app = bookinfo(&mut cluster);
    let node_rules = cluster.iptables_save().unwrap();
    assert!(node_rules.contains(&format!("-d {}/32", app.reviews_svc.cluster_ip)), "{node_rules}");
    assert_eq!(node_rules.matches("-j DNAT --to-destination 10.244.1.1").count(), 6, "{node_rules}");
    // The host's own namespace has none of it: no rule, no veth, no route.
    let host_rules = Command::new("iptables-save").output().unwrap();
    assert!(!String::from_utf8_lossy(&host_rules.stdout).contains("10.96.0.12"));
    let host_links = Command::new("ip").args(["-o", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&host_links.stdout).contains(" vp0"));
    let host_routes = Command::new("ip").args(["route", "show", "table", "all"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&host_routes.stdout).contains("10.244."));
}
