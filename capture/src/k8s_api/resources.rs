//! What smap watches: each kind's place in the API and its RBAC name, and how the
//! namespace filter turns into list/watch requests.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::core::ApiResource;
use smap_replay::ObjectKind;

/// One kind smap lists and watches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchedKind {
    /// The recording's kind.
    pub kind: ObjectKind,
    /// API group (`""` for the core group).
    pub group: &'static str,
    /// Plural resource name, as URLs and RBAC rules spell it.
    pub plural: &'static str,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// Whether the map needs it: without a kind it does not need (namespace labels,
    /// Ingresses, NetworkPolicies), a 403 or 404 costs that kind only, and the watch
    /// goes on.
    pub needed: bool,
}

/// Every kind smap watches; deploy/rbac.yaml grants list and watch on exactly these
/// (a test keeps the two equal).
pub const WATCHED: [WatchedKind; 7] = [
    WatchedKind { kind: ObjectKind::Namespace, group: "", plural: "namespaces", namespaced: false, needed: false },
    WatchedKind { kind: ObjectKind::Node, group: "", plural: "nodes", namespaced: false, needed: true },
    WatchedKind { kind: ObjectKind::Pod, group: "", plural: "pods", namespaced: true, needed: true },
    WatchedKind { kind: ObjectKind::Service, group: "", plural: "services", namespaced: true, needed: true },
    WatchedKind {
        kind: ObjectKind::EndpointSlice,
        group: "discovery.k8s.io",
        plural: "endpointslices",
        namespaced: true,
        needed: true,
    },
    WatchedKind {
        kind: ObjectKind::Ingress,
        group: "networking.k8s.io",
        plural: "ingresses",
        namespaced: true,
        needed: false,
    },
    WatchedKind {
        kind: ObjectKind::NetworkPolicy,
        group: "networking.k8s.io",
        plural: "networkpolicies",
        namespaced: true,
        needed: false,
    },
];

impl WatchedKind {
    /// The resource as RBAC and `kubectl auth can-i` name it: `pods`,
    /// `endpointslices.discovery.k8s.io`.
    pub fn rbac_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Group, version and plural for kube's dynamic API, taken from k8s-openapi's types
    /// so they match the Kubernetes version smap is built against.
    pub(crate) fn api_resource(&self) -> ApiResource {
        match self.kind {
            ObjectKind::Pod => ApiResource::erase::<Pod>(&()),
            ObjectKind::Service => ApiResource::erase::<Service>(&()),
            ObjectKind::EndpointSlice => ApiResource::erase::<EndpointSlice>(&()),
            ObjectKind::Node => ApiResource::erase::<Node>(&()),
            ObjectKind::Namespace => ApiResource::erase::<Namespace>(&()),
            ObjectKind::Ingress => ApiResource::erase::<Ingress>(&()),
            ObjectKind::NetworkPolicy => ApiResource::erase::<NetworkPolicy>(&()),
        }
    }
}

/// One list+watch: a kind, optionally in one namespace, optionally filtered by a
/// field selector. Each scope keeps its own resourceVersion and relists on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scope {
    pub(crate) watched: WatchedKind,
    /// `Some`: the namespaced endpoint of this namespace.
    pub(crate) namespace: Option<String>,
    /// Sent as `fieldSelector`.
    pub(crate) field_selector: Option<String>,
}

impl Scope {
    /// `pods in all namespaces`, `namespaces named shop`, for messages.
    pub(crate) fn name(&self) -> String {
        match (&self.namespace, &self.field_selector, self.watched.namespaced) {
            (None, Some(selector), false) if !selector.contains("!=") => {
                format!("{} {}", self.watched.rbac_name(), selector.replace("metadata.name=", "named "))
            }
            _ => format!("{} {}", self.watched.rbac_name(), self.describe()),
        }
    }

    /// `at the cluster scope` or `in namespace NS`, for messages.
    pub(crate) fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("in namespace {ns}"),
            None if self.watched.namespaced => "in all namespaces".to_owned(),
            None => "at the cluster scope".to_owned(),
        }
    }
}

