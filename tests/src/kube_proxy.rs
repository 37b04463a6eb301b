//! The node's iptables rules, written the way kube-proxy's iptables mode writes them
//! (KUBE-SERVICES -> KUBE-SVC-* -> KUBE-SEP-* DNAT, REJECT for Services without
//! endpoints, MASQUERADE for hairpin traffic), as one `iptables-restore` document.
//!
//! The whole nat and filter tables are rewritten on every change, atomically, as
//! kube-proxy does; connections already tracked keep their translation.
//! See kubernetes `pkg/proxy/iptables/proxier.go`.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::spec::{Balancing, ServicePort};

/// kube-proxy's masquerade mark bit.
const MASQ_MARK: &str = "0x4000";

/// One Service port and the endpoints its ClusterIP balances over.
pub(crate) struct PortRules<'a> {
    pub(crate) namespace: &'a str,
    pub(crate) service: &'a str,
    pub(crate) cluster_ip: Ipv4Addr,
    pub(crate) port: &'a ServicePort,
    /// Pod IP and resolved target port of each ready endpoint.
    pub(crate) endpoints: Vec<SocketAddrV4>,
    pub(crate) balancing: Balancing,
}

impl PortRules<'_> {
    /// `ns/name:port` as kube-proxy names a service port in comments.
    fn label(&self) -> String {
        match &self.port.name {
            Some(name) => format!("{}/{}:{}", self.namespace, self.service, name),
            None => format!("{}/{}:{}", self.namespace, self.service, self.port.port),
        }
    }
}

/// A chain name: a prefix and 16 hex digits of a hash, as kube-proxy's are a prefix and
/// 16 base32 characters of a SHA-256. Chain names are limited to 28 characters.
fn chain(prefix: &str, parts: &[&str]) -> String {
    // DefaultHasher::new() has fixed keys: names are stable across runs of one build.
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    format!("{prefix}-{:016X}", hasher.finish())
}

