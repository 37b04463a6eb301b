//! A TCP connection load generator for the capture benchmarks: a loopback server and
//! client threads making short connections (64 bytes each way) at a target rate.
//!
//! `smap-loadgen CONNECTIONS THREADS [RATE_PER_SEC]` prints `connections seconds conn_per_sec`.
//! RATE 0 (the default) means as fast as possible.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (connections, threads, rate) = match args.as_slice() {
        [c, t] => (*c, *t, 0),
        [c, t, r] => (*c, *t, *r),
        _ => {
            #[expect(clippy::print_stderr, reason = "usage of a benchmark tool")]
            {
                eprintln!("usage: smap-loadgen CONNECTIONS THREADS [RATE_PER_SEC]");
            }
            return ExitCode::from(2);
        }
    };
    match run(connections, threads.max(1), rate) {
        Ok((secs, made)) => {
            #[expect(clippy::print_stdout, reason = "the tool's result")]
            {
                println!("{made} {secs:.3} {:.0}", made as f64 / secs);
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

fn run(connections: u64, threads: u64, rate: u64) -> std::io::Result<(f64, u64)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 64];
            if stream.read_exact(&mut buf).is_ok() {
                let _ = stream.write_all(&buf);
            }
        }
    });
    let per_thread = connections / threads;
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<u64> {
                let gap =
                    if rate == 0 { Duration::ZERO } else { Duration::from_secs_f64(threads as f64 / rate as f64) };
                let begin = Instant::now();
                let mut made = 0;
                for i in 0..per_thread {
                    if !gap.is_zero() {
                        let due = begin + gap * u32::try_from(i).unwrap_or(u32::MAX);
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let mut stream = TcpStream::connect(addr)?;
                    stream.write_all(&[7u8; 64])?;
                    let mut buf = [0u8; 64];
                    stream.read_exact(&mut buf)?;
                    made += 1;
                }
                Ok(made)
            })
        })
        .collect();
    let mut made = 0;
    for worker in workers {
        made += worker.join().map_err(|_| std::io::Error::other("worker panicked"))??;
    }
    Ok((started.elapsed().as_secs_f64(), made))
}
