//! Turns raw kernel events into [`ConnEvent`]s: wall-clock time, client/server
//! orientation, a side for sockets the kernel saw only closing, and interned names.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::sync::Arc;

use smap_ebpf::{flag, kind, side, Event, AF_INET, AF_INET6};
use smap_replay::{ConnEvent, ConnKind, Side};

use crate::clock::Clock;

/// Bound on the remembered listening ports and interned names: past it the set is
/// cleared rather than grown, which only costs some heuristic accuracy.
const MEMORY_BOUND: usize = 65_536;

/// Converts kernel events, remembering what later events need.
#[derive(Debug)]
pub(crate) struct Converter {
    node: Arc<str>,
    clock: Clock,
    ephemeral: RangeInclusive<u16>,
    /// (netns, local port) pairs seen listening or accepting: server ports.
    listening: HashSet<(u32, u16)>,
    /// The same ports, whatever their namespace.
    listening_ports: HashSet<u16>,
    /// The side guessed for each open socket the kernel did not see opening (by
    /// cookie): its first report, progress, end and close must agree on one side, or
    /// the engine would see two connections.
    guessed: HashMap<u64, Side>,
    comms: HashMap<[u8; 16], Arc<str>>,
    empty: Arc<str>,
    /// Sides guessed by the last rule alone (the lower port is the server's).
    pub(crate) sides_by_port_order: u64,
}

impl Converter {
    pub(crate) fn new(node: Arc<str>, clock: Clock, ephemeral: RangeInclusive<u16>) -> Self {
        Self {
            node,
            clock,
            ephemeral,
            listening: HashSet::new(),
            listening_ports: HashSet::new(),
            guessed: HashMap::new(),
            comms: HashMap::new(),
            empty: Arc::from(""),
            sides_by_port_order: 0,
        }
    }

    /// The node name events are stamped with.
    pub(crate) fn node(&self) -> &Arc<str> {
        &self.node
    }

    /// The clock events are stamped with.
    pub(crate) fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The [`ConnEvent`] for a kernel event, or `None` for events that only inform the
    /// converter (a socket started listening) or are not understood.
    pub(crate) fn convert(&mut self, e: &Event) -> Option<ConnEvent> {
        let conn_kind = match e.kind {
            kind::TCP_CONNECT => ConnKind::TcpConnect,
            kind::TCP_ACCEPT => ConnKind::TcpAccept,
            kind::TCP_CLOSE => ConnKind::TcpClose,
            kind::TCP_CONNECT_FAILED => ConnKind::TcpConnectFailed,
            kind::UDP_FLOW => ConnKind::UdpFlow,
            kind::TCP_EXISTING => ConnKind::TcpExisting,
            kind::TCP_PROGRESS => ConnKind::TcpProgress,
            kind::TCP_OPEN_AT_END => ConnKind::TcpOpenAtEnd,
            kind::TCP_LISTEN => {
                self.learn_listening(e.netns, e.sport);
                return None;
            }
            _ => return None,
        };
        let local = (decode_addr(e.family, &e.saddr)?, e.sport);
        let remote = (decode_addr(e.family, &e.daddr)?, e.dport);
        let mut bytes_sent = e.bytes_sent;
        let side = match e.side {
            side::CLIENT => Side::Client,
            side::SERVER => Side::Server,
            _ => {
                let guessed = self.side_of_unknown(e, conn_kind);
                if guessed == Side::Client && e.flags & flag::SYN_UNCERTAIN != 0 {
                    // An active opener's bytes_acked counted its SYN.
                    bytes_sent = bytes_sent.saturating_sub(1);
                }
                guessed
            }
        };
        // Only the kernel's word: a guess taught back would confirm itself.
        if e.side == side::SERVER && conn_kind.protocol() == smap_replay::Protocol::Tcp {
            self.learn_listening(e.netns, e.sport);
        }
        let ((src_ip, src_port), (dst_ip, dst_port)) = match side {
            Side::Client => (local, remote),
            Side::Server => (remote, local),
        };
        Some(ConnEvent {
            time_ns: self.clock.to_wall(e.ts_ns),
            node: Arc::clone(&self.node),
            kind: conn_kind,
            side,
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            pid: e.pid,
            comm: self.comm(&e.comm),
            cgroup_id: e.cgroup_id,
            netns: e.netns,
            socket_id: e.cookie,
            bytes_sent,
            bytes_received: e.bytes_received,
            retransmits: e.retransmits,
            error: e.error,
        })
    }

