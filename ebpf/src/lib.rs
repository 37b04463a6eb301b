//! smap's kernel programs as a prebuilt BPF object, and the Rust mirror of their events.
//!
//! The programs are C with CO-RE (`src/smap.bpf.c`), compiled by `ebpf/build.sh` into
//! the committed `smap.bpf.o`, which [`object`] returns. This crate is the only place
//! the kernel's layouts are spelled in Rust: [`Event`] mirrors `struct smap_event`,
//! [`DnsReply`] `struct smap_dns` and [`UdpFlowKey`] `struct smap_udp_key` of
//! `src/smap.h`, [`ConnState`] the `conns` map value of `src/smap.bpf.c`. The tests read the object's BTF to check every field
//! offset against what clang compiled, and `smap.h` asserts the sizes on the C side.
//!
//! With the `user` feature the structs implement `aya::Pod`, so the loader can read
//! them from maps.
#![no_std]

#[cfg(test)]
extern crate std;

/// Map names in the object.
pub mod maps {
    /// Ring buffer of [`Event`](crate::Event)s and [`DnsReply`](crate::DnsReply)s,
    /// told apart by their length; its size is overridable (bytes, a power of two
    /// multiple of the page size).
    pub const EVENTS: &str = "events";
    /// LRU hash of TCP sockets seen opening (max entries = max_connections).
    pub const CONNS: &str = "conns";
    /// LRU hash of UDP flows, [`UdpFlowKey`](crate::UdpFlowKey) to
    /// [`Event`](crate::Event) (max entries = max_connections).
    pub const UDP_FLOWS: &str = "udp_flows";
    /// Per-CPU array of `u64` counters indexed by [`counter`](crate::counter).
    pub const COUNTERS: &str = "counters";
}

/// Program names in the object, with where each attaches.
pub mod programs {
    /// `tp_btf/inet_sock_set_state`: TCP connect, close, failed connect, listen.
    pub const INET_SOCK_SET_STATE: &str = "on_inet_sock_set_state";
    /// `tp_btf/inet_sock_set_state` too: wakes the reader once
    /// [`WAKEUP_BYTES`](crate::globals::WAKEUP_BYTES) are pending, by writing a
    /// [`WAKEUP_MARKER_LEN`](crate::WAKEUP_MARKER_LEN)-byte record.
    pub const WAKE_READER: &str = "wake_reader";
    /// `tracepoint/syscalls/sys_exit_accept4`: server side of a TCP connection.
    pub const SYS_EXIT_ACCEPT4: &str = "on_sys_exit_accept4";
    /// `tracepoint/syscalls/sys_exit_accept`: same, for the older syscall.
    pub const SYS_EXIT_ACCEPT: &str = "on_sys_exit_accept";
    /// `cgroup/connect4`: connected UDP sockets (IPv4).
    pub const CONNECT4: &str = "on_connect4";
    /// `cgroup/connect6`: connected UDP sockets (IPv6).
    pub const CONNECT6: &str = "on_connect6";
    /// `cgroup/sendmsg4`: unconnected UDP sends (IPv4).
    pub const SENDMSG4: &str = "on_sendmsg4";
    /// `cgroup/sendmsg6`: unconnected UDP sends (IPv6).
    pub const SENDMSG6: &str = "on_sendmsg6";
    /// `cgroup/recvmsg4`: UDP receives that ask for the peer address (IPv4).
    pub const RECVMSG4: &str = "on_recvmsg4";
    /// `cgroup/recvmsg6`: UDP receives that ask for the peer address (IPv6).
    pub const RECVMSG6: &str = "on_recvmsg6";
    /// `tp_btf/sock_send_length` (Linux 6.4+): UDP bytes sent.
    pub const SOCK_SEND_LENGTH: &str = "on_sock_send_length";
    /// `tp_btf/sock_recv_length` (Linux 6.4+): UDP bytes received.
    pub const SOCK_RECV_LENGTH: &str = "on_sock_recv_length";
    /// `fentry/ip_send_skb`: UDP datagrams sent over IPv4, with their addresses.
    pub const IP_SEND_SKB: &str = "on_ip_send_skb";
    /// `fentry/ip6_send_skb`: UDP datagrams sent over IPv6, with their addresses.
    pub const IP6_SEND_SKB: &str = "on_ip6_send_skb";
    /// `fentry/skb_consume_udp`: UDP datagrams handed to the application, with their
    /// addresses.
    pub const SKB_CONSUME_UDP: &str = "on_skb_consume_udp";
    /// `tp_btf/tcp_probe`: every segment an established TCP socket receives; finds
    /// connections open before capture and reports progress.
    pub const TCP_PROBE: &str = "on_tcp_probe";
    /// `tp_btf/tcp_rcv_space_adjust`: every TCP read, in the reading task; the same as
    /// [`TCP_PROBE`], and the owner of a socket found by it.
    pub const TCP_RCV_SPACE_ADJUST: &str = "on_tcp_rcv_space_adjust";
    /// `iter/tcp`: the TCP sockets of the reading task's network namespace, as
    /// [`Event`](crate::Event) records (listeners and connections not yet known).
    pub const ITER_TCP: &str = "iter_tcp";
    /// `cgroup_skb/ingress`: UDP replies from port 53 delivered to a socket, as
    /// [`DnsReply`](crate::DnsReply) records.
    pub const DNS_REPLY: &str = "on_dns_reply";
}

