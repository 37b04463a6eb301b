//! What a test asks for: pods (IP, labels, owner, containers) and Services (ClusterIP,
//! ports, selector), as small builders that read like the manifests they stand for.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

/// A transport protocol of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// The Kubernetes spelling (`TCP`, `UDP`).
    pub fn k8s(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }

    /// The iptables spelling (`tcp`, `udp`).
    pub fn iptables(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.k8s())
    }
}

/// A port a container declares (`spec.containers[].ports[]`). Declaring is optional in
/// Kubernetes and so here: a server may listen on any port; named ports let a Service
/// target them by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerPort {
    /// Port name, for `targetPort: <name>`.
    pub name: Option<String>,
    /// The port number.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl ContainerPort {
    /// A TCP port.
    pub fn tcp(port: u16) -> Self {
        ContainerPort { name: None, port, protocol: Protocol::Tcp }
    }

    /// A UDP port.
    pub fn udp(port: u16) -> Self {
        ContainerPort { name: None, port, protocol: Protocol::Udp }
    }

    /// Names the port.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

/// One container of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// Container name.
    pub name: String,
    /// Image reference, as it would appear in the manifest.
    pub image: String,
    /// Declared ports.
    pub ports: Vec<ContainerPort>,
}

/// The controller that owns a pod, rendered as Kubernetes would set `ownerReferences`
/// and the controller's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A bare pod.
    None,
    /// A Deployment: the pod is owned by ReplicaSet `<name>-<pod-template-hash>`.
    Deployment(String),
    /// A StatefulSet.
    StatefulSet(String),
    /// A DaemonSet.
    DaemonSet(String),
    /// A Job.
    Job(String),
    /// A CronJob: the pod is owned by Job `<name>-<scheduled minute>`.
    CronJob(String),
}

/// A pod to add. Build with [`PodSpec::new`] and the chained setters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSpec {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name (used as is: pass `details-v1-79f774bdb9-abcde` for a realistic one).
    pub name: String,
    /// Pod IP, on the pod's eth0 (a /32; the node routes it).
    pub ip: Ipv4Addr,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// Owning controller.
    pub owner: Owner,
    /// Containers; a pod with none gets one named after the pod, image `busybox:1.36`.
    pub containers: Vec<Container>,
}

impl PodSpec {
    /// A bare pod with no labels.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, ip: Ipv4Addr) -> Self {
        PodSpec {
            namespace: namespace.into(),
            name: name.into(),
            ip,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            owner: Owner::None,
            containers: Vec::new(),
        }
    }

    /// A pod of a Deployment, named as its ReplicaSet names pods
    /// (`<deployment>-<pod-template-hash>-<5 chars>`) and owned by that ReplicaSet.
    pub fn for_deployment(namespace: impl Into<String>, deployment: &str, ip: Ipv4Addr) -> Self {
        let hash = crate::ids::k8s_suffix(deployment, 10);
        let suffix = crate::ids::k8s_suffix(&format!("{deployment}/{ip}"), 5);
        PodSpec::new(namespace, format!("{deployment}-{hash}-{suffix}"), ip).owner(Owner::Deployment(deployment.into()))
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Sets the owning controller.
    pub fn owner(mut self, owner: Owner) -> Self {
        self.owner = owner;
        self
    }

    /// Adds a container.
    pub fn container(
        mut self,
        name: impl Into<String>,
        image: impl Into<String>,
        ports: impl IntoIterator<Item = ContainerPort>,
    ) -> Self {
        self.containers.push(Container { name: name.into(), image: image.into(), ports: ports.into_iter().collect() });
        self
    }
}

/// Where a Service port sends traffic on the pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetPort {
    /// A port number.
    Number(u16),
    /// A container port's name, resolved per pod (pods without it are no endpoint).
    Name(String),
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePort {
    /// Port name (Kubernetes requires one when a Service has several ports).
    pub name: Option<String>,
    /// The port clients dial on the ClusterIP.
    pub port: u16,
    /// The pod port.
    pub target_port: TargetPort,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The port on every node's address that reaches this one too (`type: NodePort`).
    pub node_port: Option<u16>,
}

