//! The kubectl JSON the cluster writes: real kubectl's shape, accepted by k8s-openapi's
//! types and by smap's own reader.

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::Value;
use smap_e2e::{ContainerPort, Owner, PodSpec, ServicePort, ServiceSpec, DEFAULT_NODE_IP, DEFAULT_NODE_NAME};

use crate::{bookinfo, cluster, ip};

fn items_of<'a>(json: &'a Value, kind: &str) -> Vec<&'a Value> {
    json["items"].as_array().unwrap().iter().filter(|i| i["kind"] == kind).collect()
}

#[test]
fn kubectl_json_has_kubectls_shape() {
    let Some(mut cluster) = cluster("kubectl-shape") else { return };
    let app = bookinfo(&mut cluster);
    cluster
        .add_pod(
            PodSpec::new("data", "mysql-0", ip("10.244.3.10"))
                .label("app", "mysql")
                .owner(Owner::StatefulSet("mysql".into()))
                .container("mysql", "mysql:8.4", [ContainerPort::tcp(3306).named("mysql")]),
        )
        .unwrap();
    let json = cluster.kubectl_json();
    assert_eq!(json["apiVersion"], "v1");
    assert_eq!(json["kind"], "List");
    for item in json["items"].as_array().unwrap() {
        assert!(item["apiVersion"].is_string() && item["kind"].is_string(), "{item}");
        assert!(item["metadata"]["name"].is_string() && item["metadata"]["uid"].is_string(), "{item}");
    }

    let nodes = items_of(&json, "Node");
    assert_eq!(nodes.len(), 1);
    let node: Node = serde_json::from_value(nodes[0].clone()).unwrap();
    assert_eq!(node.metadata.name.as_deref(), Some(DEFAULT_NODE_NAME));
    let addresses = node.status.unwrap().addresses.unwrap();
    assert!(addresses.iter().any(|a| a.type_ == "InternalIP" && a.address == DEFAULT_NODE_IP.to_string()));

    let pods = items_of(&json, "Pod");
    assert_eq!(pods.len(), 7);
    let details: Pod = serde_json::from_value(
        pods.iter().find(|p| p["metadata"]["name"] == app.details.name.as_str()).copied().unwrap().clone(),
    )
    .unwrap();
    let meta = &details.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("default"));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["app"], "details");
    let hash = &labels["pod-template-hash"];
    let owner = &meta.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.controller), ("ReplicaSet", Some(true)));
    assert_eq!(owner.name, format!("details-v1-{hash}"));
    assert!(app.details.name.starts_with(&format!("details-v1-{hash}-")));
    let spec = details.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some(DEFAULT_NODE_NAME));
    assert_eq!(spec.containers[0].image.as_deref(), Some("docker.io/istio/examples-bookinfo-details-v1:1.20.3"));
    assert_eq!(spec.containers[0].ports.as_ref().unwrap()[0].container_port, 9080);
    let status = details.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.1.11"));
    assert_eq!(status.pod_ips.unwrap()[0].ip, "10.244.1.11");
    assert_eq!(status.host_ip.as_deref(), Some(DEFAULT_NODE_IP.to_string().as_str()));
    assert!(status.conditions.unwrap().iter().any(|c| c.type_ == "Ready" && c.status == "True"));

    let mysql: Pod =
        serde_json::from_value(pods.iter().find(|p| p["metadata"]["name"] == "mysql-0").copied().unwrap().clone())
            .unwrap();
    assert_eq!(mysql.metadata.owner_references.unwrap()[0].kind, "StatefulSet");
    assert_eq!(mysql.metadata.labels.unwrap()["statefulset.kubernetes.io/pod-name"], "mysql-0");

    let services = items_of(&json, "Service");
    assert_eq!(services.len(), 4);
    let reviews: Service =
        serde_json::from_value(services.iter().find(|s| s["metadata"]["name"] == "reviews").copied().unwrap().clone())
            .unwrap();
    let spec = reviews.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("10.96.0.12"));
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(spec.selector.unwrap()["app"], "reviews");
    let port = &spec.ports.unwrap()[0];
    assert_eq!((port.port, port.name.as_deref()), (9080, Some("http")));
    assert_eq!(port.target_port, Some(IntOrString::Int(9080)));

    let slices = items_of(&json, "EndpointSlice");
    assert_eq!(slices.len(), 4);
    assert!(slices.iter().all(|s| s["apiVersion"] == "discovery.k8s.io/v1"));
    let slice: EndpointSlice = serde_json::from_value(
        slices
            .iter()
            .find(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "reviews")
            .copied()
            .unwrap()
            .clone(),
    )
    .unwrap();
    assert_eq!(slice.address_type, "IPv4");
    assert!(slice.metadata.name.unwrap().starts_with("reviews-"));
    let mut addresses: Vec<&str> = slice.endpoints.iter().map(|e| e.addresses[0].as_str()).collect();
    addresses.sort_unstable();
    assert_eq!(addresses, vec!["10.244.1.12", "10.244.1.13", "10.244.1.14"]);
    for endpoint in &slice.endpoints {
        assert_eq!(endpoint.conditions.as_ref().unwrap().ready, Some(true));
        let target = endpoint.target_ref.as_ref().unwrap();
        assert_eq!(target.kind.as_deref(), Some("Pod"));
        assert!(app.reviews.iter().any(|p| Some(p.name.as_str()) == target.name.as_deref()));
    }
    assert_eq!(slice.ports.unwrap()[0].port, Some(9080));
}

#[test]
fn smap_reads_the_kubectl_json() {
    let Some(mut cluster) = cluster("kubectl-replay") else { return };
    bookinfo(&mut cluster);
    cluster
        .add_service(
            ServiceSpec::new("default", "external-db", ip("10.96.1.1"))
                .port(ServicePort::tcp(5432, 5432))
                .endpoints([ip("10.244.9.9")]),
        )
        .unwrap();
    let text = serde_json::to_string_pretty(&cluster.kubectl_json()).unwrap();
    let objects = smap_replay::kubectl::parse_kubectl_json(&text, 42).unwrap();
    assert_eq!(objects.skipped, 0);
    let count = |kind: smap_replay::ObjectKind| objects.events.iter().filter(|e| e.kind == kind).count();
    assert_eq!(count(smap_replay::ObjectKind::Node), 1);
    assert_eq!(count(smap_replay::ObjectKind::Pod), 6);
    assert_eq!(count(smap_replay::ObjectKind::Service), 5);
    assert_eq!(count(smap_replay::ObjectKind::EndpointSlice), 5);
    assert!(objects.events.iter().all(|e| e.time_ns == 42 && !e.uid.is_empty() && !e.resource_version.is_empty()));
    // A selector-less Service's slice lists its address without a targetRef.
    let external: Value =
        serde_json::from_str(&objects.events.iter().find(|e| e.name.starts_with("external-db-")).unwrap().object)
            .unwrap();
    assert_eq!(external["endpoints"][0]["addresses"][0], "10.244.9.9");
    assert!(external["endpoints"][0]["targetRef"].is_null());
}
