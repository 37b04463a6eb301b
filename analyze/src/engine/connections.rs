//! The life of a connection in the engine: both ends joined into one, opens, reports
//! of open connections, closes and UDP flows counted once on their edge, and the
//! connection table kept to what can still see events.

use smap_replay::{ConnFacts, ConnKind, Protocol, TimeNs};

use super::{bit, duration_ns, Applied, EdgeId, Engine};
use crate::engine::conn_table::{count_new_bytes, directed_bytes, ConnKey, ConnState};

impl Engine {
    fn key(e: &ConnFacts) -> ConnKey {
        ConnKey::new(e.kind.protocol(), e.src_ip, e.src_port)
    }

    fn within(&self, state: &ConnState, t: TimeNs) -> bool {
        t.saturating_sub(state.last) <= duration_ns(self.config.dedup_window)
    }

    pub(super) fn on_open(&mut self, e: &ConnFacts) -> Applied {
        let key = self.conn_key(e);
        let side = bit(e.side);
        let dedup = duration_ns(self.config.dedup_window);
        if let Some(state) = self.conns.get_mut(&key) {
            // An accept() that returned after its end's close: the client reset the
            // connection while it waited in the accept queue (a health check does),
            // and accept() hands the dead socket over all the same. The same
            // connection, which gains its server's process, not another one.
            let late_accept = e.kind == ConnKind::TcpAccept && state.opened & side == 0 && state.closed & side != 0;
            if late_accept && e.time_ns.saturating_sub(state.last) <= dedup {
                state.opened |= side;
                state.last = e.time_ns;
                let edge = state.edge;
                self.stats.late_reports += 1;
                self.touch(edge, e.time_ns);
                return Applied { touched_edge: Some(edge), ..Applied::default() };
            }
            let fresh = e.time_ns.saturating_sub(state.last) <= dedup || state.opened & !state.closed != 0;
            if state.opened & side == 0 && state.closed & side == 0 && fresh && state.opened != 0 {
                state.opened |= side;
                state.last = e.time_ns;
                let edge = state.edge;
                self.stats.both_ends_merged += 1;
                let applied = self.join_end(&key, edge, e);
                self.touch(applied.touched_edge.unwrap_or(edge), e.time_ns);
                return applied;
            }
        }
        let (edge, new) = self.edge_for(e);
        self.edges[edge as usize].connections += 1;
        self.insert_conn(key, ConnState::first_seen(e, edge, side));
        Applied { new_edge: new.then_some(edge), touched_edge: Some(edge), ..Applied::default() }
    }

    /// A report of an open connection: its first sight when it was open before the
    /// capture (existing), bytes it moved since (progress), or its state when the
    /// capture stopped (open at end). Whatever the order and whichever end reports,
    /// the connection counts once, and only the bytes moved after its first report
    /// count: the counters it carries then predate the window.
    pub(super) fn on_report(&mut self, e: &ConnFacts) -> Applied {
        let key = self.conn_key(e);
        let side = bit(e.side);
        let dedup = duration_ns(self.config.dedup_window);
        if let Some(state) = self.conns.get_mut(&key) {
            let live = state.opened & !state.closed != 0 || e.time_ns.saturating_sub(state.last) <= dedup;
            // An end that closed reports nothing more of a connection. Recordings
            // made before the kernel side skipped late accepts report such a socket
            // open at the capture's end, as its tracking entry outlived the close.
            let after_own_close = state.closed & side != 0 && e.kind != ConnKind::TcpExisting;
            if live && after_own_close {
                self.stats.late_reports += 1;
                return Applied::default();
            }
            if live && state.closed & side == 0 {
                let seen_end = state.opened & side != 0;
                if !seen_end {
                    state.opened |= side;
                    self.stats.both_ends_merged += 1;
                }
                let first_edge = state.edge;
                state.last = e.time_ns;
                // An end found open again starts a new window: another recording of its
                // node, begun after this one ended, saw nothing in between (nor does
                // an end whose kernel entry was evicted, which is counted).
                let added = if seen_end && e.kind == ConnKind::TcpExisting {
                    let _ = count_new_bytes(&mut state.counted, e);
                    [0; 2]
                } else {
                    count_new_bytes(&mut state.counted, e)
                };
                let applied = if seen_end {
                    Applied { touched_edge: Some(first_edge), ..Applied::default() }
                } else {
                    self.join_end(&key, first_edge, e)
                };
                let edge = applied.touched_edge.unwrap_or(first_edge);
                self.add_directed_bytes(edge, added);
                self.touch(edge, e.time_ns);
                return applied;
            }
        }
        self.stats.open_before_capture += 1;
        let (edge, new) = self.edge_for(e);
        self.edges[edge as usize].connections += 1;
        let state = ConnState { counted: directed_bytes(e), ..ConnState::first_seen(e, edge, side) };
        self.insert_conn(key, state);
        Applied { new_edge: new.then_some(edge), touched_edge: Some(edge), ..Applied::default() }
    }

