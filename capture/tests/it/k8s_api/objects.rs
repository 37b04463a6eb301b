//! Object JSON shaped as a real cluster returns it (labels, owner references, images,
//! ports, readiness), for the mock API server to serve.

use serde_json::{json, Value};

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}},
           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
}

pub fn node(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
           "spec": {"podCIDR": "10.244.0.0/24"},
           "status": {"addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                      "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// A Deployment's pod: `app` and `version` labels, a ReplicaSet owner, one container.
pub fn pod(ns: &str, name: &str, ip: &str, app: &str, version: &str, image: &str, port: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": ns,
                        "labels": {"app": app, "version": version, "pod-template-hash": "7d4f9c"},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-7d4f9c"),
                                             "uid": format!("rs-{app}"), "controller": true, "blockOwnerDeletion": true}]},
           "spec": {"nodeName": "node-1", "serviceAccountName": "default",
                    "containers": [{"name": app, "image": image, "ports": [{"containerPort": port, "protocol": "TCP"}]}]},
           "status": {"phase": "Running", "hostIP": "10.0.0.1", "podIP": ip, "podIPs": [{"ip": ip}],
                      "conditions": [{"type": "Ready", "status": "True"}, {"type": "ContainersReady", "status": "True"}]}})
}

pub fn service(ns: &str, name: &str, cluster_ip: &str, port: u16, target: u16) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
           "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                    "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "selector": {"app": name},
                    "ports": [{"name": "tcp", "port": port, "protocol": "TCP", "targetPort": target}],
                    "sessionAffinity": "None"},
           "status": {"loadBalancer": {}}})
}

/// The EndpointSlice the controller keeps for `service`: (ip, pod, ready) endpoints.
pub fn slice(ns: &str, service: &str, port: u16, endpoints: &[(&str, &str, bool)]) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
           "metadata": {"name": format!("{service}-x7k2p"), "namespace": ns, "generateName": format!("{service}-"),
                        "labels": {"kubernetes.io/service-name": service,
                                   "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": service, "uid": format!("svc-{service}"),
                                             "controller": true, "blockOwnerDeletion": true}]},
           "endpoints": endpoints.iter().map(|(ip, pod, ready)| json!({
               "addresses": [ip], "nodeName": "node-1",
               "conditions": {"ready": ready, "serving": ready, "terminating": false},
               "targetRef": {"kind": "Pod", "name": pod, "namespace": ns, "uid": format!("uid-{pod}")}})).collect::<Vec<_>>(),
           "ports": [{"name": "tcp", "port": port, "protocol": "TCP"}]})
}

pub fn ingress(ns: &str, name: &str, service: &str, port: u16) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"ingressClassName": "nginx", "rules": [{"host": format!("{name}.example.com"), "http": {"paths": [
               {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": service, "port": {"number": port}}}}]}}]}})
}

pub fn network_policy(ns: &str, name: &str, app: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"],
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                 "ports": [{"protocol": "TCP", "port": 8080}]}]}})
}
