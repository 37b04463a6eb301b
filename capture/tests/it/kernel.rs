//! Loads the real programs and checks the exact events of known loopback traffic.
//!
//! Needs root (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN): without it the test says it was
//! skipped, except under CI=true where skipping would hide a broken setup, so it fails.
//! Other traffic on the machine is ignored by keeping only events on this test's ports.

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, TcpStream, UdpSocket};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smap_capture::kernel::{KernelCapture, KernelConfig, UdpPath};
use smap_replay::{ConnEvent, ConnKind, Side};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const LOCALHOST6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// Whether this process may load eBPF programs; panics under CI=true if not.
pub(crate) fn privileged_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but not root: the eBPF capture test must run as root in CI"
    );
    eprintln!("skipped: needs root (CAP_BPF) to load eBPF programs");
    false
}

/// Ports and the expected facts of one traffic run.
#[derive(Debug)]
struct Traffic {
    tcp_server: u16,
    tcp_client: u16,
    tcp6_server: u16,
    tcp6_client: u16,
    refused: u16,
    udp_server: u16,
    udp_client: u16,
    cudp_server: u16,
    cudp_client: u16,
}

impl Traffic {
    fn ports(&self) -> HashSet<u16> {
        HashSet::from([self.tcp_server, self.tcp6_server, self.refused, self.udp_server, self.cudp_server])
    }
}

/// One TCP exchange: the client sends `up` bytes, the server answers `down` bytes, the
/// client closes first, the server closes after reading EOF. Returns (server, client)
/// ports.
fn tcp_exchange(ip: IpAddr, up: usize, down: usize) -> (u16, u16) {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let server_port = listener.local_addr().unwrap().port();
    let server = thread::Builder::new()
        .name("tcp-server".into())
        .spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut got = vec![0u8; up];
            s.read_exact(&mut got).unwrap();
            s.write_all(&vec![b'y'; down]).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
        })
        .unwrap();
    let mut c = TcpStream::connect((ip, server_port)).unwrap();
    let client_port = c.local_addr().unwrap().port();
    c.write_all(&vec![b'x'; up]).unwrap();
    let mut got = vec![0u8; down];
    c.read_exact(&mut got).unwrap();
    drop(c);
    server.join().unwrap();
    (server_port, client_port)
}

fn run_traffic() -> Traffic {
    let (tcp_server, tcp_client) = tcp_exchange(LOCALHOST, 1000, 2500);
    let (tcp6_server, tcp6_client) = tcp_exchange(LOCALHOST6, 10, 20);

    // A port that was just free: nothing listens there.
    let refused = TcpListener::bind((LOCALHOST, 0)).unwrap().local_addr().unwrap().port();
    let err = TcpStream::connect((LOCALHOST, refused)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);

    // Unconnected UDP: sendto/recvfrom, which the cgroup hooks see with their peer.
    let srv = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let cli = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let mut buf = [0u8; 1500];
    cli.send_to(&[1u8; 100], srv.local_addr().unwrap()).unwrap();
    let (n, from) = srv.recv_from(&mut buf).unwrap();
    assert_eq!(n, 100);
    srv.send_to(&[2u8; 300], from).unwrap();
    assert_eq!(cli.recv_from(&mut buf).unwrap().0, 300);

    // Connected UDP client: connect() then send()/recv() without addresses.
    let csrv = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    let ccli = UdpSocket::bind((LOCALHOST, 0)).unwrap();
    ccli.connect(csrv.local_addr().unwrap()).unwrap();
    ccli.send(&[3u8; 50]).unwrap();
    let (n, from) = csrv.recv_from(&mut buf).unwrap();
    assert_eq!(n, 50);
    csrv.send_to(&[4u8; 70], from).unwrap();
    assert_eq!(ccli.recv(&mut buf).unwrap(), 70);

    Traffic {
        tcp_server,
        tcp_client,
        tcp6_server,
        tcp6_client,
        refused,
        udp_server: srv.local_addr().unwrap().port(),
        udp_client: cli.local_addr().unwrap().port(),
        cudp_server: csrv.local_addr().unwrap().port(),
        cudp_client: ccli.local_addr().unwrap().port(),
    }
}

fn our_comm() -> String {
    std::fs::read_to_string("/proc/self/comm").unwrap().trim_end().to_owned()
}

