//! Engine throughput: events folded per second, topology assembly and serialization.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smap_analyze::{Config, Engine};
use smap_benches::simulated_events;

fn fold(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine_fold");
    group.sample_size(10);
    for (services, connections) in [(100u32, 25_000u64), (5_000, 25_000), (100, 250_000)] {
        let events = simulated_events(services, connections);
        group.throughput(Throughput::Elements(events.len() as u64));
        let id = BenchmarkId::new(format!("{services}_services"), events.len());
        group.bench_with_input(id, &events, |b, events| {
            b.iter(|| {
                let mut engine = Engine::new(Config::default());
                for event in events {
                    engine.apply(black_box(event));
                }
                black_box(engine.edges().len())
            });
        });
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

criterion_group!(benches, fold, topology);
criterion_main!(benches);
