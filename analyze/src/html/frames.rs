//! Time frames as the page carries them: per frame, which services exist with their
//! health then, and each edge's counters then. Details that do not change (type,
//! labels) come once, from the last frame's topology, so a frame costs tens of bytes
//! per edge rather than a whole topology.

use std::collections::BTreeMap;

use serde::Serialize;
use smap_replay::time::format_rfc3339;

use crate::build::Frame;
use crate::topology::{Endpoints, Health, Service, Topology};

/// How many frames a page of this topology carries: 24, fewer for large maps, so the
/// frames stay near 8 MB in all. In the captured shop's page a frame's edge takes 46
/// bytes and a service 68, with ids of about 8 characters; 90 each allows for ids of 25
/// (an edge holds two).
pub fn frame_budget(topology: &Topology) -> usize {
    const BUDGET_BYTES: usize = 8 << 20;
    let per_frame = 90 * topology.edges.len() + 90 * topology.services.len() + 100;
    (BUDGET_BYTES / per_frame).clamp(2, 24)
}

/// At most `budget` of `frames`, evenly spread, always with the last.
pub fn carried(frames: &[Frame], budget: usize) -> impl Iterator<Item = &Frame> {
    let n = frames.len();
    let keep = budget.clamp(1, n.max(1));
    // Frame (i+1)*n/keep - 1 for i in 0..keep: the last is frame n-1.
    (0..keep).map(move |i| &frames[(i + 1) * n / keep - 1])
}

/// An edge in a frame: `[source, destination, protocol, port, connections, failed,
/// bytes_sent, bytes_received]`.
type EdgeRow<'a> = (&'a str, &'a str, &'a str, u16, u64, u64, u64, u64);

/// One frame.
#[derive(Serialize)]
pub struct FrameData<'a> {
    time: String,
    services: BTreeMap<&'a str, FrameService<'a>>,
    edges: Vec<EdgeRow<'a>>,
}

#[derive(Serialize)]
struct FrameService<'a> {
    health: Health,
    endpoints: Endpoints,
    /// The whole service, when the last frame lacks it (a Service deleted meanwhile).
    #[serde(skip_serializing_if = "Option::is_none")]
    service: Option<&'a Service>,
}

impl<'a> FrameData<'a> {
    /// `frame` as the page carries it, beside `last` (the final topology).
    pub fn new(frame: &'a Frame, last: &Topology) -> Self {
        let services = frame
            .topology
            .services
            .iter()
            .map(|(id, service)| {
                let known = last.services.contains_key(id);
                let entry = FrameService {
                    health: service.health,
                    endpoints: service.endpoints,
                    service: (!known).then_some(service),
                };
                (id.as_str(), entry)
            })
            .collect();
        let edges = frame
            .topology
            .edges
            .iter()
            .map(|e| {
                let (source, destination, protocol) = (e.source.as_str(), e.destination.as_str(), e.protocol.as_str());
                (source, destination, protocol, e.port, e.connections, e.failed, e.bytes_sent, e.bytes_received)
            })
            .collect();
        FrameData { time: format_rfc3339(frame.time_ns), services, edges }
    }
}
