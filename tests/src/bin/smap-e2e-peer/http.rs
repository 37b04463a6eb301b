//! The peer's HTTP modes: an ingress controller that routes each request by its Host
//! header to a backend (a `serve-tcp` peer, asked for the reply size), and its client.
//!
//! ```text
//! smap-e2e-peer serve-ingress PORT HOST=ADDR:PORT... [--reply N]
//! smap-e2e-peer http-get ADDR:PORT HOST [--timeout-ms MS]
//! ```

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smap_e2e::peer::{request, CallErrorKind, CallReport, Exchange, ServerEvent};

use crate::{emit, fail, fail_to_start, new_report};

/// A request head longer than this is refused.
const MAX_HEAD: usize = 8 * 1024;

/// `HOST=ADDR:PORT` routes.
pub(crate) fn parse_routes(args: &[String]) -> Result<Vec<(String, SocketAddr)>, String> {
    args.iter()
        .map(|arg| {
            let (host, target) = arg.split_once('=').ok_or_else(|| format!("route {arg}: want HOST=ADDR:PORT"))?;
            let target = target.parse().map_err(|e| format!("route {arg}: {e}"))?;
            Ok((host.to_ascii_lowercase(), target))
        })
        .collect()
}

/// Reads a request head (through the blank line).
fn read_head(stream: &mut TcpStream) -> io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD || stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "no complete request head"));
        }
        head.push(byte[0]);
    }
    Ok(head)
}

fn host_of(head: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim().eq_ignore_ascii_case("host").then(|| value.trim().to_ascii_lowercase())
    })
}

/// Accepts forever and proxies each request to the backend of its Host (404 for
/// others), reporting each as an exchange with the client.
pub(crate) fn serve_ingress(port: u16, routes: Vec<(String, SocketAddr)>, reply: u64) -> ExitCode {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => return fail_to_start("bind", &e),
    };
    let local = listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], port)));
    emit(&ServerEvent::Ready { pid: std::process::id(), local });
    let routes = Arc::new(routes);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let routes = Arc::clone(&routes);
        std::thread::spawn(move || emit(&ServerEvent::Tcp(proxy(stream, &routes, reply))));
    }
    ExitCode::SUCCESS
}

fn proxy(mut client: TcpStream, routes: &[(String, SocketAddr)], reply: u64) -> Exchange {
    let unknown = SocketAddr::from(([0, 0, 0, 0], 0));
    let mut exchange = Exchange {
        peer: client.peer_addr().unwrap_or(unknown),
        local: client.local_addr().unwrap_or(unknown),
        received: 0,
        sent: 0,
        error: None,
        detail: None,
    };
    let result = (|| -> io::Result<()> {
        let head = read_head(&mut client)?;
        exchange.received = head.len() as u64;
        let host = host_of(&head).unwrap_or_default();
        let Some((_, backend)) = routes.iter().find(|(h, _)| *h == host) else {
            let response = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            client.write_all(response)?;
            exchange.sent = response.len() as u64;
            return client.shutdown(Shutdown::Write);
        };
        // The backend speaks the peer's protocol: the request, then the reply to EOF.
        let mut upstream = TcpStream::connect_timeout(backend, Duration::from_secs(5))?;
        upstream.write_all(&request(head.len().min(smap_e2e::peer::HEADER_LEN), reply))?;
        upstream.shutdown(Shutdown::Write)?;
        let mut body = Vec::new();
        upstream.read_to_end(&mut body)?;
        let response = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
        client.write_all(response.as_bytes())?;
        client.write_all(&body)?;
        exchange.sent = (response.len() + body.len()) as u64;
        client.shutdown(Shutdown::Write)
    })();
    if let Err(e) = result {
        exchange.error = Some(CallErrorKind::of(&e));
        exchange.detail = Some(e.to_string());
    }
    exchange
}

/// `GET /` with this Host, reading the response to EOF; anything but a 200 fails.
pub(crate) fn http_get(target: SocketAddr, host: &str, timeout: Duration) -> CallReport {
    let start = Instant::now();
    let mut report = new_report(target);
    let result = (|| -> io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&target, timeout)?;
        report.local = stream.local_addr().ok();
        stream.set_read_timeout(Some(timeout))?;
        let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes())?;
        report.sent = head.len() as u64;
        stream.shutdown(Shutdown::Write)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        Ok(response)
    })();
    match result {
        Ok(response) => {
            report.received = response.len() as u64;
            if !response.starts_with(b"HTTP/1.1 200 ") {
                let status = String::from_utf8_lossy(&response[..response.len().min(40)]).into_owned();
                fail(&mut report, CallErrorKind::UnexpectedLength, format!("not a 200: {status}"));
            }
        }
        Err(e) => fail(&mut report, CallErrorKind::of(&e), e.to_string()),
    }
    report.elapsed_ms = start.elapsed().as_millis() as u64;
    report
}
