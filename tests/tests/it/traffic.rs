//! Real TCP and UDP through the cluster: DNAT to pods, direct pod calls, refusals,
//! timeouts, balancing, held connections and pod IP reuse.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::Duration;

use smap_e2e::{
    Balancing, CallErrorKind, CallOptions, ContainerPort, PodSpec, ServicePort, ServiceSpec, DEFAULT_NODE_IP,
};

use crate::{bookinfo, cluster, ip};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn pod_reaches_a_pod_through_its_cluster_ip() {
    let Some(mut cluster) = cluster("clusterip-tcp") else { return };
    let app = bookinfo(&mut cluster);
    let mut server = cluster.serve_tcp(&app.details, 9080).unwrap();

    let report = cluster.tcp_call(&app.productpage, app.details_svc.addr(9080), 1000, 5000).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.sent, report.received), (1000, 5000));
    // The client's socket sees the ClusterIP; the server sees the client's pod IP and
    // port and its own pod IP: DNAT happened in between, and the port survived it.
    assert_eq!(report.remote, SocketAddr::V4(app.details_svc.addr(9080)));
    let local = report.local.unwrap();
    assert_eq!(local.ip(), app.productpage.ip);

    let exchange = server.next_exchange(WAIT).unwrap();
    assert_eq!(exchange.peer, local);
    assert_eq!(exchange.local, SocketAddr::V4(app.details.addr(9080)));
    assert_eq!((exchange.received, exchange.sent), (1000, 5000));
    assert_eq!(exchange.error, None);
}

#[test]
fn pod_reaches_a_pod_ip_directly() {
    let Some(mut cluster) = cluster("pod-ip-direct") else { return };
    let app = bookinfo(&mut cluster);
    let mut server = cluster.serve_tcp(&app.ratings, 9080).unwrap();
    let report = cluster.tcp_call(&app.reviews[1], app.ratings.addr(9080), 8, 0).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.remote, SocketAddr::V4(app.ratings.addr(9080)));
    let exchange = server.next_exchange(WAIT).unwrap();
    assert_eq!(exchange.peer, report.local.unwrap());
    assert_eq!((exchange.received, exchange.sent), (8, 0));
    // Fewer than 8 bytes carry no header: the server answers nothing.
    let short = cluster.tcp_call(&app.reviews[1], app.ratings.addr(9080), 3, 0).unwrap();
    assert!(short.is_ok(), "{short:?}");
    assert_eq!(short.sent, 3);
}

#[test]
fn udp_request_response_through_a_cluster_ip() {
    let Some(mut cluster) = cluster("clusterip-udp") else { return };
    let dns = cluster
        .add_pod(
            PodSpec::for_deployment("kube-system", "coredns", ip("10.244.0.10"))
                .label("k8s-app", "kube-dns")
                .container("coredns", "registry.k8s.io/coredns/coredns:v1.12.0", [ContainerPort::udp(53).named("dns")]),
        )
        .unwrap();
    let client = cluster.add_pod(PodSpec::new("default", "client", ip("10.244.2.10"))).unwrap();
    let svc = cluster
        .add_service(
            ServiceSpec::new("kube-system", "kube-dns", ip("10.96.0.10"))
                .port(ServicePort::udp(53, 0).named("dns").target_name("dns"))
                .selector("k8s-app", "kube-dns"),
        )
        .unwrap();
    let mut server = cluster.serve_udp(&dns, 53).unwrap();

    let report = cluster.udp_call(&client, svc.addr(53), 40, 120).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.sent, report.received), (40, 120));
    assert_eq!(report.remote, SocketAddr::V4(svc.addr(53)));
    let exchange = server.next_exchange(WAIT).unwrap();
    assert_eq!(exchange.peer, report.local.unwrap());
    assert_eq!((exchange.received, exchange.sent), (40, 120));

    // No server on the target port: ICMP port unreachable, ECONNREFUSED on the socket.
    drop(server);
    let refused = cluster.udp_call(&client, svc.addr(53), 40, 120).unwrap();
    assert_eq!(refused.error, Some(CallErrorKind::Refused), "{refused:?}");
}

#[test]
fn connects_without_listener_are_refused() {
    let Some(mut cluster) = cluster("refused") else { return };
    let app = bookinfo(&mut cluster);
    // The pod behind the ClusterIP has nothing on 9080: its kernel answers RST.
    let report = cluster.tcp_call(&app.productpage, app.details_svc.addr(9080), 100, 100).unwrap();
    assert_eq!(report.error, Some(CallErrorKind::Refused), "{report:?}");
    assert!(report.local_port().is_some_and(|p| p > 0), "the source port is known even when refused");
    assert_eq!(report.sent, 0);

    // A Service without endpoints: kube-proxy's REJECT.
    let lonely = cluster
        .add_service(
            ServiceSpec::new("default", "lonely", ip("10.96.0.99"))
                .port(ServicePort::tcp(80, 8080))
                .selector("app", "nobody"),
        )
        .unwrap();
    let report = cluster.tcp_call(&app.productpage, lonely.addr(80), 100, 100).unwrap();
    assert_eq!(report.error, Some(CallErrorKind::Refused), "{report:?}");
    // A port the Service does not have: the ClusterIP is local on the node, which resets.
    let report = cluster.tcp_call(&app.productpage, app.details_svc.addr(81), 100, 100).unwrap();
    assert_eq!(report.error, Some(CallErrorKind::Refused), "{report:?}");
}

