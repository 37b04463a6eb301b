//! NetworkPolicy semantics, case by case from the Kubernetes documentation
//! (concepts/services-networking/network-policies) and the upstream conformance
//! tables: default deny per direction, allow-all, unions, namespace and pod selectors
//! alone and together, ipBlock with except, named ports, port ranges, protocols, and
//! policies of other namespaces.

use std::collections::BTreeMap;

use smap_analyze::netpol::evaluate::{judge, Direction, End, Namespaces, PodEnd, Verdict};
use smap_analyze::netpol::{parse_policies, Policy};

fn pod(namespace: &str, name: &str, ip: &str, labels: &[(&str, &str)]) -> PodEnd {
    PodEnd {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        workload: format!("{namespace}/{name}"),
        ip: ip.parse().unwrap(),
        labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        named_ports: vec![("http".to_owned(), 8080), ("metrics".to_owned(), 9090)],
    }
}

fn policies(yaml: &str) -> Vec<Policy> {
    parse_policies("test.yaml", yaml).unwrap()
}

fn namespaces() -> Namespaces {
    let mut ns = Namespaces::default();
    ns.set("shop", BTreeMap::from([("team".to_owned(), "shop".to_owned())]));
    ns.set("monitoring", BTreeMap::from([("team".to_owned(), "ops".to_owned())]));
    ns.set("other", BTreeMap::new());
    ns
}

/// Ingress verdict at `api` (shop, app=api) from `from` on TCP `port`.
fn ingress(policies: &[Policy], from: &End, port: u16, protocol: &str) -> Verdict {
    let api = pod("shop", "api-1", "10.244.1.20", &[("app", "api")]);
    judge(policies, &namespaces(), Direction::Ingress, &api, from, port, protocol)
}

fn web() -> End {
    End::Pod(pod("shop", "web-1", "10.244.1.10", &[("app", "web")]))
}

fn prometheus() -> End {
    End::Pod(pod("monitoring", "prom-1", "10.244.2.10", &[("app", "prometheus")]))
}

fn other_web() -> End {
    End::Pod(pod("other", "web-1", "10.244.3.10", &[("app", "web")]))
}

fn denied(v: &Verdict) -> bool {
    matches!(v, Verdict::Denied(_))
}

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allowed(_) | Verdict::NotIsolated)
}

const DENY_ALL_INGRESS: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: default-deny, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Ingress]
";

#[test]
fn without_policies_everything_is_allowed_and_a_default_deny_isolates_every_pod() {
    assert_eq!(ingress(&[], &web(), 8080, "TCP"), Verdict::NotIsolated);
    let deny = policies(DENY_ALL_INGRESS);
    assert_eq!(ingress(&deny, &web(), 8080, "TCP"), Verdict::Denied(vec![0]));
    // Ingress isolation says nothing about egress.
    let web_pod = pod("shop", "web-1", "10.244.1.10", &[("app", "web")]);
    let api = End::Pod(pod("shop", "api-1", "10.244.1.20", &[("app", "api")]));
    assert_eq!(judge(&deny, &namespaces(), Direction::Egress, &web_pod, &api, 8080, "TCP"), Verdict::NotIsolated);
}

#[test]
fn an_empty_rule_allows_all_and_the_rules_of_every_selecting_policy_are_a_union() {
    let allow_all = format!(
        "{DENY_ALL_INGRESS}---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: allow-all, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: api}}}}
  ingress: [{{}}]
"
    );
    let p = policies(&allow_all);
    assert_eq!(ingress(&p, &other_web(), 1234, "UDP"), Verdict::Allowed(vec![(1, Direction::Ingress, 0)]));
    let union = "
kind: NetworkPolicy
metadata: {name: from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}], ports: [{port: 8080}]}]
---
kind: NetworkPolicy
metadata: {name: from-monitoring, namespace: shop}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [api, worker]}]}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: ops}}}], ports: [{port: metrics}]}]
";
    let p = policies(union);
    assert!(allowed(&ingress(&p, &web(), 8080, "TCP")));
    assert!(denied(&ingress(&p, &web(), 9090, "TCP")), "web may not scrape");
    assert!(allowed(&ingress(&p, &prometheus(), 9090, "TCP")), "the named port is the pod's 9090");
    assert_eq!(ingress(&p, &prometheus(), 8080, "TCP"), Verdict::Denied(vec![0, 1]));
}

