//! Observed connections as NetworkPolicies see them: each connection end of a replay,
//! resolved to pods against the cluster as it was at that moment, with the Kubernetes
//! NetworkPolicies and namespace labels as of the end of the window.
//!
//! Ingress is judged on what the server end saw arrive (its own pod and port, the
//! source after any SNAT), egress on what the client end sent (its own pod, the
//! destination translated through a ClusterIP or node port to the Service's endpoint
//! pods and their target port, as the CNI sees it). An end whose node was not recorded
//! stands in for the other: the client's view judges ingress at a pod on a node no
//! recording covers, and the server's view judges egress from one.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;

use smap_replay::{ConnFacts, ConnKind, Event, ObjectAction, ObjectEvent, ObjectKind, Protocol, Side};

use super::evaluate::{Direction, End, Namespaces, PodEnd};
use crate::engine::cluster::{ClusterState, PodInfo, ServiceInfo};
use crate::engine::resolve::{canonical, is_local};

/// An observed flow in one direction, judged at `subject`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Flow {
    /// Which policy direction judges it.
    pub direction: Direction,
    /// Source end.
    pub source: End,
    /// Destination end.
    pub destination: End,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
    /// The destination pod's port (after any Service translation).
    pub port: u16,
}

/// What a replay observed, ready for judging.
#[derive(Debug, Default)]
pub struct Observed {
    /// Each flow and how many connections (or UDP flows) it carried.
    pub flows: BTreeMap<Flow, u64>,
    /// NetworkPolicy objects as of the end, as JSON, by `namespace/name`.
    pub policies: BTreeMap<String, serde_json::Value>,
    /// Namespace labels as of the end.
    pub namespaces: Namespaces,
}

/// Folds events into [`Observed`].
pub struct Observer {
    cluster: ClusterState,
    recorded_nodes: BTreeSet<String>,
    udp_seen: HashSet<(Side, IpAddr, u16, IpAddr, u16)>,
    observed: Observed,
}

/// UDP flow identities remembered to count each flow once; past this, a flow reported
/// again counts again.
const UDP_SEEN_LIMIT: usize = 1 << 20;

impl Observer {
    /// An observer for recordings made on `recorded_nodes`.
    pub fn new(recorded_nodes: impl IntoIterator<Item = String>) -> Self {
        Observer {
            cluster: ClusterState::default(),
            recorded_nodes: recorded_nodes.into_iter().collect(),
            udp_seen: HashSet::new(),
            observed: Observed::default(),
        }
    }

    /// Folds one event (in time order).
    pub fn apply(&mut self, event: &Event<ConnFacts>) {
        match event {
            Event::Object(object) => self.apply_object(object),
            Event::Conn(conn) => self.apply_conn(conn),
            Event::Dns(_) | Event::Cgroup(_) => {}
        }
    }

    /// What was observed.
    pub fn finish(self) -> Observed {
        self.observed
    }

    fn apply_object(&mut self, object: &ObjectEvent) {
        let _ = self.cluster.apply(object);
        let id = format!("{}/{}", object.namespace, object.name);
        let deleted = object.action == ObjectAction::Deleted;
        match object.kind {
            ObjectKind::NetworkPolicy if deleted => {
                self.observed.policies.remove(&id);
            }
            ObjectKind::NetworkPolicy => {
                if let Ok(value) = serde_json::from_str(&object.object) {
                    self.observed.policies.insert(id, value);
                }
            }
            ObjectKind::Namespace if deleted => self.observed.namespaces.remove(&object.name),
            ObjectKind::Namespace => {
                let labels = serde_json::from_str::<serde_json::Value>(&object.object)
                    .ok()
                    .and_then(|v| serde_json::from_value(v.pointer("/metadata/labels")?.clone()).ok())
                    .unwrap_or_default();
                self.observed.namespaces.set(&object.name, labels);
            }
            _ => {}
        }
    }

