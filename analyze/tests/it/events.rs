//! Every emission rule of the change-event emitter, on hand-built event sequences:
//! settling an instant, immediate and debounced changes, the rate limit, snapshots
//! (on change, periodic, skip_unchanged), TTL expiry, deletion, debug events, and
//! that idle-time advances never change the stream (a Service's own changes are in
//! `service_changes.rs`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use smap_analyze::events::model::{GoneReason, RemovalReason, SnapshotReason};
use smap_analyze::events::{ChangeData, ChangeEvent, ChangeTracker, EmitterOptions};
use smap_analyze::topology::{Endpoints, Health};
use smap_analyze::Config;
use smap_replay::{ConnEvent, ConnKind, Event, ObjectAction, ObjectKind, Side};

use crate::object;

pub(crate) const T0: i64 = 1_767_225_600_000_000_000;
pub(crate) const MS: i64 = 1_000_000;
pub(crate) const S: i64 = 1_000 * MS;

pub(crate) fn pod(name: &str, ip: &str, app: &str, image: &str, t: i64, action: ObjectAction) -> Event {
    let value = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "labels": {"app": app}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": image, "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.1",
                   "conditions": [{"type": "Ready", "status": "True"}]},
    });
    object(ObjectKind::Pod, action, value, t)
}

pub(crate) fn service(name: &str, cluster_ip: &str, t: i64, action: ObjectAction) -> Event {
    let value = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("svc-{name}")},
        "spec": {"clusterIP": cluster_ip, "selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080, "name": "http"}]},
    });
    object(ObjectKind::Service, action, value, t)
}

/// The EndpointSlice of a Service: (ip, pod, ready) per endpoint.
pub(crate) fn slice(service: &str, endpoints: &[(&str, &str, bool)], t: i64, action: ObjectAction) -> Event {
    let value = json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"name": format!("{service}-abc"), "namespace": "shop", "labels": {"kubernetes.io/service-name": service}},
        "endpoints": endpoints.iter().map(|(ip, pod, ready)| json!({
            "addresses": [ip], "conditions": {"ready": ready}, "targetRef": {"kind": "Pod", "name": pod, "namespace": "shop"}
        })).collect::<Vec<_>>(),
    });
    object(ObjectKind::EndpointSlice, action, value, t)
}

pub(crate) fn conn(kind: ConnKind, src: &str, sport: u16, dst: &str, dport: u16, t: i64) -> Event {
    Event::Conn(ConnEvent {
        time_ns: t,
        node: Arc::from("node-1"),
        kind,
        side: Side::Client,
        src_ip: src.parse().unwrap(),
        src_port: sport,
        dst_ip: dst.parse().unwrap(),
        dst_port: dport,
        pid: 7,
        comm: Arc::from("web"),
        cgroup_id: 1,
        netns: 1,
        socket_id: u64::from(sport),
        bytes_sent: 100,
        bytes_received: 1000,
        retransmits: 0,
        error: 0,
    })
}

/// One connection web -> api (ClusterIP), opened at `t`.
pub(crate) fn call(sport: u16, t: i64) -> Event {
    conn(ConnKind::TcpConnect, "10.244.1.10", sport, "10.96.0.20", 80, t)
}

/// web and api in namespace `shop`, both healthy, all at T0.
pub(crate) fn shop() -> Vec<Event> {
    let snapshot = ObjectAction::Snapshot;
    vec![
        pod("web-1", "10.244.1.10", "web", "registry.example/web:1.0", T0, snapshot),
        pod("api-1", "10.244.2.20", "api", "registry.example/api:1.0", T0, snapshot),
        service("web", "10.96.0.10", T0, snapshot),
        service("api", "10.96.0.20", T0, snapshot),
        slice("web", &[("10.244.1.10", "web-1", true)], T0, snapshot),
        slice("api", &[("10.244.2.20", "api-1", true)], T0, snapshot),
    ]
}

/// Rules short enough for tests: debounce 1s, rate limit 2s, snapshots every 60s,
/// TTL 30s.
pub(crate) fn config() -> Config {
    Config {
        change_debounce: Duration::from_secs(1),
        min_emit_interval: Duration::from_secs(2),
        full_snapshot_interval: Duration::from_secs(60),
        connection_ttl: Duration::from_secs(30),
        ..Config::default()
    }
}

pub(crate) struct Run {
    pub(crate) tracker: ChangeTracker,
}

impl Run {
    pub(crate) fn new(config: Config) -> Self {
        Run { tracker: ChangeTracker::new(config, EmitterOptions::default()) }
    }

