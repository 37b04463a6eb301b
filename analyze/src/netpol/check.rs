//! `smap netpol check`'s report: every observed dependency the policies would deny,
//! grouped by workload, and every rule no observed traffic used.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::evaluate::{judge, Direction, End, Namespaces, RuleRef, Verdict};
use super::observe::Flow;
use super::policy::Policy;

/// The report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CheckReport {
    /// The policies judged, `namespace/name`.
    pub policies: Vec<String>,
    /// Observed flows judged (one per direction, pair of ends and port).
    pub flows: usize,
    /// Connections those flows carried, counted once per direction judged (a
    /// connection seen from both ends is an egress and an ingress flow).
    pub connections: u64,
    /// What would be denied.
    pub denied: Vec<Denial>,
    /// Rules no observed connection used.
    pub unused_rules: Vec<UnusedRule>,
}

/// Observed traffic the policies would deny.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Denial {
    /// Source workload (`namespace/name`) or address.
    pub source: String,
    /// Destination workload or address.
    pub destination: String,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
    /// The destination pod's port.
    pub port: u16,
    /// Which direction is denied.
    pub direction: Direction,
    /// Connections observed that would be cut.
    pub connections: u64,
    /// The policies isolating the pod (`namespace/name`), none of which allows it.
    pub policies: Vec<String>,
    /// The source pods (`namespace/name`), when pods.
    pub source_pods: Vec<String>,
    /// The destination pods.
    pub destination_pods: Vec<String>,
}

impl Denial {
    /// One line of text: `ingress shop/web -> shop/db tcp/5432: 2 connections; isolated by shop/db`.
    pub fn line(&self) -> String {
        let (direction, source, destination) = (self.direction.as_str(), &self.source, &self.destination);
        let (port, connections, policies) =
            (self.port_label(), connections(self.connections), self.policies.join(", "));
        format!("{direction} {source} -> {destination} {port}: {connections}; isolated by {policies}")
    }

    /// The protocol and port, as `tcp/5432`.
    pub fn port_label(&self) -> String {
        format!("{}/{}", self.protocol.to_lowercase(), self.port)
    }
}

/// A rule nothing observed matched.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct UnusedRule {
    /// `namespace/name`.
    pub policy: String,
    /// Its direction.
    pub direction: Direction,
    /// Its index in the policy's `ingress` or `egress` list.
    pub rule: usize,
}

impl CheckReport {
    /// Judges every flow against `policies`.
    pub fn judge(policies: &[Policy], namespaces: &Namespaces, flows: &BTreeMap<Flow, u64>) -> CheckReport {
        let mut used: BTreeSet<RuleRef> = BTreeSet::new();
        let mut denied: BTreeMap<(Direction, String, String, &'static str, u16), Denial> = BTreeMap::new();
        for (flow, connections) in flows {
            let (subject, peer) = match flow.direction {
                Direction::Ingress => (&flow.destination, &flow.source),
                Direction::Egress => (&flow.source, &flow.destination),
            };
            let End::Pod(subject) = subject else { continue };
            match judge(policies, namespaces, flow.direction, subject, peer, flow.port, flow.protocol) {
                Verdict::NotIsolated => {}
                Verdict::Allowed(rules) => used.extend(rules),
                Verdict::Denied(isolating) => {
                    let (source, destination) = (name(&flow.source), name(&flow.destination));
                    let key = (flow.direction, source.clone(), destination.clone(), flow.protocol, flow.port);
                    let denial = denied.entry(key).or_insert_with(|| Denial {
                        source,
                        destination,
                        protocol: flow.protocol,
                        port: flow.port,
                        direction: flow.direction,
                        connections: 0,
                        policies: Vec::new(),
                        source_pods: Vec::new(),
                        destination_pods: Vec::new(),
                    });
                    denial.connections += connections;
                    for index in isolating {
                        add_sorted(&mut denial.policies, policies[index].id());
                    }
                    if let End::Pod(pod) = &flow.source {
                        add_sorted(&mut denial.source_pods, format!("{}/{}", pod.namespace, pod.name));
                    }
                    if let End::Pod(pod) = &flow.destination {
                        add_sorted(&mut denial.destination_pods, format!("{}/{}", pod.namespace, pod.name));
                    }
                }
            }
        }
        let mut unused_rules = Vec::new();
        for (index, policy) in policies.iter().enumerate() {
            for (direction, rules) in [(Direction::Ingress, &policy.ingress), (Direction::Egress, &policy.egress)] {
                for rule in 0..rules.as_ref().map_or(0, Vec::len) {
                    if !used.contains(&(index, direction, rule)) {
                        unused_rules.push(UnusedRule { policy: policy.id(), direction, rule });
                    }
                }
            }
        }
        CheckReport {
            policies: policies.iter().map(Policy::id).collect(),
            flows: flows.len(),
            connections: flows.values().sum(),
            denied: denied.into_values().collect(),
            unused_rules,
        }
    }

    /// Plain text, for a terminal.
    pub fn text(&self) -> String {
        let mut out =
            format!("NetworkPolicy check: {} policies against {} observed flows\n", self.policies.len(), self.flows);
        if self.denied.is_empty() {
            out.push_str("denied: none\n");
        } else {
            let _ = writeln!(out, "denied: {}", self.denied.len());
            for d in &self.denied {
                let _ = writeln!(out, "  {}", d.line());
            }
        }
        if !self.unused_rules.is_empty() {
            let _ = writeln!(out, "rules no observed traffic used: {}", self.unused_rules.len());
            for r in &self.unused_rules {
                let _ = writeln!(out, "  {} {}[{}]", r.policy, r.direction.as_str(), r.rule);
            }
        }
        out
    }

    /// Markdown, for a pull-request comment.
    pub fn markdown(&self) -> String {
        let mut out = String::from("### NetworkPolicy check\n\n");
        let _ = writeln!(out, "{} policies against {} observed flows.\n", self.policies.len(), self.flows);
        if self.denied.is_empty() {
            out.push_str("No observed traffic would be denied.\n");
        } else {
            out.push_str("| direction | source | destination | port | connections | isolated by |\n");
            out.push_str("| --- | --- | --- | --- | --- | --- |\n");
            for d in &self.denied {
                let policies = d.policies.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ");
                let (direction, port) = (d.direction.as_str(), d.port_label());
                let _ = writeln!(
                    out,
                    "| {direction} | `{}` | `{}` | {port} | {} | {policies} |",
                    d.source, d.destination, d.connections
                );
            }
        }
        if !self.unused_rules.is_empty() {
            out.push_str("\nRules no observed traffic used:\n\n");
            for r in &self.unused_rules {
                let _ = writeln!(out, "- `{}` {}[{}]", r.policy, r.direction.as_str(), r.rule);
            }
        }
        out
    }
}

fn name(end: &End) -> String {
    match end {
        End::Pod(pod) => pod.workload.clone(),
        End::Address(ip) => ip.to_string(),
    }
}

fn add_sorted(list: &mut Vec<String>, item: String) {
    if let Err(at) = list.binary_search(&item) {
        list.insert(at, item);
    }
}

/// `1 connection`, `2 connections`.
pub(super) fn connections(n: u64) -> String {
    if n == 1 {
        "1 connection".to_owned()
    } else {
        format!("{n} connections")
    }
}
