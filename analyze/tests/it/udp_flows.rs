//! How UDP flows resolve: one flow per socket and peer, counted once from either end,
//! bytes from one end, and a flow that moved nothing is no traffic.

use smap_analyze::Config;
use smap_replay::{ConnKind, Event, ObjectAction, Side};

use crate::resolution::{conn, edge, edges, run, service, shop, slice, MS, T0};

fn udp(side: Side, server: &str, port: u16, sent: u64, received: u64, t: i64) -> Event {
    let mut e = conn(ConnKind::UdpFlow, side, "10.244.1.10", 53000, server, port, t);
    e.bytes_sent = sent;
    e.bytes_received = received;
    Event::Conn(e)
}

#[test]
fn one_unconnected_udp_socket_sending_to_two_servers_makes_two_flows() {
    // A resolver asks two servers from one socket (web -> api, web -> web's own
    // Service); each end reports each flow twice, in different orders.
    let to_api = |t| udp(Side::Client, "10.96.0.20", 80, 40, 80, t);
    let at_api = |t| udp(Side::Server, "10.244.2.20", 8080, 80, 40, t);
    let to_web = |t| udp(Side::Client, "10.96.0.10", 80, 7, 14, t);
    let at_web = |t| udp(Side::Server, "10.244.1.10", 8080, 14, 7, t);
    let orders: [Vec<Event>; 3] = [
        vec![to_api(1), at_api(2), to_web(3), at_web(4), to_api(5), at_api(6), to_web(7), at_web(8)],
        vec![to_api(1), to_web(2), at_api(3), at_web(4), to_web(5), to_api(6), at_web(7), at_api(8)],
        vec![at_api(1), to_api(2), at_web(3), to_web(4), at_web(5), at_api(6), to_web(7), to_api(8)],
    ];
    for (i, traffic) in orders.into_iter().enumerate() {
        let mut events = shop();
        events.extend(traffic.into_iter().map(|e| match e {
            Event::Conn(mut c) => {
                c.time_ns = T0 + c.time_ns * MS;
                Event::Conn(c)
            }
            other => other,
        }));
        let t = run(Config::default(), events);
        let mut found = edges(&t);
        found.sort();
        assert_eq!(
            found,
            vec![
                edge("shop/web", "shop/api", "udp", 80, 1, 0, 80, 160),
                edge("shop/web", "shop/web", "udp", 80, 1, 0, 14, 28)
            ],
            "order {i}"
        );
    }
}

#[test]
fn a_udp_flow_to_a_pod_behind_two_services_counts_once() {
    // The client dials api-alias; the server end resolves its pod to `api`, the first
    // of its two Services by name. The ends still make one flow, on the dialed edge.
    let mut events = shop();
    events.push(service("shop", "api-alias", "10.96.0.21", 80, 8080));
    let mut alias_slice = slice("shop", "api-alias", &[("10.244.2.20", "api-1", true)], T0, ObjectAction::Snapshot);
    if let Event::Object(o) = &mut alias_slice {
        o.object = o.object.replace("api-alias-abc", "api-alias-slice");
    }
    events.push(alias_slice);
    for t in [T0 + MS, T0 + 3 * MS] {
        events.push(udp(Side::Client, "10.96.0.21", 80, 10, 20, t));
        events.push(udp(Side::Server, "10.244.2.20", 8080, 20, 10, t + MS));
    }
    let t = run(Config::default(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api-alias", "udp", 80, 1, 0, 20, 40)]);
}

#[test]
fn udp_flows_count_once_and_bytes_come_from_one_end() {
    let mut events = shop();
    for (i, t) in [(0, T0 + MS), (1, T0 + 5 * MS)] {
        let mut client = conn(ConnKind::UdpFlow, Side::Client, "10.244.1.10", 53000, "10.96.0.20", 80, t);
        client.bytes_sent = 40 + i;
        client.bytes_received = 120;
        let mut server = conn(ConnKind::UdpFlow, Side::Server, "10.244.1.10", 53000, "10.244.2.20", 8080, t + 1);
        server.bytes_sent = 120;
        server.bytes_received = 40 + i;
        events.push(Event::Conn(client));
        events.push(Event::Conn(server));
    }
    let t = run(Config::default(), events);
    assert_eq!(edges(&t), vec![edge("shop/web", "shop/api", "udp", 80, 1, 0, 81, 240)]);
}

#[test]
fn a_udp_flow_that_moved_no_byte_is_not_traffic() {
    let mut events = shop();
    // A connected UDP socket used only to learn a route, as many clients do.
    events.push(Event::Conn(conn(ConnKind::UdpFlow, Side::Client, "10.244.1.10", 50000, "10.96.0.20", 80, T0 + MS)));
    let t = run(Config::default(), events);
    assert!(t.edges.is_empty());
    assert_eq!(t.stats.empty_flows, 1);
}