    fn apply_conn(&mut self, e: &ConnFacts) {
        let opens = match e.kind {
            ConnKind::TcpConnect | ConnKind::TcpAccept | ConnKind::TcpExisting => true,
            ConnKind::UdpFlow => {
                if self.udp_seen.len() >= UDP_SEEN_LIMIT {
                    self.udp_seen.clear();
                }
                (e.bytes_sent > 0 || e.bytes_received > 0)
                    && self.udp_seen.insert((e.side, e.src_ip, e.src_port, e.dst_ip, e.dst_port))
            }
            _ => false,
        };
        if !opens || is_local(&e.src_ip) || is_local(&e.dst_ip) {
            return;
        }
        let protocol = match e.kind.protocol() {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        };
        let source = self.end(&e.src_ip);
        let destinations = match e.side {
            // The server's own address and port: what arrived.
            Side::Server => vec![(self.end(&e.dst_ip), e.dst_port)],
            Side::Client => self.translated(&e.dst_ip, e.dst_port, protocol),
        };
        for (destination, port) in destinations {
            let mut directions = Vec::new();
            let unrecorded = |end: &End| match end {
                End::Pod(pod) => self.pod_node(pod).is_none_or(|node| !self.recorded_nodes.contains(node)),
                End::Address(_) => false,
            };
            match e.side {
                Side::Server => {
                    directions.push(Direction::Ingress);
                    if unrecorded(&source) {
                        directions.push(Direction::Egress);
                    }
                }
                Side::Client => {
                    directions.push(Direction::Egress);
                    if unrecorded(&destination) {
                        directions.push(Direction::Ingress);
                    }
                }
            }
            for direction in directions {
                let flow = Flow { direction, source: source.clone(), destination: destination.clone(), protocol, port };
                *self.observed.flows.entry(flow).or_default() += 1;
            }
        }
    }

    fn pod_node(&self, pod: &PodEnd) -> Option<&str> {
        self.cluster.pod(&format!("{}/{}", pod.namespace, pod.name)).and_then(|p| p.node.as_deref())
    }

    fn end(&self, ip: &IpAddr) -> End {
        let ip = canonical(ip);
        match self.cluster.pod_by_ip(&ip) {
            Some(pod) => End::Pod(pod_end(pod, ip)),
            None => End::Address(ip),
        }
    }

    /// A client's destination as the CNI judges it, after kube-proxy's DNAT: the
    /// endpoints of the Service a ClusterIP, node port, external or load-balancer
    /// address stands for, on their target port; else the address itself.
    fn translated(&self, ip: &IpAddr, port: u16, protocol: &str) -> Vec<(End, u16)> {
        let ip = canonical(ip);
        let by_port = |service: &ServiceInfo, service_port: u16| {
            service.ports.iter().find(|p| p.port == service_port && p.protocol == protocol).cloned()
        };
        let service = if let Some(service) = self.cluster.service_by_cluster_ip(&ip) {
            by_port(service, port).map(|p| (service, p))
        } else if self.cluster.node_by_ip(&ip).is_some() {
            self.cluster
                .service_by_node_port(port)
                .and_then(|(s, service_port)| by_port(s, service_port).map(|p| (s, p)))
        } else {
            self.cluster.service_by_entry_ip(&ip, port).and_then(|s| by_port(s, port).map(|p| (s, p)))
        };
        let Some((service, service_port)) = service else { return vec![(self.end(&ip), port)] };
        let target_of = |pod: Option<&PodInfo>| match (&service_port.target_port, &service_port.target_port_name) {
            (Some(number), _) => Some(*number),
            (None, Some(name)) => pod?.named_ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p),
            (None, None) => Some(service_port.port),
        };
        let pods = self.cluster.endpoints_of_service(service).map(|(_, _, pods)| pods).unwrap_or_default();
        let mut ends: Vec<(End, u16)> = pods
            .into_iter()
            .filter_map(|pod| {
                let target = target_of(Some(pod))?;
                // A hostNetwork endpoint has its node's address: no pod a policy selects.
                match pod.ips.first() {
                    Some(address) => Some((End::Pod(pod_end(pod, *address)), target)),
                    None => Some((End::Address(pod.host_ip?), target)),
                }
            })
            .collect();
        if ends.is_empty() {
            // Endpoints that are no pods (the API server's, a selectorless Service's).
            let target = target_of(None).unwrap_or(port);
            ends = self.cluster.endpoint_addresses(service).iter().map(|a| (self.end(a), target)).collect();
        }
        if ends.is_empty() {
            ends.push((self.end(&ip), port));
        }
        ends
    }
}

fn pod_end(pod: &PodInfo, ip: IpAddr) -> PodEnd {
    let (namespace, name) = pod.key.split_once('/').unwrap_or(("", &pod.key));
    PodEnd {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        workload: format!("{}/{}", pod.workload.namespace, pod.workload.name),
        ip,
        labels: pod.labels.clone(),
        named_ports: pod.named_ports.clone(),
    }
}
