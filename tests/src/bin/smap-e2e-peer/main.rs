//! `smap-e2e-peer`: the servers and clients the end-to-end harness runs inside pods.
//! Each prints JSON lines on stdout (see `smap_e2e::peer`) and exits with a code that
//! names the failure kind.
//!
//! ```text
//! smap-e2e-peer serve-tcp PORT [--reply N] [--accept-delay-ms MS]
//! smap-e2e-peer serve-udp PORT [--dual-stack]
//! smap-e2e-peer tcp-call ADDR:PORT SEND RECV [--connect-timeout-ms MS] [--timeout-ms MS] [--source-port P]
//! smap-e2e-peer tcp-call NAME:PORT SEND RECV [--pick N] [--reset] [...]
//! smap-e2e-peer udp-call ADDR:PORT SEND [RECV] [--timeout-ms MS] [--unconnected]
//! smap-e2e-peer tcp-hold ADDR:PORT [--connect-timeout-ms MS]
//! smap-e2e-peer udp-hold ADDR:PORT [--timeout-ms MS]
//! smap-e2e-peer tcp-loop ADDR:PORT PER_SECOND
//! ```
//!
//! The HTTP modes (an ingress controller and its client) are in `http.rs`.
//!
//! `tcp-call NAME:PORT` resolves the name with the C library's resolver (getaddrinfo,
//! so /etc/resolv.conf and its nameserver) and dials the IPv4 address at index N of
//! the sorted answers (modulo their count; 0 by default).
//!
//! `tcp-call --reset` aborts after sending (SO_LINGER 0: a reset, not a FIN) without
//! reading a reply; give RECV 0.
//!
//! `tcp-hold` keeps its connection open until stdin closes, sending as many bytes as
//! each line of stdin says; `udp-hold` likewise keeps a connected UDP socket, sending
//! a datagram of that size per line and reading its echo.
//!
//! `tcp-loop` calls PER_SECOND times a second, 16 bytes each way, until killed,
//! printing each call's report as it completes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use smap_e2e::peer::{
    request, requested_reply, CallErrorKind, CallReport, Exchange, ServerEvent, HEADER_LEN, MAX_UDP_PAYLOAD,
};
use socket2::{Domain, Protocol, Socket, Type};

mod http;

const USAGE: &str = "usage:
  smap-e2e-peer serve-tcp PORT [--reply N] [--accept-delay-ms MS]
  smap-e2e-peer serve-ingress PORT HOST=ADDR:PORT... [--reply N]
  smap-e2e-peer http-get ADDR:PORT HOST [--timeout-ms MS]
  smap-e2e-peer serve-udp PORT [--dual-stack]
  smap-e2e-peer tcp-call ADDR:PORT SEND RECV [--connect-timeout-ms MS] [--timeout-ms MS] [--source-port P]
  smap-e2e-peer tcp-call NAME:PORT SEND RECV [--pick N] [--reset] [...]
  smap-e2e-peer udp-call ADDR:PORT SEND [RECV] [--timeout-ms MS]
  smap-e2e-peer tcp-hold ADDR:PORT [--connect-timeout-ms MS] [--timeout-ms MS] [--source-port P]
  smap-e2e-peer udp-hold ADDR:PORT [--timeout-ms MS]
  smap-e2e-peer tcp-loop ADDR:PORT PER_SECOND";

/// Zeros written in chunks of this size.
const CHUNK: usize = 64 * 1024;

/// Exit code of a usage error.
const USAGE_EXIT: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match Args::parse(&args).and_then(|a| run(&a)) {
        Ok(code) => code,
        Err(message) => {
            let _ = writeln!(io::stderr(), "smap-e2e-peer: {message}\n{USAGE}");
            ExitCode::from(USAGE_EXIT)
        }
    }
}

/// The command line, resolved before doing anything.
struct Args {
    command: String,
    positional: Vec<String>,
    reply: u64,
    accept_delay: Duration,
    connect_timeout: Duration,
    timeout: Duration,
    source_port: Option<u16>,
    unconnected: bool,
    dual_stack: bool,
    pick: usize,
    reset: bool,
}

