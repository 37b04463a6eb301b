//! Records from the kernel into events: the ring buffer drained (connection events,
//! DNS replies, wakeup markers told apart by their length), and records that come
//! another way (the enumeration at start, the connections open at the end).

use aya::maps::{MapData, RingBuf};
use smap_ebpf::{kind, DnsReply, Event};
use smap_replay::{ConnEvent, DnsAnswer};

use super::convert::Converter;
use super::{dns, Stats};

/// Where the records of one drain go.
pub(super) struct Sink<'a> {
    pub(super) converter: &'a mut Converter,
    pub(super) stats: &'a mut Stats,
    pub(super) out: &'a mut Vec<ConnEvent>,
    pub(super) dns: &'a mut Vec<DnsAnswer>,
}

pub(super) fn drain_ring(ring: &mut RingBuf<MapData>, sink: &mut Sink<'_>) {
    while let Some(item) = ring.next() {
        match item.len() {
            smap_ebpf::WAKEUP_MARKER_LEN => sink.stats.wakeups += 1,
            DnsReply::SIZE => {
                if let Some(reply) = DnsReply::from_bytes(&item) {
                    let (node, clock) = (sink.converter.node(), sink.converter.clock());
                    dns::convert(&reply, node, clock, &mut sink.stats.dns, sink.dns);
                }
            }
            _ => {
                sink.stats.events_received += 1;
                match Event::from_bytes(&item) {
                    Some(e) => convert_one(&e, sink.converter, sink.stats, sink.out),
                    None => sink.stats.events_malformed += 1,
                }
            }
        }
    }
}

/// Records that did not come through the ring buffer (the enumeration, the end).
pub(super) fn convert_all(records: &[Event], converter: &mut Converter, stats: &mut Stats, out: &mut Vec<ConnEvent>) {
    for e in records {
        stats.events_received += 1;
        convert_one(e, converter, stats, out);
    }
}

fn convert_one(e: &Event, converter: &mut Converter, stats: &mut Stats, out: &mut Vec<ConnEvent>) {
    match converter.convert(e) {
        Some(ev) => out.push(ev),
        None if e.kind == kind::TCP_LISTEN => {}
        None => stats.events_malformed += 1,
    }
}