impl ServicePort {
    /// A TCP port forwarding `port` to `target_port`.
    pub fn tcp(port: u16, target_port: u16) -> Self {
        ServicePort {
            name: None,
            port,
            target_port: TargetPort::Number(target_port),
            protocol: Protocol::Tcp,
            node_port: None,
        }
    }

    /// A UDP port forwarding `port` to `target_port`.
    pub fn udp(port: u16, target_port: u16) -> Self {
        ServicePort {
            name: None,
            port,
            target_port: TargetPort::Number(target_port),
            protocol: Protocol::Udp,
            node_port: None,
        }
    }

    /// Names the port.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Opens the port on the node's address too, as a NodePort Service does.
    pub fn node_port(mut self, port: u16) -> Self {
        self.node_port = Some(port);
        self
    }

    /// Targets a named container port instead of a number.
    pub fn target_name(mut self, name: impl Into<String>) -> Self {
        self.target_port = TargetPort::Name(name.into());
        self
    }
}

/// How a ClusterIP picks an endpoint for a new connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Balancing {
    /// kube-proxy's iptables mode: `-m statistic --mode random --probability 1/(n-i)`.
    #[default]
    Random,
    /// Deterministic rotation (`-m statistic --mode nth`), for tests that need every
    /// endpoint hit in a known order. Counts connections (only a connection's first
    /// packet traverses the nat table).
    RoundRobin,
}

/// A ClusterIP Service to add. Build with [`ServiceSpec::new`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// The ClusterIP, inside [`crate::SERVICE_CIDR`].
    pub cluster_ip: Ipv4Addr,
    /// Ports.
    pub ports: Vec<ServicePort>,
    /// Pod selector (ignored when `manual_endpoints` is set).
    pub selector: BTreeMap<String, String>,
    /// A Service without selector whose endpoints are these addresses, as one made for
    /// an external database or a blackholed address (needs numeric target ports).
    pub manual_endpoints: Option<Vec<Ipv4Addr>>,
    /// Labels of the Service object.
    pub labels: BTreeMap<String, String>,
    /// Endpoint choice.
    pub balancing: Balancing,
}

impl ServiceSpec {
    /// A Service with no ports and an empty selector.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, cluster_ip: Ipv4Addr) -> Self {
        ServiceSpec {
            namespace: namespace.into(),
            name: name.into(),
            cluster_ip,
            ports: Vec::new(),
            selector: BTreeMap::new(),
            manual_endpoints: None,
            labels: BTreeMap::new(),
            balancing: Balancing::Random,
        }
    }

    /// Adds a port.
    pub fn port(mut self, port: ServicePort) -> Self {
        self.ports.push(port);
        self
    }

    /// Adds a selector term.
    pub fn selector(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.selector.insert(key.into(), value.into());
        self
    }

    /// Makes it a selector-less Service with these endpoint addresses.
    pub fn endpoints(mut self, ips: impl IntoIterator<Item = Ipv4Addr>) -> Self {
        self.manual_endpoints = Some(ips.into_iter().collect());
        self
    }

    /// Adds a label to the Service object.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets the endpoint choice.
    pub fn balancing(mut self, balancing: Balancing) -> Self {
        self.balancing = balancing;
        self
    }
}

/// A pod of a [`crate::Cluster`], as returned by `add_pod`: enough to address it and to
/// run programs in it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodRef {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Pod name.
    pub name: String,
    /// Pod IP.
    pub ip: Ipv4Addr,
    /// The network namespace (`ip netns`) it lives in; never reused within a run.
    pub netns: String,
}

impl PodRef {
    /// `ip:port` on this pod.
    pub fn addr(&self, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.ip, port)
    }
}

/// A Service of a [`crate::Cluster`], as returned by `add_service`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ServiceRef {
    /// Kubernetes namespace.
    pub namespace: String,
    /// Service name.
    pub name: String,
    /// Its ClusterIP.
    pub cluster_ip: Ipv4Addr,
}

impl ServiceRef {
    /// `clusterIP:port`.
    pub fn addr(&self, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.cluster_ip, port)
    }
}
