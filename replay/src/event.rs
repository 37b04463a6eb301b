//! The event model: what a recording holds and what the engine folds.
//!
//! Three kinds of events share one timeline (nanoseconds since the Unix epoch):
//! connection events as the kernel saw them, DNS answers as they were delivered to
//! the clients that asked, and Kubernetes object events as the API returned them. All
//! are kept raw: attribution to services happens in the engine, so a recording can be
//! rebuilt with newer rules.

use std::net::IpAddr;
use std::sync::Arc;

/// Event time: nanoseconds since the Unix epoch.
pub type TimeNs = i64;

/// What a connection event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum ConnKind {
    /// A TCP connect() that reached ESTABLISHED, seen on the client.
    TcpConnect,
    /// An accept() that returned a socket, seen on the server.
    TcpAccept,
    /// A TCP socket closed; carries the payload bytes of its whole life.
    TcpClose,
    /// A TCP connect() that never reached ESTABLISHED (refused, timed out, unreachable).
    TcpConnectFailed,
    /// A UDP flow (datagrams between two endpoints), aggregated over a period.
    UdpFlow,
    /// An established TCP connection that was not seen opening (it was open before the
    /// capture started), found on its first bytes or by the enumeration at start.
    /// Carries the socket's payload bytes so far, which the window does not count.
    TcpExisting,
    /// An open TCP connection moved bytes since its last report; carries the socket's
    /// payload bytes so far.
    TcpProgress,
    /// A TCP connection still open when the capture stopped; carries the socket's
    /// payload bytes so far.
    TcpOpenAtEnd,
}

impl ConnKind {
    /// The name stored in recordings.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnKind::TcpConnect => "tcp_connect",
            ConnKind::TcpAccept => "tcp_accept",
            ConnKind::TcpClose => "tcp_close",
            ConnKind::TcpConnectFailed => "tcp_connect_failed",
            ConnKind::UdpFlow => "udp_flow",
            ConnKind::TcpExisting => "tcp_existing",
            ConnKind::TcpProgress => "tcp_progress",
            ConnKind::TcpOpenAtEnd => "tcp_open_at_end",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tcp_connect" => ConnKind::TcpConnect,
            "tcp_accept" => ConnKind::TcpAccept,
            "tcp_close" => ConnKind::TcpClose,
            "tcp_connect_failed" => ConnKind::TcpConnectFailed,
            "udp_flow" => ConnKind::UdpFlow,
            "tcp_existing" => ConnKind::TcpExisting,
            "tcp_progress" => ConnKind::TcpProgress,
            "tcp_open_at_end" => ConnKind::TcpOpenAtEnd,
            _ => return None,
        })
    }

    /// The transport protocol of this kind.
    pub fn protocol(self) -> Protocol {
        match self {
            ConnKind::UdpFlow => Protocol::Udp,
            _ => Protocol::Tcp,
        }
    }
}

/// Transport protocol of an edge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Lower-case name, as written in topologies.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// Which end of a connection the reporting socket is.
///
/// `src` is always the connecting (client) end and `dst` the listening (server) end,
/// whichever socket reported the event; `side` says which of the two reported it, so
/// `bytes_sent` can be turned into client-to-server bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Side {
    /// The socket that called connect() (or sent the first datagram).
    Client,
    /// The socket returned by accept() (or that received the first datagram).
    Server,
}

impl Side {
    /// The name stored in recordings.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client" => Some(Side::Client),
            "server" => Some(Side::Server),
            _ => None,
        }
    }
}

/// One connection event as a socket saw it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConnEvent {
    /// Event time.
    pub time_ns: TimeNs,
    /// Node (host) the event was observed on.
    pub node: Arc<str>,
    /// What happened.
    pub kind: ConnKind,
    /// Which end reported it.
    pub side: Side,
    /// Client address as the reporting socket saw it.
    pub src_ip: IpAddr,
    /// Client port.
    pub src_port: u16,
    /// Server address as the reporting socket saw it: for a client that dialed a
    /// Service this is the ClusterIP, for the server its own pod IP.
    pub dst_ip: IpAddr,
    /// Server port as the reporting socket saw it.
    pub dst_port: u16,
    /// Process id (thread-group id) of the reporting process, 0 if unknown.
    pub pid: u32,
    /// Process name (comm) of the reporting process, empty if unknown.
    pub comm: Arc<str>,
    /// cgroup v2 id of the reporting process.
    pub cgroup_id: u64,
    /// Network-namespace inode of the reporting socket.
    pub netns: u32,
    /// Per-socket id (socket cookie) joining open and close of the same socket.
    pub socket_id: u64,
    /// Payload bytes this socket sent: over its whole life for a close, so far for
    /// the reports of open connections (existing, progress, open at end).
    pub bytes_sent: u64,
    /// Payload bytes this socket received, counted as `bytes_sent` is.
    pub bytes_received: u64,
    /// TCP retransmitted segments.
    pub retransmits: u32,
    /// For failed connects, the errno (ECONNREFUSED, ETIMEDOUT...); for closes of
    /// connections aborted without the FIN exchange, why (ECONNRESET...); else 0.
    pub error: u16,
}

