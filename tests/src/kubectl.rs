//! The cluster as `kubectl get nodes,pods,services,endpointslices,ingresses -A -o json` would print
//! it: a v1 List of full objects (apiVersion, kind, metadata on each), with the fields
//! real API servers fill in, so smap reads it exactly as it reads a real cluster's.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::cluster::{target_port, Cluster, PodState, ServiceState};
use crate::ids::{hex_id, k8s_suffix, labels_json, uid};
use crate::spec::{Owner, TargetPort};

fn time(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Cluster {
    /// The state at this moment as kubectl JSON: the Node, then Pods, Services and
    /// EndpointSlices (one per Service, named `<service>-<5 chars>`). Deleted pods are
    /// gone from it; a pod that took over an IP shows with that IP.
    pub fn kubectl_json(&self) -> Value {
        let mut items = vec![self.node_json()];
        items.extend(self.pods.iter().filter(|p| !p.external).map(|p| self.pod_json(p)));
        items.extend(self.services.iter().map(service_json));
        items.extend(self.services.iter().map(|s| self.slice_json(s)));
        items.extend(self.ingresses.iter().map(|i| self.ingress_json(i)));
        json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": items,
            "metadata": { "resourceVersion": "" },
        })
    }

    fn node_json(&self) -> Value {
        let name = self.node_name();
        let created = time(self.created);
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "annotations": { "node.alpha.kubernetes.io/ttl": "0" },
                "creationTimestamp": created,
                "labels": {
                    "beta.kubernetes.io/arch": "amd64",
                    "beta.kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                },
                "name": name,
                "resourceVersion": "1",
                "uid": self.node_uid,
            },
            "spec": { "podCIDR": crate::POD_CIDR, "podCIDRs": [crate::POD_CIDR] },
            "status": {
                "addresses": [
                    { "address": self.node_ip().to_string(), "type": "InternalIP" },
                    { "address": name, "type": "Hostname" },
                ],
                "conditions": [{
                    "lastHeartbeatTime": created,
                    "lastTransitionTime": created,
                    "message": "kubelet is posting ready status",
                    "reason": "KubeletReady",
                    "status": "True",
                    "type": "Ready",
                }],
                "daemonEndpoints": { "kubeletEndpoint": { "Port": 10250 } },
                "nodeInfo": {
                    "architecture": "amd64",
                    "bootID": uid(&[&self.prefix, "boot"]),
                    "containerRuntimeVersion": "containerd://1.7.27",
                    "kernelVersion": "6.18.0",
                    "kubeProxyVersion": "",
                    "kubeletVersion": "v1.33.1",
                    "machineID": hex_id(&[&self.prefix, "machine"], 32),
                    "operatingSystem": "linux",
                    "osImage": "Debian GNU/Linux 13 (trixie)",
                    "systemUUID": uid(&[&self.prefix, "system"]),
                },
            },
        })
    }

    fn pod_json(&self, pod: &PodState) -> Value {
        let spec = &pod.spec;
        let created = time(pod.created);
        let mut labels = spec.labels.clone();
        let mut metadata = serde_json::Map::new();
        if let Some((owner, generate_name)) = owner_reference(spec, &mut labels, &self.prefix) {
            metadata.insert("ownerReferences".into(), json!([owner]));
            metadata.insert("generateName".into(), json!(generate_name));
        }
        metadata.insert("creationTimestamp".into(), json!(created));
        if !spec.annotations.is_empty() {
            metadata.insert("annotations".into(), labels_json(&spec.annotations));
        }
        metadata.insert("labels".into(), labels_json(&labels));
        metadata.insert("name".into(), json!(spec.name));
        metadata.insert("namespace".into(), json!(spec.namespace));
        metadata.insert("resourceVersion".into(), json!(pod.resource_version.to_string()));
        metadata.insert("uid".into(), json!(pod.uid));

        let mut containers = spec.containers.clone();
        if containers.is_empty() {
            containers.push(crate::spec::Container {
                name: spec.name.clone(),
                image: "busybox:1.36".to_owned(),
                ports: Vec::new(),
            });
        }
        let container_specs: Vec<Value> = containers
            .iter()
            .map(|c| {
                let mut value = json!({
                    "image": c.image,
                    "imagePullPolicy": "IfNotPresent",
                    "name": c.name,
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                });
                if !c.ports.is_empty() {
                    let ports: Vec<Value> = c
                        .ports
                        .iter()
                        .map(|p| {
                            let mut port = json!({ "containerPort": p.port, "protocol": p.protocol.k8s() });
                            if let Some(name) = &p.name {
                                port["name"] = json!(name);
                            }
                            port
                        })
                        .collect();
                    value["ports"] = json!(ports);
                }
                value
            })
            .collect();
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                json!({
                    "containerID": format!("containerd://{}", hex_id(&[&pod.uid, &c.name], 64)),
                    "image": c.image,
                    "imageID": format!("{}@sha256:{}", image_repository(&c.image), hex_id(&[&c.image], 64)),
                    "lastState": {},
                    "name": c.name,
                    "ready": true,
                    "restartCount": 0,
                    "started": true,
                    "state": { "running": { "startedAt": created } },
                })
            })
            .collect();
        let condition = |kind: &str| json!({ "lastProbeTime": null, "lastTransitionTime": created, "status": "True", "type": kind });
        let node_ip = self.node_ip().to_string();
        let mut value = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {
                "containers": container_specs,
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": true,
                "nodeName": self.node_name(),
                "preemptionPolicy": "PreemptLowerPriority",
                "priority": 0,
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "serviceAccount": "default",
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 30,
            },
            "status": {
                "conditions": [
                    condition("PodReadyToStartContainers"),
                    condition("Initialized"),
                    condition("Ready"),
                    condition("ContainersReady"),
                    condition("PodScheduled"),
                ],
                "containerStatuses": statuses,
                "hostIP": node_ip,
                "hostIPs": [{ "ip": node_ip }],
                "phase": "Running",
                "podIP": spec.ip.to_string(),
                "podIPs": [{ "ip": spec.ip.to_string() }],
                "qosClass": "BestEffort",
                "startTime": created,
            },
        });
        if pod.host_cgroup.is_some() {
            value["spec"]["hostNetwork"] = json!(true);
        }
        value
    }

    fn slice_json(&self, service: &ServiceState) -> Value {
        let spec = &service.spec;
        let endpoints = self.endpoints(spec);
        let changed = time(service.slice_changed);
        let endpoint_values: Vec<Value> = endpoints
            .iter()
            .map(|e| {
                let mut value = json!({
                    "addresses": [e.ip.to_string()],
                    "conditions": { "ready": true, "serving": true, "terminating": false },
                });
                if let Some(pod) = e.pod {
                    value["nodeName"] = json!(self.node_name());
                    value["targetRef"] = json!({
                        "kind": "Pod",
                        "name": pod.spec.name,
                        "namespace": pod.spec.namespace,
                        "uid": pod.uid,
                    });
                }
                value
            })
            .collect();
        // EndpointSlice ports carry the target port; a named one resolved on the
        // first endpoint that declares it (Kubernetes splits slices when pods differ).
        let ports: Vec<Value> = spec
            .ports
            .iter()
            .map(|p| {
                let number = match &p.target_port {
                    TargetPort::Number(n) => Some(*n),
                    TargetPort::Name(_) => {
                        endpoints.iter().find_map(|e| target_port(e, &p.target_port, p.protocol)).map(|a| a.port())
                    }
                };
                json!({ "name": p.name.clone().unwrap_or_default(), "port": number, "protocol": p.protocol.k8s() })
            })
            .collect();
        let managed_by = if spec.manual_endpoints.is_some() { "smap-e2e" } else { "endpointslice-controller.k8s.io" };
        // The API returns `endpoints: null` for an empty slice (a nil Go slice).
        let endpoints_value = if endpoint_values.is_empty() { Value::Null } else { json!(endpoint_values) };
        json!({
            "addressType": "IPv4",
            "apiVersion": "discovery.k8s.io/v1",
            "endpoints": endpoints_value,
            "kind": "EndpointSlice",
            "metadata": {
                "annotations": { "endpoints.kubernetes.io/last-change-trigger-time": changed },
                "creationTimestamp": time(service.created),
                "generateName": format!("{}-", spec.name),
                "generation": 1,
                "labels": {
                    "endpointslice.kubernetes.io/managed-by": managed_by,
                    "kubernetes.io/service-name": spec.name,
                },
                "name": service.slice_name,
                "namespace": spec.namespace,
                "ownerReferences": [{
                    "apiVersion": "v1",
                    "blockOwnerDeletion": true,
                    "controller": true,
                    "kind": "Service",
                    "name": spec.name,
                    "uid": service.uid,
                }],
                "resourceVersion": service.slice_resource_version.to_string(),
                "uid": service.slice_uid,
            },
            "ports": ports,
        })
    }
}

