//! What `map_retention` lets go: edges with no traffic for that long and no open
//! connection, the nodes no edge holds any more, deleted Services nothing refers to.
//!
//! A long `smap watch` over a churning cluster (preview environments, CronJobs, new
//! outside addresses) would otherwise hold every node and edge it ever saw. The sweep
//! runs on event time, a few times per retention period, inside [`Engine::apply`], so a
//! replay forgets exactly what the live run forgot. Ids of what is forgotten go back
//! into the arenas and are handed out again: consumers keyed by them (the change
//! emitter) take [`Forgotten`] before reading anything else.

use hashbrown::HashSet;
use serde::Serialize;
use smap_replay::TimeNs;

use super::{duration_ns, EdgeId, Engine, EntityId};
use crate::engine::resolve::EntityRef;

/// Sweeps per retention period: what is forgotten goes between one and one and a
/// quarter retention periods after its last traffic.
const SWEEPS_PER_RETENTION: i64 = 4;

/// What one sweep let go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Event time of the sweep.
    pub at: TimeNs,
    /// Edges forgotten; their ids may be reused from now on.
    pub edges: Vec<EdgeId>,
    /// Nodes forgotten, with what they were; their ids may be reused from now on.
    pub entities: Vec<(EntityId, EntityRef)>,
}

/// What the engine holds, in entries: the figures a soak test watches stay flat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Footprint {
    /// Nodes seen in traffic and held.
    pub entities: usize,
    /// Edges held.
    pub edges: usize,
    /// Connections tracked.
    pub connections: usize,
    /// Current pods.
    pub pods: usize,
    /// Current Services.
    pub services: usize,
    /// Deleted Services kept for traffic that still refers to them.
    pub retired_services: usize,
    /// Current EndpointSlices.
    pub slices: usize,
    /// Current Ingresses with a route to a Service.
    pub ingresses: usize,
    /// Objects whose last version is remembered (to skip copies).
    pub object_versions: usize,
    /// Addresses in the resolution caches.
    pub cached_addresses: usize,
}

impl Engine {
    /// What the engine holds now.
    pub fn footprint(&self) -> Footprint {
        let cluster = self.cluster.footprint();
        Footprint {
            entities: self.entities.len(),
            edges: self.edges.len(),
            connections: self.conns.len(),
            pods: cluster.pods,
            services: cluster.services,
            retired_services: cluster.retired,
            slices: cluster.slices,
            ingresses: cluster.ingresses,
            object_versions: self.object_versions.len(),
            cached_addresses: self.source_cache.len() + self.destination_cache.len(),
        }
    }

    /// What the last sweep forgot, once: a consumer keyed by ids must drop its state of
    /// these before it looks at anything else, as the ids may be in use again.
    pub fn take_forgotten(&mut self) -> Option<Forgotten> {
        self.forgotten.take()
    }

    pub(super) fn sweep_if_due(&mut self, now: TimeNs) {
        let Some(retention) = self.config.map_retention.map(duration_ns) else { return };
        let every = (retention / SWEEPS_PER_RETENTION).max(1);
        let next = *self.next_sweep.get_or_insert(now.saturating_add(every));
        if now < next {
            return;
        }
        self.next_sweep = Some(now.saturating_add(every));
        let forgotten = self.sweep(now, now.saturating_sub(retention));
        self.stats.forgotten_edges += forgotten.edges.len() as u64;
        self.forgotten = Some(forgotten);
    }

    /// Forgets what had no traffic since `horizon` and nothing live refers to.
    fn sweep(&mut self, now: TimeNs, horizon: TimeNs) -> Forgotten {
        self.expire(now);
        // An open connection may be silent for hours and still close onto its edge.
        let held: HashSet<EdgeId> = self.conns.states().map(|state| state.edge).collect();
        let stale: Vec<EdgeId> = self
            .edges
            .iter()
            .filter(|(id, edge)| edge.last_seen < horizon && !held.contains(&(*id as EdgeId)))
            .map(|(id, _)| id as EdgeId)
            .collect();
        for &id in &stale {
            let edge = self.edges.remove(id as usize);
            self.edge_ids.remove(&edge.key);
        }
        let mut used: HashSet<EntityId> = HashSet::new();
        for (_, edge) in &self.edges {
            used.insert(edge.key.source);
            used.insert(edge.key.destination);
        }
        let unused: Vec<EntityId> =
            self.entities.iter().map(|(id, _)| id as EntityId).filter(|id| !used.contains(id)).collect();
        let mut entities = Vec::with_capacity(unused.len());
        for id in unused {
            let entity = self.entities.remove(id as usize);
            self.entity_ids.remove(&entity);
            entities.push((id, entity));
        }
        if !entities.is_empty() {
            // The caches map addresses to ids that may now name something else.
            self.source_cache.clear();
            self.destination_cache.clear();
        }
        let entity_ids = &self.entity_ids;
        self.cluster.forget_retired(horizon, |key| entity_ids.contains_key(&EntityRef::Service(key.clone())));
        Forgotten { at: now, edges: stale, entities }
    }
}
