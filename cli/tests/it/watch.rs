//! `smap watch` without the kernel: its consumer driven with a recording's events as
//! the live pipeline hands them over, against `smap build --events` on the same
//! recording; and every HTTP endpoint, queried over a real socket.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smap_analyze::events::{ChangeEvent, EmitterOptions};
use smap_analyze::Config;
use smap_capture::kernel::KernelCounters;
use smap_capture::live::record::LiveConsumer;
use smap_capture::live::serve::{serve, LiveState};
use smap_capture::live::watch::{WatchConsumer, IDLE_LAG};
use smap_replay::{Event, LossCounters, MergedEvents, Recording};

use crate::{repo, smap, stdout};

const SHOP: &str = "fixtures/recordings/shop-simulated";
const FAST: &str = "fixtures/config/fast-events.yaml";

/// A `Write` the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn events_of(recording: &str) -> Vec<Event> {
    let recording = Recording::open(&repo().join(recording)).unwrap();
    MergedEvents::new(&[recording], Vec::new()).unwrap().map(Result::unwrap).collect()
}

fn fast_config() -> Config {
    Config::from_file(&repo().join(FAST)).unwrap()
}

/// Drives a consumer as `capture` does: ready, then batches, with a tick between
/// batches whose idle horizon reaches just short of the next event (the most a live
/// tick can advance without overtaking an event), then the end.
fn drive(consumer: &mut WatchConsumer, events: &[Event], batch: usize) {
    let lag = i64::try_from(IDLE_LAG.as_nanos()).unwrap();
    consumer.ready();
    let chunks: Vec<&[Event]> = events.chunks(batch).collect();
    for (index, chunk) in chunks.iter().enumerate() {
        consumer.events(chunk);
        if let Some(next) = chunks.get(index + 1) {
            consumer.tick(next[0].time_ns() - 1 + lag, &KernelCounters::default());
        }
    }
    consumer.finish().unwrap();
}

