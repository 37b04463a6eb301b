//! The one rule for what changed among the cluster's objects, used alike by the API
//! watch (`k8s_api`) and the kubectl file: an object is its kind, namespace, name and
//! uid, so the same name under a new uid is deleted and added again; it changed when
//! its recorded JSON did. A full listing is compared with what was known, deletions
//! first, so an IP freed and reused between two listings is released before its new
//! holder appears.
//!
//! Only identities and a digest of each object are kept, not the objects: the deleted
//! row of an object gone from a listing carries its identity only, which is all the
//! engine needs to drop it.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{json, Value};
use smap_replay::kubectl::api_version;
use smap_replay::{ObjectAction, ObjectEvent, ObjectKind, TimeNs};

type Key = (ObjectKind, String, String);

/// What is remembered of an object.
#[derive(Debug, PartialEq, Eq)]
struct Known {
    uid: String,
    resource_version: String,
    digest: u64,
}

fn key(row: &ObjectEvent) -> Key {
    (row.kind, row.namespace.clone(), row.name.clone())
}

impl Known {
    fn of(row: &ObjectEvent) -> (Key, Known) {
        let mut hasher = DefaultHasher::new();
        row.object.hash(&mut hasher);
        (
            key(row),
            Known { uid: row.uid.clone(), resource_version: row.resource_version.clone(), digest: hasher.finish() },
        )
    }
}

/// The objects present, as the last listing and the changes since left them.
#[derive(Debug, Default)]
pub(crate) struct KnownObjects {
    known: HashMap<Key, Known>,
}

impl KnownObjects {
    /// A change seen one object at a time (a watch event): an `added` row of an object
    /// known under the same uid becomes `modified`; a `deleted` row forgets it.
    pub(crate) fn watched(&mut self, row: &mut ObjectEvent) {
        if row.action == ObjectAction::Deleted {
            self.known.remove(&key(row));
            return;
        }
        let (key, known) = Known::of(row);
        let same_uid = self.known.get(&key).is_some_and(|old| old.uid == known.uid);
        row.action = if same_uid { ObjectAction::Modified } else { ObjectAction::Added };
        self.known.insert(key, known);
    }

    /// A full listing, stamped `now`, becomes what is known. The `first` listing is
    /// recorded whole as `snapshot` rows; a later one as what differs: `deleted` rows
    /// (identity only, in key order) for objects gone or recreated, then `modified` and
    /// `added` rows in listing order. An object listed twice counts as its last listing.
    pub(crate) fn listed(&mut self, listed: Vec<ObjectEvent>, now: TimeNs, first: bool) -> Vec<ObjectEvent> {
        let mut rows: Vec<ObjectEvent> = Vec::with_capacity(listed.len());
        let mut at: HashMap<Key, usize> = HashMap::with_capacity(listed.len());
        for mut row in listed {
            row.time_ns = now;
            match at.get(&key(&row)) {
                Some(&index) => rows[index] = row,
                None => {
                    at.insert(key(&row), rows.len());
                    rows.push(row);
                }
            }
        }
        let previous = std::mem::replace(&mut self.known, rows.iter().map(Known::of).collect());
        if first {
            for row in &mut rows {
                row.action = ObjectAction::Snapshot;
            }
            return rows;
        }
        let mut gone: Vec<(&Key, &Known)> =
            previous.iter().filter(|(key, old)| self.known.get(*key).is_none_or(|new| new.uid != old.uid)).collect();
        gone.sort_by(|a, b| a.0.cmp(b.0));
        let mut out: Vec<ObjectEvent> = gone.into_iter().map(|(key, old)| tombstone(key, old, now)).collect();
        for mut row in rows {
            let key = key(&row);
            let (Some(new), old) = (self.known.get(&key), previous.get(&key)) else { continue };
            row.action = match old {
                Some(old) if old.uid == new.uid && old.digest == new.digest => continue,
                Some(old) if old.uid == new.uid => ObjectAction::Modified,
                _ => ObjectAction::Added,
            };
            out.push(row);
        }
        out
    }

    /// How many objects are known.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.known.len()
    }
}

/// The deleted row of an object that vanished between two listings.
fn tombstone((kind, namespace, name): &Key, known: &Known, now: TimeNs) -> ObjectEvent {
    let mut metadata = json!({"name": name, "uid": known.uid, "resourceVersion": known.resource_version});
    if !namespace.is_empty() {
        metadata["namespace"] = Value::String(namespace.clone());
    }
    let object = json!({"apiVersion": api_version(*kind), "kind": kind.as_str(), "metadata": metadata});
    ObjectEvent {
        time_ns: now,
        kind: *kind,
        action: ObjectAction::Deleted,
        uid: known.uid.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
        resource_version: known.resource_version.clone(),
        object: object.to_string(),
    }
}
