//! Established connections that end with a reset, captured for real: a client aborts
//! its connection (SO_LINGER 0), both ends' kernels report the abort, and the edge
//! counts it once, by cause, beside the connections that closed cleanly.

use std::time::Duration;

use smap_e2e::{require_root, CallOptions, Cluster, ServicePort};
use smap_replay::{ConnKind, Protocol, Recording, Side};

use crate::e2e::{build, edges, kubectl_file, pod, service, Capture, ONE_AT_A_TIME};

#[test]
fn a_connection_reset_mid_stream_is_counted_once_on_its_edge() {
    if !require_root("a_connection_reset_mid_stream_is_counted_once_on_its_edge") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("aborts").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let svc = service(&mut cluster, "api", 20, ServicePort::tcp(80, 8080));
    let mut server = cluster.serve_tcp(&api, 8080).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    let clean = cluster.tcp_call(&web, svc.addr(80), 100, 400).unwrap();
    assert!(clean.is_ok(), "{clean:?}");
    let abort = CallOptions { reset: true, ..CallOptions::default() };
    let reset = cluster.tcp_call_with(&web, svc.addr(80), 100, 0, abort).unwrap();
    assert!(reset.is_ok(), "{reset:?}");
    server.wait_exchanges(2, Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();

    // Each end's kernel says so: the client sent the reset, the server received it.
    let closes: Vec<(Side, u16)> = Recording::open(&recording)
        .unwrap()
        .conn_events()
        .map(Result::unwrap)
        .filter(|e| e.kind == ConnKind::TcpClose && e.error != 0)
        .map(|e| (e.side, e.error))
        .collect();
    assert_eq!(closes.len(), 2, "{closes:?}");
    assert!(closes.contains(&(Side::Client, 104)) && closes.contains(&(Side::Server, 104)), "{closes:?}");

    let topology = build(&recording);
    assert_eq!(edges(&topology), ["shop/web -> shop/api tcp/80 connections=2 failed=0 sent=200 received=400"]);
    assert_eq!(topology["edges"][0]["aborted"], serde_json::json!({"reset": 1}));
}

/// A client that resets its connection while it still waits in the server's accept
/// queue (a load balancer's health check does): both ends' closes are recorded before
/// accept() hands the dead socket over. That is one aborted connection, neither a
/// second one nor one left open at the end.
#[test]
fn a_connection_reset_before_its_server_accepts_it_is_one_aborted_connection() {
    if !require_root("a_connection_reset_before_its_server_accepts_it_is_one_aborted_connection") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("lateacc").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let svc = service(&mut cluster, "api", 20, ServicePort::tcp(80, 8080));

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    // Started after the capture, so its first accept() surely comes after the reset.
    let mut server = cluster.serve_tcp_accepting_late(&api, 8080, Duration::from_secs(1)).unwrap();
    let abort = CallOptions { reset: true, ..CallOptions::default() };
    let reset = cluster.tcp_call_with(&web, svc.addr(80), 100, 0, abort).unwrap();
    assert!(reset.is_ok(), "{reset:?}");
    let served = server.wait_exchanges(1, Duration::from_secs(5)).unwrap();
    assert!(served[0].error.is_some(), "the server read a reset connection: {served:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();

    let server_events: Vec<(ConnKind, u16)> = Recording::open(&recording)
        .unwrap()
        .conn_events()
        .map(Result::unwrap)
        .filter(|e| e.side == Side::Server && e.kind.protocol() == Protocol::Tcp)
        .map(|e| (e.kind, e.error))
        .collect();
    assert_eq!(server_events, [(ConnKind::TcpClose, 104)], "the close alone: no late accept, nothing left open");

    let topology = build(&recording);
    assert_eq!(edges(&topology), ["shop/web -> shop/api tcp/80 connections=1 failed=0 sent=100 received=0"]);
    assert_eq!(topology["edges"][0]["aborted"], serde_json::json!({"reset": 1}));
}
