//! Which pod a process runs in, by its cgroup: the paths of the pod cgroups whose ids
//! connection events carry, found in the cgroup2 hierarchy and recorded once each.
//!
//! The kernel reports a cgroup v2 id, which is the inode number of the cgroup's
//! directory; no call turns one back into a path without CAP_DAC_READ_SEARCH, so the
//! hierarchy is walked (it is mounted read-only into the DaemonSet). A walk indexes
//! every pod cgroup; an id missing from the index starts one new walk, shared by every
//! other new id of the same batch, and an id still missing after it is no pod's (the
//! kubelet, system services) and is not looked up again.

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use smap_replay::{ConnEvent, PodCgroup};

/// Ids remembered as looked up; past this they are forgotten and looked up again (a
/// pod cgroup then recorded twice, which the engine takes as it takes the first).
const SEEN_LIMIT: usize = 65_536;
/// Directory levels walked below the root: kubelet's deepest is five
/// (`kubepods.slice/kubepods-burstable.slice/<pod>.slice/<container>.scope`), more under
/// a runtime's own parent (kind, k3s in a container).
const MAX_DEPTH: usize = 8;

/// Finds the pod cgroups of connection events.
#[derive(Debug)]
pub struct PodCgroups {
    root: Option<PathBuf>,
    node: Arc<str>,
    seen: HashSet<u64>,
    /// Pod cgroup paths (below the root) by id, as of the last walk.
    index: HashMap<u64, Arc<str>>,
    walks: u64,
}

impl PodCgroups {
    /// Looks in the cgroup2 hierarchy at `root` (`None`: nowhere, nothing is found).
    pub fn new(root: Option<PathBuf>, node: Arc<str>) -> Self {
        PodCgroups { root, node, seen: HashSet::new(), index: HashMap::new(), walks: 0 }
    }

    /// The pod cgroups that `events` are the first to carry, stamped with the time of
    /// the first event carrying each.
    pub fn first_seen(&mut self, events: &[ConnEvent], out: &mut Vec<PodCgroup>) {
        let mut walked = false;
        for event in events {
            let id = event.cgroup_id;
            if id == 0 || self.seen.contains(&id) {
                continue;
            }
            if !self.index.contains_key(&id) && !walked {
                self.walk();
                walked = true;
            }
            if self.seen.len() >= SEEN_LIMIT {
                self.seen.clear();
            }
            self.seen.insert(id);
            if let Some(path) = self.index.get(&id) {
                out.push(PodCgroup {
                    time_ns: event.time_ns,
                    node: Arc::clone(&self.node),
                    cgroup_id: id,
                    path: Arc::clone(path),
                });
            }
        }
    }

    /// Walks made so far.
    pub fn walks(&self) -> u64 {
        self.walks
    }

    fn walk(&mut self) {
        let Some(root) = &self.root else { return };
        self.walks += 1;
        self.index.clear();
        // A directory that vanishes mid-walk (a container exiting) is skipped: its
        // processes report nothing more.
        let mut pending = vec![(root.clone(), 0)];
        while let Some((dir, depth)) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                // Not following links: the hierarchy has none, and a loop must not hang us.
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_dir() {
                    continue;
                }
                let path = entry.path();
                if let Some(relative) = below(root, &path) {
                    if smap_replay::cgroup::pod_uid(&relative).is_some() {
                        self.index.insert(meta.ino(), Arc::from(relative));
                    }
                }
                if depth + 1 < MAX_DEPTH {
                    pending.push((path, depth + 1));
                }
            }
        }
    }
}

/// `path` below `root`, as the kernel writes cgroup paths (`/kubepods.slice/...`).
fn below(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?.to_str()?;
    Some(format!("/{relative}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(cgroup_id: u64, time_ns: i64) -> ConnEvent {
        ConnEvent {
            time_ns,
            node: Arc::from("n"),
            kind: smap_replay::ConnKind::TcpConnect,
            side: smap_replay::Side::Client,
            src_ip: "10.0.0.1".parse().unwrap(),
            src_port: 1,
            dst_ip: "10.0.0.2".parse().unwrap(),
            dst_port: 2,
            pid: 1,
            comm: Arc::from("x"),
            cgroup_id,
            netns: 1,
            socket_id: 1,
            bytes_sent: 0,
            bytes_received: 0,
            retransmits: 0,
            error: 0,
        }
    }

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().ino()
    }

    #[test]
    fn pod_cgroups_are_found_once_and_others_never_again() {
        let root = tempfile::tempdir().unwrap();
        let pod = "kubepods/besteffort/pod0f3c2a1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b";
        std::fs::create_dir_all(root.path().join(pod).join("c1")).unwrap();
        std::fs::create_dir_all(root.path().join("system.slice/kubelet.service")).unwrap();
        let container = ino(&root.path().join(pod).join("c1"));
        let kubelet = ino(&root.path().join("system.slice/kubelet.service"));
        let mut cgroups = PodCgroups::new(Some(root.path().to_owned()), Arc::from("node-1"));
        let mut out = Vec::new();
        cgroups.first_seen(&[event(kubelet, 5), event(container, 7), event(container, 8), event(0, 9)], &mut out);
        assert_eq!(cgroups.walks(), 1, "one walk for the batch");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].time_ns, 7);
        assert_eq!(out[0].cgroup_id, container);
        assert_eq!(&*out[0].path, &format!("/{pod}/c1"));
        assert_eq!(&*out[0].node, "node-1");

        out.clear();
        cgroups.first_seen(&[event(kubelet, 10), event(container, 11)], &mut out);
        assert!(out.is_empty());
        assert_eq!(cgroups.walks(), 1, "ids looked up already are not looked up again");

        // A container started later is found by the walk its first event starts.
        std::fs::create_dir_all(root.path().join(pod).join("c2")).unwrap();
        let second = ino(&root.path().join(pod).join("c2"));
        cgroups.first_seen(&[event(second, 12)], &mut out);
        assert_eq!(cgroups.walks(), 2);
        assert_eq!(out.iter().map(|c| c.cgroup_id).collect::<Vec<_>>(), [second]);
    }

    #[test]
    fn without_a_hierarchy_nothing_is_found() {
        let mut cgroups = PodCgroups::new(None, Arc::from("n"));
        let mut out = Vec::new();
        cgroups.first_seen(&[event(5, 1)], &mut out);
        assert!(out.is_empty());
        assert_eq!(cgroups.walks(), 0);
    }
}