#[test]
fn blackholed_endpoint_times_out_and_unassigned_ip_is_unreachable() {
    let Some(mut cluster) = cluster("blackhole") else { return };
    let client = cluster.add_pod(PodSpec::new("default", "client", ip("10.244.1.10"))).unwrap();
    // A Service whose only endpoint is an unassigned pod IP, dropped in the node.
    let svc = cluster
        .add_service(
            ServiceSpec::new("default", "gone", ip("10.96.0.77"))
                .port(ServicePort::tcp(80, 8080))
                .endpoints([ip("10.244.9.9")]),
        )
        .unwrap();
    cluster.blackhole(ip("10.244.9.9")).unwrap();
    let options = CallOptions { connect_timeout: Duration::from_secs(1), ..CallOptions::default() };
    let report = cluster.tcp_call_with(&client, svc.addr(80), 10, 10, options).unwrap();
    assert_eq!(report.error, Some(CallErrorKind::TimedOut), "{report:?}");
    assert!((900..5000).contains(&report.elapsed_ms), "{report:?}");

    // Without the DROP an unassigned pod IP fails as on a real node: no ARP answer.
    let options = CallOptions { connect_timeout: Duration::from_secs(20), ..CallOptions::default() };
    let report = cluster.tcp_call_with(&client, SocketAddrV4::new(ip("10.244.9.8"), 80), 10, 10, options).unwrap();
    assert_eq!(report.error, Some(CallErrorKind::Unreachable), "{report:?}");
}

#[test]
fn deleted_pod_ip_is_reused_by_a_pod_of_another_service() {
    let Some(mut cluster) = cluster("ip-reuse") else { return };
    let client = cluster.add_pod(PodSpec::new("default", "client", ip("10.244.1.10"))).unwrap();
    let shared_ip = ip("10.244.1.50");
    let old = cluster.add_pod(PodSpec::for_deployment("default", "cart", shared_ip).label("app", "cart")).unwrap();
    let cart = cluster
        .add_service(
            ServiceSpec::new("default", "cart", ip("10.96.0.20"))
                .port(ServicePort::tcp(80, 8080))
                .selector("app", "cart"),
        )
        .unwrap();
    let payments = cluster
        .add_service(
            ServiceSpec::new("default", "payments", ip("10.96.0.21"))
                .port(ServicePort::tcp(80, 8080))
                .selector("app", "payments"),
        )
        .unwrap();
    let mut old_server = cluster.serve_tcp(&old, 8080).unwrap();
    assert!(cluster.tcp_call(&client, cart.addr(80), 8, 10).unwrap().is_ok());
    old_server.next_exchange(WAIT).unwrap();

    cluster.delete_pod(&old).unwrap();
    let new =
        cluster.add_pod(PodSpec::for_deployment("default", "payments", shared_ip).label("app", "payments")).unwrap();
    assert_eq!(new.ip, old.ip);
    assert_ne!(new.netns, old.netns);
    let mut new_server = cluster.serve_tcp(&new, 8080).unwrap();

    // The IP, and the payments ClusterIP, now reach the new pod; cart has no endpoint.
    let direct = cluster.tcp_call(&client, SocketAddrV4::new(shared_ip, 8080), 8, 20).unwrap();
    assert!(direct.is_ok(), "{direct:?}");
    assert_eq!(new_server.next_exchange(WAIT).unwrap().peer, direct.local.unwrap());
    let via_service = cluster.tcp_call(&client, payments.addr(80), 8, 30).unwrap();
    assert!(via_service.is_ok(), "{via_service:?}");
    assert_eq!(new_server.next_exchange(WAIT).unwrap().sent, 30);
    let stale = cluster.tcp_call(&client, cart.addr(80), 8, 10).unwrap();
    assert_eq!(stale.error, Some(CallErrorKind::Refused), "{stale:?}");
    assert!(old_server.exchanges().unwrap().is_empty());

    // The kubectl snapshot taken now gives the IP to the new pod only.
    let json = cluster.kubectl_json();
    let holders: Vec<&str> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "Pod" && i["status"]["podIP"] == shared_ip.to_string())
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(holders, vec![new.name.as_str()]);
    let slice_of = |service: &str| {
        json["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["kind"] == "EndpointSlice" && i["metadata"]["labels"]["kubernetes.io/service-name"] == service)
            .unwrap()
            .clone()
    };
    assert!(slice_of("cart")["endpoints"].is_null());
    assert_eq!(slice_of("payments")["endpoints"][0]["targetRef"]["name"], new.name.as_str());
}

