//! The table of live connections: a hash index over fixed-size slots kept in recency
//! order, so a tracked connection costs one 64-byte slot plus its index entry and never
//! an allocation of its own (the `lru` crate boxed every entry: 79-86 B each).

use std::hash::BuildHasher;
use std::net::IpAddr;

use hashbrown::{DefaultHashBuilder, HashTable};
use smap_replay::{ConnFacts, Protocol, Side, TimeNs};

use super::ids::{EdgeId, EntityId};

/// Which connection an event belongs to: both ends of one connection report the
/// client's address and port, whichever socket reported. IPv4 and IPv6 share one
/// 16-byte form (IPv4-mapped), held as two words so comparing and hashing keys is a
/// few register operations.
///
/// One client port may talk to several servers at once (an unconnected UDP socket
/// asking every nameserver, a busy TCP client whose ports carry connections to several
/// destinations): its connections past the first also carry the server, as the client
/// resolved it ([`ConnKey::to_server`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ConnKey {
    client_ip: [u64; 2],
    /// Bit 63: UDP; bit 62: names the server; bits 32..62: the server's node; 16..32:
    /// the server's port; 0..16: the client's port.
    rest: u64,
}

const UDP_BIT: u64 = 1 << 63;
const SERVER_BIT: u64 = 1 << 62;

impl ConnKey {
    pub(crate) fn new(protocol: Protocol, client_ip: IpAddr, client_port: u16) -> Self {
        let bits = match client_ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
            IpAddr::V6(v6) => v6.to_bits(),
        };
        let udp = if protocol == Protocol::Udp { UDP_BIT } else { 0 };
        // Truncation is the point: the high and the low word.
        ConnKey { client_ip: [(bits >> 64) as u64, bits as u64], rest: udp | u64::from(client_port) }
    }

    /// A connection from this client port to one server (node and edge port).
    pub(crate) fn to_server(
        protocol: Protocol,
        client_ip: IpAddr,
        client_port: u16,
        server: EntityId,
        server_port: u16,
    ) -> Self {
        // Node ids past 2^30 cannot be held in memory; masking keeps the flag bits.
        let server = u64::from(server) & 0x3fff_ffff;
        let base = Self::new(protocol, client_ip, client_port);
        ConnKey { rest: base.rest | SERVER_BIT | server << 32 | u64::from(server_port) << 16, ..base }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        if self.rest & UDP_BIT != 0 {
            Protocol::Udp
        } else {
            Protocol::Tcp
        }
    }

    #[cfg(test)]
    fn client_port(&self) -> u16 {
        // Truncation is the point: the low 16 bits.
        self.rest as u16
    }
}

/// What the engine knows of one live connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ConnState {
    pub(crate) last: TimeNs,
    pub(crate) edge: EdgeId,
    /// UDP: the end whose byte counts are used (the first to report), so bytes are
    /// counted once though both ends report them.
    pub(crate) owner: Side,
    /// Ends that opened (bit 1 client, bit 2 server).
    pub(crate) opened: u8,
    /// Ends that closed.
    pub(crate) closed: u8,
    /// TCP: the socket counters (client to server, server to client) already counted
    /// on the edge, or not counted because they predate the window. Either end's
    /// counters measure the same two byte streams, so each report adds only what it
    /// shows beyond these.
    pub(crate) counted: [u64; 2],
    /// An end reported it aborted (a reset, a timeout): counted once on the edge,
    /// though both ends report it.
    pub(crate) aborted: bool,
}

impl ConnState {
    /// A connection first seen at `e`'s time, on `edge`, opened by `e`'s end (bit
    /// `opened`), nothing counted, closed or aborted yet.
    pub(crate) fn first_seen(e: &ConnFacts, edge: EdgeId, opened: u8) -> Self {
        ConnState { last: e.time_ns, edge, owner: e.side, opened, closed: 0, counted: [0; 2], aborted: false }
    }

    /// Both ends that opened have closed: only a late report can still arrive.
    pub(crate) fn finished(&self) -> bool {
        self.closed != 0 && self.closed & self.opened == self.opened
    }
}

/// A report's byte counters as (client to server, server to client).
pub(crate) fn directed_bytes(e: &ConnFacts) -> [u64; 2] {
    match e.side {
        Side::Client => [e.bytes_sent, e.bytes_received],
        Side::Server => [e.bytes_received, e.bytes_sent],
    }
}

/// What a TCP socket's counters show beyond those already counted, which they
/// become. Counters only grow, and both ends count the same streams (one end's sent
/// bytes, once acked, are the other's received), so the larger view wins.
pub(crate) fn count_new_bytes(counted: &mut [u64; 2], e: &ConnFacts) -> [u64; 2] {
    let now = directed_bytes(e);
    let added = [now[0].saturating_sub(counted[0]), now[1].saturating_sub(counted[1])];
    *counted = [counted[0].max(now[0]), counted[1].max(now[1])];
    added
}

