//! Integration tests of the engine: simulated clusters against their ground truth; and
//! of the graph analyses on fixture topologies (`fixtures/topologies/`), with insta
//! snapshots of what they find.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::type_complexity, clippy::too_many_arguments, missing_docs)]

use serde_json::Value;
use smap_replay::{Event, ObjectAction, ObjectEvent, ObjectKind};

mod analysis;
mod cluster_changes;
mod dns_names;
mod entry;
mod events;
mod failures;
mod frames;
mod host_network;
mod ingress;
mod netpol;
mod open_connections;
mod port_reuse;
mod resolution;
mod retention;
mod service_changes;
mod threads;
mod truth;
mod udp_flows;

/// A fresh resourceVersion: the engine applies each version of an object once.
pub fn next_resource_version() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed).to_string()
}

/// An object event from an object's JSON, identity read from its metadata.
pub fn object(kind: ObjectKind, action: ObjectAction, value: Value, t: i64) -> Event {
    let meta = &value["metadata"];
    Event::from(ObjectEvent {
        time_ns: t,
        kind,
        action,
        uid: meta["uid"].as_str().unwrap_or("").to_owned(),
        namespace: meta["namespace"].as_str().unwrap_or("").to_owned(),
        name: meta["name"].as_str().unwrap().to_owned(),
        // Every change gets a new resourceVersion, as the API server gives it.
        resource_version: next_resource_version(),
        object: value.to_string(),
    })
}