    fn with(config: Config, options: EmitterOptions) -> Self {
        Run { tracker: ChangeTracker::new(config, options) }
    }

    pub(crate) fn feed(&mut self, events: impl IntoIterator<Item = Event>) -> Vec<ChangeEvent> {
        let mut out = Vec::new();
        for event in events {
            self.tracker.apply(&event, &mut out);
        }
        out
    }

    pub(crate) fn advance(&mut self, t: i64) -> Vec<ChangeEvent> {
        let mut out = Vec::new();
        self.tracker.advance(t, &mut out);
        out
    }

    pub(crate) fn finish(&mut self) -> Vec<ChangeEvent> {
        let mut out = Vec::new();
        self.tracker.finish(&mut out);
        out
    }
}

/// `(milliseconds after T0, event_type, subject)` per event: compact to assert on.
pub(crate) fn brief(events: &[ChangeEvent]) -> Vec<(i64, &'static str, String)> {
    events
        .iter()
        .map(|e| {
            let subject = match &e.data {
                ChangeData::ServiceDiscovered(d) => d.service.clone(),
                ChangeData::ServiceRemoved(d) => format!("{} {:?}", d.service, d.reason),
                ChangeData::DependencyDetected(d) => format!("{}->{}", d.source, d.destination),
                ChangeData::DependencyGone(d) => format!("{}->{} {:?}", d.source, d.destination, d.reason),
                ChangeData::HealthChanged(d) => format!("{} {}->{}", d.service, d.from.as_str(), d.to.as_str()),
                ChangeData::VersionChanged(d) => format!("{} {:?}->{:?}", d.service, d.from, d.to),
                ChangeData::EndpointsChanged(d) => {
                    format!("{} {}/{}->{}/{}", d.service, d.from.ready, d.from.total, d.to.ready, d.to.total)
                }
                ChangeData::ConnectionStats(d) => format!("{}->{} +{}", d.source, d.destination, d.delta.connections),
                ChangeData::ServiceMap(d) => format!("{:?}", d.reason),
                ChangeData::NetworkConnection(d) => format!("{}:{}", d.dest_ip, d.dest_port),
            };
            ((e.time_ns - T0) / MS, e.data.event_type(), subject)
        })
        .collect()
}

pub(crate) fn b(ms: i64, kind: &'static str, subject: &str) -> (i64, &'static str, String) {
    (ms, kind, subject.to_owned())
}

/// A run past the initial snapshot, the first web -> api call at T0 + 10ms and the
/// snapshot it causes (at 2s, the rate limit), with their events dropped: at T0 + 3s.
pub(crate) fn settled(config: Config) -> Run {
    let mut run = Run::new(config);
    run.feed(shop());
    run.feed([call(40_000, T0 + 10 * MS)]);
    run.advance(T0 + 3 * S);
    run
}

#[test]
fn an_instant_settles_once_into_discoveries_and_one_snapshot() {
    let mut run = Run::new(config());
    // Nothing comes out while the instant may still change.
    assert!(run.feed(shop()).is_empty());
    let out = run.advance(T0 + MS);
    assert_eq!(
        brief(&out),
        vec![
            b(0, "service_discovered", "shop/api"),
            b(0, "service_discovered", "shop/web"),
            b(0, "service_map", "TopologyChanged")
        ]
    );
    let ChangeData::ServiceDiscovered(api) = &out[0].data else { panic!() };
    assert_eq!(
        (api.health, api.endpoints, api.version.as_deref()),
        (Health::Healthy, Endpoints { ready: 1, total: 1 }, Some("1.0"))
    );
    // No per-object noise: the Service seen before its slice was never reported down.
    assert!(!out.iter().any(|e| e.data.event_type() == "health_changed"));
}

