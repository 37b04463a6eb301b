//! `smap netpol check` on a real capture (fixtures/recordings/captured-shop: web calls
//! api through its ClusterIP, orders-db and DNS) against policies whose verdicts are
//! known, with the exit codes CI relies on.

use serde_json::Value;

use crate::{assert_input_error, smap, stderr, stdout};

const SHOP: &str = "fixtures/recordings/captured-shop";

fn check(args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["netpol", "check", SHOP, "--format", "json"];
    all.extend_from_slice(args);
    let out = smap(&all);
    (out.status.code(), serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out))))
}

fn denied(report: &Value) -> Vec<String> {
    report["denied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {} -> {} {}/{} connections={} by {}",
                d["direction"].as_str().unwrap(),
                d["source"].as_str().unwrap(),
                d["destination"].as_str().unwrap(),
                d["protocol"].as_str().unwrap(),
                d["port"],
                d["connections"],
                d["policies"]
            )
        })
        .collect()
}

#[test]
fn observed_traffic_a_policy_set_would_cut_is_reported_with_exit_1() {
    let (code, report) = check(&["--policies", "fixtures/netpol/shop"]);
    assert_eq!(code, Some(1));
    assert_eq!(
        denied(&report),
        ["ingress shop/web -> shop/orders-db TCP/5432 connections=2 by [\"shop/orders-db-from-api\"]"]
    );
    assert_eq!(report["denied"][0]["source_pods"], serde_json::json!(["shop/web-5d8f7c9b4-web1"]));
    assert_eq!(report["denied"][0]["destination_pods"], serde_json::json!(["shop/orders-db-5d8f7c9b4-db1"]));
    // The monitoring rule and the database's api rule saw no traffic.
    let unused: Vec<String> = report["unused_rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {}[{}]", r["policy"].as_str().unwrap(), r["direction"].as_str().unwrap(), r["rule"]))
        .collect();
    assert_eq!(unused, ["shop/api-from-web ingress[1]", "shop/orders-db-from-api ingress[0]"]);
}

#[test]
fn a_rule_naming_the_service_port_denies_what_reaches_the_pods_port() {
    let (code, report) = check(&["--policies", "fixtures/netpol/service-port.yaml"]);
    assert_eq!(code, Some(1));
    assert_eq!(denied(&report), ["ingress shop/web -> shop/api TCP/8080 connections=3 by [\"shop/api-from-web\"]"]);
}

#[test]
fn egress_is_judged_on_the_endpoint_pods_target_port() {
    // DNS through the Service's port 53 reaches the pods' 5353, which the policy omits.
    let (code, report) = check(&["--policies", "fixtures/netpol/web-egress.yaml"]);
    assert_eq!(code, Some(1));
    assert_eq!(denied(&report), ["egress shop/web -> shop/dns UDP/5353 connections=1 by [\"shop/web-out\"]"]);
}

#[test]
fn policies_that_allow_everything_observed_pass_and_the_report_reads_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let allow = dir.path().join("allow.yaml");
    std::fs::write(
        &allow,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-out, namespace: shop}\n\
         spec:\n  podSelector: {matchLabels: {app: web}}\n  egress: [{}]\n",
    )
    .unwrap();
    let (code, report) = check(&["--policies", allow.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["denied"], serde_json::json!([]));
    // No policies at all: the recording has none, nothing is isolated.
    assert_eq!(check(&[]).0, Some(0));
    let out = smap(&["netpol", "check", SHOP, "--policies", "fixtures/netpol/shop"]);
    assert!(stdout(&out).contains("ingress shop/web -> shop/orders-db tcp/5432: 2 connections"), "{}", stdout(&out));
    assert!(stderr(&out).contains("1 observed dependencies would be denied"), "{}", stderr(&out));
    let md = dir.path().join("report.md");
    let out = smap(
        &["netpol", "check", SHOP, "--policies", "fixtures/netpol/shop", "--format", "markdown", "-o"]
            .into_iter()
            .chain([md.to_str().unwrap()])
            .collect::<Vec<_>>(),
    );
    assert_eq!(out.status.code(), Some(1));
    let text = std::fs::read_to_string(&md).unwrap();
    assert!(
        text.contains("| ingress | `shop/web` | `shop/orders-db` | tcp/5432 | 2 | `shop/orders-db-from-api` |"),
        "{text}"
    );
}