/// The `iptables-restore` input for the node's nat and filter tables.
pub(crate) fn render(ports: &[PortRules<'_>], blackholes: &[Ipv4Addr]) -> String {
    let mut chains = Vec::new();
    let mut rules = Vec::new();
    let mut rejects = Vec::new();
    for p in ports {
        let label = p.label();
        let proto = p.port.protocol.iptables();
        if p.endpoints.is_empty() {
            // kube-proxy rejects in filter rather than letting a SYN time out.
            rejects.push(format!(
                "-A KUBE-SERVICES -d {}/32 -p {proto} -m comment --comment \"{label} has no endpoints\" -m {proto} \
                 --dport {} -j REJECT --reject-with icmp-port-unreachable",
                p.cluster_ip, p.port.port
            ));
            continue;
        }
        let svc_chain = chain("KUBE-SVC", &[&label, proto]);
        chains.push(svc_chain.clone());
        rules.push(format!(
            "-A KUBE-SERVICES -d {}/32 -p {proto} -m comment --comment \"{label} cluster IP\" -m {proto} --dport {} \
             -j {svc_chain}",
            p.cluster_ip, p.port.port
        ));
        if let Some(node_port) = p.port.node_port {
            rules.push(format!(
                "-A KUBE-NODEPORTS -p {proto} -m comment --comment \"{label}\" -m {proto} --dport {node_port} \
                 -j {svc_chain}"
            ));
        }
        let n = p.endpoints.len();
        for (i, endpoint) in p.endpoints.iter().enumerate() {
            let sep_chain = chain("KUBE-SEP", &[&label, proto, &endpoint.to_string()]);
            chains.push(sep_chain.clone());
            let remaining = n - i;
            // Rule i takes 1/(n-i) of what rules 0..i left over: uniform overall.
            let pick = match (remaining, p.balancing) {
                (1, _) => String::new(),
                (r, Balancing::Random) => {
                    format!("-m statistic --mode random --probability {:.11} ", 1.0 / r as f64)
                }
                (r, Balancing::RoundRobin) => format!("-m statistic --mode nth --every {r} --packet 0 "),
            };
            rules.push(format!("-A {svc_chain} -m comment --comment \"{label} -> {endpoint}\" {pick}-j {sep_chain}"));
            // Hairpin: a pod reaching itself through its ClusterIP needs SNAT, or it
            // would answer itself directly and the client socket would see the wrong
            // source.
            rules.push(format!(
                "-A {sep_chain} -s {}/32 -m comment --comment \"{label}\" -j KUBE-MARK-MASQ",
                endpoint.ip()
            ));
            rules.push(format!(
                "-A {sep_chain} -p {proto} -m comment --comment \"{label}\" -m {proto} -j DNAT --to-destination {endpoint}"
            ));
        }
    }

    let mut out = String::new();
    out.push_str(
        "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n",
    );
    out.push_str(
        ":KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n:KUBE-MARK-MASQ - [0:0]\n:KUBE-POSTROUTING - [0:0]\n",
    );
    for c in &chains {
        let _ = writeln!(out, ":{c} - [0:0]");
    }
    out.push_str("-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    out.push_str("-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    out.push_str("-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING\n");
    let _ = writeln!(out, "-A KUBE-MARK-MASQ -j MARK --or-mark {MASQ_MARK}");
    let _ = writeln!(out, "-A KUBE-POSTROUTING -m mark ! --mark {MASQ_MARK}/{MASQ_MARK} -j RETURN");
    let _ = writeln!(out, "-A KUBE-POSTROUTING -j MARK --xor-mark {MASQ_MARK}");
    out.push_str(
        "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE\n",
    );
    for r in &rules {
        out.push_str(r);
        out.push('\n');
    }
    // Last in KUBE-SERVICES, as kube-proxy puts it: a node address's NodePorts. Only
    // when there are some, so that other tests need no addrtype match (xt_addrtype).
    if ports.iter().any(|p| p.port.node_port.is_some()) {
        out.push_str(
            "-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports\" -m addrtype --dst-type LOCAL \
             -j KUBE-NODEPORTS\n",
        );
    }
    out.push_str("COMMIT\n");

    out.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    out.push_str(":KUBE-SERVICES - [0:0]\n:SMAP-BLACKHOLE - [0:0]\n");
    // ClusterIPs are local on the node (see Cluster::new), so a Service without
    // endpoints is met in INPUT; FORWARD as kube-proxy hooks it too.
    out.push_str("-A INPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    out.push_str("-A FORWARD -m comment --comment \"smap-e2e blackholed addresses\" -j SMAP-BLACKHOLE\n");
    out.push_str("-A FORWARD -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n");
    for r in &rejects {
        out.push_str(r);
        out.push('\n');
    }
    for ip in blackholes {
        let _ = writeln!(out, "-A SMAP-BLACKHOLE -d {ip}/32 -m comment --comment \"smap-e2e blackhole\" -j DROP");
    }
    out.push_str("COMMIT\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_endpoints_split_one_third_each() {
        let port = ServicePort::tcp(80, 8080).named("http");
        let endpoints =
            ["10.244.1.1", "10.244.1.2", "10.244.1.3"].map(|ip| SocketAddrV4::new(ip.parse().unwrap(), 8080)).to_vec();
        let text = render(
            &[PortRules {
                namespace: "ns",
                service: "web",
                cluster_ip: "10.96.0.10".parse().unwrap(),
                port: &port,
                endpoints,
                balancing: Balancing::Random,
            }],
            &[],
        );
        assert!(text.contains("--probability 0.33333333333 "), "{text}");
        assert!(text.contains("--probability 0.50000000000 "), "{text}");
        assert_eq!(text.matches("-j DNAT --to-destination").count(), 3);
        assert!(text.contains("-d 10.96.0.10/32 -p tcp -m comment --comment \"ns/web:http cluster IP\""));
    }

    #[test]
    fn no_endpoints_means_reject() {
        let port = ServicePort::udp(53, 53);
        let text = render(
            &[PortRules {
                namespace: "ns",
                service: "dns",
                cluster_ip: "10.96.0.10".parse().unwrap(),
                port: &port,
                endpoints: Vec::new(),
                balancing: Balancing::Random,
            }],
            &["10.244.9.9".parse().unwrap()],
        );
        assert!(text.contains("-m udp --dport 53 -j REJECT --reject-with icmp-port-unreachable"), "{text}");
        assert!(text.contains("-A SMAP-BLACKHOLE -d 10.244.9.9/32"), "{text}");
        assert!(!text.contains("DNAT"));
    }
}
