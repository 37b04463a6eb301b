//! The emitter's view of Kubernetes: object events mark the services they touch, and once
//! time moves past them each marked service is recomputed and its changes reported.

use std::collections::{BTreeMap, BTreeSet};

use smap_replay::{ObjectEvent, ObjectKind};

use crate::engine::cluster::{Key, SERVICE_NAME_LABEL};
use crate::engine::resolve::EntityRef;
use crate::engine::Engine;
use crate::events::model::ChangeEvent;
use crate::topology::{Health, NodeKind};

use super::{Details, Emitter, Timer, ViewIdx};

impl Emitter {
    pub(super) fn on_object(&mut self, engine: &Engine, object: &ObjectEvent) {
        *self.counters.object_events.entry((object.kind.as_str(), object.action.as_str())).or_default() += 1;
        let included = self.config.namespace_included(&object.namespace);
        match object.kind {
            ObjectKind::Service if included => {
                self.dirty_services.insert(Key::from(format!("{}/{}", object.namespace, object.name)));
            }
            // The Service it belongs to now and the one it belonged to, which the
            // engine still holds: a deletion may not say.
            ObjectKind::EndpointSlice if included => {
                let was = engine.cluster().slice_service(&format!("{}/{}", object.namespace, object.name)).cloned();
                let now =
                    slice_service(&object.object).map(|service| Key::from(format!("{}/{service}", object.namespace)));
                self.dirty_services.extend(was.into_iter().chain(now));
            }
            ObjectKind::Pod => {
                self.dirty_pods.insert(Key::from(format!("{}/{}", object.namespace, object.name)));
            }
            // Excluded namespaces are not in the map; nodes, namespaces and the rest
            // change how addresses resolve (or what is allowed), not what a service is.
            _ => {}
        }
    }

    /// Re-evaluates the services the pending Kubernetes changes touched.
    pub(super) fn flush(&mut self, engine: &Engine, out: &mut Vec<ChangeEvent>) {
        if self.dirty_services.is_empty() && self.dirty_pods.is_empty() {
            return;
        }
        let mut touched: BTreeSet<ViewIdx> = BTreeSet::new();
        for key in std::mem::take(&mut self.dirty_services) {
            touched.insert(self.view_for(engine, &EntityRef::Service(key)));
        }
        let cluster = engine.cluster();
        for pod_key in std::mem::take(&mut self.dirty_pods) {
            if let Some(views) = self.pod_views.get(&pod_key) {
                touched.extend(views.iter().copied());
            }
            let Some(pod) = cluster.pod(&pod_key) else { continue };
            let services: Vec<Key> = cluster
                .services_of_pod(pod)
                .into_iter()
                .filter(|s| self.config.namespace_included(&s.namespace))
                .map(|s| s.key.clone())
                .collect();
            for key in services {
                touched.insert(self.view_for(engine, &EntityRef::Service(key)));
            }
            if let Some(view) = self.view_ids.get(&EntityRef::Workload(pod.workload.clone())) {
                touched.insert(*view);
            }
        }
        for view in touched {
            self.recompute(engine, view, out);
        }
    }

    pub(super) fn recompute(&mut self, engine: &Engine, index: ViewIdx, out: &mut Vec<ChangeEvent>) {
        let view = &self.views[index as usize];
        let Some((node, pods)) = engine.node_details(&view.entity) else { return };
        let exists = match &view.entity {
            EntityRef::Service(key) => engine.cluster().service_exists(key),
            _ => true,
        };
        self.index_pods(index, pods);
        let details = Details {
            service_type: node.service_type,
            version: node.version,
            health: node.health,
            endpoints: node.endpoints,
        };
        let view = &mut self.views[index as usize];
        let old = std::mem::replace(&mut view.details, details);
        view.exists = exists;
        let (present, kind) = (view.present, view.kind);
        if old != self.views[index as usize].details && present {
            self.generation += 1;
        }
        if kind == NodeKind::Service {
            if exists && !present && self.views[index as usize].kept {
                self.discover(index, out);
                return;
            }
            if !exists && present {
                self.retire(index, out);
                return;
            }
        }
        if present {
            self.diff(index, &old);
        }
    }

    pub(super) fn index_pods(&mut self, index: ViewIdx, pods: Vec<Key>) {
        let old = std::mem::replace(&mut self.views[index as usize].pods, pods);
        for pod in old {
            if let Some(views) = self.pod_views.get_mut(&pod) {
                views.retain(|v| *v != index);
                if views.is_empty() {
                    self.pod_views.remove(&pod);
                }
            }
        }
        for pod in &self.views[index as usize].pods {
            let views = self.pod_views.entry(pod.clone()).or_default();
            if !views.contains(&index) {
                views.push(index);
            }
        }
    }

    /// Schedules reports of what changed on a present service.
    pub(super) fn diff(&mut self, index: ViewIdx, old: &Details) {
        let now = self.now();
        let immediate = self.config.emit_on_change;
        let view = &self.views[index as usize];
        // No pods for a moment (a pod replaced) leaves the version unknown, not changed.
        let version = view.details.version != old.version && view.details.version.is_some();
        let (health, endpoints) = (view.details.health, view.details.endpoints != old.endpoints);
        if health != old.health {
            // Down, or back from down, is critical: reported at once (rate limit allowing).
            let critical = health == Health::Down || view.health.reported == Health::Down;
            let due = self.due(now, view.health.last, immediate && critical);
            self.schedule(Timer::Health(index), due);
        }
        if version {
            let due = self.due(now, self.views[index as usize].version.last, immediate);
            self.schedule(Timer::Version(index), due);
        }
        if endpoints {
            let due = self.due(now, self.views[index as usize].endpoints.last, false);
            self.schedule(Timer::Endpoints(index), due);
        }
    }
}

/// The Service an EndpointSlice belongs to ([`SERVICE_NAME_LABEL`]), from the object as
/// recorded.
fn slice_service(object: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Slice {
        metadata: Meta,
    }
    #[derive(serde::Deserialize)]
    struct Meta {
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }
    let slice: Slice = serde_json::from_str(object).ok()?;
    slice.metadata.labels.get(SERVICE_NAME_LABEL).cloned()
}