/// A process name (Linux's `comm`: at most 15 bytes), held inline so [`ConnFacts`]
/// stays small and `Copy`. Longer names are cut at a character boundary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessName([u8; 16]);

impl ProcessName {
    /// The name, cut to 16 bytes.
    pub fn new(name: &str) -> Self {
        let mut end = name.len().min(16);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let mut bytes = [0u8; 16];
        bytes[..end].copy_from_slice(&name.as_bytes()[..end]);
        ProcessName(bytes)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
        // Built from a &str cut at a character boundary: always UTF-8.
        std::str::from_utf8(&self.0[..end]).unwrap_or_default()
    }

    /// Whether no name is known.
    pub fn is_empty(&self) -> bool {
        self.0[0] == 0
    }
}

/// The fields of a connection event that attribution needs: what the engine folds.
/// Small and `Copy`, so a replay that only builds a topology reads and moves nothing
/// else (no node name, no socket ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnFacts {
    /// Event time.
    pub time_ns: TimeNs,
    /// What happened.
    pub kind: ConnKind,
    /// Which end reported it.
    pub side: Side,
    /// Client address as the reporting socket saw it.
    pub src_ip: IpAddr,
    /// Client port.
    pub src_port: u16,
    /// Server address as the reporting socket saw it.
    pub dst_ip: IpAddr,
    /// Server port as the reporting socket saw it.
    pub dst_port: u16,
    /// Payload bytes the reporting socket sent.
    pub bytes_sent: u64,
    /// Payload bytes the reporting socket received.
    pub bytes_received: u64,
    /// TCP segments the reporting socket retransmitted (at close).
    pub retransmits: u32,
    /// For failed connects and aborted closes, the errno; else 0.
    pub error: u16,
    /// The reporting process's name, empty if unknown.
    pub comm: ProcessName,
    /// cgroup v2 id of the reporting process (0 if unknown): with the recording's
    /// [`PodCgroup`]s, which pod it ran in.
    pub cgroup_id: u64,
}

/// A connection event, whole or reduced to its [`ConnFacts`]: what the engine and
/// the merge accept.
pub trait ConnRecord {
    /// The facts the engine folds.
    fn facts(&self) -> ConnFacts;
}

impl ConnRecord for ConnEvent {
    fn facts(&self) -> ConnFacts {
        ConnFacts {
            time_ns: self.time_ns,
            kind: self.kind,
            side: self.side,
            src_ip: self.src_ip,
            src_port: self.src_port,
            dst_ip: self.dst_ip,
            dst_port: self.dst_port,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            retransmits: self.retransmits,
            error: self.error,
            comm: ProcessName::new(&self.comm),
            cgroup_id: self.cgroup_id,
        }
    }
}

impl ConnRecord for ConnFacts {
    fn facts(&self) -> ConnFacts {
        *self
    }
}

/// Kubernetes object kinds a recording carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum ObjectKind {
    /// core/v1 Pod.
    Pod,
    /// core/v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// core/v1 Node.
    Node,
    /// core/v1 Namespace.
    Namespace,
    /// networking.k8s.io/v1 Ingress (its rules label an ingress controller's edges).
    Ingress,
    /// networking.k8s.io/v1 NetworkPolicy (recorded for later analysis; the engine ignores it).
    NetworkPolicy,
}

impl ObjectKind {
    /// The Kubernetes `kind` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Pod => "Pod",
            ObjectKind::Service => "Service",
            ObjectKind::EndpointSlice => "EndpointSlice",
            ObjectKind::Node => "Node",
            ObjectKind::Namespace => "Namespace",
            ObjectKind::Ingress => "Ingress",
            ObjectKind::NetworkPolicy => "NetworkPolicy",
        }
    }

    /// Parses a Kubernetes `kind` string.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Pod" => ObjectKind::Pod,
            "Service" => ObjectKind::Service,
            "EndpointSlice" => ObjectKind::EndpointSlice,
            "Node" => ObjectKind::Node,
            "Namespace" => ObjectKind::Namespace,
            "Ingress" => ObjectKind::Ingress,
            "NetworkPolicy" => ObjectKind::NetworkPolicy,
            _ => return None,
        })
    }
}

/// What happened to a Kubernetes object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum ObjectAction {
    /// Part of an initial list (the state when watching began).
    Snapshot,
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Deleted.
    Deleted,
}

