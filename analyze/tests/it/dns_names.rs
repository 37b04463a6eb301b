//! Outside destinations named by the DNS answers their callers received: per caller,
//! by the name asked for, while the answer's TTL (and the grace) lasts.

use std::sync::Arc;
use std::time::Duration;

use smap_analyze::Config;
use smap_replay::{ConnKind, DnsAnswer, Event, Side};

use crate::resolution::{conn, edges, pod, run, shop, MS, T0};

const S: i64 = 1_000_000_000;

fn answer(t: i64, client: &str, query: &str, cnames: &str, address: &str, ttl_s: u32) -> Event {
    Event::from(DnsAnswer {
        time_ns: t,
        node: Arc::from("node-1"),
        client_ip: client.parse().unwrap(),
        client_port: 53000,
        server_ip: "10.96.0.53".parse().unwrap(),
        socket_id: 9,
        query: Arc::from(query),
        cnames: Arc::from(cnames),
        address: address.parse().unwrap(),
        ttl_s,
    })
}

fn connect(src: &str, sport: u16, dst: &str, t: i64) -> Event {
    Event::Conn(conn(ConnKind::TcpConnect, Side::Client, src, sport, dst, 443, t))
}

fn config() -> Config {
    Config { include_external_services: true, dns_name_grace: Duration::from_secs(5), ..Config::default() }
}

/// (source, destination, connections) of each edge.
fn calls(t: &smap_analyze::Topology) -> Vec<(String, String, u64)> {
    edges(t).into_iter().map(|(s, d, _, _, c, ..)| (s, d, c)).collect()
}

fn call(s: &str, d: &str, c: u64) -> (String, String, u64) {
    (s.to_owned(), d.to_owned(), c)
}

#[test]
fn a_name_behind_a_cname_on_many_addresses_is_one_node_with_its_dns_name() {
    let mut events = shop();
    for (i, address) in ["203.0.113.20", "203.0.113.21", "2001:db8::21"].into_iter().enumerate() {
        events.push(answer(T0 + MS, "10.244.1.10", "www.shop.example", "shop.cdn.example", address, 60));
        events.push(connect("10.244.1.10", 40000 + i as u16, address, T0 + (2 + i as i64) * MS));
    }
    let t = run(config(), events);
    assert_eq!(calls(&t), vec![call("shop/web", "external/www.shop.example:443", 3)]);
    let node = &t.services["external/www.shop.example:443"];
    assert_eq!(node.dns_name.as_deref(), Some("www.shop.example"), "the name asked for, not the CNAME");
    assert_eq!((node.namespace.as_str(), node.name.as_str()), ("external", "www.shop.example:443"));
    assert_eq!(t.stats.dns_answers, 3);
}

#[test]
fn two_callers_resolving_one_address_differently_each_keep_their_name() {
    let mut events = shop();
    events.push(answer(T0 + MS, "10.244.1.10", "a.shared.example", "", "203.0.113.30", 300));
    events.push(answer(T0 + MS, "10.244.2.20", "b.shared.example", "", "203.0.113.30", 300));
    events.push(connect("10.244.1.10", 40000, "203.0.113.30", T0 + 2 * MS));
    events.push(connect("10.244.2.20", 40000, "203.0.113.30", T0 + 3 * MS));
    // A third pod never resolved it: the address form.
    events.push(pod("shop", "batch-1", "10.244.3.30", "batch"));
    events.push(connect("10.244.3.30", 40000, "203.0.113.30", T0 + 4 * MS));
    let t = run(config(), events);
    assert_eq!(
        calls(&t),
        vec![
            call("shop/api", "external/b.shared.example:443", 1),
            call("shop/batch-1", "external/203.0.113.30:443", 1),
            call("shop/web", "external/a.shared.example:443", 1),
        ]
    );
    assert_eq!(t.services["external/203.0.113.30:443"].dns_name, None);
}

