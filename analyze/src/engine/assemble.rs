//! Turns the engine's state into a [`Topology`]: filters, node details (type, version,
//! health, endpoints) as of the last event, sorted for deterministic output.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use smap_replay::time::format_rfc3339;

use crate::engine::classify::{detect_type, detect_version, TypeInputs};
use crate::engine::cluster::{Key, PodInfo, ServiceInfo, Workload};
use crate::engine::resolve::EntityRef;
use crate::engine::{Engine, EntityId};
use crate::topology::{
    Edge, Endpoints, Health, NodeKind, Processes, Service, ServiceType, Topology, Window, TOPOLOGY_SCHEMA,
};

/// Labels Kubernetes controllers add per pod or revision: noise for policies.
const CONTROLLER_LABELS: [&str; 4] = [
    "pod-template-hash",
    "controller-revision-hash",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
];

impl Engine {
    /// The topology as of the last event folded.
    pub fn topology(&self) -> Topology {
        let config = self.config();
        let mut stats = self.stats();
        let kept_entity = |entity: &EntityRef| entity.kept_by(config);
        let mut edges = Vec::new();
        let mut referenced: BTreeSet<EntityId> = BTreeSet::new();
        for stats_of_edge in self.edges() {
            let key = stats_of_edge.key;
            let (Some(source), Some(destination)) = (self.entity(key.source), self.entity(key.destination)) else {
                continue;
            };
            let count = stats_of_edge.connections + stats_of_edge.failed;
            if !kept_entity(source) || !kept_entity(destination) || count < config.min_connection_count {
                stats.filtered_edges += 1;
                continue;
            }
            referenced.insert(key.source);
            referenced.insert(key.destination);
            // Candidates: kept below only where the caller is an ingress controller.
            let ingress = match destination {
                EntityRef::Service(service) => self
                    .cluster()
                    .service(service)
                    .map(|s| self.cluster().ingress_routes(s, key.port))
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            edges.push(Edge {
                source: source.id(),
                destination: destination.id(),
                protocol: key.protocol.as_str().to_owned(),
                port: key.port,
                connections: stats_of_edge.connections,
                failed: stats_of_edge.failed,
                failures: stats_of_edge.failures,
                aborted: stats_of_edge.aborted,
                processes: processes(&stats_of_edge.processes),
                ingress,
                retransmits: stats_of_edge.retransmits,
                bytes_sent: stats_of_edge.bytes_sent,
                bytes_received: stats_of_edge.bytes_received,
                first_seen: format_rfc3339(stats_of_edge.first_seen),
                last_seen: format_rfc3339(stats_of_edge.last_seen),
            });
        }
        edges.sort_by(|a, b| {
            (&a.source, &a.destination, &a.protocol, a.port).cmp(&(&b.source, &b.destination, &b.protocol, b.port))
        });

        let cluster = self.cluster();
        let mut pods_by_workload: HashMap<&Workload, Vec<&PodInfo>> = HashMap::new();
        for pod in cluster.pods() {
            pods_by_workload.entry(&pod.workload).or_default().push(pod);
        }
        let mut nodes: BTreeMap<String, Service> = BTreeMap::new();
        for service in cluster.services().filter(|s| config.namespace_included(&s.namespace)) {
            nodes.insert(service.key.to_string(), self.service_node(service));
        }
        for entity in referenced.into_iter().filter_map(|id| self.entity(id)) {
            let id = entity.id();
            if nodes.contains_key(&id) {
                continue;
            }
            let node = match entity {
                EntityRef::Service(key) => match cluster.service(key) {
                    Some(service) => self.service_node(service),
                    None => continue,
                },
                EntityRef::Workload(w) => {
                    workload_node(self, w, pods_by_workload.get(w).map(Vec::as_slice).unwrap_or(&[]))
                }
                EntityRef::External { .. } | EntityRef::ExternalName { .. } => external_node(self, entity),
                EntityRef::Node(name) => bare_node(name, NodeKind::Node, "", ServiceType::Other),
            };
            nodes.insert(id, node);
        }
        for edge in &mut edges {
            let from_proxy = nodes.get(&edge.source).is_some_and(|n| n.service_type == ServiceType::Proxy);
            if !from_proxy {
                edge.ingress.clear();
            }
        }
        for edge in &edges {
            if let Some(node) = nodes.get_mut(&edge.source) {
                node.dependencies.push(edge.destination.clone());
            }
            if let Some(node) = nodes.get_mut(&edge.destination) {
                node.dependents.push(edge.source.clone());
            }
        }
        for node in nodes.values_mut() {
            node.dependencies.sort();
            node.dependencies.dedup();
            node.dependents.sort();
            node.dependents.dedup();
        }
        let (start, end) = self.window().unwrap_or((0, 0));
        Topology {
            schema: TOPOLOGY_SCHEMA.to_owned(),
            window: Window { start: format_rfc3339(start), end: format_rfc3339(end) },
            services: nodes,
            edges,
            stats,
        }
    }

    /// One node's details as of now (no dependencies or dependents), and the keys of the
    /// pods behind it, for change events; `None` for a Service never seen. Pods are
    /// sorted so a workload's details do not depend on hash order.
    pub(crate) fn node_details(&self, entity: &EntityRef) -> Option<(Service, Vec<Key>)> {
        Some(match entity {
            EntityRef::Service(key) => {
                let service = self.cluster().service(key)?;
                self.service_node_and_pods(service)
            }
            EntityRef::Workload(w) => {
                let mut pods: Vec<&PodInfo> = self.cluster().pods().filter(|p| &p.workload == w).collect();
                pods.sort_by(|a, b| a.key.cmp(&b.key));
                let keys = pods.iter().map(|p| p.key.clone()).collect();
                (workload_node(self, w, &pods), keys)
            }
            EntityRef::External { .. } | EntityRef::ExternalName { .. } => (external_node(self, entity), Vec::new()),
            EntityRef::Node(name) => (bare_node(name, NodeKind::Node, "", ServiceType::Other), Vec::new()),
        })
    }

    fn service_node(&self, service: &ServiceInfo) -> Service {
        self.service_node_and_pods(service).0
    }

    fn service_node_and_pods(&self, service: &ServiceInfo) -> (Service, Vec<Key>) {
        let cluster = self.cluster();
        let exists = cluster.service_exists(&service.key);
        let endpoints = if exists { cluster.endpoints_of_service(service) } else { None };
        let (ready, total, pods) = match &endpoints {
            Some((ready, total, pods)) => (*ready, *total, pods.as_slice()),
            None => (0, 0, &[][..]),
        };
        let health = match endpoints {
            _ if service.external_name.is_some() || !exists => Health::Unknown,
            Some(_) => health_of(ready, total),
            None => Health::Unknown,
        };
        let mut labels_list = vec![&service.labels];
        labels_list.extend(pods.iter().map(|p| &p.labels));
        let mut ports: Vec<u16> = service.ports.iter().map(|p| p.port).collect();
        ports.extend(service.ports.iter().filter_map(|p| p.target_port));
        ports.extend(pods.iter().flat_map(|p| p.container_ports.iter().copied()));
        let mut explicit: Vec<&str> = service.type_annotation.as_deref().into_iter().collect();
        explicit.extend(service.labels.get(crate::engine::cluster::TYPE_ANNOTATION).map(String::as_str));
        explicit.extend(pods.iter().filter_map(|p| p.type_annotation.as_deref()));
        let inputs = TypeInputs {
            name: &service.name,
            explicit,
            labels: labels_list,
            images: pods.iter().flat_map(|p| p.images.iter().map(String::as_str)).collect(),
            ports,
            port_names: service.ports.iter().map(|p| p.name.as_str()).collect(),
        };
        let config = self.config();
        let node = Service {
            namespace: service.namespace.to_string(),
            name: service.name.to_string(),
            kind: NodeKind::Service,
            service_type: detect_type(&inputs, &config.type_rules, config.auto_detect_type),
            version: detect_version(
                Some(&service.labels),
                pods.iter().map(|p| (&p.labels, p.images.first().map(String::as_str))),
            ),
            health,
            endpoints: Endpoints { ready, total },
            labels: service.labels.clone(),
            dns_name: None,
            dependencies: Vec::new(),
            dependents: Vec::new(),
        };
        (node, pods.iter().map(|p| p.key.clone()).collect())
    }
}

/// An edge's process names, sorted per end.
fn processes([client, server]: &[Vec<smap_replay::ProcessName>; 2]) -> Processes {
    let sorted = |names: &Vec<smap_replay::ProcessName>| {
        let mut out: Vec<String> = names.iter().map(|n| n.as_str().to_owned()).collect();
        out.sort();
        out
    };
    Processes { client: sorted(client), server: sorted(server) }
}

fn health_of(ready: u32, total: u32) -> Health {
    match (ready, total) {
        (_, 0) | (0, _) => Health::Down,
        (r, t) if r >= t => Health::Healthy,
        _ => Health::Degraded,
    }
}

fn workload_node(engine: &Engine, workload: &Workload, pods: &[&PodInfo]) -> Service {
    let ready = count(pods.iter().filter(|p| p.ready).count());
    let total = count(pods.len());
    let mut labels = pods.first().map(|p| p.labels.clone()).unwrap_or_default();
    labels.retain(|k, _| !CONTROLLER_LABELS.contains(&k.as_str()));
    let inputs = TypeInputs {
        name: &workload.name,
        explicit: pods.iter().filter_map(|p| p.type_annotation.as_deref()).collect(),
        labels: pods.iter().map(|p| &p.labels).collect(),
        images: pods.iter().flat_map(|p| p.images.iter().map(String::as_str)).collect(),
        ports: pods.iter().flat_map(|p| p.container_ports.iter().copied()).collect(),
        port_names: Vec::new(),
    };
    let config = engine.config();
    Service {
        namespace: workload.namespace.to_string(),
        name: workload.name.to_string(),
        kind: NodeKind::Workload,
        service_type: detect_type(&inputs, &config.type_rules, config.auto_detect_type),
        version: detect_version(None, pods.iter().map(|p| (&p.labels, p.images.first().map(String::as_str)))),
        health: if total == 0 { Health::Unknown } else { health_of(ready, total) },
        endpoints: Endpoints { ready, total },
        labels,
        dns_name: None,
        dependencies: Vec::new(),
        dependents: Vec::new(),
    }
}

/// An outside node, named `ip:port`, `ip` or, when reached by DNS, `name:port` with
/// its `dns_name`.
fn external_node(engine: &Engine, entity: &EntityRef) -> Service {
    let id = entity.id();
    let name = id.strip_prefix("external/").unwrap_or(&id);
    let (port, dns_name) = match entity {
        EntityRef::External { port, .. } => (*port, None),
        EntityRef::ExternalName { name, port } => (Some(*port), Some(name.to_string())),
        _ => (None, None),
    };
    let inputs = TypeInputs { name, ports: port.into_iter().collect(), ..TypeInputs::default() };
    let config = engine.config();
    let service_type = detect_type(&inputs, &config.type_rules, config.auto_detect_type);
    Service { dns_name, ..bare_node(name, NodeKind::External, "external", service_type) }
}

/// A node with nothing known of it yet but its name, kind and type.
pub(crate) fn bare_node(name: &str, kind: NodeKind, namespace: &str, service_type: ServiceType) -> Service {
    Service {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        kind,
        service_type,
        version: None,
        health: Health::Unknown,
        endpoints: Endpoints::default(),
        labels: BTreeMap::new(),
        dns_name: None,
        dependencies: Vec::new(),
        dependents: Vec::new(),
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
