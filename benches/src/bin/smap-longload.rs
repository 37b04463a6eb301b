//! Loads of long-lived connections for the capture benchmarks, on loopback:
//!
//! - `smap-longload bulk CONNECTIONS MIB`: CONNECTIONS connections at once, each sending
//!   MIB mebibytes to a server that reads them; prints `bytes seconds mib_per_sec`.
//! - `smap-longload hold CONNECTIONS`: opens CONNECTIONS connections (over several
//!   server ports, so the ephemeral range is no limit), prints `ready`, and holds them
//!   until stdin closes. Needs `ulimit -n` of twice CONNECTIONS plus some.

use std::io::{BufRead, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::Instant;

/// Connections per server port in `hold`: below the default ephemeral range (28,232).
const PER_PORT: u64 = 25_000;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let result = match (args.first().map(String::as_str), number(1), number(2)) {
        (Some("bulk"), Some(connections), Some(mib)) => bulk(connections.max(1), mib),
        (Some("hold"), Some(connections), None) => hold(connections),
        _ => Err(std::io::Error::other("usage: smap-longload bulk CONNECTIONS MIB | hold CONNECTIONS")),
    };
    match result {
        Ok(line) => {
            #[expect(clippy::print_stdout, reason = "the tool's result")]
            {
                println!("{line}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            #[expect(clippy::print_stderr, reason = "the tool's error")]
            {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A loopback server that reads every connection to its end.
fn sink_server() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = vec![0u8; 256 * 1024];
                while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    Ok(addr)
}

fn bulk(connections: u64, mib: u64) -> std::io::Result<String> {
    let addr = sink_server()?;
    let streams: Vec<TcpStream> = (0..connections).map(|_| TcpStream::connect(addr)).collect::<Result<_, _>>()?;
    let started = Instant::now();
    let workers: Vec<_> = streams
        .into_iter()
        .map(|mut stream| {
            std::thread::spawn(move || -> std::io::Result<()> {
                let chunk = vec![0u8; 1 << 20];
                for _ in 0..mib {
                    stream.write_all(&chunk)?;
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| std::io::Error::other("a sender panicked"))??;
    }
    let secs = started.elapsed().as_secs_f64();
    let bytes = (connections * mib) << 20;
    Ok(format!("{bytes} {secs:.3} {:.0}", bytes as f64 / secs / f64::from(1 << 20)))
}

fn hold(connections: u64) -> std::io::Result<String> {
    let mut listeners = Vec::new();
    let mut held = Vec::new();
    let mut accepted = Vec::new();
    while (held.len() as u64) < connections {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let n = PER_PORT.min(connections - held.len() as u64);
        for _ in 0..n {
            held.push(TcpStream::connect(addr)?);
            accepted.push(listener.accept()?.0);
        }
        listeners.push(listener);
    }
    #[expect(clippy::print_stdout, reason = "the tool's readiness signal")]
    {
        println!("ready");
    }
    std::io::stdout().flush()?;
    for line in std::io::stdin().lock().lines() {
        line?;
    }
    Ok(format!("held {}", held.len()))
}
