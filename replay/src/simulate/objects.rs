//! Kubernetes object JSON for simulated clusters, shaped as the API server returns it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::event::{ConnEvent, ConnKind, Side};
use crate::time::format_rfc3339;
use crate::TimeNs;

/// A simulated pod.
#[derive(Clone, Debug)]
pub struct SimPod {
    /// Namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Deployment name.
    pub deployment: String,
    /// pod-template-hash of its ReplicaSet.
    pub hash: String,
    /// Pod IP.
    pub ip: Ipv4Addr,
    /// Node name and IP.
    pub node: (String, Ipv4Addr),
    /// Labels (app, version...).
    pub labels: BTreeMap<String, String>,
    /// Image.
    pub image: String,
    /// Declared container ports.
    pub ports: Vec<u16>,
    /// Ready condition.
    pub ready: bool,
    /// Version label, if any.
    pub version: Option<String>,
    /// Unique id.
    pub uid: String,
}

fn meta(namespace: &str, name: &str, uid: &str, rv: u64, created: TimeNs) -> Value {
    json!({
        "name": name,
        "namespace": namespace,
        "uid": uid,
        "resourceVersion": rv.to_string(),
        "creationTimestamp": seconds(created),
    })
}

fn seconds(t: TimeNs) -> String {
    // The API server writes second precision.
    let text = format_rfc3339(t - t.rem_euclid(1_000_000_000));
    text.replace(".000000000Z", "Z")
}

/// A Pod object.
pub fn pod(p: &SimPod, rv: u64, created: TimeNs) -> Value {
    let mut labels = p.labels.clone();
    labels.insert("pod-template-hash".to_owned(), p.hash.clone());
    let mut metadata = meta(&p.namespace, &p.name, &p.uid, rv, created);
    metadata["labels"] = json!(labels);
    metadata["generateName"] = json!(format!("{}-{}-", p.deployment, p.hash));
    metadata["ownerReferences"] = json!([{
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": format!("{}-{}", p.deployment, p.hash),
        "uid": format!("rs-{}-{}", p.deployment, p.hash),
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    let ready = if p.ready { "True" } else { "False" };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": p.node.0,
            "containers": [{
                "name": p.deployment,
                "image": p.image,
                "ports": p.ports.iter().map(|port| json!({"containerPort": port, "protocol": "TCP"})).collect::<Vec<_>>(),
            }],
        },
        "status": {
            "phase": "Running",
            "hostIP": p.node.1.to_string(),
            "hostIPs": [{"ip": p.node.1.to_string()}],
            "podIP": p.ip.to_string(),
            "podIPs": [{"ip": p.ip.to_string()}],
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Initialized", "status": "True"},
                {"type": "ContainersReady", "status": ready},
                {"type": "Ready", "status": ready},
            ],
        },
    })
}

/// A Service object.
#[allow(clippy::too_many_arguments)]
pub fn service(
    namespace: &str,
    name: &str,
    cluster_ip: Option<Ipv4Addr>,
    ports: &[(Option<String>, u16, u16, String)],
    selector: &BTreeMap<String, String>,
    service_type: &str,
    rv: u64,
    created: TimeNs,
) -> Value {
    let mut metadata = meta(namespace, name, &format!("svc-{namespace}-{name}"), rv, created);
    metadata["labels"] = json!({"app": name, "service": name});
    let ip = cluster_ip.map_or_else(|| "None".to_owned(), |ip| ip.to_string());
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "type": service_type,
            "clusterIP": ip,
            "clusterIPs": [ip],
            "selector": selector,
            "ports": ports.iter().map(|(name, port, target, protocol)| {
                let mut p = json!({"port": port, "targetPort": target, "protocol": protocol});
                if let Some(name) = name {
                    p["name"] = json!(name);
                }
                p
            }).collect::<Vec<_>>(),
            "sessionAffinity": "None",
        },
        "status": {"loadBalancer": {}},
    })
}

/// The EndpointSlice of a Service listing its pods.
pub fn endpoint_slice(
    namespace: &str,
    service: &str,
    pods: &[&SimPod],
    ports: &[(Option<String>, u16, u16, String)],
    rv: u64,
    created: TimeNs,
) -> Value {
    let name = format!("{service}-slice");
    let mut metadata = meta(namespace, &name, &format!("eps-{namespace}-{service}"), rv, created);
    metadata["labels"] = json!({
        "kubernetes.io/service-name": service,
        "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
    });
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": metadata,
        "addressType": "IPv4",
        "endpoints": pods.iter().map(|p| json!({
            "addresses": [p.ip.to_string()],
            "conditions": {"ready": p.ready, "serving": p.ready, "terminating": false},
            "nodeName": p.node.0,
            "targetRef": {"kind": "Pod", "namespace": p.namespace, "name": p.name, "uid": p.uid},
        })).collect::<Vec<_>>(),
        "ports": ports.iter().map(|(name, _, target, protocol)| {
            let mut p = json!({"port": target, "protocol": protocol});
            if let Some(name) = name {
                p["name"] = json!(name);
            }
            p
        }).collect::<Vec<_>>(),
    })
}

/// A Node object.
pub fn node(name: &str, ip: Ipv4Addr, rv: u64, created: TimeNs) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": format!("node-{name}"),
            "resourceVersion": rv.to_string(),
            "creationTimestamp": seconds(created),
            "labels": {"kubernetes.io/hostname": name},
        },
        "status": {"addresses": [{"type": "InternalIP", "address": ip.to_string()}, {"type": "Hostname", "address": name}]},
    })
}

/// A connection event of a simulated pod's process (the `pod_index`th pod: its own pid
/// and network namespace), addresses and counters left for the caller to fill.
pub fn conn_event(pod: &SimPod, pod_index: u32, kind: ConnKind, side: Side, t: TimeNs, socket_id: u64) -> ConnEvent {
    ConnEvent {
        time_ns: t,
        node: Arc::from(pod.node.0.as_str()),
        kind,
        side,
        src_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        src_port: 0,
        dst_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        dst_port: 0,
        pid: 1000 + pod_index,
        comm: Arc::from(pod.deployment.chars().take(15).collect::<String>()),
        cgroup_id: 1,
        netns: 4_026_532_000 + pod_index,
        socket_id,
        bytes_sent: 0,
        bytes_received: 0,
        retransmits: 0,
        error: 0,
    }
}
