//! Recording write and read throughput, and bytes on disk per event.
#![expect(clippy::print_stderr, reason = "the bytes-per-event figure is part of the benchmark's report")]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use smap_benches::simulated_events;
use smap_replay::{Event, LossCounters, Recording, RecordingMeta, RecordingWriter, WriterOptions};

fn write(events: &[Event], dir: &std::path::Path) -> u64 {
    write_with(events, dir, WriterOptions::default())
}

/// Writes as a live capture does with `WriterOptions::live()`: journaled, committed
/// every 256 events (a drain's batch), synced at most every second.
fn write_with(events: &[Event], dir: &std::path::Path, options: WriterOptions) -> u64 {
    let journaled = options.journal_sync.is_some();
    let mut writer =
        RecordingWriter::create(dir, RecordingMeta::new("bench", "n", ""), options).unwrap_or_else(|e| panic!("{e}"));
    for (i, event) in events.iter().enumerate() {
        writer.write_event(event).unwrap_or_else(|e| panic!("{e}"));
        if journaled && i % 256 == 255 {
            writer.commit().unwrap_or_else(|e| panic!("{e}"));
        }
    }
    writer.finish(&LossCounters::default()).unwrap_or_else(|e| panic!("{e}"));
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

fn recording(c: &mut Criterion) {
    let events = simulated_events(100, 100_000);
    let conns = events.iter().filter(|e| matches!(e, Event::Conn(_))).count() as u64;
    let mut group = c.benchmark_group("recording");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("write", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            black_box(write(&events, &dir.path().join("rec")))
        })
    });
    // Side by side in one run: the journal's cost on the writer thread.
    group.bench_function("write_journaled", |b| {
        b.iter(|| {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            black_box(write_with(&events, &dir.path().join("rec"), WriterOptions::live()))
        })
    });
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = dir.path().join("rec");
    let bytes = write(&events, &path);
    eprintln!(
        "recording: {conns} connection events, {bytes} bytes on disk, {:.2} bytes per event",
        bytes as f64 / conns as f64
    );
    group.bench_function("read", |b| {
        b.iter(|| {
            let recording = Recording::open(&path).unwrap_or_else(|e| panic!("{e}"));
            black_box(recording.conn_events().count())
        })
    });
    // What `smap build` reads: the engine's columns, decoded on a thread of their own.
    group.bench_function("read_facts", |b| {
        b.iter(|| {
            let recording = Recording::open(&path).unwrap_or_else(|e| panic!("{e}"));
            let batches = recording.conn_facts().in_background(|f| f).unwrap_or_else(|e| panic!("{e}"));
            black_box(batches.map(|b| b.map(|b| b.len()).unwrap_or_else(|e| panic!("{e}"))).sum::<usize>())
        })
    });
    group.finish();
}

criterion_group!(benches, recording);
criterion_main!(benches);
