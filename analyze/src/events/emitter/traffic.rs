//! The emitter's view of traffic: what each connection event and edge change means for
//! its caller-callee pair, and a dependency's coming and going.

use std::collections::BTreeSet;

use smap_replay::time::format_rfc3339;
use smap_replay::{ConnEvent, TimeNs};

use crate::engine::{Applied, EdgeId, Engine};
use crate::events::model::{
    ChangeData, ChangeEvent, DependencyDetected, DependencyGone, GoneReason, NetworkConnection, PortRef, Traffic,
};

use super::{index_of, namespaced, EdgeView, Emitter, Pair, PairIdx, Slot, Timer, ViewIdx};

impl Emitter {
    pub(super) fn on_conn(&mut self, engine: &Engine, conn: &ConnEvent, applied: Applied, out: &mut Vec<ChangeEvent>) {
        *self.counters.conn_events.entry(conn.kind.as_str()).or_default() += 1;
        if self.options.debug_connections {
            let ids = applied.touched_edge.and_then(|edge| {
                let key = engine.edge(edge)?.key;
                Some((engine.entity(key.source)?.id(), engine.entity(key.destination)?.id()))
            });
            let (source, destination) = ids.unzip();
            let data = NetworkConnection {
                source_ip: conn.src_ip.to_string(),
                dest_ip: conn.dst_ip.to_string(),
                source_port: conn.src_port,
                dest_port: conn.dst_port,
                protocol: conn.kind.protocol().as_str().to_uppercase(),
                process: conn.comm.to_string(),
                pid: conn.pid,
                kind: conn.kind.as_str().to_owned(),
                side: conn.side.as_str().to_owned(),
                node: conn.node.to_string(),
                bytes_sent: conn.bytes_sent,
                bytes_received: conn.bytes_received,
                error: conn.error,
                source,
                destination,
            };
            let now = self.now();
            self.emit(out, now, ChangeData::NetworkConnection(data));
        }
        // Off the old edge first, so a moved connection is never counted twice.
        if let Some(edge) = applied.moved_from {
            self.on_edge(engine, edge, out);
        }
        if let Some(edge) = applied.touched_edge {
            self.on_edge(engine, edge, out);
        }
    }

    pub(super) fn on_edge(&mut self, engine: &Engine, edge: EdgeId, out: &mut Vec<ChangeEvent>) {
        let Some(stats) = engine.edge(edge) else { return };
        let traffic = Traffic {
            connections: stats.connections,
            failed: stats.failed,
            failures: stats.failures,
            aborted: stats.aborted,
            bytes_sent: stats.bytes_sent,
            bytes_received: stats.bytes_received,
        };
        let (key, last_seen) = (stats.key, stats.last_seen);
        if self.edges.len() <= edge as usize {
            self.edges.resize(edge as usize + 1, EdgeView::default());
        }
        let cached = &mut self.edges[edge as usize];
        let delta = traffic.since(&cached.traffic);
        // Counters only grow, but for a connection that moved to another edge.
        let moved_off = cached.traffic.since(&traffic);
        cached.traffic = traffic;
        let tracked = self.counters.connections_tracked.entry(key.protocol.as_str()).or_default();
        *tracked = (*tracked + delta.connections).saturating_sub(moved_off.connections);

        let pair = match cached.pair {
            Some(pair) => {
                let state = &mut self.pairs[pair as usize];
                state.traffic.add(&delta);
                state.traffic = state.traffic.since(&moved_off);
                // A moved connection already reported with this pair leaves the report
                // too (counter-wise min), so the next one's delta hides nothing.
                state.reported = state.reported.since(&state.reported.since(&state.traffic));
                pair
            }
            None => {
                if traffic.connections + traffic.failed < self.config.min_connection_count {
                    return;
                }
                let (Some(source), Some(destination)) =
                    (self.entity_view(engine, key.source), self.entity_view(engine, key.destination))
                else {
                    return;
                };
                if !self.views[source as usize].kept || !self.views[destination as usize].kept {
                    return;
                }
                let pair = self.pair_for(source, destination);
                self.edges[edge as usize].pair = Some(pair);
                let pair_state = &mut self.pairs[pair as usize];
                pair_state.edges += 1;
                pair_state.traffic.add(&traffic);
                pair_state.ports.insert(PortRef { protocol: key.protocol.as_str().to_owned(), port: key.port });
                pair
            }
        };
        let state = &mut self.pairs[pair as usize];
        state.last_seen = state.last_seen.max(last_seen);
        if state.active {
            if delta != Traffic::default() {
                self.generation += 1;
                let due = self.due(self.now(), self.pairs[pair as usize].stats.last, false);
                self.schedule(Timer::Stats(pair), due);
            }
        } else {
            self.activate(pair, out);
        }
    }

