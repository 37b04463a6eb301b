//! The simulator: plays a scenario out as a recording (both ends of every connection,
//! failures, UDP flows, externals, pod churn with IP reuse across services) and
//! records the true edges, so tests can check the engine against ground truth.
//!
//! Deterministic: the same scenario, options and seed give the same bytes.

pub mod churn;
mod objects;
pub mod scenario;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use self::objects::SimPod;
pub use self::scenario::{Scenario, ScenarioCall, ScenarioService};
use crate::error::{ReplayError, Result};
use crate::event::{ConnEvent, ConnKind, ObjectAction, ObjectEvent, ObjectKind, Side, TimeNs};
use crate::kubectl::object_event;
use crate::meta::RecordingMeta;
use crate::writer::{LossCounters, RecordingWriter, WriterOptions};

/// 2026-01-01T00:00:00Z: simulated recordings start here so they are reproducible.
pub const SIM_EPOCH_NS: TimeNs = 1_767_225_600_000_000_000;

/// How a scenario is played out.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Random seed.
    pub seed: u64,
    /// Connections (or UDP flows, or failed attempts) to simulate.
    pub connections: u64,
    /// New connections per second of event time.
    pub rate_per_sec: u64,
    /// Churn steps per 1,000 connections; each replaces a pod of two services and
    /// hands each one's IP to the other.
    pub churn_per_1000: f64,
    /// Nodes the pods are spread over.
    pub nodes: u32,
    /// Whether Kubernetes objects go into the recording (false: they only come back
    /// in [`SimOutcome::snapshot`], for `--k8s-from` tests).
    pub embed_objects: bool,
    /// Writer batching and segmenting.
    pub writer: WriterOptions,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            seed: 1,
            connections: 1000,
            rate_per_sec: 1000,
            churn_per_1000: 0.0,
            nodes: 3,
            embed_objects: true,
            writer: WriterOptions::default(),
        }
    }
}

/// The true totals of one edge, keyed like the topology's edges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TruthEdge {
    /// Established connections or flows.
    pub connections: u64,
    /// Failed attempts.
    pub failed: u64,
    /// Payload bytes caller to callee.
    pub bytes_sent: u64,
    /// Payload bytes callee to caller.
    pub bytes_received: u64,
}

