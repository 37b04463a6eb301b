//! End to end, as root: UDP as pods use it. Resolvers and metrics clients send from
//! unbound, unconnected sockets; others connect; Go and Java servers listen dual-stack
//! on `[::]`. Each flow must be one dependency, seen from both ends, with its bytes,
//! whichever set of kernel programs this kernel allows (tests/vm runs this on
//! distribution kernels too).
//!
//! Needs root, iproute2 and iptables; skipped with a printed reason elsewhere, and a
//! failure under CI=true. Takes turns with the other end-to-end tests.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use smap_e2e::{require_root, CallOptions, CallReport, Cluster, ServicePort};
use smap_replay::{ConnKind, Recording, Side};

use crate::e2e::{build, edges, ip, kubectl_file, pod, service, Capture, ONE_AT_A_TIME};

#[test]
fn udp_from_connected_and_unconnected_sockets_to_plain_and_dual_stack_servers_maps_each_flow_once() {
    if !require_root("udp_from_connected_and_unconnected_sockets_to_plain_and_dual_stack_servers_maps_each_flow_once") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("udp").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let dns = pod(&mut cluster, "dns1", 40, "dns", "coredns/coredns:1.11.1", &[]);
    let statsd = pod(&mut cluster, "statsd1", 50, "statsd", "statsd/statsd:0.10", &[]);
    let dns_svc = service(&mut cluster, "dns", 53, ServicePort::udp(53, 5353));
    let statsd_svc = service(&mut cluster, "statsd", 50, ServicePort::udp(8125, 8125));
    let _dns_server = cluster.serve_udp(&dns, 5353).unwrap();
    let _statsd_server = cluster.serve_udp_dual_stack(&statsd, 8125).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    let unconnected = CallOptions { unconnected: true, ..CallOptions::default() };
    let calls: Vec<CallReport> = vec![
        cluster.udp_call(&web, dns_svc.addr(53), 40, 120).unwrap(),
        cluster.udp_call(&web, dns_svc.addr(53), 40, 120).unwrap(),
        cluster.udp_call_with(&web, dns_svc.addr(53), 30, 90, unconnected).unwrap(),
        cluster.udp_call_with(&web, statsd_svc.addr(8125), 100, 200, unconnected).unwrap(),
        cluster.udp_call(&web, statsd.addr(8125), 10, 10).unwrap(),
    ];
    assert!(calls.iter().all(CallReport::is_ok), "{calls:?}");
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();

    let topology = build(&recording);
    assert_eq!(
        edges(&topology),
        [
            "shop/web -> shop/dns udp/53 connections=3 failed=0 sent=110 received=330",
            "shop/web -> shop/statsd udp/8125 connections=2 failed=0 sent=110 received=210",
        ],
        "no reverse edge from the dual-stack server's replies, no flow lost to an unbound socket"
    );
    assert_eq!(topology["stats"]["both_ends_merged"], 5, "every flow seen from its client and its server");

    // Each end names its own address: the unbound client's is the pod IP the route
    // chose, the servers' the pod IP the datagrams reached.
    let mut locals: BTreeMap<(Side, u64, IpAddr, u16), IpAddr> = BTreeMap::new();
    for e in Recording::open(&recording).unwrap().conn_events().map(Result::unwrap) {
        if e.kind == ConnKind::UdpFlow && e.bytes_sent + e.bytes_received > 0 {
            let (local, peer) = match e.side {
                Side::Client => (e.src_ip, (e.dst_ip, e.dst_port)),
                Side::Server => (e.dst_ip, (e.src_ip, e.src_port)),
            };
            locals.insert((e.side, e.socket_id, peer.0, peer.1), local);
        }
    }
    let of_side = |side: Side| {
        let mut ips: Vec<IpAddr> = locals.iter().filter(|(k, _)| k.0 == side).map(|(_, ip)| *ip).collect();
        ips.sort();
        ips
    };
    assert_eq!(of_side(Side::Client), vec![IpAddr::V4(ip(10)); 5], "{locals:#?}");
    assert_eq!(of_side(Side::Server), [ip(40), ip(40), ip(40), ip(50), ip(50)].map(IpAddr::V4), "{locals:#?}");
}
