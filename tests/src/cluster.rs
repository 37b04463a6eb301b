//! The cluster: a "node" network namespace routing between "pod" namespaces on veth
//! pairs, with ClusterIPs as kube-proxy style DNAT rules in the node. Everything lives in
//! namespaces this value made and removes on drop; the host's own namespace is never
//! touched (no interface, route or iptables rule is added there).
//!
//! ```text
//!   pod netns (10.244.1.10/32 on eth0)        node netns
//!   default via 10.250.0.1 ──veth── vp0 ──┐  lo: 10.250.0.1 (node IP), local 10.96.0.0/12
//!   pod netns (10.244.2.20/32 on eth0)    ├─ 10.244.x.y/32 dev vpN routes, ip_forward=1
//!   default via 10.250.0.1 ──veth── vp1 ──┘  nat: KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP DNAT
//!                                          10.244.0.0/16 dev sink0 (unassigned pod IPs)
//! ```

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::SystemTime;

use crate::error::{HarnessError, Result};
use crate::ids::{k8s_suffix, uid};
use crate::kube_proxy::{self, PortRules};
use crate::spec::{PodRef, PodSpec, ServiceRef, ServiceSpec, TargetPort};
use crate::sys;

/// Every network namespace the harness makes is named `smap-e2e-<pid>-<n>-...`; the pid
/// lets [`Cluster::sweep_stale`] tell leftovers of dead runs from live clusters.
pub const NETNS_PREFIX: &str = "smap-e2e-";

/// The pod network: unassigned addresses in it are routed into a sink on the node, as a
/// node routes its podCIDR to its bridge, so they fail like on a real node (no ARP
/// answer: EHOSTUNREACH after ~3 s), and a blackhole DROP can meet them in FORWARD.
pub const POD_CIDR: &str = "10.244.0.0/16";

/// The Service network (kubeadm's default). It is local on the node, so a ClusterIP
/// port without DNAT rule answers with RST or kube-proxy's REJECT instead of an ICMP
/// network unreachable.
pub const SERVICE_CIDR: &str = "10.96.0.0/12";

/// The node namespace's address, the Node object's InternalIP and every pod's hostIP.
pub const DEFAULT_NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);

/// The Node object's name.
pub const DEFAULT_NODE_NAME: &str = "node-1";

/// Choices made once, when the cluster is built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterOptions {
    /// The Node object's name (pods' `spec.nodeName`).
    pub node_name: String,
    /// The node namespace's address (on its loopback; pods' gateway).
    pub node_ip: Ipv4Addr,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions { node_name: DEFAULT_NODE_NAME.to_owned(), node_ip: DEFAULT_NODE_IP }
    }
}

/// A pod as the cluster holds it.
#[derive(Clone, Debug)]
pub(crate) struct PodState {
    pub(crate) spec: PodSpec,
    pub(crate) netns: String,
    /// The node side of its veth pair.
    pub(crate) veth: String,
    pub(crate) uid: String,
    pub(crate) created: SystemTime,
    pub(crate) resource_version: u64,
    /// A host outside the cluster (`Cluster::add_external`): in no Kubernetes object.
    pub(crate) external: bool,
    /// A hostNetwork pod's cgroup (`Cluster::add_host_network_pod`): it lives in the
    /// node's namespace, its processes in this cgroup.
    pub(crate) host_cgroup: Option<std::path::PathBuf>,
}

impl PodState {
    pub(crate) fn to_ref(&self) -> PodRef {
        PodRef {
            namespace: self.spec.namespace.clone(),
            name: self.spec.name.clone(),
            ip: self.spec.ip,
            netns: self.netns.clone(),
        }
    }
}