fn service_json(service: &ServiceState) -> Value {
    let spec = &service.spec;
    let ports: Vec<Value> = spec
        .ports
        .iter()
        .map(|p| {
            let mut value = json!({
                "port": p.port,
                "protocol": p.protocol.k8s(),
                "targetPort": match &p.target_port {
                    TargetPort::Number(n) => json!(n),
                    TargetPort::Name(name) => json!(name),
                },
            });
            if let Some(name) = &p.name {
                value["name"] = json!(name);
            }
            if let Some(node_port) = p.node_port {
                value["nodePort"] = json!(node_port);
            }
            value
        })
        .collect();
    let node_port = spec.ports.iter().any(|p| p.node_port.is_some());
    let mut metadata = json!({
        "creationTimestamp": time(service.created),
        "name": spec.name,
        "namespace": spec.namespace,
        "resourceVersion": service.resource_version.to_string(),
        "uid": service.uid,
    });
    if !spec.labels.is_empty() {
        metadata["labels"] = labels_json(&spec.labels);
    }
    let mut spec_value = json!({
        "clusterIP": spec.cluster_ip.to_string(),
        "clusterIPs": [spec.cluster_ip.to_string()],
        "internalTrafficPolicy": "Cluster",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "ports": ports,
        "sessionAffinity": "None",
        "type": if node_port { "NodePort" } else { "ClusterIP" },
    });
    if node_port {
        spec_value["externalTrafficPolicy"] = json!("Cluster");
    }
    if spec.manual_endpoints.is_none() {
        spec_value["selector"] = labels_json(&spec.selector);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": spec_value,
        "status": { "loadBalancer": {} },
    })
}

