//! Outside services named by the DNS answers their callers got, captured for real:
//! pods resolve names with the C library's resolver through the cluster DNS Service
//! (a real dnsmasq behind a ClusterIP), then call hosts on documentation addresses;
//! the map shows each outside dependency under the name its caller asked for.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use smap_e2e::{
    require_dnsmasq, require_root, Cluster, ContainerPort, DnsRecords, Owner, PodRef, PodSpec, ServicePort, ServiceSpec,
};
use smap_replay::Recording;

use crate::e2e::{edges, kubectl_file, pod, Capture, ONE_AT_A_TIME};
use crate::{smap, stderr};

const DNS_SERVICE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn test_net(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(203, 0, 113, last)
}

/// The cluster DNS: a dnsmasq pod in kube-system behind the kube-dns Service.
fn cluster_dns(cluster: &mut Cluster, records: &DnsRecords) -> smap_e2e::DnsServer {
    let dns = cluster
        .add_pod(
            PodSpec::new("kube-system", "coredns-6f6b679f8f-q7x2m", Ipv4Addr::new(10, 244, 1, 53))
                .label("k8s-app", "kube-dns")
                .owner(Owner::Deployment("coredns".to_owned()))
                .container("coredns", "registry.k8s.io/coredns/coredns:v1.11.3", [ContainerPort::udp(53)]),
        )
        .unwrap();
    cluster
        .add_service(
            ServiceSpec::new("kube-system", "kube-dns", DNS_SERVICE)
                .port(ServicePort::udp(53, 53).named("dns"))
                .selector("k8s-app", "kube-dns"),
        )
        .unwrap();
    cluster.serve_dns(&dns, records).unwrap()
}

fn call(cluster: &Cluster, from: &PodRef, name: &str, pick: usize) {
    let report = cluster.tcp_call_by_name(from, name, 443, pick, 100, 400).unwrap();
    assert!(report.is_ok(), "{name}: {report:?}");
}

fn call_ip(cluster: &Cluster, from: &PodRef, ip: Ipv4Addr) {
    let report = cluster.tcp_call(from, std::net::SocketAddrV4::new(ip, 443), 100, 400).unwrap();
    assert!(report.is_ok(), "{ip}: {report:?}");
}