#[test]
fn before_the_answer_and_past_its_ttl_and_grace_the_address_is_shown() {
    let mut events = shop();
    events.push(connect("10.244.1.10", 40000, "203.0.113.10", T0));
    events.push(answer(T0 + S, "10.244.1.10", "api.payments.example", "", "203.0.113.10", 10));
    // Within the TTL, within the 5 s grace after it, then past both.
    events.push(connect("10.244.1.10", 40001, "203.0.113.10", T0 + 5 * S));
    events.push(connect("10.244.1.10", 40002, "203.0.113.10", T0 + 15 * S));
    events.push(connect("10.244.1.10", 40003, "203.0.113.10", T0 + 17 * S));
    let t = run(config(), events);
    assert_eq!(
        calls(&t),
        vec![
            call("shop/web", "external/203.0.113.10:443", 2),
            call("shop/web", "external/api.payments.example:443", 2),
        ]
    );
}

#[test]
fn both_ends_of_a_named_call_are_one_connection() {
    // The outside host runs where smap sees it too (another node of ours, a test).
    let mut events = shop();
    events.push(answer(T0 + MS, "10.244.1.10", "api.payments.example", "", "203.0.113.10", 60));
    events.push(connect("10.244.1.10", 40000, "203.0.113.10", T0 + 2 * MS));
    events.push(Event::Conn(conn(
        ConnKind::TcpAccept,
        Side::Server,
        "10.244.1.10",
        40000,
        "203.0.113.10",
        443,
        T0 + 3 * MS,
    )));
    let t = run(config(), events);
    assert_eq!(calls(&t), vec![call("shop/web", "external/api.payments.example:443", 1)]);
    assert_eq!(t.stats.both_ends_merged, 1);
}

#[test]
fn names_are_kept_out_with_the_other_externals_by_default() {
    let mut events = shop();
    events.push(answer(T0 + MS, "10.244.1.10", "api.payments.example", "", "203.0.113.10", 60));
    events.push(connect("10.244.1.10", 40000, "203.0.113.10", T0 + 2 * MS));
    let t = run(Config::default(), events);
    assert!(t.edges.is_empty());
    assert_eq!(t.stats.filtered_edges, 1);
}

#[test]
fn the_live_change_events_name_the_dependency_as_the_map_does() {
    let mut events = shop();
    events.push(answer(T0 + MS, "10.244.1.10", "api.payments.example", "", "203.0.113.10", 60));
    events.push(connect("10.244.1.10", 40000, "203.0.113.10", T0 + 2 * MS));
    let config = Config { include_external_services: true, ..crate::events::config() };
    let mut run = crate::events::Run::new(config);
    let mut changes = run.feed(events);
    changes.extend(run.finish());
    let detected: Vec<String> = changes
        .iter()
        .filter_map(|c| match &c.data {
            smap_analyze::events::ChangeData::DependencyDetected(d) => {
                Some(format!("{} -> {}", d.source, d.destination))
            }
            _ => None,
        })
        .collect();
    assert_eq!(detected, ["shop/web -> external/api.payments.example:443"]);
}

fn flow(sport: u16, dst: &str, t: i64) -> Event {
    let mut e = conn(ConnKind::UdpFlow, Side::Client, "10.244.1.10", sport, dst, 8125, t);
    e.bytes_sent = 100;
    Event::Conn(e)
}

#[test]
fn a_long_lived_udp_flow_keeps_the_form_it_began_with() {
    let mut events = shop();
    // Named when it began; its answer expires (10 s TTL, 5 s grace) while it lives.
    events.push(answer(T0, "10.244.1.10", "metrics.example", "", "203.0.113.50", 10));
    for t in [1, 20, 40] {
        events.push(flow(50000, "203.0.113.50", T0 + t * S));
    }
    // Begun by address; a later answer names the address while it lives.
    events.push(flow(50001, "203.0.113.60", T0 + S));
    events.push(answer(T0 + 2 * S, "10.244.1.10", "logs.example", "", "203.0.113.60", 300));
    events.push(flow(50001, "203.0.113.60", T0 + 3 * S));
    let t = run(config(), events);
    assert_eq!(
        calls(&t),
        vec![call("shop/web", "external/203.0.113.60:8125", 1), call("shop/web", "external/metrics.example:8125", 1)]
    );
    assert_eq!((t.edges[1].bytes_sent, t.edges[0].bytes_sent), (300, 200), "every report on its one flow");
}