const NONE: u32 = u32::MAX;
/// Slots are allocated in chunks so the table grows without doubling a vector (which
/// would leave up to half of a large table's memory unused).
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;

#[derive(Clone, Copy)]
struct Slot {
    key: ConnKey,
    state: ConnState,
    /// Towards the least recently used end; `NONE` at the oldest.
    older: u32,
    /// Towards the most recently used end; also links free slots.
    newer: u32,
}

const EMPTY: Slot = Slot {
    key: ConnKey { client_ip: [0; 2], rest: 0 },
    state: ConnState { last: 0, edge: 0, owner: Side::Client, opened: 0, closed: 0, counted: [0; 2], aborted: false },
    older: NONE,
    newer: NONE,
};

fn slot_in(chunks: &[Box<[Slot]>], at: u32) -> &Slot {
    &chunks[(at >> CHUNK_BITS) as usize][at as usize & (CHUNK - 1)]
}

/// Live connections in recency order, bounded by a capacity past which the least
/// recently used one is evicted.
pub(crate) struct ConnTable {
    hasher: DefaultHashBuilder,
    index: HashTable<u32>,
    chunks: Vec<Box<[Slot]>>,
    /// Slots handed out so far (used or on the free list).
    allocated: u32,
    free: u32,
    oldest: u32,
    newest: u32,
    len: usize,
    capacity: usize,
}

