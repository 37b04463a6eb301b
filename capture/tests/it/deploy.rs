//! Every manifest under deploy/ parses into k8s-openapi's types without losing a field
//! (a misspelt key would be dropped by the typed parse, so each object must serialize
//! back to exactly what the file says), and the properties the install relies on hold:
//! RBAC grants read verbs on exactly the resources smap watches, the DaemonSet is not
//! privileged, adds only the capabilities the eBPF programs need, mounts host paths
//! read-only and probes /healthz and /readyz on the probe port it listens on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Container, Namespace, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use smap_capture::k8s_api::WATCHED;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every document of every manifest (`*.yaml` but the kustomization), with its file.
fn documents() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", deploy_dir().display());
    let mut out = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for document in serde_norway::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !value.is_null() {
                out.push((name.clone(), value));
            }
        }
    }
    out
}

/// Parses into `T` and checks nothing was dropped on the way.
fn typed<T: DeserializeOwned + Serialize>(file: &str, value: &Value) -> T {
    let object: T = serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{file}: {e}"));
    let back = serde_json::to_value(&object).unwrap();
    assert_eq!(&back, value, "{file}: a field was not understood by k8s-openapi (misspelt or misplaced?)");
    object
}

struct Manifests {
    namespace: Namespace,
    service_account: ServiceAccount,
    cluster_role: ClusterRole,
    reader_role: ClusterRole,
    binding: ClusterRoleBinding,
    daemon_set: DaemonSet,
    network_policy: NetworkPolicy,
}

fn manifests() -> Manifests {
    let (mut namespaces, mut accounts, mut roles, mut bindings, mut daemon_sets, mut policies) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (file, value) in documents() {
        match value["kind"].as_str().unwrap_or_default() {
            "Namespace" => namespaces.push(typed::<Namespace>(&file, &value)),
            "ServiceAccount" => accounts.push(typed::<ServiceAccount>(&file, &value)),
            "ClusterRole" => roles.push(typed::<ClusterRole>(&file, &value)),
            "ClusterRoleBinding" => bindings.push(typed::<ClusterRoleBinding>(&file, &value)),
            "DaemonSet" => daemon_sets.push(typed::<DaemonSet>(&file, &value)),
            "NetworkPolicy" => policies.push(typed::<NetworkPolicy>(&file, &value)),
            other => panic!("{file}: unexpected kind {other:?}"),
        }
    }
    let one = |n: usize, what: &str| assert_eq!(n, 1, "exactly one {what}");
    one(namespaces.len(), "Namespace");
    one(accounts.len(), "ServiceAccount");
    assert_eq!(roles.len(), 2, "the agent's ClusterRole and the map reader's");
    let mut role = |name: &str| {
        let at = roles.iter().position(|r| r.metadata.name.as_deref() == Some(name));
        roles.remove(at.unwrap_or_else(|| panic!("no ClusterRole {name}")))
    };
    let (cluster_role, reader_role) = (role("smap"), role("smap-map-reader"));
    one(bindings.len(), "ClusterRoleBinding");
    one(daemon_sets.len(), "DaemonSet");
    one(policies.len(), "NetworkPolicy");
    Manifests {
        namespace: namespaces.remove(0),
        service_account: accounts.remove(0),
        cluster_role,
        reader_role,
        binding: bindings.remove(0),
        daemon_set: daemon_sets.remove(0),
        network_policy: policies.remove(0),
    }
}

fn container(ds: &DaemonSet) -> &Container {
    let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(spec.containers.len(), 1);
    &spec.containers[0]
}

/// The value of `--flag=value` in the container's args.
fn arg<'a>(c: &'a Container, flag: &str) -> Option<&'a str> {
    c.args.as_ref()?.iter().find_map(|a| a.strip_prefix(&format!("{flag}=")))
}

