//! The wire protocol and the JSON reports of `smap-e2e-peer`, shared by the binary and
//! the harness so both sides agree by construction.
//!
//! Requests: a client sends exactly the bytes it was asked to; when it sends at least
//! [`HEADER_LEN`] bytes, the first eight are a big-endian u64 telling the server how many
//! bytes to answer. TCP servers read until the client half-closes, then answer and close;
//! UDP servers answer each datagram (with its own length when it carries no header).
//! Every program prints one JSON object per line on stdout: [`CallReport`] for clients,
//! [`ServerEvent`] for servers.

use std::io;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// Length of the reply-size header at the start of a request.
pub const HEADER_LEN: usize = 8;

/// The largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP).
pub const MAX_UDP_PAYLOAD: u64 = 65_507;

/// The first `send` bytes of a request asking for `reply` bytes back (zeros after the
/// header). Shorter than [`HEADER_LEN`] when `send` is, truncating the header.
pub fn request(send: usize, reply: u64) -> Vec<u8> {
    let mut bytes = vec![0u8; send];
    let header = reply.to_be_bytes();
    let n = send.min(HEADER_LEN);
    bytes[..n].copy_from_slice(&header[..n]);
    bytes
}

/// The reply size a request asks for, if it carries a whole header.
pub fn requested_reply(request_start: &[u8]) -> Option<u64> {
    let header: [u8; HEADER_LEN] = request_start.get(..HEADER_LEN)?.try_into().ok()?;
    Some(u64::from_be_bytes(header))
}

/// Why a call failed, as the peer reports it (and as its exit code tells).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CallErrorKind {
    /// ECONNREFUSED: a RST to the SYN, or ICMP port unreachable (kube-proxy's REJECT for
    /// a Service without endpoints; UDP to a closed port).
    Refused,
    /// No answer in time (connect timeout, or no reply datagram).
    TimedOut,
    /// EHOSTUNREACH / ENETUNREACH.
    Unreachable,
    /// ECONNRESET, EPIPE: the peer reset an established connection.
    Reset,
    /// The exchange completed but the reply had another length than expected.
    UnexpectedLength,
    /// Anything else (see `detail`).
    Other,
}

impl CallErrorKind {
    /// Classifies an IO error from a socket call.
    pub fn of(error: &io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionRefused => CallErrorKind::Refused,
            // A timed-out blocking read is EAGAIN (WouldBlock) on Linux.
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => CallErrorKind::TimedOut,
            io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => CallErrorKind::Unreachable,
            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted | io::ErrorKind::BrokenPipe => {
                CallErrorKind::Reset
            }
            _ => CallErrorKind::Other,
        }
    }

    /// The peer's exit code for this failure (0 is success, 2 a usage error).
    pub fn exit_code(self) -> u8 {
        match self {
            CallErrorKind::Other => 1,
            CallErrorKind::Refused => 3,
            CallErrorKind::TimedOut => 4,
            CallErrorKind::Unreachable => 5,
            CallErrorKind::Reset => 6,
            CallErrorKind::UnexpectedLength => 7,
        }
    }

    /// The kind an exit code stands for (None for 0 and usage errors).
    pub fn from_exit_code(code: i32) -> Option<Self> {
        [
            CallErrorKind::Other,
            CallErrorKind::Refused,
            CallErrorKind::TimedOut,
            CallErrorKind::Unreachable,
            CallErrorKind::Reset,
            CallErrorKind::UnexpectedLength,
        ]
        .into_iter()
        .find(|k| i32::from(k.exit_code()) == code)
    }
}

/// What a client (`tcp-call`, `udp-call`, `tcp-hold`) reports: who it was and what
/// crossed the wire, so a test can match it with kernel events by pid and local port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallReport {
    /// The client's pid (the pid `ip netns exec` handed over to it).
    pub pid: u32,
    /// Its local address, known before connecting (the socket is bound first, so a
    /// refused or timed-out connect still names its source port).
    pub local: Option<SocketAddr>,
    /// The address it dialed (a ClusterIP stays a ClusterIP here: DNAT is invisible).
    pub remote: SocketAddr,
    /// Payload bytes written.
    pub sent: u64,
    /// Payload bytes read.
    pub received: u64,
    /// Wall time of the call.
    pub elapsed_ms: u64,
    /// Why it failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CallErrorKind>,
    /// The OS error text or other detail of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl CallReport {
    /// Whether the call succeeded.
    pub fn is_ok(&self) -> bool {
        self.error.is_none()
    }

    /// The client's source port.
    pub fn local_port(&self) -> Option<u16> {
        self.local.map(|a| a.port())
    }
}

/// One connection (TCP) or datagram (UDP) a server handled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The client as the server sees it: its pod IP and source port, never a ClusterIP.
    pub peer: SocketAddr,
    /// The server's address: its pod IP and target port for TCP; the bound address
    /// (`0.0.0.0:port`) for UDP.
    pub local: SocketAddr,
    /// Bytes read.
    pub received: u64,
    /// Bytes answered.
    pub sent: u64,
    /// Why the exchange failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CallErrorKind>,
    /// Detail of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A line a server (`serve-tcp`, `serve-udp`) prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ServerEvent {
    /// Bound and listening; printed once, first.
    Ready {
        /// The server's pid.
        pid: u32,
        /// The bound address.
        local: SocketAddr,
    },
    /// A TCP connection was served.
    Tcp(Exchange),
    /// A UDP datagram was answered.
    Udp(Exchange),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_carries_the_reply_size_when_long_enough() {
        let r = request(12, 300);
        assert_eq!(r.len(), 12);
        assert_eq!(requested_reply(&r), Some(300));
        assert_eq!(request(5, 300).len(), 5);
        assert_eq!(requested_reply(&request(5, 300)), None);
        assert!(request(0, 1).is_empty());
    }

    #[test]
    fn exit_codes_round_trip() {
        for kind in [CallErrorKind::Refused, CallErrorKind::TimedOut, CallErrorKind::UnexpectedLength] {
            assert_eq!(CallErrorKind::from_exit_code(i32::from(kind.exit_code())), Some(kind));
        }
        assert_eq!(CallErrorKind::from_exit_code(0), None);
        assert_eq!(CallErrorKind::from_exit_code(2), None);
    }

    #[test]
    fn reports_serialize_as_flat_json() {
        let event = ServerEvent::Tcp(Exchange {
            peer: "10.244.1.10:40000".parse().unwrap(),
            local: "10.244.2.20:8080".parse().unwrap(),
            received: 8,
            sent: 3,
            error: None,
            detail: None,
        });
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(
            text,
            r#"{"event":"tcp","peer":"10.244.1.10:40000","local":"10.244.2.20:8080","received":8,"sent":3}"#
        );
        assert_eq!(serde_json::from_str::<ServerEvent>(&text).unwrap(), event);
    }
}