impl Args {
    fn parse(args: &[String]) -> Result<Args, String> {
        let mut iter = args.iter();
        let command = iter.next().ok_or("no command")?.clone();
        let mut parsed = Args {
            command,
            positional: Vec::new(),
            reply: 0,
            accept_delay: Duration::ZERO,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            source_port: None,
            unconnected: false,
            dual_stack: false,
            pick: 0,
            reset: false,
        };
        while let Some(arg) = iter.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let text = iter.next().ok_or_else(|| format!("{name} needs a value"))?;
                text.parse().map_err(|e| format!("{name} {text}: {e}"))
            };
            match arg.as_str() {
                "--reply" => parsed.reply = value(arg)?,
                "--accept-delay-ms" => parsed.accept_delay = Duration::from_millis(value(arg)?),
                "--connect-timeout-ms" => parsed.connect_timeout = Duration::from_millis(value(arg)?.max(1)),
                "--timeout-ms" => parsed.timeout = Duration::from_millis(value(arg)?.max(1)),
                "--source-port" => {
                    let port = value(arg)?;
                    parsed.source_port = Some(u16::try_from(port).map_err(|_| format!("--source-port {port}"))?);
                }
                "--pick" => parsed.pick = usize::try_from(value(arg)?).map_err(|e| format!("--pick: {e}"))?,
                "--unconnected" => parsed.unconnected = true,
                "--reset" => parsed.reset = true,
                "--dual-stack" => parsed.dual_stack = true,
                flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                _ => parsed.positional.push(arg.clone()),
            }
        }
        Ok(parsed)
    }

    fn arg<T: std::str::FromStr>(&self, index: usize, name: &str) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let text = self.positional.get(index).ok_or_else(|| format!("missing {name}"))?;
        text.parse().map_err(|e| format!("{name} {text}: {e}"))
    }
}

fn run(args: &Args) -> Result<ExitCode, String> {
    match args.command.as_str() {
        "serve-tcp" => Ok(serve_tcp(args.arg(0, "PORT")?, args.reply, args.accept_delay)),
        "serve-udp" => Ok(serve_udp(args.arg(0, "PORT")?, args.dual_stack)),
        "tcp-call" => {
            let target = resolve(args.positional.first().ok_or("missing ADDR:PORT")?, args.pick)?;
            let (send, recv) = (args.arg(1, "SEND")?, args.arg(2, "RECV")?);
            Ok(finish(tcp_call(target, send, recv, args)))
        }
        "udp-call" => {
            let target = args.arg(0, "ADDR:PORT")?;
            let send: u64 = args.arg(1, "SEND")?;
            let recv = if args.positional.len() > 2 { args.arg(2, "RECV")? } else { send };
            if send > MAX_UDP_PAYLOAD || recv > MAX_UDP_PAYLOAD {
                return Err(format!("a datagram carries at most {MAX_UDP_PAYLOAD} bytes"));
            }
            Ok(finish(udp_call(target, send, recv, args)))
        }
        "serve-ingress" => {
            let port = args.arg(0, "PORT")?;
            Ok(http::serve_ingress(port, http::parse_routes(&args.positional[1..])?, args.reply))
        }
        "http-get" => {
            let host: String = args.arg(1, "HOST")?;
            Ok(finish(http::http_get(args.arg(0, "ADDR:PORT")?, &host, args.timeout)))
        }
        "tcp-hold" => Ok(finish(tcp_hold(args.arg(0, "ADDR:PORT")?, args))),
        "tcp-loop" => {
            let target = resolve(args.positional.first().ok_or("missing ADDR:PORT")?, args.pick)?;
            Ok(tcp_loop(target, args.arg(1, "PER_SECOND")?, args))
        }
        "udp-hold" => Ok(finish(udp_hold(args.arg(0, "ADDR:PORT")?, args))),
        other => Err(format!("unknown command {other}")),
    }
}

/// `ADDR:PORT` as is, or `NAME:PORT` through getaddrinfo: the IPv4 answer at `pick`
/// (modulo their count) of the sorted answers.
fn resolve(target: &str, pick: usize) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(addr) = target.parse() {
        return Ok(addr);
    }
    let mut found: Vec<SocketAddr> =
        target.to_socket_addrs().map_err(|e| format!("resolving {target}: {e}"))?.filter(SocketAddr::is_ipv4).collect();
    found.sort();
    found.dedup();
    if found.is_empty() {
        return Err(format!("resolving {target}: no IPv4 address"));
    }
    Ok(found[pick % found.len()])
}

