//! Turns one scope's watcher events into recording rows: the first list as snapshot
//! rows, later changes as added / modified / deleted, and a relist (after a 410 Gone)
//! as the difference to what was known, so deletions missed while disconnected are
//! recorded and nothing is recorded twice.
//! What counts as a change is [`crate::object_diff`]'s rule.

use kube::core::DynamicObject;
use serde_json::Value;
use smap_replay::kubectl::object_event;
use smap_replay::{ObjectAction, ObjectEvent, ObjectKind, TimeNs};

use crate::object_diff::KnownObjects;

/// The state of one scope's watch.
#[derive(Debug)]
pub(crate) struct Tracker {
    kind: ObjectKind,
    known: KnownObjects,
    /// Rows of the list in progress (times are set when it completes).
    listing: Option<Vec<ObjectEvent>>,
    /// Whether a list has completed once: later lists are relists.
    pub(crate) synced: bool,
    /// Objects without metadata.name or not serializable, skipped.
    pub(crate) unparsable: u64,
}

impl Tracker {
    pub(crate) fn new(kind: ObjectKind) -> Self {
        Tracker { kind, known: KnownObjects::default(), listing: None, synced: false, unparsable: 0 }
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
            Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let first = !std::mem::replace(&mut self.synced, true);
                self.known.listed(listed, now, first)
            }
            Event::Apply(object) => self.watched(&object, ObjectAction::Added, now),
            Event::Delete(object) => self.watched(&object, ObjectAction::Deleted, now),
        }
    }

    fn watched(&mut self, object: &DynamicObject, action: ObjectAction, now: TimeNs) -> Vec<ObjectEvent> {
        let Some(mut row) = self.row(object, action, now) else { return Vec::new() };
        self.known.watched(&mut row);
        vec![row]
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
    use serde_json::json;

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
