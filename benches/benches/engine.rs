//! Engine throughput: events folded per second, topology assembly and serialization.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smap_analyze::{Config, Engine};
use smap_benches::{simulated_events, simulated_facts};

/// The fold alone, events already in memory: 10^5, 10^6 and 10^7 connection events
/// (plus the cluster's objects) on 100 and 5,000 services. `SMAP_BENCH_MAX_EVENTS`
/// caps the sizes for a quick run.
fn fold(c: &mut Criterion) {
    let max: u64 = std::env::var("SMAP_BENCH_MAX_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    let mut group = c.benchmark_group("engine_fold");
    group.sample_size(10);
    for services in [100u32, 5_000] {
        for size in [100_000u64, 1_000_000, 10_000_000].into_iter().filter(|n| *n <= max) {
            let events = simulated_facts(services, size);
            group.throughput(Throughput::Elements(events.len() as u64));
            let id = BenchmarkId::new(format!("{services}_services"), size);
            group.bench_with_input(id, &events, |b, events| {
                b.iter(|| {
                    let mut engine = Engine::new(Config::default());
                    for event in events {
                        engine.apply(black_box(event));
                    }
                    black_box(engine.edges().count())
                });
            });
        }
    }
    group.finish();
}

fn topology(c: &mut Criterion) {
    let mut group = c.benchmark_group("topology");
    for services in [100u32, 5_000] {
        let events = simulated_events(services, 25_000);
        let mut engine = Engine::new(Config { include_external_services: true, ..Config::default() });
        for event in &events {
            engine.apply(event);
        }
        group.bench_function(BenchmarkId::new("assemble", services), |b| b.iter(|| black_box(engine.topology())));
        let topology = engine.topology();
        group.bench_function(BenchmarkId::new("to_json", services), |b| b.iter(|| black_box(topology.to_json())));
    }
    group.finish();
}

/// Resolution of addresses against the cluster as of now: ClusterIPs, pod IPs (through
/// EndpointSlices) and unknown addresses, on a 5,000-service cluster.
fn resolution(c: &mut Criterion) {
    use smap_analyze::engine::cluster::ClusterState;
    use smap_analyze::engine::resolve::{resolve_destination, resolve_source};
    use smap_replay::Event;

    let events = simulated_events(5_000, 1_000);
    let mut cluster = ClusterState::default();
    let mut addresses = Vec::new();
    for event in &events {
        match event {
            Event::Object(o) => {
                cluster.apply(o);
            }
            Event::Conn(c) => addresses.push((c.src_ip, c.dst_ip, c.dst_port)),
            Event::Dns(_) | Event::Cgroup(_) => {}
        }
    }
    let mut group = c.benchmark_group("resolution");
    group.throughput(Throughput::Elements(addresses.len() as u64));
    group.bench_function("destination_and_source_5000_services", |b| {
        b.iter(|| {
            for (src, dst, port) in &addresses {
                black_box(resolve_destination(&cluster, dst, *port));
                black_box(resolve_source(&cluster, src));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, fold, topology, resolution);
criterion_main!(benches);
