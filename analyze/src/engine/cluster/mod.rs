//! Kubernetes state as of the event being folded: objects applied in event-time order,
//! indexed by IP so a connection resolves against the cluster as it was at that moment.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use smap_replay::{ObjectAction, ObjectEvent, ObjectKind, TimeNs};

mod ingress;
mod objects;

use self::ingress::IngressRoutes;
use self::objects::{pod_addresses, pod_info, service_info, slice_addresses, slice_info};
use crate::topology::IngressRoute;

/// `namespace/name` of a namespaced object.
pub type Key = Arc<str>;

fn key(namespace: &str, name: &str) -> Key {
    Arc::from(format!("{namespace}/{name}"))
}

/// What owns a pod, as the topology names a pod without a Service.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Workload {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Deployment, StatefulSet, DaemonSet, Job, CronJob, or Pod for a bare pod.
    pub kind: &'static str,
    /// The owner's name.
    pub name: Arc<str>,
}

/// What resolution needs of a Pod.
#[derive(Clone, Debug)]
pub struct PodInfo {
    /// `namespace/name`.
    pub key: Key,
    /// metadata.uid: what names the pod's cgroups on its node.
    pub uid: Arc<str>,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Pod IPs (none for hostNetwork pods: those are the node's).
    pub ips: Vec<IpAddr>,
    /// IP of the node it runs on.
    pub host_ip: Option<IpAddr>,
    /// Whether it shares the node's network namespace.
    pub host_network: bool,
    /// Node name.
    pub node: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The owning workload.
    pub workload: Workload,
    /// Container images.
    pub images: Vec<String>,
    /// Declared container ports.
    pub container_ports: Vec<u16>,
    /// Named container ports, which a Service's `targetPort` may name.
    pub named_ports: Vec<(String, u16)>,
    /// Ready condition.
    pub ready: bool,
    /// The `smap.io/type` annotation, if any.
    pub type_annotation: Option<String>,
}

/// A Service port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name.
    pub name: String,
    /// The port clients dial.
    pub port: u16,
    /// The pod port, when numeric.
    pub target_port: Option<u16>,
    /// The pod port's name, when named.
    pub target_port_name: Option<String>,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    /// The port on every node's address that reaches it too (NodePort and
    /// LoadBalancer Services).
    pub node_port: Option<u16>,
}

/// What resolution needs of a Service.
#[derive(Clone, Debug)]
pub struct ServiceInfo {
    /// `namespace/name`.
    pub key: Key,
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// ClusterIPs (none for headless and ExternalName Services).
    pub cluster_ips: Vec<IpAddr>,
    /// Addresses outside the cluster's ranges that reach its ports:
    /// `spec.externalIPs` and the load balancer's `status.loadBalancer.ingress[].ip`.
    pub entry_ips: Vec<IpAddr>,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Pod selector (None: endpoints are managed by hand).
    pub selector: Option<BTreeMap<String, String>>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `spec.type`.
    pub service_type: String,
    /// `spec.externalName`.
    pub external_name: Option<String>,
    /// The `smap.io/type` annotation, if any.
    pub type_annotation: Option<String>,
}

/// One endpoint of an EndpointSlice.
#[derive(Clone, Debug)]
pub struct SliceEndpoint {
    /// Addresses.
    pub ips: Vec<IpAddr>,
    /// Ready condition (absent means ready, as the API defines).
    pub ready: bool,
    /// The pod's name, from targetRef.
    pub pod: Option<String>,
}

/// Annotation (or label) that states a service's type outright (read here, weighed in
/// classification).
pub const TYPE_ANNOTATION: &str = "smap.io/type";

/// The label an EndpointSlice names its Service by.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What resolution needs of an EndpointSlice.
#[derive(Clone, Debug)]
pub struct SliceInfo {
    /// The owning Service's key (label `kubernetes.io/service-name`).
    pub service: Option<Key>,
    /// Endpoints.
    pub endpoints: Vec<SliceEndpoint>,
}

/// Which addresses may resolve differently after an object was applied, so the
/// engine's resolution caches can drop just those (pod churn touches a few addresses;
/// clearing everything on every change made a churning cluster re-resolve all its
/// traffic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Changed {
    /// Nothing resolution depends on.
    Nothing,
    /// These addresses (in the forms the cluster knows them).
    Addresses(Vec<IpAddr>),
    /// Possibly any address (a Service, a Node, a hostNetwork pod, a Service gaining or
    /// losing its EndpointSlices...).
    Everything,
}