/// Turns the namespace filter into requests, filtering on the server wherever the API
/// can: an include list becomes one namespaced watch per namespace (field selectors
/// cannot OR), an exclude list a `metadata.namespace!=` field selector, which every
/// namespaced resource supports. Namespace objects are filtered by `metadata.name` the
/// same way. Nodes are never filtered.
pub(crate) fn plan(include: &[String], exclude: &[String]) -> Vec<Scope> {
    let included: Vec<&String> = {
        let mut v: Vec<&String> = include.iter().filter(|ns| !exclude.contains(ns)).collect();
        v.sort();
        v.dedup();
        v
    };
    let mut excluded: Vec<&String> = exclude.iter().collect();
    excluded.sort();
    excluded.dedup();
    let not_in = |field: &str| {
        (!excluded.is_empty()).then(|| excluded.iter().map(|ns| format!("{field}!={ns}")).collect::<Vec<_>>().join(","))
    };
    let mut scopes = Vec::new();
    for watched in WATCHED {
        match (watched.kind, include.is_empty()) {
            (ObjectKind::Node, _) => scopes.push(Scope { watched, namespace: None, field_selector: None }),
            (ObjectKind::Namespace, true) => {
                scopes.push(Scope { watched, namespace: None, field_selector: not_in("metadata.name") })
            }
            (ObjectKind::Namespace, false) => scopes.extend(included.iter().map(|ns| Scope {
                watched,
                namespace: None,
                field_selector: Some(format!("metadata.name={ns}")),
            })),
            (_, true) => scopes.push(Scope { watched, namespace: None, field_selector: not_in("metadata.namespace") }),
            (_, false) => scopes.extend(included.iter().map(|ns| Scope {
                watched,
                namespace: Some((*ns).clone()),
                field_selector: None,
            })),
        }
    }
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn api_resources_match_the_table() {
        for watched in WATCHED {
            let ar = watched.api_resource();
            assert_eq!(ar.group, watched.group, "{:?}", watched.kind);
            assert_eq!(ar.plural, watched.plural, "{:?}", watched.kind);
            assert_eq!(ar.kind, watched.kind.as_str());
            assert_eq!(ar.api_version, smap_replay::kubectl::api_version(watched.kind));
        }
    }

    #[test]
    fn exclusions_become_field_selectors() {
        let scopes = plan(&[], &strings(&["kube-system", "kube-public"]));
        assert_eq!(scopes.len(), WATCHED.len());
        let pods = scopes.iter().find(|s| s.watched.kind == ObjectKind::Pod).map(|s| s.field_selector.clone());
        assert_eq!(pods, Some(Some("metadata.namespace!=kube-public,metadata.namespace!=kube-system".to_owned())));
        let namespaces =
            scopes.iter().find(|s| s.watched.kind == ObjectKind::Namespace).map(|s| s.field_selector.clone());
        assert_eq!(namespaces, Some(Some("metadata.name!=kube-public,metadata.name!=kube-system".to_owned())));
        let nodes = scopes.iter().find(|s| s.watched.kind == ObjectKind::Node).map(|s| s.field_selector.clone());
        assert_eq!(nodes, Some(None));
        assert!(plan(&[], &[]).iter().all(|s| s.field_selector.is_none() && s.namespace.is_none()));
    }

    #[test]
    fn inclusions_become_namespaced_watches() {
        let scopes = plan(&strings(&["shop", "kube-system", "shop"]), &strings(&["kube-system"]));
        let pods: Vec<_> = scopes.iter().filter(|s| s.watched.kind == ObjectKind::Pod).collect();
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].namespace.as_deref(), Some("shop"));
        assert_eq!(pods[0].describe(), "in namespace shop");
        let namespaces: Vec<_> = scopes.iter().filter(|s| s.watched.kind == ObjectKind::Namespace).collect();
        assert_eq!(namespaces.len(), 1);
        assert_eq!(namespaces[0].field_selector.as_deref(), Some("metadata.name=shop"));
        // 5 namespaced kinds in one namespace, Namespace by name, Nodes cluster-wide.
        assert_eq!(scopes.len(), 7);
    }

    #[test]
    fn rbac_names() {
        let names: Vec<String> = WATCHED.iter().map(WatchedKind::rbac_name).collect();
        assert_eq!(
            names,
            [
                "namespaces",
                "nodes",
                "pods",
                "services",
                "endpointslices.discovery.k8s.io",
                "ingresses.networking.k8s.io",
                "networkpolicies.networking.k8s.io"
            ]
        );
    }
}