#[test]
fn rbac_grants_read_verbs_on_exactly_the_watched_resources() {
    let m = manifests();
    let mut granted: BTreeSet<(String, String)> = BTreeSet::new();
    let mut reviews: BTreeSet<(String, String)> = BTreeSet::new();
    for rule in m.cluster_role.rules.as_ref().unwrap() {
        let verbs: BTreeSet<&str> = rule.verbs.iter().map(String::as_str).collect();
        let resources = rule.resources.as_ref().unwrap();
        if resources.iter().any(|r| r.ends_with("reviews")) {
            // --auth kubernetes: creating a review writes nothing, it asks a question.
            assert_eq!(verbs, BTreeSet::from(["create"]), "{resources:?}");
            for group in rule.api_groups.as_ref().unwrap() {
                reviews.extend(resources.iter().map(|r| (group.clone(), r.clone())));
            }
            continue;
        }
        assert!(verbs.is_subset(&BTreeSet::from(["get", "list", "watch"])), "read-only verbs: {verbs:?}");
        assert!(verbs.contains("list") && verbs.contains("watch"), "the watcher lists and watches: {verbs:?}");
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for group in rule.api_groups.as_ref().unwrap() {
            for resource in rule.resources.as_ref().unwrap() {
                assert_ne!(resource, "*");
                granted.insert((group.clone(), resource.clone()));
            }
        }
    }
    let watched: BTreeSet<(String, String)> =
        WATCHED.iter().map(|w| (w.group.to_owned(), w.plural.to_owned())).collect();
    assert_eq!(granted, watched, "the ClusterRole covers exactly what smap watches");
    let asked = BTreeSet::from([
        ("authentication.k8s.io".to_owned(), "tokenreviews".to_owned()),
        ("authorization.k8s.io".to_owned(), "subjectaccessreviews".to_owned()),
    ]);
    assert_eq!(reviews, asked, "and the two reviews of --auth kubernetes, nothing else it may create");

    let ns = m.namespace.metadata.name.as_deref().unwrap();
    let account = m.service_account.metadata.name.as_deref().unwrap();
    assert_eq!(m.service_account.metadata.namespace.as_deref(), Some(ns));
    assert_eq!(m.binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(m.binding.role_ref.name.as_str()), m.cluster_role.metadata.name.as_deref());
    let subjects = m.binding.subjects.as_ref().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!((subjects[0].kind.as_str(), subjects[0].name.as_str()), ("ServiceAccount", account));
    assert_eq!(subjects[0].namespace.as_deref(), Some(ns));
    let pod = m.daemon_set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(account));
    assert_eq!(m.daemon_set.metadata.namespace.as_deref(), Some(ns));
}

#[test]
fn the_daemonset_is_unprivileged_with_the_capabilities_ebpf_needs() {
    let m = manifests();
    let pod = m.daemon_set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_ne!(pod.host_network, Some(true), "no host network: eBPF sees every network namespace");
    assert_ne!(pod.host_pid, Some(true), "no host PID namespace: smap reads no other process's /proc");
    assert_ne!(pod.host_ipc, Some(true));
    let c = container(&m.daemon_set);
    let sc = c.security_context.as_ref().unwrap();
    assert_ne!(sc.privileged, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let caps = sc.capabilities.as_ref().unwrap();
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    let added: BTreeSet<&str> = caps.add.as_ref().unwrap().iter().map(String::as_str).collect();
    let needed = BTreeSet::from(["BPF", "PERFMON", "NET_ADMIN"]);
    assert!(needed.is_subset(&added), "{added:?}");
    assert!(added.is_subset(&BTreeSet::from(["BPF", "PERFMON", "NET_ADMIN", "SYS_RESOURCE"])), "{added:?}");

    let resources = c.resources.as_ref().unwrap();
    for what in ["cpu", "memory"] {
        assert!(resources.requests.as_ref().unwrap().contains_key(what), "request {what}");
    }
    assert!(resources.limits.as_ref().unwrap().contains_key("memory"), "memory limit");
}

#[test]
fn host_paths_are_mounted_read_only_where_smap_looks() {
    let m = manifests();
    let pod = m.daemon_set.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let host_paths: BTreeMap<&str, &str> = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .filter_map(|v| v.host_path.as_ref().map(|h| (v.name.as_str(), h.path.as_str())))
        .collect();
    let c = container(&m.daemon_set);
    let mounts: BTreeMap<&str, (&str, bool)> = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| (m.name.as_str(), (m.mount_path.as_str(), m.read_only == Some(true))))
        .collect();
    for (volume, host) in &host_paths {
        let (_, read_only) = mounts.get(volume).unwrap_or_else(|| panic!("hostPath {volume} is not mounted"));
        assert!(read_only, "hostPath {host} must be mounted read-only");
    }
    let mounted_at = |host: &str| {
        let volume = host_paths.iter().find(|(_, h)| **h == host).map(|(v, _)| *v);
        volume.and_then(|v| mounts.get(v)).map(|(path, _)| *path)
    };
    assert_eq!(mounted_at("/sys/kernel/btf"), Some("/sys/kernel/btf"), "kernel BTF where the loader reads it");
    assert_eq!(mounted_at("/sys/kernel/tracing"), Some("/sys/kernel/tracing"), "tracefs where aya looks");
    let cgroup = mounted_at("/sys/fs/cgroup").expect("the host's cgroup2 hierarchy");
    // The container's own /sys/fs/cgroup is its cgroup namespace: hooks attached there
    // would see only smap itself, so smap is pointed at the host's.
    assert_ne!(cgroup, "/sys/fs/cgroup");
    assert_eq!(arg(c, "--cgroup-path"), Some(cgroup));
}