/// Entries a [`ClusterState`] holds.
pub(crate) struct ClusterFootprint {
    pub(crate) pods: usize,
    pub(crate) services: usize,
    pub(crate) retired: usize,
    pub(crate) slices: usize,
    pub(crate) ingresses: usize,
}

/// The cluster as of the current event time.
#[derive(Debug, Default)]
pub struct ClusterState {
    pods: HashMap<Key, PodInfo>,
    pod_by_ip: HashMap<IpAddr, Key>,
    services: HashMap<Key, ServiceInfo>,
    service_by_ip: HashMap<IpAddr, Key>,
    /// Services by external or load-balancer address: one address may front several
    /// Services on different ports (a shared load-balancer IP).
    services_by_entry_ip: HashMap<IpAddr, BTreeSet<Key>>,
    /// Services by node port (unique in a cluster).
    service_by_node_port: HashMap<u16, Key>,
    /// Services by namespace: the selector fallback looks only at the pod's own.
    services_by_namespace: HashMap<Arc<str>, BTreeSet<Key>>,
    slices: HashMap<Key, SliceInfo>,
    slices_by_service: HashMap<Key, BTreeSet<Key>>,
    services_by_ip: HashMap<IpAddr, BTreeSet<Key>>,
    node_by_ip: HashMap<IpAddr, Arc<str>>,
    /// Addresses each Node object gave, to forget them when it changes or goes.
    node_addresses: HashMap<Arc<str>, Vec<IpAddr>>,
    /// Services as they were when deleted, and when, so traffic to them keeps its
    /// labels (until `map_retention` forgets them).
    retired: HashMap<Key, (ServiceInfo, TimeNs)>,
    ingresses: IngressRoutes,
    unparsed: u64,
}

impl ClusterState {
    /// Applies one object event and says whose resolution it may have changed.
    pub fn apply(&mut self, event: &ObjectEvent) -> Changed {
        let deleted = event.action == ObjectAction::Deleted;
        let key = key(&event.namespace, &event.name);
        let parsed = match event.kind {
            ObjectKind::Pod => serde_json::from_str::<Pod>(&event.object).map(|pod| {
                let old = self.pods.get(&key).map(pod_addresses);
                self.remove_pod(&key);
                let new = (!deleted).then(|| pod_info(key.clone(), &pod));
                let new_addresses = new.as_ref().map(pod_addresses);
                if let Some(pod) = new {
                    self.insert_pod(pod);
                }
                match (old, new_addresses) {
                    (Some(None), _) | (_, Some(None)) => Changed::Everything,
                    (old, new) => self.with_pod_partners(old.flatten().into_iter().chain(new.flatten()).flatten()),
                }
            }),
            ObjectKind::Service => serde_json::from_str::<Service>(&event.object).map(|svc| {
                self.remove_service(&key, deleted.then_some(event.time_ns));
                if !deleted {
                    self.insert_service(service_info(key.clone(), &svc));
                }
                Changed::Everything
            }),
            ObjectKind::EndpointSlice => serde_json::from_str::<EndpointSlice>(&event.object).map(|slice| {
                let old = self.slices.get(&key).map(|s| (s.service.clone(), slice_addresses(s)));
                let new = (!deleted).then(|| slice_info(&slice));
                let services: Vec<Key> = old
                    .iter()
                    .filter_map(|(s, _)| s.clone())
                    .chain(new.iter().filter_map(|s| s.service.clone()))
                    .collect();
                let had_slices: Vec<bool> = services.iter().map(|s| self.slices_by_service.contains_key(s)).collect();
                let mut addresses = old.map(|(_, ips)| ips).unwrap_or_default();
                addresses.extend(new.iter().flat_map(slice_addresses));
                self.remove_slice(&key);
                if let Some(slice) = new {
                    self.insert_slice(key.clone(), slice);
                }
                // A Service without slices is resolved by its selector instead.
                let switched =
                    services.iter().zip(had_slices).any(|(s, had)| self.slices_by_service.contains_key(s) != had);
                if switched {
                    Changed::Everything
                } else {
                    self.with_pod_partners(addresses)
                }
            }),
            ObjectKind::Node => serde_json::from_str::<Node>(&event.object).map(|node| {
                self.remove_node(&event.name);
                if !deleted {
                    self.insert_node(&event.name, &node);
                }
                Changed::Everything
            }),
            // Labels of edges, not resolution.
            ObjectKind::Ingress => serde_json::from_str::<Ingress>(&event.object).map(|ingress| {
                self.ingresses.apply(&key, (!deleted).then_some(&ingress));
                Changed::Nothing
            }),
            // Recorded for analyses that do not exist yet; resolution needs none of them.
            ObjectKind::Namespace | ObjectKind::NetworkPolicy => Ok(Changed::Nothing),
        };
        parsed.unwrap_or_else(|_| {
            self.unparsed += 1;
            Changed::Nothing
        })
    }

