//! Why connections failed, and what they retransmitted, per edge: in the topology and
//! in the change events a live map sends.

use smap_analyze::events::ChangeData;
use smap_analyze::topology::Failures;
use smap_analyze::Config;
use std::sync::Arc;

use smap_replay::{ConnEvent, ConnKind, Event, Side};

use crate::resolution::{conn, run, shop, MS, T0};

/// web -> api attempts that failed with these errnos, one client port each.
fn failed_attempts(errnos: &[u16]) -> Vec<Event> {
    errnos
        .iter()
        .enumerate()
        .map(|(i, &errno)| {
            let port = 41000 + i as u16;
            let mut e = conn(ConnKind::TcpConnectFailed, Side::Client, "10.244.1.10", port, "10.96.0.20", 80, T0 + MS);
            e.error = errno;
            Event::Conn(e)
        })
        .collect()
}

#[test]
fn failed_connects_are_counted_by_cause_on_their_edge() {
    // refused, timed out twice, host and network unreachable, reset, closed by the
    // application before the handshake finished, and an errno without a name here.
    let mut events = shop();
    events.extend(failed_attempts(&[111, 110, 110, 113, 101, 104, 0, 22]));
    let t = run(Config::default(), events);
    assert_eq!(t.edges.len(), 1);
    let edge = &t.edges[0];
    assert_eq!((edge.source.as_str(), edge.destination.as_str(), edge.failed), ("shop/web", "shop/api", 8));
    let expected = Failures { refused: 1, timed_out: 2, unreachable: 2, reset: 1, abandoned: 1, other: 1 };
    assert_eq!(edge.failures, expected);
    let json: serde_json::Value = serde_json::from_str(&t.to_json()).unwrap();
    assert_eq!(
        json["edges"][0]["failures"],
        serde_json::json!({"refused": 1, "timed_out": 2, "unreachable": 2, "reset": 1, "abandoned": 1, "other": 1})
    );
}

#[test]
fn an_edge_without_failures_or_retransmits_writes_neither_key() {
    let mut events = shop();
    let open = conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, T0 + MS);
    let mut close = open.clone();
    close.kind = ConnKind::TcpClose;
    close.time_ns += MS;
    events.extend([Event::Conn(open), Event::Conn(close)]);
    let json: serde_json::Value = serde_json::from_str(&run(Config::default(), events).to_json()).unwrap();
    let edge = json["edges"][0].as_object().unwrap();
    assert!(!edge.contains_key("failures") && !edge.contains_key("retransmits"), "{edge:?}");
}

#[test]
fn retransmits_of_both_ends_add_up_on_the_edge() {
    let mut events = shop();
    let mut client = conn(ConnKind::TcpClose, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, T0 + MS);
    client.retransmits = 3;
    let mut server = conn(ConnKind::TcpClose, Side::Server, "10.244.1.10", 40000, "10.244.2.20", 8080, T0 + 2 * MS);
    server.retransmits = 4;
    events.extend([Event::Conn(client), Event::Conn(server)]);
    let t = run(Config::default(), events);
    assert_eq!((t.edges.len(), t.edges[0].connections, t.edges[0].retransmits), (1, 1, 7));
}

