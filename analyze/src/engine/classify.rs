//! Service type and version detection, with a documented, deterministic precedence.
//!
//! Type, first rule that gives an answer wins:
//! 1. the `smap.io/type` annotation (or label) on the Service, or on a backing pod;
//! 2. the user's `type_rules` from the config, in order;
//! 3. container images of the backing pods (`postgres` -> database, ...);
//! 4. well-known labels (`app.kubernetes.io/name`, `app.kubernetes.io/component`);
//! 5. ports (the Service ports, then target and container ports; 80 and 443 only when
//!    no other port is known);
//! 6. port names (`http`, `grpc`... -> api);
//! 7. `other`.
//!
//! Version: `app.kubernetes.io/version` or `version` label of the Service, else of the
//! backing pods, else the image tag of their first container; several distinct values
//! (a rollout, or versions side by side) are listed sorted, comma-separated.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::TypeRule;
use crate::topology::ServiceType;

/// Everything type detection looks at.
#[derive(Debug, Default)]
pub struct TypeInputs<'a> {
    /// Service or workload name.
    pub name: &'a str,
    /// `smap.io/type` values found on the Service and its pods.
    pub explicit: Vec<&'a str>,
    /// Labels of the Service and its pods.
    pub labels: Vec<&'a BTreeMap<String, String>>,
    /// Images of the backing pods.
    pub images: Vec<&'a str>,
    /// Service ports first, then target and container ports.
    pub ports: Vec<u16>,
    /// Port names.
    pub port_names: Vec<&'a str>,
}

const IMAGE_TYPES: &[(&str, ServiceType)] = &[
    ("postgres", ServiceType::Database),
    ("mysql", ServiceType::Database),
    ("mariadb", ServiceType::Database),
    ("mongo", ServiceType::Database),
    ("cockroach", ServiceType::Database),
    ("cassandra", ServiceType::Database),
    ("elasticsearch", ServiceType::Database),
    ("opensearch", ServiceType::Database),
    ("clickhouse", ServiceType::Database),
    ("mssql", ServiceType::Database),
    ("redis", ServiceType::Cache),
    ("valkey", ServiceType::Cache),
    ("memcached", ServiceType::Cache),
    ("dragonfly", ServiceType::Cache),
    ("rabbitmq", ServiceType::Queue),
    ("kafka", ServiceType::Queue),
    ("redpanda", ServiceType::Queue),
    ("nats", ServiceType::Queue),
    ("pulsar", ServiceType::Queue),
    ("activemq", ServiceType::Queue),
    ("nginx", ServiceType::Proxy),
    ("envoy", ServiceType::Proxy),
    ("haproxy", ServiceType::Proxy),
    ("traefik", ServiceType::Proxy),
    ("caddy", ServiceType::Proxy),
];

const PORT_TYPES: &[(u16, ServiceType)] = &[
    (3306, ServiceType::Database),
    (5432, ServiceType::Database),
    (27017, ServiceType::Database),
    (9042, ServiceType::Database),
    (26257, ServiceType::Database),
    (1433, ServiceType::Database),
    (9200, ServiceType::Database),
    (6379, ServiceType::Cache),
    (11211, ServiceType::Cache),
    (5672, ServiceType::Queue),
    (9092, ServiceType::Queue),
    (4222, ServiceType::Queue),
    (8080, ServiceType::Api),
    (3000, ServiceType::Api),
    (8000, ServiceType::Api),
];

/// 80 and 443 say "HTTP", which APIs serve as often as proxies do: they count only
/// when no other port answers.
const WEAK_PORT_TYPES: &[(u16, ServiceType)] = &[(80, ServiceType::Proxy), (443, ServiceType::Proxy)];

const COMPONENT_TYPES: &[(&str, ServiceType)] = &[
    ("database", ServiceType::Database),
    ("db", ServiceType::Database),
    ("cache", ServiceType::Cache),
    ("queue", ServiceType::Queue),
    ("broker", ServiceType::Queue),
    ("proxy", ServiceType::Proxy),
    ("gateway", ServiceType::Proxy),
    ("api", ServiceType::Api),
    ("backend", ServiceType::Api),
];

/// Detects a service's type (see the module docs for the precedence).
pub fn detect_type(inputs: &TypeInputs<'_>, rules: &[TypeRule], auto_detect: bool) -> ServiceType {
    if let Some(t) = inputs.explicit.iter().find_map(|t| ServiceType::parse(t)) {
        return t;
    }
    if let Some(rule) = rules.iter().find(|r| rule_matches(r, inputs)) {
        return rule.service_type;
    }
    if !auto_detect {
        return ServiceType::Other;
    }
    for image in &inputs.images {
        let repo = image_repository(image);
        if let Some((_, t)) = IMAGE_TYPES.iter().find(|(needle, _)| repo.contains(needle)) {
            return *t;
        }
    }
    for labels in &inputs.labels {
        if let Some(component) = labels.get("app.kubernetes.io/component") {
            if let Some((_, t)) = COMPONENT_TYPES.iter().find(|(c, _)| component == c) {
                return *t;
            }
        }
        if let Some(name) = labels.get("app.kubernetes.io/name") {
            if let Some((_, t)) = IMAGE_TYPES.iter().find(|(needle, _)| name.contains(needle)) {
                return *t;
            }
        }
    }
    for table in [PORT_TYPES, WEAK_PORT_TYPES] {
        if let Some((_, t)) = inputs.ports.iter().find_map(|p| table.iter().find(|(port, _)| port == p)) {
            return *t;
        }
    }
    let api_name = |n: &&str| {
        let n = n.to_ascii_lowercase();
        ["http", "https", "grpc", "web", "api", "rest"].iter().any(|p| n == *p || n.starts_with(&format!("{p}-")))
    };
    if inputs.port_names.iter().any(api_name) {
        return ServiceType::Api;
    }
    ServiceType::Other
}

