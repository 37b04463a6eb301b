//! Policy files: which dependencies are allowed, which are required, and limits on
//! cycles, chain depth and new dependencies, checked against a topology.
//!
//! The format is documented for users in `docs/analyze.md`. Unknown keys are errors, so
//! a misspelt rule never silently checks nothing.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::chains::Chains;
use super::cycles::Cycles;
use super::diff::Diff;
use super::graph::ServiceGraph;
use super::selector::Selector;
use super::{AnalysisError, EdgeRef};

/// A policy file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// What happens to a dependency that matches no `allow` and no `deny` rule.
    pub default: Action,
    /// Services that take traffic from outside the cluster, declared (see the entry
    /// points of the analysis).
    pub entry_points: Vec<Selector>,
    /// Dependencies that are allowed even when a `deny` rule (or `default: deny`)
    /// matches them.
    pub allow: Vec<EdgeRule>,
    /// Dependencies that must not exist.
    pub deny: Vec<EdgeRule>,
    /// Dependencies that must exist: at least one dependency matches each.
    pub required: Vec<EdgeRule>,
    /// No circular dependencies between services.
    pub no_cycles: bool,
    /// No dependency chain from an entry point with more calls than this.
    pub max_chain_depth: Option<usize>,
    /// No dependency that the baseline does not have (needs `--baseline`).
    pub no_new_dependencies: bool,
}

/// The policy's default for dependencies no rule matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Allowed unless a `deny` rule matches.
    #[default]
    Allow,
    /// Denied unless an `allow` rule matches.
    Deny,
}

/// A rule about dependencies from services matching `from` to services matching `to`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeRule {
    /// Name used in violations; `deny[0]`, `required[1]`... when not given.
    #[serde(default)]
    pub name: Option<String>,
    /// Why the rule exists, shown with its violations.
    #[serde(default)]
    pub reason: Option<String>,
    /// The caller; empty matches every service.
    #[serde(default)]
    pub from: Selector,
    /// The callee; empty matches every service.
    #[serde(default)]
    pub to: Selector,
}

/// Why a policy file is not a valid policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not YAML, not of the policy's shape, or a key smap does not know.
    #[error("invalid policy: {0}")]
    Yaml(#[from] serde_norway::Error),
    /// Two rules share a name, so violations could not tell them apart.
    #[error("two policy rules are named `{0}`; give each rule its own name")]
    DuplicateName(String),
    /// A rule named with an empty string.
    #[error("a policy rule has an empty name; remove `name` or give it one")]
    EmptyName,
}

impl Policy {
    /// Parses a policy from YAML and checks that rule names are unique.
    pub fn from_yaml(text: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = serde_norway::from_str(text)?;
        let mut names = BTreeSet::new();
        for (_, name, _) in policy.edge_rules() {
            if name.is_empty() {
                return Err(PolicyError::EmptyName);
            }
            if !names.insert(name.clone()) {
                return Err(PolicyError::DuplicateName(name));
            }
        }
        Ok(policy)
    }

    /// Every edge rule with its section and resolved name.
    fn edge_rules(&self) -> impl Iterator<Item = (&'static str, String, &EdgeRule)> {
        let sections = [("allow", &self.allow), ("deny", &self.deny), ("required", &self.required)];
        sections.into_iter().flat_map(|(section, rules)| {
            rules.iter().enumerate().map(move |(index, rule)| {
                let name = rule.name.clone().unwrap_or_else(|| format!("{section}[{index}]"));
                (section, name, rule)
            })
        })
    }
}

impl EdgeRule {
    fn matches(&self, graph: &ServiceGraph<'_>, source: &str, destination: &str) -> bool {
        let services = &graph.topology.services;
        match (services.get(source), services.get(destination)) {
            (Some(from), Some(to)) => self.from.matches(source, from) && self.to.matches(destination, to),
            _ => false,
        }
    }
}

/// Which check of a policy a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A `deny` rule matched a dependency no `allow` rule matched.
    Deny,
    /// `default: deny` and no `allow` rule matched.
    DefaultDeny,
    /// No dependency matched a `required` rule.
    Required,
    /// `no_cycles` and a circular dependency exists.
    NoCycles,
    /// A chain is deeper than `max_chain_depth`.
    MaxChainDepth,
    /// `no_new_dependencies` and a dependency is not in the baseline.
    NoNewDependencies,
}

/// A broken rule, with the dependencies that break it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The rule's name (`default`, `no_cycles`, `max_chain_depth` and
    /// `no_new_dependencies` for those checks).
    pub rule: String,
    /// Which kind of check.
    pub kind: RuleKind,
    /// What is wrong, in a sentence.
    pub message: String,
    /// The dependencies at fault (none for a missing required dependency).
    pub edges: Vec<EdgeRef>,
}

