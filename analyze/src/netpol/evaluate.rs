//! NetworkPolicy semantics, as the Kubernetes documentation states them: a pod is
//! isolated in a direction when any policy of its namespace selects it with that
//! policy type; an isolated pod's traffic in that direction is allowed when some rule
//! of some selecting policy allows it (the rules of all of them are a union); a pod no
//! policy isolates allows everything. Ingress is judged at the destination pod, egress
//! at the source pod, both on the destination pod's own port (after any Service
//! translation).

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::policy::{Peer, Policy, PortMatch, Rule};

/// Which way traffic crosses the pod a policy selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Into the destination pod.
    Ingress,
    /// Out of the source pod.
    Egress,
}

impl Direction {
    /// `ingress` or `egress`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// A pod as policies see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodEnd {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its workload, `namespace/name` (the Deployment, StatefulSet... or the pod).
    pub workload: String,
    /// Its address.
    pub ip: IpAddr,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Named container ports (name, number).
    pub named_ports: Vec<(String, u16)>,
}

/// One end of an observed connection.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum End {
    /// A pod of the cluster.
    Pod(PodEnd),
    /// Any other address (outside the cluster, a node, a hostNetwork pod).
    Address(IpAddr),
}

impl End {
    fn ip(&self) -> IpAddr {
        match self {
            End::Pod(pod) => pod.ip,
            End::Address(ip) => *ip,
        }
    }
}

/// Namespace labels, by namespace; every namespace also has
/// `kubernetes.io/metadata.name`, as the API server sets it.
#[derive(Clone, Debug, Default)]
pub struct Namespaces {
    labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl Namespaces {
    /// Sets a namespace's labels.
    pub fn set(&mut self, namespace: &str, labels: BTreeMap<String, String>) {
        self.labels.insert(namespace.to_owned(), labels);
    }

    /// Forgets a deleted namespace.
    pub fn remove(&mut self, namespace: &str) {
        self.labels.remove(namespace);
    }

    fn of(&self, namespace: &str) -> BTreeMap<String, String> {
        let mut labels = self.labels.get(namespace).cloned().unwrap_or_default();
        labels.insert("kubernetes.io/metadata.name".to_owned(), namespace.to_owned());
        labels
    }
}

/// A rule of a policy: (index of the policy, direction, index of the rule).
pub type RuleRef = (usize, Direction, usize);

/// What the policies say about one connection in one direction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No policy isolates the pod in this direction.
    NotIsolated,
    /// Allowed by these rules.
    Allowed(Vec<RuleRef>),
    /// The pod is isolated by these policies (indices) and no rule of theirs allows it.
    Denied(Vec<usize>),
}

/// Judges traffic in `direction` at `subject` (the destination pod for ingress, the
/// source pod for egress) with `peer` the other end, to the destination port `port`
/// (`protocol` `TCP`, `UDP` or `SCTP`).
pub fn judge(
    policies: &[Policy],
    namespaces: &Namespaces,
    direction: Direction,
    subject: &PodEnd,
    peer: &End,
    port: u16,
    protocol: &str,
) -> Verdict {
    let destination_ports: &[(String, u16)] = match (direction, peer) {
        (Direction::Ingress, _) => &subject.named_ports,
        (Direction::Egress, End::Pod(pod)) => &pod.named_ports,
        (Direction::Egress, End::Address(_)) => &[],
    };
    let mut isolating = Vec::new();
    let mut allowed = Vec::new();
    for (index, policy) in policies.iter().enumerate() {
        if policy.namespace != subject.namespace || !policy.pod_selector.matches(&subject.labels) {
            continue;
        }
        let rules = match direction {
            Direction::Ingress => &policy.ingress,
            Direction::Egress => &policy.egress,
        };
        let Some(rules) = rules else { continue };
        isolating.push(index);
        for (rule_index, rule) in rules.iter().enumerate() {
            if rule_allows(rule, policy, namespaces, peer, port, protocol, destination_ports) {
                allowed.push((index, direction, rule_index));
            }
        }
    }
    if isolating.is_empty() {
        Verdict::NotIsolated
    } else if allowed.is_empty() {
        Verdict::Denied(isolating)
    } else {
        Verdict::Allowed(allowed)
    }
}

fn rule_allows(
    rule: &Rule,
    policy: &Policy,
    namespaces: &Namespaces,
    peer: &End,
    port: u16,
    protocol: &str,
    destination_ports: &[(String, u16)],
) -> bool {
    let peer_ok = rule.peers.is_empty() || rule.peers.iter().any(|p| peer_matches(p, policy, namespaces, peer));
    let port_ok = rule.ports.is_empty()
        || rule.ports.iter().any(|p| {
            p.protocol == protocol
                && match &p.port {
                    PortMatch::Any => true,
                    PortMatch::Range { port: first, end } => (*first..=*end).contains(&port),
                    PortMatch::Named(name) => destination_ports.iter().any(|(n, number)| n == name && *number == port),
                }
        });
    peer_ok && port_ok
}

fn peer_matches(peer: &Peer, policy: &Policy, namespaces: &Namespaces, end: &End) -> bool {
    match (peer, end) {
        (Peer::Pods { pods, namespaces: None }, End::Pod(pod)) => {
            pod.namespace == policy.namespace && pods.matches(&pod.labels)
        }
        (Peer::Pods { pods, namespaces: Some(selector) }, End::Pod(pod)) => {
            selector.matches(&namespaces.of(&pod.namespace)) && pods.matches(&pod.labels)
        }
        (Peer::Pods { .. }, End::Address(_)) => false,
        // By address, whatever holds it (as Calico does; some CNIs never match pod
        // addresses with ipBlock).
        (Peer::IpBlock { cidr, except }, end) => {
            let ip = end.ip();
            cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
        }
    }
}
