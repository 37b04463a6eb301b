//! The emitter's map view: the nodes it follows, found, removed, retired or idle, and the
//! node an engine entity is shown as.

use crate::engine::resolve::EntityRef;
use crate::engine::{Engine, EntityId};
use crate::events::model::{ChangeData, ChangeEvent, GoneReason, RemovalReason, ServiceDiscovered, ServiceRemoved};
use crate::topology::NodeKind;

use super::{index_of, placeholder, Details, Emitter, PairIdx, Slot, Timer, View, ViewIdx};

impl Emitter {
    pub(super) fn discover(&mut self, index: ViewIdx, out: &mut Vec<ChangeEvent>) {
        let now = self.now();
        let view = &mut self.views[index as usize];
        view.present = true;
        view.health = Slot::new(view.details.health);
        view.version = Slot::new(view.details.version.clone());
        view.endpoints = Slot::new(view.details.endpoints);
        let data = ServiceDiscovered {
            service: view.id.clone(),
            kind: view.kind,
            service_type: view.details.service_type,
            version: view.details.version.clone(),
            health: view.details.health,
            endpoints: view.details.endpoints,
        };
        self.emit(out, now, ChangeData::ServiceDiscovered(data));
        self.significant();
    }

    pub(super) fn remove(&mut self, index: ViewIdx, reason: RemovalReason, out: &mut Vec<ChangeEvent>) {
        for timer in [Timer::Health(index), Timer::Version(index), Timer::Endpoints(index)] {
            self.cancel(timer);
        }
        let now = self.now();
        let view = &mut self.views[index as usize];
        view.present = false;
        let data = ServiceRemoved { service: view.id.clone(), kind: view.kind, reason };
        self.emit(out, now, ChangeData::ServiceRemoved(data));
        self.significant();
    }

    /// A Kubernetes Service was deleted: its dependencies go with it, then it goes.
    pub(super) fn retire(&mut self, index: ViewIdx, out: &mut Vec<ChangeEvent>) {
        let active: Vec<PairIdx> =
            self.views[index as usize].pairs.iter().copied().filter(|p| self.pairs[*p as usize].active).collect();
        let mut others = Vec::new();
        for pair in active {
            let now = self.now();
            others.extend(self.deactivate(pair, GoneReason::ServiceRemoved, now, out));
        }
        self.remove(index, RemovalReason::Deleted, out);
        for other in others {
            self.check_idle(other, out);
        }
    }

    /// Removes a workload, external or node with no current dependency left.
    pub(super) fn check_idle(&mut self, index: ViewIdx, out: &mut Vec<ChangeEvent>) {
        let view = &self.views[index as usize];
        if view.present && view.active_pairs == 0 && view.kind != NodeKind::Service {
            self.remove(index, RemovalReason::Idle, out);
        }
    }

    /// The view of an engine entity, created on first sight.
    pub(super) fn entity_view(&mut self, engine: &Engine, entity: EntityId) -> Option<ViewIdx> {
        if let Some(Some(view)) = self.entity_views.get(entity as usize) {
            return Some(*view);
        }
        let entity_ref = engine.entity(entity)?.clone();
        let view = self.view_for(engine, &entity_ref);
        if self.entity_views.len() <= entity as usize {
            self.entity_views.resize(entity as usize + 1, None);
        }
        self.entity_views[entity as usize] = Some(view);
        Some(view)
    }

    /// The view of a node, created (with its details as of now) on first sight.
    pub(super) fn view_for(&mut self, engine: &Engine, entity: &EntityRef) -> ViewIdx {
        if let Some(view) = self.view_ids.get(entity) {
            return *view;
        }
        let (node, pods) = engine.node_details(entity).unwrap_or_else(|| {
            // A Service never seen: a placeholder that is not in the map.
            let (namespace, name) =
                entity.id().split_once('/').map(|(a, b)| (a.to_owned(), b.to_owned())).unwrap_or_default();
            (placeholder(namespace, name), Vec::new())
        });
        let kept = entity.kept_by(&self.config);
        let exists = match entity {
            EntityRef::Service(key) => engine.cluster().service_exists(key),
            EntityRef::Workload(_)
            | EntityRef::External { .. }
            | EntityRef::ExternalName { .. }
            | EntityRef::Node(_) => true,
        };
        let details = Details {
            service_type: node.service_type,
            version: node.version,
            health: node.health,
            endpoints: node.endpoints,
        };
        let index = index_of(self.views.insert(View {
            entity: entity.clone(),
            id: entity.id(),
            kind: node.kind,
            namespace: node.namespace,
            health: Slot::new(details.health),
            version: Slot::new(details.version.clone()),
            endpoints: Slot::new(details.endpoints),
            details,
            exists,
            kept,
            present: false,
            active_pairs: 0,
            pairs: Vec::new(),
            pods: Vec::new(),
        }));
        self.view_ids.insert(entity.clone(), index);
        self.index_pods(index, pods);
        index
    }
}