/// A Service as the cluster holds it, with its one EndpointSlice's bookkeeping.
#[derive(Clone, Debug)]
pub(crate) struct ServiceState {
    pub(crate) spec: ServiceSpec,
    pub(crate) uid: String,
    pub(crate) created: SystemTime,
    pub(crate) resource_version: u64,
    pub(crate) slice_name: String,
    pub(crate) slice_uid: String,
    /// Bumped when the endpoints change, as the EndpointSlice controller rewrites it.
    pub(crate) slice_resource_version: u64,
    pub(crate) slice_changed: SystemTime,
    pub(crate) last_endpoints: Vec<Ipv4Addr>,
}

/// One endpoint of a Service: an address, and the pod behind it (none for manual ones).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Endpoint<'a> {
    pub(crate) ip: Ipv4Addr,
    pub(crate) pod: Option<&'a PodState>,
}

/// A small cluster of network namespaces. Dropping it kills every process inside its
/// namespaces and deletes them (with their veths and iptables rules), also when a test
/// panics.
#[derive(Debug)]
pub struct Cluster {
    pub(crate) prefix: String,
    pub(crate) node_netns: String,
    pub(crate) options: ClusterOptions,
    pub(crate) node_uid: String,
    pub(crate) created: SystemTime,
    pub(crate) peer: Option<PathBuf>,
    pub(crate) pods: Vec<PodState>,
    pub(crate) services: Vec<ServiceState>,
    pub(crate) blackholes: Vec<Ipv4Addr>,
    pub(crate) ingresses: Vec<crate::ingress::IngressState>,
    /// Namespaces made and not yet deleted, node first.
    netns: Vec<String>,
    next_pod: u32,
    pub(crate) resource_version: u64,
}

/// Clusters made by this process so far, for unique names.
static CLUSTERS: AtomicU32 = AtomicU32::new(0);

/// iptables-legacy serializes on a host-wide lock file (`/run/xtables.lock`), whatever
/// the namespace; parallel tests of one process take turns here instead of failing.
static IPTABLES: Mutex<()> = Mutex::new(());

impl Cluster {
    /// Builds an empty cluster (a node namespace) with default options. `label` (the
    /// test's name, say) goes into the namespace names to tell them apart in `ip netns`.
    pub fn new(label: &str) -> Result<Self> {
        Cluster::with_options(label, ClusterOptions::default())
    }

    /// Builds an empty cluster with these options.
    pub fn with_options(label: &str, options: ClusterOptions) -> Result<Self> {
        static SWEEP: Once = Once::new();
        let mut sweep = Ok(Vec::new());
        SWEEP.call_once(|| sweep = Cluster::sweep_stale());
        sweep?;

        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
            .take(20)
            .collect();
        let label = match label.trim_matches('-') {
            "" => "cluster",
            trimmed => trimmed,
        };
        let n = CLUSTERS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("{NETNS_PREFIX}{}-{n}-{label}", std::process::id());
        let node_netns = format!("{prefix}-node");
        sys::netns_add(&node_netns)?;
        // From here on Drop removes what exists, whatever fails next.
        let mut cluster = Cluster {
            node_uid: uid(&[&prefix, "node"]),
            prefix,
            node_netns: node_netns.clone(),
            options,
            created: SystemTime::now(),
            peer: None,
            pods: Vec::new(),
            services: Vec::new(),
            blackholes: Vec::new(),
            ingresses: Vec::new(),
            netns: vec![node_netns],
            next_pod: 0,
            resource_version: 1,
        };
        cluster.setup_node()?;
        Ok(cluster)
    }