#[test]
fn the_live_path_streams_what_build_events_replays() {
    let out = smap(&["build", SHOP, "--config", FAST, "--events"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replayed = stdout(&out);
    let kinds: std::collections::BTreeSet<String> =
        replayed.lines().map(|line| ChangeEvent::from_json(line).unwrap().data.event_type().to_owned()).collect();
    // The fast rules make the rules fire within the fixture's 0.64s.
    for kind in [
        "service_discovered",
        "service_removed",
        "dependency_detected",
        "dependency_gone",
        "health_changed",
        "connection_stats",
        "service_map",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }

    let events = events_of(SHOP);
    for batch in [1, 7, 500] {
        let sink = Shared::default();
        let mut consumer =
            WatchConsumer::new(fast_config(), EmitterOptions::default(), Box::new(sink.clone()), LiveState::new())
                .unwrap();
        drive(&mut consumer, &events, batch);
        assert_eq!(sink.text(), replayed, "batches of {batch}");
    }
}

/// A copy of the SHOP recording in `dir`, its metadata edited.
fn shop_with_meta(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) -> std::path::PathBuf {
    let copy = dir.join("shop");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(repo().join(SHOP)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let meta_path = copy.join("recording.json");
    let mut meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    edit(&mut meta);
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    copy
}

#[test]
fn a_replay_fires_the_idle_timers_the_live_session_fired_after_its_last_event() {
    let events = events_of(SHOP);
    let last = events.last().unwrap().time_ns();
    // The session ran on, quiet, for 5 s after its last event; its last tick advanced
    // idle time to 3 s past it (TTLs end, periodic snapshots fall due).
    let last_tick = last + 5_000_000_000;
    let sink = Shared::default();
    let mut consumer =
        WatchConsumer::new(fast_config(), EmitterOptions::default(), Box::new(sink.clone()), LiveState::new()).unwrap();
    consumer.ready();
    consumer.events(&events);
    consumer.tick(last_tick, &KernelCounters::default());
    consumer.finish().unwrap();
    let live = sink.text();

    let dir = tempfile::tempdir().unwrap();
    let copy = shop_with_meta(dir.path(), |meta| meta["last_tick_ns"] = last_tick.into());
    let replayed = stdout(&smap(&["build", copy.to_str().unwrap(), "--config", FAST, "--events"]));
    assert_eq!(replayed, live);
    let without_ticks = stdout(&smap(&["build", SHOP, "--config", FAST, "--events"]));
    assert!(live.lines().count() > without_ticks.lines().count(), "the quiet time emitted events of its own");
}

#[test]
fn build_events_writes_to_a_file_and_the_topology_to_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("events.ndjson");
    let out = smap(&["build", SHOP, "--events", file.to_str().unwrap(), "--debug-connections"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), stdout(&smap(&["build", SHOP])));
    let text = std::fs::read_to_string(&file).unwrap();
    let debug = text.lines().filter(|l| l.starts_with(r#"{"event_type":"network_connection""#)).count();
    assert_eq!(debug, 2205, "one per connection event");
}

/// `GET path` over a fresh connection: (status, content type, body).
pub fn get(address: SocketAddr, path: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_owned))
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Parses the Prometheus text format strictly enough to catch a malformed line:
/// returns (`name{labels}`, value) per sample.
pub fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut samples = Vec::new();
    let mut typed = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "{line}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let name = series.split('{').next().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'), "{line}");
        assert!(name.starts_with("smap_") || name.starts_with("traces_service_graph_"), "{line}");
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        assert!(typed.contains(name) || typed.contains(family), "no TYPE before {line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for label in labels[1..labels.len() - 1].split(',') {
                    let (key, quoted) = label.split_once('=').unwrap();
                    assert!(key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                    assert!(quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
                }
            }
        }
        samples.push((series.to_owned(), value.parse::<f64>().unwrap()));
    }
    samples
}

pub fn sample(samples: &[(String, f64)], series: &str) -> f64 {
    samples.iter().find(|(s, _)| s == series).unwrap_or_else(|| panic!("no {series}")).1
}

#[test]
fn every_endpoint_serves_the_pipelines_state() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let address = listener.local_addr().unwrap();
    let state = LiveState::new();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));

    assert_eq!(get(address, "/healthz").0, 200);
    let (status, _, body) = get(address, "/readyz");
    assert_eq!(status, 503, "{body}");

    let sink = Shared::default();
    let mut consumer =
        WatchConsumer::new(fast_config(), EmitterOptions::default(), Box::new(sink.clone()), state.clone()).unwrap();
    let events = events_of(SHOP);
    drive(&mut consumer, &events, 100);
    assert_eq!(get(address, "/readyz").0, 200);

    let emitted: Vec<ChangeEvent> = sink.text().lines().map(|l| ChangeEvent::from_json(l).unwrap()).collect();
    let count = |kind: &str| emitted.iter().filter(|e| e.data.event_type() == kind).count() as f64;

    let (status, content_type, text) = get(address, "/metrics");
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let samples = parse_prometheus(&text);
    for kind in smap_analyze::events::EVENT_TYPES {
        let series = format!(r#"smap_change_events_total{{event_type="{kind}"}}"#);
        assert_eq!(sample(&samples, &series), count(kind), "{series}");
    }
    assert_eq!(
        sample(&samples, r#"smap_services_discovered_total{kind="service"}"#)
            + sample(&samples, r#"smap_services_discovered_total{kind="external"}"#)
            + sample(&samples, r#"smap_services_discovered_total{kind="workload"}"#)
            + sample(&samples, r#"smap_services_discovered_total{kind="node"}"#),
        count("service_discovered")
    );
    let detected = sample(&samples, r#"smap_dependencies_detected_total{cross_namespace="false"}"#)
        + sample(&samples, r#"smap_dependencies_detected_total{cross_namespace="true"}"#);
    assert_eq!(detected, count("dependency_detected"));
    let ebpf: f64 = samples.iter().filter(|(s, _)| s.starts_with("smap_ebpf_events_total")).map(|(_, v)| v).sum();
    assert_eq!(ebpf, 2205.0, "the recording's connection events");
    let k8s: f64 = samples.iter().filter(|(s, _)| s.starts_with("smap_k8s_api_calls_total")).map(|(_, v)| v).sum();
    assert_eq!(k8s, 39.0, "the recording's object events");
    assert_eq!(sample(&samples, "smap_ready"), 1.0);
    assert!(sample(&samples, r#"smap_processing_duration_seconds_count{operation="batch"}"#) >= 23.0);
    let health: f64 = samples.iter().filter(|(s, _)| s.starts_with("smap_health_changes_total")).map(|(_, v)| v).sum();
    assert_eq!(health, count("health_changed"));
    let active: f64 = samples.iter().filter(|(s, _)| s.starts_with("smap_services_active{")).map(|(_, v)| v).sum();
    let emitter = consumer.tracker().emitter();
    assert_eq!(active, emitter.gauges().services.values().sum::<u64>() as f64);

    let (status, content_type, map) = get(address, "/map");
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(map, stdout(&smap(&["build", SHOP, "--config", FAST])), "the map is what smap build writes");

    let (status, _, stats) = get(address, "/stats");
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["ready"], true);
    assert_eq!(stats["events"]["conn"], 2205);
    assert_eq!(stats["events"]["object"], 39);
    assert_eq!(stats["change_events"]["service_map"].as_f64().unwrap(), count("service_map"));
    assert_eq!(stats["engine"]["conn_events"], 2205);

    assert_eq!(get(address, "/nope").0, 404);
    stop.send(()).unwrap();
    runtime.block_on(server).unwrap().unwrap();
}

#[test]
fn the_live_map_reports_losses_as_build_reports_the_recordings() {
    let state = LiveState::new();
    let sink = Shared::default();
    let mut consumer =
        WatchConsumer::new(fast_config(), EmitterOptions::default(), Box::new(sink), state.clone()).unwrap();
    let events = events_of(SHOP);
    consumer.ready();
    consumer.events(&events);
    // What the pipeline hands over: the kernel's and the API watch's losses, as the
    // recording's counters take them.
    consumer.losses(&LossCounters { dropped: 6, evicted: 3, unparsed: 4 });
    consumer.tick(events.last().unwrap().time_ns(), &KernelCounters::default());
    consumer.finish().unwrap();

    // The recording such a capture writes carries the same losses in its counters.
    let dir = tempfile::tempdir().unwrap();
    let copy = shop_with_meta(dir.path(), |meta| {
        meta["counters"]["dropped"] = 6.into();
        meta["counters"]["evicted"] = 3.into();
        meta["counters"]["unparsed"] = 4.into();
    });

    let built = stdout(&smap(&["build", copy.to_str().unwrap(), "--config", FAST]));
    let live = String::from_utf8(state.published().map.to_vec()).unwrap();
    assert_eq!(live, built);
    let stats: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert_eq!((stats["stats"]["dropped"].as_u64(), stats["stats"]["evicted"].as_u64()), (Some(6), Some(3)));
}

#[test]
fn watch_without_privileges_or_with_a_bad_listen_address_fails_cleanly() {
    let out = smap(&["watch", "--listen", "not-an-address"]);
    assert_eq!(out.status.code(), Some(2));
    let out = smap(&["watch", "--config", "/nonexistent.yaml", "--node", "n"]);
    crate::assert_input_error(&out, "reading config");
}

#[test]
fn the_map_is_built_only_when_a_request_wants_it() {
    let state = LiveState::new();
    let mut consumer =
        WatchConsumer::new(fast_config(), EmitterOptions::default(), Box::new(Shared::default()), state.clone())
            .unwrap();
    let events = events_of(SHOP);
    consumer.ready();
    consumer.events(&events);
    let end = events.last().unwrap().time_ns();
    consumer.tick(end, &KernelCounters::default());
    assert_eq!(&state.published().map[..], b"{}\n", "nobody asked: no topology built");
    assert_eq!(state.stats()["events"]["conn"], 2205, "the stats are current all the same");
    // A request marks the map wanted; the next tick builds it.
    state.want_map();
    consumer.tick(end + 1_000_000_000, &KernelCounters::default());
    let map: serde_json::Value = serde_json::from_slice(&state.published().map).unwrap();
    assert!(!map["edges"].as_array().unwrap().is_empty(), "{map}");
    consumer.finish().unwrap();
}
