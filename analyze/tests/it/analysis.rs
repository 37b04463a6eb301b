//! `smap analyze`'s analyses on fixture topologies, each named by what it shows.
//!
//! Snapshots are claims that the output is right; the asserts next to them state the
//! key fact of each fixture so a wrong snapshot cannot be accepted by accident.

use std::collections::BTreeSet;
use std::path::PathBuf;

use smap_analyze::analysis::orphans::OrphanReason;
use smap_analyze::analysis::policy::RuleKind;
use smap_analyze::analysis::{analyze, AnalysisError, Check, Options, Policy, Report};
use smap_analyze::render::{to_dot, to_mermaid};
use smap_analyze::Topology;

/// The workspace's `fixtures/` directory.
fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// A fixture topology by file stem.
fn topology(name: &str) -> Topology {
    let text = std::fs::read_to_string(fixtures().join(format!("topologies/{name}.json"))).unwrap();
    Topology::from_json(&text).unwrap()
}

/// A fixture policy by file stem.
fn policy(name: &str) -> Policy {
    let text = std::fs::read_to_string(fixtures().join(format!("policies/{name}.yaml"))).unwrap();
    Policy::from_yaml(&text).unwrap()
}

/// The report of a fixture with default options and no baseline or policy.
fn report(name: &str) -> Report {
    analyze(&topology(name), None, None, &Options::default()).unwrap()
}

fn ids<'a>(items: impl IntoIterator<Item = &'a String>) -> Vec<&'a str> {
    items.into_iter().map(String::as_str).collect()
}

// --- chains ---------------------------------------------------------------------------

#[test]
fn chains_start_at_entry_points_and_the_longest_ends_in_the_database() {
    let report = report("shop");
    let critical = report.chains.critical().unwrap();
    assert_eq!(
        ids(&critical.services),
        ["web/frontend", "shop/checkout", "shop/payment", "shop/ledger", "shop/postgres"]
    );
    assert_eq!(report.chains.max_depth, 4);
    insta::assert_json_snapshot!("shop_entry_points", report.entry_points);
    insta::assert_json_snapshot!("shop_chains", report.chains);
}

#[test]
fn chains_in_a_cycle_never_repeat_a_service() {
    let report = report("cycle");
    for chain in &report.chains.longest {
        let distinct: BTreeSet<&String> = chain.services.iter().collect();
        assert_eq!(distinct.len(), chain.services.len(), "{chain:?}");
    }
    assert_eq!(ids(&report.chains.longest[0].services), ["app/gateway", "app/a", "app/b", "app/c", "app/db"]);
}

// --- cycles ---------------------------------------------------------------------------

#[test]
fn a_cycle_a_b_c_a_is_one_component_with_each_cycle_listed() {
    let report = report("cycle");
    let [component] = &report.cycles.components[..] else { panic!("{:?}", report.cycles) };
    assert_eq!(ids(&component.services), ["app/a", "app/b", "app/c"]);
    // c -> b closes a second, shorter cycle inside the same component.
    assert_eq!(component.cycles, [vec!["app/b", "app/c"], vec!["app/a", "app/b", "app/c"]]);
    assert!(!component.truncated);
    insta::assert_json_snapshot!("cycle_cycles", report.cycles);
}

#[test]
fn a_service_calling_itself_is_a_self_call_not_a_cycle() {
    let report = report("shop");
    assert!(report.cycles.components.is_empty());
    assert_eq!(report.cycles.self_calls, ["shop/rabbitmq"]);
}

#[test]
fn cycles_of_a_dense_component_are_capped() {
    // Every service calls every other: 15 services, 210 calls, 105 shortest cycles.
    let mut topology = topology("cycle");
    let names: Vec<String> = (10..25).map(|i| format!("app/s{i}")).collect();
    let template = topology.services["app/a"].clone();
    let edge = topology.edges[0].clone();
    for id in &names {
        let mut service = template.clone();
        service.name = id["app/".len()..].to_owned();
        topology.services.insert(id.clone(), service);
    }
    for from in &names {
        for to in names.iter().filter(|to| *to != from) {
            let mut edge = edge.clone();
            edge.source = from.clone();
            edge.destination = to.clone();
            topology.edges.push(edge);
        }
    }
    let report = analyze(&topology, None, None, &Options::default()).unwrap();
    let dense = report.cycles.components.iter().find(|c| c.services.contains(&names[0])).unwrap();
    assert_eq!(dense.services.len(), 15);
    assert_eq!(dense.edges.len(), 15 * 14);
    assert_eq!(dense.cycles.len(), smap_analyze::analysis::cycles::MAX_CYCLES_PER_COMPONENT);
    assert!(dense.truncated);
    assert!(dense.cycles.iter().all(|cycle| cycle.len() == 2));
    assert_eq!(dense.cycles[0], ["app/s10", "app/s11"]);
}