    /// The addresses, plus the other addresses of the pods holding them: a dual-stack
    /// pod resolves both its addresses through whichever one a slice lists.
    fn with_pod_partners(&self, addresses: impl IntoIterator<Item = IpAddr>) -> Changed {
        let mut out: Vec<IpAddr> = addresses.into_iter().collect();
        let partners: Vec<IpAddr> =
            out.iter().filter_map(|ip| self.pod_by_ip(ip)).flat_map(|pod| pod.ips.iter().copied()).collect();
        out.extend(partners);
        out.sort_unstable();
        out.dedup();
        Changed::Addresses(out)
    }

    /// Objects that could not be parsed so far.
    pub fn unparsed(&self) -> u64 {
        self.unparsed
    }

    /// The pod holding `ip` now (not hostNetwork pods).
    pub fn pod_by_ip(&self, ip: &IpAddr) -> Option<&PodInfo> {
        self.pod_by_ip.get(ip).and_then(|k| self.pods.get(k))
    }

    /// The Service whose ClusterIP is `ip`.
    pub fn service_by_cluster_ip(&self, ip: &IpAddr) -> Option<&ServiceInfo> {
        self.service_by_ip.get(ip).and_then(|k| self.services.get(k))
    }

    /// The Service a node address's `port` forwards to, with the Service port it
    /// stands for.
    pub fn service_by_node_port(&self, port: u16) -> Option<(&ServiceInfo, u16)> {
        let service = self.service_by_node_port.get(&port).and_then(|k| self.services.get(k))?;
        service.ports.iter().find(|p| p.node_port == Some(port)).map(|p| (service, p.port))
    }

    /// The Service an external or load-balancer address fronts on `port`.
    pub fn service_by_entry_ip(&self, ip: &IpAddr, port: u16) -> Option<&ServiceInfo> {
        self.services_by_entry_ip
            .get(ip)?
            .iter()
            .filter_map(|k| self.services.get(k))
            .find(|s| s.ports.iter().any(|p| p.port == port))
    }

    /// The node whose address is `ip`.
    pub fn node_by_ip(&self, ip: &IpAddr) -> Option<&Arc<str>> {
        self.node_by_ip.get(ip)
    }

    /// A Service by key, also one deleted earlier.
    pub fn service(&self, key: &str) -> Option<&ServiceInfo> {
        self.services.get(key).or_else(|| self.retired.get(key).map(|(service, _)| service))
    }

    /// The Ingress rules that route to this port of this Service, sorted.
    pub fn ingress_routes(&self, service: &ServiceInfo, port: u16) -> Vec<IngressRoute> {
        self.ingresses.to(service, port)
    }

    /// The Service an EndpointSlice (by key) belongs to, while the slice exists.
    pub fn slice_service(&self, key: &str) -> Option<&Key> {
        self.slices.get(key).and_then(|slice| slice.service.as_ref())
    }

    /// Whether the Service exists now.
    pub fn service_exists(&self, key: &str) -> bool {
        self.services.contains_key(key)
    }

    /// All current Services.
    pub fn services(&self) -> impl Iterator<Item = &ServiceInfo> {
        self.services.values()
    }

    /// A current pod by `namespace/name`.
    pub fn pod(&self, key: &str) -> Option<&PodInfo> {
        self.pods.get(key)
    }

    /// The hostNetwork pod with this UID, if it runs on `node` now.
    pub fn host_network_pod(&self, node: &str, uid: &str) -> Option<&PodInfo> {
        self.pods.values().find(|p| p.host_network && &*p.uid == uid && p.node.as_deref() == Some(node))
    }

    /// All current pods.
    pub fn pods(&self) -> impl Iterator<Item = &PodInfo> {
        self.pods.values()
    }

