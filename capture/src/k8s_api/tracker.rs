//! Turns one scope's watcher events into recording rows: the first list as snapshot
//! rows, later changes as added / modified / deleted, and a relist (after a 410 Gone)
//! as the difference to what was known, so deletions missed while disconnected are
//! recorded and nothing is recorded twice.
//!
//! Only identities are kept (namespace, name, uid, resourceVersion): the objects
//! themselves go to the recording and are not held in memory.

use std::collections::HashMap;

use kube::core::DynamicObject;
use serde_json::{json, Value};
use smap_replay::kubectl::{api_version, object_event};
use smap_replay::{ObjectAction, ObjectEvent, ObjectKind, TimeNs};

/// What is remembered of an object between events.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Known {
    uid: String,
    resource_version: String,
}

/// The state of one scope's watch.
#[derive(Debug)]
pub(crate) struct Tracker {
    kind: ObjectKind,
    /// Objects present, by (namespace, name).
    known: HashMap<(String, String), Known>,
    /// Rows of the list in progress (times are set when it completes).
    listing: Option<Vec<ObjectEvent>>,
    /// Whether a list has completed once: later lists are relists.
    pub(crate) synced: bool,
    /// Objects without metadata.name or not serializable, skipped.
    pub(crate) unparsable: u64,
}

impl Tracker {
    pub(crate) fn new(kind: ObjectKind) -> Self {
        Tracker { kind, known: HashMap::new(), listing: None, synced: false, unparsable: 0 }
    }

    /// Handles one watcher event received at `now`; returns the rows to record.
    pub(crate) fn handle(
        &mut self,
        event: kube::runtime::watcher::Event<DynamicObject>,
        now: TimeNs,
    ) -> Vec<ObjectEvent> {
        use kube::runtime::watcher::Event;
        match event {
            // A list (re)starts; a list that failed halfway restarts here too, so its
            // partial rows are dropped.
            Event::Init => {
                self.listing = Some(Vec::new());
                Vec::new()
            }
            Event::InitApply(object) => {
                if let Some(row) = self.row(&object, ObjectAction::Snapshot, now) {
                    self.listing.get_or_insert_with(Vec::new).push(row);
                }
                Vec::new()
            }
            Event::InitDone => self.list_done(now),
            Event::Apply(object) => {
                let Some(mut row) = self.row(&object, ObjectAction::Added, now) else { return Vec::new() };
                let key = (row.namespace.clone(), row.name.clone());
                let known = Known { uid: row.uid.clone(), resource_version: row.resource_version.clone() };
                if self.known.insert(key, known).is_some() {
                    row.action = ObjectAction::Modified;
                }
                vec![row]
            }
            Event::Delete(object) => {
                let Some(row) = self.row(&object, ObjectAction::Deleted, now) else { return Vec::new() };
                self.known.remove(&(row.namespace.clone(), row.name.clone()));
                vec![row]
            }
        }
    }

    /// The list completed: the first one is the snapshot; a relist is compared with
    /// what was known, deletions first so an IP freed and reused while disconnected is
    /// released before its new holder appears.
    fn list_done(&mut self, now: TimeNs) -> Vec<ObjectEvent> {
        let mut listed = self.listing.take().unwrap_or_default();
        for row in &mut listed {
            row.time_ns = now;
        }
        let current: HashMap<(String, String), Known> = listed
            .iter()
            .map(|r| {
                (
                    (r.namespace.clone(), r.name.clone()),
                    Known { uid: r.uid.clone(), resource_version: r.resource_version.clone() },
                )
            })
            .collect();
        if !self.synced {
            self.synced = true;
            self.known = current;
            return listed;
        }
        let mut out: Vec<ObjectEvent> = Vec::new();
        let mut gone: Vec<(&(String, String), &Known)> =
            self.known.iter().filter(|(key, old)| current.get(*key).is_none_or(|new| new.uid != old.uid)).collect();
        gone.sort_by(|a, b| a.0.cmp(b.0));
        out.extend(gone.into_iter().map(|((namespace, name), old)| self.tombstone(namespace, name, old, now)));
        for mut row in listed {
            let key = (row.namespace.clone(), row.name.clone());
            match self.known.get(&key) {
                Some(old) if old.uid == row.uid && old.resource_version == row.resource_version => continue,
                Some(old) if old.uid == row.uid => row.action = ObjectAction::Modified,
                _ => row.action = ObjectAction::Added,
            }
            out.push(row);
        }
        self.known = current;
        out
    }