/// Checks a policy; violations come rule kind by rule kind, each in dependency order.
pub fn evaluate(
    policy: &Policy,
    graph: &ServiceGraph<'_>,
    chains: &Chains,
    cycles: &Cycles,
    diff: Option<&Diff>,
) -> Result<Vec<Violation>, AnalysisError> {
    let mut pairs: Vec<(&str, &str)> = graph
        .graph
        .edge_indices()
        .filter_map(|edge| graph.graph.edge_endpoints(edge))
        .map(|(from, to)| (graph.id(from), graph.id(to)))
        .chain(graph.self_calls.keys().map(|id| (*id, *id)))
        .collect();
    pairs.sort_unstable();
    let rules: Vec<(&str, String, &EdgeRule)> = policy.edge_rules().collect();
    let in_section = |wanted: &'static str| rules.iter().filter(move |(section, _, _)| *section == wanted);
    let mut violations = Vec::new();

    for &(source, destination) in &pairs {
        if in_section("allow").any(|(_, _, rule)| rule.matches(graph, source, destination)) {
            continue;
        }
        let edges = vec![EdgeRef::new(source, destination)];
        if let Some((_, name, rule)) = in_section("deny").find(|(_, _, rule)| rule.matches(graph, source, destination))
        {
            let mut message = format!("{source} -> {destination} is denied");
            if let Some(reason) = &rule.reason {
                message.push_str(&format!(": {reason}"));
            }
            violations.push(Violation { rule: name.clone(), kind: RuleKind::Deny, message, edges });
        } else if policy.default == Action::Deny {
            violations.push(Violation {
                rule: "default".to_owned(),
                kind: RuleKind::DefaultDeny,
                message: format!("{source} -> {destination} matches no allow rule and the policy denies by default"),
                edges,
            });
        }
    }

    for (_, name, rule) in in_section("required") {
        if !pairs.iter().any(|(source, destination)| rule.matches(graph, source, destination)) {
            let mut message = format!("no dependency from ({}) to ({}), but one is required", rule.from, rule.to);
            if let Some(reason) = &rule.reason {
                message.push_str(&format!(": {reason}"));
            }
            violations.push(Violation { rule: name.clone(), kind: RuleKind::Required, message, edges: Vec::new() });
        }
    }

    if policy.no_cycles {
        for component in &cycles.components {
            violations.push(Violation {
                rule: "no_cycles".to_owned(),
                kind: RuleKind::NoCycles,
                message: format!(
                    "circular dependency among {}: {}",
                    component.services.join(", "),
                    cycle_list(component)
                ),
                edges: component.edges.clone(),
            });
        }
    }

    if let Some(max) = policy.max_chain_depth {
        for chain in chains.longest.iter().filter(|chain| chain.depth > max) {
            violations.push(Violation {
                rule: "max_chain_depth".to_owned(),
                kind: RuleKind::MaxChainDepth,
                message: format!("chain of depth {} exceeds {max}: {}", chain.depth, chain.services.join(" -> ")),
                edges: chain.services.windows(2).map(|pair| EdgeRef::new(&pair[0], &pair[1])).collect(),
            });
        }
    }

    if policy.no_new_dependencies {
        let diff = diff.ok_or(AnalysisError::NeedsBaseline { what: "the policy's no_new_dependencies" })?;
        for dependency in &diff.dependencies_added {
            violations.push(Violation {
                rule: "no_new_dependencies".to_owned(),
                kind: RuleKind::NoNewDependencies,
                message: format!("{} -> {} is a new dependency", dependency.source, dependency.destination),
                edges: vec![EdgeRef::new(&dependency.source, &dependency.destination)],
            });
        }
    }
    Ok(violations)
}

/// The first cycles of a component as `a -> b -> a; ...`, saying how many more.
fn cycle_list(component: &super::cycles::Component) -> String {
    const SHOWN: usize = 3;
    let mut listed: Vec<String> = component
        .cycles
        .iter()
        .take(SHOWN)
        .map(|cycle| {
            let mut ids = cycle.clone();
            ids.extend(cycle.first().cloned());
            ids.join(" -> ")
        })
        .collect();
    let more = component.cycles.len().saturating_sub(SHOWN);
    if more > 0 || component.truncated {
        listed.push(format!("and {more}{} more", if component.truncated { "+" } else { "" }));
    }
    listed.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::selector::OneOrMany;
    use crate::topology::ServiceType;

    #[test]
    fn selector_values_are_one_or_a_list() {
        let policy = Policy::from_yaml("deny:\n  - to: {type: database, namespace: [a, b]}\n").unwrap();
        let to = &policy.deny[0].to;
        assert_eq!(to.service_type, Some(OneOrMany(vec![ServiceType::Database])));
        assert_eq!(to.namespace, Some(OneOrMany(vec!["a".to_owned(), "b".to_owned()])));
        assert_eq!(to.to_string(), "namespace=a|b type=database");
        assert_eq!(Selector::default().to_string(), "any service");
    }

    #[test]
    fn typos_and_ambiguous_names_are_errors() {
        let error = Policy::from_yaml("no_cycle: true\n").unwrap_err().to_string();
        assert!(error.contains("unknown field `no_cycle`"), "{error}");
        let error = Policy::from_yaml("deny: [{to: {kind: pod}}]\n").unwrap_err().to_string();
        assert!(error.contains("unknown variant `pod`"), "{error}");
        let error = Policy::from_yaml("deny: [{name: x}]\nrequired: [{name: x}]\n").unwrap_err();
        assert!(matches!(error, PolicyError::DuplicateName(ref name) if name == "x"), "{error}");
        let error = Policy::from_yaml("allow: [{name: ''}]\n").unwrap_err();
        assert!(matches!(error, PolicyError::EmptyName), "{error}");
    }

    #[test]
    fn rules_without_a_name_are_named_by_position() {
        let policy = Policy::from_yaml("deny: [{}, {name: second}]\nrequired: [{}]\n").unwrap();
        let names: Vec<String> = policy.edge_rules().map(|(_, name, _)| name).collect();
        assert_eq!(names, ["deny[0]", "second", "required[0]"]);
    }
}
