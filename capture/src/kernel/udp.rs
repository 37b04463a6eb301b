//! Reports UDP flows from the kernel's `udp_flows` map: what moved since the last
//! report, and removal of flows that went idle.
//!
//! The kernel only adds to a flow's counters; user space owns aging. A flow is reported
//! when it is new or its counters grew, with the growth as its bytes and datagrams, so
//! summing a flow's reports gives its totals. Flows idle longer than the idle timeout
//! are deleted from the map (a datagram landing between the read and the delete would be
//! lost with them, which the timeout makes unlikely).

use std::collections::HashMap;

use smap_ebpf::{Event, UdpFlowKey};

/// Counters of one flow as last reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    bytes_sent: u64,
    bytes_received: u64,
    datagrams_sent: u64,
    datagrams_received: u64,
}

impl Counts {
    fn of(e: &Event) -> Self {
        Self {
            bytes_sent: e.bytes_sent,
            bytes_received: e.bytes_received,
            datagrams_sent: e.datagrams_sent,
            datagrams_received: e.datagrams_received,
        }
    }

    /// Whether every counter of `self` is at most that of `later`.
    fn precedes(&self, later: &Self) -> bool {
        self.bytes_sent <= later.bytes_sent
            && self.bytes_received <= later.bytes_received
            && self.datagrams_sent <= later.datagrams_sent
            && self.datagrams_received <= later.datagrams_received
    }
}

/// What a flush decided: the reports to emit and the keys to delete from the map.
#[derive(Debug, Default)]
pub(crate) struct Flush {
    /// Flow events carrying the growth since the previous report.
    pub(crate) reports: Vec<Event>,
    /// Idle flows to delete from the kernel map.
    pub(crate) expired: Vec<UdpFlowKey>,
}

/// The user-space side of the flow table.
#[derive(Debug, Default)]
pub(crate) struct UdpFlows {
    reported: HashMap<UdpFlowKey, Counts>,
    /// Flows this side deleted from the map, ever.
    pub(crate) deleted: u64,
}

impl UdpFlows {
    /// Compares a snapshot of the kernel map with what was reported.
    ///
    /// `idle_ns`: flows whose last datagram is older than this (relative to `now_ns`,
    /// both `CLOCK_BOOTTIME`) expire; `None` keeps every flow (the final flush).
    pub(crate) fn flush(&mut self, snapshot: &HashMap<UdpFlowKey, Event>, now_ns: u64, idle_ns: Option<u64>) -> Flush {
        let mut out = Flush::default();
        // Flows gone from the map without our delete were evicted; counted by the
        // caller from the kernel's insert counter, forgotten here.
        self.reported.retain(|k, _| snapshot.contains_key(k));
        for (key, flow) in snapshot {
            let now = Counts::of(flow);
            let prev = self.reported.get(key).copied();
            // Counters below the last report: evicted and recreated since.
            let base = prev.filter(|p| p.precedes(&now)).unwrap_or_default();
            if prev != Some(now) {
                let mut report = *flow;
                report.bytes_sent = now.bytes_sent - base.bytes_sent;
                report.bytes_received = now.bytes_received - base.bytes_received;
                report.datagrams_sent = now.datagrams_sent - base.datagrams_sent;
                report.datagrams_received = now.datagrams_received - base.datagrams_received;
                out.reports.push(report);
                self.reported.insert(*key, now);
            }
            if idle_ns.is_some_and(|idle| now_ns.saturating_sub(flow.ts_ns) > idle) {
                out.expired.push(*key);
            }
        }
        for key in &out.expired {
            self.reported.remove(key);
        }
        out
    }

    /// Records that the caller deleted `n` expired flows from the kernel map.
    pub(crate) fn note_deleted(&mut self, n: u64) {
        self.deleted += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smap_ebpf::kind;

    fn key(port: u16) -> UdpFlowKey {
        UdpFlowKey { cookie: 1, family: smap_ebpf::AF_INET, rport: port, ..UdpFlowKey::default() }
    }

    fn flow(ts: u64, sent: u64, dgrams: u64) -> Event {
        Event { kind: kind::UDP_FLOW, ts_ns: ts, bytes_sent: sent, datagrams_sent: dgrams, ..Event::default() }
    }

    #[test]
    fn reports_growth_once_and_expires_idle_flows() {
        let mut flows = UdpFlows::default();
        let mut map = HashMap::from([(key(53), flow(100, 40, 1))]);

        let f = flows.flush(&map, 200, Some(1_000));
        assert_eq!(f.reports.len(), 1);
        assert_eq!((f.reports[0].bytes_sent, f.reports[0].datagrams_sent), (40, 1));
        assert!(f.expired.is_empty());

        // Nothing moved: nothing to report.
        let f = flows.flush(&map, 300, Some(1_000));
        assert!(f.reports.is_empty());

        map.insert(key(53), flow(400, 100, 3));
        let f = flows.flush(&map, 500, Some(1_000));
        assert_eq!((f.reports[0].bytes_sent, f.reports[0].datagrams_sent), (60, 2));

        let f = flows.flush(&map, 2_000, Some(1_000));
        assert!(f.reports.is_empty());
        assert_eq!(f.expired, vec![key(53)]);
    }

    #[test]
    fn a_recreated_flow_counts_from_zero() {
        let mut flows = UdpFlows::default();
        let f = flows.flush(&HashMap::from([(key(53), flow(1, 500, 5))]), 2, None);
        assert_eq!(f.reports.len(), 1);
        // Evicted and recreated with smaller counters.
        let f = flows.flush(&HashMap::from([(key(53), flow(3, 20, 1))]), 4, None);
        assert_eq!((f.reports[0].bytes_sent, f.reports[0].datagrams_sent), (20, 1));
    }

    #[test]
    fn a_new_flow_without_traffic_is_reported_once() {
        // A connected UDP socket that has not sent yet still shows who talks to whom.
        let mut flows = UdpFlows::default();
        let map = HashMap::from([(key(53), flow(1, 0, 0))]);
        assert_eq!(flows.flush(&map, 2, None).reports.len(), 1);
        assert!(flows.flush(&map, 3, None).reports.is_empty());
    }
}
