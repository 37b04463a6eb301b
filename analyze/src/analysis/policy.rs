//! Policy files: which dependencies are allowed, which are required, and limits on
//! cycles, chain depth and new dependencies, checked against a topology.
//!
//! The format is documented for users in `docs/analyze.md`. Unknown keys are errors, so
//! a misspelt rule never silently checks nothing.

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, IntoDeserializer, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::topology::{NodeKind, Service, ServiceType};

use super::chains::Chains;
use super::cycles::Cycles;
use super::diff::Diff;
use super::graph::ServiceGraph;
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

/// Which services a rule is about. Every key given must match; a key with a list
/// matches when any item does. Strings are globs where `*` matches any text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Selector {
    /// Namespace (`external` for addresses outside the cluster).
    pub namespace: Option<OneOrMany<String>>,
    /// Service name, or `namespace/name` id when it contains a `/`.
    pub service: Option<OneOrMany<String>>,
    /// Labels that must all be present with a matching value.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Detected type (`database`, `cache`, `queue`, `api`, `proxy`, `other`).
    #[serde(rename = "type")]
    pub service_type: Option<OneOrMany<ServiceType>>,
    /// Kind (`service`, `workload`, `external`, `node`).
    pub kind: Option<OneOrMany<NodeKind>>,
    /// DNS name of an external address.
    pub dns_name: Option<OneOrMany<String>>,
}

/// One value or a list of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for OneOrManyVisitor<T> {
            type Value = OneOrMany<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }

            // Going through the item's own deserializer keeps its error messages
            // ("unknown variant `databse`, expected one of ...").
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
                T::deserialize(value.into_deserializer()).map(|item| OneOrMany(vec![item]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany(items))
            }
        }

        deserializer.deserialize_any(OneOrManyVisitor(PhantomData))
    }
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

impl Selector {
    /// Whether a service matches.
    pub fn matches(&self, id: &str, service: &Service) -> bool {
        let any_glob = |patterns: &Option<OneOrMany<String>>, text: &str| {
            patterns.as_ref().is_none_or(|OneOrMany(patterns)| patterns.iter().any(|p| glob(p, text)))
        };
        any_glob(&self.namespace, &service.namespace)
            && self.service.as_ref().is_none_or(|OneOrMany(patterns)| {
                patterns.iter().any(|p| if p.contains('/') { glob(p, id) } else { glob(p, &service.name) })
            })
            && self.labels.iter().all(|(key, pattern)| service.labels.get(key).is_some_and(|v| glob(pattern, v)))
            && self.service_type.as_ref().is_none_or(|OneOrMany(types)| types.contains(&service.service_type))
            && self.kind.as_ref().is_none_or(|OneOrMany(kinds)| kinds.contains(&service.kind))
            && self.dns_name.as_ref().is_none_or(|OneOrMany(patterns)| {
                service.dns_name.as_deref().is_some_and(|name| patterns.iter().any(|p| glob(p, name)))
            })
    }
}

impl fmt::Display for Selector {
    /// `namespace=prod type=database`, `any service` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        let mut push = |key: &str, values: Vec<String>| parts.push(format!("{key}={}", values.join("|")));
        if let Some(OneOrMany(values)) = &self.namespace {
            push("namespace", values.clone());
        }
        if let Some(OneOrMany(values)) = &self.service {
            push("service", values.clone());
        }
        for (key, value) in &self.labels {
            push(&format!("labels.{key}"), vec![value.clone()]);
        }
        if let Some(OneOrMany(values)) = &self.service_type {
            push("type", values.iter().map(|t| t.as_str().to_owned()).collect());
        }
        if let Some(OneOrMany(values)) = &self.kind {
            push("kind", values.iter().map(|k| format!("{k:?}").to_lowercase()).collect());
        }
        if let Some(OneOrMany(values)) = &self.dns_name {
            push("dns_name", values.clone());
        }
        if parts.is_empty() {
            f.write_str("any service")
        } else {
            f.write_str(&parts.join(" "))
        }
    }
}

/// Whether `text` matches `pattern`, where `*` matches any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // Where the last `*` was, and how much of the text it has taken so far.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(c) if *c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
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

    #[test]
    fn glob_stars_match_any_text() {
        for (pattern, text) in [("prod", "prod"), ("prod-*", "prod-eu"), ("*", ""), ("*.stripe.com", "api.stripe.com")]
        {
            assert!(glob(pattern, text), "{pattern} {text}");
        }
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(glob("*-db", "orders-db-db"));
        for (pattern, text) in
            [("prod", "production"), ("prod-*", "prod"), ("*.stripe.com", "stripe.com"), ("a*c", "ab")]
        {
            assert!(!glob(pattern, text), "{pattern} {text}");
        }
    }

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