#[test]
fn every_call_of_a_component_is_on_a_listed_cycle() {
    // Two rings sharing app/a: a -> b -> c -> a and a -> d -> e -> f -> a.
    let mut topology = topology("cycle");
    let template = topology.services["app/a"].clone();
    let edge = topology.edges[0].clone();
    for name in ["d", "e", "f"] {
        let mut service = template.clone();
        service.name = name.to_owned();
        topology.services.insert(format!("app/{name}"), service);
    }
    for (from, to) in [("a", "d"), ("d", "e"), ("e", "f"), ("f", "a")] {
        let mut edge = edge.clone();
        edge.source = format!("app/{from}");
        edge.destination = format!("app/{to}");
        topology.edges.push(edge);
    }
    let report = analyze(&topology, None, None, &Options::default()).unwrap();
    let [component] = &report.cycles.components[..] else { panic!("{:?}", report.cycles) };
    assert_eq!(
        component.cycles,
        [vec!["app/b", "app/c"], vec!["app/a", "app/b", "app/c"], vec!["app/a", "app/d", "app/e", "app/f"]]
    );
    for call in &component.edges {
        let on_a_cycle = component.cycles.iter().any(|cycle| {
            let at = cycle.iter().position(|id| *id == call.source);
            at.is_some_and(|at| cycle[(at + 1) % cycle.len()] == call.destination)
        });
        assert!(on_a_cycle, "{call:?}");
    }
}

// --- orphans --------------------------------------------------------------------------

#[test]
fn orphans_are_idle_services_and_services_nothing_called() {
    let report = report("shop");
    let found: Vec<(&str, OrphanReason)> = report.orphans.iter().map(|o| (o.id.as_str(), o.reason)).collect();
    // The email worker is a workload without a Service: nothing calling it is normal.
    assert_eq!(found, [("shop/inventory-sync", OrphanReason::Uncalled), ("shop/legacy-reports", OrphanReason::Idle)]);
    insta::assert_json_snapshot!("shop_orphans", report.orphans);
}

#[test]
fn kubelet_probes_from_nodes_are_not_use() {
    let mut shop = topology("shop");
    let mut probe = shop.edges.iter().find(|e| e.source == "node/worker-1").unwrap().clone();
    probe.destination = "shop/legacy-reports".to_owned();
    shop.edges.push(probe);
    let report = analyze(&shop, None, None, &Options::default()).unwrap();
    assert!(report.orphans.iter().any(|o| o.id == "shop/legacy-reports" && o.reason == OrphanReason::Idle));
    assert!(report.entry_points.iter().all(|e| e.id != "shop/legacy-reports"));
}

#[test]
fn a_declared_entry_point_is_not_an_uncalled_orphan() {
    let policy = Policy::from_yaml("entry_points: [{service: shop/inventory-sync}]").unwrap();
    let report = analyze(&topology("shop"), None, Some(&policy), &Options::default()).unwrap();
    let orphans: Vec<&str> = report.orphans.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(orphans, ["shop/legacy-reports"]);
}

// --- single points of failure ---------------------------------------------------------

#[test]
fn one_ready_database_behind_many_services_ranks_first() {
    let report = report("single-db-many-callers");
    let spof = &report.single_points_of_failure;
    let first = &spof.ranked[0];
    assert_eq!(first.id, "shared/postgres");
    assert_eq!((first.endpoints.ready, first.endpoints.total), (1, 3));
    // Six direct callers and the gateway in front of them.
    assert_eq!((first.dependents, first.transitive_dependents, first.affected), (6, 7, 7));
    assert!(first.spof);
    // The gateway cuts off more (everything behind it) but has three ready endpoints.
    let gateway = spof.ranked.iter().find(|i| i.id == "apps/gateway").unwrap();
    assert_eq!((gateway.cut_off, gateway.spof), (8, false));
    // The callers stay connected through the databases without the gateway.
    assert!(!gateway.articulation_point);
    insta::assert_json_snapshot!("single_db_spof", spof);
}

#[test]
fn single_points_in_the_shop_rank_by_impact_per_ready_endpoint() {
    let report = report("shop");
    let flagged: Vec<&str> = report.single_points_of_failure.flagged().map(|i| i.id.as_str()).collect();
    assert_eq!(flagged, ["shop/postgres"]);
    insta::assert_json_snapshot!("shop_spof", report.single_points_of_failure);
}

#[test]
fn spof_threshold_is_an_option() {
    let options = Options { spof_min_affected: 7, ..Options::default() };
    let strict = analyze(&topology("shop"), None, None, &options).unwrap();
    assert_eq!(strict.single_points_of_failure.flagged().count(), 0);
}