/// Global variables of the object that the loader may override before loading.
pub mod globals {
    /// `u64`: the reader is woken only once this many bytes are pending (default 64 KiB).
    pub const WAKEUP_BYTES: &str = "wakeup_bytes";
    /// `u64`: an open connection that moved bytes is reported again at most this often,
    /// in nanoseconds (default 10 s).
    pub const PROGRESS_NS: &str = "progress_ns";
}

/// [`Event::kind`] values.
pub mod kind {
    /// A connect() reached ESTABLISHED (client side).
    pub const TCP_CONNECT: u8 = 1;
    /// accept() returned a connection (server side).
    pub const TCP_ACCEPT: u8 = 2;
    /// A connected socket closed; carries payload bytes and retransmits.
    pub const TCP_CLOSE: u8 = 3;
    /// A connect() went from SYN_SENT to CLOSE; carries `error`.
    pub const TCP_CONNECT_FAILED: u8 = 4;
    /// A UDP flow, read from the `udp_flows` map (never from the ring buffer).
    pub const UDP_FLOW: u8 = 5;
    /// A socket started listening on (netns, local address, port); not a connection.
    pub const TCP_LISTEN: u8 = 6;
    /// An established connection not seen opening (open before capture), found on its
    /// first bytes or by the enumeration; carries its byte counters so far. Once per
    /// socket.
    pub const TCP_EXISTING: u8 = 7;
    /// An open connection moved bytes since its last report; carries its byte counters
    /// so far. At most once per [`PROGRESS_NS`](crate::globals::PROGRESS_NS).
    pub const TCP_PROGRESS: u8 = 8;
    /// A connection still open when the capture stopped; made by user space from the
    /// `conns` map ([`ConnState::open_at_end`](crate::ConnState::open_at_end)).
    pub const TCP_OPEN_AT_END: u8 = 9;
}

/// [`Event::side`] values.
pub mod side {
    /// The kernel did not see the socket open (it was opened before capture).
    pub const UNKNOWN: u8 = 0;
    /// The socket called connect() (UDP: its first datagram was sent, or it connected).
    pub const CLIENT: u8 = 1;
    /// The socket was accepted (UDP: its first datagram was received).
    pub const SERVER: u8 = 2;
}

