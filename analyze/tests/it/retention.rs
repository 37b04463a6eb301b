//! `map_retention`: what the map forgets (edges with no traffic and no open
//! connection, their nodes, deleted Services' labels), what it must not forget (a
//! silent connection still open), and that ids handed out again name the right nodes.

use std::time::Duration;

use serde_json::json;
use smap_analyze::events::ChangeData;
use smap_analyze::{Config, Engine};
use smap_replay::{ConnKind, Event, ObjectAction, ObjectKind, Side};

use crate::events::{self, b, brief, settled, Run, S};
use crate::object;
use crate::resolution::{conn, edge, edges, shop, MS, T0};

const MINUTE: i64 = 60 * S;
const HOUR: Duration = Duration::from_secs(3600);

fn client(kind: ConnKind, src: &str, sport: u16, dst: &str, t: i64, bytes: (u64, u64)) -> Event {
    let mut e = conn(kind, Side::Client, src, sport, dst, 80, t);
    (e.bytes_sent, e.bytes_received) = bytes;
    Event::Conn(e)
}

/// api calling web every ten minutes from `from` to `to`: traffic that makes the
/// engine sweep while the connection under test stays silent.
fn background(from: i64, to: i64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut t = from;
    let mut port = 50_000;
    while t < to {
        out.push(client(ConnKind::TcpConnect, "10.244.2.20", port, "10.96.0.10", t, (0, 0)));
        out.push(client(ConnKind::TcpClose, "10.244.2.20", port, "10.96.0.10", t + MS, (10, 20)));
        (t, port) = (t + 10 * MINUTE, port + 1);
    }
    out
}

fn fold(config: Config, events: &[Event]) -> Engine {
    let mut engine = Engine::new(config);
    for e in events {
        engine.apply(e);
    }
    engine
}

#[test]
fn a_silent_open_connection_keeps_its_edge_and_a_closed_one_is_forgotten() {
    let config = Config { map_retention: Some(HOUR), ..Config::default() };
    let web = "10.244.1.10";
    // Open at T0, silent for three hours (an idle pool connection), closed at the end.
    let mut events = shop();
    events.push(client(ConnKind::TcpConnect, web, 40_000, "10.96.0.20", T0 + MS, (0, 0)));
    events.extend(background(T0 + MINUTE, T0 + 180 * MINUTE));
    events.push(client(ConnKind::TcpClose, web, 40_000, "10.96.0.20", T0 + 180 * MINUTE, (500, 7000)));
    let engine = fold(config.clone(), &events);
    let topology = engine.topology();
    assert_eq!(
        edges(&topology).into_iter().filter(|e| e.0 == "shop/web").collect::<Vec<_>>(),
        [edge("shop/web", "shop/api", "tcp", 80, 1, 0, 500, 7000)]
    );
    assert_eq!(topology.stats.forgotten_edges, 0);

    // The same connection closed at once: three silent hours later it is forgotten.
    let mut events = shop();
    events.push(client(ConnKind::TcpConnect, web, 40_000, "10.96.0.20", T0 + MS, (0, 0)));
    events.push(client(ConnKind::TcpClose, web, 40_000, "10.96.0.20", T0 + 2 * MS, (500, 7000)));
    events.extend(background(T0 + MINUTE, T0 + 180 * MINUTE));
    let topology = fold(config, &events).topology();
    assert!(edges(&topology).iter().all(|e| e.0 != "shop/web"), "{:?}", edges(&topology));
    assert_eq!(topology.stats.forgotten_edges, 1);
    // Without map_retention (`smap build`) it stays.
    let topology = fold(Config::default(), &events).topology();
    assert!(edges(&topology).iter().any(|e| e.0 == "shop/web"));
    assert_eq!(topology.stats.forgotten_edges, 0);
}

#[test]
fn a_deleted_services_labels_last_while_its_traffic_is_remembered() {
    let config = Config { map_retention: Some(HOUR), ..Config::default() };
    let mut events = shop();
    events.push(client(ConnKind::TcpConnect, "10.244.1.10", 40_000, "10.96.0.20", T0 + S, (0, 0)));
    events.push(client(ConnKind::TcpClose, "10.244.1.10", 40_000, "10.96.0.20", T0 + 2 * S, (5, 50)));
    let deleted = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "api", "namespace": "shop", "uid": "svc-api"},
        "spec": {"clusterIP": "10.96.0.20", "selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 8080}]},
    });
    events.push(object(ObjectKind::Service, ObjectAction::Deleted, deleted, T0 + 5 * S));
    events.extend(background(T0 + MINUTE, T0 + 30 * MINUTE));
    let engine = fold(config.clone(), &events);
    assert_eq!(engine.footprint().retired_services, 1);
    assert!(engine.topology().services.contains_key("shop/api"), "its edge is still in the map");

    events.extend(background(T0 + 30 * MINUTE, T0 + 120 * MINUTE));
    let engine = fold(config, &events);
    assert_eq!(engine.footprint().retired_services, 0);
    let topology = engine.topology();
    assert!(!topology.services.contains_key("shop/api"), "{:?}", topology.services.keys());
    assert!(topology.edges.iter().all(|e| e.destination != "shop/api"));
}

#[test]
fn a_forgotten_dependency_is_new_when_it_returns_and_reused_ids_name_the_right_services() {
    let config = Config { map_retention: Some(Duration::from_secs(60)), ..events::config() };
    let mut run: Run = settled(config);
    run.feed([events::conn(ConnKind::TcpClose, "10.244.1.10", 40_000, "10.96.0.20", 80, 3 * S + T0)]);
    let gone = run.advance(T0 + 40 * S);
    assert!(brief(&gone).contains(&b(33_000, "dependency_gone", "shop/web->shop/api Idle")), "{:?}", brief(&gone));
    // Past the retention: the first event sweeps web -> api (and both nodes' ids) away,
    // then makes api -> web with ids handed out again.
    let out = run.feed([
        events::conn(ConnKind::TcpConnect, "10.244.2.20", 41_000, "10.96.0.10", 80, T0 + 100 * S),
        events::conn(ConnKind::TcpConnect, "10.244.1.10", 42_000, "10.96.0.20", 80, T0 + 101 * S),
    ]);
    let detected: Vec<(String, bool, u64)> = out
        .iter()
        .filter_map(|e| match &e.data {
            ChangeData::DependencyDetected(d) => {
                Some((format!("{}->{}", d.source, d.destination), d.first_time, d.connections))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        detected,
        [("shop/api->shop/web".to_owned(), true, 1), ("shop/web->shop/api".to_owned(), true, 1)],
        "{:?}",
        brief(&out)
    );
    let engine = run.tracker.engine();
    assert_eq!(engine.topology().stats.forgotten_edges, 1);
    assert_eq!(run.tracker.emitter().footprint().pairs, 2);
}
