//! Integration tests of the namespace cluster: real traffic through real ClusterIPs, the
//! kubectl JSON it writes, and cleanup. They need root and iproute2/iptables; without
//! them they say `skipped: ...` and pass, except in CI (`CI=true`), where they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, reason = "test code")]

mod cleanup;
mod kubectl;
mod traffic;

use std::net::Ipv4Addr;
use std::process::Command;

use smap_e2e::{require_root, Cluster, ContainerPort, PodRef, PodSpec, ServicePort, ServiceRef, ServiceSpec};

/// The peer binary Cargo built for this test run.
pub const PEER: &str = env!("CARGO_BIN_EXE_smap-e2e-peer");

/// A fresh cluster for `test`, or None when the test must skip (not root).
pub fn cluster(test: &str) -> Option<Cluster> {
    if !require_root(test) {
        return None;
    }
    Some(Cluster::new(test).unwrap().with_peer(PEER))
}

pub fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// Names in `ip netns list` now.
pub fn netns_list() -> Vec<String> {
    let output = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Bookinfo's default deployment (see shared/scenarios/bookinfo.yaml): four Services on
/// port 9080 in front of six Deployments, one pod each.
pub struct Bookinfo {
    pub productpage: PodRef,
    pub details: PodRef,
    pub reviews: Vec<PodRef>,
    pub ratings: PodRef,
    pub details_svc: ServiceRef,
    pub reviews_svc: ServiceRef,
    pub ratings_svc: ServiceRef,
    pub productpage_svc: ServiceRef,
}

pub fn bookinfo(cluster: &mut Cluster) -> Bookinfo {
    let mut pod = |app: &str, version: &str, ip_text: &str| {
        let deployment = format!("{app}-{version}");
        cluster
            .add_pod(
                PodSpec::for_deployment("default", &deployment, ip(ip_text))
                    .label("app", app)
                    .label("version", version)
                    .container(
                        app,
                        format!("docker.io/istio/examples-bookinfo-{deployment}:1.20.3"),
                        [ContainerPort::tcp(9080)],
                    ),
            )
            .unwrap()
    };
    let productpage = pod("productpage", "v1", "10.244.1.10");
    let details = pod("details", "v1", "10.244.1.11");
    let reviews = vec![
        pod("reviews", "v1", "10.244.1.12"),
        pod("reviews", "v2", "10.244.1.13"),
        pod("reviews", "v3", "10.244.1.14"),
    ];
    let ratings = pod("ratings", "v1", "10.244.1.15");
    let mut service = |app: &str, cluster_ip: &str| {
        cluster
            .add_service(
                ServiceSpec::new("default", app, ip(cluster_ip))
                    .label("app", app)
                    .label("service", app)
                    .port(ServicePort::tcp(9080, 9080).named("http"))
                    .selector("app", app),
            )
            .unwrap()
    };
    Bookinfo {
        productpage_svc: service("productpage", "10.96.0.10"),
        details_svc: service("details", "10.96.0.11"),
        reviews_svc: service("reviews", "10.96.0.12"),
        ratings_svc: service("ratings", "10.96.0.13"),
        productpage,
        details,
        reviews,
        ratings,
    }
}

/// How other crates' tests find the peer: next to their test executable.
#[test]
fn peer_binary_is_found_next_to_the_test_executable() {
    if std::env::var_os(smap_e2e::PEER_ENV).is_some() {
        return;
    }
    let found = smap_e2e::peer_binary().unwrap();
    assert_eq!(found.canonicalize().unwrap(), std::path::Path::new(PEER).canonicalize().unwrap());
}