    fn setup_node(&mut self) -> Result<()> {
        let node = self.node_netns.clone();
        let node_ip = self.options.node_ip;
        // A new namespace copies the host's sysctls (net.core.devconf_inherit_init_net
        // = 0): a host with rp_filter=1 or arp_ignore=1 would break the routed pods.
        sys::write_sysctls(
            &node,
            &[
                ("net/ipv4/ip_forward", "1"),
                ("net/ipv4/conf/all/rp_filter", "0"),
                ("net/ipv4/conf/default/rp_filter", "0"),
                ("net/ipv4/conf/all/arp_ignore", "0"),
                ("net/ipv4/conf/default/arp_ignore", "0"),
                // IPv4 only: no link-local addresses, router solicitations or DAD noise.
                ("net/ipv6/conf/all/disable_ipv6", "1"),
                ("net/ipv6/conf/default/disable_ipv6", "1"),
            ],
        )?;
        sys::ip_batch(
            &node,
            &[
                "link set lo up".to_owned(),
                // No dummy interface: kernels without CONFIG_DUMMY exist (this one).
                format!("addr add {node_ip}/32 dev lo"),
                // `src`: a node-local client of a ClusterIP gets the node IP as source,
                // not the ClusterIP itself (the default for local routes).
                format!("route add local {SERVICE_CIDR} dev lo src {node_ip}"),
                "link add sink0 type veth peer name sink1".to_owned(),
                "link set sink0 up".to_owned(),
                "link set sink1 up".to_owned(),
                format!("route add {POD_CIDR} dev sink0 src {node_ip}"),
            ],
        )?;
        self.sync_rules()
    }

    /// Overrides where the `smap-e2e-peer` binary is (default: [`crate::peer_binary`]).
    /// This crate's own tests pass `env!("CARGO_BIN_EXE_smap-e2e-peer")`.
    pub fn with_peer(mut self, path: impl Into<PathBuf>) -> Self {
        self.peer = Some(path.into());
        self
    }

    /// The node's network namespace (`ip netns exec <it> ...` runs as hostNetwork).
    pub fn node_netns(&self) -> &str {
        &self.node_netns
    }

    /// The Node object's name.
    pub fn node_name(&self) -> &str {
        &self.options.node_name
    }

    /// The node's IP (InternalIP, pods' hostIP and gateway).
    pub fn node_ip(&self) -> Ipv4Addr {
        self.options.node_ip
    }

    /// Every network namespace of this cluster that exists now, node first.
    pub fn namespaces(&self) -> Vec<String> {
        self.netns.clone()
    }

    /// The pods, in the order they were added.
    pub fn pods(&self) -> Vec<PodRef> {
        self.pods.iter().map(PodState::to_ref).collect()
    }