    pub(super) fn on_close(&mut self, e: &ConnFacts) -> Applied {
        let key = self.conn_key(e);
        let side = bit(e.side);
        let existing = self.conns.peek(&key).copied();
        let joinable = existing.filter(|s| {
            s.closed & side == 0 && (s.opened & side != 0 || s.opened & !s.closed != 0 || self.within(s, e.time_ns))
        });
        let mut moved_from = None;
        let (mut state, new_edge) = match joinable {
            Some(mut state) => {
                let mut new_edge = None;
                if state.opened & side == 0 {
                    // The other end of a connection opened before the capture started.
                    self.stats.both_ends_merged += 1;
                    if let Some((edge, new)) = self.claim_for_host_pod(state.edge, e) {
                        moved_from = Some(state.edge);
                        state.edge = edge;
                        new_edge = new.then_some(edge);
                    }
                }
                state.closed |= side;
                state.last = e.time_ns;
                (state, new_edge)
            }
            None => {
                // Opened before the capture started and silent until its close (or
                // evicted): count it now, with the bytes of its whole life.
                let (edge, new) = self.edge_for(e);
                self.edges[edge as usize].connections += 1;
                let state = ConnState { closed: side, ..ConnState::first_seen(e, edge, side) };
                (state, new.then_some(edge))
            }
        };
        let added = count_new_bytes(&mut state.counted, e);
        self.add_directed_bytes(state.edge, added);
        let edge = state.edge;
        self.edges[edge as usize].retransmits += u64::from(e.retransmits);
        if e.error != 0 && !state.aborted {
            state.aborted = true;
            self.edges[edge as usize].aborted.count_abort(e.error);
        }
        self.touch(edge, e.time_ns);
        if state.opened == 3 && state.closed == 3 {
            self.conns.remove(&key);
        } else if joinable.is_some() {
            if let Some(slot) = self.conns.get_mut(&key) {
                *slot = state;
            }
        } else {
            self.insert_conn(key, state);
        }
        Applied { new_edge, touched_edge: Some(edge), moved_from, ..Applied::default() }
    }

    pub(super) fn on_flow(&mut self, e: &ConnFacts) -> Applied {
        // A connected UDP socket that never moved a datagram (a route probe, say) is
        // no traffic between services.
        if e.bytes_sent == 0 && e.bytes_received == 0 {
            self.stats.empty_flows += 1;
            return Applied::default();
        }
        let side = bit(e.side);
        let ttl = duration_ns(self.config.connection_ttl);
        let key = self.conn_key(e);
        if let Some(state) = self.conns.get_mut(&key) {
            if e.time_ns.saturating_sub(state.last) <= ttl {
                let joins = state.opened & side == 0;
                if joins {
                    state.opened |= side;
                    self.stats.both_ends_merged += 1;
                }
                state.last = e.time_ns;
                let (first_edge, owner) = (state.edge, state.owner);
                let applied = if joins {
                    self.join_end(&key, first_edge, e)
                } else {
                    Applied { touched_edge: Some(first_edge), ..Applied::default() }
                };
                let edge = applied.touched_edge.unwrap_or(first_edge);
                if owner == e.side {
                    self.add_bytes(edge, e);
                }
                self.touch(edge, e.time_ns);
                return applied;
            }
        }
        let (edge, new) = self.edge_for(e);
        self.edges[edge as usize].connections += 1;
        self.add_bytes(edge, e);
        self.insert_conn(key, ConnState::first_seen(e, edge, side));
        Applied { new_edge: new.then_some(edge), touched_edge: Some(edge), ..Applied::default() }
    }

