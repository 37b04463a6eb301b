//! Six hours of churn (pods replaced, preview environments created and deleted under
//! new names, TCP and UDP calls) through the live path: what it holds stays flat once
//! `map_retention` has passed, and the map still shows what is current.

use std::time::Duration;

use smap_analyze::Config;
use smap_benches::soak::{soak, SoakSample};
use smap_replay::simulate::churn::ChurnOptions;

const HOUR: Duration = Duration::from_secs(3600);

fn churn() -> ChurnOptions {
    ChurnOptions {
        duration: 6 * HOUR,
        services: 10,
        connections_per_second: 10,
        previews_per_hour: 12,
        preview_lifetime: HOUR / 2,
        restarts_per_hour: 120,
        ..ChurnOptions::default()
    }
}

/// One figure of a sample.
type Figure = fn(&SoakSample) -> usize;

/// The largest value of `figure` among samples in `[from, to)`.
fn peak(samples: &[SoakSample], from: Duration, to: Duration, figure: Figure) -> usize {
    samples.iter().filter(|s| s.elapsed >= from && s.elapsed < to).map(figure).max().unwrap_or(0)
}

#[test]
fn six_hours_of_churn_hold_no_more_than_the_second_and_third() {
    let config = Config { map_retention: Some(HOUR), ..Config::default() };
    let mut samples = Vec::new();
    let consumer = soak(churn(), config, Duration::from_secs(10), HOUR / 4, |s| samples.push(*s)).unwrap();
    let table: String = samples
        .iter()
        .map(|s| {
            format!(
                "{:>5.2} h {:>8} events {:?} {:?}\n",
                s.elapsed.as_secs_f64() / 3600.0,
                s.events,
                s.engine,
                s.emitter
            )
        })
        .collect();
    // Once retention and a preview's lifetime have passed, what is held only follows
    // what the cluster is doing: hours 4 to 6 peak no higher than hours 2 to 4.
    let figures: [(&str, Figure); 8] = [
        ("entities", |s| s.engine.entities),
        ("edges", |s| s.engine.edges),
        ("retired services", |s| s.engine.retired_services),
        ("object versions", |s| s.engine.object_versions),
        ("pods", |s| s.engine.pods),
        ("views", |s| s.emitter.views),
        ("pairs", |s| s.emitter.pairs),
        ("timers", |s| s.emitter.timers),
    ];
    for (name, figure) in figures {
        let (early, late) = (peak(&samples, 2 * HOUR, 4 * HOUR, figure), peak(&samples, 4 * HOUR, 7 * HOUR, figure));
        assert!(late <= early + early / 10 + 2, "{name} grew: peak {early} in hours 2-4, {late} in hours 4-6\n{table}");
    }
    let last = samples.last().unwrap();
    assert!(last.engine.edges > 0 && last.engine.retired_services < 20, "{last:?}");
    // Forgetting left what is current: every long-lived service still calls others.
    let topology = consumer.tracker().engine().topology();
    assert!(topology.stats.forgotten_edges > 0, "nothing was forgotten: {:?}", topology.stats);
    for n in 0..10 {
        let id = format!("prod/svc-{n}");
        let node = topology.services.get(&id).unwrap_or_else(|| panic!("{id} missing"));
        assert!(!node.dependencies.is_empty() && !node.dependents.is_empty(), "{id}: {node:?}");
    }
}

#[test]
fn without_retention_the_same_churn_grows() {
    // The control: the figures above are flat because of map_retention, not because
    // the churn is too slow to show growth.
    let mut samples = Vec::new();
    let churn = ChurnOptions { duration: 4 * HOUR, ..churn() };
    soak(churn, Config::default(), Duration::from_secs(10), HOUR, |s| samples.push(*s)).unwrap();
    let at = |hour: u32| samples.iter().find(|s| s.elapsed >= hour * HOUR).map(|s| (s.engine, s.emitter)).unwrap();
    let ((engine_2, emitter_2), (engine_4, emitter_4)) = (at(2), at(4));
    assert!(engine_4.entities > engine_2.entities + 10, "{engine_2:?} {engine_4:?}");
    assert!(engine_4.retired_services > engine_2.retired_services + 10, "{engine_2:?} {engine_4:?}");
    assert!(emitter_4.views > emitter_2.views + 10, "{emitter_2:?} {emitter_4:?}");
}