    /// A pod by Kubernetes namespace and name.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<PodRef> {
        self.pods.iter().find(|p| p.spec.namespace == namespace && p.spec.name == name).map(PodState::to_ref)
    }

    /// A Service by Kubernetes namespace and name.
    pub fn service(&self, namespace: &str, name: &str) -> Option<ServiceRef> {
        self.services.iter().find(|s| s.spec.namespace == namespace && s.spec.name == name).map(service_ref)
    }

    /// Adds a running, ready pod: a network namespace with the pod IP on `eth0`, a
    /// veth into the node, routes both ways; then updates the Services selecting it.
    pub fn add_pod(&mut self, spec: PodSpec) -> Result<PodRef> {
        if self.pod(&spec.namespace, &spec.name).is_some() {
            return Err(HarnessError::Invalid(format!("pod {}/{} exists already", spec.namespace, spec.name)));
        }
        if let Some(holder) = self.pods.iter().find(|p| p.spec.ip == spec.ip) {
            return Err(HarnessError::Invalid(format!(
                "pod IP {} is held by {}/{}: delete that pod first to reuse it",
                spec.ip, holder.spec.namespace, holder.spec.name
            )));
        }
        if spec.ip == self.options.node_ip
            || spec.ip.is_loopback()
            || spec.ip.is_unspecified()
            || in_cidr(spec.ip, SERVICE_CIDR)
        {
            return Err(HarnessError::Invalid(format!("{} cannot be a pod IP", spec.ip)));
        }
        let index = self.next_pod;
        self.next_pod += 1;
        let netns = format!("{}-p{index}", self.prefix);
        // The node side lives in the cluster's own node namespace, so a short per-
        // cluster index stays unique and within IFNAMSIZ (15).
        let veth = format!("vp{index}");
        sys::netns_add(&netns)?;
        self.netns.push(netns.clone());
        if let Err(e) = self.wire_pod(&netns, &veth, spec.ip) {
            // Undo now: the node must not keep a route for an IP the test will retry.
            let _ = self.remove_netns(&netns, &veth);
            return Err(e);
        }
        self.resource_version += 1;
        let pod = PodState {
            uid: uid(&[&netns, &spec.name]),
            spec,
            netns,
            veth,
            created: SystemTime::now(),
            resource_version: self.resource_version,
            external: false,
            host_cgroup: None,
        };
        let pod_ref = pod.to_ref();
        self.pods.push(pod);
        self.sync_rules()?;
        Ok(pod_ref)
    }

    fn wire_pod(&self, netns: &str, veth: &str, ip: Ipv4Addr) -> Result<()> {
        let node_ip = self.options.node_ip;
        sys::write_sysctls(
            netns,
            &[
                ("net/ipv4/conf/all/rp_filter", "0"),
                ("net/ipv4/conf/default/rp_filter", "0"),
                ("net/ipv6/conf/all/disable_ipv6", "1"),
                ("net/ipv6/conf/default/disable_ipv6", "1"),
            ],
        )?;
        // Made inside the node namespace with its peer put straight into the pod's:
        // no interface ever appears in the host namespace, so names cannot collide.
        sys::ip_batch(
            &self.node_netns,
            &[format!("link add {veth} type veth peer name eth0 netns {netns}"), format!("link set {veth} up")],
        )?;
        sys::ip_batch(
            netns,
            &[
                "link set lo up".to_owned(),
                format!("addr add {ip}/32 dev eth0"),
                "link set eth0 up".to_owned(),
                // A /32 pod reaches its gateway as an on-link host route, as Calico does.
                format!("route add {node_ip}/32 dev eth0 scope link"),
                format!("route add default via {node_ip} dev eth0 src {ip}"),
            ],
        )?;
        sys::ip_batch(&self.node_netns, &[format!("route add {ip}/32 dev {veth} src {node_ip}")])
    }

    /// Deletes a pod: kills what runs in it, removes its veth (and the node's route to
    /// it) and its namespace, then updates the Services that selected it. Its IP can be
    /// given to a new pod right away.
    pub fn delete_pod(&mut self, pod: &PodRef) -> Result<()> {
        let index = self
            .pods
            .iter()
            .position(|p| p.netns == pod.netns && p.spec.namespace == pod.namespace && p.spec.name == pod.name)
            .ok_or_else(|| HarnessError::UnknownPod { namespace: pod.namespace.clone(), name: pod.name.clone() })?;
        let state = self.pods.remove(index);
        self.resource_version += 1;
        match &state.host_cgroup {
            Some(cgroup) => crate::host_network::remove_cgroup(cgroup)?,
            None => self.remove_netns(&state.netns, &state.veth)?,
        }
        self.sync_rules()
    }

    fn remove_netns(&mut self, netns: &str, veth: &str) -> Result<()> {
        sys::kill_all_in(netns);
        // Deleting the link now, not when the kernel gets round to destroying the
        // namespace, frees the pod IP's route for the next pod synchronously.
        let link = sys::run(&mut sys::ip(Some(&self.node_netns), ["link", "del", veth])?, None);
        let ns = sys::netns_del(netns);
        self.netns.retain(|n| n != netns);
        link.and(ns)
    }

    /// Adds a ClusterIP Service and its EndpointSlice, and installs its DNAT rules.
    pub fn add_service(&mut self, spec: ServiceSpec) -> Result<ServiceRef> {
        if self.service(&spec.namespace, &spec.name).is_some() {
            return Err(HarnessError::Invalid(format!("Service {}/{} exists already", spec.namespace, spec.name)));
        }
        if !in_cidr(spec.cluster_ip, SERVICE_CIDR) {
            return Err(HarnessError::Invalid(format!("ClusterIP {} is outside {SERVICE_CIDR}", spec.cluster_ip)));
        }
        if let Some(other) = self.services.iter().find(|s| s.spec.cluster_ip == spec.cluster_ip) {
            return Err(HarnessError::Invalid(format!(
                "ClusterIP {} is taken by {}/{}",
                spec.cluster_ip, other.spec.namespace, other.spec.name
            )));
        }
        if spec.ports.is_empty() {
            return Err(HarnessError::Invalid(format!("Service {}/{} has no ports", spec.namespace, spec.name)));
        }
        if spec.manual_endpoints.is_some() && spec.ports.iter().any(|p| matches!(p.target_port, TargetPort::Name(_))) {
            return Err(HarnessError::Invalid("a Service without selector needs numeric target ports".to_owned()));
        }
        self.resource_version += 1;
        let now = SystemTime::now();
        let seed = format!("{}/{}/{}", self.prefix, spec.namespace, spec.name);
        let state = ServiceState {
            uid: uid(&[&seed, "service"]),
            slice_name: format!("{}-{}", spec.name, k8s_suffix(&seed, 5)),
            slice_uid: uid(&[&seed, "slice"]),
            spec,
            created: now,
            resource_version: self.resource_version,
            slice_resource_version: self.resource_version,
            slice_changed: now,
            last_endpoints: Vec::new(),
        };
        let service_ref = service_ref(&state);
        self.services.push(state);
        self.sync_rules()?;
        Ok(service_ref)
    }

    /// Deletes a Service, its EndpointSlice and its rules.
    pub fn delete_service(&mut self, service: &ServiceRef) -> Result<()> {
        let before = self.services.len();
        self.services.retain(|s| !(s.spec.namespace == service.namespace && s.spec.name == service.name));
        if self.services.len() == before {
            return Err(HarnessError::UnknownService {
                namespace: service.namespace.clone(),
                name: service.name.clone(),
            });
        }
        self.resource_version += 1;
        self.sync_rules()
    }

    /// Silently drops everything forwarded to `ip` (an iptables DROP in the node's
    /// FORWARD chain): a connect to it, directly or through a ClusterIP, times out.
    pub fn blackhole(&mut self, ip: Ipv4Addr) -> Result<()> {
        if !self.blackholes.contains(&ip) {
            self.blackholes.push(ip);
        }
        self.sync_rules()
    }

    /// The node's current iptables rules (`iptables-save`), for debugging a test.
    pub fn iptables_save(&self) -> Result<String> {
        let mut cmd = sys::netns_exec(&self.node_netns, sys::command(sys::IPTABLES_SAVE)?.get_program())?;
        let output = sys::run(&mut cmd, None)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The endpoints of a Service now: its manual addresses, or the pods of its
    /// namespace its selector matches (an empty selector matches none), by IP.
    pub(crate) fn endpoints<'a>(&'a self, service: &ServiceSpec) -> Vec<Endpoint<'a>> {
        if let Some(ips) = &service.manual_endpoints {
            return ips.iter().map(|&ip| Endpoint { ip, pod: None }).collect();
        }
        if service.selector.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<Endpoint<'a>> = self
            .pods
            .iter()
            .filter(|p| p.spec.namespace == service.namespace)
            .filter(|p| service.selector.iter().all(|(k, v)| p.spec.labels.get(k) == Some(v)))
            .map(|p| Endpoint { ip: p.spec.ip, pod: Some(p) })
            .collect();
        out.sort_by_key(|e| e.ip);
        out
    }

    /// Rewrites the node's nat and filter tables from the current Services, pods and
    /// blackholes, as one kube-proxy sync, and bumps the EndpointSlices that changed.
    pub(crate) fn sync_rules(&mut self) -> Result<()> {
        let mut changed = Vec::new();
        let text = {
            let mut ports = Vec::new();
            for (i, service) in self.services.iter().enumerate() {
                let endpoints = self.endpoints(&service.spec);
                let ips: Vec<Ipv4Addr> = endpoints.iter().map(|e| e.ip).collect();
                if ips != service.last_endpoints {
                    changed.push((i, ips));
                }
                for port in &service.spec.ports {
                    ports.push(PortRules {
                        namespace: &service.spec.namespace,
                        service: &service.spec.name,
                        cluster_ip: service.spec.cluster_ip,
                        port,
                        endpoints: endpoints
                            .iter()
                            .filter_map(|e| target_port(e, &port.target_port, port.protocol))
                            .collect(),
                        balancing: service.spec.balancing,
                    });
                }
            }
            kube_proxy::render(&ports, &self.blackholes)
        };
        for (i, ips) in changed {
            self.resource_version += 1;
            if let Some(service) = self.services.get_mut(i) {
                service.last_endpoints = ips;
                service.slice_resource_version = self.resource_version;
                service.slice_changed = SystemTime::now();
            }
        }
        let mut cmd = sys::netns_exec(&self.node_netns, sys::command(sys::IPTABLES_RESTORE)?.get_program())?;
        cmd.args(["-w", "5"]);
        let _guard = IPTABLES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sys::run(&mut cmd, Some(&text)).map(drop)
    }

    /// Removes the namespaces that crashed or killed runs of this harness left behind:
    /// those named `smap-e2e-<pid>-...` whose pid is no longer alive. Returns their
    /// names. Runs once per process on the first [`Cluster::new`].
    pub fn sweep_stale() -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for name in sys::netns_list()? {
            let Some(rest) = name.strip_prefix(NETNS_PREFIX) else { continue };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else { continue };
            if pid == 0 || sys::process_exists(pid) {
                continue;
            }
            sys::netns_del(&name)?;
            removed.push(name);
        }
        Ok(removed)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Processes first: a namespace (and its veths and rules) lives on as long as a
        // process is inside it. Pods before the node; errors cannot be returned from
        // drop, and a namespace left over is swept by the next run.
        for netns in self.netns.iter().rev() {
            sys::kill_all_in(netns);
        }
        for cgroup in self.pods.iter().filter_map(|p| p.host_cgroup.as_ref()) {
            let _ = crate::host_network::remove_cgroup(cgroup);
        }
        for netns in self.netns.drain(..).rev() {
            let _ = sys::netns_del(&netns);
        }
    }
}