/// [`Event::flags`] bits.
pub mod flag {
    /// `bytes_sent` may still count the SYN (1 byte): the side was unknown, and only an
    /// active opener's acked bytes include its SYN. Subtract 1 if the socket turns out to
    /// be the client.
    pub const SYN_UNCERTAIN: u8 = 1 << 0;
    /// UDP: `bytes_*` were counted (the `sock_*_length` tracepoints are attached);
    /// without it only datagrams were counted.
    pub const UDP_BYTES: u8 = 1 << 1;
}

/// Indices of the per-CPU `counters` map.
pub mod counter {
    /// `bpf_ringbuf_reserve` failed: the event was lost.
    pub const RINGBUF_DROPS: u32 = 0;
    /// Entries created in `conns`.
    pub const CONN_INSERTS: u32 = 1;
    /// Entries deleted from `conns` by the programs; inserts - deletes - live entries
    /// = entries the LRU evicted.
    pub const CONN_DELETES: u32 = 2;
    /// TCP closes of sockets absent from `conns` (opened before capture, or evicted).
    pub const CLOSE_UNTRACKED: u32 = 3;
    /// Connects that reached ESTABLISHED without their connect() entry.
    pub const CONNECT_UNTRACKED: u32 = 4;
    /// accept()s of sockets absent from `conns`.
    pub const ACCEPT_UNTRACKED: u32 = 5;
    /// Entries created in `udp_flows`.
    pub const UDP_FLOW_INSERTS: u32 = 6;
    /// A map update failed for another reason than an LRU eviction.
    pub const MAP_FULL: u32 = 7;
    /// Open connections found on their first bytes (not by the enumeration).
    pub const TCP_EXISTING: u32 = 8;
    /// Progress reports written.
    pub const TCP_PROGRESS: u32 = 9;
    /// DNS replies copied to the ring buffer.
    pub const DNS_REPLIES: u32 = 10;
    /// DNS replies without an answer (an error, NODATA), not copied.
    pub const DNS_SKIPPED: u32 = 11;
    /// Number of counters.
    pub const LEN: u32 = 12;
}

/// Length of the records `wake_reader` writes only to wake the reader; skip them.
pub const WAKEUP_MARKER_LEN: usize = 8;

/// `AF_INET`.
pub const AF_INET: u16 = 2;
/// `AF_INET6`.
pub const AF_INET6: u16 = 10;

/// One kernel event: `struct smap_event` of `src/smap.h`.
///
/// Addresses are the reporting socket's: `saddr`/`sport` local, `daddr`/`dport`
/// remote. For `AF_INET` the address is in the first 4 bytes (network order) and the
/// rest is zero; for `AF_INET6` all 16 bytes, v4-mapped (`::ffff:a.b.c.d`) when a
/// dual-stack socket talks IPv4. Ports are in host order. Times are `CLOCK_BOOTTIME`
/// nanoseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// Event time; for a UDP flow, its last datagram.
    pub ts_ns: u64,
    /// When the socket was seen opening (connect(), SYN, first datagram); 0 if before
    /// capture.
    pub start_ns: u64,
    /// Socket cookie; 0 if the kernel had not made one for a socket opened before
    /// capture.
    pub cookie: u64,
    /// cgroup v2 id of the owning process.
    pub cgroup_id: u64,
    /// Payload bytes sent (TCP close, UDP flow).
    pub bytes_sent: u64,
    /// Payload bytes received (TCP close, UDP flow).
    pub bytes_received: u64,
    /// Datagrams sent (UDP flow).
    pub datagrams_sent: u64,
    /// Datagrams received (UDP flow).
    pub datagrams_received: u64,
    /// Thread-group id of the owning process, 0 if unknown.
    pub pid: u32,
    /// Network-namespace inode.
    pub netns: u32,
    /// `tcp_sock.total_retrans` at close.
    pub retransmits: u32,
    /// [`AF_INET`] or [`AF_INET6`].
    pub family: u16,
    /// Local port.
    pub sport: u16,
    /// Remote port.
    pub dport: u16,
    /// Failed connect: the socket error (`ECONNREFUSED`, `ETIMEDOUT`...); close of a
    /// connection aborted without the FIN exchange: `ECONNRESET` (a reset either way),
    /// `ETIMEDOUT`...; else 0.
    pub error: u16,
    /// One of [`kind`].
    pub kind: u8,
    /// One of [`side`].
    pub side: u8,
    /// Bits of [`flag`].
    pub flags: u8,
    /// TCP state before the transition that produced the event, numbered as in the
    /// kernel's `include/net/tcp_states.h` (1 ESTABLISHED, 2 SYN_SENT, 7 CLOSE...).
    pub old_state: u8,
    /// Local address.
    pub saddr: [u8; 16],
    /// Remote address.
    pub daddr: [u8; 16],
    /// Process name (the thread-group leader's comm), NUL-padded.
    pub comm: [u8; 16],
}