// --- dependencies ---------------------------------------------------------------------

#[test]
fn cross_namespace_external_fan_and_failures() {
    let report = report("shop");
    insta::assert_json_snapshot!("shop_dependencies", report.dependencies);
}

#[test]
fn production_using_the_staging_database_is_a_cross_namespace_dependency() {
    let report = report("prod-uses-staging-db");
    let cross: Vec<(&str, &str)> =
        report.dependencies.cross_namespace.iter().map(|d| (d.source.as_str(), d.destination.as_str())).collect();
    assert_eq!(cross, [("prod/frontend", "staging/feature-flags"), ("prod/orders", "staging/postgres")]);
}

// --- diff -----------------------------------------------------------------------------

#[test]
fn a_new_dependency_against_the_baseline() {
    let baseline = topology("baseline");
    let report = analyze(&topology("new-dependency"), Some(&baseline), None, &Options::default()).unwrap();
    let diff = report.diff.as_ref().unwrap();
    let added: Vec<(&str, &str)> =
        diff.dependencies_added.iter().map(|d| (d.source.as_str(), d.destination.as_str())).collect();
    assert_eq!(added, [("shop/checkout", "shop/fraud"), ("shop/fraud", "shop/postgres")]);
    insta::assert_json_snapshot!("new_dependency_diff", diff);
}

#[test]
fn a_topology_against_itself_has_no_changes() {
    let shop = topology("shop");
    let options = Options { fail_on: BTreeSet::from([Check::Changes]), ..Options::default() };
    let report = analyze(&shop, Some(&shop), None, &options).unwrap();
    assert!(report.diff.as_ref().unwrap().is_empty());
    assert_eq!(report.summary.changes, Some(0));
    assert!(report.gate.passed);
}

#[test]
fn traffic_is_compared_per_minute_of_window() {
    // The same traffic in a window twice as long is half the rate.
    let baseline = topology("baseline");
    let mut current = baseline.clone();
    current.window.end = "2025-03-01T12:00:00.000000000Z".to_owned();
    let report = analyze(&current, Some(&baseline), None, &Options::default()).unwrap();
    let shifts = &report.diff.as_ref().unwrap().traffic_shifts;
    assert_eq!(shifts.len(), current.edges.len());
    assert!(shifts.iter().all(|shift| shift.change_percent == -50), "{shifts:?}");
}

#[test]
fn fail_on_changes_needs_a_baseline() {
    let options = Options { fail_on: BTreeSet::from([Check::NewDependencies]), ..Options::default() };
    let error = analyze(&topology("shop"), None, None, &options).unwrap_err();
    assert!(matches!(error, AnalysisError::NeedsBaseline { .. }), "{error}");
}

// --- policy ---------------------------------------------------------------------------

#[test]
fn production_using_a_staging_database_breaks_the_isolation_policy() {
    let policy = policy("prod-isolation");
    let report = analyze(&topology("prod-uses-staging-db"), None, Some(&policy), &Options::default()).unwrap();
    let violations = &report.policy.as_ref().unwrap().violations;
    let found: Vec<(&str, RuleKind)> = violations.iter().map(|v| (v.rule.as_str(), v.kind)).collect();
    // prod/frontend -> staging/feature-flags is allowed by an exception.
    assert_eq!(
        found,
        [
            ("frontends-never-call-databases", RuleKind::Deny),
            ("prod-never-calls-staging", RuleKind::Deny),
            ("orders-uses-prod-database", RuleKind::Required),
        ]
    );
    assert!(!report.gate.passed);
    assert_eq!(report.gate.failed, [Check::Violations]);
    insta::assert_json_snapshot!("prod_uses_staging_db_violations", violations);
}

#[test]
fn the_shop_keeps_its_policy() {
    let report = analyze(&topology("shop"), None, Some(&policy("shop")), &Options::default()).unwrap();
    assert_eq!(report.policy.as_ref().unwrap().violations, []);
    assert!(report.gate.passed);
}

#[test]
fn cycles_and_chain_depth_violations_name_their_edges() {
    let policy = Policy::from_yaml("no_cycles: true\nmax_chain_depth: 3\n").unwrap();
    let report = analyze(&topology("cycle"), None, Some(&policy), &Options::default()).unwrap();
    insta::assert_json_snapshot!("cycle_violations", report.policy.unwrap().violations);
}

#[test]
fn a_new_dependency_breaks_no_new_dependencies() {
    let baseline = topology("baseline");
    let policy = policy("no-new-dependencies");
    let report = analyze(&topology("new-dependency"), Some(&baseline), Some(&policy), &Options::default()).unwrap();
    let violations = &report.policy.as_ref().unwrap().violations;
    let edges: Vec<String> =
        violations.iter().flat_map(|v| &v.edges).map(|e| format!("{} -> {}", e.source, e.destination)).collect();
    assert_eq!(edges, ["shop/checkout -> shop/fraud", "shop/fraud -> shop/postgres"]);
    assert!(violations.iter().all(|v| v.kind == RuleKind::NoNewDependencies));
}

