//! `smap watch`'s endpoints against clients that connect and stall, as any pod of the
//! node could: thousands of half-sent or silent connections are held no more than the
//! cap, in bounded memory, closed within the header timeout, and the probe port answers
//! throughout.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smap_capture::live::http_server::Limits;
use smap_capture::live::serve::{serve, serve_probes, LiveState};

/// Stalled clients: many times the cap.
const STALLED: usize = 3000;

/// One GET over a fresh connection: the status code and how long it took.
fn get(address: SocketAddr, path: &str) -> (u16, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: smap\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    let status = reply.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, started.elapsed())
}

/// This process's resident memory (VmRSS).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().strip_suffix("kB"));
    kib.and_then(|v| v.trim().parse::<u64>().ok()).unwrap() * 1024
}

/// Raises the open-file limit to its hard limit: the test holds thousands of sockets.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
    }
    limit.rlim_cur
}

#[test]
fn stalled_clients_are_capped_and_dropped_while_the_probes_answer() {
    // Not beside a kernel capture: thousands of connections at once would overrun its ring.
    let _turn = crate::MACHINE_TURN.blocking_lock();
    let fds = raise_fd_limit();
    assert!(fds > 2 * STALLED as u64 + 512, "the test needs {} descriptors, has {fds}", 2 * STALLED + 512);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // A backlog for all of them: the clients connect at once, not as the server accepts.
    let endpoints = {
        let _inside = runtime.enter();
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        socket.listen(4096).unwrap()
    };
    let probes = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let (endpoints_at, probes_at) = (endpoints.local_addr().unwrap(), probes.local_addr().unwrap());
    let state = LiveState::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut seen: tokio::sync::watch::Receiver<bool>| async move {
        let _ = seen.wait_for(|s| *s).await;
    };
    let server = runtime.spawn(serve(endpoints, state.clone(), until_stopped(stopped.clone())));
    let probe_server = runtime.spawn(serve_probes(probes, state.clone(), until_stopped(stopped)));

    // The kubelet's view, every 50 ms throughout.
    let probing = Arc::new(AtomicBool::new(true));
    let prober = {
        let probing = probing.clone();
        std::thread::spawn(move || {
            let mut worst = Duration::ZERO;
            let mut failed = 0;
            while probing.load(Ordering::Relaxed) {
                let (status, took) = get(probes_at, "/healthz");
                failed += usize::from(status != 200);
                worst = worst.max(took);
                std::thread::sleep(Duration::from_millis(50));
            }
            (worst, failed)
        })
    };

    // Half send half a request and stop, half send nothing.
    let rss_before = rss_bytes();
    let started = Instant::now();
    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let mut stream = TcpStream::connect(endpoints_at).unwrap();
        if i % 2 == 0 {
            let _ = stream.write_all(b"GET /map HTTP/1.1\r\nHost: smap\r\nX-Slow: ");
        }
        stalled.push(stream);
    }
    let value = |series: &str| -> f64 {
        let text = state.render_metrics().unwrap();
        text.lines().find_map(|l| l.strip_prefix(series)).and_then(|v| v.trim().parse().ok()).unwrap_or(-1.0)
    };
    let open = || value("smap_http_connections_open{listener=\"endpoints\"}");
    let refused = || value("smap_http_connections_refused_total{listener=\"endpoints\"}");
    // Until the server has accepted the lot (some wait in the listen backlog).
    while open() + refused() < STALLED as f64 && started.elapsed() < Limits::ENDPOINTS.header_timeout {
        std::thread::sleep(Duration::from_millis(20));
    }
    let cap = Limits::ENDPOINTS.max_connections as f64;
    assert_eq!(open(), cap, "held: the cap, no more");
    assert_eq!(refused(), STALLED as f64 - cap, "the rest closed at accept");
    // What holding them costs: the cap's buffers and tasks, not 3,000 connections'
    // (54 MiB before the cap). The bound leaves room for the tests running beside it.
    let grown = rss_bytes().saturating_sub(rss_before);
    eprintln!("resident memory grew by {:.1} MiB while {STALLED} clients stalled", grown as f64 / 1048576.0);
    assert!(grown < 24 << 20, "resident memory grew by {grown} bytes");

    // Within the header timeout (and a second for the timers), every one is closed.
    let deadline = started + Limits::ENDPOINTS.header_timeout + Duration::from_secs(2);
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
    let mut still_open = 0;
    for stream in &mut stalled {
        stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut buf = [0u8; 512];
        // Closed: EOF or a reset (and an error page, if hyper wrote one before closing).
        let open = loop {
            match stream.read(&mut buf) {
                Ok(0) => break false,
                Ok(_) => continue,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break true,
                Err(_) => break false,
            }
        };
        still_open += usize::from(open);
    }
    assert_eq!(still_open, 0, "stalled connections still open after the header timeout");
    assert_eq!(get(endpoints_at, "/healthz").0, 200, "the endpoints serve again");

    probing.store(false, Ordering::Relaxed);
    let (worst, failed) = prober.join().unwrap();
    assert_eq!(failed, 0, "every probe answered 200");
    assert!(worst < Duration::from_millis(100), "the slowest probe took {worst:?}");

    stop.send(true).unwrap();
    runtime.block_on(server).unwrap().unwrap();
    runtime.block_on(probe_server).unwrap().unwrap();
}
