//! The analysis report: what every analysis found, a summary, and the CI gate; as JSON
//! (`smap.analysis/v1`) and as the highlights of a DOT or Mermaid drawing.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::netpol::CheckReport;
use crate::render::Highlights;
use crate::topology::Window;

use super::chains::Chains;
use super::cycles::Cycles;
use super::dependencies::Dependencies;
use super::diff::Diff;
use super::entries::EntryPoint;
use super::orphans::Orphan;
use super::policy::Violation;
use super::spof::SinglePoints;
use super::Check;

/// The schema tag of the JSON report.
pub const ANALYSIS_SCHEMA: &str = "smap.analysis/v1";

/// Everything `smap analyze` found. Serializes as the documented JSON report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    /// Always [`ANALYSIS_SCHEMA`].
    pub schema: String,
    /// The analysed topology's window.
    pub window: Window,
    /// Counts of every finding.
    pub summary: Summary,
    /// Whether a CI gate passes.
    pub gate: Gate,
    /// Where traffic enters, by id.
    pub entry_points: Vec<EntryPoint>,
    /// Longest dependency chains.
    pub chains: Chains,
    /// Circular dependencies.
    pub cycles: Cycles,
    /// Services nothing used, by id.
    pub orphans: Vec<Orphan>,
    /// Failure impact of every service, ranked.
    pub single_points_of_failure: SinglePoints,
    /// Cross-namespace and external dependencies, fan-in/out, failing edges.
    pub dependencies: Dependencies,
    /// Changes since the baseline, with `--baseline`.
    pub diff: Option<Diff>,
    /// Policy results, with `--policy`.
    pub policy: Option<PolicyReport>,
    /// NetworkPolicies judged against the observed traffic, with `--policies`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_policies: Option<CheckReport>,
}

/// The results of a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyReport {
    /// Broken rules; empty when the policy holds.
    pub violations: Vec<Violation>,
}

/// Counts of every finding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Nodes of the topology (Services, workloads, externals, nodes).
    pub services: usize,
    /// Distinct (caller, callee) pairs, self-calls aside.
    pub dependencies: usize,
    /// Entry points.
    pub entry_points: usize,
    /// Depth of the critical path.
    pub max_chain_depth: usize,
    /// Components with circular dependencies.
    pub cycles: usize,
    /// Services flagged as single points of failure.
    pub single_points_of_failure: usize,
    /// Orphaned services.
    pub orphans: usize,
    /// Cross-namespace dependencies.
    pub cross_namespace: usize,
    /// Dependencies on addresses outside the cluster.
    pub external_dependencies: usize,
    /// Edges with failed attempts.
    pub failing_edges: usize,
    /// Changes since the baseline (`null` without one).
    pub changes: Option<usize>,
    /// Dependencies not in the baseline (`null` without one).
    pub new_dependencies: Option<usize>,
    /// Policy violations (`null` without a policy).
    pub violations: Option<usize>,
    /// Observed dependencies NetworkPolicies would deny (absent without `--policies`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_policy_denials: Option<usize>,
}

impl Summary {
    /// Counts the findings of a report.
    pub fn of(report: &Report, services: usize, dependencies: usize) -> Summary {
        let diff = report.diff.as_ref();
        Summary {
            services,
            dependencies,
            entry_points: report.entry_points.len(),
            max_chain_depth: report.chains.max_depth,
            cycles: report.cycles.components.len(),
            single_points_of_failure: report.single_points_of_failure.flagged().count(),
            orphans: report.orphans.len(),
            cross_namespace: report.dependencies.cross_namespace.len(),
            external_dependencies: report.dependencies.external.outbound.len(),
            failing_edges: report.dependencies.failing_edges.len(),
            changes: diff.map(|diff| {
                diff.services_added.len()
                    + diff.services_removed.len()
                    + diff.dependencies_added.len()
                    + diff.dependencies_removed.len()
                    + diff.changes.len()
                    + diff.traffic_shifts.len()
            }),
            new_dependencies: diff.map(|diff| diff.dependencies_added.len()),
            violations: report.policy.as_ref().map(|policy| policy.violations.len()),
            network_policy_denials: report.network_policies.as_ref().map(|n| n.denied.len()),
        }
    }

    /// How many findings a check counts (`None` when the check did not run).
    pub fn count(&self, check: Check) -> Option<usize> {
        Some(match check {
            Check::Violations => return self.violations,
            Check::Cycles => self.cycles,
            Check::Spof => self.single_points_of_failure,
            Check::Orphans => self.orphans,
            Check::CrossNamespace => self.cross_namespace,
            Check::External => self.external_dependencies,
            Check::Failures => self.failing_edges,
            Check::Changes => return self.changes,
            Check::NewDependencies => return self.new_dependencies,
            Check::NetworkPolicies => return self.network_policy_denials,
        })
    }
}

/// Whether a CI gate passes: policy violations always fail it, and so does any finding
/// of a check given to `--fail-on`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gate {
    /// No violation and nothing to fail on.
    pub passed: bool,
    /// The checks given to `--fail-on`, sorted.
    pub fail_on: Vec<Check>,
    /// The checks that failed it, sorted.
    pub failed: Vec<Check>,
}

impl Default for Gate {
    fn default() -> Self {
        Gate { passed: true, fail_on: Vec::new(), failed: Vec::new() }
    }
}

impl Gate {
    /// Evaluates the gate on a report's summary.
    pub fn of(report: &Report, fail_on: &BTreeSet<Check>) -> Gate {
        let mut checks = fail_on.clone();
        checks.insert(Check::Violations);
        checks.insert(Check::NetworkPolicies);
        let failed: Vec<Check> =
            checks.into_iter().filter(|check| report.summary.count(*check).unwrap_or(0) > 0).collect();
        Gate { passed: failed.is_empty(), fail_on: fail_on.iter().copied().collect(), failed }
    }
}

impl Report {
    /// Adds the NetworkPolicy findings (which need the recordings, not the topology),
    /// counted and gated like the rest: a denial fails the gate.
    pub fn with_network_policies(mut self, findings: CheckReport) -> Report {
        self.network_policies = Some(findings);
        let (services, dependencies) = (self.summary.services, self.summary.dependencies);
        self.summary = Summary::of(&self, services, dependencies);
        let fail_on = self.gate.fail_on.iter().copied().collect();
        self.gate = Gate::of(&self, &fail_on);
        self
    }

    /// Pretty, deterministic JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        // Plain structs, strings and finite numbers: serializing cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// What to draw in red: services in cycles and single points of failure; calls in
    /// cycles and calls that break the policy.
    pub fn highlights(&self) -> Highlights {
        let mut highlights = Highlights::default();
        for component in &self.cycles.components {
            highlights.nodes.extend(component.services.iter().cloned());
            highlights.edges.extend(component.edges.iter().map(|e| (e.source.clone(), e.destination.clone())));
        }
        highlights.nodes.extend(self.single_points_of_failure.flagged().map(|impact| impact.id.clone()));
        for violation in self.policy.iter().flat_map(|policy| &policy.violations) {
            highlights.edges.extend(violation.edges.iter().map(|e| (e.source.clone(), e.destination.clone())));
        }
        highlights
    }
}
