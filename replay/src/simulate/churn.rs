//! A busy cluster's day as a stream of events, for soak tests of the live path:
//! long-lived services calling each other over TCP and UDP while their pods are
//! replaced (freed addresses go to other pods later), and preview environments (a
//! namespace with a Service, its pods and EndpointSlice) that come, take traffic and
//! are deleted, each under a name never seen before.
//!
//! Events are made on demand in time order (objects first at equal times), so a day
//! of them never sits in memory, and the generator's own state stays as small as the
//! cluster it plays. Deterministic: the same options give the same events.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use super::objects::{self, SimPod};
use super::SIM_EPOCH_NS;
use crate::event::{ConnEvent, ConnKind, Event, ObjectAction, ObjectKind, Side, TimeNs};
use crate::kubectl::object_event;

/// Freed addresses wait until this many are free before one is handed out again, so
/// an address goes to another service's pod, as a busy node's IPAM does.
const FREE_ADDRESS_RESERVE: usize = 32;
const SECOND: TimeNs = 1_000_000_000;

/// What the churn plays.
#[derive(Clone, Debug)]
pub struct ChurnOptions {
    /// Random seed.
    pub seed: u64,
    /// Event time played.
    pub duration: Duration,
    /// Long-lived services.
    pub services: u32,
    /// Pods of each service (long-lived or preview).
    pub pods_per_service: u32,
    /// New connections (or UDP flows) per second of event time.
    pub connections_per_second: u64,
    /// Share of calls that are UDP flows.
    pub udp_share: f64,
    /// Share of calls that go to an address outside the cluster (one of 254).
    pub external_share: f64,
    /// Pods replaced per hour across the long-lived services.
    pub restarts_per_hour: u32,
    /// Preview environments created per hour.
    pub previews_per_hour: u32,
    /// How long a preview environment lives before it is deleted.
    pub preview_lifetime: Duration,
}

impl Default for ChurnOptions {
    fn default() -> Self {
        ChurnOptions {
            seed: 1,
            duration: Duration::from_secs(24 * 3600),
            services: 20,
            pods_per_service: 3,
            connections_per_second: 50,
            udp_share: 0.1,
            external_share: 0.05,
            restarts_per_hour: 120,
            previews_per_hour: 12,
            preview_lifetime: Duration::from_secs(1800),
        }
    }
}

struct ChurnService {
    namespace: String,
    name: String,
    cluster_ip: Ipv4Addr,
    pods: Vec<SimPod>,
    /// When a preview environment is deleted (never for long-lived services).
    deleted_at: Option<TimeNs>,
}

const PORTS: [u16; 2] = [80, 53];
const TARGET: u16 = 8080;

/// The event stream. See the module docs.
pub struct Churn {
    options: ChurnOptions,
    rng: ChaCha8Rng,
    end: TimeNs,
    /// Pending events by (time, connections after objects, sequence).
    pending: BinaryHeap<Reverse<(TimeNs, u8, u64, Pending)>>,
    seq: u64,
    services: Vec<ChurnService>,
    free_pod_ips: VecDeque<Ipv4Addr>,
    next_pod_ip: u32,
    free_cluster_ips: VecDeque<Ipv4Addr>,
    next_cluster_ip: u32,
    rv: u64,
    serial: u64,
    previews: u64,
    client_port: u16,
    next_call: TimeNs,
    next_restart: TimeNs,
    next_preview: TimeNs,
}

/// An event in the pending heap, ordered by the heap key alone.
struct Pending(Event);

impl PartialEq for Pending {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Churn {
    /// The stream of `options`, starting at [`SIM_EPOCH_NS`] with the long-lived
    /// services listed (snapshot events).
    pub fn new(options: ChurnOptions) -> Self {
        let start = SIM_EPOCH_NS;
        let end = start.saturating_add(i64::try_from(options.duration.as_nanos()).unwrap_or(i64::MAX));
        let mut churn = Churn {
            rng: ChaCha8Rng::seed_from_u64(options.seed),
            end,
            pending: BinaryHeap::new(),
            seq: 0,
            services: Vec::new(),
            free_pod_ips: VecDeque::new(),
            next_pod_ip: 0,
            free_cluster_ips: VecDeque::new(),
            next_cluster_ip: 0,
            rv: 1000,
            serial: 0,
            previews: 0,
            client_port: 32768,
            next_call: start + SECOND,
            next_restart: start + SECOND,
            next_preview: start + SECOND,
            options,
        };
        for n in 0..churn.options.services {
            churn.create_service("prod".to_owned(), format!("svc-{n}"), None, ObjectAction::Snapshot, start);
        }
        churn.next_restart = churn.after(start, churn.options.restarts_per_hour);
        churn.next_preview = churn.after(start, churn.options.previews_per_hour);
        churn
    }