#[test]
fn a_first_call_is_a_dependency_at_once_then_counts_are_debounced() {
    let mut run = Run::new(config());
    run.feed(shop());
    let out = run.feed([call(40_000, T0 + 10 * MS)]);
    // The instant's discoveries settle first, then the dependency, in the same batch.
    assert_eq!(
        brief(&out),
        vec![
            b(0, "service_discovered", "shop/api"),
            b(0, "service_discovered", "shop/web"),
            b(0, "service_map", "TopologyChanged"),
            b(10, "dependency_detected", "shop/web->shop/api"),
        ]
    );
    let ChangeData::DependencyDetected(d) = &out[3].data else { panic!() };
    assert!(d.first_time && !d.cross_namespace);
    assert_eq!((d.ports[0].protocol.as_str(), d.ports[0].port, d.connections), ("tcp", 80, 1));
    // Three more calls within the debounce window: one report, a window after the first.
    let out = run.feed([call(40_001, T0 + 100 * MS), call(40_002, T0 + 200 * MS), call(40_003, T0 + 900 * MS)]);
    assert!(out.is_empty(), "{:?}", brief(&out));
    // The snapshot for the dependency is due once the instant is over, rate limit
    // allowing (2s after the first one).
    let out = run.advance(T0 + 5 * S);
    assert_eq!(
        brief(&out),
        vec![b(1_100, "connection_stats", "shop/web->shop/api +3"), b(2_000, "service_map", "TopologyChanged")]
    );
    let ChangeData::ConnectionStats(stats) = &out[0].data else { panic!() };
    assert_eq!((stats.total.connections, stats.delta.bytes_sent, stats.delta.bytes_received), (4, 0, 0));
    assert!((stats.interval_seconds - 1.09).abs() < 1e-9, "{}", stats.interval_seconds);
    assert_eq!(stats.connections_per_second, 2.752);
}

#[test]
fn the_rate_limit_spaces_reports_of_one_kind() {
    let mut run = settled(config());
    // Reported at 4.1s (debounce); the next change at 4.5s may not go out before
    // 6.1s (min_emit_interval 2s) although its debounce ends at 5.5s.
    let mut out = run.feed([call(41_000, T0 + 3_100 * MS), call(41_001, T0 + 4_500 * MS)]);
    out.extend(run.advance(T0 + 10 * S));
    assert_eq!(
        brief(&out),
        vec![
            b(4_100, "connection_stats", "shop/web->shop/api +1"),
            b(6_100, "connection_stats", "shop/web->shop/api +1")
        ]
    );
}

#[test]
fn a_dependency_without_traffic_for_the_ttl_is_gone_and_comes_back() {
    let mut run = settled(config());
    assert!(run.advance(T0 + 30 * S).is_empty(), "gone only once idle longer than the TTL");
    let out = run.advance(T0 + 31 * S);
    assert_eq!(
        brief(&out),
        vec![b(30_010, "dependency_gone", "shop/web->shop/api Idle"), b(30_010, "service_map", "TopologyChanged")]
    );
    let out = run.feed([call(42_000, T0 + 40 * S)]);
    let ChangeData::DependencyDetected(again) = &out[0].data else { panic!("{:?}", brief(&out)) };
    assert!(!again.first_time);
    assert_eq!(again.connections, 2);
}

#[test]
fn traffic_keeps_a_dependency_alive() {
    let mut run = settled(config());
    let mut out = Vec::new();
    for i in 1..=5 {
        out.extend(run.feed([call(43_000 + i, T0 + i64::from(i) * 20 * S)]));
    }
    out.extend(run.advance(T0 + 120 * S));
    assert!(!out.iter().any(|e| e.data.event_type() == "dependency_gone"), "{:?}", brief(&out));
    let gone: Vec<_> = brief(&run.advance(T0 + 131 * S)).into_iter().filter(|e| e.1 == "dependency_gone").collect();
    assert_eq!(gone, vec![b(130_000, "dependency_gone", "shop/web->shop/api Idle")]);
}

#[test]
fn a_workload_or_external_leaves_the_map_with_its_last_dependency() {
    let config = Config { include_external_services: true, ..config() };
    let mut run = Run::new(config);
    run.feed(shop());
    run.advance(T0 + MS);
    let out = run.feed([conn(ConnKind::TcpConnect, "10.244.2.20", 44_000, "93.184.216.34", 443, T0 + 5 * S)]);
    assert_eq!(
        brief(&out),
        vec![
            b(5_000, "service_discovered", "external/93.184.216.34:443"),
            b(5_000, "dependency_detected", "shop/api->external/93.184.216.34:443"),
        ]
    );
    let ChangeData::DependencyDetected(d) = &out[1].data else { panic!() };
    assert!(!d.cross_namespace, "an external is in no namespace");
    let out = run.advance(T0 + 40 * S);
    assert_eq!(
        brief(&out),
        vec![
            b(5_000, "service_map", "TopologyChanged"),
            b(35_000, "dependency_gone", "shop/api->external/93.184.216.34:443 Idle"),
            b(35_000, "service_removed", "external/93.184.216.34:443 Idle"),
            b(35_000, "service_map", "TopologyChanged"),
        ]
    );
}