impl Event {
    /// Size of `struct smap_event`, as the C side asserts it.
    pub const SIZE: usize = 136;

    /// Reads an event from a ring-buffer record; `None` if the record is too short.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < core::mem::size_of::<Self>() {
            return None;
        }
        // SAFETY: the length is checked above, the read is unaligned-tolerant, and every
        // field is an integer or an integer array, so any bit pattern is a valid Event.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }

    /// The process name up to its first NUL, if it is UTF-8.
    pub fn comm(&self) -> Option<&str> {
        let end = self.comm.iter().position(|&b| b == 0).unwrap_or(self.comm.len());
        core::str::from_utf8(&self.comm[..end]).ok()
    }
}

/// DNS payload bytes a [`DnsReply`] holds at most; longer replies are cut.
pub const DNS_PAYLOAD_LEN: usize = 1024;

/// A DNS reply with an answer (a UDP datagram from port 53) delivered to a socket:
/// `struct smap_dns` of `src/smap.h`.
/// Addresses and ports are the packet's, encoded as in [`Event`]: `saddr`/`sport` the
/// server, `daddr`/`dport` the client.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsReply {
    /// Delivery time (`CLOCK_BOOTTIME` ns).
    pub ts_ns: u64,
    /// Socket cookie of the receiving socket.
    pub cookie: u64,
    /// Always zero.
    pub pad: u32,
    /// [`AF_INET`] or [`AF_INET6`], of the packet.
    pub family: u16,
    /// Server port (53).
    pub sport: u16,
    /// Client port.
    pub dport: u16,
    /// DNS payload bytes on the wire.
    pub wire_len: u16,
    /// Of which copied into `payload`.
    pub captured: u16,
    /// Always zero.
    pub pad2: u16,
    /// Server address.
    pub saddr: [u8; 16],
    /// Client address.
    pub daddr: [u8; 16],
    /// The DNS message, `captured` bytes of it.
    pub payload: [u8; DNS_PAYLOAD_LEN],
}

impl DnsReply {
    /// Size of `struct smap_dns`, as the C side asserts it: no other ring record has it.
    pub const SIZE: usize = 1088;

    /// Reads a reply from a ring-buffer record; `None` unless the record has its size.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::SIZE {
            return None;
        }
        // SAFETY: the length is checked above, the read is unaligned-tolerant, and every
        // field is an integer or an integer array, so any bit pattern is a valid DnsReply.
        Some(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<Self>()) })
    }

    /// The copied part of the DNS message.
    pub fn message(&self) -> &[u8] {
        &self.payload[..usize::from(self.captured).min(DNS_PAYLOAD_LEN)]
    }

    /// Whether the message was cut to fit.
    pub fn truncated(&self) -> bool {
        self.wire_len > self.captured
    }
}

