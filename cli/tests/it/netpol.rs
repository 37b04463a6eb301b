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