/// Prints one JSON line and flushes: the harness reads stdout line by line, and the
/// servers print from several threads.
fn emit<T: serde::Serialize>(value: &T) {
    let Ok(line) = serde_json::to_string(value) else { return };
    let mut out = io::stdout().lock();
    // A closed stdout (the harness went away) must not take the server down.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints the final report and turns its outcome into the exit code.
fn finish(report: CallReport) -> ExitCode {
    emit(&report);
    match report.error {
        None => ExitCode::SUCCESS,
        Some(kind) => ExitCode::from(kind.exit_code()),
    }
}

/// Accepts forever (each accept() `accept_delay` after the last one returned); one
/// thread per connection, since a held connection blocks its reader until the client
/// lets go.
fn serve_tcp(port: u16, default_reply: u64, accept_delay: Duration) -> ExitCode {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => return fail_to_start("bind", &e),
    };
    let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], port)));
    emit(&ServerEvent::Ready { pid: std::process::id(), local });
    loop {
        std::thread::sleep(accept_delay);
        let stream = listener.accept().map(|(stream, _)| stream);
        // ECONNABORTED and the like concern one connection, not the server.
        let Ok(stream) = stream else { continue };
        std::thread::spawn(move || emit(&ServerEvent::Tcp(serve_connection(stream, default_reply))));
    }
}

fn serve_connection(mut stream: TcpStream, default_reply: u64) -> Exchange {
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut exchange = Exchange {
        peer: stream.peer_addr().unwrap_or(unknown),
        local: stream.local_addr().unwrap_or(unknown),
        received: 0,
        sent: 0,
        error: None,
        detail: None,
    };
    let result = (|| -> io::Result<()> {
        let mut header = Vec::with_capacity(HEADER_LEN);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = stream.read(&mut buf)?;
            if n == 0 {
                break;
            }
            let take = (HEADER_LEN - header.len()).min(n);
            header.extend_from_slice(&buf[..take]);
            exchange.received += n as u64;
        }
        let reply = requested_reply(&header).unwrap_or(default_reply);
        write_zeros(&mut stream, reply, &mut exchange.sent)?;
        stream.shutdown(Shutdown::Write)
    })();
    if let Err(e) = result {
        exchange.error = Some(CallErrorKind::of(&e));
        exchange.detail = Some(e.to_string());
    }
    exchange
}

fn serve_udp(port: u16, dual_stack: bool) -> ExitCode {
    // Linux's default (bindv6only=0) makes `[::]` take IPv4 datagrams too.
    let any = if dual_stack { SocketAddr::from(([0u16; 8], port)) } else { SocketAddr::from(([0u8; 4], port)) };
    let socket = match UdpSocket::bind(any) {
        Ok(s) => s,
        Err(e) => return fail_to_start("bind", &e),
    };
    let local = socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], port)));
    emit(&ServerEvent::Ready { pid: std::process::id(), local });
    let mut buf = vec![0u8; 65_536];
    let zeros = vec![0u8; 65_536];
    loop {
        let Ok((n, peer)) = socket.recv_from(&mut buf) else { continue };
        // A datagram without header is echoed at its own size, as a DNS answer roughly is.
        let reply = requested_reply(&buf[..n]).unwrap_or(n as u64).min(MAX_UDP_PAYLOAD);
        let mut exchange = Exchange { peer, local, received: n as u64, sent: 0, error: None, detail: None };
        match socket.send_to(&zeros[..reply as usize], peer) {
            Ok(sent) => exchange.sent = sent as u64,
            Err(e) => {
                exchange.error = Some(CallErrorKind::of(&e));
                exchange.detail = Some(e.to_string());
            }
        }
        emit(&ServerEvent::Udp(exchange));
    }
}

fn fail_to_start(what: &str, error: &io::Error) -> ExitCode {
    let _ = writeln!(io::stderr(), "smap-e2e-peer: {what}: {error}");
    ExitCode::from(CallErrorKind::of(error).exit_code())
}

