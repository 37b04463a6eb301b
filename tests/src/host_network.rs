//! hostNetwork pods: Pod objects on the node's own address whose processes run in the
//! node's network namespace, each inside a cgroup named as kubelet's systemd driver
//! names a pod's container, so a capture can tell them from the node.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use crate::cluster::{Cluster, PodState};
use crate::error::{HarnessError, Result};
use crate::ids::{hex_id, uid};
use crate::spec::{PodRef, PodSpec};

/// Shared by every test's pods; left in place (empty) when a test ends, as kubelet
/// leaves them.
const QOS_PARENT: &str = "kubepods.slice/kubepods-besteffort.slice";

impl Cluster {
    /// Adds a hostNetwork pod on the node's IP (the spec's IP is ignored). Its
    /// processes ([`Cluster::command_in`] and everything built on it) run in the node's
    /// namespace, in a cgroup of the cgroup2 hierarchy named as kubelet's would be:
    /// `kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/cri-containerd-<id>.scope`,
    /// with the Pod object's UID and first container's ID. Needs a writable cgroup2
    /// mount.
    pub fn add_host_network_pod(&mut self, mut spec: PodSpec) -> Result<PodRef> {
        if self.pod(&spec.namespace, &spec.name).is_some() {
            return Err(HarnessError::Invalid(format!("pod {}/{} exists already", spec.namespace, spec.name)));
        }
        spec.ip = self.node_ip();
        let netns = self.node_netns().to_owned();
        let pod_uid = uid(&[&netns, &spec.name]);
        let container = spec.containers.first().map_or(spec.name.clone(), |c| c.name.clone());
        let root = cgroup2_root()?;
        let cgroup = root
            .join(QOS_PARENT)
            .join(format!("kubepods-besteffort-pod{}.slice", pod_uid.replace('-', "_")))
            .join(format!("cri-containerd-{}.scope", hex_id(&[&pod_uid, &container], 64)));
        std::fs::create_dir_all(&cgroup).map_err(|source| HarnessError::Cgroup { path: cgroup.clone(), source })?;
        self.resource_version += 1;
        let pod = PodState {
            uid: pod_uid,
            spec,
            netns,
            veth: String::new(),
            created: SystemTime::now(),
            resource_version: self.resource_version,
            external: false,
            host_cgroup: Some(cgroup),
        };
        let pod_ref = pod.to_ref();
        self.pods.push(pod);
        self.sync_rules()?;
        Ok(pod_ref)
    }
}

/// `command` (an `ip netns exec ...`) run from inside `cgroup`: a shell moves itself
/// there and execs it, so the program keeps the child's pid and never runs outside.
pub(crate) fn in_cgroup(cgroup: &Path, command: &Command) -> Command {
    let mut wrapped = Command::new("sh");
    wrapped
        .arg("-c")
        .arg(r#"echo $$ > "$0/cgroup.procs" && exec "$@""#)
        .arg(cgroup)
        .arg(command.get_program())
        .args(command.get_args());
    wrapped
}

/// Kills what runs in a pod's cgroup and removes it (and its pod's slice).
pub(crate) fn remove_cgroup(cgroup: &Path) -> Result<()> {
    let io = |source| HarnessError::Cgroup { path: cgroup.to_owned(), source };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(procs) = std::fs::read_to_string(cgroup.join("cgroup.procs")) {
            for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                crate::sys::kill(pid);
            }
        }
        // Busy until the killed processes have exited.
        match std::fs::remove_dir(cgroup) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
            Err(e) if Instant::now() > deadline => return Err(io(e)),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    if let Some(pod_slice) = cgroup.parent() {
        match std::fs::remove_dir(pod_slice) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
    }
    Ok(())
}

/// The cgroup2 hierarchy's mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
/// on a hybrid host).
fn cgroup2_root() -> Result<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts")
        .map_err(|source| HarnessError::Cgroup { path: "/proc/mounts".into(), source })?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, dir, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == "cgroup2").then(|| PathBuf::from(dir))
        })
        .next()
        .ok_or_else(|| HarnessError::Invalid("no cgroup2 hierarchy is mounted".into()))
}
