//! Kubernetes state from a kubectl JSON file that may change during a capture: the
//! first read is a snapshot, every later change of the file becomes added / modified /
//! deleted events stamped with the time it was noticed, by the rule of
//! `object_diff`, the same as a live watch's.
//!
//! The offline stand-in for a live watch: `kubectl get pods,services,endpointslices -A
//! -o json > k8s.json` again mid-capture, and smap records what changed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use smap_replay::kubectl::parse_kubectl_json;
use smap_replay::{ObjectEvent, ReplayError, TimeNs};

use crate::object_diff::KnownObjects;

/// A kubectl JSON file followed for changes.
pub struct KubectlFile {
    path: PathBuf,
    modified: Option<SystemTime>,
    known: KnownObjects,
    /// Items of kinds smap does not use, in the last read.
    pub skipped: u64,
}

impl KubectlFile {
    /// Reads the file once; every object becomes a snapshot event at `now`.
    pub fn open(path: &Path, now: TimeNs) -> Result<(Self, Vec<ObjectEvent>), ReplayError> {
        let mut file =
            KubectlFile { path: path.to_owned(), modified: None, known: KnownObjects::default(), skipped: 0 };
        let events = file.read(now, true)?;
        Ok((file, events))
    }

    /// Re-reads the file if it changed since the last read and returns what changed.
    /// A file caught half-written (invalid JSON) is left for the next poll.
    pub fn poll(&mut self, now: TimeNs) -> Vec<ObjectEvent> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        if modified.is_none() || modified == self.modified {
            return Vec::new();
        }
        match self.read(now, false) {
            Ok(events) => events,
            Err(error) => {
                tracing::debug!("{error}; retrying at the next poll");
                Vec::new()
            }
        }
    }

    fn read(&mut self, now: TimeNs, first: bool) -> Result<Vec<ObjectEvent>, ReplayError> {
        let modified = std::fs::metadata(&self.path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(&self.path)
            .map_err(|source| ReplayError::Io { path: self.path.clone(), source })?;
        let objects = parse_kubectl_json(&text, now)
            .map_err(|reason| ReplayError::KubectlJson { path: self.path.clone(), reason })?;
        self.modified = modified;
        self.skipped = objects.skipped;
        Ok(self.known.listed(objects.events, now, first))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use smap_replay::ObjectAction;

    use super::*;

    fn list(pods: &[(&str, &str)]) -> String {
        let items: Vec<String> = pods
            .iter()
            .map(|(name, ip)| {
                format!(r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{name}","namespace":"ns"}},"status":{{"podIP":"{ip}"}}}}"#)
            })
            .collect();
        format!(r#"{{"apiVersion":"v1","kind":"List","items":[{}]}}"#, items.join(","))
    }

    #[test]
    fn changes_of_the_file_become_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k8s.json");
        std::fs::write(&path, list(&[("a", "10.244.0.1"), ("b", "10.244.0.2")])).unwrap();
        let (mut file, first) = KubectlFile::open(&path, 1).unwrap();
        let actions: Vec<_> = first.iter().map(|e| (e.action, e.name.as_str(), e.time_ns)).collect();
        assert_eq!(actions, vec![(ObjectAction::Snapshot, "a", 1), (ObjectAction::Snapshot, "b", 1)]);
        assert!(file.poll(2).is_empty(), "unchanged file");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, list(&[("b", "10.244.0.9"), ("c", "10.244.0.1")])).unwrap();
        let changes: Vec<_> = file.poll(3).iter().map(|e| (e.action, e.name.clone(), e.time_ns)).collect();
        assert_eq!(
            changes,
            vec![
                (ObjectAction::Deleted, "a".to_owned(), 3),
                (ObjectAction::Modified, "b".to_owned(), 3),
                (ObjectAction::Added, "c".to_owned(), 3)
            ]
        );
        // It holds the last read only: objects gone from the file are forgotten, so a
        // day of churn in the file leaves the tracker the size of the file.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, list(&[("d", "10.244.0.4")])).unwrap();
        assert_eq!(file.poll(4).len(), 3, "b and c deleted, d added");
        assert_eq!(file.known.len(), 1);
    }

    #[test]
    fn a_pod_recreated_under_its_name_is_deleted_then_added_as_a_watch_says() {
        let pod = |uid: &str, ip: &str| {
            format!(
                r#"{{"apiVersion":"v1","kind":"List","items":[{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"a","namespace":"ns","uid":"{uid}","resourceVersion":"1"}},"status":{{"podIP":"{ip}"}}}}]}}"#
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k8s.json");
        std::fs::write(&path, pod("u1", "10.244.0.1")).unwrap();
        let (mut file, _) = KubectlFile::open(&path, 1).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, pod("u2", "10.244.0.1")).unwrap();
        let changes: Vec<_> = file.poll(2).into_iter().map(|e| (e.action, e.uid)).collect();
        assert_eq!(changes, vec![(ObjectAction::Deleted, "u1".to_owned()), (ObjectAction::Added, "u2".to_owned())]);
        // An edit that keeps the resourceVersion (a file edited by hand) is still a change.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, pod("u2", "10.244.0.7")).unwrap();
        let changes: Vec<_> = file.poll(3).into_iter().map(|e| (e.action, e.uid)).collect();
        assert_eq!(changes, vec![(ObjectAction::Modified, "u2".to_owned())]);
    }
}
