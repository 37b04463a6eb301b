//! The soak's figures: a day (by default) of simulated churn through the live path of
//! `smap watch`, once without `map_retention` (what `smap build` keeps: everything)
//! and once with the watch default, side by side in one run, with the heap each holds
//! (counted by a wrapping allocator, exact) every hour of event time.
//!
//! `smap-soak [HOURS [CONNECTIONS_PER_SECOND]]` (default 24 and 50) prints a markdown
//! table for BENCHMARKS.md.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use smap_analyze::config::WATCH_MAP_RETENTION;
use smap_analyze::Config;
use smap_benches::heap::{allocated, Counting};
use smap_benches::soak::{soak, SoakSample};
use smap_replay::simulate::churn::ChurnOptions;

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Row {
    sample: SoakSample,
    heap: usize,
}

#[expect(clippy::print_stderr, reason = "progress of a long measurement")]
fn run(churn: &ChurnOptions, config: Config) -> std::io::Result<(Vec<Row>, Duration)> {
    let base = allocated();
    let mut rows = Vec::new();
    let started = Instant::now();
    let hour = Duration::from_secs(3600);
    // Ticks every second of event time, as a live session does.
    let consumer = soak(churn.clone(), config, Duration::from_secs(1), hour, |sample| {
        rows.push(Row { sample: *sample, heap: allocated().saturating_sub(base) });
        eprintln!(
            "{:.0} h of event time after {:.0} s",
            sample.elapsed.as_secs_f64() / 3600.0,
            started.elapsed().as_secs_f64()
        );
    })?;
    drop(consumer);
    Ok((rows, started.elapsed()))
}

#[expect(clippy::print_stdout, clippy::print_stderr, reason = "a measuring tool's report")]
fn main() -> ExitCode {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let hours = args.first().copied().unwrap_or(24).max(1);
    let rate = args.get(1).copied().unwrap_or(50).max(1);
    let churn = ChurnOptions {
        duration: Duration::from_secs(hours * 3600),
        connections_per_second: rate,
        ..ChurnOptions::default()
    };
    let unbounded = run(&churn, Config::default());
    let bounded = run(&churn, Config { map_retention: Some(WATCH_MAP_RETENTION), ..Config::default() });
    let ((plain, plain_time), (kept, kept_time)) = match (unbounded, bounded) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{hours} h of churn at {rate} connections/s: {} services, {} pods each, {} pod restarts/h, {} preview environments/h living {} min\n",
        churn.services,
        churn.pods_per_service,
        churn.restarts_per_hour,
        churn.previews_per_hour,
        churn.preview_lifetime.as_secs() / 60
    );
    println!("| hour | events | no retention: heap MiB | nodes | edges | retired | views | pairs | map_retention 1h: heap MiB | nodes | edges | retired | views | pairs |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mib = |b: usize| b as f64 / 1_048_576.0;
    for (a, b) in plain.iter().zip(&kept) {
        let cells = |r: &Row| {
            format!(
                "{:.2} | {} | {} | {} | {} | {}",
                mib(r.heap),
                r.sample.engine.entities,
                r.sample.engine.edges,
                r.sample.engine.retired_services,
                r.sample.emitter.views,
                r.sample.emitter.pairs
            )
        };
        println!(
            "| {:.0} | {} | {} | {} |",
            a.sample.elapsed.as_secs_f64() / 3600.0,
            a.sample.events,
            cells(a),
            cells(b)
        );
    }
    println!("\nwall time: {:.1} s without retention, {:.1} s with", plain_time.as_secs_f64(), kept_time.as_secs_f64());
    ExitCode::SUCCESS
}