#[test]
fn bad_policies_fail_with_one_line_naming_the_file_and_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "kind: NetworkPolicy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}, ingres: []}\n",
    )
    .unwrap();
    let out = smap(&["netpol", "check", SHOP, "--policies", bad.to_str().unwrap()]);
    assert_input_error(&out, "bad.yaml: NetworkPolicy shop/p: unknown field `ingres`");
    std::fs::write(&bad, "kind: NetworkPolicy\nmetadata: {name: q, namespace: shop}\nspec:\n  podSelector: {matchExpressions: [{key: a, operator: Equal, values: [b]}]}\n").unwrap();
    let out = smap(&["netpol", "check", SHOP, "--policies", bad.to_str().unwrap()]);
    assert_input_error(&out, "NetworkPolicy shop/q: selector on `a`: unknown operator `Equal`");
    let out = smap(&["netpol", "check", SHOP, "--policies", "no/such/file.yaml"]);
    assert_input_error(&out, "no/such/file.yaml");
}

/// `smap netpol generate` of `recordings` into `dir`, then `check` of `recordings`
/// against the result: nothing observed may be denied.
fn generate_then_check(dir: &std::path::Path, recordings: &[&str], extra: &[&str]) -> String {
    let policies = dir.join("generated.yaml");
    let mut args = vec!["netpol", "generate"];
    args.extend_from_slice(recordings);
    args.extend_from_slice(extra);
    args.extend(["-o", policies.to_str().unwrap()]);
    let out = smap(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut args = vec!["netpol", "check"];
    args.extend_from_slice(recordings);
    args.extend(["--policies", policies.to_str().unwrap(), "--format", "json"]);
    let out = smap(&args);
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(out.status.code(), Some(0), "generated policies deny observed traffic: {}", report["denied"]);
    std::fs::read_to_string(&policies).unwrap()
}

#[test]
fn generated_policies_allow_exactly_what_was_observed() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = generate_then_check(dir.path(), &[SHOP], &["--egress"]);
    // One policy per workload seen, selecting by stable labels, ports as the pods'.
    assert_eq!(yaml.matches("kind: NetworkPolicy").count(), 4, "{yaml}");
    assert!(!yaml.contains("pod-template-hash"), "{yaml}");
    assert!(yaml.contains("# observed: shop/web -> shop/api tcp/8080 (3 connections)"), "{yaml}");
    assert!(yaml.contains("k8s-app: \"kube-dns\""), "egress policies let pods resolve names: {yaml}");
    // A dependency never observed is denied: api calling orders-db.
    let policies = parse_generated(&yaml);
    let report = check_extra_call(&policies);
    assert_eq!(report, ["egress shop/api -> shop/orders-db TCP/5432", "ingress shop/api -> shop/orders-db TCP/5432"]);

    // Simulated recordings, with churn of pods, round-trip too.
    for fixture in ["fixtures/recordings/shop-simulated", "fixtures/recordings/bookinfo-simulated"] {
        let sub = dir.path().join(fixture.rsplit('/').next().unwrap());
        std::fs::create_dir(&sub).unwrap();
        generate_then_check(&sub, &[fixture], &["--egress"]);
        generate_then_check(&sub, &[fixture], &[]);
    }
}

fn parse_generated(yaml: &str) -> Vec<smap_analyze::netpol::Policy> {
    smap_analyze::netpol::parse_policies("generated.yaml", yaml).unwrap()
}

