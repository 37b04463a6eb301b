//! Outside the cluster's objects: external hosts on documentation addresses, and the
//! DNS pods resolve names with (a real dnsmasq, and resolv.conf as kubelet writes it).

use std::net::Ipv4Addr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::error::{HarnessError, Result};
use crate::spec::{PodRef, PodSpec};
use crate::sys;
use crate::sys::ip_batch;

/// Where Debian's `dnsmasq-base` installs the server.
pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// The records a DNS server answers, with one TTL for all (dnsmasq's `--local-ttl`)
/// unless a record gives its own.
#[derive(Clone, Debug, Default)]
pub struct DnsRecords {
    ttl_s: u32,
    /// dnsmasq options, one per record.
    options: Vec<String>,
}

impl DnsRecords {
    /// No records yet; answers carry `ttl_s`.
    pub fn new(ttl_s: u32) -> Self {
        DnsRecords { ttl_s, options: Vec::new() }
    }

    /// `name` has these IPv4 addresses (A records).
    pub fn a(mut self, name: &str, addresses: &[Ipv4Addr]) -> Self {
        for address in addresses {
            self.options.push(format!("--host-record={name},{address}"));
        }
        self
    }

    /// `name` has this address with its own TTL.
    pub fn a_with_ttl(mut self, name: &str, address: Ipv4Addr, ttl_s: u32) -> Self {
        self.options.push(format!("--host-record={name},{address},{ttl_s}"));
        self
    }

    /// `alias` is a CNAME for `target` (which must have records here).
    pub fn cname(mut self, alias: &str, target: &str) -> Self {
        self.options.push(format!("--cname={alias},{target}"));
        self
    }
}

/// A running DNS server; killed when dropped (and with its pod or cluster).
#[derive(Debug)]
pub struct DnsServer {
    child: Child,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Cluster {
    /// Adds a host outside the cluster: a namespace holding `addresses` (use the
    /// documentation ranges, 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24), routed
    /// through the node as the internet is, and in no Kubernetes object. Serve on it as
    /// on a pod; a server on 0.0.0.0 answers on every address, as a CDN edge does.
    pub fn add_external(&mut self, name: &str, addresses: &[Ipv4Addr]) -> Result<PodRef> {
        let Some((&first, rest)) = addresses.split_first() else {
            return Err(HarnessError::Invalid(format!("external host {name} needs an address")));
        };
        if let Some(taken) = rest.iter().find(|a| self.pods.iter().any(|p| p.spec.ip == **a)) {
            return Err(HarnessError::Invalid(format!("{taken} is held by a pod")));
        }
        let host = self.add_pod(PodSpec::new("external", name, first))?;
        if let Some(state) = self.pods.iter_mut().find(|p| p.netns == host.netns) {
            state.external = true;
        }
        let veth = self.pods.iter().find(|p| p.netns == host.netns).map(|p| p.veth.clone()).unwrap_or_default();
        let node_ip = self.options.node_ip;
        ip_batch(&host.netns, &rest.iter().map(|a| format!("addr add {a}/32 dev eth0")).collect::<Vec<_>>())?;
        ip_batch(
            &self.node_netns,
            &rest.iter().map(|a| format!("route add {a}/32 dev {veth} src {node_ip}")).collect::<Vec<_>>(),
        )?;
        Ok(host)
    }

    /// Makes `pod` resolve names through `nameserver` (the cluster DNS Service's
    /// ClusterIP, say), with the search path and options kubelet writes. Every
    /// `ip netns exec` in the pod, so every command of this harness, then reads it as
    /// /etc/resolv.conf: the C library's resolver (getaddrinfo) asks that server.
    pub fn use_nameserver(&self, pod: &PodRef, nameserver: Ipv4Addr) -> Result<()> {
        let dir = sys::netns_etc(&pod.netns);
        std::fs::create_dir_all(&dir).map_err(HarnessError::io(format!("creating {}", dir.display())))?;
        let ns = &pod.namespace;
        let text = format!(
            "search {ns}.svc.cluster.local svc.cluster.local cluster.local\nnameserver {nameserver}\noptions ndots:1 timeout:2 attempts:2\n"
        );
        let path = dir.join("resolv.conf");
        std::fs::write(&path, text).map_err(HarnessError::io(format!("writing {}", path.display())))
    }

    /// Starts dnsmasq in `pod`, authoritative for `records` on port 53 of the pod IP,
    /// and waits until it answers. Needs Debian's `dnsmasq-base`.
    pub fn serve_dns(&self, pod: &PodRef, records: &DnsRecords) -> Result<DnsServer> {
        let mut cmd = self.command_in(pod, DNSMASQ)?;
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--group=root",
            "--pid-file=",
            "--log-facility=-",
        ])
        .arg(format!("--listen-address={}", pod.ip))
        .arg(format!("--local-ttl={}", records.ttl_s))
        .args(&records.options)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let command = sys::describe(&cmd);
        let child = cmd.spawn().map_err(|source| HarnessError::Spawn { command, source })?;
        let server = DnsServer { child };
        // Listening once its socket is bound: poll for it rather than sleep.
        let started = Instant::now();
        loop {
            let out = sys::run(self.command_in(pod, "ss")?.args(["-Hlun", "sport", "=", ":53"]), None)?;
            if !out.stdout.is_empty() {
                return Ok(server);
            }
            let timeout = Duration::from_secs(5);
            if started.elapsed() > timeout {
                return Err(HarnessError::Timeout { what: format!("dnsmasq listening in {}", pod.name), timeout });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Whether dnsmasq is installed (`dnsmasq-base`); if not, says the test skipped, or
/// panics under `CI=true`, where it must run. Call after [`crate::require_root`].
///
/// # Panics
/// In CI (`CI=true`) when dnsmasq is missing.
pub fn require_dnsmasq(test_name: &str) -> bool {
    if std::path::Path::new(DNSMASQ).exists() {
        return true;
    }
    let message = format!("skipped: {test_name} needs {DNSMASQ} (Debian package dnsmasq-base)");
    if std::env::var(crate::CI_ENV).is_ok_and(|v| v == "true") {
        panic!("{message}; CI=true, where it must run");
    }
    crate::say_skipped(&message);
    false
}