    pub(super) fn pair_for(&mut self, source: ViewIdx, destination: ViewIdx) -> PairIdx {
        if let Some(pair) = self.pair_ids.get(&(source, destination)) {
            return *pair;
        }
        let index = index_of(self.pairs.insert(Pair {
            source,
            destination,
            edges: 0,
            ports: BTreeSet::new(),
            traffic: Traffic::default(),
            last_seen: TimeNs::MIN,
            active: false,
            ever_active: false,
            reported: Traffic::default(),
            reported_at: 0,
            stats: Slot::new(()),
            expiry: None,
        }));
        self.pair_ids.insert((source, destination), index);
        self.views[source as usize].pairs.push(index);
        if source != destination {
            self.views[destination as usize].pairs.push(index);
        }
        index
    }

    /// A dependency with traffic whose two ends are in the map (a Service only while
    /// it exists): announced, after the ends it brings into the map.
    pub(super) fn activate(&mut self, pair: PairIdx, out: &mut Vec<ChangeEvent>) {
        let (source, destination) = (self.pairs[pair as usize].source, self.pairs[pair as usize].destination);
        if !self.views[source as usize].exists || !self.views[destination as usize].exists {
            return;
        }
        for end in [source, destination] {
            self.views[end as usize].active_pairs += 1;
            if !self.views[end as usize].present {
                self.discover(end, out);
            }
        }
        let now = self.now();
        let state = &mut self.pairs[pair as usize];
        let first_time = !state.ever_active;
        state.active = true;
        state.ever_active = true;
        state.reported = state.traffic;
        state.reported_at = now;
        let expiry = state.last_seen.saturating_add(self.ttl);
        let (from, to) = (&self.views[source as usize], &self.views[destination as usize]);
        let data = DependencyDetected {
            source: from.id.clone(),
            destination: to.id.clone(),
            cross_namespace: namespaced(from.kind) && namespaced(to.kind) && from.namespace != to.namespace,
            first_time,
            ports: state.ports.iter().cloned().collect(),
            connections: state.traffic.connections,
            failed: state.traffic.failed,
            failures: state.traffic.failures,
        };
        self.emit(out, now, ChangeData::DependencyDetected(data));
        self.schedule(Timer::Expire(pair), expiry);
        self.significant();
    }

    /// Ends a dependency; returns its two ends, to be checked for removal.
    pub(super) fn deactivate(
        &mut self,
        pair: PairIdx,
        reason: GoneReason,
        at: TimeNs,
        out: &mut Vec<ChangeEvent>,
    ) -> [ViewIdx; 2] {
        self.cancel(Timer::Stats(pair));
        self.cancel(Timer::Expire(pair));
        let state = &mut self.pairs[pair as usize];
        state.active = false;
        let (source, destination) = (state.source, state.destination);
        let data = DependencyGone {
            source: self.views[source as usize].id.clone(),
            destination: self.views[destination as usize].id.clone(),
            reason,
            last_seen: format_rfc3339(state.last_seen),
            connections: state.traffic.connections,
        };
        for end in [source, destination] {
            let view = &mut self.views[end as usize];
            view.active_pairs = view.active_pairs.saturating_sub(1);
        }
        self.emit(out, at, ChangeData::DependencyGone(data));
        self.significant();
        [source, destination]
    }
}