#[test]
fn pod_selectors_alone_mean_this_namespace_and_with_a_namespace_selector_both_must_hold() {
    let alone = "
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
";
    let p = policies(alone);
    assert!(allowed(&ingress(&p, &web(), 8080, "TCP")));
    assert!(denied(&ingress(&p, &other_web(), 8080, "TCP")), "app=web of another namespace");

    let both = "
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: other}}
      podSelector: {matchLabels: {app: web}}
";
    let p = policies(both);
    assert!(allowed(&ingress(&p, &other_web(), 8080, "TCP")));
    assert!(denied(&ingress(&p, &web(), 8080, "TCP")), "the right pod in the wrong namespace");

    // Two peers (a list of two) are an OR: any pod of `other`, or app=web here.
    let either = "
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: kubernetes.io/metadata.name, operator: NotIn, values: [shop, monitoring]}]}
    - podSelector: {matchLabels: {app: web}}
";
    let p = policies(either);
    assert!(allowed(&ingress(&p, &other_web(), 8080, "TCP")));
    assert!(allowed(&ingress(&p, &web(), 8080, "TCP")));
    assert!(denied(&ingress(&p, &prometheus(), 8080, "TCP")));
}

#[test]
fn ip_blocks_with_holes_ports_ranges_and_protocols() {
    let p = policies(
        "
kind: NetworkPolicy
metadata: {name: p, namespace: shop}
spec:
  podSelector: {}
  ingress:
  - from: [{ipBlock: {cidr: 203.0.113.0/24, except: [203.0.113.128/25]}}]
    ports: [{protocol: TCP, port: 8000, endPort: 8100}, {protocol: UDP, port: 53}]
",
    );
    let outside = |ip: &str| End::Address(ip.parse().unwrap());
    assert!(allowed(&ingress(&p, &outside("203.0.113.7"), 8080, "TCP")));
    assert!(denied(&ingress(&p, &outside("203.0.113.200"), 8080, "TCP")), "in the hole");
    assert!(denied(&ingress(&p, &outside("198.51.100.1"), 8080, "TCP")), "outside the block");
    assert!(denied(&ingress(&p, &outside("203.0.113.7"), 8101, "TCP")), "past endPort");
    assert!(denied(&ingress(&p, &outside("203.0.113.7"), 8080, "UDP")), "the range is TCP only");
    assert!(allowed(&ingress(&p, &outside("203.0.113.7"), 53, "UDP")));
    assert!(denied(&ingress(&p, &web(), 8080, "TCP")), "a pod is no peer of a pod-less block");
}

