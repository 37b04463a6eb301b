//! smap's end-to-end harness: a small Kubernetes-like cluster built from Linux network
//! namespaces, with real ClusterIPs and real traffic, and the kubectl JSON describing it.
//!
//! A [`Cluster`] is a "node" namespace routing between "pod" namespaces on veth pairs
//! (10.244.x.y), with ClusterIPs (10.96.x.y) as iptables DNAT rules in the node, written
//! as kube-proxy writes them. Tests start servers and clients in pods with the
//! `smap-e2e-peer` helper ([`Cluster::serve_tcp`], [`Cluster::tcp_call`]...), and take
//! the cluster's state as `kubectl get ... -o json` output with [`Cluster::kubectl_json`].
//! Only addresses inside the namespaces it made are ever dialed, and dropping the
//! cluster removes them all, also when the test panics.
//!
//! ```no_run
//! use std::net::Ipv4Addr;
//! use smap_e2e::{require_root, Cluster, ContainerPort, Owner, PodSpec, ServicePort, ServiceSpec};
//!
//! if !require_root("example") {
//!     return Ok(());
//! }
//! let mut cluster = Cluster::new("example")?;
//! let details = cluster.add_pod(
//!     PodSpec::new("default", "details-v1-6f8b9c7d5-x2x4q", Ipv4Addr::new(10, 244, 1, 10))
//!         .label("app", "details")
//!         .owner(Owner::Deployment("details-v1".into()))
//!         .container("details", "istio/examples-bookinfo-details-v1:1.20.3", [ContainerPort::tcp(9080)]),
//! )?;
//! let client = cluster.add_pod(PodSpec::new("default", "client", Ipv4Addr::new(10, 244, 1, 11)))?;
//! let svc = cluster.add_service(
//!     ServiceSpec::new("default", "details", Ipv4Addr::new(10, 96, 0, 50))
//!         .port(ServicePort::tcp(80, 9080))
//!         .selector("app", "details"),
//! )?;
//! let _server = cluster.serve_tcp(&details, 9080)?;
//! let report = cluster.tcp_call(&client, svc.addr(80), 100, 2000)?;
//! assert!(report.is_ok());
//! let kubectl = cluster.kubectl_json();
//! # let _ = kubectl;
//! # Ok::<(), smap_e2e::HarnessError>(())
//! ```
//!
//! # From another crate's tests
//! Add `smap-e2e` as a dev-dependency. Cargo builds a package's binaries only for that
//! package's own tests, so the peer is found by [`peer_binary`]: `$SMAP_E2E_PEER`, else
//! `target/<profile>/smap-e2e-peer` next to the running test executable, which
//! `cargo test --workspace` (CI's command) or `cargo build -p smap-e2e` puts there.
//! Without it, the traffic helpers fail with [`HarnessError::PeerNotFound`] saying so.

pub mod browser;
mod cluster;
mod error;
mod host_network;
mod ids;
mod ingress;
mod kube_proxy;
mod kubectl;
mod outside;
pub mod peer;
mod spec;
mod sys;
mod traffic;

pub use cluster::{Cluster, ClusterOptions, DEFAULT_NODE_IP, DEFAULT_NODE_NAME, NETNS_PREFIX, POD_CIDR, SERVICE_CIDR};
pub use error::{HarnessError, Result};
pub use ingress::{IngressRule, IngressSpec};
pub use outside::{require_dnsmasq, DnsRecords, DnsServer, DNSMASQ};
pub use peer::{CallErrorKind, CallReport, Exchange};
pub use spec::{
    Balancing, Container, ContainerPort, Owner, PodRef, PodSpec, Protocol, ServicePort, ServiceRef, ServiceSpec,
    TargetPort,
};
pub use traffic::{peer_binary, CallOptions, HeldConnection, Server, PEER_ENV, PEER_NAME};

/// Environment variable CI sets; when it is `true`, a test that cannot run panics
/// instead of skipping.
pub const CI_ENV: &str = "CI";

/// Whether this test can build namespaces here: root (euid 0), and `ip`, `iptables`,
/// `iptables-restore` and `iptables-save` installed. If not, prints
/// `skipped: <test> needs root and iproute2/iptables to build network namespaces` to
/// stderr and returns false, so the test can return early; but with `CI=true` it
/// panics, because in CI these tests must run, never skip.
///
/// # Panics
/// In CI (`CI=true`) when the test cannot run.
pub fn require_root(test_name: &str) -> bool {
    let missing: Vec<&str> = sys::REQUIRED.iter().filter(|t| sys::find(**t).is_none()).map(|t| t.name).collect();
    let root = sys::euid() == 0;
    if root && missing.is_empty() {
        return true;
    }
    let why = match (root, missing.is_empty()) {
        (false, true) => "not root".to_owned(),
        (true, false) => format!("missing {}", missing.join(", ")),
        _ => format!("not root, missing {}", missing.join(", ")),
    };
    let message = format!("skipped: {test_name} needs root and iproute2/iptables to build network namespaces ({why})");
    if std::env::var(CI_ENV).is_ok_and(|v| v == "true") {
        panic!("{message}; CI=true, where it must run");
    }
    say_skipped(&message);
    false
}

/// Prints why a test skipped, where `cargo test` shows it.
#[expect(clippy::print_stderr, reason = "a skipped test must say so where cargo test shows it")]
pub fn say_skipped(message: &str) {
    eprintln!("{message}");
}