    /// A deleted row for an object that vanished while the watch was down: smap does
    /// not keep objects in memory, so it carries the identity only, which is all the
    /// engine needs to drop it.
    fn tombstone(&self, namespace: &str, name: &str, known: &Known, now: TimeNs) -> ObjectEvent {
        let mut metadata = json!({"name": name, "uid": known.uid, "resourceVersion": known.resource_version});
        if !namespace.is_empty() {
            metadata["namespace"] = Value::String(namespace.to_owned());
        }
        let object = json!({"apiVersion": api_version(self.kind), "kind": self.kind.as_str(), "metadata": metadata});
        ObjectEvent {
            time_ns: now,
            kind: self.kind,
            action: ObjectAction::Deleted,
            uid: known.uid.clone(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            resource_version: known.resource_version.clone(),
            object: object.to_string(),
        }
    }

    /// The recording row of an object. `metadata.managedFields` is left out, as
    /// `kubectl get -o json` does: it is server-side-apply bookkeeping, often half the
    /// object, and nothing smap reads.
    fn row(&mut self, object: &DynamicObject, action: ObjectAction, now: TimeNs) -> Option<ObjectEvent> {
        let mut value = match serde_json::to_value(object) {
            Ok(value) => value,
            Err(_) => {
                self.unparsable += 1;
                return None;
            }
        };
        if let Some(metadata) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("managedFields");
        }
        match object_event(&value, self.kind, action, now) {
            Ok(row) => Some(row),
            Err(_) => {
                self.unparsable += 1;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use kube::runtime::watcher::Event;

    use super::*;

    fn pod(name: &str, uid: &str, rv: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": rv,
                         "managedFields": [{"manager": "kubelet"}]},
            "spec": {"nodeName": "n1"},
        }))
        .unwrap()
    }

    fn actions(rows: &[ObjectEvent]) -> Vec<(ObjectAction, &str, &str, TimeNs)> {
        rows.iter().map(|r| (r.action, r.name.as_str(), r.resource_version.as_str(), r.time_ns)).collect()
    }

    #[test]
    fn first_list_is_a_snapshot_stamped_when_it_completes() {
        let mut t = Tracker::new(ObjectKind::Pod);
        assert!(t.handle(Event::Init, 1).is_empty());
        assert!(t.handle(Event::InitApply(pod("a", "u-a", "5")), 2).is_empty());
        let rows = t.handle(Event::InitDone, 3);
        assert_eq!(actions(&rows), vec![(ObjectAction::Snapshot, "a", "5", 3)]);
        assert!(!rows[0].object.contains("managedFields"));
        assert!(rows[0].object.contains(r#""kind":"Pod""#), "kind added to list items: {}", rows[0].object);
        assert!(t.synced);
    }

    #[test]
    fn changes_are_added_modified_deleted() {
        let mut t = Tracker::new(ObjectKind::Pod);
        t.handle(Event::Init, 1);
        t.handle(Event::InitDone, 1);
        assert_eq!(actions(&t.handle(Event::Apply(pod("a", "u-a", "6")), 2)), vec![(ObjectAction::Added, "a", "6", 2)]);
        assert_eq!(
            actions(&t.handle(Event::Apply(pod("a", "u-a", "7")), 3)),
            vec![(ObjectAction::Modified, "a", "7", 3)]
        );
        let deleted = t.handle(Event::Delete(pod("a", "u-a", "8")), 4);
        assert_eq!(actions(&deleted), vec![(ObjectAction::Deleted, "a", "8", 4)]);
        assert!(deleted[0].object.contains(r#""nodeName":"n1""#), "a watch delete carries the last state");
        assert_eq!(
            actions(&t.handle(Event::Apply(pod("a", "u-a2", "9")), 5)),
            vec![(ObjectAction::Added, "a", "9", 5)]
        );
    }

    #[test]
    fn a_relist_records_only_the_difference() {
        let mut t = Tracker::new(ObjectKind::Pod);
        t.handle(Event::Init, 1);
        for (name, uid) in [("same", "u1"), ("changed", "u2"), ("gone", "u3"), ("recreated", "u4")] {
            t.handle(Event::InitApply(pod(name, uid, "10")), 1);
        }
        t.handle(Event::InitDone, 1);
        t.handle(Event::Init, 2);
        // A list that fails halfway restarts with Init: its partial rows are dropped.
        t.handle(Event::InitApply(pod("partial", "u9", "11")), 2);
        t.handle(Event::Init, 3);
        t.handle(Event::InitApply(pod("same", "u1", "10")), 3);
        t.handle(Event::InitApply(pod("changed", "u2", "12")), 3);
        t.handle(Event::InitApply(pod("recreated", "u5", "13")), 3);
        t.handle(Event::InitApply(pod("new", "u6", "14")), 3);
        let rows = t.handle(Event::InitDone, 4);
        assert_eq!(
            actions(&rows),
            vec![
                (ObjectAction::Deleted, "gone", "10", 4),
                (ObjectAction::Deleted, "recreated", "10", 4),
                (ObjectAction::Modified, "changed", "12", 4),
                (ObjectAction::Added, "recreated", "13", 4),
                (ObjectAction::Added, "new", "14", 4),
            ]
        );
        let tombstone: Value = serde_json::from_str(&rows[0].object).unwrap();
        assert_eq!(
            tombstone,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gone", "namespace": "ns", "uid": "u3", "resourceVersion": "10"}})
        );
    }

    #[test]
    fn objects_without_a_name_are_counted_not_recorded() {
        let mut t = Tracker::new(ObjectKind::Pod);
        let nameless: DynamicObject = serde_json::from_value(json!({"metadata": {"namespace": "ns"}})).unwrap();
        assert!(t.handle(Event::Apply(nameless), 1).is_empty());
        assert_eq!(t.unparsable, 1);
    }
}