    /// Which connection an event belongs to. A client port's first live connection is
    /// keyed by the client alone, so both ends join whatever server each resolves (a
    /// pod behind several Services). When an end that opened it reports another server
    /// while it lives (an unconnected UDP socket asking several nameservers, a busy
    /// client whose one port carries TCP connections to several servers at once), that
    /// is another connection, keyed by the server too; the other end finds it by
    /// resolving the same server. (Only an end's own reports can tell it opened
    /// another.)
    pub(super) fn conn_key(&mut self, e: &ConnFacts) -> ConnKey {
        let base = Self::key(e);
        let side = bit(e.side);
        // Only an open starts a TCP connection: a later report from an end whose server
        // resolves otherwise (a pod behind two Services) is still the connection it had.
        let opens = matches!(e.kind, ConnKind::TcpConnect | ConnKind::TcpAccept | ConnKind::TcpExisting);
        if e.kind.protocol() == Protocol::Tcp && !self.server_keyed {
            // No connection was ever keyed by its server, and this is no second open
            // from a live end: the client alone decides, without resolving anything.
            let reopens = opens
                && self.conns.peek(&base).is_some_and(|state| state.opened & side != 0 && state.closed & side == 0);
            if !reopens {
                return base;
            }
        }
        let (server, server_port) = self.server_of(e);
        let to_server = ConnKey::to_server(e.kind.protocol(), e.src_ip, e.src_port, server, server_port);
        if self.conns.peek(&to_server).is_some() {
            return to_server;
        }
        let ttl = duration_ns(self.config.connection_ttl);
        let another_server = self.conns.peek(&base).is_some_and(|state| {
            let first = self.edges[state.edge as usize].key;
            let open_here = match e.kind.protocol() {
                Protocol::Udp => e.side == state.owner && e.time_ns.saturating_sub(state.last) <= ttl,
                Protocol::Tcp => opens && state.opened & side != 0 && state.closed & side == 0,
            };
            open_here && (first.port != server_port || !self.same_server(first.destination, server, e))
        });
        if another_server {
            self.server_keyed = true;
            to_server
        } else {
            base
        }
    }

    /// An end joining the connection at `key`, counted on `edge` so far: the edge it
    /// is counted on from now on (another when it moves to a hostNetwork pod).
    fn join_end(&mut self, key: &ConnKey, edge: EdgeId, e: &ConnFacts) -> Applied {
        let Some((moved_to, new)) = self.claim_for_host_pod(edge, e) else {
            return Applied { touched_edge: Some(edge), ..Applied::default() };
        };
        if let Some(state) = self.conns.get_mut(key) {
            state.edge = moved_to;
        }
        Applied {
            new_edge: new.then_some(moved_to),
            touched_edge: Some(moved_to),
            moved_from: Some(edge),
            ..Applied::default()
        }
    }

    fn add_bytes(&mut self, edge: EdgeId, e: &ConnFacts) {
        self.add_directed_bytes(edge, directed_bytes(e));
    }

    /// Adds (client to server, server to client) bytes to an edge.
    fn add_directed_bytes(&mut self, edge: EdgeId, [to_server, to_client]: [u64; 2]) {
        let stats = &mut self.edges[edge as usize];
        stats.bytes_sent += to_server;
        stats.bytes_received += to_client;
    }

    fn touch(&mut self, edge: EdgeId, t: TimeNs) {
        let stats = &mut self.edges[edge as usize];
        stats.last_seen = stats.last_seen.max(t);
    }

    fn insert_conn(&mut self, key: ConnKey, state: ConnState) {
        if let Some((_, evicted)) = self.conns.insert(key, state) {
            // A connection both of whose ends closed only waited for a late report:
            // dropping it loses nothing.
            if !evicted.finished() {
                self.stats.evicted += 1;
            }
        }
    }

    /// Forgets connections that can see no more events: closed ones past the dedup
    /// window, UDP flows idle past connection_ttl. An open TCP connection may be silent
    /// until it closes however long it lives (an idle pool connection reports no
    /// progress), so only the table's capacity evicts it. The table is in recency
    /// order, so this stops at the first one still live.
    pub(super) fn expire(&mut self, now: TimeNs) {
        let dedup = duration_ns(self.config.dedup_window);
        let ttl = duration_ns(self.config.connection_ttl);
        while let Some((key, state)) = self.conns.oldest() {
            let idle = now.saturating_sub(state.last);
            let idle_flow = key.protocol() == Protocol::Udp && idle > ttl;
            if idle_flow || (state.finished() && idle > dedup) {
                self.conns.pop_oldest();
            } else {
                break;
            }
        }
    }
}