fn rule_matches(rule: &TypeRule, inputs: &TypeInputs<'_>) -> bool {
    let image = rule.image.as_ref().is_none_or(|needle| inputs.images.iter().any(|i| i.contains(needle.as_str())));
    let port = rule.port.is_none_or(|p| inputs.ports.contains(&p));
    let name = rule.name.as_ref().is_none_or(|n| n == inputs.name);
    let label = rule.label.as_ref().is_none_or(|selector| {
        let (k, v) = match selector.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (selector.as_str(), None),
        };
        inputs.labels.iter().any(|l| l.get(k).is_some_and(|value| v.is_none_or(|v| v == value)))
    });
    image && port && name && label
}

/// The repository part of an image reference (`docker.io/library/postgres:16` -> `postgres`).
fn image_repository(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// The tag of an image reference, if it has one (`repo:1.2` -> `1.2`; `latest` ignored).
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':').map(|(_, tag)| tag).filter(|t| !t.is_empty() && *t != "latest")
}

/// A version from labels, else image tags; distinct values sorted and comma-joined.
pub fn detect_version<'a>(
    service_labels: Option<&'a BTreeMap<String, String>>,
    pods: impl Iterator<Item = (&'a BTreeMap<String, String>, Option<&'a str>)>,
) -> Option<String> {
    let label_version = |l: &'a BTreeMap<String, String>| {
        l.get("app.kubernetes.io/version").or_else(|| l.get("version")).map(String::as_str)
    };
    if let Some(v) = service_labels.and_then(label_version) {
        return Some(v.to_owned());
    }
    let mut versions = BTreeSet::new();
    for (labels, first_image) in pods {
        if let Some(v) = label_version(labels).or_else(|| first_image.and_then(image_tag)) {
            versions.insert(v);
        }
    }
    if versions.is_empty() {
        None
    } else {
        Some(versions.into_iter().collect::<Vec<_>>().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn precedence_is_annotation_rules_image_labels_ports_names() {
        let l = labels(&[("app.kubernetes.io/component", "cache")]);
        let mut inputs = TypeInputs {
            name: "orders",
            explicit: vec!["queue"],
            labels: vec![&l],
            images: vec!["docker.io/library/postgres:16"],
            ports: vec![6379],
            port_names: vec!["http"],
        };
        let rule = TypeRule {
            service_type: ServiceType::Proxy,
            image: None,
            port: None,
            name: Some("orders".into()),
            label: None,
        };
        assert_eq!(detect_type(&inputs, std::slice::from_ref(&rule), true), ServiceType::Queue);
        inputs.explicit.clear();
        assert_eq!(detect_type(&inputs, std::slice::from_ref(&rule), true), ServiceType::Proxy);
        assert_eq!(detect_type(&inputs, &[], true), ServiceType::Database);
        inputs.images.clear();
        assert_eq!(detect_type(&inputs, &[], true), ServiceType::Cache);
        inputs.labels.clear();
        inputs.ports = vec![5432];
        assert_eq!(detect_type(&inputs, &[], true), ServiceType::Database);
        inputs.ports = vec![9080];
        assert_eq!(detect_type(&inputs, &[], true), ServiceType::Api);
        inputs.port_names.clear();
        assert_eq!(detect_type(&inputs, &[], true), ServiceType::Other);
        inputs.ports = vec![5432];
        assert_eq!(detect_type(&inputs, &[], false), ServiceType::Other, "auto_detect_type: false");
    }

    #[test]
    fn image_names_match_on_the_repository_only() {
        let inputs = TypeInputs { images: vec!["registry.example/redis-team/app:1.0"], ..TypeInputs::default() };
        assert_eq!(detect_type(&inputs, &[], true), ServiceType::Other, "an org named redis-team is no cache");
        let inputs = TypeInputs { images: vec!["bitnami/redis:7.2@sha256:abc"], ..TypeInputs::default() };
        assert_eq!(detect_type(&inputs, &[], true), ServiceType::Cache);
    }

    #[test]
    fn versions_from_labels_then_tags_and_rollouts_list_both() {
        let v1 = labels(&[("version", "v1")]);
        let none = labels(&[]);
        assert_eq!(detect_version(None, [(&v1, Some("x:9"))].into_iter()), Some("v1".into()));
        assert_eq!(detect_version(None, [(&none, Some("reg:5000/app:2.1.0"))].into_iter()), Some("2.1.0".into()));
        assert_eq!(detect_version(None, [(&none, Some("app:latest"))].into_iter()), None);
        let v2 = labels(&[("app.kubernetes.io/version", "v2")]);
        assert_eq!(detect_version(None, [(&v2, None), (&v1, None), (&v2, None)].into_iter()), Some("v1,v2".into()));
        let svc = labels(&[("version", "9")]);
        assert_eq!(detect_version(Some(&svc), [(&v1, None)].into_iter()), Some("9".into()));
    }
}
