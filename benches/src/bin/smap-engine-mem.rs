//! Engine memory at scale: the resident memory the engine's state takes for a cluster of
//! many services with many connections open at once (the state `smap watch` keeps).
//!
//! `smap-engine-mem SERVICES LIVE_CONNECTIONS` prints the heap the engine holds (counted
//! by a wrapping allocator, exact) and the process's RSS, before and after the traffic.

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;

use smap_analyze::{Config, Engine};
use smap_benches::heap::{allocated, Counting};
use smap_replay::simulate::{simulate, Scenario, SimOptions};
use smap_replay::{ConnEvent, ConnKind, Event, MergedEvents, Recording, Side};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

#[expect(clippy::print_stdout, clippy::print_stderr, reason = "a measuring tool's report")]
fn main() -> ExitCode {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let [services, live] = args.as_slice() else {
        eprintln!("usage: smap-engine-mem SERVICES LIVE_CONNECTIONS");
        return ExitCode::from(2);
    };
    // The cluster's objects, from the simulator (no traffic).
    let Ok(dir) = tempfile::tempdir() else { return ExitCode::FAILURE };
    let out = dir.path().join("rec");
    let scenario =
        Scenario { calls: Vec::new(), ..Scenario::generated(u32::try_from(*services).unwrap_or(u32::MAX), 3, 0) };
    if let Err(e) = simulate(&scenario, &SimOptions { connections: 0, ..SimOptions::default() }, &out) {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let objects: Vec<Event> = match Recording::open(&out).and_then(|r| MergedEvents::new(&[r], Vec::new())) {
        Ok(events) => events.filter_map(Result::ok).collect(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let pod_ips: Vec<IpAddr> =
        (1..=services * 3).map(|n| IpAddr::from([10, 244, (n / 250) as u8, (1 + n % 250) as u8])).collect();
    let cluster_ips: Vec<IpAddr> =
        (11..11 + services).map(|n| IpAddr::from([10, 96, (n / 250) as u8, (n % 250) as u8])).collect();

    let heap_start = allocated();
    let mut engine =
        Engine::new(Config { max_connections: usize::try_from(*live).unwrap_or(usize::MAX) + 1, ..Config::default() });
    // The connection table is allocated at its full capacity up front.
    let table_heap = allocated() - heap_start;
    let heap_empty = allocated();
    for event in &objects {
        engine.apply(event);
    }
    let cluster_heap = allocated() - heap_empty;
    drop(objects);
    let heap_before = allocated();
    let before = rss_kib();
    let (node, comm) = (Arc::<str>::from("node-1"), Arc::<str>::from("client"));
    for i in 0..*live {
        // Open connections (no close yet), spread over every pod and service.
        let event = ConnEvent {
            time_ns: 1_767_225_600_000_000_000 + i as i64 * 1000,
            node: node.clone(),
            kind: ConnKind::TcpConnect,
            side: Side::Client,
            src_ip: pod_ips[i as usize % pod_ips.len()],
            src_port: 1024 + (i / pod_ips.len() as u64) as u16,
            dst_ip: cluster_ips[(i as usize * 13) % cluster_ips.len()],
            dst_port: 8080,
            pid: 1,
            comm: comm.clone(),
            cgroup_id: 1,
            netns: 1,
            socket_id: i,
            bytes_sent: 0,
            bytes_received: 0,
            retransmits: 0,
            error: 0,
        };
        engine.apply(&Event::Conn(event));
    }
    let after = rss_kib();
    let heap_after = allocated();
    let edges = engine.edges().count();
    let traffic_heap = table_heap + (heap_after - heap_before);
    let per_connection = traffic_heap as f64 / engine.live_connections().max(1) as f64;
    let mib = |b: usize| b as f64 / 1_048_576.0;
    println!(
        "{services} services, {} live connections, {edges} edges: engine heap {:.1} MiB = cluster state {:.1} MiB + connections, edges and caches {:.1} MiB ({per_connection:.0} B per live connection); process RSS {} -> {} MiB",
        engine.live_connections(),
        mib(cluster_heap + traffic_heap),
        mib(cluster_heap),
        mib(traffic_heap),
        before / 1024,
        after / 1024
    );
    ExitCode::SUCCESS
}