/// Judges one call never observed (api -> orders-db) against `policies`.
fn check_extra_call(policies: &[smap_analyze::netpol::Policy]) -> Vec<String> {
    use smap_analyze::netpol::evaluate::{judge, Direction, End, Namespaces, PodEnd, Verdict};
    let pod = |name: &str, app: &str, ip: &str| PodEnd {
        namespace: "shop".into(),
        name: format!("{app}-5d8f7c9b4-{name}"),
        workload: format!("shop/{app}"),
        ip: ip.parse().unwrap(),
        labels: [("app".to_owned(), app.to_owned())].into(),
        named_ports: Vec::new(),
    };
    let (api, db) = (pod("api1", "api", "10.244.1.20"), pod("db1", "orders-db", "10.244.1.30"));
    let mut denied = Vec::new();
    for (direction, subject, peer) in
        [(Direction::Egress, &api, End::Pod(db.clone())), (Direction::Ingress, &db, End::Pod(api.clone()))]
    {
        if let Verdict::Denied(_) = judge(policies, &Namespaces::default(), direction, subject, &peer, 5432, "TCP") {
            denied.push(format!("{} shop/api -> shop/orders-db TCP/5432", direction.as_str()));
        }
    }
    denied
}

#[test]
fn the_analysis_report_carries_the_network_policy_findings_and_gate() {
    let out = smap(&["analyze", SHOP, "--policies", "fixtures/netpol/shop", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["summary"]["network_policy_denials"], 1);
    assert_eq!(report["gate"]["failed"], serde_json::json!(["network-policies"]));
    assert_eq!(report["network_policies"]["denied"][0]["destination"], "shop/orders-db");
    let out = smap(&["analyze", SHOP, "--policies", "fixtures/netpol/shop", "--format", "markdown"]);
    let md = stdout(&out);
    assert!(md.contains("| NetworkPolicy denials | 1 ❌ |"), "{md}");
    assert!(
        md.contains("| ingress | `shop/web` | `shop/orders-db` | tcp/5432 | 2 | `shop/orders-db-from-api` |"),
        "{md}"
    );
    // Without them the report is as before.
    let out = smap(&["analyze", SHOP, "--format", "json"]);
    assert!(!stdout(&out).contains("network_polic"), "{}", stdout(&out));
    let out = smap(&["analyze", "fixtures/topologies/shop.json", "--policies", "fixtures/netpol/shop"]);
    assert_input_error(&out, "--policies needs recording directories");
}

const CAPTURED_POLICIES: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-web, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  # The Service's port: the pods listen on 8080, so web is cut off.
  - from: [{podSelector: {matchLabels: {app: web}}}]
    ports: [{port: 80}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api-from-monitoring, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-from-api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: orders-db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: api}}}]}]
";