    /// Services alive now (long-lived and preview).
    pub fn services(&self) -> usize {
        self.services.len()
    }

    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.rng.next_u64() % (n.max(1) as u64)).unwrap_or(0)
    }

    /// The time of the next of `per_hour` evenly spread actions after `t`.
    fn after(&self, t: TimeNs, per_hour: u32) -> TimeNs {
        if per_hour == 0 {
            return TimeNs::MAX;
        }
        t + 3600 * SECOND / i64::from(per_hour)
    }

    fn push(&mut self, event: Event) {
        self.seq += 1;
        self.pending.push(Reverse((event.time_ns(), event.rank(), self.seq, Pending(event))));
    }

    fn object(&mut self, kind: ObjectKind, action: ObjectAction, json: &Value, t: TimeNs) {
        // The objects made here always carry the metadata object_event needs.
        if let Ok(event) = object_event(json, kind, action, t) {
            self.push(Event::from(event));
        }
    }

    fn allocate(free: &mut VecDeque<Ipv4Addr>, next: &mut u32, base: [u8; 2]) -> Ipv4Addr {
        if free.len() > FREE_ADDRESS_RESERVE {
            if let Some(ip) = free.pop_front() {
                return ip;
            }
        }
        *next += 1;
        let n = *next;
        Ipv4Addr::new(
            base[0],
            base[1],
            u8::try_from(n / 250 % 250).unwrap_or(0),
            u8::try_from(1 + n % 250).unwrap_or(1),
        )
    }

    fn new_pod(&mut self, namespace: &str, deployment: &str) -> SimPod {
        self.serial += 1;
        let ip = Self::allocate(&mut self.free_pod_ips, &mut self.next_pod_ip, [10, 244]);
        let node = u8::try_from(self.serial % 3).unwrap_or(0) + 1;
        SimPod {
            namespace: namespace.to_owned(),
            name: format!("{deployment}-5d8f-{:05x}", self.serial),
            deployment: deployment.to_owned(),
            hash: "5d8f".to_owned(),
            ip,
            node: (format!("node-{node}"), Ipv4Addr::new(10, 0, 0, node)),
            labels: BTreeMap::from([("app".to_owned(), deployment.to_owned())]),
            image: format!("registry.example/{deployment}:1.0"),
            ports: vec![TARGET],
            ready: true,
            version: None,
            uid: format!("pod-{}", self.serial),
        }
    }

    fn ports() -> Vec<(Option<String>, u16, u16, String)> {
        vec![
            (Some("http".to_owned()), PORTS[0], TARGET, "TCP".to_owned()),
            (Some("dns".to_owned()), PORTS[1], TARGET, "UDP".to_owned()),
        ]
    }

    fn slice(&mut self, index: usize, action: ObjectAction, t: TimeNs) {
        self.rv += 1;
        let service = &self.services[index];
        let pods: Vec<&SimPod> = service.pods.iter().collect();
        let json = objects::endpoint_slice(&service.namespace, &service.name, &pods, &Self::ports(), self.rv, t);
        self.object(ObjectKind::EndpointSlice, action, &json, t);
    }

    fn create_service(
        &mut self,
        namespace: String,
        name: String,
        deleted_at: Option<TimeNs>,
        action: ObjectAction,
        t: TimeNs,
    ) {
        let cluster_ip = Self::allocate(&mut self.free_cluster_ips, &mut self.next_cluster_ip, [10, 96]);
        self.rv += 1;
        let selector = BTreeMap::from([("app".to_owned(), name.clone())]);
        let json =
            objects::service(&namespace, &name, Some(cluster_ip), &Self::ports(), &selector, "ClusterIP", self.rv, t);
        self.object(ObjectKind::Service, action, &json, t);
        let mut pods = Vec::new();
        for _ in 0..self.options.pods_per_service.max(1) {
            let pod = self.new_pod(&namespace, &name);
            self.rv += 1;
            self.object(ObjectKind::Pod, action, &objects::pod(&pod, self.rv, t), t);
            pods.push(pod);
        }
        self.services.push(ChurnService { namespace, name, cluster_ip, pods, deleted_at });
        self.slice(self.services.len() - 1, action, t);
    }

    /// One pod of a long-lived service replaced: the old one deleted (its address
    /// freed), the new one added, the EndpointSlice following each step.
    fn restart(&mut self, t: TimeNs) {
        let long_lived = self.options.services as usize;
        if long_lived == 0 {
            return;
        }
        let index = self.below(long_lived);
        let slot = self.below(self.services[index].pods.len());
        let old = self.services[index].pods.remove(slot);
        self.rv += 1;
        self.object(ObjectKind::Pod, ObjectAction::Deleted, &objects::pod(&old, self.rv, t), t);
        self.slice(index, ObjectAction::Modified, t);
        self.free_pod_ips.push_back(old.ip);
        let (namespace, name) = (self.services[index].namespace.clone(), self.services[index].name.clone());
        let pod = self.new_pod(&namespace, &name);
        self.rv += 1;
        let later = t + SECOND;
        self.object(ObjectKind::Pod, ObjectAction::Added, &objects::pod(&pod, self.rv, later), later);
        self.services[index].pods.push(pod);
        self.slice(index, ObjectAction::Modified, later);
    }

    /// A preview environment ends: its slice, Service and pods deleted.
    fn delete_preview(&mut self, index: usize, t: TimeNs) {
        self.slice(index, ObjectAction::Deleted, t);
        let service = self.services.swap_remove(index);
        self.rv += 1;
        let selector = BTreeMap::from([("app".to_owned(), service.name.clone())]);
        let json = objects::service(
            &service.namespace,
            &service.name,
            Some(service.cluster_ip),
            &Self::ports(),
            &selector,
            "ClusterIP",
            self.rv,
            t,
        );
        self.object(ObjectKind::Service, ObjectAction::Deleted, &json, t);
        for pod in service.pods {
            self.rv += 1;
            self.object(ObjectKind::Pod, ObjectAction::Deleted, &objects::pod(&pod, self.rv, t), t);
            self.free_pod_ips.push_back(pod.ip);
        }
        self.free_cluster_ips.push_back(service.cluster_ip);
    }

    fn conn(&self, kind: ConnKind, side: Side, pod: &SimPod, t: TimeNs) -> ConnEvent {
        objects::conn_event(pod, 0, kind, side, t, self.seq)
    }

    /// One call: a client pod to a Service's ClusterIP (or outside), both ends
    /// reported as the kernel reports them.
    fn call(&mut self, t: TimeNs) {
        let caller = self.below(self.services.len());
        let Some(pods) = self.services.get(caller).map(|s| s.pods.len()) else { return };
        let pod = self.below(pods);
        let Some(client) = self.services[caller].pods.get(pod).cloned() else { return };
        self.client_port = if self.client_port >= 60_999 { 32768 } else { self.client_port + 1 };
        let udp = self.unit() < self.options.udp_share;
        let (request, response) = (80 + self.rng.next_u64() % 4000, 200 + self.rng.next_u64() % 20_000);
        let external = self.unit() < self.options.external_share;
        let (dst_ip, dst_port, server) = if external {
            let host = u8::try_from(1 + self.rng.next_u64() % 254).unwrap_or(1);
            (IpAddr::V4(Ipv4Addr::new(198, 51, 100, host)), 443, None)
        } else {
            let callee = self.below(self.services.len());
            let service = &self.services[callee];
            let Some(pod) = service.pods.get(usize::from(self.client_port) % service.pods.len().max(1)) else { return };
            let port = PORTS[usize::from(udp)];
            (IpAddr::V4(service.cluster_ip), port, Some(pod.clone()))
        };
        let mut client_open =
            self.conn(if udp { ConnKind::UdpFlow } else { ConnKind::TcpConnect }, Side::Client, &client, t);
        (client_open.src_ip, client_open.src_port) = (IpAddr::V4(client.ip), self.client_port);
        (client_open.dst_ip, client_open.dst_port) = (dst_ip, dst_port);
        let server_end = |kind: ConnKind, at: TimeNs, churn: &Churn| {
            server.as_ref().map(|pod| {
                let mut e = churn.conn(kind, Side::Server, pod, at);
                (e.src_ip, e.src_port) = (client_open.src_ip, client_open.src_port);
                (e.dst_ip, e.dst_port) = (IpAddr::V4(pod.ip), TARGET);
                e
            })
        };
        if udp {
            client_open.bytes_sent = request;
            client_open.bytes_received = response;
            let reply = server_end(ConnKind::UdpFlow, t + 40_000, self).map(|mut e| {
                (e.bytes_sent, e.bytes_received) = (response, request);
                e
            });
            self.push(Event::Conn(client_open));
            if let Some(e) = reply {
                self.push(Event::Conn(e));
            }
            return;
        }
        let lasts = 200_000 + i64::try_from(self.rng.next_u64() % 50_000_000).unwrap_or(0);
        let accept = server_end(ConnKind::TcpAccept, t + 60_000, self);
        let server_close = server_end(ConnKind::TcpClose, t + lasts + 30_000, self).map(|mut e| {
            (e.bytes_sent, e.bytes_received) = (response, request);
            e
        });
        let mut client_close = client_open.clone();
        client_close.kind = ConnKind::TcpClose;
        client_close.time_ns = t + lasts;
        (client_close.bytes_sent, client_close.bytes_received) = (request, response);
        self.push(Event::Conn(client_open));
        for e in [accept, Some(client_close), server_close].into_iter().flatten() {
            self.push(Event::Conn(e));
        }
    }

    /// Runs the next action (call, restart, preview created or deleted) due by `end`;
    /// false when none is left.
    fn act(&mut self) -> bool {
        let deletion = self.services.iter().enumerate().filter_map(|(i, s)| s.deleted_at.map(|t| (t, i))).min();
        let next = [self.next_call, self.next_restart, self.next_preview, deletion.map_or(TimeNs::MAX, |(t, _)| t)];
        let t = next.iter().copied().min().unwrap_or(TimeNs::MAX);
        if t > self.end {
            return false;
        }
        if let Some((at, index)) = deletion.filter(|(at, _)| *at == t) {
            self.delete_preview(index, at);
        } else if t == self.next_preview {
            self.previews += 1;
            let lifetime = i64::try_from(self.options.preview_lifetime.as_nanos()).unwrap_or(i64::MAX);
            let namespace = format!("preview-{}", self.previews);
            self.create_service(namespace, "app".to_owned(), Some(t.saturating_add(lifetime)), ObjectAction::Added, t);
            self.next_preview = self.after(t, self.options.previews_per_hour);
        } else if t == self.next_restart {
            self.restart(t);
            self.next_restart = self.after(t, self.options.restarts_per_hour);
        } else {
            self.call(t);
            let gap = 2 * SECOND / i64::try_from(self.options.connections_per_second.max(1)).unwrap_or(1);
            self.next_call = t + 1 + i64::try_from(self.rng.next_u64() % gap.max(1) as u64).unwrap_or(0);
        }
        true
    }

    /// The earliest time a future action can produce an event at.
    fn horizon(&self) -> TimeNs {
        let deletion = self.services.iter().filter_map(|s| s.deleted_at).min().unwrap_or(TimeNs::MAX);
        [self.next_call, self.next_restart, self.next_preview, deletion].into_iter().min().unwrap_or(TimeNs::MAX)
    }
}

impl Iterator for Churn {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            let ready =
                self.pending.peek().is_some_and(|Reverse((t, ..))| *t < self.horizon() || self.horizon() > self.end);
            if ready {
                return self.pending.pop().map(|Reverse((.., Pending(event)))| event);
            }
            if !self.act() {
                return self.pending.pop().map(|Reverse((.., Pending(event)))| event);
            }
        }
    }
}
