//! Established connections that end with a reset, captured for real: a client aborts
//! its connection (SO_LINGER 0), both ends' kernels report the abort, and the edge
//! counts it once, by cause, beside the connections that closed cleanly.

use std::time::Duration;

use smap_e2e::{require_root, CallOptions, Cluster, ServicePort};
use smap_replay::{ConnKind, Recording, Side};

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