#[test]
fn a_deleted_service_takes_its_dependencies_with_it() {
    let mut run = settled(config());
    let mut out = run.feed([
        service("api", "10.96.0.20", T0 + 5 * S, ObjectAction::Deleted),
        slice("api", &[], T0 + 5 * S, ObjectAction::Deleted),
    ]);
    out.extend(run.advance(T0 + 6 * S));
    assert_eq!(
        brief(&out),
        vec![
            b(5_000, "dependency_gone", "shop/web->shop/api ServiceRemoved"),
            b(5_000, "service_removed", "shop/api Deleted"),
            b(5_000, "service_map", "TopologyChanged"),
        ]
    );
    let ChangeData::ServiceRemoved(removed) = &out[1].data else { panic!() };
    assert_eq!(removed.reason, RemovalReason::Deleted);
    let ChangeData::DependencyGone(gone) = &out[0].data else { panic!() };
    assert_eq!(gone.reason, GoneReason::ServiceRemoved);
    // A connection of the old Service closing later does not bring it back.
    let out = run.feed([conn(ConnKind::TcpClose, "10.244.1.10", 40_000, "10.96.0.20", 80, T0 + 7 * S)]);
    assert!(out.is_empty(), "{:?}", brief(&out));
}

#[test]
fn periodic_snapshots_are_skipped_while_nothing_changes() {
    let mut run = settled(config());
    let out = run.advance(T0 + 200 * S);
    let maps: Vec<_> = brief(&out).into_iter().filter(|e| e.1 == "service_map").collect();
    // The dependency went at 30.01s: a snapshot; then nothing changes, and the
    // periodic ones (every 60s after the last) are skipped.
    assert_eq!(maps, vec![b(30_010, "service_map", "TopologyChanged")]);

    let config = Config { skip_unchanged: false, ..config() };
    let mut run = settled(config);
    let out = run.advance(T0 + 200 * S);
    let maps: Vec<_> = brief(&out).into_iter().filter(|e| e.1 == "service_map").collect();
    assert_eq!(
        maps,
        vec![
            b(30_010, "service_map", "TopologyChanged"),
            b(90_010, "service_map", "Periodic"),
            b(150_010, "service_map", "Periodic"),
        ]
    );
}

#[test]
fn periodic_snapshots_carry_traffic_changes() {
    let mut run = settled(config());
    let mut out = Vec::new();
    for i in 1..=9 {
        out.extend(run.feed([call(45_000 + i, T0 + i64::from(i) * 10 * S)]));
    }
    let maps: Vec<_> = brief(&out).into_iter().filter(|e| e.1 == "service_map").collect();
    // 60s after the last snapshot (at 2s), with new counts: not skipped.
    assert_eq!(maps, vec![b(62_000, "service_map", "Periodic")]);
    let Some(ChangeData::ServiceMap(map)) = out.iter().rev().map(|e| &e.data).find(|d| d.event_type() == "service_map")
    else {
        panic!()
    };
    assert_eq!(map.reason, SnapshotReason::Periodic);
    assert_eq!(map.connections.get("shop/web->shop/api"), Some(&7));
    assert_eq!(map.services["shop/web"].dependencies, vec!["shop/api"]);
    assert_eq!(map.services["shop/api"].dependents, vec!["shop/web"]);
    assert_eq!((map.summary.services, map.summary.dependencies, map.summary.unhealthy), (2, 1, 0));
}

#[test]
fn without_emit_on_change_only_periodic_snapshots_and_health_waits() {
    let config = Config { emit_on_change: false, ..config() };
    let mut run = settled(config);
    let mut out = run.feed([slice("api", &[("10.244.2.20", "api-1", false)], T0 + 5 * S, ObjectAction::Modified)]);
    out.extend(run.advance(T0 + 100 * S));
    assert_eq!(
        brief(&out),
        vec![
            b(6_000, "health_changed", "shop/api healthy->down"),
            b(6_000, "endpoints_changed", "shop/api 1/1->0/1"),
            b(30_010, "dependency_gone", "shop/web->shop/api Idle"),
            b(60_000, "service_map", "Periodic"),
        ]
    );
}

#[test]
fn finish_flushes_pending_reports_and_a_final_snapshot() {
    let mut run = settled(config());
    run.feed([call(46_000, T0 + 3_100 * MS)]);
    let out = run.finish();
    assert_eq!(
        brief(&out),
        vec![b(3_100, "connection_stats", "shop/web->shop/api +1"), b(3_100, "service_map", "Final")]
    );
}