#[test]
fn random_balancing_reaches_every_endpoint_and_round_robin_takes_turns() {
    let Some(mut cluster) = cluster("balancing") else { return };
    let app = bookinfo(&mut cluster);
    let mut servers: Vec<_> = app.reviews.iter().map(|p| cluster.serve_tcp(p, 9080).unwrap()).collect();
    // 30 connections over 3 endpoints at 1/3 each: all are hit but with p = 3*(2/3)^30.
    for _ in 0..30 {
        assert!(cluster.tcp_call(&app.productpage, app.reviews_svc.addr(9080), 8, 1).unwrap().is_ok());
    }
    let counts = settled_counts(&mut servers, 30);
    assert_eq!(counts.iter().sum::<usize>(), 30, "{counts:?}");
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");

    let rr = cluster
        .add_service(
            ServiceSpec::new("default", "reviews-rr", ip("10.96.0.30"))
                .port(ServicePort::tcp(80, 9080))
                .selector("app", "reviews")
                .balancing(Balancing::RoundRobin),
        )
        .unwrap();
    for _ in 0..6 {
        assert!(cluster.tcp_call(&app.productpage, rr.addr(80), 8, 1).unwrap().is_ok());
    }
    let counts = settled_counts(&mut servers, 6);
    assert_eq!(counts, vec![2, 2, 2]);
}

/// Exchanges per server once `expected` have been reported in all (or after 5 s): a
/// server reports an exchange only after its client may already have returned.
fn settled_counts(servers: &mut [smap_e2e::Server], expected: usize) -> Vec<usize> {
    let mut counts = vec![0; servers.len()];
    let started = std::time::Instant::now();
    while counts.iter().sum::<usize>() < expected && started.elapsed() < Duration::from_secs(5) {
        for (count, server) in counts.iter_mut().zip(servers.iter_mut()) {
            *count += server.exchanges().unwrap().len();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    counts
}

#[test]
fn held_connection_stays_open_until_released() {
    let Some(mut cluster) = cluster("hold") else { return };
    let app = bookinfo(&mut cluster);
    let mut server = cluster.serve_tcp(&app.ratings, 9080).unwrap();
    let held = cluster.tcp_hold(&app.reviews[2], app.ratings_svc.addr(9080)).unwrap();
    let opened = held.report().unwrap().clone();
    assert!(opened.is_ok(), "{opened:?}");
    // Open, so not served yet.
    assert!(matches!(server.next_exchange(Duration::from_millis(300)), Err(smap_e2e::HarnessError::Timeout { .. })));
    let closed = held.release().unwrap();
    assert!(closed.is_ok(), "{closed:?}");
    assert_eq!(closed.local, opened.local);
    let exchange = server.next_exchange(WAIT).unwrap();
    assert_eq!(exchange.peer, opened.local.unwrap());
    assert_eq!(exchange.received, 0);
}

#[test]
fn hairpin_and_node_local_clients_reach_cluster_ips() {
    let Some(mut cluster) = cluster("hairpin") else { return };
    let app = bookinfo(&mut cluster);
    let mut server = cluster.serve_tcp(&app.details, 9080).unwrap();
    // A pod calling its own Service: kube-proxy masquerades, so it sees the node.
    let report = cluster.tcp_call(&app.details, app.details_svc.addr(9080), 16, 16).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(server.next_exchange(WAIT).unwrap().peer.ip(), DEFAULT_NODE_IP);

    // A hostNetwork client (the node namespace) gets the node IP as source.
    let output = cluster
        .node_command(crate::PEER)
        .unwrap()
        .args(["tcp-call", &app.details_svc.addr(9080).to_string(), "8", "4"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let report: smap_e2e::CallReport = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report.local.unwrap().ip(), DEFAULT_NODE_IP);
    assert_eq!(server.next_exchange(WAIT).unwrap().peer, report.local.unwrap());
}

#[test]
fn unknown_or_conflicting_requests_are_typed_errors() {
    let Some(mut cluster) = cluster("errors") else { return };
    let pod = cluster.add_pod(PodSpec::new("default", "a", ip("10.244.1.10"))).unwrap();
    let dup = cluster.add_pod(PodSpec::new("default", "b", ip("10.244.1.10")));
    assert!(matches!(dup, Err(smap_e2e::HarnessError::Invalid(_))), "{dup:?}");
    let outside = cluster.add_service(ServiceSpec::new("default", "s", ip("192.168.0.1")).port(ServicePort::tcp(1, 1)));
    assert!(matches!(outside, Err(smap_e2e::HarnessError::Invalid(_))), "{outside:?}");
    cluster.delete_pod(&pod).unwrap();
    let gone = cluster.tcp_call(&pod, pod.addr(1), 8, 0);
    assert!(matches!(gone, Err(smap_e2e::HarnessError::UnknownPod { .. })), "{gone:?}");
    // Deleting freed the IP.
    cluster.add_pod(PodSpec::new("default", "c", ip("10.244.1.10"))).unwrap();
}
