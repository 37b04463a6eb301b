//! Resolution rules: which topology node an address stands for, as of now.
//!
//! Destination: ClusterIP -> Service; pod IP -> the pod's Service (EndpointSlices,
//! else selectors) -> else its workload; node IP -> the Service with that node port,
//! else a hostNetwork pod declaring the port, else the node; a Service's external or
//! load-balancer IP with one of its ports -> that Service; anything else -> an
//! external `ip:port`. Through a node port or a load balancer the edge is keyed by
//! the Service port, as the server's end resolves it.
//! Source: pod IP -> its Service -> else its workload; node IP -> node (or the
//! hostNetwork pod whose cgroup the process runs in, which the engine knows from
//! the recording's pod cgroups); else external.
//! An external destination the caller resolved by name is renamed by the engine
//! (`dns_names`), which knows what each caller resolved when.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::engine::cluster::{ClusterState, Key, PodInfo, ServiceInfo, Workload};

/// What a topology node stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityRef {
    /// A Kubernetes Service.
    Service(Key),
    /// A workload without a Service.
    Workload(Workload),
    /// An address outside the cluster (destinations keep their port).
    External {
        /// The address.
        ip: IpAddr,
        /// The port, for destinations.
        port: Option<u16>,
    },
    /// An outside destination its caller reached by a DNS name: every address the
    /// name resolved to, as one node.
    ExternalName {
        /// The name the caller asked for.
        name: Arc<str>,
        /// The port dialed.
        port: u16,
    },
    /// A node's own address.
    Node(Arc<str>),
}

impl EntityRef {
    /// Where outside addresses go once `max_services` nodes are tracked.
    pub fn other_external() -> EntityRef {
        EntityRef::External { ip: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port: None }
    }

    /// The topology id of this node.
    pub fn id(&self) -> String {
        if *self == EntityRef::other_external() {
            return "external/other".to_owned();
        }
        match self {
            EntityRef::Service(key) => key.to_string(),
            EntityRef::Workload(w) => format!("{}/{}", w.namespace, w.name),
            EntityRef::External { ip, port: Some(port) } => format!("external/{}", socket(ip, *port)),
            EntityRef::External { ip, port: None } => format!("external/{ip}"),
            EntityRef::ExternalName { name, port } => format!("external/{name}:{port}"),
            EntityRef::Node(name) => format!("node/{name}"),
        }
    }

    /// Whether this node passes the config's filters: its namespace for Services and
    /// workloads, `include_external_services` for externals and nodes. The topology
    /// and the change events both ask here, so live and replay filter alike.
    pub fn kept_by(&self, config: &Config) -> bool {
        match self {
            EntityRef::Service(key) => config.namespace_included(key.split_once('/').map_or("", |(ns, _)| ns)),
            EntityRef::Workload(w) => config.namespace_included(&w.namespace),
            EntityRef::External { .. } | EntityRef::ExternalName { .. } | EntityRef::Node(_) => {
                config.include_external_services
            }
        }
    }
}

/// `ip:port`, bracketing IPv6.
pub fn socket(ip: &IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Whether traffic on this address never leaves the host (loopback): intra-pod
/// chatter, not service-to-service traffic.
pub fn is_local(ip: &IpAddr) -> bool {
    canonical(ip).is_loopback()
}

/// An IPv4 address in one form, however the socket spelled it (a dual-stack socket
/// reports IPv4-mapped IPv6): the engine's one rule for it.
pub(crate) fn canonical(ip: &IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// Resolves a destination; returns the node and the port the edge is keyed by (the
/// Service port when a pod port resolves to a Service, so both ends of a connection
/// agree).
pub fn resolve_destination(cluster: &ClusterState, ip: &IpAddr, port: u16) -> (EntityRef, u16) {
    let ip = canonical(ip);
    if let Some(service) = cluster.service_by_cluster_ip(&ip) {
        return (EntityRef::Service(service.key.clone()), port);
    }
    if let Some(pod) = cluster.pod_by_ip(&ip) {
        return pod_destination(cluster, pod, port);
    }
    if let Some(node) = cluster.node_by_ip(&ip) {
        if let Some((service, service_port)) = cluster.service_by_node_port(port) {
            return (EntityRef::Service(service.key.clone()), service_port);
        }
        let host_pod = cluster
            .pods()
            .filter(|p| p.host_network && p.node.as_deref() == Some(&**node) && p.container_ports.contains(&port))
            .min_by(|a, b| a.key.cmp(&b.key));
        return match host_pod {
            Some(pod) => pod_destination(cluster, pod, port),
            None => (EntityRef::Node(node.clone()), port),
        };
    }
    if let Some(service) = cluster.service_by_entry_ip(&ip, port) {
        return (EntityRef::Service(service.key.clone()), port);
    }
    (EntityRef::External { ip, port: Some(port) }, port)
}

/// The node a pod serving `port` stands for: the Service in front of that port, else
/// its first Service, else its workload.
pub(crate) fn pod_destination(cluster: &ClusterState, pod: &PodInfo, port: u16) -> (EntityRef, u16) {
    let services = cluster.services_of_pod(pod);
    if let Some((service, service_port)) =
        services.iter().find_map(|s| service_port_for_target(s, pod, port).map(|p| (s, p)))
    {
        return (EntityRef::Service(service.key.clone()), service_port);
    }
    match services.first() {
        Some(service) => (EntityRef::Service(service.key.clone()), port),
        None => (EntityRef::Workload(pod.workload.clone()), port),
    }
}

/// The Service port whose target is this pod port, given by number or by the name of
/// one of the pod's container ports (`targetPort: http`).
fn service_port_for_target(service: &ServiceInfo, pod: &PodInfo, pod_port: u16) -> Option<u16> {
    let named = |name: &String| pod.named_ports.iter().any(|(n, number)| n == name && *number == pod_port);
    service
        .ports
        .iter()
        .find(|p| p.target_port == Some(pod_port) || p.target_port_name.as_ref().is_some_and(named))
        .map(|p| p.port)
}

/// Resolves a source address.
pub fn resolve_source(cluster: &ClusterState, ip: &IpAddr) -> EntityRef {
    let ip = canonical(ip);
    if let Some(pod) = cluster.pod_by_ip(&ip) {
        return pod_source(cluster, pod);
    }
    if let Some(node) = cluster.node_by_ip(&ip) {
        return EntityRef::Node(node.clone());
    }
    EntityRef::External { ip, port: None }
}

/// The node a pod calling out stands for: its first Service, else its workload.
pub(crate) fn pod_source(cluster: &ClusterState, pod: &PodInfo) -> EntityRef {
    match cluster.services_of_pod(pod).first() {
        Some(service) => EntityRef::Service(service.key.clone()),
        None => EntityRef::Workload(pod.workload.clone()),
    }
}