    /// The side of a socket the kernel did not see opening: guessed once per socket
    /// and kept until it closes.
    fn side_of_unknown(&mut self, e: &Event, conn_kind: ConnKind) -> Side {
        let remembered = match conn_kind {
            ConnKind::TcpClose => self.guessed.remove(&e.cookie),
            _ => self.guessed.get(&e.cookie).copied(),
        };
        if let Some(side) = remembered.filter(|_| e.cookie != 0) {
            return side;
        }
        let side = self.guess_side(e.netns, e.sport, e.dport);
        if e.cookie != 0 && matches!(conn_kind, ConnKind::TcpExisting | ConnKind::TcpProgress) {
            if self.guessed.len() >= MEMORY_BOUND {
                self.guessed.clear();
            }
            self.guessed.insert(e.cookie, side);
        }
        side
    }

    fn learn_listening(&mut self, netns: u32, port: u16) {
        if self.listening.len() >= MEMORY_BOUND {
            self.listening.clear();
            self.listening_ports.clear();
        }
        self.listening.insert((netns, port));
        self.listening_ports.insert(port);
    }

    /// Side of a socket the kernel saw only closing (opened before capture started, or
    /// evicted from the kernel's map), from the listening ports seen so far:
    /// 1. its local port listens in its namespace: server;
    /// 2. the remote port listens in its namespace (loopback), or in any namespace on
    ///    this node (a pod-to-pod call): client;
    /// 3. exactly one of the two ports is in the ephemeral range: that end is the client;
    /// 4. otherwise the lower port is taken as the server's (services use low, fixed
    ///    ports more often than clients do).
    fn guess_side(&mut self, netns: u32, local_port: u16, remote_port: u16) -> Side {
        if self.listening.contains(&(netns, local_port)) {
            return Side::Server;
        }
        if self.listening.contains(&(netns, remote_port)) || self.listening_ports.contains(&remote_port) {
            return Side::Client;
        }
        match (self.ephemeral.contains(&local_port), self.ephemeral.contains(&remote_port)) {
            (true, false) => return Side::Client,
            (false, true) => return Side::Server,
            _ => {}
        }
        self.sides_by_port_order += 1;
        if local_port < remote_port {
            Side::Server
        } else {
            Side::Client
        }
    }

    fn comm(&mut self, raw: &[u8; 16]) -> Arc<str> {
        if raw[0] == 0 {
            return Arc::clone(&self.empty);
        }
        if let Some(c) = self.comms.get(raw) {
            return Arc::clone(c);
        }
        if self.comms.len() >= MEMORY_BOUND {
            self.comms.clear();
        }
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let name: Arc<str> = Arc::from(String::from_utf8_lossy(&raw[..end]).as_ref());
        self.comms.insert(*raw, Arc::clone(&name));
        name
    }
}

