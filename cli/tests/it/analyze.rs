//! `smap analyze`: every exit code (0 clean, 1 violations or `--fail-on` findings,
//! 2 usage or input errors), every input kind and format, as CI runs it.

use std::process::Output;

use crate::{assert_input_error, smap, stderr, stdout};

const SHOP: &str = "fixtures/topologies/shop.json";
const CYCLE: &str = "fixtures/topologies/cycle.json";
const PROD: &str = "fixtures/topologies/prod-uses-staging-db.json";
const BASELINE: &str = "fixtures/topologies/baseline.json";
const NEW_DEPENDENCY: &str = "fixtures/topologies/new-dependency.json";
const BOOKINFO: &str = "fixtures/recordings/bookinfo-simulated";

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&stdout(out)).unwrap()
}

/// Exit 1 with the verdict on stderr.
fn assert_gate_failed(out: &Output, verdict: &str) {
    assert_eq!(out.status.code(), Some(1), "stderr: {}", stderr(out));
    assert_eq!(stderr(out), format!("smap analyze: failed on {verdict}\n"));
}

// --- exit 0 ---------------------------------------------------------------------------

#[test]
fn a_topology_that_keeps_its_policy_exits_0() {
    let out = smap(&["analyze", SHOP, "--policy", "fixtures/policies/shop.yaml"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("smap analyze: 15 services, 16 dependencies"), "{text}");
    assert_eq!(text.lines().nth(1), Some("result: passed"));
    assert_eq!(stderr(&out), "");
}

#[test]
fn findings_not_given_to_fail_on_do_not_fail() {
    // The cycle is reported, but nothing asked to fail on it.
    let out = smap(&["analyze", CYCLE, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let report = json(&out);
    assert_eq!(report["summary"]["cycles"], 1);
    assert_eq!(report["gate"]["passed"], true);
}

#[test]
fn a_recording_directory_is_built_then_analysed() {
    let out = smap(&["analyze", BOOKINFO, "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["schema"], "smap.analysis/v1");
    assert!(report["summary"]["dependencies"].as_u64().unwrap() > 0, "{report}");
    assert!(report["chains"]["max_depth"].as_u64().unwrap() > 0, "{report}");
}

#[test]
fn two_builds_of_one_recording_have_no_changes() {
    let out = smap(&["analyze", BOOKINFO, "--baseline", BOOKINFO, "--fail-on", "changes", "--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(json(&out)["summary"]["changes"], 0);
}

// --- exit 1 ---------------------------------------------------------------------------

#[test]
fn policy_violations_exit_1() {
    let out = smap(&["analyze", PROD, "--policy", "fixtures/policies/prod-isolation.yaml"]);
    assert_gate_failed(&out, "violations (3)");
    let text = stdout(&out);
    assert!(text.contains("[prod-never-calls-staging] prod/orders -> staging/postgres is denied"), "{text}");
}

#[test]
fn fail_on_findings_exit_1() {
    let out = smap(&["analyze", CYCLE, "--fail-on", "cycles,orphans"]);
    assert_gate_failed(&out, "cycles (1)");
    let out = smap(&["analyze", SHOP, "--fail-on", "spof", "--fail-on", "external"]);
    assert_gate_failed(&out, "spof (1), external (2)");
}

#[test]
fn a_new_dependency_against_the_baseline_exits_1() {
    let out = smap(&["analyze", NEW_DEPENDENCY, "--baseline", BASELINE, "--fail-on", "new-dependencies"]);
    assert_gate_failed(&out, "new-dependencies (2)");
    let policy = "fixtures/policies/no-new-dependencies.yaml";
    let out = smap(&["analyze", NEW_DEPENDENCY, "--baseline", BASELINE, "--policy", policy, "--format", "json"]);
    assert_gate_failed(&out, "violations (2)");
    let violations = &json(&out)["policy"]["violations"];
    assert_eq!(violations[0]["rule"], "no_new_dependencies");
    assert_eq!(violations[0]["edges"][0]["destination"], "shop/fraud");
}

#[test]
fn the_markdown_report_is_written_and_the_gate_still_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.md");
    let policy = "fixtures/policies/prod-isolation.yaml";
    let out = smap(&["analyze", PROD, "--policy", policy, "--format", "markdown", "-o", path.to_str().unwrap()]);
    assert_gate_failed(&out, "violations (3)");
    assert_eq!(stdout(&out), "");
    let markdown = std::fs::read_to_string(&path).unwrap();
    assert!(markdown.starts_with("## smap analyze: ❌ failed\n"), "{markdown}");
}

#[test]
fn dot_and_mermaid_draw_violations_in_red() {
    let policy = "fixtures/policies/prod-isolation.yaml";
    let out = smap(&["analyze", PROD, "--policy", policy, "--format", "dot"]);
    assert_eq!(out.status.code(), Some(1));
    let dot = stdout(&out);
    assert!(
        dot.contains(
            "\"prod/orders\" -> \"staging/postgres\" [label=\"tcp/5432 x640 (12 failed)\", color=red, penwidth=2];"
        ),
        "{dot}"
    );
    let out = smap(&["analyze", PROD, "--policy", policy, "--format", "mermaid"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("linkStyle "), "{}", stdout(&out));
}

// --- exit 2 ---------------------------------------------------------------------------

#[test]
fn a_missing_input_exits_2() {
    let out = smap(&["analyze", "fixtures/topologies/nope.json"]);
    assert_input_error(&out, "nope.json");
}

#[test]
fn a_file_that_is_not_a_topology_exits_2() {
    let out = smap(&["analyze", "fixtures/policies/shop.yaml"]);
    assert_input_error(&out, "not a valid smap topology");
}

#[test]
fn a_misspelt_policy_key_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, "deny:\n  - from: {namespace: prod}\n    to: {namepsace: staging}\n").unwrap();
    let out = smap(&["analyze", SHOP, "--policy", path.to_str().unwrap()]);
    assert_input_error(&out, "unknown field `namepsace`");
}

#[test]
fn an_unknown_type_in_a_policy_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, "deny:\n  - to: {type: databse}\n").unwrap();
    let out = smap(&["analyze", SHOP, "--policy", path.to_str().unwrap()]);
    assert_input_error(&out, "unknown variant `databse`");
}

#[test]
fn checks_against_a_baseline_without_one_exit_2() {
    let out = smap(&["analyze", SHOP, "--policy", "fixtures/policies/no-new-dependencies.yaml"]);
    assert_input_error(&out, "no_new_dependencies compares against a baseline: pass --baseline");
    let out = smap(&["analyze", SHOP, "--fail-on", "changes"]);
    assert_input_error(&out, "--fail-on changes compares against a baseline: pass --baseline");
}

#[test]
fn a_topology_file_and_recordings_together_exit_2() {
    let out = smap(&["analyze", SHOP, BOOKINFO]);
    assert_input_error(&out, "either one topology file or one or more recording directories");
    let out = smap(&["analyze", SHOP, "--config", "fixtures/policies/shop.yaml"]);
    assert_input_error(&out, "--k8s-from and --config apply to recording directories");
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["analyze"][..], &["analyze", SHOP, "--format", "xml"], &["analyze", SHOP, "--fail-on", "everything"]]
    {
        let out = smap(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).starts_with("error: "), "{args:?}: {}", stderr(&out));
    }
}