#[test]
fn connection_events_are_emitted_only_when_debugging() {
    let mut run = Run::with(config(), EmitterOptions { debug_connections: true });
    run.feed(shop());
    let out = run.feed([call(40_000, T0 + 10 * MS)]);
    let debug: Vec<&ChangeEvent> = out.iter().filter(|e| e.data.event_type() == "network_connection").collect();
    assert_eq!(debug.len(), 1);
    let json: Value = serde_json::from_str(&debug[0].to_json()).unwrap();
    assert_eq!(
        json,
        json!({
            "event_type": "network_connection",
            "timestamp": "2026-01-01T00:00:00.010000000Z",
            "data": {
                "source_ip": "10.244.1.10", "dest_ip": "10.96.0.20", "source_port": 40000, "dest_port": 80,
                "protocol": "TCP", "process": "web", "pid": 7, "kind": "tcp_connect", "side": "client",
                "node": "node-1", "bytes_sent": 100, "bytes_received": 1000, "error": 0,
                "source": "shop/web", "destination": "shop/api"
            }
        })
    );
    let mut quiet = Run::new(config());
    quiet.feed(shop());
    let out = quiet.feed([call(40_000, T0 + 10 * MS)]);
    assert!(!out.iter().any(|e| e.data.event_type() == "network_connection"));
}

/// A busy script: discovery, calls, health changes, a rollout, idle periods.
fn script() -> Vec<Event> {
    let mut events = shop();
    for i in 0..40u16 {
        let t = T0 + i64::from(i) * 700 * MS;
        events.push(call(50_000 + i, t));
        events.push(conn(ConnKind::TcpClose, "10.244.1.10", 50_000 + i, "10.96.0.20", 80, t + 50 * MS));
    }
    events.push(slice("api", &[("10.244.2.20", "api-1", false)], T0 + 9 * S, ObjectAction::Modified));
    events.push(slice("api", &[("10.244.2.20", "api-1", true)], T0 + 9_500 * MS, ObjectAction::Modified));
    events.push(pod("api-1", "10.244.2.20", "api", "registry.example/api:2.0", T0 + 12 * S, ObjectAction::Modified));
    events.push(call(51_000, T0 + 100 * S));
    events.sort_by_key(|e| (e.time_ns(), matches!(e, Event::Conn(_))));
    events
}

#[test]
fn advancing_through_idle_time_never_changes_the_stream() {
    let mut plain = Run::new(config());
    let mut expected = plain.feed(script());
    expected.extend(plain.finish());

    // As live: every event, with advances (as ticks would) up to just before it.
    let mut live = Run::new(config());
    let mut got = Vec::new();
    let mut last = T0;
    for event in script() {
        let mut t = last + 300 * MS;
        while t < event.time_ns() {
            got.extend(live.advance(t));
            t += 300 * MS;
        }
        last = event.time_ns();
        got.extend(live.feed([event]));
    }
    got.extend(live.finish());
    assert_eq!(brief(&got), brief(&expected));
    assert_eq!(got, expected);
    assert!(expected.len() > 15, "{:?}", brief(&expected));
}

#[test]
fn counters_match_the_events_emitted() {
    let mut run = Run::with(config(), EmitterOptions { debug_connections: true });
    let mut out = run.feed(script());
    out.extend(run.finish());
    let counters = run.tracker.emitter().counters();
    for (index, kind) in smap_analyze::events::EVENT_TYPES.iter().enumerate() {
        let n = out.iter().filter(|e| e.data.event_type() == *kind).count() as u64;
        assert_eq!(counters.emitted[index], n, "{kind}");
    }
    assert_eq!(counters.discovered.get("service"), Some(&2));
    assert_eq!(counters.conn_events.get("tcp_connect"), Some(&41));
    assert_eq!(counters.connections_tracked.get("tcp"), Some(&41));
    assert_eq!(counters.dependencies_detected, [2, 0]);
    assert_eq!(counters.object_events.get(&("Pod", "snapshot")), Some(&2));
    let gauges = run.tracker.emitter().gauges();
    assert_eq!((gauges.services.get("service"), gauges.dependencies, gauges.down), (Some(&2), 1, 0));
}

#[test]
fn every_event_round_trips_through_json() {
    let mut run = Run::with(config(), EmitterOptions { debug_connections: true });
    let mut out = run.feed(script());
    out.extend(run.finish());
    for event in &out {
        let line = event.to_json();
        assert!(!line.contains('\n'));
        assert_eq!(&ChangeEvent::from_json(&line).unwrap(), event, "{line}");
    }
    assert!(ChangeEvent::from_json(r#"{"event_type":"nope","timestamp":"2026-01-01T00:00:00Z","data":{}}"#).is_err());
}

#[test]
fn the_stream_of_a_small_session() {
    let mut run = Run::new(config());
    let mut out = run.feed(script());
    out.extend(run.finish());
    let lines: Vec<String> = out.iter().map(ChangeEvent::to_json).collect();
    insta::assert_snapshot!(lines.join("\n"));
}
