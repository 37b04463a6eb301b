//! Graph analyses of a topology (`smap analyze`): dependency chains, circular
//! dependencies, orphans, single points of failure, cross-namespace and external
//! dependencies, a diff against a baseline, and policy checks for CI.
//!
//! Every analysis reads one petgraph graph built once from the topology
//! ([`graph::ServiceGraph`]); the results are gathered in a [`Report`] that renders as
//! text, JSON (`smap.analysis/v1`, documented in `docs/analyze.md`) or Markdown, and
//! that says whether a CI gate passes. Output is sorted throughout: the same topology
//! always gives the same bytes.

pub mod chains;
pub mod cycles;
pub mod dependencies;
pub mod diff;
pub mod entries;
pub mod graph;
mod markdown;
pub mod orphans;
pub mod policy;
pub mod report;
pub mod selector;
pub mod spof;
mod text;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::topology::Topology;

pub use diff::DiffOptions;
pub use policy::{Policy, PolicyError};
pub use report::{Gate, Report, Summary};

/// A dependency named by its ends.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct EdgeRef {
    /// Caller id.
    pub source: String,
    /// Callee id.
    pub destination: String,
}

impl EdgeRef {
    /// A dependency from caller to callee.
    pub fn new(source: &str, destination: &str) -> Self {
        EdgeRef { source: source.to_owned(), destination: destination.to_owned() }
    }
}

/// Findings a CI gate can fail on (`--fail-on`). Policy violations always fail it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Check {
    /// Policy violations.
    Violations,
    /// Circular dependencies.
    Cycles,
    /// Single points of failure.
    Spof,
    /// Orphaned services.
    Orphans,
    /// Dependencies across namespaces.
    CrossNamespace,
    /// Dependencies on addresses outside the cluster.
    External,
    /// Edges with failed connection attempts.
    Failures,
    /// Anything changed since the baseline.
    Changes,
    /// Dependencies not in the baseline.
    NewDependencies,
    /// Observed traffic NetworkPolicies would deny.
    NetworkPolicies,
}

impl Check {
    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Check::Violations => "violations",
            Check::Cycles => "cycles",
            Check::Spof => "spof",
            Check::Orphans => "orphans",
            Check::CrossNamespace => "cross-namespace",
            Check::External => "external",
            Check::Failures => "failures",
            Check::Changes => "changes",
            Check::NewDependencies => "new-dependencies",
            Check::NetworkPolicies => "network-policies",
        }
    }

    /// Whether the check compares against a baseline.
    pub fn needs_baseline(self) -> bool {
        matches!(self, Check::Changes | Check::NewDependencies)
    }
}

/// Thresholds and gate of an analysis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// How many affected services make a service without redundancy a single point of
    /// failure.
    pub spof_min_affected: usize,
    /// Traffic shift thresholds of the diff.
    pub diff: DiffOptions,
    /// Findings that fail the gate besides policy violations.
    pub fail_on: BTreeSet<Check>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            spof_min_affected: 2,
            diff: DiffOptions { shift_threshold_percent: 50, shift_min_connections: 10 },
            fail_on: BTreeSet::new(),
        }
    }
}

/// Why an analysis could not run. All are input errors.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    /// An edge names a service the topology does not list.
    #[error("edge {edge} names `{missing}`, which is not in the topology's services; the topology is inconsistent (rebuild it with `smap build`)")]
    UnknownService {
        /// The edge, as `source -> destination`.
        edge: String,
        /// The id missing from `services`.
        missing: String,
    },
    /// A check compares against a baseline and none was given.
    #[error("{what} compares against a baseline: pass --baseline")]
    NeedsBaseline {
        /// The check.
        what: &'static str,
    },
}

/// Runs every analysis, the diff against `baseline` and the checks of `policy`.
pub fn analyze(
    topology: &Topology,
    baseline: Option<&Topology>,
    policy: Option<&Policy>,
    options: &Options,
) -> Result<Report, AnalysisError> {
    if baseline.is_none() {
        if let Some(check) = options.fail_on.iter().find(|check| check.needs_baseline()) {
            return Err(AnalysisError::NeedsBaseline {
                what: if *check == Check::Changes { "--fail-on changes" } else { "--fail-on new-dependencies" },
            });
        }
    }
    let graph = graph::ServiceGraph::new(topology)?;
    let declared = policy.map_or(&[][..], |policy| &policy.entry_points);
    let entries = entries::entry_points(&graph, declared);
    let chains = chains::chains(&graph, &entries);
    let cycles = cycles::cycles(&graph);
    let orphans = orphans::orphans(&graph, &entries);
    let single_points = spof::single_points(&graph, &entries, options.spof_min_affected);
    let dependencies = dependencies::dependencies(&graph);
    let diff = baseline.map(|baseline| diff::diff(baseline, topology, options.diff)).transpose()?;
    let violations =
        policy.map(|policy| policy::evaluate(policy, &graph, &chains, &cycles, diff.as_ref())).transpose()?;
    let mut report = Report {
        schema: report::ANALYSIS_SCHEMA.to_owned(),
        window: topology.window.clone(),
        summary: Summary::default(),
        gate: Gate::default(),
        entry_points: entries.into_iter().map(|(_, entry)| entry).collect(),
        chains,
        cycles,
        orphans,
        single_points_of_failure: single_points,
        dependencies,
        diff,
        policy: violations.map(|violations| report::PolicyReport { violations }),
        network_policies: None,
    };
    report.summary = Summary::of(&report, topology.services.len(), graph.graph.edge_count());
    report.gate = Gate::of(&report, &options.fail_on);
    Ok(report)
}
