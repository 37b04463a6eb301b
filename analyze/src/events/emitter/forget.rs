//! Letting go of what the engine forgot (`map_retention`): the emitter's copies of
//! forgotten edges, the dependencies left without edges, and the nodes that are out of
//! the map with no dependency left, so a long watch holds no more than the engine does.
//!
//! A dependency forgotten and seen again is new (`first_time: true`): the map kept
//! nothing of it.

use std::collections::BTreeSet;

use super::{Emitter, PairIdx, Timer, ViewIdx};
use crate::engine::{Engine, Forgotten};
use crate::topology::NodeKind;

/// What the emitter holds, in entries (see [`crate::engine::Footprint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct EmitterFootprint {
    /// Nodes the emitter follows (in the map or not).
    pub views: usize,
    /// Caller-callee pairs (dependencies current or gone).
    pub pairs: usize,
    /// Pending timers (debounce, rate limits, expiry).
    pub timers: usize,
    /// Pods indexed to the nodes they back.
    pub pods: usize,
}

impl Emitter {
    /// What the emitter holds now.
    pub fn footprint(&self) -> EmitterFootprint {
        EmitterFootprint {
            views: self.views.len(),
            pairs: self.pairs.len(),
            timers: self.timers.len(),
            pods: self.pod_views.len(),
        }
    }

    /// Drops what refers to what the engine forgot. Call right after the engine
    /// applied the event whose sweep forgot it, before anything else reads the engine.
    pub fn forget(&mut self, engine: &Engine, forgotten: &Forgotten) {
        let mut emptied: BTreeSet<PairIdx> = BTreeSet::new();
        for &edge in &forgotten.edges {
            let Some(copy) = self.edges.get_mut(edge as usize) else { continue };
            if let Some(pair) = std::mem::take(copy).pair {
                if let Some(state) = self.pairs.get_mut(pair as usize) {
                    state.edges = state.edges.saturating_sub(1);
                    emptied.insert(pair);
                }
            }
        }
        for (entity, _) in &forgotten.entities {
            if let Some(view) = self.entity_views.get_mut(*entity as usize) {
                *view = None;
            }
        }
        for pair in emptied {
            if self.pairs.get(pair as usize).is_some_and(|p| p.edges == 0 && !p.active) {
                self.drop_pair(pair);
            }
        }
        // Out of the map, no dependency, and nothing the engine or the cluster still
        // knows them by (a current Service keeps its view: it is in the map by itself).
        let idle: Vec<ViewIdx> = self
            .views
            .iter()
            .filter(|(_, v)| {
                !v.present
                    && v.pairs.is_empty()
                    && !(v.kind == NodeKind::Service && v.exists)
                    && engine.entity_id(&v.entity).is_none()
            })
            .map(|(index, _)| index as ViewIdx)
            .collect();
        for view in idle {
            self.drop_view(view);
        }
    }

    fn drop_pair(&mut self, pair: PairIdx) {
        self.cancel(Timer::Stats(pair));
        self.cancel(Timer::Expire(pair));
        let state = self.pairs.remove(pair as usize);
        self.pair_ids.remove(&(state.source, state.destination));
        for end in [state.source, state.destination] {
            if let Some(view) = self.views.get_mut(end as usize) {
                view.pairs.retain(|p| *p != pair);
            }
        }
    }

    fn drop_view(&mut self, index: ViewIdx) {
        for timer in [Timer::Health(index), Timer::Version(index), Timer::Endpoints(index)] {
            self.cancel(timer);
        }
        self.index_pods(index, Vec::new());
        let view = self.views.remove(index as usize);
        self.view_ids.remove(&view.entity);
    }
}
