//! Which version of each Kubernetes object was applied already. Every node's recording
//! carries the whole cluster's changes, and a lagging node's copy of an old version
//! must not undo a newer one (a pod brought back after its delete would take its IP
//! from the pod that holds it now). resourceVersions are etcd revisions; objects whose
//! version is not a number are always applied.
//!
//! A deleted object's entry (its tombstone) is what rejects a late copy of it; copies
//! arrive within the nodes' lag of each other, so a tombstone is forgotten once it is
//! [`TOMBSTONE_TTL`] old in event time. A cluster replacing pods all day then keeps one
//! entry per live object, not one per object it ever had.

use std::collections::{HashMap, VecDeque};

use smap_replay::{ObjectAction, ObjectEvent, TimeNs};

/// How long, in event time, a deleted object's last version is remembered: far longer
/// than nodes lag each other (seconds), far shorter than a day of churn.
pub const TOMBSTONE_TTL: TimeNs = 10 * 60 * 1_000_000_000;

/// The newest version applied per object uid, and whether it was deleted.
#[derive(Debug, Default)]
pub(crate) struct ObjectVersions {
    versions: HashMap<String, (u64, bool)>,
    /// Deletes in event-time order: (time, uid), forgotten past the TTL.
    tombstones: VecDeque<(TimeNs, String)>,
}

impl ObjectVersions {
    /// Whether this version of the object was applied already; records it if not.
    pub(crate) fn seen_before(&mut self, object: &ObjectEvent) -> bool {
        self.forget_tombstones_before(object.time_ns.saturating_sub(TOMBSTONE_TTL));
        let Ok(version) = object.resource_version.parse::<u64>() else { return false };
        if object.uid.is_empty() {
            return false;
        }
        let deleted = object.action == ObjectAction::Deleted;
        let duplicate = match self.versions.get_mut(object.uid.as_str()) {
            // A delete may carry the object's last version: it counts once.
            Some((_, true)) if deleted => true,
            Some((last, was_deleted)) if deleted => {
                *was_deleted = true;
                *last = (*last).max(version);
                false
            }
            Some((last, was_deleted)) if *was_deleted || version <= *last => true,
            Some((last, _)) => {
                *last = version;
                false
            }
            None => {
                self.versions.insert(object.uid.clone(), (version, deleted));
                false
            }
        };
        if deleted && !duplicate {
            self.tombstones.push_back((object.time_ns, object.uid.clone()));
        }
        duplicate
    }

    /// Objects remembered (live ones and recent tombstones).
    pub(crate) fn len(&self) -> usize {
        self.versions.len()
    }

    fn forget_tombstones_before(&mut self, horizon: TimeNs) {
        while self.tombstones.front().is_some_and(|(t, _)| *t < horizon) {
            if let Some((_, uid)) = self.tombstones.pop_front() {
                // Still deleted: a uid is never reused, so nothing can bring it back.
                if self.versions.get(&uid).is_some_and(|(_, deleted)| *deleted) {
                    self.versions.remove(&uid);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smap_replay::ObjectKind;

    fn pod(time_ns: TimeNs, uid: &str, version: u64, action: ObjectAction) -> ObjectEvent {
        ObjectEvent {
            time_ns,
            kind: ObjectKind::Pod,
            action,
            uid: uid.to_owned(),
            namespace: "shop".into(),
            name: uid.to_owned(),
            resource_version: version.to_string(),
            object: String::new(),
        }
    }

    #[test]
    fn a_late_copy_of_a_deleted_object_is_refused_within_the_ttl() {
        let mut v = ObjectVersions::default();
        assert!(!v.seen_before(&pod(0, "a", 5, ObjectAction::Added)));
        assert!(!v.seen_before(&pod(1_000, "a", 6, ObjectAction::Deleted)));
        // Another node's copy of the delete, and of the old add, seconds later.
        assert!(v.seen_before(&pod(3_000_000_000, "a", 6, ObjectAction::Deleted)));
        assert!(v.seen_before(&pod(3_000_000_000, "a", 5, ObjectAction::Added)));
    }

    #[test]
    fn a_day_of_pod_replacements_keeps_the_live_pods_only() {
        let mut v = ObjectVersions::default();
        let minute: TimeNs = 60_000_000_000;
        // A pod replaced every minute for a day: 1,440 uids come and go.
        for i in 0..1440_i64 {
            let uid = format!("pod-{i}");
            let rv = 2 * i as u64;
            assert!(!v.seen_before(&pod(i * minute, &uid, rv + 1, ObjectAction::Added)));
            assert!(!v.seen_before(&pod(i * minute + minute / 2, &uid, rv + 2, ObjectAction::Deleted)));
        }
        assert!(v.len() <= (TOMBSTONE_TTL / minute) as usize + 1, "{} remembered", v.len());
    }
}