fn write_zeros(stream: &mut impl Write, mut n: u64, counter: &mut u64) -> io::Result<()> {
    let zeros = [0u8; CHUNK];
    while n > 0 {
        let len = n.min(CHUNK as u64) as usize;
        stream.write_all(&zeros[..len])?;
        *counter += len as u64;
        n -= len as u64;
    }
    Ok(())
}

fn read_to_end(stream: &mut impl Read, counter: &mut u64) -> io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match stream.read(&mut buf)? {
            0 => return Ok(()),
            n => *counter += n as u64,
        }
    }
}

fn new_report(target: SocketAddr) -> CallReport {
    CallReport {
        pid: std::process::id(),
        local: None,
        remote: target,
        sent: 0,
        received: 0,
        elapsed_ms: 0,
        error: None,
        detail: None,
    }
}

fn fail(report: &mut CallReport, kind: CallErrorKind, detail: String) {
    report.error = Some(kind);
    report.detail = Some(detail);
}

fn unspecified(target: SocketAddr) -> SocketAddr {
    if target.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        ([0u16; 8], 0).into()
    }
}

/// The source address the kernel would pick for `target`: connecting a UDP socket runs
/// the route lookup without sending anything.
fn route_source(target: SocketAddr) -> SocketAddr {
    UdpSocket::bind(unspecified(target))
        .and_then(|s| s.connect(target).and_then(|()| s.local_addr()))
        .map(|a| SocketAddr::new(a.ip(), 0))
        .unwrap_or_else(|_| unspecified(target))
}

/// Connects with the source address and port chosen before the SYN (bound to the
/// routed source IP and port 0 first), so the report names them even when the
/// connect fails.
fn connect(target: SocketAddr, args: &Args, report: &mut CallReport) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, Some(Protocol::TCP))?;
    let mut source = route_source(target);
    if let Some(port) = args.source_port {
        // Several clients may share it towards different servers, as Linux allows.
        socket.set_reuse_address(true)?;
        source.set_port(port);
    }
    socket.bind(&source.into())?;
    report.local = socket.local_addr()?.as_socket();
    socket.connect_timeout(&target.into(), args.connect_timeout)?;
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(args.timeout))?;
    stream.set_write_timeout(Some(args.timeout))?;
    Ok(stream)
}

/// Calls `target` `per_second` times a second (16 bytes each way) until killed,
/// printing each call's report as it completes: a steady load whose every connection
/// the caller can look for.
fn tcp_loop(target: SocketAddr, per_second: u32, args: &Args) -> ExitCode {
    let interval = Duration::from_secs(1) / per_second.max(1);
    let mut next = Instant::now();
    loop {
        emit(&tcp_call(target, 16, 16, args));
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn tcp_call(target: SocketAddr, send: u64, recv: u64, args: &Args) -> CallReport {
    let start = Instant::now();
    let mut report = new_report(target);
    let result = (|| -> io::Result<()> {
        let mut stream = connect(target, args, &mut report)?;
        let header = request(send.min(HEADER_LEN as u64) as usize, recv);
        stream.write_all(&header)?;
        report.sent += header.len() as u64;
        write_zeros(&mut stream, send - header.len() as u64, &mut report.sent)?;
        if args.reset {
            // Closed with SO_LINGER 0: the kernel sends a reset instead of a FIN.
            socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO))?;
            return Ok(());
        }
        stream.shutdown(Shutdown::Write)?;
        read_to_end(&mut stream, &mut report.received)
    })();
    if let Err(e) = result {
        fail(&mut report, CallErrorKind::of(&e), e.to_string());
    } else if report.received != recv {
        let detail = format!("expected {recv} bytes, got {}", report.received);
        fail(&mut report, CallErrorKind::UnexpectedLength, detail);
    }
    report.elapsed_ms = start.elapsed().as_millis() as u64;
    report
}