/// Key of the `udp_flows` map: `struct smap_udp_key` of `src/smap.h`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UdpFlowKey {
    /// Socket cookie of the local socket.
    pub cookie: u64,
    /// [`AF_INET`] or [`AF_INET6`] (of the peer address).
    pub family: u16,
    /// Peer port, host order.
    pub rport: u16,
    /// Always zero: part of the hashed key.
    pub pad: u32,
    /// Peer address, encoded as in [`Event`].
    pub raddr: [u8; 16],
}

/// Value of the `conns` map: what the kernel remembers of a TCP socket between its
/// state changes and data-path runs (`struct conn_state` of `src/smap.h`). User space
/// counts these entries, to tell evictions apart, and reads them at the end of a
/// capture to report the connections still open.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnState {
    /// When the socket was seen opening (`CLOCK_BOOTTIME` ns); 0 if before capture.
    pub start_ns: u64,
    /// Socket cookie.
    pub cookie: u64,
    /// cgroup v2 id of the owner.
    pub cgroup_id: u64,
    /// When the socket was last reported (open, first bytes, progress).
    pub report_ns: u64,
    /// Payload bytes sent as of the socket's last received segment.
    pub bytes_sent: u64,
    /// Payload bytes received as of the socket's last received segment.
    pub bytes_received: u64,
    /// `bytes_sent` as of the last report.
    pub reported_sent: u64,
    /// `bytes_received` as of the last report.
    pub reported_received: u64,
    /// Owner's thread-group id, 0 until known (a passive open before accept(), a
    /// socket found in softirq).
    pub pid: u32,
    /// Network-namespace inode, once the tuple is known.
    pub netns: u32,
    /// [`AF_INET`] or [`AF_INET6`]; 0 while the tuple is not known yet.
    pub family: u16,
    /// Local port.
    pub sport: u16,
    /// Remote port.
    pub dport: u16,
    /// One of [`side`].
    pub side: u8,
    /// Bits of [`flag`].
    pub flags: u8,
    /// Local address, encoded as in [`Event`].
    pub saddr: [u8; 16],
    /// Remote address, encoded as in [`Event`].
    pub daddr: [u8; 16],
    /// Owner's process name, NUL-padded.
    pub comm: [u8; 16],
}

impl ConnState {
    /// The [`kind::TCP_OPEN_AT_END`] report of this socket at boot time `now_ns`, or
    /// `None` while its tuple is unknown (still in the handshake: no connection yet).
    pub fn open_at_end(&self, now_ns: u64) -> Option<Event> {
        if self.family == 0 {
            return None;
        }
        Some(Event {
            ts_ns: now_ns,
            start_ns: self.start_ns,
            cookie: self.cookie,
            cgroup_id: self.cgroup_id,
            bytes_sent: self.bytes_sent,
            bytes_received: self.bytes_received,
            pid: self.pid,
            netns: self.netns,
            family: self.family,
            sport: self.sport,
            dport: self.dport,
            kind: kind::TCP_OPEN_AT_END,
            side: self.side,
            flags: if self.side == side::UNKNOWN { flag::SYN_UNCERTAIN } else { 0 },
            old_state: 1,
            saddr: self.saddr,
            daddr: self.daddr,
            comm: self.comm,
            ..Event::default()
        })
    }
}

#[cfg(feature = "user")]
// SAFETY: repr(C), integers only, no padding bytes (the tests check the sizes add up).
unsafe impl aya::Pod for Event {}
#[cfg(feature = "user")]
// SAFETY: as for Event; the explicit `pad` field leaves no implicit padding.
unsafe impl aya::Pod for UdpFlowKey {}
#[cfg(feature = "user")]
// SAFETY: as for Event: integers only, and the fields add up to the size.
unsafe impl aya::Pod for ConnState {}

/// 8-byte alignment for the object bytes: the ELF parser reads its headers in place.
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/smap.bpf.o")));

/// The compiled BPF object (ELF), 8-byte aligned as `aya::EbpfLoader::load` needs.
pub fn object() -> &'static [u8] {
    &OBJECT.0
}

#[cfg(test)]
mod tests;