/// (source id, destination id, protocol, port).
pub type TruthKey = (String, String, &'static str, u16);

/// What a simulation wrote and what a correct engine must find in it.
#[derive(Clone, Debug)]
pub struct SimOutcome {
    /// The finished recording's metadata.
    pub meta: RecordingMeta,
    /// True edges.
    pub truth: BTreeMap<TruthKey, TruthEdge>,
    /// The Kubernetes objects at the start, as snapshot events.
    pub snapshot: Vec<ObjectEvent>,
    /// Churn steps played (each reused two IPs across services).
    pub churn_steps: u64,
}

struct SimService {
    namespace: String,
    name: String,
    /// `ns/name` of the Service, or of the workload when there is no Service.
    id: String,
    cluster_ip: Option<Ipv4Addr>,
    ports: Vec<(Option<String>, u16, u16, String)>,
    selector: BTreeMap<String, String>,
    service_type: String,
    has_service: bool,
    pods: Vec<usize>,
}

struct Sim<'a> {
    scenario: &'a Scenario,
    options: &'a SimOptions,
    rng: ChaCha8Rng,
    services: Vec<SimService>,
    pods: Vec<Option<SimPod>>,
    free_ips: Vec<Ipv4Addr>,
    next_ip: u32,
    rv: u64,
    pod_serial: u64,
    writer: RecordingWriter,
    pending: BinaryHeap<Reverse<(TimeNs, u64, PendingConn)>>,
    seq: u64,
    truth: BTreeMap<TruthKey, TruthEdge>,
    snapshot: Vec<ObjectEvent>,
    nodes: Vec<(String, Ipv4Addr)>,
    /// Time of the last object event, so the object stream stays in order.
    object_clock: TimeNs,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct PendingConn {
    event: ConnEventOrd,
}

/// ConnEvent with a total order, for the pending heap (time and sequence decide).
#[derive(Clone, Debug, PartialEq, Eq)]
struct ConnEventOrd(ConnEvent);

impl PartialOrd for ConnEventOrd {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ConnEventOrd {
    fn cmp(&self, _other: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// Plays `scenario` into a new recording at `out`.
pub fn simulate(scenario: &Scenario, options: &SimOptions, out: &Path) -> Result<SimOutcome> {
    let mut meta = RecordingMeta::new("simulate", "simulated-cluster", "");
    meta.config = serde_json::json!({
        "scenario": scenario.app,
        "seed": options.seed,
        "connections": options.connections,
        "rate_per_sec": options.rate_per_sec,
        "churn_per_1000": options.churn_per_1000,
        "nodes": options.nodes,
    });
    let writer = RecordingWriter::create(out, meta, options.writer.clone())?;
    let nodes = (0..options.nodes.max(1))
        .map(|n| (format!("node-{}", n + 1), Ipv4Addr::new(10, 0, 0, u8::try_from(n + 1).unwrap_or(250))))
        .collect();
    let mut sim = Sim {
        scenario,
        options,
        rng: ChaCha8Rng::seed_from_u64(options.seed),
        services: Vec::new(),
        pods: Vec::new(),
        free_ips: Vec::new(),
        next_ip: 0,
        rv: 1000,
        pod_serial: 0,
        writer,
        pending: BinaryHeap::new(),
        seq: 0,
        truth: BTreeMap::new(),
        snapshot: Vec::new(),
        nodes,
        object_clock: SIM_EPOCH_NS,
    };
    sim.setup(SIM_EPOCH_NS)?;
    let churn_steps = sim.run()?;
    let Sim { writer, truth, snapshot, .. } = sim;
    let meta = writer.finish(&LossCounters::default())?;
    Ok(SimOutcome { meta, truth, snapshot, churn_steps })
}

impl Sim<'_> {
    fn uniform(&mut self, n: usize) -> usize {
        if n <= 1 {
            return 0;
        }
        usize::try_from(self.rng.next_u64() % (n as u64)).unwrap_or(0)
    }

    fn unit(&mut self) -> f64 {
        // 53 random bits: an f64 in [0, 1).
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.rng.next_u64() % (high - low + 1)
    }

    fn allocate_ip(&mut self) -> Ipv4Addr {
        // Freed IPs are handed out again first, as a node's IPAM does under churn.
        if let Some(ip) = self.free_ips.pop() {
            return ip;
        }
        self.next_ip += 1;
        let n = self.next_ip;
        Ipv4Addr::new(10, 244, u8::try_from(n / 250).unwrap_or(255), u8::try_from(1 + n % 250).unwrap_or(1))
    }

    fn object(&mut self, kind: ObjectKind, action: ObjectAction, object: &Value, t: TimeNs) -> Result<()> {
        let event = object_event(object, kind, action, t).map_err(ReplayError::Scenario)?;
        if action == ObjectAction::Snapshot {
            self.snapshot.push(event.clone());
        }
        if self.options.embed_objects {
            self.writer.write_object(&event)?;
        }
        Ok(())
    }

    fn new_pod(&mut self, service: usize, workload: usize) -> SimPod {
        let spec = &self.scenario.services[service];
        let deployment = spec.workloads.get(workload).cloned().unwrap_or_else(|| spec.name.clone());
        let versions: Vec<&str> = spec.labels.get("version").map(|v| v.split('|').collect()).unwrap_or_default();
        let version = versions.get(workload.min(versions.len().saturating_sub(1))).map(|v| (*v).to_owned());
        let mut labels = spec.labels.clone();
        labels.entry("app".to_owned()).or_insert_with(|| spec.name.clone());
        let mut image = spec.image.clone();
        if let Some(v) = &version {
            labels.insert("version".to_owned(), v.clone());
            if versions.len() > 1 {
                image = image.replace(&versions.join("/"), v);
            }
        }
        let hash = format!("{:x}", 0x5d8f_c000u64 + workload as u64 * 0x111 + service as u64 * 0x1000);
        self.pod_serial += 1;
        let suffix: String = format!("{:05x}", self.pod_serial * 7919 % 0xfffff);
        let ip = self.allocate_ip();
        let node = self.nodes[self.pods.len() % self.nodes.len()].clone();
        let ports = spec.ports.iter().map(|p| p.target_port.unwrap_or(p.port)).collect();
        SimPod {
            namespace: self.services[service].namespace.clone(),
            name: format!("{deployment}-{hash}-{suffix}"),
            uid: format!("pod-{}", self.pod_serial),
            deployment,
            hash,
            ip,
            node,
            labels,
            image,
            ports,
            ready: true,
            version,
        }
    }

    fn setup(&mut self, t: TimeNs) -> Result<()> {
        for (index, (name, ip)) in self.nodes.clone().into_iter().enumerate() {
            self.rv += 1;
            let node = objects::node(&name, ip, self.rv, t - 86_400_000_000_000 - index as i64);
            self.object(ObjectKind::Node, ObjectAction::Snapshot, &node, t)?;
        }
        let mut cluster_ip_serial = 10u32;
        for spec in &self.scenario.services {
            let namespace = spec.namespace.clone().unwrap_or_else(|| self.scenario.default_namespace().to_owned());
            let service_type = spec.service_type.clone().unwrap_or_else(|| "ClusterIP".to_owned());
            let has_service = service_type != "none";
            let headless = service_type == "Headless";
            let cluster_ip = (has_service && !headless).then(|| {
                cluster_ip_serial += 1;
                Ipv4Addr::new(
                    10,
                    96,
                    u8::try_from(cluster_ip_serial / 250).unwrap_or(255),
                    u8::try_from(cluster_ip_serial % 250).unwrap_or(1),
                )
            });
            let workload_name = spec.workloads.first().cloned().unwrap_or_else(|| spec.name.clone());
            self.services.push(SimService {
                id: format!("{namespace}/{}", if has_service { &spec.name } else { &workload_name }),
                namespace,
                name: spec.name.clone(),
                cluster_ip,
                ports: spec
                    .ports
                    .iter()
                    .map(|p| {
                        (
                            p.name.clone(),
                            p.port,
                            p.target_port.unwrap_or(p.port),
                            p.protocol.clone().unwrap_or_else(|| "TCP".to_owned()),
                        )
                    })
                    .collect(),
                selector: spec
                    .selector
                    .clone()
                    .unwrap_or_else(|| BTreeMap::from([("app".to_owned(), spec.name.clone())])),
                service_type: if headless { "ClusterIP".to_owned() } else { service_type },
                has_service,
                pods: Vec::new(),
            });
        }
        for service in 0..self.services.len() {
            let spec = &self.scenario.services[service];
            let workloads = spec.workloads.len().max(1);
            let (replicas, unready) = (spec.replicas as usize, spec.unready as usize);
            for i in 0..replicas {
                let mut pod = self.new_pod(service, i * workloads / replicas);
                pod.ready = i >= unready;
                self.rv += 1;
                let json = objects::pod(&pod, self.rv, t - 3_600_000_000_000);
                self.object(ObjectKind::Pod, ObjectAction::Snapshot, &json, t)?;
                self.services[service].pods.push(self.pods.len());
                self.pods.push(Some(pod));
            }
            if self.services[service].has_service {
                let svc = &self.services[service];
                self.rv += 1;
                let json = objects::service(
                    &svc.namespace,
                    &svc.name,
                    svc.cluster_ip,
                    &svc.ports,
                    &svc.selector,
                    &svc.service_type,
                    self.rv,
                    t - 7_200_000_000_000,
                );
                self.object(ObjectKind::Service, ObjectAction::Snapshot, &json, t)?;
                self.write_slice(service, ObjectAction::Snapshot, t)?;
            }
        }
        Ok(())
    }

    fn write_slice(&mut self, service: usize, action: ObjectAction, t: TimeNs) -> Result<()> {
        let svc = &self.services[service];
        let pods: Vec<&SimPod> = svc.pods.iter().filter_map(|i| self.pods[*i].as_ref()).collect();
        let json =
            objects::endpoint_slice(&svc.namespace, &svc.name, &pods, &svc.ports, self.rv + 1, t - 3_600_000_000_000);
        self.rv += 1;
        self.object(ObjectKind::EndpointSlice, action, &json, t)
    }

    fn run(&mut self) -> Result<u64> {
        let calls = &self.scenario.calls;
        if calls.is_empty() {
            self.flush(TimeNs::MAX)?;
            return Ok(0);
        }
        let total_weight: f64 = calls.iter().map(|c| c.weight.max(0.0)).sum();
        let mean_gap = 1_000_000_000 / self.options.rate_per_sec.max(1);
        let mut t = SIM_EPOCH_NS + 1_000_000;
        let mut churn_credit = 0.0;
        let mut churn_steps = 0;
        for n in 0..self.options.connections {
            t += i64::try_from(self.between(0, 2 * mean_gap)).unwrap_or(0);
            self.flush(t)?;
            churn_credit += self.options.churn_per_1000 / 1000.0;
            while churn_credit >= 1.0 {
                churn_credit -= 1.0;
                if self.churn(t)? {
                    churn_steps += 1;
                    // New connections start once the replacement pods exist.
                    t = t.max(self.object_clock);
                }
            }
            let mut pick = self.unit() * total_weight;
            let mut call_index = calls.len() - 1;
            for (i, call) in calls.iter().enumerate() {
                pick -= call.weight.max(0.0);
                if pick < 0.0 {
                    call_index = i;
                    break;
                }
            }
            self.connection(&calls[call_index], n, t)?;
        }
        self.flush(TimeNs::MAX)?;
        Ok(churn_steps)
    }

    fn flush(&mut self, until: TimeNs) -> Result<()> {
        while let Some(Reverse((time, _, _))) = self.pending.peek() {
            if *time > until {
                break;
            }
            if let Some(Reverse((_, _, pending))) = self.pending.pop() {
                self.writer.write_conn(&pending.event.0)?;
            }
        }
        Ok(())
    }

    fn queue(&mut self, event: ConnEvent) {
        self.seq += 1;
        self.pending.push(Reverse((event.time_ns, self.seq, PendingConn { event: ConnEventOrd(event) })));
    }

    fn conn_event(&self, pod: &SimPod, pod_index: usize, kind: ConnKind, side: Side, t: TimeNs) -> ConnEvent {
        let index = u32::try_from(pod_index).unwrap_or(0);
        objects::conn_event(pod, index, kind, side, t, self.seq * 2 + u64::from(side == Side::Server))
    }

    fn connection(&mut self, call: &ScenarioCall, n: u64, t: TimeNs) -> Result<()> {
        let Some(from) = self.services.iter().position(|s| s.name == call.from) else {
            return Ok(());
        };
        let callers: Vec<usize> = self.services[from]
            .pods
            .iter()
            .copied()
            .filter(|i| {
                let version = self.pods[*i].as_ref().and_then(|p| p.version.as_deref());
                call.from_versions.as_ref().is_none_or(|vs| version.is_some_and(|v| vs.iter().any(|x| x == v)))
            })
            .collect();
        if callers.is_empty() {
            return Ok(());
        }
        let caller_index = callers[self.uniform(callers.len())];
        let Some(caller) = self.pods[caller_index].clone() else { return Ok(()) };
        let client_port = 32768 + u16::try_from(n % 28_000).unwrap_or(0);
        let udp = call.transport.as_deref() == Some("udp");
        let request = self.between(80, 4000);
        let response = self.between(200, 20_000);
        let failed = self.unit() < call.failure_rate;

        // Destination as the client dials it, and the pod that answers.
        let (dst_ip, dst_port, destination_id, truth_port, server) =
            if let Ok(addr) = call.to.parse::<std::net::SocketAddr>() {
                let id = format!("external/{addr}");
                (addr.ip(), addr.port(), id, addr.port(), None)
            } else {
                let Some(to) = self.services.iter().position(|s| s.name == call.to) else { return Ok(()) };
                let svc = &self.services[to];
                let target = svc.ports.iter().find(|p| p.1 == call.port).map_or(call.port, |p| p.2);
                let count = svc.pods.len();
                if count == 0 {
                    return Ok(());
                }
                let slot = self.uniform(count);
                let server_index = self.services[to].pods[slot];
                let svc = &self.services[to];
                let Some(server) = self.pods[server_index].clone() else { return Ok(()) };
                let (ip, port) = match svc.cluster_ip {
                    Some(ip) if !call.direct => (IpAddr::V4(ip), call.port),
                    _ => (IpAddr::V4(server.ip), target),
                };
                (ip, port, svc.id.clone(), call.port, Some((server_index, server, target)))
            };
        let source_id = self.services[from].id.clone();
        let protocol = if udp { "udp" } else { "tcp" };
        let mut client = self.conn_event(&caller, caller_index, ConnKind::TcpConnect, Side::Client, t);
        let truth = self.truth.entry((source_id, destination_id, protocol, truth_port)).or_default();
        client.src_ip = IpAddr::V4(caller.ip);
        client.src_port = client_port;
        client.dst_ip = dst_ip;
        client.dst_port = dst_port;
        if failed && !udp {
            truth.failed += 1;
            client.kind = ConnKind::TcpConnectFailed;
            client.error = 111;
            self.queue(client);
            return Ok(());
        }
        truth.connections += 1;
        truth.bytes_sent += request;
        truth.bytes_received += response;
        let duration = i64::try_from(self.between(200_000, 50_000_000)).unwrap_or(0);
        let server_event = |sim: &Sim<'_>, kind: ConnKind, at: TimeNs| {
            server.as_ref().map(|(index, pod, target)| {
                let mut e = sim.conn_event(pod, *index, kind, Side::Server, at);
                e.src_ip = IpAddr::V4(caller.ip);
                e.src_port = client_port;
                e.dst_ip = IpAddr::V4(pod.ip);
                e.dst_port = *target;
                e
            })
        };
        if udp {
            client.kind = ConnKind::UdpFlow;
            client.bytes_sent = request;
            client.bytes_received = response;
            let server_flow = server_event(self, ConnKind::UdpFlow, t + 40_000).map(|mut e| {
                e.bytes_sent = response;
                e.bytes_received = request;
                e
            });
            self.queue(client);
            if let Some(e) = server_flow {
                self.queue(e);
            }
            return Ok(());
        }
        let accept = server_event(self, ConnKind::TcpAccept, t + 60_000);
        let server_close = server_event(self, ConnKind::TcpClose, t + duration + 30_000).map(|mut e| {
            e.bytes_sent = response;
            e.bytes_received = request;
            e
        });
        let mut client_close = client.clone();
        client_close.kind = ConnKind::TcpClose;
        client_close.time_ns = t + duration;
        client_close.bytes_sent = request;
        client_close.bytes_received = response;
        self.queue(client);
        for e in [accept, Some(client_close), server_close].into_iter().flatten() {
            self.queue(e);
        }
        Ok(())
    }

    /// Replaces one pod of each of two services, each replacement getting the other's
    /// old IP: the IP-reuse case attribution must get right.
    fn churn(&mut self, t: TimeNs) -> Result<bool> {
        let candidates: Vec<usize> = (0..self.services.len()).filter(|s| !self.services[*s].pods.is_empty()).collect();
        if candidates.len() < 2 {
            return Ok(false);
        }
        let a = candidates[self.uniform(candidates.len())];
        let mut b = candidates[self.uniform(candidates.len())];
        if a == b {
            b = candidates[(candidates.iter().position(|c| *c == a).unwrap_or(0) + 1) % candidates.len()];
        }
        let mut step = t.max(self.object_clock + 1000);
        let mut removed = Vec::new();
        for service in [a, b] {
            let slot = self.uniform(self.services[service].pods.len());
            let pod_index = self.services[service].pods.remove(slot);
            let Some(pod) = self.pods[pod_index].take() else { continue };
            self.rv += 1;
            let json = objects::pod(&pod, self.rv, t - 3_600_000_000_000);
            self.object(ObjectKind::Pod, ObjectAction::Deleted, &json, step)?;
            step += 1000;
            if self.services[service].has_service {
                self.write_slice(service, ObjectAction::Modified, step)?;
                step += 1000;
            }
            self.free_ips.push(pod.ip);
            removed.push((service, pod));
        }
        // Freed IPs are reused last-in first-out: b's old IP goes to a's replacement,
        // a's old IP to b's.
        for (service, old) in removed {
            let workload =
                self.scenario.services[service].workloads.iter().position(|w| *w == old.deployment).unwrap_or(0);
            let pod = self.new_pod(service, workload);
            self.rv += 1;
            let json = objects::pod(&pod, self.rv, step);
            self.object(ObjectKind::Pod, ObjectAction::Added, &json, step)?;
            step += 1000;
            self.services[service].pods.push(self.pods.len());
            self.pods.push(Some(pod));
            if self.services[service].has_service {
                self.write_slice(service, ObjectAction::Modified, step)?;
                step += 1000;
            }
        }
        self.object_clock = step;
        Ok(true)
    }
}