    /// The Services in front of a pod: those whose EndpointSlices list its IP, else
    /// those whose selector matches its labels. Sorted by key.
    pub fn services_of_pod(&self, pod: &PodInfo) -> Vec<&ServiceInfo> {
        let mut out: Vec<&ServiceInfo> = pod
            .ips
            .iter()
            .filter_map(|ip| self.services_by_ip.get(ip))
            .flatten()
            .filter_map(|k| self.services.get(k))
            .filter(|s| s.namespace == pod.namespace)
            .collect();
        if out.is_empty() {
            out = self
                .services
                .values()
                .filter(|s| {
                    s.namespace == pod.namespace
                        && selects(s, &pod.labels)
                        && !self.slices_by_service.contains_key(&s.key)
                })
                .collect();
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out.dedup_by(|a, b| a.key == b.key);
        out
    }

    /// Ready and total endpoints of a Service, and the pods behind it; None when the
    /// Service has neither EndpointSlices nor a selector (nothing to judge by).
    pub fn endpoints_of_service(&self, service: &ServiceInfo) -> Option<(u32, u32, Vec<&PodInfo>)> {
        if let Some(slice_keys) = self.slices_by_service.get(&service.key) {
            // An endpoint is its pod when the slice names one: a dual-stack Service
            // lists each pod in an IPv4 and an IPv6 slice, and it is still one endpoint.
            let mut seen: BTreeMap<String, bool> = BTreeMap::new();
            let mut pods: BTreeMap<&str, &PodInfo> = BTreeMap::new();
            for slice in slice_keys.iter().filter_map(|k| self.slices.get(k)) {
                for endpoint in &slice.endpoints {
                    let identity = match (&endpoint.pod, endpoint.ips.first()) {
                        (Some(pod), _) => format!("pod/{pod}"),
                        (None, Some(ip)) => ip.to_string(),
                        (None, None) => continue,
                    };
                    let ready = seen.entry(identity).or_insert(false);
                    *ready |= endpoint.ready;
                    let pod = endpoint
                        .pod
                        .as_ref()
                        .and_then(|name| self.pods.get(&key(&service.namespace, name)))
                        .or_else(|| endpoint.ips.first().and_then(|ip| self.pod_by_ip(ip)));
                    if let Some(pod) = pod {
                        pods.insert(&pod.key, pod);
                    }
                }
            }
            let ready = seen.values().filter(|r| **r).count();
            return Some((count(ready), count(seen.len()), pods.into_values().collect()));
        }
        if service.selector.is_some() {
            let pods: Vec<&PodInfo> = self
                .pods
                .values()
                .filter(|p| p.namespace == service.namespace && selects(service, &p.labels))
                .collect();
            let ready = pods.iter().filter(|p| p.ready).count();
            return Some((count(ready), count(pods.len()), pods));
        }
        None
    }

    /// The addresses a Service's EndpointSlices list, pods or not (the API server's
    /// `default/kubernetes` lists its control-plane nodes), sorted.
    pub fn endpoint_addresses(&self, service: &ServiceInfo) -> Vec<IpAddr> {
        let mut addresses: Vec<IpAddr> = self
            .slices_by_service
            .get(&service.key)
            .into_iter()
            .flatten()
            .filter_map(|k| self.slices.get(k))
            .flat_map(|slice| slice.endpoints.iter().flat_map(|e| e.ips.iter().copied()))
            .collect();
        addresses.sort();
        addresses.dedup();
        addresses
    }

    fn insert_pod(&mut self, pod: PodInfo) {
        for ip in &pod.ips {
            self.pod_by_ip.insert(*ip, pod.key.clone());
        }
        if let (Some(ip), Some(node)) = (pod.host_ip, &pod.node) {
            self.node_by_ip.entry(ip).or_insert_with(|| Arc::from(node.as_str()));
        }
        self.pods.insert(pod.key.clone(), pod);
    }

    /// Forgets Services deleted before `horizon` that nothing `held` refers to.
    pub(crate) fn forget_retired(&mut self, horizon: TimeNs, held: impl Fn(&Key) -> bool) {
        self.retired.retain(|key, (_, deleted_at)| *deleted_at >= horizon || held(key));
    }

    /// Entries held, by kind.
    pub(crate) fn footprint(&self) -> ClusterFootprint {
        ClusterFootprint {
            pods: self.pods.len(),
            services: self.services.len(),
            retired: self.retired.len(),
            slices: self.slices.len(),
            ingresses: self.ingresses.len(),
        }
    }

    fn remove_pod(&mut self, key: &Key) {
        if let Some(old) = self.pods.remove(key) {
            for ip in &old.ips {
                // A newer pod may hold this IP already (a late delete): keep its mapping.
                if self.pod_by_ip.get(ip) == Some(key) {
                    self.pod_by_ip.remove(ip);
                }
            }
        }
    }

    fn insert_service(&mut self, service: ServiceInfo) {
        self.retired.remove(&service.key);
        for ip in &service.cluster_ips {
            self.service_by_ip.insert(*ip, service.key.clone());
        }
        for ip in &service.entry_ips {
            self.services_by_entry_ip.entry(*ip).or_default().insert(service.key.clone());
        }
        for port in service.ports.iter().filter_map(|p| p.node_port) {
            self.service_by_node_port.insert(port, service.key.clone());
        }
        self.services_by_namespace.entry(service.namespace.clone()).or_default().insert(service.key.clone());
        self.services.insert(service.key.clone(), service);
    }

    fn remove_service(&mut self, key: &Key, retire: Option<TimeNs>) {
        if let Some(old) = self.services.remove(key) {
            if let Some(keys) = self.services_by_namespace.get_mut(&old.namespace) {
                keys.remove(key);
                if keys.is_empty() {
                    self.services_by_namespace.remove(&old.namespace);
                }
            }
            for ip in &old.cluster_ips {
                if self.service_by_ip.get(ip) == Some(key) {
                    self.service_by_ip.remove(ip);
                }
            }
            for ip in &old.entry_ips {
                if let Some(keys) = self.services_by_entry_ip.get_mut(ip) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.services_by_entry_ip.remove(ip);
                    }
                }
            }
            for port in old.ports.iter().filter_map(|p| p.node_port) {
                if self.service_by_node_port.get(&port) == Some(key) {
                    self.service_by_node_port.remove(&port);
                }
            }
            if let Some(deleted_at) = retire {
                self.retired.insert(key.clone(), (old, deleted_at));
            }
        }
    }

    fn insert_slice(&mut self, key: Key, slice: SliceInfo) {
        if let Some(service) = &slice.service {
            self.slices_by_service.entry(service.clone()).or_default().insert(key.clone());
            for ip in slice.endpoints.iter().flat_map(|e| &e.ips) {
                self.services_by_ip.entry(*ip).or_default().insert(service.clone());
            }
        }
        self.slices.insert(key, slice);
    }

    fn remove_slice(&mut self, key: &Key) {
        let Some(old) = self.slices.remove(key) else { return };
        let Some(service) = old.service else { return };
        if let Some(keys) = self.slices_by_service.get_mut(&service) {
            keys.remove(key);
            if keys.is_empty() {
                self.slices_by_service.remove(&service);
            }
        }
        for ip in old.endpoints.iter().flat_map(|e| &e.ips) {
            // Another slice of the same Service may list the IP too.
            let still_listed = self.slices_by_service.get(&service).is_some_and(|keys| {
                keys.iter().filter_map(|k| self.slices.get(k)).any(|s| s.endpoints.iter().any(|e| e.ips.contains(ip)))
            });
            if !still_listed {
                if let Some(set) = self.services_by_ip.get_mut(ip) {
                    set.remove(&service);
                    if set.is_empty() {
                        self.services_by_ip.remove(ip);
                    }
                }
            }
        }
    }

    fn insert_node(&mut self, name: &str, node: &Node) {
        let name: Arc<str> = Arc::from(name);
        let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
        let mut ips = Vec::new();
        for address in addresses.into_iter().flatten() {
            if let Ok(ip) = address.address.parse() {
                self.node_by_ip.insert(ip, name.clone());
                ips.push(ip);
            }
        }
        self.node_addresses.insert(name, ips);
    }

    /// Forgets a node's addresses (deleted, or about to be re-added with its current
    /// ones), unless another node holds one by now.
    fn remove_node(&mut self, name: &str) {
        for ip in self.node_addresses.remove(name).unwrap_or_default() {
            if self.node_by_ip.get(&ip).is_some_and(|holder| &**holder == name) {
                self.node_by_ip.remove(&ip);
            }
        }
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Whether a Service's selector matches these labels (an empty selector matches nothing,
/// as Kubernetes treats it).
pub fn selects(service: &ServiceInfo, labels: &BTreeMap<String, String>) -> bool {
    match &service.selector {
        Some(selector) if !selector.is_empty() => selector.iter().all(|(k, v)| labels.get(k) == Some(v)),
        _ => false,
    }
}