/// The controller reference of a pod and its `generateName`, adding the labels that
/// controller puts on its pods (pod-template-hash, controller-revision-hash...).
fn owner_reference(
    spec: &crate::spec::PodSpec,
    labels: &mut BTreeMap<String, String>,
    seed: &str,
) -> Option<(Value, String)> {
    let reference = |api: &str, kind: &str, name: &str| {
        json!({
            "apiVersion": api,
            "blockOwnerDeletion": true,
            "controller": true,
            "kind": kind,
            "name": name,
            "uid": uid(&[seed, kind, name]),
        })
    };
    match &spec.owner {
        Owner::None => None,
        Owner::Deployment(deployment) => {
            let hash = k8s_suffix(deployment, 10);
            let replica_set = format!("{deployment}-{hash}");
            labels.insert("pod-template-hash".into(), hash);
            Some((reference("apps/v1", "ReplicaSet", &replica_set), format!("{replica_set}-")))
        }
        Owner::StatefulSet(set) => {
            labels.insert("controller-revision-hash".into(), format!("{set}-{}", k8s_suffix(set, 10)));
            labels.insert("statefulset.kubernetes.io/pod-name".into(), spec.name.clone());
            if let Some(index) = spec.name.rsplit_once('-').map(|(_, i)| i).filter(|i| i.parse::<u32>().is_ok()) {
                labels.insert("apps.kubernetes.io/pod-index".into(), index.to_owned());
            }
            Some((reference("apps/v1", "StatefulSet", set), format!("{set}-")))
        }
        Owner::DaemonSet(set) => {
            labels.insert("controller-revision-hash".into(), k8s_suffix(set, 10));
            labels.insert("pod-template-generation".into(), "1".into());
            Some((reference("apps/v1", "DaemonSet", set), format!("{set}-")))
        }
        Owner::Job(job) => Some((job_reference(job, labels, seed), format!("{job}-"))),
        Owner::CronJob(cron) => {
            // CronJob-made Jobs are named after the scheduled time in minutes.
            let job = format!("{cron}-29400000");
            Some((job_reference(&job, labels, seed), format!("{job}-")))
        }
    }
}

fn job_reference(job: &str, labels: &mut BTreeMap<String, String>, seed: &str) -> Value {
    let job_uid = uid(&[seed, "Job", job]);
    labels.insert("batch.kubernetes.io/controller-uid".into(), job_uid.clone());
    labels.insert("batch.kubernetes.io/job-name".into(), job.to_owned());
    labels.insert("controller-uid".into(), job_uid.clone());
    labels.insert("job-name".into(), job.to_owned());
    json!({
        "apiVersion": "batch/v1",
        "blockOwnerDeletion": true,
        "controller": true,
        "kind": "Job",
        "name": job,
        "uid": job_uid,
    })
}

/// The repository part of an image reference (`docker.io/istio/x:1.2` -> `docker.io/istio/x`).
fn image_repository(image: &str) -> &str {
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].find([':', '@']) {
        Some(i) => &image[..name_start + i],
        None => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repository_drops_tag_and_digest() {
        assert_eq!(
            image_repository("docker.io/istio/examples-bookinfo-details-v1:1.20.3"),
            "docker.io/istio/examples-bookinfo-details-v1"
        );
        assert_eq!(image_repository("localhost:5000/app@sha256:ab"), "localhost:5000/app");
        assert_eq!(image_repository("redis"), "redis");
    }
}