#[test]
fn probes_hit_healthz_and_readyz_on_the_probe_port() {
    let m = manifests();
    let c = container(&m.daemon_set);
    let args = c.args.as_ref().unwrap();
    assert_eq!(args.first().map(String::as_str), Some("watch"));
    let listen = arg(c, "--listen").expect("--listen");
    assert!(listen.starts_with("0.0.0.0:"), "Prometheus scrapes the pod IP, not loopback: {listen}");
    // The probes have a port of their own, which clients of the endpoints cannot fill.
    let probe_listen = arg(c, "--probe-listen").expect("--probe-listen");
    assert!(probe_listen.starts_with("0.0.0.0:"), "the kubelet probes the pod IP, not loopback: {probe_listen}");
    assert_ne!(probe_listen, listen);
    let port: i32 = probe_listen.rsplit(':').next().unwrap().parse().unwrap();
    let ports = c.ports.as_ref().unwrap();
    let named = |name: &str| ports.iter().find(|p| p.name.as_deref() == Some(name)).map(|p| p.container_port);
    for (probe, path) in [(&c.liveness_probe, "/healthz"), (&c.readiness_probe, "/readyz")] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(get.path.as_deref(), Some(path));
        let probe_port = match &get.port {
            IntOrString::Int(p) => Some(*p),
            IntOrString::String(name) => named(name),
        };
        assert_eq!(probe_port, Some(port), "{path} probes the port smap serves probes on");
    }
    // The node name comes from the downward API, not the pod's hostname.
    assert_eq!(arg(c, "--node"), Some("$(NODE_NAME)"));
    let env = c.env.as_ref().unwrap().iter().find(|e| e.name == "NODE_NAME").unwrap();
    let field = env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap();
    assert_eq!(field.field_path, "spec.nodeName");
}

#[test]
fn the_kustomization_lists_every_manifest() {
    let text = std::fs::read_to_string(deploy_dir().join("kustomization.yaml")).unwrap();
    let kustomization: Value = serde_norway::from_str(&text).unwrap();
    let listed: BTreeSet<String> =
        kustomization["resources"].as_array().unwrap().iter().map(|r| r.as_str().unwrap().to_owned()).collect();
    let files: BTreeSet<String> = documents().into_iter().map(|(file, _)| file).collect();
    assert_eq!(listed, files);
}

#[test]
fn the_network_policy_opens_the_map_to_one_namespace_and_the_probes_to_all() {
    let m = manifests();
    let policy = &m.network_policy;
    assert_eq!(policy.metadata.namespace, m.daemon_set.metadata.namespace);
    let spec = policy.spec.as_ref().unwrap();
    let pod_labels = m.daemon_set.spec.as_ref().unwrap().template.metadata.as_ref().unwrap().labels.clone().unwrap();
    let selected = spec.pod_selector.as_ref().unwrap().match_labels.clone().unwrap();
    assert!(selected.iter().all(|(k, v)| pod_labels.get(k) == Some(v)), "selects the agent's pods: {selected:?}");
    assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_owned()][..]), "egress (the API server) untouched");

    let c = container(&m.daemon_set);
    let port_of = |flag: &str| -> i32 { arg(c, flag).unwrap().rsplit(':').next().unwrap().parse().unwrap() };
    let (endpoints, probes) = (port_of("--listen"), port_of("--probe-listen"));
    let rules = spec.ingress.as_ref().unwrap();
    let ports = |rule: &k8s_openapi::api::networking::v1::NetworkPolicyIngressRule| -> Vec<i32> {
        rule.ports
            .iter()
            .flatten()
            .filter_map(|p| match &p.port {
                Some(IntOrString::Int(n)) => Some(*n),
                _ => None,
            })
            .collect()
    };
    let endpoint_rules: Vec<_> = rules.iter().filter(|r| ports(r).contains(&endpoints)).collect();
    assert_eq!(endpoint_rules.len(), 1);
    let from = endpoint_rules[0].from.as_ref().expect("the endpoints are not open to every pod");
    assert!(
        from.iter().all(|peer| peer.namespace_selector.is_some() && peer.ip_block.is_none()),
        "only selected namespaces reach the map: {from:?}"
    );
    let probe_rules: Vec<_> = rules.iter().filter(|r| ports(r).contains(&probes)).collect();
    assert_eq!(probe_rules.len(), 1);
    assert!(probe_rules[0].from.is_none(), "the kubelet reaches the probes from the node");
    assert_eq!(ports(probe_rules[0]), [probes], "nothing but the probe port is open to all");
}

#[test]
fn the_map_is_restricted_to_the_map_reader_role() {
    let m = manifests();
    assert_eq!(arg(container(&m.daemon_set), "--auth"), Some("kubernetes"), "the map is not open to every pod");
    let rules = m.reader_role.rules.as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    let rule = &rules[0];
    assert_eq!(rule.verbs, ["get"]);
    assert!(
        rule.api_groups.is_none() && rule.resources.is_none(),
        "no resource of the cluster, only the agent's paths"
    );
    let urls: BTreeSet<&str> = rule.non_resource_urls.iter().flatten().map(String::as_str).collect();
    assert_eq!(urls, BTreeSet::from(["/", "/map", "/stats"]), "exactly the paths --auth restricts");
}