impl ConnTable {
    pub(crate) fn new(capacity: usize) -> Self {
        ConnTable {
            hasher: DefaultHashBuilder::default(),
            index: HashTable::new(),
            chunks: Vec::new(),
            allocated: 0,
            free: NONE,
            oldest: NONE,
            newest: NONE,
            len: 0,
            capacity: capacity.clamp(1, NONE as usize - 1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn slot(&self, at: u32) -> &Slot {
        slot_in(&self.chunks, at)
    }

    fn slot_mut(&mut self, at: u32) -> &mut Slot {
        &mut self.chunks[(at >> CHUNK_BITS) as usize][at as usize & (CHUNK - 1)]
    }

    fn find(&self, key: &ConnKey) -> Option<u32> {
        let hash = self.hasher.hash_one(key);
        self.index.find(hash, |&at| self.slot(at).key == *key).copied()
    }

    /// The state of a connection, without changing its recency.
    pub(crate) fn peek(&self, key: &ConnKey) -> Option<&ConnState> {
        self.find(key).map(|at| &self.slot(at).state)
    }

    /// The state of a connection, made the most recently used.
    pub(crate) fn get_mut(&mut self, key: &ConnKey) -> Option<&mut ConnState> {
        let at = self.find(key)?;
        self.unlink(at);
        self.link_newest(at);
        Some(&mut self.slot_mut(at).state)
    }

    /// Every connection's state, oldest first.
    pub(crate) fn states(&self) -> impl Iterator<Item = &ConnState> {
        let mut at = self.oldest;
        std::iter::from_fn(move || {
            (at != NONE).then(|| {
                let slot = self.slot(at);
                at = slot.newer;
                &slot.state
            })
        })
    }

    /// The least recently used connection.
    pub(crate) fn oldest(&self) -> Option<(&ConnKey, &ConnState)> {
        (self.oldest != NONE).then(|| {
            let slot = self.slot(self.oldest);
            (&slot.key, &slot.state)
        })
    }

    /// Forgets the least recently used connection.
    pub(crate) fn pop_oldest(&mut self) {
        if self.oldest != NONE {
            let key = self.slot(self.oldest).key;
            self.remove(&key);
        }
    }

    /// Forgets a connection.
    pub(crate) fn remove(&mut self, key: &ConnKey) -> Option<ConnState> {
        let hash = self.hasher.hash_one(key);
        let chunks = &self.chunks;
        let at = match self.index.find_entry(hash, |&at| slot_in(chunks, at).key == *key) {
            Ok(entry) => entry.remove().0,
            Err(_) => return None,
        };
        self.unlink(at);
        let state = self.slot(at).state;
        let free = self.free;
        self.slot_mut(at).newer = free;
        self.free = at;
        self.len -= 1;
        Some(state)
    }

    /// Stores a connection as the most recently used. When the table is full the
    /// least recently used one makes room; it is returned unless it was `key` itself.
    pub(crate) fn insert(&mut self, key: ConnKey, state: ConnState) -> Option<(ConnKey, ConnState)> {
        if let Some(at) = self.find(&key) {
            self.unlink(at);
            self.link_newest(at);
            self.slot_mut(at).state = state;
            return None;
        }
        let mut evicted = None;
        if self.len >= self.capacity {
            if let Some((old_key, old_state)) = self.oldest().map(|(k, s)| (*k, *s)) {
                self.remove(&old_key);
                evicted = Some((old_key, old_state));
            }
        }
        let at = self.allocate();
        *self.slot_mut(at) = Slot { key, state, older: NONE, newer: NONE };
        self.link_newest(at);
        let hash = self.hasher.hash_one(key);
        let (hasher, chunks) = (&self.hasher, &self.chunks);
        self.index.insert_unique(hash, at, |&at| hasher.hash_one(slot_in(chunks, at).key));
        self.len += 1;
        evicted
    }

    fn allocate(&mut self) -> u32 {
        if self.free != NONE {
            let at = self.free;
            self.free = self.slot(at).newer;
            return at;
        }
        if self.allocated as usize == self.chunks.len() * CHUNK {
            self.chunks.push(vec![EMPTY; CHUNK].into_boxed_slice());
        }
        self.allocated += 1;
        self.allocated - 1
    }

    fn unlink(&mut self, at: u32) {
        let Slot { older, newer, .. } = *self.slot(at);
        if older == NONE {
            self.oldest = newer;
        } else {
            self.slot_mut(older).newer = newer;
        }
        if newer == NONE {
            self.newest = older;
        } else {
            self.slot_mut(newer).older = older;
        }
    }

    fn link_newest(&mut self, at: u32) {
        let newest = self.newest;
        {
            let slot = self.slot_mut(at);
            slot.older = newest;
            slot.newer = NONE;
        }
        if newest == NONE {
            self.oldest = at;
        } else {
            self.slot_mut(newest).newer = at;
        }
        self.newest = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(port: u16) -> ConnKey {
        ConnKey::new(Protocol::Tcp, "10.244.0.1".parse().unwrap(), port)
    }

    fn state(last: TimeNs) -> ConnState {
        ConnState { last, edge: 0, owner: Side::Client, opened: 1, closed: 0, counted: [0; 2], aborted: false }
    }

    #[test]
    fn keeps_recency_order_and_evicts_the_oldest() {
        let mut table = ConnTable::new(3);
        for port in 1..=3 {
            assert_eq!(table.insert(key(port), state(i64::from(port))), None);
        }
        // Touching 1 makes 2 the oldest.
        table.get_mut(&key(1)).unwrap().last = 10;
        assert_eq!(table.oldest().map(|(k, _)| *k), Some(key(2)));
        let evicted = table.insert(key(4), state(4));
        assert_eq!(evicted, Some((key(2), state(2))));
        assert_eq!(table.len(), 3);
        assert!(table.peek(&key(2)).is_none());
        assert_eq!(table.peek(&key(1)).map(|s| s.last), Some(10));
        // Oldest first: 3, 1, 4.
        let mut order = Vec::new();
        while let Some((k, _)) = table.oldest() {
            order.push(k.client_port());
            table.pop_oldest();
        }
        assert_eq!(order, [3, 1, 4]);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn reuses_freed_slots_across_chunks() {
        let mut table = ConnTable::new(usize::MAX);
        let n = u16::try_from(CHUNK + 10).unwrap();
        for port in 0..n {
            table.insert(key(port), state(0));
        }
        for port in 0..n {
            assert_eq!(table.remove(&key(port)), Some(state(0)));
        }
        for port in 0..n {
            table.insert(key(port), state(1));
        }
        assert_eq!(table.len(), usize::from(n));
        assert_eq!(table.chunks.len(), 2);
        assert!((0..n).all(|port| table.peek(&key(port)) == Some(&state(1))));
    }

    #[test]
    fn protocols_and_address_families_do_not_collide() {
        let mut table = ConnTable::new(10);
        table.insert(key(1), state(1));
        let udp = ConnKey::new(Protocol::Udp, "10.244.0.1".parse().unwrap(), 1);
        assert!(table.peek(&udp).is_none());
        let to_server = ConnKey::to_server(Protocol::Udp, "10.244.0.1".parse().unwrap(), 1, 0, 0);
        assert_ne!(udp, to_server, "a flow naming its server is not the socket's first flow");
        assert_ne!(to_server, ConnKey::to_server(Protocol::Udp, "10.244.0.1".parse().unwrap(), 1, 7, 53));
        let tcp_to = ConnKey::to_server(Protocol::Tcp, "10.244.0.1".parse().unwrap(), 1, 0, 0);
        assert_ne!(tcp_to, to_server);
        assert_eq!(tcp_to.protocol(), Protocol::Tcp);
        assert_eq!((to_server.client_port(), to_server.protocol()), (1, Protocol::Udp));
        let mapped = ConnKey::new(Protocol::Tcp, "::ffff:10.244.0.1".parse().unwrap(), 1);
        assert_eq!(table.peek(&mapped), Some(&state(1)), "an IPv4-mapped address is the IPv4 address");
        assert_eq!(udp.protocol(), Protocol::Udp);
    }
}