#[test]
fn egress_is_isolated_by_egress_rules_or_the_egress_type_and_named_ports_are_the_destinations() {
    let web_pod = pod("shop", "web-1", "10.244.1.10", &[("app", "web")]);
    let api = End::Pod(pod("shop", "api-1", "10.244.1.20", &[("app", "api")]));
    let egress =
        |p: &[Policy], to: &End, port: u16| judge(p, &namespaces(), Direction::Egress, &web_pod, to, port, "TCP");
    let rules = policies(
        "
kind: NetworkPolicy
metadata: {name: web-out, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  egress: [{to: [{podSelector: {matchLabels: {app: api}}}], ports: [{port: http}]}]
",
    );
    assert!(allowed(&egress(&rules, &api, 8080)));
    assert!(denied(&egress(&rules, &api, 9090)));
    assert!(denied(&egress(&rules, &End::Address("93.184.216.34".parse().unwrap()), 443)));
    // Without policyTypes a policy always isolates for ingress: with no ingress rule, denied.
    assert!(denied(&judge(&rules, &namespaces(), Direction::Ingress, &web_pod, &api, 80, "TCP")));
    let only_egress = policies(
        "
kind: NetworkPolicy
metadata: {name: deny-out, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
",
    );
    assert!(denied(&egress(&only_egress, &api, 8080)));
    assert_eq!(judge(&only_egress, &namespaces(), Direction::Ingress, &web_pod, &api, 80, "TCP"), Verdict::NotIsolated);
}

#[test]
fn a_policy_selects_pods_of_its_own_namespace_only() {
    let p = policies(
        "
kind: NetworkPolicy
metadata: {name: deny, namespace: other}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
",
    );
    assert_eq!(ingress(&p, &web(), 8080, "TCP"), Verdict::NotIsolated);
}

#[test]
fn a_mistyped_policy_is_an_error_naming_it() {
    let cases = [
        ("kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingres: []}\n", "unknown field `ingres`"),
        (
            "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec:\n  podSelector: {matchExpressions: [{key: app, operator: Equals, values: [a]}]}\n",
            "unknown operator `Equals`",
        ),
        ("kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, policyTypes: [Inbound]}\n", "unknown type `Inbound`"),
        (
            "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}\n",
            "bad cidr",
        ),
        (
            "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingress: [{ports: [{port: 90, endPort: 80}]}]}\n",
            "endPort 80 is below port 90",
        ),
    ];
    for (yaml, reason) in cases {
        let error = parse_policies("policies/shop.yaml", yaml).unwrap_err().to_string();
        assert!(error.starts_with("policies/shop.yaml: NetworkPolicy shop/p: "), "{error}");
        assert!(error.contains(reason), "{error}");
    }
    let error = parse_policies("x.yaml", "kind: [").unwrap_err().to_string();
    assert!(error.starts_with("x.yaml: not valid YAML or JSON"), "{error}");
}

#[test]
fn kubectl_lists_and_multi_document_files_are_read_whole() {
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"name": "a", "namespace": "shop", "uid": "u", "resourceVersion": "1", "managedFields": []},
         "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}]}"#;
    let p = parse_policies("list.json", list).unwrap();
    assert_eq!(p.iter().map(Policy::id).collect::<Vec<_>>(), ["shop/a"]);
    let yaml = format!("{DENY_ALL_INGRESS}---\n---\nkind: Service\nmetadata: {{name: s}}\n");
    assert_eq!(parse_policies("m.yaml", &yaml).unwrap().len(), 1);
}

#[test]
fn an_empty_policy_types_list_takes_the_defaults_and_api_lists_need_no_item_kinds() {
    let p = policies(
        "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, policyTypes: []}\n",
    );
    assert!(denied(&ingress(&p, &web(), 8080, "TCP")), "an empty list is no list: Ingress");
    let list = r#"{"kind": "NetworkPolicyList", "apiVersion": "networking.k8s.io/v1",
        "items": [{"metadata": {"name": "a", "namespace": "shop"}, "spec": {"podSelector": {}}}]}"#;
    assert_eq!(parse_policies("list.json", list).unwrap().len(), 1);
}

#[test]
fn traffic_to_a_service_without_pods_is_judged_at_its_endpoint_addresses() {
    use serde_json::json;
    use smap_analyze::netpol::observe::{Flow, Observer};
    use smap_replay::{ConnKind, Event, ObjectAction, ObjectKind, Side};

    use crate::object;
    use crate::resolution::{conn, pod as pod_event, T0};

    let api_server = [
        object(
            ObjectKind::Service,
            ObjectAction::Snapshot,
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "kubernetes", "namespace": "default"},
                   "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}}),
            T0,
        ),
        object(
            ObjectKind::EndpointSlice,
            ObjectAction::Snapshot,
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                   "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"kubernetes.io/service-name": "kubernetes"}},
                   "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}}],
                   "ports": [{"name": "https", "port": 6443}]}),
            T0,
        ),
    ];
    let mut observer = Observer::new(["node-1".to_owned()]);
    let events = [pod_event("shop", "web-1", "10.244.1.10", "web")]
        .into_iter()
        .chain(api_server)
        .chain([Event::Conn(conn(ConnKind::TcpConnect, Side::Client, "10.244.1.10", 40000, "10.96.0.1", 443, T0 + 1))]);
    for event in events {
        let facts = match event {
            Event::Conn(c) => Event::Conn(smap_replay::ConnRecord::facts(&c)),
            Event::Object(o) => Event::Object(o),
            other => panic!("{other:?}"),
        };
        observer.apply(&facts);
    }
    let flows: Vec<Flow> = observer.finish().flows.into_keys().collect();
    assert_eq!(flows.len(), 1, "{flows:?}");
    assert_eq!(flows[0].destination, End::Address("10.0.0.1".parse().unwrap()));
    assert_eq!((flows[0].direction, flows[0].port), (Direction::Egress, 6443));
}
