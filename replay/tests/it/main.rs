//! Integration tests of the recording format: round trips, crashes, bad input, and
//! readability by other Parquet tools.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr, missing_docs)]

mod bad_input;
mod external_tools;
mod journal;
mod roundtrip;

use std::net::IpAddr;
use std::sync::Arc;

use smap_replay::{ConnEvent, ConnKind, ObjectAction, ObjectEvent, ObjectKind, Side};

pub fn conn(i: u64) -> ConnEvent {
    let kinds =
        [ConnKind::TcpConnect, ConnKind::TcpAccept, ConnKind::TcpClose, ConnKind::TcpConnectFailed, ConnKind::UdpFlow];
    let v6 = i.is_multiple_of(7);
    ConnEvent {
        time_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000,
        node: Arc::from(format!("node-{}", i % 3)),
        kind: kinds[(i % 5) as usize],
        side: if i.is_multiple_of(2) { Side::Client } else { Side::Server },
        src_ip: if v6 { "fd00::1".parse().unwrap() } else { IpAddr::from([10, 244, (i % 4) as u8, 7]) },
        src_port: 30000 + (i % 1000) as u16,
        dst_ip: if v6 { "fd00::2".parse().unwrap() } else { IpAddr::from([10, 96, 0, 10]) },
        dst_port: 80,
        pid: 4000 + i as u32,
        comm: Arc::from(if i.is_multiple_of(2) { "curl" } else { "nginx" }),
        cgroup_id: 1 + i % 2,
        netns: 4026531840 + (i % 4) as u32,
        socket_id: 0xffff_0000_0000 + i,
        bytes_sent: i * 3,
        bytes_received: i * 5,
        retransmits: (i % 3) as u32,
        error: if i % 5 == 3 { 111 } else { 0 },
    }
}

pub fn object(i: u64) -> ObjectEvent {
    ObjectEvent {
        time_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000_000,
        kind: ObjectKind::Pod,
        action: if i == 0 { ObjectAction::Snapshot } else { ObjectAction::Modified },
        uid: format!("uid-{i}"),
        namespace: "shop".to_owned(),
        name: format!("pod-{i}"),
        resource_version: (100 + i).to_string(),
        object: format!(r#"{{"kind":"Pod","metadata":{{"name":"pod-{i}"}}}}"#),
    }
}