/// An address as the kernel stored it; v4-mapped IPv6 (a dual-stack socket talking
/// IPv4) becomes IPv4 so that it matches the pod and service IPs it stands for.
pub(crate) fn decode_addr(family: u16, raw: &[u8; 16]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))),
        AF_INET6 => Some(Ipv6Addr::from(*raw).to_canonical()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests: a panic is the failure report")]

    use super::*;

    fn conv() -> Converter {
        Converter::new(Arc::from("node-a"), Clock::with_offset(1_000), 32768..=60999)
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut raw = [0u8; 16];
        raw[..4].copy_from_slice(&a);
        raw
    }

    fn close_event(side_: u8, sport: u16, dport: u16) -> Event {
        Event {
            ts_ns: 5,
            kind: kind::TCP_CLOSE,
            side: side_,
            family: AF_INET,
            saddr: v4([10, 0, 0, 1]),
            sport,
            daddr: v4([10, 96, 0, 50]),
            dport,
            bytes_sent: 1001,
            bytes_received: 2500,
            netns: 7,
            cookie: 99,
            pid: 42,
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
            ..Event::default()
        }
    }

    #[test]
    fn client_close_keeps_local_as_src() {
        let mut c = conv();
        let mut e = close_event(side::CLIENT, 40000, 80);
        e.bytes_sent = 1000;
        let ev = c.convert(&e).unwrap();
        assert_eq!(ev.time_ns, 1_005);
        assert_eq!(ev.kind, ConnKind::TcpClose);
        assert_eq!(ev.side, Side::Client);
        assert_eq!((ev.src_ip, ev.src_port), ("10.0.0.1".parse().unwrap(), 40000));
        assert_eq!((ev.dst_ip, ev.dst_port), ("10.96.0.50".parse().unwrap(), 80));
        assert_eq!((ev.bytes_sent, ev.bytes_received), (1000, 2500));
        assert_eq!(&*ev.comm, "curl");
        assert_eq!(ev.socket_id, 99);
    }

    #[test]
    fn server_close_swaps_to_client_first() {
        let mut c = conv();
        let mut e = close_event(side::SERVER, 8080, 51000);
        e.daddr = v4([10, 0, 0, 9]);
        let ev = c.convert(&e).unwrap();
        assert_eq!(ev.side, Side::Server);
        assert_eq!((ev.src_ip, ev.src_port), ("10.0.0.9".parse().unwrap(), 51000));
        assert_eq!((ev.dst_ip, ev.dst_port), ("10.0.0.1".parse().unwrap(), 8080));
    }

    #[test]
    fn unknown_side_uses_listening_ports_then_ephemeral_range() {
        let mut c = conv();
        let listen = Event { kind: kind::TCP_LISTEN, netns: 7, sport: 9000, family: AF_INET, ..Event::default() };
        assert!(c.convert(&listen).is_none());

        let mut e = close_event(side::UNKNOWN, 9000, 45000);
        e.flags = flag::SYN_UNCERTAIN;
        let ev = c.convert(&e).unwrap();
        assert_eq!(ev.side, Side::Server);
        assert_eq!(ev.bytes_sent, 1001, "a server's acked bytes never counted a SYN");

        // The other end of that connection: its remote port listens in its namespace.
        let mut e = close_event(side::UNKNOWN, 45000, 9000);
        e.flags = flag::SYN_UNCERTAIN;
        let ev = c.convert(&e).unwrap();
        assert_eq!(ev.side, Side::Client);
        assert_eq!(ev.bytes_sent, 1000, "the client's SYN is taken off");

        // The remote port listens in another namespace of this node: a client.
        let mut e = close_event(side::UNKNOWN, 20000, 9000);
        e.netns = 8;
        assert_eq!(c.convert(&e).unwrap().side, Side::Client);

        // Nothing known: the ephemeral end is the client.
        let ev = c.convert(&close_event(side::UNKNOWN, 5432, 40000)).unwrap();
        assert_eq!(ev.side, Side::Server);
        let ev = c.convert(&close_event(side::UNKNOWN, 40000, 5432)).unwrap();
        assert_eq!(ev.side, Side::Client);

        // Neither port ephemeral nor known: the lower one is the server's, counted.
        assert_eq!(c.sides_by_port_order, 0);
        let ev = c.convert(&close_event(side::UNKNOWN, 5432, 20000)).unwrap();
        assert_eq!(ev.side, Side::Server);
        assert_eq!(c.sides_by_port_order, 1);
    }

    #[test]
    fn an_open_socket_keeps_its_guessed_side_until_it_closes() {
        let mut c = conv();
        // Neither port known nor ephemeral: the lower port is taken as the server's.
        let mut existing = close_event(side::UNKNOWN, 7000, 9000);
        existing.kind = kind::TCP_EXISTING;
        assert_eq!(c.convert(&existing).unwrap().side, Side::Server);
        // Port 9000 is then seen listening here: a fresh guess would say client.
        let listen = Event { kind: kind::TCP_LISTEN, netns: 7, sport: 9000, family: AF_INET, ..Event::default() };
        assert!(c.convert(&listen).is_none());
        let mut progress = existing;
        progress.kind = kind::TCP_PROGRESS;
        assert_eq!(c.convert(&progress).unwrap().side, Side::Server);
        let close = close_event(side::UNKNOWN, 7000, 9000);
        assert_eq!(c.convert(&close).unwrap().side, Side::Server);
        // Closed: forgotten, so the socket's cookie carries no stale side.
        assert_eq!(c.convert(&close).unwrap().side, Side::Client);
    }

    #[test]
    fn v4_mapped_becomes_v4_and_v6_stays() {
        let mapped: Ipv6Addr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(decode_addr(AF_INET6, &mapped.octets()), Some("10.1.2.3".parse().unwrap()));
        let v6: Ipv6Addr = "fd00::1".parse().unwrap();
        assert_eq!(decode_addr(AF_INET6, &v6.octets()), Some(IpAddr::V6(v6)));
        assert_eq!(decode_addr(99, &[0; 16]), None);
    }
}
