//! One client port carrying connections to several servers at once, as Linux allows
//! (ingress controllers, proxies, any client with many connections): each connection
//! is its own, both its ends still join, and its bytes land on its own edge.

use smap_analyze::Config;
use smap_replay::{ConnEvent, ConnKind, Event, ObjectAction, Side};

use crate::resolution::{conn, edge, edges, pod, run, service, shop, slice, MS, T0};

fn with_bytes(mut e: ConnEvent, sent: u64, received: u64) -> Event {
    e.bytes_sent = sent;
    e.bytes_received = received;
    Event::Conn(e)
}

/// shop() plus orders-db (ClusterIP 10.96.0.30:5432 -> pod 10.244.3.30:5432).
fn shop_with_db() -> Vec<Event> {
    let mut events = shop();
    events.push(pod("shop", "db-1", "10.244.3.30", "orders-db"));
    events.push(service("shop", "orders-db", "10.96.0.30", 5432, 5432));
    events.push(slice("shop", "orders-db", &[("10.244.3.30", "db-1", true)], T0, ObjectAction::Snapshot));
    events
}

#[test]
fn two_connections_from_one_client_port_at_once_are_two_with_their_own_bytes() {
    let (web, port) = ("10.244.1.10", 40000);
    let api = |kind, side, t| match side {
        Side::Client => conn(kind, side, web, port, "10.96.0.20", 80, t),
        Side::Server => conn(kind, side, web, port, "10.244.2.20", 8080, t),
    };
    let db = |kind, side, t| match side {
        Side::Client => conn(kind, side, web, port, "10.96.0.30", 5432, t),
        Side::Server => conn(kind, side, web, port, "10.244.3.30", 5432, t),
    };
    for server_ends_first in [false, true] {
        let mut events = shop_with_db();
        events.push(Event::Conn(api(ConnKind::TcpConnect, Side::Client, T0 + MS)));
        events.push(Event::Conn(db(ConnKind::TcpConnect, Side::Client, T0 + 2 * MS)));
        let mut accepts = vec![
            Event::Conn(api(ConnKind::TcpAccept, Side::Server, T0 + 3 * MS)),
            Event::Conn(db(ConnKind::TcpAccept, Side::Server, T0 + 4 * MS)),
        ];
        if server_ends_first {
            accepts.reverse();
            if let [Event::Conn(a), Event::Conn(b)] = &mut accepts[..] {
                std::mem::swap(&mut a.time_ns, &mut b.time_ns);
            }
        }
        events.extend(accepts);
        events.push(with_bytes(db(ConnKind::TcpClose, Side::Client, T0 + 10 * MS), 5000, 200));
        events.push(with_bytes(db(ConnKind::TcpClose, Side::Server, T0 + 11 * MS), 200, 5000));
        events.push(with_bytes(api(ConnKind::TcpClose, Side::Client, T0 + 12 * MS), 100, 300));
        events.push(with_bytes(api(ConnKind::TcpClose, Side::Server, T0 + 13 * MS), 300, 100));
        let topology = run(Config::default(), events);
        assert_eq!(
            edges(&topology),
            [
                edge("shop/web", "shop/api", "tcp", 80, 1, 0, 100, 300),
                edge("shop/web", "shop/orders-db", "tcp", 5432, 1, 0, 5000, 200),
            ],
            "server ends first: {server_ends_first}"
        );
        assert_eq!(topology.stats.both_ends_merged, 2);
    }
}