fn our_netns() -> u32 {
    let link = std::fs::read_link("/proc/self/ns/net").unwrap();
    let link = link.to_string_lossy();
    link.trim_start_matches("net:[").trim_end_matches(']').parse().unwrap()
}

fn wall_now() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()).unwrap()
}

fn one<'a>(events: &'a [ConnEvent], what: &str, f: impl Fn(&ConnEvent) -> bool) -> &'a ConnEvent {
    let found: Vec<&ConnEvent> = events.iter().filter(|e| f(e)).collect();
    assert_eq!(found.len(), 1, "{what}: expected exactly one, got {found:#?}");
    found[0]
}

/// Bytes (sent, received) and datagram-report count of one UDP socket's flow reports.
fn udp_totals(events: &[ConnEvent], side: Side, client: u16, server: u16) -> (u64, u64, usize) {
    let reports: Vec<&ConnEvent> = events
        .iter()
        .filter(|e| e.kind == ConnKind::UdpFlow && e.side == side && e.src_port == client && e.dst_port == server)
        .collect();
    let sent = reports.iter().map(|e| e.bytes_sent).sum();
    let received = reports.iter().map(|e| e.bytes_received).sum();
    (sent, received, reports.len())
}

fn assert_ours(e: &ConnEvent, what: &str) {
    let pid = std::process::id();
    assert_eq!(e.pid, pid, "{what}: pid");
    assert_eq!(&*e.comm, our_comm(), "{what}: comm");
    assert_eq!(e.netns, our_netns(), "{what}: netns");
    assert_eq!(&*e.node, "test-node", "{what}: node");
    assert_ne!(e.socket_id, 0, "{what}: socket cookie");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_tcp_and_udp_events_are_exact() {
    if !privileged_or_skip() {
        return;
    }
    let _turn = crate::MACHINE_TURN.lock().await;
    let config = KernelConfig { udp_flush_interval: Duration::from_millis(200), ..KernelConfig::new("test-node") };
    let mut capture = KernelCapture::start(config).expect("start the kernel capture");
    // Every hook attaches, but for the UDP set not taken: this machine's kernel refuses
    // fentry (lockdown), the matrix's distribution kernels allow it.
    let skipped: Vec<&str> = capture.skipped().iter().map(|s| s.hook).collect();
    match capture.udp_path() {
        UdpPath::Functions => assert!(skipped.is_empty(), "{:#?}", capture.skipped()),
        UdpPath::Tracepoints => assert_eq!(
            skipped,
            ["fentry/ip_send_skb", "fentry/ip6_send_skb", "fentry/skb_consume_udp"],
            "{:#?}",
            capture.skipped()
        ),
        UdpPath::None => panic!("no UDP datagram hooks: {:#?}", capture.skipped()),
    }
    // The kernel matrix says which set its kernels must allow.
    if let Some(expected) = std::env::var("SMAP_EXPECT_UDP_PATH").ok().filter(|v| !v.is_empty()) {
        assert_eq!(capture.udp_path().name(), expected, "{:#?}", capture.skipped());
    }
    let started = wall_now();
    let traffic = tokio::task::spawn_blocking(run_traffic).await.unwrap();
    let ports = traffic.ports();
    let ours = |e: &ConnEvent| ports.contains(&e.dst_port);

    let mut events = Vec::new();
    let mut batch = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let expected_udp_reports = 4;
    while Instant::now() < deadline {
        capture.next_batch(&mut batch).await.unwrap();
        events.extend(batch.drain(..).filter(|e| ours(e)));
        let tcp_done = events.iter().filter(|e| e.kind == ConnKind::TcpClose).count() == 4
            && events.iter().any(|e| e.kind == ConnKind::TcpConnectFailed);
        let udp = events.iter().filter(|e| e.kind == ConnKind::UdpFlow).count();
        if tcp_done && udp >= expected_udp_reports {
            break;
        }
    }
    let counters = capture.finish(&mut batch).unwrap();
    events.extend(batch.drain(..).filter(|e| ours(e)));
    let ended = wall_now();
    eprintln!("{} events on the test's ports; counters: {counters:?}", events.len());

    for e in &events {
        assert!((started..=ended).contains(&e.time_ns), "time outside the test: {e:?}");
    }

    // TCP over IPv4: client sends 1000, server answers 2500.
    let t = &traffic;
    let connect = one(&events, "tcp connect", |e| e.kind == ConnKind::TcpConnect && e.dst_port == t.tcp_server);
    assert_ours(connect, "connect");
    assert_eq!(connect.side, Side::Client);
    assert_eq!((connect.src_ip, connect.src_port), (LOCALHOST, t.tcp_client));
    assert_eq!(connect.dst_ip, LOCALHOST);

    let accept = one(&events, "tcp accept", |e| e.kind == ConnKind::TcpAccept && e.dst_port == t.tcp_server);
    assert_ours(accept, "accept");
    assert_eq!(accept.side, Side::Server);
    assert_eq!((accept.src_ip, accept.src_port), (LOCALHOST, t.tcp_client));
    assert_eq!(accept.dst_ip, LOCALHOST);
    assert_ne!(accept.socket_id, connect.socket_id);

    let client_close = one(&events, "client close", |e| {
        e.kind == ConnKind::TcpClose && e.dst_port == t.tcp_server && e.side == Side::Client
    });
    assert_ours(client_close, "client close");
    assert_eq!(client_close.socket_id, connect.socket_id);
    assert_eq!(client_close.src_port, t.tcp_client);
    assert_eq!((client_close.bytes_sent, client_close.bytes_received), (1000, 2500));
    assert_eq!(client_close.retransmits, 0);

    let server_close = one(&events, "server close", |e| {
        e.kind == ConnKind::TcpClose && e.dst_port == t.tcp_server && e.side == Side::Server
    });
    assert_ours(server_close, "server close");
    assert_eq!(server_close.socket_id, accept.socket_id);
    assert_eq!(server_close.src_port, t.tcp_client);
    assert_eq!((server_close.bytes_sent, server_close.bytes_received), (2500, 1000));

    // TCP over IPv6 loopback: client sends 10, server answers 20.
    let c6 = one(&events, "tcp6 client close", |e| {
        e.kind == ConnKind::TcpClose && e.dst_port == t.tcp6_server && e.side == Side::Client
    });
    assert_eq!((c6.src_ip, c6.src_port, c6.dst_ip), (LOCALHOST6, t.tcp6_client, LOCALHOST6));
    assert_eq!((c6.bytes_sent, c6.bytes_received), (10, 20));
    let s6 = one(&events, "tcp6 server close", |e| {
        e.kind == ConnKind::TcpClose && e.dst_port == t.tcp6_server && e.side == Side::Server
    });
    assert_eq!((s6.bytes_sent, s6.bytes_received), (20, 10));
    one(&events, "tcp6 accept", |e| e.kind == ConnKind::TcpAccept && e.dst_port == t.tcp6_server);

    // Refused connect to a closed port.
    let failed = one(&events, "failed connect", |e| e.kind == ConnKind::TcpConnectFailed && e.dst_port == t.refused);
    assert_ours(failed, "failed connect");
    assert_eq!(failed.side, Side::Client);
    assert_eq!(failed.error, 111, "ECONNREFUSED");
    assert_eq!((failed.src_ip, failed.dst_ip), (LOCALHOST, LOCALHOST));
    assert!(!events.iter().any(|e| e.kind == ConnKind::TcpConnect && e.dst_port == t.refused));

    // Unconnected UDP: client 100 bytes up, server 300 down; both ends report.
    let (sent, received, n) = udp_totals(&events, Side::Client, t.udp_client, t.udp_server);
    assert_eq!((sent, received), (100, 300), "udp client bytes");
    assert!(n >= 1);
    let (sent, received, n) = udp_totals(&events, Side::Server, t.udp_client, t.udp_server);
    assert_eq!((sent, received), (300, 100), "udp server bytes");
    assert!(n >= 1);
    let udp_client = events.iter().find(|e| e.kind == ConnKind::UdpFlow && e.src_port == t.udp_client).unwrap();
    assert_ours(udp_client, "udp client flow");
    assert_eq!((udp_client.src_ip, udp_client.dst_ip), (LOCALHOST, LOCALHOST));

    // Connected UDP client (connect + send/recv): 50 up, 70 down.
    let (sent, received, _) = udp_totals(&events, Side::Client, t.cudp_client, t.cudp_server);
    assert_eq!((sent, received), (50, 70), "connected udp client bytes");
    let (sent, received, _) = udp_totals(&events, Side::Server, t.cudp_client, t.cudp_server);
    assert_eq!((sent, received), (70, 50), "connected udp server bytes");

    assert_eq!(counters.ringbuf_drops, 0);
    assert!(counters.events_received >= 10);
    assert_eq!(counters.events_malformed, 0);
}
