//! Pods in cgroup paths: kubelet puts each pod's containers in a cgroup named after the
//! pod's UID, which is what ties a hostNetwork pod's traffic (sent from the node's own
//! address) to the pod.

/// The UID of the pod whose cgroup `path` is (or is inside), as kubelet names them
/// with either cgroup driver:
///
/// - systemd: `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid, dashes as underscores>.slice/cri-containerd-<id>.scope`
/// - cgroupfs: `/kubepods/besteffort/pod<uid>/<container id>`
///
/// `None` for any other cgroup (system services, the kubelet itself).
pub fn pod_uid(path: &str) -> Option<String> {
    // Under kubelet's root (`kubepods`, or `kubelet-kubepods.slice` where kubelet's
    // cgroupRoot is `/kubelet`, as kind sets it).
    if !path.split('/').any(|s| s == "kubepods" || s.ends_with("kubepods.slice")) {
        return None;
    }
    path.split('/').find_map(|segment| {
        let systemd = segment.strip_suffix(".slice").and_then(|s| s.rsplit_once("-pod")).map(|(_, uid)| uid);
        let uid = systemd.or_else(|| segment.strip_prefix("pod"))?;
        let uid = uid.replace('_', "-");
        is_uid(&uid).then_some(uid)
    })
}

/// Whether `s` is a UUID in its text form (8-4-4-4-12 hex digits), as Kubernetes UIDs are.
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::pod_uid;

    const UID: &str = "0f3c2a1e-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

    #[test]
    fn both_cgroup_drivers_and_every_qos_class() {
        let systemd = "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0f3c2a1e_5b6d_4e7f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-abc.scope";
        assert_eq!(pod_uid(systemd).as_deref(), Some(UID));
        let guaranteed = "/kubepods.slice/kubepods-pod0f3c2a1e_5b6d_4e7f_8a9b_0c1d2e3f4a5b.slice";
        assert_eq!(pod_uid(guaranteed).as_deref(), Some(UID));
        let burstable = format!("/kubepods/burstable/pod{UID}/4f1d9c");
        assert_eq!(pod_uid(&burstable).as_deref(), Some(UID));
        // Under a container runtime's own parent (k3s in docker).
        let nested = format!("/system.slice/docker-1.scope/kubepods/pod{UID}/c");
        assert_eq!(pod_uid(&nested).as_deref(), Some(UID));
        // kind's kubelet, with cgroupRoot /kubelet and the systemd driver.
        let kind = "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod0f3c2a1e_5b6d_4e7f_8a9b_0c1d2e3f4a5b.slice/cri-containerd-1.scope";
        assert_eq!(pod_uid(kind).as_deref(), Some(UID));
    }

    #[test]
    fn other_cgroups_are_no_pod() {
        for path in [
            "/",
            "/system.slice/kubelet.service",
            "/kubepods.slice",
            "/kubepods.slice/kubepods-besteffort.slice",
            "/user.slice/user-1000.slice/podman-pod0f3c2a1e_5b6d_4e7f_8a9b_0c1d2e3f4a5b.slice",
            "/kubepods/podnot-a-uid",
            "/kubepods/pod0f3c2a1e-5b6d-4e7f-8a9b-0c1d2e3f4a5",
        ] {
            assert_eq!(pod_uid(path), None, "{path}");
        }
    }
}