/// `smap build` with outside services kept and no grace past a TTL.
fn build_with_externals(dir: &Path, recording: &Path) -> serde_json::Value {
    let config = dir.join("smap.yaml");
    std::fs::write(&config, "include_external_services: true\ndns_name_grace: 0s\n").unwrap();
    let out = smap(&["build", recording.to_str().unwrap(), "--config", config.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn outside_services_carry_the_name_each_caller_resolved() {
    if !require_root("outside_services_carry_the_name_each_caller_resolved")
        || !require_dnsmasq("outside_services_carry_the_name_each_caller_resolved")
    {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("dns").unwrap();
    let records = DnsRecords::new(300)
        .a("api.payments.example", &[test_net(10)])
        .a("edge.cdn.example", &[test_net(20), test_net(21)])
        .cname("www.shop-cdn.example", "edge.cdn.example")
        .a("a.shared.example", &[test_net(30)])
        .a("b.shared.example", &[test_net(30)])
        .a_with_ttl("short.example", test_net(40), 1);
    let _dns = cluster_dns(&mut cluster, &records);
    let orders = pod(&mut cluster, "orders1", 10, "orders", "registry.example/shop/orders:1.0", &[]);
    let billing = pod(&mut cluster, "billing1", 11, "billing", "registry.example/shop/billing:1.0", &[]);
    for caller in [&orders, &billing] {
        cluster.use_nameserver(caller, DNS_SERVICE).unwrap();
    }
    let mut servers = Vec::new();
    for (name, addresses) in [
        ("payments-api", vec![test_net(10)]),
        ("cdn-edge", vec![test_net(20), test_net(21)]),
        ("shared-lb", vec![test_net(30)]),
        ("short-lived", vec![test_net(40)]),
    ] {
        let host = cluster.add_external(name, &addresses).unwrap();
        servers.push(cluster.serve_tcp(&host, 443).unwrap());
    }

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    // Dialed by address before any lookup: nothing names it.
    call_ip(&cluster, &orders, test_net(10));
    call(&cluster, &orders, "api.payments.example", 0);
    call(&cluster, &orders, "api.payments.example", 0);
    // One name behind a CNAME on two addresses: one dependency.
    call(&cluster, &orders, "www.shop-cdn.example", 0);
    call(&cluster, &orders, "www.shop-cdn.example", 1);
    // One address, two names: each caller's own.
    call(&cluster, &orders, "a.shared.example", 0);
    call(&cluster, &billing, "b.shared.example", 0);
    // A 1 s TTL: named while it lasts, the address form once it has passed.
    call(&cluster, &billing, "short.example", 0);
    std::thread::sleep(Duration::from_millis(2500));
    call_ip(&cluster, &billing, test_net(40));
    for (server, n) in servers.iter_mut().zip([3, 2, 2, 2]) {
        server.wait_exchanges(n, Duration::from_secs(5)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let (recording, summary) = capture.stop();
    assert!(summary.contains(" DNS answers"), "{summary}");

    let topology = build_with_externals(dir.path(), &recording);
    let mut got = edges(&topology);
    got.sort();
    assert_eq!(
        got,
        [
            "shop/billing -> external/203.0.113.40:443 tcp/443 connections=1 failed=0 sent=100 received=400",
            "shop/billing -> external/b.shared.example:443 tcp/443 connections=1 failed=0 sent=100 received=400",
            "shop/billing -> external/short.example:443 tcp/443 connections=1 failed=0 sent=100 received=400",
            "shop/orders -> external/203.0.113.10:443 tcp/443 connections=1 failed=0 sent=100 received=400",
            "shop/orders -> external/a.shared.example:443 tcp/443 connections=1 failed=0 sent=100 received=400",
            "shop/orders -> external/api.payments.example:443 tcp/443 connections=2 failed=0 sent=200 received=800",
            "shop/orders -> external/www.shop-cdn.example:443 tcp/443 connections=2 failed=0 sent=200 received=800",
        ],
        "the DNS traffic itself is kube-system's, left out by default"
    );
    let services = &topology["services"];
    assert_eq!(services["external/www.shop-cdn.example:443"]["dns_name"], "www.shop-cdn.example");
    assert_eq!(services["external/api.payments.example:443"]["dns_name"], "api.payments.example");
    assert!(services["external/203.0.113.10:443"].get("dns_name").is_none());

    // The recording keeps the answers themselves, as the clients received them.
    let answers: Vec<_> = Recording::open(&recording).unwrap().dns_answers().map(Result::unwrap).collect();
    let cdn: Vec<_> = answers.iter().filter(|a| &*a.query == "www.shop-cdn.example").collect();
    assert!(!cdn.is_empty(), "{answers:?}");
    for answer in &cdn {
        assert_eq!(&*answer.cnames, "edge.cdn.example");
        assert_eq!(answer.client_ip, IpAddr::V4(Ipv4Addr::new(10, 244, 1, 10)));
        assert_eq!(answer.server_ip, IpAddr::V4(DNS_SERVICE), "the reply as the pod got it, after NAT");
        assert_eq!(answer.ttl_s, 300);
    }
    let mut cdn_addresses: Vec<IpAddr> = cdn.iter().map(|a| a.address).collect();
    cdn_addresses.sort();
    cdn_addresses.dedup();
    assert_eq!(cdn_addresses, [IpAddr::V4(test_net(20)), IpAddr::V4(test_net(21))]);
}

#[test]
fn smap_watch_names_them_live_and_its_replay_says_the_same() {
    use crate::e2e::{assert_replay_is_the_live_stream, Watch};
    use crate::watch::get;

    if !require_root("smap_watch_names_them_live_and_its_replay_says_the_same")
        || !require_dnsmasq("smap_watch_names_them_live_and_its_replay_says_the_same")
    {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("dnswatch").unwrap();
    let _dns = cluster_dns(&mut cluster, &DnsRecords::new(300).a("api.payments.example", &[test_net(10)]));
    let orders = pod(&mut cluster, "orders1", 10, "orders", "registry.example/shop/orders:1.0", &[]);
    cluster.use_nameserver(&orders, DNS_SERVICE).unwrap();
    let host = cluster.add_external("payments-api", &[test_net(10)]).unwrap();
    let mut server = cluster.serve_tcp(&host, 443).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "include_external_services: true\nchange_debounce: 100ms\nmin_emit_interval: 100ms\n")
        .unwrap();
    let watch = Watch::start(dir.path(), &kubectl, &config, cluster.node_name());
    let (rec, events, listen) = (watch.rec.clone(), watch.events.clone(), watch.listen);
    for _ in 0..2 {
        call(&cluster, &orders, "api.payments.example", 0);
    }
    server.wait_exchanges(2, Duration::from_secs(5)).unwrap();
    let started = std::time::Instant::now();
    let named = loop {
        let (_, _, map) = get(listen, "/map");
        let map: serde_json::Value = serde_json::from_str(&map).unwrap();
        let found = edges(&map).into_iter().find(|e| e.contains("external/api.payments.example:443"));
        if let Some(edge) = found {
            if edge.contains("connections=2") {
                break edge;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no named edge in /map: {map}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(named.starts_with("shop/orders -> external/api.payments.example:443 tcp/443"), "{named}");
    let (_, _, stats) = get(listen, "/stats");
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let kernel = &stats["kernel"];
    assert!(kernel["dns_answers"].as_u64().unwrap() >= 2, "{kernel}");
    // Each lookup's AAAA reply (an IPv4-only name: NODATA) stays in the kernel.
    assert!(kernel["dns_skipped"].as_u64().unwrap() >= 2, "{kernel}");
    watch.stop();

    let text = std::fs::read_to_string(&events).unwrap();
    assert!(
        text.lines().any(|l| l.contains("\"dependency_detected\"") && l.contains("external/api.payments.example:443")),
        "{text}"
    );
    assert_replay_is_the_live_stream(&rec, &config, &events);
}