fn service_ref(state: &ServiceState) -> ServiceRef {
    ServiceRef {
        namespace: state.spec.namespace.clone(),
        name: state.spec.name.clone(),
        cluster_ip: state.spec.cluster_ip,
    }
}

/// The pod port a Service port reaches on this endpoint (None: a named port the pod
/// does not declare, so the pod is no endpoint of that port, as in Kubernetes).
pub(crate) fn target_port(
    endpoint: &Endpoint<'_>,
    target: &TargetPort,
    protocol: crate::spec::Protocol,
) -> Option<SocketAddrV4> {
    let port = match target {
        TargetPort::Number(n) => *n,
        TargetPort::Name(name) => {
            endpoint
                .pod?
                .spec
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|p| p.name.as_deref() == Some(name.as_str()) && p.protocol == protocol)?
                .port
        }
    };
    Some(SocketAddrV4::new(endpoint.ip, port))
}

/// Whether `ip` lies in `cidr` ("a.b.c.d/n").
pub(crate) fn in_cidr(ip: Ipv4Addr, cidr: &str) -> bool {
    let Some((net, len)) = cidr.split_once('/') else { return false };
    let (Ok(net), Ok(len)) = (net.parse::<Ipv4Addr>(), len.parse::<u32>()) else { return false };
    let mask = u32::MAX.checked_shl(32 - len.min(32)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_membership() {
        assert!(in_cidr(Ipv4Addr::new(10, 96, 0, 50), SERVICE_CIDR));
        assert!(in_cidr(Ipv4Addr::new(10, 111, 255, 255), SERVICE_CIDR));
        assert!(!in_cidr(Ipv4Addr::new(10, 112, 0, 1), SERVICE_CIDR));
        assert!(in_cidr(Ipv4Addr::new(10, 244, 9, 9), POD_CIDR));
    }
}
