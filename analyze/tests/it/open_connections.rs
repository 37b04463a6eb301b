//! Connections open before the capture started: reported on their first bytes or by the
//! enumeration (`tcp_existing`), as they move bytes (`tcp_progress`) and when the
//! capture stops (`tcp_open_at_end`). Each counts once, with only the bytes it moved
//! inside the window, whichever ends report and in whatever order.

use smap_analyze::{Config, Engine};
use smap_replay::{ConnEvent, ConnKind, Event, Side};

use crate::resolution::{conn, edge, edges, run, shop, MS, T0};

/// A report of web's connection from port 40000 to the api Service, from `side`, with
/// the socket's counters so far.
fn report(kind: ConnKind, side: Side, t: i64, sent: u64, received: u64) -> Event {
    let (dst, dport) = match side {
        Side::Client => ("10.96.0.20", 80),
        Side::Server => ("10.244.2.20", 8080),
    };
    let mut e: ConnEvent = conn(kind, side, "10.244.1.10", 40000, dst, dport, t);
    e.bytes_sent = sent;
    e.bytes_received = received;
    Event::Conn(e)
}

const API: &str = "shop/api";
const WEB: &str = "shop/web";

#[test]
fn an_open_connection_counts_once_with_the_bytes_of_the_window() {
    let mut events = shop();
    // Open for hours before the capture: 10 MB each way already.
    events.push(report(ConnKind::TcpExisting, Side::Client, T0 + MS, 10_000_000, 20_000_000));
    events.push(report(ConnKind::TcpProgress, Side::Client, T0 + 10_000 * MS, 10_000_500, 20_001_500));
    events.push(report(ConnKind::TcpProgress, Side::Client, T0 + 20_000 * MS, 10_001_000, 20_003_000));
    events.push(report(ConnKind::TcpOpenAtEnd, Side::Client, T0 + 25_000 * MS, 10_001_200, 20_003_000));
    let topology = run(Config::default(), events);
    assert_eq!(edges(&topology), [edge(WEB, API, "tcp", 80, 1, 0, 1_200, 3_000)]);
    assert_eq!(topology.stats.open_before_capture, 1);
}

#[test]
fn both_ends_of_an_open_connection_merge_whichever_reports_first() {
    let mut events = shop();
    // The server's end is found first (its namespace was enumerated first), then the
    // client's on its first bytes; both report progress, then the client closes.
    events.push(report(ConnKind::TcpExisting, Side::Server, T0 + MS, 7_000, 3_000));
    events.push(report(ConnKind::TcpExisting, Side::Client, T0 + 2 * MS, 3_000, 7_000));
    events.push(report(ConnKind::TcpProgress, Side::Server, T0 + 10_000 * MS, 7_400, 3_100));
    events.push(report(ConnKind::TcpProgress, Side::Client, T0 + 10_001 * MS, 3_100, 7_400));
    let mut close = report(ConnKind::TcpClose, Side::Client, T0 + 15_000 * MS, 3_150, 7_900);
    let mut server_close = report(ConnKind::TcpClose, Side::Server, T0 + 15_001 * MS, 7_900, 3_150);
    events.append(&mut vec![close.clone(), server_close.clone()]);
    let topology = run(Config::default(), events.clone());
    assert_eq!(edges(&topology), [edge(WEB, API, "tcp", 80, 1, 0, 150, 900)]);
    assert_eq!(topology.stats.both_ends_merged, 1);

    // A second recording of the same node that starts while it is still open (the
    // agent restarted) reports it again: still one connection.
    if let (Event::Conn(c), Event::Conn(s)) = (&mut close, &mut server_close) {
        c.time_ns += 60_000 * MS;
        s.time_ns += 60_000 * MS;
    }
    let mut restarted = shop();
    restarted.push(report(ConnKind::TcpExisting, Side::Client, T0 + MS, 3_000, 7_000));
    restarted.push(report(ConnKind::TcpOpenAtEnd, Side::Client, T0 + 20_000 * MS, 3_100, 7_400));
    restarted.push(report(ConnKind::TcpExisting, Side::Client, T0 + 50_000 * MS, 3_120, 7_500));
    restarted.push(close);
    let topology = run(Config::default(), restarted);
    // In the first window 100 + 400; between the windows nothing is counted; in the
    // second 30 + 400.
    assert_eq!(edges(&topology), [edge(WEB, API, "tcp", 80, 1, 0, 130, 800)]);
}

#[test]
fn an_open_connection_opened_during_the_capture_reports_progress_without_recounting() {
    let mut events = shop();
    events.push(Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.96.0.20", 80, T0 + MS)));
    events.push(Event::Conn(conn(
        ConnKind::TcpAccept,
        Side::Server,
        "10.244.1.10",
        40000,
        "10.244.2.20",
        8080,
        T0 + 2 * MS,
    )));
    events.push(report(ConnKind::TcpProgress, Side::Server, T0 + 10_000 * MS, 50, 400));
    events.push(report(ConnKind::TcpOpenAtEnd, Side::Client, T0 + 12_000 * MS, 450, 60));
    events.push(report(ConnKind::TcpOpenAtEnd, Side::Server, T0 + 12_000 * MS, 60, 450));
    let topology = run(Config::default(), events);
    assert_eq!(edges(&topology), [edge(WEB, API, "tcp", 80, 1, 0, 450, 60)]);
    assert_eq!(topology.stats.open_before_capture, 0);
}

#[test]
fn progress_keeps_an_edge_current() {
    let mut engine = Engine::new(Config::default());
    for e in shop() {
        engine.apply(&e);
    }
    let first = engine.apply(&report(ConnKind::TcpExisting, Side::Client, T0 + MS, 0, 0));
    assert!(first.new_edge.is_some());
    let later = T0 + 600_000 * MS;
    let progress = engine.apply(&report(ConnKind::TcpProgress, Side::Client, later, 10, 0));
    assert_eq!(progress.new_edge, None, "not a new dependency");
    assert_eq!(progress.touched_edge, first.new_edge);
    let edge = engine.edges().next().unwrap();
    assert_eq!(edge.last_seen, later);
    assert_eq!(edge.connections, 1);
}
