//! Many scrapers at once against `smap watch`'s endpoints: the live path of `smap watch`
//! (its consumer fed the shop recording, ticking every second as a live session does)
//! behind the real HTTP server, and CLIENTS threads each GETting `/metrics` every
//! second over a kept-alive connection, for SECONDS. Prints the answers, their latency
//! and the server's CPU time per second (its runtime's threads only), as a markdown
//! row for BENCHMARKS.md.
//!
//! `smap-scrape [CLIENTS [SECONDS]]` (default 100 and 60).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use smap_analyze::events::EmitterOptions;
use smap_analyze::Config;
use smap_capture::kernel::KernelCounters;
use smap_capture::live::record::LiveConsumer;
use smap_capture::live::serve::{serve, LiveState};
use smap_capture::live::watch::WatchConsumer;
use smap_replay::{Event, MergedEvents, Recording, TimeNs};

/// One scraper: GET /metrics every second on one connection, reconnecting when the
/// server closes it; the latency of each answer, and how many failed.
fn scraper(address: SocketAddr, until: Instant) -> (Vec<Duration>, usize) {
    let (mut latencies, mut failed) = (Vec::new(), 0);
    let mut connection: Option<BufReader<TcpStream>> = None;
    while Instant::now() < until {
        let started = Instant::now();
        let answered = (|| -> std::io::Result<()> {
            if connection.is_none() {
                let stream = TcpStream::connect(address)?;
                stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                connection = Some(BufReader::new(stream));
            }
            let Some(reader) = connection.as_mut() else { return Ok(()) };
            reader.get_mut().write_all(b"GET /metrics HTTP/1.1\r\nHost: smap\r\n\r\n")?;
            read_response(reader)
        })();
        match answered {
            Ok(()) => latencies.push(started.elapsed()),
            Err(_) => {
                failed += 1;
                connection = None;
            }
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
    (latencies, failed)
}

/// Reads one response with a Content-Length body; an error unless it is a 200.
fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<()> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let ok = line.starts_with("HTTP/1.1 200");
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    if ok {
        Ok(())
    } else {
        Err(std::io::ErrorKind::InvalidData.into())
    }
}

/// The name of the server runtime's threads.
const SERVER_THREADS: &str = "smap-http";

/// CPU time of the HTTP server: the runtime's threads (named [`SERVER_THREADS`]), not
/// the scrapers or the pipeline.
fn server_cpu_seconds() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    let mut total = 0.0;
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != SERVER_THREADS {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // After the parenthesised name: state is field 3, utime 14 and stime 15.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        total += (field(14) + field(15)) / ticks;
    }
    total
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

#[expect(clippy::print_stdout, clippy::print_stderr, reason = "a measurement tool: the row is its output")]
fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(60);
    let recording = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/recordings/shop-simulated");
    let events: Vec<Event> = match Recording::open(&recording)
        .and_then(|r| MergedEvents::new(std::slice::from_ref(&r), vec![])?.collect::<Result<Vec<_>, _>>())
    {
        Ok(events) => events,
        Err(error) => {
            eprintln!("error: reading {}: {error}", recording.display());
            return ExitCode::FAILURE;
        }
    };
    let Ok(runtime) =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name(SERVER_THREADS).enable_all().build()
    else {
        eprintln!("error: starting the runtime");
        return ExitCode::FAILURE;
    };
    let state = LiveState::new();
    let listener = match runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: listening: {error}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(address) = listener.local_addr() else { return ExitCode::FAILURE };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));

    // The pipeline: the recording once, then a tick every second, as a live session.
    let running = Arc::new(AtomicBool::new(true));
    let pipeline = {
        let (state, running) = (state.clone(), running.clone());
        std::thread::spawn(move || -> std::io::Result<()> {
            let mut consumer =
                WatchConsumer::new(Config::default(), EmitterOptions::default(), Box::new(std::io::sink()), state)?;
            consumer.ready();
            consumer.events(&events);
            let mut now: TimeNs = events.last().map_or(0, Event::time_ns);
            while running.load(Ordering::Relaxed) {
                now += 1_000_000_000;
                consumer.tick(now, &KernelCounters::default());
                std::thread::sleep(Duration::from_secs(1));
            }
            consumer.finish()
        })
    };
    std::thread::sleep(Duration::from_secs(2));

    let cpu_before = server_cpu_seconds();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let scrapers: Vec<_> = (0..clients).map(|_| std::thread::spawn(move || scraper(address, until))).collect();
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for scraper in scrapers {
        if let Ok((l, f)) = scraper.join() {
            latencies.extend(l);
            failed += f;
        }
    }
    let cpu = (server_cpu_seconds() - cpu_before) / started.elapsed().as_secs_f64();
    running.store(false, Ordering::Relaxed);
    let _ = pipeline.join();
    let _ = stop.send(());
    let _ = runtime.block_on(server);

    latencies.sort();
    println!("| scrapers | seconds | answered | failed | p50 | p99 | max | server CPU (cores) |");
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {clients} | {seconds} | {} | {failed} | {:.1} ms | {:.1} ms | {:.1} ms | {cpu:.2} |",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0)
    );
    ExitCode::SUCCESS
}
