//! Kubernetes objects (Pods, Services, EndpointSlices) parsed into what resolution
//! needs, as [`ClusterState`](super::ClusterState) keeps it.

use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{key, Key, PodInfo, ServiceInfo, ServicePort, SliceEndpoint, SliceInfo, Workload};

pub(super) fn parse_ips<'a>(texts: impl IntoIterator<Item = &'a String>) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = texts.into_iter().filter_map(|t| t.parse().ok()).collect();
    ips.dedup();
    ips
}

pub(super) fn port(n: i32) -> Option<u16> {
    u16::try_from(n).ok()
}

pub(super) fn pod_info(key: Key, pod: &Pod) -> PodInfo {
    let meta = &pod.metadata;
    let namespace: Arc<str> = Arc::from(meta.namespace.as_deref().unwrap_or("default"));
    let name = meta.name.as_deref().unwrap_or("");
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("");
    // A finished pod gives its IP back; a hostNetwork pod's IP is the node's.
    let holds_ip = !host_network && phase != "Succeeded" && phase != "Failed";
    let ips = if holds_ip {
        let mut texts: Vec<&String> =
            status.and_then(|s| s.pod_ips.as_ref()).into_iter().flatten().map(|p| &p.ip).collect();
        texts.extend(status.and_then(|s| s.pod_ip.as_ref()));
        parse_ips(texts)
    } else {
        Vec::new()
    };
    let labels = meta.labels.clone().unwrap_or_default();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    PodInfo {
        key,
        uid: Arc::from(meta.uid.as_deref().unwrap_or("")),
        workload: workload_of(&namespace, name, pod),
        namespace,
        ips,
        host_ip: status.and_then(|s| s.host_ip.as_ref()).and_then(|ip| ip.parse().ok()),
        host_network,
        node: spec.and_then(|s| s.node_name.clone()),
        labels,
        images: containers.iter().filter_map(|c| c.image.clone()).collect(),
        container_ports: containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| port(p.container_port))
            .collect(),
        named_ports: containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| Some((p.name.clone()?, port(p.container_port)?)))
            .collect(),
        ready: status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        type_annotation: meta.annotations.as_ref().and_then(|a| a.get(super::TYPE_ANNOTATION).cloned()),
    }
}

/// Names a pod by its controller: a ReplicaSet's Deployment (the ReplicaSet name less
/// the pod-template-hash), StatefulSet, DaemonSet, a Job's CronJob (Job names a CronJob
/// creates end in the scheduled time in minutes), else the pod itself.
pub(super) fn workload_of(namespace: &Arc<str>, pod_name: &str, pod: &Pod) -> Workload {
    let owner = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .or_else(|| pod.metadata.owner_references.iter().flatten().next());
    let labels = pod.metadata.labels.as_ref();
    let (kind, name): (&'static str, String) = match owner {
        Some(o) if o.kind == "ReplicaSet" => {
            let hash = labels.and_then(|l| l.get("pod-template-hash"));
            match hash.and_then(|h| o.name.strip_suffix(h.as_str())).and_then(|n| n.strip_suffix('-')) {
                Some(deployment) => ("Deployment", deployment.to_owned()),
                None => ("ReplicaSet", o.name.clone()),
            }
        }
        Some(o) if o.kind == "StatefulSet" => ("StatefulSet", o.name.clone()),
        Some(o) if o.kind == "DaemonSet" => ("DaemonSet", o.name.clone()),
        Some(o) if o.kind == "Job" => match o.name.rsplit_once('-') {
            Some((cron, stamp)) if stamp.len() >= 8 && stamp.bytes().all(|b| b.is_ascii_digit()) => {
                ("CronJob", cron.to_owned())
            }
            _ => ("Job", o.name.clone()),
        },
        Some(o) if o.kind == "ReplicationController" => ("ReplicationController", o.name.clone()),
        _ => ("Pod", pod_name.to_owned()),
    };
    Workload { namespace: namespace.clone(), kind, name: Arc::from(name) }
}

pub(super) fn service_info(key: Key, service: &Service) -> ServiceInfo {
    let meta = &service.metadata;
    let spec = service.spec.as_ref();
    let mut ip_texts: Vec<&String> = spec.and_then(|s| s.cluster_ips.as_ref()).into_iter().flatten().collect();
    ip_texts.extend(spec.and_then(|s| s.cluster_ip.as_ref()));
    ServiceInfo {
        key,
        namespace: Arc::from(meta.namespace.as_deref().unwrap_or("default")),
        name: Arc::from(meta.name.as_deref().unwrap_or("")),
        cluster_ips: parse_ips(ip_texts.into_iter().filter(|t| t.as_str() != "None")),
        entry_ips: parse_ips(
            spec.and_then(|s| s.external_ips.as_ref()).into_iter().flatten().chain(
                service
                    .status
                    .as_ref()
                    .and_then(|s| s.load_balancer.as_ref())
                    .and_then(|lb| lb.ingress.as_ref())
                    .into_iter()
                    .flatten()
                    .filter_map(|ingress| ingress.ip.as_ref()),
            ),
        ),
        ports: spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| {
                let (target_port, target_port_name) = match &p.target_port {
                    Some(IntOrString::Int(n)) => (port(*n), None),
                    Some(IntOrString::String(name)) => (None, Some(name.clone())),
                    None => (port(p.port), None),
                };
                Some(ServicePort {
                    name: p.name.clone().unwrap_or_default(),
                    port: port(p.port)?,
                    target_port,
                    target_port_name,
                    protocol: p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                    node_port: p.node_port.and_then(port),
                })
            })
            .collect(),
        selector: spec.and_then(|s| s.selector.clone()),
        labels: meta.labels.clone().unwrap_or_default(),
        service_type: spec.and_then(|s| s.type_.clone()).unwrap_or_else(|| "ClusterIP".to_owned()),
        external_name: spec.and_then(|s| s.external_name.clone()),
        type_annotation: meta.annotations.as_ref().and_then(|a| a.get(super::TYPE_ANNOTATION).cloned()),
    }
}

pub(super) fn slice_info(slice: &EndpointSlice) -> SliceInfo {
    let meta = &slice.metadata;
    let namespace = meta.namespace.as_deref().unwrap_or("default");
    SliceInfo {
        service: meta.labels.as_ref().and_then(|l| l.get(super::SERVICE_NAME_LABEL)).map(|name| key(namespace, name)),
        endpoints: slice
            .endpoints
            .iter()
            .map(|e| SliceEndpoint {
                ips: parse_ips(&e.addresses),
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                pod: e.target_ref.as_ref().filter(|r| r.kind.as_deref() == Some("Pod")).and_then(|r| r.name.clone()),
            })
            .collect(),
    }
}

/// The addresses a pod's resolution touches (its own and its node's), or None for a
/// hostNetwork pod, which changes what its node's address resolves to on its ports.
pub(super) fn pod_addresses(pod: &PodInfo) -> Option<Vec<IpAddr>> {
    (!pod.host_network).then(|| pod.ips.iter().copied().chain(pod.host_ip).collect())
}

pub(super) fn slice_addresses(slice: &SliceInfo) -> Vec<IpAddr> {
    slice.endpoints.iter().flat_map(|e| e.ips.iter().copied()).collect()
}