#[test]
fn the_live_events_carry_the_causes() {
    let mut events = shop();
    events.extend(failed_attempts(&[111, 111, 110]));
    let mut run = crate::events::Run::new(crate::events::config());
    let mut changes = run.feed(events);
    changes.extend(run.finish());
    // Detected on the first attempt, with what had failed so far.
    let detected = changes.iter().find_map(|c| match &c.data {
        ChangeData::DependencyDetected(d) => Some(d.clone()),
        _ => None,
    });
    assert_eq!(detected.expect("a dependency_detected event").failures, Failures { refused: 1, ..Failures::default() });
    // The last report's totals have all three, and the deltas add up to them.
    let stats: Vec<_> = changes
        .iter()
        .filter_map(|c| match &c.data {
            ChangeData::ConnectionStats(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let all = Failures { refused: 2, timed_out: 1, ..Failures::default() };
    assert_eq!(stats.last().expect("a connection_stats event").total.failures, all);
    let mut summed = Failures { refused: 1, ..Failures::default() };
    for s in &stats {
        summed.add(&s.delta.failures);
    }
    assert_eq!(summed, all, "{stats:?}");
}

/// web -> api: a connection both ends of which report their close, with these errnos.
fn closed_by_both(port: u16, client_errno: u16, server_errno: u16, t: i64) -> Vec<Event> {
    let mut client = conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", port, "10.96.0.20", 80, t);
    let mut events = vec![Event::Conn(client.clone())];
    client.kind = ConnKind::TcpClose;
    client.time_ns += 2 * MS;
    client.error = client_errno;
    let mut server = conn(ConnKind::TcpClose, Side::Server, "10.244.1.10", port, "10.244.2.20", 8080, t + 3 * MS);
    server.error = server_errno;
    events.extend([Event::Conn(client), Event::Conn(server)]);
    events
}

#[test]
fn an_aborted_connection_counts_once_by_cause_though_both_ends_report_it() {
    let mut events = shop();
    // Reset (sent by one end, received by the other), a reset received after the
    // peer's FIN (EPIPE), a retransmission timeout seen by one end, and a clean close.
    events.extend(closed_by_both(40000, 104, 104, T0 + MS));
    events.extend(closed_by_both(40001, 0, 32, T0 + 10 * MS));
    events.extend(closed_by_both(40002, 110, 0, T0 + 20 * MS));
    events.extend(closed_by_both(40003, 0, 0, T0 + 30 * MS));
    let t = run(Config::default(), events);
    assert_eq!(t.edges.len(), 1);
    assert_eq!(t.edges[0].connections, 4);
    assert_eq!(t.edges[0].aborted, Failures { reset: 2, timed_out: 1, ..Failures::default() });
    assert_eq!(t.edges[0].failed, 0, "aborts are no failed connects");
    let json: serde_json::Value = serde_json::from_str(&t.to_json()).unwrap();
    assert_eq!(json["edges"][0]["aborted"], serde_json::json!({"reset": 2, "timed_out": 1}));
}

/// The client resets a connection still in the server's accept queue: both closes
/// come first (the server's without a process), then accept() hands the dead socket
/// to `api-server`, and a capture object that kept tracking it reports it open at
/// the end. One aborted connection, served by `api-server`, nothing left open.
#[test]
fn an_accept_after_its_own_close_is_the_connection_it_closed() {
    let mut events = shop();
    let mut closes = closed_by_both(40000, 104, 104, T0 + MS);
    if let Some(Event::Conn(server_close)) = closes.last_mut() {
        server_close.pid = 0;
        server_close.comm = Arc::from("");
    }
    events.extend(closes);
    let mut accept = conn(ConnKind::TcpAccept, Side::Server, "10.244.1.10", 40000, "10.244.2.20", 8080, T0 + 4 * MS);
    accept.comm = Arc::from("api-server");
    let open_at_end = ConnEvent { kind: ConnKind::TcpOpenAtEnd, time_ns: T0 + 300 * MS, ..accept.clone() };
    events.extend([Event::Conn(accept), Event::Conn(open_at_end)]);
    let t = run(Config::default(), events);
    assert_eq!(t.edges.len(), 1);
    assert_eq!(t.edges[0].connections, 1);
    assert_eq!(t.edges[0].aborted, Failures { reset: 1, ..Failures::default() });
    assert_eq!(t.edges[0].processes.server, ["api-server"]);
    assert_eq!(t.stats.late_reports, 2);
    assert_eq!(t.stats.open_before_capture, 0);
}

/// A client port reused for a new connection right after its reset is that new
/// connection: only an accept can be late.
#[test]
fn a_connect_after_its_own_close_is_a_new_connection() {
    let mut events = shop();
    events.extend(closed_by_both(40000, 104, 104, T0 + MS));
    events.extend(closed_by_both(40000, 0, 0, T0 + 5 * MS));
    let t = run(Config::default(), events);
    assert_eq!(t.edges[0].connections, 2);
    assert_eq!(t.stats.late_reports, 0);
}

#[test]
fn the_live_connection_stats_carry_the_aborts() {
    let mut events = shop();
    events.extend(closed_by_both(40000, 104, 104, T0 + MS));
    let mut run = crate::events::Run::new(crate::events::config());
    let mut changes = run.feed(events);
    changes.extend(run.finish());
    let last = changes.iter().rev().find_map(|c| match &c.data {
        ChangeData::ConnectionStats(s) => Some(s.clone()),
        _ => None,
    });
    assert_eq!(last.expect("a connection_stats event").total.aborted, Failures { reset: 1, ..Failures::default() });
}