impl ObjectAction {
    /// The name stored in recordings.
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectAction::Snapshot => "snapshot",
            ObjectAction::Added => "added",
            ObjectAction::Modified => "modified",
            ObjectAction::Deleted => "deleted",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "snapshot" => ObjectAction::Snapshot,
            "added" => ObjectAction::Added,
            "modified" => ObjectAction::Modified,
            "deleted" => ObjectAction::Deleted,
            _ => return None,
        })
    }
}

/// One Kubernetes object event, with the object JSON exactly as the API returned it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectEvent {
    /// Event time.
    pub time_ns: TimeNs,
    /// Object kind.
    pub kind: ObjectKind,
    /// What happened.
    pub action: ObjectAction,
    /// metadata.uid.
    pub uid: String,
    /// metadata.namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// metadata.name.
    pub name: String,
    /// metadata.resourceVersion.
    pub resource_version: String,
    /// The object as JSON.
    pub object: String,
}

/// One address a DNS reply gave a client: the name it asked for, resolved. A reply
/// with several addresses is several answers, one per address.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsAnswer {
    /// When the reply reached the client's socket.
    pub time_ns: TimeNs,
    /// Node (host) the reply was observed on.
    pub node: Arc<str>,
    /// Address the reply was delivered to: the client that asked (a pod's IP).
    pub client_ip: IpAddr,
    /// Client port the reply was delivered to.
    pub client_port: u16,
    /// Address the reply came from: the DNS server as the client dialed it (for a pod,
    /// usually the cluster DNS Service's ClusterIP).
    pub server_ip: IpAddr,
    /// Socket cookie of the receiving socket: joins the answer to the client's UDP flow.
    pub socket_id: u64,
    /// The name the client asked for (the question), lower case, without the final dot.
    pub query: Arc<str>,
    /// The CNAMEs followed from the question to `address`, in order, comma-separated;
    /// empty when the question itself had the address.
    pub cnames: Arc<str>,
    /// The address the name resolved to.
    pub address: IpAddr,
    /// The record's TTL in seconds, as the server gave it.
    pub ttl_s: u32,
}

/// A pod's cgroup, as the capture found it when one of its processes first reported
/// a connection: what ties a hostNetwork pod's traffic, which carries the node's own
/// address, to the pod.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodCgroup {
    /// When the cgroup was first seen.
    pub time_ns: TimeNs,
    /// Node (host) the cgroup is on: cgroup ids are only unique per host.
    pub node: Arc<str>,
    /// The cgroup v2 id (the inode of its directory), as connection events carry it.
    pub cgroup_id: u64,
    /// Its path below the cgroup2 root (`/kubepods.slice/.../cri-containerd-<id>.scope`).
    pub path: Arc<str>,
}

impl PodCgroup {
    /// The UID of the pod the cgroup belongs to (see [`crate::cgroup::pod_uid`]).
    pub fn pod_uid(&self) -> Option<String> {
        crate::cgroup::pod_uid(&self.path)
    }
}

/// Any event on a recording's timeline; connection events whole ([`ConnEvent`], the
/// default) or as [`ConnFacts`] when only a topology is wanted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event<C = ConnEvent> {
    /// A connection event.
    Conn(C),
    /// A Kubernetes object event (boxed: it is rare and large, and events are moved
    /// through every stage of a replay).
    Object(Box<ObjectEvent>),
    /// A DNS answer (boxed for the same reason).
    Dns(Box<DnsAnswer>),
    /// A pod's cgroup (boxed for the same reason).
    Cgroup(Box<PodCgroup>),
}

impl<C> From<PodCgroup> for Event<C> {
    fn from(cgroup: PodCgroup) -> Self {
        Event::Cgroup(Box::new(cgroup))
    }
}

impl<C> From<DnsAnswer> for Event<C> {
    fn from(answer: DnsAnswer) -> Self {
        Event::Dns(Box::new(answer))
    }
}

impl<C> From<ObjectEvent> for Event<C> {
    fn from(object: ObjectEvent) -> Self {
        Event::Object(Box::new(object))
    }
}

impl<C: ConnRecord> Event<C> {
    /// The event's time.
    pub fn time_ns(&self) -> TimeNs {
        match self {
            Event::Conn(c) => c.facts().time_ns,
            Event::Object(o) => o.time_ns,
            Event::Dns(d) => d.time_ns,
            Event::Cgroup(c) => c.time_ns,
        }
    }

    /// Where the event goes among events of the same time: Kubernetes state first,
    /// then the pods processes run in and the names clients resolved, then the
    /// traffic they explain. The one ordering rule, live and in replay.
    pub fn rank(&self) -> u8 {
        match self {
            Event::Object(_) => 0,
            Event::Cgroup(_) => 1,
            Event::Dns(_) => 2,
            Event::Conn(_) => 3,
        }
    }
}
