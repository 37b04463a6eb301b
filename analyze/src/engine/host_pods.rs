//! hostNetwork pods told apart from their node. Their traffic carries the node's own
//! address, which says only "this node"; the cgroup of the process that reported the
//! connection says which pod it is, once the recording has named that cgroup (a
//! [`PodCgroup`]).

use std::sync::Arc;

use hashbrown::HashMap;
use smap_replay::{ConnFacts, PodCgroup, Side};

use super::{EdgeId, EdgeKey, Engine, EntityId};
use crate::engine::cluster::{ClusterState, Key};
use crate::engine::resolve::{pod_destination, pod_source, EntityRef};

/// Pod cgroups remembered, over every node of the recordings. Containers come and go:
/// past this, those of pods that no longer exist are forgotten; were every one of
/// them a live pod's, new ones would not be learnt.
const CGROUP_LIMIT: usize = 65_536;

/// A cgroup on a node.
type CgroupKey = (Arc<str>, u64);

#[derive(Default)]
pub(super) struct HostPods {
    /// The pod UID of each pod cgroup seen.
    uids: HashMap<CgroupKey, Arc<str>>,
    /// The hostNetwork pod each cgroup is in the cluster as it is now (`None`: no such
    /// pod now, or not a hostNetwork one); dropped on every cluster change.
    resolved: HashMap<CgroupKey, Option<Key>>,
}

impl HostPods {
    pub(super) fn learn(&mut self, cgroup: &PodCgroup, cluster: &ClusterState) {
        let Some(uid) = cgroup.pod_uid() else { return };
        if self.uids.len() >= CGROUP_LIMIT {
            let live: hashbrown::HashSet<&str> = cluster.pods().map(|p| &*p.uid).collect();
            self.uids.retain(|_, uid| live.contains(&**uid));
            self.resolved.clear();
            if self.uids.len() >= CGROUP_LIMIT {
                return;
            }
        }
        let key = (Arc::clone(&cgroup.node), cgroup.cgroup_id);
        self.resolved.remove(&key);
        self.uids.insert(key, Arc::from(uid));
    }

    pub(super) fn cluster_changed(&mut self) {
        self.resolved.clear();
    }
}

impl Engine {
    /// The hostNetwork pod that an event's `end` is, as (node, edge port): when that end
    /// reported the event, so the cgroup is its process's, and its address resolved to
    /// the node `resolved`. The client end stands for the pod as a caller (its Service,
    /// else its workload), the server end as the Service in front of the port.
    pub(super) fn host_pod_reporting(
        &mut self,
        e: &ConnFacts,
        resolved: EntityId,
        end: Side,
    ) -> Option<(EntityId, u16)> {
        if e.side != end || e.cgroup_id == 0 || self.host_pods.uids.is_empty() {
            return None;
        }
        let Some(EntityRef::Node(node)) = self.entities.get(resolved as usize) else { return None };
        let key = (Arc::clone(node), e.cgroup_id);
        let pod_key = match self.host_pods.resolved.get(&key) {
            Some(found) => found.clone()?,
            None => {
                let uid = self.host_pods.uids.get(&key)?;
                let found = self.cluster.host_network_pod(&key.0, uid).map(|p| p.key.clone());
                self.host_pods.resolved.insert(key, found.clone());
                found?
            }
        };
        let pod = self.cluster.pod(&pod_key)?;
        let (entity, port) = match end {
            Side::Client => (pod_source(&self.cluster, pod), e.dst_port),
            Side::Server => pod_destination(&self.cluster, pod, e.dst_port),
        };
        Some((self.intern(entity), port))
    }
}

impl Engine {
    /// An end of a connection, seen for the first time, joining it: when the other end
    /// saw this end as a node's own address and this end reports from a hostNetwork
    /// pod's cgroup, the connection is the pod's, and moves to the pod's edge (as the
    /// caller for a client end, the Service in front of the port for a server end).
    /// The only time a connection changes edge; bytes counted before stay where they
    /// were (the two ends' first sights are usually a segment apart). Returns the edge
    /// it moved to and whether that edge is new.
    pub(super) fn claim_for_host_pod(&mut self, edge: EdgeId, e: &ConnFacts) -> Option<(EdgeId, bool)> {
        if e.cgroup_id == 0 || self.host_pods.uids.is_empty() {
            return None;
        }
        let key = self.edges.get(edge as usize)?.key;
        let claimed = match e.side {
            Side::Client => {
                let (pod, _) = self.host_pod_reporting(e, key.source, Side::Client)?;
                EdgeKey { source: pod, ..key }
            }
            Side::Server => {
                let (pod, port) = self.host_pod_reporting(e, key.destination, Side::Server)?;
                EdgeKey { destination: pod, port, ..key }
            }
        };
        if claimed == key {
            return None;
        }
        let (moved_to, new) = self.edge_with_key(claimed, e);
        let old = &mut self.edges[edge as usize];
        old.connections = old.connections.saturating_sub(1);
        self.edges[moved_to as usize].connections += 1;
        self.stats.moved_to_host_pods += 1;
        Some((moved_to, new))
    }
}