#[test]
fn a_real_capture_is_judged_and_its_generated_policies_deny_nothing_it_saw() {
    use std::time::Duration;

    use smap_e2e::{require_root, Cluster, ContainerPort, Owner, PodSpec, ServicePort};

    use crate::e2e::{kubectl_file, pod, service, Capture, ONE_AT_A_TIME};

    if !require_root("a_real_capture_is_judged_and_its_generated_policies_deny_nothing_it_saw") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::new("netpol").unwrap();
    let web = pod(&mut cluster, "web1", 10, "web", "nginx:1.27", &[]);
    let api_pod = pod(&mut cluster, "api1", 20, "api", "registry.example/shop/api:2.4.1", &[8080]);
    let db_pod = pod(&mut cluster, "db1", 30, "orders-db", "postgres:16.4", &[5432]);
    let api = service(&mut cluster, "api", 20, ServicePort::tcp(80, 8080));
    let db = service(&mut cluster, "orders-db", 30, ServicePort::tcp(5432, 5432));
    let prometheus = cluster
        .add_pod(
            PodSpec::new("monitoring", "prometheus-0", std::net::Ipv4Addr::new(10, 244, 2, 10))
                .label("app", "prometheus")
                .owner(Owner::StatefulSet("prometheus".into()))
                .container("prometheus", "prom/prometheus:v3.1", vec![ContainerPort::tcp(9090)]),
        )
        .unwrap();
    let mut servers = [cluster.serve_tcp(&api_pod, 8080).unwrap(), cluster.serve_tcp(&db_pod, 5432).unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let kubectl = kubectl_file(dir.path(), &cluster);
    let capture = Capture::start(dir.path(), &kubectl, cluster.node_name());
    assert!(cluster.tcp_call(&web, api.addr(80), 10, 10).unwrap().is_ok());
    assert!(cluster.tcp_call(&web, api.addr(80), 10, 10).unwrap().is_ok());
    assert!(cluster.tcp_call(&web, db.addr(5432), 10, 10).unwrap().is_ok());
    assert!(cluster.tcp_call(&prometheus, api_pod.addr(8080), 10, 10).unwrap().is_ok());
    servers[0].wait_exchanges(3, Duration::from_secs(5)).unwrap();
    servers[1].wait_exchanges(1, Duration::from_secs(5)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (recording, _) = capture.stop();
    let recording = recording.to_str().unwrap();

    let policies = dir.path().join("policies.yaml");
    std::fs::write(&policies, CAPTURED_POLICIES).unwrap();
    let out = smap(&["netpol", "check", recording, "--policies", policies.to_str().unwrap(), "--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        denied(&report),
        [
            "ingress shop/web -> shop/api TCP/8080 connections=2 by [\"shop/api-from-monitoring\",\"shop/api-from-web\"]",
            "ingress shop/web -> shop/orders-db TCP/5432 connections=1 by [\"shop/db-from-api\"]",
        ]
    );
    // The monitoring rule carried prometheus's scrape; web's rule and the database's
    // api rule carried nothing.
    let unused: Vec<String> =
        report["unused_rules"].as_array().unwrap().iter().map(|r| r["policy"].as_str().unwrap().to_owned()).collect();
    assert_eq!(unused, ["shop/api-from-web", "shop/db-from-api"]);

    let yaml = generate_then_check(dir.path(), &[recording], &["--egress"]);
    assert!(yaml.contains("kubernetes.io/metadata.name: \"monitoring\""), "{yaml}");
}

#[test]
fn without_policy_files_the_clusters_own_policies_are_judged_and_generate_keeps_to_a_namespace() {
    // NetworkPolicies in the Kubernetes state (here a kubectl snapshot; a capture
    // records them from the API likewise).
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("k8s.json");
    let text = std::fs::read_to_string(crate::repo().join("fixtures/netpol/shop/db.yaml")).unwrap();
    let mut object: Value = serde_norway::from_str(&text).unwrap();
    object["metadata"]["uid"] = "3f1e7a52-6b1d-4c55-9d2e-0a9c1f6b2d10".into();
    object["metadata"]["resourceVersion"] = "7".into();
    std::fs::write(&state, serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [object]}).to_string())
        .unwrap();
    let (code, report) = check(&["--k8s-from", state.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert_eq!(report["policies"], serde_json::json!(["shop/orders-db-from-api"]));
    assert_eq!(
        denied(&report),
        ["ingress shop/web -> shop/orders-db TCP/5432 connections=2 by [\"shop/orders-db-from-api\"]"]
    );

    let out = smap(&["netpol", "generate", SHOP, "--namespace", "elsewhere"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("kind: NetworkPolicy"), "{}", stdout(&out));
}

#[test]
fn policy_files_without_a_network_policy_are_an_error_not_a_pass() {
    let dir = tempfile::tempdir().unwrap();
    let typo = dir.path().join("typo.yaml");
    std::fs::write(&typo, "kind: NetworkPolcy\nmetadata: {name: p, namespace: shop}\nspec: {podSelector: {}}\n")
        .unwrap();
    let out = smap(&["netpol", "check", SHOP, "--policies", typo.to_str().unwrap()]);
    assert_input_error(&out, "no NetworkPolicy found");
    let out = smap(&["analyze", SHOP, "--policies", typo.to_str().unwrap()]);
    assert_input_error(&out, "no NetworkPolicy found");
}