fn udp_call(target: SocketAddr, send: u64, recv: u64, args: &Args) -> CallReport {
    let start = Instant::now();
    let mut report = new_report(target);
    // Without a header the server echoes the datagram's size.
    let expected = if send >= HEADER_LEN as u64 { recv } else { send };
    let result = (|| -> io::Result<()> {
        let socket = UdpSocket::bind(unspecified(target))?;
        socket.set_read_timeout(Some(args.timeout))?;
        let mut buf = vec![0u8; 65_536];
        if args.unconnected {
            // The socket's address stays 0.0.0.0: the route picks the source per
            // datagram, which is what the capture must find. (Asking the route here
            // would take a connected socket, which the capture would see too.)
            report.sent = socket.send_to(&request(send as usize, recv), target)? as u64;
            report.local = Some(socket.local_addr()?);
            report.received = socket.recv_from(&mut buf)?.0 as u64;
            return Ok(());
        }
        // Connected: ICMP port unreachable comes back as ECONNREFUSED on recv, and the
        // local address shows the routed source IP.
        socket.connect(target)?;
        report.local = Some(socket.local_addr()?);
        report.sent = socket.send(&request(send as usize, recv))? as u64;
        report.received = socket.recv(&mut buf)? as u64;
        Ok(())
    })();
    if let Err(e) = result {
        fail(&mut report, CallErrorKind::of(&e), e.to_string());
    } else if report.received != expected {
        let detail = format!("expected {expected} bytes, got {}", report.received);
        fail(&mut report, CallErrorKind::UnexpectedLength, detail);
    }
    report.elapsed_ms = start.elapsed().as_millis() as u64;
    report
}

/// Connects, reports, then holds the connection until stdin closes (or a signal ends
/// the process, and the kernel closes the socket); then half-closes, reads to EOF and
/// reports again.
fn tcp_hold(target: SocketAddr, args: &Args) -> CallReport {
    let start = Instant::now();
    let mut report = new_report(target);
    let mut stream = match connect(target, args, &mut report) {
        Ok(stream) => stream,
        Err(e) => {
            fail(&mut report, CallErrorKind::of(&e), e.to_string());
            report.elapsed_ms = start.elapsed().as_millis() as u64;
            return report;
        }
    };
    report.elapsed_ms = start.elapsed().as_millis() as u64;
    emit(&report);
    // Each line on stdin is a number of bytes to send now; a report follows each send.
    for line in io::stdin().lines() {
        let Ok(line) = line else { break };
        let Ok(n) = line.trim().parse::<u64>() else { continue };
        if let Err(e) = write_zeros(&mut stream, n, &mut report.sent) {
            fail(&mut report, CallErrorKind::of(&e), e.to_string());
        }
        report.elapsed_ms = start.elapsed().as_millis() as u64;
        emit(&report);
    }
    // Held as long as the caller wanted: the server may take its time to answer now.
    let _ = stream.set_read_timeout(None);
    let result = stream.shutdown(Shutdown::Write).and_then(|()| read_to_end(&mut stream, &mut report.received));
    if let Err(e) = result {
        fail(&mut report, CallErrorKind::of(&e), e.to_string());
    }
    report.elapsed_ms = start.elapsed().as_millis() as u64;
    report
}

fn udp_hold(target: SocketAddr, args: &Args) -> CallReport {
    let start = Instant::now();
    let mut report = new_report(target);
    let socket = match (|| -> io::Result<UdpSocket> {
        let socket = UdpSocket::bind(unspecified(target))?;
        socket.connect(target)?;
        socket.set_read_timeout(Some(args.timeout))?;
        Ok(socket)
    })() {
        Ok(socket) => socket,
        Err(e) => {
            fail(&mut report, CallErrorKind::of(&e), e.to_string());
            return report;
        }
    };
    report.local = socket.local_addr().ok();
    emit(&report);
    let mut buf = vec![0u8; 65_536];
    for line in io::stdin().lines() {
        let Ok(line) = line else { break };
        let Ok(n) = line.trim().parse::<usize>() else { continue };
        // The request asks for as many bytes back as it carries.
        let result = socket.send(&request(n, n as u64)).and_then(|sent| {
            report.sent += sent as u64;
            socket.recv(&mut buf)
        });
        match result {
            Ok(received) => report.received += received as u64,
            Err(e) => fail(&mut report, CallErrorKind::of(&e), e.to_string()),
        }
        report.elapsed_ms = start.elapsed().as_millis() as u64;
        emit(&report);
    }
    report
}