#[test]
fn no_new_dependencies_without_a_baseline_is_an_error() {
    let error =
        analyze(&topology("shop"), None, Some(&policy("no-new-dependencies")), &Options::default()).unwrap_err();
    assert!(matches!(error, AnalysisError::NeedsBaseline { .. }), "{error}");
}

#[test]
fn default_deny_allows_only_what_allow_rules_name() {
    let policy = Policy::from_yaml(
        "default: deny\nallow:\n  - {from: {namespace: app}, to: {namespace: app, type: [api, database]}}\n",
    )
    .unwrap();
    let report = analyze(&topology("cycle"), None, Some(&policy), &Options::default()).unwrap();
    // Only the gateway's call to a is not allowed: a is an api, but the rule's `to`
    // also needs the namespace, and gateway -> a matches. Every call is in `app`, and
    // every callee is an api or a database, so nothing is denied.
    assert_eq!(report.policy.unwrap().violations, []);
    let strict = Policy::from_yaml("default: deny\nallow:\n  - {to: {type: database}}\n").unwrap();
    let report = analyze(&topology("cycle"), None, Some(&strict), &Options::default()).unwrap();
    let violations = report.policy.unwrap().violations;
    assert_eq!(violations.len(), 5);
    assert!(violations.iter().all(|v| v.rule == "default" && v.kind == RuleKind::DefaultDeny));
}

#[test]
fn fail_on_turns_findings_into_a_failed_gate() {
    let options = Options { fail_on: BTreeSet::from([Check::Cycles, Check::Orphans]), ..Options::default() };
    let report = analyze(&topology("cycle"), None, None, &options).unwrap();
    assert_eq!(report.gate.failed, [Check::Cycles]);
    assert!(!report.gate.passed);
}

#[test]
fn an_edge_to_an_unlisted_service_is_an_input_error() {
    let mut topology = topology("cycle");
    topology.services.remove("app/db");
    let error = analyze(&topology, None, None, &Options::default()).unwrap_err();
    assert_eq!(
        error.to_string(),
        "edge app/c -> app/db names `app/db`, which is not in the topology's services; the topology is inconsistent (rebuild it with `smap build`)"
    );
}

// --- output ---------------------------------------------------------------------------

#[test]
fn shop_report_as_text_json_and_markdown() {
    let report = analyze(&topology("shop"), None, Some(&policy("shop")), &Options::default()).unwrap();
    insta::assert_snapshot!("shop_text", report.to_text(10));
    insta::assert_snapshot!("shop_markdown", report.to_markdown(10));
    insta::assert_snapshot!("shop_json", report.to_json());
}

#[test]
fn failing_report_as_text_and_markdown() {
    let options = Options { fail_on: BTreeSet::from([Check::CrossNamespace]), ..Options::default() };
    let policy = policy("prod-isolation");
    let report = analyze(&topology("prod-uses-staging-db"), None, Some(&policy), &options).unwrap();
    insta::assert_snapshot!("prod_uses_staging_db_text", report.to_text(10));
    insta::assert_snapshot!("prod_uses_staging_db_markdown", report.to_markdown(10));
}

#[test]
fn diff_as_text_and_markdown() {
    let baseline = topology("baseline");
    let report = analyze(&topology("new-dependency"), Some(&baseline), None, &Options::default()).unwrap();
    insta::assert_snapshot!("new_dependency_text", report.to_text(3));
    insta::assert_snapshot!("new_dependency_markdown", report.to_markdown(3));
}

#[test]
fn dot_and_mermaid_highlight_cycles_spofs_and_violations() {
    let topology = topology("cycle");
    let policy = Policy::from_yaml("deny: [{from: {service: gateway}, to: {service: a}}]").unwrap();
    let mut cycle = topology.clone();
    // One ready endpoint on the database makes it a single point of failure.
    cycle.services.get_mut("app/db").unwrap().endpoints.ready = 1;
    let report = analyze(&cycle, None, Some(&policy), &Options::default()).unwrap();
    let highlights = report.highlights();
    assert_eq!(ids(&highlights.nodes), ["app/a", "app/b", "app/c", "app/db"]);
    assert!(highlights.edges.contains(&("app/gateway".to_owned(), "app/a".to_owned())));
    insta::assert_snapshot!("cycle_dot", to_dot(&cycle, &highlights));
    insta::assert_snapshot!("cycle_mermaid", to_mermaid(&cycle, &highlights));
}
